#!/bin/sh
# bench/persist.sh: mmheap persistence benchmarks, printed as Markdown and
# saved, dated, under bench/results/.
#
#   bench/persist.sh [options] [BUILD_DIR]
#
# BUILD_DIR is a configured mmheap build directory (default: the current
# directory).  The script builds bench/bench_persist and
# bench/bench_persist_alloc there (make bench-persist-programs), probes which
# trackers work, then runs the parts (bench/README.md says what each
# figure means):
#   small      commits of 1, 16 and 256 scattered dirty pages in a 64 MiB
#              heap, private (uffd, mprotect, none) and shared, against the
#              floor: pwrite of the same pages where they lie + one fdatasync;
#   commit     200 scattered dirty pages in a 1 GiB heap, the same
#              configurations, against the floor and msync(MS_SYNC) of a
#              whole 1 GiB shared mapping;
#   sustained  the 200-page commit back to back for 30 s (uffd, else
#              mprotect), checkpoints included, against the floor back to
#              back: commits/s, latency p50/p99, bytes written per commit;
#   recovery   a child makes 200 commits of 200 pages and dies by SIGKILL;
#              mmh_open afterwards (the recovery) timed, warm and cold cache;
#   firstwrite first-write cost per page for each tracker;
#   alloc      persistent alloc/free throughput with a commit every 10,000
#              operations against PMDK libpmemobj and Boost.Interprocess.
# Every part reports bytes written per byte of pages changed: write_bytes of
# /proc/self/io and the sectors written by the device holding --dir.
#
# Options:
#   --dir=DIR        where the heap files go (default $TMPDIR or /tmp); its
#                    filesystem is printed in the header
#   --quick          a smoke test, a few seconds a part: not for the README
#   --only=LIST      subset of small,commit,sustained,recovery,firstwrite,alloc
#   --seconds=S      sustained: seconds per measurement (default 30)
#   --raw=FILE       keep every measurement (tab separated) in FILE
#   --small-opts=S, --commit-opts=S, --sustained-opts=S, --recovery-opts=S,
#   --firstwrite-opts=S, --alloc-opts=S
#                    extra options for that part (see bench_persist --help
#                    and bench_persist_alloc --help)
#   --tag=NAME       save as bench/results/YYYY-MM-DD-persist-NAME.md
#   --out=FILE       save the Markdown to FILE instead
#   --no-save        print only
#   --no-build       do not run make first
#
# Saving: bench/results/YYYY-MM-DD-persist[-quick][-TAG].md in the source
# tree (-2, -3, ... when that name is taken); a run that fails saves
# nothing.  Needs about 8 GiB of free disk and memory under --dir for the
# default run (four 1 GiB heaps, a 1 GiB plain file, their private copies).
set -eu

prog=persist.sh usage_last=48
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"

all=small,commit,sustained,recovery,firstwrite,alloc
dir=${TMPDIR:-/tmp}
quick=0
only=$all
seconds=
raw=
sopts=
copts=
uopts=
ropts=
fopts=
aopts=
build=1
builddir=.

while [ $# -gt 0 ]; do
    case $1 in
    --dir=*) dir=${1#*=} ;;
    --quick) quick=1 ;;
    --only=*) only=${1#*=} ;;
    --seconds=*) seconds=${1#*=} ;;
    --raw=*) raw=${1#*=} ;;
    --small-opts=*) sopts=${1#*=} ;;
    --commit-opts=*) copts=${1#*=} ;;
    --sustained-opts=*) uopts=${1#*=} ;;
    --recovery-opts=*) ropts=${1#*=} ;;
    --firstwrite-opts=*) fopts=${1#*=} ;;
    --alloc-opts=*) aopts=${1#*=} ;;
    --no-build) build=0 ;;
    *) bench_arg "$1" ;;
    esac
    shift
done
for p in $(echo "$only" | tr ',' ' '); do
    case ,$all, in
    *,"$p",*) ;;
    *) echo "$prog: unknown part $p (parts: $all)" >&2; exit 1 ;;
    esac
done

bench_build "$builddir" bench-persist-programs
bp=$builddir/bench/bench_persist
bpa=$builddir/bench/bench_persist_alloc
bench_check "$dir" "$bp" "$bpa"

rawopt=
[ -n "$raw" ] && rawopt="--raw=$raw"
if [ "$quick" = 1 ]; then
    sopts="--heap-mib=16 --reps=5 --none-reps=1 $sopts"
    copts="--heap-mib=64 --reps=5 --none-reps=1 $copts"
    uopts="--heap-mib=64 --seconds=2 $uopts"
    ropts="--heap-mib=64 --commits=20 --reps=2 $ropts"
    fopts="--fw-pages=4096 --rounds=2 $fopts"
    aopts="--rounds=1 --objects=20000 --ops=40000 --pmdk-seconds=0.5 $aopts"
fi
[ -n "$seconds" ] && uopts="--seconds=$seconds $uopts"

want() { case ",$only," in *,"$1",*) return 0 ;; esac; return 1; }

# suite_about: the header lines of this suite; probes the trackers (trackers: those
# that work; one: the first of uffd, mprotect, none that works).
suite_about() {
    bench_fs "$dir"
    echo "peers: libpmemobj $(bench_pkgver libpmemobj1), Boost $(bench_pkgver libboost1.74-dev)"
    trackers=
    for t in uffd mprotect none; do
        if msg=$("$bp" probe --tracker=$t --dir="$dir" 2>&1); then
            trackers="$trackers${trackers:+,}$t"
            echo "tracker $t: works"
        else
            echo "tracker $t: left out ($(echo "$msg" | tail -n 1))"
        fi
    done
    [ -n "$trackers" ] || { echo "$prog: no tracker works" >&2; exit 1; }
    one=
    for t in uffd mprotect none; do
        case ,$trackers, in *,$t,*) one=${one:-$t} ;; esac
    done
}

suite_body() {
    if want small; then
        "$bp" small --dir="$dir" --trackers="$trackers" $rawopt $sopts
    fi
    if want commit; then
        "$bp" commit --dir="$dir" --trackers="$trackers" $rawopt $copts
    fi
    if want sustained; then
        "$bp" sustained --dir="$dir" --tracker="$one" $rawopt $uopts
    fi
    if want recovery; then
        "$bp" recovery --dir="$dir" --tracker="$one" $rawopt $ropts
    fi
    if want firstwrite; then
        "$bp" firstwrite --dir="$dir" --trackers="$trackers" $rawopt $fopts
    fi
    if want alloc; then
        "$bpa" --dir="$dir" $rawopt $aopts
    fi
}

suite=persist
[ "$quick" = 1 ] && suite=persist-quick
bench_main "$suite" "mmheap persistence benchmarks" suite_body suite_about
