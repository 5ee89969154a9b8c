package adapter

import (
	"context"
	"errors"
	"fmt"
	"math"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/model"
	promlabels "github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/metrics/pkg/apis/custom_metrics"
	"k8s.io/metrics/pkg/apis/external_metrics"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/custom-metrics-apiserver/pkg/provider"

	"github.com/promql-adapter/promql-adapter/coalesce"
	"github.com/promql-adapter/promql-adapter/naming"
	"github.com/promql-adapter/promql-adapter/naming/pacompat"
	"github.com/promql-adapter/promql-adapter/querylimit"
)

const coalesceRules = `metrics:
- name: elu_utilization
  resource: pods
  query: avg by (namespace, pod) (avg_over_time(elu_utilization[1m]))
- name: service_requests_per_second
  resource: services
  query: sum by (namespace, service) (rate(http_requests_total[2m]))
- name: queue_messages_ready
  resource: external
  query: sum by (queue) (queue_messages_ready)
  fallback: "0"
- name: never_shared
  resource: pods
  query: max by (namespace, pod) (elu_utilization)
  freshness: 0s
- name: long_shared
  resource: pods
  query: min by (namespace, pod) (elu_utilization)
  freshness: 30s
`

// series is the data of the fake Prometheus below: every series with its value.
var series = []sample{
	{map[string]string{"__name__": "elu_utilization", "namespace": "shop", "pod": "web-1"}, 0.25},
	{map[string]string{"__name__": "elu_utilization", "namespace": "shop", "pod": "web-2"}, 0.5},
	{map[string]string{"__name__": "elu_utilization", "namespace": "shop", "pod": "web-3"}, math.NaN()},
	{map[string]string{"__name__": "elu_utilization", "namespace": "shop", "pod": "db-1"}, 0.9},
	{map[string]string{"__name__": "elu_utilization", "namespace": "shop", "pod": "gone-1"}, 0.1},
	{map[string]string{"__name__": "elu_utilization", "namespace": "shop"}, 0.3},
	{map[string]string{"__name__": "elu_utilization", "namespace": "bank", "pod": "web-1"}, 0.75},
	{map[string]string{"__name__": "http_requests_total", "namespace": "shop", "service": "frontend", "code": "200"}, 12.5},
	{map[string]string{"__name__": "http_requests_total", "namespace": "shop", "service": "backend", "code": "500"}, 3},
	{map[string]string{"__name__": "queue_messages_ready", "namespace": "shop", "queue": "orders"}, 42},
	{map[string]string{"__name__": "queue_messages_ready", "namespace": "shop", "queue": "bad"}, math.Inf(1)},
	{map[string]string{"__name__": "queue_messages_ready", "namespace": "bank", "queue": "loans"}, 7},
}

// selectSeries is a Prometheus over series for these tests: it answers each series that every
// matcher of the query's vector selectors admits (the aggregation is left out: one series per
// object), without its name.
func selectSeries(q string) ([]sample, error) {
	expr, err := parser.NewParser(parser.Options{}).ParseExpr(q)
	if err != nil {
		return nil, err
	}
	var ms []*promlabels.Matcher
	parser.Inspect(expr, func(n parser.Node, _ []parser.Node) error {
		if vs, ok := n.(*parser.VectorSelector); ok {
			ms = append(ms, vs.LabelMatchers...)
		}
		return nil
	})
	var out []sample
next:
	for _, s := range series {
		for _, m := range ms {
			if !m.Matches(s.labels[m.Name]) {
				continue next
			}
		}
		ls := map[string]string{}
		for k, v := range s.labels {
			if k != "__name__" {
				ls[k] = v
			}
		}
		out = append(out, sample{ls, s.value})
	}
	return out, nil
}

// coalescingProvider serves coalesceRules over f; with freshness >= 0 it coalesces (default bound
// freshness), with freshness < 0 it has no cache.
func coalescingProvider(t *testing.T, f *fakeProm, objects Objects, freshness time.Duration, clk *clocktesting.FakeClock) (*Provider, *Metrics) {
	t.Helper()
	cfg, err := naming.ParseConfig([]byte(coalesceRules))
	if err != nil {
		t.Fatal(err)
	}
	rules, err := naming.Compile(cfg, naming.BuiltinResources())
	if err != nil {
		t.Fatal(err)
	}
	m := NewMetrics(prometheus.NewRegistry())
	q, err := NewPromClient(PrometheusConfig{URL: f.srv.URL, Timeout: 5 * time.Second}, m)
	if err != nil {
		t.Fatal(err)
	}
	opts := Options{Querier: q, Objects: objects, Metrics: m, Now: clk.Now}
	if freshness >= 0 {
		opts.Coalesce = coalesce.New[[]Sample](100, naming.MaxFreshness)
		opts.Coalesce.Now = clk.Now
		opts.Freshness = freshness
	}
	return NewProvider(opts, rules), m
}

func newTestClock() *clocktesting.FakeClock {
	return clocktesting.NewFakeClock(time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC))
}

var shopPods = fakeObjects{
	"shop": {"web-1": {"app": "web"}, "web-2": {"app": "web"}, "web-3": {"app": "web"}, "db-1": {"app": "db"}, "db-2": {"app": "db"}},
	"bank": {"web-1": {"app": "web"}},
}

var rejectedQueryRE = regexp.MustCompile(`the query .*?: prometheus:`)

// answerOf renders an answer (or error) of any kind as comparable lines: object, value,
// timestamp, window and selector, or an external item's labels; for an error its status code and
// message without the query it names.
func answerOf(v any, err error) []string {
	if err != nil {
		msg, _, _ := strings.Cut(err.Error(), " (query: ")
		msg = rejectedQueryRE.ReplaceAllString(msg, "the query QUERY: prometheus:")
		return []string{fmt.Sprintf("error %d: %s", codeOf(err), msg)}
	}
	var out []string
	switch v := v.(type) {
	case *custom_metrics.MetricValueList:
		for _, it := range v.Items {
			out = append(out, fmt.Sprintf("%s %s/%s %s %s %v %v", it.DescribedObject.Kind, it.DescribedObject.Namespace, it.DescribedObject.Name,
				it.Value.String(), it.Timestamp.UTC().Format(time.RFC3339Nano), *it.WindowSeconds, it.Metric))
		}
	case *custom_metrics.MetricValue:
		out = append(out, fmt.Sprintf("%s %s/%s %s %s %v %v", v.DescribedObject.Kind, v.DescribedObject.Namespace, v.DescribedObject.Name,
			v.Value.String(), v.Timestamp.UTC().Format(time.RFC3339Nano), *v.WindowSeconds, v.Metric))
	case *external_metrics.ExternalMetricValueList:
		for _, it := range v.Items {
			out = append(out, fmt.Sprintf("%s %v %s %s", it.MetricName, it.MetricLabels, it.Value.String(), it.Timestamp.UTC().Format(time.RFC3339Nano)))
		}
		sort.Strings(out)
	default:
		out = append(out, fmt.Sprintf("unexpected %T", v))
	}
	return out
}

var (
	extInfo  = provider.ExternalMetricInfo{Metric: "queue_messages_ready"}
	svcInfo  = provider.CustomMetricInfo{GroupResource: schema.GroupResource{Resource: "services"}, Namespaced: true, Metric: "service_requests_per_second"}
	eluInfo  = podsInfo
	nsName   = func(ns, n string) types.NamespacedName { return types.NamespacedName{Namespace: ns, Name: n} }
	ctxBg    = context.Background()
	nameless = labels.Everything()
)

// TestCoalescedEqualsFresh: a coalesced answer (one namespace-wide query, filtered) equals the
// answer of a fresh query that names the objects, against the same data at the same timestamp:
// objects, values, timestamps, windows; skipped samples stay skipped, objects without a sample
// absent, a missing object the same 404.
func TestCoalescedEqualsFresh(t *testing.T) {
	tests := []struct {
		name    string
		call    func(t *testing.T, p *Provider) (any, error)
		fresh   string // the query a fresh request sends
		wide    string // the query a coalesced request sends
		objects int    // lines expected in the answer
	}{
		{
			name: "pods by label selector",
			call: func(t *testing.T, p *Provider) (any, error) {
				return p.GetMetricBySelector(ctxBg, "shop", sel(t, "app=web"), eluInfo, nameless)
			},
			fresh:   `avg by (namespace, pod) (avg_over_time(elu_utilization{namespace="shop",pod=~"web-1|web-2|web-3"}[1m]))`,
			wide:    `avg by (namespace, pod) (avg_over_time(elu_utilization{namespace="shop"}[1m]))`,
			objects: 2, // web-3 is NaN: skipped
		},
		{
			name: "every pod of the namespace",
			call: func(t *testing.T, p *Provider) (any, error) {
				return p.GetMetricBySelector(ctxBg, "shop", nameless, eluInfo, nameless)
			},
			fresh:   `avg by (namespace, pod) (avg_over_time(elu_utilization{namespace="shop",pod=~"db-1|db-2|web-1|web-2|web-3"}[1m]))`,
			wide:    `avg by (namespace, pod) (avg_over_time(elu_utilization{namespace="shop"}[1m]))`,
			objects: 3, // not gone-1, which is no pod; db-2 has no sample
		},
		{
			name: "one pod by name",
			call: func(t *testing.T, p *Provider) (any, error) {
				return p.GetMetricByName(ctxBg, nsName("bank", "web-1"), eluInfo, nameless)
			},
			fresh:   `avg by (namespace, pod) (avg_over_time(elu_utilization{namespace="bank",pod="web-1"}[1m]))`,
			wide:    `avg by (namespace, pod) (avg_over_time(elu_utilization{namespace="bank"}[1m]))`,
			objects: 1,
		},
		{
			name: "an object by name with a metric selector",
			call: func(t *testing.T, p *Provider) (any, error) {
				return p.GetMetricByName(ctxBg, nsName("shop", "frontend"), svcInfo, sel(t, "code=200"))
			},
			fresh:   `sum by (namespace, service) (rate(http_requests_total{code="200",namespace="shop",service="frontend"}[2m]))`,
			wide:    `sum by (namespace, service) (rate(http_requests_total{code="200",namespace="shop"}[2m]))`,
			objects: 1,
		},
		{
			name: "an object without a sample: the same 404",
			call: func(t *testing.T, p *Provider) (any, error) {
				return p.GetMetricByName(ctxBg, nsName("shop", "backend"), svcInfo, sel(t, "code=200"))
			},
			fresh:   `sum by (namespace, service) (rate(http_requests_total{code="200",namespace="shop",service="backend"}[2m]))`,
			wide:    `sum by (namespace, service) (rate(http_requests_total{code="200",namespace="shop"}[2m]))`,
			objects: 1,
		},
		{
			name: "a pod with a NaN sample: the same 404",
			call: func(t *testing.T, p *Provider) (any, error) {
				return p.GetMetricByName(ctxBg, nsName("shop", "web-3"), eluInfo, nameless)
			},
			fresh:   `avg by (namespace, pod) (avg_over_time(elu_utilization{namespace="shop",pod="web-3"}[1m]))`,
			wide:    `avg by (namespace, pod) (avg_over_time(elu_utilization{namespace="shop"}[1m]))`,
			objects: 1,
		},
		{
			name: "external metric with a selector",
			call: func(t *testing.T, p *Provider) (any, error) {
				return p.GetExternalMetric(ctxBg, "shop", sel(t, "queue in (orders,bad)"), extInfo)
			},
			fresh:   `sum by (queue) (queue_messages_ready{namespace="shop",queue=~"bad|orders"})`,
			wide:    `sum by (queue) (queue_messages_ready{namespace="shop",queue=~"bad|orders"})`,
			objects: 1, // bad is +Inf: skipped
		},
		{
			name: "external metric of a namespace",
			call: func(t *testing.T, p *Provider) (any, error) {
				return p.GetExternalMetric(ctxBg, "bank", nameless, extInfo)
			},
			fresh:   `sum by (queue) (queue_messages_ready{namespace="bank"})`,
			wide:    `sum by (queue) (queue_messages_ready{namespace="bank"})`,
			objects: 1,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			answers := map[string][]string{}
			for _, mode := range []struct {
				name      string
				freshness time.Duration
				query     string
			}{{"fresh", -1, tc.fresh}, {"coalesced", 15 * time.Second, tc.wide}} {
				f := newFakeProm(t, selectSeries)
				p, m := coalescingProvider(t, f, shopPods, mode.freshness, newTestClock())
				v, err := tc.call(t, p)
				answers[mode.name] = answerOf(v, err)
				if got := f.lastQuery(); got != mode.query {
					t.Errorf("%s query\n got %s\nwant %s", mode.name, got, mode.query)
				}
				if n := testutil.ToFloat64(m.coalesced.WithLabelValues("miss")); (n == 1) != (mode.freshness > 0) {
					t.Errorf("%s: %v coalesced misses counted", mode.name, n)
				}
			}
			if !slices.Equal(answers["fresh"], answers["coalesced"]) {
				t.Errorf("coalesced answer differs from the fresh one:\n fresh     %q\n coalesced %q", answers["fresh"], answers["coalesced"])
			}
			if len(answers["fresh"]) != tc.objects {
				t.Errorf("%d lines in the answer, want %d: %q", len(answers["fresh"]), tc.objects, answers["fresh"])
			}
		})
	}
}

// TestCoalescingManyRequestsOneQuery: concurrent requests of one namespace for different pods,
// by name and by selector, cost one query; each answer is its own objects'. At the bound the
// answer is still shared; a nanosecond past it the query runs again.
func TestCoalescingManyRequestsOneQuery(t *testing.T) {
	pods := map[string]labels.Set{}
	var data []sample
	for i := range 40 {
		name := fmt.Sprintf("web-%02d", i)
		pods[name] = labels.Set{"app": "web", "shard": fmt.Sprint(i % 4)}
		data = append(data, sample{map[string]string{"namespace": "shop", "pod": name}, float64(i)})
	}
	f := newFakeProm(t, func(string) ([]sample, error) { return data, nil })
	clk := newTestClock()
	const bound = 15 * time.Second
	p, m := coalescingProvider(t, f, fakeObjects{"shop": pods}, bound, clk)

	var wg sync.WaitGroup
	var failed atomic.Int32
	for name := range pods {
		wg.Add(1)
		go func() {
			defer wg.Done()
			v, err := p.GetMetricByName(ctxBg, nsName("shop", name), eluInfo, nameless)
			var i int
			_, _ = fmt.Sscanf(name, "web-%d", &i)
			if err != nil || v.DescribedObject.Name != name || v.Value.Value() != int64(i) {
				failed.Add(1)
				t.Errorf("%s: %v, %v", name, v, err)
			}
		}()
	}
	for shard := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			list, err := p.GetMetricBySelector(ctxBg, "shop", sel(t, fmt.Sprintf("shard=%d", shard)), eluInfo, nameless)
			if err != nil || len(list.Items) != 10 {
				t.Errorf("shard %d: %v, %v", shard, list, err)
				return
			}
			for _, it := range list.Items {
				if pods[it.DescribedObject.Name]["shard"] != fmt.Sprint(shard) {
					t.Errorf("shard %d answered with %s", shard, it.DescribedObject.Name)
				}
			}
		}()
	}
	wg.Wait()
	requests := len(pods) + 4
	if n := f.calls.Load(); n != 1 {
		t.Errorf("%d requests sent %d queries, want 1", requests, n)
	}
	miss, hit, shared := testutil.ToFloat64(m.coalesced.WithLabelValues("miss")), testutil.ToFloat64(m.coalesced.WithLabelValues("hit")), testutil.ToFloat64(m.coalesced.WithLabelValues("shared"))
	if miss != 1 || hit+shared != float64(requests-1) {
		t.Errorf("miss %v hit %v shared %v; want 1 and %d", miss, hit, shared, requests-1)
	}

	for _, step := range []struct {
		advance time.Duration
		queries int32
	}{{bound, 1}, {1, 2}} {
		clk.Step(step.advance)
		if _, err := p.GetMetricByName(ctxBg, nsName("shop", "web-01"), eluInfo, nameless); err != nil {
			t.Fatal(err)
		}
		if n := f.calls.Load(); n != step.queries {
			t.Errorf("after %v more: %d queries, want %d", step.advance, n, step.queries)
		}
	}
}

// TestCoalescingKeys: another namespace, metric selector or metric is another query.
func TestCoalescingKeys(t *testing.T) {
	f := newFakeProm(t, selectSeries)
	p, _ := coalescingProvider(t, f, shopPods, 15*time.Second, newTestClock())
	calls := []func() error{
		func() error { _, err := p.GetMetricBySelector(ctxBg, "shop", nameless, eluInfo, nameless); return err },
		func() error {
			_, err := p.GetMetricBySelector(ctxBg, "shop", sel(t, "app=db"), eluInfo, nameless)
			return err
		}, // shared
		func() error { _, err := p.GetMetricBySelector(ctxBg, "bank", nameless, eluInfo, nameless); return err },
		func() error {
			_, err := p.GetMetricByName(ctxBg, nsName("shop", "frontend"), svcInfo, sel(t, "code=200"))
			return err
		},
		func() error {
			_, err := p.GetMetricByName(ctxBg, nsName("shop", "backend"), svcInfo, sel(t, "code=500"))
			return err
		},
		func() error { _, err := p.GetExternalMetric(ctxBg, "shop", nameless, extInfo); return err },
		func() error {
			_, err := p.GetExternalMetric(ctxBg, "shop", sel(t, "queue=orders"), extInfo)
			return err
		},
	}
	for i, call := range calls {
		if err := call(); err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.queries) != len(calls)-1 || slices.Contains(f.queries, "") {
		t.Errorf("%d queries for %d requests of which 2 share: %q", len(f.queries), len(calls), f.queries)
	}
}

// TestCoalescingFreshnessPerRule: a rule's freshness overrides the default, 0s turning sharing
// off; without a default only rules that set one share.
func TestCoalescingFreshnessPerRule(t *testing.T) {
	tests := []struct {
		name      string
		freshness time.Duration // the default; < 0 for no cache
		metric    string
		advance   time.Duration // between the two requests
		queries   int
	}{
		{"no cache", -1, "elu_utilization", 0, 2},
		{"default 0: not shared", 0, "elu_utilization", 0, 2},
		{"default 15s: shared", 15 * time.Second, "elu_utilization", 0, 1},
		{"default 15s, past it", 15 * time.Second, "elu_utilization", 20 * time.Second, 2},
		{"rule 0s under default 15s: not shared", 15 * time.Second, "never_shared", 0, 2},
		{"rule 30s under default 0: shared", 0, "long_shared", 20 * time.Second, 1},
		{"rule 30s under default 15s: shared past 15s", 15 * time.Second, "long_shared", 20 * time.Second, 1},
		{"rule 30s, past it", 15 * time.Second, "long_shared", 30*time.Second + 1, 2},
		{"rule 30s without a cache: not shared", -1, "long_shared", 0, 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeProm(t, selectSeries)
			clk := newTestClock()
			p, _ := coalescingProvider(t, f, shopPods, tc.freshness, clk)
			info := eluInfo
			info.Metric = tc.metric
			for i, pod := range []string{"web-1", "web-2"} {
				if i > 0 {
					clk.Step(tc.advance)
				}
				if _, err := p.GetMetricByName(ctxBg, nsName("shop", pod), info, nameless); err != nil {
					t.Fatal(err)
				}
			}
			if n := int(f.calls.Load()); n != tc.queries {
				t.Errorf("%d queries, want %d", n, tc.queries)
			}
		})
	}
}

// TestCoalescingLeavesLabelValuesByName: a prometheus-adapter rule reading .LabelValuesByName has
// no namespace-wide query; with coalescing on its requests still name their objects.
func TestCoalescingLeavesLabelValuesByName(t *testing.T) {
	prom := &seriesAndQueries{series: map[string][]string{"vhost_requests_total": {"namespace", "pod"}}, answer: podsNamed}
	url := prom.start(t)
	rules, _, err := pacompat.LoadLenient([]byte(labelValuesRule), naming.BuiltinResources())
	if err != nil {
		t.Fatal(err)
	}
	q, err := NewPromClient(PrometheusConfig{URL: url, Timeout: 5 * time.Second}, nil)
	if err != nil {
		t.Fatal(err)
	}
	objects := fakeObjects{"edge": {"proxy-0": {"app": "proxy"}, "proxy-1": {"app": "proxy"}}}
	p := NewProvider(Options{Querier: q, Objects: objects, Coalesce: coalesce.New[[]Sample](10, time.Minute), Freshness: time.Minute}, rules)
	if err := p.Discover(ctxBg, time.Minute, time.Hour); err != nil {
		t.Fatal(err)
	}
	for _, pod := range []string{"proxy-0", "proxy-1"} {
		v, err := p.GetMetricByName(ctxBg, nsName("edge", pod), vhostInfo, nameless)
		if err != nil || v.DescribedObject.Name != pod {
			t.Fatalf("%s: %v, %v", pod, v, err)
		}
	}
	if _, err := p.GetMetricBySelector(ctxBg, "edge", nameless, vhostInfo, nameless); err != nil {
		t.Fatal(err)
	}
	sent := prom.sent()
	want := [][]string{{`pod=~"proxy-0"`}, {`pod=~"proxy-1"`}, {`pod=~"proxy-`, `proxy-0`, `proxy-1`}} // the last in any order
	if len(sent) != len(want) {
		t.Fatalf("queries %q, want %d naming the pods", sent, len(want))
	}
	for i, parts := range want {
		for _, w := range parts {
			if !strings.Contains(sent[i], w) {
				t.Errorf("query %d %s does not name %s", i, sent[i], w)
			}
		}
	}
}

// TestCoalescingFallbackAndErrors: while Prometheus fails, a coalesced request gets the fallback
// (or the error) a fresh one gets; the failure is not kept, so the next request queries again.
func TestCoalescingFallbackAndErrors(t *testing.T) {
	var down atomic.Bool
	down.Store(true)
	answer := func(q string) ([]sample, error) {
		if down.Load() {
			return nil, errors.New("overloaded")
		}
		return selectSeries(q)
	}
	calls := map[string]func(p *Provider) (any, error){
		"external with fallback": func(p *Provider) (any, error) { return p.GetExternalMetric(ctxBg, "shop", nameless, extInfo) },
		"object without fallback": func(p *Provider) (any, error) {
			return p.GetMetricByName(ctxBg, nsName("shop", "web-1"), eluInfo, nameless)
		},
	}
	for name, call := range calls {
		t.Run(name, func(t *testing.T) {
			answers := map[string][]string{}
			for _, mode := range []struct {
				name      string
				freshness time.Duration
			}{{"fresh", -1}, {"coalesced", 15 * time.Second}} {
				down.Store(true)
				f := newFakeProm(t, answer)
				clk := newTestClock()
				p, _ := coalescingProvider(t, f, shopPods, mode.freshness, clk)
				v, err := call(p)
				answers[mode.name] = answerOf(v, err)
				down.Store(false)
				v, err = call(p)
				if err != nil || f.calls.Load() != 2 {
					t.Errorf("%s after recovery: %v, %v, %d queries; want an answer from a second query", mode.name, v, err, f.calls.Load())
				}
			}
			if !slices.Equal(answers["fresh"], answers["coalesced"]) {
				t.Errorf("while failing, coalesced answer differs from the fresh one:\n fresh     %q\n coalesced %q", answers["fresh"], answers["coalesced"])
			}
		})
	}
}

// TestCoalescingMetrics: hits, shared and misses are counted, and the age of each coalesced
// answer observed: 0 for the request that ran the query, the time since it started for a hit.
func TestCoalescingMetrics(t *testing.T) {
	f := newFakeProm(t, selectSeries)
	clk := newTestClock()
	p, m := coalescingProvider(t, f, shopPods, 15*time.Second, clk)
	for _, step := range []time.Duration{0, 5 * time.Second, 10 * time.Second} {
		clk.Step(step)
		if _, err := p.GetMetricBySelector(ctxBg, "shop", nameless, eluInfo, nameless); err != nil {
			t.Fatal(err)
		}
	}
	if miss, hit := testutil.ToFloat64(m.coalesced.WithLabelValues("miss")), testutil.ToFloat64(m.coalesced.WithLabelValues("hit")); miss != 1 || hit != 2 {
		t.Errorf("miss %v hit %v, want 1 and 2", miss, hit)
	}
	var d dto.Metric
	if err := m.answerAge.Write(&d); err != nil {
		t.Fatal(err)
	}
	if h := d.GetHistogram(); h.GetSampleCount() != 3 || h.GetSampleSum() != 20 {
		t.Errorf("age histogram: %d answers, %v s in all; want 3 and 0+5+15", h.GetSampleCount(), h.GetSampleSum())
	}
	if err := testutil.CollectAndCompare(m.coalesced, strings.NewReader(`
# HELP promql_adapter_coalesced_requests_total Requests answered from a shared namespace-wide query, by result: hit (a cached answer within the freshness bound), shared (joined a query under way), miss (ran the query). (hit+shared)/all is the coalescing ratio.
# TYPE promql_adapter_coalesced_requests_total counter
promql_adapter_coalesced_requests_total{result="hit"} 2
promql_adapter_coalesced_requests_total{result="miss"} 1
`)); err != nil {
		t.Error(err)
	}
}

// shedQuerier sheds every query while shed is set, as querylimit does when Prometheus is saturated.
type shedQuerier struct {
	recordingQuerier
	shed atomic.Bool
}

func (q *shedQuerier) Query(ctx context.Context, query string) (model.Vector, error) {
	_, _ = q.recordingQuerier.Query(ctx, query) // records it
	if q.shed.Load() {
		return nil, &querylimit.ShedError{Backend: "default", MaxInFlight: 1}
	}
	return model.Vector{{Metric: model.Metric{"namespace": "shop", "pod": "web-1"}, Value: 1, Timestamp: 1700000000500}}, nil
}

// TestCoalescingShedIsNotKept: a shed query gives a coalesced request the same fast 503 with
// Retry-After a fresh one gets, and is not kept: the next request queries again.
func TestCoalescingShedIsNotKept(t *testing.T) {
	rules := testRules(t)
	for _, coalescing := range []bool{false, true} {
		q := &shedQuerier{}
		q.shed.Store(true)
		opts := Options{Querier: q, Now: newTestClock().Now}
		if coalescing {
			opts.Coalesce, opts.Freshness = coalesce.New[[]Sample](10, time.Minute), time.Minute
		}
		p := NewProvider(opts, rules)
		_, err := p.GetMetricByName(ctxBg, nsName("shop", "web-1"), eluInfo, nameless)
		var se *apierrors.StatusError
		if !errors.As(err, &se) || se.ErrStatus.Code != 503 || se.ErrStatus.Details == nil || se.ErrStatus.Details.RetryAfterSeconds != 1 ||
			!strings.Contains(se.ErrStatus.Message, "shedding load") {
			t.Errorf("coalescing %v: %v, want a 503 with Retry-After 1 that says the adapter sheds", coalescing, err)
		}
		q.shed.Store(false)
		v, err := p.GetMetricByName(ctxBg, nsName("shop", "web-1"), eluInfo, nameless)
		if err != nil || v.Value.String() != "1" || len(q.asked()) != 2 {
			t.Errorf("coalescing %v, after shedding: %v, %v, %d queries; want 1 from a second query", coalescing, v, err, len(q.asked()))
		}
	}
}
