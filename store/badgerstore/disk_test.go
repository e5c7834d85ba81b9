//go:build unix

package badgerstore

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	bdg "github.com/dgraph-io/badger/v4"

	"github.com/kvsession/kvsession/internal/race"
	"github.com/kvsession/kvsession/store"
)

// TestDiskBoundedOverExpiryCycles writes a batch of short-lived sessions,
// lets it expire, and repeats: the directory must stay within a small
// multiple of one batch, not grow with the number of batches.
//
// Badger reclaims expired data in two ways, and each subtest covers one:
//
//   - values under ValueThreshold live in the LSM tree, beside their keys,
//     and only compaction drops them: a flushed memtable is merged into the
//     last level, and expired entries are left out;
//   - larger values go to the value log and the tree keeps pointers to
//     them. Compaction dropping an expired pointer records the space as
//     discardable, and the store's GC loop (RunValueLogGC) rewrites a log
//     file once half of it is, then deletes it. Nothing else finds garbage
//     in the value log: Badger v4 has no sampling.
//
// So reclamation follows memtable turnover, and garbage whose pointers are
// still in a memtable waits for it to fill. The test shrinks the memtable
// (8 MB in this package) and the value log files (64 MB) to a scale model,
// so that a memtable turns over within a batch and a log file fills in a
// fraction of one, and the mechanism runs through several times in seconds.
// With the package's sizes the same holds at larger scale: expired values
// wait for about two memtables' worth of writes (some 150,000), plus the
// log file being written, which is never collected.
//
// Keys are random, like the hashed ids the backend stores under: every
// flushed table then overlaps the whole last level, so each compaction
// rewrites it and leaves out what has expired.
func TestDiskBoundedOverExpiryCycles(t *testing.T) {
	for _, tc := range []struct {
		name   string
		n      int // sessions per cycle
		size   int // bytes per value
		inVlog bool
	}{
		{"small values in the LSM tree", 12000, 200, false},
		{"large values in the value log", 4000, 1024, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			testDiskBounded(t, tc.n, tc.size, tc.inVlog)
		})
	}
}

func testDiskBounded(t *testing.T, n, size int, inVlog bool) {
	const (
		cycles       = 6
		memTableSize = 256 << 10
		vlogFileSize = 1 << 20 // Badger's minimum
		keepers      = 100     // long-lived sessions the GC must carry along
		ttl          = time.Second
	)
	// The loop collects every 50ms while the test writes, as in production
	// but faster. Under the race detector the test runs the loop's body
	// itself between writes instead: a value log rewrite in Badger v4.9.6
	// starts with DB.MaxVersion, which reads the memtable's maxVersion while
	// Badger's write goroutine updates it without a lock (memtable.go,
	// memTable.Put). The detector reports that race in Badger's code; it
	// cannot tear a 64-bit word, and a stale value only makes the rewrite
	// keep more versions.
	gcInterval := 50 * time.Millisecond
	if race.Enabled {
		gcInterval = -1
	}
	var threshold int64
	dir := t.TempDir()
	s := openT(t, Options{
		Dir:        dir,
		GCInterval: gcInterval,
		Tune: func(o *bdg.Options) {
			o.MemTableSize = memTableSize
			o.ValueLogFileSize = vlogFileSize
			threshold = o.ValueThreshold
		},
	})
	if inVlog != (int64(size) > threshold) {
		t.Fatalf("a %d-byte value with the package's ValueThreshold of %d: want it in the value log: %v; adjust the test's sizes", size, threshold, inVlog)
	}
	ctx := t.Context()

	// keyLen is what every key costs; cycleBytes is one cycle's live data.
	keyLen := len(randomKey())
	cycleBytes := int64(n * (keyLen + size))
	keeperBytes := int64(keepers * (keyLen + size))
	// Two cycles' worth covers the expired cycle whose memtable has not been
	// flushed yet; then the memtables themselves, the value log file being
	// written and the one being rewritten, and Badger's small files
	// (MANIFEST, DISCARD, KEYREGISTRY).
	bound := 2*cycleBytes + keeperBytes + 2*memTableSize + 2*vlogFileSize + 256<<10
	if written := cycles * cycleBytes; written < bound*3/2 {
		t.Fatalf("test mis-sized: %d cycles write %d bytes, too little against the bound of %d to show that space is reclaimed", cycles, written, bound)
	}

	keeperKeys := make([]string, keepers)
	keeperValues := make([][]byte, keepers)
	for i := range keepers {
		keeperKeys[i] = randomKey()
		keeperValues[i] = randomBytes(size)
		if err := s.Set(ctx, keeperKeys[i], keeperValues[i], time.Hour); err != nil {
			t.Fatal(err)
		}
	}

	var expired []string // a few keys of each cycle, to check they are gone
	for c := range cycles {
		begin := time.Now()
		// Several writers, as a server has: Badger commits their
		// transactions together, which is several times faster than one
		// at a time, the race detector's slowdown included.
		keys, err := writeExpiring(ctx, s, n, size, ttl)
		if err != nil {
			t.Fatalf("cycle %d: Set: %v", c, err)
		}
		for i := 0; i < len(keys); i += 1000 {
			expired = append(expired, keys[i])
		}
		last := time.Now()
		// Badger expires in whole seconds, rounding the TTL up: the last
		// write of the cycle is gone at expiresAt(last, ttl).
		time.Sleep(time.Until(time.Unix(int64(expiresAt(last, ttl)), 0)) + 10*time.Millisecond)

		// Compaction and the GC loop work in the background; give them a
		// moment to catch up after the writes stop.
		var sz dirSize
		deadline := time.Now().Add(5 * time.Second)
		for {
			if race.Enabled {
				s.collect()
			}
			sz = measureDir(t, dir)
			if sz.total <= bound || time.Now().After(deadline) {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		t.Logf("cycle %d (%v): dir %d bytes (sst %d, vlog %d, mem %d), bound %d, written so far %d",
			c, last.Sub(begin).Round(time.Millisecond), sz.total, sz.sst, sz.vlog, sz.mem, bound, int64(c+1)*cycleBytes)
		if sz.total > bound {
			t.Fatalf("cycle %d: the directory holds %d bytes after its sessions expired (sst %d, vlog %d, mem %d), over the bound of %d: %d cycles of %d bytes each written so far",
				c, sz.total, sz.sst, sz.vlog, sz.mem, bound, c+1, cycleBytes)
		}
		if c == 0 {
			// Each subtest is about one of Badger's two places: make sure
			// the values went there. Value log files are numbered in order,
			// so the highest number shows how many were written, whatever
			// the GC has deleted since.
			files := maxVlogFile(t, dir)
			if inVlog && files < n*size/vlogFileSize {
				t.Fatalf("large values did not go to the value log: %d files of %d bytes written for %d bytes of values", files, vlogFileSize, n*size)
			}
			if !inVlog && (files > 1 || sz.vlog > 64<<10) {
				t.Fatalf("small values reached the value log: %d files, %d bytes", files, sz.vlog)
			}
		}
	}

	// What the GC moved, it moved whole; what expired stays gone.
	for i, k := range keeperKeys {
		v, err := s.Get(ctx, k)
		if err != nil || !bytes.Equal(v, keeperValues[i]) {
			t.Fatalf("long-lived key %d after %d cycles: %d bytes, %v; want its value", i, cycles, len(v), err)
		}
	}
	for _, k := range expired {
		if _, err := s.Get(ctx, k); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("expired key %s: %v, want ErrNotFound", k, err)
		}
	}
}

// writeExpiring writes n random values of size bytes under random keys
// with ttl, from four goroutines, and returns the keys.
func writeExpiring(ctx context.Context, s *Store, n, size int, ttl time.Duration) ([]string, error) {
	const writers = 4
	keys := make([]string, n)
	errs := make(chan error, writers)
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			value := make([]byte, size)
			for i := w; i < n; i += writers {
				rand.Read(value)
				keys[i] = randomKey()
				if err := s.Set(ctx, keys[i], value, ttl); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	return keys, <-errs
}

// randomKey is shaped like the backend's store keys: base64url of 32 random
// bytes, as SHA-256 of a session id is.
func randomKey() string { return base64.RawURLEncoding.EncodeToString(randomBytes(32)) }

func randomBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

// dirSize is a Badger directory's disk usage, by kind of file.
type dirSize struct{ total, sst, vlog, mem int64 }

// measureDir adds up the blocks the directory's files occupy, as du does.
// Their apparent sizes would mislead: Badger creates memtable logs and value
// log files at twice their capacity and fills them through mmap, so they
// are sparse until written.
func measureDir(t *testing.T, dir string) dirSize {
	t.Helper()
	var d dirSize
	err := filepath.WalkDir(dir, func(path string, e fs.DirEntry, err error) error {
		if err != nil {
			// Badger deletes files while we walk.
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if e.IsDir() {
			return nil
		}
		info, err := e.Info()
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		st, ok := info.Sys().(*syscall.Stat_t)
		if !ok {
			return fmt.Errorf("%s: no stat_t", path)
		}
		used := int64(st.Blocks) * 512
		d.total += used
		switch filepath.Ext(path) {
		case ".sst":
			d.sst += used
		case ".vlog":
			d.vlog += used
		case ".mem":
			d.mem += used
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// maxVlogFile returns the highest value log file number in dir.
func maxVlogFile(t *testing.T, dir string) int {
	t.Helper()
	matches, err := filepath.Glob(filepath.Join(dir, "*.vlog"))
	if err != nil {
		t.Fatal(err)
	}
	most := 0
	for _, m := range matches {
		var n int
		if _, err := fmt.Sscanf(strings.TrimSuffix(filepath.Base(m), ".vlog"), "%d", &n); err == nil && n > most {
			most = n
		}
	}
	return most
}
