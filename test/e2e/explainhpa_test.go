//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/url"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	cmv1beta2 "k8s.io/metrics/pkg/apis/custom_metrics/v1beta2"
	emv1beta1 "k8s.io/metrics/pkg/apis/external_metrics/v1beta1"
	"k8s.io/utils/ptr"

	"github.com/promql-adapter/promql-adapter/inspect"
	"github.com/promql-adapter/promql-adapter/internal/loadsim"
)

// explainNS holds TestE2EExplainHPA's own workload and HPA.
const explainNS = "explain"

var explained = loadsim.Target{Namespace: explainNS, Deployment: "web", Service: "web", Capacity: 100, MatchLabels: map[string]string{"app": "web"}}

// TestE2EExplainHPA runs `promql-adapter explain hpa --json` against a live HPA scaling on three of the adapter's
// metrics (Pods, Object, External) and checks it against the HPA's own status read at the same moment (replicas,
// conditions, and the computation equal to status.desiredReplicas once steady), and its values against the answers
// of the custom and external metrics APIs through kube-apiserver.
func TestE2EExplainHPA(t *testing.T) {
	ctx := context.Background()
	if err := st.CreateWorkload(ctx, explained, 1); err != nil {
		t.Fatal(err)
	}
	// ELU = 120 / (pods × 100), target 500m → 3 pods (ELU 0.4); 120 req/s over 100 per pod → 2; the queue (30 messages,
	// 20 per pod) drains at the pods' capacity, so it asks for at most 2.
	if err := st.Sim.SetLoad(explainNS, "web", 120); err != nil {
		t.Fatal(err)
	}
	if err := st.Sim.SetQueue(explainNS, "web", 30); err != nil {
		t.Fatal(err)
	}
	h := explainedHPA()
	hpas := st.Kube.AutoscalingV2().HorizontalPodAutoscalers(explainNS)
	if _, err := hpas.Create(ctx, h, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = hpas.Delete(context.Background(), h.Name, metav1.DeleteOptions{}) })
	eventually(t, 150*time.Second, "HPA steady at 3 replicas", func() (bool, string) {
		got, err := hpas.Get(ctx, h.Name, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		c := condition(got, autoscalingv2.ScalingActive)
		ok := c != nil && c.Status == corev1.ConditionTrue && got.Status.CurrentReplicas == 3 && got.Status.DesiredReplicas == 3 && len(got.Status.CurrentMetrics) == 3
		return ok, fmt.Sprintf("%+v", got.Status)
	})

	start := time.Now()
	var x inspect.HPAExplanation
	var status autoscalingv2.HorizontalPodAutoscalerStatus
	eventually(t, 60*time.Second, "explain hpa agrees with the HPA's status read around it", func() (bool, string) {
		before, err := hpas.Get(ctx, h.Name, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		x = explainHPA(t, explainNS+"/"+h.Name)
		after, err := hpas.Get(ctx, h.Name, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		if before.ResourceVersion != after.ResourceVersion {
			return false, "the HPA changed while explain ran"
		}
		status = after.Status
		return agrees(x, after), fmt.Sprintf("explain %+v %+v, HPA status %+v", x.Status, x.Decision, after.Status)
	})
	t.Logf("explain hpa: agreed with the HPA's status within %s", time.Since(start).Round(100*time.Millisecond))
	if x.CurrentReplicas != 3 || x.Decision.Desired != status.DesiredReplicas || x.Decision.From != "[1] Pods elu_utilization" {
		t.Errorf("computation %+v from %d replicas, HPA desiredReplicas %d", x.Decision, x.CurrentReplicas, status.DesiredReplicas)
	}
	for i, m := range x.Metrics {
		if m.Rule != fmt.Sprintf("metrics[%d] (metric)", []int{0, 1, 2}[i]) || m.ValuesFrom != "prometheus" || m.Replicas == nil {
			t.Errorf("metric %d: rule %q, values from %q, replicas %v: %s", i, m.Rule, m.ValuesFrom, m.Replicas, m.Error)
		}
	}
	if q := x.Metrics[0].Query; !strings.Contains(q, `pod=~"web-`) || !strings.Contains(q, `namespace="explain"`) {
		t.Errorf("the Pods query does not name the HPA's pods: %s", q)
	}
	checkValuesAgainstAPIs(t, x)

	text, code, stderr := runExplain(t, explainNS+"/"+h.Name)
	t.Logf("explain hpa %s/%s (exit %d):\n%s", explainNS, h.Name, code, text)
	if code != inspect.ExitOK || !strings.Contains(text, "[1] Pods elu_utilization") || stderr != "" {
		t.Errorf("text output: exit %d, stderr %q", code, stderr)
	}
	// A misspelt HPA: exit 1, and the namespace's HPAs are listed.
	if _, code, stderr := runExplain(t, explainNS+"/wbe"); code != inspect.ExitBroken || !strings.Contains(stderr, "HPAs in namespace explain: web") {
		t.Errorf("unknown HPA: exit %d, stderr %q", code, stderr)
	}
}

// runExplain runs explain hpa in text and returns its stdout, exit code and stderr.
func runExplain(t *testing.T, target string) (string, int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(st.WorkDir(), "promql-adapter"), "explain", "hpa", target,
		"--config", filepath.Join(st.WorkDir(), "rules.yaml"), "--kubeconfig", st.Cluster.AdminKubeconfig(),
		"--prometheus-url", st.Prom.URL())
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return stdout.String(), 0, stderr.String()
	case errors.As(err, &exit):
		return stdout.String(), exit.ExitCode(), stderr.String()
	}
	t.Fatalf("explain hpa %s: %v", target, err)
	return "", 0, ""
}

func explainedHPA() *autoscalingv2.HorizontalPodAutoscaler {
	return &autoscalingv2.HorizontalPodAutoscaler{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: explainNS},
		Spec: autoscalingv2.HorizontalPodAutoscalerSpec{
			ScaleTargetRef: autoscalingv2.CrossVersionObjectReference{APIVersion: "apps/v1", Kind: "Deployment", Name: "web"},
			MinReplicas:    ptr.To[int32](1),
			MaxReplicas:    5,
			Metrics: []autoscalingv2.MetricSpec{
				{Type: autoscalingv2.PodsMetricSourceType, Pods: &autoscalingv2.PodsMetricSource{
					Metric: autoscalingv2.MetricIdentifier{Name: "elu_utilization"},
					Target: autoscalingv2.MetricTarget{Type: autoscalingv2.AverageValueMetricType, AverageValue: resource.NewMilliQuantity(500, resource.DecimalSI)}}},
				{Type: autoscalingv2.ObjectMetricSourceType, Object: &autoscalingv2.ObjectMetricSource{
					DescribedObject: autoscalingv2.CrossVersionObjectReference{APIVersion: "v1", Kind: "Service", Name: "web"},
					Metric:          autoscalingv2.MetricIdentifier{Name: "service_requests_per_second"},
					Target:          autoscalingv2.MetricTarget{Type: autoscalingv2.AverageValueMetricType, AverageValue: resource.NewQuantity(100, resource.DecimalSI)}}},
				{Type: autoscalingv2.ExternalMetricSourceType, External: &autoscalingv2.ExternalMetricSource{
					Metric: autoscalingv2.MetricIdentifier{Name: "queue_messages_ready", Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"queue": "web"}}},
					Target: autoscalingv2.MetricTarget{Type: autoscalingv2.AverageValueMetricType, AverageValue: resource.NewQuantity(20, resource.DecimalSI)}}},
			},
			Behavior: &autoscalingv2.HorizontalPodAutoscalerBehavior{
				ScaleDown: &autoscalingv2.HPAScalingRules{StabilizationWindowSeconds: ptr.To[int32](5)},
			},
		},
	}
}

// explainHPA runs the stack's promql-adapter binary: explain hpa --json, with the stack's rules, kubeconfig and Prometheus.
func explainHPA(t *testing.T, target string) inspect.HPAExplanation {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(st.WorkDir(), "promql-adapter"), "explain", "hpa", target,
		"--config", filepath.Join(st.WorkDir(), "rules.yaml"), "--kubeconfig", st.Cluster.AdminKubeconfig(),
		"--prometheus-url", st.Prom.URL(), "--json")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("explain hpa %s: %v: %s", target, err, stderr.String())
	}
	var x inspect.HPAExplanation
	if err := json.Unmarshal(out, &x); err != nil {
		t.Fatalf("explain hpa --json: %v: %s", err, out)
	}
	return x
}

// agrees reports whether the explanation's status is the HPA's: replicas, conditions, and the computation.
func agrees(x inspect.HPAExplanation, h *autoscalingv2.HorizontalPodAutoscaler) bool {
	var conds []inspect.HPACondition
	for _, c := range h.Status.Conditions {
		conds = append(conds, inspect.HPACondition{Type: string(c.Type), Status: string(c.Status), Reason: c.Reason, Message: c.Message})
	}
	return x.Status.CurrentReplicas == h.Status.CurrentReplicas && x.Status.DesiredReplicas == h.Status.DesiredReplicas &&
		reflect.DeepEqual(x.Status.Conditions, conds) && len(x.Status.CurrentMetrics) == len(h.Status.CurrentMetrics) &&
		x.Decision.Desired == h.Status.DesiredReplicas
}

// checkValuesAgainstAPIs compares the values explain printed with the metrics APIs' answers for the same requests.
func checkValuesAgainstAPIs(t *testing.T, x inspect.HPAExplanation) {
	t.Helper()
	var pods cmv1beta2.MetricValueList
	raw(t, "/apis/custom.metrics.k8s.io/v1beta2/namespaces/explain/pods/*/elu_utilization?labelSelector="+url.QueryEscape("app=web"), &pods)
	api := map[string]float64{}
	for _, it := range pods.Items {
		api[it.DescribedObject.Name] = it.Value.AsApproximateFloat64()
	}
	compareValues(t, "Pods elu_utilization", x.Metrics[0].Values, api, 0.02)

	var svc cmv1beta2.MetricValueList
	raw(t, "/apis/custom.metrics.k8s.io/v1beta2/namespaces/explain/services/web/service_requests_per_second", &svc)
	api = map[string]float64{}
	for _, it := range svc.Items {
		api[it.DescribedObject.Name] = it.Value.AsApproximateFloat64()
	}
	compareValues(t, "Object service_requests_per_second", x.Metrics[1].Values, api, 120*0.05)

	var ext emv1beta1.ExternalMetricValueList
	raw(t, "/apis/external.metrics.k8s.io/v1beta1/namespaces/explain/queue_messages_ready?labelSelector="+url.QueryEscape("queue=web"), &ext)
	api = map[string]float64{}
	for _, it := range ext.Items {
		api["{queue=web}"] = it.Value.AsApproximateFloat64()
	}
	compareValues(t, "External queue_messages_ready", x.Metrics[2].Values, api, 0)
}

func compareValues(t *testing.T, what string, got []inspect.Sample, want map[string]float64, within float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%s: explain printed %d values %+v, the metrics API answers %d %v", what, len(got), got, len(want), want)
		return
	}
	for _, s := range got {
		q, err := resource.ParseQuantity(s.Value)
		w, ok := want[s.Object]
		if err != nil || !ok || math.Abs(q.AsApproximateFloat64()-w) > within {
			t.Errorf("%s: explain printed %s=%s, the metrics API answers %v (within %v)", what, s.Object, s.Value, want, within)
		}
	}
}
