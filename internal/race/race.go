//go:build race

// Package race tells tests whether the race detector is on: it drops
// pooled objects at random and slows code down, so allocation counts and
// some sizes only mean something without it.
package race

// Enabled is true when the binary was built with -race.
const Enabled = true
