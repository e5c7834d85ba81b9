package faultstore

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/kvsession/kvsession/store"
	"github.com/kvsession/kvsession/store/memstore"
)

// Shared is a memory store with what a store shared by several processes
// has (Redis does): a store.Locker, so that tests can take the backend
// down that path, and wrap it in faults, without a server. Its locks are
// atomic within this process only, and pass the storetest suite's Locker
// checks. The zero value needs only Store set; NewShared also runs the
// leases on the memory store's clock (memstore.Options.Now). It inherits
// the memory store's other abilities (Appender, Scanner, Purger) and
// Traits, and keeps copies of the keys it locks.
type Shared struct {
	*memstore.Store
	now func() time.Time // nil: time.Now

	mu     sync.Mutex
	locks  map[string]sharedLock
	n      int
	closed bool
}

type sharedLock struct {
	token   string
	expires time.Time
}

var _ store.Locker = (*Shared)(nil)

// NewShared returns a Shared over a new memory store.
func NewShared(opts memstore.Options) *Shared {
	return &Shared{Store: memstore.New(opts), now: opts.Now}
}

func (s *Shared) clock() time.Time {
	if s.now != nil {
		return s.now()
	}
	return time.Now()
}

// check is what every lock call checks first, under s.mu.
func (s *Shared) check(ctx context.Context, key string) error {
	switch {
	case s.closed:
		return store.ErrClosed
	case key == "":
		return store.ErrEmptyKey
	}
	return ctx.Err()
}

// TryLock takes the lock on key for lease if nobody holds it, or its
// holder's lease has run out.
func (s *Shared) TryLock(ctx context.Context, key string, lease time.Duration) (string, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(ctx, key); err != nil {
		return "", false, err
	}
	if lease <= 0 {
		return "", false, fmt.Errorf("faultstore: lock lease %v is not positive: %w", lease, store.ErrInvalidTTL)
	}
	now := s.clock()
	if l, held := s.locks[key]; held && now.Before(l.expires) {
		return "", false, nil
	}
	if s.locks == nil {
		s.locks = map[string]sharedLock{}
	}
	s.n++
	token := strconv.Itoa(s.n)
	s.locks[strings.Clone(key)] = sharedLock{token: token, expires: now.Add(lease)}
	return token, true, nil
}

// Unlock releases the lock on key if token holds it.
func (s *Shared) Unlock(ctx context.Context, key, token string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(ctx, key); err != nil {
		return err
	}
	if l, held := s.locks[key]; held && l.token == token {
		delete(s.locks, key)
	}
	return nil
}

// Close closes the memory store and makes the lock calls fail with
// store.ErrClosed, as every other call then does.
func (s *Shared) Close() error {
	s.mu.Lock()
	s.closed = true
	s.locks = nil
	s.mu.Unlock()
	return s.Store.Close()
}
