package kvsession

import (
	"errors"
	"time"
)

// How a request writes a session it loaded: only over the record it
// loaded. Every write of a loaded session's record goes through swapLoaded,
// which asks the store to replace the record only if it is still the one
// the request loaded (store.Store.Swap: a compare-and-set, atomic in the
// store, across processes for a shared store). So when another request
// ended the session in the meantime (Destroy, DestroyUserSessions, RenewID,
// a rotation: each deletes the record or replaces it with a forward), the
// write finds something else there and does not happen: an end holds,
// with Config.Lock on or off.
//
// When the record is still a live session that another request saved
// since the load:
//
//   - a request holding the session lock (Config.Lock) sees that only when
//     its lock's lease ran out while it worked and another request took the
//     lock and saved, or when a ReadOnly request wrote anyway. Its write is
//     refused with ErrConflict, so that the other request's save stands.
//   - a request without the lock (Lock off, or ReadOnly) writes over it,
//     as the last writer: the behaviour Lock exists to prevent, unchanged.

// ErrConflict is returned (wrapped in a *StoreError) when a request that
// holds the session lock finds the session saved by another request since
// it loaded it: its lock's lease (Config.LockLease) ran out while it
// worked and another request took the lock, or a request that declared
// itself ReadOnly (and so took no lock) wrote anyway. Nothing is written;
// the other request's save stands. The middleware answers with its error
// handler.
var ErrConflict = errors.New("kvsession: session saved by another request while this one held its lock (a lease that ran out, or a ReadOnly request that wrote)")

// errEnded is what a write of a loaded session returns when the session
// was ended by another request since it was loaded. StoreInResponse
// answers it by writing nothing: not the session, and no cookie (the
// request that ended the session wrote the cookie its client needs, which
// may be a new session's).
var errEnded = errors.New("kvsession: session ended by another request since it was loaded")

// maxSwaps bounds how often a request without the lock writes over saves
// that keep landing between its read and its write. Each lost race means
// another request's save landed, so the store is making progress.
const maxSwaps = 64

// swapLoaded replaces the record under key, which the request loaded as
// old, with value (nil: deletes it). It returns errEnded if the session
// was ended since, and ErrConflict (in a *StoreError) if it was saved by
// another request while s holds the session lock. Without the lock it
// writes over such a save; with reindex set (value is s's own record), it
// first makes sure s is in its user's set, as put says.
func (b *ServerBackend) swapLoaded(s *Session, op, key string, old, value []byte, ttl time.Duration, reindex bool) error {
	for range maxSwaps {
		ok, err := b.calls.Swap(s.ctx, key, old, value, ttl)
		if err != nil {
			return b.cfg.Events.storeError(s.ctx, op, err)
		}
		if ok {
			return nil
		}
		cur, err := b.current(s, key)
		switch {
		case err != nil:
			return err
		case cur == nil:
			return errEnded
		case s.lock.key != "":
			return &StoreError{Op: op, Err: ErrConflict}
		}
		if reindex && s.user != "" {
			if err := b.index(s); err != nil {
				return err
			}
		}
		old = cur
	}
	return &StoreError{Op: op, Err: ErrConflict}
}

// current reads the record under key after a Swap found it changed: nil if
// the session there has ended (no record, a rotation's forward, an
// unreadable or expired record), else the record.
func (b *ServerBackend) current(s *Session, key string) ([]byte, error) {
	rec, err := b.calls.Get(s.ctx, key)
	switch {
	case isNotFound(err):
		return nil, nil
	case err != nil:
		return nil, b.cfg.Events.storeError(s.ctx, "load", err)
	case len(rec) == 0 || rec[0] == forwardMarker:
		return nil, nil
	}
	t := b.pool.Get().(*Session)
	defer b.core.Release(t)
	if t.decode(rec) != nil || b.expired(t) {
		return nil, nil
	}
	return rec, nil
}

// put writes a session's record: a new one with Set, under an id nobody
// else has; one the request loaded with swapLoaded. Written over another
// request's save (no lock), the record binds the user this request gave
// it, whatever the record written over bound: that user's set gets the
// session again before the write, in case the other save moved it.
func (b *ServerBackend) put(s *Session, rec []byte, ttl time.Duration) error {
	if !s.exists {
		if err := b.calls.Set(s.ctx, s.key, rec, ttl); err != nil {
			return b.cfg.Events.storeError(s.ctx, "save", err)
		}
		return nil
	}
	return b.swapLoaded(s, "save", s.key, s.stored, rec, ttl, true)
}
