// Package loadsim simulates Node.js-like Deployments whose event-loop
// utilisation (ELU) follows an adjustable request load, and exports the
// resulting metrics for Prometheus so that the adapter can be exercised end
// to end.
//
// Each simulated Deployment (a Target) has a load in requests/s that is
// spread evenly over its Ready pods, as reported by a PodSource. Per Ready
// pod the simulator exports
//
//	elu_utilization{namespace,pod}                = load / (readyPods × capacity), clipped to [0,1]
//	http_requests_total{namespace,pod,service}    growing by load/readyPods per second
//
// and per target
//
//	service_requests_in_flight{namespace,service} = load × 0.05 (50 ms latency)
//	queue_messages_ready{namespace,queue}         backlog growing by load − readyPods×capacity per second, never below 0
//
// where queue is the Deployment name. A target without Ready pods exports no
// per-pod series.
//
// Time advances in steps: Tick (called every Options.TickPeriod by Run) first
// reads the Ready pods of every target and then advances the counters and
// the queue by the time elapsed since the previous step, as though those pods
// and the current load had held for the whole interval. SetLoad and SetQueue
// first advance to the current time with the previous load, so a change takes
// effect exactly when it is made. Metrics and Snapshot show the state as of
// the last step; ELU and in-flight follow a load change at once.
//
// A pod's request counter starts at 0 (plus its share of the step in which
// it was first seen Ready) and is forgotten as soon as the pod is no longer
// Ready: its series disappears, and if the pod becomes Ready again its
// counter starts afresh, which Prometheus treats as a counter reset.
package loadsim

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/labels"
)

// DefaultTickPeriod is the step period Run uses when Options.TickPeriod is zero.
const DefaultTickPeriod = 100 * time.Millisecond

// RequestLatency is the simulated per-request latency that turns load into in-flight requests.
const RequestLatency = 50 * time.Millisecond

// Error is a constant sentinel error of this package, for use with errors.Is.
type Error string

// Error returns the message.
func (e Error) Error() string { return string(e) }

// Sentinel errors wrapped by the errors of Simulator methods.
const (
	ErrUnknownTarget Error = "unknown target" // No simulated namespace/deployment of that name.
	ErrInvalidValue  Error = "invalid value"  // A negative, NaN or infinite load or queue length.
)

// Target describes one simulated Deployment.
type Target struct {
	Namespace   string            // Namespace of the Deployment, its pods and its Service.
	Deployment  string            // Deployment name; also the name of its queue.
	Service     string            // Service name put on request metrics.
	Capacity    float64           // Requests/s one pod serves at ELU 1.0; must be > 0.
	MatchLabels map[string]string // The Deployment's spec.selector.matchLabels; must not be empty.
	Load        float64           // Initial load in requests/s.
}

// Clock is the time source of a Simulator; tests inject a fake one.
type Clock interface {
	Now() time.Time // Now returns the current time.
}

// realClock is the Clock used when Options.Clock is nil.
type realClock struct{}

// Now returns time.Now().
func (realClock) Now() time.Time { return time.Now() }

// Options configures New.
type Options struct {
	Targets    []Target      // Simulated Deployments; at least one, unique by namespace/deployment and by namespace/service.
	Pods       PodSource     // Source of Ready pods; required.
	Clock      Clock         // Time source; nil means the real clock.
	TickPeriod time.Duration // Period of Run's steps; zero means DefaultTickPeriod.
}

// PodStatus is one Ready pod of a target in a TargetStatus.
type PodStatus struct {
	Name          string  `json:"name"`          // Pod name.
	RequestsTotal float64 `json:"requestsTotal"` // Current value of its http_requests_total counter.
}

// TargetStatus is the state of one target as of the last step (load and derived values are current).
type TargetStatus struct {
	Namespace  string      `json:"namespace"`  // Target namespace.
	Deployment string      `json:"deployment"` // Deployment (and queue) name.
	Service    string      `json:"service"`    // Service name.
	Selector   string      `json:"selector"`   // Pod label selector, e.g. "app=web".
	Capacity   float64     `json:"capacity"`   // Requests/s per pod at ELU 1.0.
	Load       float64     `json:"load"`       // Current load in requests/s.
	ReadyPods  int         `json:"readyPods"`  // Number of Ready pods.
	ELU        float64     `json:"elu"`        // Per-pod ELU in [0,1]; 0 (and not exported) without Ready pods.
	InFlight   float64     `json:"inFlight"`   // service_requests_in_flight value.
	Queue      float64     `json:"queue"`      // queue_messages_ready value.
	Pods       []PodStatus `json:"pods"`       // Ready pods sorted by name.
}

// targetKey identifies a target by namespace and deployment.
type targetKey struct{ namespace, deployment string }

// target is the mutable state of one simulated Deployment, guarded by Simulator.mu.
type target struct {
	cfg      Target
	selector labels.Selector
	load     float64
	queue    float64
	pods     []string             // Ready pods as of the last step, sorted.
	requests map[string]float64   // Pod name to http_requests_total value.
	cpu      map[string]float64   // Pod name to CPU seconds (container_cpu_usage_seconds_total summed over containers).
	detail   map[string]podDetail // Pod name to its containers and node.
}

// Simulator simulates the targets and serves their metrics and control API; its methods are safe for concurrent use.
type Simulator struct {
	clock  Clock
	source PodSource
	period time.Duration
	reg    *prometheus.Registry

	mu      sync.Mutex
	last    time.Time // Time of the last step.
	targets []*target // In configuration order.
	byKey   map[targetKey]*target
	nodeCPU map[string]float64 // Node name to CPU seconds, for every node a Ready pod was seen on.
}

// New validates opts, reads the initial Ready pods and returns a Simulator whose metrics are in its own registry.
func New(opts Options) (*Simulator, error) {
	if len(opts.Targets) == 0 {
		return nil, errors.New("loadsim: no targets")
	}
	if opts.Pods == nil {
		return nil, errors.New("loadsim: no pod source")
	}
	if opts.TickPeriod < 0 {
		return nil, fmt.Errorf("loadsim: negative tick period %s", opts.TickPeriod)
	}
	s := &Simulator{
		clock:   opts.Clock,
		source:  opts.Pods,
		period:  opts.TickPeriod,
		reg:     prometheus.NewRegistry(),
		byKey:   map[targetKey]*target{},
		nodeCPU: map[string]float64{},
	}
	if s.clock == nil {
		s.clock = realClock{}
	}
	if s.period == 0 {
		s.period = DefaultTickPeriod
	}
	services := map[targetKey]bool{}
	for _, cfg := range opts.Targets {
		t, err := newTarget(cfg)
		if err != nil {
			return nil, err
		}
		k := targetKey{cfg.Namespace, cfg.Deployment}
		if s.byKey[k] != nil {
			return nil, fmt.Errorf("loadsim: duplicate target %s/%s", cfg.Namespace, cfg.Deployment)
		}
		sk := targetKey{cfg.Namespace, cfg.Service}
		if services[sk] {
			return nil, fmt.Errorf("loadsim: target %s/%s: service %s/%s already used by another target",
				cfg.Namespace, cfg.Deployment, cfg.Namespace, cfg.Service)
		}
		services[sk] = true
		s.byKey[k] = t
		s.targets = append(s.targets, t)
	}
	if err := s.reg.Register(newCollector(s)); err != nil {
		return nil, fmt.Errorf("loadsim: register collector: %w", err)
	}
	s.last = s.clock.Now()
	s.Tick()
	return s, nil
}

// newTarget validates cfg and returns its initial state.
func newTarget(cfg Target) (*target, error) {
	name := cfg.Namespace + "/" + cfg.Deployment
	switch {
	case cfg.Namespace == "":
		return nil, fmt.Errorf("loadsim: target %q: empty namespace", name)
	case cfg.Deployment == "":
		return nil, fmt.Errorf("loadsim: target %q: empty deployment", name)
	case cfg.Service == "":
		return nil, fmt.Errorf("loadsim: target %s: empty service", name)
	case !(cfg.Capacity > 0) || math.IsInf(cfg.Capacity, 0):
		return nil, fmt.Errorf("loadsim: target %s: capacity %v is not a positive finite number", name, cfg.Capacity)
	case len(cfg.MatchLabels) == 0:
		return nil, fmt.Errorf("loadsim: target %s: empty selector", name)
	}
	if err := checkValue(cfg.Load); err != nil {
		return nil, fmt.Errorf("loadsim: target %s: load: %w", name, err)
	}
	sel, err := labels.ValidatedSelectorFromSet(cfg.MatchLabels)
	if err != nil {
		return nil, fmt.Errorf("loadsim: target %s: selector: %w", name, err)
	}
	cfg.MatchLabels = maps.Clone(cfg.MatchLabels)
	return &target{cfg: cfg, selector: sel, load: cfg.Load, requests: map[string]float64{}, cpu: map[string]float64{}, detail: map[string]podDetail{}}, nil
}

// checkValue reports whether v is usable as a load or queue length.
func checkValue(v float64) error {
	if v < 0 || math.IsNaN(v) || math.IsInf(v, 0) {
		return fmt.Errorf("%w: %v is not a finite number >= 0", ErrInvalidValue, v)
	}
	return nil
}

// Registry returns the simulator's metrics registry (it holds no Go or process collectors).
func (s *Simulator) Registry() *prometheus.Registry { return s.reg }

// TickPeriod returns the period of Run's steps.
func (s *Simulator) TickPeriod() time.Duration { return s.period }

// Run calls Tick every TickPeriod until ctx is done.
func (s *Simulator) Run(ctx context.Context) {
	tk := time.NewTicker(s.period)
	defer tk.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tk.C:
			s.Tick()
		}
	}
}

// Tick reads the Ready pods of every target, then advances the simulation to Clock.Now().
func (s *Simulator) Tick() {
	// The clock is read first so that pods observed are never older than the time they are used for.
	// The pod source is asked outside the lock; s.targets and their configs never change.
	now := s.clock.Now()
	ready := make([][]string, len(s.targets))
	details := make([]map[string]podDetail, len(s.targets))
	for i, t := range s.targets {
		pods := slices.Clone(s.source.ReadyPods(t.cfg.Namespace, t.selector))
		slices.Sort(pods)
		ready[i] = slices.Compact(pods)
		details[i] = s.details(t, ready[i])
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	for i, t := range s.targets {
		t.setPods(ready[i])
		t.detail = details[i]
	}
	s.advanceLocked(now)
}

// setPods replaces the Ready pods of t, dropping the counters of pods no longer Ready.
func (t *target) setPods(pods []string) {
	for p := range t.requests {
		if _, ok := slices.BinarySearch(pods, p); !ok {
			delete(t.requests, p)
			delete(t.cpu, p)
		}
	}
	for _, p := range pods {
		if _, ok := t.requests[p]; !ok {
			t.requests[p] = 0
		}
	}
	t.pods = pods
}

// advanceLocked integrates counters and queues from the last step to now; s.mu must be held.
func (s *Simulator) advanceLocked(now time.Time) {
	dt := now.Sub(s.last).Seconds()
	if dt <= 0 {
		return
	}
	s.last = now
	for _, t := range s.targets {
		n := float64(len(t.pods))
		if n > 0 {
			share := t.load / n * dt
			for _, p := range t.pods {
				t.requests[p] += share
			}
		}
		t.queue = max(0, t.queue+(t.load-n*t.cfg.Capacity)*dt)
	}
	s.advanceResourcesLocked(dt)
}

// lookupLocked returns the target namespace/deployment; s.mu must be held.
func (s *Simulator) lookupLocked(namespace, deployment string) (*target, error) {
	t := s.byKey[targetKey{namespace, deployment}]
	if t == nil {
		return nil, fmt.Errorf("%w %s/%s", ErrUnknownTarget, namespace, deployment)
	}
	return t, nil
}

// SetLoad sets the load of namespace/deployment to rps requests/s from now on.
func (s *Simulator) SetLoad(namespace, deployment string, rps float64) error {
	return s.set(namespace, deployment, rps, "load", func(t *target) { t.load = rps })
}

// SetQueue sets the backlog of the queue of namespace/deployment to messages.
func (s *Simulator) SetQueue(namespace, deployment string, messages float64) error {
	return s.set(namespace, deployment, messages, "queue", func(t *target) { t.queue = messages })
}

// set advances to now, then applies f to the target after validating v.
func (s *Simulator) set(namespace, deployment string, v float64, what string, f func(*target)) error {
	now := s.clock.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	t, err := s.lookupLocked(namespace, deployment)
	if err != nil {
		return fmt.Errorf("loadsim: set %s: %w", what, err)
	}
	if err := checkValue(v); err != nil {
		return fmt.Errorf("loadsim: set %s of %s/%s: %w", what, namespace, deployment, err)
	}
	s.advanceLocked(now)
	f(t)
	return nil
}

// Snapshot returns the status of every target in configuration order.
func (s *Simulator) Snapshot() []TargetStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]TargetStatus, 0, len(s.targets))
	for _, t := range s.targets {
		out = append(out, t.statusLocked())
	}
	return out
}

// Status returns the status of namespace/deployment.
func (s *Simulator) Status(namespace, deployment string) (TargetStatus, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, err := s.lookupLocked(namespace, deployment)
	if err != nil {
		return TargetStatus{}, fmt.Errorf("loadsim: status: %w", err)
	}
	return t.statusLocked(), nil
}

// statusLocked returns the status of t; Simulator.mu must be held.
func (t *target) statusLocked() TargetStatus {
	st := TargetStatus{
		Namespace:  t.cfg.Namespace,
		Deployment: t.cfg.Deployment,
		Service:    t.cfg.Service,
		Selector:   t.selector.String(),
		Capacity:   t.cfg.Capacity,
		Load:       t.load,
		ReadyPods:  len(t.pods),
		ELU:        t.elu(),
		InFlight:   t.inFlight(),
		Queue:      t.queue,
		Pods:       make([]PodStatus, 0, len(t.pods)),
	}
	for _, p := range t.pods {
		st.Pods = append(st.Pods, PodStatus{Name: p, RequestsTotal: t.requests[p]})
	}
	return st
}

// elu returns the per-pod event-loop utilisation, 0 without Ready pods.
func (t *target) elu() float64 {
	if len(t.pods) == 0 {
		return 0
	}
	return min(1, max(0, t.load/(float64(len(t.pods))*t.cfg.Capacity)))
}

// inFlight returns the number of requests in flight at the Service.
func (t *target) inFlight() float64 { return t.load * RequestLatency.Seconds() }
