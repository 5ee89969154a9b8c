package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	cmv1beta2 "k8s.io/metrics/pkg/apis/custom_metrics/v1beta2"

	"github.com/promql-adapter/promql-adapter/inspect"
)

const paUnusableRules = "../../testdata/rules/prometheus-adapter-unusable.yaml"

// TestLenientPrometheusAdapterConfig serves a prometheus-adapter config with unusable rules against
// the real Prometheus: the adapter starts, the usable rules serve values equal to Prometheus's, each
// unusable rule is reported (/readyz/rules, promql_adapter_rules_unusable) and its requests fail with
// prometheus-adapter's status class and the reason; a query Prometheus rejects at execution (422,
// many-to-many matching) is a 500 naming the rule and Prometheus's message; a group without rules
// (external) lists as empty.
func TestLenientPrometheusAdapterConfig(t *testing.T) {
	path := filepath.Join(t.TempDir(), "rules.yaml")
	if err := os.WriteFile(path, readFile(t, paUnusableRules), 0o644); err != nil {
		t.Fatal(err)
	}
	opts := adapterOptions(path, env.prom.URL())
	base := startTestAdapter(t, opts)
	reg := opts.Registerer.(*prometheus.Registry)

	var listed []string
	for _, ns := range []string{"namespaces/%s(false)", "pods/%s(true)"} {
		for _, m := range []string{"elu_by_values", "elu_utilization_lenient", "http_requests_joined", "http_requests_proxy", "myapp_orders_total"} {
			listed = append(listed, fmt.Sprintf(ns, m))
		}
	}
	want := strings.Join(listed, " ")
	if got := waitServed(t, base, "custom.metrics.k8s.io/v1beta2", want); got != want {
		t.Fatalf("listed %s\nwant %s", got, want)
	}

	// The usable rule serves every pod, with Prometheus's values.
	var list cmv1beta2.MetricValueList
	getJSONAt(t, base, "/apis/custom.metrics.k8s.io/v1beta2/namespaces/shop/pods/*/elu_utilization_lenient", 200, &list)
	values := byLabel(promQuery(t, `avg by (pod) (avg_over_time(elu_utilization{namespace="shop"}[5s]))`), "pod")
	if len(list.Items) != pods {
		t.Errorf("%d items, want %d", len(list.Items), pods)
	}
	for _, it := range list.Items {
		if it.Value.MilliValue() != milli(values[it.DescribedObject.Name]) {
			t.Errorf("%s: adapter %s, prometheus %v", it.DescribedObject.Name, it.Value.String(), values[it.DescribedObject.Name])
		}
	}

	// .LabelValuesByName with the object named.
	var one cmv1beta2.MetricValueList
	getJSONAt(t, base, "/apis/custom.metrics.k8s.io/v1beta2/namespaces/shop/pods/web-007/elu_by_values", 200, &one)
	if v := byLabel(promQuery(t, `elu_utilization{namespace="shop",pod="web-007"}`), "pod")["web-007"]; len(one.Items) != 1 || one.Items[0].Value.MilliValue() != milli(v) {
		t.Errorf("elu_by_values web-007: adapter %+v, prometheus %v", one.Items, v)
	}

	for _, tc := range []struct {
		path string
		code int
		want []string
	}{
		{"/apis/custom.metrics.k8s.io/v1beta2/namespaces/shop/pods/web-000/myapp_orders_total", 404, []string{"rules[1]", "metricsQuery: required"}},
		{"/apis/custom.metrics.k8s.io/v1beta2/namespaces/shop/pods/web-000/http_requests_proxy", 500, []string{"rules[2]", "renders invalid PromQL"}},
		{"/apis/custom.metrics.k8s.io/v1beta2/namespaces/shop/pods/web-000/http_requests_joined", 500, []string{"rule 3", "many-to-many matching not allowed"}},
		{"/apis/custom.metrics.k8s.io/v1beta2/namespaces/shop/pods/*/elu_by_values", 503, []string{".LabelValuesByName", "--lister-kubeconfig"}},
	} {
		code, body, err := getAt(base, tc.path)
		if err != nil {
			t.Fatal(err)
		}
		if code != tc.code {
			t.Errorf("GET %s: %d, want %d: %s", tc.path, code, tc.code, body)
		}
		for _, w := range tc.want {
			if !strings.Contains(string(body), w) {
				t.Errorf("GET %s: %s lacks %q", tc.path, body, w)
			}
		}
	}

	_, detail, err := getAt(base, "/readyz/rules")
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{"2 rules are unusable", "rules[1] (seriesQuery", "rules[2] (seriesQuery"} {
		if !strings.Contains(string(detail), w) {
			t.Errorf("/readyz/rules lacks %q:\n%s", w, detail)
		}
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	unusable := -1.0
	for _, mf := range mfs {
		if mf.GetName() == "promql_adapter_rules_unusable" {
			unusable = mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	if unusable != 2 {
		t.Errorf("promql_adapter_rules_unusable %v, want 2", unusable)
	}

	// The config has no externalRules: the group is listed, empty (prometheus-adapter answers 404).
	var ext struct {
		Resources []any `json:"resources"`
	}
	getJSONAt(t, base, "/apis/external.metrics.k8s.io/v1beta1", 200, &ext)
	if ext.Resources == nil || len(ext.Resources) != 0 {
		t.Errorf("external group: %+v, want an empty list", ext)
	}

	// check marks the unusable rules and the rejected query BROKEN, with the reason.
	var out, errOut bytes.Buffer
	exit := inspect.RunCheck(context.Background(), []string{"--config", paUnusableRules, "--prometheus-url", env.prom.URL()}, &out, &errOut)
	if exit != inspect.ExitBroken {
		t.Errorf("check exit %d, want %d\n%s%s", exit, inspect.ExitBroken, out.String(), errOut.String())
	}
	for _, w := range []string{"BROKEN: unusable rule: rules[1]", "BROKEN: unusable rule: rules[2]", "many-to-many", "5 rules, 3 broken"} {
		if !strings.Contains(out.String(), w) {
			t.Errorf("check output lacks %q:\n%s", w, out.String())
		}
	}
	var report struct {
		Rules []struct {
			Rule    string `json:"rule"`
			Metrics []struct {
				Status string `json:"status"`
			} `json:"metrics"`
		} `json:"rules"`
	}
	out.Reset()
	inspect.RunCheck(context.Background(), []string{"--json", "--config", paUnusableRules, "--prometheus-url", env.prom.URL()}, &out, &errOut)
	if err := json.Unmarshal(out.Bytes(), &report); err != nil || len(report.Rules) != 5 {
		t.Errorf("check --json: %v\n%s", err, out.String())
	}
}
