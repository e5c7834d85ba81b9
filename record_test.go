package kvsession

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/kvsession/kvsession/internal/msgp"
)

func TestUnreadableRecordStartsFreshSession(t *testing.T) {
	big := append([]byte{0x93, 1, 0, 0x81, 0xa1, 'k', msgp.Bin32, 0, 0x10, 0, 0}, make([]byte, 1<<20)...)
	cases := map[string][]byte{
		"garbage":        []byte("not msgpack at all"),
		"empty":          {},
		"truncated":      {0x93, 1, 0, 0x81, 0xa1, 'k', msgp.Bin8, 5, 1},
		"huge map count": {0x93, 1, 0, msgp.Map32, 0xff, 0xff, 0xff, 0xff},
		"other version":  {0x93, 2, 0, 0x80},
		"trailing bytes": {0x93, 1, 0, 0x80, 0x00},
		"duplicate key":  {0x93, 1, 0, 0x82, 0xa1, 'k', msgp.Bin8, 1, 1, 0xa1, 'k', msgp.Bin8, 1, 2},
		"over the cap":   big,
	}
	for name, rec := range cases {
		t.Run(name, func(t *testing.T) {
			st := newFakeStore()
			var logs bytes.Buffer
			b := newBackend(t, Config{Logger: slog.New(slog.NewTextHandler(&logs, nil))}, st)
			id, _ := b.GenerateID()
			st.data[b.storeKey([]byte(id))] = rec
			out, err := request(t, b, id, func(s *Session) {
				if s.Len() != 0 || s.Err() != nil {
					t.Errorf("len %d err %v", s.Len(), s.Err())
				}
				s.Set("fresh", true)
			})
			if err != nil {
				t.Fatal(err)
			}
			if got := out.cookieValue(t, "session"); got == id {
				t.Fatal("unreadable session's id was reused")
			}
			if !strings.Contains(logs.String(), "unreadable session record") {
				t.Fatalf("no warning logged: %q", logs.String())
			}
		})
	}
}

// FuzzRecord stores arbitrary bytes as the record of a session and sends
// its cookie: a record that reads keeps its id and logs nothing; one that
// does not gives a fresh session under a new id, is logged, and is left as
// it was. Either way the session saved reads back.
func FuzzRecord(f *testing.F) {
	quiet := slog.New(slog.DiscardHandler)
	b := newBackend(f, Config{Logger: quiet}, newFakeStore())
	s := b.LoadFromRequest(context.Background(), nil)
	s.Set("counter", 7)
	s.Set("user", "ada")
	s.Set("when", time.Unix(5, 6))
	f.Add(s.encode(nil))
	b.Release(s)
	f.Add(healthyRecord(f))
	f.Add([]byte{0x93, 1, 0, 0x82, 0xa1, 'k', msgp.Bin8, 1, 1, 0xa1, 'k', msgp.Bin8, 1, 2})
	f.Add(append([]byte{forwardMarker}, fuzzLiveID...))
	f.Fuzz(func(t *testing.T, rec []byte) {
		st := newFakeStore()
		logs := &logRecorder{}
		be := newBackend(t, Config{Logger: slog.New(logs)}, st)
		id := fuzzLiveID
		key := be.storeKey([]byte(id))
		st.data[key] = rec
		out, err := request(t, be, id, func(s *Session) {
			for _, k := range s.Keys() {
				s.Get(k)
				s.GetInt(k)
				s.GetString(k)
				var v any
				s.Decode(k, &v)
			}
			s.Values()
			s.Set("touched", true)
		})
		if err != nil {
			t.Fatal(err)
		}
		warned := 0
		for _, r := range logs.take() {
			if r.Level == slog.LevelWarn && strings.Contains(r.Message, unreadableWarning) {
				warned++
			}
		}
		saved := out.cookieValue(t, "session")
		if saved == id {
			if warned != 0 {
				t.Fatal("a record that read was logged as unreadable")
			}
		} else {
			// A forward that decodes to a well-formed id is no damage: it
			// leads to a session that is gone.
			forward := false
			if len(rec) == 1+be.idLen && rec[0] == forwardMarker {
				p := bytes.Clone(rec[1:])
				xorPad(p, id)
				forward = be.validID(p)
			}
			if !be.validID([]byte(saved)) {
				t.Fatalf("saved under %q", saved)
			}
			if !forward && warned != 1 {
				t.Fatalf("%d warnings for an unreadable record", warned)
			}
			if !bytes.Equal(st.data[key], rec) {
				t.Fatal("the unreadable record was overwritten")
			}
		}
		// Whatever was stored, the session saved is one we can read back.
		got, err := be.Get(context.Background(), saved)
		if err != nil || got["touched"] != true {
			t.Fatalf("saved session reads %v, %v", got, err)
		}
	})
}

// TestForwardRecord: a forward leads the old id, and only the old id, to
// the new one, without holding the new id in the clear.
func TestForwardRecord(t *testing.T) {
	const oldID, newID = "OldSessionId0123456789abcdefghijklmnopqrstu", "NewSessionId0123456789abcdefghijklmnopqrstu"
	rec := appendForward(nil, newID, oldID)
	if !isForward(rec) || len(rec) != 1+len(newID) {
		t.Fatalf("forward record % x", rec)
	}
	if bytes.Contains(rec, []byte(newID)) {
		t.Fatal("the forward holds the new id in the clear")
	}
	if got, err := readForward(bytes.Clone(rec), []byte(oldID), len(newID)); err != nil || string(got) != newID {
		t.Fatalf("read under the old id: %q, %v", got, err)
	}
	if got, err := readForward(bytes.Clone(rec), []byte(newID), len(newID)); err != nil || string(got) == newID {
		t.Fatalf("read under another id: %q, %v", got, err)
	}
	for _, bad := range [][]byte{rec[:len(rec)-1], append(bytes.Clone(rec), 'x'), {forwardMarker}} {
		if _, err := readForward(bad, []byte(oldID), len(newID)); err != errBadForward {
			t.Errorf("forward of %d bytes: %v, want errBadForward", len(bad), err)
		}
	}
}
