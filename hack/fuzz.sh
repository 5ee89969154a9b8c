#!/usr/bin/env bash
# Fuzzes one target for a while; a real finding fails, go1.26's coordinator race does not, and so does a run that
# fuzzed nothing (a TARGET the package lacks).
#
#   hack/fuzz.sh PKG TARGET FUZZTIME
#
# go1.26's fuzz coordinator can end a clean run with a bare "context deadline exceeded" at the end of
# -fuzztime (golang/go#75804, fixed in Go 1.27): no input failed and no crasher was written. Such a run is
# repeated, at most twice. Any other failure, and any run that wrote a failing input, fails at once.
set -uo pipefail
pkg=$1 target=$2 fuzztime=$3
for attempt in 1 2 3; do
	out=$(go test "$pkg" -run '^$' -fuzz "^${target}\$" -fuzztime "$fuzztime" 2>&1)
	rc=$?
	printf '%s\n' "$out"
	if [[ $rc == 0 ]]; then
		# go test passes when -fuzz names no target ("no fuzz tests to fuzz"): that fuzzed nothing.
		if ! grep -q '^fuzz: elapsed: ' <<<"$out"; then
			echo "[fuzz.sh] $pkg $target: no fuzz target ran (is ^${target}\$ a Fuzz function of $pkg?)"
			exit 1
		fi
		exit 0
	fi
	if grep -q 'Failing input written to' <<<"$out" || ! grep -q '^    context deadline exceeded$' <<<"$out"; then
		exit "$rc"
	fi
	echo "[fuzz.sh] $pkg $target: a bare 'context deadline exceeded' with no failing input (golang/go#75804); run $attempt of 3, again"
done
exit 1
