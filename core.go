package kvsession

import (
	"context"
	"crypto/rand"
	"io"
	"sync"
	"time"

	"github.com/kvsession/kvsession/internal/sessioncookie"
)

// Backend is a session backend as an HTTP adapter drives it, once per
// request: LoadFromRequest, the handler, StoreInResponse, Release.
//
// *ServerBackend keeps sessions in a store and only their id in the cookie;
// *CookieBackend keeps them, encrypted, in the cookie itself. Both take
// Config and give handlers the same *Session, so switching is a change of
// constructor, plus Secrets, less the fields of server-side sessions, which
// NewCookie refuses by name (see NewCookie).
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
	// renews reports whether StoreInResponse, run at now, would write the
	// session with a fresh expiry (for Session.Deadline).
	renews(s *Session, now int64) bool
}

// core is what both backends share: the validated configuration, the
// session pool and the cookie writer.
type core struct {
	cfg       compiled
	fastCodec bool // cfg.Codec is Msgpack: typed getters skip the interface
	split     sessioncookie.Splitter
	attrs     sessioncookie.Attributes
	rand      io.Reader
	now       func() time.Time
	pool      sync.Pool
}

func (c *core) init(cfg *compiled, e engine) {
	c.cfg = *cfg
	_, c.fastCodec = cfg.Codec.(Msgpack)
	c.split = sessioncookie.NewSplitter(cfg.CookieName, cfg.MaxCookieSegments)
	c.attrs.Init(sessioncookie.Options{
		Path: cfg.Path, Domain: cfg.Domain, Secure: cfg.Secure, HTTPOnly: !cfg.DisableHTTPOnly,
		SameSite: cfg.SameSite.String(), Partitioned: cfg.Partitioned, MaxAge: cfg.MaxAge,
	})
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
