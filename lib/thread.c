/* Threads and slots.  A thread allocating from a heap holds one of the
 * heap's slots; the binding (heap uid -> slot) sits in a small initial-exec
 * TLS array so the fast path finds it with one compare.  Slots are released
 * when the thread exits, when a binding is evicted, and wholesale when the
 * heap is opened again (owners of an earlier run mean nothing).
 *
 * A thread with no slot of its own borrows one for each call: after its
 * exit destructor ran (frees from later destructors must not claim a slot
 * that nothing would release), or when every slot is held.  The last slot
 * is never bound, so a borrower always finds one sooner or later. */
#define _GNU_SOURCE
#include "internal.h"

#include <errno.h>
#include <sched.h>
#include <string.h>
#include <unistd.h>

__thread mmh_tbind mmh_tls_binds[MMH_TBINDS] __attribute__((tls_model("initial-exec")));
static __thread bool tls_exited __attribute__((tls_model("initial-exec")));

static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static mmh_heap *registry;
static uint64_t next_uid = 1;
static pthread_key_t exit_key;
static pthread_once_t exit_key_once = PTHREAD_ONCE_INIT;
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

/* fork() by the program: every heap's lock is held across it, so the child
 * finds the metadata consistent; the registry lock first, as elsewhere. */
static void fork_prepare(void)
{
    pthread_mutex_lock(&registry_lock);
    for (mmh_heap *h = registry; h; h = h->next_open)
        pthread_mutex_lock(&h->lock);
    mmh_meta_fork_prepare();
}

static void fork_parent(void)
{
    mmh_meta_fork_done();
    for (mmh_heap *h = registry; h; h = h->next_open)
        pthread_mutex_unlock(&h->lock);
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
            for (int b = 0; b < MMH_TBINDS; b++)
                if (mmh_tls_binds[b].uid == h->uid)
                    atomic_store(&mmh_tls_binds[b].slot->owner, token);
        }
        pthread_mutex_init(&h->job_lock, NULL);
        mmh_job_forget(h);
        mmh_track_forked(h);
        pthread_mutex_unlock(&h->lock);
    }
    pthread_mutex_unlock(&registry_lock);
}

static void install_atfork(void)
{
    pthread_atfork(fork_prepare, fork_parent, fork_child);
}

int mmh_registry_add(mmh_heap *h)
{
    pthread_once(&atfork_once, install_atfork);
    pthread_mutex_lock(&registry_lock);
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
    pthread_mutex_unlock(&registry_lock);
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

/* Claim a slot of h among the first `limit` that has no owner; its index
 * + 1, or 0 when all are taken. */
static uint32_t slot_claim(mmh_heap *h, uint32_t limit)
{
    uint64_t token = (uint64_t)gettid() + 1;
    mmh_hdr *hdr = h->hdr;
    uint32_t found = 0;
    pthread_mutex_lock(&h->lock);
    for (uint32_t i = 0; i < limit && !found; i++) {
        uint64_t none = 0;
        if (i == hdr->slots_hwm) {
            slot_init(&h->slots[i]);
            hdr->slots_hwm = i + 1;
        }
        if (atomic_load_explicit(&h->slots[i].owner, memory_order_relaxed) == 0 &&
            atomic_compare_exchange_strong(&h->slots[i].owner, &none, token))
            found = i + 1;
    }
    pthread_mutex_unlock(&h->lock);
    return found;
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
    uint32_t id = tls_exited ? 0 : slot_claim(h, h->hdr->nslots - 1);
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

void mmh_slot_borrow(mmh_heap *h, mmh_tbind *b)
{
    uint32_t id;
    while (!(id = slot_claim(h, h->hdr->nslots)))
        sched_yield();
    *b = bind_of(h, id);
}

void mmh_slot_return(mmh_tbind *b)
{
    atomic_store(&b->slot->owner, 0);
}

/* A heap opened again: no thread holds any of its slots. */
void mmh_slots_reset(mmh_heap *h)
{
    for (uint32_t i = 0; i < h->hdr->slots_hwm; i++)
        atomic_store(&h->slots[i].owner, 0);
}
