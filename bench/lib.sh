# shellcheck shell=sh
# bench/lib.sh: shell functions shared by bench/run.sh, bench/persist.sh,
# bench/snapshot.sh and bench/malloc.sh, which source it.  They expect the
# caller's variables prog (its name, for messages), usage_last (the last line
# of the usage at the top of the script) and build (1: run make first).

# BENCH_AWK_MEDIAN: an awk function, median(LIST) of the numbers in the
# space-separated string LIST ("" for none), to put in front of a program.
BENCH_AWK_MEDIAN='
function median(list,   n, v, i, j, t) {
    n = split(list, v, " ")
    if (n == 0) return ""
    for (i = 2; i <= n; i++) {          # insertion sort (mawk has no asort)
        t = v[i] + 0
        for (j = i - 1; j >= 1 && v[j] + 0 > t; j--) v[j + 1] = v[j]
        v[j + 1] = t
    }
    if (n % 2) return v[(n + 1) / 2]
    return (v[n / 2] + v[n / 2 + 1]) / 2
}'

# bench_usage: the usage, lines 2 to $usage_last of the script, uncommented.
bench_usage() { sed -n "2,${usage_last}p" "$0" | sed 's/^# \{0,1\}//'; }

# bench_arg ARG: an argument that no option of the script took.  -h and
# --help print the usage and exit 0; another option is an error (exit 1);
# anything else names the build directory (builddir).
bench_arg() {
    case $1 in
    -h|--help) bench_usage; exit 0 ;;
    -*) echo "$prog: unknown option $1" >&2; bench_usage >&2; exit 1 ;;
    *) builddir=$1 ;;
    esac
}

# bench_build BUILD_DIR TARGET: BUILD_DIR must be a configured build
# directory; with build=1, make TARGET there.
bench_build() {
    if [ ! -f "$1/Makefile" ]; then
        echo "$prog: $1 is not a configured build directory (no Makefile)" >&2
        exit 1
    fi
    if [ "$build" = 1 ]; then
        make -C "$1" "$2" >&2
    fi
}

# bench_check DIR PROGRAM...: each PROGRAM must be built, DIR a directory.
bench_check() {
    d=$1
    shift
    for b in "$@"; do
        [ -x "$b" ] || { echo "$prog: $b not built" >&2; exit 1; }
    done
    [ -d "$d" ] || { echo "$prog: --dir $d is not a directory" >&2; exit 1; }
}

# bench_find_lib SONAME: the path of a shared library: ldconfig's entry (the
# 64-bit one if there are several), else the first of the usual directories
# that has it; empty if none.
bench_find_lib() {
    p=$( (ldconfig -p 2>/dev/null || /sbin/ldconfig -p 2>/dev/null) |
         awk -v n="$1" '$1 == n && /x86-64|64bit/ { print $NF; exit }
                        $1 == n && !f { f = $NF } END { if (f) print f }' | head -n 1)
    if [ -z "$p" ]; then
        ma=$(gcc -print-multiarch 2>/dev/null || true)
        for d in /usr/lib/$ma /lib/$ma /usr/lib64 /usr/lib /usr/local/lib; do
            if [ -e "$d/$1" ]; then p=$d/$1; break; fi
        done
    fi
    echo "$p"
}

# bench_about DIR: the header lines on the source, the machine and the
# filesystem of DIR.
bench_about() {
    if [ -e "$(dirname "$0")/../.git" ] && command -v git >/dev/null 2>&1; then
        echo "source: $(git -C "$(dirname "$0")/.." describe --always --dirty 2>/dev/null || echo '?')"
    fi
    cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
    echo "machine: ${cpu:-?}, $(nproc) CPUs, $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo), Linux $(uname -r)"
    fs=$(df -PT "$1" 2>/dev/null | awk 'NR == 2 { print $2 " on " $1 ", mounted on " $7 }')
    mopts=$(findmnt -n -o OPTIONS --target "$1" 2>/dev/null || true)
    echo "files in: $1 ($fs${mopts:+; $mopts})"
}

# bench_done START: the closing line, with the seconds since START (date +%s).
bench_done() {
    echo "(all parts: $(( $(date +%s) - $1 )) s; load average after: $(cut -d' ' -f1-3 /proc/loadavg))"
}
