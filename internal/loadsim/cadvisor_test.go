package loadsim_test

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/promql-adapter/promql-adapter/internal/loadsim"
)

// valueOf is the value of the series name{want} in s's registry.
func valueOf(t *testing.T, s *loadsim.Simulator, name string, want map[string]string) float64 {
	t.Helper()
	mfs, err := s.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			got := map[string]string{}
			for _, l := range m.GetLabel() {
				got[l.GetName()] = l.GetValue()
			}
			for k, v := range want {
				if got[k] != v {
					continue next
				}
			}
			if m.GetCounter() != nil {
				return m.GetCounter().GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	t.Fatalf("no series %s%v", name, want)
	return 0
}

// detailPods is fakePods that also knows containers and nodes.
type detailPods struct {
	*fakePods
	containers []string
	node       string
}

func (d detailPods) Details(string, string) ([]string, string) { return d.containers, d.node }

// TestResourceSeries: every Ready pod's containers get cAdvisor-shaped cpu (tracking the load) and memory,
// its node the kubelet-shaped node series; a pod no longer Ready loses its series.
func TestResourceSeries(t *testing.T) {
	pods := detailPods{newFakePods(), []string{"app", "sidecar"}, "node-1"}
	pods.Set("ns", "app=web", "web-0", "web-1")
	clock := newFakeClock()
	s, err := loadsim.New(loadsim.Options{Targets: []loadsim.Target{webTarget(100, 100)}, Pods: pods, Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	clock.Advance(10 * time.Second)
	s.Tick()
	// ELU 0.5 per pod for 10 s: 5 CPU seconds per pod, 2.5 per container.
	cpu := valueOf(t, s, loadsim.MetricContainerCPU, map[string]string{"namespace": "ns", "pod": "web-0", "container": "sidecar"})
	if !near(cpu, 2.5) {
		t.Errorf("container cpu seconds %v, want 2.5", cpu)
	}
	mem := valueOf(t, s, loadsim.MetricContainerMemory, map[string]string{"namespace": "ns", "pod": "web-1", "container": "app"})
	if want := float64(loadsim.ContainerMemoryBase) + 0.5*loadsim.ContainerMemoryPerELU; !near(mem, want) {
		t.Errorf("container memory %v, want %v", mem, want)
	}
	nodeCPU := valueOf(t, s, loadsim.MetricNodeCPU, map[string]string{"node": "node-1"})
	if want := 10.0 + 10*loadsim.NodeCPUBase; !near(nodeCPU, want) {
		t.Errorf("node cpu seconds %v, want %v (both pods' and the base)", nodeCPU, want)
	}
	// Load doubles: cpu grows twice as fast.
	if err := s.SetLoad("ns", "web", 200); err != nil {
		t.Fatal(err)
	}
	clock.Advance(10 * time.Second)
	s.Tick()
	cpu2 := valueOf(t, s, loadsim.MetricContainerCPU, map[string]string{"namespace": "ns", "pod": "web-0", "container": "sidecar"})
	if !near(cpu2-cpu, 5) {
		t.Errorf("container cpu grew %v in 10 s at ELU 1, want 5 (half of the pod's)", cpu2-cpu)
	}
	pods.Set("ns", "app=web", "web-1")
	s.Tick()
	if n := testutil.CollectAndCount(s.Registry(), loadsim.MetricContainerCPU); n != 2 {
		t.Errorf("%d cpu series after web-0 left, want 2 (web-1's two containers)", n)
	}
}
