/* mmheap: look inside a heap file, check it, recover it.
 *
 *   mmheap info    [--json] FILE    header, log, usage, size classes
 *   mmheap ls      [--json] FILE    the names table: name, offset, block size
 *   mmheap check   [--json] [--quiet] [--max-problems N] FILE
 *   mmheap recover [--json] FILE    checkpoint FILE.wal into the heap file
 *
 * Exit status: 0 done (check: sound), 1 check found problems, 2 bad usage,
 * 3 FILE could not be read as a heap (missing, not a heap, bad header, in
 * use by a writer, an I/O error).  See mmheap(1).
 */
#define _GNU_SOURCE
#include "check.h"
#include "fileio.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

enum { EXIT_SOUND = 0, EXIT_PROBLEMS = 1, EXIT_USAGE = 2, EXIT_UNREADABLE = 3 };

/* Heaps of this many segments or more get a progress bar on a terminal. */
#define PROGRESS_MIN_SEGS 64

typedef struct opts {
    bool        json, quiet;
    unsigned long max_problems;
    const char *file;
} opts;

typedef struct command {
    const char *name;
    const char *usage;
    const char *help;
    int (*run)(const opts *o);
} command;

/* ---- output ------------------------------------------------------------------ */

static void json_string(const char *s)
{
    putchar('"');
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            printf("\\%c", c);
        else if (c < 0x20)
            printf("\\u%04x", c);
        else
            putchar(c);
    }
    putchar('"');
}

static const char *wal_word(mmh_wal_state s)
{
    static const char *const words[] = {
        [MMH_WAL_ABSENT] = "none", [MMH_WAL_LEFTOVER] = "leftover",
        [MMH_WAL_VALID] = "valid", [MMH_WAL_STALE] = "stale",
    };
    return words[s];
}

/* What the log means for the heap, in a sentence. */
static void wal_sentence(const mmh_wal_info *wi, char *buf, size_t n)
{
    switch (wi->state) {
    case MMH_WAL_ABSENT:
        snprintf(buf, n, "none: the heap has not been opened for writing since it was made");
        break;
    case MMH_WAL_LEFTOVER:
        snprintf(buf, n, "the file there is not this heap's log (left over); the next writable "
                 "open makes a new one");
        break;
    case MMH_WAL_STALE:
        snprintf(buf, n, "ends at commit %" PRIu64 ", older than the heap's commit %" PRIu64
                 ": a copy, never replayed; reset at the next writable open", wi->last_seq,
                 wi->heap_seq);
        break;
    case MMH_WAL_VALID: {
        char torn[128] = "";
        if (wi->torn)
            snprintf(torn, sizeof torn, "; commit %" PRIu64 " after them is torn (it never "
                     "completed) and is discarded", wi->last_seq + 1);
        if (!wi->commits)
            snprintf(buf, n, "every commit is checkpointed into the heap file%s", torn);
        else
            snprintf(buf, n, "commits %" PRIu64 " to %" PRIu64 " (%" PRIu64 " bytes of pages) "
                     "are durable there, not yet checkpointed; every open applies them%s",
                     wi->first_seq, wi->last_seq, wi->data_bytes, torn);
        break;
    }
    }
}

static void human(uint64_t bytes, char *buf, size_t n)
{
    static const char *const units[] = { "B", "KiB", "MiB", "GiB", "TiB" };
    double v = (double)bytes;
    unsigned u = 0;
    while (v >= 1024 && u + 1 < sizeof units / sizeof *units) {
        v /= 1024;
        u++;
    }
    snprintf(buf, n, u ? "%.1f %s" : "%.0f %s", v, units[u]);
}

/* ---- the walk ------------------------------------------------------------------ */

typedef struct problem {
    uint64_t off;
    char     msg[256];
} problem;

typedef struct walk_state {
    const opts   *o;
    problem      *kept;          /* the first max_problems, for --json */
    unsigned long nkept;
    bool          progress, progress_drawn;
    int           last_pct;
} walk_state;

static void progress_clear(walk_state *ws)
{
    if (ws->progress_drawn)
        fputs("\r\033[K", stderr);
    ws->progress_drawn = false;
}

static void on_problem(void *arg, uint64_t off, const char *msg)
{
    walk_state *ws = arg;
    if (ws->nkept >= ws->o->max_problems)
        return;
    if (ws->o->json) {
        problem *p = &ws->kept[ws->nkept];
        p->off = off;
        snprintf(p->msg, sizeof p->msg, "%s", msg);
    } else if (!ws->o->quiet) {
        progress_clear(ws);
        printf("%s: offset %#" PRIx64 ": %s\n", ws->o->file, off, msg);
    }
    ws->nkept++;
}

static void on_progress(void *arg, size_t done, size_t total)
{
    walk_state *ws = arg;
    int pct = total ? (int)(done * 100 / total) : 100;
    if (!ws->progress || pct == ws->last_pct)
        return;
    ws->last_pct = pct;
    char bar[41];
    size_t fill = (size_t)pct * 40 / 100;
    memset(bar, '#', fill);
    memset(bar + fill, '.', 40 - fill);
    bar[40] = '\0';
    fprintf(stderr, "\rchecking %s [%s] %3d%% (%zu of %zu segments)", ws->o->file, bar, pct,
            done, total);
    ws->progress_drawn = true;
}

static void print_error(const opts *o, const char *msg)
{
    if (o->json) {
        printf("{\"file\": ");
        json_string(o->file);
        printf(", \"error\": ");
        json_string(msg);
        printf("}\n");
    } else {
        fprintf(stderr, "mmheap: %s\n", msg);
    }
}

/* Open FILE as the next open will see it and walk it.  0, or
 * EXIT_UNREADABLE after saying why. */
static int walk_file(const opts *o, mmh_fileview *fv, mmh_check_result *r, walk_state *ws)
{
    memset(ws, 0, sizeof *ws);
    ws->o = o;
    ws->last_pct = -1;
    if (o->json && !(ws->kept = calloc(o->max_problems ? o->max_problems : 1, sizeof *ws->kept))) {
        print_error(o, "out of memory");
        return EXIT_UNREADABLE;
    }
    if (mmh_fileview_open(fv, o->file) != 0) {
        print_error(o, mmh_errmsg());
        free(ws->kept);
        return EXIT_UNREADABLE;
    }
    ws->progress = !o->json && !o->quiet && isatty(STDERR_FILENO) &&
                   (fv->hdr->extent >> MMH_SEG_SHIFT) >= PROGRESS_MIN_SEGS;
    mmh_check_fileview(fv, r, on_problem, on_progress, ws);
    progress_clear(ws);
    return 0;
}

static void json_problems(const walk_state *ws)
{
    printf("\"problems\": [");
    for (unsigned long i = 0; i < ws->nkept; i++) {
        printf("%s\n    {\"offset\": %" PRIu64 ", \"message\": ", i ? "," : "", ws->kept[i].off);
        json_string(ws->kept[i].msg);
        putchar('}');
    }
    printf("%s]", ws->nkept ? "\n  " : "");
}

/* ---- check ------------------------------------------------------------------------ */

static int run_check(const opts *o)
{
    mmh_fileview fv;
    mmh_check_result r;
    walk_state ws;
    int rc = walk_file(o, &fv, &r, &ws);
    if (rc != 0)
        return rc;
    bool replayed = mmh_wal_has_commits(&fv.wal);
    if (o->json) {
        printf("{\"file\": ");
        json_string(o->file);
        printf(", \"sound\": %s, \"problem_count\": %" PRIu64 ", ", r.problems ? "false" : "true",
               r.problems);
        json_problems(&ws);
        printf(", \"wal\": \"%s\", \"segments\": %" PRIu64 ", \"live_blocks\": %" PRIu64
               "}\n", wal_word(fv.wal.state), r.segments, r.live_blocks);
    } else if (!o->quiet) {
        if (r.problems > ws.nkept)
            printf("%s: ... and %" PRIu64 " more\n", o->file, r.problems - ws.nkept);
        if (r.problems)
            printf("%s: %" PRIu64 " problem%s found%s\n", o->file, r.problems,
                   r.problems == 1 ? "" : "s", replayed ? " (with its log applied)" : "");
        else
            printf("%s: sound: %" PRIu64 " segments, %" PRIu64 " live blocks in %" PRIu64
                   " small pages and %" PRIu64 " large blocks, %" PRIu64 " free spans and %"
                   PRIu64 " free runs%s\n", o->file, r.segments, r.live_blocks, r.small_pages,
                   r.large_blocks + r.huge_blocks, r.free_spans, r.free_runs,
                   replayed ? ", with its log applied" : "");
    }
    free(ws.kept);
    mmh_fileview_close(&fv);
    return r.problems ? EXIT_PROBLEMS : EXIT_SOUND;
}

/* ---- info ------------------------------------------------------------------------- */

static void info_text(const opts *o, const mmh_fileview *fv, const mmh_check_result *r)
{
    const mmh_hdr *hdr = fv->hdr;
    char a[32], b[32], c[32], js[320];
    wal_sentence(&fv->wal, js, sizeof js);
    printf("file          %s\n", o->file);
    printf("format        version %u, %u-byte pages, %u-byte segments\n", hdr->version,
           hdr->page_size, hdr->seg_size);
    printf("file id       %016" PRIx64 "\n", hdr->file_id);
    printf("base          %#" PRIx64 "\n", hdr->base);
    human(hdr->extent, a, sizeof a);
    human(hdr->max_size, b, sizeof b);
    printf("size          %" PRIu64 " bytes (%s, %" PRIu64 " segments); max_size %s\n",
           hdr->extent, a, r->segments, b);
    if (hdr->root)
        printf("root          offset %#" PRIx64 "\n", hdr->root);
    else
        printf("root          none\n");
    printf("names         %" PRIu64 "\n", r->names);
    printf("commit        %" PRIu64 "\n", hdr->commit_seq);
    printf("log           %s\n", js);
    printf("slots         %u used of %u (%u tables; a heap has at most %u), %" PRIu64
           " with pages\n", hdr->slots_hwm, hdr->nslots, hdr->nslots / MMH_SLOTS,
           MMH_SLOTS_MAX, r->slots_used);
    human(r->live_bytes, a, sizeof a);
    printf("in use        %" PRIu64 " blocks, %" PRIu64 " bytes (%s): %" PRIu64
           " small pages, %" PRIu64 " large and %" PRIu64 " huge blocks\n", r->live_blocks,
           r->live_bytes, a, r->small_pages, r->large_blocks, r->huge_blocks);
    human(r->free_bytes, a, sizeof a);
    human(r->largest_free, b, sizeof b);
    human(r->meta_bytes, c, sizeof c);
    printf("free          %" PRIu64 " bytes (%s) in %" PRIu64 " spans and %" PRIu64
           " segment runs; largest %s\n", r->free_bytes, a, r->free_spans, r->free_runs, b);
    printf("metadata      %s\n", c);
    if (r->problems)
        printf("problems      %" PRIu64 ": run mmheap check %s\n", r->problems, o->file);
    printf("\nsize class  block  pages   blocks  capacity   fill  unused in pages\n");
    for (unsigned cls = 1; cls < MMH_CLASSES; cls++) {
        const mmh_class_stats *k = &r->classes[cls];
        if (!k->pages)
            continue;
        uint64_t size = mmh_class_size(cls);
        human((k->capacity - k->blocks) * size, a, sizeof a);
        printf("%10u %6" PRIu64 " %6" PRIu64 " %8" PRIu64 " %9" PRIu64 " %5.1f%%  %s\n", cls,
               size, k->pages, k->blocks, k->capacity,
               k->capacity ? 100.0 * (double)k->blocks / (double)k->capacity : 0.0, a);
    }
}

static void info_json(const opts *o, const mmh_fileview *fv, const mmh_check_result *r,
                      const walk_state *ws)
{
    const mmh_hdr *hdr = fv->hdr;
    const mmh_wal_info *wi = &fv->wal;
    printf("{\"file\": ");
    json_string(o->file);
    printf(",\n  \"version\": %u, \"page_size\": %u, \"segment_size\": %u, \"file_id\": \"%016"
           PRIx64 "\", \"base\": %" PRIu64 ", \"size\": %" PRIu64 ", \"max_size\": %" PRIu64
           ", \"segments\": %" PRIu64 ", \"root\": %" PRIu64 ", \"names\": %" PRIu64
           ", \"commit_seq\": %" PRIu64 ",\n", hdr->version, hdr->page_size, hdr->seg_size,
           hdr->file_id, hdr->base, hdr->extent, hdr->max_size, r->segments, hdr->root,
           r->names, hdr->commit_seq);
    printf("  \"wal\": {\"state\": \"%s\", \"size\": %" PRIu64 ", \"commits\": %" PRIu64
           ", \"torn\": %s", wal_word(wi->state), wi->size, wi->commits,
           wi->torn ? "true" : "false");
    if (wi->commits)
        printf(", \"first_seq\": %" PRIu64 ", \"last_seq\": %" PRIu64 ", \"bytes\": %" PRIu64,
               wi->first_seq, wi->last_seq, wi->data_bytes);
    printf("},\n  \"slots_used\": %u, \"slots\": %u, \"slots_max\": %u, \"live_blocks\": %"
           PRIu64 ", \"live_bytes\": %" PRIu64 ", \"small_pages\": %" PRIu64 ", \"large_blocks\": %"
           PRIu64 ", \"huge_blocks\": %" PRIu64 ", \"free_bytes\": %" PRIu64 ", \"free_spans\": %"
           PRIu64 ", \"free_runs\": %" PRIu64 ", \"largest_free\": %" PRIu64
           ", \"metadata_bytes\": %" PRIu64 ", \"problem_count\": %" PRIu64 ",\n  \"classes\": [",
           hdr->slots_hwm, hdr->nslots, MMH_SLOTS_MAX, r->live_blocks, r->live_bytes,
           r->small_pages, r->large_blocks, r->huge_blocks, r->free_bytes, r->free_spans, r->free_runs,
           r->largest_free, r->meta_bytes, r->problems);
    bool first = true;
    for (unsigned cls = 1; cls < MMH_CLASSES; cls++) {
        const mmh_class_stats *k = &r->classes[cls];
        if (!k->pages)
            continue;
        printf("%s\n    {\"class\": %u, \"block_size\": %zu, \"pages\": %" PRIu64
               ", \"blocks\": %" PRIu64 ", \"capacity\": %" PRIu64 "}", first ? "" : ",", cls,
               mmh_class_size(cls), k->pages, k->blocks, k->capacity);
        first = false;
    }
    printf("%s],\n  ", first ? "" : "\n  ");
    json_problems(ws);
    printf("}\n");
}

static int run_info(const opts *o)
{
    mmh_fileview fv;
    mmh_check_result r;
    walk_state ws;
    opts quiet = *o;
    quiet.quiet = true; /* info counts problems; check reports them */
    int rc = walk_file(&quiet, &fv, &r, &ws);
    if (rc != 0)
        return rc;
    if (o->json)
        info_json(o, &fv, &r, &ws);
    else
        info_text(o, &fv, &r);
    free(ws.kept);
    mmh_fileview_close(&fv);
    return EXIT_SOUND;
}

/* ---- ls --------------------------------------------------------------------------- */

typedef struct name_entry {
    char    *name;
    uint64_t off, size;
} name_entry;

typedef struct name_list {
    name_entry *v;
    size_t      n, cap;
    bool        failed;
} name_list;

static void collect_name(void *arg, const char *name, uint64_t off, uint64_t size)
{
    name_list *l = arg;
    if (l->failed)
        return;
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 256;
        name_entry *v = realloc(l->v, cap * sizeof *v);
        if (!v) {
            l->failed = true;
            return;
        }
        l->v = v;
        l->cap = cap;
    }
    if (!(l->v[l->n].name = strdup(name))) {
        l->failed = true;
        return;
    }
    l->v[l->n].off = off;
    l->v[l->n++].size = size;
}

static int by_name(const void *a, const void *b)
{
    return strcmp(((const name_entry *)a)->name, ((const name_entry *)b)->name);
}

/* A name as text: control bytes escaped, since a name may hold any byte. */
static void text_name(const char *s)
{
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c < 0x20 || c == 0x7f || c == '\\')
            printf("\\x%02x", c);
        else
            putchar(c);
    }
}

static int run_ls(const opts *o)
{
    mmh_fileview fv;
    mmh_check_result r;
    walk_state ws;
    name_list l = { 0 };
    opts quiet = *o;
    quiet.quiet = true; /* a damaged table is check's to report */
    int rc = walk_file(&quiet, &fv, &r, &ws);
    if (rc != 0)
        return rc;
    char msg[512];
    if (r.problems) {
        snprintf(msg, sizeof msg, "%s: %" PRIu64 " problems found: run mmheap check %s",
                 o->file, r.problems, o->file);
        rc = EXIT_PROBLEMS;
    } else {
        mmh_check_names_each(&fv, collect_name, &l);
        snprintf(msg, sizeof msg, "%s: out of memory", o->file);
        rc = l.failed ? EXIT_UNREADABLE : EXIT_SOUND;
    }
    if (rc != EXIT_SOUND)
        print_error(o, msg);
    else
        qsort(l.v, l.n, sizeof *l.v, by_name);
    if (rc == EXIT_SOUND && o->json) {
        printf("{\"file\": ");
        json_string(o->file);
        printf(", \"names\": [");
        for (size_t i = 0; i < l.n; i++) {
            printf("%s\n  {\"name\": ", i ? "," : "");
            json_string(l.v[i].name);
            printf(", \"offset\": %" PRIu64 ", \"size\": %" PRIu64 "}", l.v[i].off, l.v[i].size);
        }
        printf("%s]}\n", l.n ? "\n" : "");
    } else if (rc == EXIT_SOUND) {
        printf("%-18s %12s  %s\n", "offset", "size", "name");
        for (size_t i = 0; i < l.n; i++) {
            printf("%#-18" PRIx64 " %12" PRIu64 "  ", l.v[i].off, l.v[i].size);
            text_name(l.v[i].name);
            putchar('\n');
        }
    }
    for (size_t i = 0; i < l.n; i++)
        free(l.v[i].name);
    free(l.v);
    free(ws.kept);
    mmh_fileview_close(&fv);
    return rc;
}

/* ---- recover ---------------------------------------------------------------------- */

/* Only a file that starts like a heap: recovery of anything else would
 * touch its FILE.wal as one made for another file.  The lock keeps
 * writers out until the tool exits. */
static int open_for_recovery(const opts *o, char *why, size_t n)
{
    char magic[sizeof MMH_MAGIC - 1];
    int fd = mmh_open_regular(o->file, O_RDWR);
    if (fd < 0) {
        snprintf(why, n, "%s", mmh_errmsg());
        return -1;
    }
    if (pread(fd, magic, sizeof magic, 0) != (ssize_t)sizeof magic ||
        memcmp(magic, MMH_MAGIC, sizeof magic) != 0)
        snprintf(why, n, "%s: not an mmheap heap file (bad magic); its log is left alone",
                 o->file);
    else if (flock(fd, LOCK_EX | LOCK_NB) != 0)
        snprintf(why, n, "%s: %s", o->file, errno == EWOULDBLOCK ?
                 "heap is in use (a writer or reader has it open)" : strerror(errno));
    else
        return fd;
    close(fd);
    return -1;
}

static int run_recover(const opts *o)
{
    char why[512];
    int fd = open_for_recovery(o, why, sizeof why);
    if (fd < 0) {
        print_error(o, why);
        return EXIT_UNREADABLE;
    }
    mmh_wal_view wv;
    if (mmh_wal_inspect(o->file, fd, true, &wv) != 0 || mmh_wal_recover(o->file, fd, &wv) != 0) {
        print_error(o, mmh_errmsg());
        mmh_wal_view_close(&wv);
        close(fd);
        return EXIT_UNREADABLE;
    }
    mmh_wal_view_close(&wv);
    close(fd);
    const mmh_wal_info *wi = &wv.info;
    bool checkpointed = mmh_wal_has_commits(wi);
    const char *action = checkpointed ? "checkpointed" : "none";
    if (checkpointed)
        snprintf(why, sizeof why, "checkpointed commits %" PRIu64 " to %" PRIu64 " (%" PRIu64
                 " bytes of pages) from its log into the heap file", wi->first_seq,
                 wi->last_seq, wi->data_bytes);
    else
        wal_sentence(wi, why, sizeof why);
    if (o->json) {
        printf("{\"file\": ");
        json_string(o->file);
        printf(", \"wal\": \"%s\", \"action\": \"%s\"", wal_word(wi->state), action);
        if (checkpointed)
            printf(", \"first_seq\": %" PRIu64 ", \"last_seq\": %" PRIu64 ", \"bytes\": %" PRIu64,
                   wi->first_seq, wi->last_seq, wi->data_bytes);
        printf(", \"message\": ");
        json_string(why);
        printf("}\n");
    } else {
        printf("%s: %s\n", o->file, why);
    }
    return EXIT_SOUND;
}

/* ---- the command line ---------------------------------------------------------- */

static const command commands[] = {
    { "info", "mmheap info [--json] FILE",
      "Print the heap file's header (format, identity, base, sizes, root, commit\n"
      "sequence), the state of its write-ahead log, the bytes in use and free,\n"
      "and per size class the pages, live blocks and capacity.  The file is\n"
      "read as the next open will see it: the commits in its log are applied in\n"
      "memory, and nothing is written.", run_info },
    { "ls", "mmheap ls [--json] FILE",
      "List the heap's names (mmh_name_set), sorted: the offset of the block\n"
      "each names, the block's size, and the name (control bytes escaped as\n"
      "\\xNN).  The file is read as the next open will see it, and checked\n"
      "first: a heap with problems is listed by mmheap check instead (exit\n"
      "status 1).", run_ls },
    { "check", "mmheap check [--json] [--quiet] [--max-problems N] FILE",
      "Walk every piece of allocator metadata read-only and verify its\n"
      "invariants: the segment map, segments and spans, free lists inside their\n"
      "pages and their counts, span bins and free segment runs (linked both ways,\n"
      "coalesced, every free span on exactly one), the slots' class rings, the\n"
      "root, the header's counters and the names table (its slots, records and\n"
      "probe order, and that every name names the start of a block).  Each problem is printed with the heap\n"
      "offset of the metadata at fault (the first N, default 100).  The commits\n"
      "in its log are applied in memory first.  A progress bar is drawn on a\n"
      "terminal for heaps of 256 MiB and more.", run_check },
    { "recover", "mmheap recover [--json] FILE",
      "Checkpoint FILE.wal: copy the commits in it that are not yet in the heap\n"
      "file into it, and say what was done.  A writable mmh_open does the same\n"
      "in the background; this does it explicitly, under the heap's exclusive\n"
      "lock.", run_recover },
};

#define NCOMMANDS (sizeof commands / sizeof *commands)

static const char exit_codes[] =
    "Exit status: 0 done (check: the heap is sound), 1 check found problems,\n"
    "2 bad usage, 3 FILE could not be read as a heap (missing, not a heap, a\n"
    "bad header, in use by a writer, an I/O error).\n";

static void usage_all(FILE *f)
{
    fprintf(f, "usage: mmheap COMMAND [OPTIONS] FILE\n\ncommands:\n");
    for (size_t i = 0; i < NCOMMANDS; i++)
        fprintf(f, "  %s\n", commands[i].usage);
    fprintf(f, "\n  mmheap help COMMAND, mmheap COMMAND --help: what a command does\n"
            "  mmheap --version\n\n%s", exit_codes);
}

static void help_one(const command *c)
{
    printf("usage: %s\n\n%s\n\n  --json          machine-readable output on stdout\n",
           c->usage, c->help);
    if (c->run == run_check)
        printf("  --quiet         print nothing; the exit status says it all\n"
               "  --max-problems N  report at most N problems (default 100)\n");
    printf("  --help          this text\n\n%s", exit_codes);
}

static const command *find_command(const char *name)
{
    for (size_t i = 0; i < NCOMMANDS; i++)
        if (strcmp(commands[i].name, name) == 0)
            return &commands[i];
    return NULL;
}

static int bad_usage(const char *fmt, const char *arg)
{
    fprintf(stderr, "mmheap: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\n");
    usage_all(stderr);
    return EXIT_USAGE;
}

int main(int argc, char **argv)
{
    if (argc < 2)
        return bad_usage("%s", "no command given");
    const char *name = argv[1];
    if (!strcmp(name, "--help") || !strcmp(name, "-h")) {
        usage_all(stdout);
        return EXIT_SOUND;
    }
    if (!strcmp(name, "--version")) {
        printf("mmheap %s (heap format %u)\n", PACKAGE_VERSION, MMH_FORMAT_VERSION);
        return EXIT_SOUND;
    }
    if (!strcmp(name, "help")) {
        const command *c = argc > 2 ? find_command(argv[2]) : NULL;
        if (argc > 2 && !c)
            return bad_usage("unknown command '%s'", argv[2]);
        if (c)
            help_one(c);
        else
            usage_all(stdout);
        return EXIT_SOUND;
    }
    const command *c = find_command(name);
    if (!c)
        return bad_usage("unknown command '%s'", name);
    opts o = { .max_problems = 100 };
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            help_one(c);
            return EXIT_SOUND;
        } else if (!strcmp(a, "--json")) {
            o.json = true;
        } else if (c->run == run_check && !strcmp(a, "--quiet")) {
            o.quiet = true;
        } else if (c->run == run_check && !strcmp(a, "--max-problems")) {
            char *end;
            if (++i >= argc)
                return bad_usage("%s needs a number", a);
            errno = 0;
            o.max_problems = strtoul(argv[i], &end, 10);
            if (errno || !*argv[i] || *end || argv[i][0] == '-')
                return bad_usage("--max-problems: '%s' is not a number", argv[i]);
        } else if (a[0] == '-' && a[1]) {
            return bad_usage("unknown option '%s'", a);
        } else if (o.file) {
            return bad_usage("one FILE only ('%s' is a second)", a);
        } else {
            o.file = a;
        }
    }
    if (!o.file)
        return bad_usage("%s: no FILE given", c->name);
    return c->run(&o);
}
