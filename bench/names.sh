#!/bin/sh
# bench/names.sh: a million names in a heap, mmheap's name table against
# Boost.Interprocess named objects and std::unordered_map, printed as
# Markdown and saved, dated, under bench/results/.
#
#   bench/names.sh [options] [BUILD_DIR]
#
# BUILD_DIR is a configured mmheap build directory (default: the current
# directory).  The script builds bench/bench_names there, then runs it: each
# round measures every store with 14-byte and 64-byte names, each in a fresh
# process and file, in an order that rotates from round to round.  Per name:
# insert, lookup (random order), miss and walk times and the memory the
# names add; then commit, close and reopen times.  Figures are medians over
# the rounds, ratios medians of the same-round ratio (bench/README.md says
# what each one means).
#
# Options:
#   --dir=DIR        where the heap files go (default $TMPDIR or /tmp); its
#                    filesystem is printed in the header
#   --rounds=N       rounds (default 5)
#   --n=N            names (default 1000000)
#   --passes=P       lookup and miss passes per measurement (default 5)
#   --stores=LIST    subset of mmheap,boost-rbtree,boost-hash,std-map
#   --lens=LIST      subset of short,long
#   --quick          a smoke test of about a minute (100,000 names, one
#                    round): not for the README
#   --raw=FILE       keep every measurement (tab separated) in FILE
#   --tag=NAME       save as bench/results/YYYY-MM-DD-names-NAME.md
#   --out=FILE       save the Markdown to FILE instead
#   --no-save        print only
#   --no-build       do not run make first
#
# Saving: bench/results/YYYY-MM-DD-names[-quick][-TAG].md in the source tree
# (-2, -3, ... when that name is taken); a run that fails saves nothing.
# Takes about 12 minutes on 2 CPUs; each measurement needs about 400 MiB of
# memory and 300 MiB of disk under --dir (Boost's segment is a sparse 1 GiB
# file).
set -eu

prog=names.sh usage_last=37
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"

dir=${TMPDIR:-/tmp}
rounds=5
n=1000000
passes=5
stores=
lens=
quick=0
raw=
build=1
builddir=.

while [ $# -gt 0 ]; do
    case $1 in
    --dir=*) dir=${1#*=} ;;
    --rounds=*) rounds=${1#*=} ;;
    --n=*) n=${1#*=} ;;
    --passes=*) passes=${1#*=} ;;
    --stores=*) stores=${1#*=} ;;
    --lens=*) lens=${1#*=} ;;
    --quick) quick=1 ;;
    --raw=*) raw=${1#*=} ;;
    --no-build) build=0 ;;
    *) bench_arg "$1" ;;
    esac
    shift
done
if [ "$quick" = 1 ]; then
    rounds=1 n=100000 passes=2
fi

bench_build "$builddir" bench/bench_names
bin=$builddir/bench/bench_names
bench_check "$dir" "$bin"

suite_about() {
    bench_fs "$dir"
    echo "peers: Boost $(bench_pkgver libboost-dev) (header-only), libstdc++ $(bench_pkgver libstdc++6), glibc $(bench_pkgver libc6)"
}

suite_body() {
    "$bin" --dir="$dir" --rounds="$rounds" --n="$n" --passes="$passes" \
        ${stores:+--stores="$stores"} ${lens:+--lens="$lens"} ${raw:+--raw="$raw"}
}

suite=names
[ "$quick" = 1 ] && suite=names-quick
bench_main "$suite" "mmheap names benchmark" suite_body suite_about
