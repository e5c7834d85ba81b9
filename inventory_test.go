package kvsession

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/kvsession/kvsession/store"
	"github.com/kvsession/kvsession/store/memstore"
)

// inventory is a store with sessions of every kind a walk must tell apart:
// anonymous and bound ones, an expired one the store still keeps, a
// rotated-out id's forward, a log-out mark and a user's set.
type inventory struct {
	b       *ServerBackend
	clk     *clock
	handles map[string]string // by name: "anon", "ada", "bob", "stale"
}

func newInventory(t *testing.T, cfg Config) *inventory {
	t.Helper()
	if cfg.MaxAge == 0 {
		cfg.MaxAge = 24 * time.Hour
	}
	cfg.IdleTimeout, cfg.RotationInterval = 3*time.Hour, 2*time.Hour
	clk := newClock()
	st := memstore.New(memstore.Options{Now: clk.now})
	t.Cleanup(func() { st.Close() })
	b := newBackend(t, cfg, keepingStore{st})
	b.now = clk.now
	inv := &inventory{b: b, clk: clk, handles: map[string]string{}}
	make := func(name, user string) *browser {
		br := newBrowser(t, b)
		br.do(func(s *Session) {
			s.Set("name", name)
			if user != "" {
				s.SetUser(user)
			}
		})
		br.do(func(s *Session) { inv.handles[name] = s.Handle() })
		return br
	}
	make("stale", "")
	clk.advance(4 * time.Hour) // stale: past its idle timeout, still kept
	anon, ada := make("anon", ""), make("ada", "ada")
	make("bob", "bob")
	clk.advance(time.Hour)
	anon.do(func(s *Session) { s.Set("n", 1) })
	clk.advance(90 * time.Minute) // ada's rotation is due: its old id forwards
	before := ada.jar["session"]
	ada.do(func(s *Session) { s.Set("n", 1) })
	if ada.jar["session"] == before {
		t.Fatal("ada's id did not rotate: the store holds no forward")
	}
	anon.do(func(s *Session) { s.Set("n", 2) })
	if _, err := b.DestroyUserSessions(context.Background(), "nobody"); err != nil { // a log-out mark
		t.Fatal(err)
	}
	return inv
}

// keepingStore keeps what it is given for good, as a store whose expiry
// lags the sessions' deadlines keeps it a while.
type keepingStore struct{ *memstore.Store }

func (k keepingStore) Set(ctx context.Context, key string, value []byte, _ time.Duration) error {
	return k.Store.Set(ctx, key, value, 0)
}

func (k keepingStore) Swap(ctx context.Context, key string, old, value []byte, _ time.Duration) (bool, error) {
	return k.Store.Swap(ctx, key, old, value, 0)
}

func (inv *inventory) names(t *testing.T, opts ScanOptions) []string {
	t.Helper()
	var got []string
	for info, err := range inv.b.Sessions(context.Background(), opts) {
		if err != nil {
			t.Fatal(err)
		}
		name := ""
		for n, h := range inv.handles {
			if h == info.Handle {
				name = n
			}
		}
		if name == "" {
			t.Fatalf("listed a session nobody made: %+v", info)
		}
		if opts.Values != (info.Values != nil) {
			t.Fatalf("values %v asked for, listed %v", opts.Values, info.Values)
		}
		if opts.Values && info.Values["name"] != name {
			t.Fatalf("%s listed with values %v", name, info.Values)
		}
		got = append(got, name)
	}
	slices.Sort(got)
	return got
}

func TestSessionsListsLiveSessionsOnly(t *testing.T) {
	inv := newInventory(t, Config{})
	tests := []struct {
		opts ScanOptions
		want []string
	}{
		{ScanOptions{}, []string{"ada", "anon", "bob"}},
		{ScanOptions{Values: true}, []string{"ada", "anon", "bob"}},
		{ScanOptions{Expired: true}, []string{"ada", "anon", "bob", "stale"}},
		{ScanOptions{User: "ada"}, []string{"ada"}},
		{ScanOptions{User: "bob", Expired: true}, []string{"bob"}},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("%+v", tc.opts), func(t *testing.T) {
			if got := inv.names(t, tc.opts); !slices.Equal(got, tc.want) {
				t.Fatalf("listed %v, want %v", got, tc.want)
			}
			n, err := inv.b.CountSessions(context.Background(), tc.opts)
			if err != nil || n != len(tc.want) {
				t.Fatalf("CountSessions = %d, %v; want %d", n, err, len(tc.want))
			}
		})
	}
}

func TestSessionsStopsWhenTheLoopDoes(t *testing.T) {
	inv := newInventory(t, Config{})
	n := 0
	for _, err := range inv.b.Sessions(context.Background(), ScanOptions{Expired: true}) {
		if err != nil {
			t.Fatal(err)
		}
		n++
		break
	}
	if n != 1 {
		t.Fatalf("%d sessions after a break", n)
	}
}

func TestWalkReportsProgress(t *testing.T) {
	b, _, _ := rvSetup(t, Config{})
	for range progressEvery + 10 {
		request(t, b, "", func(s *Session) { s.Set("n", 1) })
	}
	var calls []int
	n, err := b.CountSessions(context.Background(), ScanOptions{Progress: func(v int) { calls = append(calls, v) }})
	if err != nil || n != progressEvery+10 {
		t.Fatalf("CountSessions = %d, %v", n, err)
	}
	if !slices.Equal(calls, []int{progressEvery, progressEvery + 10}) {
		t.Fatalf("progress calls %v", calls)
	}
}

func TestFindSession(t *testing.T) {
	inv := newInventory(t, Config{})
	ctx := context.Background()
	info, err := inv.b.FindSession(ctx, inv.handles["ada"], ScanOptions{Values: true})
	if err != nil || info.User != "ada" || info.Values["name"] != "ada" || info.Keys != 2 {
		t.Fatalf("FindSession(ada) = %+v, %v", info, err)
	}
	if _, err := inv.b.FindSession(ctx, inv.handles["stale"], ScanOptions{}); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("an expired session without Expired: %v", err)
	}
	if info, err := inv.b.FindSession(ctx, inv.handles["stale"], ScanOptions{Expired: true}); err != nil || info.Handle != inv.handles["stale"] {
		t.Fatalf("an expired session with Expired: %+v, %v", info, err)
	}
	if _, err := inv.b.FindSession(ctx, "AAECAwQFBgcICQoL", ScanOptions{}); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("an unknown handle: %v", err)
	}
	if _, err := inv.b.FindSession(ctx, "nope", ScanOptions{}); !errors.Is(err, ErrInvalidHandle) {
		t.Fatalf("a malformed handle: %v", err)
	}
}

func TestDestroySession(t *testing.T) {
	for _, lock := range []bool{false, true} {
		t.Run(fmt.Sprintf("lock=%v", lock), func(t *testing.T) {
			b, _, _ := rvSetup(t, Config{Lock: lock, MaxAge: time.Hour})
			ctx := context.Background()
			ids := map[string]string{}
			for _, name := range []string{"a", "b"} {
				out, _ := request(t, b, "", func(s *Session) { s.Set("name", name); s.SetUser(name) })
				ids[name] = out.cookieValue(t, "session")
			}
			// A request for "a" is in flight when the operator ends it.
			s := b.LoadFromRequest(ctx, []byte("session="+ids["a"]))
			handle := s.Handle()
			ended, err := b.DestroySession(ctx, handle, ScanOptions{})
			if !ended || err != nil {
				t.Fatalf("DestroySession = %v, %v", ended, err)
			}
			s.Set("late", true)
			if err := b.StoreInResponse(s, &sink{}); err != nil {
				t.Fatal(err)
			}
			b.Release(s)
			request(t, b, ids["a"], func(s *Session) {
				if s.Len() != 0 {
					t.Fatal("a request in flight wrote back a session an operator ended")
				}
			})
			request(t, b, ids["b"], func(s *Session) {
				if s.Len() == 0 {
					t.Fatal("ending one session ended another")
				}
			})
			if list, _ := b.UserSessions(ctx, "a"); len(list) != 0 {
				t.Fatalf("the user's set still lists %d", len(list))
			}
			if ended, err := b.DestroySession(ctx, handle, ScanOptions{}); ended || err != nil {
				t.Fatalf("ending it again = %v, %v", ended, err)
			}
		})
	}
}

func TestPurgeExpired(t *testing.T) {
	inv := newInventory(t, Config{})
	ctx := context.Background()
	res, err := inv.b.PurgeExpired(ctx, ScanOptions{})
	if err != nil || res.Sessions != 1 {
		t.Fatalf("PurgeExpired = %+v, %v; want the expired session", res, err)
	}
	if got := inv.names(t, ScanOptions{Expired: true}); !slices.Equal(got, []string{"ada", "anon", "bob"}) {
		t.Fatalf("after the purge the store keeps %v", got)
	}
	if res, err := inv.b.PurgeExpired(ctx, ScanOptions{}); err != nil || res.Sessions != 0 {
		t.Fatalf("a second purge = %+v, %v", res, err)
	}
}

// A store that cannot walk its keys says so, rather than listing nothing.
func TestWalksNeedAScanner(t *testing.T) {
	type plain struct{ store.Store }
	st := memstore.New(memstore.Options{})
	t.Cleanup(func() { st.Close() })
	b := newBackend(t, Config{}, plain{st})
	ctx := context.Background()
	if _, err := b.CountSessions(ctx, ScanOptions{}); !errors.Is(err, ErrNotScannable) {
		t.Errorf("CountSessions: %v", err)
	}
	for _, err := range b.Sessions(ctx, ScanOptions{}) {
		if !errors.Is(err, ErrNotScannable) {
			t.Errorf("Sessions: %v", err)
		}
	}
	if _, err := b.DestroySession(ctx, "AAECAwQFBgcICQoL", ScanOptions{}); !errors.Is(err, ErrNotScannable) {
		t.Errorf("DestroySession: %v", err)
	}
	if _, err := b.PurgeExpired(ctx, ScanOptions{}); !errors.Is(err, ErrNotScannable) {
		t.Errorf("PurgeExpired: %v", err)
	}
}
