package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path"
	"strconv"
	"strings"

	"github.com/kvsession/kvsession"
	"github.com/kvsession/kvsession/kvhttp"
)

// nethttpServer serves the routes on net/http, with kvhttp.
type nethttpServer struct{ srv *http.Server }

func newNethttpServer(a *app, backend kvsession.Backend, logger *slog.Logger) (server, error) {
	opts := kvhttp.Options{
		Skip: func(r *http.Request) bool { return skipsSession(r.URL.Path) },
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			// kvhttp hands over its own writer with every header deleted,
			// normalizePath's too: nothing of the handler's answer goes out,
			// and the Server header is set again.
			w.Header().Set("Server", serverName)
			a.sessionUnavailable(netExchange{w, r}, err)
		},
	}
	if backend.Config().Lock {
		opts.ReadOnly = func(r *http.Request) bool { return readOnly(r.Method, r.URL.Path) }
	}
	mw, err := kvhttp.New(backend, opts)
	if err != nil {
		return nil, err
	}
	routes := mw.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { a.handle(netExchange{w, r}) }))
	return nethttpServer{&http.Server{
		Handler:           normalizePath(routes),
		ReadHeaderTimeout: readTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idleTimeout,
		// Header size stays at net/http's default, 1 MB: far more than the
		// largest session cookies need.
		ErrorLog: slog.NewLogLogger(logger.Handler().WithAttrs([]slog.Attr{slog.String("source", "net/http")}), slog.LevelWarn),
	}}, nil
}

func (s nethttpServer) serve(ln net.Listener) error {
	err := s.srv.Serve(ln)
	if errors.Is(err, http.ErrServerClosed) {
		return nil // shutdown was called
	}
	return err
}

// shutdown closes the listener and waits for in-flight requests; Serve
// returns as soon as it is called, before they finish.
func (s nethttpServer) shutdown(ctx context.Context) error { return s.srv.Shutdown(ctx) }

func (s nethttpServer) logAttrs() []any { return []any{"max_header_bytes", http.DefaultMaxHeaderBytes} }

// normalizePath gives next, middleware included, the request's path as
// fasthttp would see it (see cleanPath), and sets the Server header the
// other servers send.
func normalizePath(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Server", serverName)
		if p := cleanPath(r.URL.Path); p != r.URL.Path {
			// A shallow copy, as http.StripPrefix makes: a handler must not
			// change the request it was given.
			r2 := new(http.Request)
			*r2 = *r
			u := *r.URL
			u.Path, u.RawPath = p, ""
			r2.URL = &u
			r = r2
		}
		next.ServeHTTP(w, r)
	})
}

// cleanPath normalizes a decoded path as fasthttp's URI.Path does: a
// leading slash added, duplicate slashes merged, "." and ".." segments
// resolved without climbing above the root, and a trailing slash kept
// (path.Clean alone would drop it, and "/session/" would become
// "/session").
func cleanPath(p string) string {
	if !strings.HasPrefix(p, "/") {
		p = "/" + p
	}
	c := path.Clean(p)
	if c != "/" && (strings.HasSuffix(p, "/") || strings.HasSuffix(p, "/.") || strings.HasSuffix(p, "/..")) {
		c += "/"
	}
	return c
}

// netExchange is the exchange of a net/http request.
type netExchange struct {
	w http.ResponseWriter
	r *http.Request
}

func (x netExchange) Method() string { return x.r.Method }

// Path is the decoded path, which normalizePath has cleaned.
func (x netExchange) Path() string { return x.r.URL.Path }

func (x netExchange) Query(name string) (string, bool) {
	vs, ok := x.r.URL.Query()[name]
	if !ok {
		return "", false
	}
	return vs[0], true
}

// Body reads the whole body, up to maxBodyBytes: net/http, unlike fasthttp
// and Fiber, leaves limiting it to the handler.
func (x netExchange) Body() ([]byte, error) {
	body, err := io.ReadAll(http.MaxBytesReader(x.w, x.r.Body, maxBodyBytes))
	if _, tooLarge := errors.AsType[*http.MaxBytesError](err); tooLarge {
		return nil, errBodyTooLarge
	}
	return body, err
}

func (x netExchange) Session() *kvsession.Session { return kvhttp.Session(x.r) }

func (x netExchange) Context() context.Context { return x.r.Context() }

func (x netExchange) UserAgent() string { return x.r.UserAgent() }

// RemoteAddr is the connection's peer address, which net/http gives as
// host:port.
func (x netExchange) RemoteAddr() string {
	host, _, err := net.SplitHostPort(x.r.RemoteAddr)
	if err != nil {
		return x.r.RemoteAddr
	}
	return host
}

func (x netExchange) SetHeader(name, value string) { x.w.Header().Set(name, value) }

// Send sets Content-Length, as fasthttp does: net/http would send a body
// over 2 KB chunked.
func (x netExchange) Send(status int, contentType string, body []byte) {
	if x.header(status, contentType, len(body)) {
		x.w.Write(body)
	}
}

func (x netExchange) SendString(status int, contentType, body string) {
	if x.header(status, contentType, len(body)) {
		io.WriteString(x.w, body)
	}
}

// header writes the status line and headers and reports whether a body
// follows. Writing the header is when kvhttp saves the session: the
// routes change sessions before they answer.
func (x netExchange) header(status int, contentType string, n int) bool {
	if contentType == "" {
		x.w.WriteHeader(status)
		return false
	}
	h := x.w.Header()
	h.Set("Content-Type", contentType)
	h.Set("Content-Length", strconv.Itoa(n))
	x.w.WriteHeader(status)
	return true
}
