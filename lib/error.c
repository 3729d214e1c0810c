/* Error reporting: errno plus a thread-local, human-readable reason. */
#include "internal.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>

static __thread char errmsg_buf[512];

static void set_reason(int err, const char *fmt, va_list ap)
{
    vsnprintf(errmsg_buf, sizeof errmsg_buf, fmt, ap);
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

const char *mmh_errmsg(void)
{
    return errmsg_buf[0] ? errmsg_buf : "no error";
}
