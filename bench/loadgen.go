package main

import (
	"bytes"
	"errors"
	"fmt"
	"math/bits"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// The load generator speaks just enough HTTP/1.1 to drive the servers here:
// one request in flight per keep-alive connection, Content-Length bodies,
// Set-Cookie tracked per simulated client. It allocates nothing per request
// and parses nothing it does not need, so that a bare fasthttp server (the
// ceiling every contender is measured against) runs out of CPU before the
// generator does: here the server takes ~7.6 µs of CPU per request and the
// generator ~7.0, and wrk drives the same server no faster. Goroutines per
// connection, net/http's client or fasthttp's did not keep up.

// client is one simulated browser: its cookies and what its counter should be.
type client struct {
	cookie []byte // "a=b; c=d", ready for the Cookie header
	want   int64  // the counter value the server last acknowledged
	// lost counts the acknowledged increments a reply showed missing: a
	// counter found below what the server had acknowledged. ahead counts
	// the replies with a counter above it: another session's, as a rule.
	lost, ahead int64
}

// setCookie applies one Set-Cookie header value to the client's cookies:
// an empty value or Max-Age=0 deletes the cookie, anything else replaces it.
// A server that re-sends the cookie it already set, as most do on every
// write, costs a comparison and no allocation.
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
	deleted := eq == len(pair)-1 || containsFold(line, "max-age=0") || containsFold(line, "max-age=-")
	if !deleted && bytes.Equal(c.cookie, pair) {
		return
	}
	name := pair[:eq]
	var out []byte
	for rest := c.cookie; len(rest) > 0; {
		kv := rest
		if i := bytes.Index(rest, []byte("; ")); i >= 0 {
			kv, rest = rest[:i], rest[i+2:]
		} else {
			rest = nil
		}
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

// containsFold reports whether b contains the lower-case ASCII s, ignoring case.
func containsFold(b []byte, s string) bool {
	for i := 0; i+len(s) <= len(b); i++ {
		if asciiEqualFold(b[i:i+len(s)], s) {
			return true
		}
	}
	return false
}

func appendCookie(dst, kv []byte) []byte {
	if len(dst) > 0 {
		dst = append(dst, "; "...)
	}
	return append(dst, kv...)
}

// conn is one keep-alive connection driven one blocking request at a time:
// for setting up sessions and reading them back, not for timed load (see
// runLoad).
type conn struct {
	addr string
	nc   net.Conn
	in   inbuf
	req  []byte
}

func newConn(addr string) *conn { return &conn{addr: addr, req: make([]byte, 0, 512)} }

func (c *conn) close() {
	if c.nc != nil {
		c.nc.Close()
		c.nc = nil
	}
	c.in.reset()
}

// do sends one request and reads the response. Set-Cookie headers go to
// cl; the body is returned (valid until the next call).
func (c *conn) do(method, path string, cl *client) (status int, body []byte, err error) {
	if c.nc == nil {
		nc, err := net.DialTimeout("tcp", c.addr, 5*time.Second)
		if err != nil {
			return 0, nil, err
		}
		c.nc = nc
	}
	c.req = appendRequest(c.req[:0], method, path, cl)
	c.nc.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.nc.Write(c.req); err != nil {
		c.close()
		return 0, nil, err
	}
	for {
		r, err := c.in.next(cl)
		if err != nil {
			c.close()
			return 0, nil, err
		}
		if r.complete {
			if !r.keepAlive {
				defer c.close()
			}
			return r.status, r.body, nil
		}
		n, err := c.nc.Read(c.in.space())
		c.in.end += n
		if err != nil && n == 0 {
			c.close()
			return 0, nil, err
		}
	}
}

// appendRequest writes a request with the client's cookies.
func appendRequest(req []byte, method, path string, cl *client) []byte {
	req = append(req, method...)
	req = append(req, ' ')
	req = append(req, path...)
	req = append(req, " HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n"...)
	if cl != nil && len(cl.cookie) > 0 {
		req = append(req, "Cookie: "...)
		req = append(req, cl.cookie...)
		req = append(req, "\r\n"...)
	}
	return append(req, "\r\n"...)
}

// inbuf holds the bytes read from a connection and not yet parsed.
type inbuf struct {
	buf        []byte
	start, end int
}

func (b *inbuf) reset() { b.start, b.end = 0, 0 }

// space returns room to read into, compacting or growing the buffer.
func (b *inbuf) space() []byte {
	if b.buf == nil {
		b.buf = make([]byte, 16<<10)
	}
	if b.end == len(b.buf) {
		if b.start > 0 {
			b.end = copy(b.buf, b.buf[b.start:b.end])
			b.start = 0
		} else {
			b.buf = append(b.buf, make([]byte, len(b.buf))...)
		}
	}
	return b.buf[b.end:]
}

// response is one parsed response; body points into the connection's
// buffer and is valid until the next read.
type response struct {
	complete  bool
	status    int
	body      []byte
	keepAlive bool
}

// next parses the response at the head of the buffer if all of it has
// arrived, applying its Set-Cookie headers to cl.
func (b *inbuf) next(cl *client) (response, error) {
	data := b.buf[b.start:b.end]
	headEnd := bytes.Index(data, []byte("\r\n\r\n"))
	if headEnd < 0 {
		return response{}, nil
	}
	head := data[:headEnd+2]
	// "HTTP/1.1 200 OK"
	if len(head) < 12 || !bytes.HasPrefix(head, []byte("HTTP/1.")) {
		return response{}, errBadResponse
	}
	r := response{status: int(head[9]-'0')*100 + int(head[10]-'0')*10 + int(head[11]-'0'), keepAlive: true}
	length := -1
	var cookies [40][]byte // a session split over 32 cookies, and then some
	nCookies := 0
	lines := head[bytes.IndexByte(head, '\n')+1:]
	for len(lines) > 0 {
		eol := bytes.IndexByte(lines, '\n')
		line := lines[:eol]
		lines = lines[eol+1:]
		colon := bytes.IndexByte(line, ':')
		if colon < 0 {
			return response{}, errBadResponse
		}
		name, value := line[:colon], bytes.TrimSpace(line[colon+1:])
		switch {
		case asciiEqualFold(name, "content-length"):
			n, ok := parseInt(value)
			if !ok {
				return response{}, errBadResponse
			}
			length = int(n)
		case asciiEqualFold(name, "set-cookie"):
			if nCookies == len(cookies) {
				return response{}, fmt.Errorf("%w: more than %d Set-Cookie headers", errBadResponse, len(cookies))
			}
			cookies[nCookies] = value
			nCookies++
		case asciiEqualFold(name, "connection"):
			r.keepAlive = !asciiEqualFold(value, "close")
		case asciiEqualFold(name, "transfer-encoding"):
			return response{}, fmt.Errorf("%w: chunked body", errBadResponse)
		}
	}
	if length < 0 {
		return response{}, fmt.Errorf("%w: no Content-Length", errBadResponse)
	}
	total := headEnd + 4 + length
	if len(data) < total {
		return response{}, nil
	}
	if cl != nil {
		for _, c := range cookies[:nCookies] {
			cl.setCookie(c)
		}
	}
	r.complete, r.body = true, data[headEnd+4:total]
	b.start += total
	if b.start == b.end {
		b.reset()
	}
	return r, nil
}

// errBadResponse marks a response the generator could not make sense of.
var errBadResponse = errors.New("malformed response")

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

// merge adds o's samples to h.
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
				if got <= cl.want {
					cl.lost += cl.want - (got - 1) // the counter was got-1, not want
				} else {
					cl.ahead++
				}
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
			if got < cl.want {
				cl.lost += cl.want - got
			} else {
				cl.ahead++
			}
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
	ok                      uint64 // 200 replies that passed the check
	bytesIn, bytesOut       uint64 // read (responses, headers and bodies) and written (requests)
	elapsed                 time.Duration
	hist                    histogram
	firstErr                error
}

func (r *loadResult) rps() float64 { return float64(r.requests) / r.elapsed.Seconds() }

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
	acked = int64(r.ok)
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
