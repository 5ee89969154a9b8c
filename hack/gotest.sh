#!/usr/bin/env bash
# Runs `go test -v` with the given arguments, keeps the full log, and fails when any
# test was skipped or when no test ran at all. Prints "N passed, N failed" at the end,
# after the failed tests by name, each with its own last log lines, so that a CI log
# that keeps only the end of the output still says what failed and why.
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
if [ "$failed" -gt 0 ]; then
  echo "failed tests, each with its last 12 log lines:"
  # go test -v names the test that owns the lines that follow with "=== RUN", "=== CONT"
  # and "=== NAME"; a "--- FAIL" line names the failed test itself. (mawk: no \s.)
  awk '
    /^=== (RUN|CONT|NAME) / { cur = $3; next }
    /^[ \t]*--- FAIL: / { name = $3; failed[++nf] = name; line[name] = $0; next }
    /^[ \t]+[^ \t]+\.go:[0-9]+:/ { n = ++count[cur]; buf[cur, n] = $0 }
    END {
      for (i = 1; i <= nf; i++) {
        name = failed[i]; print line[name]
        from = count[name] > 12 ? count[name] - 11 : 1
        for (j = from; j <= count[name]; j++) print "  " substr(buf[name, j], 1, 400)
      }
    }' "$log"
fi
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
