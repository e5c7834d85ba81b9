package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kvsession/kvsession/store"
)

// The subtests of store.Scanner and store.Purger. Operators scan a store
// to count, list and end sessions whose ids they do not know, and purge it
// to take back what expired sessions hold: a scan that misses a live
// session leaves it running, one that shows an expired session or a set's
// name as a session lists what is not there, and one that deadlocks when
// its callback ends the session it was shown stops the operator's tool.

// scanFunc is store.Calls.Scan.
type scanFunc = func(ctx context.Context, prefix string, fn func(key string, value []byte) error) error

// scanCalls returns the store's calls, skipping the test when the store is
// no Scanner: whether to be one is the store's choice.
func scanCalls(t *testing.T, s store.Store) store.Calls {
	t.Helper()
	c := store.Resolve(s)
	if c.Scan == nil {
		t.Skip("store is no store.Scanner")
	}
	return c
}

func isScanner(s store.Store) bool { return store.Resolve(s).Scan != nil }

// visit is what a scan showed of one key: its value (copied, as the
// contract asks of a caller keeping it) and how many times it came.
type visit struct {
	value []byte
	n     int
}

// scanAll scans prefix and returns every key visited. A key visited twice
// must show the same value both times: the tests that use it write
// nothing while they scan.
func scanAll(t *testing.T, scan scanFunc, prefix string) map[string]*visit {
	t.Helper()
	seen := map[string]*visit{}
	err := scan(t.Context(), prefix, func(key string, value []byte) error {
		if v := seen[key]; v != nil {
			v.n++
			if !bytes.Equal(v.value, value) {
				t.Errorf("Scan(%q) showed %q twice, as %s and as %s", prefix, key, describe(v.value), describe(value))
			}
			return nil
		}
		seen[strings.Clone(key)] = &visit{value: bytes.Clone(value), n: 1}
		return nil
	})
	if err != nil {
		t.Fatalf("Scan(%q): %v", prefix, err)
	}
	return seen
}

// wantVisited checks that a scan showed exactly the keys of want, each
// with its value (an empty value may come as nil or empty).
func wantVisited(t *testing.T, what string, got map[string]*visit, want map[string][]byte) {
	t.Helper()
	for k, v := range want {
		g := got[k]
		switch {
		case g == nil:
			t.Errorf("%s did not visit %q", what, k)
		case !bytes.Equal(g.value, v):
			t.Errorf("%s showed %q as %s, want %s", what, k, describe(g.value), describe(v))
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("%s visited %q, which it should not", what, k)
		}
	}
}

// within runs fn, and fails the test if it has not returned within limit:
// a scan whose callback calls the store must not deadlock it, and the
// test should say so rather than hang until go test's own timeout.
func within(t *testing.T, limit time.Duration, what string, fn func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn()
	}()
	select {
	case <-done:
	case <-time.After(limit):
		t.Fatalf("%s still running after %v: deadlocked?", what, limit)
	}
}

var errStopScan = errors.New("storetest: stop the scan")

func (r *runner) testScanner(t *testing.T) {
	if !isScanner(r.open(t)) {
		t.Skip("store is no store.Scanner")
	}
	tests := []struct {
		name string
		fn   func(t *testing.T, s store.Store, c store.Calls)
	}{
		{"Prefixes", r.testScanPrefixes},
		{"Empty", testScanEmpty},
		{"ManyKeys", testScanManyKeys},
		{"NoAliasing", testScanNoAliasing},
		{"ErrorStops", testScanErrorStops},
		{"CanceledContext", testScanCanceled},
		{"DeleteWhileScanning", testScanDeleteWhileScanning},
		{"LiveKeysWhileWriting", testScanLiveKeysWhileWriting},
		{"Closed", testScanClosed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r.parallel(t)
			s := r.open(t)
			tc.fn(t, s, scanCalls(t, s))
		})
	}
}

// testScanPrefixes fills a store with keys that are, and are not, under
// one another, with sets and locks named like them, and checks what each
// prefix shows: the keys under it, with their values, and nothing else.
func (r *runner) testScanPrefixes(t *testing.T, s store.Store, c store.Calls) {
	values := map[string][]byte{
		"user:1":       []byte("one"),
		"user:2":       []byte("two"),
		"user":         []byte("the bare prefix"),
		"us":           []byte("shorter than the prefix"),
		"other:user:1": []byte("the prefix inside, not at the start"),
		"a*b":          []byte("a glob's star"),
		"ab":           []byte("what a*b would match as a glob"),
		"a[b]":         []byte("a glob's class"),
		"a?":           []byte("a glob's ?"),
		"ключ":         []byte("not ASCII"),
		"\xff\x00x":    []byte("starts like Badger's escaped values"),
		"\xff\x01s":    []byte("starts like Badger's set members"),
		"empty":        {},
		"big":          randomBytes(100_000),
	}
	for k, v := range values {
		mustSet(t, s, k, v, time.Hour)
	}
	mustSet(t, s, "deleted", []byte("v"), 0)
	if err := s.Delete(t.Context(), "deleted"); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	// Sets are not keys, whatever their names: neither a set named like
	// a key under the prefix, nor one named like a key that exists.
	for _, set := range []string{"user:3", "user:1", "user", "\xff\x01s", "\xff"} {
		addMember(t, s, set, "member", time.Hour)
	}
	// Nor are locks.
	if c.TryLock != nil {
		for _, key := range []string{"user:4", "user:1"} {
			token := mustLock(t, c, key, lockLease)
			t.Cleanup(func() { _ = c.Unlock(context.Background(), key, token) })
		}
	}

	for _, prefix := range []string{"", "u", "us", "user", "user:", "user:1", "user:10", "a", "a*", "a[", "a?", "ab", "ключ", "\xff", "\xff\x00", "\xff\x01", "\x00", "deleted", "nothing"} {
		t.Run(fmt.Sprintf("%q", prefix), func(t *testing.T) {
			want := maps.Clone(values)
			maps.DeleteFunc(want, func(k string, _ []byte) bool { return !strings.HasPrefix(k, prefix) })
			wantVisited(t, fmt.Sprintf("Scan(%q)", prefix), scanAll(t, c.Scan, prefix), want)
		})
	}
}

func testScanEmpty(t *testing.T, s store.Store, c store.Calls) {
	for _, prefix := range []string{"", "k"} {
		err := c.Scan(t.Context(), prefix, func(key string, _ []byte) error {
			t.Errorf("Scan(%q) of an empty store visited %q", prefix, key)
			return nil
		})
		if err != nil {
			t.Errorf("Scan(%q) of an empty store: %v", prefix, err)
		}
	}
}

// testScanManyKeys scans more keys than a store would fetch at once (a
// Redis SCAN's COUNT, a batch of a key range): every one is visited.
func testScanManyKeys(t *testing.T, s store.Store, c store.Calls) {
	const n = 2500
	want := make(map[string][]byte, n)
	for i := range n {
		k := fmt.Sprintf("many:%04d", i)
		want[k] = []byte(k)
		mustSet(t, s, k, want[k], time.Hour)
	}
	mustSet(t, s, "not-many", []byte("v"), time.Hour)
	wantVisited(t, `Scan("many:")`, scanAll(t, c.Scan, "many:"), want)
}

// testScanNoAliasing scribbles over each value fn is shown, and appends
// to it: neither may reach the store, nor the values shown after it.
func testScanNoAliasing(t *testing.T, s store.Store, c store.Calls) {
	want := map[string][]byte{}
	for i := range 50 {
		k := fmt.Sprint("k", i)
		want[k] = bytes.Repeat([]byte{byte('a' + i%26)}, 1+i%7)
		mustSet(t, s, k, want[k], time.Hour)
	}
	seen := map[string]*visit{}
	err := c.Scan(t.Context(), "", func(key string, value []byte) error {
		if seen[key] == nil {
			seen[strings.Clone(key)] = &visit{value: bytes.Clone(value), n: 1}
		}
		for i := range value {
			value[i] = '!'
		}
		_ = append(value, "appended past the value"...)
		return nil
	})
	if err != nil {
		t.Fatalf("Scan: %v", err)
	}
	wantVisited(t, `Scan("")`, seen, want)
	for k, v := range want {
		wantValue(t, s, k, v)
	}
}

// testScanErrorStops checks that an error from fn ends the scan at once
// and is what Scan returns.
func testScanErrorStops(t *testing.T, s store.Store, c store.Calls) {
	for i := range 100 {
		mustSet(t, s, fmt.Sprint("k", i), []byte("v"), time.Hour)
	}
	for _, stopAt := range []int{1, 3} {
		calls := 0
		err := c.Scan(t.Context(), "", func(string, []byte) error {
			if calls++; calls == stopAt {
				return fmt.Errorf("after %d keys: %w", stopAt, errStopScan)
			}
			return nil
		})
		if !errors.Is(err, errStopScan) {
			t.Errorf("Scan whose fn failed at key %d: %v, want fn's error", stopAt, err)
		}
		if calls != stopAt {
			t.Errorf("Scan called fn %d times after fn failed at key %d", calls-stopAt, stopAt)
		}
	}
}

// testScanCanceled checks that a context canceled before the scan, or
// during it, stops it with the context's error.
func testScanCanceled(t *testing.T, s store.Store, c store.Calls) {
	for i := range 100 {
		mustSet(t, s, fmt.Sprint("k", i), []byte("v"), time.Hour)
	}
	canceled, cancel := context.WithCancel(t.Context())
	cancel()
	err := c.Scan(canceled, "", func(key string, _ []byte) error {
		t.Errorf("Scan with a canceled context visited %q", key)
		return nil
	})
	wantErr(t, "Scan with a canceled context", err, context.Canceled)

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	calls := 0
	err = c.Scan(ctx, "", func(string, []byte) error {
		calls++
		cancel()
		return nil
	})
	wantErr(t, "Scan whose context was canceled while it ran", err, context.Canceled)
	if calls != 1 {
		t.Errorf("Scan went on calling fn after its context was canceled: %d calls", calls)
	}
}

// testScanDeleteWhileScanning ends every key it is shown, as an operator's
// "end these sessions" does, and writes other keys meanwhile: the scan
// must neither deadlock nor miss a key nor fail.
func testScanDeleteWhileScanning(t *testing.T, s store.Store, c store.Calls) {
	const n = 600
	for i := range n {
		mustSet(t, s, fmt.Sprintf("del:%03d", i), []byte("v"), time.Hour)
	}
	ctx := t.Context()
	seen := map[string]bool{}
	var err error
	within(t, time.Minute, "a Scan whose fn deletes and sets keys", func() {
		err = c.Scan(ctx, "del:", func(key string, _ []byte) error {
			seen[strings.Clone(key)] = true
			if err := s.Delete(ctx, key); err != nil {
				return fmt.Errorf("Delete(%q) from fn: %w", key, err)
			}
			// Outside the prefix: a key fn writes under it might be
			// visited, and write another, and so on.
			if err := s.Set(ctx, "written:"+key, []byte("w"), time.Hour); err != nil {
				return fmt.Errorf("Set from fn: %w", err)
			}
			return nil
		})
	})
	if err != nil {
		t.Fatalf("Scan: %v", err)
	}
	for i := range n {
		k := fmt.Sprintf("del:%03d", i)
		if !seen[k] {
			t.Errorf("Scan did not visit %q", k)
		}
		wantMissing(t, s, k)
		wantValue(t, s, "written:"+k, []byte("w"))
	}
	if len(seen) != n {
		t.Errorf("Scan visited %d keys, want %d", len(seen), n)
	}
}

// testScanLiveKeysWhileWriting scans while other goroutines write and
// delete keys in the same range: every key live for the whole scan is
// visited (at least once: a Redis SCAN may show one twice), with its
// value, and nothing is visited that was never written.
func testScanLiveKeysWhileWriting(t *testing.T, s store.Store, c store.Calls) {
	const stable = 500
	want := make(map[string][]byte, stable)
	for i := range stable {
		k := fmt.Sprintf("stable:%03d", i)
		want[k] = []byte("value of " + k)
		mustSet(t, s, k, want[k], time.Hour)
	}
	ctx := t.Context()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	// Stopped however the test ends, a deadlocked scan included.
	stopWriters := sync.OnceFunc(func() { close(stop); wg.Wait(); close(errs) })
	defer stopWriters()
	for w := range 4 {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				k := fmt.Sprintf("churn:%d:%d", w, i%50)
				var err error
				if i%3 == 2 {
					err = s.Delete(ctx, k)
				} else {
					err = s.Set(ctx, k, []byte("churn"), time.Hour)
				}
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	seen := map[string]*visit{}
	var err error
	within(t, time.Minute, "a Scan while other goroutines write", func() {
		err = c.Scan(ctx, "", func(key string, value []byte) error {
			if v := seen[key]; v != nil {
				v.n++
				return nil
			}
			seen[strings.Clone(key)] = &visit{value: bytes.Clone(value), n: 1}
			return nil
		})
	})
	stopWriters()
	for err := range errs {
		t.Errorf("a writer: %v", err)
	}
	if err != nil {
		t.Fatalf("Scan: %v", err)
	}
	for k, v := range want {
		switch g := seen[k]; {
		case g == nil:
			t.Errorf("Scan did not visit %q, live for the whole scan", k)
		case !bytes.Equal(g.value, v):
			t.Errorf("Scan showed %q as %s, want %s", k, describe(g.value), describe(v))
		}
	}
	for k, v := range seen {
		if _, ok := want[k]; !ok && (!strings.HasPrefix(k, "churn:") || string(v.value) != "churn") {
			t.Errorf("Scan visited %q (%s), which nobody wrote", k, describe(v.value))
		}
	}
}

func testScanClosed(t *testing.T, s store.Store, c store.Calls) {
	mustSet(t, s, "k", []byte("v"), 0)
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	for _, prefix := range []string{"", "k"} {
		err := c.Scan(t.Context(), prefix, func(key string, _ []byte) error {
			t.Errorf("Scan(%q) after Close visited %q", prefix, key)
			return nil
		})
		wantErr(t, fmt.Sprintf("Scan(%q) after Close", prefix), err, store.ErrClosed)
	}
}

// scanExpiryCases run with the expiry subtests: an expired key is not
// visited, and one still live is.
var scanExpiryCases = []expiryCase{
	{
		name:  "ScanSkipsExpired",
		needs: isScanner,
		before: func(t *testing.T, s store.Store) {
			start := time.Now()
			mustSet(t, s, "scan-expiry:short", []byte("v"), shortTTL)
			mustSet(t, s, "scan-expiry:long", []byte("v"), time.Hour)
			mustSet(t, s, "scan-expiry:renewed", []byte("v"), shortTTL)
			mustSet(t, s, "scan-expiry:renewed", []byte("w"), 0)
			got := scanAll(t, store.Resolve(s).Scan, "scan-expiry:")
			if time.Since(start) < shortTTL && got["scan-expiry:short"] == nil {
				t.Error("Scan before the TTL ran out did not visit the key")
			}
		},
		after: func(t *testing.T, s store.Store) {
			scan := store.Resolve(s).Scan
			wantVisited(t, `Scan("scan-expiry:")`, scanAll(t, scan, "scan-expiry:"), map[string][]byte{
				"scan-expiry:long":    []byte("v"),
				"scan-expiry:renewed": []byte("w"),
			})
			// Whatever the other cases left, a scan of everything shows
			// only what Get still finds.
			for k := range scanAll(t, scan, "") {
				if _, err := s.Get(t.Context(), k); err != nil {
					t.Errorf(`Scan("") visited %q, which Get does not find: %v`, k, err)
				}
			}
		},
	},
}

func init() { expiryCases = append(expiryCases, scanExpiryCases...) }

// testPurgeExpired checks that PurgeExpired removes what has expired,
// values and set members, and nothing live, and counts what it removed.
// It runs on a store of its own, so that the count is known; like the
// expiry subtests it moves the clock, or sleeps.
func (r *runner) testPurgeExpired(t *testing.T) {
	if r.h.Advance == nil {
		r.parallel(t) // sleeping, it can overlap with the others
	}
	s := r.open(t)
	purge := store.Resolve(s).PurgeExpired
	if purge == nil {
		t.Skip("store is no store.Purger")
	}
	ctx := t.Context()
	for i := range 3 {
		mustSet(t, s, fmt.Sprint("short", i), []byte("v"), shortTTL)
	}
	mustSet(t, s, "long", []byte("v"), time.Hour)
	mustSet(t, s, "forever", []byte("v"), 0)
	mustSet(t, s, "renewed", []byte("v"), shortTTL)
	mustSet(t, s, "renewed", []byte("w"), time.Hour)
	addMember(t, s, "users", "short", shortTTL)
	addMember(t, s, "users", "long", time.Hour)
	addMember(t, s, "users", "extended", shortTTL)
	addMember(t, s, "users", "extended", time.Hour)
	addMember(t, s, "gone", "short", shortTTL)
	const expired = 3 + 2 // values, then members

	// Nothing has expired yet: nothing to remove.
	if n, err := purge(ctx); err != nil || (n != 0 && n != -1) {
		t.Errorf("PurgeExpired before anything expired = %d, %v; want 0 (or -1)", n, err)
	}
	if r.h.Advance != nil {
		r.h.Advance(expiryWait)
	} else {
		time.Sleep(expiryWait)
	}
	n, err := purge(ctx)
	if err != nil {
		t.Fatalf("PurgeExpired: %v", err)
	}
	if n != expired && n != -1 {
		t.Errorf("PurgeExpired = %d, want %d (3 values, 2 set members), or -1 for a store that cannot tell", n, expired)
	}
	for i := range 3 {
		wantMissing(t, s, fmt.Sprint("short", i))
	}
	wantValue(t, s, "long", []byte("v"))
	wantValue(t, s, "forever", []byte("v"))
	wantValue(t, s, "renewed", []byte("w"))
	wantMembers(t, s, "users", "long", "extended")
	wantMembers(t, s, "gone")
	// It removed them all the first time.
	if n, err := purge(ctx); err != nil || (n != 0 && n != -1) {
		t.Errorf("PurgeExpired again = %d, %v; want 0 (or -1): the first left some behind", n, err)
	}
	// The store goes on as before.
	mustSet(t, s, "short0", []byte("again"), 0)
	wantValue(t, s, "short0", []byte("again"))
}

// testPurgerCalls holds PurgeExpired to the rules of every call: a
// canceled context and a closed store are errors.
func (r *runner) testPurgerCalls(t *testing.T) {
	s := r.open(t)
	purge := store.Resolve(s).PurgeExpired
	if purge == nil {
		t.Skip("store is no store.Purger")
	}
	canceled, cancel := context.WithCancel(t.Context())
	cancel()
	_, err := purge(canceled)
	wantErr(t, "PurgeExpired with a canceled context", err, context.Canceled)
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	_, err = purge(t.Context())
	wantErr(t, "PurgeExpired after Close", err, store.ErrClosed)
}
