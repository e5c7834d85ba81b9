package kvfiber_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http/httptest"
	"strconv"

	"github.com/gofiber/fiber/v3"
	"github.com/gofiber/fiber/v3/middleware/recover"

	"github.com/kvsession/kvsession"
	"github.com/kvsession/kvsession/kvfiber"
	"github.com/kvsession/kvsession/store"
	"github.com/kvsession/kvsession/store/memstore"
	"github.com/kvsession/kvsession/store/storetest/faultstore"
)

// A visit counter: the session is loaded when the handler first uses it
// and saved when the handler returns, its cookie on the response.
func Example() {
	stores := store.NewRegistry(nil)
	stores.Register("sessions", memstore.New(memstore.Options{}))
	defer stores.Close()
	backend, err := kvsession.New(kvsession.Config{}, stores)
	if err != nil {
		log.Fatal(err)
	}
	sessions, err := kvfiber.New(backend, kvfiber.Options{})
	if err != nil {
		log.Fatal(err)
	}

	app := fiber.New(fiber.Config{ReadBufferSize: kvfiber.RequiredReadBufferSize(backend, 0)})
	kvfiber.RedactRequestErrors(app, backend) // no session ids in the errors of unreadable requests
	// recover first, so that a panicking handler's session is dropped.
	app.Use(recover.New(), sessions)
	app.Get("/visits", func(c fiber.Ctx) error {
		sess := kvfiber.Session(c)
		n, _ := sess.GetInt("visits")
		if err := sess.SetInt("visits", n+1); err != nil {
			return err
		}
		return c.SendString(strconv.Itoa(n + 1))
	})

	// Three requests from one browser, which sends back the cookie it got.
	cookie := ""
	for range 3 {
		req := httptest.NewRequest("GET", "/visits", nil)
		req.Header.Set("Cookie", cookie)
		resp, err := app.Test(req)
		if err != nil {
			log.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		for _, c := range resp.Cookies() {
			cookie = c.Name + "=" + c.Value
		}
		fmt.Println(string(body))
	}
	// Output:
	// 1
	// 2
	// 3
}

// Skip and ReadOnly choose per request: no session at all for a health
// check, and no session lock for the requests that only read.
func ExampleOptions() {
	stores := store.NewRegistry(nil)
	stores.Register("sessions", memstore.New(memstore.Options{}))
	defer stores.Close()
	backend, err := kvsession.New(kvsession.Config{Lock: true}, stores)
	if err != nil {
		log.Fatal(err)
	}
	sessions, err := kvfiber.New(backend, kvfiber.Options{
		Skip:     func(c fiber.Ctx) bool { return c.Path() == "/health" },
		ReadOnly: func(c fiber.Ctx) bool { return c.Method() == fiber.MethodGet },
	})
	if err != nil {
		log.Fatal(err)
	}
	app := fiber.New()
	app.Use(recover.New(), sessions)
	app.All("/*", func(c fiber.Ctx) error {
		sess := kvfiber.Session(c)
		if sess == nil {
			return c.SendString("no session")
		}
		return c.SendString("read-only " + strconv.FormatBool(sess.IsReadOnly()))
	})

	for _, r := range []struct{ method, path string }{{"GET", "/health"}, {"GET", "/cart"}, {"POST", "/cart"}} {
		resp, err := app.Test(httptest.NewRequest(r.method, r.path, nil))
		if err != nil {
			log.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		fmt.Printf("%s %s: %s\n", r.method, r.path, body)
	}
	// Output:
	// GET /health: no session
	// GET /cart: read-only true
	// POST /cart: read-only false
}

// An ErrorHandler that hands session failures to the app's own
// fiber.Config.ErrorHandler, which renders every error page of the app.
// The store here is one made to fail.
func ExampleErrorHandler() {
	down := faultstore.New(memstore.New(memstore.Options{}))
	down.Fail(faultstore.Writes, errors.New("store unreachable"))
	stores := store.NewRegistry(nil)
	stores.Register("sessions", down.Store())
	defer stores.Close()
	backend, err := kvsession.New(kvsession.Config{}, stores)
	if err != nil {
		log.Fatal(err)
	}
	sessions, err := kvfiber.New(backend, kvfiber.Options{
		ErrorHandler: func(c fiber.Ctx, err error) error {
			// Withdraw the handler's answer: it relied on a session
			// that was not saved.
			c.Response().Reset()
			return fiber.NewError(fiber.StatusServiceUnavailable, "please try again shortly")
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	app := fiber.New(fiber.Config{
		ErrorHandler: func(c fiber.Ctx, err error) error {
			var e *fiber.Error
			if !errors.As(err, &e) {
				e = fiber.ErrInternalServerError
			}
			return c.Status(e.Code).SendString("error page: " + e.Message)
		},
	})
	app.Use(recover.New(), sessions)
	app.Post("/cart", func(c fiber.Ctx) error {
		if err := kvfiber.Session(c).SetString("item", "book"); err != nil {
			return err
		}
		return c.SendString("added")
	})

	resp, err := app.Test(httptest.NewRequest("POST", "/cart", nil))
	if err != nil {
		log.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	fmt.Println(resp.StatusCode, string(body))
	// Output:
	// 503 error page: please try again shortly
}

// Cookie sessions can take several 4 KB cookies, more than Fiber's default
// read buffer holds: size the app for the backend.
func ExampleRequiredReadBufferSize() {
	backend, err := kvsession.NewCookie(kvsession.Config{
		Secrets: [][]byte{bytes.Repeat([]byte{1}, kvsession.SecretBytes)}, // use a random secret
	}, nil)
	if err != nil {
		log.Fatal(err)
	}
	need := kvfiber.RequiredReadBufferSize(backend, 0)
	fmt.Println("more than Fiber's default:", need > fiber.DefaultReadBufferSize)

	app := fiber.New(fiber.Config{ReadBufferSize: need})
	sessions, err := kvfiber.New(backend, kvfiber.Options{})
	if err != nil {
		log.Fatal(err)
	}
	app.Use(sessions)
	app.Get("/", func(c fiber.Ctx) error {
		return kvfiber.Session(c).SetString("theme", "dark")
	})
	resp, err := app.Test(httptest.NewRequest("GET", "/", nil))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(resp.StatusCode, len(resp.Cookies()) > 0)
	// Output:
	// more than Fiber's default: true
	// 200 true
}
