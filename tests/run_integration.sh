#!/bin/sh
# Runs each libcurl integration test program given against the real batchd
# ($BATCHD_BIN). Each program starts its own batchd on a free port and ends
# with "N passed, N failed, K skipped"; the summary line adds them up:
#   integration: N passed, N failed, N skipped (tests, in P programs)
# A program that ends without that line (a crash, the 300 s timeout) counts
# as one failed test.
set -u
: > "${BATCHD_CONTRACT_LOG:?}"
passed=0
failed=0
skipped=0
programs=0
bad=0
log=$(mktemp "${TMPDIR:-/tmp}/batchd-integ.XXXXXX")
trap 'rm -f "$log"' EXIT
for t in "$@"; do
    programs=$((programs + 1))
    timeout 300 "$t" > "$log" 2>&1
    rc=$?
    cat "$log"
    last=$(grep -E '^[0-9]+ passed, [0-9]+ failed, [0-9]+ skipped$' "$log" | tail -n 1)
    if [ -n "$last" ]; then
        passed=$((passed + $(echo "$last" | cut -d' ' -f1)))
        failed=$((failed + $(echo "$last" | cut -d' ' -f3)))
        skipped=$((skipped + $(echo "$last" | cut -d' ' -f5)))
    elif [ "$rc" -ne 0 ]; then
        failed=$((failed + 1))
    fi
    if [ "$rc" -ne 0 ]; then
        bad=$((bad + 1))
        echo "FAILED: $t (exit status $rc)"
    fi
done
echo "integration: $passed passed, $failed failed, $skipped skipped (tests, in $programs programs)"
[ "$bad" -eq 0 ]
