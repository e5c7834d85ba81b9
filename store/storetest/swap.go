package storetest

import (
	"encoding/binary"
	"sync"
	"testing"
	"time"

	"github.com/kvsession/kvsession/store"
)

// swap calls s.Swap and fails the test on an error.
func swap(t *testing.T, s store.Store, key string, old, value []byte, ttl time.Duration) bool {
	t.Helper()
	ok, err := s.Swap(t.Context(), key, old, value, ttl)
	if err != nil {
		t.Fatalf("Swap(%q, %s → %s): %v", key, describe(old), describe(value), err)
	}
	return ok
}

func wantSwap(t *testing.T, s store.Store, key string, old, value []byte, want bool) {
	t.Helper()
	if got := swap(t, s, key, old, value, 0); got != want {
		t.Errorf("Swap(%q, %s → %s) = %v, want %v", key, describe(old), describe(value), got, want)
	}
}

// testSwap checks each way a Swap can go. The case that matters most to
// kvsession is the last: a value deleted (a session ended) can never be
// written back by a Swap from someone who read it before.
func (r *runner) testSwap(t *testing.T) {
	s := r.open(t)
	ctx := t.Context()

	// nil old: only into an absent key.
	wantSwap(t, s, "new", nil, []byte("v1"), true)
	wantValue(t, s, "new", []byte("v1"))
	wantSwap(t, s, "new", nil, []byte("v2"), false)
	wantValue(t, s, "new", []byte("v1"))

	// A matching old value swaps; anything else leaves the value alone.
	for _, old := range [][]byte{[]byte("v"), []byte("v1x"), []byte("V1"), {}} {
		wantSwap(t, s, "new", old, []byte("wrong"), false)
	}
	wantValue(t, s, "new", []byte("v1"))
	wantSwap(t, s, "new", []byte("v1"), []byte("v2"), true)
	wantValue(t, s, "new", []byte("v2"))

	// Values of another length, either way, and a large one.
	big := randomBytes(70 << 10)
	wantSwap(t, s, "new", []byte("v2"), big, true)
	wantValue(t, s, "new", big)
	wantSwap(t, s, "new", big[:len(big)-1], []byte("x"), false)
	wantSwap(t, s, "new", big, []byte("v3"), true)
	wantValue(t, s, "new", []byte("v3"))

	// A nil value deletes, only if old matches.
	wantSwap(t, s, "new", []byte("other"), nil, false)
	wantValue(t, s, "new", []byte("v3"))
	wantSwap(t, s, "new", []byte("v3"), nil, true)
	wantMissing(t, s, "new")

	// Deleted, it stays deleted for whoever read it before.
	mustSet(t, s, "ended", []byte("session"), 0)
	if err := s.Delete(ctx, "ended"); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	wantSwap(t, s, "ended", []byte("session"), []byte("written back"), false)
	wantMissing(t, s, "ended")

	// The caller may reuse its slices once Swap returns.
	old, value := []byte("a"), []byte("b")
	mustSet(t, s, "alias", old, 0)
	wantSwap(t, s, "alias", old, value, true)
	value[0] = 'X'
	wantValue(t, s, "alias", []byte("b"))

	// A Swap's TTL is the entry's new TTL.
	if x, ok := s.(expirer); ok {
		mustSet(t, s, "ttl", []byte("v"), 0)
		if !swap(t, s, "ttl", []byte("v"), []byte("w"), time.Hour) {
			t.Fatal("Swap with a matching value did not swap")
		}
		if d, err := x.ExpiresIn(ctx, "ttl"); err != nil || d <= 0 || d > time.Hour+time.Second {
			t.Errorf("ExpiresIn after Swap with TTL 1h = %v, %v", d, err)
		}
	}

	wantErr(t, "Swap with TTL -1s", func() error {
		_, err := s.Swap(ctx, "alias", []byte("b"), []byte("c"), -time.Second)
		return err
	}(), store.ErrInvalidTTL)
	wantValue(t, s, "alias", []byte("b"))
}

// testSwapAtomic increments one counter from several goroutines by
// read-and-swap: if Swap were a Get and a Set, two goroutines would both
// swap from the same value, and the counter would end below the number
// of swaps that reported success.
func (r *runner) testSwapAtomic(t *testing.T) {
	s := r.open(t)
	const goroutines, each = 4, 40
	mustSet(t, s, "counter", binary.BigEndian.AppendUint64(nil, 0), 0)
	var wg sync.WaitGroup
	errs := make(chan error, goroutines)
	for range goroutines {
		wg.Go(func() {
			for done := 0; done < each; {
				old, err := s.Get(t.Context(), "counter")
				if err != nil {
					errs <- err
					return
				}
				next := binary.BigEndian.AppendUint64(nil, binary.BigEndian.Uint64(old)+1)
				ok, err := s.Swap(t.Context(), "counter", old, next, 0)
				if err != nil {
					errs <- err
					return
				}
				if ok {
					done++
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	v, err := s.Get(t.Context(), "counter")
	if err != nil || len(v) != 8 {
		t.Fatalf("Get(counter) = %x, %v", v, err)
	}
	if got := binary.BigEndian.Uint64(v); got != goroutines*each {
		t.Errorf("counter = %d after %d successful swaps: Swap is not atomic", got, goroutines*each)
	}
}

// swapExpiryCases run with the expiry subtests: an expired value is no
// value, for Swap as for Get.
var swapExpiryCases = []expiryCase{
	{
		name:   "SwapSeesExpiredAsAbsent",
		before: func(t *testing.T, s store.Store) { mustSet(t, s, "swap-expired", []byte("v"), shortTTL) },
		after: func(t *testing.T, s store.Store) {
			wantSwap(t, s, "swap-expired", []byte("v"), []byte("back"), false)
			wantMissing(t, s, "swap-expired")
			wantSwap(t, s, "swap-expired", nil, []byte("new"), true)
			wantValue(t, s, "swap-expired", []byte("new"))
		},
	},
	{
		name: "SwapTTL",
		before: func(t *testing.T, s store.Store) {
			mustSet(t, s, "swap-ttl", []byte("v"), 0)
			if !swap(t, s, "swap-ttl", []byte("v"), []byte("w"), shortTTL) {
				t.Error("Swap with a matching value did not swap")
			}
		},
		after: func(t *testing.T, s store.Store) { wantMissing(t, s, "swap-ttl") },
	},
}

func init() { expiryCases = append(expiryCases, swapExpiryCases...) }
