package lock

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kvsession/kvsession/internal/race"
)

// long is a wait or lease that tests never expect to reach.
const long = 5 * time.Second

// checkNoLeak fails t if goroutines started during the test outlive it.
func checkNoLeak(t *testing.T) {
	t.Helper()
	before := runtime.NumGoroutine()
	t.Cleanup(func() {
		var after int
		for i := 0; i < 100; i++ {
			if after = runtime.NumGoroutine(); after <= before {
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
		t.Errorf("goroutines: %d before, %d after", before, after)
	})
}

// checkEmpty fails t if tb still has entries.
func checkEmpty(t *testing.T, tb *Table) {
	t.Helper()
	if n := tb.len(); n != 0 {
		t.Errorf("table holds %d entries after everything was released, want 0", n)
	}
}

// waitQueued waits until n Acquire calls are queued on key.
func waitQueued(t *testing.T, tb *Table, key string, n int) {
	t.Helper()
	deadline := time.Now().Add(time.Second)
	for tb.waiting(key) < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d waiters queued on %q, want %d", tb.waiting(key), key, n)
		}
		runtime.Gosched()
		time.Sleep(100 * time.Microsecond)
	}
}

func mustAcquire(t *testing.T, tb *Table, key string, lease time.Duration) Token {
	t.Helper()
	tok, err := tb.Acquire(context.Background(), key, lease, long)
	if err != nil {
		t.Fatalf("Acquire(%q): %v", key, err)
	}
	if tok == 0 {
		t.Fatalf("Acquire(%q) returned the zero Token", key)
	}
	return tok
}

func TestMutualExclusion(t *testing.T) {
	for _, tc := range []struct {
		name  string
		keys  int
		lease time.Duration
	}{
		{"one key no lease", 1, 0},
		{"one key with lease", 1, long},
		{"four keys", 4, long},
	} {
		t.Run(tc.name, func(t *testing.T) {
			checkNoLeak(t)
			const goroutines, increments = 50, 200
			tb := New()
			counters := make([]int, tc.keys) // guarded only by the locks
			var wg sync.WaitGroup
			for g := 0; g < goroutines; g++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := 0; i < increments; i++ {
						k := (g + i) % tc.keys
						key := "session-" + strconv.Itoa(k)
						tok, err := tb.Acquire(context.Background(), key, tc.lease, long)
						if err != nil {
							t.Error(err)
							return
						}
						counters[k]++
						if !tb.Release(key, tok) {
							t.Error("Release of a held lock returned false")
							return
						}
					}
				}()
			}
			wg.Wait()
			total := 0
			for _, c := range counters {
				total += c
			}
			if total != goroutines*increments {
				t.Errorf("counter = %d, want %d", total, goroutines*increments)
			}
			checkEmpty(t, tb)
		})
	}
}

func TestUnrelatedKeysDoNotBlock(t *testing.T) {
	checkNoLeak(t)
	tb := New()
	// Hold many keys at once: they land in all shards, sharing some.
	toks := make([]Token, 500)
	for i := range toks {
		tok, err := tb.Acquire(context.Background(), "k"+strconv.Itoa(i), long, 10*time.Millisecond)
		if err != nil {
			t.Fatalf("key %d: %v", i, err)
		}
		toks[i] = tok
	}
	if n := tb.len(); n != len(toks) {
		t.Errorf("len = %d, want %d", n, len(toks))
	}
	for i, tok := range toks {
		if !tb.Release("k"+strconv.Itoa(i), tok) {
			t.Errorf("Release(k%d) = false", i)
		}
	}
	checkEmpty(t, tb)
}

func TestReleaseWrongToken(t *testing.T) {
	tb := New()
	a := mustAcquire(t, tb, "a", long)
	b := mustAcquire(t, tb, "b", long)
	for _, tc := range []struct {
		name string
		key  string
		tok  Token
	}{
		{"zero token", "a", 0},
		{"other key's token", "a", b},
		{"unknown key", "c", a},
		{"made-up token", "a", a + 1000},
	} {
		if tb.Release(tc.key, tc.tok) {
			t.Errorf("%s: Release = true, want false", tc.name)
		}
	}
	if !tb.Release("a", a) || !tb.Release("b", b) {
		t.Fatal("Release of held locks returned false")
	}
	if tb.Release("a", a) {
		t.Error("second Release = true, want false")
	}
	checkEmpty(t, tb)
}

func TestLeaseExpiry(t *testing.T) {
	const lease = 20 * time.Millisecond
	t.Run("waiter takes over", func(t *testing.T) {
		checkNoLeak(t)
		tb := New()
		mustAcquire(t, tb, "s", lease) // never released
		start := time.Now()
		tok, err := tb.Acquire(context.Background(), "s", 0, long)
		if err != nil {
			t.Fatal(err)
		}
		if d := time.Since(start); d < lease/2 || d > time.Second {
			t.Errorf("took over after %v, want about %v", d, lease)
		}
		if !tb.Release("s", tok) {
			t.Error("Release after takeover = false")
		}
		checkEmpty(t, tb)
	})
	t.Run("new Acquire after expiry", func(t *testing.T) {
		tb := New()
		mustAcquire(t, tb, "s", lease)
		time.Sleep(lease + 5*time.Millisecond)
		start := time.Now()
		tok := mustAcquire(t, tb, "s", 0)
		if d := time.Since(start); d > lease {
			t.Errorf("Acquire of an expired lock took %v", d)
		}
		tb.Release("s", tok)
		checkEmpty(t, tb)
	})
	t.Run("expired but not taken over still releases", func(t *testing.T) {
		tb := New()
		tok := mustAcquire(t, tb, "s", time.Millisecond)
		time.Sleep(5 * time.Millisecond)
		if !tb.Release("s", tok) {
			t.Error("Release = false, want true: nobody took the lock over")
		}
		checkEmpty(t, tb)
	})
	t.Run("granted waiter's lease is watched", func(t *testing.T) {
		// Holder without a lease hands over to w1 (lease 20ms), which never
		// releases; w2, queued behind, must take over when w1's lease ends.
		checkNoLeak(t)
		tb := New()
		h := mustAcquire(t, tb, "s", 0)
		got := make(chan Token, 1)
		go func() {
			tok, err := tb.Acquire(context.Background(), "s", lease, long)
			if err != nil {
				t.Error(err)
			}
			got <- tok
		}()
		waitQueued(t, tb, "s", 1)
		done := make(chan error, 1)
		go func() {
			tok, err := tb.Acquire(context.Background(), "s", 0, long)
			if err == nil && !tb.Release("s", tok) {
				err = errors.New("w2's Release = false")
			}
			done <- err
		}()
		waitQueued(t, tb, "s", 2)
		start := time.Now()
		tb.Release("s", h)
		w1 := <-got
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
			if d := time.Since(start); d < lease/2 {
				t.Errorf("w2 acquired after %v, before w1's lease of %v ran out", d, lease)
			}
		case <-time.After(time.Second):
			t.Fatal("w2 did not take over after w1's lease ran out")
		}
		if tb.Release("s", w1) {
			t.Error("w1's stale Release = true")
		}
		checkEmpty(t, tb)
	})
	t.Run("new head watches the lease", func(t *testing.T) {
		// w1 heads the queue and gives up; w2 must then watch the holder's
		// lease itself rather than sleep until its own long wait ends.
		checkNoLeak(t)
		tb := New()
		mustAcquire(t, tb, "s", 2*lease)
		w1 := make(chan error, 1)
		go func() {
			_, err := tb.Acquire(context.Background(), "s", 0, 5*time.Millisecond)
			w1 <- err
		}()
		waitQueued(t, tb, "s", 1)
		w2 := make(chan error, 1)
		go func() {
			tok, err := tb.Acquire(context.Background(), "s", 0, long)
			if err == nil {
				tb.Release("s", tok)
			}
			w2 <- err
		}()
		if err := <-w1; !errors.Is(err, ErrTimeout) {
			t.Fatalf("w1: %v, want ErrTimeout", err)
		}
		select {
		case err := <-w2:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(time.Second):
			t.Fatal("w2 did not take over after the holder's lease ran out")
		}
		checkEmpty(t, tb)
	})
}

func TestStaleRelease(t *testing.T) {
	checkNoLeak(t)
	tb := New()
	old := mustAcquire(t, tb, "s", 20*time.Millisecond)
	cur := mustAcquire(t, tb, "s", long) // waits for the lease, then takes over
	if cur == old {
		t.Fatal("takeover reused the old Token")
	}
	if tb.Release("s", old) {
		t.Error("stale Release = true, want false")
	}
	// The new holder still holds the lock.
	if _, err := tb.Acquire(context.Background(), "s", 0, 10*time.Millisecond); !errors.Is(err, ErrTimeout) {
		t.Errorf("Acquire after stale Release: %v, want ErrTimeout", err)
	}
	if !tb.Release("s", cur) {
		t.Error("new holder's Release = false")
	}
	checkEmpty(t, tb)
}

func TestBoundedWait(t *testing.T) {
	checkNoLeak(t)
	tb := New()
	h := mustAcquire(t, tb, "s", long)
	const wait = 10 * time.Millisecond
	start := time.Now()
	tok, err := tb.Acquire(context.Background(), "s", long, wait)
	d := time.Since(start)
	if !errors.Is(err, ErrTimeout) {
		t.Fatalf("err = %v, want ErrTimeout", err)
	}
	if tok != 0 {
		t.Errorf("Token = %d on error, want 0", tok)
	}
	if want := "kvsession: session lock not acquired within 10ms"; err.Error() != want {
		t.Errorf("err = %q, want %q", err, want)
	}
	if d < wait || d > 500*time.Millisecond {
		t.Errorf("gave up after %v, want about %v", d, wait)
	}
	if n := tb.waiting("s"); n != 0 {
		t.Errorf("%d waiters left queued", n)
	}
	tb.Release("s", h)
	checkEmpty(t, tb)
}

func TestContextCancel(t *testing.T) {
	for _, tc := range []struct {
		name   string
		ctx    func() (context.Context, context.CancelFunc)
		target error
	}{
		{"cancelled while waiting", func() (context.Context, context.CancelFunc) {
			ctx, cancel := context.WithCancel(context.Background())
			time.AfterFunc(10*time.Millisecond, cancel)
			return ctx, cancel
		}, context.Canceled},
		{"deadline while waiting", func() (context.Context, context.CancelFunc) {
			return context.WithTimeout(context.Background(), 10*time.Millisecond)
		}, context.DeadlineExceeded},
		{"already cancelled", func() (context.Context, context.CancelFunc) {
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			return ctx, cancel
		}, context.Canceled},
	} {
		t.Run(tc.name, func(t *testing.T) {
			checkNoLeak(t)
			tb := New()
			h := mustAcquire(t, tb, "s", long)
			ctx, cancel := tc.ctx()
			defer cancel()
			start := time.Now()
			_, err := tb.Acquire(ctx, "s", 0, 0) // no wait bound: only ctx ends it
			if !errors.Is(err, tc.target) {
				t.Fatalf("err = %v, want %v", err, tc.target)
			}
			if errors.Is(err, ErrTimeout) {
				t.Error("ctx error also matches ErrTimeout")
			}
			if d := time.Since(start); d > 500*time.Millisecond {
				t.Errorf("returned %v after start", d)
			}
			if n := tb.waiting("s"); n != 0 {
				t.Errorf("%d waiters left queued", n)
			}
			tb.Release("s", h)
			checkEmpty(t, tb)
		})
	}
	t.Run("already cancelled, lock free", func(t *testing.T) {
		tb := New()
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if _, err := tb.Acquire(ctx, "s", 0, long); !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v, want context.Canceled", err)
		}
		checkEmpty(t, tb)
	})
}

func TestFIFO(t *testing.T) {
	checkNoLeak(t)
	tb := New()
	h := mustAcquire(t, tb, "s", 0)
	const n = 8
	var mu sync.Mutex
	var order []int
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tok, err := tb.Acquire(context.Background(), "s", 0, long)
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			order = append(order, i)
			mu.Unlock()
			tb.Release("s", tok)
		}()
		waitQueued(t, tb, "s", i+1)
	}
	tb.Release("s", h)
	wg.Wait()
	want := make([]int, n)
	for i := range want {
		want[i] = i
	}
	if fmt.Sprint(order) != fmt.Sprint(want) {
		t.Errorf("grant order %v, want %v", order, want)
	}
	checkEmpty(t, tb)
}

// TestMixedStress runs holders that release, holders that abandon the lock to
// its lease, waiters that time out and waiters that are cancelled, all on few
// keys, and checks that the lock stayed exclusive while honoured and that the
// table empties.
func TestMixedStress(t *testing.T) {
	checkNoLeak(t)
	tb := New()
	const keys = 3
	// maxTok[k] is the newest Token handed out for key k, recorded after
	// Acquire returns. Tokens of a key increase, so if a holder sees a newer
	// one before its Release, someone took the lock over and that Release
	// must report false.
	var mu sync.Mutex
	var maxTok [keys]Token
	var wg sync.WaitGroup
	for g := 0; g < 32; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 40; i++ {
				k := (g*7 + i) % keys
				key := "k" + strconv.Itoa(k)
				ctx, cancel := context.WithTimeout(context.Background(), time.Duration(1+(g+i)%20)*time.Millisecond)
				lease := time.Duration(2+i%5) * time.Millisecond
				tok, err := tb.Acquire(ctx, key, lease, time.Duration(1+g%15)*time.Millisecond)
				cancel()
				if err != nil {
					if !errors.Is(err, ErrTimeout) && !errors.Is(err, context.DeadlineExceeded) {
						t.Errorf("unexpected error %v", err)
					}
					continue
				}
				mu.Lock()
				maxTok[k] = max(maxTok[k], tok)
				mu.Unlock()
				if (g+i)%4 == 0 {
					continue // abandon: the lease frees it
				}
				runtime.Gosched()
				mu.Lock()
				newer := maxTok[k] > tok
				mu.Unlock()
				if tb.Release(key, tok) && newer {
					t.Errorf("Release of %s with %d succeeded though it was taken over", key, tok)
				}
			}
		}()
	}
	wg.Wait()
	// Abandoned locks expire; taking each key over once more and releasing it
	// must empty the table.
	for k := 0; k < keys; k++ {
		key := "k" + strconv.Itoa(k)
		tok, err := tb.Acquire(context.Background(), key, 0, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		tb.Release(key, tok)
	}
	checkEmpty(t, tb)
}

func TestUncontendedAllocs(t *testing.T) {
	if race.Enabled {
		t.Skip("allocation counts differ under the race detector")
	}
	tb := New()
	ctx := context.Background()
	keys := []string{"a", strings.Repeat("x", 64)}
	for _, key := range keys {
		allocs := testing.AllocsPerRun(1000, func() {
			tok, err := tb.Acquire(ctx, key, time.Minute, time.Second)
			if err != nil || !tb.Release(key, tok) {
				t.Fatal("Acquire/Release failed")
			}
		})
		if allocs != 0 {
			t.Errorf("key len %d: %v allocs per Acquire+Release, want 0", len(key), allocs)
		}
	}
}

func BenchmarkUncontended(b *testing.B) {
	tb := New()
	ctx := context.Background()
	const key = "0123456789abcdef0123456789abcdef" // a session-id-sized key
	b.ReportAllocs()
	for b.Loop() {
		tok, err := tb.Acquire(ctx, key, time.Minute, time.Second)
		if err != nil {
			b.Fatal(err)
		}
		tb.Release(key, tok)
	}
}

func BenchmarkUncontendedParallelKeys(b *testing.B) {
	// Every goroutine its own key: measures shard contention only.
	tb := New()
	ctx := context.Background()
	var mu sync.Mutex
	next := 0
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		mu.Lock()
		key := fmt.Sprintf("session-%032d", next)
		next++
		mu.Unlock()
		for pb.Next() {
			tok, err := tb.Acquire(ctx, key, time.Minute, time.Second)
			if err != nil {
				b.Error(err)
				return
			}
			tb.Release(key, tok)
		}
	})
}

func BenchmarkContendedOneKey(b *testing.B) {
	tb := New()
	ctx := context.Background()
	const key = "0123456789abcdef0123456789abcdef"
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			tok, err := tb.Acquire(ctx, key, time.Minute, 10*time.Second)
			if err != nil {
				b.Error(err)
				return
			}
			tb.Release(key, tok)
		}
	})
}
