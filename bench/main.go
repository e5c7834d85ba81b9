// Command bench compares kvsession with the Go session libraries people use
// today. This first part runs in process: one request's session work
// (load, modify, save) through each library's own API.
//
//	cd bench && go run .
package main

import (
	"fmt"
	"os"
	"time"
)

func main() {
	start := time.Now()
	progress := func(step string) {
		fmt.Fprintf(os.Stderr, "[%5.1fs] %s\n", time.Since(start).Seconds(), step)
	}
	results := runInProcess(progress)
	base := map[string]float64{}
	for _, r := range results {
		if r.contender == "kvsession/memory" {
			base[r.op] = float64(r.r.NsPerOp())
		}
	}
	fmt.Println("| in process | op | ns/op | B/op | allocs/op | × kvsession/memory |")
	fmt.Println("|---|---|---|---|---|---|")
	for _, r := range results {
		fmt.Printf("| %s | %s | %d | %d | %d | %.1f |\n", r.contender, r.op, r.r.NsPerOp(), r.r.AllocedBytesPerOp(), r.r.AllocsPerOp(),
			float64(r.r.NsPerOp())/base[r.op])
	}
}
