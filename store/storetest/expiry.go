package storetest

import (
	"errors"
	"testing"
	"time"

	"github.com/kvsession/kvsession/store"
)

// shortTTL is the TTL the expiry subtests give entries that should expire.
// It is a whole second so that stores keeping whole seconds can honour it.
const shortTTL = time.Second

// expiryWait is how long after the last Set the expiry subtests look again.
// The extra 1.1s over shortTTL covers a store that rounds expiry up to the
// next whole second, plus scheduling noise.
const expiryWait = shortTTL + 1100*time.Millisecond

// expiryCase is one expiry scenario. Every case runs before on one shared
// store, then the clock moves (or the test sleeps) once by expiryWait, then
// every case runs after: one wait for all keeps the suite fast on a real
// clock.
type expiryCase struct {
	name   string
	needs  func(store.Store) bool // nil: every store
	before func(t *testing.T, s store.Store)
	after  func(t *testing.T, s store.Store)
}

func isToucher(s store.Store) bool { _, ok := s.(toucher); return ok }
func isExister(s store.Store) bool { _, ok := s.(exister); return ok }
func isExpirer(s store.Store) bool { _, ok := s.(expirer); return ok }

func touch(t *testing.T, s store.Store, key string, ttl time.Duration) {
	t.Helper()
	if err := s.(toucher).Touch(t.Context(), key, ttl); err != nil {
		t.Fatalf("Touch(%q, %v): %v", key, ttl, err)
	}
}

var expiryCases = []expiryCase{
	{
		name: "Expires",
		before: func(t *testing.T, s store.Store) {
			start := time.Now()
			mustSet(t, s, "expires", []byte("v"), shortTTL)
			// Never early: it is there right after Set (unless a stalled
			// machine made "right after" later than the TTL).
			if v, err := s.Get(t.Context(), "expires"); time.Since(start) < shortTTL && (err != nil || string(v) != "v") {
				t.Errorf("Get right after Set = %q, %v", v, err)
			}
		},
		after: func(t *testing.T, s store.Store) { wantMissing(t, s, "expires") },
	},
	{
		name:   "ZeroTTLPersists",
		before: func(t *testing.T, s store.Store) { mustSet(t, s, "zero", []byte("v"), 0) },
		after:  func(t *testing.T, s store.Store) { wantValue(t, s, "zero", []byte("v")) },
	},
	{
		name:   "LongTTLPersists",
		before: func(t *testing.T, s store.Store) { mustSet(t, s, "long", []byte("v"), time.Hour) },
		after:  func(t *testing.T, s store.Store) { wantValue(t, s, "long", []byte("v")) },
	},
	{
		name: "OverwriteWithZeroTTL",
		before: func(t *testing.T, s store.Store) {
			mustSet(t, s, "ow-zero", []byte("old"), shortTTL)
			mustSet(t, s, "ow-zero", []byte("new"), 0)
		},
		after: func(t *testing.T, s store.Store) { wantValue(t, s, "ow-zero", []byte("new")) },
	},
	{
		name: "OverwriteWithShortTTL",
		before: func(t *testing.T, s store.Store) {
			mustSet(t, s, "ow-short", []byte("old"), 0)
			mustSet(t, s, "ow-short", []byte("new"), shortTTL)
		},
		after: func(t *testing.T, s store.Store) { wantMissing(t, s, "ow-short") },
	},
	{
		name: "ReuseAfterExpiry",
		before: func(t *testing.T, s store.Store) {
			mustSet(t, s, "reuse", []byte("old"), shortTTL)
		},
		after: func(t *testing.T, s store.Store) {
			if err := s.Delete(t.Context(), "reuse"); err != nil {
				t.Errorf("Delete of an expired key: %v, want nil", err)
			}
			mustSet(t, s, "reuse", []byte("new"), 0)
			wantValue(t, s, "reuse", []byte("new"))
		},
	},
	{
		name:  "TouchExtends",
		needs: isToucher,
		before: func(t *testing.T, s store.Store) {
			mustSet(t, s, "touch-extends", []byte("v"), shortTTL)
			touch(t, s, "touch-extends", time.Hour)
		},
		after: func(t *testing.T, s store.Store) { wantValue(t, s, "touch-extends", []byte("v")) },
	},
	{
		name:  "TouchWithZeroTTL",
		needs: isToucher,
		before: func(t *testing.T, s store.Store) {
			mustSet(t, s, "touch-zero", []byte("v"), shortTTL)
			touch(t, s, "touch-zero", 0)
		},
		after: func(t *testing.T, s store.Store) { wantValue(t, s, "touch-zero", []byte("v")) },
	},
	{
		name:  "TouchShortens",
		needs: isToucher,
		before: func(t *testing.T, s store.Store) {
			mustSet(t, s, "touch-shortens", []byte("v"), 0)
			touch(t, s, "touch-shortens", shortTTL)
			wantValue(t, s, "touch-shortens", []byte("v"))
		},
		after: func(t *testing.T, s store.Store) { wantMissing(t, s, "touch-shortens") },
	},
	{
		name:  "TouchAfterExpiry",
		needs: isToucher,
		before: func(t *testing.T, s store.Store) {
			mustSet(t, s, "touch-late", []byte("v"), shortTTL)
		},
		after: func(t *testing.T, s store.Store) {
			err := s.(toucher).Touch(t.Context(), "touch-late", time.Hour)
			wantErr(t, "Touch of an expired key", err, store.ErrNotFound)
			wantMissing(t, s, "touch-late") // and it did not come back
		},
	},
	{
		name:  "ExistsAfterExpiry",
		needs: isExister,
		before: func(t *testing.T, s store.Store) {
			mustSet(t, s, "exists", []byte("v"), shortTTL)
			if ok, err := s.(exister).Exists(t.Context(), "exists"); !ok || err != nil {
				t.Errorf("Exists right after Set = %v, %v; want true, nil", ok, err)
			}
		},
		after: func(t *testing.T, s store.Store) {
			if ok, err := s.(exister).Exists(t.Context(), "exists"); ok || err != nil {
				t.Errorf("Exists of an expired key = %v, %v; want false, nil", ok, err)
			}
		},
	},
	{
		name:  "ExpiresInAfterExpiry",
		needs: isExpirer,
		before: func(t *testing.T, s store.Store) {
			mustSet(t, s, "expires-in", []byte("v"), shortTTL)
			d, err := s.(expirer).ExpiresIn(t.Context(), "expires-in")
			if err != nil || d <= 0 || d == store.NoExpiry {
				t.Errorf("ExpiresIn right after Set = %v, %v; want a positive duration", d, err)
			}
		},
		after: func(t *testing.T, s store.Store) {
			d, err := s.(expirer).ExpiresIn(t.Context(), "expires-in")
			if !errors.Is(err, store.ErrNotFound) {
				t.Errorf("ExpiresIn of an expired key = %v, %v; want ErrNotFound", d, err)
			}
		},
	},
}

func (r *runner) testExpiry(t *testing.T) {
	if r.h.Advance == nil {
		// Sleeping, this subtest can overlap with all the others.
		r.parallel(t)
	}
	s := r.open(t)
	var cases []expiryCase
	for _, c := range expiryCases {
		if c.needs == nil || c.needs(s) {
			cases = append(cases, c)
		}
	}
	for _, c := range cases {
		t.Run(c.name+"/Before", func(t *testing.T) { c.before(t, s) })
	}
	if r.h.Advance != nil {
		r.h.Advance(expiryWait)
	} else {
		time.Sleep(expiryWait)
	}
	for _, c := range cases {
		t.Run(c.name+"/After", func(t *testing.T) { c.after(t, s) })
	}
}

// testExpiryEdges checks, with a fake clock, that an entry lives exactly as
// long as its TTL: not a millisecond less, and not at all longer.
func (r *runner) testExpiryEdges(t *testing.T) {
	const ttl = 10 * time.Second
	advance := r.h.Advance

	t.Run("Set", func(t *testing.T) {
		s := r.open(t)
		mustSet(t, s, "k", []byte("v"), ttl)
		advance(ttl - time.Millisecond)
		wantValue(t, s, "k", []byte("v"))
		if x, ok := s.(expirer); ok {
			if d, err := x.ExpiresIn(t.Context(), "k"); err != nil || d != time.Millisecond {
				t.Errorf("ExpiresIn 1ms before expiry = %v, %v; want 1ms", d, err)
			}
		}
		advance(time.Millisecond)
		wantMissing(t, s, "k")
	})

	t.Run("Touch", func(t *testing.T) {
		s := r.open(t)
		if !isToucher(s) {
			t.Skip("store has no Touch method (beyond the contract)")
		}
		mustSet(t, s, "k", []byte("v"), ttl)
		advance(ttl / 2)
		touch(t, s, "k", ttl)
		// Past the original expiry, short of the new one.
		advance(ttl - time.Millisecond)
		wantValue(t, s, "k", []byte("v"))
		advance(time.Millisecond)
		wantMissing(t, s, "k")
	})

	t.Run("Overwrite", func(t *testing.T) {
		s := r.open(t)
		mustSet(t, s, "k", []byte("old"), ttl)
		advance(ttl / 2)
		mustSet(t, s, "k", []byte("new"), ttl)
		advance(ttl - time.Millisecond)
		wantValue(t, s, "k", []byte("new"))
		advance(time.Millisecond)
		wantMissing(t, s, "k")
	})
}

// testNeverEarly checks on the real clock what testExpiryEdges checks with a
// fake one: an entry is still there just before its TTL ends. A store that
// truncates expiries to whole seconds (Badger's WithTTL does) fails it nine
// times in ten.
func (r *runner) testNeverEarly(t *testing.T) {
	r.parallel(t)
	s := r.open(t)
	const ttl = 2 * time.Second
	start := time.Now() // the store's clock reads no earlier than this
	mustSet(t, s, "k", []byte("v"), ttl)
	time.Sleep(ttl - 100*time.Millisecond)
	v, err := s.Get(t.Context(), "k")
	if time.Since(start) < ttl-20*time.Millisecond && (err != nil || string(v) != "v") {
		t.Errorf("Get %v after Set with a TTL of %v = %q, %v: expired early", time.Since(start).Round(time.Millisecond), ttl, v, err)
	}
}
