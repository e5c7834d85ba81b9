package kvsession

import (
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"log/slog"
	"maps"
	"math"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kvsession/kvsession/internal/msgp"
	"github.com/kvsession/kvsession/store"
	"github.com/kvsession/kvsession/store/badgerstore"
	"github.com/kvsession/kvsession/store/memstore"
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
			continue // mu, c, e and idRaw outlive requests (newID wipes idRaw)
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

// fuzzActions is how many things FuzzServerCookieHeader does with the
// session: increment, read, destroy, renew the id and increment, clear.
const fuzzActions = 5

// fuzzInput hands out the fuzzer's bytes as the pieces of a session;
// past the end it gives zeros, so every input describes some session.
type fuzzInput struct{ b []byte }

func (in *fuzzInput) byte() byte {
	if len(in.b) == 0 {
		return 0
	}
	c := in.b[0]
	in.b = in.b[1:]
	return c
}

func (in *fuzzInput) bytes(n int) []byte {
	n = min(n, len(in.b))
	p := append(make([]byte, 0, n), in.b[:n]...)
	in.b = in.b[n:]
	return p
}

func (in *fuzzInput) uint64() uint64 {
	var p [8]byte
	copy(p[:], in.bytes(8))
	return binary.BigEndian.Uint64(p[:])
}

func (in *fuzzInput) string() string { return string(in.bytes(int(in.byte() % 48))) }

// value returns a value of one of the kinds a session stores, and what Get
// must give back for it: one Go type per MessagePack kind (see Msgpack).
func (in *fuzzInput) value(depth int) (v, want any) {
	kinds := byte(14)
	if depth >= 3 {
		kinds = 12 // no deeper containers
	}
	switch in.byte() % kinds {
	case 0:
		n := int(in.uint64())
		return n, int64(n)
	case 1:
		n := int8(in.byte())
		return n, int64(n)
	case 2:
		n := int32(in.uint64())
		return n, int64(n)
	case 3:
		u := in.uint64()
		if u <= math.MaxInt64 {
			return u, int64(u)
		}
		return u, u
	case 4:
		u := uint16(in.uint64())
		return u, int64(u)
	case 5:
		s := in.string()
		return s, s
	case 6:
		b := in.bytes(int(in.byte() % 64))
		return b, b
	case 7:
		x := math.Float64frombits(in.uint64())
		return x, x
	case 8:
		x := math.Float32frombits(uint32(in.uint64()))
		return x, x
	case 9:
		v := in.byte()&1 == 1
		return v, v
	case 10:
		// Seconds within ±2^50, far beyond any date a session holds but
		// inside what time.Time represents exactly.
		sec := int64(in.uint64()) >> 13
		t := time.Unix(sec, int64(in.uint64()%1e9))
		return t, t
	case 11:
		return nil, nil
	case 12:
		n := int(in.byte() % 5)
		l, w := make([]any, n), make([]any, n)
		for i := range l {
			l[i], w[i] = in.value(depth + 1)
		}
		return l, w
	}
	n := int(in.byte() % 5)
	m, w := make(map[string]any, n), make(map[string]any, n)
	for range n {
		k := in.string()
		m[k], w[k] = in.value(depth + 1)
	}
	return m, w
}

// fuzzSession is what an input makes a request do to a new session.
type fuzzSession struct {
	keys    []string // in the order first set
	values  map[string]any
	want    map[string]any // what Get returns
	user    string
	maxAge  time.Duration // 0: Config.MaxAge
	browser int           // 0: as configured, 1: browser-session cookie, 2: persistent
}

func newFuzzSession(data []byte, limit time.Duration) *fuzzSession {
	in := &fuzzInput{b: data}
	fs := &fuzzSession{values: map[string]any{}, want: map[string]any{}}
	for ops := in.byte() % 24; ops > 0; ops-- {
		switch op := in.byte(); {
		case op < 200:
			k := in.string()
			if _, ok := fs.values[k]; !ok {
				fs.keys = append(fs.keys, k)
			}
			fs.values[k], fs.want[k] = in.value(0)
		case op < 220 && len(fs.keys) > 0:
			i := int(in.byte()) % len(fs.keys)
			delete(fs.values, fs.keys[i])
			delete(fs.want, fs.keys[i])
			fs.keys = slices.Delete(fs.keys, i, i+1)
		case op < 235:
			fs.user = in.string()
		case op < 245:
			fs.maxAge = time.Second + time.Duration(in.uint64()%uint64(limit-time.Second+1))
			fs.browser = 2
		default:
			fs.browser = 1 + int(in.byte()&1)
		}
	}
	return fs
}

// apply does to s what the input asked for.
func (fs *fuzzSession) apply(t *testing.T, s *Session) {
	t.Helper()
	for _, k := range fs.keys {
		if err := s.Set(k, fs.values[k]); err != nil {
			t.Fatalf("Set(%q, %#v): %v", k, fs.values[k], err)
		}
	}
	if err := s.SetUser(fs.user); err != nil {
		t.Fatal(err)
	}
	if fs.maxAge != 0 {
		if err := s.SetMaxAge(fs.maxAge); err != nil {
			t.Fatal(err)
		}
	}
	if fs.browser != 0 {
		if err := s.SetBrowserSession(fs.browser == 1); err != nil {
			t.Fatal(err)
		}
	}
}

// check compares what s holds with what the input set.
func (fs *fuzzSession) check(t *testing.T, s *Session) {
	t.Helper()
	if got := s.Keys(); !slices.Equal(got, fs.keys) {
		t.Fatalf("keys %q, want %q", got, fs.keys)
	}
	for _, k := range fs.keys {
		got, ok := s.Get(k)
		if !ok || !sameValue(fs.want[k], got) {
			t.Fatalf("Get(%q) = %#v (%T), %v; want %#v (%T)", k, got, got, ok, fs.want[k], fs.want[k])
		}
		// Typed reads give back the exact type stored.
		v := fs.values[k]
		if v == nil {
			continue
		}
		switch v.(type) {
		case []any, map[string]any:
			continue
		}
		dst := reflect.New(reflect.TypeOf(v))
		if err := s.Decode(k, dst.Interface()); err != nil || !sameValue(normalize(v), normalize(dst.Elem().Interface())) {
			t.Fatalf("Decode(%q) into %T = %#v, %v; want %#v", k, v, dst.Elem().Interface(), err, v)
		}
	}
	if got := s.User(); got != fs.user {
		t.Fatalf("user %q, want %q", got, fs.user)
	}
}

// normalize makes a scalar comparable by sameValue.
func normalize(v any) any {
	switch x := v.(type) {
	case int:
		return int64(x)
	case int8:
		return int64(x)
	case int32:
		return int64(x)
	case uint16:
		return int64(x)
	case uint64:
		return x
	}
	return v
}

// FuzzSessionRoundTrip builds a session from the input (values of every
// kind, nested containers, a bound user, its own max-age or cookie kind)
// and checks that it survives encode→decode unchanged, byte for byte, and
// a save and load through the memory and Badger stores.
func FuzzSessionRoundTrip(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{3, 0, 1, 'a', 0, 1, 2, 3, 4, 5, 6, 7, 8, 1, 1, 'b', 5, 3, 'x', 'y', 'z', 230, 2, 'u', '1'})
	f.Add([]byte{6, 0, 1, 'k', 13, 2, 1, 'a', 12, 2, 7, 0x7f, 0xf8, 0, 0, 0, 0, 0, 1, 10, 1, 2, 3, 4, 5, 6, 7, 8,
		1, 2, 3, 4, 5, 6, 7, 8, 1, 'b', 6, 0, 240, 0, 0, 0, 0, 0, 1, 0, 0, 250, 1, 210, 0, 0, 2, 'k', '2', 8, 0x7f, 0xc0, 0, 1})
	f.Add(bytes.Repeat([]byte{2, 0, 3, 'k', 'e', 'y', 12, 4, 11, 9, 1, 3, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, 3))
	const limit = 30 * 24 * time.Hour
	cfg := Config{MaxAge: time.Hour, MaxAgeLimit: limit, Logger: slog.New(slog.DiscardHandler)}
	mem := memstore.New(memstore.Options{})
	f.Cleanup(func() { mem.Close() })
	bdg, err := badgerstore.Open(badgerstore.Options{InMemory: true, GCInterval: -1, Logger: quietBadger{}})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { bdg.Close() })
	backends := map[string]*ServerBackend{"memory": newBackend(f, cfg, mem), "badger": newBackend(f, cfg, bdg)}

	f.Fuzz(func(t *testing.T, data []byte) {
		fs := newFuzzSession(data, limit)
		b := backends["memory"]
		ctx := context.Background()

		// Encode and decode, without a store.
		s := b.LoadFromRequest(ctx, nil)
		fs.apply(t, s)
		fs.check(t, s)
		s.created, s.extended = 1_700_000_000_123_456_789, 1_700_000_000_987_654_321
		rec := s.encode(nil)
		back := b.LoadFromRequest(ctx, nil)
		back.loaded = true
		if err := back.decode(rec); err != nil {
			t.Fatalf("decoding what encode wrote: %v\n% x", err, rec)
		}
		fs.check(t, back)
		if back.created != s.created || back.extended != s.extended || back.maxAge != s.maxAge || back.cookieMode != s.cookieMode {
			t.Fatalf("bookkeeping changed: %d %d %d %d, want %d %d %d %d", back.created, back.extended, back.maxAge, back.cookieMode,
				s.created, s.extended, s.maxAge, s.cookieMode)
		}
		if again := back.encode(nil); !bytes.Equal(again, rec) {
			t.Fatalf("re-encoding differs:\n% x\n% x", rec, again)
		}
		b.Release(s)
		b.Release(back)

		// Saved, then loaded by a later request and by id.
		for _, name := range []string{"memory", "badger"} {
			b := backends[name]
			out, err := requestHeader(t, b, nil, func(s *Session) { fs.apply(t, s) })
			if err != nil {
				t.Fatalf("%s: save: %v", name, err)
			}
			if len(fs.keys) == 0 && fs.user == "" {
				if len(out.cookies) != 0 {
					t.Fatalf("%s: an empty session set a cookie: %v", name, out.cookies)
				}
				continue
			}
			line := out.cookies["session"]
			id := out.cookieValue(t, "session")
			switch wantMaxAge := fs.maxAge; {
			case fs.browser == 1:
				if strings.Contains(line, "Max-Age") {
					t.Fatalf("%s: browser-session cookie with a lifetime: %q", name, line)
				}
			case wantMaxAge != 0:
				if secs := int64((wantMaxAge + time.Second - 1) / time.Second); !strings.Contains(line, "; Max-Age="+strconv.FormatInt(secs, 10)+";") {
					t.Fatalf("%s: cookie %q, want Max-Age=%d", name, line, secs)
				}
			default:
				if !strings.Contains(line, "; Max-Age=3600;") {
					t.Fatalf("%s: cookie %q, want the configured Max-Age", name, line)
				}
			}
			if _, err := request(t, b, id, func(s *Session) {
				fs.check(t, s)
				if s.Created().IsZero() {
					t.Fatal("no creation time after a save")
				}
			}); err != nil {
				t.Fatalf("%s: load: %v", name, err)
			}
			got, err := b.Get(ctx, id)
			if err != nil || len(got) != len(fs.keys) {
				t.Fatalf("%s: Get by id: %d values, %v; want %d", name, len(got), err, len(fs.keys))
			}
			for k, w := range fs.want {
				if !sameValue(w, got[k]) {
					t.Fatalf("%s: Get by id [%q] = %#v, want %#v", name, k, got[k], w)
				}
			}
			if err := b.Delete(ctx, id); err != nil {
				t.Fatal(err)
			}
		}
	})
}

// TestSetOfUnencodableValues: a value the codec cannot encode, at the top
// or deep inside, is an error from Set, never a panic, and leaves the
// session as it was, still saveable.
func TestSetOfUnencodableValues(t *testing.T) {
	type withPtr struct {
		Name string
		P    uintptr
	}
	for name, v := range map[string]any{
		"uintptr":             uintptr(1),
		"struct field":        withPtr{"x", 1},
		"pointer to struct":   &withPtr{"x", 1},
		"slice element":       []any{1, uintptr(1)},
		"map value":           map[string]any{"a": 1, "b": uintptr(1)},
		"nested":              map[string]any{"a": []any{map[string]any{"b": uintptr(1)}}},
		"func":                func() {},
		"channel":             make(chan int),
		"unsafe-ish uintptrs": []uintptr{1, 2},
	} {
		t.Run(name, func(t *testing.T) {
			b := newBackend(t, Config{}, memstore.New(memstore.Options{}))
			out, err := request(t, b, "", func(s *Session) {
				s.SetString("kept", "yes")
				var setErr error
				func() {
					defer func() {
						if p := recover(); p != nil {
							t.Fatalf("Set panicked: %v", p)
						}
					}()
					setErr = s.Set("bad", v)
				}()
				if setErr == nil {
					t.Fatal("Set of an unencodable value gave no error")
				}
				if s.Has("bad") || s.Len() != 1 {
					t.Fatalf("after a failed Set: has bad %v, %d values", s.Has("bad"), s.Len())
				}
				if err := s.SetInt("after", 2); err != nil {
					t.Fatal(err)
				}
			})
			if err != nil {
				t.Fatalf("the response: %v", err)
			}
			request(t, b, out.cookieValue(t, "session"), func(s *Session) {
				if v, _ := s.GetString("kept"); v != "yes" || s.Has("bad") {
					t.Fatalf("saved session: kept=%q, bad present %v", v, s.Has("bad"))
				}
				if n, _ := s.GetInt("after"); n != 2 {
					t.Fatalf("saved session: after=%d", n)
				}
			})
		})
	}
}

// FuzzSetNeverPanics: whatever value a handler builds, of whatever types
// nested however deep, Set gives an error or stores it; it never panics,
// and the session stays saveable.
func FuzzSetNeverPanics(f *testing.F) {
	for _, seed := range [][]byte{{0}, {1, 2}, {5, 6, 6}, {7, 3, 9, 2, 8}, {9, 9, 9, 0, 1, 2, 3}} {
		f.Add(seed)
	}
	b := newBackend(f, Config{}, memstore.New(memstore.Options{}))
	f.Fuzz(func(t *testing.T, data []byte) {
		in := &fuzzInput{b: data}
		v := anyValue(in, 0)
		request(t, b, "", func(s *Session) {
			defer func() {
				if p := recover(); p != nil {
					t.Fatalf("Set(%#v) panicked: %v", v, p)
				}
			}()
			if err := s.Set("v", v); err == nil && !s.Has("v") {
				t.Fatal("Set gave no error and stored nothing")
			}
			if err := s.SetInt("n", 1); err != nil {
				t.Fatal(err)
			}
		})
	})
}

// anyValue builds a value of a type chosen by in, encodable or not.
func anyValue(in *fuzzInput, depth int) any {
	type inner struct {
		A any
		P uintptr
	}
	type plain struct {
		S string
		N int
	}
	switch k := in.byte() % 12; {
	case depth > 3 || k == 0:
		return int64(in.uint64())
	case k == 1:
		return uintptr(in.byte())
	case k == 2:
		return in.string()
	case k == 3:
		return []any{anyValue(in, depth+1), anyValue(in, depth+1)}
	case k == 4:
		return map[string]any{in.string(): anyValue(in, depth+1)}
	case k == 5:
		return inner{A: anyValue(in, depth+1), P: uintptr(in.byte())}
	case k == 6:
		return &plain{S: in.string(), N: int(in.byte())}
	case k == 7:
		return func() {}
	case k == 8:
		return make(chan int)
	case k == 9:
		return complex(float64(in.byte()), 1)
	case k == 10:
		return []uintptr{uintptr(in.byte())}
	default: // keys of a map[any]any must be hashable: a uintptr is
		return map[any]any{uintptr(in.byte()): anyValue(in, depth+1), in.string(): anyValue(in, depth+1)}
	}
}

// browser carries a backend's cookies from one request to the next, as a
// browser would: what a response sets it sends back, what it expires it
// forgets. It works the same for the server and the cookie backend.
type browser struct {
	t   *testing.T
	b   Backend
	jar map[string]string
}

func newBrowser(t *testing.T, b Backend) *browser {
	return &browser{t: t, b: b, jar: map[string]string{}}
}

// do runs one request with fn as its handler.
func (br *browser) do(fn func(s *Session)) {
	br.t.Helper()
	var h []byte
	if len(br.jar) > 0 {
		h = header(sortedKeys(br.jar), br.jar)
	}
	out, err := requestHeader(br.t, br.b, h, fn)
	if err != nil {
		br.t.Fatal(err)
	}
	for _, name := range out.expired() {
		delete(br.jar, name)
	}
	maps.Copy(br.jar, out.live(br.t))
}

// bothBackends opens each backend afresh for a test.
var bothBackends = []struct {
	name string
	open func(t *testing.T) Backend
}{
	{"server", func(t *testing.T) Backend { return newBackend(t, Config{}, newFakeStore()) }},
	{"cookie", func(t *testing.T) Backend { return newCookieBackend(t, Config{}, newClock()) }},
}

type popPoint struct{ X, Y int }

func TestPopReturnsTheValueOnce(t *testing.T) {
	tests := []struct {
		name string
		set  func(s *Session) error
		pop  func(s *Session) (any, bool)
		want any
	}{
		{"Pop", func(s *Session) error { return s.Set("k", "v") },
			func(s *Session) (any, bool) { return s.Pop("k") }, "v"},
		{"PopString", func(s *Session) error { return s.SetString("k", "token") },
			func(s *Session) (any, bool) { return s.PopString("k") }, "token"},
		{"PopInt", func(s *Session) error { return s.SetInt("k", 42) },
			func(s *Session) (any, bool) { return s.PopInt("k") }, 42},
		{"PopInt64", func(s *Session) error { return s.SetInt64("k", -1<<40) },
			func(s *Session) (any, bool) { return s.PopInt64("k") }, int64(-1 << 40)},
		{"PopBool", func(s *Session) error { return s.Set("k", true) },
			func(s *Session) (any, bool) { return s.PopBool("k") }, true},
		{"PopFloat64", func(s *Session) error { return s.Set("k", 2.5) },
			func(s *Session) (any, bool) { return s.PopFloat64("k") }, 2.5},
		{"PopBytes", func(s *Session) error { return s.SetBytes("k", []byte{1, 2}) },
			func(s *Session) (any, bool) { return s.PopBytes("k") }, []byte{1, 2}},
		{"PopDecode", func(s *Session) error { return s.Set("k", popPoint{3, 4}) },
			func(s *Session) (any, bool) {
				var p popPoint
				err := s.PopDecode("k", &p)
				return p, err == nil
			}, popPoint{3, 4}},
	}
	for _, be := range bothBackends {
		for _, tc := range tests {
			t.Run(be.name+"/"+tc.name, func(t *testing.T) {
				br := newBrowser(t, be.open(t))
				br.do(func(s *Session) {
					if err := tc.set(s); err != nil {
						t.Fatal(err)
					}
					if err := s.Set("other", 1); err != nil {
						t.Fatal(err)
					}
				})
				br.do(func(s *Session) {
					got, ok := tc.pop(s)
					if !ok || !sameValue(tc.want, got) {
						t.Fatalf("first pop: %#v, %v; want %#v", got, ok, tc.want)
					}
					if !s.Modified() {
						t.Error("a pop did not mark the session modified")
					}
					if got, ok := tc.pop(s); ok {
						t.Fatalf("second pop in the same request: %#v", got)
					}
				})
				br.do(func(s *Session) {
					if s.Has("k") {
						t.Fatal("the popped value came back on the next request")
					}
					if n, _ := s.GetInt("other"); n != 1 {
						t.Fatalf("the other value is %d", n)
					}
				})
			})
		}
	}
}

func TestPopOfAnotherTypeLeavesTheValue(t *testing.T) {
	tests := []struct {
		name  string
		value any
		pop   func(s *Session) bool
	}{
		{"PopInt of a string", "x", func(s *Session) bool { _, ok := s.PopInt("k"); return ok }},
		{"PopInt64 of a float", 1.5, func(s *Session) bool { _, ok := s.PopInt64("k"); return ok }},
		{"PopString of an int", int64(7), func(s *Session) bool { _, ok := s.PopString("k"); return ok }},
		{"PopBool of an int", int64(1), func(s *Session) bool { _, ok := s.PopBool("k"); return ok }},
		{"PopFloat64 of a string", "1.5", func(s *Session) bool { _, ok := s.PopFloat64("k"); return ok }},
		{"PopBytes of a string", "ab", func(s *Session) bool { _, ok := s.PopBytes("k"); return ok }},
		{"PopDecode into an int", "x", func(s *Session) bool { var n int; return s.PopDecode("k", &n) == nil }},
		{"Pop of an absent key", nil, func(s *Session) bool { _, ok := s.Pop("absent"); return ok }},
	}
	for _, be := range bothBackends {
		for _, tc := range tests {
			t.Run(be.name+"/"+tc.name, func(t *testing.T) {
				br := newBrowser(t, be.open(t))
				br.do(func(s *Session) {
					if err := s.Set("k", tc.value); err != nil {
						t.Fatal(err)
					}
				})
				br.do(func(s *Session) {
					if tc.pop(s) {
						t.Fatal("the pop succeeded")
					}
					if s.Modified() {
						t.Error("a failed pop marked the session modified")
					}
				})
				br.do(func(s *Session) {
					if v, ok := s.Get("k"); !ok || !sameValue(tc.value, v) {
						t.Fatalf("after the failed pop: %#v, %v; want %#v", v, ok, tc.value)
					}
				})
			})
		}
	}
}

func TestPopDecodeOfAnAbsentKey(t *testing.T) {
	b := newBackend(t, Config{}, newFakeStore())
	if _, err := request(t, b, "", func(s *Session) {
		var p popPoint
		if err := s.PopDecode("absent", &p); !errors.Is(err, ErrKeyNotFound) {
			t.Fatalf("PopDecode: %v, want ErrKeyNotFound", err)
		}
	}); err != nil {
		t.Fatal(err)
	}
}

// addFlashes adds fs in order, failing the test on an error.
func addFlashes(t *testing.T, s *Session, fs ...Flash) {
	t.Helper()
	for _, f := range fs {
		var err error
		if f.Kind == DefaultFlashKind {
			err = s.AddFlash(f.Message) // the default kind
		} else {
			err = s.AddFlash(f.Message, f.Kind)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

// TestFlashesAreShownOnce runs a few requests per case; each handler adds
// some flashes, reads them or not, and says what Flashes must return.
func TestFlashesAreShownOnce(t *testing.T) {
	type step struct {
		add  []Flash
		read bool
		want []Flash                        // what Flashes returns when read, after add
		also func(t *testing.T, s *Session) // before the read
		then func(t *testing.T, s *Session) // after it
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{"added, read on the next request, then gone", []step{
			{add: []Flash{flashSaved, flashWrong}},
			{read: true, want: []Flash{flashSaved, flashWrong}},
			{read: true, want: nil},
		}},
		{"a request that adds but does not read keeps them", []step{
			{add: []Flash{flashSaved}},
			{add: []Flash{flashWrong}},
			{read: true, want: []Flash{flashSaved, flashWrong}},
			{read: true, want: nil},
		}},
		{"a request that neither adds nor reads keeps them", []step{
			{add: []Flash{flashSaved}},
			{also: func(t *testing.T, s *Session) { s.Set("n", 1) }},
			{read: true, want: []Flash{flashSaved}},
		}},
		{"read on the request that added them", []step{
			{add: []Flash{flashSaved}, read: true, want: []Flash{flashSaved}},
			{read: true, want: nil},
		}},
		{"added after reading, read on the next request", []step{
			{add: []Flash{flashSaved}},
			{read: true, want: []Flash{flashSaved}, then: func(t *testing.T, s *Session) { addFlashes(t, s, flashLater) }},
			{read: true, want: []Flash{flashLater}},
		}},
		{"apart from the values", []step{
			{add: []Flash{flashSaved}, also: func(t *testing.T, s *Session) {
				if s.Len() != 0 || len(s.Keys()) != 0 || len(s.Values()) != 0 || s.Has("") || s.Has("Saved.") {
					t.Errorf("flashes seen as values: len %d keys %q values %v", s.Len(), s.Keys(), s.Values())
				}
				s.Delete("")
				s.Delete(DefaultFlashKind)
			}},
			{read: true, want: []Flash{flashSaved}},
		}},
		{"Clear drops them", []step{
			{add: []Flash{flashSaved}},
			{also: func(t *testing.T, s *Session) { s.Set("n", 1); s.Clear() }},
			{read: true, want: nil},
		}},
		{"Destroy drops them", []step{
			{add: []Flash{flashSaved}},
			{also: func(t *testing.T, s *Session) {
				if err := s.Destroy(); err != nil {
					t.Fatal(err)
				}
			}},
			{read: true, want: nil},
		}},
		{"added after Destroy, kept in the new session", []step{
			{add: []Flash{flashSaved}},
			{also: func(t *testing.T, s *Session) {
				if err := s.Destroy(); err != nil {
					t.Fatal(err)
				}
				addFlashes(t, s, flashLater)
			}},
			{read: true, want: []Flash{flashLater}},
		}},
	}
	for _, be := range bothBackends {
		for _, tc := range tests {
			t.Run(be.name+"/"+tc.name, func(t *testing.T) {
				br := newBrowser(t, be.open(t))
				for i, st := range tc.steps {
					br.do(func(s *Session) {
						addFlashes(t, s, st.add...)
						if st.also != nil {
							st.also(t, s)
						}
						if st.read {
							if got := s.Flashes(); !slices.Equal(got, st.want) {
								t.Fatalf("request %d: Flashes() = %q, want %q", i+1, got, st.want)
							}
						}
						if st.then != nil {
							st.then(t, s)
						}
					})
				}
			})
		}
	}
}

// TestFlashesAloneKeepASession: a visitor with no session who is shown a
// flash gets a session for it, and loses it once the flash is read.
func TestFlashesAloneKeepASession(t *testing.T) {
	for _, be := range bothBackends {
		t.Run(be.name, func(t *testing.T) {
			br := newBrowser(t, be.open(t))
			br.do(func(s *Session) { addFlashes(t, s, flashSaved) })
			if len(br.jar) == 0 {
				t.Fatal("a session holding only a flash was not kept")
			}
			br.do(func(s *Session) { s.Flashes() })
			if len(br.jar) != 0 {
				t.Fatalf("the session emptied by reading its flash left cookies %v", br.jar)
			}
		})
	}
}

// TestFlashesWithNoneWaitingWriteNothing: a page that asks for flashes on
// every request must not cost a write each time.
func TestFlashesWithNoneWaitingWriteNothing(t *testing.T) {
	for _, be := range bothBackends {
		t.Run(be.name, func(t *testing.T) {
			br := newBrowser(t, be.open(t))
			br.do(func(s *Session) { s.Set("n", 1) })
			br.do(func(s *Session) {
				if got := s.Flashes(); got != nil {
					t.Fatalf("Flashes() = %q", got)
				}
				if s.Modified() {
					t.Fatal("Flashes with none waiting marked the session modified")
				}
			})
		})
	}
}

func TestFlashLimits(t *testing.T) {
	tests := []struct {
		name    string
		before  int // flashes added on an earlier request
		message string
		kind    []string
		limit   bool // the error is ErrFlashLimit
		ok      bool
	}{
		{"message at the limit", 0, strings.Repeat("m", maxFlashMessageBytes), nil, false, true},
		{"message over the limit", 0, strings.Repeat("m", maxFlashMessageBytes+1), nil, true, false},
		{"kind at the limit", 0, "m", []string{strings.Repeat("k", maxFlashKindBytes)}, false, true},
		{"kind over the limit", 0, "m", []string{strings.Repeat("k", maxFlashKindBytes+1)}, true, false},
		{"the last one that fits", maxFlashes - 1, "m", nil, false, true},
		{"one too many", maxFlashes, "m", nil, true, false},
		{"two kinds", 0, "m", []string{"info", "error"}, false, false},
	}
	for _, be := range bothBackends {
		for _, tc := range tests {
			t.Run(be.name+"/"+tc.name, func(t *testing.T) {
				br := newBrowser(t, be.open(t))
				br.do(func(s *Session) {
					s.Set("n", 1)
					for range tc.before {
						addFlashes(t, s, flashSaved)
					}
				})
				br.do(func(s *Session) {
					err := s.AddFlash(tc.message, tc.kind...)
					if (err == nil) != tc.ok || errors.Is(err, ErrFlashLimit) != tc.limit {
						t.Fatalf("AddFlash: %v", err)
					}
					if !tc.ok && s.Modified() {
						t.Error("a refused flash marked the session modified")
					}
				})
				br.do(func(s *Session) {
					want := tc.before
					if tc.ok {
						want++
					}
					if got := s.Flashes(); len(got) != want {
						t.Fatalf("%d flashes kept, want %d", len(got), want)
					}
				})
			})
		}
	}
}

// flashRecord is a record of the given number of fields holding the
// value k: 7, the fields after the values map encoded in tail.
func flashRecord(fields byte, tail ...byte) []byte {
	header := []byte{0x90 | fields}
	if fields > 15 {
		header = []byte{msgp.Array16, 0, fields}
	}
	return append(append(header, 1, 0, 0x81, 0xa1, 'k', msgp.Bin8, 1, 7), tail...)
}

// TestRecordsWithAndWithoutFlashes plants records as each version of
// kvsession writes them: one from before flashes reads with none, one from
// a later version with more fields reads its flashes and skips the rest,
// and a flash field that AddFlash could not have written makes the record
// unreadable. Both backends keep the same record: the server's in the
// store, the cookie backend's sealed in the cookie.
func TestRecordsWithAndWithoutFlashes(t *testing.T) {
	// user "", extended, rotated, maxAge, cookieMode, 0, indexed, bound
	eleven := []byte{0xa0, 0, 0, 0, 0, 0, 0, 0}
	withFlashes := func(field ...byte) []byte { return append(slices.Clone(eleven), field...) }
	one := []byte{0x91, 0x92, 0xa5, 'e', 'r', 'r', 'o', 'r', 0xa2, 'h', 'i'}
	long := append([]byte{0x91, 0x92, 0xa0, msgp.Str16, 0x10, 0x01}, make([]byte, maxFlashMessageBytes+1)...)
	tooMany := []byte{msgp.Array16, 0, maxFlashes + 1}
	for range maxFlashes + 1 {
		tooMany = append(tooMany, 0x92, 0xa0, 0xa0)
	}
	tests := []struct {
		name     string
		fields   byte
		tail     []byte
		readable bool
		want     []Flash
	}{
		{"four fields", 4, []byte{0xa0}, true, nil},
		{"eleven fields, before flashes", 11, eleven, true, nil},
		{"twelve fields, no flashes", 12, withFlashes(0x90), true, nil},
		{"twelve fields, a flash", 12, withFlashes(one...), true, []Flash{{"error", "hi"}}},
		{"sixteen fields, one from a later version", 16, withFlashes(append(slices.Clone(one), 0x93, 0, 0, 0, msgp.Bin8, handleBytes, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 0x92, 0xa1, 'u', 0xa1, 'a', 0xa3, 'n', 'e', 'w')...), true, []Flash{{"error", "hi"}}},
		{"flash field not an array", 12, withFlashes(0xa0), false, nil},
		{"flash not a pair", 12, withFlashes(0x91, 0x93, 0xa0, 0xa0, 0xa0), false, nil},
		{"flash message too long", 12, withFlashes(long...), false, nil},
		{"too many flashes", 12, withFlashes(tooMany...), false, nil},
	}
	for _, be := range []struct {
		name  string
		plant func(t *testing.T, rec []byte) *browser
	}{
		{"server", plantServerRecord},
		{"cookie", plantCookieRecord},
	} {
		for _, tc := range tests {
			t.Run(be.name+"/"+tc.name, func(t *testing.T) {
				br := be.plant(t, flashRecord(tc.fields, tc.tail...))
				br.do(func(s *Session) {
					if n, ok := s.GetInt("k"); ok != tc.readable || (ok && n != 7) {
						t.Fatalf("k = %d, %v; the record should read: %v", n, ok, tc.readable)
					}
					if got := s.Flashes(); !slices.Equal(got, tc.want) {
						t.Fatalf("Flashes() = %q, want %q", got, tc.want)
					}
				})
			})
		}
	}
}

// plantServerRecord stores rec as a session's record and returns a browser
// holding that session's cookie.
func plantServerRecord(t *testing.T, rec []byte) *browser {
	st := newFakeStore()
	return storedRecordBrowser(t, newBackend(t, Config{Logger: slog.New(slog.DiscardHandler)}, st), st, rec)
}

// storedRecordBrowser stores rec in st as a new session's record and
// returns a browser holding that session's cookie.
func storedRecordBrowser(t *testing.T, b *ServerBackend, st *fakeStore, rec []byte) *browser {
	id, err := b.GenerateID()
	if err != nil {
		t.Fatal(err)
	}
	st.data[b.storeKey([]byte(id))] = rec
	br := newBrowser(t, b)
	br.jar[b.CookieName()] = id
	return br
}

// plantCookieRecord seals rec as the cookie backend seals a record, and
// returns a browser holding that cookie.
func plantCookieRecord(t *testing.T, rec []byte) *browser {
	clk := newClock()
	b := newCookieBackend(t, Config{Logger: slog.New(slog.DiscardHandler)}, clk)
	return sealedRecordBrowser(t, b, clk, rec, time.Hour)
}

// sealedRecordBrowser seals rec, bound to no user and expiring life from
// now, as b seals a session, and returns a browser holding that cookie.
func sealedRecordBrowser(t *testing.T, b *CookieBackend, clk *clock, rec []byte, life time.Duration) *browser {
	plain := binary.BigEndian.AppendUint64(nil, 0) // bound to no user
	plain = binary.BigEndian.AppendUint64(plain, uint64(clk.t.Add(life).UnixNano()))
	plain = append(plain, rec...)
	k := &b.keys[0]
	nonce := make([]byte, cookieNonceBytes)
	sealed := append(append([]byte{cookieFormat}, k.id[:]...), nonce...)
	sealed = k.aead.Seal(sealed, nonce, plain, k.aad)
	s := b.LoadFromRequest(t.Context(), nil)
	out := &sink{}
	if err := b.setCookie(s, out, strictBase64.AppendEncode(nil, sealed), cookiePersistent, life); err != nil {
		t.Fatal(err)
	}
	b.Release(s)
	br := newBrowser(t, b)
	br.jar = out.live(t)
	return br
}

var (
	flashSaved = Flash{Kind: DefaultFlashKind, Message: "Saved."}
	flashWrong = Flash{Kind: "error", Message: "Wrong password."}
	flashLater = Flash{Kind: "warning", Message: "Later."}
)

// clocked is a backend whose clock, and whose store's, is a test clock.
type clocked struct {
	name string
	b    Backend
	clk  *clock
	st   store.Store // the server backend's, for a restart on it
}

// clockedBackends opens cfg on the server backend (memory store) and, if
// withCookie, on the cookie backend, each with its own test clock.
func clockedBackends(t *testing.T, cfg Config, withCookie bool) []clocked {
	cfg.Logger = slog.New(slog.DiscardHandler)
	clk := newClock()
	st := memstore.New(memstore.Options{Now: clk.now})
	t.Cleanup(func() { st.Close() })
	sb := newBackend(t, cfg, st)
	sb.now = clk.now
	out := []clocked{{"server", sb, clk, st}}
	if withCookie {
		cclk := newClock()
		cfg.RotationInterval, cfg.RotationIntervalLimit = 0, 0 // server-side only
		out = append(out, clocked{"cookie", newCookieBackend(t, cfg, cclk), cclk, nil})
	}
	return out
}

// reopen opens a second backend on what cb's keeps sessions in (its store,
// or its secret), as a restarted process would, on cb's clock.
func reopen(t *testing.T, cb clocked, cfg Config) Backend {
	cfg.Logger = slog.New(slog.DiscardHandler)
	if cb.st == nil {
		return newCookieBackend(t, cfg, cb.clk)
	}
	b := newBackend(t, cfg, cb.st)
	b.now = cb.clk.now
	return b
}

// startSession starts a session holding "n" on br, giving it its own timeouts
// with set (nil: Config's).
func startSession(t *testing.T, br *browser, set func(s *Session) error) {
	t.Helper()
	br.do(func(s *Session) {
		if err := s.SetInt("n", 1); err != nil {
			t.Fatal(err)
		}
		if set != nil {
			if err := set(s); err != nil {
				t.Fatal(err)
			}
		}
	})
}

// holds reports whether br's session still holds "n".
func holds(t *testing.T, br *browser) bool {
	t.Helper()
	var ok bool
	br.do(func(s *Session) { _, ok = s.GetInt("n") })
	return ok
}

// TestPerSessionIdleTimeout: an administrator's session with an idle
// timeout of its own ends after that much idleness, while a session beside
// it, on Config's, lives on; use keeps the short one alive, since its
// extension delay is scaled to its own timeout; and one given a longer
// timeout than Config's, under a raised limit, outlives Config's.
func TestPerSessionIdleTimeout(t *testing.T) {
	tests := []struct {
		name      string
		cfg       Config
		own       time.Duration // the admin's idle timeout; 0: 5 minutes
		every     time.Duration // the admin uses its session this often
		for_      time.Duration // for this long
		adminLive bool
		userLive  bool // the other session, idle all along
	}{
		{"idle beside Config's 30m", Config{IdleTimeout: 30 * time.Minute}, 0, 6 * time.Minute, 6 * time.Minute, false, true},
		{"idle with Config's off", Config{}, 0, 6 * time.Minute, 6 * time.Minute, false, true},
		{"used within its timeout", Config{IdleTimeout: 30 * time.Minute}, 0, 4 * time.Minute, 20 * time.Minute, true, true},
		// Config's delay of 10m is longer than the admin's 5m: unscaled,
		// the admin's session would never be extended before it ends.
		{"Config's ExtensionDelay above its timeout", Config{IdleTimeout: 30 * time.Minute, ExtensionDelay: 10 * time.Minute},
			0, 2 * time.Minute, 20 * time.Minute, true, true},
		{"no IdleTimeout in Config, used often", Config{}, 0, 2 * time.Minute, 20 * time.Minute, true, true},
		// The cookie backend must not take a cookie idle longer than
		// Config's IdleTimeout for one outliving every cookie.
		{"longer than Config's, under a raised limit", Config{IdleTimeout: 30 * time.Minute, IdleTimeoutLimit: 2 * time.Hour},
			time.Hour, 45 * time.Minute, 45 * time.Minute, true, false},
	}
	for _, tc := range tests {
		for _, cb := range clockedBackends(t, tc.cfg, true) {
			t.Run(tc.name+"/"+cb.name, func(t *testing.T) {
				own := cmp.Or(tc.own, 5*time.Minute)
				admin, user := newBrowser(t, cb.b), newBrowser(t, cb.b)
				startSession(t, user, nil)
				admin.do(func(s *Session) {
					s.SetInt("n", 1)
					if err := s.SetIdleTimeout(own); err != nil {
						t.Fatal(err)
					}
					if got, want := s.Deadline(), cb.clk.t.Add(own); !got.Equal(want) {
						t.Fatalf("Deadline() = %v, want %v", got, want)
					}
				})
				live := true
				for elapsed := time.Duration(0); elapsed < tc.for_ && live; elapsed += tc.every {
					cb.clk.advance(tc.every)
					live = holds(t, admin)
				}
				if live != tc.adminLive {
					t.Fatalf("admin session alive = %v, want %v", live, tc.adminLive)
				}
				if got := holds(t, user); got != tc.userLive {
					t.Fatalf("other session alive = %v, want %v", got, tc.userLive)
				}
			})
		}
	}
}

// TestPerSessionAbsoluteTimeout: a session with an absolute timeout of its
// own ends that long after its creation, however active, while one beside
// it on Config's lives on.
func TestPerSessionAbsoluteTimeout(t *testing.T) {
	for _, cfg := range []Config{{}, {AbsoluteTimeout: 8 * time.Hour}} {
		for _, cb := range clockedBackends(t, cfg, true) {
			t.Run(cfg.AbsoluteTimeout.String()+"/"+cb.name, func(t *testing.T) {
				admin, user := newBrowser(t, cb.b), newBrowser(t, cb.b)
				startSession(t, user, nil)
				admin.do(func(s *Session) {
					s.SetInt("n", 1)
					if err := s.SetAbsoluteTimeout(time.Hour); err != nil {
						t.Fatal(err)
					}
					if got, want := s.Deadline(), cb.clk.t.Add(time.Hour); !got.Equal(want) {
						t.Fatalf("Deadline() = %v, want %v", got, want)
					}
				})
				for range 5 {
					cb.clk.advance(10 * time.Minute)
					if !holds(t, admin) || !holds(t, user) {
						t.Fatal("a session ended before its absolute timeout")
					}
				}
				cb.clk.advance(10 * time.Minute)
				if holds(t, admin) {
					t.Fatal("the admin session outlived its own absolute timeout")
				}
				if !holds(t, user) {
					t.Fatal("the other session ended with the admin's")
				}
			})
		}
	}
}

// TestPerSessionRotationInterval: a server session with a rotation period
// of its own gets a new id once it has passed, while a session beside it
// on Config's (off) keeps its id. The cookie backend has no id: it
// refuses one.
func TestPerSessionRotationInterval(t *testing.T) {
	cb := clockedBackends(t, Config{}, false)[0]
	admin, user := newBrowser(t, cb.b), newBrowser(t, cb.b)
	startSession(t, user, nil)
	startSession(t, admin, func(s *Session) error { return s.SetRotationInterval(10 * time.Minute) })
	adminID, userID := admin.jar["session"], user.jar["session"]
	for _, tc := range []struct {
		after   time.Duration
		rotated bool
	}{{9 * time.Minute, false}, {time.Minute, true}} {
		cb.clk.advance(tc.after)
		if !holds(t, admin) || !holds(t, user) {
			t.Fatal("a session ended")
		}
		if got := admin.jar["session"] != adminID; got != tc.rotated {
			t.Fatalf("after %v more, admin id rotated = %v, want %v", tc.after, got, tc.rotated)
		}
		if user.jar["session"] != userID {
			t.Fatal("the other session's id was rotated")
		}
	}

	c := newBrowser(t, newCookieBackend(t, Config{}, newClock()))
	c.do(func(s *Session) {
		if err := s.SetRotationInterval(10 * time.Minute); err == nil || !strings.Contains(err.Error(), "no id") {
			t.Fatalf("cookie SetRotationInterval = %v, want a refusal", err)
		}
		if err := s.SetRotationInterval(0); err != nil {
			t.Fatalf("cookie SetRotationInterval(0) = %v", err)
		}
		if d := s.RotationInterval(); d != 0 {
			t.Fatalf("cookie RotationInterval() = %v", d)
		}
	})
}

// TestPerSessionTimeoutsPersist: a session's own timeouts are read back on
// later requests and by a restarted backend on the same store (or secret),
// cut to a limit lowered since; 0 returns to Config's.
func TestPerSessionTimeoutsPersist(t *testing.T) {
	cfg := Config{
		IdleTimeout: 30 * time.Minute, IdleTimeoutLimit: 2 * time.Hour,
		AbsoluteTimeout: 8 * time.Hour, RotationInterval: time.Hour,
	}
	lowered := cfg
	lowered.IdleTimeoutLimit = 0 // back to IdleTimeout
	type want struct{ idle, abs, rot time.Duration }
	tests := []struct {
		name            string
		set             func(s *Session, server bool) error
		restart         Config
		next, restarted want
	}{
		{"Config's", nil, cfg,
			want{30 * time.Minute, 8 * time.Hour, time.Hour}, want{30 * time.Minute, 8 * time.Hour, time.Hour}},
		{"own", func(s *Session, server bool) error {
			err := errors.Join(s.SetIdleTimeout(time.Hour), s.SetAbsoluteTimeout(2*time.Hour))
			if server {
				err = errors.Join(err, s.SetRotationInterval(20*time.Minute))
			}
			return err
		}, cfg, want{time.Hour, 2 * time.Hour, 20 * time.Minute}, want{time.Hour, 2 * time.Hour, 20 * time.Minute}},
		{"own, then back to Config's", func(s *Session, server bool) error {
			return errors.Join(s.SetIdleTimeout(time.Hour), s.SetIdleTimeout(0), s.SetAbsoluteTimeout(time.Hour), s.SetAbsoluteTimeout(0))
		}, cfg, want{30 * time.Minute, 8 * time.Hour, time.Hour}, want{30 * time.Minute, 8 * time.Hour, time.Hour}},
		{"own, limit lowered at the restart", func(s *Session, server bool) error { return s.SetIdleTimeout(time.Hour) },
			lowered, want{time.Hour, 8 * time.Hour, time.Hour}, want{30 * time.Minute, 8 * time.Hour, time.Hour}},
	}
	for _, tc := range tests {
		for _, cb := range clockedBackends(t, cfg, true) {
			t.Run(tc.name+"/"+cb.name, func(t *testing.T) {
				server, restart := cb.st != nil, tc.restart
				if !server { // no rotation in cookie sessions
					tc.next.rot, tc.restarted.rot, restart.RotationInterval = 0, 0, 0
				}
				check := func(br *browser, w want, when string) {
					t.Helper()
					br.do(func(s *Session) {
						if got := (want{s.IdleTimeout(), s.AbsoluteTimeout(), s.RotationInterval()}); got != w {
							t.Fatalf("%s: timeouts %v, want %v", when, got, w)
						}
					})
				}
				br := newBrowser(t, cb.b)
				var set func(s *Session) error
				if tc.set != nil {
					set = func(s *Session) error { return tc.set(s, server) }
				}
				startSession(t, br, set)
				cb.clk.advance(time.Minute)
				check(br, tc.next, "next request")
				again := newBrowser(t, reopen(t, cb, restart))
				again.jar = br.jar
				check(again, tc.restarted, "after a restart")
			})
		}
	}
}

// TestPerSessionTimeoutBounds: Set* refuses values outside a second to the
// limit, and an idle timeout with ExtendOnAccess, leaving the session's
// timeouts as they were.
func TestPerSessionTimeoutBounds(t *testing.T) {
	cfg := Config{IdleTimeout: 30 * time.Minute, AbsoluteTimeoutLimit: 12 * time.Hour, RotationInterval: time.Hour}
	tests := []struct {
		name  string
		cfg   Config
		set   func(s *Session) error
		limit string // "" if the call is accepted
	}{
		{"idle at the limit", cfg, func(s *Session) error { return s.SetIdleTimeout(30 * time.Minute) }, ""},
		{"idle above the limit", cfg, func(s *Session) error { return s.SetIdleTimeout(31 * time.Minute) }, "IdleTimeoutLimit"},
		{"idle below a second", cfg, func(s *Session) error { return s.SetIdleTimeout(time.Second / 2) }, "IdleTimeoutLimit"},
		{"idle negative", cfg, func(s *Session) error { return s.SetIdleTimeout(-time.Minute) }, "IdleTimeoutLimit"},
		{"idle with ExtendOnAccess", Config{ExtendOnAccess: true}, func(s *Session) error { return s.SetIdleTimeout(time.Minute) }, "ExtendOnAccess"},
		{"idle up to MaxAgeLimit with Config's off", Config{}, func(s *Session) error { return s.SetIdleTimeout(DefaultMaxAge) }, ""},
		{"idle above MaxAgeLimit with Config's off", Config{}, func(s *Session) error { return s.SetIdleTimeout(DefaultMaxAge + time.Second) }, "IdleTimeoutLimit"},
		{"absolute under a raised limit", cfg, func(s *Session) error { return s.SetAbsoluteTimeout(12 * time.Hour) }, ""},
		{"absolute above the limit", cfg, func(s *Session) error { return s.SetAbsoluteTimeout(13 * time.Hour) }, "AbsoluteTimeoutLimit"},
		{"rotation above the limit", cfg, func(s *Session) error { return s.SetRotationInterval(2 * time.Hour) }, "RotationIntervalLimit"},
		{"rotation below a second", cfg, func(s *Session) error { return s.SetRotationInterval(time.Millisecond) }, "RotationIntervalLimit"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := newBackend(t, tc.cfg, newFakeStore())
			if _, err := request(t, b, "", func(s *Session) {
				before := [3]time.Duration{s.IdleTimeout(), s.AbsoluteTimeout(), s.RotationInterval()}
				err := tc.set(s)
				if tc.limit == "" {
					if err != nil {
						t.Fatalf("refused: %v", err)
					}
					return
				}
				if err == nil || !strings.Contains(err.Error(), tc.limit) {
					t.Fatalf("err = %v, want one naming %s", err, tc.limit)
				}
				if after := [3]time.Duration{s.IdleTimeout(), s.AbsoluteTimeout(), s.RotationInterval()}; after != before || s.Modified() {
					t.Fatalf("a refused call changed the session: %v, then %v", before, after)
				}
			}); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestTimeoutLimitsConfig: the limits default to their Config values (or
// MaxAgeLimit with those off), and a limit below its Config value, below a
// second or above 400 days is a *ConfigError naming it.
func TestTimeoutLimitsConfig(t *testing.T) {
	tests := []struct {
		name  string
		cfg   Config
		field string // "" if valid
		want  [3]time.Duration
	}{
		{"defaults, timeouts off", Config{}, "", [3]time.Duration{DefaultMaxAge, DefaultMaxAge, DefaultMaxAge}},
		{"defaults follow the timeouts", Config{IdleTimeout: time.Hour, AbsoluteTimeout: 8 * time.Hour, RotationInterval: time.Minute},
			"", [3]time.Duration{time.Hour, 8 * time.Hour, time.Minute}},
		{"raised", Config{IdleTimeout: time.Hour, IdleTimeoutLimit: 2 * time.Hour}, "", [3]time.Duration{2 * time.Hour, DefaultMaxAge, DefaultMaxAge}},
		{"idle limit below IdleTimeout", Config{IdleTimeout: time.Hour, IdleTimeoutLimit: time.Minute}, "IdleTimeoutLimit", [3]time.Duration{}},
		{"idle limit below a second", Config{IdleTimeoutLimit: time.Millisecond}, "IdleTimeoutLimit", [3]time.Duration{}},
		{"idle limit negative", Config{IdleTimeoutLimit: -time.Hour}, "IdleTimeoutLimit", [3]time.Duration{}},
		{"absolute limit below AbsoluteTimeout", Config{AbsoluteTimeout: time.Hour, AbsoluteTimeoutLimit: time.Minute}, "AbsoluteTimeoutLimit", [3]time.Duration{}},
		{"absolute limit above 400 days", Config{AbsoluteTimeoutLimit: MaxMaxAge + time.Hour}, "AbsoluteTimeoutLimit", [3]time.Duration{}},
		{"rotation limit below RotationInterval", Config{RotationInterval: time.Hour, RotationIntervalLimit: time.Minute}, "RotationIntervalLimit", [3]time.Duration{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := tc.cfg.compile()
			if tc.field != "" {
				var ce *ConfigError
				if !errors.As(err, &ce) || ce.Field != tc.field {
					t.Fatalf("err = %v, want a *ConfigError on %s", err, tc.field)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := [3]time.Duration{c.IdleTimeoutLimit, c.AbsoluteTimeoutLimit, c.RotationIntervalLimit}; got != tc.want {
				t.Fatalf("limits %v, want %v", got, tc.want)
			}
		})
	}
	_, err := NewCookie(Config{Secrets: [][]byte{keyA}, RotationIntervalLimit: time.Hour}, nil)
	var ce *ConfigError
	if !errors.As(err, &ce) || ce.Field != "RotationIntervalLimit" {
		t.Fatalf("NewCookie with RotationIntervalLimit: %v, want a *ConfigError on it", err)
	}
}

// TestTimeoutsRecordField: the thirteenth record field is written only for
// a session with timeouts of its own, forcing the twelfth (flashes) as an
// empty array, so that every other record stays as it was; records
// without it read with Config's timeouts, and a malformed one is
// unreadable.
func TestTimeoutsRecordField(t *testing.T) {
	encodeTests := []struct {
		name   string
		data   sessionData
		header byte   // the record's array header
		tail   []byte // how it ends
	}{
		{"nothing of its own", sessionData{}, 0x9b, []byte{0}},
		{"a flash only", sessionData{flashes: []Flash{{"k", "m"}}}, 0x9c, []byte{0x91, 0x92, 0xa1, 'k', 0xa1, 'm'}},
		{"an idle timeout", sessionData{ownIdle: 5}, 0x9d, []byte{0, 0x90, 0x93, 5, 0, 0}},
		{"a rotation and a flash", sessionData{ownRotation: 7, flashes: []Flash{{"k", "m"}}}, 0x9d,
			[]byte{0x91, 0x92, 0xa1, 'k', 0xa1, 'm', 0x93, 0, 0, 7}},
	}
	for _, tc := range encodeTests {
		t.Run(tc.name, func(t *testing.T) {
			s := &Session{sessionData: tc.data}
			rec := s.encode(nil)
			if rec[0] != tc.header || !strings.HasSuffix(string(rec), string(tc.tail)) {
				t.Fatalf("record % x: want header %x, ending % x", rec, tc.header, tc.tail)
			}
		})
	}

	// user "", extended, rotated, maxAge, cookieMode, 0, indexed, bound
	eleven := []byte{0xa0, 0, 0, 0, 0, 0, 0, 0}
	five := []byte{0xcf, 0, 0, 0, 0x45, 0xd9, 0x64, 0xb8, 0} // 300e9 ns as uint64
	withTail := func(tail ...byte) []byte { return append(append([]byte(nil), eleven...), tail...) }
	readTests := []struct {
		name     string
		fields   byte
		tail     []byte
		readable bool
		idle     time.Duration
	}{
		{"eleven fields", 11, eleven, true, 30 * time.Minute},
		{"twelve fields", 12, withTail(0x90), true, 30 * time.Minute},
		{"thirteen, an idle timeout", 13, withTail(append([]byte{0x90, 0x93}, append(five, 0, 0)...)...), true, 5 * time.Minute},
		{"thirteen, more than three", 13, withTail(append([]byte{0x90, 0x94}, append(five, 0, 0, 0xa0)...)...), true, 5 * time.Minute},
		{"thirteen, none of its own", 13, withTail(0x90, 0x93, 0, 0, 0), true, 30 * time.Minute},
		{"thirteen, two", 13, withTail(0x90, 0x92, 0, 0), false, 0},
		{"thirteen, negative", 13, withTail(0x90, 0x93, 0xff, 0, 0), false, 0},
		{"thirteen, not an array", 13, withTail(0x90, 0), false, 0},
	}
	cfg := Config{IdleTimeout: 30 * time.Minute, Logger: slog.New(slog.DiscardHandler)}
	for _, tc := range readTests {
		for _, backend := range []string{"server", "cookie"} {
			t.Run(tc.name+"/"+backend, func(t *testing.T) {
				br := plantWith(t, backend, cfg, flashRecord(tc.fields, tc.tail...))
				br.do(func(s *Session) {
					if _, ok := s.GetInt("k"); ok != tc.readable {
						t.Fatalf("readable = %v, want %v", ok, tc.readable)
					}
					if tc.readable && s.IdleTimeout() != tc.idle {
						t.Fatalf("IdleTimeout() = %v, want %v", s.IdleTimeout(), tc.idle)
					}
				})
			})
		}
	}
}

// plantWith is plantServerRecord and plantCookieRecord under cfg, with
// the session saved or sealed a second ago.
func plantWith(t *testing.T, backend string, cfg Config, rec []byte) *browser {
	clk := newClock()
	if backend == "server" {
		st := newFakeStore()
		b := newBackend(t, cfg, st)
		b.now = clk.now
		return storedRecordBrowser(t, b, st, rec)
	}
	b := newCookieBackend(t, cfg, clk)
	return sealedRecordBrowser(t, b, clk, rec, time.Minute)
}
