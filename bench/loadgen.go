package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/bits"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// The load generator speaks just enough HTTP/1.1 to drive the servers here:
// one request in flight per keep-alive connection, Content-Length bodies,
// Set-Cookie tracked per simulated client. It allocates nothing per request
// and parses nothing it does not need, so that it outruns a bare fasthttp
// server (the ceiling every contender is measured against); net/http's or
// fasthttp's clients do not, on a machine this small.

// client is one simulated browser: its cookies and what its counter should be.
type client struct {
	cookie []byte // "a=b; c=d", ready for the Cookie header
	want   int64  // the counter value the server last acknowledged
}

// setCookie applies one Set-Cookie header value to the client's cookies:
// an empty value or Max-Age=0 deletes the cookie, anything else replaces it.
func (c *client) setCookie(line []byte) {
	pair := line
	if i := bytes.IndexByte(pair, ';'); i >= 0 {
		pair = pair[:i]
	}
	pair = bytes.TrimSpace(pair)
	eq := bytes.IndexByte(pair, '=')
	if eq <= 0 {
		return
	}
	name := pair[:eq]
	deleted := eq == len(pair)-1 || bytes.Contains(bytes.ToLower(line), []byte("max-age=0")) ||
		bytes.Contains(bytes.ToLower(line), []byte("max-age=-1"))
	var out []byte
	for _, kv := range bytes.Split(c.cookie, []byte("; ")) {
		if len(kv) == 0 || (bytes.HasPrefix(kv, name) && len(kv) > len(name) && kv[len(name)] == '=') {
			continue
		}
		out = appendCookie(out, kv)
	}
	if !deleted {
		out = appendCookie(out, pair)
	}
	c.cookie = out
}

func appendCookie(dst, kv []byte) []byte {
	if len(dst) > 0 {
		dst = append(dst, "; "...)
	}
	return append(dst, kv...)
}

// conn is one keep-alive connection and its reusable buffers.
type conn struct {
	addr string
	nc   net.Conn
	r    *bufio.Reader
	req  []byte
	body []byte
}

func newConn(addr string) *conn {
	return &conn{addr: addr, req: make([]byte, 0, 512), body: make([]byte, 0, 64)}
}

func (c *conn) close() {
	if c.nc != nil {
		c.nc.Close()
		c.nc = nil
	}
}

// errBadResponse marks a response the generator could not make sense of.
var errBadResponse = errors.New("malformed response")

// do sends one request and reads the response. Set-Cookie headers go to
// cl; the body is returned (valid until the next call).
func (c *conn) do(method, path string, cl *client) (status int, body []byte, err error) {
	if c.nc == nil {
		nc, err := net.DialTimeout("tcp", c.addr, 5*time.Second)
		if err != nil {
			return 0, nil, err
		}
		c.nc = nc
		if c.r == nil {
			c.r = bufio.NewReaderSize(nc, 64<<10)
		} else {
			c.r.Reset(nc)
		}
	}
	req := append(c.req[:0], method...)
	req = append(req, ' ')
	req = append(req, path...)
	req = append(req, " HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n"...)
	if cl != nil && len(cl.cookie) > 0 {
		req = append(req, "Cookie: "...)
		req = append(req, cl.cookie...)
		req = append(req, "\r\n"...)
	}
	req = append(req, "\r\n"...)
	c.req = req
	c.nc.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.nc.Write(req); err != nil {
		c.close()
		return 0, nil, err
	}
	status, body, keep, err := c.readResponse(cl)
	if err != nil || !keep {
		c.close()
	}
	return status, body, err
}

func (c *conn) readResponse(cl *client) (status int, body []byte, keepAlive bool, err error) {
	line, err := c.r.ReadSlice('\n')
	if err != nil {
		return 0, nil, false, err
	}
	// "HTTP/1.1 200 OK"
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) {
		return 0, nil, false, errBadResponse
	}
	status = int(line[9]-'0')*100 + int(line[10]-'0')*10 + int(line[11]-'0')
	length := -1
	keepAlive = true
	for {
		line, err = c.r.ReadSlice('\n')
		if err != nil {
			return 0, nil, false, err
		}
		if len(line) <= 2 {
			break
		}
		colon := bytes.IndexByte(line, ':')
		if colon < 0 {
			return 0, nil, false, errBadResponse
		}
		name, value := line[:colon], bytes.TrimSpace(line[colon+1:])
		switch {
		case asciiEqualFold(name, "content-length"):
			n, perr := strconv.Atoi(string(value))
			if perr != nil || n < 0 {
				return 0, nil, false, errBadResponse
			}
			length = n
		case asciiEqualFold(name, "set-cookie"):
			if cl != nil {
				cl.setCookie(value)
			}
		case asciiEqualFold(name, "connection"):
			if asciiEqualFold(value, "close") {
				keepAlive = false
			}
		case asciiEqualFold(name, "transfer-encoding"):
			return 0, nil, false, fmt.Errorf("%w: chunked body", errBadResponse)
		}
	}
	if length < 0 {
		return 0, nil, false, fmt.Errorf("%w: no Content-Length", errBadResponse)
	}
	if cap(c.body) < length {
		c.body = make([]byte, length)
	}
	c.body = c.body[:length]
	if _, err := io.ReadFull(c.r, c.body); err != nil {
		return 0, nil, false, err
	}
	return status, c.body, keepAlive, nil
}

// asciiEqualFold reports whether b equals the lower-case ASCII s, ignoring case.
func asciiEqualFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range b {
		if b[i]|0x20 != s[i] {
			return false
		}
	}
	return true
}

// histogram records latencies with about 1% precision: 128 linear
// sub-buckets per power of two.
type histogram struct {
	counts [64 * 128]uint64
	n      uint64
}

func bucketOf(ns uint64) int {
	if ns < 128 {
		return int(ns)
	}
	e := bits.Len64(ns) - 7 // ns>>e is in [64, 128)
	return e*128 + int(ns>>e)
}

func bucketValue(b int) uint64 {
	if b < 128 {
		return uint64(b)
	}
	e := b / 128
	return uint64(b%128) << e
}

func (h *histogram) add(d time.Duration) {
	h.counts[bucketOf(uint64(d))]++
	h.n++
}

func (h *histogram) merge(o *histogram) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
}

// quantile returns the latency below which the fraction q of samples fell.
func (h *histogram) quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := uint64(q * float64(h.n))
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen > rank {
			return time.Duration(bucketValue(i))
		}
	}
	return 0
}

// route is one of the workload's requests and how to check its reply.
type route struct {
	name, method, path string
	// check verifies a 200 reply's body against the client's state and
	// updates it; it returns false for a wrong answer.
	check func(cl *client, body []byte) bool
}

var (
	routeIncr = route{"incr", "POST", "/incr", func(cl *client, body []byte) bool {
		got, ok := parseInt(body)
		if !ok || got != cl.want+1 {
			if ok {
				cl.want = got // resynchronise, so one loss is counted once
			}
			return false
		}
		cl.want = got
		return true
	}}
	routeRead = route{"read", "GET", "/read", func(cl *client, body []byte) bool {
		got, ok := parseInt(body)
		if ok && got != cl.want {
			cl.want = got
			return false
		}
		return ok
	}}
	routeBig = route{"big", "POST", "/big", func(cl *client, body []byte) bool {
		return string(body) == "4096"
	}}
	routes = []route{routeIncr, routeRead, routeBig}
)

func parseInt(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > 18 {
		return 0, false
	}
	var n int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

// loadResult is what one timed run measured.
type loadResult struct {
	requests, errors, wrong uint64
	elapsed                 time.Duration
	hist                    histogram
	firstErr                error
}

func (r *loadResult) rps() float64 { return float64(r.requests) / r.elapsed.Seconds() }

// runLoad sends rt's request from conns connections for d, each connection
// cycling through its own slice of clients, so that no two requests for one
// session are ever in flight at once. With check unset (bare servers) the
// body is not inspected.
func runLoad(addr string, conns int, clients []client, rt route, d time.Duration, check bool) *loadResult {
	var (
		mu    sync.Mutex
		total loadResult
		wg    sync.WaitGroup
		stop  atomic.Bool
	)
	start := time.Now()
	for w := 0; w < conns; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			local := new(loadResult)
			c := newConn(addr)
			defer c.close()
			var mine []client
			if len(clients) > 0 {
				lo, hi := w*len(clients)/conns, (w+1)*len(clients)/conns
				mine = clients[lo:hi]
			}
			for i := 0; !stop.Load(); i++ {
				var cl *client
				if len(mine) > 0 {
					cl = &mine[i%len(mine)]
				}
				t0 := time.Now()
				status, body, err := c.do(rt.method, rt.path, cl)
				local.hist.add(time.Since(t0))
				local.requests++
				switch {
				case err != nil:
					local.errors++
					if local.firstErr == nil {
						local.firstErr = err
					}
				case status != 200:
					local.errors++
					if local.firstErr == nil {
						local.firstErr = fmt.Errorf("status %d: %.80q", status, body)
					}
				case check && !rt.check(cl, body):
					local.wrong++
					if local.firstErr == nil {
						local.firstErr = fmt.Errorf("wrong %s reply %.40q, want %d", rt.name, body, cl.want)
					}
				}
			}
			mu.Lock()
			total.requests += local.requests
			total.errors += local.errors
			total.wrong += local.wrong
			total.hist.merge(&local.hist)
			if total.firstErr == nil {
				total.firstErr = local.firstErr
			}
			mu.Unlock()
		}(w)
	}
	time.Sleep(d)
	stop.Store(true)
	wg.Wait()
	total.elapsed = time.Since(start)
	return &total
}

// createSessions gives every client a session: one increment each, spread
// over conns connections, so each counter starts at 1.
func createSessions(addr string, conns int, clients []client) error {
	var (
		wg       sync.WaitGroup
		firstErr atomic.Pointer[error]
	)
	for w := 0; w < conns; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			c := newConn(addr)
			defer c.close()
			for i := w; i < len(clients); i += conns {
				cl := &clients[i]
				status, body, err := c.do(routeIncr.method, routeIncr.path, cl)
				if err == nil && (status != 200 || string(body) != "1" || len(cl.cookie) == 0) {
					err = fmt.Errorf("creating a session: status %d, body %.40q, cookie %q", status, body, cl.cookie)
				}
				if err != nil {
					firstErr.CompareAndSwap(nil, &err)
					return
				}
				cl.want = 1
			}
		}(w)
	}
	wg.Wait()
	if p := firstErr.Load(); p != nil {
		return *p
	}
	return nil
}

// verify reads up to sample clients' counters back and returns how many
// increments the server acknowledged but no longer has.
func verify(addr string, clients []client, sample int) (lost int64, err error) {
	c := newConn(addr)
	defer c.close()
	step := max(1, len(clients)/max(1, sample))
	for i := 0; i < len(clients); i += step {
		cl := &clients[i]
		probe := client{cookie: cl.cookie}
		status, body, err := c.do(routeRead.method, routeRead.path, &probe)
		if err != nil {
			return lost, err
		}
		got, ok := parseInt(body)
		if status != 200 || !ok {
			return lost, fmt.Errorf("reading a counter back: status %d, body %.40q", status, body)
		}
		if got < cl.want {
			lost += cl.want - got
		}
	}
	return lost, nil
}

// contention drives conns connections at one shared session for d and
// counts the increments acknowledged against those the session kept.
func contention(addr string, conns int, d time.Duration) (acked, lost int64, r *loadResult, err error) {
	var owner client
	c := newConn(addr)
	status, body, err := c.do(routeIncr.method, routeIncr.path, &owner)
	c.close()
	if err != nil || status != 200 || string(body) != "1" {
		return 0, 0, nil, fmt.Errorf("creating the shared session: status %d body %.40q err %v", status, body, err)
	}
	// Every connection sends the same cookie; each gets its own copy of the
	// client so that cookie updates do not race.
	clients := make([]client, conns)
	for i := range clients {
		clients[i] = client{cookie: bytes.Clone(owner.cookie)}
	}
	noCheck := route{routeIncr.name, routeIncr.method, routeIncr.path, func(*client, []byte) bool { return true }}
	r = runLoad(addr, conns, clients, noCheck, d, true)
	acked = int64(r.requests - r.errors)
	probe := client{cookie: owner.cookie}
	c = newConn(addr)
	defer c.close()
	status, body, err = c.do(routeRead.method, routeRead.path, &probe)
	got, ok := parseInt(body)
	if err != nil || status != 200 || !ok {
		return acked, 0, r, fmt.Errorf("reading the shared counter: status %d body %.40q err %v", status, body, err)
	}
	return acked, acked - (got - 1), r, nil
}
