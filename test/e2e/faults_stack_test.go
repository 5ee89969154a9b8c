//go:build e2e

package e2e

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"

	"github.com/promql-adapter/promql-adapter/internal/loadsim"
	"github.com/promql-adapter/promql-adapter/internal/localcluster"
	"github.com/promql-adapter/promql-adapter/internal/podnet"
	"github.com/promql-adapter/promql-adapter/internal/podsvc"
	"github.com/promql-adapter/promql-adapter/internal/stack"
)

const (
	faultNS      = "faults"
	faultHPAs    = 50
	promTimeout  = 2 * time.Second // the replicas' --prometheus-timeout
	faultSync    = 2 * time.Second // the HPA sync period
	faultLoad    = 40              // req/s per soak Deployment: ELU 0.4 on one pod, under the 0.5 target
	replicaCount = 2
)

// faultStack is the fault suite's own environment: kube-apiserver routing to endpoints
// (--enable-aggregator-routing=true), two adapter replicas on pod addresses of a podnet.Net behind
// a selector-less Service the harness keeps endpoints for, 50 HPAs on Pods metrics, and a watch
// that records every HPA warning event.
type faultStack struct {
	*stack.Stack
	net      *podnet.Net
	svc      *podsvc.Service
	replicas []*stack.Replica
	admin    *http.Client // the admin's client certificate, for the replicas' /metrics
	errs     *hpaErrors
}

func soakTarget(i int) loadsim.Target {
	name := fmt.Sprintf("soak-%02d", i)
	return loadsim.Target{Namespace: faultNS, Deployment: name, Service: name, Capacity: 100, MatchLabels: map[string]string{"app": name}}
}

// lateTarget is declared to the simulator but deployed only after kube-apiserver restarts.
var lateTarget = loadsim.Target{Namespace: faultNS, Deployment: "late", Service: "late", Capacity: 100, MatchLabels: map[string]string{"app": "late"}}

func startFaultStack(t *testing.T) *faultStack {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	n, err := podnet.New(ctx)
	if err != nil {
		t.Fatalf("podnet: %v", err)
	}
	t.Cleanup(func() {
		if err := n.Close(); err != nil {
			t.Errorf("podnet close: %v", err)
		}
	})
	targets := []loadsim.Target{lateTarget}
	for i := range faultHPAs {
		targets = append(targets, soakTarget(i))
	}
	st, err := stack.Start(ctx, stack.Options{
		RepoRoot:  root,
		BinDir:    binDir,
		RulesFile: filepath.Join(root, "testdata/rules/faults.yaml"),
		Targets:   targets,
		NoAdapter: true,
		Cluster: localcluster.Options{
			HPASyncPeriod: faultSync, PodCIDR: n.CIDR.String(),
			APIServerExtraArgs: []string{"--enable-aggregator-routing=true"}, // the later flag wins over the default false
		},
		Logf: t.Logf,
	})
	if err != nil {
		t.Fatalf("fault stack: %v", err)
	}
	f := &faultStack{Stack: st, net: n}
	t.Cleanup(func() {
		if f.svc != nil {
			_ = f.svc.Close()
		}
		if err := st.Stop(); err != nil {
			t.Errorf("fault stack stop: %v", err)
		}
	})
	// The APIServices point at the Service's port 443; the Service has no selector.
	dyn, err := dynamic.NewForConfig(st.Cluster.AdminConfig())
	if err != nil {
		t.Fatal(err)
	}
	apisvc := dyn.Resource(schema.GroupVersionResource{Group: "apiregistration.k8s.io", Version: "v1", Resource: "apiservices"})
	for _, name := range []string{"v1beta2.custom.metrics.k8s.io", "v1beta1.custom.metrics.k8s.io", "v1beta1.external.metrics.k8s.io"} {
		if _, err := apisvc.Patch(ctx, name, types.MergePatchType, []byte(`{"spec":{"service":{"port":443}}}`), metav1.PatchOptions{}); err != nil {
			t.Fatalf("patch APIService %s: %v", name, err)
		}
	}
	if f.svc, err = podsvc.New(ctx, st.Kube, n, podsvc.Options{Namespace: stack.AdapterNamespace, Name: "promql-adapter", Port: 443, TargetPort: 443, Logf: t.Logf}); err != nil {
		t.Fatal(err)
	}
	for i := range replicaCount {
		r, err := st.StartReplica(ctx, fmt.Sprintf("r%d", i), "--prometheus-timeout="+promTimeout.String())
		if err != nil {
			t.Fatal(err)
		}
		// High addresses: kwok hands out pod IPs from the bottom of the same CIDR.
		if err := f.svc.Add(podsvc.Backend{Name: "promql-adapter-" + r.Name, IP: n.Addr(250 + i), Target: fmt.Sprintf("127.0.0.1:%d", r.Port), Exited: r.Exited, Probe: r.Ready}); err != nil {
			t.Fatal(err)
		}
		f.replicas = append(f.replicas, r)
	}
	if err := st.WaitMetricsAPI(ctx, 90*time.Second); err != nil {
		t.Fatal(err)
	}
	eventuallyCtx(t, 60*time.Second, "both replicas ready in the EndpointSlice", func() (bool, string) {
		r := f.svc.Ready()
		return len(r) == replicaCount, fmt.Sprint(r)
	})
	tlsCfg, err := rest.TLSConfigFor(st.Cluster.AdminConfig())
	if err != nil {
		t.Fatal(err)
	}
	f.admin = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: tlsCfg}}

	f.errs = watchHPAErrors(t, st)
	for i := range faultHPAs {
		tg := soakTarget(i)
		if err := st.CreateWorkload(ctx, tg, 1); err != nil {
			t.Fatal(err)
		}
		if err := st.Sim.SetLoad(faultNS, tg.Deployment, faultLoad); err != nil {
			t.Fatal(err)
		}
		if _, err := st.Kube.AutoscalingV2().HorizontalPodAutoscalers(faultNS).Create(ctx, faultHPA(tg.Deployment), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	eventuallyCtx(t, 120*time.Second, "every HPA ScalingActive", func() (bool, string) {
		inactive := f.inactiveHPAs(context.Background())
		return len(inactive) == 0, fmt.Sprintf("not active: %v", inactive)
	})
	return f
}

func faultHPA(name string) *autoscalingv2.HorizontalPodAutoscaler {
	return &autoscalingv2.HorizontalPodAutoscaler{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: faultNS},
		Spec: autoscalingv2.HorizontalPodAutoscalerSpec{
			ScaleTargetRef: autoscalingv2.CrossVersionObjectReference{APIVersion: "apps/v1", Kind: "Deployment", Name: name},
			MinReplicas:    ptr.To[int32](1),
			MaxReplicas:    3,
			Metrics: []autoscalingv2.MetricSpec{{Type: autoscalingv2.PodsMetricSourceType, Pods: &autoscalingv2.PodsMetricSource{
				Metric: autoscalingv2.MetricIdentifier{Name: "elu_utilization"},
				Target: autoscalingv2.MetricTarget{Type: autoscalingv2.AverageValueMetricType, AverageValue: resource.NewMilliQuantity(500, resource.DecimalSI)},
			}}},
		},
	}
}

// inactiveHPAs lists the HPAs whose ScalingActive condition is not True (or that have none yet).
func (f *faultStack) inactiveHPAs(ctx context.Context) []string {
	l, err := f.Kube.AutoscalingV2().HorizontalPodAutoscalers(faultNS).List(ctx, metav1.ListOptions{})
	if err != nil {
		return []string{"list: " + err.Error()}
	}
	var out []string
	for i := range l.Items {
		if c := condition(&l.Items[i], autoscalingv2.ScalingActive); c == nil || c.Status != corev1.ConditionTrue {
			out = append(out, l.Items[i].Name)
		}
	}
	if len(l.Items) < faultHPAs {
		out = append(out, fmt.Sprintf("only %d HPAs", len(l.Items)))
	}
	return out
}

// hpaError is one failed HPA sync, as kube-controller-manager reports it in a Warning event.
type hpaError struct {
	At     time.Time
	HPA    string
	Reason string
}

// hpaErrors counts HPA Warning events as they arrive (an aggregated event counts once per
// increment of its count). Only the metric-fetch reasons are counted: one per failed sync.
type hpaErrors struct {
	mu     sync.Mutex
	seen   map[string]int32 // event name → count seen
	errors []hpaError
}

func watchHPAErrors(t *testing.T, st *stack.Stack) *hpaErrors {
	t.Helper()
	h := &hpaErrors{seen: map[string]int32{}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	t.Cleanup(func() { cancel(); <-done })
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			w, err := st.Kube.CoreV1().Events(faultNS).Watch(ctx, metav1.ListOptions{FieldSelector: "involvedObject.kind=HorizontalPodAutoscaler,type=Warning"})
			if err != nil {
				time.Sleep(200 * time.Millisecond) // e.g. while kube-apiserver restarts
				continue
			}
			for ev := range w.ResultChan() {
				if ev.Type != watch.Added && ev.Type != watch.Modified {
					continue
				}
				e, ok := ev.Object.(*corev1.Event)
				if !ok || !strings.HasPrefix(e.Reason, "FailedGet") {
					continue
				}
				h.add(e)
			}
			w.Stop()
		}
	}()
	return h
}

func (h *hpaErrors) add(e *corev1.Event) {
	h.mu.Lock()
	defer h.mu.Unlock()
	count := max(e.Count, 1)
	prev, known := h.seen[e.Name]
	h.seen[e.Name] = count
	if known && count <= prev {
		return
	}
	n := count - prev
	for range n {
		h.errors = append(h.errors, hpaError{At: time.Now(), HPA: e.InvolvedObject.Name, Reason: e.Reason})
	}
}

// since returns the failed syncs recorded at or after from.
func (h *hpaErrors) since(from time.Time) []hpaError {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []hpaError
	for _, e := range h.errors {
		if !e.At.Before(from) {
			out = append(out, e)
		}
	}
	return out
}

// perHPA counts errors by HPA.
func perHPA(errs []hpaError) map[string]int {
	m := map[string]int{}
	for _, e := range errs {
		m[e.HPA]++
	}
	return m
}

// probeLoad sends GETs of one Pods metric through kube-apiserver every interval until stop,
// recording each status code and latency.
type probeLoad struct {
	mu      sync.Mutex
	codes   map[int]int
	slowest time.Duration
	total   int
	stop    chan struct{}
	done    chan struct{}
}

type probeResult struct {
	Code    int
	Body    string
	Latency time.Duration
}

func (f *faultStack) getMetric(ctx context.Context, metric, selector string) probeResult {
	begin := time.Now()
	var code int
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	res := f.Kube.Discovery().RESTClient().Get().AbsPath("/apis/custom.metrics.k8s.io/v1beta2/namespaces/"+faultNS+"/pods/*/"+metric).
		Param("labelSelector", selector).Do(ctx)
	res.StatusCode(&code)
	body, _ := res.Raw()
	if code == 0 {
		code = -1 // no HTTP answer
	}
	return probeResult{Code: code, Body: string(body), Latency: time.Since(begin)}
}

func (f *faultStack) startLoad(interval time.Duration) *probeLoad {
	l := &probeLoad{codes: map[int]int{}, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(l.done)
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for i := 0; ; i++ {
			r := f.getMetric(context.Background(), "elu_utilization", "app="+soakTarget(i%faultHPAs).Deployment)
			l.mu.Lock()
			l.codes[r.Code]++
			l.total++
			l.slowest = max(l.slowest, r.Latency)
			l.mu.Unlock()
			select {
			case <-l.stop:
				return
			case <-tick.C:
			}
		}
	}()
	return l
}

// Stop ends the load and returns the total, the failures (anything but 200) and the codes.
func (l *probeLoad) Stop() (total, failed int, codes map[int]int, slowest time.Duration) {
	close(l.stop)
	<-l.done
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.total, l.total - l.codes[200], l.codes, l.slowest
}

// usage is a process's resident memory and, where its /metrics says, goroutines.
type usage struct {
	RSSMiB     float64
	Goroutines int // -1: not exported
	Threads    int
	FDs        int
}

func (u usage) String() string {
	g := "n/a"
	if u.Goroutines >= 0 {
		g = strconv.Itoa(u.Goroutines)
	}
	return fmt.Sprintf("rss %.1f MiB, goroutines %s, threads %d, fds %d", u.RSSMiB, g, u.Threads, u.FDs)
}

// measure reads pid's RSS, threads and open files from /proc and go_goroutines from metricsURL.
func measure(t *testing.T, c *http.Client, pid int, metricsURL string) usage {
	t.Helper()
	kb, err := localcluster.MemoryKiB(pid, "VmRSS")
	if err != nil {
		t.Errorf("rss of pid %d: %v", pid, err)
	}
	u := usage{RSSMiB: float64(kb) / 1024, Goroutines: -1}
	if th, err := localcluster.MemoryKiB(pid, "Threads"); err == nil {
		u.Threads = int(th)
	}
	if fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid)); err == nil {
		u.FDs = len(fds)
	}
	if resp, err := c.Get(metricsURL); err == nil {
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			if v, ok := strings.CutPrefix(sc.Text(), "go_goroutines "); ok {
				if g, err := strconv.ParseFloat(v, 64); err == nil {
					u.Goroutines = int(g)
				}
			}
		}
		resp.Body.Close()
	}
	return u
}

func (f *faultStack) replicaUsage(t *testing.T, r *stack.Replica) usage {
	return measure(t, f.admin, r.PID(), fmt.Sprintf("https://127.0.0.1:%d/metrics", r.Port))
}

// servedCert returns the SHA-256 fingerprint and serial of the certificate r serves.
func servedCert(r *stack.Replica) (string, string, error) {
	c, err := tls.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", r.Port), &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // reading the served certificate
	if err != nil {
		return "", "", err
	}
	defer c.Close()
	leaf := c.ConnectionState().PeerCertificates[0]
	return fingerprint(leaf.Raw), leaf.SerialNumber.String(), nil
}

func eventuallyCtx(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	eventually(t, timeout, what, cond)
}

// createLate deploys lateTarget, whose simulator target was declared at start.
func (f *faultStack) createLate(ctx context.Context) error {
	if err := f.CreateWorkload(ctx, lateTarget, 1); err != nil {
		return err
	}
	return f.Sim.SetLoad(faultNS, lateTarget.Deployment, faultLoad)
}
