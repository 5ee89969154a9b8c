package pacompat

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/promql-adapter/promql-adapter/internal/testutil"
	"github.com/promql-adapter/promql-adapter/naming"
)

const resourceTestdata = "../../testdata/pacompat-resource"

// TestResourceRulesGolden renders every resourceRules query of testdata/pacompat-resource/*.yaml for the
// requests metrics.k8s.io sends prometheus-adapter (one pod, several pods of a namespace, names that need
// escaping, one node, several nodes) and compares with the .golden files.
func TestResourceRulesGolden(t *testing.T) {
	paths, err := filepath.Glob(filepath.Join(resourceTestdata, "*.yaml"))
	if err != nil || len(paths) < 3 {
		t.Fatalf("cases in %s: %v %v", resourceTestdata, paths, err)
	}
	for _, path := range paths {
		t.Run(filepath.Base(path), func(t *testing.T) {
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			rules, _, err := Load(data, naming.BuiltinResources())
			if err != nil {
				t.Fatal(err)
			}
			rr := rules.Resource
			if rr == nil || !rr.PerNamespace {
				t.Fatalf("resource rules %+v: want per-namespace rules", rr)
			}
			var b strings.Builder
			fmt.Fprintf(&b, "window: %s\n", rr.Window)
			for _, q := range []struct {
				name string
				q    *naming.ResourceQuery
			}{{"cpu", rr.CPU}, {"memory", rr.Memory}} {
				fmt.Fprintf(&b, "== %s (namespace=%s pod=%s container=%s node=%s)\n", q.name, q.q.NSLabel, q.q.PodLabel, q.q.ContainerLabel, q.q.NodeLabel)
				for _, req := range []struct {
					ns    string
					names []string
				}{{"shop", []string{"web-1"}}, {"shop", []string{"web-1", "web-2"}}, {"a.b", []string{"x.y", `q"'\`}}} {
					got, err := q.q.Pods(req.ns, req.names)
					if err != nil {
						got = "error: " + err.Error()
					}
					fmt.Fprintf(&b, "-- pods namespace=%q names=%q\n%s\n", req.ns, req.names, strings.TrimSpace(got))
				}
				for _, names := range [][]string{{"node-1"}, {"node-1", "node-2"}} {
					got, err := q.q.Nodes(names)
					if err != nil {
						got = "error: " + err.Error()
					}
					fmt.Fprintf(&b, "-- nodes names=%q\n%s\n", names, strings.TrimSpace(got))
				}
			}
			testutil.Golden(t, strings.TrimSuffix(path, ".yaml")+".golden", b.String(), *update)
		})
	}
}

// TestResourceRulesErrors: each unusable resourceRules field is named.
func TestResourceRulesErrors(t *testing.T) {
	const ok = `{containerQuery: 'sum by (<<.GroupBy>>) (x{<<.LabelMatchers>>})', nodeQuery: 'sum by (<<.GroupBy>>) (y{<<.LabelMatchers>>})', containerLabel: container, resources: {template: <<.Resource>>}}`
	tests := []struct {
		about, cpu, memory string
		want               []string
	}{
		{"no containerLabel",
			`{containerQuery: 'x{<<.LabelMatchers>>}', nodeQuery: 'y', resources: {template: <<.Resource>>}}`, ok,
			[]string{"resourceRules: cpu.containerLabel: required"}},
		{"no containerQuery", ok,
			`{nodeQuery: 'y', containerLabel: container, resources: {template: <<.Resource>>}}`,
			[]string{"resourceRules: memory.containerQuery: required"}},
		{"no nodeQuery", ok,
			`{containerQuery: 'x', containerLabel: container, resources: {template: <<.Resource>>}}`,
			[]string{"resourceRules: memory.nodeQuery: required"}},
		{"no label for pods",
			`{containerQuery: 'x', nodeQuery: 'y', containerLabel: container, resources: {overrides: {namespace: {resource: namespace}, node: {resource: node}}}}`, ok,
			[]string{"resourceRules: cpu.resources: no label maps to pods"}},
		{"renders invalid PromQL",
			`{containerQuery: 'sum(x{<<.LabelMatchers>>}', nodeQuery: 'y', containerLabel: container, resources: {template: <<.Resource>>}}`, ok,
			[]string{"resourceRules: cpu.containerQuery: for a sample request: renders invalid PromQL", `rendered: sum(x{namespace="ns",pod=~"a|b"}`}},
	}
	for _, tc := range tests {
		t.Run(tc.about, func(t *testing.T) {
			_, _, err := Load([]byte(fmt.Sprintf("resourceRules:\n  cpu: %s\n  memory: %s\n  window: 1m\n", tc.cpu, tc.memory)), naming.BuiltinResources())
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\nlacks %q", err, w)
				}
			}
			var re *RuleError
			if !errors.As(err, &re) || re.Section != SectionResourceRules {
				t.Errorf("%v is not a resourceRules RuleError", err)
			}
		})
	}
}
