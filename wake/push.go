package wake

import (
	"context"
	"errors"
	"fmt"
	"time"

	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/retry"
	"k8s.io/klog/v2"
)

// Wake wakes one opted-in target at once; it is the entry point of pushes and of anything else that wakes a
// target on demand. It returns nil once the target's /scale has replicas, *NotLeaderError when this replica does
// not lead (or stops leading meanwhile), *NotSyncedError before the HPA cache has synced, *NotFoundError when no
// opted-in HPA matches, and *RefusedError when the HPA is paused or its annotations are invalid.
func (ctl *Controller) Wake(ctx context.Context, t Target, reason string) error {
	term, who := ctl.o.Leadership.Leading()
	if term == nil {
		return &NotLeaderError{Leader: who}
	}
	if !ctl.synced() {
		return &NotSyncedError{}
	}
	ctx, cancel := underTerm(ctx, term)
	defer cancel()
	start := ctl.o.Now()
	h, err := ctl.find(t)
	if err != nil {
		return err
	}
	key := types.NamespacedName{Namespace: h.Namespace, Name: h.Name}
	unlock, err := ctl.locks.lock(ctx, key)
	if err != nil {
		return ctl.termErr(ctx, err)
	}
	defer unlock()
	// Whatever a decision read before this push, it must not act on it (see sync).
	ctl.mu.Lock()
	ctl.pushes[key]++
	ctl.mu.Unlock()
	policy, _, err := ParsePolicy(h.Annotations)
	if err != nil {
		return &RefusedError{Reason: fmt.Sprintf("HPA %s/%s has invalid %s annotations: %v", h.Namespace, h.Name, AnnotationPrefix, err)}
	}
	if policy.Paused {
		return &RefusedError{Reason: fmt.Sprintf("HPA %s/%s is paused (%s=true): remove the annotation to let pushes wake it", h.Namespace, h.Name, AnnotationPaused)}
	}
	replicas := int32(1)
	if h.Spec.MinReplicas != nil && *h.Spec.MinReplicas > replicas {
		replicas = *h.Spec.MinReplicas
	}
	if f := policy.Floor(ctl.o.Now()); f > replicas {
		replicas = f
	}
	replicas = max(min(replicas, h.Spec.MaxReplicas), 1)
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
		if ctx.Err() == nil {
			ctl.o.Metrics.failed("wake")
		}
		return ctl.termErr(ctx, err)
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

// termErr turns an error caused by the end of this replica's term into *NotLeaderError: the caller may retry on the new leader.
func (ctl *Controller) termErr(ctx context.Context, err error) error {
	if errors.Is(context.Cause(ctx), errLostLeadership) {
		_, who := ctl.o.Leadership.Leading()
		return fmt.Errorf("%w (%v)", &NotLeaderError{Leader: who}, err)
	}
	return err
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
