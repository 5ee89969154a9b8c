// Package openapi holds the OpenAPI definitions of the metrics.k8s.io types (v1 and v1beta1, with the meta/v1
// types they use, e.g. Duration and Quantity, which custom-metrics-apiserver's core set lacks), which
// k8s.io/metrics does not ship. zz_generated.openapi.go is made by kube-openapi's openapi-gen, at the
// version go.mod pins:
//
//	openapi-gen --output-dir resourcemetrics/openapi --output-pkg github.com/promql-adapter/promql-adapter/resourcemetrics/openapi \
//	  --output-file zz_generated.openapi.go --readonly-pkg k8s.io/metrics/pkg/apis/metrics/v1 \
//	  --readonly-pkg k8s.io/metrics/pkg/apis/metrics/v1beta1 --readonly-pkg k8s.io/apimachinery/pkg/apis/meta/v1 --readonly-pkg k8s.io/apimachinery/pkg/api/resource -r /dev/null \
//	  k8s.io/metrics/pkg/apis/metrics/v1 k8s.io/metrics/pkg/apis/metrics/v1beta1 k8s.io/apimachinery/pkg/apis/meta/v1 k8s.io/apimachinery/pkg/api/resource
package openapi
