package e2e

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/kvsession/kvsession"
	"github.com/kvsession/kvsession/internal/race"
	"github.com/kvsession/kvsession/kvfasthttp"
	"github.com/kvsession/kvsession/store"
	"github.com/kvsession/kvsession/store/badgerstore"
	"github.com/kvsession/kvsession/store/memstore"
)

// soakEnv selects the full soak test: KVSESSION_SOAK=60s drives 100,000
// sessions for that long per store. Without it the test runs a short form
// that fits in CI's `go test -race ./...`. An environment variable rather
// than a test flag, so that `go test ./...` can pass it to every package
// without the others refusing an unknown flag.
const soakEnv = "KVSESSION_SOAK"

// soakPlan sizes one run.
type soakPlan struct {
	sessions int
	workers  int           // concurrent clients, each owning sessions/workers sessions
	warm     time.Duration // mixed traffic before the memory baseline
	run      time.Duration // mixed traffic after it
}

func soakPlanFor(t *testing.T, st string) soakPlan {
	if v := os.Getenv(soakEnv); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			t.Fatalf("%s=%q: want a positive duration such as 60s", soakEnv, v)
		}
		// The warm-up brings forward records and caches to their steady
		// state before the baseline; it is part of the time asked for.
		warm := min(max(d/4, 3*time.Second), 15*time.Second)
		return soakPlan{sessions: 100_000, workers: 32, warm: warm, run: max(d-warm, time.Second)}
	}
	p := soakPlan{sessions: 20_000, workers: 16, warm: 2 * time.Second, run: 3 * time.Second}
	if testing.Short() || race.Enabled {
		p = soakPlan{sessions: 4_000, workers: 8, warm: 1500 * time.Millisecond, run: 2500 * time.Millisecond}
	}
	if st == "badger" {
		// Badger commits every write through its log; fewer sessions keep
		// the creation phase as short as the memory store's.
		p.sessions /= 2
	}
	return p
}

// Soak configuration: ids rotate every second, so that a run of seconds
// rotates each session several times, and a rotated-out id keeps working
// for soakGrace.
const (
	soakRenewal = time.Second
	soakGrace   = 2 * time.Second
)

// soakApp is the application under load: one route per kind of session
// work. Counters are per session, so every answer can be checked.
func soakApp(ctx *fasthttp.RequestCtx) {
	sess := kvfasthttp.Session(ctx)
	switch string(ctx.Path()) {
	case "/get":
		if n, ok := sess.GetInt("n"); ok {
			ctx.WriteString(strconv.Itoa(n))
		} else {
			ctx.WriteString("-")
		}
	case "/inc":
		n, _ := sess.GetInt("n")
		if err := sess.Set("n", n+1); err != nil {
			ctx.Error(err.Error(), fasthttp.StatusInternalServerError)
			return
		}
		ctx.WriteString(strconv.Itoa(n + 1))
	case "/renew":
		if err := sess.RenewID(); err != nil {
			ctx.Error(err.Error(), fasthttp.StatusInternalServerError)
			return
		}
		n, _ := sess.GetInt("n")
		ctx.WriteString(strconv.Itoa(n))
	case "/destroy":
		if err := sess.Destroy(); err != nil {
			ctx.Error(err.Error(), fasthttp.StatusInternalServerError)
			return
		}
		ctx.SetStatusCode(fasthttp.StatusNoContent)
	default:
		ctx.Error("not found", fasthttp.StatusNotFound)
	}
}

// soakErrors collects what went wrong, from the clients and the server.
type soakErrors struct {
	n     atomic.Int64
	mu    sync.Mutex
	first []string
}

func (e *soakErrors) add(format string, args ...any) {
	if e.n.Add(1) > 20 {
		return
	}
	e.mu.Lock()
	e.first = append(e.first, fmt.Sprintf(format, args...))
	e.mu.Unlock()
}

// Write receives the server's log: kvsession logs warnings and errors, and
// any is a failure here.
func (e *soakErrors) Write(p []byte) (int, error) {
	e.add("server log: %s", strings.TrimSpace(string(p)))
	return len(p), nil
}

func (e *soakErrors) Printf(format string, args ...any) { e.add("fasthttp: "+format, args...) }

// TestSoak drives many sessions over loopback against a real fasthttp
// server with the middleware, for a fixed time, in a mix of reads, writes,
// id renewals (RenewID), periodic id rotations and destroys; then it checks
// every session's counter. It asserts no error, and that the run leaves no
// goroutine or file descriptor behind and the heap no larger than after the
// warm-up: leaks proportional to requests show up, since the run makes many
// more requests than there are sessions. It reports RSS and heap with t.Log.
//
// Short by default; KVSESSION_SOAK=60s runs the full form (see .ci/soak).
func TestSoak(t *testing.T) {
	for _, st := range []string{"memory", "badger"} {
		t.Run(st, func(t *testing.T) { soak(t, st, soakPlanFor(t, st)) })
	}
}

func soak(t *testing.T, storeName string, plan soakPlan) {
	start := time.Now()
	primeFasthttp(t)
	goroutinesBefore := runtime.NumGoroutine()
	fdsBefore := openFDs(t)
	t.Logf("%s: %d sessions, %d clients, warm-up %v, run %v; before: %d goroutines, %d fds, %s",
		storeName, plan.sessions, plan.workers, plan.warm, plan.run, goroutinesBefore, fdsBefore, memReport())

	errs := &soakErrors{}
	var st store.Store
	switch storeName {
	case "memory":
		// Forward records of rotated ids expire after soakGrace; sweeping
		// often gives their memory back within the run.
		st = memstore.New(memstore.Options{SweepInterval: 500 * time.Millisecond})
	case "badger":
		b, err := badgerstore.Open(badgerstore.Options{Dir: t.TempDir()})
		if err != nil {
			t.Fatal(err)
		}
		st = b
	}
	reg := store.NewRegistry(nil)
	if err := reg.Register("sessions", st); err != nil {
		t.Fatal(err)
	}
	regClosed := false
	t.Cleanup(func() {
		if !regClosed {
			reg.Close()
		}
	})
	backend, err := kvsession.New(kvsession.Config{
		MaxAge:           time.Hour,
		RotationInterval: soakRenewal,
		RotationGrace:    soakGrace,
		Lock:             true,
		Logger:           slog.New(slog.NewTextHandler(errs, &slog.HandlerOptions{Level: slog.LevelWarn})),
	}, reg)
	if err != nil {
		t.Fatal(err)
	}
	mw, err := kvfasthttp.New(backend, kvfasthttp.Options{
		ReadOnly: func(ctx *fasthttp.RequestCtx) bool { return ctx.IsGet() },
		ErrorHandler: func(ctx *fasthttp.RequestCtx, err error) {
			errs.add("%s %s: session error: %v", ctx.Method(), ctx.Path(), err)
			ctx.Error("session unavailable", fasthttp.StatusInternalServerError)
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := mw.NewServer(soakApp)
	srv.Logger = errs
	// Idle workers and connections are let go within a second, so that
	// their cleaners end soon after the shutdown.
	srv.MaxIdleWorkerDuration = time.Second
	srv.ReadTimeout = time.Minute
	srv.WriteTimeout = time.Minute
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := srv.ShutdownWithContext(ctx); err != nil {
			t.Errorf("server shutdown: %v", err)
		}
		ln.Close()
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	}
	t.Cleanup(stop)

	hc := &fasthttp.HostClient{
		Addr:                ln.Addr().String(),
		MaxConns:            plan.workers,
		MaxIdleConnDuration: time.Second,
		ReadTimeout:         time.Minute,
		WriteTimeout:        time.Minute,
	}
	workers := make([]*soakWorker, plan.workers)
	for i := range workers {
		workers[i] = &soakWorker{
			hc:       hc,
			errs:     errs,
			rng:      rand.New(rand.NewPCG(uint64(i), uint64(start.UnixNano()))),
			sessions: make([]soakSession, plan.sessions/plan.workers),
		}
	}
	phase := func(name string, f func(w *soakWorker)) {
		began := time.Now()
		var wg sync.WaitGroup
		for _, w := range workers {
			wg.Go(func() { f(w) })
		}
		wg.Wait()
		var reqs int64
		for _, w := range workers {
			reqs += w.requests
			w.requests = 0
		}
		d := time.Since(began)
		t.Logf("%s: %s: %d requests in %v (%.0f/s), %d errors",
			storeName, name, reqs, d.Round(time.Millisecond), float64(reqs)/d.Seconds(), errs.n.Load())
	}
	check := func() {
		if errs.n.Load() > 0 {
			errs.mu.Lock()
			for _, e := range errs.first {
				t.Error(e)
			}
			errs.mu.Unlock()
			t.Fatalf("%d errors", errs.n.Load())
		}
	}

	phase("create", func(w *soakWorker) {
		for i := range w.sessions {
			w.inc(&w.sessions[i])
		}
	})
	check()
	phase("warm-up", func(w *soakWorker) { w.mix(time.Now().Add(plan.warm)) })
	check()
	heapWarm := heapInUse()
	t.Logf("%s: after warm-up, after GC: %s", storeName, memReport())

	// The run in two halves: the heap is compared with the first half's,
	// when the store has reached its steady state (Badger's tables, caches
	// and memtables), which a short warm-up on a slow machine may not.
	phase("run, first half", func(w *soakWorker) { w.mix(time.Now().Add(plan.run / 2)) })
	check()
	heapMid := heapInUse()
	t.Logf("%s: after the run's first half, after GC: %s", storeName, memReport())
	phase("run, second half", func(w *soakWorker) { w.mix(time.Now().Add(plan.run - plan.run/2)) })
	check()
	phase("verify", func(w *soakWorker) {
		for i := range w.sessions {
			w.verify(&w.sessions[i])
		}
	})
	check()
	var stats soakStats
	for _, w := range workers {
		stats.add(w.stats)
	}
	t.Logf("%s: %+v", storeName, stats)
	if stats.rotations == 0 || stats.renewals == 0 || stats.destroys == 0 || stats.graceForwards == 0 {
		t.Errorf("the mix missed a kind of session work: %+v", stats)
	}

	heapAfter := heapInUse()
	t.Logf("%s: after the run, after GC: %s", storeName, memReport())
	// Generous: the heap holds the sessions (memory store) or Badger's
	// tables and caches, which the first half of the run has filled; a
	// per-request leak over the second half's many requests would exceed
	// it. (After the warm-up alone, Badger on a loaded CI machine had
	// reached half its steady heap, and the check failed without a leak.)
	slack := int64(8 << 20)
	if storeName == "badger" {
		slack = 32 << 20 // memtables are allocated 8 MB at a time
	}
	if bound := max(heapWarm, heapMid)*3/2 + slack; heapAfter > bound {
		t.Errorf("heap in use grew from %d KB after the warm-up and %d KB after the run's first half to %d KB after the run (bound %d KB)", heapWarm>>10, heapMid>>10, heapAfter>>10, bound>>10)
	}

	// Tear everything down and count what is left.
	stop()
	hc.CloseIdleConnections()
	if err := reg.Close(); err != nil {
		t.Errorf("closing the store: %v", err)
	}
	regClosed = true
	settleStart := time.Now()
	settle := settleStart.Add(10 * time.Second)
	for (runtime.NumGoroutine() > goroutinesBefore || openFDs(t) > fdsBefore) && time.Now().Before(settle) {
		time.Sleep(50 * time.Millisecond)
	}
	goroutinesAfter, fdsAfter := runtime.NumGoroutine(), openFDs(t)
	t.Logf("%s: after shutdown (settled in %v): %d goroutines, %d fds, %s; %v in all", storeName, time.Since(settleStart).Round(time.Millisecond),
		goroutinesAfter, fdsAfter, memReport(), time.Since(start).Round(time.Millisecond))
	if goroutinesAfter > goroutinesBefore {
		var buf bytes.Buffer
		pprof.Lookup("goroutine").WriteTo(&buf, 1)
		t.Errorf("%d goroutines after shutdown, %d before:\n%s", goroutinesAfter, goroutinesBefore, buf.String())
	}
	if fdsAfter > fdsBefore {
		t.Errorf("%d file descriptors open after shutdown, %d before", fdsAfter, fdsBefore)
	}
}

// soakSession is a client's view of one session: its cookie and the counter
// the server must hold. id "" means no session (n is then 0).
type soakSession struct {
	id string
	n  int
}

type soakStats struct {
	requests, rotations, renewals, destroys, graceForwards, graceLapsed int64
}

func (s *soakStats) add(o soakStats) {
	s.requests += o.requests
	s.rotations += o.rotations
	s.renewals += o.renewals
	s.destroys += o.destroys
	s.graceForwards += o.graceForwards
	s.graceLapsed += o.graceLapsed
}

// soakWorker is one client: it owns its sessions, so that it alone changes
// them and knows what each must hold.
type soakWorker struct {
	hc       *fasthttp.HostClient
	errs     *soakErrors
	rng      *rand.Rand
	sessions []soakSession
	requests int64
	stats    soakStats
	req      fasthttp.Request
	resp     fasthttp.Response
}

// soakReply is what the checks look at.
type soakReply struct {
	status  int
	body    string
	setID   string // the session cookie set, "" if none
	expired bool   // the session cookie was expired
}

func (w *soakWorker) do(method, path, id string) (soakReply, bool) {
	w.requests++
	w.stats.requests++
	req, resp := &w.req, &w.resp
	req.Reset()
	resp.Reset()
	req.Header.SetMethod(method)
	req.SetRequestURI("http://" + w.hc.Addr + path)
	if id != "" {
		req.Header.SetCookie("session", id)
	}
	if err := w.hc.Do(req, resp); err != nil {
		w.errs.add("%s %s: %v", method, path, err)
		return soakReply{}, false
	}
	r := soakReply{status: resp.StatusCode(), body: string(resp.Body())}
	var parseErr error
	for key, value := range resp.Header.Cookies() {
		if string(key) != "session" {
			continue
		}
		var c fasthttp.Cookie
		if err := c.ParseBytes(value); err != nil {
			parseErr = err
			continue
		}
		// A live cookie has Max-Age alone (no Expires: fasthttp reports
		// CookieExpireUnlimited then); a deleted one is empty.
		expires := c.Expire()
		if len(c.Value()) == 0 || (!expires.Equal(fasthttp.CookieExpireUnlimited) && expires.Before(time.Now())) {
			r.expired = true
		} else {
			r.setID = string(c.Value())
		}
	}
	if parseErr != nil {
		w.errs.add("%s %s: Set-Cookie: %v", method, path, parseErr)
		return r, false
	}
	return r, true
}

// mix sends a random mix of session work until deadline.
func (w *soakWorker) mix(deadline time.Time) {
	for time.Now().Before(deadline) {
		s := &w.sessions[w.rng.IntN(len(w.sessions))]
		switch p := w.rng.IntN(100); {
		case p < 45:
			w.read(s)
		case p < 80 || s.id == "":
			w.inc(s)
		case p < 92:
			w.renew(s)
		default:
			w.destroy(s)
		}
		if w.errs.n.Load() > 0 {
			return // the first errors tell the story; stop the noise
		}
	}
}

// adopt takes the cookie a response set, as a browser does; a new id on a
// request that did not ask for one is a periodic rotation, and a quarter of
// those are followed by a request with the old id, which must still reach
// the session within the grace period.
func (w *soakWorker) adopt(s *soakSession, r soakReply, sent time.Time, what string) {
	if r.setID == "" || r.setID == s.id {
		return
	}
	old := s.id
	s.id = r.setID
	if old == "" {
		return
	}
	w.stats.rotations++
	if w.rng.IntN(4) != 0 {
		return
	}
	g, ok := w.do("GET", "/get", old)
	if !ok {
		return
	}
	switch {
	case g.status != fasthttp.StatusOK:
		w.errs.add("%s, then GET with the rotated-out id: %d %q", what, g.status, g.body)
	case g.body == strconv.Itoa(s.n):
		w.stats.graceForwards++
		if g.setID == "" || g.setID == old {
			w.errs.add("%s, then GET with the rotated-out id: answered without the new cookie (Set-Cookie %q)", what, g.setID)
		}
		s.id = g.setID // the new id, or a newer one if it rotated again
	case g.body == "-" && time.Since(sent) >= soakGrace:
		// The server rotated after sent, so its grace can only have
		// lapsed if this much time has passed since.
		w.stats.graceLapsed++
	default:
		w.errs.add("%s, then GET with the rotated-out id within %v: %q, want %d", what, soakGrace, g.body, s.n)
	}
}

func (w *soakWorker) read(s *soakSession) {
	sent := time.Now()
	r, ok := w.do("GET", "/get", s.id)
	if !ok {
		return
	}
	want := "-"
	if s.id != "" {
		want = strconv.Itoa(s.n)
	}
	switch {
	case r.status != fasthttp.StatusOK || r.body != want:
		w.errs.add("GET /get (id %q): %d %q, want %q", s.id, r.status, r.body, want)
	case s.id == "" && (r.setID != "" || r.expired):
		w.errs.add("GET /get without a session set a cookie")
	case r.expired:
		w.errs.add("GET /get (id %q) expired the cookie", s.id)
	}
	w.adopt(s, r, sent, "GET /get")
}

func (w *soakWorker) inc(s *soakSession) {
	sent := time.Now()
	r, ok := w.do("POST", "/inc", s.id)
	if !ok {
		return
	}
	switch {
	case r.status != fasthttp.StatusOK || r.body != strconv.Itoa(s.n+1):
		w.errs.add("POST /inc (id %q): %d %q, want %d", s.id, r.status, r.body, s.n+1)
		return
	case s.id == "" && r.setID == "":
		// A new session must name itself; an existing one under an
		// unchanged id is resent only when its cookie's expiry is due
		// to move (cookierefresh.go): no cookie keeps the client's.
		w.errs.add("POST /inc without a session: no session cookie")
		return
	case r.expired:
		w.errs.add("POST /inc (id %q) expired the cookie", s.id)
		return
	}
	s.n++
	w.adopt(s, r, sent, "POST /inc")
}

func (w *soakWorker) renew(s *soakSession) {
	old := s.id
	r, ok := w.do("POST", "/renew", old)
	if !ok {
		return
	}
	if r.status != fasthttp.StatusOK || r.body != strconv.Itoa(s.n) || r.setID == "" || r.setID == old {
		w.errs.add("POST /renew (id %q): %d %q, cookie %q; want %d and a new id", old, r.status, r.body, r.setID, s.n)
		return
	}
	s.id = r.setID
	w.stats.renewals++
	// RenewID has no grace: the old id must be dead at once.
	if w.rng.IntN(4) == 0 {
		g, ok := w.do("GET", "/get", old)
		if ok && (g.status != fasthttp.StatusOK || g.body != "-" || g.setID != "") {
			w.errs.add("GET /get with the id RenewID replaced: %d %q, cookie %q; want a fresh session", g.status, g.body, g.setID)
		}
	}
}

func (w *soakWorker) destroy(s *soakSession) {
	r, ok := w.do("POST", "/destroy", s.id)
	if !ok {
		return
	}
	if r.status != fasthttp.StatusNoContent || !r.expired || r.setID != "" {
		w.errs.add("POST /destroy (id %q): %d %q, expired %v, cookie %q", s.id, r.status, r.body, r.expired, r.setID)
		return
	}
	s.id, s.n = "", 0
	w.stats.destroys++
}

// verify reads a session back after the run.
func (w *soakWorker) verify(s *soakSession) {
	if s.id == "" {
		return
	}
	w.read(s)
}

// primeFasthttp makes one request to a throwaway server, so that the
// goroutines fasthttp starts once per process (the server's date updater,
// the TCP dialer's cache cleaner) exist before the goroutine baseline, and
// waits for the throwaway's own goroutines to end.
func primeFasthttp(t *testing.T) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	// Short idle durations make the worker pool's and the client's
	// cleaners notice the shutdown quickly.
	srv := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {}, MaxIdleWorkerDuration: 20 * time.Millisecond}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	hc := &fasthttp.HostClient{Addr: ln.Addr().String(), MaxIdleConnDuration: 20 * time.Millisecond}
	var req fasthttp.Request
	var resp fasthttp.Response
	req.SetRequestURI("http://" + hc.Addr + "/")
	err = hc.Do(&req, &resp)
	hc.CloseIdleConnections()
	srv.Shutdown()
	<-served
	if err != nil {
		t.Fatal(err)
	}
	// Settled once the count has not moved for a while.
	n, since := runtime.NumGoroutine(), time.Now()
	for deadline := time.Now().Add(5 * time.Second); time.Since(since) < 300*time.Millisecond && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
		if m := runtime.NumGoroutine(); m != n {
			n, since = m, time.Now()
		}
	}
}

// heapInUse returns the bytes of heap spans in use after a full collection.
func heapInUse() int64 {
	runtime.GC()
	runtime.GC() // the first may leave finalizer-held objects behind
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapInuse)
}

// memReport gives the process's resident memory and Go heap, for the log.
func memReport() string {
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	rss := "?"
	if status, err := os.ReadFile("/proc/self/status"); err == nil {
		for _, line := range strings.Split(string(status), "\n") {
			if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
				rss = strings.TrimSpace(v)
			}
		}
	}
	return fmt.Sprintf("RSS %s, heap in use %d KB, heap objects %d", rss, m.HeapInuse>>10, m.HeapObjects)
}

// openFDs counts the process's open file descriptors (Linux); -1 where
// /proc is missing, which makes the comparisons vacuous there.
func openFDs(t *testing.T) int {
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		if runtime.GOOS == "linux" {
			t.Fatalf("counting open files: %v", err)
		}
		return -1
	}
	return len(entries)
}
