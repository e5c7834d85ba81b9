package kvsession

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"log/slog"
	"math"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kvsession/kvsession/internal/sessioncookie"
	"github.com/kvsession/kvsession/store/badgerstore"
	"github.com/kvsession/kvsession/store/memstore"
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
		got, carried, err := c.split.Read(nil, header)
		if len(got) > len(header) {
			t.Fatalf("read %d bytes out of a %d-byte header", len(got), len(header))
		}
		if err == nil && len(got) > 0 && !carried.Any() {
			t.Fatal("value read without a cookie carried")
		}
		// Writing: the splitter carries cookie-safe text, as the backends
		// give it.
		text := []byte(base64.RawURLEncoding.EncodeToString(value))
		out, err := writeValue(t, c, text, carried)
		if err != nil {
			if c.split.Count(len(text), len(c.attrs.AppendLive(nil, true, c.cfg.MaxAge, c.now().UnixNano()))) != 0 {
				t.Fatalf("write failed although the value fits: %v", err)
			}
			return
		}
		back, _, err := c.split.Read(nil, out.header(t))
		if err != nil || !bytes.Equal(back, text) {
			t.Fatalf("wrote %d bytes, read back %d (err %v)", len(text), len(back), err)
		}
		// Every cookie the request carried is either rewritten or expired.
		for i := 0; i < c.cfg.MaxCookieSegments; i++ {
			if carried.Has(i) {
				if _, ok := out.cookies[c.cfg.CookieName+"-"+strconv.Itoa(i)]; !ok {
					t.Fatalf("carried segment %d left in place", i)
				}
			}
		}
		if carried.Bare {
			if _, ok := out.cookies[c.cfg.CookieName]; !ok {
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

// recordingSink keeps every line a response gets, in order, where sink
// keeps only the last one per name.
type recordingSink struct {
	lines   []string // Set-Cookie values
	headers []string
}

func (r *recordingSink) SetCookie(_ string, line []byte) { r.lines = append(r.lines, string(line)) }
func (r *recordingSink) AddHeader(name, value string)    { r.headers = append(r.headers, name+": "+value) }

// fuzzLiveID is a well-formed id stored before each input, so that the
// fuzzer can mutate headers that carry a session the server really has.
const fuzzLiveID = "LiveSessionIdForTheFuzzer0123456789-_XXXXXX"

// FuzzServerCookieHeader feeds arbitrary Cookie headers to the server
// backend while the store holds one live session. Whatever the header,
// the request must not fail, must use the stored session only if the
// header carried its id, must never save under an id taken from the
// header, and must write Set-Cookie lines holding nothing of the header.
func FuzzServerCookieHeader(f *testing.F) {
	if len(fuzzLiveID) != 43 {
		f.Fatalf("fuzzLiveID is %d bytes", len(fuzzLiveID))
	}
	forged := strings.Repeat("A", 43)
	for _, h := range []string{
		"", "session=" + fuzzLiveID, "a=b; session=" + fuzzLiveID + "; c=d", "session=" + forged,
		"session=" + fuzzLiveID + "; session=" + forged, "session=" + forged + "; session=" + fuzzLiveID,
		`session="` + fuzzLiveID + `"`, "session=" + fuzzLiveID + "\r\nSet-Cookie: evil=1",
		"session-0=0.2." + fuzzLiveID + "; session-1=1.2.", "session=" + fuzzLiveID + "; session-0=0.2.x",
		"session=\x00" + fuzzLiveID[1:], " session = " + fuzzLiveID + " ;", ";;;=;session",
	} {
		for action := range uint8(fuzzActions) {
			f.Add([]byte(h), action, false)
		}
		f.Add([]byte(h), uint8(0), true)
	}
	quiet := slog.New(slog.DiscardHandler)
	// Every name a segment of the session cookie may have.
	var segmentNames []string
	for i := range sessioncookie.MaxSegments {
		segmentNames = append(segmentNames, "session-"+strconv.Itoa(i))
	}
	f.Fuzz(func(t *testing.T, header []byte, action uint8, plainKeys bool) {
		st := newFakeStore()
		b := newBackend(t, Config{Logger: quiet, PlainStoreKeys: plainKeys}, st)
		ctx := context.Background()
		if err := b.Set(ctx, fuzzLiveID, map[string]any{"n": 5}); err != nil {
			t.Fatal(err)
		}
		liveKey := b.storeKey([]byte(fuzzLiveID))
		liveBefore := append([]byte(nil), st.data[liveKey]...)
		action %= fuzzActions

		var n int
		s := b.LoadFromRequest(ctx, header)
		n, _ = s.GetInt("n")
		switch action {
		case 0:
			s.Set("n", n+1)
		case 1: // read only
		case 2:
			if err := s.Destroy(); err != nil {
				t.Fatal(err)
			}
		case 3:
			if err := s.RenewID(); err != nil {
				t.Fatal(err)
			}
			s.Set("n", n+1)
		case 4:
			s.Clear()
		}
		out := &recordingSink{}
		err := b.StoreInResponse(s, out)
		b.Release(s)
		if err != nil {
			t.Fatalf("request failed: %v", err)
		}

		sawLive := n == 5
		if n != 0 && n != 5 {
			t.Fatalf("session read n=%d: neither fresh nor the live one", n)
		}
		if sawLive && !bytes.Contains(header, []byte(fuzzLiveID)) {
			t.Fatal("the live session was used although the header does not carry its id")
		}
		// What the response writes: fixed cache headers, and cookie lines
		// whose only variable part is an id this backend made.
		for _, h := range out.headers {
			if h != "Vary: Cookie" && h != `Cache-Control: no-cache="Set-Cookie"` {
				t.Fatalf("unexpected header %q", h)
			}
		}
		var saved string
		for _, line := range out.lines {
			if i := strings.IndexFunc(line, func(r rune) bool { return r < 0x20 || r == 0x7f }); i >= 0 {
				t.Fatalf("Set-Cookie %q holds control byte %#x", line, line[i])
			}
			pair, attrs, _ := strings.Cut(line, "; ")
			name, value, ok := strings.Cut(pair, "=")
			if !ok || (name != "session" && !slices.Contains(segmentNames, name)) {
				t.Fatalf("Set-Cookie %q: unexpected name", line)
			}
			if !strings.HasPrefix(attrs, "Path=/; ") {
				t.Fatalf("Set-Cookie %q: unexpected attributes", line)
			}
			if value == "" {
				if !strings.Contains(attrs, "Max-Age=0;") {
					t.Fatalf("Set-Cookie %q: empty value on a live cookie", line)
				}
				continue
			}
			if name != "session" || !b.validID([]byte(value)) || saved != "" {
				t.Fatalf("Set-Cookie %q: not one well-formed id cookie", line)
			}
			saved = value
		}

		// Where the data went.
		liveAfter, liveKept := st.data[liveKey]
		keepsLive := saved == fuzzLiveID
		switch {
		case keepsLive:
			if !sawLive || action != 0 {
				t.Fatalf("saved under the live id after action %d (live session seen: %v)", action, sawLive)
			}
		case saved != "" && bytes.Contains(header, []byte(saved)):
			t.Fatalf("adopted the client-chosen id %q", saved)
		}
		switch {
		case !sawLive || action == 1:
			if !liveKept || !bytes.Equal(liveAfter, liveBefore) {
				t.Fatal("the live session's record changed")
			}
		case action == 0:
			if !keepsLive {
				t.Fatalf("live session saved under %q, not its own id", saved)
			}
		default: // destroyed, renewed away or emptied
			if liveKept {
				t.Fatalf("the live session's record survived action %d", action)
			}
		}
		wantKeys := 0
		if liveKept {
			wantKeys++
		}
		if saved != "" && !keepsLive {
			wantKeys++
			got, err := b.Get(ctx, saved)
			if err != nil || got["n"] != int64(n+1) {
				t.Fatalf("session saved under %q reads %v, %v; want n=%d", saved, got, err, n+1)
			}
		}
		if len(st.data) != wantKeys {
			t.Fatalf("store holds %d records, want %d: %q", len(st.data), wantKeys, st.keys())
		}
	})
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

// sameValue compares a value Get returned with the one expected: floats by
// their bits (NaN included), times as instants, byte slices by content.
func sameValue(want, got any) bool {
	switch w := want.(type) {
	case float64:
		g, ok := got.(float64)
		return ok && math.Float64bits(g) == math.Float64bits(w)
	case float32:
		g, ok := got.(float32)
		return ok && math.Float32bits(g) == math.Float32bits(w)
	case time.Time:
		g, ok := got.(time.Time)
		return ok && g.Equal(w)
	case []byte:
		g, ok := got.([]byte)
		return ok && bytes.Equal(g, w)
	case []any:
		g, ok := got.([]any)
		if !ok || len(g) != len(w) {
			return false
		}
		for i := range w {
			if !sameValue(w[i], g[i]) {
				return false
			}
		}
		return true
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok || len(g) != len(w) {
			return false
		}
		for k, wv := range w {
			gv, ok := g[k]
			if !ok || !sameValue(wv, gv) {
				return false
			}
		}
		return true
	}
	return want == got
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

// quietBadger drops Badger's log output.
type quietBadger struct{}

func (quietBadger) Errorf(string, ...any)   {}
func (quietBadger) Warningf(string, ...any) {}
func (quietBadger) Infof(string, ...any)    {}
func (quietBadger) Debugf(string, ...any)   {}
