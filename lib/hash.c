/* A 64-bit checksum for the header and journal records.  Four independent
 * lanes take 32 bytes a step, so the multiplies of one step overlap instead
 * of forming one dependent chain; any flipped bit changes the result. */
#include "internal.h"

#include <string.h>

#define P1 0x9e3779b185ebca87ull
#define P2 0xc2b2ae3d27d4eb4full
#define P3 0x165667b19e3779f9ull

static inline uint64_t rotl(uint64_t x, unsigned r)
{
    return (x << r) | (x >> (64 - r));
}

static inline uint64_t lane(uint64_t acc, uint64_t w)
{
    return rotl(acc + w * P2, 31) * P1;
}

#if MMH_ASAN
__attribute__((no_sanitize_address)) /* clang -O1 keeps it out of line */
#endif
static inline uint64_t load64(const unsigned char *p)
{
    uint64_t w;
    memcpy(&w, p, 8);
    return w;
}

static inline uint64_t avalanche(uint64_t h)
{
    h ^= h >> 33;
    h *= P2;
    h ^= h >> 29;
    h *= P3;
    return h ^ (h >> 32);
}

/* Commits hash heap ranges with the free blocks in them, poisoned. */
#if MMH_ASAN
__attribute__((no_sanitize_address))
#endif
uint64_t mmh_hash64(const void *data, size_t len, uint64_t seed)
{
    const unsigned char *p = data;
    uint64_t h = seed + P3 + (uint64_t)len;
    if (len >= 32) {
        uint64_t a = seed + P1 + P2, b = seed + P2, c = seed, d = seed - P1;
        for (; len >= 32; p += 32, len -= 32) {
            a = lane(a, load64(p));
            b = lane(b, load64(p + 8));
            c = lane(c, load64(p + 16));
            d = lane(d, load64(p + 24));
        }
        h += rotl(a, 1) + rotl(b, 7) + rotl(c, 12) + rotl(d, 18);
        h = (h ^ lane(0, a)) * P1 + P3;
        h = (h ^ lane(0, b)) * P1 + P3;
        h = (h ^ lane(0, c)) * P1 + P3;
        h = (h ^ lane(0, d)) * P1 + P3;
    }
    for (; len >= 8; p += 8, len -= 8)
        h = rotl(h ^ lane(0, load64(p)), 27) * P1 + P3;
    uint64_t tail = 0;
    memcpy(&tail, p, len);
    return avalanche(h ^ (tail * P1) ^ ((uint64_t)len << 56));
}

/* The copy a commit makes of heap pages: free blocks in them are poisoned
 * in the sanitizer builds, whose memcpy would check them. */
#if MMH_ASAN
__attribute__((no_sanitize_address)) void mmh_copy_unchecked(void *dst, const void *src,
                                                             size_t len)
{
    const volatile unsigned char *s = src; /* not turned back into memcpy */
    unsigned char *d = dst;
    for (size_t i = 0; i < len; i++)
        d[i] = s[i];
    mmh_inst_copied(dst, len);
}
#else
void mmh_copy_unchecked(void *dst, const void *src, size_t len)
{
    memcpy(dst, src, len);
    mmh_inst_copied(dst, len);
}
#endif
