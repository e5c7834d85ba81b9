package kvsession

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/kvsession/kvsession/internal/msgp"
	"github.com/kvsession/kvsession/internal/sessioncookie"
)

// ErrKeyNotFound is returned by Session.Decode when the session holds no
// value under the key.
var ErrKeyNotFound = errors.New("kvsession: no value under that key")

// entry is one key and its encoded value. name and raw point into the record
// loaded from the store or into the session's arena; neither is written
// through. Both buffers are reused by the next request once the session is
// released, so nothing derived from them without a copy may reach the
// application: Keys and Values clone names, and every getter copies.
type entry struct {
	name string
	raw  []byte
}

// Session is one client's session for the duration of one request.
//
// It is loaded from the store on first use, so a handler that never touches
// it costs no store round trip. Getters on a session whose load failed
// return zero values; Err reports the failure, and the middleware answers
// the request with its error handler instead of the handler's response.
//
// A Session is safe for concurrent use by the goroutines of its request. It
// is recycled when the request ends: do not keep it, or anything that is
// not a copy, beyond the handler.
type Session struct {
	mu sync.Mutex
	c  *core  // set once, when the pool makes the session
	e  engine // likewise: the backend behind the session
	// idRaw is newID's scratch for an id's random bytes (and a handle's),
	// which it wipes after each use: nothing of one request is left in it
	// for a reset.
	idRaw [maxSessionIDBytes + handleBytes]byte

	// Each group below has one owner, which alone writes it, and one reset
	// that Release runs, so that no request's state reaches the next one.
	requestState    // what the request brought: core.go, session.go
	sessionData     // the session itself, as the record holds it: session.go, lifecycle.go, record decoding
	serverState     // the server backend's bookkeeping: backend.go, write.go, users.go, lock.go
	cookieState     // the cookie backend's bookkeeping: cookie_backend.go
	responseScratch // scratch for the Set-Cookie lines: core.go
}

// requestState is what one request brought to its session, and how far the
// session has got with it.
type requestState struct {
	ctx       context.Context
	header    []byte                // the request's Cookie header, until load reads it
	cookie    []byte                // the session cookie's value, segments joined (copied)
	carried   sessioncookie.Carried // the session cookies the request carried
	cookieErr error                 // why they could not be read, if they could not
	now       int64                 // unix ns, read once per request (nowNano)

	loaded  bool
	loadErr error
	failed  error // a failed Destroy, reported by StoreInResponse
	// exists: the session is kept where its backend keeps it (a record in
	// the store; a cookie that opened), as of the load or the last write.
	exists   bool
	modified bool // changed by the handler: the response must write it
	resumed  bool // the load found a live session the request carried (IsNew)
	// lifetimeSet: SetMaxAge or SetBrowserSession changed the session's
	// cookie lifetime, which the response's cookie must then say.
	lifetimeSet bool
	// viaHeader: the request carried Config.IDHeader (LoadFromHeader),
	// and cookie holds that header's value if it has an id's length: the
	// id comes from the header, and the response carries ids there. Here,
	// with the other flags, so that the struct does not grow.
	viaHeader bool
	// headerValue: that header was not empty: the client holds something
	// it takes for an id, which it is told to forget when it leads to no
	// session (idheader.go).
	headerValue bool
}

// The resets assign field by field, not a whole zero struct: that would be
// one bulk copy with write barriers over every pointer, on every request.
// TestResetForgetsEveryField fails when a field added here is not reset.

func (r *requestState) reset() {
	r.ctx, r.header, r.cookie = nil, nil, shrink(r.cookie[:0], 64<<10)
	r.carried, r.cookieErr, r.now = sessioncookie.Carried{}, nil, 0
	r.loaded, r.loadErr, r.failed = false, nil, nil
	r.exists, r.modified, r.resumed, r.lifetimeSet = false, false, false, false
	r.viaHeader, r.headerValue = false, false
}

// sessionData is the session's content, decoded from its record (record layout:
// record.go's decode) or set by the handler.
type sessionData struct {
	created    int64      // unix ns; 0 until first saved
	user       string     // the user the session is bound to; "" if none
	extended   int64      // unix ns of the last save or extension: the idle clock starts there
	rotated    int64      // unix ns the id was last rotated (RotationInterval); 0: never
	maxAge     int64      // this session's own MaxAge (SetMaxAge); 0: Config.MaxAge
	cookieMode cookieMode // this session's cookie lifetime (SetBrowserSession)
	// cookieExp is what the session cookie last sent for this id says
	// (cookierefresh.go): its expiry in unix seconds, -1 for a cookie
	// without one (a browser-session cookie), 0 if unknown.
	cookieExp int64
	indexed   int64 // unix ns until which the user's set lists this session's key
	bound     int64 // unix ns the user was bound (SetUser); 0: no user, or bound before this was kept
	// This session's own timeouts, in ns (SetIdleTimeout,
	// SetAbsoluteTimeout, SetRotationInterval); 0: Config's.
	ownIdle, ownAbsolute, ownRotation int64
	// handle names the session to its user and operators without giving
	// its id away (handle.go); zero until the server backend gives it one.
	handle [handleBytes]byte
	// The client the application recorded at login (SetClientInfo):
	// views of the loaded record, or copies.
	userAgent, remoteAddr string

	entries []entry
	arena   []byte // encoded values set during this request
	// flashes are the messages AddFlash queued and Flashes has not yet
	// handed out: views of the loaded record, or copies AddFlash made.
	flashes []Flash
}

// forget empties the session's content, keeping the buffers.
func (d *sessionData) forget() {
	clear(d.entries)
	d.entries = d.entries[:0]
	d.dropFlashes()
	d.created, d.user, d.extended, d.rotated = 0, "", 0, 0
	d.maxAge, d.cookieMode, d.indexed, d.bound, d.cookieExp = 0, cookieDefault, 0, 0, 0
	d.ownIdle, d.ownAbsolute, d.ownRotation = 0, 0, 0
	d.handle, d.userAgent, d.remoteAddr = [handleBytes]byte{}, "", ""
}

func (d *sessionData) reset() {
	d.forget()
	d.entries = shrink(d.entries, 1024)
	d.flashes = shrink(d.flashes, maxFlashes)
	d.arena = shrink(d.arena[:0], 64<<10)
}

// serverState is what the server backend keeps about the session it loaded.
type serverState struct {
	id          string // the session id; "" until it has one
	key         string // its store key (Prefix and a hash of the id)
	idBuf       []byte // the id a forward led to
	keyBuf      []byte // the store key load built, when the store borrows keys
	forwarded   bool   // the request's id was rotated out; the cookie must be updated
	readOnly    bool   // SetReadOnly: load without the session lock
	lock        held   // the session lock this request holds (Config.Lock)
	oldKey      string // a key RenewID retired, deleted once the new one is saved
	loadedUser  string // the user the stored record was bound to
	loadedBound int64  // and when it was bound to that user
	// loadBuf receives the loaded record when the store can read into a
	// buffer of ours (store.Appender).
	loadBuf []byte
	// stored is the record as the store held it when the session was
	// loaded (a view of loadBuf, or the store's copy): a save replaces it
	// only if the store still holds exactly that (store.Store.Swap).
	stored []byte
}

func (v *serverState) reset() {
	v.id, v.key, v.oldKey, v.loadedUser, v.loadedBound = "", "", "", "", 0
	v.idBuf, v.keyBuf = v.idBuf[:0], v.keyBuf[:0]
	v.forwarded, v.readOnly, v.lock = false, false, held{}
	v.loadBuf, v.stored = shrink(v.loadBuf[:0], 64<<10), nil
}

// cookieState is what the cookie backend keeps about the cookie it opened.
type cookieState struct {
	secret int    // which of Config.Secrets opened the cookie
	plain  []byte // the opened cookie's plaintext
	out    []byte // the sealed cookie value the response carries
}

func (v *cookieState) reset() {
	// The last cookie's plaintext: never shown to the next request, but
	// no reason to leave it in memory either.
	clear(v.plain)
	v.secret, v.plain, v.out = 0, shrink(v.plain[:0], 64<<10), shrink(v.out[:0], 64<<10)
}

// responseScratch is scratch for writing the response's cookies.
type responseScratch struct {
	line  []byte // a Set-Cookie line
	attrs []byte // cookie attributes
}

func (r *responseScratch) reset() { r.line, r.attrs = r.line[:0], r.attrs[:0] }

func (s *Session) reset() {
	s.requestState.reset()
	s.sessionData.reset()
	s.serverState.reset()
	s.cookieState.reset()
	s.responseScratch.reset()
}

// shrink returns b, or nil if it grew past max elements: a session that once
// held a huge value should not pin it in the pool.
func shrink[T any](b []T, max int) []T {
	if cap(b) > max {
		return nil
	}
	return b
}

// load reads the session once per request. A cookie that is broken,
// unknown, expired or whose record is unreadable yields a fresh empty
// session; only a store failure is an error.
func (s *Session) load() error {
	if s.loaded {
		return s.loadErr
	}
	s.loaded = true
	if s.header != nil {
		// A broken set of cookies is no error: the request gets a fresh
		// session, and the response expires them if it writes the session.
		s.cookie, s.carried, s.cookieErr = s.c.split.Read(s.cookie, s.header)
		s.header = nil
	}
	if s.cookieErr != nil {
		s.c.cfg.Logger.Debug("kvsession: broken session cookie; starting a fresh session", "error", s.cookieErr)
		s.c.cfg.Events.loaded(s.ctx, LoadCorrupt)
		return nil
	}
	var outcome LoadOutcome
	outcome, s.loadErr = s.e.load(s)
	s.resumed = s.loadErr == nil && s.exists // later writes move exists, not this
	s.c.cfg.Events.loaded(s.ctx, outcome)
	return s.loadErr
}

func (s *Session) find(key string) int {
	for i := range s.entries {
		if s.entries[i].name == key {
			return i
		}
	}
	return -1
}

// raw returns the encoded value under key, loading the session if needed.
func (s *Session) raw(key string) ([]byte, bool) {
	if s.load() != nil {
		return nil, false
	}
	if i := s.find(key); i >= 0 {
		return s.entries[i].raw, true
	}
	return nil, false
}

// CookieName returns the name of the cookie the session rides in
// (Config.CookieName): what tells apart the sessions of one request when
// several middlewares give it one each.
func (s *Session) CookieName() string { return s.c.cfg.CookieName }

// Load loads the session now rather than on first use, and reports a store
// failure. Handlers that want to branch on that failure call it first.
func (s *Session) Load() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.load()
}

// Err reports why the session could not be loaded, or nil.
func (s *Session) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.loadErr
}

// ID returns the session id, or "" for a new session that has not been
// saved yet (it gets its id when the response is written). Sessions of the
// cookie backend have no id: ID returns "".
func (s *Session) ID() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.load() != nil {
		return ""
	}
	return s.e.id(s)
}

// User returns the user the session is bound to by SetUser, or "".
func (s *Session) User() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.load() != nil {
		return ""
	}
	return strings.Clone(s.user)
}

// SetUser binds the session to a user id, or unbinds it with "". With the
// cookie backend and Config.RevocationStore, CookieBackend.RevokeUser then
// logs the user out of every session bound before it. Call RenewID along
// with it at login.
func (s *Session) SetUser(user string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.load(); err != nil {
		return err
	}
	if len(user) > maxUserBytes {
		return fmt.Errorf("kvsession: user id of %d bytes is longer than %d", len(user), maxUserBytes)
	}
	if user != s.user {
		s.user = user
		s.bound = s.c.now().UnixNano()
		s.modified = true
	}
	return nil
}

// maxUserBytes bounds a user id: it travels in every record or cookie.
const maxUserBytes = 256

// Created reports when the session was first saved; zero for a new one.
func (s *Session) Created() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.load() != nil || s.created == 0 {
		return time.Time{}
	}
	return time.Unix(0, s.created)
}

// Get returns the value stored under key, decoded generically (see the
// Codec for the Go types it yields), and whether it exists.
func (s *Session) Get(key string) (any, bool) { return getAs(s, key, (*Session).readAny) }

// Decode decodes the value under key into dst, restoring the exact type
// that was stored (structs included). It returns ErrKeyNotFound if there is
// no such value, and the load error if the session could not be loaded.
func (s *Session) Decode(key string, dst any) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.load(); err != nil {
		return err
	}
	raw, ok := s.raw(key)
	if !ok {
		return ErrKeyNotFound
	}
	return s.c.cfg.Codec.Decode(raw, dst)
}

// GetString returns the string under key; false if absent or not a string.
func (s *Session) GetString(key string) (string, bool) {
	return getAs(s, key, (*Session).readString)
}

// GetInt64 returns the integer under key; false if absent, not an integer,
// or out of range.
func (s *Session) GetInt64(key string) (int64, bool) {
	return getAs(s, key, (*Session).readInt64)
}

// GetInt is GetInt64 for int.
func (s *Session) GetInt(key string) (int, bool) { return getAs(s, key, (*Session).readInt) }

// GetFloat64 returns the float under key (float32 widened); false if
// absent or not a float.
func (s *Session) GetFloat64(key string) (float64, bool) {
	return getAs(s, key, (*Session).readFloat64)
}

// GetBool returns the bool under key; false if absent or not a bool.
func (s *Session) GetBool(key string) (bool, bool) { return getAs(s, key, (*Session).readBool) }

// GetBytes returns a copy of the []byte under key; false if absent or not
// bytes.
func (s *Session) GetBytes(key string) ([]byte, bool) {
	return getAs(s, key, (*Session).readBytes)
}

// getAs is a typed getter: the value under key as read decodes it. The
// getters and the Pop functions share their readers, so that a value one
// of them accepts as a type the other accepts too.
func getAs[T any](s *Session, key string, read func(*Session, []byte) (T, bool)) (T, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	raw, ok := s.raw(key)
	if !ok {
		var zero T
		return zero, false
	}
	return read(s, raw)
}

// The readers decode one encoded value as one type, with s.mu held;
// false if it is not of that type. What they return is the caller's: a
// copy, never a view of the record or the arena.

func (s *Session) readAny(raw []byte) (any, bool) {
	v, err := s.c.cfg.Codec.DecodeAny(raw)
	if err != nil {
		return nil, false
	}
	return v, true
}

func (s *Session) readString(raw []byte) (string, bool) {
	if s.c.fastCodec {
		r := msgp.NewReader(raw)
		p, err := r.Str()
		if err != nil || !r.Done() {
			return "", false
		}
		return string(p), true
	}
	var v string
	return v, s.c.cfg.Codec.Decode(raw, &v) == nil
}

func (s *Session) readInt64(raw []byte) (int64, bool) {
	if s.c.fastCodec {
		n, err := msgp.ReadInt(raw)
		return n, err == nil
	}
	var v int64
	return v, s.c.cfg.Codec.Decode(raw, &v) == nil
}

func (s *Session) readInt(raw []byte) (int, bool) {
	n, ok := s.readInt64(raw)
	if !ok || int64(int(n)) != n {
		return 0, false
	}
	return int(n), true
}

func (s *Session) readFloat64(raw []byte) (float64, bool) {
	v, _ := s.readAny(raw)
	switch f := v.(type) {
	case float64:
		return f, true
	case float32:
		return float64(f), true
	}
	return 0, false
}

func (s *Session) readBool(raw []byte) (bool, bool) {
	v, _ := s.readAny(raw)
	b, ok := v.(bool)
	return b, ok
}

func (s *Session) readBytes(raw []byte) ([]byte, bool) {
	v, _ := s.readAny(raw)
	b, ok := v.([]byte)
	return b, ok
}

// Has reports whether the session holds a value under key.
func (s *Session) Has(key string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.raw(key)
	return ok
}

// Len returns the number of values in the session.
func (s *Session) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.load() != nil {
		return 0
	}
	return len(s.entries)
}

// Keys returns the session's keys in the order they were first set.
func (s *Session) Keys() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.load() != nil {
		return nil
	}
	keys := make([]string, len(s.entries))
	for i, e := range s.entries {
		keys[i] = strings.Clone(e.name)
	}
	return keys
}

// Values returns every value decoded generically, as Get would.
func (s *Session) Values() map[string]any {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]any, len(s.entries))
	if s.load() != nil {
		return out
	}
	for _, e := range s.entries {
		if v, err := s.c.cfg.Codec.DecodeAny(e.raw); err == nil {
			out[strings.Clone(e.name)] = v
		}
	}
	return out
}

// Set stores v under key. The value is encoded now: later changes to v do
// not reach the session, and a value the codec cannot encode is an error
// here rather than when the response is written.
func (s *Session) Set(key string, v any) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.load(); err != nil {
		return err
	}
	start := len(s.arena)
	arena, err := appendEncoded(s.c.cfg.Codec, s.arena, v)
	if err != nil {
		if len(arena) >= start { // keep a buffer the codec grew; a codec may also return nil
			s.arena = arena[:start]
		}
		return err
	}
	s.arena = arena
	s.put(key, start)
	return nil
}

// ErrUnencodable is returned (wrapped) by Set, and the by-id
// ServerBackend.Set, for a value the codec cannot encode: a uintptr, a
// func, a channel, or a struct field, slice element or map value holding
// one. The session is left as it was.
var ErrUnencodable = errors.New("kvsession: value cannot be encoded")

// appendEncoded appends v encoded by c to dst. A codec that panics on a
// value (msgpack does on a uintptr, anywhere inside v) gives an error
// instead: no value a handler passes may take the process down, and
// fasthttp does not recover handler panics.
func appendEncoded(c Codec, dst []byte, v any) (out []byte, err error) {
	defer func() {
		if p := recover(); p != nil {
			out, err = dst, fmt.Errorf("%w: %T: %v", ErrUnencodable, v, p)
		}
	}()
	return c.AppendEncode(dst, v)
}

// put makes the value encoded at s.arena[start:] the one under key.
func (s *Session) put(key string, start int) {
	raw := s.arena[start:len(s.arena):len(s.arena)]
	if i := s.find(key); i >= 0 {
		s.entries[i].raw = raw
	} else {
		s.entries = append(s.entries, entry{name: key, raw: raw})
	}
	s.modified = true
}

// The typed setters store what Set would, without converting the value to
// an interface first: Set(key, n) allocates for most ints (and for every
// string or slice) just to box it, these do not with the default codec.

// SetInt64 stores n under key, as Set does.
func (s *Session) SetInt64(key string, n int64) error {
	if !s.c.fastCodec {
		return s.Set(key, n)
	}
	return setEncoded(s, key, n, msgp.AppendInt)
}

// SetInt stores n under key, as Set does.
func (s *Session) SetInt(key string, n int) error {
	if !s.c.fastCodec {
		return s.Set(key, n)
	}
	return setEncoded(s, key, int64(n), msgp.AppendInt)
}

// SetString stores v under key, as Set does.
func (s *Session) SetString(key, v string) error {
	if !s.c.fastCodec {
		return s.Set(key, v)
	}
	return setEncoded(s, key, v, msgp.AppendString)
}

// SetBytes stores a copy of v under key, as Set does.
func (s *Session) SetBytes(key string, v []byte) error {
	if !s.c.fastCodec {
		return s.Set(key, v)
	}
	return setEncoded(s, key, v, msgp.AppendBin)
}

// setEncoded is Set with the default codec's encoder for v's type: a
// generic function rather than an interface, so that v is never boxed.
func setEncoded[T any](s *Session, key string, v T, appendValue func([]byte, T) []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.load(); err != nil {
		return err
	}
	start := len(s.arena)
	s.arena = appendValue(s.arena, v)
	s.put(key, start)
	return nil
}

// Delete removes the value under key.
func (s *Session) Delete(key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.load() != nil {
		return
	}
	if i := s.find(key); i >= 0 {
		s.remove(i)
	}
}

// remove drops the i-th entry; the save writes the session without it.
func (s *Session) remove(i int) {
	s.entries = slices.Delete(s.entries, i, i+1)
	s.modified = true
}

// Clear removes every value and flash message and unbinds the user. A
// session left empty is deleted from the store when the response is
// written, and its cookie expired.
func (s *Session) Clear() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.load() != nil || s.empty() {
		return
	}
	// The session keeps its id, so it keeps its creation time: clearing
	// must not restart AbsoluteTimeout.
	clear(s.entries)
	s.entries = s.entries[:0]
	s.dropFlashes()
	s.user, s.bound = "", 0
	s.modified = true
}

// empty reports whether the session holds nothing worth keeping: no values,
// no user and no flash message. A session holding only a flash is kept:
// "please log in" must reach the next request of a visitor with no
// session yet.
func (s *Session) empty() bool {
	return len(s.entries) == 0 && s.user == "" && len(s.flashes) == 0
}

// Modified reports whether the session was changed during this request.
func (s *Session) Modified() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.modified
}

// Destroy deletes the session from the store now and empties it; the
// response expires the cookie. If the store fails, the session is left as
// it was and the error returned; the response then fails with it too (the
// middleware answers with its error handler, nothing is saved), even if the
// handler ignored it: a logout that did not happen is never answered as
// one. Values set after Destroy start a new session with a new id.
//
// With the cookie backend there is no store: Destroy empties the session
// and the response expires its cookies, but a copy of the cookie taken
// earlier stays valid until its sealed expiry (see CookieBackend).
func (s *Session) Destroy() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.load(); err != nil {
		return err
	}
	if err := s.e.discard(s); err != nil {
		s.failed = err // fail closed: see above
		return err
	}
	s.failed = nil // a retry that worked
	s.forget()
	s.id, s.key = "", ""
	s.modified = true
	return nil
}

// RenewID gives the session a new id, keeping its data. Call it whenever
// the privilege level changes (login, logout, sudo) so that an id an
// attacker planted or observed before is worthless after.
//
// The data is saved under the new id when the response is written; the old
// record is deleted only after that save succeeds, so a store failure never
// loses the session. With the cookie backend, which has no ids, RenewID
// re-seals the cookie; what was added after it (a login) is in the new
// cookie only.
func (s *Session) RenewID() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.load(); err != nil {
		return err
	}
	if err := s.e.renewID(s); err != nil {
		return err
	}
	s.modified = true
	return nil
}

// nowNano reads the clock once per request.
func (s *Session) nowNano() int64 {
	if s.now == 0 {
		s.now = s.c.now().UnixNano()
	}
	return s.now
}

// SetMaxAge gives this session a lifetime of its own, such as a longer one
// for "remember me": its store TTL (or sealed expiry) and its cookie's
// Max-Age, with a persistent cookie. 0 returns to Config.MaxAge. Values
// above Config.MaxAgeLimit, or below a second, are errors. IdleTimeout and
// AbsoluteTimeout still apply.
func (s *Session) SetMaxAge(d time.Duration) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.load(); err != nil {
		return err
	}
	if d != 0 && (d < time.Second || d > s.c.cfg.MaxAgeLimit) {
		return fmt.Errorf("kvsession: SetMaxAge(%v): outside 1s to Config.MaxAgeLimit (%v)", d, s.c.cfg.MaxAgeLimit)
	}
	mode := cookieDefault
	if d != 0 {
		mode = cookieKeep
	}
	if s.maxAge != int64(d) || s.cookieMode != mode {
		s.lifetimeSet = true
	}
	s.maxAge, s.cookieMode = int64(d), mode
	s.modified = true
	return nil
}

// SetBrowserSession gives this session a browser-session cookie (true: no
// Max-Age, gone when the browser closes) or a persistent one (false),
// whatever Config.BrowserSession says. The data still expires on the
// server after the session's MaxAge.
func (s *Session) SetBrowserSession(on bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.load(); err != nil {
		return err
	}
	mode := cookieKeep
	if on {
		mode = cookieBrowserOnly
	}
	if s.cookieMode != mode {
		s.lifetimeSet = true
	}
	s.cookieMode = mode
	s.modified = true
	return nil
}

// SetReadOnly declares that this request only reads the session: with
// Config.Lock it is loaded without waiting for, or taking, the session's
// lock. Call it before the session's first use. A read-only session that is
// changed anyway is still saved, without the lock's protection.
func (s *Session) SetReadOnly() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.readOnly = true
}

// IsReadOnly reports whether SetReadOnly was called for this request.
func (s *Session) IsReadOnly() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.readOnly
}
