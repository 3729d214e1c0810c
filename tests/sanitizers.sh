#!/bin/sh
# Builds mmheap out of tree with AddressSanitizer + UndefinedBehaviorSanitizer
# (configure --enable-sanitizers) and runs `make check` there, with gcc and,
# when installed, clang.  Called by `make check-sanitizers`; can also be run
# by hand from anywhere:  sh tests/sanitizers.sh
#
# Environment:
#   abs_top_srcdir    source tree (default: the directory above this script)
#   SAN_BUILDDIR      where the builds go (default: $abs_top_builddir/build-sanitizers
#                     or ./build-sanitizers); one subdirectory per compiler
#   SAN_COMPILERS     compilers to use (default: "gcc clang", missing ones skipped)
#   MMH_TEST_SCALE    passed to the tests (default 0.25: ASan is slower)
set -eu

here=$(cd "$(dirname "$0")" && pwd)
srcdir=${abs_top_srcdir:-$(cd "$here/.." && pwd)}
builddir=${SAN_BUILDDIR:-${abs_top_builddir:-$(pwd)}/build-sanitizers}
compilers=${SAN_COMPILERS:-gcc clang}
MAKE=${MAKE:-make}
jobs=$(nproc 2>/dev/null || echo 2)
MMH_TEST_SCALE=${MMH_TEST_SCALE:-0.25}
export MMH_TEST_SCALE

# ASan: abort on the first error with a useful report; UBSan: print stacks.
# tests/asan.supp: the writes of heap ranges, which hold poisoned free blocks.
ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=0:detect_leaks=1:allocator_may_return_null=1:suppressions=$srcdir/tests/asan.supp}
UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export ASAN_OPTIONS UBSAN_OPTIONS

if [ ! -x "$srcdir/configure" ]; then
    echo "sanitizers.sh: $srcdir/configure missing; run autoreconf -fi there" >&2
    exit 1
fi

# configure refuses an out-of-tree build from a source tree that is itself
# configured; build from a clean copy of the sources then.
src=$srcdir
if [ -f "$srcdir/config.status" ]; then
    src=$builddir/src
    echo "sanitizers.sh: $srcdir is configured in place; copying sources to $src"
    rm -rf "$src"
    mkdir -p "$src"
    if git -C "$srcdir" rev-parse --git-dir >/dev/null 2>&1; then
        (cd "$srcdir" && git ls-files -z --cached --others --exclude-standard |
            xargs -0 tar cf -) | (cd "$src" && tar xf -)
    else
        (cd "$srcdir" && tar cf - --exclude=./build-sanitizers \
            --exclude='*.o' --exclude='*.lo' --exclude='*.la' --exclude=.libs \
            --exclude=.deps --exclude=config.status --exclude=config.log \
            --exclude=Makefile --exclude=libtool --exclude=config.h \
            --exclude=stamp-h1 .) | (cd "$src" && tar xf -)
    fi
    (cd "$src" && autoreconf -fi >/dev/null 2>&1) || {
        echo "sanitizers.sh: autoreconf failed in $src" >&2
        exit 1
    }
fi

status=0
ran=0
for cc in $compilers; do
    if ! command -v "$cc" >/dev/null 2>&1; then
        echo "sanitizers.sh: $cc not installed, skipped"
        continue
    fi
    b=$builddir/$cc
    echo "=== $cc: building in $b"
    mkdir -p "$b"
    if ! (cd "$b" && "$src/configure" -q --enable-sanitizers CC="$cc" \
            CFLAGS="-O1 -g" >configure.out 2>&1); then
        echo "sanitizers.sh: configure with $cc failed (see $b/config.log)" >&2
        status=1
        continue
    fi
    ran=$((ran + 1))
    if (cd "$b" && $MAKE -j"$jobs" check); then
        echo "=== $cc: make check passed"
    else
        echo "=== $cc: make check FAILED (logs: $b/tests/*.log)" >&2
        status=1
    fi
done
[ $ran -gt 0 ] || { echo "sanitizers.sh: no compiler ran" >&2; exit 1; }
exit $status
