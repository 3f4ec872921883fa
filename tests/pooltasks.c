/*
 * pooltasks.c - task functions the Pool suite runs in pool workers
 * (build/tests/pooltasks.so).  Numbers travel as native int64.
 * Not linked to libpmclient: pm_* resolve against pmd when it is loaded.
 */
#include <sys/types.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "pmclient.h"
#include "taskutil.h"

pm_task_fn whoami, sq, echo, fail_text, sleep_ms, sleep_fail, init_set, init_value,
    my_pid, die_kill, ret_nonzero, no_return, init_fail, returns_twice,
    sum_bytes, init_die_count;

static int64_t init_seen = -1;	/* set by init_set */
static int init_runs;

static int64_t
arg_i64(pm_task *t)
{
	size_t len;
	const void *a = pm_task_arg(t, &len);
	int64_t v = 0;

	if (a != NULL && len == sizeof(v))
		memcpy(&v, a, sizeof(v));
	return v;
}

static int
ret_i64(pm_task *t, int64_t v)
{
	return pm_task_return(t, &v, sizeof(v)) == 0 ? 0 : 1;
}

int
sq(pm_task *t)
{
	int64_t v = arg_i64(t);

	return ret_i64(t, v * v);
}

int
echo(pm_task *t)
{
	size_t len;
	const void *a = pm_task_arg(t, &len);

	return pm_task_return(t, a, len) == 0 ? 0 : 1;
}

int
fail_text(pm_task *t)
{
	return pm_task_fail(t, "task %lld failed on purpose",
	    (long long)arg_i64(t));
}

int
sleep_ms(pm_task *t)
{
	int64_t ms = arg_i64(t);

	msleep(ms);
	return ret_i64(t, ms);
}

/* Sleeps arg ms, then fails. */
int
sleep_fail(pm_task *t)
{
	msleep(arg_i64(t));
	return pm_task_fail(t, "slept %lld ms, then failed",
	    (long long)arg_i64(t));
}

/* Initializer: remembers its argument (an int64). */
int
init_set(pm_task *t)
{
	init_seen = arg_i64(t);
	init_runs++;
	return 0;
}

int
init_fail(pm_task *t)
{
	return pm_task_fail(t, "initializer refuses");
}

/* The initializer's value * 1000 + how often it ran here. */
int
init_value(pm_task *t)
{
	return ret_i64(t, init_seen * 1000 + init_runs);
}

int
my_pid(pm_task *t)
{
	return ret_i64(t, (int64_t)getpid());
}

int
die_kill(pm_task *t)
{
	raise(SIGKILL);
	return 0;
}

int
ret_nonzero(pm_task *t)
{
	return 3;
}

int
no_return(pm_task *t)
{
	return 0;
}

int
returns_twice(pm_task *t)
{
	static const char big[100000];

	pm_task_return(t, big, sizeof(big));
	return pm_task_return(t, "ok", 2) == 0 ? 0 : 1;
}

/* Sum of the argument's bytes and its length: checks big payloads. */
int
sum_bytes(pm_task *t)
{
	size_t len, i;
	const unsigned char *a = pm_task_arg(t, &len);
	int64_t r[2] = { 0, (int64_t)len };

	for (i = 0; i < len; i++)
		r[0] += a[i];
	return pm_task_return(t, r, sizeof(r)) == 0 ? 0 : 1;
}

/* A POSIX lock on all of fd's file (one process at a time; a dead one's
 * is released). */
static int
lock_file(int fd, short type)
{
	struct flock l;

	memset(&l, 0, sizeof(l));
	l.l_type = type;
	l.l_whence = SEEK_SET;
	return fcntl(fd, F_SETLKW, &l);
}

/* Initializer: the file at fd (its int64 arg) holds two counts, deaths
 * left and starts.  While deaths are left the worker counts one down and
 * kills itself; otherwise it counts its start. */
int
init_die_count(pm_task *t)
{
	int fd = (int)arg_i64(t), left = 0, started = 0, die;
	char buf[64];
	ssize_t r;

	if (lock_file(fd, F_WRLCK) == -1)
		return 1;
	r = pread(fd, buf, sizeof(buf) - 1, 0);
	buf[r > 0 ? r : 0] = '\0';
	if (sscanf(buf, "%d %d", &left, &started) != 2)
		return 1;
	if ((die = left > 0))
		left--;
	else
		started++;
	r = snprintf(buf, sizeof(buf), "%-8d %-8d", left, started);
	(void)!pwrite(fd, buf, (size_t)r, 0);
	if (die)
		raise(SIGKILL);
	lock_file(fd, F_UNLCK);
	return 0;
}

/* Result: "NAME PARENT_PID". */
int
whoami(pm_task *t)
{
	return task_whoami(t);
}
