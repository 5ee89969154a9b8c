package naming

import (
	"strings"
	"testing"
	"time"
)

// TestCompileResources: matchers are injected into every selector, names only when given, labels remapped
// per quantity, the window taken from the cpu query's range; every broken field is named.
func TestCompileResources(t *testing.T) {
	rr, err := CompileResources(&ResourceConfig{
		CPU: ResourceQueries{
			ContainerQuery: `sum by (namespace, pod, container) (rate(container_cpu_usage_seconds_total{container!=""}[2m]))`,
			NodeQuery:      `sum by (instance) (1 - rate(node_cpu_seconds_total{mode="idle"}[1m])) or on() vector(0)`,
			Labels:         ResourceLabels{Node: "instance"},
		},
		Memory: ResourceQueries{
			ContainerQuery: `sum by (namespace, pod, container) (container_memory_working_set_bytes)`,
			NodeQuery:      `sum by (node) (node_memory_MemTotal_bytes - node_memory_MemAvailable_bytes)`,
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if rr.Window != 2*time.Minute || rr.PerNamespace {
		t.Errorf("window %s perNamespace %v", rr.Window, rr.PerNamespace)
	}
	for _, tc := range []struct {
		got  func() (string, error)
		want string
	}{
		{func() (string, error) { return rr.CPU.Pods("shop", []string{"b", "a.1"}) },
			`sum by (namespace, pod, container) (rate(container_cpu_usage_seconds_total{container!="",namespace="shop",pod=~"a\\.1|b"}[2m]))`},
		{func() (string, error) { return rr.CPU.Pods("", nil) },
			`sum by (namespace, pod, container) (rate(container_cpu_usage_seconds_total{container!=""}[2m]))`},
		{func() (string, error) { return rr.CPU.Nodes([]string{"n1"}) },
			`sum by (instance) (1 - rate(node_cpu_seconds_total{instance="n1",mode="idle"}[1m])) or on () vector(0)`},
		{func() (string, error) { return rr.Memory.Nodes([]string{"n1", "n2"}) },
			`sum by (node) (node_memory_MemTotal_bytes{node=~"n1|n2"} - node_memory_MemAvailable_bytes{node=~"n1|n2"})`},
		{func() (string, error) { return rr.Memory.Pods("x\"y", []string{"p"}) },
			`sum by (namespace, pod, container) (container_memory_working_set_bytes{namespace="x\"y",pod="p"})`},
	} {
		got, err := tc.got()
		if err != nil || got != tc.want {
			t.Errorf("got %s (%v)\nwant %s", got, err, tc.want)
		}
	}

	for _, tc := range []struct {
		cfg  ResourceConfig
		want []string
	}{
		{ResourceConfig{}, []string{"cpu.containerQuery: required", "memory.containerQuery: required"}},
		{ResourceConfig{
			CPU:    ResourceQueries{ContainerQuery: `sum by (pod) (cpu)`},
			Memory: ResourceQueries{ContainerQuery: `mem[`, NodeQuery: "x"},
		}, []string{`cpu.containerQuery: aggregates by (pod), which drops label "namespace"`, "memory.containerQuery: ", "resources: field nodeQuery: set for one of cpu and memory only", "window: required"}},
		{ResourceConfig{
			CPU:    ResourceQueries{ContainerQuery: `cpu`, Labels: ResourceLabels{Pod: "a-b"}},
			Memory: ResourceQueries{ContainerQuery: `mem`},
			Window: "5x",
		}, []string{`cpu.labels: "a-b" is not a valid Prometheus label name`, "field window"}},
	} {
		_, err := CompileResources(&tc.cfg)
		if err == nil {
			t.Errorf("%+v: no error", tc.cfg)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("error %q\nlacks %q", err, w)
			}
		}
	}
}

// TestParseConfigResources: a file with only a resources section is a valid native file; unknown fields are named.
func TestParseConfigResources(t *testing.T) {
	cfg, err := ParseConfig([]byte("resources:\n  window: 1m\n  cpu: {containerQuery: 'sum by (namespace, pod, container) (cpu)'}\n  memory: {containerQuery: 'sum by (namespace, pod, container) (mem)'}\n"))
	if err != nil {
		t.Fatal(err)
	}
	rules, err := Compile(cfg, BuiltinResources())
	if err != nil || rules.Resource == nil || rules.Resource.Window != time.Minute {
		t.Fatalf("%+v %v", rules, err)
	}
	if _, err := ParseConfig([]byte("resources:\n  cpus: {}\n")); err == nil || !strings.Contains(err.Error(), `resources: unknown field "cpus"`) {
		t.Errorf("unknown field: %v", err)
	}
}
