//go:build e2e

package localcluster

import (
	"context"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// TestLocalCluster starts the control plane, runs a Deployment on the kwok
// node, creates a scale-to-zero HPA and checks that Stop frees every port.
// Run: PROMQL_ADAPTER_CLUSTER_BIN=$PWD/.cache/cluster/k8s-v1.37.2/bin go test -tags e2e ./internal/localcluster/
func TestLocalCluster(t *testing.T) {
	binDir, err := BinDirFromEnv()
	if err != nil {
		t.Fatal(err) // deliberately not t.Skip: e2e runs must have the binaries
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	c, err := Start(ctx, Options{BinDir: binDir, WorkDir: t.TempDir(), Logf: t.Logf})
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	stopped := false
	defer func() {
		if !stopped {
			_ = c.Stop()
		}
	}()
	tm := c.Timings()
	t.Logf("timings: etcd %s, readyz %s, node Ready %s, total %s", tm.EtcdReady, tm.APIServerReady, tm.NodeReady, tm.Total)
	for _, f := range []string{c.AdminKubeconfig(), c.AdapterKubeconfig(), c.AdapterServingCertFile(), c.AdapterServingKeyFile(), c.CACertFile()} {
		if _, err := os.Stat(f); err != nil {
			t.Errorf("accessor file: %v", err)
		}
	}
	if len(c.CACertPEM()) == 0 {
		t.Error("empty CA PEM")
	}

	client, err := kubernetes.NewForConfig(c.AdminConfig())
	if err != nil {
		t.Fatal(err)
	}
	ns := "demo"
	if _, err := client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create namespace: %v", err)
	}
	deployStart := time.Now()
	replicas := int32(2)
	labels := map[string]string{"app": "web"}
	dep := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: ns},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					NodeName:   NodeName, // no scheduler in this cluster
					Containers: []corev1.Container{{Name: "web", Image: "fake-image"}},
				},
			},
		},
	}
	if _, err := client.AppsV1().Deployments(ns).Create(ctx, dep, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create deployment: %v", err)
	}
	waitFor(ctx, t, 60*time.Second, "2 Ready pods", func() (bool, error) {
		pods, err := client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=web"})
		if err != nil {
			return false, err
		}
		ready := 0
		for _, p := range pods.Items {
			for _, cond := range p.Status.Conditions {
				if cond.Type == corev1.PodReady && cond.Status == corev1.ConditionTrue && p.DeletionTimestamp == nil {
					ready++
				}
			}
		}
		return ready == 2, nil
	})
	t.Logf("deployment: 2 pods Ready %s after create", time.Since(deployStart).Round(time.Millisecond))

	// RSS of the control plane with the Deployment up.
	var total int64
	for name, pid := range c.PIDs() {
		kb, err := MemoryKiB(pid, "VmRSS")
		if err != nil {
			t.Errorf("rss of %s: %v", name, err)
			continue
		}
		total += kb
		t.Logf("rss %-24s pid %-7d %6.1f MiB", name, pid, float64(kb)/1024)
	}
	t.Logf("rss total %.1f MiB", float64(total)/1024)

	// HPAScaleToZero (minReplicas 0, Object/External metrics only) is beta and on by default from 1.37;
	// before, it is alpha and off, and kube-apiserver refuses minReplicas 0. Either way the HPA with
	// minReplicas 1 below must exist for the restart check.
	minor, err := c.Minor()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("kube-apiserver v1.%d", minor)
	minReplicas := int32(0)
	hpa := &autoscalingv2.HorizontalPodAutoscaler{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: ns},
		Spec: autoscalingv2.HorizontalPodAutoscalerSpec{
			ScaleTargetRef: autoscalingv2.CrossVersionObjectReference{APIVersion: "apps/v1", Kind: "Deployment", Name: "web"},
			MinReplicas:    &minReplicas,
			MaxReplicas:    5,
			Metrics: []autoscalingv2.MetricSpec{{
				Type: autoscalingv2.ExternalMetricSourceType,
				External: &autoscalingv2.ExternalMetricSource{
					Metric: autoscalingv2.MetricIdentifier{Name: "queue_depth"},
					Target: autoscalingv2.MetricTarget{Type: autoscalingv2.AverageValueMetricType, AverageValue: resource.NewQuantity(10, resource.DecimalSI)},
				},
			}},
		},
	}
	got, err := client.AutoscalingV2().HorizontalPodAutoscalers(ns).Create(ctx, hpa, metav1.CreateOptions{})
	switch {
	case minor >= 37 && err != nil:
		t.Fatalf("create HPA with minReplicas 0 (HPAScaleToZero beta, on by default in 1.%d): %v", minor, err)
	case minor >= 37 && (got.Spec.MinReplicas == nil || *got.Spec.MinReplicas != 0):
		t.Fatalf("HPA minReplicas = %v, want 0", got.Spec.MinReplicas)
	case minor < 37 && err == nil:
		t.Fatalf("1.%d accepted an HPA with minReplicas 0; HPAScaleToZero is alpha and off before 1.37", minor)
	case minor < 37:
		if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), "minReplicas") {
			t.Fatalf("1.%d: minReplicas 0 refused, but not as an invalid minReplicas: %v", minor, err)
		}
		t.Logf("1.%d refuses minReplicas 0 (HPAScaleToZero off): %v", minor, err)
		minReplicas = 1
		if _, err := client.AutoscalingV2().HorizontalPodAutoscalers(ns).Create(ctx, hpa, metav1.CreateOptions{}); err != nil {
			t.Fatalf("create HPA with minReplicas 1: %v", err)
		}
	}

	// Restart kube-apiserver: a new process on the same port, the objects kept in etcd.
	before := c.PIDs()[ComponentAPIServer]
	down, err := c.Restart(ctx, ComponentAPIServer, 60*time.Second)
	if err != nil {
		t.Fatalf("restart kube-apiserver: %v", err)
	}
	if after := c.PIDs()[ComponentAPIServer]; after == before || after == 0 {
		t.Errorf("kube-apiserver pid %d after restart, %d before", after, before)
	}
	if _, err := os.Stat("/proc/" + strconv.Itoa(before)); err == nil {
		t.Errorf("old kube-apiserver (pid %d) still exists after Restart", before)
	}
	if _, err := client.AutoscalingV2().HorizontalPodAutoscalers(ns).Get(ctx, "web", metav1.GetOptions{}); err != nil {
		t.Errorf("HPA after the kube-apiserver restart: %v", err)
	}
	if _, err := c.Restart(ctx, "kube-scheduler", time.Second); err == nil {
		t.Error("Restart of a component that was never started succeeded")
	}
	t.Logf("kube-apiserver restart: ready again %s after the stop", down.Round(time.Millisecond))

	ports := c.Ports()
	pids := c.PIDs()
	stopStart := time.Now()
	if err := c.Stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
	stopped = true
	t.Logf("stop took %s", time.Since(stopStart).Round(time.Millisecond))
	if err := c.Stop(); err != nil {
		t.Errorf("second Stop: %v", err)
	}
	for _, p := range ports.All() {
		conn, err := net.DialTimeout("tcp", hostPort(p), time.Second)
		if err == nil {
			_ = conn.Close()
			t.Errorf("port %d still accepts connections after Stop", p)
		}
	}
	for name, pid := range pids {
		if _, err := os.Stat("/proc/" + strconv.Itoa(pid)); err == nil {
			t.Errorf("%s (pid %d) still exists after Stop", name, pid)
		}
	}
}

// waitFor polls cond every 100 ms until it is true or timeout passes.
func waitFor(ctx context.Context, t *testing.T, timeout time.Duration, what string, cond func() (bool, error)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var lastErr error
	for time.Now().Before(deadline) && ctx.Err() == nil {
		ok, err := cond()
		if ok {
			return
		}
		lastErr = err
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s (last error: %v)", what, lastErr)
}
