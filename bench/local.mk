# benchmarks
#
# Built only by `make bench` (EXTRA_PROGRAMS), never by plain `make` or
# `make check`; the sources still go into the tarball, so `make distcheck`
# covers them.  `make bench` builds the driver and runs bench/run.sh, which
# prints the comparison table (mmheap vs glibc, jemalloc, mimalloc, tcmalloc).

EXTRA_PROGRAMS += bench/bench_alloc
bench_bench_alloc_SOURCES = bench/bench_alloc.c
# -O2 even where CFLAGS say otherwise (CFLAGS come last, so an explicit
# CFLAGS=-O0 still wins; run.sh warns about unoptimized or sanitized builds).
bench_bench_alloc_CFLAGS = $(AM_CFLAGS) -O2
# -no-install: a real executable with an rpath to .libs, not a libtool wrapper
# script, so LD_PRELOAD applies to the benchmark and nothing else.
bench_bench_alloc_LDFLAGS = $(AM_LDFLAGS) -no-install
bench_bench_alloc_LDADD = libmmheap.la -ldl

EXTRA_DIST += bench/run.sh bench/instr.sh bench/README.md
CLEANFILES += bench/bench_alloc$(EXEEXT)

BENCH_BINS = bench/bench_alloc$(EXEEXT)
bench-programs: $(BENCH_BINS)

# BENCH_FLAGS: extra options for run.sh, e.g. make bench BENCH_FLAGS='--rounds 9'
bench: $(BENCH_BINS)
	$(SHELL) $(srcdir)/bench/run.sh --no-build $(BENCH_FLAGS) .

# instructions per alloc+free pair under callgrind (needs valgrind)
bench-instr: $(BENCH_BINS)
	$(SHELL) $(srcdir)/bench/instr.sh --no-build . $(BENCH_WORKLOADS)

.PHONY: bench bench-instr bench-programs
