package kvsession

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"io"
	"log/slog"
	"maps"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/kvsession/kvsession/internal/race"
	"github.com/kvsession/kvsession/internal/sessioncookie"
	"github.com/kvsession/kvsession/store"
	"github.com/kvsession/kvsession/store/memstore"
	"github.com/kvsession/kvsession/store/storetest/faultstore"
)

func TestUntouchedSessionCostsNothing(t *testing.T) {
	st := newFakeStore()
	b := newBackend(t, Config{}, st)
	// Even with a well-formed cookie, a handler that never uses the session
	// causes no store call and no header.
	id, _ := b.GenerateID()
	out, err := request(t, b, id, nil)
	if err != nil {
		t.Fatal(err)
	}
	if n := st.count("get") + st.count("set") + st.count("delete"); n != 0 {
		t.Fatalf("store calls = %d, want 0", n)
	}
	if len(out.cookies) != 0 || len(out.headers) != 0 {
		t.Fatalf("response written: %+v", out)
	}
}

func TestNewSessionSavedWithSecureCookie(t *testing.T) {
	st := newFakeStore()
	b := newBackend(t, Config{}, st)
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	b.now = func() time.Time { return now }
	out, err := request(t, b, "", func(s *Session) {
		if s.ID() != "" {
			t.Errorf("new session has id %q before save", s.ID())
		}
		if err := s.Set("user", "ada"); err != nil {
			t.Fatal(err)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	id := out.cookieValue(t, "session")
	raw, err := base64.RawURLEncoding.DecodeString(id)
	if err != nil || len(raw) != 32 {
		t.Fatalf("id %q: %d bytes, err %v; want 32 random bytes, URL-safe", id, len(raw), err)
	}
	want := "session=" + id + "; Path=/; Max-Age=1209600; HttpOnly; SameSite=Lax"
	if got := out.cookies["session"]; got != want {
		t.Fatalf("Set-Cookie\n got %s\nwant %s", got, want)
	}
	wantHeaders := []string{`Cache-Control: no-cache="Set-Cookie"`, "Vary: Cookie"}
	if strings.Join(out.headers, "\n") != strings.Join(wantHeaders, "\n") {
		t.Fatalf("headers %q, want %q", out.headers, wantHeaders)
	}
	if ttl := st.ttl[b.storeKey([]byte(id))]; ttl != DefaultMaxAge {
		t.Fatalf("store TTL %v, want %v", ttl, DefaultMaxAge)
	}
	// The next request with that cookie sees the data and writes nothing.
	st.calls = map[string]int{}
	out, err = request(t, b, id, func(s *Session) {
		if v, ok := s.GetString("user"); !ok || v != "ada" {
			t.Errorf("user = %q, %v", v, ok)
		}
		if s.ID() != id {
			t.Errorf("ID() = %q, want %q", s.ID(), id)
		}
		if !s.Created().Equal(now) {
			t.Errorf("Created() = %v, want %v", s.Created(), now)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	// Read, not changed: no write and no cookie, but the response depends
	// on the session it read.
	if st.count("set") != 0 || len(out.cookies) != 0 || !slices.Equal(out.headers, []string{"Vary: Cookie"}) {
		t.Fatalf("unmodified session wrote: sets=%d %+v", st.count("set"), out)
	}
}

func TestCookieAttributesAsConfigured(t *testing.T) {
	cases := []struct {
		name string
		cfg  Config
		want string // attributes after the value
	}{
		{"defaults", Config{}, "; Path=/; Max-Age=1209600; HttpOnly; SameSite=Lax"},
		{"everything", Config{CookieName: "sid", Path: "/app", Domain: "example.com", Secure: true, SameSite: SameSiteNone, MaxAge: 90 * time.Minute, CookieExpires: true},
			"; Path=/app; Domain=example.com; Max-Age=5400; Expires=X; Secure; HttpOnly; SameSite=None"},
		{"strict script-readable", Config{SameSite: SameSiteStrict, DisableHTTPOnly: true}, "; Path=/; Max-Age=1209600; SameSite=Strict"},
		{"browser session", Config{BrowserSession: true}, "; Path=/; HttpOnly; SameSite=Lax"},
		{"browser session, legacy Expires asked", Config{BrowserSession: true, CookieExpires: true}, "; Path=/; HttpOnly; SameSite=Lax"},
		{"sub-second max age rounds up", Config{MaxAge: 1500 * time.Millisecond, CookieExpires: true}, "; Path=/; Max-Age=2; Expires=X; HttpOnly; SameSite=Lax"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b := newBackend(t, tc.cfg, newFakeStore())
			b.now = func() time.Time { return time.Unix(0, 0) }
			out, err := request(t, b, "", func(s *Session) { s.Set("k", 1) })
			if err != nil {
				t.Fatal(err)
			}
			name := b.CookieName()
			id := out.cookieValue(t, name)
			expires := time.Unix(0, 0).Add(b.Config().MaxAge).UTC().Format(time.RFC1123)
			expires = strings.Replace(expires, "UTC", "GMT", 1)
			want := name + "=" + id + strings.Replace(tc.want, "X", expires, 1)
			if got := out.cookies[name]; got != want {
				t.Fatalf("\n got %s\nwant %s", got, want)
			}
		})
	}
}

func TestEmptySessionDeletedAndCookieExpired(t *testing.T) {
	st := newFakeStore()
	b := newBackend(t, Config{Domain: "example.com", Secure: true}, st)
	out, _ := request(t, b, "", func(s *Session) { s.Set("a", 1) })
	id := out.cookieValue(t, "session")

	out, err := request(t, b, id, func(s *Session) { s.Delete("a") })
	if err != nil {
		t.Fatal(err)
	}
	if len(st.keys()) != 0 {
		t.Fatalf("record not deleted: %v", st.keys())
	}
	want := "session=; Path=/; Domain=example.com; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Secure; HttpOnly; SameSite=Lax"
	if got := out.cookies["session"]; got != want {
		t.Fatalf("\n got %s\nwant %s", got, want)
	}
	if len(out.headers) != 2 {
		t.Fatalf("headers %q, want Vary and Cache-Control", out.headers)
	}
}

func TestEmptySessionWithoutCookieSetsNoCookie(t *testing.T) {
	st := newFakeStore()
	b := newBackend(t, Config{}, st)
	out, err := request(t, b, "", func(s *Session) {
		s.Set("a", 1)
		s.Clear()
	})
	if err != nil {
		t.Fatal(err)
	}
	// The session was used: the response varies on the cookie, even
	// though it sets none.
	if len(out.cookies) != 0 || !slices.Equal(out.headers, []string{"Vary: Cookie"}) || st.count("set")+st.count("delete") != 0 {
		t.Fatalf("wrote %+v, store calls %v", out, st.calls)
	}
}

func TestUnusableCookieGetsFreshSession(t *testing.T) {
	valid := strings.Repeat("A", 43)
	cases := []struct {
		name    string
		cookie  string
		lookups int // store Gets expected
	}{
		{"unknown well-formed id", valid, 1},
		{"too short", valid[:42], 0},
		{"too long", valid + "A", 0},
		{"padding", valid[:42] + "=", 0},
		{"standard base64 alphabet", valid[:42] + "+", 0},
		{"path traversal", "../../" + valid[:37], 0},
		{"NUL byte", valid[:42] + "\x00", 0},
		{"oversized", strings.Repeat("A", 64<<10), 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			st := newFakeStore()
			b := newBackend(t, Config{}, st)
			st.data[tc.cookie] = []byte("planted") // never adopted, never read
			out, err := request(t, b, tc.cookie, func(s *Session) {
				if s.Len() != 0 {
					t.Errorf("session not empty")
				}
				s.Set("k", "v")
			})
			if err != nil {
				t.Fatal(err)
			}
			if got := st.count("get"); got != tc.lookups {
				t.Errorf("store lookups = %d, want %d", got, tc.lookups)
			}
			id := out.cookieValue(t, "session")
			if id == tc.cookie || !b.validID([]byte(id)) {
				t.Fatalf("issued id %q (client sent %q)", id, tc.cookie)
			}
			if string(st.data[tc.cookie]) != "planted" {
				t.Fatalf("client-chosen key was written")
			}
		})
	}
}

func TestUnusableCookieOnEmptySessionIsExpired(t *testing.T) {
	b := newBackend(t, Config{}, newFakeStore())
	out, err := request(t, b, "garbage", func(s *Session) { s.Get("x") })
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.cookies["session"], "Max-Age=0") {
		t.Fatalf("stale cookie not expired: %+v", out)
	}
}

func TestModifiedSessionSavedUnderSameID(t *testing.T) {
	st := newFakeStore()
	b := newBackend(t, Config{MaxAge: time.Hour}, st)
	out, _ := request(t, b, "", func(s *Session) { s.Set("n", 1) })
	id := out.cookieValue(t, "session")
	out, err := request(t, b, id, func(s *Session) {
		n, _ := s.GetInt("n")
		s.Set("n", n+1)
	})
	if err != nil {
		t.Fatal(err)
	}
	// The cookie the client holds names the same id and expires within a
	// hundredth of MaxAge of what a new one would say: none is sent.
	if got, ok := out.cookies["session"]; ok {
		t.Fatalf("a save under the same id resent the cookie: %s", got)
	}
	vals, err := b.Get(t.Context(), id)
	if err != nil || vals["n"] != int64(2) {
		t.Fatalf("stored %v, %v", vals, err)
	}
	if st.ttl[b.storeKey([]byte(id))] != time.Hour {
		t.Fatalf("ttl %v", st.ttl[b.storeKey([]byte(id))])
	}
}

func TestExtendOnAccess(t *testing.T) {
	fs := newFakeStore()
	b := newBackend(t, Config{ExtendOnAccess: true, MaxAge: time.Minute}, touchingStore{fs})
	clk := newClock()
	b.now = clk.now
	out, _ := request(t, b, "", func(s *Session) { s.Set("a", "b") })
	clk.advance(2 * time.Second) // past a refresh step: a hundredth of MaxAge, at least a second
	id := out.cookieValue(t, "session")
	before := append([]byte(nil), fs.data[b.storeKey([]byte(id))]...)
	fs.ttl[b.storeKey([]byte(id))] = 0
	fs.calls = map[string]int{}

	out, err := request(t, b, id, func(s *Session) { s.Get("a") })
	if err != nil {
		t.Fatal(err)
	}
	if fs.ttl[b.storeKey([]byte(id))] != time.Minute {
		t.Fatalf("TTL not refreshed: %v", fs.ttl[b.storeKey([]byte(id))])
	}
	// One conditional rewrite of the record as loaded (a Swap, counted as
	// the write it is), never a Touch: a Touch cannot tell whether the
	// record is still the one loaded, and would keep a rotation's forward
	// alive for a whole MaxAge.
	if fs.count("touch") != 0 || fs.count("set") != 1 {
		t.Fatalf("calls %v, want one Swap and no Touch", fs.calls)
	}
	if !bytes.Equal(fs.data[b.storeKey([]byte(id))], before) {
		t.Fatal("record changed by a renewal")
	}
	if !strings.Contains(out.cookies["session"], "Max-Age=60;") || len(out.headers) != 2 {
		t.Fatalf("cookie not refreshed: %+v", out)
	}

	// A session untouched by the handler is not renewed: no store call.
	fs.calls = map[string]int{}
	if out, _ := request(t, b, id, nil); fs.count("touch")+fs.count("set") != 0 || len(out.cookies) != 0 {
		t.Fatalf("untouched session renewed: %v %+v", fs.calls, out)
	}
}

// TestExtendOnAccessAfterConcurrentDestroy: the session was destroyed by
// another request between this one's load and its renewal. The renewal
// must not bring it back, is not an error, and writes no cookie.
func TestExtendOnAccessAfterConcurrentDestroy(t *testing.T) {
	fs := newFakeStore()
	b := newBackend(t, Config{ExtendOnAccess: true}, touchingStore{fs})
	out, _ := request(t, b, "", func(s *Session) { s.Set("a", "b") })
	id := out.cookieValue(t, "session")
	out, err := request(t, b, id, func(s *Session) {
		s.Get("a")
		delete(fs.data, b.storeKey([]byte(id))) // the other request's logout
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(fs.data) != 0 {
		t.Fatalf("destroyed session resurrected: %v", fs.keys())
	}
	// No cookie either: the request that destroyed it wrote the one its
	// client needs, which may already be a new session's.
	if len(out.cookies) != 0 {
		t.Fatalf("a renewal of a session destroyed meanwhile wrote cookies %v", out.cookies)
	}
}

func TestRenewID(t *testing.T) {
	st := newFakeStore()
	b := newBackend(t, Config{}, st)
	out, _ := request(t, b, "", func(s *Session) { s.Set("cart", "3 apples") })
	oldID := out.cookieValue(t, "session")

	out, err := request(t, b, oldID, func(s *Session) {
		if err := s.RenewID(); err != nil {
			t.Fatal(err)
		}
		if s.ID() == oldID || s.ID() == "" {
			t.Errorf("ID() after RenewID = %q", s.ID())
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	newID := out.cookieValue(t, "session")
	if newID == oldID {
		t.Fatal("id not renewed")
	}
	if _, err := b.Get(t.Context(), oldID); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("old id still loads: %v", err)
	}
	vals, err := b.Get(t.Context(), newID)
	if err != nil || vals["cart"] != "3 apples" {
		t.Fatalf("data under new id: %v %v", vals, err)
	}
}

func TestRenewIDKeepsOldRecordWhenSaveFails(t *testing.T) {
	st := newFakeStore()
	b := newBackend(t, Config{}, st)
	out, _ := request(t, b, "", func(s *Session) { s.Set("cart", 1) })
	oldID := out.cookieValue(t, "session")
	st.fail["set"] = errBoom
	out, err := request(t, b, oldID, func(s *Session) { s.RenewID() })
	if !errors.Is(err, errBoom) || len(out.cookies) != 0 {
		t.Fatalf("err %v, cookies %v", err, out.cookies)
	}
	delete(st.fail, "set")
	if vals, err := b.Get(t.Context(), oldID); err != nil || vals["cart"] != int64(1) {
		t.Fatalf("old session lost: %v %v", vals, err)
	}
}

// TestRenewIDWhenOldRecordCannotBeDeleted: the new record is saved and its
// cookie sent; the old record, holding only the pre-renewal data, is left
// to its TTL with a warning rather than failing the request.
func TestRenewIDWhenOldRecordCannotBeDeleted(t *testing.T) {
	st := newFakeStore()
	var logs bytes.Buffer
	b := newBackend(t, Config{Logger: slog.New(slog.NewTextHandler(&logs, nil))}, st)
	out, _ := request(t, b, "", func(s *Session) { s.Set("cart", 1) })
	oldID := out.cookieValue(t, "session")
	st.fail["delete"] = errBoom
	out, err := request(t, b, oldID, func(s *Session) {
		s.RenewID()
		s.Set("user", "ada")
	})
	if err != nil {
		t.Fatal(err)
	}
	newID := out.cookieValue(t, "session")
	delete(st.fail, "delete")
	if vals, _ := b.Get(t.Context(), newID); vals["user"] != "ada" || vals["cart"] != int64(1) {
		t.Fatalf("new record: %v", vals)
	}
	if vals, _ := b.Get(t.Context(), oldID); vals["user"] != nil {
		t.Fatalf("old record gained the login: %v", vals)
	}
	if !strings.Contains(logs.String(), "renewed session id") {
		t.Fatalf("no warning: %q", logs.String())
	}
}

func TestDestroy(t *testing.T) {
	st := newFakeStore()
	b := newBackend(t, Config{}, st)
	out, _ := request(t, b, "", func(s *Session) { s.Set("user", "ada") })
	id := out.cookieValue(t, "session")

	st.fail["delete"] = errBoom
	request(t, b, id, func(s *Session) {
		if err := s.Destroy(); !errors.Is(err, errBoom) {
			t.Errorf("Destroy error = %v", err)
		}
		if v, _ := s.GetString("user"); v != "ada" {
			t.Errorf("failed Destroy emptied the session")
		}
	})
	delete(st.fail, "delete")

	out, err := request(t, b, id, func(s *Session) {
		if err := s.Destroy(); err != nil {
			t.Fatal(err)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(st.keys()) != 0 {
		t.Fatalf("records left: %v", st.keys())
	}
	if !strings.Contains(out.cookies["session"], "Max-Age=0") {
		t.Fatalf("cookie not expired: %v", out.cookies)
	}
}

func TestStoreErrors(t *testing.T) {
	st := newFakeStore()
	b := newBackend(t, Config{}, st)
	out, _ := request(t, b, "", func(s *Session) { s.Set("n", 1) })
	id := out.cookieValue(t, "session")

	t.Run("load", func(t *testing.T) {
		st.fail["get"] = errBoom
		defer delete(st.fail, "get")
		st.calls = map[string]int{}
		out, err := request(t, b, id, func(s *Session) {
			if _, ok := s.Get("n"); ok {
				t.Error("value from a failed load")
			}
			if err := s.Set("n", 99); !errors.Is(err, errBoom) {
				t.Errorf("Set after failed load: %v", err)
			}
			if !errors.Is(s.Err(), errBoom) {
				t.Errorf("Err() = %v", s.Err())
			}
		})
		var se *StoreError
		if !errors.As(err, &se) || se.Op != "load" || !errors.Is(err, errBoom) {
			t.Fatalf("err = %v", err)
		}
		if st.count("set")+st.count("delete") != 0 || len(out.cookies) != 0 {
			t.Fatal("a failed load wrote state")
		}
	})
	t.Run("save", func(t *testing.T) {
		st.fail["set"] = errBoom
		defer delete(st.fail, "set")
		out, err := request(t, b, id, func(s *Session) { s.Set("n", 2) })
		if !errors.Is(err, errBoom) || len(out.cookies)+len(out.headers) != 0 {
			t.Fatalf("err %v, response %+v", err, out)
		}
	})
	if vals, _ := b.Get(t.Context(), id); vals["n"] != int64(1) {
		t.Fatalf("stored data changed by failures: %v", vals)
	}
}

func TestSessionTooLarge(t *testing.T) {
	st := newFakeStore()
	b := newBackend(t, Config{MaxRecordBytes: 1024}, st)
	out, _ := request(t, b, "", func(s *Session) { s.Set("small", "x") })
	id := out.cookieValue(t, "session")
	out, err := request(t, b, id, func(s *Session) { s.Set("big", strings.Repeat("x", 2000)) })
	if !errors.Is(err, ErrSessionTooLarge) || len(out.cookies) != 0 {
		t.Fatalf("err %v cookies %v", err, out.cookies)
	}
	if vals, _ := b.Get(t.Context(), id); len(vals) != 1 || vals["small"] != "x" {
		t.Fatalf("stored %v", vals)
	}
}

type failingReader struct{}

func (failingReader) Read([]byte) (int, error) { return 0, io.ErrUnexpectedEOF }

func TestRandomSourceFailureIsAnError(t *testing.T) {
	st := newFakeStore()
	b := newBackend(t, Config{}, st)
	b.rand = failingReader{}
	out, err := request(t, b, "", func(s *Session) { s.Set("a", 1) })
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("err = %v", err)
	}
	if len(st.keys()) != 0 || len(out.cookies) != 0 {
		t.Fatal("saved a session without a random id")
	}
	if _, err := b.GenerateID(); err == nil {
		t.Fatal("GenerateID succeeded without randomness")
	}
}

func TestPrefixSeparatesConfigsSharingAStore(t *testing.T) {
	st := newFakeStore()
	reg := store.NewRegistry(nil)
	reg.Register("shared", st)
	admin, err := New(Config{Store: "shared", Prefix: "admin:", CookieName: "admin"}, reg)
	if err != nil {
		t.Fatal(err)
	}
	users, err := New(Config{Store: "shared", Prefix: "user:"}, reg)
	if err != nil {
		t.Fatal(err)
	}
	out, _ := request(t, admin, "", func(s *Session) { s.Set("role", "root") })
	id := out.cookieValue(t, "admin")
	if k := admin.storeKey([]byte(id)); !strings.HasPrefix(k, "admin:") || st.data[k] == nil {
		t.Fatalf("keys %v, want admin:%s", st.keys(), id)
	}
	// The same id presented to the other configuration finds nothing.
	request(t, users, id, func(s *Session) {
		if s.Len() != 0 {
			t.Fatal("user config read the admin session")
		}
	})
}

func TestByIDMethods(t *testing.T) {
	b := newBackend(t, Config{}, newFakeStore())
	ctx := t.Context()
	id, err := b.GenerateID()
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Set(ctx, id, map[string]any{"a": "x", "n": 7}); err != nil {
		t.Fatal(err)
	}
	vals, err := b.Get(ctx, id)
	if err != nil || vals["a"] != "x" || vals["n"] != int64(7) {
		t.Fatalf("Get: %v %v", vals, err)
	}
	if err := b.Delete(ctx, id); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Get(ctx, id); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("after Delete: %v", err)
	}
	for _, bad := range []string{"", "short", id + "x"} {
		if _, err := b.Get(ctx, bad); !errors.Is(err, ErrInvalidID) {
			t.Errorf("Get(%q): %v", bad, err)
		}
		if err := b.Delete(ctx, bad); !errors.Is(err, ErrInvalidID) {
			t.Errorf("Delete(%q): %v", bad, err)
		}
	}
}

func TestNewRejectsUnknownStore(t *testing.T) {
	_, err := New(Config{Store: "nope"}, store.NewRegistry(nil))
	var ce *ConfigError
	if !errors.As(err, &ce) || ce.Field != "Store" {
		t.Fatalf("err = %v", err)
	}
	// With a default factory the name is created, as Litestar's registry does.
	reg := store.NewRegistry(func(string) (store.Store, error) { return newFakeStore(), nil })
	if _, err := New(Config{Store: "anything"}, reg); err != nil {
		t.Fatal(err)
	}
}

// TestNewWithoutRegistry: New with a nil registry runs on a memory store
// of the backend's own, unless the Config names a store, which only a
// registry can hold.
func TestNewWithoutRegistry(t *testing.T) {
	tests := []struct {
		name      string
		cfg       Config
		wantField string // "" for a backend on its own memory store
	}{
		{"zero Config", Config{}, ""},
		{"the default store named", Config{Store: DefaultStore}, ""},
		{"with Lock", Config{Lock: true}, ""},
		{"another store named", Config{Store: "redis"}, "Store"},
		{"an invalid Config still names its field", Config{SessionIDBytes: 8}, "SessionIDBytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := New(tt.cfg, nil)
			if tt.wantField != "" {
				var ce *ConfigError
				if !errors.As(err, &ce) || ce.Field != tt.wantField {
					t.Fatalf("New(%+v, nil) = %v, want a ConfigError on %s", tt.cfg, err, tt.wantField)
				}
				return
			}
			if err != nil {
				t.Fatalf("New(%+v, nil): %v", tt.cfg, err)
			}
			defer b.Close()
			if _, ok := b.Store().(*memstore.Store); !ok {
				t.Fatalf("Store() = %T, want the backend's own *memstore.Store", b.Store())
			}
			out, err := request(t, b, "", func(s *Session) { s.SetInt("n", 1) })
			if err != nil {
				t.Fatal(err)
			}
			if _, err := request(t, b, out.cookieValue(t, DefaultCookieName), func(s *Session) {
				if n, ok := s.GetInt("n"); !ok || n != 1 {
					t.Errorf("the next request reads n = %d, %v; want 1", n, ok)
				}
			}); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestRootLinksOnlyTheMemoryStore: New's memory default makes the root
// package import store/memstore, and must stay the only store it imports,
// so that a program using memory alone does not link Badger or a Redis
// client (doc.go, README).
func TestRootLinksOnlyTheMemoryStore(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go list; skipped with -short")
	}
	out, err := exec.Command("go", "list", "-deps", "github.com/kvsession/kvsession").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	deps := strings.Fields(string(out))
	if !slices.Contains(deps, "github.com/kvsession/kvsession/store/memstore") {
		t.Errorf("the root package does not link store/memstore: has New's default moved?")
	}
	for _, banned := range []string{
		"github.com/kvsession/kvsession/store/badgerstore",
		"github.com/kvsession/kvsession/store/redisstore",
		"github.com/dgraph-io/badger",
		"github.com/redis/rueidis",
		"github.com/valyala/fasthttp",
	} {
		for _, d := range deps {
			if strings.HasPrefix(d, banned) {
				t.Errorf("the root package links %s", d)
			}
		}
	}
}

// TestServerBackendClose: Close releases the memory store New made, and
// only that: a registry's store is the registry's to close.
func TestServerBackendClose(t *testing.T) {
	t.Run("own memory store", func(t *testing.T) {
		b, err := New(Config{}, nil)
		if err != nil {
			t.Fatal(err)
		}
		for i := range 2 { // closing again does nothing
			if err := b.Close(); err != nil {
				t.Fatalf("Close #%d: %v", i+1, err)
			}
		}
		_, err = request(t, b, "", func(s *Session) { s.SetInt("n", 1) })
		if !errors.Is(err, store.ErrClosed) {
			t.Fatalf("a save after Close: %v, want store.ErrClosed", err)
		}
	})
	t.Run("registry's store", func(t *testing.T) {
		st := memstore.New(memstore.Options{})
		defer st.Close()
		b := newBackend(t, Config{}, st)
		if err := b.Close(); err != nil {
			t.Fatal(err)
		}
		if err := st.Set(t.Context(), "k", []byte("v"), 0); err != nil {
			t.Fatalf("the registry's store after the backend's Close: %v", err)
		}
		if _, err := request(t, b, "", func(s *Session) { s.SetInt("n", 1) }); err != nil {
			t.Fatalf("the backend on a registry's store after Close: %v", err)
		}
	})
}

// TestNamesOutliveTheRequest: the loaded record's buffer is reused by the
// next request on an Appender store, so keys handed to the application must
// be copies.
func TestNamesOutliveTheRequest(t *testing.T) {
	st := memstore.New(memstore.Options{})
	defer st.Close()
	b := newBackend(t, Config{}, st)
	ctx := t.Context()
	first, _ := b.GenerateID()
	second, _ := b.GenerateID()
	b.Set(ctx, first, map[string]any{"alpha": 1})
	b.Set(ctx, second, map[string]any{"omega": 2})

	var keys []string
	var values map[string]any
	request(t, b, first, func(s *Session) { keys, values = s.Keys(), s.Values() })
	for i := 0; i < 10; i++ {
		request(t, b, second, func(s *Session) { s.Keys() })
	}
	if len(keys) != 1 || keys[0] != "alpha" {
		t.Fatalf("keys changed after the request: %q", keys)
	}
	if _, ok := values["alpha"]; !ok {
		t.Fatalf("values changed after the request: %v", values)
	}
}

// TestSetAfterDestroyStartsNewSession: logging out and leaving a flash
// message in the same request gives the message a new id, never the old one.
func TestSetAfterDestroyStartsNewSession(t *testing.T) {
	st := newFakeStore()
	b := newBackend(t, Config{}, st)
	out, _ := request(t, b, "", func(s *Session) { s.Set("user", "ada") })
	oldID := out.cookieValue(t, "session")
	out, err := request(t, b, oldID, func(s *Session) {
		if err := s.Destroy(); err != nil {
			t.Fatal(err)
		}
		s.Set("flash", "bye")
	})
	if err != nil {
		t.Fatal(err)
	}
	newID := out.cookieValue(t, "session")
	if newID == oldID {
		t.Fatal("destroyed id reused")
	}
	vals, err := b.Get(t.Context(), newID)
	if err != nil || len(vals) != 1 || vals["flash"] != "bye" {
		t.Fatalf("new session %v %v", vals, err)
	}
	if _, err := b.Get(t.Context(), oldID); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("old session: %v", err)
	}
}

func TestSetByRotatedOutIDDoesNotFork(t *testing.T) {
	b, clk, _ := rvSetup(t, Config{RotationInterval: time.Minute, MaxAge: time.Hour, RotationGrace: 30 * time.Second})
	ctx := context.Background()
	out, _ := request(t, b, "", func(s *Session) { s.Set("n", 1) })
	old := out.cookieValue(t, "session")
	clk.advance(2 * time.Minute)
	out, _ = request(t, b, old, func(s *Session) { s.Len() })
	cur := out.cookieValue(t, "session")
	if cur == old {
		t.Fatal("no rotation")
	}
	if err := b.Set(ctx, old, map[string]any{"n": 2}); err != nil {
		t.Fatal(err)
	}
	clk.advance(time.Minute) // past grace
	aliveOld := false
	request(t, b, old, func(s *Session) { aliveOld = s.Len() > 0 })
	aliveCur := false
	request(t, b, cur, func(s *Session) { aliveCur = s.Len() > 0 })
	if aliveOld && aliveCur {
		t.Error("Set(old id) during grace made the rotated-out id a full session again (fork)")
	}
}

// TestRequestAllocations pins the hot path's allocations on the memory
// store: a request that reads a session, or changes a value of the same
// size and saves it, allocates nothing once pools are warm.
func TestRequestAllocations(t *testing.T) {
	if race.Enabled {
		t.Skip("the race detector drops pooled objects at random")
	}
	st := memstore.New(memstore.Options{})
	defer st.Close()
	be := newBackend(t, Config{}, st)
	ids := seed(t, be, 10, map[string]any{"counter": 1000, "user": "ada"})
	for _, tc := range []struct {
		name string
		work func(*Session)
	}{
		{"read", func(s *Session) { s.GetInt("counter") }},
		{"increment", increment},
	} {
		i := 0
		request := func() {
			s := be.LoadFromRequest(t.Context(), ids[i%len(ids)])
			i++
			tc.work(s)
			if err := be.StoreInResponse(s, nopSink{}); err != nil {
				t.Fatal(err)
			}
			be.Release(s)
		}
		if n := testing.AllocsPerRun(1000, request); n != 0 {
			t.Errorf("%s: %v allocations per request, want 0", tc.name, n)
		}
	}
}

// TestLoadKeysAreLentOnlyToBorrowers: a store that says it keeps no key
// (store.Traits.BorrowsKeys) is handed a view of the session's reused buffer; any
// other store gets a key of its own, which later requests leave intact.
func TestLoadKeysAreLentOnlyToBorrowers(t *testing.T) {
	for _, borrows := range []bool{false, true} {
		t.Run(map[bool]string{false: "keeps keys", true: "borrows keys"}[borrows], func(t *testing.T) {
			mem := memstore.New(memstore.Options{})
			t.Cleanup(func() { mem.Close() })
			rec := &keyRecorder{Store: mem}
			var st store.Store = rec
			if borrows {
				st = borrowingRecorder{rec}
			}
			b := newBackend(t, Config{}, st)
			ids := make([]string, 20)
			for i := range ids {
				out, err := request(t, b, "", func(s *Session) { s.SetInt("n", i) })
				if err != nil {
					t.Fatal(err)
				}
				ids[i] = out.cookieValue(t, "session")
			}
			var first string
			for i, id := range ids {
				_, err := request(t, b, id, func(s *Session) {
					if n, ok := s.GetInt("n"); !ok || n != i {
						t.Fatalf("session %d reads n=%d, %v", i, n, ok)
					}
					key := rec.last()
					lent := len(s.keyBuf) > 0 && unsafe.StringData(key) == unsafe.SliceData(s.keyBuf)
					if lent != borrows {
						t.Fatalf("key lent from the session's buffer: %v, want %v", lent, borrows)
					}
					if i == 0 {
						first = key
					}
				})
				if err != nil {
					t.Fatal(err)
				}
			}
			if want := b.storeKey([]byte(ids[0])); !borrows && first != want {
				t.Fatalf("a key the store kept changed under it: %q, want %q", first, want)
			}
		})
	}
}

// TestRotationFaultsLoseNothing injects faults into the periodic id
// rotation (RotationInterval) and into following its forward record.
func TestRotationFaultsLoseNothing(t *testing.T) {
	type ids struct{ old, new string } // new: "" until rotated
	tests := []struct {
		name string
		// rotated: run the fault after a successful rotation, with the
		// old cookie (following the forward); else during the rotation.
		rotated bool
		rule    func(b *ServerBackend, id ids) faultstore.Rule
		// also, if set, is a second fault, added after rule.
		also func(b *ServerBackend, id ids) faultstore.Rule
		// failed: the request must fail; otherwise it must succeed.
		failed bool
		// keepsNew: the request fails without knowing whether the old key
		// was retired, so the new record must stay (and stay indexed).
		keepsNew bool
	}{
		{
			name: "new record not written",
			rule: func(b *ServerBackend, id ids) faultstore.Rule {
				oldKey := b.storeKey([]byte(id.old))
				return faultstore.Rule{Methods: faultstore.Set, Key: func(k string) bool { return k != oldKey }}
			},
			failed: true,
		},
		{
			// The request fails and the new record is taken back: the old
			// id must not stay fully valid beside the new one.
			name: "forward record not written",
			rule: func(b *ServerBackend, id ids) faultstore.Rule {
				return faultstore.Rule{Methods: faultstore.Swap, Prefix: b.storeKey([]byte(id.old))}
			},
			failed: true,
		},
		{
			// The forward landed but its reply was lost (a timeout): the
			// rotation stands, and the new record must not be taken back.
			name: "forward written, its reply lost",
			rule: func(b *ServerBackend, id ids) faultstore.Rule {
				return faultstore.Rule{Methods: faultstore.Swap, Prefix: b.storeKey([]byte(id.old)), ErrAfterCall: true}
			},
		},
		{
			// As above, and the old key cannot be read back to tell: the
			// request fails, and the new record, which the old cookie now
			// reaches, stays where DestroyUserSessions finds it.
			name: "forward written, its reply lost, old key unreadable",
			rule: func(b *ServerBackend, id ids) faultstore.Rule {
				return faultstore.Rule{Methods: faultstore.Swap, Prefix: b.storeKey([]byte(id.old)), ErrAfterCall: true}
			},
			also: func(b *ServerBackend, id ids) faultstore.Rule {
				// Skip the request's load of the old key and the re-read
				// before rotating (refresh): fail the look back only.
				return faultstore.Rule{Methods: faultstore.Reads, Prefix: b.storeKey([]byte(id.old)), Skip: 2}
			},
			failed:   true,
			keepsNew: true,
		},
		{
			name:    "forward followed, new record unreadable",
			rotated: true,
			rule: func(b *ServerBackend, id ids) faultstore.Rule {
				return faultstore.Rule{Methods: faultstore.Reads, Prefix: b.storeKey([]byte(id.new))}
			},
			failed: true,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			clk := newClock()
			fs := faultstore.New(memstore.New(memstore.Options{Now: clk.now}))
			defer fs.Store().Close()
			var logs bytes.Buffer
			b := newBackend(t, Config{RotationInterval: time.Hour, Logger: slog.New(slog.NewTextHandler(&logs, nil))}, fs.Store())
			b.now = clk.now
			out, err := request(t, b, "", func(s *Session) { s.Set("v", "orig"); s.SetUser("ada") })
			if err != nil {
				t.Fatal(err)
			}
			id := ids{old: out.cookieValue(t, "session")}
			clk.advance(time.Hour) // rotation due
			if tc.rotated {
				out, err := request(t, b, id.old, func(s *Session) { s.GetString("v") })
				if err != nil {
					t.Fatal(err)
				}
				id.new = out.cookieValue(t, "session")
			}
			before := faultSnapshot(t, fs, nil)
			fs.ResetCalls()
			r := tc.rule(b, id)
			r.Err = errFault
			rule := fs.Add(r)
			var also *faultstore.Handle
			if tc.also != nil {
				r := tc.also(b, id)
				r.Err = errFault
				also = fs.Add(r)
			}

			out, err = request(t, b, id.old, func(s *Session) { s.GetString("v") })
			if rule.Hits() == 0 {
				t.Fatal("the fault was never met")
			}
			if !tc.failed {
				if err != nil || len(out.cookies) == 0 {
					t.Fatalf("err %v, cookies %v: want the new cookie", err, out.cookies)
				}
				id.new = out.cookieValue(t, "session")
			} else if tc.keepsNew {
				if !errors.Is(err, errFault) || len(out.cookies) != 0 {
					t.Fatalf("err %v, cookies %v: want the fault and no cookie", err, out.cookies)
				}
			} else {
				if !errors.Is(err, errFault) || len(out.cookies) != 0 {
					t.Fatalf("err %v, cookies %v: want the fault and no cookie", err, out.cookies)
				}
				after := faultSnapshot(t, fs, before)
				for k, v := range before {
					if after[k] != v {
						t.Errorf("record %q changed by a failed request", k)
					}
				}
				if tc.rotated {
					if !maps.Equal(before, after) || fs.Calls(faultstore.Set|faultstore.Delete) != 0 {
						t.Errorf("a failed load wrote: %d writes", fs.Calls(faultstore.Set|faultstore.Delete))
					}
				} else if len(after) != len(before) {
					// The new record, if written, was taken back.
					t.Errorf("records before %d, after %d", len(before), len(after))
				}
			}
			rule.Remove()
			if also != nil {
				also.Remove()
			}

			// Nothing lost: every cookie the client may hold still reaches
			// the data.
			for _, cookie := range []string{id.old, id.new} {
				if cookie == "" {
					continue
				}
				request(t, b, cookie, func(s *Session) {
					if v, _ := s.GetString("v"); v != "orig" || s.User() != "ada" {
						t.Errorf("cookie %.6s…: v=%q user=%q", cookie, v, s.User())
					}
				})
			}
			// And logging the user out everywhere ends every one of them.
			if _, err := b.DestroyUserSessions(t.Context(), "ada"); err != nil {
				t.Fatal(err)
			}
			for _, cookie := range []string{id.old, id.new} {
				if cookie == "" {
					continue
				}
				request(t, b, cookie, func(s *Session) {
					if v, _ := s.GetString("v"); v != "" || s.User() != "" {
						t.Errorf("after DestroyUserSessions, cookie %.6s… still reaches v=%q user=%q", cookie, v, s.User())
					}
				})
			}
		})
	}
}

// TestFailedDestroyFailsTheResponse: a handler that ignores Destroy's
// error must not get a response that looks like a logout.
func TestFailedDestroyFailsTheResponse(t *testing.T) {
	fs := faultstore.New(memstore.New(memstore.Options{}))
	defer fs.Store().Close()
	b := newBackend(t, Config{}, fs.Store())
	out, _ := request(t, b, "", func(s *Session) { s.Set("v", "orig") })
	id := out.cookieValue(t, "session")

	rule := fs.Fail(faultstore.Delete, errFault)
	out, err := request(t, b, id, func(s *Session) {
		s.Destroy()                  // error ignored
		s.Set("flash", "logged out") // and the handler carries on
	})
	if !errors.Is(err, errFault) || len(out.cookies) != 0 || fs.Calls(faultstore.Set) != 1 {
		t.Fatalf("err %v, cookies %v, %d Sets: want the delete's error, nothing written", err, out.cookies, fs.Calls(faultstore.Set))
	}
	// A retry within the request that works is a logout after all.
	out, err = request(t, b, id, func(s *Session) {
		if s.Destroy() == nil {
			t.Fatal("rule removed too early")
		}
		rule.Remove()
		if err := s.Destroy(); err != nil {
			t.Fatal(err)
		}
	})
	if err != nil || !strings.Contains(out.cookies["session"], "Max-Age=0") {
		t.Fatalf("retried Destroy: %v, cookies %v", err, out.cookies)
	}
}

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

func newMem(t *testing.T) *memstore.Store {
	st := memstore.New(memstore.Options{})
	t.Cleanup(func() { st.Close() })
	return st
}

// statusRequest is one request on b that runs fn and ends with a response
// of the given status.
func statusRequest(t *testing.T, b Backend, header []byte, status int, fn func(s *Session)) *sink {
	t.Helper()
	s := b.LoadFromRequest(context.Background(), header)
	defer b.Release(s)
	if fn != nil {
		fn(s)
	}
	out := &sink{}
	if err := b.StoreInResponseStatus(s, out, status); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestServerErrorDropsTheRequestsChanges: on both backends, a handler that
// changes the session and answers 5xx leaves what was stored and the
// client's cookie as they were, unless SaveOnServerError; a 4xx saves.
func TestServerErrorDropsTheRequestsChanges(t *testing.T) {
	backends := map[string]func(t *testing.T, cfg Config) Backend{
		"server": func(t *testing.T, cfg Config) Backend { return newBackend(t, cfg, newMem(t)) },
		"cookie": func(t *testing.T, cfg Config) Backend { return newCookieBackend(t, cfg, nil) },
	}
	for name, newB := range backends {
		for _, tc := range []struct {
			status    int
			saveOn5xx bool
			wantSaved bool
		}{
			{500, false, false},
			{503, false, false},
			{599, false, false},
			{500, true, true},
			{404, false, true},
			{200, false, true},
		} {
			t.Run(name, func(t *testing.T) {
				b := newB(t, Config{SaveOnServerError: tc.saveOn5xx})
				first := statusRequest(t, b, nil, 200, func(s *Session) { s.SetInt("n", 1) })
				header := []byte("session=" + first.cookieValue(t, "session"))

				out := statusRequest(t, b, header, tc.status, func(s *Session) { s.SetInt("n", 2) })
				// The cookie backend saves into its cookie; the server
				// backend into the store, resending a cookie only when its
				// expiry is due to move (cookierefresh.go).
				saved := len(out.cookies) > 0
				if sb, ok := b.(*ServerBackend); ok {
					vals, err := sb.Get(t.Context(), first.cookieValue(t, "session"))
					saved = err == nil && vals["n"] == int64(2)
				}
				if saved != tc.wantSaved {
					t.Fatalf("status %d: saved %v, want %v (Set-Cookie %v)", tc.status, saved, tc.wantSaved, out.cookies)
				}
				if !tc.wantSaved && (len(out.cookies) != 0 || !slices.Equal(out.headers, []string{"Vary: Cookie"})) {
					t.Fatalf("status %d: wrote %v %v, want Vary: Cookie alone", tc.status, out.cookies, out.headers)
				}
				if name == "cookie" && tc.wantSaved {
					header = []byte("session=" + out.cookieValue(t, "session"))
				}
				var n int
				statusRequest(t, b, header, 200, func(s *Session) { n, _ = s.GetInt("n") })
				if want := map[bool]int{false: 1, true: 2}[tc.wantSaved]; n != want {
					t.Fatalf("status %d, SaveOnServerError %v: n = %d after it, want %d", tc.status, tc.saveOn5xx, n, want)
				}
			})
		}
	}
}

// TestServerErrorStoresNothing: a dropped save makes no store write, and
// a session never used gets no header at all.
func TestServerErrorStoresNothing(t *testing.T) {
	st := newFakeStore()
	b := newBackend(t, Config{}, st)
	out := statusRequest(t, b, nil, 500, func(s *Session) { s.SetString("a", "b") })
	if st.count("set")+st.count("delete") != 0 || len(out.cookies)+len(out.headers) != 1 {
		t.Fatalf("wrote %+v, store calls %v", out, st.calls)
	}
	if out := statusRequest(t, b, nil, 500, nil); len(out.cookies)+len(out.headers) != 0 {
		t.Fatalf("untouched session wrote %+v", out)
	}
}

// TestServerErrorFreesTheLockAtOnce: a dropped save releases the session
// lock before Release, as a save does: kvhttp commits at the first write
// and may stream long after.
func TestServerErrorFreesTheLockAtOnce(t *testing.T) {
	b := newBackend(t, Config{Lock: true, LockWait: 50 * time.Millisecond}, newMem(t))
	first := statusRequest(t, b, nil, 200, func(s *Session) { s.SetInt("n", 1) })
	header := []byte("session=" + first.cookieValue(t, "session"))
	s := b.LoadFromRequest(context.Background(), header)
	defer b.Release(s)
	s.SetInt("n", 2)
	if err := b.StoreInResponseStatus(s, &sink{}, 500); err != nil {
		t.Fatal(err)
	}
	other := b.LoadFromRequest(context.Background(), header)
	defer b.Release(other)
	if n, ok := other.GetInt("n"); !ok || n != 1 {
		t.Fatalf("next request: n = %d (%v); want 1 without waiting for the lock", n, ok)
	}
}

// TestServerErrorKeepsADestroyDone: ends are not undone: the server
// backend deleted the record when the handler called Destroy.
func TestServerErrorKeepsADestroyDone(t *testing.T) {
	b := newBackend(t, Config{}, newMem(t))
	first := statusRequest(t, b, nil, 200, func(s *Session) { s.SetInt("n", 1) })
	header := []byte("session=" + first.cookieValue(t, "session"))
	statusRequest(t, b, header, 500, func(s *Session) {
		if err := s.Destroy(); err != nil {
			t.Fatal(err)
		}
	})
	statusRequest(t, b, header, 200, func(s *Session) {
		if s.Len() != 0 {
			t.Fatalf("destroyed session still has %v", s.Values())
		}
	})
}

// TestServerErrorReportsAFailedLoad: dropping the changes does not hide a
// store that failed: the error handler must still hear of it.
func TestServerErrorReportsAFailedLoad(t *testing.T) {
	st := newFakeStore()
	b := newBackend(t, Config{}, st)
	first := statusRequest(t, b, nil, 200, func(s *Session) { s.SetInt("n", 1) })
	header := []byte("session=" + first.cookieValue(t, "session"))
	st.fail = map[string]error{"get": errors.New("down")}
	s := b.LoadFromRequest(context.Background(), header)
	defer b.Release(s)
	s.GetInt("n")
	out := &sink{}
	if err := b.StoreInResponseStatus(s, out, 500); err == nil || len(out.headers)+len(out.cookies) != 0 {
		t.Fatalf("err %v, wrote %+v; want the load's error and nothing written", err, out)
	}
}
