package kvsession

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/kvsession/kvsession/store"
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
	Op  string // "load", "save", "renew" or "delete"
	Err error
}

func (e *StoreError) Error() string { return "kvsession: session " + e.Op + ": " + e.Err.Error() }
func (e *StoreError) Unwrap() error { return e.Err }

func isNotFound(err error) bool {
	return err == store.ErrNotFound || errors.Is(err, store.ErrNotFound)
}

// ResponseSink is where the backend writes what a response needs: the
// session cookie and the cache headers that go with it. Each HTTP adapter
// implements it over its framework's response; the backend itself knows no
// framework.
type ResponseSink interface {
	// SetCookie replaces any cookie named name on the response with the
	// complete Set-Cookie header value line. line is only valid during the
	// call: copy it.
	SetCookie(name string, line []byte)
	// AddHeader adds a header, keeping those already present.
	AddHeader(name, value string)
}

// Backend keeps sessions in a store and carries them in a cookie holding
// only the session id. It follows the semantics of Litestar's server-side
// session backend: see the README for the full set of rules.
type Backend struct {
	cfg       compiled
	store     store.Store
	toucher   store.Toucher  // nil when the store cannot refresh a TTL alone
	appender  store.Appender // nil when the store cannot read into our buffer
	fastCodec bool           // cfg.Codec is Msgpack: typed getters skip the interface
	idLen     int            // length of an encoded id
	ttl       time.Duration
	maxAge    string // MaxAge in whole seconds, as the cookie carries it
	rand      io.Reader
	now       func() time.Time
	pool      sync.Pool
	expires   atomic.Pointer[expiresCache]
}

// New validates cfg and returns a Backend on the store the registry holds
// under cfg.Store. Every misconfiguration is a *ConfigError naming the field.
func New(cfg Config, stores *store.Registry) (*Backend, error) {
	c, err := cfg.compile()
	if err != nil {
		return nil, err
	}
	if stores == nil {
		return nil, &ConfigError{Field: "Store", Reason: "no store registry given to New"}
	}
	st, err := stores.Get(c.Store)
	if err != nil {
		return nil, &ConfigError{Field: "Store", Reason: err.Error()}
	}
	b := &Backend{
		cfg:    *c,
		store:  st,
		idLen:  base64.RawURLEncoding.EncodedLen(c.SessionIDBytes),
		ttl:    c.MaxAge,
		maxAge: strconv.FormatInt(int64((c.MaxAge+time.Second-1)/time.Second), 10),
		rand:   rand.Reader,
		now:    time.Now,
	}
	b.toucher, _ = st.(store.Toucher)
	b.appender, _ = st.(store.Appender)
	if c.RenewOnAccess && b.toucher == nil {
		// Renewing by writing the loaded record back would resurrect a
		// session that another request destroyed in the meantime.
		return nil, &ConfigError{Field: "RenewOnAccess", Reason: fmt.Sprintf("store %q (%T) cannot refresh a TTL without rewriting the value (store.Toucher)", c.Store, st)}
	}
	_, b.fastCodec = c.Codec.(Msgpack)
	b.pool.New = func() any { return new(Session) }
	return b, nil
}

// Config returns the configuration in effect, defaults applied.
func (b *Backend) Config() Config { return b.cfg.Config }

// Store returns the store sessions are kept in.
func (b *Backend) Store() store.Store { return b.store }

// CookieName returns the name of the session cookie.
func (b *Backend) CookieName() string { return b.cfg.Key }

// Excluded reports whether a request path matches one of Config.Exclude.
func (b *Backend) Excluded(path []byte) bool {
	for _, re := range b.cfg.exclude {
		if re.Match(path) {
			return true
		}
	}
	return false
}

// idAlphabet marks the bytes of unpadded URL-safe base64.
var idAlphabet = func() (t [256]bool) {
	for _, c := range []byte("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") {
		t[c] = true
	}
	return t
}()

// validID rejects, before any store lookup, a value that cannot be an id
// this backend generated: wrong length or a byte outside the alphabet.
func (b *Backend) validID(id []byte) bool {
	if len(id) != b.idLen {
		return false
	}
	for _, c := range id {
		if !idAlphabet[c] {
			return false
		}
	}
	return true
}

// newKey draws a fresh id from crypto/rand and returns its store key. A
// failing random source is an error, never a weaker id.
func (b *Backend) newKey(s *Session) (string, error) {
	raw := s.idRaw[:b.cfg.SessionIDBytes]
	if _, err := io.ReadFull(b.rand, raw); err != nil {
		return "", fmt.Errorf("kvsession: generating a session id: %w", err)
	}
	p := len(b.cfg.Prefix)
	buf := make([]byte, p+b.idLen)
	copy(buf, b.cfg.Prefix)
	base64.RawURLEncoding.Encode(buf[p:], raw)
	clear(raw)
	return unsafe.String(&buf[0], len(buf)), nil
}

// GenerateID returns a new random session id.
func (b *Backend) GenerateID() (string, error) {
	s := b.pool.Get().(*Session)
	defer b.pool.Put(s)
	key, err := b.newKey(s)
	if err != nil {
		return "", err
	}
	return key[len(b.cfg.Prefix):], nil
}

// LoadFromCookie starts the session of one request from the value of its
// session cookie (nil or empty when it had none). Nothing is read from the
// store until the session is first used. Pass the session to
// StoreInResponse when the handler is done, then to Release.
//
// ctx bounds the store calls the session makes; it must stay valid until
// StoreInResponse returns.
func (b *Backend) LoadFromCookie(ctx context.Context, cookie []byte) *Session {
	s := b.pool.Get().(*Session)
	s.b, s.ctx = b, ctx
	s.hadCookie = len(cookie) > 0
	if len(cookie) == b.idLen {
		s.cookieID = append(s.cookieID[:0], cookie...)
	}
	return s
}

// Release returns s to the backend's pool. s must not be used afterwards.
func (b *Backend) Release(s *Session) {
	s.reset()
	b.pool.Put(s)
}

// StoreInResponse writes what the request did to the session back to the
// store and the response:
//
//   - a session never used during the request: nothing at all;
//   - a session empty after the handler: its record deleted, and its cookie
//     expired if the request carried one (no Set-Cookie otherwise);
//   - a modified session: saved with MaxAge as TTL under its id (a new one if
//     it had none) and the cookie set;
//   - an unmodified one: nothing, unless RenewOnAccess is on, in which case
//     its TTL and cookie are refreshed without re-encoding it (and its
//     cookie expired if another request destroyed it meanwhile).
//
// Every Set-Cookie is accompanied by Vary: Cookie and
// Cache-Control: no-cache="Set-Cookie", so shared caches never replay one
// client's cookie to another. On error nothing is added to the response,
// and what the store held before is intact.
func (b *Backend) StoreInResponse(s *Session, sink ResponseSink) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.loaded {
		return nil
	}
	if s.loadErr != nil {
		return s.loadErr
	}
	if len(s.entries) == 0 {
		if err := s.deleteStored(); err != nil {
			return err
		}
		if s.hadCookie {
			b.writeCookie(s, sink, "", cookieExpired)
		}
		return nil
	}
	switch {
	case s.modified:
		if err := b.save(s); err != nil {
			return err
		}
	case b.cfg.RenewOnAccess && s.exists:
		live, err := b.renew(s)
		if err != nil {
			return err
		}
		if !live {
			b.writeCookie(s, sink, "", cookieExpired)
			return nil
		}
	default:
		return nil
	}
	lifetime := cookiePersistent
	if b.cfg.BrowserSession {
		lifetime = cookieBrowserSession
	}
	b.writeCookie(s, sink, s.key[len(b.cfg.Prefix):], lifetime)
	return nil
}

var recordPool = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

func (b *Backend) save(s *Session) error {
	if s.key == "" {
		key, err := b.newKey(s)
		if err != nil {
			return err
		}
		s.key = key
	}
	if s.created == 0 {
		s.created = b.now().UnixNano()
	}
	bp := recordPool.Get().(*[]byte)
	rec := s.encode((*bp)[:0])
	var err error
	if len(rec) > b.cfg.MaxRecordBytes {
		err = ErrSessionTooLarge
	} else if err = b.store.Set(s.ctx, s.key, rec, b.ttl); err != nil {
		err = &StoreError{Op: "save", Err: err}
	}
	if cap(rec) <= 64<<10 {
		*bp = rec
		recordPool.Put(bp)
	}
	if err != nil {
		return err
	}
	s.exists = true
	if s.oldKey != "" {
		// The old record holds only what the session had before RenewID:
		// whatever the request added (a login, say) went under the new id.
		// So a failure here leaves nothing an old cookie could exploit, and
		// failing the request would strand the saved new record instead.
		if err := s.b.store.Delete(s.ctx, s.oldKey); err != nil {
			b.cfg.Logger.Warn("kvsession: could not delete the record of a renewed session id; it expires with its TTL", "error", err)
		}
		s.oldKey = ""
	}
	return nil
}

// renew resets the TTL of an unmodified session without rewriting it. It
// reports false if the record is gone: another request destroyed or renewed
// the session since this one loaded it, and a renewal must not bring it back.
func (b *Backend) renew(s *Session) (bool, error) {
	err := b.toucher.Touch(s.ctx, s.key, b.ttl)
	if err == nil {
		return true, nil
	}
	if isNotFound(err) {
		s.exists = false
		return false, nil
	}
	return false, &StoreError{Op: "renew", Err: err}
}

type cookieLifetime uint8

const (
	cookiePersistent     cookieLifetime = iota // Max-Age and Expires of Config.MaxAge
	cookieBrowserSession                       // neither: gone when the browser closes
	cookieExpired                              // Max-Age=0 and a past Expires: delete it
)

func (b *Backend) writeCookie(s *Session, sink ResponseSink, value string, lifetime cookieLifetime) {
	c := &b.cfg
	l := append(s.line[:0], c.Key...)
	l = append(l, '=')
	l = append(l, value...)
	l = append(l, "; Path="...)
	l = append(l, c.Path...)
	if c.Domain != "" {
		l = append(l, "; Domain="...)
		l = append(l, c.Domain...)
	}
	switch lifetime {
	case cookiePersistent:
		l = append(l, "; Max-Age="...)
		l = append(l, b.maxAge...)
		l = append(l, "; Expires="...)
		l = append(l, b.expiresAt()...)
	case cookieExpired:
		l = append(l, "; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT"...)
	}
	if c.Secure {
		l = append(l, "; Secure"...)
	}
	if !c.DisableHTTPOnly {
		l = append(l, "; HttpOnly"...)
	}
	l = append(l, "; SameSite="...)
	l = append(l, c.SameSite.String()...)
	s.line = l
	sink.SetCookie(c.Key, l)
	sink.AddHeader("Vary", "Cookie")
	sink.AddHeader("Cache-Control", `no-cache="Set-Cookie"`)
}

// expiresCache holds the Expires date for cookies set during one second, so
// the date is formatted once a second rather than once a response.
type expiresCache struct {
	unix int64
	text []byte
}

func (b *Backend) expiresAt() []byte {
	now := b.now().Unix()
	if e := b.expires.Load(); e != nil && e.unix == now {
		return e.text
	}
	at := time.Unix(now, 0).Add(b.ttl).UTC()
	e := &expiresCache{unix: now, text: at.AppendFormat(nil, http.TimeFormat)}
	b.expires.Store(e)
	return e.text
}

// Get returns the values of the session with the given id, decoded
// generically. It returns store.ErrNotFound (wrapped) for an unknown id and
// ErrInvalidID for a malformed one.
func (b *Backend) Get(ctx context.Context, id string) (map[string]any, error) {
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
// expiry, creating it if it does not exist.
func (b *Backend) Set(ctx context.Context, id string, values map[string]any) error {
	s, err := b.byID(ctx, id)
	if err != nil {
		return err
	}
	defer b.Release(s)
	if len(values) == 0 {
		return s.deleteStored()
	}
	created := s.created
	clear(s.entries)
	s.entries = s.entries[:0]
	for k, v := range values {
		if err := s.Set(k, v); err != nil {
			return err
		}
	}
	s.key, s.created = b.cfg.Prefix+id, created
	return b.save(s)
}

// Delete deletes the session with the given id. Deleting an unknown id is
// not an error.
func (b *Backend) Delete(ctx context.Context, id string) error {
	if !b.validID([]byte(id)) {
		return ErrInvalidID
	}
	if err := b.store.Delete(ctx, b.cfg.Prefix+id); err != nil {
		return &StoreError{Op: "delete", Err: err}
	}
	return nil
}

func (b *Backend) byID(ctx context.Context, id string) (*Session, error) {
	if !b.validID([]byte(id)) {
		return nil, ErrInvalidID
	}
	s := b.LoadFromCookie(ctx, []byte(id))
	if err := s.Load(); err != nil {
		b.Release(s)
		return nil, err
	}
	return s, nil
}
