//go:build e2e && peers

package e2e

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"

	"github.com/promql-adapter/promql-adapter/wake"
)

// raceArm is one way of waking a sleeping Deployment on the race's queue signal.
type raceArm struct {
	label, deployment string
	keda              bool // a KEDA ScaledObject (else promql-wake)
}

// raceArms are the Deployments of one race: KEDA at its default pollingInterval (30 s), KEDA at 1 s, and
// promql-wake with its defaults; all on the same queue.
func raceArms(sfx string) []raceArm {
	return []raceArm{
		{"KEDA pollingInterval 30s", "race-keda30-" + sfx, true},
		{"KEDA pollingInterval 1s", "race-keda1-" + sfx, true},
		{"promql-wake (defaults)", "race-wake-" + sfx, false},
	}
}

// raceOptions are a race's size: N trials, the random phase's range (KEDA's longest pollingInterval, so
// that a raise falls anywhere in its loop), and whether to measure idle → zero with the defaults.
type raceOptions struct {
	n     int
	phase time.Duration
	idle  bool
}

// TestE2EKedaWakeRaceShort is make test-peers' short form of the wake race (2 trials, no idle → zero):
// every arm wakes on the signal. make bench-wake runs the full race (BenchmarkWakeRace).
func TestE2EKedaWakeRaceShort(t *testing.T) {
	wakeRace(t, "s", raceOptions{n: 2, phase: time.Second})
}

// BenchmarkWakeRace: the same queue signal wakes three sleeping Deployments: one by a KEDA ScaledObject
// (minReplicaCount 0, pollingInterval 30 s, KEDA's default), one at pollingInterval 1 s (KEDA's best case),
// one by promql-wake (its defaults). Over N trials (PROMQL_ADAPTER_WAKE_RACE_N, default 30) the signal is
// raised at a random phase; measured is signal visible in Prometheus (the first query showing it) →
// the Deployment's replicas above 0 (a watch). Then idle → zero once with the defaults (KEDA's
// cooldownPeriod 300 s, promql-wake's idle-after 5 min). Run it with: make bench-wake.
func BenchmarkWakeRace(b *testing.B) {
	n := 30
	if v := os.Getenv("PROMQL_ADAPTER_WAKE_RACE_N"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 1 {
			b.Fatalf("PROMQL_ADAPTER_WAKE_RACE_N=%q: want a positive number", v)
		}
	}
	for range b.N {
		wakeRace(b, "b", raceOptions{n: n, phase: 30 * time.Second, idle: true})
	}
}

func wakeRace(t testing.TB, sfx string, o raceOptions) {
	ctx := context.Background()
	k := startKEDA(t)
	grantForwarding(t)
	restartAdapter(t, forwardArgs(k)) // KEDA's HPAs (above one replica) read through us
	queue := "race-" + sfx
	arms := raceArms(sfx)
	var names, scaledObjects, hpas []string
	for _, a := range arms {
		names = append(names, a.deployment)
		if a.keda {
			scaledObjects = append(scaledObjects, a.deployment)
		} else {
			hpas = append(hpas, a.deployment)
		}
	}
	removeAtEnd(t, scaledObjects, hpas, names)
	for _, a := range arms {
		if err := st.CreateWorkload(ctx, queueTarget(a.deployment), 0); err != nil {
			t.Fatal(err)
		}
		if a.keda {
			poll := int64(30)
			if strings.Contains(a.deployment, "keda1") {
				poll = 1
			}
			createScaledObject(t, scaledObject(a.deployment, queue, 0, poll)) // cooldownPeriod: KEDA's default
			continue
		}
		h := hpa(a.deployment, autoscalingv2.MetricSpec{Type: autoscalingv2.ExternalMetricSourceType, External: &autoscalingv2.ExternalMetricSource{
			Metric: autoscalingv2.MetricIdentifier{Name: "queue_messages_ready", Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"queue": queue}}},
			Target: autoscalingv2.MetricTarget{Type: autoscalingv2.AverageValueMetricType, AverageValue: resource.NewQuantity(20, resource.DecimalSI)},
		}})
		h.Annotations = map[string]string{wake.AnnotationEnabled: "true"} // idle-after: the default
		if _, err := st.Kube.AutoscalingV2().HorizontalPodAutoscalers(ns).Create(ctx, h, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	w, err := st.StartWake(ctx, "race-"+sfx, wake.ControllerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = w.Stop() })
	eventuallyTB(t, 60*time.Second, "promql-wake race-"+sfx+" leads", func() (bool, string) {
		h, err := leaseHolder()
		return err == nil && h == "race-"+sfx, fmt.Sprint(h, err)
	})

	lat := map[string][]time.Duration{}
	for i := range o.n {
		setQueue(t, queue, 0)
		waitSignal(t, queue, func(v float64) bool { return v == 0 })
		// Every arm back to sleep, as a short cooldown would put it; an HPA sync that was under way when the
		// signal dropped may still scale one up again, so repeat until all stay at zero for 1.5 s (a KEDA-1s
		// poll and a promql-wake poll pass on the empty queue).
		eventuallyTB(t, 60*time.Second, fmt.Sprintf("trial %d: every arm asleep before the signal", i), func() (bool, string) {
			for _, a := range arms {
				if replicasTB(t, a.deployment) == 0 && !(!a.keda && i == 0) {
					continue
				}
				if a.keda {
					setReplicasTB(t, a.deployment, 0)
				} else {
					sleepArm(t, a.deployment)
				}
			}
			time.Sleep(1500 * time.Millisecond)
			var state []string
			for _, a := range arms {
				if got := replicasTB(t, a.deployment); got != 0 {
					state = append(state, fmt.Sprintf("%s at %d", a.deployment, got))
				}
			}
			return len(state) == 0, strings.Join(state, ", ")
		})
		time.Sleep(time.Duration(rand.Int64N(int64(o.phase))))
		wch, err := st.Kube.AppsV1().Deployments(ns).Watch(ctx, metav1.ListOptions{LabelSelector: "app in (" + strings.Join(names, ",") + ")"})
		if err != nil {
			t.Fatal(err)
		}
		setQueue(t, queue, 50)
		visible := waitSignal(t, queue, func(v float64) bool { return v > 0 })
		woke := map[string]time.Time{}
		timeout := time.After(120 * time.Second)
		for len(woke) < len(arms) {
			select {
			case ev := <-wch.ResultChan():
				if d, ok := ev.Object.(*appsv1.Deployment); ok && ptr.Deref(d.Spec.Replicas, 0) > 0 {
					if _, seen := woke[d.Name]; !seen {
						woke[d.Name] = time.Now()
					}
				}
			case <-timeout:
				wch.Stop()
				t.Fatalf("trial %d: woken within 120s: %v of %v", i, woke, names)
			}
		}
		wch.Stop()
		var line []string
		for _, a := range arms {
			d := max(0, woke[a.deployment].Sub(visible))
			lat[a.label] = append(lat[a.label], d)
			line = append(line, fmt.Sprintf("%s %v", a.deployment, d.Round(time.Millisecond)))
		}
		t.Logf("trial %d/%d: %s", i+1, o.n, strings.Join(line, ", "))
	}

	idle := map[string]time.Duration{}
	if o.idle {
		// Every arm is awake from the last trial: the queue empties, and each goes to zero on its defaults.
		setQueue(t, queue, 0)
		zero := waitSignal(t, queue, func(v float64) bool { return v == 0 })
		pending := map[string]string{}
		for _, a := range arms {
			pending[a.deployment] = a.label
		}
		deadline := time.Now().Add(12 * time.Minute)
		for len(pending) > 0 && time.Now().Before(deadline) {
			for d, label := range pending {
				if replicasTB(t, d) == 0 {
					idle[label] = time.Since(zero)
					delete(pending, d)
				}
			}
			time.Sleep(250 * time.Millisecond)
		}
		if len(pending) > 0 {
			t.Fatalf("not at zero within 12 min of an empty queue: %v", pending)
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "\nwake race over %d trials: signal visible in Prometheus → the Deployment's replicas above 0\n\n", o.n)
	fmt.Fprintf(&b, "| arm | p50 | p99 | max | idle → zero (defaults) |\n|---|---|---|---|---|\n")
	for _, a := range arms {
		p50, p99, mx := percentiles(lat[a.label])
		idleS := "not measured"
		if d, ok := idle[a.label]; ok {
			idleS = d.Round(100 * time.Millisecond).String()
		}
		fmt.Fprintf(&b, "| %s | %v | %v | %v | %s |\n", a.label, p50.Round(time.Millisecond), p99.Round(time.Millisecond), mx.Round(time.Millisecond), idleS)
	}
	fmt.Print(b.String())
	t.Log(b.String())
}

// BenchmarkKedaForwardLatency: GET of KEDA's external metric (a ScaledObject's s0-prometheus), 200 times
// each, interleaved: straight to KEDA's metrics server, straight to promql-adapter (which forwards it), and
// through kube-apiserver (which proxies to promql-adapter, which forwards). Every answer is KEDA's, which
// queries Prometheus for it. Run it with: make bench-wake.
func BenchmarkKedaForwardLatency(b *testing.B) {
	const n = 200
	ctx := context.Background()
	k := startKEDA(b)
	grantForwarding(b)
	restartAdapter(b, forwardArgs(k))
	so := "kso-lat"
	removeAtEnd(b, []string{so}, nil, []string{so})
	if err := st.CreateWorkload(ctx, queueTarget(so), 1); err != nil {
		b.Fatal(err)
	}
	createScaledObject(b, scaledObject(so, so, 1, 5))
	setQueue(b, so, 10)
	waitSignal(b, so, func(v float64) bool { return v > 0 })
	path := kedaMetricPath(so)

	admin := st.Cluster.AdminConfig()
	adapterTLS, err := rest.TLSConfigFor(admin)
	if err != nil {
		b.Fatal(err)
	}
	kedaCfg := rest.CopyConfig(admin)
	kedaCfg.CAData, kedaCfg.CAFile = nil, k.CACertFile()
	kedaTLS, err := rest.TLSConfigFor(kedaCfg)
	if err != nil {
		b.Fatal(err)
	}
	client := func(cfgTLS *http.Transport) *http.Client {
		return &http.Client{Timeout: 10 * time.Second, Transport: cfgTLS}
	}
	kedaHC := client(&http.Transport{TLSClientConfig: kedaTLS})
	adapterHC := client(&http.Transport{TLSClientConfig: adapterTLS})
	direct := func(hc *http.Client, base string) func() error {
		return func() error {
			resp, err := hc.Get(base + path)
			if err != nil {
				return err
			}
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil || resp.StatusCode != 200 {
				return fmt.Errorf("%s%s: %s %v %s", base, path, resp.Status, err, body)
			}
			return nil
		}
	}
	ways := []struct {
		name string
		get  func() error
	}{
		{"KEDA's metrics server, direct", direct(kedaHC, k.MetricsServerURL())},
		{"promql-adapter, direct (forwards to KEDA)", direct(adapterHC, st.AdapterURL())},
		{"kube-apiserver → promql-adapter → KEDA", func() error { return get(path, nil) }},
	}
	for range b.N {
		lat := make([][]time.Duration, len(ways))
		for range 10 { // warm the connections
			for _, w := range ways {
				if err := w.get(); err != nil {
					b.Fatal(err)
				}
			}
		}
		for range n {
			for i, w := range ways {
				start := time.Now()
				if err := w.get(); err != nil {
					b.Fatal(err)
				}
				lat[i] = append(lat[i], time.Since(start))
			}
		}
		p50d, p99d, _ := percentiles(lat[0])
		var sb strings.Builder
		fmt.Fprintf(&sb, "\nGET %s, %d sequential requests each, interleaved\n\n| path | p50 | p99 | p50 ratio | p99 ratio |\n|---|---|---|---|---|\n", path, n)
		for i, w := range ways {
			p50, p99, _ := percentiles(lat[i])
			fmt.Fprintf(&sb, "| %s | %.2f ms | %.2f ms | %.2f | %.2f |\n", w.name, ms(p50), ms(p99), float64(p50)/float64(p50d), float64(p99)/float64(p99d))
		}
		fmt.Print(sb.String())
	}
}

// percentiles returns p50, p99 and max (nearest rank).
func percentiles(d []time.Duration) (p50, p99, mx time.Duration) {
	if len(d) == 0 {
		return 0, 0, 0
	}
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	rank := func(p int) time.Duration { return s[max(0, (len(s)*p+99)/100-1)] }
	return rank(50), rank(99), s[len(s)-1]
}

func setQueue(t testing.TB, queue string, v float64) {
	t.Helper()
	if err := st.Sim.SetQueue(ns, queue, v); err != nil {
		t.Fatal(err)
	}
}

// waitSignal polls Prometheus (every 10 ms, up to 30 s) until the queue's value satisfies ok and returns
// when that first query answered.
func waitSignal(t testing.TB, queue string, ok func(float64) bool) time.Time {
	t.Helper()
	q := fmt.Sprintf(`sum(queue_messages_ready{namespace=%q,queue=%q})`, ns, queue)
	deadline := time.Now().Add(30 * time.Second)
	last := "no answer"
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		v, _, _, err := st.Prom.API().Query(ctx, q, time.Now())
		cancel()
		if err == nil {
			last = v.String()
			if vec, isVec := v.(model.Vector); isVec && len(vec) == 1 && ok(float64(vec[0].Value)) {
				return time.Now()
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("queue %s in Prometheus: not as wanted within 30s (last %s)", queue, last)
	return time.Time{}
}

// sleepArm does what promql-wake does when it puts a target to sleep: /scale to 0, then its state on
// the HPA (whose update makes the controller poll the sleeping target).
func sleepArm(t testing.TB, name string) {
	t.Helper()
	setReplicasTB(t, name, 0)
	patch := fmt.Sprintf(`{"metadata":{"annotations":{%q:"1"}}}`, wake.AnnotationSleepingReplicas)
	if _, err := st.Kube.AutoscalingV2().HorizontalPodAutoscalers(ns).Patch(context.Background(), name, types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
}

func eventuallyTB(t testing.TB, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, state := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s; last state: %s", what, timeout, state)
		}
		time.Sleep(250 * time.Millisecond)
	}
}
