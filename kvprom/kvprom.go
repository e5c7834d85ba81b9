// Package kvprom exports kvsession's events (kvsession.Events) as
// Prometheus metrics. It is a module of its own, so that a program that
// does not use it links neither it nor the Prometheus client.
//
//	reg := prometheus.NewRegistry() // or prometheus.DefaultRegisterer
//	m, err := kvprom.New(kvprom.Options{Registerer: reg})
//	...
//	cfg := kvsession.Config{}
//	m.Instrument(&cfg) // or cfg.Events = m.Events()
//	backend, err := kvsession.New(cfg, stores)
//
// The metrics, each named <Namespace>_kvsession_<name> (kvsession_<name>
// without a Namespace):
//
//	sessions_created_total      counter    sessions created
//	sessions_destroyed_total    counter    sessions destroyed by request (Destroy, log out everywhere, ...)
//	loads_total{outcome}        counter    session loads: none, hit, forwarded, miss, expired, corrupt, error
//	saves_total                 counter    session writes (changes, extensions, rotations, sealed cookies)
//	id_renewals_total{cause}    counter    ids renewed: requested (RenewID) or rotation
//	logouts_everywhere_total    counter    users logged out everywhere (DestroyUserSessions, RevokeUser)
//	store_errors_total{op}      counter    failed store calls, by what the backend was doing
//	lock_wait_seconds           histogram  time waited for a session's lock (Config.Lock)
//	lock_failures_total         counter    session locks not taken (LockWait ran out, the context ended, the store failed)
//	store_call_seconds{method}  histogram  store call latency, by store method
//
// Each event is documented on kvsession.Events. No metric has a label
// holding a session id or a user: ids must not leave the request, and a
// label per user would make a series per user. Every label value is one of
// a small fixed set, and the series of each known value exist from New on,
// so that a rate over them starts at zero rather than at the first event.
//
// The hooks count with atomic adds on series resolved in New: they take
// no lock and allocate nothing.
package kvprom

import (
	"context"
	"time"

	"github.com/kvsession/kvsession"
	"github.com/prometheus/client_golang/prometheus"
)

// Options configure the metrics. The zero value registers them with
// prometheus.DefaultRegisterer, named kvsession_*.
type Options struct {
	// Namespace, if set, is prepended to every metric name:
	// <Namespace>_kvsession_sessions_created_total.
	Namespace string

	// Registerer is where the metrics are registered. Default
	// prometheus.DefaultRegisterer.
	Registerer prometheus.Registerer

	// ConstLabels are added to every metric: metrics for two backends in
	// one program (a login session beside a preferences one, say) can
	// share a registry when each has its own, e.g. {"session": "login"}.
	ConstLabels prometheus.Labels

	// LockWaitBuckets and StoreCallBuckets are the histograms' buckets,
	// in seconds. Defaults: DefaultLockWaitBuckets and
	// DefaultStoreCallBuckets.
	LockWaitBuckets  []float64
	StoreCallBuckets []float64
}

// DefaultLockWaitBuckets span an uncontended lock (well under a
// millisecond) to kvsession's default LockWait, 5 seconds.
var DefaultLockWaitBuckets = []float64{.0001, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5}

// DefaultStoreCallBuckets span the memory store's microseconds to a
// networked store's seconds.
var DefaultStoreCallBuckets = []float64{.00001, .00005, .0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5}

// The label values known in advance. A StoreError op or a StoreCall method
// outside them (from a later kvsession) still counts, under its own value.
var (
	storeOps = []string{"load", "save", "extend", "delete", "index", "rotate", "lock", "revoke", "revocation check"}
	methods  = []string{"Get", "GetAppend", "Set", "Swap", "Delete", "AddMember", "RemoveMember", "Members",
		"TryLock", "Unlock", "Scan", "PurgeExpired"}
)

// Metrics are kvsession's metrics, registered. Events gives the hooks
// that update them.
type Metrics struct {
	created, destroyed, saves, logouts, lockFailures prometheus.Counter
	lockWait                                         prometheus.Observer

	loads       *prometheus.CounterVec
	renewals    *prometheus.CounterVec
	storeErrors *prometheus.CounterVec
	storeCalls  *prometheus.HistogramVec

	// The series of each known label value, resolved once: the hooks
	// index them rather than hash label values on every event.
	loadsBy    []prometheus.Counter // by kvsession.LoadOutcome
	renewalsBy []prometheus.Counter // by kvsession.RenewCause
	errorsBy   map[string]prometheus.Counter
	callsBy    map[string]prometheus.Observer
}

// New creates the metrics and registers them with opts.Registerer. It
// fails if a metric of the same name and labels is registered there
// already (a second New on one registry without distinct ConstLabels).
func New(opts Options) (*Metrics, error) {
	reg := opts.Registerer
	if reg == nil {
		reg = prometheus.DefaultRegisterer
	}
	const subsystem = "kvsession"
	counterOpts := func(name, help string) prometheus.CounterOpts {
		return prometheus.CounterOpts{Namespace: opts.Namespace, Subsystem: subsystem, Name: name, Help: help, ConstLabels: opts.ConstLabels}
	}
	counter := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(counterOpts(name, help))
	}
	counterVec := func(name, help, label string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(counterOpts(name, help), []string{label})
	}
	lockBuckets := opts.LockWaitBuckets
	if lockBuckets == nil {
		lockBuckets = DefaultLockWaitBuckets
	}
	callBuckets := opts.StoreCallBuckets
	if callBuckets == nil {
		callBuckets = DefaultStoreCallBuckets
	}
	lockWait := prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: opts.Namespace, Subsystem: subsystem, Name: "lock_wait_seconds",
		Help:        "Time requests waited for their session's lock (Config.Lock), acquired or not.",
		ConstLabels: opts.ConstLabels, Buckets: lockBuckets,
	})
	m := &Metrics{
		created:      counter("sessions_created_total", "Sessions created: first saved to the store, or first sealed into a cookie."),
		destroyed:    counter("sessions_destroyed_total", "Sessions ended by request: Destroy, emptied, deleted by id, or logged out everywhere. Expiry is not counted."),
		saves:        counter("saves_total", "Session writes: changes, idle extensions, ExtendOnAccess renewals, rotations, sealed cookies."),
		logouts:      counter("logouts_everywhere_total", "Users logged out of every session (DestroyUserSessions, RevokeUser)."),
		lockFailures: counter("lock_failures_total", "Session locks not taken: LockWait ran out, the request's context ended, or the store failed."),
		lockWait:     lockWait,
		loads:        counterVec("loads_total", "Session loads by outcome: none (no cookie), hit, forwarded (a rotated-out id), miss, expired, corrupt, error.", "outcome"),
		renewals:     counterVec("id_renewals_total", "Session ids renewed, by cause: requested (RenewID) or rotation (RotationInterval).", "cause"),
		storeErrors:  counterVec("store_errors_total", "Failed store calls, by what the backend was doing.", "op"),
		storeCalls: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: opts.Namespace, Subsystem: subsystem, Name: "store_call_seconds",
			Help:        "Latency of the calls the backend makes on its store, by store method.",
			ConstLabels: opts.ConstLabels, Buckets: callBuckets,
		}, []string{"method"}),
		errorsBy: map[string]prometheus.Counter{},
		callsBy:  map[string]prometheus.Observer{},
	}
	for _, o := range kvsession.LoadOutcomes() {
		m.loadsBy = grow(m.loadsBy, int(o))
		m.loadsBy[o] = m.loads.WithLabelValues(o.String())
	}
	for _, c := range kvsession.RenewCauses() {
		m.renewalsBy = grow(m.renewalsBy, int(c))
		m.renewalsBy[c] = m.renewals.WithLabelValues(c.String())
	}
	for _, op := range storeOps {
		m.errorsBy[op] = m.storeErrors.WithLabelValues(op)
	}
	for _, method := range methods {
		m.callsBy[method] = m.storeCalls.WithLabelValues(method)
	}
	collectors := []prometheus.Collector{m.created, m.destroyed, m.saves, m.logouts, m.lockFailures, lockWait,
		m.loads, m.renewals, m.storeErrors, m.storeCalls}
	for i, c := range collectors {
		if err := reg.Register(c); err != nil {
			// All or nothing: a New that failed leaves the registry as
			// it found it, so that it can be called again.
			for _, done := range collectors[:i] {
				reg.Unregister(done)
			}
			return nil, err
		}
	}
	return m, nil
}

// grow returns s long enough to hold index i.
func grow(s []prometheus.Counter, i int) []prometheus.Counter {
	for len(s) <= i {
		s = append(s, nil)
	}
	return s
}

// Events returns the hooks that update the metrics, for Config.Events.
func (m *Metrics) Events() kvsession.Events {
	return kvsession.Events{
		Created:                 func(context.Context) { m.created.Inc() },
		Loaded:                  m.loaded,
		Saved:                   func(context.Context) { m.saves.Inc() },
		IDRenewed:               m.idRenewed,
		Destroyed:               func(context.Context) { m.destroyed.Inc() },
		UserLoggedOutEverywhere: func(context.Context, string, int) { m.logouts.Inc() },
		StoreError:              m.storeError,
		LockWaited:              m.lockWaited,
		StoreCall:               m.storeCall,
	}
}

// Instrument sets cfg.Events to update the metrics, after calling the hooks
// cfg.Events had, if any: metrics and an application's own hooks (an
// audit log, say) both see every event.
func (m *Metrics) Instrument(cfg *kvsession.Config) {
	cfg.Events = chain(cfg.Events, m.Events())
}

func (m *Metrics) loaded(_ context.Context, o kvsession.LoadOutcome) {
	if int(o) < len(m.loadsBy) && m.loadsBy[o] != nil {
		m.loadsBy[o].Inc()
		return
	}
	m.loads.WithLabelValues(o.String()).Inc()
}

func (m *Metrics) idRenewed(_ context.Context, c kvsession.RenewCause) {
	if int(c) < len(m.renewalsBy) && m.renewalsBy[c] != nil {
		m.renewalsBy[c].Inc()
		return
	}
	m.renewals.WithLabelValues(c.String()).Inc()
}

func (m *Metrics) storeError(_ context.Context, op string, _ error) {
	if c, ok := m.errorsBy[op]; ok {
		c.Inc()
		return
	}
	m.storeErrors.WithLabelValues(op).Inc()
}

func (m *Metrics) lockWaited(_ context.Context, d time.Duration, acquired bool) {
	m.lockWait.Observe(d.Seconds())
	if !acquired {
		m.lockFailures.Inc()
	}
}

func (m *Metrics) storeCall(_ context.Context, method string, d time.Duration, _ error) {
	if o, ok := m.callsBy[method]; ok {
		o.Observe(d.Seconds())
		return
	}
	m.storeCalls.WithLabelValues(method).Observe(d.Seconds())
}

// chain returns hooks that call a's, then b's, for each event either has.
func chain(a, b kvsession.Events) kvsession.Events {
	return kvsession.Events{
		Created:                 both1(a.Created, b.Created),
		Loaded:                  both2(a.Loaded, b.Loaded),
		Saved:                   both1(a.Saved, b.Saved),
		IDRenewed:               both2(a.IDRenewed, b.IDRenewed),
		Destroyed:               both1(a.Destroyed, b.Destroyed),
		UserLoggedOutEverywhere: both3(a.UserLoggedOutEverywhere, b.UserLoggedOutEverywhere),
		StoreError:              both3(a.StoreError, b.StoreError),
		LockWaited:              both3(a.LockWaited, b.LockWaited),
		StoreCall:               both4(a.StoreCall, b.StoreCall),
	}
}

// The both functions keep a nil hook nil, so that chaining adds no work
// (and, for StoreCall, no timing) that neither side asked for.

func both1(a, b func(context.Context)) func(context.Context) {
	if a == nil {
		return b
	}
	if b == nil {
		return a
	}
	return func(ctx context.Context) { a(ctx); b(ctx) }
}

func both2[T any](a, b func(context.Context, T)) func(context.Context, T) {
	if a == nil {
		return b
	}
	if b == nil {
		return a
	}
	return func(ctx context.Context, v T) { a(ctx, v); b(ctx, v) }
}

func both3[T, U any](a, b func(context.Context, T, U)) func(context.Context, T, U) {
	if a == nil {
		return b
	}
	if b == nil {
		return a
	}
	return func(ctx context.Context, v T, w U) { a(ctx, v, w); b(ctx, v, w) }
}

func both4[T, U, V any](a, b func(context.Context, T, U, V)) func(context.Context, T, U, V) {
	if a == nil {
		return b
	}
	if b == nil {
		return a
	}
	return func(ctx context.Context, v T, w U, x V) { a(ctx, v, w, x); b(ctx, v, w, x) }
}
