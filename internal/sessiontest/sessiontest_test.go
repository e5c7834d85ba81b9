package sessiontest

import (
	"net/http"
	"net/http/httptest"
	"os/exec"
	"reflect"
	"strings"
	"testing"

	"github.com/kvsession/kvsession"
)

// TestClient runs the client against a stand-in for the playground's
// routes: the jar keeps the session cookie, Send reads it and its expiry.
func TestClient(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/login":
			http.SetCookie(w, &http.Cookie{Name: "session", Value: "id-" + r.URL.Query().Get("user"), Path: "/"})
			w.WriteHeader(204)
		case "/session":
			w.Header().Set("Content-Type", "application/json")
			ck, err := r.Cookie("session")
			if err != nil {
				w.Write([]byte(`{}`))
				return
			}
			w.Write([]byte(`{"id":"` + ck.Value + `"}`))
		case "/logout":
			http.SetCookie(w, &http.Cookie{Name: "session", Path: "/", MaxAge: -1})
		}
	}))
	defer srv.Close()

	c := NewClient(t, srv.URL)
	if ck := c.SessionCookie(); ck != nil {
		t.Fatalf("new client holds %v", ck)
	}
	if got := c.SessionJSON(); len(got) != 0 {
		t.Fatalf("GET /session without a cookie = %v", got)
	}
	c.Login("alice")
	if ck := c.SessionCookie(); ck == nil || ck.Value != "id-alice" {
		t.Fatalf("after login the jar holds %v", ck)
	}
	if got, want := c.SessionJSON(), map[string]any{"id": "id-alice"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("GET /session = %v, want %v", got, want)
	}
	// A cookie given by hand goes with the jar's.
	r := c.Expect("GET", "/session", "", 200, `{"id":"id-alice"}`)
	if r.Cookie != "" || r.Expired || len(r.SetCookies()) != 0 {
		t.Fatalf("a response that set no cookie: %+v", r)
	}

	r, err := Send(&http.Client{}, "POST", srv.URL+"/login?user=bob", "")
	if err != nil || r.Status != 204 || r.Cookie != "id-bob" || r.Expired {
		t.Fatalf("Send POST /login = %+v, %v", r, err)
	}
	if r = c.Do("GET", "/logout", ""); !r.Expired || r.Cookie != "" {
		t.Fatalf("GET /logout = %+v, want the session cookie expired", r)
	}
	if ck := c.SessionCookie(); ck != nil {
		t.Fatalf("after logout the jar holds %v", ck)
	}
}

func TestNewCookieBackend(t *testing.T) {
	b := NewCookieBackend(t, kvsession.Config{})
	if n := b.Config().MaxCookieSegments; n <= 0 {
		t.Fatalf("MaxCookieSegments %d", n)
	}
}

// TestOnlyTestsImportIt checks what the package comment promises: no
// package of the module imports sessiontest outside its tests.
func TestOnlyTestsImportIt(t *testing.T) {
	out, err := exec.Command("go", "list", "-f", `{{.ImportPath}}: {{join .Imports " "}}`, "github.com/kvsession/kvsession/...").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if strings.Contains(line, " github.com/kvsession/kvsession/internal/sessiontest") {
			t.Errorf("imported outside tests: %s", line)
		}
	}
}
