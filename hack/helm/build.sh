#!/usr/bin/env bash
# Builds Helm from its Go module (helm.sh/helm/v4), once, into a cache directory:
#
#   hack/helm/build.sh [CACHE_DIR]     # default .cache/helm
#
# Output: CACHE_DIR/v${HELM_VERSION}/helm. A present binary is kept. The wrapper
# module that pins the version is hack/helm/tools (go.mod/go.sum committed); to
# move to another version, change HELM_VERSION and run with REGEN=1.
set -euo pipefail

HELM_VERSION=4.3.2
WRAPPER_GO=1.26.0

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
TOOLS_DIR=$SCRIPT_DIR/tools
CACHE_DIR=${1:-.cache/helm}
mkdir -p "$CACHE_DIR"
CACHE_DIR=$(cd "$CACHE_DIR" && pwd)
OUT=$CACHE_DIR/v$HELM_VERSION/helm

if [[ -x $OUT && ${REGEN:-0} != 1 ]]; then
	exit 0
fi
export GOTOOLCHAIN=local
export GOFLAGS="${GOFLAGS:-} -buildvcs=false"
if [[ ! -f $TOOLS_DIR/go.mod || ${REGEN:-0} == 1 ]]; then
	mkdir -p "$TOOLS_DIR"
	printf 'module local/helmbin\n\ngo %s\n' "$WRAPPER_GO" >"$TOOLS_DIR/go.mod"
	rm -f "$TOOLS_DIR/go.sum"
	(cd "$TOOLS_DIR" && go get -tool "helm.sh/helm/v4/cmd/helm@v$HELM_VERSION" && go mod tidy)
fi
start=$(date +%s)
echo "[helm/build.sh] building helm v$HELM_VERSION into $OUT (cold: a few minutes on 2 cores)"
mkdir -p "$(dirname "$OUT")"
p=helm.sh/helm/v4/internal/version
(cd "$TOOLS_DIR" && go mod download && nice -n 10 go build -trimpath \
	-ldflags="-s -w -X $p.version=v$HELM_VERSION -X $p.gitTreeState=clean" -o "$OUT.tmp" helm.sh/helm/v4/cmd/helm)
mv "$OUT.tmp" "$OUT"
echo "[helm/build.sh] built in $(($(date +%s) - start)) s"
