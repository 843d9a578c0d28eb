#!/usr/bin/env bash
# `make valgrind`: memcheck over the release unit tests (`cargo test --release --lib`): the SIMD
# kernels and GEMM, pooling, config parsing, token-batch validation, the weight loader's memory
# map, and whatever else has unit tests. Fails on any invalid read or write, use of uninitialised
# memory or definite leak. Writes target/valgrind.log (full) and target/valgrind-summary.json.
#
# valgrind's emulated CPU has no AVX-512 (valgrind 3.19 cannot run it), so run-time dispatch must
# fall back to AVX2+FMA here; the test `reports_the_dispatched_isa` prints what it picked.
# VALGRIND_TESTS="kernels:: weights::" runs only the tests whose names contain one of those.
set -euo pipefail
cd "$(dirname "$0")/.."

filters=${VALGRIND_TESTS:-}
log=target/valgrind.log
start=$(date +%s)

# The unit-test binary `cargo test --release` builds (and CI has just built).
binary=$(cargo test --release --lib --no-run --message-format=json | python3 -c '
import json, sys
for line in sys.stdin:
    msg = json.loads(line)
    if msg.get("reason") == "compiler-artifact" and msg["profile"]["test"] and msg.get("executable"):
        print(msg["executable"])
')
if [ -z "$binary" ]; then
    echo "valgrind: no unit-test binary; does \`cargo test --release --lib --no-run\` build?" >&2
    exit 2
fi
echo "== valgrind $(valgrind --version | sed 's/valgrind-//') memcheck: $binary ${filters:-(all unit tests)}"

status=0
# shellcheck disable=SC2086  # the filters are separate arguments
timeout 600 valgrind --tool=memcheck --error-exitcode=1 --leak-check=full \
    --errors-for-leak-kinds=definite --show-leak-kinds=definite --num-callers=40 \
    --log-file="$log" \
    "$binary" $filters --nocapture --test-threads=2 >target/valgrind-tests.log 2>&1 || status=$?
seconds=$(( $(date +%s) - start ))

tests=$(grep -E '^test result:' target/valgrind-tests.log | tail -1 || true)
isa=$(grep -o 'dispatch picked [^ ]*' target/valgrind-tests.log | awk '{print $3}' | head -1 || true)
available=$(grep -o 'available: [^)]*' target/valgrind-tests.log | head -1 | sed 's/available: //' || true)
errors=$(grep -oE 'ERROR SUMMARY: [0-9]+' "$log" | awk '{print $3}' | tail -1 || true)
invalid=$(grep -cE 'Invalid (read|write)|uninitialised|Conditional jump' "$log" || true)
unhandled=$(grep -c 'unhandled instruction' "$log" || true)

cat >target/valgrind-summary.json <<EOF
{"exit_code": $status, "errors": ${errors:-null}, "invalid_access_reports": ${invalid:-0},
 "unhandled_instructions": ${unhandled:-0}, "isa": "${isa:-unknown}", "available": "${available}",
 "tests": "${tests}", "seconds": $seconds, "filters": "$filters"}
EOF
echo "$tests"
echo "== dispatch under valgrind: ${isa:-unknown} (available: ${available:-?})"
echo "== memcheck: ${errors:-?} errors, exit code $status, ${seconds} s (log: $log)"
if [ "$status" -ne 0 ]; then
    tail -40 target/valgrind-tests.log >&2
    grep -B2 -A25 -E 'Invalid|uninitialised|Conditional jump|definitely lost|unhandled' "$log" | head -120 >&2 || true
    exit "$status"
fi
if [ "$isa" = "avx512f" ]; then
    echo "valgrind: dispatch picked AVX-512, which valgrind cannot run" >&2
    exit 1
fi
