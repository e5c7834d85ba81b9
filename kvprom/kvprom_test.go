package kvprom

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/kvsession/kvsession"
	"github.com/kvsession/kvsession/kvhttp"
	"github.com/kvsession/kvsession/store"
	"github.com/kvsession/kvsession/store/memstore"
	"github.com/kvsession/kvsession/store/storetest/faultstore"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// site is a real server: a kvsession.ServerBackend with the metrics, on
// the memory store behind a fault store, served by kvhttp over loopback.
type site struct {
	t   *testing.T
	b   *kvsession.ServerBackend
	fs  *faultstore.Store
	reg *prometheus.Registry
	srv *httptest.Server
	ids []string // every session id the handlers saw: no metric may hold one
}

func newSite(t *testing.T, cfg kvsession.Config) *site {
	t.Helper()
	fs := faultstore.New(memstore.New(memstore.Options{}))
	t.Cleanup(func() { fs.Store().Close() })
	stores := store.NewRegistry(nil)
	if err := stores.Register(kvsession.DefaultStore, fs.Store()); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	m, err := New(Options{Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	cfg.Logger = slog.New(slog.DiscardHandler)
	m.Instrument(&cfg)
	b, err := kvsession.New(cfg, stores)
	if err != nil {
		t.Fatal(err)
	}
	s := &site{t: t, b: b, fs: fs, reg: reg}
	mw, err := kvhttp.New(b, kvhttp.Options{ErrorHandler: func(w http.ResponseWriter, _ *http.Request, _ error) {
		http.Error(w, "session unavailable", http.StatusServiceUnavailable)
	}})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/inc", func(w http.ResponseWriter, r *http.Request) {
		sess := kvhttp.Session(r)
		n, _ := sess.GetInt("n")
		sess.SetInt("n", n+1)
		fmt.Fprint(w, n+1)
	})
	mux.HandleFunc("/read", func(w http.ResponseWriter, r *http.Request) {
		n, _ := kvhttp.Session(r).GetInt("n")
		fmt.Fprint(w, n)
	})
	mux.HandleFunc("/login", func(w http.ResponseWriter, r *http.Request) {
		sess := kvhttp.Session(r)
		sess.RenewID()
		sess.SetUser(r.URL.Query().Get("user"))
		fmt.Fprint(w, "ok")
	})
	mux.HandleFunc("/id", func(w http.ResponseWriter, r *http.Request) {
		id := kvhttp.Session(r).ID()
		s.ids = append(s.ids, id)
		fmt.Fprint(w, id)
	})
	mux.HandleFunc("/plain", func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "plain") })
	mux.HandleFunc("/logout", func(w http.ResponseWriter, r *http.Request) {
		if err := kvhttp.Session(r).Destroy(); err != nil {
			http.Error(w, "logout failed", http.StatusInternalServerError)
			return
		}
		fmt.Fprint(w, "bye")
	})
	s.srv = httptest.NewServer(mw.Handler(mux))
	t.Cleanup(s.srv.Close)
	return s
}

// client is a browser of its own: a cookie jar.
func (s *site) client() *http.Client {
	jar, err := cookiejar.New(nil)
	if err != nil {
		s.t.Fatal(err)
	}
	return &http.Client{Jar: jar}
}

// get requests path with c and returns the status and body.
func (s *site) get(c *http.Client, path string) (int, string) {
	s.t.Helper()
	resp, err := c.Get(s.srv.URL + path)
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		s.t.Fatal(err)
	}
	return resp.StatusCode, string(body)
}

// want requests path with c and fails the test unless it answers body.
func (s *site) want(c *http.Client, path, body string) {
	s.t.Helper()
	if status, got := s.get(c, path); status != http.StatusOK || got != body {
		s.t.Fatalf("GET %s = %d %q, want 200 %q", path, status, got, body)
	}
}

// setCookie gives c the session cookie value, as a client replaying or
// forging one would.
func (s *site) setCookie(c *http.Client, value string) {
	u, _ := url.Parse(s.srv.URL)
	c.Jar.SetCookies(u, []*http.Cookie{{Name: kvsession.DefaultCookieName, Value: value, Path: "/"}})
}

// value reads from the registry the metric kvsession_<name> whose labels
// are labels (name=value pairs): a counter's value, or a histogram's
// count of observations. A metric that is not there is 0.
func (s *site) value(name string, labels ...string) float64 {
	s.t.Helper()
	families, err := s.reg.Gather()
	if err != nil {
		s.t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != "kvsession_"+name {
			continue
		}
		for _, m := range f.GetMetric() {
			if !hasLabels(m, labels) {
				continue
			}
			if h := m.GetHistogram(); h != nil {
				return float64(h.GetSampleCount())
			}
			return m.GetCounter().GetValue()
		}
	}
	return 0
}

func hasLabels(m *dto.Metric, labels []string) bool {
	if len(m.GetLabel()) != len(labels)/2 {
		return false
	}
	for i := 0; i < len(labels); i += 2 {
		found := false
		for _, l := range m.GetLabel() {
			if l.GetName() == labels[i] && l.GetValue() == labels[i+1] {
				found = true
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// expect checks metric values: name (with its labels, as in the
// exposition format) to value.
func (s *site) expect(want map[string]float64) {
	s.t.Helper()
	for series, v := range want {
		name, labels := parseSeries(series)
		if got := s.value(name, labels...); got != v {
			s.t.Errorf("%s = %v, want %v", series, got, v)
		}
	}
}

// parseSeries splits `loads_total{outcome="hit"}` into the name and its
// label pairs.
func parseSeries(series string) (string, []string) {
	name, rest, ok := strings.Cut(series, "{")
	if !ok {
		return name, nil
	}
	var labels []string
	for _, pair := range strings.Split(strings.TrimSuffix(rest, "}"), ",") {
		k, v, _ := strings.Cut(pair, "=")
		labels = append(labels, k, strings.Trim(v, `"`))
	}
	return name, labels
}

// TestMetricsAfterRequests: real requests over HTTP move the metrics by
// exactly what they did, read back from the registry.
func TestMetricsAfterRequests(t *testing.T) {
	s := newSite(t, kvsession.Config{PlainStoreKeys: true})
	ada := s.client()
	s.want(ada, "/inc", "1")  // a new session: created, saved; no cookie: a "none" load
	s.want(ada, "/read", "1") // three hits
	s.want(ada, "/read", "1")
	s.want(ada, "/read", "1")
	s.want(ada, "/inc", "2")              // a hit, saved
	s.want(ada, "/login?user=ada", "ok")  // a hit, saved, its id renewed
	s.want(ada, "/logout", "bye")         // a hit, destroyed
	s.want(s.client(), "/plain", "plain") // no session used: nothing

	// A cookie naming no session: a miss.
	stranger := s.client()
	unknown, err := s.b.GenerateID()
	if err != nil {
		t.Fatal(err)
	}
	s.ids = append(s.ids, unknown)
	s.setCookie(stranger, unknown)
	s.want(stranger, "/read", "0")

	// A record damaged in the store: corrupt. PlainStoreKeys keeps it
	// under the id itself, where the test can reach it.
	bob := s.client()
	s.want(bob, "/inc", "1")
	_, id := s.get(bob, "/id")
	if err := s.fs.Inner().Set(context.Background(), id, []byte{0xff, 0, 1}, time.Hour); err != nil {
		t.Fatal(err)
	}
	s.want(bob, "/read", "0")

	s.expect(map[string]float64{
		"sessions_created_total":                    2, // ada's and bob's
		"sessions_destroyed_total":                  1, // ada's logout
		"saves_total":                               4, // ada: two /inc and the login; bob: one /inc
		`loads_total{outcome="none"}`:               2,
		`loads_total{outcome="hit"}`:                7, // ada 6, bob's /id
		`loads_total{outcome="miss"}`:               1,
		`loads_total{outcome="corrupt"}`:            1,
		`loads_total{outcome="expired"}`:            0,
		`loads_total{outcome="forwarded"}`:          0,
		`loads_total{outcome="error"}`:              0,
		`id_renewals_total{cause="requested"}`:      1,
		`id_renewals_total{cause="rotation"}`:       0,
		"logouts_everywhere_total":                  0,
		`store_errors_total{op="load"}`:             0,
		"lock_wait_seconds":                         0, // no Config.Lock
		`store_call_seconds{method="GetAppend"}`:    float64(s.fs.Calls(faultstore.GetAppend)),
		`store_call_seconds{method="Set"}`:          float64(s.fs.Calls(faultstore.Set)),
		`store_call_seconds{method="Swap"}`:         float64(s.fs.Calls(faultstore.Swap)),
		`store_call_seconds{method="Delete"}`:       float64(s.fs.Calls(faultstore.Delete)),
		`store_call_seconds{method="AddMember"}`:    float64(s.fs.Calls(faultstore.AddMember)),
		`store_call_seconds{method="TryLock"}`:      0,
		`store_call_seconds{method="PurgeExpired"}`: 0,
	})
	// One load from the store per request that used its session and
	// carried an id: the hits, the miss and the corrupt record.
	if got := s.value("store_call_seconds", "method", "GetAppend"); got != 9 {
		t.Errorf("%v loads timed, want 9", got)
	}
	s.checkLabels()
}

// TestMetricsOfFailuresAndLocks: store failures count by operation, the
// session lock's waits and failures are measured, and a log out
// everywhere counts once, its sessions each as destroyed.
func TestMetricsOfFailuresAndLocks(t *testing.T) {
	s := newSite(t, kvsession.Config{Lock: true, LockWait: 50 * time.Millisecond})
	ada, ada2 := s.client(), s.client()
	s.want(ada, "/login?user=ada", "ok")
	s.want(ada2, "/login?user=ada", "ok")
	s.want(ada, "/read", "0")

	// The store fails every write: the save fails, the client is answered
	// by the error handler, and nothing counts as saved.
	errDown := errors.New("store down")
	down := s.fs.Fail(faultstore.Writes, errDown)
	if status, _ := s.get(ada, "/inc"); status != http.StatusServiceUnavailable {
		t.Fatalf("a failed save answered %d", status)
	}
	down.Remove()
	down = s.fs.Fail(faultstore.Reads, errDown)
	if status, _ := s.get(ada, "/read"); status != http.StatusServiceUnavailable {
		t.Fatalf("a failed load answered %d", status)
	}
	down.Remove()

	// A lock held by a request in flight: the next one waits LockWait and
	// fails.
	hold := s.b.LoadFromRequest(context.Background(), cookieHeader(t, ada, s.srv.URL))
	if err := hold.Load(); err != nil {
		t.Fatal(err)
	}
	if status, _ := s.get(ada, "/read"); status != http.StatusServiceUnavailable {
		t.Fatalf("a request whose lock was held answered %d", status)
	}
	s.b.Release(hold)

	if n, err := s.b.DestroyUserSessions(context.Background(), "ada"); n != 2 || err != nil {
		t.Fatalf("DestroyUserSessions = %d, %v", n, err)
	}

	s.expect(map[string]float64{
		"sessions_created_total":               2,
		"saves_total":                          2,
		`id_renewals_total{cause="requested"}`: 0, // RenewID on a new session retires no id
		`store_errors_total{op="save"}`:        1,
		`store_errors_total{op="load"}`:        1,
		`store_errors_total{op="delete"}`:      0,
		`loads_total{outcome="error"}`:         2, // the failed read, and the lock not taken
		`loads_total{outcome="hit"}`:           3, // /read, /inc, the holder
		"lock_failures_total":                  1,
		// Every load of an id took or tried the lock (the logins came
		// with none): /read, /inc, the failed read, the holder, the one
		// that waited.
		"lock_wait_seconds":        5,
		"sessions_destroyed_total": 2,
		"logouts_everywhere_total": 1,
	})
	// The one that waited waited LockWait: it is in no bucket below it.
	s.checkLockWaitAtLeast(50 * time.Millisecond)
	s.checkLabels()
}

// cookieHeader is the Cookie header c would send to u.
func cookieHeader(t *testing.T, c *http.Client, u string) []byte {
	parsed, err := url.Parse(u)
	if err != nil {
		t.Fatal(err)
	}
	var parts []string
	for _, ck := range c.Jar.Cookies(parsed) {
		parts = append(parts, ck.Name+"="+ck.Value)
	}
	return []byte(strings.Join(parts, "; "))
}

// checkLockWaitAtLeast checks that some lock wait was observed above d.
func (s *site) checkLockWaitAtLeast(d time.Duration) {
	s.t.Helper()
	families, err := s.reg.Gather()
	if err != nil {
		s.t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != "kvsession_lock_wait_seconds" {
			continue
		}
		h := f.GetMetric()[0].GetHistogram()
		for _, b := range h.GetBucket() {
			if b.GetUpperBound() < d.Seconds() && b.GetCumulativeCount() == h.GetSampleCount() {
				s.t.Errorf("every lock wait was within %vs; the one that timed out waited at least %v", b.GetUpperBound(), d)
			}
		}
		return
	}
	s.t.Error("no lock_wait_seconds")
}

// checkLabels checks that no label value holds a session id, and that
// every label is one of the few the package documents.
func (s *site) checkLabels() {
	s.t.Helper()
	families, err := s.reg.Gather()
	if err != nil {
		s.t.Fatal(err)
	}
	allowed := map[string]bool{"outcome": true, "cause": true, "op": true, "method": true, "le": true}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if !allowed[l.GetName()] {
					s.t.Errorf("%s has a label %q", f.GetName(), l.GetName())
				}
				for _, id := range s.ids {
					if id != "" && strings.Contains(l.GetValue(), id) {
						s.t.Errorf("%s has a label holding a session id", f.GetName())
					}
				}
			}
		}
	}
}

// TestNewRegistersOnce: a second New on one registry fails and leaves it
// as it was; with distinct ConstLabels, two backends' metrics share it.
func TestNewRegistersOnce(t *testing.T) {
	reg := prometheus.NewRegistry()
	if _, err := New(Options{Registerer: reg}); err != nil {
		t.Fatal(err)
	}
	var already prometheus.AlreadyRegisteredError
	if _, err := New(Options{Registerer: reg}); !errors.As(err, &already) {
		t.Fatalf("second New: %v, want AlreadyRegisteredError", err)
	}
	two := prometheus.NewRegistry()
	login, err := New(Options{Registerer: two, Namespace: "app", ConstLabels: prometheus.Labels{"session": "login"}})
	if err != nil {
		t.Fatal(err)
	}
	prefs, err := New(Options{Registerer: two, Namespace: "app", ConstLabels: prometheus.Labels{"session": "prefs"}})
	if err != nil {
		t.Fatal(err)
	}
	login.Events().Created(context.Background())
	prefs.Events().Created(context.Background())
	prefs.Events().Created(context.Background())
	families, err := two.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, f := range families {
		if f.GetName() == "app_kvsession_sessions_created_total" {
			for _, m := range f.GetMetric() {
				got[m.GetLabel()[0].GetValue()] = m.GetCounter().GetValue()
			}
		}
	}
	if got["login"] != 1 || got["prefs"] != 2 {
		t.Errorf("created by session: %v, want login 1, prefs 2", got)
	}
}

// TestInstrumentKeepsHooks: Instrument chains the hooks Config had before
// with the metrics': both see each event, once.
func TestInstrumentKeepsHooks(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := New(Options{Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	var mine []string
	cfg := kvsession.Config{Events: kvsession.Events{
		Created: func(context.Context) { mine = append(mine, "created") },
		Loaded:  func(_ context.Context, o kvsession.LoadOutcome) { mine = append(mine, "loaded "+o.String()) },
	}}
	m.Instrument(&cfg)
	ctx := context.Background()
	cfg.Events.Created(ctx)
	cfg.Events.Loaded(ctx, kvsession.LoadHit)
	cfg.Events.Saved(ctx)
	if strings.Join(mine, ",") != "created,loaded hit" {
		t.Errorf("the application's hooks saw %q", mine)
	}
	for name, want := range map[string]float64{"sessions_created_total": 1, "saves_total": 1} {
		if got := gather(t, reg, name); got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
}

func gather(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	s := &site{t: t, reg: reg}
	return s.value(name)
}

// TestHooksAllocateNothing: the hooks count on series resolved in New.
func TestHooksAllocateNothing(t *testing.T) {
	m, err := New(Options{Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	ev := m.Events()
	ctx := context.Background()
	errStore := errors.New("down")
	n := testing.AllocsPerRun(100, func() {
		ev.Created(ctx)
		ev.Loaded(ctx, kvsession.LoadHit)
		ev.Saved(ctx)
		ev.IDRenewed(ctx, kvsession.RenewRotation)
		ev.Destroyed(ctx)
		ev.StoreError(ctx, "save", errStore)
		ev.LockWaited(ctx, time.Millisecond, true)
		ev.StoreCall(ctx, "GetAppend", time.Microsecond, nil)
	})
	if n != 0 {
		t.Errorf("%v allocations per round of events, want 0", n)
	}
}
