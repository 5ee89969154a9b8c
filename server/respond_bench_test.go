package server

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"syscall"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apiserver/pkg/endpoints/handlers/negotiation"
	"k8s.io/apiserver/pkg/endpoints/handlers/responsewriters"
	"k8s.io/apiserver/pkg/features"
	utilfeature "k8s.io/apiserver/pkg/util/feature"
	featuregatetesting "k8s.io/component-base/featuregate/testing"
	"k8s.io/metrics/pkg/apis/custom_metrics"
	cmv1beta2 "k8s.io/metrics/pkg/apis/custom_metrics/v1beta2"
	"sigs.k8s.io/custom-metrics-apiserver/pkg/apiserver"
)

// BenchmarkRespond is the cost of writing a pods/* answer the way the adapter's API server writes it
// (k8s.io/apiserver's WriteObjectNegotiated), to a client that accepts gzip as client-go and
// kube-apiserver's proxy do, with k8s.io/apiserver's response compression (the APIResponseCompression
// feature gate, on by default: answers past 128 KiB are gzipped with pooled writers) off and on.
func BenchmarkRespond(b *testing.B) {
	for _, n := range []int{10, 1000} {
		list := &custom_metrics.MetricValueList{}
		for i := range n {
			list.Items = append(list.Items, custom_metrics.MetricValue{
				DescribedObject: custom_metrics.ObjectReference{Kind: "Pod", APIVersion: "/v1", Namespace: "bench-0", Name: fmt.Sprintf("web-%d", i)},
				Metric:          custom_metrics.MetricIdentifier{Name: "bench_gauge", Selector: &metav1.LabelSelector{}},
				Timestamp:       metav1.Now(),
				Value:           *resource.NewMilliQuantity(int64(i%100)*10, resource.DecimalSI),
			})
		}
		for _, gz := range []bool{false, true} {
			b.Run(fmt.Sprintf("pods=%d/compression=%v", n, gz), func(b *testing.B) {
				featuregatetesting.SetFeatureGateDuringTest(b, utilfeature.DefaultFeatureGate, features.APIResponseCompression, gz)
				req := httptest.NewRequest(http.MethodGet, "/apis/custom.metrics.k8s.io/v1beta2/namespaces/bench-0/pods/*/bench_gauge", nil)
				req.Header.Set("Accept-Encoding", "gzip")
				b.ReportAllocs()
				var size int
				cpu0 := cpuTime(b)
				for b.Loop() {
					w := &discardWriter{header: http.Header{}}
					responsewriters.WriteObjectNegotiated(apiserver.Codecs, negotiation.DefaultEndpointRestrictions, cmv1beta2.SchemeGroupVersion, w, req, http.StatusOK, list, false)
					if w.code != http.StatusOK || (w.header.Get("Content-Encoding") == "gzip") != (gz && n == 1000) {
						b.Fatalf("%d, Content-Encoding %q", w.code, w.header.Get("Content-Encoding"))
					}
					size = w.n
				}
				b.ReportMetric(float64(size), "bytes/answer")
				// CPU time, not wall time: on a shared machine it is the steadier figure.
				b.ReportMetric(float64(cpuTime(b)-cpu0)/float64(b.N), "cpu-ns/op")
			})
		}
	}
}

// discardWriter is a connection's ResponseWriter that keeps nothing but the byte count, so the
// benchmark counts the server's work, not a recorder's buffer.
type discardWriter struct {
	header http.Header
	code   int
	n      int
}

func (w *discardWriter) Header() http.Header         { return w.header }
func (w *discardWriter) WriteHeader(code int)        { w.code = code }
func (w *discardWriter) Write(p []byte) (int, error) { w.n += len(p); return len(p), nil }

// cpuTime is the process's user+system CPU time.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
