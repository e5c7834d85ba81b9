package kvhttp_test

import (
	"bufio"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"

	"github.com/kvsession/kvsession"
	"github.com/kvsession/kvsession/internal/race"
	"github.com/kvsession/kvsession/kvhttp"
	"github.com/kvsession/kvsession/store"
	"github.com/kvsession/kvsession/store/memstore"
)

// benchWriter stands for net/http's writer (Flusher and Hijacker, as
// HTTP/1's), without its costs: the benchmark measures the middleware.
type benchWriter struct {
	header http.Header
	status int
}

func (w *benchWriter) Header() http.Header  { return w.header }
func (w *benchWriter) WriteHeader(code int) { w.status = code }
func (w *benchWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = 200
	}
	return len(p), nil
}
func (w *benchWriter) Flush() {}
func (w *benchWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	return nil, nil, http.ErrNotSupported
}

// reset empties the header the way a fresh response's would be, keeping
// the map.
func (w *benchWriter) reset() {
	clear(w.header)
	w.status = 0
}

// benchRoutes are the handlers BenchmarkMiddleware runs, as in kvfasthttp's.
// They write from benchBody, which the benchmark's single goroutine
// reuses: a buffer of the handler's own would escape through the Write
// call and count against the middleware.
var benchRoutes = map[string]http.HandlerFunc{
	"increment": func(w http.ResponseWriter, r *http.Request) {
		s := kvhttp.Session(r)
		n, _ := s.GetInt("n")
		s.SetInt("n", n+1)
		benchBody = strconv.AppendInt(benchBody[:0], int64(n+1), 10)
		w.Write(benchBody)
	},
	"read": func(w http.ResponseWriter, r *http.Request) {
		n, _ := kvhttp.Session(r).GetInt("n")
		benchBody = strconv.AppendInt(benchBody[:0], int64(n), 10)
		w.Write(benchBody)
	},
	"untouched": func(w http.ResponseWriter, r *http.Request) { w.Write(append(benchBody[:0], "ok"...)) },
}

var benchBody = make([]byte, 0, 20)

// benchSetup returns the route behind the middleware on the memory store,
// and a request carrying the cookie of a stored session.
func benchSetup(tb testing.TB, route string) (http.Handler, *http.Request) {
	st := memstore.New(memstore.Options{})
	tb.Cleanup(func() { st.Close() })
	reg := store.NewRegistry(nil)
	reg.Register("sessions", st)
	be, err := kvsession.New(kvsession.Config{}, reg)
	if err != nil {
		tb.Fatal(err)
	}
	id, _ := be.GenerateID()
	if err := be.Set(tb.Context(), id, map[string]any{"n": 1000}); err != nil {
		tb.Fatal(err)
	}
	mw, err := kvhttp.New(be, kvhttp.Options{})
	if err != nil {
		tb.Fatal(err)
	}
	req := httptest.NewRequest("GET", "/counter", nil)
	req.Header.Set("Cookie", "theme=dark; session="+id)
	return mw.Handler(benchRoutes[route]), req
}

// BenchmarkMiddleware measures a request through the middleware on the
// memory store, net/http's own request handling excluded: the context and
// writer set up, the cookie parsed, the session loaded, the handler run,
// the session saved and the Set-Cookie written.
func BenchmarkMiddleware(b *testing.B) {
	for _, name := range []string{"increment", "read", "untouched"} {
		b.Run(name, func(b *testing.B) {
			h, req := benchSetup(b, name)
			w := &benchWriter{header: http.Header{}}
			b.ReportAllocs()
			for b.Loop() {
				w.reset()
				h.ServeHTTP(w, req)
			}
			if w.status != 200 {
				b.Fatalf("status %d", w.status)
			}
		})
	}
}

// TestMiddlewareAllocs pins the allocations per request (the CI runs it
// without -race, which drops pooled objects at random): the handler's
// context, the context the store calls run under, and the request copy
// that carries the former are the middleware's own; a write adds the
// Set-Cookie line and the header slices it goes in.
func TestMiddlewareAllocs(t *testing.T) {
	if race.Enabled {
		t.Skip("the race detector drops pooled objects: allocation counts mean nothing")
	}
	for name, want := range map[string]float64{"untouched": 3, "read": 3, "increment": 7} {
		t.Run(name, func(t *testing.T) {
			h, req := benchSetup(t, name)
			w := &benchWriter{header: http.Header{}}
			got := testing.AllocsPerRun(200, func() {
				w.reset()
				h.ServeHTTP(w, req)
			})
			if got > want {
				t.Errorf("%v allocations per request, want at most %v", got, want)
			}
		})
	}
}
