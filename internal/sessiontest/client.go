// Package sessiontest is test support shared by the test packages that
// drive sessions over HTTP (e2e, examples/playground, kvfasthttp): a
// cookie-keeping client for the playground's routes, the responses it
// reads, and a cookie backend with a fixed key. Test files cannot be
// imported across packages, so what two or more of them use lives here,
// once. Only _test.go files import it; production code never does.
package sessiontest

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"testing"
	"time"
)

// Response is one HTTP response, its body read in full.
type Response struct {
	Status int
	Header http.Header
	Body   string
	// The session cookie it set: its value, "" if it set none, and
	// whether it expired the cookie instead.
	Cookie  string
	Expired bool
}

// Held returns the session id a client holding held has after r: the one
// r set, or held if r set none, as a browser keeps its cookie. The server
// backend resends an unchanged id only when the cookie's expiry is due to
// move (cookierefresh.go), so "no cookie" means "keep the one you have";
// an expired cookie means none is held ("").
func (r Response) Held(held string) string {
	switch {
	case r.Expired:
		return ""
	case r.Cookie != "":
		return r.Cookie
	}
	return held
}

// SetCookies returns the raw Set-Cookie lines, so attributes are checked as
// sent rather than as net/http parsed them.
func (r Response) SetCookies() []string { return r.Header.Values("Set-Cookie") }

// Cookies returns the cookies the response set, parsed as net/http's
// client parses them.
func (r Response) Cookies() []*http.Cookie { return (&http.Response{Header: r.Header}).Cookies() }

// Send sends one request through hc, with cookies added to whatever its
// jar adds, and reads the response in full. It does not fail the test: a
// request may be meant to fail, and Send may run on any goroutine.
func Send(hc *http.Client, method, url, body string, cookies ...*http.Cookie) (Response, error) {
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		return Response{}, err
	}
	for _, ck := range cookies {
		req.AddCookie(ck)
	}
	return SendRequest(hc, req)
}

// SendRequest sends req through hc and reads the response in full, as
// Send does, for a request Send cannot make (one with headers of its own).
func SendRequest(hc *http.Client, req *http.Request) (Response, error) {
	resp, err := hc.Do(req)
	if err != nil {
		return Response{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return Response{}, fmt.Errorf("%s %s: reading body: %w", req.Method, req.URL, err)
	}
	r := Response{Status: resp.StatusCode, Header: resp.Header, Body: string(b)}
	for _, ck := range r.Cookies() {
		if ck.Name != "session" {
			continue
		}
		if ck.MaxAge < 0 || ck.Value == "" {
			r.Expired = true
		} else {
			r.Cookie = ck.Value
		}
	}
	return r, nil
}

// Client is a cookie-keeping HTTP client, like a browser. Its methods fail
// the test it was made for, so call them on that test's goroutine.
type Client struct {
	t testing.TB
	// Base is http://host:port. The jar keys cookies by host, not port, so
	// a test may point Base at a restarted server and keep the cookies.
	Base string
	HTTP *http.Client
}

// NewClient returns a Client of base with an empty jar.
func NewClient(t testing.TB, base string) *Client {
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &Client{t: t, Base: base, HTTP: &http.Client{Jar: jar, Timeout: 5 * time.Second}}
}

// Do sends method path with body, and cookies besides the jar's.
func (c *Client) Do(method, path, body string, cookies ...*http.Cookie) Response {
	c.t.Helper()
	r, err := Send(c.HTTP, method, c.Base+path, body, cookies...)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	return r
}

// Expect checks status and body of method path.
func (c *Client) Expect(method, path, reqBody string, status int, body string) Response {
	c.t.Helper()
	r := c.Do(method, path, reqBody)
	if r.Status != status || r.Body != body {
		c.t.Errorf("%s %s = %d %q, want %d %q", method, path, r.Status, r.Body, status, body)
	}
	return r
}

// SessionJSON fetches the playground's GET /session and decodes it.
func (c *Client) SessionJSON() map[string]any {
	c.t.Helper()
	r := c.Do("GET", "/session", "")
	if r.Status != http.StatusOK {
		c.t.Fatalf("GET /session = %d %q", r.Status, r.Body)
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/json" {
		c.t.Errorf("GET /session Content-Type = %q, want application/json", ct)
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(r.Body), &m); err != nil {
		c.t.Fatalf("GET /session body %q: %v", r.Body, err)
	}
	return m
}

// Login logs c in as user, with the playground's POST /login.
func (c *Client) Login(user string) {
	c.t.Helper()
	c.Expect("POST", "/login?user="+user, "", 204, "")
}

// SessionCookie returns the session cookie the jar holds, or nil.
func (c *Client) SessionCookie() *http.Cookie {
	c.t.Helper()
	for _, ck := range c.Cookies() {
		if ck.Name == "session" {
			return ck
		}
	}
	return nil
}

// Cookies returns the cookies the jar would send.
func (c *Client) Cookies() []*http.Cookie {
	c.t.Helper()
	u, err := url.Parse(c.Base + "/")
	if err != nil {
		c.t.Fatal(err)
	}
	return c.HTTP.Jar.Cookies(u)
}
