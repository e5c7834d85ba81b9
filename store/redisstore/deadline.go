package redisstore

import (
	"context"
	"sync/atomic"
	"time"
)

// Every call a Store makes runs under CallTimeout. context.WithTimeout per
// call costs a timer and five allocations, twice per session request
// (load and save). A caller's context that can never end (Done is nil: no
// deadline, no cancellation, as kvsession's fasthttp middleware passes)
// needs no deadline of its own: calls starting within the same
// 1/deadlineSlots of CallTimeout share one, and the call gets a view that
// keeps the caller's values (tracing hooks read them). So such a call is
// given up between (1 - 1/deadlineSlots) × CallTimeout and CallTimeout
// after it started, at the cost of one small allocation.

// deadlineSlots is how many shared deadlines one CallTimeout spans.
const deadlineSlots = 32

// sharedDeadlines hands out the current shared deadline.
type sharedDeadlines struct {
	timeout time.Duration
	epoch   time.Time // slots are measured on the monotonic clock from here
	cur     atomic.Pointer[deadlineSlot]
}

// deadlineSlot is one shared deadline: a context that ends timeout after
// start (nanoseconds since epoch). Its timer frees it when it fires.
type deadlineSlot struct {
	ctx    context.Context
	cancel context.CancelFunc
	start  int64
}

func (d *sharedDeadlines) init(timeout time.Duration) {
	d.timeout, d.epoch = timeout, time.Now()
}

// get returns a context that ends no later than timeout from now, and no
// earlier than timeout less one slot.
func (d *sharedDeadlines) get() context.Context {
	now := int64(time.Since(d.epoch))
	cur := d.cur.Load()
	if cur != nil && now-cur.start < int64(d.timeout/deadlineSlots) {
		return cur.ctx
	}
	ctx, cancel := context.WithTimeout(context.Background(), d.timeout)
	next := &deadlineSlot{ctx: ctx, cancel: cancel, start: now}
	if !d.cur.CompareAndSwap(cur, next) {
		cancel() // another call made one first: use it
		if won := d.cur.Load(); won != nil {
			return won.ctx
		}
		return d.get()
	}
	return ctx
}

// sharedDeadline is the caller's context for its values, and a shared
// deadline for everything else.
type sharedDeadline struct {
	context.Context                 // the caller's: Value
	deadline        context.Context // Deadline, Done and Err
}

func (c *sharedDeadline) Deadline() (time.Time, bool) { return c.deadline.Deadline() }
func (c *sharedDeadline) Done() <-chan struct{}       { return c.deadline.Done() }
func (c *sharedDeadline) Err() error                  { return c.deadline.Err() }
