package main

import "testing"

// TestInProcessContenders: every in-process contender sets up and does its
// work without error, so that a broken setup fails here, not in a full
// run's benchmark, where b.Fatal would end the run.
func TestInProcessContenders(t *testing.T) {
	for _, c := range inProcessContenders() {
		t.Run(c.name, func(t *testing.T) {
			work, cleanup := c.setup(t, 10)
			defer cleanup()
			for i := range 40 {
				work(i, i%2 == 0)
			}
		})
	}
}
