package e2e

// Fault injection over HTTP: the memory store, wrapped in a faultstore,
// behind the middleware on a fasthttp server on loopback TCP. Every test
// checks that a failing store fails the request closed: the error handler
// answers, no session cookie is sent, and what the store held before is
// intact and still served once the store recovers.

import (
	"context"
	"errors"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/kvsession/kvsession"
	"github.com/kvsession/kvsession/internal/sessiontest"
	"github.com/kvsession/kvsession/kvfasthttp"
	"github.com/kvsession/kvsession/store"
	"github.com/kvsession/kvsession/store/memstore"
	"github.com/kvsession/kvsession/store/storetest/faultstore"
)

var errFault = errors.New("injected store fault")

// faultApp is the application under test. It ignores every error the
// session returns, on purpose: the middleware must fail the request closed
// even when the handler does not look.
func faultApp(ctx *fasthttp.RequestCtx) {
	sess := kvfasthttp.Session(ctx)
	arg := func(name string) string { return string(ctx.QueryArgs().Peek(name)) }
	switch string(ctx.Path()) {
	case "/get":
		v, _ := sess.GetString("v")
		ctx.WriteString("v=" + v + " user=" + sess.User())
	case "/set":
		_ = sess.Set("v", arg("v"))
		ctx.WriteString("handler ran")
	case "/inc":
		n, _ := sess.GetInt("n")
		_ = sess.Set("n", n+1)
		ctx.WriteString(itoa(n + 1))
	case "/bind": // bind to a user, keeping the id
		_ = sess.SetUser(arg("user"))
		ctx.WriteString("handler ran")
	case "/login": // what a login does: bind and change the id
		_ = sess.SetUser(arg("user"))
		_ = sess.RenewID()
		ctx.WriteString("handler ran")
	case "/logout":
		_ = sess.Destroy()
		ctx.WriteString("logged out")
	case "/clear":
		sess.Clear()
		ctx.WriteString("cleared")
	default:
		ctx.NotFound()
	}
}

// faultEnv is one server over a faulty store, and a client that carries
// one session cookie by hand.
type faultEnv struct {
	fs     *faultstore.Store
	client *http.Client
	base   string // http://127.0.0.1:port

	mu   sync.Mutex
	errs []error // what the error handler was given
}

type faultReply struct {
	status  int
	body    string
	cookies []*http.Cookie // the session's Set-Cookies, expiries included
	err     error          // what the error handler got during this request
}

// faultStore makes the store sessions are kept in: memory, or memory
// with the Locker a store shared by several processes has.
func faultStore(shared bool) store.Store {
	mem := memstore.New(memstore.Options{})
	if shared {
		return &faultstore.Shared{Store: mem}
	}
	return mem
}

// newFaultEnv serves faultApp with a server-side backend over inner.
func newFaultEnv(t *testing.T, cfg kvsession.Config, inner store.Store) *faultEnv {
	t.Helper()
	fs := faultstore.New(inner)
	reg := store.NewRegistry(nil)
	if err := reg.Register("sessions", fs.Store()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { reg.Close() })
	b, err := kvsession.New(cfg, reg)
	if err != nil {
		t.Fatal(err)
	}
	return serveFaults(t, b, fs)
}

func serveFaults(t *testing.T, b kvsession.Backend, fs *faultstore.Store) *faultEnv {
	t.Helper()
	env := &faultEnv{fs: fs}
	mw, err := kvfasthttp.New(b, kvfasthttp.Options{ReadBufferSize: kvfasthttp.RequiredReadBufferSize(b, 0), ErrorHandler: func(ctx *fasthttp.RequestCtx, err error) {
		env.mu.Lock()
		env.errs = append(env.errs, err)
		env.mu.Unlock()
		ctx.Response.Reset()
		ctx.SetStatusCode(fasthttp.StatusServiceUnavailable)
		ctx.SetBodyString("error handler: " + err.Error())
	}})
	if err != nil {
		t.Fatal(err)
	}
	env.base = "http://" + listen(t, mw.NewServer(faultApp))
	tr := http.DefaultTransport.(*http.Transport).Clone()
	t.Cleanup(tr.CloseIdleConnections)
	env.client = &http.Client{Transport: tr}
	return env
}

func (e *faultEnv) errCount() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.errs)
}

// do sends one request carrying the session cookie value cookie ("" for
// none). It may run on any goroutine: a failed exchange is reported with
// t.Errorf and a zero reply, which no caller accepts.
func (e *faultEnv) do(t *testing.T, path, cookie string) faultReply {
	t.Helper()
	before := e.errCount()
	resp, err := sessiontest.Send(e.client, "GET", e.base+path, "", withSession(cookie)...)
	if err != nil {
		t.Errorf("%s: %v", path, err)
		return faultReply{}
	}
	r := faultReply{status: resp.Status, body: resp.Body}
	for _, c := range resp.Cookies() {
		if strings.HasPrefix(c.Name, "session") {
			r.cookies = append(r.cookies, c)
		}
	}
	e.mu.Lock()
	switch n := len(e.errs) - before; {
	case n == 1:
		r.err = e.errs[len(e.errs)-1]
	case n > 1:
		t.Errorf("%s: error handler called %d times", path, n)
	}
	e.mu.Unlock()
	return r
}

// step is a request expected to succeed; it returns the session cookie to
// carry on with.
func (e *faultEnv) step(t *testing.T, path, cookie string) string {
	t.Helper()
	r := e.do(t, path, cookie)
	if r.status != 200 || r.err != nil {
		t.Fatalf("%s: %d %q (error handler: %v)", path, r.status, r.body, r.err)
	}
	for _, c := range r.cookies {
		if c.Name == "session" {
			cookie = c.Value
			if c.MaxAge < 0 {
				cookie = ""
			}
		}
	}
	return cookie
}

// snapshot returns every value the store holds under a key any call has
// named, or that before holds: session records, forwards, user index
// records.
func (e *faultEnv) snapshot(t *testing.T, before map[string]string) map[string]string {
	t.Helper()
	m, err := e.fs.Snapshot(context.Background(), slices.Collect(maps.Keys(before))...)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// wantFailedClosed checks a request the fault should have failed: the
// error handler answered with the fault, no session cookie went out, and
// the store holds exactly what it held before.
func (e *faultEnv) wantFailedClosed(t *testing.T, r faultReply, want error, before map[string]string) {
	t.Helper()
	if r.status != fasthttp.StatusServiceUnavailable || !strings.HasPrefix(r.body, "error handler: ") {
		t.Errorf("response %d %q, want the error handler's", r.status, r.body)
	}
	if !errors.Is(r.err, want) {
		t.Errorf("error handler got %v, want %v", r.err, want)
	}
	if len(r.cookies) != 0 {
		t.Errorf("session Set-Cookie sent on a failed request: %v", r.cookies)
	}
	if after := e.snapshot(t, before); !maps.Equal(before, after) {
		t.Errorf("store changed by a failed request:\nbefore %q\nafter  %q", before, after)
	}
}

// TestStoreFaultsFailClosed injects one fault per case into a request on an
// established session (v=orig, bound to ada where the case needs it).
func TestStoreFaultsFailClosed(t *testing.T) {
	tests := []struct {
		name   string
		cfg    kvsession.Config
		shared bool // the store is a Locker
		setup  []string
		rule   faultstore.Rule
		path   string
		// Methods the failing request must not call at all.
		notCalled faultstore.Method
		// What /get answers once the fault is gone.
		after string
	}{
		{
			name:      "load fails, handler sets anyway",
			rule:      faultstore.Rule{Methods: faultstore.Reads},
			path:      "/set?v=new",
			notCalled: faultstore.Writes | faultstore.Delete | faultstore.AddMember | faultstore.RemoveMember,
			after:     "v=orig user=",
		},
		{
			name:      "load fails, handler logs out",
			rule:      faultstore.Rule{Methods: faultstore.Reads},
			path:      "/logout",
			notCalled: faultstore.Writes | faultstore.Delete | faultstore.AddMember | faultstore.RemoveMember,
			after:     "v=orig user=",
		},
		{
			name:  "save fails",
			rule:  faultstore.Rule{Methods: faultstore.Writes},
			path:  "/set?v=new",
			after: "v=orig user=",
		},
		{
			name:      "renewal (a Swap of the record as loaded) fails",
			cfg:       kvsession.Config{ExtendOnAccess: true},
			rule:      faultstore.Rule{Methods: faultstore.Swap},
			path:      "/get",
			notCalled: faultstore.Set,
			after:     "v=orig user=",
		},
		{
			// The session joins the new user's set before its record is
			// written: the set failing leaves the record as it was.
			name:      "user set fails on re-binding",
			setup:     []string{"/bind?user=ada"},
			rule:      faultstore.Rule{Methods: faultstore.AddMember, Prefix: "user:"},
			path:      "/bind?user=bob",
			notCalled: faultstore.Writes,
			after:     "v=orig user=ada",
		},
		{
			name:      "user set fails at login (new id)",
			setup:     []string{"/bind?user=ada"},
			rule:      faultstore.Rule{Methods: faultstore.AddMember, Prefix: "user:"},
			path:      "/login?user=bob",
			notCalled: faultstore.Writes,
			after:     "v=orig user=ada",
		},
		{
			name:      "user set fails on re-binding (shared store)",
			shared:    true,
			setup:     []string{"/bind?user=ada"},
			rule:      faultstore.Rule{Methods: faultstore.AddMember},
			path:      "/bind?user=bob",
			notCalled: faultstore.Writes,
			after:     "v=orig user=ada",
		},
		{
			name:      "store lock fails",
			cfg:       kvsession.Config{Lock: true},
			shared:    true,
			rule:      faultstore.Rule{Methods: faultstore.TryLock},
			path:      "/set?v=new",
			notCalled: faultstore.Reads | faultstore.Writes | faultstore.Delete,
			after:     "v=orig user=",
		},
		{
			// Destroy's error is ignored by the handler: the middleware
			// must still report it, not answer "logged out" over a live
			// session.
			name:  "delete fails on Destroy",
			setup: []string{"/bind?user=ada"},
			rule:  faultstore.Rule{Methods: faultstore.Delete},
			path:  "/logout",
			after: "v=orig user=ada",
		},
		{
			name:  "delete fails on a session emptied by the handler",
			rule:  faultstore.Rule{Methods: faultstore.Delete},
			path:  "/clear",
			after: "v=orig user=",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			env := newFaultEnv(t, tc.cfg, faultStore(tc.shared))
			cookie := env.step(t, "/set?v=orig", "")
			for _, p := range tc.setup {
				cookie = env.step(t, p, cookie)
			}
			before := env.snapshot(t, nil)
			env.fs.ResetCalls()
			tc.rule.Err = errFault
			rule := env.fs.Add(tc.rule)

			r := env.do(t, tc.path, cookie)
			env.wantFailedClosed(t, r, errFault, before)
			if rule.Hits() == 0 {
				t.Fatal("the fault was never met: the case tests nothing")
			}
			if n := env.fs.Calls(tc.notCalled); n != 0 {
				t.Errorf("failing request called %v %d times", tc.notCalled, n)
			}

			rule.Remove()
			if r := env.do(t, "/get", cookie); r.status != 200 || r.body != tc.after {
				t.Errorf("after the fault: %d %q, want %q", r.status, r.body, tc.after)
			}
		})
	}
}

// TestStoreTimeoutBoundsEveryStoreCall hangs one kind of store call at a
// time: with Config.StoreTimeout the request ends with the error handler's
// answer, an error wrapping context.DeadlineExceeded, and nothing changed.
func TestStoreTimeoutBoundsEveryStoreCall(t *testing.T) {
	const timeout = 200 * time.Millisecond
	hang := func(m faultstore.Method, prefix string) faultstore.Rule {
		return faultstore.Rule{Methods: m, Prefix: prefix, Hang: true}
	}
	tests := []struct {
		name   string
		cfg    kvsession.Config
		shared bool
		setup  []string
		rule   faultstore.Rule
		path   string
	}{
		{name: "load", rule: hang(faultstore.Reads, ""), path: "/get"},
		{name: "save", rule: hang(faultstore.Writes, ""), path: "/set?v=new"},
		{name: "save slower than the timeout", rule: faultstore.Rule{Methods: faultstore.Writes, Latency: time.Hour}, path: "/set?v=new"},
		{name: "renewal", cfg: kvsession.Config{ExtendOnAccess: true}, rule: hang(faultstore.Swap, ""), path: "/get"},
		{name: "delete on Destroy", rule: hang(faultstore.Delete, ""), path: "/logout"},
		{name: "store lock", cfg: kvsession.Config{Lock: true}, shared: true, rule: hang(faultstore.TryLock, ""), path: "/set?v=new"},
		{name: "user set", setup: []string{"/bind?user=ada"}, rule: hang(faultstore.AddMember, "user:"), path: "/bind?user=bob"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.cfg.StoreTimeout = timeout
			env := newFaultEnv(t, tc.cfg, faultStore(tc.shared))
			cookie := env.step(t, "/set?v=orig", "")
			for _, p := range tc.setup {
				cookie = env.step(t, p, cookie)
			}
			before := env.snapshot(t, nil)
			rule := env.fs.Add(tc.rule)

			// Not a timing benchmark: only that the hang was cut short,
			// within a generous bound.
			done := make(chan faultReply, 1)
			go func() { done <- env.do(t, tc.path, cookie) }()
			var r faultReply
			select {
			case r = <-done:
			case <-time.After(10 * timeout):
				env.fs.Store().Close() // release the hang, or the test would never end
				<-done
				t.Fatalf("request still running after %v with a store timeout of %v", 10*timeout, timeout)
			}
			env.wantFailedClosed(t, r, context.DeadlineExceeded, before)
			if r.err != nil && !strings.Contains(r.err.Error(), "StoreTimeout") {
				t.Errorf("error %q does not say which timeout ran out", r.err)
			}
			if rule.Hits() == 0 {
				t.Fatal("the hang was never met: the case tests nothing")
			}
			rule.Remove()
			if r := env.do(t, "/get", cookie); r.status != 200 || !strings.HasPrefix(r.body, "v=orig ") {
				t.Errorf("after the hang: %d %q", r.status, r.body)
			}
		})
	}
}

// TestHungSessionDoesNotBlockOthers hangs every call on one session's
// record. Other sessions keep working meanwhile; the hung request ends with
// the timeout when there is one, and otherwise when the store is closed
// (which is how this test ends it: without a timeout nothing else would).
func TestHungSessionDoesNotBlockOthers(t *testing.T) {
	for _, tc := range []struct {
		name    string
		timeout time.Duration
		want    error
	}{
		{"with StoreTimeout", 300 * time.Millisecond, context.DeadlineExceeded},
		{"without timeout, released by Close", 0, store.ErrClosed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := newFaultEnv(t, kvsession.Config{StoreTimeout: tc.timeout}, faultStore(false))
			hungCookie := env.step(t, "/set?v=hung", "")
			hungKeys := env.fs.Keys() // the hung session's record alone
			if len(hungKeys) != 1 {
				t.Fatalf("keys after one session: %q", hungKeys)
			}
			rule := env.fs.Add(faultstore.Rule{Prefix: hungKeys[0], Hang: true})

			done := make(chan faultReply, 1)
			go func() { done <- env.do(t, "/set?v=changed", hungCookie) }()
			waitUntil(t, func() bool { return rule.Hits() > 0 })

			other := env.step(t, "/inc", "")
			for want := 2; want <= 5; want++ {
				if r := env.do(t, "/inc", other); r.status != 200 || r.body != itoa(want) {
					t.Fatalf("another session while one hangs: %d %q, want %d", r.status, r.body, want)
				}
			}
			if tc.timeout == 0 {
				select {
				case r := <-done:
					t.Fatalf("the hung request ended on its own: %d %q", r.status, r.body)
				default:
				}
				env.fs.Store().Close()
			}
			select {
			case r := <-done:
				if r.status != fasthttp.StatusServiceUnavailable || !errors.Is(r.err, tc.want) || len(r.cookies) != 0 {
					t.Fatalf("hung request: %d %q, error %v, cookies %v; want the error handler with %v", r.status, r.body, r.err, r.cookies, tc.want)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("the hung request never ended")
			}
			if tc.timeout > 0 {
				rule.Remove()
				if r := env.do(t, "/get", hungCookie); r.body != "v=hung user=" {
					t.Errorf("hung session after the hang: %d %q", r.status, r.body)
				}
			}
		})
	}
}

// TestSlowStoreGivesCorrectResults adds latency to every store call:
// concurrent clients, each on its own session, and several on one session
// with the lock, still count exactly.
func TestSlowStoreGivesCorrectResults(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  kvsession.Config
	}{
		{"plain", kvsession.Config{StoreTimeout: 10 * time.Second}},
		{"locked", kvsession.Config{Lock: true, StoreTimeout: 10 * time.Second}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := newFaultEnv(t, tc.cfg, faultStore(false))
			slow := env.fs.Add(faultstore.Rule{Latency: 3 * time.Millisecond})
			const clients, incs = 4, 8
			var wg sync.WaitGroup
			for range clients {
				wg.Go(func() {
					cookie := ""
					for want := 1; want <= incs; want++ {
						r := env.do(t, "/inc", cookie)
						if r.status != 200 || r.body != itoa(want) {
							t.Errorf("slow store: %d %q, want %d", r.status, r.body, want)
							return
						}
						for _, c := range r.cookies {
							cookie = c.Value
						}
					}
				})
			}
			wg.Wait()
			if tc.cfg.Lock {
				// Parallel increments of one session: none lost.
				shared := env.step(t, "/inc", "")
				for range clients {
					wg.Go(func() {
						for range incs {
							if r := env.do(t, "/inc", shared); r.status != 200 {
								t.Errorf("locked increment: %d %q", r.status, r.body)
							}
						}
					})
				}
				wg.Wait()
				if r := env.do(t, "/inc", shared); r.body != itoa(clients*incs+2) {
					t.Errorf("counter %q after %d increments, want %d", r.body, clients*incs+2, clients*incs+2)
				}
			}
			if slow.Hits() == 0 || env.errCount() != 0 {
				t.Errorf("latency met %d times, %d errors", slow.Hits(), env.errCount())
			}
		})
	}
}

// TestRevocationStoreFaultsFailClosed: with the cookie backend, a failing
// or hung revocation lookup fails the request; the client's cookie is left
// alone and works again once the store does.
func TestRevocationStoreFaultsFailClosed(t *testing.T) {
	for _, tc := range []struct {
		name string
		rule faultstore.Rule
		want error
	}{
		{"error", faultstore.Rule{Methods: faultstore.Reads, Err: errFault}, errFault},
		{"hang past StoreTimeout", faultstore.Rule{Methods: faultstore.Reads, Hang: true}, context.DeadlineExceeded},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fs := faultstore.New(memstore.New(memstore.Options{}))
			reg := store.NewRegistry(nil)
			reg.Register("revocations", fs.Store())
			t.Cleanup(func() { reg.Close() })
			b, err := kvsession.NewCookie(kvsession.Config{
				Secrets:         [][]byte{[]byte("0123456789abcdef0123456789abcdef")},
				RevocationStore: "revocations",
				StoreTimeout:    200 * time.Millisecond,
			}, reg)
			if err != nil {
				t.Fatal(err)
			}
			env := serveFaults(t, b, fs)
			cookie := env.step(t, "/set?v=orig", "")
			cookie = env.step(t, "/bind?user=ada", cookie)
			rule := fs.Add(tc.rule)
			r := env.do(t, "/set?v=new", cookie)
			env.wantFailedClosed(t, r, tc.want, map[string]string{})
			if rule.Hits() == 0 {
				t.Fatal("the revocation store was never asked")
			}
			rule.Remove()
			if r := env.do(t, "/get", cookie); r.status != 200 || r.body != "v=orig user=ada" {
				t.Errorf("after the fault: %d %q", r.status, r.body)
			}
		})
	}
}

func waitUntil(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10s")
		}
		time.Sleep(time.Millisecond)
	}
}
