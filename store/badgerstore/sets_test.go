//go:build unix

// The cost test measures the directory with disk_test.go's helpers.

package badgerstore

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	bdg "github.com/dgraph-io/badger/v4"
)

// TestSetsApartFromReservedKeys: sets live under keys beginning with 0xff,
// which a value key may begin with too. A value stored under the very
// bytes of a member's key, or of a set's prefix, must neither show up as a
// member nor be touched by one; and a value key beginning with 0xff must
// still round-trip.
func TestSetsApartFromReservedKeys(t *testing.T) {
	ctx := context.Background()
	s := openT(t, Options{Dir: t.TempDir()})
	lookalikes := []string{
		string(memberKey("users", "m")),
		string(setPrefix("users", 0)),
		"\xff",
		"\xff\x00",
		"\xff\x01",
	}
	for i, k := range lookalikes {
		if err := s.Set(ctx, k, []byte(fmt.Sprint("value ", i)), 0); err != nil {
			t.Fatalf("Set(%q): %v", k, err)
		}
	}
	if got, err := s.Members(ctx, "users"); err != nil || len(got) != 0 {
		t.Fatalf("Members after Sets of look-alike keys = %q, %v; want none", got, err)
	}
	if err := s.AddMember(ctx, "users", "m", 0); err != nil {
		t.Fatal(err)
	}
	if err := s.RemoveMember(ctx, "users", "m"); err != nil {
		t.Fatal(err)
	}
	if err := s.AddMember(ctx, "users", "m2", 0); err != nil {
		t.Fatal(err)
	}
	for i, k := range lookalikes {
		v, err := s.Get(ctx, k)
		if err != nil || string(v) != fmt.Sprint("value ", i) {
			t.Errorf("Get(%q) after set changes = %q, %v", k, v, err)
		}
		if ok, err := s.Exists(ctx, k); err != nil || !ok {
			t.Errorf("Exists(%q) = %v, %v", k, ok, err)
		}
	}
	if err := s.Delete(ctx, string(memberKey("users", "m2"))); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Members(ctx, "users"); err != nil || !slices.Equal(got, []string{"m2"}) {
		t.Errorf("Members after deleting a look-alike value = %q, %v; want [m2]", got, err)
	}
	// Set names that are prefixes of each other do not share members.
	for _, set := range []string{"a", "ab", "a\x01b"} {
		if err := s.AddMember(ctx, set, "of "+set, 0); err != nil {
			t.Fatal(err)
		}
	}
	for _, set := range []string{"a", "ab", "a\x01b"} {
		if got, err := s.Members(ctx, set); err != nil || !slices.Equal(got, []string{"of " + set}) {
			t.Errorf("Members(%q) = %q, %v", set, got, err)
		}
	}
}

// TestAddMemberCostsTheSameInALargeSet: adding a member writes one small
// entry, however many the set holds. 5,000 members of one set must leave
// the directory within a few megabytes; a set kept as one record rewritten
// on every add (the old design) would write about n²/2 members' worth,
// some 800 MB here.
func TestAddMemberCostsTheSameInALargeSet(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := openT(t, Options{Dir: dir, GCInterval: -1})
	const n = 5000
	members := make([]string, n)
	for i := range members {
		members[i] = randomKey() // 43 bytes, as the backend's hashed ids
		if err := s.AddMember(ctx, "one user", members[i], time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	got, err := s.Members(ctx, "one user")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(slices.Sorted(slices.Values(got)), slices.Sorted(slices.Values(members))) {
		t.Fatalf("Members listed %d of %d members", len(got), n)
	}
	const bound = 8 << 20
	if sz := measureDir(t, dir); sz.total > bound {
		t.Errorf("%d members of one set take %d bytes on disk (vlog %d, mem %d, sst %d), over %d",
			n, sz.total, sz.vlog, sz.mem, sz.sst, bound)
	}
}

// TestAddMemberConcurrentNeverShortens: many goroutines add one member with
// different TTLs at once. Each add is decided against the others in queue
// order, so the member ends with the latest expiry any of them asked for.
func TestAddMemberConcurrentNeverShortens(t *testing.T) {
	ctx := context.Background()
	s := openT(t, Options{InMemory: true})
	const goroutines = 16
	start := time.Now()
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for i := range 20 {
				ttl := time.Duration(1+(g*20+i)%37) * time.Minute
				if err := s.AddMember(ctx, "set", "m", ttl); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	var exp uint64
	err := s.DB().View(func(txn *bdg.Txn) error {
		item, err := txn.Get(memberKey("set", "m"))
		if err == nil {
			exp = item.ExpiresAt()
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if want := expiresAt(start, 37*time.Minute); exp < want {
		t.Errorf("member expires at %v, before the latest asked for, %v", time.Unix(int64(exp), 0), time.Unix(int64(want), 0))
	}
	// And a permanent add makes it permanent, which a later one with a TTL
	// does not undo.
	for _, ttl := range []time.Duration{0, time.Minute} {
		if err := s.AddMember(ctx, "set", "m", ttl); err != nil {
			t.Fatal(err)
		}
	}
	err = s.DB().View(func(txn *bdg.Txn) error {
		item, err := txn.Get(memberKey("set", "m"))
		if err == nil && item.ExpiresAt() != 0 {
			t.Errorf("member expires at %v after an add with no expiry", time.Unix(int64(item.ExpiresAt()), 0))
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}
