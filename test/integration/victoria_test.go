package integration

import (
	"bytes"
	"context"
	"math"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	cmv1beta2 "k8s.io/metrics/pkg/apis/custom_metrics/v1beta2"
	emv1beta1 "k8s.io/metrics/pkg/apis/external_metrics/v1beta1"

	"github.com/promql-adapter/promql-adapter/inspect"
	"github.com/promql-adapter/promql-adapter/internal/promrun"
)

// TestVictoriaMetricsBackend serves the integration rules from a real VictoriaMetrics (Debian's
// single-node victoria-metrics, scraping the same exporter) instead of Prometheus: the README
// names it as a backend, so discovery, values, selectors and `check` must hold against it too.
// Every value is compared with the same PromQL sent straight to VictoriaMetrics.
func TestVictoriaMetricsBackend(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	vm, err := promrun.StartVictoriaMetrics(ctx, promrun.Options{
		WorkDir:        filepath.Join(t.TempDir(), "victoria-metrics"),
		ScrapeInterval: time.Second,
		Targets:        []promrun.Target{{Job: "app", Address: env.exporter.Addr()}},
	})
	if err != nil {
		t.Fatal(err)
	}
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			_ = vm.Stop()
		}
	})
	if err := vm.WaitForSeries(ctx, `count_over_time(http_requests_total{namespace="shop"}[1m]) >= 3`, pods); err != nil {
		t.Fatal(err)
	}
	const timeout = 2 * time.Second
	opts := adapterOptions(integrationRules, vm.URL())
	opts.PrometheusTimeout = timeout
	base := startTestAdapter(t, opts)
	vmQuery := func(t *testing.T, q string) map[string]float64 {
		t.Helper()
		v, _, _, err := vm.API().Query(context.Background(), q, time.Now())
		if err != nil {
			t.Fatalf("victoria-metrics %s: %v", q, err)
		}
		out := map[string]float64{}
		for _, s := range v.(model.Vector) {
			for _, l := range []model.LabelName{"pod", "service", "queue"} {
				if name, ok := s.Metric[l]; ok {
					out[string(name)] = float64(s.Value)
				}
			}
		}
		return out
	}

	t.Run("discovery, with series names from the label values API", func(t *testing.T) {
		if got := waitServed(t, base, "custom.metrics.k8s.io/v1beta2", integrationCustomMetrics); got != integrationCustomMetrics {
			t.Errorf("lists\n %s\nwant\n %s", got, integrationCustomMetrics)
		}
	})

	tests := []struct {
		name, path, query string
		n                 int
		tolerance         float64 // relative; rates drift between the two queries
	}{
		{"pods/* gauge", "/apis/custom.metrics.k8s.io/v1beta2/namespaces/shop/pods/*/elu_utilization",
			`avg by (namespace, pod) (avg_over_time(elu_utilization{namespace="shop"}[1m]))`, pods, 0},
		{"one pod", "/apis/custom.metrics.k8s.io/v1beta2/namespaces/shop/pods/web-042/elu_utilization",
			`avg by (namespace, pod) (avg_over_time(elu_utilization{namespace="shop",pod="web-042"}[1m]))`, 1, 0},
		{"pods/* rate", "/apis/custom.metrics.k8s.io/v1beta2/namespaces/shop/pods/*/http_requests_per_second",
			`sum by (namespace, pod) (rate(http_requests_total{namespace="shop"}[2m]))`, pods, 0.05},
		{"Service object", "/apis/custom.metrics.k8s.io/v1beta2/namespaces/shop/services/frontend/service_requests_per_second",
			`sum by (namespace, service) (rate(http_requests_total{namespace="shop",service="frontend"}[2m]))`, 1, 0.05},
		{"discovered metric", "/apis/custom.metrics.k8s.io/v1beta2/namespaces/shop/pods/web-001/myapp_orders_per_second",
			`sum by (namespace, pod) (rate(myapp_orders_total{namespace="shop",pod="web-001"}[2m]))`, 1, 0.05},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var list cmv1beta2.MetricValueList
			getJSONAt(t, base, tc.path, 200, &list)
			want := vmQuery(t, tc.query)
			if len(list.Items) != tc.n || len(want) != tc.n {
				t.Fatalf("adapter returned %d items, victoria-metrics %d; want %d", len(list.Items), len(want), tc.n)
			}
			for _, it := range list.Items {
				got, w := float64(it.Value.MilliValue())/1000, want[it.DescribedObject.Name]
				if w <= 0 || math.Abs(got-w) > tc.tolerance*w+0.001 {
					t.Errorf("%s: adapter %v, victoria-metrics %v", it.DescribedObject.Name, got, w)
				}
			}
		})
	}

	t.Run("external, selector and namespace", func(t *testing.T) {
		var list emv1beta1.ExternalMetricValueList
		getJSONAt(t, base, "/apis/external.metrics.k8s.io/v1beta1/namespaces/shop/queue_messages_ready?labelSelector="+url.QueryEscape("queue in (orders)"), 200, &list)
		if len(list.Items) != 1 || list.Items[0].Value.String() != "42" || list.Items[0].MetricLabels["queue"] != "orders" {
			t.Errorf("queue in (orders): %+v", list.Items)
		}
		getJSONAt(t, base, "/apis/external.metrics.k8s.io/v1beta1/namespaces/other/queue_messages_ready", 200, &list)
		if len(list.Items) != 0 {
			t.Errorf("namespace other sees shop's queues: %+v", list.Items)
		}
	})

	t.Run("node metric", func(t *testing.T) {
		var list cmv1beta2.MetricValueList
		getJSONAt(t, base, "/apis/custom.metrics.k8s.io/v1beta2/nodes/node-a/node_load", 200, &list)
		if len(list.Items) != 1 || list.Items[0].Value.String() != "375m" {
			t.Errorf("node: %+v", list.Items)
		}
	})

	t.Run("check", func(t *testing.T) {
		var out, errOut bytes.Buffer
		code := inspect.RunCheck(context.Background(), []string{"--config", integrationRules, "--prometheus-url", vm.URL()}, &out, &errOut)
		if code != inspect.ExitOK || !strings.Contains(out.String(), "7 rules, 0 broken") || !strings.Contains(out.String(), "node-a=375m") {
			t.Errorf("exit %d\n%s\n%s", code, out.String(), errOut.String())
		}
	})

	// The backend hangs: its port accepts connections but nothing answers. Requests end within
	// --prometheus-timeout with a 503 that says so; the queue rule serves its fallback; once the
	// backend answers again, so does the adapter.
	t.Run("backend hangs", func(t *testing.T) {
		if err := vm.Pause(); err != nil {
			t.Fatal(err)
		}
		resumed := false
		defer func() {
			if !resumed {
				_ = vm.Resume()
			}
		}()
		start := time.Now()
		code, body, err := getAt(base, "/apis/custom.metrics.k8s.io/v1beta2/namespaces/shop/pods/*/elu_utilization")
		took := time.Since(start)
		if err != nil || code != 503 || !strings.Contains(string(body), "no answer within "+timeout.String()) {
			t.Errorf("pods/* with the backend hung: %d %v %s", code, err, body)
		}
		// Not a speed check: before the timeout nothing can answer, and well past it is a hang.
		if took < timeout || took > 3*timeout {
			t.Errorf("answered after %s; want about --prometheus-timeout %s", took, timeout)
		}
		var list emv1beta1.ExternalMetricValueList
		getJSONAt(t, base, "/apis/external.metrics.k8s.io/v1beta1/namespaces/shop/queue_messages_ready", 200, &list)
		if len(list.Items) != 1 || list.Items[0].Value.String() != "0" {
			t.Errorf("external fallback: %+v", list.Items)
		}
		if err := vm.Resume(); err != nil {
			t.Fatal(err)
		}
		resumed = true
		start = time.Now()
		var back cmv1beta2.MetricValueList
		getJSONAt(t, base, "/apis/custom.metrics.k8s.io/v1beta2/namespaces/shop/pods/*/elu_utilization", 200, &back)
		if len(back.Items) != pods {
			t.Errorf("after resume: %d items", len(back.Items))
		}
		t.Logf("backend hung: 503 after %s (timeout %s); resumed: %d values in %s", took.Round(time.Millisecond), timeout, len(back.Items), time.Since(start).Round(time.Millisecond))
	})

	// Last: the backend goes away. Answers come at once and say so (the connection is refused);
	// the queue rule serves its fallback.
	if err := vm.Stop(); err != nil {
		t.Errorf("stop victoria-metrics: %v", err)
	}
	stopped = true
	t.Run("backend down", func(t *testing.T) {
		start := time.Now()
		code, body, err := getAt(base, "/apis/custom.metrics.k8s.io/v1beta2/namespaces/shop/pods/*/elu_utilization")
		if err != nil || code != 503 || !strings.Contains(string(body), "prometheus query failed") {
			t.Errorf("pods/* with the backend down: %d %v %s", code, err, body)
		}
		var list emv1beta1.ExternalMetricValueList
		getJSONAt(t, base, "/apis/external.metrics.k8s.io/v1beta1/namespaces/shop/queue_messages_ready", 200, &list)
		if len(list.Items) != 1 || list.Items[0].Value.String() != "0" {
			t.Errorf("external fallback: %+v", list.Items)
		}
		t.Logf("backend down: 503 and fallback in %s", time.Since(start).Round(time.Millisecond))
	})
}
