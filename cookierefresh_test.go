package kvsession

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kvsession/kvsession/store/memstore"
)

// refreshEnv is a server backend on the memory store with a test clock,
// and one session made at the clock's start.
type refreshEnv struct {
	b   *ServerBackend
	clk *clock
	st  *memstore.Store
	id  string
}

func newRefreshEnv(t *testing.T, cfg Config) *refreshEnv {
	t.Helper()
	b, clk, st := rvSetup(t, cfg)
	out, err := request(t, b, "", func(s *Session) { s.SetInt("n", 1) })
	if err != nil {
		t.Fatal(err)
	}
	return &refreshEnv{b: b, clk: clk, st: st, id: out.cookieValue(t, "session")}
}

// setCookieExp rewrites the stored record with field 9 (cookieExp) set to
// v, as a record saved before cookierefresh.go (the retired index
// coverage, in unix ns) or with the field zeroed would hold it.
func (e *refreshEnv) setCookieExp(t *testing.T, v int64) {
	t.Helper()
	ctx := context.Background()
	key := e.b.storeKey([]byte(e.id))
	rec, err := e.st.Get(ctx, key)
	if err != nil || rec == nil {
		t.Fatalf("record of %q: %v", e.id, err)
	}
	probe := e.b.pool.Get().(*Session)
	defer e.b.core.Release(probe)
	if err := probe.decode(rec); err != nil {
		t.Fatal(err)
	}
	probe.cookieExp = v
	if err := e.st.Set(ctx, key, probe.encode(nil), 14*24*time.Hour); err != nil {
		t.Fatal(err)
	}
}

// maxAgeOf returns the Max-Age attribute of a Set-Cookie line, "" if it
// has none (a browser-session cookie).
func maxAgeOf(line string) string {
	for attr := range strings.SplitSeq(line, "; ") {
		if v, ok := strings.CutPrefix(attr, "Max-Age="); ok {
			return v
		}
	}
	return ""
}

// TestCookieRefresh: a write under an unchanged id resends the session
// cookie only when its expiry would move by a hundredth of its lifetime
// (refreshStep: 12096 s of the default 14 days), or when the cookie must
// change anyway (cookierefresh.go). A response without the cookie sends no
// Cache-Control for it either, but still Vary: Cookie. After a resend,
// the record keeps what the cookie says: a second write straight after
// sends nothing.
func TestCookieRefresh(t *testing.T) {
	const (
		maxAge = "1209600" // the default 14 days
		step   = 12096 * time.Second
	)
	write := func(s *Session) { s.SetInt("n", 2) }
	read := func(s *Session) { s.GetInt("n") }
	for _, tc := range []struct {
		name string
		cfg  Config
		// before runs ahead of the request: it moves the clock, or
		// rewrites the record. It returns the Cookie header to send
		// ("" for the session's own cookie).
		before func(t *testing.T, e *refreshEnv) string
		fn     func(s *Session)
		send   bool   // the response sets the session cookie
		newID  bool   // ... naming another id than the session's
		maxAge string // ... with this Max-Age ("" for none)
		// resendAfter: the next request (then, or a write) straight
		// after resends as well (nothing recorded what the first sent).
		resendAfter bool
		then        func(s *Session)
		// life is the cookie's lifetime after the request, if not the
		// default 14 days: a hundredth of it is the step.
		life time.Duration
	}{
		{name: "write within the step", before: advance(step - time.Second), fn: write},
		{name: "write just past the step", before: advance(step), fn: write, send: true, maxAge: maxAge},
		{name: "write much later", before: advance(5 * 24 * time.Hour), fn: write, send: true, maxAge: maxAge},
		{name: "read within the step", before: advance(step), fn: read}, // a read writes nothing
		{name: "RenewID", fn: func(s *Session) { s.RenewID() }, send: true, newID: true, maxAge: maxAge},
		{
			name: "rotation", cfg: Config{RotationInterval: time.Hour},
			before: advance(time.Hour), fn: write, send: true, newID: true, maxAge: maxAge,
		},
		{
			// The id rotated out a second ago: its request is led to the
			// new id, which its client does not hold yet.
			name: "rotated-out id, read", cfg: Config{RotationInterval: time.Hour},
			before: rotateAway, fn: read, send: true, newID: true, maxAge: maxAge,
		},
		{
			name: "rotated-out id, write", cfg: Config{RotationInterval: time.Hour},
			before: rotateAway, fn: write, send: true, newID: true, maxAge: maxAge,
		},
		{
			name: "SetBrowserSession(true)", fn: func(s *Session) { s.SetBrowserSession(true) },
			send: true, maxAge: "",
		},
		{
			// Back from a browser-session cookie: the expiry the record
			// holds is -1, the new one a date.
			name: "SetBrowserSession(false) after true",
			before: func(t *testing.T, e *refreshEnv) string {
				mustRequest(t, e.b, e.id, func(s *Session) { s.SetBrowserSession(true) })
				return ""
			},
			fn: func(s *Session) { s.SetBrowserSession(false) }, send: true, maxAge: maxAge,
		},
		{name: "SetMaxAge", fn: func(s *Session) { s.SetMaxAge(time.Hour) }, send: true, maxAge: "3600", life: time.Hour},
		{
			// The session cookie twice, as a client with two paths'
			// cookies sends it: neither is trusted, and the response
			// gives the fresh session's cookie in their place.
			name: "duplicate cookie", fn: write, send: true, newID: true, maxAge: maxAge,
			before: func(t *testing.T, e *refreshEnv) string { return "session=" + e.id + "; session=" + e.id },
		},
		{
			// The id in two segments, as a large cookie is split: the
			// response sends it whole, and expires the segments.
			name: "segmented cookie", fn: write, send: true, maxAge: maxAge,
			before: func(t *testing.T, e *refreshEnv) string {
				return "session-0=0.2." + e.id[:20] + "; session-1=1.2." + e.id[20:]
			},
		},
		{
			// A record saved before cookierefresh.go: field 9 held the
			// per-user index record's coverage in unix ns, which cannot
			// be a cookie expiry. Unknown: resent, then recorded.
			name: "record with the retired index coverage", fn: write, send: true, maxAge: maxAge,
			before: func(t *testing.T, e *refreshEnv) string {
				e.setCookieExp(t, e.clk.now().Add(time.Hour).UnixNano())
				return ""
			},
		},
		{
			name: "record with field 9 zero", fn: write, send: true, maxAge: maxAge,
			before: func(t *testing.T, e *refreshEnv) string { e.setCookieExp(t, 0); return "" },
		},
		{name: "ExtendOnAccess, read within the step", cfg: Config{ExtendOnAccess: true}, before: advance(step - time.Second), fn: read},
		{
			// An extension writes the record back as loaded, so what the
			// cookie says is not kept: each read resends until a save
			// records it (backend.go).
			name: "ExtendOnAccess, read past the step", cfg: Config{ExtendOnAccess: true},
			before: advance(step), fn: read, send: true, maxAge: maxAge, resendAfter: true, then: read,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newRefreshEnv(t, tc.cfg)
			header := ""
			if tc.before != nil {
				header = tc.before(t, e)
			}
			if header == "" {
				header = "session=" + e.id
			}
			out, err := requestHeader(t, e.b, []byte(header), tc.fn)
			if err != nil {
				t.Fatal(err)
			}
			line, sent := out.cookies["session"]
			if sent != tc.send {
				t.Fatalf("Set-Cookie %q, want one: %v", line, tc.send)
			}
			if !slices.Contains(out.headers, "Vary: Cookie") {
				t.Errorf("headers %q, want Vary: Cookie", out.headers)
			}
			cacheControl := slices.Contains(out.headers, `Cache-Control: no-cache="Set-Cookie"`)
			if cacheControl != tc.send {
				t.Errorf("headers %q: Cache-Control no-cache=\"Set-Cookie\" %v, want %v", out.headers, cacheControl, tc.send)
			}
			if !tc.send {
				return
			}
			id := out.cookieValue(t, "session")
			if (id != e.id) != tc.newID {
				t.Errorf("cookie names %q, the session was %q: want a new id %v", id, e.id, tc.newID)
			}
			if got := maxAgeOf(line); got != tc.maxAge {
				t.Errorf("Set-Cookie %q: Max-Age %q, want %q", line, got, tc.maxAge)
			}
			// Straight after, the cookie just sent still says what it
			// should: a write resends it only if nothing recorded it.
			then := tc.then
			if then == nil {
				then = write
			}
			again := mustRequest(t, e.b, id, then)
			if _, resent := again.cookies["session"]; resent != tc.resendAfter {
				t.Errorf("the next request: Set-Cookie %v, want %v (%q)", resent, tc.resendAfter, again.cookies)
			}
			if !tc.resendAfter && tc.cfg.RotationInterval == 0 {
				// Nor does a write one second short of the step (with
				// no rotation due by then).
				life := tc.life
				if life == 0 {
					life = 14 * 24 * time.Hour
				}
				e.clk.advance(life/100 - time.Second)
				if later := mustRequest(t, e.b, id, write); len(later.cookies) != 0 {
					t.Errorf("a write within the step of the resend: Set-Cookie %q", later.cookies)
				}
			}
		})
	}
}

// advance returns a before hook that moves the clock by d.
func advance(d time.Duration) func(*testing.T, *refreshEnv) string {
	return func(_ *testing.T, e *refreshEnv) string { e.clk.advance(d); return "" }
}

// rotateAway rotates the session (RotationInterval an hour) with a write,
// and returns the Cookie header of a request with the rotated-out id,
// still within RotationGrace.
func rotateAway(t *testing.T, e *refreshEnv) string {
	t.Helper()
	e.clk.advance(time.Hour)
	out := mustRequest(t, e.b, e.id, func(s *Session) { s.SetInt("n", 1) })
	if next := out.cookieValue(t, "session"); next == e.id {
		t.Fatal("the session did not rotate")
	}
	e.clk.advance(time.Second)
	return "session=" + e.id
}

// mustRequest is request for requests that must succeed.
func mustRequest(t *testing.T, b *ServerBackend, id string, fn func(s *Session)) *sink {
	t.Helper()
	out, err := request(t, b, id, fn)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestCookieRefreshHeaderMode: a request in header mode (Config.IDHeader)
// never gets a cookie, and the id header only when the id changes, past
// the refresh step or not: the header has no expiry to refresh.
func TestCookieRefreshHeaderMode(t *testing.T) {
	for _, tc := range []struct {
		name    string
		advance time.Duration
		fn      func(s *Session)
		newID   bool
	}{
		{"write within the step", time.Minute, func(s *Session) { s.SetInt("n", 2) }, false},
		{"write past the step", 5 * 24 * time.Hour, func(s *Session) { s.SetInt("n", 2) }, false},
		{"RenewID", 0, func(s *Session) { s.RenewID() }, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, clk, _ := rvSetup(t, Config{IDHeader: testIDHeader})
			first := mustHeaderRequest(t, b, "", func(s *Session) { s.SetInt("n", 1) })
			checkHeaderResponse(t, first, true)
			id, ok := first.idAnswer()
			if !ok || id == "" {
				t.Fatalf("a new session in header mode got no id header: %q", first.set)
			}
			clk.advance(tc.advance)
			out := mustHeaderRequest(t, b, id, tc.fn)
			checkHeaderResponse(t, out, true)
			got, told := out.idAnswer()
			if told != tc.newID || (told && got == id) {
				t.Fatalf("id header %q (%v), want a new id: %v", got, told, tc.newID)
			}
		})
	}
}

// TestCookieExpDecode: field 9 reads as a cookie expiry only where it can
// be one; what a record saved before cookierefresh.go left there (the
// retired per-user index coverage, in unix ns) reads as unknown (0), so
// that the next write resends the cookie and records what it says.
func TestCookieExpDecode(t *testing.T) {
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name     string
		stored   int64
		wantRead int64
	}{
		{"unknown", 0, 0},
		{"browser-session cookie", -1, -1},
		{"an expiry in seconds", now.Unix() + 1209600, now.Unix() + 1209600},
		{"the retired coverage, in ns", now.UnixNano(), 0},
		{"year 2100 and after", maxCookieExpiry, 0},
		{"below -1", -2, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newRefreshEnv(t, Config{})
			e.setCookieExp(t, tc.stored)
			rec, err := e.st.Get(context.Background(), e.b.storeKey([]byte(e.id)))
			if err != nil {
				t.Fatal(err)
			}
			probe := e.b.pool.Get().(*Session)
			defer e.b.core.Release(probe)
			if err := probe.decode(rec); err != nil {
				t.Fatal(err)
			}
			if probe.cookieExp != tc.wantRead {
				t.Fatalf("field 9 %d reads as %d, want %d", tc.stored, probe.cookieExp, tc.wantRead)
			}
		})
	}
}

// TestCookieRefreshAbsoluteTimeoutLifted: the cookie a new session is sent
// with, and the expiry its record notes for it, count its absolute timeout
// from the save that creates it. Lifting the timeout later (a guest who
// signs in; a deployment that drops Config.AbsoluteTimeout) then moves the
// record's expiry by far more than a step, and the cookie is resent with
// the longer lifetime: noting the default lifetime instead (the timeout
// was left out while the session had no creation time) let the guest's
// one-hour cookie die under a session that lives 14 days.
func TestCookieRefreshAbsoluteTimeoutLifted(t *testing.T) {
	for _, tc := range []struct {
		name      string
		cfg, next Config
		first     func(*Session)
		later     func(*Session)
	}{
		{"SetAbsoluteTimeout lifted", Config{}, Config{},
			func(s *Session) {
				s.SetInt("n", 1)
				if err := s.SetAbsoluteTimeout(time.Hour); err != nil {
					t.Fatal(err)
				}
			},
			func(s *Session) {
				if err := s.SetAbsoluteTimeout(0); err != nil {
					t.Fatal(err)
				}
			}},
		{"Config.AbsoluteTimeout dropped", Config{AbsoluteTimeout: time.Hour}, Config{},
			func(s *Session) { s.SetInt("n", 1) },
			func(s *Session) { s.SetInt("n", 2) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, clk, st := rvSetup(t, tc.cfg)
			first := mustRequest(t, b, "", tc.first)
			if got := maxAgeOf(first.cookies["session"]); got != "3600" {
				t.Fatalf("first cookie %q: Max-Age %q, want 3600", first.cookies["session"], got)
			}
			next := newBackend(t, tc.next, st)
			next.now = clk.now
			clk.advance(time.Minute)
			out := mustRequest(t, next, first.cookieValue(t, "session"), tc.later)
			if got := maxAgeOf(out.cookies["session"]); got != "1209600" {
				t.Fatalf("after the timeout went: Set-Cookie %q, want Max-Age=1209600 (the record lives 14 days, the cookie 59 minutes)",
					out.cookies["session"])
			}
		})
	}
}

// TestCookieRefreshSetMaxAge: a lifetime the handler changes is resent
// however little it moves the cookie's expiry; setting the one the
// session already has resends nothing.
func TestCookieRefreshSetMaxAge(t *testing.T) {
	const day = 24 * time.Hour
	for _, tc := range []struct {
		name  string
		set   func(*Session) error
		want  string // Max-Age, "" for no Set-Cookie
		first func(*Session) error
	}{
		{"two hours longer", func(s *Session) error { return s.SetMaxAge(14*day + 2*time.Hour) }, "1216800", nil},
		{"two hours shorter", func(s *Session) error { return s.SetMaxAge(14*day - 2*time.Hour) }, "1202400", nil},
		{"the same again", func(s *Session) error { return s.SetMaxAge(20 * day) }, "",
			func(s *Session) error { return s.SetMaxAge(20 * day) }},
		{"persistent again", func(s *Session) error { return s.SetBrowserSession(false) }, "",
			func(s *Session) error { return s.SetBrowserSession(false) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, clk, _ := rvSetup(t, Config{MaxAgeLimit: 30 * day})
			id := mustRequest(t, b, "", func(s *Session) {
				s.SetInt("n", 1)
				if tc.first != nil {
					if err := tc.first(s); err != nil {
						t.Fatal(err)
					}
				}
			}).cookieValue(t, "session")
			clk.advance(time.Minute)
			out := mustRequest(t, b, id, func(s *Session) {
				if err := tc.set(s); err != nil {
					t.Fatal(err)
				}
			})
			line, sent := out.cookies["session"]
			switch {
			case tc.want == "" && sent:
				t.Fatalf("Set-Cookie %q, want none: the lifetime did not change", line)
			case tc.want != "" && maxAgeOf(line) != tc.want:
				t.Fatalf("Set-Cookie %q (sent %v), want Max-Age=%s", line, sent, tc.want)
			}
		})
	}
}
