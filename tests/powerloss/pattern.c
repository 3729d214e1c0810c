/* The bytes the workload writes, so that a checker can tell each object's
 * version from its seed alone, and a digest of a version's manifest. */
#include "harness.h"

#include <string.h>

const char *const pl_files[PL_FILES] = { "heap", "image", "laps" };

static uint64_t next(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

void pl_fill(void *p, size_t size, uint64_t seed)
{
    uint64_t s = seed | 1, v;
    size_t i = 0;
    for (; i + 8 <= size; i += 8) {
        v = next(&s);
        memcpy((char *)p + i, &v, 8);
    }
    v = next(&s);
    memcpy((char *)p + i, &v, size - i);
}

bool pl_filled(const void *p, size_t size, uint64_t seed)
{
    uint64_t s = seed | 1, v;
    size_t i = 0;
    for (; i + 8 <= size; i += 8) {
        v = next(&s);
        if (memcmp((const char *)p + i, &v, 8) != 0)
            return false;
    }
    v = next(&s);
    return memcmp((const char *)p + i, &v, size - i) == 0;
}

uint64_t pl_hash(uint64_t h, const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 0x100000001b3ull;
    return h;
}

uint64_t pl_digest(const struct pl_manifest *m)
{
    size_t n = m->nobj <= PL_MAXOBJ ? m->nobj : PL_MAXOBJ;
    return pl_hash(0xcbf29ce484222325ull, m, offsetof(struct pl_manifest, obj) +
                   n * sizeof m->obj[0]);
}
