//go:build unix

package e2e

// The playground on Redis: several playgrounds sharing one, and a Redis
// that is down, stopped or frozen under one.

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kvsession/kvsession/internal/childproc"
	"github.com/kvsession/kvsession/internal/sessiontest"
)

// redisServer is a redis-server this test started, so that it can stop and
// restart it.
type redisServer struct {
	t    *testing.T
	addr string
	dir  string
	cmd  *exec.Cmd
}

// needRedisServer returns the redis-server binary, or skips: without one
// these tests cannot run, unless KVSESSION_REQUIRE_REDIS says they must
// (CI sets it, and installs Redis).
func needRedisServer(t *testing.T) string {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv("KVSESSION_REQUIRE_REDIS") != "" {
			t.Fatal("KVSESSION_REQUIRE_REDIS is set but redis-server is not on PATH")
		}
		t.Skip("no redis-server on PATH: install Redis (apt-get install redis-server) to run the Redis tests")
	}
	return bin
}

// freeAddr returns a loopback address nothing listens on, for now.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// startRedis starts a redis-server on a free loopback port, persisting
// every write (appendfsync always), in a directory of its own.
func startRedis(t *testing.T) *redisServer {
	t.Helper()
	bin := needRedisServer(t)
	addr := freeAddr(t)
	r := &redisServer{t: t, addr: addr, dir: t.TempDir()}
	r.start(bin)
	t.Cleanup(r.stop)
	return r
}

func (r *redisServer) start(bin string) {
	r.t.Helper()
	_, port, _ := net.SplitHostPort(r.addr)
	r.cmd = exec.Command(bin, "--bind", "127.0.0.1", "--port", port, "--dir", r.dir,
		"--appendonly", "yes", "--appendfsync", "always", "--save", "", "--loglevel", "warning")
	r.cmd.Stdout, r.cmd.Stderr = nil, nil
	childproc.DieWithParent(r.cmd)
	if err := r.cmd.Start(); err != nil {
		r.t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", r.addr, 100*time.Millisecond)
		if err == nil {
			fmt.Fprint(c, "PING\r\n")
			buf := make([]byte, 7)
			c.SetReadDeadline(time.Now().Add(time.Second))
			n, _ := c.Read(buf)
			c.Close()
			if strings.HasPrefix(string(buf[:n]), "+PONG") {
				return
			}
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("redis-server on %s did not answer within 5s", r.addr)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stop shuts the server down gracefully (SIGTERM) and waits for it.
func (r *redisServer) stop() {
	if r.cmd == nil || r.cmd.Process == nil {
		return
	}
	r.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { r.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		r.cmd.Process.Kill()
		<-done
	}
	r.cmd = nil
}

func (r *redisServer) restart() {
	r.t.Helper()
	r.stop()
	r.start(needRedisServer(r.t))
}

// sharedRedis returns the Redis CI provides (KVSESSION_REDIS_ADDR), or one
// of this test's own.
func sharedRedis(t *testing.T) string {
	t.Helper()
	if addr := os.Getenv("KVSESSION_REDIS_ADDR"); addr != "" {
		return addr
	}
	return startRedis(t).addr
}

// uniquePrefix keeps this run's keys apart from any other user of the server.
func uniquePrefix() string {
	b := make([]byte, 6)
	rand.Read(b)
	return "kvsession-test-" + hex.EncodeToString(b) + ":"
}

// TestPlaygroundsShareRedis: two playgrounds on one Redis are one service
// behind a load balancer: a cookie from either works on the other. The
// second reaches Redis through a list of seeds whose first is down, and
// finds the same server. The two run on different servers, each server in
// turn the first and the second: sessions do not depend on the adapter.
func TestPlaygroundsShareRedis(t *testing.T) {
	for i, first := range playgroundServers {
		second := playgroundServers[(i+1)%len(playgroundServers)]
		t.Run(first+"+"+second, func(t *testing.T) { testPlaygroundsShareRedis(t, first, second) })
	}
}

func testPlaygroundsShareRedis(t *testing.T, first, second string) {
	addr, prefix := sharedRedis(t), uniquePrefix()
	args := []string{"-addr", "127.0.0.1:0", "-store", "redis", "-redis-prefix", prefix}
	a := startChild(t, slices.Concat(args, []string{"-server", first, "-redis-addr", addr})...)
	b := startChild(t, slices.Concat(args, []string{"-server", second, "-redis-addr", freeAddr(t) + "," + addr})...)
	c := sessiontest.NewClient(t, a.base)
	c.Expect("GET", "/counter", "", 200, "1")
	c.Base = b.base // the jar ignores ports: the same cookie goes to b
	c.Expect("GET", "/counter", "", 200, "2")
	c.Do("POST", "/login?user=ada", "")
	c.Base = a.base
	c.Expect("GET", "/whoami", "", 200, "ada")
	c.Expect("GET", "/counter", "", 200, "3")

	other := sessiontest.NewClient(t, b.base)
	other.Do("POST", "/login?user=ada", "")
	other.Base = a.base
	other.Expect("POST", "/logout-all?user=ada", "", 200, "2")
	c.Base = b.base
	c.Expect("GET", "/whoami", "", 404, "not logged in\n")
}

// TestRedisDownAtStart: a Redis that cannot be reached fails the start
// with an error naming it, rather than every request later.
func TestRedisDownAtStart(t *testing.T) {
	addr := freeAddr(t)
	exe := playgroundBinary(t)
	begin := time.Now()
	cmd := exec.Command(exe, "-addr", "127.0.0.1:0", "-store", "redis", "-redis-addr", addr)
	var log syncBuffer
	cmd.Stderr = &log
	childproc.DieWithParent(cmd)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	var err error // how it exited
	select {
	case err = <-exited:
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		<-exited
		t.Fatalf("the playground with Redis down still runs after 30s:\n%s", log.String())
	}
	// main prints what run returned, after "playground: ", and exits 1.
	var runErr string
	for _, line := range strings.Split(log.String(), "\n") {
		if e, ok := strings.CutPrefix(line, "playground: "); ok {
			runErr = e
		}
	}
	if err == nil || !strings.Contains(runErr, addr) {
		t.Fatalf("run with Redis down: exit %v, error %q; want an error naming %s\n%s", err, runErr, addr, log.String())
	}
	if d := time.Since(begin); d > 6*time.Second {
		t.Fatalf("took %v to notice", d)
	}
}

// TestRedisOutage stops the real server mid-run: requests during the outage
// get the error handler's answer, requests after it work again without
// restarting the playground, and nothing written before it is lost. On
// every server, whose error handler answers alike.
func TestRedisOutage(t *testing.T) { forEachServer(t, testRedisOutage) }

func testRedisOutage(t *testing.T, server []string) {
	r := startRedis(t)
	p := startChild(t, slices.Concat(server, []string{"-addr", "127.0.0.1:0", "-store", "redis", "-redis-addr", r.addr, "-redis-prefix", uniquePrefix()})...)
	c := sessiontest.NewClient(t, p.base)
	c.Expect("GET", "/counter", "", 200, "1")
	c.Expect("GET", "/counter", "", 200, "2")
	c.Expect("PUT", "/session/name", "alice", 204, "")

	r.stop()
	down := c.Do("GET", "/counter", "")
	if down.Status != 500 || down.Body != "session unavailable\n" {
		t.Fatalf("during the outage: %d %q, want the error handler's 500", down.Status, down.Body)
	}
	if len(down.SetCookies()) != 0 {
		t.Fatal("the failed request set a cookie")
	}

	r.restart()
	// The client reconnects by itself; allow it a moment.
	var r1 sessiontest.Response
	for i := 0; i < 50; i++ {
		if r1 = c.Do("GET", "/counter", ""); r1.Status == 200 {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if r1.Status != 200 || r1.Body != "3" {
		t.Fatalf("after the outage: %d %q, want 200 \"3\" (the counter kept)", r1.Status, r1.Body)
	}
	if got := c.SessionJSON()["name"]; got != "alice" {
		t.Fatalf("name after the outage: %v", got)
	}
}

// TestRedisStall freezes the real server (SIGSTOP) while requests are at
// work, on a locking route (GET /counter) and a read-only one (GET
// /session): each gets the error handler's answer within a bound instead
// of hanging, and once Redis resumes every session works again within
// LockWait, not after the lock's lease, with nothing acknowledged lost.
// (The bounds are generous limits on a hang, not timings.) On every server.
func TestRedisStall(t *testing.T) { forEachServer(t, testRedisStall) }

func testRedisStall(t *testing.T, server []string) {
	const sessions, stall = 10, 3 * time.Second
	r := startRedis(t)
	p := startChild(t, slices.Concat(server, []string{"-addr", "127.0.0.1:0", "-store", "redis", "-redis-addr", r.addr, "-redis-prefix", uniquePrefix(), "-lock"})...)
	cs := make([]*sessiontest.Client, sessions)
	for i := range cs {
		cs[i] = sessiontest.NewClient(t, p.base)
		cs[i].Expect("GET", "/counter", "", 200, "1")
		cs[i].Expect("PUT", "/session/name", "alice", 204, "")
	}

	proc := r.cmd.Process
	if err := proc.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	resumed := false
	resume := func() {
		if !resumed {
			resumed = true
			proc.Signal(syscall.SIGCONT)
		}
	}
	t.Cleanup(resume) // before the server is stopped: a stopped one ignores SIGTERM
	stalledAt := time.Now()

	type answer struct {
		r    sessiontest.Response
		took time.Duration
	}
	answers := make(chan answer, 2*sessions)
	for _, c := range cs {
		for _, path := range []string{"/counter", "/session"} {
			go func() {
				begin := time.Now()
				r := c.Do("GET", path, "")
				answers <- answer{r, time.Since(begin)}
			}()
		}
	}
	hung := time.After(10 * time.Second)
	for range 2 * sessions {
		var a answer
		select {
		case a = <-answers:
		case <-hung:
			resume()
			t.Fatal("requests during the stall still hang after 10s (CallTimeout is 2s)")
		}
		if a.r.Status != 500 || a.r.Body != "session unavailable\n" {
			t.Errorf("during the stall: %d %q, want the error handler's 500", a.r.Status, a.r.Body)
		}
		if a.took > 4*time.Second {
			t.Errorf("a request during the stall took %v to fail (CallTimeout is 2s)", a.took)
		}
	}
	time.Sleep(stall - time.Since(stalledAt))
	resume()

	// Every session works again within LockWait (5s): the locks the stalled
	// requests queued are released as soon as Redis answers.
	begin := time.Now()
	for i, c := range cs {
		var got sessiontest.Response
		for time.Since(begin) < 5*time.Second {
			if got = c.Do("GET", "/counter", ""); got.Status == 200 {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		if got.Status != 200 || got.Body != "2" {
			t.Errorf("session %d after the stall: %d %q, want 200 \"2\" within LockWait", i, got.Status, got.Body)
		}
		if name := c.SessionJSON()["name"]; name != "alice" {
			t.Errorf("session %d lost its name: %v", i, name)
		}
	}
}
