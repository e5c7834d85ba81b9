package kvsession

import (
	"bytes"
	"context"
	"encoding/base64"
	"strings"
	"testing"
	"time"
)

// The seeds run as ordinary tests; `go test -fuzz FuzzX .` explores further.

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

func FuzzRecord(f *testing.F) {
	b := newBackend(f, Config{}, newFakeStore())
	s := b.LoadFromRequest(context.Background(), nil)
	s.Set("counter", 7)
	s.Set("user", "ada")
	s.Set("when", time.Unix(5, 6))
	f.Add(s.encode(nil))
	b.Release(s)
	f.Add([]byte{0x93, 1, 0, 0x82, 0xa1, 'k', mpBin8, 1, 1, 0xa1, 'k', mpBin8, 1, 2})
	f.Fuzz(func(t *testing.T, rec []byte) {
		st := newFakeStore()
		be := newBackend(t, Config{}, st)
		id, _ := be.GenerateID()
		st.data[be.storeKey([]byte(id))] = rec
		out, err := request(t, be, id, func(s *Session) {
			for _, k := range s.Keys() {
				s.Get(k)
				s.GetInt(k)
				s.GetString(k)
				var v any
				s.Decode(k, &v)
			}
			s.Values()
			s.Set("touched", true)
		})
		if err != nil {
			t.Fatal(err)
		}
		// Whatever was stored, the session saved is one we can read back.
		if _, err := be.Get(context.Background(), out.cookieValue(t, "session")); err != nil {
			t.Fatalf("saved session unreadable: %v", err)
		}
	})
}

// FuzzCookieSplit feeds arbitrary Cookie headers to the segment reader, and
// checks that any value written through the splitter reads back intact.
func FuzzCookieSplit(f *testing.F) {
	// Small inputs repeated make the large values: the fuzzer minimizes
	// large inputs slowly.
	f.Add([]byte("session=abc"), []byte("v"), uint8(0))
	f.Add([]byte("session-0=0.2.ab; session-1=1.2.cd"), []byte{0xfe, 0, 1}, uint8(250))
	f.Add([]byte("session-1=1.2.cd;session-0=0.2.ab; x=1"), []byte{}, uint8(3))
	f.Add([]byte("session-0=0.3.a; session-2=2.3.c; session-01=1.3.b"), []byte("0123456789abcdef0123456789abcdef0123456789abcdef"), uint8(255))
	f.Add([]byte("session=; session-31=31.32.; session-999=;;=;"), []byte("\x00;="), uint8(1))
	c := newCore(f, Config{MaxCookieSegments: 8})
	f.Fuzz(func(t *testing.T, header, value []byte, repeat uint8) {
		value = bytes.Repeat(value, 1+int(repeat))
		got, carried, err := c.split.read(nil, header)
		if len(got) > len(header) {
			t.Fatalf("read %d bytes out of a %d-byte header", len(got), len(header))
		}
		if err == nil && len(got) > 0 && !carried.any() {
			t.Fatal("value read without a cookie carried")
		}
		// Writing: the splitter carries cookie-safe text, as the backends
		// give it.
		text := []byte(base64.RawURLEncoding.EncodeToString(value))
		out, err := writeValue(t, c, text, carried)
		if err != nil {
			if c.split.count(len(text), len(c.appendAttrs(nil, cookiePersistent, c.cfg.MaxAge, c.now().UnixNano()))) != 0 {
				t.Fatalf("write failed although the value fits: %v", err)
			}
			return
		}
		back, _, err := c.split.read(nil, out.header(t))
		if err != nil || !bytes.Equal(back, text) {
			t.Fatalf("wrote %d bytes, read back %d (err %v)", len(text), len(back), err)
		}
		// Every cookie the request carried is either rewritten or expired.
		for i := 0; i < c.cfg.MaxCookieSegments; i++ {
			if carried.has(i) {
				if _, ok := out.cookies[c.split.names[i]]; !ok {
					t.Fatalf("carried segment %d left in place", i)
				}
			}
		}
		if carried.bare {
			if _, ok := out.cookies[c.cfg.Key]; !ok {
				t.Fatal("carried bare cookie left in place")
			}
		}
	})
}

// FuzzCookieOpen feeds arbitrary cookie values to the cookie backend: each
// must give a session (fresh unless it opens), never a panic or an error.
func FuzzCookieOpen(f *testing.F) {
	clk := newClock()
	b := newCookieBackend(f, Config{}, clk)
	s := b.LoadFromRequest(context.Background(), nil)
	s.Set("counter", 7)
	out := &sink{}
	if err := b.StoreInResponse(s, out); err != nil {
		f.Fatal(err)
	}
	b.Release(s)
	valid, _, _ := strings.Cut(strings.TrimPrefix(out.cookies["session"], "session="), ";")
	f.Add([]byte(valid))
	f.Add([]byte(valid[:len(valid)-1]))
	f.Add([]byte("AQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"))
	f.Fuzz(func(t *testing.T, value []byte) {
		h := append([]byte("session="), value...)
		out, err := requestHeader(t, b, h, func(s *Session) {
			for _, k := range s.Keys() {
				s.Get(k)
			}
			s.Set("touched", true)
		})
		if err != nil {
			t.Fatalf("a cookie value caused an error: %v", err)
		}
		if _, err := requestHeader(t, b, out.header(t), func(s *Session) {
			if !s.Has("touched") {
				t.Fatal("the session written does not read back")
			}
		}); err != nil {
			t.Fatal(err)
		}
	})
}
