package kvhttp_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"strings"

	"github.com/kvsession/kvsession"
	"github.com/kvsession/kvsession/kvhttp"
	"github.com/kvsession/kvsession/store"
	"github.com/kvsession/kvsession/store/memstore"
)

// newMemoryBackend keeps sessions in memory, under the registry name
// kvsession.Config uses by default.
func newMemoryBackend() *kvsession.ServerBackend {
	reg := store.NewRegistry(nil)
	if err := reg.Register(kvsession.DefaultStore, memstore.New(memstore.Options{})); err != nil {
		log.Fatal(err)
	}
	backend, err := kvsession.New(kvsession.Config{}, reg)
	if err != nil {
		log.Fatal(err)
	}
	return backend
}

// browser is an HTTP client that keeps cookies, as a browser does.
func browser() *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{Jar: jar}
}

func get(client *http.Client, url string) string {
	resp, err := client.Get(url)
	if err != nil {
		log.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return string(body)
}

// A visit counter on the standard ServeMux, with sessions in memory.
func Example() {
	mw, err := kvhttp.New(newMemoryBackend(), kvhttp.Options{})
	if err != nil {
		log.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		sess := kvhttp.Session(r)
		n, _ := sess.GetInt("visits")
		// Change the session before writing: the first write sends the
		// header, and the session's cookie with it.
		if err := sess.SetInt("visits", n+1); err != nil {
			http.Error(w, "session unavailable", http.StatusInternalServerError)
			return
		}
		fmt.Fprintf(w, "visit %d", n+1)
	})
	srv := httptest.NewServer(mw.Handler(mux))
	defer srv.Close()

	client := browser()
	for range 3 {
		fmt.Println(get(client, srv.URL+"/"))
	}
	// Output:
	// visit 1
	// visit 2
	// visit 3
}

// A streaming response: its first Flush sends the header, so the session
// is saved, and its cookie set, right then; the stream goes on after.
func ExampleMiddleware_Handler_streaming() {
	mw, err := kvhttp.New(newMemoryBackend(), kvhttp.Options{})
	if err != nil {
		log.Fatal(err)
	}
	events := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		kvhttp.Session(r).SetString("subscribed", "news")
		w.Header().Set("Content-Type", "text/event-stream")
		flusher, ok := w.(http.Flusher) // the middleware keeps it
		if !ok {
			http.Error(w, "streaming unsupported", http.StatusInternalServerError)
			return
		}
		for i := 1; i <= 3; i++ {
			fmt.Fprintf(w, "data: %d\n\n", i)
			flusher.Flush()
		}
	})
	srv := httptest.NewServer(mw.Handler(events))
	defer srv.Close()

	resp, err := http.Get(srv.URL)
	if err != nil {
		log.Fatal(err)
	}
	defer resp.Body.Close()
	fmt.Println("cookie with the first event:", strings.HasPrefix(resp.Header.Get("Set-Cookie"), "session="))
	first, _ := bufio.NewReader(resp.Body).ReadString('\n')
	fmt.Print(first)
	// Output:
	// cookie with the first event: true
	// data: 1
}

// Options: a health check that never needs a session, and GET requests
// that only read theirs, so that with Config.Lock they do not wait for
// the session's lock.
func ExampleOptions() {
	opts := kvhttp.Options{
		Skip:     func(r *http.Request) bool { return r.URL.Path == "/healthz" },
		ReadOnly: func(r *http.Request) bool { return r.Method == http.MethodGet || r.Method == http.MethodHead },
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			log.Printf("session of %s %s: %v", r.Method, r.URL.Path, err)
			w.Header().Set("Retry-After", "1")
			http.Error(w, "please try again", http.StatusServiceUnavailable)
		},
	}
	mw, err := kvhttp.New(newMemoryBackend(), opts)
	if err != nil {
		log.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "session: ", kvhttp.Session(r) != nil)
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "read-only: ", kvhttp.Session(r).IsReadOnly())
	})
	srv := httptest.NewServer(mw.Handler(mux))
	defer srv.Close()

	fmt.Println(get(http.DefaultClient, srv.URL+"/healthz"))
	fmt.Println(get(http.DefaultClient, srv.URL+"/"))
	// Output:
	// session: false
	// read-only: true
}

// FromContext finds the session in code that is given the request's
// context rather than the request.
func ExampleFromContext() {
	mw, err := kvhttp.New(newMemoryBackend(), kvhttp.Options{})
	if err != nil {
		log.Fatal(err)
	}
	greeting := func(ctx context.Context) string {
		if name, ok := kvhttp.FromContext(ctx).GetString("name"); ok {
			return "hello again, " + name
		}
		return "hello, stranger"
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /name/{name}", func(w http.ResponseWriter, r *http.Request) {
		kvhttp.Session(r).SetString("name", r.PathValue("name"))
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, greeting(r.Context()))
	})
	srv := httptest.NewServer(mw.Handler(mux))
	defer srv.Close()

	client := browser()
	fmt.Println(get(client, srv.URL+"/"))
	resp, err := client.Post(srv.URL+"/name/ada", "", nil)
	if err != nil {
		log.Fatal(err)
	}
	resp.Body.Close()
	fmt.Println(get(client, srv.URL+"/"))
	// Output:
	// hello, stranger
	// hello again, ada
}
