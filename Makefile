# promql-adapter. The two commands a newcomer needs: `make demo` and `make test`.
SHELL := /bin/bash
CACHE       ?= $(CURDIR)/.cache
K8S_VERSION ?= v1.37.2
CLUSTER_BIN := $(CACHE)/cluster/k8s-$(K8S_VERSION)/bin
GO_PKGS     := ./...
E2E_PKGS    := ./internal/localcluster/ $(wildcard ./test/e2e/)
FUZZTIME    ?= 20s
export GOFLAGS := -buildvcs=false

.PHONY: all build test deps cluster-bins lint unit fuzz e2e bench bench-wake demo clean

all: build

build:
	go build -o bin/promql-adapter ./cmd/promql-adapter

## test: installs what it needs, then lint, unit and integration tests (real Prometheus), fuzzing, end-to-end (real control plane).
test: deps lint unit fuzz e2e

## deps: Debian's prometheus, prometheus-alertmanager and victoria-metrics, when missing.
deps:
	bash hack/install-deps.sh

## cluster-bins: etcd, kube-apiserver, kube-controller-manager, kubectl and kwok built from Go modules, cached under $(CACHE).
cluster-bins:
	bash hack/cluster/build.sh $(CACHE)/cluster

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	go vet $(GO_PKGS)
	go vet -tags e2e $(GO_PKGS)

unit:
	GOTEST_LOG=$(CACHE)/test-logs/unit.log bash hack/gotest.sh -race -count=1 $(GO_PKGS)

## fuzz: label values from requests never change a query's structure.
fuzz:
	go test ./naming/ -run '^$$' -fuzz FuzzBuild -fuzztime $(FUZZTIME)
	go test ./naming/pacompat/ -run '^$$' -fuzz FuzzBuild -fuzztime $(FUZZTIME)
	go test ./adapter/ -run '^$$' -fuzz FuzzProvider -fuzztime $(FUZZTIME)

e2e: cluster-bins
	PROMQL_ADAPTER_CLUSTER_BIN=$(CLUSTER_BIN) GOTEST_LOG=$(CACHE)/test-logs/e2e.log \
		bash hack/gotest.sh -tags e2e -count=1 -timeout 30m $(E2E_PKGS)

## bench: the adapter's own cost per request (Go benchmarks, no Prometheus), then its latency next to
## the same PromQL sent straight to a real Prometheus.
bench: deps
	go test ./naming/ ./adapter/ -run '^$$' -bench . -benchmem -count 1
	go test ./test/integration/ -run '^$$' -bench . -benchtime 1x -count 1

## bench-wake: wake latency, push and signal, p50/p99 over 100 wakes each (about 6 minutes).
bench-wake: deps cluster-bins
	PROMQL_ADAPTER_CLUSTER_BIN=$(CLUSTER_BIN) go test -tags e2e ./test/e2e/ -run '^$$' -bench WakeLatency -benchtime 1x -count 1 -timeout 30m

demo: deps cluster-bins
	go run ./hack/demo --cache $(CACHE) --bin-dir $(CLUSTER_BIN)

clean:
	rm -rf bin
