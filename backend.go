package kvsession

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"unsafe"

	"github.com/kvsession/kvsession/store"
	"github.com/kvsession/kvsession/store/memstore"
)

// ErrSessionTooLarge is returned when saving a session whose record would
// exceed Config.MaxRecordBytes. Nothing is written: what the store held
// before stays.
var ErrSessionTooLarge = errors.New("kvsession: session exceeds MaxRecordBytes")

// ErrInvalidID is returned by the by-id methods for a string that is not a
// well-formed session id.
var ErrInvalidID = errors.New("kvsession: malformed session id")

// StoreError wraps a failure of the session store. The middleware hands it
// to its error handler; errors.Is sees through it to the store's error.
type StoreError struct {
	// Op says what the backend was doing: "load", "save", "extend",
	// "delete", "index", "rotate", "lock", or with the cookie backend
	// "revoke" or "revocation check".
	Op  string
	Err error
}

func (e *StoreError) Error() string { return "kvsession: session " + e.Op + ": " + e.Err.Error() }
func (e *StoreError) Unwrap() error { return e.Err }

func isNotFound(err error) bool {
	return err == store.ErrNotFound || errors.Is(err, store.ErrNotFound)
}

// This file follows one request: New makes the backend; LoadFromRequest
// and load read the session (record.go decodes it); StoreInResponse writes
// what the request did (save, extend, rotate; write.go makes each write
// conditional on what was loaded); Release ends the request. The by-id API
// for code outside a request comes last.

// ServerBackend keeps sessions in a store and carries them in a cookie
// holding only the session id. It follows the semantics of Litestar's
// server-side session backend: see the README for the full set of rules.
type ServerBackend struct {
	core
	registered store.Store // what Store returns; calls go through calls
	// calls is the store, resolved once (store.Resolve) and bounded by
	// Config.StoreTimeout: every store call the backend makes goes
	// through it.
	calls store.Calls
	// plainKeys stores sessions under their ids rather than a hash of
	// them: Config.PlainStoreKeys, or an in-process store (see storeKey).
	plainKeys bool
	// borrowKeys builds a loaded session's store key in the session's own
	// buffer: the store keeps no key (store.Traits.BorrowsKeys).
	borrowKeys bool
	idLen      int          // length of an encoded id
	locks      *sessionLock // nil unless Config.Lock
	// owned is the memory store New made for a nil registry, which Close
	// closes; nil when the store came from a registry, whose it stays.
	owned store.Store
}

var _ Backend = (*ServerBackend)(nil)

// serverEngine is the ServerBackend side of a Session.
type serverEngine struct{ b *ServerBackend }

func (e serverEngine) load(s *Session) (LoadOutcome, error) { return e.b.load(s) }
func (e serverEngine) discard(s *Session) error             { return e.b.deleteStored(s) }
func (e serverEngine) renewID(s *Session) error             { return e.b.renewID(s) }
func (e serverEngine) id(s *Session) string                 { return strings.Clone(s.id) }

func (e serverEngine) renews(s *Session, now int64) bool { return e.b.renews(s, now) }

// New validates cfg and returns a Backend on the store the registry holds
// under cfg.Store. Every misconfiguration is a *ConfigError naming the field.
//
// With a nil registry the backend makes a memory store of its own
// (store/memstore): sessions live in this process and are lost when it
// stops, which is what a first program or a test wants. Close the backend
// to release that store. A Store name other than the default with a nil
// registry is an error rather than a memory store: it names a store the
// caller expected to find in a registry.
func New(cfg Config, stores *store.Registry) (*ServerBackend, error) {
	c, err := cfg.compile()
	if err != nil {
		return nil, err
	}
	var st, owned store.Store
	if stores == nil {
		if c.Store != DefaultStore {
			return nil, &ConfigError{Field: "Store", Reason: fmt.Sprintf("names store %q, but New was given no registry; "+
				"pass the registry that holds it, or leave Store empty for a memory store of the backend's own", c.Store)}
		}
		st = memstore.New(memstore.Options{})
		owned = st
	} else if st, err = stores.Get(c.Store); err != nil {
		return nil, &ConfigError{Field: "Store", Reason: err.Error()}
	}
	calls := resolveStore(c, st) // Config.StoreTimeout (timeout.go)
	b := &ServerBackend{
		registered: st,
		calls:      calls,
		plainKeys:  c.PlainStoreKeys || (calls.Traits.InProcess && len(c.IDHashKey) == 0),
		borrowKeys: calls.Traits.BorrowsKeys,
		idLen:      base64.RawURLEncoding.EncodedLen(c.SessionIDBytes),
		owned:      owned,
	}
	b.init(c, serverEngine{b})
	if c.Lock {
		b.locks = newSessionLock(&b.cfg, calls) // b.cfg: its Events are the backend's
	}
	return b, nil
}

// Close releases the memory store New made when it was given no registry:
// its sessions are gone, and the backend's later store calls fail with
// store.ErrClosed. It closes nothing else: a store taken from a registry
// belongs to the registry (Registry.Close closes it), since other backends
// may share it. Close the backend after the server using it has stopped.
// Closing again does nothing.
func (b *ServerBackend) Close() error {
	if b.owned == nil {
		return nil
	}
	return b.owned.Close() // memstore's Close is idempotent
}

// Store returns the store sessions are kept in, as it was registered (or
// the memory store New made for a nil registry).
func (b *ServerBackend) Store() store.Store { return b.registered }

// MaxCookieHeaderBytes is the length of "<Key>=<id>; ": the id cookie
// never needs splitting.
func (b *ServerBackend) MaxCookieHeaderBytes() int { return len(b.cfg.CookieName) + 1 + b.idLen + 2 }

// LoadFromRequest starts the session of one request from its Cookie header
// value (nil when it had none). Nothing is read from the store until the
// session is first used. Pass the session to StoreInResponse when the
// handler is done, then to Release.
//
// ctx bounds the store calls the session makes; it must stay valid until
// StoreInResponse returns.
func (b *ServerBackend) LoadFromRequest(ctx context.Context, cookieHeader []byte) *Session {
	return b.open(ctx, cookieHeader)
}

// load fetches the session's record from the store, following the
// forward an id rotated out within its grace window left.
func (b *ServerBackend) load(s *Session) (LoadOutcome, error) {
	if !b.validID(s.cookie) {
		if len(s.cookie) == 0 {
			return LoadNone, nil
		}
		return LoadCorrupt, nil
	}
	id := s.cookie
	for hops := 0; ; hops++ {
		key := b.loadKey(s, id)
		rec, found, err := b.fetch(s, key, true)
		if err != nil {
			return LoadError, err
		}
		if !found {
			return LoadMiss, nil
		}
		if isForward(rec) {
			// At most one hop: a session rotates once per RotationInterval,
			// far longer than the grace window. A forward to a forward is
			// no session this id can reach.
			if hops > 0 {
				return LoadMiss, nil
			}
			next, err := readForward(rec, id, b.idLen)
			if err == nil && !b.validID(next) {
				err = errBadForward
			}
			if err != nil {
				// Damaged like any unreadable record, and logged like one.
				b.cfg.Logger.Warn("kvsession: unreadable session record; starting a fresh session", "error", err, "bytes", len(rec))
				return LoadCorrupt, nil
			}
			id = append(s.idBuf[:0], next...)
			s.idBuf = id
			s.forwarded = true
			continue
		}
		if !s.decodeOrForget(rec) {
			return LoadCorrupt, nil
		}
		if b.expired(s) {
			s.forget()
			return LoadExpired, nil
		}
		// A view of the session's own copy: ID() clones it for the caller.
		s.id, s.key, s.exists = bytesToString(id), key, true
		s.loadedUser, s.loadedBound, s.stored = s.user, s.bound, rec
		deriveHandle(s) // a record from before handles
		if hops > 0 {
			return LoadForwarded, nil
		}
		return LoadHit, nil
	}
}

// fetch reads the record under key, taking the session's lock first if
// lock is set (so that the read sees the last holder's save). A missing
// record is no error: found is false.
func (b *ServerBackend) fetch(s *Session, key string, lock bool) (rec []byte, found bool, err error) {
	if lock {
		if err := b.lockFor(s, key); err != nil {
			return nil, false, err
		}
	}
	rec, err = b.get(s, key)
	if err != nil {
		if isNotFound(err) {
			return nil, false, nil
		}
		return nil, false, b.cfg.Events.storeError(s.ctx, "load", err)
	}
	return rec, true, nil
}

func (b *ServerBackend) get(s *Session, key string) ([]byte, error) {
	if b.calls.GetAppend != nil {
		rec, err := b.calls.GetAppend(s.ctx, key, s.loadBuf[:0])
		s.loadBuf = rec
		return rec, err
	}
	return b.calls.Get(s.ctx, key)
}

// idNotAlphabet is 1 for every byte outside unpadded URL-safe base64.
var idNotAlphabet = func() (t [256]byte) {
	for i := range t {
		t[i] = 1
	}
	for _, c := range []byte("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") {
		t[c] = 0
	}
	return t
}()

// validID rejects, before any store lookup, a value that cannot be an id
// this backend generated: wrong length or a byte outside the alphabet. It
// ORs table lookups instead of branching on each byte: a cookie is checked
// on every request, and hostile ones gain nothing from an early exit.
func (b *ServerBackend) validID(id []byte) bool {
	if len(id) != b.idLen {
		return false
	}
	var bad byte
	for _, c := range id {
		bad |= idNotAlphabet[c]
	}
	return bad == 0
}

// loadKey is storeKey for the load of session s: with a store that keeps
// no keys it is built in the session's own buffer, which is left alone
// until the session is released or loads again.
func (b *ServerBackend) loadKey(s *Session, id []byte) string {
	if !b.borrowKeys {
		return b.storeKey(id)
	}
	s.keyBuf = b.appendStoreKey(s.keyBuf[:0], id)
	return unsafe.String(unsafe.SliceData(s.keyBuf), len(s.keyBuf))
}

// storeKey returns the key a session id is stored under: Prefix and a hash
// of the id (keyed with Config.IDHashKey if set), so that a leaked store
// dump or backup holds no id a cookie could carry. An in-process store
// (store.Traits.InProcess) has no dump or backup to leak, and whoever can
// read it can read the cookies of the requests in flight too: its keys are
// the ids themselves, sparing every request the hash (about a third of an
// in-memory read), unless IDHashKey asks for one.
func (b *ServerBackend) storeKey(id []byte) string {
	buf := b.appendStoreKey(make([]byte, 0, b.storeKeyLen(len(id))), id)
	return unsafe.String(unsafe.SliceData(buf), len(buf))
}

func (b *ServerBackend) storeKeyLen(idLen int) int {
	if b.plainKeys {
		return len(b.cfg.Prefix) + idLen
	}
	return len(b.cfg.Prefix) + hashedKeyLen
}

func (b *ServerBackend) appendStoreKey(dst, id []byte) []byte {
	dst = append(dst, b.cfg.Prefix...)
	if b.plainKeys {
		return append(dst, id...)
	}
	var sum [sha256.Size]byte
	if len(b.cfg.IDHashKey) == 0 {
		sum = sha256.Sum256(id)
	} else {
		var small [128]byte
		in := append(append(small[:0], b.cfg.IDHashKey...), id...)
		sum = sha256.Sum256(in)
	}
	return base64.RawURLEncoding.AppendEncode(dst, sum[:])
}

var hashedKeyLen = base64.RawURLEncoding.EncodedLen(sha256.Size)

// StoreInResponse writes what the request did to the session back to the
// store and the response:
//
//   - a session never used during the request: nothing at all;
//   - a session empty after the handler: its record deleted, and its cookie
//     expired if the request carried one (no Set-Cookie otherwise);
//   - a modified session: saved with MaxAge as TTL under its id (a new one if
//     it had none) and the cookie set;
//   - an unmodified one: nothing, unless ExtendOnAccess is on, in which case
//     its TTL and cookie are refreshed without re-encoding it (and its
//     cookie expired if another request destroyed it meanwhile).
//
// Every response of a request that used the session gets Vary: Cookie
// (and Vary: <IDHeader> when Config.IDHeader is set), and every
// Set-Cookie Cache-Control: no-cache="Set-Cookie" besides, so shared
// caches never serve one client's page or cookie to another. A request
// loaded by LoadFromHeader is answered in that header instead of the
// cookie (see Config.IDHeader). On error nothing is added to the
// response, and what the store held before is intact.
func (b *ServerBackend) StoreInResponse(s *Session, sink ResponseSink) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	defer b.unlock(s)
	// Two defers over storeInResponse's many returns would not be
	// open-coded: the compiler would fall back to deferreturn, tens of
	// nanoseconds on every request.
	err := b.storeInResponse(s, sink)
	if err == errEnded {
		// Another request ended the session after this one loaded it:
		// what this request did to it is dropped, as if it had come
		// first (write.go).
		s.exists = false
		b.cfg.Logger.Debug("kvsession: session ended by another request during this one; its changes are dropped")
		err = nil
	}
	if err == nil && s.loaded {
		b.vary(sink)
	}
	return err
}

// StoreInResponseStatus is StoreInResponse for a response of the given
// status; a 5xx drops the request's changes (see Backend).
func (b *ServerBackend) StoreInResponseStatus(s *Session, sink ResponseSink, status int) error {
	if !b.dropsChanges(status) {
		return b.StoreInResponse(s, sink)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	// Freed now rather than at Release: kvhttp commits at the first
	// write, and a streaming handler must not hold the lock to its end.
	b.unlock(s)
	return b.dropChanges(s, sink)
}

func (b *ServerBackend) storeInResponse(s *Session, sink ResponseSink) error {
	if !s.loaded {
		return nil
	}
	if s.loadErr != nil {
		return s.loadErr
	}
	if s.failed != nil {
		return s.failed // a failed Destroy: nothing is saved
	}
	if s.empty() {
		if err := b.deleteStored(s); err != nil {
			return err
		}
		b.expireCookies(s, sink)
		return nil
	}
	if !s.modified && !s.forwarded && !b.cfg.ExtendOnAccess && b.idleOf(s) <= 0 && b.rotationOf(s) <= 0 {
		return nil // a read: nothing to write, no need to read the clock
	}
	now := s.nowNano()
	if !s.modified && (b.extensionDue(s, now) || b.rotationDue(s, now)) {
		// Bookkeeping the handler did not ask for: done on the record as
		// the store holds it now (extendOrRotate says why).
		return b.extendOrRotate(s, sink, now)
	}
	var send bool
	switch {
	case s.modified && b.rotationDue(s, now) && (b.locks == nil || s.lock.key != ""):
		// Rotated with its changes: a session changed on every request
		// must still get a new id every RotationInterval. Not by a request
		// that skipped the session lock (SetReadOnly): its write must stay
		// a save, which a lock holder's save then refuses with ErrConflict,
		// not a forward that would end the holder's session silently.
		send = b.planCookie(s, now, true)
		if err := b.rotate(s, now); err != nil {
			return err
		}
	case s.modified:
		send = b.planCookie(s, now, false)
		if err := b.save(s, now); err != nil {
			return err
		}
	case b.cfg.ExtendOnAccess && s.exists:
		// The record is written back as loaded: what planCookie notes
		// is not kept, so the cookie is resent once a refresh is due,
		// every time, until a save keeps it.
		send = b.planCookie(s, now, false)
		live, err := b.extend(s, now)
		if err != nil {
			return err
		}
		if !live {
			// Ended by another request since the load: that request wrote
			// the cookie its client needs (a rotation's or a login's new
			// id, say). Expiring it here could throw that one away.
			return nil
		}
	case s.forwarded:
		// The request came with an id rotated out during its grace window:
		// give the client the current one.
		send = true
	default:
		return nil
	}
	if !send {
		return nil // the cookie the client holds still says what it should (cookierefresh.go)
	}
	// The id as bytes, without a copy: setCookie only reads it.
	id := unsafe.Slice(unsafe.StringData(s.id), len(s.id))
	return b.setCookie(s, sink, id, b.lifetimeOf(s), b.ttl(s, now))
}

// save writes the session under its id (a new one if it has none), with
// its idle clock restarted, then retires the record of an id RenewID
// replaced, and fires the events of what it did once all of it stood.
func (b *ServerBackend) save(s *Session, now int64) error {
	// Neither in the store nor replacing a record that is (RenewID): a
	// session the save creates. One loaded keeps the creation time it
	// has, and Destroy forgets it.
	created := !s.exists && s.oldKey == "" && s.created == 0
	renewed := s.oldKey != ""
	if err := b.saveRecord(s, now); err != nil {
		return err
	}
	if created {
		b.cfg.Events.created(s.ctx)
	}
	b.cfg.Events.saved(s.ctx)
	if renewed {
		b.cfg.Events.idRenewed(s.ctx, RenewRequested)
	}
	return nil
}

// saveRecord is save without its events, for rotate, whose save stands
// only once the old id is retired.
func (b *ServerBackend) saveRecord(s *Session, now int64) error {
	if s.id == "" {
		if err := b.assignID(s); err != nil {
			return err
		}
	}
	if s.created == 0 {
		s.created = now
	}
	deriveHandle(s)
	prevExtended, prevIndexed := s.extended, s.indexed
	s.extended = now
	ttl := b.ttl(s, now)
	restore := func(err error) error {
		s.extended, s.indexed = prevExtended, prevIndexed
		return err
	}
	// The session joins its user's set before its record is written, so
	// that a listing never misses a record that exists (users.go).
	if b.indexPlan(s, now, ttl) {
		if err := b.index(s); err != nil {
			return restore(err)
		}
	}
	bp := getRecordBuf()
	rec := s.encode((*bp)[:0])
	var err error
	if len(rec) > b.cfg.MaxRecordBytes {
		err = ErrSessionTooLarge
	} else {
		err = b.put(s, rec, ttl)
	}
	*bp = rec
	putRecordBuf(bp)
	if err != nil {
		return restore(err)
	}
	// A session re-bound to another user stays a member of the previous
	// user's set until the member expires: listings skip it (its record
	// decides), and removing it could race with a request that binds it
	// back (without the lock, the last writer wins) and hide it from that
	// user's log out everywhere.
	prevUser, prevBound := s.loadedUser, s.loadedBound
	s.loadedUser, s.loadedBound = s.user, s.bound
	s.exists = true
	if s.oldKey != "" {
		return b.retireRenewed(s, prevUser, prevBound)
	}
	return nil
}

var recordPool = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

func getRecordBuf() *[]byte { return recordPool.Get().(*[]byte) }

// putRecordBuf returns a buffer to the pool unless a huge session grew it.
func putRecordBuf(p *[]byte) {
	if cap(*p) <= 64<<10 {
		recordPool.Put(p)
	}
}

// assignID gives the session a fresh id and its store key, and a session
// that has no handle yet (a new one) its handle, drawn with the id.
func (b *ServerBackend) assignID(s *Session) error {
	id, handle, err := b.newID(s)
	if err != nil {
		return err
	}
	if s.handle == [handleBytes]byte{} {
		s.handle = handle
	}
	s.id, s.key = id, b.storeKey(unsafe.Slice(unsafe.StringData(id), len(id)))
	s.indexed = 0 // the index knows the old key, not this one
	return nil
}

// newID draws a fresh id from crypto/rand, and in the same read the bytes
// of a handle (handle.go) for a new session: a second read, or a hash of
// the key, would cost a new session more than the rest of its save. A
// failing random source is an error, never a weaker id.
func (b *ServerBackend) newID(s *Session) (id string, handle [handleBytes]byte, err error) {
	n := b.cfg.SessionIDBytes
	raw := s.idRaw[:n+handleBytes]
	if _, err := io.ReadFull(b.rand, raw); err != nil {
		return "", handle, fmt.Errorf("kvsession: generating a session id: %w", err)
	}
	buf := make([]byte, b.idLen)
	base64.RawURLEncoding.Encode(buf, raw[:n])
	copy(handle[:], raw[n:])
	clear(raw)
	return unsafe.String(&buf[0], len(buf)), handle, nil
}

// GenerateID returns a new random session id.
func (b *ServerBackend) GenerateID() (string, error) {
	s := b.pool.Get().(*Session)
	defer b.pool.Put(s)
	id, _, err := b.newID(s)
	return id, err
}

// extend resets the TTL of an unmodified session, writing back the record
// it loaded unchanged, and only if the store still holds that record. It
// reports false if the session ended since this request loaded it
// (destroyed, rotated or renewed by another request): a renewal must not
// bring it back. A record another request saved meanwhile is left as it
// is: that save set its TTL.
func (b *ServerBackend) extend(s *Session, now int64) (bool, error) {
	ttl := b.ttl(s, now)
	// The record exists and stays bound to its user: extend its set
	// membership before the TTL grows past what it covers. (s.indexed is
	// not written back: the record is rewritten as loaded, so a session
	// renewed beyond twice its TTL extends its membership on each renewal.)
	if b.indexPlan(s, now, ttl) {
		if err := b.index(s); err != nil {
			return false, err
		}
	}
	ok, err := b.calls.Swap(s.ctx, s.key, s.stored, s.stored, ttl)
	if err != nil {
		return false, b.cfg.Events.storeError(s.ctx, "extend", err)
	}
	if ok {
		b.cfg.Events.saved(s.ctx)
		return true, nil
	}
	cur, err := b.current(s, s.key)
	if err != nil {
		return false, err
	}
	if cur == nil {
		s.exists = false
		return false, nil
	}
	return true, nil
}

// extendOrRotate extends or rotates a session the request did not change. What
// the request loaded may be stale: another request may have saved the
// session since (a read-only one reads without the lock), or destroyed it
// (a logout everywhere). So the record is read again, under the lock
// unless this request holds it already, and only its bookkeeping changes;
// a session ended in the meantime stays ended, and the response writes no
// cookie (the request that ended it wrote the one its client needs).
func (b *ServerBackend) extendOrRotate(s *Session, sink ResponseSink, now int64) error {
	found := false
	err := b.withSession(s.ctx, s.key, b.locks != nil && s.lock.key == "", func(fresh *Session) error {
		found = true
		fresh.id, fresh.now, fresh.carried = s.id, now, s.carried
		if s.viaHeader {
			// What the client sent, which decides whether the response
			// tells it the id (writeIDHeader): a copy, as fresh's buffer
			// goes back to the pool with fresh.
			fresh.viaHeader, fresh.headerValue = true, s.headerValue
			fresh.cookie = append(fresh.cookie[:0], s.cookie...)
		}
		if s.lock.key != "" {
			// This request holds the lock, not fresh: fresh's writes must
			// be fenced as the holder's are (write.go), so it shares the
			// hold for as long as it works, and gives it back before it is
			// released.
			fresh.lock = s.lock
			defer func() { fresh.lock = held{} }()
		}
		var err error
		fresh.forwarded, fresh.cookieErr = s.forwarded, s.cookieErr
		rotating := b.rotationDue(fresh, now)
		send := b.planCookie(fresh, now, rotating)
		if rotating {
			err = b.rotate(fresh, now)
		} else {
			err = b.save(fresh, now)
		}
		if err != nil || !send {
			fresh.id = ""
			return err
		}
		id := unsafe.Slice(unsafe.StringData(fresh.id), len(fresh.id))
		err = b.setCookie(fresh, sink, id, b.lifetimeOf(fresh), b.ttl(fresh, now))
		fresh.id = "" // s's cookie bytes, not fresh's: gone with this request
		return err
	})
	if err == nil && !found {
		s.exists = false
	}
	return err
}

// rotate moves a session due for renewal to a fresh id. The old key then
// holds, for RotationGrace, a forward to the new id, so that requests already
// in flight with the old cookie still reach the session (and are given the
// new cookie). The forward is sealed with a pad derived from the old id,
// which the store does not hold: a store dump yields no usable id from it.
func (b *ServerBackend) rotate(s *Session, now int64) error {
	oldID, oldKey, oldRec := s.id, s.key, s.stored
	if err := b.assignID(s); err != nil {
		return err
	}
	s.rotated = now
	s.exists = false
	if err := b.saveRecord(s, now); err != nil {
		s.id, s.key, s.exists = oldID, oldKey, true
		return err
	}
	grace := b.cfg.RotationGrace
	var fwd []byte
	if grace > 0 {
		fwd = appendForward(make([]byte, 0, 1+len(s.id)), s.id, oldID)
	}
	// Only over the record this request loaded: one ended meanwhile must
	// not come back under the new id (write.go).
	err := b.swapLoaded(s, "rotate", oldKey, oldRec, fwd, grace, false)
	if err == nil {
		err = b.checkEndMarks(s, s.loadedUser, s.loadedBound)
	}
	switch {
	case err == nil:
		b.rotated(s)
		return nil
	case err == errEnded || errors.Is(err, ErrConflict):
		b.takeBack(s)
		s.id, s.key = oldID, oldKey
		return err
	}
	// Left alone, the old record would keep the old id working until its
	// TTL, with a copy of the session that drifts from the new one:
	// rotation would have weakened the session. So the request fails and
	// the client keeps the old id, to rotate again on its next request.
	// But a write whose reply was lost (a timeout) may have landed: then
	// the old key already leads to the new record, and taking that back
	// would lose the session. Look before undoing.
	switch landed, lerr := b.retired(s, oldKey, fwd); {
	case lerr == nil && landed:
		b.rotated(s)
		return nil
	case lerr == nil:
		// Nothing points at the new record: take it back.
		if derr := b.calls.Delete(s.ctx, s.key); derr != nil {
			b.cfg.Events.storeFailed(s.ctx, "rotate", derr)
			b.cfg.Logger.Warn("kvsession: could not delete the record of a failed rotation; it expires with its TTL", "error", derr)
		} else if s.user != "" {
			b.unindex(s.ctx, s.user, s.key)
		}
	default:
		// Unknown: keep the new record, indexed, in case the old key
		// leads to it. If it does not, nobody holds its id and it expires.
		b.cfg.Events.storeFailed(s.ctx, "rotate", lerr)
	}
	s.id, s.key, s.exists = oldID, oldKey, true
	return err
}

// rotated fires the events of a rotation that stands: the session saved
// under its new id, and its old id retired.
func (b *ServerBackend) rotated(s *Session) {
	b.cfg.Events.saved(s.ctx)
	b.cfg.Events.idRenewed(s.ctx, RenewRotation)
}

// retired reports whether the old key of a rotation was retired after all:
// deleted (fwd nil) or holding the forward record fwd.
func (b *ServerBackend) retired(s *Session, oldKey string, fwd []byte) (bool, error) {
	rec, err := b.calls.Get(s.ctx, oldKey)
	switch {
	case isNotFound(err):
		return fwd == nil, nil
	case err != nil:
		return false, err
	}
	return fwd != nil && bytes.Equal(rec, fwd), nil
}

// retireRenewed deletes the record RenewID replaced, once the session is
// saved under its new id: only if it is still the record this request
// loaded (write.go). If another request ended the session meanwhile, the
// new record would bring it back under a new id: it is taken back, and the
// request's changes dropped.
func (b *ServerBackend) retireRenewed(s *Session, prevUser string, prevBound int64) error {
	oldKey := s.oldKey
	s.oldKey = ""
	err := b.swapLoaded(s, "delete", oldKey, s.stored, nil, 0, false)
	if err == nil {
		err = b.checkEndMarks(s, prevUser, prevBound)
	}
	switch {
	case err == nil:
		return nil
	case err == errEnded || errors.Is(err, ErrConflict):
		b.takeBack(s)
		return err
	}
	// The old record holds only what the session had before RenewID:
	// whatever the request added (a login, say) went under the new id.
	// So a failure here leaves nothing an old cookie could exploit, and
	// failing the request would strand the saved new record instead.
	b.cfg.Logger.Warn("kvsession: could not delete the record of a renewed session id; it expires with its TTL", "error", err)
	return nil
}

// takeBack deletes the record the request just wrote under a new id, when
// the id it replaces turned out to be ended (or, under the lock, saved by
// another request) meanwhile.
func (b *ServerBackend) takeBack(s *Session) {
	if err := b.calls.Delete(s.ctx, s.key); err != nil {
		b.cfg.Events.storeFailed(s.ctx, "delete", err)
		b.cfg.Logger.Warn("kvsession: could not delete the record of a session ended during a change of id; it expires with its TTL", "error", err)
	} else if s.user != "" {
		b.unindex(s.ctx, s.user, s.key)
	}
	s.exists = false
}

// deleteStored deletes the session's record and any record RenewID
// retired: whichever of the two there is, the stored session, which then
// fires Destroyed.
func (b *ServerBackend) deleteStored(s *Session) error {
	ended := false
	if s.exists {
		if err := b.calls.Delete(s.ctx, s.key); err != nil {
			return b.cfg.Events.storeError(s.ctx, "delete", err)
		}
		s.exists, ended = false, true
		if s.loadedUser != "" {
			b.unindex(s.ctx, s.loadedUser, s.key)
		}
	}
	if s.oldKey != "" {
		if err := b.calls.Delete(s.ctx, s.oldKey); err != nil {
			return b.cfg.Events.storeError(s.ctx, "delete", err)
		}
		s.oldKey, ended = "", true
	}
	if ended {
		b.cfg.Events.destroyed(s.ctx)
	}
	return nil
}

// renewID moves the session to a fresh id. The record under the old one is
// deleted once the session is saved under the new one: unlike a periodic
// rotation, there is no grace window, since the point is that the old id
// stops working.
func (b *ServerBackend) renewID(s *Session) error {
	oldKey, existed := s.key, s.exists
	if err := b.assignID(s); err != nil {
		return err
	}
	if existed {
		s.oldKey = oldKey
		s.exists = false
	}
	return nil
}

// Release returns s to the backend's pool, releasing its session lock if
// StoreInResponse did not. s must not be used afterwards.
func (b *ServerBackend) Release(s *Session) {
	b.unlock(s)
	b.core.Release(s)
}

// Get returns the values of the session with the given id, decoded
// generically. It returns store.ErrNotFound (wrapped) for an unknown id and
// ErrInvalidID for a malformed one.
func (b *ServerBackend) Get(ctx context.Context, id string) (map[string]any, error) {
	s, err := b.byID(ctx, id)
	if err != nil {
		return nil, err
	}
	defer b.Release(s)
	if !s.exists {
		return nil, fmt.Errorf("kvsession: session %w", store.ErrNotFound)
	}
	return s.Values(), nil
}

// Set replaces the values of the session with the given id and resets its
// expiry, creating it if it does not exist. If the session is ended by
// another request while Set works (Destroy, a log out everywhere, a
// rotation), nothing is written and the error wraps store.ErrNotFound.
//
// With Config.Lock, Get, Set and Delete take the session's lock: do not
// call them from a request for its own session, which holds it already.
func (b *ServerBackend) Set(ctx context.Context, id string, values map[string]any) error {
	s, err := b.byID(ctx, id)
	if err != nil {
		return err
	}
	defer b.Release(s)
	if len(values) == 0 {
		return b.deleteStored(s)
	}
	created := s.created
	clear(s.entries)
	s.entries = s.entries[:0]
	for k, v := range values {
		if err := s.Set(k, v); err != nil {
			return err
		}
	}
	if !s.exists {
		// A session that does not exist is created under the id given; one
		// that does keeps the id and key its load resolved (a rotated-out
		// id leads to the current one: writing under the old would fork it).
		s.id, s.key = id, b.storeKey([]byte(id))
	}
	s.created = created
	err = b.save(s, s.nowNano())
	if err == errEnded {
		// Ended (destroyed, logged out, rotated) since the load above:
		// writing now would bring it back, and creating a new one in its
		// place is not what the caller saw. Let the caller decide again.
		return fmt.Errorf("kvsession: session ended while it was being set: %w", store.ErrNotFound)
	}
	return err
}

// Delete deletes the session with the given id, or the one it leads to if
// the id was rotated out within RotationGrace. Deleting an unknown id is
// not an error.
func (b *ServerBackend) Delete(ctx context.Context, id string) error {
	s, err := b.byID(ctx, id)
	if err != nil {
		return err
	}
	defer b.Release(s)
	// The session the id leads to, which a rotated-out id's forward makes
	// another record than the id's own: Get(id) would have read it, so
	// Delete(id) must end it.
	if err := b.deleteStored(s); err != nil {
		return err
	}
	if key := b.storeKey([]byte(id)); key != s.key {
		if err := b.calls.Delete(ctx, key); err != nil {
			return b.cfg.Events.storeError(ctx, "delete", err)
		}
	}
	return nil
}

func (b *ServerBackend) byID(ctx context.Context, id string) (*Session, error) {
	if !b.validID([]byte(id)) {
		return nil, ErrInvalidID
	}
	s := b.open(ctx, nil)
	s.cookie = append(s.cookie, id...)
	if err := s.Load(); err != nil {
		b.Release(s)
		return nil, err
	}
	return s, nil
}
