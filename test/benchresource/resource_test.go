//go:build e2e

// Package benchresource is `make bench-resource`: GET metrics.k8s.io/v1/namespaces/N/pods over 1,000
// kwok pods, straight to the adapter and through kube-apiserver, next to the same PromQL (the cpu and
// the memory query the rules render for the request) sent straight to Prometheus in the same run,
// with the adapter's CPU per request and its RSS, for the native resources: section and for
// prometheus-adapter's resourceRules. The pods' cAdvisor-shaped series come from the load simulator,
// scraped by a real Prometheus. TestBenchResourceShort is its short form in `make test`.
package benchresource

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/promql-adapter/promql-adapter/internal/benchrig"
	"github.com/promql-adapter/promql-adapter/internal/loadsim"
	"github.com/promql-adapter/promql-adapter/internal/localcluster"
	"github.com/promql-adapter/promql-adapter/internal/stack"
	"github.com/promql-adapter/promql-adapter/naming"
	"github.com/promql-adapter/promql-adapter/naming/pacompat"
	"github.com/promql-adapter/promql-adapter/resourcemetrics"
)

const ns = "bench-resource"

// nativeRules is the native resources: section, as the e2e tests and the README's cAdvisor example.
const nativeRules = `resources:
  window: 1m
  cpu:
    containerQuery: sum by (namespace, pod, container) (rate(container_cpu_usage_seconds_total{container!=""}[1m]))
    nodeQuery: sum by (node) (rate(node_cpu_usage_seconds_total[1m]))
  memory:
    containerQuery: sum by (namespace, pod, container) (container_memory_working_set_bytes{container!=""})
    nodeQuery: sum by (node) (node_memory_working_set_bytes)
`

// paRules are the same queries as prometheus-adapter's resourceRules.
const paRules = `resourceRules:
  cpu:
    containerQuery: sum by (<<.GroupBy>>) (rate(container_cpu_usage_seconds_total{container!="",<<.LabelMatchers>>}[1m]))
    nodeQuery: sum by (<<.GroupBy>>) (rate(node_cpu_usage_seconds_total{<<.LabelMatchers>>}[1m]))
    resources: {overrides: {namespace: {resource: namespace}, pod: {resource: pod}, node: {resource: node}}}
    containerLabel: container
  memory:
    containerQuery: sum by (<<.GroupBy>>) (container_memory_working_set_bytes{container!="",<<.LabelMatchers>>})
    nodeQuery: sum by (<<.GroupBy>>) (node_memory_working_set_bytes{<<.LabelMatchers>>})
    resources: {overrides: {namespace: {resource: namespace}, pod: {resource: pod}, node: {resource: node}}}
    containerLabel: container
  window: 1m
`

type config struct {
	pods       int
	sequential int // requests per way, interleaved
}

// TestBenchResourceShort runs the whole rig over 20 pods with few requests: every measurement
// happens, and each answer lists every pod with the raw PromQL's values.
func TestBenchResourceShort(t *testing.T) {
	fmt.Println(run(t, config{pods: 20, sequential: 10}))
}

// BenchmarkResourceMetrics is make bench-resource: 1,000 pods (BENCH_RESOURCE_PODS overrides), 200
// requests per way.
func BenchmarkResourceMetrics(b *testing.B) {
	n := 1000
	if v := os.Getenv("BENCH_RESOURCE_PODS"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil {
			b.Fatal(err)
		}
	}
	for range b.N {
		fmt.Println(run(b, config{pods: n, sequential: 200}))
	}
}

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
	work := tb.TempDir()
	rules := filepath.Join(work, "rules.yaml")
	if err := os.WriteFile(rules, []byte(nativeRules), 0o644); err != nil {
		tb.Fatal(err)
	}
	target := loadsim.Target{Namespace: ns, Deployment: "web", Service: "web", Capacity: 100, Load: 30 * float64(c.pods),
		MatchLabels: map[string]string{"app": "web"}}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	st, err := stack.Start(ctx, stack.Options{
		RepoRoot: root, BinDir: binDir, WorkDir: filepath.Join(work, "stack"), RulesFile: rules,
		Targets: []loadsim.Target{target},
		// A /20: kwok gives every pod an address (no traffic goes to them).
		Cluster:         localcluster.Options{PodCIDR: "10.250.16.0/20"},
		ResourceMetrics: true,
		ScrapeInterval:  5 * time.Second,
		Logf:            func(f string, a ...any) { tb.Logf(f, a...) },
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
	start := time.Now()
	if err := st.CreateWorkload(ctx, target, int32(c.pods)); err != nil {
		tb.Fatal(err)
	}
	r.waitReady(ctx, c.pods)
	tb.Logf("%d Ready pods in %s", c.pods, time.Since(start).Round(time.Second))
	path := "/apis/metrics.k8s.io/v1/namespaces/" + ns + "/pods"
	fmt.Fprintf(r.report, "\n### metrics.k8s.io over %d pods (%s; load %s; %d requests per way, interleaved)\n\n",
		c.pods, time.Now().UTC().Format("2006-01-02 15:04 MST"), benchrig.Loadavg(), c.sequential)
	fmt.Fprintln(r.report, "| rules | adapter direct p50 / p99 ms | via kube-apiserver p50 / p99 | raw PromQL, cpu and memory at once, p50 / p99 | raw, one after the other, p50 / p99 | p50 ÷ raw at once, direct / via | p99 ÷ raw at once, direct / via | adapter CPU ms/req | adapter RSS |")
	fmt.Fprintln(r.report, "|---|---|---|---|---|---|---|---|---|")
	for i, f := range []struct{ name, rules string }{{"native resources", nativeRules}, {"prometheus-adapter resourceRules", paRules}} {
		if i > 0 {
			r.restart(ctx, f.rules)
		}
		names := r.waitItems(ctx, path, c.pods)
		cpuQ, memQ := r.queries(f.rules, names)
		r.measure(f.name, path, c, cpuQ, memQ)
	}
	fmt.Fprintf(r.report, "\nAdapter RSS peak (VmHWM) over the run: %s. Raw PromQL: the two queries the adapter sends for the request (cpu and memory), sent straight to Prometheus.\n",
		benchrig.MiB(st.AdapterPID(), "VmHWM"))
	return r.report.String()
}

// queries are the cpu and memory queries the adapter sends for one request listing every pod of ns
// (resourcemetrics.Provider: native rules name the pods up to NameBudget, then select the namespace;
// prometheus-adapter's name every pod, in the order the adapter's cache lists them).
func (r *rig) queries(rules string, names []string) (string, string) {
	var rr *naming.ResourceRules
	var err error
	if strings.HasPrefix(rules, "resourceRules") {
		var nr *naming.Rules
		nr, _, err = pacompat.Load([]byte(rules), naming.BuiltinResources())
		if err == nil {
			rr = nr.Resource
		}
	} else {
		var cfg *naming.Config
		if cfg, err = naming.ParseConfig([]byte(rules)); err == nil {
			rr, err = naming.CompileResources(cfg.Resources)
		}
	}
	if err != nil {
		r.tb.Fatal(err)
	}
	sel := names
	if !rr.PerNamespace && len(names) > resourcemetrics.NameBudget {
		sel = nil
	}
	cpuQ, err1 := rr.CPU.Pods(ns, sel)
	memQ, err2 := rr.Memory.Pods(ns, sel)
	if err1 != nil || err2 != nil {
		r.tb.Fatal(err1, err2)
	}
	return cpuQ, memQ
}

func (r *rig) clients() {
	cfg := r.st.Cluster.AdminConfig()
	var err error
	if r.direct, r.via, err = benchrig.Clients(cfg, r.st.AdapterURL()); err != nil {
		r.tb.Fatal(err)
	}
	r.viaHost = cfg.Host
}

// promQuery runs q as the adapter does (POST /api/v1/query) and returns the number of samples.
func (r *rig) promQuery(q string) (int, error) {
	resp, err := r.prom.PostForm(r.st.Prom.URL()+"/api/v1/query", url.Values{"query": {q}})
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	if resp.StatusCode != 200 {
		return 0, fmt.Errorf("prometheus: %d %s", resp.StatusCode, body)
	}
	return strings.Count(string(body), `"metric"`), nil
}

// podList is the part of a PodMetricsList the rig checks.
type podList struct {
	Items []struct {
		Metadata   struct{ Name string }
		Containers []struct {
			Usage map[string]string
		}
	}
}

func list(body []byte) (podList, error) {
	var l podList
	err := json.Unmarshal(body, &l)
	return l, err
}

// measure sends the request straight to the adapter, through kube-apiserver, and its two queries straight
// to Prometheus, interleaved (the order rotates), and reports percentiles, ratios, CPU per request and RSS.
func (r *rig) measure(name, path string, c config, cpuQ, memQ string) {
	pid := r.st.AdapterPID()
	want := c.pods
	ways := []func() error{
		func() error { return r.items(r.direct, r.st.AdapterURL(), path, want) },
		func() error { return r.items(r.via, r.viaHost, path, want) },
		func() error { // both at once, as the adapter sends them
			errs := make(chan error, 2)
			for _, q := range []string{cpuQ, memQ} {
				go func() { errs <- r.raw(q, want) }()
			}
			return errors.Join(<-errs, <-errs)
		},
		func() error { // one after the other
			return errors.Join(r.raw(cpuQ, want), r.raw(memQ, want))
		},
	}
	lat := make([][]time.Duration, len(ways))
	cpu0 := cpuSeconds(r.tb, pid)
	for i := range c.sequential {
		for k := range ways {
			w := (k + i) % len(ways)
			start := time.Now()
			if err := ways[w](); err != nil {
				r.tb.Fatal(err)
			}
			lat[w] = append(lat[w], time.Since(start))
		}
	}
	cpu := (cpuSeconds(r.tb, pid) - cpu0) / float64(2*c.sequential)
	p := func(w, q int) time.Duration { return benchrig.Percentile(lat[w], q) }
	pp := func(w int) string { return fmt.Sprintf("%.1f / %.1f", benchrig.Ms(p(w, 50)), benchrig.Ms(p(w, 99))) }
	ratio := func(q int) string {
		return fmt.Sprintf("%.2f / %.2f", float64(p(0, q))/float64(p(2, q)), float64(p(1, q))/float64(p(2, q)))
	}
	fmt.Fprintf(r.report, "| %s | %s | %s | %s | %s | %s | %s | %.2f | %s |\n", name, pp(0), pp(1), pp(2), pp(3), ratio(50), ratio(99), cpu*1000, benchrig.MiB(pid, "VmRSS"))
	r.tb.Logf("%s: cpu query %d bytes, memory query %d bytes: %.300s", name, len(cpuQ), len(memQ), cpuQ)
}

// raw sends q straight to Prometheus and checks it returns want samples.
func (r *rig) raw(q string, want int) error {
	n, err := r.promQuery(q)
	if err == nil && n != want {
		err = fmt.Errorf("raw PromQL: %d samples, want %d: %.200s", n, want, q)
	}
	return err
}

// items gets path and checks that it lists want pods, each with cpu and memory.
func (r *rig) items(c *http.Client, base, path string, want int) error {
	body, err := benchrig.Get(c, base, path)
	if err != nil {
		return err
	}
	l, err := list(body)
	if err != nil {
		return err
	}
	if len(l.Items) != want {
		return fmt.Errorf("%s: %d pods, want %d", path, len(l.Items), want)
	}
	for _, it := range l.Items {
		if len(it.Containers) != 1 || it.Containers[0].Usage["cpu"] == "" || it.Containers[0].Usage["memory"] == "" {
			return fmt.Errorf("%s: pod %s without cpu and memory: %+v", path, it.Metadata.Name, it.Containers)
		}
	}
	return nil
}

// waitReady waits for n Ready pods of the Deployment web.
func (r *rig) waitReady(ctx context.Context, n int) {
	var ready int32
	err := wait.PollUntilContextTimeout(ctx, time.Second, 15*time.Minute, true, func(ctx context.Context) (bool, error) {
		d, err := r.st.Kube.AppsV1().Deployments(ns).Get(ctx, "web", metav1.GetOptions{})
		if err == nil {
			ready = d.Status.ReadyReplicas
		}
		return err == nil && int(ready) == n, nil
	})
	if err != nil {
		r.tb.Fatalf("%d Ready pods: %d after %v", n, ready, err)
	}
}

// waitItems waits until the adapter lists every pod with cpu and memory (a rate needs two scrapes) and
// returns their names in the order the adapter lists them.
func (r *rig) waitItems(ctx context.Context, path string, n int) []string {
	var last error
	var names []string
	err := wait.PollUntilContextTimeout(ctx, time.Second, 5*time.Minute, true, func(context.Context) (bool, error) {
		body, err := benchrig.Get(r.direct, r.st.AdapterURL(), path)
		if err != nil {
			last = err
			return false, nil
		}
		l, err := list(body)
		if err != nil {
			last = err
			return false, nil
		}
		names = names[:0]
		for _, it := range l.Items {
			names = append(names, it.Metadata.Name)
		}
		last = fmt.Errorf("%d items", len(l.Items))
		return len(l.Items) == n, nil
	})
	if err != nil {
		r.tb.Fatalf("%s: want %d items: %v", path, n, last)
	}
	return slices.Clone(names)
}

// restart starts the adapter again on rules (a fresh process, so its CPU and RSS are its own).
func (r *rig) restart(ctx context.Context, rules string) {
	if err := r.st.StopAdapter(); err != nil {
		r.tb.Fatal(err)
	}
	if err := r.st.ReplaceRules([]byte(rules)); err != nil {
		r.tb.Fatal(err)
	}
	if err := r.st.StartAdapter(ctx); err != nil {
		r.tb.Fatal(err)
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
