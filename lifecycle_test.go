package kvsession

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/kvsession/kvsession/store"
	"github.com/kvsession/kvsession/store/memstore"
)

// countingMemory is the memory store on the test clock, counting writes.
type countingMemory struct {
	*memstore.Store
	sets int // writes of values: Sets, and Swaps that store one
	adds int // AddMembers
}

func (c *countingMemory) Set(ctx context.Context, key string, v []byte, ttl time.Duration) error {
	c.sets++
	return c.Store.Set(ctx, key, v, ttl)
}

func (c *countingMemory) Swap(ctx context.Context, key string, old, v []byte, ttl time.Duration) (bool, error) {
	if v != nil {
		c.sets++
	}
	return c.Store.Swap(ctx, key, old, v, ttl)
}

func (c *countingMemory) AddMember(ctx context.Context, set, member string, ttl time.Duration) error {
	c.adds++
	return c.Store.AddMember(ctx, set, member, ttl)
}

// lifecycleEnv is a server backend and a cookie backend on one clock, so
// each lifecycle rule is checked on both.
type lifecycleEnv struct {
	clk *clock
	st  *countingMemory
	b   Backend
}

func newLifecycleEnvs(t *testing.T, cfg Config) map[string]*lifecycleEnv {
	t.Helper()
	envs := map[string]*lifecycleEnv{}
	for _, kind := range []string{"server", "cookie"} {
		clk := newClock()
		st := &countingMemory{Store: memstore.New(memstore.Options{Now: clk.now})}
		t.Cleanup(func() { st.Close() })
		var b Backend
		if kind == "server" {
			sb := newBackend(t, cfg, st)
			sb.now = clk.now
			b = sb
		} else {
			b = newCookieBackend(t, cfg, clk)
		}
		envs[kind] = &lifecycleEnv{clk: clk, st: st, b: b}
	}
	return envs
}

// visit runs one request with the Cookie header h and returns the header
// the browser holds afterwards.
func (e *lifecycleEnv) visit(t *testing.T, h []byte, fn func(*Session)) ([]byte, *sink) {
	t.Helper()
	out, err := requestHeader(t, e.b, h, fn)
	if err != nil {
		t.Fatal(err)
	}
	if len(out.cookies) == 0 {
		return h, out
	}
	return out.header(t), out
}

func count(t *testing.T, s *Session) int {
	t.Helper()
	n, _ := s.GetInt("n")
	return n
}

func TestIdleTimeout(t *testing.T) {
	for kind, e := range newLifecycleEnvs(t, Config{IdleTimeout: 10 * time.Minute, ExtensionDelay: time.Minute}) {
		t.Run(kind, func(t *testing.T) {
			h, _ := e.visit(t, nil, func(s *Session) { s.Set("n", 1) })
			e.clk.advance(10*time.Minute - time.Second)
			h, _ = e.visit(t, h, func(s *Session) {
				if count(t, s) != 1 {
					t.Fatal("session gone before its idle timeout")
				}
			})
			// That read extended it: ten more minutes of rest from here.
			e.clk.advance(10*time.Minute - time.Second)
			h2, _ := e.visit(t, h, func(s *Session) {
				if count(t, s) != 1 {
					t.Fatal("extended session gone")
				}
			})
			e.clk.advance(10 * time.Minute)
			e.visit(t, h2, func(s *Session) {
				if count(t, s) != 0 {
					t.Fatal("session survived ten idle minutes")
				}
			})
		})
	}
}

func TestExtensionOnlyAfterExtensionDelay(t *testing.T) {
	for kind, e := range newLifecycleEnvs(t, Config{IdleTimeout: 10 * time.Minute, ExtensionDelay: time.Minute}) {
		t.Run(kind, func(t *testing.T) {
			h, _ := e.visit(t, nil, func(s *Session) { s.Set("n", 1) })
			read := func(s *Session) { count(t, s) }
			sets := e.st.sets
			for i := 0; i < 5; i++ {
				e.clk.advance(10 * time.Second)
				var out *sink
				h, out = e.visit(t, h, read)
				if len(out.cookies) != 0 || e.st.sets != sets {
					t.Fatalf("read %d within the delay wrote (cookies %v, store writes %d)", i, out.cookies, e.st.sets-sets)
				}
			}
			e.clk.advance(11 * time.Second) // 61 s since the save
			h, out := e.visit(t, h, read)
			wrote := len(out.cookies) > 0
			if kind == "server" {
				wrote = e.st.sets == sets+1 && wrote
			}
			if !wrote {
				t.Fatalf("no extension after the delay (store writes %d, cookies %v)", e.st.sets-sets, out.cookies)
			}
			e.clk.advance(30 * time.Second)
			if _, out := e.visit(t, h, read); len(out.cookies) != 0 {
				t.Fatal("extended again within the delay")
			}
		})
	}
}

func TestAbsoluteTimeoutDespiteActivity(t *testing.T) {
	for kind, e := range newLifecycleEnvs(t, Config{AbsoluteTimeout: time.Hour}) {
		t.Run(kind, func(t *testing.T) {
			h, _ := e.visit(t, nil, func(s *Session) { s.Set("n", 1) })
			for i := 0; i < 5; i++ {
				e.clk.advance(11 * time.Minute)
				h, _ = e.visit(t, h, func(s *Session) { s.Set("n", count(t, s)+1) })
			}
			e.clk.advance(5 * time.Minute) // 60 min since creation
			e.visit(t, h, func(s *Session) {
				if count(t, s) != 0 {
					t.Fatal("session outlived AbsoluteTimeout")
				}
			})
		})
	}
}

func TestRememberMe(t *testing.T) {
	cfg := Config{MaxAge: time.Hour, MaxAgeLimit: 30 * 24 * time.Hour}
	for kind, e := range newLifecycleEnvs(t, cfg) {
		t.Run(kind, func(t *testing.T) {
			_, out := e.visit(t, nil, func(s *Session) {
				s.Set("n", 1)
				if err := s.SetMaxAge(30 * 24 * time.Hour); err != nil {
					t.Fatal(err)
				}
			})
			if line := out.cookies["session"]; !strings.Contains(line, "; Max-Age=2592000; Expires=Wed, 23 Dec 2026 12:00:00 GMT;") {
				t.Fatalf("remember-me cookie: %s", line)
			}
			h := out.header(t)
			e.clk.advance(2 * time.Hour) // past the default MaxAge
			e.visit(t, h, func(s *Session) {
				if count(t, s) != 1 {
					t.Fatal("remembered session expired with the default MaxAge")
				}
			})
			// Others keep the default, and a browser-session cookie is per session too.
			_, out = e.visit(t, nil, func(s *Session) { s.Set("n", 1) })
			if line := out.cookies["session"]; !strings.Contains(line, "; Max-Age=3600;") {
				t.Fatalf("default cookie: %s", line)
			}
			_, out = e.visit(t, nil, func(s *Session) { s.Set("n", 1); s.SetBrowserSession(true) })
			if line := out.cookies["session"]; strings.Contains(line, "Max-Age") || strings.Contains(line, "Expires") {
				t.Fatalf("browser-session cookie: %s", line)
			}
			e.visit(t, nil, func(s *Session) {
				for _, d := range []time.Duration{31 * 24 * time.Hour, time.Millisecond, -time.Hour} {
					if err := s.SetMaxAge(d); err == nil || !strings.Contains(err.Error(), "MaxAgeLimit") {
						t.Errorf("SetMaxAge(%v) = %v, want an error naming MaxAgeLimit", d, err)
					}
				}
			})
		})
	}
}

func TestRenewalRotatesWithGraceWindow(t *testing.T) {
	clk := newClock()
	st := &countingMemory{Store: memstore.New(memstore.Options{Now: clk.now})}
	defer st.Close()
	b := newBackend(t, Config{RotationInterval: time.Hour, RotationGrace: 15 * time.Second}, st)
	b.now = clk.now
	out, _ := request(t, b, "", func(s *Session) { s.Set("n", 1) })
	oldID := out.cookieValue(t, "session")

	clk.advance(time.Hour)
	out, err := request(t, b, oldID, func(s *Session) { s.GetInt("n") }) // a read: rotation needs no change
	if err != nil {
		t.Fatal(err)
	}
	newID := out.cookieValue(t, "session")
	if newID == oldID || len(newID) != len(oldID) {
		t.Fatalf("id not rotated: %q → %q", oldID, newID)
	}
	// A request in flight with the old cookie still finds the session, and
	// is handed the new cookie.
	clk.advance(10 * time.Second)
	out, _ = request(t, b, oldID, func(s *Session) {
		if n, _ := s.GetInt("n"); n != 1 || s.ID() != newID {
			t.Fatalf("within the grace window: n=%d id=%q", n, s.ID())
		}
		s.Set("n", 2)
	})
	if out.cookieValue(t, "session") != newID {
		t.Fatal("forwarded request not given the new cookie")
	}
	clk.advance(6 * time.Second) // past the grace window
	request(t, b, oldID, func(s *Session) {
		if s.Len() != 0 {
			t.Fatal("old id still works after the grace window")
		}
	})
	request(t, b, newID, func(s *Session) {
		if n, _ := s.GetInt("n"); n != 2 {
			t.Fatalf("new id: n=%d, want the write made through the old one", n)
		}
	})
	// Not rotated again until another RotationInterval has passed.
	clk.advance(30 * time.Minute)
	if out, _ := request(t, b, newID, func(s *Session) { s.GetInt("n") }); len(out.cookies) != 0 {
		t.Fatal("rotated again too early")
	}
}

// TestRotationOfASessionChangedOnEveryRequest: a request that changes the
// session when its rotation is due rotates it, changes included, and the
// old id leads to them during the grace window.
func TestRotationOfASessionChangedOnEveryRequest(t *testing.T) {
	clk := newClock()
	st := memstore.New(memstore.Options{Now: clk.now})
	defer st.Close()
	b := newBackend(t, Config{RotationInterval: time.Hour, RotationGrace: 15 * time.Second}, st)
	b.now = clk.now
	incr := func(s *Session) {
		n, _ := s.GetInt("n")
		s.SetInt("n", n+1)
	}
	out, _ := request(t, b, "", incr)
	id := out.cookieValue(t, "session")
	for n := 2; n <= 5; n++ {
		clk.advance(40 * time.Minute)
		out, err := request(t, b, id, incr)
		if err != nil {
			t.Fatal(err)
		}
		next := out.cookieValue(t, "session")
		rotated := next != id
		if due := n == 3 || n == 5; rotated != due {
			// Created at 0: due at 80 min (request 3), then 80 min after that
			// rotation (request 5).
			t.Fatalf("request %d at %v: rotated %v, want %v", n, time.Duration(n-1)*40*time.Minute, rotated, due)
		}
		if rotated {
			// The old id still leads to the session, changes included.
			request(t, b, id, func(s *Session) {
				if got, _ := s.GetInt("n"); got != n || s.ID() != next {
					t.Fatalf("old id within the grace window: n=%d, id %q; want %d, %q", got, s.ID(), n, next)
				}
			})
		}
		id = next
	}
}

// TestStoreHoldsNoUsableID: the store key is a hash of the id, and a
// rotation's forward record does not hold the new id in the clear.
func TestStoreHoldsNoUsableID(t *testing.T) {
	for name, cfg := range map[string]Config{
		"plain hash": {RotationInterval: time.Hour},
		"keyed hash": {RotationInterval: time.Hour, IDHashKey: bytes.Repeat([]byte{9}, 32), Prefix: "s:"},
	} {
		t.Run(name, func(t *testing.T) {
			clk := newClock()
			st := newFakeStore()
			b := newBackend(t, cfg, st)
			b.now = clk.now
			out, _ := request(t, b, "", func(s *Session) { s.Set("n", 1) })
			ids := []string{out.cookieValue(t, "session")}
			clk.advance(time.Hour)
			out, _ = request(t, b, ids[0], func(s *Session) { s.GetInt("n") })
			ids = append(ids, out.cookieValue(t, "session"))
			raw := make([][]byte, 0, 2)
			for _, id := range ids {
				dec, _ := base64.RawURLEncoding.DecodeString(id)
				raw = append(raw, dec)
			}
			for k, v := range st.data {
				for i, id := range ids {
					if strings.Contains(k, id) || bytes.Contains(v, []byte(id)) || bytes.Contains(v, raw[i]) {
						t.Fatalf("store entry %q holds session id %d", k, i)
					}
				}
			}
			if len(st.data) != 2 {
				t.Fatalf("%d store entries, want the session and the forward", len(st.data))
			}
		})
	}
}

func TestCookiePrefixesAndPartitioned(t *testing.T) {
	tests := []struct {
		name  string
		cfg   Config
		field string // "" = valid
	}{
		{"__Host- valid", Config{CookieName: "__Host-sid", Secure: true}, ""},
		{"__Host- without Secure", Config{CookieName: "__Host-sid"}, "Secure"},
		{"__Host- with a Path", Config{CookieName: "__Host-sid", Secure: true, Path: "/app"}, "Path"},
		{"__Host- with a Domain", Config{CookieName: "__Host-sid", Secure: true, Domain: "example.com"}, "Domain"},
		{"__host- any case", Config{CookieName: "__host-sid"}, "Secure"},
		{"__Secure- valid", Config{CookieName: "__Secure-sid", Secure: true, Domain: "example.com", Path: "/app"}, ""},
		{"__Secure- without Secure", Config{CookieName: "__Secure-sid"}, "Secure"},
		{"Partitioned without Secure", Config{Partitioned: true}, "Partitioned"},
		{"Partitioned", Config{Partitioned: true, Secure: true}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			var ce *ConfigError
			switch {
			case tt.field == "" && err != nil:
				t.Fatalf("rejected: %v", err)
			case tt.field != "" && (!errors.As(err, &ce) || ce.Field != tt.field):
				t.Fatalf("err %v, want a ConfigError on %s", err, tt.field)
			}
		})
	}
	b := newBackend(t, Config{CookieName: "__Host-sid", Secure: true, Partitioned: true}, newFakeStore())
	out, _ := request(t, b, "", func(s *Session) { s.Set("n", 1) })
	if line := out.cookies["__Host-sid"]; !strings.HasSuffix(line, "; Secure; HttpOnly; SameSite=Lax; Partitioned") || !strings.Contains(line, "; Path=/;") {
		t.Fatalf("Set-Cookie %s", line)
	}
}

func TestLifecycleConfigErrors(t *testing.T) {
	tests := []struct {
		name  string
		cfg   Config
		field string
	}{
		{"idle with renew on access", Config{IdleTimeout: time.Hour, ExtendOnAccess: true}, "ExtendOnAccess"},
		{"delay not below idle", Config{IdleTimeout: time.Minute, ExtensionDelay: time.Minute}, "ExtensionDelay"},
		{"delay without idle", Config{ExtensionDelay: time.Minute}, "ExtensionDelay"},
		{"sub-second idle", Config{IdleTimeout: time.Millisecond}, "IdleTimeout"},
		{"negative absolute", Config{AbsoluteTimeout: -time.Hour}, "AbsoluteTimeout"},
		{"long grace", Config{RotationInterval: time.Hour, RotationGrace: time.Hour}, "RotationGrace"},
		{"limit below MaxAge", Config{MaxAge: time.Hour, MaxAgeLimit: time.Minute}, "MaxAgeLimit"},
		{"short id hash key", Config{IDHashKey: []byte("short")}, "IDHashKey"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var ce *ConfigError
			if err := tt.cfg.Validate(); !errors.As(err, &ce) || ce.Field != tt.field {
				t.Fatalf("err %v, want a ConfigError on %s", err, tt.field)
			}
		})
	}
	if c, _ := (Config{IdleTimeout: time.Hour}).compile(); c.ExtensionDelay != 6*time.Minute {
		t.Fatalf("default ExtensionDelay %v, want IdleTimeout/10", c.ExtensionDelay)
	}
}

// inProcessStore is the fake store declaring, as the memory store does,
// that its entries never leave the process.
type inProcessStore struct{ *fakeStore }

func (inProcessStore) Traits() store.Traits { return store.Traits{InProcess: true} }

// TestWhichStoresHashIDs: ids are hashed into store keys unless the store
// is in-process (nothing to dump) and no IDHashKey asks for the hash, or
// PlainStoreKeys opts out.
func TestWhichStoresHashIDs(t *testing.T) {
	for _, tc := range []struct {
		name      string
		inProcess bool
		cfg       Config
		hashed    bool
	}{
		{"shared store", false, Config{}, true},
		{"shared store, PlainStoreKeys", false, Config{PlainStoreKeys: true}, false},
		{"in-process store", true, Config{}, false},
		{"in-process store, IDHashKey", true, Config{IDHashKey: bytes.Repeat([]byte{7}, 32)}, true},
		{"in-process store, IDHashKey and PlainStoreKeys", true, Config{IDHashKey: bytes.Repeat([]byte{7}, 32), PlainStoreKeys: true}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fs := newFakeStore()
			var st store.Store = fs
			if tc.inProcess {
				st = inProcessStore{fs}
			}
			tc.cfg.Prefix = "p:"
			b := newBackend(t, tc.cfg, st)
			out, _ := request(t, b, "", func(s *Session) { s.Set("n", 1) })
			id := out.cookieValue(t, "session")
			if len(fs.data) != 1 {
				t.Fatalf("store holds %d records, want 1", len(fs.data))
			}
			for k := range fs.data {
				if plain := k == "p:"+id; plain == tc.hashed {
					t.Fatalf("store key %q for id %q: hashed=%v, want %v", k, id, !plain, tc.hashed)
				}
			}
			// Whichever key it is, the session reads back.
			request(t, b, id, func(s *Session) {
				if n, _ := s.GetInt("n"); n != 1 {
					t.Fatalf("n = %d after reload", n)
				}
			})
		})
	}
}

// A session given a long lifetime under a high MaxAgeLimit is held to a
// lower limit set later: its next save stores it for the new limit at most.
func TestLoweredMaxAgeLimitBoundsStoredSessions(t *testing.T) {
	st := newFakeStore()
	long := newBackend(t, Config{MaxAge: time.Hour, MaxAgeLimit: 30 * 24 * time.Hour}, st)
	out, err := request(t, long, "", func(s *Session) {
		s.Set("n", 1)
		if err := s.SetMaxAge(30 * 24 * time.Hour); err != nil {
			t.Fatal(err)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	id := out.cookieValue(t, "session")
	short := newBackend(t, Config{MaxAge: time.Hour, MaxAgeLimit: 24 * time.Hour}, st)
	out, err = request(t, short, id, func(s *Session) { s.Set("n", 2) })
	if err != nil {
		t.Fatal(err)
	}
	if ttl := st.ttl[short.storeKey([]byte(id))]; ttl != 24*time.Hour {
		t.Errorf("store TTL after the limit was lowered: %v, want 24h", ttl)
	}
	if line := out.cookies["session"]; !strings.Contains(line, "Max-Age=86400;") {
		t.Errorf("cookie after the limit was lowered: %s", line)
	}
}
