package routers_test

import (
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/gin-gonic/gin"

	"github.com/kvsession/kvsession"
	"github.com/kvsession/kvsession/examples/routers"
	"github.com/kvsession/kvsession/kvhttp"
	"github.com/kvsession/kvsession/store"
	"github.com/kvsession/kvsession/store/memstore"
)

func init() { gin.SetMode(gin.TestMode) }

var recipes = []struct {
	name  string
	serve func(*kvhttp.Middleware) http.Handler
}{
	{"ServeMux", routers.ServeMux},
	{"chi", routers.Chi},
	{"echo", routers.Echo},
	{"gin", routers.Gin},
}

// start serves a recipe on a loopback port, with sessions in memory, and
// returns a client that keeps cookies as a browser does.
func start(t *testing.T, serve func(*kvhttp.Middleware) http.Handler) (string, *http.Client) {
	t.Helper()
	reg := store.NewRegistry(nil)
	if err := reg.Register(kvsession.DefaultStore, memstore.New(memstore.Options{})); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { reg.Close() })
	backend, err := kvsession.New(kvsession.Config{}, reg)
	if err != nil {
		t.Fatal(err)
	}
	mw, err := kvhttp.New(backend, kvhttp.Options{})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(serve(mw))
	t.Cleanup(srv.Close)
	jar, _ := cookiejar.New(nil)
	return srv.URL, &http.Client{Jar: jar}
}

func get(t *testing.T, client *http.Client, url string) (*http.Response, string) {
	t.Helper()
	resp, err := client.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(body)
}

// TestCounter: under every router, the session counts a client's visits
// across requests, its cookie set by the first response.
func TestCounter(t *testing.T) {
	for _, recipe := range recipes {
		t.Run(recipe.name, func(t *testing.T) {
			url, client := start(t, recipe.serve)
			for want := 1; want <= 3; want++ {
				resp, body := get(t, client, url+"/counter")
				if resp.StatusCode != http.StatusOK || body != strconv.Itoa(want) {
					t.Fatalf("visit %d: %d %q", want, resp.StatusCode, body)
				}
				if want == 1 && !strings.HasPrefix(resp.Header.Get("Set-Cookie"), "session=") {
					t.Fatalf("first visit set no session cookie: %q", resp.Header)
				}
			}
			// Another browser has a session of its own.
			jar, _ := cookiejar.New(nil)
			if _, body := get(t, &http.Client{Jar: jar}, url+"/counter"); body != "1" {
				t.Fatalf("a new client's first visit: %q", body)
			}
		})
	}
}

// TestEchoErrorCarriesCookie: echo renders a returned error after the
// middleware is done; the session the handler changed is saved and its
// cookie is in that response.
func TestEchoErrorCarriesCookie(t *testing.T) {
	url, client := start(t, routers.Echo)
	resp, body := get(t, client, url+"/teapot")
	if resp.StatusCode != http.StatusTeapot || !strings.Contains(body, "no coffee") {
		t.Fatalf("%d %q", resp.StatusCode, body)
	}
	if !strings.HasPrefix(resp.Header.Get("Set-Cookie"), "session=") {
		t.Fatalf("the error response set no session cookie: %q", resp.Header)
	}
	if _, body := get(t, client, url+"/counter"); body != "2" {
		t.Fatalf("counter after the teapot: %q, want the teapot's visit counted", body)
	}
}
