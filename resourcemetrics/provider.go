package resourcemetrics

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/common/model"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"
	"k8s.io/metrics/pkg/apis/metrics"

	"github.com/promql-adapter/promql-adapter/adapter"
	"github.com/promql-adapter/promql-adapter/naming"
)

// Querier runs one instant PromQL query (adapter.PromClient is one).
type Querier interface {
	Query(ctx context.Context, query string) (model.Vector, error)
}

// NameBudget is how many pod or node names a native rule's query names in a matcher; past it the
// query selects by namespace (or everything) and the provider keeps the objects it wants.
const NameBudget = 200

// Provider answers PodMetrics and NodeMetrics from the rules' PromQL.
type Provider struct {
	q     Querier
	rules atomic.Pointer[naming.ResourceRules]
}

// NewProvider returns a Provider serving rules (nil until SetRules when the file has none).
func NewProvider(q Querier, rules *naming.ResourceRules) *Provider {
	p := &Provider{q: q}
	p.rules.Store(rules)
	return p
}

// SetRules replaces the rules; requests in flight finish with those they started with.
func (p *Provider) SetRules(r *naming.ResourceRules) { p.rules.Store(r) }

// Rules returns the rules served now, or nil.
func (p *Provider) Rules() *naming.ResourceRules { return p.rules.Load() }

var _ Getter = &Provider{}

func (p *Provider) current() (*naming.ResourceRules, error) {
	r := p.rules.Load()
	if r == nil || r.CPU == nil || r.Memory == nil {
		return nil, apierrors.NewServiceUnavailable("no resource rules are configured: add resourceRules (prometheus-adapter format) or resources (native) to the rule file")
	}
	return r, nil
}

type podKey struct{ ns, pod string }

// usage is what the queries returned for one pod: per container, cpu and memory, and the earliest timestamp.
type usage struct {
	cpu, mem map[string]float64
	ts       model.Time
}

// PodMetrics implements Getter. A pod is listed only when every container of its spec has both a cpu and a
// memory sample; other pods are left out, as metrics-server leaves out pods it has no complete data for.
func (p *Provider) PodMetrics(ctx context.Context, namespace string, pods []*corev1.Pod) ([]metrics.PodMetrics, error) {
	r, err := p.current()
	if err != nil {
		return nil, err
	}
	if len(pods) == 0 {
		return []metrics.PodMetrics{}, nil
	}
	batches := podBatches(r, namespace, pods)
	got := map[podKey]*usage{}
	var mu sync.Mutex
	// The cpu and the memory query of every batch run at once (bounded by parallel), as prometheus-adapter runs them.
	err = p.run(ctx, 2*len(batches), func(ctx context.Context, i int) error {
		b := batches[i/2]
		quantity := struct {
			q   *naming.ResourceQuery
			cpu bool
		}{r.CPU, true}
		if i%2 == 1 {
			quantity.q, quantity.cpu = r.Memory, false
		}
		query, err := quantity.q.PodsIn(b.nss, b.names)
		if err != nil {
			return apierrors.NewInternalError(fmt.Errorf("%s: %w", r.Format, err))
		}
		vec, err := p.query(ctx, query)
		if err != nil {
			return err
		}
		mu.Lock()
		for _, s := range vec {
			var ns string
			if len(b.nss) == 1 {
				ns = b.nss[0]
			} else if ns = string(s.Metric[model.LabelName(quantity.q.NSLabel)]); ns == "" {
				continue // whose is it? (the query drops the namespace label)
			}
			k := podKey{ns, string(s.Metric[model.LabelName(quantity.q.PodLabel)])}
			container := string(s.Metric[model.LabelName(quantity.q.ContainerLabel)])
			v := float64(s.Value)
			if math.IsNaN(v) || math.IsInf(v, 0) || v < 0 {
				continue
			}
			u := got[k]
			if u == nil {
				u = &usage{cpu: map[string]float64{}, mem: map[string]float64{}, ts: s.Timestamp}
				got[k] = u
			}
			if quantity.cpu {
				u.cpu[container] = v
			} else {
				u.mem[container] = v
			}
			if s.Timestamp.Before(u.ts) {
				u.ts = s.Timestamp
			}
		}
		mu.Unlock()
		return nil
	})
	if err != nil {
		return nil, err
	}
	out := make([]metrics.PodMetrics, 0, len(pods))
	for _, pod := range pods {
		if m, ok := podMetrics(pod, got[podKey{pod.Namespace, pod.Name}], r.Window); ok {
			out = append(out, m)
		}
	}
	return out, nil
}

// NameBytes bounds each query's regular expressions of pod names and of namespaces, measured after
// escaping, as the custom metrics' queries are bounded (8 KiB): past it a query selects every pod of
// its namespaces (or of the cluster) and the provider keeps the pods it wants.
const NameBytes = 8 << 10

// podBatch is one cpu and one memory query: the pods named (nil: every pod) in the namespaces (none: every namespace).
type podBatch struct {
	nss, names []string
}

// podBatches splits a request for pods into queries. A native rule asks once. prometheus-adapter rules ask
// per namespace, as prometheus-adapter does, only when their template drops the namespace label; otherwise
// one query names every pod of every namespace while that fits in NameBytes, and past it a cluster-wide
// request asks for every pod once, so `kubectl top pods -A` costs two queries, not two per namespace.
func podBatches(r *naming.ResourceRules, namespace string, pods []*corev1.Pod) []podBatch {
	var nss []string
	byNS := map[string][]string{}
	for _, pod := range pods {
		if _, ok := byNS[pod.Namespace]; !ok {
			nss = append(nss, pod.Namespace)
		}
		byNS[pod.Namespace] = append(byNS[pod.Namespace], pod.Name)
	}
	named := func(names []string) []string { // nil past the budget: every pod
		if len(names) > NameBudget || naming.EscapedBytes(names) > NameBytes {
			return nil
		}
		return names
	}
	switch {
	case !r.PerNamespace:
		b := podBatch{names: named(podNames(pods))}
		if namespace != "" {
			b.nss = []string{namespace}
		}
		return []podBatch{b}
	case !r.CPU.MultiNamespace || !r.Memory.MultiNamespace:
		out := make([]podBatch, len(nss))
		for i, ns := range nss {
			out[i] = podBatch{nss: []string{ns}, names: named(byNS[ns])}
		}
		return out
	}
	names := distinct(podNames(pods))
	if naming.EscapedBytes(names) <= NameBytes && naming.EscapedBytes(nss) <= NameBytes {
		return []podBatch{{nss: nss, names: names}}
	}
	if namespace != "" {
		return []podBatch{{nss: []string{namespace}}}
	}
	return []podBatch{{}}
}

func podNames(pods []*corev1.Pod) []string {
	out := make([]string, len(pods))
	for i, p := range pods {
		out[i] = p.Name
	}
	return out
}

// distinct returns names without repeats, in first-seen order.
func distinct(names []string) []string {
	seen := make(map[string]bool, len(names))
	out := names[:0:0]
	for _, n := range names {
		if !seen[n] {
			seen[n] = true
			out = append(out, n)
		}
	}
	return out
}

// podMetrics builds one pod's answer, or false when a container lacks cpu or memory.
func podMetrics(pod *corev1.Pod, u *usage, window time.Duration) (metrics.PodMetrics, bool) {
	if u == nil || len(pod.Spec.Containers) == 0 {
		return metrics.PodMetrics{}, false
	}
	cs := make([]metrics.ContainerMetrics, 0, len(pod.Spec.Containers))
	for _, c := range pod.Spec.Containers {
		cpu, okC := u.cpu[c.Name]
		mem, okM := u.mem[c.Name]
		if !okC || !okM {
			klog.V(4).InfoS("pod left out: a container has no cpu or memory sample", "pod", klog.KObj(pod), "container", c.Name, "cpu", okC, "memory", okM)
			return metrics.PodMetrics{}, false
		}
		cs = append(cs, metrics.ContainerMetrics{Name: c.Name, Usage: usageList(cpu, mem)})
	}
	return metrics.PodMetrics{
		ObjectMeta: metav1.ObjectMeta{Name: pod.Name, Namespace: pod.Namespace, Labels: pod.Labels, CreationTimestamp: metav1.Now()},
		Timestamp:  metav1.NewTime(u.ts.Time()),
		Window:     metav1.Duration{Duration: window},
		Containers: cs,
	}, true
}

// usageList converts cores and bytes the way metrics-server reports them: nanocores and bytes.
// Values past what int64 nanocores or bytes hold (a wrong query) are kept as naming.Quantity keeps
// them, never wrapped into a negative quantity.
func usageList(cores, bytes float64) corev1.ResourceList {
	const maxExact = 1 << 53 // past this int64(math.Round(v)) is no longer exact, and past 2^63 it wraps
	cpu := *resource.NewScaledQuantity(int64(math.Round(cores*1e9)), resource.Nano)
	if cores*1e9 >= maxExact {
		cpu, _ = naming.Quantity(math.Round(cores))
	}
	mem := *resource.NewQuantity(int64(math.Round(bytes)), resource.BinarySI)
	if bytes >= maxExact {
		mem, _ = naming.Quantity(math.Round(bytes))
	}
	return corev1.ResourceList{corev1.ResourceCPU: cpu, corev1.ResourceMemory: mem}
}

// NodeMetrics implements Getter: a node is listed only when it has both a cpu and a memory sample.
func (p *Provider) NodeMetrics(ctx context.Context, nodes []*metav1.PartialObjectMetadata, all bool) ([]metrics.NodeMetrics, error) {
	r, err := p.current()
	if err != nil {
		return nil, err
	}
	if len(nodes) == 0 {
		return []metrics.NodeMetrics{}, nil
	}
	if !r.CPU.HasNodes() || !r.Memory.HasNodes() {
		return nil, apierrors.NewServiceUnavailable(fmt.Sprintf("%s has no nodeQuery for cpu and memory, so no NodeMetrics are served", r.Format))
	}
	var names []string // nil: every node, the provider keeps those asked for
	if r.PerNamespace || !all || len(nodes) <= NameBudget {
		names = make([]string, len(nodes))
		for i, n := range nodes {
			names[i] = n.Name
		}
		if naming.EscapedBytes(names) > NameBytes {
			names = nil
		}
	}
	type sample struct {
		v  float64
		ts model.Time
	}
	var vals [2]map[string]sample
	err = p.run(ctx, 2, func(ctx context.Context, i int) error {
		q := r.CPU
		if i == 1 {
			q = r.Memory
		}
		query, err := q.Nodes(names)
		if err != nil {
			return apierrors.NewInternalError(fmt.Errorf("%s: %w", r.Format, err))
		}
		vec, err := p.query(ctx, query)
		if err != nil {
			return err
		}
		m := make(map[string]sample, len(vec))
		for _, s := range vec {
			v := float64(s.Value)
			if math.IsNaN(v) || math.IsInf(v, 0) || v < 0 {
				continue
			}
			m[string(s.Metric[model.LabelName(q.NodeLabel)])] = sample{v, s.Timestamp}
		}
		vals[i] = m
		return nil
	})
	if err != nil {
		return nil, err
	}
	out := make([]metrics.NodeMetrics, 0, len(nodes))
	for _, n := range nodes {
		cpu, okC := vals[0][n.Name]
		mem, okM := vals[1][n.Name]
		if !okC || !okM {
			klog.V(4).InfoS("node left out: no cpu or memory sample", "node", n.Name, "cpu", okC, "memory", okM)
			continue
		}
		ts := cpu.ts
		if mem.ts.Before(ts) {
			ts = mem.ts
		}
		out = append(out, metrics.NodeMetrics{
			ObjectMeta: metav1.ObjectMeta{Name: n.Name, Labels: n.Labels, CreationTimestamp: metav1.Now()},
			Timestamp:  metav1.NewTime(ts.Time()),
			Window:     metav1.Duration{Duration: r.Window},
			Usage:      usageList(cpu.v, mem.v),
		})
	}
	return out, nil
}

// parallel bounds the concurrent queries of one request (per-namespace queries of prometheus-adapter rules).
const parallel = 8

// run calls f for 0..n-1, at most parallel at once; the first error cancels the rest and is returned.
func (p *Provider) run(ctx context.Context, n int, f func(context.Context, int) error) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	sem := make(chan struct{}, parallel)
	var wg sync.WaitGroup
	var once sync.Once
	var first error
	for i := 0; i < n; i++ {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			defer func() { <-sem }()
			if err := f(ctx, i); err != nil {
				once.Do(func() { first = err; cancel(err) })
			}
		}(i)
	}
	wg.Wait()
	if first != nil {
		return first
	}
	if err := ctx.Err(); err != nil {
		return apierrors.NewServiceUnavailable(fmt.Sprintf("resource metrics request ended: %v", context.Cause(ctx)))
	}
	return nil
}

// query runs one query; a failure is a 503 naming Prometheus's error, a rejected query a 500.
func (p *Provider) query(ctx context.Context, q string) (model.Vector, error) {
	vec, err := p.q.Query(ctx, q)
	if err == nil {
		return vec, nil
	}
	var qe *adapter.QueryError
	if errors.As(err, &qe) && qe.Bad {
		return nil, apierrors.NewInternalError(fmt.Errorf("query %s: %w", q, err))
	}
	return nil, apierrors.NewServiceUnavailable(fmt.Sprintf("resource metrics: %v", err))
}
