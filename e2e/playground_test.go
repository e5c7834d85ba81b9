//go:build unix

package e2e

// Guarantees of the library checked through the playground, as a client
// meets them.

import (
	"slices"
	"testing"
	"time"

	"github.com/kvsession/kvsession/internal/sessiontest"
)

// TestLogoutAllHoldsAgainstASlowRequest is the finding as it was
// reproduced through the playground: alice logs in; GET /counter?pause= is
// still working on her session when POST /logout-all?user=alice answers;
// when it finishes, her session must stay logged out, and a later log out
// everywhere must still reach her next login. With the lock on and off, on
// memory and Badger. (The slow request is given time to load the session
// first; on a machine too slow for that it loads after the logout, and the
// test checks less, never wrongly.) On every server.
func TestLogoutAllHoldsAgainstASlowRequest(t *testing.T) {
	forEachServer(t, testLogoutAllHoldsAgainstASlowRequest)
}

func testLogoutAllHoldsAgainstASlowRequest(t *testing.T, server []string) {
	for _, st := range []string{"memory", "badger"} {
		for _, lock := range []string{"true", "false"} {
			t.Run(st+"/lock="+lock, func(t *testing.T) {
				p := startChild(t, slices.Concat(server, []string{"-addr", "127.0.0.1:0", "-store", st, "-dir", t.TempDir(), "-lock=" + lock})...)
				alice := sessiontest.NewClient(t, p.base)
				alice.Login("alice")
				alice.Expect("GET", "/counter", "", 200, "1")
				cookie := alice.SessionCookie()
				slow := make(chan sessiontest.Response, 1)
				go func() { slow <- sessiontest.NewClient(t, p.base).Do("GET", "/counter?pause=600ms", "", cookie) }()
				time.Sleep(150 * time.Millisecond)
				admin := sessiontest.NewClient(t, p.base)
				admin.Expect("POST", "/logout-all?user=alice", "", 200, "1")
				if r := <-slow; r.Status != 200 {
					t.Errorf("the slow request = %d %q", r.Status, r.Body)
				}
				if r := alice.Do("GET", "/whoami", ""); r.Status != 404 {
					t.Errorf("GET /whoami after logout-all and the slow request = %d %q, want 404", r.Status, r.Body)
				}
				alice.Expect("GET", "/session/counter", "", 404, "not found\n")
				again := sessiontest.NewClient(t, p.base)
				again.Login("alice")
				admin.Expect("POST", "/logout-all?user=alice", "", 200, "1")
				if r := again.Do("GET", "/whoami", ""); r.Status != 404 {
					t.Errorf("the next login survived the next logout-all: %d %q", r.Status, r.Body)
				}
			})
		}
	}
}
