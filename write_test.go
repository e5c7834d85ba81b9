package kvsession

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kvsession/kvsession/store"
	"github.com/kvsession/kvsession/store/badgerstore"
	"github.com/kvsession/kvsession/store/memstore"
	"github.com/kvsession/kvsession/store/redisstore"
)

// Every end of a session must hold against requests already in flight:
// after Destroy, DestroyUserSessions, RenewID or a rotation returns, no
// request that loaded the session before can write it back (write.go). The
// tests here run each end on every store shipped, with the lock on and
// off: the guarantee rests on the store's Swap, so each store must give it.

// endStore is a store the end tests run on.
type endStore struct {
	name string
	open func(t *testing.T) store.Store
}

// endStores returns the memory and Badger stores, and Redis when there is
// one: KVSESSION_REDIS_ADDR, which .ci/run sets (with
// KVSESSION_REQUIRE_REDIS, so that CI fails rather than skip it).
func endStores(t *testing.T) []endStore {
	stores := []endStore{
		{"memory", func(t *testing.T) store.Store { return memstore.New(memstore.Options{}) }},
		{"badger", func(t *testing.T) store.Store {
			st, err := badgerstore.Open(badgerstore.Options{Dir: t.TempDir()})
			if err != nil {
				t.Fatal(err)
			}
			return st
		}},
	}
	addr := os.Getenv("KVSESSION_REDIS_ADDR")
	if addr == "" {
		if os.Getenv("KVSESSION_REQUIRE_REDIS") != "" {
			t.Fatal("KVSESSION_REQUIRE_REDIS is set but KVSESSION_REDIS_ADDR is not")
		}
		return stores
	}
	return append(stores, endStore{"redis", func(t *testing.T) store.Store {
		// A prefix of its own on the shared server, deleted afterwards.
		prefix := "kvsession-ends:" + strconv.FormatInt(time.Now().UnixNano(), 36) + ":"
		st, err := redisstore.Open(context.Background(), redisstore.Options{Addr: addr, Prefix: prefix})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.DeleteAll(context.Background()) })
		return st
	}})
}

// eachEnd runs fn on every store, with the lock off and on.
func eachEnd(t *testing.T, cfg Config, fn func(t *testing.T, b *ServerBackend)) {
	for _, es := range endStores(t) {
		for _, lock := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/lock=%v", es.name, lock), func(t *testing.T) {
				st := es.open(t)
				t.Cleanup(func() { st.Close() })
				c := cfg
				c.Lock = lock
				fn(t, newBackend(t, c, st))
			})
		}
	}
}

// inFlight is a request that has loaded its session and waits, as a slow
// handler would, to finish later.
type inFlight struct {
	b *ServerBackend
	s *Session
	n int64
}

// startRequest loads the session id names and reads its counter.
func startRequest(t *testing.T, b *ServerBackend, id string) *inFlight {
	t.Helper()
	s := b.LoadFromRequest(context.Background(), []byte(b.CookieName()+"="+id))
	n, _ := s.GetInt64("n")
	if err := s.Err(); err != nil {
		t.Fatalf("load: %v", err)
	}
	return &inFlight{b: b, s: s, n: n}
}

// finish increments the counter and stores the response, as /counter does.
func (r *inFlight) finish() (*sink, error) {
	defer r.b.Release(r.s)
	if err := r.s.SetInt64("n", r.n+1); err != nil {
		return nil, err
	}
	out := &sink{}
	return out, r.b.StoreInResponse(r.s, out)
}

// alive reports whether the session id names still opens: loaded with
// data or a user.
func alive(t *testing.T, b *ServerBackend, id string) bool {
	t.Helper()
	live := false
	if _, err := request(t, b, id, func(s *Session) { live = s.Len() > 0 || s.User() != "" }); err != nil {
		t.Fatal(err)
	}
	return live
}

// aliceHandle is the handle of alice's one session, read from her set
// without the session's lock (a request in flight may hold it).
func aliceHandle(t *testing.T, b *ServerBackend) string {
	t.Helper()
	list, err := b.UserSessions(context.Background(), "alice")
	if err != nil || len(list) != 1 {
		t.Fatalf("UserSessions(alice) = %v, %v", list, err)
	}
	return list[0].Handle
}

// login makes a session bound to user with a counter, and returns its id.
func login(t *testing.T, b *ServerBackend, user string) string {
	t.Helper()
	out, err := request(t, b, "", func(s *Session) {
		s.SetInt64("n", 0)
		if err := s.SetUser(user); err != nil {
			t.Fatal(err)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	return out.cookieValue(t, "session")
}

// Finding 1: a request in flight while the user logs out everywhere wrote
// the session back, out of the user's index, so that every later log out
// everywhere missed it.
func TestLogoutEverywhereHoldsAgainstRequestsInFlight(t *testing.T) {
	const sessions = 20
	eachEnd(t, Config{}, func(t *testing.T, b *ServerBackend) {
		ctx := context.Background()
		ids := make([]string, sessions)
		for i := range ids {
			ids[i] = login(t, b, "alice")
		}
		login(t, b, "bob") // another user's session is left alone
		reqs := make([]*inFlight, sessions)
		for i, id := range ids {
			reqs[i] = startRequest(t, b, id)
		}
		n, err := b.DestroyUserSessions(ctx, "alice")
		if err != nil || n != sessions {
			t.Fatalf("DestroyUserSessions = %d, %v; want %d", n, err, sessions)
		}
		// The requests in flight finish, some at once.
		var wg sync.WaitGroup
		for _, r := range reqs {
			wg.Go(func() {
				out, err := r.finish()
				if err != nil {
					t.Errorf("a request finishing after the logout: %v", err)
				} else if len(out.cookies) != 0 {
					t.Errorf("a request finishing after the logout set cookies %v", out.cookies)
				}
			})
		}
		wg.Wait()
		for i, id := range ids {
			if alive(t, b, id) {
				t.Errorf("session %d survived log out everywhere", i)
			}
		}
		if list, err := b.UserSessions(ctx, "alice"); err != nil || len(list) != 0 {
			t.Errorf("UserSessions after log out everywhere = %v, %v", list, err)
		}
		// Log out everywhere keeps working: a later login is reached.
		later := login(t, b, "alice")
		if n, err := b.DestroyUserSessions(ctx, "alice"); err != nil || n != 1 {
			t.Errorf("second DestroyUserSessions = %d, %v; want 1", n, err)
		}
		if alive(t, b, later) {
			t.Error("the later login survived the second log out everywhere")
		}
		if list, _ := b.UserSessions(ctx, "bob"); len(list) != 1 {
			t.Errorf("bob has %d sessions, want 1", len(list))
		}
	})
}

// Finding 4: with the lock off, a request in flight saved a destroyed
// session back. Destroy, emptying, RenewID and a rotation are each an end;
// a request that loaded the session before any of them must not write it
// back, with the lock off or when its lock's lease ran out.
func TestEndsHoldAgainstRequestsInFlight(t *testing.T) {
	ends := []struct {
		name string
		cfg  Config
		// end runs the ending request on id and returns the id the client
		// holds after it ("" if none).
		end func(t *testing.T, b *ServerBackend, clk *clock, id string) string
	}{
		{"Destroy", Config{}, func(t *testing.T, b *ServerBackend, _ *clock, id string) string {
			if _, err := request(t, b, id, func(s *Session) {
				if err := s.Destroy(); err != nil {
					t.Fatal(err)
				}
			}); err != nil {
				t.Fatal(err)
			}
			return ""
		}},
		{"Clear", Config{}, func(t *testing.T, b *ServerBackend, _ *clock, id string) string {
			if _, err := request(t, b, id, func(s *Session) { s.Clear() }); err != nil {
				t.Fatal(err)
			}
			return ""
		}},
		{"RenewID", Config{}, func(t *testing.T, b *ServerBackend, _ *clock, id string) string {
			out, err := request(t, b, id, func(s *Session) {
				if err := s.RenewID(); err != nil {
					t.Fatal(err)
				}
			})
			if err != nil {
				t.Fatal(err)
			}
			return out.cookieValue(t, "session")
		}},
		{"DestroyUserSession", Config{}, func(t *testing.T, b *ServerBackend, _ *clock, _ string) string {
			if ended, err := b.DestroyUserSession(context.Background(), "alice", aliceHandle(t, b)); !ended || err != nil {
				t.Fatalf("DestroyUserSession = %v, %v", ended, err)
			}
			return ""
		}},
		{"DestroySession", Config{}, func(t *testing.T, b *ServerBackend, _ *clock, _ string) string {
			if ended, err := b.DestroySession(context.Background(), aliceHandle(t, b), ScanOptions{}); !ended || err != nil {
				t.Fatalf("DestroySession = %v, %v", ended, err)
			}
			return ""
		}},
		{"rotation", Config{RotationInterval: time.Hour}, func(t *testing.T, b *ServerBackend, clk *clock, id string) string {
			clk.advance(2 * time.Hour)
			out, err := request(t, b, id, func(s *Session) { s.Len() })
			if err != nil {
				t.Fatal(err)
			}
			return out.cookieValue(t, "session")
		}},
	}
	for _, end := range ends {
		t.Run(end.name, func(t *testing.T) {
			cfg := end.cfg
			cfg.MaxAge, cfg.LockLease, cfg.LockWait = 24*time.Hour, 50*time.Millisecond, 5*time.Second
			eachEnd(t, cfg, func(t *testing.T, b *ServerBackend) {
				clk := newClock()
				b.now = clk.now // the backend's clock only: store TTLs stay real
				id := login(t, b, "alice")
				// With the lock on, the ending request waits out this one's
				// lease, as it would behind a request that hung.
				r := startRequest(t, b, id)
				next := end.end(t, b, clk, id)
				if _, err := r.finish(); err != nil {
					t.Fatalf("the request in flight: %v", err)
				}
				// Under the old key: nothing, or the rotation's forward.
				rec, err := b.calls.Get(context.Background(), b.storeKey([]byte(id)))
				switch {
				case isNotFound(err):
				case err != nil:
					t.Fatal(err)
				case len(rec) > 0 && rec[0] == forwardMarker && end.name == "rotation":
				default:
					t.Errorf("the ended session's record was written back (%d bytes)", len(rec))
				}
				if end.name != "rotation" && alive(t, b, id) {
					t.Errorf("the ended id opens a session again")
				}
				if next != "" {
					var n int64
					request(t, b, next, func(s *Session) { n, _ = s.GetInt64("n") })
					if n != 0 {
						t.Errorf("the new id holds n=%d, want what the ending request left (0)", n)
					}
				}
			})
		})
	}
}

// Finding 5: a request that held the session lock past its lease saved
// over the request that took the lock after it. Whichever of the two
// saves second, on a stale load, is refused with ErrConflict; the other's
// write stands, and no acknowledged write is lost.
func TestLockLeaseOverrunCannotOverwrite(t *testing.T) {
	const lease = 100 * time.Millisecond
	for _, es := range endStores(t) {
		for _, lateFirst := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/late holder saves first=%v", es.name, lateFirst), func(t *testing.T) {
				st := es.open(t)
				t.Cleanup(func() { st.Close() })
				b := newBackend(t, Config{Lock: true, LockLease: lease, LockWait: 10 * lease}, st)
				id := login(t, b, "alice")
				late := startRequest(t, b, id) // holds the lock, then overruns
				next := startRequest(t, b, id) // waits out the lease, takes the lock
				late.n, next.n = 100, 200
				first, second := next, late
				if lateFirst {
					first, second = late, next
				}
				_, err1 := first.finish()
				_, err2 := second.finish()
				if err1 != nil {
					t.Fatalf("first save: %v", err1)
				}
				if !errors.Is(err2, ErrConflict) {
					t.Fatalf("second save, on a load the first changed: %v, want ErrConflict", err2)
				}
				var n int64
				request(t, b, id, func(s *Session) { n, _ = s.GetInt64("n") })
				if n != first.n+1 {
					t.Errorf("n = %d, want %d: the acknowledged save was lost", n, first.n+1)
				}
			})
		}
	}
}

// Finding 2: a hidden cap of 1,000 sessions per user let the oldest escape
// log out everywhere. There is no cap: every session is reached.
func TestLogoutEverywhereReachesEverySession(t *testing.T) {
	const sessions = 1100
	for _, es := range endStores(t) {
		t.Run(es.name, func(t *testing.T) {
			st := es.open(t)
			t.Cleanup(func() { st.Close() })
			b := newBackend(t, Config{}, st)
			ids := make([]string, sessions)
			for i := range ids {
				ids[i] = login(t, b, "alice")
			}
			ctx := context.Background()
			if list, err := b.UserSessions(ctx, "alice"); err != nil || len(list) != sessions {
				t.Fatalf("UserSessions lists %d, %v; want %d", len(list), err, sessions)
			}
			if n, err := b.DestroyUserSessions(ctx, "alice"); err != nil || n != sessions {
				t.Fatalf("DestroyUserSessions = %d, %v; want %d", n, err, sessions)
			}
			for i, id := range ids {
				if alive(t, b, id) {
					t.Fatalf("session %d of %d survived log out everywhere", i, sessions)
				}
			}
		})
	}
}

// writeSpy counts the calls a backend makes and the largest value it
// writes.
type writeSpy struct {
	*memstore.Store
	mu       sync.Mutex
	calls    int
	largest  int
	adds     int
	listings int
}

func (w *writeSpy) wrote(n int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.calls++
	w.largest = max(w.largest, n)
}

func (w *writeSpy) Get(ctx context.Context, key string) ([]byte, error) {
	w.wrote(0)
	return w.Store.Get(ctx, key)
}

func (w *writeSpy) Set(ctx context.Context, key string, v []byte, ttl time.Duration) error {
	w.wrote(len(v))
	return w.Store.Set(ctx, key, v, ttl)
}

func (w *writeSpy) Swap(ctx context.Context, key string, old, v []byte, ttl time.Duration) (bool, error) {
	w.wrote(len(v))
	return w.Store.Swap(ctx, key, old, v, ttl)
}

func (w *writeSpy) AddMember(ctx context.Context, set, member string, ttl time.Duration) error {
	w.wrote(len(member))
	w.mu.Lock()
	w.adds++
	w.mu.Unlock()
	return w.Store.AddMember(ctx, set, member, ttl)
}

func (w *writeSpy) Members(ctx context.Context, set string) ([]string, error) {
	w.wrote(0)
	w.mu.Lock()
	w.listings++
	w.mu.Unlock()
	return w.Store.Members(ctx, set)
}

// Finding 9: each login of a user rewrote one record listing all of the
// user's sessions, so that 20k logins of one user wrote ~200 times the
// bytes of 20k users' logins. A login now costs the same store calls and
// bytes however many sessions its user has.
func TestLoginCostDoesNotGrowWithTheUsersSessions(t *testing.T) {
	spy := &writeSpy{Store: memstore.New(memstore.Options{})}
	defer spy.Close()
	b := newBackend(t, Config{}, spy)
	measure := func() (calls, largest, adds, listings int) {
		spy.mu.Lock()
		spy.calls, spy.largest, spy.adds, spy.listings = 0, 0, 0, 0
		spy.mu.Unlock()
		login(t, b, "alice")
		spy.mu.Lock()
		defer spy.mu.Unlock()
		return spy.calls, spy.largest, spy.adds, spy.listings
	}
	calls0, largest0, adds0, listings0 := measure()
	if adds0 != 1 || listings0 != 0 {
		t.Fatalf("a login made %d set additions and %d listings, want 1 and 0", adds0, listings0)
	}
	for range 2000 {
		login(t, b, "alice")
	}
	calls, largest, adds, listings := measure()
	if calls != calls0 || largest != largest0 || adds != adds0 || listings != listings0 {
		t.Errorf("login 2002 of one user: %d calls, largest write %d bytes, %d additions, %d listings; the first: %d, %d, %d, %d",
			calls, largest, adds, listings, calls0, largest0, adds0, listings0)
	}
}

// The ends hold across processes that share Redis: the request in flight
// runs on one backend and client, the end on another, as two instances
// behind a load balancer would, with the lock on and off.
func TestEndsHoldAcrossProcessesOnRedis(t *testing.T) {
	addr := os.Getenv("KVSESSION_REDIS_ADDR")
	if addr == "" {
		if os.Getenv("KVSESSION_REQUIRE_REDIS") != "" {
			t.Fatal("KVSESSION_REQUIRE_REDIS is set but KVSESSION_REDIS_ADDR is not")
		}
		t.Skip("no Redis: set KVSESSION_REDIS_ADDR")
	}
	ends := map[string]func(t *testing.T, b *ServerBackend, id string){
		"Destroy": func(t *testing.T, b *ServerBackend, id string) {
			if _, err := request(t, b, id, func(s *Session) { s.Destroy() }); err != nil {
				t.Fatal(err)
			}
		},
		"DestroyUserSessions": func(t *testing.T, b *ServerBackend, _ string) {
			if n, err := b.DestroyUserSessions(context.Background(), "alice"); err != nil || n != 1 {
				t.Fatalf("DestroyUserSessions = %d, %v", n, err)
			}
		},
		"RenewID": func(t *testing.T, b *ServerBackend, id string) {
			if _, err := request(t, b, id, func(s *Session) { s.RenewID() }); err != nil {
				t.Fatal(err)
			}
		},
		"DestroyUserSession": func(t *testing.T, b *ServerBackend, _ string) {
			if ended, err := b.DestroyUserSession(context.Background(), "alice", aliceHandle(t, b)); !ended || err != nil {
				t.Fatalf("DestroyUserSession = %v, %v", ended, err)
			}
		},
		"DestroySession": func(t *testing.T, b *ServerBackend, _ string) {
			if ended, err := b.DestroySession(context.Background(), aliceHandle(t, b), ScanOptions{}); !ended || err != nil {
				t.Fatalf("DestroySession = %v, %v", ended, err)
			}
		},
	}
	for name, end := range ends {
		for _, lock := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/lock=%v", name, lock), func(t *testing.T) {
				prefix := "kvsession-ends2:" + strconv.FormatInt(time.Now().UnixNano(), 36) + ":"
				open := func() *redisstore.Store {
					st, err := redisstore.Open(context.Background(), redisstore.Options{Addr: addr, Prefix: prefix})
					if err != nil {
						t.Fatal(err)
					}
					t.Cleanup(func() { st.Close() })
					return st
				}
				one, two := open(), open()
				t.Cleanup(func() { one.DeleteAll(context.Background()) })
				cfg := Config{Lock: lock, LockLease: 100 * time.Millisecond, LockWait: 5 * time.Second}
				a, b := newBackend(t, cfg, one), newBackend(t, cfg, two)
				id := login(t, a, "alice")
				r := startRequest(t, a, id)
				end(t, b, id)
				if _, err := r.finish(); err != nil {
					t.Fatalf("the request in flight on the other instance: %v", err)
				}
				if alive(t, a, id) || alive(t, b, id) {
					t.Error("the ended session opens again")
				}
			})
		}
	}
}

// A request in flight whose only write is an idle extension must not bring
// back a session DestroyUserSessions deleted (it once did, unindexed, so
// that a second log-out-everywhere missed it).
func TestExtensionDoesNotResurrectAfterLogoutEverywhere(t *testing.T) {
	for _, lock := range []bool{false, true} {
		b, clk, _ := rvSetup(t, Config{IdleTimeout: time.Hour, ExtensionDelay: time.Minute, Lock: lock})
		ctx := context.Background()
		id := rvLogin(t, b, "ada")
		clk.advance(2 * time.Minute) // extension due
		s := b.LoadFromRequest(ctx, []byte("session="+id))
		if s.Len() != 1 {
			t.Fatal("not loaded")
		}
		if n, _ := b.DestroyUserSessions(ctx, "ada"); n != 1 {
			t.Fatal("destroy", n)
		}
		if err := b.StoreInResponse(s, &sink{}); err != nil {
			t.Fatal(err)
		}
		b.Release(s)
		n, _ := b.DestroyUserSessions(ctx, "ada")
		alive := false
		request(t, b, id, func(s *Session) { alive = s.Len() == 1 })
		t.Logf("lock=%v: second DestroyUserSessions=%d, stolen cookie alive=%v", lock, n, alive)
		if alive {
			t.Errorf("lock=%v: session survived two log-out-everywhere calls", lock)
		}
	}
}

// The same for an id rotation.
func TestRotationDoesNotResurrectAfterLogoutEverywhere(t *testing.T) {
	b, clk, _ := rvSetup(t, Config{RotationInterval: time.Minute, MaxAge: time.Hour})
	ctx := context.Background()
	id := rvLogin(t, b, "ada")
	clk.advance(2 * time.Minute)
	s := b.LoadFromRequest(ctx, []byte("session="+id))
	s.Len()
	b.DestroyUserSessions(ctx, "ada")
	out := &sink{}
	if err := b.StoreInResponse(s, out); err != nil {
		t.Fatal(err)
	}
	b.Release(s)
	if len(out.cookies) != 0 {
		t.Errorf("the rotation of a session logged out meanwhile wrote cookies %v", out.cookies)
	}
	n, _ := b.DestroyUserSessions(ctx, "ada")
	alive := false
	request(t, b, id, func(s *Session) { alive = s.Len() == 1 })
	t.Logf("second destroy=%d alive=%v", n, alive)
	if alive {
		t.Error("rotated session survived two log-out-everywhere calls")
	}
}

// advHookStore runs a one-shot hook before the next call of a given
// method (and, if set, only for keys/sets containing match).
type advHookStore struct {
	store.Store
	mu    sync.Mutex
	op    string
	match string
	hook  func()
}

func (h *advHookStore) arm(op, match string, f func()) {
	h.mu.Lock()
	h.op, h.match, h.hook = op, match, f
	h.mu.Unlock()
}

func (h *advHookStore) fire(op, key string) {
	h.mu.Lock()
	f := h.hook
	if f == nil || h.op != op || !strings.Contains(key, h.match) {
		h.mu.Unlock()
		return
	}
	h.hook = nil
	h.mu.Unlock()
	f()
}

func (h *advHookStore) Get(ctx context.Context, k string) ([]byte, error) {
	h.fire("get", k)
	return h.Store.Get(ctx, k)
}

func (h *advHookStore) Swap(ctx context.Context, k string, old, v []byte, ttl time.Duration) (bool, error) {
	h.fire("swap", k)
	return h.Store.Swap(ctx, k, old, v, ttl)
}

func (h *advHookStore) Set(ctx context.Context, k string, v []byte, ttl time.Duration) error {
	h.fire("set", k)
	return h.Store.Set(ctx, k, v, ttl)
}

func (h *advHookStore) RemoveMember(ctx context.Context, set, m string) error {
	h.fire("removemember", set)
	return h.Store.RemoveMember(ctx, set, m)
}

func advSetup(t *testing.T, cfg Config) (*ServerBackend, *clock, *advHookStore) {
	t.Helper()
	clk := newClock()
	mem := memstore.New(memstore.Options{})
	t.Cleanup(func() { mem.Close() })
	st := &advHookStore{Store: mem}
	b := newBackend(t, cfg, st)
	b.now = clk.now
	return b, clk, st
}

func advLoad(t *testing.T, b *ServerBackend, id string) *Session {
	t.Helper()
	s := b.LoadFromRequest(context.Background(), []byte(b.CookieName()+"="+id))
	if err := s.Load(); err != nil {
		t.Fatal(err)
	}
	return s
}

func advFinish(b *ServerBackend, s *Session) (*sink, error) {
	out := &sink{}
	err := b.StoreInResponse(s, out)
	b.Release(s)
	return out, err
}

// a request in flight that only reads, finishing after a
// concurrent request of the same client rotated the id (RotationInterval),
// renewed it (RenewID at login) or extended it, answers with a Set-Cookie
// that EXPIRES the session cookie. The browser applies responses in
// arrival order: if this one lands after the one that carried the new id,
// the client is logged out. README: "a request whose write is refused this
// way answers as if it had come before the end: no error, its changes
// dropped, no Set-Cookie".
func TestReadInFlightExpiresTheNewCookie(t *testing.T) {
	cases := []struct {
		name string
		cfg  Config
		// end is the concurrent request; it returns the id its response set.
		end func(t *testing.T, b *ServerBackend, id string) string
		// advance before both loads
		advance time.Duration
	}{
		{"rotation/lock=off", Config{RotationInterval: time.Hour, MaxAge: 24 * time.Hour}, func(t *testing.T, b *ServerBackend, id string) string {
			out, err := request(t, b, id, func(s *Session) { s.Len() })
			if err != nil {
				t.Fatal(err)
			}
			return out.cookieValue(t, "session")
		}, 2 * time.Hour},
		{"RenewID+ExtendOnAccess/lock=off", Config{ExtendOnAccess: true, MaxAge: 24 * time.Hour}, func(t *testing.T, b *ServerBackend, id string) string {
			out, err := request(t, b, id, func(s *Session) { s.RenewID(); s.SetUser("alice2") })
			if err != nil {
				t.Fatal(err)
			}
			return out.cookieValue(t, "session")
		}, 0},
		{"RenewID+IdleTimeout/lock=off", Config{IdleTimeout: time.Hour, ExtensionDelay: time.Minute, MaxAge: 24 * time.Hour}, func(t *testing.T, b *ServerBackend, id string) string {
			out, err := request(t, b, id, func(s *Session) { s.RenewID(); s.SetUser("alice2") })
			if err != nil {
				t.Fatal(err)
			}
			return out.cookieValue(t, "session")
		}, 2 * time.Minute},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b, clk, _ := advSetup(t, c.cfg)
			id := login(t, b, "alice")
			clk.advance(c.advance)
			a := advLoad(t, b, id) // e.g. an image/XHR request of the same page
			next := c.end(t, b, id)
			out, err := advFinish(b, a)
			if err != nil {
				t.Fatalf("in-flight read: %v", err)
			}
			if line, ok := out.cookies["session"]; ok && strings.Contains(line, "Max-Age=0") {
				t.Errorf("the in-flight read answered %q: arriving after the response that set %q, it logs the client out", line, next[:6]+"…")
			}
			if !alive(t, b, next) {
				t.Errorf("new id not alive")
			}
		})
	}
}

// ServerBackend.Set(id, values) that loaded the session before a
// concurrent DestroyUserSessions writes it back, still bound to the user
// and under the same id (the logged-out client's cookie works again), and
// outside the user's set, so that a second DestroyUserSessions misses it.
func TestByIDSetResurrectsAfterLogoutEverywhere(t *testing.T) {
	for _, lock := range []bool{false, true} {
		t.Run(map[bool]string{false: "lock=off", true: "lock=on"}[lock], func(t *testing.T) {
			b, _, st := advSetup(t, Config{Lock: lock, MaxAge: time.Hour})
			ctx := context.Background()
			id := login(t, b, "alice")
			var n int
			var derr error
			// The admin's Set loads the session; before its save, the user
			// logs out everywhere.
			st.arm("swap", "", func() { n, derr = b.DestroyUserSessions(ctx, "alice") })
			// Ended under it, Set writes nothing and says so.
			if err := b.Set(ctx, id, map[string]any{"note": "x"}); !errors.Is(err, store.ErrNotFound) {
				t.Fatalf("Set on a session logged out meanwhile: %v, want store.ErrNotFound", err)
			}
			if derr != nil || n != 1 {
				t.Fatalf("DestroyUserSessions = %d, %v", n, derr)
			}
			user := ""
			request(t, b, id, func(s *Session) { user = s.User() })
			if user == "alice" {
				t.Errorf("after DestroyUserSessions returned, the logged-out cookie opens a session bound to alice again")
			}
			n2, _ := b.DestroyUserSessions(ctx, "alice")
			request(t, b, id, func(s *Session) { user = s.User() })
			if user == "alice" {
				t.Errorf("a second DestroyUserSessions (n=%d) does not reach it: bound to alice, not in alice's set", n2)
			}
		})
	}
}

// lock off, a re-binding alice→bob and a concurrent save of the
// same session by a request that loaded it as alice's. The second request
// writes last (alice's record) but the re-binding request's
// unindex(alice) lands after it: the live session is bound to alice and
// missing from alice's set, and its record says the set covers it, so
// later saves do not re-add it. DestroyUserSessions(alice) misses it.
func TestRebindRaceHidesSessionFromLogoutEverywhere(t *testing.T) {
	b, _, st := advSetup(t, Config{MaxAge: time.Hour})
	ctx := context.Background()
	id := login(t, b, "alice")
	r1 := advLoad(t, b, id) // switches user to bob
	r2 := startRequest(t, b, id)
	if err := r1.SetUser("bob"); err != nil {
		t.Fatal(err)
	}
	// r1 saves (AddMember bob, Swap); just before its RemoveMember(alice),
	// r2 finishes.
	st.arm("removemember", "user:alice", func() {
		if _, err := r2.finish(); err != nil {
			t.Errorf("r2: %v", err)
		}
	})
	if _, err := advFinish(b, r1); err != nil {
		t.Fatal(err)
	}
	user := ""
	request(t, b, id, func(s *Session) { user = s.User() })
	if user != "alice" {
		t.Skipf("last writer is %q", user)
	}
	// Later activity of that session (saves) does not put it back.
	request(t, b, id, func(s *Session) { s.SetInt64("m", 1) })
	n, err := b.DestroyUserSessions(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	request(t, b, id, func(s *Session) { user = s.User() })
	if user == "alice" {
		t.Errorf("DestroyUserSessions(alice) = %d: a live session bound to alice survived it", n)
	}
}

// Lock on, a holder whose lease ran out and whose request only
// needs an idle extension (or rotation) re-reads the record and writes it
// back with new bookkeeping; if another holder's save lands between that
// re-read and the write, the refresh's retry loop writes the re-read copy
// over it (no ErrConflict): the other request's acknowledged save is lost.
func TestExpiredHolderRefreshOverwritesNewerSave(t *testing.T) {
	for _, name := range []string{"extension", "rotation"} {
		t.Run(name, func(t *testing.T) {
			const lease = 50 * time.Millisecond
			cfg := Config{Lock: true, LockLease: lease, LockWait: 2 * time.Second, MaxAge: 24 * time.Hour}
			if name == "extension" {
				cfg.IdleTimeout, cfg.ExtensionDelay = time.Hour, time.Minute
			} else {
				cfg.RotationInterval = time.Hour
			}
			b, clk, st := advSetup(t, cfg)
			id := login(t, b, "alice")
			if name == "rotation" {
				clk.advance(2 * time.Hour)
			} else {
				clk.advance(2 * time.Minute)
			}
			late := advLoad(t, b, id) // holds the lock, then overruns it
			late.Len()
			time.Sleep(2 * lease)
			var bErr error
			st.arm("swap", "", func() {
				// Another request, taking the lock the late one lost.
				_, bErr = request(t, b, id, func(s *Session) {
					if err := s.SetInt64("n", 42); err != nil {
						t.Error(err)
					}
				})
			})
			_, lateErr := advFinish(b, late)
			if bErr != nil {
				t.Fatalf("the next holder's save: %v", bErr)
			}
			var n int64
			cur := id
			request(t, b, cur, func(s *Session) { n, _ = s.GetInt64("n") })
			t.Logf("late holder: %v", lateErr)
			if n != 42 && !errors.Is(lateErr, ErrConflict) {
				t.Errorf("n = %d: the next holder's acknowledged save (n=42) was overwritten by a holder past its lease, which got no ErrConflict", n)
			}
		})
	}
}

// Lock on, a ReadOnly request that writes anyway (documented as
// unprotected) while another request holds the lock: the holder's save is
// refused with ErrConflict, and the ReadOnly request's acknowledged write
// stands (it is not lost under the holder's stale copy).
func TestReadOnlyWriterGivesHolderErrConflict(t *testing.T) {
	b, _, _ := advSetup(t, Config{Lock: true, LockLease: time.Minute, MaxAge: time.Hour})
	id := login(t, b, "alice")
	holder := startRequest(t, b, id) // lock held, lease 1 minute
	_, err := request(t, b, id, func(s *Session) { s.SetReadOnly(); s.SetString("seen", "yes") })
	if err != nil {
		t.Fatal(err)
	}
	if _, err := holder.finish(); !errors.Is(err, ErrConflict) {
		t.Errorf("the lock holder's save over the ReadOnly write: %v, want ErrConflict", err)
	}
	request(t, b, id, func(s *Session) {
		if v, _ := s.GetString("seen"); v != "yes" {
			t.Error("the ReadOnly request's acknowledged write was lost")
		}
	})
}

// Delete(id) of an id rotated out within its grace window deletes
// only the forward: the session Get(id) just returned stays alive.
func TestByIDDeleteOfRotatedOutID(t *testing.T) {
	b, clk, _ := advSetup(t, Config{RotationInterval: time.Hour, MaxAge: 24 * time.Hour})
	ctx := context.Background()
	old := login(t, b, "alice")
	clk.advance(2 * time.Hour)
	out, _ := request(t, b, old, func(s *Session) { s.Len() })
	cur := out.cookieValue(t, "session")
	if _, err := b.Get(ctx, old); err != nil {
		t.Fatalf("Get(old) within grace: %v", err)
	}
	if err := b.Delete(ctx, old); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Get(ctx, cur); err == nil {
		t.Errorf("Delete(old id) returned nil, but the session Get(old id) returned is still alive under the rotated id")
	}
}

// A variant with the lock on: a ReadOnly request (the documented
// way to keep parallel reads from queueing) in flight while another
// request rotates the id.
func TestReadOnlyInFlightExpiresRotatedCookie(t *testing.T) {
	b, clk, _ := advSetup(t, Config{Lock: true, RotationInterval: time.Hour, MaxAge: 24 * time.Hour})
	id := login(t, b, "alice")
	clk.advance(2 * time.Hour)
	a := b.LoadFromRequest(context.Background(), []byte(b.CookieName()+"="+id))
	a.SetReadOnly()
	a.Len()
	out, err := request(t, b, id, func(s *Session) { s.Len() }) // rotates
	if err != nil {
		t.Fatal(err)
	}
	next := out.cookieValue(t, "session")
	out, err = advFinish(b, a)
	if err != nil {
		t.Fatal(err)
	}
	if line := out.cookies["session"]; strings.Contains(line, "Max-Age=0") {
		t.Errorf("the read-only request in flight expires the cookie (%q) that the rotation just set to %s…", line, next[:6])
	}
}

// A variant: ServerBackend.Set racing with a rotation forks the
// session (the rotated-out id becomes a full session again, beside the
// new one), and racing with RenewID brings the retired id back.
func TestByIDSetRacingRotationForks(t *testing.T) {
	b, clk, st := advSetup(t, Config{RotationInterval: time.Hour, RotationGrace: 10 * time.Second, MaxAge: 24 * time.Hour})
	ctx := context.Background()
	old := login(t, b, "alice")
	clk.advance(2 * time.Hour)
	var cur string
	st.arm("swap", "", func() {
		out, err := request(t, b, old, func(s *Session) { s.Len() })
		if err != nil {
			t.Error(err)
			return
		}
		cur = out.cookieValue(t, "session")
	})
	if err := b.Set(ctx, old, map[string]any{"n": 7}); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Set on a session rotated meanwhile: %v, want store.ErrNotFound", err)
	}
	// The old key holds the rotation's forward, not a session of its own
	// beside the new one (a fork).
	if rec, err := b.calls.Get(ctx, b.storeKey([]byte(old))); err == nil && (len(rec) == 0 || rec[0] != forwardMarker) {
		t.Errorf("fork: the rotated-out id holds a session record again (%d bytes) beside the new id %q", len(rec), cur)
	}
}

// A login (RenewID + SetUser(bob)) on a session of alice's, racing with
// DestroyUserSessions(alice): the session it loaded was alice's and is
// ended, so the login is dropped (no error, no cookie, no session for bob:
// the client logs in again). What must not happen is alice's session
// surviving under bob's name or its own.
func TestLoginDroppedByLogoutEverywhereOfPreviousUser(t *testing.T) {
	for _, lock := range []bool{false, true} {
		b, _, st := advSetup(t, Config{Lock: lock, MaxAge: time.Hour})
		ctx := context.Background()
		id := login(t, b, "alice")
		st.arm("swap", "", func() { b.DestroyUserSessions(ctx, "alice") })
		out, err := request(t, b, id, func(s *Session) {
			s.RenewID()
			s.SetUser("bob")
		})
		if err != nil {
			t.Fatal(err)
		}
		if bob, _ := b.UserSessions(ctx, "bob"); len(bob) != 0 || len(out.cookies) != 0 {
			t.Errorf("lock=%v: the login over a session logged out meanwhile: bob has %d sessions, cookies %v; want none", lock, len(bob), out.cookies)
		}
		if alive(t, b, id) {
			t.Errorf("lock=%v: alice's session survived", lock)
		}
	}
}

// A request in flight that loaded a session just before its idle deadline
// and saves just after: DestroyUserSessions, run in between by an instance
// whose clock is a few seconds ahead (or on Badger, whose expiry is in
// whole seconds), takes the record for expired and leaves it, and the
// save (the record is unchanged, so the Swap succeeds) extends it: a
// session of the user alive after log out everywhere returned.
func TestIdleBoundaryRequestSurvivesLogoutEverywhere(t *testing.T) {
	clk := newClock()
	mem := memstore.New(memstore.Options{Now: clk.now})
	t.Cleanup(func() { mem.Close() })
	cfg := Config{IdleTimeout: time.Hour, ExtensionDelay: time.Minute}
	b := newBackend(t, cfg, mem)
	b.now = clk.now
	other := newBackend(t, cfg, mem) // another instance, clock 5s ahead
	other.now = func() time.Time { return clk.now().Add(5 * time.Second) }
	ctx := context.Background()
	id := login(t, b, "alice")
	clk.advance(time.Hour - 3*time.Second)
	r := startRequest(t, b, id)
	n, err := other.DestroyUserSessions(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	out, err := r.finish()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("n=%d cookies=%v", n, out.cookies)
	clk.advance(10 * time.Minute)
	if alive(t, b, id) {
		t.Errorf("DestroyUserSessions = %d, and the session a request in flight loaded is alive after it", n)
	}
}

// advMembersHook runs hook after every Members listing.
type advMembersHook struct {
	store.Store
	hook func()
}

func (h *advMembersHook) Members(ctx context.Context, set string) ([]string, error) {
	m, err := h.Store.Members(ctx, set)
	if h.hook != nil {
		h.hook()
	}
	return m, err
}

// DestroyUserSessions chases ids that change while it runs: a
// session whose id changes once per listing (here a RenewID request right
// after each listing; in TestStressLogoutEverywhereVsRenewID on
// Redis, two clients per session doing RenewID in a loop) keeps it
// listing forever: it never reaches the session, never returns (with a
// context that never ends), and the session lives on.
func TestLogoutEverywhereOutrunByIDChanges(t *testing.T) {
	mem := memstore.New(memstore.Options{})
	t.Cleanup(func() { mem.Close() })
	st := &advMembersHook{Store: mem}
	b := newBackend(t, Config{MaxAge: time.Hour}, st)
	ctx := context.Background()
	id := login(t, b, "alice")
	listings := 0
	st.hook = func() {
		listings++
		if listings > 1000 {
			return // let it end, to look at the outcome
		}
		out, err := request(t, b, id, func(s *Session) { s.RenewID() })
		if err == nil {
			if v, ok := out.cookies["session"]; ok && !strings.Contains(v, "Max-Age=0") {
				id = out.cookieValue(t, "session")
			}
		}
	}
	n, err := b.DestroyUserSessions(ctx, "alice")
	st.hook = nil
	user := ""
	request(t, b, id, func(s *Session) { user = s.User() })
	t.Logf("DestroyUserSessions = %d, %v after %d listings; session user now %q", n, err, listings, user)
	if listings > 1000 {
		t.Errorf("DestroyUserSessions listed %d times: it only returned because the id changes stopped", listings)
	}
	if user == "alice" {
		t.Errorf("the session whose id kept changing was never reached")
	}
}

// advFnStore calls optional hooks around Get, Set and Members.
type advFnStore struct {
	store.Store
	onGet     func(key string)
	onSet     func(key string)
	orderMems func(m []string) []string
}

func (h *advFnStore) Get(ctx context.Context, k string) ([]byte, error) {
	if f := h.onGet; f != nil {
		f(k)
	}
	return h.Store.Get(ctx, k)
}

func (h *advFnStore) Set(ctx context.Context, k string, v []byte, ttl time.Duration) error {
	if f := h.onSet; f != nil {
		f(k)
	}
	return h.Store.Set(ctx, k, v, ttl)
}

func (h *advFnStore) Members(ctx context.Context, set string) ([]string, error) {
	m, err := h.Store.Members(ctx, set)
	if f := h.orderMems; f != nil && err == nil {
		m = f(m)
	}
	return m, err
}

// a session of alice's whose id changes (RenewID) while
// DestroyUserSessions(alice) runs survives it. The listing names both the
// old key and the new one (the new joins the set first); the new one is
// visited before its record is written (nothing there: skipped, but marked
// seen), the old one after it was retired (nothing there either). The next
// listing brings nothing unseen, so DestroyUserSessions returns, and the
// session lives on under its new id. Members is "in no particular order":
// the memory store's is a map's, Badger's the keys' byte order.
func TestRenewedDuringLogoutEverywhereSurvives(t *testing.T) {
	mem := memstore.New(memstore.Options{})
	t.Cleanup(func() { mem.Close() })
	st := &advFnStore{Store: mem}
	b := newBackend(t, Config{MaxAge: time.Hour}, st)
	ctx := context.Background()
	id := login(t, b, "alice")
	k0 := b.storeKey([]byte(id))
	// The new key first, as a map or byte order may well list it.
	st.orderMems = func(m []string) []string {
		out := []string{}
		for _, k := range m {
			if k != k0 {
				out = append(out, k)
			}
		}
		for _, k := range m {
			if k == k0 {
				out = append(out, k)
			}
		}
		return out
	}
	reachedK0, rDone := make(chan struct{}), make(chan struct{})
	var dusN int
	var dusErr error
	dusDone := make(chan struct{})
	st.onSet = func(k1 string) {
		st.onSet = nil
		// The RenewID request is about to write its new record (k1 is in
		// alice's set already). Log out everywhere starts now.
		go func() {
			defer close(dusDone)
			dusN, dusErr = b.DestroyUserSessions(ctx, "alice")
		}()
		<-reachedK0 // it has visited k1 (nothing yet) and reached k0
	}
	// A request (say a step-up "sudo", which calls RenewID) loaded the
	// session before the logout began.
	s := b.LoadFromRequest(ctx, []byte(b.CookieName()+"="+id))
	s.Len()
	st.onGet = func(k string) {
		if k == k0 {
			select {
			case <-reachedK0:
			default:
				close(reachedK0)
				<-rDone // the RenewID request completes meanwhile
			}
		}
	}
	s.RenewID()
	s.SetString("sudo", "yes")
	out := &sink{}
	if err := b.StoreInResponse(s, out); err != nil {
		t.Fatal(err)
	}
	b.Release(s)
	close(rDone)
	<-dusDone
	st.onGet = nil
	if dusErr != nil {
		t.Fatal(dusErr)
	}
	if len(out.cookies) == 0 {
		return // the RenewID took itself back: nothing survives
	}
	next := out.cookieValue(t, "session")
	user := ""
	request(t, b, next, func(s *Session) { user = s.User() })
	if user == "alice" {
		t.Errorf("DestroyUserSessions(alice) returned %d; alice's session renewed while it ran is alive under its new id", dusN)
	}
}

// TestLockHolderFencedAgainstReadOnlyRotation: a SetReadOnly request that
// changes a session due for rotation saves it, without the lock, and the
// lock holder's save is then refused with ErrConflict, as after any
// read-only write; it does not rotate the session, which would end the
// holder's session without an error.
func TestLockHolderFencedAgainstReadOnlyRotation(t *testing.T) {
	b, clk, _ := rvSetup(t, Config{Lock: true, RotationInterval: time.Hour, MaxAge: 24 * time.Hour})
	out, _ := request(t, b, "", func(s *Session) { s.SetInt("n", 1) })
	id := out.cookieValue(t, "session")
	clk.advance(2 * time.Hour)
	holder := advLoad(t, b, id) // holds the session lock
	holder.SetInt("paid", 1)
	if _, err := request(t, b, id, func(s *Session) { s.SetReadOnly(); s.SetInt("seen", 1) }); err != nil {
		t.Fatal(err)
	}
	if _, err := advFinish(b, holder); !errors.Is(err, ErrConflict) {
		t.Fatalf("lock holder after a read-only write: %v, want ErrConflict", err)
	}
}
