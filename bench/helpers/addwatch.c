/* inotify_add_watch latency: `addwatch LIST COUNT` adds a watch on each of the first COUNT
 * paths of LIST (one per line) to one inotify instance, timing each call, and prints
 * `median_ns p99_ns total_ns failures`. Run as is for the real syscall, or with
 * LD_PRELOAD=libfakenotify.so to time the preload and the daemon. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <time.h>

static long long now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static int cmp(const void *a, const void *b) {
    long long x = *(const long long *)a, y = *(const long long *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: addwatch LIST COUNT\n");
        return 2;
    }
    FILE *list = fopen(argv[1], "r");
    if (!list) {
        perror(argv[1]);
        return 1;
    }
    long count = atol(argv[2]);
    char **paths = calloc(count, sizeof *paths);
    long long *ns = calloc(count, sizeof *ns);
    if (!paths || !ns) return 1;
    char line[4096];
    long n = 0;
    while (n < count && fgets(line, sizeof line, list)) {
        line[strcspn(line, "\n")] = 0;
        paths[n++] = strdup(line);
    }
    fclose(list);
    int fd = inotify_init1(IN_CLOEXEC);
    if (fd < 0) {
        perror("inotify_init1");
        return 1;
    }
    long failures = 0;
    long long start = now_ns();
    for (long i = 0; i < n; i++) {
        long long t0 = now_ns();
        int wd = inotify_add_watch(fd, paths[i], IN_MODIFY | IN_ATTRIB | IN_CLOSE_WRITE | IN_DELETE_SELF);
        ns[i] = now_ns() - t0;
        if (wd < 0) failures++;
    }
    long long total = now_ns() - start;
    qsort(ns, n, sizeof *ns, cmp);
    printf("%lld %lld %lld %ld\n", n ? ns[n / 2] : 0, n ? ns[(n * 99) / 100] : 0, total, failures);
    return 0;
}
