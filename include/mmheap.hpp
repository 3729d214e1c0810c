/** @file mmheap.hpp
 * @brief mmheap for C++17: a heap object, named objects and an allocator
 * for standard containers, header-only over the C API of mmheap.h.
 *
 * @code
 * using Stock = std::map<mmh::string, long, std::less<>,
 *                        mmh::allocator<std::pair<const mmh::string, long>>>;
 * mmh_config cfg{};
 * cfg.flags = MMH_CREATE;
 * mmh::heap h("inventory.heap", cfg);
 * Stock *stock = h.find_or_construct<Stock>("stock", h);
 * (*stock)[mmh::string("apples", mmh::allocator<char>(h))] += 3;
 * h.commit();                       // durable; the destructor commits too
 * @endcode
 *
 * Containers stored in a heap keep raw pointers, so they work only where
 * the heap is mapped at the address it was made at: every heap but one
 * opened with #MMH_RELOCATE (whose raw pointers are left behind when the
 * heap moves).  Their allocator, mmh::allocator, stores only the heap's
 * base address, which means the same heap in every process, and finds the
 * open heap there with mmh_heap_of().
 *
 * Errors of the C API become exceptions: mmh::error, whose code is errno
 * and whose what() is mmh_errmsg() at the failure; mmh::allocator throws
 * std::bad_alloc when a heap is out of memory, as standard containers
 * expect.  Thread safety is the C API's: see mmheap.h.
 */
#ifndef MMHEAP_HPP
#define MMHEAP_HPP

#include <mmheap.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <mutex>
#include <new>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>

namespace mmh {

/** A failure of the C API: code is its errno, what() its mmh_errmsg(). */
struct error : std::runtime_error {
    int code; /**< the errno of the failure (ENOENT, EBUSY, ...) */

    /** An error with code @p err and message @p what. */
    error(int err, const std::string &what) : std::runtime_error(what), code(err) {}
};

namespace detail {

/** Throw the calling thread's last failure of the C API as mmh::error. */
[[noreturn]] inline void throw_last_error()
{
    int code = errno; // before building the message, which may allocate
    throw error(code, mmh_errmsg());
}

} // namespace detail

/** An open heap: opened by the constructor, closed (and committed) by the
 * destructor.  Move-only; a moved-from or closed heap holds no handle, and
 * everything but get() and close() then fails with EINVAL.
 *
 * Thread-safe as the C API is, except that close() and the destructor
 * must not overlap any other use of the heap. */
class heap {
public:
    /** Open the heap file @p path, or make a new anonymous heap: mmh_open().
     *
     * @param path the heap file; nullptr for an anonymous heap.
     * @param cfg  how to open it; the default is mmh_open()'s (an existing
     *             file, private mapping).  Add #MMH_CREATE to create it.
     * @throws mmh::error with mmh_open()'s errno and reason (ENOENT for a
     *         missing file without #MMH_CREATE, EBUSY for a file another
     *         writer holds, ...). */
    explicit heap(const char *path, const mmh_config &cfg = {}) : h_(mmh_open(path, &cfg))
    {
        if (!h_)
            detail::throw_last_error();
    }

    /** Close the heap: mmh_close(), which commits a writable file heap.
     * Never throws: a failed closing commit is lost here (the file keeps
     * its last completed commit); call close() to hear about it. */
    ~heap()
    {
        if (h_)
            mmh_close(h_);
    }

    /** Take over @p other's heap; @p other is left closed. */
    heap(heap &&other) noexcept : h_(std::exchange(other.h_, nullptr)) {}

    /** Close this heap as the destructor does, then take over @p other's. */
    heap &operator=(heap &&other) noexcept
    {
        if (this != &other) {
            if (h_)
                mmh_close(h_);
            h_ = std::exchange(other.h_, nullptr);
        }
        return *this;
    }

    heap(const heap &) = delete;
    heap &operator=(const heap &) = delete;

    /** The C handle, for the C API; nullptr once closed or moved from. */
    mmh_heap *get() const noexcept { return h_; }

    /** Close the heap now: mmh_close().  The heap is closed even when this
     * throws, and closing it again does nothing.
     * @throws mmh::error when the closing commit (or the last background
     *         job) failed; the file keeps its last completed commit. */
    void close()
    {
        mmh_heap *h = std::exchange(h_, nullptr);
        if (h && mmh_close(h) != 0)
            detail::throw_last_error();
    }

    /** Make the heap's current state durable: mmh_commit().  A quiescent
     * point: no other thread may use the heap meanwhile.
     * @throws mmh::error with mmh_commit()'s errno and reason (EINVAL for
     *         an anonymous heap, EROFS for a read-only one, ...). */
    void commit()
    {
        if (mmh_commit(h_) != 0)
            detail::throw_last_error();
    }

    /** The object named @p name, constructed by find_or_construct().
     *
     * Names are not typed: @p T must be the type the object was made as.
     * @return the object, or nullptr when no object has that name.
     * @throws mmh::error with mmh_name_get()'s errno and reason for any
     *         other failure (ENAMETOOLONG, EBADMSG for a damaged table). */
    template <class T>
    T *find(const char *name)
    {
        void *p = mmh_name_get(h_, name);
        if (!p && errno != ENOENT)
            detail::throw_last_error();
        return static_cast<T *>(p);
    }

    /** The object named @p name, or a new T made from @p args and given
     * that name.
     *
     * A new object goes into a block of the heap aligned for T, and is
     * named once its constructor has returned: if the constructor throws,
     * the block is freed and the exception passes on.  Its name, like the
     * object, becomes durable at the next commit.  Calls from threads of
     * one process are serialized (a constructor may itself call
     * find_or_construct()), so two threads asking for one name get one
     * object.  Names are not typed: @p T must be the type the object was
     * made as.
     *
     * @return the object, found or made.
     * @throws mmh::error for the errors of find(), of mmh_aligned_alloc()
     *         (ENOMEM when the heap is full, EROFS for a read-only heap) and
     *         of mmh_name_set(); whatever T's constructor throws. */
    template <class T, class... Args>
    T *find_or_construct(const char *name, Args &&...args)
    {
        std::lock_guard<std::recursive_mutex> lock(names_lock_);
        if (T *found = find<T>(name))
            return found;
        void *block = mmh_aligned_alloc(h_, alignof(T), sizeof(T));
        if (!block)
            detail::throw_last_error();
        T *p;
        try {
            p = ::new (block) T(std::forward<Args>(args)...);
        } catch (...) {
            mmh_free(h_, block);
            throw;
        }
        if (mmh_name_set(h_, name, p) != 0) {
            error e(errno, mmh_errmsg()); // before ~T, which may fail calls too
            p->~T();
            mmh_free(h_, block);
            throw e;
        }
        return p;
    }

    /** Destroy the object named @p name: remove the name, run ~T, free its
     * block.  Serialized with find_or_construct().
     * @return true if there was such an object, false if not.
     * @throws mmh::error for the errors of find() and mmh_name_set() (EROFS
     *         for a read-only heap); the object is then left as it was. */
    template <class T>
    bool destroy(const char *name)
    {
        std::lock_guard<std::recursive_mutex> lock(names_lock_);
        T *p = find<T>(name);
        if (!p)
            return false;
        if (mmh_name_set(h_, name, nullptr) != 0)
            detail::throw_last_error();
        p->~T();
        mmh_free(h_, p);
        return true;
    }

private:
    mmh_heap *h_;
    // One lock for every heap of the process: find_or_construct() is rare
    // and short, and a heap object that moves cannot carry a mutex along.
    inline static std::recursive_mutex names_lock_;
};

/** A standard allocator (std::allocator_traits) drawing from a heap, for
 * containers kept in the heap across processes.
 *
 * It stores the heap's base address, never the mmh_heap handle: a
 * container stored in the heap carries its allocator into the next
 * process, where the same heap is mapped at the same base but has another
 * handle.  Each allocate() and deallocate() finds the handle with
 * mmh_heap_of() (O(1) for a thread that keeps using one heap).
 *
 * Two allocators are equal when they draw from the same heap.  None of the
 * propagate_on_container_* traits is set: an assigned container keeps its
 * own allocator, and so its memory stays in its own heap (a container in
 * one heap never ends up holding blocks of another); containers of
 * different heaps must not be swapped.  There is no default constructor:
 * a container in a heap needs its allocator given, including each one
 * nested in it (emplace or try_emplace with the allocator, as the
 * example shows).
 *
 * Heaps opened with #MMH_RELOCATE must not hold containers: a relocated
 * heap's stored pointers and allocators point to its old place. */
template <class T>
class allocator {
public:
    using value_type = T; /**< what it allocates */
    using is_always_equal = std::false_type; /**< equal only for one heap */

    /** An allocator for the heap @p h. */
    allocator(heap &h) noexcept : allocator(h.get()) {}

    /** An allocator for the heap @p h; a NULL @p h gives one whose
     * allocate() throws. */
    allocator(mmh_heap *h) noexcept
    {
        // The base is the address of offset 0, which mmh_at() does not
        // give (0 stands for NULL); mmh_stats() would walk the heap.
        const char *one = static_cast<const char *>(mmh_at(h, 1));
        base_ = one ? one - 1 : nullptr;
    }

    /** The allocator for U of the same heap (rebinding). */
    template <class U>
    allocator(const allocator<U> &other) noexcept : base_(other.base())
    {
    }

    /** Allocate room for @p n objects of type T, aligned for T.
     * @throws std::bad_alloc when the heap is out of memory (ENOMEM), or
     *         std::bad_array_new_length when n * sizeof(T) overflows;
     *         mmh::error for the other errors of mmh_aligned_alloc() (EROFS
     *         for a read-only heap, EDQUOT, EIO growing the file), and with
     *         EINVAL when no heap is open at this allocator's base in this
     *         process (the heap was closed, or never opened here). */
    T *allocate(std::size_t n)
    {
        if (n > SIZE_MAX / sizeof(T))
            throw std::bad_array_new_length();
        void *p = mmh_aligned_alloc(handle(), alignof(T), n * sizeof(T));
        if (!p) {
            if (errno == ENOMEM)
                throw std::bad_alloc();
            detail::throw_last_error();
        }
        return static_cast<T *>(p);
    }

    /** Free @p p, from allocate() of an equal allocator.  Does nothing when
     * the heap is no longer open in this process (its memory went with it). */
    void deallocate(T *p, std::size_t) noexcept { mmh_free(mmh_heap_of(base()), p); }

    /** The heap's base address: what identifies the heap. */
    const void *base() const noexcept { return base_; }

private:
    const void *base_; // nullptr: no heap

    mmh_heap *handle() const
    {
        mmh_heap *h = mmh_heap_of(base());
        if (!h) {
            char what[96];
            std::snprintf(what, sizeof what,
                          "mmh::allocator: no heap is open at %p in this process", base());
            throw error(EINVAL, what);
        }
        return h;
    }
};

/** Do @p a and @p b draw from the same heap? */
template <class T, class U>
bool operator==(const allocator<T> &a, const allocator<U> &b) noexcept
{
    return a.base() == b.base();
}

/** Do @p a and @p b draw from different heaps? */
template <class T, class U>
bool operator!=(const allocator<T> &a, const allocator<U> &b) noexcept
{
    return !(a == b);
}

/** A string whose characters live in a heap. */
using string = std::basic_string<char, std::char_traits<char>, allocator<char>>;

/** The hash of a string kept in a heap, for unordered containers: C++17's
 * std::hash knows only strings of std::allocator.  Equal strings hash
 * equal whatever their allocators (through std::string_view). */
struct string_hash {
    /** Hashes anything a string_view takes: with std::equal_to<>, C++20
     * unordered containers look keys up without making a string. */
    using is_transparent = void;

    /** The hash of @p s, as std::hash<std::string_view> gives it. */
    std::size_t operator()(std::string_view s) const noexcept
    {
        return std::hash<std::string_view>{}(s);
    }
};

} // namespace mmh

#endif /* MMHEAP_HPP */
