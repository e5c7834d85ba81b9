package kvsession

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/kvsession/kvsession/store"
)

// Config.StoreTimeout bounds each store call a backend makes: loads,
// saves, renewals, deletes, the store's session lock, the users' sets and
// the cookie backend's revocation lookups. A call that outlives it is
// given up with an error wrapping context.DeadlineExceeded, which reaches
// the middleware's error handler like any store failure.
//
// Scans and purges (store.Scanner, store.Purger) are not bounded by it.
// StoreTimeout is sized for the calls one request makes, one key each; a
// scan or a purge walks the whole store and takes as long as the store is
// large, so the same bound would fail it on any store of size, and a
// bound of its own would be a guess. They run under their caller's
// context as it is: an operator's tool passes one with a deadline that
// suits its store. (The Redis store still bounds each round trip of a
// scan by its CallTimeout, so a stalled server fails a scan all the same.)
//
// The bound is put around the store once, when the backend is made: every
// store call goes through the store's resolved calls (store.Resolve), and
// the timeout wraps each of them, field by field, so that no ability is
// lost or gained. Without a timeout nothing is wrapped: the request path is
// exactly what it is without this file, and costs nothing more. With one,
// each call derives a context with a deadline (a timer and its
// allocations, small beside any store that can hang).
//
// The deadline is enforced through the context, which every store.Store
// method takes: a store must give up when its context ends, as the stores
// shipped with kvsession do (the memory and Badger stores never block on
// the network; Redis' client gives up on the context). A call that gives up
// may still have taken effect in the store (a write whose reply was lost):
// the request fails all the same, as on any store error.

// resolveStore resolves st into the calls a backend makes on it, bounded
// by Config.StoreTimeout if set, and timed for Events.StoreCall if set
// (storecall.go).
func resolveStore(cfg *compiled, st store.Store) store.Calls {
	calls := store.Resolve(st)
	if cfg.StoreTimeout > 0 {
		calls = storeTimeout(cfg.StoreTimeout).wrap(calls)
	}
	if cfg.Events.StoreCall != nil {
		calls = storeCallTimer(cfg.Events.StoreCall).wrap(calls)
	}
	return calls
}

// storeTimeout is Config.StoreTimeout, applied.
type storeTimeout time.Duration

// bound returns the context one store call runs under.
func (d storeTimeout) bound(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, time.Duration(d))
}

// explain says which timeout a call ran out of when it was this one, not
// a deadline the caller's own context carried. errors.Is still finds
// context.DeadlineExceeded. Call it before cancelling ctx.
func (d storeTimeout) explain(parent, ctx context.Context, err error) error {
	if err == nil || parent.Err() != nil || !errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return err
	}
	return fmt.Errorf("store call took longer than Config.StoreTimeout (%v): %w", time.Duration(d), err)
}

// wrap bounds each call of c; a nil call (an ability the store lacks)
// stays nil. The in-process lock table is no store call: LockWait bounds it.
// Scan and PurgeExpired are left as they are, nil or not (see above).
func (d storeTimeout) wrap(c store.Calls) store.Calls {
	get, set, swap, del := c.Get, c.Set, c.Swap, c.Delete
	addMember, removeMember, members := c.AddMember, c.RemoveMember, c.Members
	c.Get = func(parent context.Context, key string) ([]byte, error) {
		ctx, cancel := d.bound(parent)
		defer cancel()
		v, err := get(ctx, key)
		return v, d.explain(parent, ctx, err)
	}
	c.Set = func(parent context.Context, key string, value []byte, ttl time.Duration) error {
		ctx, cancel := d.bound(parent)
		defer cancel()
		return d.explain(parent, ctx, set(ctx, key, value, ttl))
	}
	c.Swap = func(parent context.Context, key string, old, value []byte, ttl time.Duration) (bool, error) {
		ctx, cancel := d.bound(parent)
		defer cancel()
		ok, err := swap(ctx, key, old, value, ttl)
		return ok, d.explain(parent, ctx, err)
	}
	c.Delete = func(parent context.Context, key string) error {
		ctx, cancel := d.bound(parent)
		defer cancel()
		return d.explain(parent, ctx, del(ctx, key))
	}
	c.AddMember = func(parent context.Context, set, member string, ttl time.Duration) error {
		ctx, cancel := d.bound(parent)
		defer cancel()
		return d.explain(parent, ctx, addMember(ctx, set, member, ttl))
	}
	c.RemoveMember = func(parent context.Context, set, member string) error {
		ctx, cancel := d.bound(parent)
		defer cancel()
		return d.explain(parent, ctx, removeMember(ctx, set, member))
	}
	c.Members = func(parent context.Context, set string) ([]string, error) {
		ctx, cancel := d.bound(parent)
		defer cancel()
		ms, err := members(ctx, set)
		return ms, d.explain(parent, ctx, err)
	}
	if getAppend := c.GetAppend; getAppend != nil {
		c.GetAppend = func(parent context.Context, key string, dst []byte) ([]byte, error) {
			ctx, cancel := d.bound(parent)
			defer cancel()
			v, err := getAppend(ctx, key, dst)
			return v, d.explain(parent, ctx, err)
		}
	}
	if tryLock, unlock := c.TryLock, c.Unlock; tryLock != nil {
		c.TryLock = func(parent context.Context, key string, lease time.Duration) (string, bool, error) {
			ctx, cancel := d.bound(parent)
			defer cancel()
			tok, ok, err := tryLock(ctx, key, lease)
			return tok, ok, d.explain(parent, ctx, err)
		}
		c.Unlock = func(parent context.Context, key, token string) error {
			ctx, cancel := d.bound(parent)
			defer cancel()
			return d.explain(parent, ctx, unlock(ctx, key, token))
		}
	}
	return c
}
