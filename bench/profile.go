package main

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/google/pprof/profile"
)

// Profile mode (-profile-incr): where a server's time goes on /incr. Each
// implementation named runs alone under the comparison's load; its CPU
// profile covers that load only (the child starts it on SIGUSR1, after its
// sessions were made), and its samples are summed by layer, the package
// they were spent for, per request served. The wire bytes of each response
// come from the load generator, which counts what it reads.

// defaultProfiled are the two the issue asks about: kvsession on fasthttp
// and the fastest correct peer there.
var defaultProfiled = []string{kvMemoryFasthttp, "fasthttp/session/memory (id copied)"}

// Layers, in the order profile.md lists them.
const (
	layerKernel    = "net/syscall (kernel)"
	layerFasthttp  = "fasthttp"
	layerNetHTTP   = "net/http"
	layerFiber     = "fiber"
	layerAdapter   = "kvsession adapter"
	layerCore      = "kvsession core"
	layerKvStore   = "kvsession store"
	layerMsgpack   = "msgpack"
	layerFHSession = "fasthttp/session"
	layerScs       = "scs"
	layerDB        = "Badger, Redis clients"
	layerHandler   = "bench handler"
	layerGC        = "runtime: GC"
	layerRuntime   = "runtime: scheduler, other"
	layerOther     = "other"
)

var layerOrder = []string{layerKernel, layerFasthttp, layerNetHTTP, layerFiber, layerAdapter, layerCore, layerKvStore, layerMsgpack,
	layerFHSession, layerScs, layerDB, layerHandler, layerGC, layerRuntime, layerOther}

// packageLayers maps packages (by prefix, the longest first) to layers.
// Packages not listed (the runtime, sync, strconv, crypto, time, …) are
// charged to the nearest listed caller: an allocation or a map lookup
// costs the layer that asked for it.
var packageLayers = []struct{ prefix, layer string }{
	{"github.com/kvsession/kvsession/store", layerKvStore},
	{"github.com/kvsession/kvsession/kvfasthttp", layerAdapter},
	{"github.com/kvsession/kvsession/kvhttp", layerAdapter},
	{"github.com/kvsession/kvsession/kvfiber", layerAdapter},
	{"github.com/kvsession/kvsession/internal/fasthttpio", layerAdapter},
	{"github.com/kvsession/kvsession", layerCore},
	{"github.com/vmihailenco/msgpack", layerMsgpack},
	{"github.com/tinylib/msgp", layerMsgpack},
	{"github.com/fasthttp/session", layerFHSession},
	{"github.com/savsgio/gotils", layerFHSession},
	{"github.com/valyala/fasthttp", layerFasthttp},
	{"github.com/gofiber", layerFiber},
	{"github.com/alexedwards/scs", layerScs},
	{"github.com/dgraph-io", layerDB},
	{"github.com/redis", layerDB},
	{"github.com/gomodule/redigo", layerDB},
	{"net/http", layerNetHTTP},
	{"main", layerHandler},
}

// kernelPackages are where a request's system calls are made: their
// samples are the kernel's work (ITIMER_PROF counts system time) and the
// Go side of a call.
var kernelPackages = []string{"syscall", "internal/runtime/syscall", "runtime/internal/syscall", "internal/poll", "net", "golang.org/x/sys/unix"}

// gcFunctions mark a stack as the garbage collector's: background marking
// and sweeping, and the assists an allocating goroutine is made to do.
var gcFunctions = []string{"runtime.gcBgMarkWorker", "runtime.gcAssistAlloc", "runtime.bgsweep", "runtime.bgscavenge", "runtime.gcStart", "runtime.gcDrain", "runtime.markroot", "runtime.sweepone", "runtime.gcMarkDone", "runtime.gcMarkTermination"}

// funcPackage is the import path of a function as pprof names it:
// "github.com/valyala/fasthttp.(*Server).serveConn" → "github.com/valyala/fasthttp".
func funcPackage(fn string) string {
	if i := strings.IndexByte(fn, '['); i >= 0 {
		fn = fn[:i] // type arguments name other packages
	}
	slash := strings.LastIndexByte(fn, '/')
	dot := strings.IndexByte(fn[slash+1:], '.')
	if dot < 0 {
		return fn
	}
	return fn[:slash+1+dot]
}

func hasPackagePrefix(pkg, prefix string) bool {
	return pkg == prefix || strings.HasPrefix(pkg, prefix+"/")
}

// layerOf says which layer a sample's stack, leaf first, was spent for.
func layerOf(stack []string) string {
	for _, fn := range stack {
		if slices.Contains(gcFunctions, fn) {
			return layerGC
		}
	}
	for _, fn := range stack {
		if fn == "runtime.netpoll" || fn == "runtime.epollwait" {
			return layerKernel
		}
		pkg := funcPackage(fn)
		for _, k := range kernelPackages {
			if pkg == k {
				return layerKernel
			}
		}
		for _, pl := range packageLayers {
			if hasPackagePrefix(pkg, pl.prefix) {
				return pl.layer
			}
		}
	}
	for _, fn := range stack {
		if !hasPackagePrefix(funcPackage(fn), "runtime") && !strings.HasPrefix(funcPackage(fn), "internal/") {
			return layerOther
		}
	}
	return layerRuntime
}

// profiled is one implementation's profile run.
type profiled struct {
	impl                string
	requests            uint64
	rps                 float64
	procCPU             time.Duration // the server's user + system time over the run, from /proc
	profCPU             time.Duration // what the profile's samples add up to
	byLayer             map[string]time.Duration
	flat                map[string]time.Duration
	respBytes, reqBytes float64
	head                string // one /incr response's status line and headers
	file                string
	err                 string
}

func runProfiles(o options, redisAddr string) int {
	out := o.out
	if out == "" {
		out = "results"
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 1
	}
	d := o.duration
	if !flagSet("duration") {
		d = 10 * time.Second // 1,000 samples at pprof's 100 Hz, for a single-core server kept busy
	}
	var ps []profiled
	failed := false
	for _, name := range o.profileIncr {
		k, ok := kindByName(name)
		if !ok {
			fmt.Fprintf(os.Stderr, "bench: -profile-incr: no implementation %q\n", name)
			return 2
		}
		if k.needsRedis && redisAddr == "" {
			fmt.Fprintf(os.Stderr, "bench: -profile-incr: %s needs a Redis\n", name)
			return 2
		}
		p := profileIncr(k, o, d, out, redisAddr)
		if p.err != "" {
			failed = true
			progress("%s: %s", name, p.err)
		}
		ps = append(ps, p)
	}
	md := profileMarkdown(ps, o, d)
	fmt.Println(md)
	path := filepath.Join(out, "profile.md")
	if err := os.WriteFile(path, []byte(md), 0o644); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 1
	}
	progress("wrote %s", path)
	if failed {
		return 1
	}
	return 0
}

// profileIncr runs k's /incr for d under its CPU profile.
func profileIncr(k serverKind, o options, d time.Duration, out, redisAddr string) profiled {
	p := profiled{impl: k.name, byLayer: map[string]time.Duration{}, flat: map[string]time.Duration{}}
	prefix := filepath.Join(out, "incr-")
	p.file = prefix + profileFileName(k.name) + ".pprof"
	srv, err := startServer(k, false, redisAddr, o.pinned, prefix, "-profile-on-usr1")
	if err != nil {
		p.err = err.Error()
		return p
	}
	stopped := false
	defer func() {
		if !stopped {
			srv.stop()
		}
	}()
	clients := bareClients(o.sessions)
	if !k.bare {
		clients = make([]client, o.sessions)
		if err := createSessions(srv.addr, o.conns, clients); err != nil {
			p.err = err.Error()
			return p
		}
	}
	// Warm up, and see one response whole.
	runLoad(srv.addr, o.conns, clients, routeIncr, d/5, !k.bare)
	if head, err := responseHead(srv.addr, routeIncr, &clients[0]); err == nil {
		p.head = head
	}
	if err := srv.cmd.Process.Signal(syscall.SIGUSR1); err != nil {
		p.err = err.Error()
		return p
	}
	time.Sleep(100 * time.Millisecond) // for the child to start its profile; idle time takes no samples
	cpu0 := srv.cpu()
	r := runLoad(srv.addr, o.conns, clients, routeIncr, d, !k.bare)
	p.procCPU = srv.cpu() - cpu0
	p.requests, p.rps = r.requests, r.rps()
	if r.requests > 0 {
		p.respBytes = float64(r.bytesIn) / float64(r.requests)
		p.reqBytes = float64(r.bytesOut) / float64(r.requests)
	}
	progress("profile %-36s /incr %8.0f req/s, %d requests, %d errors, %d wrong", k.name, p.rps, r.requests, r.errors, r.wrong)
	srv.stop() // the child writes its profile as it exits
	stopped = true
	f, err := os.Open(p.file)
	if err != nil {
		p.err = err.Error()
		return p
	}
	defer f.Close()
	prof, err := profile.Parse(f)
	if err != nil {
		p.err = "parsing " + p.file + ": " + err.Error()
		return p
	}
	addSamples(prof, &p)
	return p
}

// addSamples sums prof's CPU samples into p by layer and by leaf function.
func addSamples(prof *profile.Profile, p *profiled) {
	idx := -1
	for i, st := range prof.SampleType {
		if st.Type == "cpu" {
			idx = i
		}
	}
	if idx < 0 {
		return
	}
	for _, s := range prof.Sample {
		v := time.Duration(s.Value[idx])
		var stack []string
		for _, loc := range s.Location {
			for _, line := range loc.Line { // innermost (inlined) first
				if line.Function != nil {
					stack = append(stack, line.Function.Name)
				}
			}
		}
		p.profCPU += v
		p.byLayer[layerOf(stack)] += v
		if len(stack) > 0 {
			p.flat[stack[0]] += v
		}
	}
}

// responseHead sends one request for cl and returns the response's status
// line and headers as they came.
func responseHead(addr string, rt route, cl *client) (string, error) {
	nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return "", err
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := nc.Write(appendRequest(nil, rt.method, rt.path, cl)); err != nil {
		return "", err
	}
	var in inbuf
	for {
		n, err := nc.Read(in.space())
		in.end += n
		data := bytes.Clone(in.buf[in.start:in.end])
		r, perr := in.next(cl)
		if perr != nil {
			return "", perr
		}
		if r.complete {
			head, _, _ := bytes.Cut(data, []byte("\r\n\r\n"))
			if rt.check != nil {
				rt.check(cl, r.body)
			}
			return string(head), nil
		}
		if err != nil {
			return "", err
		}
	}
}

func profileMarkdown(ps []profiled, o options, d time.Duration) string {
	var b strings.Builder
	pin := "server pinned to CPU 1, load generator to CPU 0"
	if !o.pinned {
		pin = "not pinned"
	}
	fmt.Fprintf(&b, "# Where the time goes: /incr, server-side\n\nRun of %s on %s/%s, %d CPUs, %s; %s; %d sessions, %d keep-alive connections, %v of /incr per implementation, each alone.\n\n",
		time.Now().Format("2006-01-02"), runtime.GOOS, runtime.GOARCH, machineCPUs(), runtime.Version(), pin, o.sessions, o.conns, d)
	b.WriteString("CPU per request by layer: the server's CPU profile over the timed run only, every sample charged to the innermost layer it was spent for ")
	b.WriteString("(the runtime, sync, strconv, crypto and the like to the layer that called them; system calls and the kernel's work in them to net/syscall; the garbage collector's marking, sweeping and assists to runtime: GC), divided by the requests served. ")
	b.WriteString("The profile samples at 100 Hz: the layers are good to a few percent of the total, which /proc's count beside it checks.\n\n")
	var ok []profiled
	for _, p := range ps {
		if p.err == "" && p.requests > 0 {
			ok = append(ok, p)
		}
	}
	if len(ok) > 0 {
		b.WriteString("| ns per request |")
		for _, p := range ok {
			fmt.Fprintf(&b, " %s |", p.impl)
		}
		b.WriteString("\n|---|" + strings.Repeat("---:|", len(ok)) + "\n")
		for _, l := range layerOrder {
			used := false
			for _, p := range ok {
				used = used || p.byLayer[l] > 0
			}
			if !used {
				continue
			}
			fmt.Fprintf(&b, "| %s |", l)
			for _, p := range ok {
				fmt.Fprintf(&b, " %.0f |", float64(p.byLayer[l])/float64(p.requests))
			}
			b.WriteString("\n")
		}
		row := func(name string, f func(p profiled) string) {
			fmt.Fprintf(&b, "| %s |", name)
			for _, p := range ok {
				fmt.Fprintf(&b, " %s |", f(p))
			}
			b.WriteString("\n")
		}
		row("**total, profile**", func(p profiled) string { return fmt.Sprintf("**%.0f**", float64(p.profCPU)/float64(p.requests)) })
		row("total, /proc (user + system)", func(p profiled) string { return fmt.Sprintf("%.0f", float64(p.procCPU)/float64(p.requests)) })
		row("req/s", func(p profiled) string { return fmt.Sprintf("%.0f", p.rps) })
		row("response bytes (headers + body)", func(p profiled) string { return fmt.Sprintf("%.0f", p.respBytes) })
		row("request bytes", func(p profiled) string { return fmt.Sprintf("%.0f", p.reqBytes) })
		b.WriteString("\n")
	}
	for _, p := range ps {
		fmt.Fprintf(&b, "## %s\n\n", p.impl)
		if p.err != "" {
			fmt.Fprintf(&b, "Failed: `%s`\n\n", p.err)
			continue
		}
		fmt.Fprintf(&b, "Profile: `%s` (`go tool pprof -top %s`).\n\n", filepath.Base(p.file), filepath.Base(p.file))
		if p.head != "" {
			fmt.Fprintf(&b, "One /incr response's head, %d bytes with its CRLFs:\n\n```\n%s\n```\n\n", len(p.head)+4, strings.ReplaceAll(p.head, "\r\n", "\n"))
		}
		type fn struct {
			name string
			d    time.Duration
		}
		var fns []fn
		for name, d := range p.flat {
			fns = append(fns, fn{name, d})
		}
		slices.SortFunc(fns, func(a, b fn) int { return int(b.d - a.d) })
		b.WriteString("| function (flat, top 15) | ns/request | share |\n|---|---:|---:|\n")
		for _, f := range fns[:min(15, len(fns))] {
			fmt.Fprintf(&b, "| `%s` | %.0f | %.1f%% |\n", f.name, float64(f.d)/float64(max(p.requests, 1)), 100*float64(f.d)/float64(max(p.profCPU, 1)))
		}
		b.WriteString("\n")
	}
	return b.String()
}
