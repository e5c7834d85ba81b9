// Package userindex keeps, for each user, the list of store keys of the
// sessions bound to that user, so that a backend can list a user's sessions
// and destroy them all ("log out everywhere") without scanning the store.
//
// The index is built only on the generic store.Store, so it works on every
// store. Each user has one index record, kept in the same store as the
// sessions under Prefix+"user:"+user. The record lists its members (session
// keys) with the time each one expires, so that:
//
//   - members that have certainly expired are dropped by Add, Remove and List
//     without a store call;
//   - the record's own TTL is the latest member expiry (plus a small slack),
//     so a record whose sessions have all expired disappears by itself, on
//     stores that expire entries, without anyone calling Remove.
//
// List checks every member that may still be alive in the store (with
// store.Exister when the store has it, else Get), returns the live ones and
// rewrites the record without the others, so that sessions deleted without
// Remove (or expired in the store earlier than recorded) are pruned.
//
// # What the caller must do
//
// The index only knows what it is told. The backend must call Add after
// every write that can extend a bound session's life (a save with a new TTL,
// and a Touch that renews it on access), with that TTL: a member's recorded
// expiry bounds how long the index remembers it, and a session that outlives
// its recorded expiry (plus the slack) is no longer listed and so escapes
// "log out everywhere". It should call Remove when a session is destroyed or
// unbound; forgetting to is harmless beyond a store call in the next List.
//
// # Bound
//
// A user's record holds at most Index.MaxMembers members (DefaultMaxMembers
// unless set). When Add would exceed it, the member expiring soonest (other
// than the one being added; members that never expire count as latest) is
// dropped from the index. Its session lives on but is no longer listed, so
// it is not destroyed by a "log out everywhere": pick a bound well above the
// number of concurrent sessions a legitimate user has, or cap sessions per
// user in the backend.
//
// # Concurrency
//
// The read-modify-write of a user's record is serialised within one process
// by a striped mutex (a fixed set of locks picked by a hash of the user).
// Several processes sharing one store can still race on a user's record: two
// concurrent Adds for the same user from different processes can lose one of
// the members. A store that can update a key atomically across processes
// implements Updater; the Index then uses it instead of Get and Set under the
// in-process lock.
//
// # Clocks
//
// Member expiries are wall-clock Unix nanoseconds from Index.Now, while a
// store measures TTLs on its own clock (its monotonic clock, a server's
// clock, whole seconds...). The slack added to every expiry before trusting
// it absorbs small differences and rounding; a member is only dropped without
// asking the store once its recorded expiry plus the slack has passed.
package userindex

import (
	"context"
	"encoding/binary"
	"errors"
	"hash/maphash"
	"math"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/kvsession/kvsession/store"
)

// DefaultMaxMembers is the bound on a user's members when Index.MaxMembers
// is zero.
const DefaultMaxMembers = 1000

// Slack is added to every recorded member expiry before the index relies on
// it: a member is dropped without a store call only once its expiry plus
// Slack has passed, and the index record outlives its latest member by
// Slack. It covers clock differences between processes and stores, and
// stores that round TTLs.
const Slack = 30 * time.Second

// stripes is the number of in-process locks users are spread over.
const stripes = 64

// recordVersion is the first byte of every index record.
const recordVersion = 1

// ErrEmptyUser is returned when a method is called with an empty user.
var ErrEmptyUser = errors.New("userindex: empty user")

// Updater is an optional interface for stores that can apply a
// read-modify-write to one key atomically with respect to every other
// Update of that key, in every process sharing the store (a Redis store can
// do it with WATCH/MULTI/EXEC or a script). When the store given to New
// implements it, the Index uses it for every change to a record instead of
// Get and Set under its in-process lock.
//
// Update calls fn with the value currently stored under key (nil if there is
// none or it has expired). If fn returns write == false, nothing is written.
// Otherwise a nil value deletes key, and a non-nil value is stored with ttl
// (0: no expiry). fn may be called more than once (an optimistic store
// retries it when the key changed underneath); it has no side effects and
// does not keep or modify old.
//
// The signature uses only standard types, so a store can implement it
// without importing this package.
type Updater interface {
	Update(ctx context.Context, key string, fn func(old []byte) (value []byte, ttl time.Duration, write bool)) error
}

// Index is a per-user index of session keys kept in a store.Store. Create it
// with New. It is safe for concurrent use; set its fields, if at all, before
// first use.
type Index struct {
	// Now is the clock, for tests that need to move time. Default time.Now.
	// It must agree with the store's clock to within Slack.
	Now func() time.Time

	// MaxMembers bounds the members of one user's record; see the package
	// documentation. Zero means DefaultMaxMembers.
	MaxMembers int

	st      store.Store
	exister store.Exister // nil: check liveness with Get
	updater Updater       // nil: Get and Set under locks
	prefix  string        // prefix + "user:"
	seed    maphash.Seed
	locks   [stripes]stripe
}

// stripe is one lock padded to its own cache line, so that users hashed to
// neighbouring stripes do not slow each other down.
type stripe struct {
	mu sync.Mutex
	_  [64 - 8]byte
}

// New returns an Index keeping its records in st under
// prefix+"user:"+user.
func New(st store.Store, prefix string) *Index {
	x := &Index{
		st:     st,
		prefix: prefix + "user:",
		seed:   maphash.MakeSeed(),
	}
	x.exister, _ = st.(store.Exister)
	x.updater, _ = st.(Updater)
	return x
}

// Key returns the store key of user's index record.
func (x *Index) Key(user string) string {
	return x.prefix + user
}

// member is one session in a record: its store key and when it expires, in
// Unix nanoseconds (0: never).
type member struct {
	key string
	exp int64
}

func (x *Index) now() int64 {
	if x.Now != nil {
		return x.Now().UnixNano()
	}
	return time.Now().UnixNano()
}

func (x *Index) maxMembers() int {
	if x.MaxMembers > 0 {
		return x.MaxMembers
	}
	return DefaultMaxMembers
}

// Add records that sessionKey, the store key of a session record, belongs
// to user, and lives at most ttl from now (0: no expiry). Adding a member
// again extends its recorded expiry to the later of the two; it never
// shortens it. Call it after every write that extends the session's life.
func (x *Index) Add(ctx context.Context, user, sessionKey string, ttl time.Duration) error {
	if err := check(user, sessionKey); err != nil {
		return err
	}
	if ttl < 0 {
		return store.ErrInvalidTTL
	}
	limit := x.maxMembers()
	return x.update(ctx, user, func(ms []member, now int64) ([]member, bool) {
		ms = dropExpired(ms, now)
		exp := expiry(now, ttl)
		i, found := slices.BinarySearchFunc(ms, sessionKey, cmpKey)
		if found {
			if later(exp, ms[i].exp) {
				ms[i].exp = exp
			}
		} else {
			ms = slices.Insert(ms, i, member{key: sessionKey, exp: exp})
		}
		for len(ms) > limit {
			ms = evict(ms, sessionKey)
		}
		// Always write: even an unchanged member list may need its TTL
		// refreshed after dropping expired members, and Add is the call that
		// repairs a malformed record.
		return ms, true
	})
}

// Remove deletes sessionKey from user's index. Removing a key that is not
// there is not an error.
func (x *Index) Remove(ctx context.Context, user, sessionKey string) error {
	if err := check(user, sessionKey); err != nil {
		return err
	}
	return x.update(ctx, user, func(ms []member, now int64) ([]member, bool) {
		n := len(ms)
		ms = dropExpired(ms, now)
		changed := len(ms) != n
		if i, found := slices.BinarySearchFunc(ms, sessionKey, cmpKey); found {
			ms = slices.Delete(ms, i, i+1)
			changed = true
		}
		return ms, changed
	})
}

// List returns the keys of user's sessions that still exist in the store,
// sorted, and prunes the others (expired, or deleted without Remove) from
// the index record. A store error is returned as is, and then nothing is
// pruned. A user without sessions has an empty list and no error.
func (x *Index) List(ctx context.Context, user string) ([]string, error) {
	if user == "" {
		return nil, ErrEmptyUser
	}
	key := x.Key(user)
	rec, err := x.st.Get(ctx, key)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	ms, _ := decode(rec)
	if len(ms) == 0 {
		return nil, nil
	}

	// Check every member that may be alive. This runs outside the lock: a
	// user's record is not held while the store is asked about its members.
	now := x.now()
	live := make([]string, 0, len(ms))
	var dead []member
	for _, m := range ms {
		ok := false
		if !certainlyExpired(m.exp, now) {
			if ok, err = x.exists(ctx, m.key); err != nil {
				return nil, err
			}
		}
		if ok {
			live = append(live, m.key)
		} else {
			dead = append(dead, m)
		}
	}
	if len(dead) == 0 {
		return live, nil
	}

	// Prune the dead members from the record as it is now, not as it was
	// read: Adds may have happened since. A member is pruned only if it
	// still has the expiry it had when found dead; an Add in between
	// changed it, and then the session was (re)written after the check.
	err = x.update(ctx, user, func(cur []member, now int64) ([]member, bool) {
		n := len(cur)
		cur = slices.DeleteFunc(cur, func(m member) bool {
			if certainlyExpired(m.exp, now) {
				return true
			}
			i, found := slices.BinarySearchFunc(dead, m.key, cmpKey)
			return found && dead[i].exp == m.exp
		})
		return cur, len(cur) != n
	})
	if err != nil {
		return nil, err
	}
	return live, nil
}

// exists reports whether key holds a live entry in the store.
func (x *Index) exists(ctx context.Context, key string) (bool, error) {
	if x.exister != nil {
		return x.exister.Exists(ctx, key)
	}
	_, err := x.st.Get(ctx, key)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, store.ErrNotFound):
		return false, nil
	default:
		return false, err
	}
}

// update applies fn to user's record: fn gets the members (sorted by key,
// possibly empty) and the time, and returns the new members and whether to
// write them. An empty result deletes the record. fn may modify and return
// the slice it was given; it may run more than once with an Updater.
func (x *Index) update(ctx context.Context, user string, fn func(ms []member, now int64) ([]member, bool)) error {
	key := x.Key(user)
	if x.updater != nil {
		return x.updater.Update(ctx, key, func(old []byte) ([]byte, time.Duration, bool) {
			ms, _ := decode(old)
			now := x.now()
			ms, write := fn(ms, now)
			if !write {
				return nil, 0, false
			}
			if len(ms) == 0 {
				return nil, 0, true
			}
			return encode(ms), recordTTL(ms, now), true
		})
	}

	l := &x.locks[maphash.String(x.seed, user)%stripes].mu
	l.Lock()
	defer l.Unlock()
	old, err := x.st.Get(ctx, key)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return err
	}
	ms, _ := decode(old)
	now := x.now()
	ms, write := fn(ms, now)
	switch {
	case !write:
		return nil
	case len(ms) == 0:
		return x.st.Delete(ctx, key)
	default:
		return x.st.Set(ctx, key, encode(ms), recordTTL(ms, now))
	}
}

func check(user, sessionKey string) error {
	if user == "" {
		return ErrEmptyUser
	}
	if sessionKey == "" {
		return store.ErrEmptyKey
	}
	return nil
}

func cmpKey(m member, key string) int {
	return strings.Compare(m.key, key)
}

// expiry returns when something stored at now with ttl expires.
func expiry(now int64, ttl time.Duration) int64 {
	if ttl == 0 {
		return 0
	}
	if int64(ttl) > math.MaxInt64-now {
		return math.MaxInt64
	}
	return now + int64(ttl)
}

// later reports whether expiry a is later than b (0 is latest).
func later(a, b int64) bool {
	return b != 0 && (a == 0 || a > b)
}

// certainlyExpired reports whether a member expiring at exp has expired in
// the store at now, allowing for Slack.
func certainlyExpired(exp, now int64) bool {
	return exp != 0 && exp <= math.MaxInt64-int64(Slack) && now >= exp+int64(Slack)
}

// dropExpired removes the members that have certainly expired.
func dropExpired(ms []member, now int64) []member {
	return slices.DeleteFunc(ms, func(m member) bool { return certainlyExpired(m.exp, now) })
}

// evict removes the member expiring soonest, other than keep. Ties go to the
// smallest key, so the choice does not depend on anything but the record.
func evict(ms []member, keep string) []member {
	victim := -1
	for i, m := range ms {
		if m.key == keep {
			continue
		}
		if victim < 0 || later(ms[victim].exp, m.exp) {
			victim = i
		}
	}
	if victim < 0 {
		return ms // only keep is left; cannot happen with a bound of 1 or more
	}
	return slices.Delete(ms, victim, victim+1)
}

// recordTTL is the TTL of a record holding ms (not empty, none certainly
// expired): until its latest member expires, plus Slack; 0 if any member
// never expires.
func recordTTL(ms []member, now int64) time.Duration {
	var last int64
	for _, m := range ms {
		if m.exp == 0 {
			return 0
		}
		last = max(last, m.exp)
	}
	if last > math.MaxInt64-int64(Slack) || now < 0 && last+int64(Slack) > math.MaxInt64+now {
		return 0 // practically never; also keeps the subtraction below from overflowing
	}
	d := last + int64(Slack) - now
	if d <= 0 {
		return time.Nanosecond // cannot happen: no member is certainly expired
	}
	return time.Duration(d)
}

// Record format, version 1:
//
//	version  1 byte, recordVersion
//	count    uvarint, number of members
//	count times:
//	  len    uvarint, length of the key, at least 1
//	  key    len bytes
//	  exp    8 bytes, big-endian int64 Unix nanoseconds, 0 = no expiry, never negative
//
// Uvarints are minimal, members are sorted by key, strictly ascending (no
// duplicates), and nothing follows the last one: every member list has
// exactly one encoding.

// minMember is the smallest encoding of a member: a 1-byte length, a 1-byte
// key and the expiry.
const minMember = 1 + 1 + 8

// encode returns the record holding ms, which are sorted by key without
// duplicates.
func encode(ms []member) []byte {
	n := 1 + binary.MaxVarintLen64
	for _, m := range ms {
		n += binary.MaxVarintLen64 + len(m.key) + 8
	}
	b := make([]byte, 0, n)
	b = append(b, recordVersion)
	b = binary.AppendUvarint(b, uint64(len(ms)))
	for _, m := range ms {
		b = binary.AppendUvarint(b, uint64(len(m.key)))
		b = append(b, m.key...)
		b = binary.BigEndian.AppendUint64(b, uint64(m.exp))
	}
	return b
}

// errMalformed reports a record decode could not read.
var errMalformed = errors.New("userindex: malformed index record")

// decode reads a record. A nil or empty record has no members. A malformed
// one is reported with errMalformed and no members, so that callers treat
// it as empty and the next write replaces it. Allocation is bounded by
// len(b) whatever the record claims.
func decode(b []byte) ([]member, error) {
	if len(b) == 0 {
		return nil, nil
	}
	if b[0] != recordVersion {
		return nil, errMalformed
	}
	b = b[1:]
	count, n := uvarint(b)
	if n <= 0 {
		return nil, errMalformed
	}
	b = b[n:]
	if count > uint64(len(b)/minMember) {
		return nil, errMalformed
	}
	// One string for every key: a single allocation, and the keys are
	// substrings of it.
	s := string(b)
	ms := make([]member, 0, count)
	off := 0
	for range count {
		klen, n := uvarint(b[off:])
		if n <= 0 || klen == 0 || klen > uint64(len(b)-off-n) || uint64(len(b)-off-n)-klen < 8 {
			return nil, errMalformed
		}
		off += n
		key := s[off : off+int(klen)]
		off += int(klen)
		exp := int64(binary.BigEndian.Uint64(b[off:]))
		off += 8
		if exp < 0 || len(ms) > 0 && ms[len(ms)-1].key >= key {
			return nil, errMalformed
		}
		ms = append(ms, member{key: key, exp: exp})
	}
	if off != len(b) {
		return nil, errMalformed
	}
	return ms, nil
}

// uvarint is binary.Uvarint refusing overlong encodings (such as 0x80 0x00
// for 0), which encode never writes: n <= 0 reports an error.
func uvarint(b []byte) (v uint64, n int) {
	v, n = binary.Uvarint(b)
	if n > 1 && b[n-1] == 0 {
		return 0, -1
	}
	return v, n
}
