// Package kvfiber connects kvsession to Fiber v3 (github.com/gofiber/fiber/v3).
//
// It is a module of its own, so that the kvsession module does not depend
// on Fiber. Require it beside kvsession:
//
//	go get github.com/kvsession/kvsession/kvfiber@<version>
//
// (The replace directive in its go.mod points at the kvsession checkout
// it lives in, for developing both together in this repository; Go
// ignores it when kvfiber is a dependency.)
//
// New returns the middleware; inside the chain, Session(c) returns the
// request's session:
//
//	app := fiber.New(fiber.Config{ReadBufferSize: kvfiber.RequiredReadBufferSize(backend, 0)})
//	kvfiber.RedactRequestErrors(app, backend)
//	sessions, err := kvfiber.New(backend, kvfiber.Options{})
//	...
//	app.Use(recover.New(), sessions)
//	app.Get("/", func(c fiber.Ctx) error {
//		sess := kvfiber.Session(c)
//		n, _ := sess.GetInt("visits")
//		sess.SetInt("visits", n+1)
//		return c.SendString(strconv.Itoa(n + 1))
//	})
//
// # Several sessions per request
//
// Two middlewares over backends with different Config.CookieName values
// (a long-lived "prefs" session beside the "session" login session, say)
// can run on the same route, and each keeps its own session. NewMiddleware
// returns a *Middleware, whose Handler is the fiber.Handler New returns;
// the method m.Session(c) returns the session of middleware m, and the
// function Session(c) the innermost one's, the session of the last
// middleware in the chain that gave the request one:
//
//	login, _ := kvfiber.NewMiddleware(loginBackend, kvfiber.Options{})
//	prefs, _ := kvfiber.NewMiddleware(prefsBackend, kvfiber.Options{})
//	app.Use(login.Handler, prefs.Handler)
//	app.Get("/", func(c fiber.Ctx) error {
//		user, _ := login.Session(c).GetString("user")
//		return prefs.Session(c).Set("theme", "dark")
//	})
//
// Each middleware saves its own session and adds its own Set-Cookie line.
// m.Session is nil where m skipped or excluded the request.
//
// # Clients without cookies
//
// Mobile apps and command-line clients can carry the session id in a
// header instead, with kvsession.Config.IDHeader set: a request that
// carries that header, with any value ("new" for a client without an id
// yet), is served from it, and its response carries a new or changed id
// in the same header, never a cookie; an empty one tells the client to
// forget its id. Requests without it are served by cookie as before. The
// query string is never read. See Config.IDHeader for the protocol.
//
// The middleware works on the *fasthttp.RequestCtx under Fiber's Ctx, as
// kvsession/kvfasthttp does: the raw Cookie header is handed to the
// backend, which reads it only if the handler uses the session, and the
// Set-Cookie lines are written straight into the response header. A
// response whose handler used the session, even only to read it, carries
// Vary: Cookie.
//
// # When the session is saved
//
// The session is loaded on first use and saved when the rest of the chain
// (c.Next) returns, before the response goes out: Fiber buffers the
// response, so the Set-Cookie is on it whatever the handler sent, a body
// included.
//
//   - A handler that returns an error still has its session saved, and
//     the error goes on to the app's fiber.Config.ErrorHandler, which
//     writes the response after the save, Set-Cookie already in place.
//     In Fiber returning fiber.ErrUnauthorized or a fiber.NewError is how
//     a handler answers; a failed-login counter or a flash message set
//     before it must not be lost. An app ErrorHandler that resets the
//     whole response drops the Set-Cookie with it.
//   - A response with a 5xx status saves nothing and sets no cookie,
//     unless kvsession.Config.SaveOnServerError: a request that failed
//     must not keep half its changes. An error returned by the handler
//     counts with the status Fiber's default ErrorHandler gives it: a
//     *fiber.Error's Code, 500 for any other error.
//   - A handler that panics has nothing saved: the session is released
//     (its lock, with Config.Lock, freed) and the panic goes on. Register
//     Fiber's recover middleware before kvfiber (app.Use(recover.New(),
//     sessions)), so that it sees the panic; registered after kvfiber, it
//     turns the panic into an error before kvfiber sees it, which counts
//     as a 500: nothing is saved either, unless SaveOnServerError.
//   - A streamed body (SendStreamWriter, SendStream) is read after the
//     handler returns, but fasthttp sends the headers first, after the
//     session was saved: the Set-Cookie is on the response and every
//     change the handler made before returning is saved. The stream
//     writer itself runs on a goroutine of its own, from the moment
//     SendStreamWriter is called until after the session was saved and
//     recycled for another request: it must not use the session or call
//     Session. Read what the stream needs into variables first.
//   - Fiber's timeout middleware (timeout.New around a handler), when
//     time runs out, answers 408 and abandons the Ctx while the handler
//     goes on running with the session. That session is then neither
//     saved (the client saw the request fail) nor recycled for another
//     request (the handler still writes to it), and with Config.Lock it
//     stays locked until Config.LockLease runs out: keep LockLease short
//     on apps that use the timeout middleware, or bound slow work with
//     c.Context() inside the handler instead.
//   - c.End() writes the response out at once, before the save: changes
//     are saved, but a cookie the session needed (a new session, an id
//     renewed by RenewID or rotation, the expiry after Destroy) never
//     reaches the client. Do not use End on routes that change sessions.
//
// A store failure (or a session too large to save) calls
// Options.ErrorHandler instead, whose response replaces the handler's; by
// default it logs the error with Config.Logger and answers 500 "session
// unavailable". If the handler had returned an error too, that error is
// logged and not returned: the response it asked for is not sent.
//
// # Request header size
//
// fasthttp reads a request's whole header into its read buffer
// (fiber.Config.ReadBufferSize, 4096 bytes by default) and answers 431 to
// a request whose header does not fit, before any handler runs. Cookie
// sessions split over several 4 KB cookies need a larger buffer: create
// the app with fiber.Config{ReadBufferSize:
// kvfiber.RequiredReadBufferSize(backend, 0)}. The middleware checks the
// app's server on every request and sends requests of an app whose
// buffer is too small to the ErrorHandler, so that the mistake shows at
// once rather than when a session first outgrows the buffer.
//
// # Session ids in logs
//
// fasthttp quotes a request it cannot read, Cookie header included, in the
// error Fiber hands to the app's fiber.Config.ErrorHandler (which may log
// it); session ids in a log are sessions anyone reading it can take over.
// Call RedactRequestErrors(app, backend) before Listen to keep them out.
package kvfiber
