package activator

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	autoscalingv2 "k8s.io/api/autoscaling/v2"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/scale"
	"k8s.io/client-go/util/retry"
	"k8s.io/klog/v2"

	"github.com/promql-adapter/promql-adapter/wake"
)

// ScaleWaker wakes a target the way promql-wake's push does, without its
// leader gate: it reads the target's /scale, and only if it is at zero writes
// max(1, minReplicas, keep-awake floor), at most maxReplicas, with the resourceVersion it read
// (optimistic concurrency: a conflict re-reads, so wakes from several
// replicas are safe and the HPA or a human always wins), then clears the
// sleeping state promql-wake records on the HPA. A target already awake is
// left alone, so calling it again is harmless.
type ScaleWaker struct {
	Kube   kubernetes.Interface
	Scales scale.ScalesGetter
	Mapper meta.RESTMapper
	// HPA reads an HPA, typically from Cluster's cache.
	HPA func(namespace, name string) (*autoscalingv2.HorizontalPodAutoscaler, error)
	Now func() time.Time
}

// Wake implements Waker.
func (s *ScaleWaker) Wake(ctx context.Context, t Target) error {
	h, err := s.HPA(t.Namespace, t.HPA)
	if err != nil {
		return fmt.Errorf("wake %s: HPA %s: %w", t, t.HPA, err)
	}
	policy, enabled, err := wake.ParsePolicy(h.Annotations)
	switch {
	case !enabled:
		return fmt.Errorf("wake %s: HPA %s/%s is not opted in (%s)", t, h.Namespace, h.Name, wake.AnnotationEnabled)
	case err != nil:
		return fmt.Errorf("wake %s: HPA %s/%s: %w", t, h.Namespace, h.Name, err)
	case policy.Paused:
		return fmt.Errorf("wake %s: HPA %s/%s is paused", t, h.Namespace, h.Name)
	}
	now := time.Now
	if s.Now != nil {
		now = s.Now
	}
	replicas := int32(1)
	if h.Spec.MinReplicas != nil && *h.Spec.MinReplicas > replicas {
		replicas = *h.Spec.MinReplicas
	}
	if f := policy.Floor(now()); f > replicas {
		replicas = f
	}
	replicas = max(min(replicas, h.Spec.MaxReplicas), 1) // a keep-awake floor never exceeds what the HPA allows
	ref := h.Spec.ScaleTargetRef
	gv, err := schema.ParseGroupVersion(ref.APIVersion)
	if err != nil {
		return fmt.Errorf("wake %s: scaleTargetRef apiVersion %q: %w", t, ref.APIVersion, err)
	}
	mapping, err := s.Mapper.RESTMapping(schema.GroupKind{Group: gv.Group, Kind: ref.Kind}, gv.Version)
	if err != nil {
		return fmt.Errorf("wake %s: scaleTargetRef %s: %w", t, ref.Kind, err)
	}
	gr := mapping.Resource.GroupResource()
	woke := false
	err = retry.RetryOnConflict(retry.DefaultBackoff, func() error {
		sc, err := s.Scales.Scales(h.Namespace).Get(ctx, gr, ref.Name, metav1.GetOptions{})
		if err != nil {
			return fmt.Errorf("get %s %s/%s scale: %w", gr, h.Namespace, ref.Name, err)
		}
		if sc.Spec.Replicas > 0 {
			return nil // awake already, or another replica won the race
		}
		sc.Spec.Replicas = replicas // sc carries the resourceVersion read: a concurrent write conflicts
		if _, err := s.Scales.Scales(h.Namespace).Update(ctx, gr, sc, metav1.UpdateOptions{}); err != nil {
			return err
		}
		woke = true
		return nil
	})
	if err != nil {
		return fmt.Errorf("wake %s: %w", t, err)
	}
	if !woke {
		return nil
	}
	klog.InfoS("woken by a held request", "hpa", h.Namespace+"/"+h.Name, "to", replicas)
	// Record what promql-wake's own wake records: no longer sleeping, idle timer restarted.
	patch := map[string]any{}
	for k := range (wake.State{}).Annotations() {
		patch[k] = nil
	}
	data, err := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": patch}})
	if err != nil {
		return err
	}
	if _, err := s.Kube.AutoscalingV2().HorizontalPodAutoscalers(h.Namespace).Patch(ctx, h.Name, types.MergePatchType, data, metav1.PatchOptions{}); err != nil {
		return fmt.Errorf("wake %s: record state on HPA %s/%s: %w", t, h.Namespace, h.Name, err)
	}
	return nil
}
