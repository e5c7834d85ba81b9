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

	// LoadFromHeader starts, in LoadFromRequest's place, the session of a
	// request that carried the Config.IDHeader header, from that
	// header's value: empty if it came empty, and several lines of it
	// joined with ", " (RFC 9110 §5.3), which no id matches. The id is
	// read from the header alone, and the response carries ids in it,
	// never in a cookie (see Config.IDHeader). value is copied: it need
	// not outlive the call; ctx must stay valid until StoreInResponse
	// returns. Adapters call it only when Config().IDHeader is set and
	// the request carries that header.
	LoadFromHeader(ctx context.Context, value []byte) *Session

	// StoreInResponse saves what the request did to the session and
	// writes the cookies the response needs. On error nothing is added to
	// the response and what was stored before is intact.
	StoreInResponse(s *Session, sink ResponseSink) error

	// StoreInResponseStatus is StoreInResponse for a response whose
	// status the adapter knows. With a 5xx status, unless
	// Config.SaveOnServerError, the request's changes are dropped instead:
	// nothing is stored and no cookie (or id header) is set, but the
	// session lock is released and Vary added all the same. What already took
	// effect during the request is not undone: a Destroy on the server
	// backend has deleted the record. A session that failed to load, or
	// whose Destroy failed, is still an error.
	StoreInResponseStatus(s *Session, sink ResponseSink, status int) error

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
// cookies (or the Config.IDHeader header that carries the id in their
// place) and the cache headers that go with them. Each HTTP adapter
// implements it over its framework's response; the backends know no
// framework.
type ResponseSink interface {
	// SetCookie replaces any cookie named name on the response with the
	// complete Set-Cookie header value line. line is only valid during the
	// call: copy it.
	SetCookie(name string, line []byte)
	// AddHeader adds a header, keeping those already present. For Vary
	// it may add nothing when the response already varies on value (a
	// Vary naming it, or "*"): the backends add Vary: Cookie to every
	// response that used the session, and a header the handler set
	// itself should not be repeated.
	AddHeader(name, value string)
	// SetHeader replaces any header named name on the response with
	// value, sent even if empty. value is only valid during the call:
	// copy it. The server backend writes Config.IDHeader with it, in
	// header mode only.
	SetHeader(name string, value []byte)
}

// engine is what differs between the backends behind a Session.
type engine interface {
	// load reads the session from where it is kept, and says what it
	// found (LoadError exactly when it returns an error).
	load(s *Session) (LoadOutcome, error)
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
	// idHeaderNoCache is the Cache-Control value of a response carrying
	// Config.IDHeader (idheader.go), made once.
	idHeaderNoCache string
	// varyOn are the request headers a response that used the session
	// varies on (vary): Cookie, and Config.IDHeader when set.
	varyOn []string
}

func (c *core) init(cfg *compiled, e engine) {
	c.cfg = *cfg
	_, c.fastCodec = cfg.Codec.(Msgpack)
	c.split = sessioncookie.NewSplitter(cfg.CookieName, cfg.MaxCookieSegments)
	c.attrs.Init(sessioncookie.Options{
		Path: cfg.Path, Domain: cfg.Domain, Secure: cfg.Secure, HTTPOnly: !cfg.DisableHTTPOnly,
		SameSite: cfg.SameSite.String(), Partitioned: cfg.Partitioned, Expires: cfg.CookieExpires, MaxAge: cfg.MaxAge,
	})
	c.rand, c.now = rand.Reader, newWallClock().now
	c.varyOn = []string{"Cookie"}
	if cfg.IDHeader != "" {
		c.idHeaderNoCache = idHeaderNoCache(cfg.IDHeader)
		c.varyOn = append(c.varyOn, cfg.IDHeader)
	}
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

// dropsChanges reports whether a response of this status must not save
// the session: a 5xx, unless Config.SaveOnServerError. A handler that
// failed may have changed the session only half way (Django's rule).
func (c *core) dropsChanges(status int) bool {
	return status >= 500 && status <= 599 && !c.cfg.SaveOnServerError
}

// dropChanges ends a request whose changes are not saved: a session the
// request used still shapes its response, so the response varies on the
// headers that carry the id; a failed load or Destroy is still reported.
func (c *core) dropChanges(s *Session, sink ResponseSink) error {
	if !s.loaded {
		return nil
	}
	if s.loadErr != nil {
		return s.loadErr
	}
	if s.failed != nil {
		return s.failed
	}
	c.vary(sink)
	return nil
}

// Release returns s to the backend's pool. s must not be used afterwards.
func (c *core) Release(s *Session) {
	s.reset()
	c.pool.Put(s)
}
