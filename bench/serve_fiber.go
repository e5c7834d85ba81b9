package main

import (
	"context"
	"net"
	"strconv"
	"time"

	fiberv2 "github.com/gofiber/fiber/v2"
	sessionv2 "github.com/gofiber/fiber/v2/middleware/session"
	"github.com/gofiber/fiber/v3"
	sessionv3 "github.com/gofiber/fiber/v3/middleware/session"
	fiberbadger "github.com/gofiber/storage/badger/v2"
	fiberredis "github.com/gofiber/storage/redis/v3"

	"github.com/kvsession/kvsession/kvfiber"
	"github.com/kvsession/kvsession/store"
)

// The Fiber servers: bare Fiber (v3), kvsession on kvfiber (Fiber v3), and
// Fiber's own session middleware, v3 and v2, each on its memory storage and
// on gofiber/storage's Badger and Redis storages.

func serveBareFiber(ln net.Listener, _ serveOptions) error {
	app := fiber.New()
	one := func(c fiber.Ctx) error { appendCounter(c.RequestCtx(), 1); return nil }
	app.Post("/incr", one)
	app.Get("/read", one)
	app.Post("/big", func(c fiber.Ctx) error { appendCounter(c.RequestCtx(), len(blob)); return nil })
	return app.Listener(ln, fiber.ListenConfig{DisableStartupMessage: true})
}

func serveKvFiber(open func(serveOptions) (store.Store, error)) func(net.Listener, serveOptions) error {
	return func(ln net.Listener, o serveOptions) error {
		be, closeAll, err := newKvBackend(open, o)
		if err != nil {
			return err
		}
		defer closeAll()
		app := fiber.New(fiber.Config{ReadBufferSize: kvfiber.RequiredReadBufferSize(be, 0)})
		mw, err := kvfiber.New(be, kvfiber.Options{
			// GET requests only read: with the lock on they need not wait.
			ReadOnly: func(c fiber.Ctx) bool { return c.Method() == fiber.MethodGet },
		})
		if err != nil {
			return err
		}
		app.Use(mw)
		app.Post("/incr", func(c fiber.Ctx) error {
			s := kvfiber.Session(c)
			n, _ := s.GetInt("n")
			s.SetInt("n", n+1)
			appendCounter(c.RequestCtx(), n+1)
			return nil
		})
		app.Get("/read", func(c fiber.Ctx) error {
			n, _ := kvfiber.Session(c).GetInt("n")
			appendCounter(c.RequestCtx(), n)
			return nil
		})
		app.Post("/big", func(c fiber.Ctx) error {
			kvfiber.Session(c).SetBytes("blob", blob)
			appendCounter(c.RequestCtx(), len(blob))
			return nil
		})
		return app.Listener(ln, fiber.ListenConfig{DisableStartupMessage: true})
	}
}

// Fiber's Redis storage takes no key prefix: v2 and v3 each get a database
// of their own (see claimRedisDB), so that both can run at once.
const (
	fiberV2RedisDB = 12
	fiberV3RedisDB = 13
)

// fiberRedis opens gofiber/storage's Redis storage on database db.
func fiberRedis(o serveOptions, db int) (*fiberredis.Storage, func(), error) {
	release, err := claimRedisDB(o.redisAddr, db)
	if err != nil {
		return nil, nil, err
	}
	host, port, err := net.SplitHostPort(o.redisAddr)
	if err != nil {
		release()
		return nil, nil, err
	}
	p, err := strconv.Atoi(port)
	if err != nil {
		release()
		return nil, nil, err
	}
	st := fiberredis.New(fiberredis.Config{Host: host, Port: p, Database: db})
	return st, func() { st.Close(); release() }, nil
}

// fiberBadger opens gofiber/storage's Badger storage (Badger v3, its
// defaults) in the server's directory.
func fiberBadger(o serveOptions) *fiberbadger.Storage {
	return fiberbadger.New(fiberbadger.Config{Database: o.dir})
}

func fiberV3Memory(serveOptions) (fiber.Storage, func(), error) { return nil, func() {}, nil }

func fiberV3Badger(o serveOptions) (fiber.Storage, func(), error) {
	st := fiberBadger(o)
	return badgerWithContext{st}, func() { st.Close() }, nil
}

func fiberV3Redis(o serveOptions) (fiber.Storage, func(), error) {
	return fiberRedis(o, fiberV3RedisDB)
}

// badgerWithContext gives gofiber/storage/badger/v2 v2.0.x the context
// methods Fiber v3's Storage interface asks for. Its v2.1 releases add
// them, each checking ctx and calling the method without context, as
// these do; the module proxy serves v2.0.0 and v2.0.1 only. Every call
// still runs gofiber's own Badger code.
type badgerWithContext struct{ *fiberbadger.Storage }

func (s badgerWithContext) GetWithContext(ctx context.Context, key string) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return s.Get(key)
}

func (s badgerWithContext) SetWithContext(ctx context.Context, key string, val []byte, exp time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.Set(key, val, exp)
}

func (s badgerWithContext) DeleteWithContext(ctx context.Context, key string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.Delete(key)
}

func (s badgerWithContext) ResetWithContext(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.Reset()
}

// serveFiberV3 serves the routes with Fiber v3's session middleware, as
// its documentation sets it up: app.Use(session.New(...)) and
// session.FromContext in the handlers. The middleware saves the session
// after every request, reads included (it slides the idle timeout).
func serveFiberV3(open func(serveOptions) (fiber.Storage, func(), error)) func(net.Listener, serveOptions) error {
	return func(ln net.Listener, o serveOptions) error {
		st, cleanup, err := open(o)
		if err != nil {
			return err
		}
		defer cleanup()
		app := fiber.New()
		app.Use(sessionv3.New(sessionv3.Config{Storage: st}))
		app.Post("/incr", func(c fiber.Ctx) error {
			sess := sessionv3.FromContext(c)
			n := asInt(sess.Get("n")) + 1
			sess.Set("n", n)
			appendCounter(c.RequestCtx(), n)
			return nil
		})
		app.Get("/read", func(c fiber.Ctx) error {
			appendCounter(c.RequestCtx(), asInt(sessionv3.FromContext(c).Get("n")))
			return nil
		})
		app.Post("/big", func(c fiber.Ctx) error {
			sessionv3.FromContext(c).Set("blob", blob)
			appendCounter(c.RequestCtx(), len(blob))
			return nil
		})
		return app.Listener(ln, fiber.ListenConfig{DisableStartupMessage: true})
	}
}

func fiberV2Memory(serveOptions) (fiberv2.Storage, func(), error) { return nil, func() {}, nil }

func fiberV2Badger(o serveOptions) (fiberv2.Storage, func(), error) {
	st := fiberBadger(o)
	return st, func() { st.Close() }, nil
}

func fiberV2Redis(o serveOptions) (fiberv2.Storage, func(), error) {
	return fiberRedis(o, fiberV2RedisDB)
}

// serveFiberV2 serves the routes with Fiber v2's session store, as its
// documentation uses it: store.Get, and Save after a change.
func serveFiberV2(open func(serveOptions) (fiberv2.Storage, func(), error)) func(net.Listener, serveOptions) error {
	return func(ln net.Listener, o serveOptions) error {
		st, cleanup, err := open(o)
		if err != nil {
			return err
		}
		defer cleanup()
		sessions := sessionv2.New(sessionv2.Config{Storage: st})
		app := fiberv2.New(fiberv2.Config{DisableStartupMessage: true})
		app.Post("/incr", func(c *fiberv2.Ctx) error {
			sess, err := sessions.Get(c)
			if err != nil {
				return err
			}
			n := asInt(sess.Get("n")) + 1
			sess.Set("n", n)
			if err := sess.Save(); err != nil {
				return err
			}
			appendCounter(c.Context(), n)
			return nil
		})
		app.Get("/read", func(c *fiberv2.Ctx) error {
			sess, err := sessions.Get(c)
			if err != nil {
				return err
			}
			appendCounter(c.Context(), asInt(sess.Get("n")))
			return nil
		})
		app.Post("/big", func(c *fiberv2.Ctx) error {
			sess, err := sessions.Get(c)
			if err != nil {
				return err
			}
			sess.Set("blob", blob)
			if err := sess.Save(); err != nil {
				return err
			}
			appendCounter(c.Context(), len(blob))
			return nil
		})
		return app.Listener(ln)
	}
}
