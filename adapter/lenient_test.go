package adapter

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/metrics/pkg/apis/custom_metrics"
	"sigs.k8s.io/custom-metrics-apiserver/pkg/provider"

	"github.com/promql-adapter/promql-adapter/naming"
	"github.com/promql-adapter/promql-adapter/naming/pacompat"
)

// paProvider serves a prometheus-adapter config (loaded leniently) over f, with objects, after one discovery.
func paProvider(t *testing.T, config string, promURL string, objects Objects, maxRegex int) *Provider {
	t.Helper()
	rules, _, err := pacompat.LoadLenient([]byte(config), naming.BuiltinResources())
	if err != nil {
		t.Fatal(err)
	}
	q, err := NewPromClient(PrometheusConfig{URL: promURL, Timeout: 5 * time.Second}, nil)
	if err != nil {
		t.Fatal(err)
	}
	p := NewProvider(Options{Querier: q, Objects: objects, MaxRegexBytes: maxRegex}, rules)
	if err := p.Discover(context.Background(), time.Minute, time.Hour); err != nil {
		t.Fatal(err)
	}
	return p
}

// seriesAndQueries is an httptest Prometheus for prometheus-adapter rules: the labels APIs (and
// /api/v1/series) list one series per metric name given, /api/v1/query answers with answer (an errorType and code to fail).
type seriesAndQueries struct {
	series  map[string][]string // metric name → label names
	mu      sync.Mutex
	queries []string
	answer  func(q string) (samples []sample, code int, errType, msg string)
}

func (s *seriesAndQueries) start(t *testing.T) string {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = r.ParseForm()
		w.Header().Set("Content-Type", "application/json")
		if strings.HasSuffix(r.URL.Path, "/labels") || strings.HasSuffix(r.URL.Path, "/label/__name__/values") {
			// Discovery asks for names, then each name's label names, with match[].
			data := []string{}
			for name, ls := range s.series {
				if !strings.Contains(r.Form.Get("match[]"), name) {
					continue
				}
				if strings.HasSuffix(r.URL.Path, "/values") {
					data = append(data, name)
					continue
				}
				data = append(append(data, "__name__"), ls...)
			}
			_ = json.NewEncoder(w).Encode(map[string]any{"status": "success", "data": data})
			return
		}
		if strings.HasSuffix(r.URL.Path, "/series") {
			var data []map[string]string
			for name, ls := range s.series {
				if !strings.Contains(r.Form.Get("match[]"), name) {
					continue
				}
				set := map[string]string{"__name__": name}
				for _, l := range ls {
					set[l] = "x"
				}
				data = append(data, set)
			}
			_ = json.NewEncoder(w).Encode(map[string]any{"status": "success", "data": data})
			return
		}
		q := r.Form.Get("query")
		s.mu.Lock()
		s.queries = append(s.queries, q)
		s.mu.Unlock()
		samples, code, errType, msg := s.answer(q)
		if code != 0 {
			w.WriteHeader(code)
			_ = json.NewEncoder(w).Encode(map[string]any{"status": "error", "errorType": errType, "error": msg})
			return
		}
		result := []map[string]any{}
		for _, sm := range samples {
			result = append(result, map[string]any{"metric": sm.labels, "value": []any{1700000000.5, fmt.Sprint(sm.value)}})
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"status": "success", "data": map[string]any{"resultType": "vector", "result": result}})
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

func (s *seriesAndQueries) sent() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.queries)
}

const labelValuesRule = `rules:
- seriesQuery: '{__name__="vhost_requests_total",namespace!="",pod!=""}'
  resources: {overrides: {namespace: {resource: namespace}, pod: {resource: pod}}}
  name: {matches: "^vhost_requests_total$", as: "vhost_requests_recent"}
  metricsQuery: sum by (<<.GroupBy>>) (increase(<<.Series>>{pod=~"<<index .LabelValuesByName "pod">>",namespace="<<index .LabelValuesByName "namespace">>"}[5m]))
`

var vhostInfo = provider.CustomMetricInfo{GroupResource: schema.GroupResource{Resource: "pods"}, Namespaced: true, Metric: "vhost_requests_recent"}

// podsNamed answers each pod named in the query's pod=~"..." matcher with the value 1.
func podsNamed(q string) ([]sample, int, string, string) {
	m := regexp.MustCompile(`pod=~"([^"]*)"`).FindStringSubmatch(q)
	if m == nil {
		return nil, 400, "bad_data", "no pod matcher"
	}
	var out []sample
	for _, n := range strings.Split(m[1], "|") {
		out = append(out, sample{labels: map[string]string{"pod": strings.ReplaceAll(n, `\\`, "")}, value: 1})
	}
	return out, 0, "", ""
}

// TestLabelValuesByNameMajority: the usual HPA request selects most or all of a namespace's pods;
// a rule reading .LabelValuesByName still gets every selected name (it failed with 400 "the
// objects must be named" before), split into several queries past the regex cap, or 503 past the
// number of queries allowed.
func TestLabelValuesByNameMajority(t *testing.T) {
	pods := map[string]labels.Set{}
	for i := range 40 {
		pods[fmt.Sprintf("proxy-%02d", i)] = labels.Set{"app": "proxy"}
	}
	pods["other-0"] = labels.Set{"app": "other"}
	objects := fakeObjects{"edge": pods}
	tests := []struct {
		name     string
		maxRegex int
		selector string
		objects  int // objects in the answer
		queries  int // queries sent
		code     int32
	}{
		{"every pod of the namespace, one query", 0, "", 41, 1, 0},
		{"most pods (app=proxy), one query", 0, "app=proxy", 40, 1, 0},
		{"most pods past the regex cap: several queries, merged", 90, "app=proxy", 40, 4, 0}, // 10 names of 9 bytes each
		{"more queries than allowed: 503 with the reason", 9, "app=proxy", 0, 0, 503},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			prom := &seriesAndQueries{series: map[string][]string{"vhost_requests_total": {"namespace", "pod"}}, answer: podsNamed}
			p := paProvider(t, labelValuesRule, prom.start(t), objects, tc.maxRegex)
			list, err := p.GetMetricBySelector(context.Background(), "edge", sel(t, tc.selector), vhostInfo, labels.Everything())
			if tc.code != 0 {
				var se *apierrors.StatusError
				if !errors.As(err, &se) || se.ErrStatus.Code != tc.code || !strings.Contains(se.ErrStatus.Message, ".LabelValuesByName") {
					t.Fatalf("got %v, want %d naming .LabelValuesByName", err, tc.code)
				}
				if n := len(prom.sent()); n != 0 {
					t.Errorf("%d queries sent", n)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(list.Items) != tc.objects {
				t.Errorf("%d objects, want %d", len(list.Items), tc.objects)
			}
			if !slices.IsSortedFunc(list.Items, func(a, b custom_metrics.MetricValue) int {
				return strings.Compare(a.DescribedObject.Name, b.DescribedObject.Name)
			}) {
				t.Error("items not sorted by name")
			}
			sent := prom.sent()
			if len(sent) != tc.queries {
				t.Errorf("%d queries, want %d: %q", len(sent), tc.queries, sent)
			}
			named := 0
			for _, q := range sent {
				named += strings.Count(q, "proxy-") + strings.Count(q, "other-")
				if tc.maxRegex > 0 {
					m := regexp.MustCompile(`pod=~"([^"]*)"`).FindStringSubmatch(q)
					if len(m[1]) > tc.maxRegex {
						t.Errorf("matcher of %d bytes past the cap %d: %s", len(m[1]), tc.maxRegex, q)
					}
				}
				if !strings.Contains(q, `namespace="edge"`) {
					t.Errorf("query lacks the namespace: %s", q)
				}
			}
			if named != tc.objects {
				t.Errorf("%d names in the queries, want each of the %d selected once", named, tc.objects)
			}
		})
	}
}

func TestLabelValuesByNameWithoutCluster(t *testing.T) {
	prom := &seriesAndQueries{series: map[string][]string{"vhost_requests_total": {"namespace", "pod"}}, answer: podsNamed}
	p := paProvider(t, labelValuesRule, prom.start(t), nil, 0)
	_, err := p.GetMetricBySelector(context.Background(), "edge", labels.Everything(), vhostInfo, labels.Everything())
	if code := codeOf(err); code != 503 || !strings.Contains(err.Error(), "--lister-kubeconfig") {
		t.Errorf("every pod without a cluster: %d %v, want 503 saying why", code, err)
	}
	v, err := p.GetMetricByName(context.Background(), types.NamespacedName{Namespace: "edge", Name: "proxy-0"}, vhostInfo, labels.Everything())
	if err != nil || v.DescribedObject.Name != "proxy-0" {
		t.Errorf("one named pod: %v %v", v, err)
	}
}

const lenientConfig = `rules:
- seriesQuery: '{__name__="http_requests_total",namespace!="",pod!=""}'
  resources: {overrides: {namespace: {resource: namespace}, pod: {resource: pod}}}
  name: {matches: "^(.*)_total$", as: "${1}_per_second"}
  metricsQuery: sum(rate(<<.Series>>{<<.LabelMatchers>>}[2m])) by (<<.GroupBy>>)
- seriesQuery: '{__name__="queue_depth",namespace!="",pod!=""}'
  resources: {overrides: {namespace: {resource: namespace}, pod: {resource: pod}}}
- seriesQuery: '{__name__="latency_seconds",namespace!="",pod!=""}'
  resources: {overrides: {namespace: {resource: namespace}, pod: {resource: pod}}}
  metricsQuery: 'SELECT p99(<<.Series>>) WHERE <<.LabelMatchers>>'
- seriesQuery: '{__name__="orders_total",namespace!="",pod!=""}'
  resources: {overrides: {namespace: {resource: namespace}, pod: {resource: pod}}}
  metricsQuery: sum(<<.Series>>{<<.LabelMatchers>>} * on(namespace) kube_pod_info) by (<<.GroupBy>>)
externalRules:
- seriesQuery: '{__name__="queue_messages_ready",namespace!=""}'
  resources: {overrides: {namespace: {resource: namespace}}}
`

// TestUnusableRulesOverTheProvider: the usable rule serves; the unusable ones answer with
// prometheus-adapter's status class and say why; a query Prometheus rejects at execution (422) is
// the rule's fault, 500 naming the rule and Prometheus's message (it was 503 before).
func TestUnusableRulesOverTheProvider(t *testing.T) {
	prom := &seriesAndQueries{
		series: map[string][]string{
			"http_requests_total": {"namespace", "pod"}, "queue_depth": {"namespace", "pod"},
			"latency_seconds": {"namespace", "pod"}, "orders_total": {"namespace", "pod"}, "queue_messages_ready": {"namespace", "queue"},
		},
		answer: func(q string) ([]sample, int, string, string) {
			if strings.Contains(q, "on(namespace)") {
				return nil, 422, "execution", "found duplicate series for the match group {namespace=\"shop\"} on the right hand-side of the operation: many-to-many matching not allowed: matching labels must be unique on one side"
			}
			return []sample{{labels: map[string]string{"pod": "web-0"}, value: 2}}, 0, "", ""
		},
	}
	p := paProvider(t, lenientConfig, prom.start(t), nil, 0)
	get := func(metric string) error {
		_, err := p.GetMetricByName(context.Background(), types.NamespacedName{Namespace: "shop", Name: "web-0"},
			provider.CustomMetricInfo{GroupResource: schema.GroupResource{Resource: "pods"}, Namespaced: true, Metric: metric}, labels.Everything())
		return err
	}
	if err := get("http_requests_per_second"); err != nil {
		t.Errorf("usable rule: %v", err)
	}
	_, extErr := p.GetExternalMetric(context.Background(), "shop", labels.Everything(), provider.ExternalMetricInfo{Metric: "queue_messages_ready"})
	for _, tc := range []struct {
		name string
		err  error
		code int
		want []string
	}{
		{"no metricsQuery", get("queue_depth"), 404, []string{`"queue_depth"`, "rules[1]", "metricsQuery: required"}},
		{"renders text that is not PromQL", get("latency_seconds"), 500, []string{`"latency_seconds"`, "rules[2]", "renders invalid PromQL"}},
		{"Prometheus rejects at execution (422)", get("orders_total"), 500, []string{`"orders_total"`, "rule 3", "many-to-many matching not allowed"}},
		{"external rule without metricsQuery", extErr, 500, []string{`"queue_messages_ready"`, "externalRules[0]", "metricsQuery: required"}},
	} {
		if code := codeOf(tc.err); code != tc.code {
			t.Errorf("%s: %d %v, want %d", tc.name, code, tc.err, tc.code)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(tc.err.Error(), w) {
				t.Errorf("%s: %q lacks %q", tc.name, tc.err, w)
			}
		}
	}
	for _, q := range prom.sent() {
		if strings.Contains(q, "SELECT") {
			t.Errorf("text that is not PromQL was sent to Prometheus: %s", q)
		}
	}
	var listed []string
	for _, m := range p.ListAllMetrics() {
		if m.GroupResource.Resource == "pods" {
			listed = append(listed, m.Metric)
		}
	}
	slices.Sort(listed)
	if got := strings.Join(listed, " "); got != "http_requests_per_second latency_seconds orders_total queue_depth" {
		t.Errorf("listed %s: every rule whose discovery works lists its metrics, as in prometheus-adapter", got)
	}
}

// TestPrometheusRejectionStatuses: bad_data and execution are the rule's fault (500); timeouts and
// unavailability are Prometheus's (503).
func TestPrometheusRejectionStatuses(t *testing.T) {
	for _, tc := range []struct {
		code    int
		errType string
		want    int
	}{
		{400, "bad_data", 500},
		{422, "execution", 500},
		{422, "422", 500}, // VictoriaMetrics puts the status code in errorType
		{503, "timeout", 503},
		{503, "unavailable", 503},
		{500, "internal", 503},
	} {
		prom := &seriesAndQueries{
			series: map[string][]string{"http_requests_total": {"namespace", "pod"}},
			answer: func(string) ([]sample, int, string, string) { return nil, tc.code, tc.errType, "it failed" },
		}
		p := paProvider(t, lenientConfig, prom.start(t), nil, 0)
		_, err := p.GetMetricByName(context.Background(), types.NamespacedName{Namespace: "shop", Name: "web-0"},
			provider.CustomMetricInfo{GroupResource: schema.GroupResource{Resource: "pods"}, Namespaced: true, Metric: "http_requests_per_second"}, labels.Everything())
		if got := codeOf(err); got != tc.want {
			t.Errorf("Prometheus %d %s: %d %v, want %d", tc.code, tc.errType, got, err, tc.want)
		}
	}
}
