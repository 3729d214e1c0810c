#!/bin/sh
# Runs each test program under valgrind memcheck; exits non-zero if any
# program fails or valgrind reports an error (including definite or possible
# leaks).  Called by `make check-valgrind` from the build directory with the
# programs as arguments (libtool wrappers: run through libtool --mode=execute
# so valgrind sees the real binary and the uninstalled library).
#
# Environment: LIBTOOL (default ./libtool), MMH_TEST_SCALE (default 0.02),
# VALGRIND (default valgrind), VALGRIND_OPTS (extra options).
set -u

LIBTOOL=${LIBTOOL:-./libtool}
VALGRIND=${VALGRIND:-valgrind}
MMH_TEST_SCALE=${MMH_TEST_SCALE:-0.02}
export MMH_TEST_SCALE

if ! command -v "$VALGRIND" >/dev/null 2>&1; then
    echo "valgrind.sh: $VALGRIND not found" >&2
    exit 1
fi
if [ $# -eq 0 ]; then
    echo "usage: valgrind.sh PROGRAM..." >&2
    exit 2
fi

logdir=tests/valgrind-logs
mkdir -p "$logdir" || exit 1

status=0
failed=
for prog in "$@"; do
    name=$(basename "$prog")
    log=$logdir/$name.log
    rm -f "$log" "$logdir/$name".*.log
    printf '%-24s ' "$name"
    # %p: forked children get their own log files.
    # The mprotect tracker's handler returns to a store that faulted on a
    # protected heap page, so valgrind must know the exact state at every
    # memory access, also inside a function it reached by chasing a call:
    # with chasing, a fault at a helper's first store (the tests' helper
    # library, out of line) resumed in the caller and crashed it.
    $LIBTOOL --mode=execute "$VALGRIND" \
        --error-exitcode=99 \
        --vex-iropt-register-updates=allregs-at-mem-access \
        --vex-guest-chase=no \
        --leak-check=full \
        --errors-for-leak-kinds=definite,possible \
        --show-leak-kinds=definite,possible \
        --track-fds=no \
        --child-silent-after-fork=no \
        --suppressions="$(dirname "$0")/valgrind.supp" \
        --log-file="$logdir/$name.%p.log" \
        ${VALGRIND_OPTS:-} \
        "$prog" >"$log" 2>&1
    rc=$?
    # any valgrind error in a child shows in its own log
    errs=$(cat "$logdir/$name".*.log 2>/dev/null |
           grep -E 'ERROR SUMMARY: [1-9]' | head -n 1)
    # valgrind itself giving up (an internal assertion) shows in the logs
    fatal=$(cat "$logdir/$name".*.log "$log" 2>/dev/null |
            grep -E 'Valgrind: FATAL|valgrind: the .impossible. happened' | head -n 1)
    if [ $rc -ne 0 ] || [ -n "$errs" ] || [ -n "$fatal" ]; then
        echo "FAIL (exit $rc) ${errs:+[$errs]}${fatal:+[valgrind crashed: $fatal]}"
        status=1
        failed="$failed $name"
    else
        echo "ok"
    fi
done

if [ $status -ne 0 ]; then
    echo "valgrind failures:$failed (logs in $logdir/)" >&2
fi
exit $status
