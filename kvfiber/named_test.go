package kvfiber_test

import (
	"net"
	"testing"
	"time"

	"github.com/gofiber/fiber/v3"

	"github.com/kvsession/kvsession"
	"github.com/kvsession/kvsession/internal/sessiontest"
	"github.com/kvsession/kvsession/kvfiber"
)

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
