/* Names: a table in the heap from names to blocks (layout.h has its
 * format).  The table and the names' records are blocks of the heap's own
 * allocator, so they commit with the heap, and the checker sees them as
 * the live blocks they are.  Everything read from the table is checked
 * before it is followed: a heap file is only as sound as its last writer
 * left it, and a lookup must never fault.
 *
 * h->names.lock is shared by lookups and walks and held alone by changes;
 * it is taken before h->lock (which the allocator takes), never after. */
#include "internal.h"

#include <errno.h>
#include <stddef.h>
#include <string.h>

static int corrupt(mmh_heap *h, uint64_t off, const char *what)
{
    return mmh_fail(EBADMSG, "%s: corrupt names table at offset %llu: %s (mmheap check "
                    "reports every problem)", h->path, (unsigned long long)off, what);
}

/* Does [off, off + len) lie inside the heap, past its header slice? */
static bool in_heap(const mmh_heap *h, uint64_t off, uint64_t len)
{
    size_t mapped = h->mapped;
    return off >= MMH_SLICE_SIZE && off <= mapped && len <= mapped - off;
}

/* The table: NULL with 0 when there is none, -1 when it is damaged. */
static int table(mmh_heap *h, mmh_names **tp)
{
    uint64_t off = h->hdr->names;
    *tp = NULL;
    if (!off)
        return 0;
    mmh_names *t = mmh_ptr(h, off);
    if (off % 8 || !in_heap(h, off, sizeof *t) || t->magic != MMH_NAMES_MAGIC)
        return corrupt(h, off, "bad header");
    if (t->cap < MMH_NAMES_MIN_CAP || (t->cap & (t->cap - 1)) || t->cap > MMH_MAX_MAX_SIZE ||
        !in_heap(h, off, sizeof *t + t->cap * sizeof t->slot[0]) || t->used >= t->cap ||
        t->count > t->used)
        return corrupt(h, off, "bad size or counts");
    *tp = t;
    return 0;
}

/* The record a slot refers to; NULL when it is damaged. */
static mmh_name_rec *record(mmh_heap *h, uint64_t slot)
{
    uint64_t off = slot & MMH_NAME_OFF_MASK;
    mmh_name_rec *r = mmh_ptr(h, off);
    if (off % 8 || !in_heap(h, off, offsetof(mmh_name_rec, name) + 1) ||
        !in_heap(h, off, offsetof(mmh_name_rec, name) + r->len + 1u) || r->name[r->len] ||
        !in_heap(h, r->value, 1)) {
        corrupt(h, off, "bad record");
        return NULL;
    }
    return r;
}

/* The smallest table with room for n names at half load or less. */
static uint64_t cap_for(uint64_t n)
{
    uint64_t cap = MMH_NAMES_MIN_CAP;
    while (cap / 2 < n)
        cap *= 2;
    return cap;
}

/* Where a name is in t (slot and rec), or where it would go (rec NULL). */
typedef struct probe {
    uint64_t     *slot;
    mmh_name_rec *rec;
} probe;

static int find(mmh_heap *h, mmh_names *t, const char *name, size_t len, uint64_t hash,
                probe *pr)
{
    uint64_t mask = t->cap - 1, *reuse = NULL;
    for (uint64_t n = 0, i = hash & mask; n < t->cap; n++, i = (i + 1) & mask) {
        uint64_t s = t->slot[i];
        if (s == 0) {
            *pr = (probe){ reuse ? reuse : &t->slot[i], NULL };
            return 0;
        }
        if (s == MMH_NAME_GONE) {
            if (!reuse)
                reuse = &t->slot[i];
            continue;
        }
        if ((s ^ hash) & ~MMH_NAME_OFF_MASK)
            continue;
        mmh_name_rec *r = record(h, s);
        if (!r)
            return -1;
        if (r->len == len && memcmp(r->name, name, len) == 0) {
            *pr = (probe){ &t->slot[i], r };
            return 0;
        }
    }
    return corrupt(h, mmh_off(h, t), "no empty slot");
}

/* Move the names of old (or none) into a new table of cap slots, or drop
 * the table when cap is 0.  The old table stays on failure. */
static int resize(mmh_heap *h, mmh_names *old, uint64_t cap, mmh_names **tp)
{
    mmh_names *t = NULL;
    if (cap) {
        t = mmh_calloc(h, 1, sizeof *t + cap * sizeof t->slot[0]);
        if (!t)
            return -1;
        t->magic = MMH_NAMES_MAGIC;
        t->seed = old ? old->seed : mmh_random_u64();
        t->cap = cap;
        for (uint64_t i = 0; old && i < old->cap; i++) {
            uint64_t s = old->slot[i];
            mmh_name_rec *r = s > MMH_NAME_GONE ? record(h, s) : NULL;
            if (s > MMH_NAME_GONE && !r) {
                mmh_free(h, t);
                return -1;
            }
            if (!r)
                continue;
            uint64_t hash = mmh_hash64(r->name, r->len, t->seed), j = hash & (cap - 1);
            while (t->slot[j])
                j = (j + 1) & (cap - 1);
            t->slot[j] = mmh_name_slot(s & MMH_NAME_OFF_MASK, hash);
            t->count++;
        }
        t->used = t->count;
    }
    h->hdr->names = t ? mmh_off(h, t) : 0;
    if (old)
        mmh_free(h, old);
    *tp = t;
    return 0;
}

static int put(mmh_heap *h, const char *name, size_t len, uint64_t value)
{
    mmh_names *t;
    probe pr;
    if (table(h, &t) != 0)
        return -1;
    if ((!t || (t->used + 1) * 4 > t->cap * 3) &&
        resize(h, t, cap_for((t ? t->count : 0) + 1), &t) != 0)
        return -1;
    uint64_t hash = mmh_hash64(name, len, t->seed);
    if (find(h, t, name, len, hash, &pr) != 0)
        return -1;
    if (pr.rec) {
        pr.rec->value = value;
        return 0;
    }
    mmh_name_rec *r = mmh_alloc(h, offsetof(mmh_name_rec, name) + len + 1);
    if (!r)
        return -1;
    r->value = value;
    r->len = (uint8_t)len;
    memcpy(r->name, name, len);
    r->name[len] = '\0';
    if (*pr.slot == 0)
        t->used++;
    *pr.slot = mmh_name_slot(mmh_off(h, r), hash);
    t->count++;
    return 0;
}

static int drop(mmh_heap *h, const char *name, size_t len)
{
    mmh_names *t;
    probe pr;
    if (table(h, &t) != 0)
        return -1;
    if (!t)
        return 0;
    if (find(h, t, name, len, mmh_hash64(name, len, t->seed), &pr) != 0)
        return -1;
    if (!pr.rec)
        return 0;
    *pr.slot = MMH_NAME_GONE;
    t->count--;
    mmh_free(h, pr.rec);
    /* Shrinking is housekeeping: the name is gone whether or not it can. */
    if (t->count == 0 || (t->count * 8 < t->cap && t->cap > MMH_NAMES_MIN_CAP))
        (void)resize(h, t, t->count ? cap_for(t->count) : 0, &t);
    return 0;
}

/* The heap whose names this thread is walking (mmh_name_each holds the
 * lock for its callback); 0: none. */
static __thread uint64_t tls_walking __attribute__((tls_model("initial-exec")));

static bool walking(const mmh_heap *h)
{
    return tls_walking == h->uid;
}

/* The lock, shared (reads) or alone; a thread in mmh_name_each's callback
 * holds it shared already, and may only read. */
static int names_enter(mmh_heap *h, const char *fn, bool reads)
{
    if (walking(h)) {
        if (reads)
            return 0;
        return mmh_fail(EDEADLK, "%s: %s: called from mmh_name_each's callback", h->path, fn);
    }
    if (reads)
        pthread_rwlock_rdlock(&h->names.lock);
    else
        pthread_rwlock_wrlock(&h->names.lock);
    return 0;
}

static void names_leave(mmh_heap *h)
{
    if (!walking(h))
        pthread_rwlock_unlock(&h->names.lock);
}

static int check_name(mmh_heap *h, const char *name, const char *fn, size_t *len)
{
    if (!h || !name)
        return mmh_fail(EINVAL, "%s: %s is NULL", fn, h ? "name" : "heap");
    *len = strnlen(name, MMH_NAME_MAX + 1);
    if (*len > MMH_NAME_MAX)
        return mmh_fail(ENAMETOOLONG, "%s: %s: name \"%.*s...\" is longer than %d bytes",
                        h->path, fn, 32, name, MMH_NAME_MAX);
    return 0;
}

int mmh_name_set(mmh_heap *h, const char *name, void *p)
{
    size_t len;
    mmh_page *pg;
    if (check_name(h, name, "mmh_name_set", &len) != 0)
        return -1;
    if (h->flags & MMH_READONLY)
        return mmh_fail(EROFS, "%s: heap is open read-only", h->path);
    if (p && !mmh_block_valid(h, p, &pg))
        return mmh_fail(EINVAL, "mmh_name_set: %p is not a block of heap %s", p, h->path);
    if (names_enter(h, "mmh_name_set", false) != 0)
        return -1;
    int rc = p ? put(h, name, len, mmh_off(h, p)) : drop(h, name, len);
    names_leave(h);
    return rc;
}

void *mmh_name_get(mmh_heap *h, const char *name)
{
    size_t len;
    mmh_names *t;
    probe pr = { 0 };
    if (check_name(h, name, "mmh_name_get", &len) != 0)
        return NULL;
    names_enter(h, "mmh_name_get", true);
    int rc = table(h, &t);
    if (rc == 0 && t)
        rc = find(h, t, name, len, mmh_hash64(name, len, t->seed), &pr);
    names_leave(h);
    if (rc != 0)
        return NULL;
    if (!pr.rec)
        return mmh_fail_null(ENOENT, "%s: no block is named \"%.*s\"", h->path, 64, name);
    return mmh_ptr(h, pr.rec->value);
}

int mmh_name_each(mmh_heap *h, int (*fn)(const char *name, void *p, void *arg), void *arg)
{
    mmh_names *t;
    if (!h || !fn)
        return mmh_fail(EINVAL, "mmh_name_each: %s is NULL", h ? "fn" : "heap");
    names_enter(h, "mmh_name_each", true);
    int rc = table(h, &t);
    uint64_t outer = tls_walking; /* a walk of another heap's names */
    tls_walking = h->uid;
    for (uint64_t i = 0; rc == 0 && t && i < t->cap; i++) {
        uint64_t s = t->slot[i];
        mmh_name_rec *r = s > MMH_NAME_GONE ? record(h, s) : NULL;
        if (s > MMH_NAME_GONE)
            rc = r ? fn(r->name, mmh_ptr(h, r->value), arg) : -1;
    }
    tls_walking = outer;
    names_leave(h);
    return rc;
}

/* fork(): no other thread is inside a call on the table meanwhile; one
 * forking from mmh_name_each's callback holds the lock already. */
void mmh_names_fork_prepare(mmh_heap *h)
{
    if (!walking(h))
        pthread_rwlock_wrlock(&h->names.lock);
}

/* The forking thread holds the lock in both processes; the child's lock
 * is made anew, since a glibc rwlock knows its writer by thread id, which
 * the child's thread does not share (an unlock there would count as a
 * reader's, and the next lock would wait forever). */
void mmh_names_fork_done(mmh_heap *h, bool child)
{
    if (walking(h))
        return;
    if (child)
        pthread_rwlock_init(&h->names.lock, NULL);
    else
        pthread_rwlock_unlock(&h->names.lock);
}
