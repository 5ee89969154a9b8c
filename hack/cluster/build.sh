#!/usr/bin/env bash
# Builds the binaries of the local control plane used by internal/localcluster
# (kube-apiserver, kube-controller-manager, kubectl, etcd, etcdctl, kwok) from
# the Go module proxy, once, into a cache directory:
#
#   hack/cluster/build.sh [CACHE_DIR]     # default .cache/cluster
#
# Output: CACHE_DIR/k8s-v${K8S_VERSION}/bin/. A component whose binaries and
# stamp are present is skipped. The wrapper modules that pin the versions live
# in hack/cluster/tools/{k8s,etcd,kwok}; their go.mod/go.sum are committed. If a
# wrapper's go.mod is missing (or REGEN=1), it is generated from scratch.
set -euo pipefail

PINNED_K8S_VERSION=1.37.2 # the version whose wrapper module is committed (hack/cluster/tools/k8s)
# k8s.io/kubernetes; staging modules are pinned to v0.${K8S_VERSION#1.}. Another version
# (K8S_VERSION=1.35.4 hack/cluster/build.sh, or make e2e K8S_VERSION=v1.35.4) gets a wrapper module
# generated into its own cache directory; each version's binaries stay cached side by side.
K8S_VERSION=${K8S_VERSION:-$PINNED_K8S_VERSION}
ETCD_VERSION=3.6.16
KWOK_VERSION=0.8.0
WRAPPER_GO=1.26.0 # go directive of the wrapper modules

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
TOOLS_DIR=$SCRIPT_DIR/tools
CACHE_DIR=${1:-.cache/cluster}
mkdir -p "$CACHE_DIR"
CACHE_DIR=$(cd "$CACHE_DIR" && pwd)
BIN_DIR=$CACHE_DIR/k8s-v$K8S_VERSION/bin
K8S_TOOLS_DIR=$TOOLS_DIR/k8s
if [[ $K8S_VERSION != "$PINNED_K8S_VERSION" ]]; then
	K8S_TOOLS_DIR=$CACHE_DIR/k8s-v$K8S_VERSION/wrapper
fi
mkdir -p "$BIN_DIR"

export GOTOOLCHAIN=local
export GOFLAGS="${GOFLAGS:-} -buildvcs=false"
NICE=(nice -n 10)

log() { printf '[build.sh %s] %s\n' "$(date +%H:%M:%S)" "$*"; }

# component_done NAME BIN... : true if the stamp and every binary exist.
component_done() {
	local name=$1
	shift
	[[ -f $BIN_DIR/.stamp-$name ]] || return 1
	local b
	for b in "$@"; do
		[[ -x $BIN_DIR/$b ]] || return 1
	done
}

# timed NAME CMD... : runs CMD, prints the elapsed seconds and writes the stamp.
timed() {
	local name=$1
	shift
	local start end
	start=$(date +%s)
	"$@"
	end=$(date +%s)
	log "$name built in $((end - start)) s"
	printf '%s built %s in %d s\n' "$name" "$(date -u +%FT%TZ)" "$((end - start))" >"$BIN_DIR/.stamp-$name"
}

# ---------------------------------------------------------------- kubernetes
gen_k8s_wrapper() {
	local dir=$K8S_TOOLS_DIR minor=${K8S_VERSION#*.}
	minor=${minor%%.*}
	local staging=v0.$minor.${K8S_VERSION##*.}
	log "generating $dir/go.mod (k8s.io/kubernetes v$K8S_VERSION, staging $staging)"
	mkdir -p "$dir"
	local kgomod
	kgomod=$(go mod download -json "k8s.io/kubernetes@v$K8S_VERSION" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p')
	[[ -f $kgomod ]] || {
		echo "cannot find go.mod of k8s.io/kubernetes@v$K8S_VERSION" >&2
		exit 1
	}
	{
		printf 'module local/k8sbins\n\ngo %s\n\nrequire k8s.io/kubernetes v%s\n\nreplace (\n' "$WRAPPER_GO" "$K8S_VERSION"
		grep -E '^[[:space:]]*k8s\.io/[^[:space:]]+ => \./staging/' "$kgomod" |
			awk -v v="$staging" '{printf "\t%s => %s %s\n", $1, $1, v}' | sort
		printf ')\n\ntool (\n\tk8s.io/kubernetes/cmd/kube-apiserver\n\tk8s.io/kubernetes/cmd/kube-controller-manager\n\tk8s.io/kubernetes/cmd/kubectl\n)\n'
	} >"$dir/go.mod"
	log "$(grep -c '=> k8s.io/' "$dir/go.mod") staging replaces"
	rm -f "$dir/go.sum"
	(cd "$dir" && go mod tidy)
}

build_k8s() {
	local dir=$K8S_TOOLS_DIR
	[[ -f $dir/go.mod && ${REGEN:-0} != 1 ]] || gen_k8s_wrapper
	local minor=${K8S_VERSION#*.}
	minor=${minor%%.*}
	local ld="-s -w" p
	for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
		ld="$ld -X $p.gitVersion=v$K8S_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$minor -X $p.gitTreeState=clean"
		ld="$ld -X $p.gitCommit=0000000000000000000000000000000000000000 -X $p.buildDate=2026-01-01T00:00:00Z"
	done
	log "building kube-apiserver, kube-controller-manager, kubectl v$K8S_VERSION (cold: ~10 min on 2 cores)"
	(cd "$dir" && go mod download && "${NICE[@]}" go build -trimpath -ldflags="$ld" -o "$BIN_DIR/" \
		k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager k8s.io/kubernetes/cmd/kubectl)
}

# ---------------------------------------------------------------------- etcd
gen_etcd_wrapper() {
	local dir=$TOOLS_DIR/etcd
	log "generating $dir/go.mod (etcd v$ETCD_VERSION)"
	mkdir -p "$dir"
	printf 'module local/etcdbins\n\ngo %s\n' "$WRAPPER_GO" >"$dir/go.mod"
	rm -f "$dir/go.sum"
	(cd "$dir" && go get -tool "go.etcd.io/etcd/server/v3@v$ETCD_VERSION" "go.etcd.io/etcd/etcdctl/v3@v$ETCD_VERSION" && go mod tidy)
}

build_etcd() {
	local dir=$TOOLS_DIR/etcd
	[[ -f $dir/go.mod && ${REGEN:-0} != 1 ]] || gen_etcd_wrapper
	log "building etcd, etcdctl v$ETCD_VERSION"
	# The server's main package is go.etcd.io/etcd/server/v3, so -o must name the binary.
	(cd "$dir" && go mod download &&
		"${NICE[@]}" go build -trimpath -ldflags="-s -w" -o "$BIN_DIR/etcd" go.etcd.io/etcd/server/v3 &&
		"${NICE[@]}" go build -trimpath -ldflags="-s -w" -o "$BIN_DIR/etcdctl" go.etcd.io/etcd/etcdctl/v3)
}

# ---------------------------------------------------------------------- kwok
gen_kwok_wrapper() {
	local dir=$TOOLS_DIR/kwok
	log "generating $dir/go.mod (kwok v$KWOK_VERSION)"
	mkdir -p "$dir"
	printf 'module local/kwokbins\n\ngo %s\n' "$WRAPPER_GO" >"$dir/go.mod"
	rm -f "$dir/go.sum"
	(cd "$dir" && go get -tool "sigs.k8s.io/kwok/cmd/kwok@v$KWOK_VERSION" && go mod tidy)
}

build_kwok() {
	local dir=$TOOLS_DIR/kwok
	[[ -f $dir/go.mod && ${REGEN:-0} != 1 ]] || gen_kwok_wrapper
	log "building kwok v$KWOK_VERSION"
	(cd "$dir" && go mod download &&
		"${NICE[@]}" go build -trimpath -ldflags="-s -w -X sigs.k8s.io/kwok/pkg/consts.Version=v$KWOK_VERSION" \
			-o "$BIN_DIR/kwok" sigs.k8s.io/kwok/cmd/kwok)
}

# kwok has no built-in stages (it fails with "no stages found"); the vendored
# file is the concatenation of kwok's own fast node/pod stages.
gen_kwok_stages() {
	local out=$SCRIPT_DIR/kwok-stages.yaml kdir f first=1
	kdir=$(cd "$TOOLS_DIR/kwok" && go mod download -json "sigs.k8s.io/kwok@v$KWOK_VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p')
	log "generating $out from $kdir"
	{
		printf '# Generated by hack/cluster/build.sh from sigs.k8s.io/kwok@v%s kustomize/stage/. Do not edit.\n' "$KWOK_VERSION"
		for f in node/fast/node-initialize.yaml node/heartbeat-with-lease/node-heartbeat-with-lease.yaml \
			pod/fast/pod-ready.yaml pod/fast/pod-complete.yaml pod/fast/pod-delete.yaml; do
			[[ $first == 1 ]] || printf -- '---\n'
			first=0
			grep -v '^---[[:space:]]*$' "$kdir/kustomize/stage/$f"
		done
	} >"$out"
}

total_start=$(date +%s)
log "cache: $BIN_DIR"

if component_done etcd etcd etcdctl; then log "etcd: present, skipped"; else timed etcd build_etcd; fi
if component_done kwok kwok; then log "kwok: present, skipped"; else timed kwok build_kwok; fi
if [[ ! -f $SCRIPT_DIR/kwok-stages.yaml || ${REGEN:-0} == 1 ]]; then gen_kwok_stages; fi
cp "$SCRIPT_DIR/kwok-stages.yaml" "$BIN_DIR/kwok-stages.yaml"
if component_done k8s kube-apiserver kube-controller-manager kubectl; then log "k8s: present, skipped"; else timed k8s build_k8s; fi

log "done in $(($(date +%s) - total_start)) s; binaries in $BIN_DIR:"
ls -l "$BIN_DIR"
