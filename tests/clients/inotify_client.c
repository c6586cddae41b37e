/*
 * inotify_client: watch paths with libc's inotify functions and print every event, one line each.
 *
 * The end-to-end tests drive it (through LD_PRELOAD=libfakenotify.so or not), and it is a handy
 * tool for users: it shows whether an inotify instance is real or served by fakenotifyd, and
 * prints the raw masks, cookies and names an application would see.
 *
 *   cc -O2 -Wall -o inotify_client inotify_client.c -lpthread
 *   musl-gcc -O2 -Wall -o inotify_client inotify_client.c      (dynamic, so LD_PRELOAD works)
 *
 * Usage: inotify_client [-n] [-i] [-t SECONDS] [MASK:PATH...]
 *   MASK   IN_ names joined by '|', with or without the IN_ prefix (CREATE|DELETE|ONLYDIR), or
 *          `all` for IN_ALL_EVENTS; numbers (0x100) are accepted too
 *   -n     inotify_init1(IN_NONBLOCK | IN_CLOEXEC) and a poll() loop; the default is a blocking
 *          read() with a 4096-byte buffer on its own thread, commands read on another
 *   -i     use inotify_init() instead of inotify_init1() (blocking mode only)
 *   -t S   exit 0 after S seconds
 *
 * Output (stdout, flushed after each line):
 *   INIT <fd> inotify|socket|other    what the inotify fd is: `socket` means fakenotifyd serves it
 *   WATCH <wd> <path>                 or  ERROR add_watch <path> <ERRNO>
 *   READY                             after the command-line watches are added
 *   EVENT <wd> <MASK|NAMES> <cookie> <name or ->
 *   RM <wd> OK                        or  RM <wd> <ERRNO>
 *   EOF                               read() returned 0 (real inotify never does this)
 *   ERROR read <ERRNO>
 *
 * Commands (stdin, one per line):
 *   add MASK:PATH    add a watch (prints a WATCH or ERROR line)
 *   rm WD            inotify_rm_watch (prints an RM line)
 *   pause            stop reading the inotify fd (precise in -n mode; in blocking mode it takes
 *                    effect after the read in progress returns)
 *   resume           read again
 *   quit             exit 0
 *
 * SIGTERM and SIGINT exit 0.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

struct named_bit {
	const char *name;
	unsigned int bit;
};

/* Event bits in the order inotify(7) lists them; printed in this order. */
static const struct named_bit event_bits[] = {
	{"IN_ACCESS", IN_ACCESS},
	{"IN_MODIFY", IN_MODIFY},
	{"IN_ATTRIB", IN_ATTRIB},
	{"IN_CLOSE_WRITE", IN_CLOSE_WRITE},
	{"IN_CLOSE_NOWRITE", IN_CLOSE_NOWRITE},
	{"IN_OPEN", IN_OPEN},
	{"IN_MOVED_FROM", IN_MOVED_FROM},
	{"IN_MOVED_TO", IN_MOVED_TO},
	{"IN_CREATE", IN_CREATE},
	{"IN_DELETE", IN_DELETE},
	{"IN_DELETE_SELF", IN_DELETE_SELF},
	{"IN_MOVE_SELF", IN_MOVE_SELF},
	{"IN_UNMOUNT", IN_UNMOUNT},
	{"IN_Q_OVERFLOW", IN_Q_OVERFLOW},
	{"IN_IGNORED", IN_IGNORED},
	{"IN_ISDIR", IN_ISDIR},
	{NULL, 0},
};

/* Names accepted in a MASK argument besides the event bits: add_watch flags and aliases. */
static const struct named_bit extra_bits[] = {
	{"IN_CLOSE", IN_CLOSE},
	{"IN_MOVE", IN_MOVE},
	{"IN_ALL_EVENTS", IN_ALL_EVENTS},
	{"IN_ONLYDIR", IN_ONLYDIR},
	{"IN_DONT_FOLLOW", IN_DONT_FOLLOW},
	{"IN_EXCL_UNLINK", IN_EXCL_UNLINK},
	{"IN_MASK_CREATE", 0x10000000},
	{"IN_MASK_ADD", IN_MASK_ADD},
	{"IN_ONESHOT", IN_ONESHOT},
	{NULL, 0},
};

static const struct named_bit errno_names[] = {
	{"EPERM", EPERM}, {"ENOENT", ENOENT}, {"EINTR", EINTR}, {"EIO", EIO},
	{"EBADF", EBADF}, {"EAGAIN", EAGAIN}, {"ENOMEM", ENOMEM}, {"EACCES", EACCES},
	{"EFAULT", EFAULT}, {"EEXIST", EEXIST}, {"ENOTDIR", ENOTDIR}, {"EISDIR", EISDIR},
	{"EINVAL", EINVAL}, {"ENFILE", ENFILE}, {"EMFILE", EMFILE}, {"ENOSPC", ENOSPC},
	{"ENAMETOOLONG", ENAMETOOLONG}, {"ENOSYS", ENOSYS}, {"ELOOP", ELOOP},
	{"ECONNREFUSED", ECONNREFUSED}, {"ESTALE", ESTALE},
	{NULL, 0},
};

static int inotify_fd = -1;
static int paused;
static pthread_mutex_t pause_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t pause_changed = PTHREAD_COND_INITIALIZER;

/* One printf per line and a flush, so lines from the two threads never interleave. */
#define say(...)                         \
	do {                                 \
		flockfile(stdout);               \
		printf(__VA_ARGS__);             \
		fflush(stdout);                  \
		funlockfile(stdout);             \
	} while (0)

static const char *errno_name(int err)
{
	static __thread char unknown[16];
	for (const struct named_bit *e = errno_names; e->name; e++)
		if ((int)e->bit == err)
			return e->name;
	snprintf(unknown, sizeof unknown, "E%d", err);
	return unknown;
}

static int lookup_bit(const struct named_bit *table, const char *name, unsigned int *bit)
{
	for (const struct named_bit *b = table; b->name; b++) {
		if (strcmp(b->name, name) == 0 || strcmp(b->name + 3, name) == 0) {
			*bit = b->bit;
			return 0;
		}
	}
	return -1;
}

/* Parses `CREATE|IN_DELETE|0x8`, `all`; returns -1 on an unknown name. */
static int parse_mask(const char *text, unsigned int *mask)
{
	char buf[512];
	char *save = NULL;
	if (strlen(text) >= sizeof buf)
		return -1;
	strcpy(buf, text);
	*mask = 0;
	for (char *tok = strtok_r(buf, "|", &save); tok; tok = strtok_r(NULL, "|", &save)) {
		unsigned int bit;
		char *end;
		if (strcmp(tok, "all") == 0) {
			bit = IN_ALL_EVENTS;
		} else if (lookup_bit(event_bits, tok, &bit) != 0 && lookup_bit(extra_bits, tok, &bit) != 0) {
			errno = 0;
			unsigned long n = strtoul(tok, &end, 0);
			if (errno || *end || end == tok || n > UINT_MAX)
				return -1;
			bit = (unsigned int)n;
		}
		*mask |= bit;
	}
	return 0;
}

static void format_mask(unsigned int mask, char *out, size_t size)
{
	size_t used = 0;
	out[0] = '\0';
	for (const struct named_bit *b = event_bits; b->name; b++) {
		if (mask & b->bit) {
			used += snprintf(out + used, size - used, "%s%s", used ? "|" : "", b->name);
			mask &= ~b->bit;
			if (used >= size)
				return;
		}
	}
	if (mask || used == 0)
		snprintf(out + used, size - used, "%s0x%x", used ? "|" : "", mask);
}

/* `add` and the command line: MASK:PATH (the path may itself contain ':'). */
static void add_watch(const char *spec)
{
	unsigned int mask;
	char mask_text[512];
	const char *colon = strchr(spec, ':');
	if (!colon || (size_t)(colon - spec) >= sizeof mask_text) {
		say("ERROR add_watch %s EINVAL\n", spec);
		return;
	}
	memcpy(mask_text, spec, colon - spec);
	mask_text[colon - spec] = '\0';
	const char *path = colon + 1;
	if (parse_mask(mask_text, &mask) != 0) {
		say("ERROR add_watch %s bad-mask:%s\n", path, mask_text);
		return;
	}
	int wd = inotify_add_watch(inotify_fd, path, mask);
	if (wd < 0)
		say("ERROR add_watch %s %s\n", path, errno_name(errno));
	else
		say("WATCH %d %s\n", wd, path);
}

static void set_paused(int value)
{
	pthread_mutex_lock(&pause_lock);
	paused = value;
	pthread_cond_broadcast(&pause_changed);
	pthread_mutex_unlock(&pause_lock);
}

/* Runs one stdin command line (without its newline). */
static void run_command(char *line)
{
	if (strncmp(line, "add ", 4) == 0) {
		add_watch(line + 4);
	} else if (strncmp(line, "rm ", 3) == 0) {
		int wd = atoi(line + 3);
		if (inotify_rm_watch(inotify_fd, wd) == 0)
			say("RM %d OK\n", wd);
		else
			say("RM %d %s\n", wd, errno_name(errno));
	} else if (strcmp(line, "pause") == 0) {
		set_paused(1);
		say("PAUSED\n");
	} else if (strcmp(line, "resume") == 0) {
		set_paused(0);
		say("RESUMED\n");
	} else if (strcmp(line, "quit") == 0) {
		_exit(0);
	} else if (line[0]) {
		say("ERROR command %s\n", line);
	}
}

static void print_events(const char *buf, ssize_t len)
{
	const char *p = buf;
	while (p < buf + len) {
		const struct inotify_event *ev = (const struct inotify_event *)p;
		char mask[512];
		format_mask(ev->mask, mask, sizeof mask);
		say("EVENT %d %s %u %s\n", ev->wd, mask, ev->cookie, ev->len && ev->name[0] ? ev->name : "-");
		p += sizeof(struct inotify_event) + ev->len;
	}
}

/* Returns 0 to keep reading, -1 once the fd is done (EOF or a hard error). */
static int read_once(void)
{
	char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
	ssize_t len = read(inotify_fd, buf, sizeof buf);
	if (len > 0) {
		print_events(buf, len);
		return 0;
	}
	if (len == 0) {
		say("EOF\n");
		return -1;
	}
	if (errno == EAGAIN || errno == EINTR)
		return 0;
	say("ERROR read %s\n", errno_name(errno));
	return -1;
}

static void *blocking_reader(void *unused)
{
	(void)unused;
	for (;;) {
		pthread_mutex_lock(&pause_lock);
		while (paused)
			pthread_cond_wait(&pause_changed, &pause_lock);
		pthread_mutex_unlock(&pause_lock);
		if (read_once() != 0)
			return NULL;
	}
}

/* Blocking mode: a reader thread blocks in read(); this thread runs stdin commands. */
static void run_blocking(void)
{
	pthread_t reader;
	char line[4096];
	if (pthread_create(&reader, NULL, blocking_reader, NULL) != 0) {
		say("ERROR pthread_create\n");
		exit(1);
	}
	while (fgets(line, sizeof line, stdin)) {
		line[strcspn(line, "\n")] = '\0';
		run_command(line);
	}
	/* stdin closed: keep reading events until a signal or the timeout. */
	pthread_join(reader, NULL);
}

/* Nonblocking mode: one thread polls stdin and the inotify fd. */
static void run_polling(void)
{
	char pending[4096];
	size_t have = 0;
	int stdin_open = 1;
	for (;;) {
		struct pollfd fds[2] = {
			{.fd = stdin_open ? 0 : -1, .events = POLLIN},
			{.fd = paused ? -1 : inotify_fd, .events = POLLIN},
		};
		if (poll(fds, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			say("ERROR poll %s\n", errno_name(errno));
			exit(1);
		}
		if (fds[1].revents & (POLLIN | POLLERR | POLLHUP)) {
			if (read_once() != 0)
				exit(1);
		}
		if (fds[0].revents & (POLLIN | POLLHUP)) {
			ssize_t n = read(0, pending + have, sizeof pending - 1 - have);
			if (n <= 0) {
				stdin_open = 0;
				continue;
			}
			have += n;
			char *nl;
			while ((nl = memchr(pending, '\n', have))) {
				*nl = '\0';
				run_command(pending);
				have -= nl + 1 - pending;
				memmove(pending, nl + 1, have);
			}
			if (have == sizeof pending - 1)
				have = 0; /* an overlong line: drop it */
		}
	}
}

static void on_exit_signal(int sig)
{
	(void)sig;
	_exit(0);
}

static void usage(void)
{
	fprintf(stderr, "usage: inotify_client [-n] [-i] [-t SECONDS] [MASK:PATH...]\n");
	exit(2);
}

static const char *fd_kind(int fd)
{
	struct stat st;
	if (fstat(fd, &st) != 0)
		return "unknown";
	if (S_ISSOCK(st.st_mode))
		return "socket";
	/* Real inotify fds are anonymous inodes: neither regular, directory nor socket. */
	if (!S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode) && !S_ISFIFO(st.st_mode))
		return "inotify";
	return "other";
}

int main(int argc, char **argv)
{
	int nonblocking = 0, plain_init = 0, opt;
	unsigned int seconds = 0;
	while ((opt = getopt(argc, argv, "nit:")) != -1) {
		switch (opt) {
		case 'n': nonblocking = 1; break;
		case 'i': plain_init = 1; break;
		case 't': seconds = (unsigned int)strtoul(optarg, NULL, 10); break;
		default: usage();
		}
	}
	if (plain_init && nonblocking)
		usage();

	signal(SIGTERM, on_exit_signal);
	signal(SIGINT, on_exit_signal);
	signal(SIGALRM, on_exit_signal);
	signal(SIGPIPE, SIG_IGN);

	inotify_fd = plain_init ? inotify_init() : inotify_init1(nonblocking ? IN_NONBLOCK | IN_CLOEXEC : IN_CLOEXEC);
	if (inotify_fd < 0) {
		say("ERROR init %s\n", errno_name(errno));
		return 1;
	}
	say("INIT %d %s\n", inotify_fd, fd_kind(inotify_fd));
	for (int i = optind; i < argc; i++)
		add_watch(argv[i]);
	say("READY\n");
	if (seconds)
		alarm(seconds);

	if (nonblocking)
		run_polling();
	else
		run_blocking();
	return 0;
}
