package badgerstore

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"

	bdg "github.com/dgraph-io/badger/v4"

	"github.com/kvsession/kvsession/store"
)

func openCached(t *testing.T, size int) *Store {
	t.Helper()
	s, err := Open(Options{InMemory: true, CacheSize: size})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// badgerHolds reads key from Badger itself, past the cache.
func badgerHolds(t *testing.T, s *Store, key string) (string, bool) {
	t.Helper()
	var v []byte
	err := s.DB().View(func(txn *bdg.Txn) error {
		item, err := txn.Get(valueKey(key))
		if err == nil {
			v, err = item.ValueCopy(nil)
		}
		return err
	})
	if errors.Is(err, bdg.ErrKeyNotFound) {
		return "", false
	}
	if err != nil {
		t.Fatalf("reading %q from Badger: %v", key, err)
	}
	return string(v), true
}

// TestCacheServesReads: with the cache on, a read after a write comes from
// the cache, which a write made behind the Store's back (through DB) shows;
// with it off, every read goes to Badger.
func TestCacheServesReads(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		size int
		want string
	}{
		{"on", 0, "through the store"},
		{"off", -1, "behind its back"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := openCached(t, tc.size)
			if err := s.Set(ctx, "k", []byte("through the store"), time.Hour); err != nil {
				t.Fatal(err)
			}
			if err := s.DB().Update(func(txn *bdg.Txn) error {
				return txn.Set([]byte("k"), []byte("behind its back"))
			}); err != nil {
				t.Fatal(err)
			}
			v, err := s.Get(ctx, "k")
			if err != nil || string(v) != tc.want {
				t.Fatalf("Get = %q, %v; want %q", v, err, tc.want)
			}
		})
	}
}

// TestCacheFillsOnRead: an entry the cache does not hold (written before
// the store was opened, or evicted) is cached by the first read of it.
func TestCacheFillsOnRead(t *testing.T) {
	ctx := context.Background()
	s := openCached(t, 0)
	if err := s.DB().Update(func(txn *bdg.Txn) error {
		return txn.SetEntry(bdg.NewEntry([]byte("k"), []byte("v1")).WithTTL(time.Hour))
	}); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if v, err := s.Get(ctx, "k"); err != nil || string(v) != "v1" {
			t.Fatalf("Get = %q, %v; want v1", v, err)
		}
		// The second read is the cache's: Badger's new value stays unseen.
		if err := s.DB().Update(func(txn *bdg.Txn) error { return txn.Set([]byte("k"), []byte("v2")) }); err != nil {
			t.Fatal(err)
		}
	}
	// A missing key is not cached as anything.
	if _, err := s.Get(ctx, "none"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Get(none) = %v, want ErrNotFound", err)
	}
	if err := s.DB().Update(func(txn *bdg.Txn) error { return txn.Set([]byte("none"), []byte("now")) }); err != nil {
		t.Fatal(err)
	}
	if v, err := s.Get(ctx, "none"); err != nil || string(v) != "now" {
		t.Fatalf("Get(none) after a write = %q, %v; want now", v, err)
	}
}

// TestCacheAgreesWithBadger drives every writing operation (DeleteAll
// included) and reads from
// many goroutines at once on a few keys, so that writes overlap each other
// and reads that fill the cache; then, once all is quiet, every key must
// read through the cache exactly as Badger holds it. A write that stored
// its value after a newer one, or a fill of a value a write had replaced,
// would leave the cache behind Badger.
func TestCacheAgreesWithBadger(t *testing.T) {
	ctx := context.Background()
	s := openCached(t, 0)
	keys := make([]string, 8)
	for i := range keys {
		keys[i] = "key-" + strconv.Itoa(i)
	}
	rounds := 400
	if testing.Short() {
		rounds = 100
	}
	for round := range rounds {
		var wg sync.WaitGroup
		for g := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r := rand.New(rand.NewPCG(uint64(round), uint64(g)))
				for i := range 6 {
					key := keys[r.IntN(len(keys))]
					var err error
					switch r.IntN(10) {
					case 0:
						if r.IntN(8) == 0 {
							err = s.DeleteAll(ctx)
						} else {
							err = s.Delete(ctx, key)
						}
					case 1:
						err = s.Touch(ctx, key, time.Hour)
						if errors.Is(err, store.ErrNotFound) {
							err = nil
						}
					case 2, 3, 4:
						// Two lengths: in-place rewrites and new buffers.
						v := fmt.Sprintf("%d/%d/%d", round, g, i)
						if r.IntN(2) == 0 {
							v += "-longer"
						}
						err = s.Set(ctx, key, []byte(v), time.Hour)
					default:
						_, err = s.Get(ctx, key)
						if errors.Is(err, store.ErrNotFound) {
							err = nil
						}
					}
					// Badger refuses writes while DropAll runs.
					if err != nil && !errors.Is(err, bdg.ErrBlockedWrites) {
						t.Errorf("%s: %v", key, err)
					}
				}
			}()
		}
		wg.Wait()
		for _, key := range keys {
			want, found := badgerHolds(t, s, key)
			got, err := s.Get(ctx, key)
			switch {
			case !found && !errors.Is(err, store.ErrNotFound):
				t.Fatalf("round %d: %s: Badger has nothing, the store reads %q, %v", round, key, got, err)
			case found && (err != nil || string(got) != want):
				t.Fatalf("round %d: %s: Badger holds %q, the store reads %q, %v", round, key, want, got, err)
			}
		}
	}
}

// TestCacheDeleteAll: nothing cached survives DeleteAll.
func TestCacheDeleteAll(t *testing.T) {
	ctx := context.Background()
	s := openCached(t, 0)
	for i := range 100 {
		if err := s.Set(ctx, strconv.Itoa(i), []byte("v"), time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.DeleteAll(ctx); err != nil {
		t.Fatal(err)
	}
	for i := range 100 {
		if v, err := s.Get(ctx, strconv.Itoa(i)); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("Get(%d) after DeleteAll = %q, %v", i, v, err)
		}
	}
}

// TestCacheStaysWithinSize: a small cache keeps its byte count exact and
// within bounds while far more sessions than it holds are written and
// read, and every one still reads back from Badger.
func TestCacheStaysWithinSize(t *testing.T) {
	ctx := context.Background()
	const size = 256 << 10
	s := openCached(t, size)
	value := make([]byte, 200)
	for i := range 2000 {
		if err := s.Set(ctx, strconv.Itoa(i), value, time.Hour); err != nil {
			t.Fatal(err)
		}
		if i%3 == 0 {
			if _, err := s.Get(ctx, strconv.Itoa(i/2)); err != nil {
				t.Fatal(err)
			}
		}
	}
	checkBytes(t, s.cache)
	total, entries := 0, 0
	for i := range s.cache.shards {
		sh := &s.cache.shards[i]
		if sh.bytes > s.cache.limit {
			t.Errorf("shard %d holds %d bytes, over its %d", i, sh.bytes, s.cache.limit)
		}
		total += sh.bytes
		entries += len(sh.m)
	}
	if total > size || entries == 0 {
		t.Errorf("cache holds %d entries in %d bytes, want some, within %d", entries, total, size)
	}
	for i := range 2000 {
		if v, err := s.Get(ctx, strconv.Itoa(i)); err != nil || len(v) != len(value) {
			t.Fatalf("Get(%d) = %d bytes, %v", i, len(v), err)
		}
	}
}

// TestCacheExpiry: a cached entry expires when Badger's does, to the
// second, and Touch moves both.
func TestCacheExpiry(t *testing.T) {
	ctx := context.Background()
	s := openCached(t, 0)
	if err := s.Set(ctx, "short", []byte("v"), time.Second); err != nil {
		t.Fatal(err)
	}
	if err := s.Set(ctx, "touched", []byte("v"), time.Second); err != nil {
		t.Fatal(err)
	}
	if err := s.Touch(ctx, "touched", time.Hour); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"short", "touched"} {
		if _, err := s.Get(ctx, key); err != nil {
			t.Fatalf("Get(%s) before expiry: %v", key, err)
		}
	}
	// Expiry is in whole seconds, rounded up: gone within two.
	time.Sleep(2100 * time.Millisecond)
	if v, err := s.Get(ctx, "short"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Get(short) after expiry = %q, %v; want ErrNotFound", v, err)
	}
	if v, err := s.Get(ctx, "touched"); err != nil || string(v) != "v" {
		t.Fatalf("Get(touched) = %q, %v; want v", v, err)
	}
}

// checkBytes fails unless every shard's byte count is what its entries
// take.
func checkBytes(t *testing.T, c *cache) {
	t.Helper()
	for i := range c.shards {
		sh := &c.shards[i]
		sum := 0
		for _, e := range sh.m {
			sum += e.size()
		}
		if sum != sh.bytes {
			t.Fatalf("shard %d counts %d bytes, its entries take %d", i, sh.bytes, sum)
		}
	}
}

// TestCacheOrdering walks the cache through the interleavings its design
// turns on, one step at a time, and says what a read must find after each.
func TestCacheOrdering(t *testing.T) {
	const now = 1000
	type step func(c *cache)
	var (
		gen uint64
		w   *cached
		w2  *cached
	)
	miss := func(c *cache) { _, _, gen = c.get("k", nil, now) }
	fill := func(v string) step {
		return func(c *cache) { c.fill("k", gen, true, []byte(v), 0) }
	}
	begin := func(c *cache) { w = c.beginWrite("k") }
	begin2 := func(c *cache) { w2 = c.beginWrite("k") }
	end := func(v string) step {
		return func(c *cache) { c.endWrite(w, true, true, []byte(v), 0) }
	}
	end2 := func(v string) step {
		return func(c *cache) { c.endWrite(w2, true, true, []byte(v), 0) }
	}
	for _, tc := range []struct {
		name  string
		steps []step
		want  string // "" for a miss
	}{
		{"a read fills", []step{miss, fill("old")}, "old"},
		{"a write stores what it committed", []step{begin, end("new")}, "new"},
		{"a write that began and ended during a read's Badger call wins", []step{miss, begin, end("new"), fill("old")}, "new"},
		{"a read does not fill while a write is under way", []step{begin, miss, fill("old")}, ""},
		{"... and the write stores its value when it ends", []step{begin, miss, fill("old"), end("new")}, "new"},
		{"a read that began during a write does not fill after it", []step{begin, miss, end("new"), fill("old")}, "new"},
		{"overlapping writes store nothing", []step{begin, begin2, end("a"), end2("b")}, ""},
		{"... in either order", []step{begin, begin2, end2("b"), end("a")}, ""},
		{"a write after overlapping ones stores again", []step{begin, begin2, end("a"), end2("b"), begin, end("c")}, "c"},
		{"a write hides the value before it commits", []step{begin, end("a"), begin}, ""},
		{"a failed write leaves nothing", []step{begin, end("a"), begin, func(c *cache) { c.endWrite(w, false, true, []byte("b"), 0) }}, ""},
		{"a delete leaves nothing", []step{begin, end("a"), begin, func(c *cache) { c.endWrite(w, true, false, nil, 0) }}, ""},
		{"a write under way when the cache is cleared stores nothing", []step{begin, func(c *cache) { c.clear() }, end("a")}, ""},
		{"nothing is served during a drop", []step{begin, end("a"), func(c *cache) { c.dropping.Store(true) }}, ""},
		{"nothing is stored during a drop", []step{func(c *cache) { c.beginDrop() }, begin, end("a"), miss, fill("b"), func(c *cache) { c.dropping.Store(false) }}, ""},
		{"a read that missed before a drop does not fill after it", []step{miss, func(c *cache) { c.beginDrop(); c.endDrop() }, fill("old")}, ""},
		{"a read finding nothing removes the entry", []step{begin, end("a"), func(c *cache) { c.clear() }, miss, func(c *cache) { c.fill("k", gen, false, nil, 0) }}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newCache(1 << 20)
			for _, s := range tc.steps {
				s(c)
			}
			got, hit, _ := c.get("k", nil, now)
			if string(got) != tc.want || hit != (tc.want != "") {
				t.Errorf("get = %q (hit %v), want %q", got, hit, tc.want)
			}
			checkBytes(t, c)
		})
	}
}

// TestCacheExpiryBoundary: a cached entry is gone at its expiry second, as
// Badger's is, not a second later.
func TestCacheExpiryBoundary(t *testing.T) {
	c := newCache(1 << 20)
	_, _, gen := c.get("k", nil, 0)
	c.fill("k", gen, true, []byte("v"), 100)
	for _, tc := range []struct {
		now uint64
		hit bool
	}{{0, true}, {99, true}, {100, false}, {101, false}} {
		if _, hit, _ := c.get("k", nil, tc.now); hit != tc.hit {
			t.Errorf("at %d: hit %v, want %v", tc.now, hit, tc.hit)
		}
	}
}

// TestCacheKeepsNoCallerMemory: the cache copies keys and values in and
// values out, so callers may reuse their buffers, as the session backend
// does.
func TestCacheKeepsNoCallerMemory(t *testing.T) {
	ctx := context.Background()
	s := openCached(t, 0)
	keyBuf := []byte("key-1")
	value := []byte("value")
	if err := s.Set(ctx, unsafe.String(&keyBuf[0], len(keyBuf)), value, time.Hour); err != nil {
		t.Fatal(err)
	}
	copy(keyBuf, "key-2")
	copy(value, "XXXXX")
	got, err := s.Get(ctx, "key-1")
	if err != nil || string(got) != "value" {
		t.Fatalf("Get(key-1) = %q, %v; want value", got, err)
	}
	copy(got, "YYYYY")
	if got, err := s.Get(ctx, "key-1"); err != nil || string(got) != "value" {
		t.Fatalf("Get(key-1) after changing the last answer = %q, %v", got, err)
	}
	if _, err := s.Get(ctx, "key-2"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Get(key-2) = %v, want ErrNotFound", err)
	}
}

// TestClearCache: after a write through DB, ClearCache makes the Store
// read Badger again.
func TestClearCache(t *testing.T) {
	ctx := context.Background()
	s := openCached(t, 0)
	if err := s.Set(ctx, "k", []byte("old"), time.Hour); err != nil {
		t.Fatal(err)
	}
	if err := s.DB().Update(func(txn *bdg.Txn) error { return txn.Set([]byte("k"), []byte("restored")) }); err != nil {
		t.Fatal(err)
	}
	s.ClearCache()
	if v, err := s.Get(ctx, "k"); err != nil || string(v) != "restored" {
		t.Fatalf("Get = %q, %v; want restored", v, err)
	}
}

// TestCacheEntryMoves: a value that outgrows its entry's room, or shrinks
// to under half of it, moves the entry to a new allocation that the map
// then holds under a key of its own; one that fits is written in place.
// Reads see the latest value throughout, and the byte count follows.
func TestCacheEntryMoves(t *testing.T) {
	ctx := context.Background()
	s := openCached(t, 0)
	entry := func() *cached {
		t.Helper()
		sh := s.cache.shard("k")
		sh.mu.RLock()
		defer sh.mu.RUnlock()
		e := sh.m["k"]
		if e == nil {
			t.Fatal("no cache entry for k")
		}
		for k, v := range sh.m {
			if v == e && unsafe.StringData(k) != unsafe.StringData(e.key()) {
				t.Fatal("the map's key is not the entry's own copy")
			}
		}
		return e
	}
	var last *cached
	for i, tc := range []struct {
		value string
		moves bool
	}{
		{"0123456789", true},             // a new entry
		{"abcdefghij", false},            // same size: in place
		{"abcdef", false},                // 6 of 10: in place
		{strings.Repeat("x", 100), true}, // outgrows the room
		{strings.Repeat("y", 49), true},  // under half of 100
		{"", true},                       // empty: moves to no room at all
		{strings.Repeat("z", 300), true}, // and back
	} {
		if err := s.Set(ctx, "k", []byte(tc.value), time.Hour); err != nil {
			t.Fatal(err)
		}
		got, err := s.Get(ctx, "k")
		if err != nil || string(got) != tc.value {
			t.Fatalf("step %d: Get = %q, %v; want %q", i, got, err, tc.value)
		}
		e := entry()
		if moved := e != last; moved != tc.moves {
			t.Errorf("step %d (%d bytes): moved %v, want %v", i, len(tc.value), moved, tc.moves)
		}
		if e.key() != "k" || string(e.value()) != tc.value || e.writers != 0 {
			t.Fatalf("step %d: entry holds %q = %q, %d writers", i, e.key(), e.value(), e.writers)
		}
		last = e
		checkBytes(t, s.cache)
	}
}

// TestCachedHoldsNoPointer: an entry's header lives in memory allocated as
// bytes, which the garbage collector does not scan. A pointer added to it
// would be invisible to the collector, and what it points to freed under
// it.
func TestCachedHoldsNoPointer(t *testing.T) {
	typ := reflect.TypeFor[cached]()
	for i := range typ.NumField() {
		f := typ.Field(i)
		switch f.Type.Kind() {
		case reflect.Bool, reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
			reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Float32, reflect.Float64:
		default:
			t.Errorf("cached.%s is a %s: the header must hold plain numbers only", f.Name, f.Type)
		}
	}
}
