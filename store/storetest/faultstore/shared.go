package faultstore

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/kvsession/kvsession/store"
	"github.com/kvsession/kvsession/store/memory"
)

// Shared is a memory store with what a store shared by several processes
// has (Redis does): a store.Locker and the user index's Update, so that
// tests can take the backend down those paths, and wrap them in faults,
// without a server. Its locks and updates are atomic within this process
// only. The zero value needs only Store set. It inherits the memory
// store's store.KeyBorrower, so it keeps copies of the keys it locks.
type Shared struct {
	*memory.Store
	mu    sync.Mutex
	locks map[string]string // key → token of the holder
	n     int
}

// NewShared returns a Shared over a new memory store.
func NewShared(opts memory.Options) *Shared {
	return &Shared{Store: memory.New(opts)}
}

// TryLock takes the lock on key if nobody holds it. Leases are not
// enforced: tests release what they take.
func (s *Shared) TryLock(ctx context.Context, key string, _ time.Duration) (string, bool, error) {
	if err := ctx.Err(); err != nil {
		return "", false, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, held := s.locks[key]; held {
		return "", false, nil
	}
	if s.locks == nil {
		s.locks = map[string]string{}
	}
	s.n++
	token := strconv.Itoa(s.n)
	s.locks[strings.Clone(key)] = token
	return token, true, nil
}

// Unlock releases the lock on key if token holds it.
func (s *Shared) Unlock(_ context.Context, key, token string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.locks[key] == token {
		delete(s.locks, key)
	}
	return nil
}

// Update reads key, hands its value to fn (nil if missing) and writes
// what fn returns (deleting the key for nil) if fn says to, atomically
// against other Updates.
func (s *Shared) Update(ctx context.Context, key string, fn func(old []byte) ([]byte, time.Duration, bool)) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	old, err := s.Get(ctx, key)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return err
	}
	v, ttl, write := fn(old)
	switch {
	case !write:
		return nil
	case v == nil:
		return s.Delete(ctx, key)
	}
	return s.Set(ctx, key, v, ttl)
}
