package kvfasthttp_test

import (
	"slices"
	"strconv"
	"testing"

	"github.com/valyala/fasthttp"

	"github.com/kvsession/kvsession"
	"github.com/kvsession/kvsession/kvfasthttp"
	"github.com/kvsession/kvsession/store"
	"github.com/kvsession/kvsession/store/memstore"
)

// statusApp is a server backend on a memory store behind the middleware,
// with a session holding n = 1, driven without a network.
type statusApp struct {
	be     *kvsession.ServerBackend
	h      fasthttp.RequestHandler
	cookie string
}

func newStatusApp(t *testing.T, cfg kvsession.Config, next fasthttp.RequestHandler) *statusApp {
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
	mw, err := kvfasthttp.New(be, kvfasthttp.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return &statusApp{be: be, h: mw.Handler(next), cookie: "session=" + id}
}

func (a *statusApp) do(path string) *fasthttp.Response {
	var ctx fasthttp.RequestCtx
	ctx.Request.SetRequestURI(path)
	ctx.Request.Header.Set("Cookie", a.cookie)
	a.h(&ctx)
	resp := &fasthttp.Response{}
	ctx.Response.CopyTo(resp)
	return resp
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

func varies(resp *fasthttp.Response) []string {
	var out []string
	for _, v := range resp.Header.PeekAll("Vary") {
		out = append(out, string(v))
	}
	return out
}

// TestServerErrorSavesNothing: a handler that changes the session and
// answers 5xx leaves the store as it was and sends no Set-Cookie; 4xx
// saves, and so does 5xx with SaveOnServerError.
func TestServerErrorSavesNothing(t *testing.T) {
	for _, tc := range []struct {
		status    int
		saveOn5xx bool
		want      int64
	}{
		{500, false, 1},
		{502, false, 1},
		{500, true, 2},
		{404, false, 2},
	} {
		t.Run(strconv.Itoa(tc.status)+map[bool]string{true: " SaveOnServerError"}[tc.saveOn5xx], func(t *testing.T) {
			a := newStatusApp(t, kvsession.Config{SaveOnServerError: tc.saveOn5xx}, func(ctx *fasthttp.RequestCtx) {
				kvfasthttp.Session(ctx).SetInt("n", 2)
				ctx.SetStatusCode(tc.status)
			})
			resp := a.do("/")
			if resp.StatusCode() != tc.status {
				t.Fatalf("status %d, want the handler's %d", resp.StatusCode(), tc.status)
			}
			if got := a.n(t); got != tc.want {
				t.Fatalf("stored n = %d, want %d", got, tc.want)
			}
			if sc := resp.Header.PeekCookie("session"); (len(sc) > 0) != (tc.want == 2) {
				t.Fatalf("Set-Cookie %q, want one only when saved", sc)
			}
			if v := varies(resp); len(v) != 1 || v[0] != "Cookie" {
				t.Fatalf("Vary %q, want Cookie once", v)
			}
		})
	}
}

// TestVaryOnCookieWhenTheSessionIsUsed: a route that only reads the
// session gets Vary: Cookie though it sets no cookie; one that never
// touches it gets no Vary; a handler's own Vary: Cookie is not repeated
// and one listing other fields gets Cookie added.
func TestVaryOnCookieWhenTheSessionIsUsed(t *testing.T) {
	for _, tc := range []struct {
		name    string
		handler fasthttp.RequestHandler
		want    []string
	}{
		{"read", func(ctx *fasthttp.RequestCtx) { kvfasthttp.Session(ctx).GetInt("n") }, []string{"Cookie"}},
		{"untouched", func(ctx *fasthttp.RequestCtx) { ctx.WriteString("static") }, nil},
		{"handler's own", func(ctx *fasthttp.RequestCtx) {
			ctx.Response.Header.Set("Vary", "Accept-Encoding, cookie")
			kvfasthttp.Session(ctx).GetInt("n")
		}, []string{"Accept-Encoding, cookie"}},
		{"handler's own, set", func(ctx *fasthttp.RequestCtx) {
			ctx.Response.Header.Set("Vary", "Cookie")
			kvfasthttp.Session(ctx).SetInt("n", 5)
		}, []string{"Cookie"}},
		{"other field", func(ctx *fasthttp.RequestCtx) {
			ctx.Response.Header.Set("Vary", "Accept-Encoding")
			kvfasthttp.Session(ctx).GetInt("n")
		}, []string{"Accept-Encoding", "Cookie"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := newStatusApp(t, kvsession.Config{}, tc.handler)
			resp := a.do("/")
			if got := varies(resp); !slices.Equal(got, tc.want) {
				t.Fatalf("Vary %q, want %q", got, tc.want)
			}
			if tc.name == "read" && len(resp.Header.PeekCookie("session")) != 0 {
				t.Fatal("a read set the cookie")
			}
		})
	}
}
