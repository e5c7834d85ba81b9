package e2e

// Cookie sessions through a browser-like client: sessions that grow over
// several cookie segments and shrink back, and a tampered segment.

import (
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/kvsession/kvsession"
	"github.com/kvsession/kvsession/internal/sessiontest"
	"github.com/kvsession/kvsession/kvfasthttp"
)

// serveCookies runs app over a cookie backend, with the read buffer its
// cookies need, and returns a client of it.
func serveCookies(t *testing.T, cfg kvsession.Config) *sessiontest.Client {
	t.Helper()
	b := sessiontest.NewCookieBackend(t, cfg)
	mw, err := kvfasthttp.New(b, kvfasthttp.Options{ReadBufferSize: kvfasthttp.RequiredReadBufferSize(b, kvfasthttp.DefaultHeaderRoom)})
	if err != nil {
		t.Fatal(err)
	}
	return sessiontest.NewClient(t, "http://"+listen(t, mw.NewServer(app)))
}

// sessionCookies returns the names of the session cookies c's jar holds.
func sessionCookies(c *sessiontest.Client) []string {
	var names []string
	for _, ck := range c.Cookies() {
		if ck.Name == "session" || strings.HasPrefix(ck.Name, "session-") {
			names = append(names, ck.Name)
		}
	}
	return names
}

func TestCookieSessionsOverHTTP(t *testing.T) {
	tests := []struct {
		size     int
		cookies  int
		segments int // Config.MaxCookieSegments
	}{
		{100, 1, 0},
		{5 << 10, 2, 0},
		{12 << 10, 5, 6},
		{91 << 10, 31, 32}, // the most segments Config allows
	}
	for _, tt := range tests {
		t.Run(strconv.Itoa(tt.size), func(t *testing.T) {
			c := serveCookies(t, kvsession.Config{MaxCookieSegments: tt.segments})
			blob := strings.Repeat("0123456789abcdef", tt.size/16)
			if r := c.Do("PUT", "/blob", blob); r.Status != 200 {
				t.Fatalf("PUT: %d", r.Status)
			}
			if got := sessionCookies(c); len(got) != tt.cookies {
				t.Fatalf("session in cookies %v, want %d", got, tt.cookies)
			}
			for want := 1; want <= 3; want++ {
				if r := c.Do("GET", "/counter", ""); r.Body != itoa(want) {
					t.Fatalf("counter %q, want %d", r.Body, want)
				}
			}
			if r := c.Do("GET", "/blob", ""); r.Status != 200 || r.Body != blob {
				t.Fatalf("GET /blob: %d, %d bytes back of %d", r.Status, len(r.Body), len(blob))
			}
			// Shrinking to one cookie expires the segments.
			c.Do("PUT", "/blob", "small")
			if got := sessionCookies(c); len(got) != 1 || got[0] != "session" {
				t.Fatalf("after shrinking the jar holds %v", got)
			}
			if r := c.Do("GET", "/blob", ""); r.Body != "small" {
				t.Fatalf("blob %q", r.Body)
			}
			c.Do("GET", "/logout", "")
			if got := sessionCookies(c); len(got) != 0 {
				t.Fatalf("after logout the jar holds %v", got)
			}
		})
	}
}

func TestCookieSessionTamperedOverHTTP(t *testing.T) {
	c := serveCookies(t, kvsession.Config{})
	c.Do("PUT", "/blob", strings.Repeat("x", 6<<10))
	var header []*http.Cookie
	for _, ck := range c.Cookies() {
		v := ck.Value
		if ck.Name == "session-1" {
			i := len(v) / 2
			v = v[:i] + string("AB"[(strings.IndexByte("AB", v[i])+1)%2]) + v[i+1:]
		}
		header = append(header, &http.Cookie{Name: ck.Name, Value: v})
	}
	if r := c.Do("GET", "/counter", "", header...); r.Status != 200 || r.Body != "1" {
		t.Fatalf("tampered cookie: %d %q, want a fresh session counting 1", r.Status, r.Body)
	}
}
