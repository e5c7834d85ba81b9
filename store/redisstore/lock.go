package redisstore

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
var unlockScript = rueidis.NewLuaScript(unlockSource)

const unlockSource = `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0`

// TryLock takes the lock on key for lease with SET NX PX, under LockKey(key)
// (Prefix + "l:" + key), a keyspace that no value can collide with. The
// token is 128 random bits. The lease is rounded up to whole milliseconds;
// it must be positive, since a lock without one would outlive a crashed
// holder forever.
//
// When the SET fails without an answer from Redis (CallTimeout or the
// context ran out, or the connection broke), it may still take the lock
// later, when a stalled Redis resumes; the store then releases that lock
// itself as soon as Redis answers again (see release.go), so that the
// session is not left locked for the whole lease with nobody holding the
// token.
func (s *Store) TryLock(parent context.Context, key string, lease time.Duration) (token string, ok bool, err error) {
	if err := s.check(parent, key); err != nil {
		return "", false, err
	}
	if lease <= 0 {
		return "", false, fmt.Errorf("redis store: lock lease %v is not positive: %w", lease, store.ErrInvalidTTL)
	}
	ctx, cancel := s.bound(parent)
	defer cancel()
	token = rand.Text()
	lk := s.locks + key
	err = s.c.Do(ctx, s.c.B().Set().Key(lk).Value(token).Nx().PxMilliseconds(millis(lease)).Build()).Error()
	switch {
	case err == nil:
		return token, true, nil
	case rueidis.IsRedisNil(err): // NX refused: somebody holds it
		return "", false, nil
	default:
		s.orphaned(lk, token, err, lease)
		return "", false, s.fail(parent, ctx, "SET NX", err)
	}
}

// orphaned queues the lock on redisKey for release by token when err, the
// error of a command that would take or free it, leaves unknown whether
// Redis ran that command. An error Redis answered with means it did not.
func (s *Store) orphaned(redisKey, token string, err error, lease time.Duration) {
	if _, answered := rueidis.IsRedisErr(err); answered || s.closed.Load() {
		return
	}
	s.rel.add(redisKey, token, time.Now().Add(max(lease, orphanLife)))
}

// Unlock releases the lock on key if token still holds it, and otherwise
// does nothing: a lock whose lease ran out and was taken again belongs to
// its new holder. When Redis does not answer, or ctx has ended (a request
// whose client went away still releases its session), the store releases
// the lock in the background once Redis answers, and Unlock returns the
// error.
func (s *Store) Unlock(parent context.Context, key, token string) error {
	if err := s.check(parent, key); err != nil {
		if token != "" && key != "" && !s.closed.Load() {
			s.rel.add(s.locks+key, token, time.Now().Add(orphanLife))
		}
		return err
	}
	if token == "" {
		return nil // no TryLock hands out an empty token
	}
	ctx, cancel := s.bound(parent)
	defer cancel()
	lk := s.locks + key
	if err := unlockScript.Exec(ctx, s.c, []string{lk}, []string{token}).Error(); err != nil {
		s.orphaned(lk, token, err, 0)
		return s.fail(parent, ctx, "unlock script", err)
	}
	return nil
}
