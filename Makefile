# promql-adapter. The two commands a newcomer needs: `make demo` and `make test`. docs/development.md describes the
# targets and the two test tiers (make test, make test-peers) with what each costs.
SHELL := /bin/bash
CACHE       ?= $(CURDIR)/.cache
K8S_VERSION ?= v1.37.2
CLUSTER_BIN := $(CACHE)/cluster/k8s-$(K8S_VERSION)/bin
GO_PKGS     := ./...
# hack/image's tests build the image: under -race gzipping its layers (~150 MB) alone outlasts go test's 10 minutes, so
# make unit runs them without -race, for this machine's platform (its static build is the one test/release's make
# release compiles too); make image-test (in make test-peers) builds both platforms.
RACE_PKGS    = $(shell go list ./... | grep -v '/hack/image$$')
E2E_PKGS    := ./internal/localcluster/ $(wildcard ./test/e2e/) $(wildcard ./test/release/) $(wildcard ./test/benchresource/) $(wildcard ./test/bench/)
FUZZTIME    ?= 20s
PEERS_FUZZTIME ?= 2m
export GOFLAGS := -buildvcs=false
HELM_VERSION := v4.3.2
HELM        := $(CACHE)/helm/$(HELM_VERSION)/helm
KEDA_BIN    := $(CACHE)/keda/v2.21.0
VERSION     ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT      ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
COMMIT_TIME ?= $(shell git log -1 --format=%ct 2>/dev/null || echo 0)
LDFLAGS     := -X github.com/promql-adapter/promql-adapter/version.Version=$(VERSION) -X github.com/promql-adapter/promql-adapter/version.Commit=$(COMMIT)
IMAGE_DIR   := bin/image

.PHONY: release release-build
.PHONY: all build test test-peers e2e-peers deps cluster-bins lint unit fuzz e2e e2e-versions bench bench-wake bench-activator bench-scale bench-resource soak demo clean helm keda image chart-test image-test deploy-render

all: build

build:
	go build -ldflags "$(LDFLAGS)" -o bin/ ./cmd/promql-adapter ./cmd/promql-wake ./cmd/promql-activator

## keda: KEDA's operator and metrics server built from its Go module into $(CACHE)/keda, once (cold: long).
keda:
	bash hack/keda/build.sh $(CACHE)/keda

## image: the OCI image index (linux/amd64, linux/arm64) as an OCI layout and archive in $(IMAGE_DIR), built in Go; no Docker.
## Its CA bundle comes from Debian's ca-certificates pinned in hack/image/ca-certificates.lock (the .deb kept in $(CACHE)/debs).
image:
	go run ./hack/image --out $(IMAGE_DIR) --version $(VERSION) --commit $(COMMIT) --created $(COMMIT_TIME) --deb-cache $(CACHE)/debs

## release-build: the release in $(RELEASE_OUT) (docs/release.md): image index, SBOMs, chart naming $(REGISTRY)'s image,
## manifest, notes from CHANGELOG.md, SHA256SUMS. release: the same, then the index and the chart pushed to REGISTRY.
## Helm is built into $(CACHE) unless HELM=... is given; RELEASE_FLAGS passes more (e.g. --platforms=linux/amd64).
REGISTRY      ?=
RELEASE_OUT   ?= bin/release
RELEASE_FLAGS ?=
RELEASE_HELM  := $(if $(filter command line,$(origin HELM)),,helm)
release-build: $(RELEASE_HELM)
	go run ./hack/release --out $(RELEASE_OUT) --registry $(or $(REGISTRY),ghcr.io/promql-adapter) --helm $(HELM) $(RELEASE_FLAGS)
$(if $(filter release,$(MAKECMDGOALS)),$(if $(REGISTRY),,$(error make release needs REGISTRY=host[:port]/path: the image goes to REGISTRY/promql-adapter, the chart to oci://REGISTRY/charts)))
release: $(RELEASE_HELM)
	go run ./hack/release --push --out $(RELEASE_OUT) --registry $(REGISTRY) --helm $(HELM) $(RELEASE_FLAGS)

## helm: Helm built from its Go module into $(CACHE)/helm, once.
helm:
	bash hack/helm/build.sh $(CACHE)/helm

## chart-test: the chart (helm lint, golden renderings, the values schema, deploy/ as the chart's rendering); make unit runs it too.
chart-test: helm
	PROMQL_ADAPTER_HELM=$(HELM) go test -count=1 -timeout 30m ./test/chart/

## image-test: the image built twice (same digest), both platforms, config, labels, the CA bundle, the binaries' --version
## from the layer; make test-peers runs it. Not in make test: its static binaries (-trimpath, CGO_ENABLED=0) compile every
## dependency again, for each platform.
image-test:
	PROMQL_ADAPTER_DEB_CACHE=$(CACHE)/debs GOTEST_LOG=$(CACHE)/test-logs/image-test.log bash hack/gotest.sh -tags install -count=1 -timeout 120m -run '^TestImage$$' ./hack/image/

## deploy-render: deploy/ re-rendered from the chart (hack/helm/deploy-values.yaml); deploy/namespace.yaml, kustomization.yaml, certs.sh and local/ stay as written.
deploy-render: helm
	bash hack/helm/render-deploy.sh $(HELM) deploy

## test: the first tier, the one to run before a change: installs what it needs (Debian packages; the control plane and
## Helm built from Go modules, once), then lint, unit and integration tests (real Prometheus; the fuzz targets run
## their seed corpora there), end-to-end (real control plane, Helm). No KEDA, no image build, no fuzzing past the seeds.
test: deps lint unit e2e

## test-peers: the second tier (.ci/run runs it after make test): the peers built from source and the long runs.
## The e2e tests that need KEDA (build tag peers), the full multi-arch image (make image-test), and fuzzing for
## PEERS_FUZZTIME per target. KEDA's binaries are built once into $(CACHE)/keda (cold: long).
test-peers: FUZZTIME = $(PEERS_FUZZTIME)
test-peers: deps e2e-peers image-test fuzz

## deps: Debian's prometheus, prometheus-alertmanager and victoria-metrics, when missing.
deps:
	bash hack/install-deps.sh

## cluster-bins: etcd, kube-apiserver, kube-controller-manager, kubectl and kwok built from Go modules, cached under $(CACHE).
cluster-bins:
	K8S_VERSION=$(K8S_VERSION:v%=%) bash hack/cluster/build.sh $(CACHE)/cluster

## lint: gofmt, then go vet once over every file of every package: no file is excluded by the tags e2e, peers or
## install (none says !e2e), so one pass with all three covers what go vet and go vet -tags e2e covered in two.
VET_TAGS := e2e,peers,install
lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	go vet -tags $(VET_TAGS) $(GO_PKGS)

unit: helm
	PROMQL_ADAPTER_HELM=$(HELM) GOTEST_LOG=$(CACHE)/test-logs/unit.log bash hack/gotest.sh -race -count=1 $(RACE_PKGS)
	PROMQL_ADAPTER_DEB_CACHE=$(CACHE)/debs GOTEST_LOG=$(CACHE)/test-logs/image.log bash hack/gotest.sh -count=1 -timeout 20m ./hack/image/

## fuzz (make test-peers, PEERS_FUZZTIME each; alone FUZZTIME each): label values from requests never change a query's structure; hostile requests to both rule formats
## (FuzzProvider) get 400 or an unchanged query. hack/fuzz.sh repeats a run that ends in go1.26's coordinator race
## (a bare "context deadline exceeded" with no failing input, golang/go#75804) and fails on any real finding.
fuzz:
	bash hack/fuzz.sh ./naming/ FuzzBuild $(FUZZTIME)
	bash hack/fuzz.sh ./naming/pacompat/ FuzzBuild $(FUZZTIME)
	bash hack/fuzz.sh ./adapter/ FuzzDecode $(FUZZTIME)
	bash hack/fuzz.sh ./adapter/ FuzzProvider $(FUZZTIME)

## e2e: one package at a time (-p 1): the bench packages' short forms put 20 clients of load on their own control
## planes, and on 2 cores that load would otherwise run beside the timing-sensitive e2e tests.
## Without the tag peers, so KEDA's tests are not even compiled and KEDA is neither built nor started.
E2E_LOG ?= $(CACHE)/test-logs/e2e.log
e2e: cluster-bins helm
	PROMQL_ADAPTER_CLUSTER_BIN=$(CLUSTER_BIN) PROMQL_ADAPTER_HELM=$(HELM) GOTEST_LOG=$(E2E_LOG) \
		bash hack/gotest.sh -tags e2e -count=1 -p 1 -timeout 30m $(E2E_PKGS)

## e2e-peers: the e2e tests that need a peer built from source (files with the build tag peers: KEDA's operator and
## metrics server, hack/keda), on their own stack. E2E_PEERS_RUN picks them out of the package (make test ran the
## rest); hack/gotest.sh fails if none ran or one skipped, and a KEDA test without KEDA's binaries fails.
E2E_PEERS_RUN := ^TestE2EKeda
E2E_PEERS_LOG ?= $(CACHE)/test-logs/e2e-peers.log
e2e-peers: cluster-bins helm keda
	PROMQL_ADAPTER_CLUSTER_BIN=$(CLUSTER_BIN) PROMQL_ADAPTER_HELM=$(HELM) PROMQL_ADAPTER_KEDA_BIN=$(KEDA_BIN) GOTEST_LOG=$(E2E_PEERS_LOG) \
		bash hack/gotest.sh -tags e2e,peers -count=1 -timeout 30m -run '$(E2E_PEERS_RUN)' ./test/e2e/

## e2e-versions: make e2e and make e2e-peers (KEDA) against each supported Kubernetes minor (K8S_VERSIONS), each control
## plane built once into $(CACHE)/cluster/k8s-<version>/; every version runs even if one fails, and the summary names the
## failed ones. Outside CI and both tiers.
K8S_VERSIONS ?= v1.35.4 v1.36.3 v1.37.2
e2e-versions:
	@failed=; for v in $(K8S_VERSIONS); do echo "== make e2e e2e-peers K8S_VERSION=$$v"; \
		$(MAKE) -k e2e e2e-peers K8S_VERSION=$$v E2E_LOG=$(CACHE)/test-logs/e2e-$$v.log \
			E2E_PEERS_LOG=$(CACHE)/test-logs/e2e-peers-$$v.log || failed="$$failed $$v"; done; \
		if [ -n "$$failed" ]; then echo "e2e failed on:$$failed"; exit 1; fi; echo "e2e passed on $(K8S_VERSIONS)"

## bench: the adapter's own cost per request (Go benchmarks, no Prometheus), then its latency next to
## the same PromQL sent straight to a real Prometheus.
bench: deps
	go test ./naming/ ./adapter/ -run '^$$' -bench . -benchmem -count 1
	go test ./test/integration/ -run '^$$' -bench . -benchtime 1x -count 1

## bench-wake: wake latency, push and signal, p50/p99 over 100 wakes each (about 6 minutes); the wake race against
## a real KEDA (pollingInterval 30 s and 1 s) and promql-wake, 30 trials (PROMQL_ADAPTER_WAKE_RACE_N) and idle → zero
## on the defaults (about 25 minutes); KEDA's metric through promql-adapter vs straight from KEDA, 200 GETs each.
bench-wake: deps cluster-bins keda
	PROMQL_ADAPTER_CLUSTER_BIN=$(CLUSTER_BIN) PROMQL_ADAPTER_KEDA_BIN=$(KEDA_BIN) go test -tags e2e,peers ./test/e2e/ -run '^$$' \
		-bench 'WakeLatency|WakeRace|KedaForwardLatency' -benchtime 1x -count 1 -timeout 90m

## bench-activator: on the local control plane with the Node.js pod on its podnet address: cold start (arrival →
## first byte) over 100 cold starts at readiness delay 0 and 1 s, split into the activator's own part and the
## cluster's; the warm path at c=20 through the activator vs straight to the pod address, same run (about 15
## minutes). make test runs its short form (3 cold starts). Then the cluster-free Go benchmarks (httptest upstream).
bench-activator: deps cluster-bins
	PROMQL_ADAPTER_CLUSTER_BIN=$(CLUSTER_BIN) PROMQL_ADAPTER_BENCH_ACTIVATOR_COLD=100 GOTEST_LOG=$(CACHE)/test-logs/bench-activator.log \
		bash hack/gotest.sh -tags e2e -count=1 -timeout 90m -run '^TestE2EActivatorBench$$' ./test/e2e/
	@grep -o 'RESULT |.*' $(CACHE)/test-logs/bench-activator.log | sed 's/^RESULT //'
	go test ./activator/ -run '^$$' -bench . -benchtime 100x -count 1

## soak: the fault suite with its 10-minute soak (50 HPAs at a 2 s sync; make test soaks 60 s), then its results table.
soak: deps cluster-bins
	PROMQL_ADAPTER_CLUSTER_BIN=$(CLUSTER_BIN) PROMQL_ADAPTER_SOAK=10m GOTEST_LOG=$(CACHE)/test-logs/soak.log \
		bash hack/gotest.sh -tags e2e -count=1 -timeout 40m -run '^TestFaults$$' ./test/e2e/
	@grep -o 'RESULT |.*' $(CACHE)/test-logs/soak.log

## bench-scale: the adapter next to its own PromQL and prometheus-adapter's PromQL, raw, at 10k, 100k and 1M
## series and 10/100/1,000 pods (BENCH_SCALE_SIZES=10000 for one size); one table per size (about 30 minutes).
bench-scale: deps cluster-bins
	PROMQL_ADAPTER_CLUSTER_BIN=$(CLUSTER_BIN) go test -tags e2e ./test/bench/ -run '^$$' -bench 'Scale|Discovery' -benchtime 1x -count 1 -timeout 120m

## bench-resource: GET metrics.k8s.io/v1/namespaces/N/pods over 1,000 kwok pods (BENCH_RESOURCE_PODS), straight to the
## adapter and through kube-apiserver, next to the same cpu and memory PromQL sent straight to Prometheus in the same run,
## with the adapter's CPU per request, for native resources: and prometheus-adapter resourceRules (about 10 minutes).
bench-resource: deps cluster-bins
	PROMQL_ADAPTER_CLUSTER_BIN=$(CLUSTER_BIN) go test -tags e2e ./test/benchresource/ -run '^$$' -bench ResourceMetrics -benchtime 1x -count 1 -timeout 60m

demo: deps cluster-bins
	go run ./hack/demo --cache $(CACHE) --bin-dir $(CLUSTER_BIN)

clean:
	rm -rf bin
