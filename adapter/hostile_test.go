package adapter

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/selection"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/custom-metrics-apiserver/pkg/provider"

	"github.com/promql-adapter/promql-adapter/naming"
)

// recordingQuerier answers every query with no samples and records what it was asked.
type recordingQuerier struct {
	mu      sync.Mutex
	queries []string
}

func (q *recordingQuerier) Query(_ context.Context, query string) (model.Vector, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.queries = append(q.queries, query)
	return nil, nil
}

func (q *recordingQuerier) SeriesNames(context.Context, string, time.Time) ([]string, error) {
	return nil, nil
}

func (q *recordingQuerier) Series(context.Context, string, time.Time) ([]naming.SeriesLabels, error) {
	return nil, nil
}

func (q *recordingQuerier) asked() []string {
	q.mu.Lock()
	defer q.mu.Unlock()
	return append([]string(nil), q.queries...)
}

func compileNative(t testing.TB, yaml string) *naming.Rules {
	t.Helper()
	cfg, err := naming.ParseConfig([]byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	rules, err := naming.Compile(cfg, naming.BuiltinResources())
	if err != nil {
		t.Fatal(err)
	}
	return rules
}

func manyValues(n int) labels.Selector {
	vals := make([]string, n)
	for i := range vals {
		vals[i] = strings.Repeat("v", 60) + string(rune('a'+i%26)) + string(rune('a'+i/26%26))
	}
	req, err := labels.NewRequirement("code", selection.In, vals)
	if err != nil {
		panic(err)
	}
	return labels.NewSelector().Add(*req)
}

// TestInvalidRequestsRefusedBeforeQuerying checks that names Kubernetes could not hold, __name__
// selectors and oversized selector value lists get 400 and no query.
func TestInvalidRequestsRefusedBeforeQuerying(t *testing.T) {
	nameSel := labels.SelectorFromValidatedSet(labels.Set{"__name__": "up"}) // labels.Parse refuses the key; defence in depth
	tests := []struct {
		about string
		call  func(p *Provider) error
		want  string // in the 400's message; "" means accepted
	}{
		{"backtick in a pod name", func(p *Provider) error {
			_, err := p.GetMetricByName(context.Background(), types.NamespacedName{Namespace: "shop", Name: "a`) or vector(1) or up{x=`"}, podsInfo, labels.Everything())
			return err
		}, "not a valid name for pods"},
		{"quote in a namespace", func(p *Provider) error {
			_, err := p.GetMetricBySelector(context.Background(), `shop"}`, labels.Everything(), podsInfo, labels.Everything())
			return err
		}, "not a valid Kubernetes namespace name"},
		{"upper case namespace", func(p *Provider) error {
			_, err := p.GetMetricByName(context.Background(), types.NamespacedName{Namespace: "Shop", Name: "web-1"}, podsInfo, labels.Everything())
			return err
		}, "not a valid Kubernetes namespace name"},
		{"a service name must be a DNS-1035 label", func(p *Provider) error {
			_, err := p.GetMetricByName(context.Background(), types.NamespacedName{Namespace: "shop", Name: "1web"}, servicesInfo, labels.Everything())
			return err
		}, "not a valid name for services"},
		{"a pod name may be a DNS-1123 subdomain", func(p *Provider) error {
			_, err := p.GetMetricByName(context.Background(), types.NamespacedName{Namespace: "shop", Name: "1web.a"}, podsInfo, labels.Everything())
			return err
		}, ""},
		{"64 KiB name", func(p *Provider) error {
			_, err := p.GetMetricByName(context.Background(), types.NamespacedName{Namespace: "shop", Name: strings.Repeat("a", 64<<10)}, podsInfo, labels.Everything())
			return err
		}, "not a valid name for pods"},
		{"invalid UTF-8 name", func(p *Provider) error {
			_, err := p.GetMetricByName(context.Background(), types.NamespacedName{Namespace: "shop", Name: "a\xff"}, podsInfo, labels.Everything())
			return err
		}, "not a valid name for pods"},
		{"newline in an external metric's namespace", func(p *Provider) error {
			_, err := p.GetExternalMetric(context.Background(), "shop\n", labels.Everything(), provider.ExternalMetricInfo{Metric: "queue_messages_ready"})
			return err
		}, "not a valid Kubernetes namespace name"},
		{"__name__ selector", func(p *Provider) error {
			_, err := p.GetMetricByName(context.Background(), types.NamespacedName{Namespace: "shop", Name: "web-1"}, podsInfo, nameSel)
			return err
		}, `selector key "__name__" is refused`},
		{"__name__ selector on an external metric", func(p *Provider) error {
			_, err := p.GetExternalMetric(context.Background(), "shop", nameSel, provider.ExternalMetricInfo{Metric: "queue_messages_ready"})
			return err
		}, `selector key "__name__" is refused`},
		{"oversized selector value list", func(p *Provider) error {
			_, err := p.GetExternalMetric(context.Background(), "shop", manyValues(200), provider.ExternalMetricInfo{Metric: "queue_messages_ready"})
			return err
		}, "over the 8192-byte limit"},
		{"a selector value list under the limit", func(p *Provider) error {
			_, err := p.GetExternalMetric(context.Background(), "shop", manyValues(100), provider.ExternalMetricInfo{Metric: "queue_messages_ready"})
			return err
		}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.about, func(t *testing.T) {
			q := &recordingQuerier{}
			p := NewProvider(Options{Querier: q, Metrics: NewMetrics(prometheus.NewRegistry())}, testRules(t))
			err := tc.call(p)
			if tc.want == "" {
				if len(q.asked()) == 0 {
					t.Fatalf("no query sent (err %v)", err)
				}
				return
			}
			if !apierrors.IsBadRequest(err) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want 400 with %q", err, tc.want)
			}
			if got := q.asked(); len(got) > 0 {
				t.Fatalf("queried %q", got)
			}
			if code := codeOf(err); code != http.StatusBadRequest {
				t.Fatalf("code %d", code)
			}
		})
	}
}

// TestNameListMeasuredAfterEscaping checks that the names matcher's size limit counts the escaped
// regular expression, not the raw names.
func TestNameListMeasuredAfterEscaping(t *testing.T) {
	objs := fakeObjects{"shop": {
		"a.b.c.d.e": {"app": "web"}, "a.b.c.d.f": {"app": "web"}, "a.b.c.d.g": {"app": "web"},
		"x1": {}, "x2": {}, "x3": {}, "x4": {}, "x5": {},
	}}
	q := &recordingQuerier{}
	// Raw, the three names are 3×(9+1) = 30 bytes; escaped, 3×13+2 = 41.
	p := NewProvider(Options{Querier: q, Objects: objs, Metrics: NewMetrics(prometheus.NewRegistry()), MaxRegexBytes: 30}, testRules(t))
	if _, err := p.GetMetricBySelector(context.Background(), "shop", sel(t, "app=web"), podsInfo, labels.Everything()); err != nil {
		t.Fatal(err)
	}
	got := q.asked()
	if len(got) != 1 || strings.Contains(got[0], "pod=~") {
		t.Fatalf("queries %q: want the namespace queried and the names filtered afterwards", got)
	}
}

// TestReloadRacingRelistServesNewRules replays the interleaving where a relist's rebuild read the
// old rules, a reload then installed new rules and rebuilt, and the relist stored its catalog last.
func TestReloadRacingRelistServesNewRules(t *testing.T) {
	oldRules := testRules(t)
	newRules := compileNative(t, "metrics:\n- name: only_in_new_rules\n  resource: pods\n  query: sum by (namespace, pod) (x)\n")
	p := NewProvider(Options{Querier: &recordingQuerier{}, Metrics: NewMetrics(prometheus.NewRegistry())}, oldRules)

	reached, release := make(chan struct{}), make(chan struct{})
	var first atomic.Bool
	p.beforeStore = func() {
		if first.CompareAndSwap(false, true) {
			close(reached)
			<-release
		}
	}
	relisted := make(chan struct{})
	go func() {
		p.rebuild() // the relist's rebuild: holds a catalog of the old rules
		close(relisted)
	}()
	<-reached
	p.SetRules(newRules) // the reload completes in the meantime
	close(release)
	<-relisted

	got := p.ListAllMetrics()
	if len(got) != 1 || got[0].Metric != "only_in_new_rules" || len(p.ListAllExternalMetrics()) != 0 {
		t.Fatalf("served %v after the reload; want only the new rules' metric", got)
	}
	if _, err := p.find(provider.CustomMetricInfo{GroupResource: schema.GroupResource{Resource: "pods"}, Namespaced: true, Metric: "only_in_new_rules"}); err != nil {
		t.Fatalf("new rule not served: %v", err)
	}
}
