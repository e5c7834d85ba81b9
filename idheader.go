package kvsession

import (
	"bytes"
	"context"
	"fmt"
	"strings"
)

// The session id in a request header, for clients that keep no cookies
// (Config.IDHeader). Only the carrier differs from a cookie's: the id a
// header brings is read and checked as a cookie's value is (load), the
// session lives, rotates, renews and ends by the same code, and where that
// code would set or expire the cookie, setCookie and expireCookies hand
// over to writeIDHeader and forgetIDHeader here. So every guarantee of the
// cookie path (a Destroy holds, a rotated-out id leads to the current one
// within RotationGrace, a session ended by another request stays ended)
// holds in header mode without a line of its own.

// LoadFromHeader starts the session of a request that carried the
// Config.IDHeader header, in place of LoadFromRequest (see
// Backend.LoadFromHeader). Only a value of an id's length is kept, in the
// session's own buffer: anything else cannot be an id this backend drew,
// and however long it is, nothing of it is copied.
func (b *ServerBackend) LoadFromHeader(ctx context.Context, value []byte) *Session {
	s := b.open(ctx, nil)
	s.viaHeader, s.headerValue = true, len(value) > 0
	if len(value) == b.idLen {
		s.cookie = append(s.cookie[:0], value...)
	}
	return s
}

// LoadFromHeader starts a fresh session, written in cookies: cookie
// sessions have no id a header could carry, and NewCookie refuses
// Config.IDHeader, so no adapter calls it. value is ignored.
func (b *CookieBackend) LoadFromHeader(ctx context.Context, _ []byte) *Session {
	return b.open(ctx, nil)
}

// writeIDHeader is setCookie for a request in header mode: it gives the
// client id in Config.IDHeader, unless that is the id the client sent. A
// cookie is set again to push its expiry back (ExtendOnAccess, an idle
// extension), but a header has no expiry to refresh, and sending an
// unchanged id on every response would let the answer to a request that
// read the session before a concurrent rotation or RenewID hand the client
// back the old id, which then stops working. So the header says only what
// the client does not know yet.
func (c *core) writeIDHeader(s *Session, sink ResponseSink, id []byte) {
	if bytes.Equal(id, s.cookie) {
		return
	}
	sink.SetHeader(c.cfg.IDHeader, id)
	sink.AddHeader("Cache-Control", c.idHeaderNoCache)
}

// forgetIDHeader is expireCookies for a request in header mode: an empty
// Config.IDHeader tells the client to forget the id it sent, which leads to
// no session any more (or never did). A client that sent the header empty
// holds no id, and is told nothing.
func (c *core) forgetIDHeader(s *Session, sink ResponseSink) {
	if !s.headerValue {
		return
	}
	sink.SetHeader(c.cfg.IDHeader, nil)
	sink.AddHeader("Cache-Control", c.idHeaderNoCache)
}

// idHeaderNoCache is the Cache-Control value of a response that carries
// the id header: a shared cache must not replay the header to another
// request without asking the server (RFC 9111 §5.2.2.4), as no-cache=
// "Set-Cookie" keeps it from replaying a cookie. A cache that does not
// know the qualified form treats it as a plain no-cache, which is safe too.
func idHeaderNoCache(name string) string { return `no-cache="` + name + `"` }

// reservedIDHeaders are the header names Config.IDHeader may not take, each
// with why: fields whose meaning HTTP or cookies fix, which clients,
// proxies, servers and the backend itself read or write as such.
var reservedIDHeaders = func() map[string]string {
	m := map[string]string{}
	for _, group := range []struct {
		reason string
		names  []string
	}{
		{"a cookie field, which the cookie carrier reads and writes",
			[]string{"cookie", "set-cookie", "cookie2", "set-cookie2"}},
		{"an HTTP authentication field, whose syntax clients and proxies act on",
			[]string{"authorization", "proxy-authorization", "www-authenticate", "proxy-authenticate",
				"authentication-info", "proxy-authentication-info"}},
		{"a standard field that servers, clients, proxies or the backend itself set or act on",
			[]string{"vary", "cache-control", "connection", "keep-alive", "proxy-connection", "te", "trailer",
				"transfer-encoding", "upgrade", "host", "expect", "content-length", "content-type",
				"content-encoding", "date", "server", "user-agent", "location", "referer"}},
	} {
		for _, n := range group.names {
			m[n] = group.reason
		}
	}
	return m
}()

// maxIDHeaderBytes bounds the header's name: it is written on responses
// and matched on requests, and a real name is a few words.
const maxIDHeaderBytes = 256

// checkIDHeader validates Config.IDHeader ("" is off, and valid).
func checkIDHeader(name string) error {
	bad := func(format string, args ...any) error {
		return &ConfigError{Field: "IDHeader", Reason: fmt.Sprintf(format, args...)}
	}
	switch {
	case name == "":
		return nil
	case len(name) > maxIDHeaderBytes:
		return bad("%d bytes is longer than %d", len(name), maxIDHeaderBytes)
	case !validToken(name):
		return bad("%q is not a valid header name (RFC 9110 token)", name)
	}
	if reason, ok := reservedIDHeaders[strings.ToLower(name)]; ok {
		return bad("%q is %s; choose a name of your own, such as \"X-Session-Id\"", name, reason)
	}
	return nil
}
