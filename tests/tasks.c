/*
 * tasks.c - the task module the suites run in workers (build/tests/tasks.so).
 * Not linked to libpmclient: pm_* resolve against pmd when it is loaded.
 */
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/types.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "pmclient.h"
#include "taskutil.h"

pm_task_fn whoami, noop, ret7, exit8, fail, segv, sleep_ms, sleep_touch, echo, sq,
    list_fds, sigstate, nested, wait_forever, ignore_term, write_fd, getenv_t,
    fd_ident;

int
noop(pm_task *t)
{
	(void)t;
	return 0;
}

int
ret7(pm_task *t)
{
	(void)t;
	return 7;
}

int
exit8(pm_task *t)
{
	(void)t;
	exit(8);
}

int
fail(pm_task *t)
{
	return pm_task_fail(t, "failed on %s", "purpose");
}

/* A real fault: a store to a PROT_NONE page (not raise(), not a trap). */
int
segv(pm_task *t)
{
	volatile int *p;

	p = mmap(NULL, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return pm_task_fail(t, "mmap failed");
	*p = 1;
	return 0;
}

/* arg: milliseconds, decimal */
int
sleep_ms(pm_task *t)
{
	char buf[32];

	msleep(strtol(arg_str(t, buf, sizeof(buf)), NULL, 10));
	return 0;
}

/* arg: "MS PATH": sleeps, then creates PATH (proof it ran to the end). */
int
sleep_touch(pm_task *t)
{
	char buf[4096], *path;
	long ms;
	int fd;

	ms = strtol(arg_str(t, buf, sizeof(buf)), &path, 10);
	while (*path == ' ')
		path++;
	msleep(ms);
	if ((fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0600)) == -1)
		return pm_task_fail(t, "open %s: %s", path, strerror(errno));
	close(fd);
	return 0;
}

int
echo(pm_task *t)
{
	const void *a;
	size_t len;

	a = pm_task_arg(t, &len);
	if (pm_task_return(t, a, a ? len : 0) != 0)
		return pm_task_fail(t, "pm_task_return failed");
	return 0;
}

/* arg: decimal n; result: decimal n*n */
int
sq(pm_task *t)
{
	char buf[32], out[32];
	long long n;

	n = strtoll(arg_str(t, buf, sizeof(buf)), NULL, 10);
	snprintf(out, sizeof(out), "%lld", n * n);
	pm_task_return(t, out, strlen(out));
	return 0;
}

static int
cmp_int(const void *a, const void *b)
{
	int x = *(const int *)a, y = *(const int *)b;

	return (x > y) - (x < y);
}

/* result: the open fds, ascending, space-separated (without the dir's) */
int
list_fds(pm_task *t)
{
	struct dirent *e;
	DIR *d;
	char out[8192];
	int fds[1024], n = 0, i, self;
	size_t off = 0;

	if ((d = opendir("/proc/self/fd")) == NULL)
		return pm_task_fail(t, "opendir: %s", strerror(errno));
	self = dirfd(d);
	while ((e = readdir(d)) != NULL && n < 1024) {
		if (e->d_name[0] == '.')
			continue;
		i = atoi(e->d_name);
		if (i != self)
			fds[n++] = i;
	}
	closedir(d);
	qsort(fds, (size_t)n, sizeof(int), cmp_int);
	out[0] = '\0';
	for (i = 0; i < n && off < sizeof(out) - 16; i++)
		off += (size_t)snprintf(out + off, sizeof(out) - off, "%s%d",
		    i ? " " : "", fds[i]);
	pm_task_return(t, out, strlen(out));
	return 0;
}

/* result: the SigBlk, SigIgn and SigCgt lines of /proc/self/status */
int
sigstate(pm_task *t)
{
	char line[256], out[1024];
	size_t off = 0;
	FILE *f;

	if ((f = fopen("/proc/self/status", "re")) == NULL)
		return pm_task_fail(t, "fopen: %s", strerror(errno));
	out[0] = '\0';
	while (fgets(line, sizeof(line), f) != NULL)
		if (strncmp(line, "SigBlk:", 7) == 0 ||
		    strncmp(line, "SigIgn:", 7) == 0 ||
		    strncmp(line, "SigCgt:", 7) == 0)
			off += (size_t)snprintf(out + off, sizeof(out) - off,
			    "%s", line);
	fclose(f);
	pm_task_return(t, out, strlen(out));
	return 0;
}

/* arg: "MODULE\nFUNCTION\nARG": runs that as a Process through
 * pm_task_conn and joins it; result: "exit=N pid=P", returns 0. */
int
nested(pm_task *t)
{
	char buf[4096], out[64], *fn, *carg;
	pm_process *p;
	pm_conn *c;
	int code;

	arg_str(t, buf, sizeof(buf));
	if ((fn = strchr(buf, '\n')) == NULL)
		return pm_task_fail(t, "bad argument");
	*fn++ = '\0';
	if ((carg = strchr(fn, '\n')) != NULL)
		*carg++ = '\0';
	else
		carg = fn + strlen(fn);
	if ((c = pm_task_conn(t)) == NULL)
		return pm_task_fail(t, "pm_task_conn: %s", pm_last_message());
	if ((p = pm_process_new(c, buf, fn, carg, strlen(carg))) == NULL)
		return pm_task_fail(t, "pm_process_new: %s", pm_last_message());
	if (pm_process_start(p) != PM_OK) {
		pm_process_free(p);
		return pm_task_fail(t, "start: %s", pm_last_message());
	}
	if (pm_process_join(p, -1) != PM_OK ||
	    pm_process_exitcode(p, &code) != PM_OK) {
		pm_process_free(p);
		return pm_task_fail(t, "join: %s", pm_last_message());
	}
	snprintf(out, sizeof(out), "exit=%d pid=%d", code,
	    (int)pm_process_pid(p));
	pm_process_free(p);
	pm_task_return(t, out, strlen(out));
	return 0;
}

int
wait_forever(pm_task *t)
{
	(void)t;
	for (;;)
		pause();
}

/* Ignores SIGTERM, then waits: only SIGKILL ends it. */
int
ignore_term(pm_task *t)
{
	(void)t;
	signal(SIGTERM, SIG_IGN);
	for (;;)
		pause();
}

/* arg: "FD TEXT": writes TEXT to FD. */
int
write_fd(pm_task *t)
{
	char buf[4096], *text;
	size_t len;
	long fd;

	fd = strtol(arg_str(t, buf, sizeof(buf)), &text, 10);
	if (*text == ' ')
		text++;
	len = strlen(text);
	if (write((int)fd, text, len) != (ssize_t)len)
		return pm_task_fail(t, "write %ld: %s", fd, strerror(errno));
	return 0;
}

/* arg: a variable name; result: its value and exit 0, or exit 3 unset. */
int
getenv_t(pm_task *t)
{
	char buf[256];
	const char *v;

	v = getenv(arg_str(t, buf, sizeof(buf)));
	if (v == NULL)
		return 3;
	pm_task_return(t, v, strlen(v));
	return 0;
}

/* arg: "0 1 2": result "dev:ino dev:ino dev:ino" of those fds ("-" closed) */
int
fd_ident(pm_task *t)
{
	char buf[256], out[1024], *p, *end;
	struct stat st;
	size_t off = 0;
	long fd;

	out[0] = '\0';
	arg_str(t, buf, sizeof(buf));
	for (p = buf; *p != '\0'; p = end) {
		fd = strtol(p, &end, 10);
		if (end == p)
			break;
		if (fstat((int)fd, &st) == -1)
			off += (size_t)snprintf(out + off, sizeof(out) - off,
			    "%s-", off ? " " : "");
		else
			off += (size_t)snprintf(out + off, sizeof(out) - off,
			    "%s%lu:%lu", off ? " " : "",
			    (unsigned long)st.st_dev, (unsigned long)st.st_ino);
	}
	pm_task_return(t, out, strlen(out));
	return 0;
}

/* Result: "NAME PARENT_PID". */
int
whoami(pm_task *t)
{
	return task_whoami(t);
}
