package resourcemetrics

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	kubefake "k8s.io/client-go/kubernetes/fake"
	clienttesting "k8s.io/client-go/testing"

	"github.com/promql-adapter/promql-adapter/adapter"
	"github.com/promql-adapter/promql-adapter/naming"
	"github.com/promql-adapter/promql-adapter/naming/pacompat"
)

// fakeQuerier answers by the query's metric name and records the queries.
type fakeQuerier struct {
	mu      sync.Mutex
	queries []string
	answers map[string]model.Vector // substring of the query -> answer
	err     error
}

func (f *fakeQuerier) Query(_ context.Context, q string) (model.Vector, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.queries = append(f.queries, q)
	if f.err != nil {
		return nil, f.err
	}
	for k, v := range f.answers {
		if strings.Contains(q, k) {
			return v, nil
		}
	}
	return nil, nil
}

func sample(v float64, kv ...string) *model.Sample {
	m := model.Metric{}
	for i := 0; i < len(kv); i += 2 {
		m[model.LabelName(kv[i])] = model.LabelValue(kv[i+1])
	}
	return &model.Sample{Metric: m, Value: model.SampleValue(v), Timestamp: model.TimeFromUnix(1000)}
}

func pod(ns, name string, containers ...string) *corev1.Pod {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	for _, c := range containers {
		p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: c})
	}
	return p
}

func nativeRules(t *testing.T) *naming.ResourceRules {
	t.Helper()
	rr, err := naming.CompileResources(&naming.ResourceConfig{
		CPU:    naming.ResourceQueries{ContainerQuery: `sum by (namespace, pod, container) (rate(cpu[1m]))`, NodeQuery: `sum by (node) (rate(node_cpu[1m]))`},
		Memory: naming.ResourceQueries{ContainerQuery: `sum by (namespace, pod, container) (mem)`, NodeQuery: `sum by (instance) (node_mem)`, Labels: naming.ResourceLabels{Node: "instance"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	return rr
}

// TestPodMetrics: a pod is listed only when every container of its spec has cpu and memory; values are
// nanocores and bytes; NaN and negative samples count as missing; the window is the rules'.
func TestPodMetrics(t *testing.T) {
	q := &fakeQuerier{answers: map[string]model.Vector{
		"rate(cpu": {
			sample(0.25, "namespace", "shop", "pod", "web-1", "container", "app"),
			sample(0.01, "namespace", "shop", "pod", "web-1", "container", "sidecar"),
			sample(0.5, "namespace", "shop", "pod", "web-2", "container", "app"),
			sample(0.5, "namespace", "shop", "pod", "web-3", "container", "app"),
			sample(-1, "namespace", "shop", "pod", "web-4", "container", "app"),
			sample(0.1, "namespace", "shop", "pod", "web-1", "container", "POD"), // not in the spec: ignored
		},
		"mem": {
			sample(100<<20, "namespace", "shop", "pod", "web-1", "container", "app"),
			sample(10<<20, "namespace", "shop", "pod", "web-1", "container", "sidecar"),
			sample(200<<20, "namespace", "shop", "pod", "web-2", "container", "app"),
			sample(100<<20, "namespace", "shop", "pod", "web-4", "container", "app"),
		},
	}}
	p := NewProvider(q, nativeRules(t))
	pods := []*corev1.Pod{
		pod("shop", "web-1", "app", "sidecar"),
		pod("shop", "web-2", "app", "sidecar"), // sidecar has no data: left out
		pod("shop", "web-3", "app"),            // no memory: left out
		pod("shop", "web-4", "app"),            // negative cpu: left out
		pod("shop", "web-5", "app"),            // no data at all
	}
	got, err := p.PodMetrics(context.Background(), "shop", pods)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].Name != "web-1" {
		t.Fatalf("got %+v, want web-1 only", got)
	}
	m := got[0]
	if m.Window.Duration != time.Minute || !m.Timestamp.Time.Equal(time.Unix(1000, 0)) {
		t.Errorf("window %s timestamp %s", m.Window.Duration, m.Timestamp)
	}
	if len(m.Containers) != 2 || m.Containers[0].Name != "app" || m.Containers[1].Name != "sidecar" {
		t.Fatalf("containers %+v", m.Containers)
	}
	if c := m.Containers[0].Usage[corev1.ResourceCPU]; c.MilliValue() != 250 || c.ScaledValue(-9) != 250000000 {
		t.Errorf("cpu %s", c.String())
	}
	if mem := m.Containers[0].Usage[corev1.ResourceMemory]; mem.Value() != 100<<20 || mem.String() != "100Mi" {
		t.Errorf("memory %s", mem.String())
	}
	for _, query := range q.queries {
		if !strings.Contains(query, `namespace="shop"`) || !strings.Contains(query, `pod=~"web-1|web-2|web-3|web-4|web-5"`) {
			t.Errorf("query %s lacks the namespace and the pod names", query)
		}
	}
}

// TestPodMetricsAllNamespaces: a native rule asks once for every namespace (no namespace matcher) and keys
// results by the namespace label; prometheus-adapter rules ask once per namespace, naming the pods.
func TestPodMetricsAllNamespaces(t *testing.T) {
	answers := map[string]model.Vector{
		"cpu": {sample(0.1, "namespace", "a", "pod", "x", "container", "c"), sample(0.2, "namespace", "b", "pod", "x", "container", "c")},
		"mem": {sample(1, "namespace", "a", "pod", "x", "container", "c"), sample(2, "namespace", "b", "pod", "x", "container", "c")},
	}
	pods := []*corev1.Pod{pod("a", "x", "c"), pod("b", "x", "c")}
	q := &fakeQuerier{answers: answers}
	got, err := NewProvider(q, nativeRules(t)).PodMetrics(context.Background(), "", pods)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[1].Namespace != "b" || got[1].Containers[0].Usage.Cpu().MilliValue() != 200 {
		t.Errorf("got %+v", got)
	}
	if len(q.queries) != 2 || strings.Contains(q.queries[0], "namespace=") {
		t.Errorf("native all-namespaces queries %q: want one cpu and one memory query without a namespace matcher", q.queries)
	}

	// prometheus-adapter rules whose template keeps the namespace (by <<.GroupBy>>) ask once for both namespaces.
	q = &fakeQuerier{answers: answers}
	got, err = NewProvider(q, paResourceRules(t)).PodMetrics(context.Background(), "", pods)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || len(q.queries) != 2 || !strings.Contains(q.queries[0], `namespace=~"a|b"`) || !strings.Contains(q.queries[0], "by (namespace,pod,container)") {
		t.Errorf("prometheus-adapter rules, grouped by .GroupBy: %d pods from queries %q, want 2 from one cpu and one memory query over both namespaces", len(got), q.queries)
	}

	// A template that groups by fixed labels without the namespace is asked one namespace at a time.
	fixed, _, err := pacompat.Load([]byte(`resourceRules:
  cpu: {containerQuery: 'sum by (pod, container) (rate(cpu{<<.LabelMatchers>>}[1m]))', nodeQuery: 'sum by (node) (node_cpu{<<.LabelMatchers>>})', containerLabel: container, resources: {template: <<.Resource>>}}
  memory: {containerQuery: 'sum by (pod, container) (mem{<<.LabelMatchers>>})', nodeQuery: 'sum by (node) (node_mem{<<.LabelMatchers>>})', containerLabel: container, resources: {template: <<.Resource>>}}
  window: 1m
`), naming.BuiltinResources())
	if err != nil {
		t.Fatal(err)
	}
	q = &fakeQuerier{answers: map[string]model.Vector{
		`namespace="a"`: {sample(0.1, "pod", "x", "container", "c")},
		`namespace="b"`: {sample(0.2, "pod", "x", "container", "c")},
	}}
	got, err = NewProvider(q, fixed.Resource).PodMetrics(context.Background(), "", pods)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || len(q.queries) != 4 {
		t.Errorf("per namespace: %d pods from %d queries %q, want 2 from 4", len(got), len(q.queries), q.queries)
	}
}

// TestNodeMetrics: nodes need both samples; each quantity's node label is its own.
func TestNodeMetrics(t *testing.T) {
	q := &fakeQuerier{answers: map[string]model.Vector{
		"node_cpu": {sample(1.5, "node", "n1"), sample(1, "node", "n2")},
		"node_mem": {sample(1<<30, "instance", "n1")},
	}}
	nodes := []*metav1.PartialObjectMetadata{{ObjectMeta: metav1.ObjectMeta{Name: "n1"}}, {ObjectMeta: metav1.ObjectMeta{Name: "n2"}}}
	got, err := NewProvider(q, nativeRules(t)).NodeMetrics(context.Background(), nodes, true)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].Name != "n1" || got[0].Usage.Cpu().MilliValue() != 1500 || got[0].Usage.Memory().String() != "1Gi" {
		t.Errorf("got %+v", got)
	}
}

// TestErrors: Prometheus down is a 503 naming its error, a rejected query a 500, no rules a 503 that says what to add.
func TestErrors(t *testing.T) {
	pods := []*corev1.Pod{pod("a", "x", "c")}
	_, err := NewProvider(&fakeQuerier{err: &adapter.QueryError{Err: errors.New("connection refused")}}, nativeRules(t)).PodMetrics(context.Background(), "a", pods)
	if !apierrors.IsServiceUnavailable(err) || !strings.Contains(err.Error(), "connection refused") {
		t.Errorf("prometheus down: %v", err)
	}
	_, err = NewProvider(&fakeQuerier{err: &adapter.QueryError{Err: errors.New("bad_data: parse error"), Bad: true}}, nativeRules(t)).PodMetrics(context.Background(), "a", pods)
	if !apierrors.IsInternalError(err) || !strings.Contains(err.Error(), "parse error") {
		t.Errorf("rejected query: %v", err)
	}
	_, err = NewProvider(&fakeQuerier{}, nil).PodMetrics(context.Background(), "a", pods)
	if !apierrors.IsServiceUnavailable(err) || !strings.Contains(err.Error(), "resourceRules") {
		t.Errorf("no rules: %v", err)
	}
}

func TestStripPod(t *testing.T) {
	in := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "n", Labels: map[string]string{"a": "b"}, Annotations: map[string]string{"big": strings.Repeat("x", 1000)}},
		Spec:       corev1.PodSpec{NodeName: "node", Containers: []corev1.Container{{Name: "c", Image: "img", Env: []corev1.EnvVar{{Name: "E", Value: "v"}}}}},
		Status:     corev1.PodStatus{Phase: corev1.PodRunning},
	}
	out, err := StripPod(in)
	if err != nil {
		t.Fatal(err)
	}
	p := out.(*corev1.Pod)
	if p.Name != "p" || p.Namespace != "n" || p.Labels["a"] != "b" || p.Spec.NodeName != "node" || p.Spec.Containers[0].Name != "c" {
		t.Errorf("lost what is read: %+v", p)
	}
	if p.Annotations != nil || p.Spec.Containers[0].Image != "" || p.Spec.Containers[0].Env != nil || p.Status.Phase != "" {
		t.Errorf("kept what is never read: %+v", p)
	}
}

// TestUnusablePartOfResourceRules: a prometheus-adapter config whose memory nodeQuery is missing is served
// (the lenient load): PodMetrics answer, NodeMetrics fail with a 500 naming the field and query nothing.
func TestUnusablePartOfResourceRules(t *testing.T) {
	rules, _, err := pacompat.LoadLenient([]byte(`resourceRules:
  cpu: {containerQuery: 'sum by (<<.GroupBy>>) (rate(cpu{<<.LabelMatchers>>}[1m]))', nodeQuery: 'sum by (<<.GroupBy>>) (rate(node_cpu{<<.LabelMatchers>>}[1m]))', containerLabel: container, resources: {template: <<.Resource>>}}
  memory: {containerQuery: 'sum by (<<.GroupBy>>) (mem{<<.LabelMatchers>>})', containerLabel: container, resources: {template: <<.Resource>>}}
  window: 1m
`), naming.BuiltinResources())
	if err != nil {
		t.Fatal(err)
	}
	q := &fakeQuerier{answers: map[string]model.Vector{
		"rate(cpu": {sample(0.25, "pod", "web-1", "container", "app")},
		"mem{":     {sample(1<<20, "pod", "web-1", "container", "app")},
		"node_cpu": {sample(2, "node", "n1")},
	}}
	p := NewProvider(q, rules.Resource)
	pods, err := p.PodMetrics(context.Background(), "shop", []*corev1.Pod{pod("shop", "web-1", "app")})
	if err != nil || len(pods) != 1 {
		t.Fatalf("PodMetrics: %v, %v", pods, err)
	}
	_, err = p.NodeMetrics(context.Background(), []*metav1.PartialObjectMetadata{{ObjectMeta: metav1.ObjectMeta{Name: "n1"}}}, true)
	if !apierrors.IsInternalError(err) || !strings.Contains(err.Error(), "memory.nodeQuery: required") {
		t.Errorf("NodeMetrics: %v, want a 500 naming memory.nodeQuery", err)
	}
	for _, s := range q.queries {
		if strings.Contains(s, "node_mem") || s == "" {
			t.Errorf("queried %q", s)
		}
	}
}

// paResourceRules are prometheus-adapter resourceRules as its chart ships them.
func paResourceRules(t *testing.T) *naming.ResourceRules {
	t.Helper()
	rules, _, err := pacompat.Load([]byte(`resourceRules:
  cpu: {containerQuery: 'sum by (<<.GroupBy>>) (rate(cpu{<<.LabelMatchers>>}[1m]))', nodeQuery: 'sum by (<<.GroupBy>>) (rate(node_cpu{<<.LabelMatchers>>}[1m]))', containerLabel: container, resources: {overrides: {namespace: {resource: namespace}, pod: {resource: pod}, node: {resource: node}}}}
  memory: {containerQuery: 'sum by (<<.GroupBy>>) (mem{<<.LabelMatchers>>})', nodeQuery: 'sum by (<<.GroupBy>>) (node_mem{<<.LabelMatchers>>})', containerLabel: container, resources: {overrides: {namespace: {resource: namespace}, pod: {resource: pod}, node: {resource: node}}}}
  window: 1m
`), naming.BuiltinResources())
	if err != nil {
		t.Fatal(err)
	}
	return rules.Resource
}

// everyPodQuerier answers every query with a sample per container of its pods (cpu: the pod's index in
// millicores), keyed by namespace, pod and container: the provider must keep only what it asked for.
type everyPodQuerier struct {
	fakeQuerier
	vec model.Vector
}

func (e *everyPodQuerier) Query(ctx context.Context, q string) (model.Vector, error) {
	_, _ = e.fakeQuerier.Query(ctx, q)
	return e.vec, nil
}

// TestPodMetricsAllNamespacesBounded: `kubectl top pods -A` with prometheus-adapter resourceRules asks a
// bounded number of queries however many namespaces hold pods (not two per namespace), every query stays
// within the name budget, and every pod is answered from the samples of its own namespace.
func TestPodMetricsAllNamespacesBounded(t *testing.T) {
	tests := []struct {
		name        string
		namespaces  int
		podsPerNS   int
		podName     func(ns, i int) string
		maxQueries  int
		maxQueryLen int
	}{
		{"300 namespaces, 2 pods each", 300, 2, func(ns, i int) string { return fmt.Sprintf("web-%d", i) }, 8, 20 << 10},
		{"one namespace of 1,000 long pod names", 1, 1000, func(ns, i int) string { return fmt.Sprintf("%s-%d", strings.Repeat("checkout-worker-", 4), i) }, 2, 20 << 10},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			q := &everyPodQuerier{}
			var pods []*corev1.Pod
			for n := range tc.namespaces {
				ns := fmt.Sprintf("team-%03d", n)
				for i := range tc.podsPerNS {
					name := tc.podName(n, i)
					pods = append(pods, pod(ns, name, "app"))
					v := float64(len(pods)) / 1000
					q.vec = append(q.vec, sample(v, "namespace", ns, "pod", name, "container", "app"))
				}
			}
			got, err := NewProvider(q, paResourceRules(t)).PodMetrics(context.Background(), "", pods)
			if err != nil {
				t.Fatal(err)
			}
			if len(q.queries) > tc.maxQueries {
				t.Errorf("%d queries for %d pods in %d namespaces; want at most %d", len(q.queries), len(pods), tc.namespaces, tc.maxQueries)
			}
			longest := 0
			for _, s := range q.queries {
				longest = max(longest, len(s))
				if len(s) > tc.maxQueryLen {
					t.Errorf("a query of %d bytes; want at most %d: %.200s...", len(s), tc.maxQueryLen, s)
				}
			}
			if len(got) != len(pods) {
				t.Fatalf("%d pods answered, want %d", len(got), len(pods))
			}
			t.Logf("%d pods in %d namespaces: %d queries, the longest %d bytes", len(pods), tc.namespaces, len(q.queries), longest)
		})
	}
}

// TestUsageListBounds: an absurd cpu value (a wrong query) never wraps into a negative quantity.
func TestUsageListBounds(t *testing.T) {
	for _, tc := range []struct{ cores, bytes float64 }{{1e10, 1}, {1e300, 1e300}, {0.25, 1 << 20}} {
		u := usageList(tc.cores, tc.bytes)
		if c := u[corev1.ResourceCPU]; c.Sign() < 0 {
			t.Errorf("usageList(%g, %g): cpu %s is negative", tc.cores, tc.bytes, c.String())
		}
		if m := u[corev1.ResourceMemory]; m.Sign() < 0 {
			t.Errorf("usageList(%g, %g): memory %s is negative", tc.cores, tc.bytes, m.String())
		}
	}
}

// TestPodCacheHonoursTheRequestContext: a request waiting for a pod cache that cannot sync ends with
// the request's context, not after a fixed wait of its own, and the 503 names the cause.
func TestPodCacheHonoursTheRequestContext(t *testing.T) {
	client := kubefake.NewClientset()
	client.PrependReactor("list", "pods", func(clienttesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewInternalError(errors.New("etcdserver: request timed out"))
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c := NewPodCache(ctx, client)
	rctx, rcancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer rcancel()
	done := make(chan error, 1)
	go func() {
		_, err := c.Pods(rctx, "shop", labels.Everything())
		done <- err
	}()
	select {
	case err := <-done:
		if !apierrors.IsServiceUnavailable(err) || !strings.Contains(err.Error(), "pods cache has not synced") {
			t.Errorf("error %v; want a 503 saying the pods cache has not synced", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Pods still waiting 5s after the request's context ended")
	}
}
