//go:build unix

package e2e

// Guarantees of the library checked through the playground, as a client
// meets them.

import (
	"net/http"
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

// TestPlaygroundRotatesHeaderIDs: a client without cookies, carrying its
// id in -id-header, meets a rotation as a browser does, with requests in
// flight: the request that rotates the session answers the new id in the
// header; one that read the session with the old id meanwhile answers no
// id or that same new one, never another; the old id, within
// RotationGrace, leads to the session and is answered the new id. On
// every server, over a real process.
func TestPlaygroundRotatesHeaderIDs(t *testing.T) {
	forEachServer(t, testPlaygroundRotatesHeaderIDs)
}

func testPlaygroundRotatesHeaderIDs(t *testing.T, server []string) {
	const header = "X-Session-Id"
	p := startChild(t, slices.Concat(server, []string{"-addr", "127.0.0.1:0", "-store", "memory", "-id-header", header, "-rotation-interval", "1s"})...)
	c := sessiontest.NewHeaderClient(t, p.base, header)
	if r := c.Do("GET", "/counter"); r.Body != "1" || c.ID == "" {
		t.Fatalf("first request: %q, id %q", r.Body, c.ID)
	}
	old := c.ID
	time.Sleep(1100 * time.Millisecond) // the rotation is due

	// A write that takes its time (holding the session lock), and a read
	// with the same id while it works: either may be the one to rotate.
	send := func(path string) <-chan sessiontest.Response {
		out := make(chan sessiontest.Response, 1)
		go func() {
			req, err := http.NewRequest("GET", p.base+path, nil)
			if err != nil {
				t.Error(err)
			}
			req.Header.Set(header, old)
			r, err := sessiontest.SendRequest(p.http, req)
			if err != nil {
				t.Error(err)
			}
			out <- r
		}()
		return out
	}
	slowDone := send("/counter?pause=500ms")
	time.Sleep(150 * time.Millisecond)
	readDone := send("/session/counter")
	slow, read := <-slowDone, <-readDone
	if slow.Status != 200 || slow.Body != "2" || read.Status != 200 || (read.Body != "1" && read.Body != "2") {
		t.Fatalf("slow write %d %q, read %d %q; want 2, and 1 or 2", slow.Status, slow.Body, read.Status, read.Body)
	}
	rotated, ok := sessiontest.IDHeader(slow, header)
	if !ok || rotated == "" || rotated == old {
		t.Fatalf("the slow write answered %s %q (present: %v), want the rotated id", header, rotated, ok)
	}
	if v, ok := sessiontest.IDHeader(read, header); ok && v != rotated {
		t.Fatalf("the read answered %s %q, want none or the rotated id %q", header, v, rotated)
	}
	for _, r := range []sessiontest.Response{slow, read} {
		if sc := r.SetCookies(); len(sc) != 0 {
			t.Errorf("a header client got Set-Cookie %q", sc)
		}
	}

	// The old id, within RotationGrace: the session, and the new id.
	if r := c.Send("GET", "/counter", old); r.Body != "3" {
		t.Fatalf("the old id within the grace window: %q, want 3", r.Body)
	} else if v, _ := sessiontest.IDHeader(r, header); v != rotated {
		t.Fatalf("the old id within the grace window answered %q, want the rotated id %q", v, rotated)
	}
	if r := c.Send("GET", "/session/counter", rotated); r.Body != "3" {
		t.Fatalf("the rotated id: %q, want 3", r.Body)
	} else if v, ok := sessiontest.IDHeader(r, header); ok {
		t.Fatalf("the rotated id answered %q: the client has it", v)
	}
}
