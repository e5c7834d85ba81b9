package main

import (
	"io"
	"net"
	"net/http"
	"strconv"

	"github.com/alexedwards/scs/badgerstore"
	"github.com/alexedwards/scs/redisstore"
	"github.com/alexedwards/scs/v2"
	badgerv1 "github.com/dgraph-io/badger"
	"github.com/gomodule/redigo/redis"

	"github.com/kvsession/kvsession/kvhttp"
	"github.com/kvsession/kvsession/store"
)

// The net/http servers: bare net/http, kvsession on kvhttp, and scs with
// its memstore, badgerstore and redisstore.

func serveBareNetHTTP(ln net.Listener, _ serveOptions) error {
	mux := http.NewServeMux()
	mux.HandleFunc("/incr", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "1") })
	mux.HandleFunc("/read", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "1") })
	mux.HandleFunc("/big", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "4096") })
	return (&http.Server{Handler: mux}).Serve(ln)
}

func serveKvNetHTTP(open func(serveOptions) (store.Store, error)) func(net.Listener, serveOptions) error {
	return func(ln net.Listener, o serveOptions) error {
		be, closeAll, err := newKvBackend(open, o)
		if err != nil {
			return err
		}
		defer closeAll()
		mw, err := kvhttp.New(be, kvhttp.Options{
			// GET requests only read: with the lock on they need not wait.
			ReadOnly: func(r *http.Request) bool { return r.Method == http.MethodGet },
		})
		if err != nil {
			return err
		}
		mux := http.NewServeMux()
		mux.HandleFunc("POST /incr", func(w http.ResponseWriter, r *http.Request) {
			s := kvhttp.Session(r)
			n, _ := s.GetInt("n")
			s.SetInt("n", n+1)
			io.WriteString(w, strconv.Itoa(n+1))
		})
		mux.HandleFunc("GET /read", func(w http.ResponseWriter, r *http.Request) {
			n, _ := kvhttp.Session(r).GetInt("n")
			io.WriteString(w, strconv.Itoa(n))
		})
		mux.HandleFunc("POST /big", func(w http.ResponseWriter, r *http.Request) {
			kvhttp.Session(r).SetBytes("blob", blob)
			io.WriteString(w, strconv.Itoa(len(blob)))
		})
		return (&http.Server{Handler: mw.Handler(mux)}).Serve(ln)
	}
}

// scsMemstore, scsBadgerstore and scsRedisstore give scs its store: its
// default memstore, or its own badgerstore (on the Badger v1 it is written
// for) or redisstore (on redigo, with the pool its README shows).
func scsMemstore(serveOptions) (scs.Store, func(), error) { return nil, func() {}, nil }

func scsBadgerstore(o serveOptions) (scs.Store, func(), error) {
	db, err := badgerv1.Open(badgerv1.DefaultOptions(o.dir).WithLogger(nil))
	if err != nil {
		return nil, nil, err
	}
	return badgerstore.New(db), func() { db.Close() }, nil
}

func scsRedisstore(o serveOptions) (scs.Store, func(), error) {
	pool := &redis.Pool{
		MaxIdle: 10,
		Dial:    func() (redis.Conn, error) { return redis.Dial("tcp", o.redisAddr) },
	}
	prefix := redisPrefix("scs")
	return redisstore.NewWithPrefix(pool, prefix), func() {
		pool.Close()
		clearRedisPrefix(o.redisAddr, prefix)
	}, nil
}

func serveScs(open func(serveOptions) (scs.Store, func(), error)) func(net.Listener, serveOptions) error {
	return func(ln net.Listener, o serveOptions) error {
		st, cleanup, err := open(o)
		if err != nil {
			return err
		}
		defer cleanup()
		sm := scs.New()
		if st != nil {
			sm.Store = st
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
