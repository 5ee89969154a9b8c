//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/restmapper"
	"k8s.io/client-go/scale"
	"k8s.io/client-go/tools/record"
	"k8s.io/utils/ptr"

	"github.com/promql-adapter/promql-adapter/activator"
	"github.com/promql-adapter/promql-adapter/internal/podproc"
	"github.com/promql-adapter/promql-adapter/internal/testutil"
	"github.com/promql-adapter/promql-adapter/wake"
)

// recordingWaker notes when the activator calls for a wake, then wakes through /scale.
type recordingWaker struct {
	w     activator.Waker
	mu    sync.Mutex
	calls []time.Time
}

func (r *recordingWaker) Wake(ctx context.Context, t activator.Target) error {
	r.mu.Lock()
	r.calls = append(r.calls, time.Now())
	r.mu.Unlock()
	return r.w.Wake(ctx, t)
}

func (r *recordingWaker) callsSince(t0 time.Time) []time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []time.Time
	for _, c := range r.calls {
		if !c.Before(t0) {
			out = append(out, c)
		}
	}
	return out
}

// arrivals notes when each request reached the activator.
type arrivals struct {
	h  http.Handler
	mu sync.Mutex
	at []time.Time
}

func (a *arrivals) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	a.mu.Lock()
	a.at = append(a.at, time.Now())
	a.mu.Unlock()
	a.h.ServeHTTP(w, r)
}

func (a *arrivals) firstSince(t0 time.Time) time.Time {
	a.mu.Lock()
	defer a.mu.Unlock()
	var first time.Time
	for _, t := range a.at {
		if !t.Before(t0) && (first.IsZero() || t.Before(first)) {
			first = t
		}
	}
	return first
}

// scaleEvent is a change of the Deployment's spec.replicas seen by a watch.
type scaleEvent struct {
	at       time.Time
	replicas int32
}

// activatorRig is the activator run in-process on the local control plane: the real Cluster (informers),
// the real ScaleWaker (/scale through kube-apiserver), its handler served on a loopback port.
type activatorRig struct {
	url   string
	reg   *prometheus.Registry
	waker *recordingWaker
	arr   *arrivals
	cl    *activator.Cluster
}

func startActivator(ctx context.Context, t *testing.T, o activator.Options) *activatorRig {
	t.Helper()
	cfg := st.Cluster.AdminConfig()
	disc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	cached := memory.NewMemCacheClient(disc)
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(cached)
	scales, err := scale.NewForConfig(cfg, mapper, dynamic.LegacyAPIPathResolverFunc, scale.NewDiscoveryScaleKindResolver(cached))
	if err != nil {
		t.Fatal(err)
	}
	cl := activator.NewCluster(st.Kube, 10*time.Minute)
	// Events as cmd/promql-activator records them (HostClaimRefused).
	broadcaster := record.NewBroadcaster(record.WithContext(ctx))
	broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: st.Kube.CoreV1().Events("")})
	t.Cleanup(broadcaster.Shutdown)
	cl.Events = broadcaster.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "promql-activator"})
	if err := cl.Run(ctx); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	rw := &recordingWaker{w: &activator.ScaleWaker{Kube: st.Kube, Scales: scales, Mapper: mapper, HPA: cl.HPA}}
	arr := &arrivals{h: activator.NewHandler(ctx, cl, rw, activator.NewMetrics(reg), o)}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := activator.NewServer(arr)
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return &activatorRig{url: "http://" + ln.Addr().String(), reg: reg, waker: rw, arr: arr, cl: cl}
}

// metric sums the samples of a family whose labels include want.
func (a *activatorRig) metric(t *testing.T, name string, want map[string]string) (sum float64, count uint64) {
	t.Helper()
	sum, count, _ = testutil.Gathered(t, a.reg, name, want)
	return sum, count
}

// sleepTarget puts a target to zero the way promql-wake does: /scale to 0 and its sleeping state on the HPA.
func sleepTarget(ctx context.Context, t *testing.T, name string) {
	t.Helper()
	sc, err := st.Kube.AppsV1().Deployments(ns).GetScale(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	was := sc.Spec.Replicas
	sc.Spec.Replicas = 0
	if _, err := st.Kube.AppsV1().Deployments(ns).UpdateScale(ctx, name, &autoscalingv1.Scale{ObjectMeta: sc.ObjectMeta, Spec: sc.Spec}, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	ann := map[string]any{}
	for k, v := range (wake.State{Sleeping: true, SleepingReplicas: max(was, 1), IdleSince: time.Now()}).Annotations() {
		ann[k] = v
	}
	data, _ := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": ann}})
	if _, err := st.Kube.AutoscalingV2().HorizontalPodAutoscalers(ns).Patch(ctx, name, types.MergePatchType, data, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
}

// waitAsleep waits until the target has no pod, no process and no Ready address in the activator's view.
func waitAsleep(t *testing.T, rig *activatorRig, sup *podproc.Supervisor, tg activator.Target) {
	t.Helper()
	eventually(t, 60*time.Second, tg.Service+" asleep", func() (bool, string) {
		pods, err := st.Kube.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{LabelSelector: "app=" + tg.Service})
		if err != nil {
			return false, err.Error()
		}
		addrs, _ := rig.cl.Ready(tg)
		return len(pods.Items) == 0 && len(sup.Running()) == 0 && len(addrs) == 0,
			fmt.Sprintf("pods %d, processes %v, ready %v", len(pods.Items), sup.Running(), addrs)
	})
}

// activatorWorkload creates a Deployment at 0 with its Service, an HPA opted in to scale-to-zero that routes
// host to it, and runs a node process for each of its pods on the pod's IP.
func activatorWorkload(ctx context.Context, t *testing.T, name, host string, boot time.Duration) (activator.Target, *podproc.Supervisor) {
	t.Helper()
	appDir := filepath.Join(root, "hack/nodeapp")
	if err := podproc.NpmCI(ctx, appDir); err != nil {
		t.Fatal(err)
	}
	if err := st.CreateWorkload(ctx, queueTarget(name), 0); err != nil {
		t.Fatal(err)
	}
	// Its pods are Ready only once the node process listens (kwok alone would make them Ready at once).
	readyWhenListening(ctx, t, name, 8080)
	// A metric nothing serves: the HPA controller never moves the target; only the activator and the test do.
	h := hpa(name, autoscalingv2.MetricSpec{Type: autoscalingv2.ExternalMetricSourceType, External: &autoscalingv2.ExternalMetricSource{
		Metric: autoscalingv2.MetricIdentifier{Name: "activator_e2e_absent"},
		Target: autoscalingv2.MetricTarget{Type: autoscalingv2.AverageValueMetricType, AverageValue: resource.NewQuantity(1, resource.DecimalSI)},
	}})
	h.Annotations = map[string]string{
		wake.AnnotationEnabled:      "true",
		activator.AnnotationHosts:   host,
		activator.AnnotationService: name,
	}
	for k, v := range (wake.State{Sleeping: true, SleepingReplicas: 1, IdleSince: time.Now()}).Annotations() {
		if v != "" {
			h.Annotations[k] = v
		}
	}
	if _, err := st.Kube.AutoscalingV2().HorizontalPodAutoscalers(ns).Create(ctx, h, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	sup, err := podproc.Start(ctx, st.Kube, podproc.Options{
		Namespace: ns, Selector: labels.SelectorFromSet(labels.Set{"app": name}),
		Command: podproc.NodeApp(pnet, appDir, 8080, boot, time.Millisecond), LogDir: t.TempDir(),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sup.Stop)
	return activator.Target{Namespace: ns, HPA: name, Service: name}, sup
}

// TestE2EActivatorColdStarts: a target asleep behind the activator (replicas 0, real kwok pods whose IPs are
// served by node processes, EndpointSlices from kube-controller-manager); 20 clients send 200 requests at
// random moments over sleep → wake → sleep cycles. Every request gets the pod's answer, and each wake is
// called, and /scale written, only after the cycle's first held request arrived.
func TestE2EActivatorColdStarts(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	const (
		name     = "coldweb"
		host     = "coldweb.example.com"
		clients  = 20
		cycles   = 2
		perBurst = 100 // 200 requests over the cycles
		window   = 3 * time.Second
	)
	tg, sup := activatorWorkload(ctx, t, name, host, 200*time.Millisecond)
	rig := startActivator(ctx, t, activator.Options{MaxWait: 60 * time.Second})

	// Every change of spec.replicas, with when the watch saw it (after kube-apiserver accepted the write).
	w, err := st.Kube.AppsV1().Deployments(ns).Watch(ctx, metav1.ListOptions{FieldSelector: "metadata.name=" + name})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	var evMu sync.Mutex
	var events []scaleEvent
	go func() {
		last := int32(-1)
		for ev := range w.ResultChan() {
			dep, ok := ev.Object.(*appsv1.Deployment)
			if !ok {
				continue
			}
			if r := ptr.Deref(dep.Spec.Replicas, 0); r != last {
				last = r
				evMu.Lock()
				events = append(events, scaleEvent{time.Now(), r})
				evMu.Unlock()
			}
		}
	}()

	client := &http.Client{Timeout: 90 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: clients, MaxConnsPerHost: clients}}
	var coldStarts []time.Duration
	total, failed := 0, 0
	for cycle := 0; cycle < cycles; cycle++ {
		waitAsleep(t, rig, sup, tg)
		if r := replicas(t, name); r != 0 {
			t.Fatalf("cycle %d: %s at %d replicas before the burst, want 0", cycle, name, r)
		}
		wakesBefore, _ := rig.metric(t, "promql_activator_wakes_total", map[string]string{"service": name, "result": "ok"})
		begin := time.Now()
		// Each request at a random moment of the window, spread over the clients.
		offsets := make([][]time.Duration, clients)
		for i := 0; i < perBurst; i++ {
			c := i % clients
			offsets[c] = append(offsets[c], time.Duration(rand.Int64N(int64(window))))
		}
		type result struct {
			sent, done time.Time
			code       int
			body       string
			err        error
		}
		results := make(chan result, perBurst)
		var wg sync.WaitGroup
		for c := 0; c < clients; c++ {
			sort.Slice(offsets[c], func(i, j int) bool { return offsets[c][i] < offsets[c][j] })
			wg.Add(1)
			go func(offs []time.Duration) {
				defer wg.Done()
				for _, off := range offs {
					time.Sleep(time.Until(begin.Add(off)))
					req, _ := http.NewRequestWithContext(ctx, http.MethodGet, rig.url+"/", nil)
					req.Host = host
					r := result{sent: time.Now()}
					resp, err := client.Do(req)
					if err != nil {
						r.err = err
					} else {
						b, _ := io.ReadAll(resp.Body)
						resp.Body.Close()
						r.code, r.body = resp.StatusCode, string(b)
					}
					r.done = time.Now()
					results <- r
				}
			}(offsets[c])
		}
		wg.Wait()
		close(results)
		firstSent, firstOK := time.Time{}, time.Time{}
		for r := range results {
			total++
			if r.err != nil || r.code != http.StatusOK || !strings.HasPrefix(r.body, "hello from "+name+"-") {
				failed++
				t.Errorf("cycle %d: request sent at +%s: code %d, err %v, body %q", cycle, r.sent.Sub(begin).Round(time.Millisecond), r.code, r.err, r.body)
				continue
			}
			if firstSent.IsZero() || r.sent.Before(firstSent) {
				firstSent = r.sent
			}
			if firstOK.IsZero() || r.done.Before(firstOK) {
				firstOK = r.done
			}
		}
		firstArrived := rig.arr.firstSince(begin)
		calls := rig.waker.callsSince(begin)
		evMu.Lock()
		var up []scaleEvent
		for _, e := range events {
			if !e.at.Before(begin) && e.replicas > 0 {
				up = append(up, e)
			}
		}
		evMu.Unlock()
		wakesAfter, _ := rig.metric(t, "promql_activator_wakes_total", map[string]string{"service": name, "result": "ok"})
		switch {
		case firstArrived.IsZero():
			t.Fatalf("cycle %d: no request reached the activator", cycle)
		case len(calls) == 0 || wakesAfter <= wakesBefore:
			t.Fatalf("cycle %d: the activator never woke the target (wake calls %d, wakes_total{ok} %v → %v)", cycle, len(calls), wakesBefore, wakesAfter)
		case calls[0].Before(firstArrived):
			t.Fatalf("cycle %d: wake called %s before the first request arrived", cycle, firstArrived.Sub(calls[0]))
		case len(up) == 0:
			t.Fatalf("cycle %d: no /scale write from 0 seen by the watch", cycle)
		case up[0].at.Before(firstArrived):
			t.Fatalf("cycle %d: scaled to %d %s before the first request arrived", cycle, up[0].replicas, firstArrived.Sub(up[0].at))
		}
		cold := firstOK.Sub(firstArrived)
		coldStarts = append(coldStarts, cold)
		t.Logf("cycle %d: first request arrived +%s, wake called +%s (%d calls), /scale 0→%d seen +%s, first answer +%s (cold start %s), last answer +%s",
			cycle, firstArrived.Sub(begin).Round(time.Millisecond), calls[0].Sub(begin).Round(time.Millisecond), len(calls),
			up[0].replicas, up[0].at.Sub(begin).Round(time.Millisecond), firstOK.Sub(begin).Round(time.Millisecond),
			cold.Round(time.Millisecond), time.Since(begin).Round(time.Millisecond))
		// Woken the way promql-wake wakes: the sleeping state is gone from the HPA.
		h, err := st.Kube.AutoscalingV2().HorizontalPodAutoscalers(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if v := h.Annotations[wake.AnnotationSleepingReplicas]; v != "" {
			t.Errorf("cycle %d: HPA still records the target sleeping (%s=%q)", cycle, wake.AnnotationSleepingReplicas, v)
		}
		sleepTarget(ctx, t, name)
	}
	sum, n := rig.metric(t, "promql_activator_cold_start_seconds", map[string]string{"service": name})
	t.Logf("%d requests, %d failed; cold starts (first arrival → first answer) %v; activator cold_start_seconds: %d observations, mean %.3fs",
		total, failed, coldStarts, n, sum/float64(max(n, 1)))
	if total != cycles*perBurst || failed != 0 {
		t.Fatalf("%d of %d requests failed", failed, total)
	}
	if n != cycles {
		t.Errorf("cold_start_seconds has %d observations, want one per cycle (%d)", n, cycles)
	}
}

// TestE2EActivatorMaxWait: a target whose process boots for longer than --max-wait: the held request gets 503
// with Retry-After after max-wait; once it has booted the next request gets the pod's answer.
func TestE2EActivatorMaxWait(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const name, host = "slowweb", "slowweb.example.com"
	tg, sup := activatorWorkload(ctx, t, name, host, 5*time.Second)
	rig := startActivator(ctx, t, activator.Options{MaxWait: 2 * time.Second, RetryAfter: 3 * time.Second})
	waitAsleep(t, rig, sup, tg)

	get := func() (int, http.Header, string, time.Duration) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, rig.url+"/", nil)
		req.Host = host
		start := time.Now()
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, nil, err.Error(), time.Since(start)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header, string(b), time.Since(start)
	}
	code, hdr, body, took := get()
	if code != http.StatusServiceUnavailable || hdr.Get("Retry-After") != "3" {
		t.Fatalf("held past max-wait: got %d Retry-After %q after %s: %q; want 503 with Retry-After 3", code, hdr.Get("Retry-After"), took, body)
	}
	// Held for max-wait, less at most one retry backoff (20ms): the activator stops retrying refused
	// dials when the next round would end past the deadline.
	if took < 2*time.Second-100*time.Millisecond {
		t.Fatalf("503 after %s, well before max-wait (2s): %q", took, body)
	}
	t.Logf("held past max-wait: 503, Retry-After %s, after %s: %s", hdr.Get("Retry-After"), took.Round(time.Millisecond), strings.TrimSpace(body))
	// The wake went through: the pod boots and a later request gets its answer.
	eventually(t, 60*time.Second, "slowweb answers after its boot", func() (bool, string) {
		code, _, body, _ := get()
		return code == http.StatusOK && strings.HasPrefix(body, "hello from "+name+"-"), fmt.Sprintf("%d %q", code, body)
	})
}
