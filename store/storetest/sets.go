package storetest

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/kvsession/kvsession/store"
)

func addMember(t *testing.T, s store.Store, set, member string, ttl time.Duration) {
	t.Helper()
	if err := s.AddMember(t.Context(), set, member, ttl); err != nil {
		t.Fatalf("AddMember(%q, %q, %v): %v", set, member, ttl, err)
	}
}

// wantMembers checks that set holds exactly want, in any order.
func wantMembers(t *testing.T, s store.Store, set string, want ...string) {
	t.Helper()
	got, err := s.Members(t.Context(), set)
	if err != nil {
		t.Errorf("Members(%q): %v", set, err)
		return
	}
	got, want = slices.Sorted(slices.Values(got)), slices.Sorted(slices.Values(want))
	if !slices.Equal(got, want) {
		t.Errorf("Members(%q) = %q, want %q", set, got, want)
	}
}

func (r *runner) testSets(t *testing.T) {
	s := r.open(t)
	ctx := t.Context()
	wantMembers(t, s, "missing")

	addMember(t, s, "alice", "a", 0)
	addMember(t, s, "alice", "b", time.Hour)
	addMember(t, s, "alice", "c", time.Hour)
	addMember(t, s, "alice", "b", time.Hour) // again: still one member
	addMember(t, s, "bob", "a", time.Hour)   // another set, same member
	wantMembers(t, s, "alice", "a", "b", "c")
	wantMembers(t, s, "bob", "a")

	if err := s.RemoveMember(ctx, "alice", "b"); err != nil {
		t.Fatalf("RemoveMember: %v", err)
	}
	if err := s.RemoveMember(ctx, "alice", "never added"); err != nil {
		t.Errorf("RemoveMember of a member not there: %v", err)
	}
	if err := s.RemoveMember(ctx, "nobody", "a"); err != nil {
		t.Errorf("RemoveMember from a missing set: %v", err)
	}
	wantMembers(t, s, "alice", "a", "c")
	wantMembers(t, s, "bob", "a")

	// Members hands out copies: changing them changes nothing stored.
	got, err := s.Members(ctx, "bob")
	if err != nil || len(got) != 1 {
		t.Fatalf("Members(bob) = %q, %v", got, err)
	}
	got[0] = "changed"
	wantMembers(t, s, "bob", "a")

	// The store keeps its own copy of a member's bytes.
	buf := []byte("borrowed")
	addMember(t, s, "copies", string(buf), 0)
	buf[0] = 'X'
	wantMembers(t, s, "copies", "borrowed")

	wantErr(t, `AddMember with member ""`, s.AddMember(ctx, "alice", "", 0), store.ErrEmptyKey)
	wantErr(t, `RemoveMember with member ""`, s.RemoveMember(ctx, "alice", ""), store.ErrEmptyKey)
	wantErr(t, "AddMember with TTL -1s", s.AddMember(ctx, "alice", "d", -time.Second), store.ErrInvalidTTL)
	wantMembers(t, s, "alice", "a", "c")
}

// testSetsApartFromKeys checks that sets and values are two namespaces: a
// user named like a session key must not reach it, nor the other way.
func (r *runner) testSetsApartFromKeys(t *testing.T) {
	s := r.open(t)
	ctx := t.Context()
	mustSet(t, s, "same", []byte("value"), 0)
	addMember(t, s, "same", "member", 0)
	wantValue(t, s, "same", []byte("value"))
	wantMembers(t, s, "same", "member")
	if err := s.Delete(ctx, "same"); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	wantMembers(t, s, "same", "member")
	mustSet(t, s, "same", []byte("again"), 0)
	if err := s.RemoveMember(ctx, "same", "member"); err != nil {
		t.Fatalf("RemoveMember: %v", err)
	}
	wantValue(t, s, "same", []byte("again"))
	wantMembers(t, s, "same")
}

// testLargeSet adds more members to one set than any cap kvsession ever
// had: every one is listed (log out everywhere must reach them all).
func (r *runner) testLargeSet(t *testing.T) {
	s := r.open(t)
	const n = 1500
	want := make([]string, n)
	for i := range want {
		want[i] = fmt.Sprintf("session-%04d", i)
		addMember(t, s, "busy", want[i], time.Hour)
	}
	wantMembers(t, s, "busy", want...)
}

// setExpiryCases run with the expiry subtests.
var setExpiryCases = []expiryCase{
	{
		name: "MembersExpire",
		before: func(t *testing.T, s store.Store) {
			addMember(t, s, "expiring", "short", shortTTL)
			addMember(t, s, "expiring", "forever", 0)
			addMember(t, s, "expiring", "long", time.Hour)
			wantMembers(t, s, "expiring", "short", "forever", "long")
		},
		after: func(t *testing.T, s store.Store) { wantMembers(t, s, "expiring", "forever", "long") },
	},
	{
		// Adding a member again never shortens its life: the index entry of
		// a session must outlive the session.
		name: "MemberNeverShortened",
		before: func(t *testing.T, s store.Store) {
			addMember(t, s, "kept", "m", time.Hour)
			addMember(t, s, "kept", "m", shortTTL)
			addMember(t, s, "kept", "n", 0)
			addMember(t, s, "kept", "n", shortTTL)
		},
		after: func(t *testing.T, s store.Store) { wantMembers(t, s, "kept", "m", "n") },
	},
	{
		name: "MemberExtended",
		before: func(t *testing.T, s store.Store) {
			addMember(t, s, "extended", "m", shortTTL)
			addMember(t, s, "extended", "m", time.Hour)
		},
		after: func(t *testing.T, s store.Store) { wantMembers(t, s, "extended", "m") },
	},
	{
		name:   "WholeSetExpires",
		before: func(t *testing.T, s store.Store) { addMember(t, s, "gone", "m", shortTTL) },
		after:  func(t *testing.T, s store.Store) { wantMembers(t, s, "gone") },
	},
}

func init() { expiryCases = append(expiryCases, setExpiryCases...) }
