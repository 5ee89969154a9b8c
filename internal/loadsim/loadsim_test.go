package loadsim_test

import (
	"context"
	"errors"
	"math"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/promql-adapter/promql-adapter/internal/loadsim"
)

// fakeClock is a Clock whose time moves only when told to.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// fakePods is a PodSource answering from a table keyed by namespace and selector.
type fakePods struct {
	mu   sync.Mutex
	pods map[string][]string
}

func newFakePods() *fakePods { return &fakePods{pods: map[string][]string{}} }

func (f *fakePods) key(namespace, selector string) string { return namespace + "|" + selector }

// Set makes pods the Ready pods of namespace for selector (e.g. "app=web").
func (f *fakePods) Set(namespace, selector string, pods ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.pods[f.key(namespace, selector)] = slices.Clone(pods)
}

func (f *fakePods) ReadyPods(namespace string, selector labels.Selector) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.pods[f.key(namespace, selector.String())])
}

// webTarget is a target ns/web with service web-svc and selector app=web.
func webTarget(capacity, load float64) loadsim.Target {
	return loadsim.Target{
		Namespace: "ns", Deployment: "web", Service: "web-svc",
		Capacity: capacity, MatchLabels: map[string]string{"app": "web"}, Load: load,
	}
}

// podNames returns n pod names web-0 .. web-(n-1).
func podNames(n int) []string {
	var out []string
	for i := range n {
		out = append(out, "web-"+string(rune('0'+i)))
	}
	return out
}

func near(a, b float64) bool { return math.Abs(a-b) < 1e-9 }

// newSim returns a simulator of targets with a fake clock and fake pods.
func newSim(t *testing.T, pods *fakePods, clock *fakeClock, targets ...loadsim.Target) *loadsim.Simulator {
	t.Helper()
	s, err := loadsim.New(loadsim.Options{Targets: targets, Pods: pods, Clock: clock})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return s
}

// status returns the snapshot of ns/deployment.
func status(t *testing.T, s *loadsim.Simulator, ns, deployment string) loadsim.TargetStatus {
	t.Helper()
	for _, st := range s.Snapshot() {
		if st.Namespace == ns && st.Deployment == deployment {
			return st
		}
	}
	t.Fatalf("no status for %s/%s in %+v", ns, deployment, s.Snapshot())
	return loadsim.TargetStatus{}
}

func TestArithmetic(t *testing.T) {
	for _, tc := range []struct {
		name        string
		capacity    float64
		load        float64
		pods        int
		queue       float64
		elapsed     time.Duration
		wantELU     float64
		wantQueue   float64
		wantPerPod  float64 // http_requests_total of each pod after elapsed
		wantFlights float64
	}{
		{name: "half loaded", capacity: 100, load: 100, pods: 2, elapsed: time.Second,
			wantELU: 0.5, wantQueue: 0, wantPerPod: 50, wantFlights: 5},
		{name: "overloaded clips ELU and grows queue", capacity: 100, load: 300, pods: 2, elapsed: 2 * time.Second,
			wantELU: 1, wantQueue: 200, wantPerPod: 300, wantFlights: 15},
		{name: "spare capacity drains queue", capacity: 100, load: 150, pods: 2, queue: 100, elapsed: time.Second,
			wantELU: 0.75, wantQueue: 50, wantPerPod: 75, wantFlights: 7.5},
		{name: "queue never below zero", capacity: 100, load: 0, pods: 2, queue: 100, elapsed: time.Second,
			wantELU: 0, wantQueue: 0, wantPerPod: 0, wantFlights: 0},
		{name: "no pods: queue takes all load", capacity: 100, load: 50, pods: 0, elapsed: 2 * time.Second,
			wantELU: 0, wantQueue: 100, wantFlights: 2.5},
		{name: "idle", capacity: 10, load: 0, pods: 0, elapsed: time.Second},
		{name: "uneven split", capacity: 40, load: 100, pods: 3, queue: 1, elapsed: 500 * time.Millisecond,
			wantELU: 100.0 / 120, wantQueue: 0, wantPerPod: 100.0 / 3 / 2, wantFlights: 5},
		{name: "exactly at capacity", capacity: 25, load: 100, pods: 4, queue: 7, elapsed: 3 * time.Second,
			wantELU: 1, wantQueue: 7, wantPerPod: 75, wantFlights: 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pods, clock := newFakePods(), newFakeClock()
			pods.Set("ns", "app=web", podNames(tc.pods)...)
			s := newSim(t, pods, clock, webTarget(tc.capacity, tc.load))
			if err := s.SetQueue("ns", "web", tc.queue); err != nil {
				t.Fatalf("SetQueue: %v", err)
			}
			// Advance in uneven steps: the result must not depend on the tick pattern.
			clock.Advance(tc.elapsed / 4)
			s.Tick()
			s.Tick()
			clock.Advance(tc.elapsed - tc.elapsed/4)
			s.Tick()

			st := status(t, s, "ns", "web")
			if st.ReadyPods != tc.pods || len(st.Pods) != tc.pods {
				t.Errorf("ready pods = %d (%v), want %d", st.ReadyPods, st.Pods, tc.pods)
			}
			if !near(st.ELU, tc.wantELU) {
				t.Errorf("ELU = %v, want %v", st.ELU, tc.wantELU)
			}
			if !near(st.Queue, tc.wantQueue) {
				t.Errorf("queue = %v, want %v", st.Queue, tc.wantQueue)
			}
			if !near(st.InFlight, tc.wantFlights) {
				t.Errorf("in flight = %v, want %v", st.InFlight, tc.wantFlights)
			}
			for _, p := range st.Pods {
				if !near(p.RequestsTotal, tc.wantPerPod) {
					t.Errorf("pod %s requests = %v, want %v", p.Name, p.RequestsTotal, tc.wantPerPod)
				}
			}
			wantELUSeries := tc.pods
			if n := testutil.CollectAndCount(s.Registry(), loadsim.MetricELU); n != wantELUSeries {
				t.Errorf("%d %s series, want %d", n, loadsim.MetricELU, wantELUSeries)
			}
			if n := testutil.CollectAndCount(s.Registry(), loadsim.MetricQueue); n != 1 {
				t.Errorf("%d %s series, want 1", n, loadsim.MetricQueue)
			}
		})
	}
}

func TestSetLoadTakesEffectWhenMade(t *testing.T) {
	pods, clock := newFakePods(), newFakeClock()
	pods.Set("ns", "app=web", "web-0", "web-1")
	s := newSim(t, pods, clock, webTarget(100, 100))

	clock.Advance(time.Second)
	if err := s.SetLoad("ns", "web", 300); err != nil { // The first second ran at 100 req/s.
		t.Fatalf("SetLoad: %v", err)
	}
	if st := status(t, s, "ns", "web"); !near(st.ELU, 1) || !near(st.InFlight, 15) {
		t.Errorf("right after SetLoad: ELU %v in flight %v, want 1 and 15", st.ELU, st.InFlight)
	}
	clock.Advance(time.Second)
	s.Tick()
	st := status(t, s, "ns", "web")
	for _, p := range st.Pods {
		if !near(p.RequestsTotal, 50+150) {
			t.Errorf("pod %s requests = %v, want 200", p.Name, p.RequestsTotal)
		}
	}
	if !near(st.Queue, 100) {
		t.Errorf("queue = %v, want 100", st.Queue)
	}

	// SetQueue also cuts the interval: the queue restarts from the set value.
	clock.Advance(time.Second)
	if err := s.SetQueue("ns", "web", 10); err != nil {
		t.Fatalf("SetQueue: %v", err)
	}
	if err := s.SetLoad("ns", "web", 190); err != nil {
		t.Fatalf("SetLoad: %v", err)
	}
	clock.Advance(time.Second)
	s.Tick()
	if st := status(t, s, "ns", "web"); !near(st.Queue, 0) {
		t.Errorf("queue = %v, want 0 (10 drained at 10/s)", st.Queue)
	}
}

func TestPodsComeAndGo(t *testing.T) {
	pods, clock := newFakePods(), newFakeClock()
	pods.Set("ns", "app=web", "web-a", "web-b")
	pods.Set("other", "app=api", "api-x")
	api := loadsim.Target{Namespace: "other", Deployment: "api", Service: "api", Capacity: 10,
		MatchLabels: map[string]string{"app": "api"}, Load: 5}
	s := newSim(t, pods, clock, webTarget(100, 100), api)

	clock.Advance(time.Second)
	s.Tick()
	expect := func(t *testing.T, want string) {
		t.Helper()
		err := testutil.GatherAndCompare(s.Registry(), strings.NewReader(want), loadsim.MetricELU, loadsim.MetricRequests)
		if err != nil {
			t.Error(err)
		}
	}
	expect(t, `
# HELP elu_utilization Simulated event-loop utilisation of a Ready pod (0..1).
# TYPE elu_utilization gauge
elu_utilization{namespace="ns",pod="web-a"} 0.5
elu_utilization{namespace="ns",pod="web-b"} 0.5
elu_utilization{namespace="other",pod="api-x"} 0.5
# HELP http_requests_total Simulated HTTP requests served by a Ready pod.
# TYPE http_requests_total counter
http_requests_total{namespace="ns",pod="web-a",service="web-svc"} 50
http_requests_total{namespace="ns",pod="web-b",service="web-svc"} 50
http_requests_total{namespace="other",pod="api-x",service="api"} 5
`)

	// web-b stops being Ready and web-c becomes Ready: web-b's series go, web-c's start.
	pods.Set("ns", "app=web", "web-a", "web-c")
	clock.Advance(time.Second)
	s.Tick()
	expect(t, `
# HELP elu_utilization Simulated event-loop utilisation of a Ready pod (0..1).
# TYPE elu_utilization gauge
elu_utilization{namespace="ns",pod="web-a"} 0.5
elu_utilization{namespace="ns",pod="web-c"} 0.5
elu_utilization{namespace="other",pod="api-x"} 0.5
# HELP http_requests_total Simulated HTTP requests served by a Ready pod.
# TYPE http_requests_total counter
http_requests_total{namespace="ns",pod="web-a",service="web-svc"} 100
http_requests_total{namespace="ns",pod="web-c",service="web-svc"} 50
http_requests_total{namespace="other",pod="api-x",service="api"} 10
`)

	// All web pods gone: no per-pod series for web, the Service and queue gauges stay.
	pods.Set("ns", "app=web")
	clock.Advance(time.Second)
	s.Tick()
	expect(t, `
# HELP elu_utilization Simulated event-loop utilisation of a Ready pod (0..1).
# TYPE elu_utilization gauge
elu_utilization{namespace="other",pod="api-x"} 0.5
# HELP http_requests_total Simulated HTTP requests served by a Ready pod.
# TYPE http_requests_total counter
http_requests_total{namespace="other",pod="api-x",service="api"} 15
`)
	err := testutil.GatherAndCompare(s.Registry(), strings.NewReader(`
# HELP queue_messages_ready Simulated messages ready in the queue consumed by a Deployment.
# TYPE queue_messages_ready gauge
queue_messages_ready{namespace="ns",queue="web"} 100
queue_messages_ready{namespace="other",queue="api"} 0
# HELP service_requests_in_flight Simulated requests in flight at a Service (load x 50ms).
# TYPE service_requests_in_flight gauge
service_requests_in_flight{namespace="ns",service="web-svc"} 5
service_requests_in_flight{namespace="other",service="api"} 0.25
`), loadsim.MetricQueue, loadsim.MetricInFlight)
	if err != nil {
		t.Error(err)
	}

	// web-b comes back: its counter starts afresh.
	pods.Set("ns", "app=web", "web-b")
	clock.Advance(time.Second)
	s.Tick()
	st := status(t, s, "ns", "web")
	if want := []loadsim.PodStatus{{Name: "web-b", RequestsTotal: 100}}; !slices.Equal(st.Pods, want) {
		t.Errorf("pods = %+v, want %+v", st.Pods, want)
	}
}

func TestOverlappingSelectorsExportOnce(t *testing.T) {
	pods, clock := newFakePods(), newFakeClock()
	pods.Set("ns", "app=web", "shared")
	other := loadsim.Target{Namespace: "ns", Deployment: "web2", Service: "web2", Capacity: 100,
		MatchLabels: map[string]string{"app": "web"}, Load: 100}
	s := newSim(t, pods, clock, webTarget(100, 50), other)
	// Same pod in two targets: one ELU series (first target wins), one request series per service.
	if n := testutil.CollectAndCount(s.Registry(), loadsim.MetricELU); n != 1 {
		t.Errorf("%d ELU series, want 1", n)
	}
	if n := testutil.CollectAndCount(s.Registry(), loadsim.MetricRequests); n != 2 {
		t.Errorf("%d request series, want 2", n)
	}
	if _, err := s.Registry().Gather(); err != nil {
		t.Errorf("Gather: %v", err)
	}
}

func TestSetErrors(t *testing.T) {
	s := newSim(t, newFakePods(), newFakeClock(), webTarget(100, 0))
	for _, tc := range []struct {
		name string
		err  error
		want error
	}{
		{"load unknown deployment", s.SetLoad("ns", "nope", 1), loadsim.ErrUnknownTarget},
		{"load unknown namespace", s.SetLoad("nope", "web", 1), loadsim.ErrUnknownTarget},
		{"load negative", s.SetLoad("ns", "web", -1), loadsim.ErrInvalidValue},
		{"load NaN", s.SetLoad("ns", "web", math.NaN()), loadsim.ErrInvalidValue},
		{"load Inf", s.SetLoad("ns", "web", math.Inf(1)), loadsim.ErrInvalidValue},
		{"queue unknown", s.SetQueue("ns", "nope", 1), loadsim.ErrUnknownTarget},
		{"queue negative", s.SetQueue("ns", "web", -0.5), loadsim.ErrInvalidValue},
	} {
		if !errors.Is(tc.err, tc.want) {
			t.Errorf("%s: error %v, want %v", tc.name, tc.err, tc.want)
		}
	}
	if _, err := s.Status("ns", "nope"); !errors.Is(err, loadsim.ErrUnknownTarget) {
		t.Errorf("Status of unknown target: %v", err)
	}
	if st := status(t, s, "ns", "web"); st.Load != 0 || st.Queue != 0 {
		t.Errorf("failed calls changed the state: %+v", st)
	}
}

func TestNewValidation(t *testing.T) {
	good := webTarget(100, 0)
	mod := func(f func(*loadsim.Target)) loadsim.Target {
		t := good
		t.MatchLabels = map[string]string{"app": "web"}
		f(&t)
		return t
	}
	for _, tc := range []struct {
		name string
		opts loadsim.Options
		want string
	}{
		{"no targets", loadsim.Options{Pods: newFakePods()}, "no targets"},
		{"no pod source", loadsim.Options{Targets: []loadsim.Target{good}}, "no pod source"},
		{"negative period", loadsim.Options{Targets: []loadsim.Target{good}, Pods: newFakePods(), TickPeriod: -1}, "negative tick period"},
		{"duplicate target", loadsim.Options{Targets: []loadsim.Target{good, mod(func(t *loadsim.Target) { t.Service = "x" })}, Pods: newFakePods()}, "duplicate target ns/web"},
		{"duplicate service", loadsim.Options{Targets: []loadsim.Target{good, mod(func(t *loadsim.Target) { t.Deployment = "x" })}, Pods: newFakePods()}, "service ns/web-svc already used"},
		{"empty namespace", loadsim.Options{Targets: []loadsim.Target{mod(func(t *loadsim.Target) { t.Namespace = "" })}, Pods: newFakePods()}, "empty namespace"},
		{"empty deployment", loadsim.Options{Targets: []loadsim.Target{mod(func(t *loadsim.Target) { t.Deployment = "" })}, Pods: newFakePods()}, "empty deployment"},
		{"empty service", loadsim.Options{Targets: []loadsim.Target{mod(func(t *loadsim.Target) { t.Service = "" })}, Pods: newFakePods()}, "empty service"},
		{"zero capacity", loadsim.Options{Targets: []loadsim.Target{mod(func(t *loadsim.Target) { t.Capacity = 0 })}, Pods: newFakePods()}, "capacity 0"},
		{"NaN capacity", loadsim.Options{Targets: []loadsim.Target{mod(func(t *loadsim.Target) { t.Capacity = math.NaN() })}, Pods: newFakePods()}, "capacity NaN"},
		{"empty selector", loadsim.Options{Targets: []loadsim.Target{mod(func(t *loadsim.Target) { t.MatchLabels = nil })}, Pods: newFakePods()}, "empty selector"},
		{"bad selector", loadsim.Options{Targets: []loadsim.Target{mod(func(t *loadsim.Target) { t.MatchLabels = map[string]string{"a b": "c"} })}, Pods: newFakePods()}, "selector"},
		{"negative load", loadsim.Options{Targets: []loadsim.Target{mod(func(t *loadsim.Target) { t.Load = -3 })}, Pods: newFakePods()}, "invalid value"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := loadsim.New(tc.opts)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("New: error %v, want one containing %q", err, tc.want)
			}
		})
	}
	s, err := loadsim.New(loadsim.Options{Targets: []loadsim.Target{good}, Pods: newFakePods()})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if s.TickPeriod() != loadsim.DefaultTickPeriod {
		t.Errorf("TickPeriod = %s, want %s", s.TickPeriod(), loadsim.DefaultTickPeriod)
	}
}

func TestRunTicks(t *testing.T) {
	pods, clock := newFakePods(), newFakeClock()
	pods.Set("ns", "app=web", "web-0")
	s, err := loadsim.New(loadsim.Options{Targets: []loadsim.Target{webTarget(100, 40)}, Pods: pods, Clock: clock, TickPeriod: 5 * time.Millisecond})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		s.Run(ctx)
		close(done)
	}()
	pods.Set("ns", "app=web", "web-0", "web-1")
	clock.Advance(2 * time.Second)
	// Whether or not a tick saw web-1 before the clock moved, both pods share the 2 s.
	want := []loadsim.PodStatus{{Name: "web-0", RequestsTotal: 40}, {Name: "web-1", RequestsTotal: 40}}
	deadline := time.Now().Add(10 * time.Second)
	for st := status(t, s, "ns", "web"); !slices.Equal(st.Pods, want); st = status(t, s, "ns", "web") {
		if time.Now().After(deadline) {
			t.Fatalf("pods = %+v, want %+v", st.Pods, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
}

func TestRealClock(t *testing.T) {
	pods := newFakePods()
	pods.Set("ns", "app=web", "web-0")
	start := time.Now()
	s, err := loadsim.New(loadsim.Options{Targets: []loadsim.Target{webTarget(100, 1000)}, Pods: pods, TickPeriod: 10 * time.Millisecond})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	go s.Run(ctx)
	// Wait for 0.1 s worth of requests, however slowly the machine schedules Run.
	deadline := time.Now().Add(10 * time.Second)
	for {
		st := status(t, s, "ns", "web")
		elapsed := time.Since(start).Seconds()
		got := st.Pods[0].RequestsTotal
		if got > 1000*elapsed+1e-6 { // Never ahead of wall time.
			t.Fatalf("requests after %.3fs at 1000 req/s = %v", elapsed, got)
		}
		if got >= 100 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("requests after %.3fs at 1000 req/s = %v, want >= 100", elapsed, got)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
