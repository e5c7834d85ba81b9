package kvsession

import (
	"context"
	"testing"
	"time"

	"github.com/kvsession/kvsession/store/memstore"
)

// rvSetup is a backend on the memory store with a test clock.
func rvSetup(t *testing.T, cfg Config) (*ServerBackend, *clock, *memstore.Store) {
	clk := newClock()
	st := memstore.New(memstore.Options{Now: clk.now})
	t.Cleanup(func() { st.Close() })
	b := newBackend(t, cfg, st)
	b.now = clk.now
	return b, clk, st
}

// rvLogin makes a session bound to user and returns its id.
func rvLogin(t *testing.T, b *ServerBackend, user string) string {
	out, err := request(t, b, "", func(s *Session) { s.Set("n", 1); s.SetUser(user) })
	if err != nil {
		t.Fatal(err)
	}
	return out.cookieValue(t, "session")
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

// Clear then Set keeps the id, so it must keep the creation time: the same
// id must not get a fresh AbsoluteTimeout.
func TestClearKeepsTheAbsoluteDeadline(t *testing.T) {
	b, clk, _ := rvSetup(t, Config{AbsoluteTimeout: time.Hour, MaxAge: 2 * time.Hour})
	out, _ := request(t, b, "", func(s *Session) { s.Set("n", 1) })
	id := out.cookieValue(t, "session")
	clk.advance(50 * time.Minute)
	out, _ = request(t, b, id, func(s *Session) { s.Clear(); s.Set("flash", "bye") })
	if v, ok := out.cookies["session"]; ok {
		t.Logf("cookie after clear+set: %s", v)
	}
	clk.advance(30 * time.Minute) // 80 min after creation
	alive := false
	request(t, b, id, func(s *Session) { alive = s.Has("flash") })
	if alive {
		t.Error("same id alive 80min after creation with AbsoluteTimeout 1h")
	}
}

func TestSetByRotatedOutIDDoesNotFork(t *testing.T) {
	b, clk, _ := rvSetup(t, Config{RotationInterval: time.Minute, MaxAge: time.Hour, RotationGrace: 30 * time.Second})
	ctx := context.Background()
	out, _ := request(t, b, "", func(s *Session) { s.Set("n", 1) })
	old := out.cookieValue(t, "session")
	clk.advance(2 * time.Minute)
	out, _ = request(t, b, old, func(s *Session) { s.Len() })
	cur := out.cookieValue(t, "session")
	if cur == old {
		t.Fatal("no rotation")
	}
	if err := b.Set(ctx, old, map[string]any{"n": 2}); err != nil {
		t.Fatal(err)
	}
	clk.advance(time.Minute) // past grace
	aliveOld := false
	request(t, b, old, func(s *Session) { aliveOld = s.Len() > 0 })
	aliveCur := false
	request(t, b, cur, func(s *Session) { aliveCur = s.Len() > 0 })
	if aliveOld && aliveCur {
		t.Error("Set(old id) during grace made the rotated-out id a full session again (fork)")
	}
}

// A re-binding whose save fails leaves the record bound to the old user: it
// must stay in the old user's set.
type failSetStore struct {
	*memstore.Store
	fail bool
}

func (f *failSetStore) Set(ctx context.Context, k string, v []byte, ttl time.Duration) error {
	if f.fail && len(k) == len("")+43 {
		return errBoom
	}
	return f.Store.Set(ctx, k, v, ttl)
}

func (f *failSetStore) Swap(ctx context.Context, k string, old, v []byte, ttl time.Duration) (bool, error) {
	if f.fail && len(k) == len("")+43 {
		return false, errBoom
	}
	return f.Store.Swap(ctx, k, old, v, ttl)
}

func TestFailedRebindKeepsTheOldIndexEntry(t *testing.T) {
	clk := newClock()
	st := &failSetStore{Store: memstore.New(memstore.Options{Now: clk.now})}
	b := newBackend(t, Config{MaxAge: time.Hour}, st)
	b.now = clk.now
	id := rvLogin(t, b, "ada")
	st.fail = true
	_, err := request(t, b, id, func(s *Session) { s.SetUser("bob") })
	st.fail = false
	if err == nil {
		t.Fatal("expected save error")
	}
	n, _ := b.DestroyUserSessions(context.Background(), "ada")
	alive := false
	request(t, b, id, func(s *Session) { alive = s.User() == "ada" })
	if alive {
		t.Errorf("ada's session survived log-out-everywhere (n=%d) after a failed rebind", n)
	}
}
