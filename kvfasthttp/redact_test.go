package kvfasthttp_test

import (
	"bytes"
	"log"
	"strings"
	"testing"

	"github.com/kvsession/kvsession/kvfasthttp"
)

// The redaction, message by message. How it holds against fasthttp's real
// messages, over TCP, is TestServerLogNeverShowsSessionIDs in
// e2e/serverlog_test.go.

// TestRedact pins the redaction of each kind of credential, and what it
// leaves alone.
func TestRedact(t *testing.T) {
	const id = "Zm9vYmFyYmF6cXV4cXV1eGNvcmdlZ3JhdWx0Z2FycGx5" // 44 characters
	for _, tc := range []struct {
		name, msg, want string
	}{
		{"Cookie header to the end of its line", "Cookie: a=1; b=2\r\nHost: x", "Cookie: [redacted]\r\nHost: x"},
		{"quoted Cookie header", `"GET / HTTP/1.1\r\ncookie:a=1\r\nHost: x"`, `"GET / HTTP/1.1\r\ncookie:[redacted]\r\nHost: x"`},
		{"Set-Cookie", "Set-Cookie: s=abc; Path=/\n", "Set-Cookie: [redacted]\n"},
		{"cookie= attribute", `msg=x cookie="a=1" level=WARN`, `msg=x cookie=[redacted]`},
		{"session pair", `invalid header value "theme=dark; session=abc\x01def; x=1"`, `invalid header value "theme=dark; session=[redacted]; x=1"`},
		{"segment pair", "session-2=2.3.abcdef;", "session-2=[redacted];"},
		{"pair in a URI", `invalid request uri "/?session=abc&x=1"`, `invalid request uri "/?session=[redacted]"`},
		{"a bare id", "...\"" + id + "\\r\\n\\r\\n\"", "...\"[redacted]\\r\\n\\r\\n\""},
		{"a piece of an id", `"` + id[:16] + `\r\n"`, `"[redacted]\r\n"`},
		{"words, numbers and addresses stay",
			`error when serving connection "127.0.0.1:8080"<->"127.0.0.1:53412": error when reading request headers: EOF: buffer size=57`,
			`error when serving connection "127.0.0.1:8080"<->"127.0.0.1:53412": error when reading request headers: EOF: buffer size=57`},
		{"the word cookie stays", "kvsession: session cookie does not open", "kvsession: session cookie does not open"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := kvfasthttp.Redact(tc.msg, "session"); got != tc.want {
				t.Errorf("Redact(%q)\n got %q\nwant %q", tc.msg, got, tc.want)
			}
		})
	}
}

// TestRedactLoggerFormatsFirst: a credential split over the format and its
// arguments must be redacted in the message they make.
func TestRedactLoggerFormatsFirst(t *testing.T) {
	var out bytes.Buffer
	l := kvfasthttp.RedactLogger(log.New(&out, "", 0), "session")
	l.Printf("%s%s", "Cook", "ie: session=secret-value-of-the-client")
	l.Printf("value %q", "session=abc\x01def")
	got := out.String()
	if strings.Contains(got, "secret") || strings.Contains(got, "def") {
		t.Fatalf("RedactLogger passed on %q", got)
	}
	if want := "Cookie: [redacted]\nvalue \"session=[redacted]\"\n"; got != want {
		t.Fatalf("RedactLogger wrote %q, want %q", got, want)
	}
}
