package storetest

import (
	"context"
	"testing"
	"time"

	"github.com/kvsession/kvsession/store"
)

// The subtests of store.Locker. With Config.Lock, kvsession holds a
// session's lock in the store from the session's load to its save, so
// that requests in several processes take turns: a lock that two holders
// can take at once, that a stale holder can release, that never runs out,
// or that shares a key with the session's record would each lose or
// corrupt sessions. The calls tables (InvalidArguments, CanceledContext,
// Closed, CloseWhileBusy) hold TryLock and Unlock to the rules of every
// other method.

// lockCalls returns the store's calls, skipping the test when the store is
// no Locker: whether to be one is the store's choice.
func lockCalls(t *testing.T, s store.Store) store.Calls {
	t.Helper()
	c := store.Resolve(s)
	if c.TryLock == nil {
		t.Skip("store is no store.Locker")
	}
	return c
}

// tryLock calls TryLock and fails the test on an error.
func tryLock(t *testing.T, c store.Calls, key string, lease time.Duration) (string, bool) {
	t.Helper()
	token, ok, err := c.TryLock(t.Context(), key, lease)
	if err != nil {
		t.Fatalf("TryLock(%q, %v): %v", key, lease, err)
	}
	return token, ok
}

// mustLock takes the lock on key, which nobody holds.
func mustLock(t *testing.T, c store.Calls, key string, lease time.Duration) string {
	t.Helper()
	token, ok := tryLock(t, c, key, lease)
	if !ok {
		t.Fatalf("TryLock(%q) of a free lock = false, want true", key)
	}
	return token
}

// wantHeld checks that the lock on key is taken: TryLock fails.
func wantHeld(t *testing.T, c store.Calls, key, why string) {
	t.Helper()
	if token, ok := tryLock(t, c, key, lockLease); ok {
		t.Errorf("TryLock(%q) %s = true, want false: two holders at once", key, why)
		unlock(t, c, key, token)
	}
}

func unlock(t *testing.T, c store.Calls, key, token string) {
	t.Helper()
	if err := c.Unlock(t.Context(), key, token); err != nil {
		t.Errorf("Unlock(%q): %v", key, err)
	}
}

func (r *runner) testLocker(t *testing.T) {
	s := r.open(t)
	c := lockCalls(t, s)
	ctx := t.Context()

	t.Run("OneHolder", func(t *testing.T) {
		first := mustLock(t, c, "one-holder", lockLease)
		wantHeld(t, c, "one-holder", "while it is held")
		wantHeld(t, c, "one-holder", "again while it is held")
		mustLock(t, c, "another-key", lockLease) // locks are per key
		unlock(t, c, "one-holder", first)
		second := mustLock(t, c, "one-holder", lockLease)
		if second == first {
			t.Errorf("TryLock gave the next holder the token of the last (%q): a late Unlock of the last would release it", first)
		}
		unlock(t, c, "one-holder", second)
		unlock(t, c, "one-holder", second) // a lock no one holds: nothing to do
		mustLock(t, c, "one-holder", lockLease)
	})

	t.Run("WrongToken", func(t *testing.T) {
		token := mustLock(t, c, "wrong-token", lockLease)
		if err := c.Unlock(ctx, "wrong-token", token+"x"); err != nil {
			t.Logf("Unlock with a wrong token: %v (nothing to do; an error is allowed)", err)
		}
		wantHeld(t, c, "wrong-token", "after Unlock with a wrong token")
		// The token of the lock on one key does not release another's.
		other := mustLock(t, c, "wrong-key", lockLease)
		_ = c.Unlock(ctx, "wrong-key", token)
		wantHeld(t, c, "wrong-key", "after Unlock with another key's token")
		// A holder that released the lock cannot release its next holder's.
		unlock(t, c, "wrong-token", token)
		next := mustLock(t, c, "wrong-token", lockLease)
		_ = c.Unlock(ctx, "wrong-token", token)
		wantHeld(t, c, "wrong-token", "after a former holder's Unlock")
		unlock(t, c, "wrong-token", next)
		unlock(t, c, "wrong-key", other)
	})

	t.Run("ApartFromValues", func(t *testing.T) {
		// A value is no lock, and taking the lock leaves the value alone.
		mustSet(t, s, "locked-value", []byte("v"), 0)
		token := mustLock(t, c, "locked-value", lockLease)
		wantValue(t, s, "locked-value", []byte("v"))
		mustSet(t, s, "locked-value", []byte("written under the lock"), 0)
		wantValue(t, s, "locked-value", []byte("written under the lock"))
		// Deleting the value does not release the lock, nor the other way.
		if err := s.Delete(ctx, "locked-value"); err != nil {
			t.Fatalf("Delete: %v", err)
		}
		wantHeld(t, c, "locked-value", "after Delete of the value under its key")
		mustSet(t, s, "locked-value", []byte("again"), 0)
		unlock(t, c, "locked-value", token)
		wantValue(t, s, "locked-value", []byte("again"))

		// A lock is no value: the key is still absent to Get and Swap.
		token = mustLock(t, c, "lock-only", lockLease)
		wantMissing(t, s, "lock-only")
		wantSwap(t, s, "lock-only", nil, []byte("first"), true)
		wantValue(t, s, "lock-only", []byte("first"))
		unlock(t, c, "lock-only", token)
		wantValue(t, s, "lock-only", []byte("first"))
	})

	t.Run("LeaseMustBePositive", func(t *testing.T) {
		for _, lease := range []time.Duration{0, -time.Second} {
			_, _, err := c.TryLock(ctx, "no-lease", lease)
			wantErr(t, "TryLock with lease "+lease.String(), err, store.ErrInvalidTTL)
		}
		mustLock(t, c, "no-lease", lockLease) // the refused calls took nothing
	})

	t.Run("CanceledTakesNothing", func(t *testing.T) {
		canceled, cancel := context.WithCancel(ctx)
		cancel()
		_, ok, err := c.TryLock(canceled, "canceled", lockLease)
		wantErr(t, "TryLock with a canceled context", err, context.Canceled)
		if ok {
			t.Error("TryLock with a canceled context reported the lock taken")
		}
		mustLock(t, c, "canceled", lockLease)
	})
}

// testLockerLease checks that a lock runs out with its lease, so that a
// holder that crashed does not lock its session for good, and that the
// holder it ran out on can no longer release it.
func (r *runner) testLockerLease(t *testing.T) {
	if r.h.Advance == nil {
		// On the real clock this subtest sleeps: let it overlap the others.
		r.parallel(t)
	}
	s := r.open(t)
	c := lockCalls(t, s)
	var stale, next string
	if advance := r.h.Advance; advance != nil {
		const lease = 10 * time.Second
		stale = mustLock(t, c, "lease", lease)
		advance(lease - time.Millisecond)
		wantHeld(t, c, "lease", "a millisecond before its lease ends")
		advance(time.Millisecond)
		token, ok := tryLock(t, c, "lease", lockLease)
		if !ok {
			t.Fatalf("lock still held when its lease of %v ended", lease)
		}
		next = token
	} else {
		// Short, and polled for, to keep the suite quick; the wait allows
		// for a store that rounds leases up to whole seconds.
		const lease = 500 * time.Millisecond
		start := time.Now() // the store starts the lease no earlier
		stale = mustLock(t, c, "lease", lease)
		for {
			token, ok := tryLock(t, c, "lease", lockLease)
			elapsed := time.Since(start) // no earlier than the store took it
			if ok {
				// The slack allows for a store on another clock that
				// counts whole milliseconds.
				if elapsed < lease-10*time.Millisecond {
					t.Fatalf("lock free %v into a lease of %v: the lease ran out early", elapsed, lease)
				}
				next = token
				break
			}
			if elapsed > lease+1100*time.Millisecond {
				t.Fatalf("lock still held %v into a lease of %v", elapsed.Round(time.Millisecond), lease)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	_ = c.Unlock(t.Context(), "lease", stale)
	wantHeld(t, c, "lease", "after the Unlock of a holder whose lease ran out")
	unlock(t, c, "lease", next)
}
