//go:build linux && cgo

/*
 * knast nsenter: join and create namespaces before the Go runtime starts.
 *
 * The constructor below runs in every process of a binary that links this
 * package and returns at once unless $_KNAST_NSENTER is set (linux.Spawn sets
 * it for the re-executed child). Then it reads:
 *
 *   _KNAST_SYNCFD          child end of the sync socket (SOCK_STREAM)
 *   _KNAST_JOIN            "type=path" lines, '\n'-separated; types: user,
 *                          mnt|mount, pid, net|network, ipc, uts, cgroup, time
 *   _KNAST_UNSHARE         decimal CLONE_NEW* flags to create
 *   _KNAST_TIMEOFFSETS     text for /proc/self/timens_offsets
 *   _KNAST_SETGROUPS_DENY  "1": write "deny" to /proc/self/setgroups in a
 *                          new user namespace before asking for the maps
 *   _KNAST_CGROUP_V1       cgroup v1 directories, '\n'-separated, to join
 *   _KNAST_GATE            "1": wait for the parent's "G\n" before anything
 *                          else (it finishes the cgroups meanwhile)
 *
 * and then: closes every fd above the sync fd (the memfd the binary was
 * executed from, anything inherited by accident); joins the v1 cgroups by
 * writing 0 to each "tasks" file (we are still one thread, so this moves the
 * whole process, and a thread moving itself skips the global threadgroup
 * lock whose RCU grace period makes a parent's cgroup.procs write slow);
 * opens all join paths; setns
 * user first, mnt last; unshare(CLONE_NEWUSER) and waits for the parent to
 * write the id maps; unshare the rest; writes the time offsets; forks when a
 * pid namespace was joined or created or a time namespace was created (both
 * only apply to children); reports the final pid; lets Go start. The final
 * process has no parent-death signal (see below).
 *
 * Wire format on the sync socket, both directions: one tag byte, a payload
 * without '\n', then '\n'.
 *
 *   child -> parent  "U\n"        new user namespace exists: write the maps
 *                    "P<pid>\n"   final process pid as the parent sees it;
 *                                 the last message of the C phase
 *                    "E<text>\n"  error; the process exits with status 1
 *   parent -> child  "G\n"        gate open (only with _KNAST_GATE)
 *                    "A\n"        maps written
 *
 * All variables but _KNAST_SYNCFD are removed from the environment (and their
 * text wiped) so they never reach the container; linux.ChildSync removes
 * _KNAST_SYNCFD. Nothing here allocates after the fork or relies on state
 * outside the constructor's own stack.
 */

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef CLONE_NEWCGROUP
#define CLONE_NEWCGROUP 0x02000000
#endif
#ifndef CLONE_NEWTIME
#define CLONE_NEWTIME 0x00000080
#endif
#ifndef SYS_close_range
#define SYS_close_range 436
#endif

#define NSENTER_MAXJOIN 16

struct nsenter_type {
	const char *name;  /* canonical name, used in messages */
	const char *alias; /* runtime-spec spelling */
	int flag;
};

static const struct nsenter_type nsenter_types[] = {
	{"user", "user", CLONE_NEWUSER},
	{"mnt", "mount", CLONE_NEWNS},
	{"pid", "pid", CLONE_NEWPID},
	{"net", "network", CLONE_NEWNET},
	{"ipc", "ipc", CLONE_NEWIPC},
	{"uts", "uts", CLONE_NEWUTS},
	{"cgroup", "cgroup", CLONE_NEWCGROUP},
	{"time", "time", CLONE_NEWTIME},
};

struct nsenter_join {
	const struct nsenter_type *type;
	const char *path;
	int fd;
};

static int nsenter_write_all(int fd, const char *buf, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, buf, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

/* nsenter_fail reports "E<message>: <strerror(errno)>\n" (errno part only
 * when with_errno) and exits. */
__attribute__((noreturn, format(printf, 3, 4)))
static void nsenter_fail(int syncfd, int with_errno, const char *fmt, ...)
{
	char buf[1024];
	int saved = errno;
	size_t n;
	va_list ap;

	buf[0] = 'E';
	va_start(ap, fmt);
	vsnprintf(buf + 1, sizeof(buf) - 1, fmt, ap);
	va_end(ap);
	n = strlen(buf);
	if (with_errno)
		snprintf(buf + n, sizeof(buf) - n, ": %s", strerror(saved));
	n = strlen(buf);
	if (n > sizeof(buf) - 2)
		n = sizeof(buf) - 2;
	for (size_t i = 1; i < n; i++)
		if (buf[i] == '\n')
			buf[i] = ' ';
	buf[n++] = '\n';
	if (syncfd >= 0)
		(void)nsenter_write_all(syncfd, buf, n);
	else
		(void)nsenter_write_all(2, buf + 1, n - 1);
	_exit(1);
}

/* nsenter_take returns a copy of $name and removes it from the environment,
 * wiping its text so /proc/<pid>/environ does not show it either. */
static char *nsenter_take(const char *name)
{
	char *v = getenv(name), *copy;

	if (v == NULL)
		return NULL;
	copy = strdup(v);
	if (copy == NULL)
		nsenter_fail(-1, 1, "nsenter: copy $%s", name);
	unsetenv(name);
	memset(v - strlen(name) - 1, 0, strlen(name) + 1 + strlen(v));
	return copy;
}

static const struct nsenter_type *nsenter_lookup(const char *name)
{
	for (size_t i = 0; i < sizeof(nsenter_types) / sizeof(nsenter_types[0]); i++)
		if (strcmp(name, nsenter_types[i].name) == 0 || strcmp(name, nsenter_types[i].alias) == 0)
			return &nsenter_types[i];
	return NULL;
}

/* nsenter_parse_join splits "type=path\n..." in place into joins[]. */
static int nsenter_parse_join(int syncfd, char *s, struct nsenter_join *joins)
{
	int n = 0;
	char *line, *save = NULL;

	for (line = strtok_r(s, "\n", &save); line != NULL; line = strtok_r(NULL, "\n", &save)) {
		char *eq = strchr(line, '=');
		if (eq == NULL || eq[1] == '\0')
			nsenter_fail(syncfd, 0, "nsenter: bad join entry %s", line);
		*eq = '\0';
		if (n == NSENTER_MAXJOIN)
			nsenter_fail(syncfd, 0, "nsenter: more than %d namespaces to join", NSENTER_MAXJOIN);
		joins[n].type = nsenter_lookup(line);
		if (joins[n].type == NULL)
			nsenter_fail(syncfd, 0, "nsenter: unknown namespace type %s", line);
		joins[n].path = eq + 1;
		joins[n].fd = -1;
		n++;
	}
	return n;
}

static void nsenter_flag_names(int flags, char *buf, size_t size)
{
	buf[0] = '\0';
	for (size_t i = 0; i < sizeof(nsenter_types) / sizeof(nsenter_types[0]); i++) {
		if (!(flags & nsenter_types[i].flag))
			continue;
		if (buf[0] != '\0')
			strncat(buf, "+", size - strlen(buf) - 1);
		strncat(buf, nsenter_types[i].name, size - strlen(buf) - 1);
	}
}

/* nsenter_send writes "<tag>\n", or "<tag><value>\n" when with_value. */
static int nsenter_send(int syncfd, char tag, long value, int with_value)
{
	char buf[32];
	int n;

	if (with_value)
		n = snprintf(buf, sizeof(buf), "%c%ld\n", tag, value);
	else
		n = snprintf(buf, sizeof(buf), "%c\n", tag);
	return nsenter_write_all(syncfd, buf, (size_t)n);
}

/* nsenter_wait_ack blocks until the parent sends "<tag>\n". */
static void nsenter_wait_ack(int syncfd, char tag)
{
	char buf[2];
	size_t got = 0;

	while (got < sizeof(buf)) {
		ssize_t n = read(syncfd, buf + got, sizeof(buf) - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			nsenter_fail(syncfd, 1, "nsenter: read %c from parent", tag);
		if (n == 0)
			_exit(1); /* parent gone */
		got += (size_t)n;
	}
	if (buf[0] != tag || buf[1] != '\n')
		nsenter_fail(syncfd, 0, "nsenter: unexpected message from parent (tag %c)", buf[0]);
}

static void nsenter_write_proc(int syncfd, int procfd, const char *name, const char *data)
{
	int fd = openat(procfd, name, O_WRONLY | O_CLOEXEC);
	size_t len = strlen(data);

	if (fd < 0)
		nsenter_fail(syncfd, 1, "open /proc/%s", name);
	if (write(fd, data, len) != (ssize_t)len)
		nsenter_fail(syncfd, 1, "write /proc/%s", name);
	close(fd);
}

/* nsenter_join_cgroups writes 0 (this thread) to <dir>/tasks for every
 * '\n'-separated dir in list, which it modifies. */
static void nsenter_join_cgroups(int syncfd, char *list)
{
	char *dir, *save = NULL, path[4096];

	for (dir = strtok_r(list, "\n", &save); dir != NULL; dir = strtok_r(NULL, "\n", &save)) {
		int fd;

		if ((size_t)snprintf(path, sizeof(path), "%s/tasks", dir) >= sizeof(path))
			nsenter_fail(syncfd, 0, "cgroup path too long: %s", dir);
		fd = open(path, O_WRONLY | O_CLOEXEC);
		if (fd < 0)
			nsenter_fail(syncfd, 1, "join cgroup: open %s", path);
		if (write(fd, "0", 1) != 1)
			nsenter_fail(syncfd, 1, "join cgroup: write %s", path);
		close(fd);
	}
}

/* nsenter_in_pass says whether a namespace is joined in the given pass:
 * user first (it grants the capabilities over the namespaces it owns), mnt
 * last (it changes what paths mean), the rest in between. */
static int nsenter_in_pass(int pass, int flag)
{
	switch (pass) {
	case 0:
		return flag == CLONE_NEWUSER;
	case 1:
		return flag != CLONE_NEWUSER && flag != CLONE_NEWNS;
	default:
		return flag == CLONE_NEWNS;
	}
}

/* nsenter_same_userns reports whether fd is our own user namespace, which
 * setns refuses with EINVAL although there is nothing to do. */
static int nsenter_same_userns(int fd)
{
	struct stat a, b;

	return fstat(fd, &a) == 0 && stat("/proc/self/ns/user", &b) == 0 && a.st_dev == b.st_dev &&
	       a.st_ino == b.st_ino;
}

/* nsenter_rearm_pdeathsig restores the parent-death signal, which every
 * credential change clears. */
static void nsenter_rearm_pdeathsig(int syncfd, int pdeathsig, pid_t ppid)
{
	if (pdeathsig > 0) {
		if (prctl(PR_SET_PDEATHSIG, pdeathsig, 0, 0, 0) < 0)
			nsenter_fail(syncfd, 1, "prctl PR_SET_PDEATHSIG");
		if (getppid() != ppid)
			_exit(1); /* the parent died before the signal was re-armed */
	}
}

/* nsenter_name names the final process for ps and top, as runc's
 * "runc:[2:INIT]": it was executed as /proc/self/fd/N and would show as N.
 * The user process's exec renames it. */
static void nsenter_name(void)
{
	(void)prctl(PR_SET_NAME, "knast:[init]", 0, 0, 0);
}

__attribute__((constructor))
static void nsenter(void)
{
	struct nsenter_join joins[NSENTER_MAXJOIN];
	char *syncenv, *joinenv, *unshareenv, *offsets, *denyenv, *cgroupenv, *gateenv, *end, names[64];
	int syncfd, njoin = 0, flags = 0, procfd = -1, pdeathsig = 0, dumpable, joinedpid = 0;
	pid_t ppid;

	if (getenv("_KNAST_NSENTER") == NULL)
		return;
	free(nsenter_take("_KNAST_NSENTER"));
	joinenv = nsenter_take("_KNAST_JOIN");
	unshareenv = nsenter_take("_KNAST_UNSHARE");
	offsets = nsenter_take("_KNAST_TIMEOFFSETS");
	denyenv = nsenter_take("_KNAST_SETGROUPS_DENY");
	cgroupenv = nsenter_take("_KNAST_CGROUP_V1");
	gateenv = nsenter_take("_KNAST_GATE");

	/* Kept in the environment for linux.ChildSync. */
	syncenv = getenv("_KNAST_SYNCFD");
	if (syncenv == NULL)
		nsenter_fail(-1, 0, "nsenter: $_KNAST_SYNCFD is not set");
	errno = 0;
	syncfd = (int)strtol(syncenv, &end, 10);
	if (errno != 0 || *end != '\0' || end == syncenv || syncfd < 3 || fcntl(syncfd, F_GETFD) < 0)
		nsenter_fail(-1, 0, "nsenter: bad $_KNAST_SYNCFD %s", syncenv);

	/* Everything above the sync fd is unexpected here, including the sealed
	 * memfd we were executed from: the kernel keeps its own reference. */
	if (syscall(SYS_close_range, (unsigned int)syncfd + 1, ~0U, 0) < 0)
		nsenter_fail(syncfd, 1, "close_range");

	if (gateenv != NULL) {
		nsenter_wait_ack(syncfd, 'G');
		free(gateenv);
	}

	/* Host paths: before any setns changes what they mean. */
	if (cgroupenv != NULL) {
		nsenter_join_cgroups(syncfd, cgroupenv);
		free(cgroupenv);
	}

	if (unshareenv != NULL) {
		errno = 0;
		flags = (int)strtol(unshareenv, &end, 10);
		if (errno != 0 || *end != '\0' || end == unshareenv)
			nsenter_fail(syncfd, 0, "nsenter: bad $_KNAST_UNSHARE %s", unshareenv);
	}
	if (joinenv != NULL)
		njoin = nsenter_parse_join(syncfd, joinenv, joins);

	if (prctl(PR_GET_PDEATHSIG, &pdeathsig, 0, 0, 0) < 0)
		nsenter_fail(syncfd, 1, "prctl PR_GET_PDEATHSIG");
	dumpable = prctl(PR_GET_DUMPABLE, 0, 0, 0, 0);
	ppid = getppid();

	/* Host procfs, reachable even after joining a mount namespace whose
	 * /proc (if any) belongs to another pid namespace. */
	if ((flags & (CLONE_NEWUSER | CLONE_NEWTIME)) != 0) {
		procfd = open("/proc", O_PATH | O_DIRECTORY | O_CLOEXEC);
		if (procfd < 0)
			nsenter_fail(syncfd, 1, "open /proc");
	}

	/* Open every path before setns: after joining mnt they would resolve
	 * in the container's mount namespace. */
	for (int i = 0; i < njoin; i++) {
		joins[i].fd = open(joins[i].path, O_RDONLY | O_CLOEXEC);
		if (joins[i].fd < 0)
			nsenter_fail(syncfd, 1, "open %s namespace %s", joins[i].type->name, joins[i].path);
	}
	for (int pass = 0; pass < 3; pass++) {
		for (int i = 0; i < njoin; i++) {
			int f = joins[i].type->flag;

			if (!nsenter_in_pass(pass, f))
				continue;
			if (f == CLONE_NEWUSER && nsenter_same_userns(joins[i].fd)) {
				close(joins[i].fd);
				continue;
			}
			if (setns(joins[i].fd, f) < 0)
				nsenter_fail(syncfd, 1, "setns %s %s", joins[i].type->name, joins[i].path);
			close(joins[i].fd);
			if (f == CLONE_NEWPID)
				joinedpid = 1;
			/* Become root of a joined user namespace when it maps 0; if
			 * it does not, setns already gave us its full capabilities. */
			if (f == CLONE_NEWUSER) {
				if (setresgid(0, 0, 0) < 0 && errno != EINVAL)
					nsenter_fail(syncfd, 1, "setresgid 0 in user namespace %s", joins[i].path);
				if (setresuid(0, 0, 0) < 0 && errno != EINVAL)
					nsenter_fail(syncfd, 1, "setresuid 0 in user namespace %s", joins[i].path);
			}
		}
	}

	if (flags & CLONE_NEWUSER) {
		if (unshare(CLONE_NEWUSER) < 0)
			nsenter_fail(syncfd, 1, "unshare user");
		/* Credential changes may have made us non-dumpable, which would
		 * keep an unprivileged parent from writing /proc/<pid>/uid_map. */
		if (prctl(PR_SET_DUMPABLE, 1, 0, 0, 0) < 0)
			nsenter_fail(syncfd, 1, "prctl PR_SET_DUMPABLE");
		if (denyenv != NULL && strcmp(denyenv, "1") == 0)
			nsenter_write_proc(syncfd, procfd, "self/setgroups", "deny");
		if (nsenter_send(syncfd, 'U', 0, 0) < 0)
			nsenter_fail(syncfd, 1, "nsenter: send maps request");
		nsenter_wait_ack(syncfd, 'A');
		if (setresgid(0, 0, 0) < 0)
			nsenter_fail(syncfd, 1, "setresgid 0 in new user namespace");
		if (setresuid(0, 0, 0) < 0)
			nsenter_fail(syncfd, 1, "setresuid 0 in new user namespace");
		if (prctl(PR_SET_DUMPABLE, dumpable == 1, 0, 0, 0) < 0)
			nsenter_fail(syncfd, 1, "prctl PR_SET_DUMPABLE");
		flags &= ~CLONE_NEWUSER;
	}
	nsenter_rearm_pdeathsig(syncfd, pdeathsig, ppid);

	if (flags != 0 && unshare(flags) < 0) {
		nsenter_flag_names(flags, names, sizeof(names));
		nsenter_fail(syncfd, 1, "unshare %s", names);
	}
	if ((flags & CLONE_NEWTIME) && offsets != NULL && offsets[0] != '\0')
		nsenter_write_proc(syncfd, procfd, "self/timens_offsets", offsets);
	if (procfd >= 0)
		close(procfd);
	free(joinenv);
	free(unshareenv);
	free(offsets);
	free(denyenv);

	/* The parent-death signal guards only the C phase: a forked final
	 * process never has one, so for the same behaviour without a fork we
	 * drop it. Later, a vanished parent shows as EOF on the sync socket. */
	if (!joinedpid && !(flags & (CLONE_NEWPID | CLONE_NEWTIME))) {
		if (prctl(PR_SET_PDEATHSIG, 0, 0, 0, 0) < 0)
			nsenter_fail(syncfd, 1, "prctl PR_SET_PDEATHSIG");
		if (nsenter_send(syncfd, 'P', (long)getpid(), 1) < 0)
			_exit(1);
		nsenter_name();
		return;
	}

	/* Joined or created pid and created time namespaces only apply to
	 * children. The child must not start Go before the parent knows its
	 * pid, so it waits for one byte on a pipe; EOF means we died. */
	int gate[2];
	if (pipe2(gate, O_CLOEXEC) < 0)
		nsenter_fail(syncfd, 1, "pipe2");
	pid_t child = fork();
	if (child < 0)
		nsenter_fail(syncfd, 1, "fork");
	if (child == 0) {
		char c;
		ssize_t n;

		close(gate[1]);
		do
			n = read(gate[0], &c, 1);
		while (n < 0 && errno == EINTR);
		if (n != 1)
			_exit(1);
		close(gate[0]);
		nsenter_name();
		return;
	}
	close(gate[0]);
	if (nsenter_send(syncfd, 'P', (long)child, 1) < 0 || write(gate[1], "1", 1) != 1) {
		kill(child, SIGKILL);
		waitpid(child, NULL, 0);
		_exit(1);
	}
	_exit(0);
}
