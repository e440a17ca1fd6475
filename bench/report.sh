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
# U: num|den|x: num/den <= x; L: key|x: the value < x; G: key|x: the
# value >= x). A T or U target with x = 0 is a ratio printed, not a target.
# Figures measured in interleaved rounds (RESULT lines with round=N, see
# bench/lib.sh) are the median of their rounds with min-max; a ratio
# between two of them is the median of the per-round ratios with their
# min-max, printed as "figure, baseline unit, ratio [spread]".
set -eu
[ $# -eq 2 ] || { echo "usage: report.sh RESULTS MARKDOWN_OUT" >&2; exit 2; }

SPEC='W|1. Dispatch overhead: echo, one item per task (chunk_size 1)
S|w1.batchd|batchd over HTTP, 2 workers
S|w1.py_imap|Python Pool(2).imap_unordered(chunksize=1)
S|w1.phys|minimal shm ring, 2 consumers (the physical limit)
S|w1.ring|batchd ring alone, 2 consumers
G|w1.batchd|1000000|batchd >= 1,000,000 tasks/s
T|w1.batchd|w1.py_imap|20|batchd / Pool imap_unordered
T|w1.batchd|w1.phys|0|batchd / minimal ring (printed)
T|w1.ring|w1.phys|0|batchd ring / minimal ring (printed)
W|2. Trivial items: square, all items in one request
S|w2.batchd|batchd over HTTP, 2 workers
S|w2.serial|serial C (model run(), jansson)
S|w2.py_serial|Python serial
S|w2.py_pool|Python Pool(2).map
S|w2.batchd_submit|batchd: the submit alone (JSON body)
T|w2.batchd|w2.py_pool|0.3|batchd / Pool.map
G|w2.batchd_submit|50|submit >= 50 MB/s of JSON
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
T|w5.batchd|w5.serial|0.8|batchd / serial C
T|w5.batchd|w5.py_pool|40|batchd / Pool.map
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
U|w8.pss4|w8.bound4|1|4 workers PSS / bound
W|9. Peers: Celery (prefork, Redis) and Dask distributed, 2 worker processes each
S|w9.one.batchd|one-item tasks: batchd (chunk_size 1)
S|w9.one.celery|one-item tasks: Celery, a task per item
S|w9.one.dask|one-item tasks: Dask, client.submit per item
T|w9.one.batchd|w9.one.celery|1|one-item: batchd / Celery
T|w9.one.batchd|w9.one.dask|1|one-item: batchd / Dask
S|w9.triv.batchd|1M trivial items: batchd (one request)
S|w9.triv.celery|1M trivial items: Celery, tasks of 10,000
S|w9.triv.dask|1M trivial items: Dask, tasks of 10,000
T|w9.triv.batchd|w9.triv.celery|1|trivial: batchd / Celery
T|w9.triv.batchd|w9.triv.dask|1|trivial: batchd / Dask
S|w9.cpu.batchd|exp_sinh: batchd (C model)
S|w9.cpu.celery|exp_sinh: Celery, numpy, tasks of 20 items
S|w9.cpu.dask|exp_sinh: Dask, numpy, tasks of 20 items
T|w9.cpu.batchd|w9.cpu.celery|1|exp_sinh: batchd / Celery
T|w9.cpu.batchd|w9.cpu.dask|1|exp_sinh: batchd / Dask
S|w9.mlp.batchd|mlp images: batchd (.npy objects uploaded)
S|w9.mlp.celery|mlp images: Celery, numpy, blocks of 10,000 pickled
S|w9.mlp.dask|mlp images: Dask, numpy, blocks of 10,000 pickled
T|w9.mlp.batchd|w9.mlp.celery|1|mlp: batchd / Celery
T|w9.mlp.batchd|w9.mlp.dask|1.5|mlp: batchd / Dask
S|w9.rel.batchd_lost|kill -9 a worker: batchd items lost
S|w9.rel.batchd_twice|kill -9 a worker: batchd items run twice
S|w9.rel.celery_lost|kill -9 a worker: Celery (defaults) items lost
S|w9.rel.celery_twice|kill -9 a worker: Celery (defaults) items run twice
S|w9.rel.celery_late_lost|kill -9 a worker: Celery (acks_late) items lost
S|w9.rel.celery_late_twice|kill -9 a worker: Celery (acks_late) items run twice
S|w9.rel.dask_lost|kill -9 a worker: Dask items lost
S|w9.rel.dask_twice|kill -9 a worker: Dask items run twice
L|w9.rel.batchd_lost|1|batchd loses no item
L|w9.rel.batchd_twice|1|batchd runs no item twice'

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
        rd = num($0, "round")
        unit[k] = num($0, "unit"); nn[k] = num($0, "n")
        if (up[k] == "") up[k] = num($0, "startup_s")
        if (rd == "") {
            med[k] = num($0, "median"); lo[k] = num($0, "min"); hi[k] = num($0, "max")
            runs[k] = num($0, "runs")
        } else {
            # one timed run of an interleaved round (bench/lib.sh: rounds)
            nr[k]++; rv[k, nr[k]] = num($0, "median") + 0; at[k, rd] = num($0, "median") + 0
            if (!(rd in isround)) { isround[rd] = 1; nrounds++; roundno[nrounds] = rd }
            keys[k] = 1
        }
    } else if ($0 ~ /^NOTRUN /) {
        split($0, w, " ")
        k = w[2]
        why[k] = substr($0, length("NOTRUN " k " ") + 1)
    }
    next
}
# A ratio: two decimals, or two significant digits below 0.1 (a ratio to
# the physical limit is ~0.001).
function rfmt(x) { return x >= 0.1 ? sprintf("%.2f", x) : sprintf("%.2g", x) }
function sortn(a, n,    i, j, t) {
    for (i = 2; i <= n; i++) {
        t = a[i]
        for (j = i - 1; j >= 1 && a[j] > t; j--) a[j + 1] = a[j]
        a[j + 1] = t
    }
}
function medof(a, n) { return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2 }
# The figure of an interleaved key: the median of its rounds, and min-max.
function finish(    k, i, v, n) {
    for (k in keys) {
        n = nr[k]
        for (i = 1; i <= n; i++) v[i] = rv[k, i]
        sortn(v, n)
        med[k] = medof(v, n); lo[k] = v[1]; hi[k] = v[n]; runs[k] = n
        inter[k] = 1
    }
    finished = 1
}
# The ratio a/b of two interleaved keys: "median [min-max]" of the ratios
# of the rounds in which both were measured; "" when they share none.
function pround(a, b,    i, rd, v, n) {
    n = 0
    for (i = 1; i <= nrounds; i++) {
        rd = roundno[i]
        if (((a, rd) in at) && ((b, rd) in at) && at[b, rd] != 0)
            v[++n] = at[a, rd] / at[b, rd]
    }
    if (n == 0) return ""
    sortn(v, n)
    pr_med = medof(v, n)
    return sprintf("[%s-%s, %d rounds]", rfmt(v[1]), rfmt(v[n]), n)
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
        printf "  %-56s not run: %s\n", label, reason(k)
        printf "| | %s | not run: %s | | | | |\n", label, reason(k) >> md
        return
    }
    mm = fmt(lo[k]) "-" fmt(hi[k])
    startup = up[k] == "" ? "" : sprintf("%.2f s", up[k])
    printf "  %-56s %12s %23s %-9s %4s %9s %8s\n", label, fmt(med[k]), mm, unit[k], runs[k], \
        (nn[k] == "" ? "" : nn[k]), startup
    printf "| | %s | %s | %s | %s | %s | %s | %s |\n", label, fmt(med[k]), mm, unit[k], runs[k], \
        nn[k], startup >> md
}
function target(kind, a, b, x, label,    r, ok, txt, miss) {
    miss = ""
    if (!(a in med)) miss = reason(a)
    else if (kind != "L" && kind != "G" && !(b in med)) miss = reason(b)
    else if (kind != "L" && kind != "G" && med[b] + 0 == 0) miss = "zero denominator"
    if (miss != "") {
        printf "    target %-40s not run: %s\n", label, miss
        printf "| | **target** %s | | | | | | not run: %s |\n", label, miss >> md
        nnot++
        return
    }
    if (kind == "L") {
        r = med[a] + 0; ok = r < x + 0
        txt = sprintf("%s %s (< %s)", fmt(r), unit[a], x)
    } else if (kind == "G") {
        r = med[a] + 0; ok = r >= x + 0
        txt = sprintf("%s %s (>= %s)", fmt(r), unit[a], x)
    } else {
        # figure, baseline, ratio [spread]: the median of the per-round
        # ratios when both were measured in the same rounds
        spread = pround(a, b)
        if (spread != "") r = pr_med
        else { r = (med[a] + 0) / (med[b] + 0); spread = "[not interleaved]" }
        ok = kind == "T" ? r >= x + 0 : r <= x + 0
        txt = sprintf("%s, %s %s, %sx %s (%s %sx)", fmt(med[a]), fmt(med[b]), unit[b], rfmt(r), spread,
                      kind == "T" ? ">=" : "<=", x)
    }
    if ((kind == "T" || kind == "U") && x + 0 == 0) {
        sub(/ \([<>]= 0x\)/, "", txt)
        printf "    ratio  %-40s %s\n", label, txt
        printf "| | **ratio** %s | | | | | | %s |\n", label, txt >> md
        return
    }
    printf "    target %-40s %s %s\n", label, txt, ok ? "✓" : "✗"
    printf "| | **target** %s | | | | | | %s %s |\n", label, txt, ok ? "✓" : "✗" >> md
    ntarget++; if (ok) nmet++
}
FILENAME == "-" && !finished { finish() }
FILENAME == "-" && $1 == "W" {
    printf "\n%s\n", $2
    printf "  %-56s %12s %23s %-9s %4s %9s %8s\n", "system", "median", "min-max", "unit", "runs", \
        "n", "start-up"
    printf "| **%s** | | | | | | | |\n", $2 >> md
}
FILENAME == "-" && $1 == "S" { row($2, $3) }
FILENAME == "-" && $1 == "T" { target("T", $2, $3, $4, $5) }
FILENAME == "-" && $1 == "U" { target("U", $2, $3, $4, $5) }
FILENAME == "-" && $1 == "L" { target("L", $2, "", $3, $4) }
FILENAME == "-" && $1 == "G" { target("G", $2, "", $3, $4) }
BEGIN {
    printf "| workload | system | median | min-max | unit | runs | n | start-up / target |\n" > md
    printf "|---|---|---:|---:|---|---:|---:|---|\n" >> md
}
END {
    printf "\n%d of %d measured targets met; %d not run\n", nmet, ntarget, nnot
    printf "\n%d of %d measured targets met; %d not run.\n", nmet, ntarget, nnot >> md
}' "$1" -
