"""bench_common: what every Python baseline of make bench shares.

Timing (time.perf_counter around each timed run), the RESULT line that
bench/report.sh reads (the same as bench/bench_stats.h prints for the C
programs), and argument parsing for --items/--runs. Run the baselines with
/usr/bin/python3: Debian's interpreter, the one python3-numpy and
python3-scipy are installed for.
"""
import argparse
import statistics
import sys
import time


def args(description, items, runs=5, extra=None):
    """Parses --items N --runs R (and whatever `extra(parser)` adds)."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--items", type=int, default=items)
    p.add_argument("--runs", type=int, default=runs)
    if extra:
        extra(p)
    a = p.parse_args()
    if a.items < 1 or not 1 <= a.runs <= 100:
        p.error("--items must be >= 1 and --runs 1..100")
    return a


def result(key, n, secs, unit="items/s", startup=None):
    """Prints the RESULT line for len(secs) runs of n items each; startup
    (seconds), if given, is shown in the table's start-up column."""
    med = statistics.median(secs)
    print("RESULT %s median=%.6g min=%.6g max=%.6g runs=%d unit=%s n=%d seconds=%.6f%s"
          % (key, n / med, n / max(secs), n / min(secs), len(secs), unit, n, med,
             "" if startup is None else " startup_s=%.3f" % startup), flush=True)


def result_value(key, values, unit):
    """Prints a RESULT line for a measured value (not a rate), e.g. seconds."""
    print("RESULT %s median=%.6g min=%.6g max=%.6g runs=%d unit=%s"
          % (key, statistics.median(values), min(values), max(values), len(values), unit),
          flush=True)


def timed(name, runs, n, fn, check):
    """Runs fn() `runs` times, checks each answer with check(answer), and
    returns the list of durations. A wrong answer ends the program: no
    figure is printed for work that was not done right."""
    secs = []
    for r in range(runs):
        t0 = time.perf_counter()
        out = fn()
        dt = time.perf_counter() - t0
        if not check(out):
            sys.exit("%s: run %d gave a wrong answer" % (name, r + 1))
        secs.append(dt)
        print("%s run %d: %d items in %.3f s (%.0f items/s)" % (name, r + 1, n, dt, n / dt),
              file=sys.stderr)
    return secs
