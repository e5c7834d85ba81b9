package kvfasthttp_test

import (
	"context"
	"net"
	"net/http"
	"net/http/cookiejar"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttputil"

	"github.com/kvsession/kvsession"
	"github.com/kvsession/kvsession/kvfasthttp"
	"github.com/kvsession/kvsession/store"
	"github.com/kvsession/kvsession/store/memstore"
)

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
