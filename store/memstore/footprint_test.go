package memstore

import (
	"context"
	"fmt"
	"runtime"
	"testing"
	"time"
)

// TestFootprint bounds the heap an entry costs: a session-sized entry (a
// 51-byte key, a 40-byte value) must stay under the 206 bytes the
// store took when key, value and the map's key copy were three objects
// (it takes about 160).
func TestFootprint(t *testing.T) {
	const n = 100_000
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	s := New(Options{})
	defer s.Close()
	value := make([]byte, 40)
	ctx := context.Background()
	for i := range n {
		if err := s.Set(ctx, fmt.Sprintf("session:%043d", i), value, time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	perEntry := float64(after.HeapAlloc-before.HeapAlloc) / n
	t.Logf("%.0f bytes of heap per entry", perEntry)
	if perEntry > 200 {
		t.Fatalf("%.0f bytes of heap per entry, want at most 200", perEntry)
	}
	runtime.KeepAlive(s)
}
