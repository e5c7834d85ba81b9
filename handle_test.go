package kvsession

import (
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/kvsession/kvsession/internal/msgp"
)

// A session's handle is given at its first save, safe to show (no trace
// of the id or the store key), and the same for the session's whole life:
// through RenewID and rotations.
func TestHandleStaysThroughIDChanges(t *testing.T) {
	b, clk, _ := rvSetup(t, Config{RotationInterval: time.Hour, MaxAge: 24 * time.Hour})
	br := newBrowser(t, b)
	br.do(func(s *Session) {
		if h := s.Handle(); h != "" {
			t.Fatalf("a session never saved has handle %q", h)
		}
		s.Set("n", 1)
	})
	var handle, firstID string
	br.do(func(s *Session) { handle, firstID = s.Handle(), s.ID() })
	if _, err := parseHandle(handle); err != nil {
		t.Fatalf("Handle() = %q: %v", handle, err)
	}
	if strings.Contains(firstID, handle) || strings.Contains(b.storeKey([]byte(firstID)), handle) {
		t.Fatalf("handle %q shows the id or its key", handle)
	}
	changes := []struct {
		name string
		step func()
	}{
		{"RenewID", func() { br.do(func(s *Session) { s.RenewID() }) }},
		{"rotation", func() { clk.advance(2 * time.Hour); br.do(func(s *Session) { s.Set("n", 2) }) }},
	}
	for _, c := range changes {
		before := br.jar["session"]
		c.step()
		if br.jar["session"] == before {
			t.Fatalf("%s: the id did not change", c.name)
		}
		br.do(func(s *Session) {
			if got := s.Handle(); got != handle {
				t.Fatalf("after %s: handle %q, was %q", c.name, got, handle)
			}
		})
	}
	other := newBrowser(t, b)
	other.do(func(s *Session) { s.Set("n", 1) })
	other.do(func(s *Session) {
		if s.Handle() == handle {
			t.Fatal("two sessions share a handle")
		}
	})
}

// A record written before handles existed gets one when it is loaded:
// the one the store's listing shows, and the one its next save keeps.
func TestHandleOfARecordFromBeforeHandles(t *testing.T) {
	st := newFakeStore()
	b := newBackend(t, Config{Logger: slog.New(slog.DiscardHandler)}, st)
	// eleven fields: created 1, {"k": 7}, user "", extended 1, ...
	rec := []byte{0x9b, 1, 1, 0x81, 0xa1, 'k', msgp.Bin8, 1, 7, 0xa0, 1, 0, 0, 0, 0, 0, 0}
	br := storedRecordBrowser(t, b, st, rec)
	var first string
	br.do(func(s *Session) {
		if n, _ := s.GetInt("k"); n != 7 {
			t.Fatalf("the old record did not read: k = %d", n)
		}
		first = s.Handle()
		s.Set("k", 8)
	})
	if first == "" {
		t.Fatal("a loaded record from before handles has none")
	}
	br.do(func(s *Session) {
		if got := s.Handle(); got != first {
			t.Fatalf("saved with handle %q, was shown %q", got, first)
		}
	})
}

// The cookie backend keeps no record to name: no handle, and no client
// info, which only the server's listings show.
func TestCookieSessionsHaveNoHandle(t *testing.T) {
	br := newBrowser(t, newCookieBackend(t, Config{}, newClock()))
	br.do(func(s *Session) {
		s.Set("n", 1)
		if err := s.SetClientInfo("curl/8", "10.0.0.1"); !errors.Is(err, ErrServerOnly) {
			t.Errorf("SetClientInfo on a cookie session: %v, want ErrServerOnly", err)
		}
	})
	br.do(func(s *Session) {
		if h := s.Handle(); h != "" {
			t.Errorf("cookie session handle %q", h)
		}
	})
}

func TestSetClientInfo(t *testing.T) {
	long := strings.Repeat("a", maxUserAgentBytes-1) + "é" // the é straddles the limit
	tests := []struct {
		name       string
		ua, addr   string
		wantUA     string
		wantErr    bool
		wantFields int
	}{
		{"both", "Firefox/140", "192.0.2.1", "Firefox/140", false, 15},
		{"user agent cut at a character", long, "::1", long[:maxUserAgentBytes-1], false, 15},
		{"address too long", "x", strings.Repeat("1", maxRemoteAddrBytes+1), "", true, 14},
		{"empty forgets", "", "", "", false, 14},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st := newFakeStore()
			b := newBackend(t, Config{}, st)
			br := newBrowser(t, b)
			br.do(func(s *Session) {
				s.Set("n", 1)
				s.SetClientInfo("old", "198.51.100.7")
			})
			br.do(func(s *Session) {
				if err := s.SetClientInfo(tc.ua, tc.addr); (err != nil) != tc.wantErr {
					t.Fatalf("SetClientInfo: %v", err)
				}
			})
			wantUA, wantAddr := tc.wantUA, tc.addr
			if tc.wantErr {
				wantUA, wantAddr = "old", "198.51.100.7"
			}
			br.do(func(s *Session) {
				if ua, addr := s.ClientInfo(); ua != wantUA || addr != wantAddr {
					t.Fatalf("ClientInfo() = %q, %q; want %q, %q", ua, addr, wantUA, wantAddr)
				}
			})
			rec := st.data[b.storeKey([]byte(br.jar["session"]))]
			if tc.wantErr {
				return
			}
			if got := int(rec[0] & 0x0f); got != tc.wantFields {
				t.Errorf("record of %d fields, want %d", got, tc.wantFields)
			}
		})
	}
}

func TestParseHandle(t *testing.T) {
	for _, tc := range []struct {
		in string
		ok bool
	}{
		{"AAECAwQFBgcICQoL", true},
		{"AAAAAAAAAAAAAAAA", false}, // zero: no session has it
		{"AAECAwQFBgcICQo", false},
		{"AAECAwQFBgcICQoL=", false},
		{"AAECAwQFBgcICQo+", false},
		{"", false},
	} {
		h, err := parseHandle(tc.in)
		if (err == nil) != tc.ok {
			t.Errorf("parseHandle(%q): %v", tc.in, err)
		}
		if tc.ok && handleString(h) != tc.in {
			t.Errorf("parseHandle(%q) round-trips to %q", tc.in, handleString(h))
		}
	}
}
