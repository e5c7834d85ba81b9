package kvsession

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestConfigValidate(t *testing.T) {
	cases := []struct {
		name  string
		cfg   Config
		field string // "" when valid
	}{
		{"zero value", Config{}, ""},
		{"none with secure", Config{SameSite: SameSiteNone, Secure: true}, ""},
		{"minimum id bytes", Config{SessionIDBytes: 16}, ""},
		{"none without secure", Config{SameSite: SameSiteNone}, "SameSite"},
		{"unknown samesite", Config{SameSite: 9}, "SameSite"},
		{"id bytes below 16", Config{SessionIDBytes: 15}, "SessionIDBytes"},
		{"negative id bytes", Config{SessionIDBytes: -1}, "SessionIDBytes"},
		{"huge id bytes", Config{SessionIDBytes: 4096}, "SessionIDBytes"},
		{"sub-second max age", Config{MaxAge: time.Millisecond}, "MaxAge"},
		{"negative max age", Config{MaxAge: -time.Hour}, "MaxAge"},
		{"max age beyond what browsers keep", Config{MaxAge: MaxMaxAge + time.Second}, "MaxAge"},
		{"long path", Config{Path: "/" + strings.Repeat("p", 1024)}, "Path"},
		{"long domain", Config{Domain: strings.Repeat("d", 1025)}, "Domain"},
		{"long key", Config{CookieName: strings.Repeat("k", 257)}, "CookieName"},
		{"no segments", Config{MaxCookieSegments: -1}, "MaxCookieSegments"},
		{"short secret", Config{Secrets: [][]byte{make([]byte, 16)}}, "Secrets[0]"},
		{"cookie name with space", Config{CookieName: "my session"}, "CookieName"},
		{"cookie name with =", Config{CookieName: "a=b"}, "CookieName"},
		{"relative path", Config{Path: "app"}, "Path"},
		{"path with ;", Config{Path: "/a;b"}, "Path"},
		{"domain with CRLF", Config{Domain: "a.com\r\nX: y"}, "Domain"},
		{"path with a tab", Config{Path: "/a\tb"}, "Path"},
		{"domain with DEL", Config{Domain: "a.com\x7f"}, "Domain"},
		{"bad exclude pattern", Config{Exclude: []string{"^/ok", "("}}, "Exclude[1]"},
		{"negative record cap", Config{MaxRecordBytes: -1}, "MaxRecordBytes"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			if tc.field == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			var ce *ConfigError
			if !errors.As(err, &ce) || ce.Field != tc.field {
				t.Fatalf("err = %v, want a ConfigError for %s", err, tc.field)
			}
			if !strings.Contains(err.Error(), "Config."+tc.field) {
				t.Fatalf("message %q does not name the field", err)
			}
		})
	}
}

func TestConfigDefaults(t *testing.T) {
	b := newBackend(t, Config{}, newFakeStore())
	got := b.Config()
	if got.CookieName != "session" || got.MaxAge != 14*24*time.Hour || got.Path != "/" ||
		got.SessionIDBytes != 32 || got.Store != "sessions" || got.SameSite != SameSiteLax ||
		got.DisableHTTPOnly || got.Secure || got.ExtendOnAccess || got.MaxRecordBytes != 1<<20 {
		t.Fatalf("defaults: %+v", got)
	}
	if _, ok := got.Codec.(Msgpack); !ok {
		t.Fatalf("default codec %T", got.Codec)
	}
}

func TestExclude(t *testing.T) {
	b := newBackend(t, Config{Exclude: []string{"^/static/", `\.ico$`}}, newFakeStore())
	for path, want := range map[string]bool{
		"/static/app.js": true,
		"/favicon.ico":   true,
		"/":              false,
		"/api/static/x":  false,
	} {
		if got := b.Excluded([]byte(path)); got != want {
			t.Errorf("Excluded(%q) = %v, want %v", path, got, want)
		}
	}
}
