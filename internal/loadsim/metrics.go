package loadsim

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Metric names exported by the simulator (classic charset).
const (
	MetricELU      = "elu_utilization"            // Gauge {namespace,pod}.
	MetricRequests = "http_requests_total"        // Counter {namespace,pod,service}.
	MetricInFlight = "service_requests_in_flight" // Gauge {namespace,service}.
	MetricQueue    = "queue_messages_ready"       // Gauge {namespace,queue}.
)

// collector exposes a Simulator's state as const metrics at scrape time.
type collector struct {
	s                                              *Simulator
	descELU, descRequests, descInFlight, descQueue *prometheus.Desc
	resources                                      resourceDescs
}

// newCollector returns the collector of s.
func newCollector(s *Simulator) *collector {
	return &collector{
		s: s,
		descELU: prometheus.NewDesc(MetricELU,
			"Simulated event-loop utilisation of a Ready pod (0..1).", []string{"namespace", "pod"}, nil),
		descRequests: prometheus.NewDesc(MetricRequests,
			"Simulated HTTP requests served by a Ready pod.", []string{"namespace", "pod", "service"}, nil),
		descInFlight: prometheus.NewDesc(MetricInFlight,
			"Simulated requests in flight at a Service (load x 50ms).", []string{"namespace", "service"}, nil),
		descQueue: prometheus.NewDesc(MetricQueue,
			"Simulated messages ready in the queue consumed by a Deployment.", []string{"namespace", "queue"}, nil),
		resources: newResourceDescs(),
	}
}

// Describe sends the four metric descriptors.
func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.descELU
	ch <- c.descRequests
	ch <- c.descInFlight
	ch <- c.descQueue
	c.resources.describe(ch)
}

// Collect sends the current samples; a pod matched by several targets is exported once per metric, for the first target.
func (c *collector) Collect(ch chan<- prometheus.Metric) {
	s := c.s
	s.mu.Lock()
	defer s.mu.Unlock()
	type podKey struct{ namespace, pod, service string }
	seenELU := map[podKey]bool{}
	seenReq := map[podKey]bool{}
	for _, t := range s.targets {
		ns, svc := t.cfg.Namespace, t.cfg.Service
		elu := t.elu()
		for _, p := range t.pods {
			if k := (podKey{ns, p, ""}); !seenELU[k] {
				seenELU[k] = true
				ch <- prometheus.MustNewConstMetric(c.descELU, prometheus.GaugeValue, elu, ns, p)
			}
			if k := (podKey{ns, p, svc}); !seenReq[k] {
				seenReq[k] = true
				ch <- prometheus.MustNewConstMetric(c.descRequests, prometheus.CounterValue, t.requests[p], ns, p, svc)
			}
		}
		ch <- prometheus.MustNewConstMetric(c.descInFlight, prometheus.GaugeValue, t.inFlight(), ns, svc)
		ch <- prometheus.MustNewConstMetric(c.descQueue, prometheus.GaugeValue, t.queue, ns, t.cfg.Deployment)
	}
	c.resources.collectLocked(s, ch)
}
