package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/kvsession/kvsession"
	"github.com/kvsession/kvsession/kvfasthttp"
)

// fasthttpServer serves the routes on fasthttp, with kvfasthttp.
type fasthttpServer struct{ srv *fasthttp.Server }

func newFasthttpServer(a *app, backend kvsession.Backend, logger *slog.Logger) (server, error) {
	// A cookie session split over several cookies makes request headers
	// larger than fasthttp reads by default; the server backend keeps
	// fasthttp's default.
	opts := kvfasthttp.Options{
		Skip:           func(ctx *fasthttp.RequestCtx) bool { return skipsSession(string(ctx.Path())) },
		ReadBufferSize: kvfasthttp.RequiredReadBufferSize(backend, kvfasthttp.DefaultHeaderRoom),
		ErrorHandler: func(ctx *fasthttp.RequestCtx, err error) {
			// The handler's answer, headers included, must not go out.
			ctx.Response.Reset()
			a.sessionUnavailable(fastExchange{ctx}, err)
		},
	}
	// Reads skip the lock; the library re-reads a read-only session under
	// the lock when an idle extension or id rotation has to save it.
	if backend.Config().Lock {
		opts.ReadOnly = func(ctx *fasthttp.RequestCtx) bool {
			return readOnly(fastMethod(ctx.Method()), string(ctx.Path()))
		}
	}
	mw, err := kvfasthttp.New(backend, opts)
	if err != nil {
		return nil, err
	}
	srv := mw.NewServer(func(ctx *fasthttp.RequestCtx) { a.handle(fastExchange{ctx}) })
	srv.Name = serverName
	srv.ReadTimeout = readTimeout
	srv.WriteTimeout = writeTimeout
	srv.IdleTimeout = idleTimeout
	srv.MaxRequestBodySize = maxBodyBytes
	// fasthttp quotes the requests it cannot read in its log, session
	// cookies included. NewServer already keeps them out; replacing its
	// Logger keeps that only if the new one is wrapped by mw.Logger, and
	// the flag is restated so that this example, copied, stays safe.
	srv.SecureErrorLogMessage = true
	srv.Logger = mw.Logger(fasthttpLogger{logger})
	return fasthttpServer{srv}, nil
}

func (s fasthttpServer) serve(ln net.Listener) error { return s.srv.Serve(ln) }

// shutdown closes the listener and waits for in-flight requests; Serve
// returns as soon as the listener closes, before they finish.
func (s fasthttpServer) shutdown(ctx context.Context) error { return s.srv.ShutdownWithContext(ctx) }

func (s fasthttpServer) logAttrs() []any { return []any{"read_buffer_size", s.srv.ReadBufferSize} }

// fasthttpLogger routes fasthttp's own messages (connection errors and
// the like) to the same structured log as everything else.
type fasthttpLogger struct{ l *slog.Logger }

func (f fasthttpLogger) Printf(format string, args ...any) {
	f.l.Warn(fmt.Sprintf(format, args...), "source", "fasthttp")
}

// fastExchange is the exchange of a fasthttp request: one pointer, so that
// making it an exchange allocates nothing. Fiber, which runs on fasthttp,
// uses it too.
type fastExchange struct{ ctx *fasthttp.RequestCtx }

func (x fastExchange) Method() string { return fastMethod(x.ctx.Method()) }

// Path is fasthttp's decoded and normalized path.
func (x fastExchange) Path() string { return string(x.ctx.Path()) }

func (x fastExchange) Query(name string) (string, bool) { return fastQuery(x.ctx.QueryArgs(), name) }

// Body never fails: fasthttp refuses a body over MaxRequestBodySize itself.
func (x fastExchange) Body() ([]byte, error) { return x.ctx.PostBody(), nil }

func (x fastExchange) Session() *kvsession.Session { return kvfasthttp.Session(x.ctx) }

func (x fastExchange) Context() context.Context { return x.ctx }

func (x fastExchange) UserAgent() string { return string(x.ctx.UserAgent()) }

// RemoteAddr is the connection's peer address.
func (x fastExchange) RemoteAddr() string { return x.ctx.RemoteIP().String() }

func (x fastExchange) SetHeader(name, value string) { x.ctx.Response.Header.Set(name, value) }

func (x fastExchange) Send(status int, contentType string, body []byte) {
	fastSend(x.ctx, status, contentType)
	x.ctx.SetBody(body)
}

func (x fastExchange) SendString(status int, contentType, body string) {
	fastSend(x.ctx, status, contentType)
	x.ctx.SetBodyString(body)
}

func fastSend(ctx *fasthttp.RequestCtx, status int, contentType string) {
	ctx.SetStatusCode(status)
	if contentType != "" {
		ctx.SetContentType(contentType)
	}
}

// fastQuery returns the first value of the query parameter name. Has,
// rather than a nil Peek, tells "?name=" from no name at all.
func fastQuery(args *fasthttp.Args, name string) (string, bool) {
	if !args.Has(name) {
		return "", false
	}
	return string(args.Peek(name)), true
}

// fastMethod returns the method as a string, without allocating for the
// methods the routes know.
func fastMethod(m []byte) string {
	for _, known := range knownMethods {
		if string(m) == known {
			return known
		}
	}
	return string(m)
}

var knownMethods = [...]string{
	fasthttp.MethodGet, fasthttp.MethodHead, fasthttp.MethodPost, fasthttp.MethodPut,
	fasthttp.MethodDelete, fasthttp.MethodPatch, fasthttp.MethodOptions,
}

// Settings every server shares.
const (
	serverName   = "kvsession-playground" // the Server header
	readTimeout  = 10 * time.Second
	writeTimeout = 10 * time.Second
	idleTimeout  = time.Minute
)
