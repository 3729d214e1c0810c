// persist_alloc.cc (bench/bench_persist_alloc): persistent alloc/free throughput with periodic commits,
// mmheap against PMDK libpmemobj and Boost.Interprocess managed_mapped_file.
//
//   bench_persist_alloc [options]            run every allocator, print tables
//   bench_persist_alloc --one=ALLOC [opts]   one measurement (used internally)
//
// One workload, written once as a template and instantiated per allocator:
// a persistent array of --objects slots (it lives in the heap/pool itself,
// as an application's root would) is filled with blocks of uniform random
// size 16..1024 bytes (untimed), then each step picks a random slot, frees
// its block and allocates a new one of a new random size: two operations.
// Every --commit-every operations the allocator's commit runs, and it is
// timed as part of the loop.  Blocks carry a tag at both ends, checked before
// each free (a mismatch fails the run).  The PRNG (wyrand) has fixed seeds,
// so every allocator sees the same sizes and slots.
//
// Allocators:
//   mmheap          file heap, private mode (default tracker: uffd), mmh_commit
//   mmheap-shared   the same with MMH_SHARED
//   pmdk            pmemobj_alloc/pmemobj_free (atomic API) into the slot,
//                   whose constructor writes the tags and pmemobj_persist()s
//                   the block.  The pool is a regular file: libpmem finds it
//                   is not pmem, so every persist is an msync -- each
//                   operation is durable on its own.  Nothing to do at a
//                   commit point.  The untimed fill runs in a child process
//                   with PMEM_IS_PMEM_FORCE=1 (and the pool is fsynced after)
//                   so it does not take minutes.
//   pmdk-forced     the same under PMEM_IS_PMEM_FORCE=1: libpmem flushes CPU
//                   caches instead of calling msync.  On a regular file that
//                   is NOT durable (the pages stay dirty in the page cache):
//                   shown only as PMDK's CPU cost.
//   boost           managed_mapped_file allocate/deallocate; at a commit
//                   point msync(MS_SYNC) of the whole segment.  (Boost's own
//                   flush() passes MS_ASYNC, which Linux treats as a no-op, so
//                   it would not make anything durable.)
//
// The orchestrator runs --rounds rounds; each round runs every allocator
// once, each in a fresh process with a fresh file, in an order that rotates
// from round to round.  Figures are medians over rounds; ratios are medians
// of the same-round ratio.  --seconds caps one measurement: the loop stops at
// the first commit point past it; pmdk (durable) has its own, shorter cap,
// --pmdk-seconds, checked every 256 steps, because each of its operations
// writes megabytes (see bench/README.md).  The throughput counts the
// operations actually done.
//
// Output of --one (tab separated):
//   result ALLOC OPS NS COMMIT_NS COMMITS WRITE_BYTES CHANGED_BYTES DEV_BYTES LIBRARY
// WRITE_BYTES is write_bytes of /proc/self/io over the timed loop: what the
// process sent towards the disk (page cache writes and dirtied mapped pages,
// counted when they become dirty, a whole folio at a time).  CHANGED_BYTES:
// mmheap only, the pages its tracker found written over the loop (the faults
// field of mmh_stats) x 4096, 0 for the peers (unknown).  DEV_BYTES: sectors
// written by the block device holding --dir over the loop x 512 (every
// process counts), -1 if there is none.

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <string>
#include <vector>

#define BENCH_NAME "bench_persist_alloc"
#include "benchutil.h" // write_bytes
#include "mmheap.h"

#if defined(HAVE_PMEMOBJ) && __has_include(<libpmemobj.h>)
#include <libpmemobj.h>
#define BENCH_PMDK 1
#else
#define BENCH_PMDK 0
#endif
#if __has_include(<boost/interprocess/managed_mapped_file.hpp>)
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
    size_t objects = 100000;
    size_t ops = 400000;
    size_t commit_every = 10000;
    double seconds = 5;
    double pmdk_seconds = 1.5;
    int rounds = 3;
    std::string allocs = "mmheap,mmheap-shared,pmdk,pmdk-forced,boost";
    std::string one, phase, raw, pool;
};

Options opt;
unsigned long g_errors;

uint64_t now_ns()
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

struct Rng {
    uint64_t s;
    uint64_t next()
    {
        s += 0xa0761d6478bd642full;
        __uint128_t t = (__uint128_t)s * (s ^ 0xe7037ed1a0b428dbull);
        return (uint64_t)(t >> 64) ^ (uint64_t)t;
    }
    size_t size() { return 16 + (size_t)(next() % 1009); } // 16..1024
};

// Bytes the block device holding --dir completed writing (sectors written,
// field 7 of /sys/dev/block/MAJ:MIN/stat, x 512; every process and the
// filesystem's journal count); -1 if --dir is on no block device.
double dev_written()
{
    struct stat st;
    if (stat(opt.dir.c_str(), &st) != 0 || major(st.st_dev) == 0)
        return -1;
    char path[64];
    snprintf(path, sizeof path, "/sys/dev/block/%u:%u/stat", major(st.st_dev), minor(st.st_dev));
    FILE *f = fopen(path, "r");
    unsigned long long v[7];
    int n = f ? fscanf(f, "%llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3], &v[4],
                       &v[5], &v[6])
              : 0;
    if (f)
        fclose(f);
    return n == 7 ? (double)v[6] * 512 : -1;
}

[[noreturn]] void fail(const char *what, const char *why)
{
    fprintf(stderr, "bench_persist_alloc: %s: %s\n", what, why);
    exit(2);
}

std::string object_of(const void *fn)
{
    Dl_info di;
    if (dladdr(fn, &di) && di.dli_fname)
        return di.dli_fname;
    return "?";
}

// The tags: 8 bytes at the start, one byte at the end.
inline void tag(char *p, size_t size, size_t slot)
{
    uint64_t t = slot * 0x9e3779b97f4a7c15ull ^ size;
    memcpy(p, &t, sizeof t);
    p[size - 1] = (char)slot;
}

inline void check(const char *p, size_t size, size_t slot)
{
    uint64_t t;
    memcpy(&t, p, sizeof t);
    if (t != (slot * 0x9e3779b97f4a7c15ull ^ size) || p[size - 1] != (char)slot)
        g_errors++;
}

// ---- allocators -----------------------------------------------------------

// Each slot keeps the block and its requested size (for the tag check).
struct SlotRec {
    uint64_t ref; // pointer, offset or nothing (PMDK keeps the oid itself)
    uint64_t size;
};

struct Mmheap {
    mmh_heap *h = nullptr;
    SlotRec *slots = nullptr;
    bool shared;
    explicit Mmheap(bool s) : shared(s) {}
    void create(const char *path, size_t n)
    {
        mmh_config cfg = {};
        cfg.flags = MMH_CREATE | MMH_EXCL | (shared ? MMH_SHARED : 0);
        h = mmh_open(path, &cfg);
        if (!h)
            fail(path, mmh_errmsg());
        slots = (SlotRec *)mmh_calloc(h, n, sizeof *slots);
        if (!slots || mmh_set_root(h, slots) != 0)
            fail("mmheap root", mmh_errmsg());
    }
    inline void put(size_t i, size_t size)
    {
        char *p = (char *)mmh_alloc(h, size);
        if (!p)
            fail("mmh_alloc", mmh_errmsg());
        tag(p, size, i);
        slots[i].ref = (uint64_t)(uintptr_t)p;
        slots[i].size = size;
    }
    inline void drop(size_t i)
    {
        char *p = (char *)(uintptr_t)slots[i].ref;
        check(p, slots[i].size, i);
        mmh_free(h, p);
        slots[i].ref = 0;
    }
    void commit()
    {
        if (mmh_commit(h) != 0)
            fail("mmh_commit", mmh_errmsg());
    }
    void close()
    {
        if (mmh_close(h) != 0)
            fail("mmh_close", mmh_errmsg());
    }
    std::string lib() { return object_of((void *)&mmh_alloc); }
    // pages the tracker found written (uffd) or faulted on (mprotect)
    uint64_t changed_pages()
    {
        struct mmh_stats st;
        mmh_stats(h, &st);
        return st.faults;
    }
};

#if BENCH_PMDK
struct PRoot {
    uint64_t n;
    uint64_t pad;
    struct {
        PMEMoid oid;
        uint64_t size;
        uint64_t pad;
    } slot[];
};

struct CtorArg {
    size_t size, slot;
};

int pmdk_ctor(PMEMobjpool *pop, void *ptr, void *arg)
{
    const CtorArg *a = (const CtorArg *)arg;
    tag((char *)ptr, a->size, a->slot);
    pmemobj_persist(pop, ptr, a->size);
    return 0;
}

struct Pmdk {
    PMEMobjpool *pop = nullptr;
    PRoot *root = nullptr;
    void attach(size_t n)
    {
        PMEMoid r = pmemobj_root(pop, sizeof(PRoot) + n * sizeof root->slot[0]);
        root = (PRoot *)pmemobj_direct(r);
        if (!root)
            fail("pmemobj_root", pmemobj_errormsg());
    }
    void create(const char *path, size_t n)
    {
        pop = pmemobj_create(path, "mmheap-bench", (size_t)512 << 20, 0600);
        if (!pop)
            fail(path, pmemobj_errormsg());
        attach(n);
        root->n = n;
        pmemobj_persist(pop, &root->n, sizeof root->n);
    }
    void open(const char *path, size_t n)
    {
        pop = pmemobj_open(path, "mmheap-bench");
        if (!pop)
            fail(path, pmemobj_errormsg());
        attach(n);
        if (root->n != n)
            fail(path, "pool has another slot count");
    }
    inline void put(size_t i, size_t size)
    {
        CtorArg a = { size, i };
        root->slot[i].size = size; // advisory: checked against the tag only
        if (pmemobj_alloc(pop, &root->slot[i].oid, size, 1, pmdk_ctor, &a) != 0)
            fail("pmemobj_alloc", pmemobj_errormsg());
    }
    inline void drop(size_t i)
    {
        check((const char *)pmemobj_direct(root->slot[i].oid), root->slot[i].size, i);
        pmemobj_free(&root->slot[i].oid);
    }
    void commit() {} // every operation is already durable
    void close() { pmemobj_close(pop); }
    std::string lib() { return object_of((void *)&pmemobj_alloc); }
    uint64_t changed_pages() { return 0; } // unknown
};
#endif

#if BENCH_BOOST
namespace bip = boost::interprocess;
struct Boost {
    bip::managed_mapped_file *seg = nullptr;
    SlotRec *slots = nullptr;
    void create(const char *path, size_t n)
    {
        try {
            seg = new bip::managed_mapped_file(bip::create_only, path, (size_t)512 << 20);
            slots = seg->construct<SlotRec>("slots")[n](SlotRec{ 0, 0 });
        } catch (const std::exception &e) {
            fail(path, e.what());
        }
    }
    inline void put(size_t i, size_t size)
    {
        char *p = (char *)seg->allocate(size, std::nothrow);
        if (!p)
            fail("managed_mapped_file::allocate", "out of memory");
        tag(p, size, i);
        slots[i].ref = (uint64_t)seg->get_handle_from_address(p);
        slots[i].size = size;
    }
    inline void drop(size_t i)
    {
        char *p = (char *)seg->get_address_from_handle((bip::managed_mapped_file::handle_t)slots[i].ref);
        check(p, slots[i].size, i);
        seg->deallocate(p);
        slots[i].ref = 0;
    }
    void commit()
    {
        if (msync(seg->get_address(), seg->get_size(), MS_SYNC) != 0)
            fail("msync", strerror(errno));
    }
    void close() { delete seg; }
    std::string lib() { return "header-only Boost " BOOST_LIB_VERSION; }
    uint64_t changed_pages() { return 0; } // unknown
};
#endif

// ---- the workload ---------------------------------------------------------

template <class A> void fill(A &a)
{
    Rng rng{ 0x1234567 };
    for (size_t i = 0; i < opt.objects; i++)
        a.put(i, rng.size());
    a.commit();
}

template <class A> NOINLINE void run(A &a, const char *name, bool check_often)
{
    Rng rng{ 0xfeedbeef };
    const size_t every = opt.commit_every / 2; // steps per commit (2 ops a step)
    const uint64_t cap = (uint64_t)((check_often ? opt.pmdk_seconds : opt.seconds) * 1e9);
    uint64_t commit_ns = 0, commits = 0, steps = 0;
    uint64_t wb0 = write_bytes(), pg0 = a.changed_pages();
    double dev0 = dev_written();
    uint64_t t0 = now_ns();
    while (steps * 2 < opt.ops) {
        size_t slot = (size_t)(rng.next() % opt.objects);
        a.drop(slot);
        a.put(slot, rng.size());
        steps++;
        if (steps % every == 0) {
            uint64_t c0 = now_ns();
            a.commit();
            uint64_t c1 = now_ns();
            commit_ns += c1 - c0;
            commits++;
            if (c1 - t0 > cap)
                break;
        } else if (check_often && steps % 256 == 0 && now_ns() - t0 > cap)
            break;
    }
    uint64_t t = now_ns() - t0;
    uint64_t wb = write_bytes() - wb0, pg = a.changed_pages() - pg0;
    double dev1 = dev_written(), dev = dev0 >= 0 && dev1 >= 0 ? dev1 - dev0 : -1;
    if (g_errors) {
        fprintf(stderr, "bench_persist_alloc: %s: %lu corrupted blocks\n", name, g_errors);
        exit(4);
    }
    printf("result\t%s\t%llu\t%llu\t%llu\t%llu\t%llu\t%llu\t%.0f\t%s\n", name,
           (unsigned long long)steps * 2, (unsigned long long)t, (unsigned long long)commit_ns,
           (unsigned long long)commits, (unsigned long long)wb, (unsigned long long)pg * 4096, dev,
           a.lib().c_str());
    fflush(stdout);
}

void remove_pool(const std::string &p)
{
    unlink(p.c_str());
    unlink((p + ".journal").c_str());
}

/* A fresh pool: create it, fill it, measure, remove it. */
template <class A>
int run_fresh(A &a, const std::string &path, const char *name, size_t objects, bool check_often)
{
    remove_pool(path);
    a.create(path.c_str(), objects);
    fill(a);
    run(a, name, check_often);
    a.close();
    remove_pool(path);
    return 0;
}

int run_one()
{
    std::string path = opt.dir + "/mmh-persist-alloc." + std::to_string(getpid()) + ".pool";
    if (!opt.pool.empty())
        path = opt.pool;
    const std::string &w = opt.one;
    if (w == "mmheap" || w == "mmheap-shared") {
        Mmheap a(w == "mmheap-shared");
        return run_fresh(a, path, w.c_str(), opt.objects, false);
    }
#if BENCH_PMDK
    if (w == "pmdk" || w == "pmdk-forced") {
        const char *f = getenv("PMEM_IS_PMEM_FORCE");
        bool forced = f && strcmp(f, "1") == 0;
        if (w == "pmdk-forced" && !forced)
            fail("pmdk-forced", "PMEM_IS_PMEM_FORCE=1 is not set");
        if (w == "pmdk" && forced && opt.phase != "fill")
            fail("pmdk", "PMEM_IS_PMEM_FORCE=1 is set: that is pmdk-forced");
        Pmdk a;
        if (opt.phase == "fill") { // child: forced, fills the pool, exits
            a.create(path.c_str(), opt.objects);
            fill(a);
            a.close();
            return 0;
        }
        if (w == "pmdk") {
            remove_pool(path);
            fflush(NULL);
            pid_t pid = fork();
            if (pid == 0) {
                setenv("PMEM_IS_PMEM_FORCE", "1", 1);
                std::string objs = "--objects=" + std::to_string(opt.objects);
                std::string pool = "--pool=" + path;
                execl("/proc/self/exe", "bench_persist_alloc", "--one=pmdk", "--phase=fill",
                      objs.c_str(), pool.c_str(), (char *)nullptr);
                _exit(127);
            }
            int st;
            if (pid < 0 || waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st))
                fail("pmdk", "the fill process failed");
            int fd = ::open(path.c_str(), O_RDWR);
            if (fd < 0 || fsync(fd) != 0)
                fail(path.c_str(), strerror(errno));
            ::close(fd);
            a.open(path.c_str(), opt.objects);
            run(a, w.c_str(), true);
            a.close();
            remove_pool(path);
            return 0;
        }
        return run_fresh(a, path, w.c_str(), opt.objects, true);
    }
#endif
#if BENCH_BOOST
    if (w == "boost") {
        Boost a;
        return run_fresh(a, path, w.c_str(), opt.objects, false);
    }
#endif
    fprintf(stderr, "bench_persist_alloc: %s: not built in (install the peer and rebuild)\n",
            w.c_str());
    return 3;
}

// ---- orchestrator ---------------------------------------------------------

struct Res {
    bool ok = false;
    double ops = 0, ns = 0, commit_ns = 0, commits = 0, wbytes = 0, changed = 0, dev = -1;
    std::string lib, why;
};

Res spawn(const std::string &alloc)
{
    Res r;
    int pfd[2];
    if (pipe(pfd) != 0)
        fail("pipe", strerror(errno));
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        dup2(pfd[1], 1);
        ::close(pfd[0]);
        ::close(pfd[1]);
        if (alloc == "pmdk-forced")
            setenv("PMEM_IS_PMEM_FORCE", "1", 1);
        else
            unsetenv("PMEM_IS_PMEM_FORCE");
        std::vector<std::string> args = {
            "bench_persist_alloc", "--one=" + alloc, "--dir=" + opt.dir,
            "--objects=" + std::to_string(opt.objects), "--ops=" + std::to_string(opt.ops),
            "--commit-every=" + std::to_string(opt.commit_every),
            "--seconds=" + std::to_string(opt.seconds),
            "--pmdk-seconds=" + std::to_string(opt.pmdk_seconds)
        };
        std::vector<char *> av;
        for (auto &s : args)
            av.push_back((char *)s.c_str());
        av.push_back(nullptr);
        execv("/proc/self/exe", av.data());
        _exit(127);
    }
    ::close(pfd[1]);
    std::string out;
    char buf[4096];
    ssize_t n;
    while ((n = read(pfd[0], buf, sizeof buf)) > 0)
        out.append(buf, (size_t)n);
    ::close(pfd[0]);
    int st;
    waitpid(pid, &st, 0);
    char name[64], lib[1024];
    unsigned long long a, b, c, d, e, g;
    double dv;
    const char *line = strstr(out.c_str(), "result\t");
    if (WIFEXITED(st) && WEXITSTATUS(st) == 0 && line &&
        sscanf(line, "result\t%63s\t%llu\t%llu\t%llu\t%llu\t%llu\t%llu\t%lf\t%1023[^\n]", name,
               &a, &b, &c, &d, &e, &g, &dv, lib) == 9) {
        r.ok = true;
        r.ops = (double)a;
        r.ns = (double)b;
        r.commit_ns = (double)c;
        r.commits = (double)d;
        r.wbytes = (double)e;
        r.changed = (double)g;
        r.dev = dv;
        r.lib = lib;
    } else
        r.why = WIFEXITED(st) ? "exit status " + std::to_string(WEXITSTATUS(st))
                              : "killed by signal " + std::to_string(WTERMSIG(st));
    return r;
}

double median(std::vector<double> v)
{
    if (v.empty())
        return -1;
    std::sort(v.begin(), v.end());
    size_t n = v.size();
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

int orchestrate()
{
    std::vector<std::string> al;
    for (size_t s = 0; s <= opt.allocs.size();) {
        size_t e = opt.allocs.find(',', s);
        if (e == std::string::npos)
            e = opt.allocs.size();
        if (e > s)
            al.push_back(opt.allocs.substr(s, e - s));
        s = e + 1;
    }
    size_t na = al.size();
    std::vector<std::vector<Res>> res(na, std::vector<Res>(opt.rounds));
    FILE *raw = opt.raw.empty() ? nullptr : fopen(opt.raw.c_str(), "a");
    fprintf(stderr, "bench_persist_alloc: %d rounds of %s\n", opt.rounds, opt.allocs.c_str());
    for (int r = 0; r < opt.rounds; r++)
        for (size_t k = 0; k < na; k++) {
            size_t i = (k + (size_t)r) % na;
            res[i][r] = spawn(al[i]);
            const Res &x = res[i][r];
            if (!x.ok)
                fprintf(stderr, "bench_persist_alloc: %s: %s\n", al[i].c_str(), x.why.c_str());
            if (raw)
                fprintf(raw, "alloc\t%s\t%d\t%d\t%.0f\t%.0f\t%.0f\t%.0f\t%.0f\t%.0f\t%.0f\t%s\n",
                        al[i].c_str(), r, x.ok, x.ops, x.ns, x.commit_ns, x.commits, x.wbytes,
                        x.changed, x.dev, x.lib.c_str());
        }
    if (raw)
        fclose(raw);

    printf("### Persistent alloc/free with a commit every %zu operations\n\n", opt.commit_every);
    printf("%zu live objects of 16..1024 B, random slot replaced each step (free + alloc = 2 "
           "operations), up to %zu operations or %.0f s per measurement (pmdk: %.1f s); median of %d rounds, "
           "allocators interleaved (order rotated each round)\n\n",
           opt.objects, opt.ops, opt.seconds, opt.pmdk_seconds, opt.rounds);
    printf("- **MB dirtied**: write_bytes of `/proc/self/io` over the loop (counted when page-cache "
           "pages become dirty, a whole folio at a time); **device MB**: sectors the block device "
           "holding --dir wrote over the loop x 512 (what reached storage, the filesystem's "
           "journal and any other process's writes included)\n"
           "- **pages changed per commit**: mmheap only, the pages its tracker found written "
           "(`mmh_stats` faults); **/ changed**: bytes written per byte of those pages\n\n");
    printf("| allocator | operations/s | ns per operation | ops measured | share in commits "
           "| ms per commit | MB dirtied per 10k ops | device MB per 10k ops | pages changed per "
           "commit | write_bytes / changed | device / changed |\n"
           "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n");
    auto fmt = [](const std::vector<double> &v, const char *f) {
        char b[64];
        if (v.empty())
            return std::string("n/a");
        snprintf(b, sizeof b, f, median(v));
        return std::string(b);
    };
    for (size_t i = 0; i < na; i++) {
        std::vector<double> tput, nsop, ops, share, cms, wb, dev, pgc, aw, ad;
        for (int r = 0; r < opt.rounds; r++) {
            const Res &x = res[i][r];
            if (!x.ok)
                continue;
            tput.push_back(x.ops / x.ns * 1e9);
            nsop.push_back(x.ns / x.ops);
            ops.push_back(x.ops);
            share.push_back(x.commit_ns / x.ns * 100);
            if (x.commits)
                cms.push_back(x.commit_ns / x.commits / 1e6);
            wb.push_back(x.wbytes / x.ops * 10000 / 1e6);
            if (x.dev >= 0)
                dev.push_back(x.dev / x.ops * 10000 / 1e6);
            if (x.changed > 0) {
                if (x.commits)
                    pgc.push_back(x.changed / 4096 / x.commits);
                aw.push_back(x.wbytes / x.changed);
                if (x.dev >= 0)
                    ad.push_back(x.dev / x.changed);
            }
        }
        if (tput.empty()) {
            printf("| %s | failed: %s | | | | | | | | | |\n", al[i].c_str(),
                   res[i][0].why.c_str());
            continue;
        }
        printf("| %s | %.0f | %.0f | %.0f | %.0f%% | %s | %.1f | %s | %s | %s | %s |\n",
               al[i].c_str(), median(tput), median(nsop), median(ops), median(share),
               cms.empty() ? "-" : fmt(cms, "%.1f").c_str(), median(wb), fmt(dev, "%.1f").c_str(),
               fmt(pgc, "%.0f").c_str(), fmt(aw, "%.2f").c_str(), fmt(ad, "%.2f").c_str());
    }
    size_t base = na;
    for (size_t i = 0; i < na; i++)
        if (al[i] == "mmheap")
            base = i;
    if (base < na) {
        printf("\nthroughput of mmheap (private) / peer (median over rounds of the same-round "
               "ratio; > 1: mmheap faster)\n\n| peer | ratio | range |\n|---|--:|--:|\n");
        double vs_pmdk = -1, vs_boost = -1, vs_forced = -1, vs_shared = -1;
        for (size_t i = 0; i < na; i++) {
            if (i == base)
                continue;
            std::vector<double> v;
            for (int r = 0; r < opt.rounds; r++)
                if (res[i][r].ok && res[base][r].ok)
                    v.push_back((res[base][r].ops / res[base][r].ns) / (res[i][r].ops / res[i][r].ns));
            if (v.empty())
                continue;
            double m = median(v);
            printf("| %s | %.2f | %.2f-%.2f |\n", al[i].c_str(), m,
                   *std::min_element(v.begin(), v.end()), *std::max_element(v.begin(), v.end()));
            if (al[i] == "pmdk")
                vs_pmdk = m;
            if (al[i] == "pmdk-forced")
                vs_forced = m;
            if (al[i] == "boost")
                vs_boost = m;
            if (al[i] == "mmheap-shared")
                vs_shared = m;
        }
        printf("\n**alloc/free target (earlier issue)**: >= 10x PMDK: ");
        if (vs_pmdk >= 0)
            printf("%.1fx => %s", vs_pmdk, vs_pmdk >= 10 ? "MET" : "NOT MET");
        else
            printf("not measured");
        if (vs_forced >= 0)
            printf(" (%.2fx against PMDK with PMEM_IS_PMEM_FORCE=1, not durable)", vs_forced);
        printf("\n\n**alloc/free targets of issue 13**: >= 1.5x Boost.Interprocess: ");
        if (vs_boost >= 0)
            printf("%.2fx => %s", vs_boost, vs_boost >= 1.5 ? "MET" : "NOT MET");
        else
            printf("not measured");
        printf("; ahead of mmheap's shared mode (> 1x): ");
        if (vs_shared >= 0)
            printf("%.2fx => %s\n", vs_shared, vs_shared > 1 ? "MET" : "NOT MET");
        else
            printf("not measured\n");
    }
    printf("\n```\nlibraries:\n");
    for (size_t i = 0; i < na; i++)
        for (int r = 0; r < opt.rounds; r++)
            if (res[i][r].ok) {
                printf("  %-14s %s\n", al[i].c_str(), res[i][r].lib.c_str());
                break;
            }
    printf("```\n\n");
    return 0;
}

void usage(FILE *f)
{
    fprintf(f, "usage: bench_persist_alloc [options]\n"
               "  --dir=DIR            where the pools go (default $TMPDIR or /tmp)\n"
               "  --allocators=A,B     subset of mmheap,mmheap-shared,pmdk,pmdk-forced,boost\n"
               "  --rounds=N           rounds (default 3)\n"
               "  --objects=N          live objects (default 100000)\n"
               "  --ops=N              operations per measurement (default 400000)\n"
               "  --commit-every=N     operations between commits (default 10000)\n"
               "  --seconds=S          cap per measurement (default 5)\n"
               "  --pmdk-seconds=S     cap for pmdk, durable (default 1.5: it writes GBs)\n"
               "  --raw=FILE           append every measurement to FILE\n"
               "  --one=ALLOC          run one measurement, print its result line\n");
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
        else if (k == "--allocators")
            opt.allocs = v;
        else if (k == "--rounds")
            opt.rounds = atoi(v.c_str());
        else if (k == "--objects")
            opt.objects = strtoull(v.c_str(), nullptr, 10);
        else if (k == "--ops")
            opt.ops = strtoull(v.c_str(), nullptr, 10);
        else if (k == "--commit-every")
            opt.commit_every = strtoull(v.c_str(), nullptr, 10);
        else if (k == "--seconds")
            opt.seconds = atof(v.c_str());
        else if (k == "--pmdk-seconds")
            opt.pmdk_seconds = atof(v.c_str());
        else if (k == "--raw")
            opt.raw = v;
        else if (k == "--one")
            opt.one = v;
        else if (k == "--phase")
            opt.phase = v;
        else if (k == "--pool")
            opt.pool = v;
        else if (k == "-h" || k == "--help") {
            usage(stdout);
            return 0;
        } else {
            fprintf(stderr, "bench_persist_alloc: unknown option %s\n", argv[i]);
            usage(stderr);
            return 1;
        }
    }
    if (opt.objects < 1 || opt.commit_every < 2 || opt.rounds < 1 || opt.rounds > 1000) {
        fprintf(stderr, "bench_persist_alloc: option out of range\n");
        return 1;
    }
    return opt.one.empty() ? orchestrate() : run_one();
}
