package main

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net"
	"sync"
	"time"

	bdg "github.com/dgraph-io/badger/v4"
	session "github.com/fasthttp/session/v2"
	fhsmemory "github.com/fasthttp/session/v2/providers/memory"
	fhsredis "github.com/fasthttp/session/v2/providers/redis"
	"github.com/valyala/fasthttp"

	"github.com/kvsession/kvsession"
	"github.com/kvsession/kvsession/kvfasthttp"
	"github.com/kvsession/kvsession/store"
	"github.com/kvsession/kvsession/store/badgerstore"
)

// The fasthttp servers: bare fasthttp, kvsession on kvfasthttp,
// github.com/fasthttp/session with its memory and Redis providers, and
// Badger under bare fasthttp with no session code (badger alone).

func serveBareFasthttp(ln net.Listener, _ serveOptions) error {
	return (&fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
		switch string(ctx.Path()) {
		case "/big":
			appendCounter(ctx, len(blob))
		default:
			appendCounter(ctx, 1)
		}
	}}).Serve(ln)
}

func serveKvFasthttp(open func(serveOptions) (store.Store, error)) func(net.Listener, serveOptions) error {
	return func(ln net.Listener, o serveOptions) error {
		be, closeAll, err := newKvBackend(open, o)
		if err != nil {
			return err
		}
		defer closeAll()
		mw, err := kvfasthttp.New(be, kvfasthttp.Options{
			// GET requests only read: with the lock on they need not wait.
			ReadOnly: func(ctx *fasthttp.RequestCtx) bool { return ctx.IsGet() },
		})
		if err != nil {
			return err
		}
		return mw.NewServer(func(ctx *fasthttp.RequestCtx) {
			s := kvfasthttp.Session(ctx)
			switch string(ctx.Path()) {
			case "/incr":
				n, _ := s.GetInt("n")
				s.SetInt("n", n+1)
				appendCounter(ctx, n+1)
			case "/read":
				n, _ := s.GetInt("n")
				appendCounter(ctx, n)
			case "/big":
				s.SetBytes("blob", blob)
				appendCounter(ctx, len(blob))
			default:
				ctx.NotFound()
			}
		}).Serve(ln)
	}
}

// memoryProvider is fasthttp/session's own memory provider; with copyID,
// wrapped so that it is handed a copy of the session id to keep.
func memoryProvider(copyID bool) func(serveOptions) (session.Provider, func(), error) {
	return func(serveOptions) (session.Provider, func(), error) {
		p, err := fhsmemory.New(fhsmemory.Config{})
		if err != nil {
			return nil, nil, err
		}
		if copyID {
			return idCopied{p}, func() {}, nil
		}
		return p, func() {}, nil
	}
}

// idCopied works around the memory provider's defect (see
// fasthttpSessionDefect): Session.Save hands the provider the id it read
// from the request's Cookie header, which points into fasthttp's request
// buffer; the provider keeps it as its map key without copying. Passing a
// copy is all it takes: the one change a user would make, in the one call
// that keeps the id. Get only looks the id up, and Regenerate is handed
// new ids the generator made.
type idCopied struct{ *fhsmemory.Provider }

func (p idCopied) Save(id, data []byte, expiration time.Duration) error {
	return p.Provider.Save(bytes.Clone(id), data, expiration)
}

// redisProvider is fasthttp/session's Redis provider (go-redis) under a key
// prefix of this process's own, deleted when the server stops.
func redisProvider(o serveOptions) (session.Provider, func(), error) {
	prefix := redisPrefix("fasthttp-session")
	p, err := fhsredis.New(fhsredis.Config{KeyPrefix: prefix[:len(prefix)-1], Addr: o.redisAddr})
	if err != nil {
		return nil, nil, err
	}
	return p, func() { clearRedisPrefix(o.redisAddr, prefix) }, nil
}

// serveFasthttpSession serves the routes with github.com/fasthttp/session,
// configured as its example does for the memory and Redis providers:
// NewDefaultConfig with MessagePack encoding. /read does not call Save, as
// kvsession's /read writes nothing either; fasthttp/session has no call
// that gives its Store back to its pool without saving, so the Store a
// read takes is left to the garbage collector.
func serveFasthttpSession(provider func(serveOptions) (session.Provider, func(), error)) func(net.Listener, serveOptions) error {
	return func(ln net.Listener, o serveOptions) error {
		p, cleanup, err := provider(o)
		if err != nil {
			return err
		}
		defer cleanup()
		cfg := session.NewDefaultConfig()
		cfg.EncodeFunc, cfg.DecodeFunc = session.MSGPEncode, session.MSGPDecode
		sessions := session.New(cfg)
		if err := sessions.SetProvider(p); err != nil {
			return err
		}
		return (&fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
			st, err := sessions.Get(ctx)
			if err != nil {
				ctx.Error(err.Error(), fasthttp.StatusInternalServerError)
				return
			}
			var n int
			switch string(ctx.Path()) {
			case "/incr":
				n = asInt(st.Get("n")) + 1
				st.Set("n", n)
			case "/read":
				appendCounter(ctx, asInt(st.Get("n")))
				return
			case "/big":
				st.Set("blob", blob)
				n = len(blob)
			default:
				ctx.NotFound()
				return
			}
			if err := sessions.Save(ctx, st); err != nil {
				ctx.Error(err.Error(), fasthttp.StatusInternalServerError)
				return
			}
			appendCounter(ctx, n)
		}}).Serve(ln)
	}
}

// serveBadgerAlone is what a session library gets from Badger with no
// cache of its own: bare fasthttp and one raw Badger transaction per
// request, on the key the Cookie header carries, with no session code at
// all: no id checks, no encoding, no cookie to set. /incr and /big read the
// value and write a new one, /read only reads. Badger is opened through
// kvsession's store, so its tuning is the one kvsession runs on.
//
// With writesOnly, reads cost nothing: counters are kept in this process
// as well, /incr takes its value from there and only writes to Badger, and
// /read never touches Badger. That is the most a store with a perfect
// cache gets from one Badger transaction per write; kvsession's store
// commits concurrent writes together, several to a transaction.
func serveBadgerAlone(writesOnly bool) func(net.Listener, serveOptions) error {
	return func(ln net.Listener, o serveOptions) error {
		st, err := badgerstore.Open(badgerstore.Options{Dir: o.dir})
		if err != nil {
			return err
		}
		defer st.Close()
		db := st.DB()
		var (
			mu     sync.Mutex
			cached = map[string]int{}
		)
		return (&fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
			key := ctx.Request.Header.Cookie("session")
			if len(key) == 0 {
				ctx.Error("no session cookie", fasthttp.StatusBadRequest)
				return
			}
			var n int
			read := func(txn *bdg.Txn) error {
				if writesOnly {
					mu.Lock()
					n = cached[string(key)]
					mu.Unlock()
					return nil
				}
				item, err := txn.Get(key)
				if errors.Is(err, bdg.ErrKeyNotFound) {
					return nil
				}
				if err != nil {
					return err
				}
				return item.Value(func(v []byte) error {
					if len(v) == 8 {
						n = int(binary.BigEndian.Uint64(v))
					}
					return nil
				})
			}
			var err error
			switch string(ctx.Path()) {
			case "/incr", "/big":
				big := string(ctx.Path()) == "/big"
				err = db.Update(func(txn *bdg.Txn) error {
					if err := read(txn); err != nil {
						return err
					}
					var v []byte
					if big {
						v = blob
					} else {
						n++
						v = binary.BigEndian.AppendUint64(make([]byte, 0, 8), uint64(n))
					}
					e := bdg.NewEntry(key, v)
					e.ExpiresAt = uint64(time.Now().Add(kvsession.DefaultMaxAge).Unix())
					return txn.SetEntry(e)
				})
				if big {
					n = len(blob)
				} else if err == nil && writesOnly {
					mu.Lock()
					cached[string(key)] = n
					mu.Unlock()
				}
			case "/read":
				err = db.View(read)
			default:
				ctx.NotFound()
				return
			}
			if err != nil {
				ctx.Error(err.Error(), fasthttp.StatusInternalServerError)
				return
			}
			appendCounter(ctx, n)
		}}).Serve(ln)
	}
}
