package kvsession

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
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
	cfg := Config{MaxAge: time.Hour, MaxAgeLimit: 30 * 24 * time.Hour, CookieExpires: true}
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
		next := out.heldID(t, "session", id)
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

// keptUntil returns when what the browser holds after a response ends, as
// the backend itself keeps it: the store TTL of the server backend's
// record, or the expiry sealed in the cookie. Deadline must predict it.
func (e *lifecycleEnv) keptUntil(t *testing.T, h []byte) time.Time {
	t.Helper()
	s := e.b.LoadFromRequest(context.Background(), h)
	defer e.b.Release(s)
	if err := s.Load(); err != nil {
		t.Fatal(err)
	}
	switch b := e.b.(type) {
	case *ServerBackend:
		left, err := e.st.ExpiresIn(context.Background(), s.key)
		if err != nil {
			t.Fatalf("no record kept: %v", err)
		}
		return e.clk.now().Add(left)
	case *CookieBackend:
		plain, _, ok := b.unseal(s)
		if !ok {
			t.Fatal("cookie does not open")
		}
		return time.Unix(0, int64(binary.BigEndian.Uint64(plain[8:])))
	}
	panic("unknown backend")
}

func TestDeadline(t *testing.T) {
	set := func(s *Session) { s.Set("n", 1) }
	read := func(s *Session) { s.Has("n") }
	type step struct {
		after time.Duration    // clock advance before the request
		do    func(s *Session) // the handler, before Deadline is read
		want  time.Duration    // deadline from the test's start; -1: zero time
	}
	tests := []struct {
		name  string
		cfg   Config
		steps []step
	}{
		{"MaxAge only: a read keeps it, a write restarts it", Config{MaxAge: time.Hour}, []step{
			{0, set, time.Hour},
			{10 * time.Minute, read, time.Hour},
			{10 * time.Minute, set, 20*time.Minute + time.Hour},
		}},
		{"SetMaxAge: remember me", Config{MaxAge: time.Hour, MaxAgeLimit: 30 * 24 * time.Hour}, []step{
			{0, func(s *Session) { set(s); s.SetMaxAge(30 * 24 * time.Hour) }, 30 * 24 * time.Hour},
			{time.Hour, read, 30 * 24 * time.Hour},
			{time.Hour, func(s *Session) { s.SetMaxAge(0) }, 2*time.Hour + time.Hour},
		}},
		{"IdleTimeout: moves when extended", Config{MaxAge: time.Hour, IdleTimeout: 10 * time.Minute, ExtensionDelay: time.Minute}, []step{
			{0, set, 10 * time.Minute},
			{30 * time.Second, read, 10 * time.Minute}, // no extension yet
			{5 * time.Minute, read, 5*time.Minute + 30*time.Second + 10*time.Minute},
			{30 * time.Second, read, 5*time.Minute + 30*time.Second + 10*time.Minute},
		}},
		{"AbsoluteTimeout of a new session", Config{MaxAge: time.Hour, AbsoluteTimeout: 30 * time.Minute}, []step{
			{0, set, 30 * time.Minute},
			{10 * time.Minute, set, 30 * time.Minute},
		}},
		{"the earliest of idle and absolute wins", Config{MaxAge: time.Hour, IdleTimeout: 20 * time.Minute, AbsoluteTimeout: 30 * time.Minute, ExtensionDelay: time.Minute}, []step{
			{0, set, 20 * time.Minute},
			{5 * time.Minute, read, 25 * time.Minute},
			{15 * time.Minute, read, 30 * time.Minute},
			{5 * time.Minute, set, 30 * time.Minute},
		}},
		{"ExtendOnAccess: a read restarts MaxAge", Config{MaxAge: time.Hour, ExtendOnAccess: true}, []step{
			{0, set, time.Hour},
			{10 * time.Minute, read, 10*time.Minute + time.Hour},
		}},
		{"after time passes: gone, then new", Config{MaxAge: time.Hour}, []step{
			{0, set, time.Hour},
			{2 * time.Hour, read, -1},
			{0, set, 2*time.Hour + time.Hour},
		}},
		{"nothing kept: zero", Config{MaxAge: time.Hour}, []step{
			{0, read, -1},
			{0, set, time.Hour},
			{time.Minute, func(s *Session) { s.Destroy() }, -1},
		}},
	}
	for _, tt := range tests {
		for kind, e := range newLifecycleEnvs(t, tt.cfg) {
			t.Run(tt.name+"/"+kind, func(t *testing.T) {
				start := e.clk.now()
				var h []byte
				for i, st := range tt.steps {
					e.clk.advance(st.after)
					var got time.Time
					h, _ = e.visit(t, h, func(s *Session) {
						st.do(s)
						got = s.Deadline()
					})
					if st.want < 0 {
						if !got.IsZero() {
							t.Fatalf("step %d: Deadline = %v, want the zero time", i, got)
						}
						continue
					}
					if want := start.Add(st.want); !got.Equal(want) {
						t.Fatalf("step %d: Deadline = start+%v, want start+%v", i, got.Sub(start), st.want)
					}
					if kept := e.keptUntil(t, h); !kept.Equal(got) {
						t.Fatalf("step %d: Deadline = start+%v, but the response keeps the session until start+%v", i, got.Sub(start), kept.Sub(start))
					}
				}
			})
		}
	}
}

func TestIsNew(t *testing.T) {
	set := func(s *Session) { s.Set("n", 1) }
	read := func(s *Session) { s.Has("n") }
	type step struct {
		header string // "": the cookie the last response left
		do     func(s *Session)
		want   bool
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{"first request, then the next", []step{{"", set, true}, {"", read, false}}},
		{"new even if never written", []step{{"", read, true}, {"", set, true}}},
		{"loaded, still not new after Destroy", []step{{"", set, true}, {"", func(s *Session) { s.Destroy() }, false}, {"", read, true}}},
		{"loaded, still not new after RenewID", []step{{"", set, true}, {"", func(s *Session) { s.RenewID() }, false}, {"", read, false}}},
		{"unknown cookie", []step{{"session=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", read, true}}},
	}
	for _, tt := range tests {
		for kind, e := range newLifecycleEnvs(t, Config{MaxAge: time.Hour}) {
			t.Run(tt.name+"/"+kind, func(t *testing.T) {
				var h []byte
				for i, st := range tt.steps {
					if st.header != "" {
						h = []byte(st.header)
					}
					var before, after bool
					h, _ = e.visit(t, h, func(s *Session) {
						before = s.IsNew()
						st.do(s)
						after = s.IsNew()
					})
					if before != st.want || after != st.want {
						t.Fatalf("step %d: IsNew = %v before the handler's work, %v after, want %v", i, before, after, st.want)
					}
				}
			})
		}
	}
}

// TestDeadlineOfARenewalNotAsked checks the writes a read triggers without
// the handler asking: an id rotation (server) and a re-seal under the
// current key (cookie). Both restart MaxAge, so Deadline must count from
// the read.
func TestDeadlineOfARenewalNotAsked(t *testing.T) {
	server := func(t *testing.T, clk *clock) (Backend, Backend, *countingMemory) {
		st := &countingMemory{Store: memstore.New(memstore.Options{Now: clk.now})}
		t.Cleanup(func() { st.Close() })
		b := newBackend(t, Config{MaxAge: time.Hour, RotationInterval: 10 * time.Minute}, st)
		b.now = clk.now
		return b, b, st
	}
	cookie := func(t *testing.T, clk *clock) (Backend, Backend, *countingMemory) {
		old := newCookieBackend(t, Config{MaxAge: time.Hour, Secrets: [][]byte{keyB}}, clk)
		return old, newCookieBackend(t, Config{MaxAge: time.Hour, Secrets: [][]byte{keyA, keyB}}, clk), nil
	}
	for name, setup := range map[string]func(*testing.T, *clock) (Backend, Backend, *countingMemory){
		"server rotation": server, "cookie key rotation": cookie,
	} {
		t.Run(name, func(t *testing.T) {
			clk := newClock()
			first, then, st := setup(t, clk)
			start := clk.now()
			h, _ := (&lifecycleEnv{clk: clk, b: first}).visit(t, nil, func(s *Session) { s.Set("n", 1) })
			clk.advance(15 * time.Minute)
			e := &lifecycleEnv{clk: clk, st: st, b: then}
			var got time.Time
			h, _ = e.visit(t, h, func(s *Session) { got = s.Deadline() })
			if want := start.Add(15*time.Minute + time.Hour); !got.Equal(want) {
				t.Fatalf("Deadline = start+%v, want start+%v", got.Sub(start), want.Sub(start))
			}
			if kept := e.keptUntil(t, h); !kept.Equal(got) {
				t.Fatalf("Deadline = start+%v, but the session is kept until start+%v", got.Sub(start), kept.Sub(start))
			}
		})
	}
}
