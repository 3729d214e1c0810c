/* Background jobs: fork snapshots (mmh_snapshot) and background commits
 * (mmh_commit_bg).
 *
 * At the call, under the heap lock (the quiescent point), the parent does
 * everything that needs memory: the commit's place in the log and its
 * ranges (persist.c), the image's ranges, header and paths.  Then it forks with _Fork, which
 * runs no atfork handlers: the parent may be multithreaded, so the child
 * sees other threads' locks (malloc's, stdio's) in whatever state they
 * were, and uses only async-signal-safe calls: system calls, hashing and
 * mmh_fail's formatter.  Memory is copy-on-write, so the child sees the
 * heap frozen at the fork while the parent carries on.  The child sends one
 * result record through a pipe and exits; mmh_wait (or the next commit,
 * job or close) reads it and reaps the child.  The pipe, not waitpid, is
 * the channel: a program that reaps every child itself (SIGCHLD ignored,
 * or waitpid(-1)) cannot take the result away.
 */
#define _GNU_SOURCE
#include "fileio.h"
#include "persist.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

typedef enum { JOB_COMMIT, JOB_SNAPSHOT } job_kind;

/* What the child reports: one write, shorter than PIPE_BUF, so atomic. */
struct job_result {
    int      err;        /* 0: the job succeeded                         */
    int      final_err;  /* commit: a failed write or sync, final for the
                            heap as in the parent's own commits         */
    mmh_wal_pos end;     /* commit: the log after it                    */
    uint64_t ns, bytes, cow_pages;
    char     msg[512];
};

struct mmh_job {
    job_kind     kind;
    pid_t        pid;
    int          rfd;     /* the pipe's read end, non-blocking           */
    mmh_persist_job *commit; /* commit: what the child appends          */
    mmh_ranges   ranges;  /* snapshot: what the child writes             */
    mmh_hdr     *image;   /* snapshot: the image's header page           */
    mmh_newfile  file;    /* snapshot: the image, until renamed over path */
    char        *path, *dir; /* snapshot: target, its directory          */
    struct job_result res;
    size_t       got;     /* bytes of res read so far                    */
};

static void job_free(mmh_job *job)
{
    if (job->rfd >= 0)
        close(job->rfd);
    mmh_persist_job_free(job->commit);
    mmh_meta_free(job->ranges.v);
    mmh_meta_free(job->image);
    mmh_newfile_discard(&job->file);
    mmh_meta_free(job->path);
    mmh_meta_free(job->dir);
    mmh_meta_free(job);
}

/* ---- the child --------------------------------------------------------- */

/* One line of /proc/self/smaps: a mapping's header ("start-end perms ...")
 * says whether the fields after it count, Private_Dirty adds its kB. */
static void smaps_line(const char *line, const mmh_heap *h, bool *in_heap, uint64_t *kb)
{
    uintptr_t v = 0;
    const char *p = line;
    bool header = (*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f');
    if (header) {
        for (; (*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f'); p++)
            v = v * 16 + (uintptr_t)(*p <= '9' ? *p - '0' : *p - 'a' + 10);
        *in_heap = v >= (uintptr_t)h->base && v < (uintptr_t)h->base + h->mapped;
    } else if (*in_heap && strncmp(line, "Private_Dirty:", 14) == 0) {
        for (p += 14; *p == ' '; p++)
            ;
        for (; *p >= '0' && *p <= '9'; p++)
            v = v * 10 + (uintptr_t)(*p - '0');
        *kb += v;
    }
}

/* Heap pages that only the child maps now: the parent wrote them (or gave
 * them back) during the job, so the kernel copied them.  Summed from
 * smaps' Private_Dirty of the heap's mappings, which counts per 4 KiB page
 * even inside a huge page (pagemap's "exclusive" bit is per huge page). */
static uint64_t count_cow_pages(const mmh_heap *h)
{
    int fd = open("/proc/self/smaps", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    char buf[4096], line[256];
    size_t len = 0;
    bool in_heap = false;
    uint64_t kb = 0;
    ssize_t n;
    while ((n = read(fd, buf, sizeof buf)) > 0 || (n < 0 && errno == EINTR)) {
        for (ssize_t i = 0; i < n; i++) {
            if (buf[i] != '\n') {
                if (len < sizeof line - 1)
                    line[len++] = buf[i];
                continue;
            }
            line[len] = '\0';
            len = 0;
            smaps_line(line, h, &in_heap, &kb);
        }
    }
    close(fd);
    return kb / (h->hdr->page_size / 1024);
}

/* Lock the snapshot's target, if there is one, against writers: a shared
 * flock, which a writer's exclusive one excludes.  Replacing a heap file a
 * writer has open would throw away every commit it makes after.  *fd is
 * the lock (-1: nothing to lock); held until the image is in place, so no
 * writer opens the old file meanwhile. */
static int target_lock(const char *path, int *fd)
{
    *fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (*fd < 0)
        return errno == ENOENT || errno == ELOOP ? 0 /* a link is replaced, not followed */
                                                 : mmh_fail(errno, "%s: cannot open: %m", path);
    if (flock(*fd, LOCK_SH | LOCK_NB) == 0)
        return 0;
    int err = errno;
    close(*fd);
    *fd = -1;
    if (err == EWOULDBLOCK)
        return mmh_fail(EBUSY, "mmh_snapshot: %s is open by a writer; an image must not "
                        "replace it", path);
    return mmh_fail(err, "%s: cannot lock: %s", path, strerrordesc_np(err));
}

/* The image: written to an unnamed file, synced, renamed over the target,
 * the directory synced.  A crash leaves the old image whole. */
static int write_image(mmh_heap *h, mmh_job *job, uint64_t *written)
{
    int lock;
    int rc = mmh_image_write(h, job->file.fd, job->path, job->ranges.v, job->ranges.n,
                             job->image, written);
    if (rc == 0 && (rc = target_lock(job->path, &lock)) == 0) {
        rc = mmh_newfile_link(&job->file, job->path, true);
        if (lock >= 0)
            close(lock);
    }
    return rc == 0 ? mmh_sync_dir(job->dir, job->path) : -1;
}

static _Noreturn void child_run(mmh_heap *h, mmh_job *job, int wfd, uint64_t start)
{
    struct job_result res = { 0 };
    mmh_inst_bulk_begin(); /* the image holds free blocks too; never ended: the child exits */
    int rc = job->kind == JOB_SNAPSHOT
                 ? write_image(h, job, &res.bytes)
                 : mmh_persist_job_run(h, job->commit, &res.end, &res.bytes, &res.final_err);
    if (rc != 0) {
        res.err = errno ? errno : EIO;
        const char *msg = mmh_errmsg();
        size_t len = strlen(msg);
        memcpy(res.msg, msg, len < sizeof res.msg - 1 ? len : sizeof res.msg - 1);
    }
    res.cow_pages = count_cow_pages(h);
    res.ns = mmh_now_ns(CLOCK_MONOTONIC) - start;
    (void)!write(wfd, &res, sizeof res);
    _exit(res.err == 0 ? 0 : 1);
}

/* ---- the parent -------------------------------------------------------- */

/* Fork the child for a prepared job.  Caller holds h->lock. */
static int job_start(mmh_heap *h, mmh_job *job)
{
    int pipefd[2];
    if (pipe2(pipefd, O_CLOEXEC) != 0)
        return mmh_fail(errno, "%s: cannot create a pipe for the background job: %m", h->path);
    uint64_t start = mmh_now_ns(CLOCK_MONOTONIC);
    pid_t pid = _Fork();
    if (pid == 0) {
        close(pipefd[0]);
        child_run(h, job, pipefd[1], start);
    }
    int err = errno;
    close(pipefd[1]);
    if (pid < 0) {
        close(pipefd[0]);
        errno = err;
        return mmh_fail(err, "%s: cannot fork the background job: %m", h->path);
    }
    job->pid = pid;
    job->rfd = pipefd[0];
    fcntl(job->rfd, F_SETFL, O_NONBLOCK);
    h->job.running = job;
    return 0;
}

/* Fold a finished job into the heap: statistics, the outcome for mmh_wait,
 * and, for a failed commit, its ranges for the next commit to write. */
static void job_finish(mmh_heap *h, mmh_job *job)
{
    const struct job_result *res = &job->res;
    mmh_lock(h);
    h->job.running = NULL;
    h->job.count++;
    h->job.last_ns = res->ns;
    h->job.last_bytes = res->bytes;
    h->job.cow_pages = res->cow_pages;
    h->job.err = res->err;
    h->job.unreported = true;
    snprintf(h->job.msg, sizeof h->job.msg, "%s", res->msg);
    if (job->kind == JOB_COMMIT) {
        h->persist.bytes_written += res->bytes;
        /* A failed one's pages go to the next commit; a failed write or
         * sync is final wherever it ran (a retried sync may lie). */
        mmh_persist_job_done(h, job->commit, res->err == 0, &res->end, res->final_err);
        if (res->err == 0)
            mmh_commit_done(h, res->ns);
    }
    if (res->err)
        h->job.failed++;
    mmh_unlock(h);
}

/* Read what the child sent.  1: more to come; 0: the child has closed its
 * end (exited). */
static int job_read(mmh_job *job, bool nohang)
{
    for (;;) {
        char extra; /* anything past the record: read to see the end */
        bool full = job->got == sizeof job->res;
        ssize_t n = read(job->rfd, full ? &extra : (char *)&job->res + job->got,
                         full ? 1 : sizeof job->res - job->got);
        if (n > 0) {
            job->got += full ? 0 : (size_t)n;
            continue;
        }
        if (n == 0)
            return 0;
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN)
            return 0;
        if (nohang)
            return 1;
        struct pollfd pfd = { .fd = job->rfd, .events = POLLIN };
        (void)!poll(&pfd, 1, -1);
    }
}

/* A child that sent no whole result died: say how. */
static void job_died(mmh_heap *h, mmh_job *job, int status, bool reaped)
{
    job->res.err = EIO;
    if (reaped && WIFSIGNALED(status))
        snprintf(job->res.msg, sizeof job->res.msg,
                 "%s: the background job (pid %d) was killed by signal %d (%s)", h->path,
                 (int)job->pid, WTERMSIG(status), strsignal(WTERMSIG(status)));
    else
        snprintf(job->res.msg, sizeof job->res.msg,
                 "%s: the background job (pid %d) exited without a result", h->path,
                 (int)job->pid);
}

int mmh_job_reap(mmh_heap *h, bool nohang)
{
    mmh_job *job = h->job.running;
    if (!job)
        return 0;
    if (job_read(job, nohang) == 1)
        return 1;
    int status = 0;
    pid_t got;
    while ((got = waitpid(job->pid, &status, 0)) < 0 && errno == EINTR)
        ;
    if (job->got != sizeof job->res)
        job_died(h, job, status, got == job->pid);
    job_finish(h, job);
    job_free(job);
    return 0;
}

static mmh_job *job_new(mmh_heap *h, job_kind kind)
{
    mmh_job *job = mmh_meta_calloc(1, sizeof *job);
    if (!job)
        return mmh_fail_null(ENOMEM, "%s: out of memory", h->path);
    job->kind = kind;
    job->rfd = -1;
    job->file.fd = -1;
    return job;
}

/* Work shared by both jobs: the job lock, the running job reaped, the
 * heap lock; then prepare (under it) and fork. */
static int job_launch(mmh_heap *h, job_kind kind,
                      int (*prepare)(mmh_heap *, mmh_job *, const void *), const void *arg)
{
    pthread_mutex_lock(&h->job.lock);
    mmh_job_reap(h, false);
    uint64_t start = mmh_now_ns(CLOCK_MONOTONIC);
    mmh_lock(h);
    mmh_job *job = job_new(h, kind);
    int rc = job ? prepare(h, job, arg) : -1;
    if (rc == 0)
        rc = job_start(h, job);
    if (rc != 0 && job) {
        int err = errno;
        if (job->commit) /* prepared, but no child: its pages go to the next commit */
            mmh_persist_job_done(h, job->commit, false, NULL, 0);
        job_free(job);
        errno = err;
    }
    if (rc == 0)
        h->job.last_fork_ns = mmh_now_ns(CLOCK_MONOTONIC) - start;
    mmh_unlock(h);
    pthread_mutex_unlock(&h->job.lock);
    return rc;
}

/* ---- mmh_commit_bg ----------------------------------------------------- */

static int prepare_commit(mmh_heap *h, mmh_job *job, const void *arg)
{
    (void)arg;
    if (mmh_commit_check(h, "mmh_commit_bg") != 0)
        return -1;
    job->commit = mmh_persist_job_prepare(h);
    return job->commit ? 0 : -1;
}

int mmh_commit_bg(mmh_heap *h)
{
    if (!h)
        return mmh_fail(EINVAL, "mmh_commit_bg: heap is NULL");
    if (h->flags & MMH_SHARED)
        return mmh_fail(EINVAL, "%s: mmh_commit_bg needs copy-on-write, and a shared mapping has "
                        "none: use mmh_commit", h->path);
    return job_launch(h, JOB_COMMIT, prepare_commit, NULL);
}

/* ---- mmh_snapshot ------------------------------------------------------ */

/* Is path the file h writes back to?  The image would replace it under the
 * heap's feet. */
static bool is_own_file(const mmh_heap *h, const char *path)
{
    return mmh_writes_back(h) && mmh_file_is_named(h->fd, AT_FDCWD, path);
}

static int prepare_snapshot(mmh_heap *h, mmh_job *job, const void *arg)
{
    const char *path = arg;
    int lock;
    if (is_own_file(h, path))
        return mmh_fail(EINVAL, "mmh_snapshot: %s is the file of heap %s itself; mmh_commit_bg "
                        "commits it", path, h->path);
    /* Said now, not by the job; the job checks again before it renames. */
    if (target_lock(path, &lock) != 0)
        return -1;
    if (lock >= 0)
        close(lock);
    job->path = mmh_meta_strdup(path);
    job->dir = mmh_dir_of(path);
    job->image = mmh_meta_alloc(MMH_HDR_SIZE);
    if (!job->path || !job->dir || !job->image)
        return mmh_fail(ENOMEM, "%s: out of memory", h->path);
    if (mmh_newfile_create(&job->file, path, 0600) != 0 ||
        mmh_in_use_ranges(h, &job->ranges) != 0)
        return -1;
    /* The image is a file of its own, with no log yet: a log left beside
     * the target by another heap must never replay onto it. */
    memcpy(job->image, h->hdr, MMH_HDR_SIZE);
    job->image->base = (uint64_t)(uintptr_t)h->base;
    job->image->extent = h->mapped;
    job->image->file_id = mmh_random_u64();
    job->image->wal_gen = 0;
    job->image->checksum = mmh_format_checksum(job->image);
    return 0;
}

int mmh_snapshot(mmh_heap *h, const char *path)
{
    if (!h)
        return mmh_fail(EINVAL, "mmh_snapshot: heap is NULL");
    if (!path || !*path)
        return mmh_fail(EINVAL, "%s: mmh_snapshot: %s path", h->path, path ? "empty" : "NULL");
    if (h->flags & MMH_SHARED)
        return mmh_fail(EINVAL, "%s: cannot snapshot a shared heap: a MAP_SHARED mapping has no "
                        "copy-on-write, so no frozen view for the job", h->path);
    return job_launch(h, JOB_SNAPSHOT, prepare_snapshot, path);
}

/* In the child of a fork(): the parent's job is not this process's child. */
void mmh_job_forget(mmh_heap *h)
{
    if (h->job.running)
        job_free(h->job.running);
    h->job.running = NULL;
}

/* ---- mmh_wait ---------------------------------------------------------- */

int mmh_wait(mmh_heap *h, int nohang)
{
    if (!h)
        return mmh_fail(EINVAL, "mmh_wait: heap is NULL");
    pthread_mutex_lock(&h->job.lock);
    int rc = mmh_job_reap(h, nohang != 0);
    if (rc == 0) {
        mmh_lock(h);
        if (!h->job.unreported)
            rc = mmh_fail(ECHILD, "%s: mmh_wait: no background job to wait for", h->path);
        else if (h->job.err)
            rc = mmh_fail(h->job.err, "%s", h->job.msg);
        h->job.unreported = false;
        mmh_unlock(h);
    }
    pthread_mutex_unlock(&h->job.lock);
    return rc;
}
