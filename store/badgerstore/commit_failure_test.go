package badgerstore

import (
	"context"
	"reflect"
	"slices"
	"sync/atomic"
	"testing"
	"unsafe"
)

// blockBadgerWrites makes every Badger commit fail with ErrBlockedWrites
// while on, as Badger does during DB().DropAll/DropPrefix, and as any
// failed commit (a write-channel or log error) would.
func blockBadgerWrites(s *Store, on bool) {
	f := reflect.ValueOf(s.db).Elem().FieldByName("blockWrites")
	bw := (*atomic.Int32)(unsafe.Pointer(f.UnsafeAddr()))
	if on {
		bw.Store(1)
	} else {
		bw.Store(0)
	}
}

// TestNoWriteDecisionSurvivesFailedCommit: a conditional write decided
// "no write" from an earlier write of the same transaction must share that
// transaction's fate. If its commit fails, the earlier write never
// happened, so the decision was made on nothing: the AddMember or Swap
// reports the commit's error, not success (AddMember nil, or Swap false
// with nil, which would claim a member stored or a value compared).
func TestNoWriteDecisionSurvivesFailedCommit(t *testing.T) {
	ctx := context.Background()
	g := newBatchGate(t)
	gate := g.s.commits.commitBatch
	// Commit k = v0 first, past the gate's hold.
	g.s.commits.commitBatch = nil
	if err := g.s.Set(ctx, "k", []byte("v0"), 0); err != nil {
		t.Fatal(err)
	}
	g.s.commits.commitBatch = func(batch []*pendingWrite) {
		if len(batch) > 1 {
			// The batch queued behind the held one: its commit fails.
			blockBadgerWrites(g.s, true)
			defer blockBadgerWrites(g.s, false)
			g.s.commits.commit(batch)
			return
		}
		gate(batch)
	}

	var held, add1, add2, set, swapErr error
	var swapped bool
	g.start(t, func() error { return g.s.Set(ctx, "first", []byte("x"), 0) }, &held)
	g.start(t, func() error { return g.s.AddMember(ctx, "u", "m", 3600e9) }, &add1)
	g.start(t, func() error { return g.s.AddMember(ctx, "u", "m", 60e9) }, &add2)
	g.start(t, func() error { return g.s.Set(ctx, "k", []byte("v1"), 0) }, &set)
	g.start(t, func() error {
		var err error
		swapped, err = g.s.Swap(ctx, "k", []byte("v0"), []byte("x"), 0)
		return err
	}, &swapErr)
	g.open()
	g.wait(t)
	t.Logf("held %v; AddMember 1h: %v; AddMember 1m: %v; Set k=v1: %v; Swap v0→x: %v, %v",
		held, add1, add2, set, swapped, swapErr)
	if add1 == nil || set == nil {
		t.Fatal("the batch's commit did not fail; the test needs it to")
	}
	members, err := g.s.Members(ctx, "u")
	if err != nil {
		t.Fatal(err)
	}
	if add2 == nil && !slices.Contains(members, "m") {
		t.Errorf("AddMember(u, m, 1m) returned nil, but m is not a member (Members = %q)", members)
	}
	v, err := g.s.Get(ctx, "k")
	if err != nil {
		t.Fatal(err)
	}
	if swapErr == nil && !swapped && string(v) == "v0" {
		t.Errorf("Swap(k, v0 → x) = false, nil, but k held v0 throughout (Get = %q)", v)
	}
}
