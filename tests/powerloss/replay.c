/* The harness's driver: record the workload in a child, then walk the
 * record with the model (model.c) and, at crash points, build crash
 * states in a scratch directory and check each in a child (check.c).
 *
 * A crash state at point k: each file's durable contents, then each of
 * its pending changes kept, lost or (a write) torn at 512-byte sectors of
 * the file, in order; the directory's durable names, then a prefix of its
 * pending changes.  Per point: the extremes (all kept; none; only the
 * last write; file changes without directory changes and the reverse; all
 * but the last write torn) and random mixtures.  States that come out
 * byte-identical, with the same versions allowed, are checked once. */
#define _GNU_SOURCE
#include "model.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define FIXED   6  /* the extremes, variants 0..5 */
#define RANDOM  58 /* random mixtures per point, at most */
#define SECTOR  512
#define PAGE    4096

enum { LOST, KEPT, TORN };

struct state {
    unsigned *rec;     /* the pending file changes, in record order */
    unsigned *fate;    /* LOST, KEPT or TORN                        */
    uint64_t *seed;    /* TORN: which sectors                      */
    size_t    n;
    size_t    dir_kept; /* pending directory changes kept (a prefix) */
};

static uint64_t mix(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    return x ^ x >> 33;
}

static int cmp_unsigned(const void *a, const void *b)
{
    unsigned x = *(const unsigned *)a, y = *(const unsigned *)b;
    return x < y ? -1 : x > y;
}

/* The changes pending at this point, and their fates in variant v. */
static void decide(const struct pl_model *m, unsigned v, uint64_t seed, struct state *s)
{
    s->n = 0;
    for (unsigned f = 0; f < m->nfile; f++)
        for (size_t j = 0; j < m->file[f].npend; j++)
            s->rec[s->n++] = m->file[f].pend[j];
    qsort(s->rec, s->n, sizeof *s->rec, cmp_unsigned);
    uint64_t rng = mix(seed);
    for (size_t i = 0; i < s->n; i++) {
        bool last = i + 1 == s->n;
        bool write = m->rec[s->rec[i]]->op == PL_WRITE;
        rng = mix(rng + i);
        s->seed[i] = rng;
        switch (v) {
        case 0: case 4: s->fate[i] = KEPT; break;
        case 1: case 3: s->fate[i] = LOST; break;
        case 2: s->fate[i] = last ? KEPT : LOST; break;
        case 5: s->fate[i] = last && write ? TORN : KEPT; break;
        default:
            s->fate[i] = rng % 20 < 9 ? KEPT : rng % 20 < 16 || !write ? LOST : TORN;
        }
    }
    s->dir_kept = v == 1 || v == 4 ? 0 : v < FIXED ? m->ndpend
                                                    : mix(rng) % (m->ndpend + 1);
}

/* ---- building a state -------------------------------------------------- */

static int clear_dir(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return -1;
    for (struct dirent *e; (e = readdir(d));)
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
            unlinkat(dirfd(d), e->d_name, 0);
    closedir(d);
    return 0;
}

static bool zero(const char *p, size_t n)
{
    static const char zeros[PAGE];
    return memcmp(p, zeros, n) == 0;
}

/* The durable contents: the runs of pages that are not all zeros. */
static int write_durable(int fd, const struct pl_file *f)
{
    for (size_t off = 0, run = 0;; off += PAGE) {
        bool end = off >= f->size;
        size_t n = end ? 0 : f->size - off < PAGE ? f->size - off : PAGE, stop;
        if (!end && !zero(f->buf + off, n))
            continue;
        stop = end ? f->size : off;
        if (stop > run && pwrite(fd, f->buf + run, stop - run, (off_t)run) != (ssize_t)(stop - run))
            return -1;
        if (end)
            return ftruncate(fd, (off_t)f->size);
        run = off + PAGE;
    }
}

/* A pending change applied to the state's file: kept, or a write torn
 * (each 512-byte sector of the file it covers kept or not). */
static int apply_file(int fd, const struct pl_rec *r, const char *data, unsigned fate,
                      uint64_t seed)
{
    if (r->op == PL_TRUNC)
        return ftruncate(fd, (off_t)r->off);
    if (r->op == PL_FALLOC) {
        if (fallocate(fd, (int)r->arg, (off_t)r->off, (off_t)r->len) == 0)
            return 0;
        return errno == EOPNOTSUPP ? 0 : -1;
    }
    /* Runs of kept sectors, one write each. */
    for (uint64_t at = r->off, end = r->off + r->len, run = at, i = 0; run < end; i++) {
        uint64_t next = (at / SECTOR + 1) * SECTOR < end ? (at / SECTOR + 1) * SECTOR : end;
        bool keep = at < end && (fate == KEPT || mix(seed + i) & 1);
        if (!keep && at > run &&
            pwrite(fd, data + (run - r->off), at - run, (off_t)run) != (ssize_t)(at - run))
            return -1;
        if (!keep)
            run = next;
        at = next;
    }
    return 0;
}

/* The named files of a state, and for each a hash of how it is made: the
 * file, its durable contents (by syncs applied), each pending change's
 * fate.  Equal hashes, equal bytes: states are told apart without being
 * built. */
struct built {
    unsigned       n;
    struct pl_dent names[PL_MAX_NAMES];
    uint64_t       hash[PL_MAX_NAMES];
};

static uint64_t built_hash(const struct built *b, const char *name)
{
    for (unsigned i = 0; i < b->n; i++)
        if (strcmp(b->names[i].name, name) == 0)
            return b->hash[i];
    return 0;
}

static void plan(const struct pl_model *m, const struct state *s, struct built *b)
{
    b->n = m->ndir;
    memcpy(b->names, m->dir, sizeof b->names);
    for (size_t i = 0; i < s->dir_kept; i++)
        pl_dir_apply(m, b->names, &b->n, m->dpend[i]);
    for (unsigned i = 0; i < b->n; i++) {
        unsigned f = b->names[i].file;
        uint64_t h = mix(f + 1) ^ mix(m->file[f].syncs + 0x9e3779b97f4a7c15ull);
        for (size_t j = 0; j < s->n; j++)
            if (m->rec_file[s->rec[j]] == f)
                h = mix(h ^ mix(s->rec[j] * 4ull + s->fate[j]) ^
                        (s->fate[j] == TORN ? s->seed[j] : 0));
        b->hash[i] = h;
    }
}

/* Make the state planned in b in dir. */
static int build(const struct pl_model *m, const struct state *s, const char *dir,
                 const struct built *b)
{
    const struct pl_dent *names = b->names;
    unsigned n = b->n;
    char path[8192], first[PL_MAX_FILES][PL_NAME] = { { 0 } };
    if (clear_dir(dir) != 0)
        return -1;
    for (unsigned i = 0; i < n; i++) {
        unsigned f = names[i].file;
        snprintf(path, sizeof path, "%s/%s", dir, names[i].name);
        if (first[f][0]) { /* a second name of the same file */
            char from[8192];
            snprintf(from, sizeof from, "%s/%s", dir, first[f]);
            if (link(from, path) != 0)
                return -1;
            continue;
        }
        memcpy(first[f], names[i].name, PL_NAME);
        int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
        if (fd < 0 || write_durable(fd, &m->file[f]) != 0)
            return -1;
        for (size_t j = 0; j < s->n; j++)
            if (m->rec_file[s->rec[j]] == f && s->fate[j] != LOST &&
                apply_file(fd, m->rec[s->rec[j]], m->data[s->rec[j]], s->fate[j],
                           s->seed[j]) != 0) {
                close(fd);
                return -1;
            }
        close(fd);
    }
    return 0;
}

/* ---- checking ---------------------------------------------------------- */

static int check(const struct pl_model *m, const char *dir, unsigned which,
                 mmh_tracker tracker, const char *tool, char *why, size_t size)
{
    int pfd[2];
    if (pipe(pfd) != 0)
        return -1;
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        close(pfd[0]);
        alarm(60);
        pl_record_no_syncs();
        char msg[1024] = "";
        int rc = pl_check_state(dir, m->expect, which, tracker, tool, msg, sizeof msg);
        (void)!write(pfd[1], msg, strlen(msg));
        _exit(rc);
    }
    close(pfd[1]);
    size_t got = 0;
    ssize_t n;
    while (got + 1 < size && ((n = read(pfd[0], why + got, size - 1 - got)) > 0 ||
                              (n < 0 && errno == EINTR)))
        got += n > 0 ? (size_t)n : 0;
    why[got] = '\0';
    close(pfd[0]);
    int status;
    if (pid < 0 || waitpid(pid, &status, 0) != pid)
        return -1;
    if (WIFSIGNALED(status))
        snprintf(why, size, "the checker died of signal %d%s", WTERMSIG(status),
                 WTERMSIG(status) == SIGALRM ? " (hung)" : "");
    return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : 1;
}

static void report(const struct pl_model *m, const struct state *s, unsigned v,
                   const char *why)
{
    char line[256];
    pl_describe(m, m->at - 1, line, sizeof line);
    fprintf(stderr, "powerloss: VIOLATION: %s\n  crash after %s (variant %u)\n", why, line, v);
    for (size_t i = 0, shown = 0; i < s->n; i++) {
        if (s->fate[i] == KEPT)
            continue;
        if (++shown > 10) {
            fprintf(stderr, "  ...\n");
            break;
        }
        pl_describe(m, s->rec[i], line, sizeof line);
        fprintf(stderr, "  %s: %s\n", s->fate[i] == LOST ? "lost" : "torn", line);
    }
    for (size_t i = s->dir_kept; i < m->ndpend; i++) {
        pl_describe(m, m->dpend[i], line, sizeof line);
        fprintf(stderr, "  lost (directory not synced): %s\n", line);
    }
}

/* ---- the run ----------------------------------------------------------- */

static int record(const char *work, const char *log, const struct pl_options *o)
{
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
        pl_record_faults(o->skip_sync, o->fail_sync);
        _exit(fd < 0 || pl_workload(work, o->tracker, fd, o->seed) != 0);
    }
    int status;
    if (pid < 0 || waitpid(pid, &status, 0) != pid || !WIFEXITED(status) ||
        WEXITSTATUS(status) != 0) {
        fprintf(stderr, "powerloss: the workload failed\n");
        return -1;
    }
    return 0;
}

/* A set of 64-bit hashes. */
struct set {
    uint64_t *v;
    size_t    n, cap;
};

/* Was h in the set?  Adds it if not. */
static bool set_add(struct set *s, uint64_t h)
{
    h += !h; /* 0 marks a free slot */
    if (2 * (s->n + 1) > s->cap) {
        struct set t = { .cap = s->cap ? 2 * s->cap : 1024 };
        if (!(t.v = calloc(t.cap, sizeof *t.v)))
            abort();
        for (size_t i = 0; i < s->cap; i++)
            if (s->v[i])
                set_add(&t, s->v[i]);
        free(s->v);
        *s = t;
    }
    size_t at = h % s->cap;
    for (; s->v[at]; at = (at + 1) % s->cap)
        if (s->v[at] == h)
            return true;
    s->v[at] = h;
    s->n++;
    return false;
}

static bool set_has(const struct set *s, uint64_t h)
{
    h += !h;
    for (size_t at = s->cap ? h % s->cap : 0; s->cap && s->v[at]; at = (at + 1) % s->cap)
        if (s->v[at] == h)
            return true;
    return false;
}

static bool crash_point(const struct pl_rec *r)
{
    return r->op != PL_BEGIN && r->op != PL_RANGE;
}

static void count(const struct pl_model *m, struct pl_result *res)
{
    res->records = m->nrec;
    for (unsigned i = 0; i < m->nrec; i++) {
        const struct pl_rec *r = m->rec[i];
        res->points += crash_point(r);
        res->writes += r->op == PL_WRITE;
        res->syncs += r->op == PL_SYNC || r->op == PL_FAILSYNC;
        res->failed_syncs += r->op == PL_FAILSYNC;
        res->dirsyncs += r->op == PL_DIRSYNC;
        res->punches += r->op == PL_FALLOC && (r->arg & FALLOC_FL_PUNCH_HOLE);
        res->truncs += r->op == PL_TRUNC;
        res->links += r->op == PL_LINK || r->op == PL_RENAME || r->op == PL_CREATE;
    }
}

/* Walk the record, checking about o->states states spread evenly over
 * its crash points: at each, the variants in turn from a random one
 * (all of them when the budget allows), with what duplicates leave over
 * carried to the next point.  A
 * heap file found byte for byte as in a state checked before (with its
 * log, and the same versions allowed) is not checked again. */
static int walk(struct pl_model *m, const char *state, const char *tool,
                const struct pl_options *o, struct pl_result *res)
{
    size_t cap = m->nrec + 1;
    struct state s = { .rec = calloc(cap, sizeof *s.rec), .fate = calloc(cap, sizeof *s.fate),
                       .seed = calloc(cap, sizeof *s.seed) };
    struct set states = { 0 }, sound = { 0 };
    struct built b;
    double quota = 0, per_point = (double)o->states / res->points;
    uint64_t rng = mix(o->seed), key[PL_FILES];
    char why[1024], wal[PL_NAME + 16];
    int rc = s.rec && s.fate && s.seed ? 0 : -1;
    while (rc == 0 && m->at < m->nrec && res->states < o->states) {
        pl_model_step(m);
        if (!crash_point(m->rec[m->at - 1]))
            continue;
        quota += per_point;
        unsigned first = (unsigned)(mix(rng) % (FIXED + RANDOM));
        for (unsigned i = 0; rc == 0 && i < FIXED + RANDOM && quota >= 1; i++) {
            unsigned v = (first + i) % (FIXED + RANDOM);
            rng = mix(rng + v);
            decide(m, v, rng, &s);
            plan(m, &s, &b);
            uint64_t h = 0;
            unsigned which = 0;
            for (int k = 0; k < PL_FILES; k++) {
                snprintf(wal, sizeof wal, "%s.wal", pl_files[k]);
                key[k] = mix(built_hash(&b, pl_files[k]) ^ mix(built_hash(&b, wal) + k));
                key[k] = pl_hash(key[k], &m->expect[k], sizeof m->expect[k]);
                h = mix(h ^ key[k]);
                if (!set_has(&sound, key[k]))
                    which |= 1u << k;
            }
            if (set_add(&states, h)) {
                res->duplicates++;
                continue;
            }
            if (which && build(m, &s, state, &b) != 0) {
                fprintf(stderr, "powerloss: cannot build a state in %s: %m\n", state);
                rc = -1;
                break;
            }
            res->states++;
            quota--;
            int bad = which ? check(m, state, which, o->tracker, tool, why, sizeof why) : 0;
            for (int k = 0; k < PL_FILES; k++)
                res->file_checks += which >> k & 1;
            for (int k = 0; bad == 0 && k < PL_FILES; k++)
                set_add(&sound, key[k]);
            if (bad < 0)
                rc = -1;
            else if (bad && res->violations++ < o->report)
                report(m, &s, v, why);
        }
    }
    free(s.rec);
    free(s.fate);
    free(s.seed);
    free(states.v);
    free(sound.v);
    return rc;
}

int pl_run(const char *tmp, const char *tool, const struct pl_options *o, struct pl_result *res)
{
    char base[4096], work[4200], state[4200], log[4200];
    struct pl_model m;
    memset(res, 0, sizeof *res);
    snprintf(base, sizeof base, "%s/powerloss.XXXXXX", tmp);
    if (!mkdtemp(base))
        return -1;
    snprintf(work, sizeof work, "%s/work", base);
    snprintf(state, sizeof state, "%s/state", base);
    snprintf(log, sizeof log, "%s/record", base);
    int rc = mkdir(work, 0700) || mkdir(state, 0700) ? -1 : record(work, log, o);
    int fd = rc == 0 ? open(log, O_RDONLY | O_CLOEXEC) : -1;
    struct stat st;
    void *p = fd >= 0 && fstat(fd, &st) == 0 && st.st_size > 0
              ? mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0) : MAP_FAILED;
    if (fd >= 0)
        close(fd);
    if (p == MAP_FAILED || pl_model_init(&m, p, (size_t)st.st_size) != 0) {
        fprintf(stderr, "powerloss: no record to replay in %s\n", log);
        rc = -1;
    }
    if (rc == 0) {
        count(&m, res);
        rc = walk(&m, state, tool, o, res);
        pl_model_free(&m);
    }
    if (p != MAP_FAILED)
        munmap(p, (size_t)st.st_size);
    if (!getenv("MMH_TEST_KEEP")) {
        clear_dir(work);
        clear_dir(state);
        unlink(log);
        rmdir(work);
        rmdir(state);
        rmdir(base);
    } else {
        fprintf(stderr, "powerloss: kept %s\n", base);
    }
    return rc;
}
