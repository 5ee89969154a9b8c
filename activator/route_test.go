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
	"k8s.io/apimachinery/pkg/types"
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
		{Host: "h.example", PathPrefix: "/api", Target: a}, // conflict: same age, a's HPA sorts first
	}, nil)
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
			// As the EndpointSlice controller writes it.
			ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web-1", Labels: map[string]string{
				discoveryv1.LabelServiceName: "web", discoveryv1.LabelManagedBy: "endpointslice-controller.k8s.io"}},
			AddressType: discoveryv1.AddressTypeIPv4,
			Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To[int32](8080)}, {Name: ptr.To("admin"), Port: ptr.To[int32](9000)}},
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

// claim is an opted-in HPA routing hosts to Service svc, created at minute min.
func claim(ns, name, hosts string, min int, uid string) *autoscalingv2.HorizontalPodAutoscaler {
	h := hpa(ns, name, map[string]string{"scale-to-zero.promql-adapter.io/enabled": "true", AnnotationHosts: hosts, AnnotationService: name})
	h.CreationTimestamp = metav1.NewTime(time.Date(2026, 12, 1, 0, min, 0, 0, time.UTC))
	h.UID = types.UID(uid)
	return h
}

func routesOf(t *testing.T, hs ...*autoscalingv2.HorizontalPodAutoscaler) []Route {
	t.Helper()
	var rs []Route
	for _, h := range hs {
		r, err := RoutesFromHPA(h)
		if err != nil {
			t.Fatal(err)
		}
		rs = append(rs, r...)
	}
	return rs
}

// TestHostBoundToNamespace (review N1): a host routed to one namespace is refused to every other one,
// whatever the path prefix and whatever the names sort like.
func TestHostBoundToNamespace(t *testing.T) {
	for _, tc := range []struct {
		name       string
		hpas       []*autoscalingv2.HorizontalPodAutoscaler
		host, path string
		wantNS     string
	}{
		{"a longer prefix from another namespace is refused",
			[]*autoscalingv2.HorizontalPodAutoscaler{claim("shop", "web", "shop.example.com", 1, "u1"), claim("attacker", "x", "shop.example.com/login", 2, "u2")},
			"shop.example.com", "/login", "shop"},
		{"a namespace that sorts first does not take the host",
			[]*autoscalingv2.HorizontalPodAutoscaler{claim("shop", "web", "shop.example.com", 1, "u1"), claim("aaa", "x", "shop.example.com", 2, "u2")},
			"shop.example.com", "/", "shop"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tb, _ := NewTable(routesOf(t, tc.hpas...), nil)
			r, ok := tb.Lookup(tc.host, tc.path)
			if !ok || r.Target.Namespace != tc.wantNS {
				t.Fatalf("Lookup(%q, %q) = %v, %v; want namespace %s", tc.host, tc.path, r.Target, ok, tc.wantNS)
			}
		})
	}
}

// TestReadyOnlyPodAddressesOfTheNamespace (review N4): only IP slices, pod addresses (no loopback,
// link-local, unspecified or multicast) and endpoints the EndpointSlice controller keeps or whose
// targetRef is a Pod of the target's namespace are forwarded to.
func TestReadyOnlyPodAddressesOfTheNamespace(t *testing.T) {
	managed := map[string]string{discoveryv1.LabelServiceName: "web", discoveryv1.LabelManagedBy: "endpointslice-controller.k8s.io"}
	byHand := map[string]string{discoveryv1.LabelServiceName: "web"}
	pod := func(ns string) *corev1.ObjectReference {
		return &corev1.ObjectReference{Kind: "Pod", Namespace: ns, Name: "web-1"}
	}
	for _, tc := range []struct {
		name   string
		labels map[string]string
		typ    discoveryv1.AddressType
		ep     discoveryv1.Endpoint
		want   string
	}{
		{"FQDN slice", byHand, discoveryv1.AddressTypeFQDN, discoveryv1.Endpoint{Addresses: []string{"example.org"}}, ""},
		{"FQDN slice, managed label", managed, discoveryv1.AddressTypeFQDN, discoveryv1.Endpoint{Addresses: []string{"example.org"}}, ""},
		{"metadata address by hand", byHand, discoveryv1.AddressTypeIPv4, discoveryv1.Endpoint{Addresses: []string{"169.254.169.254"}}, ""},
		{"metadata address, managed label", managed, discoveryv1.AddressTypeIPv4, discoveryv1.Endpoint{Addresses: []string{"169.254.169.254"}}, ""},
		{"loopback", managed, discoveryv1.AddressTypeIPv4, discoveryv1.Endpoint{Addresses: []string{"127.0.0.1"}}, ""},
		{"unspecified", managed, discoveryv1.AddressTypeIPv4, discoveryv1.Endpoint{Addresses: []string{"0.0.0.0"}}, ""},
		{"multicast", managed, discoveryv1.AddressTypeIPv4, discoveryv1.Endpoint{Addresses: []string{"224.0.0.1"}}, ""},
		{"IPv6 link-local", managed, discoveryv1.AddressTypeIPv6, discoveryv1.Endpoint{Addresses: []string{"fe80::1"}}, ""},
		{"IPv6 loopback", managed, discoveryv1.AddressTypeIPv6, discoveryv1.Endpoint{Addresses: []string{"::1"}}, ""},
		{"IPv4-mapped loopback", managed, discoveryv1.AddressTypeIPv6, discoveryv1.Endpoint{Addresses: []string{"::ffff:127.0.0.1"}}, ""},
		{"not an IP", managed, discoveryv1.AddressTypeIPv4, discoveryv1.Endpoint{Addresses: []string{"db.internal"}}, ""},
		{"by hand, no targetRef", byHand, discoveryv1.AddressTypeIPv4, discoveryv1.Endpoint{Addresses: []string{"10.0.0.9"}}, ""},
		{"by hand, Pod of another namespace", byHand, discoveryv1.AddressTypeIPv4, discoveryv1.Endpoint{Addresses: []string{"10.0.0.9"}, TargetRef: pod("other")}, ""},
		{"by hand, a Node", byHand, discoveryv1.AddressTypeIPv4, discoveryv1.Endpoint{Addresses: []string{"10.0.0.9"}, TargetRef: &corev1.ObjectReference{Kind: "Node", Name: "n1"}}, ""},
		{"by hand, Pod of the namespace", byHand, discoveryv1.AddressTypeIPv4, discoveryv1.Endpoint{Addresses: []string{"10.0.0.9"}, TargetRef: pod("shop")}, "10.0.0.9:8080"},
		{"managed, Ready nil", managed, discoveryv1.AddressTypeIPv4, discoveryv1.Endpoint{Addresses: []string{"10.0.0.9"}}, "10.0.0.9:8080"},
		{"managed, Ready nil, terminating", managed, discoveryv1.AddressTypeIPv4, discoveryv1.Endpoint{Addresses: []string{"10.0.0.9"}, Conditions: discoveryv1.EndpointConditions{Terminating: ptr.To(true)}}, ""},
		{"managed, IPv6", managed, discoveryv1.AddressTypeIPv6, discoveryv1.Endpoint{Addresses: []string{"fd00::9"}}, "[fd00::9]:8080"},
		{"managed, IPv4 address in an IPv6 slice", managed, discoveryv1.AddressTypeIPv6, discoveryv1.Endpoint{Addresses: []string{"10.0.0.9"}}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			kube := fake.NewClientset(
				&corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web"}, Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 80}}}},
				&discoveryv1.EndpointSlice{
					ObjectMeta:  metav1.ObjectMeta{Namespace: "shop", Name: "web-1", Labels: tc.labels},
					AddressType: tc.typ,
					Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To[int32](8080)}},
					Endpoints:   []discoveryv1.Endpoint{tc.ep},
				},
			)
			c := NewCluster(kube, 0)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := c.Run(ctx); err != nil {
				t.Fatal(err)
			}
			addrs, err := c.Ready(Target{Namespace: "shop", HPA: "web", Service: "web", Port: "http"})
			if err != nil || strings.Join(addrs, ",") != tc.want {
				t.Fatalf("Ready = %v, %v; want %q", addrs, err, tc.want)
			}
		})
	}
}
