package main

import (
	"fmt"
	"html"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"
)

// result finds impl's row for route (in its group).
func (r *report) result(impl, route string) (httpResult, bool) {
	for _, h := range r.http {
		if h.impl == impl && h.route == route {
			return h, true
		}
	}
	return httpResult{}, false
}

func (r *report) markdown() string {
	var b strings.Builder
	o := r.opts
	pin := "server pinned to CPU 1, load generator to CPU 0"
	if !o.pinned {
		pin = "not pinned"
	}
	fmt.Fprintf(&b, "Run of %s on %s/%s, %d CPUs, %s; %s; %d sessions, %d keep-alive connections; %d rounds of %v per server and route.\n\n",
		r.started.Format("2006-01-02"), runtime.GOOS, runtime.GOARCH, machineCPUs(), runtime.Version(), pin, o.sessions, o.conns, o.rounds, o.duration)

	if len(r.http) > 0 {
		r.writeHTTP(&b)
	}

	if len(r.contention) > 0 {
		fmt.Fprintf(&b, "### One session, %d connections at once (%v of /incr)\n\n", o.conns, o.contendFor)
		b.WriteString("Every connection drives the same session. kvsession with its session lock (+lock) must lose nothing; without it, and every peer (none locks a session), keeps the last of concurrent writes and loses the others: the losses are the point of the table, not a failure.\n\n")
		b.WriteString("| adapter | implementation | req/s | increments acknowledged | lost updates | errors |\n|---|---|---:|---:|---:|---:|\n")
		for _, a := range adapters {
			for _, c := range r.contention {
				if c.kind.adapter == a {
					fmt.Fprintf(&b, "| %s | %s | %.0f | %d | %d | %d |\n", a, c.impl, c.rps, c.acked, c.lost, c.errors)
				}
			}
		}
		b.WriteString("\n")
	}

	if len(r.scaling) > 0 {
		fmt.Fprintf(&b, "### Scaling (%v per route)\n\n", o.scaleFor)
		b.WriteString("/incr vs smallest is a figure over the implementation's own at the fewest sessions, with the default Badger CacheSize; " +
			"a row with a CacheSize of its own is compared with that too. " +
			"The load starts once the server has gone quiet after the sessions were created (under 5% of its core for a second, at most a minute: " +
			"Badger compacts for a while after a million writes); quiet after says how long that took.\n\n")
		b.WriteString("| implementation | sessions | created in | quiet after | /incr req/s | /read req/s | /incr vs smallest | server RSS MiB |\n|---|---:|---:|---:|---:|---:|---:|---:|\n")
		first := map[string]float64{}
		for _, s := range r.scaling {
			if s.createFailedErr != "" {
				fmt.Fprintf(&b, "| %s | %d | failed: %s | | | | | |\n", s.label(), s.sessions, s.createFailedErr)
				continue
			}
			if _, ok := first[s.impl]; !ok {
				first[s.impl] = s.incrRPS
			}
			fmt.Fprintf(&b, "| %s | %d | %v | %v | %.0f | %.0f | %.2f | %.0f |\n", s.label(), s.sessions, s.create.Round(time.Millisecond),
				s.settled.Round(100*time.Millisecond), s.incrRPS, s.readRPS, s.incrRPS/first[s.impl], s.rssMiB)
		}
		b.WriteString("\n")
	}

	if len(r.inProcess) > 0 {
		b.WriteString("### In process: one request's session work (load, modify, save)\n\n")
		b.WriteString("| implementation | op | ns/op | B/op | allocs/op | × kvsession/memory |\n|---|---|---:|---:|---:|---:|\n")
		base := map[string]float64{}
		for _, p := range r.inProcess {
			if p.contender == "kvsession/memory" {
				base[p.op] = float64(p.r.NsPerOp())
			}
		}
		for _, p := range r.inProcess {
			fmt.Fprintf(&b, "| %s | %s | %d | %d | %d | %.1f |\n", p.contender, p.op, p.r.NsPerOp(), p.r.AllocedBytesPerOp(), p.r.AllocsPerOp(),
				float64(p.r.NsPerOp())/base[p.op])
		}
		b.WriteString("\n")
	}

	if t := r.targets(); len(t) > 0 {
		b.WriteString("### Targets (issue 20)\n\nPaired ratios from the tables above: the median over rounds of the two servers' ratio in each round, with the lowest and highest round.\n\n")
		b.WriteString("| target | measured | met |\n|---|---|---|\n")
		for _, line := range t {
			b.WriteString(line)
		}
		b.WriteString("\n")
	}
	for _, n := range r.notes {
		fmt.Fprintf(&b, "- %s\n", n)
	}
	return b.String()
}

// writeHTTP writes the comparison: a table per adapter, its rows grouped by
// storage, then the known defects and whether the load generator was the
// limit.
func (r *report) writeHTTP(b *strings.Builder) {
	b.WriteString("### Over HTTP, by adapter\n\n")
	b.WriteString("Each adapter's servers on one storage (and its bare server beside them) are up at once, and the load goes round them in rounds, one slice each per round. ")
	b.WriteString("req/s is a server's median over the rounds; ÷ bare and kvsession ÷ it are paired ratios, the median of the two servers' ratio round by round, so drift on a shared machine falls on both alike; rounds gives the lowest and highest round's ratio to bare. ")
	b.WriteString("The bare servers' clients send a session-sized Cookie header, so the difference is the session work alone.\n\n")
	b.WriteString("Server CPU is the server process's user + system time per request. Response bytes are what the load generator read per response, headers and body. ")
	b.WriteString("Busy is CPU time over wall time: the server's own, and every process's on the load generator's core (CPU 0). Lost updates: increments acknowledged and then missing, as later replies showed them or as reading 1,000 sessions back at the end found them.\n\n")
	for _, a := range adapters {
		var rows []httpResult
		for _, h := range r.http {
			if h.adapter == a {
				rows = append(rows, h)
			}
		}
		if len(rows) == 0 {
			continue
		}
		fmt.Fprintf(b, "#### %s\n\n", a)
		b.WriteString("| storage | implementation | route | req/s | ÷ bare | rounds ÷ bare | kvsession ÷ it | p50 µs | p99 µs | server CPU µs/req | response bytes | busy: server, CPU 0 | errors | wrong | lost | RSS MiB |\n")
		b.WriteString("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
		for _, h := range rows {
			if h.route == "-" {
				fmt.Fprintf(b, "| %s | %s | - | failed | | | | | | | | | %d | | | |\n", h.storage, h.impl, h.errors)
				continue
			}
			spread := "-"
			if h.vsBare.ok {
				spread = fmt.Sprintf("%.2f–%.2f", h.vsBare.lo, h.vsBare.hi)
			}
			vsKv := "-"
			if h.vsKv.ok {
				vsKv = fmt.Sprintf("**%.2f**", h.vsKv.median)
			}
			wrong, lost := fmt.Sprint(h.wrong), "-"
			if h.kind.bare {
				wrong = "n/a"
			} else if h.route == "incr" {
				lost = fmt.Sprint(h.lost)
			}
			name := h.impl
			if h.kind.defect != "" {
				name += " †"
			}
			if h.died != "" {
				name += " (died)"
			}
			fmt.Fprintf(b, "| %s | %s | /%s | %.0f | %s | %s | %s | %.0f | %.0f | %.1f | %.0f | %.0f%%, %.0f%% | %d | %s | %s | %.0f |\n",
				h.storage, name, h.route, h.rps, h.vsBare, spread, vsKv, us(h.p50), us(h.p99), us(h.serverCPU), h.respBytes,
				100*min(h.serverBusy, 1), 100*min(h.core0, 1), h.errors, wrong, lost, h.rssMiB)
		}
		b.WriteString("\n")
		if s := r.generatorLimit(a); s != "" {
			b.WriteString(s + "\n\n")
		}
	}
	r.writeDefects(b)
	var errs []string
	for _, h := range r.http {
		if h.firstErr != "" {
			errs = append(errs, fmt.Sprintf("- %s /%s (%s), first error: `%s`\n", h.impl, h.route, h.storage, h.firstErr))
		}
	}
	if len(errs) > 0 {
		b.WriteString("First errors:\n\n" + strings.Join(errs, "") + "\n")
	}
}

// writeDefects lists the peers' known defects (the † rows), whether this
// run saw them, and why they are expected.
func (r *report) writeDefects(b *strings.Builder) {
	seen := map[string]bool{}
	for _, h := range r.http {
		if h.kind.defect == "" || seen[h.impl] {
			continue
		}
		seen[h.impl] = true
		var wrong, errs uint64
		var lost, ahead int64
		for _, x := range r.http {
			if x.impl == h.impl {
				wrong += x.wrong
				errs += x.errors
				lost += x.lost
				ahead += x.ahead
			}
		}
		what := "not seen in this run"
		if wrong+errs > 0 || lost > 0 {
			what = fmt.Sprintf("seen in this run: %d wrong replies, %d of them with a counter above the one acknowledged (an older copy of the session, or another session), %d lost updates, %d errors", wrong, ahead, lost, errs)
		}
		for _, x := range r.http {
			if x.impl == h.impl && x.died != "" {
				what += "; " + x.died
				break
			}
		}
		fmt.Fprintf(b, "† %s, a known defect, expected here and not failed on (%s): %s.\n\n", h.impl, what, h.kind.defect)
	}
}

// generatorLimit says, from the bare server's rows of adapter a, whether
// the load generator or the server set the pace.
func (r *report) generatorLimit(a string) string {
	if !r.opts.pinned {
		return ""
	}
	var serverBusy, core0, core1, loadBusy float64
	n := 0
	name := ""
	for _, h := range r.http {
		if h.adapter == a && h.kind.ceiling && h.route != "-" {
			serverBusy += h.serverBusy
			core0 += h.core0
			core1 += h.core1
			loadBusy += h.loadBusy
			name = h.impl
			n++
		}
	}
	if n == 0 {
		return ""
	}
	// /proc counts in ticks of 10 ms: short slices can add up past 100%.
	serverBusy, core0, core1, loadBusy = min(serverBusy/float64(n), 1), min(core0/float64(n), 1), min(core1/float64(n), 1), min(loadBusy/float64(n), 1)
	s := fmt.Sprintf("Load generator or server? While %s was driven, its process kept %.0f%% of CPU 1 busy (every process on CPU 1: %.0f%%), and CPU 0, the load generator's, was %.0f%% busy (the generator itself %.0f%%). ",
		name, 100*serverBusy, 100*core1, 100*core0, 100*loadBusy)
	switch {
	case serverBusy >= 0.9:
		s += "The server used its core to the full: it, not the load generator, set the pace, and the ratios to bare are the session work's."
	case core1-serverBusy > 0.1:
		s += fmt.Sprintf("Other processes took %.0f%% of the servers' core: the machine was not quiet, and these figures are not the servers' own. Run again on a quiet machine.", 100*(core1-serverBusy))
		if core0 >= 0.9 {
			s += " The load generator's core was full as well."
		}
	case core0 >= 0.9:
		s += "**The load generator's core was the limit**, not the server's: bare " + a + "'s figures are the generator's ceiling, so ratios to it understate how close the others come to the bare server, and a contender near bare may be held back by the generator too."
		if core0-loadBusy > 0.1 {
			s += fmt.Sprintf(" Other processes (Redis, when the bench runs its own, is pinned there) took %.0f%% of it.", 100*(core0-loadBusy))
		}
	default:
		s += "Neither core was full: the server waited on the network or the generator's replies more than on its CPU."
	}
	return s
}

// targets checks the figures issue 20 set, where this run measured them.
func (r *report) targets() []string {
	var out []string
	add := func(target, measured string, met bool) {
		mark := "met"
		if !met {
			mark = "**missed**"
		}
		out = append(out, fmt.Sprintf("| %s | %s | %s |\n", target, measured, mark))
	}
	withRounds := func(x ratio, pct bool) string {
		if pct {
			return fmt.Sprintf("%.0f%% (rounds %.0f–%.0f%%)", 100*x.median, 100*x.lo, 100*x.hi)
		}
		return fmt.Sprintf("%.2f× (rounds %.2f–%.2f)", x.median, x.lo, x.hi)
	}
	// kvsession ÷ a peer, from the peer's row.
	vsPeer := func(kv, peer string, want float64, routes ...string) {
		for _, rt := range routes {
			if p, ok := r.result(peer, rt); ok && p.vsKv.ok {
				add(fmt.Sprintf("%s /%s ≥ %.2f× %s", kv, rt, want, peer), withRounds(p.vsKv, false), p.vsKv.median >= want)
			}
		}
	}
	// kvsession ÷ its bare server, from kvsession's row.
	vsBare := func(kv, bare string, want float64, rt string) {
		if h, ok := r.result(kv, rt); ok && h.vsBare.ok {
			add(fmt.Sprintf("%s /%s ≥ %.0f%% of %s", kv, rt, 100*want, bare), withRounds(h.vsBare, true), h.vsBare.median >= want)
		}
	}
	vsPeer(kvMemoryFasthttp, "fasthttp/session/memory (id copied)", 1.15, "incr", "read", "big")
	vsBare(kvMemoryFasthttp, "bare fasthttp", 0.90, "read")
	vsBare(kvMemoryFasthttp, "bare fasthttp", 0.85, "incr")
	vsPeer("kvsession/memory (net/http)", "scs/memstore", 3, "incr", "read", "big")
	for _, rt := range []string{"incr", "read", "big"} {
		vsBare("kvsession/memory (net/http)", "bare net/http", 0.85, rt)
	}
	vsPeer("kvsession/memory (fiber)", "fiber v3/memory", 3, "incr", "read", "big")
	vsPeer("kvsession/memory (fiber)", "fiber v2/memory", 3, "incr", "read", "big")

	small := map[string]scaleResult{}
	for _, s := range r.scaling {
		if s.createFailedErr != "" {
			continue
		}
		if _, ok := small[s.impl]; !ok {
			small[s.impl] = s
		}
		if s.sessions == 1_000_000 && small[s.impl].sessions < s.sessions && s.impl == kvBadgerFasthttp {
			base := small[s.impl]
			measured := fmt.Sprintf("%.0f%% (%.0f of %.0f req/s; RSS %.0f MiB, %.0f MiB at %d)",
				100*s.incrRPS/base.incrRPS, s.incrRPS, base.incrRPS, s.rssMiB, base.rssMiB, base.sessions)
			if a, ok := r.scaleRatio("badger alone", base.sessions, s.sessions); ok && s.cacheMiB == 0 {
				measured += fmt.Sprintf("; Badger alone, raw transactions: %.0f%%", 100*a)
			}
			cache := "default CacheSize"
			if s.cacheMiB > 0 {
				cache = fmt.Sprintf("CacheSize %d MiB", s.cacheMiB)
			}
			add(fmt.Sprintf("%s /incr at 1M sessions ≥ 75%% of its %d figure (%s)", s.impl, base.sessions, cache), measured, s.incrRPS >= 0.75*base.incrRPS)
		}
	}
	for _, c := range r.contention {
		if !c.kind.kvsession || !c.lock {
			continue
		}
		var peers []string
		for _, p := range r.contention {
			if p.kind.adapter == c.kind.adapter && p.kind.storage == c.kind.storage && !p.kind.kvsession {
				peers = append(peers, fmt.Sprintf("%s %d of %d", p.impl, p.lost, p.acked))
			}
		}
		measured := fmt.Sprintf("%d lost of %d", c.lost, c.acked)
		if len(peers) > 0 {
			measured += "; beside it, lost without a lock: " + strings.Join(peers, ", ")
		}
		add(c.impl+": one session, every connection: 0 lost updates", measured, c.lost == 0 && c.errors == 0)
	}
	return out
}

// scaleRatio is impl's /incr req/s at to sessions over its figure at from.
func (r *report) scaleRatio(impl string, from, to int) (float64, bool) {
	var a, b float64
	for _, s := range r.scaling {
		if s.impl == impl && s.createFailedErr == "" {
			switch s.sessions {
			case from:
				a = s.incrRPS
			case to:
				b = s.incrRPS
			}
		}
	}
	return b / a, a > 0 && b > 0
}

func (r *report) write(dir, md string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "results.md"), []byte(md), 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "throughput.svg"), []byte(r.svg()), 0o644)
}

// svg draws each implementation's median req/s per route as horizontal
// bars, grouped by adapter; a bare server, measured beside each storage's
// kinds, is drawn once, from its memory group.
func (r *report) svg() string {
	type bar struct {
		impl, label string
		rps         map[string]float64
	}
	type section struct {
		adapter string
		bars    []bar
	}
	var sections []section
	maxRPS := 1.0
	for _, a := range adapters {
		sec := section{adapter: a}
		first := map[string]string{} // the storage group an implementation was first seen in
		for _, h := range r.http {
			if h.adapter != a || h.route == "-" {
				continue
			}
			st, seen := first[h.impl]
			if !seen {
				first[h.impl], st = h.storage, h.storage
				sec.bars = append(sec.bars, bar{impl: h.impl, rps: map[string]float64{}})
				if h.kind.defect != "" {
					sec.bars[len(sec.bars)-1].label = h.impl + " †"
				}
			}
			if st != h.storage {
				continue
			}
			for i := range sec.bars {
				if sec.bars[i].impl == h.impl {
					sec.bars[i].rps[h.route] = h.rps
				}
			}
			maxRPS = max(maxRPS, h.rps)
		}
		if len(sec.bars) > 0 {
			sections = append(sections, sec)
		}
	}
	colors := map[string]string{"incr": "#3b6fb6", "read": "#5aa469", "big": "#d08c3a"}
	const (
		left, width, barH, gap, top, heading = 240.0, 520.0, 11.0, 10.0, 46.0, 22.0
	)
	groupH := float64(len(routes))*barH + gap
	height := top + 30
	for _, s := range sections {
		height += heading + float64(len(s.bars))*groupH
	}
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" font-family="sans-serif" font-size="11">`+"\n", left+width+90, height)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="#fff"/>`+"\n")
	fmt.Fprintf(&b, `<text x="10" y="18" font-size="14" font-weight="bold">Requests per second, one server core, %d sessions, %d connections (median of %d rounds)</text>`+"\n", r.opts.sessions, r.opts.conns, r.opts.rounds)
	x := left
	for _, rt := range routes {
		fmt.Fprintf(&b, `<rect x="%.0f" y="28" width="10" height="10" fill="%s"/><text x="%.0f" y="37">/%s</text>`+"\n", x, colors[rt.name], x+14, rt.name)
		x += 70
	}
	y := top
	for _, s := range sections {
		fmt.Fprintf(&b, `<text x="10" y="%.1f" font-size="12" font-weight="bold">%s</text>`+"\n", y+14, html.EscapeString(s.adapter))
		y += heading
		for _, g := range s.bars {
			label := g.impl
			if g.label != "" {
				label = g.label
			}
			fmt.Fprintf(&b, `<text x="%.0f" y="%.1f" text-anchor="end">%s</text>`+"\n", left-8, y+float64(len(routes))*barH/2+4, html.EscapeString(label))
			for ri, rt := range routes {
				v := g.rps[rt.name]
				w := width * v / maxRPS
				by := y + float64(ri)*barH
				fmt.Fprintf(&b, `<rect x="%.0f" y="%.1f" width="%.1f" height="%.1f" fill="%s"/>`, left, by, w, barH-1, colors[rt.name])
				fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" font-size="9">%.0fk</text>`+"\n", left+w+4, by+barH-2, v/1000)
			}
			y += groupH
		}
	}
	fmt.Fprintf(&b, `<line x1="%.0f" y1="%.0f" x2="%.0f" y2="%.0f" stroke="#999"/>`+"\n", left, top-2, left, height-30)
	fmt.Fprintf(&b, `<text x="10" y="%.0f" fill="#555">kvsession bench, %s; each peer on its own adapter; bare servers as measured beside the memory stores; † a peer that loses sessions here (results.md)</text>`+"\n", height-10, r.started.Format("2006-01-02"))
	b.WriteString("</svg>\n")
	return b.String()
}
