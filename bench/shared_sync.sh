#!/bin/sh
# bench/shared_sync.sh: how a shared-mode commit should make its dirty pages
# durable, printed as Markdown and saved, dated, under bench/results/.
#
#   bench/shared_sync.sh [options] [BUILD_DIR]
#
# BUILD_DIR is a configured mmheap build directory (default: the current
# directory).  The script builds bench/bench_shared_sync there, then runs it
# RUNS times.  Each run dirties 200 scattered pages of a 1 GiB MAP_SHARED
# file under --dir and makes them durable either with msync(MS_SYNC) per
# page or with sync_file_range(SYNC_FILE_RANGE_WRITE) per page and one
# fdatasync, alternating, 21 times each; it reports the medians.  Shared-mode
# mmh_commit uses the second way (lib/commit.c, sync_shared).
#
# Options:
#   --dir=DIR        where the 1 GiB file goes (default $TMPDIR or /tmp)
#   --runs=N         runs of the program (default 3)
#   --tag=NAME       save as bench/results/YYYY-MM-DD-shared-sync-NAME.md
#   --out=FILE       save the Markdown to FILE instead
#   --no-save        print only
#   --no-build       do not run make first
set -eu

prog=shared_sync.sh usage_last=21
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"

dir=${TMPDIR:-/tmp}
runs=3
build=1
builddir=.

while [ $# -gt 0 ]; do
    case $1 in
    --dir=*) dir=${1#*=} ;;
    --runs=*) runs=${1#*=} ;;
    --no-build) build=0 ;;
    *) bench_arg "$1" ;;
    esac
    shift
done
case $runs in ''|*[!0-9]*|0) echo "$prog: --runs: '$runs' is not a positive number" >&2; exit 1 ;; esac

bench_build "$builddir" bench/bench_shared_sync
bin=$builddir/bench/bench_shared_sync
bench_check "$dir" "$bin"

suite_about() { bench_fs "$dir"; }

suite_body() {
    echo "200 scattered pages of a 1 GiB MAP_SHARED file made durable; each run: median of 21 of each way, alternating"
    echo
    echo "| run | msync(MS_SYNC) per page, ms | sync_file_range per page + fdatasync, ms | ratio |"
    echo "|--:|--:|--:|--:|"
    ratios=
    i=1
    while [ "$i" -le "$runs" ]; do
        echo "$prog: run $i/$runs" >&2
        out=$("$bin" "$dir")
        a=$(echo "$out" | awk -F '|' '/msync\(MS_SYNC\) per range/ { gsub(/ /, "", $3); print $3 }')
        b=$(echo "$out" | awk -F '|' '/sync_file_range per range/ { gsub(/ /, "", $3); print $3 }')
        if [ -z "$a" ] || [ -z "$b" ]; then
            echo "$prog: unexpected output: $out" >&2
            exit 1
        fi
        r=$(awk -v a="$a" -v b="$b" 'BEGIN { printf "%.2f", b / a }')
        ratios="$ratios $r"
        echo "| $i | $a | $b | $r |"
        i=$((i + 1))
    done
    echo
    echo "**sync_file_range + fdatasync / per-page msync, median over the runs**: $(awk -v l="$ratios" "$BENCH_AWK_MEDIAN"' BEGIN { printf "%.2f", median(l) }')"
}

bench_main shared-sync "mmheap shared-mode sync benchmark" suite_body suite_about
