// Command bench compares kvsession with the Go session libraries people use
// today, each as a real HTTP server on 127.0.0.1 driven by the same load,
// and in process through each library's own API. Every peer runs with its
// own adapters (fasthttp/session's memory and Redis providers, Fiber v2's
// and v3's session with gofiber/storage's Badger and Redis, scs with its
// memstore, badgerstore and redisstore), on its own HTTP library, beside
// kvsession on its adapter for that library (kvfasthttp, kvhttp, kvfiber)
// and the library's bare server.
//
//	cd bench && go run .                      # full run, about ten minutes; writes results/
//	cd bench && go run . -short               # CI: a minute, checks correctness only
//	cd bench && go run . -only fasthttp       # one adapter's servers (or -only NAME,NAME)
//	cd bench && go run . -profile-incr default  # where /incr's time goes; writes results/profile.md
//
// An adapter's servers on one storage are up at once and measured in
// interleaved rounds (see group); figures are medians over the rounds and
// ratios are paired round by round.
//
// With two or more CPUs the load generator runs on CPU 0 and each server,
// in a child process of its own, on CPU 1 (taskset), so that a server's
// throughput is what one core gives it. Every child listens on loopback
// only and is stopped by its PID when its turn ends, or when this program
// exits or is interrupted.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

type options struct {
	sessions    int
	conns       int
	duration    time.Duration
	contendFor  time.Duration
	scale       []int
	scaleFor    time.Duration
	inProcess   bool
	short       bool
	out         string
	only        string
	redisAddr   string
	noRedis     bool
	pinned      bool
	verifyCount int
	profile     string
	rounds      int
	profileIncr []string
	// scaleCacheMiB is a Badger CacheSize (MiB) to run kvsession/badger
	// with at the largest scale count besides the default; 0: none.
	scaleCacheMiB int
}

func main() {
	var (
		o       options
		serve   = flag.String("serve", "", "internal: serve this implementation in a child process")
		dir     = flag.String("dir", "", "internal: the child's store directory")
		lock    = flag.Bool("lock", false, "internal: the child turns kvsession's session lock on")
		profile = flag.String("server-cpuprofile", "", "write each server's CPU profile to this path plus its name (for finding where a server spends its time)")
		onUSR1  = flag.Bool("profile-on-usr1", false, "internal: the child profiles from its first SIGUSR1 on")
		profInc = flag.String("profile-incr", "", "instead of the comparison, profile these implementations' /incr server-side (comma-separated; \"default\": "+strings.Join(defaultProfiled, " and ")+") and write profile.md and their profiles to -out")
		scale   = flag.String("scale", "10000,100000,1000000", "session counts for the scaling runs of kvsession/memory and kvsession/badger (empty: none)")
		million = flag.Bool("million", false, "use 1,000,000 sessions in the comparison instead of -sessions")
		cache   = flag.Int("badger-cache-size", 0, "the Badger store CacheSize, in bytes, of every kvsession/badger server (0: the default; the scaling runs' extra row sets its own)")
	)
	flag.IntVar(&o.scaleCacheMiB, "scale-badger-cache", 256, "also run kvsession/badger at the largest -scale count with this Badger CacheSize, in MiB, to show what it takes\n"+
		"to keep its /incr figure there (0: none)")
	flag.IntVar(&o.sessions, "sessions", 10000, "sessions (simulated clients, each with its own cookie) per server")
	flag.IntVar(&o.conns, "conns", 32, "keep-alive connections")
	flag.DurationVar(&o.duration, "duration", time.Second, "how long each server is driven per route in each round (with -profile-incr: in all)")
	flag.IntVar(&o.rounds, "rounds", 4, "rounds of the comparison: each server's figure is its median over them")
	flag.DurationVar(&o.contendFor, "contend", 2*time.Second, "how long every connection drives one shared session")
	flag.DurationVar(&o.scaleFor, "scale-duration", 3*time.Second, "how long each scaling run drives each route")
	flag.BoolVar(&o.inProcess, "inprocess", true, "also run the in-process benchmarks")
	flag.BoolVar(&o.short, "short", false, "CI mode: few sessions, short runs, no scaling or in-process runs, every contender checked; exit 1 on any error, wrong reply or lost update of kvsession's or of a peer without a known defect, or any update lost with kvsession's lock")
	flag.StringVar(&o.out, "out", "results", "directory for results.md and throughput.svg (empty: none)")
	flag.StringVar(&o.only, "only", "", "comma-separated implementations or adapters (fasthttp, net/http, fiber) to run, an adapter's bare server with them (default: all)")
	flag.StringVar(&o.redisAddr, "redis", os.Getenv("KVSESSION_REDIS_ADDR"), "Redis for the Redis stores (default $KVSESSION_REDIS_ADDR, else a redis-server from PATH on a free loopback port); Fiber's Redis storage needs its databases 12 and 13 empty")
	flag.BoolVar(&o.noRedis, "no-redis", false, "skip the Redis stores")
	flag.Parse()

	if *serve != "" {
		serveChild(*serve, serveOptions{dir: *dir, redisAddr: o.redisAddr, lock: *lock, profile: *profile, profileOnUSR1: *onUSR1, badgerCache: *cache})
		return
	}
	badgerCacheSize = *cache
	pinSelf()
	o.pinned = os.Getenv(pinnedEnv) == "1"
	if *million {
		o.sessions = 1_000_000
	}
	for _, f := range strings.Split(*scale, ",") {
		var n int
		if _, err := fmt.Sscan(strings.TrimSpace(f), &n); err == nil && n > 0 {
			o.scale = append(o.scale, n)
		}
	}
	o.verifyCount = 1000
	o.profile = *profile
	for _, n := range strings.Split(*profInc, ",") {
		if n = strings.TrimSpace(n); n == "default" {
			o.profileIncr = append(o.profileIncr, defaultProfiled...)
		} else if n != "" {
			o.profileIncr = append(o.profileIncr, n)
		}
	}
	if o.rounds < 1 {
		o.rounds = 1
	}
	if o.short {
		o.sessions, o.duration, o.contendFor, o.rounds = 1000, 150*time.Millisecond, 300*time.Millisecond, 2
		o.scale, o.inProcess = nil, false
		if !flagSet("out") {
			o.out = ""
		}
	}
	os.Exit(run(o))
}

func flagSet(name string) bool {
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

const (
	pinnedEnv = "KVSESSION_BENCH_PINNED"
	cpusEnv   = "KVSESSION_BENCH_CPUS" // the machine's CPUs, before pinning hid one
)

// machineCPUs is how many CPUs the machine has, not how many this pinned
// process may use.
func machineCPUs() int {
	if n, err := strconv.Atoi(os.Getenv(cpusEnv)); err == nil && n > 0 {
		return n
	}
	return runtime.NumCPU()
}

// pinSelf re-executes this program on CPU 0 so that CPU 1 is the servers'
// alone. It does nothing with fewer than two CPUs or without taskset.
func pinSelf() {
	if os.Getenv(pinnedEnv) != "" || runtime.NumCPU() < 2 {
		return
	}
	taskset, err := exec.LookPath("taskset")
	if err != nil {
		os.Setenv(pinnedEnv, "0")
		return
	}
	self, err := os.Executable()
	if err != nil {
		os.Setenv(pinnedEnv, "0")
		return
	}
	os.Setenv(pinnedEnv, "1")
	os.Setenv(cpusEnv, strconv.Itoa(runtime.NumCPU()))
	err = syscall.Exec(taskset, append([]string{"taskset", "-c", "0", self}, os.Args[1:]...), os.Environ())
	// Exec returned: run unpinned.
	fmt.Fprintln(os.Stderr, "bench: cannot pin to CPU 0:", err)
	os.Setenv(pinnedEnv, "0")
}
