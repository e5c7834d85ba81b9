package kvsession

import (
	"context"
	"encoding/binary"
	"time"
)

// An end that does not know a session's current id leaves a mark in the
// store before it looks for the session's records: "log out everywhere"
// one per user (DestroyUserSessions), an end by handle one per handle
// (DestroySession, DestroyUserSession). The marks close the one gap a
// search for records leaves: a session whose id changes (RenewID, a
// rotation) while it is being ended. Its new record is written before its
// old one is retired, so a search may look at the new key before it is
// written and at the old one after it is retired, and find neither. An id
// change therefore reads the marks once its old record is retired, and if
// one says the session was ended, it takes its new record back (errEnded)
// itself. A mark it cannot read is logged, and the change stands.

// markTTL is how long a mark is kept: far longer than any request takes
// from its load to its save.
const markTTL = time.Hour

// logoutKey is the store key of user's log-out mark.
func (b *ServerBackend) logoutKey(user string) string {
	return b.cfg.Prefix + "logout:" + user
}

// endedKey is the store key of the mark of the session with handle h.
func (b *ServerBackend) endedKey(h [handleBytes]byte) string {
	return b.cfg.Prefix + "ended:" + handleString(h)
}

// setMark stores a mark holding the time now under key.
func (b *ServerBackend) setMark(ctx context.Context, key string) error {
	mark := binary.BigEndian.AppendUint64(nil, uint64(b.now().UnixNano()))
	if err := b.calls.Set(ctx, key, mark, markTTL); err != nil {
		return b.cfg.Events.storeError(ctx, "delete", err)
	}
	return nil
}

// readMark returns the time a mark holds, 0 if there is none (or it
// cannot be read, which is logged).
func (b *ServerBackend) readMark(ctx context.Context, key string) int64 {
	rec, err := b.calls.Get(ctx, key)
	switch {
	case isNotFound(err):
		return 0
	case err != nil:
		b.cfg.Events.storeFailed(ctx, "index", err)
		b.cfg.Logger.Warn("kvsession: could not read an end mark after a change of session id", "error", err)
		return 0
	case len(rec) != 8:
		return 0
	}
	return int64(binary.BigEndian.Uint64(rec))
}

// checkEndMarks is what an id change of s does once its old record is
// retired: errEnded if s was ended by handle, or if user (the user s was
// bound to as loaded, since bound) was logged out everywhere after s was
// bound. A login after a log out everywhere (even on an older session: a
// cart, then a login) is not what it ended. A record saved before binding
// times were kept has only its creation time to go by.
func (b *ServerBackend) checkEndMarks(s *Session, user string, bound int64) error {
	if s.handle != [handleBytes]byte{} && b.readMark(s.ctx, b.endedKey(s.handle)) != 0 {
		return errEnded
	}
	if user == "" {
		return nil
	}
	since := bound
	if since == 0 {
		since = s.created
	}
	if b.readMark(s.ctx, b.logoutKey(user)) > since {
		return errEnded
	}
	return nil
}
