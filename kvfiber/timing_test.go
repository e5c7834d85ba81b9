package kvfiber_test

import (
	"bufio"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gofiber/fiber/v3"
	"github.com/gofiber/fiber/v3/middleware/recover"

	"github.com/kvsession/kvsession"
	"github.com/kvsession/kvsession/kvfiber"
	"github.com/kvsession/kvsession/store/storetest/faultstore"
)

// TestHandlerErrorStillSavesTheSession: a handler answering with an error
// (here a refused login) has what it did to the session saved, and its
// error reaches the app's ErrorHandler, which answers with the session's
// Set-Cookie in place.
func TestHandlerErrorStillSavesTheSession(t *testing.T) {
	h := start(t, kvsession.Config{}, kvfiber.Options{})
	for attempt := 1; attempt <= 3; attempt++ {
		want := "wrong password, attempt " + strconv.Itoa(attempt)
		r := h.client.Expect("POST", "/deny", "", 401, want)
		if attempt == 1 && r.Cookie == "" {
			t.Fatalf("Set-Cookie %q: the new session's cookie is missing from the error response", r.SetCookies())
		}
	}
	errs := h.appErrors()
	if len(errs) != 3 || !strings.Contains(errs[2].Error(), "attempt 3") {
		t.Fatalf("the app's ErrorHandler got %v, want the handler's three errors", errs)
	}
}

// TestPanicReleasesTheSessionUnsaved: a panicking handler saves nothing
// and leaves the session lock free. With the recover middleware before
// kvfiber the panic passes through it; after it, the panic reaches kvfiber
// as an error, which answers 500, and a 5xx saves nothing unless
// Config.SaveOnServerError (documented, and pinned here).
func TestPanicReleasesTheSessionUnsaved(t *testing.T) {
	const lockWait = time.Second
	for _, tc := range []struct {
		name      string
		use       func(app *fiber.App, sessions fiber.Handler)
		saveOn5xx bool
		wantSaved bool
	}{
		{"recover before kvfiber", func(app *fiber.App, s fiber.Handler) { app.Use(recover.New(), s) }, false, false},
		{"recover after kvfiber", func(app *fiber.App, s fiber.Handler) { app.Use(s, recover.New()) }, false, false},
		{"recover after kvfiber, SaveOnServerError", func(app *fiber.App, s fiber.Handler) { app.Use(s, recover.New()) }, true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			logs := &syncBuffer{}
			b, fs := newServerBackend(t, kvsession.Config{Lock: true, LockWait: lockWait, SaveOnServerError: tc.saveOn5xx}, logs)
			h := serve(t, b, kvfiber.Options{}, fiber.Config{}, tc.use, func(app *fiber.App) {
				app.Get("/panic", func(c fiber.Ctx) error {
					if err := kvfiber.Session(c).SetInt("n", 99); err != nil {
						return err
					}
					panic("handler bug")
				})
			})
			h.client.Expect("GET", "/counter", "", 200, "1")
			writes := fs.Calls(faultstore.Writes)
			r := h.client.Do("GET", "/panic", "")
			if r.Status != 500 || !strings.Contains(r.Body, "handler bug") {
				t.Fatalf("%d %q, want the recover middleware's 500", r.Status, r.Body)
			}
			// No cookie either way: an unsaved session sends none, and a
			// saved one keeps its id, its cookie's expiry not yet due to
			// move (cookierefresh.go). What was saved shows in the store
			// and in the next request's counter.
			if saved := fs.Calls(faultstore.Writes) > writes; saved != tc.wantSaved || r.Cookie != "" {
				t.Fatalf("saved %v, Set-Cookie %q; want saved %v and no cookie", saved, r.SetCookies(), tc.wantSaved)
			}
			// With the lock still held the next request would wait
			// lockWait and fail.
			want := "2"
			if tc.wantSaved {
				want = "100"
			}
			began := time.Now()
			h.client.Expect("GET", "/counter", "", 200, want)
			if took := time.Since(began); took >= lockWait {
				t.Fatalf("the next request took %v: it waited for the panicked request's lock", took)
			}
		})
	}
}

// TestStreamedBody: fasthttp sends the headers when the handler returns,
// then copies the stream: the session is saved and its cookie is on the
// response before the stream writer finishes, and changes made after
// SendStreamWriter, before the handler returned, are saved too.
func TestStreamedBody(t *testing.T) {
	release := make(chan struct{})
	var once sync.Once
	h := start(t, kvsession.Config{}, kvfiber.Options{}, func(app *fiber.App) {
		app.Get("/long-stream", func(c fiber.Ctx) error {
			sess := kvfiber.Session(c)
			if err := sess.SetString("before", "set before SendStreamWriter"); err != nil {
				return err
			}
			err := c.SendStreamWriter(func(w *bufio.Writer) {
				// The session must not be used here: this goroutine
				// outlives the request's session.
				w.WriteString("first\n")
				w.Flush()
				<-release
				w.WriteString("rest\n")
				w.Flush()
			})
			if err != nil {
				return err
			}
			return sess.SetString("after", "set after SendStreamWriter")
		})
		app.Get("/values", func(c fiber.Ctx) error {
			before, _ := kvfiber.Session(c).GetString("before")
			after, _ := kvfiber.Session(c).GetString("after")
			return c.SendString(before + "; " + after)
		})
	})
	t.Cleanup(func() { once.Do(func() { close(release) }) }) // before the server's shutdown

	resp, err := h.client.HTTP.Get(h.client.Base + "/long-stream")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if !strings.Contains(resp.Header.Get("Set-Cookie"), "session=") {
		t.Fatalf("Set-Cookie %q on a streamed response", resp.Header.Get("Set-Cookie"))
	}
	if got := h.store.Calls(faultstore.Writes); got != 1 {
		t.Fatalf("%d writes while the stream is still open, want the session saved", got)
	}
	body := bufio.NewReader(resp.Body)
	if line, err := body.ReadString('\n'); err != nil || line != "first\n" {
		t.Fatalf("first line %q, %v", line, err)
	}
	once.Do(func() { close(release) })
	if line, err := body.ReadString('\n'); err != nil || line != "rest\n" {
		t.Fatalf("second line %q, %v", line, err)
	}
	h.client.Expect("GET", "/values", "", 200, "set before SendStreamWriter; set after SendStreamWriter")
	h.client.Expect("GET", "/stream", "", 200, "n=1\n")
	h.client.Expect("GET", "/read", "", 200, "1")
}

// TestSaveDuringGracefulShutdown: a request the app lets finish while
// shutting down must also get its session saved, though fasthttp has
// cancelled its RequestCtx.
func TestSaveDuringGracefulShutdown(t *testing.T) {
	inHandler := make(chan struct{})
	h := start(t, kvsession.Config{}, kvfiber.Options{}, func(app *fiber.App) {
		app.Get("/during-shutdown", func(c fiber.Ctx) error {
			close(inHandler)
			<-c.RequestCtx().Done() // closed when the server begins shutting down
			if err := kvfiber.Session(c).SetInt("n", 42); err != nil {
				return err
			}
			return c.SendString("finished")
		})
	})
	done := make(chan struct{})
	var status int
	var cookie string
	go func() {
		defer close(done)
		r, err := h.client.HTTP.Get(h.client.Base + "/during-shutdown")
		if err != nil {
			t.Error(err)
			return
		}
		r.Body.Close()
		status, cookie = r.StatusCode, r.Header.Get("Set-Cookie")
	}()
	<-inHandler
	if err := h.app.ShutdownWithTimeout(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	<-done
	if status != 200 || !strings.Contains(cookie, "session=") || h.store.Calls(faultstore.Writes) != 1 {
		t.Fatalf("during shutdown: %d, Set-Cookie %q, %d writes", status, cookie, h.store.Calls(faultstore.Writes))
	}
}
