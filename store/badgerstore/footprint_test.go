package badgerstore

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
)

// BenchmarkFootprint200k1KB measures peak resident memory for 200,000
// one-kilobyte sessions, with Badger's default options and with this
// package's. Peak RSS belongs to a whole process, so each variant runs in a
// child process built from ./internal/footprint; the benchmark needs the go
// command and Linux's /proc. The child's own time is the benchmark's time.
//
//	go test -run '^$' -bench Footprint ./store/badger
func BenchmarkFootprint200k1KB(b *testing.B) {
	if runtime.GOOS != "linux" {
		b.Skip("reads peak RSS from /proc")
	}
	goCmd, err := exec.LookPath("go")
	if err != nil {
		b.Fatalf("the footprint benchmark builds a child program and needs the go command: %v", err)
	}
	bin := filepath.Join(b.TempDir(), "footprint")
	build := exec.Command(goCmd, "build", "-o", bin, "./internal/footprint")
	if out, err := build.CombinedOutput(); err != nil {
		b.Fatalf("building the footprint command: %v\n%s", err, out)
	}

	for _, variant := range []string{"default", "tuned"} {
		b.Run(variant, func(b *testing.B) {
			var runs int
			sums := make(map[string]float64)
			for b.Loop() {
				dir, err := os.MkdirTemp(b.TempDir(), "db")
				if err != nil {
					b.Fatal(err)
				}
				out, err := exec.Command(bin, "-variant", variant, "-dir", dir).Output()
				if err != nil {
					var stderr []byte
					if ee, ok := err.(*exec.ExitError); ok {
						stderr = ee.Stderr
					}
					b.Fatalf("footprint -variant %s: %v\n%s", variant, err, stderr)
				}
				m, err := parseFootprint(out)
				if err != nil {
					b.Fatal(err)
				}
				for k, v := range m {
					sums[k] += v
				}
				runs++
				if err := os.RemoveAll(dir); err != nil {
					b.Fatal(err)
				}
			}
			const mb = 1 << 20
			b.ReportMetric(sums["peak_rss_bytes"]/float64(runs)/mb, "peakRSS-MB")
			b.ReportMetric(sums["rss_anon_bytes"]/float64(runs)/mb, "anonRSS-MB")
			b.ReportMetric(sums["rss_file_bytes"]/float64(runs)/mb, "fileRSS-MB")
			b.ReportMetric(sums["heap_sys_bytes"]/float64(runs)/mb, "heapSys-MB")
		})
	}
}

// parseFootprint reads the child's "name=value ..." line.
func parseFootprint(out []byte) (map[string]float64, error) {
	m := make(map[string]float64)
	for _, field := range strings.Fields(string(bytes.TrimSpace(out))) {
		name, value, ok := strings.Cut(field, "=")
		if !ok {
			return nil, fmt.Errorf("footprint output %q: field %q is not name=value", out, field)
		}
		v, err := strconv.ParseFloat(value, 64)
		if err != nil {
			return nil, fmt.Errorf("footprint output %q: %w", out, err)
		}
		m[name] = v
	}
	if _, ok := m["peak_rss_bytes"]; !ok {
		return nil, fmt.Errorf("footprint output %q has no peak_rss_bytes", out)
	}
	return m, nil
}
