package badgerstore

import (
	"bytes"
	"hash/maphash"
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
	mu sync.RWMutex
	// m's keys are views of the entries' own copies (cached.key).
	m     map[string]*cached
	gen   uint64 // moved by the start and end of every write, and by clear
	bytes int
}

const (
	cacheLine   = 64
	cacheShards = 64

	// entryOverhead approximates what an entry costs beyond its own
	// allocation (cached.size): its map slot, the map's spare slots, and
	// allocation slack.
	entryOverhead = 96
)

// cached is one key's entry: a header at the start of one allocation that
// goes on with the key's bytes and then room for its value. The header
// holds no Go pointer and the allocation is made as a []byte, so the
// garbage collector marks an entry without scanning it: one object per
// cached session instead of three (a struct with two pointers, the key,
// the value). At a million sessions a collection that chased three
// pointers per session took a tenth of the server's time; the map's own
// slots, scanned in sequence, are cheap beside that.
//
// All fields are guarded by the shard's lock. An entry in a shard's map
// with no write under way holds Badger's committed value: one left
// without a value when its last write ends is removed then. An entry
// moves to a new allocation when a value outgrows its room (cacheShard.
// store); only the shard's map and the writes under way on it (which keep
// it from moving) refer to one.
type cached struct {
	expiresAt uint64 // Badger's expiry for the value: Unix seconds, 0 for never
	klen      uint32
	vlen      uint32 // the value's length, within vroom
	vroom     uint32
	// writers counts the writes to the key under way, which hide its
	// value; overlapped records that two of them were under way at once.
	writers    int32
	overlapped bool
}

// cachedHeader is where an entry's key starts in its allocation.
const cachedHeader = unsafe.Sizeof(cached{})

// newCached makes an entry for key with room for a value of vroom bytes.
func newCached(key string, vroom int) *cached {
	buf := make([]byte, int(cachedHeader)+len(key)+vroom)
	copy(buf[cachedHeader:], key)
	e := (*cached)(unsafe.Pointer(unsafe.SliceData(buf)))
	e.klen, e.vroom = uint32(len(key)), uint32(vroom)
	return e
}

// key is the entry's own copy of its key (never empty: the Store refuses
// empty keys).
func (e *cached) key() string {
	return unsafe.String((*byte)(unsafe.Add(unsafe.Pointer(e), cachedHeader)), int(e.klen))
}

// room is the space for the entry's value, after its key.
func (e *cached) room() []byte {
	if e.vroom == 0 {
		return nil // no pointer one past the allocation's end
	}
	return unsafe.Slice((*byte)(unsafe.Add(unsafe.Pointer(e), cachedHeader+uintptr(e.klen))), int(e.vroom))
}

// value is the cached value, valid under the shard's lock only: store
// rewrites it in place.
func (e *cached) value() []byte { return e.room()[:e.vlen] }

// setValue copies value into the entry's room, which must hold it.
func (e *cached) setValue(value []byte) { e.vlen = uint32(copy(e.room(), value)) }

func (e *cached) size() int { return int(cachedHeader) + int(e.klen) + int(e.vroom) + entryOverhead }

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
		return append(dst, e.value()...), true, 0
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
			e = sh.add(key, len(value))
		}
		e = sh.store(e, value, expiresAt)
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
		room := 0
		if w != nil {
			room = len(w.value)
		}
		e = sh.add(key, room)
	} else if w != nil && e.writers == 0 && !c.dropping.Load() {
		w.hintKnown = true
		w.hintHeld = w.old == nil || bytes.Equal(e.value(), w.old)
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
	sh := c.shard(w.entry.key())
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
	sh := c.shard(e.key())
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
	sh := c.shard(e.key())
	sh.mu.Lock()
	defer sh.mu.Unlock()
	sh.gen++
	e.writers--
	if e.writers > 0 {
		return // the last of the overlapping writes decides
	}
	keep := committed && holds && !e.overlapped && !c.dropping.Load() && c.fits(e.key(), value)
	e.overlapped = false
	if !keep {
		sh.remove(e)
		return
	}
	e = sh.store(e, value, expiresAt)
	sh.evict(c.limit, e)
}

// fits reports whether an entry is small enough to cache: a quarter of a
// shard at most, so that one large session cannot empty a shard.
func (c *cache) fits(key string, value []byte) bool {
	return int(cachedHeader)+len(key)+len(value)+entryOverhead <= c.limit/4
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

// store puts value into e, in place when it fits without wasting more
// than half of e's room: a session saved again with the same fields keeps
// its size, so a busy key allocates nothing. Otherwise the entry moves to
// an allocation of the right size, which takes e's place in the map; store
// returns the entry the map now holds. e has no write under way, so only
// the map and the caller refer to it.
func (sh *cacheShard) store(e *cached, value []byte, expiresAt uint64) *cached {
	before := e.size()
	if room := int(e.vroom); room < len(value) || room > 2*len(value) {
		moved := newCached(e.key(), len(value))
		moved.writers, moved.overlapped = e.writers, e.overlapped
		// Assigning to a key already in the map also replaces the map's
		// copy of the key with the one given: a view of the new
		// allocation, so the old one is not kept alive by it.
		sh.m[moved.key()] = moved
		e = moved
	}
	e.setValue(value)
	e.expiresAt = expiresAt
	sh.bytes += e.size() - before
	return e
}

// add makes key an entry with no value yet, and room for one of vroom
// bytes. The entry keeps its own copy of key: callers' keys may be views
// of buffers they reuse.
func (sh *cacheShard) add(key string, vroom int) *cached {
	e := newCached(key, vroom)
	sh.m[e.key()] = e
	sh.bytes += e.size()
	return e
}

func (sh *cacheShard) remove(e *cached) {
	if k := e.key(); sh.m[k] == e {
		delete(sh.m, k)
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
