package redisstore

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"time"

	"github.com/redis/rueidis"

	"github.com/kvsession/kvsession/store"
)

// ErrConflict is returned (wrapped) by Update when the key changed under
// every one of its attempts.
var ErrConflict = errors.New("redis store: key changed under every update attempt")

const (
	// updateAttempts bounds Update's optimistic retries. Each conflict means
	// another writer succeeded, so the system as a whole makes progress;
	// the bound only keeps one caller from spinning forever on a key
	// written in a tight loop elsewhere.
	updateAttempts = 100

	// Between attempts Update sleeps a random time up to a ceiling that
	// doubles from updateBackoff to maxUpdateBackoff, so that writers that
	// collided do not collide again in step.
	updateBackoff    = 50 * time.Microsecond
	maxUpdateBackoff = 5 * time.Millisecond
)

// updateScript writes a key only if it still holds what Update read: a
// compare-and-set on the whole value, checked and applied in one script so
// that no other command runs in between.
//
//	KEYS[1]  the key
//	ARGV[1]  "1" if the key existed when read, "0" if not
//	ARGV[2]  the value read ("" if none)
//	ARGV[3]  "d" to delete, "s" to set
//	ARGV[4]  the new value
//	ARGV[5]  the TTL in milliseconds, "0" for none
//
// It returns 1 when it wrote, 0 when the key had changed.
var updateScript = rueidis.NewLuaScript(`
local cur = redis.call('GET', KEYS[1])
if ARGV[1] == '1' then
  if cur ~= ARGV[2] then return 0 end
elseif cur then
  return 0
end
if ARGV[3] == 'd' then
  redis.call('DEL', KEYS[1])
elseif ARGV[5] == '0' then
  redis.call('SET', KEYS[1], ARGV[4])
else
  redis.call('SET', KEYS[1], ARGV[4], 'PX', ARGV[5])
end
return 1`)

// Update applies a read-modify-write to key atomically with respect to
// every other Update, Set and Delete of key, from any process: it reads
// the value with GET, calls fn, and writes the result with a script that
// first checks the value is still the one read. If it is not, Update starts
// again (after a short random pause), so fn may run several times; after
// 100 conflicts it gives up with ErrConflict. CallTimeout bounds the whole
// of it, retries included. (kvsession's user index called it before users'
// sessions were kept in sets; kvsession no longer does.)
//
// fn gets the current value, nil if there is none. If fn returns write ==
// false nothing is written; otherwise a nil value deletes key and any other
// is stored with ttl (0: no expiry), replacing whatever TTL the key had.
// Comparing whole values rather than versions means an A→B→A change in
// between goes unnoticed, which is harmless: fn's result depends only on
// the value it was given.
func (s *Store) Update(parent context.Context, key string, fn func(old []byte) (value []byte, ttl time.Duration, write bool)) error {
	if err := s.check(parent, key); err != nil {
		return err
	}
	// One CallTimeout for the whole update, retries included: its caller
	// waits on it as on one call.
	ctx, cancel := s.bound(parent)
	defer cancel()
	k := s.vals + key
	keys := []string{k}
	for attempt := range updateAttempts {
		if attempt > 0 {
			if err := pause(ctx, attempt); err != nil {
				return s.fail(parent, ctx, "update", err)
			}
		}
		old, err := s.c.Do(ctx, s.c.B().Get().Key(k).Build()).AsBytes()
		existed := "1"
		switch {
		case rueidis.IsRedisNil(err):
			old, existed = nil, "0"
		case err != nil:
			return s.fail(parent, ctx, "GET", err)
		case old == nil:
			old = []byte{} // present but empty: not the same as missing
		}
		value, ttl, write := fn(old)
		if !write {
			return nil
		}
		if ttl < 0 {
			return store.ErrInvalidTTL
		}
		op, px := "s", "0"
		if value == nil {
			op = "d"
		} else if ttl > 0 {
			px = strconv.FormatInt(millis(ttl), 10)
		}
		// old is the reply's own memory, which nobody else holds; value is
		// fn's, and is copied if ctx can end the call before it is sent.
		args := []string{existed, rueidis.BinaryString(old), op, arg(ctx, value), px}
		n, err := updateScript.Exec(ctx, s.c, keys, args).AsInt64()
		if err != nil {
			return s.fail(parent, ctx, "update script", err)
		}
		if n == 1 {
			return nil
		}
	}
	if s.closed.Load() {
		return store.ErrClosed
	}
	return fmt.Errorf("redis store: update: %w (%d attempts)", ErrConflict, updateAttempts)
}

// pause sleeps before retry attempt (1, 2, ...) of an Update, or returns
// ctx's error if it ends first.
func pause(ctx context.Context, attempt int) error {
	ceiling := maxUpdateBackoff
	if attempt < 10 {
		ceiling = min(updateBackoff<<(attempt-1), maxUpdateBackoff)
	}
	t := time.NewTimer(rand.N(ceiling) + 1)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
