package pacompat

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/promql-adapter/promql-adapter/naming"
)

// TestLoadLenientResourceRules: a prometheus-adapter config whose resourceRules are usable serves them
// in the default (lenient) load exactly as Load does; one with an unusable part (a containerQuery that
// does not parse, a missing nodeQuery, no label for pods) starts, reports each part unusable by its
// field, fails only the queries that need it (500 naming the field), and serves everything else.
func TestLoadLenientResourceRules(t *testing.T) {
	const (
		rule    = "rules:\n- seriesQuery: '{__name__=\"elu\",namespace!=\"\",pod!=\"\"}'\n  resources: {template: <<.Resource>>}\n  metricsQuery: avg(<<.Series>>{<<.LabelMatchers>>}) by (<<.GroupBy>>)\n"
		okCPU   = `{containerQuery: 'sum by (<<.GroupBy>>) (rate(cpu{<<.LabelMatchers>>}[1m]))', nodeQuery: 'sum by (<<.GroupBy>>) (rate(ncpu{<<.LabelMatchers>>}[1m]))', containerLabel: container, resources: {template: <<.Resource>>}}`
		okMem   = `{containerQuery: 'sum by (<<.GroupBy>>) (mem{<<.LabelMatchers>>})', nodeQuery: 'sum by (<<.GroupBy>>) (nmem{<<.LabelMatchers>>})', containerLabel: container, resources: {template: <<.Resource>>}}`
		podsOK  = `sum by (pod,container) (mem{namespace="ns",pod=~"a|b"})`
		nodesOK = `sum by (node) (nmem{node=~"a|b"})`
	)
	tests := []struct {
		about, cpu, memory string
		unusable           []string // Rule() of each unusable part
		cpuPods, cpuNodes  string   // the query, or "error: <substring>"
		memPods, memNodes  string
	}{
		{"usable", okCPU, okMem, nil,
			`sum by (pod,container) (rate(cpu{namespace="ns",pod=~"a|b"}[1m]))`, `sum by (node) (rate(ncpu{node=~"a|b"}[1m]))`, podsOK, nodesOK},
		{"containerQuery does not parse as PromQL",
			`{containerQuery: 'sum by (<<.GroupBy>>) (rate(cpu{<<.LabelMatchers>>}[1m])', nodeQuery: 'sum by (<<.GroupBy>>) (ncpu{<<.LabelMatchers>>})', containerLabel: container, resources: {template: <<.Resource>>}}`, okMem,
			[]string{"resourceRules.cpu.containerQuery"},
			"error: resourceRules: cpu.containerQuery: for a sample request: renders invalid PromQL", `sum by (node) (ncpu{node=~"a|b"})`, podsOK, nodesOK},
		{"containerQuery is not a template",
			`{containerQuery: 'sum(cpu{<<.LabelMatchers}[1m])', nodeQuery: 'sum by (<<.GroupBy>>) (ncpu{<<.LabelMatchers>>})', containerLabel: container, resources: {template: <<.Resource>>}}`, okMem,
			[]string{"resourceRules.cpu.containerQuery"},
			"error: resourceRules: cpu.containerQuery:", `sum by (node) (ncpu{node=~"a|b"})`, podsOK, nodesOK},
		{"no nodeQuery", okCPU,
			`{containerQuery: 'sum by (<<.GroupBy>>) (mem{<<.LabelMatchers>>})', containerLabel: container, resources: {template: <<.Resource>>}}`,
			[]string{"resourceRules.memory.nodeQuery"},
			`sum by (pod,container) (rate(cpu{namespace="ns",pod=~"a|b"}[1m]))`, `sum by (node) (rate(ncpu{node=~"a|b"}[1m]))`, podsOK, "error: resourceRules: memory.nodeQuery: required"},
		{"no label maps to pods",
			`{containerQuery: 'cpu{<<.LabelMatchers>>}', nodeQuery: 'ncpu{<<.LabelMatchers>>}', containerLabel: container, resources: {overrides: {namespace: {resource: namespace}, node: {resource: node}}}}`, okMem,
			[]string{"resourceRules.cpu.resources"},
			"error: resourceRules: cpu.resources: no label maps to pods", "error: resourceRules: cpu.resources: no label maps to pods", podsOK, nodesOK},
	}
	for _, tc := range tests {
		t.Run(tc.about, func(t *testing.T) {
			data := []byte(fmt.Sprintf("%sresourceRules:\n  cpu: %s\n  memory: %s\n  window: 1m\n", rule, tc.cpu, tc.memory))
			_, _, strictErr := Load(data, naming.BuiltinResources())
			if (strictErr != nil) != (len(tc.unusable) > 0) {
				t.Errorf("strict Load: %v", strictErr)
			}
			rules, _, err := LoadLenient(data, naming.BuiltinResources())
			if err != nil {
				t.Fatalf("LoadLenient refuses the file: %v", err)
			}
			var got []string
			for _, u := range UnusableRules(rules) {
				got = append(got, u.Rule())
				if !strings.Contains(u.String(), "metrics.k8s.io") {
					t.Errorf("%s: %q does not say what fails", u.Rule(), u)
				}
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.unusable) {
				t.Errorf("unusable %q, want %q", got, tc.unusable)
			}
			if n := len(rules.Series.SeriesQueries()); n != 1 {
				t.Errorf("the custom rule is not served: %d series queries", n)
			}
			if rules.Resource == nil || rules.Resource.CPU == nil || rules.Resource.Memory == nil {
				t.Fatalf("resourceRules not served: %+v", rules.Resource)
			}
			check := func(what, want string, q string, err error) {
				t.Helper()
				if w, ok := strings.CutPrefix(want, "error: "); ok {
					var rf *naming.RuleFault
					if err == nil || !strings.Contains(err.Error(), w) || !errors.As(err, &rf) || rf.Code != http.StatusInternalServerError {
						t.Errorf("%s: %q, %v; want a 500 RuleFault containing %q", what, q, err, w)
					}
					return
				}
				if err != nil || q != want {
					t.Errorf("%s: %q, %v; want %q", what, q, err, want)
				}
			}
			q, err := rules.Resource.CPU.Pods("ns", []string{"a", "b"})
			check("cpu pods", tc.cpuPods, q, err)
			q, err = rules.Resource.CPU.Nodes([]string{"a", "b"})
			check("cpu nodes", tc.cpuNodes, q, err)
			q, err = rules.Resource.Memory.Pods("ns", []string{"a", "b"})
			check("memory pods", tc.memPods, q, err)
			q, err = rules.Resource.Memory.Nodes([]string{"a", "b"})
			check("memory nodes", tc.memNodes, q, err)
		})
	}
}

// TestLoadLenientKubePrometheus: kube-prometheus's resourceRules are served by the default (lenient)
// load with the same PromQL as the strict one.
func TestLoadLenientKubePrometheus(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("..", "..", "testdata", "pacompat-resource", "kube-prometheus.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	strict, _, err := Load(data, naming.BuiltinResources())
	if err != nil {
		t.Fatal(err)
	}
	lenient, _, err := LoadLenient(data, naming.BuiltinResources())
	if err != nil {
		t.Fatal(err)
	}
	if lenient.Resource == nil {
		t.Fatal("LoadLenient drops resourceRules: metrics.k8s.io would serve nothing")
	}
	if u := UnusableRules(lenient); len(u) != 0 {
		t.Errorf("unusable %v", u)
	}
	for _, names := range [][]string{{"a"}, {"a", "b"}, nil} {
		for _, pair := range [][2]*naming.ResourceQuery{{strict.Resource.CPU, lenient.Resource.CPU}, {strict.Resource.Memory, lenient.Resource.Memory}} {
			s, err1 := pair[0].Pods("ns", names)
			l, err2 := pair[1].Pods("ns", names)
			if s != l || err1 != nil || err2 != nil {
				t.Errorf("pods %q: strict %q %v, lenient %q %v", names, s, err1, l, err2)
			}
			s, err1 = pair[0].Nodes(names)
			l, err2 = pair[1].Nodes(names)
			if s != l || err1 != nil || err2 != nil {
				t.Errorf("nodes %q: strict %q %v, lenient %q %v", names, s, err1, l, err2)
			}
		}
	}
	if lenient.Resource.Window != strict.Resource.Window || lenient.Resource.Format != SectionResourceRules {
		t.Errorf("window %s format %s", lenient.Resource.Window, lenient.Resource.Format)
	}
}
