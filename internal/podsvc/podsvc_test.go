package podsvc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/promql-adapter/promql-adapter/internal/podnet"
)

// backendServer serves "name" on a loopback port.
func backendServer(t *testing.T, name string) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, name) }), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
	return l.Addr().String()
}

func readiness(t *testing.T, kube *fake.Clientset) map[string]bool {
	t.Helper()
	s, err := kube.DiscoveryV1().EndpointSlices("ns").Get(context.Background(), "svc-harness", metav1.GetOptions{})
	if err != nil {
		return nil
	}
	if s.Labels[discoveryv1.LabelServiceName] != "svc" || *s.Ports[0].Name != PortName || *s.Ports[0].Port != 8443 {
		t.Errorf("slice labels %v ports %+v", s.Labels, s.Ports)
	}
	m := map[string]bool{}
	for _, e := range s.Endpoints {
		m[e.TargetRef.Name+"@"+e.Addresses[0]] = *e.Conditions.Ready
	}
	return m
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(15 * time.Second); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("not within 15s: %s", what)
}

// TestEndpointsFollowBackends checks the Service, the relay to each backend, and that an exited
// backend turns not ready at once while a failing probe needs FailureThreshold rounds.
func TestEndpointsFollowBackends(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	n, err := podnet.New(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = n.Close() })
	kube := fake.NewClientset()
	s, err := New(ctx, kube, n, Options{Namespace: "ns", Name: "svc", Port: 443, TargetPort: 8443, Period: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	svc, err := kube.CoreV1().Services("ns").Get(ctx, "svc", metav1.GetOptions{})
	if err != nil || svc.Spec.Selector != nil || svc.Spec.Ports[0].Name != PortName {
		t.Fatalf("service %+v: %v", svc, err)
	}
	var aExited, bFailing atomic.Bool
	ok := func(context.Context) error { return nil }
	if err := s.Add(Backend{Name: "a", IP: n.Addr(10), Target: backendServer(t, "a"), Exited: aExited.Load, Probe: ok}); err != nil {
		t.Fatal(err)
	}
	if err := s.Add(Backend{Name: "b", IP: n.Addr(11), Target: backendServer(t, "b"), Exited: func() bool { return false },
		Probe: func(context.Context) error {
			if bFailing.Load() {
				return errors.New("probe failed")
			}
			return nil
		}}); err != nil {
		t.Fatal(err)
	}
	if err := s.Add(Backend{Name: "c", IP: net.IPv4(127, 0, 0, 5), Target: "127.0.0.1:1"}); err == nil {
		t.Error("a loopback pod address was accepted")
	}
	waitFor(t, "both ready", func() bool {
		r := readiness(t, kube)
		return r[fmt.Sprintf("a@%s", n.Addr(10))] && r[fmt.Sprintf("b@%s", n.Addr(11))]
	})
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Get(fmt.Sprintf("http://%s:8443/", n.Addr(11)))
	if err != nil {
		t.Fatalf("through the pod address: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "b" {
		t.Errorf("pod address of b answered %q", body)
	}

	aExited.Store(true)
	waitFor(t, "a not ready after its process exited", func() bool { return !readiness(t, kube)[fmt.Sprintf("a@%s", n.Addr(10))] })
	bFailing.Store(true)
	waitFor(t, "b not ready after failed probes", func() bool { return !readiness(t, kube)[fmt.Sprintf("b@%s", n.Addr(11))] })
	var bDown Transition
	for _, tr := range s.Transitions() {
		if tr.Backend == "b" && !tr.Ready {
			bDown = tr
		}
	}
	if bDown.Backend == "" {
		t.Fatalf("no not-ready transition of b: %+v", s.Transitions())
	}
	bFailing.Store(false)
	waitFor(t, "b ready again after one good probe", func() bool { return readiness(t, kube)[fmt.Sprintf("b@%s", n.Addr(11))] })
	if got := s.Ready(); len(got) != 1 || got[0] != "b" {
		t.Errorf("Ready() = %v, want [b]", got)
	}
}
