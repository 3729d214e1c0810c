/* bench_malloc: workloads for drop-in malloc replacements, and a runner that
 * measures a command's wall time and peak resident set.
 *
 *   bench_malloc WORKLOAD [--threads N] [--scale F]
 *   bench_malloc run [--preload LIB] [--expect NAME] [--out FILE] -- CMD [ARG...]
 *   bench_malloc --list
 *
 * The workloads call plain malloc, calloc, realloc and free: the allocator
 * that answers is chosen from outside, with LD_PRELOAD (bench/malloc.sh runs
 * every workload under glibc, jemalloc, mimalloc, tcmalloc and
 * libmmheap-malloc.so).  They follow the usual allocator test suites (larson,
 * mimalloc-bench's xmalloc, cache-scratch, ...), written for this program.
 *
 * Every block carries a tag (its size, an id and a check word at the start,
 * a byte of the check at the end), and the tag is checked before the block
 * is freed, by whichever thread frees it; realloc'd data and the falseshare
 * objects are checked in full.  An allocator that hands out one block twice,
 * or loses data in realloc, makes the run fail with exit status 4.
 *
 * `run` starts CMD (with LD_PRELOAD=LIB, for CMD alone), waits for it and
 * writes one line, tab separated: wall seconds, peak RSS in KiB (ru_maxrss
 * from wait4: the process's high-water mark, VmHWM, at its exit), exit
 * status, and whether a mapping whose path contains NAME appeared in
 * /proc/PID/maps ("yes", "no", "-" without --expect).  It exits with CMD's
 * status, or 3 if CMD succeeded but NAME never showed: the preload did not
 * take, and the numbers must not be reported under that allocator's name.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define BENCH_NAME "bench_malloc"
#include "benchutil.h"

/* ---- failures ----------------------------------------------------------- */

static atomic_ulong g_bad_blocks;

static void out_of_memory(size_t n)
{
    fprintf(stderr, "bench_malloc: allocation of %zu bytes failed\n", n);
    exit(2);
}

/* A block whose tag or data changed while it was live: counted (the run
 * fails at the end) and the first few printed. */
static void report_bad(const char *workload, const void *p, const char *what)
{
    if (atomic_fetch_add(&g_bad_blocks, 1) < 5)
        fprintf(stderr, "bench_malloc: %s: block %p: %s\n", workload, p, what);
}

static void *xmalloc(size_t n)
{
    void *p = malloc(n);
    if (p == NULL)
        out_of_memory(n);
    return p;
}

static void *xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n);
    if (q == NULL)
        out_of_memory(n);
    return q;
}

static void *xcalloc(size_t count, size_t size)
{
    void *p = calloc(count, size);
    if (p == NULL)
        out_of_memory(count * size);
    return p;
}

/* ---- random numbers and sizes ------------------------------------------- */

/* One generator per thread, seeded from the thread's index, so every
 * allocator sees the same sizes in the same order. */
struct rng {
    uint64_t state;
};

static struct rng rng_for(unsigned stream)
{
    return (struct rng){ 0x6d6d68656170ull + 0x9e3779b97f4a7c15ull * (stream + 1) };
}

/* uniform in [0, n) */
static inline uint32_t rng_below(struct rng *r, uint32_t n)
{
    return (uint32_t)(((wyrand_next(&r->state) & 0xffffffffull) * n) >> 32);
}

/* log-uniform in [2^lo, 2^hi): an octave chosen uniformly, then a uniform
 * size inside it (hi at most 32). */
static inline size_t size_octaves(struct rng *r, unsigned lo, unsigned hi)
{
    size_t base = (size_t)1 << (lo + rng_below(r, hi - lo));
    return base + rng_below(r, (uint32_t)base);
}

/* Pareto with shape 1 and scale min, cut at max: P(size > s) = min / s, so
 * most blocks are near min and a few are large (median 2 min). */
static inline size_t size_pareto(struct rng *r, size_t min, size_t max)
{
    double u = (double)((wyrand_next(&r->state) >> 11) + 1) * 0x1p-53; /* (0, 1] */
    double s = (double)min / u;
    return s < (double)max ? (size_t)s : max;
}

/* ---- tagged blocks ------------------------------------------------------ */

/* The tag at the start of every block, so that any thread can check (and
 * free) a block it did not allocate. */
struct tag {
    uint32_t size;
    uint32_t id;
    uint64_t check;
};

#define BLOCK_MIN sizeof(struct tag)

static inline uint64_t tag_check(uint32_t size, uint32_t id)
{
    uint64_t x = ((uint64_t)size << 32 | id) * 0x9e3779b97f4a7c15ull;
    return x ^ (x >> 29);
}

/* Tags block p of size bytes (at least BLOCK_MIN), however it was
 * allocated, and returns it. */
static inline void *block_tag(void *p, size_t size, uint32_t id)
{
    struct tag t = { (uint32_t)size, id, tag_check((uint32_t)size, id) };
    memcpy(p, &t, sizeof t);
    if (size > sizeof t)
        ((unsigned char *)p)[size - 1] = (unsigned char)t.check;
    return p;
}

/* A block of size bytes (at least BLOCK_MIN), tagged. */
static inline void *block_new(size_t size, uint32_t id)
{
    return block_tag(xmalloc(size), size, id);
}

static inline bool block_ok(const void *p)
{
    struct tag t;
    memcpy(&t, p, sizeof t);
    if (t.size < BLOCK_MIN || t.check != tag_check(t.size, t.id))
        return false;
    return t.size == sizeof t || ((const unsigned char *)p)[t.size - 1] == (unsigned char)t.check;
}

static inline void block_free(void *p, const char *workload)
{
    if (!block_ok(p))
        report_bad(workload, p, "tag overwritten while the block was live");
    free(p);
}

/* ---- threads ------------------------------------------------------------ */

/* Runs fn in n threads at once, the i-th with args + i * arg_size, and
 * waits for them all. */
static void run_threads(unsigned n, void *(*fn)(void *), void *args, size_t arg_size)
{
    pthread_t *tid = xcalloc(n, sizeof *tid);
    for (unsigned i = 0; i < n; i++) {
        int e = pthread_create(&tid[i], NULL, fn, (char *)args + i * arg_size);
        if (e != 0) {
            fprintf(stderr, "bench_malloc: pthread_create: %s\n", strerror(e));
            exit(2);
        }
    }
    for (unsigned i = 0; i < n; i++)
        pthread_join(tid[i], NULL);
    free(tid);
}

/* A count for each of n threads that together do total (at least 1 each). */
static uint64_t share_of(uint64_t total, unsigned n)
{
    return total / n > 0 ? total / n : 1;
}

/* Blocks shared by all threads (larson, threadchurn): a thread swaps one of
 * its blocks for a random one in the pool, so blocks end up freed by other
 * threads than the ones that allocated them, some after those have exited. */
#define POOL_SLOTS 4096
static _Atomic(void *) g_pool[POOL_SLOTS];

/* Puts p in a random slot; returns what was there (NULL at first). */
static void *pool_swap(struct rng *r, void *p)
{
    return atomic_exchange_explicit(&g_pool[rng_below(r, POOL_SLOTS)], p,
                                    memory_order_acq_rel);
}

static void pool_drain(const char *workload)
{
    for (size_t i = 0; i < POOL_SLOTS; i++) {
        void *p = atomic_exchange(&g_pool[i], NULL);
        if (p != NULL)
            block_free(p, workload);
    }
}

/* ---- larson: server churn ----------------------------------------------- */

/* Each thread keeps LARSON_SLOTS blocks of 16..1000 bytes; each step frees
 * a random one and puts a new block of random size in its place.  One new
 * block in LARSON_HANDOFF goes to the shared pool instead, and the block it
 * displaces (another thread's) takes the slot. */
#define LARSON_SLOTS   4000
#define LARSON_HANDOFF 16
#define LARSON_STEPS   50000000ull

struct worker {
    unsigned index;
    uint64_t steps;
    uint64_t calls; /* allocator calls made, where the workload counts those */
};

static void *larson_thread(void *arg)
{
    const struct worker *w = arg;
    struct rng r = rng_for(w->index);
    void **slot = xcalloc(LARSON_SLOTS, sizeof *slot);
    uint32_t id = 0;

    for (size_t i = 0; i < LARSON_SLOTS; i++)
        slot[i] = block_new(16 + rng_below(&r, 985), id++);
    for (uint64_t s = 0; s < w->steps; s++) {
        uint32_t i = rng_below(&r, LARSON_SLOTS);
        block_free(slot[i], "larson");
        void *p = block_new(16 + rng_below(&r, 985), id++);
        if (rng_below(&r, LARSON_HANDOFF) == 0) {
            void *theirs = pool_swap(&r, p);
            p = theirs != NULL ? theirs : block_new(16 + rng_below(&r, 985), id++);
        }
        slot[i] = p;
    }
    for (size_t i = 0; i < LARSON_SLOTS; i++)
        block_free(slot[i], "larson");
    free(slot);
    return NULL;
}

/* Runs n threads of fn, each a struct worker with its share of steps;
 * returns the steps done, or with count_calls the calls the workers made. */
static uint64_t run_workers(unsigned n, void *(*fn)(void *), uint64_t steps, bool count_calls)
{
    struct worker *w = xcalloc(n, sizeof *w);
    uint64_t done = 0;
    for (unsigned i = 0; i < n; i++)
        w[i] = (struct worker){ i, share_of(steps, n), 0 };
    run_threads(n, fn, w, sizeof *w);
    for (unsigned i = 0; i < n; i++)
        done += count_calls ? w[i].calls : w[i].steps;
    free(w);
    return done;
}

static uint64_t larson(unsigned threads, double scale)
{
    uint64_t done = run_workers(threads, larson_thread, (uint64_t)(LARSON_STEPS * scale), false);
    pool_drain("larson");
    return done;
}

/* ---- prodcons: producers allocate, consumers free ----------------------- */

/* Each producer sends blocks of 16 B..4 KiB (log-uniform) to its consumer
 * through a single-producer, single-consumer ring; the consumer checks and
 * frees them.  The indices are published every QUEUE_PUBLISH blocks, so the
 * ring costs little next to the allocator's remote frees. */
#define QUEUE_CAP     4096 /* a power of two */
#define QUEUE_PUBLISH 64
#define PRODCONS_BLOCKS 10000000ull

struct queue {
    _Alignas(64) atomic_size_t tail; /* written by the producer */
    _Alignas(64) atomic_size_t head; /* written by the consumer */
    _Alignas(64) void *item[QUEUE_CAP];
};

struct pc_end {
    struct queue *q;
    unsigned pair;
    bool producer;
    uint64_t blocks;
};

/* On a 2-CPU machine the other end may not be running at all: give way. */
static void wait_for_other_end(void)
{
    sched_yield();
}

static void produce(const struct pc_end *e)
{
    struct rng r = rng_for(e->pair);
    size_t tail = 0, head_seen = 0;
    for (uint64_t i = 0; i < e->blocks; i++) {
        void *p = block_new(size_octaves(&r, 4, 12), (uint32_t)i);
        while (tail - head_seen == QUEUE_CAP) {
            atomic_store_explicit(&e->q->tail, tail, memory_order_release);
            head_seen = atomic_load_explicit(&e->q->head, memory_order_acquire);
            if (tail - head_seen == QUEUE_CAP)
                wait_for_other_end();
        }
        e->q->item[tail++ % QUEUE_CAP] = p;
        if (tail % QUEUE_PUBLISH == 0)
            atomic_store_explicit(&e->q->tail, tail, memory_order_release);
    }
    atomic_store_explicit(&e->q->tail, tail, memory_order_release);
}

static void consume(const struct pc_end *e)
{
    size_t head = 0, tail_seen = 0;
    while (head < e->blocks) {
        if (head == tail_seen) {
            atomic_store_explicit(&e->q->head, head, memory_order_release);
            tail_seen = atomic_load_explicit(&e->q->tail, memory_order_acquire);
            if (head == tail_seen)
                wait_for_other_end();
            continue;
        }
        block_free(e->q->item[head++ % QUEUE_CAP], "prodcons");
        if (head % QUEUE_PUBLISH == 0)
            atomic_store_explicit(&e->q->head, head, memory_order_release);
    }
}

static void *prodcons_thread(void *arg)
{
    const struct pc_end *e = arg;
    if (e->producer)
        produce(e);
    else
        consume(e);
    return NULL;
}

/* threads / 2 producer-consumer pairs (at least one). */
static uint64_t prodcons(unsigned threads, double scale)
{
    unsigned pairs = threads / 2 > 0 ? threads / 2 : 1;
    uint64_t blocks = share_of((uint64_t)(PRODCONS_BLOCKS * scale), pairs);
    struct queue *q = aligned_alloc(64, pairs * sizeof *q); /* no false sharing */
    if (q == NULL)
        out_of_memory(pairs * sizeof *q);
    memset(q, 0, pairs * sizeof *q);
    struct pc_end *ends = xcalloc(2 * pairs, sizeof *ends);
    for (unsigned i = 0; i < 2 * pairs; i++)
        ends[i] = (struct pc_end){ &q[i / 2], i / 2, i % 2 == 0, blocks };
    run_threads(2 * pairs, prodcons_thread, ends, sizeof *ends);
    free(ends);
    free(q);
    return blocks * pairs;
}

/* ---- falseshare: cache-scratch ------------------------------------------ */

/* cache-scratch: the main thread allocates one small object per worker, back
 * to back (so they share cache lines), and hands them out.  Each worker
 * writes its object, frees it, then repeatedly allocates an object of the
 * same size, writes every byte SCRATCH_WRITES times and frees it.  An
 * allocator that gives a worker the object it just freed (the main thread's,
 * next to the other workers') makes the workers' writes fight over cache
 * lines; one that serves each thread from its own memory does not. */
#define SCRATCH_SIZE   8
#define SCRATCH_WRITES 500
#define SCRATCH_OBJECTS 300000ull

struct scratch {
    unsigned char *first; /* allocated by the main thread */
    uint64_t objects;
};

/* Increments every byte of p SCRATCH_WRITES times, then checks it. */
static void scratch_write(unsigned char *p)
{
    volatile unsigned char *v = p;
    for (int w = 0; w < SCRATCH_WRITES; w++)
        for (int k = 0; k < SCRATCH_SIZE; k++)
            v[k]++;
    for (int k = 0; k < SCRATCH_SIZE; k++)
        if (v[k] != (unsigned char)SCRATCH_WRITES) {
            report_bad("falseshare", p, "object written by someone else");
            return;
        }
}

static void *falseshare_thread(void *arg)
{
    const struct scratch *s = arg;
    scratch_write(s->first);
    free(s->first);
    for (uint64_t i = 1; i < s->objects; i++) {
        unsigned char *p = xmalloc(SCRATCH_SIZE);
        memset(p, 0, SCRATCH_SIZE);
        scratch_write(p);
        free(p);
    }
    return NULL;
}

static uint64_t falseshare(unsigned threads, double scale)
{
    struct scratch *s = xcalloc(threads, sizeof *s);
    uint64_t objects = share_of((uint64_t)(SCRATCH_OBJECTS * scale), threads);
    for (unsigned i = 0; i < threads; i++)
        s[i] = (struct scratch){ xcalloc(1, SCRATCH_SIZE), objects };
    run_threads(threads, falseshare_thread, s, sizeof *s);
    free(s);
    return objects * threads;
}

/* ---- pareto: a long-lived set and short-lived temporaries --------------- */

/* Sizes are Pareto-distributed from 16 B (half are under 32 B, one in 500
 * reaches the 8 KiB cap).  Each thread keeps PARETO_LIVE / threads
 * long-lived blocks; each step replaces a random one, then allocates 0..7
 * temporaries and frees them newest first, the way a request handler's
 * scratch objects come and go. */
#define PARETO_LIVE  100000
#define PARETO_MAX   8192
#define PARETO_TEMPS 8
#define PARETO_STEPS 20000000ull

struct pareto_worker {
    struct worker w;
    size_t live;
};

static void *pareto_thread(void *arg)
{
    const struct pareto_worker *pw = arg;
    struct rng r = rng_for(pw->w.index);
    void **live = xcalloc(pw->live, sizeof *live);
    void *temp[PARETO_TEMPS];
    uint32_t id = 0;

    for (size_t i = 0; i < pw->live; i++)
        live[i] = block_new(size_pareto(&r, BLOCK_MIN, PARETO_MAX), id++);
    for (uint64_t s = 0; s < pw->w.steps; s++) {
        uint32_t i = rng_below(&r, (uint32_t)pw->live);
        block_free(live[i], "pareto");
        live[i] = block_new(size_pareto(&r, BLOCK_MIN, PARETO_MAX), id++);
        uint32_t n = rng_below(&r, PARETO_TEMPS);
        for (uint32_t t = 0; t < n; t++)
            temp[t] = block_new(size_pareto(&r, BLOCK_MIN, PARETO_MAX), id++);
        while (n > 0)
            block_free(temp[--n], "pareto");
    }
    for (size_t i = 0; i < pw->live; i++)
        block_free(live[i], "pareto");
    free(live);
    return NULL;
}

static uint64_t pareto(unsigned threads, double scale)
{
    struct pareto_worker *pw = xcalloc(threads, sizeof *pw);
    uint64_t steps = share_of((uint64_t)(PARETO_STEPS * scale), threads);
    for (unsigned i = 0; i < threads; i++)
        pw[i] = (struct pareto_worker){ { i, steps, 0 }, share_of(PARETO_LIVE, threads) };
    run_threads(threads, pareto_thread, pw, sizeof *pw);
    free(pw);
    return steps * threads;
}

/* ---- realloc: growing strings and vectors ------------------------------- */

/* Each round a thread builds a string by appending 1..64 bytes at a time up
 * to STRING_MAX, with a small allocation between some appends (as a program
 * does while it builds a string: the block after the string is often taken),
 * then grows two vectors of 64-bit elements side by side, one doubling up to
 * VECTOR_MAX and one by half its size up to 3/4 of that.  Every append
 * writes its bytes; the whole string and both vectors are checked at the
 * end of the round, and the first and last old byte after every realloc. */
#define STRING_MAX   (1u << 20)
#define VECTOR_MAX   (32u << 20)
#define OTHERS       64   /* small blocks kept while a string grows */
#define REALLOC_ROUNDS 96ull

static inline unsigned char string_byte(size_t i, uint32_t salt)
{
    return (unsigned char)(i ^ (i >> 8) ^ (i >> 16) ^ salt);
}

static void check_string(const unsigned char *s, size_t from, size_t to, uint32_t salt)
{
    for (size_t i = from; i < to; i++)
        if (s[i] != string_byte(i, salt)) {
            report_bad("realloc", s, "string data lost in realloc");
            return;
        }
}

static void grow_string(struct rng *r, uint32_t salt)
{
    unsigned char *s = NULL;
    void *other[OTHERS] = { 0 };
    size_t len = 0;
    uint32_t id = 0;
    while (len < STRING_MAX) {
        size_t add = 1 + rng_below(r, 64);
        s = xrealloc(s, len + add);
        if (len > 0 && (s[0] != string_byte(0, salt) || s[len - 1] != string_byte(len - 1, salt)))
            report_bad("realloc", s, "string data lost in realloc");
        for (size_t i = len; i < len + add; i++)
            s[i] = string_byte(i, salt);
        len += add;
        if (rng_below(r, 4) == 0) {
            void **o = &other[id % OTHERS];
            if (*o != NULL)
                block_free(*o, "realloc");
            *o = block_new(size_octaves(r, 4, 8), id++);
        }
    }
    check_string(s, 0, len, salt);
    free(s);
    for (size_t i = 0; i < OTHERS; i++)
        if (other[i] != NULL)
            block_free(other[i], "realloc");
}

struct vector {
    uint64_t *v;
    size_t len;
};

/* Element i holds i ^ salt. */
static void vector_grow(struct vector *vec, size_t len, uint64_t salt)
{
    vec->v = xrealloc(vec->v, len * sizeof *vec->v);
    if (vec->len > 0 && (vec->v[0] != salt || vec->v[vec->len - 1] != ((vec->len - 1) ^ salt)))
        report_bad("realloc", vec->v, "vector data lost in realloc");
    for (size_t i = vec->len; i < len; i++)
        vec->v[i] = i ^ salt;
    vec->len = len;
}

static void vector_check_free(struct vector *vec, uint64_t salt)
{
    for (size_t i = 0; i < vec->len; i++)
        if (vec->v[i] != (i ^ salt)) {
            report_bad("realloc", vec->v, "vector data lost in realloc");
            break;
        }
    free(vec->v);
}

static void grow_vectors(uint64_t salt)
{
    struct vector doubling = { NULL, 0 }, by_half = { NULL, 0 };
    const size_t max = VECTOR_MAX / sizeof(uint64_t);
    while (doubling.len < max || by_half.len < max / 4 * 3) {
        if (doubling.len < max)
            vector_grow(&doubling, doubling.len > 0 ? 2 * doubling.len : 8, salt);
        if (by_half.len < max / 4 * 3)
            vector_grow(&by_half, by_half.len + by_half.len / 2 + 8, ~salt);
    }
    vector_check_free(&doubling, salt);
    vector_check_free(&by_half, ~salt);
}

static void *realloc_thread(void *arg)
{
    const struct worker *w = arg;
    struct rng r = rng_for(w->index);
    for (uint64_t round = 0; round < w->steps; round++) {
        grow_string(&r, (uint32_t)round);
        grow_vectors(round * 0x9e3779b97f4a7c15ull);
    }
    return NULL;
}

static uint64_t realloc_growth(unsigned threads, double scale)
{
    return run_workers(threads, realloc_thread, (uint64_t)(REALLOC_ROUNDS * scale), false);
}

/* ---- largereuse: large blocks allocated, touched, freed ----------------- */

/* Each thread keeps LARGE_LIVE blocks of 256 KiB..32 MiB (log-uniform); each
 * step frees a random one after checking it, then allocates a new one and
 * writes a stamp into every 4 KiB page of it.  An allocator that keeps
 * freed memory mapped serves the next block without page faults; one that
 * gives it back to the kernel at once pays a fault per page. */
#define LARGE_LIVE  4
#define LARGE_PAGE  4096
#define LARGE_STEPS 5000ull

struct large {
    uint64_t *p;
    size_t size;
    uint64_t stamp;
};

static void large_new(struct large *b, struct rng *r, uint64_t stamp)
{
    b->size = size_octaves(r, 18, 25);
    b->p = xmalloc(b->size);
    b->stamp = stamp;
    for (size_t off = 0; off < b->size; off += LARGE_PAGE)
        b->p[off / sizeof *b->p] = off ^ stamp;
}

static void large_free(struct large *b)
{
    for (size_t off = 0; off < b->size; off += LARGE_PAGE)
        if (b->p[off / sizeof *b->p] != (off ^ b->stamp)) {
            report_bad("largereuse", b->p, "page stamp overwritten while live");
            break;
        }
    free(b->p);
}

static void *largereuse_thread(void *arg)
{
    const struct worker *w = arg;
    struct rng r = rng_for(w->index);
    struct large live[LARGE_LIVE];
    for (size_t i = 0; i < LARGE_LIVE; i++)
        large_new(&live[i], &r, i);
    for (uint64_t s = 0; s < w->steps; s++) {
        struct large *b = &live[rng_below(&r, LARGE_LIVE)];
        large_free(b);
        large_new(b, &r, s * 0x9e3779b97f4a7c15ull);
    }
    for (size_t i = 0; i < LARGE_LIVE; i++)
        large_free(&live[i]);
    return NULL;
}

static uint64_t largereuse(unsigned threads, double scale)
{
    return run_workers(threads, largereuse_thread, (uint64_t)(LARGE_STEPS * scale), false);
}

/* ---- threadchurn: short-lived threads, blocks that outlive them -------- */

/* Waves of `threads` threads at a time.  Each allocates CHURN_BLOCKS blocks
 * of 16 B..4 KiB (log-uniform), frees all but one in CHURN_SURVIVE itself,
 * and swaps the survivors into the shared pool, freeing the blocks they
 * displace (left there by earlier, exited threads); then it exits. */
#define CHURN_BLOCKS  1000
#define CHURN_SURVIVE 8
#define CHURN_THREADS 12000ull

static void *churn_thread(void *arg)
{
    const struct worker *w = arg;
    struct rng r = rng_for(w->index);
    void **block = xcalloc(CHURN_BLOCKS, sizeof *block);
    for (uint32_t i = 0; i < CHURN_BLOCKS; i++)
        block[i] = block_new(size_octaves(&r, 4, 12), i);
    for (uint32_t i = 0; i < CHURN_BLOCKS; i++) {
        if (i % CHURN_SURVIVE != 0) {
            block_free(block[i], "threadchurn");
            continue;
        }
        void *displaced = pool_swap(&r, block[i]);
        if (displaced != NULL)
            block_free(displaced, "threadchurn");
    }
    free(block);
    return NULL;
}

static uint64_t threadchurn(unsigned threads, double scale)
{
    uint64_t total = (uint64_t)(CHURN_THREADS * scale);
    struct worker *w = xcalloc(threads, sizeof *w);
    uint64_t started = 0;
    while (started < total) {
        unsigned wave = total - started < threads ? (unsigned)(total - started) : threads;
        for (unsigned i = 0; i < wave; i++)
            w[i] = (struct worker){ (unsigned)(started + i), 0, 0 };
        run_threads(wave, churn_thread, w, sizeof *w);
        started += wave;
    }
    free(w);
    pool_drain("threadchurn");
    return total;
}

/* ---- growth chains: reallocgrow and mixedsizes -------------------------- */

/* A chain grows one block with realloc, doubling or by 1..CHAIN_STEP_MAX
 * bytes at a time.  After each realloc the first byte and the last byte
 * written before it must have survived, and the new last byte is written:
 * only those, so that a chain measures the allocator and not memcpy. */
#define CHAIN_FIRST    32
#define CHAIN_LAST     (256u << 10)
#define CHAIN_STEP_MAX 16

struct chain {
    unsigned char *p;
    size_t len;
    uint32_t salt;      /* byte i of the block, where written, is string_byte(i, salt) */
    uint64_t *calls;    /* counts the chain's reallocs */
    const char *workload;
};

static void chain_start(struct chain *c, size_t len)
{
    c->p = xmalloc(len);
    c->len = len;
    c->p[0] = string_byte(0, c->salt);
    c->p[len - 1] = string_byte(len - 1, c->salt);
}

/* Grows the chain until it holds at least last bytes. */
static void chain_grow(struct chain *c, struct rng *r, size_t last, bool doubling)
{
    while (c->len < last) {
        size_t len = doubling ? 2 * c->len : c->len + 1 + rng_below(r, CHAIN_STEP_MAX);
        c->p = xrealloc(c->p, len);
        if (c->p[0] != string_byte(0, c->salt) || c->p[c->len - 1] != string_byte(c->len - 1, c->salt))
            report_bad(c->workload, c->p, "data lost in realloc");
        c->p[len - 1] = string_byte(len - 1, c->salt);
        c->len = len;
        ++*c->calls;
    }
}

/* reallocgrow: each step a block of CHAIN_FIRST bytes is doubled up to
 * CHAIN_LAST (13 reallocs), then freed.  Counted in reallocs. */
#define REALLOCGROW_CHAINS 5000000ull

static void *reallocgrow_thread(void *arg)
{
    struct worker *w = arg;
    struct rng r = rng_for(w->index);
    for (uint64_t s = 0; s < w->steps; s++) {
        struct chain c = { .salt = (uint32_t)s, .calls = &w->calls, .workload = "reallocgrow" };
        chain_start(&c, CHAIN_FIRST);
        chain_grow(&c, &r, CHAIN_LAST, true);
        free(c.p);
    }
    return NULL;
}

static uint64_t reallocgrow(unsigned threads, double scale)
{
    return run_workers(threads, reallocgrow_thread, (uint64_t)(REALLOCGROW_CHAINS * scale), true);
}

/* mixedsizes: each thread keeps MIXED_LIVE slots; each step frees the
 * block in a random slot (after checking it) and puts there a new one, of
 * one of four kinds (out of 16 steps):
 *   2  a chain doubled from CHAIN_FIRST to CHAIN_LAST bytes;
 *   2  a chain grown 1..16 bytes at a time from 16 B to 64 B..1 KiB;
 *   11 an aligned block of 100..5100 B at 64 B..2 KiB, from posix_memalign
 *      and aligned_alloc in turn (the alignment is checked);
 *   1  a block of 1 MiB from malloc.
 * Every block is tagged at both ends once made, and checked when freed.
 * Counted in allocator calls: malloc, realloc, the aligned ones, free. */
#define MIXED_LIVE  256
#define MIXED_STEPS 400000ull
#define MIXED_LARGE (1u << 20)

static void *aligned_block(struct rng *r, uint32_t id)
{
    size_t align = (size_t)64 << rng_below(r, 6);
    size_t size = 100 + rng_below(r, 5001);
    void *p = NULL;
    if (id % 2 == 0)
        p = aligned_alloc(align, size); /* any size since C17 (DR 460) */
    else if (posix_memalign(&p, align, size) != 0)
        p = NULL;
    if (p == NULL)
        out_of_memory(size);
    if ((uintptr_t)p % align != 0)
        report_bad("mixedsizes", p, "not aligned as asked");
    return block_tag(p, size, id);
}

static void *mixed_block(struct rng *r, uint32_t id, uint64_t *calls)
{
    uint32_t kind = rng_below(r, 16);
    ++*calls; /* the block's allocation; a chain's reallocs count themselves */
    if (kind >= 4)
        return kind < 15 ? aligned_block(r, id) : block_new(MIXED_LARGE, id);
    struct chain c = { .salt = id, .calls = calls, .workload = "mixedsizes" };
    bool doubling = kind < 2;
    chain_start(&c, doubling ? CHAIN_FIRST : BLOCK_MIN);
    chain_grow(&c, r, doubling ? CHAIN_LAST : size_octaves(r, 6, 10), doubling);
    return block_tag(c.p, c.len, id);
}

static void *mixedsizes_thread(void *arg)
{
    struct worker *w = arg;
    struct rng r = rng_for(w->index);
    void **live = xcalloc(MIXED_LIVE, sizeof *live);
    for (uint64_t s = 0; s < w->steps; s++) {
        void **slot = &live[rng_below(&r, MIXED_LIVE)];
        if (*slot != NULL) {
            block_free(*slot, "mixedsizes");
            w->calls++;
        }
        *slot = mixed_block(&r, (uint32_t)s, &w->calls);
    }
    for (size_t i = 0; i < MIXED_LIVE; i++)
        if (live[i] != NULL) {
            block_free(live[i], "mixedsizes");
            w->calls++;
        }
    free(live);
    return NULL;
}

static uint64_t mixedsizes(unsigned threads, double scale)
{
    return run_workers(threads, mixedsizes_thread, (uint64_t)(MIXED_STEPS * scale), true);
}

/* ---- xmalloc: producers allocate, other threads free -------------------- */

/* xmalloc-test (Lever and Boreham), as described by mimalloc-bench: half the
 * threads (at least one) allocate blocks of 8..512 B (log-uniform) in
 * batches of XMALLOC_BATCH and put each batch on one list shared by all,
 * under a mutex; the other threads (at least one) take batches off it and
 * free them.  Every block is freed by a thread that did not allocate it,
 * and neither side knows which thread is at the other end.  Producers wait
 * while XMALLOC_PENDING batches are on the list, so memory stays bounded.
 * Counted in blocks. */
#define XMALLOC_BATCH   64
#define XMALLOC_PENDING 256
#define XMALLOC_BLOCKS  8000000ull

struct xbatch {
    struct xbatch *next;
    void *block[XMALLOC_BATCH];
};

struct xlist {
    pthread_mutex_t lock;
    pthread_cond_t not_full, not_empty;
    struct xbatch *head;
    unsigned pending;
    unsigned producers_left;
};

struct xmalloc_end {
    struct xlist *list;
    unsigned index;
    bool producer;
    uint64_t batches; /* a producer's */
};

static void xmalloc_produce(const struct xmalloc_end *e)
{
    struct xlist *l = e->list;
    struct rng r = rng_for(e->index);
    uint32_t id = 0;
    for (uint64_t b = 0; b < e->batches; b++) {
        struct xbatch *batch = xmalloc(sizeof *batch);
        for (size_t i = 0; i < XMALLOC_BATCH; i++)
            batch->block[i] = block_new(size_octaves(&r, 4, 9), id++);
        pthread_mutex_lock(&l->lock);
        while (l->pending >= XMALLOC_PENDING)
            pthread_cond_wait(&l->not_full, &l->lock);
        batch->next = l->head;
        l->head = batch;
        l->pending++;
        pthread_cond_signal(&l->not_empty);
        pthread_mutex_unlock(&l->lock);
    }
    pthread_mutex_lock(&l->lock);
    if (--l->producers_left == 0)
        pthread_cond_broadcast(&l->not_empty);
    pthread_mutex_unlock(&l->lock);
}

static void xmalloc_consume(const struct xmalloc_end *e)
{
    struct xlist *l = e->list;
    for (;;) {
        pthread_mutex_lock(&l->lock);
        while (l->head == NULL && l->producers_left > 0)
            pthread_cond_wait(&l->not_empty, &l->lock);
        struct xbatch *batch = l->head;
        if (batch != NULL) {
            l->head = batch->next;
            l->pending--;
            pthread_cond_signal(&l->not_full);
        }
        pthread_mutex_unlock(&l->lock);
        if (batch == NULL)
            return;
        for (size_t i = 0; i < XMALLOC_BATCH; i++)
            block_free(batch->block[i], "xmalloc");
        free(batch);
    }
}

static void *xmalloc_thread(void *arg)
{
    const struct xmalloc_end *e = arg;
    if (e->producer)
        xmalloc_produce(e);
    else
        xmalloc_consume(e);
    return NULL;
}

/* threads / 2 producers (at least one), the rest freeing (at least one). */
static uint64_t xmalloc_test(unsigned threads, double scale)
{
    unsigned producers = threads / 2 > 0 ? threads / 2 : 1;
    unsigned n = threads > producers ? threads : producers + 1;
    uint64_t batches = share_of((uint64_t)(XMALLOC_BLOCKS * scale) / XMALLOC_BATCH, producers);
    struct xlist list = { .producers_left = producers };
    pthread_mutex_init(&list.lock, NULL);
    pthread_cond_init(&list.not_full, NULL);
    pthread_cond_init(&list.not_empty, NULL);
    struct xmalloc_end *ends = xcalloc(n, sizeof *ends);
    for (unsigned i = 0; i < n; i++)
        ends[i] = (struct xmalloc_end){ &list, i, i < producers, batches };
    run_threads(n, xmalloc_thread, ends, sizeof *ends);
    free(ends);
    pthread_cond_destroy(&list.not_empty);
    pthread_cond_destroy(&list.not_full);
    pthread_mutex_destroy(&list.lock);
    return batches * producers * XMALLOC_BATCH;
}

/* ---- mstress: mostly small blocks, some large, threads that come and go - */

/* After mimalloc-bench's mstress: the work is done in MSTRESS_ROUNDS rounds,
 * each by a fresh set of threads that carry on with the blocks the threads
 * of the round before left: each thread index keeps MSTRESS_LIVE slots from
 * round to round.  Each step picks a random slot and, half the time, frees
 * the block there; otherwise it puts a new block there (freeing the one it
 * replaces), 99 in 100 of 8..512 B and the others of 4 KiB..256 KiB
 * (log-uniform).  One step in MSTRESS_TRANSFER swaps the slot's block with
 * the shared pool instead, so blocks move between threads and are freed by
 * other threads than their own, some after it has exited.  Counted in steps. */
#define MSTRESS_ROUNDS   10
#define MSTRESS_LIVE     1000
#define MSTRESS_LARGE    100 /* one block in this many is large */
#define MSTRESS_TRANSFER 32
#define MSTRESS_STEPS    30000000ull

struct mstress_worker {
    struct worker w;
    void **live; /* MSTRESS_LIVE slots, kept from round to round */
};

static void *mstress_block(struct rng *r, uint32_t id)
{
    bool large = rng_below(r, MSTRESS_LARGE) == 0;
    return block_new(large ? size_octaves(r, 12, 18) : size_octaves(r, 3, 9) + BLOCK_MIN, id);
}

static void *mstress_thread(void *arg)
{
    const struct mstress_worker *mw = arg;
    struct rng r = rng_for(mw->w.index);
    for (uint64_t s = 0; s < mw->w.steps; s++) {
        void **slot = &mw->live[rng_below(&r, MSTRESS_LIVE)];
        if (rng_below(&r, MSTRESS_TRANSFER) == 0) {
            *slot = pool_swap(&r, *slot);
            continue;
        }
        if (*slot != NULL)
            block_free(*slot, "mstress");
        *slot = rng_below(&r, 2) ? mstress_block(&r, (uint32_t)s) : NULL;
    }
    return NULL;
}

static uint64_t mstress(unsigned threads, double scale)
{
    struct mstress_worker *mw = xcalloc(threads, sizeof *mw);
    uint64_t steps = share_of((uint64_t)(MSTRESS_STEPS * scale), threads * MSTRESS_ROUNDS);
    for (unsigned i = 0; i < threads; i++)
        mw[i].live = xcalloc(MSTRESS_LIVE, sizeof *mw[i].live);
    for (unsigned round = 0; round < MSTRESS_ROUNDS; round++) {
        for (unsigned i = 0; i < threads; i++)
            mw[i].w = (struct worker){ round * threads + i, steps, 0 };
        run_threads(threads, mstress_thread, mw, sizeof *mw);
    }
    for (unsigned i = 0; i < threads; i++) {
        for (size_t k = 0; k < MSTRESS_LIVE; k++)
            if (mw[i].live[k] != NULL)
                block_free(mw[i].live[k], "mstress");
        free(mw[i].live);
    }
    free(mw);
    pool_drain("mstress");
    return steps * threads * MSTRESS_ROUNDS;
}

/* ---- rptest: a working set with cross-thread frees ---------------------- */

/* After rpmalloc's benchmark (mimalloc-bench's rptest): each thread runs
 * loops; a loop allocates RPTEST_SET blocks of 16 B..16 KiB (log-uniform),
 * replaces random ones RPTEST_REPLACE times, frees every other block itself
 * and hands the rest to the next thread (index + 1, round the ring), which
 * frees them at the start of its next loop.  A thread whose successor has
 * RPTEST_INBOX_MAX batches waiting empties its own inbox until that drops,
 * and a thread that is done keeps emptying its inbox until all are done,
 * so no thread waits on one that cannot move.  Counted in blocks
 * allocated. */
#define RPTEST_SET       500
#define RPTEST_REPLACE   1000
#define RPTEST_INBOX_MAX 4
#define RPTEST_BLOCKS    12000000ull

struct rp_batch {
    struct rp_batch *next;
    void *block[RPTEST_SET / 2];
};

struct rp_inbox {
    _Alignas(64) pthread_mutex_t lock;
    struct rp_batch *head;
    unsigned batches;
};

struct rp_worker {
    struct worker w;
    struct rp_inbox *inbox; /* all threads', indexed by thread */
    unsigned threads;
    atomic_uint *done;      /* threads that finished their loops */
};

static void rp_drain(struct rp_inbox *in)
{
    pthread_mutex_lock(&in->lock);
    struct rp_batch *b = in->head;
    in->head = NULL;
    in->batches = 0;
    pthread_mutex_unlock(&in->lock);
    while (b != NULL) {
        struct rp_batch *next = b->next;
        for (size_t i = 0; i < RPTEST_SET / 2; i++)
            block_free(b->block[i], "rptest");
        free(b);
        b = next;
    }
}

static void rp_send(const struct rp_worker *rw, struct rp_batch *b)
{
    struct rp_inbox *to = &rw->inbox[(rw->w.index + 1) % rw->threads];
    for (;;) {
        pthread_mutex_lock(&to->lock);
        bool room = to->batches < RPTEST_INBOX_MAX;
        if (room) {
            b->next = to->head;
            to->head = b;
            to->batches++;
        }
        pthread_mutex_unlock(&to->lock);
        if (room)
            return;
        rp_drain(&rw->inbox[rw->w.index]);
        sched_yield();
    }
}

static void *rptest_thread(void *arg)
{
    const struct rp_worker *rw = arg;
    struct rng r = rng_for(rw->w.index);
    void *set[RPTEST_SET];
    uint32_t id = 0;
    for (uint64_t loop = 0; loop < rw->w.steps; loop++) {
        rp_drain(&rw->inbox[rw->w.index]);
        for (size_t i = 0; i < RPTEST_SET; i++)
            set[i] = block_new(size_octaves(&r, 4, 14), id++);
        for (size_t k = 0; k < RPTEST_REPLACE; k++) {
            void **slot = &set[rng_below(&r, RPTEST_SET)];
            block_free(*slot, "rptest");
            *slot = block_new(size_octaves(&r, 4, 14), id++);
        }
        struct rp_batch *b = xmalloc(sizeof *b);
        for (size_t i = 0; i < RPTEST_SET / 2; i++) {
            block_free(set[2 * i], "rptest");
            b->block[i] = set[2 * i + 1];
        }
        rp_send(rw, b);
    }
    atomic_fetch_add(rw->done, 1);
    while (atomic_load(rw->done) < rw->threads) {
        rp_drain(&rw->inbox[rw->w.index]);
        sched_yield();
    }
    return NULL;
}

static uint64_t rptest(unsigned threads, double scale)
{
    uint64_t loops = share_of((uint64_t)(RPTEST_BLOCKS * scale) / (RPTEST_SET + RPTEST_REPLACE),
                              threads);
    struct rp_inbox *inbox = aligned_alloc(64, threads * sizeof *inbox);
    if (inbox == NULL)
        out_of_memory(threads * sizeof *inbox);
    struct rp_worker *rw = xcalloc(threads, sizeof *rw);
    atomic_uint done = 0;
    for (unsigned i = 0; i < threads; i++) {
        inbox[i] = (struct rp_inbox){ .head = NULL };
        pthread_mutex_init(&inbox[i].lock, NULL);
        rw[i] = (struct rp_worker){ { i, loops, 0 }, inbox, threads, &done };
    }
    run_threads(threads, rptest_thread, rw, sizeof *rw);
    for (unsigned i = 0; i < threads; i++) {
        rp_drain(&inbox[i]);
        pthread_mutex_destroy(&inbox[i].lock);
    }
    free(rw);
    free(inbox);
    return loops * threads * (RPTEST_SET + RPTEST_REPLACE);
}

/* ---- the workloads ------------------------------------------------------ */

struct workload {
    const char *name;
    uint64_t (*run)(unsigned threads, double scale); /* returns units done */
    const char *unit;
    const char *what;
};

static const struct workload workloads[] = {
    { "larson", larson, "steps",
      "server churn: 4000 blocks of 16..1000 B per thread, random replace, "
      "1 in 16 via a shared pool" },
    { "prodcons", prodcons, "blocks",
      "threads/2 producer-consumer pairs: 16 B..4 KiB allocated by one, freed by the other" },
    { "falseshare", falseshare, "objects",
      "cache-scratch: 8-byte objects handed out by the main thread, then "
      "allocated, written 500x, freed" },
    { "pareto", pareto, "steps",
      "Pareto sizes from 16 B, 100000 live blocks replaced at random, 0..7 temporaries per step" },
    { "realloc", realloc_growth, "rounds",
      "a string grown 1..64 B at a time to 1 MiB; vectors grown x2 to 32 MiB and x1.5 to 24 MiB" },
    { "largereuse", largereuse, "steps",
      "4 live blocks of 256 KiB..32 MiB per thread, every page written, random replace" },
    { "threadchurn", threadchurn, "threads",
      "threads allocate 1000 blocks, free 7/8, leave 1/8 to later threads, exit" },
    { "reallocgrow", reallocgrow, "reallocs",
      "a block doubled by realloc from 32 B to 256 KiB (13 reallocs), freed; first and "
      "last bytes checked" },
    { "mixedsizes", mixedsizes, "calls",
      "256 live slots per thread refilled with realloc chains (x2 to 256 KiB, +1..16 B "
      "to 64 B..1 KiB), aligned blocks (100..5100 B at 64 B..2 KiB) and 1 MiB blocks" },
    { "xmalloc", xmalloc_test, "blocks",
      "xmalloc-test: threads/2 producers allocate 8..512 B in batches on one shared "
      "list, the other threads free them" },
    { "mstress", mstress, "steps",
      "10 rounds of fresh threads on 1000 slots each: 8..512 B, 1 in 100 of "
      "4..256 KiB, half freed, 1 step in 32 swapped with a shared pool" },
    { "rptest", rptest, "blocks",
      "rpmalloc's benchmark: 500 blocks of 16 B..16 KiB per loop, 1000 random "
      "replaces, half freed, half freed by the next thread" },
};
#define N_WORKLOADS (sizeof workloads / sizeof workloads[0])

static const struct workload *workload_named(const char *name)
{
    for (size_t i = 0; i < N_WORKLOADS; i++)
        if (strcmp(workloads[i].name, name) == 0)
            return &workloads[i];
    return NULL;
}

/* ---- run: wall time and peak RSS of a command --------------------------- */

struct run_options {
    const char *preload; /* LD_PRELOAD for the command, or NULL */
    const char *expect;  /* must show in its /proc/PID/maps, or NULL */
    const char *out;     /* the result line goes here (appended), or stderr */
    char **cmd;
};

/* In the forked child: never outlive the runner (a server left behind when
 * the script is interrupted), set the preload, exec.  A failed exec sends
 * errno back through errfd. */
static void exec_command(const struct run_options *o, pid_t runner, int errfd)
{
    int e = 0;
    if (prctl(PR_SET_PDEATHSIG, SIGTERM) != 0 || getppid() != runner)
        e = errno ? errno : ESRCH;
    else if (o->preload != NULL && setenv("LD_PRELOAD", o->preload, 1) != 0)
        e = errno;
    else {
        execvp(o->cmd[0], o->cmd);
        e = errno;
    }
    if (write(errfd, &e, sizeof e) < 0)
        _exit(126);
    _exit(127);
}

static bool maps_contain(pid_t pid, const char *name)
{
    char path[64], *line = NULL;
    size_t cap = 0;
    bool found = false;
    snprintf(path, sizeof path, "/proc/%d/maps", (int)pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return false;
    while (!found && getline(&line, &cap, f) > 0)
        found = strstr(line, name) != NULL;
    free(line);
    fclose(f);
    return found;
}

/* Waits for pid.  Until name (if any) shows in its maps, polls every 200 us
 * instead of blocking: the dynamic loader maps a preload within a
 * millisecond or so of the exec. */
static int wait_command(pid_t pid, const char *name, struct rusage *ru, bool *seen)
{
    int status;
    while (name != NULL && !*seen) {
        pid_t w = wait4(pid, &status, WNOHANG, ru);
        if (w == pid)
            return status;
        if (w < 0)
            die_errno("wait4");
        *seen = maps_contain(pid, name);
        if (!*seen)
            nanosleep(&(struct timespec){ 0, 200000 }, NULL);
    }
    if (wait4(pid, &status, 0, ru) < 0)
        die_errno("wait4");
    return status;
}

static int run_command(const struct run_options *o)
{
    int pfd[2];
    if (pipe2(pfd, O_CLOEXEC) != 0)
        die_errno("pipe2");
    pid_t runner = getpid();
    uint64_t t0 = now_ns();
    pid_t pid = fork();
    if (pid < 0)
        die_errno("fork");
    if (pid == 0)
        exec_command(o, runner, pfd[1]);
    close(pfd[1]);
    int exec_errno;
    bool exec_failed = read(pfd[0], &exec_errno, sizeof exec_errno) == sizeof exec_errno;
    close(pfd[0]);

    struct rusage ru;
    bool seen = false;
    int status = wait_command(pid, exec_failed ? NULL : o->expect, &ru, &seen);
    double wall = (double)(now_ns() - t0) / 1e9;
    if (exec_failed) {
        fprintf(stderr, "bench_malloc: run: cannot run %s: %s\n", o->cmd[0], strerror(exec_errno));
        return 127;
    }
    int rc = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);

    FILE *f = o->out != NULL ? fopen(o->out, "a") : stderr;
    if (f == NULL)
        die_errno(o->out);
    fprintf(f, "%.6f\t%ld\t%d\t%s\n", wall, ru.ru_maxrss, rc,
            o->expect == NULL ? "-" : seen ? "yes" : "no");
    if (f != stderr && fclose(f) != 0)
        die_errno(o->out);
    if (rc == 0 && o->expect != NULL && !seen) {
        fprintf(stderr, "bench_malloc: run: no mapping of '%s' in %s: the preload did not take\n",
                o->expect, o->cmd[0]);
        return 3;
    }
    return rc;
}

/* ---- options and main --------------------------------------------------- */

static void usage(FILE *f)
{
    fprintf(f,
        "usage: bench_malloc WORKLOAD [--threads N] [--scale F]\n"
        "       bench_malloc run [--preload LIB] [--expect NAME] [--out FILE] -- CMD [ARG...]\n"
        "       bench_malloc --list\n"
        "  WORKLOAD        one of --list; it calls malloc/free (choose the\n"
        "                  allocator with LD_PRELOAD)\n"
        "  --threads N     threads (default: the CPUs, at least 2), sharing the work\n"
        "  --scale F       multiplies the work (default 1: 0.5-3 s with glibc on 2 CPUs)\n"
        "  run             runs CMD and writes: wall seconds, peak RSS KiB, exit status, whether\n"
        "                  a mapping of NAME showed in its /proc/PID/maps (yes, no, -)\n"
        "  --preload LIB   LD_PRELOAD=LIB for CMD only\n"
        "  --expect NAME   exit 3 if CMD succeeded but no mapping's path contains NAME\n"
        "  --out FILE      append the line to FILE (default: stderr)\n"
        "exit status: 0 ok, 1 usage, 2 system error, 3 preload not seen, 4 corrupted blocks;\n"
        "run: CMD's status (128 + N if killed by signal N)\n");
}

/* If argv[*i] is the option name, as "NAME=VALUE" or "NAME VALUE", returns
 * VALUE (stepping *i past a separate one); else NULL. */
static const char *option_value(int argc, char **argv, int *i, const char *name)
{
    size_t n = strlen(name);
    if (strncmp(argv[*i], name, n) != 0)
        return NULL;
    if (argv[*i][n] == '=')
        return argv[*i] + n + 1;
    if (argv[*i][n] != '\0')
        return NULL;
    if (*i + 1 >= argc) {
        fprintf(stderr, "bench_malloc: %s needs a value\n", name);
        exit(1);
    }
    return argv[++*i];
}

static unsigned parse_threads(const char *s)
{
    char *end;
    errno = 0;
    long n = strtol(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || n < 1 || n > 1024) {
        fprintf(stderr, "bench_malloc: --threads: '%s' is not a number from 1 to 1024\n", s);
        exit(1);
    }
    return (unsigned)n;
}

static double parse_scale(const char *s)
{
    char *end;
    errno = 0;
    double f = strtod(s, &end);
    if (errno != 0 || end == s || *end != '\0' || !(f > 0) || f > 1000) {
        fprintf(stderr, "bench_malloc: --scale: '%s' is not a number above 0 (at most 1000)\n", s);
        exit(1);
    }
    return f;
}

static unsigned default_threads(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 2 ? (unsigned)n : 2;
}

static int main_run(int argc, char **argv)
{
    struct run_options o = { 0 };
    int i;
    for (i = 2; i < argc && strcmp(argv[i], "--") != 0; i++) {
        const char *v;
        if ((v = option_value(argc, argv, &i, "--preload")) != NULL)
            o.preload = v;
        else if ((v = option_value(argc, argv, &i, "--expect")) != NULL)
            o.expect = v;
        else if ((v = option_value(argc, argv, &i, "--out")) != NULL)
            o.out = v;
        else
            return help_or_unknown(argv[i], usage, "bench_malloc: run: unknown option '%s'\n");
    }
    if (i + 1 >= argc) {
        fprintf(stderr, "bench_malloc: run: no command after --\n");
        return 1;
    }
    o.cmd = &argv[i + 1];
    return run_command(&o);
}

static int main_workload(int argc, char **argv)
{
    const struct workload *w = workload_named(argv[1]);
    unsigned threads = default_threads();
    double scale = 1;
    if (w == NULL)
        return help_or_unknown(argv[1], usage,
                               "bench_malloc: unknown workload '%s' (see --list)\n");
    for (int i = 2; i < argc; i++) {
        const char *v;
        if ((v = option_value(argc, argv, &i, "--threads")) != NULL)
            threads = parse_threads(v);
        else if ((v = option_value(argc, argv, &i, "--scale")) != NULL)
            scale = parse_scale(v);
        else
            return help_or_unknown(argv[i], usage, "bench_malloc: unknown option '%s'\n");
    }
    uint64_t t0 = now_ns();
    uint64_t done = w->run(threads, scale);
    double s = (double)(now_ns() - t0) / 1e9;
    unsigned long bad = atomic_load(&g_bad_blocks);
    printf("%s: %u threads, %llu %s, %.3f s, %lu corrupted\n", w->name, threads,
           (unsigned long long)done, w->unit, s, bad);
    if (bad != 0) {
        fprintf(stderr, "bench_malloc: %s: %lu blocks corrupted while live\n", w->name, bad);
        return 4;
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 1;
    }
    if (strcmp(argv[1], "--list") == 0) {
        for (size_t i = 0; i < N_WORKLOADS; i++)
            printf("%s\t%s\n", workloads[i].name, workloads[i].what);
        return 0;
    }
    if (strcmp(argv[1], "run") == 0)
        return main_run(argc, argv);
    return main_workload(argc, argv);
}
