package kvsession

import (
	"context"
	"encoding/binary"
	"testing"
	"time"

	"github.com/kvsession/kvsession/store/memstore"
)

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
