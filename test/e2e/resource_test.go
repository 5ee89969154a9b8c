//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/promql-adapter/promql-adapter/internal/loadsim"
	"github.com/promql-adapter/promql-adapter/naming"
)

// hot is the Deployment the resource HPA scales: its pods request 500m, and one pod uses one core at ELU 1.
var hot = loadsim.Target{Namespace: ns, Deployment: "hot", Service: "hot", Capacity: 100, MatchLabels: map[string]string{"app": "hot"}}

// resourceRules are the resources: section the adapter serves, compiled by the adapter's own code, so the
// test sends Prometheus exactly the PromQL the adapter sends.
func resourceRules(t *testing.T) *naming.ResourceRules {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(root, "testdata/rules/e2e.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := naming.ParseConfig(data)
	if err != nil {
		t.Fatal(err)
	}
	rr, err := naming.CompileResources(cfg.Resources)
	if err != nil {
		t.Fatal(err)
	}
	return rr
}

// promValues runs a query against Prometheus and returns value by key (the given labels joined by /).
func promValues(t *testing.T, q string, keys ...string) map[string]float64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	v, _, _, err := st.Prom.API().Query(ctx, q, time.Now())
	if err != nil {
		t.Fatalf("prometheus %s: %v", q, err)
	}
	out := map[string]float64{}
	for _, s := range v.(model.Vector) {
		var k []string
		for _, l := range keys {
			k = append(k, string(s.Metric[model.LabelName(l)]))
		}
		out[strings.Join(k, "/")] += float64(s.Value)
	}
	return out
}

// kubectlTop runs kubectl top through kube-apiserver and returns, per row key (NAMESPACE/NAME or NAME),
// the cpu in millicores and memory in MiB as printed.
func kubectlTop(t *testing.T, args ...string) (map[string][2]int64, string) {
	t.Helper()
	cmd := exec.Command(filepath.Join(binDir, "kubectl"), append([]string{"--kubeconfig", st.Cluster.AdminKubeconfig(), "top"}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return nil, fmt.Sprintf("kubectl top %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	rows := map[string][2]int64{}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	head := strings.Fields(lines[0])
	col := func(prefix string) int {
		for i, h := range head {
			if strings.HasPrefix(h, prefix) {
				return i
			}
		}
		return -1
	}
	ci, mi, namespaced := col("CPU(cores)"), col("MEMORY(bytes)"), head[0] == "NAMESPACE"
	if ci < 0 || mi < 0 {
		return nil, "unexpected header: " + string(out)
	}
	for _, l := range lines[1:] {
		f := strings.Fields(l)
		if len(f) != len(head) {
			return nil, "unexpected row: " + string(out)
		}
		key := f[0]
		if namespaced {
			key += "/" + f[1]
		}
		c, _ := strconv.ParseInt(strings.TrimSuffix(f[ci], "m"), 10, 64)
		m, _ := strconv.ParseInt(strings.TrimSuffix(f[mi], "Mi"), 10, 64)
		rows[key] = [2]int64{c, m}
	}
	return rows, string(out)
}

// matches reports whether kubectl's rows show Prometheus's values (cpu to within 2m: a rate moves between
// the two reads; memory exactly, in kubectl's MiB rounding down) for exactly the objects Prometheus has.
func matches(rows map[string][2]int64, cpu, mem map[string]float64) (bool, string) {
	var diffs []string
	for k, c := range cpu {
		m, ok := mem[k]
		if !ok {
			continue
		}
		r, ok := rows[k]
		if !ok {
			diffs = append(diffs, k+" missing")
			continue
		}
		if math.Abs(float64(r[0])-c*1000) > 2 || r[1] != int64(m)/(1<<20) {
			diffs = append(diffs, fmt.Sprintf("%s kubectl %dm %dMi, prometheus %.1fm %dMi", k, r[0], r[1], c*1000, int64(m)/(1<<20)))
		}
	}
	for k := range rows {
		if _, ok := cpu[k]; !ok {
			diffs = append(diffs, k+" shown, but Prometheus has no cpu for it")
		}
	}
	return len(diffs) == 0, strings.Join(diffs, "; ")
}

// TestE2EKubectlTop: kubectl top pods -n, top pods -A and top nodes, through kube-apiserver's aggregator,
// show the values the same PromQL returns when sent straight to Prometheus.
func TestE2EKubectlTop(t *testing.T) {
	if err := st.Sim.SetLoad(ns, "web", 50); err != nil {
		t.Fatal(err)
	}
	if err := st.Sim.SetLoad(ns, "api", 20); err != nil {
		t.Fatal(err)
	}
	rr := resourceRules(t)
	for _, tc := range []struct {
		name string
		args []string
		ns   string
	}{
		{"pods in one namespace", []string{"pods", "-n", ns}, ns},
		{"pods in all namespaces", []string{"pods", "-A"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cq, err := rr.CPU.Pods(tc.ns, nil)
			if err != nil {
				t.Fatal(err)
			}
			mq, err := rr.Memory.Pods(tc.ns, nil)
			if err != nil {
				t.Fatal(err)
			}
			var out string
			var cpu, mem map[string]float64
			eventually(t, 60*time.Second, "kubectl top "+strings.Join(tc.args, " ")+" shows Prometheus's values", func() (bool, string) {
				// Per pod, summed over containers, as kubectl sums them.
				cpu = promValues(t, cq, "namespace", "pod")
				mem = promValues(t, mq, "namespace", "pod")
				if tc.ns != "" {
					cpu, mem = strip(cpu), strip(mem)
				}
				rows, o := kubectlTop(t, tc.args...)
				out = o
				if rows == nil {
					return false, o
				}
				if len(rows) < 2 {
					return false, "fewer than 2 pods: " + o
				}
				ok, diff := matches(rows, cpu, mem)
				return ok, diff + "\n" + o
			})
			t.Logf("kubectl top %s:\n%s\nPrometheus, the same PromQL sent straight to it:\n%s", strings.Join(tc.args, " "), out, promTable(cpu, mem))
		})
	}
	t.Run("nodes", func(t *testing.T) {
		cq, _ := rr.CPU.Nodes(nil)
		mq, _ := rr.Memory.Nodes(nil)
		var out string
		var cpu, mem map[string]float64
		eventually(t, 60*time.Second, "kubectl top nodes shows Prometheus's values", func() (bool, string) {
			rows, o := kubectlTop(t, "nodes")
			out = o
			if rows == nil {
				return false, o
			}
			// kubectl top nodes also prints a percentage of allocatable: keep name, cpu, memory.
			cpu, mem = promValues(t, cq, "node"), promValues(t, mq, "node")
			ok, diff := matches(rows, cpu, mem)
			return ok && len(rows) > 0, diff + "\n" + o
		})
		t.Logf("kubectl top nodes:\n%s\nPrometheus, the same PromQL sent straight to it:\n%s", out, promTable(cpu, mem))
	})
	t.Run("v1 and v1beta1, get and label selector", func(t *testing.T) {
		for _, v := range []string{"v1", "v1beta1"} {
			var list struct {
				Kind  string
				Items []struct {
					Metadata struct{ Name string }
					Window   string
				}
			}
			// The web pods of the moment (the HPA tests scale web): the selector must give exactly these.
			var pods struct {
				Items []struct{ Metadata struct{ Name string } }
			}
			raw(t, "/api/v1/namespaces/"+ns+"/pods?labelSelector=app%3Dweb", &pods)
			var want []string
			for _, p := range pods.Items {
				want = append(want, p.Metadata.Name)
			}
			raw(t, "/apis/metrics.k8s.io/"+v+"/namespaces/"+ns+"/pods?labelSelector=app%3Dweb", &list)
			var got []string
			windows := true
			for _, it := range list.Items {
				got = append(got, it.Metadata.Name)
				windows = windows && it.Window == "10s"
			}
			slices.Sort(want)
			slices.Sort(got)
			if list.Kind != "PodMetricsList" || len(got) == 0 || !slices.Equal(got, want) || !windows {
				t.Errorf("%s app=web: %+v, want the web pods %v, each with window 10s", v, list, want)
				continue
			}
			var one struct {
				Kind       string
				Containers []struct{ Name string }
			}
			raw(t, "/apis/metrics.k8s.io/"+v+"/namespaces/"+ns+"/pods/"+list.Items[0].Metadata.Name, &one)
			if one.Kind != "PodMetrics" || len(one.Containers) != 1 || one.Containers[0].Name != "app" {
				t.Errorf("%s get: %+v", v, one)
			}
		}
		if err := get("/apis/metrics.k8s.io/v1/namespaces/"+ns+"/pods/no-such-pod", nil); err == nil || !strings.Contains(err.Error(), "not found") {
			t.Errorf("a pod that does not exist: %v, want not found", err)
		}
	})
}

// promTable prints Prometheus's values per key as kubectl top does: cpu in millicores, memory in MiB.
func promTable(cpu, mem map[string]float64) string {
	keys := make([]string, 0, len(cpu))
	for k := range cpu {
		if _, ok := mem[k]; ok {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "  %-40s %8.1fm %8.1fMi\n", k, cpu[k]*1000, mem[k]/(1<<20))
	}
	return b.String()
}

// strip turns namespace/pod keys into pod keys, as kubectl top -n prints them.
func strip(m map[string]float64) map[string]float64 {
	out := map[string]float64{}
	for k, v := range m {
		out[k[strings.Index(k, "/")+1:]] = v
	}
	return out
}

// TestE2EResourceHPA: an HPA type: Resource, cpu averageUtilization 60, on a Deployment whose pods request
// 500m, scales up when the simulated load rises and down when it falls; kube-controller-manager's HPA
// controller reads metrics.k8s.io from promql-adapter.
func TestE2EResourceHPA(t *testing.T) {
	ctx := context.Background()
	if err := st.CreateWorkloadRequesting(ctx, hot, 1, corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("500m")}); err != nil {
		t.Fatal(err)
	}
	h := hpa("hot", autoscalingv2.MetricSpec{Type: autoscalingv2.ResourceMetricSourceType, Resource: &autoscalingv2.ResourceMetricSource{
		Name:   corev1.ResourceCPU,
		Target: autoscalingv2.MetricTarget{Type: autoscalingv2.UtilizationMetricType, AverageUtilization: ptr.To[int32](60)},
	}})
	h.Spec.MaxReplicas = 4
	if _, err := st.Kube.AutoscalingV2().HorizontalPodAutoscalers(ns).Create(ctx, h, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = st.Kube.AutoscalingV2().HorizontalPodAutoscalers(ns).Delete(ctx, "hot", metav1.DeleteOptions{})
	})
	var trace []string
	begin := time.Now()
	mark := func(what string) {
		d, _ := st.Kube.AppsV1().Deployments(ns).Get(ctx, "hot", metav1.GetOptions{})
		trace = append(trace, fmt.Sprintf("t=%5.1fs  %s: %d replicas", time.Since(begin).Seconds(), what, ptr.Deref(d.Spec.Replicas, 0)))
	}
	// Every change the HPA controller makes, with its time and the utilization it read from metrics.k8s.io.
	syncs := make(chan []string, 1)
	watchCtx, stopWatch := context.WithCancel(ctx)
	go func() {
		var lines []string
		last := ""
		for watchCtx.Err() == nil {
			if h, err := st.Kube.AutoscalingV2().HorizontalPodAutoscalers(ns).Get(watchCtx, "hot", metav1.GetOptions{}); err == nil {
				util := "-"
				for _, m := range h.Status.CurrentMetrics {
					if m.Resource != nil && m.Resource.Current.AverageUtilization != nil {
						util = fmt.Sprintf("%d%%", *m.Resource.Current.AverageUtilization)
					}
				}
				state := fmt.Sprintf("cpu utilization %s, current %d, desired %d replicas", util, h.Status.CurrentReplicas, h.Status.DesiredReplicas)
				if state != last {
					lines = append(lines, fmt.Sprintf("t=%5.1fs  HPA: %s", time.Since(begin).Seconds(), state))
					last = state
				}
			}
			select {
			case <-watchCtx.Done():
			case <-time.After(500 * time.Millisecond):
			}
		}
		syncs <- lines
	}()
	defer stopWatch()
	// Idle: 10 rps on one pod is ELU 0.1, 100m of 500m = 20%: stays at 1.
	if err := st.Sim.SetLoad(ns, "hot", 10); err != nil {
		t.Fatal(err)
	}
	eventually(t, 60*time.Second, "the HPA reads cpu utilization", func() (bool, string) {
		h, err := st.Kube.AutoscalingV2().HorizontalPodAutoscalers(ns).Get(ctx, "hot", metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		for _, m := range h.Status.CurrentMetrics {
			if m.Resource != nil && m.Resource.Current.AverageUtilization != nil {
				return true, ""
			}
		}
		return false, fmt.Sprintf("metrics %+v conditions %+v", h.Status.CurrentMetrics, h.Status.Conditions)
	})
	mark("load 10 rps")
	// 150 rps: one pod at ELU 1 is 200%; four pods at 150/400 = 37.5% of a core, 75% — capped at 4.
	start := time.Now()
	if err := st.Sim.SetLoad(ns, "hot", 150); err != nil {
		t.Fatal(err)
	}
	mark("load set to 150 rps")
	waitReplicas(t, "hot", 4, 120*time.Second)
	mark(fmt.Sprintf("load 150 rps, after %s", time.Since(start).Round(100*time.Millisecond)))
	// 10 rps over four pods is 5%: back to 1.
	start = time.Now()
	if err := st.Sim.SetLoad(ns, "hot", 10); err != nil {
		t.Fatal(err)
	}
	mark("load set to 10 rps")
	waitReplicas(t, "hot", 1, 120*time.Second)
	mark(fmt.Sprintf("load 10 rps, after %s", time.Since(start).Round(100*time.Millisecond)))
	stopWatch()
	t.Logf("resource HPA replica trace (load changes and replicas reached):\n%s", strings.Join(trace, "\n"))
	t.Logf("what the HPA controller read and decided, each change:\n%s", strings.Join(<-syncs, "\n"))
}
