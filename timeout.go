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
// The bound is put around the store once, when the backend is made, by
// wrapping the store and each optional interface the backend found on it.
// Without a timeout nothing is wrapped: the request path is exactly what it
// is without this file, and costs nothing more. With one, each call derives
// a context with a deadline (a timer and its allocations, small beside any
// store that can hang).
//
// The deadline is enforced through the context, which every store.Store
// method takes: a store must give up when its context ends, as the stores
// shipped with kvsession do (the memory and Badger stores never block on
// the network; Redis' client gives up on the context). A call that gives up
// may still have taken effect in the store (a write whose reply was lost):
// the request fails all the same, as on any store error.

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

// boundedStore is a store whose Get, Set and Delete run under the timeout.
// It embeds the store.Store interface, not the store, so that it has none
// of the store's optional interfaces: those are bounded one by one.
type boundedStore struct {
	store.Store
	d storeTimeout
}

func (b boundedStore) Get(parent context.Context, key string) ([]byte, error) {
	ctx, cancel := b.d.bound(parent)
	defer cancel()
	v, err := b.Store.Get(ctx, key)
	return v, b.d.explain(parent, ctx, err)
}

func (b boundedStore) Set(parent context.Context, key string, value []byte, ttl time.Duration) error {
	ctx, cancel := b.d.bound(parent)
	defer cancel()
	return b.d.explain(parent, ctx, b.Store.Set(ctx, key, value, ttl))
}

func (b boundedStore) Delete(parent context.Context, key string) error {
	ctx, cancel := b.d.bound(parent)
	defer cancel()
	return b.d.explain(parent, ctx, b.Store.Delete(ctx, key))
}

func (b boundedStore) Swap(parent context.Context, key string, old, value []byte, ttl time.Duration) (bool, error) {
	ctx, cancel := b.d.bound(parent)
	defer cancel()
	ok, err := b.Store.Swap(ctx, key, old, value, ttl)
	return ok, b.d.explain(parent, ctx, err)
}

func (b boundedStore) AddMember(parent context.Context, set, member string, ttl time.Duration) error {
	ctx, cancel := b.d.bound(parent)
	defer cancel()
	return b.d.explain(parent, ctx, b.Store.AddMember(ctx, set, member, ttl))
}

func (b boundedStore) RemoveMember(parent context.Context, set, member string) error {
	ctx, cancel := b.d.bound(parent)
	defer cancel()
	return b.d.explain(parent, ctx, b.Store.RemoveMember(ctx, set, member))
}

func (b boundedStore) Members(parent context.Context, set string) ([]string, error) {
	ctx, cancel := b.d.bound(parent)
	defer cancel()
	ms, err := b.Store.Members(ctx, set)
	return ms, b.d.explain(parent, ctx, err)
}

func (b boundedStore) unbounded() store.Store { return b.Store }

// unbounded returns the store st bounds, or st itself, for
// ServerBackend.Store: the application gets back the store it registered.
func unbounded(st store.Store) store.Store {
	if b, ok := st.(interface{ unbounded() store.Store }); ok {
		return b.unbounded()
	}
	return st
}

type boundedAppender struct {
	x store.Appender
	d storeTimeout
}

func (b boundedAppender) GetAppend(parent context.Context, key string, dst []byte) ([]byte, error) {
	ctx, cancel := b.d.bound(parent)
	defer cancel()
	v, err := b.x.GetAppend(ctx, key, dst)
	return v, b.d.explain(parent, ctx, err)
}

type boundedLocker struct {
	x store.Locker
	d storeTimeout
}

func (b boundedLocker) TryLock(parent context.Context, key string, lease time.Duration) (string, bool, error) {
	ctx, cancel := b.d.bound(parent)
	defer cancel()
	tok, ok, err := b.x.TryLock(ctx, key, lease)
	return tok, ok, b.d.explain(parent, ctx, err)
}

func (b boundedLocker) Unlock(parent context.Context, key, token string) error {
	ctx, cancel := b.d.bound(parent)
	defer cancel()
	return b.d.explain(parent, ctx, b.x.Unlock(ctx, key, token))
}

// boundStoreCalls puts the backend's store calls under Config.StoreTimeout.
// New calls it last, once it has discovered what the store can do: each
// ability found is then bounded on its own, so none is lost or gained.
func (b *ServerBackend) boundStoreCalls() {
	if b.cfg.StoreTimeout <= 0 {
		return
	}
	d := storeTimeout(b.cfg.StoreTimeout)
	b.store = boundedStore{b.store, d}
	if b.appender != nil {
		b.appender = boundedAppender{b.appender, d}
	}
	if b.locks != nil && b.locks.locker != nil {
		// The in-process lock table is no store call: LockWait bounds it.
		b.locks.locker = boundedLocker{b.locks.locker, d}
	}
}

// boundStoreCalls puts the revocation lookups under Config.StoreTimeout.
func (b *CookieBackend) boundStoreCalls() {
	if b.cfg.StoreTimeout > 0 && b.revocations != nil {
		b.revocations = boundedStore{b.revocations, storeTimeout(b.cfg.StoreTimeout)}
	}
}
