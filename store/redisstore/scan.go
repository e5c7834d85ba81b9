package redisstore

import (
	"context"
	"fmt"

	"github.com/redis/rueidis"

	"github.com/kvsession/kvsession/store"
)

// scanFetch is how many values Scan fetches in one round trip: a SCAN
// batch (up to about scanCount keys) is fetched in parts of this many, so
// that a scan holds at most that many values at once however large they
// are.
const scanFetch = 100

// Scan calls fn with each value key that starts with prefix, without the
// store's Prefix + "v:", and its value. See store.Scanner.
//
// It walks the value keyspace with SCAN (never KEYS, which would stall
// Redis for the whole keyspace) and MATCH on Prefix + "v:" + prefix, glob
// characters escaped, COUNT scanCount; on a cluster it walks every master
// once, as DeleteAll does. Each batch's values are fetched in parts of
// scanFetch keys: with one MGET on a standalone server, and on a cluster
// with one GET per key, pipelined, since a batch may span hash slots. A
// key that vanished between SCAN and GET is skipped. Sets and locks live
// in keyspaces of their own and are never visited.
//
// SCAN visits every key present for the whole walk at least once, and may
// visit one twice: so may Scan, which does not keep what it has shown. A
// key written or deleted meanwhile may or may not be visited.
//
// Each round trip is bounded by CallTimeout, as every call of the store
// is, so a stalled server fails a scan within CallTimeout rather than
// hanging it; the whole walk takes as long as the keyspace is large, and
// is bounded by ctx alone. fn runs with nothing held: it may call the
// store. Keys are strings fn may keep; values are valid during the call.
func (s *Store) Scan(ctx context.Context, prefix string, fn func(key string, value []byte) error) error {
	if s.closed.Load() {
		return store.ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("redis store: %w", err)
	}
	nodes, err := s.masters(ctx)
	if err != nil {
		return err
	}
	pattern := globEscape(s.vals+prefix) + "*"
	for _, node := range nodes {
		if err := s.scanNode(ctx, node, pattern, fn); err != nil {
			return err
		}
	}
	return nil
}

// scanNode scans one node's keys matching pattern, to its last cursor.
func (s *Store) scanNode(ctx context.Context, node rueidis.Client, pattern string, fn func(key string, value []byte) error) error {
	var cursor uint64
	for {
		// A store closed with a client it does not own (New) would go on
		// answering: check between batches.
		if s.closed.Load() {
			return store.ErrClosed
		}
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("redis store: %w", err)
		}
		r, err := s.call(ctx, node, "SCAN", node.B().Scan().Cursor(cursor).Match(pattern).Count(scanCount).Build())
		if err != nil {
			return err
		}
		e, err := r.AsScanEntry()
		if err != nil {
			return s.fail(ctx, ctx, "SCAN", err)
		}
		for keys := e.Elements; len(keys) > 0; {
			part := keys[:min(len(keys), scanFetch)]
			keys = keys[len(part):]
			values, err := s.fetch(ctx, node, part)
			if err != nil {
				return err
			}
			for i, v := range values {
				if !v.found {
					continue // gone since SCAN saw it
				}
				if err := ctx.Err(); err != nil {
					return fmt.Errorf("redis store: %w", err)
				}
				if err := fn(part[i][len(s.vals):], v.value); err != nil {
					return err
				}
			}
		}
		if cursor = e.Cursor; cursor == 0 {
			return nil
		}
	}
}

// fetched is one key's value as fetch found it.
type fetched struct {
	value []byte
	found bool
}

// fetch gets the values of keys, which SCAN found on node, in one round
// trip under CallTimeout.
func (s *Store) fetch(parent context.Context, node rueidis.Client, keys []string) ([]fetched, error) {
	out := make([]fetched, len(keys))
	if s.c.Mode() != rueidis.ClientModeCluster {
		r, err := s.call(parent, node, "MGET", node.B().Mget().Key(keys...).Build())
		if err != nil {
			return nil, err
		}
		msgs, err := r.ToArray()
		if err != nil {
			return nil, s.fail(parent, parent, "MGET", err)
		}
		for i := range min(len(msgs), len(keys)) {
			if msgs[i].IsNil() {
				continue
			}
			// AsBytes hands out the reply's own memory, as in Get.
			v, err := msgs[i].AsBytes()
			if err != nil {
				return nil, s.fail(parent, parent, "MGET", err)
			}
			out[i] = fetched{v, true}
		}
		return out, nil
	}
	// Through the cluster client, which routes each GET to its slot's
	// master (and follows it if the slot has moved since SCAN).
	ctx, cancel := s.bound(parent)
	defer cancel()
	cmds := make(rueidis.Commands, len(keys))
	for i, k := range keys {
		cmds[i] = s.c.B().Get().Key(k).Build()
	}
	for i, r := range s.c.DoMulti(ctx, cmds...) {
		v, err := r.AsBytes()
		switch {
		case err == nil:
			out[i] = fetched{v, true}
		case !rueidis.IsRedisNil(err):
			return nil, s.fail(parent, ctx, "GET", err)
		}
	}
	return out, nil
}

// masters returns the clients whose keyspaces together hold every key: the
// store's own client on a standalone server, and on a cluster a client of
// each master, each once (replicas hold the same keys as their masters),
// asked with ROLE under CallTimeout.
func (s *Store) masters(ctx context.Context) ([]rueidis.Client, error) {
	if s.c.Mode() != rueidis.ClientModeCluster {
		return []rueidis.Client{s.c}, nil
	}
	var out []rueidis.Client
	for _, node := range s.c.Nodes() {
		r, err := s.call(ctx, node, "ROLE", node.B().Role().Build())
		if err != nil {
			return nil, err
		}
		role, _ := r.ToArray()
		if len(role) == 0 {
			continue
		}
		if r, _ := role[0].ToString(); r == "master" {
			out = append(out, node)
		}
	}
	return out, nil
}
