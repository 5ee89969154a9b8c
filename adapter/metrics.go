package adapter

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics is the adapter's own telemetry, served on its /metrics.
type Metrics struct {
	requests      *prometheus.CounterVec
	latency       *prometheus.HistogramVec
	queryLatency  prometheus.Histogram
	queryErrors   *prometheus.CounterVec
	fallbacks     *prometheus.CounterVec
	skipped       *prometheus.CounterVec
	rulesLoaded   prometheus.Gauge
	metricsServed *prometheus.GaugeVec
	reloadTime    prometheus.Gauge
	reloadOK      prometheus.Gauge
	rulesUnusable prometheus.Gauge
	coalesced     *prometheus.CounterVec
	answerAge     prometheus.Histogram
	ruleQueries   *prometheus.CounterVec
	ruleSeconds   *prometheus.CounterVec
	ruleEval      *prometheus.CounterVec
	ruleSamples   *prometheus.CounterVec
}

// NewMetrics creates the adapter's collectors and registers them with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "promql_adapter_api_requests_total",
			Help: "Metrics API requests answered, by metric kind (pods, object, external) and HTTP status code.",
		}, []string{"kind", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "promql_adapter_api_request_duration_seconds",
			Help:    "Time to answer a metrics API request, by metric kind.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"kind"}),
		queryLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "promql_adapter_prometheus_query_duration_seconds",
			Help:    "Time Prometheus took to answer a query, as seen by the adapter.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}),
		queryErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "promql_adapter_prometheus_query_errors_total",
			Help: "Prometheus queries that failed, by reason (timeout, bad_data, execution, error, ...).",
		}, []string{"reason"}),
		fallbacks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "promql_adapter_fallbacks_total",
			Help: "Answers served from a rule's fallback value because its query failed, by metric.",
		}, []string{"metric"}),
		skipped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "promql_adapter_samples_skipped_total",
			Help: "Samples left out of answers, by reason (nan, inf, unmapped).",
		}, []string{"reason"}),
		rulesLoaded: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "promql_adapter_rules_loaded",
			Help: "Rules in the rule file being served.",
		}),
		metricsServed: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "promql_adapter_metrics_served",
			Help: "Metrics listed in discovery, by API (custom, external).",
		}, []string{"api"}),
		reloadTime: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "promql_adapter_rules_last_reload_timestamp_seconds",
			Help: "When the rule file was last loaded, successfully or not.",
		}),
		reloadOK: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "promql_adapter_rules_last_reload_success",
			Help: "1 if the last rule file load succeeded, 0 if the last good rules are still being served.",
		}),
	}
	m.rulesUnusable = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "promql_adapter_rules_unusable",
		Help: "Rules of the serving prometheus-adapter config that answer no request (each logged and listed at /readyz/rules); the others serve.",
	})
	m.coalesced = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "promql_adapter_coalesced_requests_total",
		Help: "Requests answered from a shared namespace-wide query, by result: hit (a cached answer within the freshness bound), shared (joined a query under way), miss (ran the query). (hit+shared)/all is the coalescing ratio.",
	}, []string{"result"})
	m.answerAge = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "promql_adapter_coalesced_answer_age_seconds",
		Help:    "How long before a coalesced request arrived its shared query started (0 for the request that ran it); never more than the rule's freshness bound.",
		Buckets: []float64{0, .1, .25, .5, 1, 2.5, 5, 10, 15, 30, 60, 120, 300},
	})
	perRule := []string{"rule", "backend"}
	m.ruleQueries = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "promql_adapter_rule_queries_total",
		Help: "Queries sent to the backend for a rule (its position in the rule file), identical concurrent ones counted once; its rate is the rule's queries/s.",
	}, perRule)
	m.ruleSeconds = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "promql_adapter_rule_query_seconds_total",
		Help: "Time the backend took to answer a rule's queries, as seen by the adapter.",
	}, perRule)
	m.ruleEval = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "promql_adapter_rule_prometheus_eval_seconds_total",
		Help: "Time Prometheus spent evaluating a rule's queries, from its own query stats (evalTotalTime); 0 for backends that report none.",
	}, perRule)
	m.ruleSamples = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "promql_adapter_rule_prometheus_samples_total",
		Help: "Samples Prometheus read for a rule's queries, from its own query stats (totalQueryableSamples); 0 for backends that report none.",
	}, perRule)
	reg.MustRegister(m.requests, m.latency, m.queryLatency, m.queryErrors, m.fallbacks, m.skipped,
		m.rulesLoaded, m.metricsServed, m.reloadTime, m.reloadOK, m.rulesUnusable, m.coalesced, m.answerAge,
		m.ruleQueries, m.ruleSeconds, m.ruleEval, m.ruleSamples)
	return m
}

// The methods below accept a nil *Metrics, so tests and tools can run without telemetry.

func (m *Metrics) observeQuery(d time.Duration, err error) {
	if m == nil {
		return
	}
	m.queryLatency.Observe(d.Seconds())
	if err != nil {
		m.queryErrors.WithLabelValues(statusOf(err)).Inc()
	}
}

func (m *Metrics) observeRequest(kind string, code int, d time.Duration) {
	if m == nil {
		return
	}
	m.requests.WithLabelValues(kind, strconv.Itoa(code)).Inc()
	m.latency.WithLabelValues(kind).Observe(d.Seconds())
}

func (m *Metrics) fallback(metric string) {
	if m != nil {
		m.fallbacks.WithLabelValues(metric).Inc()
	}
}

func (m *Metrics) skip(reason string) {
	if m != nil {
		m.skipped.WithLabelValues(reason).Inc()
	}
}

func (m *Metrics) coalesce(result string, age time.Duration) {
	if m != nil {
		m.coalesced.WithLabelValues(result).Inc()
		m.answerAge.Observe(max(0, age.Seconds()))
	}
}

func (m *Metrics) served(custom, external int) {
	if m != nil {
		m.metricsServed.WithLabelValues("custom").Set(float64(custom))
		m.metricsServed.WithLabelValues("external").Set(float64(external))
	}
}

// RulesLoaded records the outcome of loading a rule file with n rules.
func (m *Metrics) RulesLoaded(n int, ok bool, at time.Time) {
	if m == nil {
		return
	}
	m.reloadTime.Set(float64(at.Unix()))
	if ok {
		m.reloadOK.Set(1)
		m.rulesLoaded.Set(float64(n))
	} else {
		m.reloadOK.Set(0)
	}
}

// RulesUnusable records how many rules of the serving rule file are unusable.
func (m *Metrics) RulesUnusable(n int) {
	if m != nil {
		m.rulesUnusable.Set(float64(n))
	}
}

// observeRuleQuery counts a query sent for rule (a rule's position, "" when no rule asked) and its cost.
func (m *Metrics) observeRuleQuery(rule, backend string, d time.Duration, st QueryStats) {
	if m == nil || rule == "" {
		return
	}
	m.ruleQueries.WithLabelValues(rule, backend).Inc()
	m.ruleSeconds.WithLabelValues(rule, backend).Add(d.Seconds())
	m.ruleEval.WithLabelValues(rule, backend).Add(st.EvalSeconds)
	m.ruleSamples.WithLabelValues(rule, backend).Add(float64(st.Samples))
}
