#!/bin/sh
# bench/instr.sh: instructions per alloc+free pair, counted by callgrind.
#
#   bench/instr.sh [--no-build] [BUILD_DIR [WORKLOAD...]]
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
# Environment: JEMALLOC, MIMALLOC, TCMALLOC as for run.sh.
set -eu

build=1
if [ "${1:-}" = --no-build ]; then build=0; shift; fi
builddir=${1:-.}
[ $# -gt 0 ] && shift
workloads=${*:-fast-16 fast-1024 batch mixed}

command -v valgrind >/dev/null || { echo "instr.sh: valgrind not found" >&2; exit 1; }
[ -f "$builddir/Makefile" ] || { echo "instr.sh: $builddir is not a build directory" >&2; exit 1; }
[ "$build" = 1 ] && make -C "$builddir" bench-programs >&2
bin=$builddir/bench/bench_alloc

libdir=/usr/lib/$(gcc -print-multiarch 2>/dev/null || echo x86_64-linux-gnu)
lib_jemalloc=${JEMALLOC:-$libdir/libjemalloc.so.2}
lib_mimalloc=${MIMALLOC:-$libdir/libmimalloc.so.2}
lib_tcmalloc=${TCMALLOC:-$libdir/libtcmalloc_minimal.so.4}

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

printf '| workload | mmheap | glibc | jemalloc | mimalloc | tcmalloc |\n'
printf '|---|--:|--:|--:|--:|--:|\n'
for w in $workloads; do
    line=$("$bin" --list | awk -v w="$w" '$1 == w')
    [ -n "$line" ] || { echo "instr.sh: no workload $w" >&2; continue; }
    threads=$(echo "$line" | awk '{print $2}')
    [ "$threads" = 1 ] || { echo "instr.sh: $w: single-thread workloads only" >&2; continue; }
    P=$(echo "$line" | awk '{print $4}')
    s1=$(awk -v P="$P" 'BEGIN { printf "%.9f", 100000 / P }')
    s2=$(awk -v P="$P" 'BEGIN { printf "%.9f", 200000 / P }')
    dp=$(( $(pairs "$P" "$s2") - $(pairs "$P" "$s1") ))
    case $w in fast-*) fn=fast ;; batch) fn=batch ;; mixed) fn=mixed ;; *) fn=$w ;; esac
    row="| $w "
    for a in mmheap glibc jemalloc mimalloc tcmalloc; do
        case $a in
        mmheap)   k=mmheap; suf=mmh; pre=;              exp=libmmheap ;;
        glibc)    k=system; suf=sys; pre=;              exp=libc.so ;;
        jemalloc) k=system; suf=sys; pre=$lib_jemalloc; exp=libjemalloc ;;
        mimalloc) k=system; suf=sys; pre=$lib_mimalloc; exp=libmimalloc ;;
        tcmalloc) k=system; suf=sys; pre=$lib_tcmalloc; exp=libtcmalloc ;;
        esac
        if [ -n "$pre" ] && [ ! -e "$pre" ]; then row="$row| - "; continue; fi
        c1=$(count $k ${fn}_$suf "$pre" $exp "$w" "$s1")
        c2=$(count $k ${fn}_$suf "$pre" $exp "$w" "$s2")
        if [ "$c1" = fail ] || [ "$c2" = fail ]; then row="$row| failed "; continue; fi
        row="$row| $(awk -v a="$c1" -v b="$c2" -v d="$dp" 'BEGIN { printf "%.0f", (b - a) / d }') "
    done
    echo "$row|"
done
