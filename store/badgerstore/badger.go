package badgerstore

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	bdg "github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"

	"github.com/kvsession/kvsession/store"
)

// Options configures a Store.
type Options struct {
	// Dir is the directory the database lives in; it is created if missing.
	// Required unless InMemory is set, and must be empty if it is.
	Dir string

	// InMemory keeps everything in memory: nothing is written to disk and
	// nothing survives Close. Mostly useful in tests.
	InMemory bool

	// SyncWrites makes every write wait for an fsync. Off (the default), a
	// write has reached the operating system once Set returns, through
	// Badger's memory-mapped write-ahead log, so it survives the process
	// crashing but not the machine losing power. On, it survives power loss
	// too, at the cost of a disk flush per write: many times slower on most
	// disks.
	SyncWrites bool

	// GCInterval is how often the value log is garbage collected. Default
	// five minutes; a negative interval disables the loop, for programs that
	// run DB().RunValueLogGC themselves.
	GCInterval time.Duration

	// GCDiscardRatio is the share of a value log file that must be garbage
	// before the collector rewrites it, in (0, 1). Default 0.5, which keeps
	// the write amplification of collection at about two.
	GCDiscardRatio float64

	// Logger receives Badger's log output. By default warnings and errors go
	// to standard error and Badger's chatty informational messages are
	// dropped.
	Logger bdg.Logger

	// CacheSize is how many bytes of recently used sessions (keys and
	// values, plus about a hundred bytes each) are kept in this process in
	// front of Badger, so that reading one costs a map lookup instead of a
	// search through Badger's tree. Only what Badger has committed is
	// cached. Default 8 MiB, which holds every session of a server with
	// tens of thousands of small ones; the process's resident memory grows
	// by up to about twice the size, counting the garbage collector's
	// headroom. A million small sessions take about 256 MiB: in the bench
	// module that keeps /incr at about three quarters of its figure at
	// 10,000 sessions, and reads at theirs, in 700 to 900 MiB of RSS,
	// where the default gives under half. Negative turns the cache off; a
	// positive size must be at least 64 KiB, and no session over a
	// quarter of a 64th of it is cached.
	//
	// With the cache on, write sessions only through the Store, or call
	// ClearCache after writing through DB (a restore, say): the cache does
	// not see such writes, and would go on serving the values they
	// replaced.
	CacheSize int

	// MinFreeSpace is how many bytes the Store keeps free on the filesystem
	// of Dir (and of Badger's ValueDir, if Tune moves it): writes that
	// would leave less are refused with ErrDiskFull, and Open refuses a
	// database with less, instead of letting Badger fill the disk. Badger
	// writes through memory-mapped sparse files, and a write to one that
	// the filesystem cannot back kills the process with SIGBUS; its own
	// flushes and compactions need room to run in. The default, zero, is
	// four memtables' worth: 32 MiB with this package's sizing, which
	// covers flushing the memtables and compacting the first levels of a
	// database of up to a few hundred megabytes. Give more for a larger
	// one, whose compactions rewrite larger tables. Negative turns the
	// guard off.
	MinFreeSpace int64

	// Tune, if set, is called with the Badger options Open has settled on,
	// just before opening the database, and may change any of them. It is the
	// escape hatch for whatever this package does not expose.
	Tune func(*bdg.Options)
}

const (
	defaultGCInterval     = 5 * time.Minute
	defaultGCDiscardRatio = 0.5
	defaultCacheSize      = 8 << 20
	// minCacheSize lets each of the cache's 64 shards take a small session
	// (key and value up to 128 bytes; see cache.fits). Half of it would
	// take none.
	minCacheSize = 64 << 10

	// Touch reads and rewrites in one transaction, which Badger aborts with
	// ErrConflict if another transaction wrote the key meanwhile. Retrying
	// is right, since the conflicting write is newer; but a bound keeps a
	// key written in a tight loop elsewhere from pinning the caller.
	touchAttempts = 16
)

// ErrValueTooLarge is returned by Set, in InMemory mode only, for a value of
// 1 MiB or more (more precisely, of at least Badger's ValueThreshold). Badger
// has no value log in memory, so every value must fit in its LSM tree, and
// Badger v4 itself crashes on a value of exactly the threshold.
var ErrValueTooLarge = errors.New("badger store: value too large for an in-memory database")

// Store is a store.Store backed by a Badger database, sets and Swap
// included. Create it with Open; it is safe for concurrent use. It is a
// store.Appender and a store.Scanner, reports store.Traits (BorrowsKeys),
// and has Touch, Exists, ExpiresIn and DeleteAll for applications and
// tools. It is no store.Purger (see Disk in the package documentation).
type Store struct {
	db       *bdg.DB
	commits  committer
	guard    *diskGuard // nil in memory or with Options.MinFreeSpace negative
	vlogSize int64      // Badger's ValueLogFileSize
	cache    *cache     // nil when Options.CacheSize turned it off
	ratio    float64
	maxValue int // values must be shorter than this; 0 means no limit of ours

	// mu is held for reading by every operation and for writing by Close,
	// so that closing waits for operations in flight and no operation
	// reaches the database after it is closed: Badger's own closed checks
	// cover neither every method nor a call already under way.
	mu     sync.RWMutex
	closed bool

	// gcMu keeps DeleteAll and value-log GC apart: DropAll deletes value
	// log files without waiting for a GC pass that may be reading them.
	gcMu sync.Mutex

	closeOnce sync.Once
	stopGC    chan struct{} // closed by Close to stop the GC loop
	gcDone    chan struct{} // closed by the GC loop when it has returned
}

var _ interface {
	store.Store
	store.Appender
	store.Scanner
	store.TraitsReporter
} = (*Store)(nil)

// Traits reports that the store keeps no caller's key string: every call
// hands Badger a copy.
func (*Store) Traits() store.Traits { return store.Traits{BorrowsKeys: true} }

// Open opens (or creates) the database opts describes and starts its value
// log garbage collector. Call Close to stop it and flush the database.
func Open(opts Options) (*Store, error) {
	switch {
	case opts.InMemory && opts.Dir != "":
		return nil, errors.New("badger store: Dir must be empty with InMemory")
	case !opts.InMemory && opts.Dir == "":
		return nil, errors.New("badger store: Dir is required unless InMemory is set")
	}
	if opts.CacheSize > 0 && opts.CacheSize < minCacheSize {
		return nil, fmt.Errorf("badger store: CacheSize %d is too small to hold a session: use at least %d, or a negative size for no cache", opts.CacheSize, minCacheSize)
	}
	ratio := opts.GCDiscardRatio
	if ratio == 0 {
		ratio = defaultGCDiscardRatio
	}
	if ratio <= 0 || ratio >= 1 {
		return nil, fmt.Errorf("badger store: GCDiscardRatio %v is not in (0, 1)", ratio)
	}
	interval := opts.GCInterval
	if interval == 0 {
		interval = defaultGCInterval
	}

	bo := badgerOptions(opts.Dir).
		WithInMemory(opts.InMemory).
		WithSyncWrites(opts.SyncWrites)
	if opts.InMemory {
		// With no value log, Badger refuses values above the threshold, so
		// keep its default, the largest it allows: values under 1 MiB.
		bo = bo.WithValueThreshold(bdg.DefaultOptions("").ValueThreshold)
	}
	if opts.Logger != nil {
		bo = bo.WithLogger(opts.Logger)
	} else {
		bo = bo.WithLoggingLevel(bdg.WARNING)
	}
	if opts.Tune != nil {
		opts.Tune(&bo)
	}
	if bo.InMemory && bo.ValueThreshold < 1<<10 {
		// Badger v4 rejects in-memory values above the threshold and, for
		// values under 1 KB, panics while formatting that error.
		return nil, fmt.Errorf("badger store: InMemory needs a ValueThreshold of at least 1 KiB, not %d", bo.ValueThreshold)
	}
	var guard *diskGuard
	if !bo.InMemory && opts.MinFreeSpace >= 0 {
		reserve := uint64(opts.MinFreeSpace)
		if reserve == 0 {
			reserve = 4 * uint64(bo.MemTableSize)
		}
		dirs := []string{bo.Dir}
		if bo.ValueDir != bo.Dir {
			dirs = append(dirs, bo.ValueDir)
		}
		for _, d := range dirs {
			// Badger would create them; the guard needs them to ask.
			if err := os.MkdirAll(d, 0o700); err != nil {
				return nil, fmt.Errorf("badger store: %w", err)
			}
		}
		guard = newDiskGuard(reserve, dirs...)
		// Opening writes too: a fresh memtable file, and the flush of
		// those a crash left behind.
		if err := guard.room(0); err != nil {
			return nil, fmt.Errorf("badger store: not opening %s: %w", bo.Dir, err)
		}
	}
	db, err := bdg.Open(bo)
	if err != nil {
		return nil, fmt.Errorf("badger store: %w", err)
	}

	cacheSize := opts.CacheSize
	if cacheSize == 0 {
		cacheSize = defaultCacheSize
	}
	s := &Store{
		db:     db,
		cache:  newCache(cacheSize),
		ratio:  ratio,
		stopGC: make(chan struct{}),
		gcDone: make(chan struct{}),
	}
	s.commits = committer{db: db, cache: s.cache}
	s.guard, s.vlogSize = guard, bo.ValueLogFileSize
	if guard != nil {
		s.commits.guard = guard.admit
	}
	if bo.InMemory {
		s.maxValue = int(bo.ValueThreshold)
	}
	// An in-memory database has no value log to collect.
	if interval > 0 && !bo.InMemory {
		go s.gcLoop(interval)
	} else {
		close(s.gcDone)
	}
	return s, nil
}

// badgerOptions sizes Badger for what sessions are: many small values that
// are read back soon after they are written and then expire. Badger's
// defaults suit a large database and peak above 1 GB of resident memory for
// 200,000 one-kilobyte sessions; the package documentation has what these
// settings measure instead.
func badgerOptions(dir string) bdg.Options {
	return bdg.DefaultOptions(dir).
		// Values above half a kilobyte go to the value log, leaving the LSM
		// tree with keys and pointers. Badger v4 defaults to keeping values
		// up to 1 MB in the tree, where every flush and compaction copies
		// them through in-memory table builders: for session-sized values
		// that tripled the heap and halved write throughput. Values in the
		// log are reclaimed by the GC loop instead.
		WithValueThreshold(512).
		// Memtables are arenas of MemTableSize plus a batch allowance, and
		// Badger keeps up to NumMemtables of them (default 5 × 64 MB). With
		// only keys and pointers in them, two of 8 MB hold tens of thousands
		// of sessions each and still leave one to fill while the other is
		// flushed.
		WithMemTableSize(8 << 20).
		WithNumMemtables(2).
		WithNumLevelZeroTables(2).
		WithNumLevelZeroTablesStall(8).
		// Each compactor builds tables in memory; two is Badger's minimum
		// when compacting at all.
		WithNumCompactors(2).
		// Session values are small, often already encoded or random, and
		// compress poorly; without compression Badger reads blocks straight
		// from the memory-mapped tables, so small caches suffice.
		WithCompression(options.None).
		WithBlockCacheSize(8 << 20).
		WithIndexCacheSize(8 << 20).
		// Smaller value log files are garbage collected at a finer grain,
		// and a file is the most a single value can take.
		WithValueLogFileSize(64 << 20).
		// Nothing reads Badger's expvar metrics here, and they cost a map
		// update on every operation.
		WithMetricsEnabled(false)
}

// ErrNotFound from Badger's own errors.
func mapErr(err error) error {
	if errors.Is(err, bdg.ErrKeyNotFound) {
		return store.ErrNotFound
	}
	return err
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

// expiresAt converts a TTL into Badger's expiry, a Unix time in whole
// seconds. It rounds up: Badger's own Entry.WithTTL truncates, which would
// expire an entry up to a second early, and a session must never end before
// its TTL. Zero means no expiry, as in Badger.
func expiresAt(now time.Time, ttl time.Duration) uint64 {
	if ttl == 0 {
		return 0
	}
	t := now.Add(ttl)
	sec := t.Unix()
	if t.Nanosecond() > 0 {
		sec++
	}
	return uint64(sec)
}

// Get returns a copy of the value stored under key.
func (s *Store) Get(ctx context.Context, key string) ([]byte, error) {
	v, err := s.GetAppend(ctx, key, nil)
	if err == nil && v == nil {
		// An empty value round-trips as empty, not as "no value".
		v = []byte{}
	}
	return v, err
}

// GetAppend appends the value stored under key to dst.
func (s *Store) GetAppend(ctx context.Context, key string, dst []byte) ([]byte, error) {
	if err := check(ctx, key); err != nil {
		return dst, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return dst, store.ErrClosed
	}
	out, hit, gen := s.cache.get(key, dst, uint64(time.Now().Unix()))
	if hit {
		return out, nil
	}
	var exp uint64
	err := s.db.View(func(txn *bdg.Txn) error {
		item, err := txn.Get(valueKey(key))
		if err != nil {
			return err
		}
		exp = item.ExpiresAt()
		// The value Badger hands out is only valid inside the transaction.
		return item.Value(func(v []byte) error {
			out = append(dst, v...)
			return nil
		})
	})
	switch {
	case err == nil:
		s.cache.fill(key, gen, true, out[len(dst):], exp)
		return out, nil
	case errors.Is(err, bdg.ErrKeyNotFound):
		s.cache.fill(key, gen, false, nil, 0)
	}
	return dst, mapErr(err)
}

// Set stores value under key. A zero ttl means no expiry; a positive one is
// rounded up to whole seconds. Concurrent Sets and Deletes are committed to
// Badger together (see Batched commits in the package documentation); each
// returns once its write is committed.
func (s *Store) Set(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	if err := check(ctx, key); err != nil {
		return err
	}
	if ttl < 0 {
		return store.ErrInvalidTTL
	}
	if s.maxValue > 0 && len(value) >= s.maxValue {
		return ErrValueTooLarge
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return store.ErrClosed
	}
	// The write returns only once it is committed, and Badger has copied
	// the value into its log by then, so the caller may reuse value.
	return s.write(key, value, expiresAt(time.Now(), ttl), false)
}

// Swap stores value under key with ttl, as Set does, or deletes key if value
// is nil, but only if key holds old (nil: holds nothing). It reports whether
// it wrote.
//
// A Swap queues with the Sets and Deletes to be committed in a batch, and
// its condition is checked when its batch is committed, against what the
// key holds once every write queued before it has taken effect: no write
// through the Store can come between the check and the write. The value
// to compare with comes from the cache when it holds the key and nothing
// else was writing it when the Swap began, which is the common case of a
// session saved after it was loaded; otherwise from Badger.
func (s *Store) Swap(ctx context.Context, key string, old, value []byte, ttl time.Duration) (bool, error) {
	if err := check(ctx, key); err != nil {
		return false, err
	}
	if ttl < 0 {
		return false, store.ErrInvalidTTL
	}
	if s.maxValue > 0 && len(value) >= s.maxValue {
		return false, ErrValueTooLarge
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return false, store.ErrClosed
	}
	exp := expiresAt(time.Now(), ttl)
	if value == nil {
		exp = 0
	}
	w := pendingWrites.Get().(*pendingWrite)
	w.op, w.key, w.value, w.exp, w.old = opSwap, valueKey(key), value, exp, old
	e := s.cache.beginSwap(key, w)
	hadValue := w.hintKnown
	var (
		wrote, committed bool
	)
	// Deferred, as in write, so that a panic in Badger leaves the cache
	// consistent.
	defer func() { s.cache.endSwap(e, committed, wrote, hadValue, value, exp) }()
	wrote, err := s.commits.submit(w)
	committed = err == nil
	return wrote, err
}

// Delete removes key. Deleting a missing key is not an error.
func (s *Store) Delete(ctx context.Context, key string) error {
	if err := check(ctx, key); err != nil {
		return err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return store.ErrClosed
	}
	return s.write(key, nil, 0, true)
}

// write commits a Set (deleted false) or a Delete, with the cache told
// before and after.
func (s *Store) write(key string, value []byte, exp uint64, deleted bool) error {
	w := s.cache.beginWrite(key)
	committed := false
	// Deferred so that a panic in Badger, recovered by the caller, does not
	// leave the key marked as being written, never to be cached again; the
	// flag, so that it does not cache a value Badger may not hold.
	defer func() { s.cache.endWrite(w, committed, !deleted, value, exp) }()
	op := opSet
	if deleted {
		op = opDelete
	}
	err := s.commits.write(op, valueKey(key), value, exp)
	committed = err == nil
	return err
}

// Touch resets key's expiry to ttl from now (rounded up to whole seconds);
// a zero ttl makes the entry permanent.
//
// Badger cannot change an entry's expiry in place: Touch reads the value and
// writes it back with the new expiry in one transaction. It saves the caller
// a round trip of the value, not the write.
func (s *Store) Touch(ctx context.Context, key string, ttl time.Duration) error {
	if err := check(ctx, key); err != nil {
		return err
	}
	if ttl < 0 {
		return store.ErrInvalidTTL
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return store.ErrClosed
	}
	k := valueKey(key)
	var (
		err       error
		committed bool
		value     []byte // what the key holds once a Touch commits
		exp       uint64
	)
	w := s.cache.beginWrite(key)
	defer func() { s.cache.endWrite(w, committed, true, value, exp) }()
	// No batch decides a condition from a snapshot older than this
	// Touch's write.
	s.commits.busy.Lock()
	defer s.commits.busy.Unlock()
	for range touchAttempts {
		err = s.db.Update(func(txn *bdg.Txn) error {
			item, err := txn.Get(k)
			if err != nil {
				return err
			}
			if value, err = item.ValueCopy(nil); err != nil {
				return err
			}
			if err := s.guard.admit(len(k) + len(value) + entryHeader); err != nil {
				return err
			}
			e := bdg.NewEntry(k, value).WithMeta(item.UserMeta())
			exp = expiresAt(time.Now(), ttl)
			e.ExpiresAt = exp
			return txn.SetEntry(e)
		})
		if !errors.Is(err, bdg.ErrConflict) {
			committed = err == nil
			return mapErr(err)
		}
		if err := ctx.Err(); err != nil {
			return err
		}
	}
	return fmt.Errorf("badger store: Touch(%q): %w", key, err)
}

// Exists reports whether key holds a live entry, without reading its value.
func (s *Store) Exists(ctx context.Context, key string) (bool, error) {
	if _, err := s.item(ctx, key); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return false, nil
		}
		return false, err
	}
	return true, nil
}

// ExpiresIn reports how long key has left, or store.NoExpiry for an entry
// set with a zero TTL. Badger keeps expiry in whole seconds, so the answer
// is up to a second more than the TTL the entry was set with.
func (s *Store) ExpiresIn(ctx context.Context, key string) (time.Duration, error) {
	exp, err := s.item(ctx, key)
	if err != nil {
		return 0, err
	}
	if exp == 0 {
		return store.NoExpiry, nil
	}
	d := time.Until(time.Unix(int64(exp), 0))
	if d <= 0 {
		// Expired between Badger's check and ours.
		return 0, store.ErrNotFound
	}
	return d, nil
}

// item looks key up and returns its expiry.
func (s *Store) item(ctx context.Context, key string) (expiresAt uint64, err error) {
	if err := check(ctx, key); err != nil {
		return 0, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return 0, store.ErrClosed
	}
	err = s.db.View(func(txn *bdg.Txn) error {
		item, err := txn.Get(valueKey(key))
		if err != nil {
			return err
		}
		expiresAt = item.ExpiresAt()
		return nil
	})
	return expiresAt, mapErr(err)
}

// DeleteAll removes every entry, using Badger's DropAll: writes are blocked
// while it runs.
func (s *Store) DeleteAll(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return store.ErrClosed
	}
	s.gcMu.Lock()
	defer s.gcMu.Unlock()
	s.cache.beginDrop()
	defer s.cache.endDrop()
	// No batch may check a Swap's condition before the drop and write
	// after it.
	s.commits.busy.Lock()
	defer s.commits.busy.Unlock()
	return s.db.DropAll()
}

// DB returns the underlying Badger database, for what this package does not
// cover: backups, streaming, metrics. Do not close it; close the Store.
// After writing through it, call ClearCache (see Options.CacheSize). Set
// members, and values whose keys begin with 0xff, are under keys of the
// Store's own layout (see Sets in the package documentation); writes
// through DB are not ordered with Swap and AddMember.
func (s *Store) DB() *bdg.DB { return s.db }

// ClearCache drops every session the Store keeps in memory in front of
// Badger, so that the next read of each comes from Badger: call it after
// writing through DB.
func (s *Store) ClearCache() {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if !s.closed {
		s.cache.clear()
	}
}

// Close stops the garbage collector, waits for operations in flight, and
// closes the database, flushing it to disk. Later calls to any method return
// store.ErrClosed; calling Close again returns nil.
func (s *Store) Close() error {
	var err error
	s.closeOnce.Do(func() {
		close(s.stopGC)
		<-s.gcDone
		s.mu.Lock()
		defer s.mu.Unlock()
		s.closed = true
		s.cache = nil // nothing reads it once closed: give its memory back
		if cerr := s.db.Close(); cerr != nil {
			err = fmt.Errorf("badger store: %w", cerr)
		}
	})
	return err
}

func (s *Store) gcLoop(interval time.Duration) {
	defer close(s.gcDone)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-s.stopGC:
			return
		case <-t.C:
			s.collect()
		}
	}
}

// collect rewrites value log files until Badger finds none worth rewriting
// (ErrNoRewrite) or fails; one file per call is Badger's unit of work.
func (s *Store) collect() {
	for {
		select {
		case <-s.stopGC:
			return
		default:
		}
		// A rewrite copies what is live in a file, up to (1 - ratio) of
		// it, before it deletes the file.
		if s.guard.room(uint64(float64(s.vlogSize)*(1-s.ratio))) != nil {
			return
		}
		s.gcMu.Lock()
		err := s.db.RunValueLogGC(s.ratio)
		s.gcMu.Unlock()
		if err != nil {
			return
		}
	}
}
