package e2e

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/kvsession/kvsession"
	"github.com/kvsession/kvsession/kvfasthttp"
	"github.com/kvsession/kvsession/store"
	"github.com/kvsession/kvsession/store/memstore"
)

// Hostile requests over real TCP connections, written byte by byte so that
// nothing (net/http's client, say) tidies them up first, and responses read
// the same way, so that a header injected into one would be seen as sent.
// TestHostileCookiesGetFreshSession (kvfasthttp/middleware_test.go) covers
// single bad cookie values through net/http; this file covers what only raw
// bytes can send: oversized headers, duplicates, control bytes, thousands
// of cookies. The raw exchange itself is in helpers_test.go.

// errorLog is a slog.Handler that keeps the messages of Error records: the
// middleware's default error handler logs one for every 500 it answers.
type errorLog struct {
	mu   sync.Mutex
	msgs []string
}

func (h *errorLog) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelError }
func (h *errorLog) WithAttrs([]slog.Attr) slog.Handler           { return h }
func (h *errorLog) WithGroup(string) slog.Handler                { return h }
func (h *errorLog) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.msgs = append(h.msgs, r.Message)
	return nil
}

func (h *errorLog) all() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.msgs...)
}

// hostileEnv is one backend on a memory store behind two servers on
// loopback TCP: one with fasthttp's default read buffer (4 KB of request
// header), one with a raised buffer.
type hostileEnv struct {
	small, big string // addresses
	errs       *errorLog
	panics     chan any
}

const raisedReadBuffer = 128 << 10

func startHostile(t *testing.T) *hostileEnv {
	t.Helper()
	e := &hostileEnv{errs: &errorLog{}, panics: make(chan any, 16)}
	st := memstore.New(memstore.Options{})
	reg := store.NewRegistry(nil)
	if err := reg.Register("sessions", st); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { reg.Close() })
	b, err := kvsession.New(kvsession.Config{Logger: slog.New(e.errs)}, reg)
	if err != nil {
		t.Fatal(err)
	}
	e.small = e.listen(t, b, kvfasthttp.Options{})
	e.big = e.listen(t, b, kvfasthttp.Options{ReadBufferSize: raisedReadBuffer})
	return e
}

func (e *hostileEnv) listen(t *testing.T, b kvsession.Backend, opts kvfasthttp.Options) string {
	t.Helper()
	mw, err := kvfasthttp.New(b, opts)
	if err != nil {
		t.Fatal(err)
	}
	fs := mw.NewServer(app)
	if want := max(opts.ReadBufferSize, kvfasthttp.DefaultReadBufferSize); fs.ReadBufferSize != want {
		t.Fatalf("NewServer ReadBufferSize %d, want %d", fs.ReadBufferSize, want)
	}
	// fasthttp does not recover panics: one would end the test binary.
	// Recovering here names it, and answers 500, which the test refuses.
	h := fs.Handler
	fs.Handler = func(ctx *fasthttp.RequestCtx) {
		defer func() {
			if r := recover(); r != nil {
				e.panics <- r
				ctx.Error("panic", fasthttp.StatusInternalServerError)
			}
		}()
		h(ctx)
	}
	fs.Logger = quietLogger{}
	return listen(t, fs)
}

// quietLogger drops fasthttp's own log lines (one per refused request).
type quietLogger struct{}

func (quietLogger) Printf(string, ...any) {}

// setCookieLine is every Set-Cookie the server-side backend writes with the
// default Config: the session cookie (or a segment name, when expiring
// cookies another backend left) with an id or empty, and fixed attributes.
// A live cookie has Max-Age alone; one being deleted has Max-Age=0 and
// Expires in 1970 both.
var setCookieLine = regexp.MustCompile(`^session(-[0-9]{1,2})?=([A-Za-z0-9_-]{43})?; Path=/; ` +
	`(Max-Age=[1-9][0-9]*|Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT); HttpOnly; SameSite=Lax$`)

// responseHeaders are the only headers these responses may carry.
var responseHeaders = map[string]bool{
	"Server": true, "Date": true, "Content-Type": true, "Content-Length": true, "Connection": true,
	"Set-Cookie": true, "Vary": true, "Cache-Control": true,
}

// checkResponse checks that a response holds nothing taken from the request
// that caused it, and returns the session id it sets, if any.
func checkResponse(t *testing.T, resp *rawResponse) string {
	t.Helper()
	id := ""
	for _, h := range resp.headers {
		name, value := h[0], h[1]
		if !responseHeaders[name] {
			t.Errorf("unexpected response header %q: %q", name, value)
		}
		if strings.Contains(strings.ToLower(value), "evil") {
			t.Errorf("response header %s: %q carries the request's text", name, value)
		}
		if name != "Set-Cookie" {
			continue
		}
		m := setCookieLine.FindStringSubmatch(value)
		if m == nil {
			t.Errorf("Set-Cookie %q is not one the backend writes", value)
			continue
		}
		if m[2] == "" {
			if !strings.Contains(value, "Max-Age=0;") {
				t.Errorf("Set-Cookie %q: no id, yet not expiring", value)
			}
			continue
		}
		if m[1] != "" || id != "" {
			t.Errorf("Set-Cookie %q: a second id cookie, or an id in a segment", value)
		}
		id = m[2]
	}
	return id
}

// goodClient counts on its own session, alternating between the two
// servers over keep-alive connections, until stop is closed. It reports
// each correct answer on progress and stops at the first wrong one.
type goodClient struct {
	progress chan int      // the counter value just checked (latest only)
	failed   chan struct{} // closed when it stopped on an error
	done     chan struct{} // closed when it returned
	n        int           // requests answered correctly
}

func runGoodClient(t *testing.T, addrs []string, stop <-chan struct{}) *goodClient {
	g := &goodClient{progress: make(chan int, 1), failed: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(g.done)
		fail := func(format string, args ...any) {
			t.Errorf("well-behaved client, request %d: "+format, append([]any{g.n + 1}, args...)...)
			close(g.failed)
		}
		conns := make([]net.Conn, len(addrs))
		readers := make([]*bufio.Reader, len(addrs))
		for i, a := range addrs {
			c, err := net.Dial("tcp", a)
			if err != nil {
				fail("%v", err)
				return
			}
			defer c.Close()
			conns[i], readers[i] = c, bufio.NewReader(c)
		}
		id := ""
		for {
			select {
			case <-stop:
				return
			default:
			}
			i := g.n % len(conns)
			cookie := ""
			if id != "" {
				cookie = "Cookie: session=" + id + "\r\n"
			}
			conns[i].SetDeadline(time.Now().Add(time.Minute)) // a hang fails, not a slow answer
			if _, err := conns[i].Write(counterRequest(cookie)); err != nil {
				fail("%v", err)
				return
			}
			resp, err := readRawResponse(readers[i])
			if err != nil {
				fail("%v", err)
				return
			}
			if want := strconv.Itoa(g.n + 1); resp.status != 200 || resp.body != want {
				fail("%d %q, want 200 %q", resp.status, resp.body, want)
				return
			}
			for _, sc := range resp.header("Set-Cookie") {
				got, _, _ := strings.Cut(strings.TrimPrefix(sc, "session="), ";")
				if id != "" && got != id {
					fail("the session moved from %q to %q", id, got)
					return
				}
				id = got
			}
			if id == "" {
				fail("no session cookie")
				return
			}
			g.n++
			select { // keep only the latest
			case <-g.progress:
			default:
			}
			g.progress <- g.n
		}
	}()
	return g
}

// next waits until the client has answered one more request than when it
// was called, so that every hostile request is followed by a good one.
func (g *goodClient) next(t *testing.T) {
	t.Helper()
	select {
	case <-g.progress: // answered before this call: drop it
	default:
	}
	select {
	case <-g.progress:
	case <-g.failed:
		t.FailNow()
	}
}

// outcome is what a hostile request must get.
type outcome int

const (
	// fresh: 200 from a new session (counter at 1) under an id the
	// request did not carry.
	fresh outcome = iota
	// freshOrRejected: fresh, or 400 from fasthttp's own parser, which
	// refuses some control bytes before any handler runs.
	freshOrRejected
	// refused: fasthttp's 431 for a header over its read buffer, or the
	// connection closed without an answer. The session layer never runs.
	refused
	// continues: the request's own live session, buried in the header,
	// is found: its counter goes on and its id is kept.
	continues
)

func (o outcome) String() string {
	return [...]string{"fresh", "fresh or 400", "refused (431 or close)", "continues"}[o]
}

// cookieHeaderOfSize returns a Cookie header value of exactly n bytes made
// of many small cookies, with the session cookie set to session among them
// (none if session is "").
func cookieHeaderOfSize(n int, session string) string {
	var b strings.Builder
	if session != "" {
		b.WriteString("session=" + session + "; ")
	}
	for i := 0; b.Len() < n; i++ {
		fmt.Fprintf(&b, "c%d=%s; ", i, strings.Repeat("v", i%40))
	}
	return b.String()[:n]
}

// manyCookies returns count cookies made by cookie(i), with extra inserted
// in the middle.
func manyCookies(count int, cookie func(i int) string, extra string) string {
	parts := make([]string, 0, count+1)
	for i := range count {
		if i == count/2 && extra != "" {
			parts = append(parts, extra)
		}
		parts = append(parts, cookie(i))
	}
	return strings.Join(parts, "; ")
}

// hostileCase is one hostile request and what each server must answer.
type hostileCase struct {
	name       string
	headers    string  // header lines, each ending in CR LF
	small, big outcome // with the default and the raised read buffer
}

// hostileIDs are sessions the server issued before the hostile requests:
// a and b belong to other clients and must come out untouched; mine is the
// hostile client's own, at 1.
type hostileIDs struct{ a, b, mine string }

// Ids the server never issued; forged2 contains "evil", so that a response
// adopting it would also fail the injection check.
var (
	forged  = strings.Repeat("A", 43)
	forged2 = "evilEvilEvilEvilEvilEvilEvilEvilEvilEvil123"
)

func cookieLine(v string) string { return "Cookie: " + v + "\r\n" }

// runHostile sends each case to both servers, while a well-behaved client
// counts on its own session throughout. No request may get a 500 or cause
// a panic, no response may carry anything taken from its request, no
// session may be adopted from a cookie the server did not issue to that
// client, the well-behaved client must get one correct answer after every
// hostile request, and the other clients' sessions must be unchanged.
func runHostile(t *testing.T, makeCases func(ids hostileIDs) []hostileCase) {
	e := startHostile(t)
	issue := func(times int) string {
		t.Helper()
		id := ""
		for range times {
			cookie := ""
			if id != "" {
				cookie = cookieLine("session=" + id)
			}
			resp, err := exchange(e.big, counterRequest(cookie))
			if err != nil || resp == nil || resp.status != 200 {
				t.Fatalf("issuing a session: %+v, %v", resp, err)
			}
			if got := checkResponse(t, resp); got != "" {
				id = got
			}
		}
		return id
	}
	ids := hostileIDs{a: issue(5), b: issue(7), mine: issue(1)}
	mineCount := 1
	cases := makeCases(ids)

	stop := make(chan struct{})
	good := runGoodClient(t, []string{e.big, e.small}, stop)
	var stopOnce sync.Once
	stopGood := func() { stopOnce.Do(func() { close(stop) }); <-good.done }
	defer stopGood()
	for _, tc := range cases {
		for _, srv := range []struct {
			name string
			addr string
			want outcome
		}{{"default buffer", e.small, tc.small}, {"raised buffer", e.big, tc.big}} {
			t.Run(tc.name+"/"+srv.name, func(t *testing.T) {
				req := counterRequest(tc.headers + "Connection: close\r\n")
				resp, err := exchange(srv.addr, req)
				if err != nil {
					t.Fatalf("%v (want %v)", err, srv.want)
				}
				if resp == nil {
					if srv.want != refused {
						t.Fatalf("connection closed without a response; want %v", srv.want)
					}
					good.next(t)
					return
				}
				id := checkResponse(t, resp)
				switch {
				case resp.status == 200 && (srv.want == fresh || srv.want == freshOrRejected):
					if resp.body != "1" || id == "" {
						t.Fatalf("200 %q with id %q; want a fresh session counting 1", resp.body, id)
					}
					if bytes.Contains(req, []byte(id)) {
						t.Fatalf("the client-chosen id %q was adopted", id)
					}
				case resp.status == 400 && srv.want == freshOrRejected,
					resp.status == 431 && srv.want == refused:
					if id != "" {
						t.Fatalf("%d with a session cookie", resp.status)
					}
				case resp.status == 200 && srv.want == continues:
					mineCount++
					// No Set-Cookie: the client keeps its own cookie,
					// whose expiry is not due to move (cookierefresh.go).
					if id == "" {
						id = ids.mine
					}
					if want := strconv.Itoa(mineCount); resp.body != want || id != ids.mine {
						t.Fatalf("200 %q with id %q; want %s on the client's own session", resp.body, id, want)
					}
				default:
					t.Fatalf("%d %q; want %v", resp.status, resp.body, srv.want)
				}
				good.next(t)
			})
		}
	}

	for _, s := range []struct {
		id   string
		want string
	}{{ids.a, "5"}, {ids.b, "7"}, {ids.mine, strconv.Itoa(mineCount)}} {
		req := []byte("GET /read HTTP/1.1\r\nHost: example.test\r\nCookie: session=" + s.id + "\r\nConnection: close\r\n\r\n")
		resp, err := exchange(e.big, req)
		if err != nil || resp == nil || resp.status != 200 || resp.body != s.want {
			t.Fatalf("session %s after the hostile requests: %+v, %v; want %s", s.id, resp, err, s.want)
		}
	}
	stopGood()
	if !t.Failed() && good.n < 2*len(cases) {
		t.Fatalf("the well-behaved client got %d answers during %d hostile requests", good.n, 2*len(cases))
	}
	select {
	case p := <-e.panics:
		t.Fatalf("a handler panicked: %v", p)
	default:
	}
	if errs := e.errs.all(); len(errs) != 0 {
		t.Fatalf("the session layer logged errors (each a 500): %q", errs)
	}
}

// TestOversizedCookieHeadersOverTCP: Cookie headers of 4 to 64 KB. With
// fasthttp's default read buffer they never reach the session layer
// (fasthttp answers 431 or closes); with a raised buffer they do, and get
// a fresh session.
func TestOversizedCookieHeadersOverTCP(t *testing.T) {
	runHostile(t, func(hostileIDs) []hostileCase {
		var cases []hostileCase
		for _, kb := range []int{4, 8, 32, 64} {
			n := kb << 10
			cases = append(cases,
				hostileCase{fmt.Sprintf("%d KB session cookie", kb), cookieLine("session=" + strings.Repeat("A", n-len("session="))), refused, fresh},
				hostileCase{fmt.Sprintf("%d KB of cookies, forged session", kb), cookieLine(cookieHeaderOfSize(n, forged)), refused, fresh},
				hostileCase{fmt.Sprintf("%d KB of cookies, no session", kb), cookieLine(cookieHeaderOfSize(n, "")), refused, fresh},
			)
		}
		return cases
	})
}

// TestDuplicateSessionCookiesOverTCP: the session cookie twice may be a
// sibling site's planted beside ours, so neither is adopted, whichever is
// valid, and the sessions they name are left alone.
func TestDuplicateSessionCookiesOverTCP(t *testing.T) {
	runHostile(t, func(ids hostileIDs) []hostileCase {
		a, b := ids.a, ids.b
		return []hostileCase{
			{"live id twice", cookieLine("session=" + a + "; session=" + a), fresh, fresh},
			{"live id, then forged", cookieLine("session=" + a + "; session=" + forged), fresh, fresh},
			{"forged, then live id", cookieLine("session=" + forged + "; session=" + a), fresh, fresh},
			{"two live ids", cookieLine("session=" + a + "; session=" + b), fresh, fresh},
			{"live id, then garbage", cookieLine("session=" + a + "; session=%00evil"), fresh, fresh},
			{"live id and forged on two Cookie lines", cookieLine("session="+a) + cookieLine("session="+forged2), fresh, fresh},
			{"live id quoted and bare", cookieLine(`session="` + a + `"; session=` + a), fresh, fresh},
			{"live id whole and in segments", cookieLine("session=" + a + "; session-0=0.2." + b + "; session-1=1.2."), fresh, fresh},
		}
	})
}

// TestControlBytesInCookiesOverTCP: CR, LF and NUL inside cookie values.
// fasthttp refuses some with 400 before any handler runs; the rest reach
// the session layer and get a fresh session. Nothing of them reaches a
// response header.
func TestControlBytesInCookiesOverTCP(t *testing.T) {
	runHostile(t, func(ids hostileIDs) []hostileCase {
		a := ids.a
		return []hostileCase{
			{"CR LF and a header", cookieLine("session=" + forged + "\r\nSet-Cookie: evil=1"), fresh, fresh},
			{"bare LF and a header", "Cookie: session=" + forged2 + "\nX-Evil: 1\r\n", freshOrRejected, freshOrRejected},
			{"bare CR and a header", "Cookie: session=" + forged2 + "\rX-Evil: 1\r\n", freshOrRejected, freshOrRejected},
			{"CR inside a live id", cookieLine("session=" + a[:20] + "\r" + a[21:]), freshOrRejected, freshOrRejected},
			{"NUL inside a live id", cookieLine("session=" + a[:20] + "\x00" + a[21:]), freshOrRejected, freshOrRejected},
			{"NUL after a live id", cookieLine("session=" + a + "\x00"), freshOrRejected, freshOrRejected},
			{"NULs and evil", cookieLine("session=\x00evil\x00; evil=\x00"), freshOrRejected, freshOrRejected},
			{"folded line", "Cookie: x=1\r\n session=" + forged2 + "\r\n", freshOrRejected, freshOrRejected},
			{"quoted CR LF", cookieLine(`session="` + forged2 + "\r\nX-Evil: 1\""), freshOrRejected, freshOrRejected},
			{"escaped CR LF", cookieLine("session=x%0d%0aSet-Cookie:%20evil=1"), fresh, fresh},
		}
	})
}

// TestThousandsOfCookiesOverTCP: thousands of cookies in one header, or
// over a thousand Cookie lines. Where the header fits the read buffer, a
// pile of forged or duplicate session cookies gets a fresh session, and the
// client's own valid cookie buried in the pile is found.
func TestThousandsOfCookiesOverTCP(t *testing.T) {
	runHostile(t, func(ids hostileIDs) []hostileCase {
		plain := func(i int) string { return "k" + strconv.Itoa(i) + "=v" }
		return []hostileCase{
			{"5000 cookies", cookieLine(manyCookies(5000, plain, "")), refused, fresh},
			{"5000 empty cookies", cookieLine(strings.Repeat(";", 5000)), refused, fresh},
			{"2000 forged session cookies", cookieLine(manyCookies(2000, func(int) string { return "session=" + forged }, "")), refused, fresh},
			{"live id among 2000 forged session cookies", cookieLine(manyCookies(2000, func(int) string { return "session=" + forged2 }, "session="+ids.a)), refused, fresh},
			{"1000 segments", cookieLine(manyCookies(1000, func(i int) string { return "session-" + strconv.Itoa(i) + "=" + strconv.Itoa(i) + ".1000." }, "")), refused, fresh},
			{"1000 Cookie lines", strings.Repeat(cookieLine("k=v"), 1000), refused, fresh},
			{"own id among 5000 cookies", cookieLine(manyCookies(5000, plain, "session="+ids.mine)), refused, continues},
			{"own id on the last of 1000 Cookie lines", strings.Repeat(cookieLine("k=v"), 1000) + cookieLine("session="+ids.mine), refused, continues},
		}
	})
}
