# shellcheck shell=sh
# bench/lib.sh: shell functions shared by bench/persist.sh and
# bench/snapshot.sh, which source it.  They expect the caller's variables
# prog (its name, for messages), usage_last (the last line of the usage at
# the top of the script) and build (1: run make first).

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

# bench_about DIR: the header lines on the source, the machine and the
# filesystem of DIR.
bench_about() {
    if [ -d "$(dirname "$0")/../.git" ] && command -v git >/dev/null 2>&1; then
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
