//go:build e2e

package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"runtime"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/promql-adapter/promql-adapter/adapter"
	"github.com/promql-adapter/promql-adapter/internal/benchrig"
	"github.com/promql-adapter/promql-adapter/internal/fakeexporter"
	"github.com/promql-adapter/promql-adapter/internal/promrun"
)

// BenchmarkDiscovery lists what the prometheus-adapter rule of bench-scale needs (names and label
// names of http_requests_total{namespace!="",pod!=""}) from a real Prometheus scraping the synthetic
// exporter (BENCH_DISCOVERY_SERIES, default 1M), through the label APIs as the adapter does, and
// through /api/v1/series as prometheus-adapter does, and reports the time and the bytes each
// allocates in the client. It needs no control plane.
func BenchmarkDiscovery(b *testing.B) {
	series := 1_000_000
	if v := os.Getenv("BENCH_DISCOVERY_SERIES"); v != "" {
		var err error
		if series, err = strconv.Atoi(v); err != nil {
			b.Fatal(err)
		}
	}
	syn := fakeexporter.SyntheticFor(series)
	addr, stop, err := fakeexporter.StartSynthetic(syn)
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = stop() }()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	prom, err := promrun.Start(ctx, promrun.Options{WorkDir: b.TempDir(), ScrapeInterval: 30 * time.Second,
		Targets: []promrun.Target{{Job: "synthetic", Address: addr}}})
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = prom.Stop() }()
	begin := time.Now()
	if err := prom.WaitForSeries(ctx, fmt.Sprintf(`count(http_requests_total) >= %d`, syn.Namespaces*syn.Pods*syn.Paths), 1); err != nil {
		b.Fatal(err)
	}
	b.Logf("%d series scraped in %s", syn.Series(), time.Since(begin).Round(time.Second))
	c, err := adapter.NewPromClient(adapter.PrometheusConfig{URL: prom.URL(), DiscoveryTimeout: 5 * time.Minute}, adapter.NewMetrics(prometheus.NewRegistry()))
	if err != nil {
		b.Fatal(err)
	}
	const sel = `http_requests_total{namespace!="",pod!=""}`
	measure := func(what string, f func() (int, error)) {
		var m0, m1 runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&m0)
		start := time.Now()
		n, err := f()
		d := time.Since(start)
		runtime.ReadMemStats(&m1)
		if err != nil {
			b.Fatalf("%s: %v", what, err)
		}
		fmt.Printf("discovery at %d series, %s: %.2f s, %d results, %.1f MiB allocated in the client (load %s)\n",
			syn.Series(), what, d.Seconds(), n, float64(m1.TotalAlloc-m0.TotalAlloc)/(1<<20), benchrig.Loadavg())
	}
	for range b.N {
		measure("label values + labels APIs (promql-adapter)", func() (int, error) {
			s, err := c.Series(ctx, sel, time.Now().Add(-10*time.Minute))
			if err == nil && (len(s) != 1 || !slices.Contains(s[0].Labels, "pod") || !slices.Contains(s[0].Labels, "namespace")) {
				err = fmt.Errorf("listed %v", s)
			}
			return len(s), err
		})
		measure("/api/v1/series (prometheus-adapter)", func() (int, error) {
			hc := &http.Client{Timeout: 5 * time.Minute}
			resp, err := hc.PostForm(prom.URL()+"/api/v1/series", url.Values{"match[]": {sel},
				"start": {strconv.FormatInt(time.Now().Add(-10*time.Minute).Unix(), 10)}})
			if err != nil {
				return 0, err
			}
			defer resp.Body.Close()
			var out struct {
				Data []map[string]string `json:"data"`
			}
			err = json.NewDecoder(resp.Body).Decode(&out)
			return len(out.Data), err
		})
	}
}
