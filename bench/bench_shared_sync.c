/* bench_shared_sync: how a shared-mode commit should make dirty ranges
 * durable.  200 scattered pages of a 1 GiB MAP_SHARED file are dirtied, then
 * synced either with msync(MS_SYNC) per range or with sync_file_range per
 * range and one fdatasync; the two alternate, medians are reported.
 *
 *     bench/bench_shared_sync [DIR]      (default $TMPDIR or /tmp)
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define FILE_LEN ((size_t)1 << 30)
#define PAGE     4096u
#define PAGES    200u
#define REPS     21

static double now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    const char *dir = argc > 1 ? argv[1] : getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    char path[4096];
    snprintf(path, sizeof path, "%s/bench_shared_sync.%d", dir, (int)getpid());
    int fd = open(path, O_RDWR | O_CREAT | O_EXCL, 0600);
    if (fd < 0 || fallocate(fd, 0, 0, (off_t)FILE_LEN) != 0) {
        perror(path);
        return 1;
    }
    unlink(path);
    char *m = mmap(NULL, FILE_LEN, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (m == MAP_FAILED) {
        perror("mmap");
        return 1;
    }
    memset(m, 1, FILE_LEN);
    msync(m, FILE_LEN, MS_SYNC);
    double per_msync[REPS], sfr[REPS];
    size_t off[PAGES];
    unsigned seed = 1;
    for (int r = 0; r < 2 * REPS; r++) {
        for (unsigned i = 0; i < PAGES; i++) {
            off[i] = (size_t)(rand_r(&seed) % (FILE_LEN / PAGE)) * PAGE;
            m[off[i]]++;
        }
        double t0 = now_ms();
        if (r % 2 == 0) {
            for (unsigned i = 0; i < PAGES; i++)
                msync(m + off[i], PAGE, MS_SYNC);
            per_msync[r / 2] = now_ms() - t0;
        } else {
            for (unsigned i = 0; i < PAGES; i++)
                sync_file_range(fd, (off_t)off[i], PAGE, SYNC_FILE_RANGE_WRITE);
            fdatasync(fd);
            sfr[r / 2] = now_ms() - t0;
        }
    }
    qsort(per_msync, REPS, sizeof *per_msync, cmp);
    qsort(sfr, REPS, sizeof *sfr, cmp);
    printf("%u scattered pages of a 1 GiB MAP_SHARED file in %s, median of %d, alternating\n",
           PAGES, dir, REPS);
    printf("| method | median ms | ratio |\n|---|--:|--:|\n");
    printf("| msync(MS_SYNC) per range | %.2f | 1 |\n", per_msync[REPS / 2]);
    printf("| sync_file_range per range + one fdatasync | %.2f | %.2f |\n", sfr[REPS / 2],
           sfr[REPS / 2] / per_msync[REPS / 2]);
    return 0;
}
