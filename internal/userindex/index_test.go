package userindex

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kvsession/kvsession/store"
	"github.com/kvsession/kvsession/store/memory"
)

// clock is a test clock shared by the store and the index.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// plainStore hides every optional interface of the store it wraps, so the
// index falls back to Get to check liveness.
type plainStore struct{ store.Store }

// failingStore fails Get and Exists of keys with a given prefix on demand.
type failingStore struct {
	store.Store
	failPrefix atomic.Pointer[string]
}

var errInjected = errors.New("injected store failure")

func (s *failingStore) fail(key string) bool {
	p := s.failPrefix.Load()
	return p != nil && strings.HasPrefix(key, *p)
}

func (s *failingStore) Get(ctx context.Context, key string) ([]byte, error) {
	if s.fail(key) {
		return nil, errInjected
	}
	return s.Store.Get(ctx, key)
}

// existerFailingStore is a failingStore that also implements store.Exister.
type existerFailingStore struct{ *failingStore }

func (s existerFailingStore) Exists(ctx context.Context, key string) (bool, error) {
	if s.fail(key) {
		return false, errInjected
	}
	return s.Store.(store.Exister).Exists(ctx, key)
}

// atomicStore implements Updater with one mutex, standing in for a store
// with a cross-process atomic update. It runs fn twice per Update, as an
// optimistic store retrying would, to check fn has no side effects.
type atomicStore struct {
	store.Store
	mu sync.Mutex
}

func (s *atomicStore) Update(ctx context.Context, key string, fn func(old []byte) ([]byte, time.Duration, bool)) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	old, err := s.Store.Get(ctx, key)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return err
	}
	keep := bytes.Clone(old)
	fn(old)
	if !bytes.Equal(old, keep) {
		panic("Update: fn modified old")
	}
	v, ttl, write := fn(old)
	switch {
	case !write:
		return nil
	case v == nil:
		return s.Store.Delete(ctx, key)
	default:
		return s.Store.Set(ctx, key, v, ttl)
	}
}

// env is a store and an index on it, sharing a test clock.
type env struct {
	clk *clock
	mem *memory.Store
	st  store.Store
	x   *Index
}

// kinds are the store flavours every behavioural test runs on.
var kinds = []string{"exister", "get", "updater"}

func newEnv(t testing.TB, kind string) *env {
	t.Helper()
	clk := newClock()
	mem := memory.New(memory.Options{Now: clk.Now, SweepInterval: time.Hour})
	t.Cleanup(func() { mem.Close() })
	var st store.Store
	switch kind {
	case "exister":
		st = mem
	case "get":
		st = plainStore{mem}
	case "updater":
		st = &atomicStore{Store: mem}
	default:
		t.Fatalf("unknown kind %q", kind)
	}
	x := New(st, "p:")
	x.Now = clk.Now
	return &env{clk: clk, mem: mem, st: st, x: x}
}

var ctx = context.Background()

// session stores a session record under key with ttl and adds it to user.
func (e *env) session(t testing.TB, user, key string, ttl time.Duration) {
	t.Helper()
	if err := e.mem.Set(ctx, key, []byte("session"), ttl); err != nil {
		t.Fatal(err)
	}
	if err := e.x.Add(ctx, user, key, ttl); err != nil {
		t.Fatalf("Add(%q, %q): %v", user, key, err)
	}
}

func (e *env) list(t testing.TB, user string) []string {
	t.Helper()
	keys, err := e.x.List(ctx, user)
	if err != nil {
		t.Fatalf("List(%q): %v", user, err)
	}
	return keys
}

// record returns the members of user's index record as stored, without
// pruning anything; nil if there is no record.
func (e *env) record(t testing.TB, user string) []member {
	t.Helper()
	b, err := e.mem.Get(ctx, e.x.Key(user))
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	ms, err := decode(b)
	if err != nil {
		t.Fatalf("stored record does not decode: %v (% x)", err, b)
	}
	return ms
}

func keysOf(ms []member) []string {
	var ks []string
	for _, m := range ms {
		ks = append(ks, m.key)
	}
	return ks
}

func wantKeys(t testing.TB, what string, got []string, want ...string) {
	t.Helper()
	if len(got) == 0 && len(want) == 0 {
		return
	}
	if slices.Equal(got, want) {
		return
	}
	if len(got)+len(want) <= 20 {
		t.Fatalf("%s = %q, want %q", what, got, want)
	}
	var missing []string
	for _, k := range want {
		if !slices.Contains(got, k) {
			missing = append(missing, k)
		}
	}
	t.Fatalf("%s has %d keys, want %d; missing %d of them, first %q", what, len(got), len(want), len(missing), missing[:min(len(missing), 5)])
}

func forEachKind(t *testing.T, f func(t *testing.T, e *env)) {
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) { f(t, newEnv(t, kind)) })
	}
}

func TestListPerUser(t *testing.T) {
	forEachKind(t, func(t *testing.T, e *env) {
		e.session(t, "alice", "s:a2", time.Hour)
		e.session(t, "bob", "s:b1", time.Hour)
		e.session(t, "alice", "s:a1", 2*time.Hour)
		e.session(t, "alice", "s:a3", 0)
		for _, tc := range []struct {
			user string
			want []string
		}{
			{"alice", []string{"s:a1", "s:a2", "s:a3"}},
			{"bob", []string{"s:b1"}},
			{"carol", nil},
			{"alic", nil}, // no prefix matching
		} {
			wantKeys(t, "List("+tc.user+")", e.list(t, tc.user), tc.want...)
		}
		if k := e.x.Key("alice"); k != "p:user:alice" {
			t.Errorf("Key = %q", k)
		}
	})
}

func TestAddIsIdempotentAndNeverShortens(t *testing.T) {
	forEachKind(t, func(t *testing.T, e *env) {
		start := e.clk.Now().UnixNano()
		e.session(t, "u", "s:1", time.Hour)
		e.session(t, "u", "s:1", time.Minute) // shorter: keeps the hour
		ms := e.record(t, "u")
		if len(ms) != 1 || ms[0].exp != start+int64(time.Hour) {
			t.Fatalf("record = %+v, want s:1 expiring in an hour", ms)
		}
		e.clk.Advance(time.Minute)
		e.session(t, "u", "s:1", time.Hour) // later: extends
		ms = e.record(t, "u")
		if len(ms) != 1 || ms[0].exp != start+int64(time.Minute+time.Hour) {
			t.Fatalf("record = %+v, want s:1 expiring an hour after the minute", ms)
		}
		e.session(t, "u", "s:1", 0) // never: latest of all
		e.session(t, "u", "s:1", time.Hour)
		if ms = e.record(t, "u"); len(ms) != 1 || ms[0].exp != 0 {
			t.Fatalf("record = %+v, want s:1 never expiring", ms)
		}
		if d, err := e.mem.ExpiresIn(ctx, e.x.Key("u")); err != nil || d != store.NoExpiry {
			t.Fatalf("record ExpiresIn = %v, %v; want no expiry", d, err)
		}
	})
}

func TestRemove(t *testing.T) {
	for _, tc := range []struct {
		name   string
		user   string
		key    string
		want   []string // alice's members afterwards
		record bool     // whether alice still has a record
	}{
		{"member", "alice", "s:a2", []string{"s:a1", "s:a3"}, true},
		{"unknown key", "alice", "s:zz", []string{"s:a1", "s:a2", "s:a3"}, true},
		{"other user's key", "bob", "s:a1", []string{"s:a1", "s:a2", "s:a3"}, true},
		{"unknown user", "carol", "s:a1", []string{"s:a1", "s:a2", "s:a3"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			forEachKind(t, func(t *testing.T, e *env) {
				for _, k := range []string{"s:a1", "s:a2", "s:a3"} {
					e.session(t, "alice", k, time.Hour)
				}
				if err := e.x.Remove(ctx, tc.user, tc.key); err != nil {
					t.Fatalf("Remove: %v", err)
				}
				wantKeys(t, "record", keysOf(e.record(t, "alice")), tc.want...)
				wantKeys(t, "List", e.list(t, "alice"), tc.want...)
				if _, err := e.mem.Get(ctx, e.x.Key("carol")); !errors.Is(err, store.ErrNotFound) {
					t.Fatalf("Remove created a record for carol: %v", err)
				}
			})
		})
	}
	t.Run("last member deletes the record", func(t *testing.T) {
		forEachKind(t, func(t *testing.T, e *env) {
			e.session(t, "alice", "s:a1", time.Hour)
			if err := e.x.Remove(ctx, "alice", "s:a1"); err != nil {
				t.Fatal(err)
			}
			if _, err := e.mem.Get(ctx, e.x.Key("alice")); !errors.Is(err, store.ErrNotFound) {
				t.Fatalf("record after removing its last member: %v", err)
			}
			wantKeys(t, "List", e.list(t, "alice"))
		})
	})
}

func TestExpiry(t *testing.T) {
	forEachKind(t, func(t *testing.T, e *env) {
		e.session(t, "u", "s:1", 1*time.Minute)
		e.session(t, "u", "s:3", 3*time.Minute)
		e.session(t, "u", "s:2", 2*time.Minute)
		key := e.x.Key("u")
		ttl := func() time.Duration {
			t.Helper()
			d, err := e.mem.ExpiresIn(ctx, key)
			if err != nil {
				t.Fatalf("record ExpiresIn: %v", err)
			}
			return d
		}
		if d := ttl(); d != 3*time.Minute+Slack {
			t.Fatalf("record TTL = %v, want the latest member's 3m + %v", d, Slack)
		}

		// s:1 expires in the store; within Slack the index still has to ask
		// the store, which says it is gone.
		e.clk.Advance(time.Minute + time.Second)
		wantKeys(t, "List", e.list(t, "u"), "s:2", "s:3")
		wantKeys(t, "record", keysOf(e.record(t, "u")), "s:2", "s:3")
		if d := ttl(); d != 2*time.Minute-time.Second+Slack {
			t.Fatalf("record TTL after pruning = %v", d)
		}

		// s:2 is past its expiry plus Slack: Add drops it without asking.
		e.clk.Advance(time.Minute + Slack)
		e.session(t, "u", "s:4", time.Second)
		wantKeys(t, "record", keysOf(e.record(t, "u")), "s:3", "s:4")
		if d := ttl(); d != 29*time.Second+Slack {
			t.Fatalf("record TTL = %v, want s:3's remaining 29s + %v", d, Slack)
		}

		// Everything expires: the record itself goes, with nobody calling
		// List or Remove.
		e.clk.Advance(29*time.Second + Slack - time.Nanosecond)
		if _, err := e.mem.Get(ctx, key); err != nil {
			t.Fatalf("record gone before its last member expired plus Slack: %v", err)
		}
		e.clk.Advance(time.Nanosecond)
		if _, err := e.mem.Get(ctx, key); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("record after every member expired: %v, want ErrNotFound", err)
		}
		wantKeys(t, "List", e.list(t, "u"))
	})
}

func TestListPrunesDeleted(t *testing.T) {
	forEachKind(t, func(t *testing.T, e *env) {
		for _, k := range []string{"s:1", "s:2", "s:3"} {
			e.session(t, "u", k, time.Hour)
		}
		if err := e.mem.Delete(ctx, "s:2"); err != nil {
			t.Fatal(err)
		}
		wantKeys(t, "record before List", keysOf(e.record(t, "u")), "s:1", "s:2", "s:3")
		wantKeys(t, "List", e.list(t, "u"), "s:1", "s:3")
		wantKeys(t, "record after List", keysOf(e.record(t, "u")), "s:1", "s:3")

		// All gone: the record is deleted.
		e.mem.Delete(ctx, "s:1")
		e.mem.Delete(ctx, "s:3")
		wantKeys(t, "List", e.list(t, "u"))
		if _, err := e.mem.Get(ctx, e.x.Key("u")); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("record after every member was pruned: %v", err)
		}
	})
}

// TestListKeepsReAdded checks that List does not prune a member found dead
// if an Add changed it between the check and the rewrite.
func TestListKeepsReAdded(t *testing.T) {
	e := newEnv(t, "exister")
	e.session(t, "u", "s:1", time.Hour)
	e.session(t, "u", "s:2", time.Hour)
	e.mem.Delete(ctx, "s:1")
	// Run the rewrite as List would after finding s:1 dead, but with s:1
	// re-added in between.
	dead := e.record(t, "u")[:1]
	e.clk.Advance(time.Second)
	e.session(t, "u", "s:1", time.Hour)
	err := e.x.update(ctx, "u", func(cur []member, now int64) ([]member, bool) {
		n := len(cur)
		cur = slices.DeleteFunc(cur, func(m member) bool {
			i, found := slices.BinarySearchFunc(dead, m.key, cmpKey)
			return found && dead[i].exp == m.exp
		})
		return cur, len(cur) != n
	})
	if err != nil {
		t.Fatal(err)
	}
	wantKeys(t, "record", keysOf(e.record(t, "u")), "s:1", "s:2")
}

func TestStoreFailure(t *testing.T) {
	for _, exister := range []bool{true, false} {
		t.Run(fmt.Sprintf("exister=%v", exister), func(t *testing.T) {
			clk := newClock()
			mem := memory.New(memory.Options{Now: clk.Now})
			defer mem.Close()
			fs := &failingStore{Store: mem}
			var st store.Store = fs
			if exister {
				st = existerFailingStore{fs}
			}
			x := New(st, "p:")
			x.Now = clk.Now
			if _, ok := x.st.(store.Exister); ok != exister {
				t.Fatalf("store implements Exister: %v", ok)
			}
			for _, k := range []string{"s:1", "s:2", "s:3"} {
				mem.Set(ctx, k, []byte("v"), time.Hour)
				if err := x.Add(ctx, "u", k, time.Hour); err != nil {
					t.Fatal(err)
				}
			}
			mem.Delete(ctx, "s:3") // prunable, once the store answers
			raw := func() []byte {
				b, err := mem.Get(ctx, x.Key("u"))
				if err != nil {
					t.Fatal(err)
				}
				return b
			}
			before := raw()

			for _, prefix := range []string{"s:", "p:user:"} {
				fs.failPrefix.Store(&prefix)
				keys, err := x.List(ctx, "u")
				if !errors.Is(err, errInjected) || keys != nil {
					t.Fatalf("List with %q failing = %q, %v; want the injected error", prefix, keys, err)
				}
				if !bytes.Equal(raw(), before) {
					t.Fatalf("List that failed on %q rewrote the record", prefix)
				}
				// Add and Remove report a failure to read the record too,
				// and write nothing.
				if prefix == "p:user:" {
					if err := x.Add(ctx, "u", "s:4", time.Hour); !errors.Is(err, errInjected) {
						t.Fatalf("Add = %v", err)
					}
					if err := x.Remove(ctx, "u", "s:1"); !errors.Is(err, errInjected) {
						t.Fatalf("Remove = %v", err)
					}
					if !bytes.Equal(raw(), before) {
						t.Fatal("failed Add or Remove rewrote the record")
					}
				}
			}

			fs.failPrefix.Store(nil)
			keys, err := x.List(ctx, "u")
			if err != nil {
				t.Fatal(err)
			}
			wantKeys(t, "List once the store recovered", keys, "s:1", "s:2")
		})
	}
}

func TestConcurrentAdd(t *testing.T) {
	const goroutines, each = 32, 20
	for _, tc := range []struct {
		name    string
		kind    string
		indexes int // Index values sharing the store, as separate processes would
	}{
		{"one index", "exister", 1},
		{"updater shared by processes", "updater", 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, tc.kind)
			xs := []*Index{e.x}
			for len(xs) < tc.indexes {
				x := New(e.st, "p:")
				x.Now = e.clk.Now
				xs = append(xs, x)
			}
			var want []string
			for g := range goroutines {
				for i := range each {
					k := fmt.Sprintf("s:%02d:%02d", g, i)
					want = append(want, k)
					e.mem.Set(ctx, k, []byte("v"), time.Hour)
				}
			}
			slices.Sort(want)
			var wg sync.WaitGroup
			errs := make(chan error, goroutines)
			for g := range goroutines {
				wg.Go(func() {
					x := xs[g%len(xs)]
					for i := range each {
						k := fmt.Sprintf("s:%02d:%02d", g, i)
						if err := x.Add(ctx, "u", k, time.Hour); err != nil {
							errs <- err
							return
						}
						// Interleave a no-op Remove and a List, which also
						// take the user's record.
						if i%5 == 0 {
							if err := x.Remove(ctx, "u", "s:none"); err != nil {
								errs <- err
								return
							}
							if _, err := x.List(ctx, "u"); err != nil {
								errs <- err
								return
							}
						}
					}
				})
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Fatal(err)
			}
			wantKeys(t, "List", e.list(t, "u"), want...)
		})
	}
}

func TestBound(t *testing.T) {
	forEachKind(t, func(t *testing.T, e *env) {
		e.x.MaxMembers = 3
		e.session(t, "u", "s:a", 2*time.Hour)
		e.session(t, "u", "s:b", 0) // never expires: latest of all
		e.session(t, "u", "s:c", 1*time.Hour)
		e.session(t, "u", "s:d", 3*time.Hour) // evicts s:c, expiring soonest
		wantKeys(t, "after s:d", keysOf(e.record(t, "u")), "s:a", "s:b", "s:d")
		// A new member expiring sooner than all others still gets in: the
		// newest session is the one that must be reachable.
		e.session(t, "u", "s:e", time.Minute) // evicts s:a
		wantKeys(t, "after s:e", keysOf(e.record(t, "u")), "s:b", "s:d", "s:e")
		// Re-adding a member does not evict anything.
		e.session(t, "u", "s:e", time.Minute)
		wantKeys(t, "after s:e again", keysOf(e.record(t, "u")), "s:b", "s:d", "s:e")
		// Lowering the bound trims the record on the next Add.
		e.x.MaxMembers = 1
		e.session(t, "u", "s:f", time.Minute)
		wantKeys(t, "after lowering the bound", keysOf(e.record(t, "u")), "s:f")
	})
	t.Run("default", func(t *testing.T) {
		e := newEnv(t, "exister")
		for i := range DefaultMaxMembers + 5 {
			if err := e.x.Add(ctx, "u", fmt.Sprintf("s:%05d", i), time.Duration(i+1)*time.Second); err != nil {
				t.Fatal(err)
			}
		}
		ms := e.record(t, "u")
		if len(ms) != DefaultMaxMembers || ms[0].key != "s:00005" {
			t.Fatalf("record has %d members from %q, want %d from s:00005", len(ms), ms[0].key, DefaultMaxMembers)
		}
	})
}

func TestInvalidArguments(t *testing.T) {
	e := newEnv(t, "exister")
	for _, tc := range []struct {
		name string
		err  error
		want error
	}{
		{"Add empty user", e.x.Add(ctx, "", "s:1", time.Hour), ErrEmptyUser},
		{"Add empty key", e.x.Add(ctx, "u", "", time.Hour), store.ErrEmptyKey},
		{"Add negative TTL", e.x.Add(ctx, "u", "s:1", -time.Second), store.ErrInvalidTTL},
		{"Remove empty user", e.x.Remove(ctx, "", "s:1"), ErrEmptyUser},
		{"Remove empty key", e.x.Remove(ctx, "u", ""), store.ErrEmptyKey},
		{"List empty user", func() error { _, err := e.x.List(ctx, ""); return err }(), ErrEmptyUser},
	} {
		if !errors.Is(tc.err, tc.want) {
			t.Errorf("%s = %v, want %v", tc.name, tc.err, tc.want)
		}
	}
	if e.mem.Len() != 0 {
		t.Fatalf("invalid calls wrote %d entries", e.mem.Len())
	}
}

// malformed are index records decode must refuse.
var malformed = map[string][]byte{
	"wrong version":       {2, 0},
	"version only":        {recordVersion},
	"garbage":             []byte("\xff\xfe\xfd not a record at all"),
	"bad count varint":    {recordVersion, 0x80, 0x80},
	"huge count":          {recordVersion, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 1, 'a', 0, 0, 0, 0, 0, 0, 0, 0},
	"count above members": append([]byte{recordVersion, 2}, member1("a", 0)...),
	"count below members": append(append([]byte{recordVersion, 1}, member1("a", 0)...), member1("b", 0)...),
	"truncated key":       {recordVersion, 1, 5, 'a', 'b', 0, 0, 0, 0, 0, 0, 0},
	"truncated expiry":    append([]byte{recordVersion, 1}, member1("abc", 7)[:9]...),
	"empty key":           {recordVersion, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0},
	"huge key length":     {recordVersion, 1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 0, 0, 0, 0, 0, 0, 0, 0},
	"negative expiry":     append([]byte{recordVersion, 1}, member1("a", -1)...),
	"duplicate keys":      append(append([]byte{recordVersion, 2}, member1("a", 0)...), member1("a", 0)...),
	"unsorted keys":       append(append([]byte{recordVersion, 2}, member1("b", 0)...), member1("a", 0)...),
	"overlong count":      {recordVersion, 0x80, 0x00},
	"overlong key length": append([]byte{recordVersion, 1, 0x81, 0x00}, member1("a", 0)[1:]...),
	"trailing byte":       append(append([]byte{recordVersion, 1}, member1("a", 0)...), 0),
}

// member1 encodes one member as encode would.
func member1(key string, exp int64) []byte {
	b := binary.AppendUvarint(nil, uint64(len(key)))
	b = append(b, key...)
	return binary.BigEndian.AppendUint64(b, uint64(exp))
}

func TestMalformedRecord(t *testing.T) {
	for name, rec := range malformed {
		t.Run(name, func(t *testing.T) {
			if ms, err := decode(rec); err == nil || ms != nil {
				t.Fatalf("decode = %+v, %v; want errMalformed", ms, err)
			}
			e := newEnv(t, "exister")
			key := e.x.Key("u")
			e.mem.Set(ctx, key, rec, 0)
			e.mem.Set(ctx, "a", []byte("v"), 0) // a member key some records name
			wantKeys(t, "List", e.list(t, "u"))
			if err := e.x.Remove(ctx, "u", "a"); err != nil {
				t.Fatalf("Remove: %v", err)
			}
			e.session(t, "u", "s:1", time.Hour)
			wantKeys(t, "record after Add", keysOf(e.record(t, "u")), "s:1")
		})
	}
}

func TestEncodeDecode(t *testing.T) {
	for _, ms := range [][]member{
		nil,
		{{"a", 0}},
		{{"a", 1}, {"b", math.MaxInt64}, {strings.Repeat("k", 300), 1234567890123}},
	} {
		b := encode(ms)
		got, err := decode(b)
		if err != nil {
			t.Fatalf("decode(encode(%+v)): %v", ms, err)
		}
		if !slices.Equal(got, ms) && len(got)+len(ms) > 0 {
			t.Fatalf("decode(encode(%+v)) = %+v", ms, got)
		}
	}
	if got := encode([]member{{"ab", 0x0102}}); !bytes.Equal(got, []byte{1, 1, 2, 'a', 'b', 0, 0, 0, 0, 0, 0, 1, 2}) {
		t.Fatalf("encode = % x", got)
	}
}

func FuzzDecode(f *testing.F) {
	f.Add([]byte(nil))
	f.Add(encode([]member{{"a", 0}}))
	f.Add(encode([]member{{"p:s:0123", 1 << 60}, {"p:s:4567", 0}, {"p:s:89ab", 42}}))
	for _, rec := range malformed {
		f.Add(rec)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		ms, err := decode(b)
		if err != nil {
			if ms != nil {
				t.Fatalf("decode returned members with an error")
			}
			return
		}
		if cap(ms) > len(b) {
			t.Fatalf("decode allocated %d members for a %d-byte record", cap(ms), len(b))
		}
		// A record that decodes is canonical: encoding gives it back.
		if len(b) > 0 && !bytes.Equal(encode(ms), b) {
			t.Fatalf("encode(decode(% x)) = % x", b, encode(ms))
		}
	})
}

func TestRecordTTLOverflow(t *testing.T) {
	for _, tc := range []struct {
		ms   []member
		now  int64
		want time.Duration
	}{
		{[]member{{"a", math.MaxInt64}}, 1, 0},
		{[]member{{"a", math.MaxInt64 - int64(Slack)}}, -1, 0},
		{[]member{{"a", 100}}, -int64(time.Hour), time.Duration(100) + Slack + time.Hour},
		{[]member{{"a", 100}, {"b", 0}}, 50, 0},
		{[]member{{"a", 100}, {"b", 200}}, 50, 150 + Slack},
	} {
		if got := recordTTL(tc.ms, tc.now); got != tc.want {
			t.Errorf("recordTTL(%+v, %d) = %v, want %v", tc.ms, tc.now, got, tc.want)
		}
	}
	if exp := expiry(math.MaxInt64-10, time.Hour); exp != math.MaxInt64 {
		t.Errorf("expiry did not saturate: %d", exp)
	}
	if certainlyExpired(math.MaxInt64, math.MaxInt64) {
		t.Error("a saturated expiry counted as expired")
	}
}

// benchEnv is a user with five live sessions on the memory store, on the
// real clock.
func benchEnv(b *testing.B) (*Index, []string) {
	mem := memory.New(memory.Options{})
	b.Cleanup(func() { mem.Close() })
	x := New(mem, "sess:")
	var keys []string
	for i := range 5 {
		k := fmt.Sprintf("sess:%064x", i)
		keys = append(keys, k)
		mem.Set(ctx, k, []byte("v"), time.Hour)
		if err := x.Add(ctx, "user-42", k, time.Hour); err != nil {
			b.Fatal(err)
		}
	}
	return x, keys
}

func BenchmarkAdd(b *testing.B) {
	x, keys := benchEnv(b)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if err := x.Add(ctx, "user-42", keys[i%len(keys)], time.Hour); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

func BenchmarkList(b *testing.B) {
	x, _ := benchEnv(b)
	b.ReportAllocs()
	for b.Loop() {
		keys, err := x.List(ctx, "user-42")
		if err != nil || len(keys) != 5 {
			b.Fatal(keys, err)
		}
	}
}
