package kvfiber_test

import (
	"net"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/gofiber/fiber/v3"

	"github.com/kvsession/kvsession"
	"github.com/kvsession/kvsession/internal/sessiontest"
	"github.com/kvsession/kvsession/kvfiber"
)

// TestParallelIncrementsWithLock: with Config.Lock, concurrent requests on
// one session each see the one before, over real connections.
func TestParallelIncrementsWithLock(t *testing.T) {
	h := start(t, kvsession.Config{Lock: true}, kvfiber.Options{})
	h.client.Expect("GET", "/counter", "", 200, "1")
	const n = 30
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			r, err := sessiontest.Send(h.client.HTTP, "POST", h.client.Base+"/counter", "")
			if err != nil || r.Status != 200 {
				t.Errorf("POST /counter: %d %q %v", r.Status, r.Body, err)
			}
		})
	}
	wg.Wait()
	h.client.Expect("GET", "/read", "", 200, strconv.Itoa(n+1))
}

// TestReadOnlyRequestsDoNotWaitForTheLock: a request marked by
// Options.ReadOnly reads the session while another request holds its
// lock; an unmarked one waits for it.
func TestReadOnlyRequestsDoNotWaitForTheLock(t *testing.T) {
	const lockWait = time.Second
	holding, release := make(chan struct{}), make(chan struct{})
	readOnly := func(c fiber.Ctx) bool { return c.Method() == fiber.MethodGet && c.Path() == "/read" }
	h := start(t, kvsession.Config{Lock: true, LockWait: lockWait}, kvfiber.Options{ReadOnly: readOnly}, func(app *fiber.App) {
		app.Post("/hold", func(c fiber.Ctx) error {
			kvfiber.Session(c).Has("n") // the first use takes the lock
			close(holding)
			<-release
			return c.SendString("held")
		})
	})
	h.client.Expect("GET", "/counter", "", 200, "1")
	held := make(chan struct{})
	go func() {
		defer close(held)
		if r, err := sessiontest.Send(h.client.HTTP, "POST", h.client.Base+"/hold", ""); err != nil || r.Body != "held" {
			t.Errorf("POST /hold: %q %v", r.Body, err)
		}
	}()
	<-holding
	for _, tc := range []struct {
		method, path string
		status       int
		body         string
	}{
		{"GET", "/read", 200, "1"},                         // read-only: not blocked
		{"POST", "/counter", 500, "session unavailable\n"}, // waits lockWait, then fails
	} {
		began := time.Now()
		h.client.Expect(tc.method, tc.path, "", tc.status, tc.body)
		if blocked := time.Since(began) >= lockWait; blocked != (tc.status != 200) {
			t.Errorf("%s %s blocked %v, took %v", tc.method, tc.path, blocked, time.Since(began))
		}
	}
	close(release)
	<-held
}

// TestHijackedConnectionHoldsNoLock: a handler that hijacks its connection
// through Fiber's fasthttp context (a WebSocket upgrade) has its session
// saved and its lock released before the connection is handed over: the
// client's other requests do not wait for that connection to close.
func TestHijackedConnectionHoldsNoLock(t *testing.T) {
	hijacked, release := make(chan struct{}), make(chan struct{})
	defer close(release)
	h := start(t, kvsession.Config{Lock: true, LockWait: 200 * time.Millisecond}, kvfiber.Options{}, func(app *fiber.App) {
		app.Get("/hijack", func(c fiber.Ctx) error {
			sess := kvfiber.Session(c)
			n, _ := sess.GetInt("n")
			if err := sess.SetInt("n", n+1); err != nil {
				return err
			}
			c.RequestCtx().Hijack(func(net.Conn) {
				close(hijacked)
				<-release // a long-lived connection
			})
			return c.SendString(strconv.Itoa(n + 1))
		})
	})
	h.client.Expect("GET", "/counter", "", 200, "1")
	// The hijacked connection is this client's alone: the browser's other
	// requests go over connections of their own.
	hijacker := sessiontest.NewClient(t, h.client.Base)
	hijacker.HTTP.Transport = &http.Transport{} // not the default transport's pool, which h.client shares
	r := hijacker.Do("GET", "/hijack", "", h.client.Cookies()...)
	if r.Status != 200 || r.Body != "2" {
		t.Fatalf("hijacking request: %d %q", r.Status, r.Body)
	}
	<-hijacked
	h.client.Expect("GET", "/counter", "", 200, "3")
}
