/* bench_snapshot: fork snapshots of mmheap heaps, in process and in a server
 * against Redis.
 *
 *   bench_snapshot heap    [options]   mmh_snapshot of a 1 GiB anonymous heap
 *   bench_snapshot save    [options]   SAVE of examples/kv_server against
 *                                      Redis BGSAVE, both already running
 *   bench_snapshot restart [options]   restart to the first answered GET
 *   bench_snapshot load    [options]   the SET load generator alone
 *
 * heap: an anonymous heap of --heap-mib MiB filled with objects (16-byte
 * multiples of 32..480 bytes, every byte written), once as a default heap
 * and once with MMH_HUGEPAGES (--kinds), one after the other with the same
 * objects, each alone in the process.  Each repetition snapshots it twice,
 * in alternating order: idle (the parent waits with mmh_wait(h, 0)) and
 * under load (the parent overwrites whole random objects at --rate writes a
 * second, on a fixed schedule, until mmh_wait(h, 1) says the job is done).
 * Measured: the pause (the mmh_snapshot call, and the library's
 * last_fork_ns) next to a bare fork() of the same process, the kernel's
 * floor; the job (call to mmh_wait's 0, and last_job_ns); and the pages
 * copied on write (cow_pages) next to the number of distinct pages the
 * writes touched before mmh_wait said done; and before each call, the MiB
 * of the process mapped by huge (PMD) entries (AnonHugePages), since a
 * write to a huge page while a child shares it splits that mapping into
 * 4 KiB entries, which later forks copy again.  After each job the image
 * is opened beside the heap (MMH_READONLY | MMH_RELOCATE) and compared with
 * a checksum of the heap taken just before the call: the snapshot must be
 * the heap at the call, whatever was written during the job.
 *
 * save: talks RESP to a Redis server and to a kv_server holding the same
 * data (the script loads it with DEBUG POPULATE and POPULATE), and to a
 * third server with the same data where --kv-huge names one: a kv_server
 * started with -H (MMH_HUGEPAGES).  Each repetition snapshots each server
 * idle and under a SET load (--rate SETs a second to random existing keys,
 * from a forked client with a fixed schedule), servers in rotating order.  A snapshot is the command
 * (BGSAVE, SAVE), then INFO every 2 ms until the server says it is done.
 * Reported: the server's own pause (latest_fork_usec, last_fork_ns), the
 * command's round trip, the job from the command to "done" as the client
 * sees it (the same for all), the server's job time where it has one, and
 * the copy-on-write bytes (rdb_last_cow_size, cow_pages * 4096).
 *
 * restart: for each repetition and server (alternating), forks and execs
 * the server's command line and, from just before the fork, connects every
 * 100 us and sends GET until a value comes back (Redis answers -LOADING
 * while it loads).  Then DBSIZE must equal --keys; the server's RSS is
 * read, and it is stopped with SIGTERM.  --cold drops the page cache before
 * each start (root only).
 *
 * Output is Markdown tables; --raw FILE keeps every measurement.  Figures
 * are medians over repetitions; ratios are medians of the ratio within one
 * repetition.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define BENCH_NAME "bench_snapshot"
#include "benchutil.h"

#define PAGE 4096u
#define MAX_REPS 100

static FILE *g_raw;

static void die_msg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void die_msg(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("bench_snapshot: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(2);
}

static void sleep_ns(uint64_t ns)
{
    struct timespec ts = { (time_t)(ns / 1000000000u), (long)(ns % 1000000000u) };
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* Median of the n values >= 0 in v (negative: missing); -1 if none. */
static double median(const double *v, size_t n)
{
    double s[MAX_REPS];
    size_t k = 0;
    for (size_t i = 0; i < n && k < MAX_REPS; i++)
        if (v[i] >= 0)
            s[k++] = v[i];
    return sort_median(s, k);
}

static void minmax(const double *v, size_t n, double *lo, double *hi)
{
    *lo = *hi = -1;
    for (size_t i = 0; i < n; i++) {
        if (v[i] < 0)
            continue;
        if (*lo < 0 || v[i] < *lo)
            *lo = v[i];
        if (v[i] > *hi)
            *hi = v[i];
    }
}

/* Median over repetitions of a[i] / b[i]. */
static double median_ratio(const double *a, const double *b, size_t n)
{
    double r[MAX_REPS];
    for (size_t i = 0; i < n; i++)
        r[i] = a[i] >= 0 && b[i] > 0 ? a[i] / b[i] : -1;
    return median(r, n);
}

static void raw(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void raw(const char *fmt, ...)
{
    if (!g_raw)
        return;
    va_list ap;
    va_start(ap, fmt);
    vfprintf(g_raw, fmt, ap);
    va_end(ap);
    fputc('\n', g_raw);
}

/* The number that fmt (a sscanf format with one %llu) reads from the first
 * line of the file at path where it reads one, into *v: 0, or -1 if the
 * file cannot be opened or no line has it (*v untouched). */
static int proc_num(const char *path, const char *fmt, unsigned long long *v)
    __attribute__((format(scanf, 2, 0)));
static int proc_num(const char *path, const char *fmt, unsigned long long *v)
{
    char line[256];
    FILE *f = fopen(path, "r");
    int rc = -1;
    if (!f)
        return -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, fmt, v) == 1) {
            rc = 0;
            break;
        }
    fclose(f);
    return rc;
}

static uint64_t rss_kib(pid_t pid)
{
    char path[64];
    unsigned long long kib = 0;
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    proc_num(path, "VmRSS: %llu", &kib);
    return kib;
}

/* MiB mapped by huge (PMD) entries, from AnonHugePages of the
 * smaps_rollup file at path; -1 if unknown. */
static double anon_huge_mib_at(const char *path)
{
    unsigned long long kib;
    return proc_num(path, "AnonHugePages: %llu", &kib) == 0 ? kib / 1024.0 : -1;
}

/* ---- heap: mmh_snapshot in process ------------------------------------- */

/* The heap's root: every object, as raw pointers. */
struct objs {
    uint64_t n;
    char    *obj[];
};

static uint64_t checksum(char *const *obj, const uint16_t *size, uint64_t n, intptr_t delta)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (uint64_t i = 0; i < n; i++) {
        const char *p = obj[i] + delta;
        for (unsigned k = 0; k < size[i]; k += 8) {
            uint64_t w;
            memcpy(&w, p + k, 8);
            h = (h ^ w) * 0x100000001b3ull;
        }
    }
    return h;
}

/* Opens the image beside the live heap and checks it holds what the heap
 * held at the call (sum), following the image's own object table. */
static int verify_image(const char *path, const uint16_t *size, uint64_t n, uint64_t sum,
                        uint64_t old_base)
{
    mmh_config cfg = { .flags = MMH_READONLY | MMH_RELOCATE };
    mmh_heap *img = mmh_open(path, &cfg);
    if (!img) {
        fprintf(stderr, "bench_snapshot: cannot open the image: %s\n", mmh_errmsg());
        return -1;
    }
    struct mmh_stats st;
    mmh_stats(img, &st);
    intptr_t delta = (intptr_t)(st.base - old_base);
    struct objs *o = mmh_root(img);
    int ok = o && o->n == n && checksum(o->obj, size, n, delta) == sum;
    if (!ok)
        fprintf(stderr, "bench_snapshot: the image %s differs from the heap at the call\n",
                path);
    mmh_close(img);
    return ok ? 0 : -1;
}

enum { H_PAUSE, H_FORK, H_JOB, H_LIBJOB, H_COW, H_TOUCHED, H_WRITES, H_BYTES, H_HUGE,
       H_NFIELDS };

/* MiB of this process's anonymous memory mapped by huge (PMD) entries:
 * AnonHugePages of /proc/self/smaps_rollup; -1 if unknown.  A huge page
 * whose PMD was split (a write fault while a child shared it) is mapped by
 * 512 PTEs again and no longer counts. */
static double anon_huge_mib(void)
{
    return anon_huge_mib_at("/proc/self/smaps_rollup");
}

#define HEAP_SEED 0x9e3779b97f4a7c15ull

/* One kind of heap (default, or MMH_HUGEPAGES), filled and snapshotted. */
struct heap_run {
    const char *name;
    unsigned    flags;
    double      m[2][H_NFIELDS][MAX_REPS];        /* [load][field][rep]  */
    double      floor_ns[MAX_REPS], floor_huge[MAX_REPS];
    double      order_pause[2 * MAX_REPS], order_huge[2 * MAX_REPS];
    int         order_load[2 * MAX_REPS];          /* calls in the order made */
    uint64_t    n, bytes, usable, heap_size, image_bytes;
    double      huge_after_fill, fill_s;
    int         failures;
};

static void run_heap(struct heap_run *r, const char *dir, size_t heap_mib, int reps,
                     double rate, int verify)
{
    mmh_config cfg = { .max_size = (heap_mib << 20) * 2 + ((size_t)1 << 30),
                       .flags = r->flags };
    mmh_heap *h = mmh_open(NULL, &cfg);
    if (!h)
        die("mmh_open(NULL)");
    char path[4200];
    snprintf(path, sizeof path, "%s/bench_snapshot.%d.image", dir, (int)getpid());
    g_rng = HEAP_SEED;   /* both kinds get the same objects */

    /* populate: sizes 32..480 in steps of 16 (about 270 bytes each with
     * their size classes' rounding), until the heap is heap_mib MiB */
    size_t target = heap_mib << 20, cap = target / 200;
    uint16_t *size = malloc(cap * sizeof *size);
    struct objs *o = mmh_alloc(h, sizeof *o + cap * sizeof(char *));
    if (!size || !o)
        die("allocating the object table");
    uint64_t t0 = now_ns();
    size_t bytes = 0, usable = 0, n = 0;
    struct mmh_stats st;
    for (;;) {
        if (n % 256 == 0) {
            mmh_stats(h, &st);
            if (st.size >= target)
                break;
        }
        if (n == cap) {
            cap += cap / 2;
            size = realloc(size, cap * sizeof *size);
            o = mmh_realloc(h, o, sizeof *o + cap * sizeof(char *));
            if (!size || !o)
                die("growing the object table");
        }
        size_t sz = 32 + 16 * (wyrand() % 29);
        char *p = mmh_alloc(h, sz);
        if (!p)
            die("populating the heap");
        memset(p, (int)(n * 131 + 7), sz);
        size[n] = (uint16_t)sz;
        o->obj[n++] = p;
        bytes += sz;
        usable += mmh_usable_size(h, p);
    }
    o->n = n;
    if (mmh_set_root(h, o) != 0)
        die("mmh_set_root");
    mmh_stats(h, &st);
    uint64_t base = st.base, heap_pages = st.size / PAGE;
    r->n = n;
    r->bytes = bytes;
    r->usable = usable;
    r->heap_size = st.size;
    r->fill_s = (now_ns() - t0) / 1e9;
    r->huge_after_fill = anon_huge_mib();
    fprintf(stderr, "bench_snapshot: heap (%s): %zu objects, %.0f MiB of data, heap %.0f MiB, "
                    "filled in %.1f s, %.0f MiB in huge pages\n",
            r->name, n, bytes / 1048576.0, st.size / 1048576.0, r->fill_s, r->huge_after_fill);
    uint8_t *touched = malloc(heap_pages / 8 + 1);
    if (!touched)
        die_errno("malloc");

    int calls = 0;
    for (int rep = 0; rep < reps; rep++) {
        /* the floor: a bare fork() of this process, the child exiting */
        r->floor_huge[rep] = anon_huge_mib();
        fflush(NULL);
        uint64_t tf = now_ns();
        pid_t pid = fork();
        if (pid == 0)
            _exit(0);
        r->floor_ns[rep] = (double)(now_ns() - tf);
        if (pid < 0 || waitpid(pid, NULL, 0) != pid)
            die_errno("fork");
        raw("heap\t%s\tfork\t%d\tpause_ns=%.0f\thuge_mib=%.0f", r->name, rep, r->floor_ns[rep],
            r->floor_huge[rep]);
        for (int k = 0; k < 2; k++) {
            int load = (k + rep) % 2;
            uint64_t sum = verify ? checksum(o->obj, size, n, 0) : 0;
            memset(touched, 0, heap_pages / 8 + 1);
            uint64_t writes = 0, ntouched = 0;
            double huge = anon_huge_mib();

            uint64_t t = now_ns();
            if (mmh_snapshot(h, path) != 0)
                die("mmh_snapshot");
            uint64_t t_fork = now_ns();
            int rc;
            if (!load)
                rc = mmh_wait(h, 0);
            else {
                /* overwrite whole random objects on a fixed schedule */
                while ((rc = mmh_wait(h, 1)) == 1) {
                    uint64_t due = (uint64_t)((now_ns() - t_fork) * rate / 1e9);
                    for (; writes < due; writes++) {
                        uint64_t i = wyrand() % n;
                        char *p = o->obj[i];
                        memset(p, (int)(writes + 1), size[i]);
                        uint64_t first = (uint64_t)(p - (char *)base) / PAGE;
                        uint64_t last = (uint64_t)(p + size[i] - 1 - (char *)base) / PAGE;
                        for (uint64_t pg = first; pg <= last; pg++)
                            if (!(touched[pg / 8] & (1u << (pg % 8)))) {
                                touched[pg / 8] |= (uint8_t)(1u << (pg % 8));
                                ntouched++;
                            }
                    }
                    sleep_ns(100000);
                }
            }
            uint64_t t_done = now_ns();
            if (rc != 0)
                die("the snapshot job");
            mmh_stats(h, &st);
            double *v[H_NFIELDS];
            for (int f = 0; f < H_NFIELDS; f++)
                v[f] = &r->m[load][f][rep];
            *v[H_PAUSE] = (double)(t_fork - t);
            *v[H_FORK] = (double)st.last_fork_ns;
            *v[H_JOB] = (double)(t_done - t);
            *v[H_LIBJOB] = (double)st.last_job_ns;
            *v[H_COW] = (double)st.cow_pages;
            *v[H_TOUCHED] = (double)ntouched;
            *v[H_WRITES] = (double)writes;
            *v[H_BYTES] = (double)st.last_job_bytes;
            *v[H_HUGE] = huge;
            r->order_pause[calls] = (double)(t_fork - t);
            r->order_huge[calls] = huge;
            r->order_load[calls++] = load;
            raw("heap\t%s\t%s\t%d\tpause_ns=%llu\tfork_ns=%llu\tjob_ns=%llu\tlib_job_ns=%llu\t"
                "cow_pages=%llu\ttouched_pages=%llu\twrites=%llu\tbytes=%llu\thuge_mib=%.0f",
                r->name, load ? "load" : "idle", rep, (unsigned long long)(t_fork - t),
                (unsigned long long)st.last_fork_ns, (unsigned long long)(t_done - t),
                (unsigned long long)st.last_job_ns, (unsigned long long)st.cow_pages,
                (unsigned long long)ntouched, (unsigned long long)writes,
                (unsigned long long)st.last_job_bytes, huge);
            if (verify && verify_image(path, size, n, sum, base) != 0)
                r->failures++;
        }
    }
    struct stat fst;
    r->image_bytes = stat(path, &fst) == 0 ? (uint64_t)fst.st_size : 0;
    unlink(path);
    mmh_close(h);
    free(touched);
    free(size);
}

static double median_all_pauses(const struct heap_run *r, int reps)
{
    double all[2 * MAX_REPS];
    memcpy(all, r->m[0][H_PAUSE], (size_t)reps * sizeof(double));
    memcpy(all + reps, r->m[1][H_PAUSE], (size_t)reps * sizeof(double));
    return median(all, 2 * (size_t)reps);
}

/* kinds: bit 0 the default heap, bit 1 an MMH_HUGEPAGES heap. */
static int bench_heap(const char *dir, size_t heap_mib, int reps, double rate, int verify,
                      unsigned kinds)
{
    static struct heap_run runs[2] = { { .name = "default", .flags = 0 },
                                       { .name = "MMH_HUGEPAGES", .flags = MMH_HUGEPAGES } };
    int failures = 0;
    for (int k = 0; k < 2; k++)
        if (kinds & (1u << k)) {
            run_heap(&runs[k], dir, heap_mib, reps, rate, verify);
            failures += runs[k].failures;
        }
    const struct heap_run *any = &runs[(kinds & 1) ? 0 : 1];

    printf("### mmh_snapshot of an anonymous heap: %.0f MiB heap, %.0f MiB in blocks\n\n",
           any->heap_size / 1048576.0, any->usable / 1048576.0);
    printf("%llu objects of 32..480 B (%.0f MiB); %s; median of %d repetitions, idle and "
           "under load alternating; load: whole random objects overwritten at %.0f/s by the "
           "parent during the job; image %.0f MiB in %s",
           (unsigned long long)any->n, any->bytes / 1048576.0,
           kinds == 3 ? "the default heap, then an MMH_HUGEPAGES heap with the same objects, "
                        "each alone in the process (the first closed before the second is made)"
                      : any->name,
           reps, rate, any->image_bytes / 1048576.0, dir);
    if (verify)
        printf("; every image checked against the heap at the call: %s",
               failures ? "FAILED" : "OK");
    printf("\n\n");
    printf("| heap | case | pause: mmh_snapshot ms | min-max ms | last_fork_ns ms "
           "| job ms (to mmh_wait) | last_job_ns ms | MB/s | cow_pages | pages written "
           "| writes | huge-mapped MiB at the call |\n");
    printf("|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n");
    for (int k = 0; k < 2; k++) {
        if (!(kinds & (1u << k)))
            continue;
        const struct heap_run *r = &runs[k];
        for (int load = 0; load < 2; load++) {
            const double (*f)[MAX_REPS] = r->m[load];
            double lo, hi;
            minmax(f[H_PAUSE], (size_t)reps, &lo, &hi);
            printf("| %s | %s | %.2f | %.2f-%.2f | %.2f | %.0f | %.0f | %.0f | %.0f | %.0f "
                   "| %.0f | %.0f |\n",
                   r->name, load ? "load" : "idle", median(f[H_PAUSE], (size_t)reps) / 1e6,
                   lo / 1e6, hi / 1e6, median(f[H_FORK], (size_t)reps) / 1e6,
                   median(f[H_JOB], (size_t)reps) / 1e6, median(f[H_LIBJOB], (size_t)reps) / 1e6,
                   median(f[H_BYTES], (size_t)reps) / median(f[H_LIBJOB], (size_t)reps) * 1e3,
                   median(f[H_COW], (size_t)reps), median(f[H_TOUCHED], (size_t)reps),
                   median(f[H_WRITES], (size_t)reps), median(f[H_HUGE], (size_t)reps));
        }
        double lo, hi;
        minmax(r->floor_ns, (size_t)reps, &lo, &hi);
        printf("| %s | fork() alone | %.2f | %.2f-%.2f | | | | | | | | %.0f |\n", r->name,
               median(r->floor_ns, (size_t)reps) / 1e6, lo / 1e6, hi / 1e6,
               median(r->floor_huge, (size_t)reps));
    }
    printf("\nfork() alone: a bare fork() of the same process (the child exits at once), once "
           "per repetition before its two snapshots; the kernel's floor for the pause.  "
           "huge-mapped: AnonHugePages of the process (smaps_rollup) just before the call.\n\n");
    for (int k = 0; k < 2; k++) {
        if (!(kinds & (1u << k)))
            continue;
        const struct heap_run *r = &runs[k];
        printf("- %s: filled in %.1f s, %.0f MiB huge-mapped after the fill; mmh_snapshot "
               "pause / fork() alone (median of same-repetition ratios): idle %.2f, load %.2f; "
               "pauses in call order, ms (huge-mapped MiB):",
               r->name, r->fill_s, r->huge_after_fill,
               median_ratio(r->m[0][H_PAUSE], r->floor_ns, (size_t)reps),
               median_ratio(r->m[1][H_PAUSE], r->floor_ns, (size_t)reps));
        for (int i = 0; i < 2 * reps; i++)
            printf("%s %.2f%s (%.0f)", i ? "," : "", r->order_pause[i] / 1e6,
                   r->order_load[i] ? "L" : "", r->order_huge[i]);
        printf(" (L: under load)\n");
    }
    if (kinds == 3) {
        printf("- default / MMH_HUGEPAGES (median over repetitions of the ratio between the "
               "same repetition of each; > 1: huge pages better): pause idle %.2f, load %.2f, "
               "fork() alone %.2f; first call %.2f ms against %.2f ms\n",
               median_ratio(runs[0].m[0][H_PAUSE], runs[1].m[0][H_PAUSE], (size_t)reps),
               median_ratio(runs[0].m[1][H_PAUSE], runs[1].m[1][H_PAUSE], (size_t)reps),
               median_ratio(runs[0].floor_ns, runs[1].floor_ns, (size_t)reps),
               runs[0].order_pause[0] / 1e6, runs[1].order_pause[0] / 1e6);
    }
    printf("\n");
    for (int k = 0; k < 2; k++) {
        if (!(kinds & (1u << k)))
            continue;
        const struct heap_run *r = &runs[k];
        double pause = median_all_pauses(r, reps) / 1e6;
        printf("**pause target, %s heap** (1 GiB heap; this one %.0f MiB, median of all %d "
               "calls): < 15 ms: %.2f ms => %s (fork() alone: %.2f ms; first call: %.2f ms)\n\n",
               r->name, r->heap_size / 1048576.0, 2 * reps, pause,
               pause < 15 ? "MET" : "NOT MET", median(r->floor_ns, (size_t)reps) / 1e6,
               r->order_pause[0] / 1e6);
    }
    return failures ? 4 : 0;
}

/* ---- a small RESP client ----------------------------------------------- */

struct conn {
    int    fd;
    char   buf[1 << 16];
    size_t off, len;
};

/* Connects to 127.0.0.1:port; -1 with errno on failure. */
static int conn_open(struct conn *c, unsigned port)
{
    c->off = c->len = 0;
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (c->fd < 0)
        return -1;
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                              .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    if (connect(c->fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        int e = errno;
        close(c->fd);
        errno = e;
        return -1;
    }
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct timeval tv = { .tv_sec = 600 };   /* never hang for ever */
    setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    return 0;
}

static void conn_close(struct conn *c)
{
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
}

static size_t resp_encode(char *out, size_t cap, int argc, const char *const *argv)
{
    size_t n = (size_t)snprintf(out, cap, "*%d\r\n", argc);
    for (int i = 0; i < argc && n < cap; i++)
        n += (size_t)snprintf(out + n, cap - n, "$%zu\r\n%s\r\n", strlen(argv[i]), argv[i]);
    return n;
}

static int send_all(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t k = send(fd, p, n, MSG_NOSIGNAL);
        if (k < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += k;
        n -= (size_t)k;
    }
    return 0;
}

/* Reads until buf holds n bytes from off; -1 on error or EOF. */
static int conn_fill(struct conn *c, size_t n)
{
    if (c->off + n > sizeof c->buf) {
        memmove(c->buf, c->buf + c->off, c->len - c->off);
        c->len -= c->off;
        c->off = 0;
    }
    while (c->len - c->off < n) {
        ssize_t k = recv(c->fd, c->buf + c->len, sizeof c->buf - c->len, 0);
        if (k <= 0) {
            if (k < 0 && errno == EINTR)
                continue;
            if (k == 0)
                errno = ECONNRESET;
            return -1;
        }
        c->len += (size_t)k;
    }
    return 0;
}

/* One request, one reply: returns the reply's type ('+', '-', ':', '$', or
 * 'n' for nil) and its text (a bulk string's bytes, else the line after the
 * type byte) in a malloc'ed, NUL-terminated *out; 0 on a connection error. */
static int request(struct conn *c, char **out, int argc, const char *const *argv)
{
    char req[1024];
    size_t n = resp_encode(req, sizeof req, argc, argv);
    *out = NULL;
    if (n >= sizeof req || send_all(c->fd, req, n) != 0)
        return 0;
    char *nl;
    for (;;) {
        nl = memchr(c->buf + c->off, '\n', c->len - c->off);
        if (nl)
            break;
        if (c->len - c->off >= sizeof c->buf - 1 || conn_fill(c, c->len - c->off + 1) != 0)
            return 0;
    }
    char type = c->buf[c->off];
    size_t linelen = (size_t)(nl - (c->buf + c->off)) + 1;
    char line[64];
    size_t ll = linelen < sizeof line ? linelen : sizeof line - 1;
    memcpy(line, c->buf + c->off, ll);
    line[ll] = 0;
    if (type != '$') {
        size_t tl = linelen >= 3 ? linelen - 3 : 0;   /* without type byte and CRLF */
        *out = malloc(tl + 1);
        memcpy(*out, c->buf + c->off + 1, tl);
        (*out)[tl] = 0;
        c->off += linelen;
        return type;
    }
    long long blen = atoll(line + 1);
    c->off += linelen;
    if (blen < 0) {
        *out = calloc(1, 1);
        return 'n';
    }
    if ((size_t)blen + 2 > sizeof c->buf)
        return 0;   /* larger than anything this benchmark asks for */
    if (conn_fill(c, (size_t)blen + 2) != 0)
        return 0;
    *out = malloc((size_t)blen + 1);
    memcpy(*out, c->buf + c->off, (size_t)blen);
    (*out)[blen] = 0;
    c->off += (size_t)blen + 2;
    return '$';
}

#define REQ(c, out, ...) \
    request(c, out, sizeof((const char *[]){ __VA_ARGS__ }) / sizeof(char *), \
            (const char *const[]){ __VA_ARGS__ })

/* The value of "name:" in an INFO reply; -1 if absent. */
static double info_num(const char *info, const char *name)
{
    size_t n = strlen(name);
    for (const char *p = info; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
        if (strncmp(p, name, n) == 0 && p[n] == ':')
            return strtod(p + n + 1, NULL);
    return -1;
}

static int info_is(const char *info, const char *name, const char *value)
{
    size_t n = strlen(name), v = strlen(value);
    for (const char *p = info; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
        if (strncmp(p, name, n) == 0 && p[n] == ':')
            return strncmp(p + n + 1, value, v) == 0 && (p[n + 1 + v] == '\r' ||
                                                        p[n + 1 + v] == '\n' ||
                                                        p[n + 1 + v] == 0);
    return 0;
}

/* ---- load: SETs at a fixed rate ------------------------------------------ */

struct load_result {
    uint64_t sent, replies, errors;
    uint64_t ns;
    uint64_t max_backlog;   /* most requests without a reply at once */
};

static volatile sig_atomic_t g_stop;
static void on_stop(int sig)
{
    g_stop = 1;
}

/* Counts the replies in the k bytes received at buf: one line each ("+OK",
 * or an error, which starts with '-').  *at_line_start carries over from
 * one call to the next. */
static void count_replies(const char *buf, ssize_t k, int *at_line_start,
                          struct load_result *res)
{
    for (ssize_t i = 0; i < k; i++) {
        if (*at_line_start && buf[i] == '-')
            res->errors++;
        *at_line_start = buf[i] == '\n';
        res->replies += *at_line_start;
    }
}

/* SET key:R value (size bytes) for random R < keys, rate per second, open
 * loop: requests are sent on schedule whether or not the replies keep up
 * (up to a backlog of 100000).  Runs until SIGTERM/SIGINT or seconds. */
static int load_run(unsigned port, double rate, uint64_t keys, size_t size, double seconds,
                    struct load_result *res)
{
    struct conn *c = malloc(sizeof *c);
    if (!c || conn_open(c, port) != 0)
        return -1;
    char *val = malloc(size + 1);
    size_t cap = 1 << 20, len = 0;
    char *out = malloc(cap);
    if (!val || !out)
        return -1;
    memset(val, 'v', size);
    val[size] = 0;
    *res = (struct load_result){ 0 };
    int at_line_start = 1;
    uint64_t t0 = now_ns();
    while (!g_stop && (seconds <= 0 || now_ns() - t0 < (uint64_t)(seconds * 1e9))) {
        uint64_t due = (uint64_t)((now_ns() - t0) * rate / 1e9);
        len = 0;
        while (res->sent < due && res->sent - res->replies < 100000 && len + size + 128 < cap) {
            char key[32];
            snprintf(key, sizeof key, "key:%llu", (unsigned long long)(wyrand() % keys));
            memcpy(val, key, strlen(key) < size ? strlen(key) : size); /* differ each time */
            len += resp_encode(out + len, cap - len, 3, (const char *const[]){ "SET", key, val });
            res->sent++;
        }
        if (len && send_all(c->fd, out, len) != 0)
            return -1;
        /* count the replies so far: one line each ("+OK", or an error) */
        for (;;) {
            ssize_t k = recv(c->fd, c->buf, sizeof c->buf, MSG_DONTWAIT);
            if (k <= 0) {
                if (k == 0 || (errno != EAGAIN && errno != EINTR))
                    return -1;
                break;
            }
            count_replies(c->buf, k, &at_line_start, res);
        }
        if (res->sent - res->replies > res->max_backlog)
            res->max_backlog = res->sent - res->replies;
        sleep_ns(200000);
    }
    res->ns = now_ns() - t0;
    /* collect the replies still in flight, for up to 5 s */
    struct timeval tv = { .tv_sec = 5 };
    setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    while (res->replies < res->sent) {
        ssize_t k = recv(c->fd, c->buf, sizeof c->buf, 0);
        if (k <= 0)
            break;
        count_replies(c->buf, k, &at_line_start, res);
    }
    conn_close(c);
    free(c);
    free(val);
    free(out);
    return 0;
}

/* A load generator in a child process; its result comes back on a pipe. */
struct loader {
    pid_t pid;
    int   fd;
};

static void loader_start(struct loader *l, unsigned port, double rate, uint64_t keys,
                         size_t size)
{
    int p[2];
    if (pipe(p) != 0)
        die_errno("pipe");
    fflush(NULL);
    l->pid = fork();
    if (l->pid < 0)
        die_errno("fork");
    if (l->pid == 0) {
        close(p[0]);
        struct sigaction sa = { .sa_handler = on_stop };
        sigaction(SIGTERM, &sa, NULL);
        struct load_result res;
        int rc = load_run(port, rate, keys, size, 0, &res);
        if (rc == 0 && write(p[1], &res, sizeof res) != sizeof res)
            rc = -1;
        _exit(rc == 0 ? 0 : 1);
    }
    close(p[1]);
    l->fd = p[0];
}

static int loader_stop(struct loader *l, struct load_result *res)
{
    kill(l->pid, SIGTERM);
    ssize_t n = read(l->fd, res, sizeof *res);
    close(l->fd);
    int status;
    waitpid(l->pid, &status, 0);
    return n == (ssize_t)sizeof *res && WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -1;
}

static int bench_load(unsigned port, double rate, uint64_t keys, size_t size, double seconds)
{
    struct sigaction sa = { .sa_handler = on_stop };
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    struct load_result r;
    if (load_run(port, rate, keys, size, seconds, &r) != 0)
        die_errno("load");
    printf("sent %llu SETs in %.2f s (%.0f/s), %llu replies, %llu errors, "
           "at most %llu waiting for a reply\n",
           (unsigned long long)r.sent, r.ns / 1e9, r.sent / (r.ns / 1e9),
           (unsigned long long)r.replies, (unsigned long long)r.errors,
           (unsigned long long)r.max_backlog);
    return r.errors || r.replies != r.sent;
}

/* ---- save: kv_server SAVE against Redis BGSAVE --------------------------- */

enum { S_FORK, S_RTT, S_JOB, S_SRVJOB, S_COW, S_RATE, S_HUGE, S_NFIELDS };
enum { SRV_REDIS, SRV_KV, SRV_KVH, SRV_MAX };
static const char *const srv_name[] = { "redis", "kv_server", "kv_server -H" };

struct server {
    unsigned port;
    pid_t    pid;
};

static char *info(struct conn *c, int which)
{
    char *s;
    int t = REQ(c, &s, "INFO");   /* Redis: persistence and stats are default sections */
    if (t != '$')
        die_msg("%s: INFO failed: %s", srv_name[which], s ? s : strerror(errno));
    return s;
}

/* MiB of pid's anonymous memory mapped by huge (PMD) entries; -1 if unknown. */
static double anon_huge_mib_of(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/smaps_rollup", (int)pid);
    return anon_huge_mib_at(path);
}

/* One snapshot; fills v[S_*] (negative where the server says nothing). */
static void save_once(struct conn *c, int which, double *v)
{
    char *s;
    uint64_t t0 = now_ns();
    int t = which == SRV_REDIS ? REQ(c, &s, "BGSAVE") : REQ(c, &s, "SAVE");
    uint64_t t1 = now_ns();
    if (t != '+')
        die_msg("%s: %s failed: %s", srv_name[which], which == SRV_REDIS ? "BGSAVE" : "SAVE",
                s ? s : strerror(errno));
    free(s);
    const char *busy = which == SRV_REDIS ? "rdb_bgsave_in_progress" : "snapshot_in_progress";
    for (;;) {
        s = info(c, which);
        if (info_num(s, busy) == 0)
            break;
        free(s);
        sleep_ns(2000000);
    }
    uint64_t t2 = now_ns();
    v[S_RTT] = (double)(t1 - t0);
    v[S_JOB] = (double)(t2 - t0);
    if (which == SRV_REDIS) {
        if (!info_is(s, "rdb_last_bgsave_status", "ok"))
            die_msg("redis: BGSAVE failed (rdb_last_bgsave_status is not ok)");
        v[S_FORK] = info_num(s, "latest_fork_usec") * 1e3;
        v[S_SRVJOB] = -1;   /* rdb_last_bgsave_time_sec: whole seconds */
        v[S_COW] = info_num(s, "rdb_last_cow_size");
    } else {
        if (!info_is(s, "last_status", "ok"))
            die_msg("%s: SAVE failed: %s", srv_name[which], s);
        v[S_FORK] = info_num(s, "last_fork_ns");
        v[S_SRVJOB] = info_num(s, "last_job_ns");
        v[S_COW] = info_num(s, "cow_pages") * PAGE;
    }
    free(s);
}

static void print_sizes(struct conn *c, const struct server *srv, int nsrv, uint64_t keys)
{
    char *r;
    printf("| server | keys | RSS MiB | huge-mapped MiB | server's own count MiB |\n"
           "|---|--:|--:|--:|--:|\n");
    if (REQ(&c[SRV_REDIS], &r, "INFO", "memory") != '$')
        die_msg("redis: INFO memory failed");
    printf("| redis | %llu | %.0f | %.0f | %.0f (used_memory) |\n", (unsigned long long)keys,
           rss_kib(srv[SRV_REDIS].pid) / 1024.0, anon_huge_mib_of(srv[SRV_REDIS].pid),
           info_num(r, "used_memory") / 1048576.0);
    free(r);
    for (int w = SRV_KV; w < nsrv; w++) {
        char *k = info(&c[w], w);
        printf("| %s | %llu | %.0f | %.0f | %.0f (heap_size; %.0f allocated) |\n", srv_name[w],
               (unsigned long long)keys, rss_kib(srv[w].pid) / 1024.0,
               anon_huge_mib_of(srv[w].pid), info_num(k, "heap_size") / 1048576.0,
               info_num(k, "heap_allocated") / 1048576.0);
        free(k);
    }
    printf("\n");
}

/* nsrv: 2 (redis, kv_server) or 3 (and kv_server -H). */
static int bench_save(const struct server *srv, int nsrv, uint64_t keys, size_t size, int reps,
                      double rate)
{
    struct conn *c = calloc((size_t)nsrv, sizeof *c);
    if (!c)
        die_errno("calloc");
    for (int w = 0; w < nsrv; w++) {
        if (conn_open(&c[w], srv[w].port) != 0)
            die_msg("%s: cannot connect to port %u: %s", srv_name[w], srv[w].port,
                    strerror(errno));
        char *s;
        if (REQ(&c[w], &s, "DBSIZE") != ':' || strtoull(s, NULL, 10) != keys)
            die_msg("%s: DBSIZE is %s, not %llu", srv_name[w], s ? s : "?",
                    (unsigned long long)keys);
        free(s);
        if (w == SRV_KVH) {
            if (REQ(&c[w], &s, "INFO") != '$' || info_num(s, "hugepages") != 1)
                die_msg("%s: INFO does not say hugepages:1 (started without -H?)", srv_name[w]);
            free(s);
        }
    }
    printf("### The data: %llu keys of %zu-byte values in each server\n\n",
           (unsigned long long)keys, size);
    print_sizes(c, srv, nsrv, keys);

    static double m[SRV_MAX][2][S_NFIELDS][MAX_REPS];   /* [server][load][field][rep] */
    for (int rep = 0; rep < reps; rep++)
        for (int k = 0; k < 2 * nsrv; k++) {
            int which = (k + rep) % nsrv, load = k / nsrv;
            double v[S_NFIELDS];
            struct loader l = { -1, -1 };
            struct load_result lr = { 0 };
            if (load) {
                loader_start(&l, srv[which].port, rate, keys, size);
                sleep_ns(300000000);   /* let it reach its pace */
            }
            v[S_HUGE] = anon_huge_mib_of(srv[which].pid);
            save_once(&c[which], which, v);
            if (load && loader_stop(&l, &lr) != 0)
                die_msg("%s: the load generator failed", srv_name[which]);
            if (load && lr.errors)
                die_msg("%s: %llu SETs failed under load", srv_name[which],
                        (unsigned long long)lr.errors);
            v[S_RATE] = load ? lr.replies / (lr.ns / 1e9) : -1;
            for (int f = 0; f < S_NFIELDS; f++)
                m[which][load][f][rep] = v[f];
            raw("save\t%s\t%s\t%d\tfork_ns=%.0f\trtt_ns=%.0f\tjob_ns=%.0f\tserver_job_ns=%.0f\t"
                "cow_bytes=%.0f\tsets_per_s=%.0f\thuge_mib=%.0f",
                srv_name[which], load ? "load" : "idle", rep, v[S_FORK], v[S_RTT], v[S_JOB],
                v[S_SRVJOB], v[S_COW], v[S_RATE], v[S_HUGE]);
            fprintf(stderr, "bench_snapshot: save: rep %d %s %s: pause %.2f ms, job %.0f ms, "
                            "COW %.1f MiB, huge-mapped before %.0f MiB\n", rep, srv_name[which],
                    load ? "load" : "idle", v[S_FORK] / 1e6, v[S_JOB] / 1e6,
                    v[S_COW] / 1048576.0, v[S_HUGE]);
        }

    printf("### Background snapshot: kv_server SAVE (mmh_snapshot) against Redis BGSAVE\n\n");
    printf("median of %d repetitions, servers in rotating order, each idle then under load; "
           "load: %.0f SET/s of %zu-byte values to random existing keys, open loop, from one "
           "connection; job: the command to INFO saying done (polled every 2 ms), the same for "
           "all; huge-mapped: the server's AnonHugePages (smaps_rollup) just before the "
           "command%s\n\n",
           reps, rate, size,
           nsrv > SRV_KVH ? "; kv_server -H: the same server with its heap in huge pages "
                            "(MMH_HUGEPAGES)" : "");
    printf("| server | load | pause ms (server) | min-max ms | command round trip ms | job ms "
           "| server's job ms | COW MiB | SET/s served | huge-mapped MiB |\n");
    printf("|---|---|--:|--:|--:|--:|--:|--:|--:|--:|\n");
    for (int load = 0; load < 2; load++)
        for (int w = 0; w < nsrv; w++) {
            double (*f)[MAX_REPS] = m[w][load];
            double lo, hi, sj = median(f[S_SRVJOB], (size_t)reps);
            minmax(f[S_FORK], (size_t)reps, &lo, &hi);
            char sjs[32] = "-", rs[32] = "-";
            if (sj >= 0)
                snprintf(sjs, sizeof sjs, "%.0f", sj / 1e6);
            if (load)
                snprintf(rs, sizeof rs, "%.0f", median(f[S_RATE], (size_t)reps));
            printf("| %s | %s | %.2f | %.2f-%.2f | %.2f | %.0f | %s | %.1f | %s | %.0f |\n",
                   srv_name[w], load ? "yes" : "no", median(f[S_FORK], (size_t)reps) / 1e6,
                   lo / 1e6, hi / 1e6, median(f[S_RTT], (size_t)reps) / 1e6,
                   median(f[S_JOB], (size_t)reps) / 1e6, sjs,
                   median(f[S_COW], (size_t)reps) / 1048576.0, rs,
                   median(f[S_HUGE], (size_t)reps));
        }
    printf("\nratios (median over repetitions of the same-repetition ratio; > 1: the second "
           "better)\n\n");
    printf("| load | ratio | pause | job | COW bytes |\n|---|---|--:|--:|--:|\n");
    static const int pairs[][2] = { { SRV_REDIS, SRV_KV }, { SRV_REDIS, SRV_KVH },
                                    { SRV_KV, SRV_KVH } };
    for (int load = 0; load < 2; load++)
        for (int p = 0; p < (nsrv > SRV_KVH ? 3 : 1); p++) {
            int a = pairs[p][0], b = pairs[p][1];
            double cow = median_ratio(m[a][load][S_COW], m[b][load][S_COW], (size_t)reps);
            char cows[32] = "-";
            if (cow >= 0)
                snprintf(cows, sizeof cows, "%.2f", cow);
            printf("| %s | %s / %s | %.2f | %.2f | %s |\n", load ? "yes" : "no", srv_name[a],
                   srv_name[b],
                   median_ratio(m[a][load][S_FORK], m[b][load][S_FORK], (size_t)reps),
                   median_ratio(m[a][load][S_JOB], m[b][load][S_JOB], (size_t)reps), cows);
        }
    printf("\n");
    for (int w = SRV_KV; w < nsrv; w++) {
        double all[2 * MAX_REPS];
        memcpy(all, m[w][0][S_FORK], (size_t)reps * sizeof(double));
        memcpy(all + reps, m[w][1][S_FORK], (size_t)reps * sizeof(double));
        double pause = median(all, 2 * (size_t)reps) / 1e6;
        char *k = info(&c[w], w);
        printf("**pause target, %s** (1 GiB heap; %.0f MiB, last_fork_ns, median of all %d "
               "snapshots): < 15 ms: %.2f ms => %s (first snapshot: %.2f ms)\n\n", srv_name[w],
               info_num(k, "heap_size") / 1048576.0, 2 * reps, pause,
               pause < 15 ? "MET" : "NOT MET", m[w][0][S_FORK][0] / 1e6);
        free(k);
    }
    printf("After the runs:\n\n");
    print_sizes(c, srv, nsrv, keys);
    for (int w = 0; w < nsrv; w++)
        conn_close(&c[w]);
    free(c);
    return 0;
}

/* ---- restart: exec to the first answered GET ------------------------------ */

/* Splits a command line at spaces (no quoting) into a NULL-terminated argv. */
static char **split_cmd(const char *cmd)
{
    char *s = strdup(cmd);
    size_t cap = 8, n = 0;
    char **v = malloc(cap * sizeof *v);
    if (!s || !v)
        die_errno("malloc");
    for (char *save, *t = strtok_r(s, " ", &save); t; t = strtok_r(NULL, " ", &save)) {
        if (n + 2 > cap && !(v = realloc(v, (cap *= 2) * sizeof *v)))
            die_errno("realloc");
        v[n++] = t;
    }
    v[n] = NULL;
    if (n == 0)
        die_msg("empty command line");
    return v;
}

static int drop_caches(void)
{
    sync();
    int fd = open("/proc/sys/vm/drop_caches", O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    int ok = write(fd, "3\n", 2) == 2;
    close(fd);
    return ok ? 0 : -1;
}

enum { R_FIRST, R_RSS, R_READY, R_NFIELDS };

/* Starts argv, polls GET key:0 until it gets a value; returns ns from the
 * fork, the server's RSS then (KiB) and, for kv_server, its own ready_ns
 * (main() to the heap mapped).  The server is stopped after. */
static double restart_once(char **argv, unsigned port, int which, uint64_t keys, double *rss,
                           double *ready)
{
    struct conn *c = malloc(sizeof *c);
    if (!c)
        die_errno("malloc");
    fflush(NULL);
    uint64_t t0 = now_ns();
    pid_t pid = fork();
    if (pid < 0)
        die_errno("fork");
    if (pid == 0) {
        int null = open("/dev/null", O_WRONLY);
        if (null >= 0) {   /* the servers' chatter would break the tables */
            dup2(null, 1);
            close(null);
        }
        execvp(argv[0], argv);
        fprintf(stderr, "bench_snapshot: exec %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    uint64_t t_first = 0, timeout = 600 * 1000000000ull;
    c->fd = -1;
    while (!t_first) {
        if (now_ns() - t0 > timeout)
            die_msg("%s: no answer to GET in 600 s", srv_name[which]);
        int status;
        if (waitpid(pid, &status, WNOHANG) == pid)
            die_msg("%s exited before answering (status %d): %s", srv_name[which], status,
                    argv[0]);
        if (c->fd < 0 && conn_open(c, port) != 0) {
            c->fd = -1;
            sleep_ns(100000);
            continue;
        }
        char *s;
        int t = REQ(c, &s, "GET", "key:0");
        if (t == '$')
            t_first = now_ns();
        else if (t == 0)
            conn_close(c);   /* went away: connect again */
        else if (t == '-' && strncmp(s, "LOADING", 7) == 0)
            sleep_ns(100000);
        else
            die_msg("%s: GET key:0 answered %c%s", srv_name[which], t, s ? s : "");
        free(s);
    }
    *rss = (double)rss_kib(pid);
    char *s;
    *ready = -1;
    if (which == SRV_KV) {   /* its own view: main() to the heap mapped */
        if (REQ(c, &s, "INFO") != '$')
            die_msg("kv_server: INFO failed after the restart");
        *ready = info_num(s, "ready_ns");
        free(s);
    }
    if (REQ(c, &s, "DBSIZE") != ':' || strtoull(s, NULL, 10) != keys)
        die_msg("%s: after the restart DBSIZE is %s, not %llu", srv_name[which], s ? s : "?",
                (unsigned long long)keys);
    free(s);
    conn_close(c);
    free(c);
    kill(pid, SIGTERM);
    int status;
    waitpid(pid, &status, 0);
    return (double)(t_first - t0);
}

static int bench_restart(char **cmd[2], const unsigned port[2], uint64_t keys, int reps,
                         int cold)
{
    static double m[2][2][R_NFIELDS][MAX_REPS];   /* [cache][server][field][rep] */
    int ncache = 1;
    if (cold) {
        if (drop_caches() != 0) {
            fprintf(stderr, "bench_snapshot: --cold: cannot drop the page cache (%s); "
                            "hot cache only\n", strerror(errno));
        } else
            ncache = 2;
    }
    for (int cache = 0; cache < ncache; cache++)
        for (int rep = 0; rep < reps; rep++)
            for (int k = 0; k < 2; k++) {
                int which = (k + rep) % 2;
                if (cache == 1)
                    drop_caches();
                else {
                    /* warm the page cache and the binary: an untimed start */
                    if (rep == 0 && k == 0)
                        for (int w = 0; w < 2; w++) {
                            double r, q;
                            restart_once(cmd[w], port[w], w, keys, &r, &q);
                        }
                }
                double rss, ready;
                double ns = restart_once(cmd[which], port[which], which, keys, &rss, &ready);
                m[cache][which][R_FIRST][rep] = ns;
                m[cache][which][R_RSS][rep] = rss;
                m[cache][which][R_READY][rep] = ready;
                raw("restart\t%s\t%s\t%d\tfirst_get_ns=%.0f\trss_kib=%.0f\tready_ns=%.0f",
                    srv_name[which], cache ? "cold" : "hot", rep, ns, rss, ready);
                fprintf(stderr, "bench_snapshot: restart: %s rep %d %s: first GET after "
                                "%.1f ms\n", cache ? "cold" : "hot", rep, srv_name[which],
                        ns / 1e6);
            }

    printf("### Restart: exec to the first answered GET, %llu keys\n\n",
           (unsigned long long)keys);
    printf("median of %d repetitions, servers alternating; GET key:0 every 100 us from just "
           "before the fork (Redis answers -LOADING until its RDB is loaded); DBSIZE checked "
           "after; hot: the files in the page cache (after an untimed start of each); cold: "
           "page cache dropped before each start%s\n\n", reps,
           ncache == 1 ? " (not run)" : "");
    printf("| page cache | server | first GET ms | min-max ms | RSS then MiB "
           "| server's own: main() to data ready ms |\n");
    printf("|---|---|--:|--:|--:|--:|\n");
    for (int cache = 0; cache < ncache; cache++)
        for (int w = 0; w < 2; w++) {
            double lo, hi;
            minmax(m[cache][w][R_FIRST], (size_t)reps, &lo, &hi);
            double ready = median(m[cache][w][R_READY], (size_t)reps);
            char rs[32] = "-";
            if (ready >= 0)
                snprintf(rs, sizeof rs, "%.2f", ready / 1e6);
            printf("| %s | %s | %.2f | %.2f-%.2f | %.1f | %s |\n", cache ? "cold" : "hot",
                   srv_name[w], median(m[cache][w][R_FIRST], (size_t)reps) / 1e6, lo / 1e6,
                   hi / 1e6, median(m[cache][w][R_RSS], (size_t)reps) / 1024, rs);
        }
    printf("\n");
    for (int cache = 0; cache < ncache; cache++) {
        double r = median_ratio(m[cache][SRV_REDIS][R_FIRST], m[cache][SRV_KV][R_FIRST],
                                (size_t)reps);
        printf("**restart target** (%s cache): kv_server at least 20x faster than Redis to "
               "the first GET: %.0fx => %s\n\n", cache ? "cold" : "hot", r,
               r >= 20 ? "MET" : "NOT MET");
    }
    return 0;
}

/* ---- main ---------------------------------------------------------------- */

static void usage(FILE *f)
{
    fprintf(f,
            "usage: bench_snapshot heap|save|restart|load [options]\n"
            "  --raw=FILE          append every measurement to FILE\n"
            "  --reps=N            repetitions (default 5)\n"
            "  --rate=N            writes (heap) or SETs (save, load) a second under load\n"
            "                      (default 20000)\n"
            " heap:\n"
            "  --dir=DIR           where the image goes (default $TMPDIR or /tmp)\n"
            "  --heap-mib=N        heap size, MiB (default 1024)\n"
            "  --no-verify         do not check the images\n"
            "  --kinds=LIST        heaps to measure, in turn: default, huge (MMH_HUGEPAGES)\n"
            "                      or both, comma separated (default: default,huge)\n"
            " save, restart, load:\n"
            "  --keys=N            keys in the servers: key:0 .. key:N-1 (required)\n"
            "  --size=N            value bytes (default 100)\n"
            " save:\n"
            "  --redis=PORT:PID    the running Redis server\n"
            "  --kv=PORT:PID       the running kv_server\n"
            "  --kv-huge=PORT:PID  optional: a kv_server started with -H (MMH_HUGEPAGES),\n"
            "                      holding the same data\n"
            " restart:\n"
            "  --redis-port=PORT --redis-cmd='redis-server ...'\n"
            "  --kv-port=PORT    --kv-cmd='kv_server ...'\n"
            "                      command lines, split at spaces (no quoting)\n"
            "  --cold              also with the page cache dropped before each start\n"
            " load:\n"
            "  --port=PORT         the server\n"
            "  --seconds=S         how long (default: until SIGINT or SIGTERM)\n");
}

static int parse_server(const char *v, struct server *s)
{
    unsigned port;
    int pid;
    if (sscanf(v, "%u:%d", &port, &pid) != 2 || port == 0 || port > 65535 || pid <= 0)
        return -1;
    s->port = port;
    s->pid = pid;
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 1;
    }
    const char *mode = argv[1], *raw_path = NULL, *dir;
    const char *cmd_s[2] = { NULL, NULL };
    size_t heap_mib = 1024, size = 100;
    uint64_t keys = 0;
    int reps = 5, verify = 1, cold = 0;
    unsigned kinds = 3;
    double rate = 20000, seconds = 0;
    unsigned port = 0, rport[2] = { 0, 0 };
    struct server srv[SRV_MAX] = { { 0 } };
    dir = getenv("TMPDIR") && *getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i], *v = strchr(a, '=');
        v = v ? v + 1 : "";
#define OPT(name) (strncmp(a, name "=", sizeof name) == 0)
        int bad = 0;
        if (OPT("--raw"))
            raw_path = v;
        else if (OPT("--reps"))
            reps = atoi(v);
        else if (OPT("--rate"))
            rate = atof(v);
        else if (OPT("--dir"))
            dir = v;
        else if (OPT("--heap-mib"))
            heap_mib = strtoull(v, NULL, 10);
        else if (strcmp(a, "--no-verify") == 0)
            verify = 0;
        else if (OPT("--kinds")) {
            kinds = 0;
            char *list = strdup(v), *save;
            for (char *t = strtok_r(list, ",", &save); t; t = strtok_r(NULL, ",", &save))
                if (strcmp(t, "default") == 0)
                    kinds |= 1;
                else if (strcmp(t, "huge") == 0)
                    kinds |= 2;
                else {
                    fprintf(stderr, "bench_snapshot: --kinds: %s is not default or huge\n", t);
                    return 1;
                }
            free(list);
            if (!kinds) {
                fprintf(stderr, "bench_snapshot: --kinds: empty\n");
                return 1;
            }
        }
        else if (OPT("--keys"))
            keys = strtoull(v, NULL, 10);
        else if (OPT("--size"))
            size = strtoull(v, NULL, 10);
        else if (OPT("--redis"))
            bad = parse_server(v, &srv[SRV_REDIS]);
        else if (OPT("--kv"))
            bad = parse_server(v, &srv[SRV_KV]);
        else if (OPT("--kv-huge"))
            bad = parse_server(v, &srv[SRV_KVH]);
        else if (OPT("--redis-port"))
            rport[SRV_REDIS] = (unsigned)atoi(v);
        else if (OPT("--kv-port"))
            rport[SRV_KV] = (unsigned)atoi(v);
        else if (OPT("--redis-cmd"))
            cmd_s[SRV_REDIS] = v;
        else if (OPT("--kv-cmd"))
            cmd_s[SRV_KV] = v;
        else if (strcmp(a, "--cold") == 0)
            cold = 1;
        else if (OPT("--port"))
            port = (unsigned)atoi(v);
        else if (OPT("--seconds"))
            seconds = atof(v);
        else
            return help_or_unknown(a, usage, "bench_snapshot: unknown option %s\n");
        if (bad) {
            fprintf(stderr, "bench_snapshot: bad value in %s (want PORT:PID)\n", a);
            return 1;
        }
#undef OPT
    }
    if (reps < 1 || reps > MAX_REPS || rate <= 0 || heap_mib < 16 || size < 16 ||
        size > 60000) {
        fprintf(stderr, "bench_snapshot: option out of range\n");
        return 1;
    }
    if (raw_path && !(g_raw = fopen(raw_path, "a")))
        die_errno(raw_path);
    int rc;
    if (strcmp(mode, "heap") == 0)
        rc = bench_heap(dir, heap_mib, reps, rate, verify, kinds);
    else if (strcmp(mode, "save") == 0) {
        if (!keys || !srv[SRV_REDIS].port || !srv[SRV_KV].port)
            die_msg("save needs --keys, --redis=PORT:PID and --kv=PORT:PID");
        rc = bench_save(srv, srv[SRV_KVH].port ? 3 : 2, keys, size, reps, rate);
    } else if (strcmp(mode, "restart") == 0) {
        if (!keys || !rport[0] || !rport[1] || !cmd_s[0] || !cmd_s[1])
            die_msg("restart needs --keys, --redis-port, --redis-cmd, --kv-port, --kv-cmd");
        char **cmd[2] = { split_cmd(cmd_s[0]), split_cmd(cmd_s[1]) };
        rc = bench_restart(cmd, rport, keys, reps, cold);
    } else if (strcmp(mode, "load") == 0) {
        if (!keys || !port)
            die_msg("load needs --keys and --port");
        rc = bench_load(port, rate, keys, size, seconds);
    } else {
        usage(stderr);
        rc = 1;
    }
    if (g_raw)
        fclose(g_raw);
    return rc;
}
