package badgerstore

import (
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	bdg "github.com/dgraph-io/badger/v4"

	"github.com/kvsession/kvsession/store"
	"github.com/kvsession/kvsession/store/storetest"
)

func openT(t *testing.T, opts Options) *Store {
	t.Helper()
	s, err := Open(opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func TestConformanceDisk(t *testing.T) {
	t.Parallel()
	storetest.Run(t, storetest.Harness{
		New: func(t *testing.T) store.Store {
			s, err := Open(Options{Dir: t.TempDir()})
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			return s
		},
		Reopen: func(t *testing.T, s store.Store) store.Store {
			dir := s.(*Store).DB().Opts().Dir
			if err := s.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			s2, err := Open(Options{Dir: dir})
			if err != nil {
				t.Fatalf("reopening: %v", err)
			}
			return s2
		},
	})
}

func TestConformanceInMemory(t *testing.T) {
	t.Parallel()
	storetest.Run(t, storetest.Harness{
		New: func(t *testing.T) store.Store {
			s, err := Open(Options{InMemory: true})
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			return s
		},
	})
}

// TestConformanceNoCache: with its cache off, every read goes to Badger.
func TestConformanceNoCache(t *testing.T) {
	t.Parallel()
	storetest.Run(t, storetest.Harness{
		New: func(t *testing.T) store.Store {
			s, err := Open(Options{InMemory: true, CacheSize: -1})
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			return s
		},
	})
}

func TestOpenValidation(t *testing.T) {
	tests := []struct {
		name string
		opts Options
		want string // substring of the error; "" for success
	}{
		{"NoDir", Options{}, "Dir is required"},
		{"InMemoryWithDir", Options{InMemory: true, Dir: "x"}, "Dir must be empty"},
		{"RatioTooHigh", Options{InMemory: true, GCDiscardRatio: 1}, "GCDiscardRatio"},
		{"RatioNegative", Options{InMemory: true, GCDiscardRatio: -0.5}, "GCDiscardRatio"},
		{"InMemory", Options{InMemory: true}, ""},
		{"GCDisabled", Options{InMemory: true, GCInterval: -1}, ""},
		{"CacheTooSmall", Options{InMemory: true, CacheSize: minCacheSize - 1}, "CacheSize"},
		{"CacheSmallest", Options{InMemory: true, CacheSize: minCacheSize}, ""},
		{"CacheOff", Options{InMemory: true, CacheSize: -1}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Open(tc.opts)
			if err == nil {
				defer s.Close()
			}
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("Open: %v, want success", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("Open: %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

func TestOptionsReachBadger(t *testing.T) {
	var logged atomic.Int64
	var seen bdg.Options
	s := openT(t, Options{
		Dir:        t.TempDir(),
		SyncWrites: true,
		Logger:     countingLogger{&logged},
		Tune: func(o *bdg.Options) {
			seen = *o
			o.NumVersionsToKeep = 3
		},
	})
	got := s.DB().Opts()
	if !seen.SyncWrites || !got.SyncWrites {
		t.Error("SyncWrites did not reach Badger")
	}
	if seen.ValueThreshold != 512 || seen.NumMemtables != 2 {
		t.Errorf("Tune saw ValueThreshold %d, NumMemtables %d; want this package's sizing (512, 2)",
			seen.ValueThreshold, seen.NumMemtables)
	}
	if got.NumVersionsToKeep != 3 {
		t.Errorf("NumVersionsToKeep = %d; Tune's change was not applied", got.NumVersionsToKeep)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if logged.Load() == 0 {
		t.Error("the Logger option received nothing from Badger")
	}
}

type countingLogger struct{ n *atomic.Int64 }

func (l countingLogger) Errorf(string, ...any)   { l.n.Add(1) }
func (l countingLogger) Warningf(string, ...any) { l.n.Add(1) }
func (l countingLogger) Infof(string, ...any)    { l.n.Add(1) }
func (l countingLogger) Debugf(string, ...any)   { l.n.Add(1) }

func TestExpiresAtRoundsUp(t *testing.T) {
	base := time.Unix(1_700_000_000, 0)
	tests := []struct {
		now  time.Time
		ttl  time.Duration
		want int64 // seconds after base; -1 for no expiry
	}{
		{base, 0, -1},
		{base, time.Nanosecond, 1},
		{base, time.Second, 1},
		{base, 1500 * time.Millisecond, 2},
		{base, 2 * time.Second, 2},
		{base.Add(time.Nanosecond), time.Second, 2},
		{base.Add(999 * time.Millisecond), time.Second, 2},
		{base.Add(500 * time.Millisecond), 1500 * time.Millisecond, 2},
		{base.Add(500 * time.Millisecond), 1501 * time.Millisecond, 3},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("%v+%v", tc.now.Sub(base), tc.ttl), func(t *testing.T) {
			got := expiresAt(tc.now, tc.ttl)
			want := uint64(base.Unix() + tc.want)
			if tc.want < 0 {
				want = 0
			}
			if got != want {
				t.Errorf("expiresAt = base%+d, want base%+d", int64(got)-base.Unix(), int64(want)-base.Unix())
			}
			// Whatever the rounding, never before now+ttl.
			if got != 0 && time.Unix(int64(got), 0).Before(tc.now.Add(tc.ttl)) {
				t.Errorf("expiry %v is before now+ttl %v", time.Unix(int64(got), 0), tc.now.Add(tc.ttl))
			}
		})
	}
}

func TestTTLNeverShortened(t *testing.T) {
	s := openT(t, Options{InMemory: true})
	ctx := t.Context()
	const ttl = 1500 * time.Millisecond
	before := time.Now()
	if err := s.Set(ctx, "k", []byte("v"), ttl); err != nil {
		t.Fatal(err)
	}
	d, err := s.ExpiresIn(ctx, "k")
	elapsed := time.Since(before)
	if err != nil {
		t.Fatal(err)
	}
	if d < ttl-elapsed || d > ttl+time.Second {
		t.Errorf("ExpiresIn after Set with %v = %v, want between %v and %v", ttl, d, ttl-elapsed, ttl+time.Second)
	}
	err = s.DB().View(func(txn *bdg.Txn) error {
		item, err := txn.Get([]byte("k"))
		if err != nil {
			return err
		}
		if exp := time.Unix(int64(item.ExpiresAt()), 0); exp.Before(before.Add(ttl)) {
			t.Errorf("Badger expiry %v is before Set time + TTL %v", exp, before.Add(ttl))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestGCLoopStopsOnClose(t *testing.T) {
	s, err := Open(Options{
		Dir:        t.TempDir(),
		GCInterval: time.Millisecond,
		// Small value log files give the collector files to look at.
		Tune: func(o *bdg.Options) { o.ValueLogFileSize = 1 << 20 },
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	value := make([]byte, 4096)
	for i := range 600 {
		key := fmt.Sprint("k", i%50)
		if err := s.Set(ctx, key, value, 0); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(20 * time.Millisecond) // let the loop run a few times
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-s.gcDone:
	default:
		t.Fatal("GC loop still running after Close returned")
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestDataSurvivesReopenWithManyWrites(t *testing.T) {
	// Enough data to flush memtables and spill into several value log
	// files, unlike the conformance suite's handful of keys.
	dir := t.TempDir()
	tune := func(o *bdg.Options) { o.ValueLogFileSize = 1 << 20 }
	s, err := Open(Options{Dir: dir, Tune: tune})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	value := func(i int) []byte { return []byte(strings.Repeat(fmt.Sprint(i, ","), 100)) }
	const n = 3000
	for i := range n {
		if err := s.Set(ctx, fmt.Sprint("k", i), value(i), time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = Open(Options{Dir: dir, Tune: tune})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for i := range n {
		v, err := s.Get(ctx, fmt.Sprint("k", i))
		if err != nil || string(v) != string(value(i)) {
			t.Fatalf("Get(k%d) after reopening = %d bytes, %v", i, len(v), err)
		}
	}
}

func BenchmarkStore(b *testing.B) {
	storetest.Benchmark(b, func(b *testing.B) store.Store {
		s, err := Open(Options{Dir: b.TempDir()})
		if err != nil {
			b.Fatal(err)
		}
		return s
	})
}

func TestInMemoryValueLimit(t *testing.T) {
	s := openT(t, Options{InMemory: true})
	ctx := t.Context()
	for _, n := range []int{1<<20 - 1, 1 << 20, 2 << 20} {
		err := s.Set(ctx, "k", make([]byte, n), 0)
		switch {
		case n < 1<<20 && err != nil:
			t.Errorf("Set of %d bytes: %v", n, err)
		case n >= 1<<20 && !errors.Is(err, ErrValueTooLarge):
			t.Errorf("Set of %d bytes: %v, want ErrValueTooLarge", n, err)
		}
	}
	if _, err := Open(Options{InMemory: true, Tune: func(o *bdg.Options) { o.ValueThreshold = 100 }}); err == nil {
		t.Error("Open accepted an in-memory database with a ValueThreshold under 1 KiB")
	}
}
