//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"strings"
	"testing"
	"time"

	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/promql-adapter/promql-adapter/internal/loadsim"
	"github.com/promql-adapter/promql-adapter/internal/stack"
	"github.com/promql-adapter/promql-adapter/wake"
)

// Targets of the scale-to-zero tests: queues that nothing drains (capacity ~0).
var (
	sleepy, pushy, office = queueTarget("sleepy"), queueTarget("pushy"), queueTarget("office")
	// An HPA with minReplicas 0, which scales itself to zero.
	selfzero = queueTarget("selfzero")
	// Targets of BenchmarkWakeLatency.
	benchPush, benchSignal = queueTarget("benchpush"), queueTarget("benchsignal")
)

func queueTarget(name string) loadsim.Target {
	return loadsim.Target{Namespace: ns, Deployment: name, Service: name, Capacity: 0.001, MatchLabels: map[string]string{"app": name}}
}

// queueHPA is an HPA on the target's queue length (External), 20 messages per replica, opted in to scale-to-zero.
func queueHPA(name string, annotations map[string]string) *autoscalingv2.HorizontalPodAutoscaler {
	h := hpa(name, autoscalingv2.MetricSpec{Type: autoscalingv2.ExternalMetricSourceType, External: &autoscalingv2.ExternalMetricSource{
		Metric: autoscalingv2.MetricIdentifier{Name: "queue_messages_ready", Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"queue": name}}},
		Target: autoscalingv2.MetricTarget{Type: autoscalingv2.AverageValueMetricType, AverageValue: resource.NewQuantity(20, resource.DecimalSI)},
	}})
	h.Annotations = map[string]string{wake.AnnotationEnabled: "true", wake.AnnotationIdleAfter: "10s"}
	for k, v := range annotations {
		h.Annotations[k] = v
	}
	return h
}

func replicas(t *testing.T, name string) int32 {
	t.Helper()
	d, err := st.Kube.AppsV1().Deployments(ns).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return ptr.Deref(d.Spec.Replicas, -1)
}

func waitSpecReplicas(t *testing.T, name string, want int32, timeout time.Duration) {
	t.Helper()
	eventually(t, timeout, fmt.Sprintf("%s at %d replicas", name, want), func() (bool, string) {
		got := replicas(t, name)
		return got == want, fmt.Sprintf("replicas %d", got)
	})
}

// TestE2EScaleToZeroAndWake: idle → 0 (the HPA shows ScalingDisabled), queue grows → 1 → the HPA
// scales further; an Alertmanager-shaped POST wakes a sleeping target; a keep-awake window keeps
// another one up; a standby replica answers 503 naming the leader, and takes over when it goes.
func TestE2EScaleToZeroAndWake(t *testing.T) {
	ctx := context.Background()
	for _, tg := range []loadsim.Target{sleepy, pushy, office} {
		if err := st.CreateWorkload(ctx, tg, 3); err != nil {
			t.Fatal(err)
		}
	}
	waitReplicas(t, "sleepy", 3, 30*time.Second)

	leader, err := st.StartWake(ctx, "wake-a", wake.ControllerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer leader.Stop()
	waitLeader(t, "wake-a")
	standby, err := st.StartWake(ctx, "wake-b", wake.ControllerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer standby.Stop()

	// Every queue is empty. "office" has a keep-awake window open all day, every day.
	for _, h := range []*autoscalingv2.HorizontalPodAutoscaler{
		queueHPA("sleepy", nil),
		queueHPA("pushy", nil),
		queueHPA("office", map[string]string{wake.AnnotationKeepAwake: "* 00:00-24:00 UTC floor=2"}),
	} {
		h.Spec.MinReplicas = ptr.To[int32](1)
		if _, err := st.Kube.AutoscalingV2().HorizontalPodAutoscalers(ns).Create(ctx, h, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}

	start := time.Now()
	waitSpecReplicas(t, "sleepy", 0, 60*time.Second)
	waitSpecReplicas(t, "pushy", 0, 20*time.Second)
	t.Logf("3 → 0 after %s (idle-after 10s; the HPA first brings 3 → 1 on an empty queue)", time.Since(start).Round(100*time.Millisecond))
	eventually(t, 30*time.Second, "sleepy's HPA shows ScalingDisabled", func() (bool, string) {
		h, err := st.Kube.AutoscalingV2().HorizontalPodAutoscalers(ns).Get(ctx, "sleepy", metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		c := condition(h, autoscalingv2.ScalingActive)
		return c != nil && c.Status == corev1.ConditionFalse && c.Reason == "ScalingDisabled", fmt.Sprintf("%+v", c)
	})
	if got := replicas(t, "office"); got < 1 {
		t.Errorf("office has %d replicas inside its keep-awake window", got)
	}
	waitEvent(t, "sleepy", "ScaledToZero")

	// The queue grows: woken to 1 at once, then the HPA takes over: 70 messages / 20 → 4.
	if err := st.Sim.SetQueue(ns, "sleepy", 70); err != nil {
		t.Fatal(err)
	}
	waitSpecReplicas(t, "sleepy", 1, 20*time.Second)
	waitSpecReplicas(t, "sleepy", 4, 60*time.Second)
	waitEvent(t, "sleepy", "Woken")

	// A push through the standby is refused with the leader's name; through the leader it wakes "pushy".
	payload, err := os.ReadFile("../../testdata/alertmanager/e2e-pushy.json")
	if err != nil {
		t.Fatal(err)
	}
	body := string(payload)
	code, hdr, resp := post(t, standby, "/alertmanager", body)
	if code != http.StatusServiceUnavailable || hdr.Get("X-Leader") != "wake-a" {
		t.Errorf("standby answered %d %q: %s", code, hdr.Get("X-Leader"), resp)
	}
	if got := replicas(t, "pushy"); got != 0 {
		t.Fatalf("pushy has %d replicas before the push", got)
	}
	pushed := time.Now()
	code, _, resp = post(t, leader, "/alertmanager", body)
	took := time.Since(pushed)
	if code != http.StatusOK {
		t.Fatalf("push: %d %s", code, resp)
	}
	if got := replicas(t, "pushy"); got != 1 {
		t.Errorf("pushy has %d replicas right after the push answered (%s), want 1", got, took)
	}
	t.Logf("Alertmanager push → pushy scaled 0 → 1 within the request: %s", took.Round(time.Millisecond))

	code, _, resp = post(t, leader, "/alertmanager", `{"version":"4","alerts":[`)
	if code != http.StatusBadRequest {
		t.Errorf("malformed payload: %d %s", code, resp)
	}
	code, _, _ = postToken(t, leader, "/wake/demo/hpa/sleepy", "", "wrong-token")
	if code != http.StatusUnauthorized {
		t.Errorf("wrong token: %d", code)
	}
	if got := replicas(t, "office"); got < 1 {
		t.Errorf("office went to sleep inside its keep-awake window: %d replicas", got)
	}

	// The leader goes away (releasing its Lease, as on a rolling update): the standby takes over and
	// acts. pushy, woken above with an empty queue, goes back to sleep; a push through the new
	// leader wakes it.
	if err := leader.Stop(); err != nil {
		t.Fatal(err)
	}
	stopped := time.Now()
	waitLeader(t, "wake-b")
	t.Logf("leader stopped → standby leads after %s", time.Since(stopped).Round(100*time.Millisecond))
	waitSpecReplicas(t, "pushy", 0, 40*time.Second)
	if code, _, resp := post(t, standby, "/alertmanager", body); code != http.StatusOK {
		t.Fatalf("push through the new leader: %d %s", code, resp)
	}
	if got := replicas(t, "pushy"); got != 1 {
		t.Errorf("pushy has %d replicas after a push through the new leader, want 1", got)
	}
}

// TestE2ELeavesSelfScalingHPAAlone: an opted-in HPA with minReplicas 0 (HPAScaleToZero, beta and
// on in 1.37; before 1.37 alpha, and the stack turns it on as a cluster admin would) goes to zero by itself. promql-wake does not put it to sleep when its idle-after
// passes while the HPA still holds replicas, never marks it asleep, and wakes it when the queue grows.
func TestE2ELeavesSelfScalingHPAAlone(t *testing.T) {
	ctx := context.Background()
	if err := st.CreateWorkload(ctx, selfzero, 2); err != nil {
		t.Fatal(err)
	}
	if err := st.Sim.SetQueue(ns, "selfzero", 30); err != nil { // 30 / 20 per replica → 2
		t.Fatal(err)
	}
	waker, err := st.StartWake(ctx, "wake-c", wake.ControllerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer waker.Stop()
	h := queueHPA("selfzero", nil) // idle-after 10s
	h.Spec.MinReplicas = ptr.To[int32](0)
	// The HPA keeps its replicas 30 s after the queue empties: promql-wake's 10 s pass first.
	h.Spec.Behavior.ScaleDown.StabilizationWindowSeconds = ptr.To[int32](30)
	if _, err := st.Kube.AutoscalingV2().HorizontalPodAutoscalers(ns).Create(ctx, h, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "the HPA reads the queue", func() (bool, string) {
		h, err := st.Kube.AutoscalingV2().HorizontalPodAutoscalers(ns).Get(ctx, "selfzero", metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		return len(h.Status.CurrentMetrics) > 0 && h.Status.DesiredReplicas == 2, fmt.Sprintf("%+v", h.Status)
	})

	if err := st.Sim.SetQueue(ns, "selfzero", 0); err != nil {
		t.Fatal(err)
	}
	emptied := time.Now()
	time.Sleep(22 * time.Second) // idle-after (10 s) and a poll (5 s) have passed; the HPA's 30 s have not
	h, err = st.Kube.AutoscalingV2().HorizontalPodAutoscalers(ns).Get(ctx, "selfzero", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := replicas(t, "selfzero"); got != 2 || h.Annotations[wake.AnnotationSleepingReplicas] != "" {
		t.Fatalf("%s after the queue emptied: %d replicas, sleeping-replicas %q; promql-wake must leave this to the HPA",
			time.Since(emptied).Round(time.Second), got, h.Annotations[wake.AnnotationSleepingReplicas])
	}
	waitSpecReplicas(t, "selfzero", 0, 40*time.Second)
	t.Logf("the HPA took selfzero to zero itself, %s after the queue emptied", time.Since(emptied).Round(time.Second))
	if events := eventReasons(t, "selfzero"); strings.Contains(events, "ScaledToZero:") {
		t.Errorf("promql-wake put a self-scaling HPA's target to sleep: %s", events)
	}

	if err := st.Sim.SetQueue(ns, "selfzero", 50); err != nil {
		t.Fatal(err)
	}
	grew := time.Now()
	eventually(t, 20*time.Second, "selfzero back from zero", func() (bool, string) {
		got := replicas(t, "selfzero")
		return got >= 1, fmt.Sprintf("replicas %d", got)
	})
	t.Logf("queue grew → selfzero 0 → %d in %s", replicas(t, "selfzero"), time.Since(grew).Round(100*time.Millisecond))
	if h, err := st.Kube.AutoscalingV2().HorizontalPodAutoscalers(ns).Get(ctx, "selfzero", metav1.GetOptions{}); err != nil || h.Annotations[wake.AnnotationSleepingReplicas] != "" {
		t.Errorf("after the wake: %v, sleeping-replicas %q", err, h.Annotations[wake.AnnotationSleepingReplicas])
	}
}

// leaseHolder is the identity of the promql-wake replica that holds the Lease.
func leaseHolder() (string, error) {
	l, err := st.Kube.CoordinationV1().Leases(stack.AdapterNamespace).Get(context.Background(), "promql-wake", metav1.GetOptions{})
	if err != nil {
		return "", err
	}
	return ptr.Deref(l.Spec.HolderIdentity, ""), nil
}

// waitLeader waits until the promql-wake replica id holds the Lease.
func waitLeader(t *testing.T, id string) {
	t.Helper()
	eventually(t, 30*time.Second, id+" leads", func() (bool, string) {
		holder, err := leaseHolder()
		if err != nil {
			return false, err.Error()
		}
		return holder == id, "holder " + holder
	})
}

func eventReasons(t *testing.T, hpaName string) string {
	t.Helper()
	evs, err := st.Kube.CoreV1().Events(ns).List(context.Background(), metav1.ListOptions{FieldSelector: "involvedObject.name=" + hpaName})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range evs.Items {
		out = append(out, e.Reason+": "+e.Message)
	}
	sort.Strings(out)
	return strings.Join(out, "; ")
}

// waitEvent waits up to 10 s for an event on the HPA whose "reason: message" contains want: events
// are recorded asynchronously, after the action they report.
func waitEvent(t *testing.T, hpaName, want string) {
	t.Helper()
	eventually(t, 10*time.Second, fmt.Sprintf("an event %q on HPA %s", want, hpaName), func() (bool, string) {
		ev := eventReasons(t, hpaName)
		return strings.Contains(ev, want), ev
	})
}

func post(t *testing.T, w *stack.Wake, path, body string) (int, http.Header, string) {
	return postToken(t, w, path, body, w.Token)
}

func postToken(t *testing.T, w *stack.Wake, path, body, token string) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, w.URL+path, bytes.NewBufferString(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}
