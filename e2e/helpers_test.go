package e2e

// What several of the end-to-end tests share: the application they serve,
// a server on loopback TCP, the playground as a process, raw HTTP/1.1 over
// a connection, and a log buffer. What only one file uses stays in that
// file; what other packages' tests use too (the cookie-keeping client,
// sessiontest.Send and its Response, the cookie backend's test key) is in
// internal/sessiontest.

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/kvsession/kvsession/internal/childproc"
	"github.com/kvsession/kvsession/internal/race"
	"github.com/kvsession/kvsession/internal/sessiontest"
	"github.com/kvsession/kvsession/kvfasthttp"
)

// app is the application behind the middleware in the hostile, log and
// cookie tests: a counter per session, a blob of any size, and a logout.
func app(ctx *fasthttp.RequestCtx) {
	sess := kvfasthttp.Session(ctx)
	switch string(ctx.Path()) {
	case "/counter":
		n, _ := sess.GetInt("n")
		if err := sess.Set("n", n+1); err != nil {
			ctx.Error(err.Error(), 500)
			return
		}
		ctx.Response.Header.Set("Vary", "Accept-Encoding")
		ctx.WriteString(itoa(n + 1))
	case "/read":
		n, _ := sess.GetInt("n")
		ctx.WriteString(itoa(n))
	case "/blob":
		if ctx.IsPut() {
			if err := sess.Set("blob", string(ctx.PostBody())); err != nil {
				ctx.Error(err.Error(), 500)
			}
			return
		}
		v, _ := sess.GetString("blob")
		ctx.WriteString(v)
	case "/logout":
		if err := sess.Destroy(); err != nil {
			ctx.Error(err.Error(), 500)
		}
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

// listen serves srv on a free loopback port until the test ends, and
// returns its address.
func listen(t *testing.T, srv *fasthttp.Server) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() {
		srv.Shutdown()
		ln.Close() // in case Shutdown came before Serve took the listener
	})
	return ln.Addr().String()
}

// withSession is the session cookie with value id, to send by hand; none
// if id is "".
func withSession(id string) []*http.Cookie {
	if id == "" {
		return nil
	}
	return []*http.Cookie{{Name: "session", Value: id}}
}

// playgroundPkg is the package of the playground, which some tests run as
// a process of its own, to kill it or to run several. It is a module of its
// own, which go finds from here through the repository's go.work.
const playgroundPkg = "github.com/kvsession/kvsession/examples/playground"

// playgroundServers are the values of the playground's -server flag. The
// tests that run the playground run on each, as subtests named after it:
// -run '/^fiber$' runs them on Fiber alone.
var playgroundServers = []string{"fasthttp", "nethttp", "fiber"}

// forEachServer runs f as a subtest per playground server. server holds
// the flag that picks it, to put before the playground's other arguments.
func forEachServer(t *testing.T, f func(t *testing.T, server []string)) {
	for _, s := range playgroundServers {
		t.Run(s, func(t *testing.T) { f(t, []string{"-server", s}) })
	}
}

// playgroundShutdown is the playground's shutdownTimeout: how long it may
// take to stop gracefully, before it closes its stores anyway.
const playgroundShutdown = 10 * time.Second

// build is the playground's executable, built once per test binary, the
// first time a test asks for it, and removed by TestMain.
var build struct {
	once sync.Once
	dir  string
	path string
	err  error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if build.dir != "" {
		os.RemoveAll(build.dir)
	}
	os.Exit(code)
}

// playgroundBinary returns the playground's executable, building it from
// its package path on first use. Under the race detector it is built with
// -race too, so that the server under load is checked as well.
func playgroundBinary(t *testing.T) string {
	t.Helper()
	build.once.Do(func() {
		if build.dir, build.err = os.MkdirTemp("", "kvsession-e2e-"); build.err != nil {
			return
		}
		build.path = filepath.Join(build.dir, "playground")
		args := []string{"build", "-o", build.path}
		if race.Enabled {
			args = append(args, "-race")
		}
		args = append(args, playgroundPkg)
		// go test puts its own go command first on PATH.
		if out, err := exec.Command("go", args...).CombinedOutput(); err != nil {
			build.err = fmt.Errorf("go %s: %v\n%s(the playground's module is found through go.work at the repository's root: GOWORK must not be off)",
				strings.Join(args, " "), err, out)
		}
	})
	if build.err != nil {
		t.Fatal(build.err)
	}
	return build.path
}

// child is one playground process.
type child struct {
	t    *testing.T
	cmd  *exec.Cmd
	base string // http://127.0.0.1:port
	log  *childLog
	done chan struct{} // closed when the process has exited
	err  error         // what Wait returned; read after done
	http *http.Client
}

// childLog keeps the child's standard error, where it logs, and reports the
// address from its "playground listening" line.
type childLog struct {
	syncBuffer
	partial []byte // the last line, until it ends; under mu
	addr    chan string
	sent    bool
}

func (l *childLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf.Write(p)
	l.partial = append(l.partial, p...)
	for {
		i := bytes.IndexByte(l.partial, '\n')
		if i < 0 {
			break
		}
		line := string(l.partial[:i])
		l.partial = l.partial[i+1:]
		if l.sent || !strings.Contains(line, `msg="playground listening"`) {
			continue
		}
		for _, field := range strings.Fields(line) {
			if addr, ok := strings.CutPrefix(field, "addr="); ok {
				l.addr <- addr
				l.sent = true
			}
		}
	}
	return len(p), nil
}

// startChild runs the playground with args in a process of its own and
// waits until it listens. Whatever happens, the process is killed and
// reaped when the test ends.
func startChild(t *testing.T, args ...string) *child {
	t.Helper()
	exe := playgroundBinary(t)
	c := &child{t: t, log: &childLog{addr: make(chan string, 1)}, done: make(chan struct{})}
	c.cmd = exec.Command(exe, args...)
	c.cmd.Stderr = c.log
	// Should the test binary itself die (a -timeout panic), the child
	// must not outlive it.
	childproc.DieWithParent(c.cmd)
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		c.err = c.cmd.Wait()
		close(c.done)
	}()
	t.Cleanup(func() {
		c.kill()
		if t.Failed() {
			t.Logf("playground pid %d log:\n%s", c.cmd.Process.Pid, c.log)
		}
	})
	select {
	case addr := <-c.log.addr:
		c.base = "http://" + addr
	case <-c.done:
		t.Fatalf("playground %q exited before listening: %v\n%s", args, c.err, c.log)
	case <-time.After(30 * time.Second):
		t.Fatalf("playground %q did not listen within 30s\n%s", args, c.log)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 64
	c.http = &http.Client{Transport: tr, Timeout: 20 * time.Second}
	t.Cleanup(tr.CloseIdleConnections)
	return c
}

// kill sends SIGKILL, if the process still runs, and waits for it.
func (c *child) kill() {
	select {
	case <-c.done:
		return
	default:
	}
	c.cmd.Process.Kill() // by PID: only this process
	<-c.done
	if c.http != nil {
		c.http.Transport.(*http.Transport).CloseIdleConnections()
	}
}

// term stops the playground as a service manager would, with SIGTERM, and
// fails the test unless it exits 0 after a graceful shutdown.
func (c *child) term() {
	c.t.Helper()
	c.stop(syscall.SIGTERM)
}

// stop stops the playground with sig, SIGTERM or SIGINT (Ctrl-C), and fails
// the test unless it exits 0 after a graceful shutdown.
func (c *child) stop(sig syscall.Signal) {
	c.t.Helper()
	if err := c.cmd.Process.Signal(sig); err != nil {
		c.t.Fatalf("%v: %v", sig, err)
	}
	select {
	case <-c.done:
	case <-time.After(playgroundShutdown + 10*time.Second):
		c.t.Fatalf("playground still running %v after %v", playgroundShutdown+10*time.Second, sig)
	}
	c.http.Transport.(*http.Transport).CloseIdleConnections()
	if c.err != nil {
		c.t.Fatalf("playground exited with %v after %v, want 0\n%s", c.err, sig, c.log)
	}
	if !strings.Contains(c.log.String(), `msg="server stopped"`) {
		c.t.Fatalf("playground exited without logging a graceful stop:\n%s", c.log)
	}
}

// do sends method path to the playground with the session cookie id (""
// for none). It does not fail the test: requests are expected to fail
// once the process is killed.
func (c *child) do(method, path, id string) (sessiontest.Response, error) {
	return sessiontest.Send(c.http, method, c.base+path, "", withSession(id)...)
}

// must is do for requests that must get an answer.
func (c *child) must(method, path, id string) sessiontest.Response {
	c.t.Helper()
	r, err := c.do(method, path, id)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	return r
}

// syncBuffer is a log destination that servers write to from their own
// goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Printf makes it a fasthttp.Logger, one line per message.
func (b *syncBuffer) Printf(format string, args ...any) {
	fmt.Fprintf(b, format+"\n", args...)
}

// rawResponse is one HTTP/1.1 response as the server sent it.
type rawResponse struct {
	status  int
	headers [][2]string // name, value, in order
	body    string
}

// header returns the values of the named header.
func (r *rawResponse) header(name string) []string {
	var vs []string
	for _, h := range r.headers {
		if strings.EqualFold(h[0], name) {
			vs = append(vs, h[1])
		}
	}
	return vs
}

// errMalformed reports a response that is not well-formed HTTP/1.1: a line
// not ended by CR LF, or holding a CR, LF, NUL or other control byte.
var errMalformed = errors.New("malformed response")

// readRawResponse reads one response. Every line of the head must end in
// CR LF and hold no other control byte but tab: a header value carrying a
// bare CR or LF from a request would show here as a malformed line.
func readRawResponse(br *bufio.Reader) (*rawResponse, error) {
	line := func() (string, error) {
		l, err := br.ReadString('\n')
		if err != nil {
			return "", err
		}
		if !strings.HasSuffix(l, "\r\n") {
			return "", fmt.Errorf("%w: line %q not ended by CR LF", errMalformed, l)
		}
		l = l[:len(l)-2]
		if i := strings.IndexFunc(l, func(r rune) bool { return (r < 0x20 && r != '\t') || r == 0x7f }); i >= 0 {
			return "", fmt.Errorf("%w: control byte %#x in line %q", errMalformed, l[i], l)
		}
		return l, nil
	}
	status, err := line()
	if err != nil {
		return nil, err
	}
	proto, rest, _ := strings.Cut(status, " ")
	code, _, _ := strings.Cut(rest, " ")
	r := &rawResponse{}
	if r.status, err = strconv.Atoi(code); proto != "HTTP/1.1" || err != nil {
		return nil, fmt.Errorf("%w: status line %q", errMalformed, status)
	}
	length := -1
	for {
		l, err := line()
		if err != nil {
			return nil, err
		}
		if l == "" {
			break
		}
		name, value, ok := strings.Cut(l, ": ")
		if !ok || name == "" || strings.ContainsAny(name, " \t:") {
			return nil, fmt.Errorf("%w: header line %q", errMalformed, l)
		}
		r.headers = append(r.headers, [2]string{name, value})
		if strings.EqualFold(name, "Content-Length") {
			if length, err = strconv.Atoi(value); err != nil {
				return nil, fmt.Errorf("%w: Content-Length %q", errMalformed, value)
			}
		}
	}
	if length < 0 {
		return nil, fmt.Errorf("%w: no Content-Length", errMalformed)
	}
	body := make([]byte, length)
	if _, err := io.ReadFull(br, body); err != nil {
		return nil, err
	}
	r.body = string(body)
	return r, nil
}

// exchange sends req on a new connection and reads the response. A nil
// response with a nil error means the server closed the connection without
// answering, which is how a server may refuse a request it will not read.
func exchange(addr string, req []byte) (*rawResponse, error) {
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	// Only so that a server that stopped answering fails the test rather
	// than hanging it; nothing here measures time.
	conn.SetDeadline(time.Now().Add(time.Minute))
	// The server may stop reading a request it refuses, so the request is
	// written beside the read rather than before it.
	wrote := make(chan struct{})
	go func() {
		defer close(wrote)
		conn.Write(req)
	}()
	defer func() { conn.Close(); <-wrote }()
	resp, err := readRawResponse(bufio.NewReader(conn))
	if err != nil && !errors.Is(err, errMalformed) && !errors.Is(err, io.ErrUnexpectedEOF) {
		var ne net.Error
		if errors.Is(err, io.EOF) || (errors.As(err, &ne) && !ne.Timeout()) {
			return nil, nil // closed, or reset because the request was left unread
		}
	}
	return resp, err
}

// counterRequest is a GET /counter carrying the given header lines, each
// ending in CR LF.
func counterRequest(headers string) []byte {
	return []byte("GET /counter HTTP/1.1\r\nHost: example.test\r\n" + headers + "\r\n")
}
