#!/usr/bin/env bash
# Builds KEDA's operator and metrics API server from its Go module (github.com/kedacore/keda/v2),
# once, into a cache directory:
#
#   hack/keda/build.sh [CACHE_DIR]     # default .cache/keda
#
# Output: CACHE_DIR/v${KEDA_VERSION}/keda (cmd/operator) and keda-adapter (cmd/adapter). Present
# binaries are kept. The wrapper module that pins the version is hack/keda/tools (go.mod/go.sum
# committed); it carries KEDA's own replace and exclude directives (a dependency's go.mod replaces
# are not applied to its importers). To move to another version, change KEDA_VERSION, copy the
# directives from KEDA's go.mod into hack/keda/tools/go.mod and run with REGEN=1.
# KEDA pulls in every scaler's SDK (clouds, databases, queues): the cold build is long; it runs
# under nice -n 19 so that it yields to everything else.
set -euo pipefail

KEDA_VERSION=2.21.0

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
TOOLS_DIR=$SCRIPT_DIR/tools
CACHE_DIR=${1:-.cache/keda}
mkdir -p "$CACHE_DIR"
CACHE_DIR=$(cd "$CACHE_DIR" && pwd)
OUT=$CACHE_DIR/v$KEDA_VERSION

if [[ -x $OUT/keda && -x $OUT/keda-adapter && ${REGEN:-0} != 1 ]]; then
	exit 0
fi
export GOTOOLCHAIN=local
export GOFLAGS="${GOFLAGS:-} -buildvcs=false"
if [[ ${REGEN:-0} == 1 ]]; then
	(cd "$TOOLS_DIR" && go get "github.com/kedacore/keda/v2@v$KEDA_VERSION" && go mod tidy)
fi
start=$(date +%s)
echo "[keda/build.sh] building KEDA v$KEDA_VERSION (operator, metrics API server) into $OUT (cold: long, under nice -n 19)"
mkdir -p "$OUT"
p=github.com/kedacore/keda/v2/version
ldflags="-s -w -X $p.Version=$KEDA_VERSION -X $p.GitCommit=v$KEDA_VERSION"
(cd "$TOOLS_DIR" && go mod download &&
	nice -n 19 go build -trimpath -ldflags="$ldflags" -o "$OUT/keda.tmp" github.com/kedacore/keda/v2/cmd/operator &&
	nice -n 19 go build -trimpath -ldflags="$ldflags" -o "$OUT/keda-adapter.tmp" github.com/kedacore/keda/v2/cmd/adapter)
mv "$OUT/keda.tmp" "$OUT/keda"
mv "$OUT/keda-adapter.tmp" "$OUT/keda-adapter"
echo "[keda/build.sh] built in $(($(date +%s) - start)) s"
