package kvsession

import (
	"bytes"
	"errors"
	"math"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/kvsession/kvsession/internal/msgp"
)

type profile struct {
	Name  string
	Age   int
	Tags  []string
	Since time.Time
}

// TestValuesRoundTrip stores values in one request and reads them in the
// next, as an application would.
func TestValuesRoundTrip(t *testing.T) {
	b := newBackend(t, Config{}, newFakeStore())
	when := time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
	in := map[string]any{
		"int": 300, "neg": -70000, "int64": int64(math.MinInt64), "uint": uint(7), "bigu": uint64(math.MaxUint64),
		"f64": 1.5, "f32": float32(2.5), "str": "héllo", "bytes": []byte{0, 1, 0xff}, "t": true, "f": false,
		"nil": nil, "time": when, "list": []int{1, 300}, "map": map[string]int{"a": 1},
		"profile": profile{Name: "ada", Age: 36, Tags: []string{"x"}, Since: when},
	}
	out, err := request(t, b, "", func(s *Session) {
		for k, v := range in {
			if err := s.Set(k, v); err != nil {
				t.Fatalf("Set(%s): %v", k, err)
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	id := out.cookieValue(t, "session")
	request(t, b, id, func(s *Session) {
		if n, ok := s.GetInt("int"); !ok || n != 300 {
			t.Errorf("GetInt(int) = %d %v", n, ok)
		}
		if n, ok := s.GetInt("neg"); !ok || n != -70000 {
			t.Errorf("GetInt(neg) = %d %v", n, ok)
		}
		if n, ok := s.GetInt64("int64"); !ok || n != math.MinInt64 {
			t.Errorf("GetInt64 = %d %v", n, ok)
		}
		if _, ok := s.GetInt("str"); ok {
			t.Error("GetInt on a string succeeded")
		}
		if _, ok := s.GetInt64("bigu"); ok {
			t.Error("GetInt64 on MaxUint64 succeeded")
		}
		if v, ok := s.GetFloat64("f32"); !ok || v != 2.5 {
			t.Errorf("GetFloat64(f32) = %v %v", v, ok)
		}
		if v, ok := s.GetString("str"); !ok || v != "héllo" {
			t.Errorf("GetString = %q %v", v, ok)
		}
		if v, ok := s.GetBytes("bytes"); !ok || !bytes.Equal(v, []byte{0, 1, 0xff}) {
			t.Errorf("GetBytes = %v %v", v, ok)
		}
		if v, ok := s.GetBool("t"); !ok || !v {
			t.Errorf("GetBool(t) = %v %v", v, ok)
		}
		if v, ok := s.GetBool("f"); !ok || v {
			t.Errorf("GetBool(f) = %v %v", v, ok)
		}
		// Field by field: the time comes back in the local zone, which
		// DeepEqual would count as a difference.
		var p profile
		if err := s.Decode("profile", &p); err != nil || p.Name != "ada" || p.Age != 36 ||
			!p.Since.Equal(when) || !reflect.DeepEqual(p.Tags, []string{"x"}) {
			t.Errorf("Decode(profile) = %+v %v", p, err)
		}
		var list []int
		if err := s.Decode("list", &list); err != nil || !reflect.DeepEqual(list, []int{1, 300}) {
			t.Errorf("Decode(list) = %v %v", list, err)
		}
		var u uint
		if err := s.Decode("uint", &u); err != nil || u != 7 {
			t.Errorf("Decode(uint) = %v %v", u, err)
		}
		if err := s.Decode("missing", &u); err != ErrKeyNotFound {
			t.Errorf("Decode(missing) = %v", err)
		}
		// Generic reads: one Go type per kind.
		want := map[string]any{
			"int": int64(300), "neg": int64(-70000), "int64": int64(math.MinInt64), "uint": int64(7),
			"bigu": uint64(math.MaxUint64), "f64": 1.5, "f32": float32(2.5), "str": "héllo",
			"bytes": []byte{0, 1, 0xff}, "t": true, "f": false, "nil": nil,
			"list": []any{int64(1), int64(300)}, "map": map[string]any{"a": int64(1)},
		}
		for k, w := range want {
			got, ok := s.Get(k)
			if !ok || !reflect.DeepEqual(got, w) {
				t.Errorf("Get(%s) = %#v %v, want %#v", k, got, ok, w)
			}
		}
		if got, _ := s.Get("time"); !got.(time.Time).Equal(when) {
			t.Errorf("Get(time) = %v", got)
		}
	})
}

func TestGetAfterSetMatchesGetAfterLoad(t *testing.T) {
	b := newBackend(t, Config{}, newFakeStore())
	request(t, b, "", func(s *Session) {
		s.Set("n", 5)
		if v, _ := s.Get("n"); v != int64(5) {
			t.Fatalf("Get after Set = %#v, want int64(5) as after a load", v)
		}
		// The value was copied in: changing the caller's slice changes nothing.
		buf := []byte("abc")
		s.Set("b", buf)
		buf[0] = 'X'
		if v, _ := s.GetBytes("b"); string(v) != "abc" {
			t.Fatalf("session aliased the caller's slice: %q", v)
		}
	})
}

func TestSetRejectsUnencodable(t *testing.T) {
	b := newBackend(t, Config{}, newFakeStore())
	request(t, b, "", func(s *Session) {
		if err := s.Set("ch", make(chan int)); err == nil {
			t.Fatal("Set(chan) succeeded")
		}
		if s.Has("ch") || s.Modified() {
			t.Fatal("failed Set changed the session")
		}
	})
}

// TestSetRefusesWhatGetCannotRead: a value nested deeper than the decoder
// reads used to be stored and then vanish (Get said absent). Set refuses
// it now, through both the generic containers and msgpack's reflection.
func TestSetRefusesWhatGetCannotRead(t *testing.T) {
	type node struct{ Next *node }
	nestList := func(n int) any {
		var v any = int64(1)
		for range n {
			v = []any{v}
		}
		return v
	}
	nestMap := func(n int) any {
		var v any = "x"
		for range n {
			v = map[string]any{"k": v}
		}
		return v
	}
	nestStruct := func(n int) any {
		var p *node
		for range n {
			p = &node{Next: p}
		}
		return p
	}
	for _, tc := range []struct {
		name  string
		value any
		ok    bool
	}{
		{"list at the limit", nestList(msgp.MaxDepth), true},
		{"list past it", nestList(msgp.MaxDepth + 1), false},
		{"map at the limit", nestMap(msgp.MaxDepth), true},
		{"map past it", nestMap(msgp.MaxDepth + 1), false},
		{"struct at the limit", nestStruct(msgp.MaxDepth), true},
		{"struct past it", nestStruct(msgp.MaxDepth + 1), false},
		{"struct inside a list past it", []any{nestStruct(msgp.MaxDepth)}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newBackend(t, Config{}, newFakeStore())
			out, err := request(t, b, "", func(s *Session) {
				s.SetInt("n", 1)
				err := s.Set("v", tc.value)
				if tc.ok != (err == nil) {
					t.Fatalf("Set = %v, want ok=%v", err, tc.ok)
				}
				if err != nil && !errors.Is(err, msgp.ErrTooDeep) {
					t.Fatalf("Set = %v, want msgp.ErrTooDeep", err)
				}
				if !tc.ok && s.Has("v") {
					t.Fatal("a refused value was kept")
				}
			})
			if err != nil {
				t.Fatal(err)
			}
			request(t, b, out.cookieValue(t, "session"), func(s *Session) {
				if _, ok := s.Get("v"); ok != tc.ok {
					t.Fatalf("Get after a load: ok=%v, want %v", ok, tc.ok)
				}
			})
		})
	}
}

// TestGenericContainersKeepExactValues: []any and map[string]any are
// written without reflection, which keeps a float32's bits (msgpack's
// reflection widens it and quiets a signalling NaN) and writes nil as nil.
func TestGenericContainersKeepExactValues(t *testing.T) {
	const snan32, snan64 = 0xff803000, 0x7ff0000000000001
	in := map[string]any{
		"list":     []any{math.Float32frombits(snan32), math.Float64frombits(snan64), int64(0)},
		"map":      map[string]any{"f": math.Float32frombits(snan32), "l": []any{math.Float32frombits(snan32)}},
		"nil list": []any(nil), "nil map": map[string]any(nil),
	}
	b := newBackend(t, Config{}, newFakeStore())
	out, _ := request(t, b, "", func(s *Session) {
		for k, v := range in {
			if err := s.Set(k, v); err != nil {
				t.Fatal(err)
			}
		}
	})
	request(t, b, out.cookieValue(t, "session"), func(s *Session) {
		for _, k := range []string{"list", "map"} {
			if got, ok := s.Get(k); !ok || !sameValue(in[k], got) {
				t.Errorf("Get(%q) = %#v, want %#v", k, got, in[k])
			}
		}
		list, _ := s.Get("list")
		if bits := math.Float32bits(list.([]any)[0].(float32)); bits != snan32 {
			t.Errorf("float32 in a list came back as %#x, want %#x", bits, snan32)
		}
		for _, k := range []string{"nil list", "nil map"} {
			if v, _ := s.Get(k); v != nil {
				t.Errorf("Get(%q) = %#v, want nil", k, v)
			}
		}
	})
}

func TestKeysDeleteClear(t *testing.T) {
	b := newBackend(t, Config{}, newFakeStore())
	request(t, b, "", func(s *Session) {
		s.Set("a", 1)
		s.Set("b", 2)
		s.Set("c", 3)
		s.Set("a", 4)
		s.Delete("b")
		s.Delete("nope")
		if got := s.Keys(); !reflect.DeepEqual(got, []string{"a", "c"}) {
			t.Fatalf("Keys = %v", got)
		}
		if n, _ := s.GetInt("a"); n != 4 {
			t.Fatalf("a = %d", n)
		}
		s.Clear()
		if s.Len() != 0 || !s.Modified() {
			t.Fatal("Clear")
		}
	})
}

// TestHostileValuesAreErrors feeds the codec values whose headers claim far
// more data than they hold. Each must fail fast without a large allocation.
func TestHostileValuesAreErrors(t *testing.T) {
	cases := map[string][]byte{
		"array32 of 4G":   {msgp.Array32, 0xff, 0xff, 0xff, 0xff, 0x01},
		"map32 of 4G":     {msgp.Map32, 0xff, 0xff, 0xff, 0xff, 0xa1, 'a', 0x01},
		"str32 of 4G":     {msgp.Str32, 0xff, 0xff, 0xff, 0xff, 'a'},
		"bin32 of 4G":     {msgp.Bin32, 0xff, 0xff, 0xff, 0xff, 'a'},
		"ext32 of 4G":     {0xc9, 0xff, 0xff, 0xff, 0xff, 1},
		"deep nesting":    bytes.Repeat([]byte{0x91}, 10000),
		"reserved code":   {0xc1},
		"truncated int64": {msgp.Int64, 1, 2},
		"trailing":        {0x01, 0x02},
		"empty":           {},
	}
	var dst struct{ A []int }
	for name, data := range cases {
		t.Run(name, func(t *testing.T) {
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			if _, err := (Msgpack{}).DecodeAny(data); err == nil {
				t.Error("DecodeAny succeeded")
			}
			if err := (Msgpack{}).Decode(data, &dst); err == nil {
				t.Error("Decode succeeded")
			}
			var anyDst any
			if err := (Msgpack{}).Decode(data, &anyDst); err == nil {
				t.Error("Decode into any succeeded")
			}
			runtime.ReadMemStats(&after)
			if grew := after.TotalAlloc - before.TotalAlloc; grew > 1<<20 {
				t.Errorf("allocated %d bytes decoding %d", grew, len(data))
			}
		})
	}
}

func TestValidateAcceptsWhatMsgpackWrites(t *testing.T) {
	values := []any{
		nil, true, 0, -1, 127, 128, -33, 1 << 40, uint64(math.MaxUint64), 1.25, float32(1),
		"", string(make([]byte, 40)), string(make([]byte, 300)), string(make([]byte, 70000)),
		make([]byte, 300), make([]int, 20), map[string]any{"a": []any{1, "b", nil}},
		time.Unix(1, 0), time.Unix(1<<33, 5), time.Unix(-1, 0), profile{Name: "x"},
	}
	for _, v := range values {
		enc, err := Msgpack{}.AppendEncode(nil, v)
		if err != nil {
			t.Fatalf("%T: %v", v, err)
		}
		if err := msgp.Validate(enc); err != nil {
			t.Errorf("msgp.Validate(%T % x...): %v", v, enc[:min(len(enc), 8)], err)
		}
		if _, err := (Msgpack{}).DecodeAny(enc); err != nil {
			t.Errorf("DecodeAny(%T): %v", v, err)
		}
	}
}

// TestDecodeIntoTypedDestinationsIsBounded covers inputs found by fuzzing:
// msgpack's reflection decoder reads an extension's payload as a container
// header when the destination is a map, and panics on map keys Go cannot
// hash. Each must be a plain error, with memory flat.
func TestDecodeIntoTypedDestinationsIsBounded(t *testing.T) {
	type withMap struct{ M map[string]any }
	dests := func() []any {
		return []any{new(map[string]any), new(map[any]any), new(map[string]int), new(map[int]int),
			new([]any), new([]int), new(withMap), new(any)}
	}
	cases := map[string][]byte{
		"timestamp read as map32":   []byte("\xd7\xff\xdf\xdf\xdf00000"),
		"extension read as map32":   []byte("\xd7\x05\xdf\xff\xff\xff\xff000"),
		"ext8 read as map32":        []byte("\xc7\x05\x07\xdf\xff\xff\xff\xff"),
		"array as map key":          {0x81, 0x91, 1, 1},
		"map as map key":            {0x81, 0x80, 1},
		"bytes as map key":          {0x81, msgp.Bin8, 1, 'x', 1},
		"nested timestamp as map32": []byte("\x81\xa1M\xd7\xff\xdf\xdf\xdf00000"),
		"nested extension as map32": []byte("\x81\xa1M\xd6\x01\xdf\xff\xff\xff"),
		"timestamp as fixmap":       []byte("\xd7\xff\x8a\xdd~~~g00"),
		"extension as fixmap":       []byte("\xd7\x05\x8a\xdd~~~g00"),
	}
	for name, data := range cases {
		t.Run(name, func(t *testing.T) {
			for _, dst := range dests() {
				var before, after runtime.MemStats
				runtime.ReadMemStats(&before)
				err := func() (err error) {
					defer func() {
						if r := recover(); r != nil {
							t.Fatalf("Decode into %T panicked: %v", dst, r)
						}
					}()
					return Msgpack{}.Decode(data, dst)
				}()
				runtime.ReadMemStats(&after)
				if grew := after.TotalAlloc - before.TotalAlloc; grew > 8<<20 {
					t.Errorf("Decode into %T allocated %d bytes for %d", dst, grew, len(data))
				}
				// A timestamp is valid data (a time for *any, a map holding
				// one for a map of any); the rest is not valid for any
				// destination, but bytes keys fit a map[any]any's
				// reflection path only to be refused there.
				if err == nil && !strings.Contains(name, "timestamp") && name != "bytes as map key" {
					t.Errorf("Decode into %T succeeded", dst)
				}
			}
		})
	}
}

// TestTimestampsThatLookLikeContainers: a timestamp whose first payload byte
// happens to be an array32 or map32 code must still decode as a time.
func TestTimestampsThatLookLikeContainers(t *testing.T) {
	type event struct {
		At   time.Time
		Tags map[string]any
	}
	times := []time.Time{
		time.Unix(1700000000, 936_000_000), // fixext8, payload starts 0xdf
		time.Unix(1700000000, 922_000_000), // fixext8, payload starts 0xdd
		time.Unix(0xdf000000+5, 0),         // fixext4 in 2088, payload starts 0xdf
		time.Unix(1700000000, 1),           // ordinary
	}
	for _, when := range times {
		for _, v := range []any{when, event{At: when, Tags: map[string]any{"a": "b"}}, []time.Time{when, when}} {
			enc, err := Msgpack{}.AppendEncode(nil, v)
			if err != nil {
				t.Fatal(err)
			}
			switch v.(type) {
			case time.Time:
				var got time.Time
				if err := (Msgpack{}).Decode(enc, &got); err != nil || !got.Equal(when) {
					t.Errorf("%v: got %v, %v", when, got, err)
				}
			case event:
				var got event
				if err := (Msgpack{}).Decode(enc, &got); err != nil || !got.At.Equal(when) || got.Tags["a"] != "b" {
					t.Errorf("%v in a struct: got %+v, %v", when, got, err)
				}
			default:
				var got []time.Time
				if err := (Msgpack{}).Decode(enc, &got); err != nil || len(got) != 2 || !got[1].Equal(when) {
					t.Errorf("%v in a slice: got %v, %v", when, got, err)
				}
			}
			if got, err := (Msgpack{}).DecodeAny(enc); err != nil {
				t.Errorf("DecodeAny(%T at %v): %v", v, when, err)
			} else if tm, ok := got.(time.Time); ok && !tm.Equal(when) {
				t.Errorf("DecodeAny = %v, want %v", tm, when)
			}
		}
	}
}

// TestContainersEncodeAsMsgpackDoes: []any and map[string]any are written
// by our own code, byte for byte as msgpack's encoder wrote them before,
// so records from either version decode alike, and Decode into []any or a
// struct's any field gives back the same Go types (int64 stays int64).
func TestContainersEncodeAsMsgpackDoes(t *testing.T) {
	when := time.Date(2026, 11, 24, 1, 2, 3, 4, time.UTC)
	var elems []any
	for _, n := range []int64{0, 1, 31, 32, 127, 128, 255, 256, 65535, 65536, math.MaxUint32, math.MaxUint32 + 1, math.MaxInt64,
		-1, -32, -33, -128, -129, -32768, -32769, math.MinInt32, math.MinInt32 - 1, math.MinInt64} {
		elems = append(elems, int(n), n, int32(n), int16(n), int8(n), uint(n), uint64(n), uint32(n), uint16(n), uint8(n))
	}
	for _, n := range []int{0, 31, 32, 255, 256, 65535, 65536} {
		elems = append(elems, strings.Repeat("s", n), bytes.Repeat([]byte{'b'}, n))
	}
	elems = append(elems, nil, true, false, 1.5, math.Inf(-1), float32(2.5), float32(math.NaN()), when,
		[]any(nil), []any{}, map[string]any(nil), map[string]any{}, []any{int64(7), []any{uint8(1)}},
		map[string]any{"k": map[string]any{"n": int64(-5)}}, make([]any, 15), make([]any, 16))
	for _, e := range elems {
		for _, v := range []any{[]any{e}, map[string]any{"key": e}} {
			want, err := msgpack.Marshal(v)
			if err != nil {
				t.Fatal(err)
			}
			got, err := Msgpack{}.AppendEncode(nil, v)
			if err != nil || !bytes.Equal(got, want) {
				t.Errorf("%T %#v:\n got % x, %v\nwant % x", e, v, got, err, want)
			}
		}
	}

	// And through a session: a Decode after a load gives msgpack's types.
	b := newBackend(t, Config{}, newFakeStore())
	out, _ := request(t, b, "", func(s *Session) {
		s.Set("list", []any{int64(7), uint16(3), 300})
		s.Set("map", map[string]any{"N": int64(7)})
	})
	request(t, b, out.cookieValue(t, "session"), func(s *Session) {
		var list []any
		if err := s.Decode("list", &list); err != nil || !reflect.DeepEqual(list, []any{int64(7), uint16(3), uint16(300)}) {
			t.Errorf("Decode(list) = %#v, %v", list, err)
		}
		var st struct{ N any }
		if err := s.Decode("map", &st); err != nil || st.N != int64(7) {
			t.Errorf("Decode(map) into a struct = %#v, %v", st, err)
		}
	})
}

// nilOnError is a Codec that returns no buffer with its error, which the
// Codec contract allows.
type nilOnError struct{ Msgpack }

func (nilOnError) AppendEncode(dst []byte, v any) ([]byte, error) {
	if _, ok := v.(chan int); ok {
		return nil, errBoom
	}
	return Msgpack{}.AppendEncode(dst, v)
}

func TestSetSurvivesACodecReturningNilOnError(t *testing.T) {
	b := newBackend(t, Config{Codec: nilOnError{}}, newFakeStore())
	out, err := request(t, b, "", func(s *Session) {
		s.SetString("a", "kept")
		if err := s.Set("bad", make(chan int)); !errors.Is(err, errBoom) {
			t.Fatalf("Set = %v", err)
		}
		s.SetString("b", "also kept")
	})
	if err != nil {
		t.Fatal(err)
	}
	request(t, b, out.cookieValue(t, "session"), func(s *Session) {
		a, _ := s.GetString("a")
		bv, _ := s.GetString("b")
		if a != "kept" || bv != "also kept" || s.Has("bad") {
			t.Fatalf("a=%q b=%q bad=%v", a, bv, s.Has("bad"))
		}
	})
}

// twoValues encodes itself as two msgpack values where one is expected.
type twoValues struct{}

func (twoValues) EncodeMsgpack(enc *msgpack.Encoder) error {
	if err := enc.EncodeInt(1); err != nil {
		return err
	}
	return enc.EncodeInt(2)
}

func TestSetRefusesAnEncoderWritingTwoValues(t *testing.T) {
	b := newBackend(t, Config{}, newFakeStore())
	request(t, b, "", func(s *Session) {
		for _, v := range []any{twoValues{}, []any{twoValues{}}} {
			if err := s.Set("v", v); !errors.Is(err, msgp.ErrTrailing) {
				t.Errorf("Set(%#v) = %v, want msgp.ErrTrailing", v, err)
			}
		}
	})
}

func FuzzMsgpackDecode(f *testing.F) {
	for _, v := range []any{1, -300, "s", []byte{0}, 1.5, true, nil, []any{1, "a"}, map[string]any{"k": []int{1}},
		time.Unix(1700000000, 936_000_000), profile{Name: "x", Tags: []string{"t"}}} {
		enc, _ := Msgpack{}.AppendEncode(nil, v)
		f.Add(enc)
	}
	f.Add([]byte("\xd7\xff\xdf\xdf\xdf00000"))
	f.Add([]byte{0x81, 0x91, 1, 1})
	f.Fuzz(func(t *testing.T, data []byte) {
		type withMap struct {
			M map[string]any
			L []int
			T time.Time
		}
		for _, dst := range []any{new(any), new(map[string]any), new(map[any]any), new(map[string]int),
			new([]any), new([]string), new(withMap), new(profile), new(string), new(int), new(time.Time)} {
			_ = Msgpack{}.Decode(data, dst)
		}
		if v, err := (Msgpack{}).DecodeAny(data); err == nil {
			// What decodes must encode and decode to the same thing.
			enc, err := Msgpack{}.AppendEncode(nil, v)
			if err != nil {
				t.Fatalf("re-encoding %#v: %v", v, err)
			}
			if _, err := (Msgpack{}).DecodeAny(enc); err != nil {
				t.Fatalf("re-decoding %#v: %v", v, err)
			}
		}
	})
}
