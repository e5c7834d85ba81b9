package main

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"strconv"
	"strings"

	"github.com/valyala/fasthttp"

	kvfasthttp "github.com/kvsession/kvsession/fasthttp"
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
//	GET    /counter         increment "counter" and return it
//
// {key} is everything after "/session/", slashes included. "renew" is an
// ordinary key for GET, PUT and DELETE, the way a method-aware router would
// resolve the overlap, so every key stays addressable.
type app struct {
	logger *slog.Logger
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

func (a *app) counter(ctx *fasthttp.RequestCtx, _ string) {
	sess := kvfasthttp.Session(ctx)
	// A missing counter, or one overwritten with a non-integer through
	// PUT /session/counter, starts again from zero.
	n, _ := sess.GetInt("counter")
	n++
	if err := sess.Set("counter", n); err != nil {
		a.serverError(ctx, "cannot set value", err)
		return
	}
	text(ctx, fasthttp.StatusOK, strconv.Itoa(n))
}
