/* The power-loss model over a record (model.c): what each file and the
 * directory hold durably after the first k records, what is pending, and
 * which versions each heap file may hold. */
#ifndef PL_MODEL_H
#define PL_MODEL_H

#include "harness.h"

#include <stddef.h>

#define PL_MAX_FILES 64
#define PL_MAX_NAMES 16

struct pl_file {                /* one inode's life: reused numbers are new files */
    uint64_t  ino;
    char     *buf;              /* durable contents                        */
    size_t    size, cap;
    unsigned  syncs;            /* syncs applied: which durable contents */
    unsigned *pend;             /* records not yet synced, in order        */
    size_t    npend, cappend;
    char      name[PL_NAME];    /* the last name it had, for reports      */
};

struct pl_dent {
    char     name[PL_NAME];
    unsigned file;
};

struct pl_model {
    const struct pl_rec **rec;  /* the record, parsed                       */
    const char          **data; /* each write's bytes                       */
    unsigned              nrec, at; /* records applied so far              */
    unsigned             *rec_file; /* the file each record is about        */
    struct pl_file        file[PL_MAX_FILES];
    unsigned              nfile;
    struct pl_dent        dir[PL_MAX_NAMES]; /* durable names              */
    unsigned              ndir;
    unsigned             *dpend; /* directory changes not yet synced      */
    size_t                ndpend;
    struct pl_expect      expect[PL_FILES];
};

/* Parse the record in [p, p + len); 0 or -1 (malformed). */
int  pl_model_init(struct pl_model *m, const char *p, size_t len);
void pl_model_free(struct pl_model *m);
/* Apply the next record. */
void pl_model_step(struct pl_model *m);
/* Apply directory change i (a record index) to the names d[0..*n). */
void pl_dir_apply(const struct pl_model *m, struct pl_dent *d, unsigned *n, unsigned i);
/* A line saying what record i is. */
void pl_describe(const struct pl_model *m, unsigned i, char *out, size_t size);

#endif
