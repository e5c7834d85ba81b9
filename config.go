package kvsession

import (
	"cmp"
	"fmt"
	"log/slog"
	"regexp"
	"strings"
	"time"

	"github.com/kvsession/kvsession/internal/sessioncookie"
)

// SameSite is the cookie's SameSite attribute. The zero value is Lax.
type SameSite uint8

const (
	SameSiteLax SameSite = iota
	SameSiteStrict
	SameSiteNone
)

func (s SameSite) String() string {
	switch s {
	case SameSiteLax:
		return "Lax"
	case SameSiteStrict:
		return "Strict"
	case SameSiteNone:
		return "None"
	}
	return fmt.Sprintf("SameSite(%d)", uint8(s))
}

// Defaults applied to zero-valued Config fields.
const (
	DefaultCookieName     = "session"
	DefaultMaxAge         = 14 * 24 * time.Hour
	DefaultPath           = "/"
	DefaultSessionIDBytes = 32
	DefaultStore          = "sessions"
	DefaultMaxRecordBytes = 1 << 20

	DefaultRotationGrace = 15 * time.Second
	DefaultLockLease     = 30 * time.Second
	DefaultLockWait      = 5 * time.Second

	// DefaultMaxCookieSegments lets a cookie session take four browser
	// cookies: about 16 KB of cookie, 11.9 KB of encoded session.
	DefaultMaxCookieSegments = 4
)

// MaxMaxAge is the longest MaxAge accepted: browsers cap cookie lifetimes
// at 400 days (RFC 6265bis), so a longer one would only outlive its cookie.
const MaxMaxAge = 400 * 24 * time.Hour

// SecretBytes is the length of each of Config.Secrets: a 256-bit key.
const SecretBytes = 32

// Browsers drop cookies whose attributes are longer than 1024 bytes, and
// every byte of name, Path and Domain is repeated in each cookie segment.
const (
	maxCookieNameBytes = 256
	maxAttributeBytes  = 1024
)

// MinSessionIDBytes is the smallest SessionIDBytes accepted: 128 bits, the
// least OWASP considers safe against guessing.
const MinSessionIDBytes = 16

// maxSessionIDBytes keeps the id cookie far below browsers' 4 KB limit.
const maxSessionIDBytes = 256

// Config configures a Backend. The zero value is valid and secure: every
// zero field takes the documented default, and the flags are named so that
// their zero value is the safe choice (HttpOnly on, SameSite Lax).
type Config struct {
	// CookieName is the session cookie's name (segments of a split cookie
	// add "-1", "-2", ...). Default "session".
	CookieName string

	// MaxAge is how long a session lives after it was last saved (or, with
	// ExtendOnAccess, last used): the store TTL and the cookie's Max-Age.
	// Default 14 days; at least one second, at most 400 days.
	MaxAge time.Duration

	// Path and Domain scope the cookie. Path defaults to "/"; Domain is
	// empty (host-only cookie) by default.
	Path   string
	Domain string

	// Secure restricts the cookie to HTTPS. Off by default so the demo works
	// on plain http://localhost; turn it on in production.
	Secure bool

	// DisableHTTPOnly lets page scripts read the session cookie. Leave it
	// off: the HttpOnly attribute is what keeps an XSS bug from stealing
	// sessions.
	DisableHTTPOnly bool

	// SameSite defaults to Lax. None requires Secure.
	SameSite SameSite

	// SessionIDBytes is how many crypto-random bytes make a session id.
	// Default 32 (256 bits); below 16 is an error. Server-side sessions
	// only: NewCookie refuses it, as it refuses every field marked so.
	SessionIDBytes int

	// IDHeader names a request header, such as "X-Session-Id", that
	// carries the session id for clients without cookies (mobile apps,
	// CLIs). Empty, the default, turns it off. Server-side sessions only.
	//
	// A request that carries the header, with any value ("new" for a
	// client without an id yet, or even empty), is in header mode: its id
	// is read from that header alone, its cookies are ignored for this
	// session, and it is checked as a cookie's is: a malformed, unknown,
	// tampered or expired id starts a fresh session under a fresh id the
	// server draws, never the client's. The response never sets the
	// session cookie; it carries the header instead, with the id when the
	// client does not have it yet (a new session saved, RenewID, a
	// rotation, a rotated-out id led to the current one) and empty when
	// the client's id leads to no session any more (Destroy, a session
	// emptied, an unknown or expired id): the client forgets it then. A
	// response without the header leaves the client's id as it is. A
	// request without the header is served by cookie exactly as when
	// IDHeader is empty.
	//
	// Why it is built so: it is opt-in, because an id that a client's own
	// code reads has none of HttpOnly's protection against script; the id
	// is read from the header only, never from the query string, as ids
	// in URLs leak through access logs, Referer and history; and a cookie
	// request never gets its id in a response header, where page script
	// could read what HttpOnly hides. Every response that used the session
	// varies on the header (as on Cookie: which one carries the id depends
	// on the request), and one carrying an id gets Cache-Control:
	// no-cache="<IDHeader>", so that shared caches neither mix users nor
	// replay an id.
	//
	// It must be a valid header name (an RFC 9110 token), and none that
	// HTTP or cookies give a meaning of their own: Cookie, Set-Cookie,
	// Authorization, Vary, Cache-Control, the hop-by-hop and framing
	// fields. Nested middlewares need different IDHeader values, as they
	// need different CookieName values.
	IDHeader string

	// ExtendOnAccess refreshes a session's store TTL and its cookie's
	// Max-Age on every request that reads it, not only when it changes.
	// Refreshing does not re-encode the session.
	ExtendOnAccess bool

	// BrowserSession sends the cookie without Max-Age or Expires, so the
	// browser forgets it when it closes. The server still expires the data
	// after MaxAge.
	BrowserSession bool

	// SaveOnServerError saves the session even when the handler answered
	// with a 5xx status. By default such a response saves nothing and
	// sets no cookie, so that a request that failed half way does not
	// keep half its changes, and the client keeps the cookie it had. It
	// applies where the adapter passes the status
	// (Backend.StoreInResponseStatus, as kvfasthttp, kvhttp and kvfiber
	// do). What took effect during the request stays: a Destroy on the
	// server backend has already deleted the record.
	SaveOnServerError bool

	// Store names the store in the registry passed to New. Default
	// "sessions". Server-side sessions only.
	Store string

	// Prefix is prepended to every session id to form the store key, so
	// two session configurations can share one store. The cookie backend
	// prepends it to its revocations' keys, and refuses it without a
	// RevocationStore.
	Prefix string

	// Exclude lists regular expressions; a request whose path matches any
	// of them (anywhere, unless the pattern is anchored) gets no session.
	Exclude []string

	// MaxRecordBytes caps the encoded size of one session. A larger record
	// in the store is treated as corrupt (the request starts a fresh
	// session); saving a larger session fails with ErrSessionTooLarge.
	// Default 1 MiB.
	MaxRecordBytes int

	// Codec encodes session values. Default Msgpack.
	Codec Codec

	// Logger receives warnings (corrupt records) and the errors the
	// default error handlers report. Default slog.Default().
	Logger *slog.Logger

	// MaxCookieSegments is how many browser cookies the session cookie may
	// be split into. A value whose Set-Cookie line (name, value and
	// attributes) would pass 4096 bytes, what browsers reliably keep, is
	// cut into segments named <CookieName>-0, <CookieName>-1, ..., each
	// saying its place and the count, so that a missing or extra one is
	// noticed and the request starts a fresh session. With the cookie
	// backend a session that would need more fails to save with
	// ErrSessionTooLarge. Default 4: about 16 KB of cookie, 11.9 KB of
	// encoded session. At most 32. Every segment is up to 4 KB of request
	// header: HTTP adapters check that their server reads headers that
	// large.
	MaxCookieSegments int

	// Secrets are the cookie backend's keys, each SecretBytes random bytes.
	// The first encrypts; all of them decrypt, so a new key is rotated in
	// by putting it first and an old one retired by removing it once the
	// cookies it sealed have expired. The server-side backend ignores them.
	Secrets [][]byte

	// RevocationStore names a store in the registry where the cookie
	// backend keeps per-user revocations (CookieBackend.RevokeUser). Empty:
	// no revocation, and no store call per request.
	RevocationStore string

	// IdleTimeout ends a session unused for that long (0: off). Use
	// refreshes it, but at most once per ExtensionDelay, so that read-only
	// requests do not each cost a store write. Cannot be combined with
	// ExtendOnAccess, which it generalises.
	IdleTimeout time.Duration

	// ExtensionDelay is how long after its last save or extension a
	// session's idle deadline is pushed back again. The trade-off: a
	// session may end up to ExtensionDelay before IdleTimeout of true
	// inactivity, and a session used continuously costs one write per
	// ExtensionDelay. Default IdleTimeout/10; 0 < ExtensionDelay <
	// IdleTimeout. A session with an idle timeout of its own
	// (Session.SetIdleTimeout) gets a delay in the same proportion to it.
	ExtensionDelay time.Duration

	// AbsoluteTimeout ends a session that long after it was created,
	// however active (0: off).
	AbsoluteTimeout time.Duration

	// RotationInterval rotates a server-side session's id that long after it
	// was created or last rotated (0: off), keeping its data. The old id
	// keeps leading to the session for RotationGrace, so requests already
	// in flight with the old cookie still find it. Server-side sessions
	// only.
	RotationInterval time.Duration

	// RotationGrace is how long a rotated-out id still works. Default 15
	// seconds; at most a minute, since a stolen old id works that long.
	// Server-side sessions only.
	RotationGrace time.Duration

	// MaxAgeLimit is the longest lifetime Session.SetMaxAge may give one
	// session ("remember me"). Default MaxAge: no session outlives the
	// configured one unless this is raised.
	MaxAgeLimit time.Duration

	// IdleTimeoutLimit, AbsoluteTimeoutLimit and RotationIntervalLimit are
	// the longest values Session.SetIdleTimeout, SetAbsoluteTimeout and
	// SetRotationInterval may give one session. Each defaults to its
	// Config value (IdleTimeout, ...), so that a session may tighten its
	// timeouts but not loosen them unless the limit is raised; with that
	// value off (0), to MaxAgeLimit, since then any value is stricter
	// than Config's, and one longer than the session's lifetime would
	// change nothing. Each must be at least its Config value and a
	// second, and at most 400 days. RotationIntervalLimit is for
	// server-side sessions only.
	IdleTimeoutLimit      time.Duration
	AbsoluteTimeoutLimit  time.Duration
	RotationIntervalLimit time.Duration

	// Partitioned adds the Partitioned attribute (CHIPS): in a third-party
	// context the cookie is kept per top-level site. Requires Secure.
	Partitioned bool

	// CookieExpires adds an Expires date beside Max-Age to the session
	// cookie, for browsers from before Max-Age (Internet Explorer 11 and
	// older). Off by default: every current browser reads Max-Age and
	// ignores Expires where both are given, and Max-Age counts from when
	// the browser got the cookie, so a client whose clock is wrong keeps
	// it as long as meant, where an Expires date would end it early or
	// late. Off saves about 40 bytes on each Set-Cookie line. A cookie
	// being deleted carries both either way.
	CookieExpires bool

	// IDHashKey, if set (16 to 64 bytes), keys the hash that turns a
	// session id into its store key. Without it the hash is plain SHA-256,
	// which already makes a store dump useless for forging cookies: ids
	// are 256 random bits. Changing it orphans every stored session.
	// Server-side sessions only.
	IDHashKey []byte

	// PlainStoreKeys stores sessions under their ids themselves rather than
	// a hash of them, as kvsession did before. Only for stores whose keys
	// must stay readable; a leaked dump then yields working cookies.
	// Server-side sessions only.
	PlainStoreKeys bool

	// Lock holds a per-session lock from a request's first use of its
	// session until its save, so that concurrent requests on one session
	// never lose each other's writes. Requests on one session then run
	// their session work one at a time; one that only reads can opt out
	// with Session.SetReadOnly before first use. Server-side sessions only.
	Lock bool

	// LockLease bounds how long one request may hold a session's lock: a
	// crashed or stuck holder loses it after that. Make it longer than
	// your longest request. Default 30 seconds. Server-side sessions only.
	LockLease time.Duration

	// LockWait bounds how long a request waits for a session's lock before
	// its session fails with ErrLockTimeout. Default 5 seconds.
	// Server-side sessions only.
	LockWait time.Duration

	// StoreTimeout bounds each store call (load, save, renewal, delete,
	// the store's session lock, the user index, revocation lookups): one
	// that takes longer fails with an error wrapping
	// context.DeadlineExceeded, which the middleware hands to its error
	// handler, so that a hung store fails requests instead of holding them
	// forever. The store must honour its context (the shipped ones do).
	// Default 0: no timeout, and no cost. The memory and Badger stores
	// never wait on a network, and a networked store bounds its own calls
	// (the Redis store fails each within its Options.CallTimeout, two
	// seconds by default, even when the request's context never ends); a
	// default here would also fail requests to a store that is merely
	// slow for a moment. Set it for a store that can hang, above
	// the store's worst healthy latency. The cookie backend's only store
	// calls are revocation lookups: it refuses StoreTimeout without a
	// RevocationStore. Scans and purges of the whole store (store.Scanner,
	// store.Purger) are not bounded by it: they take as long as the store
	// is large; give them a context with a deadline of their own.
	StoreTimeout time.Duration

	// Events are hooks the backend calls as sessions are created, loaded,
	// saved, renewed and destroyed, and as store calls fail or take time
	// (see Events; the kvprom module turns them into metrics). The zero
	// value calls nothing, and costs nothing.
	Events Events
}

// ConfigError reports an invalid Config field.
type ConfigError struct {
	Field  string
	Reason string
}

func (e *ConfigError) Error() string {
	return "kvsession: Config." + e.Field + ": " + e.Reason
}

// withDefaults returns a copy of c with every zero field set to its default.
func (c Config) withDefaults() Config {
	if c.CookieName == "" {
		c.CookieName = DefaultCookieName
	}
	if c.MaxAge == 0 {
		c.MaxAge = DefaultMaxAge
	}
	if c.Path == "" {
		c.Path = DefaultPath
	}
	if c.SessionIDBytes == 0 {
		c.SessionIDBytes = DefaultSessionIDBytes
	}
	if c.Store == "" {
		c.Store = DefaultStore
	}
	if c.MaxRecordBytes == 0 {
		c.MaxRecordBytes = DefaultMaxRecordBytes
	}
	if c.Codec == nil {
		c.Codec = Msgpack{}
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.MaxCookieSegments == 0 {
		c.MaxCookieSegments = DefaultMaxCookieSegments
	}
	if c.ExtensionDelay == 0 && c.IdleTimeout > 0 {
		c.ExtensionDelay = c.IdleTimeout / 10
	}
	if c.RotationGrace == 0 {
		c.RotationGrace = DefaultRotationGrace
	}
	if c.MaxAgeLimit == 0 {
		c.MaxAgeLimit = c.MaxAge
	}
	// After MaxAgeLimit, which they fall back to.
	for _, l := range c.timeoutLimits() {
		if *l.limit == 0 {
			*l.limit = min(cmp.Or(l.value, c.MaxAgeLimit), MaxMaxAge)
		}
	}
	if c.LockLease == 0 {
		c.LockLease = DefaultLockLease
	}
	if c.LockWait == 0 {
		c.LockWait = DefaultLockWait
	}
	return c
}

// Validate reports the first invalid field, as a *ConfigError naming it.
// Zero fields are valid: they take their defaults.
func (c Config) Validate() error {
	_, err := c.compile()
	return err
}

// compiled is a validated Config with its defaults applied and its patterns
// compiled.
type compiled struct {
	Config
	exclude []*regexp.Regexp
}

func (c Config) compile() (*compiled, error) {
	c = c.withDefaults()
	bad := func(field, format string, args ...any) (*compiled, error) {
		return nil, &ConfigError{Field: field, Reason: fmt.Sprintf(format, args...)}
	}
	if !validToken(c.CookieName) {
		return bad("CookieName", "%q is not a valid cookie name (RFC 6265 token)", c.CookieName)
	}
	if len(c.CookieName) > maxCookieNameBytes {
		return bad("CookieName", "%d bytes is longer than %d", len(c.CookieName), maxCookieNameBytes)
	}
	if len(c.Path) > maxAttributeBytes {
		return bad("Path", "%d bytes is longer than %d (browsers drop such cookies)", len(c.Path), maxAttributeBytes)
	}
	if len(c.Domain) > maxAttributeBytes {
		return bad("Domain", "%d bytes is longer than %d (browsers drop such cookies)", len(c.Domain), maxAttributeBytes)
	}
	if c.MaxAge < time.Second {
		return bad("MaxAge", "%v is below one second (cookies count Max-Age in seconds)", c.MaxAge)
	}
	if c.MaxAge > MaxMaxAge {
		return bad("MaxAge", "%v is above %v, the longest cookie lifetime browsers keep", c.MaxAge, MaxMaxAge)
	}
	if !validAttribute(c.Path) || c.Path[0] != '/' {
		return bad("Path", "%q must start with / and contain no ; or control characters", c.Path)
	}
	if !validAttribute(c.Domain) || strings.ContainsRune(c.Domain, ' ') {
		return bad("Domain", "%q contains ; a space or a control character", c.Domain)
	}
	switch c.SameSite {
	case SameSiteLax, SameSiteStrict:
	case SameSiteNone:
		if !c.Secure {
			return bad("SameSite", "None requires Secure: browsers reject SameSite=None cookies without it")
		}
	default:
		return bad("SameSite", "unknown value %d", uint8(c.SameSite))
	}
	if c.SessionIDBytes < MinSessionIDBytes {
		return bad("SessionIDBytes", "%d is below the minimum of %d (128 bits)", c.SessionIDBytes, MinSessionIDBytes)
	}
	if c.SessionIDBytes > maxSessionIDBytes {
		return bad("SessionIDBytes", "%d is above the maximum of %d", c.SessionIDBytes, maxSessionIDBytes)
	}
	if c.MaxRecordBytes < 0 {
		return bad("MaxRecordBytes", "%d is negative", c.MaxRecordBytes)
	}
	if c.MaxCookieSegments < 1 || c.MaxCookieSegments > sessioncookie.MaxSegments {
		return bad("MaxCookieSegments", "%d is outside 1 to %d", c.MaxCookieSegments, sessioncookie.MaxSegments)
	}
	if err := checkIDHeader(c.IDHeader); err != nil {
		return nil, err
	}
	if c.StoreTimeout < 0 {
		return bad("StoreTimeout", "%v is negative; use 0 for no timeout", c.StoreTimeout)
	}
	if err := c.checkLifecycle(); err != nil {
		return nil, err
	}
	if err := c.checkCookiePrefix(); err != nil {
		return nil, err
	}
	if n := len(c.IDHashKey); n != 0 && (n < 16 || n > 64) {
		return bad("IDHashKey", "%d bytes; use 16 to 64 random bytes", n)
	}
	for i, k := range c.Secrets {
		if len(k) != SecretBytes {
			return bad(fmt.Sprintf("Secrets[%d]", i), "%d bytes; each secret must be exactly %d random bytes (AES-256-GCM)", len(k), SecretBytes)
		}
	}
	out := &compiled{Config: c}
	for i, p := range c.Exclude {
		re, err := regexp.Compile(p)
		if err != nil {
			return bad(fmt.Sprintf("Exclude[%d]", i), "%v", err)
		}
		out.exclude = append(out.exclude, re)
	}
	return out, nil
}

// validAttribute reports whether v may stand as a cookie attribute value:
// RFC 6265 forbids control characters and ';' there.
func validAttribute(v string) bool {
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < 0x20 || c == 0x7f || c == ';' {
			return false
		}
	}
	return true
}

// validToken reports whether name is a token, as cookie names (RFC 6265)
// and header names (RFC 9110) must be: visible ASCII without separators.
func validToken(name string) bool {
	if name == "" {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte("()<>@,;:\\\"/[]?={}", c) >= 0 {
			return false
		}
	}
	return true
}

// checkLifecycle validates the timeouts against each other.
func (c *Config) checkLifecycle() error {
	bad := func(field, format string, args ...any) error {
		return &ConfigError{Field: field, Reason: fmt.Sprintf(format, args...)}
	}
	for _, d := range []struct {
		field string
		v     time.Duration
	}{{"IdleTimeout", c.IdleTimeout}, {"AbsoluteTimeout", c.AbsoluteTimeout}, {"RotationInterval", c.RotationInterval}} {
		if d.v < 0 || (d.v > 0 && d.v < time.Second) {
			return bad(d.field, "%v: use 0 (off) or at least a second", d.v)
		}
	}
	if c.IdleTimeout > 0 {
		if c.ExtendOnAccess {
			return bad("ExtendOnAccess", "cannot be combined with IdleTimeout, which extends sessions on use every ExtensionDelay")
		}
		if c.ExtensionDelay <= 0 || c.ExtensionDelay >= c.IdleTimeout {
			return bad("ExtensionDelay", "%v must be above 0 and below IdleTimeout (%v)", c.ExtensionDelay, c.IdleTimeout)
		}
	} else if c.ExtensionDelay != 0 {
		return bad("ExtensionDelay", "is set but IdleTimeout is not")
	}
	if c.RotationGrace < 0 || c.RotationGrace > time.Minute {
		return bad("RotationGrace", "%v is outside 0 to 1m", c.RotationGrace)
	}
	if c.LockLease < 0 || c.LockWait < 0 {
		return bad("LockLease", "LockLease (%v) and LockWait (%v) must not be negative", c.LockLease, c.LockWait)
	}
	if c.MaxAgeLimit < c.MaxAge || c.MaxAgeLimit > MaxMaxAge {
		return bad("MaxAgeLimit", "%v must be between MaxAge (%v) and %v", c.MaxAgeLimit, c.MaxAge, MaxMaxAge)
	}
	for _, l := range c.timeoutLimits() {
		// A Config value above MaxMaxAge asks no more than MaxMaxAge of
		// the limit: no session lives longer than that anyway.
		floor := min(max(l.value, time.Second), MaxMaxAge)
		if *l.limit < floor || *l.limit > MaxMaxAge {
			return bad(l.field, "%v must be between %s (%v, or a second if it is off) and %v", *l.limit, l.of, l.value, MaxMaxAge)
		}
	}
	return nil
}

// timeoutLimit ties a per-session timeout's limit to the Config value it
// bounds.
type timeoutLimit struct {
	field, of string // the limit's field name, and its Config value's
	limit     *time.Duration
	value     time.Duration
}

func (c *Config) timeoutLimits() [3]timeoutLimit {
	return [3]timeoutLimit{
		{"IdleTimeoutLimit", "IdleTimeout", &c.IdleTimeoutLimit, c.IdleTimeout},
		{"AbsoluteTimeoutLimit", "AbsoluteTimeout", &c.AbsoluteTimeoutLimit, c.AbsoluteTimeout},
		{"RotationIntervalLimit", "RotationInterval", &c.RotationIntervalLimit, c.RotationInterval},
	}
}

// checkCookiePrefix enforces what browsers require of cookies whose names
// start with __Host- or __Secure- (RFC 6265bis §4.1.3): they would drop the
// cookie otherwise, and every session would silently start fresh.
func (c *Config) checkCookiePrefix() error {
	bad := func(field, format string, args ...any) error {
		return &ConfigError{Field: field, Reason: fmt.Sprintf(format, args...)}
	}
	lower := strings.ToLower(c.CookieName)
	switch {
	case strings.HasPrefix(lower, "__host-"):
		if !c.Secure {
			return bad("Secure", "a %q cookie requires Secure", c.CookieName)
		}
		if c.Path != "/" {
			return bad("Path", "a %q cookie requires Path \"/\", not %q", c.CookieName, c.Path)
		}
		if c.Domain != "" {
			return bad("Domain", "a %q cookie must not have a Domain (%q)", c.CookieName, c.Domain)
		}
	case strings.HasPrefix(lower, "__secure-"):
		if !c.Secure {
			return bad("Secure", "a %q cookie requires Secure", c.CookieName)
		}
	}
	if c.Partitioned && !c.Secure {
		return bad("Partitioned", "requires Secure: browsers reject Partitioned cookies without it")
	}
	return nil
}
