package inspect

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/utils/ptr"

	"github.com/promql-adapter/promql-adapter/adapter"
	"github.com/promql-adapter/promql-adapter/internal/testutil"
	"github.com/promql-adapter/promql-adapter/naming"
	"github.com/promql-adapter/promql-adapter/server"
)

// valueProm is an httptest Prometheus whose instant queries answer, per series name found in the
// query, a fixed vector; it records the queries.
type valueProm struct {
	series  map[string][]map[string]string // series name → samples' labels, with the value under "="
	mu      sync.Mutex
	queries []string
}

func (v *valueProm) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil || !strings.HasSuffix(r.URL.Path, "/api/v1/query") {
		http.NotFound(w, r)
		return
	}
	q := r.Form.Get("query")
	v.mu.Lock()
	v.queries = append(v.queries, q)
	v.mu.Unlock()
	result := []any{}
	for name, samples := range v.series {
		if !strings.Contains(q, name+"{") {
			continue
		}
		for _, s := range samples {
			metric := map[string]string{}
			for k, val := range s {
				if k != "=" {
					metric[k] = val
				}
			}
			result = append(result, map[string]any{"metric": metric, "value": []any{1765000000.0, s["="]}})
		}
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"status": "success", "data": map[string]any{"resultType": "vector", "result": result}})
}

func pod(name, app string, phase corev1.PodPhase, ready bool) *corev1.Pod {
	st := corev1.ConditionFalse
	if ready {
		st = corev1.ConditionTrue
	}
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "shop", Labels: map[string]string{"app": app}},
		Status:     corev1.PodStatus{Phase: phase, Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: st}}},
	}
}

// shopHPA scales Deployment web on five metrics: a Pods and an Object and an External metric the
// rules serve, a Resource metric, and an External metric another adapter serves.
func shopHPA() *autoscalingv2.HorizontalPodAutoscaler {
	scaleTime := metav1.NewTime(time.Date(2026, 12, 7, 15, 0, 0, 0, time.UTC))
	q := resource.MustParse
	return &autoscalingv2.HorizontalPodAutoscaler{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "shop"},
		Spec: autoscalingv2.HorizontalPodAutoscalerSpec{
			ScaleTargetRef: autoscalingv2.CrossVersionObjectReference{APIVersion: "apps/v1", Kind: "Deployment", Name: "web"},
			MinReplicas:    ptr.To[int32](1),
			MaxReplicas:    6,
			Metrics: []autoscalingv2.MetricSpec{
				{Type: autoscalingv2.PodsMetricSourceType, Pods: &autoscalingv2.PodsMetricSource{
					Metric: autoscalingv2.MetricIdentifier{Name: "elu_utilization"},
					Target: autoscalingv2.MetricTarget{Type: autoscalingv2.AverageValueMetricType, AverageValue: ptr.To(q("500m"))}}},
				{Type: autoscalingv2.ObjectMetricSourceType, Object: &autoscalingv2.ObjectMetricSource{
					DescribedObject: autoscalingv2.CrossVersionObjectReference{APIVersion: "v1", Kind: "Service", Name: "web"},
					Metric:          autoscalingv2.MetricIdentifier{Name: "service_requests_per_second"},
					Target:          autoscalingv2.MetricTarget{Type: autoscalingv2.ValueMetricType, Value: ptr.To(q("100"))}}},
				{Type: autoscalingv2.ExternalMetricSourceType, External: &autoscalingv2.ExternalMetricSource{
					Metric: autoscalingv2.MetricIdentifier{Name: "queue_messages_ready", Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"queue": "orders"}}},
					Target: autoscalingv2.MetricTarget{Type: autoscalingv2.AverageValueMetricType, AverageValue: ptr.To(q("20"))}}},
				{Type: autoscalingv2.ResourceMetricSourceType, Resource: &autoscalingv2.ResourceMetricSource{
					Name: corev1.ResourceCPU, Target: autoscalingv2.MetricTarget{Type: autoscalingv2.UtilizationMetricType, AverageUtilization: ptr.To[int32](80)}}},
				{Type: autoscalingv2.ExternalMetricSourceType, External: &autoscalingv2.ExternalMetricSource{
					Metric: autoscalingv2.MetricIdentifier{Name: "keda_queue_length"},
					Target: autoscalingv2.MetricTarget{Type: autoscalingv2.AverageValueMetricType, AverageValue: ptr.To(q("10"))}}},
			},
			Behavior: &autoscalingv2.HorizontalPodAutoscalerBehavior{
				ScaleUp: &autoscalingv2.HPAScalingRules{StabilizationWindowSeconds: ptr.To[int32](0), SelectPolicy: ptr.To(autoscalingv2.MaxChangePolicySelect),
					Policies: []autoscalingv2.HPAScalingPolicy{{Type: autoscalingv2.PodsScalingPolicy, Value: 4, PeriodSeconds: 15}, {Type: autoscalingv2.PercentScalingPolicy, Value: 100, PeriodSeconds: 15}}},
				ScaleDown: &autoscalingv2.HPAScalingRules{StabilizationWindowSeconds: ptr.To[int32](300)},
			},
		},
		Status: autoscalingv2.HorizontalPodAutoscalerStatus{
			CurrentReplicas: 3, DesiredReplicas: 6, LastScaleTime: &scaleTime,
			CurrentMetrics: []autoscalingv2.MetricStatus{
				{Type: autoscalingv2.PodsMetricSourceType, Pods: &autoscalingv2.PodsMetricStatus{Metric: autoscalingv2.MetricIdentifier{Name: "elu_utilization"}, Current: autoscalingv2.MetricValueStatus{AverageValue: ptr.To(q("800m"))}}},
				{Type: autoscalingv2.ObjectMetricSourceType, Object: &autoscalingv2.ObjectMetricStatus{Metric: autoscalingv2.MetricIdentifier{Name: "service_requests_per_second"},
					DescribedObject: autoscalingv2.CrossVersionObjectReference{APIVersion: "v1", Kind: "Service", Name: "web"}, Current: autoscalingv2.MetricValueStatus{Value: ptr.To(q("250"))}}},
				{Type: autoscalingv2.ExternalMetricSourceType, External: &autoscalingv2.ExternalMetricStatus{Metric: autoscalingv2.MetricIdentifier{Name: "queue_messages_ready"}, Current: autoscalingv2.MetricValueStatus{AverageValue: ptr.To(q("23334m"))}}},
				{Type: autoscalingv2.ResourceMetricSourceType, Resource: &autoscalingv2.ResourceMetricStatus{Name: corev1.ResourceCPU, Current: autoscalingv2.MetricValueStatus{AverageUtilization: ptr.To[int32](60), AverageValue: ptr.To(q("120m"))}}},
				{Type: autoscalingv2.ExternalMetricSourceType, External: &autoscalingv2.ExternalMetricStatus{Metric: autoscalingv2.MetricIdentifier{Name: "keda_queue_length"}, Current: autoscalingv2.MetricValueStatus{AverageValue: ptr.To(q("5"))}}},
			},
			Conditions: []autoscalingv2.HorizontalPodAutoscalerCondition{
				{Type: autoscalingv2.AbleToScale, Status: corev1.ConditionTrue, Reason: "ReadyForNewScale", Message: "recommended size matches current size"},
				{Type: autoscalingv2.ScalingActive, Status: corev1.ConditionTrue, Reason: "ValidMetricFound", Message: "the HPA was able to successfully calculate a replica count from service metric service_requests_per_second"},
				{Type: autoscalingv2.ScalingLimited, Status: corev1.ConditionTrue, Reason: "TooManyReplicas", Message: "the desired replica count is more than the maximum replica count"},
			},
		},
	}
}

// shopCluster is a fake clientset with the HPA, its Deployment, three web pods and one other pod.
func shopCluster(objs ...runtime.Object) *fake.Clientset {
	dep := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "shop"},
		Spec:       appsv1.DeploymentSpec{Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}}},
	}
	base := []runtime.Object{dep,
		pod("web-1", "web", corev1.PodRunning, true), pod("web-2", "web", corev1.PodRunning, true),
		pod("web-3", "web", corev1.PodRunning, true), pod("api-1", "api", corev1.PodRunning, true)}
	return fake.NewClientset(append(base, objs...)...)
}

func shopProm() *valueProm {
	return &valueProm{series: map[string][]map[string]string{
		"elu_utilization": {
			{"namespace": "shop", "pod": "web-1", "=": "0.8"},
			{"namespace": "shop", "pod": "web-2", "=": "0.9"},
			{"namespace": "shop", "pod": "web-3", "=": "0.7"},
		},
		"http_requests_total":  {{"namespace": "shop", "service": "web", "=": "250"}},
		"queue_messages_ready": {{"queue": "orders", "=": "70"}},
	}}
}

func shopSource(t *testing.T, kube *fake.Clientset, prom http.Handler) HPASource {
	t.Helper()
	rules, _, err := server.LoadRules("../testdata/rules/e2e.yaml", naming.BuiltinResources())
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(prom)
	t.Cleanup(srv.Close)
	q, err := adapter.NewPromClient(adapter.PrometheusConfig{URL: srv.URL, Timeout: 5 * time.Second}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return HPASource{Kube: kube, Rules: rules, Querier: q, Timeout: 5 * time.Second}
}

// TestExplainHPA: every metric kind of one HPA, its rule, query, values and proposal, the largest
// clamped to maxReplicas, and the HPA's status; text and JSON goldens.
func TestExplainHPA(t *testing.T) {
	prom := shopProm()
	x, err := ExplainHPA(context.Background(), shopSource(t, shopCluster(shopHPA()), prom), "shop", "web")
	if err != nil {
		t.Fatal(err)
	}
	x.RuleFile = "rules.yaml"
	want := []struct {
		rule, query string
		replicas    int32
	}{
		// 800m average / 500m = 1.6; ceil(1.6 × 3) = 5.
		{"metrics[0] (metric)", `avg by (namespace, pod) (avg_over_time(elu_utilization{namespace="shop",pod=~"web-1|web-2|web-3"}[5s]))`, 5},
		// 250 / 100 = 2.5; ceil(2.5 × 3 ready) = 8.
		{"metrics[1] (metric)", `sum by (namespace, service) (rate(http_requests_total{namespace="shop",service="web"}[10s]))`, 8},
		// 70 over 20 per pod: ceil(70 / 20) = 4.
		{"metrics[2] (metric)", `sum by (queue) (queue_messages_ready{namespace="shop",queue="orders"})`, 4},
		// From the status: 60% / 80% = 0.75; ceil(0.75 × 3) = 3.
		{resourceText, "", 3},
		// From the status: 5 × 3 = 15 over 10 per pod: ceil(15 / 10) = 2.
		{notServedText, "", 2},
	}
	if len(x.Metrics) != len(want) {
		t.Fatalf("%d metrics, want %d", len(x.Metrics), len(want))
	}
	for i, w := range want {
		m := x.Metrics[i]
		if m.Rule != w.rule || m.Query != w.query || m.Replicas == nil || *m.Replicas != w.replicas {
			t.Errorf("metric %d: rule %q query %q replicas %v (%s); want %q %q %d", i, m.Rule, m.Query, m.Replicas, m.How, w.rule, w.query, w.replicas)
		}
	}
	if d := x.Decision; d.Proposal != 8 || d.Desired != 6 || d.Clamped != "maxReplicas" {
		t.Errorf("decision %+v, want 8 clamped to maxReplicas 6", d)
	}
	if len(x.Notes) != 0 {
		t.Errorf("status.desiredReplicas equals the computation, yet notes: %q", x.Notes)
	}
	var text, js bytes.Buffer
	if err := x.WriteText(&text); err != nil {
		t.Fatal(err)
	}
	if err := x.WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	testutil.Golden(t, filepath.Join("testdata", "golden", "explain_hpa.txt"), text.String(), *update)
	testutil.Golden(t, filepath.Join("testdata", "golden", "explain_hpa.json"), js.String(), *update)
	var back HPAExplanation
	if err := json.Unmarshal(js.Bytes(), &back); err != nil || back.Decision != x.Decision || back.Status.DesiredReplicas != 6 {
		t.Errorf("JSON does not read back: %v %+v", err, back.Decision)
	}
}

// TestExplainHPADiffersFromStatus: a status.desiredReplicas other than the computation is named,
// with the stabilization window and policies as the likely cause; a missing pod value counts.
func TestExplainHPADiffersFromStatus(t *testing.T) {
	h := shopHPA()
	h.Spec.Metrics = h.Spec.Metrics[:1]
	h.Status.CurrentMetrics = h.Status.CurrentMetrics[:1]
	h.Status.DesiredReplicas = 3
	prom := shopProm()
	prom.series["elu_utilization"] = prom.series["elu_utilization"][:2] // web-3 has no value
	x, err := ExplainHPA(context.Background(), shopSource(t, shopCluster(h), prom), "shop", "web")
	if err != nil {
		t.Fatal(err)
	}
	// (800m + 900m) / 2 = 850m, 1.7; web-3 counts as 0: 1700m / 3 = 566m, 1.132; ceil(1.132 × 3) = 4.
	if m := x.Metrics[0]; m.Replicas == nil || *m.Replicas != 4 || !strings.Contains(m.How, "1 pods without a value") {
		t.Errorf("proposal %v %q, want 4 with the missing pod counted", m.Replicas, m.How)
	}
	if len(x.Notes) != 1 || !strings.Contains(x.Notes[0], "status.desiredReplicas is 3, this computation 4") || !strings.Contains(x.Notes[0], "stabilization window") {
		t.Errorf("notes %q", x.Notes)
	}
}

// TestExplainHPAUnknown: an HPA that does not exist is ErrNoHPA, and the error lists the namespace's HPAs.
func TestExplainHPAUnknown(t *testing.T) {
	other := shopHPA()
	other.Name = "api"
	src := shopSource(t, shopCluster(shopHPA(), other), shopProm())
	_, err := ExplainHPA(context.Background(), src, "shop", "wbe")
	if !errors.Is(err, ErrNoHPA) || !strings.Contains(err.Error(), "no HPA shop/wbe; HPAs in namespace shop: api, web") {
		t.Errorf("error %v", err)
	}
	_, err = ExplainHPA(context.Background(), src, "empty", "web")
	if !errors.Is(err, ErrNoHPA) || !strings.Contains(err.Error(), "namespace empty has no HPA") {
		t.Errorf("error %v", err)
	}
}

// TestRunExplainHPAArgs: explain hpa wants NAMESPACE/NAME, and reads the flags that follow it.
func TestRunExplainHPAArgs(t *testing.T) {
	run := func(args ...string) (int, string) {
		var out, errOut bytes.Buffer
		code := RunExplain(context.Background(), args, &out, &errOut)
		return code, errOut.String()
	}
	if code, msg := run("hpa", "web", "--config", "../testdata/rules/e2e.yaml"); code != ExitUsage || !strings.Contains(msg, `"web": want NAMESPACE/NAME`) {
		t.Errorf("hpa web: %d %q", code, msg)
	}
	missing := filepath.Join(t.TempDir(), "no-kubeconfig")
	if code, msg := run("hpa", "shop/web", "--config", "../testdata/rules/e2e.yaml", "--kubeconfig", missing); code != ExitUsage || !strings.Contains(msg, "kubeconfig") || !strings.Contains(msg, missing) {
		t.Errorf("--kubeconfig after the HPA: %d %q", code, msg)
	}
	if code, msg := run("--config", "../testdata/rules/e2e.yaml", "hpa"); code != ExitUsage || !strings.Contains(msg, "usage:") {
		t.Errorf("hpa without a name: %d %q", code, msg)
	}
}

// TestBehaviorText: behavior as text, the controller's defaults named when a direction is not set.
func TestBehaviorText(t *testing.T) {
	got := behaviorText(nil)
	if len(got) != 2 || !strings.Contains(got[0], "scaleUp: no stabilization, at most 4 pods or 100% per 15s") ||
		!strings.Contains(got[1], "scaleDown: the controller's --horizontal-pod-autoscaler-downscale-stabilization window") {
		t.Errorf("nil behavior: %q", got)
	}
	tol := resource.MustParse("50m")
	b := &autoscalingv2.HorizontalPodAutoscalerBehavior{ScaleDown: &autoscalingv2.HPAScalingRules{
		StabilizationWindowSeconds: ptr.To[int32](60), SelectPolicy: ptr.To(autoscalingv2.MinChangePolicySelect), Tolerance: &tol,
		Policies: []autoscalingv2.HPAScalingPolicy{{Type: autoscalingv2.PodsScalingPolicy, Value: 1, PeriodSeconds: 30}}}}
	if got := behaviorText(b)[1]; got != "scaleDown: stabilization window 60s, policies 1 pods per 30s (select Min), tolerance 50m" {
		t.Errorf("scaleDown: %q", got)
	}
}

// TestExplainHPAScaleTarget: the pods are those of a StatefulSet's selector too; a kind explain cannot read is named.
func TestExplainHPAScaleTarget(t *testing.T) {
	h := shopHPA()
	h.Spec.ScaleTargetRef = autoscalingv2.CrossVersionObjectReference{APIVersion: "apps/v1", Kind: "StatefulSet", Name: "db"}
	sts := &appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Name: "db", Namespace: "shop"},
		Spec: appsv1.StatefulSetSpec{Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "api"}}}}
	x, err := ExplainHPA(context.Background(), shopSource(t, shopCluster(h, sts), shopProm()), "shop", "web")
	if err != nil || x.Selector != "app=api" || x.Pods != 1 || x.ScaleTarget != "StatefulSet/db" {
		t.Errorf("StatefulSet: %v %+v", err, x)
	}
	h.Spec.ScaleTargetRef.Kind = "Rollout"
	_, err = ExplainHPA(context.Background(), shopSource(t, shopCluster(h), shopProm()), "shop", "web")
	if err == nil || !strings.Contains(err.Error(), "Rollout/db: explain hpa reads the pods of a Deployment, StatefulSet or ReplicaSet only") {
		t.Errorf("Rollout: %v", err)
	}
}
