package kvfiber_test

import (
	"strings"
	"testing"
	"time"

	"github.com/gofiber/fiber/v3"
	"github.com/gofiber/fiber/v3/middleware/timeout"

	"github.com/kvsession/kvsession"
	"github.com/kvsession/kvsession/internal/sessiontest"
	"github.com/kvsession/kvsession/kvfiber"
	"github.com/kvsession/kvsession/store/storetest/faultstore"
)

// TestTimedOutHandlerKeepsItsSession: Fiber's timeout middleware answers
// 408 and abandons the Ctx while the handler goes on running with the
// session. kvfiber must neither save that session (the request failed)
// nor recycle it for another request, which the still-running handler
// would then write into.
func TestTimedOutHandlerKeepsItsSession(t *testing.T) {
	const lease = 300 * time.Millisecond
	release, finished := make(chan struct{}), make(chan struct{})
	h := start(t, kvsession.Config{Lock: true, LockLease: lease}, kvfiber.Options{}, func(app *fiber.App) {
		app.Get("/slow", timeout.New(func(c fiber.Ctx) error {
			defer close(finished)
			sess := kvfiber.Session(c)
			if err := sess.SetString("slow", "started"); err != nil {
				return err
			}
			<-release
			for i := range 100 {
				sess.SetInt("late", i)
			}
			return nil
		}, timeout.Config{Timeout: 50 * time.Millisecond}))
	})
	h.client.Expect("GET", "/counter", "", 200, "1")
	writes := h.store.Calls(faultstore.Writes)
	h.client.Expect("GET", "/slow", "", 408, "Request Timeout")
	if got := h.store.Calls(faultstore.Writes); got != writes {
		t.Fatalf("%d writes for a request that timed out", got-writes)
	}
	if !strings.Contains(h.logs.String(), "abandoned") {
		t.Errorf("log %q: want the abandoned session reported", h.logs.String())
	}

	// Other browsers get sessions while the abandoned handler writes
	// into its own: none of its values may show up in theirs.
	close(release)
	for range 20 {
		other := sessiontest.NewClient(t, h.client.Base)
		other.Expect("GET", "/counter", "", 200, "1")
		other.Expect("GET", "/counter", "", 200, "2")
	}
	<-finished
	// The abandoned session's lock lasts its lease, no longer.
	began := time.Now()
	h.client.Expect("GET", "/counter", "", 200, "2")
	if took := time.Since(began); took > lease+time.Second {
		t.Fatalf("the next request waited %v for the abandoned lock", took)
	}
}
