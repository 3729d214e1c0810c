#!/bin/sh
# bench/scaling.sh: throughput against the thread count of the standard
# multi-thread allocator workloads under libmmheap-malloc.so, glibc,
# jemalloc, mimalloc and tcmalloc (LD_PRELOAD), printed as Markdown and
# saved, dated, under bench/results/ (with a plot, if gnuplot is installed).
#
#   bench/scaling.sh [options] [BUILD_DIR]
#
# BUILD_DIR is a configured mmheap build directory (default: the current
# directory).  The script builds bench/bench_malloc and libmmheap-malloc.la
# there (make bench-malloc-programs) and runs `bench_malloc WORKLOAD
# --threads N` for each workload, thread count and allocator, REPS times,
# the allocators interleaved within a repetition in an order that rotates.
# The workloads are bench_malloc's larson, xmalloc (xmalloc-test), falseshare
# (cache-scratch), mstress, rptest and prodcons; each does a fixed total of
# work whatever the thread count, shared among the threads, so throughput
# (the workload's units over its own elapsed time) compares across thread
# counts.  Each run goes through bench_malloc run, which checks that the
# allocator shows in the process's maps ("not loaded" otherwise); the
# workloads check every block they free ("failed").  Thread counts above
# the machine's CPUs are measured and marked oversubscribed.
#
# Options:
#   --threads A,B      thread counts (default 1,2,4,8,16)
#   --reps N           repetitions (default 3; figures are medians)
#   --scale F          multiplies every workload's work (default 0.5)
#   --workloads A,B    a subset of larson,xmalloc,falseshare,mstress,rptest,
#                      prodcons
#   --allocators A,B   a subset of mmheap,glibc,jemalloc,mimalloc,tcmalloc
#   --budget S         fit the whole run in S seconds: a calibration run of
#                      each workload sets its scale (at most --scale), each
#                      run is killed past 4x its estimate, and cells left
#                      when the time is spent are not run (the table says so)
#   --device           for a many-core machine: --threads 1,2,4,8,16 --reps 3
#                      --no-build, saving in $OUT when that is set
#   --out-dir DIR      save in DIR (same file names) instead of bench/results
#   --quick            smoke test: --reps 1 --scale 0.05 unless given
#   --raw FILE         keep every measurement (tab separated) in FILE
#   --plot FILE.svg    also copy the plot (throughput against threads) there
#   --tag=NAME         save as bench/results/YYYY-MM-DD-scaling-NAME.md
#   --out=FILE         save the Markdown to FILE instead
#   --no-save          print only
#   --no-build         do not run make first
#
# Environment: JEMALLOC, MIMALLOC, TCMALLOC, MMHEAP_MALLOC as for malloc.sh.

# Lists of words ($active, $chosen, $counts) are split on purpose; lib_A,
# scale_W and est_W are set through eval.
# shellcheck disable=SC2086,SC2154
set -eu

prog=scaling.sh usage_last=45
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"

counts=
reps=
scale=
workloads=larson,xmalloc,falseshare,mstress,rptest,prodcons
allocators=mmheap,glibc,jemalloc,mimalloc,tcmalloc
budget=
device=0
out_dir=
quick=0
raw=
plot=
build=1
builddir=.

while [ $# -gt 0 ]; do
    case $1 in
    --*=*) opt=${1%%=*} val=${1#*=} ;;
    --threads|--reps|--scale|--workloads|--allocators|--budget|--out-dir|--raw|--plot)
        [ $# -ge 2 ] || { echo "$prog: $1 needs a value" >&2; exit 1; }
        opt=$1 val=$2; shift ;;
    *) opt=$1 val= ;;
    esac
    case $opt in
    --threads) counts=$val ;;
    --reps) reps=$val ;;
    --scale) scale=$val ;;
    --workloads) workloads=$val ;;
    --allocators) allocators=$val ;;
    --budget) budget=$val ;;
    --out-dir) out_dir=$val ;;
    --raw) raw=$val ;;
    --plot) plot=$val ;;
    --device) device=1 ;;
    --quick) quick=1 ;;
    --no-build) build=0 ;;
    *) bench_arg "$1" ;;
    esac
    shift
done
if [ "$device" = 1 ]; then
    counts=${counts:-1,2,4,8,16} reps=${reps:-3} build=0 out_dir=${out_dir:-${OUT:-}}
fi
if [ "$quick" = 1 ]; then
    reps=${reps:-1} scale=${scale:-0.05}
fi
counts=${counts:-1,2,4,8,16} reps=${reps:-3} scale=${scale:-0.5}
case $reps in ''|*[!0-9]*|0) echo "$prog: --reps: '$reps' is not a positive number" >&2; exit 1 ;; esac
case $budget in *[!0-9]*) echo "$prog: --budget: '$budget' is not a number of seconds" >&2; exit 1 ;; esac
case ,$counts, in *,,*|*[!0-9,]*|*,0*) echo "$prog: --threads: '$counts' is not a list of thread counts" >&2; exit 1 ;; esac
if ! awk -v s="$scale" 'BEGIN { exit !(s + 0 > 0) }'; then
    echo "$prog: --scale: '$scale' is not a number above 0" >&2; exit 1
fi
[ -z "$out_dir" ] || bench_results_dir=$out_dir
bench_plot_wanted "$plot"

bench_build "$builddir" bench-malloc-programs
bin=$(cd "$builddir" && pwd)/bench/bench_malloc
[ -x "$bin" ] || { echo "$prog: $bin not built" >&2; exit 1; }
tmp=$(mktemp -d "${TMPDIR:-/tmp}/mmheap-scaling.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
trap 'exit 130' INT TERM
results=$tmp/results.tsv
: > "$results"

bench_mallocs "$builddir" "$allocators" >> "$results"
active=$bench_active
known=$("$bin" --list | cut -f 1 | tr '\n' ' ')
chosen=
for w in $(echo "$workloads" | tr ',' ' '); do
    case " $known " in
    *" $w "*) chosen="$chosen $w" ;;
    *) echo "$prog: unknown workload $w (bench_malloc --list)" >&2; exit 1 ;;
    esac
done
cpus=$(nproc)
start=$(date +%s)

# cell W A N SCALE M [CAP]: one run of W under A with N threads: its run
# line in $M.run, its output in $M.out; a result or bad line appended to
# the results, tagged with the repetition $rep.  CAP: seconds after which
# the run is killed (timeout's status 124: "timed out").
cell() {
    eval "cell_lib=\$lib_$2"
    cell_rc=0
    ${6:+timeout "$6"} "$bin" run --preload="$cell_lib" --expect="$(bench_maps_name "$cell_lib")" \
        --out="$5.run" -- "$bin" "$1" --threads="$3" --scale="$4" > "$5.out" 2> "$5.err" || cell_rc=$?
    if [ "$cell_rc" = 0 ]; then
        # "W: N threads, UNITS UNIT, SECONDS s, 0 corrupted": units, unit, seconds.
        echo "result	$1	$2	$3	$rep	$(awk '{ sub(/,$/, "", $5); print $4 "\t" $5 "\t" $6 }' "$5.out")	$(cut -f 1 "$5.run")" >> "$results"
        return
    fi
    case $cell_rc in
    3) why="not loaded" ;;
    124) why="timed out" ;;
    *) why=failed ;;
    esac
    echo "bad	$1	$2	$3	$rep	$why	status $cell_rc: $(head -n 1 "$5.err")" >> "$results"
    echo "$prog: $1, $3 threads, under $2: $why (status $cell_rc)" >&2
}

# calibrate: with --budget, runs each workload once under each allocator at
# the smallest and the largest thread count, at a small scale, and sets
# scale_W: what fits the workload's share of the budget left (at most
# --scale), counting each cell as the slower of the two; est_W: a cell's
# estimated seconds at that scale.
calibrate() {
    cal=0.01 rep=0
    lo=${counts%%,*} hi=${counts##*,}
    for w in $chosen; do
        for a in $active; do
            for n in $lo $hi; do cell "$w" "$a" "$n" "$cal" "$tmp/cal.$w.$a.$n" 60; done
        done
    done
    mv "$results" "$tmp/calibration.tsv"
    grep -v '^result' "$tmp/calibration.tsv" | grep -v '^bad' > "$results" || true
    left=$((budget - ($(date +%s) - start)))
    ncounts=$(echo "$counts" | tr ',' ' ' | wc -w)
    eval "$(awk -F '\t' -v left="$left" -v reps="$reps" -v ncounts="$ncounts" -v cal="$cal" \
               -v scale="$scale" -v wls="$chosen" '
    $1 == "result" {
        # wall = fixed cost (start, exit) + the part the scale multiplies
        fixed = $9 - $8; part = $8 / cal
        if (fixed > f[$2, $3]) f[$2, $3] = fixed
        if (part > p[$2, $3]) p[$2, $3] = part
        allocs[$2] = allocs[$2] " " $3
    }
    END {
        nw = split(wls, wl, " ")
        share = left * 0.85 / nw          # the rest: the run lines, the report
        for (j = 1; j <= nw; j++) {
            w = wl[j]; fsum = 0; psum = 0
            na = split(allocs[w], al, " ")
            for (i = 1; i <= na; i++) { fsum += f[w, al[i]]; psum += p[w, al[i]] }
            s = scale
            if (psum > 0 && (share / (reps * ncounts) - fsum) / psum < s) s = (share / (reps * ncounts) - fsum) / psum
            if (s < cal / 10) s = cal / 10
            est = na > 0 ? (fsum + psum * s) / na : 0
            printf "scale_%s=%.4g est_%s=%.3g\n", w, s, w, est
        }
    }' "$tmp/calibration.tsv")"
}

suite_about() {
    echo "threads: $counts on $cpus CPUs (counts above $cpus oversubscribed); repetitions: $reps (allocators interleaved, order rotated)"
    echo "work: a fixed total per workload, shared among the threads; scale $scale${budget:+; budget $budget s}"
    bench_peer_versions
}

suite_body() {
    for w in $chosen; do eval "scale_$w=\$scale est_$w="; done
    [ -z "$budget" ] || calibrate
    scales=
    for w in $chosen; do eval "scales=\"\$scales $w=\$scale_$w\""; done
    echo "$prog: $reps repetitions of {$(echo $chosen | tr ' ' ',')} x {$counts} x {$(echo $active | tr ' ' ',')}; scales:$scales" >&2
    rep=1
    while [ "$rep" -le "$reps" ]; do
        k=0
        for w in $chosen; do
            eval "s=\$scale_$w est=\$est_$w"
            cap=
            [ -z "$est" ] || cap=$(awk -v e="$est" 'BEGIN { c = int(4 * e) + 5; print c }')
            for n in $(echo "$counts" | tr ',' ' '); do
                for a in $(bench_rotated $((rep - 1 + k)) $active); do
                    if [ -n "$budget" ] && [ $(( $(date +%s) - start )) -ge "$budget" ]; then
                        echo "skip	$w	$a	$n	$rep" >> "$results"
                        continue
                    fi
                    echo "$prog: repetition $rep/$reps: $w, $n threads: $a" >&2
                    cell "$w" "$a" "$n" "$s" "$tmp/$w.$a.$n.$rep" $cap
                done
                k=$((k + 1))
            done
        done
        rep=$((rep + 1))
    done
    [ -z "$raw" ] || cp "$results" "$raw"

    plotdata=
    [ "$do_plot" = 0 ] || plotdata=$tmp/plot
    awk -F '\t' -v allocs="$(echo $active | tr ' ' ',')" -v wls="$(echo $chosen | tr ' ' ',')" \
        -v counts="$counts" -v cpus="$cpus" -v scales="$scales" -v plotdata="$plotdata" \
        "$BENCH_AWK_MEDIAN"'
    # ratio(A, B, W, N): median over repetitions of the same-repetition ratio
    # of the throughput of A to that of B on W with N threads; "" if none.
    function ratio(a, b, w, n) { return same_rep_ratio(tput, a, b, w SUBSEP n) }
    # best(W, N): the peer (not mmheap) with the highest median throughput.
    function best(w, n) { return best_peer(tputs, w SUBSEP n, -1) }
    function cell(a, w, n) {
        if ((a, w, n) in tputs) return sprintf("%.3g", median(tputs[a, w, n]) / 1e6)
        if ((a, w, n) in badcell) return badcell[a, w, n]
        return ((a, w, n) in skipped) ? "not run (budget)" : "-"
    }
    # workload_table(W): throughput per thread count and allocator, the best
    # peer, mmheap / best peer; then the headline line of W.
    function workload_table(w,   i, j, n, b, t, line, worst, worstn, worstb, missing) {
        printf "### %s (%s, scale %s): million %s per second\n\n", w, what[w], scale_of[w], unit[w]
        line = "| threads "
        for (i = 1; i <= na; i++) line = line "| " al[i] " "
        print line "| best peer | mmheap / best peer |"
        line = "|---"
        for (i = 1; i <= na + 2; i++) line = line "|--:"
        print line "|"
        worst = ""; missing = ""
        if (plotdata != "") print "threads\t" allocs_tab > (plotdata "." w)
        for (j = 1; j <= nc; j++) {
            n = cl[j]
            line = "| " n (n + 0 > cpus + 0 ? " (oversubscribed)" : "") " "
            for (i = 1; i <= na; i++) line = line "| " cell(al[i], w, n) " "
            b = best(w, n)
            t = (b == "" || !("mmheap" in have)) ? "" : ratio("mmheap", b, w, n)
            line = line "| " (b == "" ? "-" : b) " | " (t == "" ? "-" : sprintf("%.2f", t)) " |"
            print line
            if (t == "") missing = missing " " n
            else if (worst == "" || t < worst) { worst = t; worstn = n (n == 1 ? " thread" : " threads"); worstb = b }
            if (plotdata != "") {
                line = n
                for (i = 1; i <= na; i++) line = line "\t" (((al[i], w, n) in tputs) ? median(tputs[al[i], w, n]) / 1e6 : "-")
                print line > (plotdata "." w)
            }
        }
        if (plotdata != "") close(plotdata "." w)
        print ""
        if (w in two_at_one) printf "(%s runs at least 2 threads, a producer and a consumer: its row 1 ran 2.)\n\n", w
        line = "**" w ": mmheap within 10% of the best peer at every thread count measured**: "
        if (worst == "") print line "not measured (no mmheap or no peer result)\n"
        else printf "%s%s (lowest %.2fx, at %s, against %s)%s\n\n", line,
            (worst >= 0.9 ? "met" : "not met"), worst, worstn, worstb,
            (missing == "" ? "" : "; no ratio at" missing " threads")
        headline[w] = worst == "" ? "not measured" : (worst >= 0.9 ? "met" : "not met") sprintf(" (%.2fx)", worst)
    }
    BEGIN {
        na = split(allocs, al, ","); nw = split(wls, wl, ","); nc = split(counts, cl, ",")
        allocs_tab = allocs; gsub(",", "\t", allocs_tab)
        ns = split(scales, sv, " ")
        for (i = 1; i <= ns; i++) { split(sv[i], kv, "="); scale_of[kv[1]] = kv[2] }
        what["larson"] = "server churn"; what["xmalloc"] = "xmalloc-test"
        what["falseshare"] = "cache-scratch"; what["mstress"] = "mstress"
        what["rptest"] = "rptest"; what["prodcons"] = "producer/consumer pairs"
        two_at_one["prodcons"] = two_at_one["xmalloc"] = 1
        nrep = 0
    }
    $1 == "result" {
        w = $2; a = $3; n = $4; r = $5
        unit[w] = $7
        tput[a, w, n, r] = $6 / $8
        tputs[a, w, n] = tputs[a, w, n] " " $6 / $8
        have[a] = 1
        if (r > nrep) nrep = r
    }
    $1 == "bad" { badcell[$3, $2, $4] = $6; problems = problems "- " $2 ", " $4 " threads, under " $3 ", repetition " $5 ": " $6 ": " $7 "\n" }
    $1 == "skip" { skipped[$3, $2, $4] = 1; nskipped++ }
    $1 == "note" { notes = notes "- " $2 "\n" }
    $1 == "lib" { lib[$2] = $3 }
    END {
        printf "Throughput: the workload'"'"'s units over its own elapsed time, median of the repetitions; mmheap / best peer: the median of the same-repetition ratio to the peer with the highest median at that thread count (> 1: mmheap faster).  Fixed total work per workload, shared among the threads.  This machine has %d CPUs: rows above that are oversubscribed (the threads take turns on the CPUs).\n\n", cpus
        for (j = 1; j <= nw; j++) workload_table(wl[j])
        line = ""
        for (j = 1; j <= nw; j++) line = line " " wl[j] " " headline[wl[j]] (j < nw ? ";" : "")
        printf "**mmheap within 10%% of the best peer at every thread count measured**:%s\n\n", line
        printf "libraries (each checked in the maps of every process it ran in):\n\n"
        for (i = 1; i <= na; i++) printf "- %s: %s\n", al[i], lib[al[i]]
        if (problems != "") printf "\nfailures:\n\n%s", problems
        if (nskipped > 0) printf "\n%d runs not made: the budget was spent before them (cells \"not run (budget)\").\n", nskipped
        if (notes != "") printf "\nnotes (no column for an allocator left out):\n\n%s", notes
    }' "$results"

    if [ "$do_plot" = 1 ]; then
        nw=$(echo $chosen | wc -w)
        n=$(( $(echo $active | wc -w) + 1 ))
        rows=$(( (nw + 2) / 3 ))
        {
            echo "set terminal svg size 1200,$(( rows * 380 + 40 )) dynamic font 'sans,11'"
            echo "set output '$bench_plot'"
            printf "set datafile separator '\\t'\n"
            echo "set datafile missing '-'"
            echo "set logscale x 2"
            echo "set xtics ($(echo "$counts" | sed 's/,/, /g'))"
            echo "set yrange [0:*]"
            echo "set grid"
            echo "set key top left"
            echo "set xlabel 'threads ($cpus CPUs)'"
            echo "set ylabel 'million units/s'"
            echo "set multiplot layout $rows,3 title 'throughput against threads, $(date -u '+%Y-%m-%d'): $reps repetitions (higher is better)'"
            for w in $chosen; do
                echo "set title '$w' noenhanced"
                echo "plot for [i=2:$n] '$tmp/plot.$w' using 1:i with linespoints title columnheader(i)"
            done
            echo "unset multiplot"
        } | gnuplot
        bench_plot_link "$plot" "Throughput against threads, per workload and allocator"
    fi
}

suite=scaling
[ "$quick" = 1 ] && suite=scaling-quick
bench_main "$suite" "mmheap thread scaling benchmark" suite_body suite_about
