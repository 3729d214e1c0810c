/* graph: a directed graph kept in a heap file, linked by raw pointers.
 *
 * Nodes are found by name through a hash table and point at each other
 * directly: no ids, no serialization.  Each run opens the heap, changes or
 * reads the graph, and closes it (which commits), so the graph is there,
 * pointers and all, the next time.
 *
 *     graph FILE edge FROM TO     add the edge FROM -> TO (nodes made as needed)
 *     graph FILE path FROM TO     a shortest path, by breadth-first search
 *     graph FILE show             every node and its edges
 *     graph FILE random N EDGES   add N nodes n0.. and EDGES random edges
 */
#include <mmheap.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct node {
    struct node  *next_in_bucket;
    struct node **out;          /* edges: pointers to other nodes */
    uint32_t      nout, cap;
    uint64_t      seen;         /* search stamp, see path()       */
    char          name[];
};

struct graph {
    uint64_t      nodes, edges, searches;
    uint64_t      nbuckets;     /* a power of two                 */
    struct node **buckets;
};

static mmh_heap *heap;

static void *heap_alloc(size_t size)
{
    void *p = mmh_calloc(heap, 1, size);
    if (!p) {
        fprintf(stderr, "graph: %s\n", mmh_errmsg());
        exit(1);
    }
    return p;
}

static uint64_t name_hash(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

/* Twice the buckets once there are more nodes than buckets. */
static void grow_table(struct graph *g)
{
    uint64_t n = g->nbuckets * 2;
    struct node **b = heap_alloc(n * sizeof *b);
    for (uint64_t i = 0; i < g->nbuckets; i++) {
        for (struct node *nd = g->buckets[i], *next; nd; nd = next) {
            next = nd->next_in_bucket;
            uint64_t k = name_hash(nd->name) & (n - 1);
            nd->next_in_bucket = b[k];
            b[k] = nd;
        }
    }
    mmh_free(heap, g->buckets);
    g->buckets = b;
    g->nbuckets = n;
}

static struct node *find(const struct graph *g, const char *name)
{
    struct node *nd = g->buckets[name_hash(name) & (g->nbuckets - 1)];
    while (nd && strcmp(nd->name, name) != 0)
        nd = nd->next_in_bucket;
    return nd;
}

static struct node *find_or_add(struct graph *g, const char *name)
{
    struct node *nd = find(g, name);
    if (nd)
        return nd;
    if (g->nodes >= g->nbuckets)
        grow_table(g);
    nd = heap_alloc(sizeof *nd + strlen(name) + 1);
    strcpy(nd->name, name);
    uint64_t k = name_hash(name) & (g->nbuckets - 1);
    nd->next_in_bucket = g->buckets[k];
    g->buckets[k] = nd;
    g->nodes++;
    return nd;
}

static void add_edge(struct graph *g, struct node *from, struct node *to)
{
    if (from->nout == from->cap) {
        uint32_t cap = from->cap ? from->cap * 2 : 4;
        struct node **out = mmh_realloc(heap, from->out, cap * sizeof *out);
        if (!out) {
            fprintf(stderr, "graph: %s\n", mmh_errmsg());
            exit(1);
        }
        from->out = out;
        from->cap = cap;
    }
    from->out[from->nout++] = to;
    g->edges++;
}

/* Breadth-first search.  The queue is the process's own memory; nodes are
 * stamped with the search's number, in the heap, so that no per-search
 * cleanup is needed.  parent[i] is the queue index of the node that
 * reached queue[i]. */
static int path(struct graph *g, const char *from_name, const char *to_name)
{
    struct node *from = find(g, from_name), *to = find(g, to_name);
    if (!from || !to) {
        fprintf(stderr, "graph: no node %s\n", from ? to_name : from_name);
        return 1;
    }
    /* Room for every node, then for the way back (at most every node). */
    struct node **queue = malloc(2 * g->nodes * sizeof *queue);
    uint64_t *parent = malloc(g->nodes * sizeof *parent);
    if (!queue || !parent) {
        fprintf(stderr, "graph: out of memory for a search of %llu nodes\n",
                (unsigned long long)g->nodes);
        free(queue);
        free(parent);
        return 1;
    }
    uint64_t stamp = ++g->searches, head = 0, tail = 1;
    from->seen = stamp;
    queue[0] = from;
    parent[0] = UINT64_MAX;
    while (head < tail && queue[head] != to) {
        struct node *nd = queue[head];
        for (uint32_t i = 0; i < nd->nout; i++) {
            if (nd->out[i]->seen != stamp) {
                nd->out[i]->seen = stamp;
                queue[tail] = nd->out[i];
                parent[tail++] = head;
            }
        }
        head++;
    }
    int rc = 0;
    if (head == tail) {
        printf("no path from %s to %s\n", from_name, to_name);
        rc = 1;
    } else {
        uint64_t hops = 0;
        for (uint64_t at = head; at != UINT64_MAX; at = parent[at])
            queue[hops++ + tail] = queue[at]; /* the way back, after the queue */
        printf("%s -> %s: %llu edges:", from_name, to_name, (unsigned long long)(hops - 1));
        while (hops > 0)
            printf(" %s", queue[tail + --hops]->name);
        printf("\n");
    }
    free(queue);
    free(parent);
    return rc;
}

static void show(const struct graph *g)
{
    printf("%llu nodes, %llu edges\n", (unsigned long long)g->nodes,
           (unsigned long long)g->edges);
    for (uint64_t i = 0; i < g->nbuckets; i++) {
        for (const struct node *nd = g->buckets[i]; nd; nd = nd->next_in_bucket) {
            printf("%s:", nd->name);
            for (uint32_t e = 0; e < nd->nout; e++)
                printf(" %s", nd->out[e]->name);
            printf("\n");
        }
    }
}

static void add_random(struct graph *g, unsigned long n, unsigned long edges)
{
    char name[32];
    uint64_t rng = 0x9e3779b97f4a7c15ull ^ g->edges;
    for (unsigned long e = 0; e < edges; e++) {
        struct node *ends[2];
        for (int k = 0; k < 2; k++) {
            rng = rng * 6364136223846793005ull + 1442695040888963407ull;
            snprintf(name, sizeof name, "n%llu", (unsigned long long)((rng >> 33) % n));
            ends[k] = find_or_add(g, name);
        }
        add_edge(g, ends[0], ends[1]);
    }
}

static int usage(void)
{
    fprintf(stderr, "usage: graph FILE edge FROM TO | path FROM TO | show | random N EDGES\n");
    return 2;
}

int main(int argc, char **argv)
{
    if (argc < 3)
        return usage();
    const char *cmd = argv[2];
    mmh_config cfg = { .flags = MMH_CREATE };
    heap = mmh_open(argv[1], &cfg);
    if (!heap) {
        fprintf(stderr, "graph: %s\n", mmh_errmsg());
        return 1;
    }
    struct graph *g = mmh_root(heap);
    if (!g) {
        g = heap_alloc(sizeof *g);
        g->nbuckets = 64;
        g->buckets = heap_alloc(g->nbuckets * sizeof *g->buckets);
        mmh_set_root(heap, g);
    }
    int rc = 0;
    if (strcmp(cmd, "edge") == 0 && argc == 5) {
        add_edge(g, find_or_add(g, argv[3]), find_or_add(g, argv[4]));
    } else if (strcmp(cmd, "path") == 0 && argc == 5) {
        rc = path(g, argv[3], argv[4]);
    } else if (strcmp(cmd, "show") == 0 && argc == 3) {
        show(g);
    } else if (strcmp(cmd, "random") == 0 && argc == 5 && atol(argv[3]) > 0) {
        add_random(g, strtoul(argv[3], NULL, 10), strtoul(argv[4], NULL, 10));
        printf("%llu nodes, %llu edges\n", (unsigned long long)g->nodes,
               (unsigned long long)g->edges);
    } else {
        rc = usage();
    }
    if (mmh_close(heap) != 0) { /* commits the changes */
        fprintf(stderr, "graph: %s\n", mmh_errmsg());
        return 1;
    }
    return rc;
}
