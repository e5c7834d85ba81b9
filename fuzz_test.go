package kvsession

import (
	"context"
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
		st.data[id] = rec
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
