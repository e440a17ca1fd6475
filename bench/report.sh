#!/bin/sh
# bench/report.sh: the table of make bench, from the RESULT lines that the
# benchmark programs printed (bench/bench_stats.h, bench/bench_common.py).
#
#   sh bench/report.sh RESULTS MARKDOWN_OUT
#
# RESULTS holds lines
#   RESULT <key> median=X min=X max=X runs=R unit=U [n=N] [startup_s=S] ...
#   NOTRUN <key> <reason...>          (a workload or system that could not run)
# Prints the table as text on stdout and writes it as a Markdown table to
# MARKDOWN_OUT. Every target is a ratio (or a bound) between two figures of
# the same run, with ✓ or ✗; a target whose figures are missing says
# "not run" with the reason, never a number.
#
# The rows and targets are listed below (SPEC): one line per workload (W),
# system (S: key|label), and target (T: num|den|x: num/den >= x;
# U: num|den|x: num/den <= x; L: key|x: the value < x).
set -eu
[ $# -eq 2 ] || { echo "usage: report.sh RESULTS MARKDOWN_OUT" >&2; exit 2; }

SPEC='W|1. Dispatch overhead: echo, one item per task (chunk_size 1)
S|w1.batchd|batchd over HTTP, 2 workers
S|w1.py_imap|Python Pool(2).imap_unordered(chunksize=1)
S|w1.ring|bare ring, 2 consumers (the limit)
T|w1.batchd|w1.py_imap|20|batchd / Pool imap_unordered
T|w1.batchd|w1.ring|0.10|batchd / bare ring
W|2. Trivial items: square, all items in one request
S|w2.batchd|batchd over HTTP, 2 workers
S|w2.serial|serial C (model run(), jansson)
S|w2.py_serial|Python serial
S|w2.py_pool|Python Pool(2).map
T|w2.batchd|w2.py_pool|0.3|batchd / Pool.map
W|3. CPU-bound: exp_sinh, ~1 ms items
S|w3.batchd|batchd over HTTP, 2 workers
S|w3.serial|serial C (model_exp_sinh_kernel)
S|w3.py_pool|Python Pool(2).map
T|w3.batchd|w3.serial|1.8|batchd / serial C
W|4. Expensive init: mlp 784-512-10, batches of images as .npy objects
S|w4.batchd|batchd over HTTP, 2 workers (upload counts)
S|w4.serial|serial C (mlp forward pass, cblas)
S|w4.py_reload|Python Pool(2), model reloaded per call
S|w4.py_init|Python Pool(2) with an initializer
T|w4.batchd|w4.serial|1.6|batchd / serial C
T|w4.batchd|w4.py_init|2|batchd / Pool with initializer
W|5. Numerical: convolve2d of a shared float64 image, 4x4 filters
S|w5.batchd|batchd over HTTP, 2 workers (upload counts)
S|w5.serial|serial C (model_convolve2d_kernel)
S|w5.py_serial|Python serial (scipy.signal.convolve2d)
S|w5.py_pool|Python Pool(2).map passing the image
T|w5.batchd|w5.serial|1.6|batchd / serial C
T|w5.batchd|w5.py_pool|8|batchd / Pool.map
W|6. Stateful: prefix_count over documents of random 20-byte words
S|w6.batchd|batchd over HTTP, 2 workers (reduced result)
S|w6.serial|serial C (model_prefix_count_serial)
S|w6.py_serial|Python serial (Counter)
S|w6.py_pool|Python Pool(2).map, Counters merged
T|w6.batchd|w6.serial|1.6|batchd / serial C
T|w6.batchd|w6.py_pool|10|batchd / Pool.map
W|7. Polling under load (wrk while exp_sinh keeps both workers busy)
S|w7.status|GET /v1/jobs/{id}
S|w7.cond|GET /v1/jobs/{id}, If-None-Match (304)
S|w7.healthz|GET /healthz
S|w7.status_p99|GET /v1/jobs/{id}: p99 latency
S|w7.cond_p99|If-None-Match: p99 latency
S|w7.healthz_p99|GET /healthz: p99 latency
L|w7.status_p99|5|status p99 < 5 ms
L|w7.cond_p99|5|If-None-Match p99 < 5 ms
T|w7.status|w7.healthz|0.5|status / healthz requests/s
T|w7.cond|w7.healthz|0.5|If-None-Match / healthz requests/s
W|8. Memory: total PSS of mlp workers sharing one weights file
S|w8.copy1|one private copy of the weights (the file)
S|w8.pss1|1 worker: PSS of supervisor + workers
S|w8.pss2|2 workers: PSS of supervisor + workers
S|w8.copies2|2 private copies
S|w8.pss4|4 workers: PSS of supervisor + workers
S|w8.copies4|4 private copies
S|w8.bound4|bound: 1.2 x file + 20 MB per worker (4)
U|w8.pss4|w8.copy1|1.2|4 workers PSS / one copy
U|w8.pss4|w8.bound4|1|4 workers PSS / bound'

printf '%s\n' "$SPEC" | awk -v md="$2" -F'|' '
function num(line, name,    n, i, kv) {
    n = split(line, kv, " ")
    for (i = 1; i <= n; i++)
        if (index(kv[i], name "=") == 1)
            return substr(kv[i], length(name) + 2)
    return ""
}
function fmt(x) {
    if (x == "") return "-"
    x += 0
    if (x >= 100) return sprintf("%.0f", x)
    if (x >= 1) return sprintf("%.2f", x)
    return sprintf("%.3g", x)
}
# The figures of one run: RESULT and NOTRUN lines of the results file.
FILENAME != "-" {
    if ($0 ~ /^RESULT /) {
        split($0, w, " ")
        k = w[2]
        med[k] = num($0, "median"); lo[k] = num($0, "min"); hi[k] = num($0, "max")
        runs[k] = num($0, "runs"); unit[k] = num($0, "unit"); up[k] = num($0, "startup_s")
        nn[k] = num($0, "n")
    } else if ($0 ~ /^NOTRUN /) {
        split($0, w, " ")
        k = w[2]
        why[k] = substr($0, length("NOTRUN " k " ") + 1)
    }
    next
}
# A reason for a missing figure: its own NOTRUN line, else its workload`s.
function reason(k,    wk) {
    if (k in why) return why[k]
    wk = k; sub(/\..*/, "", wk)
    if (wk in why) return why[wk]
    return "no figure (see the log above)"
}
function row(k, label,    mm, startup) {
    if (!(k in med)) {
        printf "  %-44s not run: %s\n", label, reason(k)
        printf "| | %s | not run: %s | | | | |\n", label, reason(k) >> md
        return
    }
    mm = fmt(lo[k]) "-" fmt(hi[k])
    startup = up[k] == "" ? "" : sprintf("%.2f s", up[k])
    printf "  %-44s %12s %23s %-9s %4s %9s %8s\n", label, fmt(med[k]), mm, unit[k], runs[k], \
        (nn[k] == "" ? "" : nn[k]), startup
    printf "| | %s | %s | %s | %s | %s | %s | %s |\n", label, fmt(med[k]), mm, unit[k], runs[k], \
        nn[k], startup >> md
}
function target(kind, a, b, x, label,    r, ok, txt, miss) {
    miss = ""
    if (!(a in med)) miss = reason(a)
    else if (kind != "L" && !(b in med)) miss = reason(b)
    else if (kind != "L" && med[b] + 0 == 0) miss = "zero denominator"
    if (miss != "") {
        printf "    target %-40s not run: %s\n", label, miss
        printf "| | **target** %s | | | | | | not run: %s |\n", label, miss >> md
        nnot++
        return
    }
    if (kind == "L") {
        r = med[a] + 0; ok = r < x + 0
        txt = sprintf("%s %s (< %s)", fmt(r), unit[a], x)
    } else {
        r = (med[a] + 0) / (med[b] + 0)
        ok = kind == "T" ? r >= x + 0 : r <= x + 0
        txt = sprintf("%.2fx (%s %sx)", r, kind == "T" ? ">=" : "<=", x)
    }
    printf "    target %-40s %-28s %s\n", label, txt, ok ? "✓" : "✗"
    printf "| | **target** %s | | | | | | %s %s |\n", label, txt, ok ? "✓" : "✗" >> md
    ntarget++; if (ok) nmet++
}
FILENAME == "-" && $1 == "W" {
    printf "\n%s\n", $2
    printf "  %-44s %12s %23s %-9s %4s %9s %8s\n", "system", "median", "min-max", "unit", "runs", \
        "n", "start-up"
    printf "| **%s** | | | | | | | |\n", $2 >> md
}
FILENAME == "-" && $1 == "S" { row($2, $3) }
FILENAME == "-" && $1 == "T" { target("T", $2, $3, $4, $5) }
FILENAME == "-" && $1 == "U" { target("U", $2, $3, $4, $5) }
FILENAME == "-" && $1 == "L" { target("L", $2, "", $3, $4) }
BEGIN {
    printf "| workload | system | median | min-max | unit | runs | n | start-up / target |\n" > md
    printf "|---|---|---:|---:|---|---:|---:|---|\n" >> md
}
END {
    printf "\n%d of %d measured targets met; %d not run\n", nmet, ntarget, nnot
    printf "\n%d of %d measured targets met; %d not run.\n", nmet, ntarget, nnot >> md
}' "$1" -
