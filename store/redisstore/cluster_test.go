package redisstore

import (
	"context"
	"crypto/rand"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/kvsession/kvsession/store"
	"github.com/kvsession/kvsession/store/storetest"
)

// startCluster starts a Redis Cluster of three masters, each on free
// loopback ports, and stops it when t ends. It needs redis-server and
// redis-cli on PATH, and skips t without them: a cluster cannot be
// borrowed through KVSESSION_REDIS_ADDR. It returns the nodes' addresses
// and their processes.
func startCluster(t *testing.T) ([]string, []*server) {
	t.Helper()
	for _, bin := range []string{"redis-server", "redis-cli"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("%s is not on PATH: the cluster test starts its own cluster (apt-get install redis-server)", bin)
		}
	}
	var addrs []string
	var srvs []*server
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
		srvs = append(srvs, srv)
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
	return addrs, srvs
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
	addrs, srvs := startCluster(t)
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

	// Scan walks every master once: each key, wherever its slot, is
	// visited, and a prefix picks its keys on every master.
	t.Run("Scan", func(t *testing.T) {
		ctx := t.Context()
		st := open(t, "scan:")
		defer st.Close()
		other := open(t, "scanother:")
		defer other.Close()
		for i := range 300 {
			if err := st.Set(ctx, fmt.Sprint("k", i), []byte(fmt.Sprint("v", i)), time.Hour); err != nil {
				t.Fatal(err)
			}
		}
		if err := other.Set(ctx, "k1", []byte("theirs"), 0); err != nil {
			t.Fatal(err)
		}
		seen := scanSeen(t, st, "")
		if len(seen) != 300 {
			t.Errorf("Scan visited %d keys, want 300", len(seen))
		}
		for i := range 300 {
			if k := fmt.Sprint("k", i); seen[k] != fmt.Sprint("v", i) {
				t.Errorf("Scan showed %s as %q", k, seen[k])
			}
		}
		if got := scanSeen(t, st, "k1"); len(got) != 1+10+100 {
			t.Errorf("Scan(\"k1\") visited %d keys, want 111 (k1, k10-k19, k100-k199)", len(got))
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

	// A cluster whose first seed is down still opens, through the next,
	// and reaches every master.
	t.Run("DeadFirstSeed", func(t *testing.T) {
		port, err := freePort()
		if err != nil {
			t.Fatal(err)
		}
		dead := "127.0.0.1:" + strconv.Itoa(port)
		st, err := Open(t.Context(), Options{Addrs: []string{dead, addrs[1]}, Prefix: "seeds:"})
		if err != nil {
			t.Fatalf("Open with the first seed down: %v", err)
		}
		defer st.Close()
		if m := st.Client().Mode(); m != rueidis.ClientModeCluster {
			t.Fatalf("client mode %v, want cluster", m)
		}
		for i := range 30 { // keys on every master
			key := fmt.Sprint("k", i)
			if err := st.Set(t.Context(), key, []byte("v"), time.Minute); err != nil {
				t.Fatalf("Set(%s): %v", key, err)
			}
			if v, err := st.Get(t.Context(), key); err != nil || string(v) != "v" {
				t.Fatalf("Get(%s) = %q, %v", key, v, err)
			}
		}
	})

	// Findings 6 and 7 on a cluster: one master stops answering (SIGSTOP,
	// shorter than the cluster's node timeout, so no failover). Calls on
	// its keys fail within the default CallTimeout while the others'
	// succeed, and the locks its held SET NXs take when it resumes are
	// released by the store. Last, since it stops a node.
	t.Run("StalledMaster", func(t *testing.T) {
		st := open(t, "stall:")
		defer st.Close()
		keys := make([]string, 30) // about ten per master
		for i := range keys {
			keys[i] = fmt.Sprint("lock", i)
			if err := st.Set(t.Context(), keys[i], []byte("v"), 0); err != nil {
				t.Fatal(err)
			}
		}
		if err := freezeServer(srvs[0]); err != nil {
			t.Skip(err)
		}
		resumed := false
		resume := func() {
			if !resumed {
				resumed = true
				if err := thawServer(srvs[0]); err != nil {
					t.Error(err)
				}
			}
		}
		defer resume()
		stopped := time.Now()
		var wg sync.WaitGroup
		tokens := make([]string, len(keys))
		failed := 0
		var mu sync.Mutex
		for i, k := range keys {
			wg.Go(func() {
				start := time.Now()
				tok, ok, err := st.TryLock(context.Background(), k, time.Minute)
				if took := time.Since(start); took > DefaultCallTimeout+boundSlack {
					t.Errorf("TryLock(%s) took %v with one master stalled", k, took)
				}
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err != nil:
					failed++
				case !ok:
					t.Errorf("TryLock(%s) found the lock held", k)
				default:
					tokens[i] = tok
				}
			})
		}
		wg.Wait()
		if failed == 0 || failed == len(keys) {
			t.Fatalf("%d of %d TryLocks failed with one of three masters stalled: the test does not stall a part of the cluster", failed, len(keys))
		}
		time.Sleep(time.Until(stopped.Add(3 * time.Second)))
		resume()
		// The locks taken on the other masters are released by their
		// holders; those the stalled master's held SET NXs took, whose
		// tokens nobody got, by the store. Then every key can be locked.
		for i, tok := range tokens {
			if tok != "" {
				if err := st.Unlock(t.Context(), keys[i], tok); err != nil {
					t.Errorf("Unlock(%s): %v", keys[i], err)
				}
			}
		}
		deadline := time.Now().Add(5 * time.Second)
		for _, k := range keys {
			for {
				tok, ok, err := st.TryLock(t.Context(), k, time.Minute)
				if err == nil && ok {
					_ = st.Unlock(t.Context(), k, tok)
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("lock %s still held 5s after the master resumed (TryLock: %v, %v)", k, ok, err)
				}
				time.Sleep(20 * time.Millisecond)
			}
		}
	})
}
