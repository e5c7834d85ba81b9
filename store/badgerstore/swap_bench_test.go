package badgerstore

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkSwap measures Swap as the backend saves a session: the value
// swapped from is the one last written, so the condition holds and the
// cache can answer it. Each goroutine owns its own keys (sessions are not
// shared), alternating two 1 KB values, over a disk store like
// BenchmarkStore's. Set is BenchmarkStore/Set.
func BenchmarkSwap(b *testing.B) {
	for _, tc := range []struct {
		name  string
		cache int
	}{{"cached", 0}, {"uncached", -1}} {
		b.Run(tc.name, func(b *testing.B) {
			s, err := Open(Options{Dir: b.TempDir(), CacheSize: tc.cache})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			ctx := context.Background()
			const keysEach = 64
			var next atomic.Int64
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				g := next.Add(1)
				keys := make([]string, keysEach)
				vals := [2][]byte{make([]byte, 1024), make([]byte, 1024)}
				vals[1][0] = 1
				for i := range keys {
					keys[i] = fmt.Sprintf("session-%d-%d", g, i)
					if err := s.Set(ctx, keys[i], vals[0], time.Hour); err != nil {
						b.Error(err)
						return
					}
				}
				var flip [keysEach]uint8
				for i := 0; pb.Next(); i++ {
					k := i % keysEach
					old, value := vals[flip[k]], vals[flip[k]^1]
					ok, err := s.Swap(ctx, keys[k], old, value, time.Hour)
					if err != nil || !ok {
						b.Errorf("Swap = %v, %v", ok, err)
						return
					}
					flip[k] ^= 1
				}
			})
		})
	}
}
