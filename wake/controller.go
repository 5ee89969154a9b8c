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
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	autoscalinglisters "k8s.io/client-go/listers/autoscaling/v2"
	"k8s.io/client-go/scale"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
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
	// Workers is how many HPAs are decided at once (default 4).
	Workers int
	// ReadTimeout bounds each read of an activation signal through the metrics APIs (default 5s).
	ReadTimeout time.Duration
	// Leadership says whether this replica acts, and under which context; nil means it always acts.
	Leadership *Leadership
	// OnTargets, if set, is told the number of opted-in HPAs whenever it changes (Run sizes the client rate with it).
	OnTargets func(n int)
	Metrics   *Metrics
	Now       func() time.Time
}

// Controller scales opted-in HPA targets to zero when idle and back to one on demand.
type Controller struct {
	c       Clients
	o       ControllerOptions
	lister  autoscalinglisters.HorizontalPodAutoscalerLister
	synced  cache.InformerSynced
	factory informers.SharedInformerFactory
	queue   workqueue.TypedDelayingInterface[types.NamespacedName]
	locks   keyLocks // one decision or push at a time per HPA

	mu      sync.Mutex
	state   map[types.NamespacedName]State  // in-memory idle timers; sleeping state is also persisted on the HPA
	pushes  map[types.NamespacedName]uint64 // pushes seen per HPA: a decision whose reads a push overtook does not act
	targets int                             // opted-in HPAs last counted
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
	if o.Workers <= 0 {
		o.Workers = 4
	}
	if o.ReadTimeout <= 0 {
		o.ReadTimeout = 5 * time.Second
	}
	if o.Leadership == nil {
		o.Leadership = AlwaysLeading(context.Background())
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
		locks:   keyLocks{m: map[types.NamespacedName]*keyLock{}},
		pushes:  map[types.NamespacedName]uint64{},
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

// Run processes HPAs with Workers workers until ctx ends.
func (ctl *Controller) Run(ctx context.Context) error {
	ctl.factory.Start(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), ctl.synced) {
		return errors.New("HPA cache did not sync")
	}
	go func() { <-ctx.Done(); ctl.queue.ShutDown() }()
	var wg sync.WaitGroup
	for range ctl.o.Workers {
		wg.Go(func() {
			for ctl.processNext(ctx) {
			}
		})
	}
	wg.Wait()
	return nil
}

// processNext decides one HPA; false once the queue shuts down.
func (ctl *Controller) processNext(ctx context.Context) bool {
	key, shutdown := ctl.queue.Get()
	if shutdown {
		return false
	}
	next := ctl.sync(ctx, key)
	ctl.queue.Done(key)
	if next > 0 {
		ctl.queue.AddAfter(key, next)
	}
	return true
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
	term, _ := ctl.o.Leadership.Leading()
	if term == nil {
		return ctl.o.PollAwake // ResyncAll queues every HPA again when this replica starts leading
	}
	// Every read and write below ends with the term: a replica that lost the Lease stops mid-way.
	ctx, cancel := underTerm(ctx, term)
	defer cancel()
	ctl.mu.Lock()
	pushes := ctl.pushes[key]
	ctl.mu.Unlock()
	sc, gr, err := ctl.getScale(ctx, h)
	if err != nil {
		if ctx.Err() == nil {
			ctl.c.Recorder.Eventf(h, corev1.EventTypeWarning, "FailedGetScale", "scale-to-zero: %v", err)
			ctl.o.Metrics.failed("get_scale")
		}
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
	// Decide and act under the HPA's lock, and only if no push came in since the reads above:
	// a push answered "woken" must never be undone by a decision taken on older data.
	unlock, err := ctl.locks.lock(ctx, key)
	if err != nil {
		return ctl.o.PollAwake // the term ended while the signals were read
	}
	defer unlock()
	if term.Err() != nil {
		return ctl.o.PollAwake // the term ended; ctx learns it a moment later (AfterFunc), the term at once
	}
	ctl.mu.Lock()
	overtaken := ctl.pushes[key] != pushes
	ctl.mu.Unlock()
	if overtaken {
		return ctl.o.PollSleeping // decide again on fresh reads
	}
	d := Decide(now, policy, sc.Spec.Replicas, minReplicas, signals, st)
	if d.Action == Wake && d.Replicas > h.Spec.MaxReplicas {
		d.Replicas = h.Spec.MaxReplicas // a keep-awake floor never exceeds what the HPA allows
	}
	if len(signals) == 0 {
		ctl.c.Recorder.Eventf(h, corev1.EventTypeWarning, "NoActivationSignal",
			"scale-to-zero: the HPA has no External or Object metric and no %s annotation, so nothing can wake it", AnnotationActivationMetric)
	}
	for _, s := range signals {
		if s.Err != nil {
			// Never sleep or wake on missing data, and say so where the user looks.
			ctl.c.Recorder.Eventf(h, corev1.EventTypeWarning, "FailedGetActivationSignal", "scale-to-zero: %s", d.Reason)
			ctl.o.Metrics.failed("signal")
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
			ctl.o.Metrics.failed("sleep")
			return ctl.o.PollAwake
		}
		ctl.o.Metrics.slept("idle")
		ctl.c.Recorder.Eventf(h, corev1.EventTypeNormal, "ScaledToZero", "%s/%s %d → 0: %s", h.Spec.ScaleTargetRef.Kind, h.Spec.ScaleTargetRef.Name, sc.Spec.Replicas, d.Reason)
		klog.InfoS("scaled to zero", "hpa", key, "from", sc.Spec.Replicas, "reason", d.Reason)
	case d.Action == Wake:
		if err := ctl.setReplicas(ctx, h, gr, sc, d.Replicas, d.State); err != nil {
			ctl.c.Recorder.Eventf(h, corev1.EventTypeWarning, "FailedWake", "%v", err)
			ctl.o.Metrics.failed("wake")
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
	ctl.countTargets()

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
	delete(ctl.pushes, key)
	ctl.mu.Unlock()
	ctl.countTargets()
}

// countTargets updates the sleeping gauge and tells OnTargets how many HPAs are opted in.
func (ctl *Controller) countTargets() {
	ctl.mu.Lock()
	sleeping, n, changed := 0, len(ctl.state), len(ctl.state) != ctl.targets
	for _, s := range ctl.state {
		if s.Sleeping {
			sleeping++
		}
	}
	ctl.targets = n
	ctl.mu.Unlock()
	ctl.o.Metrics.sleeping(sleeping)
	if changed && ctl.o.OnTargets != nil {
		ctl.o.OnTargets(n)
	}
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
