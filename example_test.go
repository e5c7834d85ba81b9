package kvsession_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net"
	"strconv"
	"time"

	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttputil"

	"github.com/kvsession/kvsession"
	"github.com/kvsession/kvsession/kvfasthttp"
	"github.com/kvsession/kvsession/store"
	"github.com/kvsession/kvsession/store/memstore"
)

// A server-side session on a memory store, through the fasthttp
// middleware: the handler counts a browser's visits.
func Example() {
	// No registry: the backend makes a memory store of its own, which
	// Close releases. Pass a registry for Badger, Redis or your own store.
	backend, err := kvsession.New(kvsession.Config{}, nil)
	if err != nil {
		log.Fatal(err) // a bad Config names the field
	}
	defer backend.Close()
	sessions, err := kvfasthttp.New(backend, kvfasthttp.Options{})
	if err != nil {
		log.Fatal(err)
	}
	// NewServer: a fasthttp.Server whose read buffer fits the session
	// cookies and whose log never shows them.
	server := sessions.NewServer(func(ctx *fasthttp.RequestCtx) {
		sess := kvfasthttp.Session(ctx)
		n, _ := sess.GetInt("visits")
		if err := sess.SetInt("visits", n+1); err != nil {
			ctx.Error("session unavailable", fasthttp.StatusServiceUnavailable)
			return
		}
		fmt.Fprintf(ctx, "visit %d", n+1)
	})

	b := newBrowser(server) // in production: server.ListenAndServe(":8080")
	defer b.close()
	fmt.Println(b.get("/"))
	fmt.Println(b.get("/"))
	b.forget() // another browser, or cookies cleared
	fmt.Println(b.get("/"))
	// Output:
	// 200 visit 1
	// 200 visit 2
	// 200 visit 1
}

// The cookie backend keeps the session sealed in the cookie itself: the
// same handler, no server state. Switching is a change of constructor.
func ExampleNewCookie() {
	secret := make([]byte, kvsession.SecretBytes) // in production: 32 random bytes, kept secret
	backend, err := kvsession.NewCookie(kvsession.Config{Secrets: [][]byte{secret}}, nil)
	if err != nil {
		log.Fatal(err)
	}
	// Cookies over 4 KB are split: the server must read larger headers.
	sessions, err := kvfasthttp.New(backend, kvfasthttp.Options{ReadBufferSize: kvfasthttp.RequiredReadBufferSize(backend, kvfasthttp.DefaultHeaderRoom)})
	if err != nil {
		log.Fatal(err)
	}
	b := newBrowser(sessions.NewServer(func(ctx *fasthttp.RequestCtx) {
		sess := kvfasthttp.Session(ctx)
		n, _ := sess.GetInt("visits")
		sess.SetInt("visits", n+1)
		fmt.Fprintf(ctx, "visit %d", n+1)
	}))
	defer b.close()
	fmt.Println(b.get("/"))
	fmt.Println(b.get("/"))
	// Output:
	// 200 visit 1
	// 200 visit 2
}

// At login, bind the session to its user and give it a new id: an id an
// attacker planted or saw before the login is worthless after it.
func ExampleSession_RenewID() {
	backend := memoryBackend()
	sessions, _ := kvfasthttp.New(backend, kvfasthttp.Options{})
	b := newBrowser(sessions.NewServer(func(ctx *fasthttp.RequestCtx) {
		sess := kvfasthttp.Session(ctx)
		switch string(ctx.Path()) {
		case "/login":
			if err := sess.SetUser(string(ctx.QueryArgs().Peek("user"))); err != nil {
				ctx.Error(err.Error(), fasthttp.StatusBadRequest)
				return
			}
			sess.RenewID()
		case "/cart":
			sess.SetString("cart", "book")
		}
		cart, _ := sess.GetString("cart")
		fmt.Fprintf(ctx, "user=%q cart=%q", sess.User(), cart)
	}))
	defer b.close()
	b.get("/cart")
	before := b.cookie
	fmt.Println(b.get("/login?user=alice"))
	fmt.Println("new id:", b.cookie != before)
	// Output:
	// 200 user="alice" cart="book"
	// new id: true
}

// Log out everywhere: every session bound to the user ends, however many
// there are, and none comes back, even from a request already in flight.
func ExampleServerBackend_DestroyUserSessions() {
	backend := memoryBackend()
	sessions, _ := kvfasthttp.New(backend, kvfasthttp.Options{})
	server := sessions.NewServer(func(ctx *fasthttp.RequestCtx) {
		sess := kvfasthttp.Session(ctx)
		if ctx.QueryArgs().Has("user") {
			sess.SetUser(string(ctx.QueryArgs().Peek("user")))
			sess.RenewID()
		}
		fmt.Fprintf(ctx, "user=%q", sess.User())
	})
	laptop, phone := newBrowser(server), newBrowser(server)
	defer laptop.close()
	defer phone.close()
	laptop.get("/?user=alice")
	phone.get("/?user=alice")

	n, err := backend.DestroyUserSessions(context.Background(), "alice")
	fmt.Println("logged out of", n, "sessions", err)
	fmt.Println(laptop.get("/"))
	fmt.Println(phone.get("/"))
	// Output:
	// logged out of 2 sessions <nil>
	// 200 user=""
	// 200 user=""
}

// A store that fails gives the request to the error handler, never a
// half-written response: here a 503 with a short message.
func Example_errorHandler() {
	stores := store.NewRegistry(nil)
	stores.Register("sessions", down{memstore.New(memstore.Options{})})
	defer stores.Close()
	backend, _ := kvsession.New(kvsession.Config{}, stores)
	sessions, _ := kvfasthttp.New(backend, kvfasthttp.Options{
		ErrorHandler: func(ctx *fasthttp.RequestCtx, err error) {
			var se *kvsession.StoreError
			if errors.As(err, &se) {
				ctx.Response.Reset()
				ctx.SetStatusCode(fasthttp.StatusServiceUnavailable)
				fmt.Fprintf(ctx, "try again (session %s failed)", se.Op)
			}
		},
	})
	b := newBrowser(sessions.NewServer(func(ctx *fasthttp.RequestCtx) {
		kvfasthttp.Session(ctx).SetString("v", "x")
		ctx.WriteString("saved")
	}))
	defer b.close()
	fmt.Println(b.get("/"))
	// Output:
	// 503 try again (session save failed)
}

// down is a store whose writes fail, as one whose disk is full would.
type down struct{ store.Store }

var errDown = errors.New("disk full")

func (down) Set(context.Context, string, []byte, time.Duration) error { return errDown }

func memoryBackend() *kvsession.ServerBackend {
	backend, err := kvsession.New(kvsession.Config{}, nil)
	if err != nil {
		log.Fatal(err)
	}
	return backend
}

// testBrowser serves a server on an in-memory listener and keeps the
// session cookie between requests, as a browser would.
type testBrowser struct {
	ln     *fasthttputil.InmemoryListener
	client *fasthttp.Client
	cookie string
}

func newBrowser(server *fasthttp.Server) *testBrowser {
	ln := fasthttputil.NewInmemoryListener()
	go server.Serve(ln)
	return &testBrowser{ln: ln, client: &fasthttp.Client{Dial: func(string) (net.Conn, error) { return ln.Dial() }}}
}

func (b *testBrowser) close()  { b.ln.Close() }
func (b *testBrowser) forget() { b.cookie = "" }

// get requests path and returns the status and body.
func (b *testBrowser) get(path string) string {
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI("http://example.test" + path)
	if b.cookie != "" {
		req.Header.SetCookie("session", b.cookie)
	}
	if err := b.client.Do(req, resp); err != nil {
		return err.Error()
	}
	c := fasthttp.AcquireCookie()
	defer fasthttp.ReleaseCookie(c)
	c.SetKey("session")
	if resp.Header.Cookie(c) {
		b.cookie = string(c.Value())
		if c.MaxAge() < 0 || c.Expire().Year() == 1970 {
			b.cookie = ""
		}
	}
	return strconv.Itoa(resp.StatusCode()) + " " + string(resp.Body())
}
