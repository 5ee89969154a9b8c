package forward

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics is the forwarder's telemetry, served on the adapter's /metrics.
type Metrics struct {
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
	clashes  *prometheus.GaugeVec
	metrics  *prometheus.GaugeVec
	up       *prometheus.GaugeVec
}

func newMetrics(reg prometheus.Registerer) *Metrics {
	labels := []string{"api", "upstream"}
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "promql_adapter_forwarded_requests_total",
			Help: "Metrics API requests forwarded to an upstream adapter, by API, upstream and the HTTP status code returned (503 when the upstream did not answer).",
		}, []string{"api", "upstream", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "promql_adapter_forward_duration_seconds",
			Help:    "Time from forwarding a request to an upstream adapter to the end of its answer, by API and upstream.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, labels),
		clashes: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "promql_adapter_forward_clashes",
			Help: "Metrics an upstream lists that promql-adapter (or an earlier upstream) also serves and answers instead; listed at /readyz/forward.",
		}, labels),
		metrics: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "promql_adapter_forward_upstream_metrics",
			Help: "Metrics in an upstream adapter's last list read.",
		}, labels),
		up: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "promql_adapter_forward_upstream_up",
			Help: "1 if the last attempt to read an upstream adapter's metric list succeeded, else 0.",
		}, labels),
	}
	if reg != nil {
		reg.MustRegister(m.requests, m.latency, m.clashes, m.metrics, m.up)
	}
	return m
}

func (m *Metrics) forwarded(api, upstream string, code int, d time.Duration) {
	m.requests.WithLabelValues(api, upstream, codeLabel(code)).Inc()
	m.latency.WithLabelValues(api, upstream).Observe(d.Seconds())
}

func (m *Metrics) listed(api, upstream string, n int, ok bool) {
	m.metrics.WithLabelValues(api, upstream).Set(float64(n))
	v := 0.0
	if ok {
		v = 1
	}
	m.up.WithLabelValues(api, upstream).Set(v)
}
