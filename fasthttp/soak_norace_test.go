//go:build !race

package fasthttp_test

const raceEnabled = false
