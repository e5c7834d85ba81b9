package main

import (
	"net"
	"testing"
	"time"
)

// driveTwice creates sessions on kind's server and drives /incr from two
// sets of connections in turn, as the comparison's rounds do: a session
// then arrives on a different connection from the one that last saved it.
// It returns the wrong replies and the updates lost.
func driveTwice(t *testing.T, kindName string) (wrong uint64, lost int64) {
	t.Helper()
	k, ok := kindByName(kindName)
	if !ok {
		t.Fatalf("no kind %q", kindName)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- k.serve(ln, serveOptions{dir: t.TempDir()}) }()
	defer func() { ln.Close(); <-done }()
	addr := ln.Addr().String()
	clients := make([]client, 40)
	if err := createSessions(addr, 4, clients); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		r := runLoad(addr, 4, clients, routeIncr, 100*time.Millisecond, true)
		if r.errors != 0 || r.requests == 0 {
			t.Fatalf("%d requests, %d errors: %v", r.requests, r.errors, r.firstErr)
		}
		wrong += r.wrong
	}
	n, err := verify(addr, clients, len(clients))
	if err != nil {
		t.Fatal(err)
	}
	for _, cl := range clients {
		n += cl.lost
	}
	return wrong, n
}

// TestFasthttpSessionIDCopied: with the id copied, fasthttp/session's
// memory provider keeps every session, whichever connection brings it.
func TestFasthttpSessionIDCopied(t *testing.T) {
	if wrong, lost := driveTwice(t, "fasthttp/session/memory (id copied)"); wrong != 0 || lost != 0 {
		t.Fatalf("%d wrong replies, %d lost updates", wrong, lost)
	}
}
