package kvsession

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kvsession/kvsession/internal/msgp"
	"github.com/kvsession/kvsession/store"
	"github.com/kvsession/kvsession/store/badgerstore"
	"github.com/kvsession/kvsession/store/memstore"
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
	s.handle = [handleBytes]byte{1, 2, 3}
	s.ownIdle = int64(time.Minute)
	s.userAgent, s.remoteAddr = "curl/8", "::1"
	s.AddFlash("hi")
	f.Add(s.encode(nil)) // every field
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
			// A record that reads gets a new id without a warning: past
			// its deadlines it is an expired session (a fresh one), else
			// one its own rotation period (as short as the record cares
			// to say) rotated.
			probe := be.pool.Get().(*Session)
			readable := probe.decode(rec) == nil
			be.core.Release(probe)
			switch {
			case readable && warned != 0:
				t.Fatalf("%d warnings for a record that reads", warned)
			case readable, forward:
			case warned != 1:
				t.Fatalf("%d warnings for an unreadable record", warned)
			case !bytes.Equal(st.data[key], rec):
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

// A record in the store can be damaged (a disk error, a bad migration, a
// hand edit, another program sharing the keyspace) or planted by whoever
// can write to the store. The tests below store such records under the key
// of a live session and check that the request gets a fresh session, that
// the damage is logged, that memory stays flat whatever length the bytes
// announce, and that the store's other sessions go on as before.

// logRecorder is a slog.Handler keeping every record, so that a test can
// assert what was logged and at which level.
type logRecorder struct {
	mu      sync.Mutex
	records []slog.Record
}

func (h *logRecorder) Enabled(context.Context, slog.Level) bool { return true }

func (h *logRecorder) WithAttrs([]slog.Attr) slog.Handler { return h }

func (h *logRecorder) WithGroup(string) slog.Handler { return h }

func (h *logRecorder) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.records = append(h.records, r.Clone())
	return nil
}

// take returns the records logged since the last call, and forgets them.
func (h *logRecorder) take() []slog.Record {
	h.mu.Lock()
	defer h.mu.Unlock()
	r := h.records
	h.records = nil
	return r
}

// unreadableWarning is what the backend logs for a record it cannot read.
const unreadableWarning = "unreadable session record"

// expectOneWarning checks that exactly one record was logged since the last
// take, a Warn about an unreadable session record.
func expectOneWarning(t *testing.T, logs *logRecorder, what string) {
	t.Helper()
	recs := logs.take()
	if len(recs) != 1 || recs[0].Level != slog.LevelWarn || !strings.Contains(recs[0].Message, unreadableWarning) {
		var got []string
		for _, r := range recs {
			got = append(got, r.Level.String()+" "+r.Message)
		}
		t.Fatalf("%s: logged %q; want one Warn about an %s", what, got, unreadableWarning)
	}
}

// poisonStores are the stores the poisoned records are planted in: the two
// that read into the backend's own buffer (store.Appender) by different
// code.
var poisonStores = []struct {
	name string
	open func(t *testing.T) store.Store
}{
	{"memory", func(t *testing.T) store.Store {
		st := memstore.New(memstore.Options{})
		t.Cleanup(func() { st.Close() })
		return st
	}},
	{"badger", func(t *testing.T) store.Store {
		// On disk, as deployed: records over 512 bytes take Badger's
		// value-log path, and a record over the cap can be stored at all.
		st, err := badgerstore.Open(badgerstore.Options{Dir: t.TempDir(), GCInterval: -1, Logger: quietBadger{}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		return st
	}},
}

// poisonEnv is a backend over a real store holding one healthy session
// that must survive everything done to the others.
type poisonEnv struct {
	b       *ServerBackend
	st      store.Store
	logs    *logRecorder
	otherID string
	other   []byte // the healthy session's record as stored
}

var otherValues = map[string]any{"name": "ada", "n": int64(41), "blob": []byte{0xdd, 0xff, 0xff, 0xff, 0xff}}

func newPoisonEnv(t *testing.T, st store.Store) *poisonEnv {
	t.Helper()
	e := &poisonEnv{st: st, logs: &logRecorder{}}
	e.b = newBackend(t, Config{Logger: slog.New(e.logs)}, st)
	out, err := request(t, e.b, "", func(s *Session) {
		for k, v := range otherValues {
			s.Set(k, v)
		}
		s.SetUser("ada")
	})
	if err != nil {
		t.Fatal(err)
	}
	e.otherID = out.cookieValue(t, "session")
	if e.other, err = st.Get(context.Background(), e.b.storeKey([]byte(e.otherID))); err != nil {
		t.Fatal(err)
	}
	if logs := e.logs.take(); len(logs) != 0 {
		t.Fatalf("setting up logged %d records", len(logs))
	}
	return e
}

// live starts a session through the request path, as a browser would get
// one, and returns its id.
func (e *poisonEnv) live(t *testing.T) string {
	t.Helper()
	out, err := request(t, e.b, "", func(s *Session) { s.Set("victim", "data") })
	if err != nil {
		t.Fatal(err)
	}
	return out.cookieValue(t, "session")
}

// plant replaces the record of session id with rec.
func (e *poisonEnv) plant(t *testing.T, id string, rec []byte) {
	t.Helper()
	if err := e.st.Set(context.Background(), e.b.storeKey([]byte(id)), rec, time.Hour); err != nil {
		t.Fatal(err)
	}
}

// checkOther checks that the healthy session reads back whole, through
// both APIs, and that its stored bytes are the ones it had.
func (e *poisonEnv) checkOther(t *testing.T) {
	t.Helper()
	if _, err := request(t, e.b, e.otherID, func(s *Session) {
		if s.Len() != len(otherValues) || s.User() != "ada" {
			t.Errorf("healthy session: %d values, user %q", s.Len(), s.User())
		}
		for k, want := range otherValues {
			if got, ok := s.Get(k); !ok || !sameValue(want, got) {
				t.Errorf("healthy session[%q] = %#v, %v; want %#v", k, got, ok, want)
			}
		}
	}); err != nil {
		t.Fatal(err)
	}
	got, err := e.b.Get(context.Background(), e.otherID)
	if err != nil || len(got) != len(otherValues) {
		t.Fatalf("healthy session by id: %v, %v", got, err)
	}
	now, err := e.st.Get(context.Background(), e.b.storeKey([]byte(e.otherID)))
	if err != nil || !bytes.Equal(now, e.other) {
		t.Fatalf("healthy session's record changed (%v)", err)
	}
	if logs := e.logs.take(); len(logs) != 0 {
		t.Fatalf("reading the healthy session logged %d records", len(logs))
	}
}

// poisonedRequest sends the cookie of a session whose record is poisoned
// and checks that the handler sees a fresh, empty, working session which
// is saved under a new id, with one warning logged.
func (e *poisonEnv) poisonedRequest(t *testing.T, id string) {
	t.Helper()
	out, err := request(t, e.b, id, func(s *Session) {
		if s.Len() != 0 || s.Err() != nil || s.User() != "" || !s.Created().IsZero() || s.Has("victim") {
			t.Errorf("not a fresh session: %d values, err %v, user %q, created %v", s.Len(), s.Err(), s.User(), s.Created())
		}
		if err := s.Set("fresh", true); err != nil {
			t.Error(err)
		}
	})
	if err != nil {
		t.Fatalf("request: %v", err)
	}
	expectOneWarning(t, e.logs, "request")
	got := out.cookieValue(t, "session")
	if got == id || !e.b.validID([]byte(got)) {
		t.Fatalf("saved under %q (the request carried %q)", got, id)
	}
	if v, err := e.b.Get(context.Background(), got); err != nil || len(v) != 1 || v["fresh"] != true {
		t.Fatalf("the fresh session reads back %v, %v", v, err)
	}
}

// poisonedByID reads a poisoned session by id: it does not exist.
func (e *poisonEnv) poisonedByID(t *testing.T, id string) {
	t.Helper()
	if v, err := e.b.Get(context.Background(), id); !errors.Is(err, store.ErrNotFound) || v != nil {
		t.Fatalf("Get by id: %v, %v; want store.ErrNotFound", v, err)
	}
	expectOneWarning(t, e.logs, "Get by id")
}

// allocsPerPoisonedRead returns the average bytes allocated by one request
// and one by-id read of a poisoned session, over n of each.
func (e *poisonEnv) allocsPerPoisonedRead(t *testing.T, id string, n int) uint64 {
	t.Helper()
	header := []byte("session=" + id)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range n {
		s := e.b.LoadFromRequest(context.Background(), header)
		s.Len()
		// Nothing to save: the response only expires the cookie, and the
		// record stays to be read again.
		if err := e.b.StoreInResponse(s, &sink{}); err != nil {
			t.Fatal(err)
		}
		e.b.Release(s)
		if _, err := e.b.Get(context.Background(), id); !errors.Is(err, store.ErrNotFound) {
			t.Fatal(err)
		}
	}
	runtime.ReadMemStats(&after)
	if got := len(e.logs.take()); got != 2*n {
		t.Fatalf("%d warnings for %d unreadable reads", got, 2*n)
	}
	return (after.TotalAlloc - before.TotalAlloc) / uint64(n)
}

// maxAllocPerPoisonedRead bounds what reading a poisoned record may cost:
// a few store and log allocations, nothing in proportion to a length the
// record announces.
const maxAllocPerPoisonedRead = 64 << 10

// healthyRecord is a record as the backend writes it, with values of
// several kinds, a user, flash messages and every bookkeeping field set.
func healthyRecord(t testing.TB) []byte {
	t.Helper()
	b := newBackend(t, Config{Logger: slog.New(slog.DiscardHandler)}, newFakeStore())
	s := b.LoadFromRequest(context.Background(), nil)
	defer b.Release(s)
	s.Set("n", 300)
	s.Set("name", "ada lovelace")
	s.Set("raw", bytes.Repeat([]byte{7}, 40))
	s.Set("list", []any{1, "two", 3.5, map[string]any{"k": []byte{1}}})
	s.Set("when", time.Unix(1_700_000_000, 5))
	s.SetUser("ada")
	s.SetMaxAge(time.Hour)
	s.AddFlash("saved")
	s.AddFlash("a warning", "warning")
	s.created, s.extended, s.rotated, s.indexed = 1, 2, 3, 4
	return s.encode(nil)
}

// poisonedRecords returns damaged records by name, for the backend whose
// ids are idLen bytes.
func poisonedRecords(idLen int) map[string][]byte {
	rng := rand.New(rand.NewPCG(7, 11))
	noise := make([]byte, 4096)
	for i := range noise {
		noise[i] = byte(rng.Uint32())
	}
	ff4 := []byte{0xff, 0xff, 0xff, 0xff}
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	// The start of a record of nine fields, version 1, created 0.
	head := []byte{0x99, 1, 0}
	return map[string][]byte{
		"text":            []byte("this is not a session record"),
		"noise":           noise,
		"zeros":           make([]byte, 512),
		"0xff bytes":      bytes.Repeat([]byte{0xff}, 512),
		"JSON":            []byte(`{"n": 1, "user": "ada"}`),
		"empty":           {},
		"forward, short":  {forwardMarker, 'x', 'y'},
		"forward, noise":  cat([]byte{forwardMarker}, noise[:idLen]),
		"forward, long":   cat([]byte{forwardMarker}, noise[:idLen+1]),
		"array32 of 4G":   cat([]byte{msgp.Array32}, ff4, noise[:64]),
		"map32 of 4G":     cat([]byte{msgp.Map32}, ff4, noise[:64]),
		"str32 of 4G":     cat([]byte{msgp.Str32}, ff4, noise[:64]),
		"bin32 of 4G":     cat([]byte{msgp.Bin32}, ff4, noise[:64]),
		"ext32 of 4G":     cat([]byte{0xc9}, ff4, []byte{1}, noise[:64]),
		"array16 of 64K":  {msgp.Array16, 0xff, 0xff, 1, 2, 3},
		"map16 of 64K":    {msgp.Map16, 0xff, 0xff, 0xa1, 'k', 1},
		"values map32":    cat(head, []byte{msgp.Map32}, ff4, []byte{0xa1, 'k', msgp.Bin8, 1, 1}),
		"values map16":    cat(head, []byte{msgp.Map16}, []byte{0xff, 0xff}, []byte{0xa1, 'k', msgp.Bin8, 1, 1}),
		"key str32":       cat(head, []byte{0x81, msgp.Str32}, ff4, []byte("k")),
		"value bin32":     cat(head, []byte{0x81, 0xa1, 'k', msgp.Bin32}, ff4, []byte{1, 2, 3}),
		"value bin32, 2G": cat(head, []byte{0x81, 0xa1, 'k', msgp.Bin32, 0x7f, 0xff, 0xff, 0xff}, noise[:100]),
		"user str32":      cat(head, []byte{0x80, msgp.Str32}, ff4, []byte("ada")),
		"extra field array32": cat([]byte{0x9a, 1, 0, 0x80, 0xa0, 0, 0, 0, 0, 0},
			[]byte{msgp.Array32}, ff4, []byte{1}),
		"extra field map32": cat([]byte{0x9a, 1, 0, 0x80, 0xa0, 0, 0, 0, 0, 0},
			[]byte{msgp.Map32}, ff4, []byte{1, 1}),
		"deep nesting in an extra field": cat([]byte{0x9a, 1, 0, 0x80, 0xa0, 0, 0, 0, 0, 0},
			bytes.Repeat([]byte{0x91}, 100_000)),
		"record as array32": cat([]byte{msgp.Array32}, ff4, []byte{1, 0, 0x80}),
		"version 2":         {0x99, 2, 0, 0x80, 0xa0, 0, 0, 0, 0, 0},
		"negative max-age":  {0x99, 1, 0, 0x80, 0xa0, 0, 0, 0xff, 0, 0},
		"duplicate key":     cat(head, []byte{0x82, 0xa1, 'k', msgp.Bin8, 1, 1, 0xa1, 'k', msgp.Bin8, 1, 2}),
		"over the cap":      cat(head, []byte{0x81, 0xa1, 'k', msgp.Bin32, 0x00, 0x10, 0x00, 0x00}, make([]byte, 1<<20)),
	}
}

// TestPoisonedRecordGivesFreshSession plants each damaged record under the
// key of a live session: its request gets a fresh session under a new id,
// a by-id read finds nothing, each logs one warning, reading it costs no
// memory in proportion to what it announces, and a healthy session in the
// same store is untouched.
func TestPoisonedRecordGivesFreshSession(t *testing.T) {
	for _, ps := range poisonStores {
		t.Run(ps.name, func(t *testing.T) {
			e := newPoisonEnv(t, ps.open(t))
			for name, rec := range poisonedRecords(e.b.idLen) {
				t.Run(name, func(t *testing.T) {
					id := e.live(t)
					e.plant(t, id, rec)
					e.poisonedRequest(t, id)
					e.poisonedByID(t, id)
					// Reading the record costs its own length, once for the
					// request and once by id; nothing may cost what it announces.
					if got := e.allocsPerPoisonedRead(t, id, 20); got > maxAllocPerPoisonedRead+2*uint64(len(rec)) {
						t.Errorf("one read of a %d-byte poisoned record allocates %d bytes", len(rec), got)
					}
					// The by-id API may overwrite it: the id is the server's.
					if err := e.b.Set(context.Background(), id, map[string]any{"again": 1}); err != nil {
						t.Fatal(err)
					}
					expectOneWarning(t, e.logs, "Set by id") // it read the record first
					if v, err := e.b.Get(context.Background(), id); err != nil || v["again"] != int64(1) || len(v) != 1 {
						t.Fatalf("after Set by id: %v, %v", v, err)
					}
					e.checkOther(t)
				})
			}
		})
	}
}

// TestTruncatedRecordGivesFreshSession cuts a healthy record at every
// length short of whole: no prefix may read as a session.
func TestTruncatedRecordGivesFreshSession(t *testing.T) {
	whole := healthyRecord(t)
	for _, ps := range poisonStores {
		t.Run(ps.name, func(t *testing.T) {
			e := newPoisonEnv(t, ps.open(t))
			id := e.live(t)
			// The whole record reads back: the cuts below fail because they
			// are cuts, not because the record is bad.
			e.plant(t, id, whole)
			if _, err := request(t, e.b, id, func(s *Session) {
				if n, _ := s.GetInt("n"); n != 300 || s.User() != "ada" {
					t.Fatalf("healthy record read n=%d user %q", n, s.User())
				}
			}); err != nil {
				t.Fatal(err)
			}
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			for n := range len(whole) {
				e.plant(t, id, whole[:n])
				e.poisonedRequest(t, id)
				e.poisonedByID(t, id)
			}
			runtime.ReadMemStats(&after)
			if per := (after.TotalAlloc - before.TotalAlloc) / uint64(len(whole)); per > maxAllocPerPoisonedRead {
				t.Errorf("%d bytes allocated per truncated record", per)
			}
			e.checkOther(t)
		})
	}
}

// TestPoisonedValueInReadableRecord: a record that reads but holds a value
// announcing gigabytes is a session like any other; that value alone reads
// as absent, without the allocation it announces, and the others are
// intact.
func TestPoisonedValueInReadableRecord(t *testing.T) {
	values := map[string][]byte{
		"array32": {msgp.Array32, 0xff, 0xff, 0xff, 0xff, 1},
		"map32":   {msgp.Map32, 0xff, 0xff, 0xff, 0xff, 0xa1, 'k', 1},
		"str32":   {msgp.Str32, 0xff, 0xff, 0xff, 0xff, 'x'},
		"bin32":   {msgp.Bin32, 0xff, 0xff, 0xff, 0xff, 'x'},
		"nested":  {0x92, 1, msgp.Array32, 0xff, 0xff, 0xff, 0xff, 1},
	}
	for _, ps := range poisonStores {
		t.Run(ps.name, func(t *testing.T) {
			e := newPoisonEnv(t, ps.open(t))
			for name, bad := range values {
				t.Run(name, func(t *testing.T) {
					id := e.live(t)
					s := e.b.LoadFromRequest(context.Background(), nil)
					s.Set("good", "kept")
					s.created, s.extended = time.Now().UnixNano(), time.Now().UnixNano()
					s.entries = append(s.entries, entry{name: "bad", raw: bad})
					rec := s.encode(nil)
					e.b.Release(s)
					e.plant(t, id, rec)

					var before, after runtime.MemStats
					runtime.ReadMemStats(&before)
					out, err := request(t, e.b, id, func(s *Session) {
						if v, ok := s.GetString("good"); !ok || v != "kept" {
							t.Errorf("good value: %q %v", v, ok)
						}
						if !s.Has("bad") {
							t.Error("the bad value's key is gone")
						}
						for range 20 {
							if v, ok := s.Get("bad"); ok {
								t.Fatalf("Get(bad) = %#v", v)
							}
							if _, ok := s.GetBytes("bad"); ok {
								t.Fatal("GetBytes(bad) succeeded")
							}
							var dst []string
							if err := s.Decode("bad", &dst); err == nil {
								t.Fatal("Decode(bad) succeeded")
							}
							if v := s.Values(); len(v) != 1 || v["good"] != "kept" {
								t.Fatalf("Values() = %v", v)
							}
						}
						s.Set("n", 1)
					})
					runtime.ReadMemStats(&after)
					if err != nil {
						t.Fatal(err)
					}
					if grew := after.TotalAlloc - before.TotalAlloc; grew > 20*maxAllocPerPoisonedRead {
						t.Errorf("reading a value announcing 4 GB 20 times allocated %d bytes", grew)
					}
					// The session kept its id and the bad value's bytes, which
					// are the application's to replace.
					if got := out.cookieValue(t, "session"); got != id {
						t.Fatalf("session moved to %q", got)
					}
					if logs := e.logs.take(); len(logs) != 0 {
						t.Fatalf("logged %d records for a readable record", len(logs))
					}
					if _, err := request(t, e.b, id, func(s *Session) {
						if n, _ := s.GetInt("n"); n != 1 || s.Len() != 3 {
							t.Errorf("after the save: n=%d, %d values", n, s.Len())
						}
					}); err != nil {
						t.Fatal(err)
					}
					e.checkOther(t)
				})
			}
		})
	}
}
