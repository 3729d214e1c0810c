/* Threads and slots.  A thread allocating from a heap holds one of the
 * heap's slots; the binding (heap uid -> slot) sits in a small initial-exec
 * TLS array so the fast path finds it with one compare.  Slots are released
 * when the thread exits, when a binding is evicted, and wholesale when the
 * heap is opened again (owners of an earlier run mean nothing).
 *
 * The slots are in tables of MMH_SLOTS (layout.h), and a table is added
 * when the threads holding slots would leave fewer than MMH_SHARED_SLOTS
 * unheld, so every thread has a slot of its own however many there are
 * (up to MMH_SLOTS_MAX).  A bind takes the slot released last from a list
 * of the unheld ones, or the next one never used: O(1), not a scan.
 *
 * A thread with no slot of its own borrows one of MMH_SHARED_SLOTS shared
 * slots for each call, under that slot's lock: after its exit destructor
 * ran (frees from later destructors must not claim a slot that nothing
 * would release), or when no table could be added (the heap is full, or
 * has its most tables).  Bound threads stop MMH_SHARED_SLOTS short of the
 * tables, so the shared slots always exist; a borrower waits on a lock,
 * never in a retry loop. */
#define _GNU_SOURCE
#include "persist.h"
#include "track.h"

#include <errno.h>
#include <sched.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

__thread mmh_tbind mmh_tls_binds[MMH_TBINDS] __attribute__((tls_model("initial-exec")));
static __thread bool tls_exited __attribute__((tls_model("initial-exec")));
static __thread pthread_mutex_t *tls_borrowed __attribute__((tls_model("initial-exec")));

/* Owner of a shared slot: no thread's id + 1. */
#define SHARED_OWNER (UINT64_MAX - 1)

/* After a table could not be added, binds borrow this long before one
 * tries again (each try holds h->lock). */
#define TABLE_RETRY_NS 1000000000ull

static void slots_reown(mmh_heap *h, uint64_t token);

static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static mmh_heap *registry;
static uint64_t next_uid = 1;

/* The open heaps by base address, for mmh_heap_of; a close changes the
 * generation, which drops the threads' cached answers. */
static mmh_heap **by_base;
static size_t by_base_n, by_base_cap;
static _Atomic uint64_t by_base_gen = 1;
static __thread struct {
    uint64_t  gen;
    uintptr_t base, size;
    mmh_heap *h;
} tls_heap_of __attribute__((tls_model("initial-exec")));
static pthread_key_t exit_key;
static pthread_once_t exit_key_once = PTHREAD_ONCE_INIT;
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

/* fork() by the program: every heap's lock is held across it, so the child
 * finds the metadata consistent; the registry lock first, as elsewhere. */
static void fork_prepare(void)
{
    pthread_mutex_lock(&registry_lock);
    for (mmh_heap *h = registry; h; h = h->next_open) {
        mmh_names_fork_prepare(h);
        for (int i = 0; i < MMH_SHARED_SLOTS; i++) /* borrowers take them before lock */
            pthread_mutex_lock(&h->threads.share[i].lock);
        mmh_lock(h);
        mmh_persist_fork_prepare(h);
    }
    mmh_meta_fork_prepare();
}

static void unlock_shares(mmh_heap *h)
{
    for (int i = 0; i < MMH_SHARED_SLOTS; i++)
        pthread_mutex_unlock(&h->threads.share[i].lock);
}

static void fork_parent(void)
{
    mmh_meta_fork_done();
    for (mmh_heap *h = registry; h; h = h->next_open) {
        mmh_persist_fork_parent(h);
        mmh_unlock(h);
        unlock_shares(h);
        mmh_names_fork_done(h, false);
    }
    pthread_mutex_unlock(&registry_lock);
}

/* Only the forking thread lives on in the child: its slots stay its own
 * (under its new thread id), the others' are free to be adopted; the
 * parent's background job and any thread's hold on the job lock mean
 * nothing here. */
static void fork_child(void)
{
    uint64_t token = (uint64_t)gettid() + 1;
    mmh_meta_fork_done();
    for (mmh_heap *h = registry; h; h = h->next_open) {
        if (!(h->flags & MMH_READONLY))
            slots_reown(h, token);
        pthread_mutex_init(&h->job.lock, NULL);
        mmh_job_forget(h);
        mmh_track_forked(h);
        mmh_persist_fork_child(h);
        mmh_unlock(h);
        unlock_shares(h);
        mmh_names_fork_done(h, true);
    }
    pthread_mutex_unlock(&registry_lock);
}

static void install_atfork(void)
{
    pthread_atfork(fork_prepare, fork_parent, fork_child);
}

/* Index of the first heap in by_base whose base is above a. */
static size_t by_base_after(uintptr_t a)
{
    size_t lo = 0, hi = by_base_n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if ((uintptr_t)by_base[mid]->base <= a)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

int mmh_registry_add(mmh_heap *h)
{
    pthread_once(&atfork_once, install_atfork);
    for (int i = 0; i < MMH_SHARED_SLOTS; i++)
        pthread_mutex_init(&h->threads.share[i].lock, NULL);
    pthread_mutex_lock(&registry_lock);
    if (by_base_n == by_base_cap) {
        size_t cap = by_base_cap ? by_base_cap * 2 : 16;
        mmh_heap **v = mmh_meta_realloc(by_base, cap * sizeof *v);
        if (!v) {
            pthread_mutex_unlock(&registry_lock);
            return mmh_fail(ENOMEM, "%s: out of memory", h->path);
        }
        by_base = v;
        by_base_cap = cap;
    }
    size_t i = by_base_after((uintptr_t)h->base);
    memmove(&by_base[i + 1], &by_base[i], (by_base_n - i) * sizeof *by_base);
    by_base[i] = h;
    by_base_n++;
    h->uid = next_uid++;
    h->next_open = registry;
    registry = h;
    pthread_mutex_unlock(&registry_lock);
    return 0;
}

void mmh_registry_remove(mmh_heap *h)
{
    pthread_mutex_lock(&registry_lock);
    for (mmh_heap **pp = &registry; *pp; pp = &(*pp)->next_open) {
        if (*pp == h) {
            *pp = h->next_open;
            break;
        }
    }
    size_t i = by_base_after((uintptr_t)h->base) - 1;
    mmh_assert(i < by_base_n && by_base[i] == h);
    memmove(&by_base[i], &by_base[i + 1], (by_base_n - i - 1) * sizeof *by_base);
    by_base_n--;
    atomic_fetch_add_explicit(&by_base_gen, 1, memory_order_release);
    pthread_mutex_unlock(&registry_lock);
}

/* The thread's last answer stands while no heap was closed since; growth
 * only widens a heap, so a cached size too small only misses. */
mmh_heap *mmh_heap_of(const void *p)
{
    uintptr_t a = (uintptr_t)p;
    uint64_t gen = atomic_load_explicit(&by_base_gen, memory_order_acquire);
    if (tls_heap_of.gen == gen && a - tls_heap_of.base < tls_heap_of.size)
        return tls_heap_of.h;
    mmh_heap *h = NULL;
    pthread_mutex_lock(&registry_lock);
    size_t i = by_base_after(a);
    if (i > 0 && a - (uintptr_t)by_base[i - 1]->base < by_base[i - 1]->max_size)
        h = by_base[i - 1];
    if (h) { /* the generation changes only under the lock */
        tls_heap_of.gen = atomic_load_explicit(&by_base_gen, memory_order_relaxed);
        tls_heap_of.base = (uintptr_t)h->base;
        tls_heap_of.size = h->max_size;
        tls_heap_of.h = h;
    }
    pthread_mutex_unlock(&registry_lock);
    return h;
}

static void slot_release(mmh_heap *h, uint32_t id);

/* Release the slot of a binding whose heap may have been closed since,
 * trimming it first (this thread is still its owner). */
static void unbind(mmh_tbind *b)
{
    if (!b->uid)
        return;
    pthread_mutex_lock(&registry_lock);
    for (mmh_heap *h = registry; h; h = h->next_open) {
        if (h->uid == b->uid) {
            mmh_slot_trim(h, b->slot);
            slot_release(h, b->slot_id);
            break;
        }
    }
    pthread_mutex_unlock(&registry_lock);
    memset(b, 0, sizeof *b);
}

static void thread_exit(void *arg)
{
    (void)arg;
    for (int i = 0; i < MMH_TBINDS; i++)
        unbind(&mmh_tls_binds[i]);
    tls_exited = true;
}

static void make_exit_key(void)
{
    pthread_key_create(&exit_key, thread_exit);
}

static void slot_init(mmh_slot *slot)
{
    memset(slot, 0, sizeof *slot);
    for (unsigned c = 0; c < MMH_CLASSES; c++)
        slot->pages[c] = MMH_EMPTY_PAGE_OFF;
}

/* Take an unheld slot of h for `token`, under h->lock: the one released
 * last, else the next one never used; its id, or 0 when every slot of
 * the tables is held.  A slot that a remote free adopts for a moment is
 * passed over and stays listed. */
static uint32_t slot_claim(mmh_heap *h, uint64_t token)
{
    mmh_hdr *hdr = h->hdr;
    uint32_t *ids = h->threads.unheld;
    mmh_assert_locked(h);
    mmh_assert(hdr->slots_hwm <= hdr->nslots && h->threads.nunheld <= hdr->slots_hwm);
    for (uint32_t k = h->threads.nunheld; k-- > 0;) {
        uint32_t id = ids[k];
        uint64_t none = 0;
        if (atomic_compare_exchange_strong(&mmh_slot_at(h, id)->owner, &none, token)) {
            ids[k] = ids[--h->threads.nunheld];
            return id;
        }
    }
    if (hdr->slots_hwm == hdr->nslots)
        return 0;
    mmh_slot *slot = mmh_slot_at(h, hdr->slots_hwm + 1);
    slot_init(slot);
    atomic_store(&slot->owner, token);
    return ++hdr->slots_hwm;
}

/* The owner lets go of its slot: the next bind takes it. */
static void slot_release(mmh_heap *h, uint32_t id)
{
    mmh_lock(h);
    atomic_store(&mmh_slot_at(h, id)->owner, 0);
    h->threads.unheld[h->threads.nunheld++] = id;
    atomic_fetch_sub(&h->threads.bound, 1);
    mmh_unlock(h);
}

/* Table t (t > 0) in a new span, published for mmh_slot_at; the list of
 * unheld ids first gets room for its slots. */
static int table_new(mmh_heap *h, uint32_t t)
{
    mmh_hdr *hdr = h->hdr;
    uint32_t *ids = mmh_meta_realloc(h->threads.unheld,
                                     ((size_t)hdr->nslots + MMH_SLOTS) * sizeof *ids);
    if (!ids)
        return mmh_fail(ENOMEM, "%s: out of memory for a table of thread slots", h->path);
    h->threads.unheld = ids;
    mmh_page *pg = mmh_span_alloc(h, MMH_SLOT_TABLE_SLICES, 1, false);
    if (!pg)
        return -1; /* the heap is full: the reason names it */
    char *table = mmh_page_start(pg);
    pg->kind = MMH_PAGE_SLOTS;
    pg->flags = 0;
    pg->used = t;
    pg->free = mmh_off(h, table);
    mmh_metadata_made(h, table, (size_t)MMH_SLOT_TABLE_SLICES << MMH_SLICE_SHIFT);
    hdr->slot_tables[t - 1] = mmh_off(h, table);
    atomic_store_explicit(&h->threads.tables[t], (mmh_slot *)table, memory_order_release);
    hdr->nslots += MMH_SLOTS;
    return 0;
}

/* Another table, under h->lock; -1 with a reason when the heap has its
 * most tables or no room for one, and binds borrow for a while. */
static int table_add(mmh_heap *h)
{
    uint32_t t = h->hdr->nslots / MMH_SLOTS;
    if (t == MMH_SLOT_TABLES_MAX) {
        atomic_store(&h->threads.table_retry_ns, UINT64_MAX);
        return mmh_fail(EAGAIN, "%s: %u thread slots held, the most a heap has: further "
                        "threads take turns on %d shared slots", h->path, MMH_SLOTS_MAX,
                        MMH_SHARED_SLOTS);
    }
    if (table_new(h, t) != 0) {
        atomic_store(&h->threads.table_retry_ns, mmh_now_ns(CLOCK_MONOTONIC) + TABLE_RETRY_NS);
        return -1;
    }
    return 0;
}

/* May one more thread bind without a new table? */
static bool slot_room(const mmh_heap *h)
{
    return atomic_load_explicit(&h->threads.bound, memory_order_relaxed) + MMH_SHARED_SLOTS <
           h->hdr->nslots;
}

/* A slot of the thread's own, or 0 when the tables are held up to the
 * shared slots and none can be added. */
static uint32_t slot_bind(mmh_heap *h)
{
    uint32_t id = 0;
    if (!slot_room(h) && mmh_now_ns(CLOCK_MONOTONIC) <
                         atomic_load_explicit(&h->threads.table_retry_ns, memory_order_relaxed))
        return 0;
    mmh_lock(h);
    if ((slot_room(h) || table_add(h) == 0) && (id = slot_claim(h, (uint64_t)gettid() + 1)))
        atomic_fetch_add(&h->threads.bound, 1);
    mmh_unlock(h);
    return id;
}

static mmh_tbind bind_of(mmh_heap *h, uint32_t id)
{
    return (mmh_tbind){ .uid = h->uid, .base = h->base, .slot = mmh_slot_at(h, id),
                        .slot_id = id };
}

mmh_tbind *mmh_bind_slow(mmh_heap *h)
{
    mmh_tbind *binds = mmh_tls_binds;
    if (h->flags & MMH_READONLY) {
        mmh_fail(EROFS, "%s: heap is open read-only", h->path);
        return NULL;
    }
    for (int i = 1; i < MMH_TBINDS; i++) {
        if (binds[i].uid == h->uid) {
            mmh_tbind hit = binds[i];
            memmove(&binds[1], &binds[0], (size_t)i * sizeof *binds);
            binds[0] = hit;
            return &binds[0];
        }
    }
    uint32_t id = tls_exited ? 0 : slot_bind(h);
    if (!id) {
        errno = EAGAIN;
        return NULL;
    }
    pthread_once(&exit_key_once, make_exit_key);
    unbind(&binds[MMH_TBINDS - 1]);
    memmove(&binds[1], &binds[0], (MMH_TBINDS - 1) * sizeof *binds);
    binds[0] = bind_of(h, id);
    /* Bound first: pthread_setspecific may allocate (keys past the first
     * 32), and that malloc must find the binding. */
    pthread_setspecific(exit_key, binds);
    return &binds[0];
}

/* Take one of the shared slots for a call: the first whose lock is free,
 * starting at one picked by the thread's id (so that borrowers spread),
 * else wait for that one.  A shared slot is claimed on first use and keeps
 * its owner until the heap is opened again or the process forks. */
void mmh_slot_borrow(mmh_heap *h, mmh_tbind *b)
{
    unsigned first = (unsigned)(((uintptr_t)pthread_self() >> 12) * 0x9e3779b1u >> 16),
             k = first % MMH_SHARED_SLOTS;
    for (unsigned i = 0; i < MMH_SHARED_SLOTS; i++, k = (k + 1) % MMH_SHARED_SLOTS)
        if (pthread_mutex_trylock(&h->threads.share[k].lock) == 0)
            goto locked;
    k = first % MMH_SHARED_SLOTS;
    pthread_mutex_lock(&h->threads.share[k].lock);
locked:
    if (!h->threads.share[k].id) {
        /* Bound threads leave MMH_SHARED_SLOTS unheld: only a remote free
         * adopting one for a moment can make this wait. */
        mmh_lock(h);
        while (!(h->threads.share[k].id = slot_claim(h, SHARED_OWNER))) {
            mmh_unlock(h);
            sched_yield();
            mmh_lock(h);
        }
        mmh_unlock(h);
    }
    tls_borrowed = &h->threads.share[k].lock;
    *b = bind_of(h, h->threads.share[k].id);
}

void mmh_slot_return(mmh_tbind *b)
{
    (void)b;
    pthread_mutex_unlock(tls_borrowed);
    tls_borrowed = NULL;
}

/* Who holds which slot after an open (nobody) or in the child of a fork
 * (the forking thread, token, its bindings): owners set, the unheld ones
 * listed, lowest id on top, and the shared slots to be claimed anew. */
static void slots_reown(mmh_heap *h, uint64_t token)
{
    uint32_t hwm = h->hdr->slots_hwm, bound = 0, n = 0;
    for (uint32_t id = 1; id <= hwm; id++)
        atomic_store(&mmh_slot_at(h, id)->owner, 0);
    for (int b = 0; token && b < MMH_TBINDS; b++) {
        if (mmh_tls_binds[b].uid == h->uid) {
            atomic_store(&mmh_tls_binds[b].slot->owner, token);
            bound++;
        }
    }
    for (uint32_t id = hwm; id >= 1; id--)
        if (!atomic_load_explicit(&mmh_slot_at(h, id)->owner, memory_order_relaxed))
            h->threads.unheld[n++] = id;
    h->threads.nunheld = n;
    atomic_store(&h->threads.bound, bound);
    for (int i = 0; i < MMH_SHARED_SLOTS; i++)
        h->threads.share[i].id = 0;
}

int mmh_slots_open(mmh_heap *h)
{
    const mmh_hdr *hdr = h->hdr;
    for (uint32_t t = 0; t < hdr->nslots / MMH_SLOTS; t++)
        atomic_store_explicit(&h->threads.tables[t],
                              (mmh_slot *)(h->base + mmh_slot_table_off(hdr, t)),
                              memory_order_release);
    if (h->flags & MMH_READONLY)
        return 0;
    h->threads.unheld = mmh_meta_calloc(hdr->nslots, sizeof *h->threads.unheld);
    if (!h->threads.unheld)
        return mmh_fail(ENOMEM, "%s: out of memory", h->path);
    slots_reown(h, 0);
    return 0;
}

/* The spans the threads of the heap's last run kept go back to the bins:
 * after the tracker started, so that the next commit writes the change. */
void mmh_slots_uncache(mmh_heap *h)
{
    if (h->flags & MMH_READONLY)
        return;
    mmh_lock(h);
    for (uint32_t id = 1; id <= h->hdr->slots_hwm; id++)
        mmh_span_cache_flush(h, mmh_slot_at(h, id));
    mmh_unlock(h);
}

void mmh_slots_close(mmh_heap *h)
{
    mmh_meta_free(h->threads.unheld);
    h->threads.unheld = NULL;
}
