package storetest

import (
	"testing"
	"unsafe"

	"github.com/kvsession/kvsession/store"
)

// testTraits checks that what the store reports in store.Traits holds:
// each trait lets kvsession drop a precaution, so a wrong one is a hole.
func (r *runner) testTraits(t *testing.T) {
	s := r.open(t)
	traits := store.Resolve(s).Traits

	t.Run("InProcess", func(t *testing.T) {
		if !traits.InProcess {
			t.Skip("store does not report InProcess")
		}
		if r.h.Reopen != nil {
			t.Error("the store reports Traits.InProcess, yet Harness.Reopen says its entries outlive it: " +
				"kvsession would keep session ids unhashed in a store that persists them. " +
				"Report InProcess only for a store whose entries never leave this process's memory")
		}
	})

	t.Run("BorrowsKeys", func(t *testing.T) {
		if !traits.BorrowsKeys {
			t.Skip("store does not report BorrowsKeys: it may keep the keys it is given")
		}
		r.testBorrowsKeys(t, s)
	})
}

// borrowed returns key as a view of a buffer of its own, as kvsession lends
// a store the session's key buffer, and a func that scribbles over that
// buffer, as the session's next request does, and returns what the view
// reads then: key with the case of its letters swapped.
func borrowed(key string) (view string, scribble func() string) {
	buf := []byte(key)
	view = unsafe.String(unsafe.SliceData(buf), len(buf))
	return view, func() string {
		for i, b := range buf {
			switch {
			case 'a' <= b && b <= 'z':
				buf[i] = b - 'a' + 'A'
			case 'A' <= b && b <= 'Z':
				buf[i] = b - 'A' + 'a'
			}
		}
		return string(buf)
	}
}

// testBorrowsKeys hands each call that takes a key a view of a buffer and
// overwrites the buffer as soon as the call returns. A store that kept the
// key (a map indexed by it, a cache) then holds the entry under the
// scribbled key: it must be found under the original one, and not under
// the scribble.
func (r *runner) testBorrowsKeys(t *testing.T, s store.Store) {
	ctx := t.Context()
	c := store.Resolve(s)

	// A key written anew, then written over (a map may adopt the caller's
	// key either time); by Set, and by Swap.
	for _, value := range []string{"first", "second"} {
		key, scribble := borrowed("borrowed-set")
		mustSet(t, s, key, []byte(value), 0)
		moved := scribble()
		wantValue(t, s, "borrowed-set", []byte(value))
		wantMissing(t, s, moved)
	}
	var old []byte
	for _, value := range []string{"first", "second"} {
		key, scribble := borrowed("borrowed-swap")
		if !swap(t, s, key, old, []byte(value), 0) {
			t.Fatalf("Swap(%q, %s → %q) = false, want true", "borrowed-swap", describe(old), value)
		}
		moved := scribble()
		wantValue(t, s, "borrowed-swap", []byte(value))
		wantMissing(t, s, moved)
		old = []byte(value)
	}

	mustSet(t, s, "borrowed-get", []byte("v"), 0)
	key, scribble := borrowed("borrowed-get")
	wantValue(t, s, key, []byte("v"))
	moved := scribble()
	wantValue(t, s, "borrowed-get", []byte("v"))
	wantMissing(t, s, moved)

	if c.GetAppend != nil {
		mustSet(t, s, "borrowed-append", []byte("v"), 0)
		key, scribble := borrowed("borrowed-append")
		if v, err := c.GetAppend(ctx, key, nil); err != nil || string(v) != "v" {
			t.Errorf("GetAppend = %q, %v; want \"v\"", v, err)
		}
		moved := scribble()
		wantValue(t, s, "borrowed-append", []byte("v"))
		wantMissing(t, s, moved)
	}

	mustSet(t, s, "borrowed-delete", []byte("v"), 0)
	key, scribble = borrowed("borrowed-delete")
	if err := s.Delete(ctx, key); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	scribble()
	wantMissing(t, s, "borrowed-delete")

	// A set's name and its member, added anew and then again.
	for range 2 {
		set, scribbleSet := borrowed("borrowed-set-name")
		member, scribbleMember := borrowed("borrowed-member")
		addMember(t, s, set, member, 0)
		movedSet := scribbleSet()
		scribbleMember()
		wantMembers(t, s, "borrowed-set-name", "borrowed-member")
		wantMembers(t, s, movedSet)
	}

	if c.TryLock != nil {
		key, scribble := borrowed("borrowed-lock")
		token := mustLock(t, c, key, lockLease)
		moved := scribble()
		wantHeld(t, c, "borrowed-lock", "after it was taken under a borrowed key")
		unlock(t, c, moved, mustLock(t, c, moved, lockLease))
		unlock(t, c, "borrowed-lock", token)
		unlock(t, c, "borrowed-lock", mustLock(t, c, "borrowed-lock", lockLease))
	}
}
