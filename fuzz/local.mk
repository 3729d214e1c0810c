# fuzz: a libFuzzer target for mmh_open of existing heap files and the
# recovery of their write-ahead logs (included from the top Makefile.am;
# paths are relative to the top directory).  Not part of `make all` or
# `make check`: it needs clang with libFuzzer.
#
#   make fuzz                              an hour, or 1,000,000 runs if
#                                          sooner (at some 60 runs a second
#                                          on one core, the hour ends first)
#   make fuzz FUZZ_SECONDS=150             a bounded run, as .ci/run does
#   make fuzz FUZZ_ARGS='-jobs=2 -workers=2'        extra libFuzzer flags
#
# The fuzzer is built with clang from the library's own sources (those of
# libmmheap-core.la), all instrumented, rather than linked to the libtool
# library, whose objects come from the configured compiler without
# coverage; the byte loops listed in fuzz/coverage.ignore get no coverage
# callbacks.  `make fuzz` fails on any crash, sanitizer report, leak,
# timeout or memory blow-up; the input that caused it is written to
# fuzz/artifacts/ in the build directory.  The seed corpus is generated
# (fuzz/make_seeds) into fuzz/seeds; what the fuzzer finds goes to
# fuzz/corpus, kept between runs.

FUZZ_CC = clang
FUZZ_RUNS = 1000000
FUZZ_SECONDS = 3600
FUZZ_RSS_MB = 2048
FUZZ_TIMEOUT = 10
FUZZ_ARGS =
FUZZ_SANITIZERS = -fsanitize=address,undefined -fno-sanitize-recover=undefined
FUZZ_CFLAGS = -g -O1 -fno-omit-frame-pointer -pthread -Wall -Wextra -Wno-unused-parameter \
	-I$(top_srcdir)/include -I$(top_srcdir)/lib -I$(top_builddir) -I$(top_srcdir)/fuzz
FUZZ_COVERAGE = -fsanitize=fuzzer -fsanitize-coverage-ignorelist=$(top_srcdir)/fuzz/coverage.ignore
FUZZ_LIB_SRCS = $(addprefix $(top_srcdir)/,$(filter %.c,$(libmmheap_core_la_SOURCES)))
FUZZ_DEPS_H = $(top_srcdir)/fuzz/fuzz_format.h $(top_srcdir)/lib/internal.h \
	$(top_srcdir)/include/mmheap.h config.h

EXTRA_DIST += fuzz/fuzz_open.c fuzz/make_seeds.c fuzz/fuzz_format.h fuzz/coverage.ignore

fuzz/fuzz_open: $(top_srcdir)/fuzz/fuzz_open.c $(FUZZ_LIB_SRCS) $(FUZZ_DEPS_H) \
		$(top_srcdir)/fuzz/coverage.ignore
	@$(MKDIR_P) fuzz
	$(FUZZ_CC) $(FUZZ_CFLAGS) $(FUZZ_COVERAGE) $(FUZZ_SANITIZERS) -o $@ \
	    $(top_srcdir)/fuzz/fuzz_open.c $(FUZZ_LIB_SRCS) -ldl

fuzz/make_seeds: $(top_srcdir)/fuzz/make_seeds.c $(FUZZ_LIB_SRCS) $(FUZZ_DEPS_H)
	@$(MKDIR_P) fuzz
	$(FUZZ_CC) $(FUZZ_CFLAGS) -o $@ $(top_srcdir)/fuzz/make_seeds.c $(FUZZ_LIB_SRCS) -ldl

# -runs and -max_total_time: whichever comes first ends the run.  The
# suppressions are the sanitizer builds': commits write heap ranges, with
# their poisoned free blocks, through two functions of fileio.c.
fuzz: fuzz/fuzz_open fuzz/make_seeds
	rm -rf fuzz/seeds
	./fuzz/make_seeds fuzz/seeds
	@$(MKDIR_P) fuzz/corpus fuzz/artifacts
	ASAN_OPTIONS="$${ASAN_OPTIONS:+$$ASAN_OPTIONS:}suppressions=$(top_srcdir)/tests/asan.supp" \
	./fuzz/fuzz_open -runs=$(FUZZ_RUNS) -max_total_time=$(FUZZ_SECONDS) \
	    -timeout=$(FUZZ_TIMEOUT) -rss_limit_mb=$(FUZZ_RSS_MB) -print_final_stats=1 \
	    -artifact_prefix=fuzz/artifacts/ $(FUZZ_ARGS) fuzz/corpus fuzz/seeds

fuzz-clean:
	rm -rf fuzz/fuzz_open fuzz/make_seeds fuzz/seeds fuzz/corpus fuzz/artifacts

CLEANFILES += fuzz/fuzz_open fuzz/make_seeds

.PHONY: fuzz fuzz-clean
