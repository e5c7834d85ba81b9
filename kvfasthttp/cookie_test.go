package kvfasthttp_test

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttputil"

	"github.com/kvsession/kvsession"
	"github.com/kvsession/kvsession/kvfasthttp"
)

var secret = bytes.Repeat([]byte{7}, kvsession.SecretBytes)

func newCookieBackend(t *testing.T, cfg kvsession.Config) *kvsession.CookieBackend {
	t.Helper()
	cfg.Secrets = [][]byte{secret}
	b, err := kvsession.NewCookie(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// serveCookies runs the test app over a cookie backend, with the read
// buffer its cookies need.
func serveCookies(t *testing.T, cfg kvsession.Config) *server {
	t.Helper()
	b := newCookieBackend(t, cfg)
	return serve(t, b, kvfasthttp.Options{ReadBufferSize: kvfasthttp.RequiredReadBufferSize(b, kvfasthttp.DefaultHeaderRoom)})
}

func (s *server) put(t *testing.T, path, body string) *http.Response {
	t.Helper()
	req, _ := http.NewRequest("PUT", "http://example.test"+path, strings.NewReader(body))
	resp, err := s.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp
}

// sessionCookies returns the names of the session cookies the jar holds.
func (s *server) sessionCookies() []string {
	var names []string
	for _, c := range s.jar.Cookies(site) {
		if c.Name == "session" || strings.HasPrefix(c.Name, "session-") {
			names = append(names, c.Name)
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
		{88 << 10, 31, 32}, // the most segments Config allows
	}
	for _, tt := range tests {
		t.Run(strconv.Itoa(tt.size), func(t *testing.T) {
			s := serveCookies(t, kvsession.Config{MaxCookieSegments: tt.segments})
			blob := strings.Repeat("0123456789abcdef", tt.size/16)
			if resp := s.put(t, "/blob", blob); resp.StatusCode != 200 {
				t.Fatalf("PUT: %d", resp.StatusCode)
			}
			if got := s.sessionCookies(); len(got) != tt.cookies {
				t.Fatalf("session in cookies %v, want %d", got, tt.cookies)
			}
			for want := 1; want <= 3; want++ {
				if _, body := s.get(t, "/counter"); body != itoa(want) {
					t.Fatalf("counter %q, want %d", body, want)
				}
			}
			if resp, body := s.get(t, "/blob"); resp.StatusCode != 200 || body != blob {
				t.Fatalf("GET /blob: %d, %d bytes back of %d", resp.StatusCode, len(body), len(blob))
			}
			// Shrinking to one cookie expires the segments.
			s.put(t, "/blob", "small")
			if got := s.sessionCookies(); len(got) != 1 || got[0] != "session" {
				t.Fatalf("after shrinking the jar holds %v", got)
			}
			if _, body := s.get(t, "/blob"); body != "small" {
				t.Fatalf("blob %q", body)
			}
			s.get(t, "/logout")
			if got := s.sessionCookies(); len(got) != 0 {
				t.Fatalf("after logout the jar holds %v", got)
			}
		})
	}
}

func TestCookieSessionTamperedOverHTTP(t *testing.T) {
	s := serveCookies(t, kvsession.Config{})
	s.put(t, "/blob", strings.Repeat("x", 6<<10))
	var header []string
	for _, c := range s.jar.Cookies(site) {
		v := c.Value
		if c.Name == "session-1" {
			i := len(v) / 2
			v = v[:i] + string("AB"[(strings.IndexByte("AB", v[i])+1)%2]) + v[i+1:]
		}
		header = append(header, c.Name+"="+v)
	}
	resp, body := s.do(t, "GET", "/counter", strings.Join(header, "; "))
	if resp.StatusCode != 200 || body != "1" {
		t.Fatalf("tampered cookie: %d %q, want a fresh session counting 1", resp.StatusCode, body)
	}
}

func TestReadBufferMustHoldCookieSegments(t *testing.T) {
	b := newCookieBackend(t, kvsession.Config{})
	_, err := kvfasthttp.New(b, kvfasthttp.Options{})
	need := kvfasthttp.RequiredReadBufferSize(b, kvfasthttp.DefaultHeaderRoom)
	if err == nil || !strings.Contains(err.Error(), "Options.ReadBufferSize") || !strings.Contains(err.Error(), strconv.Itoa(need)) {
		t.Fatalf("New with fasthttp's default read buffer: %v; want an error naming the field and %d", err, need)
	}
	if _, err := kvfasthttp.New(b, kvfasthttp.Options{ReadBufferSize: need - 1}); err == nil {
		t.Fatal("a buffer one byte short accepted")
	}
	mw, err := kvfasthttp.New(b, kvfasthttp.Options{ReadBufferSize: need})
	if err != nil {
		t.Fatal(err)
	}
	if got := mw.NewServer(app).ReadBufferSize; got != need {
		t.Fatalf("NewServer ReadBufferSize %d, want %d", got, need)
	}
	// The server-side backend's id cookie fits fasthttp's default.
	s := start(t, kvsession.Config{}, kvfasthttp.Options{})
	if _, body := s.get(t, "/counter"); body != "1" {
		t.Fatalf("server backend with the default buffer: %q", body)
	}
}

// TestFullCookieHeaderIsServed sends the largest Cookie header the default
// configuration allows, besides ordinary browser headers, to a server built
// by NewServer: fasthttp must not answer 431.
func TestFullCookieHeaderIsServed(t *testing.T) {
	b := newCookieBackend(t, kvsession.Config{})
	mw, err := kvfasthttp.New(b, kvfasthttp.Options{ReadBufferSize: kvfasthttp.RequiredReadBufferSize(b, kvfasthttp.DefaultHeaderRoom)})
	if err != nil {
		t.Fatal(err)
	}
	ln := fasthttputil.NewInmemoryListener()
	fs := mw.NewServer(app)
	go fs.Serve(ln)
	t.Cleanup(func() { fs.Shutdown(); ln.Close() })
	var cookies []string
	for i := 0; i < b.Config().MaxCookieSegments; i++ {
		cookies = append(cookies, "session-"+itoa(i)+"="+strings.Repeat("x", kvsession.MaxCookieLineBytes-len("session-0=")))
	}
	req := "GET /counter HTTP/1.1\r\nHost: example.test\r\n" +
		"User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0 Safari/537.36\r\n" +
		"Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\nAccept-Language: en-GB,en;q=0.9\r\n" +
		"Cookie: " + strings.Join(cookies, "; ") + "\r\n\r\n"
	conn, err := ln.Dial()
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

func TestCookieHeaderOverSeveralLines(t *testing.T) {
	s := start(t, kvsession.Config{}, kvfasthttp.Options{})
	s.get(t, "/counter")
	var id string
	for _, c := range s.jar.Cookies(site) {
		if c.Name == "session" {
			id = c.Value
		}
	}
	// Without the jar, so that the request carries exactly our headers.
	client := &http.Client{Transport: s.client.Transport}
	req, _ := http.NewRequest("GET", "http://example.test/counter", nil)
	req.Header["Cookie"] = []string{"theme=dark", "session=" + id}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "2" {
		t.Fatalf("counter %q: the session cookie on a second Cookie line was missed", body)
	}
}
