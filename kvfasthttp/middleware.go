// Package kvfasthttp connects kvsession to github.com/valyala/fasthttp.
//
// Wrap a handler with a Middleware; inside it, Session(ctx) returns the
// request's session:
//
//	mw, err := kvfasthttp.New(backend, kvfasthttp.Options{})
//	...
//	server := mw.NewServer(app)
//
//	func app(ctx *fasthttp.RequestCtx) {
//		sess := kvfasthttp.Session(ctx)
//		n, _ := sess.GetInt("visits")
//		sess.Set("visits", n+1)
//	}
//
// Several sessions per request: two middlewares over backends with
// different Config.CookieName values (a long-lived "prefs" session beside
// the "session" login session, say) can wrap the same handler, and each
// keeps its own session. The method m.Session(ctx) returns the session of
// middleware m; the function Session(ctx) returns the innermost one's, the
// session of the last middleware the request passed that gave it one:
//
//	login, _ := kvfasthttp.New(loginBackend, kvfasthttp.Options{})
//	prefs, _ := kvfasthttp.New(prefsBackend, kvfasthttp.Options{})
//	server := login.NewServer(prefs.Handler(app))
//
//	func app(ctx *fasthttp.RequestCtx) {
//		user, _ := login.Session(ctx).GetString("user")
//		prefs.Session(ctx).Set("theme", "dark")
//	}
//
// Each middleware saves its own session and adds its own Set-Cookie line.
// m.Session is nil where m skipped or excluded the request.
//
// The session is loaded on first use and saved after the handler returns,
// unless the handler answered with a 5xx status (see
// kvsession.Config.SaveOnServerError). A store failure (or a session too
// large to save) replaces the handler's response with the error handler's.
// A response whose handler used the session carries Vary: Cookie.
//
// Clients without cookies (mobile apps, CLIs) can carry the session id in
// a header instead, with kvsession.Config.IDHeader set: a request that
// carries that header, with any value ("new" for a client without an id
// yet), is served from it, and its response carries a new or changed id
// in the same header, never a cookie; an empty one tells the client to
// forget its id. Requests without it are served by cookie as before. The
// query string is never read. See Config.IDHeader for the protocol.
//
// Request header size: fasthttp reads a request's whole header into its
// read buffer (Server.ReadBufferSize, 4096 bytes by default) and answers 431
// to a request whose header does not fit, before any handler runs. Cookie
// sessions split over several 4 KB cookies need a larger buffer. New
// refuses a backend whose cookies, plus HeaderRoom for the rest of the
// header, cannot fit Options.ReadBufferSize; NewServer sets the server's
// buffer to match.
//
// Logs: fasthttp logs the connections it fails to serve, quoting the
// request it could not read, Cookie header included: session ids in a log
// are sessions anyone reading it can take over. NewServer's server keeps
// them out (see RedactLogger); a fasthttp.Server made by hand needs
// SecureErrorLogMessage set and its Logger wrapped by Middleware.Logger.
package kvfasthttp

import (
	"fmt"
	"log/slog"

	"github.com/valyala/fasthttp"

	"github.com/kvsession/kvsession"
	"github.com/kvsession/kvsession/internal/fasthttpio"
)

// ErrorHandler answers a request whose session could not be loaded or saved.
// The response still holds what the handler wrote; the handler's Set-Cookie
// for the session was never added.
type ErrorHandler func(ctx *fasthttp.RequestCtx, err error)

// Options tune the middleware. The zero value is ready to use.
type Options struct {
	// ErrorHandler answers requests whose session failed. Default: log the
	// error and answer 500 with a short body.
	ErrorHandler ErrorHandler

	// Skip, when set, is asked before each request; returning true runs the
	// handler without a session (Session returns nil), like a path matching
	// Config.Exclude. Use it for per-route opt-outs.
	Skip func(ctx *fasthttp.RequestCtx) bool

	// ReadOnly, when set, is asked before each request; returning true
	// marks the session read-only (Session.SetReadOnly), so that with
	// Config.Lock it is loaded without the session lock. GET and HEAD
	// requests are the usual candidates.
	ReadOnly func(ctx *fasthttp.RequestCtx) bool

	// ReadBufferSize is the ReadBufferSize of the fasthttp.Server this
	// middleware runs in; 0 means fasthttp's default, 4096. NewServer uses
	// it for the server it makes.
	ReadBufferSize int

	// HeaderRoom is how much of ReadBufferSize a request needs besides the
	// session cookies: request line, Host, User-Agent, other cookies.
	// Default 2048.
	HeaderRoom int
}

// Defaults of Options.
const (
	DefaultReadBufferSize = 4096 // fasthttp's
	DefaultHeaderRoom     = 2048
)

// Middleware attaches sessions from one Backend to fasthttp handlers.
type Middleware struct {
	backend    kvsession.Backend
	cookieName string
	idHeader   string // Config.IDHeader: "" when ids travel in cookies only
	outerKey   any    // outerKey(cookieName), made once: as an interface it would allocate per call
	onError    ErrorHandler
	skip       func(ctx *fasthttp.RequestCtx) bool
	readOnly   func(ctx *fasthttp.RequestCtx) bool
	readBuffer int
}

// New returns a Middleware over backend: a *kvsession.ServerBackend or a
// *kvsession.CookieBackend. It fails if the largest Cookie header the
// backend's cookies can make, plus Options.HeaderRoom, exceeds
// Options.ReadBufferSize: such requests would be refused with 431.
func New(backend kvsession.Backend, opts Options) (*Middleware, error) {
	if opts.ReadBufferSize == 0 {
		opts.ReadBufferSize = DefaultReadBufferSize
	}
	if opts.HeaderRoom == 0 {
		opts.HeaderRoom = DefaultHeaderRoom
	}
	if opts.ReadBufferSize < 0 || opts.HeaderRoom < 0 {
		return nil, fmt.Errorf("kvfasthttp: Options.ReadBufferSize (%d) and Options.HeaderRoom (%d) must not be negative", opts.ReadBufferSize, opts.HeaderRoom)
	}
	if need := RequiredReadBufferSize(backend, opts.HeaderRoom); need > opts.ReadBufferSize {
		return nil, fmt.Errorf("kvfasthttp: Options.ReadBufferSize: %d bytes cannot hold a request whose session cookies take up to %d bytes (Config.MaxCookieSegments %d) plus Options.HeaderRoom %d; set it and the fasthttp.Server's ReadBufferSize to at least %d, or use Middleware.NewServer",
			opts.ReadBufferSize, backend.MaxCookieHeaderBytes(), backend.Config().MaxCookieSegments, opts.HeaderRoom, need)
	}
	cfg := backend.Config()
	name := cfg.CookieName
	m := &Middleware{backend: backend, cookieName: name, idHeader: cfg.IDHeader, outerKey: outerKey(name),
		onError: opts.ErrorHandler, skip: opts.Skip, readOnly: opts.ReadOnly, readBuffer: opts.ReadBufferSize}
	if m.onError == nil {
		logger := cfg.Logger
		m.onError = func(ctx *fasthttp.RequestCtx, err error) { defaultErrorHandler(ctx, err, logger) }
	}
	return m, nil
}

// RequiredReadBufferSize returns the fasthttp.Server ReadBufferSize that
// reads every request carrying the backend's largest session cookies and
// headerRoom bytes of everything else (0 means DefaultHeaderRoom, as in
// Options), and never less than fasthttp's default: sizing a server with it
// must not shrink what it accepted before.
func RequiredReadBufferSize(backend kvsession.Backend, headerRoom int) int {
	if headerRoom == 0 {
		headerRoom = DefaultHeaderRoom
	}
	return max(DefaultReadBufferSize, len("Cookie: \r\n")+backend.MaxCookieHeaderBytes()+headerRoom)
}

// NewServer returns a fasthttp.Server that serves next behind the
// middleware, with the ReadBufferSize the middleware was checked against,
// and with its log kept free of session cookies: SecureErrorLogMessage on,
// and a Logger that redacts cookie values (RedactLogger) before handing
// fasthttp's messages to Config.Logger as warnings. Set its other fields
// before serving; to log elsewhere, set Logger to m.Logger(yours), never
// to a bare logger.
func (m *Middleware) NewServer(next fasthttp.RequestHandler) *fasthttp.Server {
	return &fasthttp.Server{
		Handler:               m.Handler(next),
		ReadBufferSize:        m.readBuffer,
		SecureErrorLogMessage: true,
		Logger:                m.Logger(slogLogger{m.backend.Config().Logger}),
	}
}

// sessionKey is the user-value key of the innermost middleware's session,
// which Session returns. An unexported type keeps other packages from
// reading or replacing it. A session that an inner middleware hides is
// kept under outerKey(its cookie name) until the inner one returns: only
// nested middlewares pay for that, so a request through one middleware
// costs what it did before sessions could nest.
type sessionKey struct{}

// outerKey is the user-value key of a hidden session of cookie name name.
func outerKey(name string) string { return "kvsession.outer." + name }

// Session returns the request's session: that of the innermost Middleware
// that gave the request one, or nil when no Middleware did (none wrapped
// the request, or every one skipped or excluded it).
func Session(ctx *fasthttp.RequestCtx) *kvsession.Session {
	s, _ := ctx.UserValue(sessionKey{}).(*kvsession.Session)
	return s
}

// Session returns the session m gave the request, or nil when the request
// did not pass through m or m skipped or excluded it. It tells apart the
// sessions of nested middlewares, which Session (the function) does not;
// nested middlewares must use different Config.CookieName values (they
// would overwrite each other's cookie otherwise), and m finds its own by
// that name.
func (m *Middleware) Session(ctx *fasthttp.RequestCtx) *kvsession.Session {
	if s := Session(ctx); s != nil && s.CookieName() == m.cookieName {
		return s
	}
	s, _ := ctx.UserValue(m.outerKey).(*kvsession.Session)
	return s
}

// Handler wraps next so that it runs with a session.
func (m *Middleware) Handler(next fasthttp.RequestHandler) fasthttp.RequestHandler {
	b := m.backend
	return func(ctx *fasthttp.RequestCtx) {
		if (m.skip != nil && m.skip(ctx)) || b.Excluded(ctx.Path()) {
			next(ctx)
			return
		}
		s := fasthttpio.Load(b, ctx, m.idHeader)
		if m.readOnly != nil && m.readOnly(ctx) {
			s.SetReadOnly()
		}
		// An outer middleware's session is kept and put back on the way
		// out, so that after next returns the outer handler sees its own
		// session again, not nil.
		outer, _ := ctx.UserValue(sessionKey{}).(*kvsession.Session)
		if outer != nil {
			ctx.SetUserValue(outerKey(outer.CookieName()), outer)
		}
		ctx.SetUserValue(sessionKey{}, s)
		// Released however next ends: a handler that panics (and a recover
		// above this middleware that keeps the server alive) must not leave
		// the session's lock held until its lease runs out. Nothing is saved
		// then: the handler did not finish.
		defer m.release(ctx, s, outer)
		next(ctx)
		if err := b.StoreInResponseStatus(s, fasthttpio.ResponseSink{H: &ctx.Response.Header}, ctx.Response.StatusCode()); err != nil {
			m.onError(ctx, err)
		}
	}
}

// release ends the request's hold on its session and gives the request
// back the session an outer middleware had set, if any.
func (m *Middleware) release(ctx *fasthttp.RequestCtx, s, outer *kvsession.Session) {
	if outer == nil {
		ctx.RemoveUserValue(sessionKey{})
	} else {
		ctx.SetUserValue(sessionKey{}, outer)
		ctx.RemoveUserValue(outerKey(outer.CookieName()))
	}
	m.backend.Release(s)
}

func defaultErrorHandler(ctx *fasthttp.RequestCtx, err error, logger *slog.Logger) {
	logger.Error("kvsession: session unavailable", "error", err, "path", string(ctx.Path()))
	ctx.Response.Reset()
	ctx.SetStatusCode(fasthttp.StatusInternalServerError)
	ctx.SetContentType("text/plain; charset=utf-8")
	ctx.SetBodyString("session unavailable\n")
}
