/* The recorded workload: a heap created, foreground commits (one grows the
 * file, the next frees the growth, so a later commit punches holes),
 * background commits with stores while the job runs, two snapshot images
 * (the second replaces the first), a closing commit, then the image opened
 * writable (its log is created then) and committed in the foreground, in
 * the background and by close.  Checkpoints come between commits (and from
 * the library's own thread, and close), so later commits start new laps of
 * the log.  A third heap takes 200 small commits back to back, its log
 * staying at its first size, with checkpoints left to the library's thread:
 * they run while later commits go on, so the log fills and wraps (a lap at
 * its front while older commits wait for a checkpoint).  Before each commit it marks the version it writes; after the
 * commit returns, the acknowledgement. */
#define _GNU_SOURCE
#include "harness.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

struct wl {
    mmh_heap           *h;
    struct pl_manifest *m;
    uint64_t            rng, version;
    uint64_t            begun;   /* the version of the commit under way */
    const char         *name;
    mmh_tracker         tracker;
    char                path[PL_FILES][4096];
};

static uint64_t rnd(struct wl *w, uint64_t n)
{
    w->rng ^= w->rng << 13;
    w->rng ^= w->rng >> 7;
    w->rng ^= w->rng << 17;
    return w->rng % n;
}

static int fail(const char *what)
{
    fprintf(stderr, "powerloss workload: %s: %s\n", what, mmh_errmsg());
    return -1;
}

static void drop(struct wl *w, uint64_t i)
{
    mmh_free(w->h, mmh_at(w->h, w->m->obj[i].off));
    w->m->obj[i] = w->m->obj[--w->m->nobj];
}

static int add(struct wl *w, size_t size)
{
    if (w->m->nobj == PL_MAXOBJ)
        drop(w, 0);
    void *p = mmh_alloc(w->h, size);
    if (!p)
        return fail("mmh_alloc");
    struct pl_obj *o = &w->m->obj[w->m->nobj++];
    *o = (struct pl_obj){ mmh_offset(w->h, p), size, w->rng ^ ++w->version << 32 };
    pl_fill(p, size, o->seed);
    return 0;
}

/* One object, at random, written with new bytes. */
static void rewrite_one(struct wl *w)
{
    if (!w->m->nobj)
        return;
    struct pl_obj *o = &w->m->obj[rnd(w, w->m->nobj)];
    o->seed = w->rng ^ ++w->version << 32;
    pl_fill(mmh_at(w->h, o->off), o->size, o->seed);
}

/* Some frees, allocations of mixed sizes and one object rewritten. */
static int mutate(struct wl *w)
{
    for (uint64_t n = rnd(w, 3); n && w->m->nobj; n--)
        drop(w, rnd(w, w->m->nobj));
    for (uint64_t n = 1 + rnd(w, 3); n; n--) {
        uint64_t kind = rnd(w, 20);
        size_t size = kind < 14 ? 16 + rnd(w, 2000) : kind < 19 ? 4096 + rnd(w, 300000)
                                                                : (1u << 20) + rnd(w, 1u << 20);
        if (add(w, size) != 0)
            return -1;
    }
    rewrite_one(w);
    return 0;
}

/* The state in memory becomes the next version, marked as begun. */
static void begin(struct wl *w)
{
    w->m->version = w->begun = ++w->version;
    pl_record_mark(PL_BEGIN, w->name, w->begun, pl_digest(w->m));
}

/* rc of the commit (or job): acknowledged, or failed (an injected fault:
 * the workload stops; 1 tells the caller). */
static int settle(struct wl *w, int rc, const char *what)
{
    if (rc == 0) {
        pl_record_mark(PL_ACK, w->name, w->begun, 0);
        return 0;
    }
    pl_record_mark(PL_FAILED, w->name, w->begun, 0);
    fprintf(stderr, "powerloss workload: %s failed (expected only under a fault): %s\n", what,
            mmh_errmsg());
    return 1;
}

static int commit_fg(struct wl *w)
{
    begin(w);
    return settle(w, mmh_commit(w->h), "mmh_commit");
}

/* A checkpoint now (it changes no version); failing only under a fault. */
static int checkpoint(struct wl *w)
{
    if (mmh_checkpoint(w->h) == 0)
        return 0;
    fprintf(stderr, "powerloss workload: mmh_checkpoint failed (expected only under a fault): "
            "%s\n", mmh_errmsg());
    return 1;
}

/* A background commit, with stores (the next version's) while it runs. */
static int commit_bg(struct wl *w)
{
    begin(w);
    if (mmh_commit_bg(w->h) != 0)
        return settle(w, -1, "mmh_commit_bg");
    if (mutate(w) != 0)
        return -1;
    return settle(w, mmh_wait(w->h, 0), "mmh_commit_bg's job");
}

/* Heap file k created (version 0: no root yet), its manifest at the root.
 * 0, 1 for a failed creation (a fault), -1 otherwise. */
static int create(struct wl *w, int k)
{
    mmh_config cfg = { .flags = MMH_CREATE | MMH_EXCL, .tracker = w->tracker };
    w->name = pl_files[k];
    pl_record_mark(PL_BEGIN, w->name, w->begun = 0, 0);
    if (!(w->h = mmh_open(w->path[k], &cfg)))
        return settle(w, -1, "mmh_open (create)");
    pl_record_mark(PL_ACK, w->name, 0, 0);
    if (!(w->m = mmh_calloc(w->h, 1, sizeof *w->m)))
        return fail("mmh_calloc");
    w->m->magic = PL_MAGIC;
    mmh_set_root(w->h, w->m);
    return 0;
}

static int on_heap(struct wl *w)
{
    int rc = create(w, 0);
    if (rc != 0)
        return rc;
    for (int i = 0; rc == 0 && i < 3; i++)
        rc = add(w, 100 + 5000 * (size_t)i);
    for (int i = 0; rc == 0 && i < 4; i++) {
        if (i == 2)
            rc = add(w, (size_t)6 << 20); /* past the first 4 MiB: the file grows */
        for (uint64_t j = 0; i == 3 && j < w->m->nobj; j++)
            if (w->m->obj[j].size == (size_t)6 << 20)
                drop(w, j); /* the growth goes back: its range is punched */
        rc = rc ? rc : i ? mutate(w) : 0;
        rc = rc ? rc : commit_fg(w);
        rc = rc ? rc : i == 1 ? checkpoint(w) : 0;
    }
    for (int i = 0; rc == 0 && i < 3; i++) {
        rc = mutate(w) ? -1 : commit_bg(w);
        rc = rc ? rc : i == 0 ? checkpoint(w) : 0;
    }
    for (int i = 0; rc == 0 && i < 2; i++) {
        if (mutate(w) != 0)
            return -1;
        w->name = pl_files[1];
        begin(w);
        rc = mmh_snapshot(w->h, w->path[1]) != 0 ? settle(w, -1, "mmh_snapshot")
                                                  : settle(w, mmh_wait(w->h, 0), "snapshot job");
        w->name = pl_files[0];
    }
    if (rc == 0 && mutate(w) != 0)
        return -1;
    /* After a failure too: close commits what it may. */
    begin(w);
    int closed = settle(w, mmh_close(w->h), "mmh_close");
    w->h = NULL;
    return rc ? rc : closed;
}

/* The last snapshot opened writable and committed. */
static int on_image(struct wl *w)
{
    mmh_config cfg = { .tracker = w->tracker };
    int rc;
    w->name = pl_files[1];
    if (!(w->h = mmh_open(w->path[1], &cfg))) /* its replay may sync */
        return settle(w, -1, "mmh_open (image)");
    w->m = mmh_root(w->h);
    rc = mutate(w) ? -1 : commit_fg(w);
    rc = rc ? rc : checkpoint(w);
    rc = rc ? rc : mutate(w) ? -1 : commit_bg(w);
    begin(w);
    int closed = settle(w, mmh_close(w->h), "mmh_close");
    return rc ? rc : closed;
}

static int on_laps(struct wl *w)
{
    int rc = create(w, 2);
    if (rc != 0)
        return rc;
    for (int i = 0; rc == 0 && i < 8; i++)
        rc = add(w, 200 + 300 * (size_t)i);
    for (int i = 0; rc == 0 && i < 200; i++) {
        rewrite_one(w);
        rc = commit_fg(w);
    }
    begin(w);
    int closed = settle(w, mmh_close(w->h), "mmh_close");
    w->h = NULL;
    return rc ? rc : closed;
}

int pl_workload(const char *dir, mmh_tracker tracker, int log_fd, uint64_t seed)
{
    struct wl w = { .rng = seed | 1, .tracker = tracker };
    for (int i = 0; i < PL_FILES; i++)
        snprintf(w.path[i], sizeof w.path[i], "%s/%s", dir, pl_files[i]);
    pl_record_start(log_fd, dir);
    int rc = on_heap(&w);
    if (rc == 0)
        rc = on_image(&w);
    if (rc == 0)
        rc = on_laps(&w);
    pl_record_stop();
    return rc < 0 ? -1 : 0;
}
