package main

import (
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
)

// A group is one adapter's servers on one storage: its bare server, the
// kvsession kind and the peers keeping sessions there (and, on fasthttp
// with Badger, Badger alone). All are up at once and the load goes round
// them in rounds, A B C, B C A, C A B, …, each server driven for one slice
// per round; a server's figure is its median over the rounds, and a ratio
// between two servers is the median of their ratios round by round. A
// shared machine's drift, which moves a run of a few seconds by a tenth
// here, lands on every server of a round alike, and the starting server
// changes from round to round so that none is always the first after a
// switch. Groups run one after another: Badger's background work
// (flushes, compaction) would otherwise run on the servers' core while
// another storage's servers are measured.
type group struct {
	adapter, storage string
	kinds            []serverKind
}

func (g group) name() string { return g.adapter + " / " + g.storage }

// groups arranges kinds into groups, adapters and storages in their
// order; the bare kinds join every group of their adapter that has
// another kind.
func groups(kinds []serverKind) []group {
	var out []group
	for _, a := range adapters {
		for _, s := range storages {
			g := group{adapter: a, storage: s}
			var others []serverKind
			for _, k := range kinds {
				if k.adapter == a && k.storage == s {
					others = append(others, k)
				}
			}
			if len(others) == 0 {
				continue
			}
			for _, k := range kinds {
				if k.adapter == a && k.storage == "" {
					g.kinds = append(g.kinds, k)
				}
			}
			g.kinds = append(g.kinds, others...)
			out = append(out, g)
		}
	}
	return out
}

// httpResult is one implementation's figures for one route in one group.
type httpResult struct {
	impl, adapter, storage, route string
	kind                          serverKind
	rounds                        []float64 // req/s, round by round
	rps                           float64   // median of rounds
	// vsBare is the median over rounds of this server's req/s over its
	// adapter's bare server's in the same round; vsKv, on a peer's row,
	// the median of kvsession's (same adapter and storage) over this one's.
	vsBare, vsKv         ratio
	p50, p99             time.Duration
	requests, errors     uint64
	wrong                uint64 // replies that were not the previous value + 1 (or the current value, for reads)
	lost                 int64  // increments acknowledged and later missing (on the /incr row)
	ahead                int64  // replies above the acknowledged count, another session's as a rule (on the /incr row)
	rssMiB               float64
	serverCPU, loadCPU   time.Duration // CPU time per request, of the server and of the load generator
	serverBusy, loadBusy float64       // CPU time over wall time: the server's and the load generator's
	core0, core1         float64       // how busy CPU 0 (the generator's) and CPU 1 (the servers') were, every process counted
	respBytes, reqBytes  float64       // bytes on the wire per response (headers + body) and per request
	firstErr             string
	died                 string // why the server's process died during the run, if it did
	startFailed          bool   // its process did not start
}

// ratio is a paired ratio: its median over rounds, and the lowest and
// highest round, how far apart two runs of the same code land here.
type ratio struct {
	median, lo, hi float64
	ok             bool
}

func (r ratio) String() string {
	if !r.ok {
		return "-"
	}
	return fmt.Sprintf("%.2f", r.median)
}

// median of xs (the mean of the middle two for an even count).
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// positive is xs without its zeros: the rounds a server was measured in.
func positive(xs []float64) []float64 {
	var out []float64
	for _, x := range xs {
		if x > 0 {
			out = append(out, x)
		}
	}
	return out
}

// pairedRatio is num over den round by round: its median, lowest and
// highest.
func pairedRatio(num, den []float64) ratio {
	var rs []float64
	for i := range min(len(num), len(den)) {
		if den[i] > 0 && num[i] > 0 {
			rs = append(rs, num[i]/den[i])
		}
	}
	if len(rs) == 0 {
		return ratio{}
	}
	return ratio{median: median(rs), lo: slices.Min(rs), hi: slices.Max(rs), ok: true}
}

// member is one server of a running group.
type member struct {
	kind    serverKind
	srv     *child
	clients []client
	failed  string
	started bool   // its process started, whatever happened next
	died    string // why its process died during the run, if it did
	// per route: what the slices added up to
	acc map[string]*accum
}

type accum struct {
	rounds                      []float64
	hist                        histogram
	requests, errors, wrong, ok uint64
	elapsed                     time.Duration
	serverCPU, loadCPU          time.Duration
	core0, core1                time.Duration // busy time of the two CPUs, every process
	bytesIn, bytesOut           uint64
	rssMiB                      float64
	firstErr                    string
}

// runGroup measures every kind of g, interleaved (see group).
func runGroup(g group, o options, redisAddr string) []httpResult {
	progress("group %s: %d servers, %d rounds of %v per route", g.name(), len(g.kinds), o.rounds, o.duration)
	var members []*member
	for _, k := range g.kinds {
		m := &member{kind: k, acc: map[string]*accum{}}
		members = append(members, m)
		srv, err := startServer(k, false, redisAddr, o.pinned, o.profile)
		if err != nil {
			m.failed = err.Error()
			progress("%s: %v", k.name, err)
			continue
		}
		m.srv, m.started = srv, true
		defer srv.stop()
		if k.bare {
			m.clients = bareClients(o.sessions)
			continue
		}
		m.clients = make([]client, o.sessions)
		t0 := time.Now()
		if err := createSessions(srv.addr, o.conns, m.clients); err != nil {
			m.failed = "creating sessions: " + err.Error()
			if d := srv.died(); d != "" {
				m.failed = "creating sessions: " + d
			}
			progress("%s: %v", k.name, err)
			continue
		}
		progress("%-36s %d sessions created in %v", k.name, len(m.clients), time.Since(t0).Round(time.Millisecond))
	}
	var up []*member
	for _, m := range members {
		if m.failed == "" {
			up = append(up, m)
		}
	}
	for _, rt := range routes {
		for r := 0; r < o.rounds; r++ {
			for i := range up {
				m := up[(i+r)%len(up)]
				a := m.acc[rt.name]
				if a == nil {
					a = &accum{}
					m.acc[rt.name] = a
				}
				if m.died != "" {
					a.rounds = append(a.rounds, 0) // keeps the rounds of every server in step
					continue
				}
				measureSlice(m, rt, o, a)
				if d := m.srv.died(); d != "" {
					// Said once, as the cause of the errors around it.
					m.died, a.firstErr = d, d
					progress("%s: %s", m.kind.name, d)
				}
			}
		}
		for _, m := range up {
			a := m.acc[rt.name]
			a.rssMiB = m.srv.rssMiB()
			progress("%-36s /%-4s %8.0f req/s (median of %d)  errors %d  wrong %d  CPU/req server %.2fµs, load generator %.2fµs",
				m.kind.name, rt.name, median(positive(a.rounds)), len(positive(a.rounds)), a.errors, a.wrong,
				us(perRequest(a.serverCPU, a.requests)), us(perRequest(a.loadCPU, a.requests)))
		}
	}
	lost, ahead := map[string]int64{}, map[string]int64{}
	for _, m := range up {
		if m.kind.bare || m.died != "" {
			continue
		}
		n, err := verify(m.srv.addr, m.clients, o.verifyCount)
		// What the replies showed lost on the way, and what reading the
		// counters back finds missing now.
		for _, cl := range m.clients {
			n += cl.lost
			ahead[m.kind.name] += cl.ahead
		}
		lost[m.kind.name] = n
		if err != nil {
			a := m.acc[routeIncr.name]
			a.errors++
			a.firstErr = "verifying: " + err.Error()
		}
		progress("%-36s %d lost updates (in replies, and reading %d sessions' counters back)", m.kind.name, n, min(o.verifyCount, len(m.clients)))
	}

	var out []httpResult
	for _, m := range members {
		if m.failed != "" {
			out = append(out, httpResult{impl: m.kind.name, adapter: g.adapter, storage: g.storage, route: "-", kind: m.kind, errors: 1, firstErr: m.failed, startFailed: !m.started})
			continue
		}
		for _, rt := range routes {
			a := m.acc[rt.name]
			h := httpResult{impl: m.kind.name, adapter: g.adapter, storage: g.storage, route: rt.name, kind: m.kind,
				rounds: a.rounds, rps: median(positive(a.rounds)), died: m.died, p50: a.hist.quantile(0.50), p99: a.hist.quantile(0.99),
				requests: a.requests, errors: a.errors, wrong: a.wrong, rssMiB: a.rssMiB, firstErr: a.firstErr,
				serverCPU: perRequest(a.serverCPU, a.requests), loadCPU: perRequest(a.loadCPU, a.requests)}
			if a.elapsed > 0 {
				h.serverBusy = a.serverCPU.Seconds() / a.elapsed.Seconds()
				h.loadBusy = a.loadCPU.Seconds() / a.elapsed.Seconds()
				h.core0 = a.core0.Seconds() / a.elapsed.Seconds()
				h.core1 = a.core1.Seconds() / a.elapsed.Seconds()
			}
			if a.requests > 0 {
				h.respBytes = float64(a.bytesIn) / float64(a.requests)
				h.reqBytes = float64(a.bytesOut) / float64(a.requests)
			}
			if rt.name == routeIncr.name {
				h.lost, h.ahead = lost[m.kind.name], ahead[m.kind.name]
			}
			out = append(out, h)
		}
	}
	pairRatios(out)
	return out
}

// measureSlice drives m with rt for one slice and adds what it measured
// to a.
func measureSlice(m *member, rt route, o options, a *accum) {
	serverCPU, selfCPU := m.srv.cpu(), procCPU(os.Getpid())
	cpus := readCPUTimes()
	r := runLoad(m.srv.addr, o.conns, m.clients, rt, o.duration, !m.kind.bare)
	after := readCPUTimes()
	a.serverCPU += m.srv.cpu() - serverCPU
	a.loadCPU += procCPU(os.Getpid()) - selfCPU
	if len(cpus) > 1 && len(after) > 1 {
		a.core0 += after[0].busy - cpus[0].busy
		a.core1 += after[1].busy - cpus[1].busy
	}
	a.rounds = append(a.rounds, r.rps())
	a.hist.merge(&r.hist)
	a.requests += r.requests
	a.errors += r.errors
	a.wrong += r.wrong
	a.ok += r.ok
	a.elapsed += r.elapsed
	a.bytesIn += r.bytesIn
	a.bytesOut += r.bytesOut
	if r.firstErr != nil && a.firstErr == "" {
		a.firstErr = r.firstErr.Error()
	}
}

func perRequest(d time.Duration, n uint64) time.Duration {
	if n == 0 {
		return 0
	}
	return d / time.Duration(n)
}

// pairRatios fills in the paired ratios of one group's results: every row
// against its adapter's bare server, and every peer's against the
// kvsession kind of its group.
func pairRatios(rs []httpResult) {
	find := func(route string, pick func(k serverKind) bool) *httpResult {
		for i := range rs {
			if rs[i].route == route && pick(rs[i].kind) {
				return &rs[i]
			}
		}
		return nil
	}
	for i := range rs {
		h := &rs[i]
		if bare := find(h.route, func(k serverKind) bool { return k.ceiling }); bare != nil && !h.kind.ceiling {
			h.vsBare = pairedRatio(h.rounds, bare.rounds)
		}
		if kv := find(h.route, func(k serverKind) bool { return k.kvsession }); kv != nil && !h.kind.kvsession && !h.kind.bare {
			h.vsKv = pairedRatio(kv.rounds, h.rounds)
		}
	}
}

// cpuTimes is one CPU's busy time so far, every process counted.
type cpuTimes struct{ busy time.Duration }

// readCPUTimes reads every CPU's busy time (all but idle and iowait; steal
// counts, as time the CPU was not there for us) from
// /proc/stat, in CPU order; nil where there is none.
func readCPUTimes() []cpuTimes {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return nil
	}
	var out []cpuTimes
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 6 || !strings.HasPrefix(f[0], "cpu") || f[0] == "cpu" {
			continue
		}
		var busy int64
		for i, v := range f[1:] {
			n, _ := strconv.ParseInt(v, 10, 64)
			if i == 3 || i == 4 { // idle, iowait
				continue
			}
			if i >= 8 { // guest time is counted in user time already
				break
			}
			busy += n
		}
		out = append(out, cpuTimes{busy: time.Duration(busy) * time.Second / clockTicks})
	}
	return out
}
