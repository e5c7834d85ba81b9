// Package routers shows kvhttp, kvsession's net/http middleware, under
// the standard http.ServeMux, chi, echo and gin: one file each, every one
// serving the same visit counter at GET /counter.
//
// It is a module of its own so that the routers stay out of the library's
// go.mod. Run its tests with:
//
//	cd examples/routers && go test ./...
package routers

import (
	"fmt"

	"github.com/kvsession/kvsession"
)

// countVisit adds one to the session's visit counter and returns the new
// count. Each router calls it before writing its response: the first write
// sends the header, and the session's cookie must be in it.
func countVisit(sess *kvsession.Session) (int, error) {
	n, _ := sess.GetInt("visits")
	if err := sess.SetInt("visits", n+1); err != nil {
		return 0, fmt.Errorf("counting the visit: %w", err)
	}
	return n + 1, nil
}
