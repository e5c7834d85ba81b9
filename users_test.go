package kvsession

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/kvsession/kvsession/store"
	"github.com/kvsession/kvsession/store/memstore"
)

func TestLogoutEverywhere(t *testing.T) {
	clk := newClock()
	st := &countingMemory{Store: memstore.New(memstore.Options{Now: clk.now})}
	defer st.Close()
	b := newBackend(t, Config{MaxAge: time.Hour}, st)
	b.now = clk.now
	ctx := context.Background()
	login := func(user string) string {
		out, err := request(t, b, "", func(s *Session) {
			s.Set("n", 1)
			if err := s.SetUser(user); err != nil {
				t.Fatal(err)
			}
		})
		if err != nil {
			t.Fatal(err)
		}
		return out.cookieValue(t, "session")
	}
	ada := []string{login("ada"), login("ada"), login("ada")}
	bob := login("bob")
	anon, _ := request(t, b, "", func(s *Session) { s.Set("n", 1) })

	if got, err := b.UserSessions(ctx, "ada"); err != nil || len(got) != 3 || !got[0].Created.Equal(clk.t) {
		t.Fatalf("UserSessions(ada) = %v, %v", got, err)
	}
	n, err := b.DestroyUserSessions(ctx, "ada")
	if err != nil || n != 3 {
		t.Fatalf("DestroyUserSessions = %d, %v; want 3", n, err)
	}
	for _, id := range ada {
		request(t, b, id, func(s *Session) {
			if s.Len() != 0 {
				t.Fatal("a session of ada survived logout everywhere")
			}
		})
	}
	for _, id := range []string{bob, anon.cookieValue(t, "session")} {
		request(t, b, id, func(s *Session) {
			if s.Len() == 0 {
				t.Fatal("another session was destroyed")
			}
		})
	}
	if got, _ := b.UserSessions(ctx, "ada"); len(got) != 0 {
		t.Fatalf("ada still has %d sessions listed", len(got))
	}
}

func TestUserIndexFollowsExpiryRebindingAndDestroy(t *testing.T) {
	clk := newClock()
	st := &countingMemory{Store: memstore.New(memstore.Options{Now: clk.now})}
	defer st.Close()
	b := newBackend(t, Config{MaxAge: time.Hour, MaxAgeLimit: 24 * time.Hour}, st)
	b.now = clk.now
	ctx := context.Background()
	bind := func(user string, maxAge time.Duration) string {
		out, _ := request(t, b, "", func(s *Session) {
			s.SetUser(user)
			if maxAge > 0 {
				s.SetMaxAge(maxAge)
			}
		})
		return out.cookieValue(t, "session")
	}
	bind("ada", 0) // lives an hour
	long := bind("ada", 24*time.Hour)
	moved := bind("ada", 0)
	destroyed := bind("ada", 0)

	request(t, b, moved, func(s *Session) { s.SetUser("bob") })
	request(t, b, destroyed, func(s *Session) { s.Destroy() })
	if got, _ := b.UserSessions(ctx, "bob"); len(got) != 1 {
		t.Fatalf("bob has %d sessions, want the re-bound one", len(got))
	}
	if got, _ := b.UserSessions(ctx, "ada"); len(got) != 2 {
		t.Fatalf("ada has %d sessions, want 2 (one moved to bob, one destroyed)", len(got))
	}
	clk.advance(2 * time.Hour) // short expires, long lives on
	if got, _ := b.UserSessions(ctx, "ada"); len(got) != 1 {
		t.Fatalf("after expiry ada has %d sessions listed, want 1", len(got))
	}
	if n, _ := b.DestroyUserSessions(ctx, "ada"); n != 1 {
		t.Fatalf("destroyed %d, want the one live session", n)
	}
	request(t, b, long, func(s *Session) {
		if s.User() != "" {
			t.Fatal("the long session survived")
		}
	})
}

func TestUnboundSessionsCostNoIndexWrites(t *testing.T) {
	st := &countingMemory{Store: memstore.New(memstore.Options{})}
	defer st.Close()
	b := newBackend(t, Config{}, st)
	request(t, b, "", func(s *Session) { s.Set("n", 1) })
	if st.sets != 1 {
		t.Fatalf("%d store writes for one unbound session, want 1", st.sets)
	}
	if st.adds != 0 {
		t.Fatalf("%d set memberships for an unbound session, want 0", st.adds)
	}
	out, _ := request(t, b, "", func(s *Session) { s.SetUser("ada") })
	if st.adds != 1 {
		t.Fatalf("%d set memberships for a login, want 1", st.adds)
	}
	sets, adds := st.sets, st.adds
	request(t, b, out.cookieValue(t, "session"), func(s *Session) { s.Set("n", 2) })
	if st.sets != sets+1 || st.adds != adds {
		t.Fatalf("re-saving a bound session wrote %d values and %d memberships, want 1 and 0 (the set already covers it)", st.sets-sets, st.adds-adds)
	}
}

// A session bound before per-user sets is listed only in its user's old
// index record until it is next saved: log out everywhere still reaches
// it, and deletes the old record.
func TestLogoutEverywhereReachesSessionsOfTheOldIndex(t *testing.T) {
	st := memstore.New(memstore.Options{})
	defer st.Close()
	b := newBackend(t, Config{}, st)
	ctx := context.Background()
	id := login(t, b, "ada")
	key := b.storeKey([]byte(id))
	// As the old version left it: in the old record, not in the set.
	if err := st.RemoveMember(ctx, b.userSet("ada"), key); err != nil {
		t.Fatal(err)
	}
	rec := []byte{1}
	rec = binary.AppendUvarint(rec, 1)
	rec = binary.AppendUvarint(rec, uint64(len(key)))
	rec = append(rec, key...)
	rec = binary.BigEndian.AppendUint64(rec, uint64(time.Now().Add(time.Hour).UnixNano()))
	if err := st.Set(ctx, b.legacyIndexKey("ada"), rec, time.Hour); err != nil {
		t.Fatal(err)
	}
	if list, err := b.UserSessions(ctx, "ada"); err != nil || len(list) != 1 {
		t.Fatalf("UserSessions = %v, %v; want the session of the old record", list, err)
	}
	if n, err := b.DestroyUserSessions(ctx, "ada"); err != nil || n != 1 {
		t.Fatalf("DestroyUserSessions = %d, %v; want 1", n, err)
	}
	if alive(t, b, id) {
		t.Error("a session of the old index survived log out everywhere")
	}
	if _, err := st.Get(ctx, b.legacyIndexKey("ada")); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("old index record after log out everywhere: %v, want deleted", err)
	}
}

func TestDecodeLegacyIndexRefusesGarbage(t *testing.T) {
	for _, rec := range [][]byte{nil, {}, {2, 1}, {1}, {1, 0xff}, {1, 5, 3, 'a'}, {1, 1, 200, 'a', 'b'}} {
		if keys := decodeLegacyIndex(rec); len(keys) != 0 {
			t.Errorf("decodeLegacyIndex(%x) = %q", rec, keys)
		}
	}
}

// FuzzLegacyIndex: an old index record is store bytes like any other, and
// may be damaged: it decodes to keys it really holds, or to fewer, never a
// panic.
func FuzzLegacyIndex(f *testing.F) {
	rec := []byte{1}
	rec = binary.AppendUvarint(rec, 2)
	for _, k := range []string{"a", "bb"} {
		rec = binary.AppendUvarint(rec, uint64(len(k)))
		rec = append(rec, k...)
		rec = binary.BigEndian.AppendUint64(rec, 1)
	}
	f.Add(rec)
	f.Add([]byte{1, 0})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, rec []byte) {
		total := 0
		for _, k := range decodeLegacyIndex(rec) {
			if k == "" {
				t.Fatal("an empty key")
			}
			total += len(k) + 8
		}
		if total > len(rec) {
			t.Fatalf("keys of %d bytes from a record of %d", total, len(rec))
		}
	})
}

// hookStore runs hook once, inside the next Set of a session record.
type hookStore struct {
	*memstore.Store
	hook func(k string)
}

func (h *hookStore) Set(ctx context.Context, k string, v []byte, ttl time.Duration) error {
	if h.hook != nil && len(k) == hashedKeyLen {
		f := h.hook
		h.hook = nil
		f(k)
	}
	return h.Store.Set(ctx, k, v, ttl)
}

// A listing (UserSessions, DestroyUserSessions) that runs while a new
// session is being saved must not prune its index entry for good.
func TestListingDuringASaveKeepsTheIndexEntry(t *testing.T) {
	clk := newClock()
	st := &hookStore{Store: memstore.New(memstore.Options{Now: clk.now})}
	b := newBackend(t, Config{MaxAge: time.Hour}, st)
	b.now = clk.now
	ctx := context.Background()
	st.hook = func(string) { b.UserSessions(ctx, "ada") }
	id := rvLogin(t, b, "ada")
	// Some later activity that saves.
	clk.advance(time.Minute)
	request(t, b, id, func(s *Session) { s.Set("n", 2) })
	n, _ := b.DestroyUserSessions(ctx, "ada")
	alive := false
	request(t, b, id, func(s *Session) { alive = s.Len() > 0 })
	if alive {
		t.Errorf("session escaped DestroyUserSessions (n=%d)", n)
	}
}

// A re-binding whose save fails leaves the record bound to the old user: it
// must stay in the old user's set.
type failSetStore struct {
	*memstore.Store
	fail bool
}

func (f *failSetStore) Set(ctx context.Context, k string, v []byte, ttl time.Duration) error {
	if f.fail && len(k) == len("")+43 {
		return errBoom
	}
	return f.Store.Set(ctx, k, v, ttl)
}

func (f *failSetStore) Swap(ctx context.Context, k string, old, v []byte, ttl time.Duration) (bool, error) {
	if f.fail && len(k) == len("")+43 {
		return false, errBoom
	}
	return f.Store.Swap(ctx, k, old, v, ttl)
}

func TestFailedRebindKeepsTheOldIndexEntry(t *testing.T) {
	clk := newClock()
	st := &failSetStore{Store: memstore.New(memstore.Options{Now: clk.now})}
	b := newBackend(t, Config{MaxAge: time.Hour}, st)
	b.now = clk.now
	id := rvLogin(t, b, "ada")
	st.fail = true
	_, err := request(t, b, id, func(s *Session) { s.SetUser("bob") })
	st.fail = false
	if err == nil {
		t.Fatal("expected save error")
	}
	n, _ := b.DestroyUserSessions(context.Background(), "ada")
	alive := false
	request(t, b, id, func(s *Session) { alive = s.User() == "ada" })
	if alive {
		t.Errorf("ada's session survived log-out-everywhere (n=%d) after a failed rebind", n)
	}
}

// TestLoginAfterLogoutEverywhereSurvivesIDChanges: a log out everywhere
// ends the sessions bound to the user before it began, not a login after
// it on an older session (a cart, then a login), whatever changes that
// session's id next: a rotation on the login request itself, a RenewID at
// login, or a rotation on a later request.
func TestLoginAfterLogoutEverywhereSurvivesIDChanges(t *testing.T) {
	for _, tc := range []struct {
		name     string
		interval time.Duration
		login    func(s *Session)
	}{
		{"SetUser, rotation due", time.Hour, func(s *Session) { s.SetUser("bob") }},
		{"SetUser, no rotation", 0, func(s *Session) { s.SetUser("bob") }},
		{"RenewID and SetUser, rotation next", time.Hour, func(s *Session) { s.RenewID(); s.SetUser("bob") }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, clk, _ := rvSetup(t, Config{RotationInterval: tc.interval, MaxAge: 24 * time.Hour})
			out, _ := request(t, b, "", func(s *Session) { s.SetString("cart", "book") })
			id := out.cookieValue(t, "session")
			clk.advance(2 * time.Hour)
			if _, err := b.DestroyUserSessions(context.Background(), "bob"); err != nil { // bob, on another device
				t.Fatal(err)
			}
			clk.advance(10 * time.Minute)
			follow := func(out *sink) {
				if _, ok := out.cookies["session"]; ok {
					id = out.cookieValue(t, "session")
				}
			}
			out, err := request(t, b, id, tc.login)
			if err != nil {
				t.Fatal(err)
			}
			follow(out)
			// Within the hour the log-out mark lasts; the next request
			// rotates if the login request did not (RenewID sets no
			// rotation time).
			clk.advance(time.Second)
			out, err = request(t, b, id, func(s *Session) { s.SetString("cart", "book2") })
			if err != nil {
				t.Fatal(err)
			}
			follow(out)
			request(t, b, id, func(s *Session) {
				if cart, _ := s.GetString("cart"); s.User() != "bob" || cart != "book2" {
					t.Fatalf("bob, logged in after his log out everywhere: user %q, cart %q", s.User(), cart)
				}
			})
		})
	}
}

// "Where you're logged in": each of a user's sessions is listed with its
// handle and the client recorded at login, and ending one by its handle
// ends that one only, and only for its own user.
func TestWhereYoureLoggedIn(t *testing.T) {
	b, clk, _ := rvSetup(t, Config{MaxAge: 24 * time.Hour})
	ctx := context.Background()
	login := func(ua, addr string) *browser {
		br := newBrowser(t, b)
		br.do(func(s *Session) {
			s.SetUser("ada")
			s.SetClientInfo(ua, addr)
		})
		clk.advance(time.Minute)
		return br
	}
	laptop := login("Firefox/140", "192.0.2.1")
	phone := login("Safari/18", "198.51.100.7")
	plain := newBrowser(t, b)
	plain.do(func(s *Session) { s.SetUser("ada") }) // recorded nothing
	other := newBrowser(t, b)
	other.do(func(s *Session) { s.SetUser("bob") })
	clk.advance(time.Minute)
	var phoneHandle, bobHandle string
	phone.do(func(s *Session) { phoneHandle = s.Handle(); s.Set("seen", true) })
	other.do(func(s *Session) { bobHandle = s.Handle() })

	list, err := b.UserSessions(ctx, "ada")
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 3 {
		t.Fatalf("%d sessions listed, want 3", len(list))
	}
	byUA := map[string]SessionInfo{}
	for _, info := range list {
		if info.User != "ada" || info.Handle == "" {
			t.Fatalf("listed %+v", info)
		}
		byUA[info.UserAgent] = info
	}
	p := byUA["Safari/18"]
	if p.Handle != phoneHandle || p.RemoteAddr != "198.51.100.7" {
		t.Fatalf("phone listed as %+v, handle %q", p, phoneHandle)
	}
	if !p.LastActive.After(p.Created) || p.Expires.IsZero() {
		t.Fatalf("phone's times: %+v", p)
	}
	if n := byUA[""]; n.RemoteAddr != "" || n.Handle == "" {
		t.Fatalf("a session with no client recorded lists %+v", n)
	}

	// bob cannot end ada's phone by its handle, nor ada bob's.
	for _, tc := range []struct{ user, handle string }{{"bob", phoneHandle}, {"ada", bobHandle}} {
		if ended, err := b.DestroyUserSession(ctx, tc.user, tc.handle); ended || err != nil {
			t.Fatalf("DestroyUserSession(%q, another's handle) = %v, %v", tc.user, ended, err)
		}
	}
	if _, err := b.DestroyUserSession(ctx, "ada", "not a handle"); !errors.Is(err, ErrInvalidHandle) {
		t.Fatalf("a malformed handle: %v", err)
	}
	if ended, err := b.DestroyUserSession(ctx, "ada", phoneHandle); !ended || err != nil {
		t.Fatalf("DestroyUserSession = %v, %v", ended, err)
	}
	phone.do(func(s *Session) {
		if s.User() != "" {
			t.Fatal("the phone's session survived its end")
		}
	})
	for _, br := range []*browser{laptop, other} {
		br.do(func(s *Session) {
			if s.User() == "" {
				t.Fatal("ending one session ended another")
			}
		})
	}
	if list, _ := b.UserSessions(ctx, "ada"); len(list) != 2 {
		t.Fatalf("%d sessions left, want 2", len(list))
	}
}

// An end by handle holds against a request that loaded the session
// before it, with the lock on or off: that request's save is dropped.
func TestDestroyUserSessionHoldsAgainstRequestsInFlight(t *testing.T) {
	for _, lock := range []bool{false, true} {
		t.Run(fmt.Sprintf("lock=%v", lock), func(t *testing.T) {
			b, _, _ := rvSetup(t, Config{Lock: lock, MaxAge: time.Hour})
			id := rvLogin(t, b, "ada")
			s := b.LoadFromRequest(context.Background(), []byte("session="+id))
			handle := s.Handle()
			if ended, err := b.DestroyUserSession(context.Background(), "ada", handle); !ended || err != nil {
				t.Fatalf("DestroyUserSession = %v, %v", ended, err)
			}
			s.Set("n", 99)
			if err := b.StoreInResponse(s, &sink{}); err != nil {
				t.Fatal(err)
			}
			b.Release(s)
			request(t, b, id, func(s *Session) {
				if s.Len() != 0 || s.User() != "" {
					t.Fatal("a request in flight wrote back an ended session")
				}
			})
		})
	}
}

// An id change that an end by handle's search missed (its new record
// written behind the search, its old one retired before the search got
// there) finds the end's mark and takes itself back.
func TestIDChangeAfterAnEndByHandleTakesItselfBack(t *testing.T) {
	for _, tc := range []struct {
		name string
		step func(s *Session)
	}{
		{"rotation", func(s *Session) { s.Set("n", 2) }},
		{"RenewID", func(s *Session) { s.RenewID() }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, clk, _ := rvSetup(t, Config{RotationInterval: time.Hour, MaxAge: 24 * time.Hour})
			id := rvLogin(t, b, "ada")
			var h [handleBytes]byte
			request(t, b, id, func(s *Session) { h, _ = parseHandle(s.Handle()) })
			clk.advance(2 * time.Hour)
			// What DestroyUserSession does first, before its search.
			if err := b.setMark(context.Background(), b.endedKey(h)); err != nil {
				t.Fatal(err)
			}
			out, _ := request(t, b, id, tc.step)
			if v, ok := out.cookies["session"]; ok && !strings.Contains(v, "Max-Age=0") {
				t.Fatalf("the id change answered with a live cookie: %s", v)
			}
			if list, _ := b.UserSessions(context.Background(), "ada"); len(list) != 0 {
				t.Fatalf("%d sessions survive their end", len(list))
			}
		})
	}
}
