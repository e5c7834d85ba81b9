// Package fasthttpio carries a session through a fasthttp request: the
// Cookie header (or the id header, Config.IDHeader) in, the context store
// calls run under, and the Set-Cookie (or id), Vary and Cache-Control
// headers out. kvfasthttp and kvfiber (whose requests are fasthttp
// requests) share it, so that both read cookies and write headers alike.
package fasthttpio

import (
	"bytes"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/kvsession/kvsession"
)

// Load starts the request's session from b: from the id header idHeader
// (Config.IDHeader; "" when off) if the request carries it, with any
// value, else from its cookies. Nothing else is looked at: an id in the
// query string is never read.
func Load(b kvsession.Backend, ctx *fasthttp.RequestCtx, idHeader string) *kvsession.Session {
	rc := RequestContext{RequestCtx: ctx}
	if idHeader != "" {
		if v, ok := IDHeader(&ctx.Request.Header, idHeader); ok {
			return b.LoadFromHeader(rc, v)
		}
	}
	return b.LoadFromRequest(rc, CookieHeader(&ctx.Request.Header))
}

// IDHeader returns the value of the request's header name, and whether the
// request carried it at all (an empty value included). Several lines of it
// are joined with ", ", as RFC 9110 §5.3 combines them, which no id
// matches: a request sending two ids gets a fresh session, not either of
// them. fasthttp keeps a chunked request's trailer fields beside its
// header fields, so the id sent as a trailer counts as sent in the header:
// the client's own choice either way, and never the URL.
func IDHeader(h *fasthttp.RequestHeader, name string) ([]byte, bool) {
	all := h.PeekAll(name)
	switch len(all) {
	case 0:
		return nil, false
	case 1:
		return all[0], true
	}
	return bytes.Join(all, []byte(", ")), true
}

// CookieHeader returns the request's Cookie header as fasthttp read it: the
// backend reads its (possibly split) cookies itself and must see every one,
// duplicates included. Clients send one Cookie header; several are joined
// as RFC 9113 §8.2.3 prescribes. If something before the middleware made
// fasthttp parse the cookies, fasthttp rebuilds the header, at the cost of
// an allocation.
func CookieHeader(h *fasthttp.RequestHeader) []byte {
	all := h.PeekAll(fasthttp.HeaderCookie)
	switch len(all) {
	case 0:
		return nil
	case 1:
		return all[0]
	}
	var joined []byte
	for i, v := range all {
		if i > 0 {
			joined = append(joined, "; "...)
		}
		joined = append(joined, v...)
	}
	return joined
}

// RequestContext is the context store calls run under: the request's
// values, without the cancellation fasthttp signals on RequestCtx when the
// server starts shutting down. A request that is allowed to finish during a
// graceful shutdown must also be allowed to save its session. It carries
// no deadline: a hung store is bounded by Config.StoreTimeout, per store
// call, which the backend applies. It is a single pointer, so converting it
// to context.Context does not allocate.
type RequestContext struct{ *fasthttp.RequestCtx }

func (RequestContext) Deadline() (time.Time, bool) { return time.Time{}, false }
func (RequestContext) Done() <-chan struct{}       { return nil }
func (RequestContext) Err() error                  { return nil }

// ResponseSink writes the backend's cookies and headers into a fasthttp
// response header (kvsession.ResponseSink).
type ResponseSink struct{ H *fasthttp.ResponseHeader }

func (r ResponseSink) SetCookie(name string, line []byte) {
	r.H.DelCookie(name)
	r.H.AddBytesV(fasthttp.HeaderSetCookie, line)
}

// AddHeader leaves out a Vary value the response already varies on, so
// that a handler's own Vary: Cookie is not repeated.
func (r ResponseSink) AddHeader(name, value string) {
	if name == fasthttp.HeaderVary && variesOn(r.H.PeekAll(name), value) {
		return
	}
	r.H.Add(name, value)
}

// SetHeader replaces the header, copying value; fasthttp sends it even
// when it is empty.
func (r ResponseSink) SetHeader(name string, value []byte) { r.H.SetBytesV(name, value) }

// variesOn reports whether the Vary header values list token, or "*".
func variesOn(values [][]byte, token string) bool {
	for _, v := range values {
		for len(v) > 0 {
			var item []byte
			if i := bytes.IndexByte(v, ','); i >= 0 {
				item, v = v[:i], v[i+1:]
			} else {
				item, v = v, nil
			}
			item = bytes.TrimSpace(item)
			if string(item) == "*" || bytes.EqualFold(item, []byte(token)) {
				return true
			}
		}
	}
	return false
}
