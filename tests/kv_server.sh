#!/bin/bash
# kv_server.sh: examples/kv_server -f keeps its keys in a heap file.
#
# Sets keys, SAVEs (a background commit), waits for it, writes one more key
# and kills the server with SIGKILL: a restart on the same file must have
# every saved key and not the later one (commits are atomic).  Then a key
# written before SIGTERM (a clean stop, which commits) must be there after
# the next restart.  The client is bash's /dev/tcp, speaking the server's
# plain-text lines.  Every wait is bounded; the server is always killed.
#
# The server is $KV_SERVER, else examples/kv_server under the current
# directory (make check runs in the build directory).
set -u

server=${KV_SERVER:-$(pwd)/examples/kv_server}
if [ ! -x "$server" ]; then
    echo "kv_server.sh: $server not found" >&2
    exit 1
fi
tmp=$(mktemp -d "${TMPDIR:-/tmp}/mmheap-kv.XXXXXX") || exit 1
heap=$tmp/kv.heap
pid=
trap '[ -n "$pid" ] && kill -9 "$pid" 2>/dev/null; rm -rf "$tmp"' EXIT
trap 'exit 1' INT TERM

fail() {
    echo "kv_server.sh: FAIL: $*" >&2
    [ -f "$tmp/log" ] && sed 's/^/  server: /' "$tmp/log" >&2
    exit 1
}

# Start the server on the heap file, on a free port: a taken one makes it
# exit at once, and another is tried.  Ready once it accepts a connection.
start() {
    for try in 1 2 3 4 5 6 7 8 9 10; do
        port=$((20000 + RANDOM % 40000))
        "$server" -f "$port" "$heap" 2>>"$tmp/log" &
        pid=$!
        for _ in $(seq 100); do
            if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
                return 0
            fi
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -9 "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
        pid=
    done
    fail "the server did not start"
}

# Send one request line; the reply's first line (CR removed) is in $reply,
# and a bulk string's bytes in $value.
request() {
    exec 3<>"/dev/tcp/127.0.0.1/$port" || fail "cannot connect for: $*"
    printf '%s\r\n' "$*" >&3
    IFS= read -r -t 10 reply <&3 || fail "no reply to: $*"
    reply=${reply%$'\r'}
    value=
    case $reply in
    \$-1) ;;
    \$*) IFS= read -r -t 10 -N $((${reply#\$} + 2)) value <&3 || fail "short reply to: $*"
         value=${value%$'\r\n'} ;;
    esac
    exec 3<&-
}

expect() { # expect WANT REQUEST...: the first line of the reply
    local want=$1
    shift
    request "$@"
    [ "$reply" = "$want" ] || fail "$*: got '$reply', want '$want'"
}

expect_value() { # expect_value KEY VALUE
    request GET "$1"
    [ "$reply" != "\$-1" ] && [ "$value" = "$2" ] || fail "GET $1: got '$reply' '$value', want '$2'"
}

# Wait for the server to exit (it was signalled).
reap() {
    for _ in $(seq 200); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -0 "$pid" 2>/dev/null && fail "the server did not stop"
    wait "$pid" 2>/dev/null
    pid=
}

keys=50
start
for i in $(seq $keys); do
    expect +OK SET "key$i" "value$i"
done
expect +OK SAVE
request WAIT # replies (INFO) once the commit is done
case $value in *"last_status:ok"*) ;; *) fail "WAIT after SAVE: $value" ;; esac
expect +OK SET late after-the-commit
kill -9 "$pid"
reap

start
for i in $(seq $keys); do
    expect_value "key$i" "value$i"
done
expect "\$-1" GET late
expect ":$keys" DBSIZE
expect +OK SET clean before-SIGTERM
kill -TERM "$pid"
reap

start
expect_value clean before-SIGTERM
expect_value key1 value1
expect ":$((keys + 1))" DBSIZE
kill -TERM "$pid"
reap
echo "kv_server.sh: $keys keys survive SIGKILL after SAVE, a later key does not; SIGTERM commits"
