#!/bin/sh
# Runs a command (a sub-make of the tests) under a sanitizer's options and
# fails if any process reported anything:
#
#   sh tests/sanitize.sh KIND BUILD_DIR COMMAND...     KIND: asan, ubsan, tsan
#
# Why reports are collected from files and not only from exit codes: the
# tests start the real batchd, whose supervisor forks an api process and
# workers. A report in a worker ends that worker with `exitcode` (23), and
# the supervisor, doing its job, respawns it: the test that caused it may
# well pass. So every sanitized process writes its reports to
# BUILD_DIR/reports/KIND.<pid> (log_path), and any such file fails the run,
# with its contents printed.
#
# The options (the same for every process):
#   halt_on_error=1   the first report ends the process (a half-broken heap
#                     tells nothing reliable afterwards)
#   abort_on_error=0  ... with _exit(exitcode), not SIGABRT, so the harness
#   exitcode=23       and the supervisor see an exit status, distinct from
#                     batchd's own codes (0, 1, 2, 3)
#   detect_leaks=1    LeakSanitizer at exit: test programs and the
#                     supervisor exit normally; the api process and the
#                     workers _exit() on purpose and run the check
#                     themselves first (service/sanitizer.h). Processes
#                     that _exit() elsewhere (a crash simulated by the chaos
#                     model, a failed exec in the harness) are not checked,
#                     which is right: they did not free on purpose.
#   log_path          one file per process, see above
# BATCHD_TEST_READY_TIMEOUT gives the slower sanitized service more time to
# come up (the harness's default is 10 s).
set -u
if [ $# -lt 3 ]; then
    echo "usage: $0 asan|ubsan|tsan BUILD_DIR COMMAND..." >&2
    exit 2
fi
kind=$1
dir=$2
shift 2
mkdir -p "$dir"
reports=$(cd "$dir" && pwd)/reports
rm -rf "$reports"
mkdir -p "$reports"

common="halt_on_error=1:abort_on_error=0:exitcode=23:log_path=$reports/$kind"
# allocator_may_return_null: a request-sized allocation that cannot be met
# fails that request (the OOM policy), as malloc does without ASan
export ASAN_OPTIONS="$common:allocator_may_return_null=1:detect_leaks=1:detect_stack_use_after_return=1:strict_string_checks=1:check_initialization_order=1"
export LSAN_OPTIONS="exitcode=23:log_path=$reports/$kind"
export UBSAN_OPTIONS="$common:print_stacktrace=1"
# history_size: longer stacks for the "previous access" of a race
export TSAN_OPTIONS="$common:allocator_may_return_null=1:second_deadlock_stack=1:history_size=4"
export BATCHD_TEST_READY_TIMEOUT="${BATCHD_TEST_READY_TIMEOUT:-60}"
# which sanitizer the programs run under, for the rare test whose figure
# only means something without it (test_mlp's PSS bound under TSan)
export BATCHD_SANITIZER="$kind"

"$@"
rc=$?

# With allocator_may_return_null, a refused huge allocation (a test that
# provokes -ENOMEM on purpose) leaves a one-line warning and no error: those
# files are not reports.
for f in $(find "$reports" -type f 2>/dev/null); do
    if ! grep -qvE 'WARNING: [A-Za-z]+Sanitizer failed to allocate' "$f"; then
        rm -f "$f"
    fi
done
found=$(find "$reports" -type f 2>/dev/null | sort)
if [ -n "$found" ]; then
    n=$(echo "$found" | wc -l)
    echo "$kind: $n process(es) reported problems:"
    for f in $found; do
        echo "==== $f"
        head -n 80 "$f"
    done
    exit 1
fi
if [ "$rc" -ne 0 ]; then
    echo "$kind: the tests failed (status $rc), without a sanitizer report"
    exit "$rc"
fi
echo "$kind: no report from any process"
