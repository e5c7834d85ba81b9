//go:build !race

package kvsession

const raceEnabled = false
