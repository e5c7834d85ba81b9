package kvhttp_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kvsession/kvsession"
	"github.com/kvsession/kvsession/internal/sessiontest"
	"github.com/kvsession/kvsession/kvhttp"
	"github.com/kvsession/kvsession/store"
	"github.com/kvsession/kvsession/store/memstore"
	"github.com/kvsession/kvsession/store/storetest/faultstore"
)

var errDown = errors.New("store down")

// discardLogger keeps the logs of tests that do not read them out of the
// test output.
var discardLogger = slog.New(slog.DiscardHandler)

// logBuffer collects log output from the server's goroutines.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// harness is a real HTTP server running a handler behind the middleware,
// with a cookie-keeping client.
type harness struct {
	srv     *httptest.Server
	client  *sessiontest.Client
	faults  *faultstore.Store // nil with the cookie backend
	logs    *logBuffer        // Config.Logger's output
	httpLog *logBuffer        // net/http's own error log (panics, misuse)
	// handling counts the requests inside the middleware: Wait returns
	// once each has returned, whether its client saw it end or not.
	handling sync.WaitGroup
}

// start serves h behind the middleware on the server backend, over a
// memory store wrapped in a fault store.
func start(t *testing.T, cfg kvsession.Config, opts kvhttp.Options, h http.Handler) *harness {
	t.Helper()
	faults := faultstore.New(memstore.New(memstore.Options{}))
	reg := store.NewRegistry(nil)
	if err := reg.Register("sessions", faults.Store()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { reg.Close() })
	logs := &logBuffer{}
	cfg.Logger = slog.New(slog.NewTextHandler(logs, nil))
	b, err := kvsession.New(cfg, reg)
	if err != nil {
		t.Fatal(err)
	}
	hs := serve(t, b, opts, h)
	hs.faults, hs.logs = faults, logs
	return hs
}

// newMiddleware returns a middleware over a memory store, for tests that
// call its handler directly.
func newMiddleware(t testing.TB, opts kvhttp.Options) *kvhttp.Middleware {
	t.Helper()
	st := memstore.New(memstore.Options{})
	reg := store.NewRegistry(nil)
	if err := reg.Register("sessions", st); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { reg.Close() })
	b, err := kvsession.New(kvsession.Config{Logger: discardLogger}, reg)
	if err != nil {
		t.Fatal(err)
	}
	mw, err := kvhttp.New(b, opts)
	if err != nil {
		t.Fatal(err)
	}
	return mw
}

// serve runs h behind the middleware over backend.
func serve(t *testing.T, b kvsession.Backend, opts kvhttp.Options, h http.Handler) *harness {
	t.Helper()
	mw, err := kvhttp.New(b, opts)
	if err != nil {
		t.Fatal(err)
	}
	hs := &harness{httpLog: &logBuffer{}, logs: &logBuffer{}}
	wrapped := mw.Handler(h)
	hs.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hs.handling.Add(1)
		defer hs.handling.Done()
		wrapped.ServeHTTP(w, r)
	}))
	hs.srv.Config.ErrorLog = log.New(hs.httpLog, "", 0)
	hs.srv.Start()
	t.Cleanup(hs.srv.Close)
	hs.client = sessiontest.NewClient(t, hs.srv.URL)
	return hs
}

// serveTLS serves h behind the middleware over HTTPS with HTTP/2, on the
// server backend over a memory store.
func serveTLS(t *testing.T, h http.Handler) *harness {
	t.Helper()
	mw := newMiddleware(t, kvhttp.Options{})
	hs := &harness{httpLog: &logBuffer{}, logs: &logBuffer{}}
	hs.srv = httptest.NewUnstartedServer(mw.Handler(h))
	hs.srv.EnableHTTP2 = true
	hs.srv.Config.ErrorLog = log.New(hs.httpLog, "", 0)
	hs.srv.StartTLS()
	t.Cleanup(hs.srv.Close)
	hs.client = sessiontest.NewClient(t, hs.srv.URL)
	hs.client.HTTP.Transport = hs.srv.Client().Transport
	return hs
}

// routes is a small application using the session from its handlers;
// tests add their own routes to it.
func routes(t *testing.T) *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("/counter", func(w http.ResponseWriter, r *http.Request) {
		s := kvhttp.Session(r)
		n, _ := s.GetInt("n")
		if err := s.SetInt("n", n+1); err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		w.Header().Set("X-Handler", "counter")
		w.Header().Set("Vary", "Accept-Encoding")
		fmt.Fprint(w, n+1)
	})
	mux.HandleFunc("/read", func(w http.ResponseWriter, r *http.Request) {
		n, _ := kvhttp.Session(r).GetInt("n")
		fmt.Fprint(w, n)
	})
	mux.HandleFunc("/plain", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "no session used") })
	noSession := func(w http.ResponseWriter, r *http.Request) {
		if kvhttp.Session(r) != nil {
			t.Errorf("%s got a session", r.URL.Path)
		}
		if _, wrapped := w.(interface{ Unwrap() http.ResponseWriter }); wrapped {
			t.Errorf("%s got a wrapped writer", r.URL.Path)
		}
		io.WriteString(w, "static")
	}
	mux.HandleFunc("/static/", noSession)
	mux.HandleFunc("/skip", noSession)
	mux.HandleFunc("/logout", func(w http.ResponseWriter, r *http.Request) {
		if err := kvhttp.Session(r).Destroy(); err != nil {
			http.Error(w, err.Error(), 500)
		}
	})
	mux.HandleFunc("/renew", func(w http.ResponseWriter, r *http.Request) {
		if err := kvhttp.Session(r).RenewID(); err != nil {
			http.Error(w, err.Error(), 500)
		}
	})
	return mux
}

func (hs *harness) get(path string) sessiontest.Response { return hs.client.Do("GET", path, "") }

func TestCounterOverHTTP(t *testing.T) {
	hs := start(t, kvsession.Config{}, kvhttp.Options{}, routes(t))
	for want := 1; want <= 4; want++ {
		r := hs.client.Expect("GET", "/counter", "", 200, strconv.Itoa(want))
		// Every response of a session varies by its cookie, sent or not.
		if got := r.Header.Values("Vary"); !contains(got, "Cookie") || !contains(got, "Accept-Encoding") {
			t.Errorf("write %d: Vary = %q: want the handler's value kept and Cookie added", want, got)
		}
		sc, cc := strings.Join(r.SetCookies(), "\n"), r.Header.Get("Cache-Control")
		if want > 1 {
			// The same id, its expiry moved by far less than a hundredth
			// of MaxAge: the client's cookie still says what it should
			// (cookierefresh.go), so neither header is sent.
			if sc != "" || cc != "" {
				t.Errorf("write %d: Set-Cookie %q, Cache-Control %q, want neither", want, sc, cc)
			}
			continue
		}
		// The new session's cookie, with every attribute.
		for _, attr := range []string{"session=", "Path=/", "Max-Age=1209600", "HttpOnly", "SameSite=Lax"} {
			if !strings.Contains(sc, attr) {
				t.Errorf("Set-Cookie %q lacks %q", sc, attr)
			}
		}
		if strings.Contains(sc, "Expires=") {
			t.Errorf("Set-Cookie %q has Expires, which Config.CookieExpires alone adds", sc)
		}
		if cc != `no-cache="Set-Cookie"` {
			t.Errorf("Cache-Control = %q", cc)
		}
	}
	// A request that only reads writes nothing.
	writes := hs.faults.Calls(faultstore.Writes)
	r := hs.client.Expect("GET", "/read", "", 200, "4")
	if len(r.SetCookies()) != 0 || hs.faults.Calls(faultstore.Writes) != writes {
		t.Fatalf("a read: Set-Cookie %q, writes %d→%d", r.SetCookies(), writes, hs.faults.Calls(faultstore.Writes))
	}
	// Logout expires the cookie, and the client forgets the session.
	if r = hs.get("/logout"); !r.Expired {
		t.Fatalf("logout: Set-Cookie %q", r.SetCookies())
	}
	hs.client.Expect("GET", "/read", "", 200, "0")
}

func contains(list []string, v string) bool {
	for _, s := range list {
		if s == v {
			return true
		}
	}
	return false
}

// TestNoSessionRoutes: Config.Exclude and Options.Skip give the handler
// neither a session nor a wrapped writer, and a route that never touches
// its session costs no store call.
func TestNoSessionRoutes(t *testing.T) {
	skip := func(r *http.Request) bool { return r.URL.Path == "/skip" }
	hs := start(t, kvsession.Config{Exclude: []string{"^/static/"}}, kvhttp.Options{Skip: skip}, routes(t))
	hs.get("/counter") // the client now has a session cookie
	reads := hs.faults.Calls(faultstore.Reads)
	for _, tc := range []struct{ path, body string }{
		{"/static/logo.png", "static"},
		{"/skip", "static"},
		{"/plain", "no session used"},
	} {
		t.Run(tc.path, func(t *testing.T) {
			r := hs.client.Expect("GET", tc.path, "", 200, tc.body)
			if len(r.SetCookies()) != 0 {
				t.Errorf("Set-Cookie %q", r.SetCookies())
			}
		})
	}
	if got := hs.faults.Calls(faultstore.Reads); got != reads {
		t.Fatalf("routes that never use the session read the store %d times", got-reads)
	}
}

// TestReadOnly: with Config.Lock, a request Options.ReadOnly marks reads
// the session while another request holds its lock, where one not marked
// waits for it.
func TestReadOnly(t *testing.T) {
	holding, release := make(chan struct{}), make(chan struct{})
	mux := routes(t)
	mux.HandleFunc("/hold", func(w http.ResponseWriter, r *http.Request) {
		kvhttp.Session(r).Load() // takes the lock
		close(holding)
		<-release
	})
	mux.HandleFunc("/is-read-only", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, kvhttp.Session(r).IsReadOnly())
	})
	readOnly := func(r *http.Request) bool { return r.Method == "GET" && r.URL.Path != "/hold" }
	hs := start(t, kvsession.Config{Lock: true, LockWait: 200 * time.Millisecond}, kvhttp.Options{ReadOnly: readOnly}, mux)
	hs.client.Expect("POST", "/counter", "", 200, "1")
	hs.client.Expect("GET", "/is-read-only", "", 200, "true")
	hs.client.Expect("POST", "/is-read-only", "", 200, "false")

	done := make(chan struct{})
	go func() { defer close(done); sessiontest.Send(hs.client.HTTP, "GET", hs.srv.URL+"/hold", "") }()
	<-holding
	hs.client.Expect("GET", "/read", "", 200, "1")
	if r := hs.client.Do("POST", "/read", ""); r.Status != 500 {
		t.Errorf("POST /read while the lock is held: %d %q, want the lock wait to time out", r.Status, r.Body)
	}
	close(release)
	<-done
}

// TestLockLosesNoIncrement: with Config.Lock, parallel increments of one
// session all count, although every handler writes its response (and so
// commits its session) before it returns.
func TestLockLosesNoIncrement(t *testing.T) {
	hs := start(t, kvsession.Config{Lock: true}, kvhttp.Options{}, routes(t))
	hs.client.Expect("POST", "/counter", "", 200, "1")
	const n = 30
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			r, err := sessiontest.Send(hs.client.HTTP, "POST", hs.srv.URL+"/counter", "")
			if err != nil || r.Status != 200 {
				t.Errorf("%+v %v", r, err)
			}
		})
	}
	wg.Wait()
	hs.client.Expect("GET", "/read", "", 200, strconv.Itoa(n+1))
}

func TestCookieBackend(t *testing.T) {
	mux := routes(t)
	big := strings.Repeat("x", 10_000) // more than one 4 KB cookie holds
	mux.HandleFunc("/big", func(w http.ResponseWriter, r *http.Request) {
		s := kvhttp.Session(r)
		if r.Method == "POST" {
			s.SetString("big", big)
		}
		v, _ := s.GetString("big")
		fmt.Fprint(w, len(v))
	})
	hs := serve(t, sessiontest.NewCookieBackend(t, kvsession.Config{}), kvhttp.Options{}, mux)
	for want := 1; want <= 3; want++ {
		hs.client.Expect("GET", "/counter", "", 200, strconv.Itoa(want))
	}
	r := hs.client.Expect("POST", "/big", "", 200, strconv.Itoa(len(big)))
	if n := len(r.SetCookies()); n < 3 {
		t.Fatalf("a 10 KB session in %d Set-Cookie lines, want it split", n)
	}
	hs.client.Expect("GET", "/big", "", 200, strconv.Itoa(len(big)))
	hs.client.Expect("GET", "/read", "", 200, "3")
}

// TestCookieHeaderOverSeveralLines: the session cookie is found on any of
// several Cookie header lines.
func TestCookieHeaderOverSeveralLines(t *testing.T) {
	hs := start(t, kvsession.Config{}, kvhttp.Options{}, routes(t))
	hs.get("/counter")
	id := hs.client.SessionCookie().Value
	req, _ := http.NewRequest("GET", hs.srv.URL+"/counter", nil)
	req.Header["Cookie"] = []string{"theme=dark", "session=" + id}
	resp, err := http.DefaultTransport.RoundTrip(req) // no jar: exactly these lines
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "2" {
		t.Fatalf("counter %q: the session cookie on the second Cookie line was missed", body)
	}
}

// TestSaveAfterClientHangsUp: the request's context is cancelled when its
// client goes, but the session's store calls do not see that: a save
// after it still happens.
func TestSaveAfterClientHangsUp(t *testing.T) {
	arrived, saved := make(chan struct{}), make(chan error, 1)
	mux := routes(t)
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) {
		s := kvhttp.Session(r)
		s.Load()
		close(arrived)
		<-r.Context().Done()
		saved <- s.SetInt("n", 42)
		// Returning commits the session: its save runs after the client went.
	})
	hs := start(t, kvsession.Config{Lock: true}, kvhttp.Options{}, mux)
	hs.get("/counter")
	ctx, cancel := context.WithCancel(t.Context())
	req, _ := http.NewRequestWithContext(ctx, "GET", hs.srv.URL+"/slow", nil)
	go func() { <-arrived; cancel() }()
	if _, err := hs.client.HTTP.Do(req); !errors.Is(err, context.Canceled) {
		t.Fatalf("request: %v, want it cancelled", err)
	}
	if err := <-saved; err != nil {
		t.Fatal(err)
	}
	// The handler may still be saving: the session lock makes /read wait
	// for it.
	hs.client.Expect("GET", "/read", "", 200, "42")
}

// TestContextOutlivesRequest: a context kept beyond its request no longer
// leads to the session, which went back to the backend's pool and may be
// another request's now.
func TestContextOutlivesRequest(t *testing.T) {
	kept := make(chan context.Context, 1)
	mux := routes(t)
	mux.HandleFunc("/keep", func(w http.ResponseWriter, r *http.Request) {
		if kvhttp.FromContext(r.Context()) == nil {
			t.Error("no session during the request")
		}
		kept <- context.WithoutCancel(r.Context())
	})
	hs := start(t, kvsession.Config{}, kvhttp.Options{}, mux)
	hs.get("/keep")
	ctx := <-kept
	hs.get("/counter") // another request, which may reuse the session
	if s := kvhttp.FromContext(ctx); s != nil {
		t.Fatal("a context kept after its request still gives a session")
	}
}

func TestErrorHandler(t *testing.T) {
	var handlerWriteErr error
	mux := routes(t)
	mux.HandleFunc("/prepared", func(w http.ResponseWriter, r *http.Request) {
		s := kvhttp.Session(r)
		n, _ := s.GetInt("n")
		s.SetInt("n", n+1)
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Encoding", "gzip")
		w.Header().Set("Content-Length", "5")
		w.WriteHeader(202)
		_, handlerWriteErr = w.Write([]byte("hello"))
	})
	custom := func(w http.ResponseWriter, r *http.Request, err error) {
		if kvhttp.Session(r) != nil {
			http.Error(w, "error handler got the session", 500)
			return
		}
		w.Header().Set("Retry-After", "1")
		http.Error(w, "try later: "+err.Error(), http.StatusServiceUnavailable)
	}
	for _, tc := range []struct {
		name     string
		handler  kvhttp.ErrorHandler
		fail     faultstore.Method
		path     string
		status   int
		body     string
		logged   bool
		writeErr bool // the handler's Write reported the replaced response
	}{
		{"save fails, default handler", nil, faultstore.Writes, "/counter", 500, "session unavailable\n", true, false},
		{"load fails, default handler", nil, faultstore.Reads, "/counter", 500, "session unavailable\n", true, false},
		{"save fails, custom handler", custom, faultstore.Writes, "/counter", 503, "try later: kvsession: session save: store down\n", false, false},
		{"load fails, custom handler", custom, faultstore.Reads, "/read", 503, "try later: kvsession: session load: store down\n", false, false},
		{"handler's headers and status dropped", nil, faultstore.Writes, "/prepared", 500, "session unavailable\n", true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			handlerWriteErr = nil
			hs := start(t, kvsession.Config{}, kvhttp.Options{ErrorHandler: tc.handler}, mux)
			hs.get("/counter")
			down := hs.faults.Add(faultstore.Rule{Methods: tc.fail, Err: errDown})
			r := hs.client.Expect("GET", tc.path, "", tc.status, tc.body)
			down.Remove()
			if down.Hits() == 0 {
				t.Fatal("the fault was never met")
			}
			for _, h := range []string{"Set-Cookie", "X-Handler", "Content-Encoding"} {
				if v := r.Header.Get(h); v != "" {
					t.Errorf("the handler's %s: %q reached the client", h, v)
				}
			}
			if ct := r.Header.Get("Content-Type"); ct != "text/plain; charset=utf-8" {
				t.Errorf("Content-Type %q", ct)
			}
			if got := strings.Contains(hs.logs.String(), "session unavailable"); got != tc.logged {
				t.Errorf("logged %v, want %v: %s", got, tc.logged, hs.logs)
			}
			if tc.writeErr && (!errors.Is(handlerWriteErr, kvhttp.ErrResponseReplaced) || !errors.Is(handlerWriteErr, errDown)) {
				t.Errorf("the handler's Write returned %v, want ErrResponseReplaced and the store's error", handlerWriteErr)
			}
			// What the store held before the failure is intact.
			hs.client.Expect("GET", "/read", "", 200, "1")
			if s := hs.httpLog.String(); s != "" {
				t.Errorf("net/http complained: %s", s)
			}
		})
	}
}

// TestHostileCookiesGetFreshSession: cookies the backend cannot use start
// a fresh session, and leave the real one alone.
func TestHostileCookiesGetFreshSession(t *testing.T) {
	hs := start(t, kvsession.Config{}, kvhttp.Options{}, routes(t))
	hs.get("/counter")
	hs.get("/counter") // the jar's session is at 2
	for _, tc := range []struct{ name, cookie string }{
		{"garbage", "session=%%%garbage%%%"},
		{"empty", "session="},
		{"forged id", "session=" + strings.Repeat("A", 43)},
		{"oversized", "session=" + strings.Repeat("A", 3000)},
		{"twice", "session=" + strings.Repeat("A", 43) + "; session=" + strings.Repeat("B", 43)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest("GET", hs.srv.URL+"/counter", nil)
			req.Header.Set("Cookie", tc.cookie)
			resp, err := http.DefaultTransport.RoundTrip(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || string(body) != "1" {
				t.Fatalf("%d %q, want a fresh session at 1", resp.StatusCode, body)
			}
		})
	}
	hs.client.Expect("GET", "/read", "", 200, "2")
}

func TestNewNeedsABackend(t *testing.T) {
	if _, err := kvhttp.New(nil, kvhttp.Options{}); err == nil {
		t.Fatal("New(nil) accepted")
	}
}

// statusApp is a server backend on a memory store behind the middleware,
// with a session holding n = 1.
type statusApp struct {
	be     *kvsession.ServerBackend
	h      http.Handler
	cookie string
}

func newStatusApp(t *testing.T, cfg kvsession.Config, next http.HandlerFunc) *statusApp {
	t.Helper()
	st := memstore.New(memstore.Options{})
	t.Cleanup(func() { st.Close() })
	reg := store.NewRegistry(nil)
	if err := reg.Register("sessions", st); err != nil {
		t.Fatal(err)
	}
	be, err := kvsession.New(cfg, reg)
	if err != nil {
		t.Fatal(err)
	}
	id, _ := be.GenerateID()
	if err := be.Set(t.Context(), id, map[string]any{"n": 1}); err != nil {
		t.Fatal(err)
	}
	mw, err := kvhttp.New(be, kvhttp.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return &statusApp{be: be, h: mw.Handler(next), cookie: "session=" + id}
}

func (a *statusApp) do() *http.Response {
	req := httptest.NewRequest("GET", "/", nil)
	req.Header.Set("Cookie", a.cookie)
	w := httptest.NewRecorder()
	a.h.ServeHTTP(w, req)
	return w.Result()
}

func (a *statusApp) n(t *testing.T) int64 {
	t.Helper()
	values, err := a.be.Get(t.Context(), a.cookie[len("session="):])
	if err != nil {
		t.Fatal(err)
	}
	n, _ := values["n"].(int64)
	return n
}

// TestServerErrorSavesNothing: a handler that changes the session and
// answers 5xx (the WriteHeader commits) leaves the store as it was and
// sends no Set-Cookie; 4xx saves, and so does 5xx with SaveOnServerError.
// http.Error writes the header before its body, as most handlers do.
func TestServerErrorSavesNothing(t *testing.T) {
	for _, tc := range []struct {
		status    int
		saveOn5xx bool
		want      int64
	}{
		{500, false, 1},
		{503, false, 1},
		{500, true, 2},
		{404, false, 2},
	} {
		t.Run(strconv.Itoa(tc.status)+map[bool]string{true: " SaveOnServerError"}[tc.saveOn5xx], func(t *testing.T) {
			a := newStatusApp(t, kvsession.Config{SaveOnServerError: tc.saveOn5xx}, func(w http.ResponseWriter, r *http.Request) {
				kvhttp.Session(r).SetInt("n", 2)
				http.Error(w, "failed", tc.status)
			})
			resp := a.do()
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want the handler's %d", resp.StatusCode, tc.status)
			}
			if got := a.n(t); got != tc.want {
				t.Fatalf("stored n = %d, want %d", got, tc.want)
			}
			if sc := resp.Header.Values("Set-Cookie"); (len(sc) > 0) != (tc.want == 2) {
				t.Fatalf("Set-Cookie %q, want one only when saved", sc)
			}
			if v := resp.Header.Values("Vary"); !slices.Equal(v, []string{"Cookie"}) {
				t.Fatalf("Vary %q, want Cookie once", v)
			}
		})
	}
}

// TestServerErrorAfterTheCommitStands: a 5xx status set after the first
// write is not the status the commit saw (200 went out): the save that
// went with it stands, as the package documentation says.
func TestServerErrorAfterTheCommitStands(t *testing.T) {
	a := newStatusApp(t, kvsession.Config{}, func(w http.ResponseWriter, r *http.Request) {
		kvhttp.Session(r).SetInt("n", 2)
		io.WriteString(w, "ok")
		w.WriteHeader(500) // superfluous: net/http ignores it
	})
	if resp := a.do(); resp.StatusCode != 200 || len(resp.Header.Values("Set-Cookie")) != 1 {
		t.Fatalf("status %d, Set-Cookie %q", resp.StatusCode, resp.Header.Values("Set-Cookie"))
	}
	if got := a.n(t); got != 2 {
		t.Fatalf("stored n = %d, want 2", got)
	}
}

// TestVaryOnCookieWhenTheSessionIsUsed: a route that only reads the
// session gets Vary: Cookie though it sets no cookie; one that never
// touches it gets no Vary; a handler's own Vary: Cookie is not repeated
// and one listing other fields gets Cookie added.
func TestVaryOnCookieWhenTheSessionIsUsed(t *testing.T) {
	for _, tc := range []struct {
		name    string
		handler http.HandlerFunc
		want    []string
	}{
		{"read", func(w http.ResponseWriter, r *http.Request) { kvhttp.Session(r).GetInt("n") }, []string{"Cookie"}},
		{"read, then write", func(w http.ResponseWriter, r *http.Request) {
			kvhttp.Session(r).GetInt("n")
			io.WriteString(w, "page")
		}, []string{"Cookie"}},
		{"untouched", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "static") }, nil},
		{"handler's own", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Vary", "Accept-Encoding, cookie")
			kvhttp.Session(r).GetInt("n")
		}, []string{"Accept-Encoding, cookie"}},
		{"handler's own, set", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Vary", "Cookie")
			kvhttp.Session(r).SetInt("n", 5)
		}, []string{"Cookie"}},
		{"other field", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Vary", "Accept-Encoding")
			kvhttp.Session(r).GetInt("n")
		}, []string{"Accept-Encoding", "Cookie"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := newStatusApp(t, kvsession.Config{}, tc.handler)
			resp := a.do()
			if got := resp.Header.Values("Vary"); !slices.Equal(got, tc.want) {
				t.Fatalf("Vary %q, want %q", got, tc.want)
			}
			if tc.name == "read" && len(resp.Header.Values("Set-Cookie")) != 0 {
				t.Fatal("a read set the cookie")
			}
		})
	}
}

// newLockedMiddleware returns a middleware over a server-side backend on a
// memory store of its own, locking sessions with a short LockWait: a lock
// a request leaves held makes the next request of that session fail.
func newLockedMiddleware(t *testing.T, cookieName string, opts kvhttp.Options) *kvhttp.Middleware {
	t.Helper()
	reg := store.NewRegistry(nil)
	if err := reg.Register("sessions", memstore.New(memstore.Options{})); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { reg.Close() })
	b, err := kvsession.New(kvsession.Config{CookieName: cookieName, Lock: true, LockWait: 200 * time.Millisecond, Logger: discardLogger}, reg)
	if err != nil {
		t.Fatal(err)
	}
	mw, err := kvhttp.New(b, opts)
	if err != nil {
		t.Fatal(err)
	}
	return mw
}

// TestNestedMiddlewaresKeepTheirOwnSessions: a "prefs" middleware inside a
// "session" one; the handler reaches each session through its
// middleware's Session method, both are saved under their own cookies, and
// Session (the function) is the innermost one's, while an outer handler
// still sees its own.
func TestNestedMiddlewaresKeepTheirOwnSessions(t *testing.T) {
	login := newLockedMiddleware(t, "session", kvhttp.Options{})
	prefs := newLockedMiddleware(t, "prefs", kvhttp.Options{
		Skip: func(r *http.Request) bool { return r.URL.Path == "/no-prefs" },
	})
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ls, ps := login.Session(r), prefs.Session(r)
		if r.URL.Path == "/no-prefs" {
			if ps != nil || ls == nil || kvhttp.Session(r) != ls {
				http.Error(w, "skipped prefs: want a nil prefs session and Session = the login session", 500)
			}
			return
		}
		if ls == nil || ps == nil || ls == ps || kvhttp.Session(r) != ps || prefs.FromContext(r.Context()) != ps {
			http.Error(w, "want two distinct sessions, Session = the inner (prefs) one", 500)
			return
		}
		if r.URL.Path == "/write" {
			if err := ls.Set("user", "ann"); err != nil {
				http.Error(w, err.Error(), 500)
				return
			}
			if err := ps.Set("theme", "dark"); err != nil {
				http.Error(w, err.Error(), 500)
				return
			}
		}
		user, _ := ls.GetString("user")
		theme, _ := ps.GetString("theme")
		io.WriteString(w, user+"/"+theme)
	})
	inner := prefs.Handler(handler)
	outer := login.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// The outer handler's request is its own: Session is the login
		// session, and no prefs session is reachable from it.
		if kvhttp.Session(r) != login.Session(r) || login.Session(r) == nil || prefs.Session(r) != nil {
			http.Error(w, "outside the inner middleware: want Session = the login session, no prefs session", 500)
			return
		}
		inner.ServeHTTP(w, r)
	}))
	srv := httptest.NewServer(outer)
	t.Cleanup(srv.Close)
	client := sessiontest.NewClient(t, srv.URL)

	r := client.Do("GET", "/write", "")
	if r.Status != 200 || r.Body != "ann/dark" {
		t.Fatalf("/write: %d %q", r.Status, r.Body)
	}
	names := map[string]bool{}
	for _, c := range r.Cookies() {
		names[c.Name] = true
	}
	if !names["session"] || !names["prefs"] || len(r.SetCookies()) != 2 {
		t.Fatalf("Set-Cookie = %q, want one session and one prefs cookie", r.SetCookies())
	}
	// Both saved, both locks released: each session is loaded again, with
	// its value, without waiting for a lock the first request kept.
	for range 2 {
		client.Expect("GET", "/read", "", 200, "ann/dark")
	}
	if r := client.Do("GET", "/no-prefs", ""); r.Status != 200 || len(r.SetCookies()) != 0 {
		t.Fatalf("/no-prefs: %d %q Set-Cookie %q", r.Status, r.Body, r.SetCookies())
	}
}

// TestIDHeader: a client without cookies carries its id in
// Config.IDHeader, end to end through net/http (sessiontest.CheckIDHeader
// says what it checks): over HTTP/1.1, with the header configured in any
// case, and over HTTP/2, whose header names travel in lower case.
func TestIDHeader(t *testing.T) {
	for _, tc := range []struct {
		name, header string
		h2           bool
	}{
		{"HTTP/1.1", "X-Session-Id", false},
		{"lower case", "x-app-session", false},
		{"HTTP/2", "X-Session-Id", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if !tc.h2 {
				hs := start(t, kvsession.Config{IDHeader: tc.header}, kvhttp.Options{}, routes(t))
				sessiontest.CheckIDHeader(t, hs.srv.URL, nil, tc.header)
				return
			}
			b, err := kvsession.New(kvsession.Config{IDHeader: tc.header, Logger: discardLogger}, nil)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { b.Close() })
			mw, err := kvhttp.New(b, kvhttp.Options{})
			if err != nil {
				t.Fatal(err)
			}
			srv := httptest.NewUnstartedServer(mw.Handler(routes(t)))
			srv.EnableHTTP2 = true
			srv.StartTLS()
			t.Cleanup(srv.Close)
			sessiontest.CheckIDHeader(t, srv.URL, srv.Client().Transport, tc.header)
		})
	}
}
