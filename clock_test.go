package kvsession

import (
	"testing"
	"time"
)

// TestWallClock: readings stay within the time.Now readings around them
// and never go backwards, whether extended from the anchor or re-anchored
// on every call.
func TestWallClock(t *testing.T) {
	for _, reanchor := range []time.Duration{time.Hour, 0} {
		c := &wallClock{reanchor: reanchor}
		var last time.Time
		for i := 0; i < 10000; i++ {
			before := time.Now()
			got := c.now()
			after := time.Now()
			// Compare wall readings: Round(0) strips the monotonic one.
			if got.Round(0).Before(before.Round(0).Add(-time.Millisecond)) || got.Round(0).After(after.Round(0).Add(time.Millisecond)) {
				t.Fatalf("reanchor %v: reading %v outside [%v, %v]", reanchor, got, before, after)
			}
			if got.Before(last) {
				t.Fatalf("reanchor %v: went backwards from %v to %v", reanchor, last, got)
			}
			last = got
		}
	}
}
