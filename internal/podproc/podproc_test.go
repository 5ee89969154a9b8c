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

	"github.com/promql-adapter/promql-adapter/internal/podnet"
)

// A pod with an IP gets a node app answering on that IP inside the namespace; deleting the pod stops it.
func TestNodeAppPerPod(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	n, err := podnet.New(ctx)
	if err != nil {
		t.Fatalf("podnet: %v", err)
	}
	defer n.Close()
	appDir, err := filepath.Abs("../../hack/nodeapp")
	if err != nil {
		t.Fatal(err)
	}
	if err := NpmCI(ctx, appDir); err != nil {
		t.Fatal(err)
	}
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
