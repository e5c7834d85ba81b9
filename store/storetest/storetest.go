// Package storetest is a conformance suite for store.Store implementations.
//
// A store author calls Run from a test and gets every behaviour kvsession
// relies on checked: the store.Store contract, each optional ability the
// store has (store.Appender, store.Locker, store.Scanner, store.Purger)
// and the store.Traits it reports. A store proves itself by passing it:
//
//	func TestConformance(t *testing.T) {
//		storetest.Run(t, storetest.Harness{
//			New: func(t *testing.T) store.Store {
//				s, err := mystore.Open(t.TempDir())
//				if err != nil {
//					t.Fatal(err)
//				}
//				return s
//			},
//		})
//	}
//
// The subtests of an ability the store lacks are skipped: having it is the
// store's choice. The suite also checks Touch, Exists, ExpiresIn and
// DeleteAll where a store has them: methods beyond the contract, which
// kvsession never calls, that the stores shipped with it share.
//
// Run it with -race: one subtest hammers the store from several goroutines
// and another closes it while it is busy.
package storetest

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kvsession/kvsession/store"
)

// Harness tells Run how to make and manipulate the store under test.
type Harness struct {
	// New returns a fresh, empty store. It is called once per subtest, from
	// parallel subtests unless Serial is set, so stores it returns must not
	// share data. Run closes every store it gets; closing it again in a
	// t.Cleanup of your own is fine.
	New func(t *testing.T) store.Store

	// Reopen closes s and returns a store opened on the same backing data.
	// Leave it nil for a store that does not persist; the persistence
	// subtest is then skipped.
	Reopen func(t *testing.T, s store.Store) store.Store

	// Advance moves the clock of every store New returns forward by d. With
	// it the expiry subtests run instantly and check exact edges: an entry
	// set with TTL d must be present at d-1ms and gone at d. Without it
	// they sleep about two seconds of real time and only check that
	// entries are present right after Set and gone a little over a second
	// after their TTL, which suits stores that keep whole seconds.
	Advance func(d time.Duration)

	// Serial runs the subtests one after another instead of in parallel,
	// for stores whose New hands out views of one shared backend.
	Serial bool
}

// Run runs the conformance suite against the store h describes.
func Run(t *testing.T, h Harness) {
	t.Helper()
	if h.New == nil {
		t.Fatal("storetest: Harness.New is nil")
	}
	r := &runner{h: h}

	// The expiry subtests go first and, with a fake clock, in sequence:
	// the clock is shared, so they must not run alongside anything that
	// reads it.
	t.Run("Expiry", r.testExpiry)
	if h.Advance != nil {
		t.Run("ExpiryEdges", r.testExpiryEdges)
	} else {
		t.Run("NeverEarly", r.testNeverEarly)
	}
	t.Run("LockerLease", r.testLockerLease)
	t.Run("PurgeExpired", r.testPurgeExpired)

	tests := []struct {
		name string
		fn   func(t *testing.T)
	}{
		{"RoundTrip", r.testRoundTrip},
		{"Missing", r.testMissing},
		{"Overwrite", r.testOverwrite},
		{"Delete", r.testDelete},
		{"InvalidArguments", r.testInvalidArguments},
		{"CanceledContext", r.testCanceledContext},
		{"NoAliasing", r.testNoAliasing},
		{"Concurrent", r.testConcurrent},
		{"Swap", r.testSwap},
		{"SwapAtomic", r.testSwapAtomic},
		{"Sets", r.testSets},
		{"SetsApartFromKeys", r.testSetsApartFromKeys},
		{"LargeSet", r.testLargeSet},
		{"Appender", r.testAppender},
		{"Locker", r.testLocker},
		{"Scanner", r.testScanner},
		{"PurgerCalls", r.testPurgerCalls},
		{"Traits", r.testTraits},
		{"Touch", r.testTouch},
		{"Exists", r.testExists},
		{"ExpiresIn", r.testExpiresIn},
		{"DeleteAll", r.testDeleteAll},
		{"Closed", r.testClosed},
		{"CloseWhileBusy", r.testCloseWhileBusy},
		{"Persistence", r.testPersistence},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r.parallel(t)
			tc.fn(t)
		})
	}
}

type runner struct {
	h Harness
}

func (r *runner) parallel(t *testing.T) {
	if !r.h.Serial {
		t.Parallel()
	}
}

// open returns a store from h.New that is closed when the test ends.
func (r *runner) open(t *testing.T) store.Store {
	t.Helper()
	s := r.h.New(t)
	if s == nil {
		t.Fatal("Harness.New returned nil")
	}
	closeAtEnd(t, s)
	return s
}

func closeAtEnd(t *testing.T, s store.Store) {
	t.Cleanup(func() {
		if err := s.Close(); err != nil && !errors.Is(err, store.ErrClosed) {
			t.Errorf("Close: %v", err)
		}
	})
}

// Assertion helpers. Each reports the caller's line and carries on, so that
// one run shows every broken behaviour.

func mustSet(t *testing.T, s store.Store, key string, value []byte, ttl time.Duration) {
	t.Helper()
	if err := s.Set(t.Context(), key, value, ttl); err != nil {
		t.Fatalf("Set(%q, %d bytes, %v): %v", key, len(value), ttl, err)
	}
}

func wantValue(t *testing.T, s store.Store, key string, want []byte) {
	t.Helper()
	got, err := s.Get(t.Context(), key)
	if err != nil {
		t.Errorf("Get(%q): %v, want %s", key, err, describe(want))
		return
	}
	if !bytes.Equal(got, want) {
		t.Errorf("Get(%q) = %s, want %s", key, describe(got), describe(want))
	}
}

func wantMissing(t *testing.T, s store.Store, key string) {
	t.Helper()
	got, err := s.Get(t.Context(), key)
	if !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Get(%q) = %s, %v; want ErrNotFound", key, describe(got), err)
	}
}

func wantErr(t *testing.T, what string, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Errorf("%s: error %v, want %v", what, err, want)
	}
}

// describe keeps failure messages readable when values are a megabyte.
func describe(v []byte) string {
	if len(v) <= 32 {
		return fmt.Sprintf("%q", v)
	}
	return fmt.Sprintf("%d bytes starting %q", len(v), v[:32])
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rand.Uint32())
	}
	return b
}

func (r *runner) testRoundTrip(t *testing.T) {
	s := r.open(t)
	tests := []struct {
		name  string
		value []byte
		ttl   time.Duration
	}{
		{"Short", []byte("hello"), 0},
		{"WithTTL", []byte("hello"), time.Hour},
		{"Binary", []byte{0, 1, 0, 0xff, 0, '\n', 0}, 0},
		{"AllNUL", make([]byte, 64), 0},
		{"Empty", []byte{}, 0},
		{"Nil", nil, time.Hour},
		// 1 MB, not 1 MiB: some stores cap values just under 1 MiB
		// (Badger in memory does), and a session is never near either.
		{"OneMegabyte", randomBytes(1_000_000), time.Hour},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			key := "roundtrip-" + tc.name
			mustSet(t, s, key, tc.value, tc.ttl)
			got, err := s.Get(t.Context(), key)
			if err != nil {
				t.Fatalf("Get: %v", err)
			}
			// An empty value may come back nil or empty; either is empty.
			if !bytes.Equal(got, tc.value) {
				t.Errorf("Get = %s, want %s", describe(got), describe(tc.value))
			}
		})
	}
	t.Run("KeysAreDistinct", func(t *testing.T) {
		// Keys that differ only in a trailing byte, or are prefixes of one
		// another, must not collide.
		keys := []string{"k", "k\x00", "kk", "K", "k ", "ключ", "\x00"}
		for i, k := range keys {
			mustSet(t, s, k, []byte{byte(i)}, 0)
		}
		for i, k := range keys {
			wantValue(t, s, k, []byte{byte(i)})
		}
	})
}

func (r *runner) testMissing(t *testing.T) {
	s := r.open(t)
	wantMissing(t, s, "never-set")
	mustSet(t, s, "present", []byte("x"), 0)
	wantMissing(t, s, "presen")
	wantMissing(t, s, "present2")
}

func (r *runner) testOverwrite(t *testing.T) {
	s := r.open(t)
	// Longer, shorter, empty and again: a store that writes in place would
	// leave a tail behind.
	for _, v := range []string{"first", "a much longer second value", "3rd", "", "last"} {
		mustSet(t, s, "k", []byte(v), 0)
		wantValue(t, s, "k", []byte(v))
	}
	mustSet(t, s, "other", []byte("untouched"), 0)
	mustSet(t, s, "k", []byte("again"), time.Hour)
	wantValue(t, s, "k", []byte("again"))
	wantValue(t, s, "other", []byte("untouched"))
}

func (r *runner) testDelete(t *testing.T) {
	s := r.open(t)
	ctx := t.Context()
	if err := s.Delete(ctx, "never-set"); err != nil {
		t.Errorf("Delete of a missing key: %v, want nil", err)
	}
	mustSet(t, s, "k", []byte("v"), 0)
	mustSet(t, s, "keep", []byte("v"), time.Hour)
	if err := s.Delete(ctx, "k"); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	wantMissing(t, s, "k")
	wantValue(t, s, "keep", []byte("v"))
	if err := s.Delete(ctx, "k"); err != nil {
		t.Errorf("second Delete: %v, want nil", err)
	}
	// The key can be used again.
	mustSet(t, s, "k", []byte("back"), 0)
	wantValue(t, s, "k", []byte("back"))
}

// call is one method invocation, for tables that check every method the
// store implements the same way.
type call struct {
	name string
	fn   func(ctx context.Context) error
}

// lockLease is the lease the tables of calls take locks for: long enough
// for any test, short enough that a lock left in a shared server goes soon.
const lockLease = time.Minute

// calls returns a call for each method of s, including those of its
// abilities and the shipped stores' methods it has, all on key and with
// ttl where one is taken (locks take lockLease: no lease is not a lease).
func calls(s store.Store, key string, ttl time.Duration) []call {
	cs := []call{
		{"Get", func(ctx context.Context) error { _, err := s.Get(ctx, key); return err }},
		{"Set", func(ctx context.Context) error { return s.Set(ctx, key, []byte("v"), ttl) }},
		{"Delete", func(ctx context.Context) error { return s.Delete(ctx, key) }},
		{"Swap", func(ctx context.Context) error { _, err := s.Swap(ctx, key, []byte("v"), []byte("w"), ttl); return err }},
		{"AddMember", func(ctx context.Context) error { return s.AddMember(ctx, key, "m", ttl) }},
		{"RemoveMember", func(ctx context.Context) error { return s.RemoveMember(ctx, key, "m") }},
		{"Members", func(ctx context.Context) error { _, err := s.Members(ctx, key); return err }},
	}
	c := store.Resolve(s)
	if c.GetAppend != nil {
		cs = append(cs, call{"GetAppend", func(ctx context.Context) error { _, err := c.GetAppend(ctx, key, nil); return err }})
	}
	if c.TryLock != nil {
		cs = append(cs,
			call{"TryLock", func(ctx context.Context) error { _, _, err := c.TryLock(ctx, key, lockLease); return err }},
			call{"Unlock", func(ctx context.Context) error { return c.Unlock(ctx, key, "no-such-token") }})
	}
	if x, ok := s.(toucher); ok {
		cs = append(cs, call{"Touch", func(ctx context.Context) error { return x.Touch(ctx, key, ttl) }})
	}
	if x, ok := s.(exister); ok {
		cs = append(cs, call{"Exists", func(ctx context.Context) error { _, err := x.Exists(ctx, key); return err }})
	}
	if x, ok := s.(expirer); ok {
		cs = append(cs, call{"ExpiresIn", func(ctx context.Context) error { _, err := x.ExpiresIn(ctx, key); return err }})
	}
	return cs
}

func (r *runner) testInvalidArguments(t *testing.T) {
	s := r.open(t)
	ctx := t.Context()
	for _, c := range calls(s, "", 0) {
		wantErr(t, c.name+` with key ""`, c.fn(ctx), store.ErrEmptyKey)
	}

	mustSet(t, s, "k", []byte("before"), 0)
	wantErr(t, "Set with TTL -1s", s.Set(ctx, "k", []byte("after"), -time.Second), store.ErrInvalidTTL)
	wantErr(t, "Set with TTL -1ns", s.Set(ctx, "new", []byte("v"), -1), store.ErrInvalidTTL)
	if x, ok := s.(toucher); ok {
		wantErr(t, "Touch with TTL -1s", x.Touch(ctx, "k", -time.Second), store.ErrInvalidTTL)
	}
	// A rejected call must leave the store as it was.
	wantValue(t, s, "k", []byte("before"))
	wantMissing(t, s, "new")
	if x, ok := s.(expirer); ok {
		if d, err := x.ExpiresIn(ctx, "k"); err != nil || d != store.NoExpiry {
			t.Errorf("ExpiresIn after rejected Touch = %v, %v; want NoExpiry", d, err)
		}
	}
}

func (r *runner) testCanceledContext(t *testing.T) {
	s := r.open(t)
	mustSet(t, s, "k", []byte("v"), 0)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	for _, c := range calls(s, "k", time.Hour) {
		wantErr(t, c.name+" with a canceled context", c.fn(ctx), context.Canceled)
	}
	if x, ok := s.(clearer); ok {
		wantErr(t, "DeleteAll with a canceled context", x.DeleteAll(ctx), context.Canceled)
	}
	// None of them may have acted.
	wantValue(t, s, "k", []byte("v"))
}

func (r *runner) testNoAliasing(t *testing.T) {
	s := r.open(t)
	in := []byte("original")
	mustSet(t, s, "k", in, 0)
	copy(in, "MUTATED!")
	wantValue(t, s, "k", []byte("original"))

	out, err := s.Get(t.Context(), "k")
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	copy(out, "MUTATED!")
	wantValue(t, s, "k", []byte("original"))

	// Appending to a returned slice must not reach the store either, even
	// if the slice has spare capacity.
	out, err = s.Get(t.Context(), "k")
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	_ = append(out[:1], "XXXX"...)
	wantValue(t, s, "k", []byte("original"))
}

func (r *runner) testAppender(t *testing.T) {
	s := r.open(t)
	getAppend := store.Resolve(s).GetAppend
	if getAppend == nil {
		t.Skip("store is no store.Appender")
	}
	ctx := t.Context()
	value := randomBytes(300)
	mustSet(t, s, "k", value, time.Hour)

	// The value lands after what dst held, in dst's array when it fits.
	dst := make([]byte, 3, 1024)
	copy(dst, "pre")
	out, err := getAppend(ctx, "k", dst)
	if err != nil {
		t.Fatalf("GetAppend: %v", err)
	}
	if string(out[:3]) != "pre" || !bytes.Equal(out[3:], value) {
		t.Fatalf("GetAppend = %q..., want the prefix then the value", out[:min(len(out), 8)])
	}
	if &out[0] != &dst[0] {
		t.Error("GetAppend did not reuse a buffer with room to spare")
	}
	// The buffer is the caller's: writing to it must not reach the store.
	copy(out[3:], "MUTATED!")
	wantValue(t, s, "k", value)

	out, err = getAppend(ctx, "missing", dst[:0])
	wantErr(t, "GetAppend of a missing key", err, store.ErrNotFound)
	if len(out) != 0 {
		t.Errorf("GetAppend of a missing key returned %d bytes", len(out))
	}
	if out, err = getAppend(ctx, "k", nil); err != nil || !bytes.Equal(out, value) {
		t.Errorf("GetAppend(nil dst) = %d bytes, %v", len(out), err)
	}
}

// Concurrent writers put self-describing values: a header naming the writer
// and its sequence number, then a payload whose length and fill byte follow
// from the header. A reader that sees a value mixed from two writes, or cut
// short, finds it inconsistent.

const (
	writers      = 8
	opsPerWriter = 200
	sharedKeys   = 12
)

func concurrentValue(writer, seq uint32) []byte {
	n := 16 + int(writer*131+seq*17)%700
	v := make([]byte, 8+n)
	binary.BigEndian.PutUint32(v, writer)
	binary.BigEndian.PutUint32(v[4:], seq)
	fill := byte(writer*37 + seq*11 + 1)
	for i := 8; i < len(v); i++ {
		v[i] = fill
	}
	return v
}

func checkConcurrentValue(v []byte) error {
	if len(v) < 8 {
		return fmt.Errorf("%d-byte value is shorter than its header", len(v))
	}
	want := concurrentValue(binary.BigEndian.Uint32(v), binary.BigEndian.Uint32(v[4:]))
	if !bytes.Equal(v, want) {
		return fmt.Errorf("torn value: %s is not what writer %d wrote as its write %d",
			describe(v), binary.BigEndian.Uint32(v), binary.BigEndian.Uint32(v[4:]))
	}
	return nil
}

func (r *runner) testConcurrent(t *testing.T) {
	s := r.open(t)
	ctx := t.Context()
	var wg sync.WaitGroup
	errs := make(chan error, writers*opsPerWriter)
	for w := range uint32(writers) {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 1))
			for seq := range uint32(opsPerWriter) {
				key := fmt.Sprintf("shared-%d", rng.IntN(sharedKeys))
				switch op := rng.IntN(10); {
				case op < 5:
					if err := s.Set(ctx, key, concurrentValue(w, seq), time.Hour); err != nil {
						errs <- fmt.Errorf("Set(%q): %w", key, err)
					}
				case op < 9:
					v, err := s.Get(ctx, key)
					switch {
					case errors.Is(err, store.ErrNotFound):
					case err != nil:
						errs <- fmt.Errorf("Get(%q): %w", key, err)
					default:
						if err := checkConcurrentValue(v); err != nil {
							errs <- fmt.Errorf("Get(%q): %w", key, err)
						}
					}
				default:
					if err := s.Delete(ctx, key); err != nil {
						errs <- fmt.Errorf("Delete(%q): %w", key, err)
					}
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	n := 0
	for err := range errs {
		if n++; n <= 10 {
			t.Error(err)
		}
	}
	if n > 10 {
		t.Errorf("... and %d more errors", n-10)
	}

	// What is left must be whole values too.
	for i := range sharedKeys {
		key := fmt.Sprintf("shared-%d", i)
		v, err := s.Get(ctx, key)
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			t.Errorf("Get(%q) after the writers finished: %v", key, err)
		} else if err := checkConcurrentValue(v); err != nil {
			t.Errorf("Get(%q) after the writers finished: %v", key, err)
		}
	}
}

func (r *runner) testClosed(t *testing.T) {
	s := r.open(t) // also closed at the end, which must be harmless
	mustSet(t, s, "k", []byte("v"), 0)
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	ctx := t.Context()
	for _, key := range []string{"k", "missing"} {
		for _, c := range calls(s, key, time.Hour) {
			wantErr(t, fmt.Sprintf("%s(%q) after Close", c.name, key), c.fn(ctx), store.ErrClosed)
		}
	}
	if x, ok := s.(clearer); ok {
		wantErr(t, "DeleteAll after Close", x.DeleteAll(ctx), store.ErrClosed)
	}
	if err := s.Close(); err != nil && !errors.Is(err, store.ErrClosed) {
		t.Errorf("second Close: %v, want nil or ErrClosed", err)
	}
}

// testCloseWhileBusy closes the store while goroutines use it. Nothing may
// panic, and every call must either work or report ErrClosed.
func (r *runner) testCloseWhileBusy(t *testing.T) {
	s := r.open(t) // also closed at the end, which must be harmless
	ctx := t.Context()
	mustSet(t, s, "k", []byte("v"), 0)

	var (
		wg      sync.WaitGroup
		closed  atomic.Bool // set once Close has returned
		started = make(chan struct{}, 4)
		errs    = make(chan error, 4)
	)
	for g := range 4 {
		wg.Go(func() {
			cs := calls(s, fmt.Sprint("k", g%2), time.Hour)
			for i := 0; ; i++ {
				c := cs[i%len(cs)]
				after := closed.Load()
				err := c.fn(ctx)
				if i == 0 {
					started <- struct{}{}
				}
				switch {
				case errors.Is(err, store.ErrClosed):
					return
				case after:
					errs <- fmt.Errorf("%s after Close: %v, want ErrClosed", c.name, err)
					return
				case err != nil && !errors.Is(err, store.ErrNotFound):
					errs <- fmt.Errorf("%s while closing: %w", c.name, err)
					return
				}
			}
		})
	}
	for range 4 {
		<-started
	}
	if err := s.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	closed.Store(true)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func (r *runner) testPersistence(t *testing.T) {
	if r.h.Reopen == nil {
		t.Skip("Harness.Reopen is nil: store does not persist")
	}
	s := r.open(t)
	ctx := t.Context()
	big := randomBytes(64 << 10)
	mustSet(t, s, "forever", []byte("v1"), 0)
	mustSet(t, s, "hour", []byte("v2"), time.Hour)
	mustSet(t, s, "big", big, 0)
	mustSet(t, s, "overwritten", []byte("old"), 0)
	mustSet(t, s, "overwritten", []byte("new"), 0)
	mustSet(t, s, "deleted", []byte("v"), 0)
	if err := s.Delete(ctx, "deleted"); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	addMember(t, s, "users", "kept", time.Hour)
	addMember(t, s, "users", "removed", time.Hour)
	if err := s.RemoveMember(ctx, "users", "removed"); err != nil {
		t.Fatalf("RemoveMember: %v", err)
	}

	s2 := r.h.Reopen(t, s)
	if s2 == nil {
		t.Fatal("Harness.Reopen returned nil")
	}
	closeAtEnd(t, s2)
	wantValue(t, s2, "forever", []byte("v1"))
	wantValue(t, s2, "hour", []byte("v2"))
	wantValue(t, s2, "big", big)
	wantValue(t, s2, "overwritten", []byte("new"))
	wantMissing(t, s2, "deleted")
	wantMembers(t, s2, "users", "kept")
	if x, ok := s2.(expirer); ok {
		d, err := x.ExpiresIn(ctx, "hour")
		if err != nil || d <= 0 || d > time.Hour+time.Second {
			t.Errorf("ExpiresIn after reopening = %v, %v; want a little under 1h", d, err)
		}
	}
	// The reopened store takes writes.
	mustSet(t, s2, "later", []byte("v3"), 0)
	wantValue(t, s2, "later", []byte("v3"))
}
