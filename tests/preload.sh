#!/bin/sh
# preload.sh: real programs with libmmheap-malloc.so as their malloc.
#
# Each case runs three times: with glibc's malloc (the reference), under
# LD_PRELOAD of the library, and under LD_PRELOAD with MMHEAP_OPTIONS=stats=1.
# The preloaded runs must exit and print (stdout; stderr too for the run
# without options) as the reference does, and the statistics printed at
# exit must show that mmheap served the allocations.  The cases:
#   python    python3 with PYTHONMALLOC=malloc: dicts, sorting, json, re,
#             big integers, threads
#   sqlite    sqlite3 on a file, running a generated SQL script
#   pipeline  bash running seq | sort | awk | sort | gzip | gunzip | md5sum
#   cxx       g++ compiling templates (cc1plus: C++'s operator new and delete)
# Two more runs give options: an unknown one (a warning naming it) and
# verbose=1 (diagnostics), with the same stdout.  A case whose programs are not installed is skipped; exit 77 only
# when none could run.
#
# The library is $MMH_MALLOC_LIB (make check sets it), else
# .libs/libmmheap-malloc.so under the current directory.  A sanitizer build's
# library cannot be preloaded into uninstrumented programs: skipped.
set -u

lib=${MMH_MALLOC_LIB:-$(pwd)/.libs/libmmheap-malloc.so}
if [ ! -f "$lib" ]; then
    echo "preload.sh: $lib not found" >&2
    exit 1
fi
if grep -q __asan_init "$lib"; then
    echo "preload.sh: $lib is built with AddressSanitizer; skipped"
    exit 77
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/mmheap-preload.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT
trap 'exit 1' INT TERM

# A hung program (a deadlock in the allocator) fails instead of hanging.
limit=
if command -v timeout >/dev/null 2>&1; then
    limit="timeout 60"
fi

ran=0
failed=0
last_passed=

have() {
    for prog in "$@"; do
        command -v "$prog" >/dev/null 2>&1 || return 1
    done
}

# run NAME OUT ENV...: runs case NAME's script with the environment
# settings ENV, stdout to OUT.out, stderr to OUT.err; prints the status.
run() {
    name=$1 out=$2
    shift 2
    # shellcheck disable=SC2086 # $limit is a command and its argument
    env -u LD_PRELOAD -u MMHEAP_OPTIONS "$@" $limit sh "$tmp/$name.sh" \
        >"$tmp/$out.out" 2>"$tmp/$out.err" </dev/null
    echo $?
}

# fail NAME WHY RUN: reports a failure and the run's stderr.
fail() {
    echo "FAIL $1: $2"
    sed -e 's/^/    stderr: /' -e 20q "$tmp/$3.err"
    failed=$((failed + 1))
}

# check NAME: the three runs of case NAME and their comparisons.
check() {
    name=$1
    ref=$(run "$name" "$name.ref")
    if [ "$ref" -ne 0 ]; then
        echo "SKIP $name: exits $ref with glibc's malloc"
        sed -e 's/^/    stderr: /' -e 10q "$tmp/$name.ref.err"
        return
    fi
    ran=$((ran + 1))

    rc=$(run "$name" "$name.pre" LD_PRELOAD="$lib")
    if [ "$rc" -ne 0 ]; then
        fail "$name" "exits $rc under LD_PRELOAD" "$name.pre"
        return
    fi
    if ! cmp -s "$tmp/$name.ref.out" "$tmp/$name.pre.out"; then
        fail "$name" "stdout differs under LD_PRELOAD" "$name.pre"
        diff "$tmp/$name.ref.out" "$tmp/$name.pre.out" | head -n 10
        return
    fi
    if ! cmp -s "$tmp/$name.ref.err" "$tmp/$name.pre.err"; then
        fail "$name" "stderr differs under LD_PRELOAD (the library must be silent)" "$name.pre"
        return
    fi

    rc=$(run "$name" "$name.stats" LD_PRELOAD="$lib" MMHEAP_OPTIONS=stats=1)
    if [ "$rc" -ne 0 ] || ! cmp -s "$tmp/$name.ref.out" "$tmp/$name.stats.out"; then
        fail "$name" "with stats=1: exit $rc, or stdout differs" "$name.stats"
        return
    fi
    # "mmheap: in use: ... peak N": some process of the case used the heap
    if ! grep -Eq '^mmheap: .*peak [1-9][0-9]*' "$tmp/$name.stats.err"; then
        fail "$name" "stats=1 printed no statistics with a nonzero peak" "$name.stats"
        return
    fi
    echo "ok   $name"
    last_passed=$name
}

# ---- python ---------------------------------------------------------------
if have python3; then
    cat >"$tmp/prog.py" <<'EOF'
import collections, hashlib, json, random, re, threading

random.seed(12345)
words = [''.join(random.choice('abcdefghij') for _ in range(random.randint(1, 12)))
         for _ in range(40000)]
counts = collections.Counter(words)
print(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:10])

table = {w: [len(w), w[::-1], w.upper(), {'n': i}] for i, w in enumerate(words)}
text = json.dumps(table, sort_keys=True)
print(len(text), json.loads(text) == table, hashlib.md5(text.encode()).hexdigest())

pat = re.compile(r'(a+)(b|c)+([d-f]*)')
subs = [pat.sub(lambda m: m.group(1).upper() + str(len(m.group(0))), w) for w in words]
print(hashlib.md5('\n'.join(subs).encode()).hexdigest())

f = 1
for i in range(2, 1400):
    f *= i
print(len(str(f)), f.bit_length(), f % 1000000007, pow(3, 10**5, 10**40 + 7))

nums = [random.random() for _ in range(100000)]
nums.sort()
print(round(sum(nums[:1000]), 9), nums[50000] < nums[50001])

results = [0] * 6
def work(k):
    acc = {}
    for i in range(15000):
        acc[str(i * (k + 1))] = [i] * (i % 7)
    results[k] = sum(len(v) for v in acc.values())
threads = [threading.Thread(target=work, args=(k,)) for k in range(6)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print(results)
EOF
    cat >"$tmp/python.sh" <<EOF
PYTHONMALLOC=malloc PYTHONHASHSEED=0 exec python3 "$tmp/prog.py"
EOF
    check python
else
    echo "SKIP python: python3 not installed"
fi

# ---- sqlite ---------------------------------------------------------------
if have sqlite3 awk; then
    {
        echo "CREATE TABLE t(id INTEGER PRIMARY KEY, k TEXT, v INTEGER, b BLOB);"
        echo "BEGIN;"
        awk 'BEGIN { for (i = 1; i <= 20000; i++)
                         printf "INSERT INTO t(k, v, b) VALUES (%c%08d-%s%c, %d, zeroblob(%d));\n",
                                39, (i * 7919) % 20000, substr("abcdefghijklmnopqrstuvwxyz", 1 + i % 26), 39,
                                (i * 31337) % 1000, i % 300 }'
        echo "COMMIT;"
        cat <<'EOF'
CREATE INDEX t_k ON t(k);
SELECT count(*), sum(v), sum(length(b)) FROM t;
SELECT v, count(*) FROM t GROUP BY v ORDER BY count(*) DESC, v LIMIT 5;
SELECT k FROM t ORDER BY k DESC LIMIT 3;
UPDATE t SET v = v + 1, b = zeroblob(1000) WHERE id % 3 = 0;
DELETE FROM t WHERE id % 5 = 0;
WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 30000)
INSERT INTO t(k, v) SELECT printf('r%06d', x), x % 17 FROM c;
SELECT count(*), sum(v), sum(length(b)) FROM t;
SELECT group_concat(k, ',') FROM (SELECT k FROM t WHERE k LIKE '%q' ORDER BY k LIMIT 20);
VACUUM;
SELECT count(DISTINCT substr(k, 1, 4)), max(k), min(k) FROM t;
EOF
    } >"$tmp/script.sql"
    cat >"$tmp/sqlite.sh" <<EOF
rm -f "$tmp/db.sqlite"
exec sqlite3 "$tmp/db.sqlite" <"$tmp/script.sql"
EOF
    check sqlite
else
    echo "SKIP sqlite: sqlite3 or awk not installed"
fi

# ---- pipeline -------------------------------------------------------------
if have bash seq sort awk gzip gunzip md5sum; then
    cat >"$tmp/pipeline.sh" <<'EOF'
exec bash -c 'export LC_ALL=C
seq 1 200000 | sort -r | awk "{ x = (\$1 * 7919) % 100003; print x, \$1 }" |
    sort -n | gzip -c | gunzip -c | md5sum
seq 1 50000 | awk "{ s = s \$1 % 10 } END { print length(s) }"'
EOF
    check pipeline
else
    echo "SKIP pipeline: bash, seq, sort, awk, gzip, gunzip or md5sum not installed"
fi

# ---- a C++ program --------------------------------------------------------
# g++: cc1plus is C++, with operator new and delete, sized and not
if have g++; then
    cat >"$tmp/prog.cc" <<'EOF'
#include <algorithm>
#include <map>
#include <memory>
#include <string>
#include <vector>

template <typename K, typename V>
std::map<K, std::vector<V>> group(const std::vector<std::pair<K, V>> &in)
{
    std::map<K, std::vector<V>> out;
    for (const auto &kv : in)
        out[kv.first].push_back(kv.second);
    for (auto &e : out)
        std::sort(e.second.begin(), e.second.end());
    return out;
}

auto grouped_strings = group<std::string, std::string>;
auto grouped_numbers = group<long, double>;
EOF
    cat >"$tmp/cxx.sh" <<EOF
exec g++ -std=gnu++17 -O1 -frandom-seed=1 -S -o - "$tmp/prog.cc"
EOF
    check cxx
else
    echo "SKIP cxx: g++ not installed"
fi

# ---- options --------------------------------------------------------------
# option_run OPTIONS WHAT ERE: the last case that passed, with
# MMHEAP_OPTIONS=OPTIONS, prints the same stdout and a stderr line that
# matches ERE.
option_run() {
    name=$last_passed
    rc=$(run "$name" "$name.opt" LD_PRELOAD="$lib" MMHEAP_OPTIONS="$1")
    if [ "$rc" -ne 0 ] || ! cmp -s "$tmp/$name.ref.out" "$tmp/$name.opt.out"; then
        fail "$name" "with MMHEAP_OPTIONS=$1: exit $rc, or stdout differs" "$name.opt"
    elif ! grep -Eq "$3" "$tmp/$name.opt.err"; then
        fail "$name" "with MMHEAP_OPTIONS=$1: no $2 on stderr" "$name.opt"
    else
        echo "ok   $name with MMHEAP_OPTIONS=$1"
    fi
}

if [ -n "$last_passed" ]; then
    option_run stats=0,no_such_option=1 "warning naming the unknown option" \
        'MMHEAP_OPTIONS.*no_such_option|no_such_option.*MMHEAP_OPTIONS'
    option_run verbose=1 "diagnostics" '^mmheap: '
fi

if [ "$ran" -eq 0 ]; then
    echo "preload.sh: no program could run"
    exit 77
fi
[ "$failed" -eq 0 ]
