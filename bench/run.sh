#!/bin/sh
# bench/run.sh: mmheap vs glibc malloc, jemalloc, mimalloc and tcmalloc.
#
#   bench/run.sh [options] [BUILD_DIR]
#
# BUILD_DIR is a configured mmheap build directory (default: the current
# directory).  The script builds bench/bench_alloc there (make bench-programs),
# then runs it ROUNDS times per allocator, interleaving the allocators within
# each round (the order rotates from round to round), and prints the medians
# as Markdown, saved in bench/results/YYYY-MM-DD-alloc.md.
#
# Peers run the very same binary with --alloc=system under LD_PRELOAD; the
# binary itself checks (dladdr of malloc + /proc/self/maps) that the preloaded
# library really provides malloc, and a peer that did not load is reported as
# "not loaded", never with glibc's numbers.
#
# Options:
#   --rounds N          rounds (default 5; results are medians over rounds)
#   --scale F           iteration-count multiplier passed to bench_alloc (default 1)
#   --workloads A,B     subset of workloads (bench_alloc --list)
#   --allocators A,B    subset of: mmheap,glibc,jemalloc,mimalloc,tcmalloc
#   --raw FILE          keep the raw per-round results (tab separated) in FILE
#   --tag=NAME          save as bench/results/YYYY-MM-DD-alloc-NAME.md
#   --out=FILE          save the Markdown to FILE instead
#   --no-save           print only
#   --no-build          do not run make first
#
# Environment: JEMALLOC, MIMALLOC, TCMALLOC override the paths of the peer
# libraries (default: found with ldconfig or in the multiarch lib directory).
set -eu

prog=run.sh usage_last=29
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"

rounds=5
scale=1
workloads=
allocators=mmheap,glibc,jemalloc,mimalloc,tcmalloc
raw=
build=1
builddir=.

while [ $# -gt 0 ]; do
    case $1 in
    --rounds) rounds=$2; shift ;;
    --rounds=*) rounds=${1#*=} ;;
    --scale) scale=$2; shift ;;
    --scale=*) scale=${1#*=} ;;
    --workloads) workloads=$2; shift ;;
    --workloads=*) workloads=${1#*=} ;;
    --allocators) allocators=$2; shift ;;
    --allocators=*) allocators=${1#*=} ;;
    --raw) raw=$2; shift ;;
    --raw=*) raw=${1#*=} ;;
    --no-build) build=0 ;;
    *) bench_arg "$1" ;;
    esac
    shift
done

bench_build "$builddir" bench-programs
bin=$builddir/bench/bench_alloc
[ -x "$bin" ] || { echo "run.sh: $bin not built" >&2; exit 1; }

# name -> "PRELOAD|ALLOC|EXPECT"
spec() {
    case $1 in
    mmheap)   echo "|mmheap|libmmheap" ;;
    glibc)    echo "|system|libc.so" ;;
    jemalloc|mimalloc|tcmalloc) echo "$(bench_peer_lib "$1")|system|lib$1" ;;
    *) echo "run.sh: unknown allocator $1" >&2; exit 1 ;;
    esac
}

tmp=$(mktemp -d "${TMPDIR:-/tmp}/mmheap-bench.XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM
results=$tmp/results.tsv
: > "$results"

# Allocators that can run at all (a missing peer library is noted, not fatal).
active=
for a in $(echo "$allocators" | tr ',' ' '); do
    s=$(spec "$a")
    pre=${s%%|*}
    case $a in
    jemalloc|mimalloc|tcmalloc)
        if [ -z "$pre" ] || [ ! -e "$pre" ]; then
            echo "note	$a	library not found (install the Debian package or set $(echo "$a" | tr a-z A-Z))" >> "$results"
            echo "run.sh: $a: library not found, skipped" >&2
            continue
        fi ;;
    esac
    active="$active $a"
done
[ -n "$active" ] || { echo "run.sh: no allocator to run" >&2; exit 1; }

wl_opt=
[ -n "$workloads" ] && wl_opt="--workloads=$workloads"

# suite_about: the header lines of this suite.
suite_about() {
    echo "rounds: $rounds (allocators interleaved, order rotated each round), scale $scale"
    bench_peer_versions
}

# suite_body: the rounds, then the tables.
suite_body() {
    echo "run.sh: $rounds rounds x {$(echo $active | tr ' ' ',')}, scale $scale" >&2
    r=1
    while [ "$r" -le "$rounds" ]; do
        for a in $(bench_rotated $((r - 1)) $active); do
            grep -q "^skip	$a	" "$results" && continue
            s=$(spec "$a")
            pre=${s%%|*}; rest=${s#*|}; kind=${rest%%|*}; expect=${rest#*|}
            echo "run.sh: round $r/$rounds: $a" >&2
            out=$tmp/out.$a.$r
            set +e
            if [ -n "$pre" ]; then
                LD_PRELOAD=$pre "$bin" --alloc="$kind" --expect="$expect" --label="$a" \
                    --scale="$scale" $wl_opt > "$out" 2> "$out.err"
            else
                "$bin" --alloc="$kind" --expect="$expect" --label="$a" \
                    --scale="$scale" $wl_opt > "$out" 2> "$out.err"
            fi
            rc=$?
            set -e
            awk -v r="$r" -F '\t' '$1 == "result" { print "result\t" $2 "\t" $3 "\t" r "\t" $4 "\t" $6 }
                                   $1 == "info" && r == 1 { print }' "$out" >> "$results"
            if [ "$rc" = 3 ]; then
                echo "skip	$a	$(head -n 1 "$out.err")" >> "$results"
                echo "run.sh: $a: preload did not take effect; not reported" >&2
            elif [ "$rc" != 0 ]; then
                what="exit status $rc"
                [ "$rc" -gt 128 ] && what="killed by signal $((rc - 128))"
                echo "note	$a	round $r: $what after $(grep -c '^result' "$out") results: $(head -n 2 "$out.err" | tr '\n' ' ')" >> "$results"
                echo "run.sh: $a: round $r failed ($what)" >&2
                sed 's/^/    /' "$out.err" | head -n 5 >&2
            fi
        done
        r=$((r + 1))
    done

    [ -z "$raw" ] || cp "$results" "$raw"


    # ---- report ---------------------------------------------------------------
    awk -F '\t' -v order="$allocators" -v rounds="$rounds" "$BENCH_AWK_MEDIAN"'
    function range(list,   n, v, i, lo, hi) {
        n = split(list, v, " ")
        lo = hi = v[1] + 0
        for (i = 2; i <= n; i++) { if (v[i] + 0 < lo) lo = v[i] + 0; if (v[i] + 0 > hi) hi = v[i] + 0 }
        return sprintf("%.2f-%.2f", lo, hi)
    }
    $1 == "result" {
        a = $2; w = $3; r = $4; ns[a, w, r] = $5
        vals[a, w] = vals[a, w] " " $5
        if ($6 != "") { cpu[a, w, r] = $6; cvals[a, w] = cvals[a, w] " " $6 }
        if (!((w) in seenw)) { seenw[w] = 1; wl[++nw] = w }
        have[a] = 1
    }
    $1 == "info" && $3 == "allocator-object" { obj[$2] = $4 }
    $1 == "info" && $3 == "warning" { warn = warn "warning: " $2 ": " $4 "\n" }
    $1 == "skip" { skipped[$2] = $3 }
    $1 == "note" { notes = notes "- " $2 ": " $3 "\n" }
    END {
        na = split(order, al, ",")
        if (warn != "") printf "%s\n", warn
        # absolute
        printf "ns per alloc+free pair (median of rounds; 2t rows: wall x threads / pairs)\n\n"
        hdr = "| workload "; sep = "|---"
        for (i = 1; i <= na; i++) { hdr = hdr "| " al[i] " "; sep = sep "|--:" }
        print hdr "|"; print sep "|"
        for (k = 1; k <= nw; k++) {
            w = wl[k]; line = "| " w " "
            for (i = 1; i <= na; i++) {
                a = al[i]
                if ((a, w) in vals) line = line sprintf("| %.1f ", median(vals[a, w]))
                else if (a in skipped) line = line "| not loaded "
                else if (a in have || a == "mmheap") line = line "| failed "
                else line = line "| - "
            }
            print line "|"
        }
        # ratios: median over rounds of the per-round ratio
        split("mimalloc glibc", base, " ")
        for (b = 1; b <= 2; b++) {
            B = base[b]
            if (!(B in have)) { printf "\n(no %s results: no ratio table)\n", B; continue }
            printf "\nratio to %s (median over rounds of the same-round ratio; < 1 is faster)\n\n", B
            hdr = "| workload "; sep = "|---"
            for (i = 1; i <= na; i++) if (al[i] != B) { hdr = hdr "| " al[i] " "; sep = sep "|--:" }
            if (B == "mimalloc" && ("mmheap" in have)) { hdr = hdr "| mmheap range "; sep = sep "|--:" }
            print hdr "|"; print sep "|"
            for (k = 1; k <= nw; k++) {
                w = wl[k]; line = "| " w " "
                for (i = 1; i <= na; i++) {
                    a = al[i]; if (a == B) continue
                    list = ""
                    for (r = 1; r <= rounds; r++)
                        if (((a, w, r) in ns) && ((B, w, r) in ns) && ns[B, w, r] > 0)
                            list = list " " ns[a, w, r] / ns[B, w, r]
                    if (list != "") {
                        line = line sprintf("| %.2f ", median(list))
                        if (a == "mmheap") mmr[B, w] = list
                    } else line = line "| - "
                }
                if (B == "mimalloc" && ("mmheap" in have))
                    line = line (((B, w) in mmr) ? "| " range(mmr[B, w]) " " : "| - ")
                print line "|"
            }
        }
        # 2-thread rows from the per-thread CPU clocks: time a thread spent
        # descheduled (another process on one of the 2 CPUs) is left out.
        n2 = 0
        for (k = 1; k <= nw; k++) if (wl[k] ~ /-2t$/) n2++
        if (n2 > 0) {
            printf "\n2-thread rows by thread CPU time, ns per pair (median of rounds);\n"
            printf "wall/cpu near 1.0 means both threads ran all along\n\n"
            hdr = "| workload "; sep = "|---"
            for (i = 1; i <= na; i++) { hdr = hdr "| " al[i] " "; sep = sep "|--:" }
            if ("mimalloc" in have) { hdr = hdr "| mmheap/mimalloc "; sep = sep "|--:" }
            hdr = hdr "| wall/cpu "; sep = sep "|--:"
            print hdr "|"; print sep "|"
            for (k = 1; k <= nw; k++) {
                w = wl[k]
                if (w !~ /-2t$/) continue
                line = "| " w " "
                for (i = 1; i <= na; i++) {
                    a = al[i]
                    line = line (((a, w) in cvals) ? sprintf("| %.1f ", median(cvals[a, w])) : "| - ")
                }
                if ("mimalloc" in have) {
                    list = ""
                    for (r = 1; r <= rounds; r++)
                        if ((("mmheap", w, r) in cpu) && (("mimalloc", w, r) in cpu) && cpu["mimalloc", w, r] > 0)
                            list = list " " cpu["mmheap", w, r] / cpu["mimalloc", w, r]
                    line = line ((list != "") ? sprintf("| %.2f ", median(list)) : "| - ")
                }
                list = ""
                for (i = 1; i <= na; i++)
                    for (r = 1; r <= rounds; r++)
                        if (((al[i], w, r) in cpu) && cpu[al[i], w, r] > 0)
                            list = list " " ns[al[i], w, r] / cpu[al[i], w, r]
                line = line ((list != "") ? sprintf("| %.2f ", median(list)) : "| - ")
                print line "|"
            }
        }
        if (("mmheap" in have) && ("mimalloc" in have)) {
            printf "\nfast-path target (mmheap within 1.2x of mimalloc):"
            met = 1; any = 0; cl = ""
            for (k = 1; k <= nw; k++) {
                w = wl[k]
                if (w !~ /^fast-[0-9]+$/ || !(("mimalloc", w) in mmr)) continue
                m = median(mmr["mimalloc", w]); any = 1
                printf " %s %.2f%s", w, m, (m <= 1.2 ? "" : " (missed)")
                if (m > 1.2) met = 0
                list = ""
                for (r = 1; r <= rounds; r++)
                    if ((("mmheap", w, r) in cpu) && (("mimalloc", w, r) in cpu) && cpu["mimalloc", w, r] > 0)
                        list = list " " cpu["mmheap", w, r] / cpu["mimalloc", w, r]
                if (list != "") cl = cl sprintf(" %s %.2f", w, median(list))
            }
            if (any) printf " => %s\n", met ? "MET" : "NOT MET"
            else printf " no fast-path results\n"
            if (cl != "") printf "  (same ratios from thread CPU time:%s)\n", cl
        }
        printf "\nallocator objects (checked in-process):\n\n```\n"
        for (i = 1; i <= na; i++) {
            a = al[i]
            if (a in skipped) printf "%-9s NOT LOADED: %s\n", a, skipped[a]
            else if (a in obj) printf "%-9s %s\n", a, obj[a]
        }
        printf "```\n"
        if (notes != "") printf "\nnotes:\n\n%s", notes
    }' "$results"
}

bench_main alloc "mmheap allocation benchmark" suite_body suite_about
