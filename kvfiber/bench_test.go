package kvfiber_test

import (
	"bufio"
	"strings"
	"testing"

	"github.com/gofiber/fiber/v3"
	"github.com/valyala/fasthttp"

	"github.com/kvsession/kvsession"
	"github.com/kvsession/kvsession/internal/race"
	"github.com/kvsession/kvsession/kvfiber"
	"github.com/kvsession/kvsession/store"
	"github.com/kvsession/kvsession/store/memstore"
)

// benchRoutes are the handlers of BenchmarkMiddleware and
// TestRequestAllocations. None allocates of its own, so that what is
// measured is Fiber's and kvfiber's.
var benchRoutes = []struct {
	name    string
	handler fiber.Handler
}{
	// The same app with a middleware that only calls c.Next() in
	// kvfiber's place: what Fiber charges for any middleware.
	{"baseline", func(c fiber.Ctx) error { return c.SendString("ok") }},
	// kvfiber on a route that never uses the session.
	{"untouched", func(c fiber.Ctx) error { return c.SendString("ok") }},
	// The cookie parsed, the record loaded and decoded, a value read.
	{"read", func(c fiber.Ctx) error {
		if _, ok := kvfiber.Session(c).GetInt("n"); !ok {
			return fiber.ErrInternalServerError
		}
		return c.SendString("ok")
	}},
	// Also the record encoded and swapped in, the Set-Cookie written.
	{"increment", func(c fiber.Ctx) error {
		s := kvfiber.Session(c)
		n, _ := s.GetInt("n")
		if err := s.SetInt("n", n+1); err != nil {
			return err
		}
		return c.SendString("ok")
	}},
}

// benchApp returns the app's fasthttp handler for route, a request for it
// carrying a stored session's cookie, and the backend.
func benchApp(tb testing.TB, route int) (fasthttp.RequestHandler, *fasthttp.RequestCtx, *kvsession.ServerBackend, string) {
	tb.Helper()
	st := memstore.New(memstore.Options{})
	reg := store.NewRegistry(nil)
	reg.Register("sessions", st)
	tb.Cleanup(func() { reg.Close() })
	be, err := kvsession.New(kvsession.Config{}, reg)
	if err != nil {
		tb.Fatal(err)
	}
	id, _ := be.GenerateID()
	if err := be.Set(tb.Context(), id, map[string]any{"n": 1000}); err != nil {
		tb.Fatal(err)
	}
	sessions, err := kvfiber.New(be, kvfiber.Options{})
	if err != nil {
		tb.Fatal(err)
	}
	if benchRoutes[route].name == "baseline" {
		sessions = func(c fiber.Ctx) error { return c.Next() }
	}
	app := fiber.New()
	app.Use(sessions)
	app.Get("/counter", benchRoutes[route].handler)
	// The header is parsed from the wire, as the server does: the Cookie
	// header stays raw until someone asks fasthttp to parse it.
	ctx := &fasthttp.RequestCtx{}
	raw := "GET /counter HTTP/1.1\r\nHost: example.test\r\nCookie: theme=dark; session=" + id + "\r\n\r\n"
	if err := ctx.Request.Header.Read(bufio.NewReader(strings.NewReader(raw))); err != nil {
		tb.Fatal(err)
	}
	return app.Handler(), ctx, be, id
}

// BenchmarkMiddleware measures a whole request through Fiber's handler on
// the memory store, the network and fasthttp's reading of the request
// excluded, as kvfasthttp's BenchmarkMiddleware does. kvfiber's cost is a
// route's time less the baseline's.
func BenchmarkMiddleware(b *testing.B) {
	for i, route := range benchRoutes {
		b.Run(route.name, func(b *testing.B) {
			h, ctx, _, _ := benchApp(b, i)
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				ctx.Response.Reset()
				h(ctx)
			}
			if ctx.Response.StatusCode() != 200 {
				b.Fatalf("status %d: %s", ctx.Response.StatusCode(), ctx.Response.Body())
			}
		})
	}
}

// TestRequestAllocations pins what keeps the fasthttp path's speed under
// Fiber: once pools are warm, a request through kvfiber allocates nothing,
// whether it ignores, reads or changes its session.
func TestRequestAllocations(t *testing.T) {
	if race.Enabled {
		t.Skip("the race detector drops pooled objects at random")
	}
	for i, route := range benchRoutes {
		t.Run(route.name, func(t *testing.T) {
			h, ctx, be, id := benchApp(t, i)
			requests := 0
			allocs := testing.AllocsPerRun(1000, func() {
				ctx.Response.Reset()
				h(ctx)
				requests++
			})
			if ctx.Response.StatusCode() != 200 {
				t.Fatalf("status %d: %s", ctx.Response.StatusCode(), ctx.Response.Body())
			}
			if allocs != 0 {
				t.Errorf("%v allocations per request, want 0", allocs)
			}
			if route.name == "increment" {
				values, err := be.Get(t.Context(), id)
				if err != nil {
					t.Fatal(err)
				}
				if values["n"] != int64(1000+requests) {
					t.Fatalf("n = %v (%T) after %d increments from 1000", values["n"], values["n"], requests)
				}
			}
		})
	}
}
