package kvsession

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
