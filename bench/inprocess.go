package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/alexedwards/scs/v2"
	bdg "github.com/dgraph-io/badger/v4"
	session "github.com/fasthttp/session/v2"
	fhsmemory "github.com/fasthttp/session/v2/providers/memory"
	"github.com/gofiber/fiber/v2"
	fibersession "github.com/gofiber/fiber/v2/middleware/session"
	"github.com/valyala/fasthttp"

	"github.com/kvsession/kvsession"
	"github.com/kvsession/kvsession/store"
	"github.com/kvsession/kvsession/store/badgerstore"
	"github.com/kvsession/kvsession/store/memstore"
)

// An in-process contender runs one request's session work through its own
// API: load the session the request's cookie names, read a counter, write
// it back incremented (or not, for a read), save. Each is given 1,000
// existing sessions and cycles through them.
type contender struct {
	name string
	// setup returns the work of request i, read-only or not, and a cleanup.
	setup func(b testing.TB, sessions int) (work func(i int, write bool), cleanup func())
}

func inProcessContenders() []contender {
	return []contender{
		{"kvsession/memory", kvsessionSetup(func(b testing.TB) store.Store { return memstore.New(memstore.Options{}) })},
		{"kvsession/badger", kvsessionSetup(func(b testing.TB) store.Store {
			st, err := badgerstore.Open(badgerstore.Options{Dir: b.TempDir()})
			if err != nil {
				b.Fatal(err)
			}
			return st
		})},
		{"badger alone", badgerAloneSetup},
		{"fasthttp/session memory (id copied)", fasthttpSessionSetup},
		{"fiber v2/memory", fiberSetup},
		{"scs/memstore", scsSetup},
	}
}

// nopSink discards what kvsession writes to a response.
type nopSink struct{}

func (nopSink) SetCookie(string, []byte) {}
func (nopSink) AddHeader(string, string) {}
func (nopSink) SetHeader(string, []byte) {}

func kvsessionSetup(open func(b testing.TB) store.Store) func(b testing.TB, n int) (func(int, bool), func()) {
	return func(b testing.TB, n int) (func(int, bool), func()) {
		st := open(b)
		reg := store.NewRegistry(nil)
		reg.Register(kvsession.DefaultStore, st)
		be, err := kvsession.New(kvsession.Config{}, reg)
		if err != nil {
			b.Fatal(err)
		}
		ctx := context.Background()
		headers := make([][]byte, n)
		for i := range headers {
			id, _ := be.GenerateID()
			if err := be.Set(ctx, id, map[string]any{"counter": 1000}); err != nil {
				b.Fatal(err)
			}
			headers[i] = []byte("session=" + id)
		}
		return func(i int, write bool) {
				s := be.LoadFromRequest(ctx, headers[i%n])
				v, _ := s.GetInt("counter")
				if write {
					s.SetInt("counter", v+1)
				}
				if err := be.StoreInResponse(s, nopSink{}); err != nil {
					b.Fatal(err)
				}
				be.Release(s)
			}, func() {
				reg.Close()
			}
	}
}

// badgerAloneSetup is what a session library gets from Badger with no
// cache of its own: one raw Badger transaction per request, reading an
// 8-byte counter and, for an increment, writing it back, with no session
// code around it.
func badgerAloneSetup(b testing.TB, n int) (func(int, bool), func()) {
	st, err := badgerstore.Open(badgerstore.Options{Dir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	db := st.DB()
	keys := make([][]byte, n)
	for i := range keys {
		var id [32]byte
		rand.Read(id[:])
		keys[i] = base64.RawURLEncoding.AppendEncode([]byte("session:"), id[:])
	}
	var buf [8]byte
	read := func(txn *bdg.Txn, key []byte) (uint64, error) {
		item, err := txn.Get(key)
		if err != nil && !errors.Is(err, bdg.ErrKeyNotFound) {
			return 0, err
		}
		var v uint64
		if err == nil {
			err = item.Value(func(b []byte) error { v = binary.BigEndian.Uint64(b); return nil })
		} else {
			err = nil
		}
		return v, err
	}
	work := func(i int, write bool) {
		key := keys[i%n]
		var err error
		if write {
			err = db.Update(func(txn *bdg.Txn) error {
				v, err := read(txn, key)
				if err != nil {
					return err
				}
				e := bdg.NewEntry(key, binary.BigEndian.AppendUint64(buf[:0], v+1))
				e.ExpiresAt = uint64(time.Now().Add(kvsession.DefaultMaxAge).Unix())
				return txn.SetEntry(e)
			})
		} else {
			err = db.View(func(txn *bdg.Txn) error { _, err := read(txn, key); return err })
		}
		if err != nil {
			b.Fatal(err)
		}
	}
	for i := range keys {
		work(i, true)
	}
	return work, func() { st.Close() }
}

// fasthttpSessionSetup runs fasthttp/session as the HTTP comparison does
// (serveFasthttpSession): its memory provider with the id copied, and a
// read that does not Save.
func fasthttpSessionSetup(b testing.TB, n int) (func(int, bool), func()) {
	p, err := fhsmemory.New(fhsmemory.Config{})
	if err != nil {
		b.Fatal(err)
	}
	cfg := session.NewDefaultConfig()
	cfg.EncodeFunc, cfg.DecodeFunc = session.MSGPEncode, session.MSGPDecode
	sessions := session.New(cfg)
	if err := sessions.SetProvider(idCopied{p}); err != nil {
		b.Fatal(err)
	}
	ids := make([]string, n)
	for i := range ids {
		var rc fasthttp.RequestCtx
		st, err := sessions.Get(&rc)
		if err != nil {
			b.Fatal(err)
		}
		st.Set("counter", 1000)
		ids[i] = string(st.GetSessionID())
		if err := sessions.Save(&rc, st); err != nil {
			b.Fatal(err)
		}
	}
	var rc fasthttp.RequestCtx
	return func(i int, write bool) {
		rc.Request.Reset()
		rc.Response.Reset()
		rc.Request.Header.SetCookie(cfg.CookieName, ids[i%n])
		st, err := sessions.Get(&rc)
		if err != nil {
			b.Fatal(err)
		}
		v := asInt(st.Get("counter"))
		if write {
			st.Set("counter", v+1)
			if err := sessions.Save(&rc, st); err != nil {
				b.Fatal(err)
			}
		}
	}, func() {}
}

func fiberSetup(b testing.TB, n int) (func(int, bool), func()) {
	app := fiber.New()
	st := fibersession.New() // memory storage
	ids := make([]string, n)
	for i := range ids {
		c := app.AcquireCtx(&fasthttp.RequestCtx{})
		sess, err := st.Get(c)
		if err != nil {
			b.Fatal(err)
		}
		sess.Set("counter", 1000)
		ids[i] = sess.ID()
		if err := sess.Save(); err != nil {
			b.Fatal(err)
		}
		app.ReleaseCtx(c)
	}
	var rc fasthttp.RequestCtx
	return func(i int, write bool) {
		rc.Request.Reset()
		rc.Response.Reset()
		rc.Request.Header.SetCookie("session_id", ids[i%n])
		c := app.AcquireCtx(&rc)
		sess, err := st.Get(c)
		if err != nil {
			b.Fatal(err)
		}
		v, _ := sess.Get("counter").(int)
		if write {
			sess.Set("counter", v+1)
			if err := sess.Save(); err != nil {
				b.Fatal(err)
			}
		}
		app.ReleaseCtx(c)
	}, func() {}
}

func scsSetup(b testing.TB, n int) (func(int, bool), func()) {
	sm := scs.New() // memstore
	tokens := make([]string, n)
	for i := range tokens {
		ctx, err := sm.Load(context.Background(), "")
		if err != nil {
			b.Fatal(err)
		}
		sm.Put(ctx, "counter", 1000)
		tokens[i], _, err = sm.Commit(ctx)
		if err != nil {
			b.Fatal(err)
		}
	}
	// scs works through a request's context: build it as LoadAndSave does.
	req, _ := http.NewRequest("GET", "/", nil)
	return func(i int, write bool) {
		ctx, err := sm.Load(req.Context(), tokens[i%n])
		if err != nil {
			b.Fatal(err)
		}
		v := sm.GetInt(ctx, "counter")
		if write {
			sm.Put(ctx, "counter", v+1)
			if _, _, err := sm.Commit(ctx); err != nil {
				b.Fatal(err)
			}
		}
	}, func() {}
}

// inProcessResult is one contender's figures for one operation.
type inProcessResult struct {
	contender, op string
	r             testing.BenchmarkResult
}

// runInProcess benchmarks every contender's increment and read.
func runInProcess(progress func(string)) []inProcessResult {
	var out []inProcessResult
	for _, c := range inProcessContenders() {
		for _, op := range []string{"increment", "read"} {
			progress(c.name + " " + op)
			r := testing.Benchmark(func(b *testing.B) {
				work, cleanup := c.setup(b, 1000)
				defer cleanup()
				b.ReportAllocs()
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					work(i, op == "increment")
				}
			})
			out = append(out, inProcessResult{c.name, op, r})
		}
	}
	return out
}
