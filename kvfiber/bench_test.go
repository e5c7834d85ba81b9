package kvfiber_test

import (
	"bufio"
	"strconv"
	"strings"
	"testing"

	"github.com/gofiber/fiber/v3"
	"github.com/valyala/fasthttp"

	"github.com/kvsession/kvsession"
	"github.com/kvsession/kvsession/kvfiber"
	"github.com/kvsession/kvsession/store"
	"github.com/kvsession/kvsession/store/memstore"
)

// BenchmarkMiddleware measures a whole request through Fiber's handler on
// the memory store, the network and fasthttp's own request reading
// excluded, as kvfasthttp's BenchmarkMiddleware does. "baseline" is the
// same app with a middleware that only calls c.Next() in kvfiber's place:
// what Fiber charges for any middleware. kvfiber's own cost is the
// difference. Per route: "untouched" never uses the session, "read" reads
// it (cookie parsed, record loaded), "increment" also saves it and writes
// the Set-Cookie.
func BenchmarkMiddleware(b *testing.B) {
	routes := map[string]fiber.Handler{
		"increment": func(c fiber.Ctx) error {
			s := kvfiber.Session(c)
			n, _ := s.GetInt("n")
			s.SetInt("n", n+1)
			rc := c.RequestCtx()
			rc.Response.SetBodyRaw(strconv.AppendInt(rc.Response.Body()[:0], int64(n+1), 10))
			return nil
		},
		"read": func(c fiber.Ctx) error {
			n, _ := kvfiber.Session(c).GetInt("n")
			rc := c.RequestCtx()
			rc.Response.SetBodyRaw(strconv.AppendInt(rc.Response.Body()[:0], int64(n), 10))
			return nil
		},
		"untouched": func(c fiber.Ctx) error { return c.SendString("ok") },
		"baseline":  func(c fiber.Ctx) error { return c.SendString("ok") },
	}
	for _, name := range []string{"baseline", "untouched", "read", "increment"} {
		b.Run(name, func(b *testing.B) {
			st := memstore.New(memstore.Options{})
			defer st.Close()
			reg := store.NewRegistry(nil)
			reg.Register("sessions", st)
			be, err := kvsession.New(kvsession.Config{}, reg)
			if err != nil {
				b.Fatal(err)
			}
			id, _ := be.GenerateID()
			if err := be.Set(b.Context(), id, map[string]any{"n": 1000}); err != nil {
				b.Fatal(err)
			}
			app := fiber.New()
			sessions, err := kvfiber.New(be, kvfiber.Options{})
			if err != nil {
				b.Fatal(err)
			}
			if name == "baseline" {
				sessions = func(c fiber.Ctx) error { return c.Next() }
			}
			app.Use(sessions)
			app.Get("/counter", routes[name])
			h := app.Handler()
			// The header is parsed from the wire, as the server does: the
			// Cookie header stays raw until someone asks fasthttp to parse it.
			var ctx fasthttp.RequestCtx
			raw := "GET /counter HTTP/1.1\r\nHost: example.test\r\nCookie: theme=dark; session=" + id + "\r\n\r\n"
			if err := ctx.Request.Header.Read(bufio.NewReader(strings.NewReader(raw))); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				ctx.Response.Reset()
				h(&ctx)
			}
			if ctx.Response.StatusCode() != 200 {
				b.Fatalf("status %d: %s", ctx.Response.StatusCode(), ctx.Response.Body())
			}
		})
	}
}
