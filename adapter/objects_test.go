package adapter

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	metadatafake "k8s.io/client-go/metadata/fake"
	clienttesting "k8s.io/client-go/testing"

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
