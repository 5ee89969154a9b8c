package podproc

import (
	"context"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/promql-adapter/promql-adapter/internal/localcluster"
	"github.com/promql-adapter/promql-adapter/internal/podnet"
)

// A pod with an IP gets a node app answering on that IP inside the namespace; deleting the pod stops it.
func TestNodeAppPerPod(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	n, appDir := nodeAppNet(ctx, t)
	ip := n.Addr(5).String()
	kube := fake.NewClientset(&corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "app", Name: "web-1", UID: "u1", Labels: map[string]string{"app": "web"}},
		Status:     corev1.PodStatus{Phase: corev1.PodRunning, PodIP: ip},
	})
	s, err := Start(ctx, kube, Options{Namespace: "app", Command: NodeApp(n, appDir, 8080, 0, time.Millisecond), LogDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	url := "http://" + ip + ":8080/"
	c := &http.Client{Timeout: 2 * time.Second}
	var body string
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := c.Get(url)
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			body = string(b)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("node app never answered on %s: %v", url, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if !strings.Contains(body, "hello from web-1") {
		t.Fatalf("got %q from the pod", body)
	}
	resp, err := c.Get(url + "metrics")
	if err != nil {
		t.Fatal(err)
	}
	m, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(m), "elu_utilization") || !strings.Contains(string(m), `http_requests_total{code="200"} 1`) {
		t.Fatalf("metrics lack elu_utilization or the request counter:\n%s", m)
	}
	if err := kube.CoreV1().Pods("app").Delete(ctx, "web-1", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	for len(s.Running()) > 0 {
		if time.Now().After(deadline) {
			t.Fatal("process still running after its pod was deleted")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if resp, err := c.Get(url); err == nil {
		resp.Body.Close()
		t.Fatal("the pod's address still answers after its pod was deleted")
	}
}

// A pod annotated ready-when-listening is marked Ready only once its process accepts connections:
// when Ready is seen, the app answers; the Ready time is after the app's own listening time.
func TestReadyWhenListening(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	n, appDir := nodeAppNet(ctx, t)
	ip := n.Addr(6).String()
	kube := fake.NewClientset(&corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "app", Name: "web-2", UID: "u2", Labels: map[string]string{"app": "web"},
			Annotations: map[string]string{localcluster.AnnotationReadyWhenListening: "8080"}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: ip, Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionFalse}}},
	})
	s, err := Start(ctx, kube, Options{Namespace: "app", Command: NodeApp(n, appDir, 8080, 500*time.Millisecond, 0), LogDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	deadline := time.Now().Add(60 * time.Second)
	for {
		p, err := kube.CoreV1().Pods("app").Get(ctx, "web-2", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if podReady(p) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("pod never marked Ready")
		}
		time.Sleep(5 * time.Millisecond)
	}
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + ip + ":8080/")
	if err != nil {
		t.Fatalf("pod Ready, but its address does not answer: %v", err)
	}
	resp.Body.Close()
}

// nodeAppNet makes a pod network for the test (closed at its end) and installs the node app's dependencies.
func nodeAppNet(ctx context.Context, t *testing.T) (*podnet.Net, string) {
	t.Helper()
	n, err := podnet.New(ctx)
	if err != nil {
		t.Fatalf("podnet: %v", err)
	}
	t.Cleanup(func() { n.Close() })
	appDir, err := filepath.Abs("../../hack/nodeapp")
	if err != nil {
		t.Fatal(err)
	}
	if err := NpmCI(ctx, appDir); err != nil {
		t.Fatal(err)
	}
	return n, appDir
}
