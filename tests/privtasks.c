/*
 * privtasks.c - task functions for check_priv (build/tests/privtasks.so):
 * what credentials a worker runs with.
 * Not linked to libpmclient: pm_* resolve against pmd when it is loaded.
 */
#include <sys/types.h>

#include <grp.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "pmclient.h"

pm_task_fn ids, idle;

/* Result: "uid gid euid egid n g1 g2 ... gn" (groups sorted as given). */
int
ids(pm_task *t)
{
	gid_t groups[NGROUPS_MAX];
	char out[8192];
	size_t len;
	int n, i;

	if ((n = getgroups(NGROUPS_MAX, groups)) == -1)
		return pm_task_fail(t, "getgroups failed");
	len = (size_t)snprintf(out, sizeof(out), "%u %u %u %u %d",
	    (unsigned)getuid(), (unsigned)getgid(), (unsigned)geteuid(),
	    (unsigned)getegid(), n);
	for (i = 0; i < n && len < sizeof(out) - 16; i++)
		len += (size_t)snprintf(out + len, sizeof(out) - len, " %u",
		    (unsigned)groups[i]);
	if (pm_task_return(t, out, len) != 0)
		return pm_task_fail(t, "pm_task_return failed");
	return 0;
}

/* Waits for a signal. */
int
idle(pm_task *t)
{
	(void)t;
	for (;;)
		pause();
}
