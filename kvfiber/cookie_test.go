package kvfiber_test

import (
	"bufio"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"testing"

	"github.com/gofiber/fiber/v3"
	"github.com/gofiber/fiber/v3/middleware/recover"
	"github.com/valyala/fasthttp"

	"github.com/kvsession/kvsession"
	"github.com/kvsession/kvsession/internal/sessiontest"
	"github.com/kvsession/kvsession/kvfiber"
)

// The cookie backend makes the largest Cookie headers: the tests of the
// read buffer use one.

// startCookie serves routes behind the middleware over a cookie backend,
// in an app whose read buffer is readBuffer (0: Fiber's default).
func startCookie(t *testing.T, readBuffer int) *harness {
	t.Helper()
	logs := &syncBuffer{}
	b := sessiontest.NewCookieBackend(t, kvsession.Config{Logger: slog.New(slog.NewTextHandler(logs, nil))})
	h := serve(t, b, kvfiber.Options{}, fiber.Config{ReadBufferSize: readBuffer}, func(app *fiber.App, sessions fiber.Handler) {
		app.Use(recover.New(), sessions)
	})
	h.logs = logs
	return h
}

func TestRequiredReadBufferSize(t *testing.T) {
	server, _ := newServerBackend(t, kvsession.Config{}, &syncBuffer{})
	cookie := sessiontest.NewCookieBackend(t, kvsession.Config{})
	cookieHeader := len("Cookie: \r\n") + cookie.MaxCookieHeaderBytes()
	for _, tc := range []struct {
		name       string
		backend    kvsession.Backend
		headerRoom int
		want       int
	}{
		{"server backend: Fiber's default is enough", server, 0, fiber.DefaultReadBufferSize},
		{"cookie backend, default room", cookie, 0, cookieHeader + kvfiber.DefaultHeaderRoom},
		{"cookie backend, more room", cookie, 8192, cookieHeader + 8192},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := kvfiber.RequiredReadBufferSize(tc.backend, tc.headerRoom); got != tc.want {
				t.Fatalf("RequiredReadBufferSize = %d, want %d", got, tc.want)
			}
		})
	}
}

// TestAppReadBufferMustHoldCookieSegments: an app too small for the
// backend's cookies fails every request through the middleware, saying
// what to set, instead of answering 431 once a session grows.
func TestAppReadBufferMustHoldCookieSegments(t *testing.T) {
	b := sessiontest.NewCookieBackend(t, kvsession.Config{})
	need := kvfiber.RequiredReadBufferSize(b, 0)
	for _, tc := range []struct {
		name       string
		readBuffer int
		ok         bool
	}{
		{"Fiber's default", 0, false},
		{"one byte short", need - 1, false},
		{"RequiredReadBufferSize", need, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := startCookie(t, tc.readBuffer)
			for _, path := range []string{"/counter", "/counter", "/plain"} {
				r := h.client.Do("GET", path, "")
				if (r.Status == 200) != tc.ok {
					t.Fatalf("GET %s = %d %q", path, r.Status, r.Body)
				}
			}
			if tc.ok {
				h.client.Expect("GET", "/read", "", 200, "2")
				return
			}
			if logs := h.logs.String(); !strings.Contains(logs, "ReadBufferSize") || !strings.Contains(logs, strconv.Itoa(need)) {
				t.Fatalf("log %q: want the setting and %d named", logs, need)
			}
		})
	}
}

// TestFullCookieHeaderIsServed sends the largest Cookie header the default
// configuration allows, besides ordinary browser headers, to an app sized
// with RequiredReadBufferSize: fasthttp must not answer 431.
func TestFullCookieHeaderIsServed(t *testing.T) {
	b := sessiontest.NewCookieBackend(t, kvsession.Config{})
	h := startCookie(t, kvfiber.RequiredReadBufferSize(b, 0))
	var cookies []string
	for i := range b.Config().MaxCookieSegments {
		cookies = append(cookies, "session-"+strconv.Itoa(i)+"="+strings.Repeat("x", kvsession.MaxCookieLineBytes-len("session-0=")))
	}
	req := "GET /counter HTTP/1.1\r\nHost: example.test\r\n" +
		"User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0 Safari/537.36\r\n" +
		"Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\nAccept-Language: en-GB,en;q=0.9\r\n" +
		"Connection: close\r\nCookie: " + strings.Join(cookies, "; ") + "\r\n\r\n"
	conn, err := net.Dial("tcp", strings.TrimPrefix(h.client.Base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte(req)); err != nil {
		t.Fatal(err)
	}
	var resp fasthttp.Response
	if err := resp.Read(bufio.NewReader(conn)); err != nil {
		t.Fatal(err)
	}
	// The cookies are junk, so the session is fresh; what matters is that
	// the request reached the handler.
	if resp.StatusCode() != 200 || string(resp.Body()) != "1" {
		t.Fatalf("%d %q", resp.StatusCode(), resp.Body())
	}
}
