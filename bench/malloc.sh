#!/bin/sh
# bench/malloc.sh: libmmheap-malloc.so against glibc, jemalloc, mimalloc and
# tcmalloc as drop-in mallocs (LD_PRELOAD), printed as Markdown and saved,
# dated, under bench/results/ (with a plot, if gnuplot is installed).
#
#   bench/malloc.sh [options] [BUILD_DIR]
#
# BUILD_DIR is a configured mmheap build directory (default: the current
# directory).  The script builds bench/bench_malloc and libmmheap-malloc.la
# there (make bench-malloc-programs), then runs each workload under each
# allocator, REPS times, the allocators interleaved within a repetition in
# an order that rotates, and reports the medians of wall time and peak RSS:
#   - the workloads of bench/bench_malloc (bench_malloc --list);
#   - redis: redis-server under the allocator, loaded through redis-cli
#     --pipe (values of 16 B..3 KiB, then overwritten with other sizes and a
#     third deleted) and driven by redis-benchmark; time: the clients' wall
#     time, RSS: the server's;
#   - sqlite: the sqlite3 shell running a generated script (inserts, index
#     builds, joins, GROUP BY, UPDATE, DELETE) on an in-memory database;
#   - python: python3 with PYTHONMALLOC=malloc building dicts, lists and
#     strings and round-tripping them through JSON.
# Every run is checked: the allocator's library must show in the process's
# /proc/PID/maps (else "not loaded"), the workloads check every block they
# free, and each real program's output must match its output as installed.
#
# Options:
#   --reps N           repetitions (default 5; figures are medians)
#   --scale F          multiplies the work of every workload (default 1)
#   --threads N        threads of the bench_malloc workloads (default: CPUs,
#                      at least 2)
#   --workloads A,B    a subset of the workloads (default: all)
#   --allocators A,B   a subset of mmheap,glibc,jemalloc,mimalloc,tcmalloc
#   --quick            smoke test: --reps 1 --scale 0.2 unless given
#   --raw FILE         keep every measurement (tab separated) in FILE
#   --plot FILE.svg    bar charts (gnuplot): time relative to mimalloc and
#                      peak RSS relative to jemalloc, per workload (saved
#                      anyway beside the results file when gnuplot is there)
#   --port N           redis-server's port (default 16380)
#   --tag=NAME         save as bench/results/YYYY-MM-DD-malloc-NAME.md
#   --out=FILE         save the Markdown to FILE instead
#   --no-save          print only
#   --no-build         do not run make first
#
# Saving: bench/results/YYYY-MM-DD-malloc[-quick][-TAG].md and, with
# gnuplot, the plot beside it as .svg (-2, -3, ... when that name is
# taken); a run that fails saves nothing.
#
# Environment: JEMALLOC, MIMALLOC, TCMALLOC override the peer libraries
# (default: found with ldconfig, as by bench/run.sh), MMHEAP_MALLOC the
# mmheap one (default BUILD_DIR/.libs/libmmheap-malloc.so), PYTHON the
# interpreter (default /usr/bin/python3, Debian's).  A missing library or
# program is noted and left out.

# Lists of words ($active, $chosen) are split on purpose.
# shellcheck disable=SC2086
set -eu

prog=malloc.sh usage_last=52
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"

reps=
scale=
threads=
workloads=
allocators=mmheap,glibc,jemalloc,mimalloc,tcmalloc
quick=0
raw=
plot=
port=16380
build=1
builddir=.

# Options take their value as --opt=V or --opt V.
while [ $# -gt 0 ]; do
    case $1 in
    --*=*) opt=${1%%=*} val=${1#*=} ;;
    --reps|--scale|--threads|--workloads|--allocators|--raw|--plot|--port)
        [ $# -ge 2 ] || { echo "$prog: $1 needs a value" >&2; exit 1; }
        opt=$1 val=$2; shift ;;
    *) opt=$1 val= ;;
    esac
    case $opt in
    --reps) reps=$val ;;
    --scale) scale=$val ;;
    --threads) threads=$val ;;
    --workloads) workloads=$val ;;
    --allocators) allocators=$val ;;
    --raw) raw=$val ;;
    --plot) plot=$val ;;
    --port) port=$val ;;
    --quick) quick=1 ;;
    --no-build) build=0 ;;
    *) bench_arg "$1" ;;
    esac
    shift
done
if [ "$quick" = 1 ]; then
    reps=${reps:-1} scale=${scale:-0.2}
fi
reps=${reps:-5} scale=${scale:-1}
case $reps in ''|*[!0-9]*|0) echo "$prog: --reps: '$reps' is not a positive number" >&2; exit 1 ;; esac
case $port in ''|*[!0-9]*) echo "$prog: --port: '$port' is not a port number" >&2; exit 1 ;; esac
if ! awk -v s="$scale" 'BEGIN { exit !(s + 0 > 0) }'; then
    echo "$prog: --scale: '$scale' is not a number above 0" >&2; exit 1
fi
# The plot: asked for with --plot, or beside the saved results if gnuplot is there.
bench_plot_wanted "$plot"

bench_build "$builddir" bench-malloc-programs
bin=$builddir/bench/bench_malloc
tmp=$(mktemp -d "${TMPDIR:-/tmp}/mmheap-malloc.XXXXXX")
server=
trap 'redis_stop >/dev/null 2>&1 || true; rm -rf "$tmp"' EXIT
trap 'exit 130' INT TERM
bench_check "$tmp" "$bin"
bin=$(cd "$(dirname "$bin")" && pwd)/bench_malloc
results=$tmp/results.tsv
: > "$results"

# ---- allocators ---------------------------------------------------------------

# glibc runs with libc.so.6 preloaded: a program linked against another
# allocator (Debian's redis-server links jemalloc) then still gets glibc's.
bench_mallocs "$builddir" "$allocators" >> "$results"
active=$bench_active
set -- $active

# alloc_lib A: the library of allocator A (bench_mallocs found it).
alloc_lib() { eval "echo \"\$lib_$1\""; }

# ---- workloads ----------------------------------------------------------------

PYTHON=${PYTHON:-$( [ -x /usr/bin/python3 ] && echo /usr/bin/python3 || command -v python3 || true)}
synthetic=$("$bin" --list | cut -f 1 | tr '\n' ' ')
all="$synthetic redis sqlite python"
[ -n "$workloads" ] || workloads=$(echo $all | tr ' ' ',')
chosen=
for w in $(echo "$workloads" | tr ',' ' '); do
    case " $all " in
    *" $w "*) ;;
    *) echo "$prog: unknown workload $w (one of: $all)" >&2; exit 1 ;;
    esac
    missing=
    case $w in
    redis) for p in redis-server redis-cli redis-benchmark; do
               command -v $p >/dev/null 2>&1 || missing="$missing $p"
           done ;;
    sqlite) command -v sqlite3 >/dev/null 2>&1 || missing=sqlite3 ;;
    python) [ -n "$PYTHON" ] || missing=python3 ;;
    esac
    if [ -n "$missing" ]; then
        echo "note	$w: left out, not installed:$missing" >> "$results"
        echo "$prog: $w: left out, not installed:$missing" >&2
        continue
    fi
    chosen="$chosen $w"
done
[ -n "$chosen" ] || { echo "$prog: no workload to run" >&2; exit 1; }

# scaled N [MIN]: N times --scale, whole, at least MIN (default 1).
scaled() { awk -v n="$1" -v s="$scale" -v m="${2:-1}" 'BEGIN { v = int(n * s); print v < m ? m : v }'; }

# ---- the real programs' inputs --------------------------------------------------

# sqlite: customers, items and orders (notes of 0..199 bytes), inserted one
# statement each in a transaction; then indexes, joins, GROUP BY, an UPDATE
# that grows rows, a DELETE, and queries whose results are the output.
make_sql() {
    awk -v no="$(scaled 300000 1000)" 'BEGIN {
        nc = int(no / 15) + 1; ni = int(no / 60) + 1
        pad = "lorem ipsum dolor sit amet consectetur adipiscing elit sed do "
        while (length(pad) < 256) pad = pad pad
        print "CREATE TABLE customer(id INTEGER PRIMARY KEY, name TEXT, city TEXT);"
        print "CREATE TABLE item(id INTEGER PRIMARY KEY, title TEXT, price INTEGER);"
        print "CREATE TABLE orders(id INTEGER PRIMARY KEY, customer INTEGER, item INTEGER, qty INTEGER, note TEXT);"
        print "BEGIN;"
        for (i = 1; i <= nc; i++)
            printf "INSERT INTO customer VALUES(%d,%cc%07d%c,%ccity %d%c);\n", i, 39, i, 39, 39, i % 97, 39
        for (i = 1; i <= ni; i++)
            printf "INSERT INTO item VALUES(%d,%citem %d %s%c,%d);\n", i, 39, i, substr(pad, 1, i % 40), 39, 100 + i * 37 % 9000
        for (i = 1; i <= no; i++)
            printf "INSERT INTO orders VALUES(%d,%d,%d,%d,%c%s%c);\n", i, 1 + (i * 7919) % nc, 1 + (i * 104729) % ni, 1 + i % 13, 39, substr(pad, 1 + i % 50, (i * 31) % 200), 39
        print "COMMIT;"
        print "CREATE INDEX orders_customer ON orders(customer);"
        print "CREATE INDEX orders_item ON orders(item, qty);"
        print "SELECT c.city, count(*), sum(o.qty * i.price), max(length(o.note)) FROM orders o JOIN customer c ON c.id = o.customer JOIN item i ON i.id = o.item GROUP BY c.city ORDER BY c.city;"
        print "SELECT i.title, count(DISTINCT o.customer) AS n FROM orders o JOIN item i ON i.id = o.item GROUP BY i.id ORDER BY n DESC, i.id LIMIT 20;"
        print "UPDATE orders SET note = note || printf(%c (updated %d)%c, id) WHERE qty % 7 = 0;"
        print "DELETE FROM orders WHERE qty % 5 = 0;"
        print "SELECT count(*), sum(length(note)), total(qty) FROM orders;"
        print "SELECT customer, group_concat(item, %c,%c) FROM (SELECT customer, item FROM orders WHERE customer % 500 = 1 ORDER BY id) GROUP BY customer ORDER BY customer;"
    }' | sed "s/%c/'/g"
}

# python: records as dicts and lists, an index of lists, a JSON round trip,
# a word count, a long string cut into slices; half the records dropped
# and rebuilt; prints sizes and a digest.
make_python() {
    cat <<'EOF'
import hashlib, json, sys

n = int(sys.argv[1])
digest = hashlib.sha256()

def record(i):
    return {"id": i, "name": "user-%07d" % i, "mail": "u%d@example.org" % (i * 7919 % n),
            "tags": ["tag%d" % (i * k % 97) for k in range(i % 7)],
            "score": (i * 2654435761) % 1000003, "nested": {"a": [i, str(i)], "b": None}}

people = [record(i) for i in range(n)]
for round in range(2):
    by_tag = {}
    for p in people:
        for t in p["tags"]:
            by_tag.setdefault(t, []).append(p["id"])
    text = json.dumps(people, sort_keys=True)
    back = json.loads(text)
    assert back == people
    counts = {}
    for w in text.replace('"', " ").split():
        counts[w] = counts.get(w, 0) + 1
    top = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:8]
    digest.update(text.encode())
    print(round, len(people), len(by_tag), len(counts), *("%s=%d" % kv for kv in top))
    people = [p for p in people if p["id"] % 2] + [record(n + i + round * n) for i in range(n // 2)]

s = "".join(str(x) for x in range(n))
parts = [s[i:i + 17] for i in range(0, len(s), 17)]
digest.update("".join(reversed(parts)).encode())
print(len(s), len(parts), digest.hexdigest())
EOF
}

# redis: the RESP commands for redis-cli --pipe.  load: SET key:I with a
# value of 16, 60, 200, 900 or 3000 bytes, and every tenth key an RPUSH to
# one of 500 lists and an HSET in one of 1000 hashes; churn: key:I deleted
# if I is a multiple of 3, else overwritten with a value of another size.
make_resp() {
    awk -v keys="$(scaled 100000 1000)" -v pass="$1" '
    function cmd(n, a, b, c, d,   s) {
        s = "*" n "\r\n$" length(a) "\r\n" a "\r\n$" length(b) "\r\n" b "\r\n"
        if (n > 2) s = s "$" length(c) "\r\n" c "\r\n"
        if (n > 3) s = s "$" length(d) "\r\n" d "\r\n"
        printf "%s", s
    }
    BEGIN {
        split("16 60 200 900 3000", size, " ")
        v = "v"; while (length(v) < 3000) v = v v
        for (i = 0; i < keys; i++) {
            k = "key:" i
            if (pass == "load") {
                cmd(3, "SET", k, substr(v, 1, size[1 + i % 5]))
                if (i % 10 == 0) {
                    cmd(3, "RPUSH", "list:" (i % 500), substr(v, 1, size[1 + i % 3]))
                    cmd(4, "HSET", "hash:" (i % 1000), "f" i, substr(v, 1, 40))
                }
            } else if (i % 3 == 0)
                cmd(2, "DEL", k)
            else
                cmd(3, "SET", k, substr(v, 1, size[1 + (i + 2) % 5]))
        }
    }'
}

# redis-benchmark: fixed keys (no -r) and a request count that is a
# multiple of clients x pipeline, so the final data set, and DEBUG DIGEST,
# are the same every time.
redis_requests=$(( $(scaled 100000 800) / 800 * 800 ))
# shellcheck disable=SC2016
redis_client='redis-cli -p "$1" --pipe < "$2" && redis-cli -p "$1" --pipe < "$3" &&
    redis-benchmark -p "$1" -q -n "$4" -c 50 -P 16 -d 256 \
        -t set,get,incr,lpush,rpush,lpop,rpop,sadd,hset,spop,zadd,zpopmin > "$5"'

case " $chosen " in *" sqlite "*) make_sql > "$tmp/bench.sql" ;; esac
case " $chosen " in *" python "*) make_python > "$tmp/bench.py" ;; esac
case " $chosen " in *" redis "*)
    if redis-cli -p "$port" ping >/dev/null 2>&1; then
        echo "$prog: something already answers on port $port; choose another with --port" >&2
        exit 1
    fi
    make_resp load > "$tmp/load.resp"
    make_resp churn > "$tmp/churn.resp" ;;
esac

# ---- running and recording --------------------------------------------------------

# measure M ALLOC CMD...: runs CMD under bench_malloc run with ALLOC's
# library preloaded (none for ALLOC "as-installed"): its stdout to $M.out,
# stderr to $M.err, the measurement (wall s, RSS KiB, status, loaded) to
# $M.run.  Returns run's status (3: the library did not show in the maps).
# With run_exec=exec (in a background subshell) the runner replaces the
# subshell, so that $! is the runner's pid.
measure() {
    measure_m=$1
    if [ "$2" = as-installed ]; then
        shift 2
        set -- -- "$@"
    else
        measure_lib=$(alloc_lib "$2")
        shift 2
        set -- --preload="$measure_lib" --expect="$(bench_maps_name "$measure_lib")" -- "$@"
    fi
    rm -f "$measure_m.run"
    ${run_exec:-} "$bin" run --out="$measure_m.run" "$@" > "$measure_m.out" 2> "$measure_m.err"
}

# why RC M: what went wrong with run M, in a few words.
why() {
    case $1 in
    3) echo "the library did not show in the process's maps" ;;
    4) echo "corrupted blocks: $(head -n 1 "$2.err")" ;;
    *) if [ "$1" -gt 128 ]; then s="killed by signal $(($1 - 128))"; else s="exit status $1"; fi
       echo "$s: $(head -n 2 "$2.err" | tr '\n\t' '  ')" ;;
    esac
}

# bad W A R RC M: records that W failed under A in repetition R.
bad() {
    case $4 in 3) cell="not loaded" ;; *) cell=failed ;; esac
    echo "bad	$1	$2	$3	$cell	$(why "$4" "$5")" >> "$results"
    echo "$prog: $1 under $2: $cell ($(why "$4" "$5"))" >&2
}

# field N FILE: the N-th field of FILE's line (a bench_malloc run line).
field() { cut -f "$1" "$2"; }

# checked W A R M FILE: FILE (W's output under A) must match the output of
# the program as installed; records the result from $M.run, or the mismatch.
checked() {
    if cmp -s "$5" "$tmp/ref.$1"; then
        echo "result	$1	$2	$3	$(field 1 "$4.run")	${6:-$(field 2 "$4.run")}" >> "$results"
    else
        echo "bad	$1	$2	$3	wrong output	differs from the program's output as installed: $(diff "$tmp/ref.$1" "$5" | sed -n 2p | cut -c 1-80)" >> "$results"
        echo "$prog: $1 under $2: output differs from the program's as installed" >&2
    fi
}

run_synthetic() { # W A R
    syn_m=$tmp/$1.$2.$3
    set +e
    measure "$syn_m" "$2" "$bin" "$1" --scale="$scale" ${threads:+--threads="$threads"}
    syn_rc=$?
    set -e
    if [ "$syn_rc" = 0 ]; then
        echo "result	$1	$2	$3	$(field 1 "$syn_m.run")	$(field 2 "$syn_m.run")" >> "$results"
    else
        bad "$1" "$2" "$3" "$syn_rc" "$syn_m"
    fi
}

# The output of a real program that is compared: $M.out (python, sqlite).
run_sqlite() { # M A
    measure "$1" "$2" sqlite3 -batch :memory: < "$tmp/bench.sql"
}

run_python() ( # M A
    export PYTHONMALLOC=malloc PYTHONHASHSEED=0
    measure "$1" "$2" "$PYTHON" "$tmp/bench.py" "$(scaled 15000 1000)"
)

# redis_start M A: redis-server under A in the background (its run line in
# $M.server.run) until it answers PING; 1 if it exits first or does not
# answer within 10 s.
redis_start() {
    run_exec='exec' measure "$1.server" "$2" redis-server --port "$port" --bind 127.0.0.1 \
        --save '' --appendonly no --enable-debug-command local --daemonize no \
        --dir "$tmp" --logfile "$1.server.log" &
    server=$!
    i=0
    until redis-cli -p "$port" ping 2>/dev/null | grep -q PONG; do
        kill -0 "$server" 2>/dev/null || return 1
        if [ "$i" -ge 200 ]; then
            echo "redis-server did not answer on port $port within 10 s" >> "$1.server.err"
            return 1
        fi
        sleep 0.05
        i=$((i + 1))
    done
}

# redis_stop: shuts the server down (without saving) and returns its run's status.
redis_stop() {
    [ -n "$server" ] || return 0
    redis-cli -p "$port" shutdown nosave >/dev/null 2>&1 || kill "$server" 2>/dev/null || true
    stop_rc=0
    wait "$server" || stop_rc=$?
    server=
    return "$stop_rc"
}

# The clients' run is $M.run; the checked output, $M.out, is the clients'
# (redis-cli --pipe's summaries) with DBSIZE and DEBUG DIGEST after.
run_redis() { # M A
    if ! redis_start "$1" "$2"; then
        src=0
        redis_stop || src=$?
        cp "$1.server.err" "$1.err"
        return $((src == 0 ? 1 : src))
    fi
    crc=0
    measure "$1" as-installed sh -c "$redis_client" sh "$port" "$tmp/load.resp" \
        "$tmp/churn.resp" "$redis_requests" "$1.benchmark" || crc=$?
    { redis-cli -p "$port" dbsize; redis-cli -p "$port" debug digest; } >> "$1.out" 2>&1 || true
    src=0
    redis_stop || src=$?
    [ "$src" = 0 ] || { cp "$1.server.err" "$1.err"; return "$src"; }
    return "$crc"
}

run_real() { # W A R
    real_m=$tmp/$1.$2.$3
    set +e
    "run_$1" "$real_m" "$2"
    real_rc=$?
    set -e
    if [ "$real_rc" != 0 ]; then
        bad "$1" "$2" "$3" "$real_rc" "$real_m"
    elif [ "$1" = redis ]; then
        checked "$1" "$2" "$3" "$real_m" "$real_m.out" "$(field 2 "$real_m.server.run")"
    else
        checked "$1" "$2" "$3" "$real_m" "$real_m.out"
    fi
}

# suite_about: the header lines of this suite.
suite_about() {
    bench_fs "$tmp"
    bench_peer_versions
    echo "programs: redis $(bench_pkgver redis-server), sqlite3 $(bench_pkgver sqlite3), $("$PYTHON" --version 2>&1 || echo 'python ?')"
    echo "repetitions: $reps (allocators interleaved, order rotated), scale $scale, threads ${threads:-$(( $(nproc) > 2 ? $(nproc) : 2 ))}"
}

# suite_body: the reference runs, the repetitions, then the tables (and the plot).
suite_body() {
    trap 'redis_stop >/dev/null 2>&1 || true' EXIT
    trap 'exit 130' INT TERM
    # The reference output of each real program: one untimed run as installed
    # (which also brings its files into the page cache).
    for w in $chosen; do
        case $w in redis|sqlite|python) ;; *) continue ;; esac
        m=$tmp/$w.reference
        set +e
        "run_$w" "$m" as-installed
        rc=$?
        set -e
        if [ "$rc" = 0 ]; then
            cp "$m.out" "$tmp/ref.$w"
        else
            echo "note	$w: left out, it failed as installed ($(why "$rc" "$m"))" >> "$results"
            echo "$prog: $w: left out, it failed as installed ($(why "$rc" "$m"))" >&2
            chosen=$(echo " $chosen " | sed "s/ $w / /")
        fi
    done

    echo "$prog: $reps repetitions of {$(echo $chosen | tr ' ' ',')} x {$(echo $active | tr ' ' ',')}, scale $scale" >&2
    r=1
    while [ "$r" -le "$reps" ]; do
        k=0
        for w in $chosen; do
            for a in $(bench_rotated $((r - 1 + k)) $active); do
                echo "$prog: repetition $r/$reps: $w: $a" >&2
                case $w in
                redis|sqlite|python) run_real "$w" "$a" "$r" ;;
                *) run_synthetic "$w" "$a" "$r" ;;
                esac
            done
            k=$((k + 1))
        done
        r=$((r + 1))
    done

    [ -z "$raw" ] || cp "$results" "$raw"

    # ---- report ---------------------------------------------------------------------

    plotdata=
    [ "$do_plot" = 0 ] || plotdata=$tmp/plot
    awk -F '\t' -v allocs="$(echo $active | tr ' ' ',')" -v wls="$(echo $chosen | tr ' ' ',')" \
        -v plotdata="$plotdata" "$BENCH_AWK_MEDIAN"'
    # ratio(K, A, B, W): median over repetitions of the same-repetition ratio
    # of metric K (1 time, 2 RSS) of A to B on W; "" if there is none.
    function ratio(k, a, b, w) { return same_rep_ratio(val, a, b, k SUBSEP w) }
    # best(K, W): the peer (not mmheap) with the lowest median of K on W.
    function best(k, w) { return best_peer(vals, k SUBSEP w, 1) }
    function cell(k, a, w) {
        if ((a, k, w) in vals) return sprintf(k == 1 ? "%.3f" : "%.1f", median(vals[a, k, w]))
        return ((a, w) in badcell) ? badcell[a, w] : "-"
    }
    function absolute_table(k, title,   i, j, w, b, t, line) {
        printf "%s\n\n", title
        line = "| workload "
        for (i = 1; i <= na; i++) line = line "| " al[i] " "
        line = line "| best peer " (("mmheap" in have) ? "| mmheap / best peer " : "")
        print line "|"
        line = "|---"
        for (i = 1; i <= na + 1 + ("mmheap" in have); i++) line = line "|--:"
        print line "|"
        for (j = 1; j <= nw; j++) {
            w = wl[j]; line = "| " w " "
            for (i = 1; i <= na; i++) line = line "| " cell(k, al[i], w) " "
            b = best(k, w)
            line = line "| " (b == "" ? "-" : b) " "
            if ("mmheap" in have) {
                t = (b == "") ? "" : ratio(k, "mmheap", b, w)
                line = line "| " (t == "" ? "-" : sprintf("%.2f", t)) " "
                if (t != "") tobest[k, w] = t
            }
            print line "|"
        }
        print ""
    }
    # relative_table(K, B): every allocator but B relative to B, with a last
    # row of geometric means over the workloads; fills gm[K, A] and rel[K, A, W].
    function relative_table(k, base, title,   i, j, w, a, t, line, n, s) {
        if (!(base in have)) { printf "(no %s results: no table relative to it)\n\n", base; return }
        printf "%s\n\n", title
        line = "| workload "
        for (i = 1; i <= na; i++) if (al[i] != base) line = line "| " al[i] " "
        print line "|"
        line = "|---"
        for (i = 1; i < na; i++) line = line "|--:"
        print line "|"
        for (j = 1; j <= nw; j++) {
            w = wl[j]; line = "| " w " "
            for (i = 1; i <= na; i++) {
                a = al[i]; t = ratio(k, a, base, w)
                if (t != "") rel[k, a, w] = t
                if (a != base) line = line "| " (t == "" ? "-" : sprintf("%.2f", t)) " "
            }
            print line "|"
        }
        line = "| geometric mean "
        for (i = 1; i <= na; i++) {
            a = al[i]; n = 0; s = 0
            for (j = 1; j <= nw; j++)
                if ((k, a, wl[j]) in rel) { n++; s += log(rel[k, a, wl[j]]) }
            if (n > 0) { gm[k, a] = exp(s / n); gn[k, a] = n }
            if (a != base) line = line "| " (n > 0 ? sprintf("%.2f", gm[k, a]) : "-") " "
        }
        print line "|"
        print ""
    }
    function summary(k, base, title,   i, a, line) {
        line = ""
        for (i = 1; i <= na; i++) {
            a = al[i]
            if (!((k, a) in gm)) continue
            line = line sprintf(" %s %.2f", a, gm[k, a]) (gn[k, a] < nw ? sprintf(" (%d of %d workloads)", gn[k, a], nw) : "")
        }
        printf "**%s**:%s\n\n", title, (line == "" ? " no results" : line)
    }
    function plot_file(k, file,   i, j, w, line) {
        line = "workload"
        for (i = 1; i <= na; i++) line = line "\t" al[i]
        print line > file
        for (j = 1; j <= nw; j++) {
            w = wl[j]; line = w
            for (i = 1; i <= na; i++) line = line "\t" (((k, al[i], w) in rel) ? rel[k, al[i], w] : "-")
            print line > file
        }
        close(file)
    }
    # throughput_table(): issue 16 sets targets on reallocgrow and mixedsizes
    # in throughput: mmheap / peer is the same-repetition ratio of the peer
    # time to mmheap time (the work is the same), > 1: mmheap faster.
    # Fills thr[A, W].
    function throughput_table(   i, j, w, t, line, rows) {
        for (j = 1; j <= nw; j++) if (wl[j] in throughput_target) rows = rows " " wl[j]
        if (rows == "" || !("mmheap" in have)) return
        print "mmheap throughput relative to each peer (median over repetitions of the same-repetition ratio; > 1: mmheap faster)\n"
        line = "| workload "
        for (i = 1; i <= na; i++) if (al[i] != "mmheap") line = line "| mmheap / " al[i] " "
        print line "|"
        line = "|---"
        for (i = 1; i < na; i++) line = line "|--:"
        print line "|"
        for (j = 1; j <= nw; j++) {
            w = wl[j]
            if (!(w in throughput_target)) continue
            line = "| " w " "
            for (i = 1; i <= na; i++) {
                if (al[i] == "mmheap") continue
                t = ratio(1, al[i], "mmheap", w)
                if (t != "") thr[al[i], w] = t
                line = line "| " (t == "" ? cell(1, al[i], w) : sprintf("%.2f", t)) " "
            }
            print line "|"
        }
        print ""
    }
    # met(OK, MISSING): the verdict of a target line: not met on what was
    # measured, else not measured if a result is MISSING.
    function met(ok, missing) { return !ok ? "not met" : missing != "" ? "not measured (" missing ")" : "met" }
    # throughput_summary(W): the target lines of W, one a target; a peer
    # without a result leaves its target not measured.
    function throughput_summary(w,   i, a, line, ok, missing) {
        line = ""; ok = 1; missing = ""
        for (i = 1; i <= 4; i++) {
            a = target_peer[i]
            if (!((a, w) in thr)) {
                line = line " " a " " cell(1, a, w); missing = missing (missing == "" ? "" : ", ") a
            } else {
                line = line sprintf(" %s %.2fx", a, thr[a, w])
                if (a == "glibc") ok = thr[a, w] >= 0.5
                else ok = ok && thr[a, w] > 1
            }
            if (a == "glibc") {
                printf "**%s: mmheap throughput at least 0.5x glibc%ss**:%s: %s\n\n", w, "\047", line,
                    met(ok, missing == "" ? "" : "no result")
                line = ""; ok = 1; missing = ""
            }
        }
        printf "**%s: mmheap throughput ahead of jemalloc, mimalloc and tcmalloc**:%s: %s\n\n", w, line,
            met(ok, missing == "" ? "" : "no result for " missing)
    }
    BEGIN {
        na = split(allocs, al, ","); nw = split(wls, wl, ","); nrep = 0
        throughput_target["reallocgrow"] = throughput_target["mixedsizes"] = 1
        split("glibc jemalloc mimalloc tcmalloc", target_peer, " ")
    }
    $1 == "result" {
        w = $2; a = $3; r = $4
        val[a, 1, w, r] = $5; val[a, 2, w, r] = $6 / 1024
        vals[a, 1, w] = vals[a, 1, w] " " $5; vals[a, 2, w] = vals[a, 2, w] " " $6 / 1024
        have[a] = 1
        if (r > nrep) nrep = r
    }
    $1 == "bad" { badcell[$3, $2] = $5; problems = problems "- " $2 " under " $3 ", repetition " $4 ": " $5 ": " $6 "\n" }
    $1 == "note" { notes = notes "- " $2 "\n" }
    $1 == "lib" { lib[$2] = $3 }
    END {
        absolute_table(1, "Wall time, seconds (median of the repetitions)")
        absolute_table(2, "Peak RSS, MiB (median of the repetitions; redis: the server)")
        relative_table(1, "mimalloc", "Time relative to mimalloc (median over repetitions of the same-repetition ratio; < 1: faster)")
        relative_table(2, "jemalloc", "Peak RSS relative to jemalloc (median over repetitions of the same-repetition ratio; < 1: smaller)")
        summary(1, "mimalloc", "time, geometric mean over the workloads, relative to mimalloc")
        if ("mmheap" in have) {
            worst = ""
            for (j = 1; j <= nw; j++)
                if ((1, wl[j]) in tobest && (worst == "" || tobest[1, wl[j]] > tobest[1, worst])) worst = wl[j]
            if (worst == "") printf "**mmheap, worst workload time relative to the best peer**: no results\n\n"
            else printf "**mmheap, worst workload time relative to the best peer**: %.2f (%s; best peer %s)\n\n", tobest[1, worst], worst, best(1, worst)
        }
        summary(2, "jemalloc", "peak RSS, geometric mean over the workloads, relative to jemalloc")
        if (("mmheap" in have) && ((2, "realloc") in tobest))
            printf "**realloc: mmheap peak RSS at most 1.1x the best peer%ss**: %.2fx (%s): %s\n\n", "\047",
                tobest[2, "realloc"], best(2, "realloc"), met(tobest[2, "realloc"] <= 1.1, "")
        throughput_table()
        if ("mmheap" in have)
            for (j = 1; j <= nw; j++) if (wl[j] in throughput_target) throughput_summary(wl[j])
        printf "libraries (each checked in the maps of every process it ran in):\n\n"
        for (i = 1; i <= na; i++) printf "- %s: %s\n", al[i], lib[al[i]]
        if (problems != "") printf "\nfailures:\n\n%s", problems
        if (notes != "") printf "\nnotes:\n\n%s", notes
        if (plotdata != "") { plot_file(1, plotdata ".time"); plot_file(2, plotdata ".rss") }
    }' "$results"

    if [ "$do_plot" = 1 ]; then
        n=$(( $(echo $active | wc -w) + 1 ))
        gnuplot <<EOF
set terminal svg size 1000,800 dynamic font 'sans,11'
set output '$bench_plot'
set datafile separator '\t'
set datafile missing '-'
set style data histogram
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set key outside right top
set logscale y 2
set grid ytics
set xtics nomirror noenhanced
set multiplot layout 2,1 title 'drop-in malloc, $(date -u '+%Y-%m-%d'): $reps repetitions, scale $scale'
set title 'wall time relative to mimalloc (lower is faster)'
plot for [i=2:$n] '$tmp/plot.time' using i:xtic(1) title columnheader(i)
set title 'peak RSS relative to jemalloc (lower is smaller)'
plot for [i=2:$n] '$tmp/plot.rss' using i:xtic(1) title columnheader(i)
unset multiplot
EOF
        bench_plot_link "$plot" "Time relative to mimalloc and peak RSS relative to jemalloc, per workload"
    fi
}

suite=malloc
[ "$quick" = 1 ] && suite=malloc-quick
bench_main "$suite" "mmheap drop-in malloc benchmark" suite_body suite_about
