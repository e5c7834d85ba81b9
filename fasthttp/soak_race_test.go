//go:build race

package fasthttp_test

const raceEnabled = true
