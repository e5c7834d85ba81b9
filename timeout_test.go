package kvsession

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kvsession/kvsession/store"
	"github.com/kvsession/kvsession/store/memstore"
	"github.com/kvsession/kvsession/store/storetest/faultstore"
)

func TestStoreTimeoutValidation(t *testing.T) {
	secrets := [][]byte{bytes.Repeat([]byte{7}, SecretBytes)}
	for _, d := range []time.Duration{-time.Nanosecond, -time.Second} {
		var ce *ConfigError
		if err := (Config{StoreTimeout: d}).Validate(); !errors.As(err, &ce) || ce.Field != "StoreTimeout" {
			t.Errorf("Validate with StoreTimeout %v: %v", d, err)
		}
		if _, err := NewCookie(Config{StoreTimeout: d, Secrets: secrets}, nil); !errors.As(err, &ce) || ce.Field != "StoreTimeout" {
			t.Errorf("NewCookie with StoreTimeout %v: %v", d, err)
		}
	}
	for _, d := range []time.Duration{0, time.Nanosecond, time.Hour} {
		if err := (Config{StoreTimeout: d}).Validate(); err != nil {
			t.Errorf("StoreTimeout %v: %v", d, err)
		}
	}
}

// ctxRecorder is the memory store, abilities and traits included, noting
// the context each load is given.
type ctxRecorder struct {
	*memstore.Store
	mu   sync.Mutex
	last context.Context
}

func (r *ctxRecorder) GetAppend(ctx context.Context, key string, dst []byte) ([]byte, error) {
	r.mu.Lock()
	r.last = ctx
	r.mu.Unlock()
	return r.Store.GetAppend(ctx, key, dst)
}

type requestCtxKey struct{}

// Without a timeout nothing is wrapped: the store is handed the request's
// own context, as it was before StoreTimeout existed. With one, the load
// runs under a deadline of its own.
func TestStoreTimeoutUnsetWrapsNothing(t *testing.T) {
	for _, timeout := range []time.Duration{0, time.Minute} {
		t.Run(fmt.Sprint("StoreTimeout ", timeout), func(t *testing.T) {
			st := &ctxRecorder{Store: memstore.New(memstore.Options{})}
			defer st.Close()
			b := newBackend(t, Config{StoreTimeout: timeout}, st)
			if b.Store() != store.Store(st) {
				t.Errorf("Store() = %T, want the registered store", b.Store())
			}
			reqCtx := context.WithValue(context.Background(), requestCtxKey{}, "request")
			s := b.LoadFromRequest(reqCtx, []byte("session="+strings.Repeat("A", 43)))
			s.GetInt("n")
			b.Release(s)
			st.mu.Lock()
			got := st.last
			st.mu.Unlock()
			if got == nil {
				t.Fatal("the load did not read into the session's buffer (GetAppend)")
			}
			_, deadline := got.Deadline()
			if wrapped := got != reqCtx; wrapped != (timeout > 0) || deadline != (timeout > 0) {
				t.Errorf("store given a derived context: %v, with a deadline: %v; want %v", wrapped, deadline, timeout > 0)
			}
		})
	}
}

// With a timeout, every ability the store has is kept, and none added: the
// backend takes the same code paths, each call bounded.
func TestStoreTimeoutKeepsStoreAbilities(t *testing.T) {
	for _, tc := range []struct {
		name   string
		shared bool
	}{{"memory", false}, {"locker and updater", true}} {
		t.Run(tc.name, func(t *testing.T) {
			var inner store.Store = memstore.New(memstore.Options{})
			if tc.shared {
				inner = &faultstore.Shared{Store: inner.(*memstore.Store)}
			}
			fs := faultstore.New(inner)
			defer fs.Store().Close()
			b := newBackend(t, Config{StoreTimeout: time.Minute, ExtendOnAccess: !tc.shared, Lock: true}, fs.Store())
			if b.Store() != fs.Store() {
				t.Errorf("Store() = %T, want the registered store", b.Store())
			}
			if (b.locks.tryLock != nil) != tc.shared {
				t.Errorf("store lock used: %v, want %v", b.locks.tryLock != nil, tc.shared)
			}
			// Both stores are Scanners and Purgers: kept, not bounded
			// (TestStoreTimeoutEveryCall).
			if b.calls.Scan == nil || b.calls.PurgeExpired == nil {
				t.Errorf("Scan kept: %v, PurgeExpired kept: %v; want both", b.calls.Scan != nil, b.calls.PurgeExpired != nil)
			}
			out, err := request(t, b, "", func(s *Session) { s.Set("v", 1); s.SetUser("ada") })
			if err != nil {
				t.Fatal(err)
			}
			id := out.cookieValue(t, "session")
			if _, err := request(t, b, id, func(s *Session) { s.GetInt("v") }); err != nil {
				t.Fatal(err)
			}
			if list, err := b.UserSessions(context.Background(), "ada"); err != nil || len(list) != 1 {
				t.Fatalf("UserSessions = %v, %v", list, err)
			}
			want := map[faultstore.Method]bool{
				faultstore.GetAppend: true,       // loads read into the session's buffer
				faultstore.Swap:      !tc.shared, // ExtendOnAccess rewrites the record it loaded
				faultstore.AddMember: true,       // SetUser
				faultstore.Members:   true,       // UserSessions
				faultstore.TryLock:   tc.shared,  // the store's lock, not the in-process one
			}
			for m, called := range want {
				if got := fs.Calls(m) > 0; got != called {
					t.Errorf("%v called: %v, want %v", m, got, called)
				}
			}
		})
	}
}

// Every call of store.Calls is wrapped field by field: the calls a request
// makes are bounded by StoreTimeout, and Scan and PurgeExpired, which walk
// the whole store, are left to their caller's context. The table must name
// every func of store.Calls, so that a call added there is a decision here.
func TestStoreTimeoutEveryCall(t *testing.T) {
	const timeout = 50 * time.Millisecond
	tests := []struct {
		name    string
		m       faultstore.Method
		bounded bool
		call    func(ctx context.Context, c store.Calls) error
	}{
		{"Get", faultstore.Get, true, func(ctx context.Context, c store.Calls) error { _, err := c.Get(ctx, "k"); return err }},
		{"Set", faultstore.Set, true, func(ctx context.Context, c store.Calls) error { return c.Set(ctx, "k", []byte("v"), 0) }},
		{"Swap", faultstore.Swap, true, func(ctx context.Context, c store.Calls) error {
			_, err := c.Swap(ctx, "k", nil, []byte("v"), 0)
			return err
		}},
		{"Delete", faultstore.Delete, true, func(ctx context.Context, c store.Calls) error { return c.Delete(ctx, "k") }},
		{"AddMember", faultstore.AddMember, true, func(ctx context.Context, c store.Calls) error { return c.AddMember(ctx, "u", "m", 0) }},
		{"RemoveMember", faultstore.RemoveMember, true, func(ctx context.Context, c store.Calls) error { return c.RemoveMember(ctx, "u", "m") }},
		{"Members", faultstore.Members, true, func(ctx context.Context, c store.Calls) error { _, err := c.Members(ctx, "u"); return err }},
		{"GetAppend", faultstore.GetAppend, true, func(ctx context.Context, c store.Calls) error {
			_, err := c.GetAppend(ctx, "k", nil)
			return err
		}},
		{"TryLock", faultstore.TryLock, true, func(ctx context.Context, c store.Calls) error {
			_, _, err := c.TryLock(ctx, "k", time.Minute)
			return err
		}},
		{"Unlock", faultstore.Unlock, true, func(ctx context.Context, c store.Calls) error { return c.Unlock(ctx, "k", "t") }},
		{"Scan", faultstore.Scan, false, func(ctx context.Context, c store.Calls) error {
			return c.Scan(ctx, "", func(string, []byte) error { return nil })
		}},
		{"PurgeExpired", faultstore.PurgeExpired, false, func(ctx context.Context, c store.Calls) error {
			_, err := c.PurgeExpired(ctx)
			return err
		}},
	}
	var funcs, named []string
	for f := range reflect.TypeFor[store.Calls]().Fields() {
		if f.Type.Kind() == reflect.Func {
			funcs = append(funcs, f.Name)
		}
	}
	for _, tc := range tests {
		named = append(named, tc.name)
	}
	if slices.Sort(funcs); !slices.Equal(funcs, slices.Sorted(slices.Values(named))) {
		t.Fatalf("store.Calls has the funcs %v; this test names %v", funcs, named)
	}

	// Without the ability, nil stays nil.
	bare := storeTimeout(timeout).wrap(store.Resolve(struct{ store.Store }{memstore.New(memstore.Options{})}))
	if bare.GetAppend != nil || bare.TryLock != nil || bare.Unlock != nil || bare.Scan != nil || bare.PurgeExpired != nil {
		t.Errorf("wrapping a store without abilities gave it some: %+v", bare)
	}

	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			// Shared has every ability: Appender, Locker, Scanner, Purger.
			fs := faultstore.New(faultstore.NewShared(memstore.Options{}))
			defer fs.Store().Close()
			c := storeTimeout(timeout).wrap(store.Resolve(fs.Store()))
			rule := fs.Add(faultstore.Rule{Methods: tc.m, Hang: true})
			if tc.bounded {
				err := faultWithin(t, 20*timeout, fs, func() error { return tc.call(context.Background(), c) })
				if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "StoreTimeout") || rule.Hits() != 1 {
					t.Errorf("a hung %s: %v (%d hangs met), want StoreTimeout's context.DeadlineExceeded", tc.name, err, rule.Hits())
				}
				return
			}
			// Unbounded: still hanging well past StoreTimeout, and ended
			// by the caller's own deadline, named as such.
			ctx, cancel := context.WithTimeout(context.Background(), 6*timeout)
			defer cancel()
			start := time.Now()
			err := faultWithin(t, 40*timeout, fs, func() error { return tc.call(ctx, c) })
			if took := time.Since(start); took < 6*timeout || !errors.Is(err, context.DeadlineExceeded) || strings.Contains(err.Error(), "StoreTimeout") {
				t.Errorf("a hung %s with a deadline of %v: %v after %v, want the caller's deadline, not StoreTimeout (%v)", tc.name, 6*timeout, err, took, timeout)
			}
			rule.Remove()
			if err := tc.call(context.Background(), c); err != nil && !errors.Is(err, store.ErrNotFound) {
				t.Errorf("%s once the store answers: %v", tc.name, err)
			}
		})
	}
}

// The by-id API and the user-wide calls are bounded too, and a hung call
// leaves the data alone.
func TestStoreTimeoutBoundsBackendCalls(t *testing.T) {
	const timeout = 100 * time.Millisecond
	ctx := context.Background()
	tests := []struct {
		name string
		m    faultstore.Method
		call func(b *ServerBackend, id string) error
	}{
		{"Get", faultstore.Reads, func(b *ServerBackend, id string) error { _, err := b.Get(ctx, id); return err }},
		{"Set", faultstore.Writes, func(b *ServerBackend, id string) error { return b.Set(ctx, id, map[string]any{"v": "new"}) }},
		{"Delete", faultstore.Delete, func(b *ServerBackend, id string) error { return b.Delete(ctx, id) }},
		{"UserSessions", faultstore.Members, func(b *ServerBackend, _ string) error { _, err := b.UserSessions(ctx, "ada"); return err }},
		{"DestroyUserSessions", faultstore.Delete, func(b *ServerBackend, _ string) error {
			n, err := b.DestroyUserSessions(ctx, "ada")
			if n != 0 {
				t.Errorf("DestroyUserSessions reported %d destroyed", n)
			}
			return err
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fs := faultstore.New(memstore.New(memstore.Options{}))
			defer fs.Store().Close()
			b := newBackend(t, Config{StoreTimeout: timeout}, fs.Store())
			out, _ := request(t, b, "", func(s *Session) { s.Set("v", "orig"); s.SetUser("ada") })
			id := out.cookieValue(t, "session")
			before := faultSnapshot(t, fs, nil)
			rule := fs.Add(faultstore.Rule{Methods: tc.m, Hang: true})
			err := faultWithin(t, 10*timeout, fs, func() error { return tc.call(b, id) })
			if !errors.Is(err, context.DeadlineExceeded) || rule.Hits() == 0 {
				t.Fatalf("err %v (%d hangs met), want context.DeadlineExceeded", err, rule.Hits())
			}
			rule.Remove()
			after := faultSnapshot(t, fs, before)
			// Log out everywhere marks when it began before anything else
			// (marks.go): that mark is meant to stay.
			maps.DeleteFunc(after, func(k string, _ string) bool { return strings.HasPrefix(k, "logout:") })
			if !maps.Equal(before, after) {
				t.Errorf("a call that timed out changed the store")
			}
			if vals, err := b.Get(ctx, id); err != nil || vals["v"] != "orig" {
				t.Errorf("after: %v, %v", vals, err)
			}
		})
	}
}

// The error names StoreTimeout only when that is what ran out: a deadline
// of the caller's own is reported as it is.
func TestStoreTimeoutErrorSaysWhichDeadline(t *testing.T) {
	fs := faultstore.New(memstore.New(memstore.Options{}))
	defer fs.Store().Close()
	fs.Add(faultstore.Rule{Methods: faultstore.Reads, Hang: true})
	id := strings.Repeat("A", 43)
	for _, tc := range []struct {
		name     string
		timeout  time.Duration
		deadline time.Duration
		named    bool
	}{
		{"StoreTimeout", 50 * time.Millisecond, time.Hour, true},
		{"caller's deadline", time.Hour, 50 * time.Millisecond, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newBackend(t, Config{StoreTimeout: tc.timeout}, fs.Store())
			ctx, cancel := context.WithTimeout(context.Background(), tc.deadline)
			defer cancel()
			err := faultWithin(t, 10*min(tc.timeout, tc.deadline), fs, func() error { _, err := b.Get(ctx, id); return err })
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("err %v", err)
			}
			if got := strings.Contains(err.Error(), "StoreTimeout"); got != tc.named {
				t.Errorf("%q names StoreTimeout: %v, want %v", err, got, tc.named)
			}
		})
	}
}

// faultWithin runs fn, which a hang in fs may block, and fails the test if
// it has not returned within limit (a generous bound, not a timing
// check), closing fs then to release it: a test must end even when the
// timeout it tests does not work.
func faultWithin(t *testing.T, limit time.Duration, fs *faultstore.Store, fn func() error) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- fn() }()
	select {
	case err := <-done:
		return err
	case <-time.After(limit):
		fs.Store().Close()
		<-done
		t.Fatalf("still running after %v", limit)
		return nil
	}
}
