package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	cmv1beta2 "k8s.io/metrics/pkg/apis/custom_metrics/v1beta2"
	emv1beta1 "k8s.io/metrics/pkg/apis/external_metrics/v1beta1"

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

// TestConvertCommand converts the prometheus-adapter config to the native format, serves the
// result (hot reload) and finds the same metrics with the same values as the original serves.
func TestConvertCommand(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := inspect.RunConvert(context.Background(), []string{"--config", "../../testdata/rules/prometheus-adapter.yaml"}, &out, &errOut); code != inspect.ExitOK {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	if strings.Contains(out.String(), "NOT CONVERTED") {
		t.Fatalf("a rule was not converted:\n%s", out.String())
	}
	serve := func(rules []byte) (string, map[string]int64, string) {
		t.Helper()
		if err := swapRules(env.rulesDir, rules); err != nil {
			t.Fatal(err)
		}
		var list cmv1beta2.MetricValueList
		deadline := time.Now().Add(10 * time.Second)
		for {
			code, body, err := get("/apis/custom.metrics.k8s.io/v1beta2/namespaces/shop/pods/*/elu_utilization_pa")
			if err == nil && code == 200 && json.Unmarshal(body, &list) == nil && len(list.Items) == pods {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("not served: %d %s %v", code, body, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
		values := map[string]int64{}
		for _, it := range list.Items {
			values[it.DescribedObject.Name] = it.Value.MilliValue()
		}
		var ext emv1beta1.ExternalMetricValueList
		getJSON(t, "/apis/external.metrics.k8s.io/v1beta1/namespaces/shop/queue_messages_ready?labelSelector="+url.QueryEscape("queue=orders"), 200, &ext)
		return served(t, env.adapter, "custom.metrics.k8s.io/v1beta2"), values, fmt.Sprint(len(ext.Items), ext.Items[0].Value.String())
	}
	restoreRulesAtEnd(t)
	paNames, paValues, paExt := serve(readFile(t, paRules))
	// A neutral file in between, so the converted rules are known to be the ones answering.
	if err := swapRules(env.rulesDir, readFile(t, integrationRules)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second)
	nNames, nValues, nExt := serve(out.Bytes())
	if paNames != nNames || paExt != nExt || fmt.Sprint(paValues) != fmt.Sprint(nValues) {
		t.Errorf("prometheus-adapter config: %s %s\nconverted: %s %s\nvalues equal: %v", paNames, paExt, nNames, nExt, fmt.Sprint(paValues) == fmt.Sprint(nValues))
	}
}
