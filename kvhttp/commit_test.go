package kvhttp_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"net/textproto"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kvsession/kvsession"
	"github.com/kvsession/kvsession/kvhttp"
	"github.com/kvsession/kvsession/store/storetest/faultstore"
)

// TestCommitBeforeHeader: whichever way a handler starts its response, the
// session it changed first is saved and its cookie is in that response;
// a later change under the same id is saved too, and its response sends
// no cookie (the client's still says what it should: cookierefresh.go).
func TestCommitBeforeHeader(t *testing.T) {
	for _, tc := range []struct {
		name   string
		write  func(w http.ResponseWriter, r *http.Request)
		status int
		body   string
	}{
		{"Write", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("body")) }, 200, "body"},
		{"WriteHeader", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(201); w.Write([]byte("body")) }, 201, "body"},
		{"WriteHeader without body", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(204) }, 204, ""},
		{"io.WriteString", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "body") }, 200, "body"},
		{"fmt.Fprint", func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "body") }, 200, "body"},
		{"io.Copy, through ReadFrom", func(w http.ResponseWriter, r *http.Request) {
			io.Copy(w, struct{ io.Reader }{strings.NewReader("body")}) // hides WriteTo
		}, 200, "body"},
		{"http.Redirect", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/read", http.StatusSeeOther) }, 200, "7"},
		{"http.ServeContent", func(w http.ResponseWriter, r *http.Request) {
			http.ServeContent(w, r, "a.txt", time.Time{}, strings.NewReader("body"))
		}, 200, "body"},
		{"Flush", func(w http.ResponseWriter, r *http.Request) { w.(http.Flusher).Flush(); w.Write([]byte("body")) }, 200, "body"},
		{"ResponseController.Flush", func(w http.ResponseWriter, r *http.Request) {
			if err := http.NewResponseController(w).Flush(); err != nil {
				panic(err)
			}
			w.Write([]byte("body"))
		}, 200, "body"},
		{"nothing written", func(w http.ResponseWriter, r *http.Request) {}, 200, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mux := routes(t)
			mux.HandleFunc("/set", func(w http.ResponseWriter, r *http.Request) {
				// n from the query, so that /read tells which write it saw.
				n, err := strconv.Atoi(r.URL.Query().Get("n"))
				if err != nil {
					n = 7
				}
				kvhttp.Session(r).SetInt("n", n)
				tc.write(w, r)
				// Nothing the handler does from here on can reach the header.
			})
			hs := start(t, kvsession.Config{}, kvhttp.Options{}, mux)
			// Without following redirects, to see the 303's own header.
			client := *hs.client.HTTP
			client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
			resp, err := client.Get(hs.srv.URL + "/set?n=6")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if !strings.HasPrefix(resp.Header.Get("Set-Cookie"), "session=") {
				t.Fatalf("%d: no session cookie in %q", resp.StatusCode, resp.Header)
			}
			r := hs.client.Expect("GET", "/set", "", tc.status, tc.body)
			if tc.name == "http.Redirect" {
				return
			}
			if len(r.SetCookies()) != 0 {
				t.Errorf("Set-Cookie %q, want none: the id is unchanged and its expiry not due to move", r.SetCookies())
			}
			// The second write, which sent no cookie, was saved.
			hs.client.Expect("GET", "/read", "", 200, "7")
			if s := hs.httpLog.String(); s != "" {
				t.Errorf("net/http complained: %s", s)
			}
		})
	}
}

// TestStreaming: a streaming handler's session is committed with its
// first flush: the cookie of a new session is in the header the client
// gets before the stream ends (a session under an unchanged id sends
// none: cookierefresh.go), the session is saved by then, and
// (Config.Lock) other requests of the session do not wait for the stream
// to end.
func TestStreaming(t *testing.T) {
	for _, tc := range []struct {
		name       string
		existing   bool   // the client has a session before the stream
		wantCookie bool   // the first chunk's header sets the cookie
		read       string // /read while the stream is still open
	}{
		{"new session", false, true, "10"},
		{"existing session", true, false, "11"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			next := make(chan struct{})
			mux := routes(t)
			mux.HandleFunc("/events", func(w http.ResponseWriter, r *http.Request) {
				s := kvhttp.Session(r)
				n, _ := s.GetInt("n")
				s.SetInt("n", n+10)
				w.Header().Set("Content-Type", "text/event-stream")
				flusher, ok := w.(http.Flusher)
				if !ok {
					http.Error(w, "no streaming", 500)
					return
				}
				for i := 1; i <= 2; i++ {
					fmt.Fprintf(w, "data: %d\n\n", i)
					flusher.Flush()
					<-next
				}
			})
			hs := start(t, kvsession.Config{Lock: true, LockWait: time.Second}, kvhttp.Options{}, mux)
			// Registered after start, so it runs before the server's
			// Close: a failure below must not leave the handler blocked,
			// or Close waits for it forever.
			var once sync.Once
			release := func() { once.Do(func() { close(next) }) }
			t.Cleanup(release)
			if tc.existing {
				hs.client.Expect("GET", "/counter", "", 200, "1")
			}
			resp, err := hs.client.HTTP.Get(hs.srv.URL + "/events")
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if got := strings.HasPrefix(resp.Header.Get("Set-Cookie"), "session="); got != tc.wantCookie {
				t.Fatalf("first chunk's header %q: session cookie %v, want %v", resp.Header, got, tc.wantCookie)
			}
			events := bufio.NewReader(resp.Body)
			if line, _ := events.ReadString('\n'); line != "data: 1\n" {
				t.Fatalf("first event %q", line)
			}
			// The stream is still open: the save happened at the flush,
			// and the lock was released then.
			hs.client.Expect("GET", "/read", "", 200, tc.read)
			release()
			rest, _ := io.ReadAll(events)
			if string(rest) != "\ndata: 2\n\n" {
				t.Fatalf("rest of the stream %q", rest)
			}
		})
	}
}

// TestInformationalResponse: a 1xx response (103 Early Hints) is not the
// response: it goes out without the session's cookie, and the session may
// still change after it.
func TestInformationalResponse(t *testing.T) {
	mux := routes(t)
	mux.HandleFunc("/hints", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Link", "</style.css>; rel=preload")
		w.WriteHeader(http.StatusEarlyHints)
		kvhttp.Session(r).SetInt("n", 5)
		io.WriteString(w, "ok")
	})
	hs := start(t, kvsession.Config{}, kvhttp.Options{}, mux)
	var hints []textproto.MIMEHeader
	trace := &httptrace.ClientTrace{Got1xxResponse: func(code int, h textproto.MIMEHeader) error {
		hints = append(hints, h)
		return nil
	}}
	req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(t.Context(), trace), "GET", hs.srv.URL+"/hints", nil)
	resp, err := hs.client.HTTP.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if len(hints) != 1 || hints[0].Get("Link") == "" || hints[0].Get("Set-Cookie") != "" {
		t.Fatalf("103 headers %q: want the Link and no cookie", hints)
	}
	if !strings.HasPrefix(resp.Header.Get("Set-Cookie"), "session=") {
		t.Fatalf("final header %q", resp.Header)
	}
	hs.client.Expect("GET", "/read", "", 200, "5")
}

// TestChangeAfterCommit: what a handler does to its session after the
// header went out is not saved, and a session first changed then is
// logged.
func TestChangeAfterCommit(t *testing.T) {
	const warning = "session changed after the response header was sent"
	for _, tc := range []struct {
		name       string
		handle     func(w http.ResponseWriter, s *kvsession.Session)
		read       string // /read afterwards: the counter was at 1
		setsCookie bool
		warns      bool
	}{
		{"changed only after the write", func(w http.ResponseWriter, s *kvsession.Session) {
			io.WriteString(w, "page")
			s.Delete("n") // a flash message popped while rendering
		}, "1", false, true},
		{"first used after the write", func(w http.ResponseWriter, s *kvsession.Session) {
			io.WriteString(w, "page")
			s.SetInt("n", 9)
		}, "1", false, true},
		{"changed before and after", func(w http.ResponseWriter, s *kvsession.Session) {
			s.SetInt("n", 5)
			io.WriteString(w, "page")
			s.SetInt("n", 6)
			// Saved (read "5") under the same id, whose cookie is not due
			// to be resent (cookierefresh.go): no cookie. The later change
			// cannot be told from the earlier one: not logged.
		}, "5", false, false},
		{"read after the write", func(w http.ResponseWriter, s *kvsession.Session) {
			io.WriteString(w, "page")
			s.GetInt("n")
		}, "1", false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mux := routes(t)
			mux.HandleFunc("/page", func(w http.ResponseWriter, r *http.Request) { tc.handle(w, kvhttp.Session(r)) })
			hs := start(t, kvsession.Config{Lock: true}, kvhttp.Options{}, mux)
			hs.get("/counter")
			r := hs.client.Expect("GET", "/page", "", 200, "page")
			if got := len(r.SetCookies()) > 0; got != tc.setsCookie {
				t.Errorf("Set-Cookie %q", r.SetCookies())
			}
			hs.client.Expect("GET", "/read", "", 200, tc.read)
			if got := strings.Contains(hs.logs.String(), warning); got != tc.warns {
				t.Errorf("warned %v, want %v: %s", got, tc.warns, hs.logs)
			}
		})
	}
}

// TestHijack: Hijack commits the session (saved, lock released, cookie
// lines left in the header map for the handler's own response), and the
// middleware writes nothing to a hijacked connection. A new session's
// cookie is left; a session under an unchanged id leaves none, its
// cookie not due to be resent (cookierefresh.go).
func TestHijack(t *testing.T) {
	for _, existing := range []bool{false, true} {
		for _, tc := range []struct {
			name   string
			hijack func(w http.ResponseWriter) (io.ReadWriteCloser, error)
		}{
			{"http.Hijacker", func(w http.ResponseWriter) (io.ReadWriteCloser, error) {
				conn, _, err := w.(http.Hijacker).Hijack()
				return conn, err
			}},
			{"ResponseController", func(w http.ResponseWriter) (io.ReadWriteCloser, error) {
				conn, _, err := http.NewResponseController(w).Hijack()
				return conn, err
			}},
		} {
			t.Run(fmt.Sprintf("%s/existing=%v", tc.name, existing), func(t *testing.T) {
				hijacked, release := make(chan struct{}), make(chan struct{})
				mux := routes(t)
				mux.HandleFunc("/hijack", func(w http.ResponseWriter, r *http.Request) {
					kvhttp.Session(r).SetInt("n", 3)
					conn, err := tc.hijack(w)
					if err != nil {
						t.Error(err)
						return
					}
					defer conn.Close()
					// The handler answers on its own, with the cookie lines the
					// middleware left it.
					var head strings.Builder
					head.WriteString("HTTP/1.1 200 OK\r\nContent-Length: 8\r\nConnection: close\r\n")
					for _, c := range w.Header().Values("Set-Cookie") {
						head.WriteString("Set-Cookie: " + c + "\r\n")
					}
					io.WriteString(conn, head.String()+"\r\nhijacked")
					close(hijacked)
					<-release
					// Returning: the middleware must write nothing now.
				})
				hs := start(t, kvsession.Config{Lock: true, LockWait: time.Second}, kvhttp.Options{}, mux)
				if existing {
					hs.get("/counter")
				}
				r := hs.client.Expect("GET", "/hijack", "", 200, "hijacked")
				if want := map[bool]int{false: 1, true: 0}[existing]; len(r.SetCookies()) != want {
					t.Errorf("Set-Cookie %q, want %d", r.SetCookies(), want)
				}
				<-hijacked
				// The hijacking handler has not returned: the session is saved
				// and its lock free all the same.
				hs.client.Expect("GET", "/read", "", 200, "3")
				close(release)
				hs.client.Expect("GET", "/counter", "", 200, "4")
				hs.handling.Wait()
				if s := hs.httpLog.String(); s != "" {
					t.Errorf("net/http complained: %s", s)
				}
			})
		}
	}
}

// TestHijackFailedSave: when the save fails, Hijack fails and the error
// handler answers over HTTP.
func TestHijackFailedSave(t *testing.T) {
	var hijackErr error
	mux := routes(t)
	mux.HandleFunc("/hijack", func(w http.ResponseWriter, r *http.Request) {
		kvhttp.Session(r).SetInt("n", 3)
		conn, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			conn.Close()
		}
		hijackErr = err
	})
	hs := start(t, kvsession.Config{}, kvhttp.Options{}, mux)
	hs.get("/counter")
	hs.faults.Fail(faultstore.Writes, errDown)
	hs.client.Expect("GET", "/hijack", "", 500, "session unavailable\n")
	if !errors.Is(hijackErr, kvhttp.ErrResponseReplaced) || !errors.Is(hijackErr, errDown) {
		t.Fatalf("Hijack: %v", hijackErr)
	}
}

type panicValue struct{ msg string }

// TestPanic: a panicking handler saves nothing it did not commit, frees
// the session's lock, and its panic reaches net/http.
func TestPanic(t *testing.T) {
	for _, tc := range []struct {
		name   string
		handle func(w http.ResponseWriter, s *kvsession.Session)
		read   string // the counter was at 1
		logged bool   // net/http logs the panic
	}{
		{"before writing", func(w http.ResponseWriter, s *kvsession.Session) {
			s.SetInt("n", 100)
			panic(panicValue{"boom"})
		}, "1", true},
		{"ErrAbortHandler", func(w http.ResponseWriter, s *kvsession.Session) {
			s.SetInt("n", 100)
			panic(http.ErrAbortHandler)
		}, "1", false},
		{"invalid status, which net/http panics on", func(w http.ResponseWriter, s *kvsession.Session) {
			s.SetInt("n", 100)
			w.WriteHeader(1000)
		}, "1", true},
		{"after writing", func(w http.ResponseWriter, s *kvsession.Session) {
			s.SetInt("n", 100)
			io.WriteString(w, "partial")
			w.(http.Flusher).Flush()
			s.SetInt("n", 200)
			panic(panicValue{"boom"})
		}, "100", true}, // the save that went out with the header stands
	} {
		t.Run(tc.name, func(t *testing.T) {
			mux := routes(t)
			mux.HandleFunc("/panic", func(w http.ResponseWriter, r *http.Request) { tc.handle(w, kvhttp.Session(r)) })
			// LockWait is short: a lock the panic left held would fail /read.
			hs := start(t, kvsession.Config{Lock: true, LockWait: 300 * time.Millisecond}, kvhttp.Options{}, mux)
			hs.get("/counter")
			if r, err := postMayBreak(hs, "/panic"); err == nil && r == 200 {
				t.Fatal("a panicking handler's response arrived whole")
			}
			hs.client.Expect("GET", "/read", "", 200, tc.read)
			hs.handling.Wait()
			if got := strings.Contains(hs.httpLog.String(), "panic serving"); got != tc.logged {
				t.Errorf("net/http logged the panic: %v, want %v: %s", got, tc.logged, hs.httpLog)
			}
		})
	}
}

// postMayBreak posts to path with the client's jar, reading a response
// that may break off: the error is returned rather than failing the test.
// A POST, because the client retries a GET whose connection broke, which
// would run the handler twice.
func postMayBreak(hs *harness, path string) (int, error) {
	resp, err := hs.client.HTTP.Post(hs.srv.URL+path, "", nil)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if _, err := io.ReadAll(resp.Body); err != nil {
		return 0, err
	}
	return resp.StatusCode, nil
}

// TestPanicGoesOnUnchanged: the middleware does not recover the panic, so
// the value and the stack that reach the recovering code are the
// handler's own.
func TestPanicGoesOnUnchanged(t *testing.T) {
	mw := newMiddleware(t, kvhttp.Options{})
	h := mw.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		kvhttp.Session(r).SetInt("n", 1)
		panicInHandler()
	}))
	var recovered any
	var stack string
	func() {
		defer func() { recovered, stack = recover(), string(debug.Stack()) }()
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/", nil))
	}()
	if v, ok := recovered.(panicValue); !ok || v.msg != "from the handler" {
		t.Fatalf("recovered %#v", recovered)
	}
	if !strings.Contains(stack, "panicInHandler") {
		t.Fatalf("the stack at the recovery lost the handler's frames:\n%s", stack)
	}
}

func panicInHandler() { panic(panicValue{"from the handler"}) }

// TestErrorHandlerPanics: an ErrorHandler that panics, whether the commit
// ran from a write or after the handler returned, still ends the session:
// its lock free, and a context kept from the request no longer leading
// to it.
func TestErrorHandlerPanics(t *testing.T) {
	for _, tc := range []struct {
		name  string
		write bool
	}{
		{"commit on write", true},
		{"commit after the handler returned", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			kept := make(chan context.Context, 1)
			mux := routes(t)
			mux.HandleFunc("/set", func(w http.ResponseWriter, r *http.Request) {
				kept <- r.Context()
				kvhttp.Session(r).SetInt("n", 100)
				if tc.write {
					io.WriteString(w, "set")
				}
			})
			panicking := func(http.ResponseWriter, *http.Request, error) { panic(http.ErrAbortHandler) }
			hs := start(t, kvsession.Config{Lock: true, LockWait: 300 * time.Millisecond}, kvhttp.Options{ErrorHandler: panicking}, mux)
			hs.get("/counter")
			down := hs.faults.Fail(faultstore.Writes, errDown)
			if status, err := postMayBreak(hs, "/set"); err == nil {
				t.Fatalf("the request was answered %d", status)
			}
			down.Remove()
			hs.client.Expect("GET", "/read", "", 200, "1")
			hs.handling.Wait()
			if kvhttp.FromContext(<-kept) != nil {
				t.Fatal("the session was not released")
			}
		})
	}
}
