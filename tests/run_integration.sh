#!/bin/sh
# Runs each libcurl integration test binary given against the real batchd
# ($BATCHD_BIN). Each binary starts its own batchd on a free port.
set -u
: > "${BATCHD_CONTRACT_LOG:?}"
pass=0
fail=0
for t in "$@"; do
    if timeout 300 "$t"; then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAILED: $t"; fi
done
echo "integration: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
