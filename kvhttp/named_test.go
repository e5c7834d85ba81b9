package kvhttp_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/kvsession/kvsession"
	"github.com/kvsession/kvsession/internal/sessiontest"
	"github.com/kvsession/kvsession/kvhttp"
	"github.com/kvsession/kvsession/store"
	"github.com/kvsession/kvsession/store/memstore"
)

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
