package kvfasthttp_test

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttputil"

	"github.com/kvsession/kvsession"
	"github.com/kvsession/kvsession/internal/sessiontest"
	"github.com/kvsession/kvsession/kvfasthttp"
	"github.com/kvsession/kvsession/store"
	"github.com/kvsession/kvsession/store/memstore"
)

// countingStore wraps a real store, counting calls and failing on demand.
type countingStore struct {
	store.Store
	gets, sets atomic.Int64
	failGet    atomic.Bool
	failSet    atomic.Bool
}

var errDown = errors.New("store down")

func (c *countingStore) Get(ctx context.Context, key string) ([]byte, error) {
	c.gets.Add(1)
	if c.failGet.Load() {
		return nil, errDown
	}
	return c.Store.Get(ctx, key)
}

func (c *countingStore) Set(ctx context.Context, key string, v []byte, ttl time.Duration) error {
	c.sets.Add(1)
	if c.failSet.Load() {
		return errDown
	}
	return c.Store.Set(ctx, key, v, ttl)
}

// Swap is a save of a loaded session: counted and failed as a Set.
func (c *countingStore) Swap(ctx context.Context, key string, old, v []byte, ttl time.Duration) (bool, error) {
	c.sets.Add(1)
	if c.failSet.Load() {
		return false, errDown
	}
	return c.Store.Swap(ctx, key, old, v, ttl)
}

// app is a small application exercising the session from handlers.
func app(ctx *fasthttp.RequestCtx) {
	sess := kvfasthttp.Session(ctx)
	switch string(ctx.Path()) {
	case "/static/logo.png", "/skip":
		if sess != nil {
			ctx.Error("excluded route got a session", 500)
			return
		}
		ctx.WriteString("static")
	case "/plain":
		ctx.WriteString("no session used")
	case "/counter":
		n, _ := sess.GetInt("n")
		if err := sess.Set("n", n+1); err != nil {
			ctx.Error(err.Error(), 500)
			return
		}
		ctx.Response.Header.Set("Vary", "Accept-Encoding")
		ctx.WriteString(itoa(n + 1))
	case "/during-shutdown":
		// fasthttp closes ctx.Done() when the server begins shutting down.
		inHandler <- struct{}{}
		<-ctx.Done()
		if err := sess.Set("n", 42); err != nil {
			ctx.Error(err.Error(), 500)
		}
	case "/read":
		n, _ := sess.GetInt("n")
		ctx.WriteString(itoa(n))
	case "/logout":
		if err := sess.Destroy(); err != nil {
			ctx.Error(err.Error(), 500)
		}
	case "/renew":
		if err := sess.RenewID(); err != nil {
			ctx.Error(err.Error(), 500)
		}
	}
}

// inHandler tells TestSaveDuringGracefulShutdown its request has arrived.
var inHandler = make(chan struct{}, 1)

func itoa(n int) string { return strconv.Itoa(n) }

type server struct {
	fs     *fasthttp.Server
	store  *countingStore
	client *http.Client
	jar    *cookiejar.Jar
	errs   atomic.Int64
}

func start(t *testing.T, cfg kvsession.Config, opts kvfasthttp.Options) *server {
	t.Helper()
	st := &countingStore{Store: memstore.New(memstore.Options{})}
	reg := store.NewRegistry(nil)
	if err := reg.Register("sessions", st); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { reg.Close() })
	b, err := kvsession.New(cfg, reg)
	if err != nil {
		t.Fatal(err)
	}
	srv := serve(t, b, opts)
	srv.store = st
	return srv
}

// serve runs app behind the middleware over backend on an in-memory
// listener, with a client that keeps cookies in a jar.
func serve(t *testing.T, b kvsession.Backend, opts kvfasthttp.Options) *server {
	t.Helper()
	srv := &server{}
	if opts.ErrorHandler != nil {
		h := opts.ErrorHandler
		opts.ErrorHandler = func(ctx *fasthttp.RequestCtx, err error) { srv.errs.Add(1); h(ctx, err) }
	}
	ln := fasthttputil.NewInmemoryListener()
	mw, err := kvfasthttp.New(b, opts)
	if err != nil {
		t.Fatal(err)
	}
	fs := mw.NewServer(app)
	srv.fs = fs
	go fs.Serve(ln)
	t.Cleanup(func() { fs.Shutdown(); ln.Close() })
	srv.jar, _ = cookiejar.New(nil)
	srv.client = &http.Client{Jar: srv.jar, Transport: &http.Transport{
		DialContext: func(context.Context, string, string) (net.Conn, error) { return ln.Dial() },
	}}
	return srv
}

func (s *server) do(t *testing.T, method, path string, cookie string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest(method, "http://example.test"+path, nil)
	if cookie != "" {
		req.Header.Set("Cookie", cookie)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(body)
}

func (s *server) get(t *testing.T, path string) (*http.Response, string) {
	t.Helper()
	return s.do(t, "GET", path, "")
}

var site, _ = url.Parse("http://example.test/")

func TestCounterOverHTTP(t *testing.T) {
	s := start(t, kvsession.Config{}, kvfasthttp.Options{})
	for want := 1; want <= 4; want++ {
		resp, body := s.get(t, "/counter")
		if resp.StatusCode != 200 || body != itoa(want) {
			t.Fatalf("counter = %d %q, want %d", resp.StatusCode, body, want)
		}
		// Every response of a session varies by its cookie, sent or not.
		if got := resp.Header.Values("Vary"); !contains(got, "Cookie") || !contains(got, "Accept-Encoding") {
			t.Errorf("write %d: Vary = %q: want the handler's value kept and Cookie added", want, got)
		}
		sc, cc := resp.Header.Get("Set-Cookie"), resp.Header.Get("Cache-Control")
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
	// A read-only request writes nothing.
	sets := s.store.sets.Load()
	resp, body := s.get(t, "/read")
	if body != "4" || resp.Header.Get("Set-Cookie") != "" || s.store.sets.Load() != sets {
		t.Fatalf("read: body %q, Set-Cookie %q, sets %d→%d", body, resp.Header.Get("Set-Cookie"), sets, s.store.sets.Load())
	}
}

func contains(list []string, v string) bool {
	for _, s := range list {
		if s == v {
			return true
		}
	}
	return false
}

func TestLazyLoadAndExclusion(t *testing.T) {
	skip := func(ctx *fasthttp.RequestCtx) bool { return string(ctx.Path()) == "/skip" }
	s := start(t, kvsession.Config{Exclude: []string{"^/static/"}}, kvfasthttp.Options{Skip: skip})
	s.get(t, "/counter") // the client now has a valid session cookie
	gets := s.store.gets.Load()
	for _, path := range []string{"/plain", "/static/logo.png", "/skip"} {
		resp, body := s.get(t, path)
		if resp.StatusCode != 200 || resp.Header.Get("Set-Cookie") != "" {
			t.Errorf("%s: %d %q Set-Cookie %q", path, resp.StatusCode, body, resp.Header.Get("Set-Cookie"))
		}
	}
	if got := s.store.gets.Load(); got != gets {
		t.Fatalf("routes that never use the session hit the store %d times", got-gets)
	}
}

func TestHostileCookiesGetFreshSession(t *testing.T) {
	s := start(t, kvsession.Config{}, kvfasthttp.Options{})
	s.get(t, "/counter")
	s.get(t, "/counter") // the jar's session is at 2
	for name, cookie := range map[string]string{
		"garbage":   "session=%%%garbage%%%",
		"empty":     "session=",
		"forged id": "session=" + strings.Repeat("A", 43),
		"oversized": "session=" + strings.Repeat("A", 3000),
		"injection": "session=abc\r\nX-Evil: 1",
	} {
		t.Run(name, func(t *testing.T) {
			req, _ := http.NewRequest("GET", "http://example.test/counter", nil)
			req.Header.Set("Cookie", cookie)
			resp, err := (&http.Client{Transport: s.client.Transport}).Do(req)
			if err != nil {
				// net/http refuses to send a header with CR LF: nothing to test.
				if name == "injection" {
					return
				}
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || string(body) != "1" {
				t.Fatalf("%d %q, want a fresh session at 1", resp.StatusCode, body)
			}
			if resp.Header.Get("X-Evil") != "" {
				t.Fatal("header injected")
			}
		})
	}
	if _, body := s.get(t, "/read"); body != "2" {
		t.Fatalf("the real session was disturbed: %q", body)
	}
}

func TestLogoutExpiresCookie(t *testing.T) {
	s := start(t, kvsession.Config{}, kvfasthttp.Options{})
	s.get(t, "/counter")
	resp, _ := s.get(t, "/logout")
	if sc := resp.Header.Get("Set-Cookie"); !strings.Contains(sc, "Max-Age=0") || !strings.Contains(sc, "Expires=Thu, 01 Jan 1970") {
		t.Fatalf("Set-Cookie %q", sc)
	}
	if len(s.jar.Cookies(site)) != 0 {
		t.Fatal("browser kept the cookie")
	}
	if _, body := s.get(t, "/read"); body != "0" {
		t.Fatalf("session survived logout: %q", body)
	}
}

func TestStoreErrorsReachErrorHandler(t *testing.T) {
	t.Run("default handler", func(t *testing.T) {
		s := start(t, kvsession.Config{}, kvfasthttp.Options{})
		s.get(t, "/counter")
		s.store.failGet.Store(true)
		resp, body := s.get(t, "/counter")
		if resp.StatusCode != 500 || body != "session unavailable\n" || resp.Header.Get("Set-Cookie") != "" {
			t.Fatalf("%d %q %q", resp.StatusCode, body, resp.Header.Get("Set-Cookie"))
		}
		s.store.failGet.Store(false)
		if _, body := s.get(t, "/read"); body != "1" {
			t.Fatalf("data after outage: %q", body)
		}
	})
	t.Run("custom handler on save", func(t *testing.T) {
		s := start(t, kvsession.Config{}, kvfasthttp.Options{ErrorHandler: func(ctx *fasthttp.RequestCtx, err error) {
			ctx.Response.Reset()
			ctx.SetStatusCode(503)
			ctx.SetBodyString("try later: " + err.Error())
		}})
		s.get(t, "/counter")
		s.store.failSet.Store(true)
		resp, body := s.get(t, "/counter")
		if resp.StatusCode != 503 || !strings.Contains(body, "store down") || s.errs.Load() != 1 {
			t.Fatalf("%d %q errs=%d", resp.StatusCode, body, s.errs.Load())
		}
		s.store.failSet.Store(false)
		if _, body := s.get(t, "/read"); body != "1" {
			t.Fatalf("stored data changed by a failed save: %q", body)
		}
	})
}

func TestParallelClientsKeepTheirOwnSessions(t *testing.T) {
	s := start(t, kvsession.Config{}, kvfasthttp.Options{})
	var wg sync.WaitGroup
	for c := 0; c < 8; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			jar, _ := cookiejar.New(nil)
			client := &http.Client{Jar: jar, Transport: s.client.Transport}
			for want := 1; want <= 20; want++ {
				resp, err := client.Get("http://example.test/counter")
				if err != nil {
					t.Error(err)
					return
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if string(body) != itoa(want) {
					t.Errorf("client got %q, want %d", body, want)
					return
				}
			}
		}()
	}
	wg.Wait()
}

// TestSaveDuringGracefulShutdown: a request the server lets finish while
// shutting down must also get its session saved.
func TestSaveDuringGracefulShutdown(t *testing.T) {
	s := start(t, kvsession.Config{}, kvfasthttp.Options{})
	done := make(chan struct{})
	var resp *http.Response
	go func() {
		defer close(done)
		resp, _ = s.get(t, "/during-shutdown")
	}()
	// Shut down once the request is inside the handler.
	<-inHandler
	if err := s.fs.Shutdown(); err != nil {
		t.Fatal(err)
	}
	<-done
	if resp == nil || resp.StatusCode != 200 || !strings.Contains(resp.Header.Get("Set-Cookie"), "session=") {
		t.Fatalf("response during shutdown: %+v", resp)
	}
	if s.store.sets.Load() != 1 {
		t.Fatalf("session not saved")
	}
}

func TestParallelIncrementsWithLock(t *testing.T) {
	// GETs are read-only: they must not queue behind the writers.
	readOnly := func(ctx *fasthttp.RequestCtx) bool { return ctx.IsGet() && string(ctx.Path()) == "/read" }
	s := start(t, kvsession.Config{Lock: true}, kvfasthttp.Options{ReadOnly: readOnly})
	s.get(t, "/counter")
	const n = 30
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequest("POST", "http://example.test/counter", nil)
			resp, err := s.client.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Errorf("status %d", resp.StatusCode)
			}
		}()
	}
	wg.Wait()
	if _, body := s.get(t, "/read"); body != itoa(n+1) {
		t.Fatalf("counter %s after %d parallel increments, want %d", body, n, n+1)
	}
}

// The cookie backend makes the largest Cookie headers: the tests of the
// read buffer and of the Cookie header use one (sessiontest.NewCookieBackend).

func TestReadBufferMustHoldCookieSegments(t *testing.T) {
	b := sessiontest.NewCookieBackend(t, kvsession.Config{})
	_, err := kvfasthttp.New(b, kvfasthttp.Options{})
	need := kvfasthttp.RequiredReadBufferSize(b, kvfasthttp.DefaultHeaderRoom)
	if err == nil || !strings.Contains(err.Error(), "Options.ReadBufferSize") || !strings.Contains(err.Error(), strconv.Itoa(need)) {
		t.Fatalf("New with fasthttp's default read buffer: %v; want an error naming the field and %d", err, need)
	}
	if _, err := kvfasthttp.New(b, kvfasthttp.Options{ReadBufferSize: need - 1}); err == nil {
		t.Fatal("a buffer one byte short accepted")
	}
	mw, err := kvfasthttp.New(b, kvfasthttp.Options{ReadBufferSize: need})
	if err != nil {
		t.Fatal(err)
	}
	if got := mw.NewServer(app).ReadBufferSize; got != need {
		t.Fatalf("NewServer ReadBufferSize %d, want %d", got, need)
	}
	// The server-side backend's id cookie fits fasthttp's default.
	s := start(t, kvsession.Config{}, kvfasthttp.Options{})
	if _, body := s.get(t, "/counter"); body != "1" {
		t.Fatalf("server backend with the default buffer: %q", body)
	}
}

// TestFullCookieHeaderIsServed sends the largest Cookie header the default
// configuration allows, besides ordinary browser headers, to a server built
// by NewServer: fasthttp must not answer 431.
func TestFullCookieHeaderIsServed(t *testing.T) {
	b := sessiontest.NewCookieBackend(t, kvsession.Config{})
	mw, err := kvfasthttp.New(b, kvfasthttp.Options{ReadBufferSize: kvfasthttp.RequiredReadBufferSize(b, kvfasthttp.DefaultHeaderRoom)})
	if err != nil {
		t.Fatal(err)
	}
	ln := fasthttputil.NewInmemoryListener()
	fs := mw.NewServer(app)
	go fs.Serve(ln)
	t.Cleanup(func() { fs.Shutdown(); ln.Close() })
	var cookies []string
	for i := 0; i < b.Config().MaxCookieSegments; i++ {
		cookies = append(cookies, "session-"+itoa(i)+"="+strings.Repeat("x", kvsession.MaxCookieLineBytes-len("session-0=")))
	}
	req := "GET /counter HTTP/1.1\r\nHost: example.test\r\n" +
		"User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0 Safari/537.36\r\n" +
		"Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\nAccept-Language: en-GB,en;q=0.9\r\n" +
		"Cookie: " + strings.Join(cookies, "; ") + "\r\n\r\n"
	conn, err := ln.Dial()
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte(req)); err != nil {
		t.Fatal(err)
	}
	var resp fasthttp.Response
	if err := resp.Read(bufio.NewReader(conn)); err != nil {
		t.Fatal(err)
	}
	// The cookies are junk, so the session is fresh; what matters is that
	// the request reached the handler.
	if resp.StatusCode() != 200 || string(resp.Body()) != "1" {
		t.Fatalf("%d %q", resp.StatusCode(), resp.Body())
	}
}

func TestCookieHeaderOverSeveralLines(t *testing.T) {
	s := start(t, kvsession.Config{}, kvfasthttp.Options{})
	s.get(t, "/counter")
	var id string
	for _, c := range s.jar.Cookies(site) {
		if c.Name == "session" {
			id = c.Value
		}
	}
	// Without the jar, so that the request carries exactly our headers.
	client := &http.Client{Transport: s.client.Transport}
	req, _ := http.NewRequest("GET", "http://example.test/counter", nil)
	req.Header["Cookie"] = []string{"theme=dark", "session=" + id}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "2" {
		t.Fatalf("counter %q: the session cookie on a second Cookie line was missed", body)
	}
}

// TestHandlerPanicReleasesTheSession: a handler that panics saves nothing,
// and its session's lock is free for the next request at once, when a
// recover above the middleware keeps the server running.
func TestHandlerPanicReleasesTheSession(t *testing.T) {
	b, err := kvsession.New(kvsession.Config{Lock: true, LockWait: 200 * time.Millisecond}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	var failed atomic.Int64
	mw, err := kvfasthttp.New(b, kvfasthttp.Options{ErrorHandler: func(ctx *fasthttp.RequestCtx, err error) {
		failed.Add(1)
		ctx.Error(err.Error(), fasthttp.StatusInternalServerError)
	}})
	if err != nil {
		t.Fatal(err)
	}
	h := mw.Handler(func(ctx *fasthttp.RequestCtx) {
		sess := kvfasthttp.Session(ctx)
		n, _ := sess.GetInt("n")
		if string(ctx.Path()) == "/panic" {
			sess.SetInt("n", n+100)
			panic("handler bug")
		}
		sess.SetInt("n", n+1)
		ctx.WriteString(itoa(n + 1))
	})
	call := func(path, cookie string) (ctx *fasthttp.RequestCtx, panicked any) {
		ctx = &fasthttp.RequestCtx{}
		ctx.Request.SetRequestURI(path)
		if cookie != "" {
			ctx.Request.Header.Set("Cookie", cookie)
		}
		defer func() { panicked = recover() }()
		h(ctx)
		return ctx, nil
	}
	ctx, _ := call("/", "")
	var c fasthttp.Cookie
	c.SetKey("session")
	if !ctx.Response.Header.Cookie(&c) {
		t.Fatal("no session cookie")
	}
	cookie := "session=" + string(c.Value())
	if _, p := call("/panic", cookie); p == nil {
		t.Fatal("the handler's panic did not reach the recover above the middleware")
	}
	ctx, _ = call("/", cookie)
	if body := string(ctx.Response.Body()); ctx.Response.StatusCode() != 200 || body != "2" || failed.Load() != 0 {
		t.Fatalf("after a panic: %d %q (%d errors); want 200 \"2\": the lock free and nothing of the panicking request saved",
			ctx.Response.StatusCode(), body, failed.Load())
	}
}

// serveHandler runs h behind the middleware over b on an in-memory
// listener, and returns a client for it that keeps no cookies.
func serveHandler(t *testing.T, b kvsession.Backend, h fasthttp.RequestHandler) *http.Client {
	return serveHandlerClients(t, b, h)()
}

// serveHandlerClients is serveHandler with a function that makes clients
// of their own connections.
func serveHandlerClients(t *testing.T, b kvsession.Backend, h fasthttp.RequestHandler) func() *http.Client {
	t.Helper()
	mw, err := kvfasthttp.New(b, kvfasthttp.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ln := fasthttputil.NewInmemoryListener()
	fs := mw.NewServer(h)
	go fs.Serve(ln)
	t.Cleanup(func() { fs.Shutdown(); ln.Close() })
	return func() *http.Client {
		return &http.Client{Transport: &http.Transport{
			DialContext: func(context.Context, string, string) (net.Conn, error) { return ln.Dial() },
		}}
	}
}

// sessionCookieOf returns "session=<value>" from a response, or fails.
func sessionCookieOf(t *testing.T, resp *http.Response) string {
	t.Helper()
	for _, c := range resp.Cookies() {
		if c.Name == "session" {
			return "session=" + c.Value
		}
	}
	t.Fatalf("no session cookie in %v", resp.Header["Set-Cookie"])
	return ""
}

// TestStreamedBodyCarriesTheCookie: a handler that sets a body stream
// writer has its session saved when it returns, before the stream runs,
// and the Set-Cookie goes out with the header, ahead of the first chunk.
func TestStreamedBodyCarriesTheCookie(t *testing.T) {
	b, err := kvsession.New(kvsession.Config{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	release := make(chan struct{})
	client := serveHandler(t, b, func(ctx *fasthttp.RequestCtx) {
		sess := kvfasthttp.Session(ctx)
		n, _ := sess.GetInt("n")
		sess.SetInt("n", n+1)
		if string(ctx.Path()) != "/stream" {
			ctx.WriteString(itoa(n + 1))
			return
		}
		ctx.SetBodyStreamWriter(func(w *bufio.Writer) {
			w.WriteString("first\n")
			w.Flush()
			<-release // the client reads the header and the first chunk meanwhile
			w.WriteString("last\n")
		})
	})
	resp, err := client.Get("http://example.test/stream")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	cookie := sessionCookieOf(t, resp) // the header arrived while the stream is held
	line, err := bufio.NewReader(resp.Body).ReadString('\n')
	if err != nil || line != "first\n" {
		t.Fatalf("first chunk %q, %v", line, err)
	}
	// Saved already, while the stream is still open.
	req, _ := http.NewRequest("GET", "http://example.test/", nil)
	req.Header.Set("Cookie", cookie)
	next, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(next.Body)
	next.Body.Close()
	close(release)
	if string(body) != "2" {
		t.Fatalf("during the stream, the next request counts %q, want 2", body)
	}
}

// TestHijackedConnectionHoldsNoLock: a handler that hijacks its connection
// (a WebSocket upgrade) has its session saved and its lock released before
// the connection is handed over, so the client's other requests do not
// wait for the connection to close.
func TestHijackedConnectionHoldsNoLock(t *testing.T) {
	b, err := kvsession.New(kvsession.Config{Lock: true, LockWait: 200 * time.Millisecond}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	hijacked := make(chan struct{})
	release := make(chan struct{})
	defer close(release)
	newClient := serveHandlerClients(t, b, func(ctx *fasthttp.RequestCtx) {
		sess := kvfasthttp.Session(ctx)
		n, _ := sess.GetInt("n")
		if err := sess.SetInt("n", n+1); err != nil {
			ctx.Error(err.Error(), 500)
			return
		}
		if string(ctx.Path()) == "/hijack" {
			ctx.Hijack(func(c net.Conn) {
				close(hijacked)
				<-release // a long-lived connection
			})
		}
		ctx.WriteString(itoa(n + 1))
	})
	client, hijacker := newClient(), newClient() // the hijacked connection is hijacker's alone
	resp, err := client.Get("http://example.test/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	cookie := sessionCookieOf(t, resp)
	get := func(path string) (*http.Response, string) {
		req, _ := http.NewRequest("GET", "http://example.test"+path, nil)
		req.Header.Set("Cookie", cookie)
		c := client
		if path == "/hijack" {
			c = hijacker
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp, string(body)
	}
	if resp, body := get("/hijack"); resp.StatusCode != 200 || body != "2" {
		t.Fatalf("hijacking request: %d %q", resp.StatusCode, body)
	}
	<-hijacked
	if resp, body := get("/"); resp.StatusCode != 200 || body != "3" {
		t.Fatalf("while another connection of the session is hijacked: %d %q, want 200 \"3\"", resp.StatusCode, body)
	}
}

// statusApp is a server backend on a memory store behind the middleware,
// with a session holding n = 1, driven without a network.
type statusApp struct {
	be     *kvsession.ServerBackend
	h      fasthttp.RequestHandler
	cookie string
}

func newStatusApp(t *testing.T, cfg kvsession.Config, next fasthttp.RequestHandler) *statusApp {
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
	mw, err := kvfasthttp.New(be, kvfasthttp.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return &statusApp{be: be, h: mw.Handler(next), cookie: "session=" + id}
}

func (a *statusApp) do(path string) *fasthttp.Response {
	var ctx fasthttp.RequestCtx
	ctx.Request.SetRequestURI(path)
	ctx.Request.Header.Set("Cookie", a.cookie)
	a.h(&ctx)
	resp := &fasthttp.Response{}
	ctx.Response.CopyTo(resp)
	return resp
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

func varies(resp *fasthttp.Response) []string {
	var out []string
	for _, v := range resp.Header.PeekAll("Vary") {
		out = append(out, string(v))
	}
	return out
}

// TestServerErrorSavesNothing: a handler that changes the session and
// answers 5xx leaves the store as it was and sends no Set-Cookie; 4xx
// saves, and so does 5xx with SaveOnServerError.
func TestServerErrorSavesNothing(t *testing.T) {
	for _, tc := range []struct {
		status    int
		saveOn5xx bool
		want      int64
	}{
		{500, false, 1},
		{502, false, 1},
		{500, true, 2},
		{404, false, 2},
	} {
		t.Run(strconv.Itoa(tc.status)+map[bool]string{true: " SaveOnServerError"}[tc.saveOn5xx], func(t *testing.T) {
			a := newStatusApp(t, kvsession.Config{SaveOnServerError: tc.saveOn5xx}, func(ctx *fasthttp.RequestCtx) {
				kvfasthttp.Session(ctx).SetInt("n", 2)
				ctx.SetStatusCode(tc.status)
			})
			resp := a.do("/")
			if resp.StatusCode() != tc.status {
				t.Fatalf("status %d, want the handler's %d", resp.StatusCode(), tc.status)
			}
			if got := a.n(t); got != tc.want {
				t.Fatalf("stored n = %d, want %d", got, tc.want)
			}
			if sc := resp.Header.PeekCookie("session"); (len(sc) > 0) != (tc.want == 2) {
				t.Fatalf("Set-Cookie %q, want one only when saved", sc)
			}
			if v := varies(resp); len(v) != 1 || v[0] != "Cookie" {
				t.Fatalf("Vary %q, want Cookie once", v)
			}
		})
	}
}

// TestVaryOnCookieWhenTheSessionIsUsed: a route that only reads the
// session gets Vary: Cookie though it sets no cookie; one that never
// touches it gets no Vary; a handler's own Vary: Cookie is not repeated
// and one listing other fields gets Cookie added.
func TestVaryOnCookieWhenTheSessionIsUsed(t *testing.T) {
	for _, tc := range []struct {
		name    string
		handler fasthttp.RequestHandler
		want    []string
	}{
		{"read", func(ctx *fasthttp.RequestCtx) { kvfasthttp.Session(ctx).GetInt("n") }, []string{"Cookie"}},
		{"untouched", func(ctx *fasthttp.RequestCtx) { ctx.WriteString("static") }, nil},
		{"handler's own", func(ctx *fasthttp.RequestCtx) {
			ctx.Response.Header.Set("Vary", "Accept-Encoding, cookie")
			kvfasthttp.Session(ctx).GetInt("n")
		}, []string{"Accept-Encoding, cookie"}},
		{"handler's own, set", func(ctx *fasthttp.RequestCtx) {
			ctx.Response.Header.Set("Vary", "Cookie")
			kvfasthttp.Session(ctx).SetInt("n", 5)
		}, []string{"Cookie"}},
		{"other field", func(ctx *fasthttp.RequestCtx) {
			ctx.Response.Header.Set("Vary", "Accept-Encoding")
			kvfasthttp.Session(ctx).GetInt("n")
		}, []string{"Accept-Encoding", "Cookie"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := newStatusApp(t, kvsession.Config{}, tc.handler)
			resp := a.do("/")
			if got := varies(resp); !slices.Equal(got, tc.want) {
				t.Fatalf("Vary %q, want %q", got, tc.want)
			}
			if tc.name == "read" && len(resp.Header.PeekCookie("session")) != 0 {
				t.Fatal("a read set the cookie")
			}
		})
	}
}

// newLockedBackend returns a server-side backend on a memory store of its
// own, locking sessions with a short LockWait: a lock a request leaves
// held makes the next request of that session fail at once.
func newLockedBackend(t *testing.T, cookieName string) kvsession.Backend {
	t.Helper()
	reg := store.NewRegistry(nil)
	if err := reg.Register("sessions", memstore.New(memstore.Options{})); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { reg.Close() })
	b, err := kvsession.New(kvsession.Config{CookieName: cookieName, Lock: true, LockWait: 200 * time.Millisecond}, reg)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestNestedMiddlewaresKeepTheirOwnSessions: a "prefs" middleware inside a
// "session" one; the handler reaches each session through its
// middleware's Session method, both are saved under their own cookies, and
// Session (the function) is the innermost one's, the outer one's again
// once the inner middleware has returned.
func TestNestedMiddlewaresKeepTheirOwnSessions(t *testing.T) {
	login, err := kvfasthttp.New(newLockedBackend(t, "session"), kvfasthttp.Options{})
	if err != nil {
		t.Fatal(err)
	}
	prefs, err := kvfasthttp.New(newLockedBackend(t, "prefs"), kvfasthttp.Options{
		Skip: func(ctx *fasthttp.RequestCtx) bool { return string(ctx.Path()) == "/no-prefs" },
	})
	if err != nil {
		t.Fatal(err)
	}
	handler := func(ctx *fasthttp.RequestCtx) {
		ls, ps := login.Session(ctx), prefs.Session(ctx)
		if string(ctx.Path()) == "/no-prefs" {
			if ps != nil || ls == nil || kvfasthttp.Session(ctx) != ls {
				ctx.Error("skipped prefs: want a nil prefs session and Session = the login session", 500)
			}
			return
		}
		if ls == nil || ps == nil || ls == ps || kvfasthttp.Session(ctx) != ps {
			ctx.Error("want two distinct sessions, Session = the inner (prefs) one", 500)
			return
		}
		if string(ctx.Path()) == "/write" {
			if err := ls.Set("user", "ann"); err != nil {
				ctx.Error(err.Error(), 500)
				return
			}
			if err := ps.Set("theme", "dark"); err != nil {
				ctx.Error(err.Error(), 500)
				return
			}
		}
		user, _ := ls.GetString("user")
		theme, _ := ps.GetString("theme")
		ctx.WriteString(user + "/" + theme)
	}
	inner := prefs.Handler(handler)
	outer := login.NewServer(func(ctx *fasthttp.RequestCtx) {
		inner(ctx)
		// The inner middleware has released its session: what an outer
		// handler sees is its own again.
		if kvfasthttp.Session(ctx) != login.Session(ctx) || prefs.Session(ctx) != nil {
			ctx.Response.Reset()
			ctx.Error("after the inner middleware: want Session = the login session, no prefs session", 500)
		}
	})
	ln := fasthttputil.NewInmemoryListener()
	go outer.Serve(ln)
	t.Cleanup(func() { outer.Shutdown(); ln.Close() })
	jar, _ := cookiejar.New(nil)
	client := &http.Client{Jar: jar, Transport: &http.Transport{
		DialContext: func(context.Context, string, string) (net.Conn, error) { return ln.Dial() },
	}}
	get := func(path string) (*http.Response, string) {
		t.Helper()
		resp, err := client.Get("http://example.test" + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var body [256]byte
		n, _ := resp.Body.Read(body[:])
		return resp, string(body[:n])
	}

	resp, body := get("/write")
	if resp.StatusCode != 200 || body != "ann/dark" {
		t.Fatalf("/write: %d %q", resp.StatusCode, body)
	}
	names := map[string]bool{}
	for _, c := range resp.Cookies() {
		names[c.Name] = true
	}
	if !names["session"] || !names["prefs"] || len(resp.Header.Values("Set-Cookie")) != 2 {
		t.Fatalf("Set-Cookie = %q, want one session and one prefs cookie", resp.Header.Values("Set-Cookie"))
	}
	// Both saved, both locks released: each session is loaded again, with
	// its value, without waiting for a lock the first request kept.
	for i := 0; i < 2; i++ {
		if resp, body := get("/read"); resp.StatusCode != 200 || body != "ann/dark" {
			t.Fatalf("/read: %d %q, want both sessions' values", resp.StatusCode, body)
		}
	}
	if resp, body := get("/no-prefs"); resp.StatusCode != 200 || resp.Header.Get("Set-Cookie") != "" {
		t.Fatalf("/no-prefs: %d %q Set-Cookie %q", resp.StatusCode, body, resp.Header.Get("Set-Cookie"))
	}
}

// TestIDHeader: a client without cookies carries its id in
// Config.IDHeader, end to end through fasthttp (sessiontest.CheckIDHeader
// says what it checks), in whatever case the header is configured.
func TestIDHeader(t *testing.T) {
	for _, name := range []string{"X-Session-Id", "x-app-session"} {
		t.Run(name, func(t *testing.T) {
			s := start(t, kvsession.Config{IDHeader: name}, kvfasthttp.Options{})
			sessiontest.CheckIDHeader(t, "http://example.test", s.client.Transport, name)
		})
	}
}
