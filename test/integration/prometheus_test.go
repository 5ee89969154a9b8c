// Package integration runs the adapter server against a real Prometheus (Debian's
// package, started on 127.0.0.1 by the test) that scrapes an exporter the test starts.
package integration

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	cmv1beta1 "k8s.io/metrics/pkg/apis/custom_metrics/v1beta1"
	cmv1beta2 "k8s.io/metrics/pkg/apis/custom_metrics/v1beta2"
	emv1beta1 "k8s.io/metrics/pkg/apis/external_metrics/v1beta1"

	"github.com/promql-adapter/promql-adapter/internal/fakeexporter"
	"github.com/promql-adapter/promql-adapter/internal/promrun"
	"github.com/promql-adapter/promql-adapter/server"
)

const pods = 100

// integrationCustomMetrics is what testdata/rules/integration.yaml serves in custom.metrics.k8s.io
// once discovery has run: resource/metric(namespaced), sorted.
const integrationCustomMetrics = "namespaces/namespace_elu_max(false) nodes/node_load(false) pods/elu_utilization(true) pods/http_requests_per_second(true) pods/myapp_orders_per_second(true) services/service_requests_per_second(true)"

// env is what TestMain starts once for the package.
var env struct {
	prom     *promrun.Server
	exporter *fakeexporter.Exporter
	adapter  string // https://127.0.0.1:port
	client   *http.Client
	rulesDir string // holds rules.yaml → ..data/rules.yaml, as a mounted ConfigMap does
}

func TestMain(m *testing.M) {
	code, err := run(m)
	if err != nil {
		fmt.Fprintln(os.Stderr, "integration setup:", err)
		os.Exit(1)
	}
	os.Exit(code)
}

func run(m *testing.M) (int, error) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	exp := fakeexporter.New()
	for i := range pods {
		pod := fmt.Sprintf("web-%03d", i)
		exp.SetGauge("elu_utilization", map[string]string{"namespace": "shop", "pod": pod}, float64(i)/pods+0.0625)
		exp.AddCounter("http_requests_total", map[string]string{"namespace": "shop", "pod": pod, "service": "frontend"}, 0)
		exp.AddCounter("myapp_orders_total", map[string]string{"namespace": "shop", "pod": pod}, 0)
	}
	exp.SetGauge("elu_utilization", map[string]string{"namespace": "other", "pod": "web-000"}, 0.99)
	exp.SetGauge("queue_messages_ready", map[string]string{"namespace": "shop", "queue": "orders"}, 42)
	exp.SetGauge("queue_messages_ready", map[string]string{"namespace": "shop", "queue": "refunds"}, 7)
	exp.SetGauge("node_load_ratio", map[string]string{"instance_node": "node-a"}, 0.375)
	if _, err := exp.Start(""); err != nil {
		return 0, err
	}
	defer exp.Close()
	// Counters grow steadily, so rates are positive.
	go func() {
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				for i := range pods {
					pod := fmt.Sprintf("web-%03d", i)
					exp.AddCounter("http_requests_total", map[string]string{"namespace": "shop", "pod": pod, "service": "frontend"}, float64(i%5+1))
					exp.AddCounter("myapp_orders_total", map[string]string{"namespace": "shop", "pod": pod}, 1)
				}
			}
		}
	}()

	dir, err := os.MkdirTemp("", "promql-adapter-integration-")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(dir)
	prom, err := promrun.Start(ctx, promrun.Options{
		WorkDir:        filepath.Join(dir, "prometheus"),
		ScrapeInterval: time.Second,
		Targets:        []promrun.Target{{Job: "app", Address: exp.Addr()}},
	})
	if err != nil {
		return 0, err
	}
	defer prom.Stop()
	wctx, wcancel := context.WithTimeout(ctx, 60*time.Second)
	defer wcancel()
	// Two scrapes of every counter, so rate() has an answer.
	if err := prom.WaitForSeries(wctx, `count_over_time(http_requests_total{namespace="shop"}[1m]) >= 3`, pods); err != nil {
		return 0, err
	}

	// The rule file sits in a ConfigMap-like layout, so TestHotReload can swap it atomically.
	env.rulesDir = filepath.Join(dir, "rules")
	orig, err := os.ReadFile("../../testdata/rules/integration.yaml")
	if err != nil {
		return 0, err
	}
	if err := swapRules(env.rulesDir, orig); err != nil {
		return 0, err
	}
	adapter, errc, err := startAdapter(ctx, adapterOptions(filepath.Join(env.rulesDir, "rules.yaml"), prom.URL()))
	if err != nil {
		return 0, err
	}
	env.prom, env.exporter, env.adapter = prom, exp, adapter
	// The adapter serves a self-signed certificate in --trust-loopback mode.
	env.client = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	if err := waitReady(wctx, adapter, errc); err != nil {
		return 0, err
	}
	code := m.Run()
	cancel()
	select {
	case err := <-errc:
		if err != nil {
			fmt.Fprintln(os.Stderr, "adapter stopped with:", err)
		}
	case <-time.After(10 * time.Second):
		fmt.Fprintln(os.Stderr, "adapter did not stop within 10s")
		code = 1
	}
	return code, nil
}

// adapterOptions are the adapter's options for these tests: --trust-loopback on a free
// 127.0.0.1 port (set by startAdapter), rulesFile, the Prometheus-compatible API at promURL, and
// discovery every second.
func adapterOptions(rulesFile, promURL string) *server.Options {
	opts := server.NewOptions()
	opts.TrustLoopback = true
	opts.RulesFile = rulesFile
	opts.PrometheusURL = promURL
	opts.SeriesRelistInterval = time.Second
	return opts
}

// startAdapter runs the adapter server until ctx ends and returns its base URL and the channel its
// exit error arrives on. Only one server per process may keep opts.Registerer nil (the registry
// its /metrics serves).
func startAdapter(ctx context.Context, opts *server.Options) (string, <-chan error, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	opts.Server.SecureServing.Listener = ln
	errc := make(chan error, 1)
	go func() { errc <- server.Run(ctx, opts) }()
	return "https://" + ln.Addr().String(), errc, nil
}

// startTestAdapter runs a second adapter for one test with opts and its own metrics registry (the
// package's adapter has the one /metrics serves), waits until it is ready, and stops it when the
// test ends. It returns the adapter's base URL.
func startTestAdapter(t *testing.T, opts *server.Options) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	opts.Registerer = prometheus.NewRegistry()
	base, errc, err := startAdapter(ctx, opts)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-errc:
			if err != nil {
				t.Errorf("adapter stopped with: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("adapter did not stop within 10s")
		}
	})
	wctx, wcancel := context.WithTimeout(ctx, 30*time.Second)
	defer wcancel()
	if err := waitReady(wctx, base, errc); err != nil {
		t.Fatal(err)
	}
	return base
}

// waitReady waits until the adapter at base answers /readyz with 200.
func waitReady(ctx context.Context, base string, errc <-chan error) error {
	for {
		select {
		case err := <-errc:
			return fmt.Errorf("adapter exited: %v", err)
		case <-ctx.Done():
			return fmt.Errorf("adapter not ready: %w", ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
		if code, _, err := getAt(base, "/readyz"); err == nil && code == 200 {
			return nil
		}
	}
}

// get asks the package's adapter.
func get(path string) (int, []byte, error) { return getAt(env.adapter, path) }

func getAt(base, path string) (int, []byte, error) {
	resp, err := env.client.Get(base + path)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, body, err
}

// getJSON asks the package's adapter, requires wantCode and decodes the body into into (if not nil).
func getJSON(t testing.TB, path string, wantCode int, into any) []byte {
	t.Helper()
	return getJSONAt(t, env.adapter, path, wantCode, into)
}

func getJSONAt(t testing.TB, base, path string, wantCode int, into any) []byte {
	t.Helper()
	code, body, err := getAt(base, path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	if code != wantCode {
		t.Fatalf("GET %s: %d, want %d: %s", path, code, wantCode, body)
	}
	if into != nil {
		if err := json.Unmarshal(body, into); err != nil {
			t.Fatalf("GET %s: %v\n%s", path, err, body)
		}
	}
	return body
}

// promQuery runs PromQL straight against Prometheus.
func promQuery(t testing.TB, q string) model.Vector {
	t.Helper()
	v, _, _, err := env.prom.API().Query(context.Background(), q, time.Now())
	if err != nil {
		t.Fatalf("prometheus %s: %v", q, err)
	}
	return v.(model.Vector)
}

func byLabel(v model.Vector, label string) map[string]float64 {
	out := map[string]float64{}
	for _, s := range v {
		out[string(s.Metric[model.LabelName(label)])] = float64(s.Value)
	}
	return out
}

func milli(v float64) int64 { return int64(math.Round(v * 1000)) }

func TestDiscoveryListsServedMetrics(t *testing.T) {
	for _, v := range []string{"v1beta2", "v1beta1"} {
		if got := waitServed(t, env.adapter, "custom.metrics.k8s.io/"+v, integrationCustomMetrics); got != integrationCustomMetrics {
			t.Errorf("%s lists\n %s\nwant\n %s", v, got, integrationCustomMetrics)
		}
	}
	if got := served(t, env.adapter, "external.metrics.k8s.io/v1beta1"); got != "queue_messages_ready(true)" {
		t.Errorf("external lists %s", got)
	}
}

// served is what the adapter at base lists under groupVersion: resource/metric(namespaced), sorted.
func served(t *testing.T, base, groupVersion string) string {
	t.Helper()
	var list struct {
		Resources []struct {
			Name       string `json:"name"`
			Namespaced bool   `json:"namespaced"`
		} `json:"resources"`
	}
	getJSONAt(t, base, "/apis/"+groupVersion, 200, &list)
	out := make([]string, 0, len(list.Resources))
	for _, r := range list.Resources {
		out = append(out, fmt.Sprintf("%s(%v)", r.Name, r.Namespaced))
	}
	sort.Strings(out)
	return strings.Join(out, " ")
}

// waitServed asks served until it lists want, for up to 10 s (discovered metrics appear after
// the first relist, 1 s here; fixed ones at once), and returns the last answer.
func waitServed(t *testing.T, base, groupVersion, want string) string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := served(t, base, groupVersion)
		if got == want || time.Now().After(deadline) {
			return got
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestValuesEqualPromQL checks every value the adapter returns against the same PromQL sent straight to Prometheus.
func TestValuesEqualPromQL(t *testing.T) {
	t.Run("pods/* v1beta2, gauge: exact", func(t *testing.T) {
		var list cmv1beta2.MetricValueList
		getJSON(t, "/apis/custom.metrics.k8s.io/v1beta2/namespaces/shop/pods/*/elu_utilization", 200, &list)
		want := byLabel(promQuery(t, `avg by (namespace, pod) (avg_over_time(elu_utilization{namespace="shop"}[1m]))`), "pod")
		if len(list.Items) != pods || len(want) != pods {
			t.Fatalf("adapter returned %d items, prometheus %d; want %d", len(list.Items), len(want), pods)
		}
		for _, it := range list.Items {
			if it.Value.MilliValue() != milli(want[it.DescribedObject.Name]) {
				t.Errorf("%s: adapter %s, prometheus %v", it.DescribedObject.Name, it.Value.String(), want[it.DescribedObject.Name])
			}
			if it.Metric.Name != "elu_utilization" || it.DescribedObject.Kind != "Pod" || it.WindowSeconds == nil || *it.WindowSeconds != 60 {
				t.Errorf("item %+v", it)
			}
		}
	})
	t.Run("one pod by name, v1beta1", func(t *testing.T) {
		var list cmv1beta1.MetricValueList
		getJSON(t, "/apis/custom.metrics.k8s.io/v1beta1/namespaces/shop/pods/web-042/elu_utilization", 200, &list)
		w := byLabel(promQuery(t, `avg by (namespace, pod) (avg_over_time(elu_utilization{namespace="shop",pod="web-042"}[1m]))`), "pod")["web-042"]
		if len(list.Items) != 1 || list.Items[0].Value.MilliValue() != milli(w) {
			t.Fatalf("items %+v, prometheus %v", list.Items, w)
		}
		if list.Items[0].MetricName != "elu_utilization" {
			t.Errorf("v1beta1 metricName %q", list.Items[0].MetricName)
		}
	})
	t.Run("pods/* request rate: equal within a scrape's drift", func(t *testing.T) {
		var list cmv1beta2.MetricValueList
		getJSON(t, "/apis/custom.metrics.k8s.io/v1beta2/namespaces/shop/pods/*/http_requests_per_second", 200, &list)
		want := byLabel(promQuery(t, `sum by (namespace, pod) (rate(http_requests_total{namespace="shop"}[2m]))`), "pod")
		if len(list.Items) != pods {
			t.Fatalf("%d items", len(list.Items))
		}
		for _, it := range list.Items {
			got, w := float64(it.Value.MilliValue())/1000, want[it.DescribedObject.Name]
			if w <= 0 || math.Abs(got-w) > 0.05*w+0.001 {
				t.Errorf("%s: adapter %v, prometheus %v", it.DescribedObject.Name, got, w)
			}
		}
	})
	t.Run("Service object metric", func(t *testing.T) {
		var list cmv1beta2.MetricValueList
		getJSON(t, "/apis/custom.metrics.k8s.io/v1beta2/namespaces/shop/services/frontend/service_requests_per_second", 200, &list)
		w := byLabel(promQuery(t, `sum by (namespace, service) (rate(http_requests_total{namespace="shop",service="frontend"}[2m]))`), "service")["frontend"]
		if len(list.Items) != 1 || list.Items[0].DescribedObject.Kind != "Service" {
			t.Fatalf("items %+v", list.Items)
		}
		if got := float64(list.Items[0].Value.MilliValue()) / 1000; w <= 0 || math.Abs(got-w) > 0.05*w {
			t.Errorf("adapter %v, prometheus %v", got, w)
		}
	})
	t.Run("namespace metric and cluster-scoped node metric", func(t *testing.T) {
		var list cmv1beta2.MetricValueList
		getJSON(t, "/apis/custom.metrics.k8s.io/v1beta2/namespaces/shop/metrics/namespace_elu_max", 200, &list)
		w := byLabel(promQuery(t, `max by (namespace) (elu_utilization{namespace="shop"})`), "namespace")["shop"]
		if len(list.Items) != 1 || list.Items[0].Value.MilliValue() != milli(w) || list.Items[0].DescribedObject.Kind != "Namespace" {
			t.Errorf("namespace: %+v, prometheus %v", list.Items, w)
		}
		getJSON(t, "/apis/custom.metrics.k8s.io/v1beta2/nodes/node-a/node_load", 200, &list)
		if len(list.Items) != 1 || list.Items[0].Value.String() != "375m" || list.Items[0].DescribedObject.Kind != "Node" {
			t.Errorf("node: %+v", list.Items)
		}
	})
	t.Run("external with selector", func(t *testing.T) {
		var list emv1beta1.ExternalMetricValueList
		getJSON(t, "/apis/external.metrics.k8s.io/v1beta1/namespaces/shop/queue_messages_ready?labelSelector="+url.QueryEscape("queue=orders"), 200, &list)
		if len(list.Items) != 1 || list.Items[0].Value.String() != "42" || list.Items[0].MetricLabels["queue"] != "orders" {
			t.Errorf("items %+v", list.Items)
		}
		getJSON(t, "/apis/external.metrics.k8s.io/v1beta1/namespaces/shop/queue_messages_ready", 200, &list)
		if len(list.Items) != 2 {
			t.Errorf("no selector: %+v", list.Items)
		}
		getJSON(t, "/apis/external.metrics.k8s.io/v1beta1/namespaces/other/queue_messages_ready", 200, &list)
		if len(list.Items) != 0 {
			t.Errorf("namespace other sees shop's queues: %+v", list.Items)
		}
	})
	t.Run("discovered metric", func(t *testing.T) {
		var list cmv1beta2.MetricValueList
		deadline := time.Now().Add(10 * time.Second)
		for {
			code, body, err := get("/apis/custom.metrics.k8s.io/v1beta2/namespaces/shop/pods/web-001/myapp_orders_per_second")
			if err == nil && code == 200 {
				if err := json.Unmarshal(body, &list); err != nil {
					t.Fatal(err)
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("discovered metric not served: %d %s %v", code, body, err)
			}
			time.Sleep(200 * time.Millisecond)
		}
		if len(list.Items) != 1 || list.Items[0].Value.MilliValue() <= 0 {
			t.Errorf("items %+v", list.Items)
		}
	})
}

func TestErrorsOverHTTP(t *testing.T) {
	tests := []struct {
		path string
		code int
		want string
	}{
		{"/apis/custom.metrics.k8s.io/v1beta2/namespaces/shop/pods/*/elu_utilisation", 404, "closest served: elu_utilization"},
		{"/apis/external.metrics.k8s.io/v1beta1/namespaces/shop/queue_ready", 404, "queue_messages_ready"},
		{"/apis/custom.metrics.k8s.io/v1beta2/namespaces/shop/pods/*/elu_utilization?metricLabelSelector=" + url.QueryEscape("a>1"), 400, `is not supported (use =, !=, in, notin, exists, !)`},
		{"/apis/custom.metrics.k8s.io/v1beta2/namespaces/shop/pods/*/elu_utilization?labelSelector=" + url.QueryEscape("a in (b"), 400, ""},
		{"/apis/custom.metrics.k8s.io/v1beta2/namespaces/shop/pods/nope/elu_utilization", 404, "no sample for pods shop/nope"},
	}
	for _, tc := range tests {
		code, body, err := get(tc.path)
		if err != nil {
			t.Fatal(err)
		}
		if code != tc.code || !strings.Contains(string(body), tc.want) {
			t.Errorf("GET %s: %d %s; want %d containing %q", tc.path, code, body, tc.code, tc.want)
		}
	}
}

// sampleValue is the value of the exposition line that starts with series in body (-1 when none does).
func sampleValue(body, series string) float64 {
	for _, line := range strings.Split(body, "\n") {
		if rest, ok := strings.CutPrefix(line, series+" "); ok {
			v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
			if err == nil {
				return v
			}
		}
	}
	return -1
}

func TestTelemetry(t *testing.T) {
	getJSON(t, "/apis/custom.metrics.k8s.io/v1beta2/namespaces/shop/pods/*/elu_utilization", 200, nil)
	body := string(getJSON(t, "/metrics", 200, nil))
	for _, want := range []string{
		`promql_adapter_api_requests_total{code="200",kind="pods"}`,
		`promql_adapter_api_request_duration_seconds_bucket{kind="pods"`,
		`promql_adapter_prometheus_query_duration_seconds_count`,
		`promql_adapter_rules_loaded 7`,
		`promql_adapter_rules_last_reload_success 1`,
		`promql_adapter_rules_last_reload_timestamp_seconds`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	// The real Prometheus's own query stats reach the per-rule cost (rule 0 is elu_utilization).
	for _, name := range []string{"promql_adapter_rule_queries_total", "promql_adapter_rule_prometheus_samples_total", "promql_adapter_rule_prometheus_eval_seconds_total"} {
		if v := sampleValue(body, name+`{backend="default",rule="0"}`); v <= 0 {
			t.Errorf("/metrics: %s for rule 0 is %v, want > 0", name, v)
		}
	}
	for _, p := range []string{"/livez", "/readyz"} {
		if code, body, err := get(p); err != nil || code != 200 {
			t.Errorf("%s: %d %s %v", p, code, body, err)
		}
	}
}
