/* Checking one crash state, in a child of the harness: each heap file
 * the workload made must open, hold exactly one version it may hold (the
 * last acknowledged or one begun after it), pass `mmheap check` as found
 * (the tool lays the log's commits over the file), take new allocations
 * and a commit, and open again. */
#define _GNU_SOURCE
#include "harness.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static int say(char *why, size_t size, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, size, fmt, ap);
    va_end(ap);
    return 1;
}

/* `tool check path`: its exit status, its output's first line in out. */
static int run_check(const char *tool, const char *path, char *out, size_t size)
{
    int pfd[2];
    if (pipe(pfd) != 0)
        return -1;
    pid_t pid = fork();
    if (pid == 0) {
        dup2(pfd[1], 1);
        dup2(pfd[1], 2);
        execl(tool, tool, "check", "--max-problems", "5", path, (char *)NULL);
        _exit(127);
    }
    close(pfd[1]);
    size_t got = 0;
    ssize_t n;
    char sink[4096];
    while ((n = read(pfd[0], got + 1 < size ? out + got : sink,
                     got + 1 < size ? size - 1 - got : sizeof sink)) > 0 ||
           (n < 0 && errno == EINTR))
        got += n > 0 && got + 1 < size ? (size_t)n : 0;
    out[got] = '\0';
    out[strcspn(out, "\n")] = '\0';
    close(pfd[0]);
    int status;
    if (pid < 0 || waitpid(pid, &status, 0) != pid)
        return -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* Which allowed version m (NULL: no root yet, version 0) is, checked
 * byte for byte; -1 and the reason in why when none. */
static int which_version(mmh_heap *h, const struct pl_manifest *m, const struct pl_expect *e,
                         const char *name, char *why, size_t size)
{
    uint64_t v = m ? m->version : 0, digest = m ? pl_digest(m) : 0;
    if (m && (m->magic != PL_MAGIC || m->nobj > PL_MAXOBJ))
        return -say(why, size, "%s: the root holds no manifest", name);
    for (unsigned i = 0; i < e->n; i++) {
        if (e->version[i] != v)
            continue;
        if (e->digest[i] != digest)
            return -say(why, size, "%s: version %llu's manifest differs from the one committed",
                        name, (unsigned long long)v);
        for (uint64_t j = 0; m && j < m->nobj; j++) {
            const struct pl_obj *o = &m->obj[j];
            void *p = mmh_at(h, o->off);
            if (!p || mmh_usable_size(h, p) < o->size || !pl_filled(p, o->size, o->seed))
                return -say(why, size, "%s: version %llu, object %llu (%llu bytes at %#llx) "
                            "does not hold its bytes: versions mixed", name,
                            (unsigned long long)v, (unsigned long long)j,
                            (unsigned long long)o->size, (unsigned long long)o->off);
        }
        return 0;
    }
    char list[256] = "";
    for (unsigned i = 0, at = 0; i < e->n && at < sizeof list - 24; i++)
        at += (unsigned)snprintf(list + at, sizeof list - at, " %llu",
                                 (unsigned long long)e->version[i]);
    return -say(why, size, "%s: holds version %llu; allowed:%s%s", name, (unsigned long long)v,
                list, e->acked ? "" : " (none acknowledged)");
}

static int check_file(const char *dir, const char *name, const struct pl_expect *e,
                      mmh_tracker tracker, const char *tool, char *why, size_t size)
{
    char path[4096], out[512];
    struct stat st;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    if (lstat(path, &st) != 0)
        return e->acked ? say(why, size, "%s: missing, but version %llu was acknowledged", name,
                              (unsigned long long)e->version[0]) : 0;
    int rc = run_check(tool, path, out, sizeof out);
    if (rc != 0)
        return say(why, size, "%s: mmheap check as found: exit %d: %s", name, rc, out);
    mmh_config cfg = { .tracker = tracker };
    mmh_heap *h = mmh_open(path, &cfg);
    if (!h)
        return say(why, size, "%s: mmh_open: %s", name, mmh_errmsg());
    if (which_version(h, mmh_root(h), e, name, why, size) != 0) {
        mmh_close(h);
        return 1;
    }
    for (size_t i = 0, sizes[] = { 24, 3000, 200000 }; i < 3; i++) {
        void *p = mmh_alloc(h, sizes[i]);
        if (!p) {
            say(why, size, "%s: mmh_alloc after recovery: %s", name, mmh_errmsg());
            mmh_close(h);
            return 1;
        }
        pl_fill(p, sizes[i], i);
    }
    if (mmh_commit(h) != 0) {
        say(why, size, "%s: mmh_commit after recovery: %s", name, mmh_errmsg());
        mmh_close(h);
        return 1;
    }
    if (mmh_close(h) != 0)
        return say(why, size, "%s: mmh_close after recovery: %s", name, mmh_errmsg());
    /* Opened again, it still holds that version (and mmh_open's check). */
    if (!(h = mmh_open(path, &cfg)))
        return say(why, size, "%s: mmh_open after a commit: %s", name, mmh_errmsg());
    rc = which_version(h, mmh_root(h), e, name, why, size);
    mmh_close(h);
    return rc ? 1 : 0;
}

int pl_check_state(const char *dir, const struct pl_expect exp[PL_FILES], unsigned which,
                   mmh_tracker tracker, const char *tool, char *why, size_t size)
{
    for (int i = 0; i < PL_FILES; i++)
        if ((which & 1u << i) && check_file(dir, pl_files[i], &exp[i], tracker, tool, why, size) != 0)
            return 1;
    return 0;
}
