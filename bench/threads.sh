#!/bin/sh
# bench/threads.sh: thousands of threads alive at once (bench/bench_threads)
# under libmmheap-malloc.so, glibc, jemalloc, mimalloc and tcmalloc
# (LD_PRELOAD), printed as Markdown and saved, dated, under bench/results/.
#
#   bench/threads.sh [options] [BUILD_DIR]
#
# BUILD_DIR is a configured mmheap build directory (default: the current
# directory).  The script builds bench/bench_threads, bench/bench_malloc and
# libmmheap-malloc.la there (make bench-malloc-programs).  For each thread
# count, bench_threads N starts N threads that wait until all exist, each
# replaces one of 16 blocks of 16..1024 B STEPS times, and all wait for each
# other before they exit; it prints the wall time from the first
# pthread_create to the last join.  Each run goes through bench_malloc run,
# which preloads the allocator and checks that it shows in the process's
# maps (else "not loaded"), and reads the peak RSS.  Past 1,008 threads
# libmmheap-malloc adds a table of 1,024 slots to its heap, so that every
# thread keeps a slot of its own: the counts straddle that.
#
# Options:
#   --threads A,B      thread counts (default 1000,1500,2000,4000)
#   --steps N          steps per thread (default 2000)
#   --rounds N         rounds (default 3; figures are medians over rounds,
#                      allocators interleaved, order rotated each round)
#   --allocators A,B   a subset of mmheap,glibc,jemalloc,mimalloc,tcmalloc
#   --tag=NAME         save as bench/results/YYYY-MM-DD-threads-NAME.md
#   --out=FILE         save the Markdown to FILE instead
#   --no-save          print only
#   --no-build         do not run make first
#
# Environment: JEMALLOC, MIMALLOC, TCMALLOC, MMHEAP_MALLOC as for malloc.sh.

# Lists of words ($active, $counts) are split on purpose.
# shellcheck disable=SC2086
set -eu

prog=threads.sh usage_last=31
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"

counts=1000,1500,2000,4000
steps=2000
rounds=3
allocators=mmheap,glibc,jemalloc,mimalloc,tcmalloc
build=1
builddir=.

while [ $# -gt 0 ]; do
    case $1 in
    --*=*) opt=${1%%=*} val=${1#*=} ;;
    --threads|--steps|--rounds|--allocators)
        [ $# -ge 2 ] || { echo "$prog: $1 needs a value" >&2; exit 1; }
        opt=$1 val=$2; shift ;;
    *) opt=$1 val= ;;
    esac
    case $opt in
    --threads) counts=$val ;;
    --steps) steps=$val ;;
    --rounds) rounds=$val ;;
    --allocators) allocators=$val ;;
    --no-build) build=0 ;;
    *) bench_arg "$1" ;;
    esac
    shift
done
case $rounds in ''|*[!0-9]*|0) echo "$prog: --rounds: '$rounds' is not a positive number" >&2; exit 1 ;; esac

bench_build "$builddir" bench-malloc-programs
builddir=$(cd "$builddir" && pwd)
bt=$builddir/bench/bench_threads
bm=$builddir/bench/bench_malloc
for b in "$bt" "$bm"; do
    [ -x "$b" ] || { echo "$prog: $b not built" >&2; exit 1; }
done

bench_mallocs "$builddir" "$allocators" > /dev/null
active=$bench_active

tmp=$(mktemp -d "${TMPDIR:-/tmp}/mmheap-threads.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
results=$tmp/results.tsv
: > "$results"

suite_about() {
    echo "threads: $counts; $steps steps each; rounds: $rounds (allocators interleaved, order rotated each round)"
    bench_peer_versions
}

suite_body() {
    r=1
    while [ "$r" -le "$rounds" ]; do
        for n in $(echo "$counts" | tr ',' ' '); do
            for a in $(bench_rotated $((r - 1)) $active); do
                echo "$prog: round $r/$rounds: $n threads: $a" >&2
                eval "lib=\$lib_$a"
                m=$tmp/$a.$n.$r
                rc=0
                "$bm" run --preload="$lib" --expect="$(bench_maps_name "$lib")" \
                    --out="$m.run" -- "$bt" "$n" "$steps" > "$m.out" 2> "$m.err" || rc=$?
                if [ "$rc" = 0 ]; then
                    s=$(sed -n 's/.*: \([0-9.]*\) s$/\1/p' "$m.out")
                    echo "result	$a	$n	$r	$s	$(cut -f 2 "$m.run")" >> "$results"
                else
                    [ "$rc" = 3 ] && cell="not loaded" || cell=failed
                    echo "bad	$a	$n	$r	$cell	$(head -n 1 "$m.err")" >> "$results"
                    echo "$prog: $n threads under $a: $cell (status $rc)" >&2
                fi
            done
        done
        r=$((r + 1))
    done

    awk -F '\t' -v allocs="$(echo $active | tr ' ' ',')" -v counts="$counts" "$BENCH_AWK_MEDIAN"'
    # ratio(PER, A, B, N): median over rounds of PER[A, N, round] / PER[B, N, round].
    function ratio(per, a, b, n,   t) {
        t = same_rep_ratio(per, a, b, n)
        return t == "" ? "-" : sprintf("%.2f", t)
    }
    # table(TITLE, V, PER, FMT): medians of V per allocator and thread count,
    # and the ratio mmheap / glibc from PER.
    function table(title, v, per, fmt,   i, j, line) {
        if (ntables++) print ""
        printf "%s\n\n", title
        line = "| threads "
        for (i = 1; i <= na; i++) line = line "| " al[i] " "
        if (withratio) line = line "| mmheap / glibc "
        print line "|"
        line = "|--:"
        for (i = 1; i <= na + withratio; i++) line = line "|--:"
        print line "|"
        for (j = 1; j <= nc; j++) {
            line = "| " cl[j] " "
            for (i = 1; i <= na; i++) {
                if ((al[i], cl[j]) in v) line = line "| " sprintf(fmt, median(v[al[i], cl[j]])) " "
                else line = line "| " (((al[i], cl[j]) in badcell) ? badcell[al[i], cl[j]] : "-") " "
            }
            if (withratio) line = line "| " ratio(per, "mmheap", "glibc", cl[j]) " "
            print line "|"
        }
    }
    BEGIN { na = split(allocs, al, ","); nc = split(counts, cl, ","); nrep = 0 }
    $1 == "result" {
        t[$2, $3, $4] = $5; k[$2, $3, $4] = $6 / 1024
        secs[$2, $3] = secs[$2, $3] " " $5; rss[$2, $3] = rss[$2, $3] " " $6 / 1024
        have[$2] = 1
        if ($4 > nrep) nrep = $4
    }
    $1 == "bad" { badcell[$2, $3] = $5; problems = problems "- " $3 " threads under " $2 ", round " $4 ": " $5 ": " $6 "\n" }
    END {
        withratio = ("mmheap" in have) && ("glibc" in have)
        table("Wall time, seconds, first pthread_create to last join (median of rounds; mmheap / glibc: median of the same-round ratios)", secs, t, "%.3f")
        table("Peak RSS, MiB (median of rounds)", rss, k, "%.1f")
        if (problems != "") printf "\nfailures:\n\n%s", problems
    }' "$results"
}

bench_main threads "mmheap many-threads benchmark" suite_body suite_about
