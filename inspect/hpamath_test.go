package inspect

import (
	"strings"
	"testing"

	autoscalingv2 "k8s.io/api/autoscaling/v2"
	"k8s.io/apimachinery/pkg/api/resource"
)

// TestPropose: one metric's proposal against cases worked by hand with the controller's formulas.
func TestPropose(t *testing.T) {
	def := tolerance{up: 0.1, down: 0.1}
	tests := []struct {
		name    string
		in      metricInput
		current int32
		tol     tolerance
		want    int32
		ratio   float64
		how     string // a substring of the arithmetic shown
	}{
		{
			// (800m+900m+700m)/3 = 800m; 800m/500m = 1.6; ceil(1.6 × 3) = 5.
			name:    "pods average value",
			in:      metricInput{source: autoscalingv2.PodsMetricSourceType, targetType: autoscalingv2.AverageValueMetricType, target: 500, values: []int64{800, 900, 700}},
			current: 3, tol: def, want: 5, ratio: 1.6, how: "ceil(1.600 × 3 pods) = 5",
		},
		{
			// 250/100 = 2.5; ceil(2.5 × 2 ready pods) = 5.
			name:    "object value",
			in:      metricInput{source: autoscalingv2.ObjectMetricSourceType, targetType: autoscalingv2.ValueMetricType, target: 100000, values: []int64{250000}, ready: 2},
			current: 2, tol: def, want: 5, ratio: 2.5, how: "ceil(2.500 × 2 ready pods) = 5",
		},
		{
			// 30+40 = 70 over 20 per pod at 1 replica: ratio 3.5; ceil(70/20) = 4.
			name:    "external average value",
			in:      metricInput{source: autoscalingv2.ExternalMetricSourceType, targetType: autoscalingv2.AverageValueMetricType, target: 20000, values: []int64{30000, 40000}},
			current: 1, tol: def, want: 4, ratio: 3.5, how: "ceil(70 / 20) = 4",
		},
		{
			// 10/20 per pod at 1 replica: 0.5; ceil(10/20) = 1.
			name:    "external average value, down to one",
			in:      metricInput{source: autoscalingv2.ExternalMetricSourceType, targetType: autoscalingv2.AverageValueMetricType, target: 20000, values: []int64{10000}},
			current: 4, tol: def, want: 1, ratio: 0.125, how: "ceil(10 / 20) = 1",
		},
		{
			// 520m/500m = 1.04, within [0.9, 1.1]: keeps 3.
			name:    "tolerance hit",
			in:      metricInput{source: autoscalingv2.PodsMetricSourceType, targetType: autoscalingv2.AverageValueMetricType, target: 500, values: []int64{520, 520, 520}},
			current: 3, tol: def, want: 3, ratio: 1.04, how: "within tolerance [0.90, 1.10]: keeps 3",
		},
		{
			// 530m/500m = 1.06, outside [0.9, 1.05]: ceil(1.06 × 3) = 4.
			name:    "behavior tolerance",
			in:      metricInput{source: autoscalingv2.PodsMetricSourceType, targetType: autoscalingv2.AverageValueMetricType, target: 500, values: []int64{530, 530, 530}},
			current: 3, tol: tolerance{up: 0.05, down: 0.1}, want: 4, ratio: 1.06, how: "ceil(1.060 × 3 pods) = 4",
		},
		{
			// 1000m average, ratio 2; the missing pod counts as 0: 2000m/3 = 666m, 1.332; ceil(1.332 × 3) = 4.
			name:    "pods with a missing value, scaling up",
			in:      metricInput{source: autoscalingv2.PodsMetricSourceType, targetType: autoscalingv2.AverageValueMetricType, target: 500, values: []int64{1000, 1000}, missing: 1},
			current: 3, tol: def, want: 4, ratio: 2, how: "ceil(1.332 × 3 pods) = 4",
		},
		{
			// 5/10 = 0.5 from zero replicas: ceil(0.5) = 1.
			name:    "external value from zero",
			in:      metricInput{source: autoscalingv2.ExternalMetricSourceType, targetType: autoscalingv2.ValueMetricType, target: 10000, values: []int64{5000}},
			current: 0, tol: def, want: 1, ratio: 0.5, how: "from zero replicas",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := propose(tc.in, tc.current, tc.tol)
			if err != nil {
				t.Fatal(err)
			}
			if p.replicas != tc.want || !near(p.ratio, tc.ratio) || !strings.Contains(p.how, tc.how) {
				t.Errorf("got %d replicas, ratio %v, %q; want %d, %v, %q", p.replicas, p.ratio, p.how, tc.want, tc.ratio, tc.how)
			}
		})
	}
	if _, err := propose(metricInput{source: autoscalingv2.PodsMetricSourceType, target: 500}, 3, def); err == nil {
		t.Error("no values: no error")
	}
}

func near(a, b float64) bool { return a-b < 1e-9 && b-a < 1e-9 }

// TestDecide: the largest proposal wins, then minReplicas/maxReplicas clamp it, and the bound is named.
func TestDecide(t *testing.T) {
	tests := []struct {
		name              string
		proposals         []int32
		failed            bool
		current, min, max int32
		desired           int32
		clamped, why      string
	}{
		{"several metrics: the largest", []int32{5, 2, 3}, false, 3, 1, 10, 5, "", "the largest proposal is 5, within"},
		{"clamped to maxReplicas", []int32{12, 4}, false, 3, 1, 10, 10, "maxReplicas", "lowered to maxReplicas 10"},
		{"clamped to minReplicas", []int32{1}, false, 3, 2, 10, 2, "minReplicas", "raised to minReplicas 2"},
		{"a failed metric blocks scaling down", []int32{1}, true, 3, 1, 10, 3, "", "does not scale down"},
		{"a failed metric lets scaling up", []int32{6}, true, 3, 1, 10, 6, "", "the largest proposal is 6"},
		{"above maxReplicas", []int32{2}, false, 12, 1, 10, 10, "maxReplicas", "above maxReplicas"},
		{"disabled at zero", []int32{4}, false, 0, 1, 10, 0, "", "autoscaling is disabled"},
		{"scale to zero allowed", []int32{0}, false, 1, 0, 10, 0, "", "the largest proposal is 0"},
	}
	for _, tc := range tests {
		d := decide(tc.proposals, tc.failed, tc.current, tc.min, tc.max)
		if d.desired != tc.desired || d.clamped != tc.clamped || !strings.Contains(d.why, tc.why) {
			t.Errorf("%s: got %d %q %q; want %d %q and %q", tc.name, d.desired, d.clamped, d.why, tc.desired, tc.clamped, tc.why)
		}
	}
}

func TestToleranceOf(t *testing.T) {
	if got := toleranceOf(nil); got != (tolerance{up: 0.1, down: 0.1}) {
		t.Errorf("default: %+v", got)
	}
	q := resource.MustParse("50m")
	b := &autoscalingv2.HorizontalPodAutoscalerBehavior{ScaleUp: &autoscalingv2.HPAScalingRules{Tolerance: &q}}
	if got := toleranceOf(b); !near(got.up, 0.05) || got.down != 0.1 || got.String() != "[0.90, 1.05]" {
		t.Errorf("scaleUp tolerance 50m: %+v %s", got, got)
	}
}
