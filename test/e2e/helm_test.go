//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	autoscalingv2 "k8s.io/api/autoscaling/v2"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"

	"github.com/promql-adapter/promql-adapter/internal/loadsim"
	"github.com/promql-adapter/promql-adapter/internal/localcluster"
	"github.com/promql-adapter/promql-adapter/internal/stack"
)

// runHelm runs the Helm binary make builds against a kubeconfig, with its own cache and config dirs.
func runHelm(t *testing.T, kubeconfig string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(helmBin(t), append([]string{"--kubeconfig", kubeconfig}, args...)...)
	home := t.TempDir()
	cmd.Env = append(os.Environ(), "HELM_CACHE_HOME="+home+"/cache", "HELM_CONFIG_HOME="+home+"/config", "HELM_DATA_HOME="+home+"/data")
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("helm %s: %v\n%s%s", strings.Join(args, " "), err, out.String(), errOut.String())
	}
	return out.String(), nil
}

// helmValues are the chart values of TestE2EHelmInstall: what deploy/local does for the manifests
// (the APIServices routed to an adapter process on 127.0.0.1 through an ExternalName Service, the
// local CA as caBundle), Prometheus of the test's stack, and rules with one rule named `rule`.
func helmValues(t *testing.T, st2 *stack.Stack, port int, rule string) string {
	t.Helper()
	v := chartLocalValues(st2, port)
	v["prometheus"] = map[string]any{"url": st2.Prom.URL()}
	v["seriesRelistInterval"] = "5s"
	v["rules"] = map[string]any{"config": map[string]any{"metrics": []any{
		map[string]any{"name": "elu_utilization", "resource": "pods", "query": "avg by (namespace, pod) (avg_over_time(elu_utilization[20s]))"},
		map[string]any{"name": rule, "resource": "pods", "query": "sum by (namespace, pod) (rate(http_requests_total[20s]))"},
	}}}
	return valuesFile(t, v)
}

// chartLocalValues are the values that let a release of the chart work on the local control plane, as
// deploy/local does for the manifests: the APIServices routed to an adapter process on 127.0.0.1 through an
// ExternalName Service, with the local CA as caBundle.
func chartLocalValues(st2 *stack.Stack, port int) map[string]any {
	return map[string]any{
		"image":      map[string]any{"repository": "promql-adapter", "tag": "e2e"},
		"securePort": port,
		"service":    map[string]any{"type": "ExternalName", "externalName": "127.0.0.1", "port": port},
		"tls": map[string]any{"mode": "secret", "secretName": "promql-adapter-tls",
			"caBundle": base64.StdEncoding.EncodeToString(st2.Cluster.CACertPEM())},
	}
}

// chartStack starts a stack of the test's own for a chart install: its control plane (the HPA quick), Prometheus
// and the load simulator serving target, with none of deploy/ applied (the chart brings its objects); stopped at cleanup.
func chartStack(ctx context.Context, t *testing.T, target loadsim.Target) *stack.Stack {
	t.Helper()
	st2, err := stack.Start(ctx, stack.Options{
		RepoRoot: root, BinDir: binDir, RulesFile: filepath.Join(root, "testdata/rules/e2e.yaml"),
		Targets:     []loadsim.Target{target},
		Cluster:     localcluster.Options{HPASyncPeriod: syncDur, HPADownscaleStabilization: 5 * time.Second},
		NoManifests: true,
		Logf:        t.Logf,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := st2.Stop(); err != nil {
			t.Error(err)
		}
	})
	return st2
}

// valuesFile writes chart values to a file of the test's.
func valuesFile(t *testing.T, v map[string]any) string {
	t.Helper()
	data, err := yaml.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "values.yaml")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestE2EHelmInstall installs charts/promql-adapter with `helm install` into a control plane of its
// own and runs the adapter as the chart's Deployment would: its arguments, its service account (the
// chart's RBAC), its ConfigMap as the rule file (copied on change, as the kubelet's volume does).
// An HPA scales through the APIServices the chart registered; `helm upgrade` renames a rule and the
// new name is served; `helm uninstall` removes the APIServices, so deleting namespaces does not block
// on an unavailable metrics API once the adapter is gone.
func TestE2EHelmInstall(t *testing.T) {
	ctx := context.Background()
	const hns = "helm-demo"
	target := loadsim.Target{Namespace: hns, Deployment: "web", Service: "web", Capacity: 100, MatchLabels: map[string]string{"app": "web"}}
	st2 := chartStack(ctx, t, target)
	kc := st2.Cluster.AdminKubeconfig()
	port, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	chart := filepath.Join(root, "charts/promql-adapter")
	if _, err := runHelm(t, kc, "install", "promql-adapter", chart, "--namespace", "custom-metrics", "--create-namespace",
		"-f", helmValues(t, st2, port, "http_requests_per_second")); err != nil {
		t.Fatal(err)
	}

	stopSync, stopAdapter := runChartAdapter(ctx, t, st2)

	// An HPA scales through the chart's APIServices: ELU per pod = load / (pods × 100), target 0.5.
	if err := st2.CreateWorkload(ctx, target, 1); err != nil {
		t.Fatal(err)
	}
	h := hpa("web", autoscalingv2.MetricSpec{Type: autoscalingv2.PodsMetricSourceType, Pods: &autoscalingv2.PodsMetricSource{
		Metric: autoscalingv2.MetricIdentifier{Name: "elu_utilization"},
		Target: autoscalingv2.MetricTarget{Type: autoscalingv2.AverageValueMetricType, AverageValue: resource.NewMilliQuantity(500, resource.DecimalSI)},
	}})
	h.Namespace = hns
	if _, err := st2.Kube.AutoscalingV2().HorizontalPodAutoscalers(hns).Create(ctx, h, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := st2.Sim.SetLoad(hns, "web", 160); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	eventually(t, 150*time.Second, "web scaled to 4 by the HPA", func() (bool, string) {
		d, err := st2.Kube.AppsV1().Deployments(hns).Get(ctx, "web", metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		h, _ := st2.Kube.AutoscalingV2().HorizontalPodAutoscalers(hns).Get(ctx, "web", metav1.GetOptions{})
		state := fmt.Sprintf("spec %d ready %d", ptr.Deref(d.Spec.Replicas, 0), d.Status.ReadyReplicas)
		if h != nil {
			state += fmt.Sprintf(" hpa metrics %+v conditions %+v", h.Status.CurrentMetrics, h.Status.Conditions)
		}
		return ptr.Deref(d.Spec.Replicas, 0) == 4 && d.Status.ReadyReplicas == 4, state
	})
	t.Logf("installed with helm: 160 req/s → 4 replicas in %s", time.Since(start).Round(100*time.Millisecond))

	// helm upgrade renames a rule: the new name is served through kube-apiserver, the old one is gone.
	if _, err := runHelm(t, kc, "upgrade", "promql-adapter", chart, "--namespace", "custom-metrics",
		"-f", helmValues(t, st2, port, "http_requests_rate")); err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	rc := st2.Kube.Discovery().RESTClient()
	eventually(t, 60*time.Second, "the renamed rule served after helm upgrade", func() (bool, string) {
		list, err := rc.Get().AbsPath("/apis/custom.metrics.k8s.io/v1beta2").DoRaw(ctx)
		if err != nil {
			return false, err.Error()
		}
		if !strings.Contains(string(list), `"pods/http_requests_rate"`) || strings.Contains(string(list), `"pods/http_requests_per_second"`) {
			return false, string(list)
		}
		v, err := rc.Get().AbsPath("/apis/custom.metrics.k8s.io/v1beta2/namespaces", hns, "pods/*/http_requests_rate").DoRaw(ctx)
		return err == nil && strings.Contains(string(v), `"value":`), fmt.Sprint(err, string(v))
	})
	t.Logf("helm upgrade: renamed rule served after %s", time.Since(start).Round(100*time.Millisecond))

	// helm uninstall removes every APIService; with the adapter gone, namespaces still delete.
	if _, err := runHelm(t, kc, "uninstall", "promql-adapter", "--namespace", "custom-metrics", "--wait"); err != nil {
		t.Fatal(err)
	}
	stopSync()
	stopAdapter()
	for _, name := range []string{"v1beta2.custom.metrics.k8s.io", "v1beta1.custom.metrics.k8s.io", "v1beta1.external.metrics.k8s.io"} {
		out, err := kubectlAt(kc, "get", "apiservice", name)
		if err == nil || !strings.Contains(err.Error(), "NotFound") {
			t.Errorf("APIService %s after helm uninstall: %v %s", name, err, out)
		}
	}
	start = time.Now()
	for _, n := range []string{hns, "custom-metrics"} {
		if err := st2.Kube.CoreV1().Namespaces().Delete(ctx, n, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, 90*time.Second, "both namespaces deleted", func() (bool, string) {
		var left []string
		for _, n := range []string{hns, "custom-metrics"} {
			ns, err := st2.Kube.CoreV1().Namespaces().Get(ctx, n, metav1.GetOptions{})
			if !apierrors.IsNotFound(err) {
				left = append(left, fmt.Sprintf("%s %v %+v", n, err, ns.Status.Conditions))
			}
		}
		return len(left) == 0, strings.Join(left, "; ")
	})
	t.Logf("helm uninstall: namespaces deleted %s after", time.Since(start).Round(100*time.Millisecond))
}

// runChartAdapter runs the Pod the chart's Deployment (promql-adapter in custom-metrics) would run, as a
// process: the container's arguments with its volumes under a local directory, its ServiceAccount (the chart's
// RBAC), and its ConfigMap as the rule file, copied on change as the kubelet's volume does. It returns once the
// metrics APIs answer through kube-apiserver; stopSync ends the copying, stopAdapter the process (both also at
// the test's end).
func runChartAdapter(ctx context.Context, t *testing.T, st2 *stack.Stack) (stopSync, stopAdapter func()) {
	t.Helper()
	d, err := st2.Kube.AppsV1().Deployments("custom-metrics").Get(ctx, "promql-adapter", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	mounts := t.TempDir()
	for _, dir := range []string{"rules", "tls"} {
		if err := os.MkdirAll(filepath.Join(mounts, dir), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for src, dst := range map[string]string{st2.Cluster.AdapterServingCertFile(): "tls/tls.crt", st2.Cluster.AdapterServingKeyFile(): "tls/tls.key"} {
		data, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(mounts, dst), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	syncCtx, stopSync := context.WithCancel(ctx)
	t.Cleanup(stopSync)
	rulesFile := filepath.Join(mounts, "rules", "rules.yaml")
	syncRules := func(context.Context) (bool, error) {
		cm, err := st2.Kube.CoreV1().ConfigMaps("custom-metrics").Get(ctx, "promql-adapter-rules", metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		if old, _ := os.ReadFile(rulesFile); string(old) != cm.Data["rules.yaml"] {
			if err := os.WriteFile(rulesFile+".tmp", []byte(cm.Data["rules.yaml"]), 0o644); err == nil {
				_ = os.Rename(rulesFile+".tmp", rulesFile)
			}
		}
		return false, nil
	}
	_, _ = syncRules(ctx)
	go func() { _ = wait.PollUntilContextCancel(syncCtx, 500*time.Millisecond, false, syncRules) }()

	saKC, err := st2.ServiceAccountKubeconfig(ctx, "custom-metrics", d.Spec.Template.Spec.ServiceAccountName)
	if err != nil {
		t.Fatal(err)
	}
	var args []string
	for _, a := range d.Spec.Template.Spec.Containers[0].Args {
		args = append(args, strings.ReplaceAll(a, "/etc/promql-adapter/", mounts+"/"))
	}
	args = append(args, "--bind-address=127.0.0.1", "--lister-kubeconfig="+saKC, "--authentication-kubeconfig="+saKC, "--authorization-kubeconfig="+saKC)
	t.Logf("the chart's adapter arguments, volumes under %s: %q", mounts, args)
	stopAdapter = startAdapterProc(t, filepath.Join(st2.WorkDir(), "promql-adapter"), args, filepath.Join(st2.WorkDir(), "logs", "helm-adapter.log"), 0, 4096)
	if err := st2.WaitMetricsAPI(ctx, 90*time.Second); err != nil {
		t.Fatal(err)
	}
	return stopSync, stopAdapter
}

// kubectlAt runs kubectl against a kubeconfig.
func kubectlAt(kubeconfig string, args ...string) (string, error) {
	cmd := exec.Command(filepath.Join(binDir, "kubectl"), append([]string{"--kubeconfig", kubeconfig}, args...)...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("kubectl %s: %v: %s", strings.Join(args, " "), err, errOut.String())
	}
	return out.String(), nil
}
