#!/bin/sh
# Runs each cmocka unit test binary given; prints a summary line.
# VALGRIND=1 runs them under memcheck with errors fatal.
set -u
pass=0
fail=0
for t in "$@"; do
    if [ "${VALGRIND:-0}" = 1 ]; then
        valgrind --quiet --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite \
            --trace-children=no "$t"
    else
        "$t"
    fi
    if [ $? -eq 0 ]; then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAILED: $t"; fi
done
echo "unit: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
