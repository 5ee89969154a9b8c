// Package fakeexporter serves hand-set Prometheus metrics on a real TCP
// listener so that tests can have a real Prometheus scrape them.
//
// Metric families are created on demand: the first SetGauge or AddCounter
// call for a name creates a GaugeVec or CounterVec whose label names are the
// keys of the labels map of that call. Later calls for the same name must use
// the same label names and the same metric type; otherwise they panic, as
// does a metric or label name outside the classic [a-zA-Z_:][a-zA-Z0-9_:]*
// charset that older Prometheus servers (Debian's 2.42) can parse. This is a
// test helper, so a misuse is a programming error.
package fakeexporter

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/common/model"
)

// Exporter is a set of on-demand gauges and counters in a private registry,
// served over HTTP at /metrics once Start is called.
type Exporter struct {
	reg *prometheus.Registry

	mu       sync.Mutex
	families map[string]*family
	srv      *http.Server
	addr     string
	serveErr chan error
}

type family struct {
	labelNames []string
	gauge      *prometheus.GaugeVec
	counter    *prometheus.CounterVec
}

// New returns an Exporter with an empty registry (no Go or process collectors).
func New() *Exporter {
	return &Exporter{
		reg:      prometheus.NewRegistry(),
		families: map[string]*family{},
	}
}

// Registry returns the exporter's registry, for registering extra collectors.
func (e *Exporter) Registry() *prometheus.Registry { return e.reg }

// SetGauge sets the gauge sample name{labels} to v; it panics on misuse (see package doc).
func (e *Exporter) SetGauge(name string, labels map[string]string, v float64) {
	f := e.family(name, labels, true)
	f.gauge.With(prometheus.Labels(labels)).Set(v)
}

// AddCounter adds v (which must be >= 0, else it panics) to the counter sample name{labels}.
func (e *Exporter) AddCounter(name string, labels map[string]string, v float64) {
	f := e.family(name, labels, false)
	f.counter.With(prometheus.Labels(labels)).Add(v)
}

// family returns the family for name, creating and registering it on first use.
func (e *Exporter) family(name string, labels map[string]string, gauge bool) *family {
	names := make([]string, 0, len(labels))
	for k := range labels {
		names = append(names, k)
	}
	slices.Sort(names)

	e.mu.Lock()
	defer e.mu.Unlock()
	if f, ok := e.families[name]; ok {
		if gauge != (f.gauge != nil) {
			panic(fmt.Sprintf("fakeexporter: metric %q already exists with another type", name))
		}
		if !slices.Equal(names, f.labelNames) {
			panic(fmt.Sprintf("fakeexporter: metric %q has label names %v, got %v", name, f.labelNames, names))
		}
		return f
	}

	if !model.LegacyValidation.IsValidMetricName(name) {
		panic(fmt.Sprintf("fakeexporter: invalid metric name %q", name))
	}
	for _, l := range names {
		if !model.LegacyValidation.IsValidLabelName(l) {
			panic(fmt.Sprintf("fakeexporter: metric %q: invalid label name %q", name, l))
		}
	}
	f := &family{labelNames: names}
	var c prometheus.Collector
	if gauge {
		f.gauge = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name, Help: "fakeexporter gauge " + name}, names)
		c = f.gauge
	} else {
		f.counter = prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: "fakeexporter counter " + name}, names)
		c = f.counter
	}
	if err := e.reg.Register(c); err != nil {
		panic(fmt.Sprintf("fakeexporter: register metric %q: %v", name, err))
	}
	e.families[name] = f
	return f
}

// Start serves /metrics on addr (default "127.0.0.1:0") and returns the full metrics URL.
func (e *Exporter) Start(addr string) (string, error) {
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.srv != nil {
		return "", errors.New("fakeexporter: already started")
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", fmt.Errorf("fakeexporter: listen on %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(e.reg, promhttp.HandlerOpts{}))
	e.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	e.addr = ln.Addr().String()
	e.serveErr = make(chan error, 1)
	go func(srv *http.Server, errc chan<- error) {
		errc <- srv.Serve(ln)
	}(e.srv, e.serveErr)
	return "http://" + e.addr + "/metrics", nil
}

// Addr returns the host:port being served (a Prometheus target address), or "" before Start.
func (e *Exporter) Addr() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.addr
}

// Close stops the HTTP server and closes its listener; it is safe to call more than once.
func (e *Exporter) Close() error {
	e.mu.Lock()
	srv, errc := e.srv, e.serveErr
	e.srv, e.serveErr = nil, nil
	e.mu.Unlock()
	if srv == nil {
		return nil
	}
	if err := srv.Close(); err != nil {
		return fmt.Errorf("fakeexporter: close server: %w", err)
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("fakeexporter: serve: %w", err)
	}
	return nil
}
