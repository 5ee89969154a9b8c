// Package querylimit bounds the queries one backend runs at once: a fixed number run, a bounded
// queue waits for a slot, and the rest are shed at once with an error that says so, so a slow
// backend never makes the adapter pile up queries in flight.
package querylimit

import (
	"context"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Config sizes a Limiter.
type Config struct {
	// MaxInFlight is how many queries run at once; 0 or less means no limit.
	MaxInFlight int
	// MaxQueue is how many queries may wait for a slot; past it a query is shed at once.
	MaxQueue int
	// Backend names the backend in metrics and messages.
	Backend string
}

// Limiter hands out query slots. The zero value and a nil *Limiter do not limit.
type Limiter struct {
	cfg   Config
	slots chan struct{} // a token per running query
	queue chan struct{} // a token per waiting query

	inflight prometheus.Gauge
	waiting  prometheus.Gauge
	shedFull prometheus.Counter // reason queue_full
	shedLate prometheus.Counter // reason deadline
}

// Metrics are the limiters' metrics, one series per backend; register them once with NewMetrics
// and hand them to every New, so a rebuilt backend's limiter reuses its series.
type Metrics struct {
	inflight *prometheus.GaugeVec
	waiting  *prometheus.GaugeVec
	shed     *prometheus.CounterVec
}

// NewMetrics builds the limiters' metrics and registers them on reg (nil: not registered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		inflight: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "promql_adapter_backend_queries_in_flight",
			Help: "Queries running against the backend now.",
		}, []string{"backend"}),
		waiting: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "promql_adapter_backend_queue_depth",
			Help: "Queries waiting for a slot to the backend (--prometheus-max-queue, or the backend's maxQueue, bounds it).",
		}, []string{"backend"}),
		shed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "promql_adapter_backend_queries_shed_total",
			Help: "Queries refused with a 503 because the backend's slots were busy: reason queue_full (refused at once) or deadline (queued until the query's deadline).",
		}, []string{"backend", "reason"}),
	}
	if reg != nil {
		reg.MustRegister(m.inflight, m.waiting, m.shed)
	}
	return m
}

// Forget drops a backend's series, for a backend no longer declared. A limiter still running
// queries keeps counting on series that are no longer exported.
func (m *Metrics) Forget(backend string) {
	if m == nil {
		return
	}
	m.inflight.DeleteLabelValues(backend)
	m.waiting.DeleteLabelValues(backend)
	m.shed.DeletePartialMatch(prometheus.Labels{"backend": backend})
}

// ShedError is a query refused because the backend's slots and queue were full, or because no
// slot freed up before the query's deadline.
type ShedError struct {
	Backend     string
	MaxInFlight int
	MaxQueue    int
	Waited      bool  // the query queued and its deadline passed first
	Cause       error // the context's error when Waited
}

func (e *ShedError) Error() string {
	inflight, queue := "--prometheus-max-inflight", "--prometheus-max-queue"
	if e.Backend != "default" {
		inflight, queue = "its maxInFlight", "its maxQueue"
	}
	if e.Waited {
		return fmt.Sprintf("the adapter is shedding load: no query slot for backend %q freed up before the deadline (%d queries in flight, the most %s allows; more queued): %v",
			e.Backend, e.MaxInFlight, inflight, e.Cause)
	}
	return fmt.Sprintf("the adapter is shedding load: backend %q has %d queries in flight and %d waiting, the most %s and %s allow",
		e.Backend, e.MaxInFlight, e.MaxQueue, inflight, queue)
}

// Unwrap is the context's error for a query that waited until its deadline.
func (e *ShedError) Unwrap() error { return e.Cause }

// New builds a Limiter whose metrics are cfg.Backend's series of m (nil: a private, unregistered set).
func New(cfg Config, m *Metrics) *Limiter {
	if cfg.Backend == "" {
		cfg.Backend = "default"
	}
	if cfg.MaxQueue < 0 {
		cfg.MaxQueue = 0
	}
	if m == nil {
		m = NewMetrics(nil)
	}
	l := &Limiter{cfg: cfg}
	if cfg.MaxInFlight > 0 {
		l.slots = make(chan struct{}, cfg.MaxInFlight)
		l.queue = make(chan struct{}, cfg.MaxQueue)
	}
	l.inflight = m.inflight.WithLabelValues(cfg.Backend)
	l.waiting = m.waiting.WithLabelValues(cfg.Backend)
	l.shedFull = m.shed.WithLabelValues(cfg.Backend, "queue_full")
	l.shedLate = m.shed.WithLabelValues(cfg.Backend, "deadline")
	return l
}

// Acquire takes a slot, waiting in the queue while ctx allows; release must be called once when
// the query is done. A full queue, or a deadline reached while waiting, returns a *ShedError.
func (l *Limiter) Acquire(ctx context.Context) (release func(), err error) {
	if l == nil || l.slots == nil {
		return func() {}, nil
	}
	select {
	case l.slots <- struct{}{}:
		return l.taken(), nil
	default:
	}
	select {
	case l.queue <- struct{}{}:
	default:
		l.shedFull.Inc()
		return nil, &ShedError{Backend: l.cfg.Backend, MaxInFlight: l.cfg.MaxInFlight, MaxQueue: l.cfg.MaxQueue}
	}
	l.waiting.Inc()
	defer func() {
		<-l.queue
		l.waiting.Dec()
	}()
	select {
	case l.slots <- struct{}{}:
		return l.taken(), nil
	case <-ctx.Done():
		l.shedLate.Inc()
		return nil, &ShedError{Backend: l.cfg.Backend, MaxInFlight: l.cfg.MaxInFlight, MaxQueue: l.cfg.MaxQueue, Waited: true, Cause: ctx.Err()}
	}
}

// taken counts a slot just taken and returns its release.
func (l *Limiter) taken() func() {
	l.inflight.Inc()
	done := false
	return func() {
		if done {
			return
		}
		done = true
		l.inflight.Dec()
		<-l.slots
	}
}

// InFlight is the number of slots taken now.
func (l *Limiter) InFlight() int {
	if l == nil {
		return 0
	}
	return len(l.slots)
}

// Queued is the number of queries waiting for a slot now.
func (l *Limiter) Queued() int {
	if l == nil {
		return 0
	}
	return len(l.queue)
}
