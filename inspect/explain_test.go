package inspect

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/custom-metrics-apiserver/pkg/provider"

	"github.com/promql-adapter/promql-adapter/adapter"
	"github.com/promql-adapter/promql-adapter/coalesce"
	"github.com/promql-adapter/promql-adapter/internal/testutil"
	"github.com/promql-adapter/promql-adapter/naming"
	"github.com/promql-adapter/promql-adapter/server"
)

var update = flag.Bool("update", false, "rewrite testdata/golden/inspect_*.golden")

// fakeProm is an httptest Prometheus: the label values and series APIs answer from fixed lists,
// and instant queries are recorded and answered with an empty vector.
type fakeProm struct {
	names  []string            // /api/v1/label/__name__/values
	series []map[string]string // /api/v1/series
	mu     sync.Mutex
	last   string // the last instant query
}

func (f *fakeProm) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	var data any
	switch {
	case strings.HasSuffix(r.URL.Path, "/api/v1/label/__name__/values"):
		data = f.names
	case strings.HasSuffix(r.URL.Path, "/api/v1/series"):
		data = f.series
	case strings.HasSuffix(r.URL.Path, "/api/v1/labels"):
		// The label names of the listed series whose name match[] selects (__name__="x").
		names := []string{}
		for _, s := range f.series {
			if !strings.Contains(r.Form.Get("match[]"), `__name__="`+s["__name__"]+`"`) {
				continue
			}
			for k := range s {
				if !slices.Contains(names, k) {
					names = append(names, k)
				}
			}
		}
		slices.Sort(names)
		data = names
	case strings.HasSuffix(r.URL.Path, "/api/v1/query"):
		f.mu.Lock()
		f.last = r.Form.Get("query")
		f.mu.Unlock()
		data = map[string]any{"resultType": "vector", "result": []any{}}
	default:
		http.NotFound(w, r)
		return
	}
	_ = json.NewEncoder(w).Encode(map[string]any{"status": "success", "data": data})
}

func (f *fakeProm) lastQuery() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.last
}

type explainCase struct {
	name    string
	path    string
	query   string // the PromQL wanted; empty when an error is wanted
	wantErr string // a substring of the error
}

func TestExplain(t *testing.T) {
	suites := []struct {
		name  string
		rules string
		prom  *fakeProm
		cases []explainCase
	}{
		{
			name:  "examples",
			rules: "../testdata/rules/examples.yaml",
			prom:  &fakeProm{names: []string{"myapp_orders_total", "myapp_refunds_total"}},
			cases: []explainCase{
				{
					name:  "pods by label selector, with a metric label selector",
					path:  "/apis/custom.metrics.k8s.io/v1beta2/namespaces/shop/pods/*/elu_utilization?labelSelector=app=web&metricLabelSelector=code=200",
					query: `avg by (namespace, pod) (avg_over_time(elu_utilization{code="200",namespace="shop"}[1m]))`,
				},
				{
					name:  "one pod",
					path:  "/apis/custom.metrics.k8s.io/v1beta2/namespaces/shop/pods/web-1/http_requests_per_second?metricLabelSelector=method+in+(GET,HEAD)",
					query: `sum by (namespace, pod) (rate(http_requests_total{method=~"GET|HEAD",namespace="shop",pod="web-1"}[2m]))`,
				},
				{
					name:  "a service, v1beta1",
					path:  "/apis/custom.metrics.k8s.io/v1beta1/namespaces/shop/services/frontend/service_requests_per_second",
					query: `sum by (namespace, service) (rate(http_requests_total{namespace="shop",service="frontend"}[2m]))`,
				},
				{
					name:  "external with a label selector",
					path:  "/apis/external.metrics.k8s.io/v1beta1/namespaces/shop/queue_messages_ready?labelSelector=queue=orders",
					query: `sum by (queue) (queue_messages_ready{namespace="shop",queue="orders"})`,
				},
				{
					name:  "discovered metric",
					path:  "/apis/custom.metrics.k8s.io/v1beta2/namespaces/shop/pods/*/myapp_refunds_per_second",
					query: `sum by (namespace, pod) (rate(myapp_refunds_total{namespace="shop"}[2m]))`,
				},
				{
					name:    "misspelt metric names the closest",
					path:    "/apis/custom.metrics.k8s.io/v1beta2/namespaces/shop/pods/*/elu_utilisation",
					wantErr: `metric "elu_utilisation" is not served for pods; closest served: elu_utilization`,
				},
				{
					name:    "metric served for another resource says where",
					path:    "/apis/custom.metrics.k8s.io/v1beta2/nodes/*/elu_utilization",
					wantErr: "it is served for pods",
				},
				{
					name:    "unknown external metric",
					path:    "/apis/external.metrics.k8s.io/v1beta1/namespaces/shop/queue_ready",
					wantErr: "closest served: queue_messages_ready",
				},
				{
					name:    "unsupported selector operator",
					path:    "/apis/custom.metrics.k8s.io/v1beta2/namespaces/shop/pods/*/elu_utilization?metricLabelSelector=code>3",
					wantErr: `operator "gt"`,
				},
				{
					name:    "not a metrics API path",
					path:    "/api/v1/namespaces/shop/pods",
					wantErr: "does not start with /apis/",
				},
				{
					name:    "unserved version",
					path:    "/apis/custom.metrics.k8s.io/v1/namespaces/shop/pods/*/elu_utilization",
					wantErr: "served in versions v1beta1, v1beta2, not v1",
				},
				{
					name:    "too short",
					path:    "/apis/custom.metrics.k8s.io/v1beta2/namespaces/shop/pods/*",
					wantErr: "not a custom metrics request",
				},
				{
					name:    "bad selector",
					path:    "/apis/external.metrics.k8s.io/v1beta1/namespaces/shop/queue_messages_ready?labelSelector=a=(",
					wantErr: "labelSelector",
				},
			},
		},
		{
			name:  "prometheus_adapter",
			rules: "../testdata/rules/prometheus-adapter.yaml",
			prom: &fakeProm{series: []map[string]string{
				{"__name__": "elu_utilization", "namespace": "shop", "pod": "web-1"},
				{"__name__": "elu_utilization", "namespace": "shop", "pod": "web-2"},
				{"__name__": "queue_messages_ready", "namespace": "shop", "queue": "orders"},
			}},
			cases: []explainCase{
				{
					name:  "pods by label selector",
					path:  "/apis/custom.metrics.k8s.io/v1beta2/namespaces/shop/pods/*/elu_utilization_pa?labelSelector=app=web",
					query: `avg(avg_over_time(elu_utilization{namespace="shop",pod!=""}[5s])) by (pod)`,
				},
				{
					name:  "one pod, v1beta1",
					path:  "/apis/custom.metrics.k8s.io/v1beta1/namespaces/shop/pods/web-1/elu_utilization_pa",
					query: `avg(avg_over_time(elu_utilization{namespace="shop",pod="web-1"}[5s])) by (pod)`,
				},
				{
					name:  "the namespace itself",
					path:  "/apis/custom.metrics.k8s.io/v1beta2/namespaces/shop/metrics/elu_utilization_pa",
					query: `avg(avg_over_time(elu_utilization{namespace="shop"}[5s])) by (namespace)`,
				},
				{
					name:  "external with a label selector",
					path:  "/apis/external.metrics.k8s.io/v1beta1/namespaces/shop/queue_messages_ready?labelSelector=queue=orders",
					query: `sum(queue_messages_ready{queue="orders",namespace="shop"}) by (queue)`,
				},
				{
					name:    "the series name is not the metric name",
					path:    "/apis/custom.metrics.k8s.io/v1beta2/namespaces/shop/pods/*/elu_utilization",
					wantErr: "closest served: elu_utilization_pa",
				},
			},
		},
		{
			name:  "scopes",
			rules: "testdata/rules/scopes.yaml",
			prom:  &fakeProm{},
			cases: []explainCase{
				{
					name:  "the namespace itself",
					path:  "/apis/custom.metrics.k8s.io/v1beta2/namespaces/shop/metrics/namespace_elu_max",
					query: `max by (namespace) (elu_utilization{namespace="shop"})`,
				},
				{
					name:  "one node",
					path:  "/apis/custom.metrics.k8s.io/v1beta2/nodes/node-a/node_load",
					query: `max by (instance_node) (node_load_ratio{instance_node="node-a"})`,
				},
				{
					name:  "every node",
					path:  "/apis/custom.metrics.k8s.io/v1beta2/nodes/*/node_load",
					query: `max by (instance_node) (node_load_ratio)`,
				},
				{
					name:  "deployments without the group",
					path:  "/apis/custom.metrics.k8s.io/v1beta2/namespaces/shop/deployments/web/deployment_queue_depth",
					query: `sum by (namespace, deployment) (queue_messages_ready{deployment="web",namespace="shop"})`,
				},
				{
					name:  "deployments.apps",
					path:  "/apis/custom.metrics.k8s.io/v1beta1/namespaces/shop/deployments.apps/*/deployment_queue_depth",
					query: `sum by (namespace, deployment) (queue_messages_ready{namespace="shop"})`,
				},
				{
					name:  "one pod of a coalesced rule: the namespace-wide query, shared",
					path:  "/apis/custom.metrics.k8s.io/v1beta2/namespaces/shop/pods/web-1/elu_shared?metricLabelSelector=code=200",
					query: `avg by (namespace, pod) (elu_utilization{code="200",namespace="shop"})`,
				},
				{
					name:  "one pod of a rule that is never coalesced",
					path:  "/apis/custom.metrics.k8s.io/v1beta2/namespaces/shop/pods/web-1/elu_fresh",
					query: `max by (namespace, pod) (elu_utilization{namespace="shop",pod="web-1"})`,
				},
				{
					name:  "a coalesced external metric",
					path:  "/apis/external.metrics.k8s.io/v1beta1/namespaces/shop/queue_shared?labelSelector=queue=orders",
					query: `sum by (queue) (queue_messages_ready{namespace="shop",queue="orders"})`,
				},
				{
					name:    "a node asked for under a namespace",
					path:    "/apis/custom.metrics.k8s.io/v1beta2/namespaces/shop/nodes/node-a/node_load",
					wantErr: "cluster-scoped; ask without a namespace",
				},
			},
		},
	}
	for _, suite := range suites {
		t.Run(suite.name, func(t *testing.T) {
			ctx := context.Background()
			rules, _, err := server.LoadRules(suite.rules, naming.BuiltinResources())
			if err != nil {
				t.Fatal(err)
			}
			srv := httptest.NewServer(suite.prom)
			t.Cleanup(srv.Close)
			client, err := adapter.NewPromClient(adapter.PrometheusConfig{URL: srv.URL, Timeout: 5 * time.Second}, nil)
			if err != nil {
				t.Fatal(err)
			}
			p := adapter.NewProvider(adapter.Options{Querier: client, Coalesce: coalesce.New[[]adapter.Sample](100, naming.MaxFreshness)}, rules)
			if err := p.Discover(ctx, 10*time.Minute, 10*time.Minute); err != nil {
				t.Fatal(err)
			}
			listed, extListed := p.ListAllMetrics(), p.ListAllExternalMetrics()

			var golden strings.Builder
			for _, tc := range suite.cases {
				fmt.Fprintf(&golden, "# %s\n", tc.name)
				x, err := Explain(ctx, rules, tc.path, p)
				if tc.wantErr != "" {
					if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
						t.Errorf("%s: error %v, want one containing %q", tc.name, err, tc.wantErr)
					}
					if err != nil {
						fmt.Fprintf(&golden, "$ explain %s\nerror: %v\n\n", tc.path, err)
					}
					continue
				}
				if err != nil {
					t.Errorf("%s: %v", tc.name, err)
					continue
				}
				if x.Query != tc.query {
					t.Errorf("%s: query\n %s\nwant\n %s", tc.name, x.Query, tc.query)
				}
				// The query shown is the query the provider sends for the same request.
				if sent := providerQuery(t, p, suite.prom, tc.path); sent != x.Query {
					t.Errorf("%s: the provider sends\n %s\nExplain shows\n %s", tc.name, sent, x.Query)
				}
				fmt.Fprintf(&golden, "%s\n", x)
			}
			// Explain leaves the provider serving what it served.
			if !reflect.DeepEqual(listed, p.ListAllMetrics()) || !reflect.DeepEqual(extListed, p.ListAllExternalMetrics()) {
				t.Errorf("the provider's listing changed: %v %v, then %v %v", listed, extListed, p.ListAllMetrics(), p.ListAllExternalMetrics())
			}
			testutil.Golden(t, filepath.Join("testdata", "golden", "inspect_explain_"+suite.name+".golden"), golden.String(), *update)
		})
	}
}

// providerQuery makes the provider answer the request (without its object label selector,
// which needs a cluster) and returns the PromQL it sent.
func providerQuery(t *testing.T, p *adapter.Provider, f *fakeProm, path string) string {
	t.Helper()
	req, err := parseRequest(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	metricSel := req.metricSel
	if metricSel == nil {
		metricSel = labels.Everything()
	}
	f.mu.Lock()
	f.last = ""
	f.mu.Unlock()
	info := provider.CustomMetricInfo{GroupResource: req.resource, Namespaced: req.namespace != "", Metric: req.metric}
	switch {
	case req.external:
		_, err = p.GetExternalMetric(ctx, req.namespace, metricSel, provider.ExternalMetricInfo{Metric: req.metric})
	case req.name == "*":
		_, err = p.GetMetricBySelector(ctx, req.namespace, labels.Everything(), info, metricSel)
	default:
		_, err = p.GetMetricByName(ctx, types.NamespacedName{Namespace: req.namespace, Name: req.name}, info, metricSel)
	}
	if err != nil && !strings.Contains(err.Error(), "has no sample") {
		t.Errorf("provider: %v", err)
	}
	return f.lastQuery()
}

func TestParseRequest(t *testing.T) {
	tests := []struct {
		path      string
		namespace string
		resource  string
		name      string
		metric    string
		external  bool
	}{
		{"/apis/custom.metrics.k8s.io/v1beta2/namespaces/x/pods/*/m?labelSelector=app=web&metricLabelSelector=code=200", "x", "pods", "*", "m", false},
		{"/apis/custom.metrics.k8s.io/v1beta1/namespaces/x/services/s/m", "x", "services", "s", "m", false},
		{"/apis/custom.metrics.k8s.io/v1beta2/namespaces/x/metrics/m", "", "namespaces", "x", "m", false},
		{"/apis/custom.metrics.k8s.io/v1beta2/nodes/n/m", "", "nodes", "n", "m", false},
		{"https://127.0.0.1:6443/apis/custom.metrics.k8s.io/v1beta2/namespaces/x/deployments.apps/d/m", "x", "deployments.apps", "d", "m", false},
		{"/apis/external.metrics.k8s.io/v1beta1/namespaces/x/m?labelSelector=queue=q", "x", "", "", "m", true},
	}
	for _, tc := range tests {
		r, err := parseRequest(tc.path)
		if err != nil {
			t.Errorf("%s: %v", tc.path, err)
			continue
		}
		got := []any{r.namespace, r.resource.String(), r.name, r.metric, r.external}
		want := []any{tc.namespace, tc.resource, tc.name, tc.metric, tc.external}
		if tc.external {
			got[1] = ""
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: got %v, want %v", tc.path, got, want)
		}
	}
	for _, bad := range []string{
		"",
		"/apis/custom.metrics.k8s.io",
		"/apis/custom.metrics.k8s.io/v1beta2/namespaces/x/pods//m",
		"/apis/custom.metrics.k8s.io/v1beta2/namespaces/x/m",
		"/apis/custom.metrics.k8s.io/v1beta2/a/b/c/d/e/f",
		"/apis/external.metrics.k8s.io/v1beta2/namespaces/x/m",
		"/apis/external.metrics.k8s.io/v1beta1/m",
		"/apis/apps/v1/namespaces/x/deployments",
		"/apis/custom.metrics.k8s.io/v1beta2/namespaces/x/pods/*/m?metricLabelSelector=a%20in%20(",
	} {
		if _, err := parseRequest(bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}
