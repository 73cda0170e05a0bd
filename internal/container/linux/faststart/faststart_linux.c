//go:build linux && cgo

/*
 * knast faststart: `knast start ID` without starting the Go runtime.
 *
 * A start is one handshake: open the container's exec fifo for reading, which
 * releases the init blocked opening it for writing, and read its answer ("0",
 * then EOF when the user process is exec'd). The Go runtime of a 20 MB binary
 * costs several times that handshake, so this constructor does it before the
 * runtime starts, and exits, when nothing else is to be done:
 *
 *   - the command line is `knast [global flags] start ID` with global flags
 *     the Go command line accepts and that need nothing from Go (--debug and
 *     --systemd-cgroup are left to Go);
 *   - the state dir holds the marker "created" (see container.startMarker),
 *     which create writes after the container is recorded as created, and
 *     only for a container without poststart hooks;
 *   - the init named in the marker is alive with the recorded start time.
 *
 * Anything else returns at once, before reading the fifo, and the Go command
 * does the whole start (and gives the errors). When the fifo was read but the
 * answer is not a plain success (an exec error after the "0", or no answer at
 * all because a concurrent start took it), the answer is handed over in a
 * close-on-exec memfd named "knast-start-answer" and Go reports it as it
 * reports its own handshake (faststart.Answer, Manager.FinishStart).
 */

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define FS_DEFAULT_ROOT "/run/knast"
#define FS_MAX_ID 1024
#define FS_MAX_ANSWER 65536
#define FS_POLL_MS 20
/* The names in the state dir, as package container names them. */
#define FASTSTART_MARKER "created"
#define FASTSTART_FIFO "exec.fifo"
/* The init's name until it execs (nsenter_name in package nsenter). */
#define FS_INIT_COMM "knast:[init]"

struct faststart_args {
	const char *root, *log, *id;
};

/* fs_value matches "--name VALUE" or "--name=VALUE" at argv[*i]; it advances
 * *i past the flag and returns 1, returns 0 when argv[*i] is another flag,
 * and -1 when the value is missing. */
static int fs_value(int argc, char **argv, int *i, const char *name, const char **val)
{
	const char *a = argv[*i];
	size_t n = strlen(name);

	if (strncmp(a, "--", 2) != 0 || strncmp(a + 2, name, n) != 0)
		return 0;
	if (a[2 + n] == '=') {
		*val = a + 3 + n;
		*i += 1;
		return 1;
	}
	if (a[2 + n] != '\0')
		return 0;
	if (*i + 1 >= argc)
		return -1;
	*val = argv[*i + 1];
	*i += 2;
	return 1;
}

static int faststart_valid_id(const char *id)
{
	size_t n = strlen(id);

	if (n == 0 || n > FS_MAX_ID || strcmp(id, ".") == 0 || strcmp(id, "..") == 0)
		return 0;
	for (const char *c = id; *c; c++) {
		if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') ||
		      *c == '_' || *c == '+' || *c == '-' || *c == '.'))
			return 0;
	}
	return 1;
}

static int faststart_parse(int argc, char **argv, struct faststart_args *out)
{
	const char *logfmt = "text", *rootless = "auto", *ignored;
	int i = 1;

	out->root = FS_DEFAULT_ROOT;
	out->log = NULL;
	out->id = NULL;
	while (i < argc && argv[i][0] == '-') {
		int r;

		if ((r = fs_value(argc, argv, &i, "root", &out->root)) ||
		    (r = fs_value(argc, argv, &i, "log-format", &logfmt)) ||
		    (r = fs_value(argc, argv, &i, "log", &out->log)) ||
		    (r = fs_value(argc, argv, &i, "rootless", &rootless)) ||
		    (r = fs_value(argc, argv, &i, "criu", &ignored)) ||
		    (r = fs_value(argc, argv, &i, "storage", &ignored))) {
			if (r < 0)
				return 0;
			continue;
		}
		return 0; /* --debug, --help, --version, "--", anything unknown */
	}
	/* The values Go would refuse: let Go say so. */
	if (strcmp(logfmt, "text") != 0 && strcmp(logfmt, "json") != 0)
		return 0;
	if (strcmp(rootless, "auto") != 0 && strcmp(rootless, "true") != 0 && strcmp(rootless, "false") != 0)
		return 0;
	if (out->root[0] == '\0' || (out->log != NULL && out->log[0] == '\0'))
		return 0;
	if (argc != i + 2 || strcmp(argv[i], "start") != 0 || !faststart_valid_id(argv[i + 1]))
		return 0;
	out->id = argv[i + 1];
	return 1;
}

static int faststart_parse_marker(const char *s, long *pid, unsigned long long *start)
{
	char *end;

	errno = 0;
	*pid = strtol(s, &end, 10);
	if (errno != 0 || end == s || *end != ' ' || *pid <= 0)
		return 0;
	s = end + 1;
	*start = strtoull(s, &end, 10);
	if (errno != 0 || end == s || (*end != '\n' && *end != '\0'))
		return 0;
	return 1;
}

static int faststart_parse_stat(const char *s, char *state, unsigned long long *start, int *waiting)
{
	const char *open = strchr(s, '('), *p = strrchr(s, ')');
	int field = 2;

	/* comm (field 2) may hold spaces and ')': count from the last ')'. */
	if (open == NULL || p == NULL || p < open)
		return 0;
	/* The init is named FS_INIT_COMM until it execs the user process. */
	*waiting = (size_t)(p - open - 1) == strlen(FS_INIT_COMM) && strncmp(open + 1, FS_INIT_COMM, strlen(FS_INIT_COMM)) == 0;
	p++;
	while (*p) {
		while (*p == ' ')
			p++;
		if (*p == '\0' || *p == '\n')
			break;
		field++;
		if (field == 3)
			*state = *p;
		if (field == 22) {
			char *end;

			errno = 0;
			*start = strtoull(p, &end, 10);
			return errno == 0 && end != p;
		}
		while (*p && *p != ' ')
			p++;
	}
	return 0;
}

/* fs_read reads up to size-1 bytes of a small file and NUL-terminates them. */
static int fs_read(int dirfd, const char *name, char *buf, size_t size)
{
	ssize_t n;
	int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);

	if (fd < 0)
		return -1;
	do
		n = read(fd, buf, size - 1);
	while (n < 0 && errno == EINTR);
	close(fd);
	if (n < 0)
		return -1;
	buf[n] = '\0';
	return 0;
}

/* fs_init returns FS_GONE unless the init is alive (not a zombie) and started
 * at start, FS_EXECD once it runs the user process, FS_WAITING before. */
enum { FS_GONE, FS_EXECD, FS_WAITING };

static int fs_init(long pid, unsigned long long start)
{
	char path[64], buf[1024], state = 0;
	unsigned long long got = 0;
	int waiting = 0;

	snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
	if (fs_read(AT_FDCWD, path, buf, sizeof(buf)) < 0 || !faststart_parse_stat(buf, &state, &got, &waiting))
		return FS_GONE;
	if (got != start || state == 'Z' || state == 'X' || state == 'x')
		return FS_GONE;
	return waiting ? FS_WAITING : FS_EXECD;
}

/* fs_hand_over leaves the answer for the Go command in a close-on-exec memfd. */
static int fs_hand_over(const char *answer, size_t n)
{
	int fd = memfd_create("knast-start-answer", MFD_CLOEXEC);

	if (fd < 0)
		return -1;
	while (n > 0) {
		ssize_t w = write(fd, answer, n);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			close(fd);
			return -1;
		}
		answer += w;
		n -= (size_t)w;
	}
	return 0; /* left open for Go */
}

__attribute__((constructor))
static void faststart(int argc, char **argv, char **envp)
{
	struct faststart_args a;
	char marker[128], *answer;
	long pid;
	unsigned long long start;
	size_t n = 0;
	int rootfd, dirfd, fifo, eof = 0;
	struct stat st;

	(void)envp;
	if (argc < 3 || getenv("_KNAST_NSENTER") != NULL || !faststart_parse(argc, argv, &a))
		return;
	if (a.log != NULL) {
		/* Go creates the log file for every command; containerd expects it. */
		int fd = open(a.log, O_CREAT | O_WRONLY | O_APPEND | O_CLOEXEC, 0644);
		if (fd < 0)
			return;
		close(fd);
	}
	rootfd = open(a.root, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (rootfd < 0)
		return;
	dirfd = openat(rootfd, a.id, O_PATH | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
	close(rootfd);
	if (dirfd < 0)
		return;
	if (fs_read(dirfd, FASTSTART_MARKER, marker, sizeof(marker)) < 0 ||
	    !faststart_parse_marker(marker, &pid, &start) || fs_init(pid, start) != FS_WAITING) {
		close(dirfd);
		return;
	}
	fifo = openat(dirfd, FASTSTART_FIFO, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOFOLLOW);
	if (fifo < 0 || fstat(fifo, &st) < 0 || !S_ISFIFO(st.st_mode) || (answer = malloc(FS_MAX_ANSWER)) == NULL) {
		if (fifo >= 0)
			close(fifo);
		close(dirfd);
		return;
	}
	for (;;) {
		struct pollfd p = {.fd = fifo, .events = POLLIN};
		int r = poll(&p, 1, FS_POLL_MS);

		if (r < 0 && errno != EINTR)
			break;
		if (r > 0) {
			ssize_t got = read(fifo, answer + n, FS_MAX_ANSWER - n);

			if (got > 0) {
				n += (size_t)got;
				if (n == FS_MAX_ANSWER)
					break;
				continue;
			}
			if (got < 0 && (errno == EAGAIN || errno == EINTR))
				continue;
			eof = got == 0; /* the init exec'd (the fifo is close-on-exec) or exited */
			break;
		}
		if (r == 0) {
			/* A reader that opened the fifo after the init's writer did
			 * (another start released the init) is never told of the
			 * writer's close: look at the init instead. Once it has exec'd
			 * or exited, what is in the fifo is all there is. */
			int init = fs_init(pid, start);

			if (init == FS_WAITING)
				continue;
			for (;;) {
				ssize_t got = read(fifo, answer + n, FS_MAX_ANSWER - n);

				if (got <= 0)
					break;
				n += (size_t)got;
				if (n == FS_MAX_ANSWER)
					break;
			}
			if (n == 0 && init == FS_GONE) {
				/* Died before answering: nothing was read, Go reports it. */
				close(fifo);
				close(dirfd);
				free(answer);
				return;
			}
			eof = 1;
			break;
		}
	}
	close(fifo);
	if (n == 0 && !eof) {
		/* A poll or read error before any answer: Go does the start. */
		close(dirfd);
		free(answer);
		return;
	}
	if (n == 1 && answer[0] == '0') {
		/* As Go's start: with the fifo gone and the init alive, status reads "running". */
		unlinkat(dirfd, FASTSTART_FIFO, 0);
		unlinkat(dirfd, FASTSTART_MARKER, 0);
		_exit(0);
	}
	if (fs_hand_over(answer, n) < 0) {
		/* The answer is read and cannot reach Go: say so rather than let Go wait for it again. */
		static const char msg[] = "knast: start: cannot hand over the init's answer to the exec fifo\n";
		(void)!write(2, msg, sizeof(msg) - 1);
		_exit(1);
	}
	free(answer);
	close(dirfd);
}
