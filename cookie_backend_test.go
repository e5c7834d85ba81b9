package kvsession

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kvsession/kvsession/store"
	"github.com/kvsession/kvsession/store/memstore"
)

var (
	keyA = bytes.Repeat([]byte{0xA1}, SecretBytes)
	keyB = bytes.Repeat([]byte{0xB2}, SecretBytes)
	keyC = bytes.Repeat([]byte{0xC3}, SecretBytes)
)

// clock is a settable time source for a backend.
type clock struct{ t time.Time }

func (c *clock) now() time.Time          { return c.t }
func (c *clock) advance(d time.Duration) { c.t = c.t.Add(d) }
func newClock() *clock                   { return &clock{t: time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)} }
func (c *clock) attach(b *CookieBackend) { b.now = c.now }
func (s *sink) header(t *testing.T) []byte {
	t.Helper()
	l := s.live(t)
	return header(sortedKeys(l), l)
}

func newCookieBackend(t testing.TB, cfg Config, clk *clock) *CookieBackend {
	t.Helper()
	if cfg.Secrets == nil {
		cfg.Secrets = [][]byte{keyA}
	}
	b, err := NewCookie(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if clk != nil {
		clk.attach(b)
	}
	return b
}

// roundTrip stores values in a new cookie session and returns the Cookie
// header a browser would send back.
func roundTrip(t *testing.T, b *CookieBackend, values map[string]any) []byte {
	t.Helper()
	out, err := requestHeader(t, b, nil, func(s *Session) {
		for k, v := range values {
			if err := s.Set(k, v); err != nil {
				t.Fatal(err)
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	return out.header(t)
}

// readBlob returns the "blob" value the session under header holds.
func readBlob(t *testing.T, b *CookieBackend, header []byte) (string, bool) {
	t.Helper()
	var v string
	var ok bool
	if _, err := requestHeader(t, b, header, func(s *Session) { v, ok = s.GetString("blob") }); err != nil {
		t.Fatal(err)
	}
	return v, ok
}

func TestCookieBackendRoundTrip(t *testing.T) {
	for _, size := range []int{0, 100, 5 << 10, 11 << 10} {
		b := newCookieBackend(t, Config{}, newClock())
		blob := strings.Repeat("é", size/2)
		h := roundTrip(t, b, map[string]any{"blob": blob, "n": 7})
		got, ok := readBlob(t, b, h)
		if !ok || got != blob {
			t.Fatalf("%d bytes: read back %d bytes, ok %v", size, len(got), ok)
		}
	}
}

func TestCookieBackendSessionAPI(t *testing.T) {
	clk := newClock()
	b := newCookieBackend(t, Config{}, clk)
	h := roundTrip(t, b, map[string]any{"user": "ada"})
	clk.advance(time.Minute)
	out, err := requestHeader(t, b, h, func(s *Session) {
		if s.ID() != "" {
			t.Errorf("cookie session has id %q", s.ID())
		}
		if want := clk.t.Add(-time.Minute); !s.Created().Equal(want) {
			t.Errorf("Created %v, want %v", s.Created(), want)
		}
		if v, _ := s.GetString("user"); v != "ada" {
			t.Errorf("user %q", v)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	// Reading changes nothing, so no cookie is written; the response
	// still varies on the one it read.
	if len(out.cookies) != 0 || !slices.Equal(out.headers, []string{"Vary: Cookie"}) {
		t.Fatalf("read-only request wrote %v %v", out.cookies, out.headers)
	}
}

func TestCookieBackendWritesCookieLikeServerBackend(t *testing.T) {
	b := newCookieBackend(t, Config{Domain: "example.com", Secure: true}, newClock())
	out, err := requestHeader(t, b, nil, func(s *Session) { s.Set("n", 1) })
	if err != nil {
		t.Fatal(err)
	}
	line := out.cookies["session"]
	if !strings.HasSuffix(line, "; Path=/; Domain=example.com; Max-Age=1209600; Secure; HttpOnly; SameSite=Lax") {
		t.Fatalf("Set-Cookie %s", line)
	}
	wantHeaders := []string{`Cache-Control: no-cache="Set-Cookie"`, "Vary: Cookie"}
	if !slices.Equal(out.headers, wantHeaders) {
		t.Fatalf("headers %q", out.headers)
	}
	// The value is unpadded base64url.
	v := out.cookieValue(t, "session")
	if _, err := base64.RawURLEncoding.Strict().DecodeString(v); err != nil || strings.ContainsAny(v, "=+/") {
		t.Fatalf("value %q is not unpadded base64url: %v", v, err)
	}
}

func TestCookieBackendFreshNonceEveryWrite(t *testing.T) {
	b := newCookieBackend(t, Config{}, newClock())
	a := roundTrip(t, b, map[string]any{"n": 1})
	c := roundTrip(t, b, map[string]any{"n": 1})
	if bytes.Equal(a, c) {
		t.Fatal("the same session sealed twice gave the same cookie")
	}
}

func TestCookieBackendTamperingGivesFreshSession(t *testing.T) {
	b := newCookieBackend(t, Config{}, newClock())
	blob := strings.Repeat("z", 5<<10)
	out, err := requestHeader(t, b, nil, func(s *Session) { s.Set("blob", blob) })
	if err != nil {
		t.Fatal(err)
	}
	kept := out.live(t)
	if len(kept) < 2 {
		t.Fatalf("5 KB session in %d cookie(s), want segments", len(kept))
	}
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	for _, name := range sortedKeys(kept) {
		orig := kept[name]
		for i := 0; i < len(orig); i++ {
			// Swap the byte for another of the alphabet, so the damage is
			// in the sealed bytes and not just a decoding error.
			c := alphabet[(strings.IndexByte(alphabet, orig[i])+1+i%60)%64]
			if strings.IndexByte(alphabet, orig[i]) < 0 {
				c = '9' // the segment header's dots and digits
				if orig[i] == '9' {
					c = '8'
				}
			}
			kept[name] = orig[:i] + string(c) + orig[i+1:]
			if got, ok := readBlob(t, b, header(sortedKeys(kept), kept)); ok {
				t.Fatalf("%s byte %d changed: session still read (%d bytes)", name, i, len(got))
			}
		}
		// The last characters of a base64 text carry padding bits: every
		// other character there must be refused too.
		if name == sortedKeys(kept)[len(kept)-1] {
			for i := len(orig) - 3; i < len(orig); i++ {
				for _, c := range []byte(alphabet) {
					if c == orig[i] {
						continue
					}
					kept[name] = orig[:i] + string(c) + orig[i+1:]
					if _, ok := readBlob(t, b, header(sortedKeys(kept), kept)); ok {
						t.Fatalf("%s last byte %d changed to %c: session still read", name, i, c)
					}
				}
			}
		}
		for _, cut := range []int{1, len(orig) / 2, len(orig) - 1} {
			kept[name] = orig[:cut]
			if _, ok := readBlob(t, b, header(sortedKeys(kept), kept)); ok {
				t.Fatalf("%s truncated to %d: session still read", name, cut)
			}
		}
		kept[name] = orig
	}
	if got, ok := readBlob(t, b, header(sortedKeys(kept), kept)); !ok || got != blob {
		t.Fatal("the untouched cookies no longer read")
	}
}

func TestCookieBackendRefusesForeignCookies(t *testing.T) {
	b := newCookieBackend(t, Config{}, newClock())
	h := roundTrip(t, b, map[string]any{"blob": "x"})
	value := strings.TrimPrefix(string(h), "session=")
	tests := []struct {
		name   string
		reader *CookieBackend
		header string
	}{
		{"unknown key", newCookieBackend(t, Config{Secrets: [][]byte{keyC}}, newClock()), string(h)},
		{"moved to another cookie name", newCookieBackend(t, Config{CookieName: "other"}, newClock()), "other=" + value},
		{"not base64", b, "session=" + value[:10] + "*" + value[11:]},
		{"padded base64", b, "session=" + value + "=="},
		{"empty", b, "session="},
		{"short", b, "session=AQID"},
		{"random bytes", b, "session=" + base64.RawURLEncoding.EncodeToString(bytes.Repeat([]byte{1}, 80))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, ok := readBlob(t, tt.reader, []byte(tt.header)); ok {
				t.Fatal("foreign cookie read as a session")
			}
		})
	}
}

func TestCookieBackendExpiredCookieReplayed(t *testing.T) {
	clk := newClock()
	b := newCookieBackend(t, Config{MaxAge: time.Hour, BrowserSession: true}, clk)
	h := roundTrip(t, b, map[string]any{"blob": "x"})
	clk.advance(time.Hour - time.Second)
	if _, ok := readBlob(t, b, h); !ok {
		t.Fatal("session gone before its expiry")
	}
	// A browser-session cookie has no Max-Age, and a client can keep any
	// cookie: the expiry sealed inside is what counts.
	clk.advance(time.Second)
	if _, ok := readBlob(t, b, h); ok {
		t.Fatal("expired cookie replayed and accepted")
	}
}

func TestCookieBackendExtendOnAccess(t *testing.T) {
	clk := newClock()
	b := newCookieBackend(t, Config{MaxAge: time.Hour, ExtendOnAccess: true, CookieExpires: true}, clk)
	h := roundTrip(t, b, map[string]any{"blob": "x"})
	for i := 0; i < 3; i++ {
		clk.advance(50 * time.Minute)
		out, err := requestHeader(t, b, h, func(s *Session) { s.GetString("blob") })
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(out.cookies["session"], "; Max-Age=3600; Expires="+clk.t.Add(time.Hour).Format(http1123)) {
			t.Fatalf("read %d: cookie not re-issued with a fresh expiry: %q", i, out.cookies["session"])
		}
		h = out.header(t)
	}
	if _, ok := readBlob(t, b, h); !ok {
		t.Fatal("renewed session lost")
	}
}

const http1123 = "Mon, 02 Jan 2006 15:04:05 GMT"

func TestCookieBackendKeyRotation(t *testing.T) {
	clk := newClock()
	old := newCookieBackend(t, Config{Secrets: [][]byte{keyA}}, clk)
	h := roundTrip(t, old, map[string]any{"blob": "kept"})

	// keyB goes first: cookies sealed with keyA still open, and the first
	// request re-seals them with keyB even though it changes nothing.
	rotated := newCookieBackend(t, Config{Secrets: [][]byte{keyB, keyA}}, clk)
	out, err := requestHeader(t, rotated, h, func(s *Session) {
		if v, _ := s.GetString("blob"); v != "kept" {
			t.Errorf("blob %q after rotation", v)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	resealed := out.header(t)
	if keyIDOf(t, resealed) != rotated.keys[0].id || keyIDOf(t, h) != old.keys[0].id {
		t.Fatal("the re-written cookie is not sealed with the new first key")
	}
	// Once keyA is retired, only the re-sealed cookie opens.
	retired := newCookieBackend(t, Config{Secrets: [][]byte{keyB}}, clk)
	if v, ok := readBlob(t, retired, resealed); !ok || v != "kept" {
		t.Fatal("re-sealed cookie does not open with the new key alone")
	}
	if _, ok := readBlob(t, retired, h); ok {
		t.Fatal("cookie sealed with a retired key still opens")
	}
	// A cookie already under the first key is not re-written.
	out, _ = requestHeader(t, rotated, resealed, func(s *Session) { s.GetString("blob") })
	if len(out.cookies) != 0 {
		t.Fatal("cookie under the current key re-written")
	}
}

func keyIDOf(t *testing.T, header []byte) (id [cookieKeyIDBytes]byte) {
	t.Helper()
	raw, err := base64.RawURLEncoding.DecodeString(strings.TrimPrefix(string(header), "session="))
	if err != nil {
		t.Fatal(err)
	}
	copy(id[:], raw[1:])
	return id
}

func TestCookieBackendTooLarge(t *testing.T) {
	b := newCookieBackend(t, Config{MaxCookieSegments: 2}, newClock())
	h := roundTrip(t, b, map[string]any{"blob": "small"})
	out, err := requestHeader(t, b, h, func(s *Session) { s.Set("blob", strings.Repeat("x", 8<<10)) })
	var tooLarge *CookieTooLargeError
	if !errors.As(err, &tooLarge) || !errors.Is(err, ErrSessionTooLarge) || !strings.Contains(err.Error(), "MaxCookieSegments (2)") {
		t.Fatalf("err %v, want a CookieTooLargeError naming MaxCookieSegments", err)
	}
	if len(out.cookies)+len(out.headers) != 0 {
		t.Fatal("a session too large still wrote cookies")
	}
	if v, _ := readBlob(t, b, h); v != "small" {
		t.Fatal("the cookie the browser kept no longer reads")
	}
}

func TestCookieBackendDestroyAndEmpty(t *testing.T) {
	b := newCookieBackend(t, Config{}, newClock())
	h := roundTrip(t, b, map[string]any{"blob": strings.Repeat("y", 6<<10)})
	for name, fn := range map[string]func(s *Session){
		"destroy": func(s *Session) {
			if err := s.Destroy(); err != nil {
				t.Fatal(err)
			}
		},
		"clear": func(s *Session) { s.Clear() },
	} {
		out, err := requestHeader(t, b, h, fn)
		if err != nil {
			t.Fatal(err)
		}
		if got := out.expired(); !slices.Equal(got, []string{"session-0", "session-1", "session-2"}) || len(out.live(t)) != 0 {
			t.Fatalf("%s: expired %v, live %v", name, got, out.live(t))
		}
	}
}

func TestCookieBackendConfigErrors(t *testing.T) {
	secrets := [][]byte{keyA}
	tests := []struct {
		name   string
		cfg    Config
		field  string
		reason string // a part of the Reason: what to do instead
	}{
		{"no secrets", Config{}, "Secrets", ""},
		{"short secret", Config{Secrets: [][]byte{keyA, keyB[:16]}}, "Secrets[1]", ""},
		{"long secret", Config{Secrets: [][]byte{append(keyA, 0)}}, "Secrets[0]", ""},
		{"same secret twice", Config{Secrets: [][]byte{keyA, keyB, keyA}}, "Secrets[2]", ""},
		{"revocation store without registry", Config{Secrets: secrets, RevocationStore: "r"}, "RevocationStore", `"r", but NewCookie was given no registry`},
		{"segments", Config{Secrets: secrets, MaxCookieSegments: 33}, "MaxCookieSegments", ""},

		// The fields of server-side sessions: refused, never ignored.
		{"Store", Config{Secrets: secrets, Store: "sessions"}, "Store", "leave it empty"},
		{"SessionIDBytes", Config{Secrets: secrets, SessionIDBytes: 32}, "SessionIDBytes", "leave it 0"},
		{"IDHeader", Config{Secrets: secrets, IDHeader: "X-Session-Id"}, "IDHeader", "leave it empty"},
		{"IDHashKey", Config{Secrets: secrets, IDHashKey: keyB[:16]}, "IDHashKey", "leave it empty"},
		{"PlainStoreKeys", Config{Secrets: secrets, PlainStoreKeys: true}, "PlainStoreKeys", "leave it false"},
		{"RotationInterval", Config{Secrets: secrets, RotationInterval: time.Hour}, "RotationInterval", "leave it 0"},
		{"RotationGrace", Config{Secrets: secrets, RotationGrace: time.Second}, "RotationGrace", "leave it 0"},
		{"Lock", Config{Secrets: secrets, Lock: true}, "Lock", "no server state to lock"},
		{"LockLease", Config{Secrets: secrets, LockLease: time.Minute}, "LockLease", "leave it 0"},
		{"LockWait", Config{Secrets: secrets, LockWait: time.Second}, "LockWait", "leave it 0"},
		// Those that act only on the revocation store's calls, without one.
		{"Prefix without RevocationStore", Config{Secrets: secrets, Prefix: "app:"}, "Prefix", "or set RevocationStore"},
		{"StoreTimeout without RevocationStore", Config{Secrets: secrets, StoreTimeout: time.Second}, "StoreTimeout", "or set RevocationStore"},
		// An invalid value is reported as such, before the backend's refusal.
		{"negative StoreTimeout", Config{Secrets: secrets, StoreTimeout: -time.Second}, "StoreTimeout", "negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewCookie(tt.cfg, nil)
			var ce *ConfigError
			if !errors.As(err, &ce) || ce.Field != tt.field {
				t.Fatalf("err %v, want a ConfigError on %s", err, tt.field)
			}
			if !strings.Contains(ce.Reason, tt.reason) {
				t.Errorf("Reason %q, want it to say %q", ce.Reason, tt.reason)
			}
		})
	}
}

// TestCookieBackendHonoursRevocationSettings: Prefix and StoreTimeout act
// on the revocation store's calls, so with a RevocationStore they are
// accepted: Prefix starts the revocations' keys, and StoreTimeout bounds
// their lookups (e2e's TestRevocationStoreFaultsFailClosed hangs one).
func TestCookieBackendHonoursRevocationSettings(t *testing.T) {
	tests := []struct {
		name    string
		cfg     Config
		wantKey string
	}{
		{"Prefix", Config{Prefix: "app:"}, "app:revoked:ada"},
		{"StoreTimeout", Config{StoreTimeout: time.Second}, "revoked:ada"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := newFakeStore()
			reg := store.NewRegistry(nil)
			if err := reg.Register("revocations", st); err != nil {
				t.Fatal(err)
			}
			cfg := tt.cfg
			cfg.Secrets, cfg.RevocationStore = [][]byte{keyA}, "revocations"
			b, err := NewCookie(cfg, reg)
			if err != nil {
				t.Fatal(err)
			}
			if err := b.RevokeUser(t.Context(), "ada"); err != nil {
				t.Fatal(err)
			}
			if keys := st.keys(); !slices.Equal(keys, []string{tt.wantKey}) {
				t.Errorf("revocation keys %q, want %q", keys, tt.wantKey)
			}
		})
	}
}

// TestCookieBackendClose: Close leaves the revocation store, which is the
// registry's, working.
func TestCookieBackendClose(t *testing.T) {
	st := memstore.New(memstore.Options{})
	reg := store.NewRegistry(nil)
	if err := reg.Register("revocations", st); err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	b, err := NewCookie(Config{Secrets: [][]byte{keyA}, RevocationStore: "revocations"}, reg)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if err := b.RevokeUser(t.Context(), "ada"); err != nil {
		t.Fatalf("RevokeUser after Close: %v", err)
	}
}

func TestCookieBackendRevokeUser(t *testing.T) {
	clk := newClock()
	st := newFakeStore()
	reg := store.NewRegistry(nil)
	if err := reg.Register("revocations", st); err != nil {
		t.Fatal(err)
	}
	b, err := NewCookie(Config{Secrets: [][]byte{keyA}, RevocationStore: "revocations", MaxAge: time.Hour}, reg)
	if err != nil {
		t.Fatal(err)
	}
	clk.attach(b)
	login := func(user string) []byte {
		out, err := requestHeader(t, b, nil, func(s *Session) {
			s.Set("blob", "of "+user)
			if err := s.SetUser(user); err != nil {
				t.Fatal(err)
			}
		})
		if err != nil {
			t.Fatal(err)
		}
		return out.header(t)
	}
	laptop, phone, other := login("ada"), login("ada"), login("bob")
	anonymous := roundTrip(t, b, map[string]any{"blob": "anon"})
	gets := st.count("get")
	if _, ok := readBlob(t, b, anonymous); !ok || st.count("get") != gets {
		t.Fatal("a session bound to no user should cost no revocation lookup")
	}
	if _, err := requestHeader(t, b, laptop, func(s *Session) {
		if s.User() != "ada" {
			t.Errorf("User() = %q", s.User())
		}
	}); err != nil {
		t.Fatal(err)
	}

	clk.advance(time.Millisecond)
	if err := b.RevokeUser(context.Background(), "ada"); err != nil {
		t.Fatal(err)
	}
	if ttl := st.ttl["revoked:ada"]; ttl < time.Hour {
		t.Fatalf("revocation kept %v, less than MaxAge", ttl)
	}
	clk.advance(time.Millisecond)
	for name, h := range map[string][]byte{"laptop": laptop, "phone": phone} {
		if _, ok := readBlob(t, b, h); ok {
			t.Errorf("%s: revoked session still read", name)
		}
	}
	if _, ok := readBlob(t, b, other); !ok {
		t.Error("another user's session was revoked")
	}
	if v, ok := readBlob(t, b, login("ada")); !ok || v != "of ada" {
		t.Error("a login after the revocation does not work")
	}

	// A revocation store that fails must not wave sessions through.
	st.fail["get"] = errBoom
	s := b.LoadFromRequest(context.Background(), other)
	err = s.Load()
	if !errors.Is(err, errBoom) {
		t.Fatalf("load with a failing revocation store: %v", err)
	}
	if s.Len() != 0 {
		t.Fatal("session data visible although its revocation could not be checked")
	}
	if err := b.StoreInResponse(s, &sink{}); !errors.Is(err, errBoom) {
		t.Fatalf("StoreInResponse: %v", err)
	}
	b.Release(s)

	plain := newCookieBackend(t, Config{}, clk)
	if err := plain.RevokeUser(context.Background(), "ada"); err == nil || !strings.Contains(err.Error(), "RevocationStore") {
		t.Fatalf("RevokeUser without a store: %v", err)
	}
}

func TestCookieBackendNonceSourceFailure(t *testing.T) {
	b := newCookieBackend(t, Config{}, newClock())
	b.rand = io.LimitReader(nil, 0)
	out, err := requestHeader(t, b, nil, func(s *Session) { s.Set("n", 1) })
	if err == nil || len(out.cookies) != 0 {
		t.Fatalf("err %v, cookies %v: a failing random source must fail the save", err, out.cookies)
	}
}

func TestSessionHoldingOnlyAUserIsKept(t *testing.T) {
	clk := newClock()
	backends := map[string]Backend{
		"cookie": newCookieBackend(t, Config{}, clk),
		"server": newBackend(t, Config{}, newFakeStore()),
	}
	for name, b := range backends {
		t.Run(name, func(t *testing.T) {
			out, err := requestHeader(t, b, nil, func(s *Session) {
				if err := s.SetUser("ada"); err != nil {
					t.Fatal(err)
				}
			})
			if err != nil {
				t.Fatal(err)
			}
			h := out.header(t)
			if len(h) == 0 {
				t.Fatal("a session bound to a user and holding no values was dropped")
			}
			out, err = requestHeader(t, b, h, func(s *Session) {
				if s.User() != "ada" {
					t.Fatalf("User() = %q", s.User())
				}
				s.Clear() // logs out: values and user
			})
			if err != nil {
				t.Fatal(err)
			}
			if len(out.live(t)) != 0 || len(out.expired()) == 0 {
				t.Fatalf("Clear kept the session: live %v", out.live(t))
			}
		})
	}
}

// TestRevocationCannotBeLaundered: a request that loaded a session before
// the revocation and saves it after must not give the client a cookie
// that outlives the revocation.
func TestRevocationCannotBeLaundered(t *testing.T) {
	clk := newClock()
	reg := store.NewRegistry(nil)
	if err := reg.Register("revocations", newFakeStore()); err != nil {
		t.Fatal(err)
	}
	b, err := NewCookie(Config{Secrets: [][]byte{keyA}, RevocationStore: "revocations", ExtendOnAccess: true}, reg)
	if err != nil {
		t.Fatal(err)
	}
	clk.attach(b)
	out, err := requestHeader(t, b, nil, func(s *Session) { s.SetUser("ada"); s.Set("blob", "x") })
	if err != nil {
		t.Fatal(err)
	}
	stolen := out.header(t)
	clk.advance(time.Minute)
	out, err = requestHeader(t, b, stolen, func(s *Session) {
		s.GetString("blob") // loaded before the revocation...
		clk.advance(time.Millisecond)
		if err := b.RevokeUser(context.Background(), "ada"); err != nil {
			t.Fatal(err)
		}
		clk.advance(time.Millisecond)
		s.Set("blob", "y") // ...and saved after it
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := readBlob(t, b, out.header(t)); ok {
		t.Fatal("a cookie re-sealed after the revocation escaped it")
	}
}

func TestBrokenCookiesLeftAloneUntilWritten(t *testing.T) {
	// The name twice: one may be another app's on a parent domain. A
	// read-only request must not delete ours.
	b := newCookieBackend(t, Config{}, newClock())
	h := roundTrip(t, b, map[string]any{"blob": "x"})
	dup := append(append([]byte{}, h...), "; session=other"...)
	out, err := requestHeader(t, b, dup, func(s *Session) {
		if s.Len() != 0 {
			t.Error("an ambiguous cookie was read")
		}
	})
	if err != nil || len(out.cookies) != 0 {
		t.Fatalf("read-only request over a duplicated cookie wrote %v (err %v)", out.cookies, err)
	}
}

func TestSegmentsBeyondALoweredMaximumAreExpired(t *testing.T) {
	// An earlier deployment allowed 8 segments; this one allows 4.
	b := newCookieBackend(t, Config{MaxCookieSegments: 4}, newClock())
	old := []byte("session-0=0.6.a; session-1=1.6.b; session-2=2.6.c; session-3=3.6.d; session-4=4.6.e; session-5=5.6.f")
	out, err := requestHeader(t, b, old, func(s *Session) { s.Set("blob", "new") })
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"session-0", "session-1", "session-2", "session-3", "session-4", "session-5"}
	if got := out.expired(); !slices.Equal(got, want) {
		t.Fatalf("expired %v, want %v", got, want)
	}
	if v, ok := readBlob(t, b, out.header(t)); !ok || v != "new" {
		t.Fatal("new session unreadable")
	}
}

func TestQuotedCookieValue(t *testing.T) {
	b := newCookieBackend(t, Config{}, newClock())
	h := roundTrip(t, b, map[string]any{"blob": "q"})
	quoted := "session=\"" + strings.TrimPrefix(string(h), "session=") + "\""
	if v, ok := readBlob(t, b, []byte(quoted)); !ok || v != "q" {
		t.Fatal("a cookie value in double quotes (RFC 6265) was not read")
	}
}

func TestConfigLeavesOutSecrets(t *testing.T) {
	b := newCookieBackend(t, Config{}, nil)
	if b.Config().Secrets != nil {
		t.Fatal("Config() hands out the keys")
	}
}

// revocableBackend returns a cookie backend over cfg whose revocations are
// kept in a memory store on clk, so that moving clk ages the revocation
// records exactly as it ages the cookies.
func revocableBackend(t *testing.T, cfg Config, clk *clock) (*CookieBackend, store.Store) {
	t.Helper()
	// The sweeper would read clk from its own goroutine: keep it idle.
	st := memstore.New(memstore.Options{Now: clk.now, SweepInterval: 24 * time.Hour})
	t.Cleanup(func() { st.Close() })
	reg := store.NewRegistry(nil)
	if err := reg.Register("revocations", st); err != nil {
		t.Fatal(err)
	}
	cfg.Secrets = [][]byte{keyA}
	cfg.RevocationStore = "revocations"
	b, err := NewCookie(cfg, reg)
	if err != nil {
		t.Fatal(err)
	}
	clk.attach(b)
	return b, st
}

// TestRevokedCookieStaysRevokedForItsWholeLife: a revocation must be
// remembered for as long as any cookie sealed before it can still open.
// Session.SetMaxAge lengthens a cookie up to MaxAgeLimit; AbsoluteTimeout
// and IdleTimeout shorten it. A copy taken before RevokeUser is tried at
// every interesting moment up to the last instant its sealed expiry
// allows, and must never open as the user.
func TestRevokedCookieStaysRevokedForItsWholeLife(t *testing.T) {
	for _, tc := range []struct {
		name     string
		cfg      Config
		remember time.Duration // SetMaxAge at login; 0: none
		life     time.Duration // how long the cookie opens after login, unrevoked
	}{
		{"remember me beyond MaxAge", Config{MaxAge: 2 * time.Second, MaxAgeLimit: 30 * time.Second}, 30 * time.Second, 30 * time.Second},
		{"MaxAge alone", Config{MaxAge: 2 * time.Second}, 0, 2 * time.Second},
		{"AbsoluteTimeout cuts remember me", Config{MaxAge: 2 * time.Second, MaxAgeLimit: time.Minute, AbsoluteTimeout: 20 * time.Second}, time.Minute, 20 * time.Second},
		{"IdleTimeout cuts remember me", Config{MaxAge: 2 * time.Second, MaxAgeLimit: time.Minute, IdleTimeout: 15 * time.Second}, time.Minute, 15 * time.Second},
		{"long remember me", Config{MaxAge: time.Hour, MaxAgeLimit: 30 * 24 * time.Hour}, 30 * 24 * time.Hour, 30 * 24 * time.Hour},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clk := newClock()
			b, st := revocableBackend(t, tc.cfg, clk)
			login := clk.t
			out, err := requestHeader(t, b, nil, func(s *Session) {
				if err := s.SetUser("alice"); err != nil {
					t.Fatal(err)
				}
				if tc.remember != 0 {
					if err := s.SetMaxAge(tc.remember); err != nil {
						t.Fatal(err)
					}
				}
			})
			if err != nil {
				t.Fatal(err)
			}
			copied := out.header(t)
			user := func() string {
				var u string
				if _, err := requestHeader(t, b, copied, func(s *Session) { u = s.User() }); err != nil {
					t.Fatal(err)
				}
				return u
			}
			// The cookie really lives that long: the instants below test
			// the revocation, not the cookie's own expiry.
			clk.t = login.Add(tc.life - time.Millisecond)
			if u := user(); u != "alice" {
				t.Fatalf("unrevoked cookie at %v: user %q, want alice", tc.life-time.Millisecond, u)
			}
			clk.t = login.Add(tc.life)
			if u := user(); u != "" {
				t.Fatalf("cookie opens as %q at %v, past its life", u, tc.life)
			}

			revokedAt := login.Add(time.Millisecond)
			clk.t = revokedAt
			if err := b.RevokeUser(context.Background(), "alice"); err != nil {
				t.Fatal(err)
			}
			for _, at := range []time.Duration{
				2 * time.Millisecond, 2500 * time.Millisecond, 3500 * time.Millisecond, 10 * time.Second,
				tc.life / 2, tc.life - time.Second, tc.life - time.Millisecond,
			} {
				if at >= tc.life {
					continue
				}
				clk.t = login.Add(at)
				if u := user(); u != "" {
					t.Errorf("revoked cookie opens as %q %v after login (its life: %v)", u, at, tc.life)
				}
			}
			// Nor is the revocation kept forever: a store of revocations
			// must not grow with every user ever revoked.
			clk.t = revokedAt.Add(tc.life + revocationMargin)
			if _, err := st.Get(context.Background(), "revoked:alice"); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("revocation still stored %v after the cookie's life and the margin: %v", tc.life+revocationMargin, err)
			}
		})
	}
}

// TestRevocationCoversRememberMeSetInFlight: a request that loaded the
// session before RevokeUser and asks for "remember me" after it must not
// hand out a cookie that outlives the revocation record.
func TestRevocationCoversRememberMeSetInFlight(t *testing.T) {
	clk := newClock()
	b, _ := revocableBackend(t, Config{MaxAge: 2 * time.Second, MaxAgeLimit: 30 * time.Second}, clk)
	out, err := requestHeader(t, b, nil, func(s *Session) { s.SetUser("alice") })
	if err != nil {
		t.Fatal(err)
	}
	start := clk.t
	out, err = requestHeader(t, b, out.header(t), func(s *Session) {
		s.User() // loaded before the revocation...
		clk.advance(time.Millisecond)
		if err := b.RevokeUser(context.Background(), "alice"); err != nil {
			t.Fatal(err)
		}
		clk.advance(time.Millisecond)
		if err := s.SetMaxAge(30 * time.Second); err != nil { // ...remembered after it
			t.Fatal(err)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	laundered := out.header(t)
	for _, at := range []time.Duration{time.Second, 3500 * time.Millisecond, 10 * time.Second, 30*time.Second - time.Millisecond} {
		clk.t = start.Add(at)
		if _, err := requestHeader(t, b, laundered, func(s *Session) {
			if u := s.User(); u != "" {
				t.Errorf("cookie sealed in flight opens as %q %v after the request", u, at)
			}
		}); err != nil {
			t.Fatal(err)
		}
	}
}

// TestLoweredMaxAgeLimitBoundsOlderCookies: cookies sealed while
// MaxAgeLimit was higher carry a longer sealed expiry. The configuration
// reading them must still bound them to its own limit, or they would
// outlive its revocations.
func TestLoweredMaxAgeLimitBoundsOlderCookies(t *testing.T) {
	clk := newClock()
	before, _ := revocableBackend(t, Config{MaxAge: 2 * time.Second, MaxAgeLimit: 30 * time.Second}, clk)
	after, _ := revocableBackend(t, Config{MaxAge: 2 * time.Second, MaxAgeLimit: 5 * time.Second}, clk)
	sealed := clk.t
	out, err := requestHeader(t, before, nil, func(s *Session) {
		s.SetUser("alice")
		if err := s.SetMaxAge(30 * time.Second); err != nil {
			t.Fatal(err)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	old := out.header(t)
	user := func(b *CookieBackend, h []byte) (u string, set *sink) {
		set, err := requestHeader(t, b, h, func(s *Session) { u = s.User() })
		if err != nil {
			t.Fatal(err)
		}
		return u, set
	}

	for _, tc := range []struct {
		at   time.Duration
		want string
	}{
		{5*time.Second - time.Millisecond, "alice"},
		{5 * time.Second, ""},
		{29 * time.Second, ""},
	} {
		clk.t = sealed.Add(tc.at)
		if u, _ := user(after, old); u != tc.want {
			t.Errorf("old cookie read %v after its seal under the lowered limit: user %q, want %q", tc.at, u, tc.want)
		}
	}

	// Re-sealed under the lowered limit, the session's own MaxAge is cut
	// to it, in the sealed expiry and in the cookie's Max-Age.
	clk.t = sealed.Add(time.Second)
	out, err = requestHeader(t, after, old, func(s *Session) { s.Set("n", 1) })
	if err != nil {
		t.Fatal(err)
	}
	if line := out.cookies["session"]; !strings.Contains(line, "; Max-Age=5;") {
		t.Errorf("re-sealed under MaxAgeLimit 5s: Set-Cookie %s", line)
	}
	resealed := out.header(t)
	clk.t = sealed.Add(6*time.Second - time.Millisecond)
	if u, _ := user(before, resealed); u != "alice" {
		t.Errorf("re-sealed cookie before its capped expiry: user %q", u)
	}
	clk.t = sealed.Add(6 * time.Second)
	if u, _ := user(before, resealed); u != "" {
		t.Errorf("re-sealed cookie opens as %q past MaxAgeLimit 5s, even where the limit is higher", u)
	}

	// And a revocation under the lowered limit covers the old cookie for
	// its whole sealed life.
	clk.t = sealed.Add(time.Second)
	if err := after.RevokeUser(context.Background(), "alice"); err != nil {
		t.Fatal(err)
	}
	clk.t = sealed.Add(3 * time.Second)
	if u, _ := user(after, old); u != "" {
		t.Errorf("revoked old cookie opens as %q", u)
	}
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

func (r *recordingSink) AddHeader(name, value string) { r.headers = append(r.headers, name+": "+value) }

func (r *recordingSink) SetHeader(name string, value []byte) {
	r.headers = append(r.headers, name+": "+string(value))
}
