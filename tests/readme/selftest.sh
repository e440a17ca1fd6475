#!/bin/sh
# The README harness's own test: tests/readme/run.py on selftest.md, whose
# blocks hold one drifted output, one matching output (ids, timestamps and
# timings normalised), one command that fails and one skipped block. The
# harness must fail and name each wrong line; a harness that passes
# everything would otherwise pass `make test` with a README that drifted.
#   sh tests/readme/selftest.sh BUILD_DIR
set -u
out=$(python3 tests/readme/run.py --no-keep --build "${1:-build}" tests/readme/selftest.md 2>&1)
rc=$?
fail=0
expect() {
    if ! printf '%s\n' "$out" | grep -qF -- "$1"; then
        echo "readme selftest: the harness did not say: $1"
        fail=1
    fi
}
expect 'FAIL - selftest.md:9 (block at line 7, section "Drift")'
expect 'output differs from selftest.md lines 10-10'
expect 'FAIL - selftest.md:20 (block at line 17, section "Failure")'
expect 'a command failed (exit status 1) at selftest.md line 20'
expect 'SKIP - selftest.md:26 (Skipped): the harness must not run this'
expect 'readme: 0 passed, 2 failed, 1 skipped (blocks; 3 outputs compared'
if printf '%s\n' "$out" | grep -qF 'selftest.md:11 '; then
    echo "readme selftest: a matching output (normalised) was reported"
    fail=1
fi
if printf '%s\n' "$out" | grep -qF 'selftest.md:18 '; then
    echo "readme selftest: a matching output (with ...) was reported"
    fail=1
fi
[ "$rc" -eq 1 ] || { echo "readme selftest: the harness exited $rc, not 1"; fail=1; }
if [ "$fail" -ne 0 ]; then
    printf '%s\n' "$out" | sed 's/^/    /'
    echo "readme selftest: FAILED"
    exit 1
fi
echo "readme selftest: ok (drift, a failed command and a skip are reported)"
