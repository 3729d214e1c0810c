// test_cxx: the C++ layer, include/mmheap.hpp.
//
// Nested standard containers (an unordered_map and a map of heap strings
// to heap vectors) are made with find_or_construct, committed, and then
// read and changed by a fresh process image (this program run again with
// --reopen), where nothing process-local of the first survives, and read
// once more here.  Errors of the C API as mmh::error, find and destroy,
// a throwing constructor, concurrent find_or_construct, and the
// allocator's equality, rebinding and assignment between heaps.
#include <cstdarg>
#include <cstddef>
#include <csetjmp>
#include <cstdint>
extern "C" {            // cmocka 1.1's header does not say it is C itself
#include <cmocka.h>
}
// First: its mmh_open and mmh_close macros make mmheap.hpp's calls go
// through the tests' checks of every heap opened and closed.
#include "testutil.h"

#include <mmheap.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <type_traits>
#include <unordered_map>
#include <vector>

using Ints = std::vector<int, mmh::allocator<int>>;
template <class K, class V>
using Pairs = mmh::allocator<std::pair<const K, V>>;
using Index = std::unordered_map<mmh::string, Ints, mmh::string_hash,
                                 std::equal_to<mmh::string>, Pairs<mmh::string, Ints>>;
using Ordered = std::map<mmh::string, Ints, std::less<>, Pairs<mmh::string, Ints>>;

// What the containers should hold, as process-local standard containers.
using Model = std::map<std::string, std::vector<int>>;

// Heaps of the tests reserve 64 MiB: valgrind takes seconds to map and
// unmap the default reservation (1 TiB).
static mmh_config small(unsigned flags = 0)
{
    return tu_cfg(flags, 0, 64 * MiB);
}

// ------------------------------------------------------------- contents

// Keys longer than the strings' inline buffer, so that they are heap blocks
// too, and a few short ones, which live inside the string object.
static std::string key(const char *prefix, int i)
{
    char buf[80];
    if (i % 7 == 0)
        snprintf(buf, sizeof buf, "%s%d", prefix, i);
    else
        snprintf(buf, sizeof buf, "%s-%04d: a key longer than any inline buffer", prefix, i);
    return buf;
}

static int length(int i)
{
    return i % 17 + 1;
}

// The first process's contents: n items.
static Model model_made(int n)
{
    Model m;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < length(i); j++)
            m[key("item", i)].push_back(i * 100 + j);
    return m;
}

// What the second process makes of them: every tenth item removed, -i
// appended to the others, and n / 4 new items.
static Model model_changed(int n)
{
    Model m = model_made(n);
    for (int i = 0; i < n; i++) {
        if (i % 10 == 0)
            m.erase(key("item", i));
        else
            m[key("item", i)].push_back(-i);
    }
    for (int i = 0; i < n / 4; i++)
        for (int j = 0; j < length(i); j++)
            m[key("added", i)].push_back(j - i);
    return m;
}

// Fills an empty map (either kind) with model_made(n).  Each key and value
// is made with the map's allocator: containers nested in a heap container
// need theirs given.
template <class Map>
static void make(Map &map, int n)
{
    auto a = map.get_allocator();
    for (int i = 0; i < n; i++) {
        Ints &v = map.try_emplace(mmh::string(key("item", i), a), a).first->second;
        for (int j = 0; j < length(i); j++)
            v.push_back(i * 100 + j);
    }
}

// Turns model_made(n) into model_changed(n).
template <class Map>
static void change(Map &map, int n)
{
    auto a = map.get_allocator();
    for (int i = 0; i < n; i++) {
        auto it = map.find(mmh::string(key("item", i), a));
        if (i % 10 == 0)
            map.erase(it);
        else
            it->second.push_back(-i);
    }
    for (int i = 0; i < n / 4; i++) {
        Ints v(a);
        for (int j = 0; j < length(i); j++)
            v.push_back(j - i);
        map.emplace(mmh::string(key("added", i), a), std::move(v));
    }
}

// Does the map hold exactly the model, every key and vector drawing from
// the heap h?  Looks nothing up in the map, which would allocate its keys.
template <class Map>
static bool holds(const Map &map, const Model &model, mmh_heap *h)
{
    if (map.size() != model.size())
        return false;
    mmh::allocator<char> ours(h);
    for (const auto &[k, v] : map) {
        auto it = model.find(std::string(k));
        if (it == model.end() || !std::equal(v.begin(), v.end(), it->second.begin(),
                                             it->second.end()))
            return false;
        if (k.get_allocator() != ours || v.get_allocator() != ours)
            return false;
    }
    return true;
}

// ------------------------------------------------------ across processes

// In a fresh process: checks what the first made, changes it, commits.
static int reopen_and_change(const char *path, int n)
{
    try {
        mmh::heap h(path);
        auto *index = h.find<Index>("index");
        auto *ordered = h.find<Ordered>("ordered");
        CK(index && ordered);
        CK(holds(*index, model_made(n), h.get()));
        CK(holds(*ordered, model_made(n), h.get()));
        change(*index, n);
        change(*ordered, n);
        h.commit();
        h.close();
        return 0;
    } catch (const std::exception &e) {
        fprintf(stderr, "reopen_and_change: %s\n", e.what());
        return 1;
    }
}

static void test_containers_new_process(void **state)
{
    (void)state;
    char *path = tu_path("containers.heap");
    int n = (int)tu_scaled(1000, 100);
    {
        mmh::heap h(path, small(MMH_CREATE));
        make(*h.find_or_construct<Index>("index", h), n);
        make(*h.find_or_construct<Ordered>("ordered", h), n);
        h.commit();
        h.close();
    }

    std::string count = std::to_string(n);
    const char *args[] = { "--reopen", path, count.c_str(), NULL };
    int st = tu_run_self(args);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);

    mmh::heap h(path);
    auto *index = h.find<Index>("index");
    auto *ordered = h.find<Ordered>("ordered");
    assert_non_null(index);
    assert_non_null(ordered);
    assert_true(holds(*index, model_changed(n), h.get()));
    assert_true(holds(*ordered, model_changed(n), h.get()));
    // find_or_construct finds; the arguments are not used
    assert_ptr_equal(h.find_or_construct<Index>("index", h), index);
    h.close();
    unlink(path);
    free(path);
}

// ------------------------------------------------------------- errors

static void test_error_missing_file(void **state)
{
    (void)state;
    char *path = tu_path("missing.heap");
    try {
        mmh::heap h(path);
        fail_msg("opened a missing file");
    } catch (const mmh::error &e) {
        assert_int_equal(e.code, ENOENT);
        assert_non_null(strstr(e.what(), path));
    }
    free(path);
}

static void test_error_second_writer(void **state)
{
    (void)state;
    char *path = tu_path("busy.heap");
    mmh::heap h(path, small(MMH_CREATE));
    try {
        mmh::heap second(path);
        fail_msg("a second writer opened the file");
    } catch (const mmh::error &e) {
        assert_int_equal(e.code, EBUSY);
        assert_non_null(strstr(e.what(), "busy.heap"));
    }
    h.close();
    unlink(path);
    free(path);
}

static void test_error_commit_anonymous(void **state)
{
    (void)state;
    mmh::heap h(nullptr, small());
    try {
        h.commit();
        fail_msg("committed an anonymous heap");
    } catch (const mmh::error &e) {
        assert_int_equal(e.code, EINVAL);
    }
}

static void test_error_closed_heap(void **state)
{
    (void)state;
    mmh::heap h(nullptr, small());
    mmh::allocator<int> a(h);
    int *p = a.allocate(4);
    h.close();
    h.close(); // closing again does nothing
    a.deallocate(p, 4); // the heap is gone, and its block with it
    try {
        a.allocate(1);
        fail_msg("allocated from a closed heap");
    } catch (const mmh::error &e) {
        assert_int_equal(e.code, EINVAL);
        assert_non_null(strstr(e.what(), "no heap is open"));
    }
    try {
        h.find<int>("x");
        fail_msg("looked a name up in a closed heap");
    } catch (const mmh::error &e) {
        assert_int_equal(e.code, EINVAL);
    }

    // so does a moved-from heap
    mmh::heap from(nullptr, small());
    mmh::heap to(std::move(from));
    assert_null(from.get());
    assert_non_null(to.get());
    to = mmh::heap(nullptr, small());
    assert_non_null(to.get());
}

static void test_out_of_memory(void **state)
{
    (void)state;
    mmh::heap h(nullptr, tu_cfg(0, 4 * MiB, 4 * MiB));
    mmh::allocator<char> a(h);
    try {
        a.allocate(8 * MiB);
        fail_msg("allocated more than the heap holds");
    } catch (const std::bad_alloc &) {
    }
    mmh::allocator<std::uint64_t> wide(h);
    try {
        wide.allocate(SIZE_MAX / 4);
        fail_msg("allocated an overflowing size");
    } catch (const std::bad_array_new_length &) {
    }
    Ints v(h);
    try {
        v.resize(2 * MiB);
        fail_msg("a vector grew past the heap");
    } catch (const std::bad_alloc &) {
    }
}

// ------------------------------------------------------------ names

static void test_find_missing(void **state)
{
    (void)state;
    mmh::heap h(nullptr, small());
    assert_null(h.find<int>("nothing"));
    assert_false(h.destroy<int>("nothing"));
    std::string long_name(MMH_NAME_MAX + 1, 'n');
    try {
        h.find<int>(long_name.c_str());
        fail_msg("looked up a name that is too long");
    } catch (const mmh::error &e) {
        assert_int_equal(e.code, ENAMETOOLONG);
    }
}

static std::uint64_t live_blocks(const mmh::heap &h)
{
    return tu_stats(h.get()).allocations;
}

struct Throws {
    explicit Throws(int) { throw std::runtime_error("Throws"); }
};

struct alignas(64) Line {
    unsigned char bytes[64];
};

static void test_construct_destroy(void **state)
{
    (void)state;
    mmh::heap h(nullptr, small());
    std::uint64_t before = live_blocks(h);

    // a throwing constructor leaves neither a block nor a name
    try {
        h.find_or_construct<Throws>("throws", 1);
        fail_msg("the constructor did not throw");
    } catch (const std::runtime_error &e) {
        assert_string_equal(e.what(), "Throws");
    }
    assert_null(h.find<Throws>("throws"));
    assert_int_equal(live_blocks(h), before);

    // constructor arguments, alignment
    auto *s = h.find_or_construct<mmh::string>("greeting", 40, 'x', h);
    assert_int_equal(s->size(), 40);
    assert_ptr_equal(h.find<mmh::string>("greeting"), s);
    auto *line = h.find_or_construct<Line>("line");
    assert_int_equal(reinterpret_cast<std::uintptr_t>(line) % 64, 0);

    // destroy runs the destructor (the string's block goes too)
    assert_true(h.destroy<mmh::string>("greeting"));
    assert_true(h.destroy<Line>("line"));
    assert_null(h.find<mmh::string>("greeting"));
    assert_int_equal(live_blocks(h), before);
}

// Counts its constructions, and takes its time, so that threads meet.
struct Slow {
    static std::atomic<int> made;
    int value;
    Slow() : value(42)
    {
        made++;
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
};
std::atomic<int> Slow::made;

static void test_construct_threads(void **state)
{
    (void)state;
    mmh::heap h(nullptr, small());
    const int threads = 8;
    Slow *got[threads];
    std::vector<std::thread> pool;
    for (int t = 0; t < threads; t++)
        pool.emplace_back([&h, &got, t] { got[t] = h.find_or_construct<Slow>("slow"); });
    for (auto &th : pool)
        th.join();
    assert_int_equal(Slow::made.load(), 1);
    for (int t = 0; t < threads; t++)
        assert_ptr_equal(got[t], got[0]);
    assert_int_equal(got[0]->value, 42);
}

// ---------------------------------------------------------- the allocator

static void test_allocator_equality(void **state)
{
    (void)state;
    using Traits = std::allocator_traits<mmh::allocator<int>>;
    static_assert(std::is_same_v<Traits::rebind_alloc<double>, mmh::allocator<double>>);
    static_assert(!Traits::is_always_equal::value);
    static_assert(!Traits::propagate_on_container_move_assignment::value);

    mmh::heap one(nullptr, small()), two(nullptr, small());
    mmh::allocator<int> a(one), b(one.get()), c(two);
    Traits::rebind_alloc<double> rebound(a);
    assert_true(a == b);
    assert_true(a == rebound);
    assert_true(rebound == a);
    assert_true(a != c);
    assert_false(a == c);
    assert_ptr_equal(a.base(), reinterpret_cast<void *>(tu_stats(one.get()).base));

    // the rebound allocator draws from the same heap; blocks of one go
    // back through an equal one
    double *d = rebound.allocate(3);
    assert_ptr_equal(mmh_heap_of(d), one.get());
    mmh::allocator<double>(b).deallocate(d, 3);

    // assignment keeps each container's memory in its own heap
    Ints in_one(one), in_two(c);
    in_two.assign(100, 7);
    in_one = in_two;
    assert_ptr_equal(mmh_heap_of(in_one.data()), one.get());
    in_one = std::move(in_two);
    assert_ptr_equal(mmh_heap_of(in_one.data()), one.get());
    assert_true(in_one.get_allocator() == a);
    Ints copy(in_one);
    assert_ptr_equal(mmh_heap_of(copy.data()), one.get());
}

int main(int argc, char **argv)
{
    if (argc == 4 && strcmp(argv[1], "--reopen") == 0)
        return reopen_and_change(argv[2], atoi(argv[3]));

    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_containers_new_process),
        cmocka_unit_test(test_error_missing_file),
        cmocka_unit_test(test_error_second_writer),
        cmocka_unit_test(test_error_commit_anonymous),
        cmocka_unit_test(test_error_closed_heap),
        cmocka_unit_test(test_out_of_memory),
        cmocka_unit_test(test_find_missing),
        cmocka_unit_test(test_construct_destroy),
        cmocka_unit_test(test_construct_threads),
        cmocka_unit_test(test_allocator_equality),
    };
    return TU_RUN(tests);
}
