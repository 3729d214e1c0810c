#!/bin/sh
# tests/installcheck.sh: check an installed mmheap (make installcheck, which
# make distcheck runs after installing into a scratch prefix).
#
#   CC=... CXX=... PKG_CONFIG=... pkgconfigdir=... mandir=... bindir=... \
#       [DESTDIR=...] sh tests/installcheck.sh
#
# A program that uses the library builds with `pkg-config --cflags --libs
# mmheap` and nothing else, and runs, in C and in C++ (mmheap.hpp); a
# program linked with -lmmheap-malloc
# gets its malloc from the default heap; the mmheap command checks a heap
# that program made; the man pages are installed.
set -eu

: "${CC:?CC is not set}" "${CXX:?CXX is not set}" "${PKG_CONFIG:?PKG_CONFIG is not set}"
: "${pkgconfigdir:?pkgconfigdir is not set}" "${mandir:?mandir is not set}"
: "${bindir:?bindir is not set}"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/mmheap-installcheck.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

# Under DESTDIR, mmheap.pc names the final paths: pkg-config's sysroot
# puts DESTDIR in front of its -I and -L.
PKG_CONFIG_PATH=$pkgconfigdir PKG_CONFIG_SYSROOT_DIR=${DESTDIR:-}
export PKG_CONFIG_PATH PKG_CONFIG_SYSROOT_DIR
cflags=$($PKG_CONFIG --cflags mmheap)
libs=$($PKG_CONFIG --libs mmheap)
libdir=${DESTDIR:-}$($PKG_CONFIG --variable=libdir mmheap)

cat > "$tmp/use.c" <<'EOF'
#include <mmheap.h>
#include <stdio.h>
#include <string.h>

int main(int argc, char **argv)
{
    mmh_config cfg = { .flags = MMH_CREATE };
    mmh_heap *h = argc > 1 ? mmh_open(argv[1], &cfg) : NULL;
    char *p = h ? mmh_alloc(h, 100) : NULL;
    if (!p || mmh_set_root(h, p) != 0) {
        fprintf(stderr, "installcheck: %s\n", mmh_errmsg());
        return 1;
    }
    strcpy(p, "installed");
    return mmh_close(h);
}
EOF
# shellcheck disable=SC2086 # flags are lists of words
$CC $cflags -o "$tmp/use" "$tmp/use.c" $libs -Wl,-rpath,"$libdir"
"$tmp/use" "$tmp/use.heap"
"$bindir/mmheap" check "$tmp/use.heap"

cat > "$tmp/use.cc" <<'EOF'
#include <mmheap.hpp>
#include <cstdio>

int main(int argc, char **argv)
{
    try {
        mmh_config cfg{};
        cfg.flags = MMH_CREATE;
        mmh::heap h(argc > 1 ? argv[1] : nullptr, cfg);
        auto *s = h.find_or_construct<mmh::string>("installed", "a string kept in the heap", h);
        return *s == "a string kept in the heap" ? 0 : 1;
    } catch (const mmh::error &e) {
        std::fprintf(stderr, "installcheck: %s\n", e.what());
        return 1;
    }
}
EOF
# shellcheck disable=SC2086
$CXX -std=gnu++17 $cflags -o "$tmp/use_cxx" "$tmp/use.cc" $libs -Wl,-rpath,"$libdir"
"$tmp/use_cxx" "$tmp/use_cxx.heap"
"$tmp/use_cxx" "$tmp/use_cxx.heap"
"$bindir/mmheap" check "$tmp/use_cxx.heap"

cat > "$tmp/dropin.c" <<'EOF'
#include <mmheap.h>
#include <stdio.h>
#include <stdlib.h>

int main(void)
{
    void *p = malloc(10);
    int ours = p && mmh_offset(mmh_default_heap(), p) != 0;
    free(p);
    if (!ours)
        fprintf(stderr, "installcheck: malloc is not the default heap's\n");
    return !ours;
}
EOF
# shellcheck disable=SC2086
$CC $cflags -o "$tmp/dropin" "$tmp/dropin.c" -L"$libdir" -lmmheap-malloc -Wl,-rpath,"$libdir"
"$tmp/dropin"

for page in man1/mmheap.1 man3/mmheap.3 man3/mmheap-malloc.3; do
    [ -f "$mandir/$page" ] || { echo "installcheck: $mandir/$page is not installed" >&2; exit 1; }
done
echo "installcheck: the library builds with pkg-config alone (C and C++), the drop-in malloc links, mmheap checks a heap, man pages are in place"
