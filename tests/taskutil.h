/*
 * taskutil.h - small helpers for the test task modules (tasks.c,
 * qtasks.c, pooltasks.c), each built into its own .so.
 */
#ifndef PM_TEST_TASKUTIL_H
#define PM_TEST_TASKUTIL_H

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "pmclient.h"

static inline void
msleep(int64_t ms)
{
	struct timespec ts;

	ts.tv_sec = (time_t)(ms / 1000);
	ts.tv_nsec = (long)(ms % 1000) * 1000000L;
	while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
		;
}

/* The argument as a NUL-terminated string in buf. */
static inline const char *
arg_str(pm_task *t, char *buf, size_t cap)
{
	const void *a;
	size_t len;

	a = pm_task_arg(t, &len);
	if (a == NULL)
		len = 0;
	if (len >= cap)
		len = cap - 1;
	if (len > 0)
		memcpy(buf, a, len);
	buf[len] = '\0';
	return buf;
}

/* Returns "NAME PARENT_PID" (pm_task_name, pm_task_parent_pid). */
static inline int
task_whoami(pm_task *t)
{
	char buf[512];
	int n;

	n = snprintf(buf, sizeof(buf), "%s %ld", pm_task_name(t),
	    (long)pm_task_parent_pid(t));
	return pm_task_return(t, buf, (size_t)n);
}

#endif
