package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/promql-adapter/promql-adapter/inspect"
)

// TestCheckCommand runs `promql-adapter check` on the integration rules against the real Prometheus.
func TestCheckCommand(t *testing.T) {
	var out, errOut bytes.Buffer
	code := inspect.RunCheck(context.Background(), []string{"--config", "../../testdata/rules/integration.yaml", "--prometheus-url", env.prom.URL()}, &out, &errOut)
	if code != inspect.ExitOK {
		t.Fatalf("exit %d\n%s\n%s", code, out.String(), errOut.String())
	}
	table := out.String()
	for _, want := range []string{"elu_utilization", "pods        101", "other/web-000=990m", "queue_messages_ready", "myapp_orders_per_second", "node_load", "node-a=375m", "7 rules, 0 broken"} {
		if !strings.Contains(table, want) {
			t.Errorf("check output lacks %q:\n%s", want, table)
		}
	}

	out.Reset()
	code = inspect.RunCheck(context.Background(), []string{"--json", "--config", "../../testdata/rules/integration.yaml", "--prometheus-url", env.prom.URL()}, &out, &errOut)
	var report struct {
		Broken bool `json:"broken"`
		Rules  []struct {
			Rule string `json:"rule"`
		} `json:"rules"`
	}
	if err := json.Unmarshal(out.Bytes(), &report); err != nil || code != inspect.ExitOK || report.Broken || len(report.Rules) != 7 {
		t.Errorf("json: exit %d err %v report %+v\n%s", code, err, report, out.String())
	}
}

// TestExplainCommand prints the PromQL of one API path, as the server would run it.
func TestExplainCommand(t *testing.T) {
	var out, errOut bytes.Buffer
	code := inspect.RunExplain(context.Background(), []string{"--config", "../../testdata/rules/integration.yaml", "--prometheus-url", env.prom.URL(),
		"/apis/custom.metrics.k8s.io/v1beta2/namespaces/shop/services/frontend/service_requests_per_second?metricLabelSelector=code=200"}, &out, &errOut)
	want := `query:   sum by (namespace, service) (rate(http_requests_total{code="200",namespace="shop",service="frontend"}[2m]))`
	if code != inspect.ExitOK || !strings.Contains(out.String(), want) {
		t.Errorf("exit %d, output lacks %s:\n%s\n%s", code, want, out.String(), errOut.String())
	}
	out.Reset()
	errOut.Reset()
	code = inspect.RunExplain(context.Background(), []string{"--config", "../../testdata/rules/integration.yaml", "--prometheus-url", env.prom.URL(),
		"/apis/custom.metrics.k8s.io/v1beta2/namespaces/shop/pods/*/elu_utilisation"}, &out, &errOut)
	if code != inspect.ExitBroken || !strings.Contains(errOut.String(), "closest served: elu_utilization") {
		t.Errorf("unknown metric: exit %d\n%s", code, errOut.String())
	}
}
