# The power-loss harness (tests/powerloss/, issue 13): test_powerloss
# records a workload's file changes and checks crash states built from
# them.  make check runs a short pass; make check-powerloss (CI) checks
# thousands of states per tracker.  Its recorder takes the place of libc's
# file calls for libmmheap.so, so the program exports its symbols.

if HAVE_CMOCKA
check_PROGRAMS += tests/test_powerloss
TESTS += tests/test_powerloss
endif

tests_test_powerloss_SOURCES = tests/test_powerloss.c \
	tests/powerloss/harness.h tests/powerloss/record.h tests/powerloss/model.h \
	tests/powerloss/recorder.c tests/powerloss/pattern.c tests/powerloss/workload.c \
	tests/powerloss/model.c tests/powerloss/replay.c tests/powerloss/check.c
tests_test_powerloss_LDFLAGS = -export-dynamic
tests_test_powerloss_LDADD = $(MMH_TEST_LDADD) -ldl

PL_STATES = 2000
check-powerloss: tests/test_powerloss tools/mmheap
	MMH_MMHEAP_TOOL='$(abs_top_builddir)/tools/mmheap' MMH_PL_STATES=$(PL_STATES) \
	MMH_PL_FAILED_STEP=7 ./tests/test_powerloss

.PHONY: check-powerloss
