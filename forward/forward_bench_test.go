package forward

import (
	"context"
	"crypto/tls"
	"io"
	"net/http"
	"net/http/httptest"
	"sort"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// BenchmarkForwardOverhead asks an upstream for a metric directly and through the forwarder (on its
// own loopback TLS server, as promql-adapter sits between kube-apiserver and the upstream), and
// reports each path's p50 and p99. Compare the two in the same run; the difference is the forwarding.
func BenchmarkForwardOverhead(b *testing.B) {
	up := newFakeUpstream(b, []string{"keda_ext"}, nil)
	f, err := New(ours{}, []Spec{{API: External, Name: "keda", URL: up.URL, Insecure: true, Auth: AuthNone}}, nil, 5*time.Second, prometheus.NewRegistry())
	if err != nil {
		b.Fatal(err)
	}
	f.RefreshAll(context.Background())
	front := httptest.NewTLSServer(f.Wrap(inner))
	defer front.Close()
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, MaxIdleConnsPerHost: 4}}
	path := "/apis/external.metrics.k8s.io/v1beta1/namespaces/shop/keda_ext?labelSelector=scaledobject.keda.sh%2Fname%3Dweb"
	for _, c := range []struct{ name, base string }{{"direct", up.URL}, {"forwarded", front.URL}} {
		b.Run(c.name, func(b *testing.B) {
			lat := make([]time.Duration, 0, b.N)
			for b.Loop() {
				start := time.Now()
				resp, err := client.Get(c.base + path)
				if err != nil {
					b.Fatal(err)
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				_ = resp.Body.Close()
				if resp.StatusCode != 200 {
					b.Fatalf("%s: %d", c.name, resp.StatusCode)
				}
				lat = append(lat, time.Since(start))
			}
			sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
		})
	}
}
