package kvsession

// Fault injection at the backend: what needs the backend's clock or its
// store keys (rotation, forwards), the by-id API, and the StoreTimeout
// plumbing. The middleware-level proofs are in fasthttp/fault_test.go.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kvsession/kvsession/store"
	"github.com/kvsession/kvsession/store/memstore"
	"github.com/kvsession/kvsession/store/storetest/faultstore"
)

var errFault = errors.New("injected store fault")

// faultSnapshot returns what the store holds under every key a call named
// (since the last ResetCalls) or before holds.
func faultSnapshot(t *testing.T, fs *faultstore.Store, before map[string]string) map[string]string {
	t.Helper()
	m, err := fs.Snapshot(context.Background(), slices.Collect(maps.Keys(before))...)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestRotationFaultsLoseNothing injects faults into the periodic id
// rotation (RotationInterval) and into following its forward record.
func TestRotationFaultsLoseNothing(t *testing.T) {
	type ids struct{ old, new string } // new: "" until rotated
	tests := []struct {
		name string
		// rotated: run the fault after a successful rotation, with the
		// old cookie (following the forward); else during the rotation.
		rotated bool
		rule    func(b *ServerBackend, id ids) faultstore.Rule
		// also, if set, is a second fault, added after rule.
		also func(b *ServerBackend, id ids) faultstore.Rule
		// failed: the request must fail; otherwise it must succeed.
		failed bool
		// keepsNew: the request fails without knowing whether the old key
		// was retired, so the new record must stay (and stay indexed).
		keepsNew bool
	}{
		{
			name: "new record not written",
			rule: func(b *ServerBackend, id ids) faultstore.Rule {
				oldKey := b.storeKey([]byte(id.old))
				return faultstore.Rule{Methods: faultstore.Set, Key: func(k string) bool { return k != oldKey }}
			},
			failed: true,
		},
		{
			// The request fails and the new record is taken back: the old
			// id must not stay fully valid beside the new one.
			name: "forward record not written",
			rule: func(b *ServerBackend, id ids) faultstore.Rule {
				return faultstore.Rule{Methods: faultstore.Swap, Prefix: b.storeKey([]byte(id.old))}
			},
			failed: true,
		},
		{
			// The forward landed but its reply was lost (a timeout): the
			// rotation stands, and the new record must not be taken back.
			name: "forward written, its reply lost",
			rule: func(b *ServerBackend, id ids) faultstore.Rule {
				return faultstore.Rule{Methods: faultstore.Swap, Prefix: b.storeKey([]byte(id.old)), ErrAfterCall: true}
			},
		},
		{
			// As above, and the old key cannot be read back to tell: the
			// request fails, and the new record, which the old cookie now
			// reaches, stays where DestroyUserSessions finds it.
			name: "forward written, its reply lost, old key unreadable",
			rule: func(b *ServerBackend, id ids) faultstore.Rule {
				return faultstore.Rule{Methods: faultstore.Swap, Prefix: b.storeKey([]byte(id.old)), ErrAfterCall: true}
			},
			also: func(b *ServerBackend, id ids) faultstore.Rule {
				// Skip the request's load of the old key and the re-read
				// before rotating (refresh): fail the look back only.
				return faultstore.Rule{Methods: faultstore.Reads, Prefix: b.storeKey([]byte(id.old)), Skip: 2}
			},
			failed:   true,
			keepsNew: true,
		},
		{
			name:    "forward followed, new record unreadable",
			rotated: true,
			rule: func(b *ServerBackend, id ids) faultstore.Rule {
				return faultstore.Rule{Methods: faultstore.Reads, Prefix: b.storeKey([]byte(id.new))}
			},
			failed: true,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			clk := newClock()
			fs := faultstore.New(memstore.New(memstore.Options{Now: clk.now}))
			defer fs.Store().Close()
			var logs bytes.Buffer
			b := newBackend(t, Config{RotationInterval: time.Hour, Logger: slog.New(slog.NewTextHandler(&logs, nil))}, fs.Store())
			b.now = clk.now
			out, err := request(t, b, "", func(s *Session) { s.Set("v", "orig"); s.SetUser("ada") })
			if err != nil {
				t.Fatal(err)
			}
			id := ids{old: out.cookieValue(t, "session")}
			clk.advance(time.Hour) // rotation due
			if tc.rotated {
				out, err := request(t, b, id.old, func(s *Session) { s.GetString("v") })
				if err != nil {
					t.Fatal(err)
				}
				id.new = out.cookieValue(t, "session")
			}
			before := faultSnapshot(t, fs, nil)
			fs.ResetCalls()
			r := tc.rule(b, id)
			r.Err = errFault
			rule := fs.Add(r)
			var also *faultstore.Handle
			if tc.also != nil {
				r := tc.also(b, id)
				r.Err = errFault
				also = fs.Add(r)
			}

			out, err = request(t, b, id.old, func(s *Session) { s.GetString("v") })
			if rule.Hits() == 0 {
				t.Fatal("the fault was never met")
			}
			if !tc.failed {
				if err != nil || len(out.cookies) == 0 {
					t.Fatalf("err %v, cookies %v: want the new cookie", err, out.cookies)
				}
				id.new = out.cookieValue(t, "session")
			} else if tc.keepsNew {
				if !errors.Is(err, errFault) || len(out.cookies) != 0 {
					t.Fatalf("err %v, cookies %v: want the fault and no cookie", err, out.cookies)
				}
			} else {
				if !errors.Is(err, errFault) || len(out.cookies) != 0 {
					t.Fatalf("err %v, cookies %v: want the fault and no cookie", err, out.cookies)
				}
				after := faultSnapshot(t, fs, before)
				for k, v := range before {
					if after[k] != v {
						t.Errorf("record %q changed by a failed request", k)
					}
				}
				if tc.rotated {
					if !maps.Equal(before, after) || fs.Calls(faultstore.Set|faultstore.Delete) != 0 {
						t.Errorf("a failed load wrote: %d writes", fs.Calls(faultstore.Set|faultstore.Delete))
					}
				} else if len(after) != len(before) {
					// The new record, if written, was taken back.
					t.Errorf("records before %d, after %d", len(before), len(after))
				}
			}
			rule.Remove()
			if also != nil {
				also.Remove()
			}

			// Nothing lost: every cookie the client may hold still reaches
			// the data.
			for _, cookie := range []string{id.old, id.new} {
				if cookie == "" {
					continue
				}
				request(t, b, cookie, func(s *Session) {
					if v, _ := s.GetString("v"); v != "orig" || s.User() != "ada" {
						t.Errorf("cookie %.6s…: v=%q user=%q", cookie, v, s.User())
					}
				})
			}
			// And logging the user out everywhere ends every one of them.
			if _, err := b.DestroyUserSessions(t.Context(), "ada"); err != nil {
				t.Fatal(err)
			}
			for _, cookie := range []string{id.old, id.new} {
				if cookie == "" {
					continue
				}
				request(t, b, cookie, func(s *Session) {
					if v, _ := s.GetString("v"); v != "" || s.User() != "" {
						t.Errorf("after DestroyUserSessions, cookie %.6s… still reaches v=%q user=%q", cookie, v, s.User())
					}
				})
			}
		})
	}
}

// TestFailedDestroyFailsTheResponse: a handler that ignores Destroy's
// error must not get a response that looks like a logout.
func TestFailedDestroyFailsTheResponse(t *testing.T) {
	fs := faultstore.New(memstore.New(memstore.Options{}))
	defer fs.Store().Close()
	b := newBackend(t, Config{}, fs.Store())
	out, _ := request(t, b, "", func(s *Session) { s.Set("v", "orig") })
	id := out.cookieValue(t, "session")

	rule := fs.Fail(faultstore.Delete, errFault)
	out, err := request(t, b, id, func(s *Session) {
		s.Destroy()                  // error ignored
		s.Set("flash", "logged out") // and the handler carries on
	})
	if !errors.Is(err, errFault) || len(out.cookies) != 0 || fs.Calls(faultstore.Set) != 1 {
		t.Fatalf("err %v, cookies %v, %d Sets: want the delete's error, nothing written", err, out.cookies, fs.Calls(faultstore.Set))
	}
	// A retry within the request that works is a logout after all.
	out, err = request(t, b, id, func(s *Session) {
		if s.Destroy() == nil {
			t.Fatal("rule removed too early")
		}
		rule.Remove()
		if err := s.Destroy(); err != nil {
			t.Fatal(err)
		}
	})
	if err != nil || !strings.Contains(out.cookies["session"], "Max-Age=0") {
		t.Fatalf("retried Destroy: %v, cookies %v", err, out.cookies)
	}
}

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
			// (checkLogoutMark): that mark is meant to stay.
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
