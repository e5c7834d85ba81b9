package redisstore

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestSwapComparesWholeValues checks Swap's comparison on both of its
// paths: old values up to 40 bytes are sent and compared as they are,
// longer ones by SHA-1. Each case changes the stored value by one byte,
// or by its length, where the two paths meet, so that a comparison of a
// prefix, of lengths, or of the wrong path would let a stale write
// through.
func TestSwapComparesWholeValues(t *testing.T) {
	t.Parallel()
	s := openT(t)
	ctx := t.Context()
	for _, n := range []int{0, 1, swapInline - 1, swapInline, swapInline + 1, 4096} {
		cur := bytes.Repeat([]byte{'a'}, n)
		if n > 0 {
			cur[n-1] = 0 // binary, not text
		}
		key := "k" + strings.Repeat("x", n%7)
		if err := s.Set(ctx, key, cur, 0); err != nil {
			t.Fatal(err)
		}
		stale := [][]byte{append(bytes.Clone(cur), 'a')} // one byte longer
		if n > 0 {
			stale = append(stale, cur[:n-1]) // one byte shorter
			diff := bytes.Clone(cur)
			diff[0] = 'b' // same length, first byte differs
			stale = append(stale, diff)
		}
		for _, old := range stale {
			ok, err := s.Swap(ctx, key, old, []byte("stale"), 0)
			if err != nil || ok {
				t.Fatalf("len %d: Swap with old of len %d = %v, %v; want false", n, len(old), ok, err)
			}
		}
		if v, _ := s.Get(ctx, key); !bytes.Equal(v, cur) {
			t.Fatalf("len %d: a refused Swap changed the value to %q", n, v)
		}
		ok, err := s.Swap(ctx, key, bytes.Clone(cur), []byte("new"), 0)
		if err != nil || !ok {
			t.Fatalf("len %d: Swap with the current value = %v, %v; want true", n, ok, err)
		}
		if v, _ := s.Get(ctx, key); string(v) != "new" {
			t.Fatalf("len %d: after Swap the value is %q", n, v)
		}
	}
}

// TestSwapKeysAndTTL pins down what Swap leaves in Redis: the value under
// ValueKey, its TTL rounded up to whole milliseconds, no TTL for zero, and
// nothing at all for a nil value. An empty value is a value: a nil old
// does not match it, an empty old does.
func TestSwapKeysAndTTL(t *testing.T) {
	t.Parallel()
	s := openT(t)
	ctx := t.Context()
	if ok, err := s.Swap(ctx, "k", nil, []byte("v1"), time.Minute+1500*time.Microsecond); err != nil || !ok {
		t.Fatalf("Swap onto a missing key = %v, %v", ok, err)
	}
	if v, ok := rawGet(t, s.ValueKey("k")); !ok || v != "v1" {
		t.Fatalf("ValueKey holds %q, %v", v, ok)
	}
	if ms := rawPTTL(t, s.ValueKey("k")); ms < 59_000 || ms > 60_002 {
		t.Errorf("PTTL after a TTL of 1m0.0015s = %dms, want 60002 or just under", ms)
	}
	if ok, err := s.Swap(ctx, "k", []byte("v1"), []byte("v2"), 0); err != nil || !ok {
		t.Fatalf("Swap = %v, %v", ok, err)
	}
	if ms := rawPTTL(t, s.ValueKey("k")); ms != -1 {
		t.Errorf("PTTL after a Swap with TTL 0 = %d, want -1 (none)", ms)
	}
	if ok, err := s.Swap(ctx, "k", []byte("v2"), []byte("v3"), time.Hour); err != nil || !ok {
		t.Fatalf("Swap = %v, %v", ok, err)
	}
	if ms := rawPTTL(t, s.ValueKey("k")); ms < 59*60*1000 || ms > 60*60*1000 {
		t.Errorf("PTTL after a Swap with TTL 1h = %dms", ms)
	}
	if ok, err := s.Swap(ctx, "k", []byte("v3"), nil, time.Hour); err != nil || !ok {
		t.Fatalf("Swap to delete = %v, %v", ok, err)
	}
	if _, ok := rawGet(t, s.ValueKey("k")); ok {
		t.Fatal("a Swap with a nil value left the key")
	}

	if err := s.Set(ctx, "empty", []byte{}, 0); err != nil {
		t.Fatal(err)
	}
	if ok, err := s.Swap(ctx, "empty", nil, []byte("x"), 0); err != nil || ok {
		t.Errorf("Swap with nil old onto an empty value = %v, %v; want false", ok, err)
	}
	if ok, err := s.Swap(ctx, "empty", []byte{}, []byte("x"), 0); err != nil || !ok {
		t.Errorf("Swap with empty old onto an empty value = %v, %v; want true", ok, err)
	}
	if ok, err := s.Swap(ctx, "missing", []byte{}, []byte("x"), 0); err != nil || ok {
		t.Errorf("Swap with empty old onto a missing key = %v, %v; want false", ok, err)
	}
}

// BenchmarkSwap measures a session save's compare-and-set of 1 KB (old
// compared by SHA-1) from parallel goroutines, and Get beside it, each
// with the default CallTimeout and with it off, to show what the bound
// costs per call.
func BenchmarkSwap(b *testing.B) {
	needServer(b)
	value := bytes.Repeat([]byte("s"), 1024)
	for _, tc := range []struct {
		name    string
		timeout time.Duration
	}{{"CallTimeout", 0}, {"NoCallTimeout", -1}} {
		s, err := Open(b.Context(), Options{Addr: testAddr, Prefix: testPrefix(b), CallTimeout: tc.timeout})
		if err != nil {
			b.Fatal(err)
		}
		keys := make([]string, 1024)
		for i := range keys {
			keys[i] = fmt.Sprintf("session-%016x", i*7919)
			if err := s.Set(b.Context(), keys[i], value, time.Hour); err != nil {
				b.Fatal(err)
			}
		}
		b.Run("Swap/"+tc.name, func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for i := 0; pb.Next(); i++ {
					if ok, err := s.Swap(context.Background(), keys[i&1023], value, value, time.Hour); err != nil || !ok {
						b.Errorf("Swap = %v, %v", ok, err)
						return
					}
				}
			})
		})
		b.Run("Get/"+tc.name, func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for i := 0; pb.Next(); i++ {
					if _, err := s.Get(context.Background(), keys[i&1023]); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
		s.Close()
	}
}
