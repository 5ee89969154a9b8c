package adapter

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	metadatafake "k8s.io/client-go/metadata/fake"
	clienttesting "k8s.io/client-go/testing"
	"sigs.k8s.io/custom-metrics-apiserver/pkg/provider"

	"github.com/promql-adapter/promql-adapter/naming"
)

func TestInformerObjects(t *testing.T) {
	scheme := metadatafake.NewTestScheme()
	if err := metav1.AddMetaToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	pod := func(ns, name, app string) runtime.Object {
		return &metav1.PartialObjectMetadata{
			TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{"app": app}},
		}
	}
	client := metadatafake.NewSimpleMetadataClient(scheme,
		pod("shop", "web-1", "web"), pod("shop", "web-2", "web"), pod("shop", "db-1", "db"), pod("other", "web-9", "web"))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	objs := NewInformerObjects(ctx, client, 0)
	res, _ := naming.BuiltinResources().Resolve("pods")
	objs.Warm([]naming.Resource{res})

	wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
	defer wcancel()
	sel, _ := labels.Parse("app=web")
	names, total, err := objs.Names(wctx, res, "shop", sel)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(names)
	if !slices.Equal(names, []string{"web-1", "web-2"}) || total != 3 {
		t.Errorf("names %v total %d; want [web-1 web-2] 3", names, total)
	}
	names, _, _ = objs.Names(wctx, res, "shop", labels.Everything())
	if len(names) != 3 {
		t.Errorf("everything: %v", names)
	}
}

// TestInformerObjectsForbidden checks that a cache the adapter may not list fails a request within
// SyncTimeout with the missing permission named, not after the request's own deadline.
func TestInformerObjectsForbidden(t *testing.T) {
	scheme := metadatafake.NewTestScheme()
	if err := metav1.AddMetaToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	client := metadatafake.NewSimpleMetadataClient(scheme)
	client.PrependReactor("list", "statefulsets", func(clienttesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewForbidden(schema.GroupResource{Group: "apps", Resource: "statefulsets"}, "",
			errors.New(`User "system:serviceaccount:monitoring:promql-adapter" cannot list resource "statefulsets"`))
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	objs := NewInformerObjects(ctx, client, 0)
	objs.SyncTimeout = 2 * time.Second
	res, _ := naming.BuiltinResources().Resolve("statefulsets.apps")
	objs.Warm([]naming.Resource{res})

	rctx, rcancel := context.WithTimeout(ctx, 30*time.Second) // the API server's request deadline, shortened
	defer rcancel()
	_, _, err := objs.Names(rctx, res, "shop", labels.Everything())
	if err == nil || !strings.Contains(err.Error(), `grant list and watch on resource "statefulsets" in API group "apps"`) {
		t.Fatalf("error %v; want the missing permission named", err)
	}
	if rctx.Err() != nil {
		t.Fatal("waited for the request's deadline instead of SyncTimeout")
	}
	if err := objs.Unsynced(); err != nil {
		t.Errorf("a forbidden cache holds readiness: %v", err)
	}
}

// TestInformerObjectsStripMetadata checks that the caches keep names and labels but not the
// managed fields and annotations that are never read.
func TestInformerObjectsStripMetadata(t *testing.T) {
	scheme := metadatafake.NewTestScheme()
	if err := metav1.AddMetaToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	client := metadatafake.NewSimpleMetadataClient(scheme, &metav1.PartialObjectMetadata{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web-1", Labels: map[string]string{"app": "web"},
			Annotations:   map[string]string{"kubectl.kubernetes.io/last-applied-configuration": strings.Repeat("x", 4096)},
			ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "kubectl", Operation: metav1.ManagedFieldsOperationApply}},
		},
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	objs := NewInformerObjects(ctx, client, 0)
	res, _ := naming.BuiltinResources().Resolve("pods")
	if _, _, err := objs.Names(ctx, res, "shop", labels.Everything()); err != nil {
		t.Fatal(err)
	}
	if err := objs.Unsynced(); err != nil {
		t.Fatal(err)
	}
	obj, err := objs.cache(gvr(res)).lister.ByNamespace("shop").Get("web-1")
	if err != nil {
		t.Fatal(err)
	}
	m := obj.(*metav1.PartialObjectMetadata)
	if m.Annotations != nil || m.ManagedFields != nil || m.Labels["app"] != "web" || m.Name != "web-1" {
		t.Errorf("cached metadata %+v; want labels and name only", m.ObjectMeta)
	}
}

// widgets is a CRD's resource whose list the tests below fail.
var widgets = naming.Resource{GroupResource: schema.GroupResource{Group: "example.com", Resource: "widgets"}, Version: "v1", Kind: "Widget", Singular: "widget", Namespaced: true}

// brokenWidgetsClient is a metadata client with one pod whose list of widgets.example.com always
// fails with a 500, as when a CRD's conversion webhook is down.
func brokenWidgetsClient(t *testing.T) *metadatafake.FakeMetadataClient {
	t.Helper()
	scheme := metadatafake.NewTestScheme()
	if err := metav1.AddMetaToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	client := metadatafake.NewSimpleMetadataClient(scheme, &metav1.PartialObjectMetadata{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web-1"},
	})
	client.PrependReactor("list", "widgets", func(clienttesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewInternalError(errors.New("conversion webhook for example.com/v1, Kind=Widget failed: connection refused"))
	})
	return client
}

// TestOneUnsyncedCacheKeepsReadiness checks that a cache whose list always fails holds readiness
// back only for ReadyTimeout after start: after that the adapter is ready, and only the requests
// that need that cache fail.
func TestOneUnsyncedCacheKeepsReadiness(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	objs := NewInformerObjects(ctx, brokenWidgetsClient(t), 0)
	objs.ReadyTimeout = time.Second
	pods, _ := naming.BuiltinResources().Resolve("pods")
	objs.Warm([]naming.Resource{pods, widgets})

	wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
	defer wcancel()
	if _, _, err := objs.Names(wctx, pods, "shop", labels.Everything()); err != nil {
		t.Fatalf("pods: %v", err)
	}
	var err error
	for err = objs.Unsynced(); err != nil && wctx.Err() == nil; err = objs.Unsynced() {
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("still unready %s after start with pods synced: %v", 10*time.Second, err)
	}
}

// TestUnsyncedCacheFailsItsRequestsAtOnce checks that a request for a cache whose list failed gets
// the failure at once, naming the resource and the cause, rather than waiting out SyncTimeout or
// the request's deadline; a missing permission is named as such.
func TestUnsyncedCacheFailsItsRequestsAtOnce(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	client := brokenWidgetsClient(t)
	client.PrependReactor("list", "gadgets", func(clienttesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewForbidden(schema.GroupResource{Group: "example.com", Resource: "gadgets"}, "", errors.New("RBAC: access denied"))
	})
	gadgets := widgets
	gadgets.GroupResource.Resource, gadgets.Kind, gadgets.Singular = "gadgets", "Gadget", "gadget"
	objs := NewInformerObjects(ctx, client, 0)
	objs.SyncTimeout = time.Minute // longer than the request's deadline below
	objs.Warm([]naming.Resource{widgets, gadgets})

	tests := []struct {
		res  naming.Resource
		want []string
	}{
		{widgets, []string{"widgets.example.com cache has not synced", "conversion webhook"}},
		{gadgets, []string{`grant list and watch on resource "gadgets" in API group "example.com"`}},
	}
	for _, tc := range tests {
		rctx, rcancel := context.WithTimeout(ctx, 10*time.Second)
		_, _, err := objs.Names(rctx, tc.res, "shop", labels.Everything())
		if rctx.Err() != nil {
			t.Errorf("%s: waited for the request's deadline: %v", tc.res.GroupResource, err)
		}
		rcancel()
		for _, w := range tc.want {
			if err == nil || !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error %v; want it to contain %q", tc.res.GroupResource, err, w)
			}
		}
	}
}

// TestUnsyncedCacheFailsOnlyItsMetric checks that a request for a metric of a resource whose cache
// cannot sync gets a 503 naming the resource and the cause, while pods metrics keep answering.
func TestUnsyncedCacheFailsOnlyItsMetric(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	resolver := naming.BuiltinResources()
	resolver.Add(widgets)
	cfg, err := naming.ParseConfig([]byte("metrics:\n- name: a\n  resource: pods\n  query: sum by (namespace, pod) (x)\n- name: w\n  resource: widgets.example.com\n  query: sum by (namespace, widget) (y)\n"))
	if err != nil {
		t.Fatal(err)
	}
	rules, err := naming.Compile(cfg, resolver)
	if err != nil {
		t.Fatal(err)
	}
	objs := NewInformerObjects(ctx, brokenWidgetsClient(t), 0)
	objs.SyncTimeout = time.Minute
	pods, _ := resolver.Resolve("pods")
	objs.Warm([]naming.Resource{pods, widgets})
	q := vectorQuerier(model.Vector{{Metric: model.Metric{"namespace": "shop", "pod": "web-1"}, Value: 0.5}})
	p := NewProvider(Options{Querier: q, Objects: objs, Metrics: NewMetrics(prometheus.NewRegistry())}, rules)

	rctx, rcancel := context.WithTimeout(ctx, 10*time.Second)
	defer rcancel()
	got, err := p.GetMetricBySelector(rctx, "shop", labels.Everything(), provider.CustomMetricInfo{GroupResource: schema.GroupResource{Resource: "pods"}, Namespaced: true, Metric: "a"}, labels.Everything())
	if err != nil || len(got.Items) != 1 {
		t.Fatalf("pods metric: %v %v", got, err)
	}
	_, err = p.GetMetricBySelector(rctx, "shop", labels.Everything(), provider.CustomMetricInfo{GroupResource: widgets.GroupResource, Namespaced: true, Metric: "w"}, labels.Everything())
	var st apierrors.APIStatus
	if !errors.As(err, &st) || st.Status().Code != http.StatusServiceUnavailable {
		t.Fatalf("widgets metric: %v; want a 503", err)
	}
	for _, w := range []string{`metric "w"`, "widgets.example.com", "conversion webhook"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("503 %q does not name %q", err, w)
		}
	}
	if rctx.Err() != nil {
		t.Error("the 503 came only at the request's deadline")
	}
}

// TestWarmStopsUnusedCaches checks that the caches of resources no rule names any more are
// stopped (no more list or watch calls) at the next Warm, and that Lister's caches are kept.
func TestWarmStopsUnusedCaches(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	objs := NewInformerObjects(ctx, brokenWidgetsClient(t), 0)
	pods, _ := naming.BuiltinResources().Resolve("pods")
	nodes, _ := naming.BuiltinResources().Resolve("nodes")
	objs.Warm([]naming.Resource{pods, widgets})
	objs.Lister(nodes)
	if got := objs.Running(); !slices.Equal(got, []string{"nodes", "pods", "widgets.example.com"}) {
		t.Fatalf("running %v", got)
	}
	objs.Warm([]naming.Resource{pods})
	if got := objs.Running(); !slices.Equal(got, []string{"nodes", "pods"}) {
		t.Errorf("after a reload without widgets: running %v; want nodes (Lister's) and pods", got)
	}
}
