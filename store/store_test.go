package store_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/kvsession/kvsession/store"
)

var errMarked = errors.New("reached the store's own method")

type appendingStore struct{ *fakeStore }

func (appendingStore) GetAppend(context.Context, string, []byte) ([]byte, error) {
	return nil, errMarked
}

type lockingStore struct{ *fakeStore }

func (lockingStore) TryLock(context.Context, string, time.Duration) (string, bool, error) {
	return "", false, errMarked
}
func (lockingStore) Unlock(context.Context, string, string) error { return errMarked }

type scanningStore struct{ *fakeStore }

func (scanningStore) Scan(context.Context, string, func(string, []byte) error) error {
	return errMarked
}

type purgingStore struct{ *fakeStore }

func (purgingStore) PurgeExpired(context.Context) (int, error) { return 0, errMarked }

type reportingStore struct{ *fakeStore }

func (reportingStore) Traits() store.Traits { return store.Traits{InProcess: true, BorrowsKeys: true} }

// TestResolve: each optional ability becomes its funcs exactly when the
// store has it, and the funcs reach the store's own methods.
func TestResolve(t *testing.T) {
	ctx := context.Background()
	plain := store.Resolve(&fakeStore{})
	if plain.GetAppend != nil || plain.TryLock != nil || plain.Unlock != nil || plain.Scan != nil || plain.PurgeExpired != nil || plain.Traits != (store.Traits{}) {
		t.Errorf("a store with no optional ability resolved to GetAppend %v, TryLock %v, Unlock %v, Scan %v, PurgeExpired %v, %+v",
			plain.GetAppend != nil, plain.TryLock != nil, plain.Unlock != nil, plain.Scan != nil, plain.PurgeExpired != nil, plain.Traits)
	}
	if _, err := plain.Get(ctx, "k"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Get did not reach the store: %v", err)
	}

	if c := store.Resolve(appendingStore{&fakeStore{}}); c.GetAppend == nil || c.TryLock != nil {
		t.Errorf("Appender: GetAppend %v, TryLock %v", c.GetAppend != nil, c.TryLock != nil)
	} else if _, err := c.GetAppend(ctx, "k", nil); err != errMarked {
		t.Errorf("GetAppend did not reach the store: %v", err)
	}

	if c := store.Resolve(lockingStore{&fakeStore{}}); c.TryLock == nil || c.Unlock == nil || c.GetAppend != nil {
		t.Errorf("Locker: TryLock %v, Unlock %v, GetAppend %v", c.TryLock != nil, c.Unlock != nil, c.GetAppend != nil)
	} else if _, _, err := c.TryLock(ctx, "k", time.Second); err != errMarked {
		t.Errorf("TryLock did not reach the store: %v", err)
	} else if err := c.Unlock(ctx, "k", "t"); err != errMarked {
		t.Errorf("Unlock did not reach the store: %v", err)
	}

	if c := store.Resolve(scanningStore{&fakeStore{}}); c.Scan == nil || c.PurgeExpired != nil || c.GetAppend != nil {
		t.Errorf("Scanner: Scan %v, PurgeExpired %v, GetAppend %v", c.Scan != nil, c.PurgeExpired != nil, c.GetAppend != nil)
	} else if err := c.Scan(ctx, "", nil); err != errMarked {
		t.Errorf("Scan did not reach the store: %v", err)
	}

	if c := store.Resolve(purgingStore{&fakeStore{}}); c.PurgeExpired == nil || c.Scan != nil || c.TryLock != nil {
		t.Errorf("Purger: PurgeExpired %v, Scan %v, TryLock %v", c.PurgeExpired != nil, c.Scan != nil, c.TryLock != nil)
	} else if _, err := c.PurgeExpired(ctx); err != errMarked {
		t.Errorf("PurgeExpired did not reach the store: %v", err)
	}

	if c := store.Resolve(reportingStore{&fakeStore{}}); c.Traits != (store.Traits{InProcess: true, BorrowsKeys: true}) {
		t.Errorf("Traits = %+v", c.Traits)
	}
}
