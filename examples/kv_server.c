/* kv_server: a key-value server whose whole data set lives in an mmheap heap,
 * saved by fork snapshots and restarted by mapping the saved image.
 *
 *     kv_server [-s SECONDS] [-m GIB] [-H] PORT IMAGE
 *     kv_server -f [-s SECONDS] [-m GIB] PORT HEAPFILE
 *
 * Listens on 127.0.0.1:PORT.  Every key, value and hash-table bucket is in
 * one heap; the table is the heap's root.  If IMAGE exists the server starts
 * from it (MMH_VOLATILE: the image is mapped copy-on-write, not parsed, so a
 * restart costs the same for 1 KiB or 10 GiB of data), else from an empty
 * anonymous heap.  SAVE, and every SECONDS seconds when something changed
 * (-s, default 0: only SAVE), writes the heap to IMAGE in a forked child
 * (mmh_snapshot): the server pauses for the fork only and keeps serving.
 * -m is a new heap's growth limit in GiB (address space, default 64); a heap
 * started from an image keeps the limit recorded in it.
 * -H opens the new anonymous heap with MMH_HUGEPAGES (transparent huge pages,
 * madvise(MADV_HUGEPAGE); the kernel must allow them: "madvise" or "always"
 * in /sys/kernel/mm/transparent_hugepage/enabled).  A fork then copies one
 * page-table entry per 2 MiB of heap instead of 512, so the pause of SAVE
 * drops from about 10 ms to under 1 ms per GiB; copy-on-write during the
 * snapshot stays per 4 KiB page.  But the kernel splits a huge page's
 * mapping into 4 KiB entries on the first write to it while the child
 * shares it, and that range is forked as small pages from then on, until
 * khugepaged collapses it (slowly): after one SAVE under a steady write
 * load most of the heap is split and the pause is nearly what it is
 * without -H.  Costs memory: a touched 2 MiB range is resident whole.
 * -H applies to a heap created empty only: a server started from IMAGE maps
 * the file with MMH_VOLATILE, which huge pages do not apply to (mmh_open
 * refuses MMH_HUGEPAGES with a file), so -H is then ignored, with a note in
 * the log.
 *
 * -f keeps the data in HEAPFILE itself, a private file heap (created if
 * missing; its table is the root, found again at restart): SAVE (and -s)
 * then runs a background journaled commit (mmh_commit_bg), which writes
 * only the pages changed since the last one, and SIGINT or SIGTERM commits
 * before the server exits.  After a crash (kill -9) a restart finds every
 * key as of the last completed commit, and none written after it.
 *
 * Protocol: a subset of Redis's RESP2, so redis-cli and other Redis clients
 * work.  A request is either
 *   - a line of words separated by spaces or tabs, ending in "\n" or "\r\n"
 *     (type it into nc or telnet; no quoting, at most 64 KiB), or
 *   - an array of bulk strings, binary-safe:  *2\r\n$3\r\nGET\r\n$3\r\nfoo\r\n
 *     (at most 16 arguments, 64 MiB in all).
 * Requests may be pipelined; replies come back in order.  Replies:
 *   +OK\r\n                simple string
 *   -ERR reason\r\n        error
 *   :42\r\n                integer
 *   $5\r\nhello\r\n        bulk string (value bytes, then CRLF)
 *   $-1\r\n                nil: no such key
 *
 * Commands (case-insensitive):
 *   GET key                  the value, or nil
 *   SET key value            +OK (replaces an existing value)
 *   DEL key [key ...]        :number of keys removed
 *   DBSIZE                   :number of keys
 *   POPULATE count [prefix] [size]
 *                            adds keys prefix:0 .. prefix:count-1 (prefix
 *                            "key" by default) with the values "value:N",
 *                            zero-padded to size bytes when size is given;
 *                            keys that exist are left alone.  The same data
 *                            as Redis's DEBUG POPULATE.  Blocks the server
 *                            while it runs.  +OK
 *   SAVE                     starts a background snapshot to IMAGE (with -f:
 *                            a commit of HEAPFILE); +OK once the child
 *                            runs, an error if one is running
 *   WAIT                     waits until no snapshot runs, then replies as INFO
 *   INFO [section]           bulk string of "name:value" lines: keys,
 *                            bytes, heap size, hugepages (1 with -H),
 *                            and the last snapshot's pause (last_fork_ns),
 *                            duration (last_job_ns) and copy-on-write cost
 *                            (cow_pages), from mmh_stats (a section name
 *                            is ignored)
 *   PING [message]           +PONG, or the message
 *   QUIT                     +OK, then the server closes the connection
 *
 * SIGINT or SIGTERM stops the server; a running snapshot is finished first.
 * Nothing is saved at exit (with -f, the exit commits): SAVE first.
 *
 * Single-threaded: one ppoll() loop serves every client and reaps the
 * snapshot child with mmh_wait(h, 1).  The table grows by incremental
 * rehashing (a bucket per request, and more while idle), and not at all
 * while a snapshot runs unless it gets crowded, so that a snapshot's
 * copy-on-write cost stays proportional to what the clients write.
 */
#define _GNU_SOURCE
#include <mmheap.h>

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MAX_ARGS      16
#define MAX_INLINE    ((size_t)64 << 10)   /* longest inline request line     */
#define MAX_REQUEST   ((size_t)64 << 20)   /* largest array request           */
#define OUT_HIGH      ((size_t)16 << 20)   /* stop reading a client above this */
#define BUF_KEEP      ((size_t)64 << 10)   /* client buffers shrink back to it */
#define TABLE_MIN     1024u                /* buckets in a new table           */
#define TABLE_MAX     ((uint64_t)1 << 32)  /* buckets are picked by a 32-bit hash */
#define CROWDED       5                    /* keys per bucket that force growth
                                              while a snapshot runs            */
#define TABLE_MAGIC   0x31766b2d686d6dull  /* "mmh-kv1": bump for a new layout */

/* ---- the table: everything below lives in the heap --------------------- */

struct entry {
    struct entry *next;   /* chain in its bucket                   */
    uint32_t      hash;   /* low 32 bits of the key's hash         */
    uint32_t      klen;
    uint32_t      vlen;
    char          data[]; /* klen bytes of key, then vlen of value */
};

struct buckets {
    struct entry **slot;  /* mask + 1 chains; NULL when unused     */
    uint64_t       mask;
    uint64_t       used;  /* entries in these chains               */
};

struct table {
    uint64_t       magic;
    uint64_t       keys;
    uint64_t       bytes;    /* key and value bytes                    */
    struct buckets b[2];     /* b[1] is the target of a rehash         */
    int64_t        rehash;   /* next bucket of b[0] to move; -1: none  */
};

static size_t entry_size(size_t klen, size_t vlen)
{
    return offsetof(struct entry, data) + klen + vlen;
}

/* A multiply-fold hash, 8 bytes a step. */
static uint64_t fold(uint64_t a, uint64_t b)
{
    __uint128_t r = (__uint128_t)a * b;
    return (uint64_t)r ^ (uint64_t)(r >> 64);
}

static uint32_t hash_key(const char *k, size_t n)
{
    uint64_t h = 0x243f6a8885a308d3ull ^ n;
    for (; n >= 8; k += 8, n -= 8) {
        uint64_t w;
        memcpy(&w, k, 8);
        h = fold(h ^ w, 0xa0761d6478bd642full) + h;
    }
    uint64_t w = 0;
    memcpy(&w, k, n);
    h = fold(h ^ w ^ 0xe7037ed1a0b428dbull, 0x8ebc6af09c88c6e3ull + h);
    return (uint32_t)(h ^ (h >> 32));
}

static struct table *table_create(mmh_heap *h)
{
    struct table *t = mmh_calloc(h, 1, sizeof *t);
    if (!t)
        return NULL;
    t->b[0].slot = mmh_calloc(h, TABLE_MIN, sizeof *t->b[0].slot);
    if (!t->b[0].slot) {
        mmh_free(h, t);
        return NULL;
    }
    t->b[0].mask = TABLE_MIN - 1;
    t->rehash = -1;
    t->magic = TABLE_MAGIC;
    return t;
}

/* Moves up to n chains from b[0] to b[1], visiting at most 10n empty
 * buckets; frees b[0] once it is empty. */
static void rehash_step(mmh_heap *h, struct table *t, unsigned n)
{
    if (t->rehash < 0)
        return;
    unsigned empty = n * 10;
    struct buckets *from = &t->b[0], *to = &t->b[1];
    while (n-- && from->used) {
        while (!from->slot[t->rehash]) {
            t->rehash++;
            if (--empty == 0)
                return;
        }
        struct entry *e = from->slot[t->rehash], *next;
        for (; e; e = next) {
            next = e->next;
            struct entry **head = &to->slot[e->hash & to->mask];
            e->next = *head;
            *head = e;
            from->used--;
            to->used++;
        }
        from->slot[t->rehash++] = NULL;
    }
    if (from->used == 0) {
        mmh_free(h, from->slot);
        *from = *to;
        *to = (struct buckets){ 0 };
        t->rehash = -1;
    }
}

/* Starts a rehash into twice the buckets when the table is full: one key
 * per bucket, or CROWDED while a snapshot runs (growing then would write
 * every bucket and entry page, all of them copied on write).  Failing to
 * allocate the new buckets only leaves the chains longer. */
static void maybe_grow(mmh_heap *h, struct table *t, int snapshot_running)
{
    uint64_t size = t->b[0].mask + 1;
    if (t->rehash >= 0 || size >= TABLE_MAX)
        return;
    if (t->keys < size || (snapshot_running && t->keys < size * CROWDED))
        return;
    struct entry **slot = mmh_calloc(h, size * 2, sizeof *slot);
    if (!slot)
        return;
    t->b[1] = (struct buckets){ .slot = slot, .mask = size * 2 - 1 };
    t->rehash = 0;
}

/* The link that points to key's entry (so it can be replaced or unlinked),
 * or NULL; *which says in which bucket array it is. */
static struct entry **table_find(struct table *t, const char *key, size_t klen, uint32_t hv,
                                 int *which)
{
    for (int i = 0; i < 2; i++) {
        struct buckets *b = &t->b[i];
        for (struct entry **l = &b->slot[hv & b->mask]; *l; l = &(*l)->next) {
            struct entry *e = *l;
            if (e->hash == hv && e->klen == klen && memcmp(e->data, key, klen) == 0) {
                *which = i;
                return l;
            }
        }
        if (t->rehash < 0)
            break;
    }
    return NULL;
}

static struct entry *table_get(mmh_heap *h, struct table *t, const char *key, size_t klen)
{
    rehash_step(h, t, 1);
    int which;
    struct entry **l = table_find(t, key, klen, hash_key(key, klen), &which);
    return l ? *l : NULL;
}

/* Sets key to value.  Returns 1 if the key was added, 0 if it existed
 * (replaced, or kept when !replace), -1 when the heap is full. */
static int table_set(mmh_heap *h, struct table *t, const char *key, size_t klen,
                     const char *val, size_t vlen, int replace, int snapshot_running)
{
    rehash_step(h, t, 1);
    uint32_t hv = hash_key(key, klen);
    int which;
    struct entry **l = table_find(t, key, klen, hv, &which);
    if (l && !replace)
        return 0;
    struct entry *old = l ? *l : NULL;
    size_t need = entry_size(klen, vlen), have = old ? mmh_usable_size(h, old) : 0;
    if (old && need <= have && need >= have / 2) {   /* in place, unless it shrinks a lot */
        memcpy(old->data + klen, val, vlen);
        t->bytes = t->bytes - old->vlen + vlen;
        old->vlen = (uint32_t)vlen;
        return 0;
    }
    struct entry *e = mmh_alloc(h, need);
    if (!e)
        return -1;
    e->hash = hv;
    e->klen = (uint32_t)klen;
    e->vlen = (uint32_t)vlen;
    memcpy(e->data, key, klen);
    memcpy(e->data + klen, val, vlen);
    if (old) {
        e->next = old->next;
        *l = e;
        t->bytes = t->bytes - old->vlen + vlen;
        mmh_free(h, old);
        return 0;
    }
    struct buckets *b = &t->b[t->rehash >= 0];
    struct entry **head = &b->slot[hv & b->mask];
    e->next = *head;
    *head = e;
    b->used++;
    t->keys++;
    t->bytes += klen + vlen;
    maybe_grow(h, t, snapshot_running);
    return 1;
}

static int table_del(mmh_heap *h, struct table *t, const char *key, size_t klen)
{
    rehash_step(h, t, 1);
    int which;
    struct entry **l = table_find(t, key, klen, hash_key(key, klen), &which);
    if (!l)
        return 0;
    struct entry *e = *l;
    *l = e->next;
    t->b[which].used--;
    t->keys--;
    t->bytes -= e->klen + e->vlen;
    mmh_free(h, e);
    return 1;
}

/* ---- the server: process memory ---------------------------------------- */

struct arg {
    const char *p;
    size_t      n;
};

struct client {
    int     fd;
    char   *in;
    size_t  in_len, in_cap;
    char   *out;
    size_t  out_len, out_off, out_cap;
    int     waiting;   /* sent WAIT: parked until the snapshot ends     */
    int     closing;   /* QUIT or a protocol error: close once sent     */
    int     dead;      /* connection lost or out of memory: drop now    */
};

static struct {
    mmh_heap      *h;
    struct table  *t;
    const char    *image;          /* or the heap file, with -f        */
    int            file;           /* -f: the heap is the file itself  */
    int            listen_fd;
    int            accept_paused;  /* out of descriptors               */
    struct client **clients;
    size_t         nclients, cap;
    /* snapshots */
    unsigned       interval;       /* seconds; 0: only on SAVE         */
    int            job;            /* a snapshot child runs            */
    uint64_t       changes;        /* writes not yet in a saved image  */
    uint64_t       changes_at_job; /* changes when the running job began */
    uint64_t       last_try_ns;    /* start of the last snapshot attempt */
    int            last_status;    /* 0 none yet, 1 saved, -1 failed   */
    char           last_error[512];
    uint64_t       last_saved_at;  /* CLOCK_REALTIME seconds           */
    /* start-up */
    int            from_image;
    int            hugepages;      /* the heap has MMH_HUGEPAGES       */
    uint64_t       ready_ns;       /* main() to heap ready             */
} srv = { .listen_fd = -1 };

static volatile sig_atomic_t stop_signal;

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

__attribute__((format(printf, 1, 2)))
static void logmsg(const char *fmt, ...)
{
    char when[32];
    time_t t = time(NULL);
    strftime(when, sizeof when, "%H:%M:%S", localtime(&t));
    fprintf(stderr, "kv_server %s: ", when);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

/* ---- replies ----------------------------------------------------------- */

static int out_reserve(struct client *c, size_t n)
{
    if (c->dead)
        return -1;
    if (c->out_cap - c->out_len >= n)
        return 0;
    size_t cap = c->out_cap ? c->out_cap : 4096;
    while (cap - c->out_len < n)
        cap *= 2;
    char *p = realloc(c->out, cap);
    if (!p) {
        c->dead = 1;
        return -1;
    }
    c->out = p;
    c->out_cap = cap;
    return 0;
}

static void reply_raw(struct client *c, const void *p, size_t n)
{
    if (out_reserve(c, n) == 0) {
        memcpy(c->out + c->out_len, p, n);
        c->out_len += n;
    }
}

__attribute__((format(printf, 2, 3)))
static void reply_fmt(struct client *c, const char *fmt, ...)
{
    char buf[600];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf - 2, fmt, ap);
    va_end(ap);
    if (n < 0)
        n = 0;
    if ((size_t)n > sizeof buf - 3)
        n = sizeof buf - 3;
    for (int i = 0; i < n; i++)   /* one line, whatever a reason holds */
        if (buf[i] == '\r' || buf[i] == '\n')
            buf[i] = ' ';
    buf[n++] = '\r';
    buf[n++] = '\n';
    reply_raw(c, buf, (size_t)n);
}

static void reply_bulk(struct client *c, const char *p, size_t n)
{
    char hdr[32];
    int k = snprintf(hdr, sizeof hdr, "$%zu\r\n", n);
    if (out_reserve(c, (size_t)k + n + 2) == 0) {
        reply_raw(c, hdr, (size_t)k);
        reply_raw(c, p, n);
        reply_raw(c, "\r\n", 2);
    }
}

/* ---- snapshots --------------------------------------------------------- */

/* What a save is, for the log. */
static const char *save_kind(void)
{
    return srv.file ? "commit" : "snapshot";
}

static int start_snapshot(const char *why)
{
    uint64_t t0 = now_ns();
    srv.last_try_ns = t0;
    if ((srv.file ? mmh_commit_bg(srv.h) : mmh_snapshot(srv.h, srv.image)) != 0) {
        srv.last_status = -1;
        snprintf(srv.last_error, sizeof srv.last_error, "%s", mmh_errmsg());
        logmsg("%s (%s) could not start: %s", save_kind(), why, srv.last_error);
        return -1;
    }
    uint64_t pause = now_ns() - t0;
    srv.job = 1;
    srv.changes_at_job = srv.changes;
    logmsg("%s (%s) started, server paused %.2f ms", save_kind(), why, pause / 1e6);
    return 0;
}

static void process_input(struct client *c);
static void reply_info(struct client *c);

/* Reaps the snapshot if it finished (or waits for it unless nohang);
 * returns 1 if it finished. */
static int reap_snapshot(int nohang)
{
    int r = mmh_wait(srv.h, nohang);
    if (r == 1)
        return 0;
    srv.job = 0;
    struct mmh_stats st;
    mmh_stats(srv.h, &st);
    if (r == 0) {
        srv.last_status = 1;
        srv.changes -= srv.changes_at_job;
        srv.last_saved_at = (uint64_t)time(NULL);
        logmsg("%s saved to %s: %.1f MiB in %.3f s, %llu pages copied on write (%.1f MiB)",
               save_kind(), srv.image, st.last_job_bytes / 1048576.0, st.last_job_ns / 1e9,
               (unsigned long long)st.cow_pages, st.cow_pages * 4096 / 1048576.0);
    } else {
        srv.last_status = -1;
        snprintf(srv.last_error, sizeof srv.last_error, "%s", mmh_errmsg());
        logmsg("%s to %s failed: %s", save_kind(), srv.image, srv.last_error);
    }
    for (size_t i = 0; i < srv.nclients; i++) {
        struct client *c = srv.clients[i];
        if (c->waiting) {
            c->waiting = 0;
            reply_info(c);
            process_input(c);
        }
    }
    return 1;
}

/* An automatic snapshot is due every interval seconds when something
 * changed; after a failure, the next try waits a whole interval too. */
static void maybe_autosave(void)
{
    if (!srv.interval || srv.job || !srv.changes)
        return;
    if (now_ns() - srv.last_try_ns >= (uint64_t)srv.interval * 1000000000u)
        start_snapshot("timer");
}

/* ---- commands ---------------------------------------------------------- */

static int parse_u64(const char *p, size_t n, uint64_t *out)
{
    uint64_t v = 0;
    if (n == 0 || n > 19)
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return -1;
        v = v * 10 + (uint64_t)(p[i] - '0');
    }
    *out = v;
    return 0;
}

static void reply_info(struct client *c)
{
    struct mmh_stats st;
    char buf[8192];
    size_t n = 0;
#define ADD(...) (n += n < sizeof buf ? (size_t)snprintf(buf + n, sizeof buf - n, __VA_ARGS__) : 0)
    if (mmh_stats(srv.h, &st) != 0) {
        reply_fmt(c, "-ERR stats: %s", mmh_errmsg());
        return;
    }
    const char *status = srv.last_status > 0 ? "ok" : srv.last_status < 0 ? "err" : "none";
    ADD("# data\r\n");
    ADD("keys:%llu\r\n", (unsigned long long)srv.t->keys);
    ADD("bytes:%llu\r\n", (unsigned long long)srv.t->bytes);
    ADD("buckets:%llu\r\n", (unsigned long long)(srv.t->b[0].mask + 1));
    ADD("rehashing:%d\r\n", srv.t->rehash >= 0);
    ADD("heap_size:%llu\r\n", (unsigned long long)st.size);
    ADD("heap_allocated:%llu\r\n", (unsigned long long)st.allocated);
    ADD("heap_max_size:%llu\r\n", (unsigned long long)st.max_size);
    ADD("started_from_image:%d\r\n", srv.from_image);
    ADD("hugepages:%d\r\n", srv.hugepages);
    ADD("ready_ns:%llu\r\n", (unsigned long long)srv.ready_ns);
    ADD("# snapshot\r\n");
    ADD("image:%s\r\n", srv.image);
    ADD("snapshot_in_progress:%d\r\n", srv.job);
    ADD("changes_since_save:%llu\r\n", (unsigned long long)srv.changes);
    ADD("last_status:%s\r\n", status);
    if (srv.last_status < 0)
        ADD("last_error:%s\r\n", srv.last_error);
    ADD("last_saved_at:%llu\r\n", (unsigned long long)srv.last_saved_at);
    ADD("last_fork_ns:%llu\r\n", (unsigned long long)st.last_fork_ns);
    ADD("last_job_ns:%llu\r\n", (unsigned long long)st.last_job_ns);
    ADD("last_job_bytes:%llu\r\n", (unsigned long long)st.last_job_bytes);
    ADD("cow_pages:%llu\r\n", (unsigned long long)st.cow_pages);
    ADD("jobs:%llu\r\n", (unsigned long long)st.jobs);
    ADD("jobs_failed:%llu\r\n", (unsigned long long)st.jobs_failed);
#undef ADD
    reply_bulk(c, buf, n < sizeof buf ? n : sizeof buf - 1);
}

static void cmd_get(struct client *c, struct arg *a, int argc)
{
    struct entry *e = table_get(srv.h, srv.t, a[1].p, a[1].n);
    if (e)
        reply_bulk(c, e->data + e->klen, e->vlen);
    else
        reply_raw(c, "$-1\r\n", 5);
}

static void cmd_set(struct client *c, struct arg *a, int argc)
{
    if (table_set(srv.h, srv.t, a[1].p, a[1].n, a[2].p, a[2].n, 1, srv.job) < 0) {
        reply_fmt(c, "-ERR out of memory: %s", mmh_errmsg());
        return;
    }
    srv.changes++;
    reply_raw(c, "+OK\r\n", 5);
}

static void cmd_del(struct client *c, struct arg *a, int argc)
{
    long long n = 0;
    for (int i = 1; i < argc; i++)
        n += table_del(srv.h, srv.t, a[i].p, a[i].n);
    srv.changes += (uint64_t)n;
    reply_fmt(c, ":%lld", n);
}

static void cmd_dbsize(struct client *c, struct arg *a, int argc)
{
    reply_fmt(c, ":%llu", (unsigned long long)srv.t->keys);
}

static void cmd_populate(struct client *c, struct arg *a, int argc)
{
    uint64_t count, size = 0;
    struct arg prefix = { "key", 3 };
    if (argc > 2)
        prefix = a[2];
    if (parse_u64(a[1].p, a[1].n, &count) != 0 ||
        (argc > 3 && (parse_u64(a[3].p, a[3].n, &size) != 0 || size > MAX_REQUEST))) {
        reply_fmt(c, "-ERR usage: POPULATE count [prefix] [size], size at most %zu",
                  MAX_REQUEST);
        return;
    }
    if (prefix.n > MAX_INLINE) {
        reply_fmt(c, "-ERR prefix too long");
        return;
    }
    char *key = malloc(prefix.n + 24), *val = calloc(1, size > 32 ? size : 32);
    if (!key || !val) {
        free(key);
        free(val);
        reply_fmt(c, "-ERR out of memory");
        return;
    }
    memcpy(key, prefix.p, prefix.n);
    uint64_t added = 0, i;
    for (i = 0; i < count; i++) {
        size_t kl = prefix.n + (size_t)sprintf(key + prefix.n, ":%llu", (unsigned long long)i);
        int vl = sprintf(val, "value:%llu", (unsigned long long)i);
        size_t vlen = size ? size : (size_t)vl;
        if (vlen > (size_t)vl)
            memset(val + vl, 0, vlen - (size_t)vl);  /* DEBUG POPULATE's padding */
        int r = table_set(srv.h, srv.t, key, kl, val, vlen, 0, srv.job);
        if (r < 0)
            break;
        added += (uint64_t)r;
    }
    free(key);
    free(val);
    srv.changes += added;
    if (i < count)
        reply_fmt(c, "-ERR out of memory after %llu keys: %s", (unsigned long long)added,
                  mmh_errmsg());
    else
        reply_raw(c, "+OK\r\n", 5);
}

static void cmd_save(struct client *c, struct arg *a, int argc)
{
    if (srv.job)
        reply_fmt(c, "-ERR a snapshot is already running");
    else if (start_snapshot("SAVE") != 0)
        reply_fmt(c, "-ERR snapshot failed: %s", srv.last_error);
    else
        reply_raw(c, "+OK\r\n", 5);
}

static void cmd_wait(struct client *c, struct arg *a, int argc)
{
    if (srv.job)
        c->waiting = 1;   /* answered by reap_snapshot */
    else
        reply_info(c);
}

static void cmd_info(struct client *c, struct arg *a, int argc)
{
    reply_info(c);
}

static void cmd_ping(struct client *c, struct arg *a, int argc)
{
    if (argc == 2)
        reply_bulk(c, a[1].p, a[1].n);
    else
        reply_raw(c, "+PONG\r\n", 7);
}

static void cmd_quit(struct client *c, struct arg *a, int argc)
{
    reply_raw(c, "+OK\r\n", 5);
    c->closing = 1;
}

static const struct command {
    const char *name;
    int         min_args, max_args;   /* counting the command name */
    void      (*run)(struct client *c, struct arg *a, int argc);
} commands[] = {
    { "GET", 2, 2, cmd_get },           { "SET", 3, 3, cmd_set },
    { "DEL", 2, MAX_ARGS, cmd_del },    { "DBSIZE", 1, 1, cmd_dbsize },
    { "POPULATE", 2, 4, cmd_populate }, { "SAVE", 1, 1, cmd_save },
    { "WAIT", 1, 1, cmd_wait },         { "INFO", 1, 2, cmd_info },
    { "PING", 1, 2, cmd_ping },         { "QUIT", 1, 1, cmd_quit },
};

static void dispatch(struct client *c, struct arg *a, int argc)
{
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
        const struct command *cmd = &commands[i];
        if (strlen(cmd->name) != a[0].n || strncasecmp(cmd->name, a[0].p, a[0].n) != 0)
            continue;
        if (argc < cmd->min_args || argc > cmd->max_args)
            reply_fmt(c, "-ERR wrong number of arguments for '%s'", cmd->name);
        else
            cmd->run(c, a, argc);
        return;
    }
    int n = a[0].n > 64 ? 64 : (int)a[0].n;
    for (int i = 0; i < n; i++)      /* keep the reply one printable line */
        if ((unsigned char)a[0].p[i] < ' ' || a[0].p[i] == 0x7f) {
            n = i;
            break;
        }
    reply_fmt(c, "-ERR unknown command '%.*s'", n, a[0].p);
}

/* ---- request parsing --------------------------------------------------- */

/* Parses "<digits>\r\n" at p (at most end); returns the byte after it, or
 * NULL if incomplete (*bad = 0) or malformed (*bad = 1). */
static const char *parse_len(const char *p, const char *end, uint64_t *v, int *bad)
{
    const char *cr = memchr(p, '\r', (size_t)(end - p) < 24 ? (size_t)(end - p) : 24);
    if (!cr) {
        *bad = end - p >= 24;
        return NULL;
    }
    if (cr + 1 >= end)
        return NULL;
    if (cr[1] != '\n' || parse_u64(p, (size_t)(cr - p), v) != 0) {
        *bad = 1;
        return NULL;
    }
    return cr + 2;
}

/* Parses one request from buf.  Returns 1 and sets *argc (0 for an empty
 * line) and *used; 0 when more bytes are needed; -1 on a protocol error with
 * *err set. */
static int parse_request(const char *buf, size_t len, struct arg *a, int *argc, size_t *used,
                         const char **err)
{
    const char *p = buf, *end = buf + len;
    int bad = 0;
    *argc = 0;
    if (len == 0)
        return 0;
    if (*p != '*') {
        const char *nl = memchr(p, '\n', len);
        if (!nl) {
            *err = "inline request longer than 64 KiB";
            return len > MAX_INLINE ? -1 : 0;
        }
        *used = (size_t)(nl - buf) + 1;
        const char *e = nl > p && nl[-1] == '\r' ? nl - 1 : nl;
        while (p < e) {
            while (p < e && (*p == ' ' || *p == '\t'))
                p++;
            if (p == e)
                break;
            const char *w = p;
            while (p < e && *p != ' ' && *p != '\t')
                p++;
            if (*argc == MAX_ARGS) {
                *err = "too many arguments";
                return -1;
            }
            a[(*argc)++] = (struct arg){ w, (size_t)(p - w) };
        }
        return 1;
    }
    uint64_t n, total = 0;
    p = parse_len(p + 1, end, &n, &bad);
    if (!p)
        goto short_or_bad;
    if (n > MAX_ARGS) {
        *err = "too many arguments";
        return -1;
    }
    for (uint64_t i = 0; i < n; i++) {
        if (p >= end)
            return 0;
        if (*p != '$') {
            *err = "expected '$'";
            return -1;
        }
        uint64_t blen;
        p = parse_len(p + 1, end, &blen, &bad);
        if (!p)
            goto short_or_bad;
        total += blen;
        if (total > MAX_REQUEST) {
            *err = "request larger than 64 MiB";
            return -1;
        }
        if ((size_t)(end - p) < blen + 2)
            return 0;
        if (p[blen] != '\r' || p[blen + 1] != '\n') {
            *err = "bulk string not followed by CRLF";
            return -1;
        }
        a[(*argc)++] = (struct arg){ p, (size_t)blen };
        p += blen + 2;
    }
    *used = (size_t)(p - buf);
    return 1;
short_or_bad:
    if (bad)
        *err = "bad length";
    return bad ? -1 : 0;
}

/* Runs every complete request in c's input, unless c waits or closes. */
static void process_input(struct client *c)
{
    size_t off = 0;
    while (!c->waiting && !c->closing && !c->dead && off < c->in_len) {
        struct arg a[MAX_ARGS];
        int argc;
        size_t used;
        const char *err = NULL;
        int r = parse_request(c->in + off, c->in_len - off, a, &argc, &used, &err);
        if (r == 0)
            break;
        if (r < 0) {
            reply_fmt(c, "-ERR protocol error: %s", err);
            c->closing = 1;
            off = c->in_len;
            break;
        }
        if (argc > 0)
            dispatch(c, a, argc);
        off += used;
    }
    if (off) {
        memmove(c->in, c->in + off, c->in_len - off);
        c->in_len -= off;
    }
}

/* ---- connections ------------------------------------------------------- */

static void client_free(size_t i)
{
    struct client *c = srv.clients[i];
    close(c->fd);
    free(c->in);
    free(c->out);
    free(c);
    srv.clients[i] = srv.clients[--srv.nclients];
    srv.accept_paused = 0;
}

static void accept_clients(void)
{
    for (;;) {
        int fd = accept4(srv.listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE) {
                logmsg("accept: %s; not accepting until a client leaves", strerror(errno));
                srv.accept_paused = 1;
            } else if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
                logmsg("accept: %s", strerror(errno));
            return;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        if (srv.nclients == srv.cap) {
            size_t cap = srv.cap ? srv.cap * 2 : 16;
            struct client **v = realloc(srv.clients, cap * sizeof *v);
            if (v) {
                srv.clients = v;
                srv.cap = cap;
            }
        }
        struct client *c = srv.nclients < srv.cap ? calloc(1, sizeof *c) : NULL;
        if (!c) {
            logmsg("out of memory for a new client");
            close(fd);
            return;
        }
        c->fd = fd;
        srv.clients[srv.nclients++] = c;
    }
}

/* One recv per readiness event: poll is level-triggered, so a client with
 * more to send is back in the next round, after the others had a turn. */
static void client_read(struct client *c)
{
    if (c->in_cap - c->in_len < 4096) {
        /* parse_request refuses a request before it gets this large */
        size_t cap = c->in_cap ? c->in_cap * 2 : 16384;
        char *p = cap <= 2 * MAX_REQUEST ? realloc(c->in, cap) : NULL;
        if (!p) {
            c->dead = 1;
            return;
        }
        c->in = p;
        c->in_cap = cap;
    }
    ssize_t n = recv(c->fd, c->in + c->in_len, c->in_cap - c->in_len, 0);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n <= 0) {
        c->dead = 1;   /* closed by the peer, or an error */
        return;
    }
    c->in_len += (size_t)n;
    process_input(c);
    if (c->in_len == 0 && c->in_cap > BUF_KEEP) {
        free(c->in);
        c->in = NULL;
        c->in_cap = 0;
    }
}

static void client_write(struct client *c)
{
    while (c->out_off < c->out_len) {
        ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno != EAGAIN && errno != EINTR)
                c->dead = 1;
            return;
        }
        c->out_off += (size_t)n;
    }
    c->out_off = c->out_len = 0;
    if (c->out_cap > BUF_KEEP) {
        free(c->out);
        c->out = NULL;
        c->out_cap = 0;
    }
    if (c->closing)
        c->dead = 1;
}

static int listen_on(unsigned port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                              .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0 || listen(fd, 511) != 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

/* ---- main loop --------------------------------------------------------- */

static void on_signal(int sig)
{
    stop_signal = sig;
}

static void serve(void)
{
    struct pollfd *pfd = NULL;
    size_t pfd_cap = 0;
    sigset_t unblocked;
    sigemptyset(&unblocked);
    while (!stop_signal) {
        if (pfd_cap < srv.nclients + 1) {
            pfd_cap = (srv.nclients + 1) * 2;
            struct pollfd *p = realloc(pfd, pfd_cap * sizeof *p);
            if (!p) {
                logmsg("out of memory for poll descriptors");
                exit(1);
            }
            pfd = p;
        }
        pfd[0] = (struct pollfd){ .fd = srv.listen_fd, .events = srv.accept_paused ? 0 : POLLIN };
        for (size_t i = 0; i < srv.nclients; i++) {
            struct client *c = srv.clients[i];
            short ev = 0;
            if (!c->waiting && !c->closing && c->out_len - c->out_off < OUT_HIGH)
                ev |= POLLIN;
            if (c->out_off < c->out_len)
                ev |= POLLOUT;
            pfd[i + 1] = (struct pollfd){ .fd = c->fd, .events = ev };
        }
        /* Reap a snapshot within 5 ms; rehash while idle; else wake for
         * the autosave timer. */
        int idle_rehash = srv.t->rehash >= 0 && !srv.job;
        struct timespec tmo = { 0, 0 }, *tp = &tmo;
        if (srv.job)
            tmo.tv_nsec = 5000000;
        else if (!idle_rehash) {
            if (srv.interval)
                tmo.tv_sec = 1;
            else
                tp = NULL;
        }
        size_t n = srv.nclients;
        int r = ppoll(pfd, n + 1, tp, &unblocked);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            logmsg("poll: %s", strerror(errno));
            exit(1);
        }
        /* clients may be freed (swapped from the end) below: walk down */
        for (size_t i = n; i-- > 0;) {
            struct client *c = srv.clients[i];
            short re = pfd[i + 1].revents;
            if (re & (POLLIN | POLLHUP | POLLERR))
                client_read(c);
            if (c->out_off < c->out_len && !c->dead)
                client_write(c);
            if (c->dead)
                client_free(i);
        }
        if (pfd[0].revents & POLLIN)
            accept_clients();
        if (srv.job && reap_snapshot(1))
            for (size_t i = srv.nclients; i-- > 0;) {  /* replies to WAIT */
                if (srv.clients[i]->out_len && !srv.clients[i]->dead)
                    client_write(srv.clients[i]);
                if (srv.clients[i]->dead)
                    client_free(i);
            }
        maybe_autosave();
        if (idle_rehash && r == 0) {
            uint64_t until = now_ns() + 1000000;   /* 1 ms of rehashing */
            while (srv.t->rehash >= 0 && now_ns() < until)
                rehash_step(srv.h, srv.t, 100);
        }
    }
    free(pfd);
}

static void usage(FILE *f)
{
    fprintf(f, "usage: kv_server [-s SECONDS] [-m GIB] [-H] PORT IMAGE\n"
               "       kv_server -f [-s SECONDS] [-m GIB] PORT HEAPFILE\n"
               "  PORT        TCP port on 127.0.0.1\n"
               "  IMAGE       heap image: mapped at start if it exists, written by SAVE\n"
               "  -f          the data lives in HEAPFILE, a heap file (created if\n"
               "              missing): SAVE commits it in the background, and so\n"
               "              does stopping (SIGINT, SIGTERM)\n"
               "  -s SECONDS  also snapshot every SECONDS seconds when data changed\n"
               "              (default 0: only on SAVE)\n"
               "  -m GIB      growth limit of a new heap, GiB of address space (default\n"
               "              64); a heap started from IMAGE keeps the image's limit\n"
               "  -H          new heap in transparent huge pages (MMH_HUGEPAGES): a much\n"
               "              shorter fork pause; ignored when starting from IMAGE (a\n"
               "              file-backed heap)\n");
}

static int parse_uint(const char *s, unsigned long max, unsigned long *out)
{
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (errno || end == s || *end || v > max || s[0] == '-')
        return -1;
    *out = v;
    return 0;
}

/* With -f: the heap file, created if missing, and its table. */
static int open_file(size_t max_size)
{
    mmh_config cfg = { .max_size = max_size, .flags = MMH_CREATE };
    if (!(srv.h = mmh_open(srv.image, &cfg))) {
        fprintf(stderr, "kv_server: cannot open %s: %s\n", srv.image, mmh_errmsg());
        return -1;
    }
    if ((srv.t = mmh_root(srv.h))) {
        if (srv.t->magic != TABLE_MAGIC) {
            fprintf(stderr, "kv_server: %s is a heap file but not a kv_server one "
                            "(no table at its root)\n", srv.image);
            return -1;
        }
        srv.from_image = 1;
        return 0;
    }
    if (!(srv.t = table_create(srv.h)) || mmh_set_root(srv.h, srv.t) != 0) {
        fprintf(stderr, "kv_server: cannot create the table in %s: %s\n", srv.image,
                mmh_errmsg());
        return -1;
    }
    return 0;
}

/* Opens IMAGE as a volatile heap if it exists, else an empty anonymous one
 * (with MMH_HUGEPAGES if hugepages); with -f, the heap file. */
static int open_data(size_t max_size, int hugepages)
{
    if (srv.file)
        return open_file(max_size);
    mmh_config cfg = { .max_size = max_size };
    struct stat st;
    if (stat(srv.image, &st) == 0) {
        if (hugepages)
            logmsg("-H ignored: %s is a file, mapped with MMH_VOLATILE; huge pages are "
                   "for anonymous heaps only", srv.image);
        cfg.flags = MMH_VOLATILE;
        srv.h = mmh_open(srv.image, &cfg);
        if (!srv.h) {
            fprintf(stderr, "kv_server: cannot start from %s: %s\n", srv.image, mmh_errmsg());
            return -1;
        }
        srv.t = mmh_root(srv.h);
        if (!srv.t || srv.t->magic != TABLE_MAGIC) {
            fprintf(stderr, "kv_server: %s is a heap image but not a kv_server one "
                            "(no table at its root)\n", srv.image);
            return -1;
        }
        srv.from_image = 1;
        return 0;
    }
    if (errno != ENOENT) {
        fprintf(stderr, "kv_server: %s: %s\n", srv.image, strerror(errno));
        return -1;
    }
    cfg.flags = hugepages ? MMH_HUGEPAGES : 0;
    srv.h = mmh_open(NULL, &cfg);
    srv.hugepages = hugepages;
    if (!srv.h || !(srv.t = table_create(srv.h)) || mmh_set_root(srv.h, srv.t) != 0) {
        fprintf(stderr, "kv_server: cannot create the heap: %s\n", mmh_errmsg());
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    uint64_t start = now_ns();
    unsigned long interval = 0, max_gib = 64, port;
    int opt, hugepages = 0;
    while ((opt = getopt(argc, argv, "fs:m:Hh")) != -1) {
        switch (opt) {
        case 'f':
            srv.file = 1;
            break;
        case 's':
            if (parse_uint(optarg, 86400 * 365, &interval) != 0) {
                fprintf(stderr, "kv_server: -s wants seconds, not '%s'\n", optarg);
                return 2;
            }
            break;
        case 'm':
            if (parse_uint(optarg, 2048, &max_gib) != 0 || max_gib == 0) {
                fprintf(stderr, "kv_server: -m wants GiB from 1 to 2048, not '%s'\n", optarg);
                return 2;
            }
            break;
        case 'H':
            hugepages = 1;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (argc - optind != 2 || (srv.file && hugepages)) {
        if (srv.file && hugepages)
            fprintf(stderr, "kv_server: -H is for anonymous heaps, not with -f\n");
        usage(stderr);
        return 2;
    }
    if (parse_uint(argv[optind], 65535, &port) != 0 || port == 0) {
        fprintf(stderr, "kv_server: bad port '%s'\n", argv[optind]);
        return 2;
    }
    srv.image = argv[optind + 1];
    srv.interval = (unsigned)interval;

    /* SIGINT and SIGTERM are blocked except inside ppoll(), so a signal
     * never falls between the stop check and the wait. */
    sigset_t block;
    sigemptyset(&block);
    sigaddset(&block, SIGINT);
    sigaddset(&block, SIGTERM);
    sigprocmask(SIG_BLOCK, &block, NULL);
    struct sigaction sa = { .sa_handler = on_signal };
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    /* Bind first: a taken port is reported before any data is mapped.
     * Clients that connect meanwhile wait in the backlog. */
    srv.listen_fd = listen_on((unsigned)port);
    if (srv.listen_fd < 0) {
        fprintf(stderr, "kv_server: cannot listen on 127.0.0.1:%lu: %s\n", port, strerror(errno));
        return 1;
    }
    if (open_data((size_t)max_gib << 30, hugepages) != 0)
        return 1;
    srv.ready_ns = now_ns() - start;
    struct mmh_stats st;
    mmh_stats(srv.h, &st);
    if (srv.from_image)
        logmsg("started from %s: %llu keys, %.1f MiB heap, ready %.3f ms after start "
               "(mapped, not loaded)", srv.image, (unsigned long long)srv.t->keys,
               st.size / 1048576.0, srv.ready_ns / 1e6);
    else if (srv.file)
        logmsg("%s: a new heap file, starting empty", srv.image);
    else
        logmsg("no image at %s: starting empty%s", srv.image,
               srv.hugepages ? " (MMH_HUGEPAGES)" : "");
    logmsg("listening on 127.0.0.1:%lu", port);

    srv.last_try_ns = now_ns();
    serve();

    logmsg("stopping (%s)", strsignal(stop_signal));
    if (srv.job) {
        logmsg("waiting for the snapshot to finish");
        reap_snapshot(0);
    }
    for (size_t i = srv.nclients; i-- > 0;)
        client_free(i);
    close(srv.listen_fd);
    if (mmh_close(srv.h) != 0)
        logmsg("closing %s failed: %s", srv.image, mmh_errmsg());
    else if (srv.file)
        srv.changes = 0; /* the close committed them */
    if (srv.changes)
        logmsg("not saved: %llu writes since the last image",
               (unsigned long long)srv.changes);
    return 0;
}
