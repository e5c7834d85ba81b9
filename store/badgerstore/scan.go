package badgerstore

import (
	"context"

	bdg "github.com/dgraph-io/badger/v4"

	"github.com/kvsession/kvsession/store"
)

// A Scan reads Badger in chunks, each in a read transaction of its own
// that ends before fn is called for the chunk's keys. fn may then call the
// Store (Delete of the key it is shown, a Set, even Close) without waiting
// on anything the scan holds: a scan that kept Store.mu read-locked while
// fn ran would deadlock fn's own call as soon as a Close queued for the
// write lock, and one long transaction would keep Badger from discarding
// the versions written while it is open. A chunk ends at scanChunkKeys
// keys or once it holds scanChunkBytes of keys and values (at least one
// key, however large); the next starts at the first key it did not take,
// so a key live for the whole scan is visited exactly once.
const (
	scanChunkKeys  = 256
	scanChunkBytes = 1 << 20
)

// scanRange is a run of Badger keys that hold values (see Keys in
// sets.go): those starting with prefix, and, with beforeReserved, only
// those before the first key starting with 0xff, where set members and
// escaped values begin. strip is how many bytes of a Badger key come
// before the caller's.
type scanRange struct {
	prefix         []byte
	strip          int
	beforeReserved bool
}

// valueRanges returns the Badger key ranges that hold the value keys
// starting with prefix: for a prefix starting with 0xff, the escaped keys
// behind 0xff 0x00; for any other, the keys starting with it as they are;
// for "", both, every key before 0xff and every escaped one. Set members
// (0xff 0x01) are in none of them.
func valueRanges(prefix string) []scanRange {
	escaped := scanRange{prefix: append([]byte{reservedByte, escapedValue}, prefix...), strip: 2}
	switch {
	case prefix == "":
		return []scanRange{{beforeReserved: true}, escaped}
	case prefix[0] == reservedByte:
		return []scanRange{escaped}
	default:
		return []scanRange{{prefix: []byte(prefix)}}
	}
}

// scanChunk is what one chunk read: the caller's keys, one string for the
// whole chunk that each key is a part of (so a key fn keeps stays valid),
// and the values in a buffer reused from chunk to chunk.
type scanChunk struct {
	keys   []byte // the chunk's keys, back to back, while reading
	values []byte
	items  []scanItem
	next   []byte // the Badger key to go on from; nil: the range is done
}

type scanItem struct {
	keyEnd, valueEnd int // where the item's key and value end in keys and values
}

// Scan calls fn with each live key that starts with prefix, and its value,
// in Badger's key order within each of at most two ranges (plain keys,
// then keys beginning with 0xff). See store.Scanner.
//
// It reads Badger, not the cache: the cache holds only what Badger has
// committed, and a write through the Store returns once Badger has
// committed it, so a scan that starts after a Set returned sees it. Keys
// are strings fn may keep; values are valid only during the call. A
// canceled ctx stops the scan between keys; a Close, before the next
// chunk, with store.ErrClosed.
func (s *Store) Scan(ctx context.Context, prefix string, fn func(key string, value []byte) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	var c scanChunk
	for _, r := range valueRanges(prefix) {
		from := r.prefix
		for {
			if err := s.readChunk(ctx, r, from, &c); err != nil {
				return err
			}
			keys := string(c.keys) // one allocation per chunk
			k, v := 0, 0
			for _, it := range c.items {
				if err := ctx.Err(); err != nil {
					return err
				}
				value := c.values[v:it.valueEnd:it.valueEnd] // fn's append cannot reach the next value
				if err := fn(keys[k:it.keyEnd], value); err != nil {
					return err
				}
				k, v = it.keyEnd, it.valueEnd
			}
			if c.next == nil {
				break
			}
			from = c.next
		}
	}
	return nil
}

// readChunk reads the next chunk of r into c, starting at the Badger key
// from, in a read transaction of its own.
func (s *Store) readChunk(ctx context.Context, r scanRange, from []byte, c *scanChunk) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return store.ErrClosed
	}
	c.keys, c.values, c.items, c.next = c.keys[:0], c.values[:0], c.items[:0], nil
	return s.db.View(func(txn *bdg.Txn) error {
		opts := bdg.DefaultIteratorOptions
		opts.PrefetchValues = false
		opts.Prefix = r.prefix
		it := txn.NewIterator(opts)
		defer it.Close()
		// The iterator leaves out deleted and expired entries, and
		// Badger's own keys.
		for it.Seek(from); it.Valid(); it.Next() {
			if err := ctx.Err(); err != nil {
				return err
			}
			item := it.Item()
			k := item.Key()
			if r.beforeReserved && k[0] == reservedByte {
				return nil
			}
			if len(c.items) == scanChunkKeys || len(c.keys)+len(c.values) >= scanChunkBytes {
				c.next = item.KeyCopy(nil)
				return nil
			}
			c.keys = append(c.keys, k[r.strip:]...)
			err := item.Value(func(v []byte) error {
				c.values = append(c.values, v...)
				return nil
			})
			if err != nil {
				return err
			}
			c.items = append(c.items, scanItem{keyEnd: len(c.keys), valueEnd: len(c.values)})
		}
		return nil
	})
}
