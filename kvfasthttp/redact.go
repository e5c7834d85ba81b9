package kvfasthttp

import (
	"fmt"
	"log"
	"log/slog"
	"os"
	"strings"

	"github.com/valyala/fasthttp"
)

// fasthttp logs, through Server.Logger, every connection it fails to serve,
// with the error; several of its errors quote the request they could not
// read. A request cut off mid-header, an oversized header (with
// Server.LogAllErrors) or any header fasthttp refuses puts the raw header,
// Cookie line included, into the message, unless SecureErrorLogMessage is
// set; even then "invalid header value" still quotes the offending value,
// and a Cookie header holding a stray control byte is that value, session
// cookie and all. Session ids and sealed cookies are bearer credentials:
// whoever reads the log could log in. RedactLogger closes that hole for
// every message, whatever bytes a client sent.

// redacted is what RedactLogger writes in place of what it removes.
const redacted = "[redacted]"

// minRedactedRun is the shortest run of URL-safe base64 characters
// RedactLogger removes wherever it stands. It is shorter than any session
// id (MinSessionIDBytes, 16 bytes, is 22 characters), so that a piece of
// one, cut by fasthttp's 200-byte snippet of a long header or by a stray
// byte, goes too; a piece short enough to stay gives at most 90 of an
// id's 128 or more bits. fasthttp's own messages have no word that long.
const minRedactedRun = 16

// RedactLogger returns a fasthttp.Logger for Server.Logger that passes each
// message to next (nil: the standard logger on stderr, as fasthttp's
// default) with every credential a request may have brought redacted:
//
//   - everything after "Cookie:" or "cookie=", in any case (Set-Cookie
//     too), to the end of that line, whether the line ends in a real line
//     break or in a quoted \r or \n;
//   - the value of every cookie pair named cookieName, or cookieName-N (the
//     cookie backend's segments), up to the next ';', space, comma or
//     quote, through quoted stray bytes (\x01);
//   - any run of 16 or more URL-safe base64 characters (A-Z a-z 0-9 - _),
//     the alphabet of session ids and sealed cookies, wherever it stands.
//
// It formats the message as log.Printf would before redacting it, so that
// nothing reaches next unredacted. The cost, an allocation or two, is paid
// only by messages: fasthttp logs failed connections, not requests.
//
// Middleware.NewServer installs one; a hand-made fasthttp.Server needs
// Logger: m.Logger(yours) (or RedactLogger(yours, the cookie name)) and
// SecureErrorLogMessage: true, which keeps most request bytes out of
// fasthttp's messages to begin with.
func RedactLogger(next fasthttp.Logger, cookieName string) fasthttp.Logger {
	if next == nil {
		next = log.New(os.Stderr, "", log.LstdFlags)
	}
	return redactLogger{next: next, cookieName: cookieName}
}

type redactLogger struct {
	next       fasthttp.Logger
	cookieName string
}

func (r redactLogger) Printf(format string, args ...any) {
	r.next.Printf("%s", Redact(fmt.Sprintf(format, args...), r.cookieName))
}

// Logger returns RedactLogger(next, the backend's cookie name): the Logger
// a fasthttp.Server serving this middleware should have, when it is not
// made by NewServer or its Logger is replaced.
func (m *Middleware) Logger(next fasthttp.Logger) fasthttp.Logger {
	return RedactLogger(next, m.backend.Config().CookieName)
}

// slogLogger hands fasthttp's messages to a slog.Logger as warnings.
type slogLogger struct{ l *slog.Logger }

func (s slogLogger) Printf(format string, args ...any) {
	s.l.Warn(fmt.Sprintf(format, args...), "source", "fasthttp")
}

// Redact returns msg with the credentials RedactLogger removes replaced by
// "[redacted]". It is what RedactLogger applies to each message, for loggers
// that are not fasthttp.Loggers.
func Redact(msg, cookieName string) string {
	msg = redactAfter(msg, func(s string, i int) int { return cookieHeaderAt(s, i) }, lineEnd)
	if cookieName != "" {
		msg = redactAfter(msg, func(s string, i int) int { return cookiePairAt(s, i, cookieName) }, valueEnd)
	}
	return redactRuns(msg)
}

// redactAfter replaces, at every position where start reports the index
// just past a credential's label, the text from there to end's index with
// redacted.
func redactAfter(s string, start func(s string, i int) int, end func(s string, i int) int) string {
	var b strings.Builder
	done := 0 // s[:done] is in b
	for i := 0; i < len(s); i++ {
		from := start(s, i)
		if from < 0 {
			continue
		}
		to := end(s, from)
		if b.Len() == 0 {
			b.Grow(len(s))
		}
		b.WriteString(s[done:from])
		b.WriteString(redacted)
		done = to
		i = max(to, from) - 1
	}
	if done == 0 {
		return s
	}
	b.WriteString(s[done:])
	return b.String()
}

// cookieHeaderAt returns the index after "cookie:" or "cookie=" (any case,
// spaces allowed before and after the separator) at s[i:], or -1.
func cookieHeaderAt(s string, i int) int {
	const label = "cookie"
	if len(s)-i < len(label) || !strings.EqualFold(s[i:i+len(label)], label) {
		return -1
	}
	j := skipSpaces(s, i+len(label))
	if j == len(s) || (s[j] != ':' && s[j] != '=') {
		return -1
	}
	return skipSpaces(s, j+1)
}

// cookiePairAt returns the index after "name=" or "name-N=" (name in any
// case) at s[i:], or -1.
func cookiePairAt(s string, i int, name string) int {
	if len(s)-i < len(name) || !strings.EqualFold(s[i:i+len(name)], name) {
		return -1
	}
	j := i + len(name)
	if j < len(s) && s[j] == '-' {
		k := j + 1
		for k < len(s) && s[k] >= '0' && s[k] <= '9' {
			k++
		}
		if k > j+1 {
			j = k
		}
	}
	j = skipSpaces(s, j)
	if j == len(s) || s[j] != '=' {
		return -1
	}
	return skipSpaces(s, j+1)
}

func skipSpaces(s string, i int) int {
	for i < len(s) && (s[i] == ' ' || s[i] == '\t') {
		i++
	}
	return i
}

// lineEnd returns the index of the end of the line at s[i:]: a CR or LF,
// or a quoted one (\r, \n) as fasthttp's %q quoting writes them.
func lineEnd(s string, i int) int {
	for ; i < len(s); i++ {
		switch s[i] {
		case '\r', '\n':
			return i
		case '\\':
			if i+1 < len(s) && (s[i+1] == 'r' || s[i+1] == 'n') {
				return i
			}
		}
	}
	return i
}

// valueEnd returns the index of the end of the cookie value at s[i:]: a
// separator, a quote (raw or quoted), or the end of the line. A quoted
// stray byte (\x01, \u00a0) does not end it: the rest of the id follows.
func valueEnd(s string, i int) int {
	for ; i < len(s); i++ {
		switch s[i] {
		case ';', ',', ' ', '\t', '"', '\'', '\r', '\n':
			return i
		case '\\':
			if i+1 < len(s) {
				switch s[i+1] {
				case 'x', 'u', 'U':
					i++ // the escape's letter; its digits are value-like
					continue
				}
			}
			return i
		}
	}
	return i
}

// redactRuns replaces every run of at least minRedactedRun URL-safe base64
// characters with the redacted mark.
func redactRuns(s string) string {
	var b strings.Builder
	done := 0
	for i := 0; i < len(s); {
		if !idByte(s[i]) {
			i++
			continue
		}
		j := i
		for j < len(s) && idByte(s[j]) {
			j++
		}
		if j-i >= minRedactedRun {
			if b.Len() == 0 {
				b.Grow(len(s))
			}
			b.WriteString(s[done:i])
			b.WriteString(redacted)
			done = j
		}
		i = j
	}
	if done == 0 {
		return s
	}
	b.WriteString(s[done:])
	return b.String()
}

// idByte reports whether c is of the URL-safe base64 alphabet that session
// ids and sealed cookies are written in.
func idByte(c byte) bool {
	return c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_'
}
