package redis

import (
	"context"
	"crypto/rand"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/kvsession/kvsession/store"
	"github.com/kvsession/kvsession/store/storetest"
)

// startCluster starts a Redis Cluster of three masters, each on free
// loopback ports, and stops it when t ends. It needs redis-server and
// redis-cli on PATH, and skips t without them: a cluster cannot be
// borrowed through KVSESSION_REDIS_ADDR.
func startCluster(t *testing.T) []string {
	t.Helper()
	for _, bin := range []string{"redis-server", "redis-cli"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("%s is not on PATH: the cluster test starts its own cluster (apt-get install redis-server)", bin)
		}
	}
	var addrs []string
	for range 3 {
		bus, err := freePort()
		if err != nil {
			t.Fatal(err)
		}
		srv, err := startServer("--cluster-enabled", "yes", "--cluster-port", strconv.Itoa(bus),
			"--cluster-node-timeout", "5000")
		if err != nil {
			t.Fatalf("starting a cluster node: %v", err)
		}
		t.Cleanup(srv.stop)
		addrs = append(addrs, srv.addr)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "redis-cli", append(append([]string{"--cluster", "create"}, addrs...), "--cluster-yes")...).CombinedOutput()
	if err != nil {
		t.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	// redis-cli returns once every node agrees on the slots; wait until each
	// also says the cluster is usable.
	for _, a := range addrs {
		for {
			info, err := clusterInfo(a)
			if err == nil && strings.Contains(info, "cluster_state:ok") {
				break
			}
			if ctx.Err() != nil {
				t.Fatalf("cluster node %s not ready: %v\n%s", a, err, info)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return addrs
}

func clusterInfo(addr string) (string, error) {
	out, err := exec.Command("redis-cli", "-u", "redis://"+addr, "cluster", "info").CombinedOutput()
	return string(out), err
}

func dbsize(t *testing.T, addr string) int {
	t.Helper()
	out, err := exec.Command("redis-cli", "-u", "redis://"+addr, "dbsize").CombinedOutput()
	if err != nil {
		t.Fatalf("DBSIZE on %s: %v: %s", addr, err, out)
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(out)))
	if err != nil {
		t.Fatalf("DBSIZE on %s: %q", addr, out)
	}
	return n
}

// TestCluster runs the conformance suite, DeleteAll, the lock and Update on
// a three-master Redis Cluster, where each key lives on the master owning
// its hash slot.
func TestCluster(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("starts a Redis Cluster; skipped with -short")
	}
	start := time.Now()
	addrs := startCluster(t)
	t.Logf("cluster of %d masters ready in %v", len(addrs), time.Since(start).Round(time.Millisecond))

	open := func(t *testing.T, prefix string) *Store {
		s, err := Open(t.Context(), Options{Addr: addrs[1], Prefix: prefix})
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		return s
	}
	s := open(t, "app:")
	defer s.Close()
	if m := s.Client().Mode(); m != rueidis.ClientModeCluster {
		t.Fatalf("client mode %v, want cluster", m)
	}

	t.Run("Conformance", func(t *testing.T) {
		storetest.Run(t, storetest.Harness{
			New: func(t *testing.T) store.Store {
				return open(t, "suite:"+rand.Text()[:12]+":")
			},
		})
	})

	t.Run("DeleteAll", func(t *testing.T) {
		ctx := t.Context()
		other := open(t, "other:")
		defer other.Close()
		for i := range 300 {
			if err := s.Set(ctx, fmt.Sprint("k", i), []byte("v"), time.Hour); err != nil {
				t.Fatal(err)
			}
		}
		if err := other.Set(ctx, "k1", []byte("theirs"), 0); err != nil {
			t.Fatal(err)
		}
		for _, a := range addrs {
			if dbsize(t, a) == 0 {
				t.Fatalf("master %s holds no keys: the test does not span the cluster", a)
			}
		}
		if err := s.DeleteAll(ctx); err != nil {
			t.Fatalf("DeleteAll: %v", err)
		}
		for i := range 300 {
			if ok, err := s.Exists(ctx, fmt.Sprint("k", i)); ok || err != nil {
				t.Fatalf("Exists(k%d) after DeleteAll = %v, %v", i, ok, err)
			}
		}
		if v, err := other.Get(ctx, "k1"); err != nil || string(v) != "theirs" {
			t.Errorf("another prefix's value after DeleteAll = %q, %v", v, err)
		}
	})

	t.Run("LockAndUpdate", func(t *testing.T) {
		ctx := t.Context()
		b := open(t, "app:")
		defer b.Close()
		for i := range 20 { // keys in many slots
			key := fmt.Sprint("lock", i)
			tok, ok, err := s.TryLock(ctx, key, time.Minute)
			if err != nil || !ok {
				t.Fatalf("TryLock(%s) = %v, %v", key, ok, err)
			}
			if _, ok, err := b.TryLock(ctx, key, time.Minute); err != nil || ok {
				t.Fatalf("TryLock(%s) from a second store = %v, %v", key, ok, err)
			}
			if err := s.Unlock(ctx, key, tok); err != nil {
				t.Fatal(err)
			}
			err = b.Update(ctx, key, func(old []byte) ([]byte, time.Duration, bool) {
				return append(old, 'x'), time.Minute, true
			})
			if err != nil {
				t.Fatalf("Update(%s): %v", key, err)
			}
		}
	})

	// The background release of orphaned locks sends its unlocks together:
	// on a cluster each must reach the master of its own slot.
	t.Run("OrphanRelease", func(t *testing.T) {
		ctx := t.Context()
		keys := make([]string, 20) // in many slots
		for i := range keys {
			keys[i] = fmt.Sprint("orphan", i)
			tok, ok, err := s.TryLock(ctx, keys[i], time.Minute)
			if err != nil || !ok {
				t.Fatalf("TryLock(%s) = %v, %v", keys[i], ok, err)
			}
			// As if the TryLock had timed out: the store has the token,
			// its caller does not.
			s.rel.add(s.LockKey(keys[i]), tok, time.Now().Add(time.Minute))
		}
		deadline := time.Now().Add(5 * time.Second)
		for _, k := range keys {
			for {
				tok, ok, err := s.TryLock(ctx, k, time.Minute)
				if err == nil && ok {
					_ = s.Unlock(ctx, k, tok)
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("orphaned lock %s not released within 5s (TryLock: %v, %v)", k, ok, err)
				}
				time.Sleep(20 * time.Millisecond)
			}
		}
	})
}
