#!/bin/sh
# bench/persist.sh: mmheap persistence benchmarks, printed as Markdown.
#
#   bench/persist.sh [options] [BUILD_DIR]
#
# BUILD_DIR is a configured mmheap build directory (default: the current
# directory).  The script builds bench/bench_persist and
# bench/bench_persist_alloc there (make bench-persist-programs), probes which
# trackers work, then runs:
#   1. commit latency: 200 scattered dirty pages in a 1 GiB heap, private
#      (uffd, mprotect, none) and shared, against pwrite+fdatasync of the same
#      pages (the floor) and msync(MS_SYNC) of a whole 1 GiB shared mapping;
#   2. first-write cost per page for each tracker;
#   3. persistent alloc/free throughput with a commit every 10,000 operations
#      against PMDK libpmemobj and Boost.Interprocess managed_mapped_file.
#
# Options:
#   --dir=DIR        where the heap files go (default $TMPDIR or /tmp); its
#                    filesystem is printed in the header
#   --quick          smaller run (256 MiB heap, 10 repetitions, 16384 pages,
#                    1 alloc round): a smoke test, not for the README
#   --only=LIST      subset of commit,firstwrite,alloc
#   --raw=FILE       keep every measurement (tab separated) in FILE
#   --commit-opts=S, --firstwrite-opts=S, --alloc-opts=S
#                    extra options for that part (see bench_persist --help
#                    and bench_persist_alloc --help)
#   --no-build       do not run make first
#
# Needs about 8 GiB of free disk and memory under --dir for the default run
# (four 1 GiB heaps, a 1 GiB plain file, their private copies).
set -eu

prog=persist.sh usage_last=30
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"

dir=${TMPDIR:-/tmp}
quick=0
only=commit,firstwrite,alloc
raw=
copts=
fopts=
aopts=
build=1
builddir=.

while [ $# -gt 0 ]; do
    case $1 in
    --dir=*) dir=${1#*=} ;;
    --quick) quick=1 ;;
    --only=*) only=${1#*=} ;;
    --raw=*) raw=${1#*=} ;;
    --commit-opts=*) copts=${1#*=} ;;
    --firstwrite-opts=*) fopts=${1#*=} ;;
    --alloc-opts=*) aopts=${1#*=} ;;
    --no-build) build=0 ;;
    *) bench_arg "$1" ;;
    esac
    shift
done

bench_build "$builddir" bench-persist-programs
bp=$builddir/bench/bench_persist
bpa=$builddir/bench/bench_persist_alloc
bench_check "$dir" "$bp" "$bpa"

rawopt=
[ -n "$raw" ] && rawopt="--raw=$raw"
if [ "$quick" = 1 ]; then
    copts="--heap-mib=256 --reps=10 --none-reps=2 $copts"
    fopts="--fw-pages=16384 --rounds=3 $fopts"
    aopts="--rounds=1 --ops=100000 $aopts"
fi

pkgver() { dpkg-query -W -f '${Version}' "$1" 2>/dev/null || echo "not installed"; }

echo '```'
echo "mmheap persistence benchmarks, $(date -u '+%Y-%m-%d %H:%M UTC')"
bench_about "$dir"
echo "peers: libpmemobj $(pkgver libpmemobj1), Boost $(pkgver libboost1.74-dev)"
echo "load average before the run: $(cut -d' ' -f1-3 /proc/loadavg)"

trackers=
for t in uffd mprotect none; do
    if msg=$("$bp" probe --tracker=$t --dir="$dir" 2>&1); then
        trackers="$trackers${trackers:+,}$t"
        echo "tracker $t: works"
    else
        echo "tracker $t: left out ($(echo "$msg" | tail -n 1))"
    fi
done
echo '```'
echo
[ -n "$trackers" ] || { echo "persist.sh: no tracker works" >&2; exit 1; }

start=$(date +%s)
case ",$only," in *,commit,*)
    "$bp" commit --dir="$dir" --trackers="$trackers" $rawopt $copts ;;
esac
case ",$only," in *,firstwrite,*)
    "$bp" firstwrite --dir="$dir" --trackers="$trackers" $rawopt $fopts ;;
esac
case ",$only," in *,alloc,*)
    "$bpa" --dir="$dir" $rawopt $aopts ;;
esac
bench_done "$start"
