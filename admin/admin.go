// Package admin serves the operator's view of a kvsession server backend
// over HTTP: count, list, show and end sessions, log a user out everywhere
// and purge expired sessions, all without any session's id (sessions are
// named by their handle, kvsession.Session.Handle).
//
// A service mounts the handler behind its own authentication, since
// whoever reaches it can end any session and, when asked, read any
// session's values:
//
//	mux.Handle("/admin/sessions/", requireOperator(http.StripPrefix("/admin/sessions", admin.NewHandler(backend))))
//
// The kvsession-admin command (cmd/kvsession-admin) is its client, and
// also serves it in process when it opens a store itself. A Badger
// directory can be opened by one process at a time, so while the service
// runs, point the command at the service's handler (-url) rather than at
// the directory.
//
// Routes (GET unless said otherwise; query flags values=1, expired=1 and
// user=NAME shape the walks, as kvsession.ScanOptions does):
//
//	/count                          count sessions
//	/sessions                       list sessions
//	/sessions/{handle}              show one session
//	DELETE /sessions/{handle}       end one session
//	/users/{user}/sessions          list a user's sessions (from the user's set: no walk)
//	DELETE /users/{user}/sessions   log the user out everywhere
//	POST /purge                     delete expired sessions the store still keeps
//
// Every answer is a stream of JSON lines (application/x-ndjson), one
// event per line, so that a walk of a large store shows progress as it
// goes and a listing needs no buffer:
//
//	{"progress": 12000}                 entries visited so far
//	{"session": {...}}                  a kvsession.SessionInfo
//	{"result": {...}}                   the outcome, last line of a success
//	{"error": "..."}                    the outcome, last line of a failure
//
// A malformed request (a bad handle, a wrong method) is answered with a
// 4xx status and one error line instead.
package admin

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/kvsession/kvsession"
	"github.com/kvsession/kvsession/store"
)

// Event is one line of an answer. Exactly one field is set.
type Event struct {
	Progress int                    `json:"progress,omitempty"`
	Session  *kvsession.SessionInfo `json:"session,omitempty"`
	Result   *Result                `json:"result,omitempty"`
	Error    string                 `json:"error,omitempty"`
}

// Result is the outcome of a request.
type Result struct {
	// Sessions is how many sessions were counted, listed, ended or
	// purged.
	Sessions int `json:"sessions"`
	// StoreEntries is, for a purge, how many expired entries the store
	// removed itself (-1: it cannot tell).
	StoreEntries int `json:"store_entries,omitempty"`
	// Visited is how many store entries the walk visited.
	Visited int `json:"visited,omitempty"`
}

// Handler is the admin HTTP handler of one server backend.
type Handler struct {
	b   *kvsession.ServerBackend
	mux *http.ServeMux
}

// NewHandler returns the admin handler of b.
func NewHandler(b *kvsession.ServerBackend) *Handler {
	h := &Handler{b: b, mux: http.NewServeMux()}
	h.mux.HandleFunc("GET /count", h.count)
	h.mux.HandleFunc("GET /sessions", h.list)
	h.mux.HandleFunc("GET /sessions/{handle}", h.show)
	h.mux.HandleFunc("DELETE /sessions/{handle}", h.destroy)
	h.mux.HandleFunc("GET /users/{user}/sessions", h.userSessions)
	h.mux.HandleFunc("DELETE /users/{user}/sessions", h.destroyUser)
	h.mux.HandleFunc("POST /purge", h.purge)
	return h
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) { h.mux.ServeHTTP(w, r) }

// stream writes an answer's events, one JSON line each, flushed as they
// come, so a client sees a long walk move.
type stream struct {
	mu      sync.Mutex
	w       http.ResponseWriter
	enc     *json.Encoder
	flush   func() error
	visited int
	last    time.Time // of the last progress line
	sent    bool      // a line is written: the status with it
}

func newStream(w http.ResponseWriter) *stream {
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.Header().Set("Cache-Control", "no-store")
	rc := http.NewResponseController(w)
	return &stream{w: w, enc: json.NewEncoder(w), flush: rc.Flush}
}

func (s *stream) send(e Event) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sent = true
	if err := s.enc.Encode(e); err != nil {
		// A value the JSON encoder refuses (a map keyed by something
		// other than strings): say so on that line rather than end the
		// stream.
		_ = s.enc.Encode(Event{Error: "cannot encode: " + err.Error()})
	}
	_ = s.flush()
}

// progress is the walk's ScanOptions.Progress: it keeps the count for the
// result and sends it at most twice a second.
func (s *stream) progress(visited int) {
	s.visited = visited
	if visited < 1000 {
		return // a short walk: its result is all there is to see
	}
	if now := time.Now(); now.Sub(s.last) >= 500*time.Millisecond {
		s.last = now
		s.send(Event{Progress: visited})
	}
}

// finish ends the answer with its result, or its error: with an error
// status as well when nothing was written yet.
func (s *stream) finish(res Result, err error) {
	if err != nil {
		if !s.started() {
			fail(s.w, statusOf(err), err)
			return
		}
		s.send(Event{Error: err.Error()})
		return
	}
	res.Visited = s.visited
	s.send(Event{Result: &res})
}

// scanOptions reads the walk's options from the query, with s's progress.
func scanOptions(r *http.Request, s *stream) kvsession.ScanOptions {
	q := r.URL.Query()
	flag := func(name string) bool { v, _ := strconv.ParseBool(q.Get(name)); return v }
	return kvsession.ScanOptions{Values: flag("values"), Expired: flag("expired"), User: q.Get("user"), Progress: s.progress}
}

// fail answers a request that cannot be served with status and one error
// line.
func fail(w http.ResponseWriter, status int, err error) {
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(Event{Error: err.Error()})
}

// statusOf maps what a backend call returned before streaming began.
func statusOf(err error) int {
	switch {
	case errors.Is(err, kvsession.ErrInvalidHandle):
		return http.StatusBadRequest
	case errors.Is(err, store.ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, kvsession.ErrNotScannable):
		return http.StatusNotImplemented
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

func (h *Handler) count(w http.ResponseWriter, r *http.Request) {
	s := newStream(w)
	n, err := h.b.CountSessions(r.Context(), scanOptions(r, s))
	s.finish(Result{Sessions: n}, err)
}

func (h *Handler) list(w http.ResponseWriter, r *http.Request) {
	s := newStream(w)
	n := 0
	for info, err := range h.b.Sessions(r.Context(), scanOptions(r, s)) {
		if err != nil {
			s.finish(Result{}, err)
			return
		}
		n++
		s.send(Event{Session: &info})
	}
	s.finish(Result{Sessions: n}, nil)
}

func (h *Handler) show(w http.ResponseWriter, r *http.Request) {
	s := newStream(w)
	info, err := h.b.FindSession(r.Context(), r.PathValue("handle"), scanOptions(r, s))
	if err != nil {
		s.finish(Result{}, err)
		return
	}
	s.send(Event{Session: &info})
	s.finish(Result{Sessions: 1}, nil)
}

func (h *Handler) destroy(w http.ResponseWriter, r *http.Request) {
	s := newStream(w)
	ended, err := h.b.DestroySession(r.Context(), r.PathValue("handle"), scanOptions(r, s))
	s.finish(Result{Sessions: b2i(ended)}, err)
}

func (h *Handler) userSessions(w http.ResponseWriter, r *http.Request) {
	s := newStream(w)
	list, err := h.b.UserSessions(r.Context(), r.PathValue("user"))
	if err != nil {
		s.finish(Result{}, err)
		return
	}
	for i := range list {
		s.send(Event{Session: &list[i]})
	}
	s.finish(Result{Sessions: len(list)}, nil)
}

func (h *Handler) destroyUser(w http.ResponseWriter, r *http.Request) {
	s := newStream(w)
	n, err := h.b.DestroyUserSessions(r.Context(), r.PathValue("user"))
	s.finish(Result{Sessions: n}, err)
}

func (h *Handler) purge(w http.ResponseWriter, r *http.Request) {
	s := newStream(w)
	res, err := h.b.PurgeExpired(r.Context(), scanOptions(r, s))
	s.finish(Result{Sessions: res.Sessions, StoreEntries: res.StoreEntries}, err)
}

// started reports whether a line has been written: after that the status
// is sent, and a failure can only be the last line.
func (s *stream) started() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sent
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}
