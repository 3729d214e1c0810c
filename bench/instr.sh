#!/bin/sh
# bench/instr.sh: instructions per alloc+free pair, counted by callgrind,
# printed as Markdown and saved, dated, under bench/results/.
#
#   bench/instr.sh [options] [BUILD_DIR [WORKLOAD...]]
#
# Default workloads: fast-16 fast-1024 batch mixed (single-thread ones only).
# For each allocator it runs bench_alloc under valgrind --tool=callgrind
# twice (100,000 and 200,000 timed pairs, each plus its warm-up), collecting
# only inside the workload's loop (--toggle-collect=fast_mmh, batch_sys, ...),
# and divides the difference by the difference in pairs, so one-time costs
# (binding, first pages, lazy PLT resolution) cancel.  The count includes the
# driver's own loop (about 15 instructions per pair for fast-*, 30 for batch),
# the same for every allocator.  Instruction counts repeat exactly from run to
# run, unlike times on a shared machine.
#
# Options:
#   --tag=NAME       save as bench/results/YYYY-MM-DD-instr-NAME.md
#   --out=FILE       save the Markdown to FILE instead
#   --no-save        print only
#   --no-build       do not run make first
#
# Environment: JEMALLOC, MIMALLOC, TCMALLOC as for run.sh.
set -eu

prog=instr.sh usage_last=23
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"

build=1
builddir=
workloads=
while [ $# -gt 0 ]; do
    case $1 in
    --no-build) build=0 ;;
    -*) bench_arg "$1" ;;
    *) if [ -z "$builddir" ]; then builddir=$1; else workloads="$workloads $1"; fi ;;
    esac
    shift
done
builddir=${builddir:-.}
workloads=${workloads:-fast-16 fast-1024 batch mixed}

command -v valgrind >/dev/null || { echo "$prog: valgrind not found" >&2; exit 1; }
bench_build "$builddir" bench-programs
bin=$builddir/bench/bench_alloc
[ -x "$bin" ] || { echo "$prog: $bin not built" >&2; exit 1; }

lib_jemalloc=$(bench_peer_lib jemalloc)
lib_mimalloc=$(bench_peer_lib mimalloc)
lib_tcmalloc=$(bench_peer_lib tcmalloc)

# pairs the program runs (warm-up + timed) for workload base count P at scale s
pairs() { # P s
    awk -v P="$1" -v s="$2" 'BEGIN {
        n = int(P * s); if (n < 1000) n = 1000; n -= n % 1000
        w = int(n / 8); w = (w > 1000) ? w - w % 1000 : 1000
        print n + w }'
}

# count ALLOC FN PRELOAD EXPECT WORKLOAD SCALE -> instructions collected
count() {
    LD_PRELOAD=$3 valgrind --tool=callgrind --callgrind-out-file=/dev/null \
        --toggle-collect="$2" "$bin" --alloc="$1" --expect="$4" \
        --workloads="$5" --scale="$6" 2>&1 |
        awk '/Collected/ { print $4; found = 1 } END { if (!found) print "fail" }'
}

suite_about() {
    echo "valgrind: $(valgrind --version 2>/dev/null || echo '?')"
    bench_peer_versions
}

suite_body() {
    echo "instructions per alloc+free pair (callgrind, 200,000 pairs minus 100,000; the driver's loop included)"
    echo
    printf '| workload | mmheap | glibc | jemalloc | mimalloc | tcmalloc |\n'
    printf '|---|--:|--:|--:|--:|--:|\n'
    for w in $workloads; do
        line=$("$bin" --list | awk -v w="$w" '$1 == w')
        [ -n "$line" ] || { echo "$prog: no workload $w" >&2; continue; }
        threads=$(echo "$line" | awk '{print $2}')
        [ "$threads" = 1 ] || { echo "$prog: $w: single-thread workloads only" >&2; continue; }
        P=$(echo "$line" | awk '{print $4}')
        s1=$(awk -v P="$P" 'BEGIN { printf "%.9f", 100000 / P }')
        s2=$(awk -v P="$P" 'BEGIN { printf "%.9f", 200000 / P }')
        dp=$(( $(pairs "$P" "$s2") - $(pairs "$P" "$s1") ))
        case $w in fast-*) fn=fast ;; batch) fn=batch ;; mixed) fn=mixed ;; *) fn=$w ;; esac
        row="| $w "
        for a in mmheap glibc jemalloc mimalloc tcmalloc; do
            echo "$prog: $w: $a" >&2
            case $a in
            mmheap)   k=mmheap; suf=mmh; pre=;              exp=libmmheap ;;
            glibc)    k=system; suf=sys; pre=;              exp=libc.so ;;
            jemalloc) k=system; suf=sys; pre=$lib_jemalloc; exp=libjemalloc ;;
            mimalloc) k=system; suf=sys; pre=$lib_mimalloc; exp=libmimalloc ;;
            tcmalloc) k=system; suf=sys; pre=$lib_tcmalloc; exp=libtcmalloc ;;
            esac
            if [ "$k" = system ] && [ "$a" != glibc ] && { [ -z "$pre" ] || [ ! -e "$pre" ]; }; then
                row="$row| - "; continue
            fi
            c1=$(count $k "${fn}_$suf" "$pre" $exp "$w" "$s1")
            c2=$(count $k "${fn}_$suf" "$pre" $exp "$w" "$s2")
            if [ "$c1" = fail ] || [ "$c2" = fail ]; then row="$row| failed "; continue; fi
            row="$row| $(awk -v a="$c1" -v b="$c2" -v d="$dp" 'BEGIN { printf "%.0f", (b - a) / d }') "
        done
        echo "$row|"
    done
}

bench_main instr "mmheap instructions per alloc+free pair" suite_body suite_about
