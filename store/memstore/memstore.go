// Package memstore is an in-process store.Store: a sharded map with per-entry
// expiry and a background sweeper.
//
// It is the fastest store and the right one for a single process whose
// sessions may be lost on restart. Nothing is persisted.
package memstore

import (
	"bytes"
	"context"
	"errors"
	"hash/maphash"
	"math"
	"math/bits"
	"strings"
	"sync"
	"time"
	"unsafe"

	"github.com/kvsession/kvsession/store"
)

// Options configures a Store. The zero value is ready to use.
type Options struct {
	// Shards is the number of independently locked maps the keys are spread
	// over, so that requests for different sessions rarely contend. It is
	// rounded up to a power of two. Default 64.
	Shards int

	// SweepInterval is how often expired entries are deleted in the
	// background. Expired entries are never returned in between; the sweep
	// only gives their memory back. Default one minute.
	SweepInterval time.Duration

	// Now is the clock, for tests that need to move time. Default time.Now.
	Now func() time.Time
}

const (
	defaultShards        = 64
	defaultSweepInterval = time.Minute

	// A shard's map is rebuilt once it holds fewer than 1/shrinkFactor of the
	// most entries it has held, and that peak was above shrinkMinPeak. Go maps
	// never give back the buckets a spike made them grow, so without this a
	// burst of short sessions would keep its memory forever. The floor keeps
	// small shards from being copied for no measurable gain.
	shrinkFactor  = 4
	shrinkMinPeak = 1024
)

// Store is an in-memory store.Store. Create it with New; it is safe for
// concurrent use. It is a store.Appender, a store.Scanner and a
// store.Purger, reports store.Traits (InProcess and BorrowsKeys), and has
// Touch, Exists, ExpiresIn and DeleteAll for applications and tools.
type Store struct {
	shards []shard
	mask   uint64
	seed   maphash.Seed
	now    func() time.Time // nil: the real clock
	epoch  time.Time        // expiry times are kept as nanoseconds since epoch

	closeOnce sync.Once
	stop      chan struct{} // closed by Close to stop the sweeper
	done      chan struct{} // closed by the sweeper when it has returned
}

// shard is one lock and the map it guards. A nil map means the store is
// closed; checking that under the lock, rather than a separate flag, is what
// makes an operation racing with Close safe.
type shard struct {
	shardState

	// Pads the shard to its own cache line so that locking one shard does
	// not slow down cores working on its neighbours.
	_ [cacheLine - unsafe.Sizeof(shardState{})%cacheLine]byte
}

type shardState struct {
	mu   sync.RWMutex
	m    map[string]entry
	peak int // most entries m has held since it was last rebuilt
	// sets holds the sets whose names hash to this shard: each maps a
	// member to its expiry (as entry.expiresAt). Nil until the shard's
	// first set, and after Close (when m is nil too).
	sets map[string]map[string]int64
}

const cacheLine = 64

// ErrTooLarge is returned by Set for a key and value of 4 GiB or more
// together.
var ErrTooLarge = errors.New("memory store: key and value exceed 4 GiB")

// entry is one stored value. Its key and value share one allocation, and
// the map's key is a view of it: one object per entry rather than three
// (key, value, and the map's own copy of the key), 40 bytes per map slot
// instead of 64. At a million sessions that is a fifth of the store's
// memory, and one cache miss fewer per lookup.
//
// Set writes a value as long as the one it replaces into the same buffer,
// under the shard's write lock: a session saved again and again (the same
// fields, new values) then allocates nothing, and a busy store gives the
// garbage collector nothing to do. So readers copy values only while they
// hold the read lock. Assigning to a key already in a map replaces the
// map's key with the one given: Set and Touch always assign with a view of
// the entry's own buffer, so the map never keeps a caller's string (a
// substring pinning a whole request header, or an unsafe view of a reused
// buffer).
type entry struct {
	data       *byte // the key's bytes, then the value's
	klen, vlen uint32
	expiresAt  int64 // nanoseconds since Store.epoch; 0 means never
}

// newEntry copies key and value into one buffer and returns the map key
// (a view of it) and the entry. key is never empty (check rejects it).
func newEntry(key string, value []byte, expiresAt int64) (string, entry) {
	buf := make([]byte, len(key)+len(value))
	copy(buf, key)
	copy(buf[len(key):], value)
	return unsafe.String(&buf[0], len(key)), entry{data: &buf[0], klen: uint32(len(key)), vlen: uint32(len(value)), expiresAt: expiresAt}
}

// key is the entry's own copy of its key.
func (e *entry) key() string { return unsafe.String(e.data, e.klen) }

// value is the stored value. Only Set writes to it, under the shard's write
// lock; everyone else copies it under the read lock.
func (e *entry) value() []byte {
	if e.vlen == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Add(unsafe.Pointer(e.data), e.klen)), e.vlen)
}

var _ interface {
	store.Store
	store.Appender
	store.Scanner
	store.Purger
	store.TraitsReporter
} = (*Store)(nil)

// Traits reports that the store keeps its entries in this process's
// memory only (nothing to dump, back up or replicate), and that it keeps
// no caller's key string: entries hold their own copy, which the map's key
// is a view of.
func (*Store) Traits() store.Traits { return store.Traits{InProcess: true, BorrowsKeys: true} }

// New returns a Store and starts its sweeper. Call Close to stop it.
func New(opts Options) *Store {
	n := opts.Shards
	if n <= 0 {
		n = defaultShards
	}
	// Round up to a power of two so a shard is picked with a mask, not a
	// division.
	n = 1 << bits.Len(uint(n-1))
	interval := opts.SweepInterval
	if interval <= 0 {
		interval = defaultSweepInterval
	}
	epoch := time.Now()
	if opts.Now != nil {
		epoch = opts.Now()
	}
	s := &Store{
		shards: make([]shard, n),
		mask:   uint64(n - 1),
		seed:   maphash.MakeSeed(),
		now:    opts.Now,
		epoch:  epoch,
		stop:   make(chan struct{}),
		done:   make(chan struct{}),
	}
	for i := range s.shards {
		s.shards[i].m = make(map[string]entry)
	}
	go s.sweeper(interval)
	return s
}

func (s *Store) shard(key string) *shard {
	return &s.shards[maphash.String(s.seed, key)&s.mask]
}

// nowNano is the time since the store was created. Measuring from a
// time.Now reading, rather than taking Unix nanoseconds, uses the monotonic
// clock: stepping the wall clock (NTP, a VM resumed) neither expires
// sessions early nor keeps them alive.
func (s *Store) nowNano() int64 {
	if s.now == nil {
		return int64(time.Since(s.epoch)) // reads only the monotonic clock
	}
	return int64(s.now().Sub(s.epoch))
}

// live reports whether e has not expired at now.
func (e *entry) live(now int64) bool {
	return e.expiresAt == 0 || now < e.expiresAt
}

func (s *Store) expiry(ttl time.Duration) int64 {
	if ttl == 0 {
		return 0
	}
	return expiryAt(s.nowNano(), ttl)
}

// expiryAt is expiry with the clock already read.
func expiryAt(now int64, ttl time.Duration) int64 {
	if ttl == 0 {
		return 0
	}
	// Saturate rather than wrap: a huge TTL must mean "practically never",
	// not an expiry in the past.
	// (now is negative only with a test clock moved before the store's
	// creation; MaxInt64-now would itself overflow then.)
	if now > 0 && int64(ttl) > math.MaxInt64-now {
		return math.MaxInt64
	}
	return now + int64(ttl)
}

func check(ctx context.Context, key string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if key == "" {
		return store.ErrEmptyKey
	}
	return nil
}

// Get returns a copy of the value stored under key.
func (s *Store) Get(ctx context.Context, key string) ([]byte, error) {
	return s.GetAppend(ctx, key, nil)
}

// GetAppend appends the value stored under key to dst.
func (s *Store) GetAppend(ctx context.Context, key string, dst []byte) ([]byte, error) {
	if err := check(ctx, key); err != nil {
		return dst, err
	}
	now := s.nowNano()
	sh := s.shard(key)
	sh.mu.RLock()
	if sh.m == nil {
		sh.mu.RUnlock()
		return dst, store.ErrClosed
	}
	e, ok := sh.m[key]
	if !ok || !e.live(now) {
		sh.mu.RUnlock()
		return dst, store.ErrNotFound
	}
	// Copied under the lock: Set may rewrite the value in place.
	v := e.value()
	if dst == nil {
		dst = make([]byte, 0, len(v))
	}
	dst = append(dst, v...)
	sh.mu.RUnlock()
	return dst, nil
}

// Set stores a copy of value under key. A zero ttl means no expiry.
func (s *Store) Set(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	if err := check(ctx, key); err != nil {
		return err
	}
	if ttl < 0 {
		return store.ErrInvalidTTL
	}
	if uint64(len(key))+uint64(len(value)) > math.MaxUint32 {
		return ErrTooLarge // an entry's lengths are 32-bit
	}
	exp := s.expiry(ttl) // the clock is read before locking
	sh := s.shard(key)
	sh.mu.Lock()
	if sh.m == nil {
		sh.mu.Unlock()
		return store.ErrClosed
	}
	if e, ok := sh.m[key]; ok && len(value) == int(e.vlen) {
		// Rewritten in place (see entry): readers copy under the read
		// lock, which this write lock excludes. Only at the same length,
		// so that no buffer outgrows its value.
		copy(e.value(), value)
		e.expiresAt = exp
		sh.m[e.key()] = e
		sh.mu.Unlock()
		return nil
	}
	sh.mu.Unlock()
	// A new buffer is allocated and filled outside the lock, so that the
	// shard's readers do not wait on the allocator. A Set landing in
	// between is simply overwritten, as if it had come first.
	k, e := newEntry(key, value, exp)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if sh.m == nil {
		return store.ErrClosed
	}
	sh.m[k] = e
	if len(sh.m) > sh.peak {
		sh.peak = len(sh.m)
	}
	return nil
}

// Swap stores value under key if the value there is still old (nil: if
// there is none), or deletes key if value is nil. See store.Store.
func (s *Store) Swap(ctx context.Context, key string, old, value []byte, ttl time.Duration) (bool, error) {
	if err := check(ctx, key); err != nil {
		return false, err
	}
	if ttl < 0 {
		return false, store.ErrInvalidTTL
	}
	if uint64(len(key))+uint64(len(value)) > math.MaxUint32 {
		return false, ErrTooLarge
	}
	now := s.nowNano()
	exp := expiryAt(now, ttl)
	sh := s.shard(key)
	sh.mu.Lock()
	if sh.m == nil {
		sh.mu.Unlock()
		return false, store.ErrClosed
	}
	e, ok := sh.m[key]
	switch {
	case !holds(e, ok, now, old):
		sh.mu.Unlock()
		return false, nil
	case value == nil:
		delete(sh.m, key)
		sh.maybeShrink()
		sh.mu.Unlock()
		return true, nil
	case ok && len(value) == int(e.vlen):
		// In place, as Set does: the common case of a session saved
		// again allocates nothing.
		copy(e.value(), value)
		e.expiresAt = exp
		sh.m[e.key()] = e
		sh.mu.Unlock()
		return true, nil
	}
	sh.mu.Unlock()
	// As in Set, the new buffer is filled outside the lock; the condition
	// is checked again once the lock is back, since anything may have
	// happened to key meanwhile.
	k, ne := newEntry(key, value, exp)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if sh.m == nil {
		return false, store.ErrClosed
	}
	if e, ok := sh.m[key]; !holds(e, ok, now, old) {
		return false, nil
	}
	sh.m[k] = ne
	if len(sh.m) > sh.peak {
		sh.peak = len(sh.m)
	}
	return true, nil
}

// holds reports whether the entry found under a key (ok: there was one) is
// old at now: a live entry with exactly that value, or, for a nil old, no
// live entry at all.
func holds(e entry, ok bool, now int64, old []byte) bool {
	live := ok && e.live(now)
	if old == nil {
		return !live
	}
	return live && bytes.Equal(e.value(), old)
}

// Delete removes key. Deleting a missing key is not an error.
func (s *Store) Delete(ctx context.Context, key string) error {
	if err := check(ctx, key); err != nil {
		return err
	}
	sh := s.shard(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if sh.m == nil {
		return store.ErrClosed
	}
	delete(sh.m, key)
	sh.maybeShrink()
	return nil
}

// Touch resets key's expiry to ttl from now without copying its value. A
// zero ttl makes the entry permanent.
func (s *Store) Touch(ctx context.Context, key string, ttl time.Duration) error {
	if err := check(ctx, key); err != nil {
		return err
	}
	if ttl < 0 {
		return store.ErrInvalidTTL
	}
	now := s.nowNano()
	exp := expiryAt(now, ttl)
	sh := s.shard(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if sh.m == nil {
		return store.ErrClosed
	}
	e, ok := sh.m[key]
	if !ok || !e.live(now) {
		return store.ErrNotFound
	}
	e.expiresAt = exp
	sh.m[e.key()] = e
	return nil
}

// Exists reports whether key holds a live entry.
func (s *Store) Exists(ctx context.Context, key string) (bool, error) {
	if err := check(ctx, key); err != nil {
		return false, err
	}
	now := s.nowNano()
	sh := s.shard(key)
	sh.mu.RLock()
	defer sh.mu.RUnlock()
	if sh.m == nil {
		return false, store.ErrClosed
	}
	e, ok := sh.m[key]
	return ok && e.live(now), nil
}

// ExpiresIn reports how long key has left, or store.NoExpiry for an entry
// set with a zero TTL.
func (s *Store) ExpiresIn(ctx context.Context, key string) (time.Duration, error) {
	if err := check(ctx, key); err != nil {
		return 0, err
	}
	now := s.nowNano()
	sh := s.shard(key)
	sh.mu.RLock()
	defer sh.mu.RUnlock()
	if sh.m == nil {
		return 0, store.ErrClosed
	}
	e, ok := sh.m[key]
	if !ok || !e.live(now) {
		return 0, store.ErrNotFound
	}
	if e.expiresAt == 0 {
		return store.NoExpiry, nil
	}
	return time.Duration(e.expiresAt - now), nil
}

// AddMember adds member to set until ttl from now (0: no expiry), keeping
// a later expiry it already had. See store.Store.
func (s *Store) AddMember(ctx context.Context, set, member string, ttl time.Duration) error {
	if err := checkMember(ctx, set, member); err != nil {
		return err
	}
	if ttl < 0 {
		return store.ErrInvalidTTL
	}
	exp := s.expiry(ttl)
	sh := s.shard(set)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if sh.m == nil {
		return store.ErrClosed
	}
	if sh.sets == nil {
		sh.sets = make(map[string]map[string]int64)
	}
	members := sh.sets[set]
	if members == nil {
		// Cloned: the caller's strings may be views of buffers it reuses.
		members = make(map[string]int64)
		sh.sets[strings.Clone(set)] = members
	}
	if cur, ok := members[member]; ok {
		if cur == 0 || (exp != 0 && exp <= cur) {
			return nil // it lives as long already
		}
		members[member] = exp
		return nil
	}
	members[strings.Clone(member)] = exp
	return nil
}

// RemoveMember removes member from set.
func (s *Store) RemoveMember(ctx context.Context, set, member string) error {
	if err := checkMember(ctx, set, member); err != nil {
		return err
	}
	sh := s.shard(set)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if sh.m == nil {
		return store.ErrClosed
	}
	if members := sh.sets[set]; members != nil {
		delete(members, member)
		if len(members) == 0 {
			delete(sh.sets, set)
		}
	}
	return nil
}

// Members returns the live members of set.
func (s *Store) Members(ctx context.Context, set string) ([]string, error) {
	if err := check(ctx, set); err != nil {
		return nil, err
	}
	now := s.nowNano()
	sh := s.shard(set)
	sh.mu.RLock()
	defer sh.mu.RUnlock()
	if sh.m == nil {
		return nil, store.ErrClosed
	}
	members := sh.sets[set]
	out := make([]string, 0, len(members))
	for m, exp := range members {
		if exp == 0 || now < exp {
			out = append(out, m) // the store's own copy, never written
		}
	}
	return out, nil
}

func checkMember(ctx context.Context, set, member string) error {
	if err := check(ctx, set); err != nil {
		return err
	}
	if member == "" {
		return store.ErrEmptyKey
	}
	return nil
}

// scanned is one key a Scan found in a shard, with where its value's copy
// lies in the scan's buffer.
type scanned struct {
	key      string
	off, len int
}

// Scan calls fn with each live key that starts with prefix, and a copy of
// its value, shard by shard. See store.Scanner.
//
// Each shard's matching entries are copied under its read lock, which is
// then let go before fn is called: fn may call the store, Delete of key
// included, and a slow fn holds up no request. So a scan holds at most one
// shard's worth of matching values at a time (the buffer is reused from
// shard to shard), and shows each shard as it was when the scan reached
// it: a key live for the whole scan is visited exactly once.
func (s *Store) Scan(ctx context.Context, prefix string, fn func(key string, value []byte) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	var (
		found []scanned
		buf   []byte
	)
	for i := range s.shards {
		if err := ctx.Err(); err != nil {
			return err
		}
		sh := &s.shards[i]
		now := s.nowNano()
		found, buf = found[:0], buf[:0]
		sh.mu.RLock()
		if sh.m == nil {
			sh.mu.RUnlock()
			return store.ErrClosed
		}
		for k, e := range sh.m {
			if e.live(now) && strings.HasPrefix(k, prefix) {
				// k is a view of the entry's own buffer, whose key bytes
				// are never written again: it can be handed out as it is.
				// The value is copied, since Set rewrites it in place.
				found = append(found, scanned{key: k, off: len(buf), len: int(e.vlen)})
				buf = append(buf, e.value()...)
			}
		}
		sh.mu.RUnlock()
		for _, f := range found {
			if err := ctx.Err(); err != nil {
				return err
			}
			// The full slice expression keeps fn from appending into the
			// next value.
			if err := fn(f.key, buf[f.off:f.off+f.len:f.off+f.len]); err != nil {
				return err
			}
		}
	}
	return nil
}

// DeleteAll removes every entry. It clears one shard at a time, so entries
// set concurrently in shards already cleared survive.
func (s *Store) DeleteAll(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		if sh.m == nil {
			sh.mu.Unlock()
			return store.ErrClosed
		}
		// A fresh map rather than clear(): clear keeps the buckets, and
		// DeleteAll is how a caller asks for the memory back.
		sh.m = make(map[string]entry)
		sh.peak = 0
		sh.sets = nil
		sh.mu.Unlock()
	}
	return nil
}

// Len returns the number of entries held, including expired ones the
// sweeper has not removed yet. It returns 0 after Close.
func (s *Store) Len() int {
	n := 0
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.RLock()
		n += len(sh.m)
		sh.mu.RUnlock()
	}
	return n
}

// Sweep deletes expired entries now, and rebuilds shards left sparse. The
// sweeper calls it every SweepInterval; calling it directly is mostly useful
// in tests. It does nothing after Close.
func (s *Store) Sweep() { s.sweep(context.Background()) }

// PurgeExpired deletes expired values and set members now, as Sweep does,
// and returns how many it deleted. Expired entries are never returned in
// any case: purging gives their memory back sooner than the sweeper would.
// A canceled ctx stops it between shards, with what it had removed.
func (s *Store) PurgeExpired(ctx context.Context) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	return s.sweep(ctx)
}

// sweep deletes expired entries shard by shard, and returns how many
// values and set members it deleted; ErrClosed if it found the store
// closed, or ctx's error, once ctx has ended, before the next shard.
func (s *Store) sweep(ctx context.Context) (int, error) {
	removed := 0
	for i := range s.shards {
		if err := ctx.Err(); err != nil {
			return removed, err
		}
		sh := &s.shards[i]
		// Read the clock per shard: with many shards and a slow sweep, one
		// timestamp for all would fall ever further behind.
		now := s.nowNano()
		sh.mu.Lock()
		if sh.m == nil {
			sh.mu.Unlock()
			return removed, store.ErrClosed
		}
		for k, e := range sh.m {
			if !e.live(now) {
				delete(sh.m, k)
				removed++
			}
		}
		sh.maybeShrink()
		for set, members := range sh.sets {
			for m, exp := range members {
				if exp != 0 && now >= exp {
					delete(members, m)
					removed++
				}
			}
			if len(members) == 0 {
				delete(sh.sets, set)
			}
		}
		sh.mu.Unlock()
	}
	return removed, nil
}

// maybeShrink replaces a map that has become sparse after a spike with a
// right-sized copy. The caller holds the write lock.
func (sh *shard) maybeShrink() {
	if sh.peak <= shrinkMinPeak || len(sh.m) >= sh.peak/shrinkFactor {
		return
	}
	m := make(map[string]entry, len(sh.m))
	for k, e := range sh.m {
		m[k] = e
	}
	sh.m = m
	sh.peak = len(m)
}

func (s *Store) sweeper(interval time.Duration) {
	defer close(s.done)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			s.Sweep()
		}
	}
}

// Close stops the sweeper, waits for it to return and releases every entry.
// Later calls to any method return store.ErrClosed; calling Close again
// returns nil.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		close(s.stop)
		<-s.done
		for i := range s.shards {
			sh := &s.shards[i]
			sh.mu.Lock()
			sh.m = nil
			sh.peak = 0
			sh.sets = nil
			sh.mu.Unlock()
		}
	})
	return nil
}
