package kvsession

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kvsession/kvsession/internal/race"
	"github.com/kvsession/kvsession/store"
	"github.com/kvsession/kvsession/store/memstore"
	"github.com/kvsession/kvsession/store/storetest/faultstore"
)

// eventLog records each hook call as one line ("loaded hit", "store error
// load", ...), and every string a hook was given, error messages included,
// so that a test can compare what fired, in order, and check that no id
// reached a hook.
type eventLog struct {
	mu      sync.Mutex
	lines   []string
	strs    []string
	foreign int // hook calls whose ctx was not the one the caller passed
}

// eventCtxKey marks the contexts the tests pass, so that the log can tell
// a hook was given the caller's context.
type eventCtxKey struct{}

func eventCtx(t *testing.T) context.Context {
	return context.WithValue(t.Context(), eventCtxKey{}, true)
}

func (l *eventLog) add(ctx context.Context, line string, strs ...string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if ctx.Value(eventCtxKey{}) == nil {
		l.foreign++
	}
	l.lines = append(l.lines, line)
	l.strs = append(l.strs, strs...)
}

// events returns hooks that log to l; StoreCall is left out: it fires on
// every store call, which the session events do not follow one to one
// (storecall_test.go tests it).
func (l *eventLog) events() Events {
	return Events{
		Created: func(ctx context.Context) { l.add(ctx, "created") },
		Loaded:  func(ctx context.Context, o LoadOutcome) { l.add(ctx, "loaded "+o.String()) },
		Saved:   func(ctx context.Context) { l.add(ctx, "saved") },
		IDRenewed: func(ctx context.Context, c RenewCause) {
			l.add(ctx, "renewed "+c.String())
		},
		Destroyed: func(ctx context.Context) { l.add(ctx, "destroyed") },
		UserLoggedOutEverywhere: func(ctx context.Context, user string, n int) {
			l.add(ctx, fmt.Sprintf("logout %s %d", user, n), user)
		},
		StoreError: func(ctx context.Context, op string, err error) {
			l.add(ctx, "store error "+op, op, err.Error())
		},
		LockWaited: func(ctx context.Context, d time.Duration, acquired bool) {
			l.add(ctx, fmt.Sprint("lock ", acquired))
			if d < 0 {
				l.add(ctx, fmt.Sprint("negative lock wait ", d))
			}
		},
	}
}

func (l *eventLog) reset() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines, l.strs, l.foreign = nil, nil, 0
}

// eventEnv is one test's backend with hooks, beside a plain one on the
// same store and clock (seed) that sets the scene without firing any.
type eventEnv struct {
	t    *testing.T
	b    Backend
	sb   *ServerBackend // b, for the server backend's cases
	seed Backend
	clk  *clock
	fs   *faultstore.Store // the store, for faults: the server's sessions, the cookie's revocations
	log  *eventLog
	jar  map[string]string
	seen []string // every cookie value the jar held: no hook may be given one
}

// do runs one request with the jar's cookies on be, ending with status, and
// keeps the cookies its response sets.
func (e *eventEnv) do(be Backend, status int, fn func(s *Session)) error {
	e.t.Helper()
	var h []byte
	if len(e.jar) > 0 {
		h = header(sortedKeys(e.jar), e.jar)
	}
	s := be.LoadFromRequest(eventCtx(e.t), h)
	if fn != nil {
		fn(s)
	}
	out := &sink{}
	err := be.StoreInResponseStatus(s, out, status)
	be.Release(s)
	for _, name := range out.expired() {
		delete(e.jar, name)
	}
	live := out.live(e.t)
	maps.Copy(e.jar, live)
	for _, v := range live {
		e.seen = append(e.seen, v)
	}
	return err
}

// request is do on the backend with hooks, failing the test on error.
func (e *eventEnv) request(fn func(s *Session)) {
	e.t.Helper()
	if err := e.do(e.b, 200, fn); err != nil {
		e.t.Fatal(err)
	}
}

// failing is do on the backend with hooks, failing the test unless the
// request fails.
func (e *eventEnv) failing(fn func(s *Session)) {
	e.t.Helper()
	if err := e.do(e.b, 200, fn); err == nil {
		e.t.Fatal("request succeeded; want an error")
	}
}

// setCookie puts value in the jar as the session cookie, as a client
// replaying or forging one would.
func (e *eventEnv) setCookie(value string) {
	clear(e.jar)
	e.jar[DefaultCookieName] = value
	e.seen = append(e.seen, value)
}

// cookie is the session cookie the jar holds.
func (e *eventEnv) cookie() string { return e.jar[DefaultCookieName] }

// checkNoIDs fails the test if a hook was given a string holding a cookie
// value the test saw or a key the store was asked about (ids and the keys
// derived from them; user sets and marks are named after the user, whom
// UserLoggedOutEverywhere may be given).
func (e *eventEnv) checkNoIDs() {
	e.t.Helper()
	secrets := slices.Clone(e.seen)
	if e.fs != nil {
		for _, k := range e.fs.Keys() {
			if !strings.Contains(k, "user:") && !strings.Contains(k, "logout:") && !strings.Contains(k, "revoked:") {
				secrets = append(secrets, k)
			}
		}
	}
	for _, str := range e.log.strs {
		for _, secret := range secrets {
			if len(secret) >= 16 && strings.Contains(str, secret) {
				e.t.Errorf("a hook was given %q, which holds the id or key %q", str, secret)
			}
		}
	}
}

// newServerEventEnv is a server backend with hooks under cfg on the memory
// store (through a fault store), holding one session of "ada" in the jar.
func newServerEventEnv(t *testing.T, cfg Config) *eventEnv {
	clk := newClock()
	mem := memstore.New(memstore.Options{Now: clk.now})
	fs := faultstore.New(mem)
	t.Cleanup(func() { fs.Store().Close() })
	log := &eventLog{}
	cfg.Logger = slog.New(slog.DiscardHandler)
	cfg.Events = log.events()
	b := newBackend(t, cfg, fs.Store())
	b.now = clk.now
	seed := newBackend(t, Config{Logger: cfg.Logger}, fs.Store())
	seed.now = clk.now
	e := &eventEnv{t: t, b: b, sb: b, seed: seed, clk: clk, fs: fs, log: log, jar: map[string]string{}}
	e.login(seed, "ada")
	return e
}

// login starts a session of user on be in the jar.
func (e *eventEnv) login(be Backend, user string) {
	e.t.Helper()
	if err := e.do(be, 200, func(s *Session) { s.SetInt("n", 1); s.SetUser(user) }); err != nil {
		e.t.Fatal(err)
	}
}

// TestEventsServer: each hook of the server backend fires exactly when
// its event took effect, once, with the caller's context, and never with
// an id.
func TestEventsServer(t *testing.T) {
	read := func(s *Session) { s.GetInt("n") }
	change := func(s *Session) { s.SetInt("n", 2) }
	tests := []struct {
		name  string
		cfg   Config
		setup func(e *eventEnv) // with the seed backend; fires nothing
		run   func(e *eventEnv)
		want  []string
	}{
		{"a session never used loads nothing", Config{}, nil,
			func(e *eventEnv) { e.request(nil) }, nil},
		{"a new session", Config{}, func(e *eventEnv) { clear(e.jar) },
			func(e *eventEnv) { e.request(change) },
			[]string{"loaded none", "created", "saved"}},
		{"a new session left empty", Config{}, func(e *eventEnv) { clear(e.jar) },
			func(e *eventEnv) { e.request(read) },
			[]string{"loaded none"}},
		{"a read", Config{}, nil,
			func(e *eventEnv) { e.request(read) },
			[]string{"loaded hit"}},
		{"a change", Config{}, nil,
			func(e *eventEnv) { e.request(change) },
			[]string{"loaded hit", "saved"}},
		{"an unknown id", Config{}, func(e *eventEnv) {
			id, _ := e.sb.GenerateID()
			e.setCookie(id)
		}, func(e *eventEnv) { e.request(read) },
			[]string{"loaded miss"}},
		{"a malformed cookie", Config{}, func(e *eventEnv) { e.setCookie("not-an-id") },
			func(e *eventEnv) { e.request(read) },
			[]string{"loaded corrupt"}},
		{"an unreadable record", Config{}, func(e *eventEnv) {
			if err := e.fs.Inner().Set(context.Background(), e.sb.storeKey([]byte(e.cookie())), []byte{0xff, 1, 2}, time.Hour); err != nil {
				e.t.Fatal(err)
			}
		}, func(e *eventEnv) { e.request(read) },
			[]string{"loaded corrupt"}},
		{"a session past its idle timeout", Config{IdleTimeout: time.Hour},
			// Saved by a backend without the timeout: the store keeps it
			// for MaxAge, so the load finds it and judges it expired.
			func(e *eventEnv) { e.clk.advance(2 * time.Hour) },
			func(e *eventEnv) { e.request(read) },
			[]string{"loaded expired"}},
		{"an idle extension", Config{IdleTimeout: time.Hour},
			func(e *eventEnv) { e.clk.advance(10 * time.Minute) },
			func(e *eventEnv) { e.request(read) },
			[]string{"loaded hit", "saved"}},
		{"ExtendOnAccess", Config{ExtendOnAccess: true}, nil,
			func(e *eventEnv) { e.request(read) },
			[]string{"loaded hit", "saved"}},
		{"Destroy", Config{}, nil,
			func(e *eventEnv) { e.request(func(s *Session) { s.Destroy() }) },
			[]string{"loaded hit", "destroyed"}},
		{"a session emptied by the handler", Config{}, nil,
			func(e *eventEnv) { e.request(func(s *Session) { s.Clear() }) },
			[]string{"loaded hit", "destroyed"}},
		{"Destroy, then a new session", Config{}, nil,
			func(e *eventEnv) { e.request(func(s *Session) { s.Destroy(); s.SetInt("n", 1) }) },
			[]string{"loaded hit", "destroyed", "created", "saved"}},
		{"Destroy after RenewID", Config{}, nil,
			func(e *eventEnv) { e.request(func(s *Session) { s.RenewID(); s.Destroy() }) },
			[]string{"loaded hit", "destroyed"}},
		{"RenewID", Config{}, nil,
			func(e *eventEnv) { e.request(func(s *Session) { s.RenewID() }) },
			[]string{"loaded hit", "saved", "renewed requested"}},
		{"RenewID of a session never stored", Config{}, func(e *eventEnv) { clear(e.jar) },
			func(e *eventEnv) { e.request(func(s *Session) { s.RenewID(); s.SetInt("n", 1) }) },
			[]string{"loaded none", "created", "saved"}},
		{"a rotation on a read", Config{RotationInterval: time.Hour},
			func(e *eventEnv) { e.clk.advance(2 * time.Hour) },
			func(e *eventEnv) { e.request(read) },
			[]string{"loaded hit", "saved", "renewed rotation"}},
		{"a rotation with a change", Config{RotationInterval: time.Hour},
			func(e *eventEnv) { e.clk.advance(2 * time.Hour) },
			func(e *eventEnv) { e.request(change) },
			[]string{"loaded hit", "saved", "renewed rotation"}},
		{"an id rotated out", Config{RotationInterval: time.Hour}, func(e *eventEnv) {
			old := e.cookie()
			e.clk.advance(2 * time.Hour)
			rotating := newBackend(e.t, Config{RotationInterval: time.Hour, Logger: slog.New(slog.DiscardHandler)}, e.fs.Store())
			rotating.now = e.clk.now
			if err := e.do(rotating, 200, read); err != nil || e.cookie() == old {
				e.t.Fatalf("setup did not rotate: %v", err)
			}
			e.setCookie(old)
		}, func(e *eventEnv) { e.request(read) },
			[]string{"loaded forwarded"}},
		{"a 5xx response drops the change", Config{}, nil,
			func(e *eventEnv) {
				if err := e.do(e.b, 500, change); err != nil {
					e.t.Fatal(err)
				}
			},
			[]string{"loaded hit"}},
		{"a session ended by another request meanwhile", Config{}, nil,
			func(e *eventEnv) {
				s := e.b.LoadFromRequest(eventCtx(e.t), header(sortedKeys(e.jar), e.jar))
				defer e.b.Release(s)
				change(s)
				// Ended by an operator before this request saves: the
				// save is dropped, and fires nothing.
				if err := e.sb.Delete(eventCtx(e.t), e.cookie()); err != nil {
					e.t.Fatal(err)
				}
				if err := e.b.StoreInResponse(s, &sink{}); err != nil {
					e.t.Fatal(err)
				}
			},
			[]string{"loaded hit", "loaded hit", "destroyed"}},
		{"the by-id methods", Config{}, nil,
			func(e *eventEnv) {
				ctx := eventCtx(e.t)
				if _, err := e.sb.Get(ctx, e.cookie()); err != nil {
					e.t.Fatal(err)
				}
				id, _ := e.sb.GenerateID()
				e.seen = append(e.seen, id)
				if err := e.sb.Set(ctx, id, map[string]any{"n": 1}); err != nil {
					e.t.Fatal(err)
				}
				if err := e.sb.Set(ctx, id, map[string]any{"n": 2}); err != nil {
					e.t.Fatal(err)
				}
				if err := e.sb.Set(ctx, id, nil); err != nil {
					e.t.Fatal(err)
				}
				if err := e.sb.Delete(ctx, e.cookie()); err != nil {
					e.t.Fatal(err)
				}
			},
			[]string{
				"loaded hit",                      // Get
				"loaded miss", "created", "saved", // Set of an unknown id
				"loaded hit", "saved", // Set again
				"loaded hit", "destroyed", // Set of no values
				"loaded hit", "destroyed", // Delete
			}},
		{"a log out everywhere", Config{}, func(e *eventEnv) {
			for _, user := range []string{"ada", "bob"} {
				clear(e.jar) // a new session each
				e.login(e.seed, user)
			}
		},
			func(e *eventEnv) {
				if n, err := e.sb.DestroyUserSessions(eventCtx(e.t), "ada"); n != 2 || err != nil {
					e.t.Fatalf("DestroyUserSessions = %d, %v", n, err)
				}
				if n, err := e.sb.DestroyUserSessions(eventCtx(e.t), "nobody"); n != 0 || err != nil {
					e.t.Fatalf("DestroyUserSessions = %d, %v", n, err)
				}
			},
			[]string{"destroyed", "destroyed", "logout ada 2", "logout nobody 0"}},
		{"ends by handle", Config{}, func(e *eventEnv) {
			clear(e.jar) // a second session of ada's
			e.login(e.seed, "ada")
		},
			func(e *eventEnv) {
				ctx := eventCtx(e.t)
				list, err := e.sb.UserSessions(ctx, "ada")
				if err != nil || len(list) != 2 {
					e.t.Fatalf("UserSessions = %v, %v", list, err)
				}
				if ended, err := e.sb.DestroyUserSession(ctx, "ada", list[0].Handle); !ended || err != nil {
					e.t.Fatalf("DestroyUserSession = %v, %v", ended, err)
				}
				if ended, err := e.sb.DestroySession(ctx, list[1].Handle, ScanOptions{}); !ended || err != nil {
					e.t.Fatalf("DestroySession = %v, %v", ended, err)
				}
			},
			[]string{"destroyed", "destroyed"}},
		{"a log out everywhere that fails", Config{}, func(e *eventEnv) { e.fs.Fail(faultstore.Members, errFault) },
			func(e *eventEnv) {
				if _, err := e.sb.DestroyUserSessions(eventCtx(e.t), "ada"); !errors.Is(err, errFault) {
					e.t.Fatalf("DestroyUserSessions: %v", err)
				}
			},
			[]string{"store error index"}},
		{"a load the store fails", Config{}, func(e *eventEnv) { e.fs.Fail(faultstore.Reads, errFault) },
			func(e *eventEnv) { e.failing(read) },
			[]string{"store error load", "loaded error"}},
		{"a save the store fails", Config{}, func(e *eventEnv) { e.fs.Fail(faultstore.Writes, errFault) },
			func(e *eventEnv) { e.failing(change) },
			[]string{"loaded hit", "store error save"}},
		{"a Destroy the store fails", Config{}, func(e *eventEnv) { e.fs.Fail(faultstore.Delete, errFault) },
			func(e *eventEnv) { e.failing(func(s *Session) { s.Destroy() }) },
			[]string{"loaded hit", "store error delete"}},
		{"a user's set the store fails to update", Config{}, func(e *eventEnv) { e.fs.Fail(faultstore.RemoveMember, errFault) },
			// Only logged: the session is destroyed all the same.
			func(e *eventEnv) { e.request(func(s *Session) { s.Destroy() }) },
			[]string{"loaded hit", "store error index", "destroyed"}},
		{"the session lock", Config{Lock: true}, nil,
			func(e *eventEnv) { e.request(read) },
			[]string{"lock true", "loaded hit"}},
		{"the session lock not taken in time", Config{Lock: true, LockWait: 20 * time.Millisecond}, nil,
			func(e *eventEnv) {
				holder := e.b.LoadFromRequest(eventCtx(e.t), header(sortedKeys(e.jar), e.jar))
				defer e.b.Release(holder)
				if err := holder.Load(); err != nil {
					e.t.Fatal(err)
				}
				if err := e.do(e.b, 200, read); !errors.Is(err, ErrLockTimeout) {
					e.t.Fatalf("request = %v, want ErrLockTimeout", err)
				}
			},
			[]string{"lock true", "loaded hit", "lock false", "loaded error"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newServerEventEnv(t, tc.cfg)
			if tc.setup != nil {
				tc.setup(e)
			}
			e.log.reset()
			tc.run(e)
			if !slices.Equal(e.log.lines, tc.want) {
				t.Errorf("events:\n got %q\nwant %q", e.log.lines, tc.want)
			}
			if e.log.foreign != 0 {
				t.Errorf("%d hook calls were not given the caller's context", e.log.foreign)
			}
			e.checkNoIDs()
		})
	}
}

// newCookieEventEnv is a cookie backend with hooks under cfg, with a
// revocation store (through a fault store), holding one session of "ada"
// in the jar.
func newCookieEventEnv(t *testing.T, cfg Config) *eventEnv {
	clk := newClock()
	fs := faultstore.New(memstore.New(memstore.Options{Now: clk.now}))
	t.Cleanup(func() { fs.Store().Close() })
	reg := store.NewRegistry(nil)
	if err := reg.Register("revocations", fs.Store()); err != nil {
		t.Fatal(err)
	}
	log := &eventLog{}
	cfg.Logger = slog.New(slog.DiscardHandler)
	cfg.Secrets = [][]byte{keyA}
	cfg.RevocationStore = "revocations"
	seedCfg := cfg
	cfg.Events = log.events()
	open := func(cfg Config) *CookieBackend {
		b, err := NewCookie(cfg, reg)
		if err != nil {
			t.Fatal(err)
		}
		clk.attach(b)
		return b
	}
	e := &eventEnv{t: t, b: open(cfg), seed: open(seedCfg), clk: clk, fs: fs, log: log, jar: map[string]string{}}
	e.login(e.seed, "ada")
	return e
}

// TestEventsCookie: the cookie backend fires what it has the concept of
// (no id to renew, no lock), as the server backend does.
func TestEventsCookie(t *testing.T) {
	read := func(s *Session) { s.GetInt("n") }
	change := func(s *Session) { s.SetInt("n", 2) }
	tests := []struct {
		name  string
		cfg   Config
		setup func(e *eventEnv)
		run   func(e *eventEnv)
		want  []string
	}{
		{"a session never used loads nothing", Config{}, nil,
			func(e *eventEnv) { e.request(nil) }, nil},
		{"a new session", Config{}, func(e *eventEnv) { clear(e.jar) },
			func(e *eventEnv) { e.request(change) },
			[]string{"loaded none", "created", "saved"}},
		{"a read", Config{}, nil,
			func(e *eventEnv) { e.request(read) },
			[]string{"loaded hit"}},
		{"a change", Config{}, nil,
			func(e *eventEnv) { e.request(change) },
			[]string{"loaded hit", "saved"}},
		{"ExtendOnAccess", Config{ExtendOnAccess: true}, nil,
			func(e *eventEnv) { e.request(read) },
			[]string{"loaded hit", "saved"}},
		{"a tampered cookie", Config{}, func(e *eventEnv) {
			c := []byte(e.cookie())
			c[len(c)/2] ^= 1
			e.setCookie(string(c))
		}, func(e *eventEnv) { e.request(read) },
			[]string{"loaded corrupt"}},
		{"a cookie past its sealed expiry", Config{MaxAge: time.Hour},
			func(e *eventEnv) { e.clk.advance(2 * time.Hour) },
			func(e *eventEnv) { e.request(read) },
			[]string{"loaded expired"}},
		{"Destroy", Config{}, nil,
			func(e *eventEnv) { e.request(func(s *Session) { s.Destroy() }) },
			[]string{"loaded hit", "destroyed"}},
		{"a session emptied by the handler", Config{}, nil,
			func(e *eventEnv) { e.request(func(s *Session) { s.Clear() }) },
			[]string{"loaded hit", "destroyed"}},
		{"Destroy, then a new session", Config{}, nil,
			func(e *eventEnv) { e.request(func(s *Session) { s.Destroy(); s.SetInt("n", 1) }) },
			[]string{"loaded hit", "destroyed", "created", "saved"}},
		{"a 5xx response drops the Destroy", Config{}, nil,
			func(e *eventEnv) {
				if err := e.do(e.b, 500, func(s *Session) { s.Destroy() }); err != nil {
					e.t.Fatal(err)
				}
			},
			[]string{"loaded hit"}},
		{"RevokeUser, then a revoked cookie", Config{}, nil,
			func(e *eventEnv) {
				e.clk.advance(time.Second)
				if err := e.b.(*CookieBackend).RevokeUser(eventCtx(e.t), "ada"); err != nil {
					e.t.Fatal(err)
				}
				e.request(read)
			},
			[]string{"logout ada -1", "loaded miss"}},
		{"a revocation check the store fails", Config{}, func(e *eventEnv) { e.fs.Fail(faultstore.Reads, errFault) },
			func(e *eventEnv) { e.failing(read) },
			[]string{"store error revocation check", "loaded error"}},
		{"a RevokeUser the store fails", Config{}, func(e *eventEnv) { e.fs.Fail(faultstore.Writes, errFault) },
			func(e *eventEnv) {
				if err := e.b.(*CookieBackend).RevokeUser(eventCtx(e.t), "ada"); !errors.Is(err, errFault) {
					e.t.Fatalf("RevokeUser: %v", err)
				}
			},
			[]string{"store error revoke"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newCookieEventEnv(t, tc.cfg)
			if tc.setup != nil {
				tc.setup(e)
			}
			e.log.reset()
			tc.run(e)
			if !slices.Equal(e.log.lines, tc.want) {
				t.Errorf("events:\n got %q\nwant %q", e.log.lines, tc.want)
			}
			if e.log.foreign != 0 {
				t.Errorf("%d hook calls were not given the caller's context", e.log.foreign)
			}
			e.checkNoIDs()
		})
	}
}

// TestEventsNamesAreLabels: every outcome and cause has a distinct name
// fit for a metric label, and the lists an exporter pre-creates series
// from hold each of them.
func TestEventsNamesAreLabels(t *testing.T) {
	names := map[string]bool{}
	for _, o := range LoadOutcomes() {
		n := o.String()
		if n == "unknown" || names[n] || strings.ToLower(n) != n || strings.ContainsAny(n, " -") {
			t.Errorf("outcome %d: name %q (unknown, repeated, or not a label)", o, n)
		}
		names[n] = true
	}
	if len(names) != int(LoadError)+1 {
		t.Errorf("LoadOutcomes lists %d outcomes, want %d", len(names), LoadError+1)
	}
	if got := LoadOutcome(200).String(); got != "unknown" {
		t.Errorf("an outcome out of range is %q", got)
	}
	if got := fmt.Sprint(RenewCauses()); got != "[requested rotation]" {
		t.Errorf("RenewCauses = %s", got)
	}
	if got := RenewCause(0).String(); got != "unknown" {
		t.Errorf("the zero cause is %q", got)
	}
}

// TestEventsAllocateNothing: hooks that allocate nothing themselves add
// no allocation to a request (TestRequestAllocations pins none without
// hooks): the backend builds no hook argument on the heap, and the timing
// of store calls allocates nothing per call.
func TestEventsAllocateNothing(t *testing.T) {
	if race.Enabled {
		t.Skip("the race detector drops pooled objects at random")
	}
	nop := Events{
		Created: func(context.Context) {}, Loaded: func(context.Context, LoadOutcome) {},
		Saved: func(context.Context) {}, IDRenewed: func(context.Context, RenewCause) {},
		Destroyed: func(context.Context) {}, StoreError: func(context.Context, string, error) {},
		LockWaited: func(context.Context, time.Duration, bool) {},
		StoreCall:  func(context.Context, string, time.Duration, error) {},
	}
	st := memstore.New(memstore.Options{})
	defer st.Close()
	be := newBackend(t, Config{Events: nop}, st)
	ids := seed(t, be, 10, small)
	for _, tc := range []struct {
		name string
		work func(*Session)
	}{
		{"read", func(s *Session) { s.GetInt("counter") }},
		{"increment", increment},
	} {
		i := 0
		request := func() {
			s := be.LoadFromRequest(t.Context(), ids[i%len(ids)])
			i++
			tc.work(s)
			if err := be.StoreInResponse(s, nopSink{}); err != nil {
				t.Fatal(err)
			}
			be.Release(s)
		}
		if n := testing.AllocsPerRun(1000, request); n != 0 {
			t.Errorf("%s: %v allocations per request with hooks, want 0", tc.name, n)
		}
	}
}
