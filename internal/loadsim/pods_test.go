package loadsim_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/promql-adapter/promql-adapter/internal/loadsim"
)

// pod returns a pod with labels app=app and, unless ready is nil, a Ready condition.
func pod(ns, name, app string, ready *bool) *corev1.Pod {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{"app": app}}}
	if ready != nil {
		st := corev1.ConditionFalse
		if *ready {
			st = corev1.ConditionTrue
		}
		p.Status.Conditions = []corev1.PodCondition{
			{Type: corev1.PodScheduled, Status: corev1.ConditionTrue},
			{Type: corev1.PodReady, Status: st},
		}
	}
	return p
}

func TestInformerPods(t *testing.T) {
	yes, no := true, false
	deleting := pod("a", "web-deleting", "web", &yes)
	deleting.DeletionTimestamp = &metav1.Time{Time: time.Now()}
	deleting.Finalizers = []string{"test/keep"}
	client := fake.NewClientset(
		pod("a", "web-1", "web", &yes),
		pod("a", "web-2", "web", &no),
		pod("a", "web-3", "web", nil),
		deleting,
		pod("a", "api-1", "api", &yes),
		pod("b", "web-1", "web", &yes),
		pod("c", "web-9", "web", &yes),
	)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	pods, err := loadsim.NewInformerPods(ctx, client, []string{"a", "b", "a"})
	if err != nil {
		t.Fatalf("NewInformerPods: %v", err)
	}
	defer pods.Stop()
	web := labels.SelectorFromSet(labels.Set{"app": "web"})

	for _, tc := range []struct {
		ns   string
		sel  labels.Selector
		want []string
	}{
		{"a", web, []string{"web-1"}},
		{"a", labels.SelectorFromSet(labels.Set{"app": "api"}), []string{"api-1"}},
		{"a", labels.SelectorFromSet(labels.Set{"app": "none"}), nil},
		{"b", web, []string{"web-1"}},
		{"c", web, nil}, // Not watched.
	} {
		if got := pods.ReadyPods(tc.ns, tc.sel); !slices.Equal(got, tc.want) {
			t.Errorf("ReadyPods(%s, %s) = %v, want %v", tc.ns, tc.sel, got, tc.want)
		}
	}

	// Changes arrive through the watch.
	waitFor := func(want ...string) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for got := pods.ReadyPods("a", web); !slices.Equal(got, want); got = pods.ReadyPods("a", web) {
			if time.Now().After(deadline) {
				t.Fatalf("ReadyPods(a, app=web) = %v, want %v", got, want)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	podsAPI := client.CoreV1().Pods("a")
	if _, err := podsAPI.UpdateStatus(ctx, pod("a", "web-2", "web", &yes), metav1.UpdateOptions{}); err != nil {
		t.Fatalf("update web-2: %v", err)
	}
	waitFor("web-1", "web-2")
	if _, err := podsAPI.Create(ctx, pod("a", "web-0", "web", &yes), metav1.CreateOptions{}); err != nil {
		t.Fatalf("create web-0: %v", err)
	}
	waitFor("web-0", "web-1", "web-2")
	if err := podsAPI.Delete(ctx, "web-1", metav1.DeleteOptions{}); err != nil {
		t.Fatalf("delete web-1: %v", err)
	}
	waitFor("web-0", "web-2")
	if _, err := podsAPI.UpdateStatus(ctx, pod("a", "web-0", "web", &no), metav1.UpdateOptions{}); err != nil {
		t.Fatalf("update web-0: %v", err)
	}
	waitFor("web-2")

	// The simulator sees them too.
	s, err := loadsim.New(loadsim.Options{Pods: pods, Targets: []loadsim.Target{{
		Namespace: "a", Deployment: "web", Service: "web", Capacity: 10, MatchLabels: map[string]string{"app": "web"}, Load: 5}}})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if st := s.Snapshot()[0]; st.ReadyPods != 1 || st.Pods[0].Name != "web-2" || !near(st.ELU, 0.5) {
		t.Errorf("simulator status %+v, want web-2 at ELU 0.5", st)
	}

	pods.Stop()
	pods.Stop() // Idempotent.
}

func TestNewInformerPodsErrors(t *testing.T) {
	if _, err := loadsim.NewInformerPods(t.Context(), fake.NewClientset(), nil); err == nil || !strings.Contains(err.Error(), "no namespaces") {
		t.Errorf("no namespaces: %v", err)
	}
	if _, err := loadsim.NewInformerPods(t.Context(), fake.NewClientset(), []string{"a", ""}); err == nil || !strings.Contains(err.Error(), "empty namespace") {
		t.Errorf("empty namespace: %v", err)
	}
	if _, err := loadsim.NewInformerPods(t.Context(), nil, []string{"a"}); err == nil {
		t.Errorf("nil client: no error")
	}

	// A List that always fails never syncs: NewInformerPods gives up when ctx ends.
	client := fake.NewClientset()
	client.PrependReactor("list", "pods", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, errors.New("forbidden for the test")
	})
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	_, err := loadsim.NewInformerPods(ctx, client, []string{"a"})
	if err == nil || !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "namespace a") {
		t.Errorf("unsynced informer: error %v, want one wrapping context.DeadlineExceeded naming namespace a", err)
	}
}

func TestIsPodReady(t *testing.T) {
	yes, no := true, false
	deleting := pod("a", "p", "x", &yes)
	deleting.DeletionTimestamp = &metav1.Time{}
	for _, tc := range []struct {
		name string
		pod  *corev1.Pod
		want bool
	}{
		{"ready", pod("a", "p", "x", &yes), true},
		{"not ready", pod("a", "p", "x", &no), false},
		{"no conditions", pod("a", "p", "x", nil), false},
		{"being deleted", deleting, false},
	} {
		if got := loadsim.IsPodReady(tc.pod); got != tc.want {
			t.Errorf("%s: IsPodReady = %v, want %v", tc.name, got, tc.want)
		}
	}
}
