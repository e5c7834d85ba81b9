package kvfiber

import (
	"github.com/gofiber/fiber/v3"
	"github.com/valyala/fasthttp"

	"github.com/kvsession/kvsession"
	"github.com/kvsession/kvsession/kvfasthttp"
)

// RedactRequestErrors keeps session cookies out of the errors of requests
// the app's server cannot read. fasthttp quotes such a request in its
// error, Cookie header included, and Fiber hands the error to the app's
// fiber.Config.ErrorHandler, which often logs it, and sends it to the
// client as the 400's body. Session ids and sealed cookies are bearer
// credentials: whoever reads that log could log in.
//
// It sets the server's SecureErrorLogMessage, which keeps most request
// bytes out of fasthttp's errors, and redacts what that still lets
// through ("invalid header value" quotes the offending value, a Cookie
// header holding a stray control byte included) as kvfasthttp.Redact
// does. Call it after fiber.New and before Listen. Only the errors of
// unreadable requests pass through it; handlers' errors are untouched.
func RedactRequestErrors(app *fiber.App, backend kvsession.Backend) {
	srv := app.Server()
	srv.SecureErrorLogMessage = true
	next := srv.ErrorHandler
	if next == nil {
		return // fasthttp's own answer, which names no request bytes
	}
	cookieName := backend.Config().CookieName
	srv.ErrorHandler = func(rc *fasthttp.RequestCtx, err error) {
		next(rc, redactedError{msg: kvfasthttp.Redact(err.Error(), cookieName), err: err})
	}
}

// redactedError shows a redacted message but unwraps to the original, so
// that Fiber still tells a header too large (431) or a timeout (408) from
// other unreadable requests; for those it answers with its own message,
// and for the rest with this one.
type redactedError struct {
	msg string
	err error
}

func (e redactedError) Error() string { return e.msg }
func (e redactedError) Unwrap() error { return e.err }
