package kvsession

import (
	"context"
	"encoding/binary"
)

// Before per-user sets (store.Store's AddMember), a user's sessions were
// listed in one record of the store, under Prefix+"user:"+user, rewritten
// on every login. Sessions bound while that was so may not have been saved
// since, and so may not be in their user's set yet: listing a user's
// sessions also reads that record if it is there, so that log out
// everywhere still reaches them, and log out everywhere deletes it.
//
// The record was: a version byte (1), a uvarint count, then per member a
// uvarint key length, the key, and 8 bytes of big-endian expiry.

// legacyIndexKey is the store key of user's old index record.
func (b *ServerBackend) legacyIndexKey(user string) string {
	return b.cfg.Prefix + "user:" + user
}

// legacyMembers returns the session keys user's old index record lists,
// and whether there was one. A record that cannot be read lists nothing:
// it is left for DestroyUserSessions to delete.
func (b *ServerBackend) legacyMembers(ctx context.Context, user string) ([]string, bool, error) {
	rec, err := b.calls.Get(ctx, b.legacyIndexKey(user))
	switch {
	case isNotFound(err):
		return nil, false, nil
	case err != nil:
		return nil, false, b.cfg.Events.storeError(ctx, "index", err)
	}
	return decodeLegacyIndex(rec), true, nil
}

func decodeLegacyIndex(rec []byte) []string {
	if len(rec) == 0 || rec[0] != 1 {
		return nil
	}
	rec = rec[1:]
	count, n := binary.Uvarint(rec)
	if n <= 0 || count > uint64(len(rec)) {
		return nil
	}
	rec = rec[n:]
	keys := make([]string, 0, count)
	for range count {
		klen, n := binary.Uvarint(rec)
		if n <= 0 || klen == 0 || klen > uint64(len(rec)-n) || uint64(len(rec)-n)-klen < 8 {
			return keys
		}
		keys = append(keys, string(rec[n:n+int(klen)]))
		rec = rec[n+int(klen)+8:]
	}
	return keys
}
