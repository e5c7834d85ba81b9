package routers

import (
	"fmt"
	"net/http"

	"github.com/kvsession/kvsession/kvhttp"
)

// ServeMux serves the counter from the standard library's router: the
// middleware wraps the whole mux.
func ServeMux(mw *kvhttp.Middleware) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /counter", func(w http.ResponseWriter, r *http.Request) {
		n, err := countVisit(kvhttp.Session(r))
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		fmt.Fprint(w, n)
	})
	return mw.Handler(mux)
}
