package kvsession

import (
	"errors"
	"maps"
	"testing"
)

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
