//go:build e2e

// Package e2e proves promql-adapter behind a real kube-apiserver's aggregation layer, queried by the
// real HPA controller of kube-controller-manager, with a real Prometheus scraping a load simulator.
package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	cmv1beta2 "k8s.io/metrics/pkg/apis/custom_metrics/v1beta2"
	emv1beta1 "k8s.io/metrics/pkg/apis/external_metrics/v1beta1"
	"k8s.io/utils/ptr"

	"github.com/promql-adapter/promql-adapter/internal/loadsim"
	"github.com/promql-adapter/promql-adapter/internal/localcluster"
	"github.com/promql-adapter/promql-adapter/internal/podnet"
	"github.com/promql-adapter/promql-adapter/internal/stack"
)

const ns = "demo"

var (
	st      *stack.Stack
	syncDur = 2 * time.Second
	binDir  string      // the control plane binaries, kubectl among them
	pnet    *podnet.Net // kwok's pod CIDR, served from a network namespace (real HTTP to pod IPs)
	root    string      // the repository

	web    = loadsim.Target{Namespace: ns, Deployment: "web", Service: "web", Capacity: 100, MatchLabels: map[string]string{"app": "web"}}
	api    = loadsim.Target{Namespace: ns, Deployment: "api", Service: "api", Capacity: 100, MatchLabels: map[string]string{"app": "api"}}
	worker = loadsim.Target{Namespace: ns, Deployment: "worker", Service: "worker", Capacity: 0.001, MatchLabels: map[string]string{"app": "worker"}}
)

// The peers tier (make test-peers) builds this package with the tag peers, which adds the tests that need a peer
// built from source (KEDA); their files register the load simulator's Deployments they use and how to stop the
// peer they started. make test builds without the tag: these stay empty and no peer is built or started.
var (
	peerTargets []loadsim.Target
	peerStops   = map[string]func() (addrs []string, err error){}
)

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	var err error
	if binDir, err = localcluster.BinDirFromEnv(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if root, err = filepath.Abs("../.."); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	start := time.Now()
	if pnet, err = podnet.New(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "e2e setup:", err)
		return 1
	}
	defer pnet.Close()
	st, err = stack.Start(ctx, stack.Options{
		RepoRoot:        root,
		BinDir:          binDir,
		RulesFile:       filepath.Join(root, "testdata/rules/e2e.yaml"),
		Targets:         append([]loadsim.Target{web, api, worker, sleepy, pushy, office, alerty, queueTarget("quiet"), legacy, benchPush, benchSignal, selfzero, hot, haIdle, haPush, leaderPush, explained}, peerTargets...),
		Cluster:         localcluster.Options{HPASyncPeriod: syncDur, HPADownscaleStabilization: 5 * time.Second, PodCIDR: pnet.CIDR.String()},
		ResourceMetrics: true,
		Logf:            func(f string, a ...any) { fmt.Fprintf(os.Stderr, "e2e: "+f+"\n", a...) },
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e setup:", err)
		return 1
	}
	fmt.Fprintf(os.Stderr, "e2e: stack up in %s (work dir %s)\n", time.Since(start).Round(time.Millisecond), st.WorkDir())
	for _, t := range []loadsim.Target{web, api, worker} {
		if err := st.CreateWorkload(ctx, t, 1); err != nil {
			fmt.Fprintln(os.Stderr, err)
			_ = st.Stop()
			return 1
		}
	}
	code := m.Run()
	logPeakRSS()
	addrs := st.Addrs()
	for name, stop := range peerStops {
		peerAddrs, err := stop()
		if err != nil {
			fmt.Fprintf(os.Stderr, "e2e stop %s: %v\n", name, err)
			code = 1
		}
		addrs = append(addrs, peerAddrs...)
	}
	if err := st.Stop(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e stop:", err)
		code = 1
	}
	// Every process the stack started is gone: nothing it used still listens.
	for _, a := range addrs {
		if c, err := net.DialTimeout("tcp", a, time.Second); err == nil {
			c.Close()
			fmt.Fprintf(os.Stderr, "e2e: %s still listens after Stop\n", a)
			code = 1
		}
	}
	fmt.Fprintf(os.Stderr, "e2e: stopped; none of %d addresses listens\n", len(addrs))
	return code
}

// logPeakRSS prints the peak resident memory (VmHWM) of every process of the control plane and
// of the adapter over the whole suite. The adapter was restarted by TestE2EAdapterRestart, so its
// figure covers the suite's later tests only.
func logPeakRSS() {
	pids := st.Cluster.PIDs()
	pids["promql-adapter"] = st.AdapterPID()
	var total int64
	for name, pid := range pids {
		kb, err := localcluster.MemoryKiB(pid, "VmHWM")
		if err != nil {
			fmt.Fprintf(os.Stderr, "e2e: peak rss of %s: %v\n", name, err)
			continue
		}
		if name != "promql-adapter" {
			total += kb
		}
		fmt.Fprintf(os.Stderr, "e2e: peak rss %-24s %6.1f MiB\n", name, float64(kb)/1024)
	}
	fmt.Fprintf(os.Stderr, "e2e: peak rss control plane total %.1f MiB\n", float64(total)/1024)
}

// get GETs a path (with its query) through kube-apiserver, as `kubectl get --raw` does.
func get(path string, into any) error {
	u, err := url.Parse(path)
	if err != nil {
		return err
	}
	req := st.Kube.Discovery().RESTClient().Get().AbsPath(u.Path)
	for k, vs := range u.Query() {
		for _, v := range vs {
			req = req.Param(k, v)
		}
	}
	body, err := req.DoRaw(context.Background())
	if err != nil {
		return fmt.Errorf("GET %s: %v: %s", path, err, body)
	}
	if into != nil {
		if err := json.Unmarshal(body, into); err != nil {
			return fmt.Errorf("GET %s: %v", path, err)
		}
	}
	return nil
}

func raw(t *testing.T, path string, into any) {
	t.Helper()
	if err := get(path, into); err != nil {
		t.Fatal(err)
	}
}

func eventually(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	var last string
	err := wait.PollUntilContextTimeout(context.Background(), 250*time.Millisecond, timeout, true, func(context.Context) (bool, error) {
		ok, state := cond()
		last = state
		return ok, nil
	})
	if err != nil {
		t.Fatalf("%s: not within %s; last state: %s", what, timeout, last)
	}
}

func TestE2EMetricsThroughAggregator(t *testing.T) {
	if err := st.Sim.SetLoad(ns, "web", 40); err != nil {
		t.Fatal(err)
	}
	if err := st.Sim.SetQueue(ns, "worker", 5); err != nil {
		t.Fatal(err)
	}
	var list struct {
		Resources []struct{ Name string } `json:"resources"`
	}
	raw(t, "/apis/custom.metrics.k8s.io/v1beta2", &list)
	var names []string
	for _, r := range list.Resources {
		names = append(names, r.Name)
	}
	if got := strings.Join(names, ","); got != "pods/elu_utilization,services/service_requests_in_flight,services/service_requests_per_second" {
		t.Errorf("custom metrics listed: %s", got)
	}
	raw(t, "/apis/external.metrics.k8s.io/v1beta1", &list)
	if len(list.Resources) != 1 || list.Resources[0].Name != "queue_messages_ready" {
		t.Errorf("external metrics listed: %+v", list.Resources)
	}

	eventually(t, 30*time.Second, "pods/* values", func() (bool, string) {
		var v cmv1beta2.MetricValueList
		if err := get("/apis/custom.metrics.k8s.io/v1beta2/namespaces/demo/pods/*/elu_utilization?labelSelector="+url.QueryEscape("app=web"), &v); err != nil {
			return false, err.Error()
		}
		// One web pod at 40 req/s and capacity 100: ELU 0.4.
		return len(v.Items) == 1 && v.Items[0].Value.MilliValue() == 400, fmt.Sprintf("%+v", v.Items)
	})
	eventually(t, 30*time.Second, "Service object metric", func() (bool, string) {
		var v cmv1beta2.MetricValueList
		if err := get("/apis/custom.metrics.k8s.io/v1beta2/namespaces/demo/services/web/service_requests_per_second", &v); err != nil {
			return false, err.Error()
		}
		return len(v.Items) == 1 && math.Abs(float64(v.Items[0].Value.MilliValue())/1000-40) < 2, fmt.Sprintf("%+v", v.Items)
	})
	eventually(t, 30*time.Second, "external metric", func() (bool, string) {
		var v emv1beta1.ExternalMetricValueList
		if err := get("/apis/external.metrics.k8s.io/v1beta1/namespaces/demo/queue_messages_ready?labelSelector="+url.QueryEscape("queue=worker"), &v); err != nil {
			return false, err.Error()
		}
		return len(v.Items) == 1 && v.Items[0].Value.Value() == 5, fmt.Sprintf("%+v", v.Items)
	})
}

func hpa(name string, m autoscalingv2.MetricSpec) *autoscalingv2.HorizontalPodAutoscaler {
	return &autoscalingv2.HorizontalPodAutoscaler{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: autoscalingv2.HorizontalPodAutoscalerSpec{
			ScaleTargetRef: autoscalingv2.CrossVersionObjectReference{APIVersion: "apps/v1", Kind: "Deployment", Name: name},
			MinReplicas:    ptr.To[int32](1),
			MaxReplicas:    10,
			Metrics:        []autoscalingv2.MetricSpec{m},
			Behavior: &autoscalingv2.HorizontalPodAutoscalerBehavior{
				ScaleDown: &autoscalingv2.HPAScalingRules{StabilizationWindowSeconds: ptr.To[int32](5)},
			},
		},
	}
}

// TestE2EHPA drives three HPAs, one per metric kind, and checks that replicas follow the HPA formula.
func TestE2EHPA(t *testing.T) {
	cases := []struct {
		name       string
		hpa        *autoscalingv2.HorizontalPodAutoscaler
		up, down   func() error
		wantUp     int32
		wantDown   int32
		metricType autoscalingv2.MetricSourceType
	}{
		{
			// ELU per pod = load / (pods × 100), target 0.5 → ceil(load / 50): 320 req/s → 7, 60 req/s → 2.
			name: "web",
			hpa: hpa("web", autoscalingv2.MetricSpec{Type: autoscalingv2.PodsMetricSourceType, Pods: &autoscalingv2.PodsMetricSource{
				Metric: autoscalingv2.MetricIdentifier{Name: "elu_utilization"},
				Target: autoscalingv2.MetricTarget{Type: autoscalingv2.AverageValueMetricType, AverageValue: resource.NewMilliQuantity(500, resource.DecimalSI)},
			}}),
			up:         func() error { return st.Sim.SetLoad(ns, "web", 320) },
			down:       func() error { return st.Sim.SetLoad(ns, "web", 60) },
			wantUp:     7,
			wantDown:   2,
			metricType: autoscalingv2.PodsMetricSourceType,
		},
		{
			// Service request rate, 100 req/s per replica → ceil(load / 100): 250 → 3, 50 → 1.
			name: "api",
			hpa: hpa("api", autoscalingv2.MetricSpec{Type: autoscalingv2.ObjectMetricSourceType, Object: &autoscalingv2.ObjectMetricSource{
				DescribedObject: autoscalingv2.CrossVersionObjectReference{APIVersion: "v1", Kind: "Service", Name: "api"},
				Metric:          autoscalingv2.MetricIdentifier{Name: "service_requests_per_second"},
				Target:          autoscalingv2.MetricTarget{Type: autoscalingv2.AverageValueMetricType, AverageValue: resource.NewQuantity(100, resource.DecimalSI)},
			}}),
			up:         func() error { return st.Sim.SetLoad(ns, "api", 250) },
			down:       func() error { return st.Sim.SetLoad(ns, "api", 50) },
			wantUp:     3,
			wantDown:   1,
			metricType: autoscalingv2.ObjectMetricSourceType,
		},
		{
			// Queue length, 20 messages per replica → ceil(queue / 20): 70 → 4, 10 → 1.
			name: "worker",
			hpa: hpa("worker", autoscalingv2.MetricSpec{Type: autoscalingv2.ExternalMetricSourceType, External: &autoscalingv2.ExternalMetricSource{
				Metric: autoscalingv2.MetricIdentifier{Name: "queue_messages_ready", Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"queue": "worker"}}},
				Target: autoscalingv2.MetricTarget{Type: autoscalingv2.AverageValueMetricType, AverageValue: resource.NewQuantity(20, resource.DecimalSI)},
			}}),
			up:         func() error { return st.Sim.SetQueue(ns, "worker", 70) },
			down:       func() error { return st.Sim.SetQueue(ns, "worker", 10) },
			wantUp:     4,
			wantDown:   1,
			metricType: autoscalingv2.ExternalMetricSourceType,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			if _, err := st.Kube.AutoscalingV2().HorizontalPodAutoscalers(ns).Create(ctx, tc.hpa, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			if err := tc.up(); err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			waitReplicas(t, tc.name, tc.wantUp, 150*time.Second)
			t.Logf("%s: load up → %d replicas in %s", tc.name, tc.wantUp, time.Since(start).Round(100*time.Millisecond))

			h, err := st.Kube.AutoscalingV2().HorizontalPodAutoscalers(ns).Get(ctx, tc.name, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if c := condition(h, autoscalingv2.ScalingActive); c == nil || c.Status != corev1.ConditionTrue {
				t.Errorf("ScalingActive: %+v", c)
			}
			if len(h.Status.CurrentMetrics) != 1 || h.Status.CurrentMetrics[0].Type != tc.metricType {
				t.Errorf("current metrics: %+v", h.Status.CurrentMetrics)
			}
			describe(t, tc.name)

			if err := tc.down(); err != nil {
				t.Fatal(err)
			}
			start = time.Now()
			waitReplicas(t, tc.name, tc.wantDown, 150*time.Second)
			t.Logf("%s: load down → %d replicas in %s", tc.name, tc.wantDown, time.Since(start).Round(100*time.Millisecond))
		})
	}
}

func condition(h *autoscalingv2.HorizontalPodAutoscaler, typ autoscalingv2.HorizontalPodAutoscalerConditionType) *autoscalingv2.HorizontalPodAutoscalerCondition {
	for i := range h.Status.Conditions {
		if h.Status.Conditions[i].Type == typ {
			return &h.Status.Conditions[i]
		}
	}
	return nil
}

func waitReplicas(t *testing.T, name string, want int32, timeout time.Duration) {
	t.Helper()
	eventually(t, timeout, fmt.Sprintf("%s at %d ready replicas", name, want), func() (bool, string) {
		d, err := st.Kube.AppsV1().Deployments(ns).Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		h, _ := st.Kube.AutoscalingV2().HorizontalPodAutoscalers(ns).Get(context.Background(), name, metav1.GetOptions{})
		state := fmt.Sprintf("spec %d ready %d", ptr.Deref(d.Spec.Replicas, 0), d.Status.ReadyReplicas)
		if h != nil {
			state += fmt.Sprintf(" hpa desired %d metrics %+v conditions %+v", h.Status.DesiredReplicas, h.Status.CurrentMetrics, h.Status.Conditions)
		}
		return ptr.Deref(d.Spec.Replicas, 0) == want && d.Status.ReadyReplicas == want, state
	})
}

// describe runs `kubectl describe hpa` and checks it shows the metric with a current value.
func describe(t *testing.T, name string) {
	t.Helper()
	out, err := exec.Command(filepath.Join(binDir, "kubectl"), "--kubeconfig", st.Cluster.AdminKubeconfig(), "-n", ns, "describe", "hpa", name).CombinedOutput()
	if err != nil {
		t.Fatalf("kubectl describe hpa %s: %v\n%s", name, err, out)
	}
	s := string(out)
	if strings.Contains(s, "<unknown>") || !strings.Contains(s, "ScalingActive") {
		t.Errorf("kubectl describe hpa %s lacks a current value:\n%s", name, s)
	}
}

// TestE2EAdapterRestart kills the adapter mid-run and checks that the HPA recovers once it is back.
func TestE2EAdapterRestart(t *testing.T) {
	ctx := context.Background()
	h := hpa("web", autoscalingv2.MetricSpec{})
	if _, err := st.Kube.AutoscalingV2().HorizontalPodAutoscalers(ns).Get(ctx, h.Name, metav1.GetOptions{}); err != nil {
		t.Fatalf("needs the web HPA of TestE2EHPA: %v", err)
	}
	active := func(want corev1.ConditionStatus) func() (bool, string) {
		return func() (bool, string) {
			h, err := st.Kube.AutoscalingV2().HorizontalPodAutoscalers(ns).Get(ctx, "web", metav1.GetOptions{})
			if err != nil {
				return false, err.Error()
			}
			c := condition(h, autoscalingv2.ScalingActive)
			return c != nil && c.Status == want, fmt.Sprintf("%+v", c)
		}
	}
	eventually(t, 30*time.Second, "web HPA active before the kill", active(corev1.ConditionTrue))
	if err := st.StopAdapter(); err != nil {
		t.Fatal(err)
	}
	eventually(t, 60*time.Second, "web HPA inactive while the adapter is down", active(corev1.ConditionFalse))
	if err := st.StartAdapter(ctx); err != nil {
		t.Fatal(err)
	}
	restarted := time.Now()
	if err := st.WaitMetricsAPI(ctx, 60*time.Second); err != nil {
		t.Fatal(err)
	}
	served := time.Now()
	eventually(t, 60*time.Second, "web HPA active again", active(corev1.ConditionTrue))
	recovered := time.Now()
	t.Logf("adapter restart → served through kube-apiserver in %s; → HPA ScalingActive=True %s later (sync period %s)",
		served.Sub(restarted).Round(100*time.Millisecond), recovered.Sub(served).Round(100*time.Millisecond), syncDur)
	// The HPA must pick the adapter up on its next syncs once kube-apiserver serves it again.
	if d := recovered.Sub(served); d > 2*syncDur+time.Second {
		t.Errorf("HPA took %s after the metrics API was back, more than two sync periods (%s)", d, 2*syncDur)
	}
}
