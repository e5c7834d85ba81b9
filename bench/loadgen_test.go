package main

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	bdg "github.com/dgraph-io/badger/v4"

	"github.com/kvsession/kvsession/store/badgerstore"
)

func TestSetCookie(t *testing.T) {
	for _, tc := range []struct {
		name, before, line, after string
	}{
		{"first cookie", "", "session=abc; Path=/; HttpOnly", "session=abc"},
		{"same again", "session=abc", "session=abc; Max-Age=60", "session=abc"},
		{"replaced", "session=abc", "session=xyz; Path=/", "session=xyz"},
		{"second name kept", "theme=dark; session=abc", "session=xyz", "theme=dark; session=xyz"},
		{"deleted by Max-Age=0", "theme=dark; session=abc", "session=abc; MAX-AGE=0", "theme=dark"},
		{"deleted by empty value", "session=abc; theme=dark", "session=; Path=/", "theme=dark"},
		{"prefix of another name untouched", "sessionx=1; session=abc", "session=z", "sessionx=1; session=z"},
		{"nameless ignored", "session=abc", "=oops", "session=abc"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := client{cookie: []byte(tc.before)}
			c.setCookie([]byte(tc.line))
			if string(c.cookie) != tc.after {
				t.Fatalf("cookie %q, want %q", c.cookie, tc.after)
			}
		})
	}
}

// TestParseResponse feeds a response byte by byte: nothing is reported
// until all of it has arrived, then the status, body and cookie are right
// and the next response in the buffer is parsed too.
func TestParseResponse(t *testing.T) {
	one := "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nSet-Cookie: session=abc; Path=/\r\n\r\n42"
	two := "HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\nConnection: close\r\n\r\n"
	wire := one + two
	var in inbuf
	var cl client
	var got []response
	for i := 0; i < len(wire); i++ {
		space := in.space()
		space[0] = wire[i]
		in.end++
		for {
			r, err := in.next(&cl)
			if err != nil {
				t.Fatalf("after %d bytes: %v", i+1, err)
			}
			if !r.complete {
				break
			}
			r.body = []byte(string(r.body))
			got = append(got, r)
		}
		if want := 0; i+1 < len(one) && len(got) != want {
			t.Fatalf("response reported after %d of %d bytes", i+1, len(one))
		}
	}
	if len(got) != 2 {
		t.Fatalf("%d responses, want 2", len(got))
	}
	if got[0].status != 200 || string(got[0].body) != "42" || !got[0].keepAlive || string(cl.cookie) != "session=abc" {
		t.Fatalf("first response %+v, cookie %q", got[0], cl.cookie)
	}
	if got[1].status != 500 || len(got[1].body) != 0 || got[1].keepAlive {
		t.Fatalf("second response %+v", got[1])
	}
	for _, bad := range []string{
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
		"HTTP/1.1 200 OK\r\nNo-Length: 1\r\n\r\n",
		"SMTP ready\r\n\r\n",
	} {
		var in inbuf
		in.end = copy(in.space(), bad)
		if _, err := in.next(nil); err == nil {
			t.Errorf("%q parsed without error", bad)
		}
	}
}

func TestHistogramQuantiles(t *testing.T) {
	var h histogram
	for i := 1; i <= 1000; i++ {
		h.add(time.Duration(i) * time.Microsecond)
	}
	for _, tc := range []struct {
		q    float64
		want time.Duration
	}{{0.5, 500 * time.Microsecond}, {0.99, 990 * time.Microsecond}} {
		got := h.quantile(tc.q)
		if diff := got - tc.want; diff < -tc.want/50 || diff > tc.want/50 {
			t.Errorf("p%v = %v, want %v ± 2%%", tc.q*100, got, tc.want)
		}
	}
}

// TestRunLoadChecksReplies drives a server that drops some increments
// while acknowledging them: the generator must count wrong replies, and
// reading counters back must find a loss the server hid from replies.
func TestRunLoadChecksReplies(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu       sync.Mutex
		counters = map[string]int{}
		calls    int
	)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		id := ""
		if c, err := r.Cookie("s"); err == nil {
			id = c.Value
		} else {
			id = strconv.Itoa(len(counters) + 1)
			counters[id] = 0
			http.SetCookie(w, &http.Cookie{Name: "s", Value: id})
		}
		if r.URL.Path == "/incr" {
			calls++
			if calls > 10 && calls%3 == 0 {
				io.WriteString(w, strconv.Itoa(counters[id]+1)) // acknowledged, not kept
				return
			}
			counters[id]++
		}
		io.WriteString(w, strconv.Itoa(counters[id]))
	})}
	go srv.Serve(ln)
	defer srv.Close()
	addr := ln.Addr().String()
	clients := make([]client, 4)
	if err := createSessions(addr, 1, clients); err != nil {
		t.Fatal(err)
	}
	r := runLoad(addr, 2, clients, routeIncr, 200*time.Millisecond, true)
	if r.errors != 0 || r.requests == 0 {
		t.Fatalf("%d requests, %d errors: %v", r.requests, r.errors, r.firstErr)
	}
	if r.wrong == 0 {
		t.Fatalf("%d requests and no wrong reply from a server that drops every third", r.requests)
	}
	// Now the server loses one increment of every session silently.
	mu.Lock()
	for id := range counters {
		counters[id]--
	}
	mu.Unlock()
	lost, err := verify(addr, clients, len(clients))
	if err != nil {
		t.Fatal(err)
	}
	if lost < int64(len(clients)) {
		t.Fatalf("read-back found %d lost updates, want at least %d", lost, len(clients))
	}
}

// TestRunLoadFewerClientsThanConns: connections beyond the clients are not
// opened, rather than driven without a client.
func TestRunLoadFewerClientsThanConns(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	var mu sync.Mutex
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		if _, err := r.Cookie("s"); err != nil {
			http.SetCookie(w, &http.Cookie{Name: "s", Value: "1"})
		}
		if r.URL.Path == "/incr" {
			n++
		}
		io.WriteString(w, strconv.Itoa(n))
	})}
	go srv.Serve(ln)
	defer srv.Close()
	clients := make([]client, 1)
	if err := createSessions(ln.Addr().String(), 1, clients); err != nil {
		t.Fatal(err)
	}
	r := runLoad(ln.Addr().String(), 8, clients, routeIncr, 100*time.Millisecond, true)
	if r.errors+r.wrong != 0 || r.requests == 0 {
		t.Fatalf("%d requests, %d errors, %d wrong: %v", r.requests, r.errors, r.wrong, r.firstErr)
	}
}

// TestTooManySetCookies: a response setting more cookies than the jar
// tracks is an error, not a silently partial jar.
func TestTooManySetCookies(t *testing.T) {
	var b strings.Builder
	b.WriteString("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n")
	for i := range 41 {
		fmt.Fprintf(&b, "Set-Cookie: s-%d=x\r\n", i)
	}
	b.WriteString("\r\n")
	var in inbuf
	in.end = copy(in.space(), b.String())
	if _, err := in.next(&client{}); err == nil {
		t.Fatal("41 Set-Cookie headers parsed without error")
	}
}

// TestBadgerAloneCounts: the raw Badger servers do the work they stand for,
// a durable write per increment on each client's own key (and, but for
// writes alone, a read from Badger), so their replies pass the same checks
// as a session library's, and Badger holds every counter afterwards.
func TestBadgerAloneCounts(t *testing.T) {
	for _, writesOnly := range []bool{false, true} {
		t.Run(fmt.Sprintf("writesOnly=%v", writesOnly), func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			dir := t.TempDir()
			done := make(chan error, 1)
			go func() { done <- serveBadgerAlone(writesOnly)(ln, serveOptions{dir: dir}) }()
			addr := ln.Addr().String()
			clients := bareClients(20)
			for _, rt := range []route{routeIncr, routeRead} {
				r := runLoad(addr, 4, clients, rt, 200*time.Millisecond, true)
				if r.requests == 0 || r.errors+r.wrong != 0 {
					t.Fatalf("/%s: %d requests, %d errors, %d wrong: %v", rt.name, r.requests, r.errors, r.wrong, r.firstErr)
				}
			}
			lost, err := verify(addr, clients, len(clients))
			if err != nil || lost != 0 {
				t.Fatalf("read back: %d lost, %v", lost, err)
			}
			ln.Close()
			<-done // Badger closed: its files can be opened again

			st, err := badgerstore.Open(badgerstore.Options{Dir: dir})
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			var sum int64
			for _, c := range clients {
				key, _ := bytes.CutPrefix(c.cookie, []byte("session="))
				var v []byte
				err := st.DB().View(func(txn *bdg.Txn) error {
					item, err := txn.Get(key)
					if err == nil {
						v, err = item.ValueCopy(nil)
					}
					return err
				})
				if err != nil || len(v) != 8 || int64(binary.BigEndian.Uint64(v)) != c.want {
					t.Fatalf("Badger holds %x (%v) for a client at %d", v, err, c.want)
				}
				sum += c.want
			}
			if sum == 0 {
				t.Fatal("no counter moved")
			}
		})
	}
}

// TestLostInReplies: a reply that shows a counter below what the server
// acknowledged counts the increments that went missing, once.
func TestLostInReplies(t *testing.T) {
	for _, tc := range []struct {
		name      string
		rt        route
		want      int64
		body      string
		right     bool
		lost, now int64
		ahead     int64
	}{
		{"next increment", routeIncr, 5, "6", true, 0, 6, 0},
		{"session lost, started over", routeIncr, 5, "1", false, 5, 1, 0},
		{"one increment lost", routeIncr, 5, "5", false, 1, 5, 0},
		{"another session's counter", routeIncr, 5, "9", false, 0, 9, 1},
		{"read right", routeRead, 5, "5", true, 0, 5, 0},
		{"read of a lost session", routeRead, 5, "0", false, 5, 0, 0},
		{"read of another session", routeRead, 5, "7", false, 0, 7, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cl := client{want: tc.want}
			if got := tc.rt.check(&cl, []byte(tc.body)); got != tc.right {
				t.Fatalf("check = %v, want %v", got, tc.right)
			}
			if cl.lost != tc.lost || cl.want != tc.now || cl.ahead != tc.ahead {
				t.Fatalf("lost %d, counter %d, ahead %d; want %d, %d, %d", cl.lost, cl.want, cl.ahead, tc.lost, tc.now, tc.ahead)
			}
		})
	}
}
