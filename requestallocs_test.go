package kvsession

import (
	"testing"

	"github.com/kvsession/kvsession/internal/race"
	"github.com/kvsession/kvsession/store/memstore"
)

// TestRequestAllocations pins the hot path's allocations on the memory
// store: a request that reads a session, or changes a value of the same
// size and saves it, allocates nothing once pools are warm.
func TestRequestAllocations(t *testing.T) {
	if race.Enabled {
		t.Skip("the race detector drops pooled objects at random")
	}
	st := memstore.New(memstore.Options{})
	defer st.Close()
	be := newBackend(t, Config{}, st)
	ids := seed(t, be, 10, map[string]any{"counter": 1000, "user": "ada"})
	for _, tc := range []struct {
		name string
		work func(*Session)
	}{
		{"read", func(s *Session) { s.GetInt("counter") }},
		{"increment", increment},
	} {
		i := 0
		request := func() {
			s := be.LoadFromRequest(t.Context(), ids[i%len(ids)])
			i++
			tc.work(s)
			if err := be.StoreInResponse(s, nopSink{}); err != nil {
				t.Fatal(err)
			}
			be.Release(s)
		}
		if n := testing.AllocsPerRun(1000, request); n != 0 {
			t.Errorf("%s: %v allocations per request, want 0", tc.name, n)
		}
	}
}
