package kvsession

import (
	"time"

	"github.com/kvsession/kvsession/internal/sessioncookie"
)

// When the server backend resends a cookie whose id has not changed.
//
// Every write of a session moves its record's expiry in the store; it
// used to resend the session cookie too, so that the cookie's expiry moved
// with it: some 140 bytes of Set-Cookie and Cache-Control on every
// response that wrote, for a value the client already holds. The record
// now keeps what the cookie it last sent says (cookieExp: its expiry in
// unix seconds, or -1 for a browser-session cookie), and a write resends
// the cookie only when that would change by at least a hundredth of the
// cookie's lifetime (refreshStep), or when the cookie must change anyway:
// a new id (a new session, RenewID, a rotation, a rotated-out id led to
// the new one), a lifetime the handler changed (SetMaxAge,
// SetBrowserSession), or cookies the request carried that need mending
// (segments, a duplicate). A store TTL moves with every write, as before.
//
// The bound: the cookie a client holds expires at most a hundredth of its
// lifetime before or after the record it names (about 3.4 hours of the
// default 14 days; 18 seconds of a 30-minute IdleTimeout): a session can
// end that much sooner for the client than its record does, never later
// than its deadlines for the server, which checks them on every load. A
// response that carried a refreshed cookie but never reached its client
// (a dropped connection) leaves the client's older cookie in place until
// the next refresh is due: the same bound, counted from that cookie. The
// bound counts on the server's clock, which both ends are measured by: a
// clock that steps back by d after sending a cookie (or servers sharing a
// store whose clocks differ by d) can take that cookie for d longer-lived
// than it is, and let it expire up to d more before its record.

// refreshStep is how far a cookie's expiry must move before a write
// resends it: a hundredth of its lifetime (ttl), at least a second.
func refreshStep(ttl time.Duration) int64 {
	return max(int64(ttl/time.Second)/100, 1)
}

// maxCookieExpiry bounds what decode takes for a cookie expiry in unix
// seconds (year 2100); a larger value is the retired field's unix ns.
const maxCookieExpiry = 4102444800

// cookieExpiry is what the cookie a response sends at now for s says: its
// expiry in unix seconds (Max-Age is ttl rounded up), or -1 for a
// browser-session cookie.
func (b *ServerBackend) cookieExpiry(s *Session, now int64, ttl time.Duration) int64 {
	if b.lifetimeOf(s) != cookiePersistent {
		return -1
	}
	return now/int64(time.Second) + int64((ttl+time.Second-1)/time.Second)
}

// planCookie decides whether the response writing s at now must carry the
// session cookie, given whether the write changes s's id, and records the
// cookie it will send in s (cookieExp), which the save then keeps. A
// request in header mode answers by its own rule (idheader.go).
func (b *ServerBackend) planCookie(s *Session, now int64, newID bool) bool {
	if s.viaHeader {
		return true
	}
	ttl := b.ttl(s, now) // what the save gives the record, and so the cookie
	exp := b.cookieExpiry(s, now, ttl)
	send := newID || s.forwarded || !s.exists || s.oldKey != "" || s.lifetimeSet ||
		s.cookieErr != nil || s.carried != (sessioncookie.Carried{Bare: true}) ||
		s.cookieExp == 0 || (exp < 0) != (s.cookieExp < 0) ||
		(exp >= 0 && abs(exp-s.cookieExp) >= refreshStep(ttl))
	if send {
		s.cookieExp = exp
	}
	return send
}

func abs(x int64) int64 {
	if x < 0 {
		return -x
	}
	return x
}
