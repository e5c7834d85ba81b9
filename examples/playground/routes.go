package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
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
//	GET    /devices         where the session's user is logged in: 200 application/json
//	                        {"user": U, "sessions": [{"handle", "created", "last_active",
//	                        "expires", "user_agent", "remote_addr", "current"}, ...]},
//	                        the most recently active first. "current" is true for the
//	                        request's own session; user_agent and remote_addr are ""
//	                        unless it logged in under -record-client; "expires" is left
//	                        out for a session that never expires. 404 "not logged in"
//	                        (as /whoami) when the session has no user
//	POST   /devices/end?handle=H
//	                        end the user's session whose handle is H (from GET
//	                        /devices): 204 if ended; 404 "no such session" if the
//	                        user has none with that handle (ended already, or someone
//	                        else's: a user ends only their own). Refused, in this
//	                        order: 400 without a handle, 404 "not logged in" without
//	                        a user, 400 for a malformed handle. H may be the
//	                        request's own session: it is destroyed as by DELETE
//	                        /session, and the response expires its cookie
//
// Both /devices routes need -backend server: with -backend cookie they
// answer 501 Not Implemented, since cookie sessions keep no server-side
// list of a user's sessions. Sessions are named by their handle
// (Session.Handle), never by their id: the list is safe to show and log.
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
// GET /session, GET /session/{key}, GET /whoami and GET /devices only read
// the session, and say so (readOnly) so that with -lock they neither wait
// for nor take the session's lock. GET /counter writes: it takes the lock
// like PUT and POST, and so does POST /devices/end, whose request may end
// its own session; ending another one needs no lock (DestroyUserSession
// takes none), so holding its own is no obstacle.
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
	// server is the server backend, for the /devices routes; nil with
	// the cookie backend, which cannot list a user's sessions.
	server *kvsession.ServerBackend
	// recordClient is -record-client: POST /login records the client
	// (Session.SetClientInfo).
	recordClient bool
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
	// UserAgent is the request's User-Agent header, "" without one.
	UserAgent() string
	// RemoteAddr is the IP address of the client the connection comes
	// from, without the port: the peer, never a header such as
	// X-Forwarded-For, since the playground trusts no proxy.
	RemoteAddr() string
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
func newApp(logger *slog.Logger, backend kvsession.Backend, recordClient bool) *app {
	a := &app{logger: logger, maxAgeLimit: backend.Config().MaxAgeLimit, recordClient: recordClient}
	switch b := backend.(type) {
	case *kvsession.ServerBackend:
		a.server = b
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
	return path == "/session" || path == "/whoami" || path == "/devices" ||
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
	devicesMethods = newMethods(route{http.MethodGet, (*app).devices})
	endMethods     = newMethods(route{http.MethodPost, (*app).endDevice})
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
	case path == "/devices":
		a.dispatch(x, "", devicesMethods)
	case path == "/devices/end":
		a.dispatch(x, "", endMethods)
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
	// Only when asked to (-record-client): a user agent and an address are
	// personal data, kept for as long as the session lives.
	if a.recordClient {
		if err := sess.SetClientInfo(x.UserAgent(), x.RemoteAddr()); err != nil {
			a.serverError(x, "cannot record the client", err) // an IP address is well within its limit
			return
		}
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

// device is one of the user's sessions, as GET /devices shows it: what
// kvsession.SessionInfo says of it, and whether it is the request's own.
type device struct {
	Handle     string    `json:"handle"`
	Created    time.Time `json:"created"`
	LastActive time.Time `json:"last_active"`
	Expires    time.Time `json:"expires,omitzero"`
	UserAgent  string    `json:"user_agent"`
	RemoteAddr string    `json:"remote_addr"`
	Current    bool      `json:"current"`
}

// devicesAnswer is the body of GET /devices: an object rather than a bare
// list, so that fields can be added without breaking a client.
type devicesAnswer struct {
	User     string   `json:"user"`
	Sessions []device `json:"sessions"`
}

// serverOnly answers a /devices route on the cookie backend, which keeps
// no list of a user's sessions to show or end.
func (a *app) serverOnly(x exchange) {
	x.SendString(http.StatusNotImplemented, textPlain,
		x.Path()+" needs -backend server: cookie sessions keep no server-side list of a user's sessions\n")
}

// loggedInUser loads the session and returns its user, or answers (500 if
// the session cannot be loaded, 404 if it has no user) and returns "".
// Loading first keeps a store failure from passing for "not logged in".
func (a *app) loggedInUser(x exchange) string {
	sess := x.Session()
	if err := sess.Load(); err != nil {
		a.serverError(x, "cannot load session", err)
		return ""
	}
	user := sess.User()
	if user == "" {
		x.SendString(http.StatusNotFound, textPlain, "not logged in\n")
	}
	return user
}

func (a *app) devices(x exchange, _ string) {
	if a.server == nil {
		a.serverOnly(x)
		return
	}
	user := a.loggedInUser(x)
	if user == "" {
		return
	}
	infos, err := a.server.UserSessions(x.Context(), user)
	if err != nil {
		a.serverError(x, "cannot list the user's sessions", err)
		return
	}
	own := x.Session().Handle()
	list := make([]device, 0, len(infos))
	for _, info := range infos {
		list = append(list, device{
			Handle: info.Handle, Created: info.Created.UTC(), LastActive: info.LastActive.UTC(), Expires: info.Expires.UTC(),
			UserAgent: info.UserAgent, RemoteAddr: info.RemoteAddr, Current: info.Handle == own,
		})
	}
	// The most recently active first, as such pages show them; the
	// handle settles ties, so that the order is the same on every call.
	slices.SortFunc(list, func(p, q device) int {
		if c := q.LastActive.Compare(p.LastActive); c != 0 {
			return c
		}
		return strings.Compare(p.Handle, q.Handle)
	})
	body, err := json.Marshal(devicesAnswer{User: user, Sessions: list})
	if err != nil {
		a.serverError(x, "cannot encode the user's sessions", err)
		return
	}
	x.Send(http.StatusOK, appJSON, body)
}

func (a *app) endDevice(x exchange, _ string) {
	if a.server == nil {
		a.serverOnly(x)
		return
	}
	handle, _ := x.Query("handle")
	if handle == "" {
		x.SendString(http.StatusBadRequest, textPlain, "missing ?handle=\n")
		return
	}
	// The user is the session's own, never one the request names: a
	// user can end only their own sessions, whatever handle is sent.
	user := a.loggedInUser(x)
	if user == "" {
		return
	}
	sess := x.Session()
	if handle == sess.Handle() {
		// Its own session: ended through the Session, as DELETE /session
		// ends it, so that the response expires the cookie and nothing
		// of the session is saved after it. DestroyUserSession would
		// delete the record under the request, which still holds the
		// session (and, with -lock, its lock).
		if err := sess.Destroy(); err != nil {
			a.serverError(x, "cannot destroy session", err)
			return
		}
		x.Send(http.StatusNoContent, "", nil)
		return
	}
	// DestroyUserSession takes no session locks, so this request's own
	// lock (-lock) is no obstacle. Not canceled by a graceful shutdown,
	// like /logout-all: an end that has started should finish.
	ended, err := a.server.DestroyUserSession(context.WithoutCancel(x.Context()), user, handle)
	switch {
	case errors.Is(err, kvsession.ErrInvalidHandle):
		x.SendString(http.StatusBadRequest, textPlain, "malformed ?handle=: want a handle as GET /devices lists them\n")
	case err != nil:
		a.serverError(x, "cannot end the session", err)
	case !ended:
		// Gone already, or never this user's: the answer is the same, so
		// that it tells nothing of other users' sessions.
		x.SendString(http.StatusNotFound, textPlain, "no such session\n")
	default:
		x.Send(http.StatusNoContent, "", nil)
	}
}
