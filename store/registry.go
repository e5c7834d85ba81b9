package store

import (
	"errors"
	"fmt"
	"sort"
	"sync"
)

// ErrUnknownStore is returned by Registry.Get for a name that was never
// registered when the registry has no default factory.
var ErrUnknownStore = errors.New("store: no store registered under that name")

// Factory creates the store for a name that was not registered.
type Factory func(name string) (Store, error)

// Registry maps names to stores, so that several session configurations
// (and other parts of an application) can share one store by naming it.
//
// A name that was not registered is either created by the registry's default
// factory and remembered, or, without a factory, an error.
type Registry struct {
	mu      sync.Mutex
	stores  map[string]Store
	factory Factory
}

// NewRegistry returns an empty registry. If factory is not nil, Get uses it
// to create a store for any name that was not registered.
func NewRegistry(factory Factory) *Registry {
	return &Registry{stores: make(map[string]Store), factory: factory}
}

// Register makes s available under name. Registering a name twice is an
// error: replacing a store under a running application would silently split
// its sessions between two stores.
func (r *Registry) Register(name string, s Store) error {
	if name == "" {
		return errors.New("store: Register: empty name")
	}
	if s == nil {
		return fmt.Errorf("store: Register %q: nil store", name)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.stores[name]; ok {
		return fmt.Errorf("store: Register %q: name already registered", name)
	}
	r.stores[name] = s
	return nil
}

// Get returns the store registered under name, creating it with the default
// factory if there is one. Without a factory an unknown name wraps
// ErrUnknownStore.
func (r *Registry) Get(name string) (Store, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if s, ok := r.stores[name]; ok {
		return s, nil
	}
	if r.factory == nil {
		return nil, fmt.Errorf("%w: %q", ErrUnknownStore, name)
	}
	s, err := r.factory(name)
	if err != nil {
		return nil, fmt.Errorf("store: creating %q: %w", name, err)
	}
	if s == nil {
		return nil, fmt.Errorf("store: creating %q: factory returned nil", name)
	}
	r.stores[name] = s
	return s, nil
}

// Has reports whether a store is registered under name, without creating one.
func (r *Registry) Has(name string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, ok := r.stores[name]
	return ok
}

// Close closes every store in the registry, in name order, and empties it.
// It returns the errors of all stores that failed to close, joined.
func (r *Registry) Close() error {
	r.mu.Lock()
	stores := r.stores
	r.stores = make(map[string]Store)
	r.mu.Unlock()

	names := make([]string, 0, len(stores))
	for name := range stores {
		names = append(names, name)
	}
	sort.Strings(names)
	var errs []error
	for _, name := range names {
		if err := stores[name].Close(); err != nil {
			errs = append(errs, fmt.Errorf("store: closing %q: %w", name, err))
		}
	}
	return errors.Join(errs...)
}
