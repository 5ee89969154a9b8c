package activator

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"

	autoscalingv1 "k8s.io/api/autoscaling/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/fake"
	fakescale "k8s.io/client-go/scale/fake"
	core "k8s.io/client-go/testing"
	"k8s.io/utils/ptr"
)

// scaleState is a Deployment's /scale with a resourceVersion, updated only with the version read.
type scaleState struct {
	replicas  int32
	version   int
	updates   atomic.Int32
	conflicts atomic.Int32
	// race runs before an update is checked: another replica writing first.
	race func(*scaleState)
}

func (s *scaleState) client() *fakescale.FakeScaleClient {
	c := &fakescale.FakeScaleClient{}
	c.AddReactor("get", "deployments", func(core.Action) (bool, runtime.Object, error) {
		return true, &autoscalingv1.Scale{
			ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "shop", ResourceVersion: string(rune('0' + s.version))},
			Spec:       autoscalingv1.ScaleSpec{Replicas: s.replicas},
		}, nil
	})
	c.AddReactor("update", "deployments", func(a core.Action) (bool, runtime.Object, error) {
		sc := a.(core.UpdateAction).GetObject().(*autoscalingv1.Scale)
		if s.race != nil {
			r := s.race
			s.race = nil
			r(s)
		}
		if sc.ResourceVersion != string(rune('0'+s.version)) {
			s.conflicts.Add(1)
			return true, nil, apierrors.NewConflict(schema.GroupResource{Group: "apps", Resource: "deployments"}, "web", nil)
		}
		s.updates.Add(1)
		s.replicas, s.version = sc.Spec.Replicas, s.version+1
		return true, sc, nil
	})
	return c
}

func TestScaleWaker(t *testing.T) {
	on := map[string]string{"scale-to-zero.promql-adapter.io/enabled": "true", "scale-to-zero.promql-adapter.io/sleeping-replicas": "3"}
	h := &autoscalingv2.HorizontalPodAutoscaler{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web", Annotations: on},
		Spec: autoscalingv2.HorizontalPodAutoscalerSpec{
			MinReplicas:    ptr.To[int32](2),
			MaxReplicas:    10,
			ScaleTargetRef: autoscalingv2.CrossVersionObjectReference{APIVersion: "apps/v1", Kind: "Deployment", Name: "web"},
		},
	}
	mapper := meta.NewDefaultRESTMapper(nil)
	mapper.Add(schema.GroupVersionKind{Group: "apps", Version: "v1", Kind: "Deployment"}, meta.RESTScopeNamespace)
	for _, tc := range []struct {
		name         string
		replicas     int32
		race         func(*scaleState)
		wantReplicas int32
		wantUpdates  int32
		wantPatch    bool
	}{
		{"asleep: woken to minReplicas, state cleared", 0, nil, 2, 1, true},
		{"awake: left alone", 3, nil, 3, 0, false},
		{"another replica wakes it first: conflict, re-read, stop", 0, func(s *scaleState) { s.replicas, s.version = 2, s.version+1 }, 2, 0, false},
		{"someone else writes 0 again first: conflict, re-read, wake", 0, func(s *scaleState) { s.version++ }, 2, 1, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := &scaleState{replicas: tc.replicas, race: tc.race}
			kube := fake.NewClientset(h.DeepCopy())
			w := &ScaleWaker{Kube: kube, Scales: st.client(), Mapper: mapper,
				HPA: func(ns, name string) (*autoscalingv2.HorizontalPodAutoscaler, error) {
					return kube.AutoscalingV2().HorizontalPodAutoscalers(ns).Get(context.Background(), name, metav1.GetOptions{})
				}}
			if err := w.Wake(context.Background(), web); err != nil {
				t.Fatal(err)
			}
			if st.replicas != tc.wantReplicas || st.updates.Load() != tc.wantUpdates {
				t.Fatalf("replicas %d after %d updates, want %d after %d", st.replicas, st.updates.Load(), tc.wantReplicas, tc.wantUpdates)
			}
			if tc.race != nil && st.conflicts.Load() != 1 {
				t.Fatalf("conflicts %d, want 1", st.conflicts.Load())
			}
			got, _ := kube.AutoscalingV2().HorizontalPodAutoscalers("shop").Get(context.Background(), "web", metav1.GetOptions{})
			_, sleeping := got.Annotations["scale-to-zero.promql-adapter.io/sleeping-replicas"]
			if sleeping == tc.wantPatch {
				t.Fatalf("sleeping-replicas still there: %v, want cleared: %v", sleeping, tc.wantPatch)
			}
		})
	}
	t.Run("keep-awake floor clamped to maxReplicas", func(t *testing.T) {
		c := h.DeepCopy()
		c.Annotations = map[string]string{"scale-to-zero.promql-adapter.io/enabled": "true", "scale-to-zero.promql-adapter.io/keep-awake": "* 00:00-24:00 UTC floor=50"}
		c.Spec.MaxReplicas = 2
		c.Spec.MinReplicas = ptr.To[int32](1)
		st := &scaleState{}
		kube := fake.NewClientset(c)
		w := &ScaleWaker{Kube: kube, Scales: st.client(), Mapper: mapper,
			HPA: func(string, string) (*autoscalingv2.HorizontalPodAutoscaler, error) { return c, nil }}
		if err := w.Wake(context.Background(), web); err != nil {
			t.Fatal(err)
		}
		if st.replicas != 2 {
			t.Fatalf("woken to %d, want maxReplicas 2 (floor 50 clamped)", st.replicas)
		}
	})
	t.Run("paused is an error", func(t *testing.T) {
		p := h.DeepCopy()
		p.Annotations = map[string]string{"scale-to-zero.promql-adapter.io/enabled": "true", "scale-to-zero.promql-adapter.io/paused": "true"}
		w := &ScaleWaker{HPA: func(string, string) (*autoscalingv2.HorizontalPodAutoscaler, error) { return p, nil }}
		if err := w.Wake(context.Background(), web); err == nil || !strings.Contains(err.Error(), "paused") {
			t.Fatalf("err %v, want paused", err)
		}
	})
}
