package wake

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"testing"
	"time"

	autoscalingv1 "k8s.io/api/autoscaling/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	fakescale "k8s.io/client-go/scale/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/record"
	"k8s.io/metrics/pkg/apis/external_metrics/v1beta1"
	fakeexternal "k8s.io/metrics/pkg/client/external_metrics/fake"
	"k8s.io/utils/ptr"

	"github.com/promql-adapter/promql-adapter/internal/testutil"
)

// fakeTarget is a Deployment's /scale: replicas and a resourceVersion that every update bumps.
type fakeTarget struct {
	mu       sync.Mutex
	replicas int32
	rv       int
	updates  []int32
	fail     error // every update fails with it when set
}

func (f *fakeTarget) get() int32 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.replicas
}

func (f *fakeTarget) reactors(c *fakescale.FakeScaleClient) {
	c.AddReactor("get", "deployments", func(a k8stesting.Action) (bool, runtime.Object, error) {
		f.mu.Lock()
		defer f.mu.Unlock()
		return true, &autoscalingv1.Scale{
			ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "shop", ResourceVersion: strconv.Itoa(f.rv)},
			Spec:       autoscalingv1.ScaleSpec{Replicas: f.replicas},
		}, nil
	})
	c.AddReactor("update", "deployments", func(a k8stesting.Action) (bool, runtime.Object, error) {
		sc := a.(k8stesting.UpdateAction).GetObject().(*autoscalingv1.Scale)
		f.mu.Lock()
		defer f.mu.Unlock()
		if f.fail != nil {
			return true, nil, f.fail
		}
		if sc.ResourceVersion != strconv.Itoa(f.rv) {
			return true, nil, apierrors.NewConflict(schema.GroupResource{Group: "apps", Resource: "deployments"}, "web", errors.New("stale"))
		}
		f.rv++
		f.replicas = sc.Spec.Replicas
		f.updates = append(f.updates, sc.Spec.Replicas)
		return true, sc, nil
	})
}

// testHPA is an opted-in HPA on shop/web with one External metric, idle after 10s.
func testHPA(annotations map[string]string) *autoscalingv2.HorizontalPodAutoscaler {
	h := &autoscalingv2.HorizontalPodAutoscaler{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "shop", Annotations: map[string]string{AnnotationEnabled: "true", AnnotationIdleAfter: "10s"}},
		Spec: autoscalingv2.HorizontalPodAutoscalerSpec{
			ScaleTargetRef: autoscalingv2.CrossVersionObjectReference{APIVersion: "apps/v1", Kind: "Deployment", Name: "web"},
			MinReplicas:    ptr.To[int32](1),
			MaxReplicas:    3,
			Metrics: []autoscalingv2.MetricSpec{{Type: autoscalingv2.ExternalMetricSourceType, External: &autoscalingv2.ExternalMetricSource{
				Metric: autoscalingv2.MetricIdentifier{Name: "queue_messages_ready"},
				Target: autoscalingv2.MetricTarget{Type: autoscalingv2.AverageValueMetricType, AverageValue: resource.NewQuantity(20, resource.DecimalSI)},
			}}},
		},
	}
	for k, v := range annotations {
		h.Annotations[k] = v
	}
	return h
}

var webKey = types.NamespacedName{Namespace: "shop", Name: "web"}

// newTestController starts a controller's HPA cache over h, with /scale served by target and
// External metrics by readQueue.
func newTestController(t *testing.T, h *autoscalingv2.HorizontalPodAutoscaler, target *fakeTarget, readQueue func() float64, o ControllerOptions) *Controller {
	t.Helper()
	kube := fake.NewSimpleClientset(h)
	scales := &fakescale.FakeScaleClient{}
	target.reactors(scales)
	ext := &fakeexternal.FakeExternalMetricsClient{}
	ext.AddReactor("list", "*", func(k8stesting.Action) (bool, runtime.Object, error) {
		v := readQueue()
		return true, &v1beta1.ExternalMetricValueList{Items: []v1beta1.ExternalMetricValue{{MetricName: "queue_messages_ready", Value: *resource.NewMilliQuantity(int64(v*1000), resource.DecimalSI)}}}, nil
	})
	mapper := meta.NewDefaultRESTMapper(nil)
	mapper.Add(schema.GroupVersionKind{Group: "apps", Version: "v1", Kind: "Deployment"}, meta.RESTScopeNamespace)
	ctl := NewController(Clients{Kube: kube, Scales: scales, Mapper: mapper, External: ext, Recorder: record.NewFakeRecorder(100)}, o)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	ctl.factory.Start(ctx.Done())
	if !ctl.WaitSynced(ctx) {
		t.Fatal("HPA cache did not sync")
	}
	return ctl
}

// TestPushDuringSleepDecisionIsNotLost: a decision reads the scale and the (idle) signal, a push
// arrives and is answered while the decision is still reading, then the decision would put the
// target to sleep. The push must win: the target stays awake. The interleaving is forced, not timed:
// the signal read blocks until the push has been answered.
func TestPushDuringSleepDecisionIsNotLost(t *testing.T) {
	target := &fakeTarget{replicas: 1}
	reading, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	now := time.Date(2026, 3, 2, 12, 0, 0, 0, time.UTC)
	ctl := newTestController(t, testHPA(nil), target, func() float64 {
		once.Do(func() { close(reading); <-release })
		return 0
	}, ControllerOptions{Now: func() time.Time { return now }})
	ctl.state[webKey] = State{IdleSince: now.Add(-time.Hour)} // idle for long: the decision is Sleep

	done := make(chan struct{})
	go func() { defer close(done); ctl.sync(context.Background(), webKey) }()
	<-reading
	err := ctl.Wake(context.Background(), Target{Namespace: "shop", HPA: "web"}, "test push")
	close(release)
	<-done
	if err != nil {
		t.Fatalf("push: %v", err)
	}
	if got := target.get(); got < 1 {
		t.Errorf("the push was answered \"woken\", then the decision it overtook scaled the target to %d (updates %v)", got, target.updates)
	}
	// With nothing pushed, the same decision does put it to sleep: the test can tell the two apart.
	ctl.sync(context.Background(), webKey)
	ctl.state[webKey] = State{IdleSince: now.Add(-time.Hour)}
	ctl.sync(context.Background(), webKey)
	if got := target.get(); got != 0 {
		t.Errorf("an idle target without a push: %d replicas, want 0", got)
	}
}

// TestControllerActsOnlyUnderATerm: without a term nothing is scaled and pushes get *NotLeaderError;
// a term that ends in the middle of a decision stops it before it writes.
func TestControllerActsOnlyUnderATerm(t *testing.T) {
	target := &fakeTarget{replicas: 1}
	reading, release := make(chan struct{}, 1), make(chan struct{})
	blocking := false
	var mu sync.Mutex
	now := time.Date(2026, 3, 2, 12, 0, 0, 0, time.UTC)
	l := NewLeadership()
	l.setLeader("other")
	ctl := newTestController(t, testHPA(nil), target, func() float64 {
		mu.Lock()
		b := blocking
		mu.Unlock()
		if b {
			reading <- struct{}{}
			<-release
		}
		return 0
	}, ControllerOptions{Now: func() time.Time { return now }, Leadership: l})
	idle := func() { ctl.state[webKey] = State{IdleSince: now.Add(-time.Hour)} }

	idle()
	ctl.sync(context.Background(), webKey)
	var nl *NotLeaderError
	if err := ctl.Wake(context.Background(), Target{Namespace: "shop", HPA: "web"}, "push"); !errors.As(err, &nl) || nl.Leader != "other" {
		t.Errorf("push without a term: %v, want *NotLeaderError naming the leader", err)
	}
	if len(target.updates) != 0 {
		t.Fatalf("scaled without a term: %v", target.updates)
	}

	term, end := context.WithCancelCause(context.Background())
	l.setTerm(term)
	mu.Lock()
	blocking = true
	mu.Unlock()
	done := make(chan struct{})
	go func() { defer close(done); ctl.sync(context.Background(), webKey) }()
	<-reading
	end(errLostLeadership) // the Lease went unrenewed while the signal was read
	close(release)
	<-done
	if len(target.updates) != 0 {
		t.Fatalf("scaled after the term ended: %v", target.updates)
	}

	mu.Lock()
	blocking = false
	mu.Unlock()
	term2, end2 := context.WithCancelCause(context.Background())
	defer end2(nil)
	l.setTerm(term2)
	idle()
	ctl.sync(context.Background(), webKey)
	if got := target.get(); got != 0 {
		t.Errorf("under a term an idle target was not put to sleep: %d replicas", got)
	}
}

// TestWakeClampsAndRefuses: a keep-awake floor above maxReplicas wakes to maxReplicas; a paused HPA
// refuses pushes with *RefusedError; before the cache syncs a push gets *NotSyncedError.
func TestWakeClampsAndRefuses(t *testing.T) {
	target := &fakeTarget{replicas: 0}
	ctl := newTestController(t, testHPA(map[string]string{AnnotationKeepAwake: "* 00:00-24:00 UTC floor=10"}), target, func() float64 { return 0 }, ControllerOptions{})
	if err := ctl.Wake(context.Background(), Target{Namespace: "shop", Deployment: "web"}, "push"); err != nil {
		t.Fatal(err)
	}
	if got := target.get(); got != 3 {
		t.Errorf("woken to %d, want maxReplicas 3 (floor 10 clamped)", got)
	}
	target.mu.Lock()
	target.replicas = 0
	target.mu.Unlock()
	ctl.sync(context.Background(), webKey) // the keep-awake window wakes it: clamped too
	if got := target.get(); got != 3 {
		t.Errorf("window woke it to %d, want maxReplicas 3", got)
	}

	paused := newTestController(t, testHPA(map[string]string{AnnotationPaused: "true"}), &fakeTarget{}, func() float64 { return 0 }, ControllerOptions{})
	var re *RefusedError
	if err := paused.Wake(context.Background(), Target{Namespace: "shop", HPA: "web"}, "push"); !errors.As(err, &re) {
		t.Errorf("paused: %v, want *RefusedError", err)
	}

	unsynced := NewController(Clients{Kube: fake.NewSimpleClientset()}, ControllerOptions{})
	var ns *NotSyncedError
	if err := unsynced.Wake(context.Background(), Target{Namespace: "shop", HPA: "web"}, "push"); !errors.As(err, &ns) {
		t.Errorf("before the cache synced: %v, want *NotSyncedError", err)
	}
}

// TestReadTimeout: a metrics read that hangs ends at ReadTimeout as a failed signal.
func TestReadTimeout(t *testing.T) {
	hang := make(chan struct{})
	defer close(hang)
	ctl := newTestController(t, testHPA(nil), &fakeTarget{replicas: 1}, func() float64 { <-hang; return 0 }, ControllerOptions{ReadTimeout: 50 * time.Millisecond})
	s := ctl.read(context.Background(), "shop", SignalRef{Kind: SignalExternal, Metric: "queue_messages_ready", Selector: labels.Everything()})
	if !errors.Is(s.Err, context.DeadlineExceeded) {
		t.Errorf("hanging read: %+v, want a deadline error", s)
	}
}

// TestFailuresCounted: a /scale write that fails while waking (by signal or by push) or putting to
// sleep is counted in promql_wake_failures_total by what failed, beside the HPA's Warning Event, so it
// can be alerted on.
func TestFailuresCounted(t *testing.T) {
	now := time.Date(2026, 3, 2, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name     string
		replicas int32
		queue    float64
		push     bool
		want     string
	}{
		{name: "wake by signal", replicas: 0, queue: 100, want: "wake"},
		{name: "wake by push", replicas: 0, push: true, want: "wake"},
		{name: "sleep", replicas: 1, queue: 0, want: "sleep"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reg := NewRegistry()
			target := &fakeTarget{replicas: tc.replicas, fail: apierrors.NewForbidden(schema.GroupResource{Group: "apps", Resource: "deployments/scale"}, "web", errors.New("denied"))}
			ctl := newTestController(t, testHPA(nil), target, func() float64 { return tc.queue }, ControllerOptions{Now: func() time.Time { return now }, Metrics: NewMetrics(reg)})
			ctl.state[webKey] = State{IdleSince: now.Add(-time.Hour)}
			if tc.push {
				if err := ctl.Wake(context.Background(), Target{Namespace: "shop", HPA: "web"}, "push"); err == nil {
					t.Fatal("push: no error though the /scale write failed")
				}
			} else {
				ctl.sync(context.Background(), webKey)
			}
			if got := testutil.GatheredValue(t, reg, "promql_wake_failures_total", map[string]string{"reason": tc.want}); got != 1 {
				t.Errorf("promql_wake_failures_total{reason=%q} = %v, want 1", tc.want, got)
			}
			if got := target.get(); got != tc.replicas {
				t.Errorf("replicas %d, want %d unchanged", got, tc.replicas)
			}
		})
	}
}
