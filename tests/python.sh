#!/bin/bash
# python.sh: examples/mmheap.py, the ctypes binding, against the built library.
#
# One python3 process creates a heap file, allocates two blocks, writes
# bytes into them, names them, commits and closes; a new process opens the
# file read-only and reads the bytes and the names back, and checks that
# the views are read-only and released at close; a third checks that a
# missing file opened without create raises MmheapError with ENOENT and the
# path in the message.  Skipped (77) without python3, and for a library
# built with AddressSanitizer.
#
# The library is $MMHEAP_LIB (make check sets it to the build tree's
# .libs/libmmheap.so); the module is $srcdir/examples/mmheap.py.
set -u

if ! command -v python3 >/dev/null 2>&1; then
    echo "python.sh: python3 not found: skipped"
    exit 77
fi
export MMHEAP_LIB=${MMHEAP_LIB:-$(pwd)/.libs/libmmheap.so}
if [ ! -f "$MMHEAP_LIB" ]; then
    echo "python.sh: $MMHEAP_LIB not found (--disable-shared?): skipped"
    exit 77
fi
# A sanitizer build's library needs its runtime loaded first, which the
# python3 executable is not built with.
if grep -q __asan_init "$MMHEAP_LIB"; then
    echo "python.sh: $MMHEAP_LIB is built with AddressSanitizer: skipped"
    exit 77
fi
srcdir=$(cd "${srcdir:-.}" && pwd) || exit 1
export PYTHONPATH=$srcdir/examples${PYTHONPATH:+:$PYTHONPATH}
unset PYTHONOPTIMIZE               # the checks are asserts
export PYTHONDONTWRITEBYTECODE=1   # no __pycache__ in a read-only srcdir
tmp=$(mktemp -d "${TMPDIR:-/tmp}/mmheap-py.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT
cd "$tmp" || exit 1

python3 - <<'EOF' || { echo "python.sh: FAIL: writing the heap" >&2; exit 1; }
import mmheap
with mmheap.open("py.heap", create=True, size=1 << 20) as h:
    a = h.alloc(11)
    assert len(a) >= 11 and not a.readonly
    a[:11] = b"hello world"
    b = h.alloc(5000)
    b[:] = bytes(i % 251 for i in range(len(b)))
    h.set_name(b"greeting", a)
    h.set_name(b"table", h.offset(b))
    assert h.names() == {b"greeting": h.offset(a), b"table": h.offset(b)}
    assert bytes(h.block(h.offset(a))[:11]) == b"hello world"
    h.commit()
    with open("offsets", "w") as f:
        f.write("%d %d %d\n" % (h.offset(a), h.offset(b), len(b)))
assert repr(a).startswith("<released"), "a view outlived its heap"
EOF

python3 - <<'EOF' || { echo "python.sh: FAIL: reading the heap back" >&2; exit 1; }
import errno, mmheap
off_a, off_b, len_b = map(int, open("offsets").read().split())
with mmheap.open("py.heap", readonly=True) as h:
    names = h.names()
    assert names == {b"greeting": off_a, b"table": off_b}, names
    a = h.get(b"greeting")
    assert a.readonly and bytes(a[:11]) == b"hello world", bytes(a[:11])
    b = h.block(off_b)
    assert len(b) == len_b and bytes(b) == bytes(i % 251 for i in range(len_b))
    assert h.get(b"missing") is None
    try:
        h.alloc(1)
        raise SystemExit("alloc in a read-only heap")
    except mmheap.MmheapError as e:
        assert e.errno == errno.EROFS, e
assert repr(b).startswith("<released"), "a view outlived its heap"
EOF

python3 - <<'EOF' || { echo "python.sh: FAIL: the error of a missing file" >&2; exit 1; }
import errno, mmheap
try:
    mmheap.open("no/such.heap")
    raise SystemExit("opened a missing file")
except mmheap.MmheapError as e:
    assert isinstance(e, OSError) and e.errno == errno.ENOENT, repr(e)
    assert "no/such.heap" in str(e), str(e)
EOF
echo "python.sh: ok"
