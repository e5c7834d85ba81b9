package kvsession

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/kvsession/kvsession/internal/lock"
	"github.com/kvsession/kvsession/store"
)

// ErrLockTimeout is returned (wrapped) when a session's lock (Config.Lock)
// could not be taken within Config.LockWait. The request's session fails
// like on a store error: the middleware answers with its error handler.
var ErrLockTimeout = lock.ErrTimeout

// sessionLock is the lock Config.Lock holds on each session from its load
// to its save: in the store, when the store is a store.Locker shared by
// several processes, in process otherwise.
type sessionLock struct {
	table *lock.Table // nil when the store locks
	// The store's TryLock and Unlock (store.Calls); nil with a table.
	tryLock func(ctx context.Context, key string, lease time.Duration) (token string, ok bool, err error)
	unlock  func(ctx context.Context, key, token string) error
	lease   time.Duration
	wait    time.Duration
	events  *Events // the backend's, for the store's failures
}

// held is one request's hold on a session lock.
type held struct {
	key        string
	token      lock.Token
	storeToken string
}

func newSessionLock(cfg *compiled, calls store.Calls) *sessionLock {
	l := &sessionLock{lease: cfg.LockLease, wait: cfg.LockWait, events: &cfg.Events}
	if calls.TryLock != nil {
		l.tryLock, l.unlock = calls.TryLock, calls.Unlock
	} else {
		l.table = lock.New()
	}
	return l
}

func (l *sessionLock) acquire(ctx context.Context, key string) (held, error) {
	if l.table != nil {
		tok, err := l.table.Acquire(ctx, key, l.lease, l.wait)
		return held{key: key, token: tok}, err
	}
	// A shared store's lock cannot notify waiters: poll it, backing off
	// from a millisecond to 20.
	deadline := time.Now().Add(l.wait)
	for pause := time.Millisecond; ; pause = min(2*pause, 20*time.Millisecond) {
		tok, ok, err := l.tryLock(ctx, key, l.lease)
		if err != nil {
			return held{}, l.events.storeError(ctx, "lock", err)
		}
		if ok {
			return held{key: key, storeToken: tok}, nil
		}
		if time.Now().Add(pause).After(deadline) {
			return held{}, fmt.Errorf("kvsession: session lock not acquired within %v: %w", l.wait, ErrLockTimeout)
		}
		t := time.NewTimer(pause)
		select {
		case <-ctx.Done():
			t.Stop()
			return held{}, fmt.Errorf("kvsession: waiting for the session lock: %w", ctx.Err())
		case <-t.C:
		}
	}
}

func (l *sessionLock) release(ctx context.Context, h held) {
	if l.table != nil {
		l.table.Release(h.key, h.token)
		return
	}
	// A failed unlock leaves the lock to expire with its lease. Not under
	// the request's cancellation: a client that hung up must not leave
	// its session locked for the whole lease (the store's own call bound,
	// and StoreTimeout, still apply).
	if err := l.unlock(context.WithoutCancel(ctx), h.key, h.storeToken); err != nil {
		l.events.storeFailed(ctx, "lock", err)
	}
}

// lockFor takes the session's lock on key, unless the session is read-only
// or already holds it.
func (b *ServerBackend) lockFor(s *Session, key string) error {
	if b.locks == nil || s.readOnly || s.lock.key == key {
		return nil
	}
	b.unlock(s)
	if b.borrowKeys {
		// The lock table keeps its key while the lock is held or awaited,
		// which can outlast the session buffer key is a view of.
		key = strings.Clone(key)
	}
	// Timed only for a hook: the clock is read twice more per request.
	waited := b.cfg.Events.LockWaited
	var start time.Time
	if waited != nil {
		start = time.Now()
	}
	h, err := b.locks.acquire(s.ctx, key)
	if waited != nil {
		waited(s.ctx, time.Since(start), err == nil)
	}
	if err != nil {
		return err
	}
	s.lock = h
	return nil
}

// unlock releases the lock the session holds, if any.
func (b *ServerBackend) unlock(s *Session) {
	if s.lock.key != "" {
		b.locks.release(s.ctx, s.lock)
		s.lock = held{}
	}
}
