package kvhttp_test

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kvsession/kvsession"
	"github.com/kvsession/kvsession/kvhttp"
	"github.com/kvsession/kvsession/store"
	"github.com/kvsession/kvsession/store/memstore"
	"github.com/kvsession/kvsession/store/storetest/faultstore"
)

// recordingWriter is a ResponseWriter with none of the optional
// interfaces; the types below add them, one combination each.
type recordingWriter struct {
	header   http.Header
	status   int
	body     strings.Builder
	flushed  int
	hijacked int
	pushed   []string
}

func newRecordingWriter() *recordingWriter { return &recordingWriter{header: http.Header{}} }

func (w *recordingWriter) Header() http.Header { return w.header }
func (w *recordingWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
}

func (w *recordingWriter) Write(p []byte) (int, error) {
	w.WriteHeader(200)
	return w.body.Write(p)
}

func (w *recordingWriter) flush() { w.WriteHeader(200); w.flushed++ }
func (w *recordingWriter) hijack() (net.Conn, *bufio.ReadWriter, error) {
	w.hijacked++
	return nil, nil, nil
}

func (w *recordingWriter) push(target string) error { w.pushed = append(w.pushed, target); return nil }

type (
	plainRW       struct{ *recordingWriter }
	flushRW       struct{ *recordingWriter }
	flushErrorRW  struct{ *recordingWriter } // FlushError only, as http.ResponseController allows
	hijackRW      struct{ *recordingWriter }
	pushRW        struct{ *recordingWriter }
	flushHijackRW struct{ *recordingWriter }
	flushPushRW   struct{ *recordingWriter }
	allRW         struct{ *recordingWriter }
	// unwrapRW hides what it wraps but for Unwrap, as a middleware's
	// writer written for http.ResponseController does.
	unwrapRW struct {
		*recordingWriter
		inner http.ResponseWriter
	}
)

func (w flushRW) Flush()                                             { w.flush() }
func (w flushErrorRW) FlushError() error                             { w.flush(); return nil }
func (w hijackRW) Hijack() (net.Conn, *bufio.ReadWriter, error)      { return w.hijack() }
func (w pushRW) Push(target string, _ *http.PushOptions) error       { return w.push(target) }
func (w flushHijackRW) Flush()                                       { w.flush() }
func (w flushHijackRW) Hijack() (net.Conn, *bufio.ReadWriter, error) { return w.hijack() }
func (w flushPushRW) Flush()                                         { w.flush() }
func (w flushPushRW) Push(target string, _ *http.PushOptions) error  { return w.push(target) }
func (w allRW) Flush()                                               { w.flush() }
func (w allRW) Hijack() (net.Conn, *bufio.ReadWriter, error)         { return w.hijack() }
func (w allRW) Push(target string, _ *http.PushOptions) error        { return w.push(target) }
func (w unwrapRW) Unwrap() http.ResponseWriter                       { return w.inner }

// TestWriterKeepsAbilities: the handler's writer has Flusher, Hijacker
// and Pusher exactly when the middleware's has them (or reaches them by
// Unwrap), and each reaches the middleware's writer; ReaderFrom,
// StringWriter and Unwrap are always there.
func TestWriterKeepsAbilities(t *testing.T) {
	mw := newMiddleware(t, kvhttp.Options{})
	for _, tc := range []struct {
		name                string
		wrap                func(*recordingWriter) http.ResponseWriter
		flush, hijack, push bool
	}{
		{"plain", func(w *recordingWriter) http.ResponseWriter { return plainRW{w} }, false, false, false},
		{"Flusher", func(w *recordingWriter) http.ResponseWriter { return flushRW{w} }, true, false, false},
		{"FlushError", func(w *recordingWriter) http.ResponseWriter { return flushErrorRW{w} }, true, false, false},
		{"Hijacker", func(w *recordingWriter) http.ResponseWriter { return hijackRW{w} }, false, true, false},
		{"Pusher", func(w *recordingWriter) http.ResponseWriter { return pushRW{w} }, false, false, true},
		{"HTTP/1: Flusher, Hijacker", func(w *recordingWriter) http.ResponseWriter { return flushHijackRW{w} }, true, true, false},
		{"HTTP/2: Flusher, Pusher", func(w *recordingWriter) http.ResponseWriter { return flushPushRW{w} }, true, false, true},
		{"all three", func(w *recordingWriter) http.ResponseWriter { return allRW{w} }, true, true, true},
		{"Flusher, Hijacker behind Unwrap", func(w *recordingWriter) http.ResponseWriter {
			return unwrapRW{w, flushHijackRW{w}}
		}, true, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := newRecordingWriter()
			given := tc.wrap(rec)
			mw.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				kvhttp.Session(r).SetInt("n", 1)
				if u, ok := w.(interface{ Unwrap() http.ResponseWriter }); !ok || u.Unwrap() != given {
					t.Error("Unwrap does not give the middleware's writer")
				}
				if _, ok := w.(io.ReaderFrom); !ok {
					t.Error("no io.ReaderFrom")
				}
				if _, ok := w.(io.StringWriter); !ok {
					t.Error("no io.StringWriter")
				}
				if p, ok := w.(http.Pusher); ok != tc.push {
					t.Errorf("http.Pusher %v, want %v", ok, tc.push)
				} else if ok {
					if err := p.Push("/style.css", nil); err != nil {
						t.Error(err)
					}
					if len(rec.header["Set-Cookie"]) != 0 {
						t.Error("a push promise committed the session")
					}
				}
				f, ok := w.(http.Flusher)
				if ok != tc.flush {
					t.Errorf("http.Flusher %v, want %v", ok, tc.flush)
				}
				if ok {
					f.Flush()
				} else if err := http.NewResponseController(w).Flush(); !errors.Is(err, http.ErrNotSupported) {
					t.Errorf("ResponseController.Flush: %v, want ErrNotSupported", err)
				}
				h, ok := w.(http.Hijacker)
				if ok != tc.hijack {
					t.Errorf("http.Hijacker %v, want %v", ok, tc.hijack)
				}
				if ok {
					h.Hijack()
				} else if _, _, err := http.NewResponseController(w).Hijack(); !errors.Is(err, http.ErrNotSupported) {
					t.Errorf("ResponseController.Hijack: %v, want ErrNotSupported", err)
				}
			})).ServeHTTP(given, httptest.NewRequest("GET", "/", nil))
			if want := b2i(tc.flush); rec.flushed != want {
				t.Errorf("flushed %d times, want %d", rec.flushed, want)
			}
			if want := b2i(tc.hijack); rec.hijacked != want {
				t.Errorf("hijacked %d times, want %d", rec.hijacked, want)
			}
			if tc.push && len(rec.pushed) != 1 {
				t.Errorf("pushed %q", rec.pushed)
			}
			if len(rec.header["Set-Cookie"]) != 1 {
				t.Errorf("Set-Cookie %q", rec.header["Set-Cookie"])
			}
		})
	}
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// TestReadFrom: io.Copy to the handler's writer commits the session, and
// uses the wrapped writer's ReadFrom when it has one.
func TestReadFrom(t *testing.T) {
	mw := newMiddleware(t, kvhttp.Options{})
	for _, tc := range []struct {
		name string
		w    http.ResponseWriter
	}{
		{"wrapped writer has ReadFrom", &readFromRW{recordingWriter: newRecordingWriter()}},
		{"wrapped writer has none", plainRW{newRecordingWriter()}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mw.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				kvhttp.Session(r).SetInt("n", 1)
				if n, err := io.Copy(w, struct{ io.Reader }{strings.NewReader("body")}); n != 4 || err != nil {
					t.Errorf("io.Copy: %d, %v", n, err)
				}
			})).ServeHTTP(tc.w, httptest.NewRequest("GET", "/", nil))
			var rec *recordingWriter
			switch w := tc.w.(type) {
			case *readFromRW:
				rec = w.recordingWriter
				if w.readFrom != 1 {
					t.Errorf("ReadFrom called %d times", w.readFrom)
				}
			case plainRW:
				rec = w.recordingWriter
			}
			if rec.body.String() != "body" || len(rec.header["Set-Cookie"]) != 1 {
				t.Errorf("body %q, Set-Cookie %q", rec.body.String(), rec.header["Set-Cookie"])
			}
		})
	}
}

type readFromRW struct {
	*recordingWriter
	readFrom int
}

func (w *readFromRW) ReadFrom(r io.Reader) (int64, error) {
	w.readFrom++
	return io.Copy(w.recordingWriter, r)
}

// TestResponseControllerReachesServer: the controller's calls that need
// the server's own writer get to it through Unwrap.
func TestResponseControllerReachesServer(t *testing.T) {
	mux := routes(t)
	mux.HandleFunc("/controller", func(w http.ResponseWriter, r *http.Request) {
		kvhttp.Session(r).SetInt("n", 1)
		rc := http.NewResponseController(w)
		for name, err := range map[string]error{
			"SetReadDeadline":  rc.SetReadDeadline(time.Now().Add(time.Minute)),
			"SetWriteDeadline": rc.SetWriteDeadline(time.Now().Add(time.Minute)),
			"EnableFullDuplex": rc.EnableFullDuplex(),
		} {
			if err != nil {
				t.Errorf("%s: %v", name, err)
			}
		}
		io.WriteString(w, "ok")
	})
	hs := start(t, kvsession.Config{}, kvhttp.Options{}, mux)
	if r := hs.client.Expect("GET", "/controller", "", 200, "ok"); len(r.SetCookies()) != 1 {
		t.Fatalf("Set-Cookie %q", r.SetCookies())
	}
}

// TestWritesAfterHandler: a router that writes through the handler's
// writer after the middleware returned (echo renders the error a handler
// returned that way) reaches the client, with the cookie the middleware
// committed when the handler returned; after a failed save it is thrown
// away, since the error handler has answered.
func TestWritesAfterHandler(t *testing.T) {
	for _, tc := range []struct {
		name      string
		failSaves bool
		status    int
		body      string
		cookie    bool
	}{
		{"saved", false, 404, "not found", true},
		{"save failed", true, 500, "session unavailable\n", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			faults := faultstore.New(memstore.New(memstore.Options{}))
			reg := store.NewRegistry(nil)
			reg.Register("sessions", faults.Store())
			t.Cleanup(func() { reg.Close() })
			b, err := kvsession.New(kvsession.Config{Logger: discardLogger}, reg)
			if err != nil {
				t.Fatal(err)
			}
			mw, _ := kvhttp.New(b, kvhttp.Options{})
			if tc.failSaves {
				faults.Fail(faultstore.Writes, errDown)
			}
			var kept http.ResponseWriter
			h := mw.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				kvhttp.Session(r).SetInt("n", 1)
				kept = w // and return an error, in a router that has them
			}))
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
			// The router renders the error.
			kept.WriteHeader(404)
			_, err = io.WriteString(kept, "not found")
			if tc.failSaves != errors.Is(err, kvhttp.ErrResponseReplaced) {
				t.Errorf("write after the handler: %v", err)
			}
			if rec.Code != tc.status || rec.Body.String() != tc.body || (len(rec.Header()["Set-Cookie"]) == 1) != tc.cookie {
				t.Fatalf("%d %q Set-Cookie %q", rec.Code, rec.Body.String(), rec.Header()["Set-Cookie"])
			}
		})
	}
}

// TestHTTP2: over HTTP/2 the handler's writer flushes and pushes, as the
// server's does, and cannot be hijacked, as the server's cannot.
func TestHTTP2(t *testing.T) {
	mux := routes(t)
	mux.HandleFunc("/abilities", func(w http.ResponseWriter, r *http.Request) {
		kvhttp.Session(r).SetInt("n", 1)
		_, flush := w.(http.Flusher)
		_, hijack := w.(http.Hijacker)
		_, push := w.(http.Pusher)
		fmt.Fprintf(w, "%s flush %v hijack %v push %v", r.Proto, flush, hijack, push)
	})
	hs := serveTLS(t, mux)
	hs.client.Expect("GET", "/abilities", "", 200, "HTTP/2.0 flush true hijack false push true")
	for want := 1; want <= 3; want++ {
		hs.client.Expect("GET", "/counter", "", 200, strconv.Itoa(want+1))
	}
}
