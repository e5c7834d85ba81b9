package redisstore

// How the tests find a Redis server:
//
//   - KVSESSION_REDIS_ADDR=host:port: use that server. If it does not answer
//     PING, every test that needs it fails.
//   - otherwise, with KVSESSION_REQUIRE_REDIS set to anything: every test
//     that needs a server fails, saying so (CI sets it, so that a missing
//     server cannot pass as a run of skipped tests).
//   - otherwise, if redis-server is on PATH: TestMain starts one on a free
//     loopback port, without persistence, and kills it at the end.
//   - otherwise the tests that need a server skip, saying how to run them.
//
// Every store a test opens has a Prefix of its own, random per run, and its
// keys are deleted when the test ends, so a shared server (a developer's,
// or parallel runs) is left as it was found.

import (
	"bufio"
	"context"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/kvsession/kvsession/internal/childproc"
)

const (
	envAddr    = "KVSESSION_REDIS_ADDR"
	envRequire = "KVSESSION_REQUIRE_REDIS"
)

var (
	// testAddr is the server every test uses; empty if there is none.
	testAddr string
	// noServer says why there is no server; failNoServer makes that a
	// failure rather than a skip.
	noServer     string
	failNoServer bool
	// raw is a client of the test server, for setting up and checking keys
	// behind a Store's back and for cleaning up after tests.
	raw rueidis.Client
)

func TestMain(m *testing.M) {
	flag.Parse()
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	var srv *server
	switch addr := os.Getenv(envAddr); {
	case addr != "":
		if err := ping(addr, 3*time.Second); err != nil {
			noServer, failNoServer = fmt.Sprintf("%s=%s, which does not answer: %v", envAddr, addr, err), true
		} else {
			testAddr = addr
		}
	case os.Getenv(envRequire) != "":
		noServer, failNoServer = fmt.Sprintf("%s is set but %s is not: set it to the host:port of a Redis server", envRequire, envAddr), true
	default:
		if _, err := exec.LookPath("redis-server"); err != nil {
			noServer = fmt.Sprintf("no Redis server: set %s=host:port, or put redis-server on PATH (apt-get install redis-server) and the tests start their own", envAddr)
			break
		}
		var err error
		if srv, err = startServer(); err != nil {
			noServer, failNoServer = "starting redis-server: "+err.Error(), true
			break
		}
		defer srv.stop()
		testAddr = srv.addr
	}
	if testAddr != "" {
		var err error
		raw, err = rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{testAddr}, DisableCache: true})
		if err != nil {
			noServer, failNoServer = fmt.Sprintf("connecting to %s: %v", testAddr, err), true
			testAddr = ""
		} else {
			defer raw.Close()
		}
	}
	if noServer != "" {
		fmt.Fprintln(os.Stderr, "store/redis:", noServer)
	}
	return m.Run()
}

// needServer fails or skips t when there is no server to test against.
func needServer(t testing.TB) {
	t.Helper()
	switch {
	case testAddr != "":
	case failNoServer:
		t.Fatal(noServer)
	default:
		t.Skip(noServer)
	}
}

// testPrefix returns a Prefix no other test, run or process uses, and
// deletes every key under it when t ends.
func testPrefix(t testing.TB) string {
	t.Helper()
	p := "kvsession-test:" + rand.Text()[:12] + ":"
	t.Cleanup(func() { deleteUnder(t, p) })
	return p
}

// deleteUnder deletes every key starting with prefix, values and locks
// alike, through raw.
func deleteUnder(t testing.TB, prefix string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var cursor uint64
	for {
		e, err := raw.Do(ctx, raw.B().Scan().Cursor(cursor).Match(globEscape(prefix)+"*").Count(1000).Build()).AsScanEntry()
		if err != nil {
			t.Errorf("cleaning up %q: %v", prefix, err)
			return
		}
		if len(e.Elements) > 0 {
			if err := raw.Do(ctx, raw.B().Unlink().Key(e.Elements...).Build()).Error(); err != nil {
				t.Errorf("cleaning up %q: %v", prefix, err)
				return
			}
		}
		if cursor = e.Cursor; cursor == 0 {
			return
		}
	}
}

// openT opens a store on the test server with a fresh prefix, closed when t
// ends.
func openT(t testing.TB) *Store {
	t.Helper()
	needServer(t)
	return openPrefix(t, testPrefix(t))
}

// openPrefix opens a store on the test server with the given prefix, closed
// when t ends, for tests that need several stores on one keyspace.
func openPrefix(t testing.TB, prefix string) *Store {
	t.Helper()
	s, err := Open(context.Background(), Options{Addr: testAddr, Prefix: prefix})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// server is a redis-server the tests started.
type server struct {
	addr   string
	cmd    *exec.Cmd
	exited chan struct{} // closed once the process has been waited for
	dir    string
	log    string
}

// startServer starts a redis-server on a free loopback port, trying a few
// ports in case another process takes the one picked first.
func startServer(args ...string) (*server, error) {
	var err error
	for range 3 {
		var s *server
		if s, err = startServerOnce(args...); err == nil {
			return s, nil
		}
	}
	return nil, err
}

func startServerOnce(args ...string) (*server, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	return startServerAt(port, args...)
}

// startServerAt starts a redis-server on the given loopback port: a
// restart of one the tests killed, on the address its clients know.
func startServerAt(port int, args ...string) (*server, error) {
	dir, err := os.MkdirTemp("", "kvsession-redis-")
	if err != nil {
		return nil, err
	}
	s := &server{addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), dir: dir, log: filepath.Join(dir, "log")}
	logf, err := os.Create(s.log)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	defer logf.Close()
	s.cmd = exec.Command("redis-server", append([]string{
		"--bind", "127.0.0.1", "--port", strconv.Itoa(port),
		"--save", "", "--appendonly", "no", "--dir", dir,
		"--protected-mode", "yes", "--daemonize", "no", "--loglevel", "warning",
	}, args...)...)
	s.cmd.Stdout, s.cmd.Stderr = logf, logf
	childproc.DieWithParent(s.cmd)
	if err := s.cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	exited := make(chan struct{})
	go func() { _ = s.cmd.Wait(); close(exited) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		select {
		case <-exited:
			out, _ := os.ReadFile(s.log)
			os.RemoveAll(dir)
			return nil, fmt.Errorf("redis-server on %s exited: %s", s.addr, strings.TrimSpace(string(out)))
		default:
		}
		if ping(s.addr, time.Second) == nil {
			s.exited = exited
			return s, nil
		}
		if time.Now().After(deadline) {
			s.exited = exited
			s.stop()
			return nil, fmt.Errorf("redis-server on %s did not answer PING within 10s", s.addr)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stop kills the server by its PID and removes its directory.
func (s *server) stop() {
	if s == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	<-s.exited
	os.RemoveAll(s.dir)
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// ping sends PING on a connection of its own and expects PONG (or an
// authentication error, which also proves a Redis is there).
func ping(addr string, timeout time.Duration) error {
	reply, err := command(addr, timeout, "PING")
	if err != nil {
		return err
	}
	if reply != "+PONG" && !strings.HasPrefix(reply, "-NOAUTH") {
		return fmt.Errorf("PING answered %q", reply)
	}
	return nil
}

// command sends one inline command on a new connection and returns the
// first line of the reply.
func command(addr string, timeout time.Duration, cmd string) (string, error) {
	c, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return "", err
	}
	defer c.Close()
	return send(c, timeout, cmd)
}

// send writes one inline command on c and reads the first line of its
// reply.
func send(c net.Conn, timeout time.Duration, cmd string) (string, error) {
	if err := c.SetDeadline(time.Now().Add(timeout)); err != nil {
		return "", err
	}
	if _, err := c.Write([]byte(cmd + "\r\n")); err != nil {
		return "", err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return "", err
	}
	line = strings.TrimRight(line, "\r\n")
	if strings.HasPrefix(line, "-") && !strings.HasPrefix(line, "-NOAUTH") {
		return line, errors.New(line)
	}
	return line, nil
}
