package inspect

import (
	"fmt"
	"math"

	autoscalingv2 "k8s.io/api/autoscaling/v2"
)

// This file is the HPA controller's arithmetic (kube-controller-manager's replica calculator), as
// pure functions of the values read: no I/O, so every case is a table test.

// defaultTolerance is the controller's --horizontal-pod-autoscaler-tolerance default.
const defaultTolerance = 0.1

// tolerance is the band around a usage ratio of 1 in which the HPA keeps the current replicas.
type tolerance struct {
	up, down float64 // 1+up and 1-down bound the band
}

// within reports whether ratio is in the band, bounds included, as the controller tests it.
func (t tolerance) within(ratio float64) bool {
	return 1-t.down <= ratio && ratio <= 1+t.up
}

// String is the band, e.g. "[0.90, 1.10]".
func (t tolerance) String() string { return fmt.Sprintf("[%.2f, %.2f]", 1-t.down, 1+t.up) }

// toleranceOf is the HPA's band: spec.behavior's per-direction tolerance when set, else the default.
func toleranceOf(b *autoscalingv2.HorizontalPodAutoscalerBehavior) tolerance {
	t := tolerance{up: defaultTolerance, down: defaultTolerance}
	if b == nil {
		return t
	}
	if b.ScaleUp != nil && b.ScaleUp.Tolerance != nil {
		t.up = b.ScaleUp.Tolerance.AsApproximateFloat64()
	}
	if b.ScaleDown != nil && b.ScaleDown.Tolerance != nil {
		t.down = b.ScaleDown.Tolerance.AsApproximateFloat64()
	}
	return t
}

// metricInput is one metric of an HPA as the replica calculation reads it; values are in milli units.
type metricInput struct {
	source     autoscalingv2.MetricSourceType // Pods, Object or External (Resource is read as Pods)
	targetType autoscalingv2.MetricTargetType // Value or AverageValue (Utilization: percent, as AverageValue per pod)
	target     int64                          // the target, milli (Utilization: percent)
	values     []int64                        // per pod (Pods), the object's one value (Object), per series (External)
	missing    int                            // Pods: running pods the selector matches that have no value
	ready      int32                          // pods Ready, which Value targets scale from; 0 means currentReplicas
}

// proposal is what one metric asks of the HPA.
type proposal struct {
	replicas int32   // the replicas this metric asks for
	usage    int64   // milli: the average per pod (Pods, AverageValue) or the value / sum
	ratio    float64 // usage / target
	how      string  // the arithmetic, e.g. "ceil(1.600 × 3) = 5"
}

// propose computes the replicas one metric asks for, as the HPA controller does.
func propose(in metricInput, current int32, tol tolerance) (proposal, error) {
	if in.target <= 0 {
		return proposal{}, fmt.Errorf("target %d is not positive", in.target)
	}
	if len(in.values) == 0 {
		return proposal{}, fmt.Errorf("no value to compute with")
	}
	if in.source == autoscalingv2.PodsMetricSourceType || in.source == autoscalingv2.ResourceMetricSourceType {
		return proposePods(in, current, tol), nil
	}
	var usage int64
	for _, v := range in.values {
		usage += v
	}
	if in.targetType == autoscalingv2.AverageValueMetricType {
		return proposePerPod(usage, in.target, current, tol), nil
	}
	return proposeValue(usage, in.target, current, in.ready, tol), nil
}

// proposeValue is a Value target (Object or External): usageRatio × ready pods.
func proposeValue(usage, target int64, current, ready int32, tol tolerance) proposal {
	ratio := float64(usage) / float64(target)
	p := proposal{usage: usage, ratio: ratio}
	if ready <= 0 {
		ready = current
	}
	switch {
	case current == 0:
		p.replicas = int32(math.Ceil(ratio))
		p.how = fmt.Sprintf("ceil(%.3f) = %d (from zero replicas)", ratio, p.replicas)
	case tol.within(ratio):
		p.replicas = current
		p.how = fmt.Sprintf("ratio %.3f within tolerance %s: keeps %d", ratio, tol, current)
	default:
		p.replicas = int32(math.Ceil(ratio * float64(ready)))
		p.how = fmt.Sprintf("ceil(%.3f × %d ready pods) = %d", ratio, ready, p.replicas)
	}
	return p
}

// proposePerPod is an AverageValue target of an Object or External metric: the total over the target.
func proposePerPod(usage, target int64, current int32, tol tolerance) proposal {
	ratio := math.Inf(1)
	if current > 0 {
		ratio = float64(usage) / (float64(target) * float64(current))
	}
	p := proposal{usage: usage, ratio: ratio}
	if tol.within(ratio) {
		p.replicas = current
		p.how = fmt.Sprintf("%s / (%s × %d) = %.3f within tolerance %s: keeps %d", milli(usage), milli(target), current, ratio, tol, current)
		return p
	}
	p.replicas = int32(math.Ceil(float64(usage) / float64(target)))
	p.how = fmt.Sprintf("ceil(%s / %s) = %d", milli(usage), milli(target), p.replicas)
	return p
}

// proposePods is a Pods metric (AverageValue): the average over the pods with a value. Pods with
// none count as 0 when scaling up and as the target when scaling down; a recount that stays in the
// tolerance or reverses the direction keeps the current replicas.
func proposePods(in metricInput, current int32, tol tolerance) proposal {
	n := int64(len(in.values))
	var sum int64
	for _, v := range in.values {
		sum += v
	}
	usage := sum / n // the controller averages in integer milli units
	ratio := float64(usage) / float64(in.target)
	p := proposal{usage: usage, ratio: ratio}
	if in.missing == 0 {
		if tol.within(ratio) {
			p.replicas = current
			p.how = fmt.Sprintf("average %s / target %s = %.3f within tolerance %s: keeps %d", milli(usage), milli(in.target), ratio, tol, current)
			return p
		}
		p.replicas = int32(math.Ceil(ratio * float64(n)))
		p.how = fmt.Sprintf("average %s / target %s = %.3f; ceil(%.3f × %d pods) = %d", milli(usage), milli(in.target), ratio, ratio, n, p.replicas)
		return p
	}
	fill := int64(0)
	if ratio < 1 {
		fill = in.target
	}
	all := n + int64(in.missing)
	newRatio := float64((sum+fill*int64(in.missing))/all) / float64(in.target)
	p.replicas = int32(math.Ceil(newRatio * float64(all)))
	reversed := (ratio < 1 && newRatio > 1) || (ratio > 1 && newRatio < 1) ||
		(newRatio < 1 && p.replicas > current) || (newRatio > 1 && p.replicas < current)
	if tol.within(newRatio) || reversed {
		p.replicas = current
		p.how = fmt.Sprintf("average %s / target %s = %.3f; with %d pods without a value counted as %s: %.3f, keeps %d",
			milli(usage), milli(in.target), ratio, in.missing, milli(fill), newRatio, current)
		return p
	}
	p.how = fmt.Sprintf("average %s / target %s = %.3f; with %d pods without a value counted as %s: ceil(%.3f × %d pods) = %d",
		milli(usage), milli(in.target), ratio, in.missing, milli(fill), newRatio, all, p.replicas)
	return p
}

// decision is the HPA's choice over all its metrics, before its behavior's stabilization and policies.
type decision struct {
	proposal int32  // the largest proposal (or the rescale bound)
	desired  int32  // after minReplicas and maxReplicas
	clamped  string // "minReplicas", "maxReplicas" or empty
	why      string
}

// decide takes the largest proposal and clamps it to [min, max], as the controller does; failed
// tells that some metric could not be computed, in which case the HPA does not scale down.
func decide(proposals []int32, failed bool, current, min, max int32) decision {
	switch {
	case current == 0 && min != 0:
		return decision{desired: 0, why: "the scale target has 0 replicas and minReplicas is not 0: autoscaling is disabled"}
	case current > max:
		return decision{proposal: max, desired: max, clamped: "maxReplicas", why: fmt.Sprintf("current replicas %d are above maxReplicas %d", current, max)}
	case current < min:
		return decision{proposal: min, desired: min, clamped: "minReplicas", why: fmt.Sprintf("current replicas %d are below minReplicas %d", current, min)}
	}
	if len(proposals) == 0 {
		return decision{desired: current, why: "no metric could be computed: the HPA keeps the current replicas"}
	}
	d := decision{proposal: proposals[0]}
	for _, p := range proposals[1:] {
		d.proposal = maxInt32(d.proposal, p)
	}
	d.desired, d.why = d.proposal, fmt.Sprintf("the largest proposal is %d", d.proposal)
	if failed && d.proposal < current {
		d.desired = current
		d.why += fmt.Sprintf(", below the current %d, but a metric failed: the HPA does not scale down", current)
	}
	switch {
	case d.desired < min:
		d.desired, d.clamped = min, "minReplicas"
		d.why += fmt.Sprintf("; raised to minReplicas %d", min)
	case d.desired > max:
		d.desired, d.clamped = max, "maxReplicas"
		d.why += fmt.Sprintf("; lowered to maxReplicas %d", max)
	default:
		d.why += fmt.Sprintf(", within minReplicas %d and maxReplicas %d", min, max)
	}
	return d
}

func maxInt32(a, b int32) int32 {
	if a > b {
		return a
	}
	return b
}

// milli renders a milli value as a quantity, e.g. 1500 → "1500m", 2000 → "2".
func milli(v int64) string {
	if v%1000 == 0 {
		return fmt.Sprintf("%d", v/1000)
	}
	return fmt.Sprintf("%dm", v)
}
