/* The default heap: the anonymous heap malloc draws from in
 * libmmheap-malloc.so, and a ready-made one for programs of libmmheap.so.
 *
 * MMHEAP_OPTIONS configures it: comma-separated options, each `name` or
 * `name=value` with value 0 or 1.
 *   stats    print the heap's statistics to stderr at exit
 *   verbose  report the heap's creation, failed allocations and pointers
 *            free() did not recognise
 *   leaks    under valgrind's memcheck, mmh_close of a heap file searches
 *            for blocks lost in it first (instrument.c)
 * It is read without allocating, since malloc may be the caller.
 */
#define _GNU_SOURCE
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Address space of the default heap: no memory until used, and malloc must
 * not run out of it before the machine runs out of memory. */
#define DEFAULT_MAX_SIZE ((size_t)1 << 40)

mmh_heap *_Atomic mmh_default_ptr;
mmh_options mmh_opts;

static pthread_mutex_t create_lock = PTHREAD_MUTEX_INITIALIZER;
static _Atomic pid_t creator; /* thread creating the heap, to catch recursion */

static bool option_value(const char *name, size_t name_len, const char *val, size_t val_len)
{
    if (val_len == 0 || (val_len == 1 && *val == '1'))
        return true;
    if (!(val_len == 1 && *val == '0'))
        mmh_log("MMHEAP_OPTIONS: %.*s: value '%.*s' is not 0 or 1; taken as 0", (int)name_len,
                name, (int)val_len, val);
    return false;
}

static void options_parse(void)
{
    static const struct {
        const char *name;
        bool       *flag;
    } known[] = { { "stats", &mmh_opts.stats }, { "verbose", &mmh_opts.verbose },
                  { "leaks", &mmh_opts.leaks } };
    const char *s = getenv("MMHEAP_OPTIONS");
    while (s && *s) {
        size_t len = strcspn(s, ",");
        const char *eq = memchr(s, '=', len);
        size_t name_len = eq ? (size_t)(eq - s) : len;
        const char *val = eq ? eq + 1 : s + len;
        size_t val_len = (size_t)(s + len - val), i = 0;
        while (i < sizeof known / sizeof *known &&
               !(strlen(known[i].name) == name_len && !memcmp(known[i].name, s, name_len)))
            i++;
        if (i < sizeof known / sizeof *known)
            *known[i].flag = option_value(s, name_len, val, val_len);
        else if (len)
            mmh_log("MMHEAP_OPTIONS: unknown option '%.*s' ignored (known: stats, verbose, leaks)",
                    (int)name_len, s);
        s += len + (s[len] == ',');
    }
    /* Programs close stderr at exit (coreutils do) before the statistics
     * are printed: keep a descriptor of our own, out of the way. */
    if (mmh_opts.stats || mmh_opts.verbose) {
        int fd = fcntl(STDERR_FILENO, F_DUPFD_CLOEXEC, 100);
        if (fd >= 0)
            mmh_log_fd = fd;
    }
}

void mmh_options_read(void)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, options_parse);
}

static mmh_heap *default_create(void)
{
    if (atomic_load_explicit(&creator, memory_order_relaxed) == gettid()) {
        errno = ENOMEM; /* the heap's own setup allocated: never recurse */
        return NULL;
    }
    pthread_mutex_lock(&create_lock);
    mmh_heap *h = atomic_load(&mmh_default_ptr);
    if (!h) {
        atomic_store(&creator, gettid());
        mmh_options_read();
        mmh_config cfg = { .max_size = DEFAULT_MAX_SIZE };
        h = mmh_open(NULL, &cfg);
        if (h) /* malloc's heap: memcheck checks its own malloc instead */
            mmh_inst_heap_close(h);
        atomic_store(&creator, 0);
        if (h)
            atomic_store_explicit(&mmh_default_ptr, h, memory_order_release);
        if (mmh_opts.verbose)
            h ? mmh_log("default heap at %p, %zu bytes of address space", (void *)h->base,
                        h->max_size)
              : mmh_log("cannot create the default heap: %s", mmh_errmsg());
    }
    pthread_mutex_unlock(&create_lock);
    return h;
}

mmh_heap *mmh_default_heap(void)
{
    mmh_heap *h = atomic_load_explicit(&mmh_default_ptr, memory_order_acquire);
    return h ? h : default_create();
}

void mmh_default_print_stats(void)
{
    mmh_heap *h = atomic_load(&mmh_default_ptr);
    struct mmh_stats st;
    mmh_class_stats cs[MMH_CLASSES];
    if (!h || mmh_stats(h, &st) != 0) {
        mmh_log("statistics: no default heap");
        return;
    }
    mmh_stats_classes(h, cs);
    mmh_log("default heap at %p: %llu bytes mapped of %llu reserved", (void *)h->base,
            (unsigned long long)st.size, (unsigned long long)st.max_size);
    mmh_log("in use: %llu bytes in %llu blocks; pages and large blocks %llu bytes, peak %llu",
            (unsigned long long)st.allocated, (unsigned long long)st.allocations,
            (unsigned long long)st.used_bytes, (unsigned long long)st.used_peak);
    mmh_log("free: %llu bytes; purged (handed back to the system): %llu pages of 4 KiB",
            (unsigned long long)st.free_bytes, (unsigned long long)(st.purged_bytes >> 12));
    for (unsigned c = 1; c < MMH_CLASSES; c++)
        if (cs[c].pages)
            mmh_log("class %u (%zu bytes): %llu pages, %llu blocks in use of %llu", c,
                    mmh_class_size(c), (unsigned long long)cs[c].pages,
                    (unsigned long long)cs[c].blocks, (unsigned long long)cs[c].capacity);
}

static __attribute__((destructor)) void exit_stats(void)
{
    if (mmh_opts.stats)
        mmh_default_print_stats();
}
