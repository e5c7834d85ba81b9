package kvfiber_test

import (
	"bufio"
	"net"
	"strings"
	"testing"

	"github.com/gofiber/fiber/v3"
	"github.com/valyala/fasthttp"

	"github.com/kvsession/kvsession"
	"github.com/kvsession/kvsession/kvfiber"
)

// TestRedactRequestErrors sends requests fasthttp cannot read, carrying a
// session cookie, and reads the error Fiber hands the app's ErrorHandler
// (which may log it) and the client: with RedactRequestErrors neither
// holds the cookie, and Fiber still answers each with its usual status.
func TestRedactRequestErrors(t *testing.T) {
	const id = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFG" // a session id's shape
	requests := []struct {
		name   string
		raw    string
		status int
	}{
		{"malformed header line", "GET / HTTP/1.1\r\nHost: example.test\r\nCookie: session=" + id + "\r\nNo colon here\r\n\r\n", 400},
		{"stray byte in the Cookie header", "GET / HTTP/1.1\r\nHost: example.test\r\nCookie: theme=dark; session=" + id + "\x01\r\n\r\n", 400},
		{"stray byte in a cookie segment", "GET / HTTP/1.1\r\nHost: example.test\r\nCookie: session-1=" + id + "\x01; session-0=x\r\n\r\n", 400},
		{"header too large", "GET / HTTP/1.1\r\nHost: example.test\r\nCookie: session=" + id + "\r\nX-Pad: " + strings.Repeat("p", 8192) + "\r\n\r\n", 431},
	}
	for _, redact := range []bool{false, true} {
		for _, req := range requests {
			t.Run(map[bool]string{false: "unprotected", true: "redacted"}[redact]+"/"+req.name, func(t *testing.T) {
				b, _ := newServerBackend(t, kvsession.Config{}, &syncBuffer{})
				h := serve(t, b, kvfiber.Options{}, fiber.Config{}, func(app *fiber.App, sessions fiber.Handler) {
					app.Use(sessions)
					if redact {
						kvfiber.RedactRequestErrors(app, b)
					}
				})
				conn, err := net.Dial("tcp", strings.TrimPrefix(h.client.Base, "http://"))
				if err != nil {
					t.Fatal(err)
				}
				defer conn.Close()
				if _, err := conn.Write([]byte(req.raw)); err != nil {
					t.Fatal(err)
				}
				var resp fasthttp.Response
				if err := resp.Read(bufio.NewReader(conn)); err != nil {
					t.Fatal(err)
				}
				errs := h.appErrors()
				if resp.StatusCode() != req.status || len(errs) != 1 {
					t.Fatalf("%d, app errors %q: want one %d", resp.StatusCode(), errs, req.status)
				}
				leaked := strings.Contains(errs[0].Error(), id[:16]) || strings.Contains(string(resp.Body()), id[:16])
				if redact && leaked {
					t.Fatalf("the session id got through: error %q, body %q", errs[0], resp.Body())
				}
				if !redact && req.status == 400 && !leaked {
					// Then the redacted case proves nothing.
					t.Fatalf("unprotected, the error %q does not quote the id", errs[0])
				}
			})
		}
	}
}
