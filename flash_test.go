package kvsession

import (
	"encoding/binary"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kvsession/kvsession/internal/msgp"
)

var (
	flashSaved = Flash{Kind: DefaultFlashKind, Message: "Saved."}
	flashWrong = Flash{Kind: "error", Message: "Wrong password."}
	flashLater = Flash{Kind: "warning", Message: "Later."}
)

// addFlashes adds fs in order, failing the test on an error.
func addFlashes(t *testing.T, s *Session, fs ...Flash) {
	t.Helper()
	for _, f := range fs {
		var err error
		if f.Kind == DefaultFlashKind {
			err = s.AddFlash(f.Message) // the default kind
		} else {
			err = s.AddFlash(f.Message, f.Kind)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

// TestFlashesAreShownOnce runs a few requests per case; each handler adds
// some flashes, reads them or not, and says what Flashes must return.
func TestFlashesAreShownOnce(t *testing.T) {
	type step struct {
		add  []Flash
		read bool
		want []Flash                        // what Flashes returns when read, after add
		also func(t *testing.T, s *Session) // before the read
		then func(t *testing.T, s *Session) // after it
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{"added, read on the next request, then gone", []step{
			{add: []Flash{flashSaved, flashWrong}},
			{read: true, want: []Flash{flashSaved, flashWrong}},
			{read: true, want: nil},
		}},
		{"a request that adds but does not read keeps them", []step{
			{add: []Flash{flashSaved}},
			{add: []Flash{flashWrong}},
			{read: true, want: []Flash{flashSaved, flashWrong}},
			{read: true, want: nil},
		}},
		{"a request that neither adds nor reads keeps them", []step{
			{add: []Flash{flashSaved}},
			{also: func(t *testing.T, s *Session) { s.Set("n", 1) }},
			{read: true, want: []Flash{flashSaved}},
		}},
		{"read on the request that added them", []step{
			{add: []Flash{flashSaved}, read: true, want: []Flash{flashSaved}},
			{read: true, want: nil},
		}},
		{"added after reading, read on the next request", []step{
			{add: []Flash{flashSaved}},
			{read: true, want: []Flash{flashSaved}, then: func(t *testing.T, s *Session) { addFlashes(t, s, flashLater) }},
			{read: true, want: []Flash{flashLater}},
		}},
		{"apart from the values", []step{
			{add: []Flash{flashSaved}, also: func(t *testing.T, s *Session) {
				if s.Len() != 0 || len(s.Keys()) != 0 || len(s.Values()) != 0 || s.Has("") || s.Has("Saved.") {
					t.Errorf("flashes seen as values: len %d keys %q values %v", s.Len(), s.Keys(), s.Values())
				}
				s.Delete("")
				s.Delete(DefaultFlashKind)
			}},
			{read: true, want: []Flash{flashSaved}},
		}},
		{"Clear drops them", []step{
			{add: []Flash{flashSaved}},
			{also: func(t *testing.T, s *Session) { s.Set("n", 1); s.Clear() }},
			{read: true, want: nil},
		}},
		{"Destroy drops them", []step{
			{add: []Flash{flashSaved}},
			{also: func(t *testing.T, s *Session) {
				if err := s.Destroy(); err != nil {
					t.Fatal(err)
				}
			}},
			{read: true, want: nil},
		}},
		{"added after Destroy, kept in the new session", []step{
			{add: []Flash{flashSaved}},
			{also: func(t *testing.T, s *Session) {
				if err := s.Destroy(); err != nil {
					t.Fatal(err)
				}
				addFlashes(t, s, flashLater)
			}},
			{read: true, want: []Flash{flashLater}},
		}},
	}
	for _, be := range bothBackends {
		for _, tc := range tests {
			t.Run(be.name+"/"+tc.name, func(t *testing.T) {
				br := newBrowser(t, be.open(t))
				for i, st := range tc.steps {
					br.do(func(s *Session) {
						addFlashes(t, s, st.add...)
						if st.also != nil {
							st.also(t, s)
						}
						if st.read {
							if got := s.Flashes(); !slices.Equal(got, st.want) {
								t.Fatalf("request %d: Flashes() = %q, want %q", i+1, got, st.want)
							}
						}
						if st.then != nil {
							st.then(t, s)
						}
					})
				}
			})
		}
	}
}

// TestFlashesAloneKeepASession: a visitor with no session who is shown a
// flash gets a session for it, and loses it once the flash is read.
func TestFlashesAloneKeepASession(t *testing.T) {
	for _, be := range bothBackends {
		t.Run(be.name, func(t *testing.T) {
			br := newBrowser(t, be.open(t))
			br.do(func(s *Session) { addFlashes(t, s, flashSaved) })
			if len(br.jar) == 0 {
				t.Fatal("a session holding only a flash was not kept")
			}
			br.do(func(s *Session) { s.Flashes() })
			if len(br.jar) != 0 {
				t.Fatalf("the session emptied by reading its flash left cookies %v", br.jar)
			}
		})
	}
}

// TestFlashesWithNoneWaitingWriteNothing: a page that asks for flashes on
// every request must not cost a write each time.
func TestFlashesWithNoneWaitingWriteNothing(t *testing.T) {
	for _, be := range bothBackends {
		t.Run(be.name, func(t *testing.T) {
			br := newBrowser(t, be.open(t))
			br.do(func(s *Session) { s.Set("n", 1) })
			br.do(func(s *Session) {
				if got := s.Flashes(); got != nil {
					t.Fatalf("Flashes() = %q", got)
				}
				if s.Modified() {
					t.Fatal("Flashes with none waiting marked the session modified")
				}
			})
		})
	}
}

func TestFlashLimits(t *testing.T) {
	tests := []struct {
		name    string
		before  int // flashes added on an earlier request
		message string
		kind    []string
		limit   bool // the error is ErrFlashLimit
		ok      bool
	}{
		{"message at the limit", 0, strings.Repeat("m", maxFlashMessageBytes), nil, false, true},
		{"message over the limit", 0, strings.Repeat("m", maxFlashMessageBytes+1), nil, true, false},
		{"kind at the limit", 0, "m", []string{strings.Repeat("k", maxFlashKindBytes)}, false, true},
		{"kind over the limit", 0, "m", []string{strings.Repeat("k", maxFlashKindBytes+1)}, true, false},
		{"the last one that fits", maxFlashes - 1, "m", nil, false, true},
		{"one too many", maxFlashes, "m", nil, true, false},
		{"two kinds", 0, "m", []string{"info", "error"}, false, false},
	}
	for _, be := range bothBackends {
		for _, tc := range tests {
			t.Run(be.name+"/"+tc.name, func(t *testing.T) {
				br := newBrowser(t, be.open(t))
				br.do(func(s *Session) {
					s.Set("n", 1)
					for range tc.before {
						addFlashes(t, s, flashSaved)
					}
				})
				br.do(func(s *Session) {
					err := s.AddFlash(tc.message, tc.kind...)
					if (err == nil) != tc.ok || errors.Is(err, ErrFlashLimit) != tc.limit {
						t.Fatalf("AddFlash: %v", err)
					}
					if !tc.ok && s.Modified() {
						t.Error("a refused flash marked the session modified")
					}
				})
				br.do(func(s *Session) {
					want := tc.before
					if tc.ok {
						want++
					}
					if got := s.Flashes(); len(got) != want {
						t.Fatalf("%d flashes kept, want %d", len(got), want)
					}
				})
			})
		}
	}
}

// flashRecord is a record of the given number of fields holding the
// value k: 7, the fields after the values map encoded in tail.
func flashRecord(fields byte, tail ...byte) []byte {
	return append([]byte{0x90 | fields, 1, 0, 0x81, 0xa1, 'k', msgp.Bin8, 1, 7}, tail...)
}

// TestRecordsWithAndWithoutFlashes plants records as each version of
// kvsession writes them: one from before flashes reads with none, one from
// a later version with more fields reads its flashes and skips the rest,
// and a flash field that AddFlash could not have written makes the record
// unreadable. Both backends keep the same record: the server's in the
// store, the cookie backend's sealed in the cookie.
func TestRecordsWithAndWithoutFlashes(t *testing.T) {
	// user "", extended, rotated, maxAge, cookieMode, 0, indexed, bound
	eleven := []byte{0xa0, 0, 0, 0, 0, 0, 0, 0}
	withFlashes := func(field ...byte) []byte { return append(slices.Clone(eleven), field...) }
	one := []byte{0x91, 0x92, 0xa5, 'e', 'r', 'r', 'o', 'r', 0xa2, 'h', 'i'}
	long := append([]byte{0x91, 0x92, 0xa0, msgp.Str16, 0x10, 0x01}, make([]byte, maxFlashMessageBytes+1)...)
	tooMany := []byte{msgp.Array16, 0, maxFlashes + 1}
	for range maxFlashes + 1 {
		tooMany = append(tooMany, 0x92, 0xa0, 0xa0)
	}
	tests := []struct {
		name     string
		fields   byte
		tail     []byte
		readable bool
		want     []Flash
	}{
		{"four fields", 4, []byte{0xa0}, true, nil},
		{"eleven fields, before flashes", 11, eleven, true, nil},
		{"twelve fields, no flashes", 12, withFlashes(0x90), true, nil},
		{"twelve fields, a flash", 12, withFlashes(one...), true, []Flash{{"error", "hi"}}},
		{"thirteen fields", 13, withFlashes(append(slices.Clone(one), 0xa3, 'n', 'e', 'w')...), true, []Flash{{"error", "hi"}}},
		{"flash field not an array", 12, withFlashes(0xa0), false, nil},
		{"flash not a pair", 12, withFlashes(0x91, 0x93, 0xa0, 0xa0, 0xa0), false, nil},
		{"flash message too long", 12, withFlashes(long...), false, nil},
		{"too many flashes", 12, withFlashes(tooMany...), false, nil},
	}
	for _, be := range []struct {
		name  string
		plant func(t *testing.T, rec []byte) *browser
	}{
		{"server", plantServerRecord},
		{"cookie", plantCookieRecord},
	} {
		for _, tc := range tests {
			t.Run(be.name+"/"+tc.name, func(t *testing.T) {
				br := be.plant(t, flashRecord(tc.fields, tc.tail...))
				br.do(func(s *Session) {
					if n, ok := s.GetInt("k"); ok != tc.readable || (ok && n != 7) {
						t.Fatalf("k = %d, %v; the record should read: %v", n, ok, tc.readable)
					}
					if got := s.Flashes(); !slices.Equal(got, tc.want) {
						t.Fatalf("Flashes() = %q, want %q", got, tc.want)
					}
				})
			})
		}
	}
}

// plantServerRecord stores rec as a session's record and returns a browser
// holding that session's cookie.
func plantServerRecord(t *testing.T, rec []byte) *browser {
	st := newFakeStore()
	b := newBackend(t, Config{Logger: slog.New(slog.DiscardHandler)}, st)
	id, err := b.GenerateID()
	if err != nil {
		t.Fatal(err)
	}
	st.data[b.storeKey([]byte(id))] = rec
	br := newBrowser(t, b)
	br.jar[b.CookieName()] = id
	return br
}

// plantCookieRecord seals rec as the cookie backend seals a record, and
// returns a browser holding that cookie.
func plantCookieRecord(t *testing.T, rec []byte) *browser {
	clk := newClock()
	b := newCookieBackend(t, Config{Logger: slog.New(slog.DiscardHandler)}, clk)
	plain := binary.BigEndian.AppendUint64(nil, 0) // bound to no user
	plain = binary.BigEndian.AppendUint64(plain, uint64(clk.t.Add(time.Hour).UnixNano()))
	plain = append(plain, rec...)
	k := &b.keys[0]
	nonce := make([]byte, cookieNonceBytes)
	sealed := append(append([]byte{cookieFormat}, k.id[:]...), nonce...)
	sealed = k.aead.Seal(sealed, nonce, plain, k.aad)
	s := b.LoadFromRequest(t.Context(), nil)
	out := &sink{}
	if err := b.setCookie(s, out, strictBase64.AppendEncode(nil, sealed), cookiePersistent, time.Hour); err != nil {
		t.Fatal(err)
	}
	b.Release(s)
	br := newBrowser(t, b)
	br.jar = out.live(t)
	return br
}
