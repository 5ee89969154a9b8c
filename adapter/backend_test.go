package adapter

import (
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/custom-metrics-apiserver/pkg/provider"

	"github.com/promql-adapter/promql-adapter/coalesce"
	"github.com/promql-adapter/promql-adapter/naming"
)

// backendRules reads series of the same names from the default backend and from backend b.
const backendRules = `
backends: [{name: b, url: "http://b.invalid:9090"}]
metrics:
- {name: load, resource: pods, query: "sum by (namespace, pod) (load)"}
- {name: load_b, resource: pods, backend: b, query: "sum by (namespace, pod) (load)"}
- {name: svc_load_b, resource: services, backend: b, query: "sum by (namespace, service) (load)"}
- {name: queue, resource: external, query: "sum by (queue) (load)"}
- {name: queue_b, resource: external, backend: b, query: "sum by (queue) (load)"}
- resource: pods
  backend: b
  query: sum by (namespace, pod) (__series__)
  discover: {series: '{__name__=~"app_.+"}'}
`

// backendMap is a Backends over fixed Queriers.
type backendMap map[string]Querier

func (b backendMap) Querier(name string) (Querier, bool) {
	q, ok := b[name]
	return q, ok
}

// valueProm is a fake Prometheus whose every sample has value v, so an answer tells which one it came from.
func valueProm(t *testing.T, v float64, names ...string) *fakeProm {
	f := newFakeProm(t, func(q string) ([]sample, error) {
		switch {
		case strings.Contains(q, "service"):
			return []sample{{labels: map[string]string{"namespace": "shop", "service": "web"}, value: v}}, nil
		case strings.Contains(q, "pod"):
			return []sample{{labels: map[string]string{"namespace": "shop", "pod": "web-1"}, value: v}}, nil
		}
		return []sample{{labels: map[string]string{"queue": "orders"}, value: v}}, nil
	})
	f.names = names
	return f
}

func backendProvider(t *testing.T, def, b *fakeProm, coalescing bool) *Provider {
	t.Helper()
	cfg, err := naming.ParseConfig([]byte(backendRules))
	if err != nil {
		t.Fatal(err)
	}
	rules, err := naming.Compile(cfg, naming.BuiltinResources())
	if err != nil {
		t.Fatal(err)
	}
	m := NewMetrics(prometheus.NewRegistry())
	client := func(f *fakeProm) Querier {
		q, err := NewPromClient(PrometheusConfig{URL: f.srv.URL, Timeout: 5 * time.Second}, m)
		if err != nil {
			t.Fatal(err)
		}
		return q
	}
	opts := Options{Querier: client(def), Metrics: m}
	if b != nil {
		opts.Backends = backendMap{"b": client(b)}
	}
	if coalescing {
		opts.Coalesce = coalesce.New[[]Sample](100, naming.MaxFreshness)
		opts.Freshness = time.Minute
	}
	return NewProvider(opts, rules)
}

// TestBackendRouting: each metric's queries, discovery included, go to its rule's backend: pods,
// object, external and discovered metrics of backend b read b, the others the default backend.
func TestBackendRouting(t *testing.T) {
	def, b := valueProm(t, 1, "app_default"), valueProm(t, 2, "app_b")
	p := backendProvider(t, def, b, false)
	if err := p.Discover(ctxBg, time.Hour, time.Hour); err != nil {
		t.Fatal(err)
	}
	pods := func(metric string) provider.CustomMetricInfo {
		return provider.CustomMetricInfo{GroupResource: schema.GroupResource{Resource: "pods"}, Namespaced: true, Metric: metric}
	}
	cases := []struct {
		name string
		get  func() (float64, error)
		want float64
	}{
		{"pods on default", func() (float64, error) {
			l, err := p.GetMetricBySelector(ctxBg, "shop", nameless, pods("load"), nameless)
			if err != nil || len(l.Items) != 1 {
				return 0, errors.Join(err, errors.New("want one item"))
			}
			return l.Items[0].Value.AsApproximateFloat64(), nil
		}, 1},
		{"pods on b", func() (float64, error) {
			l, err := p.GetMetricBySelector(ctxBg, "shop", nameless, pods("load_b"), nameless)
			if err != nil || len(l.Items) != 1 {
				return 0, errors.Join(err, errors.New("want one item"))
			}
			return l.Items[0].Value.AsApproximateFloat64(), nil
		}, 2},
		{"object on b", func() (float64, error) {
			info := provider.CustomMetricInfo{GroupResource: schema.GroupResource{Resource: "services"}, Namespaced: true, Metric: "svc_load_b"}
			v, err := p.GetMetricByName(ctxBg, types.NamespacedName{Namespace: "shop", Name: "web"}, info, nameless)
			if err != nil {
				return 0, err
			}
			return v.Value.AsApproximateFloat64(), nil
		}, 2},
		{"external on default", func() (float64, error) {
			l, err := p.GetExternalMetric(ctxBg, "shop", nameless, provider.ExternalMetricInfo{Metric: "queue"})
			if err != nil || len(l.Items) != 1 {
				return 0, errors.Join(err, errors.New("want one item"))
			}
			return l.Items[0].Value.AsApproximateFloat64(), nil
		}, 1},
		{"external on b", func() (float64, error) {
			l, err := p.GetExternalMetric(ctxBg, "shop", nameless, provider.ExternalMetricInfo{Metric: "queue_b"})
			if err != nil || len(l.Items) != 1 {
				return 0, errors.Join(err, errors.New("want one item"))
			}
			return l.Items[0].Value.AsApproximateFloat64(), nil
		}, 2},
		{"discovered on b", func() (float64, error) {
			l, err := p.GetMetricBySelector(ctxBg, "shop", nameless, pods("app_b"), nameless)
			if err != nil || len(l.Items) != 1 {
				return 0, errors.Join(err, errors.New("want one item"))
			}
			return l.Items[0].Value.AsApproximateFloat64(), nil
		}, 2},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.get()
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("value %v, want %v (1: the default backend, 2: backend b)", got, tc.want)
			}
		})
	}
	// Discovery listed b's names, not the default backend's.
	if _, err := p.GetMetricBySelector(ctxBg, "shop", nameless, pods("app_default"), nameless); !apierrors.IsNotFound(err) {
		t.Errorf("app_default, listed by the default backend only: %v, want 404", err)
	}
	for _, q := range b.queries {
		if strings.Contains(q, "app_default") {
			t.Errorf("backend b ran %q", q)
		}
	}
}

// TestCoalescingKeySeparatesBackends: the same query text on two backends never shares an answer.
func TestCoalescingKeySeparatesBackends(t *testing.T) {
	def, b := valueProm(t, 1), valueProm(t, 2)
	p := backendProvider(t, def, b, true)
	info := func(metric string) provider.CustomMetricInfo {
		return provider.CustomMetricInfo{GroupResource: schema.GroupResource{Resource: "pods"}, Namespaced: true, Metric: metric}
	}
	for i, tc := range []struct {
		metric string
		want   float64
	}{{"load", 1}, {"load_b", 2}, {"load", 1}, {"load_b", 2}} {
		l, err := p.GetMetricBySelector(ctxBg, "shop", nameless, info(tc.metric), nameless)
		if err != nil || len(l.Items) != 1 {
			t.Fatalf("request %d (%s): %v %v", i, tc.metric, l, err)
		}
		if got := l.Items[0].Value.AsApproximateFloat64(); got != tc.want {
			t.Errorf("request %d (%s): value %v, want %v", i, tc.metric, got, tc.want)
		}
	}
	if def.calls.Load() != 1 || b.calls.Load() != 1 {
		t.Errorf("queries: default %d, b %d; want one each (the second request per backend shares)", def.calls.Load(), b.calls.Load())
	}
	if def.lastQuery() != b.lastQuery() {
		t.Errorf("the two backends ran different queries %q and %q; the test needs the same text", def.lastQuery(), b.lastQuery())
	}
}

// TestBackendFailuresNameTheBackend: a metric whose backend has no client gets a 503 naming it;
// a failed query on a declared backend names the backend, one on the default does not.
func TestBackendFailuresNameTheBackend(t *testing.T) {
	def := valueProm(t, 1)
	p := backendProvider(t, def, nil, false)
	_, err := p.GetExternalMetric(ctxBg, "shop", nameless, provider.ExternalMetricInfo{Metric: "queue_b"})
	if code := codeOf(err); code != http.StatusServiceUnavailable || !strings.Contains(err.Error(), `backend "b"`) {
		t.Errorf("missing backend: %d %v, want 503 naming backend \"b\"", code, err)
	}
	if err := p.Discover(ctxBg, time.Hour, time.Hour); err == nil || !strings.Contains(err.Error(), "backend b") {
		t.Errorf("discovery on a missing backend: %v, want an error naming it", err)
	}

	failing := newFakeProm(t, func(string) ([]sample, error) { return nil, errors.New("boom") })
	p = backendProvider(t, failing, failing, false)
	_, err = p.GetExternalMetric(ctxBg, "shop", nameless, provider.ExternalMetricInfo{Metric: "queue_b"})
	if err == nil || !strings.Contains(err.Error(), `"queue_b" (rule 4) (backend b)`) {
		t.Errorf("failed query on b: %v, want it to name backend b", err)
	}
	_, err = p.GetExternalMetric(ctxBg, "shop", nameless, provider.ExternalMetricInfo{Metric: "queue"})
	if err == nil || strings.Contains(err.Error(), "backend") {
		t.Errorf("failed query on the default backend: %v, want no backend named", err)
	}
}
