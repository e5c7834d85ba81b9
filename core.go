package kvsession

import (
	"context"
	"crypto/rand"
	"io"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Backend is a session backend as an HTTP adapter drives it, once per
// request: LoadFromRequest, the handler, StoreInResponse, Release.
//
// *ServerBackend keeps sessions in a store and only their id in the cookie;
// *CookieBackend keeps them, encrypted, in the cookie itself. Both take the
// same Config and give handlers the same *Session, so switching is a change
// of constructor.
type Backend interface {
	// LoadFromRequest starts the session of one request from its Cookie
	// header value (nil when it had none). The header and the session are
	// read on first use: both ctx, which bounds the store calls the session
	// makes, and cookieHeader must stay valid and unchanged until
	// StoreInResponse returns.
	LoadFromRequest(ctx context.Context, cookieHeader []byte) *Session

	// StoreInResponse saves what the request did to the session and
	// writes the cookies the response needs. On error nothing is added to
	// the response and what was stored before is intact.
	StoreInResponse(s *Session, sink ResponseSink) error

	// Release returns s to the backend. s must not be used afterwards.
	Release(s *Session)

	// Excluded reports whether a request path matches Config.Exclude.
	Excluded(path []byte) bool

	// Config returns the configuration in effect, defaults applied, with
	// Secrets left out.
	Config() Config

	// MaxCookieHeaderBytes bounds how much of a request's Cookie header
	// the session's cookies can take, so that an adapter can check that
	// its server reads request headers that large.
	MaxCookieHeaderBytes() int
}

// ResponseSink is where a backend writes what a response needs: the session
// cookies and the cache headers that go with them. Each HTTP adapter
// implements it over its framework's response; the backends know no
// framework.
type ResponseSink interface {
	// SetCookie replaces any cookie named name on the response with the
	// complete Set-Cookie header value line. line is only valid during the
	// call: copy it.
	SetCookie(name string, line []byte)
	// AddHeader adds a header, keeping those already present.
	AddHeader(name, value string)
}

// engine is what differs between the backends behind a Session.
type engine interface {
	// load reads the session from where it is kept.
	load(s *Session) error
	// discard forgets the stored session now, for Session.Destroy.
	discard(s *Session) error
	// renewID gives the session a new identity, for Session.RenewID.
	renewID(s *Session) error
	// id returns the session id, "" if it has none.
	id(s *Session) string
}

// core is what both backends share: the validated configuration, the
// session pool and the cookie writer.
type core struct {
	cfg       compiled
	fastCodec bool // cfg.Codec is Msgpack: typed getters skip the interface
	maxAge    string
	split     cookieSplitter
	rand      io.Reader
	now       func() time.Time
	pool      sync.Pool
	expires   atomic.Pointer[expiresCache]
}

func (c *core) init(cfg *compiled, e engine) {
	c.cfg = *cfg
	_, c.fastCodec = cfg.Codec.(Msgpack)
	c.maxAge = strconv.FormatInt(int64((cfg.MaxAge+time.Second-1)/time.Second), 10)
	c.split = newCookieSplitter(cfg.CookieName, cfg.MaxCookieSegments)
	c.rand, c.now = rand.Reader, newWallClock().now
	c.pool.New = func() any { return &Session{c: c, e: e} }
}

// Config returns the configuration in effect, defaults applied, without
// Secrets, so that logging it leaks no key.
func (c *core) Config() Config {
	cfg := c.cfg.Config
	cfg.Secrets = nil
	return cfg
}

// CookieName returns the name of the session cookie (segments add "-<n>").
func (c *core) CookieName() string { return c.cfg.CookieName }

// Excluded reports whether a request path matches one of Config.Exclude.
func (c *core) Excluded(path []byte) bool {
	for _, re := range c.cfg.exclude {
		if re.Match(path) {
			return true
		}
	}
	return false
}

// open takes a session from the pool for one request. The Cookie header is
// read when the session is first used, so that a handler that never uses
// it does not pay for parsing; it is the request's own header, which lives
// as long as the request.
func (c *core) open(ctx context.Context, cookieHeader []byte) *Session {
	s := c.pool.Get().(*Session)
	s.ctx, s.header = ctx, cookieHeader
	return s
}

// Release returns s to the backend's pool. s must not be used afterwards.
func (c *core) Release(s *Session) {
	s.reset()
	c.pool.Put(s)
}

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
// more than Config.MaxCookieSegments cookies.
func (c *core) setCookie(s *Session, sink ResponseSink, value []byte, lifetime cookieLifetime, ttl time.Duration) error {
	s.attrs = c.appendAttrs(s.attrs[:0], lifetime, ttl, s.nowNano())
	attrs := s.attrs
	n := c.split.count(len(value), len(attrs))
	if n == 0 {
		return &CookieTooLargeError{Bytes: len(value), MaxSegments: c.cfg.MaxCookieSegments}
	}
	if c.split.expiresAny(n, s.carried) {
		s.attrs = c.appendExpiredAttrs(s.attrs)
	}
	s.line = c.split.write(sink, s.line, value, n, attrs, s.attrs[len(attrs):], s.carried)
	addCacheHeaders(sink)
	return nil
}

// expireCookies expires every cookie of the session's name the request
// carried; it writes nothing if there were none, or if they were broken.
// Broken cookies are left alone until the session is written: when the
// name came twice, one of the two may be another site's on a parent domain
// or path, and expiring ours would only make matters worse.
func (c *core) expireCookies(s *Session, sink ResponseSink) {
	if !s.carried.any() || s.cookieErr != nil {
		return
	}
	s.attrs = c.appendExpiredAttrs(s.attrs[:0])
	s.line = c.split.expire(sink, s.line, s.attrs, s.carried)
	addCacheHeaders(sink)
}

// addCacheHeaders keeps shared caches from storing a response that sets
// one client's session cookie and replaying it to another.
func addCacheHeaders(sink ResponseSink) {
	sink.AddHeader("Vary", "Cookie")
	sink.AddHeader("Cache-Control", `no-cache="Set-Cookie"`)
}

// appendAttrs appends the attributes of a live session cookie, from "; Path".
// A persistent cookie lives ttl from now (unix nanoseconds).
func (c *core) appendAttrs(l []byte, lifetime cookieLifetime, ttl time.Duration, now int64) []byte {
	l = c.appendScope(l)
	if lifetime == cookiePersistent {
		l = append(l, "; Max-Age="...)
		if ttl == c.cfg.MaxAge {
			l = append(l, c.maxAge...)
			l = append(l, "; Expires="...)
			l = append(l, c.expiresAt(now)...)
		} else {
			secs := int64((ttl + time.Second - 1) / time.Second)
			l = strconv.AppendInt(l, secs, 10)
			l = append(l, "; Expires="...)
			l = time.Unix(now/int64(time.Second)+secs, 0).UTC().AppendFormat(l, http.TimeFormat)
		}
	}
	return c.appendFlags(l)
}

// appendExpiredAttrs appends the attributes that delete a cookie: the same
// scope, so it is the same cookie to the browser, and a past expiry.
func (c *core) appendExpiredAttrs(l []byte) []byte {
	l = c.appendScope(l)
	l = append(l, "; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT"...)
	return c.appendFlags(l)
}

func (c *core) appendScope(l []byte) []byte {
	l = append(l, "; Path="...)
	l = append(l, c.cfg.Path...)
	if c.cfg.Domain != "" {
		l = append(l, "; Domain="...)
		l = append(l, c.cfg.Domain...)
	}
	return l
}

func (c *core) appendFlags(l []byte) []byte {
	if c.cfg.Secure {
		l = append(l, "; Secure"...)
	}
	if !c.cfg.DisableHTTPOnly {
		l = append(l, "; HttpOnly"...)
	}
	l = append(l, "; SameSite="...)
	l = append(l, c.cfg.SameSite.String()...)
	if c.cfg.Partitioned {
		l = append(l, "; Partitioned"...)
	}
	return l
}

// expiresCache holds the Expires date for cookies set during one second, so
// the date is formatted once a second rather than once a response.
type expiresCache struct {
	unix int64
	text []byte
}

func (c *core) expiresAt(nowNano int64) []byte {
	now := nowNano / int64(time.Second)
	if e := c.expires.Load(); e != nil && e.unix == now {
		return e.text
	}
	at := time.Unix(now, 0).Add(c.cfg.MaxAge).UTC()
	e := &expiresCache{unix: now, text: at.AppendFormat(nil, http.TimeFormat)}
	c.expires.Store(e)
	return e.text
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
