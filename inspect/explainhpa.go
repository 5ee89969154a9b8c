package inspect

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/common/model"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/metrics/pkg/apis/custom_metrics"
	"k8s.io/metrics/pkg/apis/external_metrics"
	"sigs.k8s.io/custom-metrics-apiserver/pkg/provider"

	"github.com/promql-adapter/promql-adapter/adapter"
	"github.com/promql-adapter/promql-adapter/naming"
)

// Rule texts of HPA metrics the rules do not serve.
const (
	notServedText = "not served by these rules (served by another adapter or upstream, e.g. KEDA)"
	resourceText  = "Resource metric: metrics.k8s.io"
)

// ErrNoHPA is the error when the HPA named does not exist; its message lists the namespace's HPAs.
var ErrNoHPA = errors.New("no HPA")

// HPASource is what ExplainHPA reads: the cluster, the rules and Prometheus.
type HPASource struct {
	Kube     kubernetes.Interface
	Rules    *naming.Rules
	Querier  adapter.Querier
	Backends adapter.Backends // the backends the rule file declares; nil: every rule reads Querier
	Timeout  time.Duration    // bound on each call to the cluster or Prometheus (default 5s)
	Lookback time.Duration    // how far back discovery lists series (default 10m)
}

// ExplainHPA reads the HPA namespace/name, asks the adapter's own provider (over Querier) what
// the HPA asks the metrics APIs, and computes the replicas as the HPA controller does.
func ExplainHPA(ctx context.Context, src HPASource, namespace, name string) (*HPAExplanation, error) {
	if src.Timeout <= 0 {
		src.Timeout = 5 * time.Second
	}
	if src.Lookback <= 0 {
		src.Lookback = 10 * time.Minute
	}
	h, err := getHPA(ctx, src, namespace, name)
	if err != nil {
		return nil, err
	}
	sel, err := podSelector(ctx, src, h)
	if err != nil {
		return nil, fmt.Errorf("HPA %s/%s: %w", namespace, name, err)
	}
	pods, err := listPods(ctx, src, namespace, sel)
	if err != nil {
		return nil, fmt.Errorf("HPA %s/%s: %w", namespace, name, err)
	}
	rec := &queryRecorder{Querier: src.Querier}
	popts := adapter.Options{Querier: rec, Objects: pods}
	if src.Backends != nil {
		popts.Backends = recordedBackends{src.Backends, rec}
	}
	p := adapter.NewProvider(popts, src.Rules)
	if p.HasDiscovery() {
		dctx, cancel := context.WithTimeout(ctx, src.Timeout)
		err := p.Discover(dctx, src.Lookback, src.Lookback)
		cancel()
		if err != nil {
			return nil, fmt.Errorf("discovery: %w", err)
		}
	}
	s, err := servedMetrics(p, src.Rules)
	if err != nil {
		return nil, err
	}
	x := newHPAExplanation(h, sel, pods)
	r := &hpaReader{src: src, p: p, s: s, rec: rec, h: h, sel: sel, pods: pods}
	for i, spec := range h.Spec.Metrics {
		x.Metrics = append(x.Metrics, r.metric(ctx, i, spec))
	}
	x.compute()
	return x, nil
}

// newHPAExplanation fills what the HPA object and its pods say, before any metric.
func newHPAExplanation(h *autoscalingv2.HorizontalPodAutoscaler, sel labels.Selector, pods *podSet) *HPAExplanation {
	minR := int32(1)
	if h.Spec.MinReplicas != nil {
		minR = *h.Spec.MinReplicas
	}
	tol := toleranceOf(h.Spec.Behavior)
	return &HPAExplanation{
		Namespace: h.Namespace, Name: h.Name,
		ScaleTarget: h.Spec.ScaleTargetRef.Kind + "/" + h.Spec.ScaleTargetRef.Name,
		Selector:    sel.String(), Pods: len(pods.matched), ReadyPods: pods.ready(),
		CurrentReplicas: h.Status.CurrentReplicas, MinReplicas: minR, MaxReplicas: h.Spec.MaxReplicas,
		Tolerance: tol.String(), tol: tol, Metrics: []HPAMetric{},
		Behavior: behaviorText(h.Spec.Behavior), Status: statusView(h),
	}
}

// getHPA reads the HPA; when there is none of that name, the error lists the namespace's HPAs.
func getHPA(ctx context.Context, src HPASource, namespace, name string) (*autoscalingv2.HorizontalPodAutoscaler, error) {
	cctx, cancel := context.WithTimeout(ctx, src.Timeout)
	defer cancel()
	hpas := src.Kube.AutoscalingV2().HorizontalPodAutoscalers(namespace)
	h, err := hpas.Get(cctx, name, metav1.GetOptions{})
	if err == nil {
		return h, nil
	}
	if !apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("read HPA %s/%s: %w", namespace, name, err)
	}
	list, lerr := hpas.List(cctx, metav1.ListOptions{})
	if lerr != nil {
		return nil, fmt.Errorf("%w %s/%s (listing the namespace's HPAs: %v)", ErrNoHPA, namespace, name, lerr)
	}
	var names []string
	for _, i := range list.Items {
		names = append(names, i.Name)
	}
	slices.Sort(names)
	if len(names) == 0 {
		return nil, fmt.Errorf("%w %s/%s: namespace %s has no HPA", ErrNoHPA, namespace, name, namespace)
	}
	return nil, fmt.Errorf("%w %s/%s; HPAs in namespace %s: %s", ErrNoHPA, namespace, name, namespace, strings.Join(names, ", "))
}

// podSelector is the selector of the pods the HPA counts: its scale target's spec.selector, which
// the target's scale subresource reports and the controller reads.
func podSelector(ctx context.Context, src HPASource, h *autoscalingv2.HorizontalPodAutoscaler) (labels.Selector, error) {
	ref := h.Spec.ScaleTargetRef
	cctx, cancel := context.WithTimeout(ctx, src.Timeout)
	defer cancel()
	var ls *metav1.LabelSelector
	var err error
	apps := src.Kube.AppsV1()
	switch ref.Kind {
	case "Deployment":
		d, e := apps.Deployments(h.Namespace).Get(cctx, ref.Name, metav1.GetOptions{})
		if err = e; err == nil {
			ls = d.Spec.Selector
		}
	case "StatefulSet":
		sts, e := apps.StatefulSets(h.Namespace).Get(cctx, ref.Name, metav1.GetOptions{})
		if err = e; err == nil {
			ls = sts.Spec.Selector
		}
	case "ReplicaSet":
		rs, e := apps.ReplicaSets(h.Namespace).Get(cctx, ref.Name, metav1.GetOptions{})
		if err = e; err == nil {
			ls = rs.Spec.Selector
		}
	default:
		return nil, fmt.Errorf("scale target %s/%s: explain hpa reads the pods of a Deployment, StatefulSet or ReplicaSet only", ref.Kind, ref.Name)
	}
	if err != nil {
		return nil, fmt.Errorf("read scale target %s/%s: %w", ref.Kind, ref.Name, err)
	}
	sel, err := metav1.LabelSelectorAsSelector(ls)
	if err != nil {
		return nil, fmt.Errorf("scale target %s/%s: spec.selector: %w", ref.Kind, ref.Name, err)
	}
	return sel, nil
}

// podSet is the namespace's pods and those the HPA's selector matches. It answers the provider's
// Objects for pods, as the server's object cache would.
type podSet struct {
	matched []corev1.Pod
	total   int
}

func listPods(ctx context.Context, src HPASource, namespace string, sel labels.Selector) (*podSet, error) {
	cctx, cancel := context.WithTimeout(ctx, src.Timeout)
	defer cancel()
	list, err := src.Kube.CoreV1().Pods(namespace).List(cctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("list pods in %s: %w", namespace, err)
	}
	ps := &podSet{total: len(list.Items)}
	for _, p := range list.Items {
		if sel.Matches(labels.Set(p.Labels)) {
			ps.matched = append(ps.matched, p)
		}
	}
	slices.SortFunc(ps.matched, func(a, b corev1.Pod) int { return strings.Compare(a.Name, b.Name) })
	return ps, nil
}

// Names implements adapter.Objects for pods.
func (ps *podSet) Names(_ context.Context, res naming.Resource, _ string, sel labels.Selector) ([]string, int, error) {
	if res.GroupResource != (schema.GroupResource{Resource: "pods"}) {
		return nil, 0, fmt.Errorf("explain hpa lists pods only, not %s", res.GroupResource)
	}
	var names []string
	for _, p := range ps.matched {
		if sel == nil || sel.Matches(labels.Set(p.Labels)) {
			names = append(names, p.Name)
		}
	}
	return names, ps.total, nil
}

// ready counts the pods Running and Ready, which the controller scales Value targets from.
func (ps *podSet) ready() int32 {
	var n int32
	for _, p := range ps.matched {
		if p.Status.Phase == corev1.PodRunning && podReady(p) {
			n++
		}
	}
	return n
}

// missing counts the pods the controller expects a value from (not deleting, failed or pending)
// that have none in values.
func (ps *podSet) missing(values map[string]bool) int {
	n := 0
	for _, p := range ps.matched {
		if p.DeletionTimestamp != nil || p.Status.Phase == corev1.PodFailed || p.Status.Phase == corev1.PodPending {
			continue
		}
		if !values[p.Name] {
			n++
		}
	}
	return n
}

func podReady(p corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// queryRecorder is the provider's Querier during ExplainHPA: it remembers the queries sent.
type queryRecorder struct {
	adapter.Querier
	to      *queryRecorder // a declared backend's recorder records in the default one's list
	mu      sync.Mutex
	queries []string
}

// recordedBackends hands out the declared backends' Queriers, their queries recorded in rec.
type recordedBackends struct {
	adapter.Backends
	rec *queryRecorder
}

// Querier implements adapter.Backends.
func (b recordedBackends) Querier(name string) (adapter.Querier, bool) {
	q, ok := b.Backends.Querier(name)
	if !ok {
		return nil, false
	}
	return &queryRecorder{Querier: q, to: b.rec}, true
}

// Query implements adapter.Querier and records the query.
func (r *queryRecorder) Query(ctx context.Context, query string) (model.Vector, error) {
	r.record(query)
	return r.Querier.Query(ctx, query)
}

// QueryLabel implements adapter.LabelQuerier when the wrapped Querier does, and records the query.
func (r *queryRecorder) QueryLabel(ctx context.Context, query, label string) ([]adapter.Sample, error) {
	r.record(query)
	if lq, ok := r.Querier.(adapter.LabelQuerier); ok {
		return lq.QueryLabel(ctx, query, label)
	}
	return nil, errors.New("the querier cannot decode one label")
}

func (r *queryRecorder) record(q string) {
	if r.to != nil {
		r.to.record(q)
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.queries = append(r.queries, q)
}

// take returns the queries recorded since the last take.
func (r *queryRecorder) take() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	q := r.queries
	r.queries = nil
	return q
}

// hpaReader reads one HPA's metrics through the adapter's provider.
type hpaReader struct {
	src  HPASource
	p    *adapter.Provider
	s    *served
	rec  *queryRecorder
	h    *autoscalingv2.HorizontalPodAutoscaler
	sel  labels.Selector
	pods *podSet
}

// metric explains spec.metrics[i]: its rule, query and values, and the input of the computation.
func (r *hpaReader) metric(ctx context.Context, i int, spec autoscalingv2.MetricSpec) HPAMetric {
	m := HPAMetric{Type: string(spec.Type), Values: []Sample{}}
	switch {
	case spec.Pods != nil:
		m.Name, m.Target = spec.Pods.Metric.Name, targetText(spec.Pods.Target)
		m.Selector = selectorText(spec.Pods.Metric.Selector)
		r.podsMetric(ctx, &m, spec.Pods)
	case spec.Object != nil:
		m.Name, m.Target = spec.Object.Metric.Name, targetText(spec.Object.Target)
		m.Selector = selectorText(spec.Object.Metric.Selector)
		m.Object = spec.Object.DescribedObject.Kind + "/" + spec.Object.DescribedObject.Name
		r.object(ctx, &m, spec.Object)
	case spec.External != nil:
		m.Name, m.Target = spec.External.Metric.Name, targetText(spec.External.Target)
		m.Selector = selectorText(spec.External.Metric.Selector)
		r.external(ctx, &m, spec.External)
	case spec.Resource != nil:
		m.Name, m.Target, m.Rule = string(spec.Resource.Name), targetText(spec.Resource.Target), resourceText
	case spec.ContainerResource != nil:
		m.Name, m.Target, m.Rule = string(spec.ContainerResource.Name), targetText(spec.ContainerResource.Target), resourceText
		m.Object = "container " + spec.ContainerResource.Container
	default:
		m.Rule = "unknown metric type " + string(spec.Type)
	}
	if m.input == nil {
		r.fromStatus(&m, i, spec)
	}
	return m
}

// podsMetric reads a Pods metric as the HPA asks for it: every pod of the selector, one request.
func (r *hpaReader) podsMetric(ctx context.Context, m *HPAMetric, src *autoscalingv2.PodsMetricSource) {
	gr := schema.GroupResource{Resource: "pods"}
	e := r.s.lookup(gr, m.Name)
	if e == nil || !listsCustom(r.p, e.metric) {
		m.Rule = notServedText
		return
	}
	m.Rule = ruleText(e)
	var list *custom_metrics.MetricValueList
	if !r.ask(ctx, m, src.Metric.Selector, func(ctx context.Context, msel labels.Selector) (err error) {
		list, err = r.p.GetMetricBySelector(ctx, r.h.Namespace, r.sel, provider.CustomMetricInfo{GroupResource: gr, Namespaced: true, Metric: m.Name}, msel)
		return err
	}) {
		return
	}
	seen := map[string]bool{}
	var values []int64
	for _, it := range list.Items {
		seen[it.DescribedObject.Name] = true
		values = append(values, it.Value.MilliValue())
		m.Values = append(m.Values, Sample{Object: it.DescribedObject.Name, Value: it.Value.String()})
	}
	m.ValuesFrom = "prometheus"
	if src.Target.AverageValue == nil {
		m.Error = "a Pods metric needs an AverageValue target"
		return
	}
	m.input = &metricInput{source: autoscalingv2.PodsMetricSourceType, targetType: src.Target.Type,
		target: src.Target.AverageValue.MilliValue(), values: values, missing: r.pods.missing(seen)}
}

// object reads an Object metric: the one described object, by name.
func (r *hpaReader) object(ctx context.Context, m *HPAMetric, src *autoscalingv2.ObjectMetricSource) {
	ref := src.DescribedObject
	e := r.lookupKind(ref, m.Name)
	if e == nil {
		m.Rule = notServedText
		return
	}
	m.Rule = ruleText(e)
	info := provider.CustomMetricInfo{GroupResource: e.metric.Resource.GroupResource, Namespaced: e.metric.Resource.Namespaced, Metric: m.Name}
	ns := r.h.Namespace
	if !e.metric.Resource.Namespaced {
		ns = ""
	}
	var v *custom_metrics.MetricValue
	if !r.ask(ctx, m, src.Metric.Selector, func(ctx context.Context, msel labels.Selector) (err error) {
		v, err = r.p.GetMetricByName(ctx, types.NamespacedName{Namespace: ns, Name: ref.Name}, info, msel)
		return err
	}) {
		return
	}
	m.Values = append(m.Values, Sample{Object: ref.Name, Value: v.Value.String()})
	m.ValuesFrom = "prometheus"
	m.input = r.valueInput(autoscalingv2.ObjectMetricSourceType, src.Target, []int64{v.Value.MilliValue()}, m)
}

// external reads an External metric: every series its selector matches, in the HPA's namespace.
func (r *hpaReader) external(ctx context.Context, m *HPAMetric, src *autoscalingv2.ExternalMetricSource) {
	e := r.s.lookupExternal(m.Name)
	if e == nil || !listsExternal(r.p, m.Name) {
		m.Rule = notServedText
		return
	}
	m.Rule = ruleText(e)
	var list *external_metrics.ExternalMetricValueList
	if !r.ask(ctx, m, src.Metric.Selector, func(ctx context.Context, msel labels.Selector) (err error) {
		list, err = r.p.GetExternalMetric(ctx, r.h.Namespace, msel, provider.ExternalMetricInfo{Metric: m.Name})
		return err
	}) {
		return
	}
	var values []int64
	for _, it := range list.Items {
		values = append(values, it.Value.MilliValue())
		m.Values = append(m.Values, Sample{Object: "{" + labels.Set(it.MetricLabels).String() + "}", Value: it.Value.String()})
	}
	m.ValuesFrom = "prometheus"
	m.input = r.valueInput(autoscalingv2.ExternalMetricSourceType, src.Target, values, m)
}

// ask runs call with the metric's selector parsed, under the reader's timeout, and records in m
// the queries the provider sent and any failure; it reports whether call succeeded.
func (r *hpaReader) ask(ctx context.Context, m *HPAMetric, ls *metav1.LabelSelector, call func(ctx context.Context, msel labels.Selector) error) bool {
	msel, err := metricSelector(ls)
	if err != nil {
		m.Error = err.Error()
		return false
	}
	ctx, cancel := context.WithTimeout(ctx, r.src.Timeout)
	defer cancel()
	r.rec.take()
	err = call(ctx, msel)
	m.Query = strings.Join(r.rec.take(), "; ")
	if err != nil {
		m.Error = err.Error()
		return false
	}
	return true
}

// valueInput is the input of an Object or External metric from its target and values.
func (r *hpaReader) valueInput(source autoscalingv2.MetricSourceType, t autoscalingv2.MetricTarget, values []int64, m *HPAMetric) *metricInput {
	q := t.Value
	if t.Type == autoscalingv2.AverageValueMetricType {
		q = t.AverageValue
	}
	if q == nil {
		m.Error = "the target has no " + string(t.Type)
		return nil
	}
	return &metricInput{source: source, targetType: t.Type, target: q.MilliValue(), values: values, ready: r.pods.ready()}
}

// lookupKind finds the served custom metric name describing objects of ref's kind and group.
func (r *hpaReader) lookupKind(ref autoscalingv2.CrossVersionObjectReference, name string) *entry {
	gv, err := schema.ParseGroupVersion(ref.APIVersion)
	if err != nil {
		return nil
	}
	for _, e := range r.s.byKey {
		res := e.metric.Resource
		if !e.metric.External && e.metric.Name == name && res.Kind == ref.Kind && res.GroupResource.Group == gv.Group && listsCustom(r.p, e.metric) {
			return e
		}
	}
	return nil
}

// fromStatus takes a metric's value from the HPA's status.currentMetrics when the adapter could
// not read it (another adapter serves it, or a Resource metric), so the computation still covers it.
func (r *hpaReader) fromStatus(m *HPAMetric, i int, spec autoscalingv2.MetricSpec) {
	cur := r.h.Status.CurrentMetrics
	if i >= len(cur) || cur[i].Type != spec.Type {
		return
	}
	target, value, perPod := statusPair(spec, cur[i])
	if target == nil || value == nil {
		return
	}
	current := r.h.Status.CurrentReplicas
	in := &metricInput{source: spec.Type, targetType: autoscalingv2.AverageValueMetricType, target: *target, ready: r.pods.ready()}
	switch {
	case perPod && (spec.Type == autoscalingv2.PodsMetricSourceType || spec.Type == autoscalingv2.ResourceMetricSourceType || spec.Type == autoscalingv2.ContainerResourceMetricSourceType):
		// The average over the pods, as many times as there are replicas.
		in.source = autoscalingv2.PodsMetricSourceType
		for range max(current, 1) {
			in.values = append(in.values, *value)
		}
	case perPod:
		// Object and External AverageValue: the status holds the total over the current replicas.
		in.values = []int64{*value * int64(max(current, 1))}
	default:
		in.targetType = autoscalingv2.ValueMetricType
		in.values = []int64{*value}
	}
	m.input = in
	m.ValuesFrom = "hpa status"
	m.Values = append(m.Values, Sample{Object: "status.currentMetrics[" + fmt.Sprint(i) + "]", Value: statusValueText(spec, *value)})
}

// statusPair is a metric's target and the status's current value in the same unit (milli, or
// percent × 1000 for Utilization), and whether they are per pod.
func statusPair(spec autoscalingv2.MetricSpec, st autoscalingv2.MetricStatus) (target, value *int64, perPod bool) {
	var t autoscalingv2.MetricTarget
	var c autoscalingv2.MetricValueStatus
	switch {
	case spec.Pods != nil && st.Pods != nil:
		t, c = spec.Pods.Target, st.Pods.Current
	case spec.Object != nil && st.Object != nil:
		t, c = spec.Object.Target, st.Object.Current
	case spec.External != nil && st.External != nil:
		t, c = spec.External.Target, st.External.Current
	case spec.Resource != nil && st.Resource != nil:
		t, c = spec.Resource.Target, st.Resource.Current
	case spec.ContainerResource != nil && st.ContainerResource != nil:
		t, c = spec.ContainerResource.Target, st.ContainerResource.Current
	default:
		return nil, nil, false
	}
	milliOf := func(q *resource.Quantity) *int64 {
		if q == nil {
			return nil
		}
		v := q.MilliValue()
		return &v
	}
	percent := func(p *int32) *int64 {
		if p == nil {
			return nil
		}
		v := int64(*p) * 1000
		return &v
	}
	switch t.Type {
	case autoscalingv2.UtilizationMetricType:
		return percent(t.AverageUtilization), percent(c.AverageUtilization), true
	case autoscalingv2.AverageValueMetricType:
		return milliOf(t.AverageValue), milliOf(c.AverageValue), true
	default:
		return milliOf(t.Value), milliOf(c.Value), false
	}
}

func statusValueText(spec autoscalingv2.MetricSpec, v int64) string {
	if (spec.Resource != nil && spec.Resource.Target.Type == autoscalingv2.UtilizationMetricType) ||
		(spec.ContainerResource != nil && spec.ContainerResource.Target.Type == autoscalingv2.UtilizationMetricType) {
		return fmt.Sprintf("%d%%", v/1000)
	}
	return milli(v)
}

// metricSelector is an HPA metric's selector as the HPA sends it; nil selects everything.
func metricSelector(ls *metav1.LabelSelector) (labels.Selector, error) {
	if ls == nil {
		return labels.Everything(), nil
	}
	sel, err := metav1.LabelSelectorAsSelector(ls)
	if err != nil {
		return nil, fmt.Errorf("metric selector: %w", err)
	}
	return sel, nil
}

func selectorText(ls *metav1.LabelSelector) string {
	sel, err := metricSelector(ls)
	if err != nil || sel.Empty() {
		return ""
	}
	return sel.String()
}
