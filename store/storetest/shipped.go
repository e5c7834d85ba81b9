package storetest

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/kvsession/kvsession/store"
)

// Methods beyond the store contract. kvsession never calls them, so a
// store need not have them; but the stores shipped with kvsession (memory,
// Badger, Redis) share them, for applications and tools, and the suite
// checks them wherever a store has them, so that they mean the same on
// every store. Other stores may leave them out: their subtests are then
// skipped. The interfaces are unexported on purpose: they are a shared
// habit of the shipped stores, not abilities kvsession looks for.

// toucher resets an entry's expiry without rewriting its value. Touch
// returns store.ErrNotFound for a missing key.
type toucher interface {
	Touch(ctx context.Context, key string, ttl time.Duration) error
}

// exister tells whether a key is present without copying its value.
type exister interface {
	Exists(ctx context.Context, key string) (bool, error)
}

// expirer reports how long an entry has left: store.ErrNotFound for a
// missing key, store.NoExpiry for one stored with a zero TTL.
type expirer interface {
	ExpiresIn(ctx context.Context, key string) (time.Duration, error)
}

// clearer deletes every entry the store holds.
type clearer interface {
	DeleteAll(ctx context.Context) error
}

func (r *runner) testTouch(t *testing.T) {
	s := r.open(t)
	x, ok := s.(toucher)
	if !ok {
		t.Skip("store has no Touch method (beyond the contract)")
	}
	ctx := t.Context()
	wantErr(t, "Touch of a missing key", x.Touch(ctx, "missing", time.Hour), store.ErrNotFound)
	wantMissing(t, s, "missing") // Touch must not create the key

	value := randomBytes(300)
	mustSet(t, s, "k", value, time.Hour)
	for _, ttl := range []time.Duration{time.Minute, 0, 2 * time.Hour} {
		if err := x.Touch(ctx, "k", ttl); err != nil {
			t.Fatalf("Touch(%v): %v", ttl, err)
		}
		wantValue(t, s, "k", value)
	}

	mustSet(t, s, "gone", []byte("v"), 0)
	if err := s.Delete(ctx, "gone"); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	wantErr(t, "Touch of a deleted key", x.Touch(ctx, "gone", time.Hour), store.ErrNotFound)
}

func (r *runner) testExists(t *testing.T) {
	s := r.open(t)
	x, ok := s.(exister)
	if !ok {
		t.Skip("store has no Exists method (beyond the contract)")
	}
	ctx := t.Context()
	wantExists := func(key string, want bool) {
		t.Helper()
		got, err := x.Exists(ctx, key)
		if err != nil || got != want {
			t.Errorf("Exists(%q) = %v, %v; want %v, nil", key, got, err, want)
		}
	}
	wantExists("k", false)
	mustSet(t, s, "k", []byte("v"), time.Hour)
	mustSet(t, s, "empty", nil, 0)
	wantExists("k", true)
	wantExists("empty", true) // an empty value is still an entry
	wantExists("k2", false)
	if err := s.Delete(ctx, "k"); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	wantExists("k", false)
}

func (r *runner) testExpiresIn(t *testing.T) {
	s := r.open(t)
	x, ok := s.(expirer)
	if !ok {
		t.Skip("store has no ExpiresIn method (beyond the contract)")
	}
	ctx := t.Context()
	if d, err := x.ExpiresIn(ctx, "missing"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("ExpiresIn of a missing key = %v, %v; want ErrNotFound", d, err)
	}

	mustSet(t, s, "forever", []byte("v"), 0)
	if d, err := x.ExpiresIn(ctx, "forever"); err != nil || d != store.NoExpiry {
		t.Errorf("ExpiresIn after Set with TTL 0 = %v, %v; want NoExpiry", d, err)
	}

	r.wantExpiresIn(t, x, "hour", func() { mustSet(t, s, "hour", []byte("v"), time.Hour) }, time.Hour)

	// Set replaces the expiry along with the value, both ways.
	mustSet(t, s, "forever", []byte("v"), time.Hour)
	if d, err := x.ExpiresIn(ctx, "forever"); err != nil || d == store.NoExpiry {
		t.Errorf("ExpiresIn after Set with TTL 1h over TTL 0 = %v, %v; want about 1h", d, err)
	}
	mustSet(t, s, "hour", []byte("v"), 0)
	if d, err := x.ExpiresIn(ctx, "hour"); err != nil || d != store.NoExpiry {
		t.Errorf("ExpiresIn after Set with TTL 0 over TTL 1h = %v, %v; want NoExpiry", d, err)
	}

	if tx, ok := s.(toucher); ok {
		r.wantExpiresIn(t, x, "hour", func() {
			if err := tx.Touch(ctx, "hour", 2*time.Hour); err != nil {
				t.Fatalf("Touch: %v", err)
			}
		}, 2*time.Hour)
		if err := tx.Touch(ctx, "hour", 0); err != nil {
			t.Fatalf("Touch: %v", err)
		}
		if d, err := x.ExpiresIn(ctx, "hour"); err != nil || d != store.NoExpiry {
			t.Errorf("ExpiresIn after Touch with TTL 0 = %v, %v; want NoExpiry", d, err)
		}
	}

	if err := s.Delete(ctx, "hour"); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if d, err := x.ExpiresIn(ctx, "hour"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("ExpiresIn of a deleted key = %v, %v; want ErrNotFound", d, err)
	}
}

// wantExpiresIn runs set, which gives key a TTL of ttl, and checks what
// ExpiresIn reports. With a fake clock that is exactly ttl. With a real one
// it may be less by the time the calls took, or more by up to a second for a
// store that rounds expiry up to whole seconds.
func (r *runner) wantExpiresIn(t *testing.T, x expirer, key string, set func(), ttl time.Duration) {
	t.Helper()
	start := time.Now()
	set()
	d, err := x.ExpiresIn(t.Context(), key)
	elapsed := time.Since(start)
	if err != nil {
		t.Errorf("ExpiresIn(%q): %v", key, err)
		return
	}
	lo, hi := ttl, ttl
	if r.h.Advance == nil {
		lo, hi = ttl-elapsed-time.Second, ttl+time.Second
	}
	if d < lo || d > hi {
		t.Errorf("ExpiresIn(%q) with TTL %v = %v, want between %v and %v", key, ttl, d, lo, hi)
	}
}

func (r *runner) testDeleteAll(t *testing.T) {
	s := r.open(t)
	x, ok := s.(clearer)
	if !ok {
		t.Skip("store has no DeleteAll method (beyond the contract)")
	}
	ctx := t.Context()
	if err := x.DeleteAll(ctx); err != nil {
		t.Errorf("DeleteAll of an empty store: %v", err)
	}
	for i := range 50 {
		mustSet(t, s, fmt.Sprint("k", i), []byte("v"), time.Duration(i%2)*time.Hour)
	}
	if err := x.DeleteAll(ctx); err != nil {
		t.Fatalf("DeleteAll: %v", err)
	}
	for i := range 50 {
		wantMissing(t, s, fmt.Sprint("k", i))
	}
	// The store stays usable.
	mustSet(t, s, "k1", []byte("after"), 0)
	wantValue(t, s, "k1", []byte("after"))
}
