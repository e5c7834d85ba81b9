package memstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"github.com/kvsession/kvsession/internal/race"
	"github.com/kvsession/kvsession/store"
	"github.com/kvsession/kvsession/store/storetest"
)

// fakeClock is safe for concurrent use because the sweeper reads it from its
// own goroutine.
type fakeClock struct{ ns atomic.Int64 }

func newFakeClock() *fakeClock {
	c := &fakeClock{}
	c.ns.Store(time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	return c
}

func (c *fakeClock) Now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *fakeClock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

func TestConformance(t *testing.T) {
	clock := newFakeClock()
	storetest.Run(t, storetest.Harness{
		New: func(t *testing.T) store.Store {
			return New(Options{Now: clock.Now, Shards: 4})
		},
		Advance: clock.Advance,
	})
}

// The real clock goes through monotonic readings the fake one lacks, so run
// the suite once on it as well.
func TestConformanceRealClock(t *testing.T) {
	storetest.Run(t, storetest.Harness{
		New: func(t *testing.T) store.Store { return New(Options{}) },
	})
}

func TestShardCount(t *testing.T) {
	tests := []struct{ in, want int }{
		{0, 64}, {-3, 64}, {1, 1}, {2, 2}, {3, 4}, {64, 64}, {65, 128}, {1000, 1024},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprint(tc.in), func(t *testing.T) {
			s := New(Options{Shards: tc.in})
			defer s.Close()
			if got := len(s.shards); got != tc.want {
				t.Errorf("Shards %d: got %d shards, want %d", tc.in, got, tc.want)
			}
		})
	}
}

func TestSweepReclaimsExpired(t *testing.T) {
	clock := newFakeClock()
	// An hour-long interval keeps the background sweeper out of the way.
	s := New(Options{Now: clock.Now, SweepInterval: time.Hour})
	defer s.Close()
	ctx := t.Context()
	for i := range 100 {
		if err := s.Set(ctx, fmt.Sprint("short", i), []byte("v"), time.Second); err != nil {
			t.Fatal(err)
		}
		if err := s.Set(ctx, fmt.Sprint("long", i), []byte("v"), time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	if got := s.Len(); got != 200 {
		t.Fatalf("Len = %d, want 200", got)
	}
	clock.Advance(time.Second)
	// Expired entries are invisible at once but hold memory until a sweep.
	if _, err := s.Get(ctx, "short0"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Get of an expired entry: %v, want ErrNotFound", err)
	}
	if got := s.Len(); got != 200 {
		t.Errorf("Len before Sweep = %d, want 200", got)
	}
	s.Sweep()
	if got := s.Len(); got != 100 {
		t.Errorf("Len after Sweep = %d, want 100", got)
	}
	if _, err := s.Get(ctx, "long0"); err != nil {
		t.Errorf("Get of a live entry after Sweep: %v", err)
	}
}

func TestBackgroundSweeper(t *testing.T) {
	clock := newFakeClock()
	s := New(Options{Now: clock.Now, SweepInterval: time.Millisecond})
	defer s.Close()
	for i := range 50 {
		if err := s.Set(t.Context(), fmt.Sprint(i), []byte("v"), time.Second); err != nil {
			t.Fatal(err)
		}
	}
	clock.Advance(time.Second)
	deadline := time.Now().Add(5 * time.Second)
	for s.Len() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("Len = %d five seconds after expiry; the sweeper is not running", s.Len())
		}
		time.Sleep(time.Millisecond)
	}
}

func TestShrinkAfterSpike(t *testing.T) {
	const spike = 4 * shrinkMinPeak
	tests := []struct {
		name   string
		reduce func(t *testing.T, s *Store, clock *fakeClock)
	}{
		{"Sweep", func(t *testing.T, s *Store, clock *fakeClock) {
			clock.Advance(time.Minute)
			s.Sweep()
		}},
		{"Delete", func(t *testing.T, s *Store, clock *fakeClock) {
			for i := range spike {
				if err := s.Delete(t.Context(), fmt.Sprint("spike", i)); err != nil {
					t.Fatal(err)
				}
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			clock := newFakeClock()
			s := New(Options{Now: clock.Now, Shards: 1, SweepInterval: time.Hour})
			defer s.Close()
			ctx := t.Context()
			for i := range 100 {
				if err := s.Set(ctx, fmt.Sprint("keep", i), []byte("v"), 0); err != nil {
					t.Fatal(err)
				}
			}
			for i := range spike {
				if err := s.Set(ctx, fmt.Sprint("spike", i), []byte("v"), time.Minute); err != nil {
					t.Fatal(err)
				}
			}
			sh := &s.shards[0]
			if sh.peak != spike+100 {
				t.Fatalf("peak = %d, want %d", sh.peak, spike+100)
			}
			before := mapIdentity(sh)

			tc.reduce(t, s, clock)

			if mapIdentity(sh) == before {
				t.Error("the map was not rebuilt after shrinking to 100 of its peak")
			}
			// Deleting one by one may rebuild more than once on the way
			// down; either way the peak must have been reset.
			if sh.peak >= spike/shrinkFactor || sh.peak < len(sh.m) {
				t.Errorf("peak = %d after rebuild with %d entries left", sh.peak, len(sh.m))
			}
			if got := s.Len(); got != 100 {
				t.Errorf("Len = %d, want 100", got)
			}
			for i := range 100 {
				if _, err := s.Get(ctx, fmt.Sprint("keep", i)); err != nil {
					t.Fatalf("Get(keep%d) after rebuild: %v", i, err)
				}
			}
		})
	}
}

func mapIdentity(sh *shard) uintptr {
	return *(*uintptr)(unsafe.Pointer(&sh.m))
}

func TestNoShrinkBelowFloor(t *testing.T) {
	clock := newFakeClock()
	s := New(Options{Now: clock.Now, Shards: 1, SweepInterval: time.Hour})
	defer s.Close()
	for i := range shrinkMinPeak {
		if err := s.Set(t.Context(), fmt.Sprint(i), []byte("v"), time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	before := mapIdentity(&s.shards[0])
	clock.Advance(time.Minute)
	s.Sweep()
	if mapIdentity(&s.shards[0]) != before {
		t.Error("a map that never grew past the floor was rebuilt")
	}
}

// Keys are often unsafe views of a request buffer that is reused once the
// request is done (fasthttp). The store must keep its own copy, including
// when a Set overwrites the key, since assigning to an existing map key
// replaces the stored string with the caller's.
func TestKeyIsCopied(t *testing.T) {
	for _, tc := range []struct {
		name   string
		second string // the second value: "v2" is rewritten in place, "v22" is not
		touch  bool
	}{
		{"in place", "v2", false},
		{"in place, then Touch", "v2", true},
		{"new buffer", "v22", false},
		{"new buffer, then Touch", "v22", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := New(Options{Shards: 1})
			defer s.Close()
			ctx := t.Context()
			buf := []byte("session-1")
			key := unsafe.String(&buf[0], len(buf))
			if err := s.Set(ctx, key, []byte("v1"), 0); err != nil {
				t.Fatal(err)
			}
			if err := s.Set(ctx, key, []byte(tc.second), 0); err != nil {
				t.Fatal(err)
			}
			if tc.touch {
				if err := s.Touch(ctx, key, time.Hour); err != nil {
					t.Fatal(err)
				}
			}
			copy(buf, "XXXXXXXXX")
			v, err := s.Get(ctx, "session-1")
			if err != nil || string(v) != tc.second {
				t.Errorf(`Get("session-1") after the caller's buffer changed = %q, %v; want %q`, v, err, tc.second)
			}
		})
	}
}

// TestOverwrites: whatever the lengths of the values a key is given in
// turn, in place or not, it reads back the last one, exactly, and keeps
// its expiry.
func TestOverwrites(t *testing.T) {
	clock := newFakeClock()
	s := New(Options{Shards: 1, Now: clock.Now})
	defer s.Close()
	ctx := t.Context()
	steps := []struct {
		value string
		ttl   time.Duration
	}{
		{"abcdef", time.Hour},
		{"ghijkl", 2 * time.Hour}, // same length: in place
		{"mn", time.Hour},         // shorter
		{"opqrstuvwxyz", 0},       // longer, no expiry
		{"", time.Hour},           // empty
		{"", time.Minute},         // empty again, in place
		{"z", time.Hour},
	}
	for i, st := range steps {
		if err := s.Set(ctx, "k", []byte(st.value), st.ttl); err != nil {
			t.Fatalf("step %d: Set: %v", i, err)
		}
		if err := s.Set(ctx, "neighbour", []byte(fmt.Sprint("n", i)), 0); err != nil {
			t.Fatal(err)
		}
		v, err := s.Get(ctx, "k")
		if err != nil || string(v) != st.value {
			t.Fatalf("step %d: Get = %q, %v; want %q", i, v, err, st.value)
		}
		left, err := s.ExpiresIn(ctx, "k")
		want := st.ttl
		if st.ttl == 0 {
			want = store.NoExpiry
		}
		if err != nil || left != want {
			t.Fatalf("step %d: ExpiresIn = %v, %v; want %v", i, left, err, want)
		}
		if n, err := s.Get(ctx, "neighbour"); err != nil || string(n) != fmt.Sprint("n", i) {
			t.Fatalf("step %d: neighbour = %q, %v", i, n, err)
		}
	}
	// A rewrite in place of an expired entry brings it back with its new
	// TTL, as a fresh Set would.
	clock.Advance(2 * time.Hour)
	if _, err := s.Get(ctx, "k"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Get after expiry: %v", err)
	}
	if err := s.Set(ctx, "k", []byte("y"), time.Hour); err != nil {
		t.Fatal(err)
	}
	if v, err := s.Get(ctx, "k"); err != nil || string(v) != "y" {
		t.Fatalf("Get after rewriting an expired entry = %q, %v", v, err)
	}
}

// TestNoTornReads: a value rewritten in place while others read it is
// never seen half old, half new. (Under -race, copying outside the lock
// is also reported as a race.)
func TestNoTornReads(t *testing.T) {
	s := New(Options{Shards: 1})
	defer s.Close()
	ctx := t.Context()
	a, b := bytes.Repeat([]byte("a"), 4096), bytes.Repeat([]byte("b"), 4096)
	if err := s.Set(ctx, "k", a, 0); err != nil {
		t.Fatal(err)
	}
	var (
		stop  atomic.Bool
		reads atomic.Int64
		wg    sync.WaitGroup
	)
	errs := make(chan string, 4)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 0, 4096)
			for !stop.Load() {
				v, err := s.GetAppend(ctx, "k", buf[:0])
				if err != nil || (!bytes.Equal(v, a) && !bytes.Equal(v, b)) {
					errs <- fmt.Sprintf("read %d bytes, %d of them 'a', err %v", len(v), bytes.Count(v, []byte("a")), err)
					return
				}
				reads.Add(1)
			}
		}()
	}
	// Writes go on until the readers have read plenty while they ran, so
	// that a copy taken outside the lock has its chance to tear.
	for i := 0; reads.Load() < 50000 && len(errs) == 0; i++ {
		v := a
		if i%2 == 1 {
			v = b
		}
		if err := s.Set(ctx, "k", v, 0); err != nil {
			t.Fatal(err)
		}
	}
	stop.Store(true)
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}

func TestCloseStopsSweeper(t *testing.T) {
	s := New(Options{SweepInterval: time.Millisecond})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// Close waits for the sweeper, so it must be gone by now, not later.
	select {
	case <-s.done:
	default:
		t.Fatal("sweeper still running after Close returned")
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	s.Sweep() // must not panic
	if n := s.Len(); n != 0 {
		t.Errorf("Len after Close = %d, want 0", n)
	}
}

func TestAllocations(t *testing.T) {
	if race.Enabled {
		t.Skip("the race detector changes allocation counts")
	}
	s := New(Options{})
	defer s.Close()
	ctx := context.Background()
	value := make([]byte, 512)
	if err := s.Set(ctx, "key", value, time.Hour); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		fn   func()
	}{
		{"Get", func() { _, _ = s.Get(ctx, "key") }},
		{"SetSameLength", func() { _ = s.Set(ctx, "key", value, time.Hour) }},
		{"SetOtherLength", func() {
			// Alternating lengths: every call changes the length.
			value = make([]byte, 768-len(value))
			_ = s.Set(ctx, "key", value, time.Hour)
		}},
		{"Touch", func() { _ = s.Touch(ctx, "key", time.Hour) }},
		{"Exists", func() { _, _ = s.Exists(ctx, "key") }},
	}
	// A value the length of the one it replaces is written in place; any
	// other length gets a buffer of its own size (two allocations here:
	// the test's new value and the store's buffer).
	want := map[string]float64{"Get": 1, "SetSameLength": 0, "SetOtherLength": 2, "Touch": 0, "Exists": 0}
	for _, tc := range tests {
		if got := testing.AllocsPerRun(1000, tc.fn); got != want[tc.name] {
			t.Errorf("%s: %v allocations, want %v", tc.name, got, want[tc.name])
		}
	}
}

func BenchmarkStore(b *testing.B) {
	storetest.Benchmark(b, func(*testing.B) store.Store { return New(Options{}) })
}

// PurgeExpired removes what Sweep would, values and set members, and
// counts them; Len shows the memory given back.
func TestPurgeExpiredCounts(t *testing.T) {
	tests := []struct {
		name                  string
		values, members, live int
	}{
		{"nothing expired", 0, 0, 10},
		{"values only", 100, 0, 100},
		{"members only", 0, 30, 5},
		{"both", 64, 17, 3},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			clock := newFakeClock()
			s := New(Options{Now: clock.Now, SweepInterval: time.Hour, Shards: 8})
			defer s.Close()
			ctx := t.Context()
			for i := range tc.values {
				if err := s.Set(ctx, fmt.Sprint("short", i), []byte("v"), time.Second); err != nil {
					t.Fatal(err)
				}
			}
			for i := range tc.members {
				if err := s.AddMember(ctx, fmt.Sprint("set", i%3), fmt.Sprint("m", i), time.Second); err != nil {
					t.Fatal(err)
				}
			}
			for i := range tc.live {
				if err := s.Set(ctx, fmt.Sprint("live", i), []byte("v"), time.Hour); err != nil {
					t.Fatal(err)
				}
				if err := s.AddMember(ctx, "set0", fmt.Sprint("live", i), 0); err != nil {
					t.Fatal(err)
				}
			}
			clock.Advance(time.Second)
			n, err := s.PurgeExpired(ctx)
			if err != nil || n != tc.values+tc.members {
				t.Errorf("PurgeExpired = %d, %v; want %d", n, err, tc.values+tc.members)
			}
			if got := s.Len(); got != tc.live {
				t.Errorf("Len after PurgeExpired = %d, want %d", got, tc.live)
			}
			if ms, err := s.Members(ctx, "set0"); err != nil || len(ms) != tc.live {
				t.Errorf("Members(set0) = %d members, %v; want %d", len(ms), err, tc.live)
			}
		})
	}
}

// Scan copies each shard's values under its read lock and calls fn with
// the lock let go: fn can take that shard's write lock (Set, Delete) even
// while another goroutine waits for it.
func TestScanReleasesShardLocks(t *testing.T) {
	s := New(Options{Shards: 1}) // every key in the shard Scan is reading
	defer s.Close()
	ctx := t.Context()
	for i := range 10 {
		if err := s.Set(ctx, fmt.Sprint("k", i), []byte("v"), 0); err != nil {
			t.Fatal(err)
		}
	}
	done := make(chan error, 1)
	go func() {
		done <- s.Scan(ctx, "k", func(key string, _ []byte) error {
			if err := s.Set(ctx, "other", []byte("w"), 0); err != nil {
				return err
			}
			return s.Delete(ctx, key)
		})
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Scan: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Scan whose fn writes the shard it reads did not return: deadlocked")
	}
	if got := s.Len(); got != 1 {
		t.Errorf("Len = %d after deleting every scanned key, want 1 (other)", got)
	}
}
