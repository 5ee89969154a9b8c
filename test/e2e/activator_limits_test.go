//go:build e2e

package e2e

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/promql-adapter/promql-adapter/activator"
	"github.com/promql-adapter/promql-adapter/internal/localcluster"
)

// activatorReply is one client's outcome through the activator.
type activatorReply struct {
	i          int
	code       int
	retryAfter string
	body       string
	err        error
}

// sendHeld sends a GET for host to url in the background; its reply arrives on out.
func sendHeld(ctx context.Context, url, host string, i int, out chan<- activatorReply) {
	go func() {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url+"/", nil)
		req.Host = host
		r := activatorReply{i: i}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			r.err = err
		} else {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			r.code, r.retryAfter, r.body = resp.StatusCode, resp.Header.Get("Retry-After"), string(b)
		}
		out <- r
	}()
}

// activatorGauge reads a gauge or counter of the activator's registry for one service (0 when absent).
func activatorGauge(t *testing.T, reg *prometheus.Registry, name, service string, extra ...string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"service": service}
	for i := 0; i+1 < len(extra); i += 2 {
		want[extra[i]] = extra[i+1]
	}
	var v float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if w, ok := want[lp.GetName()]; ok && w != lp.GetValue() {
					continue next
				}
			}
			v += m.GetGauge().GetValue() + m.GetCounter().GetValue()
		}
	}
	return v
}

// readyWhenListening annotates a Deployment's pod template so that its pods are Ready only once
// their process accepts connections on port (localcluster.AnnotationReadyWhenListening), as with a
// readiness probe: the readiness delay (the app's boot) is then really between the wake and Ready.
func readyWhenListening(ctx context.Context, t *testing.T, deployment string, port int) {
	t.Helper()
	patch := fmt.Sprintf(`{"spec":{"template":{"metadata":{"annotations":{%q:"%d"}}}}}`, localcluster.AnnotationReadyWhenListening, port)
	if _, err := st.Kube.AppsV1().Deployments(ns).Patch(ctx, deployment, types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
}

// waitHeld polls (every 5 ms) until the activator holds n requests for service.
func waitHeld(t *testing.T, rig *activatorRig, service string, n float64) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		v := activatorGauge(t, rig.reg, "promql_activator_requests_held", service)
		if v == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v requests held, want %v", service, v, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// podRequests reads the Node.js app's own count of the requests its handler answered
// (http_requests_total{code="200"}) from its /metrics at addr (host:port, a pod IP).
func podRequests(ctx context.Context, addr string) (float64, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/metrics", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("GET %s/metrics: %s", addr, resp.Status)
	}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), `http_requests_total{code="200"} `); ok {
			return strconv.ParseFloat(strings.TrimSpace(v), 64)
		}
	}
	return 0, sc.Err() // no request answered yet: prom-client prints no sample
}

// podAnswered waits until the target has one Ready address that serves /metrics, and returns
// that address and the requests its process answered.
func podAnswered(ctx context.Context, t *testing.T, rig *activatorRig, tg activator.Target) (string, float64) {
	t.Helper()
	var addr string
	var n float64
	eventually(t, 60*time.Second, tg.Service+" pod serves /metrics", func() (bool, string) {
		addrs, _ := rig.cl.Ready(tg)
		if len(addrs) != 1 {
			return false, fmt.Sprintf("ready addresses %v, want 1", addrs)
		}
		var err error
		addr = addrs[0]
		n, err = podRequests(ctx, addr)
		if err != nil {
			return false, err.Error()
		}
		return true, ""
	})
	return addr, n
}

// TestE2EActivatorLimits: the bounds of holding, on the local cluster with a real Node.js pod.
//   - Queue full: with max-held 4 and 4 requests held, a 5th gets 503 with Retry-After at once,
//     while the 4 are still held.
//   - Readiness delay (6 s boot) past max-wait (3 s): the 4 held get 503 with Retry-After; the
//     activator counts 5 × 503 for the target; the pod, once up, has answered none of them.
//   - A client that cancels while held is dropped from the queue (held 5 → 3, the target not yet Ready),
//     counted as 499, and never forwarded: the pod's own request counter says it answered exactly the 3 others.
func TestE2EActivatorLimits(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	const name, host = "limitweb", "limitweb.example.com"
	tg, sup := activatorWorkload(ctx, t, name, host, 6*time.Second)

	t.Run("QueueFullAndMaxWait", func(t *testing.T) {
		rig := startActivator(ctx, t, activator.Options{MaxHeld: 4, MaxWait: 3 * time.Second, RetryAfter: 7 * time.Second})
		waitAsleep(t, rig, sup, tg)
		held := make(chan activatorReply, 4)
		for i := 0; i < 4; i++ {
			sendHeld(ctx, rig.url, host, i, held)
		}
		waitHeld(t, rig, name, 4)
		full := make(chan activatorReply, 1)
		sendHeld(ctx, rig.url, host, 4, full)
		r := <-full
		heldNow := activatorGauge(t, rig.reg, "promql_activator_requests_held", name)
		answered := len(held)
		t.Logf("5th request: %d Retry-After %q %q (held still %v, %d of the 4 answered)", r.code, r.retryAfter, strings.TrimSpace(r.body), heldNow, answered)
		if r.err != nil || r.code != http.StatusServiceUnavailable || r.retryAfter != "7" || !strings.Contains(r.body, "queue is full") {
			t.Fatalf("5th request with 4 held: %d Retry-After %q %q %v; want 503, Retry-After 7, queue is full", r.code, r.retryAfter, r.body, r.err)
		}
		if heldNow != 4 || answered != 0 {
			t.Fatalf("the 503 for a full queue came after the held requests were let go (held %v, %d answered): not at once", heldNow, answered)
		}
		for i := 0; i < 4; i++ {
			r := <-held
			// The pod is Ready only once its process listens (readyWhenListening), 6 s after it starts:
			// every request is still held when max-wait ends.
			if r.err != nil || r.code != http.StatusServiceUnavailable || r.retryAfter != "7" || !strings.Contains(r.body, "did not get a Ready address within 3s") {
				t.Errorf("held request %d past max-wait: %d Retry-After %q %q %v; want 503, Retry-After 7", r.i, r.code, r.retryAfter, r.body, r.err)
			}
		}
		if n := activatorGauge(t, rig.reg, "promql_activator_requests_total", name, "code", "503"); n != 5 {
			t.Errorf("promql_activator_requests_total{code=503} = %v, want 5 (1 queue full + 4 past max-wait)", n)
		}
		if n := activatorGauge(t, rig.reg, "promql_activator_requests_total", name, "code", "200"); n != 0 {
			t.Errorf("promql_activator_requests_total{code=200} = %v, want 0", n)
		}
		// The wake went through; once the pod is up, it has answered none of the 5.
		addr, n := podAnswered(ctx, t, rig, tg)
		t.Logf("pod %s up after its 6s boot: answered %v requests", addr, n)
		if n != 0 {
			t.Fatalf("the pod answered %v requests; every request got 503 from the activator, none may reach it", n)
		}
		sleepTarget(ctx, t, name)
	})

	t.Run("ClientCancels", func(t *testing.T) {
		rig := startActivator(ctx, t, activator.Options{MaxWait: 60 * time.Second})
		waitAsleep(t, rig, sup, tg)
		const n = 5
		out := make(chan activatorReply, n)
		cancels := make([]context.CancelFunc, n)
		for i := 0; i < n; i++ {
			cctx, cancel := context.WithCancel(ctx)
			cancels[i] = cancel
			defer cancel()
			sendHeld(cctx, rig.url, host, i, out)
		}
		// Cancel as soon as all 5 are held, long before the pod can be Ready (the wake goes through
		// kube-apiserver, the Deployment and ReplicaSet controllers, kwok and the EndpointSlice controller).
		waitHeld(t, rig, name, n)
		gone := map[int]bool{1: true, 3: true}
		for i := range gone {
			cancels[i]()
		}
		// Counted as 499 (client gone) and out of the queue at once, while the 3 others are still held:
		// the pod becomes Ready only once its process listens, 6 s after it starts.
		deadline := time.Now().Add(10 * time.Second)
		for {
			held := activatorGauge(t, rig.reg, "promql_activator_requests_held", name)
			left := activatorGauge(t, rig.reg, "promql_activator_requests_total", name, "code", "499")
			if left == 2 && held == n-2 {
				addrs, _ := rig.cl.Ready(tg)
				t.Logf("the 2 cancelled requests left the queue, counted as 499; %v still held, Ready addresses %v", held, addrs)
				if len(addrs) != 0 {
					t.Fatalf("the target was Ready (%v) before the cancelled requests left: they were not dropped from the queue", addrs)
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the 2 cancelled requests: %v counted as 499 and %v still held after 10s, want 2 and %d", left, held, n-2)
			}
			time.Sleep(5 * time.Millisecond)
		}
		for i := 0; i < n; i++ {
			r := <-out
			switch {
			case gone[r.i]:
				if !errors.Is(r.err, context.Canceled) {
					t.Errorf("cancelled request %d: %d %q %v; want the client's own cancellation", r.i, r.code, r.body, r.err)
				}
			case r.err != nil || r.code != http.StatusOK || !strings.HasPrefix(r.body, "hello from "+name+"-"):
				t.Errorf("held request %d: %d %q %v; want the pod's answer", r.i, r.code, r.body, r.err)
			}
		}
		addr, answered := podAnswered(ctx, t, rig, tg)
		t.Logf("pod %s answered %v requests; activator: %v × 200, %v × 499", addr, answered,
			activatorGauge(t, rig.reg, "promql_activator_requests_total", name, "code", "200"),
			activatorGauge(t, rig.reg, "promql_activator_requests_total", name, "code", "499"))
		if answered != n-2 {
			t.Fatalf("the pod answered %v requests, want exactly %d: a cancelled request was forwarded", answered, n-2)
		}
		if ok := activatorGauge(t, rig.reg, "promql_activator_requests_total", name, "code", "200"); ok != n-2 {
			t.Errorf("promql_activator_requests_total{code=200} = %v, want %d", ok, n-2)
		}
	})
}
