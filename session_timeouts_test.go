package kvsession

import (
	"cmp"
	"encoding/binary"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/kvsession/kvsession/store"
	"github.com/kvsession/kvsession/store/memstore"
)

// clocked is a backend whose clock, and whose store's, is a test clock.
type clocked struct {
	name string
	b    Backend
	clk  *clock
	st   store.Store // the server backend's, for a restart on it
}

// clockedBackends opens cfg on the server backend (memory store) and, if
// withCookie, on the cookie backend, each with its own test clock.
func clockedBackends(t *testing.T, cfg Config, withCookie bool) []clocked {
	cfg.Logger = slog.New(slog.DiscardHandler)
	clk := newClock()
	st := memstore.New(memstore.Options{Now: clk.now})
	t.Cleanup(func() { st.Close() })
	sb := newBackend(t, cfg, st)
	sb.now = clk.now
	out := []clocked{{"server", sb, clk, st}}
	if withCookie {
		cclk := newClock()
		cfg.RotationInterval, cfg.RotationIntervalLimit = 0, 0 // server-side only
		out = append(out, clocked{"cookie", newCookieBackend(t, cfg, cclk), cclk, nil})
	}
	return out
}

// reopen opens a second backend on what cb's keeps sessions in (its store,
// or its secret), as a restarted process would, on cb's clock.
func reopen(t *testing.T, cb clocked, cfg Config) Backend {
	cfg.Logger = slog.New(slog.DiscardHandler)
	if cb.st == nil {
		return newCookieBackend(t, cfg, cb.clk)
	}
	b := newBackend(t, cfg, cb.st)
	b.now = cb.clk.now
	return b
}

// startSession starts a session holding "n" on br, giving it its own timeouts
// with set (nil: Config's).
func startSession(t *testing.T, br *browser, set func(s *Session) error) {
	t.Helper()
	br.do(func(s *Session) {
		if err := s.SetInt("n", 1); err != nil {
			t.Fatal(err)
		}
		if set != nil {
			if err := set(s); err != nil {
				t.Fatal(err)
			}
		}
	})
}

// holds reports whether br's session still holds "n".
func holds(t *testing.T, br *browser) bool {
	t.Helper()
	var ok bool
	br.do(func(s *Session) { _, ok = s.GetInt("n") })
	return ok
}

// TestPerSessionIdleTimeout: an administrator's session with an idle
// timeout of its own ends after that much idleness, while a session beside
// it, on Config's, lives on; use keeps the short one alive, since its
// extension delay is scaled to its own timeout; and one given a longer
// timeout than Config's, under a raised limit, outlives Config's.
func TestPerSessionIdleTimeout(t *testing.T) {
	tests := []struct {
		name      string
		cfg       Config
		own       time.Duration // the admin's idle timeout; 0: 5 minutes
		every     time.Duration // the admin uses its session this often
		for_      time.Duration // for this long
		adminLive bool
		userLive  bool // the other session, idle all along
	}{
		{"idle beside Config's 30m", Config{IdleTimeout: 30 * time.Minute}, 0, 6 * time.Minute, 6 * time.Minute, false, true},
		{"idle with Config's off", Config{}, 0, 6 * time.Minute, 6 * time.Minute, false, true},
		{"used within its timeout", Config{IdleTimeout: 30 * time.Minute}, 0, 4 * time.Minute, 20 * time.Minute, true, true},
		// Config's delay of 10m is longer than the admin's 5m: unscaled,
		// the admin's session would never be extended before it ends.
		{"Config's ExtensionDelay above its timeout", Config{IdleTimeout: 30 * time.Minute, ExtensionDelay: 10 * time.Minute},
			0, 2 * time.Minute, 20 * time.Minute, true, true},
		{"no IdleTimeout in Config, used often", Config{}, 0, 2 * time.Minute, 20 * time.Minute, true, true},
		// The cookie backend must not take a cookie idle longer than
		// Config's IdleTimeout for one outliving every cookie.
		{"longer than Config's, under a raised limit", Config{IdleTimeout: 30 * time.Minute, IdleTimeoutLimit: 2 * time.Hour},
			time.Hour, 45 * time.Minute, 45 * time.Minute, true, false},
	}
	for _, tc := range tests {
		for _, cb := range clockedBackends(t, tc.cfg, true) {
			t.Run(tc.name+"/"+cb.name, func(t *testing.T) {
				own := cmp.Or(tc.own, 5*time.Minute)
				admin, user := newBrowser(t, cb.b), newBrowser(t, cb.b)
				startSession(t, user, nil)
				admin.do(func(s *Session) {
					s.SetInt("n", 1)
					if err := s.SetIdleTimeout(own); err != nil {
						t.Fatal(err)
					}
					if got, want := s.Deadline(), cb.clk.t.Add(own); !got.Equal(want) {
						t.Fatalf("Deadline() = %v, want %v", got, want)
					}
				})
				live := true
				for elapsed := time.Duration(0); elapsed < tc.for_ && live; elapsed += tc.every {
					cb.clk.advance(tc.every)
					live = holds(t, admin)
				}
				if live != tc.adminLive {
					t.Fatalf("admin session alive = %v, want %v", live, tc.adminLive)
				}
				if got := holds(t, user); got != tc.userLive {
					t.Fatalf("other session alive = %v, want %v", got, tc.userLive)
				}
			})
		}
	}
}

// TestPerSessionAbsoluteTimeout: a session with an absolute timeout of its
// own ends that long after its creation, however active, while one beside
// it on Config's lives on.
func TestPerSessionAbsoluteTimeout(t *testing.T) {
	for _, cfg := range []Config{{}, {AbsoluteTimeout: 8 * time.Hour}} {
		for _, cb := range clockedBackends(t, cfg, true) {
			t.Run(cfg.AbsoluteTimeout.String()+"/"+cb.name, func(t *testing.T) {
				admin, user := newBrowser(t, cb.b), newBrowser(t, cb.b)
				startSession(t, user, nil)
				admin.do(func(s *Session) {
					s.SetInt("n", 1)
					if err := s.SetAbsoluteTimeout(time.Hour); err != nil {
						t.Fatal(err)
					}
					if got, want := s.Deadline(), cb.clk.t.Add(time.Hour); !got.Equal(want) {
						t.Fatalf("Deadline() = %v, want %v", got, want)
					}
				})
				for range 5 {
					cb.clk.advance(10 * time.Minute)
					if !holds(t, admin) || !holds(t, user) {
						t.Fatal("a session ended before its absolute timeout")
					}
				}
				cb.clk.advance(10 * time.Minute)
				if holds(t, admin) {
					t.Fatal("the admin session outlived its own absolute timeout")
				}
				if !holds(t, user) {
					t.Fatal("the other session ended with the admin's")
				}
			})
		}
	}
}

// TestPerSessionRotationInterval: a server session with a rotation period
// of its own gets a new id once it has passed, while a session beside it
// on Config's (off) keeps its id. The cookie backend has no id: it
// refuses one.
func TestPerSessionRotationInterval(t *testing.T) {
	cb := clockedBackends(t, Config{}, false)[0]
	admin, user := newBrowser(t, cb.b), newBrowser(t, cb.b)
	startSession(t, user, nil)
	startSession(t, admin, func(s *Session) error { return s.SetRotationInterval(10 * time.Minute) })
	adminID, userID := admin.jar["session"], user.jar["session"]
	for _, tc := range []struct {
		after   time.Duration
		rotated bool
	}{{9 * time.Minute, false}, {time.Minute, true}} {
		cb.clk.advance(tc.after)
		if !holds(t, admin) || !holds(t, user) {
			t.Fatal("a session ended")
		}
		if got := admin.jar["session"] != adminID; got != tc.rotated {
			t.Fatalf("after %v more, admin id rotated = %v, want %v", tc.after, got, tc.rotated)
		}
		if user.jar["session"] != userID {
			t.Fatal("the other session's id was rotated")
		}
	}

	c := newBrowser(t, newCookieBackend(t, Config{}, newClock()))
	c.do(func(s *Session) {
		if err := s.SetRotationInterval(10 * time.Minute); err == nil || !strings.Contains(err.Error(), "no id") {
			t.Fatalf("cookie SetRotationInterval = %v, want a refusal", err)
		}
		if err := s.SetRotationInterval(0); err != nil {
			t.Fatalf("cookie SetRotationInterval(0) = %v", err)
		}
		if d := s.RotationInterval(); d != 0 {
			t.Fatalf("cookie RotationInterval() = %v", d)
		}
	})
}

// TestPerSessionTimeoutsPersist: a session's own timeouts are read back on
// later requests and by a restarted backend on the same store (or secret),
// cut to a limit lowered since; 0 returns to Config's.
func TestPerSessionTimeoutsPersist(t *testing.T) {
	cfg := Config{
		IdleTimeout: 30 * time.Minute, IdleTimeoutLimit: 2 * time.Hour,
		AbsoluteTimeout: 8 * time.Hour, RotationInterval: time.Hour,
	}
	lowered := cfg
	lowered.IdleTimeoutLimit = 0 // back to IdleTimeout
	type want struct{ idle, abs, rot time.Duration }
	tests := []struct {
		name            string
		set             func(s *Session, server bool) error
		restart         Config
		next, restarted want
	}{
		{"Config's", nil, cfg,
			want{30 * time.Minute, 8 * time.Hour, time.Hour}, want{30 * time.Minute, 8 * time.Hour, time.Hour}},
		{"own", func(s *Session, server bool) error {
			err := errors.Join(s.SetIdleTimeout(time.Hour), s.SetAbsoluteTimeout(2*time.Hour))
			if server {
				err = errors.Join(err, s.SetRotationInterval(20*time.Minute))
			}
			return err
		}, cfg, want{time.Hour, 2 * time.Hour, 20 * time.Minute}, want{time.Hour, 2 * time.Hour, 20 * time.Minute}},
		{"own, then back to Config's", func(s *Session, server bool) error {
			return errors.Join(s.SetIdleTimeout(time.Hour), s.SetIdleTimeout(0), s.SetAbsoluteTimeout(time.Hour), s.SetAbsoluteTimeout(0))
		}, cfg, want{30 * time.Minute, 8 * time.Hour, time.Hour}, want{30 * time.Minute, 8 * time.Hour, time.Hour}},
		{"own, limit lowered at the restart", func(s *Session, server bool) error { return s.SetIdleTimeout(time.Hour) },
			lowered, want{time.Hour, 8 * time.Hour, time.Hour}, want{30 * time.Minute, 8 * time.Hour, time.Hour}},
	}
	for _, tc := range tests {
		for _, cb := range clockedBackends(t, cfg, true) {
			t.Run(tc.name+"/"+cb.name, func(t *testing.T) {
				server, restart := cb.st != nil, tc.restart
				if !server { // no rotation in cookie sessions
					tc.next.rot, tc.restarted.rot, restart.RotationInterval = 0, 0, 0
				}
				check := func(br *browser, w want, when string) {
					t.Helper()
					br.do(func(s *Session) {
						if got := (want{s.IdleTimeout(), s.AbsoluteTimeout(), s.RotationInterval()}); got != w {
							t.Fatalf("%s: timeouts %v, want %v", when, got, w)
						}
					})
				}
				br := newBrowser(t, cb.b)
				var set func(s *Session) error
				if tc.set != nil {
					set = func(s *Session) error { return tc.set(s, server) }
				}
				startSession(t, br, set)
				cb.clk.advance(time.Minute)
				check(br, tc.next, "next request")
				again := newBrowser(t, reopen(t, cb, restart))
				again.jar = br.jar
				check(again, tc.restarted, "after a restart")
			})
		}
	}
}

// TestPerSessionTimeoutBounds: Set* refuses values outside a second to the
// limit, and an idle timeout with ExtendOnAccess, leaving the session's
// timeouts as they were.
func TestPerSessionTimeoutBounds(t *testing.T) {
	cfg := Config{IdleTimeout: 30 * time.Minute, AbsoluteTimeoutLimit: 12 * time.Hour, RotationInterval: time.Hour}
	tests := []struct {
		name  string
		cfg   Config
		set   func(s *Session) error
		limit string // "" if the call is accepted
	}{
		{"idle at the limit", cfg, func(s *Session) error { return s.SetIdleTimeout(30 * time.Minute) }, ""},
		{"idle above the limit", cfg, func(s *Session) error { return s.SetIdleTimeout(31 * time.Minute) }, "IdleTimeoutLimit"},
		{"idle below a second", cfg, func(s *Session) error { return s.SetIdleTimeout(time.Second / 2) }, "IdleTimeoutLimit"},
		{"idle negative", cfg, func(s *Session) error { return s.SetIdleTimeout(-time.Minute) }, "IdleTimeoutLimit"},
		{"idle with ExtendOnAccess", Config{ExtendOnAccess: true}, func(s *Session) error { return s.SetIdleTimeout(time.Minute) }, "ExtendOnAccess"},
		{"idle up to MaxAgeLimit with Config's off", Config{}, func(s *Session) error { return s.SetIdleTimeout(DefaultMaxAge) }, ""},
		{"idle above MaxAgeLimit with Config's off", Config{}, func(s *Session) error { return s.SetIdleTimeout(DefaultMaxAge + time.Second) }, "IdleTimeoutLimit"},
		{"absolute under a raised limit", cfg, func(s *Session) error { return s.SetAbsoluteTimeout(12 * time.Hour) }, ""},
		{"absolute above the limit", cfg, func(s *Session) error { return s.SetAbsoluteTimeout(13 * time.Hour) }, "AbsoluteTimeoutLimit"},
		{"rotation above the limit", cfg, func(s *Session) error { return s.SetRotationInterval(2 * time.Hour) }, "RotationIntervalLimit"},
		{"rotation below a second", cfg, func(s *Session) error { return s.SetRotationInterval(time.Millisecond) }, "RotationIntervalLimit"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := newBackend(t, tc.cfg, newFakeStore())
			if _, err := request(t, b, "", func(s *Session) {
				before := [3]time.Duration{s.IdleTimeout(), s.AbsoluteTimeout(), s.RotationInterval()}
				err := tc.set(s)
				if tc.limit == "" {
					if err != nil {
						t.Fatalf("refused: %v", err)
					}
					return
				}
				if err == nil || !strings.Contains(err.Error(), tc.limit) {
					t.Fatalf("err = %v, want one naming %s", err, tc.limit)
				}
				if after := [3]time.Duration{s.IdleTimeout(), s.AbsoluteTimeout(), s.RotationInterval()}; after != before || s.Modified() {
					t.Fatalf("a refused call changed the session: %v, then %v", before, after)
				}
			}); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestTimeoutLimitsConfig: the limits default to their Config values (or
// MaxAgeLimit with those off), and a limit below its Config value, below a
// second or above 400 days is a *ConfigError naming it.
func TestTimeoutLimitsConfig(t *testing.T) {
	tests := []struct {
		name  string
		cfg   Config
		field string // "" if valid
		want  [3]time.Duration
	}{
		{"defaults, timeouts off", Config{}, "", [3]time.Duration{DefaultMaxAge, DefaultMaxAge, DefaultMaxAge}},
		{"defaults follow the timeouts", Config{IdleTimeout: time.Hour, AbsoluteTimeout: 8 * time.Hour, RotationInterval: time.Minute},
			"", [3]time.Duration{time.Hour, 8 * time.Hour, time.Minute}},
		{"raised", Config{IdleTimeout: time.Hour, IdleTimeoutLimit: 2 * time.Hour}, "", [3]time.Duration{2 * time.Hour, DefaultMaxAge, DefaultMaxAge}},
		{"idle limit below IdleTimeout", Config{IdleTimeout: time.Hour, IdleTimeoutLimit: time.Minute}, "IdleTimeoutLimit", [3]time.Duration{}},
		{"idle limit below a second", Config{IdleTimeoutLimit: time.Millisecond}, "IdleTimeoutLimit", [3]time.Duration{}},
		{"idle limit negative", Config{IdleTimeoutLimit: -time.Hour}, "IdleTimeoutLimit", [3]time.Duration{}},
		{"absolute limit below AbsoluteTimeout", Config{AbsoluteTimeout: time.Hour, AbsoluteTimeoutLimit: time.Minute}, "AbsoluteTimeoutLimit", [3]time.Duration{}},
		{"absolute limit above 400 days", Config{AbsoluteTimeoutLimit: MaxMaxAge + time.Hour}, "AbsoluteTimeoutLimit", [3]time.Duration{}},
		{"rotation limit below RotationInterval", Config{RotationInterval: time.Hour, RotationIntervalLimit: time.Minute}, "RotationIntervalLimit", [3]time.Duration{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := tc.cfg.compile()
			if tc.field != "" {
				var ce *ConfigError
				if !errors.As(err, &ce) || ce.Field != tc.field {
					t.Fatalf("err = %v, want a *ConfigError on %s", err, tc.field)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := [3]time.Duration{c.IdleTimeoutLimit, c.AbsoluteTimeoutLimit, c.RotationIntervalLimit}; got != tc.want {
				t.Fatalf("limits %v, want %v", got, tc.want)
			}
		})
	}
	_, err := NewCookie(Config{Secrets: [][]byte{keyA}, RotationIntervalLimit: time.Hour}, nil)
	var ce *ConfigError
	if !errors.As(err, &ce) || ce.Field != "RotationIntervalLimit" {
		t.Fatalf("NewCookie with RotationIntervalLimit: %v, want a *ConfigError on it", err)
	}
}

// TestTimeoutsRecordField: the thirteenth record field is written only for
// a session with timeouts of its own, forcing the twelfth (flashes) as an
// empty array, so that every other record stays as it was; records
// without it read with Config's timeouts, and a malformed one is
// unreadable.
func TestTimeoutsRecordField(t *testing.T) {
	encodeTests := []struct {
		name   string
		data   sessionData
		header byte   // the record's array header
		tail   []byte // how it ends
	}{
		{"nothing of its own", sessionData{}, 0x9b, []byte{0}},
		{"a flash only", sessionData{flashes: []Flash{{"k", "m"}}}, 0x9c, []byte{0x91, 0x92, 0xa1, 'k', 0xa1, 'm'}},
		{"an idle timeout", sessionData{ownIdle: 5}, 0x9d, []byte{0, 0x90, 0x93, 5, 0, 0}},
		{"a rotation and a flash", sessionData{ownRotation: 7, flashes: []Flash{{"k", "m"}}}, 0x9d,
			[]byte{0x91, 0x92, 0xa1, 'k', 0xa1, 'm', 0x93, 0, 0, 7}},
	}
	for _, tc := range encodeTests {
		t.Run(tc.name, func(t *testing.T) {
			s := &Session{sessionData: tc.data}
			rec := s.encode(nil)
			if rec[0] != tc.header || !strings.HasSuffix(string(rec), string(tc.tail)) {
				t.Fatalf("record % x: want header %x, ending % x", rec, tc.header, tc.tail)
			}
		})
	}

	// user "", extended, rotated, maxAge, cookieMode, 0, indexed, bound
	eleven := []byte{0xa0, 0, 0, 0, 0, 0, 0, 0}
	five := []byte{0xcf, 0, 0, 0, 0x45, 0xd9, 0x64, 0xb8, 0} // 300e9 ns as uint64
	withTail := func(tail ...byte) []byte { return append(append([]byte(nil), eleven...), tail...) }
	readTests := []struct {
		name     string
		fields   byte
		tail     []byte
		readable bool
		idle     time.Duration
	}{
		{"eleven fields", 11, eleven, true, 30 * time.Minute},
		{"twelve fields", 12, withTail(0x90), true, 30 * time.Minute},
		{"thirteen, an idle timeout", 13, withTail(append([]byte{0x90, 0x93}, append(five, 0, 0)...)...), true, 5 * time.Minute},
		{"thirteen, more than three", 13, withTail(append([]byte{0x90, 0x94}, append(five, 0, 0, 0xa0)...)...), true, 5 * time.Minute},
		{"thirteen, none of its own", 13, withTail(0x90, 0x93, 0, 0, 0), true, 30 * time.Minute},
		{"thirteen, two", 13, withTail(0x90, 0x92, 0, 0), false, 0},
		{"thirteen, negative", 13, withTail(0x90, 0x93, 0xff, 0, 0), false, 0},
		{"thirteen, not an array", 13, withTail(0x90, 0), false, 0},
	}
	cfg := Config{IdleTimeout: 30 * time.Minute, Logger: slog.New(slog.DiscardHandler)}
	for _, tc := range readTests {
		for _, backend := range []string{"server", "cookie"} {
			t.Run(tc.name+"/"+backend, func(t *testing.T) {
				br := plantWith(t, backend, cfg, flashRecord(tc.fields, tc.tail...))
				br.do(func(s *Session) {
					if _, ok := s.GetInt("k"); ok != tc.readable {
						t.Fatalf("readable = %v, want %v", ok, tc.readable)
					}
					if tc.readable && s.IdleTimeout() != tc.idle {
						t.Fatalf("IdleTimeout() = %v, want %v", s.IdleTimeout(), tc.idle)
					}
				})
			})
		}
	}
}

// plantWith is plantServerRecord and plantCookieRecord under cfg, with
// the session saved or sealed a second ago.
func plantWith(t *testing.T, backend string, cfg Config, rec []byte) *browser {
	clk := newClock()
	if backend == "server" {
		st := newFakeStore()
		b := newBackend(t, cfg, st)
		b.now = clk.now
		id, err := b.GenerateID()
		if err != nil {
			t.Fatal(err)
		}
		st.data[b.storeKey([]byte(id))] = rec
		br := newBrowser(t, b)
		br.jar[b.CookieName()] = id
		return br
	}
	b := newCookieBackend(t, cfg, clk)
	plain := binary.BigEndian.AppendUint64(nil, 0)
	plain = binary.BigEndian.AppendUint64(plain, uint64(clk.t.Add(time.Minute).UnixNano()))
	plain = append(plain, rec...)
	k := &b.keys[0]
	nonce := make([]byte, cookieNonceBytes)
	sealed := append(append([]byte{cookieFormat}, k.id[:]...), nonce...)
	sealed = k.aead.Seal(sealed, nonce, plain, k.aad)
	s := b.LoadFromRequest(t.Context(), nil)
	out := &sink{}
	if err := b.setCookie(s, out, strictBase64.AppendEncode(nil, sealed), cookiePersistent, time.Minute); err != nil {
		t.Fatal(err)
	}
	b.Release(s)
	br := newBrowser(t, b)
	br.jar = out.live(t)
	return br
}
