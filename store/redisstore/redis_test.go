package redisstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/kvsession/kvsession/store"
	"github.com/kvsession/kvsession/store/storetest"
)

// Update keeps the signature of the Updater interface kvsession's user
// index had, which applications may still assert.
var _ interface {
	Update(ctx context.Context, key string, fn func(old []byte) ([]byte, time.Duration, bool)) error
} = (*Store)(nil)

// TestConformance runs the suite on stores that own their client, as Open
// makes them. Redis keeps data across a reopen, so Persistence runs too.
func TestConformance(t *testing.T) {
	t.Parallel()
	needServer(t)
	storetest.Run(t, storetest.Harness{
		New: func(t *testing.T) store.Store {
			s, err := Open(t.Context(), Options{Addr: testAddr, Prefix: testPrefix(t)})
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			return s
		},
		Reopen: func(t *testing.T, s store.Store) store.Store {
			prefix := s.(*Store).Prefix()
			if err := s.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			s2, err := Open(t.Context(), Options{Addr: testAddr, Prefix: prefix})
			if err != nil {
				t.Fatalf("reopening: %v", err)
			}
			return s2
		},
	})
}

// TestConformanceSharedClient runs the suite on stores made with New over
// one client, which closing a store must leave working.
func TestConformanceSharedClient(t *testing.T) {
	t.Parallel()
	needServer(t)
	c := newClient(t)
	storetest.Run(t, storetest.Harness{
		New: func(t *testing.T) store.Store {
			return New(c, Options{Prefix: testPrefix(t)})
		},
	})
	if err := c.Do(t.Context(), c.B().Ping().Build()).Error(); err != nil {
		t.Errorf("the shared client after the suite closed its stores: %v", err)
	}
}

func newClient(t testing.TB) rueidis.Client {
	t.Helper()
	c, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{testAddr}, DisableCache: true})
	if err != nil {
		t.Fatalf("rueidis.NewClient: %v", err)
	}
	t.Cleanup(c.Close)
	return c
}

func rawGet(t *testing.T, key string) (string, bool) {
	t.Helper()
	v, err := raw.Do(t.Context(), raw.B().Get().Key(key).Build()).ToString()
	if rueidis.IsRedisNil(err) {
		return "", false
	}
	if err != nil {
		t.Fatalf("GET %q: %v", key, err)
	}
	return v, true
}

func rawPTTL(t *testing.T, key string) int64 {
	t.Helper()
	ms, err := raw.Do(t.Context(), raw.B().Pttl().Key(key).Build()).AsInt64()
	if err != nil {
		t.Fatalf("PTTL %q: %v", key, err)
	}
	return ms
}

// TestKeyLayout pins down the Redis keys the store writes, which operators
// see and the documentation promises.
func TestKeyLayout(t *testing.T) {
	t.Parallel()
	s := openT(t)
	ctx := t.Context()
	p := s.Prefix()
	if err := s.Set(ctx, "sess", []byte("value"), time.Minute); err != nil {
		t.Fatal(err)
	}
	if v, ok := rawGet(t, p+"v:sess"); !ok || v != "value" {
		t.Errorf("GET %sv:sess = %q, %v; want the value", p, v, ok)
	}
	if ms := rawPTTL(t, p+"v:sess"); ms <= 59_000 || ms > 60_000 {
		t.Errorf("PTTL of a value set with TTL 1m = %dms", ms)
	}

	tok, ok, err := s.TryLock(ctx, "sess", time.Minute)
	if err != nil || !ok {
		t.Fatalf("TryLock = %q, %v, %v", tok, ok, err)
	}
	if v, ok := rawGet(t, p+"l:sess"); !ok || v != tok {
		t.Errorf("GET %sl:sess = %q, %v; want the token %q", p, v, ok, tok)
	}
	if s.ValueKey("x") != p+"v:x" || s.LockKey("x") != p+"l:x" {
		t.Errorf("ValueKey, LockKey = %q, %q", s.ValueKey("x"), s.LockKey("x"))
	}
	// Locks and values never meet, whatever the keys look like.
	for _, key := range []string{"l:sess", "sess:lock", "../l:sess"} {
		if _, err := s.Get(ctx, key); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("Get(%q) with a lock held on %q: %v, want ErrNotFound", key, "sess", err)
		}
	}
	if v, err := s.Get(ctx, "sess"); err != nil || string(v) != "value" {
		t.Errorf("Get under a held lock = %q, %v", v, err)
	}

	if got := New(raw, Options{}).Prefix(); got != DefaultPrefix {
		t.Errorf("default Prefix = %q, want %q", got, DefaultPrefix)
	}
}

// TestLockExclusion has goroutines on two stores, each with its own
// connections, increment a counter in Redis with a plain GET and SET: only
// mutual exclusion keeps every increment.
func TestLockExclusion(t *testing.T) {
	t.Parallel()
	needServer(t)
	prefix := testPrefix(t)
	stores := []*Store{openPrefix(t, prefix), openPrefix(t, prefix)}
	ctx := t.Context()

	a, b := stores[0], stores[1]
	tok, ok, err := a.TryLock(ctx, "k", time.Minute)
	if err != nil || !ok {
		t.Fatalf("TryLock on a free key = %v, %v", ok, err)
	}
	if _, ok, err := b.TryLock(ctx, "k", time.Minute); err != nil || ok {
		t.Fatalf("TryLock from another store on a held key = %v, %v; want false, nil", ok, err)
	}
	if _, ok, err := a.TryLock(ctx, "k", time.Minute); err != nil || ok {
		t.Fatalf("TryLock again from the holder's store = %v, %v; want false, nil (not reentrant)", ok, err)
	}
	if _, ok, err := b.TryLock(ctx, "other", time.Minute); err != nil || !ok {
		t.Fatalf("TryLock on another key = %v, %v; want true", ok, err)
	}
	if err := a.Unlock(ctx, "k", tok); err != nil {
		t.Fatal(err)
	}
	tok2, ok, err := b.TryLock(ctx, "k", time.Minute)
	if err != nil || !ok {
		t.Fatalf("TryLock after Unlock = %v, %v", ok, err)
	}
	if err := b.Unlock(ctx, "k", tok2); err != nil {
		t.Fatal(err)
	}

	const goroutines, rounds = 8, 25
	var wg sync.WaitGroup
	errs := make(chan error, goroutines)
	for g := range goroutines {
		s := stores[g%2]
		wg.Go(func() {
			for range rounds {
				if err := lockedIncrement(ctx, s, "counter"); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	v, err := a.Get(ctx, "counter")
	if err != nil || string(v) != strconv.Itoa(goroutines*rounds) {
		t.Errorf("counter = %q, %v; want %d", v, err, goroutines*rounds)
	}
}

func lockedIncrement(ctx context.Context, s *Store, key string) error {
	var tok string
	for {
		var ok bool
		var err error
		if tok, ok, err = s.TryLock(ctx, key, 10*time.Second); err != nil {
			return err
		} else if ok {
			break
		}
		time.Sleep(200 * time.Microsecond)
	}
	n := 0
	v, err := s.Get(ctx, key)
	switch {
	case errors.Is(err, store.ErrNotFound):
	case err != nil:
		return err
	default:
		if n, err = strconv.Atoi(string(v)); err != nil {
			return err
		}
	}
	runtime.Gosched()
	if err := s.Set(ctx, key, []byte(strconv.Itoa(n+1)), 0); err != nil {
		return err
	}
	return s.Unlock(ctx, key, tok)
}

// TestLockLease checks that a lock frees itself when its lease runs out and
// that the old holder's late Unlock then leaves the new holder's lock alone.
func TestLockLease(t *testing.T) {
	t.Parallel()
	needServer(t)
	prefix := testPrefix(t)
	a, b := openPrefix(t, prefix), openPrefix(t, prefix)
	ctx := t.Context()

	const lease = 300 * time.Millisecond
	start := time.Now()
	stale, ok, err := a.TryLock(ctx, "k", lease)
	if err != nil || !ok {
		t.Fatalf("TryLock = %v, %v", ok, err)
	}
	// Poll from the second store until the lease has run out; it must not
	// get the lock sooner.
	var fresh string
	for {
		tok, ok, err := b.TryLock(ctx, "k", time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			if took := time.Since(start); took < lease {
				t.Fatalf("a second holder took the lock %v after it was taken with a lease of %v", took, lease)
			}
			fresh = tok
			break
		}
		if time.Since(start) > lease+5*time.Second {
			t.Fatalf("the lock was still held %v after it was taken with a lease of %v", time.Since(start), lease)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if fresh == stale {
		t.Fatal("two holders got the same token")
	}
	if err := a.Unlock(ctx, "k", stale); err != nil {
		t.Fatalf("stale Unlock: %v", err)
	}
	if v, ok := rawGet(t, b.LockKey("k")); !ok || v != fresh {
		t.Fatalf("after a stale Unlock the lock holds %q, %v; want the new holder's token", v, ok)
	}
	if _, ok, _ := a.TryLock(ctx, "k", time.Minute); ok {
		t.Fatal("a stale Unlock released the new holder's lock")
	}
	// Unlocking with no token, or a made-up one, does nothing either.
	for _, tok := range []string{"", "not-a-token"} {
		if err := a.Unlock(ctx, "k", tok); err != nil {
			t.Errorf("Unlock(%q): %v", tok, err)
		}
	}
	if _, ok := rawGet(t, b.LockKey("k")); !ok {
		t.Fatal("Unlock with a wrong token released the lock")
	}
	if err := b.Unlock(ctx, "k", fresh); err != nil {
		t.Fatal(err)
	}
	if _, ok := rawGet(t, b.LockKey("k")); ok {
		t.Fatal("Unlock by the holder left the lock in place")
	}
}

func TestLockArguments(t *testing.T) {
	t.Parallel()
	s := openT(t)
	ctx := t.Context()
	for _, lease := range []time.Duration{0, -time.Second} {
		if _, ok, err := s.TryLock(ctx, "k", lease); ok || !errors.Is(err, store.ErrInvalidTTL) {
			t.Errorf("TryLock with lease %v = %v, %v; want ErrInvalidTTL", lease, ok, err)
		}
	}
	if _, _, err := s.TryLock(ctx, "", time.Second); !errors.Is(err, store.ErrEmptyKey) {
		t.Errorf("TryLock with an empty key: %v", err)
	}
	if err := s.Unlock(ctx, "", "tok"); !errors.Is(err, store.ErrEmptyKey) {
		t.Errorf("Unlock with an empty key: %v", err)
	}
	// A sub-millisecond lease is rounded up, not down to none.
	if _, ok, err := s.TryLock(ctx, "short", 100*time.Microsecond); err != nil || !ok {
		t.Fatalf("TryLock with a 100µs lease = %v, %v", ok, err)
	}
	if ms := rawPTTL(t, s.LockKey("short")); ms > 1 || ms == -1 {
		t.Errorf("PTTL of a lock with a 100µs lease = %dms, want 1ms or gone", ms)
	}
}

func TestUpdate(t *testing.T) {
	t.Parallel()
	s := openT(t)
	ctx := t.Context()

	calls := 0
	// A missing key reads as nil.
	err := s.Update(ctx, "k", func(old []byte) ([]byte, time.Duration, bool) {
		calls++
		if old != nil {
			t.Errorf("fn got %q for a missing key, want nil", old)
		}
		return []byte("one"), time.Hour, true
	})
	if err != nil || calls != 1 {
		t.Fatalf("Update = %v after %d calls", err, calls)
	}
	if v, err := s.Get(ctx, "k"); err != nil || string(v) != "one" {
		t.Fatalf("Get after Update = %q, %v", v, err)
	}
	if d, err := s.ExpiresIn(ctx, "k"); err != nil || d <= 59*time.Minute || d > time.Hour {
		t.Errorf("ExpiresIn after Update with TTL 1h = %v, %v", d, err)
	}

	// write == false leaves value and TTL alone.
	err = s.Update(ctx, "k", func(old []byte) ([]byte, time.Duration, bool) {
		if string(old) != "one" {
			t.Errorf("fn got %q, want %q", old, "one")
		}
		return []byte("ignored"), 0, false
	})
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := s.Get(ctx, "k"); string(v) != "one" {
		t.Errorf("Get after Update without write = %q", v)
	}

	// TTL 0 stores without expiry.
	if err := s.Update(ctx, "k", func([]byte) ([]byte, time.Duration, bool) { return []byte("two"), 0, true }); err != nil {
		t.Fatal(err)
	}
	if d, err := s.ExpiresIn(ctx, "k"); err != nil || d != store.NoExpiry {
		t.Errorf("ExpiresIn after Update with TTL 0 = %v, %v; want NoExpiry", d, err)
	}

	// A nil value deletes.
	if err := s.Update(ctx, "k", func([]byte) ([]byte, time.Duration, bool) { return nil, 0, true }); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, "k"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Get after Update with a nil value: %v, want ErrNotFound", err)
	}

	// A present empty value is not a missing one, and an empty (non-nil)
	// result is stored, not deleted.
	if err := s.Set(ctx, "empty", nil, 0); err != nil {
		t.Fatal(err)
	}
	err = s.Update(ctx, "empty", func(old []byte) ([]byte, time.Duration, bool) {
		if old == nil || len(old) != 0 {
			t.Errorf("fn got %v for an empty value, want an empty non-nil slice", old)
		}
		return []byte{}, 0, true
	})
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := s.Exists(ctx, "empty"); !ok || err != nil {
		t.Errorf("Exists after Update with an empty value = %v, %v", ok, err)
	}

	// A value changed between the read and the write makes fn run again on
	// the new value.
	calls = 0
	err = s.Update(ctx, "race", func(old []byte) ([]byte, time.Duration, bool) {
		calls++
		if calls == 1 {
			if err := s.Set(ctx, "race", []byte("interloper"), 0); err != nil {
				t.Fatal(err)
			}
		}
		return append(bytes.Clone(old), '+'), 0, true
	})
	if err != nil || calls != 2 {
		t.Errorf("Update racing a Set = %v after %d calls, want nil after 2", err, calls)
	}
	if v, _ := s.Get(ctx, "race"); string(v) != "interloper+" {
		t.Errorf("Get after a raced Update = %q, want %q", v, "interloper+")
	}

	if err := s.Update(ctx, "k", func([]byte) ([]byte, time.Duration, bool) { return []byte("x"), -1, true }); !errors.Is(err, store.ErrInvalidTTL) {
		t.Errorf("Update returning a negative TTL: %v, want ErrInvalidTTL", err)
	}
	if err := s.Update(ctx, "", func([]byte) ([]byte, time.Duration, bool) { return nil, 0, false }); !errors.Is(err, store.ErrEmptyKey) {
		t.Errorf("Update with an empty key: %v, want ErrEmptyKey", err)
	}
}

// TestUpdateConcurrent increments one counter from goroutines on several
// stores, each with its own connections: a read-modify-write that is not
// atomic across them loses increments.
func TestUpdateConcurrent(t *testing.T) {
	t.Parallel()
	needServer(t)
	prefix := testPrefix(t)
	const nstores, perStore, rounds = 4, 4, 40
	stores := make([]*Store, nstores)
	for i := range stores {
		stores[i] = openPrefix(t, prefix)
	}
	ctx := t.Context()
	var calls atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, nstores*perStore)
	for i := range nstores * perStore {
		s := stores[i%nstores]
		wg.Go(func() {
			for range rounds {
				err := s.Update(ctx, "counter", func(old []byte) ([]byte, time.Duration, bool) {
					calls.Add(1)
					n, _ := strconv.Atoi(string(old))
					return []byte(strconv.Itoa(n + 1)), time.Hour, true
				})
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	want := nstores * perStore * rounds
	if v, err := stores[0].Get(ctx, "counter"); err != nil || string(v) != strconv.Itoa(want) {
		t.Errorf("counter = %q, %v; want %d", v, err, want)
	}
	t.Logf("%d updates took %d calls of fn", want, calls.Load())
}

// TestMembersAcrossStores adds sessions for one user from several stores
// at once, as several processes logging the same user in do: none is
// lost, since each add is one command on the set, not a read and a write.
func TestMembersAcrossStores(t *testing.T) {
	t.Parallel()
	needServer(t)
	prefix := testPrefix(t)
	const nstores, perStore = 4, 25
	ctx := t.Context()
	var wg sync.WaitGroup
	errs := make(chan error, nstores)
	var want []string
	for i := range nstores {
		s := openPrefix(t, prefix)
		var keys []string
		for j := range perStore {
			keys = append(keys, fmt.Sprintf("sess-%d-%02d", i, j))
		}
		want = append(want, keys...)
		wg.Go(func() {
			for _, k := range keys {
				if err := s.AddMember(ctx, "user:alice", k, time.Hour); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	got, err := openPrefix(t, prefix).Members(ctx, "user:alice")
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(got)
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("Members has %d sessions, want %d:\n got %v\nwant %v", len(got), len(want), got, want)
	}
}

// TestDeleteAllScope checks that DeleteAll removes this store's values and
// nothing else: not another prefix's, even one its prefix would match as a
// glob pattern, not keys outside any prefix, and not held locks.
func TestDeleteAllScope(t *testing.T) {
	t.Parallel()
	needServer(t)
	base := testPrefix(t)
	// The first prefix, read as a SCAN pattern, matches the second.
	mine := openPrefix(t, base+"a*[bc]?:")
	other := openPrefix(t, base+"aXcY:")
	ctx := t.Context()
	for i := range 2500 { // several SCAN batches
		if err := mine.Set(ctx, fmt.Sprint("k", i), []byte("v"), time.Duration(i%2)*time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	if err := other.Set(ctx, "k1", []byte("theirs"), 0); err != nil {
		t.Fatal(err)
	}
	outside := base + "unprefixed"
	if err := raw.Do(ctx, raw.B().Set().Key(outside).Value("x").Build()).Error(); err != nil {
		t.Fatal(err)
	}
	tok, ok, err := mine.TryLock(ctx, "k1", time.Minute)
	if err != nil || !ok {
		t.Fatalf("TryLock = %v, %v", ok, err)
	}

	if err := mine.DeleteAll(ctx); err != nil {
		t.Fatalf("DeleteAll: %v", err)
	}
	n, err := raw.Do(ctx, raw.B().Scan().Cursor(0).Match(globEscape(mine.ValueKey(""))+"*").Count(10000).Build()).AsScanEntry()
	if err != nil || len(n.Elements) != 0 {
		t.Errorf("after DeleteAll, SCAN finds %d of the store's values (%v)", len(n.Elements), err)
	}
	if v, err := other.Get(ctx, "k1"); err != nil || string(v) != "theirs" {
		t.Errorf("another prefix's value after DeleteAll = %q, %v", v, err)
	}
	if _, ok := rawGet(t, outside); !ok {
		t.Error("DeleteAll removed a key outside its prefix")
	}
	if v, ok := rawGet(t, mine.LockKey("k1")); !ok || v != tok {
		t.Error("DeleteAll released a held lock")
	}
}

// TestContextDeadline checks that every call on a server that has stopped
// answering ends at its context's deadline, or when its context is
// canceled, with an error that says so. The server "stops answering"
// behind a proxy that stops forwarding, so that nothing else using it is
// held up.
func TestContextDeadline(t *testing.T) {
	t.Parallel()
	needServer(t)
	px := startProxy(t, testAddr)
	s, err := Open(t.Context(), Options{Addr: px.addr, Prefix: testPrefix(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Set(t.Context(), "k", []byte("v"), 0); err != nil {
		t.Fatal(err)
	}
	ops := []struct {
		name string
		fn   func(ctx context.Context) error
	}{
		{"Get", func(ctx context.Context) error { _, err := s.Get(ctx, "k"); return err }},
		{"Set", func(ctx context.Context) error { return s.Set(ctx, "k", []byte("w"), time.Hour) }},
		{"Delete", func(ctx context.Context) error { return s.Delete(ctx, "gone") }},
		{"Touch", func(ctx context.Context) error { return s.Touch(ctx, "k", time.Hour) }},
		{"TouchPersist", func(ctx context.Context) error { return s.Touch(ctx, "k", 0) }},
		{"Exists", func(ctx context.Context) error { _, err := s.Exists(ctx, "k"); return err }},
		{"ExpiresIn", func(ctx context.Context) error { _, err := s.ExpiresIn(ctx, "k"); return err }},
		{"DeleteAll", func(ctx context.Context) error { return s.DeleteAll(ctx) }},
		{"TryLock", func(ctx context.Context) error { _, _, err := s.TryLock(ctx, "k", time.Second); return err }},
		{"Unlock", func(ctx context.Context) error { return s.Unlock(ctx, "k", "tok") }},
		{"Update", func(ctx context.Context) error {
			return s.Update(ctx, "k", func(old []byte) ([]byte, time.Duration, bool) { return old, 0, true })
		}},
		{"Swap", func(ctx context.Context) error { _, err := s.Swap(ctx, "k", []byte("v"), []byte("w"), 0); return err }},
		{"AddMember", func(ctx context.Context) error { return s.AddMember(ctx, "set", "m", time.Hour) }},
		{"RemoveMember", func(ctx context.Context) error { return s.RemoveMember(ctx, "set", "m") }},
		{"Members", func(ctx context.Context) error { _, err := s.Members(ctx, "set"); return err }},
	}
	// How long a call may take past its deadline or cancellation: generous
	// for a loaded machine.
	const slack = 250 * time.Millisecond

	// The client opens the connections it spreads commands over lazily,
	// picking one at random for each command, and opening one does not
	// heed cancellation (see the package documentation): make sure all are
	// open before the server stops answering.
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	for range 64 {
		if _, err := s.Exists(ctx, "k"); err != nil {
			t.Fatal(err)
		}
	}
	conns := px.connections()
	px.freeze()
	for _, op := range ops {
		t.Run(op.name+"/Deadline", func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), time.Millisecond)
			defer cancel()
			start := time.Now()
			err := op.fn(ctx)
			if took := time.Since(start); took > slack {
				t.Errorf("took %v with a 1ms deadline", took)
			}
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("error %v, want one that is context.DeadlineExceeded", err)
			}
		})
		t.Run(op.name+"/Cancel", func(t *testing.T) {
			ctx, cancel := context.WithCancel(t.Context())
			time.AfterFunc(20*time.Millisecond, cancel)
			start := time.Now()
			err := op.fn(ctx)
			if took := time.Since(start); took > 20*time.Millisecond+slack {
				t.Errorf("took %v when canceled after 20ms", took)
			}
			if !errors.Is(err, context.Canceled) {
				t.Errorf("error %v, want one that is context.Canceled", err)
			}
		})
	}
	px.thaw()

	// The store works again as soon as the server answers, on the same
	// connections: a call that gave up left them alone.
	if err := s.Set(ctx, "after", []byte("v"), 0); err != nil {
		t.Errorf("Set once the server answers again: %v", err)
	}
	if v, err := s.Get(ctx, "after"); err != nil || string(v) != "v" {
		t.Errorf("Get once the server answers again = %q, %v", v, err)
	}
	if n := px.connections(); n != conns {
		t.Errorf("the client opened %d new connections after calls gave up", n-conns)
	}
}

// TestClose checks what closing does to the client: a store from Open
// closes the client it made, one from New leaves the application's alone.
func TestClose(t *testing.T) {
	t.Parallel()
	needServer(t)
	ctx := t.Context()

	c := newClient(t)
	shared := New(c, Options{Prefix: testPrefix(t)})
	if err := shared.Close(); err != nil {
		t.Fatal(err)
	}
	if err := shared.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := shared.Get(ctx, "k"); !errors.Is(err, store.ErrClosed) {
		t.Errorf("Get after Close: %v, want ErrClosed", err)
	}
	for name, err := range map[string]error{
		"TryLock": func() error { _, _, err := shared.TryLock(ctx, "k", time.Second); return err }(),
		"Unlock":  shared.Unlock(ctx, "k", "tok"),
		"Update":  shared.Update(ctx, "k", func([]byte) ([]byte, time.Duration, bool) { return nil, 0, true }),
	} {
		if !errors.Is(err, store.ErrClosed) {
			t.Errorf("%s after Close: %v, want ErrClosed", name, err)
		}
	}
	if err := c.Do(ctx, c.B().Ping().Build()).Error(); err != nil {
		t.Errorf("the application's client after closing a store made with New: %v", err)
	}

	owned := openT(t)
	if err := owned.Close(); err != nil {
		t.Fatal(err)
	}
	oc := owned.Client()
	if err := oc.Do(ctx, oc.B().Ping().Build()).Error(); err == nil {
		t.Error("the client Open made still works after Close")
	}
}

// TestOpenUnreachable opens a port nobody listens on: the error names the
// address and comes at once, not after a dial timeout.
func TestOpenUnreachable(t *testing.T) {
	t.Parallel()
	port, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	start := time.Now()
	s, err := Open(t.Context(), Options{Addr: addr})
	took := time.Since(start)
	if err == nil {
		s.Close()
		t.Fatalf("Open(%s) with nothing listening succeeded", addr)
	}
	want := "redis store: cannot reach " + addr + ": "
	if !strings.HasPrefix(err.Error(), want) {
		t.Errorf("Open error %q, want it to start %q", err, want)
	}
	if took > 2*time.Second {
		t.Errorf("Open took %v to report a refused connection", took)
	}
	t.Logf("Open(%s): %v (after %v)", addr, err, took.Round(time.Millisecond))
}

// deadAddr returns a loopback address nothing listens on: a seed that is
// down, whose connection is refused at once.
func deadAddr(t *testing.T) string {
	t.Helper()
	port, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
}

// TestOpenSeeds opens a standalone server through several seed addresses,
// some of them down: the store starts on the first that answers, and
// works. With none answering, the error names every seed.
func TestOpenSeeds(t *testing.T) {
	t.Parallel()
	needServer(t)
	dead, dead2 := deadAddr(t), deadAddr(t)
	tests := []struct {
		name    string
		addr    string
		addrs   []string
		wantErr string // "" to succeed
	}{
		{"dead first seed in Addrs", "", []string{dead, testAddr}, ""},
		{"dead Addr, live Addrs", dead, []string{testAddr}, ""},
		{"live Addr, dead Addrs", testAddr, []string{dead}, ""},
		{"two dead, then live", dead, []string{dead2, testAddr}, ""},
		{"every seed dead", dead, []string{dead2}, "redis store: cannot reach " + dead + ", " + dead2 + ": "},
		{"a list in Addr", dead + "," + testAddr, nil, "Addrs"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			prefix := testPrefix(t)
			s, err := Open(t.Context(), Options{Addr: tt.addr, Addrs: tt.addrs, Prefix: prefix})
			if tt.wantErr != "" {
				if err == nil {
					s.Close()
					t.Fatalf("Open succeeded, want an error containing %q", tt.wantErr)
				}
				if !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Open: %v, want an error containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			defer s.Close()
			if m := s.Client().Mode(); m != rueidis.ClientModeStandalone {
				t.Errorf("client mode %v, want standalone", m)
			}
			if err := s.Set(t.Context(), "k", []byte("v"), time.Minute); err != nil {
				t.Fatal(err)
			}
			if v, ok := rawGet(t, prefix+"v:k"); !ok || v != "v" {
				t.Errorf("the test server holds %q, %v; want the value the store set", v, ok)
			}
		})
	}
}

// TestOpenSilentServer opens a port that accepts connections and never
// answers: Open gives up when its context ends.
func TestOpenSilentServer(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var conns sync.WaitGroup
	stop := make(chan struct{})
	defer func() { l.Close(); close(stop); conns.Wait() }()
	conns.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			conns.Go(func() { <-stop; c.Close() })
		}
	})

	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	s, err := Open(ctx, Options{Addr: l.Addr().String()})
	took := time.Since(start)
	if err == nil {
		s.Close()
		t.Fatal("Open of a server that never answers succeeded")
	}
	if took > time.Second {
		t.Errorf("Open took %v with a 200ms deadline", took)
	}
	if !strings.Contains(err.Error(), "redis store: cannot reach "+l.Addr().String()) {
		t.Errorf("Open error %q does not name the address", err)
	}
}

func TestOpenOptions(t *testing.T) {
	t.Parallel()
	if _, err := Open(t.Context(), Options{}); err == nil || !strings.Contains(err.Error(), "Addr") {
		t.Errorf("Open without an address: %v", err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := Open(ctx, Options{Addr: "127.0.0.1:1"}); !errors.Is(err, context.Canceled) {
		t.Errorf("Open with a canceled context: %v", err)
	}

	needServer(t)
	// A server that answers with an error is reached, and the error says
	// what it answered.
	if _, err := Open(t.Context(), Options{Addr: testAddr, Username: "nobody", Password: "wrong"}); err == nil ||
		!strings.HasPrefix(err.Error(), "redis store: connecting to "+testAddr+": ") || !strings.Contains(err.Error(), "WRONGPASS") {
		t.Errorf("Open with a wrong password: %v", err)
	}

	var tuned bool
	s, err := Open(t.Context(), Options{Addr: testAddr, DB: 3, Prefix: testPrefix(t), Tune: func(o *rueidis.ClientOption) {
		tuned = o.SelectDB == 3 && o.DisableCache
		o.ClientName = "kvsession-test"
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if !tuned {
		t.Error("Tune did not see the options Open settled on")
	}
	c := s.Client()
	info, err := c.Do(t.Context(), c.B().ClientInfo().Build()).ToString()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(info, " db=3 ") || !strings.Contains(info, " name=kvsession-test ") {
		t.Errorf("CLIENT INFO = %q; want db=3 and the name Tune set", info)
	}
}

// TestRedisErrors checks that an error from Redis is wrapped with the
// command and can still be inspected.
func TestRedisErrors(t *testing.T) {
	t.Parallel()
	s := openT(t)
	ctx := t.Context()
	if err := raw.Do(ctx, raw.B().Lpush().Key(s.ValueKey("list")).Element("x").Build()).Error(); err != nil {
		t.Fatal(err)
	}
	_, err := s.Get(ctx, "list")
	if err == nil || !strings.HasPrefix(err.Error(), "redis store: GET: WRONGTYPE") {
		t.Errorf("Get of a list = %v, want a wrapped WRONGTYPE error", err)
	}
	if re, ok := rueidis.IsRedisErr(errors.Unwrap(err)); !ok || !strings.HasPrefix(re.Error(), "WRONGTYPE") {
		t.Errorf("the Redis error is not reachable by unwrapping: %v", err)
	}
	if errors.Is(err, store.ErrNotFound) {
		t.Error("a WRONGTYPE error is ErrNotFound")
	}
	err = s.Update(ctx, "list", func(old []byte) ([]byte, time.Duration, bool) { return old, 0, true })
	if err == nil || !strings.Contains(err.Error(), "WRONGTYPE") {
		t.Errorf("Update of a list = %v, want WRONGTYPE", err)
	}
}

func TestMillis(t *testing.T) {
	tests := []struct {
		in   time.Duration
		want int64
	}{
		{time.Nanosecond, 1},
		{time.Millisecond, 1},
		{time.Millisecond + 1, 2},
		{1500 * time.Microsecond, 2},
		{time.Second, 1000},
		{time.Hour, 3_600_000},
		{1<<63 - 1, (1<<63-1)/1_000_000 + 1},
	}
	for _, tc := range tests {
		if got := millis(tc.in); got != tc.want {
			t.Errorf("millis(%v) = %d, want %d", tc.in, got, tc.want)
		}
	}
}

func TestGlobEscape(t *testing.T) {
	tests := []struct{ in, want string }{
		{"kvsession:", "kvsession:"},
		{"a*b?c[d]e\\f^g:", `a\*b\?c\[d\]e\\f\^g:`},
		{"\xff*", "\xff\\*"},
	}
	for _, tc := range tests {
		if got := globEscape(tc.in); got != tc.want {
			t.Errorf("globEscape(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func BenchmarkStore(b *testing.B) {
	needServer(b)
	storetest.Benchmark(b, func(b *testing.B) store.Store {
		s, err := Open(context.Background(), Options{Addr: testAddr, Prefix: testPrefix(b)})
		if err != nil {
			b.Fatal(err)
		}
		return s
	})
}

// BenchmarkStoreParallel32 is BenchmarkStore with 32 goroutines, as a busy
// server process has, whatever GOMAXPROCS is.
func BenchmarkStoreParallel32(b *testing.B) {
	needServer(b)
	storetest.Benchmark(b, func(b *testing.B) store.Store {
		b.SetParallelism(max(1, 32/runtime.GOMAXPROCS(0)))
		s, err := Open(context.Background(), Options{Addr: testAddr, Prefix: testPrefix(b)})
		if err != nil {
			b.Fatal(err)
		}
		return s
	})
}
