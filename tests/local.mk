# tests: owned by the test suite (included from the top Makefile.am; every
# path is relative to the top directory).
#
#   make check              the cmocka suite, tests/preload.sh and
#                           tests/kv_server.sh (examples/kv_server -f)
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
	tests/test_tracker \
	tests/test_crash \
	tests/test_faults \
	tests/test_track \
	tests/test_snapshot \
	tests/test_check \
	tests/test_trust

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
	tests/testutil.h \
	tests/valgrind.sh \
	tests/build-check.sh \
	tests/asan.supp \
	tests/valgrind.supp \
	tests/no-cmocka.sh \
	tests/preload.sh \
	tests/kv_server.sh \
	tests/installcheck.sh

if HAVE_CMOCKA
check_PROGRAMS += $(MMH_TESTS) $(MMH_MALLOC_TESTS) $(MMH_CHECKER_TESTS)
TESTS += $(MMH_TESTS) $(MMH_MALLOC_TESTS) $(MMH_CHECKER_TESTS)
else
TESTS += tests/no-cmocka.sh
endif
TESTS += tests/preload.sh tests/kv_server.sh

# Where test_malloc_dlopen and preload.sh find the library.
AM_TESTS_ENVIRONMENT = \
	MMH_MALLOC_LIB='$(abs_top_builddir)/.libs/libmmheap-malloc.so'; \
	MMH_MMHEAP_TOOL='$(abs_top_builddir)/tools/mmheap'; \
	export MMH_MALLOC_LIB MMH_MMHEAP_TOOL;

MMH_TEST_CFLAGS = $(AM_CFLAGS) $(CMOCKA_CFLAGS)
MMH_TEST_LDADD = libmmheap.la $(CMOCKA_LIBS)

tests_test_api_SOURCES = tests/test_api.c tests/testutil.h
tests_test_api_CFLAGS = $(MMH_TEST_CFLAGS)
tests_test_api_LDADD = $(MMH_TEST_LDADD)

tests_test_alloc_SOURCES = tests/test_alloc.c tests/testutil.h
tests_test_alloc_CFLAGS = $(MMH_TEST_CFLAGS)
tests_test_alloc_LDADD = $(MMH_TEST_LDADD)

tests_test_aligned_SOURCES = tests/test_aligned.c tests/testutil.h
tests_test_aligned_CFLAGS = $(MMH_TEST_CFLAGS)
tests_test_aligned_LDADD = $(MMH_TEST_LDADD)

tests_test_realloc_SOURCES = tests/test_realloc.c tests/testutil.h
tests_test_realloc_CFLAGS = $(MMH_TEST_CFLAGS)
tests_test_realloc_LDADD = $(MMH_TEST_LDADD)

tests_test_persist_SOURCES = tests/test_persist.c tests/testutil.h
tests_test_persist_CFLAGS = $(MMH_TEST_CFLAGS)
tests_test_persist_LDADD = $(MMH_TEST_LDADD)

tests_test_errors_SOURCES = tests/test_errors.c tests/testutil.h
tests_test_errors_CFLAGS = $(MMH_TEST_CFLAGS)
# libmmheap-core: the internal format functions, to craft headers
tests_test_errors_LDADD = libmmheap-core.la $(CMOCKA_LIBS)

tests_test_growth_SOURCES = tests/test_growth.c tests/testutil.h
tests_test_growth_CFLAGS = $(MMH_TEST_CFLAGS)
tests_test_growth_LDADD = $(MMH_TEST_LDADD)

tests_test_relocate_SOURCES = tests/test_relocate.c tests/testutil.h
tests_test_relocate_CFLAGS = $(MMH_TEST_CFLAGS)
tests_test_relocate_LDADD = $(MMH_TEST_LDADD)

tests_test_threads_SOURCES = tests/test_threads.c tests/testutil.h
tests_test_threads_CFLAGS = $(MMH_TEST_CFLAGS)
tests_test_threads_LDADD = $(MMH_TEST_LDADD)

tests_test_tracker_SOURCES = tests/test_tracker.c tests/testutil.h
tests_test_tracker_CFLAGS = $(MMH_TEST_CFLAGS)
tests_test_tracker_LDADD = $(MMH_TEST_LDADD)

tests_test_faults_SOURCES = tests/test_faults.c tests/testutil.h
tests_test_faults_CFLAGS = $(MMH_TEST_CFLAGS)
tests_test_faults_LDADD = $(MMH_TEST_LDADD) -ldl

tests_test_crash_SOURCES = tests/test_crash.c tests/testutil.h
tests_test_crash_CFLAGS = $(MMH_TEST_CFLAGS)
tests_test_crash_LDADD = $(MMH_TEST_LDADD)

tests_test_snapshot_SOURCES = tests/test_snapshot.c tests/testutil.h
tests_test_snapshot_CFLAGS = $(MMH_TEST_CFLAGS)
tests_test_snapshot_LDADD = $(MMH_TEST_LDADD) -ldl

tests_test_trust_SOURCES = tests/test_trust.c tests/testutil.h
tests_test_trust_CFLAGS = $(MMH_TEST_CFLAGS)
tests_test_trust_LDADD = $(MMH_TEST_LDADD) -ldl

# Reaches the metadata's layout to damage it: linked to the library's
# objects.  Runs tools/mmheap.
tests_test_check_SOURCES = tests/test_check.c tests/testutil.h
tests_test_check_CFLAGS = $(MMH_TEST_CFLAGS)
tests_test_check_LDADD = libmmheap-core.la $(CMOCKA_LIBS)

# MMH_TEST_DROPIN: malloc must be mmheap's (testutil.h).
MMH_DROPIN_CPPFLAGS = $(AM_CPPFLAGS) -DMMH_TEST_DROPIN
MMH_DROPIN_LDADD = libmmheap-malloc.la $(CMOCKA_LIBS)

tests_test_malloc_SOURCES = tests/test_malloc.c tests/testutil.h
tests_test_malloc_CPPFLAGS = $(MMH_DROPIN_CPPFLAGS)
tests_test_malloc_CFLAGS = $(MMH_TEST_CFLAGS)
tests_test_malloc_LDADD = $(MMH_DROPIN_LDADD)

tests_test_malloc_threads_SOURCES = tests/test_malloc_threads.c tests/testutil.h
tests_test_malloc_threads_CPPFLAGS = $(MMH_DROPIN_CPPFLAGS)
tests_test_malloc_threads_CFLAGS = $(MMH_TEST_CFLAGS)
tests_test_malloc_threads_LDADD = $(MMH_DROPIN_LDADD)

# C++17 for the aligned operators new and delete; -fsized-deallocation for
# clang++, which does not call the sized forms by default.
tests_test_malloc_cxx_SOURCES = tests/test_malloc_cxx.cc tests/testutil.h
tests_test_malloc_cxx_CPPFLAGS = $(MMH_DROPIN_CPPFLAGS)
tests_test_malloc_cxx_CXXFLAGS = $(AM_CXXFLAGS) $(CMOCKA_CFLAGS) -Wall -Wextra \
	-std=gnu++17 -fsized-deallocation
tests_test_malloc_cxx_LDADD = $(MMH_DROPIN_LDADD)

tests_test_malloc_dlopen_SOURCES = tests/test_malloc_dlopen.c tests/testutil.h
tests_test_malloc_dlopen_CFLAGS = $(MMH_TEST_CFLAGS)
tests_test_malloc_dlopen_LDADD = $(CMOCKA_LIBS) -ldl

tests_test_memcheck_SOURCES = tests/test_memcheck.c tests/testutil.h
tests_test_memcheck_CFLAGS = $(MMH_TEST_CFLAGS)
tests_test_memcheck_LDADD = libmmheap-core.la $(CMOCKA_LIBS)

tests_test_asan_SOURCES = tests/test_asan.c tests/testutil.h
tests_test_asan_CFLAGS = $(MMH_TEST_CFLAGS)
tests_test_asan_LDADD = $(MMH_TEST_LDADD)

# Reaches the trackers' internal interface: linked to the library's objects.
tests_test_track_SOURCES = tests/test_track.c tests/testutil.h
tests_test_track_CFLAGS = $(MMH_TEST_CFLAGS)
tests_test_track_LDADD = libmmheap-core.la $(CMOCKA_LIBS)

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
	CC="$(CC)" PKG_CONFIG="$(PKG_CONFIG)" DESTDIR="$(DESTDIR)" \
	pkgconfigdir="$(DESTDIR)$(pkgconfigdir)" mandir="$(DESTDIR)$(mandir)" \
	bindir="$(DESTDIR)$(bindir)" \
	$(SHELL) $(srcdir)/tests/installcheck.sh
