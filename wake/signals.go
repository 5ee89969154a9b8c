package wake

import (
	"context"
	"fmt"

	autoscalingv2 "k8s.io/api/autoscaling/v2"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// signals reads the activation signals: the annotation's, else the HPA's External and Object metrics.
func (ctl *Controller) signals(ctx context.Context, h *autoscalingv2.HorizontalPodAutoscaler, p Policy) []Signal {
	if p.Signal != nil {
		return []Signal{ctl.read(ctx, h.Namespace, *p.Signal)}
	}
	var out []Signal
	for _, m := range h.Spec.Metrics {
		switch {
		case m.Type == autoscalingv2.ExternalMetricSourceType && m.External != nil:
			sel, err := metricSelector(m.External.Metric.Selector)
			if err != nil {
				out = append(out, Signal{Name: m.External.Metric.Name, Err: err})
				continue
			}
			out = append(out, ctl.read(ctx, h.Namespace, SignalRef{Kind: SignalExternal, Metric: m.External.Metric.Name, Selector: sel}))
		case m.Type == autoscalingv2.ObjectMetricSourceType && m.Object != nil:
			sel, err := metricSelector(m.Object.Metric.Selector)
			ref := m.Object.DescribedObject
			gv, _ := schema.ParseGroupVersion(ref.APIVersion)
			var mapping *meta.RESTMapping
			if err == nil {
				mapping, err = ctl.c.Mapper.RESTMapping(schema.GroupKind{Group: gv.Group, Kind: ref.Kind}, gv.Version)
			}
			if err != nil {
				out = append(out, Signal{Name: m.Object.Metric.Name, Err: err})
				continue
			}
			out = append(out, ctl.read(ctx, h.Namespace, SignalRef{Kind: SignalObject, Metric: m.Object.Metric.Name,
				Resource: mapping.Resource.GroupResource().String(), Name: ref.Name, Selector: sel}))
		}
	}
	return out
}

// metricSelector is an HPA metric's selector; none selects everything.
func metricSelector(ls *metav1.LabelSelector) (labels.Selector, error) {
	if ls == nil {
		return labels.Everything(), nil
	}
	return metav1.LabelSelectorAsSelector(ls)
}

// read fetches one signal through the metrics APIs, the way the HPA does, within ReadTimeout.
// The metrics clients take no context: the read runs aside and is abandoned at the deadline (their
// HTTP requests carry the same timeout, so an abandoned read ends soon after).
func (ctl *Controller) read(ctx context.Context, ns string, r SignalRef) Signal {
	ctx, cancel := context.WithTimeout(ctx, ctl.o.ReadTimeout)
	defer cancel()
	done := make(chan Signal, 1)
	go func() { done <- ctl.readNow(ns, r) }()
	select {
	case s := <-done:
		return s
	case <-ctx.Done():
		return Signal{Name: r.Metric, Err: fmt.Errorf("read %s %s: %w", r.Kind, r.Metric, context.Cause(ctx))}
	}
}

func (ctl *Controller) readNow(ns string, r SignalRef) Signal {
	switch r.Kind {
	case SignalExternal:
		list, err := ctl.c.External.NamespacedMetrics(ns).List(r.Metric, r.Selector)
		if err != nil {
			return Signal{Name: r.Metric, Err: err}
		}
		if len(list.Items) == 0 {
			return Signal{Name: r.Metric, Err: fmt.Errorf("external metric %s returned no value", r.Metric)}
		}
		sum := 0.0
		for _, it := range list.Items {
			sum += float64(it.Value.MilliValue()) / 1000
		}
		return Signal{Name: r.Metric, Value: sum}
	case SignalObject:
		gr := schema.ParseGroupResource(r.Resource)
		gvk, err := ctl.c.Mapper.KindFor(gr.WithVersion(""))
		if err != nil {
			return Signal{Name: r.Metric, Err: err}
		}
		v, err := ctl.c.Custom.NamespacedMetrics(ns).GetForObject(gvk.GroupKind(), r.Name, r.Metric, r.Selector)
		if err != nil {
			return Signal{Name: r.Metric, Err: err}
		}
		return Signal{Name: r.Metric, Value: float64(v.Value.MilliValue()) / 1000}
	}
	return Signal{Name: r.Metric, Err: fmt.Errorf("unknown signal kind %q", r.Kind)}
}
