package routers

import (
	"fmt"
	"net/http"

	"github.com/go-chi/chi/v5"

	"github.com/kvsession/kvsession/kvhttp"
)

// Chi serves the counter from chi: Handler is chi middleware as it is.
// Routes that never need a session can go in a group without it.
func Chi(mw *kvhttp.Middleware) http.Handler {
	r := chi.NewRouter()
	r.Use(mw.Handler)
	r.Get("/counter", func(w http.ResponseWriter, r *http.Request) {
		n, err := countVisit(kvhttp.Session(r))
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		fmt.Fprint(w, n)
	})
	return r
}
