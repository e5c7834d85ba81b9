// Package faultstore wraps a store.Store so that tests can make chosen
// calls fail, slow down or hang, and can count every call, to prove how the
// code using the store behaves when it misbehaves.
//
//	fs := faultstore.New(memstore.New(memstore.Options{}))
//	reg.Register("sessions", fs.Store()) // what the code under test uses
//	down := fs.Add(faultstore.Rule{Methods: faultstore.Set, Err: errDown})
//	... // every Set now fails with errDown, nothing is written
//	down.Remove()
//	fs.Calls(faultstore.Set) // how many Sets were attempted
//
// Rules are added and removed at run time, from any goroutine. Each rule
// picks calls by method and key (Methods, Prefix, Key) and by position
// (Skip, Times), and acts on them: Latency, Hang, Err (before the call, or
// after it with ErrAfterCall). Of the rules matching a call, the first one
// added that is due acts; every matching rule counts the call towards its
// Skip and Times.
//
// # Abilities
//
// kvsession changes strategy on what a store can do: the session lock
// polls a store.Locker instead of its in-process table, loads read into
// the session's buffer through a store.Appender, an in-process store gets
// unhashed keys, operators list sessions through a store.Scanner. A
// wrapper that lost an ability, or claimed one the store lacks, would test
// another code path than production runs. So New resolves the wrapped
// store once (store.Resolve), each call of it goes through the rules, and
// the store Store returns has exactly the wrapped store's abilities, as
// store.Resolve finds them, which is the one way kvsession looks: its
// calls, resolved, have a nil func exactly where the wrapped store's do.
//
// It has them through store.Resolve alone, not as Go methods: a type
// assertion on it (to store.Locker, say) finds none. A type per
// combination of abilities would take sixteen types for four abilities,
// and twice as many with each ability added; the fault store has one,
// which hands store.Resolve its calls (store/internal/resolving). It
// reports the wrapped store's store.Traits but one: a fault store records
// the keys it is given and shows them to the rules, so it does not report
// BorrowsKeys, and is never lent a buffer the caller reuses.
//
// Emulating a missing ability was rejected: a Locker emulated in process
// would replace the very code (the in-process lock table) a test of a
// plain store exercises. For the same reason *Store itself is not a
// store.Store: registering it by mistake instead of Store() would not
// compile.
package faultstore

import (
	"context"
	"errors"
	"fmt"
	"math/bits"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kvsession/kvsession/store"
	"github.com/kvsession/kvsession/store/internal/resolving"
)

// Method names the store methods rules apply to and calls are counted for.
// Methods combine with |.
type Method uint16

const (
	Get Method = 1 << iota
	Set
	Delete
	GetAppend // store.Appender
	TryLock   // store.Locker
	Unlock    // store.Locker
	Swap
	AddMember
	RemoveMember
	Members
	Scan         // store.Scanner
	PurgeExpired // store.Purger

	numMethods = iota

	// Reads is every method that loads the value of one key. kvsession
	// loads sessions with GetAppend when the store has it, Get otherwise:
	// a rule meant to break loads should name both. (Scan reads values
	// too, but no request does.)
	Reads = Get | GetAppend

	// Writes is every method that stores a value. kvsession saves a
	// session it loaded with Swap and a new one with Set: a rule meant to
	// break saves should name both.
	Writes = Set | Swap

	// SetOps is every method on sets (a user's sessions).
	SetOps = AddMember | RemoveMember | Members

	// All is every method; a Rule with Methods zero means the same.
	All Method = 1<<numMethods - 1
)

var methodNames = [numMethods]string{"Get", "Set", "Delete", "GetAppend", "TryLock", "Unlock", "Swap", "AddMember", "RemoveMember", "Members", "Scan", "PurgeExpired"}

func (m Method) String() string {
	if m == 0 {
		return "none"
	}
	var parts []string
	for i, name := range methodNames {
		if m&(1<<i) != 0 {
			parts = append(parts, name)
		}
	}
	if m&^All != 0 {
		parts = append(parts, fmt.Sprintf("Method(%#x)", uint16(m&^All)))
	}
	return strings.Join(parts, "|")
}

// Rule says which calls to disturb and how.
type Rule struct {
	// Methods is the method or methods (or'ed) the rule applies to. Zero
	// means every method.
	Methods Method

	// Prefix, if not empty, limits the rule to keys that start with it.
	// A Scan's key is the prefix it scans; PurgeExpired's is "".
	Prefix string

	// Key, if set, limits the rule to keys it returns true for. It runs
	// under the Store's lock: keep it quick and do not call the Store.
	Key func(key string) bool

	// Skip lets the first Skip matching calls through untouched. Then the
	// rule acts on the next Times calls, or on every one if Times is zero.
	// The Nth matching call alone: Skip N-1, Times 1.
	Skip, Times int

	// Latency delays the call by that long before it goes on. If the
	// call's context ends first, the call returns ctx.Err() without
	// reaching the wrapped store.
	Latency time.Duration

	// Hang blocks the call until its context is done, and then returns
	// ctx.Err() without reaching the wrapped store: a store that stopped
	// answering. Closing the Store releases it with store.ErrClosed;
	// removing the rule releases it to go on as if the rule had not
	// matched (a store that recovered).
	Hang bool

	// Err, if set, is returned instead of calling the wrapped store, after
	// any Latency.
	Err error

	// ErrAfterCall calls the wrapped store anyway and then returns Err in
	// place of its result: the operation took effect but the caller sees it
	// fail, as when a reply is lost. It requires Err.
	ErrAfterCall bool
}

// Handle is a rule added to a Store.
type Handle struct {
	s       *Store
	rule    Rule
	seen    int           // matching calls, under s.mu
	hits    atomic.Int64  // calls acted on
	removed chan struct{} // closed by Remove: releases hung and delayed calls
	once    sync.Once
}

// Remove takes the rule out: it matches no further call, and calls it is
// delaying or hanging go on as if it had never matched.
func (h *Handle) Remove() {
	h.once.Do(func() {
		h.s.mu.Lock()
		for i, r := range h.s.rules {
			if r == h {
				h.s.rules = append(h.s.rules[:i:i], h.s.rules[i+1:]...)
				break
			}
		}
		h.s.mu.Unlock()
		close(h.removed)
	})
}

// Hits returns how many calls the rule has acted on so far: a test that
// injected a fault can check that its fault was actually met.
func (h *Handle) Hits() int { return int(h.hits.Load()) }

// Store holds the rules and call counts of one wrapped store. Create it with
// New; it is safe for concurrent use. The store itself is Store().
type Store struct {
	wrapped store.Store
	inner   store.Calls // wrapped, resolved once: each call goes on to it
	calls   store.Calls // inner's, each through the rules: what view resolves to
	view    view

	mu     sync.Mutex
	rules  []*Handle
	keys   map[string]struct{} // every key a call named, under mu
	counts [numMethods]atomic.Int64

	closeOnce sync.Once
	closed    chan struct{}
}

// New wraps inner. With no rules added, the store Store returns behaves
// exactly as inner does (it passes the storetest conformance suite when
// inner does) and only counts calls.
func New(inner store.Store) *Store {
	s := &Store{wrapped: inner, inner: store.Resolve(inner), closed: make(chan struct{}), keys: map[string]struct{}{}}
	s.view = view{s}
	s.calls = s.faulty()
	return s
}

// faulty returns inner's calls, each going through the rules: a func for
// each func inner has, and nil where it has nil, so that the store Store
// returns resolves to exactly inner's abilities.
func (s *Store) faulty() store.Calls {
	c := store.Calls{
		Get:          s.get,
		Set:          s.set,
		Swap:         s.swap,
		Delete:       s.delete,
		AddMember:    s.addMember,
		RemoveMember: s.removeMember,
		Members:      s.members,
		Traits:       s.inner.Traits,
	}
	// Never BorrowsKeys: the fault store records the keys calls name, and
	// hands them to the rules' Key funcs, test code that may keep them; it
	// cannot promise that nothing does.
	c.Traits.BorrowsKeys = false
	if s.inner.GetAppend != nil {
		c.GetAppend = s.getAppend
	}
	if s.inner.TryLock != nil {
		c.TryLock, c.Unlock = s.tryLock, s.unlock
	}
	if s.inner.Scan != nil {
		c.Scan = s.scan
	}
	if s.inner.PurgeExpired != nil {
		c.PurgeExpired = s.purgeExpired
	}
	return c
}

// Store returns the faulty store to give the code under test. It
// implements store.Store, and store.Resolve finds in it exactly the
// optional abilities of the wrapped store.
func (s *Store) Store() store.Store { return s.view }

// Inner returns the wrapped store, to inspect or prepare data without
// rules or counting.
func (s *Store) Inner() store.Store { return s.wrapped }

// Add adds a rule, after those already there. It panics on a rule that
// cannot be meant (an unknown method, a negative count or duration,
// ErrAfterCall without Err): this is a test helper.
func (s *Store) Add(r Rule) *Handle {
	switch {
	case r.Methods&^All != 0:
		panic(fmt.Sprintf("faultstore: unknown methods %v", r.Methods))
	case r.Skip < 0 || r.Times < 0 || r.Latency < 0:
		panic("faultstore: negative Skip, Times or Latency")
	case r.ErrAfterCall && r.Err == nil:
		panic("faultstore: ErrAfterCall without Err")
	}
	if r.Methods == 0 {
		r.Methods = All
	}
	h := &Handle{s: s, rule: r, removed: make(chan struct{})}
	s.mu.Lock()
	s.rules = append(s.rules, h)
	s.mu.Unlock()
	return h
}

// Fail is shorthand for Add(Rule{Methods: m, Err: err}).
func (s *Store) Fail(m Method, err error) *Handle { return s.Add(Rule{Methods: m, Err: err}) }

// Clear removes every rule, releasing the calls they hold.
func (s *Store) Clear() {
	s.mu.Lock()
	rules := append([]*Handle(nil), s.rules...)
	s.mu.Unlock()
	for _, h := range rules {
		h.Remove()
	}
}

// Calls returns how many calls of the given methods (or'ed) the store has
// received since New or ResetCalls, faulted ones included.
func (s *Store) Calls(m Method) int {
	n := int64(0)
	for i := range numMethods {
		if m&(1<<i) != 0 {
			n += s.counts[i].Load()
		}
	}
	return int(n)
}

// Keys returns, sorted, every key a call has named since New or
// ResetCalls: a test can snapshot what the code under test stored (session
// records, index records) without knowing how it names its keys.
func (s *Store) Keys() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, 0, len(s.keys))
	for k := range s.keys {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// Snapshot returns what the wrapped store holds, without rules or
// counting, under every key a call has named since ResetCalls and under
// the keys in also: comparing two snapshots shows whether a failed request
// changed anything.
func (s *Store) Snapshot(ctx context.Context, also ...string) (map[string]string, error) {
	out := map[string]string{}
	for _, k := range append(s.Keys(), also...) {
		v, err := s.inner.Get(ctx, k)
		switch {
		case err == nil:
			out[k] = string(v)
		case !errors.Is(err, store.ErrNotFound):
			return nil, fmt.Errorf("snapshot of %q: %w", k, err)
		}
	}
	return out, nil
}

// ResetCalls sets every call count back to zero and forgets the keys.
func (s *Store) ResetCalls() {
	s.mu.Lock()
	clear(s.keys)
	s.mu.Unlock()
	for i := range s.counts {
		s.counts[i].Store(0)
	}
}

// unkeyed are the methods whose key, for the rules, names no entry: it is
// not recorded among the keys calls named.
const unkeyed = Scan | PurgeExpired

// due picks the rule acting on a call, counting the call for every rule it
// matches.
func (s *Store) due(m Method, key string) *Handle {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, seen := s.keys[key]; !seen && m&unkeyed == 0 {
		// A copy: a caller may build keys over buffers it reuses.
		s.keys[strings.Clone(key)] = struct{}{}
	}
	var acting *Handle
	for _, h := range s.rules {
		r := &h.rule
		if r.Methods&m == 0 {
			continue
		}
		if r.Prefix != "" || r.Key != nil {
			if !strings.HasPrefix(key, r.Prefix) || (r.Key != nil && !r.Key(key)) {
				continue
			}
		}
		h.seen++
		if acting == nil && h.seen > r.Skip && (r.Times == 0 || h.seen <= r.Skip+r.Times) {
			acting = h
		}
	}
	if acting != nil {
		acting.hits.Add(1)
	}
	return acting
}

// enter counts a call and applies the rule due for it. A non-nil error
// is the call's result: the wrapped store is not called. Otherwise the
// call goes on, and after(h, err) gives its result.
func (s *Store) enter(ctx context.Context, m Method, key string) (*Handle, error) {
	s.counts[bits.TrailingZeros16(uint16(m))].Add(1)
	h := s.due(m, key)
	if h == nil {
		return nil, nil
	}
	r := &h.rule
	if r.Latency > 0 {
		t := time.NewTimer(r.Latency)
		select {
		case <-t.C:
		case <-h.removed:
			t.Stop()
			return nil, nil
		case <-ctx.Done():
			t.Stop()
			return h, ctx.Err()
		case <-s.closed:
			t.Stop()
			return h, store.ErrClosed
		}
	}
	if r.Hang {
		select {
		case <-h.removed:
			return nil, nil
		case <-ctx.Done():
			return h, ctx.Err()
		case <-s.closed:
			return h, store.ErrClosed
		}
	}
	if r.Err != nil && !r.ErrAfterCall {
		return h, r.Err
	}
	return h, nil
}

// after returns the result of a call that reached the wrapped store.
func after(h *Handle, err error) error {
	if h != nil && h.rule.ErrAfterCall {
		return h.rule.Err
	}
	return err
}

func (s *Store) get(ctx context.Context, key string) ([]byte, error) {
	h, err := s.enter(ctx, Get, key)
	if err != nil {
		return nil, err
	}
	v, err := s.inner.Get(ctx, key)
	if err = after(h, err); err != nil {
		return nil, err
	}
	return v, nil
}

func (s *Store) set(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	h, err := s.enter(ctx, Set, key)
	if err != nil {
		return err
	}
	return after(h, s.inner.Set(ctx, key, value, ttl))
}

func (s *Store) delete(ctx context.Context, key string) error {
	h, err := s.enter(ctx, Delete, key)
	if err != nil {
		return err
	}
	return after(h, s.inner.Delete(ctx, key))
}

func (s *Store) swap(ctx context.Context, key string, old, value []byte, ttl time.Duration) (bool, error) {
	h, err := s.enter(ctx, Swap, key)
	if err != nil {
		return false, err
	}
	ok, err := s.inner.Swap(ctx, key, old, value, ttl)
	if err = after(h, err); err != nil {
		return false, err
	}
	return ok, nil
}

// The set methods are keyed by the set's name: a rule with Prefix or Key
// picks sets by name.

func (s *Store) addMember(ctx context.Context, set, member string, ttl time.Duration) error {
	h, err := s.enter(ctx, AddMember, set)
	if err != nil {
		return err
	}
	return after(h, s.inner.AddMember(ctx, set, member, ttl))
}

func (s *Store) removeMember(ctx context.Context, set, member string) error {
	h, err := s.enter(ctx, RemoveMember, set)
	if err != nil {
		return err
	}
	return after(h, s.inner.RemoveMember(ctx, set, member))
}

func (s *Store) members(ctx context.Context, set string) ([]string, error) {
	h, err := s.enter(ctx, Members, set)
	if err != nil {
		return nil, err
	}
	ms, err := s.inner.Members(ctx, set)
	if err = after(h, err); err != nil {
		return nil, err
	}
	return ms, nil
}

// close releases every hung call with store.ErrClosed, then closes the
// wrapped store.
func (s *Store) close() error {
	s.closeOnce.Do(func() { close(s.closed) })
	return s.wrapped.Close()
}

func (s *Store) getAppend(ctx context.Context, key string, dst []byte) ([]byte, error) {
	h, err := s.enter(ctx, GetAppend, key)
	if err != nil {
		return dst, err
	}
	n := len(dst)
	out, err := s.inner.GetAppend(ctx, key, dst)
	if err = after(h, err); err != nil {
		// As a failed GetAppend does: nothing appended.
		return out[:min(n, len(out))], err
	}
	return out, nil
}

func (s *Store) tryLock(ctx context.Context, key string, lease time.Duration) (string, bool, error) {
	h, err := s.enter(ctx, TryLock, key)
	if err != nil {
		return "", false, err
	}
	tok, ok, err := s.inner.TryLock(ctx, key, lease)
	if err = after(h, err); err != nil {
		return "", false, err
	}
	return tok, ok, nil
}

func (s *Store) unlock(ctx context.Context, key, token string) error {
	h, err := s.enter(ctx, Unlock, key)
	if err != nil {
		return err
	}
	return after(h, s.inner.Unlock(ctx, key, token))
}

// scan is keyed by its prefix, for the rules: a rule with Prefix or Key
// picks scans by what they scan. A rule acts before the scan starts (Err,
// Latency, Hang) or once it has ended (ErrAfterCall), not between the keys
// it visits.
func (s *Store) scan(ctx context.Context, prefix string, fn func(key string, value []byte) error) error {
	h, err := s.enter(ctx, Scan, prefix)
	if err != nil {
		return err
	}
	return after(h, s.inner.Scan(ctx, prefix, fn))
}

func (s *Store) purgeExpired(ctx context.Context) (int, error) {
	h, err := s.enter(ctx, PurgeExpired, "")
	if err != nil {
		return 0, err
	}
	n, err := s.inner.PurgeExpired(ctx)
	if err = after(h, err); err != nil {
		return 0, err
	}
	return n, nil
}

// view is the store Store returns: the store.Store methods, and
// ResolveCalls, through which store.Resolve finds the calls of faulty,
// abilities included. One type whatever the wrapped store can do (see
// Abilities in the package documentation).
type view struct{ s *Store }

var _ store.Store = view{}

// ResolveCalls hands store.Resolve the wrapped store's calls, each through
// the rules.
func (v view) ResolveCalls(resolving.Token) store.Calls { return v.s.calls }

func (v view) Get(ctx context.Context, key string) ([]byte, error) { return v.s.get(ctx, key) }
func (v view) Set(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	return v.s.set(ctx, key, value, ttl)
}
func (v view) Swap(ctx context.Context, key string, old, value []byte, ttl time.Duration) (bool, error) {
	return v.s.swap(ctx, key, old, value, ttl)
}
func (v view) Delete(ctx context.Context, key string) error { return v.s.delete(ctx, key) }
func (v view) AddMember(ctx context.Context, set, member string, ttl time.Duration) error {
	return v.s.addMember(ctx, set, member, ttl)
}
func (v view) RemoveMember(ctx context.Context, set, member string) error {
	return v.s.removeMember(ctx, set, member)
}
func (v view) Members(ctx context.Context, set string) ([]string, error) {
	return v.s.members(ctx, set)
}
func (v view) Close() error { return v.s.close() }
