package kvsession

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/kvsession/kvsession/store"
	"github.com/kvsession/kvsession/store/badgerstore"
	"github.com/kvsession/kvsession/store/memstore"
	"github.com/kvsession/kvsession/store/storetest/faultstore"
)

// TestLockLosesNoIncrement is the proof: N requests increment one
// session's counter at once, and it ends at exactly N.
func TestLockLosesNoIncrement(t *testing.T) {
	stores := map[string]func(t *testing.T) store.Store{
		"memory": func(t *testing.T) store.Store { return memstore.New(memstore.Options{}) },
		"badger": func(t *testing.T) store.Store {
			st, err := badgerstore.Open(badgerstore.Options{Dir: t.TempDir()})
			if err != nil {
				t.Fatal(err)
			}
			return st
		},
		"store lock": func(t *testing.T) store.Store {
			// A store.Locker, as a store shared by several processes
			// has, so the backend's polling path is exercised.
			return faultstore.NewShared(memstore.Options{})
		},
	}
	const n = 40
	for name, open := range stores {
		t.Run(name, func(t *testing.T) {
			st := open(t)
			defer st.Close()
			b := newBackend(t, Config{Lock: true}, st)
			out, _ := request(t, b, "", func(s *Session) { s.Set("n", 0) })
			id := out.cookieValue(t, "session")
			var wg sync.WaitGroup
			errs := make(chan error, n)
			for range n {
				wg.Add(1)
				go func() {
					defer wg.Done()
					s := b.LoadFromRequest(context.Background(), []byte("session="+id))
					v, _ := s.GetInt("n")
					if err := s.Set("n", v+1); err != nil {
						errs <- err
					}
					if err := b.StoreInResponse(s, &sink{}); err != nil {
						errs <- err
					}
					b.Release(s)
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Fatal(err)
			}
			request(t, b, id, func(s *Session) {
				if v, _ := s.GetInt("n"); v != n {
					t.Fatalf("counter %d after %d parallel increments", v, n)
				}
			})
		})
	}
}

func TestLockWaitAndReadOnly(t *testing.T) {
	st := memstore.New(memstore.Options{})
	defer st.Close()
	b := newBackend(t, Config{Lock: true, LockWait: 20 * time.Millisecond}, st)
	out, _ := request(t, b, "", func(s *Session) { s.Set("n", 1) })
	h := []byte("session=" + out.cookieValue(t, "session"))

	holder := b.LoadFromRequest(context.Background(), h)
	if err := holder.Load(); err != nil {
		t.Fatal(err)
	}
	// A second writer waits LockWait, then fails with a clear error.
	s := b.LoadFromRequest(context.Background(), h)
	err := s.Load()
	if !errors.Is(err, ErrLockTimeout) || !errors.Is(b.StoreInResponse(s, &sink{}), ErrLockTimeout) {
		t.Fatalf("load while locked: %v", err)
	}
	b.Release(s)
	// A read-only request does not wait.
	r := b.LoadFromRequest(context.Background(), h)
	if r.IsReadOnly() {
		t.Fatal("a fresh request reports ReadOnly")
	}
	r.SetReadOnly()
	if v, _ := r.GetInt("n"); v != 1 || r.Err() != nil || !r.IsReadOnly() {
		t.Fatalf("read-only load: %d, %v, IsReadOnly() = %v", v, r.Err(), r.IsReadOnly())
	}
	b.Release(r)
	// A pooled session forgets the last request's declaration.
	if r = b.LoadFromRequest(context.Background(), h); r.IsReadOnly() {
		t.Fatal("ReadOnly survived Release")
	}
	b.Release(r)
	// Release without StoreInResponse frees the lock too.
	b.Release(holder)
	s = b.LoadFromRequest(context.Background(), h)
	if err := s.Load(); err != nil {
		t.Fatalf("after release: %v", err)
	}
	b.Release(s)
}

func TestLockLeaseFreesACrashedHolder(t *testing.T) {
	st := memstore.New(memstore.Options{})
	defer st.Close()
	b := newBackend(t, Config{Lock: true, LockLease: 30 * time.Millisecond, LockWait: time.Second}, st)
	out, _ := request(t, b, "", func(s *Session) { s.Set("n", 1) })
	h := []byte("session=" + out.cookieValue(t, "session"))
	crashed := b.LoadFromRequest(context.Background(), h)
	if err := crashed.Load(); err != nil {
		t.Fatal(err)
	}
	// crashed is never stored nor released.
	s := b.LoadFromRequest(context.Background(), h)
	if err := s.Load(); err != nil {
		t.Fatalf("lock of a crashed holder not taken over after its lease: %v", err)
	}
	b.Release(s)
}

func TestCookieBackendRefusesLock(t *testing.T) {
	var ce *ConfigError
	if _, err := NewCookie(Config{Secrets: [][]byte{keyA}, Lock: true}, nil); !errors.As(err, &ce) || ce.Field != "Lock" {
		t.Fatalf("err %v", err)
	}
}

// TestReadOnlyExtensionKeepsLockedWrites: read-only requests read without
// the lock, so when one must extend the session (here: every time) it must
// not write back a stale copy over a locked writer's save.
func TestReadOnlyExtensionKeepsLockedWrites(t *testing.T) {
	st := memstore.New(memstore.Options{})
	defer st.Close()
	b := newBackend(t, Config{Lock: true, IdleTimeout: time.Hour, ExtensionDelay: time.Nanosecond}, st)
	out, _ := request(t, b, "", func(s *Session) { s.Set("n", 0) })
	h := []byte("session=" + out.cookieValue(t, "session"))
	const n = 30
	var wg sync.WaitGroup
	for i := range 2 * n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := b.LoadFromRequest(context.Background(), h)
			if i%2 == 0 {
				s.SetReadOnly()
				s.GetInt("n")
			} else {
				v, _ := s.GetInt("n")
				s.Set("n", v+1)
			}
			if err := b.StoreInResponse(s, &sink{}); err != nil {
				t.Error(err)
			}
			b.Release(s)
		}()
	}
	wg.Wait()
	request(t, b, string(h[len("session="):]), func(s *Session) {
		if v, _ := s.GetInt("n"); v != n {
			t.Fatalf("counter %d after %d locked increments beside read-only extensions", v, n)
		}
	})
}

// TestDestroyUserSessionsFromOwnSession: logging out everywhere from a
// request that holds one of the user's sessions must not wait for itself.
func TestDestroyUserSessionsFromOwnSession(t *testing.T) {
	st := memstore.New(memstore.Options{})
	defer st.Close()
	b := newBackend(t, Config{Lock: true, LockWait: 50 * time.Millisecond}, st)
	out, _ := request(t, b, "", func(s *Session) { s.SetUser("ada") })
	request(t, b, "", func(s *Session) { s.SetUser("ada") })
	request(t, b, out.cookieValue(t, "session"), func(s *Session) {
		if s.User() != "ada" {
			t.Fatal("not logged in")
		}
		n, err := b.DestroyUserSessions(context.Background(), "ada")
		if err != nil || n != 2 {
			t.Fatalf("DestroyUserSessions = %d, %v", n, err)
		}
		s.Destroy()
	})
}

// A request whose context is canceled (its client hung up) still releases
// a store's session lock: the next request must not wait out the lease.
func TestStoreLockReleasedWhenTheRequestIsCanceled(t *testing.T) {
	// Shared's Unlock gives up on an ended context, as a networked
	// store's does.
	st := faultstore.NewShared(memstore.Options{})
	defer st.Close()
	b := newBackend(t, Config{Lock: true, LockLease: time.Hour, LockWait: 100 * time.Millisecond}, st)
	out, err := request(t, b, "", func(s *Session) { s.Set("n", 1) })
	if err != nil {
		t.Fatal(err)
	}
	id := out.cookieValue(t, "session")
	ctx, cancel := context.WithCancel(context.Background())
	s := b.LoadFromRequest(ctx, []byte("session="+id))
	if s.Len() != 1 {
		t.Fatal("not loaded")
	}
	cancel()
	b.StoreInResponse(s, &sink{})
	b.Release(s)
	if _, err := request(t, b, id, func(s *Session) { s.Len() }); err != nil {
		t.Fatalf("the next request: %v (the canceled one kept the lock)", err)
	}
}

// TestLockFollowsForwardWithLentKeys: an old id's load takes the lock on
// its key, then, following the forward, on the new id's key, which the
// session builds in the same buffer. The lock table must keep a key of its
// own, or the first lock is released under the wrong name and leaks: the
// next request with the old id then waits out LockWait.
func TestLockFollowsForwardWithLentKeys(t *testing.T) {
	clk := newClock()
	st := memstore.New(memstore.Options{Now: clk.now})
	defer st.Close()
	b := newBackend(t, Config{Lock: true, LockWait: 200 * time.Millisecond, RotationInterval: time.Hour}, st)
	b.now = clk.now
	out, err := request(t, b, "", func(s *Session) { s.SetInt("n", 1) })
	if err != nil {
		t.Fatal(err)
	}
	oldID := out.cookieValue(t, "session")
	clk.advance(time.Hour)
	out, err = request(t, b, oldID, func(s *Session) { s.GetInt("n") }) // rotates, leaving a forward
	if err != nil {
		t.Fatal(err)
	}
	newID := out.cookieValue(t, "session")
	if newID == oldID {
		t.Fatal("id not rotated")
	}
	for i, id := range []string{oldID, oldID, newID, oldID} {
		_, err := request(t, b, id, func(s *Session) {
			n, ok := s.GetInt("n")
			if err := s.Err(); err != nil || !ok || n != 1+i {
				t.Fatalf("request %d: n=%d %v, %v", i, n, ok, err)
			}
			s.SetInt("n", n+1)
		})
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
	}
}
