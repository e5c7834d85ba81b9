package kvsession

import (
	"context"
	"time"
)

// Events are hooks a backend calls as sessions live and die, for metrics,
// audit logs or traces (the kvprom module turns them into Prometheus
// metrics). Every field is optional: a nil hook is never called, and a
// backend whose Events are all nil costs what it cost before hooks
// existed, one nil check per place a hook could fire, and nothing on the
// store calls (StoreCall and its timing are wired in only when set).
//
// Each hook fires exactly once per event, on the goroutine that caused it,
// after the event took effect: after the store confirmed the write or the
// delete, or, for the cookie backend, once the response carries the
// cookie. A write that fails, or that a concurrent end of the session
// makes the request drop (see the README's guarantees), fires nothing but
// StoreError, if a store call failed. A response with a 5xx status, which
// saves nothing (Config.SaveOnServerError), fires nothing either.
//
// No hook is ever given a session id or a store key (which is derived from
// one): what a hook logs or labels cannot be replayed as a cookie. The
// user of UserLoggedOutEverywhere is the application's own user id, which
// it chose to bind (Session.SetUser); a metric should not label by it.
//
// ctx is the request's context (the one given to LoadFromRequest), or the
// one given to the by-id and per-user methods: a hook can find the
// request's trace or logger in it. Hooks run inside the request, some
// while its session lock is held: keep them quick, and do not call the
// backend from them, and do not panic. Hooks are called concurrently by
// concurrent requests.
//
// Which backend fires what: the server backend (New) fires every hook;
// the cookie backend (NewCookie) keeps sessions in the cookie, so it fires
// Created, Loaded, Saved and Destroyed, and, only with a RevocationStore,
// UserLoggedOutEverywhere (RevokeUser), StoreError and StoreCall. Its
// sessions have no id to renew and no lock.
type Events struct {
	// Created fires when a new session is first kept: its record written
	// to the store, or its cookie sealed into the response. A session
	// started after Destroy in the same request is a new one. A change of
	// id is not a creation (IDRenewed).
	Created func(ctx context.Context)

	// Loaded fires once for each load of a session: once per request that
	// used its session (a request that never touches it loads nothing),
	// and once per call of the server backend's Get, Set and Delete. The
	// outcome says what the load found. The backend's own reads (a
	// listing of a user's sessions, the re-read before an idle extension)
	// are no loads.
	Loaded func(ctx context.Context, outcome LoadOutcome)

	// Saved fires each time a session is written where it is kept: its
	// record saved to the store (a change, an idle extension, a rotation,
	// ServerBackend.Set) or its TTL refreshed (Config.ExtendOnAccess), or
	// its cookie sealed anew. A session created fires Created and Saved.
	Saved func(ctx context.Context)

	// IDRenewed fires when a stored session has moved to a new id: at
	// the save after Session.RenewID (cause RenewRequested), once the old
	// record is deleted (or, if the store failed to delete it, left to
	// expire, which StoreError reports), or at a rotation
	// (Config.RotationInterval, cause RenewRotation), once the old id is
	// retired (a forward for RotationGrace, or deleted). RenewID on a
	// session never stored retires nothing: Created fires instead.
	IDRenewed func(ctx context.Context, cause RenewCause)

	// Destroyed fires when a session that existed has ended by request:
	// its record deleted from the store (Session.Destroy, a session
	// emptied by the handler, ServerBackend.Delete, ServerBackend.Set with
	// no values, and each session DestroyUserSessions, DestroyUserSession
	// or DestroySession deletes), or, for
	// the cookie backend, its cookie expired or replaced by the response
	// after Destroy or Clear. Sessions that merely expire fire nothing:
	// the store drops them by itself, or PurgeExpired does.
	Destroyed func(ctx context.Context)

	// UserLoggedOutEverywhere fires when ServerBackend.DestroyUserSessions
	// has succeeded, with the number of sessions it deleted (each of which
	// fired Destroyed too), or when CookieBackend.RevokeUser has, with
	// sessions -1: the cookie backend cannot count them.
	UserLoggedOutEverywhere func(ctx context.Context, user string, sessions int)

	// StoreError fires for each store call that failed, whether the
	// failure failed the request (it then reaches the middleware's error
	// handler as a *StoreError with the same Op) or was only logged (a
	// user's set not updated, a rotated-out record left to expire). op
	// says what the backend was doing: "load", "save", "extend",
	// "delete", "index", "rotate", "lock", "revoke" or "revocation
	// check". A missing key is no failure, nor is ErrConflict (a save
	// refused because another request saved first) or a lock not taken
	// within LockWait (see LockWaited).
	StoreError func(ctx context.Context, op string, err error)

	// LockWaited fires each time a request has waited for its session's
	// lock (Config.Lock), with how long it waited, and whether it got the
	// lock: false when LockWait ran out, the context ended or the store
	// failed. An uncontended lock fires it too, with a wait near zero.
	LockWaited func(ctx context.Context, waited time.Duration, acquired bool)

	// StoreCall fires after each call the backend makes on its store,
	// with the method's name ("Get", "GetAppend", "Set", "Swap", "Delete",
	// "AddMember", "RemoveMember", "Members", "TryLock", "Unlock", "Scan",
	// "PurgeExpired"), how long it took (including Config.StoreTimeout's
	// bookkeeping; a Scan's, every call of its callback) and its error,
	// which for Get and GetAppend is store.ErrNotFound when the key is
	// missing. Setting it puts a timer around every store call; left nil,
	// the store is called directly.
	StoreCall func(ctx context.Context, method string, took time.Duration, err error)
}

// LoadOutcome is what a session's load found (Events.Loaded).
type LoadOutcome uint8

const (
	// LoadNone: the request carried no session cookie; it starts a fresh
	// session.
	LoadNone LoadOutcome = iota
	// LoadHit: the cookie led to a live session.
	LoadHit
	// LoadForwarded: the cookie carried an id rotated out within
	// RotationGrace, which led to the live session under its new id. A
	// hit, through the forward.
	LoadForwarded
	// LoadMiss: the cookie carried a well-formed id that the store has no
	// session for (never issued, destroyed, or dropped by the store's
	// TTL), or, with the cookie backend, a cookie whose user was revoked
	// (RevokeUser).
	LoadMiss
	// LoadExpired: the session was found but is past its idle or absolute
	// deadline, or, with the cookie backend, past the expiry sealed in its
	// cookie.
	LoadExpired
	// LoadCorrupt: what the request carried could not be read: a broken
	// or malformed cookie, a record that does not decode, a cookie that
	// does not open (tampered with, truncated, sealed with an unknown
	// key).
	LoadCorrupt
	// LoadError: the load failed (a store error, the session lock not
	// taken in time): the request's session is unusable and the
	// middleware answers with its error handler.
	LoadError
)

var loadOutcomeNames = [...]string{
	LoadNone: "none", LoadHit: "hit", LoadForwarded: "forwarded", LoadMiss: "miss",
	LoadExpired: "expired", LoadCorrupt: "corrupt", LoadError: "error",
}

// String returns the outcome's name in lower case ("hit", "miss", ...),
// fit for a metric label.
func (o LoadOutcome) String() string {
	if int(o) < len(loadOutcomeNames) {
		return loadOutcomeNames[o]
	}
	return "unknown"
}

// LoadOutcomes lists every LoadOutcome, in order: a metrics exporter can
// create each labelled series up front, so that a rate query sees a zero
// rather than no series.
func LoadOutcomes() []LoadOutcome {
	return []LoadOutcome{LoadNone, LoadHit, LoadForwarded, LoadMiss, LoadExpired, LoadCorrupt, LoadError}
}

// RenewCause is why a session moved to a new id (Events.IDRenewed).
type RenewCause uint8

const (
	// RenewRequested: the handler called Session.RenewID (at login, say).
	RenewRequested RenewCause = iota + 1
	// RenewRotation: the id was due for rotation (Config.RotationInterval
	// or the session's own Session.SetRotationInterval).
	RenewRotation
)

// String returns "requested" or "rotation", fit for a metric label.
func (c RenewCause) String() string {
	switch c {
	case RenewRequested:
		return "requested"
	case RenewRotation:
		return "rotation"
	}
	return "unknown"
}

// RenewCauses lists every RenewCause, as LoadOutcomes does.
func RenewCauses() []RenewCause { return []RenewCause{RenewRequested, RenewRotation} }

// The helpers below are what the backends call, each one nil check:
// small enough to be inlined, so a backend without hooks pays a load and
// a branch per site and never builds the hook's arguments.

func (e *Events) created(ctx context.Context) {
	if e.Created != nil {
		e.Created(ctx)
	}
}

func (e *Events) loaded(ctx context.Context, o LoadOutcome) {
	if e.Loaded != nil {
		e.Loaded(ctx, o)
	}
}

func (e *Events) saved(ctx context.Context) {
	if e.Saved != nil {
		e.Saved(ctx)
	}
}

func (e *Events) idRenewed(ctx context.Context, c RenewCause) {
	if e.IDRenewed != nil {
		e.IDRenewed(ctx, c)
	}
}

func (e *Events) destroyed(ctx context.Context) {
	if e.Destroyed != nil {
		e.Destroyed(ctx)
	}
}

func (e *Events) loggedOutEverywhere(ctx context.Context, user string, n int) {
	if e.UserLoggedOutEverywhere != nil {
		e.UserLoggedOutEverywhere(ctx, user, n)
	}
}

// storeFailed reports a failed store call that is only logged.
func (e *Events) storeFailed(ctx context.Context, op string, err error) {
	if e.StoreError != nil {
		e.StoreError(ctx, op, err)
	}
}

// storeError reports a failed store call and returns the *StoreError the
// request fails with.
func (e *Events) storeError(ctx context.Context, op string, err error) error {
	e.storeFailed(ctx, op, err)
	return &StoreError{Op: op, Err: err}
}
