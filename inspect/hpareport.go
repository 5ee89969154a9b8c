package inspect

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strings"
	"text/tabwriter"

	autoscalingv2 "k8s.io/api/autoscaling/v2"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// HPAExplanation is why an HPA has its replica count: per metric, what serves it, the PromQL, the
// values and the replicas it asks for; the HPA controller's choice over them; the HPA's own status.
type HPAExplanation struct {
	Namespace       string        `json:"namespace"`
	Name            string        `json:"name"`
	ScaleTarget     string        `json:"scaleTarget"`        // Kind/name
	Selector        string        `json:"selector"`           // the pods the HPA counts: the scale target's spec.selector
	Pods            int           `json:"pods"`               // pods the selector matches
	ReadyPods       int32         `json:"readyPods"`          // of them, Running and Ready
	RuleFile        string        `json:"ruleFile,omitempty"` // the rule file read
	CurrentReplicas int32         `json:"currentReplicas"`    // status.currentReplicas, the count the computation starts from
	MinReplicas     int32         `json:"minReplicas"`        // spec.minReplicas (default 1)
	MaxReplicas     int32         `json:"maxReplicas"`        // spec.maxReplicas
	Tolerance       string        `json:"tolerance"`          // the usage ratios in which a metric keeps the replicas, e.g. [0.90, 1.10]
	Metrics         []HPAMetric   `json:"metrics"`            // one per spec.metrics entry, in order
	Decision        HPADecision   `json:"decision"`           // the controller's choice over the metrics, before behavior
	Behavior        []string      `json:"behavior"`           // spec.behavior as text: stabilization windows and policies
	Status          HPAStatusView `json:"status"`             // the HPA's own status
	Notes           []string      `json:"notes,omitempty"`    // e.g. why status.desiredReplicas may differ
	tol             tolerance
}

// HPAMetric is one entry of an HPA's spec.metrics.
type HPAMetric struct {
	Type       string   `json:"type"`                 // Pods, Object, External, Resource or ContainerResource
	Name       string   `json:"name"`                 // the metric's name (Resource: cpu, memory)
	Object     string   `json:"object,omitempty"`     // Object: the described object, Kind/name
	Selector   string   `json:"selector,omitempty"`   // the metric's label selector
	Rule       string   `json:"rule"`                 // the rule that serves it, or who does
	Query      string   `json:"query,omitempty"`      // the PromQL the adapter runs for the HPA's request
	Values     []Sample `json:"values"`               // per pod, the object's value, or per external series
	ValuesFrom string   `json:"valuesFrom,omitempty"` // "prometheus", or "hpa status" when the adapter cannot read them
	Error      string   `json:"error,omitempty"`      // why no value was read
	Target     string   `json:"target"`               // e.g. AverageValue 500m
	Current    string   `json:"current,omitempty"`    // the usage compared: average per pod, or value (sum of series)
	Ratio      float64  `json:"ratio,omitempty"`      // current / target (per pod for AverageValue of Object and External)
	Replicas   *int32   `json:"replicas,omitempty"`   // the replicas this metric asks for; absent when it cannot be computed
	How        string   `json:"how,omitempty"`        // the arithmetic
	input      *metricInput
}

// HPADecision is the controller's choice over all metrics, before the behavior's stabilization and policies.
type HPADecision struct {
	Proposal int32  `json:"proposal"`          // the largest proposal
	From     string `json:"from,omitempty"`    // the metric that made it, e.g. "[2] Object service_requests_per_second"
	Desired  int32  `json:"desired"`           // after minReplicas and maxReplicas
	Clamped  string `json:"clamped,omitempty"` // minReplicas or maxReplicas when that bound set Desired
	Why      string `json:"why"`
}

// HPAStatusView is the HPA's status as the API server holds it.
type HPAStatusView struct {
	CurrentReplicas int32          `json:"currentReplicas"`
	DesiredReplicas int32          `json:"desiredReplicas"`
	LastScaleTime   *metav1.Time   `json:"lastScaleTime,omitempty"`
	CurrentMetrics  []string       `json:"currentMetrics"` // one line per status.currentMetrics entry
	Conditions      []HPACondition `json:"conditions"`
}

// HPACondition is one of the HPA's status conditions.
type HPACondition struct {
	Type    string `json:"type"`
	Status  string `json:"status"`
	Reason  string `json:"reason"`
	Message string `json:"message"`
}

// maxValuesShown is how many values per metric the text shows; the JSON has all.
const maxValuesShown = 8

// compute fills every metric's proposal and the decision from the inputs read: no I/O.
func (x *HPAExplanation) compute() {
	var proposals []int32
	failed, from, top := false, "", int32(-1)
	for i := range x.Metrics {
		m := &x.Metrics[i]
		if m.input == nil {
			failed = true
			continue
		}
		p, err := propose(*m.input, x.CurrentReplicas, x.tol)
		if err != nil {
			failed = true
			m.How = "not computed: " + err.Error()
			continue
		}
		m.Replicas, m.How = &p.replicas, p.how
		m.Current = milli(p.usage)
		if !math.IsInf(p.ratio, 0) && !math.IsNaN(p.ratio) {
			m.Ratio = math.Round(p.ratio*1000) / 1000
		}
		proposals = append(proposals, p.replicas)
		if p.replicas > top {
			top, from = p.replicas, fmt.Sprintf("[%d] %s %s", i+1, m.Type, m.Name)
		}
	}
	d := decide(proposals, failed, x.CurrentReplicas, x.MinReplicas, x.MaxReplicas)
	x.Decision = HPADecision{Proposal: d.proposal, Desired: d.desired, Clamped: d.clamped, Why: d.why}
	if top == d.proposal {
		x.Decision.From = from
		x.Decision.Why = strings.Replace(d.why, fmt.Sprintf("proposal is %d", top), fmt.Sprintf("proposal is %d (%s)", top, from), 1)
	}
	if x.Status.DesiredReplicas != d.desired {
		x.Notes = append(x.Notes, fmt.Sprintf("status.desiredReplicas is %d, this computation %d: the behavior's stabilization window or scale policies "+
			"(not simulated here), pods not yet ready, or values that moved since the HPA's last sync may explain it", x.Status.DesiredReplicas, d.desired))
	}
}

// WriteText writes the explanation for people, in one screen.
func (x *HPAExplanation) WriteText(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "HPA %s/%s → %s, pods %s (%d matched, %d ready)\n", x.Namespace, x.Name, x.ScaleTarget, x.Selector, x.Pods, x.ReadyPods)
	if x.RuleFile != "" {
		fmt.Fprintf(&b, "rules: %s\n", x.RuleFile)
	}
	fmt.Fprintf(&b, "replicas: current %d, min %d, max %d; tolerance %s\n", x.CurrentReplicas, x.MinReplicas, x.MaxReplicas, x.Tolerance)
	for i, m := range x.Metrics {
		b.WriteString("\n")
		writeMetric(&b, i+1, m)
	}
	fmt.Fprintf(&b, "\ncomputation: %s → %d\n", x.Decision.Why, x.Decision.Desired)
	b.WriteString("behavior:\n")
	for _, l := range x.Behavior {
		fmt.Fprintf(&b, "  %s\n", l)
	}
	writeStatus(&b, x.Status)
	for _, n := range x.Notes {
		fmt.Fprintf(&b, "note: %s\n", n)
	}
	if _, err := io.WriteString(w, b.String()); err != nil {
		return fmt.Errorf("write HPA explanation: %w", err)
	}
	return nil
}

func writeMetric(b *strings.Builder, n int, m HPAMetric) {
	title := m.Type + " " + m.Name
	if m.Object != "" {
		title += " of " + m.Object
	}
	if m.Selector != "" {
		title += " {" + m.Selector + "}"
	}
	fmt.Fprintf(b, "[%d] %s\n", n, title)
	fmt.Fprintf(b, "    rule:     %s\n", m.Rule)
	if m.Query != "" {
		fmt.Fprintf(b, "    query:    %s\n", m.Query)
	}
	if m.Error != "" {
		fmt.Fprintf(b, "    error:    %s\n", m.Error)
	}
	if len(m.Values) > 0 {
		var vs []string
		for _, s := range m.Values[:min(len(m.Values), maxValuesShown)] {
			vs = append(vs, s.Object+"="+s.Value)
		}
		if len(m.Values) > maxValuesShown {
			vs = append(vs, fmt.Sprintf("(%d more)", len(m.Values)-maxValuesShown))
		}
		fmt.Fprintf(b, "    values:   %s (%s)\n", strings.Join(vs, " "), m.ValuesFrom)
	}
	fmt.Fprintf(b, "    target:   %s\n", m.Target)
	if m.Replicas != nil {
		fmt.Fprintf(b, "    replicas: %d: %s\n", *m.Replicas, m.How)
	} else {
		how := m.How
		if how == "" {
			how = "not computed: no value"
		}
		fmt.Fprintf(b, "    replicas: %s\n", how)
	}
}

func writeStatus(b *strings.Builder, s HPAStatusView) {
	last := "never"
	if s.LastScaleTime != nil {
		last = s.LastScaleTime.UTC().Format("2006-01-02T15:04:05Z")
	}
	fmt.Fprintf(b, "status: currentReplicas %d, desiredReplicas %d, lastScaleTime %s\n", s.CurrentReplicas, s.DesiredReplicas, last)
	for _, m := range s.CurrentMetrics {
		fmt.Fprintf(b, "  current: %s\n", m)
	}
	if len(s.Conditions) > 0 {
		b.WriteString("  conditions:\n")
	}
	tw := tabwriter.NewWriter(b, 0, 0, 2, ' ', 0)
	for _, c := range s.Conditions {
		fmt.Fprintf(tw, "    %s\t%s\t%s\t%s\n", c.Type, c.Status, c.Reason, c.Message)
	}
	_ = tw.Flush() // writes to a strings.Builder never fail
}

// WriteJSON writes the explanation as one indented JSON object.
func (x *HPAExplanation) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(x); err != nil {
		return fmt.Errorf("write HPA explanation JSON: %w", err)
	}
	return nil
}

// targetText renders a metric target, e.g. "AverageValue 500m" or "Utilization 80%".
func targetText(t autoscalingv2.MetricTarget) string {
	switch {
	case t.Type == autoscalingv2.UtilizationMetricType && t.AverageUtilization != nil:
		return fmt.Sprintf("Utilization %d%%", *t.AverageUtilization)
	case t.Type == autoscalingv2.AverageValueMetricType && t.AverageValue != nil:
		return "AverageValue " + t.AverageValue.String()
	case t.Type == autoscalingv2.ValueMetricType && t.Value != nil:
		return "Value " + t.Value.String()
	}
	return string(t.Type) + " (no target value)"
}

// behaviorText lists spec.behavior: per direction, the stabilization window, policies and tolerance.
func behaviorText(b *autoscalingv2.HorizontalPodAutoscalerBehavior) []string {
	if b == nil {
		b = &autoscalingv2.HorizontalPodAutoscalerBehavior{}
	}
	return []string{
		rulesText("scaleUp", b.ScaleUp, "no stabilization, at most 4 pods or 100% per 15s, the larger (the default)"),
		rulesText("scaleDown", b.ScaleDown, "the controller's --horizontal-pod-autoscaler-downscale-stabilization window (300s by default), at most 100% per 15s (the default)"),
	}
}

func rulesText(dir string, r *autoscalingv2.HPAScalingRules, def string) string {
	if r == nil {
		return dir + ": " + def
	}
	var parts []string
	if r.StabilizationWindowSeconds != nil {
		parts = append(parts, fmt.Sprintf("stabilization window %ds", *r.StabilizationWindowSeconds))
	}
	var ps []string
	for _, p := range r.Policies {
		unit := " pods"
		if p.Type == autoscalingv2.PercentScalingPolicy {
			unit = "%"
		}
		ps = append(ps, fmt.Sprintf("%d%s per %ds", p.Value, unit, p.PeriodSeconds))
	}
	if len(ps) > 0 {
		sel := "Max"
		if r.SelectPolicy != nil {
			sel = string(*r.SelectPolicy)
		}
		parts = append(parts, fmt.Sprintf("policies %s (select %s)", strings.Join(ps, ", "), sel))
	} else if r.SelectPolicy != nil {
		parts = append(parts, "select "+string(*r.SelectPolicy))
	}
	if r.Tolerance != nil {
		parts = append(parts, "tolerance "+r.Tolerance.String())
	}
	if len(parts) == 0 {
		return dir + ": " + def
	}
	return dir + ": " + strings.Join(parts, ", ")
}

// statusView is the HPA's status as text and conditions.
func statusView(h *autoscalingv2.HorizontalPodAutoscaler) HPAStatusView {
	v := HPAStatusView{CurrentReplicas: h.Status.CurrentReplicas, DesiredReplicas: h.Status.DesiredReplicas,
		LastScaleTime: h.Status.LastScaleTime, CurrentMetrics: []string{}, Conditions: []HPACondition{}}
	for _, m := range h.Status.CurrentMetrics {
		v.CurrentMetrics = append(v.CurrentMetrics, currentMetricText(m))
	}
	for _, c := range h.Status.Conditions {
		v.Conditions = append(v.Conditions, HPACondition{Type: string(c.Type), Status: string(c.Status), Reason: c.Reason, Message: c.Message})
	}
	return v
}

// currentMetricText renders one status.currentMetrics entry, e.g. "Pods elu_utilization: averageValue 800m".
func currentMetricText(m autoscalingv2.MetricStatus) string {
	name, cur := "", autoscalingv2.MetricValueStatus{}
	switch {
	case m.Pods != nil:
		name, cur = m.Pods.Metric.Name, m.Pods.Current
	case m.Object != nil:
		name, cur = m.Object.Metric.Name+" of "+m.Object.DescribedObject.Kind+"/"+m.Object.DescribedObject.Name, m.Object.Current
	case m.External != nil:
		name, cur = m.External.Metric.Name, m.External.Current
	case m.Resource != nil:
		name, cur = string(m.Resource.Name), m.Resource.Current
	case m.ContainerResource != nil:
		name, cur = string(m.ContainerResource.Name)+" of container "+m.ContainerResource.Container, m.ContainerResource.Current
	default:
		return string(m.Type) + ": (no value)"
	}
	var vs []string
	if cur.Value != nil {
		vs = append(vs, "value "+cur.Value.String())
	}
	if cur.AverageValue != nil {
		vs = append(vs, "averageValue "+cur.AverageValue.String())
	}
	if cur.AverageUtilization != nil {
		vs = append(vs, fmt.Sprintf("averageUtilization %d%%", *cur.AverageUtilization))
	}
	if len(vs) == 0 {
		vs = append(vs, "(no value)")
	}
	return fmt.Sprintf("%s %s: %s", m.Type, name, strings.Join(vs, ", "))
}
