package kvsession

import (
	"bytes"
	"encoding/json"
	"math"
	"strings"
	"testing"
)

// jsonCodec is a Codec other than Msgpack, so the typed setters take their
// fallback through Set.
type jsonCodec struct{}

func (jsonCodec) AppendEncode(dst []byte, v any) ([]byte, error) {
	b, err := json.Marshal(v)
	return append(dst, b...), err
}
func (jsonCodec) Decode(data []byte, dst any) error { return json.Unmarshal(data, dst) }
func (jsonCodec) DecodeAny(data []byte) (any, error) {
	var v any
	err := json.Unmarshal(data, &v)
	return v, err
}

// TestTypedSetters: SetInt, SetInt64, SetString and SetBytes store exactly
// what Set stores, with the default codec and with another.
func TestTypedSetters(t *testing.T) {
	big := strings.Repeat("x", 70000)
	for _, codec := range []Codec{Msgpack{}, jsonCodec{}} {
		for _, tc := range []struct {
			name  string
			typed func(s *Session) error
			boxed any
		}{
			{"SetInt small", func(s *Session) error { return s.SetInt("k", 7) }, 7},
			{"SetInt negative", func(s *Session) error { return s.SetInt("k", -70000) }, -70000},
			{"SetInt64 max", func(s *Session) error { return s.SetInt64("k", math.MaxInt64) }, int64(math.MaxInt64)},
			{"SetInt64 min", func(s *Session) error { return s.SetInt64("k", math.MinInt64) }, int64(math.MinInt64)},
			{"SetString", func(s *Session) error { return s.SetString("k", "héllo") }, "héllo"},
			{"SetString empty", func(s *Session) error { return s.SetString("k", "") }, ""},
			{"SetString 70 KB", func(s *Session) error { return s.SetString("k", big) }, big},
			{"SetBytes", func(s *Session) error { return s.SetBytes("k", []byte{0, 1, 255}) }, []byte{0, 1, 255}},
			{"SetBytes empty", func(s *Session) error { return s.SetBytes("k", []byte{}) }, []byte{}},
		} {
			t.Run(fmtCodec(codec)+"/"+tc.name, func(t *testing.T) {
				encoded := func(set func(s *Session) error) []byte {
					b := newBackend(t, Config{Codec: codec}, newFakeStore())
					var raw []byte
					request(t, b, "", func(s *Session) {
						s.Set("other", 1)
						if err := set(s); err != nil {
							t.Fatal(err)
						}
						r, ok := s.raw("k")
						if !ok || !s.Modified() {
							t.Fatalf("value not stored (ok=%v) or session not modified", ok)
						}
						raw = bytes.Clone(r)
					})
					return raw
				}
				typed := encoded(tc.typed)
				boxed := encoded(func(s *Session) error { return s.Set("k", tc.boxed) })
				if !bytes.Equal(typed, boxed) {
					t.Fatalf("typed setter stored %x, Set stores %x", typed, boxed)
				}
			})
		}
	}
}

func fmtCodec(c Codec) string {
	if _, ok := c.(Msgpack); ok {
		return "msgpack"
	}
	return "json"
}

// TestTypedSettersDoNotAllocate: with the default codec, storing an int or
// a string into a loaded session costs no allocation (Set boxes them).
func TestTypedSettersDoNotAllocate(t *testing.T) {
	b := newBackend(t, Config{}, newFakeStore())
	s := b.LoadFromRequest(t.Context(), nil)
	defer b.Release(s)
	s.SetInt("n", 1) // the first use loads the session and sizes its buffers
	s.SetString("s", "warm")
	s.SetBytes("b", []byte("warm"))
	payload := []byte("payload")
	for name, f := range map[string]func(){
		"SetInt":    func() { s.SetInt("n", 100000) },
		"SetString": func() { s.SetString("s", "value") },
		"SetBytes":  func() { s.SetBytes("b", payload) },
	} {
		// Reset the arena the setters append to, as a new request would.
		if n := testing.AllocsPerRun(100, func() { s.arena = s.arena[:0]; f() }); n != 0 {
			t.Errorf("%s: %v allocations per call", name, n)
		}
	}
}
