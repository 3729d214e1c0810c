# benchmarks
#
# Built only by `make bench` (EXTRA_PROGRAMS), never by plain `make` or
# `make check`; the sources still go into the tarball, so `make distcheck`
# covers them.  `make bench` builds the driver and runs bench/run.sh, which
# prints the comparison table (mmheap vs glibc, jemalloc, mimalloc, tcmalloc).
# Every suite's script saves what it printed, with the command, commit,
# machine and load average, as bench/results/YYYY-MM-DD-SUITE.md
# (bench/lib.sh, bench_main); bench/README.md is the manual.

EXTRA_PROGRAMS += bench/bench_alloc
bench_bench_alloc_SOURCES = bench/bench_alloc.c bench/benchutil.h
# -O2 even where CFLAGS say otherwise (CFLAGS come last, so an explicit
# CFLAGS=-O0 still wins; run.sh warns about unoptimized or sanitized builds).
bench_bench_alloc_CFLAGS = $(AM_CFLAGS) -O2
# -no-install: a real executable with an rpath to .libs, not a libtool wrapper
# script, so LD_PRELOAD applies to the benchmark and nothing else.
bench_bench_alloc_LDFLAGS = $(AM_LDFLAGS) -no-install
bench_bench_alloc_LDADD = libmmheap.la -ldl

# bench/benchutil.h: C helpers shared by the benchmark programs (errors,
# time, wyrand, medians); bench/lib.sh: shell functions shared by the
# scripts (options, peers, the dated results file).
EXTRA_DIST += bench/run.sh bench/instr.sh bench/README.md bench/benchutil.h bench/lib.sh
CLEANFILES += bench/bench_alloc$(EXEEXT)

BENCH_BINS = bench/bench_alloc$(EXEEXT)
bench-programs: $(BENCH_BINS)

# BENCH_FLAGS: extra options for run.sh, e.g. make bench BENCH_FLAGS='--rounds 9'
bench: $(BENCH_BINS)
	$(SHELL) $(srcdir)/bench/run.sh --no-build $(BENCH_FLAGS) .

# instructions per alloc+free pair under callgrind (needs valgrind);
# BENCH_INSTR_FLAGS: options for instr.sh, e.g. --tag=NAME
bench-instr: $(BENCH_BINS)
	$(SHELL) $(srcdir)/bench/instr.sh --no-build $(BENCH_INSTR_FLAGS) . $(BENCH_WORKLOADS)

.PHONY: bench bench-instr bench-programs

# ---- persistence benchmarks (make bench-persist) ---------------------------
#
# bench/bench_persist: commit latency against the floor (pwrite of the same
# pages + one fdatasync) for 1, 16 and 256 pages in a 64 MiB heap and 200
# pages in a 1 GiB heap, sustained back-to-back commits, recovery time after
# a SIGKILL, bytes written per byte changed, first-write cost per tracker.
# bench/bench_persist_alloc: persistent alloc/free throughput with periodic
# commits against PMDK libpmemobj and Boost.Interprocess.  Both are
# EXTRA_PROGRAMS, built only here; bench/persist.sh runs them and saves the
# Markdown under bench/results/.  The peers are optional and found at make
# time: PMDK through pkg-config (libpmemobj-dev), Boost by __has_include
# (libboost-dev, header-only); a missing one is reported, not fatal.

EXTRA_PROGRAMS += bench/bench_persist bench/bench_persist_alloc
bench_bench_persist_SOURCES = bench/bench_persist.c bench/benchutil.h
bench_bench_persist_CFLAGS = $(AM_CFLAGS) -O2
bench_bench_persist_LDFLAGS = $(AM_LDFLAGS) -no-install
bench_bench_persist_LDADD = libmmheap.la

BENCH_PMEMOBJ_CFLAGS = $(shell $(PKG_CONFIG) --exists libpmemobj 2>/dev/null && \
	echo -DHAVE_PMEMOBJ $$($(PKG_CONFIG) --cflags libpmemobj))
BENCH_PMEMOBJ_LIBS = $(shell $(PKG_CONFIG) --exists libpmemobj 2>/dev/null && \
	$(PKG_CONFIG) --libs libpmemobj)
bench_bench_persist_alloc_SOURCES = bench/persist_alloc.cc
bench_bench_persist_alloc_CXXFLAGS = $(AM_CXXFLAGS) -O2 $(BENCH_PMEMOBJ_CFLAGS)
# The PMDK libraries go in LDFLAGS: automake refuses non -l words (the
# $(shell) call) in LDADD.  --no-as-needed keeps them despite their place
# before the objects on the link line.
bench_bench_persist_alloc_LDFLAGS = $(AM_LDFLAGS) -no-install -Wl,--no-as-needed \
	$(BENCH_PMEMOBJ_LIBS)
bench_bench_persist_alloc_LDADD = libmmheap.la -ldl

EXTRA_DIST += bench/persist.sh
CLEANFILES += bench/bench_persist$(EXEEXT) bench/bench_persist_alloc$(EXEEXT)

BENCH_PERSIST_BINS = bench/bench_persist$(EXEEXT) bench/bench_persist_alloc$(EXEEXT)
bench-persist-programs: $(BENCH_PERSIST_BINS)

# BENCH_PERSIST_FLAGS: options for persist.sh, e.g. --dir=/mnt/ssd --quick,
# --only=small,sustained, --tag=NAME (bench/results/DATE-persist-NAME.md)
bench-persist: $(BENCH_PERSIST_BINS)
	$(SHELL) $(srcdir)/bench/persist.sh --no-build $(BENCH_PERSIST_FLAGS) .

.PHONY: bench-persist bench-persist-programs

# Shared-mode commit: per-range msync against sync_file_range + fdatasync,
# run by bench/shared_sync.sh.
EXTRA_PROGRAMS += bench/bench_shared_sync
bench_bench_shared_sync_SOURCES = bench/bench_shared_sync.c
bench_bench_shared_sync_CFLAGS = $(AM_CFLAGS) -O2
EXTRA_DIST += bench/shared_sync.sh
CLEANFILES += bench/bench_shared_sync$(EXEEXT)

# BENCH_SHARED_SYNC_FLAGS: options for shared_sync.sh, e.g. --runs=5 --dir=/mnt/ssd
bench-shared-sync: bench/bench_shared_sync$(EXEEXT)
	$(SHELL) $(srcdir)/bench/shared_sync.sh --no-build $(BENCH_SHARED_SYNC_FLAGS) .

.PHONY: bench-shared-sync

# ---- fork snapshots (make bench-snapshot) ----------------------------------
#
# bench/bench_snapshot: mmh_snapshot of a 1 GiB anonymous heap, default and
# MMH_HUGEPAGES (pause, job, copy-on-write pages, idle and under a write
# load), and the client side of bench/snapshot.sh, which runs
# examples/kv_server (with and without -H) against redis-server
# (Debian's redis-server package): background snapshot of the same ~1 GiB
# of data, and restart to the first answered GET.  Redis is optional: without
# it the script runs the in-process part only.

EXTRA_PROGRAMS += bench/bench_snapshot
bench_bench_snapshot_SOURCES = bench/bench_snapshot.c bench/benchutil.h
bench_bench_snapshot_CFLAGS = $(AM_CFLAGS) -O2
bench_bench_snapshot_LDFLAGS = $(AM_LDFLAGS) -no-install
bench_bench_snapshot_LDADD = libmmheap.la

EXTRA_DIST += bench/snapshot.sh
CLEANFILES += bench/bench_snapshot$(EXEEXT)

BENCH_SNAPSHOT_BINS = bench/bench_snapshot$(EXEEXT) examples/kv_server$(EXEEXT)
bench-snapshot-programs: $(BENCH_SNAPSHOT_BINS)

# BENCH_SNAPSHOT_FLAGS: options for snapshot.sh, e.g. --reps=5 --quick
bench-snapshot: $(BENCH_SNAPSHOT_BINS)
	$(SHELL) $(srcdir)/bench/snapshot.sh --no-build $(BENCH_SNAPSHOT_FLAGS) .

.PHONY: bench-snapshot bench-snapshot-programs

# ---- drop-in malloc (make bench-malloc) ------------------------------------
#
# bench/bench_malloc: workloads that call plain malloc/free (larson,
# producer-consumer, false sharing, Pareto sizes, realloc growth, large-block
# reuse, thread churn, realloc chains, mixed sizes and alignments,
# xmalloc-test, mstress, rptest) and a runner that measures a command's wall
# time and peak RSS; bench/malloc.sh runs them, redis-server + redis-benchmark, the
# sqlite3 shell and python3 under glibc, jemalloc, mimalloc, tcmalloc and
# libmmheap-malloc.so (LD_PRELOAD); bench/scaling.sh runs the multi-thread
# ones at 1 to 16 threads (make bench-scaling).  The program does not link
# mmheap: the allocator under test is always the preloaded one.

EXTRA_PROGRAMS += bench/bench_malloc bench/bench_threads
bench_bench_malloc_SOURCES = bench/bench_malloc.c bench/benchutil.h
bench_bench_malloc_CFLAGS = $(AM_CFLAGS) -O2
bench_bench_malloc_LDFLAGS = $(AM_LDFLAGS) -no-install

# bench/bench_threads THREADS: that many threads alive at once allocating
# (more than the drop-in malloc's per-thread slots); bench/threads.sh runs it
# under each allocator (make bench-threads).
bench_bench_threads_SOURCES = bench/bench_threads.c
bench_bench_threads_CFLAGS = $(AM_CFLAGS) -O2
bench_bench_threads_LDFLAGS = $(AM_LDFLAGS) -no-install

EXTRA_DIST += bench/malloc.sh bench/threads.sh bench/scaling.sh
CLEANFILES += bench/bench_malloc$(EXEEXT) bench/bench_threads$(EXEEXT)

BENCH_MALLOC_BINS = bench/bench_malloc$(EXEEXT) bench/bench_threads$(EXEEXT) libmmheap-malloc.la
bench-malloc-programs: $(BENCH_MALLOC_BINS)

# BENCH_MALLOC_FLAGS: options for malloc.sh, e.g. --reps=9 --plot=malloc.svg
bench-malloc: $(BENCH_MALLOC_BINS)
	$(SHELL) $(srcdir)/bench/malloc.sh --no-build $(BENCH_MALLOC_FLAGS) .

# BENCH_THREADS_FLAGS: options for threads.sh, e.g. --threads=1000,4000 --rounds=5
bench-threads: $(BENCH_MALLOC_BINS)
	$(SHELL) $(srcdir)/bench/threads.sh --no-build $(BENCH_THREADS_FLAGS) .

# BENCH_SCALING_FLAGS: options for scaling.sh, e.g. --threads=1,2,4 --reps=5,
# or --device --budget=480 --out-dir=DIR on a many-core machine
bench-scaling: $(BENCH_MALLOC_BINS)
	$(SHELL) $(srcdir)/bench/scaling.sh --no-build $(BENCH_SCALING_FLAGS) .

.PHONY: bench-malloc bench-malloc-programs bench-threads bench-scaling

# ---- names (make bench-names) ----------------------------------------------
#
# bench/bench_names (names.cc): a million names in a file heap --
# mmh_name_set/get/each, insert, lookup, miss, walk, commit and reopen times
# and memory per name -- against Boost.Interprocess named objects (rbtree
# and hash indexes; found by __has_include, optional) and std::unordered_map
# as the floor; bench/names.sh runs it and saves bench/results/DATE-names.md.
# C++20 for the floor's lookup by string_view (the program falls back
# without it).

EXTRA_PROGRAMS += bench/bench_names
bench_bench_names_SOURCES = bench/names.cc bench/benchutil.h
bench_bench_names_CXXFLAGS = $(AM_CXXFLAGS) -O2 -std=gnu++20
bench_bench_names_LDFLAGS = $(AM_LDFLAGS) -no-install
bench_bench_names_LDADD = libmmheap.la

EXTRA_DIST += bench/names.sh
CLEANFILES += bench/bench_names$(EXEEXT)

# BENCH_NAMES_FLAGS: options for names.sh, e.g. --rounds=5 --quick --dir=/mnt/ssd
bench-names: bench/bench_names$(EXEEXT)
	$(SHELL) $(srcdir)/bench/names.sh --no-build $(BENCH_NAMES_FLAGS) .

.PHONY: bench-names
