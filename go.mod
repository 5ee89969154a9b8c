module github.com/promql-adapter/promql-adapter

go 1.26.8

require (
	github.com/go-logr/logr v1.4.4 // indirect
	github.com/prometheus/client_golang v1.25.0 // indirect
	github.com/prometheus/common v0.73.1 // indirect
	github.com/prometheus/prometheus v0.316.0 // indirect
	go.yaml.in/yaml/v2 v2.4.4 // indirect
	golang.org/x/sync v0.24.0 // indirect
	k8s.io/api v0.37.1 // indirect
	k8s.io/apimachinery v0.37.1 // indirect
	k8s.io/apiserver v0.37.1 // indirect
	k8s.io/client-go v0.37.1 // indirect
	k8s.io/component-base v0.37.1 // indirect
	k8s.io/klog/v2 v2.140.0 // indirect
	k8s.io/metrics v0.37.1 // indirect
	sigs.k8s.io/custom-metrics-apiserver v1.37.0 // indirect
	sigs.k8s.io/yaml v1.6.0 // indirect
)
