package integration

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	cmv1beta2 "k8s.io/metrics/pkg/apis/custom_metrics/v1beta2"
	emv1beta1 "k8s.io/metrics/pkg/apis/external_metrics/v1beta1"

	"github.com/promql-adapter/promql-adapter/inspect"
	"github.com/promql-adapter/promql-adapter/internal/fakeexporter"
	"github.com/promql-adapter/promql-adapter/internal/promrun"
)

// TestNamedBackends: two real Prometheus servers, each scraping its own exporter of the SAME series
// names with different values, serve one adapter: the default backend (--prometheus-url) and
// backend b, declared in the rule file. Each metric's value comes from its own rule's backend,
// for pods, external and discovered metrics; discovery on b lists b's series names only.
func TestNamedBackends(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	dir := t.TempDir()
	// One Prometheus per exporter; values: the default backend's end in 1, b's in 2.
	start := func(name string, v float64, onlyHere string) *promrun.Server {
		exp := fakeexporter.New()
		exp.SetGauge("shared_load", map[string]string{"namespace": "shop", "pod": "web-0"}, v)
		exp.SetGauge("shared_queue", map[string]string{"namespace": "shop", "queue": "orders"}, 10*v)
		exp.SetGauge("shared_disc_jobs", map[string]string{"namespace": "shop", "pod": "web-0"}, 100*v)
		exp.SetGauge(onlyHere, map[string]string{"namespace": "shop", "pod": "web-0"}, 1000*v)
		if _, err := exp.Start(""); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = exp.Close() })
		prom, err := promrun.Start(ctx, promrun.Options{
			WorkDir:        filepath.Join(dir, name),
			ScrapeInterval: time.Second,
			Targets:        []promrun.Target{{Job: "app", Address: exp.Addr()}},
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = prom.Stop() })
		if err := prom.WaitForSeries(ctx, `{__name__=~"shared_.+|`+onlyHere+`"}`, 4); err != nil {
			t.Fatal(err)
		}
		return prom
	}
	def := start("prometheus-default", 1, "shared_disc_only_default")
	b := start("prometheus-b", 2, "shared_disc_only_b")

	rules := fmt.Sprintf(`backends:
- name: b
  url: %s
  timeout: 3s
metrics:
- {name: load, resource: pods, query: "avg by (namespace, pod) (shared_load)"}
- {name: load_b, resource: pods, backend: b, query: "avg by (namespace, pod) (shared_load)"}
- {name: queue, resource: external, query: "sum by (queue) (shared_queue)"}
- {name: queue_b, resource: external, backend: b, query: "sum by (queue) (shared_queue)"}
- resource: pods
  backend: b
  query: avg by (namespace, pod) (__series__)
  discover: {series: '{__name__=~"shared_disc_.+"}', matches: "shared_disc_(.+)", as: "b_${1}"}
`, b.URL())
	path := filepath.Join(dir, "rules.yaml")
	if err := os.WriteFile(path, []byte(rules), 0o644); err != nil {
		t.Fatal(err)
	}
	base := startTestAdapter(t, adapterOptions(path, def.URL()))

	want := "pods/b_jobs(true) pods/b_only_b(true) pods/load(true) pods/load_b(true)"
	if got := waitServed(t, base, "custom.metrics.k8s.io/v1beta2", want); got != want {
		t.Fatalf("custom metrics listed:\n %s\nwant (discovery on b lists b's names only)\n %s", got, want)
	}
	pods := func(metric string) string {
		var list cmv1beta2.MetricValueList
		getJSONAt(t, base, "/apis/custom.metrics.k8s.io/v1beta2/namespaces/shop/pods/*/"+metric, 200, &list)
		if len(list.Items) != 1 {
			t.Fatalf("%s: %d items, want 1", metric, len(list.Items))
		}
		return list.Items[0].Value.String()
	}
	external := func(metric string) string {
		var list emv1beta1.ExternalMetricValueList
		getJSONAt(t, base, "/apis/external.metrics.k8s.io/v1beta1/namespaces/shop/"+metric, 200, &list)
		if len(list.Items) != 1 {
			t.Fatalf("%s: %d items, want 1", metric, len(list.Items))
		}
		return list.Items[0].Value.String()
	}
	for _, tc := range []struct{ name, got, want string }{
		{"pods on the default backend", pods("load"), "1"},
		{"pods on b", pods("load_b"), "2"},
		{"external on the default backend", external("queue"), "10"},
		{"external on b", external("queue_b"), "20"},
		{"discovered on b", pods("b_jobs"), "200"},
		{"discovered on b, a name only b has", pods("b_only_b"), "2k"},
	} {
		if tc.got != tc.want {
			t.Errorf("%s: %s, want %s", tc.name, tc.got, tc.want)
		}
	}

	// check runs each rule against its own backend, and says which; explain names b and its URL.
	var out, errOut bytes.Buffer
	if code := inspect.RunCheck(ctx, []string{"--config", path, "--prometheus-url", def.URL()}, &out, &errOut); code != inspect.ExitOK {
		t.Fatalf("check: exit %d\n%s\n%s", code, out.String(), errOut.String())
	}
	for _, re := range []string{`(?m)^metrics\[0\] +load +pods +1 +shop/web-0=1 +ok$`, `(?m)^metrics\[1\] \(backend b\) +load_b +pods +1 +shop/web-0=2 +ok$`,
		`(?m)^metrics\[4\] \(backend b\) +b_jobs +pods +1 +shop/web-0=200 +ok$`} {
		if !regexp.MustCompile(re).MatchString(out.String()) {
			t.Errorf("check table lacks a line matching %s:\n%s", re, out.String())
		}
	}
	out.Reset()
	if code := inspect.RunExplain(ctx, []string{"--config", path, "--prometheus-url", def.URL(), "/apis/external.metrics.k8s.io/v1beta1/namespaces/shop/queue_b"}, &out, &errOut); code != inspect.ExitOK ||
		!strings.Contains(out.String(), "backend: b ("+b.URL()+")\n") {
		t.Errorf("explain queue_b: exit %d\n%s\n%s", code, out.String(), errOut.String())
	}
}
