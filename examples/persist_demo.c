/* persist_demo: a heap that survives restarts.
 *
 * Each run opens (or creates) the heap file, adds one entry to a linked
 * list that hangs off the heap's root, prints the whole list by following
 * the raw pointers stored in the heap, and commits.  Run it several times:
 * the list grows, because every object and pointer comes back intact.
 *
 *     persist_demo FILE
 */
#include <mmheap.h>

#include <stdio.h>
#include <string.h>
#include <time.h>

struct entry {
    struct entry *next;       /* a raw pointer, valid in every run */
    time_t        when;
    char          text[];
};

struct root {
    unsigned long runs;
    struct entry *first;
};

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s FILE\n", argv[0]);
        return 2;
    }
    mmh_config cfg = { .flags = MMH_CREATE };
    mmh_heap *h = mmh_open(argv[1], &cfg);
    if (!h) {
        fprintf(stderr, "persist_demo: %s\n", mmh_errmsg());
        return 1;
    }
    struct root *root = mmh_root(h);
    if (!root) {
        root = mmh_calloc(h, 1, sizeof *root);
        if (!root || mmh_set_root(h, root) != 0)
            goto fail;
    }
    root->runs++;

    char text[64];
    snprintf(text, sizeof text, "entry written by run %lu", root->runs);
    struct entry *e = mmh_alloc(h, sizeof *e + strlen(text) + 1);
    if (!e)
        goto fail;
    e->when = time(NULL);
    strcpy(e->text, text);
    e->next = root->first;
    root->first = e;

    printf("%s: run %lu, root object at %p\n", argv[1], root->runs, (void *)root);
    for (struct entry *p = root->first; p; p = p->next)
        printf("  %p  %s\n", (void *)p, p->text);
    if (mmh_close(h) != 0) {
        fprintf(stderr, "persist_demo: %s\n", mmh_errmsg());
        return 1;
    }
    return 0;
fail:
    fprintf(stderr, "persist_demo: %s\n", mmh_errmsg());
    mmh_close(h);
    return 1;
}
