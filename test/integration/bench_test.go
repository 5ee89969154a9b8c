package integration

import (
	"context"
	"fmt"
	"sort"
	"testing"
	"time"
)

// BenchmarkPodsVsRawPromQL measures 1,000 sequential pods/* requests over 100 pods through the
// adapter's HTTPS API, interleaved with the same PromQL sent straight to Prometheus, and reports
// both p50/p99 and their ratio. Run it with: make bench.
func BenchmarkPodsVsRawPromQL(b *testing.B) {
	const n = 1000
	path := "/apis/custom.metrics.k8s.io/v1beta2/namespaces/shop/pods/*/elu_utilization"
	query := `avg by (namespace, pod) (avg_over_time(elu_utilization{namespace="shop"}[1m]))`
	for range b.N {
		adapter := make([]time.Duration, 0, n)
		raw := make([]time.Duration, 0, n)
		for i := range n {
			// Vary the order so neither side always runs on a warm connection or cache.
			run := []func(){
				func() {
					start := time.Now()
					code, body, err := get(path)
					if err != nil || code != 200 {
						b.Fatalf("adapter: %d %s %v", code, body, err)
					}
					adapter = append(adapter, time.Since(start))
				},
				func() {
					start := time.Now()
					v, _, _, err := env.prom.API().Query(context.Background(), query, time.Now())
					if err != nil || len(v.String()) == 0 {
						b.Fatalf("prometheus: %v", err)
					}
					raw = append(raw, time.Since(start))
				},
			}
			if i%2 == 1 {
				run[0], run[1] = run[1], run[0]
			}
			run[0]()
			run[1]()
		}
		ap50, ap99 := percentile(adapter, 50), percentile(adapter, 99)
		rp50, rp99 := percentile(raw, 50), percentile(raw, 99)
		b.ReportMetric(ms(ap50), "adapter-p50-ms")
		b.ReportMetric(ms(ap99), "adapter-p99-ms")
		b.ReportMetric(ms(rp50), "promql-p50-ms")
		b.ReportMetric(ms(rp99), "promql-p99-ms")
		b.ReportMetric(float64(ap50)/float64(rp50), "p50-ratio")
		b.ReportMetric(float64(ap99)/float64(rp99), "p99-ratio")
		fmt.Printf("pods/* over %d pods, %d sequential requests: adapter p50 %v p99 %v; raw PromQL p50 %v p99 %v; ratio p50 %.2f p99 %.2f\n",
			pods, n, ap50, ap99, rp50, rp99, float64(ap50)/float64(rp50), float64(ap99)/float64(rp99))
	}
}

func percentile(d []time.Duration, p int) time.Duration {
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[(len(s)*p+99)/100-1]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
