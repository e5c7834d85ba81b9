package kvsession

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
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
