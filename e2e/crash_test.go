//go:build unix

package e2e

// The playground on Badger, killed (SIGKILL), stopped (SIGTERM) and
// restarted: what it acknowledged, and when its sessions expire, must
// survive.

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	bdg "github.com/dgraph-io/badger/v4"

	"github.com/kvsession/kvsession/internal/race"
	"github.com/kvsession/kvsession/internal/sessiontest"
	"github.com/kvsession/kvsession/store"
	"github.com/kvsession/kvsession/store/badgerstore"
)

// storedCounter reads a session's counter without changing it (GET
// /session/counter is read-only), or fails the test.
func (c *child) storedCounter(id string) int {
	c.t.Helper()
	r := c.must("GET", "/session/counter", id)
	n, err := strconv.Atoi(r.Body)
	if r.Status != http.StatusOK || err != nil {
		c.t.Fatalf("GET /session/counter = %d %q", r.Status, r.Body)
	}
	return n
}

// crashClient is one browser in TestBadgerCrashKeepsAcknowledgedWrites.
type crashClient struct {
	id    string // its session cookie
	acked int    // the last counter the server acknowledged with a 200
	lost  bool   // a request was in flight when the server died
}

// TestBadgerCrashKeepsAcknowledgedWrites kills the playground with SIGKILL
// while 16 clients increment their counters, restarts it on the same Badger
// directory, and checks that no acknowledged write was lost: a write the
// server answered 200 had returned from Badger's Set, which puts it in the
// memory-mapped write-ahead log, and the kernel keeps that when the process
// dies. Each client's counter after the restart is the last value it was
// given, or one more if its request in flight at the kill was saved but not
// answered. Counting goes on across rounds, over the same sessions. On
// every server: net/http's saves when the answer's header is written,
// fasthttp's and Fiber's after the handler returns, all before the answer
// leaves.
func TestBadgerCrashKeepsAcknowledgedWrites(t *testing.T) {
	forEachServer(t, testBadgerCrashKeepsAcknowledgedWrites)
}

func testBadgerCrashKeepsAcknowledgedWrites(t *testing.T, server []string) {
	const clients = 16
	const rounds = 5
	perRound := 40 // acknowledged writes per client, on average, before the kill
	if testing.Short() || race.Enabled {
		perRound = 15
	}
	dir := t.TempDir()
	args := slices.Concat(server, []string{"-addr", "127.0.0.1:0", "-store", "badger", "-dir", dir})
	cs := make([]*crashClient, clients)
	for i := range cs {
		cs[i] = &crashClient{}
	}

	for round := range rounds {
		p := startChild(t, args...)
		if round == 0 {
			// Every client starts with a session, so that each has a
			// cookie to come back with whenever the kill falls.
			for _, c := range cs {
				r := p.must("GET", "/counter", "")
				if r.Status != http.StatusOK || r.Body != "1" || r.Cookie == "" {
					t.Fatalf("GET /counter = %d %q, cookie %q", r.Status, r.Body, r.Cookie)
				}
				c.id, c.acked = r.Cookie, 1
			}
		} else {
			unanswered := 0
			for i, c := range cs {
				got := p.storedCounter(c.id)
				lo, hi := c.acked, c.acked
				if c.lost {
					hi++
				}
				if got < lo || got > hi {
					t.Fatalf("round %d, client %d: counter %d after the restart; the server had acknowledged %d (request in flight at the kill: %v)",
						round, i, got, c.acked, c.lost)
				}
				if got > c.acked {
					unanswered++
				}
				c.acked, c.lost = got, false
			}
			t.Logf("round %d: restarted; %d of %d writes in flight at the kill had been saved, unanswered", round, unanswered, clients)
		}

		var killed atomic.Bool
		var acks atomic.Int64
		failures := make(chan string, clients)
		var wg sync.WaitGroup
		for i, c := range cs {
			wg.Go(func() {
				for {
					r, err := p.do("GET", "/counter", c.id)
					if err != nil {
						if killed.Load() {
							c.lost = true
							return
						}
						failures <- fmt.Sprintf("client %d: %v", i, err)
						return
					}
					n, aerr := strconv.Atoi(r.Body)
					switch {
					case r.Status != http.StatusOK || aerr != nil:
						failures <- fmt.Sprintf("client %d: GET /counter = %d %q", i, r.Status, r.Body)
						return
					case r.Held(c.id) != c.id:
						// No Set-Cookie keeps the client's cookie; one
						// with another id (or an expiry) is a change.
						failures <- fmt.Sprintf("client %d: session cookie %q changed to %q", i, c.id, r.Held(c.id))
						return
					case n != c.acked+1:
						// One client per session, one request at a time:
						// every increment is the previous one plus one.
						failures <- fmt.Sprintf("client %d: counter %d after %d", i, n, c.acked)
						return
					}
					c.acked = n
					acks.Add(1)
				}
			})
		}
		// Kill once every client has had its share acknowledged on
		// average: by then all of them are in the middle of requests.
		deadline := time.Now().Add(60 * time.Second)
		for acks.Load() < clients*int64(perRound) && len(failures) == 0 && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
		killed.Store(true)
		p.kill()
		wg.Wait()
		close(failures)
		for f := range failures {
			t.Errorf("round %d: %s", round, f)
		}
		if t.Failed() {
			t.FailNow()
		}
		if n := acks.Load(); n < clients*int64(perRound) {
			t.Fatalf("round %d: only %d writes acknowledged in 60s", round, n)
		}
		inFlight := 0
		for _, c := range cs {
			if c.lost {
				inFlight++
			}
		}
		t.Logf("round %d: killed after %d acknowledged writes, %d requests in flight", round, acks.Load(), inFlight)
	}

	// A last restart to check the last kill, then a graceful stop.
	p := startChild(t, args...)
	for i, c := range cs {
		got := p.storedCounter(c.id)
		if got < c.acked || got > c.acked+1 || (!c.lost && got != c.acked) {
			t.Fatalf("after the last kill, client %d: counter %d, acknowledged %d (in flight: %v)", i, got, c.acked, c.lost)
		}
	}
	p.term()
}

// TestBadgerSurvivesRestart stops the playground gracefully and starts a
// new one on the same Badger directory: the session is still there.
func TestBadgerSurvivesRestart(t *testing.T) { forEachServer(t, testBadgerSurvivesRestart) }

func testBadgerSurvivesRestart(t *testing.T, server []string) {
	dir := t.TempDir()
	args := slices.Concat(server, []string{"-store", "badger", "-dir", dir, "-addr", "127.0.0.1:0"})

	p := startChild(t, args...)
	c := sessiontest.NewClient(t, p.base)
	c.Expect("PUT", "/session/user", "bob", 204, "")
	c.Expect("GET", "/counter", "", 200, "1")
	id := c.SessionCookie()
	p.term()
	if _, err := os.Stat(dir + "/MANIFEST"); err != nil {
		t.Errorf("no Badger files in %s: %v", dir, err)
	}

	// A new server on the same directory (and a new port) still knows the
	// session: the store was closed, hence flushed, and reopened.
	p = startChild(t, args...)
	c2 := sessiontest.NewClient(t, p.base)
	r := c2.Do("GET", "/session/user", "", id)
	if r.Status != 200 || r.Body != "bob" {
		t.Fatalf("GET /session/user after restart = %d %q, want 200 bob", r.Status, r.Body)
	}
	r = c2.Do("GET", "/counter", "", id)
	if r.Status != 200 || r.Body != "2" {
		t.Errorf("GET /counter after restart = %d %q, want 200 2", r.Status, r.Body)
	}
}

// TestGracefulStopFinishesInFlightRequests stops the playground, with
// SIGTERM as a service manager does and with SIGINT as Ctrl-C does, while
// a request is at work on a session (GET /counter?pause=): the request is
// answered, its write is saved before Badger is closed, and the next run
// finds it. On every server.
func TestGracefulStopFinishesInFlightRequests(t *testing.T) {
	forEachServer(t, func(t *testing.T, server []string) {
		for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
			t.Run(sig.String(), func(t *testing.T) { testGracefulStop(t, server, sig) })
		}
	})
}

func testGracefulStop(t *testing.T, server []string, sig syscall.Signal) {
	args := slices.Concat(server, []string{"-addr", "127.0.0.1:0", "-store", "badger", "-dir", t.TempDir()})
	// The request must have reached its handler when the signal comes,
	// which the test can only give time for: 400 ms of the request's
	// second. One that had not, and fails to connect, is tried again; a
	// server that drops requests in flight fails every try.
	const tries = 3
	for try := 1; ; try++ {
		p := startChild(t, args...)
		r := p.must("GET", "/counter", "")
		if r.Status != http.StatusOK || r.Body != "1" || r.Cookie == "" {
			t.Fatalf("GET /counter = %d %q, cookie %q", r.Status, r.Body, r.Cookie)
		}
		id := r.Cookie
		type result struct {
			r   sessiontest.Response
			err error
		}
		inFlight := make(chan result, 1)
		go func() {
			r, err := p.do("GET", "/counter?pause=1s", id)
			inFlight <- result{r, err}
		}()
		time.Sleep(400 * time.Millisecond)
		stopped := time.Now()
		p.stop(sig)
		got := <-inFlight

		p = startChild(t, args...)
		saved := p.storedCounter(id)
		p.term()
		if got.err != nil && saved == 1 && try < tries {
			t.Logf("try %d: the request failed (%v) and was not saved: it had not reached its handler; trying again", try, got.err)
			continue
		}
		if got.err != nil || got.r.Status != http.StatusOK || got.r.Body != "2" {
			t.Fatalf("the request in flight at %v: %d %q, error %v; want 200 \"2\"", sig, got.r.Status, got.r.Body, got.err)
		}
		if saved != 2 {
			t.Fatalf("after the stop, the session's counter is %d; the request in flight was answered 2", saved)
		}
		t.Logf("try %d: answered and saved; the playground exited %v after %v", try, time.Since(stopped).Round(time.Millisecond), sig)
		return
	}
}

// storeKey is the key the playground's backend keeps a session under: as
// the README's "Ids at rest" says, SHA-256 of the id in unpadded base64url,
// after Config.Prefix, which the playground leaves empty.
func storeKey(id string) string {
	sum := sha256.Sum256([]byte(id))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// openStopped opens the Badger directory of a playground that has exited,
// for a look at what it left, and closes it when f returns.
func openStopped(t *testing.T, dir string, f func(st *badgerstore.Store)) {
	t.Helper()
	st, err := badgerstore.Open(badgerstore.Options{Dir: dir, GCInterval: -1})
	if err != nil {
		t.Fatalf("opening the playground's Badger directory: %v", err)
	}
	defer func() {
		if err := st.Close(); err != nil {
			t.Fatalf("closing the store: %v", err)
		}
	}()
	f(st)
}

// expiresAt returns the expiry Badger holds for key, in Unix seconds.
func expiresAt(t *testing.T, st *badgerstore.Store, key string) uint64 {
	t.Helper()
	var exp uint64
	err := st.DB().View(func(txn *bdg.Txn) error {
		item, err := txn.Get([]byte(key))
		if err != nil {
			return err
		}
		exp = item.ExpiresAt()
		return nil
	})
	if err != nil {
		t.Fatalf("reading %s: %v", key, err)
	}
	return exp
}

// ceilUnix is t in Unix seconds, rounded up, as the Badger store rounds
// expiries.
func ceilUnix(t time.Time) uint64 {
	s := t.Unix()
	if t.Nanosecond() > 0 {
		s++
	}
	return uint64(s)
}

// TestBadgerGracefulRestartKeepsSessionsAndTTL stops the playground with
// SIGTERM and restarts it: every session is back with its data, and its
// expiry is the one its last write set, neither lost nor reset by the
// restart. The expiry is read from the Badger directory itself between
// runs, when no process holds it.
func TestBadgerGracefulRestartKeepsSessionsAndTTL(t *testing.T) {
	forEachServer(t, testBadgerGracefulRestartKeepsSessionsAndTTL)
}

func testBadgerGracefulRestartKeepsSessionsAndTTL(t *testing.T, server []string) {
	const (
		clients = 16
		maxAge  = time.Hour
	)
	dir := t.TempDir()
	args := slices.Concat(server, []string{"-addr", "127.0.0.1:0", "-store", "badger", "-dir", dir, "-max-age", maxAge.String()})
	type session struct {
		id                  string
		counter             int
		lastFrom, lastUntil time.Time // around its last write
	}
	ss := make([]*session, clients)

	p := startChild(t, args...)
	for i := range ss {
		s := &session{}
		ss[i] = s
		r := p.must("GET", "/counter", "")
		if r.Status != http.StatusOK || r.Body != "1" || r.Cookie == "" {
			t.Fatalf("GET /counter = %d %q, cookie %q", r.Status, r.Body, r.Cookie)
		}
		s.id, s.counter = r.Cookie, 1
		if err := putName(p, s.id, fmt.Sprintf("client-%d", i)); err != nil {
			t.Fatal(err)
		}
		// Different counters, and a counter write last: its time is the
		// session's last save.
		for range i + 1 {
			s.lastFrom = time.Now()
			r := p.must("GET", "/counter", s.id)
			s.lastUntil = time.Now()
			if r.Status != http.StatusOK || r.Held(s.id) != s.id {
				t.Fatalf("GET /counter = %d %q, cookie %q", r.Status, r.Body, r.Cookie)
			}
			s.counter++
		}
	}
	// A restart that reset TTLs to the full MaxAge would give expiries at
	// least a second later than the writes did: wait that second.
	time.Sleep(1100 * time.Millisecond)
	p.term()

	expiry := make([]uint64, clients)
	openStopped(t, dir, func(st *badgerstore.Store) {
		for i, s := range ss {
			key := storeKey(s.id)
			expiry[i] = expiresAt(t, st, key)
			lo, hi := ceilUnix(s.lastFrom.Add(maxAge)), ceilUnix(s.lastUntil.Add(maxAge))
			if expiry[i] < lo || expiry[i] > hi {
				t.Errorf("session %d after SIGTERM: expires at %d, want %d to %d (its last write plus -max-age)", i, expiry[i], lo, hi)
			}
			// What the store reports as left is MaxAge less the time since
			// the write (rounded up to the second, as the store rounds).
			before := time.Now()
			left, err := st.ExpiresIn(t.Context(), key)
			after := time.Now()
			if err != nil {
				t.Fatalf("ExpiresIn(session %d): %v", i, err)
			}
			least := time.Unix(int64(lo), 0).Sub(after)
			most := time.Unix(int64(hi), 0).Sub(before)
			if left < least || left > most {
				t.Errorf("session %d after SIGTERM: %v left, want %v to %v: -max-age less the %v since its last write",
					i, left, least, most, before.Sub(s.lastUntil).Round(time.Millisecond))
			}
		}
	})

	p = startChild(t, args...)
	for i, s := range ss {
		r := p.must("GET", "/session", s.id)
		var got map[string]any
		if err := json.Unmarshal([]byte(r.Body), &got); r.Status != http.StatusOK || err != nil {
			t.Fatalf("GET /session after restart = %d %q", r.Status, r.Body)
		}
		want := map[string]any{"name": fmt.Sprintf("client-%d", i), "counter": float64(s.counter)}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("session %d after restart: %v, want %v", i, got, want)
		}
		if r.Cookie != "" || r.Expired {
			t.Errorf("session %d: a read after restart touched the cookie", i)
		}
	}
	p.term()

	// Neither the restart nor reading the sessions moved their expiry.
	openStopped(t, dir, func(st *badgerstore.Store) {
		for i, s := range ss {
			if got := expiresAt(t, st, storeKey(s.id)); got != expiry[i] {
				t.Errorf("session %d: expires at %d after the second run, %d before it", i, got, expiry[i])
			}
		}
		left, err := st.ExpiresIn(t.Context(), storeKey(ss[0].id))
		t.Logf("after two graceful stops: session 0 has %v left, %v after its last write (%v)", left.Round(time.Millisecond),
			time.Since(ss[0].lastUntil).Round(time.Millisecond), err)
	})
}

// putName sets the session's "name" (the playground stores a PUT's body).
func putName(p *child, id, name string) error {
	r, err := sessiontest.Send(p.http, "PUT", p.base+"/session/name", name, withSession(id)...)
	if err != nil {
		return err
	}
	if r.Status != http.StatusNoContent {
		return fmt.Errorf("PUT /session/name = %d", r.Status)
	}
	return nil
}

// TestBadgerExpiredSessionsStayGoneAfterRestart lets sessions expire while
// the playground is down: after the restart their cookies lead to fresh,
// empty sessions under new ids, and their records are gone from the store.
func TestBadgerExpiredSessionsStayGoneAfterRestart(t *testing.T) {
	forEachServer(t, testBadgerExpiredSessionsStayGoneAfterRestart)
}

func testBadgerExpiredSessionsStayGoneAfterRestart(t *testing.T, server []string) {
	const n = 4
	dir := t.TempDir()
	short := slices.Concat(server, []string{"-addr", "127.0.0.1:0", "-store", "badger", "-dir", dir, "-max-age", "1s"})
	// The second run keeps sessions for an hour, so that the new ones
	// cannot expire while the test looks at them; expiry is in the records.
	long := slices.Concat(server, []string{"-addr", "127.0.0.1:0", "-store", "badger", "-dir", dir, "-max-age", "1h"})

	p := startChild(t, short...)
	old := make([]string, n)
	var last time.Time
	for i := range old {
		r := p.must("GET", "/counter", "")
		last = time.Now()
		if r.Status != http.StatusOK || r.Cookie == "" {
			t.Fatalf("GET /counter = %d %q, cookie %q", r.Status, r.Body, r.Cookie)
		}
		old[i] = r.Cookie
	}
	p.term()
	// Gone by then: the store rounds a TTL up to the next whole second.
	time.Sleep(time.Until(time.Unix(int64(ceilUnix(last.Add(time.Second))), 0)) + 100*time.Millisecond)

	p = startChild(t, long...)
	fresh := make([]string, n)
	for i, id := range old {
		if r := p.must("GET", "/session", id); r.Status != http.StatusOK || r.Body != "{}" || r.Cookie != "" {
			t.Fatalf("GET /session with expired cookie %d = %d %q, cookie %q; want an empty session", i, r.Status, r.Body, r.Cookie)
		}
		r := p.must("GET", "/counter", id)
		if r.Status != http.StatusOK || r.Body != "1" {
			t.Fatalf("GET /counter with expired cookie %d = %d %q, want 1: a fresh session", i, r.Status, r.Body)
		}
		if r.Cookie == "" || r.Cookie == id {
			t.Fatalf("expired cookie %d: new session cookie %q; want a new id", i, r.Cookie)
		}
		fresh[i] = r.Cookie
	}
	p.term()

	openStopped(t, dir, func(st *badgerstore.Store) {
		ctx := t.Context()
		for i := range old {
			if _, err := st.Get(ctx, storeKey(old[i])); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("expired session %d: Get = %v, want ErrNotFound", i, err)
			}
			if _, err := st.Get(ctx, storeKey(fresh[i])); err != nil {
				t.Errorf("its fresh session: Get = %v", err)
			}
		}
		// No read path shows the expired records: the store's keys are the
		// fresh sessions' and nothing else.
		want := map[string]bool{}
		for _, id := range fresh {
			want[storeKey(id)] = true
		}
		keys := liveKeys(t, st)
		if len(keys) != len(want) {
			t.Errorf("the store holds %d keys, want the %d fresh sessions: %q", len(keys), len(want), keys)
		}
		for _, k := range keys {
			if !want[k] {
				t.Errorf("unexpected key %q in the store", k)
			}
		}
	})
}

// liveKeys lists the keys Badger returns to an ordinary iteration, which
// leaves out expired and deleted entries.
func liveKeys(t *testing.T, st *badgerstore.Store) []string {
	t.Helper()
	var keys []string
	err := st.DB().View(func(txn *bdg.Txn) error {
		opts := bdg.DefaultIteratorOptions
		opts.PrefetchValues = false
		it := txn.NewIterator(opts)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			keys = append(keys, string(it.Item().Key()))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return keys
}
