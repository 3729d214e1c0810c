#!/bin/sh
# Builds mmheap out of tree with extra configure options and runs `make
# check` there, once per compiler.  `make check-sanitizers` runs it with
# --enable-sanitizers (AddressSanitizer + UndefinedBehaviorSanitizer, gcc
# and clang), `make check-debug` with --enable-debug (mmh_assert, lock
# ownership, mmh_check at the tests' quiescent points).  By hand, from
# anywhere:  BUILD_NAME=debug BUILD_FLAGS=--enable-debug sh tests/build-check.sh
#
# Environment:
#   abs_top_srcdir    source tree (default: the directory above this script)
#   BUILD_NAME        names the build directory build-$BUILD_NAME (default
#                     sanitizers)
#   BUILD_FLAGS       configure options (default --enable-sanitizers)
#   BUILD_DIR         where the builds go (default: $abs_top_builddir/build-$BUILD_NAME
#                     or ./build-$BUILD_NAME); one subdirectory per compiler
#   BUILD_COMPILERS   compilers to use (default: "gcc clang", missing ones skipped)
#   MMH_TEST_SCALE    passed to the tests (default 0.25: ASan is slower)
set -eu

here=$(cd "$(dirname "$0")" && pwd)
srcdir=${abs_top_srcdir:-$(cd "$here/.." && pwd)}
name=${BUILD_NAME:-sanitizers}
flags=${BUILD_FLAGS:---enable-sanitizers}
builddir=${BUILD_DIR:-${abs_top_builddir:-$(pwd)}/build-$name}
compilers=${BUILD_COMPILERS:-gcc clang}
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
    echo "build-check.sh: $srcdir/configure missing; run autoreconf -fi there" >&2
    exit 1
fi

# configure refuses an out-of-tree build from a source tree that is itself
# configured; build from a clean copy of the sources then.
src=$srcdir
if [ -f "$srcdir/config.status" ]; then
    src=$builddir/src
    echo "build-check.sh: $srcdir is configured in place; copying sources to $src"
    rm -rf "$src"
    mkdir -p "$src"
    if git -C "$srcdir" rev-parse --git-dir >/dev/null 2>&1; then
        (cd "$srcdir" && git ls-files -z --cached --others --exclude-standard |
            xargs -0 tar cf -) | (cd "$src" && tar xf -)
    else
        (cd "$srcdir" && tar cf - --exclude="./build-*" \
            --exclude='*.o' --exclude='*.lo' --exclude='*.la' --exclude=.libs \
            --exclude=.deps --exclude=config.status --exclude=config.log \
            --exclude=Makefile --exclude=libtool --exclude=config.h \
            --exclude=stamp-h1 .) | (cd "$src" && tar xf -)
    fi
    (cd "$src" && autoreconf -fi >/dev/null 2>&1) || {
        echo "build-check.sh: autoreconf failed in $src" >&2
        exit 1
    }
fi

status=0
ran=0
for cc in $compilers; do
    if ! command -v "$cc" >/dev/null 2>&1; then
        echo "build-check.sh: $cc not installed, skipped"
        continue
    fi
    b=$builddir/$cc
    echo "=== $cc: building in $b"
    mkdir -p "$b"
    if ! (cd "$b" && "$src/configure" -q $flags CC="$cc" \
            CFLAGS="-O1 -g" >configure.out 2>&1); then
        echo "build-check.sh: configure with $cc failed (see $b/config.log)" >&2
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
[ $ran -gt 0 ] || { echo "build-check.sh: no compiler ran" >&2; exit 1; }
exit $status
