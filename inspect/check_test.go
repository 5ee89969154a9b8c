package inspect

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/model"

	"github.com/promql-adapter/promql-adapter/adapter"
	"github.com/promql-adapter/promql-adapter/internal/fakeexporter"
	"github.com/promql-adapter/promql-adapter/internal/promrun"
	"github.com/promql-adapter/promql-adapter/naming"
	"github.com/promql-adapter/promql-adapter/server"
)

// TestCheck runs Check against Debian's Prometheus scraping an exporter with seven pods'
// elu_utilization and two queues. A missing Prometheus fails the test (run make deps).
func TestCheck(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	exp := fakeexporter.New()
	for i := 1; i <= 6; i++ {
		exp.SetGauge("elu_utilization", map[string]string{"namespace": "shop", "pod": fmt.Sprintf("web-%d", i)}, float64(i)*0.125)
	}
	exp.SetGauge("elu_utilization", map[string]string{"namespace": "other", "pod": "api-1"}, 0.9)
	exp.SetGauge("queue_messages_ready", map[string]string{"namespace": "shop", "queue": "orders"}, 42)
	exp.SetGauge("queue_messages_ready", map[string]string{"namespace": "shop", "queue": "refunds"}, 7)
	exp.AddCounter("myapp_orders_total", map[string]string{"namespace": "shop", "pod": "web-1"}, 3)
	if _, err := exp.Start(""); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = exp.Close() })

	prom, err := promrun.Start(ctx, promrun.Options{Targets: []promrun.Target{{Job: "fake", Address: exp.Addr()}}})
	if err != nil {
		t.Fatalf("start prometheus (run `make deps` if it is missing): %v", err)
	}
	t.Cleanup(func() {
		if err := prom.Stop(); err != nil {
			t.Errorf("stop prometheus: %v", err)
		}
	})
	// avg_over_time(...[5s]) in the prometheus-adapter rule needs a few scrapes.
	for q, n := range map[string]int{
		"elu_utilization":                        7,
		"queue_messages_ready":                   2,
		"myapp_orders_total":                     1,
		"count_over_time(elu_utilization[5s])>2": 7,
	} {
		if err := prom.WaitForSeries(ctx, q, n); err != nil {
			t.Fatal(err)
		}
	}
	client, err := adapter.NewPromClient(adapter.PrometheusConfig{URL: prom.URL(), Timeout: 10 * time.Second}, nil)
	if err != nil {
		t.Fatal(err)
	}
	check := func(t *testing.T, path string) (*Report, string, string) {
		t.Helper()
		rules, _, err := server.LoadRules(path, naming.BuiltinResources())
		if err != nil {
			t.Fatal(err)
		}
		r, err := Check(ctx, rules, client, CheckOptions{Lookback: 10 * time.Minute, Timeout: 10 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		var table, js bytes.Buffer
		if err := r.WriteTable(&table); err != nil {
			t.Fatal(err)
		}
		if err := r.WriteJSON(&js); err != nil {
			t.Fatal(err)
		}
		t.Logf("%s\n%s", table.String(), js.String())
		return r, table.String(), js.String()
	}

	t.Run("broken rules", func(t *testing.T) {
		r, table, js := check(t, "testdata/rules/check-broken.yaml")
		if !r.Broken() {
			t.Error("Broken() = false, want true")
		}
		want := []struct {
			rule   string
			broken bool
			why    string
		}{
			{"metrics[0]", false, ""},
			{"metrics[1]", true, "the query returned no samples"},
			{"metrics[2]", true, "samples carry no container label, so no object can be mapped"},
			{"metrics[3]", true, "query error: prometheus: "},
			{"metrics[4]", true, `no series match {__name__=~"nodejs_.+_total",namespace!="",pod!=""}`},
			{"metrics[5]", false, ""},
		}
		if len(r.Rules) != len(want) {
			t.Fatalf("%d rules reported, want %d", len(r.Rules), len(want))
		}
		for i, w := range want {
			got := r.Rules[i]
			if got.Rule != w.rule || got.Broken != w.broken || !strings.Contains(got.Why, w.why) || (w.why == "") != (got.Why == "") {
				t.Errorf("rule %d: %s broken=%v why=%q; want %s broken=%v why containing %q", i, got.Rule, got.Broken, got.Why, w.rule, w.broken, w.why)
			}
		}
		if why := r.Rules[3].Why; !strings.Contains(why, "label_replace") {
			t.Errorf("rule 3: why %q does not carry Prometheus's error", why)
		}
		elu := r.Rules[0].Metrics[0]
		if elu.Objects != 7 || len(elu.Samples) != 5 || elu.Samples[0] != (Sample{"other/api-1", "900m"}) || elu.Samples[1] != (Sample{"shop/web-1", "125m"}) {
			t.Errorf("elu_utilization: %d objects, samples %v", elu.Objects, elu.Samples)
		}
		queue := r.Rules[5].Metrics[0]
		if queue.Objects != 2 || queue.Samples[0] != (Sample{`{namespace="shop", queue="orders"}`, "42"}) {
			t.Errorf("queue_messages_ready: %d objects, samples %v", queue.Objects, queue.Samples)
		}
		for _, s := range []string{
			"RULE", "METRIC", "DESCRIBES", "OBJECTS", "SAMPLE", "STATUS",
			"other/api-1=900m", "shop/web-1=125m", "shop/web-4=500m", "(2 more)",
			"BROKEN: the query returned no samples",
			"query: avg by (namespace, pod) (nodejs_gc_pause_seconds)",
			"BROKEN: samples carry no container label, so no object can be mapped",
			"BROKEN: query error: prometheus: ",
			`query: label_replace(elu_utilization, "pod", "$1", "pod", "(.*")`,
			`BROKEN: no series match {__name__=~"nodejs_.+_total",namespace!="",pod!=""}`,
			`{namespace="shop", queue="orders"}=42`,
			"6 rules, 4 broken",
		} {
			if !strings.Contains(table, s) {
				t.Errorf("table lacks %q", s)
			}
		}
		for _, s := range []string{
			`"broken": true`, `"rule": "metrics[2]"`, `"kind": "discover"`,
			`"object": "shop/web-1"`, `"value": "125m"`, `"objects": 7`,
			`"why": "the query returned no samples"`, `"status": "broken"`,
			`"query": "label_replace(elu_utilization, \"pod\", \"$1\", \"pod\", \"(.*\")"`,
		} {
			if !strings.Contains(js, s) {
				t.Errorf("JSON lacks %s", s)
			}
		}
		var back struct {
			Broken bool         `json:"broken"`
			Rules  []RuleReport `json:"rules"`
		}
		if err := json.Unmarshal([]byte(js), &back); err != nil || !back.Broken || len(back.Rules) != 6 {
			t.Errorf("JSON does not read back: %v %+v", err, back)
		}
	})

	t.Run("clean rules", func(t *testing.T) {
		r, table, _ := check(t, "testdata/rules/check-clean.yaml")
		if r.Broken() {
			t.Errorf("Broken() = true, want false:\n%s", table)
		}
		if len(r.Rules) != 3 || len(r.Rules[1].Metrics) != 1 || r.Rules[1].Metrics[0].Name != "myapp_orders" ||
			r.Rules[1].Metrics[0].Series != "myapp_orders_total" || r.Rules[1].Metrics[0].Samples[0] != (Sample{"shop/web-1", "3"}) {
			t.Errorf("discovered metric not reported:\n%s", table)
		}
	})

	t.Run("prometheus-adapter config", func(t *testing.T) {
		r, table, _ := check(t, "../testdata/rules/prometheus-adapter.yaml")
		if r.Broken() {
			t.Errorf("Broken() = true, want false:\n%s", table)
		}
		for _, s := range []string{"rules[0]", "elu_utilization_pa", "pods", "namespaces", "externalRules[0]", "queue_messages_ready", "web-1=125m", "shop=438m", "2 rules, 0 broken"} {
			if !strings.Contains(table, s) {
				t.Errorf("table lacks %q", s)
			}
		}
	})
}

// stubQuerier answers discovery from fixed lists and every query with one sample per pod.
type stubQuerier struct {
	names map[string][]string // selector → series names
	errs  map[string]error    // selector → discovery error
}

func (s stubQuerier) Query(_ context.Context, query string) (model.Vector, error) {
	v := model.SampleValue(1)
	if strings.Contains(query, "nan_total") {
		v = model.SampleValue(math.NaN())
	}
	return model.Vector{
		{Metric: model.Metric{"namespace": "shop", "pod": "web-1"}, Value: v},
		{Metric: model.Metric{"namespace": "shop", "pod": "web-2"}, Value: v},
	}, nil
}

func (s stubQuerier) SeriesNames(_ context.Context, selector string, _ time.Time) ([]string, error) {
	return s.names[selector], s.errs[selector]
}

func (s stubQuerier) Series(context.Context, string, time.Time) ([]naming.SeriesLabels, error) {
	return nil, nil
}

// TestCheckDiscovery covers what a real Prometheus cannot easily show: a discovery failure, series
// that discover.matches rejects, a discovered metric shadowed by a fixed one, and NaN-only samples.
func TestCheckDiscovery(t *testing.T) {
	cfg, err := naming.ParseConfig([]byte(`
metrics:
- name: myapp_orders
  resource: pods
  query: sum by (namespace, pod) (myapp_orders_total)
- resource: pods
  discover: {series: '{__name__=~"myapp_.+_total"}', matches: 'myapp_(.+)_total', as: 'myapp_${1}'}
  query: sum by (namespace, pod) (__series__)
- resource: pods
  discover: {series: '{__name__=~"broken_.+"}'}
  query: sum by (namespace, pod) (__series__)
- resource: pods
  discover: {series: '{__name__=~"other_.+"}', matches: 'other_(a)', as: 'x_${1}'}
  query: sum by (namespace, pod) (__series__)
- name: nan_metric
  resource: pods
  query: sum by (namespace, pod) (nan_total)
`))
	if err != nil {
		t.Fatal(err)
	}
	rules, err := naming.Compile(cfg, naming.BuiltinResources())
	if err != nil {
		t.Fatal(err)
	}
	q := stubQuerier{
		names: map[string][]string{
			`{__name__=~"myapp_.+_total"}`: {"myapp_orders_total", "myapp_refunds_total"},
			`{__name__=~"other_.+"}`:       {"other_b", "other_c"},
		},
		errs: map[string]error{`{__name__=~"broken_.+"}`: errors.New("prometheus: bad_data: boom")},
	}
	r, err := Check(context.Background(), rules, q, CheckOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var table bytes.Buffer
	if err := r.WriteTable(&table); err != nil {
		t.Fatal(err)
	}
	t.Log("\n" + table.String())
	got := make([]string, len(r.Rules))
	for i, rr := range r.Rules {
		got[i] = fmt.Sprintf("%s broken=%v why=%s", rr.Rule, rr.Broken, rr.Why)
	}
	want := []string{
		"metrics[0] broken=false why=",
		"metrics[1] broken=false why=",
		`metrics[2] broken=true why=discovery error: prometheus: bad_data: boom (selector {__name__=~"broken_.+"})`,
		`metrics[3] broken=true why=2 series match {__name__=~"other_.+"} (other_b, other_c), but discover.matches accepts none`,
		"metrics[4] broken=true why=every sample is NaN or ±Inf (2), which the adapter leaves out",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	ms := r.Rules[1].Metrics
	if len(ms) != 2 || ms[0].Name != "myapp_orders" || ms[0].Status != StatusShadowed || ms[1].Name != "myapp_refunds" || ms[1].Status != StatusOK {
		t.Errorf("discovered metrics: %+v", ms)
	}
	if !strings.Contains(table.String(), "shadowed: not served: metrics[0] serves myapp_orders for pods first") {
		t.Errorf("table does not say the metric is shadowed:\n%s", table.String())
	}
}
