// Package lock is an in-process table of per-key exclusive locks with leases.
//
// It backs kvsession's "locked" concurrency mode for in-process stores (memory,
// Badger): a request acquires the lock on its session's store key when it first
// loads the session and releases it when its session work ends, so two parallel
// requests on one session run their load-modify-save one after the other and no
// write is lost, as PHP's and ASP.NET's session state do.
//
// Each lock carries a lease: a holder that neither releases nor finishes within
// its lease (a crashed or hung request) loses the lock to the next waiter, so one
// bad request cannot block a session forever. Waiting is bounded too: Acquire
// gives up after its wait with an error that errors.Is(err, ErrTimeout).
//
// Waiters queue per key in FIFO order and the lock is handed directly from the
// releaser to the first waiter, so late arrivals cannot overtake queued waiters
// and no waiter starves under steady contention.
package lock

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"sync"
	"time"
)

// ErrTimeout reports that a lock was not acquired within the wait given to
// Acquire. The error Acquire returns wraps it and names the wait.
var ErrTimeout = errors.New("kvsession: session lock not acquired in time")

// Token identifies one holding of a lock; Release needs it, so a holder whose
// lease ran out and was taken over cannot release the new holder's lock.
// Tokens are unique within a Table; the zero Token is never handed out.
type Token uint64

const (
	numShards = 64 // a power of two
	// maxFree bounds each shard's cache of unused entries, which saves the
	// uncontended path an allocation per Acquire.
	maxFree = 16
	// maxFreeWaiters: an entry whose waiter queue grew past this capacity is
	// left to the garbage collector instead of being cached.
	maxFreeWaiters = 64
)

// Table is a set of per-key locks. Entries exist only while a key is held or
// waited for, so the table stays as small as the set of keys in use.
// A Table must be made with New; it is safe for concurrent use.
type Table struct {
	seed   maphash.Seed
	epoch  time.Time // monotonic origin of the deadlines below
	shards [numShards]shard
}

type shard struct {
	mu   sync.Mutex
	m    map[string]*entry
	gen  uint64   // last Token issued here; ≡ shard index mod numShards, so Tokens are unique in the Table
	free []*entry // unused entries, at most maxFree
	_    [64]byte // keep neighbouring shards' mutexes off one cache line
}

// entry is one key's lock. Invariant: tok == 0 implies len(waiters) == 0,
// because a release hands the lock straight to the first waiter.
type entry struct {
	tok      Token     // current holder, 0 if none
	deadline int64     // end of the holder's lease in Table.now units, 0 if none
	waiters  []*waiter // FIFO; waiters[0] also watches the holder's lease
}

type waiter struct {
	// ch is signalled (without blocking; capacity 1) when the waiter has been
	// granted the lock or has become the head of the queue and must start
	// watching the holder's lease. The waiter rechecks the entry either way.
	ch      chan struct{}
	lease   time.Duration
	tok     Token
	granted bool
}

// New returns an empty Table.
func New() *Table {
	t := &Table{seed: maphash.MakeSeed(), epoch: time.Now()}
	for i := range t.shards {
		t.shards[i].m = make(map[string]*entry)
		t.shards[i].gen = uint64(i)
	}
	return t
}

// now is monotonic nanoseconds since t.epoch, plus one so that it is never 0.
func (t *Table) now() int64 { return int64(time.Since(t.epoch)) + 1 }

func (t *Table) shard(key string) *shard {
	return &t.shards[maphash.String(t.seed, key)&(numShards-1)]
}

// Acquire blocks until it holds the lock on key and returns the Token that
// releases it.
//
// It acquires when the lock is free, or when the current holder's lease has run
// out (the lease is then taken over, and the old holder's Release will report
// false). Waiters are served in FIFO order.
//
// lease > 0 bounds how long this holder may keep the lock without releasing it;
// lease <= 0 means no lease: the lock is held until Release.
//
// wait > 0 bounds how long Acquire waits; when it passes, Acquire returns an
// error that errors.Is(err, ErrTimeout). wait <= 0 means no bound other than
// ctx (and the holder's lease). When ctx is done first, Acquire returns an error
// wrapping ctx.Err(). A ctx that is already done fails Acquire even when the
// lock is free. If the lock is handed over at the very moment the wait ends,
// Acquire returns the lock rather than ErrTimeout; if ctx is done at that
// moment, the lock is passed on to the next waiter and ctx's error returned.
//
// The key is not part of any error, as session store keys may be secrets.
func (t *Table) Acquire(ctx context.Context, key string, lease, wait time.Duration) (Token, error) {
	if ctx == nil {
		ctx = context.Background()
	}
	if err := ctx.Err(); err != nil {
		return 0, ctxError(err)
	}
	s := t.shard(key)
	s.mu.Lock()
	e := s.m[key]
	var now int64
	if e == nil {
		e = s.newEntry()
		s.m[key] = e
	} else if e.tok != 0 && e.deadline != 0 {
		now = t.now()
		if now >= e.deadline {
			// The holder's lease ran out: the first waiter, if any, takes over.
			e.tok, e.deadline = 0, 0
			s.grantNext(t, e, now)
		}
	}
	if e.tok == 0 { // free, hence no waiters
		s.gen += numShards
		e.tok = Token(s.gen)
		if lease > 0 {
			if now == 0 {
				now = t.now()
			}
			e.deadline = now + int64(lease)
		}
		tok := e.tok
		s.mu.Unlock()
		return tok, nil
	}
	return t.wait(ctx, s, key, e, lease, wait, now)
}

// wait queues a waiter on key's held entry e and blocks until it is granted the
// lock, its wait passes, or ctx is done. s.mu is held on entry and released on
// return. now is t.now() or 0 if not yet read.
func (t *Table) wait(ctx context.Context, s *shard, key string, e *entry, lease, wait time.Duration, now int64) (Token, error) {
	if now == 0 {
		now = t.now()
	}
	w := &waiter{ch: make(chan struct{}, 1), lease: lease}
	e.waiters = append(e.waiters, w)
	var waitDeadline int64
	if wait > 0 {
		waitDeadline = now + int64(wait)
	}
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		// Sleep until signalled, ctx is done, the wait passes or, for the head
		// of the queue, the holder's lease runs out. While w is queued the
		// entry has a waiter and so stays in the map: e remains valid.
		next := waitDeadline
		if e.waiters[0] == w && e.deadline != 0 && (next == 0 || e.deadline < next) {
			next = e.deadline
		}
		var tc <-chan time.Time
		if next != 0 {
			d := time.Duration(next - now)
			if timer == nil {
				timer = time.NewTimer(d)
			} else {
				timer.Reset(d) // Go >= 1.23 timers: no stale tick after Reset
			}
			tc = timer.C
		}
		s.mu.Unlock()
		select {
		case <-w.ch:
		case <-tc:
		case <-ctx.Done():
		}
		s.mu.Lock()
		now = t.now()
		if err := ctx.Err(); err != nil {
			if w.granted {
				// Pass the lock on rather than hand it to a caller who is
				// told it failed.
				e.tok, e.deadline = 0, 0
				s.grantNext(t, e, now)
				if e.tok == 0 {
					s.remove(key, e)
				}
			} else {
				s.removeWaiter(e, w) // e stays held, so it stays
			}
			s.mu.Unlock()
			return 0, ctxError(err)
		}
		if !w.granted && e.deadline != 0 && now >= e.deadline {
			// The holder's lease ran out: the head of the queue (maybe w)
			// takes over.
			e.tok, e.deadline = 0, 0
			s.grantNext(t, e, now)
		}
		if w.granted {
			s.mu.Unlock()
			return w.tok, nil
		}
		if waitDeadline != 0 && now >= waitDeadline {
			s.removeWaiter(e, w)
			s.mu.Unlock()
			return 0, &timeoutError{wait: wait}
		}
	}
}

// Release frees the lock on key if tok still holds it, handing it to the first
// waiter if there is one, and reports whether it did. It returns false, and
// changes nothing, when tok no longer holds the lock: when the holder's lease
// ran out and another Acquire took the lock over, when tok was already
// released, or when tok is not a token for key. A holder whose lease ran out but
// whose lock nobody took over still holds it, and its Release returns true.
func (t *Table) Release(key string, tok Token) bool {
	if tok == 0 {
		return false
	}
	s := t.shard(key)
	s.mu.Lock()
	e := s.m[key]
	if e == nil || e.tok != tok {
		s.mu.Unlock()
		return false
	}
	e.tok, e.deadline = 0, 0
	if len(e.waiters) > 0 {
		s.grantNext(t, e, 0)
	} else {
		s.remove(key, e)
	}
	s.mu.Unlock()
	return true
}

// grantNext hands the free entry e (e.tok == 0) to its first waiter, if any,
// and signals the new head of the queue to watch the new holder's lease.
// now is t.now() or 0 if not yet read. It leaves an entry without waiters
// free; the caller removes it from the map if it should go.
func (s *shard) grantNext(t *Table, e *entry, now int64) {
	if len(e.waiters) == 0 {
		return
	}
	w := e.waiters[0]
	n := copy(e.waiters, e.waiters[1:])
	e.waiters[n] = nil
	e.waiters = e.waiters[:n]

	s.gen += numShards
	e.tok = Token(s.gen)
	e.deadline = 0
	if w.lease > 0 {
		if now == 0 {
			now = t.now()
		}
		e.deadline = now + int64(w.lease)
	}
	w.tok, w.granted = e.tok, true
	signal(w)
	if len(e.waiters) > 0 {
		signal(e.waiters[0])
	}
}

// removeWaiter takes w, not granted, out of e's queue; if w was the head, the
// new head is signalled to watch the holder's lease.
func (s *shard) removeWaiter(e *entry, w *waiter) {
	for i, x := range e.waiters {
		if x != w {
			continue
		}
		n := i + copy(e.waiters[i:], e.waiters[i+1:])
		e.waiters[n] = nil
		e.waiters = e.waiters[:n]
		if i == 0 && n > 0 {
			signal(e.waiters[0])
		}
		return
	}
}

func signal(w *waiter) {
	select {
	case w.ch <- struct{}{}:
	default: // already signalled; it will recheck
	}
}

func (s *shard) newEntry() *entry {
	if n := len(s.free); n > 0 {
		e := s.free[n-1]
		s.free[n-1] = nil
		s.free = s.free[:n-1]
		return e
	}
	return &entry{}
}

// remove deletes the idle entry e of key and caches it for reuse.
func (s *shard) remove(key string, e *entry) {
	delete(s.m, key)
	if len(s.free) < maxFree && cap(e.waiters) <= maxFreeWaiters {
		*e = entry{waiters: e.waiters[:0]}
		s.free = append(s.free, e)
	}
}

// len is the number of keys held or waited for.
func (t *Table) len() int {
	n := 0
	for i := range t.shards {
		s := &t.shards[i]
		s.mu.Lock()
		n += len(s.m)
		s.mu.Unlock()
	}
	return n
}

// waiting is the number of Acquire calls waiting for key.
func (t *Table) waiting(key string) int {
	s := t.shard(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	if e := s.m[key]; e != nil {
		return len(e.waiters)
	}
	return 0
}

type timeoutError struct{ wait time.Duration }

func (e *timeoutError) Error() string {
	return fmt.Sprintf("kvsession: session lock not acquired within %v", e.wait)
}

func (e *timeoutError) Unwrap() error { return ErrTimeout }

func ctxError(err error) error {
	return fmt.Errorf("kvsession: waiting for the session lock: %w", err)
}
