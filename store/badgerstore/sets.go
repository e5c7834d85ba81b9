package badgerstore

import (
	"context"
	"encoding/binary"
	"time"

	bdg "github.com/dgraph-io/badger/v4"

	"github.com/kvsession/kvsession/store"
)

// Keys. Values and set members share Badger's one key space, so the Store
// lays them out so that no value key can equal a member key, and no member
// of one set can fall under another set's prefix:
//
//	value key k, k[0] != 0xff       k
//	value key k, k[0] == 0xff       0xff 0x00 k
//	member m of set s               0xff 0x01 uvarint(len(s)) s m
//
// A value key beginning with 0xff, which no valid UTF-8 string does, is
// escaped; every other value key is Badger's key as it is, so databases
// written before sets existed read the same. The length before a set's
// name keeps set "a" from listing the members of set "ab".
//
// Each member is an entry of its own, with an empty value and the member's
// expiry as Badger's: adding one costs one small write however many the set
// holds, Members lists the set by prefix, and Badger drops expired members
// as it drops expired values, in compaction.
const (
	reservedByte = 0xff
	escapedValue = 0x00
	memberMark   = 0x01
)

// valueKey returns the Badger key of the value key key, which is not empty.
func valueKey(key string) []byte {
	if key[0] != reservedByte {
		return []byte(key)
	}
	b := make([]byte, 0, 2+len(key))
	return append(append(b, reservedByte, escapedValue), key...)
}

// setPrefix returns the prefix of every member key of set, with room for a
// member of extra bytes after it.
func setPrefix(set string, extra int) []byte {
	b := make([]byte, 0, 2+binary.MaxVarintLen64+len(set)+extra)
	b = append(b, reservedByte, memberMark)
	b = binary.AppendUvarint(b, uint64(len(set)))
	return append(b, set...)
}

func memberKey(set, member string) []byte {
	return append(setPrefix(set, len(member)), member...)
}

func checkMember(ctx context.Context, set, member string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if set == "" || member == "" {
		return store.ErrEmptyKey
	}
	return nil
}

// AddMember adds member to set until at least ttl from now (rounded up to
// whole seconds; zero for no expiry), or extends its expiry if it is there
// already with an earlier one. Like Swap, it is decided when its batch is
// committed, from what Badger and the writes queued before it hold.
func (s *Store) AddMember(ctx context.Context, set, member string, ttl time.Duration) error {
	if err := checkMember(ctx, set, member); err != nil {
		return err
	}
	if ttl < 0 {
		return store.ErrInvalidTTL
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return store.ErrClosed
	}
	w := pendingWrites.Get().(*pendingWrite)
	w.op, w.key, w.exp = opExtend, memberKey(set, member), expiresAt(time.Now(), ttl)
	_, err := s.commits.submit(w)
	return err
}

// RemoveMember removes member from set; removing one that is not there is
// not an error.
func (s *Store) RemoveMember(ctx context.Context, set, member string) error {
	if err := checkMember(ctx, set, member); err != nil {
		return err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return store.ErrClosed
	}
	return s.commits.write(opDelete, memberKey(set, member), nil, 0)
}

// Members returns the members of set that have not expired, in Badger's key
// order.
func (s *Store) Members(ctx context.Context, set string) ([]string, error) {
	if err := check(ctx, set); err != nil {
		return nil, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return nil, store.ErrClosed
	}
	prefix := setPrefix(set, 0)
	var members []string
	err := s.db.View(func(txn *bdg.Txn) error {
		opts := bdg.DefaultIteratorOptions
		opts.PrefetchValues = false
		opts.Prefix = prefix
		it := txn.NewIterator(opts)
		defer it.Close()
		// The iterator leaves out deleted and expired entries.
		for it.Rewind(); it.Valid(); it.Next() {
			if err := ctx.Err(); err != nil {
				return err
			}
			members = append(members, string(it.Item().Key()[len(prefix):]))
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return members, nil
}
