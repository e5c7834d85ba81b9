package main

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/alexedwards/scs/v2"
	bdg "github.com/dgraph-io/badger/v4"
	"github.com/gofiber/fiber/v2"
	fibersession "github.com/gofiber/fiber/v2/middleware/session"
	"github.com/valyala/fasthttp"

	"github.com/kvsession/kvsession"
	"github.com/kvsession/kvsession/kvfasthttp"
	"github.com/kvsession/kvsession/store"
	"github.com/kvsession/kvsession/store/badgerstore"
	"github.com/kvsession/kvsession/store/memstore"
	"github.com/kvsession/kvsession/store/redisstore"
)

// Every server answers the same three routes:
//
//	POST /incr  adds one to the session's counter and answers the new value
//	GET  /read  answers the counter without changing the session
//	POST /big   stores a 4 KB blob in the session and answers its length
//
// Each runs in a child process of its own (see serveChild), so that its
// heap, goroutines and resident memory are its own, and it can be pinned to
// one core away from the load generator.

// blob is what /big stores: 4 KB that do not compress to nothing.
var blob = func() []byte {
	b := make([]byte, 4096)
	x := uint32(2463534242)
	for i := range b {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		b[i] = byte(x)
	}
	return b
}()

// serverKind names what a child serves.
type serverKind struct {
	name string
	// serve runs until ln is closed. dir is a fresh directory for stores
	// that need one; redisAddr is the Redis to use, if any.
	serve func(ln net.Listener, opts serveOptions) error
	// bare servers keep no sessions: their replies are not checked.
	bare bool
	// lockable kinds take -lock, to serialise requests to one session.
	lockable bool
	// needsRedis kinds run only when a Redis server is reachable.
	needsRedis bool
	// onRequest kinds run only when -only names them: they answer a
	// question about a target, not a user's choice of library.
	onRequest bool
}

type serveOptions struct {
	dir, redisAddr string
	lock           bool
	profile        string // CPU profile path, if any
}

var serverKinds = []serverKind{
	{name: "bare fasthttp", serve: serveBareFasthttp, bare: true},
	{name: "bare net/http", serve: serveBareNetHTTP, bare: true},
	{name: "kvsession/memory", serve: serveKvsession(openMemory), lockable: true},
	{name: "kvsession/badger", serve: serveKvsession(openBadger), lockable: true},
	{name: "badger alone", serve: serveBadgerAlone(false), bare: true},
	{name: "badger writes alone", serve: serveBadgerAlone(true), bare: true, onRequest: true},
	{name: "kvsession/redis", serve: serveKvsession(openRedis), lockable: true, needsRedis: true},
	{name: "fiber/memory", serve: serveFiber(nil)},
	{name: "fiber/badger*", serve: serveFiber(openBadgerRaw)},
	{name: "scs/memstore", serve: serveScs(nil)},
	{name: "scs/badger*", serve: serveScs(openBadgerRaw)},
}

func kindByName(name string) (serverKind, bool) {
	for _, k := range serverKinds {
		if k.name == name {
			return k, true
		}
	}
	return serverKind{}, false
}

func openMemory(serveOptions) (store.Store, error) { return memstore.New(memstore.Options{}), nil }

func openBadger(o serveOptions) (store.Store, error) {
	return badgerstore.Open(badgerstore.Options{Dir: o.dir})
}

// openBadgerRaw stands in for fiber's and scs's own Badger adapters, which
// the module proxy refuses: like them, it runs one raw Badger transaction
// per call, with neither the cache nor the batched commits of kvsession's
// store, on the same tuned Badger kvsession runs on.
func openBadgerRaw(o serveOptions) (store.Store, error) {
	st, err := badgerstore.Open(badgerstore.Options{Dir: o.dir, CacheSize: -1})
	if err != nil {
		return nil, err
	}
	return rawBadger{st: st, db: st.DB()}, nil
}

// clearer is the DeleteAll the stores shipped with kvsession have (and
// rawBadger): no part of the store contract, so no interface of package
// store.
type clearer interface {
	DeleteAll(ctx context.Context) error
}

// rawBadger is a store.Store (and a clearer) made of raw Badger
// transactions; st opened the database and closes it.
type rawBadger struct {
	st *badgerstore.Store
	db *bdg.DB
}

func (r rawBadger) Get(_ context.Context, key string) ([]byte, error) {
	var v []byte
	err := r.db.View(func(txn *bdg.Txn) error {
		item, err := txn.Get([]byte(key))
		if err != nil {
			return err
		}
		v, err = item.ValueCopy(nil)
		return err
	})
	if errors.Is(err, bdg.ErrKeyNotFound) {
		return nil, store.ErrNotFound
	}
	return v, err
}

func (r rawBadger) Set(_ context.Context, key string, value []byte, ttl time.Duration) error {
	return r.db.Update(func(txn *bdg.Txn) error {
		e := bdg.NewEntry([]byte(key), value)
		if ttl > 0 {
			e = e.WithTTL(ttl)
		}
		return txn.SetEntry(e)
	})
}

func (r rawBadger) Delete(_ context.Context, key string) error {
	return r.db.Update(func(txn *bdg.Txn) error { return txn.Delete([]byte(key)) })
}

// Swap and the sets complete store.Store; fiber's and scs's adapters never
// call them, so they go to kvsession's store on the same database.
func (r rawBadger) Swap(ctx context.Context, key string, old, value []byte, ttl time.Duration) (bool, error) {
	return r.st.Swap(ctx, key, old, value, ttl)
}
func (r rawBadger) AddMember(ctx context.Context, set, member string, ttl time.Duration) error {
	return r.st.AddMember(ctx, set, member, ttl)
}
func (r rawBadger) RemoveMember(ctx context.Context, set, member string) error {
	return r.st.RemoveMember(ctx, set, member)
}
func (r rawBadger) Members(ctx context.Context, set string) ([]string, error) {
	return r.st.Members(ctx, set)
}

func (r rawBadger) DeleteAll(ctx context.Context) error { return r.st.DeleteAll(ctx) }
func (r rawBadger) Close() error                        { return r.st.Close() }

func openRedis(o serveOptions) (store.Store, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	// A prefix of this process's own, cleared when it stops, so that a
	// shared Redis keeps nothing of the run.
	return redisstore.Open(ctx, redisstore.Options{Addr: o.redisAddr, Prefix: fmt.Sprintf("kvsession-bench:%d:", os.Getpid())})
}

// appendCounter writes n as the response body without allocating.
func appendCounter(ctx *fasthttp.RequestCtx, n int) {
	var a [20]byte
	ctx.Response.AppendBody(strconv.AppendInt(a[:0], int64(n), 10))
}

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

func serveBareNetHTTP(ln net.Listener, _ serveOptions) error {
	mux := http.NewServeMux()
	mux.HandleFunc("/incr", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "1") })
	mux.HandleFunc("/read", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "1") })
	mux.HandleFunc("/big", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "4096") })
	return (&http.Server{Handler: mux}).Serve(ln)
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

func serveKvsession(open func(serveOptions) (store.Store, error)) func(net.Listener, serveOptions) error {
	return func(ln net.Listener, o serveOptions) error {
		st, err := open(o)
		if err != nil {
			return err
		}
		reg := store.NewRegistry(nil)
		reg.Register(kvsession.DefaultStore, st)
		defer reg.Close()
		if c, ok := st.(clearer); ok && o.redisAddr != "" {
			defer c.DeleteAll(context.Background())
		}
		be, err := kvsession.New(kvsession.Config{Lock: o.lock}, reg)
		if err != nil {
			return err
		}
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

func serveFiber(open func(serveOptions) (store.Store, error)) func(net.Listener, serveOptions) error {
	return func(ln net.Listener, o serveOptions) error {
		cfg := fibersession.Config{}
		if open != nil {
			st, err := open(o)
			if err != nil {
				return err
			}
			defer st.Close()
			cfg.Storage = fiberStorage{st}
		}
		sessions := fibersession.New(cfg)
		app := fiber.New(fiber.Config{DisableStartupMessage: true})
		app.Post("/incr", func(c *fiber.Ctx) error {
			sess, err := sessions.Get(c)
			if err != nil {
				return err
			}
			n, _ := sess.Get("n").(int)
			sess.Set("n", n+1)
			if err := sess.Save(); err != nil {
				return err
			}
			appendCounter(c.Context(), n+1)
			return nil
		})
		app.Get("/read", func(c *fiber.Ctx) error {
			sess, err := sessions.Get(c)
			if err != nil {
				return err
			}
			n, _ := sess.Get("n").(int)
			appendCounter(c.Context(), n)
			return nil
		})
		app.Post("/big", func(c *fiber.Ctx) error {
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

func serveScs(open func(serveOptions) (store.Store, error)) func(net.Listener, serveOptions) error {
	return func(ln net.Listener, o serveOptions) error {
		sm := scs.New() // memstore
		if open != nil {
			st, err := open(o)
			if err != nil {
				return err
			}
			defer st.Close()
			sm.Store = scsStore{st}
		}
		mux := http.NewServeMux()
		mux.HandleFunc("POST /incr", func(w http.ResponseWriter, r *http.Request) {
			n := sm.GetInt(r.Context(), "n") + 1
			sm.Put(r.Context(), "n", n)
			io.WriteString(w, strconv.Itoa(n))
		})
		mux.HandleFunc("GET /read", func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, strconv.Itoa(sm.GetInt(r.Context(), "n")))
		})
		mux.HandleFunc("POST /big", func(w http.ResponseWriter, r *http.Request) {
			sm.Put(r.Context(), "blob", blob)
			io.WriteString(w, strconv.Itoa(len(blob)))
		})
		return (&http.Server{Handler: sm.LoadAndSave(mux)}).Serve(ln)
	}
}

// The module proxy refuses fiber's and scs's own Badger adapters
// (github.com/gofiber/storage/badger, github.com/alexedwards/scs/badgerstore),
// so these two adapt rawBadger (above) to their interfaces: a raw Badger
// transaction per call, as their own adapters make, on the same,
// identically tuned Badger as kvsession. What separates fiber and scs from
// kvsession is their session layers and kvsession's cache and batched
// commits.

type fiberStorage struct{ st store.Store }

func (f fiberStorage) Get(key string) ([]byte, error) {
	v, err := f.st.Get(context.Background(), key)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	return v, err
}

func (f fiberStorage) Set(key string, val []byte, exp time.Duration) error {
	if key == "" || len(val) == 0 {
		return nil
	}
	return f.st.Set(context.Background(), key, val, exp)
}

func (f fiberStorage) Delete(key string) error { return f.st.Delete(context.Background(), key) }
func (f fiberStorage) Reset() error {
	return f.st.(clearer).DeleteAll(context.Background())
}
func (f fiberStorage) Close() error { return f.st.Close() }

type scsStore struct{ st store.Store }

func (s scsStore) Find(token string) ([]byte, bool, error) {
	v, err := s.st.Get(context.Background(), token)
	if errors.Is(err, store.ErrNotFound) {
		return nil, false, nil
	}
	return v, err == nil, err
}

func (s scsStore) Commit(token string, b []byte, expiry time.Time) error {
	ttl := time.Until(expiry)
	if ttl <= 0 {
		return s.st.Delete(context.Background(), token)
	}
	return s.st.Set(context.Background(), token, b, ttl)
}

func (s scsStore) Delete(token string) error { return s.st.Delete(context.Background(), token) }

// serveChild is the child process's main: listen on a loopback port, tell
// the parent which on stdout, serve until the parent closes stdin (or dies)
// or sends SIGTERM.
func serveChild(kindName string, o serveOptions) {
	kind, ok := kindByName(kindName)
	if !ok {
		fmt.Fprintf(os.Stderr, "bench: unknown server %q\n", kindName)
		os.Exit(2)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
	if o.profile != "" {
		name := strings.NewReplacer("/", "-", " ", "-", "*", "").Replace(kindName)
		f, err := os.Create(o.profile + name)
		if err == nil && pprof.StartCPUProfile(f) == nil {
			defer func() { pprof.StopCPUProfile(); f.Close() }()
		}
	}
	done := make(chan error, 1)
	go func() { done <- kind.serve(ln, o) }()
	fmt.Printf("ADDR %s\n", ln.Addr())
	go func() {
		io.Copy(io.Discard, bufio.NewReader(os.Stdin))
		ln.Close()
	}()
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, os.Interrupt)
	go func() {
		<-sig
		ln.Close()
	}()
	if err := <-done; err != nil && !errors.Is(err, net.ErrClosed) {
		fmt.Fprintln(os.Stderr, "bench: serve:", err)
	}
	// Deferred closes in serve have run: stores are flushed and closed.
}
