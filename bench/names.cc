// names.cc (bench/bench_names): a million names in a heap -- insert, lookup,
// miss, walk, commit and reopen times per name, and memory per name -- for
// mmheap's name table (mmh_name_set/get/each) against Boost.Interprocess
// named objects and, as the floor, an in-process std::unordered_map.
//
//   bench_names [options]                 every store and name length, rounds
//   bench_names --one=STORE --len=L [...] one measurement (used internally)
//
// Stores:
//   mmheap        a private file heap under --dir (default tracker); N blocks
//                 of 32 B, each given a name with mmh_name_set
//   boost-rbtree  managed_mapped_file under --dir, construct<Obj>(name): a
//                 32-byte object allocated and named at once, in the
//                 default index (iset_index, an intrusive red-black tree)
//   boost-hash    the same with iunordered_set_index (an intrusive hash set)
//   std-map       std::unordered_map<std::string, void *> in malloc memory,
//                 naming N malloc(32) blocks: no persistence, the floor
// Name lengths: short, "object-%07u" (14 B); long, 64 B with a common
// 26-byte prefix ("tenant-0042/sessions/user-%07u/...", a path-like key).
//
// One measurement, in a fresh process and a fresh file:
//   1. N blocks of 32 B, untimed but for "alloc"; then the blocks are made
//      durable (mmheap: commit and checkpoint; Boost: msync) so that what
//      follows writes only what the names add.  Boost has no way to name a
//      block it did not construct: its N blocks are allocate(32)d there to
//      measure their memory, then freed, and construct<Obj> allocates again.
//   2. insert: every block named, in a random order, timed in batches of
//      1024 (the slowest batch shows a stall at a table's growth).
//   3. lookup: --passes passes over all N names, each in a new random
//      order; the names to look up lie in lookup order in one array, so
//      reading them costs no cache miss.  Every result is checked (the sum
//      of the pointers found against the sum of the blocks).
//   4. miss: --passes passes over N names that are not there, same length.
//   5. each: one walk over every name (count and pointer sum checked).
//   6. commit: mmheap: mmh_commit; Boost: msync(MS_SYNC) of the segment.
//      Bytes: write_bytes of /proc/self/io from the start of the inserts
//      (Boost's MAP_SHARED pages count when dirtied, mmheap's log when
//      appended) and, for mmheap, mmh_stats bytes_written.
//   7. reopen: mmheap: mmh_close (timed apart: it checkpoints the log into
//      the file), then mmh_open + the first mmh_name_get; Boost: unmap,
//      open_only + the first find.  Then one lookup pass over all names on
//      the fresh mapping (page-cache hits, but every page faults once).
//      mmheap again read-only (close, open, first lookup): a writable open
//      resets the log, with its syncs, whatever the heap holds.
//
// Memory per name = (memory of N named blocks - memory of N unnamed 32-byte
// blocks) / N, where memory is: mmheap, mmh_stats used_bytes (pages of small
// blocks and large blocks: the heap in use less free space and metadata);
// Boost, get_size() - get_free_memory(); std-map, mallinfo2() uordblks +
// hblkhd.  RSS per name: growth of the process's resident set over step 2.
//
// Output of --one: "m KEY VALUE" lines and one "lib TEXT" line, parsed by
// the orchestrator, which runs --rounds rounds of every (length, store) in a
// rotating order and prints medians and same-round ratios as Markdown.

#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <map>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "mmheap.h"

#define BENCH_NAME "bench_names"
#include "benchutil.h" // now_ns, wyrand, sort_median

#if __has_include(<boost/interprocess/managed_mapped_file.hpp>)
#include <boost/interprocess/indexes/iunordered_set_index.hpp>
#include <boost/interprocess/managed_mapped_file.hpp>
#include <boost/version.hpp>
#define BENCH_BOOST 1
#else
#define BENCH_BOOST 0
#endif

#define NOINLINE __attribute__((noinline))

namespace {

struct Options {
    std::string dir;
    size_t n = 1000000;
    int passes = 5;
    int rounds = 3;
    std::string stores = "mmheap,boost-rbtree,boost-hash,std-map";
    std::string lens = "short,long";
    std::string one, len, raw;
};

Options opt;

[[noreturn]] void fail(const char *what, const char *why)
{
    fprintf(stderr, "bench_names: %s: %s\n", what, why);
    exit(2);
}

// A random permutation of [from, from + n).
std::vector<uint32_t> permutation(size_t n, uint32_t from)
{
    std::vector<uint32_t> v(n);
    for (size_t i = 0; i < n; i++)
        v[i] = from + (uint32_t)i;
    for (size_t i = n - 1; i > 0; i--)
        std::swap(v[i], v[wyrand() % (i + 1)]);
    return v;
}

// ---- names ----------------------------------------------------------------

// Names lie in one array at a fixed stride, NUL-terminated, in the order
// they are used: the loops read them sequentially.
struct Names {
    size_t len = 0, stride = 0, n = 0;
    std::vector<char> buf;
    const char *operator[](size_t k) const { return &buf[k * stride]; }
};

size_t name_len()
{
    return opt.len == "long" ? 64 : 14;
}

void make_name(char *out, uint32_t i)
{
    if (opt.len == "long")
        snprintf(out, 65, "tenant-0042/sessions/user-%07u/cart/items/checkout-states.bin", i);
    else
        snprintf(out, 15, "object-%07u", i);
}

// names[k] = the name of index order[k]
void fill_names(Names &nm, const std::vector<uint32_t> &order)
{
    nm.len = name_len();
    nm.stride = (nm.len + 1 + 7) & ~(size_t)7;
    nm.n = order.size();
    nm.buf.assign(nm.n * nm.stride, 0);
    for (size_t k = 0; k < nm.n; k++) {
        make_name(&nm.buf[k * nm.stride], order[k]);
        if (strlen(nm[k]) != nm.len)
            fail("names", "a name of the wrong length (--n too large?)");
    }
}

// ---- measurements ---------------------------------------------------------

std::map<std::string, double> g_m; // what --one reports
std::string g_lib;

void put(const char *key, double v)
{
    g_m[key] = v;
}

double rss_bytes()
{
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long long size = 0, res = 0;
    if (!f || fscanf(f, "%llu %llu", &size, &res) != 2)
        fail("/proc/self/statm", "unreadable");
    fclose(f);
    return (double)res * (double)sysconf(_SC_PAGESIZE);
}

// The median of v (by copy: the caller's order stays).
double median(std::vector<double> v)
{
    return sort_median(v.data(), v.size());
}

// The interface each store gives the driver below.
//   create(path), alloc_blocks(n, ptrs), release_blocks() (true if it freed
//   them: Boost), make_durable() (untimed), insert(name, i, ptrs) -> the named
//   block, get(name), each(&count) -> pointer sum, commit(), close_ns()
//   (-1: no such step), reopen(), ro_reopen_ns(name) (-1: none), mem(),
//   extra(): more keys, destroy(), lib().

struct Mmheap {
    mmh_heap *h = nullptr;
    std::string path;
    uint64_t lib_bytes0 = 0;
    struct mmh_stats st0 {};
    void create(const std::string &p)
    {
        path = p;
        mmh_config cfg = {};
        cfg.flags = MMH_CREATE | MMH_EXCL;
        h = mmh_open(path.c_str(), &cfg);
        if (!h)
            fail(path.c_str(), mmh_errmsg());
    }
    struct mmh_stats stats()
    {
        struct mmh_stats s;
        if (mmh_stats(h, &s) != 0)
            fail("mmh_stats", mmh_errmsg());
        return s;
    }
    void alloc_blocks(size_t n, std::vector<void *> &ptrs)
    {
        for (size_t i = 0; i < n; i++) {
            uint64_t *b = (uint64_t *)mmh_alloc(h, 32);
            if (!b)
                fail("mmh_alloc", mmh_errmsg());
            b[0] = i;
            ptrs[i] = b;
        }
    }
    bool release_blocks() { return false; }
    void make_durable()
    {
        if (mmh_commit(h) != 0 || mmh_checkpoint(h) != 0)
            fail("mmh_commit", mmh_errmsg());
        st0 = stats(); // the heap with its blocks, before any name
    }
    void *insert(const char *name, uint32_t i, std::vector<void *> &ptrs)
    {
        if (mmh_name_set(h, name, ptrs[i]) != 0)
            fail("mmh_name_set", mmh_errmsg());
        return ptrs[i];
    }
    void *get(const char *name) { return mmh_name_get(h, name); }
    static int each_fn(const char *, void *p, void *arg)
    {
        uint64_t *a = (uint64_t *)arg;
        a[0]++;
        a[1] += (uintptr_t)p;
        return 0;
    }
    uint64_t each(size_t *count)
    {
        uint64_t a[2] = { 0, 0 };
        if (mmh_name_each(h, each_fn, a) != 0)
            fail("mmh_name_each", mmh_errmsg());
        *count = a[0];
        return a[1];
    }
    void commit()
    {
        lib_bytes0 = stats().bytes_written;
        if (mmh_commit(h) != 0)
            fail("mmh_commit", mmh_errmsg());
    }
    double close_ns()
    {
        struct mmh_stats s = stats();
        put("commit_lib_bytes", (double)(s.bytes_written - lib_bytes0));
        uint64_t t0 = now_ns();
        if (mmh_close(h) != 0)
            fail("mmh_close", mmh_errmsg());
        h = nullptr;
        return (double)(now_ns() - t0);
    }
    void reopen()
    {
        h = mmh_open(path.c_str(), nullptr);
        if (!h)
            fail(path.c_str(), mmh_errmsg());
    }
    // A writable open resets the log (zeroes and syncs): a reader that only
    // looks names up opens read-only and skips that.
    double ro_reopen_ns(const char *name)
    {
        if (mmh_close(h) != 0)
            fail("mmh_close", mmh_errmsg());
        mmh_config cfg = {};
        cfg.flags = MMH_READONLY;
        uint64_t t0 = now_ns();
        h = mmh_open(path.c_str(), &cfg);
        if (!h || !mmh_name_get(h, name))
            fail(path.c_str(), mmh_errmsg());
        return (double)(now_ns() - t0);
    }
    double mem() { return (double)stats().used_bytes; }
    void extra()
    {
        // what the names cost in the heap's own terms: blocks, their bytes,
        // file size, and how far the last growth's copy raised the peak
        struct mmh_stats s = stats();
        put("lib_allocations", (double)(s.allocations - st0.allocations));
        put("lib_allocated", (double)(s.allocated - st0.allocated));
        put("lib_file", (double)(s.size - st0.size));
        put("lib_peak_over", (double)(s.used_peak - s.used_bytes));
        put("tracker", (double)s.tracker);
    }
    void destroy()
    {
        if (h)
            mmh_close(h);
        unlink(path.c_str());
        unlink((path + ".wal").c_str());
    }
    std::string lib()
    {
        return "mmheap " + std::to_string(MMHEAP_VERSION_MAJOR) + "." +
               std::to_string(MMHEAP_VERSION_MINOR);
    }
};

#if BENCH_BOOST
namespace bip = boost::interprocess;

struct Obj {
    uint64_t id;
    char pad[24];
    explicit Obj(uint64_t i) : id(i), pad() {}
};
static_assert(sizeof(Obj) == 32, "the blocks are 32 bytes");

using RbtreeFile = bip::managed_mapped_file; // iset_index: the default
using HashFile = bip::basic_managed_mapped_file<char, bip::rbtree_best_fit<bip::mutex_family>,
                                                bip::iunordered_set_index>;

template <class Seg> struct Boost {
    Seg *seg = nullptr;
    std::string path;
    std::vector<void *> *blocks = nullptr;
    void create(const std::string &p)
    {
        path = p;
        // Boost does not grow a mapped file by itself: size it for the
        // worst case (sparse; untouched pages cost nothing).
        size_t size = std::max<size_t>((size_t)64 << 20, opt.n * 1024);
        try {
            seg = new Seg(bip::create_only, path.c_str(), size);
        } catch (const std::exception &e) {
            fail(path.c_str(), e.what());
        }
    }
    void alloc_blocks(size_t n, std::vector<void *> &ptrs)
    {
        for (size_t i = 0; i < n; i++) {
            uint64_t *b = (uint64_t *)seg->allocate(32, std::nothrow);
            if (!b)
                fail("allocate", "out of memory");
            b[0] = i;
            ptrs[i] = b;
        }
        blocks = &ptrs;
    }
    // construct<Obj> allocates its own blocks: the anonymous ones go.
    bool release_blocks()
    {
        for (void *p : *blocks)
            seg->deallocate(p);
        return true;
    }
    void make_durable()
    {
        if (msync(seg->get_address(), seg->get_size(), MS_SYNC) != 0)
            fail("msync", strerror(errno));
    }
    void *insert(const char *name, uint32_t i, std::vector<void *> &ptrs)
    {
        try {
            return ptrs[i] = seg->template construct<Obj>(name)(i);
        } catch (const std::exception &e) {
            fail("construct", e.what());
        }
    }
    void *get(const char *name) { return seg->template find<Obj>(name).first; }
    uint64_t each(size_t *count)
    {
        uint64_t sum = 0;
        size_t c = 0;
        for (auto it = seg->named_begin(); it != seg->named_end(); ++it) {
            c++;
            sum += (uintptr_t)it->value();
        }
        *count = c;
        return sum;
    }
    // Boost's flush() passes MS_ASYNC, which Linux ignores: MS_SYNC makes
    // it durable, though not atomic (there is no atomic commit to compare).
    void commit() { make_durable(); }
    double close_ns()
    {
        delete seg;
        seg = nullptr;
        return -1; // an unmap: nothing to compare with mmh_close
    }
    void reopen()
    {
        try {
            seg = new Seg(bip::open_only, path.c_str());
        } catch (const std::exception &e) {
            fail(path.c_str(), e.what());
        }
    }
    // read_only would fault: find() takes the segment's mutex, in the mapping
    double ro_reopen_ns(const char *) { return -1; }
    double mem() { return (double)(seg->get_size() - seg->get_free_memory()); }
    void extra() {}
    void destroy()
    {
        delete seg;
        unlink(path.c_str());
    }
    std::string lib() { return "header-only Boost " BOOST_LIB_VERSION; }
};
#endif

// The floor: a hash map in process memory.  Transparent hashing (C++20)
// looks a name up without building a std::string; without it, the name is
// copied into a reused string (no allocation, a memcpy).
struct SvHash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};

struct StdMap {
    std::unordered_map<std::string, void *, SvHash, std::equal_to<>> map;
    void create(const std::string &) {}
    void alloc_blocks(size_t n, std::vector<void *> &ptrs)
    {
        for (size_t i = 0; i < n; i++) {
            uint64_t *b = (uint64_t *)malloc(32);
            if (!b)
                fail("malloc", "out of memory");
            b[0] = i;
            ptrs[i] = b;
        }
    }
    bool release_blocks() { return false; }
    void make_durable() {}
    void *insert(const char *name, uint32_t i, std::vector<void *> &ptrs)
    {
        map.emplace(name, ptrs[i]);
        return ptrs[i];
    }
#if __cpp_lib_generic_unordered_lookup >= 201811L
    void *get(const char *name)
    {
        auto it = map.find(std::string_view(name));
        return it == map.end() ? nullptr : it->second;
    }
#else
    std::string key;
    void *get(const char *name)
    {
        key.assign(name);
        auto it = map.find(key);
        return it == map.end() ? nullptr : it->second;
    }
#endif
    uint64_t each(size_t *count)
    {
        uint64_t sum = 0;
        for (auto &kv : map)
            sum += (uintptr_t)kv.second;
        *count = map.size();
        return sum;
    }
    void commit() {}
    double close_ns() { return -1; }
    void reopen() {}
    double ro_reopen_ns(const char *) { return -1; }
    double mem()
    {
        struct mallinfo2 mi = mallinfo2();
        return (double)(mi.uordblks + mi.hblkhd);
    }
    void extra() {}
    void destroy() {}
    std::string lib() { return "libstdc++ unordered_map, glibc malloc"; }
};

// One lookup pass over the names: ns per name; *sum gets the pointers'
// sum, *found how many were found.
template <class S> NOINLINE double pass(S &s, const Names &nm, uint64_t *sum, size_t *found)
{
    uint64_t x = 0;
    size_t f = 0;
    uint64_t t0 = now_ns();
    for (size_t k = 0; k < nm.n; k++) {
        void *p = s.get(nm[k]);
        x += (uintptr_t)p;
        f += p != nullptr;
    }
    double ns = (double)(now_ns() - t0);
    *sum = x;
    *found = f;
    return ns / (double)nm.n;
}

template <class S> int measure(S &s, bool persistent)
{
    const size_t n = opt.n, batch = 1024;
    std::string path = opt.dir + "/mmh-names." + std::to_string(getpid()) + ".heap";
    unlink(path.c_str());
    unlink((path + ".wal").c_str());

    // the names in insertion order, a lookup order and the misses, made
    // before anything is measured (their arrays are not in the figures)
    Names ins, look, miss;
    std::vector<uint32_t> ins_order = permutation(n, 0);
    fill_names(ins, ins_order);
    fill_names(look, permutation(n, 0));
    fill_names(miss, permutation(n, (uint32_t)n));
    std::vector<void *> ptrs(n);

    s.create(path);
    double m0 = s.mem();
    uint64_t t0 = now_ns();
    s.alloc_blocks(n, ptrs);
    put("alloc_ns", (double)(now_ns() - t0) / (double)n);
    double blocks = s.mem() - m0; // N unnamed blocks
    if (s.release_blocks())
        m0 = s.mem(); // Boost: the named blocks are measured from here
    s.make_durable();
    double rss1 = rss_bytes();
    uint64_t wb0 = write_bytes();

    // insert, timed per batch
    std::vector<double> bt;
    uint64_t expect = 0;
    uint64_t ti = now_ns();
    for (size_t k = 0; k < n; k += batch) {
        size_t e = std::min(n, k + batch);
        uint64_t b0 = now_ns();
        for (size_t j = k; j < e; j++)
            expect += (uintptr_t)s.insert(ins[j], ins_order[j], ptrs);
        bt.push_back((double)(now_ns() - b0) / (double)(e - k));
    }
    put("insert_ns", (double)(now_ns() - ti) / (double)n);
    double named = s.mem() - m0; // N named blocks
    put("blocks_per_name", blocks / (double)n);
    put("mem_per_name", (named - blocks) / (double)n);
    put("rss_per_name", (rss_bytes() - rss1) / (double)n);
    double med = median(bt);
    size_t worst = (size_t)(std::max_element(bt.begin(), bt.end()) - bt.begin());
    double stall = 0, spikes = 0;
    for (double b : bt)
        if (b > 10 * med) {
            spikes++;
            stall += (b - med) * (double)batch;
        }
    put("batch_med_ns", med);
    put("batch_max_ns", bt[worst]);
    put("batch_max_at", (double)(worst * batch));
    put("spikes", spikes);
    put("stall_ns", stall);
    s.extra();

    // lookups: a new order each pass; every pass must find every block
    std::vector<double> ns;
    for (int p = 0; p < opt.passes; p++) {
        if (p > 0)
            fill_names(look, permutation(n, 0));
        uint64_t sum;
        size_t found;
        ns.push_back(pass(s, look, &sum, &found));
        if (found != n || sum != expect)
            fail("lookup", "a name was not found, or found the wrong block");
    }
    put("lookup_ns", median(ns));
    put("lookup_min_ns", *std::min_element(ns.begin(), ns.end()));
    ns.clear();
    for (int p = 0; p < opt.passes; p++) {
        uint64_t sum;
        size_t found;
        ns.push_back(pass(s, miss, &sum, &found));
        if (found != 0)
            fail("miss", "a name that was never set was found");
    }
    put("miss_ns", median(ns));

    size_t count;
    t0 = now_ns();
    uint64_t sum = s.each(&count);
    put("each_ns", (double)(now_ns() - t0) / (double)n);
    if (count != n || sum != expect)
        fail("each", "the walk did not visit every name once");

    if (persistent) {
        t0 = now_ns();
        s.commit();
        put("commit_ns", (double)(now_ns() - t0));
        put("commit_wb", (double)(write_bytes() - wb0));
        put("close_ns", s.close_ns());
        const char *first = look[0];
        t0 = now_ns();
        s.reopen();
        put("open_ns", (double)(now_ns() - t0));
        void *p = s.get(first);
        put("reopen_ns", (double)(now_ns() - t0));
        if (!p)
            fail("reopen", "the first name was not found after the reopen");
        uint64_t rsum;
        size_t found;
        put("reopen_pass_ns", pass(s, look, &rsum, &found));
        if (found != n || rsum != expect)
            fail("reopen", "a name was lost, or names another block, after the reopen");
        put("ro_reopen_ns", s.ro_reopen_ns(first));
    }
    g_lib = s.lib();
    s.destroy();
    return 0;
}

int run_one()
{
    if (opt.len != "short" && opt.len != "long")
        fail(opt.len.c_str(), "unknown length (short, long)");
    int rc = 3;
    if (opt.one == "mmheap") {
        Mmheap s;
        rc = measure(s, true);
    } else if (opt.one == "std-map") {
        StdMap s;
        rc = measure(s, false);
    }
#if BENCH_BOOST
    else if (opt.one == "boost-rbtree") {
        Boost<RbtreeFile> s;
        rc = measure(s, true);
    } else if (opt.one == "boost-hash") {
        Boost<HashFile> s;
        rc = measure(s, true);
    }
#endif
    else {
        fprintf(stderr, "bench_names: %s: unknown, or not built in (install the peer and rebuild)\n",
                opt.one.c_str());
        return 3;
    }
    for (auto &kv : g_m)
        printf("m %s %.17g\n", kv.first.c_str(), kv.second);
    printf("lib %s\n", g_lib.c_str());
    return rc;
}

// ---- orchestrator ---------------------------------------------------------

struct Res {
    bool ok = false;
    std::map<std::string, double> m;
    std::string lib, why;
    double get(const char *k) const
    {
        auto it = m.find(k);
        return it == m.end() ? -1 : it->second;
    }
};

std::vector<std::string> split(const std::string &s)
{
    std::vector<std::string> v;
    size_t a = 0;
    while (a <= s.size()) {
        size_t e = s.find(',', a);
        if (e == std::string::npos)
            e = s.size();
        if (e > a)
            v.push_back(s.substr(a, e - a));
        a = e + 1;
    }
    return v;
}

Res spawn(const std::string &store, const std::string &len)
{
    Res r;
    int pfd[2];
    if (pipe(pfd) != 0)
        fail("pipe", strerror(errno));
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0)
        fail("fork", strerror(errno));
    if (pid == 0) {
        dup2(pfd[1], 1);
        close(pfd[0]);
        close(pfd[1]);
        std::vector<std::string> args = { "bench_names", "--one=" + store, "--len=" + len,
                                          "--dir=" + opt.dir, "--n=" + std::to_string(opt.n),
                                          "--passes=" + std::to_string(opt.passes) };
        std::vector<char *> av;
        for (auto &a : args)
            av.push_back((char *)a.c_str());
        av.push_back(nullptr);
        execv("/proc/self/exe", av.data());
        _exit(127);
    }
    close(pfd[1]);
    std::string out;
    char buf[4096];
    ssize_t got;
    while ((got = read(pfd[0], buf, sizeof buf)) > 0)
        out.append(buf, (size_t)got);
    close(pfd[0]);
    int st;
    waitpid(pid, &st, 0);
    size_t a = 0;
    while (a < out.size()) {
        size_t e = out.find('\n', a);
        if (e == std::string::npos)
            e = out.size();
        std::string line = out.substr(a, e - a);
        char key[64];
        double v;
        if (sscanf(line.c_str(), "m %63s %lf", key, &v) == 2)
            r.m[key] = v;
        else if (line.compare(0, 4, "lib ") == 0)
            r.lib = line.substr(4);
        a = e + 1;
    }
    r.ok = WIFEXITED(st) && WEXITSTATUS(st) == 0 && !r.lib.empty();
    if (!r.ok)
        r.why = WIFEXITED(st) ? "exit status " + std::to_string(WEXITSTATUS(st))
                              : "killed by signal " + std::to_string(WTERMSIG(st));
    return r;
}

// The values of key over the rounds that succeeded (negative ones: none).
std::vector<double> values(const std::vector<Res> &rs, const char *key, double scale = 1)
{
    std::vector<double> v;
    for (const Res &r : rs)
        if (r.ok && r.get(key) >= 0)
            v.push_back(r.get(key) * scale);
    return v;
}

std::string cell(const std::vector<double> &v, const char *fmt)
{
    if (v.empty())
        return "-";
    char b[64];
    snprintf(b, sizeof b, fmt, median(v));
    return b;
}

// "median (min-max)" of the same-round ratios mmheap / peer for key.
std::string ratio(const std::vector<Res> &a, const std::vector<Res> &b, const char *key)
{
    std::vector<double> v;
    for (size_t r = 0; r < a.size() && r < b.size(); r++)
        if (a[r].ok && b[r].ok && a[r].get(key) >= 0 && b[r].get(key) > 0)
            v.push_back(a[r].get(key) / b[r].get(key));
    if (v.empty())
        return "-";
    char buf[64];
    snprintf(buf, sizeof buf, "%.2f (%.2f-%.2f)", median(v), *std::min_element(v.begin(), v.end()),
             *std::max_element(v.begin(), v.end()));
    return buf;
}

const char *len_label(const std::string &len)
{
    return len == "long" ? "64 B" : "14 B";
}

int orchestrate()
{
    std::vector<std::string> stores = split(opt.stores), lens = split(opt.lens);
    for (auto &l : lens)
        if (l != "short" && l != "long")
            fail(l.c_str(), "unknown length (short, long)");
    size_t ns = stores.size();
    // res[len][store][round]
    std::vector<std::vector<std::vector<Res>>> res(
        lens.size(), std::vector<std::vector<Res>>(ns, std::vector<Res>(opt.rounds)));
    FILE *raw = opt.raw.empty() ? nullptr : fopen(opt.raw.c_str(), "a");
    for (int r = 0; r < opt.rounds; r++)
        for (size_t l = 0; l < lens.size(); l++)
            for (size_t k = 0; k < ns; k++) {
                size_t i = (k + (size_t)r) % ns; // no store always first
                fprintf(stderr, "bench_names: round %d/%d: %s, %s names\n", r + 1, opt.rounds,
                        stores[i].c_str(), lens[l].c_str());
                Res &x = res[l][i][r] = spawn(stores[i], lens[l]);
                if (!x.ok)
                    fprintf(stderr, "bench_names: %s: %s\n", stores[i].c_str(), x.why.c_str());
                if (raw)
                    for (auto &kv : x.m)
                        fprintf(raw, "names\t%s\t%s\t%d\t%s\t%.17g\n", stores[i].c_str(),
                                lens[l].c_str(), r, kv.first.c_str(), kv.second);
            }
    if (raw)
        fclose(raw);

    auto rows = [&](auto fn) {
        for (size_t l = 0; l < lens.size(); l++)
            for (size_t i = 0; i < ns; i++) {
                const std::vector<Res> &rs = res[l][i];
                bool any = false;
                for (const Res &x : rs)
                    any |= x.ok;
                if (any)
                    fn(stores[i], lens[l], rs);
                else
                    printf("| %s | %s | failed: %s |\n", stores[i].c_str(), len_label(lens[l]),
                           rs[0].why.c_str());
            }
    };

    printf("### %zu names, median of %d rounds\n\n", opt.n, opt.rounds);
    printf("Each name names a 32-byte block. Names: `object-%%07u` (14 B) or a 64-byte path "
           "(26-byte common prefix). Every measurement in a fresh process and file under --dir; "
           "stores in rotating order each round. Lookups: %d passes over all names, each in a new "
           "random order (median pass); misses: %d passes over as many absent names.\n\n",
           opt.passes, opt.passes);

    printf("#### Time per name, ns\n\n"
           "| store | name | insert | lookup | lookup, range of rounds | miss | each | alloc "
           "32 B |\n|---|---|--:|--:|--:|--:|--:|--:|\n");
    rows([&](const std::string &s, const std::string &l, const std::vector<Res> &rs) {
        std::vector<double> lk = values(rs, "lookup_ns");
        char range[64];
        snprintf(range, sizeof range, "%.0f-%.0f", *std::min_element(lk.begin(), lk.end()),
                 *std::max_element(lk.begin(), lk.end()));
        printf("| %s | %s | %s | %s | %s | %s | %s | %s |\n", s.c_str(), len_label(l),
               cell(values(rs, "insert_ns"), "%.0f").c_str(), cell(lk, "%.0f").c_str(), range,
               cell(values(rs, "miss_ns"), "%.0f").c_str(),
               cell(values(rs, "each_ns"), "%.1f").c_str(),
               cell(values(rs, "alloc_ns"), "%.0f").c_str());
    });

    printf("\n#### Memory per name, bytes\n\n"
           "**names**: (memory of N named blocks - memory of N unnamed 32-byte blocks) / N, from "
           "mmh_stats used_bytes, Boost's size - free memory, malloc's in-use bytes; **block**: "
           "what one unnamed 32-byte block takes; **RSS**: growth of the resident set while naming, "
           "per name.\n\n"
           "| store | name | names | RSS | block |\n|---|---|--:|--:|--:|\n");
    rows([&](const std::string &s, const std::string &l, const std::vector<Res> &rs) {
        printf("| %s | %s | %s | %s | %s |\n", s.c_str(), len_label(l),
               cell(values(rs, "mem_per_name"), "%.1f").c_str(),
               cell(values(rs, "rss_per_name"), "%.1f").c_str(),
               cell(values(rs, "blocks_per_name"), "%.1f").c_str());
    });
    for (size_t l = 0; l < lens.size(); l++)
        for (size_t i = 0; i < ns; i++) {
            const std::vector<Res> &rs = res[l][i];
            std::vector<double> a = values(rs, "lib_allocations", 1.0 / (double)opt.n);
            if (stores[i] != "mmheap" || a.empty())
                continue;
            printf("\nmmheap, %s names, per name: %s heap blocks, %s B in live blocks (allocated), "
                   "file grew %s B, used_peak over used_bytes after the inserts %s B",
                   len_label(lens[l]), cell(a, "%.3f").c_str(),
                   cell(values(rs, "lib_allocated", 1.0 / (double)opt.n), "%.1f").c_str(),
                   cell(values(rs, "lib_file", 1.0 / (double)opt.n), "%.1f").c_str(),
                   cell(values(rs, "lib_peak_over", 1.0 / (double)opt.n), "%.1f").c_str());
        }
    printf("\n");

    printf("\n#### Insert batches of 1024 names\n\n"
           "A batch over 10x the median is a **spike**; **stall**: the time those batches took "
           "over the median, summed; **slowest at**: the names inserted before the slowest batch, "
           "each round.\n\n"
           "| store | name | median batch, ns/name | slowest batch, ns/name | slowest at | spikes | "
           "stall, ms |\n|---|---|--:|--:|--:|--:|--:|\n");
    rows([&](const std::string &s, const std::string &l, const std::vector<Res> &rs) {
        std::string at;
        for (double v : values(rs, "batch_max_at"))
            at += (at.empty() ? "" : ", ") + std::to_string((long)v);
        printf("| %s | %s | %s | %s | %s | %s | %s |\n", s.c_str(), len_label(l),
               cell(values(rs, "batch_med_ns"), "%.0f").c_str(),
               cell(values(rs, "batch_max_ns"), "%.0f").c_str(), at.c_str(),
               cell(values(rs, "spikes"), "%.0f").c_str(),
               cell(values(rs, "stall_ns", 1e-6), "%.1f").c_str());
    });

    printf("\n#### Commit and reopen\n\n"
           "**commit**: mmh_commit after the inserts (the blocks were committed before them); "
           "Boost: msync(MS_SYNC) of the segment. **written**: write_bytes of /proc/self/io from the "
           "first insert to the end of the commit (mmheap: its log; Boost: the pages it dirtied); "
           "**bytes_written**: mmheap's own count for that commit (the checkpoint writes the pages "
           "to the heap file once more, at close here). **close**: mmh_close, which checkpoints. "
           "**open**: the open alone; **reopen**: open + first lookup, page cache warm; **read-only**: the same, opened read-only; **pass after**: the first lookup "
           "pass over all names on the fresh mapping.\n\n"
           "| store | name | commit, ms | written, MB | bytes_written, MB | close, ms | open, ms | "
           "reopen, ms | read-only, ms | pass after, ns/name |\n|---|---|--:|--:|--:|--:|--:|--:|--:|--:|\n");
    rows([&](const std::string &s, const std::string &l, const std::vector<Res> &rs) {
        if (rs[0].ok && rs[0].get("commit_ns") < 0)
            return; // the floor: nothing to commit or reopen
        printf("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", s.c_str(), len_label(l),
               cell(values(rs, "commit_ns", 1e-6), "%.1f").c_str(),
               cell(values(rs, "commit_wb", 1e-6), "%.1f").c_str(),
               cell(values(rs, "commit_lib_bytes", 1e-6), "%.1f").c_str(),
               cell(values(rs, "close_ns", 1e-6), "%.0f").c_str(),
               cell(values(rs, "open_ns", 1e-6), "%.2f").c_str(),
               cell(values(rs, "reopen_ns", 1e-6), "%.2f").c_str(),
               cell(values(rs, "ro_reopen_ns", 1e-6), "%.2f").c_str(),
               cell(values(rs, "reopen_pass_ns"), "%.0f").c_str());
    });

    size_t base = ns;
    for (size_t i = 0; i < ns; i++)
        if (stores[i] == "mmheap")
            base = i;
    if (base < ns) {
        printf("\n#### mmheap / peer\n\nMedian over rounds of the same-round ratio "
               "(smallest-largest); < 1: mmheap faster or smaller.\n\n"
               "| peer | name | lookup | miss | insert | each | bytes per name | reopen |\n"
               "|---|---|--:|--:|--:|--:|--:|--:|\n");
        for (size_t l = 0; l < lens.size(); l++)
            for (size_t i = 0; i < ns; i++) {
                if (i == base)
                    continue;
                const std::vector<Res> &a = res[l][base], &b = res[l][i];
                printf("| %s | %s | %s | %s | %s | %s | %s | %s |\n", stores[i].c_str(),
                       len_label(lens[l]), ratio(a, b, "lookup_ns").c_str(),
                       ratio(a, b, "miss_ns").c_str(), ratio(a, b, "insert_ns").c_str(),
                       ratio(a, b, "each_ns").c_str(), ratio(a, b, "mem_per_name").c_str(),
                       ratio(a, b, "reopen_ns").c_str());
            }
    }

    static const char *trackers[] = { "auto", "uffd", "mprotect", "none" };
    printf("\n```\n");
    for (size_t i = 0; i < ns; i++) {
        const Res *x = nullptr; // the first success of this store
        for (size_t l = 0; l < lens.size() && !x; l++)
            for (const Res &y : res[l][i])
                if (y.ok && !x)
                    x = &y;
        if (!x)
            continue;
        printf("%-13s %s", stores[i].c_str(), x->lib.c_str());
        double t = x->get("tracker");
        if (t >= 0 && t < 4)
            printf(", tracker %s", trackers[(int)t]);
        printf("\n");
    }
    printf("```\n");
    return 0;
}

void usage(FILE *f)
{
    fprintf(f, "usage: bench_names [options]\n"
               "  --dir=DIR        where the heap files go (default $TMPDIR or /tmp)\n"
               "  --stores=A,B     subset of mmheap,boost-rbtree,boost-hash,std-map\n"
               "  --lens=A,B       subset of short,long (14- and 64-byte names)\n"
               "  --n=N            names (default 1000000)\n"
               "  --passes=P       lookup and miss passes (default 5)\n"
               "  --rounds=R       rounds (default 3)\n"
               "  --raw=FILE       append every measurement to FILE, tab separated\n"
               "  --one=STORE --len=L   one measurement: print its m KEY VALUE lines\n");
}

} // namespace

int main(int argc, char **argv)
{
    const char *t = getenv("TMPDIR");
    opt.dir = t && *t ? t : "/tmp";
    for (int i = 1; i < argc; i++) {
        std::string a = argv[i];
        size_t eq = a.find('=');
        std::string k = a.substr(0, eq), v = eq == std::string::npos ? "" : a.substr(eq + 1);
        if (k == "--dir")
            opt.dir = v;
        else if (k == "--stores")
            opt.stores = v;
        else if (k == "--lens")
            opt.lens = v;
        else if (k == "--n")
            opt.n = strtoull(v.c_str(), nullptr, 10);
        else if (k == "--passes")
            opt.passes = atoi(v.c_str());
        else if (k == "--rounds")
            opt.rounds = atoi(v.c_str());
        else if (k == "--raw")
            opt.raw = v;
        else if (k == "--one")
            opt.one = v;
        else if (k == "--len")
            opt.len = v;
        else if (k == "-h" || k == "--help") {
            usage(stdout);
            return 0;
        } else {
            fprintf(stderr, "bench_names: unknown option %s\n", argv[i]);
            usage(stderr);
            return 1;
        }
    }
    // the misses are the names N..2N-1: seven digits hold them
    if (opt.n < 1024 || opt.n > 4999999 || opt.passes < 1 || opt.rounds < 1 || opt.rounds > 1000) {
        fprintf(stderr, "bench_names: option out of range (--n: 1024..4999999)\n");
        return 1;
    }
    return opt.one.empty() ? orchestrate() : run_one();
}
