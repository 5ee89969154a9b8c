package activator

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/utils/ptr"
)

func hpa(ns, name string, a map[string]string) *autoscalingv2.HorizontalPodAutoscaler {
	return &autoscalingv2.HorizontalPodAutoscaler{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Annotations: a}}
}

func TestRoutesFromHPA(t *testing.T) {
	on := "scale-to-zero.promql-adapter.io/enabled"
	for _, tc := range []struct {
		name    string
		a       map[string]string
		want    []string // host+prefix -> service:port
		wantErr string
	}{
		{"not opted in", map[string]string{AnnotationHosts: "a.example", AnnotationService: "web"}, nil, ""},
		{"no hosts", map[string]string{on: "true", AnnotationService: "web"}, nil, ""},
		{"one host", map[string]string{on: "true", AnnotationHosts: "Web.Example", AnnotationService: "web"}, []string{"web.example -> web:"}, ""},
		{"hosts, prefix, port", map[string]string{on: "true", AnnotationHosts: "a.example, b.example/api/", AnnotationService: "web:http"},
			[]string{"a.example -> web:http", "b.example/api -> web:http"}, ""},
		{"hosts without service", map[string]string{on: "true", AnnotationHosts: "a.example"}, nil, "service is missing"},
		{"bad host keeps the good", map[string]string{on: "true", AnnotationHosts: "a.example,bad_host!", AnnotationService: "web"},
			[]string{"a.example -> web:"}, `host "bad_host!"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rs, err := RoutesFromHPA(hpa("shop", "web", tc.a))
			if (err != nil) != (tc.wantErr != "") || (err != nil && !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("err %v, want %q", err, tc.wantErr)
			}
			var got []string
			for _, r := range rs {
				got = append(got, r.Host+r.PathPrefix+" -> "+r.Target.Service+":"+r.Target.Port)
			}
			if strings.Join(got, ";") != strings.Join(tc.want, ";") {
				t.Fatalf("routes %v, want %v", got, tc.want)
			}
		})
	}
}

func TestTableLookup(t *testing.T) {
	a, b := Target{Namespace: "x", HPA: "a", Service: "a"}, Target{Namespace: "x", HPA: "b", Service: "b"}
	tb, errs := NewTable([]Route{
		{Host: "h.example", Target: a},
		{Host: "h.example", PathPrefix: "/api", Target: b},
		{Host: "h.example", PathPrefix: "/api", Target: a}, // conflict: b's HPA sorts first... a sorts first
	})
	if len(errs) != 1 {
		t.Fatalf("conflicts %v, want 1", errs)
	}
	for _, tc := range []struct {
		host, path string
		want       string
	}{
		{"h.example", "/", "a"},
		{"H.example:8080", "/api", "a"},
		{"h.example", "/api/v1", "a"},
		{"h.example", "/apix", "a"},
		{"other.example", "/", ""},
	} {
		r, ok := tb.Lookup(tc.host, tc.path)
		if got := map[bool]string{true: r.Target.HPA}[ok]; got != tc.want {
			t.Errorf("Lookup(%q, %q) = %q, want %q", tc.host, tc.path, got, tc.want)
		}
	}
}

func TestClusterRoutesAndReadyAddresses(t *testing.T) {
	on := "scale-to-zero.promql-adapter.io/enabled"
	kube := fake.NewClientset(
		hpa("shop", "web", map[string]string{on: "true", AnnotationHosts: "web.example", AnnotationService: "web:http"}),
		hpa("shop", "gone", map[string]string{on: "true", AnnotationHosts: "gone.example", AnnotationService: "nosuch"}),
		&corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web"}, Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{
			{Name: "http", Port: 80}, {Name: "admin", Port: 81},
		}}},
		&discoveryv1.EndpointSlice{
			ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web-1", Labels: map[string]string{discoveryv1.LabelServiceName: "web"}},
			Ports:      []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To[int32](8080)}, {Name: ptr.To("admin"), Port: ptr.To[int32](9000)}},
			Endpoints: []discoveryv1.Endpoint{
				{Addresses: []string{"10.0.0.2"}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}},
				{Addresses: []string{"10.0.0.3"}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(false)}},
				{Addresses: []string{"10.0.0.1"}},
			},
		},
	)
	c := NewCluster(kube, 0)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Run(ctx); err != nil {
		t.Fatal(err)
	}
	r, ok := c.Table().Lookup("web.example", "/")
	if !ok {
		t.Fatalf("no route for web.example; table %v", c.Table().Hosts())
	}
	addrs, err := c.Ready(r.Target)
	if err != nil || strings.Join(addrs, ",") != "10.0.0.1:8080,10.0.0.2:8080" {
		t.Fatalf("Ready = %v, %v; want the two Ready addresses on the http port", addrs, err)
	}
	webT := r.Target
	r, _ = c.Table().Lookup("gone.example", "/")
	_, err = c.Ready(r.Target)
	var se *ServiceError
	if !errors.As(err, &se) || !strings.Contains(se.Reason, "shop/nosuch") {
		t.Fatalf("missing service: err %v, want a ServiceError naming it", err)
	}
	// A change to the slices is seen without a LIST: Changed fires.
	ch := c.Changed()
	err = kube.DiscoveryV1().EndpointSlices("shop").Delete(ctx, "web-1", metav1.DeleteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-ch:
	case <-ctx.Done():
		t.Fatal("no change notified")
	}
	waitFor(t, func() bool { a, err := c.Ready(webT); return err == nil && len(a) == 0 })
}
