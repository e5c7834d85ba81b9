package kvhttp

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"

	"github.com/kvsession/kvsession"
)

// response is the handler's side of one response: it commits the session
// (saves it and adds its cookies) just before anything of the response
// leaves, as the package documentation describes.
type response struct {
	m       *Middleware
	w       http.ResponseWriter // the middleware's writer
	r       *http.Request       // the request as the middleware received it
	session *kvsession.Session  // nil once the handler is done

	committed bool
	// changedBeforeCommit: the session was modified when it was
	// committed. A session modified at the end that was not then was
	// changed after the commit, which is not saved.
	changedBeforeCommit bool
	// failure is set when the save failed at the commit and the
	// ErrorHandler answered: the handler's writes return it.
	failure error
	// vary backs the Vary header the commit adds to a header that had
	// none, so that it costs no allocation of its own.
	vary [1]string
}

// commit saves the session and adds its cookies to the header, or, if that
// fails, has the ErrorHandler answer in the handler's place. status is the
// one the response goes out with: a 5xx saves nothing
// (kvsession.Config.SaveOnServerError).
func (rs *response) commit(status int) {
	rs.committed = true
	s := rs.session
	if s == nil {
		// The handler ended (a panic) without a commit: nothing is saved.
		return
	}
	rs.changedBeforeCommit = s.Modified()
	err := rs.m.backend.StoreInResponseStatus(s, headerSink{rs}, status)
	if err == nil {
		return
	}
	rs.failure = fmt.Errorf("%w: %w", ErrResponseReplaced, err)
	// What the handler prepared belongs to the response that is not
	// sent: a Content-Length, Content-Encoding or Content-Type of its
	// would misdescribe the error handler's body.
	clear(rs.w.Header())
	rs.m.onError(rs.w, rs.r, err)
}

// open commits the session, for a response of the given status, if
// nothing has yet, and reports whether the handler's response may still
// be written.
func (rs *response) open(status int) bool {
	if !rs.committed {
		rs.commit(status)
	}
	return rs.failure == nil
}

func (rs *response) Header() http.Header { return rs.w.Header() }

func (rs *response) WriteHeader(code int) {
	if code < 100 || code > 999 {
		// net/http panics on a code that cannot be sent: let it, before
		// anything is saved.
		rs.w.WriteHeader(code)
		return
	}
	if code <= 199 && code != http.StatusSwitchingProtocols {
		// An informational response leaves the final one to come: the
		// session may still change, and a Set-Cookie does not belong in it.
		if rs.failure == nil {
			rs.w.WriteHeader(code)
		}
		return
	}
	if rs.open(code) {
		rs.w.WriteHeader(code)
	}
}

func (rs *response) Write(p []byte) (int, error) {
	if !rs.open(http.StatusOK) {
		return 0, rs.failure
	}
	return rs.w.Write(p)
}

// WriteString keeps io.WriteString free of a []byte copy when the wrapped
// writer has it (net/http's does).
func (rs *response) WriteString(s string) (int, error) {
	if !rs.open(http.StatusOK) {
		return 0, rs.failure
	}
	return io.WriteString(rs.w, s)
}

// ReadFrom keeps io.Copy to the response on the wrapped writer's ReadFrom
// (net/http's sends files with sendfile), and copies when it has none.
func (rs *response) ReadFrom(src io.Reader) (int64, error) {
	if !rs.open(http.StatusOK) {
		return 0, rs.failure
	}
	if rf, ok := rs.w.(io.ReaderFrom); ok {
		return rf.ReadFrom(src)
	}
	return io.Copy(writerOnly{rs.w}, src)
}

// writerOnly hides everything but Write, so that io.Copy does not come
// back to ReadFrom.
type writerOnly struct{ io.Writer }

// Unwrap gives http.ResponseController the wrapped writer, for what it
// does without the response's header (deadlines, full duplex). Flush and
// Hijack are methods of the wrapper itself (when the wrapped writer can
// do them), so that the controller calls them, and the session is
// committed first, rather than unwrapping past them.
func (rs *response) Unwrap() http.ResponseWriter { return rs.w }

func (rs *response) flush() error {
	if !rs.open(http.StatusOK) {
		return rs.failure
	}
	return http.NewResponseController(rs.w).Flush()
}

func (rs *response) hijack() (net.Conn, *bufio.ReadWriter, error) {
	if !rs.open(http.StatusOK) {
		return nil, nil, rs.failure
	}
	return http.NewResponseController(rs.w).Hijack()
}

// push pushes through the first writer of the Unwrap chain that can: a
// push promise is not the response's header, so it commits nothing.
func (rs *response) push(target string, opts *http.PushOptions) error {
	if rs.failure != nil {
		return rs.failure
	}
	w := rs.w
	for range maxUnwrap {
		if p, ok := w.(http.Pusher); ok {
			return p.Push(target, opts)
		}
		u, ok := w.(rwUnwrapper)
		if !ok {
			break
		}
		w = u.Unwrap()
	}
	return http.ErrNotSupported
}

// headerSink writes the backend's cookies and headers into the response
// header, before it is sent. It is a single pointer, so passing it as a
// ResponseSink does not allocate.
type headerSink struct{ rs *response }

// SetCookie replaces any Set-Cookie the handler set for the same cookie:
// two would leave the browser to pick one.
func (k headerSink) SetCookie(name string, line []byte) {
	h := k.rs.w.Header()
	lines := h["Set-Cookie"]
	kept := lines[:0]
	for _, l := range lines {
		if !setsCookie(l, name) {
			kept = append(kept, l)
		}
	}
	clear(lines[len(kept):])
	h["Set-Cookie"] = append(kept, string(line))
}

// AddHeader leaves out a Vary value the response already varies on, so
// that a handler's own Vary: Cookie is not repeated; a Vary listing
// other fields (Accept-Encoding) gets Cookie added after it.
func (k headerSink) AddHeader(name, value string) {
	h := k.rs.w.Header()
	if name == "Vary" {
		values := h["Vary"]
		if variesOn(values, value) {
			return
		}
		if len(values) == 0 {
			// Every response that used the session gets it: from the
			// exchange's own storage rather than a slice of its own. Capped
			// at its length, so that an Add after this one copies.
			k.rs.vary[0] = value
			h["Vary"] = k.rs.vary[:1:1]
			return
		}
	}
	h.Add(name, value)
}

// SetHeader replaces the header with a copy of value: the header map
// outlives the call, value does not. net/http sends it even when empty.
func (k headerSink) SetHeader(name string, value []byte) {
	k.rs.w.Header().Set(name, string(value))
}

// variesOn reports whether the Vary header values list token, or "*".
func variesOn(values []string, token string) bool {
	for _, v := range values {
		for len(v) > 0 {
			item, rest, _ := strings.Cut(v, ",")
			item, v = strings.TrimSpace(item), rest
			if item == "*" || strings.EqualFold(item, token) {
				return true
			}
		}
	}
	return false
}

// setsCookie reports whether the Set-Cookie value line sets the cookie
// called name.
func setsCookie(line, name string) bool {
	for len(line) > 0 && line[0] == ' ' {
		line = line[1:]
	}
	return len(line) > len(name) && line[len(name)] == '=' && line[:len(name)] == name
}

// What the wrapped writer can do beyond http.ResponseWriter, as
// http.ResponseController would find it.
type ability uint8

const (
	canFlush ability = 1 << iota
	canHijack
	canPush
)

type rwUnwrapper interface{ Unwrap() http.ResponseWriter }

// maxUnwrap bounds the walk down an Unwrap chain, against a writer that
// unwraps to itself.
const maxUnwrap = 32

// abilitiesOf walks w's Unwrap chain as http.ResponseController does: a
// writer can flush if it, or one it unwraps to, has Flush or FlushError.
func abilitiesOf(w http.ResponseWriter) ability {
	var a ability
	for range maxUnwrap {
		if _, ok := w.(http.Flusher); ok {
			a |= canFlush
		} else if _, ok := w.(interface{ FlushError() error }); ok {
			a |= canFlush
		}
		if _, ok := w.(http.Hijacker); ok {
			a |= canHijack
		}
		if _, ok := w.(http.Pusher); ok {
			a |= canPush
		}
		u, ok := w.(rwUnwrapper)
		if !ok {
			break
		}
		w = u.Unwrap()
	}
	return a
}

// writer returns the response as the handler's http.ResponseWriter, with
// the optional interfaces the wrapped writer has and no others: code that
// checks for http.Flusher to decide whether it can stream, or for
// http.Hijacker to upgrade, must get the answer it would without the
// middleware. Each wrapper type is one pointer, so returning it as an
// interface does not allocate.
func (rs *response) writer() http.ResponseWriter {
	switch abilitiesOf(rs.w) {
	case canFlush | canHijack: // HTTP/1.x
		return flushHijackWriter{rs}
	case canFlush | canPush: // HTTP/2
		return flushPushWriter{rs}
	case canFlush:
		return flushWriter{rs}
	case canHijack:
		return hijackWriter{rs}
	case canPush:
		return pushWriter{rs}
	case canHijack | canPush:
		return hijackPushWriter{rs}
	case canFlush | canHijack | canPush:
		return flushHijackPushWriter{rs}
	}
	return plainWriter{rs}
}

type (
	plainWriter           struct{ *response }
	flushWriter           struct{ *response }
	hijackWriter          struct{ *response }
	pushWriter            struct{ *response }
	flushHijackWriter     struct{ *response }
	flushPushWriter       struct{ *response }
	hijackPushWriter      struct{ *response }
	flushHijackPushWriter struct{ *response }
)

// Flush ignores the error, as http.Flusher must; FlushError, which
// http.ResponseController prefers, returns it.
func (w flushWriter) Flush()                      { w.flush() }
func (w flushWriter) FlushError() error           { return w.flush() }
func (w flushHijackWriter) Flush()                { w.flush() }
func (w flushHijackWriter) FlushError() error     { return w.flush() }
func (w flushPushWriter) Flush()                  { w.flush() }
func (w flushPushWriter) FlushError() error       { return w.flush() }
func (w flushHijackPushWriter) Flush()            { w.flush() }
func (w flushHijackPushWriter) FlushError() error { return w.flush() }

func (w hijackWriter) Hijack() (net.Conn, *bufio.ReadWriter, error)          { return w.hijack() }
func (w flushHijackWriter) Hijack() (net.Conn, *bufio.ReadWriter, error)     { return w.hijack() }
func (w hijackPushWriter) Hijack() (net.Conn, *bufio.ReadWriter, error)      { return w.hijack() }
func (w flushHijackPushWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) { return w.hijack() }

func (w pushWriter) Push(target string, opts *http.PushOptions) error { return w.push(target, opts) }
func (w flushPushWriter) Push(target string, opts *http.PushOptions) error {
	return w.push(target, opts)
}
func (w hijackPushWriter) Push(target string, opts *http.PushOptions) error {
	return w.push(target, opts)
}
func (w flushHijackPushWriter) Push(target string, opts *http.PushOptions) error {
	return w.push(target, opts)
}
