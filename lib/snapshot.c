/* Background jobs: fork snapshots and background commits.  Not built yet:
 * each call fails with ENOSYS and says so, rather than pretending. */
#include "internal.h"

#include <errno.h>

static int not_yet(mmh_heap *h, const char *what)
{
    return mmh_fail(ENOSYS, "%s: %s is not implemented in this version of mmheap",
                    h ? h->path : "(null heap)", what);
}

int mmh_commit_bg(mmh_heap *h)
{
    return not_yet(h, "mmh_commit_bg");
}

int mmh_snapshot(mmh_heap *h, const char *path)
{
    (void)path;
    return not_yet(h, "mmh_snapshot");
}

int mmh_wait(mmh_heap *h, int nohang)
{
    (void)nohang;
    return not_yet(h, "mmh_wait");
}
