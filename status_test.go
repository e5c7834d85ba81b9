package kvsession

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/kvsession/kvsession/store/memstore"
)

func newMem(t *testing.T) *memstore.Store {
	st := memstore.New(memstore.Options{})
	t.Cleanup(func() { st.Close() })
	return st
}

// statusRequest is one request on b that runs fn and ends with a response
// of the given status.
func statusRequest(t *testing.T, b Backend, header []byte, status int, fn func(s *Session)) *sink {
	t.Helper()
	s := b.LoadFromRequest(context.Background(), header)
	defer b.Release(s)
	if fn != nil {
		fn(s)
	}
	out := &sink{}
	if err := b.StoreInResponseStatus(s, out, status); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestServerErrorDropsTheRequestsChanges: on both backends, a handler that
// changes the session and answers 5xx leaves what was stored and the
// client's cookie as they were, unless SaveOnServerError; a 4xx saves.
func TestServerErrorDropsTheRequestsChanges(t *testing.T) {
	backends := map[string]func(t *testing.T, cfg Config) Backend{
		"server": func(t *testing.T, cfg Config) Backend { return newBackend(t, cfg, newMem(t)) },
		"cookie": func(t *testing.T, cfg Config) Backend { return newCookieBackend(t, cfg, nil) },
	}
	for name, newB := range backends {
		for _, tc := range []struct {
			status    int
			saveOn5xx bool
			wantSaved bool
		}{
			{500, false, false},
			{503, false, false},
			{599, false, false},
			{500, true, true},
			{404, false, true},
			{200, false, true},
		} {
			t.Run(name, func(t *testing.T) {
				b := newB(t, Config{SaveOnServerError: tc.saveOn5xx})
				first := statusRequest(t, b, nil, 200, func(s *Session) { s.SetInt("n", 1) })
				header := []byte("session=" + first.cookieValue(t, "session"))

				out := statusRequest(t, b, header, tc.status, func(s *Session) { s.SetInt("n", 2) })
				if saved := len(out.cookies) > 0; saved != tc.wantSaved {
					t.Fatalf("status %d: Set-Cookie %v, want one: %v", tc.status, out.cookies, tc.wantSaved)
				}
				if !tc.wantSaved && (len(out.cookies) != 0 || !slices.Equal(out.headers, []string{"Vary: Cookie"})) {
					t.Fatalf("status %d: wrote %v %v, want Vary: Cookie alone", tc.status, out.cookies, out.headers)
				}
				if name == "cookie" && tc.wantSaved {
					header = []byte("session=" + out.cookieValue(t, "session"))
				}
				var n int
				statusRequest(t, b, header, 200, func(s *Session) { n, _ = s.GetInt("n") })
				if want := map[bool]int{false: 1, true: 2}[tc.wantSaved]; n != want {
					t.Fatalf("status %d, SaveOnServerError %v: n = %d after it, want %d", tc.status, tc.saveOn5xx, n, want)
				}
			})
		}
	}
}

// TestServerErrorStoresNothing: a dropped save makes no store write, and
// a session never used gets no header at all.
func TestServerErrorStoresNothing(t *testing.T) {
	st := newFakeStore()
	b := newBackend(t, Config{}, st)
	out := statusRequest(t, b, nil, 500, func(s *Session) { s.SetString("a", "b") })
	if st.count("set")+st.count("delete") != 0 || len(out.cookies)+len(out.headers) != 1 {
		t.Fatalf("wrote %+v, store calls %v", out, st.calls)
	}
	if out := statusRequest(t, b, nil, 500, nil); len(out.cookies)+len(out.headers) != 0 {
		t.Fatalf("untouched session wrote %+v", out)
	}
}

// TestServerErrorFreesTheLockAtOnce: a dropped save releases the session
// lock before Release, as a save does: kvhttp commits at the first write
// and may stream long after.
func TestServerErrorFreesTheLockAtOnce(t *testing.T) {
	b := newBackend(t, Config{Lock: true, LockWait: 50 * time.Millisecond}, newMem(t))
	first := statusRequest(t, b, nil, 200, func(s *Session) { s.SetInt("n", 1) })
	header := []byte("session=" + first.cookieValue(t, "session"))
	s := b.LoadFromRequest(context.Background(), header)
	defer b.Release(s)
	s.SetInt("n", 2)
	if err := b.StoreInResponseStatus(s, &sink{}, 500); err != nil {
		t.Fatal(err)
	}
	other := b.LoadFromRequest(context.Background(), header)
	defer b.Release(other)
	if n, ok := other.GetInt("n"); !ok || n != 1 {
		t.Fatalf("next request: n = %d (%v); want 1 without waiting for the lock", n, ok)
	}
}

// TestServerErrorKeepsADestroyDone: ends are not undone: the server
// backend deleted the record when the handler called Destroy.
func TestServerErrorKeepsADestroyDone(t *testing.T) {
	b := newBackend(t, Config{}, newMem(t))
	first := statusRequest(t, b, nil, 200, func(s *Session) { s.SetInt("n", 1) })
	header := []byte("session=" + first.cookieValue(t, "session"))
	statusRequest(t, b, header, 500, func(s *Session) {
		if err := s.Destroy(); err != nil {
			t.Fatal(err)
		}
	})
	statusRequest(t, b, header, 200, func(s *Session) {
		if s.Len() != 0 {
			t.Fatalf("destroyed session still has %v", s.Values())
		}
	})
}

// TestServerErrorReportsAFailedLoad: dropping the changes does not hide a
// store that failed: the error handler must still hear of it.
func TestServerErrorReportsAFailedLoad(t *testing.T) {
	st := newFakeStore()
	b := newBackend(t, Config{}, st)
	first := statusRequest(t, b, nil, 200, func(s *Session) { s.SetInt("n", 1) })
	header := []byte("session=" + first.cookieValue(t, "session"))
	st.fail = map[string]error{"get": errors.New("down")}
	s := b.LoadFromRequest(context.Background(), header)
	defer b.Release(s)
	s.GetInt("n")
	out := &sink{}
	if err := b.StoreInResponseStatus(s, out, 500); err == nil || len(out.headers)+len(out.cookies) != 0 {
		t.Fatalf("err %v, wrote %+v; want the load's error and nothing written", err, out)
	}
}
