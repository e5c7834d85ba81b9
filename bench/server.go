package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"github.com/valyala/fasthttp"

	"github.com/kvsession/kvsession"
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

// The adapters: each is one HTTP server library, with kvsession on its
// adapter for it, the session libraries people use on it, and the library
// alone (its bare server), all measured side by side.
const (
	adapterFasthttp = "fasthttp"
	adapterNetHTTP  = "net/http"
	adapterFiber    = "fiber"
)

var adapters = []string{adapterFasthttp, adapterNetHTTP, adapterFiber}

// The storages sessions are kept in. A kind of each is compared only with
// kinds on the same storage (and its adapter's bare server).
const (
	storageMemory = "memory"
	storageBadger = "badger"
	storageRedis  = "redis"
)

var storages = []string{storageMemory, storageBadger, storageRedis}

// serverKind names what a child serves.
type serverKind struct {
	name    string
	adapter string
	// storage is where the kind keeps sessions; "" for the bare servers,
	// which run beside every storage's kinds.
	storage string
	// serve runs until ln is closed. dir is a fresh directory for stores
	// that need one; redisAddr is the Redis to use, if any.
	serve func(ln net.Listener, opts serveOptions) error
	// bare servers keep no sessions: their clients send a session-sized
	// cookie they never change, and their replies are not checked.
	bare bool
	// ceiling is the adapter's bare server, the one the others' ratios
	// divide by.
	ceiling bool
	// kvsession kinds are ours: any error, wrong reply or lost update of
	// theirs fails the run.
	kvsession bool
	// lockable kinds take -lock, to serialise requests to one session.
	lockable bool
	// needsRedis kinds run only when a Redis server is reachable.
	needsRedis bool
	// onRequest kinds run only when -only names them: they answer a
	// question about a target, not a user's choice of library.
	onRequest bool
	// defect, for a peer, is a known defect of its own that this load
	// brings out: its wrong replies and lost updates are reported and
	// expected, not failed on. Any other peer's are: they would be this
	// bench's wiring mistakes as likely as the peer's.
	defect string
}

type serveOptions struct {
	dir, redisAddr string
	lock           bool
	profile        string // CPU profile path, if any
	profileOnUSR1  bool   // profile from SIGUSR1 to the end, not the whole life
	badgerCache    int    // the Badger store's CacheSize; 0: its default
}

// fasthttpSessionDefect is why stock fasthttp/session loses sessions here.
const fasthttpSessionDefect = "its memory provider keeps the id it is given as its map key, an unsafe string over the id's bytes (gotils B2S), " +
	"and Session.Save gives it the id read from the request's Cookie header: bytes in fasthttp's request buffer, which the connection's next request overwrites, " +
	"as does any later connection handed the same pooled RequestCtx. The key changes under the map: a request finds its session only while the buffer behind the key holds its own id again, " +
	"so sessions are lost (the counter starts over), and a request can be handed an older copy of its session or another session. " +
	"The map itself can break: in one run here the server died of sync.Map's \"ran out of hash bits while inserting\" panic, two entries having come to hold the same key. " +
	"The id-copied variant gives the provider a copy of the id in Save, the one call that keeps it"

var serverKinds = []serverKind{
	{name: "bare fasthttp", adapter: adapterFasthttp, serve: serveBareFasthttp, bare: true, ceiling: true},
	{name: "kvsession/memory (fasthttp)", adapter: adapterFasthttp, storage: storageMemory, serve: serveKvFasthttp(openMemory), kvsession: true, lockable: true},
	{name: "fasthttp/session/memory (id copied)", adapter: adapterFasthttp, storage: storageMemory, serve: serveFasthttpSession(memoryProvider(true))},
	{name: "fasthttp/session/memory", adapter: adapterFasthttp, storage: storageMemory, serve: serveFasthttpSession(memoryProvider(false)), defect: fasthttpSessionDefect},
	{name: "kvsession/badger (fasthttp)", adapter: adapterFasthttp, storage: storageBadger, serve: serveKvFasthttp(openBadger), kvsession: true, lockable: true},
	{name: "badger alone", adapter: adapterFasthttp, storage: storageBadger, serve: serveBadgerAlone(false), bare: true},
	{name: "badger writes alone", adapter: adapterFasthttp, storage: storageBadger, serve: serveBadgerAlone(true), bare: true, onRequest: true},
	{name: "kvsession/redis (fasthttp)", adapter: adapterFasthttp, storage: storageRedis, serve: serveKvFasthttp(openRedis), kvsession: true, lockable: true, needsRedis: true},
	{name: "fasthttp/session/redis", adapter: adapterFasthttp, storage: storageRedis, serve: serveFasthttpSession(redisProvider), needsRedis: true},

	{name: "bare net/http", adapter: adapterNetHTTP, serve: serveBareNetHTTP, bare: true, ceiling: true},
	{name: "kvsession/memory (net/http)", adapter: adapterNetHTTP, storage: storageMemory, serve: serveKvNetHTTP(openMemory), kvsession: true, lockable: true},
	{name: "scs/memstore", adapter: adapterNetHTTP, storage: storageMemory, serve: serveScs(scsMemstore)},
	{name: "kvsession/badger (net/http)", adapter: adapterNetHTTP, storage: storageBadger, serve: serveKvNetHTTP(openBadger), kvsession: true, lockable: true},
	{name: "scs/badgerstore", adapter: adapterNetHTTP, storage: storageBadger, serve: serveScs(scsBadgerstore)},
	{name: "kvsession/redis (net/http)", adapter: adapterNetHTTP, storage: storageRedis, serve: serveKvNetHTTP(openRedis), kvsession: true, lockable: true, needsRedis: true},
	{name: "scs/redisstore", adapter: adapterNetHTTP, storage: storageRedis, serve: serveScs(scsRedisstore), needsRedis: true},

	{name: "bare fiber", adapter: adapterFiber, serve: serveBareFiber, bare: true, ceiling: true},
	{name: "kvsession/memory (fiber)", adapter: adapterFiber, storage: storageMemory, serve: serveKvFiber(openMemory), kvsession: true, lockable: true},
	{name: "fiber v3/memory", adapter: adapterFiber, storage: storageMemory, serve: serveFiberV3(fiberV3Memory)},
	{name: "fiber v2/memory", adapter: adapterFiber, storage: storageMemory, serve: serveFiberV2(fiberV2Memory)},
	{name: "kvsession/badger (fiber)", adapter: adapterFiber, storage: storageBadger, serve: serveKvFiber(openBadger), kvsession: true, lockable: true},
	{name: "fiber v3/badger", adapter: adapterFiber, storage: storageBadger, serve: serveFiberV3(fiberV3Badger)},
	{name: "fiber v2/badger", adapter: adapterFiber, storage: storageBadger, serve: serveFiberV2(fiberV2Badger)},
	{name: "kvsession/redis (fiber)", adapter: adapterFiber, storage: storageRedis, serve: serveKvFiber(openRedis), kvsession: true, lockable: true, needsRedis: true},
	{name: "fiber v3/redis", adapter: adapterFiber, storage: storageRedis, serve: serveFiberV3(fiberV3Redis), needsRedis: true},
	{name: "fiber v2/redis", adapter: adapterFiber, storage: storageRedis, serve: serveFiberV2(fiberV2Redis), needsRedis: true},
}

// The kinds the scaling runs and the targets name.
const (
	kvMemoryFasthttp = "kvsession/memory (fasthttp)"
	kvBadgerFasthttp = "kvsession/badger (fasthttp)"
)

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
	return badgerstore.Open(badgerstore.Options{Dir: o.dir, CacheSize: o.badgerCache})
}

// clearer is the DeleteAll the stores shipped with kvsession have: no part
// of the store contract, so no interface of package store.
type clearer interface {
	DeleteAll(ctx context.Context) error
}

func openRedis(o serveOptions) (store.Store, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	// A prefix of this process's own, cleared when it stops, so that a
	// shared Redis keeps nothing of the run.
	return redisstore.Open(ctx, redisstore.Options{Addr: o.redisAddr, Prefix: redisPrefix("kvsession")})
}

// redisPrefix is a key prefix of this process's own, for the peers whose
// Redis adapters take one.
func redisPrefix(lib string) string { return fmt.Sprintf("%s-bench:%d:", lib, os.Getpid()) }

// clearRedisPrefix deletes every key under prefix: what a peer left in a
// Redis the bench may share with others.
func clearRedisPrefix(addr, prefix string) error {
	c := goredis.NewClient(&goredis.Options{Addr: addr})
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	iter := c.Scan(ctx, 0, prefix+"*", 1000).Iterator()
	var keys []string
	flush := func() error {
		if len(keys) == 0 {
			return nil
		}
		err := c.Del(ctx, keys...).Err()
		keys = keys[:0]
		return err
	}
	for iter.Next(ctx) {
		keys = append(keys, iter.Val())
		if len(keys) == 1000 {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	if err := iter.Err(); err != nil {
		return err
	}
	return flush()
}

// claimRedisDB checks that database db of the Redis at addr is empty and
// returns a function that empties it again. Fiber's Redis storage takes no
// key prefix: its keys are bare session ids, so a database of their own
// is the only way to clear them without touching anyone else's.
func claimRedisDB(addr string, db int) (release func(), err error) {
	c := goredis.NewClient(&goredis.Options{Addr: addr, DB: db})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	n, err := c.DBSize(ctx).Result()
	if err != nil {
		c.Close()
		return nil, err
	}
	if n != 0 {
		c.Close()
		return nil, fmt.Errorf("database %d of the Redis at %s holds %d keys: fiber's Redis storage has no key prefix, so the bench gives it a database of its own and empties it when done; use a Redis whose database %d is empty", db, addr, n, db)
	}
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		c.FlushDB(ctx)
		c.Close()
	}, nil
}

// newKvBackend opens a store with open and a kvsession backend over it;
// closing closes both and, on a Redis, deletes what the run left.
func newKvBackend(open func(serveOptions) (store.Store, error), o serveOptions) (*kvsession.ServerBackend, func(), error) {
	st, err := open(o)
	if err != nil {
		return nil, nil, err
	}
	reg := store.NewRegistry(nil)
	reg.Register(kvsession.DefaultStore, st)
	closeAll := func() {
		if c, ok := st.(clearer); ok && o.redisAddr != "" {
			c.DeleteAll(context.Background())
		}
		reg.Close()
	}
	be, err := kvsession.New(kvsession.Config{Lock: o.lock}, reg)
	if err != nil {
		closeAll()
		return nil, nil, err
	}
	return be, closeAll, nil
}

// appendCounter writes n as the response body without allocating.
func appendCounter(ctx *fasthttp.RequestCtx, n int) {
	var a [20]byte
	ctx.Response.AppendBody(strconv.AppendInt(a[:0], int64(n), 10))
}

// asInt reads a counter back from a session library that may hand it back
// as any integer type, depending on its encoding.
func asInt(v any) int {
	switch n := v.(type) {
	case int:
		return n
	case int64:
		return int(n)
	case uint64:
		return int(n)
	case int32:
		return int(n)
	case uint32:
		return int(n)
	case int8:
		return int(n)
	case uint8:
		return int(n)
	case int16:
		return int(n)
	case uint16:
		return int(n)
	}
	return 0
}

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
		stop := startProfile(kindName, o)
		defer stop()
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
	if err := <-done; err != nil && !errors.Is(err, net.ErrClosed) && !strings.Contains(err.Error(), "closed network connection") {
		fmt.Fprintln(os.Stderr, "bench: serve:", err)
	}
	// Deferred closes in serve have run: stores are flushed and closed.
}

// startProfile writes the child's CPU profile to o.profile plus the kind's
// name: from now on, or with profileOnUSR1 from the first SIGUSR1 on (so
// that the parent can leave out starting up and creating sessions). The
// function it returns ends the profile.
func startProfile(kindName string, o serveOptions) (stop func()) {
	path := o.profile + profileFileName(kindName) + ".pprof"
	started := make(chan *os.File, 1)
	begin := func() {
		f, err := os.Create(path)
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			started <- nil
			return
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			f.Close()
			started <- nil
			return
		}
		started <- f
	}
	if !o.profileOnUSR1 {
		begin()
	} else {
		usr1 := make(chan os.Signal, 1)
		signal.Notify(usr1, syscall.SIGUSR1)
		go func() { <-usr1; begin() }()
	}
	return func() {
		select {
		case f := <-started:
			if f != nil {
				pprof.StopCPUProfile()
				f.Close()
			}
		default:
		}
	}
}

// profileFileName turns an implementation's name into part of a file name.
func profileFileName(kindName string) string {
	return strings.NewReplacer("/", "-", " ", "-", "*", "", "(", "", ")", "").Replace(kindName)
}
