// Package fasthttp connects kvsession to github.com/valyala/fasthttp.
//
// Wrap a handler with a Middleware; inside it, Session(ctx) returns the
// request's session:
//
//	mw := kvfasthttp.New(backend, kvfasthttp.Options{})
//	server := &fasthttp.Server{Handler: mw.Handler(app)}
//
//	func app(ctx *fasthttp.RequestCtx) {
//		sess := kvfasthttp.Session(ctx)
//		n, _ := sess.GetInt("visits")
//		sess.Set("visits", n+1)
//	}
//
// The session is loaded from the store on first use and saved after the
// handler returns. A store failure (or a session too large to save) replaces
// the handler's response with the error handler's.
package fasthttp

import (
	"log/slog"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/kvsession/kvsession"
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
}

// Middleware attaches sessions from one Backend to fasthttp handlers.
type Middleware struct {
	backend *kvsession.Backend
	onError ErrorHandler
	skip    func(ctx *fasthttp.RequestCtx) bool
}

// New returns a Middleware over backend.
func New(backend *kvsession.Backend, opts Options) *Middleware {
	m := &Middleware{backend: backend, onError: opts.ErrorHandler, skip: opts.Skip}
	if m.onError == nil {
		logger := backend.Config().Logger
		m.onError = func(ctx *fasthttp.RequestCtx, err error) { defaultErrorHandler(ctx, err, logger) }
	}
	return m
}

// sessionKey is the user-value key the session is kept under. An
// unexported type keeps other packages from reading or replacing it.
type sessionKey struct{}

// Session returns the request's session, or nil when the request was not
// wrapped by a Middleware or was excluded from sessions.
func Session(ctx *fasthttp.RequestCtx) *kvsession.Session {
	s, _ := ctx.UserValue(sessionKey{}).(*kvsession.Session)
	return s
}

// Handler wraps next so that it runs with a session.
func (m *Middleware) Handler(next fasthttp.RequestHandler) fasthttp.RequestHandler {
	b := m.backend
	name := b.CookieName()
	return func(ctx *fasthttp.RequestCtx) {
		if (m.skip != nil && m.skip(ctx)) || b.Excluded(ctx.Path()) {
			next(ctx)
			return
		}
		s := b.LoadFromCookie(requestContext{ctx}, ctx.Request.Header.Cookie(name))
		ctx.SetUserValue(sessionKey{}, s)
		next(ctx)
		err := b.StoreInResponse(s, responseSink{&ctx.Response.Header})
		ctx.RemoveUserValue(sessionKey{})
		b.Release(s)
		if err != nil {
			m.onError(ctx, err)
		}
	}
}

// requestContext is the context store calls run under: the request's
// values, without the cancellation fasthttp signals on RequestCtx when the
// server starts shutting down. A request that is allowed to finish during a
// graceful shutdown must also be allowed to save its session. It is a
// single pointer, so converting it to context.Context does not allocate.
type requestContext struct{ *fasthttp.RequestCtx }

func (requestContext) Deadline() (time.Time, bool) { return time.Time{}, false }
func (requestContext) Done() <-chan struct{}       { return nil }
func (requestContext) Err() error                  { return nil }

// responseSink writes the backend's cookie and headers into a fasthttp
// response.
type responseSink struct{ h *fasthttp.ResponseHeader }

func (r responseSink) SetCookie(name string, line []byte) {
	r.h.DelCookie(name)
	r.h.AddBytesV(fasthttp.HeaderSetCookie, line)
}

func (r responseSink) AddHeader(name, value string) { r.h.Add(name, value) }

func defaultErrorHandler(ctx *fasthttp.RequestCtx, err error, logger *slog.Logger) {
	logger.Error("kvsession: session unavailable", "error", err, "path", string(ctx.Path()))
	ctx.Response.Reset()
	ctx.SetStatusCode(fasthttp.StatusInternalServerError)
	ctx.SetContentType("text/plain; charset=utf-8")
	ctx.SetBodyString("session unavailable\n")
}
