//go:build e2e

package e2e

import (
	"context"
	"io"
	"net/http"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"k8s.io/client-go/rest"

	"github.com/promql-adapter/promql-adapter/internal/monitoring"
)

// TestE2EAlertMetricsScraped: every metric the shipped alerts (charts/promql-adapter/alerts) and
// the Grafana dashboard use is on the /metrics of a running binary: promql-adapter (behind
// kube-apiserver, after one metrics request through it), promql-wake, promql-activator (after one
// unrouted request), or kube-apiserver itself (aggregator_unavailable_apiservice, with the
// APIServices registered). A vector that this run gave no sample (e.g. a forwarding counter without
// an upstream) does not appear on /metrics at all; such a name passes only if the binary's code
// registers it (monitoring.Registered), and the test logs it. up is Prometheus's own.
func TestE2EAlertMetricsScraped(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	// One request of each kind through kube-apiserver, so the adapter's request and query series exist.
	raw(t, "/apis/custom.metrics.k8s.io/v1beta2/namespaces/"+ns+"/pods/*/elu_utilization", nil)
	raw(t, "/apis/external.metrics.k8s.io/v1beta1/namespaces/"+ns+"/queue_messages_ready", nil)

	scraped := map[string]string{} // series name → where it was scraped
	tlsCfg, err := rest.TLSConfigFor(st.Cluster.AdminConfig())
	if err != nil {
		t.Fatal(err)
	}
	admin := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: tlsCfg}}
	scrape(ctx, t, admin, st.AdapterURL()+"/metrics", "promql-adapter", scraped)

	apiserver, err := st.Kube.Discovery().RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
	if err != nil {
		t.Fatalf("kube-apiserver /metrics: %v", err)
	}
	parseExposition(t, strings.NewReader(string(apiserver)), "kube-apiserver", scraped)

	wk, err := st.StartWakeProcess(ctx, "alerts")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := wk.Stop(); err != nil {
			t.Errorf("promql-wake: %v", err)
		}
	})
	waitHTTP(t, wk.URL+"/healthz")
	scrape(ctx, t, http.DefaultClient, wk.URL+"/metrics", "promql-wake", scraped)

	act := startActivatorProc(ctx, t, "alerts")
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, act.url+"/", nil)
	req.Host = "no-route.alerts.invalid"
	if resp, err := http.DefaultClient.Do(req); err != nil {
		t.Fatalf("unrouted request to promql-activator: %v", err)
	} else {
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("unrouted request to promql-activator: %s, want 404", resp.Status)
		}
	}
	scrape(ctx, t, http.DefaultClient, act.admin+"/metrics", "promql-activator", scraped)

	// What must have been scraped, whatever else this run did.
	for _, n := range []string{"aggregator_unavailable_apiservice", "apiserver_request_total", "promql_adapter_api_requests_total",
		"promql_adapter_prometheus_query_duration_seconds_count", "promql_adapter_rules_last_reload_success", "promql_wake_syncs_total",
		"promql_activator_unrouted_requests_total", "process_resident_memory_bytes"} {
		if _, ok := scraped[n]; !ok {
			t.Errorf("%s is on no scraped /metrics", n)
		}
	}

	registered, err := monitoring.Registered()
	if err != nil {
		t.Fatal(err)
	}
	uses := map[string][]string{} // metric → alerts and panels that use it
	rf, err := monitoring.ReadRules(root + "/" + monitoring.RulesFile)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range rf.Alerts() {
		names, err := monitoring.MetricNames(a.Expr)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range names {
			uses[n] = append(uses[n], "alert "+a.Alert)
		}
	}
	d, err := monitoring.ReadDashboard(root + "/" + monitoring.DashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	for title, exprs := range d.Queries() {
		for _, e := range exprs {
			names, err := monitoring.MetricNames(e)
			if err != nil {
				t.Fatal(err)
			}
			for _, n := range names {
				uses[n] = append(uses[n], "panel "+title)
			}
		}
	}
	names := make([]string, 0, len(uses))
	for n := range uses {
		names = append(names, n)
	}
	sort.Strings(names)
	var nScraped, notObserved int
	for _, n := range names {
		switch src, ok := scraped[n]; {
		case ok:
			nScraped++
			t.Logf("scraped    %-55s from %s", n, src)
		case n == "up":
			t.Logf("Prometheus %-55s (made by Prometheus for each target)", n)
		case registered[n] != "":
			notObserved++
			t.Logf("registered %-55s by %s, no sample in this run", n, registered[n])
		default:
			t.Errorf("%s is on no /metrics and registered by no binary; used by %s", n, strings.Join(uses[n], ", "))
		}
	}
	t.Logf("%d metrics used: %d scraped, %d registered without a sample in this run", len(names), nScraped, notObserved)
}

// scrape reads a /metrics page into names.
func scrape(ctx context.Context, t *testing.T, c *http.Client, url, source string, names map[string]string) {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("GET %s: %s: %s", url, resp.Status, b)
	}
	parseExposition(t, resp.Body, source, names)
}

// parseExposition adds the series names of a Prometheus text exposition (a histogram's _bucket,
// _sum and _count) to names.
func parseExposition(t *testing.T, r io.Reader, source string, names map[string]string) {
	t.Helper()
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(r)
	if err != nil {
		t.Fatalf("%s /metrics: %v", source, err)
	}
	for name, mf := range mfs {
		for _, n := range monitoring.ExpositionNames(name, mf.GetType().String()) {
			if _, ok := names[n]; !ok {
				names[n] = source
			}
		}
	}
}
