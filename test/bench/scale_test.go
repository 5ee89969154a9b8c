//go:build e2e

// Package bench is `make bench-scale`: promql-adapter next to the PromQL it sends and the PromQL
// prometheus-adapter would send for the same request, on a real control plane and Prometheus
// scraping a synthetic exporter of 10k, 100k and 1M series. TestBenchScaleShort is its short form
// in `make test`, so the rig cannot rot.
package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/utils/ptr"

	"github.com/promql-adapter/promql-adapter/adapter"
	"github.com/promql-adapter/promql-adapter/internal/benchrig"
	"github.com/promql-adapter/promql-adapter/internal/fakeexporter"
	"github.com/promql-adapter/promql-adapter/internal/loadsim"
	"github.com/promql-adapter/promql-adapter/internal/localcluster"
	"github.com/promql-adapter/promql-adapter/internal/promrun"
	"github.com/promql-adapter/promql-adapter/internal/stack"
)

const ns = "bench-0"

const nativeRules = `metrics:
- name: bench_gauge
  resource: pods
  query: sum by (namespace, pod) (bench_gauge)
- name: bench_queue_depth
  resource: external
  namespaced: false
  query: sum by (queue) (bench_queue_depth)
`

// nativeDiscovery and paRules list http_requests_per_second for pods by discovery, natively and in
// prometheus-adapter's format, beside the fixed bench_gauge.
const nativeDiscovery = nativeRules + `- resource: pods
  discover:
    series: '{__name__=~"http_requests_total",namespace!="",pod!=""}'
    matches: '(.+)_total'
    as: '${1}_per_second'
  query: sum by (namespace, pod) (rate(__series__[2m]))
`

const paRules = `rules:
- seriesQuery: 'http_requests_total{namespace!="",pod!=""}'
  resources:
    overrides:
      namespace: {resource: "namespace"}
      pod: {resource: "pod"}
  name:
    matches: "^(.*)_total$"
    as: "${1}_per_second"
  metricsQuery: 'sum(rate(<<.Series>>{<<.LabelMatchers>>}[2m])) by (<<.GroupBy>>)'
`

// config is one run's size.
type config struct {
	series     int
	pods       []int
	sequential int           // requests per kind, sequentially
	concurrent time.Duration // how long each kind runs with 20 clients
	relists    int           // relists measured for CPU per relist
	idle       time.Duration // how long the adapter's idle CPU is measured before each kind
}

// TestBenchScaleShort runs the whole rig at 10k series and 10 pods with few requests. It checks
// that every measurement happens and that the adapter's values equal the raw query's.
func TestBenchScaleShort(t *testing.T) {
	r := run(t, config{series: 10_000, pods: []int{10}, sequential: 20, concurrent: time.Second, relists: 1, idle: time.Second})
	fmt.Println(r)
}

// BenchmarkScale is make bench-scale: 10k, 100k and 1M series (BENCH_SCALE_SIZES overrides), 10,
// 100 and 1,000 pods, one table per size.
func BenchmarkScale(b *testing.B) {
	sizes := []int{10_000, 100_000, 1_000_000}
	if v := os.Getenv("BENCH_SCALE_SIZES"); v != "" {
		sizes = nil
		for _, f := range strings.Split(v, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil {
				b.Fatal(err)
			}
			sizes = append(sizes, n)
		}
	}
	for range b.N {
		for _, n := range sizes {
			r := run(b, config{series: n, pods: []int{10, 100, 1000}, sequential: 200, concurrent: 5 * time.Second, relists: 3, idle: 5 * time.Second})
			fmt.Println(r)
		}
	}
}

// rig is one running stack with a synthetic exporter and the clients the measurements use.
type rig struct {
	tb      testing.TB
	st      *stack.Stack
	direct  *http.Client // to the adapter itself, as the admin user
	via     *http.Client // through kube-apiserver
	viaHost string
	prom    *http.Client
	report  *strings.Builder
}

func run(tb testing.TB, c config) string {
	binDir, err := localcluster.BinDirFromEnv()
	if err != nil {
		tb.Fatal(err)
	}
	root, err := filepath.Abs("../..")
	if err != nil {
		tb.Fatal(err)
	}
	syn := fakeexporter.SyntheticFor(c.series)
	addr, stopExporter, err := fakeexporter.StartSynthetic(syn)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = stopExporter() })
	work := tb.TempDir()
	rules := filepath.Join(work, "native.yaml")
	if err := os.WriteFile(rules, []byte(nativeRules), 0o644); err != nil {
		tb.Fatal(err)
	}
	scrape := time.Second
	switch {
	case c.series > 200_000:
		scrape = 30 * time.Second // a scrape of 1M series takes Prometheus many seconds on 2 cores
	case c.series > 20_000:
		scrape = 15 * time.Second
	}
	ctx, cancel := context.WithTimeout(context.Background(), 75*time.Minute) // 1M series: Prometheus's first scrape alone took 16 min on a loaded 2-core machine
	defer cancel()
	st, err := stack.Start(ctx, stack.Options{
		RepoRoot: root, BinDir: binDir, WorkDir: filepath.Join(work, "stack"), RulesFile: rules,
		// The stack's load simulator needs one target; it stays idle (no Deployment is created).
		Targets:        []loadsim.Target{{Namespace: "sim", Deployment: "idle", Service: "idle", Capacity: 1, MatchLabels: map[string]string{"app": "idle"}}},
		Scrape:         []promrun.Target{{Job: "synthetic", Address: addr}},
		ScrapeInterval: scrape,
		AdapterArgs:    []string{"--profiling"}, // the heap and CPU profiles below (off by default)
		Logf:           func(f string, a ...any) { tb.Logf(f, a...) },
	})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := st.Stop(); err != nil {
			tb.Error(err)
		}
	})
	r := &rig{tb: tb, st: st, prom: &http.Client{Timeout: time.Minute}, report: &strings.Builder{}}
	r.clients()
	tb.Cleanup(func() {
		if tb.Failed() { // what was measured before the failure
			fmt.Println(r.report.String())
		}
	})
	fmt.Fprintf(r.report, "\n### %d series (%s; load %s)\n", syn.Series(), time.Now().UTC().Format("2006-01-02 15:04 MST"), benchrig.Loadavg())
	// Every series scraped: the gauge's and the counters'.
	// One series: counting http_requests_total took Prometheus 54 s at 1M series on the loaded machine,
	// past promrun's 5 s client timeout.
	if err := st.Prom.WaitForSeries(ctx, fmt.Sprintf(`scrape_samples_scraped{job="synthetic"} >= %d`, syn.Series()), 1); err != nil {
		tb.Fatal(err)
	}
	r.discovery(ctx, c)
	// The adapter with the fixed rules only, for the request measurements.
	_, _ = r.restart(ctx, nativeRules, "bench_gauge")
	pid := st.AdapterPID()
	fmt.Fprintf(r.report, "\nRSS after start: %s\n\n", rss(pid, "VmRSS"))
	if _, err := st.Kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		tb.Fatal(err)
	}
	r.statefulSet(ctx, 0)
	fmt.Fprintln(r.report, "| request | adapter direct p50/p99 ms | via kube-apiserver p50/p99 | own PromQL raw p50/p99 | PA PromQL raw p50/p99 | p99 ÷ PA raw | c=20 req/s direct / via / own raw / PA raw | adapter CPU ms/req sequential (idle subtracted) / c=20 direct | RSS after (anon) |")
	fmt.Fprintln(r.report, "|---|---|---|---|---|---|---|---|---|")
	for i, n := range c.pods {
		r.statefulSet(ctx, n)
		names := make([]string, n)
		for j := range n {
			names[j] = fmt.Sprintf("web-%d", j)
		}
		path := "/apis/custom.metrics.k8s.io/v1beta2/namespaces/" + ns + "/pods/*/bench_gauge?labelSelector=app%3Dweb"
		r.waitItems(ctx, path, n)
		r.measure(ctx, c, fmt.Sprintf("pods/* %d pods", n), path, ownPods(names, c.series), paPods(names))
		if i == 0 {
			r.measure(ctx, c, "object pods/web-0", "/apis/custom.metrics.k8s.io/v1beta2/namespaces/"+ns+"/pods/web-0/bench_gauge",
				`sum by (namespace, pod) (bench_gauge{namespace="`+ns+`",pod="web-0"})`, `sum(bench_gauge{namespace="`+ns+`",pod="web-0"}) by (pod)`)
			r.measure(ctx, c, "external queue=q-3", "/apis/external.metrics.k8s.io/v1beta1/namespaces/"+ns+"/bench_queue_depth?labelSelector=queue%3Dq-3",
				`sum by (queue) (bench_queue_depth{queue="q-3"})`, `sum(bench_queue_depth{queue="q-3"}) by (queue)`)
		}
	}
	fmt.Fprintf(r.report, "\nAdapter RSS peak (VmHWM) over the run: %s\n", rss(pid, "VmHWM"))
	if dir := os.Getenv("BENCH_SCALE_PROFILE"); dir != "" {
		if body, err := benchrig.Get(r.direct, st.AdapterURL(), "/debug/pprof/heap"); err == nil {
			_ = os.WriteFile(filepath.Join(dir, fmt.Sprintf("heap-%d.pprof", c.series)), body, 0o644)
		}
	}
	return r.report.String()
}

// ownPods is the adapter's PromQL for the request: the pods named while the alternation is within
// the name budget, else the namespace (the exporter holds 1,000 pod names per namespace).
func ownPods(names []string, _ int) string {
	if adapter.NameObjects(regexLen(names), len(names), len(names), 4<<10, 8<<10, 1000, true) {
		s := append([]string(nil), names...)
		sort.Strings(s)
		return `sum by (namespace, pod) (bench_gauge{namespace="` + ns + `",pod=~"` + strings.Join(s, "|") + `"})`
	}
	return `sum by (namespace, pod) (bench_gauge{namespace="` + ns + `"})`
}

// paPods is prometheus-adapter's PromQL for the same request: every selected pod named.
func paPods(names []string) string {
	return `sum(bench_gauge{namespace="` + ns + `",pod=~"` + strings.Join(names, "|") + `"}) by (pod)`
}

func regexLen(names []string) int {
	n := 0
	for _, s := range names {
		n += len(s) + 1
	}
	return n
}

func (r *rig) clients() {
	cfg := r.st.Cluster.AdminConfig()
	var err error
	if r.direct, r.via, err = benchrig.Clients(cfg, r.st.AdapterURL()); err != nil {
		r.tb.Fatal(err)
	}
	r.viaHost = cfg.Host
}

func (r *rig) promQuery(q string) ([]byte, error) {
	resp, err := r.prom.PostForm(r.st.Prom.URL()+"/api/v1/query", url.Values{"query": {q}})
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err == nil && resp.StatusCode != 200 {
		err = fmt.Errorf("prometheus: %d %s", resp.StatusCode, body)
	}
	return body, err
}

// measure runs one request kind: sequential interleaved latencies of the four ways, then 20
// concurrent clients for each, and the adapter's CPU per request.
func (r *rig) measure(ctx context.Context, c config, name, path, own, pa string) {
	pid := r.st.AdapterPID()
	ways := []func() error{
		func() error { _, err := benchrig.Get(r.direct, r.st.AdapterURL(), path); return err },
		func() error { _, err := benchrig.Get(r.via, r.viaHost, path); return err },
		func() error { _, err := r.promQuery(own); return err },
		func() error { _, err := r.promQuery(pa); return err },
	}
	// The adapter's values equal its own PromQL's, sent straight to Prometheus.
	body, err := benchrig.Get(r.direct, r.st.AdapterURL(), path)
	if err != nil {
		r.tb.Fatal(err)
	}
	raw, err := r.promQuery(own)
	if err != nil {
		r.tb.Fatal(err)
	}
	if got, want := adapterValues(r.tb, body), rawValues(r.tb, raw); got != want || got == "" {
		r.tb.Fatalf("%s: adapter values %s, raw PromQL %s", name, got, want)
	}
	lat := make([][]time.Duration, len(ways))
	// The adapter's idle CPU (informers, timers, GC) over a quiet while, subtracted from the
	// sequential phase's so that the figure is per request.
	idle0, idleStart := cpuSeconds(r.tb, pid), time.Now()
	time.Sleep(c.idle)
	idleRate := (cpuSeconds(r.tb, pid) - idle0) / time.Since(idleStart).Seconds()
	cpu0, seqStart := cpuSeconds(r.tb, pid), time.Now()
	for i := range c.sequential {
		for k := range ways {
			w := (k + i) % len(ways) // rotate the order: no way always runs first
			start := time.Now()
			if err := ways[w](); err != nil {
				r.tb.Fatal(err)
			}
			lat[w] = append(lat[w], time.Since(start))
		}
	}
	cpu := max(0, cpuSeconds(r.tb, pid)-cpu0-idleRate*time.Since(seqStart).Seconds()) / float64(2*c.sequential)
	var rates []string
	var cpuC20 float64 // adapter CPU per answer with 20 direct clients (the profile included)
	for k, w := range ways {
		var profiled chan struct{}
		if dir := os.Getenv("BENCH_SCALE_PROFILE"); dir != "" && k == 0 {
			// A CPU profile of the adapter under 20 direct clients, for go tool pprof.
			profiled = make(chan struct{})
			file := filepath.Join(dir, fmt.Sprintf("cpu-%d-%s.pprof", c.series, strings.NewReplacer(" ", "-", "/", "_", "*", "all", "=", "-").Replace(name)))
			go func() {
				defer close(profiled)
				body, err := benchrig.Get(r.direct, r.st.AdapterURL(), fmt.Sprintf("/debug/pprof/profile?seconds=%d", max(1, int(c.concurrent.Seconds()))))
				if err == nil {
					err = os.WriteFile(file, body, 0o644)
				}
				if err != nil {
					r.tb.Logf("profile %s: %v", file, err)
				}
			}()
		}
		c0 := cpuSeconds(r.tb, pid)
		rate := concurrent(ctx, w, c.concurrent)
		if k == 0 && rate > 0 {
			cpuC20 = (cpuSeconds(r.tb, pid) - c0) / (rate * c.concurrent.Seconds())
		}
		rates = append(rates, fmt.Sprintf("%.0f", rate))
		if profiled != nil {
			<-profiled
		}
	}
	p := func(w int) string {
		return fmt.Sprintf("%.1f / %.1f", benchrig.Ms(benchrig.Percentile(lat[w], 50)), benchrig.Ms(benchrig.Percentile(lat[w], 99)))
	}
	ratio := float64(benchrig.Percentile(lat[0], 99)) / float64(benchrig.Percentile(lat[3], 99))
	fmt.Fprintf(r.report, "| %s | %s | %s | %s | %s | %.2f %s | %s | %.2f / %.2f | %s |\n", name, p(0), p(1), p(2), p(3), ratio, met(ratio <= 1.2),
		strings.Join(rates, " / "), cpu*1000, cpuC20*1000, rss(pid, "VmRSS"))
}

// adapterValues is the sorted list of an adapter answer's values (quantities, to three decimals).
func adapterValues(tb testing.TB, body []byte) string {
	var list struct {
		Items []struct {
			Value resource.Quantity `json:"value"`
		} `json:"items"`
	}
	if err := json.Unmarshal(body, &list); err != nil {
		tb.Fatalf("adapter answer: %v", err)
	}
	var v []float64
	for _, it := range list.Items {
		v = append(v, it.Value.AsApproximateFloat64())
	}
	return sortedValues(v)
}

// rawValues is the sorted list of a Prometheus vector's values (to three decimals).
func rawValues(tb testing.TB, body []byte) string {
	var resp struct {
		Data struct {
			Result []struct {
				Value [2]any `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &resp); err != nil {
		tb.Fatalf("prometheus answer: %v", err)
	}
	var v []float64
	for _, s := range resp.Data.Result {
		str, _ := s.Value[1].(string)
		f, err := strconv.ParseFloat(str, 64)
		if err != nil {
			tb.Fatalf("prometheus value %v: %v", s.Value, err)
		}
		v = append(v, f)
	}
	return sortedValues(v)
}

func sortedValues(v []float64) string {
	sort.Float64s(v)
	s := make([]string, len(v))
	for i, f := range v {
		s[i] = strconv.FormatFloat(f, 'f', 3, 64)
	}
	return strings.Join(s, ",")
}

func met(ok bool) string {
	if ok {
		return "✅"
	}
	return "❌"
}

// concurrent runs f from 20 clients for d and returns answers per second.
func concurrent(ctx context.Context, f func() error, d time.Duration) float64 {
	var n atomic.Int64
	var wg sync.WaitGroup
	end := time.Now().Add(d)
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(end) && ctx.Err() == nil {
				if f() == nil {
					n.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	return float64(n.Load()) / d.Seconds()
}

// discovery measures start → every metric listed for the native and the prometheus-adapter
// config, and the adapter's CPU per relist.
func (r *rig) discovery(ctx context.Context, c config) {
	for _, cfg := range []struct{ name, rules string }{{"native", nativeDiscovery}, {"prometheus-adapter format", paRules}} {
		d, startCPU := r.restart(ctx, cfg.rules, "http_requests_per_second")
		pid := r.st.AdapterPID()
		cpu0, served0 := cpuSeconds(r.tb, pid), r.discoveryServed()
		time.Sleep(time.Duration(c.relists) * 5 * time.Second) // --series-relist-interval=5s
		perRelist := (cpuSeconds(r.tb, pid) - cpu0) / float64(c.relists)
		promPerRelist := (r.discoveryServed() - served0) / float64(c.relists)
		fmt.Fprintf(r.report, "- start → every metric listed, %s config: %.2f s %s (adapter CPU until then %.2f s); adapter CPU per relist %.3f s, Prometheus serving it %.3f s; RSS %s\n",
			cfg.name, d.Seconds(), met(d <= 2*time.Second), startCPU, perRelist, promPerRelist, rss(pid, "VmRSS"))
	}
}

// discoveryServed is the time Prometheus has spent answering the APIs discovery uses (label values,
// labels, series), from its own prometheus_http_request_duration_seconds.
func (r *rig) discoveryServed() float64 {
	resp, err := r.prom.Get(r.st.Prom.URL() + "/metrics")
	if err != nil {
		r.tb.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		r.tb.Fatal(err)
	}
	var sum float64
	for _, line := range strings.Split(string(body), "\n") {
		if !strings.HasPrefix(line, "prometheus_http_request_duration_seconds_sum{") {
			continue
		}
		for _, h := range []string{`handler="/api/v1/label/:name/values"`, `handler="/api/v1/labels"`, `handler="/api/v1/series"`} {
			if strings.Contains(line, h) {
				v, _ := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
				sum += v
			}
		}
	}
	return sum
}

// restart starts the adapter on rules and returns how long until it lists metric, and the CPU
// seconds the adapter spent until then (the wall time on a loaded machine is mostly waiting).
func (r *rig) restart(ctx context.Context, rules, metric string) (time.Duration, float64) {
	if err := r.st.StopAdapter(); err != nil {
		r.tb.Fatal(err)
	}
	if err := r.st.ReplaceRules([]byte(rules)); err != nil {
		r.tb.Fatal(err)
	}
	start := time.Now()
	if err := r.st.StartAdapter(ctx); err != nil {
		r.tb.Fatal(err)
	}
	var last error
	err := wait.PollUntilContextTimeout(ctx, 20*time.Millisecond, 2*time.Minute, true, func(context.Context) (bool, error) {
		body, err := benchrig.Get(r.direct, r.st.AdapterURL(), "/apis/custom.metrics.k8s.io/v1beta2")
		last = err
		return err == nil && strings.Contains(string(body), `"pods/`+metric+`"`), nil
	})
	if err != nil {
		r.tb.Fatalf("adapter lists no pods/%s within 2m: %v", metric, last)
	}
	return time.Since(start), cpuSeconds(r.tb, r.st.AdapterPID())
}

// statefulSet creates (n == 0) or scales the StatefulSet web and waits for n Ready pods.
func (r *rig) statefulSet(ctx context.Context, n int) {
	sets := r.st.Kube.AppsV1().StatefulSets(ns)
	if n == 0 {
		labels := map[string]string{"app": "web"}
		_, err := sets.Create(ctx, &appsv1.StatefulSet{
			ObjectMeta: metav1.ObjectMeta{Name: "web"},
			Spec: appsv1.StatefulSetSpec{
				Replicas: ptr.To[int32](0), PodManagementPolicy: appsv1.ParallelPodManagement,
				Selector: &metav1.LabelSelector{MatchLabels: labels},
				Template: corev1.PodTemplateSpec{
					ObjectMeta: metav1.ObjectMeta{Labels: labels},
					Spec: corev1.PodSpec{
						NodeName:    localcluster.NodeName,
						Tolerations: []corev1.Toleration{{Operator: corev1.TolerationOpExists}},
						Containers:  []corev1.Container{{Name: "app", Image: "fake-image:latest"}},
					},
				},
			},
		}, metav1.CreateOptions{})
		if err != nil {
			r.tb.Fatal(err)
		}
		return
	}
	s, err := sets.Get(ctx, "web", metav1.GetOptions{})
	if err != nil {
		r.tb.Fatal(err)
	}
	s.Spec.Replicas = ptr.To(int32(n))
	if _, err := sets.Update(ctx, s, metav1.UpdateOptions{}); err != nil {
		r.tb.Fatal(err)
	}
	err = wait.PollUntilContextTimeout(ctx, time.Second, 10*time.Minute, true, func(ctx context.Context) (bool, error) {
		s, err := sets.Get(ctx, "web", metav1.GetOptions{})
		return err == nil && s.Status.ReadyReplicas == int32(n), nil
	})
	if err != nil {
		r.tb.Fatalf("%d Ready pods: %v", n, err)
	}
}

// waitItems waits until the adapter's informer cache holds the n pods: the answer has n items.
func (r *rig) waitItems(ctx context.Context, path string, n int) {
	var got int
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 2*time.Minute, true, func(context.Context) (bool, error) {
		body, err := benchrig.Get(r.direct, r.st.AdapterURL(), path)
		got = strings.Count(string(body), `"describedObject"`)
		return err == nil && got == n, nil
	})
	if err != nil {
		r.tb.Fatalf("%s: %d items, want %d", path, got, n)
	}
}

// cpuSeconds is the user+system CPU time of a process (/proc/<pid>/stat, clock ticks of 1/100 s).
func cpuSeconds(tb testing.TB, pid int) float64 {
	v, err := benchrig.CPUSeconds(pid)
	if err != nil {
		tb.Fatal(err)
	}
	return v
}

// rss is a /proc/<pid>/status memory field; for VmRSS with its anonymous part (RssAnon): the rest
// is the binary's own pages, file-backed and shared.
func rss(pid int, field string) string {
	out := benchrig.MiB(pid, field)
	if anon, err := localcluster.MemoryKiB(pid, "RssAnon"); err == nil && field == "VmRSS" && out != "?" {
		out += fmt.Sprintf(" (%.1f)", float64(anon)/1024)
	}
	return out
}
