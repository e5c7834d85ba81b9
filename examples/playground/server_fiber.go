package main

import (
	"context"
	"log/slog"
	"net"

	"github.com/gofiber/fiber/v3"

	"github.com/kvsession/kvsession"
	"github.com/kvsession/kvsession/kvfiber"
)

// fiberServer serves the routes on Fiber v3, with kvfiber.
type fiberServer struct{ app *fiber.App }

func newFiberServer(a *app, backend kvsession.Backend, logger *slog.Logger) (server, error) {
	app := fiber.New(fiber.Config{
		ServerHeader: serverName,
		// A cookie session split over several cookies makes request
		// headers larger than fasthttp, under Fiber, reads by default.
		ReadBufferSize: kvfiber.RequiredReadBufferSize(backend, 0),
		ReadTimeout:    readTimeout,
		WriteTimeout:   writeTimeout,
		IdleTimeout:    idleTimeout,
		BodyLimit:      maxBodyBytes,
		// The routes answer every request themselves and return no error:
		// what comes here is a request the server could not read. Logged,
		// as fasthttp logs them, then answered as Fiber does by default.
		ErrorHandler: func(c fiber.Ctx, err error) error {
			logger.Warn(err.Error(), "source", "fiber")
			return fiber.DefaultErrorHandler(c, err)
		},
	})
	// fasthttp quotes such requests in the error, session cookies
	// included; this keeps them out of the log above and of the 400's body.
	kvfiber.RedactRequestErrors(app, backend)
	opts := kvfiber.Options{
		Skip: func(c fiber.Ctx) bool { return skipsSession(string(c.RequestCtx().Path())) },
		ErrorHandler: func(c fiber.Ctx, err error) error {
			// The handler's answer, headers included, must not go out.
			c.RequestCtx().Response.Reset()
			a.sessionUnavailable(fastExchange{c.RequestCtx()}, err)
			return nil
		},
	}
	if backend.Config().Lock {
		opts.ReadOnly = func(c fiber.Ctx) bool {
			rc := c.RequestCtx()
			return readOnly(fastMethod(rc.Method()), string(rc.Path()))
		}
	}
	sessions, err := kvfiber.New(backend, opts)
	if err != nil {
		return nil, err
	}
	app.Use(sessions)
	// All, not Use: when Fiber answers a request it could not read, it
	// runs the Use handlers first, and the routes must not run on it.
	app.All("/*", func(c fiber.Ctx) error {
		a.handle(fiberExchange{fastExchange{c.RequestCtx()}, c})
		return nil
	})
	return fiberServer{app}, nil
}

// serve serves without Fiber's start banner: the playground logs its own.
func (s fiberServer) serve(ln net.Listener) error {
	return s.app.Listener(ln, fiber.ListenConfig{DisableStartupMessage: true})
}

// shutdown closes the listener and waits for in-flight requests; Listener
// returns as soon as the listener closes, before they finish.
func (s fiberServer) shutdown(ctx context.Context) error { return s.app.ShutdownWithContext(ctx) }

func (s fiberServer) logAttrs() []any {
	return []any{"read_buffer_size", s.app.Server().ReadBufferSize}
}

// fiberExchange is fastExchange on the request under Fiber's Ctx (Fiber
// runs on fasthttp, and its path is fasthttp's), with the session kvfiber
// keeps.
type fiberExchange struct {
	fastExchange
	c fiber.Ctx
}

func (x fiberExchange) Session() *kvsession.Session { return kvfiber.Session(x.c) }
