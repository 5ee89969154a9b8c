package loadsim

import (
	"slices"

	"github.com/prometheus/client_golang/prometheus"
)

// cAdvisor- and kubelet-shaped series, so the resource metrics API (kubectl top, HPA type: Resource)
// runs end to end on simulated pods.
const (
	MetricContainerCPU    = "container_cpu_usage_seconds_total"  // {namespace,pod,container}: the pod's ELU in cores, split over its containers
	MetricContainerMemory = "container_memory_working_set_bytes" // {namespace,pod,container}: ContainerMemoryBase + ContainerMemoryPerELU x ELU
	MetricNodeCPU         = "node_cpu_usage_seconds_total"       // {node}: NodeCPUBase plus the cores of the node's Ready pods
	MetricNodeMemory      = "node_memory_working_set_bytes"      // {node}: NodeMemoryBase plus the memory of the node's Ready pods
)

// Resource model constants.
const (
	ContainerMemoryBase   = 64 << 20  // bytes per container at ELU 0
	ContainerMemoryPerELU = 64 << 20  // extra bytes per container at ELU 1
	NodeCPUBase           = 0.1       // cores a node uses without pods
	NodeMemoryBase        = 512 << 20 // bytes a node uses without pods
)

// PodDetails is implemented by a PodSource that knows a pod's container names and node;
// without it every pod has one container named after its Deployment and no node.
type PodDetails interface {
	Details(namespace, pod string) (containers []string, node string)
}

// podDetail is what the resource series need about one Ready pod.
type podDetail struct {
	containers []string
	node       string
}

// details reads the containers and node of pods (outside the simulator lock).
func (s *Simulator) details(t *target, pods []string) map[string]podDetail {
	out := make(map[string]podDetail, len(pods))
	pd, _ := s.source.(PodDetails)
	for _, p := range pods {
		d := podDetail{containers: []string{t.cfg.Deployment}}
		if pd != nil {
			if cs, node := pd.Details(t.cfg.Namespace, p); len(cs) > 0 {
				d = podDetail{containers: slices.Clone(cs), node: node}
			}
		}
		out[p] = d
	}
	return out
}

// advanceResourcesLocked integrates CPU seconds of pods and nodes over dt seconds; s.mu must be held.
func (s *Simulator) advanceResourcesLocked(dt float64) {
	nodes := map[string]bool{}
	for n := range s.nodeCPU {
		nodes[n] = true
	}
	for _, t := range s.targets {
		elu := t.elu()
		for _, p := range t.pods {
			t.cpu[p] += elu * dt
			if n := t.detail[p].node; n != "" {
				s.nodeCPU[n] += elu * dt
				nodes[n] = true
			}
		}
	}
	for n := range nodes {
		s.nodeCPU[n] += NodeCPUBase * dt
	}
}

// containerMemory is one container's working set at elu.
func containerMemory(elu float64) float64 { return ContainerMemoryBase + ContainerMemoryPerELU*elu }

type resourceDescs struct {
	cpu, mem, nodeCPU, nodeMem *prometheus.Desc
}

func newResourceDescs() resourceDescs {
	c := []string{"namespace", "pod", "container"}
	return resourceDescs{
		cpu:     prometheus.NewDesc(MetricContainerCPU, "Simulated CPU seconds of a container of a Ready pod.", c, nil),
		mem:     prometheus.NewDesc(MetricContainerMemory, "Simulated working set of a container of a Ready pod.", c, nil),
		nodeCPU: prometheus.NewDesc(MetricNodeCPU, "Simulated CPU seconds of a node.", []string{"node"}, nil),
		nodeMem: prometheus.NewDesc(MetricNodeMemory, "Simulated working set of a node.", []string{"node"}, nil),
	}
}

func (d resourceDescs) describe(ch chan<- *prometheus.Desc) {
	ch <- d.cpu
	ch <- d.mem
	ch <- d.nodeCPU
	ch <- d.nodeMem
}

// collectLocked sends the resource series; s.mu must be held. A pod matched by several targets is sent for the first.
func (d resourceDescs) collectLocked(s *Simulator, ch chan<- prometheus.Metric) {
	type key struct{ ns, pod string }
	seen := map[key]bool{}
	nodeMem := map[string]float64{}
	for n := range s.nodeCPU {
		nodeMem[n] = NodeMemoryBase
	}
	for _, t := range s.targets {
		elu := t.elu()
		for _, p := range t.pods {
			k := key{t.cfg.Namespace, p}
			if seen[k] {
				continue
			}
			seen[k] = true
			det := t.detail[p]
			n := float64(len(det.containers))
			for _, c := range det.containers {
				ch <- prometheus.MustNewConstMetric(d.cpu, prometheus.CounterValue, t.cpu[p]/n, t.cfg.Namespace, p, c)
				ch <- prometheus.MustNewConstMetric(d.mem, prometheus.GaugeValue, containerMemory(elu), t.cfg.Namespace, p, c)
				if det.node != "" {
					nodeMem[det.node] += containerMemory(elu)
				}
			}
		}
	}
	for n, v := range s.nodeCPU {
		ch <- prometheus.MustNewConstMetric(d.nodeCPU, prometheus.CounterValue, v, n)
		ch <- prometheus.MustNewConstMetric(d.nodeMem, prometheus.GaugeValue, nodeMem[n], n)
	}
}
