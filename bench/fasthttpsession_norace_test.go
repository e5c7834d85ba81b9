//go:build !race

package main

import "testing"

// TestFasthttpSessionStockLoses shows the defect the comparison expects of
// stock fasthttp/session (fasthttpSessionDefect), so that its rows are
// known to measure a server that loses sessions, and that the checks see
// it. Not under the race detector: the defect is a data race, the map's
// keys being read while fasthttp rewrites the buffer under them.
func TestFasthttpSessionStockLoses(t *testing.T) {
	if wrong, lost := driveTwice(t, "fasthttp/session/memory"); wrong == 0 && lost == 0 {
		t.Fatalf("%d wrong replies, %d lost updates: the defect did not show", wrong, lost)
	}
}
