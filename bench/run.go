package main

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

type contentionResult struct {
	impl        string
	kind        serverKind
	lock        bool
	acked, lost int64
	rps         float64
	errors      uint64
	firstErr    string
}

type scaleResult struct {
	impl            string
	cacheMiB        int           // the Badger CacheSize it ran with, if not the default
	settled         time.Duration // how long the server took to go quiet after creating the sessions
	sessions        int
	create          time.Duration
	incrRPS         float64
	readRPS         float64
	rssMiB          float64
	errors, wrong   uint64
	lost            int64
	firstErr        string
	createFailedErr string
}

type report struct {
	opts       options
	started    time.Time
	http       []httpResult
	contention []contentionResult
	scaling    []scaleResult
	inProcess  []inProcessResult
	notes      []string
}

var progressStart = time.Now()

func progress(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "[%6.1fs] %s\n", time.Since(progressStart).Seconds(), fmt.Sprintf(format, args...))
}

// children are the server processes running now, stopped however the run
// ends.
var children struct {
	sync.Mutex
	m map[int]*exec.Cmd
}

func killChildren() {
	children.Lock()
	defer children.Unlock()
	for pid, cmd := range children.m {
		cmd.Process.Kill()
		delete(children.m, pid)
	}
}

// selection is what -only asks for: implementations by name, or whole
// adapters ("fasthttp", "net/http", "fiber"); nothing means everything
// but the kinds run on request only.
type selection map[string]bool

func parseSelection(only string) selection {
	s := selection{}
	for _, n := range strings.Split(only, ",") {
		if n = strings.TrimSpace(n); n != "" {
			s[n] = true
		}
	}
	return s
}

// wants reports whether k runs. An adapter's bare server runs with any
// other kind of its adapter, so that every ratio has its denominator.
func (s selection) wants(k serverKind, all []serverKind) bool {
	if s[k.name] {
		return true
	}
	if k.onRequest {
		return false
	}
	if len(s) == 0 || s[k.adapter] {
		return true
	}
	if k.ceiling {
		for _, o := range all {
			if o.adapter == k.adapter && s[o.name] {
				return true
			}
		}
	}
	return false
}

func run(o options) int {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	go func() {
		s := <-sig
		progress("%v: stopping servers", s)
		killChildren()
		os.Exit(130)
	}()
	defer killChildren()

	sel := parseSelection(o.only)
	var kinds []serverKind
	needRedis := false
	for _, k := range serverKinds {
		if sel.wants(k, serverKinds) {
			kinds = append(kinds, k)
			needRedis = needRedis || k.needsRedis
		}
	}

	rep := &report{opts: o, started: time.Now()}
	if !o.pinned {
		rep.note("Not pinned: taskset or a second CPU is missing, so servers and the load generator share CPUs, and no figure says whether the generator was the limit.")
	}

	redisAddr := ""
	if needRedis && !o.noRedis {
		addr, stop, err := findRedis(o.redisAddr)
		if err != nil {
			rep.note("The Redis kinds are not measured: " + err.Error())
		} else {
			defer stop()
			redisAddr = addr
		}
	}
	kinds = slices.DeleteFunc(kinds, func(k serverKind) bool { return k.needsRedis && redisAddr == "" })

	if len(o.profileIncr) > 0 {
		return runProfiles(o, redisAddr)
	}

	// In process first, on a quiet machine: right after the scaling runs,
	// the kernel is still tearing down a million-session Badger server and
	// its files, and one run's increment came out at twice its usual time.
	if o.inProcess {
		rep.inProcess = runInProcess(func(step string) { progress("in process: %s", step) })
		runtime.GC()
		debug.FreeOSMemory() // the load generator starts from a small heap
	}

	gs := groups(kinds)
	progress("comparison: %d groups, %d routes, %d sessions, %d connections, %d rounds of %v per route and server",
		len(gs), len(routes), o.sessions, o.conns, o.rounds, o.duration)
	for _, g := range gs {
		rep.http = append(rep.http, runGroup(g, o, redisAddr)...)
	}

	progress("contention: %d connections on one session, %v each", o.conns, o.contendFor)
	for _, k := range kinds {
		if k.bare {
			continue
		}
		if k.lockable {
			rep.contention = append(rep.contention, runContention(k, true, o, redisAddr))
		}
		// Without its lock kvsession writes over concurrent saves by
		// compare-and-swap, retrying a bounded number of times; on Redis,
		// every connection on one session loses more races than that and
		// some requests answer 500 (ErrConflict), by design. There it is
		// measured with its lock only.
		if !(k.kvsession && k.needsRedis) {
			rep.contention = append(rep.contention, runContention(k, false, o, redisAddr))
		}
	}

	// Badger alone scales only when asked for by name (-only): it would
	// take the default run well past its budget, and is there to show what
	// of kvsession/badger's loss at 1M sessions is Badger's own.
	for _, name := range []string{kvMemoryFasthttp, kvBadgerFasthttp, "badger alone"} {
		k, _ := kindByName(name)
		if !slices.ContainsFunc(kinds, func(x serverKind) bool { return x.name == name }) || (k.bare && !sel[name]) {
			continue
		}
		if len(o.scale) > 0 {
			rep.scaling = append(rep.scaling, runScale(k, o.scale, o, name == kvMemoryFasthttp, 0)...)
		}
		// With the default CacheSize (8 MiB) the cache holds some 50,000
		// small sessions: at a million most reads miss it and search
		// Badger's tree. One cache that holds them all shows what that
		// costs, and the memory it takes instead.
		if name == kvBadgerFasthttp && len(o.scale) > 0 && o.scaleCacheMiB > 0 {
			rep.scaling = append(rep.scaling, runScale(k, []int{slices.Max(o.scale)}, o, false, o.scaleCacheMiB)...)
		}
	}

	md := rep.markdown()
	fmt.Println(md)
	if o.out != "" {
		if err := rep.write(o.out, md); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			return 1
		}
		progress("wrote %s and %s", filepath.Join(o.out, "results.md"), filepath.Join(o.out, "throughput.svg"))
	}
	if failures := rep.failures(); len(failures) > 0 {
		fmt.Fprintln(os.Stderr, "bench: FAILED:")
		for _, f := range failures {
			fmt.Fprintln(os.Stderr, "  -", f)
		}
		return 1
	}
	progress("done")
	return 0
}

func (r *report) note(s string) { r.notes = append(r.notes, s) }

// failures lists what must never happen:
//   - an error, wrong answer or lost update of kvsession's, or any update
//     lost with its lock on;
//   - an error of a bare server's (that would be the load generator's bug);
//   - an error, wrong answer or lost update of a peer's that has no known
//     defect (see serverKind.defect): with one request per session in
//     flight every library here answers right, so a wrong answer is as
//     likely this bench's wiring of the peer as the peer's own fault, and
//     either must be looked at.
//
// A peer's known defect, and what peers lose when every connection drives
// one session (none of them locks sessions), are reported, not failed on.
func (r *report) failures() []string {
	var out []string
	for _, h := range r.http {
		k := h.kind
		bad := h.errors > 0 || h.died != "" || (!k.bare && (h.wrong > 0 || h.lost > 0))
		if !bad || (k.defect != "" && !h.startFailed) {
			continue
		}
		who := "peer without a known defect"
		switch {
		case k.kvsession:
			who = "kvsession"
		case k.bare:
			who = "bare server"
		}
		out = append(out, fmt.Sprintf("%s (%s) /%s on %s: %d errors, %d wrong replies, %d lost updates (%s)", h.impl, who, h.route, h.storage, h.errors, h.wrong, h.lost, h.firstErr))
	}
	for _, c := range r.contention {
		if c.kind.kvsession && (c.errors > 0 || (c.lock && c.lost != 0)) {
			out = append(out, fmt.Sprintf("contention %s: %d errors, %d lost updates (%s)", c.impl, c.errors, c.lost, c.firstErr))
		}
	}
	for _, s := range r.scaling {
		if s.errors > 0 || s.wrong > 0 || s.lost > 0 || s.createFailedErr != "" {
			out = append(out, fmt.Sprintf("scaling %s at %d sessions: %d errors, %d wrong, %d lost (%s%s)", s.impl, s.sessions, s.errors, s.wrong, s.lost, s.firstErr, s.createFailedErr))
		}
	}
	return out
}

// child is one server process.
type child struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	addr   string
	dir    string
	exited chan struct{} // closed once the process has exited and been waited for
	fatal  *fatalLine
}

// fatalLine passes a child's stderr on and keeps the first line of a panic
// or fatal error in it, to say why a server died.
type fatalLine struct {
	mu      sync.Mutex
	pending []byte
	line    string
}

func (f *fatalLine) Write(p []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.line != "" {
		return len(p), nil
	}
	f.pending = append(f.pending, p...)
	for {
		i := bytes.IndexByte(f.pending, '\n')
		if i < 0 {
			break
		}
		line := string(f.pending[:i])
		f.pending = f.pending[i+1:]
		if strings.HasPrefix(line, "panic: ") || strings.HasPrefix(line, "fatal error: ") {
			f.line = line
			f.pending = nil
			break
		}
	}
	if len(f.pending) > 64<<10 {
		f.pending = nil
	}
	return len(p), nil
}

func (f *fatalLine) String() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.line
}

// died says, once the child's process has exited on its own, how: its exit
// status and the first line of its panic, if it panicked; "" while it runs.
func (c *child) died() string {
	select {
	case <-c.exited:
	default:
		return ""
	}
	why := "the server process died (" + c.cmd.ProcessState.String() + ")"
	if l := c.fatal.String(); l != "" {
		why += ": " + l
	}
	return why
}

// badgerCacheSize is -badger-cache-size, passed on to every server.
var badgerCacheSize int

func startServer(k serverKind, lock bool, redisAddr string, pinned bool, profile string, extra ...string) (*child, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "kvsession-bench-")
	if err != nil {
		return nil, err
	}
	args := []string{self, "-serve", k.name, "-dir", dir, "-lock=" + strconv.FormatBool(lock)}
	if profile != "" {
		args = append(args, "-server-cpuprofile", profile)
	}
	if k.needsRedis {
		args = append(args, "-redis", redisAddr)
	}
	if badgerCacheSize != 0 && !slices.Contains(extra, "-badger-cache-size") {
		args = append(args, "-badger-cache-size", strconv.Itoa(badgerCacheSize))
	}
	args = append(args, extra...)
	if pinned {
		args = append([]string{"taskset", "-c", "1"}, args...)
	}
	return startChild(k.name, args, dir)
}

// startChild runs args as a server process that prints "ADDR host:port" on
// its first line of output and serves until its stdin closes; dir, if
// any, is removed when it stops.
func startChild(name string, args []string, dir string) (*child, error) {
	cmd := exec.Command(args[0], args[1:]...)
	fatal := &fatalLine{}
	cmd.Stderr = io.MultiWriter(os.Stderr, fatal)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	children.Lock()
	if children.m == nil {
		children.m = map[int]*exec.Cmd{}
	}
	children.m[cmd.Process.Pid] = cmd
	children.Unlock()
	c := &child{cmd: cmd, stdin: stdin, dir: dir, exited: make(chan struct{}), fatal: fatal}
	go func() { cmd.Wait(); close(c.exited) }()

	line := make(chan string, 1)
	go func() {
		s, _ := bufio.NewReader(stdout).ReadString('\n')
		line <- s
		io.Copy(io.Discard, stdout)
	}()
	select {
	case s := <-line:
		if addr, ok := strings.CutPrefix(strings.TrimSpace(s), "ADDR "); ok {
			c.addr = addr
			return c, nil
		}
		c.stop()
		return nil, fmt.Errorf("%s did not start (said %q) %s", name, s, c.died())
	case <-time.After(30 * time.Second):
		c.stop()
		return nil, fmt.Errorf("%s did not start within 30s", name)
	}
}

// rssMiB reads the child's resident set size.
func (c *child) rssMiB() float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", c.cmd.Process.Pid))
	if err != nil {
		return 0
	}
	m := regexp.MustCompile(`VmRSS:\s+(\d+) kB`).FindSubmatch(b)
	if m == nil {
		return 0
	}
	kb, _ := strconv.Atoi(string(m[1]))
	return float64(kb) / 1024
}

// cpu returns the child's CPU time so far (user + system).
func (c *child) cpu() time.Duration { return procCPU(c.cmd.Process.Pid) }

// settle waits until the child has gone quiet, under 5% of a core for a
// second, or until limit has passed, and returns how long it waited.
// Creating a million sessions leaves Badger compacting for seconds after
// the last reply: measured then, a scaling figure would be the
// compaction's as much as the requests'.
func (c *child) settle(limit time.Duration) time.Duration {
	const tick = 250 * time.Millisecond
	start, quiet := time.Now(), 0
	last := c.cpu()
	for quiet < 4 && time.Since(start) < limit {
		time.Sleep(tick)
		now := c.cpu()
		if now-last < tick/20 {
			quiet++
		} else {
			quiet = 0
		}
		last = now
	}
	return time.Since(start)
}

// procCPU reads a process's user + system time from /proc.
func procCPU(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// Fields after the command name, which is in parentheses and may hold spaces.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * time.Second / clockTicks
}

// clockTicks is USER_HZ, 100 on every Linux this runs on.
const clockTicks = 100

// stop asks the child to finish (closing its stdin), and kills it by PID if
// it has not within five seconds.
func (c *child) stop() {
	c.stdin.Close()
	select {
	case <-c.exited:
	case <-time.After(5 * time.Second):
		c.cmd.Process.Kill()
		<-c.exited
	}
	children.Lock()
	delete(children.m, c.cmd.Process.Pid)
	children.Unlock()
	os.RemoveAll(c.dir)
}

func runContention(k serverKind, lock bool, o options, redisAddr string) contentionResult {
	name := k.name
	if lock {
		name += " +lock"
	}
	res := contentionResult{impl: name, kind: k, lock: lock}
	srv, err := startServer(k, lock, redisAddr, o.pinned, "")
	if err != nil {
		res.errors, res.firstErr = 1, err.Error()
		progress("%s: %v", name, err)
		return res
	}
	defer srv.stop()
	acked, lost, r, err := contention(srv.addr, o.conns, o.contendFor)
	res.acked, res.lost = acked, lost
	if r != nil {
		res.rps, res.errors = r.rps(), r.errors
		if r.firstErr != nil {
			res.firstErr = r.firstErr.Error()
		}
	}
	if err != nil {
		res.errors++
		res.firstErr = err.Error()
	}
	progress("%-24s one session, %d conns: %6.0f req/s, %d increments acknowledged, %d lost, %d errors",
		name, o.conns, res.rps, res.acked, res.lost, res.errors)
	return res
}

// scaled is one server of a scaling run, with its sessions created.
type scaled struct {
	srv     *child
	clients []client
	res     scaleResult
	took    map[string]time.Duration
	reqs    map[string]uint64
}

// runScale measures k at each session count in sizes. With alternate, the
// servers are all up at once and the load alternates between them in short
// slices, as in the paired run, so that the ratio between sizes is not the
// machine's drift between two runs. Stores with background work (Badger's
// compaction runs on the servers' core while the others are measured)
// run one size at a time instead.
//
// cacheMiB, if not 0, is the Badger store's CacheSize for these runs.
func runScale(k serverKind, sizes []int, o options, alternate bool, cacheMiB int) []scaleResult {
	groups, slices := [][]int{}, 1
	if alternate {
		groups, slices = [][]int{sizes}, 6
	} else {
		for _, n := range sizes {
			groups = append(groups, []int{n})
		}
	}
	var out []scaleResult
	for _, group := range groups {
		var up []*scaled
		for _, n := range group {
			sc := startScaled(k, n, o, cacheMiB)
			if sc.res.createFailedErr != "" {
				if sc.srv != nil {
					sc.srv.stop()
				}
				out = append(out, sc.res)
				continue
			}
			up = append(up, sc)
		}
		for _, rt := range []route{routeIncr, routeRead} {
			for i := 0; i < slices; i++ {
				for _, sc := range up {
					r := runLoad(sc.srv.addr, o.conns, sc.clients, rt, o.scaleFor/time.Duration(slices), true)
					sc.res.errors += r.errors
					sc.res.wrong += r.wrong
					if r.firstErr != nil && sc.res.firstErr == "" {
						sc.res.firstErr = r.firstErr.Error()
					}
					sc.reqs[rt.name] += r.requests
					sc.took[rt.name] += r.elapsed
				}
			}
		}
		for _, sc := range up {
			res := &sc.res
			res.incrRPS = float64(sc.reqs["incr"]) / sc.took["incr"].Seconds()
			res.readRPS = float64(sc.reqs["read"]) / sc.took["read"].Seconds()
			res.rssMiB = sc.srv.rssMiB()
			lost, err := verify(sc.srv.addr, sc.clients, o.verifyCount)
			res.lost = lost
			if err != nil {
				res.errors++
				res.firstErr = err.Error()
			}
			progress("scaling %-16s %8d sessions (created in %v, quiet %v later): incr %6.0f req/s, read %6.0f req/s, RSS %.0f MiB",
				res.label(), res.sessions, res.create.Round(time.Millisecond), res.settled.Round(time.Millisecond), res.incrRPS, res.readRPS, res.rssMiB)
			out = append(out, *res)
			sc.srv.stop()
		}
	}
	return out
}

// label names the implementation and, if not the default, its CacheSize.
func (s scaleResult) label() string {
	if s.cacheMiB > 0 {
		return fmt.Sprintf("%s, CacheSize %d MiB", s.impl, s.cacheMiB)
	}
	return s.impl
}

// startScaled starts k and creates n sessions on it; on failure the result
// says why.
func startScaled(k serverKind, n int, o options, cacheMiB int) *scaled {
	sc := &scaled{res: scaleResult{impl: k.name, sessions: n, cacheMiB: cacheMiB}, took: map[string]time.Duration{}, reqs: map[string]uint64{}}
	var extra []string
	if cacheMiB > 0 {
		extra = append(extra, "-badger-cache-size", strconv.Itoa(cacheMiB<<20))
	}
	srv, err := startServer(k, false, "", o.pinned, "", extra...)
	if err != nil {
		sc.res.createFailedErr = err.Error()
		return sc
	}
	sc.srv = srv
	sc.clients = make([]client, n)
	if k.bare {
		sc.clients = bareClients(n)
	}
	t0 := time.Now()
	progress("scaling %s: creating %d sessions", k.name, n)
	if err := createSessions(srv.addr, o.conns, sc.clients); err != nil {
		sc.res.createFailedErr = err.Error()
		progress("scaling %s: %v", k.name, err)
		return sc
	}
	sc.res.create = time.Since(t0)
	sc.res.settled = srv.settle(time.Minute)
	return sc
}

// findRedis returns the Redis to use: addr if set and reachable, else a
// redis-server from PATH started on a free loopback port (stopped by stop).
func findRedis(addr string) (string, func(), error) {
	if addr != "" {
		c, err := net.DialTimeout("tcp", addr, 2*time.Second)
		if err != nil {
			return "", nil, fmt.Errorf("the Redis at %s is unreachable: %v", addr, err)
		}
		c.Close()
		return addr, func() {}, nil
	}
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return "", nil, fmt.Errorf("no Redis: set KVSESSION_REDIS_ADDR or put redis-server on PATH")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	addr = ln.Addr().String()
	ln.Close()
	_, port, _ := net.SplitHostPort(addr)
	dir, err := os.MkdirTemp("", "kvsession-bench-redis-")
	if err != nil {
		return "", nil, err
	}
	args := []string{bin, "--bind", "127.0.0.1", "--port", port, "--save", "", "--appendonly", "no", "--dir", dir, "--loglevel", "warning"}
	if os.Getenv(pinnedEnv) == "1" {
		// With the load generator, away from the measured server's core.
		args = append([]string{"taskset", "-c", "0"}, args...)
	}
	cmd := exec.Command(args[0], args[1:]...)
	if err := cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return "", nil, err
	}
	children.Lock()
	if children.m == nil {
		children.m = map[int]*exec.Cmd{}
	}
	children.m[cmd.Process.Pid] = cmd
	children.Unlock()
	stop := func() {
		cmd.Process.Kill()
		cmd.Wait()
		children.Lock()
		delete(children.m, cmd.Process.Pid)
		children.Unlock()
		os.RemoveAll(dir)
	}
	for i := 0; i < 100; i++ {
		if c, err := net.DialTimeout("tcp", addr, 100*time.Millisecond); err == nil {
			c.Close()
			progress("redis-server on %s (pid %d)", addr, cmd.Process.Pid)
			return addr, stop, nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	stop()
	return "", nil, fmt.Errorf("redis-server did not start on %s", addr)
}

func us(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

// bareClients gives the bare servers' clients the Cookie header a session
// client sends, a random id of 43 characters, so that every server reads
// requests of the same size and the difference is the session work alone.
// Random, not numbered: Badger alone uses the id as its key, and numbered
// keys sit side by side in Badger's tables, which caches far better than
// the scattered keys of real sessions.
func bareClients(n int) []client {
	clients := make([]client, n)
	for i := range clients {
		var id [32]byte
		rand.Read(id[:])
		clients[i].cookie = base64.RawURLEncoding.AppendEncode([]byte("session="), id[:])
	}
	return clients
}
