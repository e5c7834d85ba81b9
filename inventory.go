package kvsession

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"strings"
	"time"

	"github.com/kvsession/kvsession/store"
)

// What an operator can do without knowing any session's id: count, list,
// look at and end sessions, and purge the expired ones. Each walks the
// store (store.Scanner): a Badger key range, a Redis SCAN, the memory
// store's map. A walk reads every record under Config.Prefix once, so it
// costs what the store's size costs: for a tool, not for a request. What
// it reports is the store as the walk found it, key by key: sessions
// saved or ended while it runs may or may not be seen, and a Redis SCAN
// can visit a key twice.

// SessionInfo describes a session without giving its id away: what a
// user's "where you're logged in" page (UserSessions) and an operator's
// listing (Sessions) show.
type SessionInfo struct {
	// Handle names the session for good (Session.Handle): pass it to
	// DestroyUserSession or DestroySession to end it.
	Handle string `json:"handle"`
	// User is the user the session is bound to (Session.SetUser), or "".
	User       string    `json:"user,omitempty"`
	Created    time.Time `json:"created"`     // when the session was first saved
	LastActive time.Time `json:"last_active"` // its last save or extension (within the idle timeout's extension delay)
	// Expires is when the session ends if no request comes before (see
	// Session.Deadline); the zero time if it never does.
	Expires time.Time `json:"expires,omitzero"`
	// UserAgent and RemoteAddr are what the application recorded with
	// Session.SetClientInfo, or empty.
	UserAgent  string `json:"user_agent,omitempty"`
	RemoteAddr string `json:"remote_addr,omitempty"`
	// Keys is how many values the session holds.
	Keys int `json:"keys"`
	// Values are the session's values, decoded generically; only when
	// ScanOptions.Values asks for them.
	Values map[string]any `json:"values,omitempty"`
}

// ScanOptions shape a walk of the store: Sessions, CountSessions,
// FindSession, DestroySession and PurgeExpired.
type ScanOptions struct {
	// Values decodes each session's values into SessionInfo.Values. Off,
	// a listing holds metadata only.
	Values bool
	// Expired includes the sessions past their idle or absolute deadline
	// that the store still keeps (a store may expire entries a little
	// later than the session ends).
	Expired bool
	// User keeps only the sessions bound to this user.
	User string
	// Progress, if set, is called with how many store entries the walk
	// has visited, every 1000 and once at the end: long walks can show
	// they are moving.
	Progress func(visited int)
}

// ErrNotScannable is returned by the walks of a store that cannot be
// walked (one that is no store.Scanner).
var ErrNotScannable = errors.New("kvsession: the store cannot list its keys (it is no store.Scanner)")

// errStopWalk stops a walk early; never returned to a caller.
var errStopWalk = errors.New("kvsession: walk stopped")

// progressEvery is how many entries a walk visits between calls of
// ScanOptions.Progress.
const progressEvery = 1000

// walk calls fn with every session record in the store that opts select,
// decoded into a session that is reused from one record to the next (fn
// copies what it keeps), and tells whether the session is live. fn may
// call the store. An error fn returns stops the walk and is returned as
// it is; a store's failure is returned as a *StoreError.
func (b *ServerBackend) walk(ctx context.Context, opts ScanOptions, fn func(s *Session, live bool) error) error {
	if b.calls.Scan == nil {
		return ErrNotScannable
	}
	s := b.open(ctx, nil)
	defer b.core.Release(s)
	visited := 0
	var fnErr error
	err := b.calls.Scan(ctx, b.cfg.Prefix, func(key string, value []byte) error {
		visited++
		if opts.Progress != nil && visited%progressEvery == 0 {
			opts.Progress(visited)
		}
		if !b.isSessionKey(key) || len(value) == 0 || isForward(value) {
			return nil
		}
		s.forget()
		s.loaded = true
		if s.decode(value) != nil {
			return nil // not a record this version can read: not ours to judge
		}
		s.key = key
		deriveHandle(s)
		live := !b.expired(s)
		if (!live && !opts.Expired) || (opts.User != "" && s.user != opts.User) {
			return nil
		}
		s.exists, s.stored = true, value
		fnErr = fn(s, live)
		s.key, s.stored = "", nil
		return fnErr
	})
	if opts.Progress != nil {
		opts.Progress(visited)
	}
	switch {
	case err == nil:
		return nil
	case fnErr != nil && errors.Is(err, fnErr):
		return fnErr
	}
	return b.cfg.Events.storeError(ctx, "scan", err)
}

// isSessionKey reports whether key has the shape of a session's store
// key: Prefix and an id, or a hash of one. The store's other keys under
// Prefix (marks, records of the sets kept before sets) all hold a ':'.
func (b *ServerBackend) isSessionKey(key string) bool {
	if len(key) != b.storeKeyLen(b.idLen) || !strings.HasPrefix(key, b.cfg.Prefix) {
		return false
	}
	var bad byte
	for i := len(b.cfg.Prefix); i < len(key); i++ {
		bad |= idNotAlphabet[key[i]]
	}
	return bad == 0
}

// infoOf describes s, copying everything out of its record.
func (b *ServerBackend) infoOf(s *Session, values bool) SessionInfo {
	info := SessionInfo{
		Handle:     handleString(s.handle),
		User:       strings.Clone(s.user),
		Created:    time.Unix(0, s.created),
		LastActive: time.Unix(0, s.extended),
		UserAgent:  strings.Clone(s.userAgent),
		RemoteAddr: strings.Clone(s.remoteAddr),
		Keys:       len(s.entries),
	}
	from := s.extended
	if from == 0 {
		from = s.created // a record written before extensions were kept
	}
	if d := b.ttl(s, from); d > 0 {
		info.Expires = time.Unix(0, from+int64(d))
	}
	if values {
		info.Values = s.Values()
	}
	return info
}

// Sessions walks the store and yields every live session (with
// opts.Expired, the expired ones it still keeps too), in no particular
// order; a failure is yielded once, last. Stopping the loop stops the
// walk.
//
//	for info, err := range backend.Sessions(ctx, kvsession.ScanOptions{}) {
//		if err != nil { ... }
//		fmt.Println(info.Handle, info.User, info.LastActive)
//	}
func (b *ServerBackend) Sessions(ctx context.Context, opts ScanOptions) iter.Seq2[SessionInfo, error] {
	return func(yield func(SessionInfo, error) bool) {
		err := b.walk(ctx, opts, func(s *Session, live bool) error {
			if !yield(b.infoOf(s, opts.Values), nil) {
				return errStopWalk
			}
			return nil
		})
		if err != nil && err != errStopWalk {
			yield(SessionInfo{}, err)
		}
	}
}

// CountSessions walks the store and counts the sessions opts select.
func (b *ServerBackend) CountSessions(ctx context.Context, opts ScanOptions) (int, error) {
	n := 0
	err := b.walk(ctx, opts, func(*Session, bool) error {
		n++
		return nil
	})
	return n, err
}

// FindSession walks the store for the session with the given handle. It
// returns an error wrapping store.ErrNotFound if no live session has it
// (with opts.Expired, no session the store keeps).
func (b *ServerBackend) FindSession(ctx context.Context, handle string, opts ScanOptions) (SessionInfo, error) {
	h, err := parseHandle(handle)
	if err != nil {
		return SessionInfo{}, err
	}
	var info SessionInfo
	found := false
	err = b.walk(ctx, opts, func(s *Session, live bool) error {
		if s.handle != h {
			return nil
		}
		info, found = b.infoOf(s, opts.Values), true
		return errStopWalk
	})
	if err != nil && err != errStopWalk {
		return SessionInfo{}, err
	}
	if !found {
		return SessionInfo{}, fmt.Errorf("kvsession: session %w", store.ErrNotFound)
	}
	return info, nil
}

// DestroySession ends the session with the given handle, wherever it is
// in the store, and reports whether there was one to end. It holds as
// every end does (see the README's guarantees): no request that loaded
// the session before can write it back, and an id change under way (a
// rotation, a RenewID) takes itself back. For the sessions of one user,
// DestroyUserSession does the same from the user's set, without walking
// the store.
func (b *ServerBackend) DestroySession(ctx context.Context, handle string, opts ScanOptions) (bool, error) {
	h, err := parseHandle(handle)
	if err != nil {
		return false, err
	}
	if b.calls.Scan == nil {
		return false, ErrNotScannable
	}
	// The mark first: an id change that the walk misses (its new record
	// behind the walk, its old one retired before the walk reaches it)
	// reads it and takes itself back (marks.go).
	if err := b.setMark(ctx, b.endedKey(h)); err != nil {
		return false, err
	}
	opts.Expired = true // an expired record with the handle goes too
	ended := false
	err = b.walk(ctx, opts, func(s *Session, live bool) error {
		if s.handle != h {
			return nil
		}
		if err := b.endRecord(ctx, s); err != nil {
			return err
		}
		ended = ended || live
		return nil
	})
	return ended, err
}

// endRecord deletes the record s was read from, and its key from its
// user's set.
func (b *ServerBackend) endRecord(ctx context.Context, s *Session) error {
	if err := b.calls.Delete(ctx, s.key); err != nil {
		return b.cfg.Events.storeError(ctx, "delete", err)
	}
	if s.user != "" {
		b.unindex(ctx, s.user, s.key)
	}
	b.cfg.Events.destroyed(ctx)
	return nil
}

// PurgeResult is what PurgeExpired removed.
type PurgeResult struct {
	// Sessions is how many session records past their idle or absolute
	// deadline were deleted.
	Sessions int
	// StoreEntries is how many expired entries the store removed
	// (store.Purger), -1 if it cannot tell, 0 if it has no such ability.
	StoreEntries int
}

// PurgeExpired deletes the records of sessions past their idle or absolute
// deadline that the store still keeps, then has the store remove its own
// expired entries (store.Purger). A session that ended this way is gone
// already for every request (its deadline is checked on every load): the
// purge frees the space. A record a request saved meanwhile is left
// alone.
func (b *ServerBackend) PurgeExpired(ctx context.Context, opts ScanOptions) (PurgeResult, error) {
	var res PurgeResult
	if b.calls.Scan == nil && b.calls.PurgeExpired == nil {
		return res, ErrNotScannable
	}
	if b.calls.Scan != nil {
		opts.Expired, opts.User = true, ""
		err := b.walk(ctx, opts, func(s *Session, live bool) error {
			if live {
				return nil
			}
			// Only the record as read: one saved since is live again.
			ok, err := b.calls.Swap(ctx, s.key, s.stored, nil, 0)
			if err != nil {
				return b.cfg.Events.storeError(ctx, "delete", err)
			}
			if ok {
				res.Sessions++
				if s.user != "" {
					b.unindex(ctx, s.user, s.key)
				}
			}
			return nil
		})
		if err != nil {
			return res, err
		}
	}
	if b.calls.PurgeExpired != nil {
		n, err := b.calls.PurgeExpired(ctx)
		if err != nil {
			return res, b.cfg.Events.storeError(ctx, "purge", err)
		}
		res.StoreEntries = n
	}
	return res, nil
}
