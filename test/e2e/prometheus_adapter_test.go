//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	autoscalingv2 "k8s.io/api/autoscaling/v2"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/promql-adapter/promql-adapter/internal/loadsim"
)

// legacy is scaled by an HPA whose metric comes from a prometheus-adapter config.
var legacy = loadsim.Target{Namespace: ns, Deployment: "legacy", Service: "legacy", Capacity: 100, MatchLabels: map[string]string{"app": "legacy"}}

// TestE2EPrometheusAdapterConfig: the adapter is switched (by hot reload) to a prometheus-adapter
// config file, unchanged, and the metric it defines drives an HPA: ELU per pod = load / (pods × 100),
// target 0.5 → ceil(160 / 50) = 4 replicas.
func TestE2EPrometheusAdapterConfig(t *testing.T) {
	ctx := context.Background()
	pa, err := os.ReadFile("../../testdata/rules/prometheus-adapter.yaml")
	if err != nil {
		t.Fatal(err)
	}
	native, err := os.ReadFile("../../testdata/rules/e2e.yaml")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := st.ReplaceRules(native); err != nil {
			t.Error(err)
		}
		eventually(t, 30*time.Second, "native rules back", func() (bool, string) {
			var list struct{ Resources []struct{ Name string } }
			err := get("/apis/custom.metrics.k8s.io/v1beta2", &list)
			return err == nil && len(list.Resources) == 3, fmt.Sprint(list.Resources, err)
		})
	})
	if err := st.ReplaceRules(pa); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "prometheus-adapter metrics listed through kube-apiserver", func() (bool, string) {
		var list struct{ Resources []struct{ Name string } }
		if err := get("/apis/custom.metrics.k8s.io/v1beta2", &list); err != nil {
			return false, err.Error()
		}
		var names []string
		for _, r := range list.Resources {
			names = append(names, r.Name)
		}
		return strings.Join(names, ",") == "namespaces/elu_utilization_pa,pods/elu_utilization_pa", strings.Join(names, ",")
	})

	if err := st.CreateWorkload(ctx, legacy, 1); err != nil {
		t.Fatal(err)
	}
	h := hpa("legacy", autoscalingv2.MetricSpec{Type: autoscalingv2.PodsMetricSourceType, Pods: &autoscalingv2.PodsMetricSource{
		Metric: autoscalingv2.MetricIdentifier{Name: "elu_utilization_pa"},
		Target: autoscalingv2.MetricTarget{Type: autoscalingv2.AverageValueMetricType, AverageValue: resource.NewMilliQuantity(500, resource.DecimalSI)},
	}})
	if _, err := st.Kube.AutoscalingV2().HorizontalPodAutoscalers(ns).Create(ctx, h, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := st.Sim.SetLoad(ns, "legacy", 160); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	waitReplicas(t, "legacy", 4, 150*time.Second)
	t.Logf("prometheus-adapter config: legacy 1 → 4 replicas in %s", time.Since(start).Round(100*time.Millisecond))
}
