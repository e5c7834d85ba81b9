package faultstore

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kvsession/kvsession/store"
	"github.com/kvsession/kvsession/store/memstore"
	"github.com/kvsession/kvsession/store/storetest"
)

type clock struct{ ns atomic.Int64 }

func (c *clock) Now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *clock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

// With no rules the wrapper must be invisible: the whole conformance suite,
// abilities included, passes through it: over the memory store (an
// Appender), and over Shared (a Locker too). Shared passes it unwrapped
// too, its BorrowsKeys checked on its locks.
func TestConformance(t *testing.T) {
	for _, tc := range []struct {
		name string
		open func(memstore.Options) store.Store
	}{
		{"memory", func(o memstore.Options) store.Store { return New(memstore.New(o)).Store() }},
		{"shared", func(o memstore.Options) store.Store { return New(NewShared(o)).Store() }},
		{"unwrapped shared", func(o memstore.Options) store.Store { return NewShared(o) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &clock{}
			c.ns.Store(time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
			storetest.Run(t, storetest.Harness{
				New:     func(t *testing.T) store.Store { return tc.open(memstore.Options{Now: c.Now, Shards: 4}) },
				Advance: c.Advance,
			})
		})
	}
}

// A rule that matches nothing must not disturb anything either.
func TestConformanceWithIdleRule(t *testing.T) {
	storetest.Run(t, storetest.Harness{
		New: func(t *testing.T) store.Store {
			fs := New(memstore.New(memstore.Options{}))
			fs.Add(Rule{Prefix: "never-used:", Err: errors.New("must not fire")})
			return fs.Store()
		},
	})
}

// abilities says which optional abilities v has, and its traits.
func abilities(v store.Store) string {
	c := store.Resolve(v)
	return fmt.Sprintf("Appender %v, Locker %v/%v, Scanner %v, Purger %v, %+v",
		c.GetAppend != nil, c.TryLock != nil, c.Unlock != nil, c.Scan != nil, c.PurgeExpired != nil, c.Traits)
}

// plain has only the store.Store methods.
type plain struct{ store.Store }

// lockerOnly is a store.Locker without the memory store's other abilities.
type lockerOnly struct {
	store.Store
	store.Locker
}

// scannerOnly and purgerOnly have one of the memory store's abilities.
type scannerOnly struct {
	store.Store
	store.Scanner
}

type purgerOnly struct {
	store.Store
	store.Purger
}

// lockerScanner is what a Redis store has.
type lockerScanner struct {
	store.Store
	store.Locker
	store.Scanner
}

// The store Store returns has the wrapped store's abilities, no more, no
// fewer, whichever combination it has; and its traits, but for
// BorrowsKeys. A fault store wrapping a fault store keeps them too.
func TestWrapsStoresFaithfully(t *testing.T) {
	shared := func() *Shared { return NewShared(memstore.Options{}) }
	mem := func() *memstore.Store { return memstore.New(memstore.Options{}) }
	tests := []struct {
		name  string
		inner store.Store
		want  string
	}{
		{"plain", plain{mem()}, "Appender false, Locker false/false, Scanner false, Purger false, {InProcess:false BorrowsKeys:false}"},
		{"memory", mem(), "Appender true, Locker false/false, Scanner true, Purger true, {InProcess:true BorrowsKeys:false}"},
		{"locker", func() store.Store { s := shared(); return lockerOnly{s, s} }(), "Appender false, Locker true/true, Scanner false, Purger false, {InProcess:false BorrowsKeys:false}"},
		{"scanner", func() store.Store { s := mem(); return scannerOnly{s, s} }(), "Appender false, Locker false/false, Scanner true, Purger false, {InProcess:false BorrowsKeys:false}"},
		{"purger", func() store.Store { s := mem(); return purgerOnly{s, s} }(), "Appender false, Locker false/false, Scanner false, Purger true, {InProcess:false BorrowsKeys:false}"},
		{"locker and scanner", func() store.Store { s := shared(); return lockerScanner{s, s, s} }(), "Appender false, Locker true/true, Scanner true, Purger false, {InProcess:false BorrowsKeys:false}"},
		{"shared", shared(), "Appender true, Locker true/true, Scanner true, Purger true, {InProcess:true BorrowsKeys:false}"},
		{"fault store", New(func() store.Store { s := shared(); return lockerScanner{s, s, s} }()).Store(), "Appender false, Locker true/true, Scanner true, Purger false, {InProcess:false BorrowsKeys:false}"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fs := New(tc.inner)
			defer fs.Store().Close()
			if got := abilities(fs.Store()); got != tc.want {
				t.Errorf("%T wrapping %T: %s, want %s", fs.Store(), tc.inner, got, tc.want)
			}
			inner, wrapped := store.Resolve(tc.inner), store.Resolve(fs.Store())
			for _, f := range []struct {
				name           string
				inner, wrapped bool
			}{
				{"GetAppend", inner.GetAppend != nil, wrapped.GetAppend != nil},
				{"TryLock", inner.TryLock != nil, wrapped.TryLock != nil},
				{"Unlock", inner.Unlock != nil, wrapped.Unlock != nil},
				{"Scan", inner.Scan != nil, wrapped.Scan != nil},
				{"PurgeExpired", inner.PurgeExpired != nil, wrapped.PurgeExpired != nil},
			} {
				if f.inner != f.wrapped {
					t.Errorf("%s: wrapped store has it %v, the store it wraps %v", f.name, f.wrapped, f.inner)
				}
			}
			if wrapped.Traits.InProcess != inner.Traits.InProcess {
				t.Errorf("InProcess %v, the wrapped store's %v", wrapped.Traits.InProcess, inner.Traits.InProcess)
			}
		})
	}
}

var errInjected = errors.New("injected")

// Each method goes through the rules: a rule on it fails it, and the call
// is counted under it alone.
func TestEveryMethodObeysRules(t *testing.T) {
	ctx := context.Background()
	calls := []struct {
		m  Method
		fn func(v store.Store) error
	}{
		{Get, func(v store.Store) error { _, err := v.Get(ctx, "k"); return err }},
		{Set, func(v store.Store) error { return v.Set(ctx, "k", []byte("v"), 0) }},
		{Delete, func(v store.Store) error { return v.Delete(ctx, "k") }},
		{GetAppend, func(v store.Store) error { _, err := store.Resolve(v).GetAppend(ctx, "k", nil); return err }},
		{TryLock, func(v store.Store) error { _, _, err := store.Resolve(v).TryLock(ctx, "k", time.Second); return err }},
		{Unlock, func(v store.Store) error { return store.Resolve(v).Unlock(ctx, "k", "t") }},
		{Swap, func(v store.Store) error { _, err := v.Swap(ctx, "k", []byte("v"), []byte("w"), 0); return err }},
		{AddMember, func(v store.Store) error { return v.AddMember(ctx, "k", "m", 0) }},
		{RemoveMember, func(v store.Store) error { return v.RemoveMember(ctx, "k", "m") }},
		{Members, func(v store.Store) error { _, err := v.Members(ctx, "k"); return err }},
		{Scan, func(v store.Store) error {
			return store.Resolve(v).Scan(ctx, "k", func(string, []byte) error { return nil })
		}},
		{PurgeExpired, func(v store.Store) error { _, err := store.Resolve(v).PurgeExpired(ctx); return err }},
	}
	if len(calls) != numMethods {
		t.Fatalf("%d methods tested, %d exist", len(calls), numMethods)
	}
	for _, c := range calls {
		t.Run(c.m.String(), func(t *testing.T) {
			fs := New(NewShared(memstore.Options{}))
			defer fs.Store().Close()
			fs.Inner().Set(ctx, "k", []byte("v"), 0)
			if err := c.fn(fs.Store()); err != nil {
				t.Fatalf("without a rule: %v", err)
			}
			other := fs.Fail(All&^c.m, errors.New("rule for other methods"))
			if err := c.fn(fs.Store()); err != nil || other.Hits() != 0 {
				t.Fatalf("a rule for the other methods acted: %v, %d hits", err, other.Hits())
			}
			h := fs.Fail(c.m, errInjected)
			if err := c.fn(fs.Store()); !errors.Is(err, errInjected) || h.Hits() != 1 {
				t.Fatalf("with a rule: %v, %d hits", err, h.Hits())
			}
			if got := fs.Calls(c.m); got != 3 {
				t.Errorf("Calls(%v) = %d, want 3", c.m, got)
			}
			if got := fs.Calls(All &^ c.m); got != 0 {
				t.Errorf("calls counted under other methods: %d", got)
			}
		})
	}
}

func TestRuleSelection(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name string
		rule Rule
		keys []string
		want []bool // whether each call fails
	}{
		{"every call", Rule{}, []string{"a", "b", "c"}, []bool{true, true, true}},
		{"prefix", Rule{Prefix: "user:"}, []string{"user:1", "sess", "user:2"}, []bool{true, false, true}},
		{"key predicate", Rule{Key: func(k string) bool { return k == "b" }}, []string{"a", "b", "c"}, []bool{false, true, false}},
		{"third call only", Rule{Skip: 2, Times: 1}, []string{"a", "a", "a", "a"}, []bool{false, false, true, false}},
		{"twice", Rule{Times: 2}, []string{"a", "a", "a"}, []bool{true, true, false}},
		{"skip counts matching calls only", Rule{Prefix: "x", Skip: 1, Times: 1}, []string{"a", "x1", "a", "x2", "x3"}, []bool{false, false, false, true, false}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fs := New(memstore.New(memstore.Options{}))
			defer fs.Store().Close()
			tc.rule.Methods, tc.rule.Err = Set, errInjected
			h := fs.Add(tc.rule)
			hits := 0
			for i, k := range tc.keys {
				err := fs.Store().Set(ctx, k, []byte("v"), 0)
				if failed := errors.Is(err, errInjected); failed != tc.want[i] {
					t.Errorf("call %d (%q): err %v, want failure %v", i+1, k, err, tc.want[i])
				}
				if tc.want[i] {
					hits++
				} else if _, err := fs.Inner().Get(ctx, k); err != nil {
					t.Errorf("call %d (%q) let through but not written: %v", i+1, k, err)
				}
			}
			if h.Hits() != hits {
				t.Errorf("Hits = %d, want %d", h.Hits(), hits)
			}
		})
	}
}

// The first rule due acts; a later one only when the first is spent.
func TestFirstDueRuleActs(t *testing.T) {
	fs := New(memstore.New(memstore.Options{}))
	defer fs.Store().Close()
	errA, errB := errors.New("a"), errors.New("b")
	a := fs.Add(Rule{Methods: Get, Err: errA, Times: 1})
	b := fs.Add(Rule{Methods: Get, Err: errB})
	for i, want := range []error{errA, errB, errB} {
		if _, err := fs.Store().Get(context.Background(), "k"); !errors.Is(err, want) {
			t.Errorf("call %d: %v, want %v", i+1, err, want)
		}
	}
	if a.Hits() != 1 || b.Hits() != 2 {
		t.Errorf("hits %d, %d", a.Hits(), b.Hits())
	}
	b.Remove()
	if _, err := fs.Store().Get(context.Background(), "k"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("after Remove: %v", err)
	}
}

func TestErrAfterCallTakesEffect(t *testing.T) {
	ctx := context.Background()
	fs := New(memstore.New(memstore.Options{}))
	defer fs.Store().Close()
	fs.Add(Rule{Methods: Set, Err: errInjected, ErrAfterCall: true})
	if err := fs.Store().Set(ctx, "k", []byte("written"), 0); !errors.Is(err, errInjected) {
		t.Fatalf("Set: %v", err)
	}
	if v, err := fs.Inner().Get(ctx, "k"); err != nil || string(v) != "written" {
		t.Fatalf("the write did not happen: %q, %v", v, err)
	}
}

func TestLatency(t *testing.T) {
	ctx := context.Background()
	fs := New(memstore.New(memstore.Options{}))
	defer fs.Store().Close()
	fs.Inner().Set(ctx, "k", []byte("v"), 0)
	const d = 30 * time.Millisecond
	fs.Add(Rule{Methods: Reads, Latency: d})
	start := time.Now()
	v, err := fs.Store().Get(ctx, "k")
	if err != nil || string(v) != "v" {
		t.Fatalf("slow Get = %q, %v", v, err)
	}
	if el := time.Since(start); el < d {
		t.Errorf("Get took %v, less than the latency %v", el, d)
	}

	// A context that ends during the delay ends the call, which then never
	// reaches the store.
	fs.Add(Rule{Methods: Set, Latency: time.Hour})
	short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if err := fs.Store().Set(short, "k", []byte("late"), 0); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Set past its deadline: %v", err)
	}
	if v, _ := fs.Inner().Get(ctx, "k"); string(v) != "v" {
		t.Fatalf("a call cut short by its context wrote %q", v)
	}
}

// A hung call ends with its context, with Close, or (going on) with the
// removal of its rule; never on its own.
func TestHang(t *testing.T) {
	ctx := context.Background()
	type release func(fs *Store, h *Handle, cancel context.CancelFunc)
	tests := []struct {
		name    string
		release release
		want    error // nil: the call goes on and succeeds
	}{
		{"context", func(_ *Store, _ *Handle, cancel context.CancelFunc) { cancel() }, context.Canceled},
		{"close", func(fs *Store, _ *Handle, _ context.CancelFunc) { fs.Store().Close() }, store.ErrClosed},
		{"remove", func(_ *Store, h *Handle, _ context.CancelFunc) { h.Remove() }, nil},
		{"clear", func(fs *Store, _ *Handle, _ context.CancelFunc) { fs.Clear() }, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fs := New(memstore.New(memstore.Options{}))
			defer fs.Store().Close()
			h := fs.Add(Rule{Methods: Set, Hang: true})
			cctx, cancel := context.WithCancel(ctx)
			defer cancel()
			done := make(chan error, 1)
			go func() { done <- fs.Store().Set(cctx, "k", []byte("v"), 0) }()
			waitFor(t, func() bool { return h.Hits() == 1 })
			select {
			case err := <-done:
				t.Fatalf("hung call returned on its own: %v", err)
			case <-time.After(20 * time.Millisecond):
			}
			tc.release(fs, h, cancel)
			select {
			case err := <-done:
				if !errors.Is(err, tc.want) && !(tc.want == nil && err == nil) {
					t.Fatalf("released call: %v, want %v", err, tc.want)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("hung call not released")
			}
			_, err := fs.Inner().Get(ctx, "k")
			if wrote := err == nil; wrote != (tc.want == nil) {
				t.Errorf("store written: %v, want %v (%v)", wrote, tc.want == nil, err)
			}
		})
	}
}

func TestConcurrentRulesAndCalls(t *testing.T) {
	ctx := context.Background()
	fs := New(memstore.New(memstore.Options{}))
	defer fs.Store().Close()
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 200 {
				k := strconv.Itoa(g*1000 + i)
				h := fs.Add(Rule{Methods: Set, Key: func(key string) bool { return key == k }, Err: errInjected})
				if err := fs.Store().Set(ctx, k, []byte("v"), 0); !errors.Is(err, errInjected) {
					t.Errorf("Set(%s): %v", k, err)
				}
				h.Remove()
				if err := fs.Store().Set(ctx, k, []byte("v"), 0); err != nil {
					t.Errorf("Set(%s) after Remove: %v", k, err)
				}
			}
		})
	}
	wg.Wait()
	if got := fs.Calls(Set); got != 4*200*2 {
		t.Errorf("Calls(Set) = %d", got)
	}
	fs.ResetCalls()
	if got := fs.Calls(All); got != 0 {
		t.Errorf("after ResetCalls: %d", got)
	}
}

func TestAddRejectsNonsense(t *testing.T) {
	for name, r := range map[string]Rule{
		"unknown method":           {Methods: 1 << 15},
		"negative skip":            {Skip: -1},
		"negative latency":         {Latency: -time.Second},
		"ErrAfterCall without Err": {ErrAfterCall: true},
	} {
		t.Run(name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Error("Add accepted it")
				}
			}()
			New(plain{}).Add(r)
		})
	}
}

func TestMethodString(t *testing.T) {
	if got := (Get | Swap).String(); got != "Get|Swap" {
		t.Errorf("%q", got)
	}
	if got := Reads.String(); got != "Get|GetAppend" {
		t.Errorf("%q", got)
	}
	if got := (Scan | PurgeExpired).String(); got != "Scan|PurgeExpired" {
		t.Errorf("%q", got)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10s")
		}
		time.Sleep(time.Millisecond)
	}
}

func TestKeys(t *testing.T) {
	ctx := context.Background()
	fs := New(memstore.New(memstore.Options{}))
	defer fs.Store().Close()
	fs.Store().Set(ctx, "b", []byte("v"), 0)
	fs.Store().Get(ctx, "a")
	fs.Store().Delete(ctx, "b")
	// A scan's prefix and a purge name no key.
	c := store.Resolve(fs.Store())
	c.Scan(ctx, "prefix", func(string, []byte) error { return nil })
	c.PurgeExpired(ctx)
	if got := fmt.Sprint(fs.Keys()); got != "[a b]" {
		t.Errorf("Keys = %s", got)
	}
	fs.ResetCalls()
	if len(fs.Keys()) != 0 || fs.Calls(All) != 0 {
		t.Errorf("after ResetCalls: %v, %d calls", fs.Keys(), fs.Calls(All))
	}
}

// TestSnapshot: the keys calls named plus the ones asked for, read past
// the rules and without counting.
func TestSnapshot(t *testing.T) {
	ctx := context.Background()
	fs := New(memstore.New(memstore.Options{}))
	defer fs.Store().Close()
	fs.Inner().Set(ctx, "untouched", []byte("u"), 0)
	fs.Inner().Set(ctx, "other", []byte("o"), 0)
	fs.Store().Set(ctx, "a", []byte("1"), 0)
	fs.Store().Get(ctx, "missing")
	fs.Add(Rule{Methods: Reads, Err: errInjected})
	got, err := fs.Snapshot(ctx, "untouched", "gone")
	if want := map[string]string{"a": "1", "untouched": "u"}; err != nil || !maps.Equal(got, want) {
		t.Fatalf("Snapshot = %v, %v; want %v", got, err, want)
	}
	if n := fs.Calls(Reads); n != 1 {
		t.Fatalf("Snapshot counted as calls: %d reads, want 1", n)
	}
	fs.Inner().Close()
	if _, err := fs.Snapshot(ctx); !errors.Is(err, store.ErrClosed) {
		t.Fatalf("Snapshot of a closed store: %v", err)
	}
}
