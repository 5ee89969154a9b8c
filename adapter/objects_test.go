package adapter

import (
	"context"
	"slices"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	metadatafake "k8s.io/client-go/metadata/fake"

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
