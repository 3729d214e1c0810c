/* The power-loss model: for each file, what precedes its last completed
 * sync is durable and each later change is pending; a failed sync loses
 * its file's pending changes; directory changes are pending until the
 * directory is synced.  Marks say which versions a heap file may hold: the
 * last acknowledged one and any begun after it. */
#define _GNU_SOURCE
#include "model.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void *grow(void *p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return p;
    size_t cap2 = *cap ? *cap : 16;
    while (cap2 < need)
        cap2 *= 2;
    p = realloc(p, cap2 * elem);
    if (!p)
        abort();
    *cap = cap2;
    return p;
}

int pl_model_init(struct pl_model *m, const char *p, size_t len)
{
    size_t cap = 0;
    memset(m, 0, sizeof *m);
    for (size_t at = 0; at < len;) {
        if (len - at < sizeof(struct pl_rec))
            return -1;
        const struct pl_rec *r = (const struct pl_rec *)(p + at);
        at += sizeof *r;
        size_t cap2 = cap;
        m->rec = grow(m->rec, &cap, m->nrec + 1, sizeof *m->rec);
        m->data = grow(m->data, &cap2, m->nrec + 1, sizeof *m->data);
        m->rec[m->nrec] = r;
        m->data[m->nrec++] = p + at;
        if (r->op == PL_WRITE) {
            if (len - at < r->len)
                return -1;
            at += r->len;
        }
    }
    m->rec_file = calloc(m->nrec + 1, sizeof *m->rec_file);
    m->dpend = calloc(m->nrec + 1, sizeof *m->dpend);
    return m->rec_file && m->dpend ? 0 : -1;
}

void pl_model_free(struct pl_model *m)
{
    for (unsigned i = 0; i < m->nfile; i++) {
        free(m->file[i].buf);
        free(m->file[i].pend);
    }
    free(m->rec);
    free(m->data);
    free(m->rec_file);
    free(m->dpend);
}

static unsigned new_file(struct pl_model *m, uint64_t ino)
{
    if (m->nfile == PL_MAX_FILES)
        abort();
    m->file[m->nfile] = (struct pl_file){ .ino = ino };
    return m->nfile++;
}

static unsigned file_of(struct pl_model *m, uint64_t ino)
{
    for (unsigned i = m->nfile; i-- > 0;)
        if (m->file[i].ino == ino)
            return i;
    return new_file(m, ino);
}

/* A write, truncation or fallocate made durable. */
static void apply_mem(struct pl_file *f, const struct pl_rec *r, const char *data)
{
    size_t end = r->op == PL_TRUNC ? r->off : r->off + r->len;
    bool extends = r->op == PL_WRITE || r->op == PL_TRUNC ||
                   (r->op == PL_FALLOC && !(r->arg & FALLOC_FL_KEEP_SIZE));
    if (extends && end > f->size) {
        f->buf = grow(f->buf, &f->cap, end, 1);
        memset(f->buf + f->size, 0, end - f->size);
        f->size = end;
    }
    if (r->op == PL_TRUNC)
        f->size = end;
    else if (r->op == PL_WRITE)
        memcpy(f->buf + r->off, data, r->len);
    else if (r->op == PL_FALLOC && (r->arg & FALLOC_FL_PUNCH_HOLE) && r->off < f->size)
        memset(f->buf + r->off, 0, (end < f->size ? end : f->size) - r->off);
}

static int dent_find(const struct pl_dent *d, unsigned n, const char *name)
{
    for (unsigned i = 0; i < n; i++)
        if (strcmp(d[i].name, name) == 0)
            return (int)i;
    return -1;
}

/* Name `name` file `file` in d, replacing what it named. */
static void dent_set(struct pl_dent *d, unsigned *n, const char *name, unsigned file)
{
    int i = dent_find(d, *n, name);
    if (i < 0 && *n == PL_MAX_NAMES)
        abort();
    if (i < 0)
        i = (int)(*n)++;
    snprintf(d[i].name, sizeof d[i].name, "%s", name);
    d[i].file = file;
}

static void dent_remove(struct pl_dent *d, unsigned *n, const char *name)
{
    int i = dent_find(d, *n, name);
    if (i >= 0)
        d[i] = d[--*n];
}

void pl_dir_apply(const struct pl_model *m, struct pl_dent *d, unsigned *n, unsigned i)
{
    const struct pl_rec *r = m->rec[i];
    switch (r->op) {
    case PL_CREATE:
    case PL_LINK:
        dent_set(d, n, r->name, m->rec_file[i]);
        break;
    case PL_RENAME:
        dent_remove(d, n, r->name);
        dent_set(d, n, r->name2, m->rec_file[i]);
        break;
    case PL_UNLINK:
        dent_remove(d, n, r->name);
        break;
    }
}

static void expect_mark(struct pl_expect *e, const struct pl_rec *r)
{
    unsigned i = 0;
    while (i < e->n && e->version[i] != r->off)
        i++;
    if (r->op == PL_BEGIN && i == e->n && e->n < 8) {
        e->version[e->n] = r->off;
        e->digest[e->n++] = r->arg;
    } else if (r->op == PL_ACK && i < e->n) {
        e->acked = true;
        e->version[0] = e->version[i];
        e->digest[0] = e->digest[i];
        e->n = 1;
    } else if (r->op == PL_FAILED && i < e->n) {
        e->version[i] = e->version[--e->n];
        e->digest[i] = e->digest[e->n];
    }
}

void pl_model_step(struct pl_model *m)
{
    unsigned i = m->at++;
    const struct pl_rec *r = m->rec[i];
    struct pl_file *f;
    switch (r->op) {
    case PL_WRITE:
    case PL_TRUNC:
    case PL_FALLOC:
        f = &m->file[m->rec_file[i] = file_of(m, r->ino)];
        f->pend = grow(f->pend, &f->cappend, f->npend + 1, sizeof *f->pend);
        f->pend[f->npend++] = i;
        break;
    case PL_SYNC:
    case PL_FAILSYNC:
        f = &m->file[m->rec_file[i] = file_of(m, r->ino)];
        f->syncs++;
        for (size_t j = 0; r->op == PL_SYNC && j < f->npend; j++)
            apply_mem(f, m->rec[f->pend[j]], m->data[f->pend[j]]);
        f->npend = 0;
        break;
    case PL_RANGE:
        m->rec_file[i] = file_of(m, r->ino);
        break;
    case PL_CREATE:
        m->rec_file[i] = new_file(m, r->ino);
        if (r->name[0])
            m->dpend[m->ndpend++] = i;
        break;
    case PL_LINK:
    case PL_RENAME:
        m->rec_file[i] = file_of(m, r->ino);
        snprintf(m->file[m->rec_file[i]].name, PL_NAME, "%s",
                 r->op == PL_LINK ? r->name : r->name2);
        m->dpend[m->ndpend++] = i;
        break;
    case PL_UNLINK:
        m->dpend[m->ndpend++] = i;
        break;
    case PL_DIRSYNC:
        for (size_t j = 0; j < m->ndpend; j++)
            pl_dir_apply(m, m->dir, &m->ndir, m->dpend[j]);
        m->ndpend = 0;
        break;
    default:
        for (int k = 0; k < PL_FILES; k++)
            if (strcmp(r->name, pl_files[k]) == 0)
                expect_mark(&m->expect[k], r);
    }
    if (r->op == PL_CREATE && r->name[0])
        snprintf(m->file[m->rec_file[i]].name, PL_NAME, "%s", r->name);
}

void pl_describe(const struct pl_model *m, unsigned i, char *out, size_t size)
{
    static const char *const ops[] = { "?", "write", "truncate", "fallocate", "sync",
                                       "failed sync", "sync_file_range", "create", "link",
                                       "rename", "unlink", "directory sync", "begin", "ack",
                                       "failed" };
    const struct pl_rec *r = m->rec[i];
    const char *op = r->op < sizeof ops / sizeof *ops ? ops[r->op] : "?";
    const char *file = m->file[m->rec_file[i]].name[0] ? m->file[m->rec_file[i]].name
                                                        : "(unnamed)";
    switch (r->op) {
    case PL_WRITE:
    case PL_FALLOC:
        snprintf(out, size, "#%u pid %d %s %s [%llu, +%llu)%s", i, r->pid, op, file,
                 (unsigned long long)r->off, (unsigned long long)r->len,
                 r->op == PL_FALLOC && (r->arg & FALLOC_FL_PUNCH_HOLE) ? " punch" : "");
        break;
    case PL_TRUNC:
        snprintf(out, size, "#%u pid %d truncate %s to %llu", i, r->pid, file,
                 (unsigned long long)r->off);
        break;
    case PL_SYNC:
    case PL_FAILSYNC:
    case PL_RANGE:
        snprintf(out, size, "#%u pid %d %s %s", i, r->pid, op, file);
        break;
    case PL_BEGIN:
    case PL_ACK:
    case PL_FAILED:
        snprintf(out, size, "#%u %s %s version %llu", i, op, r->name,
                 (unsigned long long)r->off);
        break;
    default:
        snprintf(out, size, "#%u pid %d %s %s%s%s", i, r->pid, op, r->name,
                 r->op == PL_RENAME ? " -> " : "", r->name2);
    }
}
