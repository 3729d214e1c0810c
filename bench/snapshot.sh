#!/bin/sh
# bench/snapshot.sh: fork snapshots of mmheap heaps, against Redis, as Markdown
# saved, dated, under bench/results/.
#
#   bench/snapshot.sh [options] [BUILD_DIR]
#
# BUILD_DIR is a configured mmheap build directory (default: the current
# directory).  The script builds bench/bench_snapshot and examples/kv_server
# there (make bench-snapshot-programs), then runs:
#   1. heap: mmh_snapshot of a 1 GiB anonymous heap of small objects, idle
#      and while the parent overwrites random objects at a fixed rate: the
#      pause (and a bare fork() for comparison), the job, the pages copied
#      on write; every image is checked against the heap at the call.  Once
#      for a default heap, then for an MMH_HUGEPAGES heap (transparent huge
#      pages) with the same objects;
#   2. save: redis-server, examples/kv_server and a second kv_server with
#      -H (its heap in huge pages), each loaded with the same keys (DEBUG
#      POPULATE / POPULATE: key:0.. with 100-byte values), take background
#      snapshots (BGSAVE / SAVE), idle and under a fixed-rate SET load: the
#      server's pause, the job, the copy-on-write bytes;
#   3. restart: each server started on its saved file (RDB / heap image),
#      timed from exec to the first answered GET.
# Redis comes from Debian's redis-server package; without it, part 1 only.
#
# Options:
#   --dir=DIR        where images and RDB files go (default $TMPDIR or /tmp)
#   --keys=N         keys in each server (default 6000000: about 1 GiB each)
#   --size=N         value bytes (default 100)
#   --reps=N         repetitions of everything (default 5)
#   --rate=N         writes (heap) and SETs (save) a second under load
#                    (default 20000)
#   --heap-mib=N     the in-process heap's size, MiB (default 1024)
#   --cold           restart also with the page cache dropped before each
#                    start (needs root)
#   --port=N         Redis listens on N, kv_server on N+1, kv_server -H on
#                    N+2 (default 16379)
#   --no-hugepages   leave out the huge-page heap and kv_server -H
#   --only=LIST      subset of heap,save,restart (restart needs save first)
#   --quick          smoke test: 256 MiB heap, 1000000 keys, 2 repetitions
#   --raw=FILE       keep every measurement (tab separated) in FILE
#   --tag=NAME       save as bench/results/YYYY-MM-DD-snapshot-NAME.md
#   --out=FILE       save the Markdown to FILE instead
#   --no-save        print only
#   --no-build       do not run make first
#
# Saving: bench/results/YYYY-MM-DD-snapshot[-quick][-TAG].md (-2, -3, ...
# when that name is taken); a run that fails saves nothing.
#
# Needs about 10 GiB of memory and 5 GiB of disk under --dir for the default
# run (the three servers hold their data at once; images, RDB, page cache).
set -eu

prog=snapshot.sh usage_last=50
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"

dir=${TMPDIR:-/tmp}
keys=6000000
size=100
reps=5
rate=20000
heap_mib=1024
cold=
port=16379
only=heap,save,restart
quick=0
raw=
build=1
huge=1
builddir=.

while [ $# -gt 0 ]; do
    case $1 in
    --dir=*) dir=${1#*=} ;;
    --keys=*) keys=${1#*=} ;;
    --size=*) size=${1#*=} ;;
    --reps=*) reps=${1#*=} ;;
    --rate=*) rate=${1#*=} ;;
    --heap-mib=*) heap_mib=${1#*=} ;;
    --cold) cold=--cold ;;
    --port=*) port=${1#*=} ;;
    --only=*) only=${1#*=} ;;
    --quick) quick=1 ;;
    --raw=*) raw=${1#*=} ;;
    --no-build) build=0 ;;
    --no-hugepages) huge=0 ;;
    *) bench_arg "$1" ;;
    esac
    shift
done
if [ "$quick" = 1 ]; then
    heap_mib=256 keys=1000000 reps=2
fi

bench_build "$builddir" bench-snapshot-programs
builddir=$(cd "$builddir" && pwd)
bs=$builddir/bench/bench_snapshot
kv=$builddir/examples/kv_server
bench_check "$dir" "$bs" "$kv"
case $dir$builddir in
*' '*) echo "snapshot.sh: paths with spaces are not supported" >&2; exit 1 ;;
esac
rawopt=
[ -n "$raw" ] && rawopt="--raw=$raw"

have_redis=1
for p in redis-server redis-cli; do
    command -v $p >/dev/null 2>&1 || have_redis=0
done

# suite_about: the header lines of this suite.
suite_about() {
    bench_fs "$dir"
    echo "transparent huge pages: $(cat /sys/kernel/mm/transparent_hugepage/enabled 2>/dev/null || echo '?')"
    if [ "$have_redis" = 1 ]; then
        echo "peer: $(redis-server --version | cut -d' ' -f1-3,6) (Debian $(bench_pkgver redis-server))"
    else
        echo "peer: redis-server not installed (apt-get install redis-server): parts save and restart left out"
    fi
}

suite_body() {
    case ",$only," in *,heap,*)
        kinds=default,huge
        [ "$huge" = 1 ] || kinds=default
        "$bs" heap --dir="$dir" --heap-mib="$heap_mib" --reps="$reps" --rate="$rate" \
            --kinds="$kinds" $rawopt ;;
    esac

    case ",$only," in *,save,*|*,restart,*) ;; *) have_redis=0 ;; esac
    if [ "$have_redis" = 1 ]; then
        work=$(mktemp -d "$dir/mmh-snapshot.XXXXXX")
        rpid='' kpid='' hpid=''
        cleanup() {
            for p in $rpid $kpid $hpid; do kill "$p" 2>/dev/null || true; done
            wait 2>/dev/null || true
            rm -rf "$work"
        }
        trap cleanup EXIT
        trap 'exit 1' INT TERM
        rport=$port kport=$((port + 1)) hport=$((port + 2))
        # Redis as packaged, but: no automatic saves, no AOF, DEBUG allowed from
        # loopback, and hz 100 so it notices its finished child within 10 ms
        # (kv_server: 5 ms) rather than 100.
        cat > "$work/redis.conf" <<EOF
port $rport
bind 127.0.0.1
dir $work
dbfilename dump.rdb
save ""
appendonly no
enable-debug-command local
hz 100
logfile $work/redis.log
daemonize no
EOF
        kvcmd="$kv $kport $work/kv.image"

        ready() {   # ready NAME PORT: wait up to 30 s for PING
            i=0
            until [ "$(redis-cli -p "$2" PING 2>/dev/null)" = PONG ]; do
                i=$((i + 1))
                [ $i -lt 300 ] || { echo "snapshot.sh: $1 did not start; see $work" >&2; exit 1; }
                sleep 0.1
            done
        }
        populate() {   # populate NAME PORT COMMAND...: time it
            name=$1 p=$2
            shift 2
            t0=$(date +%s.%N)
            r=$(redis-cli -p "$p" "$@")
            [ "$r" = OK ] || { echo "snapshot.sh: $name: $* answered: $r" >&2; exit 1; }
            echo "snapshot.sh: $name: $* took" \
                 "$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }') s" >&2
        }

        redis-server "$work/redis.conf" &
        rpid=$!
        $kvcmd 2>"$work/kv.log" &
        kpid=$!
        hugeopt=
        if [ "$huge" = 1 ]; then
            # the same server with its heap in huge pages, on its own image
            $kv -H "$hport" "$work/kv-huge.image" 2>"$work/kv-huge.log" &
            hpid=$!
            hugeopt="--kv-huge=$hport:$hpid"
        fi
        ready redis "$rport"
        ready kv_server "$kport"
        [ "$huge" = 1 ] && ready "kv_server -H" "$hport"
        populate redis "$rport" DEBUG POPULATE "$keys" key "$size"
        populate kv_server "$kport" POPULATE "$keys" key "$size"
        [ "$huge" = 1 ] && populate "kv_server -H" "$hport" POPULATE "$keys" key "$size"
        sleep 2   # let them finish their incremental rehashing

        "$bs" save --redis="$rport:$rpid" --kv="$kport:$kpid" $hugeopt --keys="$keys" \
            --size="$size" --reps="$reps" --rate="$rate" $rawopt
        echo "Files: RDB $(($(stat -c %s "$work/dump.rdb") / 1048576)) MiB" \
             "(compressed: DEBUG POPULATE values are zero-padded), kv_server image" \
             "$(($(stat -c %s "$work/kv.image") / 1048576)) MiB" \
             "($(du -m "$work/kv.image" | cut -f1) MiB allocated on disk)."
        echo
        kill $rpid $kpid $hpid
        wait $rpid $kpid $hpid || true
        rpid='' kpid='' hpid=''
        rm -f "$work/kv-huge.image"

        case ",$only," in *,restart,*)
            "$bs" restart --keys="$keys" --reps="$reps" $cold $rawopt \
                --redis-port="$rport" --redis-cmd="redis-server $work/redis.conf" \
                --kv-port="$kport" --kv-cmd="$kvcmd" ;;
        esac
    fi
}

suite=snapshot
[ "$quick" = 1 ] && suite=snapshot-quick
bench_main "$suite" "mmheap snapshot benchmarks" suite_body suite_about
