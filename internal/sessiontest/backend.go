package sessiontest

import (
	"bytes"
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
