package activator

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the activator's telemetry, per target (namespace, service):
// usable as a scale-to-zero activation signal and as an HPA metric through
// promql-adapter (request rate or concurrency per Service).
type Metrics struct {
	requests  *prometheus.CounterVec   // by namespace, service, code
	unrouted  *prometheus.CounterVec   // by code: no route, so no target labels
	inFlight  *prometheus.GaugeVec     // requests being held or forwarded
	held      *prometheus.GaugeVec     // requests held while the target wakes
	coldStart *prometheus.HistogramVec // first held request → a held request connected to the target
	wakes     *prometheus.CounterVec   // by namespace, service, result
}

// NewMetrics registers the activator's metrics with reg (nil: not registered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	t := []string{"namespace", "service"}
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "promql_activator_requests_total", Help: "Requests routed to a target, by HTTP status code (499: the client left before an answer).",
		}, append(t, "code")),
		unrouted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "promql_activator_unrouted_requests_total", Help: "Requests whose Host and path match no route.",
		}, []string{"code"}),
		inFlight: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "promql_activator_requests_in_flight", Help: "Requests of a target being held or forwarded now (its concurrency).",
		}, t),
		held: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "promql_activator_requests_held", Help: "Requests held now while the target wakes.",
		}, t),
		coldStart: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "promql_activator_cold_start_seconds", Help: "From the first held request of a sleeping target to the first connection a held request got to one of its Ready addresses.",
			Buckets: []float64{.05, .1, .25, .5, 1, 2, 4, 8, 15, 30, 60, 120},
		}, t),
		wakes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "promql_activator_wakes_total", Help: "Wake calls made for held requests, by result (ok, error).",
		}, append(t, "result")),
	}
	if reg != nil {
		reg.MustRegister(m.requests, m.unrouted, m.inFlight, m.held, m.coldStart, m.wakes)
	}
	return m
}

func (m *Metrics) done(t Target, code int) {
	m.requests.WithLabelValues(t.Namespace, t.Service, strconv.Itoa(code)).Inc()
}
