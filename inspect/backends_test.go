package inspect

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/promql-adapter/promql-adapter/adapter"
	"github.com/promql-adapter/promql-adapter/naming"
)

// backendProm is an httptest Prometheus whose every sample is pod web-0 in shop with value v, and
// whose label values API lists names.
func backendProm(t *testing.T, v float64, names ...string) string {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if strings.HasSuffix(r.URL.Path, "/label/__name__/values") {
			_ = json.NewEncoder(w).Encode(map[string]any{"status": "success", "data": names})
			return
		}
		result := []any{map[string]any{"metric": map[string]string{"namespace": "shop", "pod": "web-0"}, "value": []any{1700000000, fmt.Sprint(v)}}}
		_ = json.NewEncoder(w).Encode(map[string]any{"status": "success", "data": map[string]any{"resultType": "vector", "result": result}})
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// TestCheckAndExplainNameTheBackend: check runs each rule, discovery included, against its own
// backend and names the backend of every rule that is not the default; explain prints the
// backend's name and URL.
func TestCheckAndExplainNameTheBackend(t *testing.T) {
	def, b := backendProm(t, 1, "app_default"), backendProm(t, 2, "app_b")
	rules := fmt.Sprintf(`backends: [{name: b, url: %q}]
metrics:
- {name: load, resource: pods, query: "sum by (namespace, pod) (load)"}
- {name: load_b, resource: pods, backend: b, query: "sum by (namespace, pod) (load)"}
- resource: pods
  backend: b
  query: sum by (namespace, pod) (__series__)
  discover: {series: '{__name__=~"app_.+"}'}
`, b)
	path := filepath.Join(t.TempDir(), "rules.yaml")
	if err := os.WriteFile(path, []byte(rules), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var out, errOut bytes.Buffer
	if code := RunCheck(ctx, []string{"--config", path, "--prometheus-url", def}, &out, &errOut); code != ExitOK {
		t.Fatalf("check: exit %d\n%s\n%s", code, out.String(), errOut.String())
	}
	table := out.String()
	for _, re := range []string{`(?m)^metrics\[0\] +load +pods +1 +shop/web-0=1 +ok$`, `(?m)^metrics\[1\] \(backend b\) +load_b +pods +1 +shop/web-0=2 +ok$`,
		`(?m)^metrics\[2\] \(backend b\) +app_b +pods +1 +shop/web-0=2 +ok$`} {
		if !regexp.MustCompile(re).MatchString(table) {
			t.Errorf("check table lacks a line matching %s:\n%s", re, table)
		}
	}
	if strings.Contains(table, "app_default") {
		t.Errorf("discovery on b listed the default backend's names:\n%s", table)
	}
	out.Reset()
	if code := RunCheck(ctx, []string{"--json", "--config", path, "--prometheus-url", def}, &out, &errOut); code != ExitOK {
		t.Fatalf("check --json: exit %d\n%s", code, errOut.String())
	}
	var report struct{ Rules []RuleReport }
	if err := json.Unmarshal(out.Bytes(), &report); err != nil {
		t.Fatal(err)
	}
	if len(report.Rules) != 3 || report.Rules[0].Backend != "" || report.Rules[1].Backend != "b" || report.Rules[2].Backend != "b" {
		t.Errorf("JSON rules: %+v", report.Rules)
	}

	for _, tc := range []struct{ metric, want string }{
		{"load", "backend: default (" + def + ")"},
		{"load_b", "backend: b (" + b + ")"},
		{"app_b", "backend: b (" + b + ")"},
	} {
		out.Reset()
		code := RunExplain(ctx, []string{"--config", path, "--prometheus-url", def, "/apis/custom.metrics.k8s.io/v1beta2/namespaces/shop/pods/*/" + tc.metric}, &out, &errOut)
		if code != ExitOK || !strings.Contains(out.String(), tc.want+"\n") {
			t.Errorf("explain %s: exit %d, want %q:\n%s\n%s", tc.metric, code, tc.want, out.String(), errOut.String())
		}
	}
}

// TestExplainHPAReadsTheRulesBackend: explain hpa asks a metric's values of its rule's backend
// and records the query sent there.
func TestExplainHPAReadsTheRulesBackend(t *testing.T) {
	cfg, err := naming.ParseConfig([]byte(`backends: [{name: b, url: "http://b.invalid:9090"}]
metrics:
- {name: elu_utilization, resource: pods, backend: b, query: "avg by (namespace, pod) (elu_utilization)"}
`))
	if err != nil {
		t.Fatal(err)
	}
	rules, err := naming.Compile(cfg, naming.BuiltinResources())
	if err != nil {
		t.Fatal(err)
	}
	client := func(h http.Handler) adapter.Querier {
		srv := httptest.NewServer(h)
		t.Cleanup(srv.Close)
		q, err := adapter.NewPromClient(adapter.PrometheusConfig{URL: srv.URL, Timeout: 5 * time.Second}, nil)
		if err != nil {
			t.Fatal(err)
		}
		return q
	}
	def, b := &valueProm{}, shopProm()
	src := HPASource{Kube: shopCluster(shopHPA()), Rules: rules, Querier: client(def), Backends: backendMap{"b": client(b)}, Timeout: 5 * time.Second}
	x, err := ExplainHPA(context.Background(), src, "shop", "web")
	if err != nil {
		t.Fatal(err)
	}
	m := x.Metrics[0]
	if m.Name != "elu_utilization" || len(m.Values) != 3 || m.Query != `avg by (namespace, pod) (elu_utilization{namespace="shop",pod=~"web-1|web-2|web-3"})` {
		t.Errorf("metric 0: %+v, want backend b's three values and the query sent there", m)
	}
	if len(def.queries) != 0 {
		t.Errorf("the default backend was asked %q", def.queries)
	}
}

// backendMap is an adapter.Backends over fixed Queriers.
type backendMap map[string]adapter.Querier

func (m backendMap) Querier(name string) (adapter.Querier, bool) {
	q, ok := m[name]
	return q, ok
}
