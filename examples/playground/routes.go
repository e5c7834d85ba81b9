package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/kvsession/kvsession"
)

// Routes:
//
//	GET    /healthz         200 "ok"; never touches the session
//	GET    /session         the session as a JSON object
//	DELETE /session         destroy the session (data deleted, cookie expired, or
//	                        with -id-header an empty id header)
//	POST   /session/renew   new session id, same data
//	GET    /session/{key}   the value under key, 404 if absent
//	PUT    /session/{key}   store the request body under key (as a string)
//	DELETE /session/{key}   remove key
//	GET    /counter         increment "counter" and return it; ?pause=50ms waits that long
//	                        (at most 1s) between reading and writing it, so that
//	                        concurrent requests overlap: with -lock=false a burst of
//	                        them loses increments, with -lock none
//	POST   /login?user=U    bind the session to user U and give it a new id (204);
//	                        400 without a user
//	POST   /login?user=U&remember=DURATION
//	                        the same, and the session lives DURATION (a Go duration:
//	                        720h, 90m) instead of -max-age, with a persistent cookie
//	                        (Session.SetMaxAge): "remember me". From 1s to
//	                        -max-age-limit; 0, like a login without remember=, is
//	                        -max-age. 400, changing nothing, for anything else
//	GET    /whoami          the user the session is bound to, 404 if none
//	POST   /logout-all?user=U
//	                        end every session bound to U, this client's included;
//	                        400 without a user. The server backend deletes them and
//	                        answers the number it deleted ("3"). The cookie backend
//	                        cannot count cookies it handed out: it revokes them all
//	                        (see kvsession.CookieBackend.RevokeUser) and answers
//	                        "revoked". Either way the answer is 200 text/plain, and
//	                        X-Sessions-Ended says "count" or "revoked" to tell them
//	                        apart without parsing the body.
//
// {key} is everything after "/session/", slashes included. "renew" is an
// ordinary key for GET, PUT and DELETE, the way a method-aware router would
// resolve the overlap, so every key stays addressable.
//
// /login and /logout-all trust the user named in the query: the playground
// has no passwords, and anyone may log anyone out. A real login checks
// credentials before SetUser; a real "log out everywhere" takes the user
// from the caller's own session, or checks that the caller may act for them.
// Taking it from the caller's session needs care with Config.Lock: the
// request then holds its session's lock, which DestroyUserSessions waits
// for in vain (see logoutAll).
//
// GET /session, GET /session/{key} and GET /whoami only read the session,
// and say so (readOnly) so that with -lock they neither wait for nor take the
// session's lock. GET /counter writes: it takes the lock like PUT and POST.
//
// The routes are written once, against exchange, and every server the
// playground runs on (-server) answers them alike: the same status codes,
// bodies, content types and headers. Paths are matched percent-decoded and
// normalized as fasthttp normalizes them (duplicate slashes merged, "." and
// ".." segments resolved, a trailing slash kept), so "/session//a" and
// "/session/%61" name the key "a" on every server. A session that cannot
// be loaded or saved is answered by sessionUnavailable on every server.
// What differs is what each server answers on its own, before any route
// runs: to a request it cannot read, or whose header or body is over its
// limits.
type app struct {
	logger *slog.Logger
	// maxAgeLimit is Config.MaxAgeLimit: the longest ?remember=.
	maxAgeLimit time.Duration
	// endUserSessions ends every session bound to user and returns the
	// body and X-Sessions-Ended header of the /logout-all answer.
	endUserSessions func(ctx context.Context, user string) (body, kind string, err error)
}

// exchange is one request and its response, as the routes see them. Each
// server the playground runs on implements it over its own request type
// (fastExchange, fiberExchange, netExchange).
type exchange interface {
	// Method is the request method, such as "GET".
	Method() string
	// Path is the request path, percent-decoded and normalized (see the
	// routes above).
	Path() string
	// Query returns the first value of the query parameter name, and
	// whether the query has it at all ("?remember=" has it, empty).
	Query(name string) (value string, ok bool)
	// Body returns the request body. It fails only on a server that reads
	// the body in the handler and found it too large (errBodyTooLarge).
	Body() ([]byte, error)
	// Session is the request's session, nil on /healthz, which skips
	// sessions.
	Session() *kvsession.Session
	// Context is the request's context.
	Context() context.Context
	// SetHeader sets a response header, replacing any of that name.
	SetHeader(name, value string)
	// Send answers with status and body, of type contentType; with
	// contentType "" it answers with status alone, and no body.
	Send(status int, contentType string, body []byte)
	// SendString is Send with a string body.
	SendString(status int, contentType, body string)
}

// Content types of the answers.
const (
	textPlain = "text/plain; charset=utf-8"
	appJSON   = "application/json"
)

// newApp returns the routes over backend, which must be one of the two
// the playground makes.
func newApp(logger *slog.Logger, backend kvsession.Backend) *app {
	a := &app{logger: logger, maxAgeLimit: backend.Config().MaxAgeLimit}
	switch b := backend.(type) {
	case *kvsession.ServerBackend:
		a.endUserSessions = func(ctx context.Context, user string) (string, string, error) {
			n, err := b.DestroyUserSessions(ctx, user)
			return strconv.Itoa(n), "count", err
		}
	case *kvsession.CookieBackend:
		a.endUserSessions = func(ctx context.Context, user string) (string, string, error) {
			return "revoked", "revoked", b.RevokeUser(ctx, user)
		}
	default:
		panic(fmt.Sprintf("playground: unexpected backend %T", backend))
	}
	return a
}

// skipsSession reports whether requests for path run without a session:
// health checks run often and carry no cookie worth reading; skipping them
// keeps them off the store entirely.
func skipsSession(path string) bool { return path == "/healthz" }

// readOnly reports whether a request only reads its session (see the
// routes above), for the middlewares' ReadOnly option. It lists the reading
// routes rather than excluding the writing ones, so that a route added
// later takes the lock until it is known not to need it: a read-only
// session that is changed is still saved, but without the lock's
// protection. HEAD is answered 405 without touching the session, so it
// does not matter either way.
func readOnly(method, path string) bool {
	if method != http.MethodGet && method != http.MethodHead {
		return false
	}
	return path == "/session" || path == "/whoami" ||
		(strings.HasPrefix(path, sessionPrefix) && len(path) > len(sessionPrefix))
}

// route is one method a path answers to; handlers get the {key} segment
// ("" on paths that have none).
type route struct {
	method string
	h      func(a *app, x exchange, key string)
}

// methods are the routes of one path, and the Allow header of its 405
// answer, which lists them in a stable order.
type methods struct {
	routes []route
	allow  string
}

func newMethods(routes ...route) methods {
	names := make([]string, len(routes))
	for i, r := range routes {
		names[i] = r.method
	}
	return methods{routes: routes, allow: strings.Join(names, ", ")}
}

const sessionPrefix = "/session/"

// The routes of each path, made once rather than per request.
var (
	healthzMethods = newMethods(route{http.MethodGet, (*app).healthz})
	sessionMethods = newMethods(
		route{http.MethodGet, (*app).getSession},
		route{http.MethodDelete, (*app).destroySession})
	counterMethods = newMethods(route{http.MethodGet, (*app).counter})
	loginMethods   = newMethods(route{http.MethodPost, (*app).login})
	whoamiMethods  = newMethods(route{http.MethodGet, (*app).whoami})
	logoutMethods  = newMethods(route{http.MethodPost, (*app).logoutAll})
	keyMethods     = newMethods(
		route{http.MethodGet, (*app).getKey},
		route{http.MethodPut, (*app).putKey},
		route{http.MethodDelete, (*app).deleteKey})
	// "renew" is a key like any other, and POST /session/renew besides.
	renewMethods = newMethods(append(keyMethods.routes[:len(keyMethods.routes):len(keyMethods.routes)],
		route{http.MethodPost, (*app).renew})...)
)

// handle answers one request, on any server.
func (a *app) handle(x exchange) {
	path := x.Path()
	switch {
	case path == "/healthz":
		a.dispatch(x, "", healthzMethods)
	case path == "/session":
		a.dispatch(x, "", sessionMethods)
	case path == "/counter":
		a.dispatch(x, "", counterMethods)
	case path == "/login":
		a.dispatch(x, "", loginMethods)
	case path == "/whoami":
		a.dispatch(x, "", whoamiMethods)
	case path == "/logout-all":
		a.dispatch(x, "", logoutMethods)
	case strings.HasPrefix(path, sessionPrefix) && len(path) > len(sessionPrefix):
		key := path[len(sessionPrefix):]
		if key == "renew" {
			a.dispatch(x, key, renewMethods)
		} else {
			a.dispatch(x, key, keyMethods)
		}
	default:
		x.SendString(http.StatusNotFound, textPlain, "not found\n")
	}
}

// dispatch runs the route matching the request's method, or answers 405
// with the Allow header RFC 9110 requires.
func (a *app) dispatch(x exchange, key string, m methods) {
	method := x.Method()
	for _, r := range m.routes {
		if r.method == method {
			r.h(a, x, key)
			return
		}
	}
	x.SetHeader("Allow", m.allow)
	x.SendString(http.StatusMethodNotAllowed, textPlain, "method not allowed\n")
}

// serverError logs err and answers 500 without echoing it: store errors can
// name hosts and paths a client has no business seeing.
func (a *app) serverError(x exchange, what string, err error) {
	a.logger.Error("playground: "+what, "error", err, "path", x.Path())
	x.SendString(http.StatusInternalServerError, textPlain, what+"\n")
}

// sessionUnavailable answers, on every server, a request whose session
// could not be loaded or saved (the store failed, or the session grew too
// large to save), in place of the handler's answer: x holds none of it.
// Like serverError, it logs the error and does not echo it.
func (a *app) sessionUnavailable(x exchange, err error) {
	a.logger.Error("kvsession: session unavailable", "error", err, "path", x.Path())
	x.SendString(http.StatusInternalServerError, textPlain, "session unavailable\n")
}

func (a *app) healthz(x exchange, _ string) {
	x.SendString(http.StatusOK, textPlain, "ok")
}

func (a *app) getSession(x exchange, _ string) {
	// Values is never nil, so an empty session encodes as {}, not null.
	body, err := json.Marshal(x.Session().Values())
	if err != nil {
		a.serverError(x, "cannot encode session", err)
		return
	}
	x.Send(http.StatusOK, appJSON, body)
}

func (a *app) destroySession(x exchange, _ string) {
	if err := x.Session().Destroy(); err != nil {
		a.serverError(x, "cannot destroy session", err)
		return
	}
	x.Send(http.StatusNoContent, "", nil)
}

func (a *app) renew(x exchange, _ string) {
	if err := x.Session().RenewID(); err != nil {
		a.serverError(x, "cannot renew session", err)
		return
	}
	x.Send(http.StatusNoContent, "", nil)
}

func (a *app) getKey(x exchange, key string) {
	sess := x.Session()
	// The typed getters first: they show a stored string verbatim and an
	// integer in decimal, where fmt on Get's generic value would do the same
	// only by accident of its types.
	if s, ok := sess.GetString(key); ok {
		x.SendString(http.StatusOK, textPlain, s)
		return
	}
	if n, ok := sess.GetInt64(key); ok {
		x.SendString(http.StatusOK, textPlain, strconv.FormatInt(n, 10))
		return
	}
	if v, ok := sess.Get(key); ok {
		x.SendString(http.StatusOK, textPlain, fmt.Sprint(v))
		return
	}
	x.SendString(http.StatusNotFound, textPlain, "not found\n")
}

// maxBodyBytes bounds request bodies: fasthttp's default
// MaxRequestBodySize, and Fiber's default BodyLimit.
const maxBodyBytes = 4 << 20

// errBodyTooLarge is what exchange.Body returns for a body over
// maxBodyBytes, on the servers that leave it to the handler to find out.
var errBodyTooLarge = errors.New("request body too large: over 4 MB")

func (a *app) putKey(x exchange, key string) {
	body, err := x.Body()
	if errors.Is(err, errBodyTooLarge) {
		x.SendString(http.StatusRequestEntityTooLarge, textPlain, err.Error()+"\n")
		return
	}
	if err != nil {
		x.SendString(http.StatusBadRequest, textPlain, "cannot read the request body\n")
		return
	}
	// Stored as a string, not []byte, so that GET returns it verbatim and
	// GET /session shows it as text rather than base64.
	if err := x.Session().Set(key, string(body)); err != nil {
		a.serverError(x, "cannot set value", err)
		return
	}
	x.Send(http.StatusNoContent, "", nil)
}

func (a *app) deleteKey(x exchange, key string) {
	x.Session().Delete(key)
	x.Send(http.StatusNoContent, "", nil)
}

// maxPause bounds GET /counter?pause=, so that a request cannot hold a
// session's lock for long.
const maxPause = time.Second

func (a *app) counter(x exchange, _ string) {
	var pause time.Duration
	if arg, ok := x.Query("pause"); ok {
		d, err := time.ParseDuration(arg)
		if err != nil || d < 0 || d > maxPause {
			x.SendString(http.StatusBadRequest, textPlain, fmt.Sprintf("?pause= wants a duration from 0 to %v\n", maxPause))
			return
		}
		pause = d
	}
	sess := x.Session()
	// A missing counter, or one overwritten with a non-integer through
	// PUT /session/counter, starts again from zero.
	n, _ := sess.GetInt("counter")
	// With -lock, this request holds the session's lock from GetInt to the
	// save after the handler: others wait, and then read what it wrote.
	time.Sleep(pause)
	n++
	if err := sess.Set("counter", n); err != nil {
		a.serverError(x, "cannot set value", err)
		return
	}
	x.SendString(http.StatusOK, textPlain, strconv.Itoa(n))
}

// userArg returns the user query argument, or answers 400 and returns "".
func userArg(x exchange) string {
	user, _ := x.Query("user")
	if user == "" {
		x.SendString(http.StatusBadRequest, textPlain, "missing ?user=\n")
	}
	return user
}

// rememberArg returns the remember query argument (0 when absent), or
// answers 400 and returns false. It checks the range Session.SetMaxAge
// accepts itself, so that a refused login changes nothing: SetUser comes
// first and could not be undone.
func (a *app) rememberArg(x exchange) (time.Duration, bool) {
	arg, ok := x.Query("remember")
	if !ok {
		return 0, true
	}
	d, err := time.ParseDuration(arg)
	if err != nil || (d != 0 && (d < time.Second || d > a.maxAgeLimit)) {
		x.SendString(http.StatusBadRequest, textPlain, fmt.Sprintf(
			"?remember=%q: want a Go duration (such as 720h or 90m) from 1s to %v (-max-age-limit), or 0 for -max-age\n",
			arg, a.maxAgeLimit))
		return 0, false
	}
	return d, true
}

func (a *app) login(x exchange, _ string) {
	user := userArg(x)
	if user == "" {
		return
	}
	remember, ok := a.rememberArg(x)
	if !ok {
		return
	}
	sess := x.Session()
	// Loading first separates a store failure (500) from a user id that
	// SetUser refuses (400): SetUser reports both as plain errors.
	if err := sess.Load(); err != nil {
		a.serverError(x, "cannot load session", err)
		return
	}
	if err := sess.SetUser(user); err != nil {
		x.SendString(http.StatusBadRequest, textPlain, err.Error()+"\n")
		return
	}
	// Asked for or not: without remember= a login returns the session to
	// -max-age, as a "remember me" left unticked would.
	if err := sess.SetMaxAge(remember); err != nil {
		a.serverError(x, "cannot set the session's lifetime", err) // range checked above
		return
	}
	// A new id at every login, so that an id planted on the client before
	// it logged in (session fixation) does not lead to the logged-in
	// session. The data stays.
	if err := sess.RenewID(); err != nil {
		a.serverError(x, "cannot renew session", err)
		return
	}
	x.Send(http.StatusNoContent, "", nil)
}

func (a *app) whoami(x exchange, _ string) {
	if user := x.Session().User(); user != "" {
		x.SendString(http.StatusOK, textPlain, user)
		return
	}
	x.SendString(http.StatusNotFound, textPlain, "not logged in\n")
}

func (a *app) logoutAll(x exchange, _ string) {
	user := userArg(x)
	if user == "" {
		return
	}
	// This handler must not use its own session before ending the user's:
	// with -lock it would hold its session's lock, and DestroyUserSessions,
	// which takes each session's lock, would wait for it in vain until
	// LockWait if this client is one of the user's sessions.
	//
	// Not canceled by a graceful shutdown, like the middleware's own store
	// calls: a logout everywhere that has started should finish.
	body, kind, err := a.endUserSessions(context.WithoutCancel(x.Context()), user)
	if err != nil {
		a.serverError(x, "cannot end the user's sessions", err)
		return
	}
	x.SetHeader("X-Sessions-Ended", kind)
	x.SendString(http.StatusOK, textPlain, body)
}
