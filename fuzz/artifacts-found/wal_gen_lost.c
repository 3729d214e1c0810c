/* Reproducer: a heap made by mmh_open(MMH_CREATE) never names its log
 * (the file's wal_gen stays 0), so an open without FILE.wal silently loses
 * the commits in it instead of refusing (DESIGN.md, Persistence, rule 7).
 *
 * In a configured tree:
 *   cc -I include -I lib -I . -pthread -o /tmp/wal_gen_lost \
 *      fuzz/artifacts-found/wal_gen_lost.c $(ls lib/*.c | grep -v malloc.c) -ldl
 *   /tmp/wal_gen_lost /tmp
 * prints "BUG: ..." and exits 1 while the bug is there, 0 once the open
 * without the log is refused.
 */
#define _GNU_SOURCE
#include "check.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    char path[4096], wal[4200];
    snprintf(path, sizeof path, "%s/lost.heap", argc > 1 ? argv[1] : "/tmp");
    snprintf(wal, sizeof wal, "%s.wal", path);
    unlink(path);
    unlink(wal);
    mmh_config cfg = { .flags = MMH_CREATE, .max_size = (size_t)64 << 20 };
    mmh_heap *h = mmh_open(path, &cfg);
    if (!h || mmh_commit(h) != 0 || mmh_close(h) != 0)
        return fprintf(stderr, "setup: %s\n", mmh_errmsg()), 2;
    if (fork() == 0) { /* one acknowledged commit, then a crash */
        cfg.flags = 0;
        h = mmh_open(path, &cfg);
        char *p = h ? mmh_alloc(h, 100) : NULL;
        if (!p || (strcpy(p, "committed"), mmh_set_root(h, p)) != 0 || mmh_commit(h) != 0)
            _exit(2);
        _exit(0);
    }
    int st;
    wait(&st);
    if (!WIFEXITED(st) || WEXITSTATUS(st))
        return fprintf(stderr, "child failed\n"), 2;
    mmh_fileview fv;
    if (mmh_fileview_open(&fv, path) != 0)
        return fprintf(stderr, "image: %s\n", mmh_errmsg()), 2;
    printf("heap file wal_gen %#llx; log: state %d, %llu commit(s) after its mark\n",
           (unsigned long long)fv.hdr->wal_gen, (int)fv.wal.state,
           (unsigned long long)fv.wal.commits);
    mmh_fileview_close(&fv);
    unlink(wal); /* the log is lost (or not copied along) */
    cfg.flags = MMH_READONLY;
    h = mmh_open(path, &cfg);
    if (!h) {
        printf("open without the log refused, as it should be: %s\n", mmh_errmsg());
        return 0;
    }
    printf("BUG: open without the log succeeded; root %s (the acknowledged commit is gone)\n",
           mmh_root(h) ? (char *)mmh_root(h) : "NULL");
    mmh_close(h);
    return 1;
}
