package badgerstore

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kvsession/kvsession/store"
)

// scanKeys scans prefix and returns the keys in the order visited, and
// their values.
func scanKeys(t *testing.T, s *Store, prefix string) ([]string, map[string][]byte) {
	t.Helper()
	var keys []string
	values := map[string][]byte{}
	err := s.Scan(t.Context(), prefix, func(key string, value []byte) error {
		keys = append(keys, key) // keys are the Store's own strings: kept as they are
		values[key] = bytes.Clone(value)
		return nil
	})
	if err != nil {
		t.Fatalf("Scan(%q): %v", prefix, err)
	}
	return keys, values
}

// The ranges a prefix scans: set members, behind 0xff 0x01, are in none.
func TestValueRanges(t *testing.T) {
	tests := []struct {
		prefix string
		want   string
	}{
		{"", `["" strip 0 before 0xff] ["\xff\x00" strip 2]`},
		{"a", `["a" strip 0]`},
		{"user:", `["user:" strip 0]`},
		{"\xff", `["\xff\x00\xff" strip 2]`},
		{"\xff\x01", `["\xff\x00\xff\x01" strip 2]`},
		{"\x00", `["\x00" strip 0]`},
	}
	for _, tc := range tests {
		var parts []string
		for _, r := range valueRanges(tc.prefix) {
			p := fmt.Sprintf("[%q strip %d", r.prefix, r.strip)
			if r.beforeReserved {
				p += " before 0xff"
			}
			parts = append(parts, p+"]")
		}
		if got := strings.Join(parts, " "); got != tc.want {
			t.Errorf("valueRanges(%q) = %s, want %s", tc.prefix, got, tc.want)
		}
	}
}

// Scans across chunk boundaries, by count and by bytes, visit each key
// exactly once, in key order, with its value.
func TestScanChunks(t *testing.T) {
	tests := []struct {
		name  string
		n     int
		value int // bytes per value
	}{
		{"none", 0, 10},
		{"one", 1, 10},
		{"a chunk less one", scanChunkKeys - 1, 10},
		{"a chunk", scanChunkKeys, 10},
		{"a chunk and one", scanChunkKeys + 1, 10},
		{"two chunks and one", 2*scanChunkKeys + 1, 10},
		{"by bytes", 9, scanChunkBytes / 3},
		{"values over a chunk", 3, scanChunkBytes + 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := openT(t, Options{Dir: t.TempDir()})
			var want []string
			for i := range tc.n {
				k := fmt.Sprintf("k%05d", i)
				want = append(want, k)
				v := bytes.Repeat([]byte{byte(i)}, tc.value)
				if err := s.Set(t.Context(), k, v, time.Hour); err != nil {
					t.Fatal(err)
				}
			}
			// Keys around the range, and escaped ones, that k must not show.
			for _, k := range []string{"j", "l", "\xffk00000"} {
				if err := s.Set(t.Context(), k, []byte("other"), 0); err != nil {
					t.Fatal(err)
				}
			}
			keys, values := scanKeys(t, s, "k")
			if !slices.Equal(keys, want) {
				t.Fatalf("Scan visited %d keys (%.3q...), want %d in key order, each once", len(keys), keys[:min(3, len(keys))], len(want))
			}
			for i, k := range want {
				if v := values[k]; len(v) != tc.value || (len(v) > 0 && v[0] != byte(i)) {
					t.Errorf("value of %s: %d bytes starting %v", k, len(v), v[:min(1, len(v))])
				}
			}
		})
	}
}

// A chunk goes on from the first key it did not take: a key deleted
// before the scan reaches it is not visited, and nothing else is lost.
func TestScanResumesAfterDeletedKey(t *testing.T) {
	s := openT(t, Options{InMemory: true})
	ctx := t.Context()
	const n = 2*scanChunkKeys + 10
	for i := range n {
		if err := s.Set(ctx, fmt.Sprintf("k%04d", i), []byte("v"), 0); err != nil {
			t.Fatal(err)
		}
	}
	// The first key of the second chunk, deleted while fn is shown the
	// last key of the first; and a key of the third chunk, deleted while
	// fn is shown one of the second, which has not read it.
	resume, later := fmt.Sprintf("k%04d", scanChunkKeys), fmt.Sprintf("k%04d", 2*scanChunkKeys+5)
	ahead := map[string]string{
		fmt.Sprintf("k%04d", scanChunkKeys-1): resume,
		fmt.Sprintf("k%04d", scanChunkKeys+1): later,
	}
	seen := map[string]int{}
	err := s.Scan(ctx, "", func(key string, _ []byte) error {
		seen[key]++
		if next, ok := ahead[key]; ok {
			return s.Delete(ctx, next)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		k := fmt.Sprintf("k%04d", i)
		want := 1
		if k == resume || k == later {
			want = 0
		}
		if seen[k] != want {
			t.Errorf("%s visited %d times, want %d", k, seen[k], want)
		}
	}
}

// fn may close the Store: the scan holds no lock while fn runs, and stops
// at the next chunk with ErrClosed.
func TestScanCloseFromFn(t *testing.T) {
	s := openT(t, Options{InMemory: true})
	ctx := t.Context()
	for i := range scanChunkKeys + 1 {
		if err := s.Set(ctx, fmt.Sprint("k", i), []byte("v"), 0); err != nil {
			t.Fatal(err)
		}
	}
	done := make(chan error, 1)
	calls := 0
	go func() {
		done <- s.Scan(ctx, "", func(string, []byte) error {
			if calls++; calls == 1 {
				return s.Close()
			}
			return nil
		})
	}()
	select {
	case err := <-done:
		if !errors.Is(err, store.ErrClosed) {
			t.Errorf("Scan of a store its fn closed: %v, want ErrClosed", err)
		}
		if calls != scanChunkKeys {
			t.Errorf("fn called %d times: want the first chunk's %d, and no more", calls, scanChunkKeys)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Close from fn deadlocked the scan")
	}
}

// A Set that returned is seen by a scan that starts after it, whatever the
// cache held and however the writes were batched.
func TestScanSeesReturnedWrites(t *testing.T) {
	for _, cache := range []int{0, -1} {
		t.Run(fmt.Sprint("CacheSize ", cache), func(t *testing.T) {
			s := openT(t, Options{InMemory: true, CacheSize: cache})
			ctx := t.Context()
			var wg sync.WaitGroup
			for g := range 8 {
				wg.Go(func() {
					key := fmt.Sprint("w", g)
					for i := range 50 {
						want := fmt.Sprint(i)
						if err := s.Set(ctx, key, []byte(want), time.Hour); err != nil {
							t.Error(err)
							return
						}
						// Read into the cache, then write over it.
						if _, err := s.Get(ctx, key); err != nil {
							t.Error(err)
							return
						}
						var got []string
						err := s.Scan(ctx, key, func(_ string, v []byte) error {
							got = append(got, string(v))
							return nil
						})
						if err != nil || !slices.Equal(got, []string{want}) {
							t.Errorf("Scan(%q) right after Set(%q) = %q, %v", key, want, got, err)
							return
						}
					}
				})
			}
			wg.Wait()
		})
	}
}
