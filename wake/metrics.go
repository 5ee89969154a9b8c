package wake

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// NewRegistry is promql-wake's /metrics registry, with the Go runtime's collector (goroutines,
// heap) and the process collector (resident memory, CPU, open files).
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// Metrics is the controller's telemetry.
type Metrics struct {
	wakes           *prometheus.CounterVec
	sleeps          *prometheus.CounterVec
	latency         *prometheus.HistogramVec
	sleepingTargets prometheus.Gauge
	syncs           prometheus.Counter
	failures        *prometheus.CounterVec
}

// NewMetrics creates the controller's collectors and registers them with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		wakes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "promql_wake_wakes_total",
			Help: "Targets scaled from zero, by reason (signal, schedule, push).",
		}, []string{"reason"}),
		sleeps: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "promql_wake_sleeps_total",
			Help: "Targets scaled to zero, by reason.",
		}, []string{"reason"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "promql_wake_wake_latency_seconds",
			Help:    "From reading the signal (or receiving the push) to the scale subresource updated, by reason.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}, []string{"reason"}),
		sleepingTargets: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "promql_wake_sleeping_targets",
			Help: "Targets this controller has put to sleep and not woken yet.",
		}),
	}
	m.syncs = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "promql_wake_syncs_total",
		Help: "Decisions taken, one per opted-in HPA per poll or change.",
	})
	m.failures = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "promql_wake_failures_total",
		Help: "Failed steps, by what failed: wake (a /scale write to wake, by signal, schedule or push), sleep (the /scale write to zero), get_scale (reading /scale), signal (reading an activation signal). A decision's failures are also Warning Events on the HPA.",
	}, []string{"reason"})
	reg.MustRegister(m.wakes, m.sleeps, m.latency, m.sleepingTargets, m.syncs, m.failures)
	return m
}

func (m *Metrics) woke(reason string, d time.Duration) {
	if m != nil {
		m.wakes.WithLabelValues(reason).Inc()
		m.latency.WithLabelValues(reason).Observe(d.Seconds())
	}
}

func (m *Metrics) slept(reason string) {
	if m != nil {
		m.sleeps.WithLabelValues(reason).Inc()
	}
}

func (m *Metrics) sleeping(n int) {
	if m != nil {
		m.sleepingTargets.Set(float64(n))
	}
}

func (m *Metrics) synced() {
	if m != nil {
		m.syncs.Inc()
	}
}

func (m *Metrics) failed(reason string) {
	if m != nil {
		m.failures.WithLabelValues(reason).Inc()
	}
}
