package kvfiber

import (
	"errors"
	"fmt"
	"log/slog"

	"github.com/gofiber/fiber/v3"
	"github.com/valyala/fasthttp"

	"github.com/kvsession/kvsession"
	"github.com/kvsession/kvsession/internal/fasthttpio"
)

// ErrorHandler answers a request whose session could not be loaded or
// saved: the response still holds what the handler wrote, but not the
// session's Set-Cookie. It also answers every request of an app whose
// read buffer cannot hold the session cookies (see
// RequiredReadBufferSize); no handler ran then. What it returns is
// returned to Fiber, so returning an error hands the request to the app's
// fiber.Config.ErrorHandler.
type ErrorHandler func(c fiber.Ctx, err error) error

// Options tune the middleware. The zero value is ready to use.
type Options struct {
	// ErrorHandler answers requests whose session failed. Default: log
	// the error with Config.Logger, drop the handler's response and answer
	// 500 with a short body.
	ErrorHandler ErrorHandler

	// Skip, when set, is asked before each request; returning true runs
	// the rest of the chain without a session (Session returns nil), like
	// a path matching Config.Exclude. Use it for per-route opt-outs.
	Skip func(c fiber.Ctx) bool

	// ReadOnly, when set, is asked before each request; returning true
	// marks the session read-only (Session.SetReadOnly), so that with
	// Config.Lock it is loaded without the session lock. GET and HEAD
	// requests are the usual candidates.
	ReadOnly func(c fiber.Ctx) bool

	// HeaderRoom is how much of the app's read buffer a request needs
	// besides the session cookies: request line, Host, User-Agent, other
	// cookies. Default DefaultHeaderRoom.
	HeaderRoom int
}

// Defaults of Options.
const (
	DefaultReadBufferSize = fiber.DefaultReadBufferSize // 4096
	DefaultHeaderRoom     = 2048
)

// New returns the Fiber middleware attaching sessions from backend (a
// *kvsession.ServerBackend or a *kvsession.CookieBackend) to every request
// it sees: register it with app.Use before the routes that use sessions,
// after Fiber's recover middleware if there is one.
//
// Each request checks that the app's read buffer holds the backend's
// largest session cookies plus Options.HeaderRoom; in an app whose buffer
// is smaller every request goes to the ErrorHandler, so that the mistake
// shows on the first request rather than as a 431 once a session grows.
// Create the app with fiber.Config{ReadBufferSize:
// RequiredReadBufferSize(backend, 0)}.
func New(backend kvsession.Backend, opts Options) (fiber.Handler, error) {
	m, err := NewMiddleware(backend, opts)
	if err != nil {
		return nil, err
	}
	return m.Handler, nil
}

// NewMiddleware is New returning the Middleware rather than its handler:
// register m.Handler with app.Use, and reach the session m gives each
// request with m.Session, which tells it apart from the sessions of other
// kvfiber middlewares on the same route.
func NewMiddleware(backend kvsession.Backend, opts Options) (*Middleware, error) {
	if backend == nil {
		return nil, fmt.Errorf("kvfiber: New needs a backend")
	}
	if opts.HeaderRoom == 0 {
		opts.HeaderRoom = DefaultHeaderRoom
	}
	if opts.HeaderRoom < 0 {
		return nil, fmt.Errorf("kvfiber: Options.HeaderRoom (%d) must not be negative", opts.HeaderRoom)
	}
	cfg := backend.Config()
	logger := cfg.Logger
	m := &Middleware{
		backend:    backend,
		cookieName: cfg.CookieName,
		idHeader:   cfg.IDHeader,
		outerKey:   outerKey(cfg.CookieName),
		onError:    opts.ErrorHandler,
		skip:       opts.Skip,
		readOnly:   opts.ReadOnly,
		logger:     logger,
		need:       RequiredReadBufferSize(backend, opts.HeaderRoom),
	}
	if m.onError == nil {
		m.onError = func(c fiber.Ctx, err error) error { return defaultErrorHandler(c, err, logger) }
	}
	return m, nil
}

// RequiredReadBufferSize returns the fiber.Config ReadBufferSize that reads
// every request carrying the backend's largest session cookies and
// headerRoom bytes of everything else (0 means DefaultHeaderRoom, as in
// Options), and never less than Fiber's default: sizing an app with it
// must not shrink what it accepted before. A server-side backend's id
// cookie fits the default; cookie sessions split over several 4 KB
// cookies need more.
func RequiredReadBufferSize(backend kvsession.Backend, headerRoom int) int {
	if headerRoom == 0 {
		headerRoom = DefaultHeaderRoom
	}
	return max(DefaultReadBufferSize, len("Cookie: \r\n")+backend.MaxCookieHeaderBytes()+headerRoom)
}

// Middleware attaches sessions from one Backend to Fiber requests. Make
// one with NewMiddleware.
type Middleware struct {
	backend    kvsession.Backend
	cookieName string
	idHeader   string // Config.IDHeader: "" when ids travel in cookies only
	outerKey   any    // outerKey(cookieName), made once: as an interface it would allocate per call
	onError    ErrorHandler
	skip       func(c fiber.Ctx) bool
	readOnly   func(c fiber.Ctx) bool
	logger     *slog.Logger
	need       int // RequiredReadBufferSize with Options.HeaderRoom
}

// sessionKey is the user-value key of the innermost middleware's session,
// which Session returns. An unexported type keeps other packages from
// reading or replacing it. A session that a later middleware hides is kept
// under outerKey(its cookie name) until that one returns: only stacked
// middlewares pay for that, so a request through one costs what it did
// before sessions could stack.
type sessionKey struct{}

// outerKey is the user-value key of a hidden session of cookie name name.
func outerKey(name string) string { return "kvsession.outer." + name }

// Session returns the request's session: that of the innermost kvfiber
// middleware that gave the request one (the last registered, on a chain),
// or nil when none did (none ran, or every one skipped or excluded the
// request: Skip, Config.Exclude). It is valid until the handler chain
// returns: a goroutine the handler starts, a SendStreamWriter writer among
// them, must not use it.
func Session(c fiber.Ctx) *kvsession.Session {
	s, _ := c.RequestCtx().UserValue(sessionKey{}).(*kvsession.Session)
	return s
}

// Session returns the session m gave the request, or nil when m did not
// run for the request or skipped or excluded it, with the lifetime of the
// function Session's. It tells apart the sessions of several kvfiber
// middlewares on one route, which the function does not.
//
// Stacked middlewares must use different Config.CookieName values (they
// would overwrite each other's cookie otherwise): m finds its own by name.
func (m *Middleware) Session(c fiber.Ctx) *kvsession.Session {
	if s := Session(c); s != nil && s.CookieName() == m.cookieName {
		return s
	}
	s, _ := c.RequestCtx().UserValue(m.outerKey).(*kvsession.Session)
	return s
}

// Handler is the middleware itself, the fiber.Handler New returns: give
// it to app.Use (or to a group or route).
func (m *Middleware) Handler(c fiber.Ctx) error {
	if err := m.checkReadBuffer(c.App()); err != nil {
		return m.onError(c, err)
	}
	rc := c.RequestCtx()
	b := m.backend
	if (m.skip != nil && m.skip(c)) || b.Excluded(rc.Path()) {
		return c.Next()
	}
	s := fasthttpio.Load(b, rc, m.idHeader)
	if m.readOnly != nil && m.readOnly(c) {
		s.SetReadOnly()
	}
	// An earlier kvfiber middleware's session is kept and put back once
	// the chain returns, so that its handler code after c.Next sees its own
	// session again, not nil.
	outer, _ := rc.UserValue(sessionKey{}).(*kvsession.Session)
	if outer != nil {
		rc.SetUserValue(outerKey(outer.CookieName()), outer)
	}
	rc.SetUserValue(sessionKey{}, s)
	finished := false
	defer func() {
		// Only a panic gets here unfinished. What the handler did is
		// dropped, as its response is, but the session lock (Config.Lock)
		// must be freed and the session returned, or the next request of
		// this session would wait for a lock nobody holds. The panic goes
		// on to Fiber's recover middleware, if any.
		if !finished {
			detach(rc, outer)
			b.Release(s)
		}
	}()
	handlerErr := c.Next()
	finished = true
	if c.IsAbandoned() {
		// Fiber's timeout middleware gave up waiting, answered 408 and
		// left the handler running on its goroutine, with s. Saving would
		// store half of what the handler does, for a request the client
		// saw fail; releasing would let the pool hand s, still written to,
		// to another request. Neither: s goes to the garbage collector
		// with the abandoned Ctx.
		m.logger.Warn("kvsession: request abandoned while its handler may still run (Fiber's timeout middleware): its session is not saved; with Config.Lock the session stays locked until Config.LockLease")
		return handlerErr
	}
	// Saved even when the handler returned an error: in Fiber an error is
	// how a handler answers 401 or 404, and what it did to the session
	// before that (a failed-login counter, a flash message) must stick.
	// Not when the answer is a 5xx (Config.SaveOnServerError).
	err := b.StoreInResponseStatus(s, fasthttpio.ResponseSink{H: &rc.Response.Header}, status(rc, handlerErr))
	detach(rc, outer)
	b.Release(s)
	if err == nil {
		return handlerErr
	}
	if handlerErr != nil {
		// The ErrorHandler's answer replaces the one the handler asked
		// for, so its error would otherwise vanish without a trace.
		m.logger.Error("kvsession: handler error superseded by a session failure", "error", handlerErr, "path", string(rc.Path()))
	}
	return m.onError(c, err)
}

// detach takes the session off the request, putting back the one an
// earlier middleware had set, if any.
func detach(rc *fasthttp.RequestCtx, outer *kvsession.Session) {
	if outer == nil {
		rc.RemoveUserValue(sessionKey{})
		return
	}
	rc.SetUserValue(sessionKey{}, outer)
	rc.RemoveUserValue(outerKey(outer.CookieName()))
}

// status is the status the response will have. A handler's error is
// turned into a response by the app's ErrorHandler only after the
// middleware returns: the status is read off the error as Fiber's default
// ErrorHandler does, a *fiber.Error's Code and 500 for any other error. An
// app ErrorHandler that answers an error differently is not seen.
func status(rc *fasthttp.RequestCtx, handlerErr error) int {
	if handlerErr == nil {
		return rc.Response.StatusCode()
	}
	if fe, ok := errors.AsType[*fiber.Error](handlerErr); ok {
		return fe.Code
	}
	return fiber.StatusInternalServerError
}

// checkReadBuffer reports an app whose server cannot read the largest
// Cookie header the backend's cookies make. It reads the server's own
// setting, which is what fasthttp enforces, at the cost of three loads.
func (m *Middleware) checkReadBuffer(app *fiber.App) error {
	have := app.Server().ReadBufferSize
	if have == 0 {
		have = DefaultReadBufferSize // fasthttp's default for 0
	}
	if have >= m.need {
		return nil
	}
	return fmt.Errorf("kvfiber: the app's ReadBufferSize of %d bytes cannot hold a request whose session cookies take up to %d bytes (Config.MaxCookieSegments %d) plus Options.HeaderRoom; create the app with fiber.Config{ReadBufferSize: kvfiber.RequiredReadBufferSize(backend, 0)}, %d bytes",
		have, m.backend.MaxCookieHeaderBytes(), m.backend.Config().MaxCookieSegments, m.need)
}

// defaultErrorHandler drops the whole response, headers included: a
// response built on a session that was not saved must not reach the
// client, and neither may part of it.
func defaultErrorHandler(c fiber.Ctx, err error, logger *slog.Logger) error {
	rc := c.RequestCtx()
	logger.Error("kvsession: session unavailable", "error", err, "path", string(rc.Path()))
	rc.Response.Reset()
	rc.SetStatusCode(fiber.StatusInternalServerError)
	rc.SetContentType(fiber.MIMETextPlainCharsetUTF8)
	rc.SetBodyString("session unavailable\n")
	return nil
}
