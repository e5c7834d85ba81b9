package kvsession

import (
	"context"
	"testing"
	"time"

	"github.com/kvsession/kvsession/store/memstore"
)

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
