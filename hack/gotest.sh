#!/usr/bin/env bash
# Runs `go test -v` with the given arguments, keeps the full log, and fails when any
# test was skipped or when no test ran at all. Prints "N passed, N failed" at the end.
set -uo pipefail
log="${GOTEST_LOG:-.cache/test-logs/$(date +%s)-$$.log}"
mkdir -p "$(dirname "$log")"
go test -v "$@" > "$log" 2>&1
rc=$?
# Package results and failures, without the servers' own log lines.
grep -E '^(ok|FAIL|---|panic:|\s+\S+_test\.go:[0-9]+:)' "$log" | grep -v -- '--- PASS' | tail -60
passed=$(grep -cE '^\s*--- PASS' "$log")
failed=$(grep -cE '^\s*--- FAIL' "$log")
skipped=$(grep -cE '^\s*--- SKIP' "$log")
echo "log: $log"
if [ "$skipped" -gt 0 ]; then
  echo "skipped tests are failures here (a real-server test that skips proves nothing):"
  grep -E '^\s*--- SKIP' "$log"
  rc=1
fi
if [ "$passed" -eq 0 ]; then
  echo "no test ran"
  rc=1
fi
echo "$passed passed, $failed failed"
exit $rc
