package redisstore

import (
	"context"
	"sync"
	"time"

	"github.com/redis/rueidis"
)

// A TryLock whose SET NX failed on the way (a timeout, a broken
// connection) may still have taken the lock: the command can sit in a
// socket buffer of a stalled Redis and run when it resumes, long after its
// caller was told the call failed and dropped the token. Nobody could then
// release that lock, and its session would stay locked for the whole lease.
// An Unlock that failed the same way leaves its lock held just as long.
// So the store keeps the token of every such call and releases the lock
// itself, with the same token-checked script as Unlock, once Redis answers
// again.
//
// One goroutine does it, started when the first such lock is queued and
// gone when none is left, so that a healthy store runs none. It sends the
// queued unlocks together, backing off from releaseBackoff to
// maxReleaseBackoff while Redis does not answer.
//
// An unlock that finds the lock free or someone else's (it answers 0) does
// not prove that the lost SET NX will not still run: it may wait on another
// of the client's connections, which Redis reads in no set order with the
// unlock's. So a token is kept until one unlock has deleted the lock, or two
// in a row, the second sent after the first was answered, have found it
// not there: by then Redis has been answering for a round trip and has read
// what was waiting in its sockets. A queued lock is forgotten once its lease
// has passed, or, after a failed Unlock, whose lease the store does not
// know, after orphanLife.

const (
	releaseBackoff    = 20 * time.Millisecond
	maxReleaseBackoff = time.Second

	// releaseAttempt bounds one round of unlocks.
	releaseAttempt = time.Second

	// orphanLife is how long the lock of a failed Unlock is tried for. A
	// lease is usually shorter (kvsession's default is 30 seconds); an
	// unlock after the lease has passed does nothing, since the token no
	// longer matches.
	orphanLife = 2 * time.Minute

	// A round sends at most maxReleaseBatch unlocks, and only
	// releaseProbe after a round Redis did not answer: a stalled Redis
	// leaves every command sent to it waiting in the client's pipeline, and
	// the unlocks of a long queue, resent every round, would crowd out the
	// application's own calls and then all run at once when it resumes.
	maxReleaseBatch = 1000
	releaseProbe    = 16

	// maxOrphans bounds the queue while Redis is away. When it is full the
	// oldest is dropped: its lock expires with its lease, as every lock
	// did before there was a queue.
	maxOrphans = 10000
)

// orphan is a lock to release: its Redis key and token, until when to try,
// and how many unlocks have found it not there.
type orphan struct {
	key, token string
	until      time.Time
	misses     int
}

type releaser struct {
	s      *Store
	ctx    context.Context // ends at stop
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	queue   []*orphan
	running bool
	stopped bool
}

func (r *releaser) init(s *Store) {
	r.s = s
	r.ctx, r.cancel = context.WithCancel(context.Background())
}

// stop ends the goroutine, if any, and waits for it. Queued locks are
// dropped: they expire with their leases.
func (r *releaser) stop() {
	r.mu.Lock()
	r.stopped = true
	r.queue = nil
	r.mu.Unlock()
	r.cancel()
	r.wg.Wait()
}

// add queues the lock on redisKey held by token, to be released until
// until.
func (r *releaser) add(redisKey, token string, until time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.stopped {
		return
	}
	if len(r.queue) >= maxOrphans {
		r.queue[0] = nil
		r.queue = r.queue[1:]
	}
	r.queue = append(r.queue, &orphan{key: redisKey, token: token, until: until})
	if !r.running {
		r.running = true
		r.wg.Add(1)
		go r.run()
	}
}

// pending returns how many locks are queued, for tests.
func (r *releaser) pending() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.queue)
}

func (r *releaser) run() {
	defer r.wg.Done()
	backoff, limit := releaseBackoff, maxReleaseBatch
	for {
		batch := r.take(limit)
		if batch == nil {
			return
		}
		if r.attempt(batch) {
			backoff, limit = releaseBackoff, maxReleaseBatch
		} else {
			backoff, limit = min(2*backoff, maxReleaseBackoff), releaseProbe
		}
		t := time.NewTimer(backoff)
		select {
		case <-r.ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// take drops what is settled or out of time and returns a copy of up to
// limit of the rest, moving those to the back of the queue so that every
// lock gets its turn; or nil (and marks the goroutine gone) if there is
// none.
func (r *releaser) take(limit int) []*orphan {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := time.Now()
	live := r.queue[:0]
	for _, o := range r.queue {
		if o.misses < 2 && now.Before(o.until) {
			live = append(live, o)
		}
	}
	clear(r.queue[len(live):])
	r.queue = live
	if len(live) == 0 || r.stopped {
		r.running = false
		return nil
	}
	if len(live) <= limit {
		return append([]*orphan(nil), live...)
	}
	batch := append([]*orphan(nil), live[:limit]...)
	r.queue = append(append(make([]*orphan, 0, len(live)), live[limit:]...), batch...)
	return batch
}

// attempt sends one unlock for each orphan in batch, pipelined, and
// records the answers. It reports whether Redis answered them all.
func (r *releaser) attempt(batch []*orphan) bool {
	ctx, cancel := context.WithTimeout(r.ctx, releaseAttempt)
	defer cancel()
	// Plain EVAL, not the EVALSHA of Unlock: a Redis that was restarted
	// has forgotten its scripts, and EVAL needs no SCRIPT LOAD first
	// (which rueidis's ExecMulti would send to every node, failing the
	// whole round while one is down). Each command has one key, so a
	// cluster client routes each to its own node.
	c := r.s.c
	cmds := make(rueidis.Commands, len(batch))
	for i, o := range batch {
		cmds[i] = c.B().Eval().Script(unlockSource).Numkeys(1).Key(o.key).Arg(o.token).Build()
	}
	answered := true
	res := c.DoMulti(ctx, cmds...)
	r.mu.Lock()
	defer r.mu.Unlock()
	for i, o := range batch {
		n, err := res[i].AsInt64()
		switch {
		case err != nil:
			answered = false
			o.misses = 0 // the next answer starts the count again
		case n == 1:
			o.misses = 2 // released: done
		default:
			o.misses++
		}
	}
	return answered
}
