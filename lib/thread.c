/* Threads and slots.  A thread allocating from a heap holds one of the
 * heap's slots; the binding (heap uid -> slot) sits in a small initial-exec
 * TLS array so the fast path finds it with one compare.  Slots are released
 * when the thread exits, when a binding is evicted, and wholesale when the
 * heap is opened again (owners of an earlier run mean nothing).
 *
 * A thread with no slot of its own borrows one of MMH_SHARED_SLOTS shared
 * slots for each call, under that slot's lock: after its exit destructor
 * ran (frees from later destructors must not claim a slot that nothing
 * would release), or when all the slots threads may bind are held.  Bound
 * threads stop MMH_SHARED_SLOTS short of the table, so the shared slots
 * always exist; a borrower waits on a lock, never in a retry loop, and
 * with thousands of threads calls cost a mutex, not a scan of the table. */
#define _GNU_SOURCE
#include "persist.h"
#include "track.h"

#include <errno.h>
#include <sched.h>
#include <string.h>
#include <unistd.h>

__thread mmh_tbind mmh_tls_binds[MMH_TBINDS] __attribute__((tls_model("initial-exec")));
static __thread bool tls_exited __attribute__((tls_model("initial-exec")));
static __thread pthread_mutex_t *tls_borrowed __attribute__((tls_model("initial-exec")));

/* Owner of a shared slot: no thread's id + 1. */
#define SHARED_OWNER (UINT64_MAX - 1)

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
        if (!(h->flags & MMH_READONLY)) {
            mmh_slots_reset(h);
            for (int b = 0; b < MMH_TBINDS; b++) {
                if (mmh_tls_binds[b].uid == h->uid) {
                    atomic_store(&mmh_tls_binds[b].slot->owner, token);
                    h->threads.bound++;
                }
            }
        }
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
            atomic_store(&b->slot->owner, 0);
            atomic_fetch_sub(&h->threads.bound, 1);
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

/* Claim a slot of h that has no owner for `token`, under h->lock; its
 * index + 1, or 0 when none is free (a free slot a remote free adopts for
 * a moment looks taken). */
static uint32_t slot_claim(mmh_heap *h, uint64_t token)
{
    mmh_hdr *hdr = h->hdr;
    mmh_assert_locked(h);
    mmh_assert(hdr->slots_hwm <= hdr->nslots);
    for (uint32_t i = 0; i < hdr->nslots; i++) {
        uint64_t none = 0;
        if (i == hdr->slots_hwm) {
            slot_init(&h->slots[i]);
            hdr->slots_hwm = i + 1;
        }
        if (atomic_load_explicit(&h->slots[i].owner, memory_order_relaxed) == 0 &&
            atomic_compare_exchange_strong(&h->slots[i].owner, &none, token))
            return i + 1;
    }
    return 0;
}

/* A slot of the thread's own, or 0 while all that threads may bind are
 * held: then the count alone answers, without the lock or a scan. */
static uint32_t slot_bind(mmh_heap *h)
{
    uint32_t limit = h->hdr->nslots - MMH_SHARED_SLOTS, id = 0;
    if (atomic_load_explicit(&h->threads.bound, memory_order_relaxed) >= limit)
        return 0;
    mmh_lock(h);
    if (atomic_load(&h->threads.bound) < limit && (id = slot_claim(h, (uint64_t)gettid() + 1)))
        atomic_fetch_add(&h->threads.bound, 1);
    mmh_unlock(h);
    return id;
}

static mmh_tbind bind_of(mmh_heap *h, uint32_t id)
{
    return (mmh_tbind){ .uid = h->uid, .base = h->base, .slot = &h->slots[id - 1],
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
        /* Bound threads leave MMH_SHARED_SLOTS free: only a remote free
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

/* A heap opened again: no thread holds any of its slots. */
void mmh_slots_reset(mmh_heap *h)
{
    for (uint32_t i = 0; i < h->hdr->slots_hwm; i++)
        atomic_store(&h->slots[i].owner, 0);
    atomic_store(&h->threads.bound, 0);
    for (int i = 0; i < MMH_SHARED_SLOTS; i++)
        h->threads.share[i].id = 0;
}
