package kvfasthttp_test

import (
	"bufio"
	"strconv"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"

	"github.com/kvsession/kvsession"
	"github.com/kvsession/kvsession/kvfasthttp"
	"github.com/kvsession/kvsession/store"
	"github.com/kvsession/kvsession/store/memstore"
)

// BenchmarkMiddleware measures a whole request through the middleware on
// the memory store, fasthttp's own request handling excluded: the cookie is
// parsed, the session loaded, the handler run, the session saved and the
// Set-Cookie written.
func BenchmarkMiddleware(b *testing.B) {
	routes := map[string]fasthttp.RequestHandler{
		"increment": func(ctx *fasthttp.RequestCtx) {
			s := kvfasthttp.Session(ctx)
			n, _ := s.GetInt("n")
			s.SetInt("n", n+1)
			ctx.Response.SetBodyRaw(strconv.AppendInt(ctx.Response.Body()[:0], int64(n+1), 10))
		},
		"read": func(ctx *fasthttp.RequestCtx) {
			n, _ := kvfasthttp.Session(ctx).GetInt("n")
			ctx.Response.SetBodyRaw(strconv.AppendInt(ctx.Response.Body()[:0], int64(n), 10))
		},
		"untouched": func(ctx *fasthttp.RequestCtx) { ctx.SetBodyString("ok") },
	}
	for _, name := range []string{"increment", "read", "untouched"} {
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
			mw, err := kvfasthttp.New(be, kvfasthttp.Options{})
			if err != nil {
				b.Fatal(err)
			}
			h := mw.Handler(routes[name])
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
				b.Fatalf("status %d", ctx.Response.StatusCode())
			}
		})
	}
}
