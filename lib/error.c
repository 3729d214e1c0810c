/* Error reporting: errno plus a thread-local, human-readable reason.
 *
 * The reason is formatted here rather than with vsnprintf, because a
 * background job's child (snapshot.c) reports through the same calls and
 * may only use async-signal-safe functions there: no stdio, no malloc, no
 * locale.  The formatter knows the conversions the library uses, plus %m
 * (the text of errno at the call, untranslated). */
#define _GNU_SOURCE
#include "internal.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

/* Small: the library's initial-exec variables (thread.c) put all of its
 * thread-local storage in the static TLS block, of which a process that
 * dlopens the library has little to spare.  Longer reasons are cut. */
static __thread char errmsg_buf[256];

struct out {
    char  *p, *end;
};

static void put(struct out *o, const char *s, size_t n)
{
    for (; n && o->p < o->end; n--)
        *o->p++ = *s++;
}

static void put_uint(struct out *o, unsigned long long v, unsigned base)
{
    char digits[24], *d = digits + sizeof digits;
    do {
        *--d = "0123456789abcdef"[v % base];
        v /= base;
    } while (v);
    put(o, d, (size_t)(digits + sizeof digits - d));
}

static void put_int(struct out *o, long long v)
{
    if (v < 0) {
        put(o, "-", 1);
        put_uint(o, 0ull - (unsigned long long)v, 10);
    } else
        put_uint(o, (unsigned long long)v, 10);
}

/* %s %c %d %u %o %x %p %m %%, with the l, ll and z length modifiers, and
 * %.*s. */
static void format(char *buf, size_t size, const char *fmt, va_list ap)
{
    int saved_errno = errno;
    struct out o = { buf, buf + size - 1 };
    for (const char *f = fmt; *f; f++) {
        if (*f != '%') {
            put(&o, f, 1);
            continue;
        }
        int longs = 0;
        size_t precision = SIZE_MAX;
        bool size_t_arg = false;
        if (f[1] == '.' && f[2] == '*') {
            int p = va_arg(ap, int);
            precision = p < 0 ? SIZE_MAX : (size_t)p;
            f += 2;
        }
        for (f++; *f == 'l' || *f == 'z'; f++) {
            longs += *f == 'l';
            size_t_arg |= *f == 'z';
        }
        switch (*f) {
        case 's': {
            const char *s = va_arg(ap, const char *);
            s = s ? s : "(null)";
            put(&o, s, strnlen(s, precision));
            break;
        }
        case 'c': {
            char c = (char)va_arg(ap, int);
            put(&o, &c, 1);
            break;
        }
        case 'd':
            put_int(&o, size_t_arg   ? (long long)va_arg(ap, ssize_t)
                        : longs == 2 ? va_arg(ap, long long)
                        : longs == 1 ? (long long)va_arg(ap, long)
                                     : (long long)va_arg(ap, int));
            break;
        case 'u':
        case 'o':
        case 'x':
            put_uint(&o, size_t_arg   ? (unsigned long long)va_arg(ap, size_t)
                         : longs == 2 ? va_arg(ap, unsigned long long)
                         : longs == 1 ? (unsigned long long)va_arg(ap, unsigned long)
                                      : (unsigned long long)va_arg(ap, unsigned),
                     *f == 'x' ? 16 : *f == 'o' ? 8 : 10);
            break;
        case 'p':
            put(&o, "0x", 2);
            put_uint(&o, (uintptr_t)va_arg(ap, void *), 16);
            break;
        case 'm': {
            const char *s = strerrordesc_np(saved_errno);
            if (s)
                put(&o, s, strlen(s));
            else {
                put(&o, "error ", 6);
                put_int(&o, saved_errno);
            }
            break;
        }
        case '%':
            put(&o, "%", 1);
            break;
        default: /* not used by the library: show it rather than guess */
            put(&o, "%", 1);
            if (!*f)
                f--;
            else
                put(&o, f, 1);
            break;
        }
    }
    *o.p = '\0';
}

static void set_reason(int err, const char *fmt, va_list ap)
{
    format(errmsg_buf, sizeof errmsg_buf, fmt, ap);
    errno = err;
}

int mmh_fail(int err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    set_reason(err, fmt, ap);
    va_end(ap);
    return -1;
}

void *mmh_fail_null(int err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    set_reason(err, fmt, ap);
    va_end(ap);
    return NULL;
}

int mmh_log_fd = STDERR_FILENO;

void mmh_log(const char *fmt, ...)
{
    char line[512];
    static const char prefix[] = "mmheap: ";
    memcpy(line, prefix, sizeof prefix - 1);
    va_list ap;
    va_start(ap, fmt);
    format(line + sizeof prefix - 1, sizeof line - sizeof prefix, fmt, ap);
    va_end(ap);
    size_t n = strlen(line);
    line[n++] = '\n';
    for (size_t done = 0; done < n;) {
        ssize_t w = write(mmh_log_fd, line + done, n - done);
        if (w <= 0 && errno != EINTR)
            break;
        done += w > 0 ? (size_t)w : 0;
    }
}

const char *mmh_errmsg(void)
{
    return errmsg_buf[0] ? errmsg_buf : "no error";
}

#ifdef MMH_DEBUG
/* Async-signal-safe like mmh_log: a job's child checks invariants too. */
void mmh_assert_fail(const char *cond, const char *file, int line, const char *func)
{
    mmh_log("assertion failed: %s (%s:%d, %s)", cond, file, line, func);
    abort();
}
#endif
