package kvsession

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kvsession/kvsession/store"
	"github.com/kvsession/kvsession/store/memstore"
)

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
