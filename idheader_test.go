package kvsession

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kvsession/kvsession/store/memstore"
)

const testIDHeader = "X-Session-Id"

func TestIDHeaderConfig(t *testing.T) {
	cases := []struct {
		name   string
		header string
		reason string // a part of the Reason; "" when valid
	}{
		{"off", "", ""},
		{"usual", "X-Session-Id", ""},
		{"lower case", "x-session-id", ""},
		{"every token character", "A-z0-9!#$%&'*+.^_`|~", ""},
		{"space", "X Session", "not a valid header name"},
		{"colon", "X-Session:Id", "not a valid header name"},
		{"CRLF", "X-Id\r\nSet-Cookie", "not a valid header name"},
		{"non-ASCII", "X-Sitzungs-Ä", "not a valid header name"},
		{"too long", "X-" + strings.Repeat("a", 255), "longer than 256"},
		{"Cookie", "Cookie", "a cookie field"},
		{"Set-Cookie in any case", "sEt-CoOkIe", "a cookie field"},
		{"Authorization", "Authorization", "HTTP authentication"},
		{"Vary", "Vary", "the backend itself"},
		{"Cache-Control", "cache-control", "the backend itself"},
		{"hop-by-hop", "Connection", "proxies"},
		{"framing", "Content-Length", "proxies"},
		{"Referer", "Referer", "proxies"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := Config{IDHeader: tc.header}.Validate()
			if tc.reason == "" {
				if err != nil {
					t.Fatalf("IDHeader %q: %v", tc.header, err)
				}
				return
			}
			var ce *ConfigError
			if !errors.As(err, &ce) || ce.Field != "IDHeader" {
				t.Fatalf("IDHeader %q: err = %v, want a ConfigError on IDHeader", tc.header, err)
			}
			if !strings.Contains(err.Error(), "Config.IDHeader") || !strings.Contains(ce.Reason, tc.reason) {
				t.Fatalf("IDHeader %q: %q, want it to name the field and say %q", tc.header, err, tc.reason)
			}
		})
	}
}

// headerRequest runs one request's session work in header mode: load from
// an id header of the given value, let fn use the session, store into a
// fresh sink.
func headerRequest(t *testing.T, b *ServerBackend, value string, fn func(s *Session)) (*sink, error) {
	t.Helper()
	s := b.LoadFromHeader(context.Background(), []byte(value))
	if fn != nil {
		fn(s)
	}
	out := &sink{}
	err := b.StoreInResponse(s, out)
	b.Release(s)
	return out, err
}

// mustHeaderRequest is headerRequest for requests that must succeed.
func mustHeaderRequest(t *testing.T, b *ServerBackend, value string, fn func(s *Session)) *sink {
	t.Helper()
	out, err := headerRequest(t, b, value, fn)
	if err != nil {
		t.Fatalf("request with %s %q: %v", testIDHeader, value, err)
	}
	return out
}

// idAnswer is the id header a response carried, and whether it carried
// one.
func (s *sink) idAnswer() (string, bool) {
	v, ok := s.set[testIDHeader]
	return v, ok
}

// checkHeaderResponse checks what every header-mode response must hold:
// no cookie, whatever happened; Cache-Control no-cache="<header>" exactly
// when the id header is written, and never the cookie's; and, when the
// session was used, Vary on both carriers.
func checkHeaderResponse(t *testing.T, out *sink, used bool) {
	t.Helper()
	if len(out.cookies) != 0 {
		t.Errorf("header mode set cookies: %v", out.cookies)
	}
	_, answered := out.idAnswer()
	wantCache := 0
	if answered {
		wantCache = 1
	}
	if n := countHeader(out.headers, `Cache-Control: no-cache="X-Session-Id"`); n != wantCache {
		t.Errorf("Cache-Control for the id header %d times, want %d: %q", n, wantCache, out.headers)
	}
	if slices.Contains(out.headers, `Cache-Control: no-cache="Set-Cookie"`) {
		t.Errorf("cookie cache header in header mode: %q", out.headers)
	}
	for _, v := range []string{"Vary: Cookie", "Vary: X-Session-Id"} {
		if has := slices.Contains(out.headers, v); has != used {
			t.Errorf("%s: %v, want %v (session used: %v): %q", v, has, used, used, out.headers)
		}
	}
}

func countHeader(headers []string, h string) int {
	n := 0
	for _, x := range headers {
		if x == h {
			n++
		}
	}
	return n
}

// TestIDHeaderAnswers: what a request in header mode is answered, by what
// it sent and what its handler did. A fresh id is always one the server
// drew, never the client's; the header is written only when the client
// does not know its id yet, or must forget the one it sent; and the
// session behind an id the response gives holds what the request saved.
func TestIDHeaderAnswers(t *testing.T) {
	const (
		live    = "<live>"    // the id of a stored session holding n=1
		unknown = "<unknown>" // an id-shaped value the store does not hold
	)
	const (
		absent  = "<absent>" // no id header in the response
		freshID = "<fresh>"  // a fresh id, not the one sent
		forget  = ""         // the header, empty
	)
	set := func(s *Session) { s.SetInt("n", 7) }
	read := func(s *Session) { s.GetInt("n") }
	cases := []struct {
		name    string
		sent    string
		handler func(*Session) // nil: the session is never used
		want    string
		wantN   int // n in the session the client then holds; -1: none
	}{
		{"new, set", "new", set, freshID, 7},
		{"new, read", "new", read, forget, -1},
		{"new, unused", "new", nil, absent, -1},
		{"empty, set", "", set, freshID, 7},
		{"empty, read", "", read, absent, -1},
		{"live, read", live, read, absent, 1},
		{"live, set", live, set, absent, 7},
		{"live, unused", live, nil, absent, 1},
		{"live, destroy", live, func(s *Session) { s.Destroy() }, forget, -1},
		{"live, clear", live, func(s *Session) { s.Clear() }, forget, -1},
		{"live, destroy then set", live, func(s *Session) { s.Destroy(); s.SetInt("n", 7) }, freshID, 7},
		{"live, renew", live, func(s *Session) { s.RenewID() }, freshID, 1},
		{"unknown, read", unknown, read, forget, -1},
		{"unknown, set: not adopted", unknown, set, freshID, 7},
		{"malformed, set", strings.Repeat("!", 43), set, freshID, 7},
		{"too short, set", "abc", set, freshID, 7},
		{"huge, set", strings.Repeat("A", 64<<10), set, freshID, 7},
		// Two lines of the header, joined as RFC 9110 joins them: no id,
		// even when one of them is a live one.
		{"two lines, read", live + ", " + live, read, forget, -1},
		{"two lines, set", live + ", " + live, set, freshID, 7},
	}
	for _, lock := range []bool{false, true} {
		for _, tc := range cases {
			t.Run(tc.name+map[bool]string{false: "", true: "/lock"}[lock], func(t *testing.T) {
				st := memstore.New(memstore.Options{})
				defer st.Close()
				b := newBackend(t, Config{IDHeader: testIDHeader, Lock: lock}, st)
				liveID := mustHeaderRequest(t, b, "new", func(s *Session) { s.SetInt("n", 1) }).set[testIDHeader]
				unknownID, err := b.GenerateID()
				if err != nil {
					t.Fatal(err)
				}
				sent := strings.ReplaceAll(strings.ReplaceAll(tc.sent, live, liveID), unknown, unknownID)

				out := mustHeaderRequest(t, b, sent, tc.handler)
				checkHeaderResponse(t, out, tc.handler != nil)
				got, answered := out.idAnswer()
				holds := "" // the id the client holds afterwards
				switch tc.want {
				case absent:
					if answered {
						t.Fatalf("answered %s %q, want no header", testIDHeader, got)
					}
					holds = sent
				case forget:
					if !answered || got != "" {
						t.Fatalf("answered %q (present: %v), want the header empty", got, answered)
					}
				case freshID:
					if !answered || !b.validID([]byte(got)) || got == sent || got == liveID || got == unknownID {
						t.Fatalf("answered %q (present: %v), want a fresh id (sent %.50q, live %q)", got, answered, sent, liveID)
					}
					holds = got
				}
				n := -1
				if b.validID([]byte(holds)) {
					mustHeaderRequest(t, b, holds, func(s *Session) {
						if s.Len() > 0 {
							n, _ = s.GetInt("n")
						}
					})
				}
				if n != tc.wantN {
					t.Errorf("the session the client holds has n=%d, want %d", n, tc.wantN)
				}
				if tc.sent == unknown {
					// The client's id is not the session's, now or later.
					mustHeaderRequest(t, b, unknownID, func(s *Session) {
						if s.Len() != 0 {
							t.Error("the id the client chose leads to a session")
						}
					})
				}
				if tc.want == forget && strings.HasPrefix(tc.name, "live") {
					mustHeaderRequest(t, b, liveID, func(s *Session) {
						if s.Len() != 0 {
							t.Error("the id the client was told to forget still leads to the session")
						}
					})
				}
			})
		}
	}
}

// TestIDHeaderCookieRequests: with IDHeader set, a request without it is
// served by cookie as before: the id goes in the cookie, never in a
// response header a page's script could read, and the response varies on
// the id header as well, which would have changed how it was served.
func TestIDHeaderCookieRequests(t *testing.T) {
	st := memstore.New(memstore.Options{})
	defer st.Close()
	b := newBackend(t, Config{IDHeader: testIDHeader}, st)
	steps := []struct {
		name    string
		handler func(*Session)
	}{
		{"new", func(s *Session) { s.SetInt("n", 1) }},
		{"read", func(s *Session) { s.GetInt("n") }},
		{"renew", func(s *Session) { s.RenewID() }},
		{"destroy", func(s *Session) { s.Destroy() }},
	}
	id := ""
	for _, step := range steps {
		out, err := request(t, b, id, step.handler)
		if err != nil {
			t.Fatalf("%s: %v", step.name, err)
		}
		if len(out.set) != 0 {
			t.Errorf("%s: a cookie request got headers set: %v", step.name, out.set)
		}
		for _, h := range out.headers {
			if id != "" && strings.Contains(h, id) {
				t.Errorf("%s: the id in a response header: %q", step.name, h)
			}
		}
		if !slices.Contains(out.headers, "Vary: Cookie") || !slices.Contains(out.headers, "Vary: X-Session-Id") {
			t.Errorf("%s: Vary %q, want Cookie and X-Session-Id", step.name, out.headers)
		}
		if line, ok := out.cookies["session"]; ok && !strings.Contains(line, "Max-Age=0") {
			id = out.cookieValue(t, "session")
		}
	}
	// Without IDHeader, Vary names Cookie alone, as it always did.
	plain := newBackend(t, Config{}, memstore.New(memstore.Options{}))
	out, _ := request(t, plain, "", func(s *Session) { s.SetInt("n", 1) })
	if countHeader(out.headers, "Vary: Cookie") != 1 || len(out.headers) != 2 {
		t.Errorf("without IDHeader: %q, want Cache-Control and Vary: Cookie alone", out.headers)
	}
}

// TestIDHeaderRotation: a rotation gives a header client the new id, the
// old one leads to it (and is answered with it) during RotationGrace and
// is forgotten after; an idle extension, which only pushes the expiry
// back, answers nothing.
func TestIDHeaderRotation(t *testing.T) {
	cases := []struct {
		name    string
		handler func(*Session) // the request on which the rotation is due
	}{
		{"on a read", func(s *Session) { s.GetInt("n") }},
		{"on a write", func(s *Session) { s.SetInt("n", 1) }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b, clk, _ := rvSetup(t, Config{IDHeader: testIDHeader, RotationInterval: time.Hour, RotationGrace: 15 * time.Second,
				IdleTimeout: 2 * time.Hour, ExtensionDelay: 10 * time.Minute})
			oldID := mustHeaderRequest(t, b, "new", func(s *Session) { s.SetInt("n", 1) }).set[testIDHeader]

			clk.advance(20 * time.Minute) // an idle extension is due, not a rotation
			out := mustHeaderRequest(t, b, oldID, func(s *Session) { s.GetInt("n") })
			checkHeaderResponse(t, out, true)
			if v, ok := out.idAnswer(); ok {
				t.Fatalf("an idle extension answered %q: a header has no expiry to refresh", v)
			}

			clk.advance(time.Hour)
			out = mustHeaderRequest(t, b, oldID, tc.handler)
			checkHeaderResponse(t, out, true)
			newID, ok := out.idAnswer()
			if !ok || newID == oldID || !b.validID([]byte(newID)) {
				t.Fatalf("rotation answered %q (present: %v), want a new id", newID, ok)
			}

			// In flight with the old id, within the grace window: the
			// session, and the new id.
			clk.advance(10 * time.Second)
			out = mustHeaderRequest(t, b, oldID, func(s *Session) {
				if n, _ := s.GetInt("n"); n != 1 || s.ID() != newID {
					t.Errorf("old id within the grace window: n=%d id=%q", n, s.ID())
				}
			})
			checkHeaderResponse(t, out, true)
			if v, _ := out.idAnswer(); v != newID {
				t.Fatalf("old id within the grace window answered %q, want the new id %q", v, newID)
			}
			// The new id itself is not answered: the client has it.
			if v, ok := mustHeaderRequest(t, b, newID, func(s *Session) { s.GetInt("n") }).idAnswer(); ok {
				t.Fatalf("the current id answered %q", v)
			}

			clk.advance(6 * time.Second) // past the grace window
			out = mustHeaderRequest(t, b, oldID, func(s *Session) {
				if s.Len() != 0 {
					t.Error("old id still works after the grace window")
				}
			})
			if v, ok := out.idAnswer(); !ok || v != "" {
				t.Fatalf("old id after the grace window answered %q (present: %v), want the header empty", v, ok)
			}
		})
	}
}

// TestIDHeaderExtendOnAccess: ExtendOnAccess refreshes a header session's
// store TTL on a read, as it does a cookie session's, and answers no
// header: the id did not change.
func TestIDHeaderExtendOnAccess(t *testing.T) {
	b, clk, _ := rvSetup(t, Config{IDHeader: testIDHeader, ExtendOnAccess: true, MaxAge: time.Hour})
	id := mustHeaderRequest(t, b, "new", func(s *Session) { s.SetInt("n", 1) }).set[testIDHeader]
	for range 3 {
		clk.advance(40 * time.Minute)
		out := mustHeaderRequest(t, b, id, func(s *Session) {
			if n, _ := s.GetInt("n"); n != 1 {
				t.Fatalf("n=%d after %v: the read did not extend the session", n, 40*time.Minute)
			}
		})
		if v, ok := out.idAnswer(); ok {
			t.Fatalf("an extension answered %q", v)
		}
	}
}

// TestIDHeaderEndsHold: every end holds in header mode as in cookie mode
// (write_test.go), on every store, with the lock off and on: a request
// that loaded the session before another destroyed, emptied, renewed or
// rotated it writes nothing when it ends, and answers no id (not the old
// one, which would send its client back to a session that is gone, nor
// one of its own); the ending request answers the new id, or the header
// empty.
func TestIDHeaderEndsHold(t *testing.T) {
	ends := []struct {
		name    string
		cfg     Config
		advance time.Duration // on the backend's clock, before the ending request
		end     func(*Session)
		fresh   bool // the ending request answers a new id; else the header empty
	}{
		{"Destroy", Config{}, 0, func(s *Session) { s.Destroy() }, false},
		{"Clear", Config{}, 0, func(s *Session) { s.Clear() }, false},
		{"RenewID", Config{}, 0, func(s *Session) { s.RenewID() }, true},
		{"rotation", Config{RotationInterval: time.Hour}, 2 * time.Hour, func(s *Session) { s.Len() }, true},
	}
	for _, end := range ends {
		t.Run(end.name, func(t *testing.T) {
			cfg := end.cfg
			cfg.IDHeader = testIDHeader
			cfg.MaxAge, cfg.LockLease, cfg.LockWait = 24*time.Hour, 50*time.Millisecond, 5*time.Second
			eachEnd(t, cfg, func(t *testing.T, b *ServerBackend) {
				clk := newClock()
				b.now = clk.now // the backend's clock only: store TTLs stay real
				id := mustHeaderRequest(t, b, "new", func(s *Session) { s.SetInt64("n", 1); s.SetUser("alice") }).set[testIDHeader]

				// In flight: loaded, and with the lock on holding it; the
				// ending request waits out its lease, as behind one that hung.
				slow := b.LoadFromHeader(context.Background(), []byte(id))
				n, _ := slow.GetInt64("n")
				if err := slow.Err(); err != nil || n != 1 {
					t.Fatalf("the request in flight: n=%d, %v", n, err)
				}
				clk.advance(end.advance)
				endOut := mustHeaderRequest(t, b, id, end.end)
				checkHeaderResponse(t, endOut, true)
				next, answered := endOut.idAnswer()
				switch {
				case !answered:
					t.Fatal("the ending request answered no id header")
				case end.fresh && (next == "" || next == id):
					t.Fatalf("the ending request answered %q, want a new id", next)
				case !end.fresh && next != "":
					t.Fatalf("the ending request answered %q, want the header empty", next)
				}

				slow.SetInt64("n", n+1)
				out := &sink{}
				err := b.StoreInResponse(slow, out)
				b.Release(slow)
				if err != nil {
					t.Fatalf("the request in flight: %v", err)
				}
				checkHeaderResponse(t, out, true)
				if v, ok := out.idAnswer(); ok {
					t.Errorf("the request in flight answered %q after the session was ended", v)
				}
				// Under the old key: nothing, or the rotation's forward.
				rec, err := b.calls.Get(context.Background(), b.storeKey([]byte(id)))
				switch {
				case isNotFound(err):
				case err != nil:
					t.Fatal(err)
				case len(rec) > 0 && rec[0] == forwardMarker && end.name == "rotation":
				default:
					t.Errorf("the ended session's record was written back (%d bytes)", len(rec))
				}
				if end.name != "rotation" {
					mustHeaderRequest(t, b, id, func(s *Session) {
						if s.Len() != 0 || s.User() != "" {
							t.Error("the ended id opens a session again")
						}
					})
				}
				if end.fresh {
					mustHeaderRequest(t, b, next, func(s *Session) {
						if got, _ := s.GetInt64("n"); got != 1 || s.User() != "alice" {
							t.Errorf("the new id holds n=%d user %q, want what the ending request left (1, alice)", got, s.User())
						}
					})
				}
			})
		})
	}
}

// TestIDHeaderServerError: a 5xx answer in header mode saves nothing and
// answers no id, as it sets no cookie in cookie mode.
func TestIDHeaderServerError(t *testing.T) {
	st := memstore.New(memstore.Options{})
	defer st.Close()
	b := newBackend(t, Config{IDHeader: testIDHeader}, st)
	s := b.LoadFromHeader(context.Background(), []byte("new"))
	s.SetInt("n", 1)
	out := &sink{}
	if err := b.StoreInResponseStatus(s, out, 500); err != nil {
		t.Fatal(err)
	}
	b.Release(s)
	checkHeaderResponse(t, out, true)
	if v, ok := out.idAnswer(); ok {
		t.Fatalf("a 500 answered %q", v)
	}
}

// TestCookieBackendLoadFromHeader: the cookie backend, which refuses
// IDHeader, starts a fresh cookie session whatever the value, and never
// writes a header.
func TestCookieBackendLoadFromHeader(t *testing.T) {
	b, err := NewCookie(Config{Secrets: [][]byte{keyA}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	s := b.LoadFromHeader(context.Background(), []byte("anything"))
	if s.Len() != 0 || !s.IsNew() {
		t.Fatal("not a fresh session")
	}
	s.SetInt("n", 1)
	out := &sink{}
	if err := b.StoreInResponse(s, out); err != nil {
		t.Fatal(err)
	}
	b.Release(s)
	if len(out.set) != 0 || len(out.cookies) == 0 {
		t.Fatalf("headers set %v, cookies %v: want a cookie and no header", out.set, out.cookies)
	}
}

// FuzzIDHeader: any bytes in the id header, with any of the handler's
// actions: no error; the live session is used only when the header is
// exactly its id; nothing is ever saved under the header's own bytes; the
// response sets no cookie, and writes only the cache headers and an id
// header that is empty or an id this backend drew.
func FuzzIDHeader(f *testing.F) {
	for _, v := range []string{"", "new", fuzzLiveID, strings.Repeat("A", 43), fuzzLiveID + ", " + fuzzLiveID,
		" " + fuzzLiveID, fuzzLiveID + "\r\nSet-Cookie: x=1", "session=" + fuzzLiveID, strings.Repeat("-", 4096)} {
		for action := range uint8(fuzzActions) {
			f.Add([]byte(v), action)
		}
	}
	quiet := slog.New(slog.DiscardHandler)
	f.Fuzz(func(t *testing.T, value []byte, action uint8) {
		st := newFakeStore()
		b := newBackend(t, Config{Logger: quiet, IDHeader: testIDHeader}, st)
		ctx := context.Background()
		if err := b.Set(ctx, fuzzLiveID, map[string]any{"n": 5}); err != nil {
			t.Fatal(err)
		}
		liveKey := b.storeKey([]byte(fuzzLiveID))
		liveBefore := append([]byte(nil), st.data[liveKey]...)
		isLive := string(value) == fuzzLiveID

		s := b.LoadFromHeader(ctx, value)
		n, _ := s.GetInt("n")
		switch action % fuzzActions {
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
		if (n == 5) != isLive || (n != 0 && n != 5) {
			t.Fatalf("read n=%d with the header %q", n, value)
		}
		if len(out.lines) != 0 {
			t.Fatalf("header mode set cookies: %q", out.lines)
		}
		for _, h := range out.headers {
			switch h {
			case "Vary: Cookie", "Vary: X-Session-Id", `Cache-Control: no-cache="X-Session-Id"`, "X-Session-Id: ":
				continue
			}
			id, ok := strings.CutPrefix(h, "X-Session-Id: ")
			if !ok || !b.validID([]byte(id)) || id == string(value) {
				t.Fatalf("response header %q for the header %q", h, value)
			}
		}
		if !isLive {
			if !bytes.Equal(st.data[liveKey], liveBefore) {
				t.Fatal("the live session changed although the header does not carry its id")
			}
			if _, ok := st.data[b.storeKey(value)]; ok {
				t.Fatalf("a record was saved under the header's own bytes %q", value)
			}
		}
	})
}
