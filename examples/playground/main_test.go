package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/cookiejar"
	"os"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
)

// playground is one in-process run of the server.
type playground struct {
	base   string // http://127.0.0.1:port
	cancel context.CancelFunc
	done   chan error
	once   sync.Once
	err    error
}

// start runs the playground with args and waits until it listens. It is
// stopped when the test ends, if the test has not stopped it already.
func start(t *testing.T, args ...string) *playground {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	p := &playground{cancel: cancel, done: make(chan error, 1)}
	addr := make(chan string, 1)
	go func() {
		p.done <- run(ctx, args, testLog{t}, func(a string) { addr <- a })
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
// when a test fails (or with -v).
type testLog struct{ t *testing.T }

func (l testLog) Write(p []byte) (int, error) {
	l.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// client is a cookie-keeping HTTP client, like a browser.
type client struct {
	t    *testing.T
	base string
	http *http.Client
}

func newClient(t *testing.T, base string) *client {
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &client{t: t, base: base, http: &http.Client{Jar: jar, Timeout: 5 * time.Second}}
}

// response is what a test asserts on: the body read in full.
type response struct {
	status int
	header http.Header
	body   string
}

// setCookies returns the raw Set-Cookie lines, so attributes are checked as
// sent rather than as net/http parsed them.
func (r response) setCookies() []string { return r.header.Values("Set-Cookie") }

func (c *client) do(method, path, body string, cookies ...*http.Cookie) response {
	c.t.Helper()
	req, err := http.NewRequest(method, c.base+path, strings.NewReader(body))
	if err != nil {
		c.t.Fatal(err)
	}
	for _, ck := range cookies {
		req.AddCookie(ck)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		c.t.Fatalf("%s %s: reading body: %v", method, path, err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: string(b)}
}

// expect checks status and body of method path.
func (c *client) expect(method, path, reqBody string, status int, body string) response {
	c.t.Helper()
	r := c.do(method, path, reqBody)
	if r.status != status || r.body != body {
		c.t.Errorf("%s %s = %d %q, want %d %q", method, path, r.status, r.body, status, body)
	}
	return r
}

// sessionCookie returns the session cookie the jar holds, or nil.
func (c *client) sessionCookie() *http.Cookie {
	u, _ := http.NewRequest("GET", c.base+"/", nil)
	for _, ck := range c.http.Jar.Cookies(u.URL) {
		if ck.Name == "session" {
			return ck
		}
	}
	return nil
}

// sessionJSON fetches GET /session and decodes it.
func (c *client) sessionJSON() map[string]any {
	c.t.Helper()
	r := c.do("GET", "/session", "")
	if r.status != http.StatusOK {
		c.t.Fatalf("GET /session = %d %q", r.status, r.body)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		c.t.Errorf("GET /session Content-Type = %q, want application/json", ct)
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(r.body), &m); err != nil {
		c.t.Fatalf("GET /session body %q: %v", r.body, err)
	}
	return m
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
func onlySessionCookie(t *testing.T, what string, r response) string {
	t.Helper()
	lines := r.setCookies()
	if len(lines) != 1 || !strings.HasPrefix(lines[0], "session=") {
		t.Fatalf("%s: Set-Cookie = %q, want one session cookie", what, lines)
	}
	return lines[0]
}

func noCookie(t *testing.T, what string, r response) {
	t.Helper()
	if lines := r.setCookies(); len(lines) != 0 {
		t.Errorf("%s: Set-Cookie = %q, want none", what, lines)
	}
}

func TestRoutes(t *testing.T) {
	p := start(t, "-store", "memory", "-addr", "127.0.0.1:0")
	c := newClient(t, p.base)

	r := c.expect("GET", "/healthz", "", 200, "ok")
	noCookie(t, "GET /healthz", r)

	// A fresh client has an empty session, and reading it creates nothing.
	r = c.expect("GET", "/session", "", 200, "{}")
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("GET /session Content-Type = %q, want application/json", ct)
	}
	noCookie(t, "GET /session on an empty session", r)
	c.expect("GET", "/session/name", "", 404, "not found\n")

	// The first write creates the session and its cookie.
	r = c.expect("PUT", "/session/name", "alice", 204, "")
	line := onlySessionCookie(t, "PUT /session/name", r)
	ck := parseSetCookie(t, line)
	if !ck.HttpOnly || ck.SameSite != http.SameSiteLaxMode || ck.Path != "/" || ck.Secure {
		t.Errorf("session cookie %q: want HttpOnly, SameSite=Lax, Path=/, not Secure", line)
	}
	if !strings.Contains(line, "; Max-Age=1209600;") { // 14 days, the default
		t.Errorf("session cookie %q: want Max-Age=1209600", line)
	}
	if ck.Value == "" || c.sessionCookie() == nil {
		t.Fatalf("session cookie %q not kept by the jar", line)
	}
	for _, h := range []struct{ name, want string }{{"Vary", "Cookie"}, {"Cache-Control", `no-cache="Set-Cookie"`}} {
		if got := r.header.Get(h.name); got != h.want {
			t.Errorf("PUT /session/name %s = %q, want %q", h.name, got, h.want)
		}
	}

	c.expect("GET", "/session/name", "", 200, "alice")
	// An unmodified session is not re-sent without -renew-on-access.
	r = c.expect("GET", "/session/name", "", 200, "alice")
	noCookie(t, "GET /session/name without renew-on-access", r)

	c.expect("GET", "/counter", "", 200, "1")
	c.expect("GET", "/counter", "", 200, "2")
	c.expect("GET", "/counter", "", 200, "3")
	c.expect("GET", "/session/counter", "", 200, "3") // an integer, in decimal

	// Keys are everything after /session/, and values are stored verbatim.
	c.expect("PUT", "/session/a/b", "x y\nz", 204, "")
	c.expect("GET", "/session/a/b", "", 200, "x y\nz")
	c.expect("PUT", "/session/empty", "", 204, "")
	c.expect("GET", "/session/empty", "", 200, "")
	// "renew" is an ordinary key except for POST.
	c.expect("PUT", "/session/renew", "r", 204, "")
	c.expect("GET", "/session/renew", "", 200, "r")
	c.expect("DELETE", "/session/renew", "", 204, "")
	c.expect("DELETE", "/session/empty", "", 204, "")
	c.expect("DELETE", "/session/a/b", "", 204, "")
	c.expect("DELETE", "/session/never-set", "", 204, "")

	want := map[string]any{"name": "alice", "counter": float64(3)}
	if got := c.sessionJSON(); !reflect.DeepEqual(got, want) {
		t.Errorf("GET /session = %v, want %v", got, want)
	}

	c.expect("DELETE", "/session/name", "", 204, "")
	c.expect("GET", "/session/name", "", 404, "not found\n")
	if got := c.sessionJSON(); !reflect.DeepEqual(got, map[string]any{"counter": float64(3)}) {
		t.Errorf("GET /session after DELETE /session/name = %v", got)
	}

	// Unknown paths and empty keys are 404; known paths with the wrong
	// method are 405 and say which methods they take.
	for _, path := range []string{"/", "/nope", "/session/", "/healthz/x", "/counter/1"} {
		c.expect("GET", path, "", 404, "not found\n")
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
	} {
		r := c.do(tc.method, tc.path, "")
		if r.status != 405 || r.header.Get("Allow") != tc.allow {
			t.Errorf("%s %s = %d Allow %q, want 405 Allow %q", tc.method, tc.path, r.status, r.header.Get("Allow"), tc.allow)
		}
		noCookie(t, tc.method+" "+tc.path, r)
	}
}

func TestRenewID(t *testing.T) {
	p := start(t, "-store", "memory", "-addr", "127.0.0.1:0")
	c := newClient(t, p.base)
	c.expect("PUT", "/session/user", "alice", 204, "")
	old := c.sessionCookie()
	if old == nil {
		t.Fatal("no session cookie after PUT")
	}

	r := c.expect("POST", "/session/renew", "", 204, "")
	ck := parseSetCookie(t, onlySessionCookie(t, "POST /session/renew", r))
	if ck.Value == old.Value {
		t.Fatalf("POST /session/renew kept the session id %q", old.Value)
	}
	if got := c.sessionCookie(); got == nil || got.Value != ck.Value {
		t.Fatalf("jar holds %v after renew, want the new id %q", got, ck.Value)
	}
	if !ck.HttpOnly || ck.SameSite != http.SameSiteLaxMode {
		t.Errorf("renewed cookie %+v: want HttpOnly and SameSite=Lax", ck)
	}

	// The old id is worthless: the data moved to the new one.
	stranger := newClient(t, p.base)
	r = stranger.do("GET", "/session", "", old)
	if r.status != 200 || r.body != "{}" {
		t.Errorf("GET /session with the old cookie = %d %q, want 200 {}", r.status, r.body)
	}
	r = stranger.do("GET", "/session/user", "", old)
	if r.status != 404 {
		t.Errorf("GET /session/user with the old cookie = %d %q, want 404", r.status, r.body)
	}
	c.expect("GET", "/session/user", "", 200, "alice")
	// And the new cookie works when sent by hand too, not only by the jar.
	r = stranger.do("GET", "/session/user", "", &http.Cookie{Name: "session", Value: ck.Value})
	if r.status != 200 || r.body != "alice" {
		t.Errorf("GET /session/user with the new cookie = %d %q, want 200 alice", r.status, r.body)
	}
}

func TestDestroy(t *testing.T) {
	p := start(t, "-store", "memory", "-addr", "127.0.0.1:0")
	c := newClient(t, p.base)
	c.expect("PUT", "/session/user", "alice", 204, "")
	c.expect("GET", "/counter", "", 200, "1")
	id := c.sessionCookie()

	r := c.expect("DELETE", "/session", "", 204, "")
	line := onlySessionCookie(t, "DELETE /session", r)
	if !strings.HasPrefix(line, "session=;") || !strings.Contains(line, "; Max-Age=0;") {
		t.Errorf("DELETE /session Set-Cookie = %q, want an empty session cookie with Max-Age=0", line)
	}
	if ck := c.sessionCookie(); ck != nil {
		t.Errorf("jar still holds %v after DELETE /session", ck)
	}
	c.expect("GET", "/session", "", 200, "{}")
	c.expect("GET", "/counter", "", 200, "1") // a new session starts from scratch

	// The data is gone from the store, not just forgotten by the client.
	r = newClient(t, p.base).do("GET", "/session", "", id)
	if r.status != 200 || r.body != "{}" {
		t.Errorf("GET /session with the destroyed id = %d %q, want 200 {}", r.status, r.body)
	}
}

// TestSaveError checks that a session the library refuses to save (too
// large) turns into a 500 and leaves the stored session as it was.
func TestSaveError(t *testing.T) {
	p := start(t, "-store", "memory", "-addr", "127.0.0.1:0")
	c := newClient(t, p.base)
	c.expect("PUT", "/session/small", "1", 204, "")
	r := c.do("PUT", "/session/big", strings.Repeat("x", 2<<20))
	if r.status != 500 {
		t.Errorf("PUT of a 2 MiB value = %d %q, want 500", r.status, r.body)
	}
	noCookie(t, "failed PUT", r)
	c.expect("GET", "/session/big", "", 404, "not found\n")
	c.expect("GET", "/session/small", "", 200, "1")
}

func TestFlagsReachConfig(t *testing.T) {
	p := start(t, "-store", "memory", "-addr", "127.0.0.1:0", "-max-age", "1h", "-renew-on-access")
	c := newClient(t, p.base)
	r := c.expect("PUT", "/session/k", "v", 204, "")
	if line := onlySessionCookie(t, "PUT", r); !strings.Contains(line, "; Max-Age=3600;") {
		t.Errorf("Set-Cookie %q, want Max-Age=3600 from -max-age 1h", line)
	}
	// With -renew-on-access a mere read refreshes the cookie.
	r = c.expect("GET", "/session/k", "", 200, "v")
	if line := onlySessionCookie(t, "GET with -renew-on-access", r); !strings.Contains(line, "; Max-Age=3600;") {
		t.Errorf("Set-Cookie %q, want Max-Age=3600", line)
	}
	// /healthz stays outside sessions even so, and even with a cookie.
	noCookie(t, "GET /healthz with -renew-on-access", c.expect("GET", "/healthz", "", 200, "ok"))
}

func TestBadgerSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	args := []string{"-store", "badger", "-dir", dir, "-addr", "127.0.0.1:0"}

	p := start(t, args...)
	c := newClient(t, p.base)
	c.expect("PUT", "/session/user", "bob", 204, "")
	c.expect("GET", "/counter", "", 200, "1")
	id := c.sessionCookie()
	if err := p.stop(); err != nil {
		t.Fatalf("stopping: %v", err)
	}
	if _, err := os.Stat(dir + "/MANIFEST"); err != nil {
		t.Errorf("no Badger files in %s: %v", dir, err)
	}

	// A new server on the same directory (and a new port) still knows the
	// session: the store was closed, hence flushed, and reopened.
	p = start(t, args...)
	c2 := newClient(t, p.base)
	r := c2.do("GET", "/session/user", "", id)
	if r.status != 200 || r.body != "bob" {
		t.Fatalf("GET /session/user after restart = %d %q, want 200 bob", r.status, r.body)
	}
	r = c2.do("GET", "/counter", "", id)
	if r.status != 200 || r.body != "2" {
		t.Errorf("GET /counter after restart = %d %q, want 200 2", r.status, r.body)
	}
}

func TestBadArgs(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-store", "redis"}, `unknown -store "redis"`},
		{[]string{"-store", "memory", "-max-age", "10ms"}, "MaxAge"},
		{[]string{"-store", "memory", "extra"}, "unexpected arguments"},
		{[]string{"-nope"}, "flag provided but not defined"},
	} {
		ready := false
		err := run(context.Background(), tc.args, io.Discard, func(string) { ready = true })
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("run(%q) = %v, want an error containing %q", tc.args, err, tc.want)
		}
		if ready {
			t.Errorf("run(%q) started listening", tc.args)
		}
	}
}
