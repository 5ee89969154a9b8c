package adapter

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/promql-adapter/promql-adapter/querylimit"
)

// blockingProm is an httptest Prometheus whose answers wait until release is closed (or the
// request ends), counting the queries it holds at once.
type blockingProm struct {
	srv     *httptest.Server
	release chan struct{}
	once    sync.Once
	mu      sync.Mutex
	now     int
	peak    int
	total   int
}

func newBlockingProm(t *testing.T) *blockingProm {
	b := &blockingProm{release: make(chan struct{})}
	b.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.mu.Lock()
		b.now++
		b.total++
		b.peak = max(b.peak, b.now)
		b.mu.Unlock()
		defer func() {
			b.mu.Lock()
			b.now--
			b.mu.Unlock()
		}()
		select {
		case <-b.release:
		case <-r.Context().Done():
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"status": "success", "data": map[string]any{"resultType": "vector", "result": []any{
			map[string]any{"metric": map[string]string{"pod": "web-1"}, "value": []any{1700000000.5, "0.5"}},
		}}})
	}))
	t.Cleanup(b.srv.Close)
	t.Cleanup(b.answer) // before Close, which waits for the held queries
	return b
}

// answer lets every held query, and every later one, be answered.
func (b *blockingProm) answer() { b.once.Do(func() { close(b.release) }) }

func (b *blockingProm) counts() (now, peak, total int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.now, b.peak, b.total
}

func limitedProvider(t *testing.T, url string, timeout time.Duration, inflight, queue int) *Provider {
	t.Helper()
	m := NewMetrics(prometheus.NewRegistry())
	limit := querylimit.New(querylimit.Config{MaxInFlight: inflight, MaxQueue: queue}, querylimit.NewMetrics(prometheus.NewRegistry()))
	q, err := NewPromClient(PrometheusConfig{URL: url, Timeout: timeout, Limit: limit}, m)
	if err != nil {
		t.Fatal(err)
	}
	return NewProvider(Options{Querier: q, Metrics: m}, testRules(t))
}

// TestSlowPrometheusNeverPastTheLimit: a Prometheus that answers nothing holds at most
// --prometheus-max-inflight queries; --prometheus-max-queue more wait, every other request gets a
// fast 503 that says the adapter is shedding load, and once Prometheus answers the waiting
// requests are answered and new ones go through.
func TestSlowPrometheusNeverPastTheLimit(t *testing.T) {
	b := newBlockingProm(t)
	p := limitedProvider(t, b.srv.URL, 30*time.Second, 4, 6)
	type result struct {
		err  error
		took time.Duration
	}
	results := make(chan result, 30)
	for i := range 30 { // distinct namespaces: distinct queries, none collapsed into another
		go func() {
			start := time.Now()
			_, err := p.GetMetricBySelector(context.Background(), fmt.Sprintf("ns%d", i), labels.Everything(), podsInfo, labels.Everything())
			results <- result{err, time.Since(start)}
		}()
	}
	var shed []result
	for range 20 {
		select {
		case r := <-results:
			shed = append(shed, r)
		case <-time.After(10 * time.Second):
			now, _, _ := b.counts()
			t.Fatalf("%d requests answered while Prometheus holds %d queries; want 20 shed at once", len(shed), now)
		}
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
		if now, _, _ := b.counts(); now == 4 {
			break
		}
		if time.Now().After(deadline) {
			now, _, _ := b.counts()
			t.Fatalf("Prometheus holds %d queries with 10 requests admitted; want 4", now)
		}
	}
	time.Sleep(100 * time.Millisecond) // room for a fifth query, were the limit broken
	if now, peak, _ := b.counts(); now != 4 || peak != 4 {
		t.Errorf("Prometheus holds %d queries (peak %d) with 10 requests admitted; want 4", now, peak)
	}
	for _, r := range shed {
		var st apierrors.APIStatus
		if !errors.As(r.err, &st) || st.Status().Code != http.StatusServiceUnavailable {
			t.Fatalf("want a 503, got %v", r.err)
		}
		if msg := st.Status().Message; !strings.Contains(msg, "shedding load") || !strings.Contains(msg, "--prometheus-max-queue") {
			t.Errorf("message %q does not say the adapter sheds load, nor which flags bound it", msg)
		}
		if d := st.Status().Details; d == nil || d.RetryAfterSeconds != 1 {
			t.Errorf("details %+v: want RetryAfterSeconds 1", d)
		}
		if r.took > 5*time.Second {
			t.Errorf("shed after %s; a full queue must refuse at once", r.took)
		}
	}
	b.answer()
	for range 10 {
		if r := <-results; r.err != nil {
			t.Errorf("a queued request failed once Prometheus answered: %v", r.err)
		}
	}
	if _, peak, total := b.counts(); peak > 4 || total != 10 {
		t.Errorf("Prometheus saw %d queries, at most %d at once; want 10, at most 4", total, peak)
	}
	if _, err := p.GetMetricBySelector(context.Background(), "after", labels.Everything(), podsInfo, labels.Everything()); err != nil {
		t.Errorf("after the load: %v", err)
	}
}

// TestQueuedWithinTheTimeout: --prometheus-timeout bounds the wait for a slot and the query
// together, so a queued request gets its 503 within the timeout of its start, never twice it.
func TestQueuedWithinTheTimeout(t *testing.T) {
	b := newBlockingProm(t)
	defer b.answer()
	const timeout = 300 * time.Millisecond
	p := limitedProvider(t, b.srv.URL, timeout, 1, 2)
	var wg sync.WaitGroup
	for _, ns := range []string{"a", "b", "c"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			start := time.Now()
			_, err := p.GetMetricBySelector(context.Background(), ns, labels.Everything(), podsInfo, labels.Everything())
			took := time.Since(start)
			var st apierrors.APIStatus
			if !errors.As(err, &st) || st.Status().Code != http.StatusServiceUnavailable {
				t.Errorf("%s: want a 503, got %v", ns, err)
				return
			}
			if msg := st.Status().Message; !strings.Contains(msg, "no answer within 300ms") && !strings.Contains(msg, "freed up before the deadline") {
				t.Errorf("%s: message %q names neither the timeout nor the wait", ns, msg)
			}
			if took > timeout+time.Second {
				t.Errorf("%s: 503 after %s; the timeout is %s", ns, took, timeout)
			}
		}()
		time.Sleep(20 * time.Millisecond)
	}
	wg.Wait()
	// Not asserted here: how many queries Prometheus held at once. A query given up at its
	// timeout frees its slot when the client drops the connection, which Prometheus (here the
	// test server) notices a moment later; TestSlowPrometheusNeverPastTheLimit counts without
	// timeouts.
}
