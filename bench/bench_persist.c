/* bench_persist: commit latency and first-write cost of mmheap's file heaps.
 *
 *   bench_persist commit     [options]   commit latency, 200 scattered pages
 *   bench_persist firstwrite [options]   first write per page, per tracker
 *   bench_persist probe --tracker=T      exit 0 if tracker T works here
 *
 * commit: four (or fewer) heaps of --heap-mib MiB of data each -- private with
 * the uffd, mprotect and none trackers, and shared (MMH_SHARED, auto
 * tracker) -- plus one plain file of the same size.  Every heap is filled
 * with 1344 KiB blocks, every byte written, and committed once (untimed).  Each
 * repetition then draws --pages distinct random pages (the same draw for
 * every configuration), writes one byte into each and times:
 *   - mmh_commit on every heap,
 *   - floor: pwrite of those pages (4 KiB each) into the plain file, then one
 *     fdatasync,
 *   - msync: the same pages stored through a MAP_SHARED mapping of the whole
 *     plain file, then msync(MS_SYNC) of the whole mapping.
 * The configurations run one after another inside each repetition, in an
 * order that rotates from repetition to repetition.  The none tracker
 * journals the whole heap at every commit, so it runs only in the first
 * --none-reps repetitions.  At the end every heap is closed, reopened
 * read-only and the bytes of its last repetition are checked.
 *
 * firstwrite: one heap holding a block of --fw-pages pages.  For each round
 * and each tracker (rotating order) a child process opens the heap and times
 *   - cold: one byte stored into each page, ascending, right after the open
 *     (the pages are in the page cache but not mapped: every store takes the
 *     private mapping's copy-on-write fault, plus the tracker's work);
 *   - commit (untimed), then warm-seq: the same stores again (the pages are
 *     private copies now; what remains is the tracker's write fault);
 *   - commit (untimed), then warm-rand: the same in a random page order.
 * The child checks that each commit wrote at least the pages it stored to,
 * then exits without closing (nothing more to write).
 *
 * Output is Markdown tables; --raw FILE keeps every measurement.  Figures
 * are medians over repetitions/rounds; ratios are medians of the ratio
 * within one repetition/round.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define BENCH_NAME "bench_persist"
#include "benchutil.h"

#define PAGE 4096u
/* 21 slices of 64 KiB: three fill a 4 MiB segment's 63 usable slices */
#define BLOCK ((size_t)21 << 16)

static const char *g_dir;
static char g_work[4096];
static FILE *g_raw;

static void minmax(const double *v, size_t n, double *lo, double *hi)
{
    *lo = *hi = n ? v[0] : -1;
    for (size_t i = 1; i < n; i++) {
        if (v[i] < *lo)
            *lo = v[i];
        if (v[i] > *hi)
            *hi = v[i];
    }
}

static const char *tracker_name(mmh_tracker t)
{
    switch (t) {
    case MMH_TRACK_AUTO: return "auto";
    case MMH_TRACK_UFFD: return "uffd";
    case MMH_TRACK_MPROTECT: return "mprotect";
    case MMH_TRACK_NONE: return "none";
    }
    return "?";
}

static int parse_tracker(const char *s, mmh_tracker *t)
{
    for (int i = MMH_TRACK_AUTO; i <= MMH_TRACK_NONE; i++)
        if (strcmp(s, tracker_name((mmh_tracker)i)) == 0) {
            *t = (mmh_tracker)i;
            return 0;
        }
    return -1;
}

static void work_path(char *buf, size_t n, const char *name)
{
    snprintf(buf, n, "%s/%s", g_work, name);
}

static void unlink_heap(const char *path)
{
    char j[4200];
    snprintf(j, sizeof j, "%s.journal", path);
    unlink(path);
    unlink(j);
}

/* ---- probe ------------------------------------------------------------- */

/* Does tracker t open, track a write, commit it and read it back? */
static int probe(mmh_tracker t)
{
    char path[4200];
    work_path(path, sizeof path, "probe.heap");
    unlink_heap(path);
    mmh_config cfg = { .flags = MMH_CREATE, .tracker = t };
    mmh_heap *h = mmh_open(path, &cfg);
    if (!h) {
        printf("%s\n", mmh_errmsg());
        return 1;
    }
    char *p = mmh_alloc(h, 3 * PAGE);
    if (!p || mmh_set_root(h, p) != 0 || mmh_commit(h) != 0) {
        printf("%s\n", mmh_errmsg());
        return 1;
    }
    p[0] = 1;
    p[PAGE + 7] = 2;
    if (mmh_commit(h) != 0 || mmh_close(h) != 0) {
        printf("%s\n", mmh_errmsg());
        return 1;
    }
    mmh_config ro = { .flags = MMH_READONLY };
    h = mmh_open(path, &ro);
    p = h ? mmh_root(h) : NULL;
    int ok = p && p[0] == 1 && p[PAGE + 7] == 2;
    if (h)
        mmh_close(h);
    unlink_heap(path);
    if (!ok) {
        printf("tracker %s: committed bytes not read back\n", tracker_name(t));
        return 1;
    }
    printf("ok\n");
    return 0;
}

/* ---- commit latency ---------------------------------------------------- */

enum ckind { C_PRIV, C_SHARED, C_FLOOR, C_MSYNC };

struct cconf {
    const char *name;
    enum ckind kind;
    mmh_tracker tracker;
    int active;           /* took part (opened fine)            */
    mmh_heap *h;
    char **blocks;        /* heaps: the data blocks             */
    size_t nblocks;
    char path[4200];
    int last_rep;         /* last repetition it ran in          */
    double *ns;           /* per repetition, -1 = did not run   */
    uint64_t bytes;       /* bytes_written, summed over reps    */
    unsigned runs;
    uint64_t setup_ns;
    uint64_t heap_size;
};

static size_t g_npages;   /* pages of data in each configuration */
static int g_fd = -1;     /* the plain file                       */
static char *g_map;       /* its MAP_SHARED mapping               */
static char g_pagebuf[PAGE] __attribute__((aligned(PAGE)));

static char *page_addr(struct cconf *c, size_t pg)
{
    if (c->kind == C_MSYNC)
        return g_map + pg * PAGE;
    return c->blocks[pg / (BLOCK / PAGE)] + (pg % (BLOCK / PAGE)) * PAGE;
}

static void setup_heap(struct cconf *c, size_t data_bytes, const char *note)
{
    work_path(c->path, sizeof c->path, c->name);
    strcat(c->path, ".heap");
    unlink_heap(c->path);
    mmh_config cfg = { .flags = MMH_CREATE | (c->kind == C_SHARED ? MMH_SHARED : 0),
                       .tracker = c->tracker };
    c->h = mmh_open(c->path, &cfg);
    if (!c->h) {
        fprintf(stderr, "bench_persist: %s: skipped: %s\n", c->name, mmh_errmsg());
        if (g_raw)
            fprintf(g_raw, "skip\t%s\t%s\n", c->name, mmh_errmsg());
        return;
    }
    c->nblocks = data_bytes / BLOCK;
    c->blocks = calloc(c->nblocks, sizeof *c->blocks);
    char **list = mmh_alloc(c->h, c->nblocks * sizeof *list);
    if (!c->blocks || !list)
        die("allocating the block list");
    for (size_t i = 0; i < c->nblocks; i++) {
        if (!(c->blocks[i] = mmh_alloc(c->h, BLOCK)))
            die("allocating the data");
        memset(c->blocks[i], (int)(i * 7 + 1), BLOCK);
        list[i] = c->blocks[i];
    }
    if (mmh_set_root(c->h, list) != 0)
        die("mmh_set_root");
    uint64_t t0 = now_ns();
    if (mmh_commit(c->h) != 0)
        die("the first commit");
    c->setup_ns = now_ns() - t0;
    struct mmh_stats st;
    mmh_stats(c->h, &st);
    c->heap_size = st.size;
    c->active = 1;
    (void)note;
}

static void setup_plain(size_t data_bytes)
{
    char path[4200];
    work_path(path, sizeof path, "plain.dat");
    g_fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (g_fd < 0)
        die_errno(path);
    char *buf = malloc(BLOCK);
    if (!buf)
        die_errno("malloc");
    for (size_t i = 0; i < data_bytes / BLOCK; i++) {
        memset(buf, (int)(i * 7 + 1), BLOCK);
        if (pwrite(g_fd, buf, BLOCK, (off_t)(i * BLOCK)) != (ssize_t)BLOCK)
            die_errno("writing the plain file");
    }
    free(buf);
    if (fdatasync(g_fd) != 0)
        die_errno("fdatasync");
    g_map = mmap(NULL, data_bytes, PROT_READ | PROT_WRITE, MAP_SHARED, g_fd, 0);
    if (g_map == MAP_FAILED)
        die_errno("mmap of the plain file");
    /* Map every page (and dirty it), then make it all clean again. */
    for (size_t i = 0; i < data_bytes; i += PAGE)
        g_map[i + 1] = (char)i;
    if (msync(g_map, data_bytes, MS_SYNC) != 0)
        die_errno("msync");
}

/* One repetition of one configuration: store val at 100 bytes into each
 * page of pages[], then make it durable; returns the time of the second
 * part, ns. */
static uint64_t commit_once(struct cconf *c, const size_t *pages, size_t n, unsigned char val)
{
    uint64_t t0, t;
    struct mmh_stats st;
    switch (c->kind) {
    case C_PRIV:
    case C_SHARED:
        for (size_t i = 0; i < n; i++)
            *(volatile char *)(page_addr(c, pages[i]) + 100) = (char)val;
        mmh_stats(c->h, &st);
        uint64_t before = st.bytes_written;
        t0 = now_ns();
        if (mmh_commit(c->h) != 0)
            die(c->name);
        t = now_ns() - t0;
        mmh_stats(c->h, &st);
        c->bytes += st.bytes_written - before;
        return t;
    case C_FLOOR:
        t0 = now_ns();
        for (size_t i = 0; i < n; i++) {
            g_pagebuf[100] = (char)val;
            if (pwrite(g_fd, g_pagebuf, PAGE, (off_t)(pages[i] * PAGE)) != PAGE)
                die_errno("pwrite");
        }
        if (fdatasync(g_fd) != 0)
            die_errno("fdatasync");
        t = now_ns() - t0;
        c->bytes += n * PAGE;
        return t;
    case C_MSYNC:
        for (size_t i = 0; i < n; i++)
            *(volatile char *)(page_addr(c, pages[i]) + 100) = (char)val;
        t0 = now_ns();
        if (msync(g_map, g_npages * PAGE, MS_SYNC) != 0)
            die_errno("msync");
        t = now_ns() - t0;
        c->bytes += n * PAGE;
        return t;
    }
    return 0;
}

static void draw_pages(size_t *pages, size_t n, size_t range)
{
    for (size_t i = 0; i < n; i++) {
        size_t pg;
        int dup;
        do {
            pg = (size_t)(wyrand() % range);
            dup = 0;
            for (size_t j = 0; j < i; j++)
                dup |= pages[j] == pg;
        } while (dup);
        pages[i] = pg;
    }
}

static void print_range_row(const char *name, double *r, size_t n, const char *fmt_unit)
{
    double lo, hi, m;
    minmax(r, n, &lo, &hi);
    m = sort_median(r, n);
    printf("| %s | %.2f%s | %.2f-%.2f |", name, m, fmt_unit, lo, hi);
}

static int bench_commit(const char *trackers, size_t heap_mib, size_t npages, int reps,
                        int none_reps, int shared)
{
    size_t data_bytes = (heap_mib << 20) / BLOCK * BLOCK;
    g_npages = data_bytes / PAGE;
    if (npages > g_npages / 2) {
        fprintf(stderr, "bench_persist: --pages too large for the heap\n");
        return 1;
    }
    struct cconf conf[6];
    int nconf = 0;
    memset(conf, 0, sizeof conf);
    char tl[256];
    snprintf(tl, sizeof tl, "%s", trackers);
    for (char *save, *tok = strtok_r(tl, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        mmh_tracker t;
        if (parse_tracker(tok, &t) != 0 || t == MMH_TRACK_AUTO) {
            fprintf(stderr, "bench_persist: unknown tracker %s\n", tok);
            return 1;
        }
        static char names[4][32];
        snprintf(names[t], sizeof names[t], "private-%s", tok);
        conf[nconf++] = (struct cconf){ .name = names[t], .kind = C_PRIV, .tracker = t };
    }
    if (shared)
        conf[nconf++] = (struct cconf){ .name = "shared", .kind = C_SHARED,
                                        .tracker = MMH_TRACK_AUTO };
    int floor_i = nconf, msync_i = nconf + 1;
    conf[nconf++] = (struct cconf){ .name = "floor", .kind = C_FLOOR, .active = 1 };
    conf[nconf++] = (struct cconf){ .name = "msync", .kind = C_MSYNC, .active = 1 };

    fprintf(stderr, "bench_persist: commit: setting up %d heaps of %zu MiB in %s\n",
            nconf - 2, heap_mib, g_work);
    uint64_t t0 = now_ns();
    setup_plain(data_bytes);
    for (int i = 0; i < nconf; i++) {
        if (conf[i].kind == C_PRIV || conf[i].kind == C_SHARED)
            setup_heap(&conf[i], data_bytes, NULL);
        conf[i].ns = malloc((size_t)reps * sizeof(double));
        conf[i].last_rep = -1;
    }
    fprintf(stderr, "bench_persist: commit: setup took %.1f s; %d repetitions\n",
            (double)(now_ns() - t0) / 1e9, reps);

    size_t *pages = malloc(npages * sizeof *pages);
    int order[6];
    for (int rep = 0; rep < reps; rep++) {
        draw_pages(pages, npages, g_npages);
        for (int k = 0; k < nconf; k++)
            order[k] = (k + rep) % nconf;
        for (int k = 0; k < nconf; k++) {
            struct cconf *c = &conf[order[k]];
            c->ns[rep] = -1;
            if (!c->active)
                continue;
            if (c->kind == C_PRIV && c->tracker == MMH_TRACK_NONE && rep >= none_reps)
                continue;
            uint64_t t = commit_once(c, pages, npages, (unsigned char)(rep + 1));
            c->ns[rep] = (double)t;
            c->last_rep = rep;
            c->runs++;
            if (g_raw)
                fprintf(g_raw, "commit\t%s\t%d\t%llu\n", c->name, rep, (unsigned long long)t);
        }
    }

    /* Check: reopen each heap read-only; the last repetition's bytes are there. */
    int bad = 0;
    for (int i = 0; i < nconf; i++) {
        struct cconf *c = &conf[i];
        if (!c->h)
            continue;
        if (mmh_close(c->h) != 0)
            die("mmh_close");
        mmh_config ro = { .flags = MMH_READONLY };
        mmh_heap *h = mmh_open(c->path, &ro);
        if (!h)
            die("reopening a heap read-only");
        g_rng = 0x9e3779b97f4a7c15ull; /* redraw the last repetition's pages */
        for (int rep = 0; rep <= c->last_rep; rep++)
            draw_pages(pages, npages, g_npages);
        for (size_t j = 0; j < npages; j++)
            if (*(page_addr(c, pages[j]) + 100) != (char)(c->last_rep + 1))
                bad++;
        mmh_close(h);
        unlink_heap(c->path);
    }
    if (bad) {
        fprintf(stderr, "bench_persist: %d committed bytes missing after reopen\n", bad);
        return 4;
    }

    printf("### Commit latency: %zu scattered dirty pages, %zu MiB of data\n\n", npages,
           heap_mib);
    printf("median of %d repetitions (private-none: %d); configurations interleaved, order "
           "rotated each repetition; committed bytes checked after reopen: OK\n\n",
           reps, none_reps < reps ? none_reps : reps);
    printf("| configuration | median ms | min-max ms | bytes written per commit | "
           "heap file MiB | first commit s |\n|---|--:|--:|--:|--:|--:|\n");
    double *tmp = malloc((size_t)reps * sizeof(double));
    for (int i = 0; i < nconf; i++) {
        struct cconf *c = &conf[i];
        if (!c->active) {
            printf("| %s | skipped | | | | |\n", c->name);
            continue;
        }
        size_t n = 0;
        for (int rep = 0; rep < reps; rep++)
            if (c->ns[rep] >= 0)
                tmp[n++] = c->ns[rep] / 1e6;
        double lo, hi;
        minmax(tmp, n, &lo, &hi);
        double m = sort_median(tmp, n);
        printf("| %s | %.3f | %.3f-%.3f | %llu | ", c->name, m, lo, hi,
               (unsigned long long)(c->runs ? c->bytes / c->runs : 0));
        if (c->h)
            printf("%.0f | %.2f |\n", (double)c->heap_size / 1048576.0, (double)c->setup_ns / 1e9);
        else
            printf("%.0f | |\n", (double)data_bytes / 1048576.0);
    }
    printf("\nratios (median over repetitions of the same-repetition ratio)\n\n");
    printf("| configuration | / floor | range | / msync whole map | range |\n"
           "|---|--:|--:|--:|--:|\n");
    double *rf = malloc((size_t)reps * sizeof(double)), *rm = malloc((size_t)reps * sizeof(double));
    double priv_floor = -1, priv_msync = -1;
    for (int i = 0; i < nconf; i++) {
        struct cconf *c = &conf[i];
        if (!c->active || i == floor_i)
            continue;
        size_t n = 0;
        for (int rep = 0; rep < reps; rep++)
            if (c->ns[rep] >= 0) {
                rf[n] = c->ns[rep] / conf[floor_i].ns[rep];
                rm[n] = c->ns[rep] / conf[msync_i].ns[rep];
                n++;
            }
        double mf, mm;
        {
            double t2[n ? n : 1];
            memcpy(t2, rf, n * sizeof *rf);
            mf = sort_median(t2, n);
            memcpy(t2, rm, n * sizeof *rm);
            mm = sort_median(t2, n);
        }
        print_range_row(c->name, rf, n, "");
        if (i == msync_i)
            printf(" 1 | |\n");
        else {
            double lo, hi;
            minmax(rm, n, &lo, &hi);
            printf(" %.3f | %.3f-%.3f |\n", mm, lo, hi);
        }
        if (c->kind == C_PRIV && c->tracker == MMH_TRACK_UFFD) {
            priv_floor = mf;
            priv_msync = mm;
        }
    }
    if (priv_floor >= 0)
        printf("\n**commit targets** (private-uffd, the default): <= 2.5x floor: %.2f => %s; "
               "<= 0.2x whole-map msync: %.3f => %s\n",
               priv_floor, priv_floor <= 2.5 ? "MET" : "NOT MET", priv_msync,
               priv_msync <= 0.2 ? "MET" : "NOT MET");
    for (int i = 0; i < nconf; i++)
        if (conf[i].kind == C_PRIV && conf[i].tracker == MMH_TRACK_MPROTECT && conf[i].active) {
            size_t n = 0;
            for (int rep = 0; rep < reps; rep++)
                if (conf[i].ns[rep] >= 0) {
                    rf[n] = conf[i].ns[rep] / conf[floor_i].ns[rep];
                    rm[n] = conf[i].ns[rep] / conf[msync_i].ns[rep];
                    n++;
                }
            double mf = sort_median(rf, n), mm = sort_median(rm, n);
            printf("  (private-mprotect: %.2f x floor => %s; %.3f x msync => %s)\n", mf,
                   mf <= 2.5 ? "MET" : "NOT MET", mm, mm <= 0.2 ? "MET" : "NOT MET");
        }
    printf("\n");
    munmap(g_map, data_bytes);
    close(g_fd);
    char path[4200];
    work_path(path, sizeof path, "plain.dat");
    unlink(path);
    return 0;
}

/* ---- first write ------------------------------------------------------- */

struct fw_result {
    int ok;
    double cold, warm_seq, warm_rand; /* ns per page */
    char msg[200];
};

/* Commit, and check the commit wrote at least the n pages just stored to;
 * -1 with the reason in r->msg otherwise. */
static int commit_wrote_pages(mmh_heap *h, size_t n, const char *after, struct fw_result *r)
{
    struct mmh_stats st;
    mmh_stats(h, &st);
    uint64_t before = st.bytes_written;
    if (mmh_commit(h) != 0) {
        snprintf(r->msg, sizeof r->msg, "commit after %s: %s", after, mmh_errmsg());
        return -1;
    }
    mmh_stats(h, &st);
    if (st.bytes_written - before < n * PAGE) {
        snprintf(r->msg, sizeof r->msg, "commit after %s wrote %llu bytes < %zu pages", after,
                 (unsigned long long)(st.bytes_written - before), n);
        return -1;
    }
    return 0;
}

static void fw_child(const char *path, mmh_tracker t, size_t n, const uint32_t *perm, int wfd)
{
    struct fw_result r = { 0 };
    mmh_config cfg = { .tracker = t };
    mmh_heap *h = mmh_open(path, &cfg);
    if (!h) {
        snprintf(r.msg, sizeof r.msg, "%s", mmh_errmsg());
        goto out;
    }
    char *p = mmh_root(h);
    p = (char *)(((uintptr_t)p + PAGE - 1) & ~(uintptr_t)(PAGE - 1));
    uint64_t t0;

    t0 = now_ns();
    for (size_t i = 0; i < n; i++)
        *(volatile char *)(p + i * PAGE + 64) = 1;
    r.cold = (double)(now_ns() - t0) / (double)n;

    if (commit_wrote_pages(h, n, "cold", &r) != 0)
        goto out;

    t0 = now_ns();
    for (size_t i = 0; i < n; i++)
        *(volatile char *)(p + i * PAGE + 64) = 2;
    r.warm_seq = (double)(now_ns() - t0) / (double)n;

    if (commit_wrote_pages(h, n, "warm-seq", &r) != 0)
        goto out;

    t0 = now_ns();
    for (size_t i = 0; i < n; i++)
        *(volatile char *)(p + (size_t)perm[i] * PAGE + 64) = 3;
    r.warm_rand = (double)(now_ns() - t0) / (double)n;
    r.ok = 1;
out:
    if (write(wfd, &r, sizeof r) != (ssize_t)sizeof r)
        _exit(3);
    _exit(0); /* without mmh_close: the last writes need not be committed */
}

static int bench_firstwrite(const char *trackers, size_t n, int rounds)
{
    char path[4200];
    work_path(path, sizeof path, "firstwrite.heap");
    unlink_heap(path);
    mmh_config cfg = { .flags = MMH_CREATE };
    mmh_heap *h = mmh_open(path, &cfg);
    if (!h)
        die("creating the first-write heap");
    char *p = mmh_alloc(h, (n + 1) * PAGE);
    if (!p)
        die("allocating the first-write block");
    memset(p, 0x5a, (n + 1) * PAGE);
    if (mmh_set_root(h, p) != 0 || mmh_close(h) != 0)
        die("committing the first-write heap");

    uint32_t *perm = malloc(n * sizeof *perm);
    for (size_t i = 0; i < n; i++)
        perm[i] = (uint32_t)i;
    for (size_t i = n - 1; i > 0; i--) {
        size_t j = (size_t)(wyrand() % (i + 1));
        uint32_t x = perm[i];
        perm[i] = perm[j];
        perm[j] = x;
    }

    mmh_tracker tr[4];
    int ntr = 0;
    char tl[256];
    snprintf(tl, sizeof tl, "%s", trackers);
    for (char *save, *tok = strtok_r(tl, ",", &save); tok; tok = strtok_r(NULL, ",", &save))
        if (parse_tracker(tok, &tr[ntr]) != 0 || tr[ntr] == MMH_TRACK_AUTO || ++ntr == 4) {
            fprintf(stderr, "bench_persist: bad tracker list %s\n", trackers);
            return 1;
        }
    int none_i = -1;
    for (int i = 0; i < ntr; i++)
        if (tr[i] == MMH_TRACK_NONE)
            none_i = i;

    struct fw_result res[4][rounds];
    fprintf(stderr, "bench_persist: firstwrite: %zu pages, %d rounds, trackers %s\n", n, rounds,
            trackers);
    for (int r = 0; r < rounds; r++)
        for (int k = 0; k < ntr; k++) {
            int i = (k + r) % ntr;
            int pfd[2];
            if (pipe(pfd) != 0)
                die_errno("pipe");
            fflush(NULL);
            pid_t pid = fork();
            if (pid < 0)
                die_errno("fork");
            if (pid == 0) {
                close(pfd[0]);
                fw_child(path, tr[i], n, perm, pfd[1]);
            }
            close(pfd[1]);
            struct fw_result *x = &res[i][r];
            memset(x, 0, sizeof *x);
            ssize_t got = read(pfd[0], x, sizeof *x);
            close(pfd[0]);
            int status;
            waitpid(pid, &status, 0);
            if (got != (ssize_t)sizeof *x) {
                snprintf(x->msg, sizeof x->msg, "child died (status 0x%x)", status);
                x->ok = 0;
            }
            if (!x->ok && r == 0)
                fprintf(stderr, "bench_persist: firstwrite %s: %s\n", tracker_name(tr[i]),
                        x->msg);
            if (g_raw)
                fprintf(g_raw, "firstwrite\t%s\t%d\t%d\t%.1f\t%.1f\t%.1f\t%s\n",
                        tracker_name(tr[i]), r, x->ok, x->cold, x->warm_seq, x->warm_rand,
                        x->msg);
        }
    unlink_heap(path);

    printf("### First write per page after a commit: %zu pages, one byte each\n\n", n);
    printf("ns per page, median of %d rounds (one child process per tracker and round, "
           "order rotated)\n\n", rounds);
    printf("| tracker | cold (COW fault + tracking) | warm, ascending | warm, random order | "
           "cold - cold(none) |\n|---|--:|--:|--:|--:|\n");
    double v[3][64], d[64];
    double warm_med[4] = { -1, -1, -1, -1 }, cold_med[4] = { -1, -1, -1, -1 };
    for (int i = 0; i < ntr; i++) {
        size_t m = 0, md = 0;
        for (int r = 0; r < rounds && r < 64; r++)
            if (res[i][r].ok) {
                v[0][m] = res[i][r].cold;
                v[1][m] = res[i][r].warm_seq;
                v[2][m] = res[i][r].warm_rand;
                m++;
                if (none_i >= 0 && res[none_i][r].ok)
                    d[md++] = res[i][r].cold - res[none_i][r].cold;
            }
        if (m == 0) {
            printf("| %s | skipped: %s | | | |\n", tracker_name(tr[i]), res[i][0].msg);
            continue;
        }
        double c = sort_median(v[0], m), ws = sort_median(v[1], m), wr = sort_median(v[2], m);
        warm_med[i] = ws > wr ? ws : wr;
        cold_med[i] = c;
        printf("| %s | %.0f | %.0f | %.0f | ", tracker_name(tr[i]), c, ws, wr);
        if (md)
            printf("%+.0f |\n", sort_median(d, md));
        else
            printf(" |\n");
    }
    printf("\n**first-write targets**, after a commit (warm: the worse of the two warm "
           "columns): ");
    for (int i = 0; i < ntr; i++) {
        if (tr[i] != MMH_TRACK_UFFD && tr[i] != MMH_TRACK_MPROTECT)
            continue;
        double lim = tr[i] == MMH_TRACK_UFFD ? 1.5 : 6.0;
        if (warm_med[i] < 0)
            printf("%s < %.1f us: not measured; ", tracker_name(tr[i]), lim);
        else
            printf("%s < %.1f us: %.2f us => %s; ", tracker_name(tr[i]), lim, warm_med[i] / 1000,
                   warm_med[i] / 1000 < lim ? "MET" : "NOT MET");
    }
    printf("\nfirst write since the open (cold, COW fault included): ");
    for (int i = 0; i < ntr; i++) {
        if (tr[i] != MMH_TRACK_UFFD && tr[i] != MMH_TRACK_MPROTECT)
            continue;
        double lim = tr[i] == MMH_TRACK_UFFD ? 1.5 : 6.0;
        if (cold_med[i] >= 0)
            printf("%s < %.1f us: %.2f us => %s; ", tracker_name(tr[i]), lim, cold_med[i] / 1000,
                   cold_med[i] / 1000 < lim ? "MET" : "NOT MET");
    }
    if (none_i >= 0 && cold_med[none_i] >= 0)
        printf("(the COW fault alone, tracker none: %.2f us)", cold_med[none_i] / 1000);
    printf("\n\n");
    return 0;
}

/* ---- main -------------------------------------------------------------- */

static void usage(FILE *f)
{
    fprintf(f,
            "usage: bench_persist commit|firstwrite|probe [options]\n"
            "  --dir=DIR          where the files go (default $TMPDIR or /tmp)\n"
            "  --trackers=A,B     private trackers (default uffd,mprotect,none)\n"
            "  --raw=FILE         append every measurement to FILE\n"
            " commit:\n"
            "  --heap-mib=N       data per heap (default 1024)\n"
            "  --pages=N          dirty pages per commit (default 200)\n"
            "  --reps=N           repetitions (default 30)\n"
            "  --none-reps=N      repetitions of private-none (default 3)\n"
            "  --no-shared        leave the shared heap out\n"
            " firstwrite:\n"
            "  --fw-pages=N       pages (default 65536)\n"
            "  --rounds=N         rounds (default 5)\n"
            " probe:\n"
            "  --tracker=T        the tracker to try\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 1;
    }
    const char *mode = argv[1];
    const char *trackers = "uffd,mprotect,none", *raw = NULL, *one = NULL;
    size_t heap_mib = 1024, npages = 200, fw_pages = 65536;
    int reps = 30, none_reps = 3, shared = 1, rounds = 5;
    g_dir = getenv("TMPDIR") && *getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i], *v = strchr(a, '=');
        v = v ? v + 1 : "";
#define OPT(name) (strncmp(a, name "=", sizeof name) == 0)
        if (OPT("--dir"))
            g_dir = v;
        else if (OPT("--trackers"))
            trackers = v;
        else if (OPT("--tracker"))
            one = v;
        else if (OPT("--raw"))
            raw = v;
        else if (OPT("--heap-mib"))
            heap_mib = strtoull(v, NULL, 10);
        else if (OPT("--pages"))
            npages = strtoull(v, NULL, 10);
        else if (OPT("--reps"))
            reps = atoi(v);
        else if (OPT("--none-reps"))
            none_reps = atoi(v);
        else if (strcmp(a, "--no-shared") == 0)
            shared = 0;
        else if (OPT("--fw-pages"))
            fw_pages = strtoull(v, NULL, 10);
        else if (OPT("--rounds"))
            rounds = atoi(v);
        else
            return help_or_unknown(a, usage, "bench_persist: unknown option %s\n");
#undef OPT
    }
    if (reps < 1 || reps > 10000 || rounds < 1 || rounds > 64 || npages < 1 || heap_mib < 2 ||
        fw_pages < 1) {
        fprintf(stderr, "bench_persist: option out of range\n");
        return 1;
    }
    snprintf(g_work, sizeof g_work, "%s/mmh-persist.XXXXXX", g_dir);
    if (!mkdtemp(g_work))
        die_errno(g_work);
    if (raw && !(g_raw = fopen(raw, "a")))
        die_errno(raw);
    int rc;
    if (strcmp(mode, "commit") == 0)
        rc = bench_commit(trackers, heap_mib, npages, reps, none_reps, shared);
    else if (strcmp(mode, "firstwrite") == 0)
        rc = bench_firstwrite(trackers, fw_pages, rounds);
    else if (strcmp(mode, "probe") == 0) {
        mmh_tracker t;
        if (!one || parse_tracker(one, &t) != 0) {
            fprintf(stderr, "bench_persist: probe needs --tracker=uffd|mprotect|none\n");
            rc = 1;
        } else
            rc = probe(t);
    } else {
        usage(stderr);
        rc = 1;
    }
    if (g_raw)
        fclose(g_raw);
    rmdir(g_work);
    return rc;
}
