package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/kvsession/kvsession"
	"github.com/kvsession/kvsession/kvfasthttp"
)

// Routes:
//
//	GET    /healthz         200 "ok"; never touches the session
//	GET    /session         the session as a JSON object
//	DELETE /session         destroy the session (data deleted, cookie expired)
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
type app struct {
	logger *slog.Logger
	// maxAgeLimit is Config.MaxAgeLimit: the longest ?remember=.
	maxAgeLimit time.Duration
	// endUserSessions ends every session bound to user and returns the
	// body and X-Sessions-Ended header of the /logout-all answer.
	endUserSessions func(ctx context.Context, user string) (body, kind string, err error)
}

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

// readOnly reports whether a request only reads its session (see the
// routes above), for kvfasthttp.Options.ReadOnly. It lists the reading
// routes rather than excluding the writing ones, so that a route added
// later takes the lock until it is known not to need it: a read-only
// session that is changed is still saved, but without the lock's
// protection. HEAD is answered 405 without touching the session, so it
// does not matter either way.
func readOnly(ctx *fasthttp.RequestCtx) bool {
	if !ctx.IsGet() && !ctx.IsHead() {
		return false
	}
	path := string(ctx.Path())
	return path == "/session" || path == "/whoami" ||
		(strings.HasPrefix(path, sessionPrefix) && len(path) > len(sessionPrefix))
}

// route is one method a path answers to; handlers get the {key} segment
// ("" on paths that have none).
type route struct {
	method string
	h      func(ctx *fasthttp.RequestCtx, key string)
}

const sessionPrefix = "/session/"

func (a *app) handle(ctx *fasthttp.RequestCtx) {
	// Path is fasthttp's decoded and normalized path, so "/session//a" and
	// "/session/%61" mean the same key as "/session/a".
	path := string(ctx.Path())
	switch {
	case path == "/healthz":
		dispatch(ctx, "", route{fasthttp.MethodGet, a.healthz})
	case path == "/session":
		dispatch(ctx, "",
			route{fasthttp.MethodGet, a.getSession},
			route{fasthttp.MethodDelete, a.destroySession})
	case path == "/counter":
		dispatch(ctx, "", route{fasthttp.MethodGet, a.counter})
	case path == "/login":
		dispatch(ctx, "", route{fasthttp.MethodPost, a.login})
	case path == "/whoami":
		dispatch(ctx, "", route{fasthttp.MethodGet, a.whoami})
	case path == "/logout-all":
		dispatch(ctx, "", route{fasthttp.MethodPost, a.logoutAll})
	case strings.HasPrefix(path, sessionPrefix) && len(path) > len(sessionPrefix):
		key := path[len(sessionPrefix):]
		routes := []route{
			{fasthttp.MethodGet, a.getKey},
			{fasthttp.MethodPut, a.putKey},
			{fasthttp.MethodDelete, a.deleteKey},
		}
		if key == "renew" {
			routes = append(routes, route{fasthttp.MethodPost, a.renew})
		}
		dispatch(ctx, key, routes...)
	default:
		text(ctx, fasthttp.StatusNotFound, "not found\n")
	}
}

// dispatch runs the route matching the request's method, or answers 405
// with the Allow header RFC 9110 requires, listing the methods in the order
// given so the header is stable.
func dispatch(ctx *fasthttp.RequestCtx, key string, routes ...route) {
	method := string(ctx.Method())
	allow := make([]string, len(routes))
	for i, r := range routes {
		if r.method == method {
			r.h(ctx, key)
			return
		}
		allow[i] = r.method
	}
	ctx.Response.Header.Set(fasthttp.HeaderAllow, strings.Join(allow, ", "))
	text(ctx, fasthttp.StatusMethodNotAllowed, "method not allowed\n")
}

func text(ctx *fasthttp.RequestCtx, status int, body string) {
	ctx.SetStatusCode(status)
	ctx.SetContentType("text/plain; charset=utf-8")
	ctx.SetBodyString(body)
}

// serverError logs err and answers 500 without echoing it: store errors can
// name hosts and paths a client has no business seeing.
func (a *app) serverError(ctx *fasthttp.RequestCtx, what string, err error) {
	a.logger.Error("playground: "+what, "error", err, "path", string(ctx.Path()))
	text(ctx, fasthttp.StatusInternalServerError, what+"\n")
}

func (a *app) healthz(ctx *fasthttp.RequestCtx, _ string) {
	text(ctx, fasthttp.StatusOK, "ok")
}

func (a *app) getSession(ctx *fasthttp.RequestCtx, _ string) {
	// Values is never nil, so an empty session encodes as {}, not null.
	body, err := json.Marshal(kvfasthttp.Session(ctx).Values())
	if err != nil {
		a.serverError(ctx, "cannot encode session", err)
		return
	}
	ctx.SetStatusCode(fasthttp.StatusOK)
	ctx.SetContentType("application/json")
	ctx.SetBody(body)
}

func (a *app) destroySession(ctx *fasthttp.RequestCtx, _ string) {
	if err := kvfasthttp.Session(ctx).Destroy(); err != nil {
		a.serverError(ctx, "cannot destroy session", err)
		return
	}
	ctx.SetStatusCode(fasthttp.StatusNoContent)
}

func (a *app) renew(ctx *fasthttp.RequestCtx, _ string) {
	if err := kvfasthttp.Session(ctx).RenewID(); err != nil {
		a.serverError(ctx, "cannot renew session", err)
		return
	}
	ctx.SetStatusCode(fasthttp.StatusNoContent)
}

func (a *app) getKey(ctx *fasthttp.RequestCtx, key string) {
	sess := kvfasthttp.Session(ctx)
	// The typed getters first: they show a stored string verbatim and an
	// integer in decimal, where fmt on Get's generic value would do the same
	// only by accident of its types.
	if s, ok := sess.GetString(key); ok {
		text(ctx, fasthttp.StatusOK, s)
		return
	}
	if n, ok := sess.GetInt64(key); ok {
		text(ctx, fasthttp.StatusOK, strconv.FormatInt(n, 10))
		return
	}
	if v, ok := sess.Get(key); ok {
		text(ctx, fasthttp.StatusOK, fmt.Sprint(v))
		return
	}
	text(ctx, fasthttp.StatusNotFound, "not found\n")
}

func (a *app) putKey(ctx *fasthttp.RequestCtx, key string) {
	// Stored as a string, not []byte, so that GET returns it verbatim and
	// GET /session shows it as text rather than base64.
	if err := kvfasthttp.Session(ctx).Set(key, string(ctx.PostBody())); err != nil {
		a.serverError(ctx, "cannot set value", err)
		return
	}
	ctx.SetStatusCode(fasthttp.StatusNoContent)
}

func (a *app) deleteKey(ctx *fasthttp.RequestCtx, key string) {
	kvfasthttp.Session(ctx).Delete(key)
	ctx.SetStatusCode(fasthttp.StatusNoContent)
}

// maxPause bounds GET /counter?pause=, so that a request cannot hold a
// session's lock for long.
const maxPause = time.Second

func (a *app) counter(ctx *fasthttp.RequestCtx, _ string) {
	var pause time.Duration
	if arg := ctx.QueryArgs().Peek("pause"); arg != nil {
		d, err := time.ParseDuration(string(arg))
		if err != nil || d < 0 || d > maxPause {
			text(ctx, fasthttp.StatusBadRequest, fmt.Sprintf("?pause= wants a duration from 0 to %v\n", maxPause))
			return
		}
		pause = d
	}
	sess := kvfasthttp.Session(ctx)
	// A missing counter, or one overwritten with a non-integer through
	// PUT /session/counter, starts again from zero.
	n, _ := sess.GetInt("counter")
	// With -lock, this request holds the session's lock from GetInt to the
	// save after the handler: others wait, and then read what it wrote.
	time.Sleep(pause)
	n++
	if err := sess.Set("counter", n); err != nil {
		a.serverError(ctx, "cannot set value", err)
		return
	}
	text(ctx, fasthttp.StatusOK, strconv.Itoa(n))
}

// userArg returns the user query argument, or answers 400 and returns "".
func userArg(ctx *fasthttp.RequestCtx) string {
	user := string(ctx.QueryArgs().Peek("user"))
	if user == "" {
		text(ctx, fasthttp.StatusBadRequest, "missing ?user=\n")
	}
	return user
}

// rememberArg returns the remember query argument (0 when absent), or
// answers 400 and returns false. It checks the range Session.SetMaxAge
// accepts itself, so that a refused login changes nothing: SetUser comes
// first and could not be undone.
func (a *app) rememberArg(ctx *fasthttp.RequestCtx) (time.Duration, bool) {
	arg := ctx.QueryArgs().Peek("remember")
	if arg == nil {
		return 0, true
	}
	d, err := time.ParseDuration(string(arg))
	if err != nil || (d != 0 && (d < time.Second || d > a.maxAgeLimit)) {
		text(ctx, fasthttp.StatusBadRequest, fmt.Sprintf(
			"?remember=%q: want a Go duration (such as 720h or 90m) from 1s to %v (-max-age-limit), or 0 for -max-age\n",
			arg, a.maxAgeLimit))
		return 0, false
	}
	return d, true
}

func (a *app) login(ctx *fasthttp.RequestCtx, _ string) {
	user := userArg(ctx)
	if user == "" {
		return
	}
	remember, ok := a.rememberArg(ctx)
	if !ok {
		return
	}
	sess := kvfasthttp.Session(ctx)
	// Loading first separates a store failure (500) from a user id that
	// SetUser refuses (400): SetUser reports both as plain errors.
	if err := sess.Load(); err != nil {
		a.serverError(ctx, "cannot load session", err)
		return
	}
	if err := sess.SetUser(user); err != nil {
		text(ctx, fasthttp.StatusBadRequest, err.Error()+"\n")
		return
	}
	// Asked for or not: without remember= a login returns the session to
	// -max-age, as a "remember me" left unticked would.
	if err := sess.SetMaxAge(remember); err != nil {
		a.serverError(ctx, "cannot set the session's lifetime", err) // range checked above
		return
	}
	// A new id at every login, so that an id planted on the client before
	// it logged in (session fixation) does not lead to the logged-in
	// session. The data stays.
	if err := sess.RenewID(); err != nil {
		a.serverError(ctx, "cannot renew session", err)
		return
	}
	ctx.SetStatusCode(fasthttp.StatusNoContent)
}

func (a *app) whoami(ctx *fasthttp.RequestCtx, _ string) {
	if user := kvfasthttp.Session(ctx).User(); user != "" {
		text(ctx, fasthttp.StatusOK, user)
		return
	}
	text(ctx, fasthttp.StatusNotFound, "not logged in\n")
}

func (a *app) logoutAll(ctx *fasthttp.RequestCtx, _ string) {
	user := userArg(ctx)
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
	body, kind, err := a.endUserSessions(context.WithoutCancel(ctx), user)
	if err != nil {
		a.serverError(ctx, "cannot end the user's sessions", err)
		return
	}
	ctx.Response.Header.Set("X-Sessions-Ended", kind)
	text(ctx, fasthttp.StatusOK, body)
}
