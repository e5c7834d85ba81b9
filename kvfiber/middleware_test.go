package kvfiber_test

import (
	"bufio"
	"bytes"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gofiber/fiber/v3"
	"github.com/gofiber/fiber/v3/middleware/recover"

	"github.com/kvsession/kvsession"
	"github.com/kvsession/kvsession/internal/sessiontest"
	"github.com/kvsession/kvsession/kvfiber"
	"github.com/kvsession/kvsession/store"
	"github.com/kvsession/kvsession/store/memstore"
	"github.com/kvsession/kvsession/store/storetest/faultstore"
)

// routes is a small application exercising the session from handlers.
func routes(app *fiber.App) {
	app.All("/counter", func(c fiber.Ctx) error {
		sess := kvfiber.Session(c)
		n, _ := sess.GetInt("n")
		if err := sess.SetInt("n", n+1); err != nil {
			return err
		}
		c.Set("Vary", "Accept-Encoding")
		c.Set("X-Handler", "ran")
		return c.SendString(strconv.Itoa(n + 1))
	})
	app.Get("/read", func(c fiber.Ctx) error {
		n, _ := kvfiber.Session(c).GetInt("n")
		return c.SendString(strconv.Itoa(n))
	})
	app.Get("/plain", func(c fiber.Ctx) error { return c.SendString("no session used") })
	for _, path := range []string{"/static/logo.png", "/skip"} {
		app.Get(path, func(c fiber.Ctx) error {
			if kvfiber.Session(c) != nil {
				return fiber.NewError(500, "excluded route got a session")
			}
			return c.SendString("static")
		})
	}
	app.Get("/logout", func(c fiber.Ctx) error { return kvfiber.Session(c).Destroy() })
	app.Post("/renew", func(c fiber.Ctx) error { return kvfiber.Session(c).RenewID() })
	// A refused login: Fiber handlers answer with an error, and the
	// attempt must be counted all the same.
	app.Post("/deny", func(c fiber.Ctx) error {
		sess := kvfiber.Session(c)
		n, _ := sess.GetInt("failed")
		if err := sess.SetInt("failed", n+1); err != nil {
			return err
		}
		c.Set("X-Handler", "ran")
		return fiber.NewError(401, "wrong password, attempt "+strconv.Itoa(n+1))
	})
	app.Get("/stream", func(c fiber.Ctx) error {
		sess := kvfiber.Session(c)
		n, _ := sess.GetInt("n")
		if err := sess.SetInt("n", n+1); err != nil {
			return err
		}
		c.Set("X-Handler", "ran")
		body := "n=" + strconv.Itoa(n+1) + "\n"
		return c.SendStreamWriter(func(w *bufio.Writer) {
			w.WriteString(body)
			w.Flush()
		})
	})
}

// harness is one app on a loopback port, its store and a client that keeps
// cookies like a browser.
type harness struct {
	app    *fiber.App
	store  *faultstore.Store // nil for a cookie backend
	client *sessiontest.Client
	logs   *syncBuffer

	mu      sync.Mutex
	appErrs []error // what reached the app's fiber.Config.ErrorHandler
}

// newServerBackend returns a server-side backend over a fault store
// wrapping a memory store, logging into logs.
func newServerBackend(t *testing.T, cfg kvsession.Config, logs *syncBuffer) (*kvsession.ServerBackend, *faultstore.Store) {
	t.Helper()
	fs := faultstore.New(memstore.New(memstore.Options{}))
	reg := store.NewRegistry(nil)
	if err := reg.Register("sessions", fs.Store()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { reg.Close() })
	cfg.Logger = slog.New(slog.NewTextHandler(logs, nil))
	b, err := kvsession.New(cfg, reg)
	if err != nil {
		t.Fatal(err)
	}
	return b, fs
}

// start serves routes behind the middleware over a server-side backend,
// recover registered before the middleware.
func start(t *testing.T, cfg kvsession.Config, opts kvfiber.Options, more ...func(*fiber.App)) *harness {
	t.Helper()
	logs := &syncBuffer{}
	b, fs := newServerBackend(t, cfg, logs)
	h := serve(t, b, opts, fiber.Config{}, func(app *fiber.App, sessions fiber.Handler) {
		app.Use(recover.New(), sessions)
	}, more...)
	h.store, h.logs = fs, logs
	return h
}

// serve runs routes, and more, in an app made with appCfg, use having
// registered the middleware, on a loopback port.
func serve(t *testing.T, b kvsession.Backend, opts kvfiber.Options, appCfg fiber.Config, use func(*fiber.App, fiber.Handler), more ...func(*fiber.App)) *harness {
	t.Helper()
	h := &harness{logs: &syncBuffer{}}
	appCfg.ErrorHandler = func(c fiber.Ctx, err error) error {
		h.mu.Lock()
		h.appErrs = append(h.appErrs, err)
		h.mu.Unlock()
		return fiber.DefaultErrorHandler(c, err)
	}
	sessions, err := kvfiber.New(b, opts)
	if err != nil {
		t.Fatal(err)
	}
	app := fiber.New(appCfg)
	use(app, sessions)
	routes(app)
	for _, f := range more {
		f(app)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go app.Listener(ln, fiber.ListenConfig{DisableStartupMessage: true})
	t.Cleanup(func() {
		// fasthttp's shutdown may take seconds to notice a keep-alive
		// connection went idle; the client closing it is immediate.
		h.client.HTTP.CloseIdleConnections()
		if err := app.ShutdownWithTimeout(5 * time.Second); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		ln.Close()
	})
	h.app = app
	h.client = sessiontest.NewClient(t, "http://"+ln.Addr().String())
	return h
}

func (h *harness) appErrors() []error {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]error(nil), h.appErrs...)
}

// syncBuffer is a log destination that handlers on several goroutines
// write to.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestCounterOverHTTP(t *testing.T) {
	h := start(t, kvsession.Config{}, kvfiber.Options{})
	for want := 1; want <= 4; want++ {
		r := h.client.Expect("GET", "/counter", "", 200, strconv.Itoa(want))
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
	writes := h.store.Calls(faultstore.Writes)
	r := h.client.Expect("GET", "/read", "", 200, "4")
	if len(r.SetCookies()) != 0 || h.store.Calls(faultstore.Writes) != writes {
		t.Fatalf("read: Set-Cookie %q, writes %d→%d", r.SetCookies(), writes, h.store.Calls(faultstore.Writes))
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

// TestSetCookieOnEveryKindOfResponse: Fiber buffers the response, so the
// cookie of a session changed by the handler is on it however the handler
// answered, a body already sent included.
func TestSetCookieOnEveryKindOfResponse(t *testing.T) {
	answers := []struct {
		name   string
		answer func(c fiber.Ctx) error
		status int
	}{
		{"SendString", func(c fiber.Ctx) error { return c.SendString("done") }, 200},
		{"JSON", func(c fiber.Ctx) error { return c.JSON(fiber.Map{"ok": true}) }, 200},
		{"Write then Status", func(c fiber.Ctx) error {
			if _, err := c.Write([]byte("partial ")); err != nil {
				return err
			}
			return c.Status(201).SendString("created")
		}, 201},
		{"SendStatus 204", func(c fiber.Ctx) error { return c.SendStatus(204) }, 204},
		{"Redirect", func(c fiber.Ctx) error { return c.Redirect().To("/read") }, 303},
		{"error", func(c fiber.Ctx) error { return fiber.ErrUnauthorized }, 401},
	}
	for _, a := range answers {
		t.Run(a.name, func(t *testing.T) {
			h := start(t, kvsession.Config{}, kvfiber.Options{}, func(app *fiber.App) {
				app.Post("/answer", func(c fiber.Ctx) error {
					if err := kvfiber.Session(c).SetString("answered", a.name); err != nil {
						return err
					}
					return a.answer(c)
				})
			})
			h.client.HTTP.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
			r := h.client.Do("POST", "/answer", "")
			if r.Status != a.status || r.Cookie == "" {
				t.Fatalf("%d, session cookie %q; want %d with the cookie", r.Status, r.Cookie, a.status)
			}
			if h.store.Calls(faultstore.Writes) != 1 {
				t.Fatalf("%d writes, want the session saved once", h.store.Calls(faultstore.Writes))
			}
		})
	}
}

func TestExcludedSkippedAndUnusedRoutesLeaveTheStoreAlone(t *testing.T) {
	skip := func(c fiber.Ctx) bool { return c.Path() == "/skip" }
	h := start(t, kvsession.Config{Exclude: []string{"^/static/"}}, kvfiber.Options{Skip: skip})
	h.client.Expect("GET", "/counter", "", 200, "1") // the client now has a session cookie
	reads := h.store.Calls(faultstore.Reads)
	for _, tc := range []struct{ path, body string }{
		{"/plain", "no session used"},
		{"/static/logo.png", "static"},
		{"/skip", "static"},
		{"/no-such-route", "Not Found"},
	} {
		t.Run(tc.path, func(t *testing.T) {
			r := h.client.Do("GET", tc.path, "")
			if r.Body != tc.body || len(r.SetCookies()) != 0 {
				t.Errorf("%d %q, Set-Cookie %q", r.Status, r.Body, r.SetCookies())
			}
		})
	}
	if got := h.store.Calls(faultstore.Reads); got != reads {
		t.Fatalf("routes that never use the session read the store %d times", got-reads)
	}
}

func TestReadOnlyMarksTheSession(t *testing.T) {
	readOnly := func(c fiber.Ctx) bool { return c.Method() == fiber.MethodGet }
	h := start(t, kvsession.Config{}, kvfiber.Options{ReadOnly: readOnly}, func(app *fiber.App) {
		app.All("/mode", func(c fiber.Ctx) error {
			return c.SendString(strconv.FormatBool(kvfiber.Session(c).IsReadOnly()))
		})
	})
	for _, tc := range []struct{ method, want string }{
		{"GET", "true"},
		{"POST", "false"},
		{"PUT", "false"},
	} {
		h.client.Expect(tc.method, "/mode", "", 200, tc.want)
	}
}

func TestLogoutExpiresCookie(t *testing.T) {
	h := start(t, kvsession.Config{}, kvfiber.Options{})
	h.client.Expect("GET", "/counter", "", 200, "1")
	if r := h.client.Do("GET", "/logout", ""); !r.Expired {
		t.Fatalf("Set-Cookie %q: want the session cookie expired", r.SetCookies())
	}
	if h.client.SessionCookie() != nil {
		t.Fatal("the client kept the cookie")
	}
	h.client.Expect("GET", "/read", "", 200, "0")
}

func TestCookieHeaderOverSeveralLines(t *testing.T) {
	h := start(t, kvsession.Config{}, kvfiber.Options{})
	h.client.Expect("GET", "/counter", "", 200, "1")
	id := h.client.SessionCookie().Value
	// Without the jar, so that the request carries exactly our headers.
	req, _ := http.NewRequest("GET", h.client.Base+"/counter", nil)
	req.Header["Cookie"] = []string{"theme=dark", "session=" + id}
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	h.client.Expect("GET", "/read", "", 200, "2")
}

func TestNewRefusesBadOptions(t *testing.T) {
	b, _ := newServerBackend(t, kvsession.Config{}, &syncBuffer{})
	for _, tc := range []struct {
		name    string
		backend kvsession.Backend
		opts    kvfiber.Options
		want    string
	}{
		{"no backend", nil, kvfiber.Options{}, "backend"},
		{"negative header room", b, kvfiber.Options{HeaderRoom: -1}, "HeaderRoom"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := kvfiber.New(tc.backend, tc.opts); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New: %v, want an error naming %s", err, tc.want)
			}
		})
	}
}

// statusApp is a Fiber app behind the middleware on a memory store, with
// a session holding n = 1, served by app.Test without a network.
type statusApp struct {
	be     *kvsession.ServerBackend
	app    *fiber.App
	cookie string
}

func newStatusApp(t *testing.T, cfg kvsession.Config, handler fiber.Handler) *statusApp {
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
	mw, err := kvfiber.New(be, kvfiber.Options{})
	if err != nil {
		t.Fatal(err)
	}
	app := fiber.New()
	app.Use(mw)
	app.Get("/", handler)
	return &statusApp{be: be, app: app, cookie: "session=" + id}
}

func (a *statusApp) do(t *testing.T) *http.Response {
	t.Helper()
	req := httptest.NewRequest("GET", "/", nil)
	req.Header.Set("Cookie", a.cookie)
	resp, err := a.app.Test(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
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

// TestServerErrorSavesNothing: a handler that changes the session and
// answers 5xx, by status or by returning an error Fiber answers 5xx,
// leaves the store as it was and sends no Set-Cookie; 4xx saves, and so
// does 5xx with SaveOnServerError.
func TestServerErrorSavesNothing(t *testing.T) {
	for _, tc := range []struct {
		name      string
		answer    func(c fiber.Ctx) error
		status    int
		saveOn5xx bool
		want      int64
	}{
		{"status 500", func(c fiber.Ctx) error { return c.Status(500).SendString("failed") }, 500, false, 1},
		{"fiber error 503", func(c fiber.Ctx) error { return fiber.ErrServiceUnavailable }, 503, false, 1},
		{"plain error", func(c fiber.Ctx) error { return errors.New("database down") }, 500, false, 1},
		{"plain error, SaveOnServerError", func(c fiber.Ctx) error { return errors.New("database down") }, 500, true, 2},
		{"status 500, SaveOnServerError", func(c fiber.Ctx) error { return c.Status(500).SendString("failed") }, 500, true, 2},
		{"fiber error 404", func(c fiber.Ctx) error { return fiber.ErrNotFound }, 404, false, 2},
		{"status 400", func(c fiber.Ctx) error { return c.Status(400).SendString("bad") }, 400, false, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := newStatusApp(t, kvsession.Config{SaveOnServerError: tc.saveOn5xx}, func(c fiber.Ctx) error {
				if err := kvfiber.Session(c).SetInt("n", 2); err != nil {
					return err
				}
				return tc.answer(c)
			})
			resp := a.do(t)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.status)
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

// TestVaryOnCookieWhenTheSessionIsUsed: a route that only reads the
// session gets Vary: Cookie though it sets no cookie; one that never
// touches it gets no Vary; a handler's own Vary: Cookie is not repeated
// and one listing other fields gets Cookie added.
func TestVaryOnCookieWhenTheSessionIsUsed(t *testing.T) {
	for _, tc := range []struct {
		name    string
		handler fiber.Handler
		want    []string
	}{
		{"read", func(c fiber.Ctx) error {
			n, _ := kvfiber.Session(c).GetInt("n")
			return c.JSON(n)
		}, []string{"Cookie"}},
		{"untouched", func(c fiber.Ctx) error { return c.SendString("static") }, nil},
		{"handler's own", func(c fiber.Ctx) error {
			c.Vary("Accept-Encoding", "cookie")
			kvfiber.Session(c).GetInt("n")
			return nil
		}, []string{"Accept-Encoding, cookie"}},
		{"handler's own, set", func(c fiber.Ctx) error {
			c.Vary("Cookie")
			return kvfiber.Session(c).SetInt("n", 5)
		}, []string{"Cookie"}},
		{"other field", func(c fiber.Ctx) error {
			c.Set("Vary", "Accept-Encoding")
			kvfiber.Session(c).GetInt("n")
			return nil
		}, []string{"Accept-Encoding", "Cookie"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := newStatusApp(t, kvsession.Config{}, tc.handler)
			resp := a.do(t)
			if got := resp.Header.Values("Vary"); !slices.Equal(got, tc.want) {
				t.Fatalf("Vary %q, want %q", got, tc.want)
			}
			if tc.name == "read" && len(resp.Header.Values("Set-Cookie")) != 0 {
				t.Fatal("a read set the cookie")
			}
		})
	}
}

// TestNestedMiddlewaresKeepTheirOwnSessions: a "prefs" middleware after a
// "session" one in the chain; the handler reaches each session through
// its middleware's Session method, both are saved under their own
// cookies, and Session (the function) is the innermost one's, the outer
// one's again once the inner middleware has returned.
func TestNestedMiddlewaresKeepTheirOwnSessions(t *testing.T) {
	newMW := func(cookieName string, opts kvfiber.Options) *kvfiber.Middleware {
		// Locked with a short LockWait: a lock a request leaves held makes
		// the next request of that session fail.
		b, _ := newServerBackend(t, kvsession.Config{CookieName: cookieName, Lock: true, LockWait: 200 * time.Millisecond}, &syncBuffer{})
		m, err := kvfiber.NewMiddleware(b, opts)
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	login := newMW("session", kvfiber.Options{})
	prefs := newMW("prefs", kvfiber.Options{
		Skip: func(c fiber.Ctx) bool { return c.Path() == "/no-prefs" },
	})
	// between runs after login and before prefs: it must see the login
	// session as Session both before the prefs middleware and after it.
	between := func(c fiber.Ctx) error {
		outerOnly := func() bool {
			return kvfiber.Session(c) != nil && kvfiber.Session(c) == login.Session(c) && prefs.Session(c) == nil
		}
		if !outerOnly() {
			return fiber.NewError(500, "before prefs: want Session = the login session, no prefs session")
		}
		err := c.Next()
		if !outerOnly() {
			return fiber.NewError(500, "after prefs: want Session = the login session, no prefs session")
		}
		return err
	}
	app := fiber.New()
	app.Use(login.Handler, between, prefs.Handler)
	app.Get("/no-prefs", func(c fiber.Ctx) error {
		if ls := login.Session(c); prefs.Session(c) != nil || ls == nil || kvfiber.Session(c) != ls {
			return fiber.NewError(500, "skipped prefs: want a nil prefs session and Session = the login session")
		}
		return c.SendString("ok")
	})
	app.Get("/:op", func(c fiber.Ctx) error {
		ls, ps := login.Session(c), prefs.Session(c)
		if ls == nil || ps == nil || ls == ps || kvfiber.Session(c) != ps {
			return fiber.NewError(500, "want two distinct sessions, Session = the inner (prefs) one")
		}
		if c.Params("op") == "write" {
			if err := ls.Set("user", "ann"); err != nil {
				return err
			}
			if err := ps.Set("theme", "dark"); err != nil {
				return err
			}
		}
		user, _ := ls.GetString("user")
		theme, _ := ps.GetString("theme")
		return c.SendString(user + "/" + theme)
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go app.Listener(ln, fiber.ListenConfig{DisableStartupMessage: true})
	client := sessiontest.NewClient(t, "http://"+ln.Addr().String())
	t.Cleanup(func() {
		client.HTTP.CloseIdleConnections()
		if err := app.ShutdownWithTimeout(5 * time.Second); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		ln.Close()
	})

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
	if r := client.Do("GET", "/no-prefs", ""); r.Status != 200 || r.Body != "ok" || len(r.SetCookies()) != 0 {
		t.Fatalf("/no-prefs: %d %q Set-Cookie %q", r.Status, r.Body, r.SetCookies())
	}
}

// TestIDHeader: a client without cookies carries its id in
// Config.IDHeader, end to end through Fiber (sessiontest.CheckIDHeader
// says what it checks), in whatever case the header is configured.
func TestIDHeader(t *testing.T) {
	for _, name := range []string{"X-Session-Id", "x-app-session"} {
		t.Run(name, func(t *testing.T) {
			h := start(t, kvsession.Config{IDHeader: name}, kvfiber.Options{})
			sessiontest.CheckIDHeader(t, h.client.Base, nil, name)
		})
	}
}
