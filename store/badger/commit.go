package badger

import (
	"errors"
	"sync"

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
type committer struct {
	db *bdg.DB
	// commitBatch, if set, replaces commit: tests use it to hold a batch
	// back or make it panic.
	commitBatch func(batch []*pendingWrite)

	mu      sync.Mutex
	queue   []*pendingWrite
	spare   []*pendingWrite // a drained queue's array, to queue into again
	leading bool            // a writer is committing a batch
}

// pendingWrite is one Set or Delete on its way to Badger. Its owner waits
// on wake, which the leader signals once: with lead set to hand it the
// next batch, or with err holding its write's outcome.
type pendingWrite struct {
	key     []byte
	value   []byte
	exp     uint64
	deleted bool

	err  error
	done bool // err is the write's outcome: Badger refused it, or its transaction's commit returned
	lead bool
	wake chan struct{}
}

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

// write commits one Set (deleted false) or Delete and returns its outcome.
// key and value must stay untouched until it returns.
func (c *committer) write(key, value []byte, exp uint64, deleted bool) error {
	w := pendingWrites.Get().(*pendingWrite)
	w.key, w.value, w.exp, w.deleted = key, value, exp, deleted
	w.err, w.done, w.lead = nil, false, false

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
	err := w.err
	w.key, w.value, w.err = nil, nil, nil
	pendingWrites.Put(w)
	return err
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
					w.err = errCommitPanicked
				}
			}
		}
		c.handOver(self, batch)
	}()
	if c.commitBatch != nil {
		c.commitBatch(batch)
	} else {
		c.commit(batch)
	}
	committed = true
}

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
// write's err.
func (c *committer) commit(batch []*pendingWrite) {
	txn := c.db.NewTransaction(true)
	// Releases the transaction's read mark should Badger panic; after a
	// Commit it does nothing.
	defer func() { txn.Discard() }()
	first := 0 // batch[first:i] are in txn, but for those with an error
	for i, w := range batch {
		err := w.addTo(txn)
		if errors.Is(err, bdg.ErrTxnTooBig) && i > first {
			finish(txn, batch[first:i])
			txn = c.db.NewTransaction(true)
			first = i
			err = w.addTo(txn)
		}
		w.err, w.done = err, err != nil
	}
	finish(txn, batch[first:])
}

func (w *pendingWrite) addTo(txn *bdg.Txn) error {
	if w.deleted {
		return txn.Delete(w.key)
	}
	e := bdg.NewEntry(w.key, w.value)
	e.ExpiresAt = w.exp
	return txn.SetEntry(e)
}

// finish commits txn, which holds the writes of ws that Badger did not
// refuse, and gives them its outcome.
func finish(txn *bdg.Txn, ws []*pendingWrite) {
	err := txn.Commit()
	for _, w := range ws {
		if !w.done {
			w.err, w.done = err, true
		}
	}
}
