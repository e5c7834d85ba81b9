package redis

import (
	"context"
	"crypto/rand"
	"fmt"
	"time"

	"github.com/redis/rueidis"

	"github.com/kvsession/kvsession/store"
)

// unlockScript deletes a lock only if it still holds the caller's token:
// once the lease has run out and someone else has taken the lock, a late
// Unlock must not release theirs. GET and DEL in one script so that nothing
// runs between them.
var unlockScript = rueidis.NewLuaScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0`)

// TryLock takes the lock on key for lease with SET NX PX, under LockKey(key)
// (Prefix + "l:" + key), a keyspace that no value can collide with. The
// token is 128 random bits. The lease is rounded up to whole milliseconds;
// it must be positive, since a lock without one would outlive a crashed
// holder forever.
func (s *Store) TryLock(ctx context.Context, key string, lease time.Duration) (token string, ok bool, err error) {
	if err := s.check(ctx, key); err != nil {
		return "", false, err
	}
	if lease <= 0 {
		return "", false, fmt.Errorf("redis store: lock lease %v is not positive: %w", lease, store.ErrInvalidTTL)
	}
	token = rand.Text()
	err = s.c.Do(ctx, s.c.B().Set().Key(s.locks+key).Value(token).Nx().PxMilliseconds(millis(lease)).Build()).Error()
	switch {
	case err == nil:
		return token, true, nil
	case rueidis.IsRedisNil(err): // NX refused: somebody holds it
		return "", false, nil
	default:
		return "", false, s.fail(ctx, "SET NX", err)
	}
}

// Unlock releases the lock on key if token still holds it, and otherwise
// does nothing: a lock whose lease ran out and was taken again belongs to
// its new holder.
func (s *Store) Unlock(ctx context.Context, key, token string) error {
	if err := s.check(ctx, key); err != nil {
		return err
	}
	if token == "" {
		return nil // no TryLock hands out an empty token
	}
	if err := unlockScript.Exec(ctx, s.c, []string{s.locks + key}, []string{token}).Error(); err != nil {
		return s.fail(ctx, "unlock script", err)
	}
	return nil
}
