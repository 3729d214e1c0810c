#!/bin/sh
# cxx_inventory.sh: examples/cxx_inventory keeps its std::map and
# std::vector in a heap file, so counts given in separate runs add up.
#
# The program is $CXX_INVENTORY, else examples/cxx_inventory under the
# current directory (make check runs in the build directory).
set -u

prog=${CXX_INVENTORY:-$(pwd)/examples/cxx_inventory}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/mmheap-inventory.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT

"$prog" "$tmp/inv.heap" apples 3 "an item with a long name" 2 >/dev/null &&
"$prog" "$tmp/inv.heap" apples 4 >/dev/null &&
"$prog" "$tmp/inv.heap" >"$tmp/out" || { echo "cxx_inventory.sh: a run failed" >&2; exit 1; }

for want in 'apples  *7$' 'an item with a long name  *2$' 'run 3 changed 0 items$'; do
    if ! grep -q "$want" "$tmp/out"; then
        echo "cxx_inventory.sh: FAIL: no line matching '$want' in:" >&2
        cat "$tmp/out" >&2
        exit 1
    fi
done
echo "cxx_inventory.sh: counts from three runs add up"
