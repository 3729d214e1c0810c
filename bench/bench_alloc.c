/* bench_alloc: allocation benchmark driver for mmheap and its peers.
 *
 * One driver, several allocators.  --alloc=mmheap calls mmh_alloc/mmh_free on
 * an anonymous heap (mmh_open(NULL, NULL)); --alloc=system calls malloc/free,
 * which is glibc's allocator, or jemalloc/mimalloc/tcmalloc when bench/run.sh
 * starts the program with LD_PRELOAD.  --expect=NAME makes the program refuse
 * to run unless the allocator it calls really comes from a shared object whose
 * path contains NAME, so a preload that silently failed is never reported.
 *
 * Every workload is written once as an always-inline function taking the
 * allocator kind as a compile-time constant; it is instantiated per kind, so
 * both allocators run exactly the same loop with a direct call and no
 * per-operation dispatch.  Blocks are written (a tag at both ends) and the tag
 * is checked before each free, so the compiler cannot elide an alloc/free pair
 * and an allocator that hands out overlapping blocks is caught.
 *
 * Output, one line per measurement (tab separated):
 *     result  LABEL  WORKLOAD  NS_PER_PAIR  PAIRS  CPU_NS_PER_PAIR
 * where NS_PER_PAIR is wall-clock time x threads / alloc+free pairs, i.e.
 * thread-nanoseconds per pair (for one thread: ns per alloc+free pair; under
 * perfect scaling a 2-thread row equals the 1-thread row), and
 * CPU_NS_PER_PAIR the same from the threads' CPU clocks.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define BENCH_NAME "bench_alloc"
#include "benchutil.h"

#if defined(__SANITIZE_ADDRESS__)
#define BENCH_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define BENCH_SANITIZED 1
#endif
#endif
#ifndef BENCH_SANITIZED
#define BENCH_SANITIZED 0
#endif

#define ALWAYS_INLINE static inline __attribute__((always_inline))
#define NOINLINE __attribute__((noinline))

/* Keep p (and every store through it so far) observable to the compiler. */
#define ESCAPE(p) __asm__ volatile("" : : "r"(p) : "memory")

enum kind { K_MMHEAP, K_SYSTEM };

static mmh_heap *g_heap;
static volatile uint64_t g_sink;
static atomic_ulong g_errors;

ALWAYS_INLINE void *a_alloc(enum kind k, size_t n)
{
    return k == K_MMHEAP ? mmh_alloc(g_heap, n) : malloc(n);
}

ALWAYS_INLINE void a_free(enum kind k, void *p)
{
    if (k == K_MMHEAP)
        mmh_free(g_heap, p);
    else
        free(p);
}

static NOINLINE void oom(size_t n)
{
    fprintf(stderr, "bench_alloc: allocation of %zu bytes failed: %s\n", n,
            g_heap ? mmh_errmsg() : strerror(errno));
    exit(2);
}

static NOINLINE void bad_tag(const char *wl, const void *p, size_t n)
{
    if (atomic_fetch_add(&g_errors, 1) < 5)
        fprintf(stderr, "bench_alloc: %s: block %p (size %zu) was overwritten "
                "while live\n", wl, p, n);
}

/* ---- deterministic PRNG (wyrand) and size distributions ---------------- */

ALWAYS_INLINE uint64_t rnd(uint64_t *s)
{
    *s += 0xa0761d6478bd642fULL;
    __uint128_t t = (__uint128_t)*s * (*s ^ 0xe7037ed1a0b428dbULL);
    return (uint64_t)(t >> 64) ^ (uint64_t)t;
}

/* uniform in [0, n) */
ALWAYS_INLINE uint32_t rnd_below(uint64_t r, uint32_t n)
{
    return (uint32_t)(((r & 0xffffffffULL) * n) >> 32);
}

/* 8..512 inclusive, uniform */
ALWAYS_INLINE size_t size_small(uint64_t r)
{
    return 8 + rnd_below(r >> 16, 505);
}

/* 16 B .. 32 KiB, log-uniform: an octave [2^e, 2^(e+1)), e in 4..14, chosen
 * uniformly, then a uniform size inside it. */
ALWAYS_INLINE size_t size_mixed(uint64_t r)
{
    unsigned e = 4 + rnd_below(r >> 32, 11);
    size_t lo = (size_t)1 << e;
    return lo + (((r & 0xffffffffULL) * lo) >> 32);
}

/* Tag both ends of a block; check them before free. */
ALWAYS_INLINE void tag(unsigned char *p, size_t n, unsigned char t)
{
    p[0] = t;
    p[n - 1] = t;
}

ALWAYS_INLINE int tag_ok(const unsigned char *p, size_t n, unsigned char t)
{
    return p[0] == t && p[n - 1] == t;
}

/* ---- workload 1: fast path -------------------------------------------- */

ALWAYS_INLINE void fast_loop(enum kind k, size_t size, uint64_t n)
{
    uint64_t acc = 0;
    for (uint64_t i = 0; i < n; i++) {
        unsigned char *p = a_alloc(k, size);
        if (__builtin_expect(p == NULL, 0))
            oom(size);
        p[0] = (unsigned char)i;
        ESCAPE(p);
        acc += p[0];
        a_free(k, p);
    }
    g_sink += acc;
}

/* ---- workload 2: batch ------------------------------------------------- */

#define BATCH_N    1000
#define BATCH_SETS 16

struct batch_plan {
    uint32_t size[BATCH_SETS][BATCH_N];
    uint16_t order[BATCH_SETS][BATCH_N];
};

static void batch_plan_init(struct batch_plan *bp, uint64_t seed)
{
    for (int s = 0; s < BATCH_SETS; s++) {
        for (int i = 0; i < BATCH_N; i++) {
            bp->size[s][i] = (uint32_t)size_small(rnd(&seed));
            bp->order[s][i] = (uint16_t)i;
        }
        for (int i = BATCH_N - 1; i > 0; i--) { /* Fisher-Yates */
            int j = (int)rnd_below(rnd(&seed), (uint32_t)i + 1);
            uint16_t t = bp->order[s][i];
            bp->order[s][i] = bp->order[s][j];
            bp->order[s][j] = t;
        }
    }
}

ALWAYS_INLINE void batch_loop(enum kind k, const struct batch_plan *bp,
                              uint64_t rounds)
{
    unsigned char *ptr[BATCH_N];
    for (uint64_t r = 0; r < rounds; r++) {
        const uint32_t *sz = bp->size[r % BATCH_SETS];
        const uint16_t *ord = bp->order[r % BATCH_SETS];
        for (int i = 0; i < BATCH_N; i++) {
            unsigned char *p = a_alloc(k, sz[i]);
            if (__builtin_expect(p == NULL, 0))
                oom(sz[i]);
            tag(p, sz[i], (unsigned char)i);
            ptr[i] = p;
        }
        ESCAPE(ptr);
        for (int i = 0; i < BATCH_N; i++) {
            int j = ord[i];
            if (__builtin_expect(!tag_ok(ptr[j], sz[j], (unsigned char)j), 0))
                bad_tag("batch", ptr[j], sz[j]);
            a_free(k, ptr[j]);
        }
    }
}

/* ---- workload 3: mixed sizes, live working set, random replace --------- */

#define MIXED_SLOTS 10000

struct slot {
    unsigned char *p;
    uint32_t size;
};

ALWAYS_INLINE void mixed_fill(enum kind k, struct slot *s, uint64_t *seed)
{
    for (uint32_t i = 0; i < MIXED_SLOTS; i++) {
        size_t n = size_mixed(rnd(seed));
        s[i].p = a_alloc(k, n);
        if (s[i].p == NULL)
            oom(n);
        s[i].size = (uint32_t)n;
        tag(s[i].p, n, (unsigned char)i);
    }
}

ALWAYS_INLINE void mixed_loop(enum kind k, struct slot *s, uint64_t *seed,
                              uint64_t n)
{
    uint64_t st = *seed;
    for (uint64_t i = 0; i < n; i++) {
        uint64_t r = rnd(&st);
        uint32_t j = rnd_below(r, MIXED_SLOTS);
        size_t sz = size_mixed(rnd(&st));
        struct slot *sl = &s[j];
        if (__builtin_expect(!tag_ok(sl->p, sl->size, (unsigned char)j), 0))
            bad_tag("mixed", sl->p, sl->size);
        a_free(k, sl->p);
        unsigned char *p = a_alloc(k, sz);
        if (__builtin_expect(p == NULL, 0))
            oom(sz);
        tag(p, sz, (unsigned char)j);
        sl->p = p;
        sl->size = (uint32_t)sz;
    }
    *seed = st;
}

ALWAYS_INLINE void mixed_drain(enum kind k, struct slot *s)
{
    for (uint32_t i = 0; i < MIXED_SLOTS; i++) {
        if (!tag_ok(s[i].p, s[i].size, (unsigned char)i))
            bad_tag("mixed", s[i].p, s[i].size);
        a_free(k, s[i].p);
    }
}

/* ---- workload 4b: cross-thread: producer allocates, consumer frees ----- */

#ifndef RING_N
#define RING_N 1024 /* power of two */
#endif

struct ring {
    _Alignas(64) atomic_size_t head; /* written by the producer */
    _Alignas(64) atomic_size_t tail; /* written by the consumer */
    _Alignas(64) unsigned char *slot[RING_N];
};

static void spin_pause(unsigned *spins)
{
    if (++*spins < 256) {
#if defined(__x86_64__) || defined(__i386__)
        __builtin_ia32_pause();
#endif
    } else {
        *spins = 0;
        sched_yield(); /* 2 cores, shared machine: do not starve the peer */
    }
}

/* The indices are published every RING_PUBLISH elements (and whenever the
 * thread would otherwise wait), so the ring itself costs little next to the
 * allocator: what is measured is mostly alloc + remote free + the inherent
 * transfer of each block's cache line to the consumer. */
#ifndef RING_PUBLISH
#define RING_PUBLISH 32
#endif

ALWAYS_INLINE void xthread_produce(enum kind k, struct ring *rg, uint64_t n,
                                   uint64_t seed)
{
    size_t head = 0, tail_seen = 0;
    unsigned spins = 0;
    for (uint64_t i = 0; i < n; i++) {
        size_t sz = size_small(rnd(&seed));
        unsigned char *p = a_alloc(k, sz);
        if (__builtin_expect(p == NULL, 0))
            oom(sz);
        tag(p, sz, (unsigned char)i);
        memcpy(p + 1, &(uint32_t){(uint32_t)sz}, sizeof(uint32_t)); /* sz >= 8 */
        if (head - tail_seen == RING_N) {
            atomic_store_explicit(&rg->head, head, memory_order_release);
            for (;;) {
                tail_seen = atomic_load_explicit(&rg->tail, memory_order_acquire);
                if (head - tail_seen < RING_N)
                    break;
                spin_pause(&spins);
            }
        }
        rg->slot[head % RING_N] = p;
        head++;
        if (head % RING_PUBLISH == 0)
            atomic_store_explicit(&rg->head, head, memory_order_release);
    }
    atomic_store_explicit(&rg->head, head, memory_order_release);
}

ALWAYS_INLINE void xthread_consume(enum kind k, struct ring *rg, uint64_t n)
{
    size_t tail = 0, head_seen = 0;
    unsigned spins = 0;
    for (uint64_t i = 0; i < n; i++) {
        if (tail == head_seen) {
            atomic_store_explicit(&rg->tail, tail, memory_order_release);
            for (;;) {
                head_seen = atomic_load_explicit(&rg->head, memory_order_acquire);
                if (tail != head_seen)
                    break;
                spin_pause(&spins);
            }
        }
        unsigned char *p = rg->slot[tail % RING_N];
        tail++;
        if (tail % RING_PUBLISH == 0)
            atomic_store_explicit(&rg->tail, tail, memory_order_release);
        uint32_t sz;
        memcpy(&sz, p + 1, sizeof sz);
        if (__builtin_expect(sz < 8 || sz > 512 || !tag_ok(p, sz, (unsigned char)i), 0))
            bad_tag("xthread", p, sz);
        a_free(k, p);
    }
}

/* ---- instantiation per allocator -------------------------------------- */

#define INSTANTIATE(suffix, K)                                                \
    static NOINLINE void fast_##suffix(size_t size, uint64_t n)               \
    { fast_loop(K, size, n); }                                                \
    static NOINLINE void batch_##suffix(const struct batch_plan *bp,          \
                                        uint64_t rounds)                      \
    { batch_loop(K, bp, rounds); }                                            \
    static NOINLINE void mixed_fill_##suffix(struct slot *s, uint64_t *seed)  \
    { mixed_fill(K, s, seed); }                                               \
    static NOINLINE void mixed_##suffix(struct slot *s, uint64_t *seed,       \
                                        uint64_t n)                           \
    { mixed_loop(K, s, seed, n); }                                            \
    static NOINLINE void mixed_drain_##suffix(struct slot *s)                 \
    { mixed_drain(K, s); }                                                    \
    static NOINLINE void produce_##suffix(struct ring *rg, uint64_t n,        \
                                          uint64_t seed)                      \
    { xthread_produce(K, rg, n, seed); }                                      \
    static NOINLINE void consume_##suffix(struct ring *rg, uint64_t n)        \
    { xthread_consume(K, rg, n); }

INSTANTIATE(mmh, K_MMHEAP)
INSTANTIATE(sys, K_SYSTEM)

struct ops {
    void (*fast)(size_t, uint64_t);
    void (*batch)(const struct batch_plan *, uint64_t);
    void (*mixed_fill)(struct slot *, uint64_t *);
    void (*mixed)(struct slot *, uint64_t *, uint64_t);
    void (*mixed_drain)(struct slot *);
    void (*produce)(struct ring *, uint64_t, uint64_t);
    void (*consume)(struct ring *, uint64_t);
};

static const struct ops ops_mmh = {
    fast_mmh, batch_mmh, mixed_fill_mmh, mixed_mmh, mixed_drain_mmh,
    produce_mmh, consume_mmh,
};
static const struct ops ops_sys = {
    fast_sys, batch_sys, mixed_fill_sys, mixed_sys, mixed_drain_sys,
    produce_sys, consume_sys,
};

static const struct ops *g_ops;

/* ---- workloads and the thread harness --------------------------------- */

enum wl_type { W_FAST, W_BATCH, W_MIXED, W_XTHREAD };

struct workload {
    const char *name;
    enum wl_type type;
    int threads;
    size_t size;     /* W_FAST */
    uint64_t pairs;  /* per thread, at --scale=1 */
    const char *what;
};

static const struct workload workloads[] = {
    { "fast-16",      W_FAST,    1, 16,   20000000, "alloc(16)/free, tight loop" },
    { "fast-64",      W_FAST,    1, 64,   20000000, "alloc(64)/free, tight loop" },
    { "fast-256",     W_FAST,    1, 256,  20000000, "alloc(256)/free, tight loop" },
    { "fast-1024",    W_FAST,    1, 1024, 20000000, "alloc(1024)/free, tight loop" },
    { "batch",        W_BATCH,   1, 0,    10000000, "1000 x alloc(8..512), free in random order" },
    { "mixed",        W_MIXED,   1, 0,     5000000, "16B..32KiB log-uniform, 10000 live, random replace" },
    { "fast-64-2t",   W_FAST,    2, 64,   10000000, "fast-64 in 2 threads, one shared heap" },
    { "batch-2t",     W_BATCH,   2, 0,     5000000, "batch in 2 threads, one shared heap" },
    { "mixed-2t",     W_MIXED,   2, 0,     2500000, "mixed in 2 threads, own slots each" },
    { "xthread-2t",   W_XTHREAD, 2, 0,     5000000, "producer allocs 8..512, consumer frees (ring of 1024)" },
};
#define N_WORKLOADS (sizeof workloads / sizeof workloads[0])

struct job {
    const struct workload *w;
    int id;
    uint64_t n;
    struct ring *ring;
    struct slot *slots;
    struct batch_plan *plan;
    uint64_t seed;
    pthread_barrier_t *start;
    uint64_t t_start, t_end; /* this thread's timed section */
    uint64_t cpu_ns;         /* CPU time this thread spent in it */
};

/* Per-thread setup (untimed) before the start barrier, timed loop after. */
static void run_job(struct job *j)
{
    const struct workload *w = j->w;
    if (w->type == W_BATCH)
        batch_plan_init(j->plan, j->seed);
    if (w->type == W_MIXED)
        g_ops->mixed_fill(j->slots, &j->seed);
    pthread_barrier_wait(j->start);
    uint64_t cpu0 = clock_ns(CLOCK_THREAD_CPUTIME_ID);
    j->t_start = now_ns();
    switch (w->type) {
    case W_FAST:
        g_ops->fast(w->size, j->n);
        break;
    case W_BATCH:
        g_ops->batch(j->plan, j->n / BATCH_N);
        break;
    case W_MIXED:
        g_ops->mixed(j->slots, &j->seed, j->n);
        break;
    case W_XTHREAD:
        if (j->id == 0)
            g_ops->produce(j->ring, j->n, j->seed);
        else
            g_ops->consume(j->ring, j->n);
        break;
    }
    j->t_end = now_ns();
    j->cpu_ns = clock_ns(CLOCK_THREAD_CPUTIME_ID) - cpu0;
}

static void *job_thread(void *arg)
{
    run_job(arg);
    return NULL;
}

static void *xcalloc(size_t n, size_t sz)
{
    void *p = calloc(n, sz); /* harness memory: from the system allocator */
    if (p == NULL) {
        perror("bench_alloc: calloc");
        exit(2);
    }
    return p;
}

/* One timed run of w with n pairs per thread; returns thread-ns per pair
 * (wall time x threads / pairs) and, in *cpu, the threads' CPU time per pair
 * (which leaves out time a thread was not running at all: on a busy 2-CPU
 * machine the two numbers of a 2-thread row differ by that). */
static double measure(const struct workload *w, uint64_t n, double *cpu)
{
    int nt = w->threads;
    struct job jobs[2];
    pthread_t tid[2];
    pthread_barrier_t start;
    struct ring *ring = NULL;

    pthread_barrier_init(&start, NULL, (unsigned)nt);
    if (w->type == W_XTHREAD) {
        ring = aligned_alloc(64, sizeof *ring);
        if (ring == NULL)
            oom(sizeof *ring);
        memset(ring, 0, sizeof *ring);
    }
    for (int i = 0; i < nt; i++) {
        jobs[i] = (struct job){
            .w = w, .id = i, .n = n, .ring = ring, .start = &start,
            .seed = 0x6d6d68656170ULL + 7919ULL * (uint64_t)i,
        };
        if (w->type == W_MIXED)
            jobs[i].slots = xcalloc(MIXED_SLOTS, sizeof(struct slot));
        if (w->type == W_BATCH)
            jobs[i].plan = xcalloc(1, sizeof(struct batch_plan));
        if (pthread_create(&tid[i], NULL, job_thread, &jobs[i]) != 0) {
            fprintf(stderr, "bench_alloc: pthread_create failed\n");
            exit(2);
        }
    }
    /* Wall time from the first thread's start to the last one's end, taken
     * by the workers themselves (the main thread may not even be running
     * on a 2-CPU machine). */
    uint64_t t0 = UINT64_MAX, t1 = 0, cpu_total = 0;
    for (int i = 0; i < nt; i++) {
        pthread_join(tid[i], NULL);
        cpu_total += jobs[i].cpu_ns;
        if (jobs[i].t_start < t0)
            t0 = jobs[i].t_start;
        if (jobs[i].t_end > t1)
            t1 = jobs[i].t_end;
    }
    pthread_barrier_destroy(&start);

    for (int i = 0; i < nt; i++) {
        if (jobs[i].slots) {
            g_ops->mixed_drain(jobs[i].slots);
            free(jobs[i].slots);
        }
        free(jobs[i].plan);
    }
    free(ring);

    /* pairs in total: n per thread (a multiple of BATCH_N for batch), except
     * xthread where the two threads share n pairs */
    double pairs = w->type == W_XTHREAD ? (double)n : (double)n * nt;
    *cpu = (double)cpu_total / pairs;
    return (double)(t1 - t0) * nt / pairs;
}

/* ---- checking which allocator is really in use ------------------------ */

static const char *object_of(void *fn)
{
    Dl_info info;
    if (fn == NULL || dladdr(fn, &info) == 0 || info.dli_fname == NULL)
        return "?";
    return info.dli_fname;
}

static int maps_contain(const char *name)
{
    FILE *f = fopen("/proc/self/maps", "r");
    char line[4096];
    int found = 0;
    if (f == NULL)
        return 0;
    while (!found && fgets(line, sizeof line, f))
        found = strstr(line, name) != NULL;
    fclose(f);
    return found;
}

/* The object that provides the functions this run calls. */
static const char *allocator_object(enum kind k)
{
    if (k == K_MMHEAP)
        return object_of((void *)&mmh_alloc);
    return object_of(dlsym(RTLD_DEFAULT, "malloc"));
}

/* ---- main --------------------------------------------------------------- */

static void usage(FILE *f)
{
    fprintf(f,
        "usage: bench_alloc --alloc=mmheap|system [options]\n"
        "  --alloc=mmheap      mmh_alloc/mmh_free on mmh_open(NULL, NULL)\n"
        "  --alloc=system      malloc/free (use LD_PRELOAD for peers)\n"
        "  --expect=NAME       refuse to run unless the allocator's functions\n"
        "                      come from a loaded object whose path contains NAME\n"
        "  --label=NAME        name printed in result lines (default: --alloc)\n"
        "  --workloads=A,B,..  subset (default: all; see --list)\n"
        "  --scale=F           multiply iteration counts by F (default 1)\n"
        "  --reps=N            timed repetitions per workload (default 1)\n"
        "  --list              list workloads and exit\n");
}

int main(int argc, char **argv)
{
    const char *alloc = NULL, *expect = NULL, *label = NULL, *wlist = NULL;
    double scale = 1.0;
    int reps = 1;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strncmp(a, "--alloc=", 8) == 0)
            alloc = a + 8;
        else if (strncmp(a, "--expect=", 9) == 0)
            expect = a + 9;
        else if (strncmp(a, "--label=", 8) == 0)
            label = a + 8;
        else if (strncmp(a, "--workloads=", 12) == 0)
            wlist = a + 12;
        else if (strncmp(a, "--scale=", 8) == 0)
            scale = strtod(a + 8, NULL);
        else if (strncmp(a, "--reps=", 7) == 0)
            reps = atoi(a + 7);
        else if (strcmp(a, "--list") == 0) {
            for (size_t w = 0; w < N_WORKLOADS; w++)
                printf("%-12s %d thread%s %9llu pairs%s  %s\n", workloads[w].name,
                       workloads[w].threads, workloads[w].threads > 1 ? "s" : " ",
                       (unsigned long long)workloads[w].pairs,
                       workloads[w].threads > 1 && workloads[w].type != W_XTHREAD
                           ? "/thread" : "       ",
                       workloads[w].what);
            return 0;
        } else
            return help_or_unknown(a, usage, "bench_alloc: unknown argument '%s'\n");
    }
    if (alloc == NULL || scale <= 0 || reps < 1) {
        usage(stderr);
        return 1;
    }

    enum kind k;
    if (strcmp(alloc, "mmheap") == 0)
        k = K_MMHEAP, g_ops = &ops_mmh;
    else if (strcmp(alloc, "system") == 0)
        k = K_SYSTEM, g_ops = &ops_sys;
    else {
        fprintf(stderr, "bench_alloc: --alloc must be mmheap or system\n");
        return 1;
    }
    if (label == NULL)
        label = alloc;

    if (k == K_MMHEAP) {
        g_heap = mmh_open(NULL, NULL);
        if (g_heap == NULL) {
            fprintf(stderr, "bench_alloc: mmh_open(NULL, NULL): %s\n",
                    mmh_errmsg());
            return 2;
        }
    }

    const char *obj = allocator_object(k);
    printf("info\t%s\tallocator-object\t%s\n", label, obj);
#ifndef __OPTIMIZE__
    printf("info\t%s\twarning\tdriver built without optimization\n", label);
#endif
    if (BENCH_SANITIZED)
        printf("info\t%s\twarning\tdriver built with sanitizers\n", label);
    if (expect != NULL) {
        if (strstr(obj, expect) == NULL || !maps_contain(expect)) {
            fprintf(stderr, "bench_alloc: %s: expected the allocator from an "
                    "object matching '%s', but %s comes from '%s'%s\n", label,
                    expect, k == K_MMHEAP ? "mmh_alloc" : "malloc", obj,
                    maps_contain(expect) ? "" : " (and no such object is mapped)");
            return 3;
        }
        /* and a real allocation lands where that object's free accepts it */
        void *p = k == K_MMHEAP ? mmh_alloc(g_heap, 24) : malloc(24);
        if (p == NULL)
            oom(24);
        if (k == K_MMHEAP)
            mmh_free(g_heap, p);
        else
            free(p);
    }
    fflush(stdout);

    for (size_t wi = 0; wi < N_WORKLOADS; wi++) {
        const struct workload *w = &workloads[wi];
        if (wlist != NULL) {
            size_t len = strlen(w->name);
            const char *s = wlist;
            int hit = 0;
            while ((s = strstr(s, w->name)) != NULL) {
                if ((s == wlist || s[-1] == ',') && (s[len] == ',' || s[len] == 0)) {
                    hit = 1;
                    break;
                }
                s += len;
            }
            if (!hit)
                continue;
        }
        uint64_t n = (uint64_t)((double)w->pairs * scale);
        if (n < BATCH_N)
            n = BATCH_N;
        n -= n % BATCH_N;
        double cpu;
        (void)measure(w, n / 8 > BATCH_N ? n / 8 - n / 8 % BATCH_N : BATCH_N, &cpu); /* warm-up */
        for (int r = 0; r < reps; r++) {
            double ns = measure(w, n, &cpu);
            if (atomic_load(&g_errors) != 0) {
                fprintf(stderr, "bench_alloc: %s: %s: %lu corrupted blocks\n",
                        label, w->name, (unsigned long)atomic_load(&g_errors));
                return 4;
            }
            printf("result\t%s\t%s\t%.3f\t%llu\t%.3f\n", label, w->name, ns,
                   (unsigned long long)n * (w->type == W_XTHREAD ? 1 : (unsigned)w->threads),
                   cpu);
            fflush(stdout);
        }
    }
    if (g_heap != NULL && mmh_close(g_heap) != 0) {
        fprintf(stderr, "bench_alloc: mmh_close: %s\n", mmh_errmsg());
        return 2;
    }
    return 0;
}
