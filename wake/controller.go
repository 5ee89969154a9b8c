package wake

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	autoscalingv1 "k8s.io/api/autoscaling/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	autoscalinglisters "k8s.io/client-go/listers/autoscaling/v2"
	"k8s.io/client-go/scale"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/retry"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/klog/v2"
	custommetrics "k8s.io/metrics/pkg/client/custom_metrics"
	externalmetrics "k8s.io/metrics/pkg/client/external_metrics"
)

// Clients are what the controller talks to.
type Clients struct {
	Kube     kubernetes.Interface
	Scales   scale.ScalesGetter
	Mapper   meta.RESTMapper
	Custom   custommetrics.CustomMetricsClient
	External externalmetrics.ExternalMetricsClient
	Recorder record.EventRecorder
}

// ControllerOptions configure a Controller.
type ControllerOptions struct {
	// PollSleeping is how often the activation signals of a sleeping target are read (default 500ms).
	PollSleeping time.Duration
	// PollAwake is how often an awake target is checked for idleness (default 5s).
	PollAwake time.Duration
	// Leader reports whether this replica acts and, if not, who does; nil means always the leader.
	Leader  func() (bool, string)
	Metrics *Metrics
	Now     func() time.Time
}

// Controller scales opted-in HPA targets to zero when idle and back to one on demand.
type Controller struct {
	c       Clients
	o       ControllerOptions
	lister  autoscalinglisters.HorizontalPodAutoscalerLister
	synced  cache.InformerSynced
	factory informers.SharedInformerFactory
	queue   workqueue.TypedDelayingInterface[types.NamespacedName]

	mu    sync.Mutex
	state map[types.NamespacedName]State // in-memory idle timers; sleeping state is also persisted on the HPA
}

// NewController builds a controller over every namespace's HPAs.
func NewController(c Clients, o ControllerOptions) *Controller {
	if o.PollSleeping <= 0 {
		o.PollSleeping = 500 * time.Millisecond
	}
	if o.PollAwake <= 0 {
		o.PollAwake = 5 * time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Leader == nil {
		o.Leader = func() (bool, string) { return true, "" }
	}
	factory := informers.NewSharedInformerFactory(c.Kube, 10*time.Minute)
	inf := factory.Autoscaling().V2().HorizontalPodAutoscalers()
	ctl := &Controller{
		c: c, o: o,
		lister:  inf.Lister(),
		synced:  inf.Informer().HasSynced,
		factory: factory,
		queue:   workqueue.NewTypedDelayingQueue[types.NamespacedName](),
		state:   map[types.NamespacedName]State{},
	}
	enqueue := func(obj any) {
		if h, ok := obj.(*autoscalingv2.HorizontalPodAutoscaler); ok {
			ctl.queue.Add(types.NamespacedName{Namespace: h.Namespace, Name: h.Name})
		}
	}
	_, _ = inf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    enqueue,
		UpdateFunc: func(_, n any) { enqueue(n) },
	})
	return ctl
}

// Run processes HPAs until ctx ends.
func (ctl *Controller) Run(ctx context.Context) error {
	ctl.factory.Start(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), ctl.synced) {
		return errors.New("HPA cache did not sync")
	}
	go func() { <-ctx.Done(); ctl.queue.ShutDown() }()
	for {
		key, shutdown := ctl.queue.Get()
		if shutdown {
			return nil
		}
		next := ctl.sync(ctx, key)
		ctl.queue.Done(key)
		if next > 0 {
			ctl.queue.AddAfter(key, next)
		}
	}
}

// sync runs one decision for an HPA and says when to look again (0: only on change).
func (ctl *Controller) sync(ctx context.Context, key types.NamespacedName) time.Duration {
	h, err := ctl.lister.HorizontalPodAutoscalers(key.Namespace).Get(key.Name)
	if apierrors.IsNotFound(err) {
		ctl.forget(key)
		return 0
	}
	if err != nil {
		klog.ErrorS(err, "get HPA", "hpa", key)
		return ctl.o.PollAwake
	}
	policy, enabled, err := ParsePolicy(h.Annotations)
	if !enabled {
		ctl.forget(key)
		return 0
	}
	if err != nil {
		ctl.c.Recorder.Eventf(h, corev1.EventTypeWarning, "InvalidScaleToZeroPolicy", "%v", err)
		return 0 // the next change to the HPA brings it back
	}
	if leader, _ := ctl.o.Leader(); !leader {
		return ctl.o.PollAwake
	}
	sc, gr, err := ctl.getScale(ctx, h)
	if err != nil {
		ctl.c.Recorder.Eventf(h, corev1.EventTypeWarning, "FailedGetScale", "scale-to-zero: %v", err)
		return ctl.o.PollAwake
	}
	st, err := ctl.loadState(key, h)
	if err != nil {
		ctl.c.Recorder.Eventf(h, corev1.EventTypeWarning, "InvalidScaleToZeroState", "%v", err)
	}
	readAt := ctl.o.Now()
	ctl.o.Metrics.synced()
	signals := ctl.signals(ctx, h, policy)
	minReplicas := int32(1)
	if h.Spec.MinReplicas != nil {
		minReplicas = *h.Spec.MinReplicas
	}
	now := ctl.o.Now()
	d := Decide(now, policy, sc.Spec.Replicas, minReplicas, signals, st)
	if len(signals) == 0 {
		ctl.c.Recorder.Eventf(h, corev1.EventTypeWarning, "NoActivationSignal",
			"scale-to-zero: the HPA has no External or Object metric and no %s annotation, so nothing can wake it", AnnotationActivationMetric)
	}
	for _, s := range signals {
		if s.Err != nil {
			// Never sleep or wake on missing data, and say so where the user looks.
			ctl.c.Recorder.Eventf(h, corev1.EventTypeWarning, "FailedGetActivationSignal", "scale-to-zero: %s", d.Reason)
			break
		}
	}
	switch {
	case d.Action == Sleep && minReplicas == 0:
		// The HPA scales itself to zero (HPAScaleToZero); we only wake it faster than its sync.
		d.Action, d.State = None, st
	case d.Action == Sleep:
		if err := ctl.setReplicas(ctx, h, gr, sc, 0, d.State); err != nil {
			ctl.c.Recorder.Eventf(h, corev1.EventTypeWarning, "FailedScaleToZero", "%v", err)
			return ctl.o.PollAwake
		}
		ctl.o.Metrics.slept("idle")
		ctl.c.Recorder.Eventf(h, corev1.EventTypeNormal, "ScaledToZero", "%s/%s %d → 0: %s", h.Spec.ScaleTargetRef.Kind, h.Spec.ScaleTargetRef.Name, sc.Spec.Replicas, d.Reason)
		klog.InfoS("scaled to zero", "hpa", key, "from", sc.Spec.Replicas, "reason", d.Reason)
	case d.Action == Wake:
		if err := ctl.setReplicas(ctx, h, gr, sc, d.Replicas, d.State); err != nil {
			ctl.c.Recorder.Eventf(h, corev1.EventTypeWarning, "FailedWake", "%v", err)
			return ctl.o.PollSleeping
		}
		reason := "signal"
		if policy.Floor(now) > 0 && !anyActive(signals, policy) {
			reason = "schedule"
		}
		ctl.o.Metrics.woke(reason, ctl.o.Now().Sub(readAt))
		ctl.c.Recorder.Eventf(h, corev1.EventTypeNormal, "Woken", "%s/%s 0 → %d: %s", h.Spec.ScaleTargetRef.Kind, h.Spec.ScaleTargetRef.Name, d.Replicas, d.Reason)
		klog.InfoS("woken", "hpa", key, "to", d.Replicas, "reason", d.Reason)
	}
	ctl.mu.Lock()
	ctl.state[key] = d.State
	ctl.mu.Unlock()
	ctl.o.Metrics.sleeping(ctl.countSleeping())

	poll := ctl.o.PollAwake
	if sc.Spec.Replicas == 0 || d.Action == Sleep {
		poll = ctl.o.PollSleeping
	}
	// Decide's default requeue means "nothing due": keep to our own poll interval.
	if next := d.Requeue; next > 0 && next != DefaultRequeue && next < poll {
		return next
	}
	return poll
}

func anyActive(signals []Signal, p Policy) bool {
	for _, s := range signals {
		if s.Err == nil && s.Value > p.Threshold {
			return true
		}
	}
	return false
}

func (ctl *Controller) forget(key types.NamespacedName) {
	ctl.mu.Lock()
	delete(ctl.state, key)
	ctl.mu.Unlock()
}

func (ctl *Controller) countSleeping() int {
	ctl.mu.Lock()
	defer ctl.mu.Unlock()
	n := 0
	for _, s := range ctl.state {
		if s.Sleeping {
			n++
		}
	}
	return n
}

// loadState merges the persisted sleeping state with the in-memory idle timer.
func (ctl *Controller) loadState(key types.NamespacedName, h *autoscalingv2.HorizontalPodAutoscaler) (State, error) {
	persisted, err := StateFromAnnotations(h.Annotations)
	ctl.mu.Lock()
	mem, ok := ctl.state[key]
	ctl.mu.Unlock()
	if ok {
		persisted.IdleSince = mem.IdleSince
	} else {
		persisted.IdleSince = time.Time{} // a new leader restarts the idle timer: it only delays a sleep
	}
	return persisted, err
}

func (ctl *Controller) getScale(ctx context.Context, h *autoscalingv2.HorizontalPodAutoscaler) (*autoscalingv1.Scale, schema.GroupResource, error) {
	ref := h.Spec.ScaleTargetRef
	gv, err := schema.ParseGroupVersion(ref.APIVersion)
	if err != nil {
		return nil, schema.GroupResource{}, fmt.Errorf("scaleTargetRef apiVersion %q: %w", ref.APIVersion, err)
	}
	mapping, err := ctl.c.Mapper.RESTMapping(schema.GroupKind{Group: gv.Group, Kind: ref.Kind}, gv.Version)
	if err != nil {
		return nil, schema.GroupResource{}, fmt.Errorf("scaleTargetRef %s: %w", ref.Kind, err)
	}
	gr := mapping.Resource.GroupResource()
	sc, err := ctl.c.Scales.Scales(h.Namespace).Get(ctx, gr, ref.Name, metav1.GetOptions{})
	if err != nil {
		return nil, gr, fmt.Errorf("get %s %s/%s scale: %w", gr, h.Namespace, ref.Name, err)
	}
	return sc, gr, nil
}

// setReplicas writes the new replica count through /scale (with the resourceVersion read, so a
// concurrent change by the HPA or a human wins), then records our state on the HPA.
func (ctl *Controller) setReplicas(ctx context.Context, h *autoscalingv2.HorizontalPodAutoscaler, gr schema.GroupResource, sc *autoscalingv1.Scale, replicas int32, st State) error {
	sc = sc.DeepCopy()
	sc.Spec.Replicas = replicas
	if _, err := ctl.c.Scales.Scales(h.Namespace).Update(ctx, gr, sc, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("scale %s %s/%s to %d: %w", gr, h.Namespace, sc.Name, replicas, err)
	}
	patch := map[string]any{"metadata": map[string]any{"annotations": annotationPatch(st.Annotations())}}
	data, err := json.Marshal(patch)
	if err != nil {
		return err
	}
	if _, err := ctl.c.Kube.AutoscalingV2().HorizontalPodAutoscalers(h.Namespace).Patch(ctx, h.Name, types.MergePatchType, data, metav1.PatchOptions{}); err != nil {
		return fmt.Errorf("record state on HPA %s/%s: %w", h.Namespace, h.Name, err)
	}
	return nil
}

// annotationPatch turns "" values into deletions for a JSON merge patch.
func annotationPatch(a map[string]string) map[string]any {
	out := make(map[string]any, len(a))
	for k, v := range a {
		if v == "" {
			out[k] = nil
		} else {
			out[k] = v
		}
	}
	return out
}

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

// read fetches one signal through the metrics APIs, the way the HPA does.
func (ctl *Controller) read(_ context.Context, ns string, r SignalRef) Signal {
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

// Wake implements Waker for the push endpoint: it wakes one opted-in target at once.
func (ctl *Controller) Wake(ctx context.Context, t Target, reason string) error {
	if leader, who := ctl.o.Leader(); !leader {
		return &NotLeaderError{Leader: who}
	}
	start := ctl.o.Now()
	h, err := ctl.find(t)
	if err != nil {
		return err
	}
	policy, _, err := ParsePolicy(h.Annotations)
	if err != nil {
		return fmt.Errorf("HPA %s/%s: %w", h.Namespace, h.Name, err)
	}
	key := types.NamespacedName{Namespace: h.Namespace, Name: h.Name}
	if policy.Paused {
		return fmt.Errorf("HPA %s/%s is paused", h.Namespace, h.Name)
	}
	replicas := int32(1)
	if h.Spec.MinReplicas != nil && *h.Spec.MinReplicas > replicas {
		replicas = *h.Spec.MinReplicas
	}
	if f := policy.Floor(ctl.o.Now()); f > replicas {
		replicas = f
	}
	awake := false
	// The scale may change under us (the Deployment controller, a human): read it again and retry.
	err = retry.RetryOnConflict(retry.DefaultBackoff, func() error {
		sc, gr, err := ctl.getScale(ctx, h)
		if err != nil {
			return err
		}
		if sc.Spec.Replicas > 0 {
			awake = true
			return nil
		}
		return ctl.setReplicas(ctx, h, gr, sc, replicas, State{})
	})
	if err != nil {
		return err
	}
	if awake {
		// Awake already: restart its idle timer, so it does not go to sleep right after the push.
		ctl.mu.Lock()
		st := ctl.state[key]
		st.IdleSince = time.Time{}
		ctl.state[key] = st
		ctl.mu.Unlock()
		return nil
	}
	ctl.mu.Lock()
	ctl.state[key] = State{}
	ctl.mu.Unlock()
	ctl.o.Metrics.woke("push", ctl.o.Now().Sub(start))
	ctl.c.Recorder.Eventf(h, corev1.EventTypeNormal, "Woken", "%s/%s 0 → %d: %s", h.Spec.ScaleTargetRef.Kind, h.Spec.ScaleTargetRef.Name, replicas, reason)
	klog.InfoS("woken by push", "hpa", key, "to", replicas, "reason", reason)
	ctl.queue.Add(key)
	return nil
}

// find resolves a push target to its opted-in HPA.
func (ctl *Controller) find(t Target) (*autoscalingv2.HorizontalPodAutoscaler, error) {
	if t.HPA != "" {
		h, err := ctl.lister.HorizontalPodAutoscalers(t.Namespace).Get(t.HPA)
		if err != nil {
			if apierrors.IsNotFound(err) {
				return nil, &NotFoundError{Target: t}
			}
			return nil, err
		}
		if _, enabled, _ := ParsePolicy(h.Annotations); !enabled {
			return nil, &NotFoundError{Target: t}
		}
		return h, nil
	}
	hpas, err := ctl.lister.HorizontalPodAutoscalers(t.Namespace).List(labels.Everything())
	if err != nil {
		return nil, err
	}
	for _, h := range hpas {
		ref := h.Spec.ScaleTargetRef
		if ref.Kind == "Deployment" && ref.Name == t.Deployment {
			if _, enabled, _ := ParsePolicy(h.Annotations); enabled {
				return h, nil
			}
		}
	}
	return nil, &NotFoundError{Target: t}
}
