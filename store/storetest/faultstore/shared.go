package faultstore

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/kvsession/kvsession/store/memstore"
)

// Shared is a memory store with what a store shared by several processes
// has (Redis does): a store.Locker, so that tests can take the backend
// down that path, and wrap it in faults, without a server. Its locks are
// atomic within this process only. The zero value needs only Store set. It inherits the memory
// store's store.KeyBorrower, so it keeps copies of the keys it locks.
type Shared struct {
	*memstore.Store
	mu    sync.Mutex
	locks map[string]string // key → token of the holder
	n     int
}

// NewShared returns a Shared over a new memory store.
func NewShared(opts memstore.Options) *Shared {
	return &Shared{Store: memstore.New(opts)}
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
