package kvsession

import (
	"context"
	"errors"
	"time"
)

// The server backend keeps, per user, a set of the store keys of the
// sessions bound to that user (Session.SetUser), in the sessions' own store
// (store.Store's AddMember, RemoveMember and Members): listing a user's
// sessions or logging the user out everywhere reads one set and the
// sessions it names, never the whole store. Adding a session costs the same
// however many the user has, and there is no cap: every session a user
// has is in the set.
//
// A session is added to its user's set before its record is written, so a
// listing never misses a record that exists: a member whose record is
// missing is either an expired or destroyed session (its member expires
// by itself, at twice the session's TTL) or one about to be written. A
// session leaves the set only when its record is deleted: a member whose
// record is bound to someone else (re-bound) is skipped by every listing
// and expires by itself too, since removing it could race with a request
// that binds the session back.

// userSet names the set of user's sessions.
func (b *ServerBackend) userSet(user string) string {
	return b.cfg.Prefix + "user:" + user
}

// indexPlan reports whether saving the session to live ttl from now needs
// its set membership extended, and sets s.indexed to what the membership
// will cover: twice the TTL, so that saves and renewals rarely need to
// touch the set.
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

// index adds the session's key to its user's set until s.indexed (what
// the record says the set covers), or a millisecond from now if that has
// passed.
func (b *ServerBackend) index(s *Session) error {
	d := max(time.Duration(s.indexed-s.nowNano()), time.Millisecond)
	if err := b.calls.AddMember(s.ctx, b.userSet(s.user), s.key, d); err != nil {
		return b.cfg.Events.storeError(s.ctx, "index", err)
	}
	return nil
}

// unindex removes key from user's set. A failure is only logged: the
// session's record is what counts, and a member whose record is gone or
// bound to someone else is skipped by every listing and expires by itself.
func (b *ServerBackend) unindex(ctx context.Context, user, key string) {
	if err := b.calls.RemoveMember(ctx, b.userSet(user), key); err != nil {
		b.cfg.Events.storeFailed(ctx, "index", err)
		b.cfg.Logger.Warn("kvsession: could not update a user's set of sessions", "error", err)
	}
}

// UserSessions lists the live sessions bound to user: what a "where
// you're logged in" page shows, each with its handle (never its id), when
// it was created and last active, and the client recorded at login if the
// application recorded one (Session.SetClientInfo). Mark the request's
// own with Session.Handle; end any one with DestroyUserSession. It reads
// the user's set, not the whole store.
func (b *ServerBackend) UserSessions(ctx context.Context, user string) ([]SessionInfo, error) {
	var out []SessionInfo
	_, err := b.eachUserSession(ctx, user, false, func(s *Session, key string) error {
		out = append(out, b.infoOf(s, false))
		return nil
	})
	return out, err
}

// DestroyUserSession ends the one session of user that has the given
// handle ("log out that device"), and reports whether there was one. A
// handle of a session that is not user's ends nothing: a user can end
// only their own sessions, whatever handle a request sends. It holds as
// every end does (see the README's guarantees): no request that loaded
// the session before can write it back, and an id change under way takes
// itself back.
func (b *ServerBackend) DestroyUserSession(ctx context.Context, user, handle string) (bool, error) {
	h, err := parseHandle(handle)
	if err != nil || user == "" {
		return false, err
	}
	ended, marked := false, false
	_, err = b.eachUserSession(ctx, user, true, func(s *Session, key string) error {
		if s.handle != h {
			return nil
		}
		// Marked once the handle is known to be user's (a mark for
		// another user's handle would end that session at its next id
		// change), and before its record goes: the listings that follow
		// catch an id change that completed before the mark, and the mark
		// one that completes after it (marks.go).
		if !marked {
			if err := b.setMark(ctx, b.endedKey(h)); err != nil {
				return err
			}
			marked = true
		}
		if err := b.endRecord(ctx, s); err != nil {
			return err
		}
		ended = ended || !b.expired(s)
		return nil
	})
	return ended, err
}

// ErrLogoutUnsettled is returned by DestroyUserSessions when the user's
// sessions kept appearing under new ids for more listings than it makes:
// run it again.
var ErrLogoutUnsettled = errors.New("kvsession: a user's sessions kept changing while they were logged out everywhere")

// maxListings bounds how often DestroyUserSessions and UserSessions list a
// user's set.
const maxListings = 16

// DestroyUserSessions deletes every session bound to user ("log out
// everywhere"), however many there are, and returns how many it deleted.
// It takes no session locks, so it can be called from a request holding
// one of the user's sessions (which should then Destroy its own). Once it
// returns, no request that loaded one of those sessions before can write
// it back (see ServerBackend's guarantees in the README), with Config.Lock
// on or off; sessions logged in after it began may survive it, as if they
// had logged in after it.
func (b *ServerBackend) DestroyUserSessions(ctx context.Context, user string) (int, error) {
	if user == "" {
		return 0, nil
	}
	if err := b.setMark(ctx, b.logoutKey(user)); err != nil {
		return 0, err
	}
	n := 0
	legacy, err := b.eachUserSession(ctx, user, true, func(s *Session, key string) error {
		if err := b.calls.Delete(ctx, key); err != nil {
			return b.cfg.Events.storeError(ctx, "delete", err)
		}
		b.unindex(ctx, user, key)
		n++
		b.cfg.Events.destroyed(ctx)
		return nil
	})
	if err == nil && legacy {
		// Every session it listed is gone: so is the reason to keep it.
		if err := b.calls.Delete(ctx, b.legacyIndexKey(user)); err != nil {
			return n, b.cfg.Events.storeError(ctx, "delete", err)
		}
	}
	if err == nil {
		b.cfg.Events.loggedOutEverywhere(ctx, user, n)
	}
	return n, err
}

// eachUserSession calls fn with every session the user's set names whose
// record is bound to that user (the record decides: a member outlives a
// re-binding), and, with expired set, with those past their deadlines too
// (a store may keep them a little longer than they live).
//
// A member with no record may be a session about to be written under a
// new id (it joins the set before its record is written, and before its
// old record is retired): such members are looked at again on every
// listing, and the set is listed again until a listing finds no record it
// had not handled. (An id change the listings still miss takes itself
// back: see marks.go.)
//
// It reports whether the user has an index record of the kind kept before
// sets (legacyindex.go), whose sessions it visits too.
func (b *ServerBackend) eachUserSession(ctx context.Context, user string, expired bool, fn func(s *Session, key string) error) (legacy bool, err error) {
	if user == "" {
		return false, nil
	}
	keys, legacy, err := b.legacyMembers(ctx, user)
	if err != nil {
		return false, err
	}
	handled := map[string]struct{}{}
	for pass := 0; pass < maxListings; pass++ {
		if pass > 0 || !legacy {
			if keys, err = b.calls.Members(ctx, b.userSet(user)); err != nil {
				return legacy, b.cfg.Events.storeError(ctx, "index", err)
			}
		}
		found := false
		for _, key := range keys {
			if _, ok := handled[key]; ok {
				continue
			}
			// Without the sessions' locks: the request calling this may well
			// hold one of them itself.
			if err := b.withRecord(ctx, key, false, func(s *Session, live bool) error {
				handled[key], found = struct{}{}, true
				if s.user != user || (!live && !expired) {
					return nil
				}
				return fn(s, key)
			}); err != nil {
				return legacy, err
			}
		}
		if !found && (pass > 0 || !legacy) {
			return legacy, nil
		}
	}
	return legacy, ErrLogoutUnsettled
}

// withSession loads the record under key into a pooled session, holding
// the session's lock if lock is set and Config.Lock is on, and calls fn if
// it is a live session.
func (b *ServerBackend) withSession(ctx context.Context, key string, lock bool, fn func(s *Session) error) error {
	return b.withRecord(ctx, key, lock, func(s *Session, live bool) error {
		if !live {
			return nil
		}
		return fn(s)
	})
}

// withRecord is withSession for a readable session record, live or past
// its idle or absolute deadline (live false).
func (b *ServerBackend) withRecord(ctx context.Context, key string, lock bool, fn func(s *Session, live bool) error) error {
	s := b.open(ctx, nil)
	defer b.Release(s)
	s.loaded = true
	rec, found, err := b.fetch(s, key, lock)
	if err != nil || !found {
		return err
	}
	if len(rec) == 0 || rec[0] == forwardMarker || s.decode(rec) != nil {
		return nil
	}
	s.key, s.exists, s.loadedUser, s.stored = key, true, s.user, rec
	deriveHandle(s)
	return fn(s, !b.expired(s))
}
