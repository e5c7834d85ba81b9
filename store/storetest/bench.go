package storetest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/kvsession/kvsession/store"
)

// Benchmark runs the same parallel benchmarks against any store: Get and
// Set of 1 KB values over 1,024 keys, and Touch where the store has it (a
// method beyond the store contract, which the shipped stores share).
// newStore returns a fresh store; Benchmark closes it.
func Benchmark(b *testing.B, newStore func(b *testing.B) store.Store) {
	const n = 1024
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprintf("session-%016x", i*7919)
	}
	value := make([]byte, 1024)
	ctx := context.Background()

	// prepare runs once per benchmark, before timing, and returns the
	// operation to time; it may skip the benchmark.
	run := func(b *testing.B, prepare func(s store.Store) func(key string) error) {
		s := newStore(b)
		defer s.Close()
		for _, k := range keys {
			if err := s.Set(ctx, k, value, time.Hour); err != nil {
				b.Fatal(err)
			}
		}
		op := prepare(s)
		b.ReportAllocs()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for i := 0; pb.Next(); i++ {
				if err := op(keys[i&(n-1)]); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	b.Run("Get", func(b *testing.B) {
		run(b, func(s store.Store) func(string) error {
			return func(key string) error { _, err := s.Get(ctx, key); return err }
		})
	})
	b.Run("Set", func(b *testing.B) {
		run(b, func(s store.Store) func(string) error {
			return func(key string) error { return s.Set(ctx, key, value, time.Hour) }
		})
	})
	b.Run("Touch", func(b *testing.B) {
		run(b, func(s store.Store) func(string) error {
			t, ok := s.(toucher)
			if !ok {
				b.Skip("store has no Touch method (beyond the contract)")
			}
			return func(key string) error { return t.Touch(ctx, key, time.Hour) }
		})
	})
}
