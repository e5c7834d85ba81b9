package kvsession

import (
	"bytes"
	"context"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kvsession/kvsession/store"
	"github.com/kvsession/kvsession/store/badgerstore"
	"github.com/kvsession/kvsession/store/memstore"
	"github.com/kvsession/kvsession/store/redisstore"
)

// nopSink discards the response headers, so benchmarks measure the session
// work alone.
type nopSink struct{}

func (nopSink) SetCookie(string, []byte) {}
func (nopSink) AddHeader(string, string) {}
func (nopSink) SetHeader(string, []byte) {}

// onEachStore runs a session benchmark on the memory and Badger stores, and
// on Redis when KVSESSION_REDIS_ADDR names a server:
// sessions sessions holding values, and work as the handler of one request
// per iteration.
func onEachStore(b *testing.B, sessions int, values map[string]any, bytesPerOp int64, work func(*Session)) {
	stores := map[string]func() store.Store{
		"memory": func() store.Store { return memstore.New(memstore.Options{}) },
		"badger": func() store.Store {
			s, err := badgerstore.Open(badgerstore.Options{Dir: b.TempDir()})
			if err != nil {
				b.Fatal(err)
			}
			return s
		},
	}
	names := []string{"memory", "badger"}
	// Redis runs when there is one to run against: .ci/run starts one.
	if addr := os.Getenv("KVSESSION_REDIS_ADDR"); addr != "" {
		names = append(names, "redis")
		stores["redis"] = func() store.Store {
			s, err := redisstore.Open(context.Background(), redisstore.Options{Addr: addr, Prefix: "kvsession-bench:" + strconv.FormatInt(time.Now().UnixNano(), 36) + ":"})
			if err != nil {
				b.Fatal(err)
			}
			return s
		}
	}
	for _, name := range names {
		b.Run(name, func(b *testing.B) {
			st := stores[name]()
			defer func() {
				if r, ok := st.(*redisstore.Store); ok {
					r.DeleteAll(context.Background()) // a shared server: leave it as found
				}
				st.Close()
			}()
			be := newBackend(b, Config{}, st)
			ids := seed(b, be, sessions, values)
			b.SetBytes(bytesPerOp)
			runRequests(b, be, ids, work)
		})
	}
}

// seed creates n sessions holding the given values and returns Cookie
// headers carrying their ids.
func seed(b testing.TB, be *ServerBackend, n int, values map[string]any) [][]byte {
	ids := make([][]byte, n)
	for i := range ids {
		id, err := be.GenerateID()
		if err != nil {
			b.Fatal(err)
		}
		if err := be.Set(context.Background(), id, values); err != nil {
			b.Fatal(err)
		}
		ids[i] = []byte(be.CookieName() + "=" + id)
	}
	return ids
}

// runRequests runs fn as the session work of one request per iteration,
// cycling through Cookie headers, the way the middleware drives the backend.
func runRequests(b *testing.B, be Backend, ids [][]byte, fn func(*Session)) {
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		s := be.LoadFromRequest(ctx, ids[i%len(ids)])
		fn(s)
		if err := be.StoreInResponse(s, nopSink{}); err != nil {
			b.Fatal(err)
		}
		be.Release(s)
	}
}

func increment(s *Session) {
	n, _ := s.GetInt("counter")
	s.SetInt("counter", n+1)
}

var small = map[string]any{"counter": 1000, "user": "ada"}

// BenchmarkIncrement is one /counter request: load, read an int, set it,
// save, set the cookie.
func BenchmarkIncrement(b *testing.B) {
	onEachStore(b, 1000, small, 0, increment)
}

// BenchmarkReadOnly is a request that reads the session and changes
// nothing: no store write, no cookie.
func BenchmarkReadOnly(b *testing.B) {
	onEachStore(b, 1000, small, 0, func(s *Session) { s.GetInt("counter") })
}

// BenchmarkSessionSize loads a session carrying a blob of the given size,
// changes a small value beside it and saves it.
func BenchmarkSessionSize(b *testing.B) {
	for _, size := range []int{1 << 10, 16 << 10} {
		b.Run(strconv.Itoa(size>>10)+"KB", func(b *testing.B) {
			values := map[string]any{"counter": 1, "blob": strings.Repeat("x", size)}
			onEachStore(b, 200, values, int64(size), increment)
		})
	}
}

// BenchmarkNewSession creates a session: a fresh id from crypto/rand,
// encode, save.
func BenchmarkNewSession(b *testing.B) {
	st := memstore.New(memstore.Options{})
	defer st.Close()
	be := newBackend(b, Config{}, st)
	runRequests(b, be, [][]byte{nil}, func(s *Session) { s.Set("user", "ada") })
}

// BenchmarkCookie measures the cookie backend's two halves for sessions
// holding a blob of the given size beside a counter: Seal is
// encode + encrypt + split (a request that changed the session), Open is
// join + decrypt + decode (a request that reads it).
func BenchmarkCookie(b *testing.B) {
	for _, size := range []int{1 << 10, 8 << 10} {
		be, err := NewCookie(Config{Secrets: [][]byte{bytes.Repeat([]byte{1}, SecretBytes)}}, nil)
		if err != nil {
			b.Fatal(err)
		}
		values := map[string]any{"counter": 1, "blob": strings.Repeat("x", size)}
		s := be.LoadFromRequest(context.Background(), nil)
		for k, v := range values {
			s.Set(k, v)
		}
		out := &sink{}
		if err := be.StoreInResponse(s, out); err != nil {
			b.Fatal(err)
		}
		be.Release(s)
		kept := map[string]string{}
		for name, line := range out.cookies {
			pair, _, _ := strings.Cut(line, ";")
			_, v, _ := strings.Cut(pair, "=")
			kept[name] = v
		}
		header := [][]byte{header(sortedKeys(kept), kept)}
		name := strconv.Itoa(size>>10) + "KB"
		b.Run("Seal/"+name, func(b *testing.B) {
			b.SetBytes(int64(size))
			runRequests(b, be, header, func(s *Session) { s.Set("counter", 2) })
		})
		b.Run("Open/"+name, func(b *testing.B) {
			b.SetBytes(int64(size))
			runRequests(b, be, header, func(s *Session) { s.GetInt("counter") })
		})
	}
}

// sharedMemory is the memory store without its traits (no InProcess), so
// that the backend hashes ids into keys as it does for Badger or Redis.
type sharedMemory struct {
	store.Store
	store.Appender
}

// BenchmarkFeatureCost measures what each lifecycle feature adds to one
// request on the memory store, against stored-under-the-id keys (the
// memory store's default): compare each sub-benchmark with "plain keys".
func BenchmarkFeatureCost(b *testing.B) {
	features := []struct {
		name string
		cfg  Config
	}{
		{"plain keys", Config{}},
		{"hashed keys (default of persistent stores)", Config{}},
		{"keyed hash", Config{IDHashKey: bytes.Repeat([]byte{1}, 32)}},
		{"lock", Config{Lock: true}},
		{"idle timeout", Config{IdleTimeout: time.Hour, ExtensionDelay: 30 * time.Minute}},
		{"absolute timeout", Config{AbsoluteTimeout: time.Hour}},
		{"renewal timeout", Config{RotationInterval: time.Hour}},
		{"bound to a user", Config{}},
	}
	for _, f := range features {
		for _, op := range []struct {
			name string
			work func(*Session)
		}{{"increment", increment}, {"read", func(s *Session) { s.GetInt("counter") }}} {
			b.Run(f.name+"/"+op.name, func(b *testing.B) {
				mem := memstore.New(memstore.Options{})
				defer mem.Close()
				var st store.Store = mem
				if strings.HasPrefix(f.name, "hashed keys") {
					st = sharedMemory{mem, mem}
				}
				be := newBackend(b, f.cfg, st)
				values := map[string]any{"counter": 1000, "user": "ada"}
				ids := seed(b, be, 1000, values)
				if f.name == "bound to a user" {
					for _, h := range ids {
						s := be.LoadFromRequest(context.Background(), h)
						s.SetUser("ada")
						if err := be.StoreInResponse(s, nopSink{}); err != nil {
							b.Fatal(err)
						}
						be.Release(s)
					}
				}
				runRequests(b, be, ids, op.work)
			})
		}
	}
}

// BenchmarkIDHeader is BenchmarkIncrement and BenchmarkReadOnly on the
// memory store for clients that carry the id in Config.IDHeader: the same
// work, with the id read from a header value instead of a Cookie header.
func BenchmarkIDHeader(b *testing.B) {
	for _, op := range []struct {
		name string
		work func(*Session)
	}{{"increment", increment}, {"read", func(s *Session) { s.GetInt("counter") }}} {
		b.Run(op.name, func(b *testing.B) {
			st := memstore.New(memstore.Options{})
			defer st.Close()
			be := newBackend(b, Config{IDHeader: "X-Session-Id"}, st)
			ids := seed(b, be, 1000, small)
			for i, h := range ids {
				ids[i] = bytes.TrimPrefix(h, []byte(be.CookieName()+"="))
			}
			ctx := context.Background()
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				s := be.LoadFromHeader(ctx, ids[i%len(ids)])
				op.work(s)
				if err := be.StoreInResponse(s, nopSink{}); err != nil {
					b.Fatal(err)
				}
				be.Release(s)
			}
		})
	}
}
