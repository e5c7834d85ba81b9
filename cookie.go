package kvsession

import (
	"strconv"
	"time"

	"github.com/kvsession/kvsession/internal/sessioncookie"
)

// MaxCookieLineBytes is the largest Set-Cookie line the session cookies
// use: 4096 bytes, name, value and attributes together, which is what RFC
// 6265 §6.1 asks browsers to keep. A larger value is split over several
// cookies (Config.MaxCookieSegments).
const MaxCookieLineBytes = sessioncookie.MaxLineBytes

type cookieLifetime uint8

const (
	cookiePersistent     cookieLifetime = iota // Max-Age and Expires of Config.MaxAge
	cookieBrowserSession                       // neither: gone when the browser closes
)

func (c *core) lifetime() cookieLifetime {
	if c.cfg.BrowserSession {
		return cookieBrowserSession
	}
	return cookiePersistent
}

// setCookie writes value as the session cookie, split if it must be, and
// expires every other cookie of the session's name the request carried. It
// returns a *CookieTooLargeError, writing nothing, if the value would need
// more than Config.MaxCookieSegments cookies. A request in header mode
// gets the id in Config.IDHeader instead (writeIDHeader), and no cookie.
func (c *core) setCookie(s *Session, sink ResponseSink, value []byte, lifetime cookieLifetime, ttl time.Duration) error {
	if s.viaHeader {
		c.writeIDHeader(s, sink, value)
		return nil
	}
	s.attrs = c.attrs.AppendLive(s.attrs[:0], lifetime == cookiePersistent, ttl, s.nowNano())
	attrs := s.attrs
	n := c.split.Count(len(value), len(attrs))
	if n == 0 {
		return &CookieTooLargeError{Bytes: len(value), MaxSegments: c.cfg.MaxCookieSegments}
	}
	if c.split.ExpiresAny(n, s.carried) {
		s.attrs = c.attrs.AppendExpired(s.attrs)
	}
	s.line = c.split.Write(sink, s.line, value, n, attrs, s.attrs[len(attrs):], s.carried)
	addCacheHeaders(sink)
	return nil
}

// expireCookies expires every cookie of the session's name the request
// carried; it writes nothing if there were none, or if they were broken.
// Broken cookies are left alone until the session is written: when the
// name came twice, one of the two may be another site's on a parent domain
// or path, and expiring ours would only make matters worse. A request in
// header mode is told to forget its id instead (forgetIDHeader), and its
// cookies are left alone.
func (c *core) expireCookies(s *Session, sink ResponseSink) {
	if s.viaHeader {
		c.forgetIDHeader(s, sink)
		return
	}
	if !s.carried.Any() || s.cookieErr != nil {
		return
	}
	s.attrs = c.attrs.AppendExpired(s.attrs[:0])
	s.line = c.split.Expire(sink, s.line, s.attrs, s.carried)
	addCacheHeaders(sink)
}

// addCacheHeaders keeps shared caches from storing a response that sets
// one client's session cookie and replaying it to another. Vary: Cookie
// is added by StoreInResponse (vary) for every response that used the
// session, these among them.
func addCacheHeaders(sink ResponseSink) {
	sink.AddHeader("Cache-Control", `no-cache="Set-Cookie"`)
}

// vary marks a response that used the session, even only to read it, as
// depending on the request's Cookie header: a shared cache must not serve
// one user's page to another. With Config.IDHeader set it depends on that
// header too, in either mode: a request with it is served from it, one
// without it from the cookie. A response that never touched the session
// gets nothing, and stays cacheable for everyone.
//
// The names are a list made once (core.init), walked with one call site,
// so that vary stays small enough to inline, as varyOnCookie was before
// IDHeader: it runs on every request that uses the session.
func (c *core) vary(sink ResponseSink) {
	for _, name := range c.varyOn {
		sink.AddHeader("Vary", name)
	}
}

// CookieTooLargeError is returned when saving a session whose cookie would
// need more than Config.MaxCookieSegments cookies. Nothing is written: the
// browser keeps the cookies it had. errors.Is(err, ErrSessionTooLarge)
// holds.
type CookieTooLargeError struct {
	Bytes       int // length of the encoded cookie value
	MaxSegments int
}

func (e *CookieTooLargeError) Error() string {
	return "kvsession: session cookie of " + strconv.Itoa(e.Bytes) + " bytes needs more than Config.MaxCookieSegments (" +
		strconv.Itoa(e.MaxSegments) + ") cookies of 4096 bytes"
}

func (e *CookieTooLargeError) Is(target error) bool { return target == ErrSessionTooLarge }
