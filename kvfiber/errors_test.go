package kvfiber_test

import (
	"errors"
	"maps"
	"strings"
	"testing"

	"github.com/gofiber/fiber/v3"

	"github.com/kvsession/kvsession"
	"github.com/kvsession/kvsession/kvfiber"
	"github.com/kvsession/kvsession/store/storetest/faultstore"
)

var errDown = errors.New("store down")

// TestStoreFailuresReachTheErrorHandler: a session that cannot be loaded
// or saved sends the request to Options.ErrorHandler; nothing of the
// handler's response (its header, its body, the session cookie) is sent,
// and what was stored is untouched.
func TestStoreFailuresReachTheErrorHandler(t *testing.T) {
	resetAndAnswer := func(c fiber.Ctx, err error) error {
		c.Response().Reset()
		return c.Status(503).SendString("try later: " + err.Error())
	}
	toTheApp := func(c fiber.Ctx, err error) error {
		c.Response().Reset()
		return fiber.NewError(503, "sessions are down")
	}
	for _, tc := range []struct {
		name     string
		fail     faultstore.Method
		method   string
		path     string
		onError  kvfiber.ErrorHandler
		status   int
		body     string
		appError string // what reaches the app's ErrorHandler, "" for nothing
		logged   string // in Config.Logger's output
	}{
		{"load fails", faultstore.Reads, "GET", "/counter", nil, 500, "session unavailable\n", "", "store down"},
		{"save fails", faultstore.Writes, "GET", "/counter", nil, 500, "session unavailable\n", "", "store down"},
		{"save fails, custom answer", faultstore.Writes, "GET", "/counter", resetAndAnswer, 503, "store down", "", ""},
		{"save fails, handed to the app", faultstore.Writes, "GET", "/counter", toTheApp, 503, "sessions are down", "sessions are down", ""},
		{"save fails after the handler's own error", faultstore.Writes, "POST", "/deny", nil, 500, "session unavailable\n", "", "handler error superseded"},
		{"save fails on a streamed response", faultstore.Writes, "GET", "/stream", nil, 500, "session unavailable\n", "", "store down"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := start(t, kvsession.Config{}, kvfiber.Options{ErrorHandler: tc.onError})
			h.client.Expect("GET", "/counter", "", 200, "1")
			h.client.Expect("POST", "/deny", "", 401, "wrong password, attempt 1")
			stored, err := h.store.Snapshot(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			appErrs := len(h.appErrors())

			rule := h.store.Fail(tc.fail, errDown)
			r := h.client.Do(tc.method, tc.path, "")
			if r.Status != tc.status || !strings.Contains(r.Body, tc.body) {
				t.Errorf("%d %q, want %d %q", r.Status, r.Body, tc.status, tc.body)
			}
			if len(r.SetCookies()) != 0 || r.Header.Get("X-Handler") != "" {
				t.Errorf("Set-Cookie %q, X-Handler %q: the handler's response leaked", r.SetCookies(), r.Header.Get("X-Handler"))
			}
			if rule.Hits() == 0 {
				t.Fatal("the store fault was never met")
			}
			if errs := h.appErrors()[appErrs:]; (tc.appError == "") != (len(errs) == 0) || (len(errs) > 0 && !strings.Contains(errs[0].Error(), tc.appError)) {
				t.Errorf("the app's ErrorHandler got %v, want %q", errs, tc.appError)
			}
			if !strings.Contains(h.logs.String(), tc.logged) {
				t.Errorf("log %q lacks %q", h.logs.String(), tc.logged)
			}
			rule.Remove()

			after, err := h.store.Snapshot(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			if !maps.Equal(stored, after) {
				t.Errorf("the failed request changed the store:\nbefore %q\nafter  %q", stored, after)
			}
			h.client.Expect("GET", "/read", "", 200, "1")
		})
	}
}
