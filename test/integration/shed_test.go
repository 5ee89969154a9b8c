package integration

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/promql-adapter/promql-adapter/internal/promrun"
)

// TestShedsLoadOnAHungPrometheus: with a real Prometheus hung (SIGSTOP), the adapter admits
// --prometheus-max-inflight queries and --prometheus-max-queue waiting ones, answers every other
// request at once with a 503, Retry-After and a message that names the limit, and once
// Prometheus runs again answers the admitted requests and new ones.
func TestShedsLoadOnAHungPrometheus(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	prom := ownPrometheus(ctx, t)
	const inflight, queue, requests = 2, 3, 12
	opts := adapterOptions("../../testdata/rules/integration.yaml", prom.URL())
	opts.PrometheusTimeout = 20 * time.Second
	opts.PrometheusMaxInFlight, opts.PrometheusMaxQueue = inflight, queue
	base := startTestAdapter(t, opts)
	path := func(i int) string { // one pod each: distinct queries, none collapsed into another
		return fmt.Sprintf("/apis/custom.metrics.k8s.io/v1beta2/namespaces/shop/pods/web-%03d/elu_utilization", i)
	}
	if code, body, err := getAt(base, path(0)); err != nil || code != 200 {
		t.Fatalf("before: %d %v %s", code, err, body)
	}

	if err := prom.Pause(); err != nil {
		t.Fatal(err)
	}
	resumed := false
	defer func() {
		if !resumed {
			_ = prom.Resume()
		}
	}()
	type answer struct {
		code       int
		retryAfter string
		body       string
		err        error
	}
	client := &http.Client{Transport: env.client.Transport, Timeout: 60 * time.Second}
	answers := make(chan answer, requests)
	for i := range requests {
		go func() {
			resp, err := client.Get(base + path(i))
			if err != nil {
				answers <- answer{err: err}
				return
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			answers <- answer{code: resp.StatusCode, retryAfter: resp.Header.Get("Retry-After"), body: string(body)}
		}()
	}
	shed := requests - inflight - queue
	for n := range shed {
		select {
		case a := <-answers:
			if a.err != nil || a.code != http.StatusServiceUnavailable || a.retryAfter != "1" ||
				!strings.Contains(a.body, "shedding load") || !strings.Contains(a.body, "--prometheus-max-queue") {
				t.Errorf("answer %d with Prometheus hung: %d Retry-After %q %v %s", n, a.code, a.retryAfter, a.err, a.body)
			}
		case <-time.After(15 * time.Second):
			t.Fatalf("%d of %d requests answered while Prometheus hangs; want %d shed at once", n, requests, shed)
		}
	}
	select {
	case a := <-answers:
		t.Errorf("an admitted request was answered while Prometheus hangs: %d %v %s", a.code, a.err, a.body)
	case <-time.After(time.Second):
	}

	if err := prom.Resume(); err != nil {
		t.Fatal(err)
	}
	resumed = true
	for range inflight + queue {
		if a := <-answers; a.err != nil || a.code != 200 {
			t.Errorf("admitted request after Prometheus resumed: %d %v %s", a.code, a.err, a.body)
		}
	}
	if code, body, err := getAt(base, path(requests)); err != nil || code != 200 {
		t.Errorf("after: %d %v %s", code, err, body)
	}
}

// ownPrometheus starts a Prometheus of the test's own, scraping the package's exporter, stopped
// when the test ends, and waits for every pod's elu_utilization.
func ownPrometheus(ctx context.Context, t *testing.T) *promrun.Server {
	t.Helper()
	prom, err := promrun.Start(ctx, promrun.Options{
		WorkDir:        filepath.Join(t.TempDir(), "prometheus"),
		ScrapeInterval: time.Second,
		Targets:        []promrun.Target{{Job: "app", Address: env.exporter.Addr()}},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = prom.Stop() })
	if err := prom.WaitForSeries(ctx, `elu_utilization{namespace="shop"}`, pods); err != nil {
		t.Fatal(err)
	}
	return prom
}
