package activator

import (
	"context"
	"fmt"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
)

// TestStatusUpdatesDoNotRebuild (review N11): 10k HPAs, 1,000 status-only updates: no rebuild of the
// routing table; then one route change: exactly one.
func TestStatusUpdatesDoNotRebuild(t *testing.T) {
	const n = 10000
	objs := make([]runtime.Object, 0, n)
	for i := 0; i < n; i++ {
		a := map[string]string{}
		if i%10 == 0 {
			a = map[string]string{"scale-to-zero.promql-adapter.io/enabled": "true", AnnotationHosts: fmt.Sprintf("h%d.example", i), AnnotationService: "web"}
		}
		objs = append(objs, hpa(fmt.Sprintf("ns%d", i%100), fmt.Sprintf("hpa%d", i), a))
	}
	kube := fake.NewClientset(objs...)
	c := NewCluster(kube, 0)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := c.Run(ctx); err != nil {
		t.Fatal(err)
	}
	before := c.rebuilds.Load()
	api := kube.AutoscalingV2().HorizontalPodAutoscalers
	for i := 0; i < 1000; i++ {
		h, err := api(fmt.Sprintf("ns%d", i%100)).Get(ctx, fmt.Sprintf("hpa%d", i), metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		h.Status.CurrentReplicas = int32(i + 1)
		h.Status.LastScaleTime = &metav1.Time{Time: time.Now()}
		if _, err := api(h.Namespace).UpdateStatus(ctx, h, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	// A route change after them: once it is in the table, every status update before it was handled.
	h, err := api("ns1").Get(ctx, "hpa1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	h.Annotations = map[string]string{"scale-to-zero.promql-adapter.io/enabled": "true", AnnotationHosts: "new.example", AnnotationService: "web"}
	if _, err := api("ns1").Update(ctx, h, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, ok := c.Table().Lookup("new.example", "/"); !ok; _, ok = c.Table().Lookup("new.example", "/") {
		if ctx.Err() != nil {
			t.Fatalf("route change not in the table after %d rebuilds", c.rebuilds.Load()-before)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if got := c.rebuilds.Load() - before; got != 1 {
		t.Fatalf("%d rebuilds after 1,000 status-only updates and one route change, want 1", got)
	}
}

// TestRouteChangesCoalesce: a burst of route changes is rebuilt in fewer rebuilds than changes, and the
// last table has them all.
func TestRouteChangesCoalesce(t *testing.T) {
	const n = 200
	objs := make([]runtime.Object, 0, n)
	for i := 0; i < n; i++ {
		objs = append(objs, hpa("shop", fmt.Sprintf("hpa%d", i), nil))
	}
	kube := fake.NewClientset(objs...)
	c := NewCluster(kube, 0)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := c.Run(ctx); err != nil {
		t.Fatal(err)
	}
	before := c.rebuilds.Load()
	api := kube.AutoscalingV2().HorizontalPodAutoscalers("shop")
	for i := 0; i < n; i++ {
		h := hpa("shop", fmt.Sprintf("hpa%d", i), map[string]string{"scale-to-zero.promql-adapter.io/enabled": "true", AnnotationHosts: fmt.Sprintf("h%d.example", i), AnnotationService: "web"})
		if _, err := api.Update(ctx, h, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, func() bool {
		for i := 0; i < n; i++ {
			if _, ok := c.Table().Lookup(fmt.Sprintf("h%d.example", i), "/"); !ok {
				return false
			}
		}
		return true
	})
	got := c.rebuilds.Load() - before
	if got >= n {
		t.Fatalf("%d rebuilds for %d route changes, want them coalesced", got, n)
	}
	t.Logf("%d route changes: %d rebuilds", n, got)
}
