package server

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"

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
				for b.Loop() {
					w := httptest.NewRecorder()
					responsewriters.WriteObjectNegotiated(apiserver.Codecs, negotiation.DefaultEndpointRestrictions, cmv1beta2.SchemeGroupVersion, w, req, http.StatusOK, list, false)
					if w.Code != http.StatusOK {
						b.Fatalf("%d: %s", w.Code, w.Body)
					}
					size = w.Body.Len()
				}
				b.ReportMetric(float64(size), "bytes/answer")
			})
		}
	}
}
