//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	emv1beta1 "k8s.io/metrics/pkg/apis/external_metrics/v1beta1"
	"k8s.io/utils/ptr"

	"github.com/promql-adapter/promql-adapter/internal/stack"
	"github.com/promql-adapter/promql-adapter/wake"
)

// BenchmarkWakeLatency measures, over 100 wakes each, the time from a push arriving to the scale
// subresource patched, and from a queue signal becoming visible in the external metrics API to the
// scale subresource patched, with promql-wake's default settings. Run it with: make bench-wake.
func BenchmarkWakeLatency(b *testing.B) {
	const n = 100
	ctx := context.Background()
	for _, name := range []string{"benchpush", "benchsignal"} {
		if err := st.CreateWorkload(ctx, queueTarget(name), 1); err != nil {
			b.Fatal(err)
		}
		h := queueHPA(name, map[string]string{wake.AnnotationIdleAfter: "1h"})
		if _, err := st.Kube.AutoscalingV2().HorizontalPodAutoscalers(ns).Create(ctx, h, metav1.CreateOptions{}); err != nil {
			b.Fatal(err)
		}
	}
	w, err := st.StartWake(ctx, "bench", wake.ControllerOptions{})
	if err != nil {
		b.Fatal(err)
	}
	defer w.Stop()
	eventuallyB(b, 30*time.Second, func() bool {
		holder, err := leaseHolder()
		return err == nil && holder == "bench"
	})

	for range b.N {
		// Push: POST /wake → the handler returns once /scale is updated.
		var push []time.Duration
		for range n {
			setReplicasTB(b, "benchpush", 0)
			req, _ := http.NewRequest(http.MethodPost, w.URL+"/wake/demo/deployment/benchpush", nil)
			req.Header.Set("Authorization", "Bearer "+w.Token)
			start := time.Now()
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				b.Fatal(err)
			}
			if resp.StatusCode != 200 {
				body, _ := io.ReadAll(resp.Body)
				b.Fatalf("push: %d %s", resp.StatusCode, body)
			}
			resp.Body.Close()
			push = append(push, time.Since(start))
			if got := replicasTB(b, "benchpush"); got != 1 {
				b.Fatalf("benchpush at %d after the push", got)
			}
		}

		// Signal: queue 0 → target at 0; queue 50 → visible in the external metrics API → /scale patched.
		var signal []time.Duration
		syncs0, t0 := syncCount(b, w), time.Now()
		for range n {
			if err := st.Sim.SetQueue(ns, "benchsignal", 0); err != nil {
				b.Fatal(err)
			}
			eventuallyB(b, 20*time.Second, func() bool { return queueValue(b, "benchsignal") == 0 })
			// The loop is locked to Prometheus's 1 s scrape (the wait above ends right after one), and the
			// controller's 500 ms polls start when it sees the target asleep: start them at a random phase.
			time.Sleep(time.Duration(rand.Int64N(int64(time.Second))))
			sleepLikeTheController(b, "benchsignal")
			time.Sleep(300 * time.Millisecond) // a sleeping poll passes on an empty queue
			wch, err := st.Kube.AppsV1().Deployments(ns).Watch(ctx, metav1.ListOptions{FieldSelector: "metadata.name=benchsignal"})
			if err != nil {
				b.Fatal(err)
			}
			if err := st.Sim.SetQueue(ns, "benchsignal", 50); err != nil {
				b.Fatal(err)
			}
			var visible time.Time
			eventuallyB(b, 20*time.Second, func() bool {
				if queueValue(b, "benchsignal") > 0 {
					visible = time.Now()
					return true
				}
				return false
			})
			patched := waitScaledUp(b, wch)
			wch.Stop()
			signal = append(signal, max(0, patched.Sub(visible)))
		}
		fmt.Printf("controller decisions during the signal wakes: %.1f per second for 2 opted-in HPAs\n",
			(syncCount(b, w)-syncs0)/time.Since(t0).Seconds())
		report(b, "push", push)
		report(b, "signal", signal)
	}
}

func report(b *testing.B, what string, d []time.Duration) {
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	p50, p99 := d[len(d)*50/100-1], d[(len(d)*99+99)/100-1]
	b.ReportMetric(float64(p50)/float64(time.Millisecond), what+"-p50-ms")
	b.ReportMetric(float64(p99)/float64(time.Millisecond), what+"-p99-ms")
	fmt.Printf("wake by %s over %d wakes: p50 %v p99 %v max %v\n", what, len(d), p50.Round(time.Millisecond), p99.Round(time.Millisecond), d[len(d)-1].Round(time.Millisecond))
}

// waitScaledUp returns when the watched Deployment's replicas leave 0.
func waitScaledUp(b *testing.B, w watch.Interface) time.Time {
	timeout := time.After(20 * time.Second)
	for {
		select {
		case ev := <-w.ResultChan():
			if d, ok := ev.Object.(*appsv1.Deployment); ok && ptr.Deref(d.Spec.Replicas, 0) > 0 {
				return time.Now()
			}
		case <-timeout:
			b.Fatal("benchsignal not woken within 20s")
		}
	}
}

// sleepLikeTheController does what promql-wake does when it puts a target to sleep: /scale to 0,
// then its state on the HPA (whose update makes the controller poll the sleeping target).
func sleepLikeTheController(b *testing.B, name string) {
	setReplicasTB(b, name, 0)
	patch := fmt.Sprintf(`{"metadata":{"annotations":{%q:"1"}}}`, wake.AnnotationSleepingReplicas)
	if _, err := st.Kube.AutoscalingV2().HorizontalPodAutoscalers(ns).Patch(context.Background(), name, types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		b.Fatal(err)
	}
}

func syncCount(b *testing.B, w *stack.Wake) float64 {
	resp, err := http.Get(w.URL + "/metrics")
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(line, "promql_wake_syncs_total "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				b.Fatal(err)
			}
			return f
		}
	}
	b.Fatal("no promql_wake_syncs_total")
	return 0
}

func queueValue(b *testing.B, queue string) float64 {
	var v emv1beta1.ExternalMetricValueList
	if err := get("/apis/external.metrics.k8s.io/v1beta1/namespaces/demo/queue_messages_ready?labelSelector="+url.QueryEscape("queue="+queue), &v); err != nil || len(v.Items) == 0 {
		return -1
	}
	return float64(v.Items[0].Value.MilliValue()) / 1000
}

func eventuallyB(b *testing.B, timeout time.Duration, cond func() bool) {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			b.Fatalf("condition not met within %s", timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
