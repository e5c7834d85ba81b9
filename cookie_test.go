package kvsession

import (
	"bytes"
	"encoding/base64"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kvsession/kvsession/internal/sessioncookie"
)

// newCore returns the shared part of a backend for cfg, with a fixed clock.
func newCore(t testing.TB, cfg Config) *core {
	t.Helper()
	c, err := cfg.compile()
	if err != nil {
		t.Fatal(err)
	}
	var co core
	co.init(c, nil)
	co.now = func() time.Time { return time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC) }
	return &co
}

// writeValue sets value as the session cookie over a request that carried
// the cookies in carried, and returns what the response holds.
func writeValue(t *testing.T, c *core, value []byte, carried sessioncookie.Carried) (*sink, error) {
	t.Helper()
	s := &Session{c: c}
	s.carried = carried
	out := &sink{}
	err := c.setCookie(s, out, value, cookiePersistent, c.cfg.MaxAge)
	return out, err
}

// live returns the cookies a browser would keep from a response, as
// name → value, and checks every line against the 4096-byte rule.
func (s *sink) live(t *testing.T) map[string]string {
	t.Helper()
	kept := map[string]string{}
	for name, line := range s.cookies {
		if len(line) > MaxCookieLineBytes {
			t.Errorf("Set-Cookie for %s is %d bytes, over %d", name, len(line), MaxCookieLineBytes)
		}
		if strings.Contains(line, "; Max-Age=0;") {
			continue
		}
		pair, _, _ := strings.Cut(line, ";")
		n, v, _ := strings.Cut(pair, "=")
		if n != name {
			t.Errorf("line for %q names %q", name, n)
		}
		kept[name] = v
	}
	return kept
}

// expired returns the names the response deletes, sorted.
func (s *sink) expired() []string {
	var names []string
	for name, line := range s.cookies {
		if strings.Contains(line, "; Max-Age=0;") {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	return names
}

// header builds a Cookie header from name → value pairs in the given order.
func header(order []string, values map[string]string) []byte {
	var h []string
	for _, n := range order {
		h = append(h, n+"="+values[n])
	}
	return []byte(strings.Join(h, "; "))
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func TestSplitBoundaries(t *testing.T) {
	// Secure, a Domain and a long Path make every line longer: the
	// boundary must account for all of them.
	cfg := Config{CookieName: "sid", Secure: true, Domain: "accounts.example.com", Path: "/" + strings.Repeat("p", 300), MaxCookieSegments: 8}
	c := newCore(t, cfg)
	attrs := len(c.attrs.AppendLive(nil, true, c.cfg.MaxAge, c.now().UnixNano()))
	bareMax := MaxCookieLineBytes - len("sid=") - attrs
	// Two segments carry "0.2." and "1.2." before their halves.
	twoMax := 2 * (MaxCookieLineBytes - len("sid-0=0.2.") - attrs)
	tests := []struct {
		name     string
		size     int
		segments int // 1: the bare cookie
	}{
		{"empty", 0, 1},
		{"just fits one cookie", bareMax, 1},
		{"one byte over", bareMax + 1, 2},
		{"just fits two segments", twoMax, 2},
		{"one byte over two segments", twoMax + 1, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			value := bytes.Repeat([]byte("v"), tt.size)
			out, err := writeValue(t, c, value, sessioncookie.Carried{})
			if err != nil {
				t.Fatal(err)
			}
			kept := out.live(t)
			if len(kept) != tt.segments {
				t.Fatalf("%d cookies %v, want %d", len(kept), sortedKeys(kept), tt.segments)
			}
			if tt.segments == 1 {
				if _, ok := kept["sid"]; !ok {
					t.Fatalf("value that fits is not under the bare name: %v", sortedKeys(kept))
				}
			}
			for name, line := range out.cookies {
				if !strings.Contains(line, "; Path="+cfg.Path+"; Domain=accounts.example.com;") || !strings.Contains(line, "; Secure") {
					t.Errorf("%s lost its attributes: %.80s…", name, line)
				}
				if tt.size == bareMax && len(line) != MaxCookieLineBytes {
					t.Errorf("just-fitting line is %d bytes, want exactly %d", len(line), MaxCookieLineBytes)
				}
			}
			got, _, err := c.split.Read(nil, header(sortedKeys(kept), kept))
			if err != nil || !bytes.Equal(got, value) {
				t.Fatalf("read back %d bytes, err %v; want %d bytes", len(got), err, len(value))
			}
		})
	}
}

func TestSplitManySegmentsJoinInNumericOrder(t *testing.T) {
	c := newCore(t, Config{MaxCookieSegments: 16})
	value := make([]byte, 12*4000+123)
	for i := range value {
		value[i] = "abcdefghijklmnopqrstuvwxyz0123456789"[i%36]
	}
	out, err := writeValue(t, c, value, sessioncookie.Carried{})
	if err != nil {
		t.Fatal(err)
	}
	kept := out.live(t)
	if len(kept) < 12 {
		t.Fatalf("%d segments, want at least 12", len(kept))
	}
	// Sorted as strings, "session-10" comes before "session-2": reading
	// must go by number whatever order the header lists the segments in.
	orders := map[string][]string{"string order": sortedKeys(kept)}
	shuffled := sortedKeys(kept)
	rand.New(rand.NewPCG(1, 2)).Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
	orders["shuffled"] = shuffled
	for name, order := range orders {
		got, carried, err := c.split.Read(nil, header(order, kept))
		if err != nil || !bytes.Equal(got, value) {
			t.Fatalf("%s: read back %d bytes, err %v; want the %d written", name, len(got), err, len(value))
		}
		if carried.Segs != 1<<len(kept)-1 || carried.Bare {
			t.Fatalf("%s: carried %+v", name, carried)
		}
	}
}

func TestSplitExpiresCookiesNoLongerUsed(t *testing.T) {
	c := newCore(t, Config{Domain: "example.com", Path: "/app"})
	bare := MaxCookieLineBytes - 200
	tests := []struct {
		name    string
		carried sessioncookie.Carried
		size    int
		live    []string
		expired []string
	}{
		{"three segments to one cookie", sessioncookie.Carried{Segs: 0b111}, 100, []string{"session"}, []string{"session-0", "session-1", "session-2"}},
		{"three segments to two", sessioncookie.Carried{Segs: 0b111}, bare + 500, []string{"session-0", "session-1"}, []string{"session-2"}},
		{"one cookie to segments", sessioncookie.Carried{Bare: true}, bare + 500, []string{"session-0", "session-1"}, []string{"session"}},
		{"same shape", sessioncookie.Carried{Segs: 0b11}, bare + 500, []string{"session-0", "session-1"}, nil},
		{"nothing carried", sessioncookie.Carried{}, 100, []string{"session"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := writeValue(t, c, bytes.Repeat([]byte("x"), tt.size), tt.carried)
			if err != nil {
				t.Fatal(err)
			}
			if got := sortedKeys(out.live(t)); !slices.Equal(got, tt.live) {
				t.Errorf("live %v, want %v", got, tt.live)
			}
			if got := out.expired(); !slices.Equal(got, tt.expired) {
				t.Errorf("expired %v, want %v", got, tt.expired)
			}
			for _, name := range tt.expired {
				// The browser only deletes the cookie with the same scope.
				if line := out.cookies[name]; !strings.HasPrefix(line, name+"=; Path=/app; Domain=example.com; Max-Age=0;") {
					t.Errorf("expiry of %s: %s", name, line)
				}
			}
		})
	}
}

func TestSplitTooLargeWritesNothing(t *testing.T) {
	c := newCore(t, Config{MaxCookieSegments: 2})
	out, err := writeValue(t, c, bytes.Repeat([]byte("x"), 2*MaxCookieLineBytes), sessioncookie.Carried{Bare: true})
	if err == nil || !strings.Contains(err.Error(), "MaxCookieSegments") {
		t.Fatalf("err %v, want one naming MaxCookieSegments", err)
	}
	if len(out.cookies)+len(out.headers) != 0 {
		t.Fatalf("wrote %v %v", out.cookies, out.headers)
	}
}

func TestServerBackendExpiresSegmentsLeftByCookieBackend(t *testing.T) {
	// A service that moves from cookie sessions to server-side ones: the
	// id cookie goes through the same code, so the old segments go.
	st := newFakeStore()
	b := newBackend(t, Config{}, st)
	out, err := requestHeader(t, b, []byte("session-0=0.2.aa; session-1=1.2.bb"), func(s *Session) { s.Set("n", 1) })
	if err != nil {
		t.Fatal(err)
	}
	if got := out.expired(); !slices.Equal(got, []string{"session-0", "session-1"}) {
		t.Fatalf("expired %v", got)
	}
	if _, ok := out.live(t)["session"]; !ok {
		t.Fatal("no id cookie")
	}
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
