//go:build e2e

package e2e

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/promql-adapter/promql-adapter/internal/localcluster"
	"github.com/promql-adapter/promql-adapter/internal/podsvc"
	"github.com/promql-adapter/promql-adapter/internal/stack"
)

// soakDuration is how long the Soak subtest runs: 60 s in make test, PROMQL_ADAPTER_SOAK
// (e.g. 10m, make soak) otherwise.
func soakDuration(t *testing.T) time.Duration {
	if v := os.Getenv("PROMQL_ADAPTER_SOAK"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("PROMQL_ADAPTER_SOAK: %v", err)
		}
		return d
	}
	return 60 * time.Second
}

// result logs one row of the fault suite's results table.
func result(t *testing.T, fault, outcome, numbers string, args ...any) {
	t.Helper()
	t.Logf("RESULT | %s | %s | %s |", fault, outcome, fmt.Sprintf(numbers, args...))
}

// TestFaults is the fault suite (issue 11) on its own stack: two adapter replicas behind the
// APIService, 50 HPAs syncing every 2 s. The soak runs first, while no fault has happened; the
// kube-apiserver restart runs last.
func TestFaults(t *testing.T) {
	f := startFaultStack(t)
	ctx := context.Background()
	wk, err := f.StartWakeProcess(ctx, "wake-0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := wk.Stop(); err != nil {
			t.Errorf("promql-wake: %v", err)
		}
	})
	waitHTTP(t, wk.URL+"/healthz")
	wakeUsage := func() usage { return measure(t, http.DefaultClient, wk.PID(), wk.URL+"/metrics") }

	t.Run("Soak", func(t *testing.T) { f.soak(t, wakeUsage) })
	t.Run("ReplicaKill", f.replicaKill)
	t.Run("PrometheusRestart", f.prometheusRestart)
	t.Run("ServingCertRotation", f.certRotation)
	t.Run("IdleConnections", func(t *testing.T) { f.idleConnections(t, wk, wakeUsage) })
	t.Run("APIServerRestart", f.apiserverRestart)
}

func waitHTTP(t *testing.T, url string) {
	t.Helper()
	eventually(t, 60*time.Second, url, func() (bool, string) {
		resp, err := http.Get(url)
		if err != nil {
			return false, err.Error()
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, resp.Status
	})
}

// soak: 50 HPAs at a 2 s sync for soakDuration → no failed sync, no inactive HPA.
func (f *faultStack) soak(t *testing.T, wake func() usage) {
	d := soakDuration(t)
	start := map[string]usage{}
	for _, r := range f.replicas {
		start[r.Name] = f.replicaUsage(t, r)
	}
	start["wake"] = wake()
	if start["wake"].Goroutines < 0 {
		t.Errorf("promql-wake's /metrics exports no go_goroutines")
	}
	from := time.Now()
	samples, inactive := 0, 0
	for time.Since(from) < d {
		time.Sleep(5 * time.Second)
		samples++
		if in := f.inactiveHPAs(context.Background()); len(in) > 0 {
			inactive++
			t.Errorf("HPAs not ScalingActive during the soak: %v", in)
		}
	}
	errs := f.errs.since(from)
	if len(errs) != 0 {
		t.Errorf("%d failed HPA syncs during the soak: %v", len(errs), perHPA(errs))
	}
	var rows []string
	for _, r := range f.replicas {
		end := f.replicaUsage(t, r)
		rows = append(rows, fmt.Sprintf("adapter %s: start %s; end %s", r.Name, start[r.Name], end))
	}
	rows = append(rows, fmt.Sprintf("promql-wake: start %s; end %s", start["wake"], wake()))
	outcome := "0 errors"
	if len(errs) > 0 || inactive > 0 {
		outcome = "ERRORS"
	}
	result(t, fmt.Sprintf("soak: %d HPAs, %s sync, %s", faultHPAs, faultSync, d), outcome,
		"%d failed syncs, %d/%d polls with an inactive HPA; %s", len(errs), inactive, samples, strings.Join(rows, "; "))
}

// replicaKill: kill -9 one of two replicas under an HPA loop → no HPA fails more than one sync.
func (f *faultStack) replicaKill(t *testing.T) {
	load := f.startLoad(100 * time.Millisecond)
	time.Sleep(3 * faultSync)
	victim := f.replicas[0]
	killAt := time.Now()
	if err := victim.Kill(); err != nil {
		t.Fatal(err)
	}
	var notReady time.Duration
	eventually(t, 30*time.Second, "the killed replica's endpoint not ready", func() (bool, string) {
		for _, tr := range f.svc.Transitions() {
			if tr.Backend == "promql-adapter-"+victim.Name && !tr.Ready && tr.At.After(killAt) {
				notReady = tr.At.Sub(killAt)
				return true, ""
			}
		}
		return false, fmt.Sprint(f.svc.Ready())
	})
	time.Sleep(5 * faultSync) // several syncs on the survivor alone
	total, failed, codes, _ := load.Stop()
	errs := f.errs.since(killAt)
	per := perHPA(errs)
	beyond := 0
	for hpa, n := range per {
		if n > 1 {
			beyond += n - 1
			t.Errorf("HPA %s failed %d syncs after the kill; at most one may fail", hpa, n)
		}
	}
	if in := f.inactiveHPAs(context.Background()); len(in) > 0 {
		t.Errorf("HPAs not ScalingActive %s after the kill: %v", 5*faultSync, in)
	}
	outcome := "0 beyond one sync"
	if beyond > 0 {
		outcome = fmt.Sprintf("%d beyond one sync", beyond)
	}
	result(t, "kill -9 one of 2 replicas", outcome,
		"endpoint not ready %s after the kill; %d failed HPA syncs (%d HPAs); requests through kube-apiserver %d/%d failed (%.1f%%), codes %v",
		notReady.Round(10*time.Millisecond), len(errs), len(per), failed, total, 100*float64(failed)/float64(max(total, 1)), codes)

	// Bring a replacement up, as the ReplicaSet would, so the later faults have two replicas again.
	r, err := f.StartReplica(context.Background(), "r2", "--prometheus-timeout="+promTimeout.String())
	if err != nil {
		t.Fatal(err)
	}
	if err := f.svc.Add(podsvc.Backend{Name: "promql-adapter-" + r.Name, IP: f.net.Addr(252), Target: fmt.Sprintf("127.0.0.1:%d", r.Port), Exited: r.Exited, Probe: r.Ready}); err != nil {
		t.Fatal(err)
	}
	f.replicas[0] = r
	eventually(t, 60*time.Second, "the replacement ready", func() (bool, string) {
		return len(f.svc.Ready()) == replicaCount, fmt.Sprint(f.svc.Ready())
	})
}

// prometheusRestart: Prometheus restarted (and hung) mid-loop → 503 within --prometheus-timeout,
// the fallback served, values again once it is back.
func (f *faultStack) prometheusRestart(t *testing.T) {
	ctx := context.Background()
	sel := "app=" + soakTarget(0).Deployment
	bound := promTimeout + 5*time.Second // the timeout plus generous slack for a loaded machine
	check := func(phase string) (int, time.Duration) {
		var slowest time.Duration
		n := 0
		for end := time.Now().Add(3 * promTimeout); time.Now().Before(end); n++ {
			r := f.getMetric(ctx, "elu_utilization", sel)
			slowest = max(slowest, r.Latency)
			if r.Code != http.StatusServiceUnavailable {
				t.Errorf("%s: elu_utilization answered %d, want 503: %s", phase, r.Code, r.Body)
			}
			if r.Latency > bound {
				t.Errorf("%s: elu_utilization took %s, more than --prometheus-timeout %s (+5 s)", phase, r.Latency, promTimeout)
			}
			fb := f.getMetric(ctx, "elu_with_fallback", sel)
			if fb.Code != http.StatusOK || !strings.Contains(fb.Body, `"value":"500m"`) {
				t.Errorf("%s: elu_with_fallback answered %d %s, want the fallback 500m", phase, fb.Code, fb.Body)
			}
			time.Sleep(250 * time.Millisecond)
		}
		return n, slowest
	}
	if r := f.getMetric(ctx, "elu_utilization", sel); r.Code != http.StatusOK {
		t.Fatalf("before the restart: %d %s", r.Code, r.Body)
	}
	from := time.Now()
	var downN int
	var downSlowest time.Duration
	if err := f.Prom.Restart(ctx, func() { downN, downSlowest = check("Prometheus down") }); err != nil {
		t.Fatal(err)
	}
	back := time.Now()
	var recovered time.Duration
	eventually(t, 30*time.Second, "values again after Prometheus is back", func() (bool, string) {
		r := f.getMetric(ctx, "elu_utilization", sel)
		recovered = time.Since(back)
		return r.Code == http.StatusOK && strings.Contains(r.Body, `"value":"400m"`), fmt.Sprintf("%d %s", r.Code, r.Body)
	})
	// Hung: the port accepts, nothing answers; every request must end at the timeout.
	if err := f.Prom.Pause(); err != nil {
		t.Fatal(err)
	}
	hungN, hungSlowest := check("Prometheus hung")
	if err := f.Prom.Resume(); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "values again after Prometheus resumes", func() (bool, string) {
		r := f.getMetric(ctx, "elu_utilization", sel)
		return r.Code == http.StatusOK, fmt.Sprintf("%d %s", r.Code, r.Body)
	})
	errs := f.errs.since(from)
	result(t, "Prometheus restarted, then hung (SIGSTOP) for 3× --prometheus-timeout", "503 bounded, fallback served, values back",
		"down: %d requests all 503 (slowest %s), fallback 200; back: correct value %s after ready (scrape 1 s); hung: %d requests 503, slowest %s (timeout %s); %d failed HPA syncs (expected: no data)",
		downN, downSlowest.Round(time.Millisecond), recovered.Round(10*time.Millisecond), hungN, hungSlowest.Round(time.Millisecond), promTimeout, len(errs))
}

func fingerprint(der []byte) string {
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:8])
}

// certRotation: the serving certificate replaced on disk → served without a restart.
func (f *faultStack) certRotation(t *testing.T) {
	r := f.replicas[1]
	pid := r.PID()
	oldFP, oldSerial, err := servedCert(r)
	if err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM, err := f.Cluster.NewAdapterServingCert()
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(certPEM)
	wantFP := fingerprint(blk.Bytes)
	// As a kubelet updates a Secret volume: each file replaced whole (rename), key first.
	for path, data := range map[string][]byte{r.KeyFile: keyPEM, r.CertFile: certPEM} {
		if err := os.WriteFile(path+".new", data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	rotated := time.Now()
	for _, path := range []string{r.KeyFile, r.CertFile} {
		if err := os.Rename(path+".new", path); err != nil {
			t.Fatal(err)
		}
	}
	var newSerial string
	eventually(t, 90*time.Second, "the new certificate served", func() (bool, string) {
		fp, serial, err := servedCert(r)
		if err != nil {
			return false, err.Error()
		}
		newSerial = serial
		return fp == wantFP, fmt.Sprintf("serving %s (serial %s), want %s", fp, serial, wantFP)
	})
	took := time.Since(rotated)
	if r.PID() != pid || r.Exited() {
		t.Errorf("the replica restarted (pid %d → %d, exited %v)", pid, r.PID(), r.Exited())
	}
	// The aggregator verifies the new certificate against the same CA: requests still served.
	ok := 0
	for i := range 20 {
		if res := f.getMetric(context.Background(), "elu_utilization", "app="+soakTarget(i).Deployment); res.Code == http.StatusOK {
			ok++
		}
	}
	if ok != 20 {
		t.Errorf("%d/20 requests through kube-apiserver served after the rotation", ok)
	}
	result(t, "adapter serving certificate rotated on disk", "new certificate served, same process",
		"served %s after the rename (fingerprint %s → %s, serial %s → %s); 20/20 requests through kube-apiserver after", took.Round(100*time.Millisecond),
		oldFP, wantFP, short(oldSerial), short(newSerial))
}

func short(s string) string {
	if len(s) > 12 {
		return s[:12] + "…"
	}
	return s
}

const idleConns = 5000

// openIdle opens n connections to addr; with tlsCfg each completes a TLS handshake first. Nothing
// is sent after that.
func openIdle(t *testing.T, addr string, n int, tlsCfg *tls.Config) []net.Conn {
	t.Helper()
	conns := make([]net.Conn, n)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	work := make(chan int)
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				c, err := net.DialTimeout("tcp", addr, 10*time.Second)
				if err == nil && tlsCfg != nil {
					tc := tls.Client(c, tlsCfg)
					_ = tc.SetDeadline(time.Now().Add(20 * time.Second))
					if err = tc.Handshake(); err == nil {
						_ = tc.SetDeadline(time.Time{})
						c = tc
					} else {
						c.Close()
					}
				}
				if err != nil {
					mu.Lock()
					firstErr = err
					mu.Unlock()
					continue
				}
				conns[i] = c
			}
		}()
	}
	for i := range n {
		work <- i
	}
	close(work)
	wg.Wait()
	open := conns[:0]
	for _, c := range conns {
		if c != nil {
			open = append(open, c)
		}
	}
	if len(open) != n {
		t.Errorf("%d/%d idle connections to %s opened (e.g. %v)", len(open), n, addr, firstErr)
	}
	return open
}

// stillOpen counts the connections the server has not closed (a read does not see EOF).
func stillOpen(conns []net.Conn) int {
	n := 0
	buf := make([]byte, 1)
	for _, c := range conns {
		_ = c.SetReadDeadline(time.Now().Add(time.Millisecond))
		if _, err := c.Read(buf); err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				n++
			}
		}
	}
	return n
}

func closeAll(conns []net.Conn) {
	for _, c := range conns {
		c.Close()
	}
}

// idleConnections: 5,000 idle connections to an adapter replica and to promql-wake → memory
// bounded, requests still served.
func (f *faultStack) idleConnections(t *testing.T, wk *stack.WakeProcess, wake func() usage) {
	r := f.replicas[1]
	before := f.replicaUsage(t, r)
	conns := openIdle(t, fmt.Sprintf("127.0.0.1:%d", r.Port), idleConns, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}}) //nolint:gosec // load, not trust
	with := f.replicaUsage(t, r)
	served := 0
	for i := range 20 {
		if res := f.getMetric(context.Background(), "elu_utilization", "app="+soakTarget(i).Deployment); res.Code == http.StatusOK {
			served++
		}
	}
	if err := r.Ready(context.Background()); err != nil {
		t.Errorf("the replica's /readyz with %d idle connections: %v", len(conns), err)
	}
	if served != 20 {
		t.Errorf("%d/20 requests through kube-apiserver served with %d idle connections open", served, len(conns))
	}
	time.Sleep(5 * time.Second)
	open := stillOpen(conns)
	closeAll(conns)
	time.Sleep(2 * time.Second)
	after := f.replicaUsage(t, r)
	if limit := before.RSSMiB + 1024; with.RSSMiB > limit {
		t.Errorf("adapter RSS %.0f MiB with %d idle connections, more than 1 GiB above %.0f MiB", with.RSSMiB, len(conns), before.RSSMiB)
	}
	result(t, fmt.Sprintf("%d idle TLS connections to an adapter replica", idleConns), "bounded, requests served",
		"before: %s; with: %s; after closing: %s; %d/20 requests through kube-apiserver served; %d still open after 5 s",
		before, with, after, served, open)

	wBefore := wake()
	wconns := openIdle(t, strings.TrimPrefix(wk.URL, "http://"), idleConns, nil)
	wWith := wake()
	req, _ := http.NewRequest(http.MethodGet, wk.URL+"/healthz", nil)
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	healthy := err == nil && resp.StatusCode == http.StatusOK
	if err == nil {
		resp.Body.Close()
	}
	if !healthy {
		t.Errorf("promql-wake /healthz with %d idle connections: %v", len(wconns), err)
	}
	time.Sleep(5 * time.Second)
	wOpen := stillOpen(wconns)
	closeAll(wconns)
	time.Sleep(2 * time.Second)
	wAfter := wake()
	if limit := wBefore.RSSMiB + 1024; wWith.RSSMiB > limit {
		t.Errorf("promql-wake RSS %.0f MiB with %d idle connections", wWith.RSSMiB, len(wconns))
	}
	result(t, fmt.Sprintf("%d idle TCP connections to promql-wake", idleConns), "bounded, /healthz served",
		"before: %s; with: %s; after closing: %s; %d still open after 5 s", wBefore, wWith, wAfter, wOpen)
}

// apiserverRestart: kube-apiserver restarted → the replicas' caches resync and they serve again.
func (f *faultStack) apiserverRestart(t *testing.T) {
	ctx := context.Background()
	pids := []int{f.replicas[0].PID(), f.replicas[1].PID()}
	from := time.Now()
	down, err := f.Cluster.Restart(ctx, localcluster.ComponentAPIServer, 120*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	back := time.Now()
	if err := f.WaitMetricsAPI(ctx, 120*time.Second); err != nil {
		t.Fatal(err)
	}
	served := time.Since(back)
	// A Deployment created after the restart: its pod is served only if the object caches watch again.
	if err := f.createLate(ctx); err != nil {
		t.Fatal(err)
	}
	created := time.Now()
	eventually(t, 120*time.Second, "the late Deployment's pod served", func() (bool, string) {
		r := f.getMetric(ctx, "elu_utilization", "app="+lateTarget.Deployment)
		return r.Code == http.StatusOK && strings.Contains(r.Body, `"value":"400m"`), fmt.Sprintf("%d %s", r.Code, r.Body)
	})
	resynced := time.Since(created)
	eventually(t, 120*time.Second, "every HPA ScalingActive again", func() (bool, string) {
		in := f.inactiveHPAs(ctx)
		return len(in) == 0, fmt.Sprint(in)
	})
	active := time.Since(back)
	for i, r := range f.replicas[:2] {
		if r.Exited() || r.PID() != pids[i] {
			t.Errorf("replica %s exited or restarted during the kube-apiserver restart", r.Name)
		}
	}
	result(t, "kube-apiserver restarted", "caches resync, served again, no adapter restart",
		"kube-apiserver down→ready %s; metrics APIs served %s later; a pod created after the restart served %s after its Deployment; every HPA active %s after ready; %d failed HPA syncs",
		down.Round(100*time.Millisecond), served.Round(100*time.Millisecond), resynced.Round(100*time.Millisecond), active.Round(100*time.Millisecond), len(f.errs.since(from)))
}
