package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kvsession/kvsession"
	"github.com/kvsession/kvsession/admin"
	"github.com/kvsession/kvsession/internal/sessiontest"
	"github.com/kvsession/kvsession/store"
	"github.com/kvsession/kvsession/store/badgerstore"
	"github.com/kvsession/kvsession/store/memstore"
	"github.com/kvsession/kvsession/store/redisstore"
)

// populate saves sessions in b: ada on two devices, bob on one, and
// anon anonymous ones. It returns the handle of ada's first session.
func populate(t *testing.T, b *kvsession.ServerBackend, anon int) string {
	t.Helper()
	var handle string
	for i, user := range []string{"ada", "ada", "bob"} {
		id := sessiontest.Request(t, b, "", func(s *kvsession.Session) {
			s.Set("device", i)
			s.SetUser(user)
			s.SetClientInfo("Firefox/140", "192.0.2."+strconv.Itoa(i))
		})
		if i == 0 {
			sessiontest.Request(t, b, id, func(s *kvsession.Session) { handle = s.Handle() })
		}
	}
	for range anon {
		sessiontest.Request(t, b, "", func(s *kvsession.Session) { s.Set("n", 1) })
	}
	return handle
}

func newBackend(t *testing.T, st store.Store) *kvsession.ServerBackend {
	t.Helper()
	reg := store.NewRegistry(nil)
	if err := reg.Register(kvsession.DefaultStore, st); err != nil {
		t.Fatal(err)
	}
	b, err := kvsession.New(kvsession.Config{}, reg)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// admin runs the command and returns its exit status and output.
func runAdmin(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), args, &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

// jsonLines decodes -json output.
func jsonLines(t *testing.T, out string) (sessions []kvsession.SessionInfo, res admin.Result) {
	t.Helper()
	lines := strings.Split(strings.TrimSpace(out), "\n")
	for _, line := range lines[:len(lines)-1] {
		var info kvsession.SessionInfo
		if err := json.Unmarshal([]byte(line), &info); err != nil {
			t.Fatalf("line %q: %v", line, err)
		}
		sessions = append(sessions, info)
	}
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &res); err != nil {
		t.Fatalf("last line %q: %v", lines[len(lines)-1], err)
	}
	return sessions, res
}

// exercise runs every command against target (its flags), over a store
// populate filled with ada, bob and two anonymous sessions.
func exercise(t *testing.T, handle string, target ...string) {
	t.Helper()
	cmd := func(args ...string) (int, string, string) {
		t.Helper()
		return runAdmin(t, append(append([]string{}, target...), args...)...)
	}
	if code, out, errs := cmd("count"); code != 0 || out != "5 sessions\n" {
		t.Fatalf("count: %d %q %q", code, out, errs)
	}
	code, out, _ := cmd("list")
	if code != 0 || !strings.Contains(out, handle) || !strings.Contains(out, "192.0.2.0 Firefox/140") || !strings.HasSuffix(out, "5 sessions listed\n") {
		t.Fatalf("list: %d\n%s", code, out)
	}
	if head := strings.SplitN(out, "\n", 2)[0]; !strings.HasPrefix(head, "HANDLE") {
		t.Fatalf("list's table starts %q", head)
	}
	code, out, _ = cmd("-json", "list")
	if list, res := jsonLines(t, out); code != 0 || len(list) != 5 || res.Sessions != 5 {
		t.Fatalf("list -json: %d %v %+v", code, list, res)
	}
	code, out, _ = cmd("-json", "-user", "ada", "list")
	if list, _ := jsonLines(t, out); code != 0 || len(list) != 2 || list[0].User != "ada" {
		t.Fatalf("list -user ada: %d %v", code, list)
	}
	code, out, _ = cmd("-values", "show", handle)
	if code != 0 || !strings.Contains(out, "device = 0") || !strings.Contains(out, "ada") {
		t.Fatalf("show -values: %d\n%s", code, out)
	}
	if code, _, errs := cmd("show", "AAECAwQFBgcICQoL"); code != 3 || !strings.Contains(errs, "no such session") {
		t.Fatalf("show of an unknown handle: %d %q", code, errs)
	}
	if code, _, errs := cmd("show", "nope"); code != 1 || !strings.Contains(errs, "malformed") {
		t.Fatalf("show of a malformed handle: %d %q", code, errs)
	}
	if code, out, _ := cmd("destroy", handle); code != 0 || out != "session ended\n" {
		t.Fatalf("destroy: %d %q", code, out)
	}
	if code, out, _ := cmd("destroy-user", "ada"); code != 0 || out != "1 sessions ended\n" {
		t.Fatalf("destroy-user ada: %d %q", code, out)
	}
	if code, out, _ := cmd("purge"); code != 0 || !strings.HasPrefix(out, "0 expired sessions deleted") {
		t.Fatalf("purge: %d %q", code, out)
	}
	if code, out, _ := cmd("count"); code != 0 || out != "3 sessions\n" {
		t.Fatalf("count after the ends: %d %q", code, out)
	}
}

func TestCommandThroughAServicesHandler(t *testing.T) {
	st := memstore.New(memstore.Options{})
	b := newBackend(t, st)
	defer b.Close()
	handle := populate(t, b, 2)
	h := admin.NewHandler(b)
	srv := httptest.NewServer(http.StripPrefix("/admin/sessions", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer s3cret" {
			http.Error(w, "who are you?", http.StatusUnauthorized)
			return
		}
		h.ServeHTTP(w, r)
	})))
	defer srv.Close()
	exercise(t, handle, "-url", srv.URL+"/admin/sessions/", "-header", "Authorization: Bearer s3cret")
	if code, _, errs := runAdmin(t, "-url", srv.URL+"/admin/sessions", "count"); code != 1 || !strings.Contains(errs, "unreadable answer (401") {
		t.Fatalf("without the service's auth: %d %q", code, errs)
	}
}

func TestCommandOnABadgerDirectory(t *testing.T) {
	dir := t.TempDir()
	st, err := badgerstore.Open(badgerstore.Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	b := newBackend(t, st)
	handle := populate(t, b, 2)
	// Badger lets one process in: the command says what to do instead.
	if code, _, errs := runAdmin(t, "-badger", dir, "count"); code != 1 || !strings.Contains(errs, "use -url") {
		t.Fatalf("on a directory in use: %d %q", code, errs)
	}
	b.Close()
	st.Close()
	exercise(t, handle, "-badger", dir)
	if code, _, errs := runAdmin(t, "-badger", dir+"/missing", "count"); code != 1 || !strings.Contains(errs, "-badger") {
		t.Fatalf("a missing directory: %d %q", code, errs)
	}
}

func TestCommandOnRedis(t *testing.T) {
	addr := os.Getenv("KVSESSION_REDIS_ADDR")
	if addr == "" {
		if os.Getenv("KVSESSION_REQUIRE_REDIS") != "" {
			t.Fatal("KVSESSION_REQUIRE_REDIS is set but KVSESSION_REDIS_ADDR is not")
		}
		t.Skip("no Redis: set KVSESSION_REDIS_ADDR")
	}
	prefix := "kvsession-admin:" + strconv.FormatInt(time.Now().UnixNano(), 36) + ":"
	st, err := redisstore.Open(context.Background(), redisstore.Options{Addr: addr, Prefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	defer st.DeleteAll(context.Background())
	b := newBackend(t, st)
	defer b.Close()
	handle := populate(t, b, 2)
	exercise(t, handle, "-redis", "redis://"+addr, "-redis-prefix", prefix)
}

func TestCommandLine(t *testing.T) {
	tests := []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"count"}, 1, "exactly one of"},
		{[]string{"-url", "http://x", "-badger", "d", "count"}, 1, "exactly one of"},
		{[]string{"-url", "http://x"}, 2, "no command"},
		{[]string{"-url", "http://x", "frobnicate"}, 2, "unknown command"},
		{[]string{"-url", "http://x", "show"}, 2, "show takes 1"},
		{[]string{"-redis", "http://x", "count"}, 1, "URL scheme"},
		{[]string{"-redis", "redis://127.0.0.1:1/3", "count"}, 1, "database 0"},
		{[]string{"-url", "http://x", "-header", "nocolon", "count"}, 2, "Name: value"},
	}
	for _, tc := range tests {
		code, _, errs := runAdmin(t, tc.args...)
		if code != tc.code || !strings.Contains(errs, tc.msg) {
			t.Errorf("%q: exit %d, %q; want %d and %q", tc.args, code, errs, tc.code, tc.msg)
		}
	}
}

func TestRedisOptions(t *testing.T) {
	opts, err := redisOptions("rediss://user:pw@cache.internal:6380/0")
	if err != nil || opts.Addr != "cache.internal:6380" || opts.Username != "user" || opts.Password != "pw" || opts.TLS == nil || opts.TLS.ServerName != "cache.internal" {
		t.Fatalf("redisOptions = %+v, %v", opts, err)
	}
}
