package badgerstore

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	bdg "github.com/dgraph-io/badger/v4"

	"github.com/kvsession/kvsession/store"
)

// batchGate holds the first batch a store commits until released, so that
// a test can queue writes behind it, and records the size of every batch.
type batchGate struct {
	s       *Store
	entered chan struct{}
	release chan struct{}
	mu      sync.Mutex
	sizes   []int
	panicAt int // panic in the batch with this index (from 0), if positive
	// commitBeforePanic is how many of the panicking batch's writes are
	// committed first, as when a later transaction of a split batch panics.
	commitBeforePanic int
	maxBatch          int
	wg                sync.WaitGroup
	gateOnce          sync.Once
}

func newBatchGate(t *testing.T) *batchGate {
	t.Helper()
	s, err := Open(Options{InMemory: true})
	if err != nil {
		t.Fatal(err)
	}
	g := &batchGate{s: s, entered: make(chan struct{}), release: make(chan struct{})}
	g.s.commits.commitBatch = func(batch []*pendingWrite) {
		g.mu.Lock()
		n := len(g.sizes)
		g.sizes = append(g.sizes, len(batch))
		g.maxBatch = max(g.maxBatch, len(batch))
		g.mu.Unlock()
		if n == 0 {
			close(g.entered)
			<-g.release
		}
		if g.panicAt > 0 && n == g.panicAt {
			g.s.commits.commit(batch[:g.commitBeforePanic])
			panic("commit test panic")
		}
		g.s.commits.commit(batch)
	}
	t.Cleanup(func() {
		g.open()
		// Writers stuck in a broken committer hold the store open: Close
		// would wait for them for ever.
		if !g.waitFor(10 * time.Second) {
			t.Error("writes stuck; store left open")
			return
		}
		if err := s.Close(); err != nil {
			t.Error(err)
		}
	})
	return g
}

func (g *batchGate) open() { g.gateOnce.Do(func() { close(g.release) }) }

// start runs write in a goroutine and returns once it has queued: as the
// leader of the held first batch (the first call), or behind it.
func (g *batchGate) start(t *testing.T, write func() error, result *error) {
	t.Helper()
	g.s.commits.mu.Lock()
	queued := len(g.s.commits.queue)
	g.s.commits.mu.Unlock()
	first := g.sizesLen() == 0 && queued == 0
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		defer func() {
			if p := recover(); p != nil {
				*result = fmt.Errorf("panicked: %v", p)
			}
		}()
		*result = write()
	}()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if first {
			select {
			case <-g.entered:
				return
			default:
			}
		} else {
			g.s.commits.mu.Lock()
			n := len(g.s.commits.queue)
			g.s.commits.mu.Unlock()
			if n > queued {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("write never queued")
		}
		time.Sleep(time.Millisecond)
	}
}

// wait waits for every started write to return.
func (g *batchGate) wait(t *testing.T) {
	t.Helper()
	if !g.waitFor(10 * time.Second) {
		t.Fatal("writes still waiting 10s after their batches were released")
	}
}

func (g *batchGate) waitFor(d time.Duration) bool {
	done := make(chan struct{})
	go func() { g.wg.Wait(); close(done) }()
	select {
	case <-done:
		return true
	case <-time.After(d):
		return false
	}
}

func (g *batchGate) sizesLen() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.sizes)
}

// TestCommitBatchesQueuedWrites: writes that arrive while a commit is under
// way go to Badger together, in one batch, and each is acknowledged.
func TestCommitBatchesQueuedWrites(t *testing.T) {
	ctx := context.Background()
	g := newBatchGate(t)
	errs := make([]error, 9)
	for i := range errs {
		key := "k" + strconv.Itoa(i)
		g.start(t, func() error { return g.s.Set(ctx, key, []byte("v"+key), 0) }, &errs[i])
	}
	g.open()
	g.wait(t)
	for i, err := range errs {
		if err != nil {
			t.Errorf("write %d: %v", i, err)
		}
	}
	if want := []int{1, 8}; !equalInts(g.sizes, want) {
		t.Errorf("batch sizes %v, want %v", g.sizes, want)
	}
	for i := range errs {
		key := "k" + strconv.Itoa(i)
		if v, ok := badgerHolds(t, g.s, key); !ok || v != "v"+key {
			t.Errorf("Badger holds %q, %v for %s", v, ok, key)
		}
	}
}

// TestCommitOrderWithinBatch: writes to one key in one batch take effect in
// the order they queued.
func TestCommitOrderWithinBatch(t *testing.T) {
	ctx := context.Background()
	set := func(g *batchGate, v string) func() error {
		return func() error { return g.s.Set(ctx, "k", []byte(v), 0) }
	}
	del := func(g *batchGate, _ string) func() error {
		return func() error { return g.s.Delete(ctx, "k") }
	}
	type op func(*batchGate, string) func() error
	for _, tc := range []struct {
		name   string
		ops    []op
		want   string
		exists bool
	}{
		{"set set", []op{set, set}, "1", true},
		{"set delete", []op{set, del}, "", false},
		{"delete set", []op{del, set}, "1", true},
		{"set delete set", []op{set, del, set}, "2", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := newBatchGate(t)
			var held error
			g.start(t, func() error { return g.s.Set(ctx, "other", []byte("x"), 0) }, &held)
			errs := make([]error, len(tc.ops))
			for i, o := range tc.ops {
				g.start(t, o(g, strconv.Itoa(i)), &errs[i])
			}
			g.open()
			g.wait(t)
			for i, err := range append(errs, held) {
				if err != nil {
					t.Errorf("write %d: %v", i, err)
				}
			}
			if v, ok := badgerHolds(t, g.s, "k"); ok != tc.exists || v != tc.want {
				t.Errorf("Badger holds %q, %v; want %q, %v", v, ok, tc.want, tc.exists)
			}
			// The cache saw the writes overlap and must not answer for them.
			if cachedKey(g.s, "k") {
				t.Error("the cache holds k after overlapping writes")
			}
			v, err := g.s.Get(ctx, "k")
			if tc.exists && (err != nil || string(v) != tc.want) || !tc.exists && err == nil {
				t.Errorf("Get = %q, %v; want %q", v, err, tc.want)
			}
		})
	}
}

// TestCommitPanicReleasesWriters: if Badger panics while committing a
// batch, the panic reaches the writer that led it; every other writer of
// the batch gets its outcome if it is known (a write committed before the
// panic succeeded) and an error if not, instead of waiting for ever; the
// cache holds nothing Badger may not hold; and later writes commit as
// usual.
func TestCommitPanicReleasesWriters(t *testing.T) {
	ctx := context.Background()
	const writers = 4 // k0 leads the panicking batch; all queue in order
	for _, committedFirst := range []int{0, 2} {
		t.Run(fmt.Sprintf("%d committed first", committedFirst), func(t *testing.T) {
			g := newBatchGate(t)
			g.panicAt, g.commitBeforePanic = 1, committedFirst
			var held error
			g.start(t, func() error { return g.s.Set(ctx, "first", []byte("x"), 0) }, &held)
			errs := make([]error, writers)
			for i := range errs {
				key := "k" + strconv.Itoa(i)
				g.start(t, func() error { return g.s.Set(ctx, key, []byte("x"), 0) }, &errs[i])
			}
			g.open()
			g.wait(t)
			if held != nil {
				t.Errorf("held write: %v", held)
			}
			for i, err := range errs {
				key := "k" + strconv.Itoa(i)
				committed := i < committedFirst
				switch {
				case i == 0:
					if err == nil || !strings.HasPrefix(err.Error(), "panicked: ") {
						t.Errorf("%s led the batch and returned %v; want its panic", key, err)
					}
				case committed && err != nil:
					t.Errorf("%s was committed before the panic but returned %v", key, err)
				case !committed && !errors.Is(err, errCommitPanicked):
					t.Errorf("%s was not committed but returned %v", key, err)
				}
				if _, ok := badgerHolds(t, g.s, key); ok != committed {
					t.Errorf("Badger holds %s: %v, want %v", key, ok, committed)
				}
				// Only what Badger holds may be cached: the leader's
				// write, committed or not, has no known outcome.
				if cachedKey(g.s, key) && (!committed || i == 0) {
					t.Errorf("the cache holds %s", key)
				}
				if v, err := g.s.Get(ctx, key); committed != (err == nil) || committed && string(v) != "x" {
					t.Errorf("Get(%s) = %q, %v after the panic", key, v, err)
				}
			}
			if err := g.s.Set(ctx, "after", []byte("y"), 0); err != nil {
				t.Fatalf("Set after the panic: %v", err)
			}
			if v, ok := badgerHolds(t, g.s, "after"); !ok || v != "y" {
				t.Errorf("Badger holds %q, %v after the panic", v, ok)
			}
		})
	}
}

// cachedKey reports whether the store's cache has an entry for key.
func cachedKey(s *Store, key string) bool {
	sh := s.cache.shard(key)
	sh.mu.RLock()
	defer sh.mu.RUnlock()
	_, ok := sh.m[key]
	return ok
}

// TestCommitSplitsLargeBatch: a batch too large for one Badger transaction
// is committed in several, and a write Badger refuses fails alone.
func TestCommitSplitsLargeBatch(t *testing.T) {
	s := openT(t, Options{InMemory: true})
	const n = 40000
	if limit := s.db.MaxBatchCount(); n <= 2*limit {
		t.Fatalf("%d writes would not need three transactions: Badger takes %d", n, limit)
	}
	batch := make([]*pendingWrite, n)
	for i := range batch {
		batch[i] = &pendingWrite{key: []byte("key" + strconv.Itoa(i)), value: []byte(strconv.Itoa(i))}
	}
	bad := n / 2
	batch[bad].key = make([]byte, 70000) // over Badger's key size limit
	// One key written first and last, in different transactions: the last
	// write must win.
	batch[n-1].key = []byte("key0")
	s.commits.commit(batch)
	for i, w := range batch {
		if i == bad {
			if w.err == nil {
				t.Errorf("write with an oversized key committed")
			}
			continue
		}
		if w.err != nil {
			t.Fatalf("write %d: %v", i, w.err)
		}
	}
	for i := 1; i < n-1; i += 997 {
		if i == bad {
			continue
		}
		key := "key" + strconv.Itoa(i)
		if v, ok := badgerHolds(t, s, key); !ok || v != strconv.Itoa(i) {
			t.Fatalf("Badger holds %q, %v for %s", v, ok, key)
		}
	}
	if v, ok := badgerHolds(t, s, "key0"); !ok || v != strconv.Itoa(n-1) {
		t.Fatalf("key0, written first and last: Badger holds %q, %v", v, ok)
	}
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestCommitConcurrentWritersKeepTheirLastWrite: writers that overlap in
// batches lose nothing and keep their own order. Each owns a few keys and
// sets or deletes them at random; at the end Badger, and the Store, hold
// each key's last write.
func TestCommitConcurrentWritersKeepTheirLastWrite(t *testing.T) {
	ctx := context.Background()
	s := openT(t, Options{InMemory: true})
	var maxBatch atomic.Int64
	s.commits.commitBatch = func(batch []*pendingWrite) {
		if n := int64(len(batch)); n > maxBatch.Load() {
			maxBatch.Store(n) // only one batch commits at a time
		}
		s.commits.commit(batch)
	}
	const writers, keysEach, rounds = 16, 4, 200
	last := make([]map[string]string, writers) // "" for deleted
	var wg sync.WaitGroup
	for g := range writers {
		last[g] = map[string]string{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(g), 1))
			for r := range rounds {
				key := fmt.Sprintf("w%d-k%d", g, rng.IntN(keysEach))
				if rng.IntN(4) == 0 {
					if err := s.Delete(ctx, key); err != nil {
						t.Error(err)
						return
					}
					last[g][key] = ""
					continue
				}
				v := fmt.Sprintf("%d-%d", g, r)
				if err := s.Set(ctx, key, []byte(v), time.Hour); err != nil {
					t.Error(err)
					return
				}
				last[g][key] = v
			}
		}()
	}
	wg.Wait()
	// 16 writers and 3,200 writes: some must have queued behind a commit,
	// or this test would not have exercised batching.
	if maxBatch.Load() < 2 {
		t.Fatalf("every batch held one write")
	}
	t.Logf("largest batch: %d writes", maxBatch.Load())
	for _, m := range last {
		for key, want := range m {
			got, ok := badgerHolds(t, s, key)
			if ok != (want != "") || got != want {
				t.Errorf("Badger holds %q, %v for %s; want %q", got, ok, key, want)
			}
			v, err := s.Get(ctx, key)
			if want == "" && !errors.Is(err, store.ErrNotFound) || want != "" && (err != nil || string(v) != want) {
				t.Errorf("Get(%s) = %q, %v; want %q", key, v, err, want)
			}
		}
	}
}

// TestCommitDecidesInQueueOrder: the leader decides conditional writes
// against the writes queued before them in the same batch, even when the
// batch is too large for one transaction and those writes went to Badger
// in an earlier one; and a write Badger refused decides nothing.
func TestCommitDecidesInQueueOrder(t *testing.T) {
	s := openT(t, Options{InMemory: true})
	n := int(s.db.MaxBatchCount()) + 10 // so that the batch splits
	exp := uint64(time.Now().Add(time.Hour).Unix())
	pw := func(op writeOp, key, value, old string, exp uint64) *pendingWrite {
		w := &pendingWrite{op: op, key: []byte(key), exp: exp}
		if value != "-" {
			w.value = []byte(value)
		}
		if old != "-" {
			w.old = []byte(old)
		}
		return w
	}
	var batch []*pendingWrite
	add := func(w *pendingWrite) *pendingWrite { batch = append(batch, w); return w }
	setK := add(pw(opSet, "k", "v1", "-", 0))
	stale := add(pw(opSwap, "k", "x", "v0", 0))     // k holds v1, not v0
	fresh := add(pw(opSwap, "k", "v2", "v1", 0))    // from the Set above
	create := add(pw(opSwap, "new", "n1", "-", 0))  // into nothing
	again := add(pw(opSwap, "new", "n2", "-", 0))   // "new" now holds n1
	long := add(pw(opExtend, "m", "", "-", exp+60)) // a member added for longer
	for i := range n {
		add(pw(opSet, "filler"+strconv.Itoa(i), "f", "-", 0))
	}
	refused := add(pw(opSet, string(make([]byte, 70000)), "big", "-", 0))
	afterSplit := add(pw(opSwap, "k", "v3", "v2", 0)) // from fresh, committed in the earlier transaction
	shorter := add(pw(opExtend, "m", "", "-", exp))   // would shorten: not written
	deleteNew := add(pw(opSwap, "new", "-", "n1", 0)) // a nil value deletes
	s.commits.commit(batch)

	for name, c := range map[string]struct {
		w     *pendingWrite
		wrote bool
	}{
		"Set k": {setK, true}, "stale Swap": {stale, false}, "fresh Swap": {fresh, true},
		"Swap into nothing": {create, true}, "second Swap into nothing": {again, false},
		"AddMember": {long, true}, "Swap after the split": {afterSplit, true},
		"shorter AddMember": {shorter, false}, "deleting Swap": {deleteNew, true},
	} {
		if c.w.err != nil || c.w.wrote != c.wrote || !c.w.done {
			t.Errorf("%s: wrote %v, err %v, done %v; want wrote %v", name, c.w.wrote, c.w.err, c.w.done, c.wrote)
		}
	}
	if refused.err == nil {
		t.Error("an oversized key was committed")
	}
	if v, ok := badgerHolds(t, s, "k"); !ok || v != "v3" {
		t.Errorf("k holds %q, %v; want v3", v, ok)
	}
	if v, ok := badgerHolds(t, s, "new"); ok {
		t.Errorf("new holds %q after the deleting Swap", v)
	}
	err := s.db.View(func(txn *bdg.Txn) error {
		item, err := txn.Get([]byte("m"))
		if err == nil && item.ExpiresAt() != exp+60 {
			t.Errorf("m expires at %d, want the longer %d", item.ExpiresAt(), exp+60)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}
