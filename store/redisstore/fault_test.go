package redisstore

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// Tests of what a Redis that stops answering does to callers: every call
// fails within CallTimeout even when its context would wait forever
// (finding 7), and locks whose TryLock or Unlock got no answer are released
// once Redis answers again instead of staying held for their whole lease
// (finding 6). Here the server "stops answering" behind a proxy that stops
// forwarding; stall_unix_test.go does the same with a real redis-server
// stopped with SIGSTOP and killed.

// boundSlack is how long past its bound a call may take before a test
// calls it a hang: generous for a loaded two-core machine running -race.
const boundSlack = 500 * time.Millisecond

// faultOps returns one call of each store method, on keys a test has set
// up with prepareFaultOps.
func faultOps(s *Store) []struct {
	name string
	fn   func(ctx context.Context) error
} {
	return []struct {
		name string
		fn   func(ctx context.Context) error
	}{
		{"Get", func(ctx context.Context) error { _, err := s.Get(ctx, "k"); return err }},
		{"Set", func(ctx context.Context) error { return s.Set(ctx, "k", []byte("w"), time.Hour) }},
		{"Swap", func(ctx context.Context) error { _, err := s.Swap(ctx, "k", []byte("v"), []byte("w"), 0); return err }},
		{"Delete", func(ctx context.Context) error { return s.Delete(ctx, "gone") }},
		{"Touch", func(ctx context.Context) error { return s.Touch(ctx, "k", time.Hour) }},
		{"Exists", func(ctx context.Context) error { _, err := s.Exists(ctx, "k"); return err }},
		{"ExpiresIn", func(ctx context.Context) error { _, err := s.ExpiresIn(ctx, "k"); return err }},
		{"AddMember", func(ctx context.Context) error { return s.AddMember(ctx, "set", "m", time.Hour) }},
		{"RemoveMember", func(ctx context.Context) error { return s.RemoveMember(ctx, "set", "x") }},
		{"Members", func(ctx context.Context) error { _, err := s.Members(ctx, "set"); return err }},
		{"TryLock", func(ctx context.Context) error { _, _, err := s.TryLock(ctx, "lk", time.Minute); return err }},
		{"Unlock", func(ctx context.Context) error { return s.Unlock(ctx, "lk", "tok") }},
		{"Update", func(ctx context.Context) error {
			return s.Update(ctx, "k", func(old []byte) ([]byte, time.Duration, bool) { return old, 0, true })
		}},
		{"DeleteAll", func(ctx context.Context) error { return s.DeleteAll(ctx) }},
		{"Scan", func(ctx context.Context) error { return s.Scan(ctx, "", func(string, []byte) error { return nil }) }},
	}
}

// warmUp runs every operation once against a server that answers, so that
// Redis has loaded the scripts (a held EVALSHA of an unknown script would
// need an EVAL after it), and enough calls that the client has opened
// every connection it spreads commands over: opening one does not heed a
// deadline the way a call on an open one does (see the package
// documentation), and the tests here are about calls on open ones.
func warmUp(t *testing.T, s *Store) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := s.Set(ctx, "k", []byte("v"), 0); err != nil {
		t.Fatal(err)
	}
	for _, op := range faultOps(s) {
		if op.name == "Set" || op.name == "Swap" || op.name == "DeleteAll" {
			continue // keep k as it is
		}
		if err := op.fn(ctx); err != nil {
			t.Fatalf("%s before the fault: %v", op.name, err)
		}
	}
	if _, err := s.Swap(ctx, "other", nil, nil, 0); err != nil {
		t.Fatal(err)
	}
	for range 64 {
		if _, err := s.Exists(ctx, "k"); err != nil {
			t.Fatal(err)
		}
	}
}

// TestCallTimeoutDefault checks how Options.CallTimeout is read: zero is
// the two-second default, negative is no bound, for Open and New alike;
// and that without a bound a call runs under its own context untouched.
func TestCallTimeoutDefault(t *testing.T) {
	t.Parallel()
	needServer(t)
	c := newClient(t)
	for _, tc := range []struct {
		opt, want time.Duration
	}{{0, 2 * time.Second}, {-1, 0}, {time.Millisecond, time.Millisecond}} {
		if got := New(c, Options{CallTimeout: tc.opt}).timeout; got != tc.want {
			t.Errorf("New with CallTimeout %v: bound %v, want %v", tc.opt, got, tc.want)
		}
	}
	if DefaultCallTimeout != 2*time.Second {
		t.Errorf("DefaultCallTimeout = %v; the documentation promises 2s", DefaultCallTimeout)
	}
	s, err := Open(t.Context(), Options{Addr: testAddr, Prefix: testPrefix(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.timeout != DefaultCallTimeout {
		t.Errorf("Open with no CallTimeout: bound %v, want %v", s.timeout, DefaultCallTimeout)
	}

	// bound leaves a context alone when it ends first anyway, and gives
	// one that would end later, or never, a deadline CallTimeout away.
	early, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if ctx, _ := s.bound(early); ctx != early {
		t.Error("bound wrapped a context whose deadline comes before CallTimeout")
	}
	for _, parent := range []context.Context{context.Background(), t.Context()} {
		ctx, cancel := s.bound(parent)
		d, ok := ctx.Deadline()
		cancel()
		if left := time.Until(d); !ok || left > DefaultCallTimeout || left < DefaultCallTimeout-time.Second {
			t.Errorf("bound of a context without deadline: deadline in %v (%v), want about %v", left, ok, DefaultCallTimeout)
		}
	}
	off := New(c, Options{CallTimeout: -1})
	if ctx, _ := off.bound(context.Background()); ctx != context.Background() {
		t.Error("a negative CallTimeout still bound a call")
	}
}

// TestCallTimeoutBoundsStalledCalls is finding 7: with Redis not
// answering, a call whose context never ends must still fail, within
// CallTimeout, with an error that says context.DeadlineExceeded and names
// CallTimeout; and the store works again once Redis answers, on the same
// connections.
func TestCallTimeoutBoundsStalledCalls(t *testing.T) {
	t.Parallel()
	needServer(t)
	px := startProxy(t, testAddr)
	const bound = 300 * time.Millisecond
	s, err := Open(t.Context(), Options{Addr: px.addr, Prefix: testPrefix(t), CallTimeout: bound})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	warmUp(t, s)
	conns := px.connections()

	px.freeze()
	defer px.thaw()
	// All at once, as a server's requests would be.
	var wg sync.WaitGroup
	for _, op := range faultOps(s) {
		wg.Go(func() {
			start := time.Now()
			err := op.fn(context.Background())
			took := time.Since(start)
			if took > bound+boundSlack {
				t.Errorf("%s took %v with Redis stalled, CallTimeout %v", op.name, took, bound)
			}
			if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(fmt.Sprint(err), "CallTimeout") {
				t.Errorf("%s: error %v, want context.DeadlineExceeded naming CallTimeout", op.name, err)
			}
		})
	}
	wg.Wait()

	// A deadline of the caller's that comes first still wins, and is not
	// blamed on CallTimeout.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = s.Get(ctx, "k")
	if took := time.Since(start); took > 20*time.Millisecond+boundSlack {
		t.Errorf("Get with a 20ms deadline took %v", took)
	}
	if !errors.Is(err, context.DeadlineExceeded) || strings.Contains(err.Error(), "CallTimeout") {
		t.Errorf("Get with a 20ms deadline: error %v, want the caller's deadline, not CallTimeout", err)
	}

	px.thaw()
	ctx, cancel = context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := s.Set(ctx, "after", []byte("v"), 0); err != nil {
		t.Errorf("Set once Redis answers again: %v", err)
	}
	if v, err := s.Get(ctx, "after"); err != nil || string(v) != "v" {
		t.Errorf("Get once Redis answers again = %q, %v", v, err)
	}
	if n := px.connections(); n != conns {
		t.Errorf("the client opened %d new connections after calls timed out", n-conns)
	}
}

// TestLocksReleasedAfterStall is finding 6: TryLocks that time out while
// Redis is stalled still take their locks when it resumes, and Unlocks
// that time out leave theirs held; with a lease of a minute, nobody could
// lock those sessions again for a minute. The store must release them
// itself once Redis answers, so that they can be locked again within a
// couple of seconds, and then forget them.
func TestLocksReleasedAfterStall(t *testing.T) {
	t.Parallel()
	needServer(t)
	px := startProxy(t, testAddr)
	const bound = 300 * time.Millisecond
	s, err := Open(t.Context(), Options{Addr: px.addr, Prefix: testPrefix(t), CallTimeout: bound})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	warmUp(t, s)
	const n, lease = 20, time.Minute

	// Half the sessions are locked before the stall and their holders'
	// Unlocks time out; the other half are locked during it.
	held := make([]string, n/2)
	for i := range held {
		tok, ok, err := s.TryLock(t.Context(), fmt.Sprint("held", i), lease)
		if err != nil || !ok {
			t.Fatalf("TryLock before the stall = %v, %v", ok, err)
		}
		held[i] = tok
	}
	px.freeze()
	defer px.thaw()
	var wg sync.WaitGroup
	for i := range n / 2 {
		wg.Go(func() {
			if err := s.Unlock(context.Background(), fmt.Sprint("held", i), held[i]); err == nil {
				t.Error("Unlock succeeded with Redis stalled")
			}
		})
		wg.Go(func() {
			if _, ok, err := s.TryLock(context.Background(), fmt.Sprint("new", i), lease); err == nil || ok {
				t.Errorf("TryLock with Redis stalled = %v, %v; want an error", ok, err)
			}
		})
	}
	wg.Wait()
	px.thaw()

	// The held SET NXs have now run (or are about to): the locks are
	// taken, and only the store has their tokens.
	keys := make([]string, 0, n)
	for i := range n / 2 {
		keys = append(keys, fmt.Sprint("held", i), fmt.Sprint("new", i))
	}
	waitLockable(t, s, keys, 5*time.Second)
	deadline := time.Now().Add(5 * time.Second)
	for s.rel.pending() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d locks still queued for release 5s after Redis answered", s.rel.pending())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitLockable polls until every key in keys can be locked, failing t if
// one cannot within limit, and then unlocks them.
func waitLockable(t *testing.T, s *Store, keys []string, limit time.Duration) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for _, k := range keys {
		for {
			tok, ok, err := s.TryLock(t.Context(), k, time.Minute)
			if err == nil && ok {
				if err := s.Unlock(t.Context(), k, tok); err != nil {
					t.Errorf("Unlock %s: %v", k, err)
				}
				break
			}
			if time.Now().After(deadline) {
				v, _ := rawGet(t, s.LockKey(k))
				t.Fatalf("lock %s still held (token %q) %v after Redis answered again (TryLock: %v, %v)", k, v, limit, ok, err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// TestUnlockAfterContextEnded checks that an Unlock whose context has
// already ended, as a request's does when its client goes away, still
// frees the lock: in the background, since the call itself sends nothing.
func TestUnlockAfterContextEnded(t *testing.T) {
	t.Parallel()
	s := openT(t)
	tok, ok, err := s.TryLock(t.Context(), "k", time.Minute)
	if err != nil || !ok {
		t.Fatalf("TryLock = %v, %v", ok, err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := s.Unlock(ctx, "k", tok); !errors.Is(err, context.Canceled) {
		t.Errorf("Unlock with a canceled context: %v, want context.Canceled", err)
	}
	waitLockable(t, s, []string{"k"}, 3*time.Second)
}

// TestReleaserQueue checks the release queue's bookkeeping, which no
// server test reaches at its edges: take drops locks that are settled or
// out of time, hands out at most limit and rotates them to the back so
// that a lock on a node that stays down does not starve the rest, and the
// queue holds at most maxOrphans, dropping the oldest.
func TestReleaserQueue(t *testing.T) {
	t.Parallel()
	var r releaser
	r.running = true // no goroutine: the test calls take itself
	later := time.Now().Add(time.Hour)
	for i := range 5 {
		r.queue = append(r.queue, &orphan{key: fmt.Sprint(i), until: later})
	}
	r.queue = append(r.queue,
		&orphan{key: "settled", until: later, misses: 2},
		&orphan{key: "expired", until: time.Now().Add(-time.Second)})
	keysOf := func(os []*orphan) string {
		var b strings.Builder
		for _, o := range os {
			b.WriteString(o.key)
		}
		return b.String()
	}
	if got := keysOf(r.take(2)); got != "01" {
		t.Errorf("first batch %q, want 01", got)
	}
	if got := keysOf(r.queue); got != "23401" {
		t.Errorf("queue after a batch of two %q, want 23401 (settled and expired dropped, batch at the back)", got)
	}
	if got := keysOf(r.take(10)); got != "23401" {
		t.Errorf("batch larger than the queue %q, want all of it", got)
	}
	for _, o := range r.queue {
		o.misses = 2
	}
	if b := r.take(10); b != nil || r.running {
		t.Errorf("take of a settled queue = %q, running %v; want nil and the goroutine gone", keysOf(b), r.running)
	}

	r = releaser{stopped: false, running: true}
	for i := range maxOrphans + 3 {
		r.add(fmt.Sprint("k", i), "t", later)
	}
	if n := r.pending(); n != maxOrphans {
		t.Errorf("queue holds %d, want at most %d", n, maxOrphans)
	}
	if r.queue[0].key != "k3" {
		t.Errorf("oldest queued %q, want k3: the first three dropped", r.queue[0].key)
	}
}
