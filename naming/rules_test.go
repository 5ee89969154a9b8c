package naming

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"
)

func compileFile(t testing.TB, path string) *Rules {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := ParseConfig(data)
	if err != nil {
		t.Fatalf("parse %s: %v", path, err)
	}
	rules, err := Compile(cfg, BuiltinResources())
	if err != nil {
		t.Fatalf("compile %s: %v", path, err)
	}
	return rules
}

func TestCompileExamples(t *testing.T) {
	rules := compileFile(t, "../testdata/rules/examples.yaml")
	type want struct {
		external         bool
		resource         string
		nsLabel, nmLabel string
		window           int64
		hasFallback      bool
	}
	wants := map[string]want{
		"elu_utilization":             {resource: "pods", nsLabel: "namespace", nmLabel: "pod", window: 60},
		"http_requests_per_second":    {resource: "pods", nsLabel: "namespace", nmLabel: "pod", window: 120},
		"service_requests_per_second": {resource: "services", nsLabel: "namespace", nmLabel: "service", window: 120},
		"queue_messages_ready":        {external: true, nsLabel: "namespace", hasFallback: true},
	}
	if len(rules.Metrics) != len(wants) {
		t.Fatalf("got %d metrics, want %d", len(rules.Metrics), len(wants))
	}
	for _, m := range rules.Metrics {
		w, ok := wants[m.Name]
		if !ok {
			t.Errorf("unexpected metric %q", m.Name)
			continue
		}
		if m.External != w.external || (!w.external && m.Resource.GroupResource.String() != w.resource) ||
			m.NSLabel != w.nsLabel || m.NameLabel != w.nmLabel || (m.Fallback != nil) != w.hasFallback {
			t.Errorf("%s: got external=%v resource=%s labels=(%q,%q) fallback=%v; want %+v",
				m.Name, m.External, m.Resource.GroupResource, m.NSLabel, m.NameLabel, m.Fallback, w)
		}
		var got int64
		if m.Window != nil {
			got = *m.Window
		}
		if got != w.window {
			t.Errorf("%s: window %d, want %d", m.Name, got, w.window)
		}
	}
	if len(rules.Templates) != 1 {
		t.Fatalf("got %d discovery rules, want 1", len(rules.Templates))
	}
}

func TestCompileErrorsNameRuleAndField(t *testing.T) {
	tests := []struct {
		name string
		file string
		want []string // substrings of the error, all required
	}{
		{"not yaml", "metrics: [", []string{"not valid YAML"}},
		{"no rules", "metrics: []", []string{"no rules"}},
		{"unknown field", "metrics:\n- name: a\n  resource: pods\n  qurey: up", []string{"rule 0 (a)", `unknown field "qurey"`}},
		{"missing resource", "metrics:\n- name: a\n  query: up", []string{"rule 0 (a): field resource: required"}},
		{"unknown resource", "metrics:\n- name: a\n  resource: widgets\n  query: up", []string{"rule 0 (a): field resource", `unknown resource "widgets"`, "deployments.apps"}},
		{"bad promql", "metrics:\n- name: ok\n  resource: pods\n  query: up\n- name: b\n  resource: pods\n  query: sum(rate(x[1m])", []string{"rule 1 (b): field query", "unclosed left parenthesis"}},
		{"range vector", "metrics:\n- name: a\n  resource: pods\n  query: x[1m]", []string{"field query", "matrix"}},
		{"grouping drops label", "metrics:\n- name: a\n  resource: pods\n  query: sum by (namespace) (x)", []string{"field query", `drops label "pod"`}},
		{"without drops label", "metrics:\n- name: a\n  resource: services\n  query: sum without (service) (x)", []string{"field query", `"service"`}},
		{"missing name", "metrics:\n- resource: pods\n  query: x", []string{"rule 0: field name: required"}},
		{"bad name", "metrics:\n- name: a/b\n  resource: pods\n  query: x", []string{"field name"}},
		{"duplicate", "metrics:\n- name: a\n  resource: pods\n  query: x\n- name: a\n  resource: pod\n  query: z", []string{"rule 1 (a): field name", "already served by rule 0"}},
		{"same name other resource is fine", "metrics:\n- name: a\n  resource: pods\n  query: x\n- name: a\n  resource: x\n  query: z", []string{`unknown resource "x"`}},
		{"bad fallback", "metrics:\n- name: a\n  resource: external\n  query: x\n  fallback: lots", []string{"rule 0 (a): field fallback"}},
		{"bad window", "metrics:\n- name: a\n  resource: pods\n  query: x\n  window: soon", []string{"field window"}},
		{"bad freshness", "metrics:\n- name: a\n  resource: pods\n  query: x\n  freshness: soon", []string{"rule 0 (a): field freshness", `"soon"`}},
		{"freshness above the maximum", "metrics:\n- name: a\n  resource: pods\n  query: x\n  freshness: 6m", []string{"rule 0 (a): field freshness", "6m is above the maximum of 5m"}},
		{"negative freshness", "metrics:\n- name: a\n  resource: external\n  query: x\n  freshness: -1s", []string{"rule 0 (a): field freshness"}},
		{"bad label", "metrics:\n- name: a\n  resource: pods\n  query: x\n  labels: {name: 'pod-name'}", []string{"field labels", "pod-name"}},
		{"inject unknown", "metrics:\n- name: a\n  resource: pods\n  query: x\n  inject: [z]", []string{"field inject", `no selector of "z"`}},
		{"namespaced on object", "metrics:\n- name: a\n  resource: pods\n  query: x\n  namespaced: false", []string{"field namespaced"}},
		{"external name label", "metrics:\n- name: a\n  resource: external\n  query: x\n  labels: {name: q}", []string{"field labels.name"}},
		{"cluster scoped ns label", "metrics:\n- name: a\n  resource: nodes\n  query: x\n  labels: {namespace: ns}", []string{"field labels.namespace", "cluster-scoped"}},
		{"placeholder outside discover", "metrics:\n- name: a\n  resource: pods\n  query: __series__", []string{"field query", "only for discover"}},
		{"discover without placeholder", "metrics:\n- resource: pods\n  query: x\n  discover: {series: '{__name__=~\"x.*\"}'}", []string{"field query", "__series__"}},
		{"discover bad series", "metrics:\n- resource: pods\n  query: __series__\n  discover: {series: '{__name__=~'}", []string{"field discover.series"}},
		{"discover bad regexp", "metrics:\n- resource: pods\n  query: __series__\n  discover: {series: '{a=\"b\"}', matches: '(', as: x}", []string{"field discover.matches"}},
		{"discover with name", "metrics:\n- name: nn\n  resource: pods\n  query: __series__\n  discover: {series: '{a=\"b\"}'}", []string{"field name", "discover.as"}},
		{"all errors at once", "metrics:\n- name: a\n  query: x\n- name: b\n  resource: pods", []string{"rule 0 (a): field resource", "rule 1 (b): field query: required"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := ParseConfig([]byte(tc.file))
			if err == nil {
				_, err = Compile(cfg, BuiltinResources())
			}
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestExpandDiscovery(t *testing.T) {
	rules := compileFile(t, "../testdata/rules/examples.yaml")
	tmpl := rules.Templates[0]
	tests := []struct {
		series string
		name   string
		query  string
		ok     bool
	}{
		{"myapp_orders_total", "myapp_orders_per_second", `sum by (namespace, pod) (rate(myapp_orders_total[2m]))`, true},
		{"myapp_a_b_total", "myapp_a_b_per_second", `sum by (namespace, pod) (rate(myapp_a_b_total[2m]))`, true},
		{"other_total", "", "", false},
		{"myapp_orders_total_extra", "", "", false},
	}
	for _, tc := range tests {
		m, ok := tmpl.Expand(tc.series)
		if ok != tc.ok {
			t.Fatalf("Expand(%q) ok=%v, want %v", tc.series, ok, tc.ok)
		}
		if !ok {
			continue
		}
		if m.Name != tc.name || m.Query() != tc.query {
			t.Errorf("Expand(%q) = %q %q; want %q %q", tc.series, m.Name, m.Query(), tc.name, tc.query)
		}
		if m.NameLabel != "pod" || *m.Window != 120 {
			t.Errorf("Expand(%q) lost the rule's labels or window: %+v", tc.series, m)
		}
	}
}

func TestResolve(t *testing.T) {
	r := BuiltinResources()
	for _, in := range []string{"pods", "pod", "Pod", "deployments.apps", "deployment", "deployments", "deployment.apps", "ingresses.networking.k8s.io"} {
		if _, err := r.Resolve(in); err != nil {
			t.Errorf("Resolve(%q): %v", in, err)
		}
	}
	if res, _ := r.Resolve("deployments"); res.GroupResource.Group != "apps" || res.GroupVersion() != "apps/v1" {
		t.Errorf("deployments resolved to %+v", res)
	}
	if res, _ := r.Resolve("nodes"); res.Namespaced || res.GroupVersion() != "v1" {
		t.Errorf("nodes resolved to %+v", res)
	}
}

// TestFreshness: a rule's freshness compiles into Metric.Freshness (nil when unset, 0 turns
// sharing off), up to MaxFreshness, and a discovery rule's metrics inherit it.
func TestFreshness(t *testing.T) {
	tests := []struct {
		field string
		want  string // fmt of *Metric.Freshness, "<nil>" when unset
	}{
		{"", "<nil>"},
		{"freshness: 15s", "15s"},
		{"freshness: 0s", "0s"},
		{"freshness: 500ms", "500ms"},
		{"freshness: 5m", "5m0s"},
	}
	for _, tc := range tests {
		t.Run(tc.want, func(t *testing.T) {
			file := "metrics:\n- name: a\n  resource: pods\n  query: x\n  " + tc.field +
				"\n- resource: pods\n  query: sum by (namespace, pod) (__series__)\n  discover: {series: '{__name__=~\"y_.*\"}'}\n  " + tc.field + "\n"
			cfg, err := ParseConfig([]byte(file))
			if err != nil {
				t.Fatal(err)
			}
			rules, err := Compile(cfg, BuiltinResources())
			if err != nil {
				t.Fatal(err)
			}
			m, ok := rules.Templates[0].Expand("y_total")
			if !ok {
				t.Fatal("y_total not expanded")
			}
			for _, got := range []*time.Duration{rules.Metrics[0].Freshness, m.Freshness} {
				s := "<nil>"
				if got != nil {
					s = fmt.Sprint(*got)
				}
				if s != tc.want {
					t.Errorf("freshness %s, want %s", s, tc.want)
				}
			}
		})
	}
}
