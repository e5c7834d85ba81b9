package sessioncookie

import (
	"strings"
	"testing"
	"time"
)

var noon = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC).UnixNano()

func TestAttributesInOrder(t *testing.T) {
	var a Attributes
	a.Init(Options{Path: "/app", Domain: "example.com", Secure: true, HTTPOnly: true, SameSite: "Strict", Partitioned: true, Expires: true, MaxAge: time.Hour})
	var maxAgeOnly Attributes
	maxAgeOnly.Init(Options{Path: "/", HTTPOnly: true, SameSite: "Lax", MaxAge: time.Hour})
	for _, tc := range []struct {
		name, got, want string
	}{
		{"persistent", string(a.AppendLive(nil, true, time.Hour, noon)),
			"; Path=/app; Domain=example.com; Max-Age=3600; Expires=Mon, 23 Nov 2026 13:00:00 GMT; Secure; HttpOnly; SameSite=Strict; Partitioned"},
		{"a lifetime of its own, rounded up to the second", string(a.AppendLive(nil, true, 90*time.Minute+time.Millisecond, noon)),
			"; Path=/app; Domain=example.com; Max-Age=5401; Expires=Mon, 23 Nov 2026 13:30:01 GMT; Secure; HttpOnly; SameSite=Strict; Partitioned"},
		{"browser session", string(a.AppendLive(nil, false, time.Hour, noon)),
			"; Path=/app; Domain=example.com; Secure; HttpOnly; SameSite=Strict; Partitioned"},
		{"expired", string(a.AppendExpired(nil)),
			"; Path=/app; Domain=example.com; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Secure; HttpOnly; SameSite=Strict; Partitioned"},
		{"Max-Age alone", string(maxAgeOnly.AppendLive(nil, true, time.Hour, noon)),
			"; Path=/; Max-Age=3600; HttpOnly; SameSite=Lax"},
		{"Max-Age alone, a lifetime of its own", string(maxAgeOnly.AppendLive(nil, true, 90*time.Minute, noon)),
			"; Path=/; Max-Age=5400; HttpOnly; SameSite=Lax"},
		{"Max-Age alone still deletes with both", string(maxAgeOnly.AppendExpired(nil)),
			"; Path=/; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT; HttpOnly; SameSite=Lax"},
	} {
		if tc.got != tc.want {
			t.Errorf("%s:\n got %s\nwant %s", tc.name, tc.got, tc.want)
		}
	}
	var host Attributes
	host.Init(Options{Path: "/", SameSite: "Lax"})
	if got := string(host.AppendExpired(nil)); strings.Contains(got, "Domain") || strings.Contains(got, "Secure") || strings.Contains(got, "HttpOnly") {
		t.Errorf("attributes that were not asked for: %s", got)
	}
}

// TestExpiresFollowsTheClock: the cached Expires date is for one second
// only; the next second gets its own.
func TestExpiresFollowsTheClock(t *testing.T) {
	var a Attributes
	a.Init(Options{Path: "/", SameSite: "Lax", Expires: true, MaxAge: time.Hour})
	for _, now := range []int64{noon, noon + int64(time.Second) - 1, noon + int64(time.Second), noon + int64(time.Minute)} {
		want := time.Unix(0, now).Truncate(time.Second).Add(time.Hour).UTC().Format("Mon, 02 Jan 2006 15:04:05 GMT")
		if got := string(a.AppendLive(nil, true, time.Hour, now)); !strings.Contains(got, "; Expires="+want+";") {
			t.Errorf("at %v: %s, want Expires=%s", time.Unix(0, now).UTC(), got, want)
		}
	}
}
