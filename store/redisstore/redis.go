package redisstore

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"

	"github.com/kvsession/kvsession/store"
)

// DefaultPrefix is the Prefix a Store uses when Options.Prefix is empty.
const DefaultPrefix = "kvsession:"

// defaultDialTimeout is Options.DialTimeout's default.
const defaultDialTimeout = 5 * time.Second

// DefaultCallTimeout is Options.CallTimeout's default: how long a call
// waits for Redis when its context allows longer.
const DefaultCallTimeout = 2 * time.Second

// Options configures a Store. New uses only Prefix; Open uses every field.
type Options struct {
	// Addr is the host:port of a standalone server, or of any node of a
	// Redis Cluster: the client asks it for the cluster's layout and
	// connects to the other nodes itself. One address: several go in
	// Addrs, and an Addr holding a comma is an error.
	Addr string

	// Addrs lists more seed addresses, after Addr if it is set, so that
	// the store starts while any of them is up.
	//
	// For a Redis Cluster they are nodes of that cluster: the client asks
	// whichever answers first for the layout, and keeps every seed to
	// find the cluster again later. For a standalone server they must all
	// lead to that one server (through other routes or proxies, say): Open
	// connects to the first, in order, that answers, and the store stays
	// with it. Never list different standalone servers: which one holds
	// the sessions would depend on which was up when each process opened
	// its store. A seed that is down costs nothing when its connection is
	// refused, and up to DialTimeout when it does not answer at all.
	Addrs []string

	// Username and Password authenticate every connection (a Username
	// needs Redis 6 or later, with ACLs).
	Username string
	Password string

	// DB selects a database on a standalone server. Redis Cluster has only
	// database 0.
	DB int

	// TLS, if set, makes every connection use TLS with this configuration.
	TLS *tls.Config

	// DialTimeout bounds each attempt to open a connection, including the
	// handshake, for the life of the client (it reconnects when a
	// connection breaks). Default five seconds. Open's ctx bounds Open.
	DialTimeout time.Duration

	// Prefix starts every Redis key the store writes, so that several
	// applications (or test runs) can share a server, and DeleteAll removes
	// this store's sessions and nothing else. Default DefaultPrefix. Stores
	// sharing a server must not have one Prefix that starts another.
	Prefix string

	// CallTimeout bounds each call to the store (each round trip, for
	// DeleteAll) whose context has no earlier deadline: a call that gets no
	// reply within it fails with an error wrapping
	// context.DeadlineExceeded, so that a stalled or unreachable Redis
	// fails requests within a bound instead of holding them until it
	// returns. Without it a call whose context never ends would wait, and
	// the client would retry reads, for as long as Redis is away. Zero
	// means DefaultCallTimeout (two seconds); a negative value turns the
	// bound off, leaving each call to its context alone. Set it above the
	// slowest reply a healthy Redis gives (the size of the largest value
	// over the network matters). New uses it too.
	//
	// A call whose context already ends within CallTimeout (as with
	// kvsession's Config.StoreTimeout set no higher) runs under that
	// context as it is. One whose context never ends (no deadline, no
	// cancellation, as kvsession's fasthttp middleware passes) shares a
	// deadline with the calls starting in the same 1/32 of CallTimeout, so
	// it is given up between 31/32 of CallTimeout and CallTimeout after it
	// started, for one small allocation (deadline.go). Any other pays for
	// a context with a timer of its own: five small allocations, a few
	// hundred nanoseconds beside a round trip of tens of microseconds. A call that has to open a connection to a
	// server that accepts it but does not answer can take up to a second
	// longer (see Contexts and timeouts in the package documentation).
	CallTimeout time.Duration

	// Tune, if set, is called with the client options Open has settled on,
	// just before creating the client, and may change any of them. It is the
	// escape hatch for whatever this package does not expose.
	Tune func(*rueidis.ClientOption)
}

// Store is a store.Store kept in Redis, standalone or Cluster. Create it
// with Open or New; it is safe for concurrent use. It is a store.Locker and
// a store.Scanner, and has Touch, Exists, ExpiresIn, DeleteAll and Update
// for applications and tools. It reports no store.Traits (see the package
// doc), and is no store.Purger: Redis removes expired keys itself.
type Store struct {
	c     rueidis.Client
	owned bool // Close closes c: Open made it

	prefix string // Options.Prefix, or DefaultPrefix
	vals   string // prefix + "v:": where values live
	locks  string // prefix + "l:": where locks live
	sets   string // prefix + "s:": where sets live

	// timeout is Options.CallTimeout, resolved: 0 for no bound.
	timeout   time.Duration
	deadlines sharedDeadlines // for callers whose context never ends

	// rel releases, in the background, locks whose TryLock or Unlock
	// failed with an unknown outcome (see release.go).
	rel releaser

	// closed is set by Close. Every method checks it first; a call already
	// in flight when Close closes an owned client fails inside the client
	// and is reported as ErrClosed too.
	closed atomic.Bool
}

var _ interface {
	store.Store
	store.Locker
	store.Scanner
} = (*Store)(nil)

// New returns a Store on client, which the application created and keeps
// owning: several Stores, and the application itself, can share one
// client's connections. Close does not close client. New uses only
// opts.Prefix and opts.CallTimeout.
func New(client rueidis.Client, opts Options) *Store {
	if client == nil {
		panic("redis store: New with a nil client")
	}
	p := opts.Prefix
	if p == "" {
		p = DefaultPrefix
	}
	s := &Store{c: client, prefix: p, vals: p + "v:", locks: p + "l:", sets: p + "s:"}
	switch {
	case opts.CallTimeout == 0:
		s.timeout = DefaultCallTimeout
	case opts.CallTimeout > 0:
		s.timeout = opts.CallTimeout
	}
	s.deadlines.init(s.timeout)
	s.rel.init(s)
	return s
}

// Open connects to the server or cluster opts describes, checks that it
// answers PING, and returns a Store that owns the client: Close closes it.
// With several seeds (Addr and Addrs) it starts while any one answers.
// A server that cannot be reached is an error naming its addresses,
// returned as soon as the connections are refused, or at the latest after
// DialTimeout (per seed tried) or when ctx ends.
func Open(ctx context.Context, opts Options) (*Store, error) {
	if strings.Contains(opts.Addr, ",") {
		return nil, fmt.Errorf("redis store: Options.Addr %q holds several addresses: give one, and the others in Options.Addrs", opts.Addr)
	}
	var addrs []string
	if opts.Addr != "" {
		addrs = append(addrs, opts.Addr)
	}
	addrs = append(addrs, opts.Addrs...)
	if len(addrs) == 0 {
		return nil, errors.New("redis store: Options.Addr or Options.Addrs is required")
	}
	where := strings.Join(addrs, ", ")
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("redis store: connecting to %s: %w", where, err)
	}

	co := rueidis.ClientOption{
		InitAddress: addrs,
		Username:    opts.Username,
		Password:    opts.Password,
		SelectDB:    opts.DB,
		TLSConfig:   opts.TLS,
		// The store never uses client-side caching, and leaving it on
		// makes every connection subscribe to invalidations.
		DisableCache: true,
		// Send every command through the connection's pipeline, even when
		// nothing else is in flight. Otherwise a lone command with a
		// deadline is written and read synchronously under that deadline,
		// and when it runs out the client closes the connection and the
		// next call must reconnect; pipelined, a call whose context ends
		// just stops waiting, and its late reply is discarded.
		AlwaysPipelining: true,
	}
	co.Dialer.Timeout = opts.DialTimeout
	if co.Dialer.Timeout <= 0 {
		co.Dialer.Timeout = defaultDialTimeout
	}
	if opts.Tune != nil {
		opts.Tune(&co)
	}

	// rueidis.NewClient takes no context and dials before returning; run it
	// aside so that ctx can end the wait, and close what it makes late.
	type made struct {
		c   rueidis.Client
		err error
	}
	ch := make(chan made, 1)
	go func() {
		c, err := connect(co)
		ch <- made{c, err}
	}()
	var m made
	select {
	case m = <-ch:
	case <-ctx.Done():
		go func() {
			if m := <-ch; m.c != nil {
				m.c.Close()
			}
		}()
		return nil, fmt.Errorf("redis store: cannot reach %s: %w", where, ctx.Err())
	}
	if m.err != nil {
		return nil, connectError(where, m.err)
	}
	if err := pingAny(ctx, m.c); err != nil {
		m.c.Close()
		return nil, connectError(where, err)
	}
	s := New(m.c, opts)
	s.owned = true
	return s, nil
}

// pingAny checks that the server, or the cluster, answers PING. A cluster
// client sends a keyless command to whichever connection it lists first,
// and it lists every seed, those that are down too: a plain PING would
// fail Open at random with a dead seed. On a cluster the nodes of its
// layout are asked instead, in turn, until one answers.
func pingAny(ctx context.Context, c rueidis.Client) error {
	if c.Mode() != rueidis.ClientModeCluster {
		return c.Do(ctx, c.B().Ping().Build()).Error()
	}
	err := errors.New("the cluster's layout lists no node")
	for _, node := range c.Nodes() {
		if err = node.Do(ctx, node.B().Ping().Build()).Error(); err == nil {
			return nil
		}
	}
	return err
}

// connect makes the client for co.InitAddress. rueidis takes several
// addresses as seeds of a cluster only: for a standalone server it falls
// back to a plain client when given one address, but given several it
// fails with the server's "cluster support disabled". So when the seeds
// turn out not to be a cluster, each is tried alone, in order, and the
// first that answers is kept: a store starts on the same server whenever
// that one is up, rather than on whichever answered first.
func connect(co rueidis.ClientOption) (rueidis.Client, error) {
	c, err := rueidis.NewClient(co)
	if err == nil || len(co.InitAddress) < 2 || !notACluster(err) {
		return c, err
	}
	var first, answered error // the first failure, the first a server gave
	for _, addr := range co.InitAddress {
		one := co
		one.InitAddress = []string{addr}
		c, err := rueidis.NewClient(one)
		if err == nil {
			return c, nil
		}
		if first == nil {
			first = err
		}
		if _, ok := rueidis.IsRedisErr(err); ok && answered == nil {
			answered = err
		}
	}
	// A server's own answer (a wrong password, say) says more than the
	// seeds that were down.
	if answered != nil {
		return nil, answered
	}
	return nil, first
}

// notACluster reports whether err is what a server that is not a cluster
// node answers to the client's cluster commands: the test rueidis applies
// to a single address before falling back to a standalone client, less
// CLUSTERDOWN, which comes from a cluster node. A standalone client on a
// node of a cluster that is down for a moment would fail every key of the
// other nodes' slots for as long as the store lives; failing Open instead
// lets the caller retry.
func notACluster(err error) bool {
	re, ok := rueidis.IsRedisErr(err)
	if !ok {
		return false
	}
	msg := strings.ToUpper(re.Error())
	if strings.HasPrefix(msg, "CLUSTERDOWN") {
		return false
	}
	return strings.Contains(msg, "COMMAND IS NOT ALLOWED") || strings.Contains(msg, "CLUSTER")
}

// connectError tells a server that answered with an error (a wrong
// password, say) from one that could not be reached at all.
func connectError(where string, err error) error {
	if _, ok := rueidis.IsRedisErr(err); ok {
		return fmt.Errorf("redis store: connecting to %s: %w", where, err)
	}
	return fmt.Errorf("redis store: cannot reach %s: %w", where, err)
}

// Client returns the client the store uses.
func (s *Store) Client() rueidis.Client { return s.c }

// Prefix returns the prefix of every Redis key the store writes.
func (s *Store) Prefix() string { return s.prefix }

// ValueKey returns the Redis key that holds the value of store key key.
func (s *Store) ValueKey(key string) string { return s.vals + key }

// LockKey returns the Redis key that holds TryLock's lock on store key key.
func (s *Store) LockKey(key string) string { return s.locks + key }

// Close marks the store closed, and closes the client if Open made it.
// Every later call returns store.ErrClosed; closing again does nothing.
func (s *Store) Close() error {
	if !s.closed.CompareAndSwap(false, true) {
		return nil
	}
	s.rel.stop()
	if s.owned {
		s.c.Close()
	}
	return nil
}

// check is what every method does before talking to Redis, in the order
// the store contract implies: closed first, then arguments, then ctx, so
// that a call with a context already done sends nothing.
func (s *Store) check(ctx context.Context, key string) error {
	if s.closed.Load() {
		return store.ErrClosed
	}
	if key == "" {
		return store.ErrEmptyKey
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("redis store: %w", err)
	}
	return nil
}

// nop is the cancel function of a call that needs no deadline of its own.
func nop() {}

// bound returns the context one call runs under: ctx itself if it ends
// within CallTimeout anyway (a deadline of the caller's, such as
// kvsession's Config.StoreTimeout, spares the cost of a second one), and
// otherwise ctx with a deadline CallTimeout from now.
func (s *Store) bound(ctx context.Context) (context.Context, context.CancelFunc) {
	if s.timeout <= 0 {
		return ctx, nop
	}
	if ctx.Done() == nil {
		// It never ends: a deadline shared with the calls of the same
		// moment will do (deadline.go).
		return &sharedDeadline{ctx, s.deadlines.get()}, nop
	}
	if d, ok := ctx.Deadline(); ok && time.Until(d) <= s.timeout {
		return ctx, nop
	}
	return context.WithTimeout(ctx, s.timeout)
}

// fail wraps an error from the client with the command that failed. An
// error caused by Close, or by the context ending, says so in a way
// errors.Is sees, whatever the client made of it (a 1ms deadline surfaces
// as a network timeout, not as context.DeadlineExceeded). parent is the
// caller's context and ctx the one the call ran under, from bound: when it
// is CallTimeout that ran out, not a deadline of the caller's, the error
// says so.
func (s *Store) fail(parent, ctx context.Context, op string, err error) error {
	if s.closed.Load() {
		return fmt.Errorf("redis store: %s: %w (%w)", op, store.ErrClosed, err)
	}
	if cerr := ctx.Err(); cerr != nil && !errors.Is(err, cerr) {
		if ctx != parent && parent.Err() == nil {
			return fmt.Errorf("redis store: %s: no reply within CallTimeout (%v): %w (%w)", op, s.timeout, cerr, err)
		}
		return fmt.Errorf("redis store: %s: %w (%w)", op, cerr, err)
	}
	if ctx != parent && parent.Err() == nil && errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("redis store: %s: no reply within CallTimeout (%v): %w", op, s.timeout, err)
	}
	return fmt.Errorf("redis store: %s: %w", op, err)
}

// arg turns a caller's byte slice into a command argument. rueidis sends a
// string view of the slice without copying, which is safe only if the
// command has been written when Do returns. With a context that cannot be
// canceled that is so; with one that can, Do may return early on
// cancellation while the command still waits to be written, after the
// caller has been told it may reuse its slice, so the bytes are copied.
func arg(ctx context.Context, b []byte) string {
	if ctx.Done() == nil {
		return rueidis.BinaryString(b)
	}
	return string(b)
}

// millis converts a positive TTL to whole milliseconds for PX and PEXPIRE,
// rounding up: Redis may keep an entry a fraction of a millisecond longer
// than asked, never shorter.
func millis(d time.Duration) int64 {
	ms := int64(d / time.Millisecond)
	if d%time.Millisecond != 0 {
		ms++
	}
	return ms
}

// Get returns the value under key, or store.ErrNotFound.
func (s *Store) Get(parent context.Context, key string) ([]byte, error) {
	if err := s.check(parent, key); err != nil {
		return nil, err
	}
	ctx, cancel := s.bound(parent)
	defer cancel()
	// AsBytes hands out the reply's own memory, which nothing else refers
	// to: the caller owns it.
	v, err := s.c.Do(ctx, s.c.B().Get().Key(s.vals+key).Build()).AsBytes()
	switch {
	case err == nil:
		return v, nil
	case rueidis.IsRedisNil(err):
		return nil, store.ErrNotFound
	default:
		return nil, s.fail(parent, ctx, "GET", err)
	}
}

// Set stores value under key with SET, and its TTL with PX, rounded up to
// whole milliseconds; a zero TTL removes any previous expiry.
func (s *Store) Set(parent context.Context, key string, value []byte, ttl time.Duration) error {
	if err := s.check(parent, key); err != nil {
		return err
	}
	if ttl < 0 {
		return store.ErrInvalidTTL
	}
	ctx, cancel := s.bound(parent)
	defer cancel()
	cmd := s.c.B().Set().Key(s.vals + key).Value(arg(ctx, value))
	var err error
	if ttl > 0 {
		err = s.c.Do(ctx, cmd.PxMilliseconds(millis(ttl)).Build()).Error()
	} else {
		err = s.c.Do(ctx, cmd.Build()).Error()
	}
	if err != nil {
		return s.fail(parent, ctx, "SET", err)
	}
	return nil
}

// Delete removes key with UNLINK, which frees a large value off Redis's
// main thread.
func (s *Store) Delete(parent context.Context, key string) error {
	if err := s.check(parent, key); err != nil {
		return err
	}
	ctx, cancel := s.bound(parent)
	defer cancel()
	if err := s.c.Do(ctx, s.c.B().Unlink().Key(s.vals+key).Build()).Error(); err != nil {
		return s.fail(parent, ctx, "UNLINK", err)
	}
	return nil
}

// persistScript removes a key's expiry and tells a missing key (0) from a
// present one (1), which PERSIST alone does not: it also answers 0 for a
// key that has no expiry to remove.
var persistScript = rueidis.NewLuaScript(`
if redis.call('PERSIST', KEYS[1]) == 1 then return 1 end
return redis.call('EXISTS', KEYS[1])`)

// Touch sets key's TTL without rewriting or reading its value: PEXPIRE, or
// for a zero TTL a script around PERSIST. A missing key is
// store.ErrNotFound and stays missing.
func (s *Store) Touch(parent context.Context, key string, ttl time.Duration) error {
	if err := s.check(parent, key); err != nil {
		return err
	}
	if ttl < 0 {
		return store.ErrInvalidTTL
	}
	ctx, cancel := s.bound(parent)
	defer cancel()
	var (
		n   int64
		err error
		op  = "PEXPIRE"
	)
	if ttl > 0 {
		n, err = s.c.Do(ctx, s.c.B().Pexpire().Key(s.vals+key).Milliseconds(millis(ttl)).Build()).AsInt64()
	} else {
		op = "PERSIST"
		n, err = persistScript.Exec(ctx, s.c, []string{s.vals + key}, nil).AsInt64()
	}
	switch {
	case err != nil:
		return s.fail(parent, ctx, op, err)
	case n == 0:
		return store.ErrNotFound
	}
	return nil
}

// Exists reports whether key holds a value, with EXISTS.
func (s *Store) Exists(parent context.Context, key string) (bool, error) {
	if err := s.check(parent, key); err != nil {
		return false, err
	}
	ctx, cancel := s.bound(parent)
	defer cancel()
	n, err := s.c.Do(ctx, s.c.B().Exists().Key(s.vals+key).Build()).AsInt64()
	if err != nil {
		return false, s.fail(parent, ctx, "EXISTS", err)
	}
	return n > 0, nil
}

// ExpiresIn returns how long key has left, from PTTL: store.NoExpiry for a
// key without a TTL, store.ErrNotFound for a missing one.
func (s *Store) ExpiresIn(parent context.Context, key string) (time.Duration, error) {
	if err := s.check(parent, key); err != nil {
		return 0, err
	}
	ctx, cancel := s.bound(parent)
	defer cancel()
	ms, err := s.c.Do(ctx, s.c.B().Pttl().Key(s.vals+key).Build()).AsInt64()
	switch {
	case err != nil:
		return 0, s.fail(parent, ctx, "PTTL", err)
	case ms == -2:
		return 0, store.ErrNotFound
	case ms < 0:
		return store.NoExpiry, nil
	}
	return time.Duration(ms) * time.Millisecond, nil
}

// scanCount is the COUNT hint of DeleteAll's SCAN: how many keys Redis
// looks at per call, and so about the most each batch deletes.
const scanCount = 1000

// DeleteAll deletes every value and every set under this store's Prefix
// (sessions, users' sets of sessions, older user index records), walking the
// keyspace with SCAN and deleting each batch with UNLINK: it never blocks
// Redis the way KEYS or FLUSHDB would, and leaves every other key alone. On
// a cluster it walks every master. Locks are left to expire with their
// leases, so that a request holding one keeps it. Entries written while
// DeleteAll runs may survive it. CallTimeout bounds each round trip, not
// the whole walk, which takes as long as the keyspace is large.
func (s *Store) DeleteAll(ctx context.Context) error {
	if s.closed.Load() {
		return store.ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("redis store: %w", err)
	}
	patterns := [...]string{globEscape(s.vals) + "*", globEscape(s.sets) + "*"}
	nodes, err := s.masters(ctx)
	if err != nil {
		return err
	}
	cluster := s.c.Mode() == rueidis.ClientModeCluster
	for _, node := range nodes {
		for _, p := range patterns {
			if err := s.clear(ctx, node, p, cluster); err != nil {
				return err
			}
		}
	}
	return nil
}

// call sends one command on c under CallTimeout, and wraps its error as
// fail does.
func (s *Store) call(parent context.Context, c rueidis.Client, op string, cmd rueidis.Completed) (rueidis.RedisResult, error) {
	ctx, cancel := s.bound(parent)
	defer cancel()
	r := c.Do(ctx, cmd)
	if err := r.Error(); err != nil {
		return r, s.fail(parent, ctx, op, err)
	}
	return r, nil
}

// clear deletes the keys matching pattern on one node. In a cluster the
// keys a node returns may sit in different hash slots, which one UNLINK
// cannot span, so each gets its own, pipelined and routed by the store's
// client.
func (s *Store) clear(ctx context.Context, node rueidis.Client, pattern string, cluster bool) error {
	var cursor uint64
	for {
		r, err := s.call(ctx, node, "SCAN", node.B().Scan().Cursor(cursor).Match(pattern).Count(scanCount).Build())
		if err != nil {
			return err
		}
		e, err := r.AsScanEntry()
		if err != nil {
			return s.fail(ctx, ctx, "SCAN", err)
		}
		if len(e.Elements) > 0 {
			if cluster {
				if err := s.unlinkEach(ctx, e.Elements); err != nil {
					return err
				}
			} else if _, err := s.call(ctx, s.c, "UNLINK", s.c.B().Unlink().Key(e.Elements...).Build()); err != nil {
				return err
			}
		}
		if cursor = e.Cursor; cursor == 0 {
			return nil
		}
	}
}

// unlinkEach deletes keys with one UNLINK each, pipelined, under one
// CallTimeout.
func (s *Store) unlinkEach(parent context.Context, keys []string) error {
	ctx, cancel := s.bound(parent)
	defer cancel()
	cmds := make(rueidis.Commands, len(keys))
	for i, k := range keys {
		cmds[i] = s.c.B().Unlink().Key(k).Build()
	}
	for _, r := range s.c.DoMulti(ctx, cmds...) {
		if err := r.Error(); err != nil {
			return s.fail(parent, ctx, "UNLINK", err)
		}
	}
	return nil
}

// globEscape quotes the characters SCAN's MATCH treats as special, so that
// a Prefix holding them matches only itself.
func globEscape(s string) string {
	if !strings.ContainsAny(s, `*?[]\^`) {
		return s
	}
	// Byte by byte: a prefix need not be UTF-8.
	b := make([]byte, 0, 2*len(s))
	for i := 0; i < len(s); i++ {
		if strings.IndexByte(`*?[]\^`, s[i]) >= 0 {
			b = append(b, '\\')
		}
		b = append(b, s[i])
	}
	return string(b)
}
