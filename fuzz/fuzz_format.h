/* The input format of fuzz_open (see fuzz_open.c), shared with make_seeds.
 * The journal's layout on disk is lib/internal.h's (mmh_journal_hdr and
 * the rest), so that the harness can recompute a mutated journal's
 * checksums. */
#ifndef FUZZ_FORMAT_H
#define FUZZ_FORMAT_H

#include "internal.h"

#include <stdint.h>

#define FUZZ_HEAP_PART_MAX ((size_t)1 << 20)  /* bytes of heap part read     */
#define FUZZ_FILE_SIZE_MAX ((uint64_t)32 << 20) /* sparse heap file size cap */
#define FUZZ_EXTENT_HDR    6u                  /* offset (4) + length (2)    */
#define FUZZ_EXTENT_MAX    0xffffu

#endif
