//go:build e2e

package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/retry"

	"github.com/promql-adapter/promql-adapter/activator"
	"github.com/promql-adapter/promql-adapter/wake"
)

// TestE2EActivatorBench is `make bench-activator` (PROMQL_ADAPTER_BENCH_ACTIVATOR_COLD=100 cold starts per
// readiness delay, 4,000 warm requests per path); make test runs its short form (3 cold starts, 400 warm
// requests) and asserts only that every request got the pod's answer.
//
// Cold start, per readiness delay (the Node.js pod's boot before it listens: 0 and 1 s): the target is
// put to zero through /scale, then one request is sent through the activator (in-process, real informers,
// the real /scale waker) and timed from its arrival to its first byte. Each is split into the activator's
// own part — arrival → wake call, plus the later of (address Ready in the activator's informer, process
// listening) → first byte — and the cluster's part (wake → Deployment, ReplicaSet, kwok, EndpointSlice,
// node process start and boot).
//
// Warm path: the same pod awake, c=20 keep-alive clients, through the activator and straight to the
// pod's address, alternating rounds in the same run.
func TestE2EActivatorBench(t *testing.T) {
	cold, warmN := 3, 400
	if v := os.Getenv("PROMQL_ADAPTER_BENCH_ACTIVATOR_COLD"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("PROMQL_ADAPTER_BENCH_ACTIVATOR_COLD=%q: want a positive number", v)
		}
		cold, warmN = n, 4000
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Minute)
	defer cancel()
	rig := startActivator(ctx, t, activator.Options{MaxWait: 60 * time.Second})
	client := &http.Client{Timeout: 90 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 20}}

	var rows []string
	var warmTarget activator.Target
	var warmHost string
	for _, delay := range []time.Duration{0, time.Second} {
		name := fmt.Sprintf("benchboot%d", delay.Milliseconds())
		host := name + ".example.com"
		tg, sup := activatorWorkload(ctx, t, name, host, delay)
		var total, over, own, clusterPart []time.Duration
		for i := 0; i < cold; i++ {
			waitAsleep(t, rig, sup, tg)
			s := coldStartOnce(ctx, t, rig, client, tg, host)
			total = append(total, s.firstByte.Sub(s.sent))
			over = append(over, s.firstByte.Sub(s.sent)-delay)
			up := abLater(s.ready, s.listening)
			own = append(own, s.wake.Sub(s.sent)+s.firstByte.Sub(up))
			clusterPart = append(clusterPart, up.Sub(s.wake))
			abSleep(ctx, t, name)
		}
		if delay == 0 {
			warmTarget, warmHost = tg, host
		}
		rows = append(rows,
			abRow(fmt.Sprintf("cold start, boot %s: arrival → first byte", delay), total),
			abRow(fmt.Sprintf("cold start, boot %s: added over the boot", delay), over),
			abRow(fmt.Sprintf("cold start, boot %s: the activator's own part", delay), own),
			abRow(fmt.Sprintf("cold start, boot %s: the cluster's part (wake → Ready and listening)", delay), clusterPart))
	}
	t.Logf("RESULT | %d cold starts per boot | p50 | p99 | max |", cold)
	t.Logf("RESULT |---|---|---|---|")
	for _, r := range rows {
		t.Logf("RESULT %s", r)
	}

	// Warm: wake the boot-0 target with one request, then measure both paths.
	if code, body := abGet(ctx, t, client, rig.url, warmHost); code != http.StatusOK {
		t.Fatalf("waking %s for the warm path: %d %q", warmHost, code, body)
	}
	podAddr, _ := podAnswered(ctx, t, rig, warmTarget)
	res := map[string]*abWarm{"direct": {}, "activator": {}}
	for round := 0; round < 2; round++ {
		for _, path := range []string{"direct", "activator"} {
			url, hostHdr := "http://"+podAddr, ""
			if path == "activator" {
				url, hostHdr = rig.url, warmHost
			}
			r := abWarmRun(ctx, t, client, url+"/?busy_ms=0", hostHdr, warmN/2, 20)
			res[path].lat = append(res[path].lat, r.lat...)
			res[path].elapsed += r.elapsed
			res[path].failed += r.failed
		}
	}
	t.Logf("RESULT | warm, c=20, %d requests per path | p50 | p99 | req/s |", warmN)
	t.Logf("RESULT |---|---|---|---|")
	for _, path := range []string{"direct", "activator"} {
		r := res[path]
		t.Logf("RESULT | %s | %s | %s | %.0f |", path, abMS(abPct(r.lat, .5)), abMS(abPct(r.lat, .99)), float64(len(r.lat))/r.elapsed.Seconds())
	}
	d, a := res["direct"], res["activator"]
	t.Logf("RESULT | activator / direct | %.2f× | %.2f× | %.2f× |", abRatio(abPct(a.lat, .5), abPct(d.lat, .5)), abRatio(abPct(a.lat, .99), abPct(d.lat, .99)),
		(float64(len(a.lat))/a.elapsed.Seconds())/(float64(len(d.lat))/d.elapsed.Seconds()))
	if d.failed+a.failed > 0 {
		t.Fatalf("warm path: %d direct and %d activator requests failed", d.failed, a.failed)
	}
}

// abSleep puts the target to zero as sleepTarget does, retrying a /scale write that raced the
// Deployment controller's status update of the wake just served.
func abSleep(ctx context.Context, t *testing.T, name string) {
	t.Helper()
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		sc, err := st.Kube.AppsV1().Deployments(ns).GetScale(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		sc.Spec.Replicas = 0
		_, err = st.Kube.AppsV1().Deployments(ns).UpdateScale(ctx, name, sc, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	// The sleeping state promql-wake records on the HPA (the activator's wake clears it).
	ann := map[string]any{}
	for k, v := range (wake.State{Sleeping: true, SleepingReplicas: 1, IdleSince: time.Now()}).Annotations() {
		ann[k] = v
	}
	data, _ := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": ann}})
	if _, err := st.Kube.AutoscalingV2().HorizontalPodAutoscalers(ns).Patch(ctx, name, types.MergePatchType, data, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
}

// coldSample is one cold start, as seen by the client, the activator and the pod.
type coldSample struct {
	sent, wake, ready, listening, firstByte time.Time
}

// coldStartOnce sends one request to the sleeping target and times its cold start.
func coldStartOnce(ctx context.Context, t *testing.T, rig *activatorRig, client *http.Client, tg activator.Target, host string) coldSample {
	t.Helper()
	var s coldSample
	// When the activator's informer first shows a Ready address.
	readyCh := make(chan time.Time, 1)
	watchCtx, stop := context.WithCancel(ctx)
	defer stop()
	go func() {
		for {
			ch := rig.cl.Changed()
			if a, _ := rig.cl.Ready(tg); len(a) > 0 {
				readyCh <- time.Now()
				return
			}
			select {
			case <-watchCtx.Done():
				return
			case <-ch:
			}
		}
	}()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, rig.url+"/", nil)
	req.Host = host
	s.sent = time.Now()
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("cold start of %s: %v", tg.Service, err)
	}
	var b [1]byte
	_, _ = resp.Body.Read(b[:])
	s.firstByte = time.Now()
	rest, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(string(b[:])+string(rest), "hello from "+tg.Service+"-") {
		t.Fatalf("cold start of %s: %d %q", tg.Service, resp.StatusCode, string(b[:])+string(rest))
	}
	select {
	case s.ready = <-readyCh:
	case <-time.After(10 * time.Second):
		t.Fatalf("cold start of %s answered, but the activator's informer never showed a Ready address", tg.Service)
	}
	calls := rig.waker.callsSince(s.sent)
	if len(calls) == 0 {
		t.Fatalf("cold start of %s answered without a wake call", tg.Service)
	}
	s.wake = calls[0]
	addrs, _ := rig.cl.Ready(tg)
	if len(addrs) != 1 {
		t.Fatalf("%s: Ready addresses %v, want 1", tg.Service, addrs)
	}
	since, err := abPodGauge(ctx, addrs[0], "http_listening_since_seconds")
	if err != nil {
		t.Fatal(err)
	}
	s.listening = time.Unix(0, int64(since*1e9))
	return s
}

// podGauge reads one unlabelled sample of the Node.js app's /metrics at addr.
func abPodGauge(ctx context.Context, addr, name string) (float64, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/metrics", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			return strconv.ParseFloat(strings.TrimSpace(v), 64)
		}
	}
	return 0, fmt.Errorf("%s/metrics: no %s", addr, name)
}

func abGet(ctx context.Context, t *testing.T, c *http.Client, url, host string) (int, string) {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url+"/", nil)
	req.Host = host
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

type abWarm struct {
	lat     []time.Duration
	elapsed time.Duration
	failed  int
}

// warmRun sends n GETs from conc keep-alive clients (connections opened first) and times each to its first byte.
func abWarmRun(ctx context.Context, t *testing.T, c *http.Client, url, host string, n, conc int) abWarm {
	t.Helper()
	one := func() (time.Duration, bool) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if host != "" {
			req.Host = host
		}
		start := time.Now()
		resp, err := c.Do(req)
		if err != nil {
			return 0, false
		}
		var b [1]byte
		_, _ = resp.Body.Read(b[:])
		d := time.Since(start)
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return d, resp.StatusCode == http.StatusOK
	}
	var wg sync.WaitGroup
	for i := 0; i < conc; i++ { // open the connections, on both hops
		wg.Add(1)
		go func() { defer wg.Done(); one() }()
	}
	wg.Wait()
	next := make(chan struct{}, n)
	for i := 0; i < n; i++ {
		next <- struct{}{}
	}
	close(next)
	var mu sync.Mutex
	var r abWarm
	start := time.Now()
	for i := 0; i < conc; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range next {
				d, ok := one()
				mu.Lock()
				if ok {
					r.lat = append(r.lat, d)
				} else {
					r.failed++
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	r.elapsed = time.Since(start)
	return r
}

func abLater(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

func abPct(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[int(float64(len(s)-1)*p)]
}

func abMS(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000) }

func abRatio(a, b time.Duration) float64 { return float64(a) / float64(max(b, 1)) }

func abRow(what string, d []time.Duration) string {
	return fmt.Sprintf("| %s | %s | %s | %s |", what, abMS(abPct(d, .5)), abMS(abPct(d, .99)), abMS(abPct(d, 1)))
}
