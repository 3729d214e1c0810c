/* jobutil.c: the helpers of the background-job and fork tests
 * (tests/libtestheap.la; see jobutil.h).
 */
#include "jobutil.h"

#include <dirent.h>
#include <signal.h>
#include <sys/prctl.h>
#include <time.h>

/* ------------------------------------------------------------- the state */

static uint64_t obj_seed(uint64_t id, uint64_t seq)
{
    return (id << 40) ^ (seq * 0x9E3779B97F4A7C15ull) ^ 0x5eed;
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

void obj_rewrite(struct obj *o, uint64_t seq)
{
    o->seq = seq;
    tu_fill(o->data, o->len, obj_seed(o->id, seq));
}

int obj_replace(mmh_heap *h, struct sroot *s, uint64_t i, uint64_t seq, size_t len)
{
    struct obj *n = obj_new(h, i, seq, len);
    CK(n != NULL);
    struct obj *o = s->objs[i];
    s->objs[i] = n;
    mmh_free(h, o);
    return 0;
}

struct sroot *state_build(mmh_heap *h, uint64_t n, size_t lmin, size_t lmax,
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

/* At version v, object i is the one made at version vrepl(i, v), its
 * length vlen(i, vrepl(i, v), lmin, lmax). */
static int64_t vrepl(uint64_t i, uint64_t v) { return (int64_t)v - (int64_t)((i + v) % 4); }

static size_t vlen(uint64_t i, int64_t r, size_t lmin, size_t lmax)
{
    return lmin + (size_t)(tu_mix(i * 0x10001ull + (uint64_t)r * 0x9E37ull + 7) % (lmax - lmin + 1));
}

struct sroot *vstate_build(mmh_heap *h, uint64_t n, size_t lmin, size_t lmax, uint64_t v)
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

int vstate_set(mmh_heap *h, struct sroot *s, uint64_t v)
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

void vexpect(struct expect *e, uint64_t n, size_t lmin, size_t lmax, uint64_t v)
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

void state_expect(mmh_heap *h, const struct sroot *s, struct expect *e)
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

uint64_t expect_bytes(const struct expect *e)
{
    uint64_t b = e->big_len;
    for (uint64_t i = 0; i < e->nobj; i++)
        b += e->len[i];
    return b;
}

int state_check(mmh_heap *h, const struct expect *e)
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

int write_expect(const char *path, const struct expect *e)
{
    return tu_write_file(path, e, sizeof *e);
}

int read_expect(const char *path, struct expect *e)
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

/* ------------------------------------------------------- heaps of a state */

char *make_file_heap(const char *name, uint64_t n, size_t lmin, size_t lmax, uint64_t v)
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

mmh_heap *anon_state(uint64_t n, size_t lmin, size_t lmax, uint64_t v, struct expect *e)
{
    mmh_heap *h = mmh_open(NULL, NULL);
    assert_non_null(h);
    assert_non_null(vstate_build(h, n, lmin, lmax, v));
    vexpect(e, n, lmin, lmax, v);
    return h;
}

void check_file(const char *path, const struct expect *e)
{
    mmh_heap *h = mmh_open(path, NULL);
    if (!h)
        fail_msg("reopen of %s: %s", path, mmh_errmsg());
    assert_int_equal(state_check(h, e), 0);
    assert_int_equal(mmh_close(h), 0);
}

/* ------------------------------------------------- checking an image */

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

void job_tests_init(int argc, char **argv)
{
    if (argc == 5 && strcmp(argv[1], "--check") == 0)
        exit(image_checker(argv[2], argv[3], (unsigned)strtoul(argv[4], NULL, 0)));
    prctl(PR_SET_CHILD_SUBREAPER, 1);
}

int run_checker(const char *path, const struct expect *e, unsigned flags)
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

void check_image(const char *path, const struct expect *e)
{
    int st = run_checker(path, e, 0);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
        fail_msg("image %s does not hold the expected state (checker status %#x)", path, st);
}

/* ------------------------------------------------------ process helpers */

int setup_hang_alarm(void **state)
{
    (void)state;
    alarm(180);
    return 0;
}

void child_init(void)
{
    signal(SIGBUS, SIG_DFL);
    signal(SIGILL, SIG_DFL);
    signal(SIGFPE, SIG_DFL);
    signal(SIGABRT, SIG_DFL);
}

struct sroot *child_open(const char *path, mmh_tracker tracker, mmh_heap **hp)
{
    child_init();
    mmh_config cfg = tu_cfg(0, 0, 0);
    cfg.tracker = tracker;
    *hp = mmh_open(path, &cfg);
    return *hp ? mmh_root(*hp) : NULL;
}

void kill_group(pid_t pgid)
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

pid_t job_stop(void)
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

void job_cont(pid_t pid)
{
    if (pid > 0)
        kill(pid, SIGCONT);
}

int wait_poll(mmh_heap *h, long *ones)
{
    int r;
    while ((r = mmh_wait(h, 1)) == 1) {
        if (ones)
            (*ones)++;
        sleep_ms(1);
    }
    return r;
}

int snapshot_wait(mmh_heap *h, const char *path, int *in_job)
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

int under_valgrind(void)
{
    const char *pre = getenv("LD_PRELOAD");
    return pre && strstr(pre, "vgpreload");
}

int send_msg(int fd, char c, uint64_t v)
{
    struct msg m = { c, v };
    return write(fd, &m, sizeof m) == (ssize_t)sizeof m ? 0 : -1;
}

/* ------------------------------------------------------------ small things */

uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

void sleep_ms(double ms)
{
    struct timespec d = { (time_t)(ms / 1000), (long)(((long long)(ms * 1e6)) % 1000000000LL) };
    while (nanosleep(&d, &d) != 0 && errno == EINTR)
        ;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

char *dir_listing(const char *dir)
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

int file_is(const char *path, const void *bytes, size_t len)
{
    size_t n = 0;
    void *b = tu_read_file(path, &n);
    int same = b && n == len && memcmp(b, bytes, len) == 0;
    free(b);
    return same;
}
