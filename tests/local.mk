# tests: owned by the test suite (included from the top Makefile.am; every
# path is relative to the top directory).
#
#   make check              the cmocka suite, tests/preload.sh,
#                           tests/kv_server.sh (examples/kv_server -f),
#                           tests/python.sh (examples/mmheap.py) and
#                           tests/cxx_inventory.sh (examples/cxx_inventory)
#   make check-valgrind     the suite under valgrind (MMH_TEST_SCALE=0.02)
#   make check-sanitizers   a separate ASan/UBSan build running make check
#   make installcheck       the installed library, drop-in malloc and man pages
#                           (make distcheck runs it)
#
# Tests put their heap files in a fresh directory under $TMPDIR (or /tmp)
# and remove it; set MMH_TEST_KEEP=1 to keep it.  MMH_TEST_SCALE scales the
# long loops (default 1.0).

MMH_TESTS = \
	tests/test_api \
	tests/test_alloc \
	tests/test_aligned \
	tests/test_realloc \
	tests/test_persist \
	tests/test_errors \
	tests/test_growth \
	tests/test_relocate \
	tests/test_threads \
	tests/test_tracker_api \
	tests/test_crash \
	tests/test_names \
	tests/test_faults \
	tests/test_tracker_ranges \
	tests/test_snapshot \
	tests/test_bgcommit \
	tests/test_fork \
	tests/test_check \
	tests/test_trust \
	tests/test_cxx

# The drop-in malloc, libmmheap-malloc.  test_malloc, test_malloc_threads
# and test_malloc_cxx are linked to it; test_malloc_dlopen is linked to no
# mmheap library and loads it with dlopen; tests/preload.sh runs real
# programs with it preloaded (and needs no cmocka).
MMH_MALLOC_TESTS = \
	tests/test_malloc \
	tests/test_malloc_threads \
	tests/test_malloc_cxx \
	tests/test_malloc_dlopen

# Memory checkers on heap blocks (lib/instrument.h): test_memcheck runs
# itself under valgrind, so it is linked to the library's objects (no
# libtool wrapper in between) and left out of check-valgrind; test_asan
# checks the poisoning in the ASan build (make check-sanitizers) and skips
# elsewhere.
MMH_CHECKER_TESTS = \
	tests/test_memcheck \
	tests/test_asan

EXTRA_DIST += \
	tests/valgrind.sh \
	tests/build-check.sh \
	tests/asan.supp \
	tests/valgrind.supp \
	tests/no-cmocka.sh \
	tests/preload.sh \
	tests/kv_server.sh \
	tests/python.sh \
	examples/mmheap.py \
	tests/cxx_inventory.sh \
	tests/installcheck.sh

if HAVE_CMOCKA
check_LTLIBRARIES = tests/libtestheap.la tests/libtestutil.la
check_PROGRAMS += $(MMH_TESTS) $(MMH_MALLOC_TESTS) $(MMH_CHECKER_TESTS)
TESTS += $(MMH_TESTS) $(MMH_MALLOC_TESTS) $(MMH_CHECKER_TESTS)
else
TESTS += tests/no-cmocka.sh
endif
TESTS += tests/preload.sh tests/kv_server.sh tests/python.sh tests/cxx_inventory.sh

# Where test_malloc_dlopen and preload.sh find the library, and python.sh
# the one examples/mmheap.py loads.
AM_TESTS_ENVIRONMENT = \
	MMH_MALLOC_LIB='$(abs_top_builddir)/.libs/libmmheap-malloc.so'; \
	MMH_MMHEAP_TOOL='$(abs_top_builddir)/tools/mmheap'; \
	MMHEAP_LIB='$(abs_top_builddir)/.libs/libmmheap.so'; \
	export MMH_MALLOC_LIB MMH_MMHEAP_TOOL MMHEAP_LIB;

# The tests' helper library (tests/testutil.h), built by make check only.
# libtestutil calls no mmheap function; libtestheap calls mmheap through
# whichever mmheap library the program is linked to, and brings none of
# its own.
tests_libtestutil_la_SOURCES = tests/testutil.h tests/testutil.c
tests_libtestheap_la_SOURCES = tests/testheap.c tests/testmalloc.c \
	tests/jobutil.h tests/jobutil.c

# cmocka's include path for every object: harmless to the others (an
# include directory, searched after the project's own).
AM_CPPFLAGS += $(CMOCKA_CFLAGS)

# A test is tests/NAME.c linked to the helper library, libmmheap and cmocka.
# LDADD cannot say so for all: the benchmarks without a _LDADD of their own
# (bench_malloc, bench_threads, bench_shared_sync) would link libmmheap
# too, so each test names it.
MMH_TESTLIBS = tests/libtestheap.la tests/libtestutil.la
MMH_TEST_LDADD = $(MMH_TESTLIBS) libmmheap.la $(CMOCKA_LIBS)
tests_test_api_LDADD = $(MMH_TEST_LDADD)
tests_test_alloc_LDADD = $(MMH_TEST_LDADD)
tests_test_aligned_LDADD = $(MMH_TEST_LDADD)
tests_test_realloc_LDADD = $(MMH_TEST_LDADD)
tests_test_persist_LDADD = $(MMH_TEST_LDADD)
tests_test_growth_LDADD = $(MMH_TEST_LDADD)
tests_test_relocate_LDADD = $(MMH_TEST_LDADD)
tests_test_threads_LDADD = $(MMH_TEST_LDADD)
tests_test_tracker_api_LDADD = $(MMH_TEST_LDADD)
tests_test_crash_LDADD = $(MMH_TEST_LDADD)
tests_test_names_LDADD = $(MMH_TEST_LDADD)
tests_test_snapshot_LDADD = $(MMH_TEST_LDADD)
tests_test_fork_LDADD = $(MMH_TEST_LDADD)
tests_test_asan_LDADD = $(MMH_TEST_LDADD)

# Interpose libc functions and find the real ones with dlsym(RTLD_NEXT).
tests_test_faults_LDADD = $(MMH_TEST_LDADD) -ldl
tests_test_bgcommit_LDADD = $(MMH_TEST_LDADD) -ldl
tests_test_trust_LDADD = $(MMH_TEST_LDADD) -ldl

# Linked to the library's objects (libmmheap-core), to reach its internals:
# test_errors, the format functions, to craft headers; test_check, the
# metadata's layout, to damage it (and runs tools/mmheap); test_memcheck,
# no libtool wrapper for valgrind to run; test_tracker_ranges, the
# trackers' interface.
MMH_CORE_TEST_LDADD = $(MMH_TESTLIBS) libmmheap-core.la $(CMOCKA_LIBS)
tests_test_errors_LDADD = $(MMH_CORE_TEST_LDADD)
tests_test_check_LDADD = $(MMH_CORE_TEST_LDADD)
tests_test_memcheck_LDADD = $(MMH_CORE_TEST_LDADD)
tests_test_tracker_ranges_LDADD = $(MMH_CORE_TEST_LDADD)

# The drop-in tests are linked to libmmheap-malloc; MMH_TEST_DROPIN: malloc
# must be mmheap's (testutil.h).
MMH_DROPIN_CPPFLAGS = $(AM_CPPFLAGS) -DMMH_TEST_DROPIN
MMH_DROPIN_LDADD = $(MMH_TESTLIBS) libmmheap-malloc.la $(CMOCKA_LIBS)
tests_test_malloc_CPPFLAGS = $(MMH_DROPIN_CPPFLAGS)
tests_test_malloc_LDADD = $(MMH_DROPIN_LDADD)
tests_test_malloc_threads_CPPFLAGS = $(MMH_DROPIN_CPPFLAGS)
tests_test_malloc_threads_LDADD = $(MMH_DROPIN_LDADD)

# C++: C++17 for the aligned operators new and delete;
# -fsized-deallocation for clang++, which does not call the sized forms by
# default.
tests_test_malloc_cxx_SOURCES = tests/test_malloc_cxx.cc
tests_test_malloc_cxx_CPPFLAGS = $(MMH_DROPIN_CPPFLAGS)
tests_test_malloc_cxx_CXXFLAGS = $(AM_CXXFLAGS) -Wall -Wextra -std=gnu++17 \
	-fsized-deallocation
tests_test_malloc_cxx_LDADD = $(MMH_DROPIN_LDADD)

# The C++ layer, include/mmheap.hpp: C++17.
tests_test_cxx_SOURCES = tests/test_cxx.cc
tests_test_cxx_CXXFLAGS = $(AM_CXXFLAGS) -Wall -Wextra -std=gnu++17
tests_test_cxx_LDADD = $(MMH_TEST_LDADD)

# Linked to no mmheap library (it dlopens libmmheap-malloc): the helper
# library's part that calls none.
tests_test_malloc_dlopen_LDADD = tests/libtestutil.la $(CMOCKA_LIBS) -ldl

# The drop-in malloc tests run with memcheck's own malloc left out of
# user objects (somalloc=nouserintercepts): by default it replaces malloc in
# libmmheap-malloc too, linked or dlopen'ed, and the tests would check
# memcheck's allocator.  So they run mmheap's, with the allocator's code
# under memcheck (its blocks are not memcheck's: no leak reports for them).
# --fair-sched: valgrind's default lock starves a forking thread while
# others allocate in loops.  preload.sh is not run: it preloads the library
# into other programs.
if HAVE_CMOCKA
check-valgrind: $(MMH_TESTS) $(MMH_MALLOC_TESTS) tools/mmheap
	LIBTOOL="$(LIBTOOL)" MMH_MMHEAP_TOOL='$(abs_top_builddir)/tools/mmheap' \
	$(SHELL) $(srcdir)/tests/valgrind.sh $(MMH_TESTS)
	LIBTOOL="$(LIBTOOL)" \
	VALGRIND_OPTS="--soname-synonyms=somalloc=nouserintercepts --fair-sched=yes $${VALGRIND_OPTS:-}" \
	$(SHELL) $(srcdir)/tests/valgrind.sh $(MMH_MALLOC_TESTS)
else
check-valgrind:
	@echo "check-valgrind: cmocka not found; install libcmocka-dev and rerun configure" >&2; exit 1
endif

check-sanitizers:
	abs_top_srcdir="$(abs_top_srcdir)" abs_top_builddir="$(abs_top_builddir)" \
	MAKE="$(MAKE)" $(SHELL) $(srcdir)/tests/build-check.sh

# The debug build: invariants asserted in the library, mmh_check at the
# tests' quiescent points; one compiler, the full loops.
check-debug:
	abs_top_srcdir="$(abs_top_srcdir)" abs_top_builddir="$(abs_top_builddir)" \
	BUILD_NAME=debug BUILD_FLAGS=--enable-debug BUILD_COMPILERS=gcc MMH_TEST_SCALE=1 \
	MAKE="$(MAKE)" $(SHELL) $(srcdir)/tests/build-check.sh

CLEANFILES += tests/valgrind-logs/*.log

# The long crash loop: hundreds of SIGKILLs per tracker (CI runs it).
CRASH_ROUNDS = 300
CRASH_TRACKERS = uffd mprotect none
check-crash: tests/test_crash
	@for t in $(CRASH_TRACKERS); do \
	    echo "check-crash: tracker $$t, $(CRASH_ROUNDS) kills"; \
	    MMH_TEST_TRACKER=$$t MMH_CRASH_ROUNDS=$(CRASH_ROUNDS) ./tests/test_crash || exit 1; \
	done

.PHONY: check-valgrind check-sanitizers check-debug check-crash

installcheck-local:
	CC="$(CC)" CXX="$(CXX)" PKG_CONFIG="$(PKG_CONFIG)" DESTDIR="$(DESTDIR)" \
	pkgconfigdir="$(DESTDIR)$(pkgconfigdir)" mandir="$(DESTDIR)$(mandir)" \
	bindir="$(DESTDIR)$(bindir)" \
	$(SHELL) $(srcdir)/tests/installcheck.sh
