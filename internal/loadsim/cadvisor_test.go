package loadsim_test

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/promql-adapter/promql-adapter/internal/loadsim"
	itestutil "github.com/promql-adapter/promql-adapter/internal/testutil"
)

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
	cpu := itestutil.GatheredValue(t, s.Registry(), loadsim.MetricContainerCPU, map[string]string{"namespace": "ns", "pod": "web-0", "container": "sidecar"})
	if !near(cpu, 2.5) {
		t.Errorf("container cpu seconds %v, want 2.5", cpu)
	}
	mem := itestutil.GatheredValue(t, s.Registry(), loadsim.MetricContainerMemory, map[string]string{"namespace": "ns", "pod": "web-1", "container": "app"})
	if want := float64(loadsim.ContainerMemoryBase) + 0.5*loadsim.ContainerMemoryPerELU; !near(mem, want) {
		t.Errorf("container memory %v, want %v", mem, want)
	}
	nodeCPU := itestutil.GatheredValue(t, s.Registry(), loadsim.MetricNodeCPU, map[string]string{"node": "node-1"})
	if want := 10.0 + 10*loadsim.NodeCPUBase; !near(nodeCPU, want) {
		t.Errorf("node cpu seconds %v, want %v (both pods' and the base)", nodeCPU, want)
	}
	// Load doubles: cpu grows twice as fast.
	if err := s.SetLoad("ns", "web", 200); err != nil {
		t.Fatal(err)
	}
	clock.Advance(10 * time.Second)
	s.Tick()
	cpu2 := itestutil.GatheredValue(t, s.Registry(), loadsim.MetricContainerCPU, map[string]string{"namespace": "ns", "pod": "web-0", "container": "sidecar"})
	if !near(cpu2-cpu, 5) {
		t.Errorf("container cpu grew %v in 10 s at ELU 1, want 5 (half of the pod's)", cpu2-cpu)
	}
	pods.Set("ns", "app=web", "web-1")
	s.Tick()
	if n := testutil.CollectAndCount(s.Registry(), loadsim.MetricContainerCPU); n != 2 {
		t.Errorf("%d cpu series after web-0 left, want 2 (web-1's two containers)", n)
	}
}
