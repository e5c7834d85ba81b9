// Package badgerstore is a store.Store that keeps sessions in a Badger database
// (github.com/dgraph-io/badger/v4), on disk or in memory.
//
// # Expiry
//
// Entries expire through Badger's own TTLs, which have whole-second
// resolution. A TTL is rounded up to the next whole second, so an entry may
// live up to a second longer than asked, never less; ExpiresIn reports the
// rounded expiry. Touch has to rewrite the value to change its expiry,
// because Badger stores the expiry with the value: it saves the caller a
// round trip of the value, not the write.
//
// # Cache
//
// The Store keeps recently used sessions in memory in front of Badger
// (Options.CacheSize, 8 MiB by default). A Badger read costs several
// microseconds even when the entry sits in a memtable, because Badger v4
// goes on to search every level of its tree holding an older version of the
// key, and a session rewritten on every change has older versions on many
// levels: the cache spares those reads for the sessions in use
// (docs/PERFORMANCE.md has the measurements).
//
// The cache holds only what Badger has committed and is filled so that no
// write can be overtaken: a write hides its key's cached value until its
// commit returns, overlapping writes to one key cache nothing, and a read
// caches what it found only if no write started or ended meanwhile. Badger
// is the truth; the cache never answers with a value older than a write
// through the Store that returned before the read began. Writes made
// through DB are not seen: call ClearCache after them.
//
// # Batched commits
//
// Concurrent Sets and Deletes are committed together. A write that arrives
// while another is being committed queues, and when that commit returns,
// everything queued goes to Badger in one transaction (or several, past
// Badger's limits on a transaction's size). Badger's work per transaction,
// a commit timestamp and a trip through its writer and back, costs more
// than writing a session's entry, so on a busy server batching saves most
// of it; a lone write commits at once, as it would without. Each write
// still returns only once Badger has committed it, and writes to one key
// take effect in the order they arrived (docs/PERFORMANCE.md has what it
// saves).
//
// # Swap
//
// Swap queues with Sets and Deletes and is decided by the writer that
// commits its batch, in queue order: against the earlier writes to its key
// in the same batch, if any, or else against what the key held when the
// Swap began, as the cache knew it, provided no other write to the key has
// begun since; or else against Badger. Batches are decided and committed
// one at a time, and DeleteAll waits for none to be under way, so no write
// through the Store comes between a Swap's comparison and its write. Touch
// writes outside the batches, in a Badger transaction that retries if a
// batch wrote its key after it read it. A session saved after it was
// loaded thus costs what a Set costs: no Badger read, and the same
// allocations. As with the cache, writes made through DB are not ordered
// with Swaps.
//
// # Sets
//
// Each member of a set is an entry of its own, with an empty value and the
// member's expiry as Badger's: adding one writes one small entry however
// large the set, Members lists the set by a prefix scan, and expired
// members are dropped with expired values. Member keys begin with the byte
// 0xff followed by 0x01; a value key beginning with 0xff (which no UTF-8
// string does) is stored behind the prefix 0xff 0x00, so that values and
// sets never share a key. Every other value key is stored as it is, as
// before sets existed. AddMember reads the member's expiry to keep the later
// one, and is decided like a Swap, in queue order.
//
// # Scan
//
// Scan walks Badger's keys by range: the keys under the prefix as they
// are, and the escaped ones behind 0xff 0x00, never the set members behind
// 0xff 0x01. It reads in chunks of at most 256 keys or a megabyte, each in
// a short read transaction of its own, and calls fn for a chunk's keys
// only once its transaction has ended and the Store's lock is let go: fn
// may Delete the key it is shown, write others, or close the Store, and a
// long scan keeps Badger from discarding no more than one chunk's worth
// of versions. Each chunk starts at the first key the last did not take,
// so a key live for the whole scan is visited exactly once; one written
// or deleted meanwhile is visited or not depending on whether its chunk
// was read before or after.
// Scan reads Badger, not the cache (which holds only what Badger has
// committed): a write through the Store has been committed when it
// returns, so a scan started after it sees it.
//
// # Durability
//
// Without SyncWrites, Set returns once the write is in Badger's memory-mapped
// log, which is in the operating system's page cache: it survives the
// process crashing but not the machine losing power. SyncWrites adds an
// fsync per write.
//
// # Memory
//
// Open sizes Badger for many small values rather than using its defaults,
// and keeps values over 512 bytes in the value log, where a background loop
// reclaims the space of expired and overwritten sessions: about a third of
// the resident memory of Badger's defaults for 200,000 sessions of 1 KB
// (BenchmarkFootprint200k1KB; docs/PERFORMANCE.md has the table). Badger's
// defaults spend the difference on five 64 MB memtables, a 256 MB block
// cache and table builders that copy every value through memory on each
// flush and compaction, since Badger v4 keeps values up to 1 MB in its LSM
// tree.
//
// Options.Tune can change any of these settings; DB gives access to the
// database itself.
//
// # Disk
//
// Expired and overwritten sessions are reclaimed in two ways. Values kept
// in the LSM tree go when compaction rewrites their tables; values in the
// value log go when the GC loop rewrites a log file whose garbage exceeds
// GCDiscardRatio. Both only learn that a value expired once compaction has
// dropped its key, and compaction runs as memtables fill: with the 8 MB
// memtables here that is every few hundred thousand writes. So disk use
// follows what was written recently, not what is live: a quiet store keeps
// its expired data until writes resume, and the value log file being
// written is never collected. TestDiskBoundedOverExpiryCycles shows the
// size stays bounded over repeated create/expire cycles.
//
// The Store is therefore no store.Purger: it has no way to remove expired
// entries now that is worth its cost. They are invisible from the moment
// they expire (Get, Members and Scan leave them out), but Badger drops
// them only when compaction rewrites the tables holding them, and never
// from the memtables not yet flushed; Badger's Flatten forces compaction
// of every level, which rewrites the whole tree, pauses the background
// compactions meanwhile, is meant to run without writes, and still leaves
// the memtables alone. A PurgeExpired that called it would be slow, and
// would not remove what it claims to. A program whose store is quiet
// enough can call DB().Flatten and DB().RunValueLogGC itself.
//
// # Full disk
//
// Badger writes its write-ahead log, value log and tables through memory
// maps of files it creates sparse (ftruncated to size, blocks allocated
// only as pages are first written). When the filesystem has no block for a
// page, the kernel raises SIGBUS, which the Go runtime cannot turn into an
// error: the process dies, and dies again on restart, when Badger maps its
// memtable files again (on tmpfs even reading a hole allocates). So the
// Store keeps Options.MinFreeSpace free (four memtables, 32 MiB, by
// default): a write that would eat into it returns ErrDiskFull and writes
// nothing, reads go on, and writes work again as soon as space is freed,
// since a refusing Store asks the filesystem again on every write. The
// value log GC waits for room to copy a file's live data, and Open refuses
// a database whose filesystem lacks the reserve, with ErrDiskFull, rather
// than crash. The reserve is for Badger's own flushes and compactions; a
// process other than this one filling the disk to the last block can still
// starve them. TestDiskFull checks all of this on a 64 MB tmpfs (as root).
//
// # Race detector
//
// Badger v4.9.6 reads a memtable's maximum version during value-log GC
// while its writer updates it, which -race reports when GC and writes run
// at once. It is harmless on 64-bit machines (a stale version only makes GC
// keep more); tests under -race run the collector between writes.
//
// # In memory
//
// With InMemory there is no value log, so every value lives in the LSM tree
// and Set refuses values of 1 MiB or more with ErrValueTooLarge. Nothing
// survives Close.
package badgerstore
