// Command footprint measures the peak resident memory of a Badger-backed
// store while it takes a session-like load: n random values of a given size,
// each with a TTL, written by several goroutines and then read back.
//
// Peak RSS (VmHWM) is a property of the whole process, so each configuration
// is measured in a process of its own; BenchmarkFootprint200k1KB in the
// parent package runs this once per variant. It prints one line,
//
//	peak_rss_bytes=N rss_anon_bytes=N rss_file_bytes=N heap_sys_bytes=N seconds=F
//
// and exits non-zero on any error.
package main

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"log"
	"math/rand/v2"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	bdg "github.com/dgraph-io/badger/v4"

	"github.com/kvsession/kvsession/store/badgerstore"
)

func main() {
	var (
		variant = flag.String("variant", "tuned", `"tuned" (this package's options) or "default" (badgerstore.DefaultOptions)`)
		dir     = flag.String("dir", "", "database directory (required; should be empty)")
		n       = flag.Int("n", 200_000, "number of values")
		size    = flag.Int("size", 1024, "value size in bytes")
		ttl     = flag.Duration("ttl", time.Hour, "TTL of each value")
		workers = flag.Int("workers", 8, "concurrent writers, like concurrent requests")
	)
	flag.Parse()
	log.SetFlags(0)
	log.SetPrefix("footprint: ")
	if *dir == "" {
		log.Fatal("-dir is required")
	}

	opts := badgerstore.Options{Dir: *dir}
	switch *variant {
	case "tuned":
	case "default":
		opts.Tune = func(o *bdg.Options) {
			*o = bdg.DefaultOptions(*dir).WithLoggingLevel(bdg.WARNING)
		}
	default:
		log.Fatalf("unknown -variant %q", *variant)
	}

	start := time.Now()
	s, err := badgerstore.Open(opts)
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()

	// Workers take interleaved indexes so that keys arrive in random order,
	// as session IDs do.
	run := func(op func(rng *rand.Rand, i int) error) {
		var wg sync.WaitGroup
		errs := make(chan error, *workers)
		for w := range *workers {
			wg.Go(func() {
				rng := rand.New(rand.NewPCG(uint64(w), 42))
				for i := w; i < *n; i += *workers {
					if err := op(rng, i); err != nil {
						errs <- err
						return
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		if err := <-errs; err != nil {
			log.Fatal(err)
		}
	}
	run(func(rng *rand.Rand, i int) error {
		v := make([]byte, *size)
		for j := 0; j+8 <= len(v); j += 8 {
			binary.LittleEndian.PutUint64(v[j:], rng.Uint64())
		}
		return s.Set(ctx, key(i), v, *ttl)
	})
	run(func(rng *rand.Rand, _ int) error {
		v, err := s.Get(ctx, key(rng.IntN(*n)))
		if err == nil && len(v) != *size {
			err = fmt.Errorf("got %d bytes, want %d", len(v), *size)
		}
		return err
	})
	// How the resident set splits before Close unmaps the files: anonymous
	// memory is what the process really holds, file-backed pages are mapped
	// database files the kernel can drop and read back.
	status, err := readStatus()
	if err != nil {
		log.Fatal(err)
	}
	if err := s.Close(); err != nil {
		log.Fatal(err)
	}
	elapsed := time.Since(start)

	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	final, err := readStatus()
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("peak_rss_bytes=%d rss_anon_bytes=%d rss_file_bytes=%d heap_sys_bytes=%d seconds=%.2f\n",
		final["VmHWM"], status["RssAnon"], status["RssFile"], ms.HeapSys, elapsed.Seconds())
}

// key derives a session-ID-like key from i, so that no list of keys has to
// be kept in memory (and counted).
func key(i int) string {
	var b [16]byte
	x := uint64(i)*0x9e3779b97f4a7c15 + 1
	binary.LittleEndian.PutUint64(b[:], mix(x))
	binary.LittleEndian.PutUint64(b[8:], mix(x^0xdeadbeef))
	return hex.EncodeToString(b[:])
}

// mix is splitmix64's finalizer: distinct inputs give distinct outputs.
func mix(x uint64) uint64 {
	x = (x ^ x>>30) * 0xbf58476d1ce4e5b9
	x = (x ^ x>>27) * 0x94d049bb133111eb
	return x ^ x>>31
}

// readStatus returns the memory figures of /proc/self/status, in bytes.
func readStatus() (map[string]int64, error) {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	m := make(map[string]int64)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		name, rest, ok := strings.Cut(sc.Text(), ":")
		kb, found := strings.CutSuffix(strings.TrimSpace(rest), " kB")
		if !ok || !found {
			continue
		}
		n, err := strconv.ParseInt(kb, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("parsing %s in /proc/self/status: %w", name, err)
		}
		m[name] = n << 10
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if _, ok := m["VmHWM"]; !ok {
		return nil, errors.New("no VmHWM in /proc/self/status")
	}
	return m, nil
}
