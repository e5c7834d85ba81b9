package kvsession

import (
	"context"
	"time"

	"github.com/kvsession/kvsession/internal/userindex"
)

// The server backend keeps, per user, an index of the store keys of the
// sessions bound to that user (Session.SetUser), in the sessions' own
// store: listing a user's sessions or logging the user out everywhere
// reads one index record and the sessions it names, never the whole store.
// The index is kept as sessions are saved, re-bound and destroyed; sessions
// that expire drop out of it when it is next read.

// SessionInfo describes one of a user's sessions.
type SessionInfo struct {
	Created    time.Time // when the session was first saved
	LastActive time.Time // its last save or extension
}

func newUserIndex(b *ServerBackend) *userindex.Index {
	x := userindex.New(b.store, b.cfg.Prefix)
	x.Now = func() time.Time { return b.now() }
	return x
}

// indexPlan reports whether saving the session to live ttl from now needs
// an index entry, and sets s.indexed to what the entry will cover: twice
// the TTL, so that saves and renewals rarely need to update it.
func (b *ServerBackend) indexPlan(s *Session, now int64, ttl time.Duration) bool {
	if s.user == "" {
		s.indexed = 0
		return false
	}
	if s.loadedUser == s.user && now+int64(ttl) <= s.indexed {
		return false
	}
	s.indexed = now + int64(2*ttl)
	return true
}

// index adds the session's key to its user's index, covering it until
// s.indexed.
func (b *ServerBackend) index(s *Session, ttl time.Duration) error {
	if err := b.users.Add(s.ctx, s.user, s.key, 2*ttl); err != nil {
		return &StoreError{Op: "index", Err: err}
	}
	return nil
}

// unindex removes the session's key from user's index. A failure is only
// logged: the session's record is what counts, and an index entry without
// a record is dropped the next time the index is read.
func (b *ServerBackend) unindex(s *Session, user string) {
	if err := b.users.Remove(s.ctx, user, s.key); err != nil {
		b.cfg.Logger.Warn("kvsession: could not update a user's session index", "error", err)
	}
}

// UserSessions lists the live sessions bound to user.
func (b *ServerBackend) UserSessions(ctx context.Context, user string) ([]SessionInfo, error) {
	var out []SessionInfo
	err := b.eachUserSession(ctx, user, func(s *Session, key string) error {
		out = append(out, SessionInfo{Created: time.Unix(0, s.created), LastActive: time.Unix(0, s.extended)})
		return nil
	})
	return out, err
}

// DestroyUserSessions deletes every session bound to user ("log out
// everywhere") and returns how many it deleted. It takes no session locks,
// so it can be called from a request holding one of the user's sessions
// (which should then Destroy its own). A request that loaded one of them
// before and saves it after, which is a change the user made in that
// moment, writes it back: as with any concurrent destroy.
func (b *ServerBackend) DestroyUserSessions(ctx context.Context, user string) (int, error) {
	n := 0
	err := b.eachUserSession(ctx, user, func(s *Session, key string) error {
		if err := b.store.Delete(ctx, key); err != nil {
			return &StoreError{Op: "delete", Err: err}
		}
		b.unindex(s, user)
		n++
		return nil
	})
	return n, err
}

// eachUserSession calls fn with every session the user's index names whose
// record is still bound to that user (an index entry can outlive a
// re-binding whose update failed: the record decides).
func (b *ServerBackend) eachUserSession(ctx context.Context, user string, fn func(s *Session, key string) error) error {
	if user == "" {
		return nil
	}
	keys, err := b.users.List(ctx, user)
	if err != nil {
		return &StoreError{Op: "index", Err: err}
	}
	for _, key := range keys {
		// Without the sessions' locks: the request calling this may well
		// hold one of them itself.
		if err := b.withSession(ctx, key, false, func(s *Session) error {
			if s.user != user {
				return nil
			}
			return fn(s, key)
		}); err != nil {
			return err
		}
	}
	return nil
}

// withSession loads the record under key into a pooled session, holding
// the session's lock if lock is set and Config.Lock is on, and calls fn if
// it is a live session.
func (b *ServerBackend) withSession(ctx context.Context, key string, lock bool, fn func(s *Session) error) error {
	s := b.open(ctx, nil)
	defer b.Release(s)
	s.loaded = true
	rec, found, err := b.fetch(s, key, lock)
	if err != nil || !found {
		return err
	}
	if len(rec) == 0 || rec[0] == forwardMarker || s.decode(rec) != nil || b.expired(s) {
		return nil
	}
	s.key, s.exists, s.loadedUser = key, true, s.user
	return fn(s)
}
