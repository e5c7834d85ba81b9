package sessiontest

import (
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// HeaderClient is a client without cookies (a mobile app, a CLI) that
// carries its session id in a request header, as kvsession.Config.IDHeader
// lets it: it sends "new" until a response gives it an id, keeps the id
// each response gives, keeps what it has when a response says nothing,
// and forgets it when a response gives the header empty. Its methods fail
// the test it was made for, so call them on that test's goroutine.
type HeaderClient struct {
	t      testing.TB
	Base   string
	HTTP   *http.Client // no jar: the client keeps no cookies
	Header string       // the id header's name, as configured
	ID     string       // the id it holds; "" for none
}

// NewHeaderClient returns a HeaderClient of base, holding no id, that
// carries it in header.
func NewHeaderClient(t testing.TB, base, header string) *HeaderClient {
	return &HeaderClient{t: t, Base: base, Header: header, HTTP: &http.Client{Timeout: 5 * time.Second}}
}

// Do sends method path with the id it holds ("new" if none) and takes the
// id the response gives, if any.
func (c *HeaderClient) Do(method, path string) Response {
	c.t.Helper()
	sent := c.ID
	if sent == "" {
		sent = "new"
	}
	r := c.Send(method, path, sent)
	if v, ok := IDHeader(r, c.Header); ok {
		c.ID = v
	}
	return r
}

// Send sends method path with the id header's value set to each of values
// (one line each; none: no header at all), whatever the client holds, and
// returns the response without taking anything from it.
func (c *HeaderClient) Send(method, path string, values ...string) Response {
	c.t.Helper()
	req, err := http.NewRequest(method, c.Base+path, nil)
	if err != nil {
		c.t.Fatal(err)
	}
	if len(values) > 0 {
		// As configured, not canonicalized: servers match names in any case.
		req.Header[c.Header] = values
	}
	r, err := SendRequest(c.HTTP, req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	if v := r.Header.Values(c.Header); len(v) > 1 {
		c.t.Errorf("%s %s: the response carries %s %d times: %q", method, path, c.Header, len(v), v)
	}
	return r
}

// IDHeader returns the id header the response carried, and whether it
// carried one (an empty one tells the client to forget its id).
func IDHeader(r Response, header string) (string, bool) {
	v := r.Header.Values(header)
	if len(v) == 0 {
		return "", false
	}
	return v[0], true
}

// CheckIDHeader runs the protocol of kvsession.Config.IDHeader, as the
// clients of base meet it, against an app behind a middleware over a
// server backend whose IDHeader is header. The app answers the routes the
// adapters' tests share: GET /counter increments "n" and answers it, GET
// /read answers n, GET /logout destroys the session, POST /renew gives
// it a new id. transport carries the requests (nil: the default).
func CheckIDHeader(t *testing.T, base string, transport http.RoundTripper, header string) {
	t.Helper()
	newClient := func() *HeaderClient {
		c := NewHeaderClient(t, base, header)
		if transport != nil {
			c.HTTP.Transport = transport
		}
		return c
	}
	// expect checks a header-mode answer: its body, no cookie ever, Vary on
	// both carriers, and the id header: want is "<fresh>" for a new id
	// (not any of old), "<none>" for no header, or its value.
	expect := func(what string, r Response, body, want string, old ...string) {
		t.Helper()
		if r.Status != http.StatusOK || r.Body != body {
			t.Errorf("%s: %d %q, want 200 %q", what, r.Status, r.Body, body)
		}
		if sc := r.SetCookies(); len(sc) != 0 {
			t.Errorf("%s: a header client got Set-Cookie %q", what, sc)
		}
		if vary := varies(r); !slices.Contains(vary, "cookie") || !slices.Contains(vary, strings.ToLower(header)) {
			t.Errorf("%s: Vary %q, want Cookie and %s", what, r.Header.Values("Vary"), header)
		}
		got, ok := IDHeader(r, header)
		switch want {
		case "<none>":
			if ok {
				t.Errorf("%s: answered %s %q, want no header", what, header, got)
			}
		case "<fresh>":
			if !ok || !wellFormedID(got) || slices.Contains(old, got) {
				t.Errorf("%s: answered %s %q (present: %v), want a fresh id", what, header, got, ok)
			}
		default:
			if !ok || got != want {
				t.Errorf("%s: answered %s %q (present: %v), want %q", what, header, got, ok, want)
			}
		}
		if ok {
			if cc := r.Header.Get("Cache-Control"); cc != `no-cache="`+header+`"` && cc != `no-cache="`+http.CanonicalHeaderKey(header)+`"` {
				t.Errorf("%s: Cache-Control %q with the id header", what, cc)
			}
		}
	}

	// A new client: an id once it has a session, then nothing while it
	// keeps it, whatever the requests do with the session.
	c := newClient()
	expect("first request", c.Do("GET", "/counter"), "1", "<fresh>")
	first := c.ID
	expect("second request", c.Do("GET", "/counter"), "2", "<none>")
	expect("read", c.Do("GET", "/read"), "2", "<none>")

	// RenewID: a new id, the session kept; the old id leads nowhere.
	expect("renew", c.Do("POST", "/renew"), "", "<fresh>", first)
	renewed := c.ID
	expect("after renew", c.Do("GET", "/counter"), "3", "<none>")
	expect("the renewed-out id", c.Send("GET", "/read", first), "0", "")

	// Destroy: the header empty, the client forgets; its next session is
	// a new one under a new id.
	expect("logout", c.Do("GET", "/logout"), "", "")
	if c.ID != "" {
		t.Fatalf("the client kept %q after the logout", c.ID)
	}
	expect("the destroyed id", c.Send("GET", "/read", renewed), "0", "")
	expect("after logout", c.Do("GET", "/counter"), "1", "<fresh>", first, renewed)

	// An id the client makes up is never adopted: its session gets one the
	// server draws, and the made-up one leads nowhere after.
	chosen := strings.Repeat("A", 43)
	expect("a client-chosen id", c.Send("GET", "/counter", chosen), "1", "<fresh>", chosen)
	expect("the client-chosen id again", c.Send("GET", "/read", chosen), "0", "")
	for name, v := range map[string]string{"malformed": "!" + chosen[1:], "short": "abc", "long": strings.Repeat("A", 2000)} {
		expect(name+" id", c.Send("GET", "/counter", v), "1", "<fresh>", v)
	}
	// Two lines of the header, both the live id: neither is taken.
	expect("the header twice", c.Send("GET", "/read", c.ID, c.ID), "0", "")
	// The header present but empty: header mode, a fresh session.
	expect("the header empty", c.Send("GET", "/counter", ""), "1", "<fresh>", c.ID)

	// The query string is never read: not by a header client, and not by
	// a request without the header, which is served by cookie.
	live := c.ID
	q := "?" + url.Values{header: {live}, "session": {live}, "session_id": {live}, "sid": {live}}.Encode()
	expect("an id in the query, header new", c.Send("GET", "/counter"+q, "new"), "1", "<fresh>", live)
	bare, err := Send(&http.Client{Transport: transport, Timeout: 5 * time.Second}, "GET", base+"/counter"+q, "")
	if err != nil {
		t.Fatal(err)
	}
	if bare.Body != "1" || bare.Cookie == "" || bare.Cookie == live {
		t.Errorf("an id in the query, no header: %q, cookie %q; want a fresh session by cookie", bare.Body, bare.Cookie)
	}
	if v, ok := IDHeader(bare, header); ok {
		t.Errorf("a request without the header was answered %s %q", header, v)
	}

	// A browser: cookies as ever, and never its id in a header. Its cookie
	// is ignored by a request that carries the header.
	b := NewClient(t, base)
	if transport != nil {
		b.HTTP.Transport = transport
	}
	for want := 1; want <= 2; want++ {
		r := b.Do("GET", "/counter", "")
		if r.Body != strconv.Itoa(want) {
			t.Fatalf("browser: %q, want %d", r.Body, want)
		}
		if v, ok := IDHeader(r, header); ok {
			t.Errorf("browser: answered %s %q: a cookie's id must never reach a header page script can read", header, v)
		}
		if vary := varies(r); !slices.Contains(vary, "cookie") || !slices.Contains(vary, strings.ToLower(header)) {
			t.Errorf("browser: Vary %q, want Cookie and %s", r.Header.Values("Vary"), header)
		}
	}
	req, err := http.NewRequest("GET", base+"/counter", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header[header] = []string{"new"}
	mixed, err := SendRequest(b.HTTP, req) // the jar adds the browser's cookie
	if err != nil {
		t.Fatal(err)
	}
	expect("the header beside a session cookie", mixed, "1", "<fresh>")
	b.Expect("GET", "/read", "", http.StatusOK, "2")
}

// varies returns the response's Vary items, lower-cased.
func varies(r Response) []string {
	var out []string
	for _, v := range r.Header.Values("Vary") {
		for item := range strings.SplitSeq(v, ",") {
			out = append(out, strings.ToLower(strings.TrimSpace(item)))
		}
	}
	return out
}

// wellFormedID reports whether v looks like an id the server backend
// draws by default: 32 bytes in unpadded URL-safe base64.
func wellFormedID(v string) bool {
	if len(v) != 43 {
		return false
	}
	for _, r := range v {
		if !strings.ContainsRune("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_", r) {
			return false
		}
	}
	return true
}
