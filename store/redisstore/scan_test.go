package redisstore

import (
	"bytes"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"
)

// scanSeen scans prefix and returns each key visited (a key SCAN returned
// twice counted once) with its value.
func scanSeen(t *testing.T, s *Store, prefix string) map[string]string {
	t.Helper()
	seen := map[string]string{}
	err := s.Scan(t.Context(), prefix, func(key string, value []byte) error {
		seen[key] = string(value)
		return nil
	})
	if err != nil {
		t.Fatalf("Scan(%q): %v", prefix, err)
	}
	return seen
}

// TestScanScope checks what a scan walks: this store's values, by the
// keys its callers gave, not another store's, even one whose prefix this
// store's prefix matches as a glob; not keys outside any prefix; not its
// sets or locks.
func TestScanScope(t *testing.T) {
	t.Parallel()
	needServer(t)
	base := testPrefix(t)
	// The first prefix, read as a SCAN pattern, matches the second.
	mine := openPrefix(t, base+"a*[bc]?:")
	other := openPrefix(t, base+"aXcY:")
	ctx := t.Context()
	want := map[string]string{}
	for i := range 1200 { // several SCAN batches, several fetches each
		k := fmt.Sprint("k", i)
		want[k] = "v" + k
		if err := mine.Set(ctx, k, []byte(want[k]), time.Duration(i%2)*time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	// Written behind the store's back, under its value keyspace: a value
	// all the same.
	if err := raw.Do(ctx, raw.B().Set().Key(mine.ValueKey("raw")).Value("by hand").Build()).Error(); err != nil {
		t.Fatal(err)
	}
	want["raw"] = "by hand"
	if err := other.Set(ctx, "k1", []byte("theirs"), 0); err != nil {
		t.Fatal(err)
	}
	if err := raw.Do(ctx, raw.B().Set().Key(base+"a*[bc]?:unprefixed").Value("x").Build()).Error(); err != nil {
		t.Fatal(err)
	}
	if err := mine.AddMember(ctx, "k1", "member", time.Hour); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := mine.TryLock(ctx, "locked", time.Minute); err != nil || !ok {
		t.Fatalf("TryLock = %v, %v", ok, err)
	}

	seen := scanSeen(t, mine, "")
	if len(seen) != len(want) {
		t.Errorf("Scan visited %d keys, want %d", len(seen), len(want))
	}
	for k, v := range want {
		if got, ok := seen[k]; !ok || got != v {
			t.Errorf("Scan showed %q as %q (%v), want %q", k, got, ok, v)
		}
	}
	for k := range seen {
		if _, ok := want[k]; !ok {
			t.Errorf("Scan visited %q, not one of the store's values", k)
		}
	}
	if got := scanSeen(t, other, ""); len(got) != 1 || got["k1"] != "theirs" {
		t.Errorf("the other store's Scan = %v, want its one value", got)
	}
}

// TestScanSkipsVanishedKeys deletes, from fn's first call, every key not
// yet shown: those SCAN found but Scan has not fetched yet are gone by the
// time it does, and must be skipped rather than shown as empty values.
func TestScanSkipsVanishedKeys(t *testing.T) {
	t.Parallel()
	s := openT(t)
	ctx := t.Context()
	const n = 3 * scanFetch
	for i := range n {
		if err := s.Set(ctx, fmt.Sprint("k", i), []byte("v"), time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	calls := 0
	err := s.Scan(ctx, "", func(key string, value []byte) error {
		calls++
		if !bytes.Equal(value, []byte("v")) {
			t.Errorf("Scan showed %q as %q, want \"v\"", key, value)
		}
		if calls > 1 {
			return nil
		}
		for i := range n {
			if k := fmt.Sprint("k", i); k != key {
				if err := s.Delete(ctx, k); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("Scan: %v", err)
	}
	// What was fetched with the first key is shown; nothing after.
	if calls > scanFetch {
		t.Errorf("Scan showed %d keys, more than the %d fetched before fn deleted the rest", calls, scanFetch)
	}
	if got := scanSeen(t, s, ""); len(got) != 1 {
		t.Errorf("after the scan, %d keys left, want 1: %v", len(got), strings.Join(slices.Sorted(maps.Keys(got)), ","))
	}
}
