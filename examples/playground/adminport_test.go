package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/kvsession/kvsession/admin"
	"github.com/kvsession/kvsession/internal/sessiontest"
)

// adminToken is the -admin-token of the tests: long enough that finding
// it in a log is no accident.
const adminToken = "playground-test-admin-token-5f1c"

// adminAddrOf returns the admin port's address from p's start log.
func adminAddrOf(t *testing.T, p *playground) string {
	t.Helper()
	m := regexp.MustCompile(`msg="playground listening" .* admin_addr=(\S+)`).FindStringSubmatch(p.log.String())
	if m == nil {
		t.Fatalf("the start log has no admin_addr:\n%s", p.log)
	}
	return m[1]
}

// adminAnswer is one answer of the admin port, its JSON lines decoded.
type adminAnswer struct {
	status int
	header http.Header
	events []admin.Event
	body   string
}

// adminGet sends GET path to the admin port at addr with the Authorization
// header auth ("" for none).
func adminGet(t *testing.T, addr, path, auth string) adminAnswer {
	t.Helper()
	req, err := http.NewRequest("GET", "http://"+addr+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	a := adminAnswer{status: resp.StatusCode, header: resp.Header, body: string(body)}
	if ct := resp.Header.Get("Content-Type"); ct != "application/x-ndjson" {
		t.Errorf("GET %s: Content-Type %q, want application/x-ndjson (the admin handler's)", path, ct)
	}
	sc := bufio.NewScanner(bytes.NewReader(body))
	for sc.Scan() {
		var e admin.Event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("GET %s: line %q: %v", path, sc.Text(), err)
		}
		a.events = append(a.events, e)
	}
	return a
}

// result returns the answer's result line, failing the test without one.
func (a adminAnswer) result(t *testing.T) admin.Result {
	t.Helper()
	if a.status != 200 || len(a.events) == 0 || a.events[len(a.events)-1].Result == nil {
		t.Fatalf("admin answer %d %q, want 200 ending with a result", a.status, a.body)
	}
	return *a.events[len(a.events)-1].Result
}

// TestAdminPort: with -admin-addr the admin handler answers on a port of
// its own, under /admin/sessions/, to the bearer of -admin-token only;
// the public port does not serve it; the port closes with the playground.
func TestAdminPort(t *testing.T) {
	p := start(t, "-store", "memory", "-addr", "127.0.0.1:0", "-admin-addr", "127.0.0.1:0", "-admin-token", adminToken)
	addr := adminAddrOf(t, p)
	if strings.HasSuffix(addr, ":0") || !strings.HasPrefix(addr, "127.0.0.1:") {
		t.Fatalf("admin_addr=%s, want the port 127.0.0.1:0 was given", addr)
	}
	// Three sessions: two of alice, one anonymous.
	var alice []*sessiontest.Client
	for range 2 {
		c := sessiontest.NewClient(t, p.base)
		c.Login("alice")
		alice = append(alice, c)
	}
	anon := sessiontest.NewClient(t, p.base)
	anon.Expect("GET", "/counter", "", 200, "1")

	bearer := "Bearer " + adminToken
	for _, tc := range []struct {
		name, path, auth string
		status           int
	}{
		{"no header", "/admin/sessions/count", "", 401},
		{"no header, elsewhere", "/nope", "", 401}, // the port says nothing more to a stranger
		{"wrong token", "/admin/sessions/count", "Bearer nope", 401},
		{"token cut short", "/admin/sessions/count", bearer[:len(bearer)-1], 401},
		{"token and more", "/admin/sessions/count", bearer + "x", 401},
		{"no scheme", "/admin/sessions/count", adminToken, 401},
		{"another scheme", "/admin/sessions/count", "Basic " + adminToken, 401},
		{"scheme alone", "/admin/sessions/count", "Bearer", 401},
		{"token, outside the prefix", "/nope", bearer, 404},
		{"token", "/admin/sessions/count", bearer, 200},
		{"token, scheme in lower case", "/admin/sessions/count", "bearer " + adminToken, 200}, // RFC 9110: case-insensitive
	} {
		a := adminGet(t, addr, tc.path, tc.auth)
		if a.status != tc.status {
			t.Errorf("%s: GET %s = %d %q, want %d", tc.name, tc.path, a.status, a.body, tc.status)
			continue
		}
		switch tc.status {
		case 401:
			if a.header.Get("WWW-Authenticate") != `Bearer realm="kvsession-admin"` || len(a.events) != 1 || !strings.Contains(a.events[0].Error, "-admin-token") {
				t.Errorf("%s: 401 with WWW-Authenticate %q and %q, want a Bearer challenge and one error line naming -admin-token",
					tc.name, a.header.Get("WWW-Authenticate"), a.body)
			}
		case 200:
			if got := a.result(t).Sessions; got != 3 {
				t.Errorf("%s: count = %d, want 3", tc.name, got)
			}
		}
	}

	list := adminGet(t, addr, "/admin/sessions/sessions", bearer)
	if got := list.result(t).Sessions; got != 3 || len(list.events) != 4 {
		t.Errorf("GET /admin/sessions/sessions = %q, want 3 sessions and a result", list.body)
	}
	if got := adminGet(t, addr, "/admin/sessions/users/alice/sessions", bearer).result(t).Sessions; got != 2 {
		t.Errorf("alice's sessions = %d, want 2", got)
	}
	for _, c := range append(alice, anon) {
		if ck := c.SessionCookie(); strings.Contains(list.body, ck.Value) {
			t.Errorf("the admin listing shows a session id: %s", list.body)
		}
	}
	// The public port has no admin routes.
	anon.Expect("GET", "/admin/sessions/count", "", 404, "not found\n")

	log := p.log.String()
	if strings.Contains(log, adminToken) {
		t.Errorf("the log shows the admin token:\n%s", log)
	}
	if n := strings.Count(log, "admin request refused"); n != 8 {
		t.Errorf("%d refused admin requests logged, want 8:\n%s", n, log)
	}
	if strings.Contains(log, "not on loopback") {
		t.Errorf("the log warns about an admin port on loopback:\n%s", log)
	}

	if err := p.stop(); err != nil {
		t.Fatal(err)
	}
	if conn, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		conn.Close()
		t.Errorf("the admin port %s still accepts connections after the playground stopped", addr)
	}
}

// TestAdminCommand runs the real kvsession-admin against the admin port,
// as an operator would: it counts and lists the playground's sessions, and
// logs a user out everywhere.
func TestAdminCommand(t *testing.T) {
	if testing.Short() {
		t.Skip("builds cmd/kvsession-admin: not with -short")
	}
	exe := filepath.Join(t.TempDir(), "kvsession-admin")
	// go test puts its own go command first on PATH; the workspace
	// (go.work) finds the core module's command.
	if out, err := exec.Command("go", "build", "-o", exe, "github.com/kvsession/kvsession/cmd/kvsession-admin").CombinedOutput(); err != nil {
		t.Fatalf("go build kvsession-admin: %v\n%s", err, out)
	}
	p := start(t, "-store", "memory", "-addr", "127.0.0.1:0", "-admin-addr", "127.0.0.1:0", "-admin-token", adminToken, "-server", "nethttp")
	url := "http://" + adminAddrOf(t, p) + adminPrefix
	var alice []*sessiontest.Client
	for range 2 {
		c := sessiontest.NewClient(t, p.base)
		c.Login("alice")
		alice = append(alice, c)
	}
	sessiontest.NewClient(t, p.base).Expect("GET", "/counter", "", 200, "1")

	admin := func(withToken bool, args ...string) (stdout, stderr string, code int) {
		t.Helper()
		base := []string{"-url", url}
		if withToken {
			base = append(base, "-header", "Authorization: Bearer "+adminToken)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, exe, append(base, args...)...)
		var out, errOut bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errOut
		err := cmd.Run()
		var exit *exec.ExitError
		if err != nil && !errors.As(err, &exit) {
			t.Fatalf("kvsession-admin %q: %v", args, err)
		}
		return out.String(), errOut.String(), cmd.ProcessState.ExitCode()
	}
	for _, tc := range []struct {
		name      string
		withToken bool
		args      []string
		code      int
		stdout    string // a line it must print
		stderr    string
	}{
		{"count", true, []string{"count"}, 0, "3 sessions\n", ""},
		{"list", true, []string{"list"}, 0, "3 sessions listed\n", ""},
		{"alice's", true, []string{"-user", "alice", "list"}, 0, "2 sessions listed\n", ""},
		{"without the token", false, []string{"count"}, 1, "", "unauthorized"},
		{"log alice out", true, []string{"destroy-user", "alice"}, 0, "2 sessions ended\n", ""},
		{"count after", true, []string{"count"}, 0, "1 sessions\n", ""},
	} {
		stdout, stderr, code := admin(tc.withToken, tc.args...)
		if code != tc.code || !strings.Contains(stdout, tc.stdout) || !strings.Contains(stderr, tc.stderr) {
			t.Errorf("%s: kvsession-admin %q exited %d\nstdout: %s\nstderr: %s\nwant exit %d, %q on stdout, %q on stderr",
				tc.name, tc.args, code, stdout, stderr, tc.code, tc.stdout, tc.stderr)
		}
	}
	for i, c := range alice {
		if r := c.Do("GET", "/whoami", ""); r.Status != 404 {
			t.Errorf("alice's client %d after destroy-user: GET /whoami = %d %q, want 404", i, r.Status, r.Body)
		}
	}
}

// TestAdminPortStart: the admin port's address must be free, and the
// error names the flag; nothing listens after it.
func TestAdminPortStart(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	args := []string{"-store", "memory", "-addr", "127.0.0.1:0", "-admin-addr", taken.Addr().String(), "-admin-token", adminToken}
	err = run(ctx, args, nil, io.Discard, func(string) { t.Error("the playground started"); cancel() })
	if err == nil || !strings.HasPrefix(err.Error(), "-admin-addr: ") {
		t.Errorf("run with -admin-addr on a taken port = %v, want an error naming -admin-addr", err)
	}
}

func TestIsLoopback(t *testing.T) {
	for _, tc := range []struct {
		ip   string
		want bool
	}{
		{"127.0.0.1", true},
		{"127.1.2.3", true},
		{"::1", true},
		{"0.0.0.0", false}, // every interface: ":0" and "0.0.0.0:0"
		{"::", false},
		{"192.168.1.2", false},
	} {
		if got := isLoopback(&net.TCPAddr{IP: net.ParseIP(tc.ip)}); got != tc.want {
			t.Errorf("isLoopback(%s) = %v, want %v", tc.ip, got, tc.want)
		}
	}
}
