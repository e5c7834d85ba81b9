package kvsession

import (
	"context"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/kvsession/kvsession/store"
	"github.com/kvsession/kvsession/store/memstore"
)

// keyRecorder keeps every key its Get is given, as a store that caches or
// indexes the caller's strings would. Embedding the store.Store interface
// hides the memory store's optional methods, its Traits included.
type keyRecorder struct {
	store.Store
	mu   sync.Mutex
	seen []string
}

func (r *keyRecorder) Get(ctx context.Context, key string) ([]byte, error) {
	r.mu.Lock()
	r.seen = append(r.seen, key)
	r.mu.Unlock()
	return r.Store.Get(ctx, key)
}

func (r *keyRecorder) last() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.seen[len(r.seen)-1]
}

// borrowingRecorder reports store.Traits.BorrowsKeys, so the backend lends
// it the session's key buffer.
type borrowingRecorder struct{ *keyRecorder }

func (borrowingRecorder) Traits() store.Traits { return store.Traits{BorrowsKeys: true} }

// TestLoadKeysAreLentOnlyToBorrowers: a store that says it keeps no key
// (store.Traits.BorrowsKeys) is handed a view of the session's reused buffer; any
// other store gets a key of its own, which later requests leave intact.
func TestLoadKeysAreLentOnlyToBorrowers(t *testing.T) {
	for _, borrows := range []bool{false, true} {
		t.Run(map[bool]string{false: "keeps keys", true: "borrows keys"}[borrows], func(t *testing.T) {
			mem := memstore.New(memstore.Options{})
			t.Cleanup(func() { mem.Close() })
			rec := &keyRecorder{Store: mem}
			var st store.Store = rec
			if borrows {
				st = borrowingRecorder{rec}
			}
			b := newBackend(t, Config{}, st)
			ids := make([]string, 20)
			for i := range ids {
				out, err := request(t, b, "", func(s *Session) { s.SetInt("n", i) })
				if err != nil {
					t.Fatal(err)
				}
				ids[i] = out.cookieValue(t, "session")
			}
			var first string
			for i, id := range ids {
				_, err := request(t, b, id, func(s *Session) {
					if n, ok := s.GetInt("n"); !ok || n != i {
						t.Fatalf("session %d reads n=%d, %v", i, n, ok)
					}
					key := rec.last()
					lent := len(s.keyBuf) > 0 && unsafe.StringData(key) == unsafe.SliceData(s.keyBuf)
					if lent != borrows {
						t.Fatalf("key lent from the session's buffer: %v, want %v", lent, borrows)
					}
					if i == 0 {
						first = key
					}
				})
				if err != nil {
					t.Fatal(err)
				}
			}
			if want := b.storeKey([]byte(ids[0])); !borrows && first != want {
				t.Fatalf("a key the store kept changed under it: %q, want %q", first, want)
			}
		})
	}
}

// TestLockFollowsForwardWithLentKeys: an old id's load takes the lock on
// its key, then, following the forward, on the new id's key, which the
// session builds in the same buffer. The lock table must keep a key of its
// own, or the first lock is released under the wrong name and leaks: the
// next request with the old id then waits out LockWait.
func TestLockFollowsForwardWithLentKeys(t *testing.T) {
	clk := newClock()
	st := memstore.New(memstore.Options{Now: clk.now})
	defer st.Close()
	b := newBackend(t, Config{Lock: true, LockWait: 200 * time.Millisecond, RotationInterval: time.Hour}, st)
	b.now = clk.now
	out, err := request(t, b, "", func(s *Session) { s.SetInt("n", 1) })
	if err != nil {
		t.Fatal(err)
	}
	oldID := out.cookieValue(t, "session")
	clk.advance(time.Hour)
	out, err = request(t, b, oldID, func(s *Session) { s.GetInt("n") }) // rotates, leaving a forward
	if err != nil {
		t.Fatal(err)
	}
	newID := out.cookieValue(t, "session")
	if newID == oldID {
		t.Fatal("id not rotated")
	}
	for i, id := range []string{oldID, oldID, newID, oldID} {
		_, err := request(t, b, id, func(s *Session) {
			n, ok := s.GetInt("n")
			if err := s.Err(); err != nil || !ok || n != 1+i {
				t.Fatalf("request %d: n=%d %v, %v", i, n, ok, err)
			}
			s.SetInt("n", n+1)
		})
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
	}
}
