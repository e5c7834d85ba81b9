package kvsession

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/kvsession/kvsession/store"
)

// CookieBackend keeps the whole session in the client's cookie, so the
// server holds no state. The cookie is sealed with AES-256-GCM:
//
//	base64url( format | key id | nonce | AES-GCM(bound | expires | record) )
//
// with a random 96-bit nonce per write, and the cookie name, the format and
// the key id as associated data, so a cookie cannot be moved to another
// name or key. expires is sealed inside: a cookie replayed after its expiry
// is refused even if a browser kept it; bound is when Session.SetUser bound
// the session's user, for revocation. The record is the same
// msgpack record the server-side backend stores. A cookie that does not
// open — tampered, truncated, sealed with an unknown key, expired, of
// another format — gives the request a fresh empty session.
//
// Logging out: a copy of a cookie, taken before the session was destroyed,
// stays valid until its sealed expiry, because nothing on the server
// remembers the destroy. Keep MaxAge short, and for "log out everywhere"
// bind sessions to users (Session.SetUser) and set Config.RevocationStore:
// RevokeUser then refuses every cookie of that user sealed before it, for
// as long as any such cookie can open (see RevokeUser).
//
// Lifetime: no cookie opens longer after it was sealed than MaxAgeLimit
// (the longest Session.SetMaxAge may ask for, MaxAge by default), nor past
// IdleTimeout after that or past AbsoluteTimeout after the session was
// created. This holds of cookies sealed under an earlier configuration too,
// say before MaxAgeLimit was lowered: the bounds of the configuration that
// reads a cookie apply, whatever expiry is sealed inside it.
//
// Keys: AES-GCM with random nonces is safe for about 2^32 cookies written
// under one key (NIST SP 800-38D). Put a new key first in Config.Secrets
// well before that; sessions sealed with an older key are re-sealed with the
// first on their next request.
type CookieBackend struct {
	core
	keys        []cookieKey  // Config.Secrets, in order; keys[0] seals
	revocations *store.Calls // nil without Config.RevocationStore
	// longestLife is the longest a cookie opens after it was sealed (see
	// cookieLongestLife): how long a revocation must be remembered.
	longestLife time.Duration
}

var _ Backend = (*CookieBackend)(nil)

type cookieKey struct {
	id   [cookieKeyIDBytes]byte
	aead cipher.AEAD
	aad  []byte // cookie name, 0, format, key id
}

const (
	cookieFormat      = 1
	cookieKeyIDBytes  = 4
	cookieNonceBytes  = 12
	cookieSealHeader  = 1 + cookieKeyIDBytes + cookieNonceBytes
	cookieTimesBytes  = 16 // bound and expires, unix nanoseconds
	cookieSealedExtra = cookieSealHeader + 16
)

// strictBase64 refuses the non-canonical encodings that would let a cookie
// be altered without changing the bytes it decodes to.
var strictBase64 = base64.RawURLEncoding.Strict()

// NewCookie validates cfg and returns a CookieBackend. cfg.Secrets must hold
// at least one key. stores is needed only for Config.RevocationStore and
// may be nil otherwise.
//
// Every Config field either works with cookie sessions or, when set, is
// refused with a *ConfigError that says what to do instead: the fields of
// server-side sessions (Store, SessionIDBytes, IDHeader, IDHashKey,
// PlainStoreKeys, RotationInterval, RotationGrace, Lock, LockLease,
// LockWait), and Prefix and StoreTimeout without a RevocationStore, whose
// calls are all they act on. A setting silently ignored would promise what it cannot keep: a
// lock that serialises nothing, say.
func NewCookie(cfg Config, stores *store.Registry) (*CookieBackend, error) {
	c, err := cfg.compile()
	if err != nil {
		return nil, err
	}
	if err := cfg.checkCookie(); err != nil {
		return nil, err
	}
	if len(c.Secrets) == 0 {
		return nil, &ConfigError{Field: "Secrets", Reason: fmt.Sprintf("the cookie backend needs at least one key of %d random bytes", SecretBytes)}
	}
	b := &CookieBackend{}
	for i, secret := range c.Secrets {
		k, err := newCookieKey(c.CookieName, secret)
		if err != nil {
			return nil, &ConfigError{Field: fmt.Sprintf("Secrets[%d]", i), Reason: err.Error()}
		}
		for j, other := range b.keys {
			if other.id == k.id {
				return nil, &ConfigError{Field: fmt.Sprintf("Secrets[%d]", i), Reason: fmt.Sprintf("the same key as Secrets[%d] (or one whose 4-byte key id collides with it: draw another)", j)}
			}
		}
		b.keys = append(b.keys, k)
	}
	if c.RevocationStore != "" {
		if stores == nil {
			// No memory store is made here, as New makes one: revocations
			// kept in one process would let every other server, and this
			// one after a restart, open the revoked cookies.
			return nil, &ConfigError{Field: "RevocationStore", Reason: fmt.Sprintf("names store %q, but NewCookie was given no registry; "+
				"pass the registry that holds it, or leave RevocationStore empty (RevokeUser then cannot be used)", c.RevocationStore)}
		}
		st, err := stores.Get(c.RevocationStore)
		if err != nil {
			return nil, &ConfigError{Field: "RevocationStore", Reason: err.Error()}
		}
		calls := resolveStore(c, st) // Config.StoreTimeout (timeout.go)
		b.revocations = &calls
	}
	b.longestLife = cookieLongestLife(&c.Config)
	b.init(c, cookieEngine{b})
	return b, nil
}

// Close does nothing and returns nil: the cookie backend owns no store
// (the RevocationStore's store belongs to its registry, which closes it).
// It is there so that code written for New's backend, with its
// defer backend.Close(), still compiles after a switch to NewCookie.
func (b *CookieBackend) Close() error { return nil }

// checkCookie refuses the fields of cfg, as given (before defaults, so
// that a default is never mistaken for a choice), that cookie sessions
// cannot honour, each with what to do instead.
func (cfg *Config) checkCookie() error {
	const useNew = "or use New for server-side sessions"
	noRevocations := cfg.RevocationStore == ""
	for _, f := range []struct {
		field  string
		set    bool
		reason string
	}{
		{"Store", cfg.Store != "", "cookie sessions are kept in the cookie, not in a store; leave it empty " +
			"(RevocationStore names the store RevokeUser writes to), " + useNew},
		{"SessionIDBytes", cfg.SessionIDBytes != 0, "cookie sessions have no id; leave it 0, " + useNew},
		{"IDHeader", cfg.IDHeader != "", "cookie sessions have no id to carry in a header (the session is the cookie); leave it empty, " + useNew},
		{"IDHashKey", len(cfg.IDHashKey) != 0, "cookie sessions have no id to hash into a store key; leave it empty, " + useNew},
		{"PlainStoreKeys", cfg.PlainStoreKeys, "cookie sessions have no id to store under; leave it false, " + useNew},
		{"RotationInterval", cfg.RotationInterval != 0, "cookie sessions have no id to rotate (each write seals the cookie anew); leave it 0, " + useNew},
		{"RotationIntervalLimit", cfg.RotationIntervalLimit != 0, "cookie sessions have no id to rotate, so Session.SetRotationInterval is refused; leave it 0, " + useNew},
		{"RotationGrace", cfg.RotationGrace != 0, "cookie sessions have no id to rotate; leave it 0, " + useNew},
		{"Lock", cfg.Lock, "cookie sessions are in the cookie, there is no server state to lock: " +
			"concurrent requests each carry their own copy and the last response's cookie wins; leave it false, " + useNew},
		{"LockLease", cfg.LockLease != 0, "only Lock uses it, and cookie sessions have no lock; leave it 0, " + useNew},
		{"LockWait", cfg.LockWait != 0, "only Lock uses it, and cookie sessions have no lock; leave it 0, " + useNew},
		{"Prefix", cfg.Prefix != "" && noRevocations, "the cookie backend uses it only for the keys of RevokeUser's records, " +
			"and RevocationStore is not set; leave it empty, or set RevocationStore"},
		{"StoreTimeout", cfg.StoreTimeout != 0 && noRevocations, "it bounds store calls, and without RevocationStore " +
			"the cookie backend makes none; leave it 0, or set RevocationStore"},
	} {
		if f.set {
			return &ConfigError{Field: f.field, Reason: f.reason}
		}
	}
	return nil
}

// cookieLongestLife is the longest a cookie can open after it was sealed
// under cfg (defaults applied): MaxAgeLimit, the longest any session may
// ask for (and never below MaxAge), cut to the longest idle timeout, which
// every seal restarts, and to the longest absolute timeout, which started
// before the seal. A session's own timeout may be longer than Config's, up
// to its limit (which is never below Config's); with Config's off, a
// session's own can only shorten its life.
func cookieLongestLife(cfg *Config) time.Duration {
	d := max(cfg.MaxAgeLimit, cfg.MaxAge)
	if cfg.IdleTimeout > 0 {
		d = min(d, max(cfg.IdleTimeout, cfg.IdleTimeoutLimit))
	}
	if cfg.AbsoluteTimeout > 0 {
		d = min(d, max(cfg.AbsoluteTimeout, cfg.AbsoluteTimeoutLimit))
	}
	return d
}

// revocationMargin is how much longer than the longest cookie life a
// revocation is remembered: the cookie's expiry is read on one server's
// clock, the revocation's TTL counts on the store's, and stores round TTLs
// (Badger to the second). A minute covers any skew that NTP leaves.
const revocationMargin = time.Minute

// newCookieKey derives the key's id and its AES key from the secret with
// HKDF, so neither reveals the other and the secret itself is never used
// directly.
func newCookieKey(cookieName string, secret []byte) (cookieKey, error) {
	var k cookieKey
	id, err := hkdf.Key(sha256.New, secret, nil, "kvsession cookie key id", cookieKeyIDBytes)
	if err != nil {
		return k, err
	}
	enc, err := hkdf.Key(sha256.New, secret, nil, "kvsession cookie encryption", 32)
	if err != nil {
		return k, err
	}
	block, err := aes.NewCipher(enc)
	if err != nil {
		return k, err
	}
	if k.aead, err = cipher.NewGCM(block); err != nil {
		return k, err
	}
	copy(k.id[:], id)
	k.aad = append([]byte(cookieName), 0, cookieFormat)
	k.aad = append(k.aad, k.id[:]...)
	return k, nil
}

// MaxCookieHeaderBytes is what Config.MaxCookieSegments full cookies take in
// a Cookie header.
func (b *CookieBackend) MaxCookieHeaderBytes() int {
	return b.cfg.MaxCookieSegments * (MaxCookieLineBytes + 2)
}

// LoadFromRequest starts the session of one request from its Cookie header
// value (nil when it had none). The cookie is opened on the session's first
// use. Pass the session to StoreInResponse when the handler is done, then to
// Release.
func (b *CookieBackend) LoadFromRequest(ctx context.Context, cookieHeader []byte) *Session {
	return b.open(ctx, cookieHeader)
}

// StoreInResponse writes the session into the response's cookies:
//
//   - a session never used during the request: nothing;
//   - a session empty after the handler: the cookies the request carried
//     expired;
//   - a modified session, or any used session with ExtendOnAccess, or one
//     whose cookie was sealed with an older key: sealed anew with a fresh
//     expiry, split over as many cookies as it needs, and every cookie it
//     no longer uses expired;
//   - otherwise nothing.
//
// Every response of a request that used the session gets Vary: Cookie.
// A session too large for Config.MaxCookieSegments cookies is a
// *CookieTooLargeError and nothing is written.
func (b *CookieBackend) StoreInResponse(s *Session, sink ResponseSink) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.loaded {
		return nil
	}
	if s.loadErr != nil {
		return s.loadErr
	}
	// The session the cookie carried ends with this response when it was
	// emptied (Clear) or destroyed (Destroy forgets its creation time,
	// which every sealed cookie has): its cookie is expired or replaced.
	ended := s.exists && (s.empty() || s.created == 0)
	sealed, created := false, s.created == 0
	if s.empty() {
		b.expireCookies(s, sink)
	} else if s.modified || b.cfg.ExtendOnAccess || s.secret != 0 || b.extensionDue(s, s.nowNano()) {
		if err := b.seal(s, sink); err != nil {
			return err
		}
		sealed = true
	}
	b.vary(sink)
	if ended {
		b.cfg.Events.destroyed(s.ctx)
	}
	if sealed {
		if created {
			b.cfg.Events.created(s.ctx)
		}
		b.cfg.Events.saved(s.ctx)
	}
	return nil
}

// StoreInResponseStatus is StoreInResponse for a response of the given
// status; a 5xx drops the request's changes (see Backend): the client
// keeps the cookie it had.
func (b *CookieBackend) StoreInResponseStatus(s *Session, sink ResponseSink, status int) error {
	if !b.dropsChanges(status) {
		return b.StoreInResponse(s, sink)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return b.dropChanges(s, sink)
}

var errCookieUnopened = errors.New("kvsession: session cookie does not open")

// load opens the request's cookie. A cookie that does not open or has
// expired leaves the session fresh; only a failing revocation check is an
// error.
func (b *CookieBackend) load(s *Session) (LoadOutcome, error) {
	if len(s.cookie) == 0 {
		return LoadNone, nil
	}
	plain, key, ok := b.unseal(s)
	if !ok {
		s.c.cfg.Logger.Debug("kvsession: session cookie does not open; starting a fresh session", "error", errCookieUnopened)
		return LoadCorrupt, nil
	}
	bound := int64(binary.BigEndian.Uint64(plain))
	expires := int64(binary.BigEndian.Uint64(plain[8:]))
	now := s.nowNano()
	if now >= expires {
		return LoadExpired, nil
	}
	if !s.decodeOrForget(plain[cookieTimesBytes:]) {
		return LoadCorrupt, nil
	}
	if b.expired(s) || b.outlived(s, now) {
		s.forget()
		return LoadExpired, nil
	}
	s.bound = bound
	if s.user != "" && b.revocations != nil {
		revoked, err := b.revoked(s.ctx, s.user, bound)
		if err != nil {
			s.forget()
			return LoadError, err
		}
		if revoked {
			// Ended by RevokeUser, as a destroyed server-side session is
			// ended by its delete: no session under this cookie any more.
			s.forget()
			return LoadMiss, nil
		}
	}
	s.secret, s.exists = key, true
	return LoadHit, nil
}

// outlived reports whether a cookie has been open longer than this
// configuration lets any cookie live since it was sealed. A cookie sealed
// here never has: its sealed expiry comes first. One sealed under a longer
// MaxAgeLimit (or before a timeout was set) would otherwise outlive what
// RevokeUser covers.
func (b *CookieBackend) outlived(s *Session, now int64) bool {
	sealed := s.extended // every seal sets it
	if sealed == 0 {
		sealed = s.created // a record from before extensions were kept
	}
	return sealed != 0 && now-sealed >= int64(b.longestLife)
}

// unseal decodes and decrypts the cookie value into s.plain and returns
// the plaintext and the index of the key that opened it.
func (b *CookieBackend) unseal(s *Session) ([]byte, int, bool) {
	buf, err := strictBase64.AppendDecode(s.plain[:0], s.cookie)
	s.plain = buf
	if err != nil || len(buf) < cookieSealedExtra+cookieTimesBytes || buf[0] != cookieFormat {
		return nil, 0, false
	}
	for i := range b.keys {
		k := &b.keys[i]
		if string(k.id[:]) != string(buf[1:1+cookieKeyIDBytes]) {
			continue
		}
		nonce := buf[1+cookieKeyIDBytes : cookieSealHeader]
		sealed := buf[cookieSealHeader:]
		plain, err := k.aead.Open(sealed[:0], nonce, sealed, k.aad)
		if err != nil {
			return nil, 0, false
		}
		return plain, i, true
	}
	return nil, 0, false
}

// seal encrypts the session with the first key and sets it as the cookie.
func (b *CookieBackend) seal(s *Session, sink ResponseSink) error {
	now := s.nowNano()
	if s.created == 0 {
		s.created = now
	}
	s.extended = now
	// A session's own MaxAge (SetMaxAge) may come from a configuration
	// with a higher MaxAgeLimit: the limit in force caps it, so that no
	// cookie sealed here outlives what RevokeUser covers.
	ttl := min(b.ttl(s, now), b.cfg.MaxAgeLimit)
	pp, sp := getRecordBuf(), getRecordBuf()
	defer putRecordBuf(pp)
	defer putRecordBuf(sp)
	plain := binary.BigEndian.AppendUint64((*pp)[:0], uint64(s.bound))
	plain = binary.BigEndian.AppendUint64(plain, uint64(now+int64(ttl)))
	plain = s.encode(plain)
	*pp = plain
	if len(plain)-cookieTimesBytes > b.cfg.MaxRecordBytes {
		return ErrSessionTooLarge
	}
	k := &b.keys[0]
	sealed := append((*sp)[:0], cookieFormat)
	sealed = append(sealed, k.id[:]...)
	sealed = append(sealed, make([]byte, cookieNonceBytes)...)
	nonce := sealed[1+cookieKeyIDBytes:]
	if _, err := io.ReadFull(b.rand, nonce); err != nil {
		return fmt.Errorf("kvsession: drawing a cookie nonce: %w", err)
	}
	sealed = k.aead.Seal(sealed, nonce, plain, k.aad)
	*sp = sealed
	s.out = strictBase64.AppendEncode(s.out[:0], sealed)
	return b.setCookie(s, sink, s.out, b.lifetimeOf(s), ttl)
}

// RevokeUser makes every cookie session bound to user (Session.SetUser)
// until now invalid: the next request carrying one gets a fresh session,
// and re-sealing one (a write, a renewal) does not launder it, since the
// time of binding is kept across writes. Sessions bound afterwards are
// unaffected. It needs Config.RevocationStore.
//
// The revocation is stored for the longest a cookie can open after its
// seal (MaxAgeLimit, cut to IdleTimeout and AbsoluteTimeout when they are
// shorter) plus a minute's margin for clocks: remember-me cookies
// (Session.SetMaxAge) stay revoked to their last second. A request that
// loaded a session before the revocation and saves it after seals an
// expiry counted from when it loaded it, so its cookie is covered too.
// Lowering MaxAgeLimit or a timeout shortens later revocations, and the
// cookies they must cover along with them (see CookieBackend).
//
// The check compares the time of binding with the revocation's, both from
// the servers' clocks: a session bound, on a server whose clock runs ahead,
// within that lead before the revocation survives it.
func (b *CookieBackend) RevokeUser(ctx context.Context, user string) error {
	if b.revocations == nil {
		return errors.New("kvsession: RevokeUser needs Config.RevocationStore")
	}
	if user == "" {
		return errors.New("kvsession: RevokeUser of the empty user")
	}
	var notBefore [8]byte
	binary.BigEndian.PutUint64(notBefore[:], uint64(b.now().UnixNano()))
	// Every cookie bound before now was sealed at or before now (a request
	// in flight seals with the time it loaded its session, which the
	// session keeps), and opens at most longestLife after its seal: the
	// revocation need not outlive that.
	// MaxAge alone would not do: SetMaxAge lengthens cookies past it.
	if err := b.revocations.Set(ctx, b.revocationKey(user), notBefore[:], b.longestLife+revocationMargin); err != nil {
		return b.cfg.Events.storeError(ctx, "revoke", err)
	}
	b.cfg.Events.loggedOutEverywhere(ctx, user, -1)
	return nil
}

// revoked reports whether a session bound to user at bound was revoked.
func (b *CookieBackend) revoked(ctx context.Context, user string, bound int64) (bool, error) {
	rec, err := b.revocations.Get(ctx, b.revocationKey(user))
	if err != nil {
		if isNotFound(err) {
			return false, nil
		}
		return false, b.cfg.Events.storeError(ctx, "revocation check", err)
	}
	if len(rec) != 8 {
		// Someone else's data under our key: refusing the session is the
		// safe reading.
		b.cfg.Logger.Warn("kvsession: unreadable revocation record; refusing the session", "bytes", len(rec))
		return true, nil
	}
	return bound <= int64(binary.BigEndian.Uint64(rec)), nil
}

func (b *CookieBackend) revocationKey(user string) string {
	return b.cfg.Prefix + "revoked:" + user
}

// cookieEngine is the CookieBackend side of a Session.
type cookieEngine struct{ b *CookieBackend }

func (e cookieEngine) load(s *Session) (LoadOutcome, error) { return e.b.load(s) }

// discard has nothing to delete: the response expires the cookies.
func (cookieEngine) discard(*Session) error { return nil }

// renewID has no id to change: the session is sealed anew (fresh nonce and
// expiry) when the response is written.
func (cookieEngine) renewID(*Session) error { return nil }

func (cookieEngine) id(*Session) string { return "" }

func (e cookieEngine) renews(s *Session, now int64) bool { return e.b.renews(s, now) }
