// test_malloc_cxx: the drop-in malloc's C++ operators new and delete.
//
// Plain, array, sized, aligned (alignas(64), alignas(4096), explicit
// std::align_val_t) and nothrow forms; std::bad_alloc for impossible sizes;
// the new-handler loop (called until it gives up, or throws: out of the
// throwing forms, into nullptr from the nothrow ones); thread_local objects
// whose destructors allocate.  Linked to libmmheap-malloc by make check,
// where every form must come from mmh_default_heap(); the same checks hold
// for libstdc++'s operators over glibc (built by hand, see test_malloc.c).
#include <csetjmp>
#include <cstdarg>
#include <cstddef>
#include <cstdint>
extern "C" {            // cmocka 1.1's header does not say it is C itself
#include <cmocka.h>
}
#include "testutil.h"

#include <atomic>
#include <new>
#include <string>
#include <thread>
#include <vector>

// Sizes no allocator can satisfy, read through a volatile so the compiler
// neither warns about them nor assumes what the call returns.
static volatile std::size_t impossible_size = static_cast<std::size_t>(PTRDIFF_MAX) + 1;

// Where allocations are stored so that they count: a new-expression whose
// result is never used may be left out entirely (C++14 [expr.new]).
static void *volatile sink;

static void assert_from_malloc_heap(const void *p)
{
    assert_non_null(p);
    if (tu_malloc_is_mmheap() && mmh_offset(tu_malloc_heap(), p) == 0)
        fail_msg("%p is not in mmh_default_heap()", p);
}

static bool is_aligned(const void *p, std::size_t align)
{
    return (reinterpret_cast<std::uintptr_t>(p) & (align - 1)) == 0;
}

struct alignas(64) Line {
    unsigned char bytes[64];
};

struct alignas(4096) Page {
    unsigned char bytes[4096];
};

// A non-trivial destructor makes new[] store the count, so delete[] is
// the sized form with the cookie included.
struct Counted {
    static std::atomic<long> live;
    std::uint64_t v;
    Counted() : v(0x1234) { live++; }
    ~Counted() { live--; }
};
std::atomic<long> Counted::live{0};

static void test_operators_are_mmheap(void **)
{
    if (tu_malloc_must_be_mmheap())
        assert_true(tu_malloc_is_mmheap());
    if (!tu_malloc_is_mmheap())
        skip();
    int *one = new int(5);
    int *arr = new int[100]();
    Line *line = new Line;
    Page *page = new Page;
    char *nt = new (std::nothrow) char[10];
    void *al = ::operator new(100, std::align_val_t(256));
    assert_from_malloc_heap(one);
    assert_from_malloc_heap(arr);
    assert_from_malloc_heap(line);
    assert_from_malloc_heap(page);
    assert_from_malloc_heap(nt);
    assert_from_malloc_heap(al);
    delete one;
    delete[] arr;
    delete line;
    delete page;
    delete[] nt;
    ::operator delete(al, std::align_val_t(256));

    std::string s(1000, 'x');           // the library's own allocations
    std::vector<int> v(5000, 1);
    assert_from_malloc_heap(s.data());
    assert_from_malloc_heap(v.data());
}

static void test_new_delete_contents(void **)
{
    tu_rng rng = { 11 };
    std::vector<std::string> strings;
    for (int i = 0; i < 20000; i++) {
        std::size_t n = tu_rand_log(&rng, 1, i % 100 ? 2000 : 300000);
        strings.emplace_back(n, static_cast<char>('a' + i % 26));
    }
    for (int i = 0; i < 20000; i += 2)
        strings[i] = std::string();
    for (int i = 1; i < 20000; i += 2) {
        const std::string &s = strings[i];
        for (char c : s)
            if (c != static_cast<char>('a' + i % 26))
                fail_msg("string %d corrupted", i);
    }

    Counted *c = new Counted[77];
    assert_int_equal(Counted::live.load(), 77);
    for (int i = 0; i < 77; i++)
        assert_int_equal(c[i].v, 0x1234);
    delete[] c;
    assert_int_equal(Counted::live.load(), 0);
}

static void test_sized_delete(void **)
{
    std::size_t used0, used1, footprint;
    tu_malloc_usage(&used0, &footprint);
    tu_rng rng = { 12 };
    for (int i = 0; i < 20000; i++) {
        std::size_t n = tu_rand_log(&rng, 1, i % 500 ? 64 * KiB : 4 * MiB);
        void *p = ::operator new(n);
        void *q = ::operator new[](n);
        tu_fill(p, n, 1);
        tu_fill(q, n, 2);
        assert_pattern(p, n, 1);
        ::operator delete(p, n);
        ::operator delete[](q, n);
    }
    tu_malloc_usage(&used1, &footprint);
    if (used1 > used0 + 64 * KiB)
        fail_msg("in use %zu before, %zu after sized deletes", used0, used1);
}

static void test_aligned_new(void **)
{
    std::vector<Line *> lines;
    std::vector<Page *> pages;
    for (int i = 0; i < 300; i++) {
        lines.push_back(new Line);
        pages.push_back(new Page);
        assert_true(is_aligned(lines.back(), 64));
        assert_true(is_aligned(pages.back(), 4096));
        memset(lines.back()->bytes, i, sizeof(Line));
        memset(pages.back()->bytes, i, sizeof(Page));
    }
    Page *parr = new Page[5];
    Line *larr = new Line[33];
    sink = parr;
    sink = larr;
    for (int i = 0; i < 5; i++)
        assert_true(is_aligned(&parr[i], 4096));
    for (int i = 0; i < 33; i++)
        assert_true(is_aligned(&larr[i], 64));
    delete[] parr;
    delete[] larr;
    for (int i = 0; i < 300; i++) {
        assert_true(tu_all_bytes(pages[i]->bytes, sizeof(Page), static_cast<unsigned char>(i)));
        delete lines[i];
        delete pages[i];
    }

    std::vector<Line> vec(1000);            // allocator<Line>: aligned new
    assert_true(is_aligned(vec.data(), 64));

    for (std::size_t align = 16; align <= 1 * MiB; align *= 2) {
        for (std::size_t n : { std::size_t(1), align, 3 * align + 5 }) {
            const auto al = static_cast<std::align_val_t>(align);
            void *p = ::operator new(n, al);
            void *q = ::operator new[](n, al);
            void *r = ::operator new(n, al, std::nothrow);
            assert_non_null(r);
            if (!is_aligned(p, align) || !is_aligned(q, align) || !is_aligned(r, align))
                fail_msg("align %zu size %zu: %p %p %p", align, n, p, q, r);
            memset(p, 1, n);
            memset(q, 2, n);
            memset(r, 3, n);
            ::operator delete(p, n, al);
            ::operator delete[](q, al);
            ::operator delete(r, al, std::nothrow);
        }
    }
}

static void test_nothrow(void **)
{
    int *p = new (std::nothrow) int[1000];
    assert_non_null(p);
    p[999] = 1;
    delete[] p;
    // size 0: distinct, non-null
    void *z1 = ::operator new(0, std::nothrow);
    void *z2 = ::operator new(0);
    assert_non_null(z1);
    assert_non_null(z2);
    assert_ptr_not_equal(z1, z2);
    ::operator delete(z1);
    ::operator delete(z2);
    std::size_t huge = impossible_size;
    assert_null(::operator new(huge, std::nothrow));
    assert_null(::operator new[](huge, std::nothrow));
    assert_null(::operator new(huge, std::align_val_t(64), std::nothrow));
    assert_null(::operator new[](huge, std::align_val_t(4096), std::nothrow));
}

// Calls op(huge) and checks that it throws std::bad_alloc.
template <typename Op>
static void expect_bad_alloc(const char *what, Op op)
{
    bool thrown = false;
    try {
        sink = op(static_cast<std::size_t>(impossible_size));
    } catch (const std::bad_alloc &) {
        thrown = true;
    }
    if (!thrown)
        fail_msg("%s of an impossible size did not throw std::bad_alloc", what);
}

static void test_bad_alloc(void **)
{
    expect_bad_alloc("operator new", [](std::size_t n) { return ::operator new(n); });
    expect_bad_alloc("operator new[]", [](std::size_t n) { return ::operator new[](n); });
    expect_bad_alloc("aligned operator new",
                     [](std::size_t n) { return ::operator new(n, std::align_val_t(256)); });
    expect_bad_alloc("new char[]", [](std::size_t n) { return new char[n]; });
}

static int handler_calls;

// Gives up on its third call: takes itself out, so operator new throws.
static void counting_handler()
{
    if (++handler_calls == 3)
        std::set_new_handler(nullptr);
}

// What a handler may throw ([new.handler]: a std::bad_alloc), told apart
// from the std::bad_alloc of operator new itself.
struct handler_gave_up : std::bad_alloc {};

static void throwing_handler()
{
    handler_calls++;
    throw handler_gave_up();
}

static void test_new_handler(void **)
{
    // operator new calls the handler while allocation fails and it is set
    const struct {
        const char *what;
        void *(*op)(std::size_t);
    } forms[] = {
        { "operator new", [](std::size_t n) { return ::operator new(n); } },
        { "operator new[]", [](std::size_t n) { return ::operator new[](n); } },
        { "aligned operator new",
          [](std::size_t n) { return ::operator new(n, std::align_val_t(128)); } },
    };
    for (const auto &f : forms) {
        handler_calls = 0;
        std::set_new_handler(counting_handler);
        expect_bad_alloc(f.what, f.op);
        if (handler_calls != 3)
            fail_msg("%s: new-handler called %d times, expected 3", f.what, handler_calls);
    }

    // the nothrow forms return nullptr at once: the library does not call
    // the handler for them, since C cannot catch what a handler throws
    // (libstdc++'s own nothrow forms call it; both are allowed)
    handler_calls = 0;
    std::set_new_handler(counting_handler);
    assert_null(::operator new(impossible_size, std::nothrow));
    assert_int_equal(handler_calls, tu_malloc_is_mmheap() ? 0 : 3);

    // an exception from the handler reaches the caller of the throwing
    // forms (the nothrow ones: test_nothrow_handler_throws)
    handler_calls = 0;
    std::set_new_handler(throwing_handler);
    bool caught = false;
    try {
        (void)::operator new(impossible_size);
    } catch (const handler_gave_up &) {
        caught = true;
    }
    std::set_new_handler(nullptr);
    assert_true(caught);
    assert_int_equal(handler_calls, 1);

    // with a handler installed, allocations that succeed never call it
    handler_calls = 0;
    std::set_new_handler(counting_handler);
    char *p = new char[100];
    sink = p;
    delete[] p;
    std::set_new_handler(nullptr);
    assert_int_equal(handler_calls, 0);
}

static void throw_bad_alloc()
{
    throw std::bad_alloc();
}

// In a child: if the nothrow forms let the handler's exception out of
// their noexcept declaration, the program terminates.
static int nothrow_with_throwing_handler(void *)
{
    std::set_new_handler(throw_bad_alloc);
    CK(::operator new(impossible_size, std::nothrow) == nullptr);
    CK(::operator new[](impossible_size, std::nothrow) == nullptr);
    CK(::operator new(impossible_size, std::align_val_t(64), std::nothrow) == nullptr);
    return 0;
}

// A new-handler may throw std::bad_alloc ([new.handler]); the nothrow
// forms then return nullptr.
static void test_nothrow_handler_throws(void **)
{
    assert_child_ok(nothrow_with_throwing_handler, nullptr);
}

// A thread_local object whose destructor, run at thread exit, frees its
// strings and allocates more.
struct ThreadState {
    static std::atomic<long> destroyed;
    std::vector<std::string> names;
    ~ThreadState()
    {
        std::string scratch(5000, 'z');
        names.clear();
        names.shrink_to_fit();
        scratch += std::string(200, 'y');
        destroyed++;
    }
};
std::atomic<long> ThreadState::destroyed{0};

static thread_local ThreadState thread_state;

static void test_thread_local_destructors(void **)
{
    const long threads = tu_scaled(500, 50);
    auto run = [](long n) {
        for (long i = 0; i < n; i += 4) {
            std::thread t[4];
            for (auto &th : t)
                th = std::thread([] {
                    for (int k = 0; k < 20; k++)
                        thread_state.names.emplace_back(100 + 50 * k, 'n');
                });
            for (auto &th : t)
                th.join();
        }
    };
    run(threads / 10);
    std::size_t used0, fp0, used1, fp1;
    tu_malloc_usage(&used0, &fp0);
    long before = ThreadState::destroyed.load();
    run(threads);
    tu_malloc_usage(&used1, &fp1);
    assert_true(ThreadState::destroyed.load() - before >= threads);
    if (used1 > used0 + 64 * KiB)
        fail_msg("in use grew from %zu to %zu over %ld threads", used0, used1, threads);
}

int main()
{
    if (!tu_malloc_testable())
        return 77;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_operators_are_mmheap),
        cmocka_unit_test(test_new_delete_contents),
        cmocka_unit_test(test_sized_delete),
        cmocka_unit_test(test_aligned_new),
        cmocka_unit_test(test_nothrow),
        cmocka_unit_test(test_bad_alloc),
        cmocka_unit_test(test_new_handler),
        cmocka_unit_test(test_nothrow_handler_throws),
        cmocka_unit_test(test_thread_local_destructors),
    };
    return TU_RUN(tests);
}
