//go:build unix

package redisstore

import (
	"context"
	"net"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The tests here stop and kill a real redis-server, with the store's
// default options, so they start one of their own: the shared server of
// KVSESSION_REDIS_ADDR must not be frozen under other tests. They run
// whenever redis-server is on PATH, and fail rather than skip without it
// when KVSESSION_REQUIRE_REDIS is set.

// ownServer starts a redis-server for one test, stopped when it ends.
func ownServer(t *testing.T) *server {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		if os.Getenv(envRequire) != "" {
			t.Fatalf("redis-server is not on PATH: %v", err)
		}
		t.Skip("redis-server is not on PATH (apt-get install redis-server)")
	}
	srv, err := startServer()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.stop() })
	return srv
}

// stallOps are the calls a stalled or dead server must fail within the
// default CallTimeout: a session's load, save, compare-and-set, and its
// lock.
func stallOps(s *Store) map[string]func(ctx context.Context) error {
	return map[string]func(ctx context.Context) error{
		"Get":       func(ctx context.Context) error { _, err := s.Get(ctx, "k"); return err },
		"Set":       func(ctx context.Context) error { return s.Set(ctx, "k", []byte("w"), time.Hour) },
		"Swap":      func(ctx context.Context) error { _, err := s.Swap(ctx, "k", []byte("v"), []byte("w"), 0); return err },
		"AddMember": func(ctx context.Context) error { return s.AddMember(ctx, "set", "m", time.Hour) },
		"Members":   func(ctx context.Context) error { _, err := s.Members(ctx, "set"); return err },
		"TryLock":   func(ctx context.Context) error { _, _, err := s.TryLock(ctx, "stalled", time.Minute); return err },
		"Scan":      func(ctx context.Context) error { return s.Scan(ctx, "", func(string, []byte) error { return nil }) },
	}
}

// callsFailWithin runs every op at once with a context that never ends
// and checks that each fails within limit.
func callsFailWithin(t *testing.T, ops map[string]func(ctx context.Context) error, limit time.Duration) {
	t.Helper()
	var wg sync.WaitGroup
	for name, op := range ops {
		wg.Go(func() {
			start := time.Now()
			err := op(context.Background())
			took := time.Since(start)
			t.Logf("%s: %v after %v", name, err, took.Round(time.Millisecond))
			if took > limit {
				t.Errorf("%s took %v, want an error within %v", name, took, limit)
			}
			if err == nil {
				t.Errorf("%s succeeded against a server that cannot answer", name)
			}
		})
	}
	wg.Wait()
}

// worksAgain checks that plain calls and the lock work once the server is
// back, polling (the client reconnects at its own pace) up to limit.
func worksAgain(t *testing.T, s *Store, limit time.Duration) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		err := s.Set(t.Context(), "k", []byte("v"), 0)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Set still fails %v after the server came back: %v", limit, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if v, err := s.Get(t.Context(), "k"); err != nil || string(v) != "v" {
		t.Errorf("Get after recovery = %q, %v", v, err)
	}
	if ok, err := s.Swap(t.Context(), "k", []byte("v"), []byte("w"), time.Hour); err != nil || !ok {
		t.Errorf("Swap after recovery = %v, %v", ok, err)
	}
	if err := s.AddMember(t.Context(), "set", "m", time.Hour); err != nil {
		t.Errorf("AddMember after recovery: %v", err)
	}
}

// TestStalledServer is findings 6 and 7 against a redis-server frozen
// with SIGSTOP for a few seconds, as a long fork, a swapped-out host or a
// paused VM freezes it: with default options, calls fail within the
// two-second CallTimeout (plus slack for a loaded machine) instead of
// waiting for the server; the SET NX of a TryLock that timed out runs when
// the server resumes, and the lock it takes, whose token its caller never
// got, is released by the store within a couple of seconds rather than
// after its one-minute lease; and an Unlock that timed out is redone.
func TestStalledServer(t *testing.T) {
	t.Parallel()
	srv := ownServer(t)
	s, err := Open(t.Context(), Options{Addr: srv.addr, Prefix: testPrefix(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	warmUp(t, s)
	tok, ok, err := s.TryLock(t.Context(), "held", time.Minute)
	if err != nil || !ok {
		t.Fatalf("TryLock = %v, %v", ok, err)
	}

	if err := freezeServer(srv); err != nil {
		t.Fatal(err)
	}
	resumed := false
	resume := func() {
		if !resumed {
			resumed = true
			if err := thawServer(srv); err != nil {
				t.Error(err)
			}
		}
	}
	defer resume()
	stopped := time.Now()
	ops := stallOps(s)
	ops["Unlock"] = func(ctx context.Context) error { return s.Unlock(ctx, "held", tok) }
	callsFailWithin(t, ops, DefaultCallTimeout+boundSlack)
	// Keep the server stopped a little past the calls' timeouts, as a real
	// stall outlasts them, then let it go.
	time.Sleep(time.Until(stopped.Add(3 * time.Second)))
	resume()

	// Both locks were taken when the server resumed (the SET NX waiting in
	// its socket) or are still held (the Unlock timed out), and only the
	// store has their tokens.
	waitLockable(t, s, []string{"stalled", "held"}, 3*time.Second)
	worksAgain(t, s, 3*time.Second)
}

// TestKilledServer kills redis-server outright and restarts it on the same
// port, as a crash and a supervisor's restart would: calls fail within
// CallTimeout while it is gone (a refused connection, retried by the
// client until the deadline), and the store works again, on new
// connections, once it is back.
func TestKilledServer(t *testing.T) {
	t.Parallel()
	srv := ownServer(t)
	s, err := Open(t.Context(), Options{Addr: srv.addr, Prefix: testPrefix(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	warmUp(t, s)

	_, portStr, _ := net.SplitHostPort(srv.addr)
	port, _ := strconv.Atoi(portStr)
	srv.stop()
	callsFailWithin(t, stallOps(s), DefaultCallTimeout+boundSlack)

	again, err := startServerAt(port)
	if err != nil {
		t.Fatalf("restarting redis-server on %s: %v", srv.addr, err)
	}
	t.Cleanup(again.stop)
	worksAgain(t, s, 5*time.Second)
	waitLockable(t, s, []string{"stalled"}, 3*time.Second)
}

// freezeServer freezes the server's process, as a stall would: it keeps its
// connections and its listening socket, and answers nothing.
func freezeServer(s *server) error { return s.cmd.Process.Signal(syscall.SIGSTOP) }

// thawServer lets a paused server run again.
func thawServer(s *server) error { return s.cmd.Process.Signal(syscall.SIGCONT) }
