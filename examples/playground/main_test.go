package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kvsession/kvsession"
	kvfasthttp "github.com/kvsession/kvsession/fasthttp"
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

// TestRoutes goes through every route, with either backend.
func TestRoutes(t *testing.T) { forEachBackend(t, testRoutes) }

func testRoutes(t *testing.T, _ string, args []string) {
	p := start(t, args...)
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

func TestRenewID(t *testing.T) { forEachBackend(t, testRenewID) }

func testRenewID(t *testing.T, backend string, args []string) {
	p := start(t, args...)
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

	stranger := newClient(t, p.base)
	if backend == "server" {
		// The old id is worthless: the data moved to the new one.
		r = stranger.do("GET", "/session", "", old)
		if r.status != 200 || r.body != "{}" {
			t.Errorf("GET /session with the old cookie = %d %q, want 200 {}", r.status, r.body)
		}
		r = stranger.do("GET", "/session/user", "", old)
		if r.status != 404 {
			t.Errorf("GET /session/user with the old cookie = %d %q, want 404", r.status, r.body)
		}
	} else {
		// The cookie backend has no id to retire: it re-sealed the session,
		// and the old cookie, with the same data, still opens until its
		// sealed expiry (as documented on kvsession.CookieBackend).
		r = stranger.do("GET", "/session/user", "", old)
		if r.status != 200 || r.body != "alice" {
			t.Errorf("GET /session/user with the pre-renew cookie = %d %q, want 200 alice", r.status, r.body)
		}
	}
	c.expect("GET", "/session/user", "", 200, "alice")
	// And the new cookie works when sent by hand too, not only by the jar.
	r = stranger.do("GET", "/session/user", "", &http.Cookie{Name: "session", Value: ck.Value})
	if r.status != 200 || r.body != "alice" {
		t.Errorf("GET /session/user with the new cookie = %d %q, want 200 alice", r.status, r.body)
	}
}

func TestDestroy(t *testing.T) { forEachBackend(t, testDestroy) }

func testDestroy(t *testing.T, backend string, args []string) {
	p := start(t, args...)
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

	r = newClient(t, p.base).do("GET", "/session/user", "", id)
	if backend == "server" {
		// The data is gone from the store, not just forgotten by the client.
		if r.status != 404 {
			t.Errorf("GET /session/user with the destroyed id = %d %q, want 404", r.status, r.body)
		}
	} else if r.status != 200 || r.body != "alice" {
		// Nothing on the server remembers the destroy: a copy of the cookie
		// taken before it still opens (as documented on
		// kvsession.CookieBackend). Should that change, this is the place
		// to notice.
		t.Errorf("GET /session/user with a pre-destroy cookie copy = %d %q, want 200 alice", r.status, r.body)
	}
}

// TestSaveError checks that a session the library refuses to save (too
// large for the record limit, or for the cookie backend's segments) turns
// into a 500 and leaves the saved session as it was.
func TestSaveError(t *testing.T) {
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
			p := start(t, append([]string{"-addr", "127.0.0.1:0"}, backends[tc.backend].args...)...)
			c := newClient(t, p.base)
			c.expect("PUT", "/session/small", "1", 204, "")
			r := c.do("PUT", "/session/big", strings.Repeat("x", tc.size))
			if r.status != 500 {
				t.Errorf("PUT of a %d-byte value = %d %q, want 500", tc.size, r.status, r.body)
			}
			noCookie(t, "failed PUT", r)
			c.expect("GET", "/session/big", "", 404, "not found\n")
			c.expect("GET", "/session/small", "", 200, "1")
		})
	}
}

func TestFlagsReachConfig(t *testing.T) {
	forEachBackend(t, func(t *testing.T, _ string, args []string) {
		p := start(t, append(args, "-max-age", "1h", "-renew-on-access")...)
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
	})
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
	cookie := []string{"-backend", "cookie"}
	withCookie := func(args ...string) []string { return append(slices.Clone(cookie), args...) }
	badHex := "zz" + keyA[2:]
	for _, tc := range []struct {
		args []string
		env  map[string]string
		want string
	}{
		{[]string{"-store", "redis"}, nil, `unknown -store "redis"`},
		{[]string{"-store", "memory", "-max-age", "10ms"}, nil, "MaxAge"},
		{withCookie("-secret", keyA, "-max-age", "10ms"), nil, "MaxAge"},
		{[]string{"-store", "memory", "extra"}, nil, "unexpected arguments"},
		{[]string{"-nope"}, nil, "flag provided but not defined"},
		{[]string{"-backend", "bogus"}, nil, `unknown -backend "bogus": want server or cookie`},
		{[]string{"-backend", ""}, nil, `unknown -backend "": want server or cookie`},

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

func TestHelp(t *testing.T) {
	var out bytes.Buffer
	err := run(context.Background(), []string{"-h"}, nil, &out, nil)
	if !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("run(-h) = %v, want flag.ErrHelp", err)
	}
	for _, want := range []string{"-backend string", "server", "cookie", "-secret KEY[,KEY...]", "64 hex characters", secretEnv, "-max-age", "-renew-on-access", "-store", "-dir"} {
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
			want:    []string{"backend=server", "store=memory", "read_buffer_size=4096"},
			notWant: []string{"no store", randomKeyWarning, "ignored", keyA},
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
			want: []string{"backend=cookie", "store=none", "no store is opened", "keys=2", "key_source=flag",
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
			c := newClient(t, p.base)
			c.expect("PUT", "/session/k", "v", 204, "")
			c.expect("GET", "/session/k", "", 200, "v")
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

func setCookieLines(t *testing.T, r response) []setCookie {
	t.Helper()
	var out []setCookie
	for _, line := range r.setCookies() {
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

// cookieNames returns the names of the cookies the jar would send, sorted.
func (c *client) cookieNames() []string {
	req, _ := http.NewRequest("GET", c.base+"/", nil)
	var names []string
	for _, ck := range c.http.Jar.Cookies(req.URL) {
		names = append(names, ck.Name)
	}
	slices.Sort(names)
	return names
}

// cookieHeaderBytes is the length of the Cookie header the jar would send.
func (c *client) cookieHeaderBytes() int {
	req, _ := http.NewRequest("GET", c.base+"/", nil)
	for _, ck := range c.http.Jar.Cookies(req.URL) {
		req.AddCookie(ck)
	}
	return len(req.Header.Get("Cookie"))
}

// TestCookieBackend runs a session through the cookie backend end to end:
// counting, a value that needs several cookie segments, shrinking back to
// one cookie, and logging out.
func TestCookieBackend(t *testing.T) {
	p := start(t, "-backend", "cookie", "-secret", keyA, "-addr", "127.0.0.1:0")
	c := newClient(t, p.base)

	c.expect("PUT", "/session/name", "alice", 204, "")
	for i := 1; i <= 3; i++ {
		c.expect("GET", "/counter", "", 200, strconv.Itoa(i))
	}
	if got := c.cookieNames(); !slices.Equal(got, []string{"session"}) {
		t.Fatalf("jar holds %q, want only the bare session cookie", got)
	}

	// 10 KB does not fit one 4 KB cookie: the session moves to segments
	// session-0 … session-(n-1), and the bare cookie is expired.
	big := strings.Repeat("0123456789", 1024)
	r := c.expect("PUT", "/session/big", big, 204, "")
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
	if got := c.cookieNames(); !slices.Equal(got, segmentNames(n)) {
		t.Fatalf("jar holds %q after the big PUT, want %q", got, segmentNames(n))
	}
	// The server must read a Cookie header far larger than fasthttp's
	// default buffer, or these requests would fail with 431.
	if h := c.cookieHeaderBytes(); h <= kvfasthttp.DefaultReadBufferSize {
		t.Errorf("Cookie header of %d bytes: the test does not exercise the read buffer", h)
	}
	if r := c.do("GET", "/session/big", ""); r.status != 200 || r.body != big {
		t.Errorf("GET /session/big = %d with %d bytes, want 200 with the %d bytes stored", r.status, len(r.body), len(big))
	}
	c.expect("GET", "/session/name", "", 200, "alice")
	r = c.expect("GET", "/counter", "", 200, "4")
	if live, expired := split(setCookieLines(t, r)); !slices.Equal(live, segmentNames(n)) || len(expired) != 0 {
		t.Errorf("GET /counter set %q and expired %q, want the same %d segments and nothing expired", live, expired, n)
	}
	want := map[string]any{"name": "alice", "counter": float64(4), "big": big}
	if got := c.sessionJSON(); !reflect.DeepEqual(got, want) {
		t.Errorf("GET /session does not hold name, counter and big (%d keys)", len(got))
	}

	// Shrinking moves the session back to the bare cookie and expires the
	// segments.
	r = c.expect("DELETE", "/session/big", "", 204, "")
	live, expired = split(setCookieLines(t, r))
	if !slices.Equal(live, []string{"session"}) || !slices.Equal(expired, segmentNames(n)) {
		t.Errorf("DELETE /session/big set %q and expired %q, want session set and %q expired", live, expired, segmentNames(n))
	}
	if got := c.cookieNames(); !slices.Equal(got, []string{"session"}) {
		t.Errorf("jar holds %q after shrinking, want only session", got)
	}
	c.expect("GET", "/counter", "", 200, "5")
	c.expect("GET", "/session/big", "", 404, "not found\n")

	// Logging out with the session in segments expires every one of them.
	c.expect("PUT", "/session/big", big, 204, "")
	r = c.expect("DELETE", "/session", "", 204, "")
	live, expired = split(setCookieLines(t, r))
	if len(live) != 0 || !slices.Equal(expired, segmentNames(n)) {
		t.Errorf("DELETE /session set %q and expired %q, want %q expired and nothing set", live, expired, segmentNames(n))
	}
	if got := c.cookieNames(); len(got) != 0 {
		t.Errorf("jar holds %q after logout, want nothing", got)
	}
	c.expect("GET", "/session", "", 200, "{}")
	c.expect("GET", "/counter", "", 200, "1")
}

// restart stops p and starts a new playground with env and args, which c
// then talks to. c keeps its cookies: a cookie jar, like a browser, keys
// them by host and not by port.
func restart(t *testing.T, p *playground, c *client, env map[string]string, args ...string) *playground {
	t.Helper()
	if err := p.stop(); err != nil {
		t.Fatalf("stopping: %v", err)
	}
	p = startEnv(t, env, append(args, "-addr", "127.0.0.1:0")...)
	c.base = p.base
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
			c := newClient(t, p.base)
			c.expect("PUT", "/session/user", "bob", 204, "")
			c.expect("GET", "/counter", "", 200, "1")

			restart(t, p, c, tc.envAfter, append([]string{"-backend", "cookie"}, tc.after...)...)
			if c.sessionCookie() == nil {
				t.Fatal("the jar lost the cookie across the restart")
			}
			if tc.kept {
				c.expect("GET", "/session/user", "", 200, "bob")
				c.expect("GET", "/counter", "", 200, "2")
			} else {
				// The cookie does not open: a fresh session, whose first
				// write replaces the stale cookie.
				c.expect("GET", "/session/user", "", 404, "not found\n")
				r := c.expect("GET", "/counter", "", 200, "1")
				onlySessionCookie(t, "GET /counter in a fresh session", r)
				c.expect("GET", "/session", "", 200, `{"counter":1}`)
			}
		})
	}
}

// TestCookieKeyRotation rotates a key out in two restarts: a cookie sealed
// with the old key is re-sealed with the new one on its next request, so it
// survives the old key's removal; a copy that was not re-sealed does not.
func TestCookieKeyRotation(t *testing.T) {
	p := start(t, "-backend", "cookie", "-secret", keyA, "-addr", "127.0.0.1:0")
	c := newClient(t, p.base)
	c.expect("PUT", "/session/user", "carol", 204, "")
	sealedWithA := c.sessionCookie()

	p = restart(t, p, c, nil, "-backend", "cookie", "-secret", keyB+","+keyA)
	// Nothing changes, and there is no -renew-on-access, yet the response
	// re-seals the session because the first key did not seal it.
	r := c.expect("GET", "/session/user", "", 200, "carol")
	ck := parseSetCookie(t, onlySessionCookie(t, "GET with a cookie of the second key", r))
	if ck.Value == sealedWithA.Value {
		t.Fatal("the re-sealed cookie is the old one")
	}
	// Sealed with the first key now, it is not re-sent again.
	noCookie(t, "GET with a cookie of the first key", c.expect("GET", "/session/user", "", 200, "carol"))

	p = restart(t, p, c, nil, "-backend", "cookie", "-secret", keyB)
	c.expect("GET", "/session/user", "", 200, "carol")
	r = newClient(t, p.base).do("GET", "/session/user", "", sealedWithA)
	if r.status != 404 {
		t.Errorf("GET /session/user with the cookie sealed by the retired key = %d %q, want 404", r.status, r.body)
	}
}
