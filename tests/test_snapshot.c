/* test_snapshot: background jobs (mmh_snapshot, mmh_commit_bg, mmh_wait)
 * and volatile heaps started from an image (MMH_VOLATILE).
 *
 *  - an image holds exactly the heap at the call while 4 threads keep
 *    writing, allocating and freeing during the job;
 *  - a background commit followed by more writes and a crash leaves exactly
 *    the state at the call; later writes reach the file by the next commit;
 *    SIGKILL of the process and its job mid-commit leaves one whole version;
 *    a job killed after its log commit is durable, then the program killed in
 *    its next commit, leaves one whole version too;
 *  - a failed job (bad path, full disk) says why, naming the file, and loses
 *    nothing: the next commit writes its pages; an old image stays;
 *  - mmh_wait polling (1 while running, ECHILD once reaped), one job per
 *    heap (a second job, mmh_commit and mmh_close wait for the running one)
 *    and independent jobs of two heaps; the job is held back
 *    deterministically with SIGSTOP;
 *  - repeated snapshots replace one path atomically, also when the process
 *    and its job are killed mid-snapshot;
 *  - refusals (shared heap, the heap's own file, bg commit of an anonymous
 *    or read-only heap) and the job statistics (pause, duration, bytes,
 *    copy-on-write pages);
 *  - MMH_VOLATILE round trip: never writes the image, grows past it, saves
 *    back over the same path;
 *  - a snapshot of a private file heap holds its uncommitted state and does
 *    not disturb the next commit;
 *  - fork() by the program: from a multithreaded program using heaps, and
 *    while a job runs; a program that reaps its children itself.
 *
 * Images are checked in a fresh process (this program exec'd with --check),
 * since the heap that wrote an image still occupies its base address here.
 * pwrite/pwritev are interposed to kill a job or the program mid-write.
 *
 * Runtime: about 6 s at MMH_TEST_SCALE=1 on 2 cores (heaps of a few tens
 * of MiB, so that jobs take tens of ms and overlap the writers).
 */
#include "testutil.h"

#include <dirent.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/statvfs.h>
#include <sys/uio.h>
#include <dlfcn.h>
#include <time.h>

/* ------------------------------------------------------ fault injection
 *
 * pwrite, pwritev and fdatasync are interposed here, in the executable:
 * the library's calls resolve to these, which kill the calling process on
 * demand (a job child right after its commit is durable in the log, or the
 * program in the middle of writing its log) and otherwise call libc's. */
static struct {
    pid_t app;            /* the program; any other pid is one of its jobs */
    int   job_after_sync; /* a job dies right after it syncs a .wal        */
    int   app_wal;        /* the program dies at its next write to a .wal  */
} trap;

static ssize_t (*real_pwrite)(int, const void *, size_t, off_t);
static ssize_t (*real_pwritev)(int, const struct iovec *, int, off_t);
static int (*real_fdatasync)(int);

static void resolve_real(void)
{
    if (!real_pwrite)
        real_pwrite = (ssize_t (*)(int, const void *, size_t, off_t))dlsym(RTLD_NEXT, "pwrite");
    if (!real_pwritev)
        real_pwritev = (ssize_t (*)(int, const struct iovec *, int, off_t))dlsym(RTLD_NEXT,
                                                                                   "pwritev");
    if (!real_fdatasync)
        real_fdatasync = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
}

static int fd_is(int fd, const char *suffix)
{
    char link[64], target[4096];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, target, sizeof target - 1);
    if (n <= 0)
        return 0;
    target[n] = 0;
    size_t sl = strlen(suffix);
    return (size_t)n >= sl && strcmp(target + n - sl, suffix) == 0;
}

static void app_wal_trap(int fd)
{
    if (trap.app_wal && getpid() == trap.app && fd_is(fd, ".wal"))
        raise(SIGKILL);
}

ssize_t pwrite(int fd, const void *buf, size_t len, off_t off)
{
    resolve_real();
    app_wal_trap(fd);
    return real_pwrite(fd, buf, len, off);
}

ssize_t pwritev(int fd, const struct iovec *iov, int iovcnt, off_t off)
{
    resolve_real();
    app_wal_trap(fd);
    return real_pwritev(fd, iov, iovcnt, off);
}

int fdatasync(int fd)
{
    resolve_real();
    int rc = real_fdatasync(fd);
    if (trap.job_after_sync && getpid() != trap.app && rc == 0 && fd_is(fd, ".wal"))
        raise(SIGKILL);
    return rc;
}

#define ST_MAGIC  0x534e415053544154ull   /* root of a test state */
#define OBJ_MAGIC 0x534e41504f424a31ull
#define EXP_MAGIC 0x534e41504558504cull
#define MAXOBJ    256

/* ------------------------------------------------------------- the state
 *
 * A root with an array of objects (raw pointers).  Each object carries its
 * id, a sequence number and a payload whose pattern depends on (id, seq),
 * so a reader can tell exactly which write of each object it sees.  An
 * optional big block filled with one byte value makes the heap grow.
 */
struct obj {
    uint64_t      magic;
    struct obj   *self;
    uint64_t      id;
    uint64_t      seq;
    uint64_t      len;
    unsigned char data[];
};

struct sroot {
    uint64_t       magic;
    uint64_t       version;
    uint64_t       nobj;
    struct obj   **objs;
    unsigned char *big;
    uint64_t       big_len;
    uint64_t       big_byte;
    uint64_t       lmin, lmax;   /* object sizes of a versioned state */
};

/* What a heap must hold, exactly. */
struct expect {
    uint64_t magic;
    uint64_t version;
    uint64_t nobj;
    uint64_t allocations;        /* live blocks; 0: not checked */
    uint64_t big_len;
    uint64_t big_byte;
    uint64_t seq[MAXOBJ];
    uint64_t len[MAXOBJ];
};

static uint64_t obj_seed(uint64_t id, uint64_t seq)
{
    return (id << 40) ^ (seq * 0x9E3779B97F4A7C15ull) ^ 0x5eed;
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void sleep_ms(double ms)
{
    struct timespec d = { (time_t)(ms / 1000), (long)(((long long)(ms * 1e6)) % 1000000000LL) };
    while (nanosleep(&d, &d) != 0 && errno == EINTR)
        ;
}

static struct obj *obj_new(mmh_heap *h, uint64_t id, uint64_t seq, size_t len)
{
    struct obj *o = mmh_alloc(h, sizeof *o + len);
    if (!o)
        return NULL;
    o->magic = OBJ_MAGIC;
    o->self = o;
    o->id = id;
    o->seq = seq;
    o->len = len;
    tu_fill(o->data, len, obj_seed(id, seq));
    return o;
}

static void obj_rewrite(struct obj *o, uint64_t seq)
{
    o->seq = seq;
    tu_fill(o->data, o->len, obj_seed(o->id, seq));
}

/* Replaces object i by a new one of len bytes (alloc, then free the old). */
static int obj_replace(mmh_heap *h, struct sroot *s, uint64_t i, uint64_t seq, size_t len)
{
    struct obj *n = obj_new(h, i, seq, len);
    CK(n != NULL);
    struct obj *o = s->objs[i];
    s->objs[i] = n;
    mmh_free(h, o);
    return 0;
}

/* Random sizes in [lmin, lmax]; version v; every object seq v. */
static struct sroot *state_build(mmh_heap *h, uint64_t n, size_t lmin, size_t lmax,
                                 uint64_t seed, uint64_t v)
{
    tu_rng rng = { seed };
    struct sroot *s = mmh_calloc(h, 1, sizeof *s);
    if (!s)
        return NULL;
    *s = (struct sroot){ .magic = ST_MAGIC, .version = v, .nobj = n, .lmin = lmin, .lmax = lmax };
    s->objs = mmh_calloc(h, n, sizeof *s->objs);
    if (!s->objs)
        return NULL;
    for (uint64_t i = 0; i < n; i++) {
        s->objs[i] = obj_new(h, i, v, tu_rand_range(&rng, lmin, lmax));
        if (!s->objs[i])
            return NULL;
    }
    if (mmh_set_root(h, s) != 0)
        return NULL;
    return s;
}

/* Versioned states: a pure function of (n, lmin, lmax, v), reached by
 * consecutive versions.  At version v every object has seq v; the objects
 * with (i + v) % 4 == 0 are replaced by new ones of a new size. */
static int64_t vrepl(uint64_t i, uint64_t v) { return (int64_t)v - (int64_t)((i + v) % 4); }

static size_t vlen(uint64_t i, int64_t r, size_t lmin, size_t lmax)
{
    return lmin + (size_t)(tu_mix(i * 0x10001ull + (uint64_t)r * 0x9E37ull + 7) % (lmax - lmin + 1));
}

static struct sroot *vstate_build(mmh_heap *h, uint64_t n, size_t lmin, size_t lmax, uint64_t v)
{
    struct sroot *s = state_build(h, n, lmin, lmin, 1, v);
    if (!s)
        return NULL;
    s->lmax = lmax;
    for (uint64_t i = 0; i < n; i++)
        if (obj_replace(h, s, i, v, vlen(i, vrepl(i, v), lmin, lmax)) != 0)
            return NULL;
    return s;
}

static int vstate_set(mmh_heap *h, struct sroot *s, uint64_t v)
{
    CK(v == s->version + 1);
    for (uint64_t i = 0; i < s->nobj; i++) {
        if ((i + v) % 4 == 0)
            CK(obj_replace(h, s, i, v, vlen(i, v, s->lmin, s->lmax)) == 0);
        else
            obj_rewrite(s->objs[i], v);
    }
    s->version = v;
    return 0;
}

static void vexpect(struct expect *e, uint64_t n, size_t lmin, size_t lmax, uint64_t v)
{
    memset(e, 0, sizeof *e);
    e->magic = EXP_MAGIC;
    e->version = v;
    e->nobj = n;
    e->allocations = n + 2;
    for (uint64_t i = 0; i < n; i++) {
        e->seq[i] = v;
        e->len[i] = vlen(i, vrepl(i, v), lmin, lmax);
    }
}

/* Records what the heap holds now. */
static void state_expect(mmh_heap *h, const struct sroot *s, struct expect *e)
{
    memset(e, 0, sizeof *e);
    e->magic = EXP_MAGIC;
    e->version = s->version;
    e->nobj = s->nobj;
    struct mmh_stats st;
    memset(&st, 0, sizeof st);
    mmh_stats(h, &st);
    e->allocations = st.allocations;
    e->big_len = s->big ? s->big_len : 0;
    e->big_byte = s->big_byte;
    for (uint64_t i = 0; i < s->nobj && i < MAXOBJ; i++) {
        e->seq[i] = s->objs[i]->seq;
        e->len[i] = s->objs[i]->len;
    }
}

static uint64_t expect_bytes(const struct expect *e)
{
    uint64_t b = e->big_len;
    for (uint64_t i = 0; i < e->nobj; i++)
        b += e->len[i];
    return b;
}

/* 0 when h holds exactly e; else says what differs on stderr.  Usable in
 * children. */
static int state_check(mmh_heap *h, const struct expect *e)
{
    struct mmh_stats st;
    struct sroot *s = tu_root_in_heap(h, sizeof *s, &st);
    CK(s != NULL);
    CK(s->magic == ST_MAGIC);
    if (s->version != e->version) {
        fprintf(stderr, "state version %llu, expected %llu\n",
                (unsigned long long)s->version, (unsigned long long)e->version);
        return 1;
    }
    CK(s->nobj == e->nobj);
    CK(tu_in_heap(&st, s->objs, s->nobj * sizeof *s->objs));
    CK(mmh_usable_size(h, s->objs) >= s->nobj * sizeof *s->objs);
    for (uint64_t i = 0; i < s->nobj; i++) {
        struct obj *o = s->objs[i];
        CK(tu_in_heap(&st, o, sizeof *o));
        CK(o->magic == OBJ_MAGIC);
        CK(o->self == o);
        CK(o->id == i);
        if (o->seq != e->seq[i] || o->len != e->len[i]) {
            fprintf(stderr, "object %llu: seq %llu len %llu, expected seq %llu len %llu%s\n",
                    (unsigned long long)i, (unsigned long long)o->seq,
                    (unsigned long long)o->len, (unsigned long long)e->seq[i],
                    (unsigned long long)e->len[i],
                    o->seq > e->seq[i] ? " (a later write leaked in)" : "");
            return 1;
        }
        CK(tu_in_heap(&st, o, sizeof *o + o->len));
        CK(mmh_usable_size(h, o) >= sizeof *o + o->len);
        CK(mmh_at(h, mmh_offset(h, o)) == o);
        size_t bad = tu_check(o->data, o->len, obj_seed(i, o->seq));
        if (bad != (size_t)-1) {
            fprintf(stderr, "object %llu (seq %llu, %llu bytes): payload differs at byte %zu%s\n",
                    (unsigned long long)i, (unsigned long long)o->seq,
                    (unsigned long long)o->len, bad,
                    tu_verify(o->data, o->len, obj_seed(i, o->seq + 1))
                        ? " (it holds the next write: torn or later state)" : "");
            return 1;
        }
    }
    if (e->big_len) {
        CK(s->big != NULL);
        CK(s->big_len == e->big_len);
        CK(s->big_byte == e->big_byte);
        CK(tu_in_heap(&st, s->big, s->big_len));
        CK(tu_all_bytes(s->big, s->big_len, (unsigned char)e->big_byte));
    } else {
        CK(s->big == NULL);
    }
    if (e->allocations && st.allocations != e->allocations) {
        fprintf(stderr, "%llu live blocks, expected %llu\n",
                (unsigned long long)st.allocations, (unsigned long long)e->allocations);
        return 1;
    }
    return 0;
}

static int write_expect(const char *path, const struct expect *e)
{
    return tu_write_file(path, e, sizeof *e);
}

static int read_expect(const char *path, struct expect *e)
{
    size_t n = 0;
    void *b = tu_read_file(path, &n);
    if (!b)
        return -1;
    int ok = n == sizeof *e;
    if (ok)
        memcpy(e, b, sizeof *e);
    free(b);
    return ok && e->magic == EXP_MAGIC ? 0 : -1;
}

/* ------------------------------------------------- checking an image
 *
 * This program exec'd as `--check IMAGE EXPECT FLAGS`: a fresh process
 * opens the image with FLAGS (0: an ordinary heap file, or MMH_VOLATILE),
 * compares it with EXPECT, allocates and frees, closes. */
static struct expect checker_e;

static int image_checker(const char *path, const char *epath, unsigned flags)
{
    CK(read_expect(epath, &checker_e) == 0);
    mmh_config cfg = tu_cfg(flags, 0, 0);
    mmh_heap *h = mmh_open(path, &cfg);
    CK(h != NULL);
    int rc = state_check(h, &checker_e);
    if (rc == 0) {
        void *q = mmh_alloc(h, 100000);
        CK(q != NULL);
        memset(q, 0x77, 100000);
        mmh_free(h, q);
        rc = state_check(h, &checker_e);
    }
    CK(mmh_close(h) == 0);
    return rc;
}

/* Exit status of the checker for (path, e, flags). */
static int run_checker(const char *path, const struct expect *e, unsigned flags)
{
    static unsigned counter;
    char name[64];
    snprintf(name, sizeof name, "expect-%u.bin", counter++);
    char *ep = tu_path(name);
    assert_int_equal(write_expect(ep, e), 0);
    char fl[16];
    snprintf(fl, sizeof fl, "%u", flags);
    int st = tu_run_self((const char *[]){ "--check", path, ep, fl, NULL });
    unlink(ep);
    free(ep);
    return st;
}

static void check_image(const char *path, const struct expect *e)
{
    int st = run_checker(path, e, 0);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
        fail_msg("image %s does not hold the expected state (checker status %#x)", path, st);
}

/* ------------------------------------------------------ process helpers */

/* In a forked child: a crash kills it rather than landing in cmocka's
 * handler, which would run the remaining tests in the child.  (SIGSEGV
 * stays: the mprotect tracker chains to the handler before it.) */
static void child_init(void)
{
    signal(SIGBUS, SIG_DFL);
    signal(SIGILL, SIG_DFL);
    signal(SIGFPE, SIG_DFL);
    signal(SIGABRT, SIG_DFL);
}

/* In a forked child: child_init, then the file heap at path opened (*hp,
 * NULL if that failed); returns its root. */
/* The tracker of the writable file heaps that background commits run on:
 * each of those tests runs once per tracker. */
static mmh_tracker bg_tracker = MMH_TRACK_AUTO;
static const mmh_tracker bg_trackers[] = { MMH_TRACK_AUTO, MMH_TRACK_MPROTECT, MMH_TRACK_NONE };

static struct sroot *child_open(const char *path, mmh_heap **hp)
{
    child_init();
    mmh_config cfg = tu_cfg(0, 0, 0);
    cfg.tracker = bg_tracker;
    *hp = mmh_open(path, &cfg);
    return *hp ? mmh_root(*hp) : NULL;
}

/* Kills the process group that child pgid leads and reaps it all: the
 * job children of a killed test child are reparented to us (subreaper). */
static void kill_group(pid_t pgid)
{
    kill(-pgid, SIGKILL);
    int st;
    assert_int_equal(waitpid(pgid, &st, 0), pgid);
    for (;;) {
        pid_t r = waitpid(-pgid, &st, 0);
        if (r > 0)
            continue;
        if (errno == EINTR)
            continue;
        break;
    }
}

/* The newest child process of this process (the job a call just forked),
 * found in /proc; 0 if none. */
static pid_t find_job_child(void)
{
    DIR *d = opendir("/proc");
    if (!d)
        return 0;
    pid_t me = getpid(), best = 0;
    unsigned long long best_start = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        char *end;
        long pid = strtol(de->d_name, &end, 10);
        if (*end || pid <= 0)
            continue;
        char p[64], buf[1024];
        snprintf(p, sizeof p, "/proc/%ld/stat", pid);
        int fd = open(p, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            continue;
        ssize_t n = read(fd, buf, sizeof buf - 1);
        close(fd);
        if (n <= 0)
            continue;
        buf[n] = 0;
        char *rp = strrchr(buf, ')');
        if (!rp)
            continue;
        char state;
        int ppid;
        unsigned long long start = 0;
        /* fields after comm: state ppid ... starttime is field 22 */
        if (sscanf(rp + 2, "%c %d %*d %*d %*d %*d %*u %*u %*u %*u %*u %*u %*u %*d %*d %*d "
                           "%*d %*d %*d %llu", &state, &ppid, &start) != 3)
            continue;
        if (ppid != me || state == 'Z')
            continue;
        if (!best || start >= best_start) {
            best = (pid_t)pid;
            best_start = start;
        }
    }
    closedir(d);
    return best;
}

/* Stops the job just started; returns its pid if it is now stopped (it
 * cannot finish until job_cont), 0 if it had already exited or was not
 * found. */
static pid_t job_stop(void)
{
    pid_t pid = find_job_child();
    if (pid <= 0)
        return 0;
    if (kill(pid, SIGSTOP) != 0)
        return 0;
    siginfo_t si;
    memset(&si, 0, sizeof si);
    if (waitid(P_PID, (id_t)pid, &si, WSTOPPED | WEXITED | WNOWAIT) != 0)
        return 0;
    if (si.si_code == CLD_STOPPED)
        return pid;
    return 0;
}

static void job_cont(pid_t pid)
{
    if (pid > 0)
        kill(pid, SIGCONT);
}

/* Sorted names in dir, one per line; caller frees. */
static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static char *dir_listing(const char *dir)
{
    char *names[256];
    size_t n = 0, total = 1;
    DIR *d = opendir(dir);
    if (d) {
        struct dirent *de;
        while ((de = readdir(d)) != NULL && n < 256) {
            if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
                continue;
            names[n] = strdup(de->d_name);
            total += strlen(de->d_name) + 1;
            n++;
        }
        closedir(d);
    }
    qsort(names, n, sizeof names[0], cmp_str);
    char *out = malloc(total);
    out[0] = 0;
    for (size_t i = 0; i < n; i++) {
        strcat(out, names[i]);
        strcat(out, "\n");
        free(names[i]);
    }
    return out;
}

static int file_is(const char *path, const void *bytes, size_t len)
{
    size_t n = 0;
    void *b = tu_read_file(path, &n);
    int same = b && n == len && memcmp(b, bytes, len) == 0;
    free(b);
    return same;
}

/* Waits for the running job, polling; returns mmh_wait's final result. */
static int wait_poll(mmh_heap *h, long *ones)
{
    int r;
    while ((r = mmh_wait(h, 1)) == 1) {
        if (ones)
            (*ones)++;
        sleep_ms(1);
    }
    return r;
}

/* Under valgrind a process forked while other threads exist reports their
 * thread-local storage (glibc's DTV, held by an interior pointer) as
 * possibly lost: the tests that fork from a multithreaded program skip. */
static int under_valgrind(void)
{
    const char *pre = getenv("LD_PRELOAD");
    return pre && strstr(pre, "vgpreload");
}

/* ========================================================= 1. threads */

#define T1_THREADS 4
#define T1_PER     48

struct t1 {
    mmh_heap        *h;
    struct sroot    *s;
    pthread_rwlock_t lock;
    atomic_int       stop;
    atomic_long      batches;
    size_t           lmin, lmax;
};

struct t1w {
    struct t1 *t;
    int        id;
    int        failed;
    char       why[256];
};

static struct t1 t1;
static struct t1w t1w[T1_THREADS];
static struct expect t1_exp;

static void *t1_worker(void *arg)
{
    struct t1w *w = arg;
    struct t1 *t = w->t;
    tu_rng rng = { 1000u + (uint64_t)w->id };
    while (!atomic_load(&t->stop)) {
        void *tmp[4];
        pthread_rwlock_rdlock(&t->lock);
        for (int k = 0; k < 4; k++) {
            uint64_t i = (uint64_t)w->id * T1_PER + tu_rand(&rng) % T1_PER;
            struct obj *o = t->s->objs[i];
            if (tu_rand(&rng) % 3) {
                obj_rewrite(o, o->seq + 1);
            } else {
                size_t len = tu_rand_range(&rng, t->lmin, t->lmax);
                if (obj_replace(t->h, t->s, i, o->seq + 1, len) != 0) {
                    snprintf(w->why, sizeof w->why, "thread %d: alloc(%zu): %s", w->id,
                             len, mmh_errmsg());
                    w->failed = 1;
                }
            }
            /* allocator churn inside the batch */
            size_t n = tu_rand_log(&rng, 1, 8192);
            tmp[k] = mmh_alloc(t->h, n);
            if (tmp[k])
                memset(tmp[k], 0xEE, n);
        }
        for (int k = 0; k < 4; k++)
            mmh_free(t->h, tmp[k]);
        pthread_rwlock_unlock(&t->lock);
        atomic_fetch_add(&t->batches, 1);
        if (w->failed)
            break;
    }
    return NULL;
}

static void test_image_exact_under_writers(void **state)
{
    (void)state;
    if (under_valgrind())
        skip();
    t1.lmax = (size_t)tu_scaled(256 * 1024, 4096);
    t1.lmin = t1.lmax / 16;
    const uint64_t n = T1_THREADS * T1_PER;
    t1.h = mmh_open(NULL, NULL);
    assert_non_null(t1.h);
    t1.s = state_build(t1.h, n, t1.lmin, t1.lmax, 42, 0);
    assert_non_null(t1.s);
    atomic_store(&t1.stop, 0);
    atomic_store(&t1.batches, 0);
    pthread_rwlockattr_t ra;
    pthread_rwlockattr_init(&ra);
    pthread_rwlockattr_setkind_np(&ra, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    assert_int_equal(pthread_rwlock_init(&t1.lock, &ra), 0);
    pthread_rwlockattr_destroy(&ra);
    pthread_t th[T1_THREADS];
    for (int i = 0; i < T1_THREADS; i++) {
        t1w[i] = (struct t1w){ .t = &t1, .id = i };
        assert_int_equal(pthread_create(&th[i], NULL, t1_worker, &t1w[i]), 0);
    }

    /* a failure stops the writers first, then reports */
    char why[512] = "";
    long rounds = tu_scaled(4, 2), during_total = 0;
    for (long r = 1; r <= rounds && !why[0]; r++) {
        char name[32];
        snprintf(name, sizeof name, "threads%ld.img", r);
        char *img = tu_path(name);
        sleep_ms(5);
        pthread_rwlock_wrlock(&t1.lock);
        t1.s->version = (uint64_t)r;
        state_expect(t1.h, t1.s, &t1_exp);
        uint64_t t0 = now_ns();
        int rc = mmh_snapshot(t1.h, img);
        uint64_t pause = now_ns() - t0;
        pthread_rwlock_unlock(&t1.lock);
        long b0 = atomic_load(&t1.batches);
        int w = 0, st = 0;
        uint64_t job = 0, changed = 0;
        long during = 0;
        if (rc != 0) {
            snprintf(why, sizeof why, "mmh_snapshot: %s", mmh_errmsg());
            goto next;
        }
        if (t1_exp.allocations != n + 2) {
            snprintf(why, sizeof why, "%llu live blocks at the quiescent point, expected %llu",
                     (unsigned long long)t1_exp.allocations, (unsigned long long)n + 2);
            goto next;
        }
        t0 = now_ns();
        w = wait_poll(t1.h, NULL);
        job = now_ns() - t0;
        if (w != 0) {
            snprintf(why, sizeof why, "mmh_wait: %d, %s", w, mmh_errmsg());
            goto next;
        }
        during = atomic_load(&t1.batches) - b0;
        during_total += during;
        /* later writes exist that the image must not hold */
        while (atomic_load(&t1.batches) - b0 < 16 * T1_THREADS && !t1w[0].failed)
            sleep_ms(1);
        st = run_checker(img, &t1_exp, 0);
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
            snprintf(why, sizeof why, "round %ld: image %s does not hold the state at the call "
                     "(checker status %#x)", r, img, st);
            goto next;
        }
        pthread_rwlock_wrlock(&t1.lock);
        for (uint64_t i = 0; i < n; i++)
            changed += t1.s->objs[i]->seq != t1_exp.seq[i];
        pthread_rwlock_unlock(&t1.lock);
        if (changed == 0)
            snprintf(why, sizeof why, "round %ld: no object changed after the call", r);
        print_message("round %ld: pause %.2f ms, job %.1f ms, %ld write batches during "
                      "the job, %llu objects changed since\n", r, pause / 1e6, job / 1e6,
                      during, (unsigned long long)changed);
    next:
        unlink(img);
        free(img);
    }
    atomic_store(&t1.stop, 1);
    for (int i = 0; i < T1_THREADS; i++) {
        pthread_join(th[i], NULL);
        if (t1w[i].failed)
            fail_msg("%s", t1w[i].why);
    }
    if (why[0])
        fail_msg("%s", why);
    /* with a heap of tens of MiB the writers overlap the job */
    if (test_scale() >= 0.5)
        assert_true(during_total > 0);
    state_expect(t1.h, t1.s, &t1_exp);
    assert_int_equal(state_check(t1.h, &t1_exp), 0);
    assert_int_equal(t1_exp.allocations, n + 2);
    assert_int_equal(mmh_close(t1.h), 0);
    pthread_rwlock_destroy(&t1.lock);
}

/* ==================================================== 2. background commit */

#define F_N    48
#define F_LMIN (8 * KiB)
#define F_LMAX (128 * KiB)

/* A file heap holding versioned state v, committed and closed. */
static char *make_file_heap(const char *name, uint64_t n, size_t lmin, size_t lmax, uint64_t v)
{
    char *path = tu_path(name);
    mmh_config cfg = tu_cfg(MMH_CREATE, 0, 0);
    mmh_heap *h = mmh_open(path, &cfg);
    if (!h)
        fail_msg("mmh_open(%s): %s", path, mmh_errmsg());
    assert_non_null(vstate_build(h, n, lmin, lmax, v));
    assert_int_equal(mmh_close(h), 0);
    return path;
}

/* An anonymous heap holding versioned state v; *e gets what it holds. */
static mmh_heap *anon_state(uint64_t n, size_t lmin, size_t lmax, uint64_t v, struct expect *e)
{
    mmh_heap *h = mmh_open(NULL, NULL);
    assert_non_null(h);
    assert_non_null(vstate_build(h, n, lmin, lmax, v));
    vexpect(e, n, lmin, lmax, v);
    return h;
}

static void check_file(const char *path, const struct expect *e)
{
    mmh_heap *h = mmh_open(path, NULL);
    if (!h)
        fail_msg("reopen of %s: %s", path, mmh_errmsg());
    assert_int_equal(state_check(h, e), 0);
    assert_int_equal(mmh_close(h), 0);
}

enum bg_end {
    BG_WAIT_KILL,          /* wait, crash: the state at the bg call        */
    BG_WAIT_COMMIT_KILL,   /* wait, commit, crash: the later state too     */
    BG_COMMIT_KILL,        /* commit without wait (it waits), crash        */
    BG_CLOSE,              /* close without wait (it waits and commits)    */
};

struct bg_arg {
    const char *path;
    const char *epath;
    enum bg_end end;
};

static struct expect bg_e2, bg_e3;

static int bg_child(void *argp)
{
    struct bg_arg *a = argp;
    mmh_heap *h;
    struct sroot *s = child_open(a->path, &h);
    CK(h != NULL);
    CK(s != NULL && s->magic == ST_MAGIC && s->version == 1);
    /* v2: every object, a third of them replaced */
    for (uint64_t i = 0; i < s->nobj; i++) {
        if (i % 3 == 0)
            CK(obj_replace(h, s, i, 2, F_LMIN + (i * 997) % (F_LMAX - F_LMIN)) == 0);
        else
            obj_rewrite(s->objs[i], 2);
    }
    s->version = 2;
    state_expect(h, s, &bg_e2);
    CK(mmh_commit_bg(h) == 0);
    /* v3, while the job runs: half the objects, some replaced, and a big
     * block that grows the heap beyond the file */
    for (uint64_t i = 1; i < s->nobj; i += 2) {
        if (i % 6 == 1)
            CK(obj_replace(h, s, i, 3, F_LMAX + i * 31) == 0);
        else
            obj_rewrite(s->objs[i], 3);
    }
    s->big_len = 6 * MiB + 123;
    s->big = mmh_alloc(h, s->big_len);
    CK(s->big != NULL);
    s->big_byte = 0xb3;
    memset(s->big, 0xb3, s->big_len);
    s->version = 3;
    state_expect(h, s, &bg_e3);
    struct mmh_stats st;
    switch (a->end) {
    case BG_WAIT_KILL:
        CK(mmh_wait(h, 0) == 0);
        CK(mmh_stats(h, &st) == 0);
        CK(st.jobs == 1 && st.jobs_failed == 0 && st.job_running == 0);
        CK(st.last_fork_ns > 0 && st.last_job_ns > 0 && st.last_job_bytes > 0);
        errno = 0;
        CK(mmh_wait(h, 0) == -1 && errno == ECHILD);
        CK(write_expect(a->epath, &bg_e2) == 0);
        raise(SIGKILL);
        break;
    case BG_WAIT_COMMIT_KILL:
        CK(mmh_wait(h, 0) == 0);
        CK(mmh_commit(h) == 0);
        CK(write_expect(a->epath, &bg_e3) == 0);
        raise(SIGKILL);
        break;
    case BG_COMMIT_KILL:
        CK(mmh_commit(h) == 0);
        CK(mmh_stats(h, &st) == 0);
        CK(st.jobs == 1 && st.job_running == 0);
        CK(write_expect(a->epath, &bg_e3) == 0);
        raise(SIGKILL);
        break;
    case BG_CLOSE:
        CK(write_expect(a->epath, &bg_e3) == 0);
        CK(mmh_close(h) == 0);
        return 0;
    }
    return 2;
}

static void run_bg_case(enum bg_end end)
{
    char name[32];
    snprintf(name, sizeof name, "bg%d.heap", (int)end);
    char *path = make_file_heap(name, F_N, F_LMIN, F_LMAX, 1);
    char *ep = tu_path("bg.expect");
    struct bg_arg a = { path, ep, end };
    int st = tu_run_child(bg_child, &a);
    if (end == BG_CLOSE) {
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
            fail_msg("bg child failed (status %#x)", st);
    } else if (!WIFSIGNALED(st) || WTERMSIG(st) != SIGKILL) {
        fail_msg("bg child did not reach its crash (status %#x)", st);
    }
    struct expect e;
    assert_int_equal(read_expect(ep, &e), 0);
    check_file(path, &e);
    unlink(path);
    unlink(ep);
    free(path);
    free(ep);
}

static void test_bg_commit_then_crash(void **state)
{
    (void)state;
    for (size_t t = 0; t < sizeof bg_trackers / sizeof *bg_trackers; t++) {
        bg_tracker = bg_trackers[t];
        run_bg_case(BG_WAIT_KILL);
        run_bg_case(BG_WAIT_COMMIT_KILL);
        run_bg_case(BG_COMMIT_KILL);
        run_bg_case(BG_CLOSE);
    }
    bg_tracker = MMH_TRACK_AUTO;
}

/* Kill -9 of the process and its job at a random moment of background
 * commits: the file holds one whole version, the last one completed or the
 * one in progress. */
struct msg {
    char     c;
    uint64_t v;
} __attribute__((packed));

static int send_msg(int fd, char c, uint64_t v)
{
    struct msg m = { c, v };
    return write(fd, &m, sizeof m) == (ssize_t)sizeof m ? 0 : -1;
}

static int bgcrash_child(const char *path, int wfd)
{
    mmh_heap *h;
    struct sroot *s = child_open(path, &h);
    CK(h != NULL);
    CK(s != NULL && s->magic == ST_MAGIC);
    for (uint64_t v = s->version + 1;; v++) {
        CK(vstate_set(h, s, v) == 0);
        CK(send_msg(wfd, 'b', v) == 0);
        CK(mmh_commit_bg(h) == 0);
        CK(send_msg(wfd, 'r', v) == 0);
        /* keep writing while the job runs: the next version's payloads
         * without its version number (not a consistent state) */
        for (uint64_t i = 0; i < s->nobj; i++)
            obj_rewrite(s->objs[i], v + 1);
        int w = mmh_wait(h, 0);
        CK(w == 0);
        CK(send_msg(wfd, 'd', v) == 0);
    }
}

static void bg_kill_mid_job(void)
{
    size_t lmax = (size_t)tu_scaled(256 * 1024, 8192);
    char *path = make_file_heap("bgcrash.heap", 32, lmax / 8, lmax, 0);
    uint64_t seed = tu_test_seed((uint64_t)time(NULL));
    tu_rng rng = { seed };
    long rounds = tu_scaled(10, 2);
    uint64_t committed = 0;
    double job_us = 0;
    long mid = 0;
    for (long r = 0; r < rounds; r++) {
        int pfd[2];
        pid_t pid = tu_fork_piped(pfd, 1);
        if (pid == 0)
            _exit(bgcrash_child(path, pfd[1]));
        int target = (int)tu_rand_range(&rng, 0, 2);
        int completed = 0;
        uint64_t inflight = committed, t_r = 0;
        for (;;) {
            struct msg m;
            if (read(pfd[0], &m, sizeof m) != (ssize_t)sizeof m)
                fail_msg("writer died early (round %ld)", r);
            if (m.c == 'b') {
                inflight = m.v;
            } else if (m.c == 'r') {
                t_r = now_ns();
                if (completed >= target && job_us > 0)
                    break;
            } else {
                committed = m.v;
                completed++;
                double took = (double)(now_ns() - t_r) / 1e3;
                job_us = job_us ? (job_us * 3 + took) / 4 : took;
            }
        }
        long us = (long)tu_rand_range(&rng, 0, (size_t)(job_us * 1.25) + 1);
        sleep_ms((double)us / 1000);
        kill_group(pid);
        struct msg m;
        struct pollfd pf = { pfd[0], POLLIN, 0 };
        int done_late = 0;
        while (poll(&pf, 1, 0) == 1 && read(pfd[0], &m, sizeof m) == (ssize_t)sizeof m) {
            if (m.c == 'b')
                inflight = m.v;
            else if (m.c == 'd')
                committed = m.v, done_late = 1;
        }
        close(pfd[0]);
        mmh_heap *h = mmh_open(path, NULL);
        if (!h)
            fail_msg("round %ld (tracker %d): reopen after kill: %s", r, (int)bg_tracker,
                     mmh_errmsg());
        struct sroot *s = mmh_root(h);
        assert_non_null(s);
        uint64_t v = s->version;
        if (v != committed && v != inflight)
            fail_msg("round %ld (tracker %d, MMH_TEST_SEED=%llu): version %llu, expected %llu "
                     "or %llu", r, (int)bg_tracker,
                     (unsigned long long)seed, (unsigned long long)v,
                     (unsigned long long)committed, (unsigned long long)inflight);
        struct expect e;
        vexpect(&e, s->nobj, s->lmin, s->lmax, v);
        if (state_check(h, &e) != 0)
            fail_msg("round %ld (tracker %d, MMH_TEST_SEED=%llu): version %llu is not whole",
                     r, (int)bg_tracker,
                     (unsigned long long)seed, (unsigned long long)v);
        void *q = mmh_alloc(h, 5000);
        assert_non_null(q);
        mmh_free(h, q);
        assert_int_equal(mmh_close(h), 0);
        mid += !done_late && v == committed && inflight != committed;
        committed = v;
    }
    print_message("%ld kills, %ld of them before the job's end; job %.1f ms\n", rounds, mid,
                  job_us / 1e3);
    unlink(path);
    free(path);
}

static void test_bg_commit_kill_mid_job(void **state)
{
    (void)state;
    for (size_t t = 0; t < sizeof bg_trackers / sizeof *bg_trackers; t++) {
        bg_tracker = bg_trackers[t];
        bg_kill_mid_job();
    }
    bg_tracker = MMH_TRACK_AUTO;
}

/* A job killed right after its commit became durable in the log, before
 * it could report, then the program killed in the middle of its next
 * commit, which goes to the same place in the log: the file holds one
 * whole version (the last commit, or the job's, which was durable), never
 * a mix. */
static int killed_job_child(void *arg)
{
    mmh_heap *h;
    struct sroot *s = child_open(arg, &h);
    CK(h != NULL);
    CK(s != NULL && s->version == 1);
    /* v2 on every other object: separate ranges */
    for (uint64_t i = 0; i < s->nobj; i += 2)
        obj_rewrite(s->objs[i], 2);
    s->version = 2;
    trap.app = getpid();
    trap.job_after_sync = 1;
    CK(mmh_commit_bg(h) == 0);
    errno = 0;
    CK(mmh_wait(h, 0) == -1);
    CK(strstr(mmh_errmsg(), "signal") != NULL);
    trap.job_after_sync = 0;
    for (uint64_t i = 1; i < s->nobj; i += 2)
        obj_rewrite(s->objs[i], 3);
    s->version = 3;
    trap.app_wal = 1;
    mmh_commit(h);          /* dies inside */
    return 2;
}

static void test_bg_job_killed_after_log_sync(void **state)
{
    (void)state;
    char *path = make_file_heap("kjob.heap", 24, 64 * KiB, 200 * KiB, 1);
    int st = tu_run_child(killed_job_child, path);
    if (!WIFSIGNALED(st) || WTERMSIG(st) != SIGKILL)
        fail_msg("child did not reach its crash (status %#x)", st);
    mmh_heap *h = mmh_open(path, NULL);
    if (!h)
        fail_msg("reopen: %s", mmh_errmsg());
    struct sroot *s = mmh_root(h);
    assert_non_null(s);
    /* the child's expectations: rebuilt here (the child died) */
    struct expect e1, e2;
    vexpect(&e1, s->nobj, s->lmin, s->lmax, 1);
    e2 = e1;
    e2.version = 2;
    for (uint64_t i = 0; i < e2.nobj; i += 2)
        e2.seq[i] = 2;
    int got = s->version == 1 ? state_check(h, &e1) : state_check(h, &e2);
    if (got != 0 || s->version != 2) {
        uint64_t at2 = 0, version = s->version;
        for (uint64_t i = 0; i < s->nobj; i += 2)
            at2 += s->objs[i]->seq == 2;
        mmh_close(h);
        fail_msg("version %llu, %llu of %llu rewritten objects at v2; the job's commit was "
                 "durable, and the program's next commit to the same place died before it "
                 "was: the file must hold exactly the job's version 2",
                 (unsigned long long)version, (unsigned long long)at2,
                 (unsigned long long)(e1.nobj + 1) / 2);
    }
    assert_int_equal(mmh_close(h), 0);
    free(path);
}

/* ======================================================== 3. failed jobs */

/* mmh_snapshot, then mmh_wait for its job if one started (*in_job, unless
 * NULL); errno is the failing call's. */
static int snapshot_wait(mmh_heap *h, const char *path, int *in_job)
{
    errno = 0;
    int r = mmh_snapshot(h, path);
    if (in_job)
        *in_job = r == 0;
    if (r == 0) {
        errno = 0;
        r = mmh_wait(h, 0);
    }
    return r;
}

/* A snapshot to path fails with err, either at once or in the job; the
 * reason names the path; the directory gains no file. */
static void snapshot_fails(mmh_heap *h, const char *path, const char *dir, int err)
{
    char *before = dir_listing(dir);
    uint64_t failed0 = tu_stats(h).jobs_failed;
    int in_job;
    int r = snapshot_wait(h, path, &in_job);
    int e = errno;
    if (r != -1)
        fail_msg("snapshot to %s: %d, expected failure", path, r);
    if (e != err)
        fail_msg("snapshot to %s: errno %d (%s), expected %d (%s); %s", path, e, strerror(e),
                 err, strerror(err), mmh_errmsg());
    assert_errmsg_contains(path);
    assert_fail_errno(mmh_wait(h, 1), ECHILD);
    struct mmh_stats st = tu_stats(h);
    assert_int_equal(st.job_running, 0);
    if (in_job)
        assert_int_equal(st.jobs_failed, failed0 + 1);
    char *after = dir_listing(dir);
    if (strcmp(before, after) != 0)
        fail_msg("a failed snapshot left files behind in %s:\nbefore:\n%safter:\n%s", dir,
                 before, after);
    free(before);
    free(after);
}

static void test_snapshot_bad_paths(void **state)
{
    (void)state;
    char *dir = tu_mkdir("badpaths");
    char p[PATH_MAX];
    struct expect e;
    mmh_heap *h = anon_state(16, 1000, 20000, 5, &e);

    snprintf(p, sizeof p, "%s/nodir/x.img", dir);
    snapshot_fails(h, p, dir, ENOENT);

    snprintf(p, sizeof p, "%s/afile", dir);
    assert_int_equal(tu_write_file(p, "x", 1), 0);
    snprintf(p, sizeof p, "%s/afile/x.img", dir);
    snapshot_fails(h, p, dir, ENOTDIR);

    snprintf(p, sizeof p, "%s/adir", dir);
    assert_int_equal(mkdir(p, 0700), 0);
    snapshot_fails(h, p, dir, EISDIR);

    /* the heap is fine and the next snapshot works, to a relative path too */
    assert_int_equal(state_check(h, &e), 0);
    snprintf(p, sizeof p, "%s/good.img", dir);
    assert_int_equal(mmh_snapshot(h, p), 0);
    assert_int_equal(mmh_wait(h, 0), 0);
    check_image(p, &e);
    char cwd[PATH_MAX];
    assert_non_null(getcwd(cwd, sizeof cwd));
    assert_int_equal(chdir(dir), 0);
    int rc = mmh_snapshot(h, "rel.img");
    int w = rc == 0 ? mmh_wait(h, 0) : -1;
    assert_int_equal(chdir(cwd), 0);
    if (rc != 0 || w != 0)
        fail_msg("snapshot to a relative path: %d/%d: %s", rc, w, mmh_errmsg());
    snprintf(p, sizeof p, "%s/rel.img", dir);
    check_image(p, &e);
    assert_int_equal(mmh_close(h), 0);
    free(dir);
}

/* A real full disk: a tmpfs in a private mount namespace. */
static int fill_disk(const char *path, size_t keep)
{
    struct statvfs sv;
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s", path);
    *strrchr(dir, '/') = 0;
    CK(statvfs(dir, &sv) == 0);
    size_t avail = (size_t)sv.f_bavail * sv.f_frsize;
    CK(avail > keep);
    size_t left = avail - keep;
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    CK(fd >= 0);
    static char chunk[1 << 20];
    memset(chunk, 0x11, sizeof chunk);
    while (left) {
        size_t n = left < sizeof chunk ? left : sizeof chunk;
        ssize_t w = write(fd, chunk, n);
        if (w <= 0)
            break;
        left -= (size_t)w;
    }
    close(fd);
    return 0;
}

static struct expect full_e;

static int disk_full_child(void *arg)
{
    const char *dir = arg;
    child_init();
    if (tu_private_tmpfs(dir, "size=96m") != 0)
        return 77; /* not root here: skipped */
    char path[PATH_MAX], img[PATH_MAX], filler[PATH_MAX];
    snprintf(path, sizeof path, "%s/full.heap", dir);
    snprintf(img, sizeof img, "%s/full.img", dir);
    snprintf(filler, sizeof filler, "%s/filler", dir);
    mmh_config cfg = tu_cfg(MMH_CREATE, 0, 0);
    mmh_heap *h = mmh_open(path, &cfg);
    CK(h != NULL);
    struct sroot *s = state_build(h, 16, 32 * KiB, 64 * KiB, 7, 1);
    CK(s != NULL);
    CK(mmh_commit(h) == 0);
    /* an image made while there was room */
    CK(mmh_snapshot(h, img) == 0);
    CK(mmh_wait(h, 0) == 0);
    size_t img_len = 0;
    void *img_bytes = tu_read_file(img, &img_len);
    CK(img_bytes != NULL);
    /* room for the heap's growth, then the disk is filled.  The new pages
     * are touched first: on tmpfs, the first touch of a hole in a mapped
     * file takes a page of the file system (SIGBUS when it is full), which
     * a disk does not do.  The commit is larger than the log's 16 MiB, so
     * it must extend the log, and that fails. */
    s->big_len = 24 * MiB;
    s->big = mmh_alloc(h, s->big_len);
    CK(s->big != NULL);
    memset(s->big, 0, s->big_len);
    CK(fill_disk(filler, 3 * MiB) == 0);
    s->big_byte = 0x5a;
    memset(s->big, 0x5a, s->big_len);
    for (uint64_t i = 0; i < s->nobj; i++)
        obj_rewrite(s->objs[i], 2);
    s->version = 2;

    CK(mmh_commit_bg(h) == 0);
    errno = 0;
    CK(mmh_wait(h, 0) == -1);
    CK(errno == ENOSPC);
    CK(strstr(mmh_errmsg(), "full.heap") != NULL);
    struct mmh_stats st;
    CK(mmh_stats(h, &st) == 0);
    CK(st.jobs == 2 && st.jobs_failed == 1 && st.job_running == 0);
    errno = 0;
    CK(mmh_wait(h, 0) == -1 && errno == ECHILD);

    /* a snapshot on the full disk fails too, and the old image stays */
    char *before = dir_listing(dir);
    CK(snapshot_wait(h, img, NULL) == -1);
    CK(errno == ENOSPC);
    CK(strstr(mmh_errmsg(), img) != NULL);
    CK(file_is(img, img_bytes, img_len));
    char *after = dir_listing(dir);
    if (strcmp(before, after) != 0) {
        fprintf(stderr, "failed snapshot left files:\nbefore:\n%safter:\n%s", before, after);
        return 1;
    }
    free(before);
    free(after);

    /* more writes after the failed job, then room again: one commit
     * writes the failed job's pages and the later ones */
    for (uint64_t i = 1; i < s->nobj; i += 2)
        obj_rewrite(s->objs[i], 3);
    s->version = 3;
    state_expect(h, s, &full_e);
    CK(unlink(filler) == 0);
    CK(mmh_commit(h) == 0);
    CK(mmh_close(h) == 0);
    h = mmh_open(path, NULL);
    CK(h != NULL);
    CK(state_check(h, &full_e) == 0);

    /* a directory that cannot be written (root writes anywhere else) */
    char ro[PATH_MAX], roimg[PATH_MAX + 16];
    snprintf(ro, sizeof ro, "%s/ro", dir);
    snprintf(roimg, sizeof roimg, "%s/x.img", ro);
    CK(mkdir(ro, 0700) == 0);
    CK(mount("tmpfs", ro, "tmpfs", MS_RDONLY, "size=1m") == 0);
    CK(snapshot_wait(h, roimg, NULL) == -1);
    CK(errno == EROFS);
    CK(strstr(mmh_errmsg(), roimg) != NULL);
    CK(mmh_close(h) == 0);
    free(img_bytes);
    return 0;
}

static void test_failed_job_loses_nothing(void **state)
{
    (void)state;
    tu_run_tmpfs_child(disk_full_child, "disk-full");
}

/* ============================================ 4. polling, one job at a time */

static void test_wait_nohang(void **state)
{
    (void)state;
    size_t lmax = (size_t)tu_scaled(1 * MiB, 16 * KiB);
    struct expect e;
    mmh_heap *h = anon_state(48, lmax / 2, lmax, 3, &e);
    assert_fail_errno(mmh_wait(h, 1), ECHILD);
    assert_fail_errno(mmh_wait(h, 0), ECHILD);
    char *img = tu_path("poll.img");

    /* held back: polls say 1, deterministically */
    assert_int_equal(mmh_snapshot(h, img), 0);
    pid_t job = job_stop();
    if (job) {
        for (int k = 0; k < 5; k++) {
            assert_int_equal(mmh_wait(h, 1), 1);
            sleep_ms(2);
        }
        assert_int_equal(tu_stats(h).job_running, 1);
        job_cont(job);
    } else {
        print_message("the job ended before it could be stopped\n");
    }
    assert_int_equal(wait_poll(h, NULL), 0);
    assert_fail_errno(mmh_wait(h, 1), ECHILD);
    assert_fail_errno(mmh_wait(h, 0), ECHILD);
    struct mmh_stats st = tu_stats(h);
    assert_int_equal(st.jobs, 1);
    assert_int_equal(st.job_running, 0);
    check_image(img, &e);

    /* left alone: how long a job of this size takes (informational) */
    long ones = 0;
    uint64_t t0 = now_ns();
    assert_int_equal(mmh_snapshot(h, img), 0);
    assert_int_equal(wait_poll(h, &ones), 0);
    print_message("a %.0f MiB snapshot took %.1f ms; mmh_wait(h, 1) said 1 %ld times\n",
                  (double)expect_bytes(&e) / MiB, (now_ns() - t0) / 1e6, ones);
    assert_fail_errno(mmh_wait(h, 1), ECHILD);
    assert_int_equal(tu_stats(h).jobs, 2);
    check_image(img, &e);
    assert_int_equal(mmh_close(h), 0);
    free(img);
}

/* The call is made here while the job is held back; a helper process lets
 * the job go after 150 ms and then says so through a pipe.  The call must
 * not return before that. */
enum call_kind { CALL_SNAPSHOT, CALL_COMMIT_BG, CALL_COMMIT, CALL_CLOSE };

static void call_waits_for_job(mmh_heap *h, pid_t job, enum call_kind kind, const char *path)
{
    int pfd[2] = { -1, -1 };
    pid_t helper = -1;
    if (job) {
        assert_int_equal(pipe(pfd), 0);
        fflush(stdout);
        fflush(stderr);
        helper = fork();
        assert_true(helper >= 0);
        if (helper == 0) {
            close(pfd[0]);
            sleep_ms(150);
            (void)!write(pfd[1], "c", 1);
            kill(job, SIGCONT);
            _exit(0);
        }
        close(pfd[1]);
    }
    errno = 0;
    int rc = -1;
    switch (kind) {
    case CALL_SNAPSHOT:  rc = mmh_snapshot(h, path); break;
    case CALL_COMMIT_BG: rc = mmh_commit_bg(h); break;
    case CALL_COMMIT:    rc = mmh_commit(h); break;
    case CALL_CLOSE:     rc = mmh_close(h); break;
    }
    int err = errno;
    char msg[512];
    snprintf(msg, sizeof msg, "%s", mmh_errmsg());
    int early = 0;
    if (job) {
        struct pollfd pf = { pfd[0], POLLIN, 0 };
        early = poll(&pf, 1, 0) != 1;      /* the job was still held */
        int st;
        waitpid(helper, &st, 0);
        close(pfd[0]);
    }
    if (early)
        fail_msg("call %d returned %d while the running job was stopped", (int)kind, rc);
    if (rc != 0)
        fail_msg("call %d: %d, errno %d: %s", (int)kind, rc, err, msg);
}

/* State v, a bg commit whose job is held back, state v + 1 meanwhile, then
 * a call of kind that must wait for the job; 1 if the job was held. */
static int bg_then_call(mmh_heap *h, struct sroot *s, uint64_t v, enum call_kind kind)
{
    assert_int_equal(vstate_set(h, s, v), 0);
    assert_int_equal(mmh_commit_bg(h), 0);
    pid_t job = job_stop();
    assert_int_equal(vstate_set(h, s, v + 1), 0);    /* the parent goes on */
    call_waits_for_job(h, job, kind, NULL);
    return job != 0;
}

static void test_one_job_at_a_time(void **state)
{
    (void)state;
    size_t lmax = (size_t)tu_scaled(512 * KiB, 16 * KiB);
    int held = 0;

    /* anonymous heap: a second snapshot waits for the first */
    struct expect e;
    mmh_heap *h = anon_state(32, lmax / 4, lmax, 9, &e);
    char *img1 = tu_path("one1.img"), *img2 = tu_path("one2.img");
    assert_int_equal(mmh_snapshot(h, img1), 0);
    pid_t job = job_stop();
    held += job != 0;
    call_waits_for_job(h, job, CALL_SNAPSHOT, img2);
    assert_int_equal(mmh_wait(h, 0), 0);
    assert_fail_errno(mmh_wait(h, 0), ECHILD);
    assert_int_equal(tu_stats(h).jobs, 2);
    check_image(img1, &e);
    check_image(img2, &e);
    assert_int_equal(mmh_close(h), 0);

    /* file heap: a second bg commit, a commit and a close wait */
    char *path = make_file_heap("one.heap", 32, lmax / 4, lmax, 1);
    h = mmh_open(path, NULL);
    assert_non_null(h);
    struct sroot *s = mmh_root(h);
    assert_non_null(s);
    held += bg_then_call(h, s, 2, CALL_COMMIT_BG);
    assert_int_equal(mmh_wait(h, 0), 0);

    held += bg_then_call(h, s, 4, CALL_COMMIT);
    /* the commit reaped the job: its result is 0 or already taken */
    errno = 0;
    int w = mmh_wait(h, 0);
    assert_true(w == 0 || (w == -1 && errno == ECHILD));
    assert_int_equal(tu_stats(h).jobs, 3);
    assert_int_equal(tu_stats(h).jobs_failed, 0);

    held += bg_then_call(h, s, 6, CALL_CLOSE);
    vexpect(&e, 32, lmax / 4, lmax, 7);
    check_file(path, &e);
    print_message("%d of 4 jobs held back\n", held);
    free(img1);
    free(img2);
    free(path);
}

/* Jobs of two heaps are independent: one heap's job finishes and is
 * reported while the other's is held back. */
static void test_two_heaps_two_jobs(void **state)
{
    (void)state;
    size_t lmax = (size_t)tu_scaled(256 * KiB, 16 * KiB);
    struct expect e;
    mmh_heap *a = anon_state(24, lmax / 4, lmax, 8, &e);
    char *path = make_file_heap("two.heap", 24, lmax / 4, lmax, 1);
    mmh_heap *b = mmh_open(path, NULL);
    assert_non_null(b);
    assert_int_equal(vstate_set(b, mmh_root(b), 2), 0);
    char *img = tu_path("two.img");

    assert_int_equal(mmh_snapshot(a, img), 0);
    pid_t job = job_stop();
    assert_int_equal(mmh_commit_bg(b), 0);
    int w;
    uint64_t t0 = now_ns();
    while ((w = mmh_wait(b, 1)) == 1 && now_ns() - t0 < 20000000000ull)
        sleep_ms(1);
    if (job)
        assert_int_equal(mmh_wait(a, 1), 1);   /* still held */
    job_cont(job);
    if (w != 0)
        fail_msg("heap b's job: %d (%s)%s", w, mmh_errmsg(),
                 w == 1 ? ": it waited for heap a's job" : "");
    assert_int_equal(mmh_wait(a, 0), 0);
    assert_int_equal(tu_stats(a).jobs, 1);
    assert_int_equal(tu_stats(b).jobs, 1);
    assert_int_equal(mmh_close(a), 0);
    assert_int_equal(mmh_close(b), 0);
    check_image(img, &e);
    vexpect(&e, 24, lmax / 4, lmax, 2);
    check_file(path, &e);
    free(path);
    free(img);
}

/* =========================================== 5. one path, replaced atomically */

static void test_repeated_snapshots_one_path(void **state)
{
    (void)state;
    char *dir = tu_mkdir("repeat");
    char img[PATH_MAX];
    snprintf(img, sizeof img, "%s/one.img", dir);
    size_t lmin = 4 * KiB, lmax = (size_t)tu_scaled(96 * KiB, 8 * KiB);
    mmh_heap *h = mmh_open(NULL, NULL);
    assert_non_null(h);
    struct sroot *s = vstate_build(h, 32, lmin, lmax, 0);
    assert_non_null(s);
    long n = tu_scaled(6, 3);
    struct expect e;
    for (long v = 1; v <= n; v++) {
        assert_int_equal(vstate_set(h, s, (uint64_t)v), 0);
        int oldfd = open(img, O_RDONLY | O_CLOEXEC);
        assert_true(v == 1 || oldfd >= 0);
        size_t oldlen = 0;
        void *old = v > 1 ? tu_read_file(img, &oldlen) : NULL;
        struct stat ost;
        if (oldfd >= 0)
            assert_int_equal(fstat(oldfd, &ost), 0);
        assert_int_equal(mmh_snapshot(h, img), 0);
        assert_int_equal(mmh_wait(h, 0), 0);
        vexpect(&e, 32, lmin, lmax, (uint64_t)v);
        check_image(img, &e);
        /* replaced by rename: the old file is intact under the old fd */
        if (oldfd >= 0) {
            struct stat nst;
            assert_int_equal(stat(img, &nst), 0);
            assert_true(nst.st_ino != ost.st_ino);
            char *buf = malloc(oldlen ? oldlen : 1);
            assert_non_null(buf);
            assert_int_equal(pread(oldfd, buf, oldlen, 0), (ssize_t)oldlen);
            assert_memory_equal(buf, old, oldlen);
            free(buf);
            close(oldfd);
        }
        free(old);
        /* no temporary files left (a log from the checker's open may be) */
        char *ls = dir_listing(dir);
        if (strcmp(ls, "one.img\n") != 0 && strcmp(ls, "one.img\none.img.wal\n") != 0)
            fail_msg("files beside the image:\n%s", ls);
        free(ls);
    }
    assert_int_equal(mmh_close(h), 0);
    free(dir);
}

/* The whole process group (the snapshotting process and its job) is killed
 * while the job runs: the image at the path is the old one or the new one,
 * whole. */
struct ksnap_arg {
    const char *img;
    uint64_t    v;
    size_t      lmin, lmax;
};

static int ksnap_child(const struct ksnap_arg *a, int wfd)
{
    child_init();
    mmh_heap *h = mmh_open(NULL, NULL);
    CK(h != NULL);
    struct sroot *s = vstate_build(h, 48, a->lmin, a->lmax, a->v - 1);
    CK(s != NULL);
    CK(vstate_set(h, s, a->v) == 0);
    CK(send_msg(wfd, 'b', a->v) == 0);
    CK(mmh_snapshot(h, a->img) == 0);
    CK(send_msg(wfd, 'r', a->v) == 0);
    /* writes during the job must not reach the image */
    for (uint64_t i = 0; i < s->nobj; i++)
        obj_rewrite(s->objs[i], a->v + 1);
    CK(mmh_wait(h, 0) == 0);
    CK(send_msg(wfd, 'd', a->v) == 0);
    for (;;)
        pause();   /* killed */
}

static void test_kill_mid_snapshot(void **state)
{
    (void)state;
    char *dir = tu_mkdir("ksnap");
    char img[PATH_MAX];
    snprintf(img, sizeof img, "%s/k.img", dir);
    size_t lmax = (size_t)tu_scaled(1 * MiB, 16 * KiB);
    struct ksnap_arg a = { img, 0, lmax / 4, lmax };
    uint64_t seed = tu_test_seed((uint64_t)time(NULL) + 1);
    tu_rng rng = { seed };
    long rounds = tu_scaled(8, 3);
    uint64_t have = 0;      /* version the image holds */
    double job_us = 0;
    long kept_old = 0;
    for (long r = 0; r < rounds; r++) {
        a.v = (uint64_t)r + 1;
        int pfd[2];
        pid_t pid = tu_fork_piped(pfd, 1);
        if (pid == 0)
            _exit(ksnap_child(&a, pfd[1]));
        uint64_t t_r = 0;
        int done = 0;
        struct msg m;
        for (;;) {
            if (read(pfd[0], &m, sizeof m) != (ssize_t)sizeof m)
                fail_msg("snapshotting child died early (round %ld)", r);
            if (m.c == 'r') {
                t_r = now_ns();
                if (r > 0)
                    break;           /* round 0 completes: it measures */
            } else if (m.c == 'd') {
                job_us = (double)(now_ns() - t_r) / 1e3;
                done = 1;
                break;
            }
        }
        if (!done) {
            long us = (long)tu_rand_range(&rng, 0, (size_t)(job_us * 1.1) + 1);
            sleep_ms((double)us / 1000);
        }
        kill_group(pid);
        struct pollfd pf = { pfd[0], POLLIN, 0 };
        while (poll(&pf, 1, 0) == 1 && read(pfd[0], &m, sizeof m) == (ssize_t)sizeof m)
            if (m.c == 'd')
                done = 1;
        close(pfd[0]);
        /* the image: the old version or the new one, whole */
        mmh_heap *h = mmh_open(img, NULL);
        if (!h)
            fail_msg("round %ld (MMH_TEST_SEED=%llu): the image does not open: %s", r,
                     (unsigned long long)seed, mmh_errmsg());
        struct sroot *s = mmh_root(h);
        assert_non_null(s);
        uint64_t v = s->version;
        if (v != a.v && !(v == have && !done))
            fail_msg("round %ld (MMH_TEST_SEED=%llu): image version %llu, expected %llu%s", r,
                     (unsigned long long)seed, (unsigned long long)v,
                     (unsigned long long)a.v, done ? "" : " or the previous one");
        struct expect e;
        vexpect(&e, 48, a.lmin, a.lmax, v);
        if (state_check(h, &e) != 0)
            fail_msg("round %ld: image version %llu is not whole", r, (unsigned long long)v);
        assert_int_equal(mmh_close(h), 0);
        kept_old += v == have;
        have = v;
    }
    print_message("%ld kills mid-snapshot kept the old image; a job takes %.1f ms\n",
                  kept_old, job_us / 1e3);
    free(dir);
}

/* ================================================ 6. refusals, statistics */

static void test_refusals(void **state)
{
    (void)state;
    /* anonymous heap: no bg commit, no job to wait for, no NULL path */
    mmh_heap *h = mmh_open(NULL, NULL);
    assert_non_null(h);
    assert_fail_errno(mmh_wait(h, 0), ECHILD);
    assert_fail_errno(mmh_commit_bg(h), EINVAL);
    assert_true(mmh_errmsg()[0] != 0);
    assert_fail_errno(mmh_snapshot(h, NULL), EINVAL);
    assert_fail_errno(mmh_wait(h, 1), ECHILD);
    assert_int_equal(tu_stats(h).jobs, 0);
    assert_int_equal(mmh_close(h), 0);

    /* shared heap: no copy-on-write */
    char *path = tu_path("shared.heap");
    char *img = tu_path("shared.img");
    mmh_config cfg = tu_cfg(MMH_CREATE | MMH_SHARED, 0, 0);
    h = mmh_open(path, &cfg);
    assert_non_null(h);
    assert_non_null(vstate_build(h, 8, 100, 5000, 1));
    assert_fail_errno(mmh_snapshot(h, img), EINVAL);
    if (!strstr(mmh_errmsg(), path) && !strcasestr(mmh_errmsg(), "shared"))
        fail_msg("the refusal names neither the heap nor the reason: %s", mmh_errmsg());
    assert_fail_errno(mmh_commit_bg(h), EINVAL);
    assert_fail_errno(mmh_wait(h, 0), ECHILD);
    assert_int_equal(tu_file_size(img), -1);
    assert_int_equal(mmh_close(h), 0);

    /* private heap: a snapshot over its own file, however spelled */
    free(path);
    path = make_file_heap("own.heap", 8, 100, 5000, 1);
    h = mmh_open(path, NULL);
    assert_non_null(h);
    assert_int_equal(vstate_set(h, mmh_root(h), 2), 0);
    char alt[PATH_MAX];
    assert_fail_errno(mmh_snapshot(h, path), EINVAL);
    assert_errmsg_contains(path);
    tu_dir_join(alt, sizeof alt, "./own.heap");
    assert_fail_errno(mmh_snapshot(h, alt), EINVAL);
    tu_dir_join(alt, sizeof alt, "/own.heap");
    assert_fail_errno(mmh_snapshot(h, alt), EINVAL);
    assert_fail_errno(mmh_wait(h, 0), ECHILD);
    assert_int_equal(mmh_commit(h), 0);
    assert_int_equal(mmh_close(h), 0);
    struct expect e;
    vexpect(&e, 8, 100, 5000, 2);
    check_file(path, &e);

    /* read-only heap: no bg commit */
    cfg = tu_cfg(MMH_READONLY, 0, 0);
    h = mmh_open(path, &cfg);
    assert_non_null(h);
    assert_fail_errno(mmh_commit_bg(h), EROFS);
    assert_fail_errno(mmh_wait(h, 0), ECHILD);
    assert_int_equal(state_check(h, &e), 0);
    assert_int_equal(mmh_close(h), 0);
    unlink(path);
    free(path);
    free(img);
}

/* Touches (stores the same byte into) one byte in every page of every
 * object's payload; returns the number of pages. */
static uint64_t touch_pages(struct sroot *s)
{
    uint64_t pages = 0;
    for (uint64_t i = 0; i < s->nobj; i++) {
        struct obj *o = s->objs[i];
        uintptr_t lo = ((uintptr_t)o->data + 4095) & ~(uintptr_t)4095;
        for (uintptr_t a = lo; a < (uintptr_t)o->data + o->len; a += 4096) {
            volatile unsigned char *q = (volatile unsigned char *)a;
            *q = *q;
            pages++;
        }
    }
    return pages;
}

static void check_job_stats(mmh_heap *h, uint64_t jobs, uint64_t min_bytes, uint64_t touched)
{
    struct mmh_stats st = tu_stats(h);
    assert_int_equal(st.jobs, jobs);
    assert_int_equal(st.jobs_failed, 0);
    assert_int_equal(st.job_running, 0);
    assert_true(st.last_fork_ns > 0);
    assert_true(st.last_fork_ns < 5000000000ull);
    assert_true(st.last_job_ns > 0);
    if (st.last_job_bytes < min_bytes)
        fail_msg("last_job_bytes %llu < %llu bytes of data", (unsigned long long)st.last_job_bytes,
                 (unsigned long long)min_bytes);
    if (touched) {
        if (st.cow_pages < touched / 2 || st.cow_pages > st.size / 4096 + 64)
            fail_msg("cow_pages %llu after writing %llu pages during the job",
                     (unsigned long long)st.cow_pages, (unsigned long long)touched);
    } else if (st.cow_pages > 16) {
        fail_msg("cow_pages %llu with no writes during the job",
                 (unsigned long long)st.cow_pages);
    }
}

static char *img_name(int i)
{
    char name[32];
    snprintf(name, sizeof name, "stats%d.img", i);
    return tu_path(name);
}

/* Statistics of two snapshots of h (closed after): with writes to every
 * page during the first, none during the second. */
static void job_stats_anon(mmh_heap *h, char *img, size_t lmin, size_t lmax)
{
    struct expect e;
    vexpect(&e, 32, lmin, lmax, 1);
    uint64_t data = expect_bytes(&e);
    struct sroot *s = vstate_build(h, 32, lmin, lmax, 1);
    assert_non_null(s);
    struct mmh_stats st = tu_stats(h);
    assert_int_equal(st.jobs, 0);
    assert_int_equal(st.job_running, 0);
    assert_int_equal(mmh_snapshot(h, img), 0);
    pid_t job = job_stop();
    uint64_t touched = 0;
    if (job) {
        touched = touch_pages(s);   /* copies while the job holds them */
        job_cont(job);
    }
    assert_int_equal(mmh_wait(h, 0), 0);
    check_job_stats(h, 1, data, touched);
    if (!job)
        print_message("snapshot job ended before it was stopped: cow_pages not checked\n");
    check_image(img, &e);
    /* no writes during the next job */
    assert_int_equal(mmh_snapshot(h, img), 0);
    job = job_stop();
    if (job) {
        sleep_ms(20);
        job_cont(job);
    }
    assert_int_equal(mmh_wait(h, 0), 0);
    check_job_stats(h, 2, data, 0);
    check_image(img, &e);
    assert_int_equal(mmh_close(h), 0);
    free(img);
}

static void test_job_stats(void **state)
{
    (void)state;
    size_t lmin = 32 * KiB, lmax = (size_t)tu_scaled(128 * KiB, 64 * KiB);

    /* snapshot of an anonymous heap */
    mmh_heap *h = mmh_open(NULL, NULL);
    assert_non_null(h);
    job_stats_anon(h, img_name(0), lmin, lmax);
    /* and of one in transparent huge pages: copy-on-write stays per page */
    mmh_config hcfg = tu_cfg(MMH_HUGEPAGES, 0, 0);
    h = mmh_open(NULL, &hcfg);
    assert_non_null(h);
    assert_true(tu_stats(h).flags & MMH_HUGEPAGES);
    job_stats_anon(h, img_name(1), lmin, lmax);

    /* background commit of a file heap */
    struct expect e;
    char *path = make_file_heap("stats.heap", 32, lmin, lmax, 1);
    h = mmh_open(path, NULL);
    assert_non_null(h);
    struct sroot *s = mmh_root(h);
    assert_int_equal(vstate_set(h, s, 2), 0);
    vexpect(&e, 32, lmin, lmax, 2);
    assert_int_equal(mmh_commit_bg(h), 0);
    pid_t job = job_stop();
    uint64_t touched = 0;
    if (job) {
        touched = touch_pages(s);
        job_cont(job);
    }
    assert_int_equal(mmh_wait(h, 0), 0);
    check_job_stats(h, 1, expect_bytes(&e) / 2, touched);
    assert_int_equal(mmh_commit_bg(h), 0);      /* only the touched pages */
    assert_int_equal(mmh_wait(h, 0), 0);
    check_job_stats(h, 2, 0, 0);
    assert_int_equal(mmh_close(h), 0);
    check_file(path, &e);
    free(path);
}

/* ============================================================ 7. volatile */

struct vol_arg {
    const char *img;
    const void *bytes;    /* the image as written */
    size_t      len;
    const struct expect *e1;
    const char *epath;    /* gets the final expected state */
};

static struct expect vol_e;

static int volatile_child(void *argp)
{
    child_init();
    struct vol_arg *a = argp;
    mmh_config cfg = tu_cfg(MMH_VOLATILE, 0, 0);
    mmh_heap *h = mmh_open(a->img, &cfg);
    CK(h != NULL);
    struct mmh_stats st;
    CK(mmh_stats(h, &st) == 0);
    CK(st.flags & MMH_VOLATILE);
    CK(state_check(h, a->e1) == 0);
    struct sroot *s = mmh_root(h);

    /* modify, replace, grow past the file */
    for (uint64_t i = 0; i < s->nobj; i += 2) {
        if (i % 4 == 0)
            CK(obj_replace(h, s, i, 2, 3000 + i * 17) == 0);
        else
            obj_rewrite(s->objs[i], 2);
    }
    s->big_len = a->len * 2 + 5 * MiB;
    s->big = mmh_alloc(h, s->big_len);
    CK(s->big != NULL);
    s->big_byte = 0xc7;
    memset(s->big, 0xc7, s->big_len);
    s->version = 2;
    CK(mmh_stats(h, &st) == 0);
    CK(st.size > a->len);
    errno = 0;
    CK(mmh_commit(h) == -1);
    CK(errno != 0);
    errno = 0;
    CK(mmh_commit_bg(h) == -1);
    CK(file_is(a->img, a->bytes, a->len));

    /* saved back over the same path */
    CK(mmh_snapshot(h, a->img) == 0);
    CK(mmh_wait(h, 0) == 0);
    CK(!file_is(a->img, a->bytes, a->len));
    CK(tu_file_size(a->img) >= (off_t)s->big_len);
    /* untouched objects still read right: the old file stays mapped */
    state_expect(h, s, &vol_e);
    CK(state_check(h, &vol_e) == 0);

    /* and again */
    for (uint64_t i = 1; i < s->nobj; i += 4)
        obj_rewrite(s->objs[i], 3);
    s->version = 3;
    state_expect(h, s, &vol_e);
    CK(mmh_snapshot(h, a->img) == 0);
    CK(mmh_wait(h, 0) == 0);
    size_t len2 = 0;
    void *bytes2 = tu_read_file(a->img, &len2);
    CK(bytes2 != NULL);
    CK(mmh_close(h) == 0);
    CK(file_is(a->img, bytes2, len2));          /* close writes nothing */

    /* a volatile session that only scribbles leaves the file alone */
    h = mmh_open(a->img, &cfg);
    CK(h != NULL);
    CK(state_check(h, &vol_e) == 0);
    s = mmh_root(h);
    for (uint64_t i = 0; i < s->nobj; i++)
        obj_rewrite(s->objs[i], 99);
    CK(mmh_alloc(h, 3 * MiB) != NULL);
    CK(mmh_close(h) == 0);
    CK(file_is(a->img, bytes2, len2));
    free(bytes2);

    /* an ordinary open sees the saved state */
    h = mmh_open(a->img, NULL);
    CK(h != NULL);
    CK(state_check(h, &vol_e) == 0);
    CK(mmh_close(h) == 0);
    CK(write_expect(a->epath, &vol_e) == 0);
    return 0;
}

static void test_volatile_round_trip(void **state)
{
    (void)state;
    char *img = tu_path("vol.img");
    char *ep = tu_path("vol.expect");
    size_t lmax = (size_t)tu_scaled(128 * KiB, 8 * KiB);
    struct expect e1;
    mmh_heap *h = anon_state(24, 1000, lmax, 1, &e1);
    assert_int_equal(mmh_snapshot(h, img), 0);
    assert_int_equal(mmh_wait(h, 0), 0);
    assert_int_equal(mmh_close(h), 0);   /* frees its base for the image */

    /* a missing image */
    char *missing = tu_path("missing.img");
    mmh_config cfg = tu_cfg(MMH_VOLATILE, 0, 0);
    assert_null_errno(mmh_open(missing, &cfg), ENOENT);
    assert_errmsg_contains(missing);
    assert_int_equal(tu_file_size(missing), -1);

    size_t len = 0;
    void *bytes = tu_read_file(img, &len);
    assert_non_null(bytes);
    struct vol_arg a = { img, bytes, len, &e1, ep };
    assert_child_ok(volatile_child, &a);
    struct expect e;
    assert_int_equal(read_expect(ep, &e), 0);
    check_file(img, &e);
    check_image(img, &e);
    free(bytes);
    free(missing);
    free(img);
    free(ep);
}

/* =========================================== 9. private file heap snapshot */

struct priv_arg {
    const char *path, *img;
    int         commit;
};

static int priv_child(void *argp)
{
    struct priv_arg *a = argp;
    mmh_heap *h;
    struct sroot *s = child_open(a->path, &h);
    CK(h != NULL);
    CK(s != NULL && s->version == 1);
    CK(vstate_set(h, s, 2) == 0);       /* uncommitted */
    CK(mmh_snapshot(h, a->img) == 0);
    CK(mmh_wait(h, 0) == 0);
    if (a->commit) {
        /* the snapshot took nothing from the next commit */
        CK(mmh_commit(h) == 0);
        raise(SIGKILL);
    }
    _exit(0);   /* no commit */
}

static void test_snapshot_private_file(void **state)
{
    (void)state;
    char *path = make_file_heap("priv.heap", 32, 2000, 60000, 1);
    char *img = tu_path("priv.img");
    struct expect e1, e2;
    vexpect(&e1, 32, 2000, 60000, 1);
    vexpect(&e2, 32, 2000, 60000, 2);
    struct priv_arg a = { path, img, 0 };
    assert_child_ok(priv_child, &a);
    check_file(path, &e1);      /* the heap file: its last commit */
    check_image(img, &e2);      /* the image: the state at the call */
    unlink(img);
    a.commit = 1;
    int st = tu_run_child(priv_child, &a);
    if (!WIFSIGNALED(st) || WTERMSIG(st) != SIGKILL)
        fail_msg("child did not reach its crash (status %#x)", st);
    check_file(path, &e2);
    check_image(img, &e2);
    free(path);
    free(img);
}

/* ================================================ 8. fork() by the program */

#define F8_RING 64

struct f8 {
    mmh_heap   *ha, *hf;
    atomic_int  stop;
    atomic_long ops;
    int         failed;
    char        why[256];
    void       *ring[2][F8_RING];
    size_t      rlen[2][F8_RING];
};

static struct f8 f8;
static void *f8_pre[64];

static void *f8_worker(void *arg)
{
    (void)arg;
    tu_rng rng = { 77 };
    for (unsigned k = 0; !atomic_load(&f8.stop); k++) {
        int which = (int)(k & 1);
        mmh_heap *h = which ? f8.hf : f8.ha;
        unsigned slot = (unsigned)(tu_rand(&rng) % F8_RING);
        if (f8.ring[which][slot]) {
            if (!tu_verify(f8.ring[which][slot], f8.rlen[which][slot], slot)) {
                snprintf(f8.why, sizeof f8.why, "worker: block corrupt");
                f8.failed = 1;
                return NULL;
            }
            mmh_free(h, f8.ring[which][slot]);
        }
        size_t n = tu_rand(&rng) % 64 == 0 ? tu_rand_range(&rng, 200 * KiB, 2 * MiB)
                                           : tu_rand_log(&rng, 1, 20000);
        void *p = mmh_alloc(h, n);
        if (!p) {
            snprintf(f8.why, sizeof f8.why, "worker: alloc(%zu): %s", n, mmh_errmsg());
            f8.failed = 1;
            return NULL;
        }
        tu_fill(p, n, slot);
        f8.ring[which][slot] = p;
        f8.rlen[which][slot] = n;
        atomic_fetch_add(&f8.ops, 1);
    }
    return NULL;
}

static int f8_child(void)
{
    child_init();
    alarm(20);   /* a deadlock kills it */
    tu_rng rng = { (uint64_t)getpid() };
    void *mine[128];
    size_t ml[128];
    memset(mine, 0, sizeof mine);
    for (int k = 0; k < 3000; k++) {
        mmh_heap *h = (k & 1) ? f8.hf : f8.ha;
        int i = (int)(tu_rand(&rng) % 64);
        int slot = i * 2 + (k & 1);
        if (mine[slot]) {
            CK(tu_verify(mine[slot], ml[slot], (uint64_t)slot + 1000));
            mmh_free(h, mine[slot]);
        }
        ml[slot] = tu_rand(&rng) % 50 == 0 ? tu_rand_range(&rng, 100 * KiB, 1 * MiB)
                                           : tu_rand_log(&rng, 1, 30000);
        mine[slot] = mmh_alloc(h, ml[slot]);
        CK(mine[slot] != NULL);
        tu_fill(mine[slot], ml[slot], (uint64_t)slot + 1000);
    }
    /* blocks the parent allocated before forking are free-able here */
    for (int i = 0; i < 64; i++)
        mmh_free((i & 1) ? f8.hf : f8.ha, f8_pre[i]);
    for (int slot = 0; slot < 128; slot++)
        if (mine[slot])
            mmh_free((slot & 1) ? f8.hf : f8.ha, mine[slot]);
    return 0;
}

static void test_app_fork_multithreaded(void **state)
{
    (void)state;
    if (under_valgrind())
        skip();
    memset(&f8, 0, sizeof f8);
    char *path = tu_path("fork.heap");
    mmh_config cfg = tu_cfg(MMH_CREATE, 0, 0);
    f8.hf = mmh_open(path, &cfg);
    assert_non_null(f8.hf);
    f8.ha = mmh_open(NULL, NULL);
    assert_non_null(f8.ha);
    for (int i = 0; i < 64; i++) {
        f8_pre[i] = mmh_alloc((i & 1) ? f8.hf : f8.ha, 100 + (size_t)i * 500);
        assert_non_null(f8_pre[i]);
    }
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, f8_worker, NULL), 0);
    long forks = tu_scaled(20, 3);
    tu_rng rng = { 5 };
    char why[256] = "";
    for (long k = 0; k < forks && !why[0] && !f8.failed; k++) {
        long before = atomic_load(&f8.ops);
        while (atomic_load(&f8.ops) - before < 50 && !f8.failed)
            sched_yield();
        sleep_ms((double)(tu_rand(&rng) % 3000) / 1000);
        fflush(stdout);
        fflush(stderr);
        pid_t pid = fork();
        if (pid < 0) {
            snprintf(why, sizeof why, "fork: %s", strerror(errno));
            break;
        }
        if (pid == 0)
            _exit(f8_child());
        int st;
        while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
            ;
        if (WIFSIGNALED(st))
            snprintf(why, sizeof why, "fork %ld: child killed by signal %d%s", k, WTERMSIG(st),
                     WTERMSIG(st) == SIGALRM ? " (deadlocked)" : "");
        else if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
            snprintf(why, sizeof why, "fork %ld: child exited with %d", k, WEXITSTATUS(st));
    }
    atomic_store(&f8.stop, 1);
    pthread_join(th, NULL);
    if (why[0])
        fail_msg("%s", why);
    if (f8.failed)
        fail_msg("%s", f8.why);
    for (int i = 0; i < 64; i++)
        mmh_free((i & 1) ? f8.hf : f8.ha, f8_pre[i]);
    assert_int_equal(mmh_close(f8.ha), 0);
    assert_int_equal(mmh_close(f8.hf), 0);
    unlink(path);
    free(path);
}

/* fork() by the program while a job runs: the child has no job of its own
 * to wait for (ECHILD at once, no hang), can start one, and the parent's
 * job finishes normally. */
static int fork_during_job_child(void *arg)
{
    child_init();
    alarm(20);
    mmh_heap *h = arg;
    errno = 0;
    CK(mmh_wait(h, 1) == -1 && errno == ECHILD);
    errno = 0;
    CK(mmh_wait(h, 0) == -1 && errno == ECHILD);
    char *img = tu_path("fjob2.img");
    CK(mmh_snapshot(h, img) == 0);
    CK(mmh_wait(h, 0) == 0);
    return 0;
}

static void test_app_fork_during_job(void **state)
{
    (void)state;
    size_t lmax = (size_t)tu_scaled(256 * KiB, 16 * KiB);
    struct expect e;
    mmh_heap *h = anon_state(32, lmax / 4, lmax, 4, &e);
    char *img1 = tu_path("fjob1.img");
    assert_int_equal(mmh_snapshot(h, img1), 0);
    pid_t job = job_stop();
    assert_child_ok(fork_during_job_child, h);
    job_cont(job);
    assert_int_equal(mmh_wait(h, 0), 0);
    assert_int_equal(tu_stats(h).jobs, 1);
    check_image(img1, &e);
    char img2[PATH_MAX];
    tu_dir_join(img2, sizeof img2, "fjob2.img");
    check_image(img2, &e);
    assert_int_equal(mmh_close(h), 0);
    free(img1);
}

/* The program reaps its children itself (waitpid(-1), SIGCHLD ignored):
 * mmh_wait still reports the job's outcome. */
static void test_wait_when_program_reaps(void **state)
{
    (void)state;
    struct expect e;
    mmh_heap *h = anon_state(16, 1000, 50000, 6, &e);
    char *img = tu_path("reaped.img");

    assert_int_equal(mmh_snapshot(h, img), 0);
    int st;
    pid_t r;
    while ((r = waitpid(-1, &st, 0)) < 0 && errno == EINTR)
        ;
    assert_true(r > 0);                 /* the program took the job */
    assert_int_equal(mmh_wait(h, 0), 0);
    check_image(img, &e);

    char bad[PATH_MAX];
    tu_dir_join(bad, sizeof bad, "nodir/x.img");
    errno = 0;
    int rc = mmh_snapshot(h, bad);
    if (rc == 0) {
        while ((r = waitpid(-1, &st, 0)) < 0 && errno == EINTR)
            ;
        assert_true(r > 0);
        errno = 0;
        rc = mmh_wait(h, 0);
    }
    assert_int_equal(rc, -1);
    assert_int_equal(errno, ENOENT);
    assert_errmsg_contains(bad);

    struct sigaction ign = { .sa_handler = SIG_IGN }, old;
    sigaction(SIGCHLD, &ign, &old);
    unlink(img);
    assert_int_equal(mmh_snapshot(h, img), 0);
    sleep_ms(50);
    rc = mmh_wait(h, 0);
    sigaction(SIGCHLD, &old, NULL);
    if (rc != 0)
        fail_msg("with SIGCHLD ignored: mmh_wait %d: %s", rc, mmh_errmsg());
    check_image(img, &e);
    assert_int_equal(tu_stats(h).jobs, 2); /* the missing directory: said at the call */
    assert_int_equal(tu_stats(h).jobs_failed, 0);
    assert_int_equal(mmh_close(h), 0);
    free(img);
}

/* ------------------------------------------------------------------ main */

static int test_setup(void **state)
{
    (void)state;
    alarm(180);   /* a hang fails the program instead of stalling it */
    return 0;
}

/* An anonymous heap's image leaves out pages never touched: a 64 MiB
 * block with 1 MiB and one page written costs about 1 MiB of writes and of
 * disk, and reads back exactly, zeros included. */
static void test_sparse_image(void **state)
{
    (void)state;
    const size_t big = 64u << 20, head = 1u << 20, far = 40u << 20;
    char *path = tu_path("sparse.img");
    mmh_heap *h = mmh_open(NULL, NULL);
    assert_non_null(h);
    unsigned char *b = mmh_alloc(h, big);
    assert_non_null(b);
    memset(b, 0x5a, head);
    memset(b + far, 0xa5, 4096);
    assert_int_equal(mmh_set_root(h, b), 0);
    assert_int_equal(mmh_snapshot(h, path), 0);
    assert_int_equal(mmh_wait(h, 0), 0);
    struct mmh_stats st = tu_stats(h);
    assert_int_equal(mmh_close(h), 0);
    if (st.last_job_bytes > 4 * head)
        fail_msg("the image wrote %llu bytes for %zu touched",
                 (unsigned long long)st.last_job_bytes, head + 4096);
    struct stat sb;
    assert_int_equal(stat(path, &sb), 0);
    assert_true((size_t)sb.st_size >= big);
    assert_true((size_t)sb.st_blocks * 512 < 4 * head);
    mmh_heap *g = mmh_open(path, NULL);
    if (!g)
        fail_msg("reopen %s: %s", path, mmh_errmsg());
    const unsigned char *r = mmh_root(g);
    assert_non_null(r);
    for (size_t i = 0; i < big; i++) {
        unsigned char want = i < head ? 0x5a : i >= far && i < far + 4096 ? 0xa5 : 0;
        if (r[i] != want)
            fail_msg("byte %zu of the block: %#x, want %#x", i, r[i], want);
    }
    assert_int_equal(mmh_close(g), 0);
    unlink(path);
    free(path);
}

int main(int argc, char **argv)
{
    if (argc == 5 && strcmp(argv[1], "--check") == 0)
        return image_checker(argv[2], argv[3], (unsigned)strtoul(argv[4], NULL, 0));
    resolve_real();
    /* the job children of killed test children become ours to reap */
    prctl(PR_SET_CHILD_SUBREAPER, 1);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_image_exact_under_writers, test_setup),
        cmocka_unit_test_setup(test_bg_commit_then_crash, test_setup),
        cmocka_unit_test_setup(test_bg_commit_kill_mid_job, test_setup),
        cmocka_unit_test_setup(test_bg_job_killed_after_log_sync, test_setup),
        cmocka_unit_test_setup(test_snapshot_bad_paths, test_setup),
        cmocka_unit_test_setup(test_failed_job_loses_nothing, test_setup),
        cmocka_unit_test_setup(test_wait_nohang, test_setup),
        cmocka_unit_test_setup(test_one_job_at_a_time, test_setup),
        cmocka_unit_test_setup(test_two_heaps_two_jobs, test_setup),
        cmocka_unit_test_setup(test_repeated_snapshots_one_path, test_setup),
        cmocka_unit_test_setup(test_kill_mid_snapshot, test_setup),
        cmocka_unit_test_setup(test_refusals, test_setup),
        cmocka_unit_test_setup(test_job_stats, test_setup),
        cmocka_unit_test_setup(test_volatile_round_trip, test_setup),
        cmocka_unit_test_setup(test_snapshot_private_file, test_setup),
        cmocka_unit_test_setup(test_app_fork_multithreaded, test_setup),
        cmocka_unit_test_setup(test_app_fork_during_job, test_setup),
        cmocka_unit_test_setup(test_wait_when_program_reaps, test_setup),
        cmocka_unit_test_setup(test_sparse_image, test_setup),
    };
    return TU_RUN(tests);
}
