package kvhttp_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"testing"

	"github.com/kvsession/kvsession"
	"github.com/kvsession/kvsession/kvhttp"
	"github.com/kvsession/kvsession/store"
	"github.com/kvsession/kvsession/store/memstore"
)

// statusApp is a server backend on a memory store behind the middleware,
// with a session holding n = 1.
type statusApp struct {
	be     *kvsession.ServerBackend
	h      http.Handler
	cookie string
}

func newStatusApp(t *testing.T, cfg kvsession.Config, next http.HandlerFunc) *statusApp {
	t.Helper()
	st := memstore.New(memstore.Options{})
	t.Cleanup(func() { st.Close() })
	reg := store.NewRegistry(nil)
	if err := reg.Register("sessions", st); err != nil {
		t.Fatal(err)
	}
	be, err := kvsession.New(cfg, reg)
	if err != nil {
		t.Fatal(err)
	}
	id, _ := be.GenerateID()
	if err := be.Set(t.Context(), id, map[string]any{"n": 1}); err != nil {
		t.Fatal(err)
	}
	mw, err := kvhttp.New(be, kvhttp.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return &statusApp{be: be, h: mw.Handler(next), cookie: "session=" + id}
}

func (a *statusApp) do() *http.Response {
	req := httptest.NewRequest("GET", "/", nil)
	req.Header.Set("Cookie", a.cookie)
	w := httptest.NewRecorder()
	a.h.ServeHTTP(w, req)
	return w.Result()
}

func (a *statusApp) n(t *testing.T) int64 {
	t.Helper()
	values, err := a.be.Get(t.Context(), a.cookie[len("session="):])
	if err != nil {
		t.Fatal(err)
	}
	n, _ := values["n"].(int64)
	return n
}

// TestServerErrorSavesNothing: a handler that changes the session and
// answers 5xx (the WriteHeader commits) leaves the store as it was and
// sends no Set-Cookie; 4xx saves, and so does 5xx with SaveOnServerError.
// http.Error writes the header before its body, as most handlers do.
func TestServerErrorSavesNothing(t *testing.T) {
	for _, tc := range []struct {
		status    int
		saveOn5xx bool
		want      int64
	}{
		{500, false, 1},
		{503, false, 1},
		{500, true, 2},
		{404, false, 2},
	} {
		t.Run(strconv.Itoa(tc.status)+map[bool]string{true: " SaveOnServerError"}[tc.saveOn5xx], func(t *testing.T) {
			a := newStatusApp(t, kvsession.Config{SaveOnServerError: tc.saveOn5xx}, func(w http.ResponseWriter, r *http.Request) {
				kvhttp.Session(r).SetInt("n", 2)
				http.Error(w, "failed", tc.status)
			})
			resp := a.do()
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want the handler's %d", resp.StatusCode, tc.status)
			}
			if got := a.n(t); got != tc.want {
				t.Fatalf("stored n = %d, want %d", got, tc.want)
			}
			if sc := resp.Header.Values("Set-Cookie"); (len(sc) > 0) != (tc.want == 2) {
				t.Fatalf("Set-Cookie %q, want one only when saved", sc)
			}
			if v := resp.Header.Values("Vary"); !slices.Equal(v, []string{"Cookie"}) {
				t.Fatalf("Vary %q, want Cookie once", v)
			}
		})
	}
}

// TestServerErrorAfterTheCommitStands: a 5xx status set after the first
// write is not the status the commit saw (200 went out): the save that
// went with it stands, as the package documentation says.
func TestServerErrorAfterTheCommitStands(t *testing.T) {
	a := newStatusApp(t, kvsession.Config{}, func(w http.ResponseWriter, r *http.Request) {
		kvhttp.Session(r).SetInt("n", 2)
		io.WriteString(w, "ok")
		w.WriteHeader(500) // superfluous: net/http ignores it
	})
	if resp := a.do(); resp.StatusCode != 200 || len(resp.Header.Values("Set-Cookie")) != 1 {
		t.Fatalf("status %d, Set-Cookie %q", resp.StatusCode, resp.Header.Values("Set-Cookie"))
	}
	if got := a.n(t); got != 2 {
		t.Fatalf("stored n = %d, want 2", got)
	}
}

// TestVaryOnCookieWhenTheSessionIsUsed: a route that only reads the
// session gets Vary: Cookie though it sets no cookie; one that never
// touches it gets no Vary; a handler's own Vary: Cookie is not repeated
// and one listing other fields gets Cookie added.
func TestVaryOnCookieWhenTheSessionIsUsed(t *testing.T) {
	for _, tc := range []struct {
		name    string
		handler http.HandlerFunc
		want    []string
	}{
		{"read", func(w http.ResponseWriter, r *http.Request) { kvhttp.Session(r).GetInt("n") }, []string{"Cookie"}},
		{"read, then write", func(w http.ResponseWriter, r *http.Request) {
			kvhttp.Session(r).GetInt("n")
			io.WriteString(w, "page")
		}, []string{"Cookie"}},
		{"untouched", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "static") }, nil},
		{"handler's own", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Vary", "Accept-Encoding, cookie")
			kvhttp.Session(r).GetInt("n")
		}, []string{"Accept-Encoding, cookie"}},
		{"handler's own, set", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Vary", "Cookie")
			kvhttp.Session(r).SetInt("n", 5)
		}, []string{"Cookie"}},
		{"other field", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Vary", "Accept-Encoding")
			kvhttp.Session(r).GetInt("n")
		}, []string{"Accept-Encoding", "Cookie"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := newStatusApp(t, kvsession.Config{}, tc.handler)
			resp := a.do()
			if got := resp.Header.Values("Vary"); !slices.Equal(got, tc.want) {
				t.Fatalf("Vary %q, want %q", got, tc.want)
			}
			if tc.name == "read" && len(resp.Header.Values("Set-Cookie")) != 0 {
				t.Fatal("a read set the cookie")
			}
		})
	}
}
