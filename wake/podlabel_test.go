package wake

import (
	"context"
	"errors"
	"reflect"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/utils/ptr"
)

// TestLabelPlan: the leader labels its own pod and takes the label from every replica it saw lead; a
// standby only clears its own pod, also when it does not know what its pod carries (at start).
func TestLabelPlan(t *testing.T) {
	for _, tc := range []struct {
		name  string
		state labelState
		want  []labelAction
	}{
		{"start, standby: clear own pod", labelState{Self: "a"}, []labelAction{{"a", false}}},
		{"start, leading at once", labelState{Self: "a", Leading: true}, []labelAction{{"a", true}}},
		{"standby, cleared", labelState{Self: "a", Labelled: ptr.To(false), Stale: map[string]bool{"b": true}}, nil},
		{"standby, was leader", labelState{Self: "a", Labelled: ptr.To(true)}, []labelAction{{"a", false}}},
		{"standby does not touch the leader it saw", labelState{Self: "a", Labelled: ptr.To(false), Stale: map[string]bool{"b": true}}, nil},
		{"new leader: own pod first, then every replica seen leading", labelState{Self: "a", Leading: true, Labelled: ptr.To(false),
			Stale: map[string]bool{"c": true, "b": true}}, []labelAction{{"a", true}, {"b", false}, {"c", false}}},
		{"leader, labelled, nothing stale", labelState{Self: "a", Leading: true, Labelled: ptr.To(true)}, nil},
		{"leader, a stale replica left", labelState{Self: "a", Leading: true, Labelled: ptr.To(true), Stale: map[string]bool{"b": true}},
			[]labelAction{{"b", false}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.state.plan(); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("plan() = %v, want %v", got, tc.want)
			}
		})
	}
}

// TestLabelDone: a failed patch stays in the plan; taking the label from a pod that is gone succeeded,
// giving it to one's own missing pod did not; the replica's own identity is never stale.
func TestLabelDone(t *testing.T) {
	notFound := apierrors.NewNotFound(corev1.Resource("pods"), "b")
	s := labelState{Self: "a", Leading: true}
	s.saw([]string{"b", "a", "", "c"})
	if want := map[string]bool{"b": true, "c": true}; !reflect.DeepEqual(s.Stale, want) {
		t.Fatalf("stale %v, want %v", s.Stale, want)
	}
	s.done(labelAction{"a", true}, notFound)
	s.done(labelAction{"b", false}, notFound)
	s.done(labelAction{"c", false}, errors.New("connection refused"))
	if got, want := s.plan(), []labelAction{{"a", true}, {"c", false}}; !reflect.DeepEqual(got, want) {
		t.Errorf("after failures, plan %v, want %v", got, want)
	}
	s.done(labelAction{"a", true}, nil)
	s.done(labelAction{"c", false}, nil)
	if got := s.plan(); got != nil {
		t.Errorf("after success, plan %v, want none", got)
	}
}

// TestPodLabelerFollowsLeadership runs the labeler against a fake API: its pod loses a stale label at
// start, gains it when the term starts while the previous leader's pod loses it, loses it when the term
// ends, and loses it on shutdown too. The readiness gate (clear) opens once the own pod is clean.
func TestPodLabelerFollowsLeadership(t *testing.T) {
	const key = DefaultLeaderPodLabel
	pod := func(name string, labelled bool) *corev1.Pod {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name, Labels: map[string]string{"app": "wake"}}}
		if labelled {
			p.Labels[key] = "true"
		}
		return p
	}
	kube := fake.NewClientset(pod("a", true), pod("b", true))
	labelled := func(name string) bool {
		p, err := kube.CoreV1().Pods("ns").Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if p.Labels["app"] != "wake" {
			t.Fatalf("pod %s lost its other labels: %v", name, p.Labels)
		}
		return p.Labels[key] == "true"
	}
	l := NewLeadership()
	p := newPodLabeler(kube.CoreV1().Pods("ns"), key, "a", 50*time.Millisecond)
	if p.clear() {
		t.Fatal("clear before the labeler ran")
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { p.run(ctx, l) })

	waitFor(t, 5*time.Second, "a's stale label removed at start", func() bool { return !labelled("a") && p.clear() })
	if !labelled("b") {
		t.Fatal("a standby took the label from the leader's pod")
	}
	l.setLeader("b")
	time.Sleep(100 * time.Millisecond)
	if !labelled("b") {
		t.Fatal("a standby took the label from the leader's pod after seeing it lead")
	}

	// b's Lease expires (it crashed, its label stays); a takes over.
	term, endTerm := context.WithCancel(context.Background())
	l.setLeader("a")
	l.setTerm(term)
	waitFor(t, 5*time.Second, "a labelled, b not", func() bool { return labelled("a") && !labelled("b") })
	if p.clear() {
		t.Error("clear while labelled")
	}

	endTerm() // the term ends without setTerm(nil), as watchRenewals ends it
	waitFor(t, 5*time.Second, "a's label removed when its term ended", func() bool { return !labelled("a") })

	l.setTerm(context.Background())
	waitFor(t, 5*time.Second, "a labelled again", func() bool { return labelled("a") })
	cancel()
	wg.Wait()
	if labelled("a") {
		t.Error("a's label stayed after shutdown")
	}
}

// TestPodLabelerRetries: a patch that fails is tried again every retry period.
func TestPodLabelerRetries(t *testing.T) {
	kube := fake.NewClientset(&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "a"}})
	var mu sync.Mutex
	fail := 3
	kube.PrependReactor("patch", "pods", func(k8stesting.Action) (bool, runtime.Object, error) {
		mu.Lock()
		defer mu.Unlock()
		if fail > 0 {
			fail--
			return true, nil, errors.New("etcdserver: request timed out")
		}
		return false, nil, nil
	})
	l := NewLeadership()
	p := newPodLabeler(kube.CoreV1().Pods("ns"), DefaultLeaderPodLabel, "a", 20*time.Millisecond)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go p.run(ctx, l)
	waitFor(t, 5*time.Second, "the label cleared after three failures", p.clear)
}

// TestValidateLeaderPodLabel names the flag and the key.
func TestValidateLeaderPodLabel(t *testing.T) {
	if err := ValidateLeaderPodLabel(DefaultLeaderPodLabel); err != nil {
		t.Error(err)
	}
	if err := ValidateLeaderPodLabel("bad key!"); err == nil || err.Error()[:18] != "--leader-pod-label" {
		t.Errorf("bad key: %v", err)
	}
}
