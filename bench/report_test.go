package main

import (
	"io"
	"math"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestMedian(t *testing.T) {
	for _, tc := range []struct {
		in   []float64
		want float64
	}{
		{nil, 0},
		{[]float64{3}, 3},
		{[]float64{5, 1, 3}, 3},
		{[]float64{4, 1, 3, 2}, 2.5}, // the mean of the middle two
	} {
		if got := median(tc.in); got != tc.want {
			t.Errorf("median(%v) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

// TestPairedRatio: a ratio is taken round by round, so a round that was
// slow for both servers moves neither the median nor the spread.
func TestPairedRatio(t *testing.T) {
	for _, tc := range []struct {
		name          string
		num, den      []float64
		med, lo, hi   float64
		ok            bool
		skipsZeroRuns bool
	}{
		{"drift cancels", []float64{90, 45, 90, 90}, []float64{100, 50, 100, 100}, 0.9, 0.9, 0.9, true, false},
		{"spread", []float64{80, 100, 90, 110}, []float64{100, 100, 100, 100}, 0.95, 0.8, 1.1, true, false},
		{"a failed round is left out", []float64{0, 50, 60}, []float64{100, 100, 100}, 0.55, 0.5, 0.6, true, true},
		{"nothing to pair", nil, []float64{1}, 0, 0, 0, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := pairedRatio(tc.num, tc.den)
			near := func(a, b float64) bool { return math.Abs(a-b) < 1e-9 }
			if r.ok != tc.ok || !near(r.median, tc.med) || !near(r.lo, tc.lo) || !near(r.hi, tc.hi) {
				t.Fatalf("pairedRatio = %+v, want median %v in [%v, %v], ok %v", r, tc.med, tc.lo, tc.hi, tc.ok)
			}
		})
	}
}

// TestGroups: every kvsession kind is measured beside its adapter's bare
// server and the peers on its storage, and nothing else.
func TestGroups(t *testing.T) {
	gs := groups(serverKinds)
	seen := map[string]int{}
	for _, g := range gs {
		if !g.kinds[0].ceiling || g.kinds[0].adapter != g.adapter {
			t.Errorf("group %s starts with %q, not its bare server", g.name(), g.kinds[0].name)
		}
		kv := 0
		for _, k := range g.kinds[1:] {
			if k.adapter != g.adapter || k.storage != g.storage {
				t.Errorf("group %s holds %q (%s, %s)", g.name(), k.name, k.adapter, k.storage)
			}
			if k.kvsession {
				kv++
			}
			seen[k.name]++
		}
		if kv != 1 {
			t.Errorf("group %s has %d kvsession kinds, want 1", g.name(), kv)
		}
	}
	if len(gs) != len(adapters)*len(storages) {
		t.Errorf("%d groups, want one per adapter and storage (%d)", len(gs), len(adapters)*len(storages))
	}
	for _, k := range serverKinds {
		if !k.ceiling && seen[k.name] != 1 {
			t.Errorf("%q is in %d groups, want 1", k.name, seen[k.name])
		}
	}
}

// TestKinds: the names say which adapter a kvsession kind runs on, and
// every adapter has kvsession on memory, a bare server and a peer.
func TestKinds(t *testing.T) {
	names := map[string]bool{}
	for _, k := range serverKinds {
		if names[k.name] {
			t.Errorf("two kinds named %q", k.name)
		}
		names[k.name] = true
		if k.kvsession && !strings.HasSuffix(k.name, "("+k.adapter+")") {
			t.Errorf("kvsession kind %q does not name its adapter %q", k.name, k.adapter)
		}
		if k.defect != "" && (k.kvsession || k.bare) {
			t.Errorf("%q: only a peer has a known defect", k.name)
		}
	}
	for _, a := range adapters {
		var kv, bare, peer bool
		for _, k := range serverKinds {
			if k.adapter != a {
				continue
			}
			kv = kv || (k.kvsession && k.storage == storageMemory)
			bare = bare || k.ceiling
			peer = peer || (!k.kvsession && !k.bare && k.storage == storageMemory)
		}
		if !kv || !bare || !peer {
			t.Errorf("adapter %s: kvsession on memory %v, bare server %v, a peer on memory %v", a, kv, bare, peer)
		}
	}
}

func TestSelection(t *testing.T) {
	names := func(only string) []string {
		var out []string
		sel := parseSelection(only)
		for _, k := range serverKinds {
			if sel.wants(k, serverKinds) {
				out = append(out, k.name)
			}
		}
		return out
	}
	for _, tc := range []struct {
		only        string
		has, hasNot []string
	}{
		{"", []string{"bare fiber", kvMemoryFasthttp, "scs/redisstore"}, []string{"badger writes alone"}},
		{"kvsession/memory (net/http)", []string{"kvsession/memory (net/http)", "bare net/http"}, []string{"scs/memstore", "bare fasthttp"}},
		{"fiber", []string{"bare fiber", "fiber v2/redis", "kvsession/badger (fiber)"}, []string{kvMemoryFasthttp, "bare net/http"}},
		{"badger writes alone", []string{"badger writes alone", "bare fasthttp"}, []string{"badger alone"}},
	} {
		got := names(tc.only)
		for _, n := range tc.has {
			if !slices.Contains(got, n) {
				t.Errorf("-only %q leaves out %q", tc.only, n)
			}
		}
		for _, n := range tc.hasNot {
			if slices.Contains(got, n) {
				t.Errorf("-only %q takes %q", tc.only, n)
			}
		}
	}
}

// TestFailures: what fails a run (and so CI's -short) and what is only
// reported.
func TestFailures(t *testing.T) {
	kind := func(name string) serverKind {
		k, ok := kindByName(name)
		if !ok {
			t.Fatalf("no kind %q", name)
		}
		return k
	}
	for _, tc := range []struct {
		name string
		rep  report
		fail bool
	}{
		{"all right", report{http: []httpResult{{impl: kvMemoryFasthttp, kind: kind(kvMemoryFasthttp), route: "incr"}}}, false},
		{"kvsession wrong", report{http: []httpResult{{impl: kvMemoryFasthttp, kind: kind(kvMemoryFasthttp), route: "incr", wrong: 1}}}, true},
		{"kvsession lost", report{http: []httpResult{{impl: kvMemoryFasthttp, kind: kind(kvMemoryFasthttp), route: "incr", lost: 3}}}, true},
		{"bare error", report{http: []httpResult{{impl: "bare fiber", kind: kind("bare fiber"), route: "read", errors: 1}}}, true},
		{"known defect", report{http: []httpResult{{impl: "fasthttp/session/memory", kind: kind("fasthttp/session/memory"), route: "incr", wrong: 900, lost: 5000}}}, false},
		{"a known defect's server did not start", report{http: []httpResult{{impl: "fasthttp/session/memory", kind: kind("fasthttp/session/memory"), route: "-", errors: 1, startFailed: true}}}, true},
		{"a known defect's server died making sessions", report{http: []httpResult{{impl: "fasthttp/session/memory", kind: kind("fasthttp/session/memory"), route: "-", errors: 1}}}, false},
		{"a known defect's server died", report{http: []httpResult{{impl: "fasthttp/session/memory", kind: kind("fasthttp/session/memory"), route: "big", errors: 3, died: "panic"}}}, false},
		{"kvsession died", report{http: []httpResult{{impl: kvMemoryFasthttp, kind: kind(kvMemoryFasthttp), route: "big", died: "panic"}}}, true},
		{"peer without a known defect", report{http: []httpResult{{impl: "scs/memstore", kind: kind("scs/memstore"), route: "incr", wrong: 1}}}, true},
		{"peer's loss on one session", report{contention: []contentionResult{{impl: "fiber v3/badger", kind: kind("fiber v3/badger"), lost: 300}}}, false},
		{"kvsession's loss without the lock", report{contention: []contentionResult{{impl: kvBadgerFasthttp, kind: kind(kvBadgerFasthttp), lost: 300}}}, false},
		{"kvsession's loss with the lock", report{contention: []contentionResult{{impl: kvBadgerFasthttp + " +lock", kind: kind(kvBadgerFasthttp), lock: true, lost: 1}}}, true},
		{"kvsession's error on one session", report{contention: []contentionResult{{impl: kvMemoryFasthttp, kind: kind(kvMemoryFasthttp), errors: 1}}}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := tc.rep.failures()
			if (len(f) > 0) != tc.fail {
				t.Fatalf("failures = %q, want failing %v", f, tc.fail)
			}
		})
	}
}

func TestFuncPackage(t *testing.T) {
	for fn, want := range map[string]string{
		"github.com/valyala/fasthttp.(*Server).serveConn":                 "github.com/valyala/fasthttp",
		"github.com/kvsession/kvsession.(*ServerBackend).LoadFromRequest": "github.com/kvsession/kvsession",
		"net.(*conn).Read":                  "net",
		"net/http.(*conn).serve":            "net/http",
		"main.serveKvFasthttp.func1.1":      "main",
		"internal/runtime/syscall.Syscall6": "internal/runtime/syscall",
		"internal/sync.(*HashTrieMap[go.shape.interface {},go.shape.int]).Load": "internal/sync",
		"slices.SortFunc[go.shape.[]github.com/x/y.z,go.shape.struct {}]":       "slices",
	} {
		if got := funcPackage(fn); got != want {
			t.Errorf("funcPackage(%q) = %q, want %q", fn, got, want)
		}
	}
}

// TestLayerOf: a sample is charged to the innermost layer on its stack;
// the runtime and the standard library to whoever called them; system
// calls to the kernel; the collector's work to GC wherever it struck.
func TestLayerOf(t *testing.T) {
	for _, tc := range []struct {
		name  string
		stack []string // leaf first
		want  string
	}{
		{"a write", []string{"internal/runtime/syscall.Syscall6", "syscall.Syscall", "syscall.write", "internal/poll.(*FD).Write", "net.(*conn).Write", "github.com/valyala/fasthttp.writeResponse"}, layerKernel},
		{"an allocation for the store", []string{"runtime.mallocgc", "runtime.makeslice", "github.com/kvsession/kvsession/store/memstore.(*Store).Get", "github.com/kvsession/kvsession.(*ServerBackend).load"}, layerKvStore},
		{"a GC assist in kvsession", []string{"runtime.scanobject", "runtime.gcDrainN", "runtime.gcAssistAlloc", "runtime.mallocgc", "github.com/kvsession/kvsession.(*Session).encode"}, layerGC},
		{"background marking", []string{"runtime.scanobject", "runtime.gcDrain", "runtime.gcBgMarkWorker.func2", "runtime.gcBgMarkWorker"}, layerGC},
		{"the scheduler", []string{"runtime.futex", "runtime.notesleep", "runtime.stopm", "runtime.findRunnable", "runtime.schedule"}, layerRuntime},
		{"polling the network", []string{"runtime.epollwait", "runtime.netpoll", "runtime.findRunnable"}, layerKernel},
		{"encoding", []string{"github.com/vmihailenco/msgpack/v5.(*Encoder).EncodeInt", "github.com/kvsession/kvsession.(*Session).encode"}, layerMsgpack},
		{"the adapter", []string{"bytes.IndexByte", "github.com/kvsession/kvsession/internal/fasthttpio.CookieHeader", "github.com/kvsession/kvsession/kvfasthttp.(*Middleware).Handler.func1"}, layerAdapter},
		{"the peer's map", []string{"internal/sync.(*HashTrieMap[go.shape.interface {},go.shape.interface {}]).Load", "sync.(*Map).Load", "github.com/fasthttp/session/v2/providers/memory.(*Provider).Get"}, layerFHSession},
		{"fasthttp itself", []string{"runtime.memmove", "github.com/valyala/fasthttp.(*ResponseHeader).AppendBytes"}, layerFasthttp},
		{"net/http", []string{"strings.ToLower", "net/http.(*Request).Header.Get", "net/http.(*conn).serve"}, layerNetHTTP},
		{"the handler", []string{"strconv.AppendInt", "main.appendCounter"}, layerHandler},
		{"nobody listed", []string{"strconv.AppendInt", "fmt.Sprintf"}, layerOther},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := layerOf(tc.stack); got != tc.want {
				t.Fatalf("layerOf = %q, want %q", got, tc.want)
			}
		})
	}
}

// TestFatalLine: the first panic line in a child's stderr is kept, however
// the writes split it, and nothing after it replaces it.
func TestFatalLine(t *testing.T) {
	for _, tc := range []struct {
		name   string
		writes []string
		want   string
	}{
		{"none", []string{"bench: serve: closed\n"}, ""},
		{"a panic", []string{"log line\npanic: boom\n\ngoroutine 1 [running]:\n"}, "panic: boom"},
		{"split", []string{"pan", "ic: internal/sync.HashTrieMap: ran out", " of hash bits\n", "panic: later\n"}, "panic: internal/sync.HashTrieMap: ran out of hash bits"},
		{"fatal error", []string{"fatal error: concurrent map writes\n"}, "fatal error: concurrent map writes"},
		{"no newline yet", []string{"panic: half"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var f fatalLine
			for _, w := range tc.writes {
				f.Write([]byte(w))
			}
			if got := f.String(); got != tc.want {
				t.Fatalf("fatal line %q, want %q", got, tc.want)
			}
		})
	}
}

// TestChildDied: a server that panics mid-run is seen to have died, with
// its panic, and one that runs is not.
func TestChildDied(t *testing.T) {
	c, err := startChild("crasher", []string{"sh", "-c", `echo ADDR 127.0.0.1:1; read x; echo "panic: boom" >&2; exit 2`}, "")
	if err != nil {
		t.Fatal(err)
	}
	defer c.stop()
	if d := c.died(); d != "" {
		t.Fatalf("died() = %q while it runs", d)
	}
	io.WriteString(c.stdin, "go\n")
	select {
	case <-c.exited:
	case <-time.After(10 * time.Second):
		t.Fatal("the child did not exit")
	}
	if d := c.died(); !strings.Contains(d, "panic: boom") || !strings.Contains(d, "exit status 2") {
		t.Fatalf("died() = %q, want its panic and exit status", d)
	}
}

// TestTargets: each target reads the paired ratio it is about, from the
// right row, and says met or missed against its own threshold.
func TestTargets(t *testing.T) {
	row := func(impl, route string, vsBare, vsKv float64) httpResult {
		k, _ := kindByName(impl)
		h := httpResult{impl: impl, route: route, kind: k}
		if vsBare > 0 {
			h.vsBare = ratio{median: vsBare, lo: vsBare, hi: vsBare, ok: true}
		}
		if vsKv > 0 {
			h.vsKv = ratio{median: vsKv, lo: vsKv, hi: vsKv, ok: true}
		}
		return h
	}
	r := &report{http: []httpResult{
		row(kvMemoryFasthttp, "incr", 0.84, 0),
		row(kvMemoryFasthttp, "read", 0.91, 0),
		row("fasthttp/session/memory (id copied)", "incr", 0.7, 1.2),
		row("fasthttp/session/memory (id copied)", "read", 0.8, 1.1),
		row("scs/memstore", "big", 0.2, 3.5),
	}}
	got := strings.Join(r.targets(), "")
	for _, want := range []string{
		"| kvsession/memory (fasthttp) /incr ≥ 1.15× fasthttp/session/memory (id copied) | 1.20× (rounds 1.20–1.20) | met |",
		"| kvsession/memory (fasthttp) /read ≥ 1.15× fasthttp/session/memory (id copied) | 1.10× (rounds 1.10–1.10) | **missed** |",
		"| kvsession/memory (fasthttp) /read ≥ 90% of bare fasthttp | 91% (rounds 91–91%) | met |",
		"| kvsession/memory (fasthttp) /incr ≥ 85% of bare fasthttp | 84% (rounds 84–84%) | **missed** |",
		"| kvsession/memory (net/http) /big ≥ 3.00× scs/memstore | 3.50× (rounds 3.50–3.50) | met |",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("targets lack %q; got:\n%s", want, got)
		}
	}
	if strings.Contains(got, "/big ≥ 1.15×") {
		t.Errorf("a target without its rows was reported:\n%s", got)
	}
}
