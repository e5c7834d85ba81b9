// Package kvhttp connects kvsession to net/http.
//
// Wrap a handler with a Middleware; inside it, Session(r) returns the
// request's session:
//
//	mw, err := kvhttp.New(backend, kvhttp.Options{})
//	...
//	mux := http.NewServeMux()
//	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
//		sess := kvhttp.Session(r)
//		n, _ := sess.GetInt("visits")
//		sess.SetInt("visits", n+1)
//		fmt.Fprintln(w, n+1)
//	})
//	srv := &http.Server{Addr: "127.0.0.1:8080", Handler: mw.Handler(mux)}
//
// Handler also has the shape routers take as middleware,
// func(http.Handler) http.Handler: chi's r.Use(mw.Handler), or
// echo.WrapMiddleware(mw.Handler). To use it with gin, wrap the engine:
// mw.Handler(engine).
//
// # Several sessions per request
//
// Two middlewares over backends with different Config.CookieName values
// (a long-lived "prefs" session beside the "session" login session, say)
// can wrap the same handler, and each keeps its own session. The method
// m.Session(r) returns the session of middleware m; the function
// Session(r) returns the innermost one's, the session of the last
// middleware the request passed that gave it one:
//
//	login, _ := kvhttp.New(loginBackend, kvhttp.Options{})
//	prefs, _ := kvhttp.New(prefsBackend, kvhttp.Options{})
//	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
//		user, _ := login.Session(r).GetString("user")
//		prefs.Session(r).Set("theme", "dark")
//	})
//	srv := &http.Server{Handler: login.Handler(prefs.Handler(mux))}
//
// Each middleware saves its own session and adds its own Set-Cookie line
// at the commit. m.Session is nil where m skipped or excluded the request.
//
// # Clients without cookies
//
// Mobile apps and command-line clients can carry the session id in a
// header instead, with kvsession.Config.IDHeader set: a request that
// carries that header, with any value ("new" for a client without an id
// yet), is served from it, and its response carries a new or changed id
// in the same header, at the commit, never a cookie; an empty one tells
// the client to forget its id. Requests without it are served by cookie
// as before. The query string is never read. See Config.IDHeader for the
// protocol.
//
// # When the session is saved
//
// A net/http handler sends its response header on its first WriteHeader,
// Write or Flush, and the session cookie must be in that header. So the
// middleware saves the session, and adds its Set-Cookie lines, at that
// moment: the commit. The commit happens on the handler's first
//
//   - WriteHeader with a final status (1xx informational responses, such
//     as 103 Early Hints, go out without it),
//   - Write, WriteString or ReadFrom (io.Copy),
//   - Flush, through http.Flusher or http.ResponseController,
//   - Hijack,
//
// or after the handler returns, if it did none of these. What follows from
// it:
//
// A save that fails at the commit is answered by Options.ErrorHandler in
// place of the handler's response: the status the handler asked for is
// dropped and every header set so far is deleted (those set by middleware
// that ran before this one too: an ErrorHandler that needs some sets them
// again), and from then on what the handler writes is thrown away and its
// Write calls return an error wrapping ErrResponseReplaced, so that a
// streaming loop stops. A failed load is reported at the commit the same
// way: the session's getters return zero values until then.
//
// A commit with a 5xx status (WriteHeader(500), say) saves nothing and
// sets no cookie, unless kvsession.Config.SaveOnServerError: the client
// keeps the session it had. A response whose handler used the session,
// even only to read it, carries Vary: Cookie.
//
// Changes the handler makes to the session after the commit are not
// saved. The cookie that would carry them has gone; with Config.Lock the
// session's lock was released at the commit, so a later save could write
// over another request's; and an id change after it (RenewID, a
// rotation) would move the session to an id its client never learns.
// Change the session first, then write. The middleware logs a warning
// (Config.Logger) when it can tell that a handler broke this rule: when
// the session was first changed after the commit, as when a template pops a
// flash message while it renders.
//
// Hijack is a commit too: the session is saved, and its lock released,
// before the connection is handed over, since a hijacked connection (a
// WebSocket) can outlive any lock lease. The Set-Cookie lines are left in
// the header map for a handler that writes its own response on the
// connection; net/http no longer sends them. If the save fails, Hijack
// returns the error without hijacking and the ErrorHandler has answered.
//
// A handler that panics (or calls runtime.Goexit) before the commit saves
// nothing: the session is released, its lock freed, and the panic goes on
// unchanged (the middleware never recovers it) to net/http's recovery or
// yours. After the commit, the save that went out with the header stands.
//
// # The response writer
//
// The handler gets a writer that wraps the middleware's. It offers
// http.Flusher, http.Hijacker and http.Pusher exactly when the wrapped
// writer does (directly or through its Unwrap chain, as
// http.ResponseController finds them), io.ReaderFrom and io.StringWriter
// always (copying when the wrapped writer cannot), and Unwrap, so that
// http.ResponseController's deadlines and full duplex reach the server's
// writer. It does not offer the deprecated http.CloseNotifier: use the
// request's context. Writes after the handler returned (echo renders the
// error a handler returned after the middleware is done) go through as
// they are.
//
// The session and the request context it lives in end with the handler:
// Session returns nil for a context kept beyond the request, rather than
// another request's session. Do not put http.TimeoutHandler inside the
// middleware: its handler goes on running after it times out, with a
// session that was released; put it outside.
//
// Store calls run under the request's context without its cancellation
// (context.WithoutCancel): a client that hangs up, or a server shutting
// down gracefully, does not abort a save half done. Config.StoreTimeout,
// per store call, bounds a hung store.
//
// Request header size: http.Server reads request headers up to
// MaxHeaderBytes (1 MB by default), far more than any session cookie
// needs. A server that lowers it must leave room for
// Backend.MaxCookieHeaderBytes besides the rest of the header.
package kvhttp

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"sync/atomic"
	"unsafe"

	"github.com/kvsession/kvsession"
)

// ErrorHandler answers a request whose session could not be loaded or
// saved, in place of the handler. w is the writer the middleware was given
// (not the handler's), with no header set; r is the request as the
// middleware received it, so Session(r) is nil. It must write the whole
// response: if it writes nothing, net/http answers 200 with no body.
type ErrorHandler func(w http.ResponseWriter, r *http.Request, err error)

// ErrResponseReplaced is what the handler's writes return (wrapped, with
// the session error) once its session failed at the commit and the
// ErrorHandler answered the request instead: what the handler writes then
// is thrown away.
var ErrResponseReplaced = errors.New("kvhttp: the session could not be saved; the error handler answered the request in the handler's place")

// Options tune the middleware. The zero value is ready to use.
type Options struct {
	// ErrorHandler answers requests whose session failed. Default: log
	// the error to Config.Logger and answer 500 "session unavailable".
	ErrorHandler ErrorHandler

	// Skip, when set, is asked before each request; returning true runs the
	// handler without a session (Session returns nil) and without wrapping
	// its writer, like a path matching Config.Exclude. Use it for per-route
	// opt-outs.
	Skip func(r *http.Request) bool

	// ReadOnly, when set, is asked before each request; returning true
	// marks the session read-only (Session.SetReadOnly), so that with
	// Config.Lock it is loaded without the session lock. GET and HEAD
	// requests are the usual candidates.
	ReadOnly func(r *http.Request) bool
}

// Middleware attaches sessions from one Backend to net/http handlers.
type Middleware struct {
	backend  kvsession.Backend
	onError  ErrorHandler
	skip     func(r *http.Request) bool
	readOnly func(r *http.Request) bool
	logger   *slog.Logger
	// idHeader is Config.IDHeader in its canonical form, the key of
	// http.Header: "" when ids travel in cookies only.
	idHeader string
}

// New returns a Middleware over backend: a *kvsession.ServerBackend or a
// *kvsession.CookieBackend.
func New(backend kvsession.Backend, opts Options) (*Middleware, error) {
	if backend == nil {
		return nil, errors.New("kvhttp: New needs a backend")
	}
	cfg := backend.Config()
	m := &Middleware{backend: backend, onError: opts.ErrorHandler, skip: opts.Skip, readOnly: opts.ReadOnly, logger: cfg.Logger}
	if cfg.IDHeader != "" {
		m.idHeader = http.CanonicalHeaderKey(cfg.IDHeader)
	}
	if m.onError == nil {
		logger := m.logger
		m.onError = func(w http.ResponseWriter, r *http.Request, err error) { defaultErrorHandler(w, r, err, logger) }
	}
	return m, nil
}

// sessionKey is the context key of the innermost middleware's session,
// which Session returns; ownKey is the key of one middleware's own, which
// its Session method returns. Both are unexported types, so other
// packages can neither read nor replace them, and both convert to an
// interface without allocating (ownKey holds a single pointer).
type (
	sessionKey struct{}
	ownKey     struct{ m *Middleware }
)

// Session returns the request's session: that of the innermost Middleware
// that gave the request one. It is nil when no Middleware did (none
// wrapped the request, or every one skipped or excluded it) or the request
// has ended.
func Session(r *http.Request) *kvsession.Session { return FromContext(r.Context()) }

// FromContext returns the session of the request whose context ctx is (or
// derives from), with the same meaning and nil cases as Session.
func FromContext(ctx context.Context) *kvsession.Session {
	s, _ := ctx.Value(sessionKey{}).(*kvsession.Session)
	return s
}

// Session returns the session m gave the request, or nil when the request
// did not pass through m, m skipped or excluded it, or the request has
// ended. It tells apart the sessions of nested middlewares, which Session
// (the function) does not.
func (m *Middleware) Session(r *http.Request) *kvsession.Session { return m.FromContext(r.Context()) }

// FromContext is Session for the request whose context ctx is (or derives
// from).
func (m *Middleware) FromContext(ctx context.Context) *kvsession.Session {
	s, _ := ctx.Value(ownKey{m}).(*kvsession.Session)
	return s
}

// Handler wraps next so that it runs with a session. It has the shape of
// router middleware: func(http.Handler) http.Handler.
func (m *Middleware) Handler(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if (m.skip != nil && m.skip(r)) || m.backend.Excluded(stringBytes(r.URL.Path)) {
			next.ServeHTTP(w, r)
			return
		}
		x := &exchange{}
		x.ctx.Context = r.Context()
		x.ctx.m = m
		s := m.load(context.WithoutCancel(&x.ctx), r.Header)
		if m.readOnly != nil && m.readOnly(r) {
			s.SetReadOnly()
		}
		x.ctx.session.Store(s)
		x.resp = response{m: m, w: w, r: r, session: s}
		defer x.finish()
		next.ServeHTTP(x.resp.writer(), r.WithContext(&x.ctx))
		x.returned = true
	})
}

// exchange is one request's passage through the middleware: the context
// the handler sees and the response it writes, in one allocation. It is
// not pooled: a context kept beyond the request (context.WithoutCancel
// for background work is common) and a writer some routers still write
// through after the middleware returned (echo's error rendering) must not
// reach another request.
type exchange struct {
	ctx      handlerContext
	resp     response
	returned bool // the handler returned normally: no panic, no Goexit
}

// finish ends the session once the handler is done: commits it if nothing
// did yet, and releases it. After a panic it only releases it, so that
// nothing half done is saved and the lock is freed, and lets the panic go
// on.
func (x *exchange) finish() {
	// Deferred, so that a store or an ErrorHandler that panics during the
	// commit does not leave the session locked until its lease ends.
	defer x.release()
	rs := &x.resp
	switch {
	case !x.returned:
	case !rs.committed:
		rs.commit(http.StatusOK) // what net/http sends for a handler that wrote nothing
	case rs.failure == nil && !rs.changedBeforeCommit && rs.session.Modified():
		rs.m.logger.Warn("kvhttp: session changed after the response header was sent; the change is not saved (change the session before writing the response)",
			"method", rs.r.Method, "path", rs.r.URL.Path)
	}
}

// release gives the session back to the backend, whose pool hands it to
// another request: neither a kept context nor the writer may reach it
// from here on.
func (x *exchange) release() {
	rs := &x.resp
	s := rs.session
	x.ctx.session.Store(nil)
	rs.session = nil
	rs.committed = true
	rs.m.backend.Release(s)
}

// handlerContext is the request context the handler sees: the request's
// own, with the session under sessionKey and ownKey{m} until the request
// ends. Other keys, an outer middleware's ownKey among them, go to the
// request's context.
type handlerContext struct {
	context.Context
	m *Middleware
	// session is atomic because a goroutine the handler started may still
	// read the context when the request ends.
	session atomic.Pointer[kvsession.Session]
}

func (c *handlerContext) Value(key any) any {
	switch k := key.(type) {
	case sessionKey:
		return c.session.Load()
	case ownKey:
		if k.m == c.m {
			return c.session.Load()
		}
	}
	return c.Context.Value(key)
}

// load starts the request's session: from the id header (Config.IDHeader)
// if the request carries it, with any value, else from its cookies.
// Nothing else is looked at: an id in the query string is never read.
func (m *Middleware) load(ctx context.Context, h http.Header) *kvsession.Session {
	if m.idHeader != "" {
		if lines, ok := h[m.idHeader]; ok {
			return m.backend.LoadFromHeader(ctx, idHeaderValue(lines))
		}
	}
	return m.backend.LoadFromRequest(ctx, cookieHeader(h))
}

// idHeaderValue returns the id header's value for the backend. Several
// lines are joined with ", ", as RFC 9110 §5.3 combines them, which no id
// matches: a request sending two ids gets a fresh session, not either of
// them.
func idHeaderValue(lines []string) []byte {
	if len(lines) == 1 {
		return stringBytes(lines[0])
	}
	return []byte(strings.Join(lines, ", "))
}

// cookieHeader returns the request's Cookie header for the backend, which
// reads its (possibly split) cookies itself and must see every one,
// duplicates included. Clients send one Cookie header; several are joined
// as RFC 9113 §8.2.3 prescribes. The usual single header is passed without
// a copy: the backend only reads it, and the string it views lives as
// long as the request.
func cookieHeader(h http.Header) []byte {
	lines := h["Cookie"]
	switch len(lines) {
	case 0:
		return nil
	case 1:
		return stringBytes(lines[0])
	}
	return []byte(strings.Join(lines, "; "))
}

// stringBytes views s as bytes, for callees that only read them.
func stringBytes(s string) []byte { return unsafe.Slice(unsafe.StringData(s), len(s)) }

func defaultErrorHandler(w http.ResponseWriter, r *http.Request, err error, logger *slog.Logger) {
	logger.Error("kvhttp: session unavailable", "error", err, "method", r.Method, "path", r.URL.Path)
	http.Error(w, "session unavailable", http.StatusInternalServerError)
}
