package kvsession

import (
	"bytes"
	"context"
	"errors"
	"maps"
	"math"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kvsession/kvsession/store"
	"github.com/kvsession/kvsession/store/memstore"
	"github.com/kvsession/kvsession/store/storetest/faultstore"
)

// fakeStore is a map store that counts calls and fails on demand, so tests
// can see exactly which store operations a request caused.
type fakeStore struct {
	mu    sync.Mutex
	data  map[string][]byte
	ttl   map[string]time.Duration
	calls map[string]int
	fail  map[string]error // op → error to return
	sets  map[string]map[string]bool
}

func newFakeStore() *fakeStore {
	return &fakeStore{data: map[string][]byte{}, ttl: map[string]time.Duration{}, calls: map[string]int{}, fail: map[string]error{}}
}

func (f *fakeStore) op(name string) error {
	f.calls[name]++
	return f.fail[name]
}

func (f *fakeStore) Get(_ context.Context, key string) ([]byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.op("get"); err != nil {
		return nil, err
	}
	v, ok := f.data[key]
	if !ok {
		return nil, store.ErrNotFound
	}
	return append([]byte(nil), v...), nil
}

func (f *fakeStore) Set(_ context.Context, key string, v []byte, ttl time.Duration) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.op("set"); err != nil {
		return err
	}
	f.data[key] = append([]byte(nil), v...)
	f.ttl[key] = ttl
	return nil
}

func (f *fakeStore) Delete(_ context.Context, key string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.op("delete"); err != nil {
		return err
	}
	delete(f.data, key)
	return nil
}

// Swap counts as the write it makes: a "set", or a "delete" for a nil
// value, so that tests failing saves or deletes fail it too.
func (f *fakeStore) Swap(_ context.Context, key string, old, v []byte, ttl time.Duration) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	op := "set"
	if v == nil {
		op = "delete"
	}
	if err := f.op(op); err != nil {
		return false, err
	}
	cur, ok := f.data[key]
	if (old == nil && ok) || (old != nil && (!ok || !bytes.Equal(cur, old))) {
		return false, nil
	}
	if v == nil {
		delete(f.data, key)
		return true, nil
	}
	f.data[key] = append([]byte(nil), v...)
	f.ttl[key] = ttl
	return true, nil
}

func (f *fakeStore) AddMember(_ context.Context, set, member string, _ time.Duration) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.op("addmember"); err != nil {
		return err
	}
	if f.sets == nil {
		f.sets = map[string]map[string]bool{}
	}
	if f.sets[set] == nil {
		f.sets[set] = map[string]bool{}
	}
	f.sets[set][member] = true
	return nil
}

func (f *fakeStore) RemoveMember(_ context.Context, set, member string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.op("removemember"); err != nil {
		return err
	}
	delete(f.sets[set], member)
	return nil
}

func (f *fakeStore) Members(_ context.Context, set string) ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.op("members"); err != nil {
		return nil, err
	}
	var out []string
	for m := range f.sets[set] {
		out = append(out, m)
	}
	return out, nil
}

func (f *fakeStore) Close() error { return nil }

func (f *fakeStore) count(op string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[op]
}

func (f *fakeStore) keys() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for k := range f.data {
		out = append(out, k)
	}
	return out
}

// touchingStore adds a Touch method to fakeStore, as the shipped stores
// have, so that tests can check the backend never calls it.
type touchingStore struct{ *fakeStore }

func (t touchingStore) Touch(_ context.Context, key string, ttl time.Duration) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if err := t.op("touch"); err != nil {
		return err
	}
	if _, ok := t.data[key]; !ok {
		return store.ErrNotFound
	}
	t.ttl[key] = ttl
	return nil
}

var errBoom = errors.New("boom")

// sink records what the backend writes to a response.
type sink struct {
	cookies map[string]string
	headers []string          // AddHeader's, as "Name: value"
	set     map[string]string // SetHeader's, the last value of each name
}

func (s *sink) SetCookie(name string, line []byte) {
	if s.cookies == nil {
		s.cookies = map[string]string{}
	}
	s.cookies[name] = string(line)
}

func (s *sink) AddHeader(name, value string) { s.headers = append(s.headers, name+": "+value) }

func (s *sink) SetHeader(name string, value []byte) {
	if s.set == nil {
		s.set = map[string]string{}
	}
	s.set[name] = string(value)
}

// cookieValue returns the value of the session cookie line.
func (s *sink) cookieValue(t *testing.T, name string) string {
	t.Helper()
	line, ok := s.cookies[name]
	if !ok {
		t.Fatalf("no Set-Cookie for %q", name)
	}
	v, _, _ := strings.Cut(strings.TrimPrefix(line, name+"="), ";")
	return v
}

// heldID is the session id a client holds after the response: the one
// its cookie sets, or held if it sets none (the server backend resends
// an unchanged id only when its expiry is due to move).
func (s *sink) heldID(t *testing.T, name, held string) string {
	t.Helper()
	if _, ok := s.cookies[name]; !ok {
		return held
	}
	return s.cookieValue(t, name)
}

func newBackend(t testing.TB, cfg Config, st store.Store) *ServerBackend {
	t.Helper()
	reg := store.NewRegistry(nil)
	if err := reg.Register(DefaultStore, st); err != nil {
		t.Fatal(err)
	}
	if cfg.Store == "" {
		cfg.Store = DefaultStore
	}
	b, err := New(cfg, reg)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// request runs one request's session work: load from a Cookie header
// carrying cookie as the session cookie's value, let fn use the session,
// store into a fresh sink.
func request(t *testing.T, b *ServerBackend, cookie string, fn func(s *Session)) (*sink, error) {
	t.Helper()
	var header []byte
	if cookie != "" {
		header = []byte(b.CookieName() + "=" + cookie)
	}
	return requestHeader(t, b, header, fn)
}

// requestHeader is request with the whole Cookie header given.
func requestHeader(t *testing.T, b Backend, header []byte, fn func(s *Session)) (*sink, error) {
	t.Helper()
	s := b.LoadFromRequest(context.Background(), header)
	if fn != nil {
		fn(s)
	}
	out := &sink{}
	err := b.StoreInResponse(s, out)
	b.Release(s)
	return out, err
}

// rvSetup is a backend on the memory store with a test clock.
func rvSetup(t *testing.T, cfg Config) (*ServerBackend, *clock, *memstore.Store) {
	clk := newClock()
	st := memstore.New(memstore.Options{Now: clk.now})
	t.Cleanup(func() { st.Close() })
	b := newBackend(t, cfg, st)
	b.now = clk.now
	return b, clk, st
}

// rvLogin makes a session bound to user and returns its id.
func rvLogin(t *testing.T, b *ServerBackend, user string) string {
	out, err := request(t, b, "", func(s *Session) { s.Set("n", 1); s.SetUser(user) })
	if err != nil {
		t.Fatal(err)
	}
	return out.cookieValue(t, "session")
}

// keyRecorder keeps every key its Get is given, as a store that caches or
// indexes the caller's strings would. Embedding the store.Store interface
// hides the memory store's optional methods, its Traits included.
type keyRecorder struct {
	store.Store
	mu   sync.Mutex
	seen []string
}

func (r *keyRecorder) Get(ctx context.Context, key string) ([]byte, error) {
	r.mu.Lock()
	r.seen = append(r.seen, key)
	r.mu.Unlock()
	return r.Store.Get(ctx, key)
}

func (r *keyRecorder) last() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.seen[len(r.seen)-1]
}

// borrowingRecorder reports store.Traits.BorrowsKeys, so the backend lends
// it the session's key buffer.
type borrowingRecorder struct{ *keyRecorder }

func (borrowingRecorder) Traits() store.Traits { return store.Traits{BorrowsKeys: true} }

var errFault = errors.New("injected store fault")

// faultSnapshot returns what the store holds under every key a call named
// (since the last ResetCalls) or before holds.
func faultSnapshot(t *testing.T, fs *faultstore.Store, before map[string]string) map[string]string {
	t.Helper()
	m, err := fs.Snapshot(context.Background(), slices.Collect(maps.Keys(before))...)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// fuzzLiveID is a well-formed id stored before each input, so that the
// fuzzer can mutate headers that carry a session the server really has.
const fuzzLiveID = "LiveSessionIdForTheFuzzer0123456789-_XXXXXX"

// sameValue compares a value Get returned with the one expected: floats by
// their bits (NaN included), times as instants, byte slices by content.
func sameValue(want, got any) bool {
	switch w := want.(type) {
	case float64:
		g, ok := got.(float64)
		return ok && math.Float64bits(g) == math.Float64bits(w)
	case float32:
		g, ok := got.(float32)
		return ok && math.Float32bits(g) == math.Float32bits(w)
	case time.Time:
		g, ok := got.(time.Time)
		return ok && g.Equal(w)
	case []byte:
		g, ok := got.([]byte)
		return ok && bytes.Equal(g, w)
	case []any:
		g, ok := got.([]any)
		if !ok || len(g) != len(w) {
			return false
		}
		for i := range w {
			if !sameValue(w[i], g[i]) {
				return false
			}
		}
		return true
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok || len(g) != len(w) {
			return false
		}
		for k, wv := range w {
			gv, ok := g[k]
			if !ok || !sameValue(wv, gv) {
				return false
			}
		}
		return true
	}
	return want == got
}

// quietBadger drops Badger's log output.
type quietBadger struct{}

func (quietBadger) Errorf(string, ...any) {}

func (quietBadger) Warningf(string, ...any) {}

func (quietBadger) Infof(string, ...any) {}

func (quietBadger) Debugf(string, ...any) {}
