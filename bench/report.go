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

// baseline names the kvsession row a result is compared with: the one on
// the same storage, memory for everything in process.
func baseline(impl string) string {
	switch {
	case strings.Contains(impl, "badger"):
		return "kvsession/badger"
	case strings.Contains(impl, "redis"):
		return "kvsession/redis"
	}
	return "kvsession/memory"
}

func (r *report) httpRPS(impl, route string) float64 {
	for _, h := range r.http {
		if h.impl == impl && h.route == route {
			return h.rps
		}
	}
	return 0
}

func (r *report) markdown() string {
	var b strings.Builder
	o := r.opts
	pin := "server pinned to CPU 1, load generator to CPU 0"
	if !o.pinned {
		pin = "not pinned"
	}
	fmt.Fprintf(&b, "Run of %s on %s/%s, %d CPUs, %s; %s; %d sessions, %d keep-alive connections, %v per route.\n\n",
		r.started.Format("2006-01-02"), runtime.GOOS, runtime.GOARCH, machineCPUs(), runtime.Version(), pin, o.sessions, o.conns, o.duration)

	if len(r.http) > 0 {
		b.WriteString("### Over HTTP: req/s per route\n\n")
		b.WriteString("`× kvsession` divides a row's req/s by kvsession's on the same storage (memory for the bare servers). ")
		b.WriteString("Lost updates: increments acknowledged but missing when 1,000 sessions were read back at the end.\n\n")
		b.WriteString("Server CPU is the server process's user + system time per request: steadier than req/s on a shared machine, and most of it is the kernel's loopback TCP work.\n\n")
		b.WriteString("| implementation | route | req/s | × kvsession | p50 µs | p99 µs | server CPU µs/req | errors | wrong replies | lost updates | server RSS MiB |\n")
		b.WriteString("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
		for _, h := range r.http {
			ratio := "-"
			if base := r.httpRPS(baseline(h.impl), h.route); base > 0 && h.rps > 0 {
				ratio = fmt.Sprintf("%.2f", h.rps/base)
			}
			wrong, lost := fmt.Sprint(h.wrong), "-"
			if h.bare {
				wrong = "n/a"
			} else if h.route == "incr" {
				lost = fmt.Sprint(h.lost)
			}
			fmt.Fprintf(&b, "| %s | /%s | %.0f | %s | %.1f | %.1f | %.1f | %d | %s | %s | %.0f |\n",
				h.impl, h.route, h.rps, ratio, us(h.p50), us(h.p99), us(h.serverCPU), h.errors, wrong, lost, h.rssMiB)
		}
		b.WriteString("\n")
		for _, h := range r.http {
			if h.firstErr != "" {
				fmt.Fprintf(&b, "- %s /%s, first error: `%s`\n", h.impl, h.route, h.firstErr)
			}
		}
		b.WriteString("\n")
	}

	if len(r.paired) > 0 {
		b.WriteString("### Paired with the ceiling\n\n")
		b.WriteString("Bare fasthttp and kvsession servers up at once, the load alternating between them in short slices, so that drift on a shared machine hits all alike; the targets use these. The bare servers' clients send the same Cookie header as a session client, so the difference is the session work alone. ")
		b.WriteString("Badger alone is bare fasthttp doing one raw Badger transaction per request on the key the Cookie names, with no session code and no cache: what a session library gets from this Badger unless, like kvsession's Badger store, it keeps sessions in memory too and commits concurrent writes together. It runs beside kvsession/badger.")
		if _, ok := r.paired["badger writes alone incr"]; ok {
			b.WriteString(" Badger writes alone also keeps every counter in its own memory and only writes to Badger, reading nothing from it: the most a store with a perfect cache gets from one Badger transaction per write.")
		}
		b.WriteString("\n\n")
		b.WriteString("÷ bare pools every slice; slice by slice is the lowest and highest of each slice's ratio to the bare slice just before it, how far apart two runs of the same code can land here. ")
		b.WriteString("Server CPU is per request, as in the table above; busy is each server's CPU time over its slices' wall time. Near 100% means the servers, not the load generator, set the pace.\n\n")
		b.WriteString("| server | route | its req/s | bare fasthttp req/s beside it | ÷ bare | ÷ bare, slice by slice | server CPU µs/req (bare, it) | busy (bare, it) |\n|---|---|---:|---:|---:|---:|---:|---:|\n")
		for _, impl := range []string{"kvsession/memory", "kvsession/badger", "badger alone", "badger writes alone"} {
			vs := "bare fasthttp vs " + impl
			if strings.HasPrefix(impl, "badger ") {
				vs = "bare fasthttp vs kvsession/badger"
			}
			for _, rt := range []string{"incr", "read"} {
				bare, k := r.paired[vs+" "+rt], r.paired[impl+" "+rt]
				if bare > 0 && k > 0 {
					fmt.Fprintf(&b, "| %s | /%s | %.0f | %.0f | %.0f%% | %s | %.1f, %.1f | %.0f%%, %.0f%% |\n", impl, rt, k, bare, 100*k/bare, r.sliceSpread(impl, rt),
						r.paired["cpu "+vs+" "+rt], r.paired["cpu "+impl+" "+rt], 100*r.paired["busy "+vs+" "+rt], 100*r.paired["busy "+impl+" "+rt])
				}
			}
		}
		b.WriteString("\n")
	}

	if len(r.contention) > 0 {
		fmt.Fprintf(&b, "### One session, %d connections at once (%v of /incr)\n\n", o.conns, o.contendFor)
		b.WriteString("| implementation | req/s | increments acknowledged | lost updates | errors |\n|---|---:|---:|---:|---:|\n")
		for _, c := range r.contention {
			fmt.Fprintf(&b, "| %s | %.0f | %d | %d | %d |\n", c.impl, c.rps, c.acked, c.lost, c.errors)
		}
		b.WriteString("\n")
	}

	if len(r.scaling) > 0 {
		fmt.Fprintf(&b, "### Scaling (%v per route)\n\n", o.scaleFor)
		b.WriteString("| implementation | sessions | created in | /incr req/s | /read req/s | /incr vs smallest | server RSS MiB |\n|---|---:|---:|---:|---:|---:|---:|\n")
		first := map[string]float64{}
		for _, s := range r.scaling {
			if s.createFailedErr != "" {
				fmt.Fprintf(&b, "| %s | %d | failed: %s | | | | |\n", s.impl, s.sessions, s.createFailedErr)
				continue
			}
			if _, ok := first[s.impl]; !ok {
				first[s.impl] = s.incrRPS
			}
			fmt.Fprintf(&b, "| %s | %d | %v | %.0f | %.0f | %.2f | %.0f |\n", s.impl, s.sessions, s.create.Round(time.Millisecond),
				s.incrRPS, s.readRPS, s.incrRPS/first[s.impl], s.rssMiB)
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
		b.WriteString("### Targets\n\n| target | measured | met |\n|---|---|---|\n")
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

// targets checks the figures issue 6 set, where this run measured them.
func (r *report) targets() []string {
	var out []string
	add := func(target, measured string, met bool) {
		mark := "yes"
		if !met {
			mark = "**no**"
		}
		out = append(out, fmt.Sprintf("| %s | %s | %s |\n", target, measured, mark))
	}
	// Ratios to bare fasthttp come from the paired run when there is one:
	// alternating slices, both servers measured under the same conditions.
	rps := func(impl, route string) float64 {
		if v, ok := r.paired[impl+" "+route]; ok {
			return v
		}
		return r.httpRPS(impl, route)
	}
	// bareFor is the ceiling measured beside impl.
	bareFor := func(impl, route string) float64 {
		if v, ok := r.paired["bare fasthttp vs "+impl+" "+route]; ok {
			return v
		}
		return r.httpRPS("bare fasthttp", route)
	}
	bare := func(route string) float64 { return bareFor("kvsession/memory", route) }
	if b, k := bare("read"), rps("kvsession/memory", "read"); b > 0 && k > 0 {
		add("kvsession/memory /read ≥ 90% of bare fasthttp (paired)", fmt.Sprintf("%.1f%%%s", 100*k/b, r.sliceNote("kvsession/memory", "read")), k >= 0.9*b)
	}
	if b, k := bare("incr"), rps("kvsession/memory", "incr"); b > 0 && k > 0 {
		add("kvsession/memory /incr ≥ 80% of bare fasthttp (paired)", fmt.Sprintf("%.1f%%%s", 100*k/b, r.sliceNote("kvsession/memory", "incr")), k >= 0.8*b)
	}
	if k := r.httpRPS("kvsession/memory", "big"); k > 0 {
		best, bestName := 0.0, ""
		for _, h := range r.http {
			if h.route == "big" && !h.bare && !strings.HasPrefix(h.impl, "kvsession/") && r.correct(h.impl) && h.rps > best {
				best, bestName = h.rps, h.impl
			}
		}
		if best > 0 {
			add("kvsession/memory /big ≥ 1.5× the fastest correct peer", fmt.Sprintf("%.1f× %s", k/best, bestName), k >= 1.5*best)
		}
	}
	// Badger's targets are checked beside what raw Badger reaches (Badger
	// alone) and, when asked for, what one transaction per write allows
	// with reads free (Badger writes alone): kvsession's store passes the
	// second only by committing several writes to a transaction.
	alone := rps("badger alone", "incr")
	if b, k := bareFor("kvsession/badger", "incr"), rps("kvsession/badger", "incr"); b > 0 && k > 0 {
		measured := fmt.Sprintf("%.0f%%%s", 100*k/b, r.sliceNote("kvsession/badger", "incr"))
		if alone > 0 {
			measured += fmt.Sprintf("; Badger alone, raw transactions: %.0f%%", 100*alone/b)
		}
		if w := rps("badger writes alone", "incr"); w > 0 {
			measured += fmt.Sprintf("; one Badger transaction per write, reads free: %.0f%%%s", 100*w/b, r.sliceNote("badger writes alone", "incr"))
		}
		add("kvsession/badger /incr ≥ 50% of bare fasthttp (paired)", measured, k >= 0.5*b)
	}
	if f, k := r.httpRPS("fiber/badger*", "incr"), r.httpRPS("kvsession/badger", "incr"); f > 0 && k > 0 {
		measured := fmt.Sprintf("%.1f×", k/f)
		if a := r.httpRPS("badger alone", "incr"); a > 0 {
			measured += fmt.Sprintf("; Badger alone, raw transactions: %.1f×", a/f)
		}
		// The memory store does everything the Badger store does but
		// write to Badger: where even it falls short of 4×, no Badger
		// store can reach it.
		if m := r.httpRPS("kvsession/memory", "incr"); m > 0 {
			measured += fmt.Sprintf("; kvsession/memory, no Badger at all: %.1f×", m/f)
		}
		add("kvsession/badger /incr ≥ 4× fiber's Badger", measured, k >= 4*f)
	}
	for _, p := range r.inProcess {
		if p.contender != "kvsession/memory" {
			continue
		}
		switch p.op {
		case "increment":
			add("in process increment ≤ 600 ns and ≤ 5 allocs", fmt.Sprintf("%d ns, %d allocs", p.r.NsPerOp(), p.r.AllocsPerOp()),
				p.r.NsPerOp() <= 600 && p.r.AllocsPerOp() <= 5)
		case "read":
			add("in process read ≤ 350 ns", fmt.Sprintf("%d ns", p.r.NsPerOp()), p.r.NsPerOp() <= 350)
		}
	}
	small := map[string]scaleResult{}
	for _, s := range r.scaling {
		if s.createFailedErr != "" {
			continue
		}
		if _, ok := small[s.impl]; !ok {
			small[s.impl] = s
		}
		if s.sessions == 1_000_000 && small[s.impl].sessions < s.sessions && strings.HasPrefix(s.impl, "kvsession/") {
			base := small[s.impl]
			measured := fmt.Sprintf("%.1f%%", 100*s.incrRPS/base.incrRPS)
			if a, ok := r.scaleRatio("badger alone", base.sessions, s.sessions); ok && s.impl == "kvsession/badger" {
				measured += fmt.Sprintf("; Badger alone, raw transactions: %.1f%%", 100*a)
			}
			add(fmt.Sprintf("%s at 1M sessions: /incr ≥ 90%% of %d", s.impl, base.sessions), measured, s.incrRPS >= 0.9*base.incrRPS)
			if s.impl == "kvsession/memory" {
				add("kvsession/memory at 1M sessions: server RSS ≤ 300 MiB", fmt.Sprintf("%.0f MiB", s.rssMiB), s.rssMiB <= 300)
			}
		}
	}
	for _, c := range r.contention {
		if strings.HasPrefix(c.impl, "kvsession/") && strings.HasSuffix(c.impl, "+lock") {
			add(c.impl+": one session, every connection: 0 lost updates", fmt.Sprintf("%d lost of %d", c.lost, c.acked), c.lost == 0 && c.errors == 0)
		}
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

// correct reports whether impl answered every request right.
func (r *report) correct(impl string) bool {
	for _, h := range r.http {
		if h.impl == impl && (h.errors > 0 || h.wrong > 0 || h.lost > 0) {
			return false
		}
	}
	return true
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

// svg draws req/s per implementation and route as horizontal bars, one
// group per implementation.
func (r *report) svg() string {
	type group struct {
		impl string
		rps  map[string]float64
	}
	var groups []group
	maxRPS := 1.0
	for _, h := range r.http {
		if h.route == "-" {
			continue
		}
		if len(groups) == 0 || groups[len(groups)-1].impl != h.impl {
			groups = append(groups, group{impl: h.impl, rps: map[string]float64{}})
		}
		groups[len(groups)-1].rps[h.route] = h.rps
		maxRPS = max(maxRPS, h.rps)
	}
	colors := map[string]string{"incr": "#3b6fb6", "read": "#5aa469", "big": "#d08c3a"}
	const (
		left, width, barH, gap, top = 170.0, 560.0, 11.0, 10.0, 46.0
	)
	groupH := float64(len(routes))*barH + gap
	height := top + float64(len(groups))*groupH + 30
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" font-family="sans-serif" font-size="11">`+"\n", left+width+90, height)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="#fff"/>`+"\n")
	fmt.Fprintf(&b, `<text x="10" y="18" font-size="14" font-weight="bold">Requests per second, one server core, %d sessions, %d connections</text>`+"\n", r.opts.sessions, r.opts.conns)
	x := left
	for _, rt := range routes {
		fmt.Fprintf(&b, `<rect x="%.0f" y="28" width="10" height="10" fill="%s"/><text x="%.0f" y="37">/%s</text>`+"\n", x, colors[rt.name], x+14, rt.name)
		x += 70
	}
	for gi, g := range groups {
		y := top + float64(gi)*groupH
		fmt.Fprintf(&b, `<text x="%.0f" y="%.1f" text-anchor="end">%s</text>`+"\n", left-8, y+float64(len(routes))*barH/2+4, html.EscapeString(g.impl))
		for ri, rt := range routes {
			v := g.rps[rt.name]
			w := width * v / maxRPS
			by := y + float64(ri)*barH
			fmt.Fprintf(&b, `<rect x="%.0f" y="%.1f" width="%.1f" height="%.1f" fill="%s"/>`, left, by, w, barH-1, colors[rt.name])
			fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" font-size="9">%.0fk</text>`+"\n", left+w+4, by+barH-2, v/1000)
		}
	}
	fmt.Fprintf(&b, `<line x1="%.0f" y1="%.0f" x2="%.0f" y2="%.0f" stroke="#999"/>`+"\n", left, top-2, left, height-30)
	fmt.Fprintf(&b, `<text x="10" y="%.0f" fill="#555">kvsession bench, %s; * = on kvsession's Badger store through an adapter</text>`+"\n", height-10, r.started.Format("2006-01-02"))
	b.WriteString("</svg>\n")
	return b.String()
}

// sliceSpread is the lowest and highest slice-by-slice ratio of impl to
// the bare fasthttp beside it in the paired run, or "-" without one.
func (r *report) sliceSpread(impl, route string) string {
	key := impl + " " + route
	lo, ok := r.paired["slices low "+key]
	if !ok {
		return "-"
	}
	return fmt.Sprintf("%.0f–%.0f%%", 100*lo, 100*r.paired["slices high "+key])
}

// sliceNote is sliceSpread for a target row: " (slices a–b%)", or nothing.
func (r *report) sliceNote(impl, route string) string {
	if s := r.sliceSpread(impl, route); s != "-" {
		return " (slices " + s + ")"
	}
	return ""
}
