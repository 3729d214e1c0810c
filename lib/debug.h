/* Invariants checked in code.  A debug build (./configure --enable-debug,
 * which defines MMH_DEBUG) checks them; other builds compile them away and
 * never evaluate the conditions, so a check may cost what it likes.
 *
 * mmh_assert(cond): cond holds here, or the library itself is broken.  A
 * failure prints the condition, file, line and function and aborts: it is
 * never the way to report a user's error (those return -1 with errno and
 * mmh_errmsg()).
 */
#ifndef MMH_DEBUG_H
#define MMH_DEBUG_H

#ifdef MMH_DEBUG
__attribute__((visibility("hidden"), noreturn, cold))
void mmh_assert_fail(const char *cond, const char *file, int line, const char *func);
#define mmh_assert(cond) \
    (__builtin_expect(!!(cond), 1) ? (void)0 : mmh_assert_fail(#cond, __FILE__, __LINE__, __func__))
#define MMH_DEBUG_ONLY(...) __VA_ARGS__
#else
/* sizeof: the condition still compiles (names stay checked), unevaluated. */
#define mmh_assert(cond) ((void)sizeof(!(cond)))
#define MMH_DEBUG_ONLY(...)
#endif

#endif /* MMH_DEBUG_H */
