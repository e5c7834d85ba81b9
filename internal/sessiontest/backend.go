package sessiontest

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/kvsession/kvsession"
)

// secret is the cookie backend's key in the tests.
var secret = bytes.Repeat([]byte{7}, kvsession.SecretBytes)

// NewCookieBackend returns a cookie backend over cfg, sealing with a fixed
// test key in place of cfg.Secrets.
func NewCookieBackend(t testing.TB, cfg kvsession.Config) *kvsession.CookieBackend {
	t.Helper()
	cfg.Secrets = [][]byte{secret}
	b, err := kvsession.NewCookie(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Request runs one request's session work on b directly, without HTTP: it
// loads the session whose id is cookie ("" for none), lets fn use it,
// stores it and returns the session cookie value the response set, or
// cookie if it set none.
func Request(t testing.TB, b kvsession.Backend, cookie string, fn func(s *kvsession.Session)) string {
	t.Helper()
	name := b.Config().CookieName
	var header []byte
	if cookie != "" {
		header = []byte(name + "=" + cookie)
	}
	s := b.LoadFromRequest(context.Background(), header)
	defer b.Release(s)
	fn(s)
	out := &cookieSink{name: name, value: cookie}
	if err := b.StoreInResponse(s, out); err != nil {
		t.Fatal(err)
	}
	return out.value
}

// cookieSink keeps the value of the session cookie a response sets.
type cookieSink struct{ name, value string }

func (c *cookieSink) SetCookie(name string, line []byte) {
	if name != c.name {
		return
	}
	v, _, _ := strings.Cut(strings.TrimPrefix(string(line), name+"="), ";")
	c.value = v
}

func (c *cookieSink) AddHeader(string, string) {}
func (c *cookieSink) SetHeader(string, []byte) {}
