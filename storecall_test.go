package kvsession

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/kvsession/kvsession/store"
	"github.com/kvsession/kvsession/store/memstore"
	"github.com/kvsession/kvsession/store/storetest/faultstore"
)

// callLog records Events.StoreCall reports.
type callLog struct {
	mu    sync.Mutex
	count map[string]int
	errs  map[string][]error
	ctxs  int // reports whose ctx was not the caller's
	neg   int // reports with a negative duration
}

func (l *callLog) hook(ctx context.Context, method string, took time.Duration, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.count == nil {
		l.count, l.errs = map[string]int{}, map[string][]error{}
	}
	l.count[method]++
	l.errs[method] = append(l.errs[method], err)
	if ctx.Value(eventCtxKey{}) == nil {
		l.ctxs++
	}
	if took < 0 {
		l.neg++
	}
}

// TestStoreCallWrapsEachCall: each call of the resolved store is timed
// under its own method name, with the caller's context and the call's own
// result; an ability the store lacks stays nil, one it has stays.
func TestStoreCallWrapsEachCall(t *testing.T) {
	errCall := errors.New("the call's own error")
	full := store.Calls{
		Get:          func(context.Context, string) ([]byte, error) { return []byte("v"), errCall },
		Set:          func(context.Context, string, []byte, time.Duration) error { return errCall },
		Swap:         func(context.Context, string, []byte, []byte, time.Duration) (bool, error) { return true, errCall },
		Delete:       func(context.Context, string) error { return errCall },
		AddMember:    func(context.Context, string, string, time.Duration) error { return errCall },
		RemoveMember: func(context.Context, string, string) error { return errCall },
		Members:      func(context.Context, string) ([]string, error) { return []string{"m"}, errCall },
		GetAppend:    func(_ context.Context, _ string, dst []byte) ([]byte, error) { return append(dst, 'v'), errCall },
		TryLock:      func(context.Context, string, time.Duration) (string, bool, error) { return "tok", true, errCall },
		Unlock:       func(context.Context, string, string) error { return errCall },
		Scan: func(_ context.Context, _ string, fn func(string, []byte) error) error {
			fn("k", nil)
			return errCall
		},
		PurgeExpired: func(context.Context) (int, error) { return 3, errCall },
		Traits:       store.Traits{InProcess: true, BorrowsKeys: true},
	}
	ctx := eventCtx(t)
	calls := map[string]func(c store.Calls) (any, error){
		"Get": func(c store.Calls) (any, error) { v, err := c.Get(ctx, "k"); return string(v), err },
		"Set": func(c store.Calls) (any, error) { return nil, c.Set(ctx, "k", nil, 0) },
		"Swap": func(c store.Calls) (any, error) {
			ok, err := c.Swap(ctx, "k", nil, nil, 0)
			return ok, err
		},
		"Delete":       func(c store.Calls) (any, error) { return nil, c.Delete(ctx, "k") },
		"AddMember":    func(c store.Calls) (any, error) { return nil, c.AddMember(ctx, "s", "m", 0) },
		"RemoveMember": func(c store.Calls) (any, error) { return nil, c.RemoveMember(ctx, "s", "m") },
		"Members": func(c store.Calls) (any, error) {
			ms, err := c.Members(ctx, "s")
			return fmt.Sprint(ms), err
		},
		"GetAppend": func(c store.Calls) (any, error) {
			v, err := c.GetAppend(ctx, "k", []byte("x"))
			return string(v), err
		},
		"TryLock": func(c store.Calls) (any, error) {
			tok, ok, err := c.TryLock(ctx, "k", time.Second)
			return fmt.Sprint(tok, ok), err
		},
		"Unlock": func(c store.Calls) (any, error) { return nil, c.Unlock(ctx, "k", "tok") },
		"Scan": func(c store.Calls) (any, error) {
			var seen []string
			err := c.Scan(ctx, "", func(k string, _ []byte) error { seen = append(seen, k); return nil })
			return fmt.Sprint(seen), err
		},
		"PurgeExpired": func(c store.Calls) (any, error) { return c.PurgeExpired(ctx) },
	}
	log := &callLog{}
	wrapped := storeCallTimer(log.hook).wrap(full)
	if wrapped.Traits != full.Traits {
		t.Errorf("Traits = %+v, want %+v", wrapped.Traits, full.Traits)
	}
	for _, name := range slices.Sorted(maps.Keys(calls)) {
		call := calls[name]
		want, _ := call(full)
		got, err := call(wrapped)
		if got != want || err != errCall {
			t.Errorf("%s through the timer = %v, %v; want %v, %v", name, got, err, want, errCall)
		}
		if log.count[name] != 1 || len(log.errs[name]) != 1 || log.errs[name][0] != errCall {
			t.Errorf("%s: reported %d times, with %v; want once, with the call's error", name, log.count[name], log.errs[name])
		}
	}
	if len(log.count) != len(calls) || log.ctxs != 0 || log.neg != 0 {
		t.Errorf("reports %v, %d without the caller's context, %d negative", log.count, log.ctxs, log.neg)
	}

	// A store without the optional abilities keeps them nil.
	bare := full
	bare.GetAppend, bare.TryLock, bare.Unlock, bare.Scan, bare.PurgeExpired = nil, nil, nil, nil, nil
	w := storeCallTimer(log.hook).wrap(bare)
	if w.GetAppend != nil || w.TryLock != nil || w.Unlock != nil || w.Scan != nil || w.PurgeExpired != nil {
		t.Error("the timer gave a store an ability it lacks")
	}
}

// TestStoreCallReportsEveryBackendCall: a backend with the hook reports
// each store call it makes exactly once, as the store counts them, on top
// of StoreTimeout too; without it, the store's calls are not wrapped.
func TestStoreCallReportsEveryBackendCall(t *testing.T) {
	for _, tc := range []struct {
		name    string
		cfg     Config
		shared  bool // a store with its own lock (store.Locker)
		methods []faultstore.Method
	}{
		{"memory", Config{}, false, nil},
		{"with StoreTimeout", Config{StoreTimeout: time.Minute}, false, nil},
		{"store lock", Config{Lock: true}, true, []faultstore.Method{faultstore.TryLock, faultstore.Unlock}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var inner store.Store = memstore.New(memstore.Options{})
			if tc.shared {
				inner = &faultstore.Shared{Store: inner.(*memstore.Store)}
			}
			fs := faultstore.New(inner)
			defer fs.Store().Close()
			log := &callLog{}
			cfg := tc.cfg
			cfg.Events.StoreCall = log.hook
			b := newBackend(t, cfg, fs.Store())
			e := &eventEnv{t: t, b: b, jar: map[string]string{}}
			e.request(func(s *Session) { s.SetInt("n", 1); s.SetUser("ada") })
			e.request(func(s *Session) { s.GetInt("n") })
			e.request(func(s *Session) { s.RenewID() })
			id, _ := b.GenerateID()
			e.setCookie(id)
			e.request(func(s *Session) { s.GetInt("n") }) // a miss
			ctx := eventCtx(t)
			if _, err := b.DestroyUserSessions(ctx, "ada"); err != nil {
				t.Fatal(err)
			}
			methods := []faultstore.Method{faultstore.Get, faultstore.GetAppend, faultstore.Set, faultstore.Swap,
				faultstore.Delete, faultstore.AddMember, faultstore.RemoveMember, faultstore.Members}
			for _, m := range append(methods, tc.methods...) {
				if got, want := log.count[m.String()], fs.Calls(m); got != want {
					t.Errorf("%v: %d reports, %d calls", m, got, want)
				}
			}
			if log.count["GetAppend"] == 0 || log.count["Members"] == 0 {
				t.Errorf("reports %v: the requests made no load or listing", log.count)
			}
			misses := 0
			for _, err := range log.errs["GetAppend"] {
				if errors.Is(err, store.ErrNotFound) {
					misses++
				}
			}
			if misses == 0 {
				t.Error("the miss was not reported with store.ErrNotFound")
			}
			if log.ctxs != 0 || log.neg != 0 {
				t.Errorf("%d reports without the caller's context, %d negative", log.ctxs, log.neg)
			}
		})
	}
	// Unset, the backend calls the store's own methods: nothing between.
	fs := faultstore.New(memstore.New(memstore.Options{}))
	defer fs.Store().Close()
	b := newBackend(t, Config{}, fs.Store())
	if got, want := fmt.Sprintf("%p", b.calls.Get), fmt.Sprintf("%p", store.Resolve(fs.Store()).Get); got != want {
		t.Errorf("without the hook, Get is %s, not the store's own %s", got, want)
	}
}
