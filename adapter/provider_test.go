package adapter

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/custom-metrics-apiserver/pkg/provider"

	"github.com/promql-adapter/promql-adapter/naming"
)

// fakeProm is an httptest Prometheus that records the PromQL it receives and answers from a table.
type fakeProm struct {
	t       *testing.T
	srv     *httptest.Server
	mu      sync.Mutex
	queries []string
	calls   atomic.Int32
	// answer returns the samples for a query: label sets and values.
	answer func(query string) ([]sample, error)
	delay  time.Duration
	names  []string // answer of the label values API
}

type sample struct {
	labels map[string]string
	value  float64
}

func newFakeProm(t *testing.T, answer func(string) ([]sample, error)) *fakeProm {
	f := &fakeProm{t: t, answer: answer}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeProm) serve(w http.ResponseWriter, r *http.Request) {
	f.calls.Add(1)
	if err := r.ParseForm(); err != nil {
		http.Error(w, err.Error(), 400)
		return
	}
	if f.delay > 0 {
		select {
		case <-time.After(f.delay):
		case <-r.Context().Done():
			return
		}
	}
	w.Header().Set("Content-Type", "application/json")
	if strings.HasSuffix(r.URL.Path, "/label/__name__/values") {
		_ = json.NewEncoder(w).Encode(map[string]any{"status": "success", "data": f.names})
		return
	}
	q := r.Form.Get("query")
	f.mu.Lock()
	f.queries = append(f.queries, q)
	f.mu.Unlock()
	samples, err := f.answer(q)
	if err != nil {
		w.WriteHeader(http.StatusBadRequest)
		_ = json.NewEncoder(w).Encode(map[string]any{"status": "error", "errorType": "bad_data", "error": err.Error()})
		return
	}
	result := []map[string]any{}
	for _, s := range samples {
		v := fmt.Sprint(s.value)
		switch {
		case math.IsNaN(s.value):
			v = "NaN"
		case math.IsInf(s.value, 1):
			v = "+Inf"
		}
		result = append(result, map[string]any{"metric": s.labels, "value": []any{1700000000.5, v}})
	}
	_ = json.NewEncoder(w).Encode(map[string]any{"status": "success", "data": map[string]any{"resultType": "vector", "result": result}})
}

func (f *fakeProm) lastQuery() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.queries) == 0 {
		return ""
	}
	return f.queries[len(f.queries)-1]
}

// fakeObjects is an Objects over fixed pod labels per namespace.
type fakeObjects map[string]map[string]labels.Set // namespace → name → labels

func (o fakeObjects) Names(_ context.Context, _ naming.Resource, ns string, sel labels.Selector) ([]string, int, error) {
	var names []string
	for n, l := range o[ns] {
		if sel == nil || sel.Matches(l) {
			names = append(names, n)
		}
	}
	return names, len(o[ns]), nil
}

func testRules(t testing.TB) *naming.Rules {
	t.Helper()
	data, err := os.ReadFile("../testdata/rules/examples.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := naming.ParseConfig(data)
	if err != nil {
		t.Fatal(err)
	}
	rules, err := naming.Compile(cfg, naming.BuiltinResources())
	if err != nil {
		t.Fatal(err)
	}
	return rules
}

func newTestProvider(t *testing.T, f *fakeProm, objects Objects, timeout time.Duration) (*Provider, *Metrics) {
	t.Helper()
	m := NewMetrics(prometheus.NewRegistry())
	q, err := NewPromClient(PrometheusConfig{URL: f.srv.URL, Timeout: timeout}, m)
	if err != nil {
		t.Fatal(err)
	}
	return NewProvider(Options{Querier: q, Objects: objects, Metrics: m}, testRules(t)), m
}

var (
	podsInfo     = provider.CustomMetricInfo{GroupResource: schema.GroupResource{Resource: "pods"}, Namespaced: true, Metric: "elu_utilization"}
	servicesInfo = provider.CustomMetricInfo{GroupResource: schema.GroupResource{Resource: "services"}, Namespaced: true, Metric: "service_requests_per_second"}
)

func sel(t *testing.T, s string) labels.Selector {
	t.Helper()
	l, err := labels.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func TestPodsBySelector(t *testing.T) {
	shop := fakeObjects{"shop": {
		"web-1": {"app": "web"}, "web-2": {"app": "web"}, "web-3": {"app": "web"},
		"db-1": {"app": "db"}, "db-2": {"app": "db"}, "db-3": {"app": "db"}, "db-4": {"app": "db"},
	}}
	answer := func(string) ([]sample, error) {
		return []sample{
			{map[string]string{"namespace": "shop", "pod": "web-1"}, 0.25},
			{map[string]string{"namespace": "shop", "pod": "web-2"}, math.NaN()},
			{map[string]string{"namespace": "shop", "pod": "db-1"}, 0.9},
			{map[string]string{"namespace": "shop", "pod": "gone-1"}, 0.5},
			{map[string]string{"namespace": "shop"}, 0.5},
		}, nil
	}
	tests := []struct {
		name      string
		selector  string
		budget    int // NameBudget; 0 for the default
		wantQuery string
		want      map[string]string // pod → quantity
	}{
		{
			name:      "short alternation: names in the query",
			selector:  "app=web",
			wantQuery: `avg by (namespace, pod) (avg_over_time(elu_utilization{namespace="shop",pod=~"web-1|web-2|web-3"}[1m]))`,
			want:      map[string]string{"web-1": "250m"}, // web-2 is NaN (skipped), web-3 has no sample (absent, not zero)
		},
		{
			name:      "short alternation: most of the namespace named too",
			selector:  "app=db",
			wantQuery: `avg by (namespace, pod) (avg_over_time(elu_utilization{namespace="shop",pod=~"db-1|db-2|db-3|db-4"}[1m]))`,
			want:      map[string]string{"db-1": "900m"},
		},
		{
			name:      "past the name budget, most of the namespace: query by namespace, filter by names",
			selector:  "app=db",
			budget:    8,
			wantQuery: `avg by (namespace, pod) (avg_over_time(elu_utilization{namespace="shop"}[1m]))`,
			want:      map[string]string{"db-1": "900m"},
		},
		{
			name:      "no selector: every pod that exists, not pods that are gone",
			selector:  "",
			wantQuery: `avg by (namespace, pod) (avg_over_time(elu_utilization{namespace="shop",pod=~"db-1|db-2|db-3|db-4|web-1|web-2|web-3"}[1m]))`,
			want:      map[string]string{"web-1": "250m", "db-1": "900m"},
		},
		{
			name:      "no selector past the name budget: query by namespace, not pods that are gone",
			selector:  "",
			budget:    8,
			wantQuery: `avg by (namespace, pod) (avg_over_time(elu_utilization{namespace="shop"}[1m]))`,
			want:      map[string]string{"web-1": "250m", "db-1": "900m"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeProm(t, answer)
			p, m := newTestProvider(t, f, shop, time.Second)
			if tc.budget > 0 {
				p.opts.NameBudget = tc.budget
			}
			list, err := p.GetMetricBySelector(context.Background(), "shop", sel(t, tc.selector), podsInfo, labels.Everything())
			if err != nil {
				t.Fatal(err)
			}
			if got := f.lastQuery(); got != tc.wantQuery {
				t.Errorf("query\n got %s\nwant %s", got, tc.wantQuery)
			}
			got := map[string]string{}
			for _, it := range list.Items {
				got[it.DescribedObject.Name] = it.Value.String()
				if it.DescribedObject.Kind != "Pod" || it.DescribedObject.APIVersion != "v1" || it.DescribedObject.Namespace != "shop" {
					t.Errorf("described object %+v", it.DescribedObject)
				}
				if it.WindowSeconds == nil || *it.WindowSeconds != 60 {
					t.Errorf("window %v, want 60", it.WindowSeconds)
				}
				if it.Timestamp.Unix() != 1700000000 || it.Metric.Name != "elu_utilization" {
					t.Errorf("timestamp %v metric %q", it.Timestamp, it.Metric.Name)
				}
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Errorf("values %v, want %v", got, tc.want)
			}
			if n := testutil.ToFloat64(m.skipped.WithLabelValues("nan")); tc.selector != "app=db" && n != 1 {
				t.Errorf("nan skipped %v, want 1", n)
			}
			if n := testutil.ToFloat64(m.requests.WithLabelValues("pods", "200")); n != 1 {
				t.Errorf("requests{pods,200} = %v", n)
			}
		})
	}
}

func TestNoObjectsSelectedIsEmptyAndAsksNothing(t *testing.T) {
	f := newFakeProm(t, func(string) ([]sample, error) { return nil, nil })
	p, _ := newTestProvider(t, f, fakeObjects{"shop": {"a": {"app": "x"}}}, time.Second)
	list, err := p.GetMetricBySelector(context.Background(), "shop", sel(t, "app=none"), podsInfo, labels.Everything())
	if err != nil || len(list.Items) != 0 || f.calls.Load() != 0 {
		t.Errorf("items %v err %v calls %d; want empty, nil, 0", list, err, f.calls.Load())
	}
}

func TestObjectMetricByName(t *testing.T) {
	f := newFakeProm(t, func(q string) ([]sample, error) {
		if strings.Contains(q, `service="frontend"`) {
			return []sample{{map[string]string{"namespace": "shop", "service": "frontend"}, 12.5}}, nil
		}
		return nil, nil
	})
	p, _ := newTestProvider(t, f, nil, time.Second)
	mv, err := p.GetMetricByName(context.Background(), types.NamespacedName{Namespace: "shop", Name: "frontend"}, servicesInfo, sel(t, "code=200"))
	if err != nil {
		t.Fatal(err)
	}
	want := `sum by (namespace, service) (rate(http_requests_total{code="200",namespace="shop",service="frontend"}[2m]))`
	if got := f.lastQuery(); got != want {
		t.Errorf("query\n got %s\nwant %s", got, want)
	}
	if mv.Value.String() != "12500m" || mv.DescribedObject.Kind != "Service" || mv.Metric.Selector == nil {
		t.Errorf("got %+v", mv)
	}

	_, err = p.GetMetricByName(context.Background(), types.NamespacedName{Namespace: "shop", Name: "backend"}, servicesInfo, labels.Everything())
	if !apierrors.IsNotFound(err) || !strings.Contains(err.Error(), `no sample for services shop/backend`) {
		t.Errorf("missing sample: %v", err)
	}
}

func TestExternal(t *testing.T) {
	f := newFakeProm(t, func(string) ([]sample, error) {
		return []sample{
			{map[string]string{"queue": "orders"}, 42},
			{map[string]string{"queue": "bad"}, math.Inf(1)},
		}, nil
	})
	p, m := newTestProvider(t, f, nil, time.Second)
	list, err := p.GetExternalMetric(context.Background(), "shop", sel(t, "queue in (orders,bad)"), provider.ExternalMetricInfo{Metric: "queue_messages_ready"})
	if err != nil {
		t.Fatal(err)
	}
	want := `sum by (queue) (queue_messages_ready{namespace="shop",queue=~"bad|orders"})`
	if got := f.lastQuery(); got != want {
		t.Errorf("query\n got %s\nwant %s", got, want)
	}
	if len(list.Items) != 1 || list.Items[0].Value.String() != "42" || list.Items[0].MetricLabels["queue"] != "orders" {
		t.Errorf("items %+v", list.Items)
	}
	if n := testutil.ToFloat64(m.skipped.WithLabelValues("inf")); n != 1 {
		t.Errorf("inf skipped %v", n)
	}
}

func TestErrors(t *testing.T) {
	ok := func(string) ([]sample, error) { return nil, nil }
	tests := []struct {
		name     string
		answer   func(string) ([]sample, error)
		delay    time.Duration
		down     bool
		call     func(p *Provider) error
		code     int32
		contains []string
	}{
		{
			name: "unknown metric names the closest",
			call: func(p *Provider) error {
				_, err := p.GetMetricBySelector(context.Background(), "shop", labels.Everything(),
					provider.CustomMetricInfo{GroupResource: podsInfo.GroupResource, Namespaced: true, Metric: "elu_utilisation"}, labels.Everything())
				return err
			},
			code: 404, contains: []string{`"elu_utilisation" is not served for pods`, "closest served: elu_utilization"},
		},
		{
			name: "metric served for another resource says where",
			call: func(p *Provider) error {
				_, err := p.GetMetricBySelector(context.Background(), "shop", labels.Everything(),
					provider.CustomMetricInfo{GroupResource: schema.GroupResource{Resource: "nodes"}, Metric: "elu_utilization"}, labels.Everything())
				return err
			},
			code: 404, contains: []string{"served for pods"},
		},
		{
			name: "unknown external metric",
			call: func(p *Provider) error {
				_, err := p.GetExternalMetric(context.Background(), "shop", labels.Everything(), provider.ExternalMetricInfo{Metric: "queue_ready"})
				return err
			},
			code: 404, contains: []string{"closest served: queue_messages_ready"},
		},
		{
			name: "unsupported selector operator",
			call: func(p *Provider) error {
				_, err := p.GetMetricBySelector(context.Background(), "shop", labels.Everything(), podsInfo, sel(t, "code>3"))
				return err
			},
			code: 400, contains: []string{`operator "gt"`},
		},
		{
			name: "object selector without a cluster",
			call: func(p *Provider) error {
				_, err := p.GetMetricBySelector(context.Background(), "shop", sel(t, "app=web"), podsInfo, labels.Everything())
				return err
			},
			code: 400, contains: []string{"needs a Kubernetes connection"},
		},
		{
			name: "prometheus down",
			down: true,
			call: func(p *Provider) error {
				_, err := p.GetMetricBySelector(context.Background(), "shop", labels.Everything(), podsInfo, labels.Everything())
				return err
			},
			code: 503, contains: []string{"prometheus query failed", "connection refused", "elu_utilization{namespace=\"shop\"}"},
		},
		{
			name:  "prometheus slow: bounded by the timeout",
			delay: 5 * time.Second,
			call: func(p *Provider) error {
				_, err := p.GetMetricByName(context.Background(), types.NamespacedName{Namespace: "shop", Name: "f"}, servicesInfo, labels.Everything())
				return err
			},
			code: 503, contains: []string{"no answer within 200ms"},
		},
		{
			name:   "prometheus rejects the query",
			answer: func(string) ([]sample, error) { return nil, fmt.Errorf("parse error: bad") },
			call: func(p *Provider) error {
				_, err := p.GetMetricBySelector(context.Background(), "shop", labels.Everything(), podsInfo, labels.Everything())
				return err
			},
			code: 500, contains: []string{"rule 0", "prometheus rejected the query", "parse error: bad"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			answer := tc.answer
			if answer == nil {
				answer = ok
			}
			f := newFakeProm(t, answer)
			f.delay = tc.delay
			if tc.down {
				f.srv.Close()
			}
			p, _ := newTestProvider(t, f, nil, 200*time.Millisecond)
			start := time.Now()
			err := tc.call(p)
			var se apierrors.APIStatus
			if err == nil || !errors.As(err, &se) || se.Status().Code != tc.code {
				t.Fatalf("error %v, want code %d", err, tc.code)
			}
			for _, c := range tc.contains {
				if !strings.Contains(err.Error(), c) {
					t.Errorf("error %q does not contain %q", err, c)
				}
			}
			// Bounded: far from the 5 s the slow Prometheus takes. A wide bound, not a timing assertion.
			if d := time.Since(start); d > 3*time.Second {
				t.Errorf("took %v", d)
			}
		})
	}
}

func TestFallbackServedAndCounted(t *testing.T) {
	f := newFakeProm(t, nil)
	f.srv.Close()
	p, m := newTestProvider(t, f, nil, time.Second)
	list, err := p.GetExternalMetric(context.Background(), "shop", labels.Everything(), provider.ExternalMetricInfo{Metric: "queue_messages_ready"})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Items) != 1 || list.Items[0].Value.String() != "0" {
		t.Errorf("items %+v", list.Items)
	}
	if n := testutil.ToFloat64(m.fallbacks.WithLabelValues("queue_messages_ready")); n != 1 {
		t.Errorf("fallbacks %v, want 1", n)
	}
}

func TestIdenticalQueriesCollapse(t *testing.T) {
	release := make(chan struct{})
	f := newFakeProm(t, func(string) ([]sample, error) {
		<-release
		return []sample{{map[string]string{"queue": "q"}, 1}}, nil
	})
	p, _ := newTestProvider(t, f, nil, 5*time.Second)
	var wg sync.WaitGroup
	errs := make(chan error, 10)
	for range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := p.GetExternalMetric(context.Background(), "shop", labels.Everything(), provider.ExternalMetricInfo{Metric: "queue_messages_ready"})
			errs <- err
		}()
	}
	// Wait until the first request reached Prometheus, give the rest time to join it, then answer.
	for f.calls.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond)
	close(release)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := f.calls.Load(); n >= 10 {
		t.Errorf("%d requests reached Prometheus for 10 identical queries", n)
	}
}

// TestRequestInFlightFinishesAcrossRuleChange replaces the rules with a set that no longer serves
// the metric while a request for it waits on Prometheus: that request still answers with the rule
// it started with, and the next one gets the new rules' 404.
func TestRequestInFlightFinishesAcrossRuleChange(t *testing.T) {
	release := make(chan struct{})
	f := newFakeProm(t, func(string) ([]sample, error) {
		<-release
		return []sample{{map[string]string{"namespace": "shop", "pod": "web-1"}, 0.25}}, nil
	})
	p, _ := newTestProvider(t, f, nil, 5*time.Second)
	type result struct {
		value string
		err   error
	}
	done := make(chan result, 1)
	go func() {
		v, err := p.GetMetricByName(context.Background(), types.NamespacedName{Namespace: "shop", Name: "web-1"}, podsInfo, labels.Everything())
		if err != nil {
			done <- result{err: err}
			return
		}
		done <- result{value: v.Value.String()}
	}()
	for f.calls.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	p.SetRules(&naming.Rules{}) // elu_utilization is no longer served
	close(release)
	if r := <-done; r.err != nil || r.value != "250m" {
		t.Fatalf("request in flight across the change: %q, %v; want 250m", r.value, r.err)
	}
	_, err := p.GetMetricByName(context.Background(), types.NamespacedName{Namespace: "shop", Name: "web-1"}, podsInfo, labels.Everything())
	if !apierrors.IsNotFound(err) {
		t.Errorf("request after the change: %v, want 404", err)
	}
}

func TestDiscoveryKeepsMetricsAcrossGaps(t *testing.T) {
	f := newFakeProm(t, func(string) ([]sample, error) { return nil, nil })
	f.names = []string{"myapp_orders_total", "myapp_refunds_total", "other_total"}
	now := time.Unix(1700000000, 0)
	q, err := NewPromClient(PrometheusConfig{URL: f.srv.URL}, nil)
	if err != nil {
		t.Fatal(err)
	}
	p := NewProvider(Options{Querier: q, Now: func() time.Time { return now }}, testRules(t))
	listed := func() string {
		var out []string
		for _, m := range p.ListAllMetrics() {
			if strings.HasPrefix(m.Metric, "myapp_") {
				out = append(out, m.Metric)
			}
		}
		return strings.Join(out, ",")
	}
	if got := listed(); got != "" {
		t.Fatalf("before discovery: %s", got)
	}
	if len(p.ListAllMetrics()) != 3 {
		t.Errorf("fixed-name metrics must be listed before discovery, got %v", p.ListAllMetrics())
	}
	step := func(names []string, advance time.Duration) {
		f.names = names
		now = now.Add(advance)
		if err := p.Discover(context.Background(), time.Hour, 10*time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	step(f.names, 0)
	if got := listed(); got != "myapp_orders_per_second,myapp_refunds_per_second" {
		t.Fatalf("after discovery: %s", got)
	}
	step([]string{"myapp_orders_total"}, 5*time.Minute) // refunds missed one relist: still served
	if got := listed(); got != "myapp_orders_per_second,myapp_refunds_per_second" {
		t.Errorf("after a gap: %s", got)
	}
	step([]string{"myapp_orders_total"}, 6*time.Minute) // refunds unseen for 11m > max age
	if got := listed(); got != "myapp_orders_per_second" {
		t.Errorf("after max age: %s", got)
	}
	f.srv.Close()
	if err := p.Discover(context.Background(), time.Hour, 10*time.Minute); err == nil {
		t.Error("discovery against a closed Prometheus did not fail")
	}
	if got := listed(); got != "myapp_orders_per_second" {
		t.Errorf("a failed relist dropped metrics: %s", got)
	}
}

// TestDiscoveryPending: until each discovery selector of the current rules has been listed once,
// the provider says its list may be incomplete (forwarding must not take its names for an
// upstream's); a reload with the same selectors does not make it pending again, a new one does.
func TestDiscoveryPending(t *testing.T) {
	f := newFakeProm(t, func(string) ([]sample, error) { return nil, nil })
	f.names = []string{"myapp_orders_total"}
	q, err := NewPromClient(PrometheusConfig{URL: f.srv.URL}, nil)
	if err != nil {
		t.Fatal(err)
	}
	rules := testRules(t)
	p := NewProvider(Options{Querier: q}, rules)
	ctx := context.Background()
	if !p.DiscoveryPending() {
		t.Error("before the first discovery pass: not pending")
	}
	if err := p.Discover(ctx, time.Hour, 10*time.Minute); err != nil {
		t.Fatal(err)
	}
	if p.DiscoveryPending() {
		t.Error("after the first pass: still pending")
	}
	p.SetRules(testRules(t))
	if p.DiscoveryPending() {
		t.Error("after a reload with the same selectors: pending")
	}
	p.SetRules(&naming.Rules{})
	if p.DiscoveryPending() {
		t.Error("rules without discovery: pending")
	}
	changed := testRules(t)
	tmpl := *changed.Templates[0]
	tmpl.Series = `{__name__=~"newapp_.*_total"}`
	changed.Templates = append(changed.Templates, &tmpl)
	p.SetRules(changed)
	if !p.DiscoveryPending() {
		t.Error("after a reload with a new discovery selector: not pending")
	}
	f.srv.Close()
	if err := p.Discover(ctx, time.Hour, 10*time.Minute); err == nil {
		t.Fatal("discovery against a closed Prometheus did not fail")
	}
	if !p.DiscoveryPending() {
		t.Error("after a failed pass: not pending")
	}
}
