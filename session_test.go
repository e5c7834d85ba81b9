package kvsession

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"
)

// TestResetForgetsEveryField fills every field of a pooled session's
// groups with something, releases it, and checks that nothing is left for
// the next request but empty buffers: a field added to a group without a
// reset of its own fails here, not in production.
func TestResetForgetsEveryField(t *testing.T) {
	s := &Session{}
	v := reflect.ValueOf(s).Elem()
	for i := range v.NumField() {
		f := v.Type().Field(i)
		if !f.Anonymous {
			continue // mu, c and e outlive requests
		}
		fill(t, v.Field(i), f.Name)
	}
	plain := s.plain
	s.reset()
	for i := range v.NumField() {
		if f := v.Type().Field(i); f.Anonymous {
			mustBeEmpty(t, v.Field(i), f.Name)
		}
	}
	for i, c := range plain[:cap(plain)] {
		if c != 0 {
			t.Fatalf("byte %d of the last cookie's plaintext survived reset", i)
		}
	}
}

// fill gives every field of v a non-zero value, through unexported fields.
func fill(t *testing.T, v reflect.Value, path string) {
	v = reflect.NewAt(v.Type(), v.Addr().UnsafePointer()).Elem()
	switch v.Kind() {
	case reflect.Struct:
		for i := range v.NumField() {
			fill(t, v.Field(i), path+"."+v.Type().Field(i).Name)
		}
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Int, reflect.Int64:
		v.SetInt(7)
	case reflect.Uint8, reflect.Uint32, reflect.Uint64:
		v.SetUint(1)
	case reflect.String:
		v.SetString("x")
	case reflect.Slice:
		v.Set(reflect.MakeSlice(v.Type(), 3, 8))
		for i := range 3 {
			fill(t, v.Index(i), path)
		}
	case reflect.Array:
		for i := range v.Len() {
			fill(t, v.Index(i), path)
		}
	case reflect.Interface:
		switch {
		case v.Type() == reflect.TypeFor[error]():
			v.Set(reflect.ValueOf(errors.New("x")))
		case v.Type() == reflect.TypeFor[context.Context]():
			v.Set(reflect.ValueOf(context.Background()))
		default:
			t.Fatalf("%s: teach fill about %s", path, v.Type())
		}
	default:
		t.Fatalf("%s: teach fill about %s", path, v.Type())
	}
}

// mustBeEmpty fails unless v is its zero value, slices allowed to keep
// their capacity with no elements.
func mustBeEmpty(t *testing.T, v reflect.Value, path string) {
	t.Helper()
	v = reflect.NewAt(v.Type(), v.Addr().UnsafePointer()).Elem()
	switch v.Kind() {
	case reflect.Struct:
		for i := range v.NumField() {
			mustBeEmpty(t, v.Field(i), path+"."+v.Type().Field(i).Name)
		}
	case reflect.Slice:
		if v.Len() != 0 {
			t.Errorf("%s: %d elements survived reset", path, v.Len())
		}
	default:
		if !v.IsZero() {
			t.Errorf("%s survived reset: %v", path, v.Interface())
		}
	}
}

// Clear then Set keeps the id, so it must keep the creation time: the same
// id must not get a fresh AbsoluteTimeout.
func TestClearKeepsTheAbsoluteDeadline(t *testing.T) {
	b, clk, _ := rvSetup(t, Config{AbsoluteTimeout: time.Hour, MaxAge: 2 * time.Hour})
	out, _ := request(t, b, "", func(s *Session) { s.Set("n", 1) })
	id := out.cookieValue(t, "session")
	clk.advance(50 * time.Minute)
	out, _ = request(t, b, id, func(s *Session) { s.Clear(); s.Set("flash", "bye") })
	if v, ok := out.cookies["session"]; ok {
		t.Logf("cookie after clear+set: %s", v)
	}
	clk.advance(30 * time.Minute) // 80 min after creation
	alive := false
	request(t, b, id, func(s *Session) { alive = s.Has("flash") })
	if alive {
		t.Error("same id alive 80min after creation with AbsoluteTimeout 1h")
	}
}

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
