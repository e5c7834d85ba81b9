package badgerstore

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"math"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kvsession/kvsession/internal/race"
	"github.com/kvsession/kvsession/store"
)

// cachedValue returns what the cache would answer for key: its value, if
// it has an entry with no write under way.
func cachedValue(s *Store, key string) ([]byte, bool) {
	sh := s.cache.shard(key)
	sh.mu.RLock()
	defer sh.mu.RUnlock()
	e := sh.m[key]
	if e == nil || e.writers > 0 {
		return nil, false
	}
	return bytes.Clone(e.value()), true
}

// TestSwapSeesQueuedWrites: a Swap queued behind a Set or Delete of its key
// that has not committed yet (its batch is held back) is decided against
// that write, not against what Badger or the cache held when the Swap was
// called. The cache holds the key's old value throughout, so a Swap that
// believed it would swap from the stale "v0".
func TestSwapSeesQueuedWrites(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name     string
		queued   func(s *Store) error // queued before the Swaps, after "v0" is committed
		old      []byte               // what the first Swap swaps from
		swapped  bool
		want     string // what k holds in the end; "" for nothing
		wantHeld bool
	}{
		{"set then swap from it", func(s *Store) error { return s.Set(ctx, "k", []byte("v1"), 0) }, []byte("v1"), true, "swapped", true},
		{"set then swap from the stale value", func(s *Store) error { return s.Set(ctx, "k", []byte("v1"), 0) }, []byte("v0"), false, "v1", true},
		{"delete then swap from the stale value", func(s *Store) error { return s.Delete(ctx, "k") }, []byte("v0"), false, "", false},
		{"delete then swap into nothing", func(s *Store) error { return s.Delete(ctx, "k") }, nil, true, "swapped", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := newBatchGate(t)
			// Past the gate, which holds the first batch it sees.
			hook := g.s.commits.commitBatch
			g.s.commits.commitBatch = nil
			if err := g.s.Set(ctx, "k", []byte("v0"), 0); err != nil {
				t.Fatal(err)
			}
			g.s.commits.commitBatch = hook
			if v, ok := cachedValue(g.s, "k"); !ok || string(v) != "v0" {
				t.Fatalf("cache holds %q, %v for k; the test needs it to hold v0", v, ok)
			}
			var held, queued, swapErr error
			var swapped bool
			g.start(t, func() error { return g.s.Set(ctx, "other", []byte("x"), 0) }, &held)
			g.start(t, func() error { return tc.queued(g.s) }, &queued)
			g.start(t, func() error {
				var err error
				swapped, err = g.s.Swap(ctx, "k", tc.old, []byte("swapped"), 0)
				return err
			}, &swapErr)
			g.open()
			g.wait(t)
			for _, err := range []error{held, queued, swapErr} {
				if err != nil {
					t.Fatal(err)
				}
			}
			if swapped != tc.swapped {
				t.Errorf("Swap = %v, want %v", swapped, tc.swapped)
			}
			if v, ok := badgerHolds(t, g.s, "k"); ok != tc.wantHeld || v != tc.want {
				t.Errorf("Badger holds %q, %v; want %q, %v", v, ok, tc.want, tc.wantHeld)
			}
			v, err := g.s.Get(ctx, "k")
			if tc.wantHeld && (err != nil || string(v) != tc.want) || !tc.wantHeld && !errors.Is(err, store.ErrNotFound) {
				t.Errorf("Get = %q, %v; want %q", v, err, tc.want)
			}
		})
	}
}

// TestSwapHintOvertaken: a Swap takes its hint from the cache when it
// begins, but a write that begins after it may still queue before it. The
// hint must then be ignored. The test makes that interleaving by hand:
// the Swap's cache step, then a whole Set, then the Swap's queueing.
func TestSwapHintOvertaken(t *testing.T) {
	ctx := context.Background()
	s := openCached(t, 0)
	if err := s.Set(ctx, "k", []byte("v0"), 0); err != nil {
		t.Fatal(err)
	}
	w := pendingWrites.Get().(*pendingWrite)
	w.op, w.key, w.value, w.old = opSwap, valueKey("k"), []byte("swapped"), []byte("v0")
	e := s.cache.beginSwap("k", w)
	if !w.hintKnown || !w.hintHeld {
		t.Fatalf("the cache held v0 but gave no hint (known %v, held %v)", w.hintKnown, w.hintHeld)
	}
	if err := s.Set(ctx, "k", []byte("v1"), 0); err != nil {
		t.Fatal(err)
	}
	wrote, err := s.commits.submit(w)
	s.cache.endSwap(e, err == nil, wrote, true, []byte("swapped"), 0)
	if err != nil || wrote {
		t.Fatalf("Swap from v0 after v1 was committed: wrote %v, %v", wrote, err)
	}
	if v, ok := badgerHolds(t, s, "k"); !ok || v != "v1" {
		t.Errorf("Badger holds %q, %v; want v1", v, ok)
	}
	if v, err := s.Get(ctx, "k"); err != nil || string(v) != "v1" {
		t.Errorf("Get = %q, %v; want v1", v, err)
	}
}

// TestSwapKeepsCacheInStep: the cache answers with a Swap's outcome: the new
// value after a Swap that wrote, nothing after one that deleted, and the
// unchanged value after one whose condition failed. A write behind the
// Store's back, which the cache cannot see, tells a cached answer from
// Badger's.
func TestSwapKeepsCacheInStep(t *testing.T) {
	ctx := context.Background()
	s := openCached(t, 0)
	if ok, err := s.Swap(ctx, "k", nil, []byte("v1"), time.Hour); err != nil || !ok {
		t.Fatalf("Swap into nothing = %v, %v", ok, err)
	}
	if v, ok := cachedValue(s, "k"); !ok || string(v) != "v1" {
		t.Errorf("after a Swap into nothing the cache holds %q, %v; want v1", v, ok)
	}
	if ok, err := s.Swap(ctx, "k", []byte("v1"), []byte("v2"), time.Hour); err != nil || !ok {
		t.Fatalf("Swap v1 → v2 = %v, %v", ok, err)
	}
	if v, ok := cachedValue(s, "k"); !ok || string(v) != "v2" {
		t.Errorf("after Swap v1 → v2 the cache holds %q, %v; want v2", v, ok)
	}
	// A failed Swap changes nothing, so the cache may keep answering.
	if ok, err := s.Swap(ctx, "k", []byte("v1"), []byte("v3"), time.Hour); err != nil || ok {
		t.Fatalf("Swap from the stale v1 = %v, %v", ok, err)
	}
	if v, ok := cachedValue(s, "k"); !ok || string(v) != "v2" {
		t.Errorf("after a failed Swap the cache holds %q, %v; want v2 still", v, ok)
	}
	if ok, err := s.Swap(ctx, "k", []byte("v2"), nil, 0); err != nil || !ok {
		t.Fatalf("Swap v2 → delete = %v, %v", ok, err)
	}
	if v, ok := cachedValue(s, "k"); ok {
		t.Errorf("after a deleting Swap the cache holds %q", v)
	}
	if _, err := s.Get(ctx, "k"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Get after a deleting Swap: %v", err)
	}
	// An entry that expired while cached is nothing to Swap, as to Get.
	if err := s.Set(ctx, "short", []byte("v"), time.Nanosecond); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Until(time.Unix(int64(expiresAt(time.Now(), time.Nanosecond)), 0)))
	if ok, err := s.Swap(ctx, "short", []byte("v"), []byte("back"), 0); err != nil || ok {
		t.Errorf("Swap from an expired value = %v, %v; want false", ok, err)
	}
	if ok, err := s.Swap(ctx, "short", nil, []byte("new"), 0); err != nil || !ok {
		t.Errorf("Swap into an expired key = %v, %v; want true", ok, err)
	}
}

// TestSwapFailedCommitLeavesCacheConsistent: when Badger fails to commit a
// Swap's batch, or panics doing so, the Swap reports the error, the cache
// does not answer with the value that was not written, and the next Get
// returns what Badger holds.
func TestSwapFailedCommitLeavesCacheConsistent(t *testing.T) {
	ctx := context.Background()
	errInjected := errors.New("injected commit failure")
	for _, mode := range []string{"error", "panic"} {
		t.Run(mode, func(t *testing.T) {
			s := openCached(t, 0)
			if err := s.Set(ctx, "k", []byte("v0"), 0); err != nil {
				t.Fatal(err)
			}
			if _, ok := cachedValue(s, "k"); !ok {
				t.Fatal("the cache does not hold k; the test needs it to")
			}
			s.commits.commitBatch = func(batch []*pendingWrite) {
				if mode == "panic" {
					panic("injected commit panic")
				}
				for _, w := range batch {
					w.err, w.done = errInjected, true
				}
			}
			var ok bool
			var err error
			func() {
				defer func() {
					if p := recover(); p != nil {
						err = errors.New("panicked")
					}
				}()
				ok, err = s.Swap(ctx, "k", []byte("v0"), []byte("v1"), 0)
			}()
			if err == nil || ok {
				t.Fatalf("Swap with a failing commit = %v, %v; want an error", ok, err)
			}
			if v, ok := cachedValue(s, "k"); ok && string(v) != "v0" {
				t.Errorf("the cache holds %q after a failed Swap", v)
			}
			s.commits.commitBatch = nil
			if v, err := s.Get(ctx, "k"); err != nil || string(v) != "v0" {
				t.Errorf("Get after a failed Swap = %q, %v; want v0", v, err)
			}
			if ok, err := s.Swap(ctx, "k", []byte("v0"), []byte("v1"), 0); err != nil || !ok {
				t.Errorf("Swap once commits work = %v, %v", ok, err)
			}
		})
	}
}

// TestSwapAtomicWithTouch: Touch rewrites a value outside the batched
// committer. Counters incremented by Get and Swap while another goroutine
// keeps touching them must end at the number of Swaps that succeeded: a
// Touch that read a value before a Swap and wrote it back after would
// undo the Swap.
func TestSwapAtomicWithTouch(t *testing.T) {
	ctx := context.Background()
	for _, size := range []int{0, -1} {
		t.Run(map[int]string{0: "cached", -1: "uncached"}[size], func(t *testing.T) {
			s := openCached(t, size)
			const counters, goroutines, each = 2, 4, 150
			for c := range counters {
				if err := s.Set(ctx, string(rune('a'+c)), binary.BigEndian.AppendUint64(nil, 0), time.Hour); err != nil {
					t.Fatal(err)
				}
			}
			var stop atomic.Bool
			var toucher sync.WaitGroup
			toucher.Go(func() {
				for i := 0; !stop.Load(); i++ {
					if err := s.Touch(ctx, string(rune('a'+i%counters)), time.Hour); err != nil {
						t.Error(err)
						return
					}
				}
			})
			var wg sync.WaitGroup
			for g := range goroutines {
				wg.Go(func() {
					key := string(rune('a' + g%counters))
					for done := 0; done < each; {
						old, err := s.Get(ctx, key)
						if err != nil {
							t.Error(err)
							return
						}
						next := binary.BigEndian.AppendUint64(nil, binary.BigEndian.Uint64(old)+1)
						ok, err := s.Swap(ctx, key, old, next, time.Hour)
						if err != nil {
							t.Error(err)
							return
						}
						if ok {
							done++
						}
					}
				})
			}
			wg.Wait()
			stop.Store(true)
			toucher.Wait()
			for c := range counters {
				v, err := s.Get(ctx, string(rune('a'+c)))
				if err != nil {
					t.Fatal(err)
				}
				if got, want := binary.BigEndian.Uint64(v), uint64(goroutines/counters*each); got != want {
					t.Errorf("counter %c = %d after %d successful Swaps", 'a'+c, got, want)
				}
			}
		})
	}
}

// TestSwapAfterDeleteAll: DeleteAll drops values behind the cache's back
// (Badger's DropAll); a Swap from a dropped value must fail and one into
// nothing succeed, whatever the cache held.
func TestSwapAfterDeleteAll(t *testing.T) {
	ctx := context.Background()
	s := openT(t, Options{Dir: t.TempDir()})
	if err := s.Set(ctx, "k", []byte("before"), 0); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteAll(ctx); err != nil {
		t.Fatal(err)
	}
	if ok, err := s.Swap(ctx, "k", []byte("before"), []byte("after"), 0); err != nil || ok {
		t.Errorf("Swap from a value DeleteAll dropped = %v, %v", ok, err)
	}
	if ok, err := s.Swap(ctx, "k", nil, []byte("after"), 0); err != nil || !ok {
		t.Errorf("Swap into a key DeleteAll dropped = %v, %v", ok, err)
	}
	if v, err := s.Get(ctx, "k"); err != nil || string(v) != "after" {
		t.Errorf("Get = %q, %v", v, err)
	}
}

// TestSwapMixedWritesCacheAgrees: Sets, Deletes, Swaps and Touches of a few
// keys (one of them escaped, beginning with 0xff) from several goroutines
// at once, batched together. Whatever the interleaving, once they are done
// the cache may answer for a key only with what Badger holds. (Swap's
// atomicity is TestSwapAtomicWithTouch's and the conformance suite's.)
func TestSwapMixedWritesCacheAgrees(t *testing.T) {
	ctx := context.Background()
	s := openCached(t, 0)
	keys := []string{"a", "b", "c", "\xffd"}
	var seq atomic.Int64
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 300 {
				key := keys[(g+i)%len(keys)]
				v := []byte{byte(g), byte(i), byte(seq.Add(1))}
				var err error
				switch (g*7 + i) % 5 {
				case 0:
					err = s.Set(ctx, key, v, time.Hour)
				case 1:
					if i%3 == 0 {
						err = s.Delete(ctx, key)
					} else {
						err = s.Touch(ctx, key, time.Hour)
						if errors.Is(err, store.ErrNotFound) {
							err = nil
						}
					}
				default:
					old, gerr := s.Get(ctx, key)
					if errors.Is(gerr, store.ErrNotFound) {
						old, gerr = nil, nil
					}
					if gerr != nil {
						err = gerr
						break
					}
					_, err = s.Swap(ctx, key, old, v, time.Hour)
				}
				if err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	for _, key := range keys {
		want, held := badgerHolds(t, s, key)
		if v, ok := cachedValue(s, key); ok && (!held || string(v) != want) {
			t.Errorf("%q: the cache holds %x, Badger %x (held %v)", key, v, want, held)
		}
		v, err := s.Get(ctx, key)
		if held && (err != nil || string(v) != want) || !held && !errors.Is(err, store.ErrNotFound) {
			t.Errorf("%q: Get = %x, %v; Badger holds %x (held %v)", key, v, err, want, held)
		}
	}
}

// TestFailedSwapOverlappedByWrite: a Swap whose condition fails leaves the
// cached value in place, since Badger did not change; but not if another
// write to the key overlapped it, whose value the cache, seeing two writes
// at once, did not store. The order is made by hand: the Swap begins, a Set
// begins, commits and ends, then the Swap commits and ends.
func TestFailedSwapOverlappedByWrite(t *testing.T) {
	ctx := context.Background()
	s := openCached(t, 0)
	if err := s.Set(ctx, "k", []byte("v0"), 0); err != nil {
		t.Fatal(err)
	}
	w := pendingWrites.Get().(*pendingWrite)
	w.op, w.key, w.value, w.old = opSwap, valueKey("k"), []byte("swapped"), []byte("not there")
	e := s.cache.beginSwap("k", w)
	if err := s.Set(ctx, "k", []byte("v1"), 0); err != nil {
		t.Fatal(err)
	}
	wrote, err := s.commits.submit(w)
	if err != nil || wrote {
		t.Fatalf("Swap from a value never stored: wrote %v, %v", wrote, err)
	}
	s.cache.endSwap(e, true, false, true, []byte("swapped"), 0)
	if v, ok := cachedValue(s, "k"); ok && string(v) != "v1" {
		t.Errorf("the cache holds %q; Badger holds v1", v)
	}
	if v, err := s.Get(ctx, "k"); err != nil || string(v) != "v1" {
		t.Errorf("Get = %q, %v; want v1", v, err)
	}
}

// TestSwapAllocsLikeSet: a Swap the cache can decide, the backend's save of
// a session it loaded, allocates what a Set of the same value does: the
// comparison is made in the cache's own copy, with no Badger read. The
// race detector drops pooled objects at random, so it skips there.
func TestSwapAllocsLikeSet(t *testing.T) {
	if race.Enabled {
		t.Skip("allocation counts are unreliable under -race")
	}
	ctx := context.Background()
	s := openT(t, Options{Dir: t.TempDir()})
	vals := [2][]byte{make([]byte, 1024), make([]byte, 1024)}
	vals[1][0] = 1
	if err := s.Set(ctx, "k", vals[0], time.Hour); err != nil {
		t.Fatal(err)
	}
	// Badger's goroutines allocate too, and AllocsPerRun counts them: take
	// the least of a few rounds of each, alternated.
	set, swap := math.Inf(1), math.Inf(1)
	cur := 0 // k holds vals[cur]; each write stores the other value
	for range 5 {
		set = min(set, testing.AllocsPerRun(200, func() {
			if err := s.Set(ctx, "k", vals[cur^1], time.Hour); err != nil {
				t.Fatal(err)
			}
			cur ^= 1
		}))
		swap = min(swap, testing.AllocsPerRun(200, func() {
			ok, err := s.Swap(ctx, "k", vals[cur], vals[cur^1], time.Hour)
			if err != nil || !ok {
				t.Fatalf("Swap = %v, %v", ok, err)
			}
			cur ^= 1
		}))
	}
	t.Logf("allocations: Set %.1f, Swap %.1f", set, swap)
	// Badger's background goroutines move either count by up to about
	// three between rounds; reading the value from Badger to compare it
	// would add eight.
	if swap > set+4 {
		t.Errorf("Swap allocates %.1f times, Set %.1f: Swap should cost what Set does", swap, set)
	}
}
