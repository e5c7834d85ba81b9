package routers

import (
	"net/http"
	"strconv"

	"github.com/labstack/echo/v4"

	"github.com/kvsession/kvsession/kvhttp"
)

// Echo serves the counter from echo, through echo.WrapMiddleware. An error
// a handler returns is rendered by echo after the middleware is done; the
// session was committed when the handler returned, so that response
// carries its cookie too (GET /teapot).
func Echo(mw *kvhttp.Middleware) http.Handler {
	e := echo.New()
	e.HideBanner = true
	e.Use(echo.WrapMiddleware(mw.Handler))
	e.GET("/counter", func(c echo.Context) error {
		n, err := countVisit(kvhttp.Session(c.Request()))
		if err != nil {
			return echo.NewHTTPError(http.StatusInternalServerError, err.Error())
		}
		return c.String(http.StatusOK, strconv.Itoa(n))
	})
	e.GET("/teapot", func(c echo.Context) error {
		if _, err := countVisit(kvhttp.Session(c.Request())); err != nil {
			return err
		}
		return echo.NewHTTPError(http.StatusTeapot, "counted, but no coffee")
	})
	return e
}
