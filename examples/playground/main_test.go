package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/kvsession/kvsession"
	"github.com/kvsession/kvsession/internal/sessiontest"
	"github.com/kvsession/kvsession/kvfasthttp"
	"github.com/kvsession/kvsession/kvfiber"
	"github.com/kvsession/kvsession/store/redisstore"
)

// Cookie keys for -secret, 32 bytes as 64 hex characters each.
var (
	keyA = strings.Repeat("a1", kvsession.SecretBytes)
	keyB = strings.Repeat("b2", kvsession.SecretBytes)
)

// backends are the two ways the playground keeps sessions, for the tests
// that must pass with either.
var backends = []struct {
	name string
	args []string
}{
	{"server", []string{"-store", "memory"}},
	{"cookie", []string{"-backend", "cookie", "-secret", keyA}},
}

// forEachBackend runs f as a subtest per backend, with the backend's flags
// and a free port.
func forEachBackend(t *testing.T, f func(t *testing.T, backend string, args []string)) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			f(t, b.name, append([]string{"-addr", "127.0.0.1:0"}, b.args...))
		})
	}
}

// serverNames are the values of -server, for the tests that must pass on
// every server.
var serverNames = []string{"fasthttp", "nethttp", "fiber"}

// forEachServer runs f as a subtest per server and backend, with their
// flags and a free port.
func forEachServer(t *testing.T, f func(t *testing.T, backend string, args []string)) {
	for _, server := range serverNames {
		t.Run(server, func(t *testing.T) {
			for _, b := range backends {
				t.Run(b.name, func(t *testing.T) {
					f(t, b.name, append([]string{"-addr", "127.0.0.1:0", "-server", server}, b.args...))
				})
			}
		})
	}
}

// envFunc returns a getenv over env, so tests never touch the process's
// environment.
func envFunc(env map[string]string) func(string) string {
	return func(k string) string { return env[k] }
}

// playground is one in-process run of the server.
type playground struct {
	base   string // http://127.0.0.1:port
	cancel context.CancelFunc
	done   chan error
	once   sync.Once
	err    error
	log    *testLog
}

// start runs the playground with args and an empty environment and waits
// until it listens. It is stopped when the test ends, if the test has not
// stopped it already.
func start(t *testing.T, args ...string) *playground {
	t.Helper()
	return startEnv(t, nil, args...)
}

// startEnv is start with the environment env.
func startEnv(t *testing.T, env map[string]string, args ...string) *playground {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	p := &playground{cancel: cancel, done: make(chan error, 1), log: &testLog{t: t}}
	addr := make(chan string, 1)
	go func() {
		p.done <- run(ctx, args, envFunc(env), p.log, func(a string) { addr <- a })
	}()
	select {
	case a := <-addr:
		p.base = "http://" + a
	case err := <-p.done:
		cancel()
		t.Fatalf("run(%q) returned before listening: %v", args, err)
	case <-time.After(5 * time.Second):
		cancel()
		t.Fatalf("run(%q) did not start listening within 5s", args)
	}
	t.Cleanup(func() {
		if err := p.stop(); err != nil {
			t.Errorf("stopping the playground: %v", err)
		}
	})
	return p
}

// stop cancels the run, as SIGTERM would, and returns what run returned.
func (p *playground) stop() error {
	p.once.Do(func() {
		p.cancel()
		select {
		case p.err = <-p.done:
		case <-time.After(shutdownTimeout + 5*time.Second):
			p.err = errors.New("run did not return after cancel")
		}
	})
	return p.err
}

// testLog sends the server's log to the test log, so it shows up only
// when a test fails (or with -v), and keeps it for tests that check it.
type testLog struct {
	t   *testing.T
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *testLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	l.buf.Write(p)
	l.mu.Unlock()
	l.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// String returns what was logged so far.
func (l *testLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// parseSetCookie parses one Set-Cookie line.
func parseSetCookie(t *testing.T, line string) *http.Cookie {
	t.Helper()
	ck, err := http.ParseSetCookie(line)
	if err != nil {
		t.Fatalf("Set-Cookie %q: %v", line, err)
	}
	return ck
}

// onlySessionCookie asserts that r set exactly one cookie, the session
// cookie, and returns its line.
func onlySessionCookie(t *testing.T, what string, r sessiontest.Response) string {
	t.Helper()
	lines := r.SetCookies()
	if len(lines) != 1 || !strings.HasPrefix(lines[0], "session=") {
		t.Fatalf("%s: Set-Cookie = %q, want one session cookie", what, lines)
	}
	return lines[0]
}

func noCookie(t *testing.T, what string, r sessiontest.Response) {
	t.Helper()
	if lines := r.SetCookies(); len(lines) != 0 {
		t.Errorf("%s: Set-Cookie = %q, want none", what, lines)
	}
}

// TestRoutes goes through every route, with either backend.
func TestRoutes(t *testing.T) { forEachServer(t, testRoutes) }

func testRoutes(t *testing.T, _ string, args []string) {
	p := start(t, args...)
	c := sessiontest.NewClient(t, p.base)

	r := c.Expect("GET", "/healthz", "", 200, "ok")
	noCookie(t, "GET /healthz", r)

	// A fresh client has an empty session, and reading it creates nothing.
	r = c.Expect("GET", "/session", "", 200, "{}")
	if ct := r.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("GET /session Content-Type = %q, want application/json", ct)
	}
	noCookie(t, "GET /session on an empty session", r)
	c.Expect("GET", "/session/name", "", 404, "not found\n")

	// The first write creates the session and its cookie.
	r = c.Expect("PUT", "/session/name", "alice", 204, "")
	line := onlySessionCookie(t, "PUT /session/name", r)
	ck := parseSetCookie(t, line)
	if !ck.HttpOnly || ck.SameSite != http.SameSiteLaxMode || ck.Path != "/" || ck.Secure {
		t.Errorf("session cookie %q: want HttpOnly, SameSite=Lax, Path=/, not Secure", line)
	}
	if !strings.Contains(line, "; Max-Age=1209600;") { // 14 days, the default
		t.Errorf("session cookie %q: want Max-Age=1209600", line)
	}
	if strings.Contains(line, "Expires=") { // only with -cookie-expires
		t.Errorf("session cookie %q: want Max-Age alone", line)
	}
	if ck.Value == "" || c.SessionCookie() == nil {
		t.Fatalf("session cookie %q not kept by the jar", line)
	}
	for _, h := range []struct{ name, want string }{{"Vary", "Cookie"}, {"Cache-Control", `no-cache="Set-Cookie"`}} {
		if got := r.Header.Get(h.name); got != h.want {
			t.Errorf("PUT /session/name %s = %q, want %q", h.name, got, h.want)
		}
	}

	c.Expect("GET", "/session/name", "", 200, "alice")
	// An unmodified session is not re-sent without -renew-on-access.
	r = c.Expect("GET", "/session/name", "", 200, "alice")
	noCookie(t, "GET /session/name without renew-on-access", r)

	c.Expect("GET", "/counter", "", 200, "1")
	c.Expect("GET", "/counter", "", 200, "2")
	c.Expect("GET", "/counter", "", 200, "3")
	c.Expect("GET", "/session/counter", "", 200, "3") // an integer, in decimal
	c.Expect("GET", "/counter?pause=1ms", "", 200, "4")
	for _, bad := range []string{"soon", "-1ms", "2s"} {
		c.Expect("GET", "/counter?pause="+bad, "", 400, "?pause= wants a duration from 0 to 1s\n")
	}
	c.Expect("DELETE", "/session/counter", "", 204, "")
	c.Expect("GET", "/counter", "", 200, "1")
	c.Expect("GET", "/counter", "", 200, "2")
	c.Expect("GET", "/counter", "", 200, "3")

	// Keys are everything after /session/, and values are stored verbatim.
	c.Expect("PUT", "/session/a/b", "x y\nz", 204, "")
	c.Expect("GET", "/session/a/b", "", 200, "x y\nz")
	c.Expect("PUT", "/session/empty", "", 204, "")
	c.Expect("GET", "/session/empty", "", 200, "")
	// "renew" is an ordinary key except for POST.
	c.Expect("PUT", "/session/renew", "r", 204, "")
	c.Expect("GET", "/session/renew", "", 200, "r")
	c.Expect("DELETE", "/session/renew", "", 204, "")
	c.Expect("DELETE", "/session/empty", "", 204, "")
	c.Expect("DELETE", "/session/a/b", "", 204, "")
	c.Expect("DELETE", "/session/never-set", "", 204, "")

	want := map[string]any{"name": "alice", "counter": float64(3)}
	if got := c.SessionJSON(); !reflect.DeepEqual(got, want) {
		t.Errorf("GET /session = %v, want %v", got, want)
	}

	c.Expect("DELETE", "/session/name", "", 204, "")
	c.Expect("GET", "/session/name", "", 404, "not found\n")
	if got := c.SessionJSON(); !reflect.DeepEqual(got, map[string]any{"counter": float64(3)}) {
		t.Errorf("GET /session after DELETE /session/name = %v", got)
	}

	// Unknown paths and empty keys are 404; known paths with the wrong
	// method are 405 and say which methods they take.
	for _, path := range []string{"/", "/nope", "/session/", "/healthz/x", "/counter/1", "/whoami/x", "/login/x", "/devices/", "/devices/x", "/devices/end/x"} {
		c.Expect("GET", path, "", 404, "not found\n")
	}
	for _, tc := range []struct{ method, path, allow string }{
		{"POST", "/healthz", "GET"},
		{"HEAD", "/healthz", "GET"},
		{"POST", "/session", "GET, DELETE"},
		{"PUT", "/session", "GET, DELETE"},
		{"POST", "/counter", "GET"},
		{"POST", "/session/name", "GET, PUT, DELETE"},
		{"PATCH", "/session/name", "GET, PUT, DELETE"},
		{"PATCH", "/session/renew", "GET, PUT, DELETE, POST"},
		{"GET", "/login?user=u", "POST"},
		{"POST", "/whoami", "GET"},
		{"GET", "/logout-all?user=u", "POST"},
		{"POST", "/devices", "GET"},
		{"GET", "/devices/end?handle=h", "POST"},
		{"DELETE", "/devices/end?handle=h", "POST"},
	} {
		r := c.Do(tc.method, tc.path, "")
		if r.Status != 405 || r.Header.Get("Allow") != tc.allow {
			t.Errorf("%s %s = %d Allow %q, want 405 Allow %q", tc.method, tc.path, r.Status, r.Header.Get("Allow"), tc.allow)
		}
		noCookie(t, tc.method+" "+tc.path, r)
	}
}

func TestRenewID(t *testing.T) { forEachServer(t, testRenewID) }

func testRenewID(t *testing.T, backend string, args []string) {
	p := start(t, args...)
	c := sessiontest.NewClient(t, p.base)
	c.Expect("PUT", "/session/user", "alice", 204, "")
	old := c.SessionCookie()
	if old == nil {
		t.Fatal("no session cookie after PUT")
	}

	r := c.Expect("POST", "/session/renew", "", 204, "")
	ck := parseSetCookie(t, onlySessionCookie(t, "POST /session/renew", r))
	if ck.Value == old.Value {
		t.Fatalf("POST /session/renew kept the session id %q", old.Value)
	}
	if got := c.SessionCookie(); got == nil || got.Value != ck.Value {
		t.Fatalf("jar holds %v after renew, want the new id %q", got, ck.Value)
	}
	if !ck.HttpOnly || ck.SameSite != http.SameSiteLaxMode {
		t.Errorf("renewed cookie %+v: want HttpOnly and SameSite=Lax", ck)
	}

	stranger := sessiontest.NewClient(t, p.base)
	if backend == "server" {
		// The old id is worthless: the data moved to the new one.
		r = stranger.Do("GET", "/session", "", old)
		if r.Status != 200 || r.Body != "{}" {
			t.Errorf("GET /session with the old cookie = %d %q, want 200 {}", r.Status, r.Body)
		}
		r = stranger.Do("GET", "/session/user", "", old)
		if r.Status != 404 {
			t.Errorf("GET /session/user with the old cookie = %d %q, want 404", r.Status, r.Body)
		}
	} else {
		// The cookie backend has no id to retire: it re-sealed the session,
		// and the old cookie, with the same data, still opens until its
		// sealed expiry (as documented on kvsession.CookieBackend).
		r = stranger.Do("GET", "/session/user", "", old)
		if r.Status != 200 || r.Body != "alice" {
			t.Errorf("GET /session/user with the pre-renew cookie = %d %q, want 200 alice", r.Status, r.Body)
		}
	}
	c.Expect("GET", "/session/user", "", 200, "alice")
	// And the new cookie works when sent by hand too, not only by the jar.
	r = stranger.Do("GET", "/session/user", "", &http.Cookie{Name: "session", Value: ck.Value})
	if r.Status != 200 || r.Body != "alice" {
		t.Errorf("GET /session/user with the new cookie = %d %q, want 200 alice", r.Status, r.Body)
	}
}

func TestDestroy(t *testing.T) { forEachServer(t, testDestroy) }

func testDestroy(t *testing.T, backend string, args []string) {
	p := start(t, args...)
	c := sessiontest.NewClient(t, p.base)
	c.Expect("PUT", "/session/user", "alice", 204, "")
	c.Expect("GET", "/counter", "", 200, "1")
	id := c.SessionCookie()

	r := c.Expect("DELETE", "/session", "", 204, "")
	line := onlySessionCookie(t, "DELETE /session", r)
	if !strings.HasPrefix(line, "session=;") || !strings.Contains(line, "; Max-Age=0;") {
		t.Errorf("DELETE /session Set-Cookie = %q, want an empty session cookie with Max-Age=0", line)
	}
	if ck := c.SessionCookie(); ck != nil {
		t.Errorf("jar still holds %v after DELETE /session", ck)
	}
	c.Expect("GET", "/session", "", 200, "{}")
	c.Expect("GET", "/counter", "", 200, "1") // a new session starts from scratch

	r = sessiontest.NewClient(t, p.base).Do("GET", "/session/user", "", id)
	if backend == "server" {
		// The data is gone from the store, not just forgotten by the client.
		if r.Status != 404 {
			t.Errorf("GET /session/user with the destroyed id = %d %q, want 404", r.Status, r.Body)
		}
	} else if r.Status != 200 || r.Body != "alice" {
		// Nothing on the server remembers the destroy: a copy of the cookie
		// taken before it still opens (as documented on
		// kvsession.CookieBackend). Should that change, this is the place
		// to notice.
		t.Errorf("GET /session/user with a pre-destroy cookie copy = %d %q, want 200 alice", r.Status, r.Body)
	}
}

// TestIDHeader: with -id-header, a client without cookies carries its id
// in the header on every server, through the routes that start, change,
// renew and destroy a session, and a browser beside it keeps its cookie.
// The server backend only: the cookie backend refuses the flag
// (TestBadArgs).
func TestIDHeader(t *testing.T) {
	for _, server := range serverNames {
		t.Run(server, func(t *testing.T) {
			p := start(t, "-addr", "127.0.0.1:0", "-server", server, "-store", "memory", "-id-header", "X-Session-Id")
			c := sessiontest.NewHeaderClient(t, p.base, "X-Session-Id")
			// answered checks the id header of r: "<fresh>" for an id other
			// than the one before, "<none>" for none, else its value; and
			// that no cookie was set.
			answered := func(what string, r sessiontest.Response, before, want string) {
				t.Helper()
				noCookie(t, what, r)
				got, ok := sessiontest.IDHeader(r, "X-Session-Id")
				switch {
				case want == "<none>" && ok:
					t.Errorf("%s: X-Session-Id %q, want none", what, got)
				case want == "<fresh>" && (!ok || got == "" || got == before):
					t.Errorf("%s: X-Session-Id %q (present: %v), want a new id", what, got, ok)
				case want != "<none>" && want != "<fresh>" && (!ok || got != want):
					t.Errorf("%s: X-Session-Id %q (present: %v), want %q", what, got, ok, want)
				}
			}
			expect := func(method, path string, status int, body string) sessiontest.Response {
				t.Helper()
				r := c.Do(method, path)
				if r.Status != status || r.Body != body {
					t.Errorf("%s %s = %d %q, want %d %q", method, path, r.Status, r.Body, status, body)
				}
				return r
			}
			answered("GET /counter, new", expect("GET", "/counter", 200, "1"), "", "<fresh>")
			first := c.ID
			answered("GET /counter", expect("GET", "/counter", 200, "2"), first, "<none>")
			answered("POST /login", expect("POST", "/login?user=alice", 204, ""), first, "<fresh>")
			answered("GET /whoami", expect("GET", "/whoami", 200, "alice"), c.ID, "<none>")
			answered("the id before the login", c.Send("GET", "/whoami", first), "", "")
			renewed := c.ID
			answered("POST /session/renew", expect("POST", "/session/renew", 204, ""), renewed, "<fresh>")
			answered("GET /counter after renew", expect("GET", "/counter", 200, "3"), c.ID, "<none>")
			answered("DELETE /session", expect("DELETE", "/session", 204, ""), "", "")
			if c.ID != "" {
				t.Fatalf("the client holds %q after DELETE /session", c.ID)
			}
			answered("GET /session after delete", expect("GET", "/session", 200, "{}"), "", "")

			// A browser beside it: served by cookie, its id in no header.
			b := sessiontest.NewClient(t, p.base)
			r := b.Expect("GET", "/counter", "", 200, "1")
			onlySessionCookie(t, "browser", r)
			if v, ok := sessiontest.IDHeader(r, "X-Session-Id"); ok {
				t.Errorf("browser: answered X-Session-Id %q", v)
			}
		})
	}
}

// TestSaveError checks that a session the library refuses to save (too
// large for the record limit, or for the cookie backend's segments) turns
// into a 500 and leaves the saved session as it was.
func TestSaveError(t *testing.T) {
	for _, server := range serverNames {
		t.Run(server, func(t *testing.T) { testSaveError(t, server) })
	}
}

func testSaveError(t *testing.T, server string) {
	for _, tc := range []struct {
		name    string
		backend int // index in backends
		size    int
	}{
		{"server/2MiB", 0, 2 << 20},
		{"cookie/2MiB", 1, 2 << 20},
		// Below MaxRecordBytes, but more than the 4 cookie segments hold.
		{"cookie/20KiB", 1, 20 << 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := start(t, append([]string{"-addr", "127.0.0.1:0", "-server", server}, backends[tc.backend].args...)...)
			c := sessiontest.NewClient(t, p.base)
			c.Expect("PUT", "/session/small", "1", 204, "")
			// The same answer on every server: sessionUnavailable's.
			r := c.Do("PUT", "/session/big", strings.Repeat("x", tc.size))
			if r.Status != 500 || r.Body != "session unavailable\n" || r.Header.Get("Content-Type") != "text/plain; charset=utf-8" ||
				r.Header.Get("Server") != serverName {
				t.Errorf("PUT of a %d-byte value = %d %q (Content-Type %q, Server %q), want 500 \"session unavailable\\n\" as text/plain from %s",
					tc.size, r.Status, r.Body, r.Header.Get("Content-Type"), r.Header.Get("Server"), serverName)
			}
			noCookie(t, "failed PUT", r)
			if log := p.log.String(); !strings.Contains(log, `level=ERROR msg="kvsession: session unavailable"`) {
				t.Errorf("the failed save is not logged:\n%s", log)
			}
			c.Expect("GET", "/session/big", "", 404, "not found\n")
			c.Expect("GET", "/session/small", "", 200, "1")
		})
	}
}

func TestFlagsReachConfig(t *testing.T) {
	forEachBackend(t, func(t *testing.T, _ string, args []string) {
		// -max-age 4s: the server backend resends an unchanged cookie once
		// its expiry would move by a hundredth of that, at least a second
		// (cookierefresh.go), so a read a second later must resend it.
		p := start(t, append(args, "-max-age", "4s", "-renew-on-access", "-cookie-expires")...)
		c := sessiontest.NewClient(t, p.base)
		r := c.Expect("PUT", "/session/k", "v", 204, "")
		if line := onlySessionCookie(t, "PUT", r); !strings.Contains(line, "; Max-Age=4; Expires=") {
			t.Errorf("Set-Cookie %q, want Max-Age=4 from -max-age 4s and Expires from -cookie-expires", line)
		}
		// With -renew-on-access a mere read refreshes the cookie: without
		// it, a read writes nothing on either backend.
		time.Sleep(1200 * time.Millisecond)
		r = c.Expect("GET", "/session/k", "", 200, "v")
		if line := onlySessionCookie(t, "GET with -renew-on-access", r); !strings.Contains(line, "; Max-Age=4;") {
			t.Errorf("Set-Cookie %q, want Max-Age=4", line)
		}
		// /healthz stays outside sessions even so, and even with a cookie.
		noCookie(t, "GET /healthz with -renew-on-access", c.Expect("GET", "/healthz", "", 200, "ok"))
	})
}

func TestBadArgs(t *testing.T) {
	cookie := []string{"-backend", "cookie"}
	withCookie := func(args ...string) []string { return append(slices.Clone(cookie), args...) }
	badHex := "zz" + keyA[2:]
	for _, tc := range []struct {
		args []string
		env  map[string]string
		want string
	}{
		{[]string{"-store", "etcd"}, nil, `unknown -store "etcd": want badger, memory or redis`},
		{[]string{"-store", "memory", "-max-age", "10ms"}, nil, "MaxAge"},
		{withCookie("-secret", keyA, "-max-age", "10ms"), nil, "MaxAge"},
		{[]string{"-store", "memory", "extra"}, nil, "unexpected arguments"},
		{[]string{"-nope"}, nil, "flag provided but not defined"},
		{[]string{"-backend", "bogus"}, nil, `unknown -backend "bogus": want server or cookie`},
		{[]string{"-server", "apache"}, nil, `unknown -server "apache": want fasthttp, nethttp or fiber`},
		{[]string{"-server", ""}, nil, `unknown -server "": want fasthttp, nethttp or fiber`},
		{[]string{"-server", "net/http"}, nil, `unknown -server "net/http": want fasthttp, nethttp or fiber`},
		{[]string{"-backend", ""}, nil, `unknown -backend "": want server or cookie`},
		{[]string{"-idle-timeout", "soon"}, nil, `invalid value "soon" for flag -idle-timeout`},
		{[]string{"-lock=maybe"}, nil, `invalid boolean value "maybe" for -lock`},
		{[]string{"-store", "redis", "-redis-addr", "127.0.0.1:1,,127.0.0.1:2"}, nil, "-redis-addr: address 2 of 3 is empty"},
		{[]string{"-store", "redis", "-redis-addr", ""}, nil, "-redis-addr: address 1 of 1 is empty"},

		// Combinations the library refuses: its message, naming the field,
		// after the flag that set it. The Badger directory is not created.
		{[]string{"-idle-timeout", "1h", "-renew-on-access"}, nil,
			"-renew-on-access: kvsession: Config.ExtendOnAccess: cannot be combined with IdleTimeout"},
		{withCookie("-secret", keyA, "-idle-timeout", "1h", "-renew-on-access"), nil,
			"-renew-on-access: kvsession: Config.ExtendOnAccess: cannot be combined with IdleTimeout"},
		{[]string{"-idle-timeout", "500ms"}, nil, "-idle-timeout: kvsession: Config.IdleTimeout: 500ms: use 0 (off) or at least a second"},
		{[]string{"-absolute-timeout", "-1s"}, nil, "-absolute-timeout: kvsession: Config.AbsoluteTimeout: -1s"},
		{withCookie("-secret", keyA, "-absolute-timeout", "10ms"), nil, "-absolute-timeout: kvsession: Config.AbsoluteTimeout: 10ms"},
		{[]string{"-renewal-timeout", "10ms"}, nil, "-renewal-timeout: kvsession: Config.RotationInterval: 10ms"},
		// The new names of renamed flags; the old ones above still work, and
		// an error names the flag as the command line spelled it.
		{[]string{"-rotation-interval", "10ms"}, nil, "-rotation-interval: kvsession: Config.RotationInterval: 10ms"},
		{[]string{"-idle-timeout", "1h", "-extend-on-access"}, nil,
			"-extend-on-access: kvsession: Config.ExtendOnAccess: cannot be combined with IdleTimeout"},
		{[]string{"-max-age", "10ms"}, nil, "-max-age: kvsession: Config.MaxAge"},
		// -max-age-limit bounds remember-me from above: never below
		// -max-age (336h by default), never above 400 days.
		{[]string{"-max-age-limit", "30m"}, nil, "-max-age-limit: kvsession: Config.MaxAgeLimit: 30m0s must be between MaxAge (336h0m0s)"},
		{[]string{"-max-age", "2h", "-max-age-limit", "1h"}, nil, "-max-age-limit: kvsession: Config.MaxAgeLimit: 1h0m0s must be between MaxAge (2h0m0s)"},
		{withCookie("-secret", keyA, "-max-age-limit", "9601h"), nil, "-max-age-limit: kvsession: Config.MaxAgeLimit: 9601h0m0s"},
		{[]string{"-max-age-limit", "forever"}, nil, `invalid value "forever" for flag -max-age-limit`},
		// The cookie backend has no id to rotate; the playground says so
		// before the library would.
		{withCookie("-secret", keyA, "-renewal-timeout", "1h"), nil, "-renewal-timeout does not apply to -backend cookie"},
		// Nor a store to list sessions from.
		{withCookie("-secret", keyA, "-record-client"), nil, "-record-client does not apply to -backend cookie"},
		{withCookie("-secret", keyA, "-admin-addr", "127.0.0.1:0", "-admin-token", "t0ken"), nil, "-admin-addr does not apply to -backend cookie"},
		// An admin port is never open without a token.
		{[]string{"-admin-addr", "127.0.0.1:0"}, nil, "-admin-addr needs -admin-token"},
		{[]string{"-store", "memory", "-admin-addr", "127.0.0.1:0", "-admin-token", ""}, nil, "-admin-addr needs -admin-token"},
		{[]string{"-admin-addr", "127.0.0.1:0", "-admin-token", "two words"}, nil, "-admin-token: byte 4 is not printable ASCII"},
		{[]string{"-admin-addr", "127.0.0.1:0", "-admin-token", "tökén"}, nil, "-admin-token: byte 2 is not printable ASCII"},
		// Nor one to carry in a header.
		{withCookie("-secret", keyA, "-id-header", "X-Session-Id"), nil, "-id-header does not apply to -backend cookie"},
		{[]string{"-id-header", "Set-Cookie"}, nil, `-id-header: kvsession: Config.IDHeader: "Set-Cookie" is a cookie field`},
		{[]string{"-id-header", "X Session"}, nil, `-id-header: kvsession: Config.IDHeader: "X Session" is not a valid header name`},

		// Malformed keys name their source and position, never their text.
		{withCookie("-secret", ""), nil, "-secret: key 1 of 1 is empty"},
		{withCookie("-secret", keyA+","), nil, "-secret: key 2 of 2 is empty"},
		{withCookie("-secret", ","+keyA), nil, "-secret: key 1 of 2 is empty"},
		{withCookie("-secret", keyA+",,"+keyB), nil, "-secret: key 2 of 3 is empty"},
		{withCookie("-secret", badHex), nil, "-secret: key 1 of 1 is not hexadecimal (character 1)"},
		{withCookie("-secret", keyB+","+keyA[:40]+"g"+keyA[41:]), nil, "-secret: key 2 of 2 is not hexadecimal (character 41)"},
		{withCookie("-secret", keyB+","+keyA[:62]), nil, "-secret: key 2 of 2 is 62 characters long, want 64 hex characters"},
		{withCookie("-secret", keyA+"00"), nil, "-secret: key 1 of 1 is 66 characters long"},
		{withCookie("-secret", keyB+","+keyA+","+keyB), nil, "-secret: key 3 of 3 is the same as key 1"},
		{cookie, map[string]string{secretEnv: keyA + ",xyz"}, "KVSESSION_SECRET: key 2 of 2 is 3 characters long"},
		{cookie, map[string]string{secretEnv: badHex}, "KVSESSION_SECRET: key 1 of 1 is not hexadecimal"},
		{cookie, map[string]string{secretEnv: " "}, "KVSESSION_SECRET: key 1 of 1 is empty"},
		// The flag wins, even when it is the malformed one.
		{withCookie("-secret", "nope"), map[string]string{secretEnv: keyA}, "-secret: key 1 of 1 is 4 characters long"},
	} {
		dir := filepath.Join(t.TempDir(), "sessions")
		args := append(slices.Clone(tc.args), "-addr", "127.0.0.1:0", "-dir", dir)
		// Should run start anyway, ready stops it at once: the test then
		// fails rather than hangs.
		ctx, cancel := context.WithCancel(context.Background())
		ready := false
		err := run(ctx, args, envFunc(tc.env), io.Discard, func(string) { ready = true; cancel() })
		cancel()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("run(%q) with env %q = %v, want an error containing %q", tc.args, tc.env, err, tc.want)
		}
		if err != nil {
			for _, secret := range []string{keyA, keyB, keyA[:62], badHex} {
				if strings.Contains(err.Error(), secret) {
					t.Errorf("run(%q): error %q shows a key", tc.args, err)
				}
			}
		}
		if ready {
			t.Errorf("run(%q) started listening", tc.args)
		}
		if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("run(%q) created the Badger directory (stat: %v)", tc.args, err)
		}
	}
}

// TestRedisSeeds: -redis-addr takes several addresses, and the playground
// starts, and keeps sessions, when the first is down. It needs the Redis
// of KVSESSION_REDIS_ADDR.
func TestRedisSeeds(t *testing.T) {
	live := os.Getenv("KVSESSION_REDIS_ADDR")
	if live == "" {
		if os.Getenv("KVSESSION_REQUIRE_REDIS") != "" {
			t.Fatal("KVSESSION_REQUIRE_REDIS is set but KVSESSION_REDIS_ADDR is not")
		}
		t.Skip("set KVSESSION_REDIS_ADDR=host:port to run the playground on Redis")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close() // a seed that is down: its connections are refused
	prefix := fmt.Sprintf("kvsession-playground-test:%d:", time.Now().UnixNano())
	t.Cleanup(func() {
		st, err := redisstore.Open(context.Background(), redisstore.Options{Addr: live, Prefix: prefix})
		if err != nil {
			t.Errorf("cleaning up: %v", err)
			return
		}
		defer st.Close()
		if err := st.DeleteAll(context.Background()); err != nil {
			t.Errorf("cleaning up: %v", err)
		}
	})

	p := start(t, "-addr", "127.0.0.1:0", "-store", "redis", "-redis-addr", dead+", "+live, "-redis-prefix", prefix)
	c := sessiontest.NewClient(t, p.base)
	c.Expect("GET", "/counter", "", 200, "1")
	c.Expect("GET", "/counter", "", 200, "2")
	if log := p.log.String(); !strings.Contains(log, "redis_addr=\""+dead+", "+live+"\"") {
		t.Errorf("the start log does not show the seeds:\n%s", log)
	}
}

func TestHelp(t *testing.T) {
	var out bytes.Buffer
	err := run(context.Background(), []string{"-h"}, nil, &out, nil)
	if !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("run(-h) = %v, want flag.ErrHelp", err)
	}
	for _, want := range []string{"-server fasthttp|nethttp|fiber", "(default \"fasthttp\")", "-backend string", "server", "cookie", "-secret KEY[,KEY...]", "64 hex characters", secretEnv, "-max-age", "-renew-on-access", "-store", "-dir",
		"-idle-timeout duration", "-absolute-timeout duration", "-renewal-timeout duration", "-lock", "(default true)",
		"-max-age-limit duration", "remember=DURATION", "-redis-addr host:port[,host:port...]",
		"-record-client", "personal data", "-admin-addr host:port", "/admin/sessions/", "-admin-token token", "Authorization: Bearer TOKEN",
		"-id-header NAME"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("usage lacks %q:\n%s", want, out.String())
		}
	}
}

// TestStartLog checks what the start log says about the backend, where the
// cookie keys came from, and which flags were ignored.
func TestStartLog(t *testing.T) {
	cb, err := kvsession.NewCookie(kvsession.Config{Secrets: [][]byte{make([]byte, kvsession.SecretBytes)}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	cookieBuffer := kvfasthttp.RequiredReadBufferSize(cb, kvfasthttp.DefaultHeaderRoom)
	if cookieBuffer <= kvfasthttp.DefaultReadBufferSize {
		t.Fatalf("RequiredReadBufferSize of the cookie backend = %d, want more than fasthttp's default", cookieBuffer)
	}
	fiberCookieBuffer := kvfiber.RequiredReadBufferSize(cb, 0)
	if fiberCookieBuffer <= kvfiber.DefaultReadBufferSize {
		t.Fatalf("kvfiber.RequiredReadBufferSize of the cookie backend = %d, want more than Fiber's default", fiberCookieBuffer)
	}
	randomKeyWarning := "will not survive a restart"

	for _, tc := range []struct {
		name    string
		args    []string
		env     map[string]string
		want    []string
		notWant []string
		noDir   bool // -dir must not be created
	}{
		{
			name:    "server",
			args:    []string{"-store", "memory"},
			env:     map[string]string{secretEnv: keyA},
			want:    []string{"server=fasthttp", "backend=server", "store=memory", "read_buffer_size=4096", "record_client=false"},
			notWant: []string{"no store", randomKeyWarning, "ignored", keyA, "admin_addr"}, // no admin port unless asked
		},
		{
			name:    "server on net/http",
			args:    []string{"-store", "memory", "-server", "nethttp"},
			want:    []string{"server=nethttp", "backend=server", "max_header_bytes=1048576"},
			notWant: []string{"read_buffer_size"},
		},
		{
			name:  "cookie on Fiber",
			args:  []string{"-backend", "cookie", "-secret", keyA, "-server", "fiber"},
			want:  []string{"server=fiber", "backend=cookie", "read_buffer_size=" + strconv.Itoa(fiberCookieBuffer)},
			noDir: true,
		},
		{
			name:    "server with -id-header",
			args:    []string{"-store", "memory", "-id-header", "X-Session-Id"},
			want:    []string{"backend=server", "id_header=X-Session-Id"},
			notWant: []string{"ignored"},
		},
		{
			name:    "server ignores -secret",
			args:    []string{"-store", "memory", "-secret", keyA},
			want:    []string{"backend=server", "-secret is ignored with -backend server"},
			notWant: []string{keyA},
		},
		{
			name: "cookie with -secret",
			args: []string{"-backend", "cookie", "-secret", keyA + "," + keyB},
			want: []string{"backend=cookie", "store=none", "no session store is opened", "revocations=memory", "forgotten at restart", "keys=2", "key_source=flag",
				"read_buffer_size=" + strconv.Itoa(cookieBuffer), "max_cookie_segments=4"},
			notWant: []string{randomKeyWarning, "-store is ignored", keyA, keyB},
			noDir:   true,
		},
		{
			name:    "cookie with the env",
			args:    []string{"-backend", "cookie"},
			env:     map[string]string{secretEnv: keyA},
			want:    []string{"backend=cookie", "store=none", "keys=1", "key_source=env"},
			notWant: []string{randomKeyWarning, keyA},
			noDir:   true,
		},
		{
			name:    "cookie with a random key",
			args:    []string{"-backend", "cookie"},
			want:    []string{"backend=cookie", "key_source=random", "level=WARN", randomKeyWarning, "-secret", secretEnv},
			notWant: []string{"-store is ignored"},
			noDir:   true,
		},
		{
			name:    "server ignores -admin-token without -admin-addr",
			args:    []string{"-store", "memory", "-admin-token", adminToken},
			want:    []string{"-admin-token is ignored without -admin-addr"},
			notWant: []string{"admin_addr", adminToken},
		},
		{
			name:  "cookie ignores -store and -dir",
			args:  []string{"-backend", "cookie", "-secret", keyA, "-store", "badger"},
			want:  []string{"store=none", "-store is ignored with -backend cookie", "-dir is ignored with -backend cookie"},
			noDir: true,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Every case names a -dir, so that the cookie cases can check
			// that it is not created (and they warn that it is ignored).
			dir := filepath.Join(t.TempDir(), "sessions")
			p := startEnv(t, tc.env, append(tc.args, "-addr", "127.0.0.1:0", "-dir", dir)...)
			// The session works, whatever the backend.
			c := sessiontest.NewClient(t, p.base)
			c.Expect("PUT", "/session/k", "v", 204, "")
			c.Expect("GET", "/session/k", "", 200, "v")
			log := p.log.String()
			for _, w := range tc.want {
				if !strings.Contains(log, w) {
					t.Errorf("log lacks %q:\n%s", w, log)
				}
			}
			for _, w := range tc.notWant {
				if strings.Contains(log, w) {
					t.Errorf("log has %q:\n%s", w, log)
				}
			}
			if _, err := os.Stat(dir); tc.noDir && !errors.Is(err, os.ErrNotExist) {
				t.Errorf("-backend cookie created %s (stat: %v)", dir, err)
			}
		})
	}
}

// setCookie is one Set-Cookie line of a response.
type setCookie struct {
	name, value, line string
	expired           bool
}

func setCookieLines(t *testing.T, r sessiontest.Response) []setCookie {
	t.Helper()
	var out []setCookie
	for _, line := range r.SetCookies() {
		ck := parseSetCookie(t, line)
		out = append(out, setCookie{name: ck.Name, value: ck.Value, line: line, expired: strings.Contains(line, "; Max-Age=0;")})
	}
	return out
}

// split separates the live cookies of a response from the expired ones, by
// name, in the order the response set them.
func split(cks []setCookie) (live, expired []string) {
	for _, ck := range cks {
		if ck.expired {
			expired = append(expired, ck.name)
		} else {
			live = append(live, ck.name)
		}
	}
	return live, expired
}

func segmentNames(n int) []string {
	names := make([]string, n)
	for i := range names {
		names[i] = "session-" + strconv.Itoa(i)
	}
	return names
}

// cookieNames returns the names of the cookies c's jar would send, sorted.
func cookieNames(c *sessiontest.Client) []string {
	var names []string
	for _, ck := range c.Cookies() {
		names = append(names, ck.Name)
	}
	slices.Sort(names)
	return names
}

// cookieHeaderBytes is the length of the Cookie header c's jar would send.
func cookieHeaderBytes(c *sessiontest.Client) int {
	req, _ := http.NewRequest("GET", c.Base+"/", nil)
	for _, ck := range c.Cookies() {
		req.AddCookie(ck)
	}
	return len(req.Header.Get("Cookie"))
}

// TestCookieBackend runs a session through the cookie backend end to end:
// counting, a value that needs several cookie segments, shrinking back to
// one cookie, and logging out.
func TestCookieBackend(t *testing.T) {
	for _, server := range serverNames {
		t.Run(server, func(t *testing.T) { testCookieBackend(t, server) })
	}
}

func testCookieBackend(t *testing.T, server string) {
	p := start(t, "-backend", "cookie", "-secret", keyA, "-addr", "127.0.0.1:0", "-server", server)
	c := sessiontest.NewClient(t, p.base)

	c.Expect("PUT", "/session/name", "alice", 204, "")
	for i := 1; i <= 3; i++ {
		c.Expect("GET", "/counter", "", 200, strconv.Itoa(i))
	}
	if got := cookieNames(c); !slices.Equal(got, []string{"session"}) {
		t.Fatalf("jar holds %q, want only the bare session cookie", got)
	}

	// 10 KB does not fit one 4 KB cookie: the session moves to segments
	// session-0 … session-(n-1), and the bare cookie is expired.
	big := strings.Repeat("0123456789", 1024)
	r := c.Expect("PUT", "/session/big", big, 204, "")
	cks := setCookieLines(t, r)
	live, expired := split(cks)
	n := len(live)
	if n < 2 || n > kvsession.DefaultMaxCookieSegments || !slices.Equal(live, segmentNames(n)) {
		t.Fatalf("PUT of 10 KB set live cookies %q, want session-0 … session-(n-1) with 2 ≤ n ≤ %d", live, kvsession.DefaultMaxCookieSegments)
	}
	if !slices.Equal(expired, []string{"session"}) {
		t.Errorf("PUT of 10 KB expired %q, want the bare session cookie", expired)
	}
	for i, ck := range cks[:n] {
		if len(ck.line) > kvsession.MaxCookieLineBytes {
			t.Errorf("%s: Set-Cookie line of %d bytes, over %d", ck.name, len(ck.line), kvsession.MaxCookieLineBytes)
		}
		if prefix := fmt.Sprintf("%d.%d.", i, n); !strings.HasPrefix(ck.value, prefix) {
			t.Errorf("%s value starts %.10q, want %q", ck.name, ck.value, prefix)
		}
		if !strings.Contains(ck.line, "; Max-Age=1209600;") || !strings.Contains(ck.line, "; HttpOnly") {
			t.Errorf("%s: Set-Cookie %.60q… lacks Max-Age or HttpOnly", ck.name, ck.line)
		}
	}
	if got := cookieNames(c); !slices.Equal(got, segmentNames(n)) {
		t.Fatalf("jar holds %q after the big PUT, want %q", got, segmentNames(n))
	}
	// The server must read a Cookie header far larger than fasthttp's
	// default buffer (Fiber's too), or these requests would fail with 431.
	if h := cookieHeaderBytes(c); h <= kvfasthttp.DefaultReadBufferSize {
		t.Errorf("Cookie header of %d bytes: the test does not exercise the read buffer", h)
	}
	if r := c.Do("GET", "/session/big", ""); r.Status != 200 || r.Body != big {
		t.Errorf("GET /session/big = %d with %d bytes, want 200 with the %d bytes stored", r.Status, len(r.Body), len(big))
	}
	c.Expect("GET", "/session/name", "", 200, "alice")
	r = c.Expect("GET", "/counter", "", 200, "4")
	if live, expired := split(setCookieLines(t, r)); !slices.Equal(live, segmentNames(n)) || len(expired) != 0 {
		t.Errorf("GET /counter set %q and expired %q, want the same %d segments and nothing expired", live, expired, n)
	}
	want := map[string]any{"name": "alice", "counter": float64(4), "big": big}
	if got := c.SessionJSON(); !reflect.DeepEqual(got, want) {
		t.Errorf("GET /session does not hold name, counter and big (%d keys)", len(got))
	}

	// Shrinking moves the session back to the bare cookie and expires the
	// segments.
	r = c.Expect("DELETE", "/session/big", "", 204, "")
	live, expired = split(setCookieLines(t, r))
	if !slices.Equal(live, []string{"session"}) || !slices.Equal(expired, segmentNames(n)) {
		t.Errorf("DELETE /session/big set %q and expired %q, want session set and %q expired", live, expired, segmentNames(n))
	}
	if got := cookieNames(c); !slices.Equal(got, []string{"session"}) {
		t.Errorf("jar holds %q after shrinking, want only session", got)
	}
	c.Expect("GET", "/counter", "", 200, "5")
	c.Expect("GET", "/session/big", "", 404, "not found\n")

	// Logging out with the session in segments expires every one of them.
	c.Expect("PUT", "/session/big", big, 204, "")
	r = c.Expect("DELETE", "/session", "", 204, "")
	live, expired = split(setCookieLines(t, r))
	if len(live) != 0 || !slices.Equal(expired, segmentNames(n)) {
		t.Errorf("DELETE /session set %q and expired %q, want %q expired and nothing set", live, expired, segmentNames(n))
	}
	if got := cookieNames(c); len(got) != 0 {
		t.Errorf("jar holds %q after logout, want nothing", got)
	}
	c.Expect("GET", "/session", "", 200, "{}")
	c.Expect("GET", "/counter", "", 200, "1")
}

// restart stops p and starts a new playground with env and args, which c
// then talks to. c keeps its cookies: a cookie jar, like a browser, keys
// them by host and not by port.
func restart(t *testing.T, p *playground, c *sessiontest.Client, env map[string]string, args ...string) *playground {
	t.Helper()
	if err := p.stop(); err != nil {
		t.Fatalf("stopping: %v", err)
	}
	p = startEnv(t, env, append(args, "-addr", "127.0.0.1:0")...)
	c.Base = p.base
	return p
}

// TestCookieRestart checks which keys open a cookie sealed before a restart.
func TestCookieRestart(t *testing.T) {
	env := func(v string) map[string]string { return map[string]string{secretEnv: v} }
	for _, tc := range []struct {
		name                string
		before, after       []string
		envBefore, envAfter map[string]string
		kept                bool
	}{
		{name: "same -secret", before: []string{"-secret", keyA}, after: []string{"-secret", keyA}, kept: true},
		{name: "random key each start", kept: false},
		{name: "new key first, old key kept", before: []string{"-secret", keyA}, after: []string{"-secret", keyB + "," + keyA}, kept: true},
		{name: "old key dropped", before: []string{"-secret", keyA}, after: []string{"-secret", keyB}, kept: false},
		{name: "KVSESSION_SECRET", envBefore: env(keyA), envAfter: env(keyA), kept: true},
		{name: "env then flag, same key", envBefore: env(keyA), after: []string{"-secret", keyA}, kept: true},
		{name: "rotation through the env", envBefore: env(keyA), envAfter: env(keyB + ", " + keyA), kept: true},
		{name: "flag wins over env", envBefore: env(keyA), after: []string{"-secret", keyB}, envAfter: env(keyA), kept: false},
		{name: "flag wins over a malformed env", before: []string{"-secret", keyA}, after: []string{"-secret", keyA}, envAfter: env("nope"), kept: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Each case has its own servers, client and environment; most
			// of their time is spent waiting for shutdowns.
			t.Parallel()
			p := startEnv(t, tc.envBefore, append([]string{"-backend", "cookie", "-addr", "127.0.0.1:0"}, tc.before...)...)
			c := sessiontest.NewClient(t, p.base)
			c.Expect("PUT", "/session/user", "bob", 204, "")
			c.Expect("GET", "/counter", "", 200, "1")

			restart(t, p, c, tc.envAfter, append([]string{"-backend", "cookie"}, tc.after...)...)
			if c.SessionCookie() == nil {
				t.Fatal("the jar lost the cookie across the restart")
			}
			if tc.kept {
				c.Expect("GET", "/session/user", "", 200, "bob")
				c.Expect("GET", "/counter", "", 200, "2")
			} else {
				// The cookie does not open: a fresh session, whose first
				// write replaces the stale cookie.
				c.Expect("GET", "/session/user", "", 404, "not found\n")
				r := c.Expect("GET", "/counter", "", 200, "1")
				onlySessionCookie(t, "GET /counter in a fresh session", r)
				c.Expect("GET", "/session", "", 200, `{"counter":1}`)
			}
		})
	}
}

// TestCookieKeyRotation rotates a key out in two restarts: a cookie sealed
// with the old key is re-sealed with the new one on its next request, so it
// survives the old key's removal; a copy that was not re-sealed does not.
func TestCookieKeyRotation(t *testing.T) {
	p := start(t, "-backend", "cookie", "-secret", keyA, "-addr", "127.0.0.1:0")
	c := sessiontest.NewClient(t, p.base)
	c.Expect("PUT", "/session/user", "carol", 204, "")
	sealedWithA := c.SessionCookie()

	p = restart(t, p, c, nil, "-backend", "cookie", "-secret", keyB+","+keyA)
	// Nothing changes, and there is no -renew-on-access, yet the response
	// re-seals the session because the first key did not seal it.
	r := c.Expect("GET", "/session/user", "", 200, "carol")
	ck := parseSetCookie(t, onlySessionCookie(t, "GET with a cookie of the second key", r))
	if ck.Value == sealedWithA.Value {
		t.Fatal("the re-sealed cookie is the old one")
	}
	// Sealed with the first key now, it is not re-sent again.
	noCookie(t, "GET with a cookie of the first key", c.Expect("GET", "/session/user", "", 200, "carol"))

	p = restart(t, p, c, nil, "-backend", "cookie", "-secret", keyB)
	c.Expect("GET", "/session/user", "", 200, "carol")
	r = sessiontest.NewClient(t, p.base).Do("GET", "/session/user", "", sealedWithA)
	if r.Status != 404 {
		t.Errorf("GET /session/user with the cookie sealed by the retired key = %d %q, want 404", r.Status, r.Body)
	}
}

// TestLogin binds sessions to users: a login gives the session a new
// cookie and keeps its data, and the cookie from before the login does not
// carry it.
func TestLogin(t *testing.T) { forEachServer(t, testLogin) }

func testLogin(t *testing.T, backend string, args []string) {
	p := start(t, args...)
	c := sessiontest.NewClient(t, p.base)
	c.Expect("GET", "/whoami", "", 404, "not logged in\n")
	c.Expect("GET", "/counter", "", 200, "1")
	c.Expect("GET", "/counter", "", 200, "2")
	before := c.SessionCookie()
	if before == nil {
		t.Fatal("no session cookie before the login")
	}

	r := c.Expect("POST", "/login?user=alice", "", 204, "")
	after := parseSetCookie(t, onlySessionCookie(t, "POST /login", r))
	if after.Value == before.Value {
		t.Fatalf("POST /login kept the session cookie %q", before.Value)
	}
	c.Expect("GET", "/whoami", "", 200, "alice")
	c.Expect("GET", "/counter", "", 200, "3") // the data came along

	// The pre-login cookie never leads to the logged-in session. On the
	// server backend its id is gone altogether; a cookie session's old
	// copy still opens, as before the login: unbound, with its counter.
	stranger := sessiontest.NewClient(t, p.base)
	if r := stranger.Do("GET", "/whoami", "", before); r.Status != 404 {
		t.Errorf("GET /whoami with the pre-login cookie = %d %q, want 404", r.Status, r.Body)
	}
	wantOld := "not found\n"
	if backend == "cookie" {
		wantOld = "2"
	}
	if r := stranger.Do("GET", "/session/counter", "", before); r.Body != wantOld {
		t.Errorf("GET /session/counter with the pre-login cookie = %d %q, want %q", r.Status, r.Body, wantOld)
	}

	// Logging in again, as someone else, re-binds the same session.
	c.Login("bob")
	c.Expect("GET", "/whoami", "", 200, "bob")
	c.Expect("GET", "/session/counter", "", 200, "3")

	// No user, no login; a user id the library refuses is the client's
	// mistake too. Neither changes the session.
	for _, path := range []string{"/login", "/login?user=", "/login?who=carol"} {
		r := c.Expect("POST", path, "", 400, "missing ?user=\n")
		noCookie(t, "POST "+path, r)
	}
	r = c.Do("POST", "/login?user="+strings.Repeat("x", 300), "")
	if r.Status != 400 || !strings.Contains(r.Body, "longer than") {
		t.Errorf("POST /login with a 300-byte user = %d %q, want 400 saying it is too long", r.Status, r.Body)
	}
	noCookie(t, "POST /login with a 300-byte user", r)
	c.Expect("GET", "/whoami", "", 200, "bob")
}

// TestLogoutAll logs a user out of every session at once, from one of that
// user's own clients, and leaves other users alone.
func TestLogoutAll(t *testing.T) { forEachServer(t, testLogoutAll) }

func testLogoutAll(t *testing.T, backend string, args []string) {
	p := start(t, args...)
	var us []*sessiontest.Client
	for range 3 {
		c := sessiontest.NewClient(t, p.base)
		c.Expect("GET", "/counter", "", 200, "1")
		c.Login("u")
		c.Expect("GET", "/whoami", "", 200, "u")
		us = append(us, c)
	}
	v := sessiontest.NewClient(t, p.base)
	v.Login("v")
	// A copy of a logged-in cookie, as a thief would keep it.
	stolen := us[1].SessionCookie()

	// Asked by one of u's own clients: with -lock, the handler must not
	// hold that session's lock while ending it (it would wait LockWait,
	// 5s, and fail).
	startedAt := time.Now()
	r := us[0].Do("POST", "/logout-all?user=u", "")
	wantBody, wantKind := "3", "count"
	if backend == "cookie" {
		wantBody, wantKind = "revoked", "revoked"
	}
	if r.Status != 200 || r.Body != wantBody || r.Header.Get("X-Sessions-Ended") != wantKind {
		t.Fatalf("POST /logout-all?user=u = %d %q X-Sessions-Ended %q, want 200 %q %q",
			r.Status, r.Body, r.Header.Get("X-Sessions-Ended"), wantBody, wantKind)
	}
	if d := time.Since(startedAt); d > time.Second {
		t.Errorf("POST /logout-all took %v", d)
	}

	for i, c := range us {
		if r := c.Do("GET", "/whoami", ""); r.Status != 404 {
			t.Errorf("client %d of u: GET /whoami after logout-all = %d %q, want 404", i, r.Status, r.Body)
		}
		// The session is gone with its data, not merely unbound.
		c.Expect("GET", "/session/counter", "", 404, "not found\n")
	}
	if r := sessiontest.NewClient(t, p.base).Do("GET", "/whoami", "", stolen); r.Status != 404 {
		t.Errorf("GET /whoami with a copy of u's cookie = %d %q, want 404", r.Status, r.Body)
	}
	v.Expect("GET", "/whoami", "", 200, "v")

	// u can log in again, and that new session is not revoked.
	us[0].Login("u")
	us[0].Expect("GET", "/whoami", "", 200, "u")
	us[0].Expect("GET", "/counter", "", 200, "1")
	us[0].Expect("GET", "/whoami", "", 200, "u")

	// Ending the sessions of a user who has none.
	wantNone := "0"
	if backend == "cookie" {
		wantNone = "revoked"
	}
	v.Expect("POST", "/logout-all?user=nobody", "", 200, wantNone)
	v.Expect("GET", "/whoami", "", 200, "v")
	for _, path := range []string{"/logout-all", "/logout-all?user="} {
		v.Expect("POST", path, "", 400, "missing ?user=\n")
	}
}

// userAgentTransport sends every request with its own User-Agent, as a
// browser does, so that the clients of one test can be told apart.
type userAgentTransport struct {
	ua   string
	next http.RoundTripper
}

func (t userAgentTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("User-Agent", t.ua)
	return t.next.RoundTrip(r)
}

// browser returns a client of base that says it is ua.
func browser(t *testing.T, base, ua string) *sessiontest.Client {
	c := sessiontest.NewClient(t, base)
	tr := http.DefaultTransport.(*http.Transport).Clone()
	t.Cleanup(tr.CloseIdleConnections)
	c.HTTP.Transport = userAgentTransport{ua: ua, next: tr}
	return c
}

// deviceKeys are the keys of each session GET /devices lists: a public
// interface, checked by name rather than through the device type, whose
// tags a rename would change on both sides at once.
var deviceKeys = []string{"created", "current", "expires", "handle", "last_active", "remote_addr", "user_agent"}

// listDevices is c's GET /devices, which must succeed.
func listDevices(t *testing.T, c *sessiontest.Client) devicesAnswer {
	t.Helper()
	r := c.Do("GET", "/devices", "")
	if r.Status != 200 || r.Header.Get("Content-Type") != appJSON {
		t.Fatalf("GET /devices = %d %q (Content-Type %q), want 200 JSON", r.Status, r.Body, r.Header.Get("Content-Type"))
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal([]byte(r.Body), &raw); err != nil {
		t.Fatalf("GET /devices body %q: %v", r.Body, err)
	}
	if keys := slices.Sorted(maps.Keys(raw)); !slices.Equal(keys, []string{"sessions", "user"}) {
		t.Errorf("GET /devices answers an object with keys %q, want sessions and user", keys)
	}
	var sessions []map[string]any
	if err := json.Unmarshal(raw["sessions"], &sessions); err != nil || sessions == nil {
		t.Fatalf("GET /devices body %q: %v, want a list of sessions (empty, not null, if none)", r.Body, err)
	}
	for _, s := range sessions {
		if keys := slices.Sorted(maps.Keys(s)); !slices.Equal(keys, deviceKeys) {
			t.Errorf("GET /devices lists a session with keys %q, want %q", keys, deviceKeys)
		}
	}
	// Handles only: no session id shows.
	for _, ck := range c.Cookies() {
		if strings.Contains(r.Body, ck.Value) {
			t.Errorf("GET /devices shows the session id: %s", r.Body)
		}
	}
	var d devicesAnswer
	if err := json.Unmarshal([]byte(r.Body), &d); err != nil {
		t.Fatal(err)
	}
	return d
}

// byAgent returns the listed session of user agent ua, failing the test
// unless there is exactly one.
func byAgent(t *testing.T, d devicesAnswer, ua string) device {
	t.Helper()
	var found []device
	for _, s := range d.Sessions {
		if s.UserAgent == ua {
			found = append(found, s)
		}
	}
	if len(found) != 1 {
		t.Fatalf("GET /devices lists %d sessions of %q, want 1: %+v", len(found), ua, d)
	}
	return found[0]
}

// malformed is POST /devices/end's answer to a handle that cannot be one.
const malformed = "malformed ?handle=: want a handle as GET /devices lists them\n"

// TestDevices goes through GET /devices and POST /devices/end: two
// browsers of one user see each other, each marked current in its own
// list; either can end the other, and itself; nobody else can end them,
// whatever handle is sent. The cookie backend answers 501.
func TestDevices(t *testing.T) { forEachServer(t, testDevices) }

func testDevices(t *testing.T, backend string, args []string) {
	if backend == "cookie" {
		p := start(t, args...)
		c := sessiontest.NewClient(t, p.base)
		for _, loggedIn := range []bool{false, true} {
			if loggedIn {
				c.Login("alice")
			}
			for _, req := range []struct{ method, path string }{{"GET", "/devices"}, {"POST", "/devices/end?handle=AAAAAAAAAAAAAAAB"}} {
				r := c.Do(req.method, req.path, "")
				if r.Status != 501 || r.Body != strings.TrimSuffix(req.path, "?handle=AAAAAAAAAAAAAAAB")+
					" needs -backend server: cookie sessions keep no server-side list of a user's sessions\n" {
					t.Errorf("cookie backend, logged in %v: %s %s = %d %q, want 501 saying it needs -backend server",
						loggedIn, req.method, req.path, r.Status, r.Body)
				}
				noCookie(t, req.method+" "+req.path, r)
			}
		}
		c.Expect("GET", "/whoami", "", 200, "alice")
		return
	}

	p := start(t, append(args, "-record-client")...)
	one, two := browser(t, p.base, "browser one"), browser(t, p.base, "browser two")
	bob, anon := browser(t, p.base, "bob's browser"), browser(t, p.base, "anonymous")
	before := time.Now().Add(-time.Second) // what the server records is rounded
	one.Login("alice")
	two.Login("alice")
	bob.Login("bob")
	anon.Expect("GET", "/counter", "", 200, "1")

	// Each of alice's browsers sees both, itself marked current.
	fromOne, fromTwo := listDevices(t, one), listDevices(t, two)
	for _, tc := range []struct {
		name string
		d    devicesAnswer
	}{{"browser one", fromOne}, {"browser two", fromTwo}} {
		if tc.d.User != "alice" || len(tc.d.Sessions) != 2 {
			t.Fatalf("%s: GET /devices = %+v, want alice's 2 sessions", tc.name, tc.d)
		}
		for _, ua := range []string{"browser one", "browser two"} {
			s := byAgent(t, tc.d, ua)
			if s.Current != (ua == tc.name) {
				t.Errorf("%s: the session of %q has current %v", tc.name, ua, s.Current)
			}
			if s.RemoteAddr != "127.0.0.1" || s.Handle == "" || s.Created.Before(before) || s.LastActive.Before(s.Created) ||
				!s.Expires.After(time.Now().Add(13*24*time.Hour)) {
				t.Errorf("%s: the session of %q = %+v, want from 127.0.0.1, with a handle, created during the test, expiring in 14 days",
					tc.name, ua, s)
			}
		}
	}
	oneHandle, twoHandle := byAgent(t, fromOne, "browser one").Handle, byAgent(t, fromOne, "browser two").Handle
	if oneHandle == twoHandle || byAgent(t, fromTwo, "browser one").Handle != oneHandle || byAgent(t, fromTwo, "browser two").Handle != twoHandle {
		t.Fatalf("the two browsers list different or shared handles: %+v and %+v", fromOne, fromTwo)
	}
	if d := listDevices(t, bob); d.User != "bob" || len(d.Sessions) != 1 || !d.Sessions[0].Current || d.Sessions[0].UserAgent != "bob's browser" {
		t.Errorf("bob's GET /devices = %+v, want his one session, current", d)
	}
	anon.Expect("GET", "/devices", "", 404, "not logged in\n")

	// Requests that end nothing, and change no session.
	for _, tc := range []struct {
		name   string
		c      *sessiontest.Client
		path   string
		status int
		body   string
	}{
		{"bob, alice's handle", bob, "/devices/end?handle=" + twoHandle, 404, "no such session\n"},
		// The user is the session's, never the query's.
		{"bob, alice's handle, naming alice", bob, "/devices/end?user=alice&handle=" + twoHandle, 404, "no such session\n"},
		{"no user, alice's handle", anon, "/devices/end?handle=" + twoHandle, 404, "not logged in\n"},
		{"no user, malformed handle", anon, "/devices/end?handle=abc", 404, "not logged in\n"},
		{"no user, no handle", anon, "/devices/end", 400, "missing ?handle=\n"},
		{"no handle", one, "/devices/end", 400, "missing ?handle=\n"},
		{"empty handle", one, "/devices/end?handle=", 400, "missing ?handle=\n"},
		{"short handle", one, "/devices/end?handle=abc", 400, malformed},
		{"long handle", one, "/devices/end?handle=" + twoHandle + "A", 400, malformed},
		{"not base64url", one, "/devices/end?handle=" + url.QueryEscape("++++////++++////"), 400, malformed},
		{"all zero", one, "/devices/end?handle=AAAAAAAAAAAAAAAA", 400, malformed},
		{"well formed, nobody's", one, "/devices/end?handle=AAAAAAAAAAAAAAAB", 404, "no such session\n"},
	} {
		r := tc.c.Do("POST", tc.path, "")
		if r.Status != tc.status || r.Body != tc.body {
			t.Errorf("%s: POST %s = %d %q, want %d %q", tc.name, tc.path, r.Status, r.Body, tc.status, tc.body)
		}
		noCookie(t, tc.name, r)
	}
	two.Expect("GET", "/whoami", "", 200, "alice")
	bob.Expect("GET", "/whoami", "", 200, "bob")
	if d := listDevices(t, one); len(d.Sessions) != 2 {
		t.Fatalf("after the refused ends alice has %d sessions, want 2", len(d.Sessions))
	}

	// Browser one ends browser two, most likely while browser two is in
	// the middle of a request that holds its session (and, with -lock,
	// its lock) for a second. That request must not bring the session
	// back when it saves; should it only reach the server after the end,
	// it starts a fresh session, with no user either.
	inFlight := make(chan sessiontest.Response, 1)
	go func() {
		r, _ := sessiontest.Send(two.HTTP, "GET", p.base+"/counter?pause=1s", "")
		inFlight <- r
	}()
	time.Sleep(100 * time.Millisecond) // for it to load the session
	one.Expect("POST", "/devices/end?handle="+twoHandle, "", 204, "")
	// Answered either way: its changes to a session ended under it are
	// dropped (the library's rule), not an error.
	if fl := <-inFlight; fl.Status != 200 {
		t.Errorf("the request in flight on the ended session: %d %q, want 200", fl.Status, fl.Body)
	}
	two.Expect("GET", "/whoami", "", 404, "not logged in\n")
	two.Expect("GET", "/devices", "", 404, "not logged in\n")
	if d := listDevices(t, one); len(d.Sessions) != 1 || d.Sessions[0].Handle != oneHandle || !d.Sessions[0].Current {
		t.Errorf("after ending browser two, alice's GET /devices = %+v, want browser one alone, current", d)
	}
	one.Expect("POST", "/devices/end?handle="+twoHandle, "", 404, "no such session\n") // ended already

	// Browser one ends itself: destroyed as DELETE /session destroys it,
	// cookie expired, and at once although its request holds the lock.
	startedAt := time.Now()
	r := one.Expect("POST", "/devices/end?handle="+oneHandle, "", 204, "")
	// Well below LockWait (5s), which a request waiting for its own lock
	// would wait in vain; not much lower, for busy machines under -race.
	if d := time.Since(startedAt); d > 3*time.Second {
		t.Errorf("POST /devices/end of the request's own session took %v", d)
	}
	if !r.Expired {
		t.Errorf("POST /devices/end of its own session: Set-Cookie %q, want the session cookie expired", r.SetCookies())
	}
	one.Expect("GET", "/whoami", "", 404, "not logged in\n")
	bob.Expect("GET", "/whoami", "", 200, "bob")

	// Logged in again, browser two is a new session, with a new handle.
	two.Login("alice")
	if d := listDevices(t, two); len(d.Sessions) != 1 || d.Sessions[0].Handle == twoHandle || !d.Sessions[0].Current {
		t.Errorf("after a new login, alice's GET /devices = %+v, want one session with a new handle", d)
	}
}

// TestRecordClient: without -record-client a login records nothing about
// the client; with it, its User-Agent and address.
func TestRecordClient(t *testing.T) {
	for _, tc := range []struct {
		args     []string
		ua, addr string
	}{
		{nil, "", ""},
		{[]string{"-record-client=false"}, "", ""},
		{[]string{"-record-client"}, "curious browser/1.0", "127.0.0.1"},
	} {
		t.Run(fmt.Sprint(tc.args), func(t *testing.T) {
			p := start(t, append(tc.args, "-store", "memory", "-addr", "127.0.0.1:0")...)
			c := browser(t, p.base, "curious browser/1.0")
			c.Login("alice")
			d := listDevices(t, c)
			if len(d.Sessions) != 1 || d.Sessions[0].UserAgent != tc.ua || d.Sessions[0].RemoteAddr != tc.addr {
				t.Errorf("GET /devices = %+v, want one session with user agent %q and address %q", d, tc.ua, tc.addr)
			}
			if want := fmt.Sprintf(" record_client=%v", tc.ua != ""); !strings.Contains(p.log.String(), want) {
				t.Errorf("the start log lacks %q:\n%s", want, p.log)
			}
		})
	}
}

// counterAfter sends n concurrent GET /counter?pause=25ms with cookie and
// returns the counter that follows them. The pause, between reading the
// counter and writing it back, makes the requests overlap.
func counterAfter(t *testing.T, base string, cookie *http.Cookie, n int) int {
	t.Helper()
	// A transport of its own, whose connections are closed afterwards:
	// left idle, connections dialled for the burst but never used delay
	// the server's graceful shutdown by seconds.
	tr := http.DefaultTransport.(*http.Transport).Clone()
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	var wg sync.WaitGroup
	errs := make(chan string, n)
	for range n {
		wg.Go(func() {
			req, _ := http.NewRequest("GET", base+"/counter?pause=25ms", nil)
			req.AddCookie(cookie)
			resp, err := hc.Do(req)
			if err != nil {
				errs <- err.Error()
				return
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != 200 {
				errs <- fmt.Sprintf("%d %q", resp.StatusCode, b)
			}
		})
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Errorf("concurrent GET /counter: %s", e)
	}
	r := sessiontest.NewClient(t, base).Do("GET", "/session/counter", "", cookie)
	got, err := strconv.Atoi(r.Body)
	if r.Status != 200 || err != nil {
		t.Fatalf("GET /session/counter = %d %q", r.Status, r.Body)
	}
	return got
}

// TestLock checks that -lock, on by default, makes concurrent requests on
// one session lose no increment, and that -lock=false starts.
func TestLock(t *testing.T) {
	for _, server := range serverNames {
		t.Run(server, func(t *testing.T) { testLock(t, server) })
	}
}

func testLock(t *testing.T, server string) {
	const n = 20
	p := start(t, "-store", "memory", "-addr", "127.0.0.1:0", "-server", server)
	c := sessiontest.NewClient(t, p.base)
	c.Expect("GET", "/counter", "", 200, "1")
	if got := counterAfter(t, p.base, c.SessionCookie(), n); got != n+1 {
		t.Errorf("after %d concurrent increments of 1: counter = %d, want %d", n, got, n+1)
	}
	if log := p.log.String(); !strings.Contains(log, " lock=true ") || !strings.Contains(log, "read_only_reads=true") {
		t.Errorf("start log does not show lock=true and read_only_reads=true:\n%s", log)
	}

	p = start(t, "-store", "memory", "-addr", "127.0.0.1:0", "-server", server, "-lock=false")
	c = sessiontest.NewClient(t, p.base)
	c.Expect("GET", "/counter", "", 200, "1")
	// Without the lock, requests that overlap read the same counter and
	// write the same increment: how many are lost is up to the scheduler,
	// but with 25ms between read and write, some are.
	got := counterAfter(t, p.base, c.SessionCookie(), n)
	t.Logf("-lock=false: after %d concurrent increments of 1: counter = %d", n, got)
	if got < 2 || got >= n+1 {
		t.Errorf("-lock=false: counter = %d after %d concurrent increments of 1, want some lost: from 2 to %d", got, n, n)
	}
	if log := p.log.String(); !strings.Contains(log, " lock=false ") {
		t.Errorf("start log does not show lock=false:\n%s", log)
	}
}

// TestReadOnlyRoutes lists which requests skip the session lock, as
// fasthttp (and Fiber, which uses its path) and net/http see them.
func TestReadOnlyRoutes(t *testing.T) {
	for _, tc := range []struct {
		method, uri string
		want        bool
	}{
		{"GET", "/session", true},
		{"GET", "/session/name", true},
		{"GET", "/session/a/b", true},
		{"GET", "/session/renew", true},
		{"GET", "/whoami", true},
		{"HEAD", "/whoami", true},
		{"GET", "/counter", false}, // increments
		{"GET", "/session/", false},
		{"GET", "/sessions", false},
		{"GET", "/nope", false},
		{"PUT", "/session/name", false},
		{"DELETE", "/session", false},
		{"POST", "/session/renew", false},
		{"POST", "/login?user=u", false},
		{"POST", "/logout-all?user=u", false},
		{"POST", "/whoami", false},
		{"GET", "/devices", true},
		{"GET", "/devices/", false},
		{"POST", "/devices/end?handle=h", false}, // may destroy its own session
		{"GET", "/devices/end", false},
		// Paths are normalized first, the same way on every server.
		{"GET", "//whoami", true},
		{"GET", "/session/./name", true},
		{"GET", "/%73ession/name", true},
		{"GET", "/session/name/..", false}, // "/session/", no key
		{"PUT", "//session//name", false},
	} {
		var ctx fasthttp.RequestCtx
		ctx.Request.Header.SetMethod(tc.method)
		// With a Host, as a server reads it, "//whoami" is a path rather
		// than a host.
		ctx.Request.Header.SetHost("playground.test")
		ctx.Request.SetRequestURI(tc.uri)
		x := fastExchange{&ctx}
		if got := readOnly(x.Method(), x.Path()); got != tc.want {
			t.Errorf("fasthttp: readOnly(%s %s) = %v, want %v", tc.method, tc.uri, got, tc.want)
		}

		var got bool
		normalizePath(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
			got = readOnly(r.Method, r.URL.Path)
		})).ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(tc.method, tc.uri, nil))
		if got != tc.want {
			t.Errorf("net/http: readOnly(%s %s) = %v, want %v", tc.method, tc.uri, got, tc.want)
		}
	}
}

// TestCleanPath checks that net/http's requests get the path fasthttp's
// would: decoded by net/http, then cleanPath.
func TestCleanPath(t *testing.T) {
	for _, raw := range []string{
		"/", "//", "///a", "/a//b", "/a/./b", "/a/./", "/a/.", "/./", "/.",
		"/a/../b", "/../a", "/..", "/a/..", "/a/b/..", "/a/b/../", "/a/b/../../..", "/a//../b",
		"/a/b/", "/session/", "/session/renew/..", "/a/...", "/a/.../b",
		"/session/%61", "/session/%2Fa", "/a/%2e%2e/b", "/a/%2e", "/a/b%2F..%2Fc", "/a%20b", "/a+b",
	} {
		var u fasthttp.URI
		u.Parse(nil, []byte(raw))
		parsed, err := url.ParseRequestURI(raw)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := cleanPath(parsed.Path), string(u.Path()); got != want {
			t.Errorf("%q: cleanPath(%q) = %q, fasthttp's path %q", raw, parsed.Path, got, want)
		}
	}
}

// TestServerNames checks that the tests go through every server -server
// knows.
func TestServerNames(t *testing.T) {
	if got := slices.Sorted(maps.Keys(servers)); !slices.Equal(got, slices.Sorted(slices.Values(serverNames))) {
		t.Errorf("-server knows %q, the tests %q", got, serverNames)
	}
}

// rawAnswer is what a server answered to a request written by hand.
type rawAnswer struct {
	status  int
	body    string
	headers map[string]string
	cookie  bool // any Set-Cookie
}

// comparedHeaders are the headers the servers must agree on. Date and
// Connection are each server's own.
var comparedHeaders = []string{"Content-Type", "Content-Length", "Allow", "X-Sessions-Ended", "Server", "Vary", "Cache-Control"}

// rawRequest sends request on a connection of its own, so that the path
// reaches the server exactly as written, and reads the answer.
func rawRequest(t *testing.T, base, request string) rawAnswer {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(conn, request); err != nil {
		t.Fatal(err)
	}
	method, _, _ := strings.Cut(request, " ")
	resp, err := http.ReadResponse(bufio.NewReader(conn), &http.Request{Method: method})
	if err != nil {
		t.Fatalf("%q: %v", request, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%q: %v", request, err)
	}
	a := rawAnswer{status: resp.StatusCode, body: string(body), headers: map[string]string{}, cookie: len(resp.Header["Set-Cookie"]) > 0}
	for _, h := range comparedHeaders {
		a.headers[h] = strings.Join(resp.Header.Values(h), ", ")
	}
	return a
}

// TestSameAnswers sends the same requests, written byte by byte, to every
// server and compares the answers: status, body, headers and whether a
// cookie is set. The paths are the ones a client library would clean up
// before sending. The Allow header of a 405 tells which route a path
// reached: "renew" has POST besides.
func TestSameAnswers(t *testing.T) {
	requests := []string{
		"GET /healthz", "HEAD /healthz", "POST /healthz",
		"GET /session", "GET //session", "PUT /session", "GET /session/", "GET /nope", "GET /",
		"PATCH /session/renew", "PATCH /session/./renew", "PATCH /session/x/../renew", "PATCH /session/%72enew",
		"PATCH /session//renew", "PATCH /session/renew/", "PATCH /session/renew/..", "PATCH /session/a%2Frenew",
		"GET /session/name", "PUT /session/name", "DELETE /session/name", "DELETE /session", "POST /session/renew",
		"GET /counter", "GET /counter?pause=soon", "GET /counter?pause=1ms",
		"POST /login", "POST /login?user=", "POST /login?user=u&remember=forever", "POST /login?user=u",
		"GET /whoami", "HEAD /whoami", "POST /logout-all", "POST /logout-all?user=nobody",
		"GET /devices", "POST /devices", "POST /devices/end", "POST /devices/end?handle=AAAAAAAAAAAAAAAB", "GET /devices/end",
	}
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			answers := map[string][]rawAnswer{}
			for _, server := range serverNames {
				p := start(t, append([]string{"-addr", "127.0.0.1:0", "-server", server}, b.args...)...)
				for _, req := range requests {
					body := ""
					if strings.HasPrefix(req, "PUT ") {
						body = "v"
					}
					raw := fmt.Sprintf("%s HTTP/1.1\r\nHost: playground.test\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s", req, len(body), body)
					answers[server] = append(answers[server], rawRequest(t, p.base, raw))
				}
			}
			for i, req := range requests {
				want := answers[serverNames[0]][i]
				for _, server := range serverNames[1:] {
					if got := answers[server][i]; !reflect.DeepEqual(got, want) {
						t.Errorf("%s: %s answers %+v, %s %+v", req, server, got, serverNames[0], want)
					}
				}
			}
			if t.Failed() {
				return
			}
			// And the answers are the routes': a few, to be sure the
			// comparison is not between servers that all fail alike.
			for i, req := range requests {
				a := answers[serverNames[0]][i]
				switch req {
				case "PATCH /session/x/../renew":
					if a.status != 405 || a.headers["Allow"] != "GET, PUT, DELETE, POST" {
						t.Errorf("%s = %+v, want 405 with POST allowed", req, a)
					}
				case "POST /logout-all?user=nobody":
					if a.status != 200 || a.headers["X-Sessions-Ended"] == "" {
						t.Errorf("%s = %+v, want 200 with X-Sessions-Ended", req, a)
					}
				case "GET /healthz":
					if a.status != 200 || a.body != "ok" || a.headers["Server"] != serverName {
						t.Errorf("%s = %+v, want 200 ok from %s", req, a, serverName)
					}
				case "POST /devices/end?handle=AAAAAAAAAAAAAAAB":
					// No user, on the server backend; no list at all, on
					// the cookie backend.
					if want := map[string]int{"server": 404, "cookie": 501}[b.name]; a.status != want {
						t.Errorf("%s = %+v, want %d", req, a, want)
					}
				}
			}
		})
	}
}

// TestLifecycleStartLog checks, without waiting for anything to expire,
// that the lifecycle flags reach the backend's Config: the start log shows
// the Config in effect, defaults applied.
func TestLifecycleStartLog(t *testing.T) {
	lockNote := "-lock does not apply to -backend cookie"
	for _, tc := range []struct {
		name          string
		args          []string
		want, notWant []string
	}{
		{
			name:    "server defaults",
			args:    []string{"-store", "memory"},
			want:    []string{"max_age=336h0m0s", "max_age_limit=336h0m0s", "idle_timeout=0s", "absolute_timeout=0s", "renewal_timeout=0s", "lock=true", "lock_wait=5s", "lock_lease=30s", "read_only_reads=true"},
			notWant: []string{"extension_delay", "renewal_grace", lockNote},
		},
		{
			name: "server with every timeout",
			args: []string{"-store", "memory", "-idle-timeout", "1m", "-absolute-timeout", "2h", "-renewal-timeout", "15m", "-max-age", "3h"},
			want: []string{"max_age=3h0m0s", "idle_timeout=1m0s", "extension_delay=6s", "absolute_timeout=2h0m0s",
				"renewal_timeout=15m0s", "renewal_grace=15s", "lock=true", "read_only_reads=true"},
		},
		{
			name:    "server without the lock",
			args:    []string{"-store", "memory", "-lock=false", "-idle-timeout", "1m"},
			want:    []string{"lock=false", "read_only_reads=false"},
			notWant: []string{"lock_wait"},
		},
		{
			name:    "cookie: -lock by default",
			args:    []string{"-backend", "cookie", "-secret", keyA, "-idle-timeout", "10s", "-absolute-timeout", "1h", "-max-age-limit", "720h"},
			want:    []string{"level=INFO msg=\"playground: " + lockNote, "lock=false", "idle_timeout=10s", "extension_delay=1s", "absolute_timeout=1h0m0s", "renewal_timeout=0s", "max_age_limit=720h0m0s"},
			notWant: []string{"level=WARN", "lock_wait"},
		},
		{
			name: "cookie: -lock given",
			args: []string{"-backend", "cookie", "-secret", keyA, "-lock"},
			want: []string{"level=INFO msg=\"playground: " + lockNote, "lock=false"},
		},
		{
			name:    "cookie: -lock=false",
			args:    []string{"-backend", "cookie", "-secret", keyA, "-lock=false", "-renewal-timeout", "0"},
			want:    []string{"lock=false"},
			notWant: []string{lockNote, "level=WARN"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := start(t, append(tc.args, "-addr", "127.0.0.1:0")...)
			c := sessiontest.NewClient(t, p.base)
			c.Login("u")
			c.Expect("GET", "/whoami", "", 200, "u")
			log := p.log.String()
			for _, w := range tc.want {
				if !strings.Contains(log, w) {
					t.Errorf("log lacks %q:\n%s", w, log)
				}
			}
			for _, w := range tc.notWant {
				if strings.Contains(log, w) {
					t.Errorf("log has %q:\n%s", w, log)
				}
			}
		})
	}
}

// TestTimeouts lets sessions expire, the only test that waits for the
// clock: 1.2s, shared by its four cases, which run side by side on four
// playgrounds. An idle session used halfway lives on, one left alone dies;
// an absolute timeout counts from creation, use or not. Cookies are sent by
// hand, since the jar would drop them at their Max-Age on its own: the
// server must refuse them.
func TestTimeouts(t *testing.T) {
	type tcase struct {
		name      string
		args      []string
		usedLives bool // does the session used halfway survive?
		// mayKeep: the halfway response may leave the client's cookie
		// as it is. The server backend resends an unchanged id only when
		// its expiry moves by a hundredth of its lifetime, at least a
		// second (cookierefresh.go): after half a second, that depends
		// on whether a second boundary passed. The cookie backend must
		// reseal: its cookie carries the deadline.
		mayKeep     bool
		base        string
		used, alone *http.Cookie
	}
	cases := []*tcase{
		{name: "idle/server", args: []string{"-store", "memory", "-idle-timeout", "1s"}, usedLives: true, mayKeep: true},
		{name: "idle/cookie", args: []string{"-backend", "cookie", "-secret", keyA, "-idle-timeout", "1s"}, usedLives: true},
		{name: "absolute/server", args: []string{"-store", "memory", "-absolute-timeout", "1s"}},
		{name: "absolute/cookie", args: []string{"-backend", "cookie", "-secret", keyA, "-absolute-timeout", "1s"}},
	}
	for _, tc := range cases {
		tc.base = start(t, append(tc.args, "-addr", "127.0.0.1:0")...).base
	}
	// whoami asks, with cookie alone, who tc's session is.
	whoami := func(tc *tcase, cookie *http.Cookie) sessiontest.Response {
		return sessiontest.NewClient(t, tc.base).Do("GET", "/whoami", "", cookie)
	}
	for _, tc := range cases {
		used, alone := sessiontest.NewClient(t, tc.base), sessiontest.NewClient(t, tc.base)
		used.Login("used")
		alone.Login("alone")
		tc.used, tc.alone = used.SessionCookie(), alone.SessionCookie()
	}

	time.Sleep(500 * time.Millisecond)
	for _, tc := range cases {
		r := whoami(tc, tc.used)
		if r.Status != 200 || r.Body != "used" {
			t.Fatalf("%s: GET /whoami after 0.5s = %d %q, want 200 used", tc.name, r.Status, r.Body)
		}
		switch {
		case tc.mayKeep && len(r.SetCookies()) == 0:
			// The client keeps its cookie; whether the idle deadline
			// moved shows 0.7s on, past the first one.
		case tc.usedLives:
			// The idle deadline moved: the response says so with a fresh
			// cookie (a new seal, for the cookie backend), under the same
			// id on the server backend.
			fresh := parseSetCookie(t, onlySessionCookie(t, tc.name+": GET /whoami halfway", r))
			if tc.mayKeep && fresh.Value != tc.used.Value {
				t.Errorf("%s: GET /whoami halfway changed the id", tc.name)
			}
			tc.used = fresh
		default:
			noCookie(t, tc.name+": GET /whoami halfway", r)
		}
	}

	time.Sleep(700 * time.Millisecond)
	for _, tc := range cases {
		r := whoami(tc, tc.used)
		if tc.usedLives && (r.Status != 200 || r.Body != "used") {
			t.Errorf("%s: GET /whoami 0.7s after the last use, 1.2s after login = %d %q, want 200 used", tc.name, r.Status, r.Body)
		}
		if !tc.usedLives && r.Status != 404 {
			t.Errorf("%s: GET /whoami of the session used halfway, 1.2s after login = %d %q, want 404", tc.name, r.Status, r.Body)
		}
		if r := whoami(tc, tc.alone); r.Status != 404 {
			t.Errorf("%s: GET /whoami of the session left alone, 1.2s after login = %d %q, want 404", tc.name, r.Status, r.Body)
		}
	}
}

// TestConfigErrors checks that the library's ConfigError survives the
// flag's name put in front of it.
func TestConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		args  []string
		field string
	}{
		{[]string{"-store", "memory", "-idle-timeout", "1h", "-renew-on-access"}, "ExtendOnAccess"},
		{[]string{"-backend", "cookie", "-secret", keyA, "-idle-timeout", "1h", "-renew-on-access"}, "ExtendOnAccess"},
		{[]string{"-store", "memory", "-renewal-timeout", "1ms"}, "RotationInterval"},
		{[]string{"-backend", "cookie", "-secret", keyA, "-max-age", "2h", "-max-age-limit", "1h"}, "MaxAgeLimit"},
		{[]string{"-store", "memory", "-id-header", "Cookie"}, "IDHeader"},
	} {
		ctx, cancel := context.WithCancel(context.Background())
		err := run(ctx, append(tc.args, "-addr", "127.0.0.1:0"), nil, io.Discard, func(string) {
			t.Errorf("run(%q) started", tc.args)
			cancel()
		})
		cancel()
		var ce *kvsession.ConfigError
		if !errors.As(err, &ce) || ce.Field != tc.field {
			t.Errorf("run(%q) = %v, want a ConfigError on %s", tc.args, err, tc.field)
		}
	}
}

// maxAgeOf returns the Max-Age of the session cookie r set.
func maxAgeOf(t *testing.T, what string, r sessiontest.Response) string {
	t.Helper()
	line := onlySessionCookie(t, what, r)
	for _, attr := range strings.Split(line, "; ") {
		if v, ok := strings.CutPrefix(attr, "Max-Age="); ok {
			return v
		}
	}
	t.Fatalf("%s: Set-Cookie %q has no Max-Age", what, line)
	return ""
}

// laterMaxAge returns the Max-Age a session's cookie has after r, a write
// that left its id unchanged. The cookie backend resends its cookie on
// every write; the server backend only when its expiry moves by a
// hundredth of its lifetime (cookierefresh.go), so r must send none, and
// a renewal, which must send one, tells the lifetime the session kept.
func laterMaxAge(t *testing.T, c *sessiontest.Client, backend, what string, r sessiontest.Response) string {
	t.Helper()
	if backend != "server" {
		return maxAgeOf(t, what, r)
	}
	noCookie(t, what+" (server backend, id unchanged)", r)
	return maxAgeOf(t, what+", then POST /session/renew", c.Expect("POST", "/session/renew", "", 204, ""))
}

// TestLoginRemember: POST /login?remember= gives the session a lifetime of
// its own, up to -max-age-limit, in the cookie's Max-Age and in every later
// cookie; a login without it returns to -max-age; anything the library
// would refuse is a 400 that changes nothing.
func TestLoginRemember(t *testing.T) { forEachServer(t, testLoginRemember) }

func testLoginRemember(t *testing.T, backend string, args []string) {
	p := start(t, append(args, "-max-age", "1h", "-max-age-limit", "720h")...)
	c := sessiontest.NewClient(t, p.base)
	if got := maxAgeOf(t, "POST /login?remember=48h", c.Expect("POST", "/login?user=alice&remember=48h", "", 204, "")); got != "172800" {
		t.Errorf("POST /login?remember=48h: Max-Age=%s, want 172800", got)
	}
	c.Expect("GET", "/whoami", "", 200, "alice")
	// The lifetime is the session's: the next write keeps it.
	if got := laterMaxAge(t, c, backend, "PUT after remember=48h", c.Expect("PUT", "/session/k", "v", 204, "")); got != "172800" {
		t.Errorf("PUT after remember=48h: Max-Age=%s, want 172800", got)
	}
	if got := maxAgeOf(t, "POST /login?remember=720h", c.Expect("POST", "/login?user=alice&remember=720h", "", 204, "")); got != "2592000" {
		t.Errorf("POST /login?remember=720h (the limit): Max-Age=%s, want 2592000", got)
	}
	for _, path := range []string{"/login?user=alice", "/login?user=alice&remember=0"} {
		if got := maxAgeOf(t, "POST "+path, c.Expect("POST", path, "", 204, "")); got != "3600" {
			t.Errorf("POST %s: Max-Age=%s, want -max-age's 3600", path, got)
		}
	}

	c.Expect("POST", "/login?user=alice&remember=48h", "", 204, "")
	for _, remember := range []string{"abc", "48", "721h", "999999h", "500ms", "-1h", ""} {
		path := "/login?user=mallory&remember=" + remember
		r := c.Do("POST", path, "")
		if r.Status != 400 || !strings.Contains(r.Body, "want a Go duration") || !strings.Contains(r.Body, "720h0m0s (-max-age-limit)") {
			t.Errorf("POST %s = %d %q, want 400 saying what it wants", path, r.Status, r.Body)
		}
		noCookie(t, "POST "+path, r)
	}
	c.Expect("GET", "/whoami", "", 200, "alice")
	if got := laterMaxAge(t, c, backend, "PUT after refused logins", c.Expect("PUT", "/session/k", "w", 204, "")); got != "172800" {
		t.Errorf("refused logins changed the lifetime: Max-Age=%s, want 172800", got)
	}
	// A missing user is still the first thing said.
	c.Expect("POST", "/login?remember=abc", "", 400, "missing ?user=\n")
}

// TestRememberNeedsMaxAgeLimit: without -max-age-limit, remember-me can
// only shorten a session: the limit is -max-age.
func TestRememberNeedsMaxAgeLimit(t *testing.T) {
	forEachBackend(t, func(t *testing.T, _ string, args []string) {
		p := start(t, append(args, "-max-age", "1h")...)
		c := sessiontest.NewClient(t, p.base)
		r := c.Do("POST", "/login?user=alice&remember=2h", "")
		if r.Status != 400 || !strings.Contains(r.Body, "1h0m0s (-max-age-limit)") {
			t.Errorf("POST /login?remember=2h over -max-age 1h = %d %q, want 400 naming the 1h limit", r.Status, r.Body)
		}
		if got := maxAgeOf(t, "remember=30m", c.Expect("POST", "/login?user=alice&remember=30m", "", 204, "")); got != "1800" {
			t.Errorf("POST /login?remember=30m: Max-Age=%s, want 1800", got)
		}
	})
}

// TestRememberOutlivesMaxAge waits for -max-age (1s) to pass: a remembered
// session lives on, one logged in plainly is gone. Cookies are sent by
// hand, as a client that ignores Max-Age would: the server decides.
func TestRememberOutlivesMaxAge(t *testing.T) {
	type tcase struct {
		name                string
		remembered, plainly *http.Cookie
		base                string
	}
	var cases []*tcase
	for _, b := range backends {
		p := start(t, append(slices.Clone(b.args), "-addr", "127.0.0.1:0", "-max-age", "1s", "-max-age-limit", "1m")...)
		tc := &tcase{name: b.name, base: p.base}
		rem, plain := sessiontest.NewClient(t, p.base), sessiontest.NewClient(t, p.base)
		rem.Expect("POST", "/login?user=rem&remember=1m", "", 204, "")
		plain.Login("plain")
		tc.remembered, tc.plainly = rem.SessionCookie(), plain.SessionCookie()
		cases = append(cases, tc)
	}
	time.Sleep(1200 * time.Millisecond)
	for _, tc := range cases {
		if r := sessiontest.NewClient(t, tc.base).Do("GET", "/whoami", "", tc.remembered); r.Status != 200 || r.Body != "rem" {
			t.Errorf("%s: remembered session after -max-age: GET /whoami = %d %q, want 200 rem", tc.name, r.Status, r.Body)
		}
		if r := sessiontest.NewClient(t, tc.base).Do("GET", "/whoami", "", tc.plainly); r.Status != 404 {
			t.Errorf("%s: plain session after -max-age: GET /whoami = %d %q, want 404", tc.name, r.Status, r.Body)
		}
	}
}

// TestLogShowsNoSessionCookie sends the requests that make fasthttp quote
// what it read in its log, each with a live session cookie: the
// playground's log must show no piece of it.
func TestLogShowsNoSessionCookie(t *testing.T) {
	forEachServer(t, func(t *testing.T, _ string, args []string) {
		p := start(t, args...)
		c := sessiontest.NewClient(t, p.base)
		c.Login("alice")
		cookie := c.SessionCookie()
		addr := strings.TrimPrefix(p.base, "http://")
		head := "GET /whoami HTTP/1.1\r\nHost: x\r\n"
		half := len(cookie.Value) / 2
		for _, req := range []string{
			head + "Cookie: session=" + cookie.Value + "\r\nUser-Agent: cu", // cut off
			head + "Cookie: session=" + cookie.Value + "\x01\r\n\r\n",
			head + "Cookie: session=" + cookie.Value[:half] + "\x01" + cookie.Value[half:] + "\r\n\r\n",
		} {
			conn, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			conn.SetDeadline(time.Now().Add(10 * time.Second))
			conn.Write([]byte(req))
			conn.(*net.TCPConn).CloseWrite()
			// fasthttp logs before it closes: the log is written once
			// the connection is.
			io.Copy(io.Discard, conn)
			conn.Close()
		}
		log := p.log.String()
		// Each server logs these requests its own way: fasthttp each
		// connection it failed to serve, Fiber (through the playground's
		// ErrorHandler) each request it could not read, and net/http
		// nothing at all.
		server := args[slices.Index(args, "-server")+1]
		want := map[string]struct {
			msg string
			n   int
		}{
			"fasthttp": {"error when serving connection", 3},
			"fiber":    {"source=fiber", 3},
			"nethttp":  {"source=net/http", 0},
		}[server]
		if n := strings.Count(log, want.msg); n != want.n {
			t.Errorf("%d lines with %q logged, want %d:\n%s", n, want.msg, want.n, log)
		}
		for i := 0; i+20 <= len(cookie.Value); i++ {
			if strings.Contains(log, cookie.Value[i:i+20]) {
				t.Fatalf("the log shows %q of the session cookie:\n%s", cookie.Value[i:i+20], log)
			}
		}
	})
}
