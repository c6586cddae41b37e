/*
 * inotify_script: make inotify calls one command at a time and print each return value and
 * errno, for tests that compare FakeNotify with the kernel call by call.
 *
 * Unlike inotify_client it holds several instances (and other fds) in numbered slots, never
 * reads events on its own, and answers every command with exactly one final line, so a test
 * drives it like a script and sees precisely which call returned what.
 *
 *   cc -O2 -Wall -o inotify_script inotify_script.c
 *
 * Commands (stdin, one per line) and answers (stdout, flushed per line):
 *   init SLOT               inotify_init()             OK inotify|socket   or  ERR <ERRNO>
 *   init1 SLOT FLAGS        inotify_init1(FLAGS)       FLAGS: 0, NONBLOCK, CLOEXEC joined by '|',
 *                                                      or a number
 *   open SLOT PATH          open(PATH, O_RDONLY)       OK  or  ERR <ERRNO>   (an fd that is no
 *                                                      inotify instance)
 *   socket SLOT             one end of a socketpair    (a socket that is no instance)
 *   close SLOT              close()                    OK  or  ERR <ERRNO>
 *   add FD MASK PATH        inotify_add_watch()        OK <wd>  or  ERR <ERRNO>
 *   rm FD WD                inotify_rm_watch()         OK 0  or  ERR <ERRNO>
 *   read SLOT               every event readable now, without blocking: one line each,
 *                             EVENT <wd> <MASK|NAMES> <cookie> <name or ->
 *                           then OK <count>  (or ERR <ERRNO>, or EOF if read() returned 0)
 *   quit                    exit 0
 * FD is a slot number, or raw:N for the raw descriptor N (raw:-1 for a negative fd, raw:900 for
 * one that is not open). MASK is IN_ names joined by '|', with or without IN_, or a number. PATH is the
 * rest of the line.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#define SLOTS 64

struct named_bit {
	const char *name;
	unsigned int bit;
};

static const struct named_bit event_bits[] = {
	{"IN_ACCESS", IN_ACCESS}, {"IN_MODIFY", IN_MODIFY}, {"IN_ATTRIB", IN_ATTRIB},
	{"IN_CLOSE_WRITE", IN_CLOSE_WRITE}, {"IN_CLOSE_NOWRITE", IN_CLOSE_NOWRITE},
	{"IN_OPEN", IN_OPEN}, {"IN_MOVED_FROM", IN_MOVED_FROM}, {"IN_MOVED_TO", IN_MOVED_TO},
	{"IN_CREATE", IN_CREATE}, {"IN_DELETE", IN_DELETE}, {"IN_DELETE_SELF", IN_DELETE_SELF},
	{"IN_MOVE_SELF", IN_MOVE_SELF}, {"IN_UNMOUNT", IN_UNMOUNT}, {"IN_Q_OVERFLOW", IN_Q_OVERFLOW},
	{"IN_IGNORED", IN_IGNORED}, {"IN_ISDIR", IN_ISDIR}, {NULL, 0},
};

static const struct named_bit flag_bits[] = {
	{"IN_CLOSE", IN_CLOSE}, {"IN_MOVE", IN_MOVE}, {"IN_ALL_EVENTS", IN_ALL_EVENTS},
	{"IN_ONLYDIR", IN_ONLYDIR}, {"IN_DONT_FOLLOW", IN_DONT_FOLLOW},
	{"IN_EXCL_UNLINK", IN_EXCL_UNLINK}, {"IN_MASK_CREATE", 0x10000000},
	{"IN_MASK_ADD", IN_MASK_ADD}, {"IN_ONESHOT", IN_ONESHOT},
	{"IN_NONBLOCK", IN_NONBLOCK}, {"IN_CLOEXEC", IN_CLOEXEC}, {NULL, 0},
};

static const struct named_bit errno_names[] = {
	{"EPERM", EPERM}, {"ENOENT", ENOENT}, {"EINTR", EINTR}, {"EIO", EIO},
	{"EBADF", EBADF}, {"EAGAIN", EAGAIN}, {"ENOMEM", ENOMEM}, {"EACCES", EACCES},
	{"EFAULT", EFAULT}, {"EEXIST", EEXIST}, {"ENOTDIR", ENOTDIR}, {"EISDIR", EISDIR},
	{"EINVAL", EINVAL}, {"ENFILE", ENFILE}, {"EMFILE", EMFILE}, {"ENOSPC", ENOSPC},
	{"ENAMETOOLONG", ENAMETOOLONG}, {"ENOSYS", ENOSYS}, {"ELOOP", ELOOP},
	{"ECONNREFUSED", ECONNREFUSED}, {"ESTALE", ESTALE}, {"ENOTSOCK", ENOTSOCK},
	{NULL, 0},
};

static int slots[SLOTS];

static void __attribute__((format(printf, 1, 2))) say(const char *format, ...)
{
	va_list args;
	va_start(args, format);
	vprintf(format, args);
	va_end(args);
	fflush(stdout);
}

static const char *errno_name(int err)
{
	static char unknown[16];
	for (const struct named_bit *e = errno_names; e->name; e++)
		if ((int)e->bit == err)
			return e->name;
	snprintf(unknown, sizeof unknown, "E%d", err);
	return unknown;
}

static void fail(void)
{
	say("ERR %s\n", errno_name(errno));
}

static int lookup(const struct named_bit *table, const char *name, unsigned int *bit)
{
	for (const struct named_bit *b = table; b->name; b++) {
		if (strcmp(b->name, name) == 0 || strcmp(b->name + 3, name) == 0) {
			*bit = b->bit;
			return 0;
		}
	}
	return -1;
}

/* `CREATE|IN_DELETE|0x8`; -1 on an unknown name. */
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
		if (lookup(event_bits, tok, &bit) != 0 && lookup(flag_bits, tok, &bit) != 0) {
			char *end;
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

/* A slot number (its fd) or raw:N (the number N); -1 on a malformed word. */
static int parse_fd(const char *word, int *fd)
{
	char *end;
	long n;
	if (strncmp(word, "raw:", 4) == 0) {
		n = strtol(word + 4, &end, 10);
		if (*end || end == word + 4)
			return -1;
		*fd = (int)n;
		return 0;
	}
	n = strtol(word, &end, 10);
	if (*end || end == word || n < 0 || n >= SLOTS)
		return -1;
	*fd = slots[n];
	return 0;
}

static int parse_slot(const char *word)
{
	char *end;
	long n = strtol(word, &end, 10);
	if (*end || end == word || n < 0 || n >= SLOTS)
		return -1;
	return (int)n;
}

static const char *fd_kind(int fd)
{
	struct stat st;
	if (fstat(fd, &st) != 0)
		return "unknown";
	return S_ISSOCK(st.st_mode) ? "socket" : "inotify";
}

static void read_events(int fd)
{
	char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
	int count = 0;
	for (;;) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		int ready = poll(&p, 1, 0);
		if (ready < 0) {
			if (errno == EINTR)
				continue;
			fail();
			return;
		}
		if (ready == 0 || !(p.revents & POLLIN))
			break;
		ssize_t len = read(fd, buf, sizeof buf);
		if (len == 0) {
			say("EOF\n");
			return;
		}
		if (len < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			fail();
			return;
		}
		for (char *p = buf; p < buf + len;) {
			const struct inotify_event *ev = (const struct inotify_event *)p;
			char mask[512];
			format_mask(ev->mask, mask, sizeof mask);
			say("EVENT %d %s %u %s\n", ev->wd, mask, ev->cookie,
			    ev->len && ev->name[0] ? ev->name : "-");
			count++;
			p += sizeof(struct inotify_event) + ev->len;
		}
	}
	say("OK %d\n", count);
}

/* Splits off the first word of *rest; NULL if there is none. */
static char *word(char **rest)
{
	char *w = *rest;
	while (*w == ' ')
		w++;
	if (!*w)
		return NULL;
	char *end = strchr(w, ' ');
	if (end) {
		*end = '\0';
		*rest = end + 1;
	} else {
		*rest = w + strlen(w);
	}
	return w;
}

static void run(char *line)
{
	char *rest = line;
	char *verb = word(&rest);
	if (!verb)
		return;
	if (strcmp(verb, "quit") == 0)
		exit(0);

	char *first = word(&rest);
	if (!first) {
		say("BAD %s\n", verb);
		return;
	}
	if (strcmp(verb, "init") == 0 || strcmp(verb, "init1") == 0 || strcmp(verb, "open") == 0 ||
	    strcmp(verb, "socket") == 0 || strcmp(verb, "close") == 0 || strcmp(verb, "read") == 0) {
		int slot = parse_slot(first);
		if (slot < 0) {
			say("BAD slot %s\n", first);
			return;
		}
		int fd;
		if (strcmp(verb, "init") == 0) {
			fd = inotify_init();
		} else if (strcmp(verb, "init1") == 0) {
			unsigned int flags;
			char *text = word(&rest);
			if (!text || parse_mask(text, &flags) != 0) {
				say("BAD flags\n");
				return;
			}
			fd = inotify_init1((int)flags);
		} else if (strcmp(verb, "open") == 0) {
			fd = open(rest, O_RDONLY | O_CLOEXEC);
		} else if (strcmp(verb, "socket") == 0) {
			int pair[2];
			fd = socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair);
			if (fd == 0) {
				fd = pair[0];
				slots[SLOTS - 1] = pair[1];
			}
		} else if (strcmp(verb, "close") == 0) {
			if (close(slots[slot]) != 0) {
				fail();
				return;
			}
			slots[slot] = -1;
			say("OK\n");
			return;
		} else {
			read_events(slots[slot]);
			return;
		}
		if (fd < 0) {
			fail();
			return;
		}
		slots[slot] = fd;
		if (strcmp(verb, "init") == 0 || strcmp(verb, "init1") == 0)
			say("OK %s\n", fd_kind(fd));
		else
			say("OK\n");
		return;
	}

	int fd;
	if (parse_fd(first, &fd) != 0) {
		say("BAD fd %s\n", first);
		return;
	}
	if (strcmp(verb, "add") == 0) {
		unsigned int mask;
		char *text = word(&rest);
		if (!text || parse_mask(text, &mask) != 0) {
			say("BAD mask\n");
			return;
		}
		int wd = inotify_add_watch(fd, rest, mask);
		if (wd < 0)
			fail();
		else
			say("OK %d\n", wd);
	} else if (strcmp(verb, "rm") == 0) {
		char *text = word(&rest);
		if (!text) {
			say("BAD wd\n");
			return;
		}
		if (inotify_rm_watch(fd, atoi(text)) != 0)
			fail();
		else
			say("OK 0\n");
	} else {
		say("BAD %s\n", verb);
	}
}

int main(void)
{
	char line[8192];
	for (int i = 0; i < SLOTS; i++)
		slots[i] = -1;
	say("READY\n");
	while (fgets(line, sizeof line, stdin)) {
		line[strcspn(line, "\n")] = '\0';
		run(line);
	}
	return 0;
}
