package badgerstore

import (
	"errors"
	"fmt"
	"sync"
	"time"
)

// ErrDiskFull is returned (wrapped, with the numbers) by writes the Store
// refuses because the filesystem holding the database is nearly full, and
// by Open on such a filesystem. Nothing was written; the write may be
// retried once space is freed. Reads go on working. See Options.MinFreeSpace.
var ErrDiskFull = errors.New("badger store: too little free disk space to write safely")

// Why a guard. Badger writes its write-ahead log (the memtables' .mem
// files), its value log and its tables through memory maps of files it
// creates sparse: z.OpenMmapFile (ristretto/v2 z/file.go) ftruncates a new
// file to its full size, 2×MemTableSize for a memtable, 2×ValueLogFileSize
// for a value log file, the table's size for a table, and Badger then
// copies entries into the mapping (memtable.go, logFile.writeEntry;
// value.go, valueLog.write; table/table.go, CreateTable). The filesystem
// allocates a block only when a page of the mapping is first written; if
// it has none left, the kernel answers the page fault with SIGBUS, and the
// Go runtime turns a fault in Badger's goroutines into a fatal error:
// there is no error to return and nothing to recover. Opening the database
// bootstraps a fresh memtable file the same way, hence the crash loop on a
// full disk. debug.SetPanicOnFault does not help: it applies only to the
// goroutine that sets it, and the faults happen in Badger's own writer,
// flusher and compactor goroutines.
//
// Badger has no option to preallocate these files, and pre-creating them
// would break its own bookkeeping (it opens them O_EXCL, or replays any
// memtable file it finds). So the Store keeps the faults from happening:
// it refuses writes while the filesystem has less than a reserve free, so
// that Badger's background work (flushing memtables to tables, compaction,
// which writes new tables before deleting old ones) always finds its
// blocks, and it refuses to open a database without the reserve.

// guardRecheck bounds how long the guard trusts its estimate of free space
// (the last statfs less what it has admitted since) when that estimate is
// comfortably above the reserve. Closer to the reserve, it asks every time.
const guardRecheck = 50 * time.Millisecond

// diskGuard admits writes while the filesystems holding dirs (Badger's Dir
// and ValueDir) keep at least reserve bytes free. A nil guard admits
// everything.
type diskGuard struct {
	dirs      []string
	reserve   uint64
	freeSpace func(dir string) (uint64, error) // bytes available; statfs

	mu      sync.Mutex
	free    uint64 // the last answer of freeSpace, less what was admitted since
	checked time.Time
}

func newDiskGuard(reserve uint64, dirs ...string) *diskGuard {
	return &diskGuard{dirs: dirs, reserve: reserve, freeSpace: freeSpace}
}

// ask returns the least free space of the guard's filesystems.
func (g *diskGuard) ask() (uint64, error) {
	least := uint64(1<<64 - 1)
	for _, dir := range g.dirs {
		free, err := g.freeSpace(dir)
		if err != nil {
			return 0, err
		}
		least = min(least, free)
	}
	return least, nil
}

// admit reserves n bytes for a write, or returns ErrDiskFull if writing
// them would leave less than the reserve free.
func (g *diskGuard) admit(n int) error {
	return g.check(uint64(n), true)
}

// room reports, as admit does, whether n bytes could be written, without
// counting them as written: for work, such as value log GC, that frees
// space in the end but needs it first.
func (g *diskGuard) room(n uint64) error {
	return g.check(n, false)
}

func (g *diskGuard) check(n uint64, take bool) error {
	if g == nil {
		return nil
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	need := g.reserve + n
	now := time.Now()
	if g.free < need+g.reserve || now.Sub(g.checked) >= guardRecheck {
		free, err := g.ask()
		if err != nil {
			// Unable to tell: let Badger try, as it would without the
			// guard, rather than refuse every write.
			return nil
		}
		g.free, g.checked = free, now
	}
	if g.free < need {
		return fmt.Errorf("%w: %d bytes free on the filesystem of %s, and %d are kept free for Badger's own writes (Options.MinFreeSpace)",
			ErrDiskFull, g.free, g.dirs[0], g.reserve)
	}
	if take {
		g.free -= n
	}
	return nil
}
