package store_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kvsession/kvsession/store"
)

// fakeStore is the least a store.Store can be; only Close does anything.
type fakeStore struct {
	name     string
	closeErr error
	closed   atomic.Int32
	onClose  func(name string)
}

func (f *fakeStore) Get(context.Context, string) ([]byte, error)              { return nil, store.ErrNotFound }
func (f *fakeStore) Set(context.Context, string, []byte, time.Duration) error { return nil }
func (f *fakeStore) Delete(context.Context, string) error                     { return nil }
func (f *fakeStore) Swap(context.Context, string, []byte, []byte, time.Duration) (bool, error) {
	return false, nil
}
func (f *fakeStore) AddMember(context.Context, string, string, time.Duration) error { return nil }
func (f *fakeStore) RemoveMember(context.Context, string, string) error             { return nil }
func (f *fakeStore) Members(context.Context, string) ([]string, error)              { return nil, nil }
func (f *fakeStore) Close() error {
	f.closed.Add(1)
	if f.onClose != nil {
		f.onClose(f.name)
	}
	return f.closeErr
}

func TestRegistryRegister(t *testing.T) {
	tests := []struct {
		name    string
		setup   []string // names registered first
		reg     string
		s       store.Store
		wantErr bool
	}{
		{"New", nil, "a", &fakeStore{}, false},
		{"SecondName", []string{"a"}, "b", &fakeStore{}, false},
		{"Duplicate", []string{"a"}, "a", &fakeStore{}, true},
		{"EmptyName", nil, "", &fakeStore{}, true},
		{"NilStore", nil, "a", nil, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := store.NewRegistry(nil)
			for _, n := range tc.setup {
				if err := r.Register(n, &fakeStore{}); err != nil {
					t.Fatal(err)
				}
			}
			err := r.Register(tc.reg, tc.s)
			if (err != nil) != tc.wantErr {
				t.Fatalf("Register(%q) = %v, want error: %v", tc.reg, err, tc.wantErr)
			}
			if err != nil {
				return
			}
			got, err := r.Get(tc.reg)
			if err != nil || got != tc.s {
				t.Errorf("Get(%q) = %v, %v; want the registered store", tc.reg, got, err)
			}
			if !r.Has(tc.reg) {
				t.Errorf("Has(%q) = false after Register", tc.reg)
			}
		})
	}
}

func TestRegistryDuplicateKeepsFirst(t *testing.T) {
	r := store.NewRegistry(nil)
	first := &fakeStore{}
	if err := r.Register("a", first); err != nil {
		t.Fatal(err)
	}
	if err := r.Register("a", &fakeStore{}); err == nil {
		t.Fatal("second Register of the same name succeeded")
	}
	if got, _ := r.Get("a"); got != first {
		t.Error("a failed Register replaced the registered store")
	}
}

func TestRegistryGet(t *testing.T) {
	errFactory := errors.New("factory failed")
	tests := []struct {
		name      string
		factory   func(calls *atomic.Int32) store.Factory
		wantErr   bool
		wantIs    error // if set, the error must match it
		wantCalls int32 // factory calls after two Gets of the same name
	}{
		{
			name:      "UnknownWithoutFactory",
			factory:   func(*atomic.Int32) store.Factory { return nil },
			wantErr:   true,
			wantIs:    store.ErrUnknownStore,
			wantCalls: 0,
		},
		{
			name: "FactoryCreatesOnceAndCaches",
			factory: func(calls *atomic.Int32) store.Factory {
				return func(name string) (store.Store, error) {
					calls.Add(1)
					return &fakeStore{name: name}, nil
				}
			},
			wantCalls: 1,
		},
		{
			// A failure is not remembered: the next Get tries again.
			name: "FactoryError",
			factory: func(calls *atomic.Int32) store.Factory {
				return func(string) (store.Store, error) {
					calls.Add(1)
					return nil, errFactory
				}
			},
			wantErr:   true,
			wantIs:    errFactory,
			wantCalls: 2,
		},
		{
			name: "FactoryReturnsNil",
			factory: func(calls *atomic.Int32) store.Factory {
				return func(string) (store.Store, error) {
					calls.Add(1)
					return nil, nil
				}
			},
			wantErr:   true,
			wantCalls: 2,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var calls atomic.Int32
			r := store.NewRegistry(tc.factory(&calls))
			s1, err1 := r.Get("sessions")
			s2, err2 := r.Get("sessions")
			for _, err := range []error{err1, err2} {
				switch {
				case !tc.wantErr && err != nil:
					t.Errorf("Get: %v", err)
				case tc.wantErr && err == nil:
					t.Errorf("Get succeeded, want an error")
				case tc.wantIs != nil && !errors.Is(err, tc.wantIs):
					t.Errorf("Get: %v, want errors.Is %v", err, tc.wantIs)
				}
			}
			if !tc.wantErr {
				if s1 == nil || s1 != s2 {
					t.Errorf("two Gets returned %p and %p, want the same store", s1, s2)
				}
				if !r.Has("sessions") {
					t.Error("Has = false for a store the factory created")
				}
			} else if r.Has("sessions") {
				t.Error("Has = true after Get failed")
			}
			if got := calls.Load(); got != tc.wantCalls {
				t.Errorf("factory called %d times, want %d", got, tc.wantCalls)
			}
			if r.Has("other") || calls.Load() != tc.wantCalls {
				t.Error("Has created a store")
			}
		})
	}
}

func TestRegistryConcurrentGetCreatesOnce(t *testing.T) {
	var calls atomic.Int32
	r := store.NewRegistry(func(name string) (store.Store, error) {
		calls.Add(1)
		return &fakeStore{name: name}, nil
	})
	var wg sync.WaitGroup
	got := make([]store.Store, 8)
	for i := range got {
		wg.Go(func() {
			s, err := r.Get("shared")
			if err != nil {
				t.Error(err)
			}
			got[i] = s
		})
	}
	wg.Wait()
	if calls.Load() != 1 {
		t.Errorf("factory called %d times, want 1", calls.Load())
	}
	for _, s := range got[1:] {
		if s != got[0] {
			t.Fatal("concurrent Gets returned different stores")
		}
	}
}

func TestRegistryClose(t *testing.T) {
	errB := errors.New("b failed")
	errD := errors.New("d failed")
	tests := []struct {
		name     string
		closeErr map[string]error
		want     []error
	}{
		{"AllSucceed", nil, nil},
		{"OneFails", map[string]error{"b": errB}, []error{errB}},
		{"TwoFailJoined", map[string]error{"b": errB, "d": errD}, []error{errB, errD}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := store.NewRegistry(nil)
			var order []string
			stores := map[string]*fakeStore{}
			// Registered out of order; Close goes by name.
			for _, n := range []string{"d", "a", "c", "b"} {
				s := &fakeStore{name: n, closeErr: tc.closeErr[n], onClose: func(n string) { order = append(order, n) }}
				stores[n] = s
				if err := r.Register(n, s); err != nil {
					t.Fatal(err)
				}
			}
			err := r.Close()
			if len(tc.want) == 0 && err != nil {
				t.Errorf("Close: %v, want nil", err)
			}
			for _, want := range tc.want {
				if !errors.Is(err, want) {
					t.Errorf("Close: %v, want it to include %v", err, want)
				}
			}
			for n, s := range stores {
				if c := s.closed.Load(); c != 1 {
					t.Errorf("store %q closed %d times, want 1", n, c)
				}
			}
			if got := order; len(got) != 4 || got[0] != "a" || got[1] != "b" || got[2] != "c" || got[3] != "d" {
				t.Errorf("closed in order %v, want [a b c d]", got)
			}
			for n := range stores {
				if r.Has(n) {
					t.Errorf("Has(%q) = true after Close", n)
				}
			}
			// Closing again closes nothing twice.
			if err := r.Close(); err != nil {
				t.Errorf("second Close: %v", err)
			}
			for n, s := range stores {
				if c := s.closed.Load(); c != 1 {
					t.Errorf("store %q closed %d times after a second Close, want 1", n, c)
				}
			}
		})
	}
}
