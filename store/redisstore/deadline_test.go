package redisstore

import (
	"context"
	"testing"
	"time"
)

// A shared deadline ends within one slot of CallTimeout from the call, is
// shared by the calls of the same moment, and keeps the caller's values.
func TestSharedDeadline(t *testing.T) {
	const timeout = 3200 * time.Millisecond
	var d sharedDeadlines
	d.init(timeout)
	before := time.Now()
	a := d.get()
	b := d.get()
	if a != b {
		t.Error("two calls of the same moment got two deadlines")
	}
	end, ok := a.Deadline()
	if !ok || end.Before(before.Add(timeout-timeout/deadlineSlots)) || end.After(time.Now().Add(timeout)) {
		t.Errorf("deadline %v after the call, want within [%v, %v]", end.Sub(before), timeout-timeout/deadlineSlots, timeout)
	}
	time.Sleep(timeout/deadlineSlots + 10*time.Millisecond)
	c := d.get()
	if c == a {
		t.Error("a call one slot later got the earlier deadline")
	}
	if end2, _ := c.Deadline(); !end2.After(end) {
		t.Errorf("the later deadline %v is not after %v", end2, end)
	}

	type key struct{}
	parent := context.WithValue(context.Background(), key{}, "span")
	s := &Store{timeout: timeout}
	s.deadlines.init(timeout)
	ctx, cancel := s.bound(parent)
	defer cancel()
	if ctx.Value(key{}) != "span" {
		t.Error("the caller's values are lost")
	}
	if _, ok := ctx.Deadline(); !ok || ctx.Done() == nil {
		t.Error("no deadline on a call whose context never ends")
	}
}

// A caller's context that can end is bounded as it is, not by the shared
// deadline: its own cancellation must reach the call.
func TestBoundKeepsTheCallersCancellation(t *testing.T) {
	s := &Store{timeout: time.Hour}
	s.deadlines.init(time.Hour)
	parent, stop := context.WithCancel(context.Background())
	ctx, cancel := s.bound(parent)
	defer cancel()
	stop()
	select {
	case <-ctx.Done():
	case <-time.After(time.Second):
		t.Fatal("canceling the caller's context did not end the call's")
	}
}

func BenchmarkBound(b *testing.B) {
	s := &Store{timeout: 2 * time.Second}
	s.deadlines.init(2 * time.Second)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		_, cancel := s.bound(ctx)
		cancel()
	}
}
