package badgerstore

import (
	"bytes"
	"errors"
	"sync"
	"time"

	bdg "github.com/dgraph-io/badger/v4"
)

// committer commits concurrent Sets and Deletes together, several to a
// Badger transaction. Badger's per-transaction work (a transaction to set
// up, a commit timestamp, a trip through its write channel and back) costs
// more than writing a session's entry, and a busy server has many sessions
// to write at once.
//
// There is no goroutine of its own. The first writer to arrive while no
// commit is under way leads: it takes every write queued so far, its own
// among them, and commits them. Writers arriving meanwhile queue; when the
// leader is done it wakes the first of them to lead the next batch, and
// the rest of its own batch to return. A lone writer thus commits its own
// write straight away, as it would without batching.
//
// Every write still returns only once Badger has committed it, so what a
// Set has acknowledged survives a crash of the process just as before.
// Writes commit in the order they queued, so of two writes to one key the
// later wins, and a transaction holds only writes, so it can never fail on
// a conflict.
//
// Conditional writes (Swap, AddMember) are decided by the leader, in queue
// order: their condition is checked against what the key holds once every
// write queued before them has taken effect, the earlier writes of their
// own batch included. Only one batch is decided and committed at a time, so
// nothing written through the committer can come between a condition and
// its write; Touch, which writes outside it, reads in a Badger transaction
// and retries on the conflict a batch's write causes it.
type committer struct {
	db    *bdg.DB
	cache *cache // the Store's, for Swap's hints; nil with no cache
	// guard, if set, is asked before each batch whether the disk can take
	// it; an error fails the batch's writes without reaching Badger.
	guard func(batchBytes int) error
	// commitBatch, if set, replaces commit: tests use it to hold a batch
	// back or make it panic.
	commitBatch func(batch []*pendingWrite)

	// busy is held while a batch is decided and committed, and by
	// DeleteAll around Badger's DropAll, so that no condition is checked
	// before a drop and written after it.
	busy sync.Mutex

	mu      sync.Mutex
	queue   []*pendingWrite
	spare   []*pendingWrite // a drained queue's array, to queue into again
	leading bool            // a writer is committing a batch
}

// pendingWrite is one write on its way to Badger. Its owner waits on wake,
// which the leader signals once: with lead set to hand it the next batch,
// or with err (and, for a conditional write, wrote) holding its outcome.
type pendingWrite struct {
	op    writeOp
	key   []byte
	value []byte // nil with opSwap: delete
	exp   uint64
	old   []byte // opSwap: what key must hold; nil for nothing

	// hint, for opSwap with the cache on: whether key held old when the
	// Swap began, as the cache knew it then (hintKnown), valid if no other
	// write to key began since (entry not overlapped) and, for a match on a
	// value, if that value has not expired by the time the leader decides.
	entry               *cached
	hintKnown, hintHeld bool
	hintExp             uint64

	err   error
	wrote bool // the write was made: false for a condition that failed
	// skipped: a conditional write decided not to be made from an
	// earlier write of the same, not yet committed, transaction.
	skipped bool
	done    bool // err and wrote are the outcome: decided without a write, refused, or committed
	lead    bool
	wake    chan struct{}
}

// writeOp is what a pendingWrite does.
type writeOp uint8

const (
	opSet    writeOp = iota // store value with exp
	opDelete                // delete key
	opSwap                  // store value (delete if nil) if key holds old
	opExtend                // store an empty value with exp unless key's expiry is as late
)

var pendingWrites = sync.Pool{New: func() any {
	return &pendingWrite{wake: make(chan struct{}, 1)}
}}

// errCommitPanicked reaches the other writers of a batch whose commit
// panicked inside Badger, for the writes whose outcome was not yet known:
// Badger may or may not have committed them. The leader itself goes on
// panicking.
var errCommitPanicked = errors.New("badger store: commit panicked; the write may or may not have been committed")

// maxSpare bounds the queue array kept for reuse, so that one burst of
// writers does not pin a large array for the life of the store.
const maxSpare = 1024

// write commits one Set or Delete and returns its outcome. key and value
// must stay untouched until it returns.
func (c *committer) write(op writeOp, key, value []byte, exp uint64) error {
	w := pendingWrites.Get().(*pendingWrite)
	w.op, w.key, w.value, w.exp = op, key, value, exp
	_, err := c.submit(w)
	return err
}

// submit queues w, waits for its outcome and returns w to the pool.
func (c *committer) submit(w *pendingWrite) (wrote bool, err error) {
	w.err, w.wrote, w.done, w.lead, w.skipped = nil, false, false, false, false

	c.mu.Lock()
	c.queue = append(c.queue, w)
	if c.leading {
		c.mu.Unlock()
		<-w.wake
	} else {
		c.leading = true
		w.lead = true
		c.mu.Unlock()
	}
	if w.lead {
		c.lead(w)
	}
	wrote, err = w.wrote, w.err
	*w = pendingWrite{wake: w.wake}
	pendingWrites.Put(w)
	return wrote, err
}

// lead commits the queue, which holds self, then hands over.
func (c *committer) lead(self *pendingWrite) {
	c.mu.Lock()
	batch := c.queue
	c.queue, c.spare = c.spare, nil
	c.mu.Unlock()

	committed := false
	defer func() {
		if !committed {
			for _, w := range batch {
				if !w.done {
					w.err, w.wrote = errCommitPanicked, false
				}
			}
		}
		c.handOver(self, batch)
	}()
	c.busy.Lock()
	defer c.busy.Unlock()
	if err := c.checkGuard(batch); err != nil {
		for _, w := range batch {
			w.err, w.done = err, true
		}
	} else if c.commitBatch != nil {
		c.commitBatch(batch)
	} else {
		c.commit(batch)
	}
	committed = true
}

// checkGuard asks the guard, if any, about batch.
func (c *committer) checkGuard(batch []*pendingWrite) error {
	if c.guard == nil {
		return nil
	}
	n := 0
	for _, w := range batch {
		n += len(w.key) + len(w.value) + entryHeader
	}
	return c.guard(n)
}

// entryHeader is about what Badger's log adds to each entry beyond key and
// value: a header, a checksum and a version.
const entryHeader = 32

// handOver wakes the next leader, if writes have queued meanwhile, and then
// every writer of batch but self.
func (c *committer) handOver(self *pendingWrite, batch []*pendingWrite) {
	c.mu.Lock()
	if len(c.queue) > 0 {
		next := c.queue[0]
		next.lead = true
		next.wake <- struct{}{}
	} else {
		c.leading = false
	}
	c.mu.Unlock()

	for i, w := range batch {
		batch[i] = nil
		if w != self {
			w.wake <- struct{}{}
		}
	}
	if cap(batch) > maxSpare {
		return
	}
	c.mu.Lock()
	if c.spare == nil {
		c.spare = batch[:0]
	}
	c.mu.Unlock()
}

// commit writes batch in as few transactions as Badger allows, and sets each
// write's outcome.
func (c *committer) commit(batch []*pendingWrite) {
	txn := c.db.NewTransaction(true)
	var reads *bdg.Txn // for conditions: made when first needed
	// Release the transactions' read marks should Badger panic; after a
	// Commit, Discard does nothing.
	defer func() {
		txn.Discard()
		if reads != nil {
			reads.Discard()
		}
	}()
	first := 0 // batch[first:i] are in txn, but for those done already
	for i, w := range batch {
		if w.op == opSwap || w.op == opExtend {
			write, dep, err := c.decide(batch, i, &reads)
			if err == nil && !write && dep >= first {
				// Decided from a write of the transaction still open: its
				// outcome is that transaction's (see finish).
				w.skipped = true
				continue
			}
			if err != nil || !write {
				w.err, w.done = err, true
				continue
			}
		}
		err := w.addTo(txn)
		if errors.Is(err, bdg.ErrTxnTooBig) && i > first {
			finish(txn, batch[first:i])
			txn = c.db.NewTransaction(true)
			first = i
			if w.op == opSwap || w.op == opExtend {
				// What decided it may not have been committed after all.
				write, _, err := c.decide(batch, i, &reads)
				if err != nil || !write {
					w.err, w.done = err, true
					continue
				}
			}
			err = w.addTo(txn)
		}
		w.err, w.wrote, w.done = err, err == nil, err != nil
	}
	finish(txn, batch[first:])
}

// decide reports whether batch[i], a conditional write, is to be made,
// given what its key holds after every write before it. The last write
// to the key earlier in the batch that Badger has not refused decides
// (if its transaction fails, so does this write's, which follows it);
// without one, a Swap's hint or, failing that, Badger itself.
func (c *committer) decide(batch []*pendingWrite, i int, reads **bdg.Txn) (bool, int, error) {
	w := batch[i]
	for j := i - 1; j >= 0; j-- {
		p := batch[j]
		if !p.wrote || !bytes.Equal(p.key, w.key) {
			continue
		}
		held := p.op != opDelete && (p.op != opSwap || p.value != nil)
		return w.holds(held, p.value, p.exp, uint64(time.Now().Unix())), j, nil
	}
	if w.op == opSwap {
		if held, ok := c.cache.hint(w); ok {
			return held, -1, nil
		}
	}
	if *reads == nil {
		*reads = c.db.NewTransaction(false)
	}
	item, err := (*reads).Get(w.key)
	if errors.Is(err, bdg.ErrKeyNotFound) {
		return w.holds(false, nil, 0, 0), -1, nil
	}
	if err != nil {
		return false, -1, err
	}
	if w.op == opExtend {
		return w.holds(true, nil, item.ExpiresAt(), uint64(time.Now().Unix())), -1, nil
	}
	var write bool
	err = item.Value(func(v []byte) error {
		write = w.holds(true, v, 0, 0)
		return nil
	})
	return write, -1, err
}

// holds reports whether w is to be written when its key holds value with
// expiry exp (held true) or nothing. exp and now matter only to an entry
// decided from an earlier write in the batch, which may have been written
// already expired; Badger's reads leave out what has expired.
func (w *pendingWrite) holds(held bool, value []byte, exp, now uint64) bool {
	if held && exp != 0 && exp <= now {
		held = false
	}
	switch w.op {
	case opSwap:
		if w.old == nil {
			return !held
		}
		return held && bytes.Equal(value, w.old)
	default: // opExtend: write unless what is there lasts as long
		return !held || exp != 0 && (w.exp == 0 || w.exp > exp)
	}
}

func (w *pendingWrite) addTo(txn *bdg.Txn) error {
	if w.op == opDelete || w.op == opSwap && w.value == nil {
		return txn.Delete(w.key)
	}
	e := bdg.NewEntry(w.key, w.value)
	e.ExpiresAt = w.exp
	return txn.SetEntry(e)
}

// finish commits txn, which holds the writes of ws that are not done
// already, and gives them its outcome.
func finish(txn *bdg.Txn, ws []*pendingWrite) {
	err := txn.Commit()
	for _, w := range ws {
		switch {
		case w.done:
		case w.skipped:
			// Decided not to write from a write of txn: right if txn
			// committed, unknown if not.
			w.err, w.wrote, w.done = err, false, true
		default:
			w.err, w.wrote, w.done = err, err == nil, true
		}
	}
}
