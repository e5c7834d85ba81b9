package kvsession

import (
	"context"
	"testing"
	"time"

	"github.com/kvsession/kvsession/store/memory"
)

func TestLogoutEverywhere(t *testing.T) {
	clk := newClock()
	st := &countingMemory{Store: memory.New(memory.Options{Now: clk.now})}
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
	st := &countingMemory{Store: memory.New(memory.Options{Now: clk.now})}
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
	st := &countingMemory{Store: memory.New(memory.Options{})}
	defer st.Close()
	b := newBackend(t, Config{}, st)
	request(t, b, "", func(s *Session) { s.Set("n", 1) })
	if st.sets != 1 {
		t.Fatalf("%d store writes for one unbound session, want 1", st.sets)
	}
	out, _ := request(t, b, "", func(s *Session) { s.SetUser("ada") })
	sets := st.sets
	request(t, b, out.cookieValue(t, "session"), func(s *Session) { s.Set("n", 2) })
	if st.sets != sets+1 {
		t.Fatalf("re-saving a bound session wrote %d times, want 1 (the index already covers it)", st.sets-sets)
	}
}
