// Package store defines the key-value contract kvsession keeps sessions in,
// and a registry that hands out stores by name.
//
// The contract is small. Every store implements Store: values under keys
// (Get, Set, Swap, Delete) and sets of members (AddMember, RemoveMember,
// Members), each with an expiry, and Close. Swap and the sets are what
// every end of a session relies on: Swap keeps a request from writing back
// a session another request ended, and a set per user lets "log out
// everywhere" reach every one of a user's sessions.
//
// Beyond it a store may have optional abilities, each one kvsession uses
// when it is there:
//
//   - Appender (GetAppend): a load reads into the session's own buffer,
//     saving an allocation per request;
//   - Locker (TryLock, Unlock): Config.Lock takes each session's lock in
//     the store, across processes, rather than in this process;
//   - Scanner (Scan): operators can count, list and end sessions without
//     knowing their ids (ServerBackend.Sessions and the admin command);
//   - Purger (PurgeExpired): a store that keeps expired entries until
//     something removes them can be told to remove them now.
//
// and report Traits (InProcess, BorrowsKeys) through TraitsReporter: facts
// that let kvsession skip a precaution. Resolve finds all of these once,
// and is the one place that looks: it turns a store into Calls, one func
// per call, which kvsession and any wrapper of a store go through.
//
// The conformance suite in store/storetest checks the contract, each
// ability a store has, and the traits it reports: a store proves itself
// by passing it.
//
// Every store shipped with kvsession lives in its own sub-package, so that
// a program linking the memory store does not link Badger.
package store

import (
	"context"
	"errors"
	"time"

	"github.com/kvsession/kvsession/store/internal/resolving"
)

// ErrNotFound is returned by Get and GetAppend when the key does not
// exist or has expired. It is the only way a store reports a missing key;
// compare with errors.Is.
var ErrNotFound = errors.New("store: key not found")

// ErrClosed is returned by every method called after Close.
var ErrClosed = errors.New("store: closed")

// ErrInvalidTTL is returned when a negative TTL is given, or a lease that
// is not positive to Locker.TryLock. A zero TTL means the entry never
// expires.
var ErrInvalidTTL = errors.New("store: negative TTL")

// ErrEmptyKey is returned when a method is called with an empty key.
var ErrEmptyKey = errors.New("store: empty key")

// Store is a context-aware key-value store with per-entry expiry.
//
// Implementations must be safe for concurrent use. Values are copied in and
// out: a caller may reuse the slice it passed to Set as soon as Set returns,
// and may modify the slice Get returned without affecting the store.
type Store interface {
	// Get returns a copy of the value stored under key, or ErrNotFound if
	// there is none or it has expired.
	Get(ctx context.Context, key string) ([]byte, error)

	// Set stores value under key, replacing any previous value and its
	// expiry. A ttl of zero means no expiry; a negative ttl is ErrInvalidTTL.
	Set(ctx context.Context, key string, value []byte, ttl time.Duration) error

	// Swap stores value under key with ttl, as Set does, but only if the
	// value stored under key is still old, byte for byte; a nil old means
	// "only if key holds nothing" (missing or expired), and a nil value
	// deletes key instead of storing. It reports whether it wrote. The
	// comparison and the write are one atomic step with respect to every
	// other call on key, in every process that shares the store: this is
	// what keeps a request that loaded a session from writing it back
	// after another request ended it (see the README's guarantees).
	Swap(ctx context.Context, key string, old, value []byte, ttl time.Duration) (swapped bool, err error)

	// Delete removes key. Deleting a missing key is not an error.
	Delete(ctx context.Context, key string) error

	// AddMember adds member to the set named set, to be listed by Members
	// until at least ttl from now (0: for as long as it is not removed).
	// Adding a member again extends its expiry to the later of the two;
	// it never shortens it. Sets are a namespace of their own: a set may
	// share its name with a key without either seeing the other. Adding
	// one member must cost the same however many the set holds: a set is
	// a user's sessions, and a user can have very many.
	AddMember(ctx context.Context, set, member string, ttl time.Duration) error

	// An empty set or member is ErrEmptyKey, a negative ttl ErrInvalidTTL.
	//
	// RemoveMember removes member from set. Removing a member that is not
	// there is not an error.
	RemoveMember(ctx context.Context, set, member string) error

	// Members returns every member of set whose expiry has not passed, in
	// no particular order; an empty or missing set gives none and no
	// error. Expired members are never listed, and the store frees them by
	// itself (a sweep, compaction, a key's own TTL): a set whose members
	// have all expired does not stay behind for good.
	Members(ctx context.Context, set string) ([]string, error)

	// Close releases the store's resources and stops its background work.
	// Calls after Close return ErrClosed.
	Close() error
}

// Appender is implemented by stores that can copy a value into a buffer the
// caller supplies. GetAppend appends the value under key to dst and returns
// the extended slice, or ErrNotFound. The backend reuses one buffer per
// pooled session this way, saving an allocation on every load.
type Appender interface {
	GetAppend(ctx context.Context, key string, dst []byte) ([]byte, error)
}

// Locker is implemented by stores that several processes share and that
// can hold a lease-bounded lock on a key themselves, as Redis can with
// SET NX PX. With the backend's session lock on, such a store's lock is
// used so that it holds across processes; otherwise the lock is taken in
// process. Locks must not collide with values: keep them under keys of
// their own (a suffix or a separate keyspace).
type Locker interface {
	// TryLock takes the lock on key for lease if nobody holds it, or its
	// holder's lease has run out, and returns a token for Unlock that no
	// earlier holder of the lock was given. ok is false when another
	// holder has it. A lease that is not positive is ErrInvalidTTL: a
	// lock without one would outlive a holder that crashed.
	TryLock(ctx context.Context, key string, lease time.Duration) (token string, ok bool, err error)
	// Unlock releases the lock if token still holds it; otherwise (a
	// wrong token, a lease that ran out) it does nothing.
	Unlock(ctx context.Context, key, token string) error
}

// Scanner is implemented by stores that can walk their keys, as Badger
// can by key range, Redis by SCAN (never KEYS: a scan must not stall the
// server) and the memory store by walking its map. Operators need it to
// count, list and end sessions whose ids they do not know.
type Scanner interface {
	// Scan calls fn with each live key that starts with prefix ("" for
	// every key), and its value, in no particular order, until fn returns
	// an error, which Scan returns, or every key has been visited. key
	// and value are valid only during the call: copy what you keep. fn
	// may call the store, Delete of key included.
	//
	// A key present and live for the whole scan is visited at least once
	// (a Redis SCAN can return a key twice); one written, deleted or
	// expiring during the scan may or may not be. Expired keys are never
	// visited, and set names are not keys: sets are never visited. A
	// canceled ctx stops the scan with ctx's error.
	Scan(ctx context.Context, prefix string, fn func(key string, value []byte) error) error
}

// Purger is implemented by stores that keep expired entries (values and
// set members) until something removes them, as the memory store's
// periodic sweep does, and that can remove them on demand. PurgeExpired
// removes them now, all of them that have expired when it starts, and
// returns how many it removed, or -1 when the store cannot tell. Stores
// whose entries vanish when they expire, as Redis keys do, need not have
// it; nor do stores that cannot remove them now at a reasonable cost, as
// Badger, which drops them in compaction, cannot: a Purger that removed
// nothing would be a lie.
type Purger interface {
	PurgeExpired(ctx context.Context) (removed int, err error)
}

// Traits are facts about a store that change how kvsession may use it
// without changing what it can do. A store reports them through
// TraitsReporter; a store without that method has the zero Traits, which
// is always safe: every field is a permission a store must earn.
type Traits struct {
	// InProcess reports that the store's entries never leave the memory
	// of the process using it: no disk, no network, no snapshot, as with
	// the memory store. kvsession hashes session ids into store keys so
	// that a dump, backup or replica of the store yields no working
	// cookie; a store with none of those gains nothing from the hash, so
	// kvsession skips it unless Config.IDHashKey is set. A store that
	// persists or shares its entries must not report it. A wrapper around
	// the memory store that does either must not embed *memstore.Store,
	// whose Traits it would inherit: embed the store.Store interface, or
	// report Traits of its own.
	InProcess bool

	// BorrowsKeys reports that the store keeps no reference to a key
	// string (a set's name or member included) once the call it was
	// passed to has returned: whatever it stores, it copies. kvsession
	// then builds each request's store key in a buffer the session
	// reuses, sparing an allocation per request. A store that keeps keys,
	// as a map indexed by the caller's string does, or that may still use
	// one after returning (a write queued past a timeout) must not report
	// it. Nor may a wrapper that does either around a store that reports
	// it: such a wrapper embeds the store.Store interface, not the store's
	// type, or reports Traits of its own.
	BorrowsKeys bool
}

// TraitsReporter is implemented by stores that have Traits to report.
// Traits must return the same value every time: kvsession asks once.
type TraitsReporter interface {
	Traits() Traits
}

// Calls is a store resolved into the calls kvsession makes on it, one
// func per method, so that a wrapper (Config.StoreTimeout, the
// fault-injection store) wraps each call once, field by field, and keeps
// exactly the abilities of the store it wraps: a nil func stays nil.
// Resolve makes one.
type Calls struct {
	Get          func(ctx context.Context, key string) ([]byte, error)
	Set          func(ctx context.Context, key string, value []byte, ttl time.Duration) error
	Swap         func(ctx context.Context, key string, old, value []byte, ttl time.Duration) (bool, error)
	Delete       func(ctx context.Context, key string) error
	AddMember    func(ctx context.Context, set, member string, ttl time.Duration) error
	RemoveMember func(ctx context.Context, set, member string) error
	Members      func(ctx context.Context, set string) ([]string, error)

	// GetAppend is Appender.GetAppend; nil when the store is no Appender.
	GetAppend func(ctx context.Context, key string, dst []byte) ([]byte, error)

	// TryLock and Unlock are the store's Locker; both nil when it is none.
	TryLock func(ctx context.Context, key string, lease time.Duration) (token string, ok bool, err error)
	Unlock  func(ctx context.Context, key, token string) error

	// Scan is Scanner.Scan; nil when the store is no Scanner.
	Scan func(ctx context.Context, prefix string, fn func(key string, value []byte) error) error

	// PurgeExpired is Purger.PurgeExpired; nil when the store is no Purger.
	PurgeExpired func(ctx context.Context) (removed int, err error)

	// Traits are what the store reports through TraitsReporter.
	Traits Traits
}

// selfResolving is a wrapper of this module's own that hands Resolve its
// calls, abilities included, rather than having a Go type for each
// combination of abilities it may wrap (see internal/resolving). Only this
// module can name resolving.Token, so only its stores can take this path.
type selfResolving interface {
	ResolveCalls(resolving.Token) Calls
}

// Resolve discovers what s can do, once, and returns its calls. It is the
// funnel every store call kvsession makes goes through, and the one place
// where a store's optional abilities are looked for: code that needs to
// know whether a store has one checks whether its func is nil. (The
// fault-injection store of storetest/faultstore has the abilities of the
// store it wraps through Resolve alone: a type assertion on it finds
// none.)
func Resolve(s Store) Calls {
	if r, ok := s.(selfResolving); ok {
		return r.ResolveCalls(resolving.Token{})
	}
	c := Calls{
		Get:          s.Get,
		Set:          s.Set,
		Swap:         s.Swap,
		Delete:       s.Delete,
		AddMember:    s.AddMember,
		RemoveMember: s.RemoveMember,
		Members:      s.Members,
	}
	if a, ok := s.(Appender); ok {
		c.GetAppend = a.GetAppend
	}
	if l, ok := s.(Locker); ok {
		c.TryLock, c.Unlock = l.TryLock, l.Unlock
	}
	if sc, ok := s.(Scanner); ok {
		c.Scan = sc.Scan
	}
	if p, ok := s.(Purger); ok {
		c.PurgeExpired = p.PurgeExpired
	}
	if r, ok := s.(TraitsReporter); ok {
		c.Traits = r.Traits()
	}
	return c
}

// NoExpiry is what the ExpiresIn method of the stores shipped with
// kvsession (memory, Badger, Redis) reports for an entry stored with a
// zero TTL, which never expires. ExpiresIn is no part of the contract.
const NoExpiry time.Duration = -1
