# shellcheck shell=sh
# bench/lib.sh: shell functions shared by the scripts of bench/, which source
# it.  They expect the caller's variables prog (its name, for messages),
# usage_last (the last line of the usage at the top of the script) and build
# (1: run make first).  Sourcing it records the command line (the script's
# arguments must still be "$@") and the defaults of the options every script
# takes through bench_arg: --tag=NAME, --out=FILE, --no-save.

bench_srcdir=$(cd "$(dirname "$0")" && pwd)
bench_command="bench/$(basename "$0")${*:+ $*}"
bench_tag=
bench_out=
bench_save=1
bench_results_dir=$bench_srcdir/results

# BENCH_AWK_MEDIAN: awk functions to put in front of a program: median(LIST)
# of the numbers in the space-separated string LIST ("" for none), and the
# same-repetition ratio and best peer of the allocator suites.
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
}
# same_rep_ratio(V, A, B, KEY): the median over repetitions 1..nrep of the
# ratio V[A, KEY, r] / V[B, KEY, r] within one repetition r, where both
# are there; "" if none.  KEY may join several subscripts with SUBSEP.
function same_rep_ratio(v, a, b, key,   r, list) {
    list = ""
    for (r = 1; r <= nrep; r++)
        if (((a, key, r) in v) && ((b, key, r) in v) && v[b, key, r] > 0)
            list = list " " v[a, key, r] / v[b, key, r]
    return list == "" ? "" : median(list)
}
# best_peer(M, KEY, SIGN): of the allocators al[1..na] but mmheap, the one
# whose list M[A, KEY] (as for median) has the lowest median (SIGN 1) or
# the highest (SIGN -1); "" if none has one.
function best_peer(m, key, sign,   i, a, b) {
    b = ""
    for (i = 1; i <= na; i++) {
        a = al[i]
        if (a == "mmheap" || !((a, key) in m)) continue
        if (b == "" || sign * median(m[a, key]) < sign * median(m[b, key])) b = a
    }
    return b
}'

# bench_usage: the usage, lines 2 to $usage_last of the script, uncommented.
bench_usage() { sed -n "2,${usage_last}p" "$0" | sed 's/^# \{0,1\}//'; }

# bench_arg ARG: an argument that no option of the script took.  -h and
# --help print the usage and exit 0; --tag=NAME, --out=FILE and --no-save
# are bench_main's (below); another option is an error (exit 1); anything
# else names the build directory (builddir).
bench_arg() {
    case $1 in
    -h|--help) bench_usage; exit 0 ;;
    --tag=*) bench_tag=${1#*=} ;;
    --out=*) bench_out=${1#*=} ;;
    --no-save) bench_save=0 ;;
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

# bench_rotated K WORD...: the words, starting from the (K mod count)-th
# (from 0): the order of one round, so that no allocator always goes first.
bench_rotated() {
    k=$(( $1 % ($# - 1) ))
    shift
    i=0 head='' tail=''
    for x in "$@"; do
        if [ "$i" -lt "$k" ]; then tail="$tail $x"; else head="$head $x"; fi
        i=$((i + 1))
    done
    echo $head $tail
}

# bench_peer_lib NAME: the shared library of peer allocator NAME (jemalloc,
# mimalloc, tcmalloc; glibc: libc.so.6), or empty if it is not installed.
# JEMALLOC, MIMALLOC and TCMALLOC override the paths.
bench_peer_lib() {
    case $1 in
    glibc) bench_find_lib libc.so.6 ;;
    jemalloc) echo "${JEMALLOC:-$(bench_find_lib libjemalloc.so.2)}" ;;
    mimalloc) echo "${MIMALLOC:-$(bench_find_lib libmimalloc.so.2)}" ;;
    tcmalloc) echo "${TCMALLOC:-$(bench_find_lib libtcmalloc_minimal.so.4)}" ;;
    *) echo "$prog: unknown allocator $1 (mmheap, glibc, jemalloc, mimalloc, tcmalloc)" >&2; exit 1 ;;
    esac
}

# bench_mallocs BUILD_DIR LIST: of the allocators in LIST (commas: mmheap,
# glibc, jemalloc, mimalloc, tcmalloc), those whose library is there.  Sets
# bench_active to their names and lib_NAME to each one's library (mmheap:
# MMHEAP_MALLOC, default BUILD_DIR/.libs/libmmheap-malloc.so); prints a line
# "lib<TAB>NAME<TAB>FILE" for each, and "note<TAB>NAME: ... left out" (also
# on stderr) for each that is not there.  Exits 1 if none is.
bench_mallocs() {
    bench_active=
    for a in $(echo "$2" | tr ',' ' '); do
        case $a in
        mmheap) lib=${MMHEAP_MALLOC:-$(cd "$1" && pwd)/.libs/libmmheap-malloc.so} ;;
        glibc|jemalloc|mimalloc|tcmalloc) lib=$(bench_peer_lib "$a") ;;
        *) echo "$prog: unknown allocator $a (mmheap, glibc, jemalloc, mimalloc, tcmalloc)" >&2; exit 1 ;;
        esac
        if [ -z "$lib" ] || [ ! -e "$lib" ]; then
            echo "note	$a: ${lib:-library} not found, left out"
            echo "$prog: $a: ${lib:-library} not found, left out" >&2
            continue
        fi
        eval "lib_$a=\$lib"
        echo "lib	$a	$(readlink -f "$lib")"
        bench_active="$bench_active $a"
    done
    [ -n "$bench_active" ] || { echo "$prog: no allocator to run" >&2; exit 1; }
}

# bench_maps_name LIB: the name LIB's mapping shows in /proc/PID/maps (its
# real file's), which bench_malloc run --expect looks for.
bench_maps_name() { basename "$(readlink -f "$1")"; }

# bench_plot_wanted FILE: sets do_plot to 1 if the suite draws its plot:
# asked for with --plot FILE (which needs gnuplot: exit 1 without it), or
# saved beside the results file when gnuplot is installed.
bench_plot_wanted() {
    do_plot=0
    if command -v gnuplot >/dev/null 2>&1; then
        if [ -n "$1" ] || [ "$bench_save" = 1 ]; then do_plot=1; fi
    elif [ -n "$1" ]; then
        echo "$prog: --plot needs gnuplot (apt-get install gnuplot-nox)" >&2; exit 1
    fi
}

# bench_plot_link FILE CAPTION: after gnuplot wrote $bench_plot, copies it to
# FILE (--plot; may be empty) and prints the Markdown that shows it.
bench_plot_link() {
    if [ -n "$1" ]; then cp "$bench_plot" "$1"; fi
    echo
    if [ -n "$bench_svg" ]; then
        echo "![$2]($bench_svg)"
    else
        echo "plot: $1"
    fi
}

# bench_pkgver PACKAGE: the installed version of a Debian package, or "?".
bench_pkgver() { dpkg-query -W -f '${Version}' "$1" 2>/dev/null || echo '?'; }

# bench_peer_versions: the header line on the peer allocators' packages.
bench_peer_versions() {
    echo "peers: glibc $(bench_pkgver libc6), jemalloc $(bench_pkgver libjemalloc2)," \
         "mimalloc $(bench_pkgver libmimalloc2.0), tcmalloc $(bench_pkgver libtcmalloc-minimal4)"
}

# bench_fs DIR: the header line on the filesystem of DIR.
bench_fs() {
    fs=$(df -PT "$1" 2>/dev/null | awk 'NR == 2 { print $2 " on " $1 ", mounted on " $7 }')
    mopts=$(findmnt -n -o OPTIONS --target "$1" 2>/dev/null || true)
    echo "files in: $1 ($fs${mopts:+; $mopts})"
}

# bench_loadavg: the load average over 1, 5 and 15 minutes, and the tasks
# runnable at this moment (the averages lag: a benchmark that ran thousands
# of threads a minute ago still weighs on them).
bench_loadavg() {
    awk '{ split($4, t, "/"); print $1, $2, $3 "; runnable now: " t[1] " of " t[2] " tasks" }' \
        /proc/loadavg 2>/dev/null || echo '?'
}

# ---- dated results ------------------------------------------------------------
#
# bench_main SUITE TITLE BODY [ABOUT]: runs the function BODY, the suite's
# measurements, which prints its tables as Markdown on stdout (progress goes
# to stderr).  In front of them, a header: TITLE with the date, then the
# command line, the commit of the source tree (git describe --always
# --dirty; "unknown" outside git), the machine (CPU model, CPUs, memory,
# kernel), the load average at the start and the lines the function ABOUT
# prints (peers, files, ...); after them the seconds taken and the load
# average at the end.  All of it is printed and saved in
# bench/results/YYYY-MM-DD-SUITE[-TAG].md (UTC date of the start; -2, -3,
# ... when the name is taken; a script may set bench_results_dir to save
# in another directory), or in --out=FILE; --no-save prints only.
# A BODY that draws a plot writes it to $bench_plot and links it as
# $bench_svg (empty with --no-save): it is saved beside the results file,
# with the same name and .svg.  BODY and ABOUT run in one subshell (a
# pipeline), one after the other: variables set in ABOUT reach BODY, none
# come back.  If either fails (exit, or set -e), nothing is saved and
# bench_main exits 1.
bench_main() {
    bench_suite=$1 bench_title=$2 bench_body=$3 bench_about_fn=${4:-}
    bench_start=$(date +%s)
    bench_file=
    if [ "$bench_save" = 1 ]; then
        if [ -n "$bench_out" ]; then
            bench_file=$bench_out
        else
            bench_base=$bench_results_dir/$(date -u -d "@$bench_start" +%Y-%m-%d)-$bench_suite${bench_tag:+-$bench_tag}
            bench_file=$bench_base.md
            bench_n=2
            while [ -e "$bench_file" ]; do
                bench_file=$bench_base-$bench_n.md
                bench_n=$((bench_n + 1))
            done
        fi
    fi
    bench_tmp=$(mktemp -d "${TMPDIR:-/tmp}/mmheap-results.XXXXXX")
    trap 'rm -rf "$bench_tmp"; exit 130' INT TERM
    bench_plot=$bench_tmp/plot.svg
    bench_svg=
    [ -z "$bench_file" ] || bench_svg=$(basename "${bench_file%.md}").svg
    {
        echo "# $bench_title, $(date -u -d "@$bench_start" '+%Y-%m-%d %H:%M UTC')"
        echo
        echo '```'
        echo "command: $bench_command"
        echo "commit: $(git -C "$bench_srcdir" describe --always --dirty 2>/dev/null || echo unknown)"
        cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo 2>/dev/null | head -n 1)
        echo "machine: ${cpu:-unknown CPU}, $(nproc) CPUs," \
             "$(awk '/MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo), Linux $(uname -r)"
        echo "load average at the start: $(bench_loadavg)"
        [ -z "$bench_about_fn" ] || "$bench_about_fn"
        echo '```'
        echo
        "$bench_body"
        echo
        echo "(ended $(date -u +%H:%M) UTC, after $(( $(date +%s) - bench_start )) s; load average at the end: $(bench_loadavg))"
        : > "$bench_tmp/ok"
    } | tee "$bench_tmp/out.md"
    if [ ! -f "$bench_tmp/ok" ]; then
        rm -rf "$bench_tmp"
        echo "$prog: the run failed; nothing saved" >&2
        exit 1
    fi
    if [ -n "$bench_file" ]; then
        if mkdir -p "$(dirname "$bench_file")" 2>/dev/null && cp "$bench_tmp/out.md" "$bench_file" 2>/dev/null; then
            echo "$prog: saved to $bench_file" >&2
            if [ -f "$bench_plot" ]; then
                cp "$bench_plot" "${bench_file%.md}.svg" && echo "$prog: plot saved to ${bench_file%.md}.svg" >&2
            fi
        else
            echo "$prog: could not save to $bench_file (results printed above)" >&2
        fi
    fi
    rm -rf "$bench_tmp"
}
