#!/bin/sh
# Runs each cmocka unit test program given; prints a summary line
#   unit: N passed, N failed, N skipped (cmocka tests, in P programs)
# counting cmocka's own tallies (a skip() is counted, never hidden). A
# program that fails without a cmocka tally (a crash, an exit) counts as
# one failed test. VALGRIND=1 runs them under memcheck with errors fatal.
set -u
tests_passed=0
tests_failed=0
tests_skipped=0
programs=0
failed_programs=""
log=$(mktemp "${TMPDIR:-/tmp}/batchd-unit.XXXXXX")
trap 'rm -f "$log"' EXIT
# the number in cmocka's line matching $1 ("[  PASSED  ] 5 test(s)."), or 0
tally() {
    sed -n "s/$1/\\1/p" "$log" | tail -n 1 | grep -E '^[0-9]+$' || echo 0
}
for t in "$@"; do
    programs=$((programs + 1))
    if [ "${VALGRIND:-0}" = 1 ]; then
        valgrind --quiet --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite \
            --trace-children=no "$t" > "$log" 2>&1
    else
        "$t" > "$log" 2>&1
    fi
    rc=$?
    cat "$log"
    p=$(tally '^\[  PASSED  \] \([0-9]*\) test(s)\.$')
    f=$(tally '^ \([0-9]*\) FAILED TEST(S)$')
    s=$(tally '^ \([0-9]*\) SKIPPED TEST(S)$')
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
        f=1
    fi
    tests_passed=$((tests_passed + p))
    tests_failed=$((tests_failed + f))
    tests_skipped=$((tests_skipped + s))
    if [ "$rc" -ne 0 ]; then
        failed_programs="$failed_programs $t"
        echo "FAILED: $t (exit status $rc)"
    fi
    if [ "$s" -gt 0 ]; then
        echo "SKIPPED in $t: $s test(s) (see [  SKIPPED ] above)"
    fi
done
echo "unit: $tests_passed passed, $tests_failed failed, $tests_skipped skipped" \
    "(cmocka tests, in $programs programs)"
[ -z "$failed_programs" ]
