package admin_test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/kvsession/kvsession"
	"github.com/kvsession/kvsession/admin"
	"github.com/kvsession/kvsession/internal/sessiontest"
	"github.com/kvsession/kvsession/store"
	"github.com/kvsession/kvsession/store/memstore"
)

// fleet is a backend with sessions: ada on two devices, bob on one, and
// two anonymous visitors.
type fleet struct {
	b      *kvsession.ServerBackend
	srv    *httptest.Server
	ids    map[string]string // by device
	handle map[string]string // by device
}

func newFleet(t *testing.T, st store.Store) *fleet {
	t.Helper()
	reg := store.NewRegistry(nil)
	if err := reg.Register(kvsession.DefaultStore, st); err != nil {
		t.Fatal(err)
	}
	b, err := kvsession.New(kvsession.Config{}, reg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	f := &fleet{b: b, ids: map[string]string{}, handle: map[string]string{}}
	for _, d := range []struct{ device, user, ua string }{
		{"ada-laptop", "ada", "Firefox/140"},
		{"ada-phone", "ada", "Safari/18"},
		{"bob", "bob", "curl/8"},
		{"anon1", "", ""},
		{"anon2", "", ""},
	} {
		f.ids[d.device] = sessiontest.Request(t, b, "", func(s *kvsession.Session) {
			s.Set("device", d.device)
			if d.user != "" {
				s.SetUser(d.user)
				s.SetClientInfo(d.ua, "192.0.2.1")
			}
		})
		sessiontest.Request(t, b, f.ids[d.device], func(s *kvsession.Session) { f.handle[d.device] = s.Handle() })
	}
	f.srv = httptest.NewServer(admin.NewHandler(b))
	t.Cleanup(f.srv.Close)
	return f
}

// call sends one request and reads its answer's events.
func (f *fleet) call(t *testing.T, method, path string) (int, []admin.Event) {
	t.Helper()
	req, _ := http.NewRequest(method, f.srv.URL+path, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "application/x-ndjson" {
		t.Fatalf("%s %s: Content-Type %q", method, path, ct)
	}
	var events []admin.Event
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		var e admin.Event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("%s %s: line %q: %v", method, path, sc.Text(), err)
		}
		events = append(events, e)
	}
	return resp.StatusCode, events
}

// result is the answer's last line, which must be its result.
func result(t *testing.T, events []admin.Event) admin.Result {
	t.Helper()
	if len(events) == 0 || events[len(events)-1].Result == nil {
		t.Fatalf("the answer does not end with a result: %+v", events)
	}
	return *events[len(events)-1].Result
}

func sessionsIn(events []admin.Event) []kvsession.SessionInfo {
	var out []kvsession.SessionInfo
	for _, e := range events {
		if e.Session != nil {
			out = append(out, *e.Session)
		}
	}
	return out
}

func (f *fleet) deviceOf(t *testing.T, info kvsession.SessionInfo) string {
	t.Helper()
	for d, h := range f.handle {
		if h == info.Handle {
			return d
		}
	}
	t.Fatalf("a session no device has: %+v", info)
	return ""
}

func TestHandler(t *testing.T) {
	st := memstore.New(memstore.Options{})
	f := newFleet(t, st)

	status, events := f.call(t, "GET", "/count")
	if res := result(t, events); status != 200 || res.Sessions != 5 || res.Visited < 5 {
		t.Fatalf("count: %d %+v", status, res)
	}

	_, events = f.call(t, "GET", "/sessions")
	var devices []string
	for _, info := range sessionsIn(events) {
		if info.Values != nil {
			t.Fatalf("values listed unasked: %+v", info)
		}
		devices = append(devices, f.deviceOf(t, info))
	}
	slices.Sort(devices)
	if want := []string{"ada-laptop", "ada-phone", "anon1", "anon2", "bob"}; !slices.Equal(devices, want) {
		t.Fatalf("listed %v, want %v", devices, want)
	}
	resp, err := http.Get(f.srv.URL + "/sessions?values=1&expired=1")
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for device, id := range f.ids {
		if strings.Contains(string(raw), id) {
			t.Fatalf("the listing shows %s's session id", device)
		}
	}

	_, events = f.call(t, "GET", "/sessions?user=ada&values=1")
	if list := sessionsIn(events); len(list) != 2 || list[0].Values["device"] == nil {
		t.Fatalf("ada's sessions with values: %+v", list)
	}

	status, events = f.call(t, "GET", "/sessions/"+f.handle["bob"]+"?values=1")
	if list := sessionsIn(events); status != 200 || len(list) != 1 || list[0].User != "bob" || list[0].UserAgent != "curl/8" || list[0].Values["device"] != "bob" {
		t.Fatalf("show bob: %d %+v", status, events)
	}

	status, events = f.call(t, "GET", "/users/ada/sessions")
	if list := sessionsIn(events); status != 200 || len(list) != 2 {
		t.Fatalf("ada's set: %d %+v", status, events)
	}

	status, events = f.call(t, "DELETE", "/sessions/"+f.handle["anon1"])
	if res := result(t, events); status != 200 || res.Sessions != 1 {
		t.Fatalf("destroy anon1: %d %+v", status, res)
	}
	sessiontest.Request(t, f.b, f.ids["anon1"], func(s *kvsession.Session) {
		if s.Len() != 0 {
			t.Fatal("anon1 survived its end")
		}
	})

	status, events = f.call(t, "DELETE", "/users/ada/sessions")
	if res := result(t, events); status != 200 || res.Sessions != 2 {
		t.Fatalf("destroy-user ada: %d %+v", status, res)
	}
	_, events = f.call(t, "GET", "/count")
	if res := result(t, events); res.Sessions != 2 {
		t.Fatalf("%d sessions left, want bob and anon2", res.Sessions)
	}

	status, events = f.call(t, "POST", "/purge")
	if res := result(t, events); status != 200 || res.Sessions != 0 {
		t.Fatalf("purge with nothing expired: %d %+v", status, res)
	}
}

// Requests the handler cannot serve get a 4xx or 5xx status and one error
// line; none ends a session.
func TestHandlerRefusals(t *testing.T) {
	type plain struct{ store.Store } // no Scanner
	mem := memstore.New(memstore.Options{})
	f := newFleet(t, mem)
	g := newFleet(t, plain{memstore.New(memstore.Options{})})
	tests := []struct {
		name         string
		f            *fleet
		method, path string
		status       int
	}{
		{"malformed handle", f, "GET", "/sessions/not-a-handle", 400},
		{"malformed handle, delete", f, "DELETE", "/sessions/x", 400},
		{"unknown handle", f, "GET", "/sessions/AAECAwQFBgcICQoL", 404},
		{"no such route", f, "GET", "/sessions/a/b", 404},
		{"wrong method", f, "PUT", "/count", 405},
		{"store without Scan", g, "GET", "/count", 501},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(tc.method, tc.f.srv.URL+tc.path, nil)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.status)
			}
		})
	}
	n, err := f.b.CountSessions(context.Background(), kvsession.ScanOptions{})
	if err != nil || n != 5 {
		t.Fatalf("after the refusals %d sessions, %v", n, err)
	}
}

// A walk shows progress lines before its result.
func TestHandlerStreamsProgress(t *testing.T) {
	f := newFleet(t, memstore.New(memstore.Options{}))
	for range 1500 {
		sessiontest.Request(t, f.b, "", func(s *kvsession.Session) { s.Set("n", 1) })
	}
	_, events := f.call(t, "GET", "/count")
	if events[0].Progress != 1000 {
		t.Fatalf("first line %+v, want progress at 1000", events[0])
	}
	if res := result(t, events); res.Sessions != 1505 || res.Visited < 1505 {
		t.Fatalf("count %+v", res)
	}
}
