package sessioncookie

import (
	"net/http"
	"strconv"
	"sync/atomic"
	"time"
)

// Options are the attributes every Set-Cookie line of the session cookie
// carries.
type Options struct {
	Path        string
	Domain      string // "" for a host-only cookie
	Secure      bool
	HTTPOnly    bool
	SameSite    string // the attribute's value: Lax, Strict or None
	Partitioned bool
	// Expires adds an Expires date beside Max-Age on a live cookie, for
	// browsers that predate Max-Age. Every current browser reads Max-Age
	// and, where both are given, ignores Expires.
	Expires bool
	// MaxAge is the usual lifetime of a persistent cookie: its Max-Age and
	// Expires are formatted once (Expires once a second), not per line.
	MaxAge time.Duration
}

// Attributes appends the attributes of the session cookie's Set-Cookie
// lines, from "; Path" on. Init it before use; it is safe for concurrent
// use after.
type Attributes struct {
	o       Options
	maxAge  string // o.MaxAge in seconds, rounded up
	expires atomic.Pointer[expiresCache]
}

// Init sets the attributes to write.
func (a *Attributes) Init(o Options) {
	a.o = o
	a.maxAge = strconv.FormatInt(int64((o.MaxAge+time.Second-1)/time.Second), 10)
	a.expires.Store(nil)
}

// AppendLive appends the attributes of a live cookie: a persistent one
// lives ttl from now (unix nanoseconds); any other goes when the browser
// closes.
func (a *Attributes) AppendLive(l []byte, persistent bool, ttl time.Duration, now int64) []byte {
	l = a.appendScope(l)
	if persistent {
		l = append(l, "; Max-Age="...)
		if ttl == a.o.MaxAge {
			l = append(l, a.maxAge...)
			if a.o.Expires {
				l = append(l, "; Expires="...)
				l = append(l, a.expiresAt(now)...)
			}
		} else {
			secs := int64((ttl + time.Second - 1) / time.Second)
			l = strconv.AppendInt(l, secs, 10)
			if a.o.Expires {
				l = append(l, "; Expires="...)
				l = time.Unix(now/int64(time.Second)+secs, 0).UTC().AppendFormat(l, http.TimeFormat)
			}
		}
	}
	return a.appendFlags(l)
}

// AppendExpired appends the attributes that delete a cookie: the same
// scope, so it is the same cookie to the browser, and a past expiry. It
// gives Expires as well as Max-Age=0 whatever Options.Expires says: a
// deletion is rare (logout, an ended session), and one that a browser
// ignored would leave the cookie in place, which a few bytes once a
// session do not outweigh.
func (a *Attributes) AppendExpired(l []byte) []byte {
	l = a.appendScope(l)
	l = append(l, "; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT"...)
	return a.appendFlags(l)
}

func (a *Attributes) appendScope(l []byte) []byte {
	l = append(l, "; Path="...)
	l = append(l, a.o.Path...)
	if a.o.Domain != "" {
		l = append(l, "; Domain="...)
		l = append(l, a.o.Domain...)
	}
	return l
}

func (a *Attributes) appendFlags(l []byte) []byte {
	if a.o.Secure {
		l = append(l, "; Secure"...)
	}
	if a.o.HTTPOnly {
		l = append(l, "; HttpOnly"...)
	}
	l = append(l, "; SameSite="...)
	l = append(l, a.o.SameSite...)
	if a.o.Partitioned {
		l = append(l, "; Partitioned"...)
	}
	return l
}

// expiresCache holds the Expires date for cookies set during one second, so
// the date is formatted once a second rather than once a response.
type expiresCache struct {
	unix int64
	text []byte
}

func (a *Attributes) expiresAt(nowNano int64) []byte {
	now := nowNano / int64(time.Second)
	if e := a.expires.Load(); e != nil && e.unix == now {
		return e.text
	}
	at := time.Unix(now, 0).Add(a.o.MaxAge).UTC()
	e := &expiresCache{unix: now, text: at.AppendFormat(nil, http.TimeFormat)}
	a.expires.Store(e)
	return e.text
}
