package badgerstore

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kvsession/kvsession/store"
)

// TestDiskGuardAdmits: the guard admits writes while they leave the reserve
// free, refuses the one that would not, asks the disk again each time when
// close to the line, so that freed space is seen at once, and lets room
// ask without taking.
func TestDiskGuardAdmits(t *testing.T) {
	// The simulated disk: free bytes, less what the admitted writes take.
	var free uint64
	var asked int
	g := newDiskGuard(1000, "dir")
	g.freeSpace = func(string) (uint64, error) { asked++; return free, nil }

	free = 5000
	for i := range 4 {
		if err := g.admit(1000); err != nil {
			t.Fatalf("write %d of 1000 bytes with 5000 free and 1000 kept: %v", i, err)
		}
		free -= 1000
	}
	if err := g.room(0); err != nil {
		t.Errorf("room(0) with exactly the reserve left: %v", err)
	}
	if err := g.admit(1); !errors.Is(err, ErrDiskFull) {
		t.Fatalf("a write into the reserve: %v, want ErrDiskFull", err)
	}
	before := asked
	if err := g.admit(1); !errors.Is(err, ErrDiskFull) {
		t.Fatalf("again: %v", err)
	}
	if asked == before {
		t.Error("the guard did not ask the disk again while refusing")
	}
	free = 3000
	if err := g.room(2000); err != nil {
		t.Errorf("room(2000) with 3000 free: %v", err)
	}
	if err := g.admit(2000); err != nil {
		t.Errorf("a write once space was freed: %v", err)
	}
	free -= 2000
	if err := g.room(1); !errors.Is(err, ErrDiskFull) {
		t.Errorf("room after the freed space was taken: %v", err)
	}

	// A guard that cannot ask lets writes through, as Badger would
	// without it.
	g.freeSpace = func(string) (uint64, error) { return 0, errors.New("no statfs") }
	g.checked = time.Time{}
	if err := g.admit(1 << 30); err != nil {
		t.Errorf("admit with free space unknown: %v", err)
	}
}

// TestStoreRefusesWritesOnFullDisk: with the guard saying the disk is full,
// every kind of write returns ErrDiskFull and changes nothing, the cache
// included; reads go on; and writes work again once space is back. The
// disk is simulated, so this runs anywhere; TestDiskFull does it for real.
func TestStoreRefusesWritesOnFullDisk(t *testing.T) {
	ctx := context.Background()
	s := openT(t, Options{Dir: t.TempDir()})
	if s.guard == nil {
		t.Fatal("a disk store has no guard")
	}
	var full atomic.Bool
	s.guard.freeSpace = func(string) (uint64, error) {
		if full.Load() {
			return s.guard.reserve - 1, nil
		}
		return 1 << 40, nil
	}
	if err := s.Set(ctx, "k", []byte("v"), time.Hour); err != nil {
		t.Fatal(err)
	}
	if err := s.AddMember(ctx, "set", "m", 0); err != nil {
		t.Fatal(err)
	}
	full.Store(true)
	s.guard.checked = time.Time{} // as if its last look were old
	writes := map[string]func() error{
		"Set":    func() error { return s.Set(ctx, "k", []byte("new"), 0) },
		"Delete": func() error { return s.Delete(ctx, "k") },
		"Swap": func() error {
			ok, err := s.Swap(ctx, "k", []byte("v"), []byte("new"), 0)
			if ok {
				return errors.New("swapped")
			}
			return err
		},
		"Touch":        func() error { return s.Touch(ctx, "k", 0) },
		"AddMember":    func() error { return s.AddMember(ctx, "set", "n", 0) },
		"RemoveMember": func() error { return s.RemoveMember(ctx, "set", "m") },
	}
	for name, write := range writes {
		if err := write(); !errors.Is(err, ErrDiskFull) {
			t.Errorf("%s on a full disk: %v, want ErrDiskFull", name, err)
		}
	}
	if v, err := s.Get(ctx, "k"); err != nil || string(v) != "v" {
		t.Errorf("Get on a full disk = %q, %v; want v", v, err)
	}
	if v, ok := badgerHolds(t, s, "k"); !ok || v != "v" {
		t.Errorf("Badger holds %q, %v after refused writes", v, ok)
	}
	if d, err := s.ExpiresIn(ctx, "k"); err != nil || d == store.NoExpiry {
		t.Errorf("ExpiresIn after a refused Touch = %v, %v; want the old hour", d, err)
	}
	if m, err := s.Members(ctx, "set"); err != nil || len(m) != 1 || m[0] != "m" {
		t.Errorf("Members on a full disk = %q, %v; want [m]", m, err)
	}
	full.Store(false)
	if err := s.Set(ctx, "k", []byte("new"), 0); err != nil {
		t.Errorf("Set once space is back: %v", err)
	}
	if v, err := s.Get(ctx, "k"); err != nil || string(v) != "new" {
		t.Errorf("Get = %q, %v; want new", v, err)
	}
}

// TestOpenRefusesFullDisk: Open on a filesystem with less free than
// MinFreeSpace fails with ErrDiskFull instead of letting Badger write its
// fresh memtable file through a mapping the disk cannot back; a negative
// MinFreeSpace turns the guard off.
func TestOpenRefusesFullDisk(t *testing.T) {
	dir := t.TempDir()
	if _, err := freeSpace(dir); err != nil {
		t.Skipf("no free-space check on this system: %v", err)
	}
	_, err := Open(Options{Dir: dir, MinFreeSpace: 1 << 62})
	if !errors.Is(err, ErrDiskFull) {
		t.Fatalf("Open keeping 4 EiB free: %v, want ErrDiskFull", err)
	}
	s := openT(t, Options{Dir: dir, MinFreeSpace: -1})
	if s.guard != nil {
		t.Error("MinFreeSpace -1 left a guard")
	}
}
