package kvfiber_test

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"

	"github.com/gofiber/fiber/v3"

	"github.com/kvsession/kvsession"
	"github.com/kvsession/kvsession/kvfiber"
	"github.com/kvsession/kvsession/store"
	"github.com/kvsession/kvsession/store/memstore"
)

// statusApp is a Fiber app behind the middleware on a memory store, with
// a session holding n = 1, served by app.Test without a network.
type statusApp struct {
	be     *kvsession.ServerBackend
	app    *fiber.App
	cookie string
}

func newStatusApp(t *testing.T, cfg kvsession.Config, handler fiber.Handler) *statusApp {
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
	mw, err := kvfiber.New(be, kvfiber.Options{})
	if err != nil {
		t.Fatal(err)
	}
	app := fiber.New()
	app.Use(mw)
	app.Get("/", handler)
	return &statusApp{be: be, app: app, cookie: "session=" + id}
}

func (a *statusApp) do(t *testing.T) *http.Response {
	t.Helper()
	req := httptest.NewRequest("GET", "/", nil)
	req.Header.Set("Cookie", a.cookie)
	resp, err := a.app.Test(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
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

// TestServerErrorSavesNothing: a handler that changes the session and
// answers 5xx, by status or by returning an error Fiber answers 5xx,
// leaves the store as it was and sends no Set-Cookie; 4xx saves, and so
// does 5xx with SaveOnServerError.
func TestServerErrorSavesNothing(t *testing.T) {
	for _, tc := range []struct {
		name      string
		answer    func(c fiber.Ctx) error
		status    int
		saveOn5xx bool
		want      int64
	}{
		{"status 500", func(c fiber.Ctx) error { return c.Status(500).SendString("failed") }, 500, false, 1},
		{"fiber error 503", func(c fiber.Ctx) error { return fiber.ErrServiceUnavailable }, 503, false, 1},
		{"plain error", func(c fiber.Ctx) error { return errors.New("database down") }, 500, false, 1},
		{"plain error, SaveOnServerError", func(c fiber.Ctx) error { return errors.New("database down") }, 500, true, 2},
		{"status 500, SaveOnServerError", func(c fiber.Ctx) error { return c.Status(500).SendString("failed") }, 500, true, 2},
		{"fiber error 404", func(c fiber.Ctx) error { return fiber.ErrNotFound }, 404, false, 2},
		{"status 400", func(c fiber.Ctx) error { return c.Status(400).SendString("bad") }, 400, false, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := newStatusApp(t, kvsession.Config{SaveOnServerError: tc.saveOn5xx}, func(c fiber.Ctx) error {
				if err := kvfiber.Session(c).SetInt("n", 2); err != nil {
					return err
				}
				return tc.answer(c)
			})
			resp := a.do(t)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.status)
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

// TestVaryOnCookieWhenTheSessionIsUsed: a route that only reads the
// session gets Vary: Cookie though it sets no cookie; one that never
// touches it gets no Vary; a handler's own Vary: Cookie is not repeated
// and one listing other fields gets Cookie added.
func TestVaryOnCookieWhenTheSessionIsUsed(t *testing.T) {
	for _, tc := range []struct {
		name    string
		handler fiber.Handler
		want    []string
	}{
		{"read", func(c fiber.Ctx) error {
			n, _ := kvfiber.Session(c).GetInt("n")
			return c.JSON(n)
		}, []string{"Cookie"}},
		{"untouched", func(c fiber.Ctx) error { return c.SendString("static") }, nil},
		{"handler's own", func(c fiber.Ctx) error {
			c.Vary("Accept-Encoding", "cookie")
			kvfiber.Session(c).GetInt("n")
			return nil
		}, []string{"Accept-Encoding, cookie"}},
		{"handler's own, set", func(c fiber.Ctx) error {
			c.Vary("Cookie")
			return kvfiber.Session(c).SetInt("n", 5)
		}, []string{"Cookie"}},
		{"other field", func(c fiber.Ctx) error {
			c.Set("Vary", "Accept-Encoding")
			kvfiber.Session(c).GetInt("n")
			return nil
		}, []string{"Accept-Encoding", "Cookie"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := newStatusApp(t, kvsession.Config{}, tc.handler)
			resp := a.do(t)
			if got := resp.Header.Values("Vary"); !slices.Equal(got, tc.want) {
				t.Fatalf("Vary %q, want %q", got, tc.want)
			}
			if tc.name == "read" && len(resp.Header.Values("Set-Cookie")) != 0 {
				t.Fatal("a read set the cookie")
			}
		})
	}
}
