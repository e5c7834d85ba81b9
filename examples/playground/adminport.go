package main

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"log/slog"
	"net"
	"net/http"
	"strings"

	"github.com/kvsession/kvsession"
	"github.com/kvsession/kvsession/admin"
)

// The admin port (-admin-addr) serves package admin's handler, the one
// cmd/kvsession-admin talks to with -url, as a service would mount it:
// under a path prefix, behind its own authentication, on a listener of its
// own that the public routes never reach. Whoever passes the check can
// end any session and read any session's values, so every request must
// carry the -admin-token as a bearer token:
//
//	kvsession-admin -url http://127.0.0.1:9090/admin/sessions -header "Authorization: Bearer $TOKEN" count
//
// It serves plain HTTP, so the token crosses the network in the clear:
// keep the port on loopback (the playground warns otherwise), or behind a
// proxy that adds TLS.

// adminPrefix is the path the admin handler is served under.
const adminPrefix = "/admin/sessions"

// newAdminServer returns the admin port's server over b, for requests
// bearing token.
func newAdminServer(b *kvsession.ServerBackend, token string, logger *slog.Logger) *http.Server {
	mux := http.NewServeMux()
	mux.Handle(adminPrefix+"/", http.StripPrefix(adminPrefix, admin.NewHandler(b)))
	// Anything else is answered in the handler's own form, so that
	// kvsession-admin pointed at the port without the prefix says why.
	mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) {
		adminError(w, http.StatusNotFound, "not found: the admin handler is under "+adminPrefix+"/")
	})
	logger = logger.With("source", "admin")
	return &http.Server{
		Handler:           requireToken(token, logger, mux),
		ReadHeaderTimeout: readTimeout,
		ReadTimeout:       readTimeout,
		IdleTimeout:       idleTimeout,
		// No WriteTimeout: a walk of a large store streams its answer for
		// as long as the walk takes.
		ErrorLog: slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
}

// requireToken passes on the requests whose Authorization header is
// "Bearer TOKEN" and answers every other one 401, whatever its path, so
// that the port tells nothing to a client without the token. The tokens
// are compared by their SHA-256, in constant time: neither the time taken
// nor an early exit on a length mismatch tells a guesser how close it came.
func requireToken(token string, logger *slog.Logger, next http.Handler) http.Handler {
	want := sha256.Sum256([]byte(token))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		scheme, got, _ := strings.Cut(r.Header.Get("Authorization"), " ")
		sum := sha256.Sum256([]byte(strings.TrimSpace(got)))
		if subtle.ConstantTimeCompare(sum[:], want[:]) != 1 || !strings.EqualFold(scheme, "Bearer") {
			// Neither the header nor the token is logged: a near miss is
			// most of a token.
			logger.Warn("playground: admin request refused: no valid bearer token", "remote_addr", r.RemoteAddr, "method", r.Method)
			w.Header().Set("WWW-Authenticate", `Bearer realm="kvsession-admin"`)
			adminError(w, http.StatusUnauthorized, "unauthorized: send the header \"Authorization: Bearer TOKEN\" with the playground's -admin-token")
			return
		}
		next.ServeHTTP(w, r)
	})
}

// adminError answers as the admin handler answers a request it cannot
// serve: status, and one JSON line {"error": msg}.
func adminError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(admin.Event{Error: msg})
}

// isLoopback reports whether addr, a listener's address, accepts
// connections from this machine only.
func isLoopback(addr net.Addr) bool {
	tcp, ok := addr.(*net.TCPAddr)
	return ok && tcp.IP.IsLoopback()
}
