package routers

import (
	"net/http"
	"strconv"

	"github.com/gin-gonic/gin"

	"github.com/kvsession/kvsession/kvhttp"
)

// Gin serves the counter from gin. Gin's middleware are gin.HandlerFuncs,
// so the middleware wraps the engine instead, as the http.Handler it is;
// handlers find the session from c.Request.
func Gin(mw *kvhttp.Middleware) http.Handler {
	engine := gin.New()
	engine.GET("/counter", func(c *gin.Context) {
		n, err := countVisit(kvhttp.Session(c.Request))
		if err != nil {
			c.String(http.StatusInternalServerError, err.Error())
			return
		}
		c.String(http.StatusOK, strconv.Itoa(n))
	})
	return mw.Handler(engine)
}
