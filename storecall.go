package kvsession

import (
	"context"
	"time"

	"github.com/kvsession/kvsession/store"
)

// Events.StoreCall times each store call a backend makes. Like
// Config.StoreTimeout (timeout.go), it is put around the store once, when
// the backend is made, field by field over the store's resolved calls
// (store.Resolve), so that no ability is lost or gained: a nil call stays
// nil. Without the hook nothing is wrapped, and the request path reads no
// clock for it.
//
// It wraps outside the timeout, so that the time and the error it reports
// are the ones the backend saw: a call that ran out of StoreTimeout is
// reported with the timeout's error, after the time it was given.

// storeCallTimer is Events.StoreCall, applied.
type storeCallTimer func(ctx context.Context, method string, took time.Duration, err error)

// Method names, as Events.StoreCall documents them.
const (
	callGet          = "Get"
	callGetAppend    = "GetAppend"
	callSet          = "Set"
	callSwap         = "Swap"
	callDelete       = "Delete"
	callAddMember    = "AddMember"
	callRemoveMember = "RemoveMember"
	callMembers      = "Members"
	callTryLock      = "TryLock"
	callUnlock       = "Unlock"
	callScan         = "Scan"
	callPurgeExpired = "PurgeExpired"
)

// wrap times each call of c.
func (t storeCallTimer) wrap(c store.Calls) store.Calls {
	get, set, swap, del := c.Get, c.Set, c.Swap, c.Delete
	addMember, removeMember, members := c.AddMember, c.RemoveMember, c.Members
	c.Get = func(ctx context.Context, key string) ([]byte, error) {
		start := time.Now()
		v, err := get(ctx, key)
		t(ctx, callGet, time.Since(start), err)
		return v, err
	}
	c.Set = func(ctx context.Context, key string, value []byte, ttl time.Duration) error {
		start := time.Now()
		err := set(ctx, key, value, ttl)
		t(ctx, callSet, time.Since(start), err)
		return err
	}
	c.Swap = func(ctx context.Context, key string, old, value []byte, ttl time.Duration) (bool, error) {
		start := time.Now()
		ok, err := swap(ctx, key, old, value, ttl)
		t(ctx, callSwap, time.Since(start), err)
		return ok, err
	}
	c.Delete = func(ctx context.Context, key string) error {
		start := time.Now()
		err := del(ctx, key)
		t(ctx, callDelete, time.Since(start), err)
		return err
	}
	c.AddMember = func(ctx context.Context, set, member string, ttl time.Duration) error {
		start := time.Now()
		err := addMember(ctx, set, member, ttl)
		t(ctx, callAddMember, time.Since(start), err)
		return err
	}
	c.RemoveMember = func(ctx context.Context, set, member string) error {
		start := time.Now()
		err := removeMember(ctx, set, member)
		t(ctx, callRemoveMember, time.Since(start), err)
		return err
	}
	c.Members = func(ctx context.Context, set string) ([]string, error) {
		start := time.Now()
		ms, err := members(ctx, set)
		t(ctx, callMembers, time.Since(start), err)
		return ms, err
	}
	if getAppend := c.GetAppend; getAppend != nil {
		c.GetAppend = func(ctx context.Context, key string, dst []byte) ([]byte, error) {
			start := time.Now()
			v, err := getAppend(ctx, key, dst)
			t(ctx, callGetAppend, time.Since(start), err)
			return v, err
		}
	}
	if tryLock, unlock := c.TryLock, c.Unlock; tryLock != nil {
		c.TryLock = func(ctx context.Context, key string, lease time.Duration) (string, bool, error) {
			start := time.Now()
			tok, ok, err := tryLock(ctx, key, lease)
			t(ctx, callTryLock, time.Since(start), err)
			return tok, ok, err
		}
		c.Unlock = func(ctx context.Context, key, token string) error {
			start := time.Now()
			err := unlock(ctx, key, token)
			t(ctx, callUnlock, time.Since(start), err)
			return err
		}
	}
	if scan := c.Scan; scan != nil {
		// The whole walk is one call, its callbacks included: the store
		// calls they make are timed on their own.
		c.Scan = func(ctx context.Context, prefix string, fn func(key string, value []byte) error) error {
			start := time.Now()
			err := scan(ctx, prefix, fn)
			t(ctx, callScan, time.Since(start), err)
			return err
		}
	}
	if purge := c.PurgeExpired; purge != nil {
		c.PurgeExpired = func(ctx context.Context) (int, error) {
			start := time.Now()
			n, err := purge(ctx)
			t(ctx, callPurgeExpired, time.Since(start), err)
			return n, err
		}
	}
	return c
}
