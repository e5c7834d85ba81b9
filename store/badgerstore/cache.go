package badgerstore

import (
	"bytes"
	"hash/maphash"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"
)

// cache keeps a copy of recently written and read entries in this process,
// in front of Badger. A Badger read is several microseconds even when the
// entry sits in a memtable: Badger v4 goes on to search every level of its
// tree that holds an older version of the key, and a session's key, being
// rewritten on every change, has older versions everywhere. A session read
// from the cache costs a map lookup.
//
// Badger stays the truth: the cache is filled only with what Badger has
// committed, and only when no write can have overtaken it.
//
//   - A write (Set, Delete, Swap, Touch) first marks its key's entry as being
//     written, which hides its value, and after Badger's commit stores the
//     committed value. If two writes to a key overlap, Badger's order
//     between them is unknown, so neither stores anything and the next read
//     goes to Badger.
//   - A read that misses takes its shard's generation, reads Badger, and
//     stores what it read only if the generation has not moved: every write
//     moves it when it starts and when it ends, so a write that committed
//     or began while Badger was being read leaves the cache alone.
//
// Writes that reach Badger by another path (DB) bypass the cache; the Store
// documents that.
type cache struct {
	shards []cacheShard
	mask   uint64
	seed   maphash.Seed
	limit  int // bytes one shard may hold, counted by cached.size

	// dropping is set while DeleteAll runs: Badger drops its entries at a
	// moment the cache cannot see, so until it is done nothing is served
	// from the cache or stored in it.
	dropping atomic.Bool
}

type cacheShard struct {
	cacheShardState
	// Its own cache line, so that cores locking neighbouring shards do not
	// slow each other down.
	_ [cacheLine - unsafe.Sizeof(cacheShardState{})%cacheLine]byte
}

type cacheShardState struct {
	mu    sync.RWMutex
	m     map[string]*cached
	gen   uint64 // moved by the start and end of every write, and by clear
	bytes int
}

const (
	cacheLine   = 64
	cacheShards = 64

	// entryOverhead approximates what an entry costs beyond its key and
	// value bytes: the cached struct (an 80-byte allocation), its map slot,
	// the map's spare slots, and allocation slack.
	entryOverhead = 128
)

// cached is one key's entry. All fields are guarded by the shard's lock.
// An entry in a shard's map with no write under way holds Badger's
// committed value: one left without a value when its last write ends is
// removed then.
type cached struct {
	key       string // the entry's own copy: the map's key is this string
	value     []byte // Badger's committed value, when writers is 0
	expiresAt uint64 // Badger's expiry for it: Unix seconds, 0 for never
	// writers counts the writes to the key under way, which hide its
	// value; overlapped records that two of them were under way at once.
	writers    int
	overlapped bool
}

func (e *cached) size() int { return len(e.key) + cap(e.value) + entryOverhead }

// newCache returns a cache of about size bytes, or nil (no cache, every
// method a no-op) for a size of zero or less.
func newCache(size int) *cache {
	if size <= 0 {
		return nil
	}
	c := &cache{
		shards: make([]cacheShard, cacheShards),
		mask:   cacheShards - 1,
		seed:   maphash.MakeSeed(),
		limit:  size / cacheShards,
	}
	for i := range c.shards {
		c.shards[i].m = make(map[string]*cached)
	}
	return c
}

func (c *cache) shard(key string) *cacheShard {
	return &c.shards[maphash.String(c.seed, key)&c.mask]
}

// get appends key's value to dst if the cache holds it live at now (Unix
// seconds). On a miss it returns the generation to hand to fill.
func (c *cache) get(key string, dst []byte, now uint64) (out []byte, hit bool, gen uint64) {
	if c == nil {
		return dst, false, 0
	}
	sh := c.shard(key)
	sh.mu.RLock()
	defer sh.mu.RUnlock()
	if c.dropping.Load() {
		return dst, false, sh.gen
	}
	// Badger's rule for expiry: an entry is gone at its second, not after.
	if e := sh.m[key]; e != nil && e.writers == 0 && (e.expiresAt == 0 || now < e.expiresAt) {
		return append(dst, e.value...), true, 0
	}
	return dst, false, sh.gen
}

// fill records what a read of Badger found for key after get missed with
// gen: value and its expiry, or, with found false, that Badger has no live
// entry. It does nothing if a write to the shard started or ended since.
func (c *cache) fill(key string, gen uint64, found bool, value []byte, expiresAt uint64) {
	if c == nil || (found && !c.fits(key, value)) {
		return
	}
	sh := c.shard(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if sh.gen != gen || c.dropping.Load() {
		return
	}
	e := sh.m[key]
	switch {
	case e != nil && e.writers > 0:
		// A write began before get and is still under way: what it
		// commits may already be newer than what was read.
	case !found:
		if e != nil {
			sh.remove(e)
		}
	default:
		if e == nil {
			e = sh.add(key)
		}
		sh.store(e, value, expiresAt)
		sh.evict(c.limit, e)
	}
}

// beginWrite hides key's cached value until endWrite, which the caller
// must call with what it returns once Badger's commit has returned.
func (c *cache) beginWrite(key string) *cached { return c.beginSwap(key, nil) }

// beginSwap is beginWrite for a Swap, w (nil for any other write): it also
// records in w, as a hint for the committer's leader, whether key holds
// w.old as far as the cache knows. The cache knows only when no write to
// key is under way and the key has an entry, which then holds Badger's
// committed value.
func (c *cache) beginSwap(key string, w *pendingWrite) *cached {
	if c == nil {
		return nil
	}
	sh := c.shard(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	sh.gen++
	e := sh.m[key]
	if e == nil {
		e = sh.add(key)
	} else if w != nil && e.writers == 0 && !c.dropping.Load() {
		w.hintKnown = true
		w.hintHeld = w.old == nil || bytes.Equal(e.value, w.old)
		w.hintExp = e.expiresAt
	}
	e.writers++
	if e.writers > 1 {
		e.overlapped = true
	}
	if w != nil {
		w.entry = e
	}
	return e
}

// hint reports whether the Swap w is to be written as the cache knew it
// when w began, if that still holds: no other write to its key has begun
// since (they would all have queued behind w) and no clear has run. The
// leader calls it when no earlier write of its batch is to the key.
func (c *cache) hint(w *pendingWrite) (write, ok bool) {
	if c == nil || !w.hintKnown {
		return false, false
	}
	sh := c.shard(w.entry.key)
	sh.mu.RLock()
	defer sh.mu.RUnlock()
	if w.entry.overlapped || c.dropping.Load() {
		return false, false
	}
	// The cached value may have expired since: Badger's rule, gone at its
	// second.
	live := w.hintExp == 0 || uint64(time.Now().Unix()) < w.hintExp
	if w.old == nil {
		return !live, true
	}
	return live && w.hintHeld, true
}

// endSwap ends a Swap begun by beginSwap. A Swap that wrote ends as a Set
// or Delete does; one whose condition failed changed nothing in Badger, so
// if the entry held Badger's value when it began (hadValue) and no other
// write overlapped it, the entry keeps that value.
func (c *cache) endSwap(e *cached, committed, wrote, hadValue bool, value []byte, expiresAt uint64) {
	if c == nil {
		return
	}
	if !committed || wrote || !hadValue {
		c.endWrite(e, committed && wrote, value != nil, value, expiresAt)
		return
	}
	sh := c.shard(e.key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	sh.gen++
	e.writers--
	if e.writers > 0 {
		return
	}
	keep := !e.overlapped && !c.dropping.Load()
	e.overlapped = false
	if !keep {
		sh.remove(e)
	}
}

// endWrite ends the write beginWrite began on e. If Badger committed and
// the key now holds value with expiresAt (Set, Touch), and no other write
// to the key overlapped this one, the value is cached; otherwise the key's
// entry goes once no write to it is under way.
func (c *cache) endWrite(e *cached, committed, holds bool, value []byte, expiresAt uint64) {
	if c == nil {
		return
	}
	sh := c.shard(e.key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	sh.gen++
	e.writers--
	if e.writers > 0 {
		return // the last of the overlapping writes decides
	}
	keep := committed && holds && !e.overlapped && !c.dropping.Load() && c.fits(e.key, value)
	e.overlapped = false
	if !keep {
		sh.remove(e)
		return
	}
	sh.store(e, value, expiresAt)
	sh.evict(c.limit, e)
}

// fits reports whether an entry is small enough to cache: a quarter of a
// shard at most, so that one large session cannot empty a shard.
func (c *cache) fits(key string, value []byte) bool {
	return len(key)+len(value)+entryOverhead <= c.limit/4
}

// beginDrop and endDrop bracket Badger's DropAll.
func (c *cache) beginDrop() {
	if c != nil {
		c.dropping.Store(true)
		c.clear()
	}
}

// endDrop clears again, for what a write that committed before the drop
// stored since beginDrop, and then lets the cache serve again.
func (c *cache) endDrop() {
	if c != nil {
		c.clear()
		c.dropping.Store(false)
	}
}

// clear drops every entry. Writes under way when it runs store nothing when
// they end: for DeleteAll, Badger may have dropped what they wrote, and for
// ClearCache, they may have been written through DB.
func (c *cache) clear() {
	if c == nil {
		return
	}
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.Lock()
		sh.gen++
		for _, e := range sh.m {
			if e.writers > 0 {
				e.overlapped = true
				continue
			}
			sh.remove(e)
		}
		sh.mu.Unlock()
	}
}

// store copies value into e, reusing its buffer when it fits without
// wasting more than half of it: a session saved again with the same fields
// keeps its size, so a busy key allocates nothing.
func (sh *cacheShard) store(e *cached, value []byte, expiresAt uint64) {
	before := e.size()
	if cap(e.value) >= len(value) && cap(e.value) <= 2*len(value) {
		e.value = append(e.value[:0], value...)
	} else {
		e.value = append([]byte(nil), value...)
	}
	e.expiresAt = expiresAt
	sh.bytes += e.size() - before
}

// add makes key an entry with no value yet. The entry keeps its own copy
// of key: callers' keys may be views of buffers they reuse.
func (sh *cacheShard) add(key string) *cached {
	e := &cached{key: strings.Clone(key)}
	sh.m[e.key] = e
	sh.bytes += e.size()
	return e
}

func (sh *cacheShard) remove(e *cached) {
	if sh.m[e.key] == e {
		delete(sh.m, e.key)
		sh.bytes -= e.size()
	}
}

// evict removes entries until the shard is within limit, sparing keep and
// entries being written. Go's randomised map order makes this random
// eviction: no bookkeeping on the read path, and for sessions, whose next
// request is as likely to come from any of them, about as good as LRU.
func (sh *cacheShard) evict(limit int, keep *cached) {
	if sh.bytes <= limit {
		return
	}
	for _, e := range sh.m {
		if e != keep && e.writers == 0 {
			sh.remove(e)
			if sh.bytes <= limit*7/8 {
				return
			}
		}
	}
}
