package integration

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	cmv1beta2 "k8s.io/metrics/pkg/apis/custom_metrics/v1beta2"
)

// TestCoalescingOnARealPrometheus: with --coalesce-freshness, 40 concurrent requests for 40
// different pods of one namespace reach a real Prometheus as one query, each answer equals what an
// adapter without coalescing serves for the same pod, and past the bound the next request queries
// again. Prometheus's own prometheus_http_requests_total{handler="/api/v1/query"} counts the queries.
func TestCoalescingOnARealPrometheus(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	prom := ownPrometheus(ctx, t)
	const bound = 3 * time.Second
	shared := adapterOptions("../../testdata/rules/integration.yaml", prom.URL())
	shared.Coalesce.Freshness = bound
	sharedBase := startTestAdapter(t, shared)
	fresh := startTestAdapter(t, adapterOptions("../../testdata/rules/integration.yaml", prom.URL()))
	path := func(i int) string {
		return fmt.Sprintf("/apis/custom.metrics.k8s.io/v1beta2/namespaces/shop/pods/web-%03d/elu_utilization", i)
	}
	queries := func() int {
		t.Helper()
		n, err := queryRequests(ctx, prom.URL())
		if err != nil {
			t.Fatal(err)
		}
		return n
	}

	before := queries()
	const requests = 40
	got := make([]cmv1beta2.MetricValueList, requests)
	var wg sync.WaitGroup
	for i := range requests {
		wg.Add(1)
		go func() {
			defer wg.Done()
			getJSONAt(t, sharedBase, path(i), http.StatusOK, &got[i])
		}()
	}
	wg.Wait()
	if n := queries() - before; n != 1 {
		t.Errorf("%d concurrent requests for %d pods sent %d queries to Prometheus; want 1", requests, requests, n)
	}
	for i := range requests {
		var want cmv1beta2.MetricValueList
		getJSONAt(t, fresh, path(i), http.StatusOK, &want)
		if len(got[i].Items) != 1 || len(want.Items) != 1 {
			t.Fatalf("web-%03d: coalesced %d items, fresh %d; want 1 each", i, len(got[i].Items), len(want.Items))
		}
		g, w := got[i].Items[0], want.Items[0]
		if g.DescribedObject.Name != w.DescribedObject.Name || g.Value.Cmp(w.Value) != 0 {
			t.Errorf("web-%03d: coalesced %s %s, fresh %s %s", i, g.DescribedObject.Name, g.Value.String(), w.DescribedObject.Name, w.Value.String())
		}
	}

	// Past the bound the shared answer is not served: the next request asks Prometheus again.
	time.Sleep(bound + 500*time.Millisecond)
	before = queries()
	var again cmv1beta2.MetricValueList
	getJSONAt(t, sharedBase, path(0), http.StatusOK, &again)
	if n := queries() - before; n != 1 {
		t.Errorf("a request %s after the shared query sent %d queries; want 1 (the bound is %s)", bound+500*time.Millisecond, n, bound)
	}
	if len(again.Items) != 1 || time.Since(again.Items[0].Timestamp.Time) > bound+5*time.Second {
		t.Errorf("answer after the bound: %+v", again.Items)
	}
}

// queryRequests is how many instant queries Prometheus at base has answered, from its own
// prometheus_http_requests_total{handler="/api/v1/query"}.
func queryRequests(ctx context.Context, base string) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/metrics", nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, fmt.Errorf("prometheus /metrics: %w", err)
	}
	defer resp.Body.Close()
	total := 0
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "prometheus_http_requests_total{") || !strings.Contains(line, `handler="/api/v1/query"`) {
			continue
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err != nil {
			return 0, fmt.Errorf("prometheus /metrics: %q: %w", line, err)
		}
		total += int(v)
	}
	return total, sc.Err()
}
