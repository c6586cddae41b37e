/* inotify_add_watch latency: `addwatch LIST COUNT` adds a watch on each of the first COUNT
 * paths of LIST (one per line) to one inotify instance, timing each call, and prints
 * `median_ns p99_ns total_ns failures`. Run as is for the real syscall, or with
 * LD_PRELOAD=libfakenotify.so to time the preload and the daemon.
 *
 * `addwatch --round-trip COUNT` prints the same figures for the floor of any request to another
 * process: a 16-byte message over a SOCK_SEQPACKET socketpair to a child that waits in
 * epoll_wait, reads it and answers, as the daemon does. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/inotify.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static long long now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static int cmp(const void *a, const void *b) {
    long long x = *(const long long *)a, y = *(const long long *)b;
    return (x > y) - (x < y);
}

static void print(long long *ns, long n, long long total, long failures) {
    qsort(ns, n, sizeof *ns, cmp);
    printf("%lld %lld %lld %ld\n", n ? ns[n / 2] : 0, n ? ns[(n * 99) / 100] : 0, total, failures);
}

/* The child of --round-trip: answers each message until its peer closes. */
static void echo(int fd) {
    int ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = fd};
    if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0) _exit(1);
    char buf[64];
    for (;;) {
        struct epoll_event ready[4];
        if (epoll_wait(ep, ready, 4, -1) < 0) continue;
        ssize_t got = recv(fd, buf, sizeof buf, 0);
        if (got <= 0 || send(fd, buf, got, 0) != got) _exit(0);
    }
}

static int round_trip(long count) {
    int pair[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET, 0, pair) < 0) {
        perror("socketpair");
        return 1;
    }
    pid_t child = fork();
    if (child < 0) {
        perror("fork");
        return 1;
    }
    if (child == 0) {
        close(pair[0]);
        echo(pair[1]);
    }
    close(pair[1]);
    long long *ns = calloc(count, sizeof *ns);
    if (!ns) return 1;
    char buf[64] = {0};
    long failures = 0;
    long long start = now_ns();
    for (long i = 0; i < count; i++) {
        long long t0 = now_ns();
        if (send(pair[0], buf, 16, 0) != 16 || recv(pair[0], buf, sizeof buf, 0) != 16) failures++;
        ns[i] = now_ns() - t0;
    }
    long long total = now_ns() - start;
    close(pair[0]);
    waitpid(child, NULL, 0);
    print(ns, count, total, failures);
    return 0;
}

int main(int argc, char **argv) {
    if (argc == 3 && strcmp(argv[1], "--round-trip") == 0) return round_trip(atol(argv[2]));
    if (argc != 3) {
        fprintf(stderr, "usage: addwatch LIST COUNT | addwatch --round-trip COUNT\n");
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
    print(ns, n, total, failures);
    return 0;
}
