/*
 * fork_safety: inotify calls where libc's own locks would deadlock a careless hook: from a
 * signal handler, in the child of a fork() taken while other threads are inside the hooks,
 * and across vfork()+exec. Run it under LD_PRELOAD=libfakenotify.so with a daemon; a test
 * kills it if it does not finish in time (a deadlock) and fails on a crash.
 *
 *   cc -O2 -Wall -o fork_safety fork_safety.c -lpthread
 *
 * Usage: fork_safety DIR            (DIR: an empty directory the program may fill)
 *        fork_safety --exec-child DIR FD   (what the vfork child execs; not for direct use)
 *
 * Output, one line per check: `OK <check> <detail>` or `FAIL <check> <detail>`, then `DONE`
 * and exit 0 if every check passed, else exit 1. `INIT socket` first says that the daemon
 * serves the instances (`INIT inotify` means the preload fell back to the kernel).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define BUSY_THREADS 4
#define SIGNALS 500
#define FORKS 30

static const char *dir;
static char sig_dir[4096], main_dir[4096], busy_dir[4096], child_dir[4096];
static int shared_fd = -1;
static int failures;

static atomic_int handler_ok, handler_failed, handler_errno, signals_sent;
static atomic_int stop_busy;
static atomic_long busy_calls, busy_failed;
static atomic_int busy_errno;

#define say(...)                     \
	do {                             \
		printf(__VA_ARGS__);         \
		fflush(stdout);              \
	} while (0)

static void check(int ok, const char *what, const char *detail)
{
	say("%s %s %s\n", ok ? "OK" : "FAIL", what, detail);
	if (!ok)
		failures++;
}

static const char *fd_kind(int fd)
{
	struct stat st;
	if (fstat(fd, &st) != 0)
		return "unknown";
	return S_ISSOCK(st.st_mode) ? "socket" : "inotify";
}

static void make_dir(char *out, const char *name)
{
	snprintf(out, 4096, "%s/%s", dir, name);
	if (mkdir(out, 0755) != 0 && errno != EEXIST) {
		say("FAIL setup mkdir %s: %s\n", out, strerror(errno));
		exit(1);
	}
}

/* Waits up to `ms` for an IN_CREATE of `name` on `fd`. Async-signal-safe (no stdio). */
static int wait_create(int fd, const char *name, int ms)
{
	char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
	struct timespec start, now;
	clock_gettime(CLOCK_MONOTONIC, &start);
	for (;;) {
		clock_gettime(CLOCK_MONOTONIC, &now);
		long left = ms - ((now.tv_sec - start.tv_sec) * 1000 + (now.tv_nsec - start.tv_nsec) / 1000000);
		if (left <= 0)
			return 0;
		struct pollfd p = {.fd = fd, .events = POLLIN};
		int ready = poll(&p, 1, (int)left);
		if (ready < 0 && errno != EINTR)
			return 0;
		if (ready <= 0)
			continue;
		ssize_t len = read(fd, buf, sizeof buf);
		if (len <= 0)
			return 0;
		for (char *q = buf; q < buf + len;) {
			struct inotify_event *ev = (struct inotify_event *)q;
			if ((ev->mask & IN_CREATE) && ev->len && strcmp(ev->name, name) == 0)
				return 1;
			q += sizeof *ev + ev->len;
		}
	}
}

static int touch(const char *in, const char *name)
{
	char path[4200];
	snprintf(path, sizeof path, "%s/%s", in, name);
	int fd = open(path, O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
	if (fd < 0)
		return -1;
	close(fd);
	return 0;
}

/* ---- inotify calls from a signal handler ---- */

static void on_usr1(int sig)
{
	(void)sig;
	int saved = errno;
	int wd = inotify_add_watch(shared_fd, sig_dir, IN_CREATE);
	int fd = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
	if (wd > 0 && fd >= 0) {
		atomic_fetch_add(&handler_ok, 1);
	} else {
		atomic_fetch_add(&handler_failed, 1);
		atomic_store(&handler_errno, errno);
	}
	if (fd >= 0)
		close(fd);
	errno = saved;
}

static void *send_signals(void *target)
{
	pthread_t main_thread = *(pthread_t *)target;
	for (int i = 0; i < SIGNALS; i++) {
		pthread_kill(main_thread, SIGUSR1);
		usleep(1000);
	}
	atomic_store(&signals_sent, 1);
	return NULL;
}

static void signal_handler_check(void)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_usr1;
	/* No SA_RESTART: the harshest case, as for a handler installed with sigaction(2) and no flags. */
	sigaction(SIGUSR1, &sa, NULL);

	pthread_t self = pthread_self(), sender;
	pthread_create(&sender, NULL, send_signals, &self);
	long calls = 0, failed = 0;
	int last_errno = 0;
	struct timespec start, now;
	clock_gettime(CLOCK_MONOTONIC, &start);
	/* The main thread stays inside the hooks while the signals land. */
	do {
		int wd = inotify_add_watch(shared_fd, main_dir, IN_CREATE | IN_DELETE);
		if (wd <= 0) {
			failed++;
			last_errno = errno;
		} else if (inotify_rm_watch(shared_fd, wd) != 0) {
			failed++;
			last_errno = errno;
		}
		calls++;
		clock_gettime(CLOCK_MONOTONIC, &now);
	} while (!atomic_load(&signals_sent) && now.tv_sec - start.tv_sec < 20);
	pthread_join(sender, NULL);
	signal(SIGUSR1, SIG_IGN);

	char detail[256];
	snprintf(detail, sizeof detail, "%d handler calls ok, %d failed (last errno %s)",
		 atomic_load(&handler_ok), atomic_load(&handler_failed),
		 strerror(atomic_load(&handler_errno)));
	check(atomic_load(&handler_failed) == 0 && atomic_load(&handler_ok) > 0, "signal-handler", detail);
	snprintf(detail, sizeof detail, "%ld add/rm pairs interrupted by signals, %ld failed (last errno %s)",
		 calls, failed, strerror(last_errno));
	check(failed == 0, "interrupted-calls", detail);
}

/* ---- fork while threads are busy in the hooks ---- */

static void *busy(void *unused)
{
	(void)unused;
	while (!atomic_load(&stop_busy)) {
		int fd = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
		if (fd < 0) {
			atomic_fetch_add(&busy_failed, 1);
			atomic_store(&busy_errno, errno);
			continue;
		}
		int wd = inotify_add_watch(fd, busy_dir, IN_CREATE);
		if (wd <= 0 || inotify_rm_watch(fd, wd) != 0) {
			atomic_fetch_add(&busy_failed, 1);
			atomic_store(&busy_errno, errno);
		}
		close(fd);
		atomic_fetch_add(&busy_calls, 1);
	}
	return NULL;
}

/* In the child of a fork: only async-signal-safe calls; the exit code says what failed. */
static void forked_child(int round)
{
	char name[64];
	/* The inherited instance takes a new watch... */
	int wd = inotify_add_watch(shared_fd, child_dir, IN_CREATE);
	if (wd <= 0)
		_exit(10);
	if (inotify_rm_watch(shared_fd, wd) != 0)
		_exit(11);
	/* ...and a new instance of the child's own works end to end. */
	int fd = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
	if (fd < 0)
		_exit(12);
	if (inotify_add_watch(fd, child_dir, IN_CREATE) <= 0)
		_exit(13);
	snprintf(name, sizeof name, "child-%d", round);
	if (touch(child_dir, name) != 0)
		_exit(14);
	if (!wait_create(fd, name, 5000))
		_exit(15);
	close(fd);
	_exit(0);
}

/* Waits up to 10 s for `pid`; kills it after that. Returns its exit code, or -1. */
static int reap(pid_t pid, const char **why)
{
	for (int i = 0; i < 1000; i++) {
		int status;
		pid_t done = waitpid(pid, &status, WNOHANG);
		if (done == pid) {
			if (WIFEXITED(status)) {
				*why = "exited";
				return WEXITSTATUS(status);
			}
			*why = "killed by a signal";
			return -1;
		}
		usleep(10000);
	}
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	*why = "still running after 10 s (deadlock?)";
	return -1;
}

static void fork_check(void)
{
	pthread_t threads[BUSY_THREADS];
	for (int i = 0; i < BUSY_THREADS; i++)
		pthread_create(&threads[i], NULL, busy, NULL);
	while (atomic_load(&busy_calls) < 20)
		usleep(1000);

	int ok = 0;
	char detail[256];
	for (int round = 0; round < FORKS; round++) {
		usleep(2000 + round * 500);
		pid_t pid = fork();
		if (pid < 0) {
			check(0, "fork", strerror(errno));
			continue;
		}
		if (pid == 0)
			forked_child(round);
		const char *why;
		int code = reap(pid, &why);
		if (code == 0) {
			ok++;
		} else {
			snprintf(detail, sizeof detail, "round %d: child %s, code %d", round, why, code);
			check(0, "fork-child", detail);
		}
	}

	/* vfork+exec while the threads keep going: the exec'd child inherits a non-CLOEXEC instance. */
	int inherited = inotify_init();
	char fd_text[16];
	snprintf(fd_text, sizeof fd_text, "%d", inherited);
	char self[4096];
	ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
	self[n > 0 ? n : 0] = '\0';
	for (int round = 0; round < 3; round++) {
		pid_t pid = vfork();
		if (pid == 0) {
			char *args[] = {self, "--exec-child", (char *)dir, fd_text, NULL};
			execv(self, args);
			_exit(127);
		}
		const char *why;
		int code = pid < 0 ? -1 : reap(pid, &why);
		snprintf(detail, sizeof detail, "round %d: exec'd child %s, code %d", round,
			 pid < 0 ? "not started" : why, code);
		check(code == 0, "vfork-exec", detail);
	}
	close(inherited);

	atomic_store(&stop_busy, 1);
	for (int i = 0; i < BUSY_THREADS; i++)
		pthread_join(threads[i], NULL);
	snprintf(detail, sizeof detail, "%d of %d forked children passed", ok, FORKS);
	check(ok == FORKS, "fork", detail);
	snprintf(detail, sizeof detail, "%ld busy loops, %ld failed (last errno %s)",
		 atomic_load(&busy_calls), atomic_load(&busy_failed), strerror(atomic_load(&busy_errno)));
	check(atomic_load(&busy_failed) == 0, "busy-threads", detail);
}

/* The exec'd vfork child: the inherited instance and a new one both work. */
static int exec_child(const char *fd_text)
{
	int fd = atoi(fd_text);
	char name[64];
	snprintf(name, sizeof name, "exec-%d", (int)getpid());
	if (strcmp(fd_kind(fd), "socket") != 0)
		return 20;
	int wd = inotify_add_watch(fd, child_dir, IN_CREATE);
	if (wd <= 0)
		return 21;
	if (touch(child_dir, name) != 0)
		return 22;
	if (!wait_create(fd, name, 5000))
		return 23;
	if (inotify_rm_watch(fd, wd) != 0)
		return 24;
	int own = inotify_init1(IN_CLOEXEC);
	if (own < 0 || inotify_add_watch(own, child_dir, IN_CREATE) <= 0)
		return 25;
	close(own);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc == 4 && strcmp(argv[1], "--exec-child") == 0) {
		dir = argv[2];
		snprintf(child_dir, sizeof child_dir, "%s/child", dir);
		return exec_child(argv[3]);
	}
	if (argc != 2) {
		fprintf(stderr, "usage: fork_safety DIR\n");
		return 2;
	}
	dir = argv[1];
	make_dir(sig_dir, "signal");
	make_dir(main_dir, "main");
	make_dir(busy_dir, "busy");
	make_dir(child_dir, "child");

	shared_fd = inotify_init1(IN_CLOEXEC);
	if (shared_fd < 0) {
		say("FAIL init %s\n", strerror(errno));
		return 1;
	}
	say("INIT %s\n", fd_kind(shared_fd));

	signal_handler_check();
	fork_check();
	say("DONE %d failed\n", failures);
	return failures ? 1 : 0;
}
