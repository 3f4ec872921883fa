/*
 * starttasks.c - the task module of check_start (build/tests/starttasks.so):
 * where a worker's stack, libc and this module are mapped, so that the
 * suite can tell spawned workers (a fresh layout each) from forkserver
 * ones (the forker's layout, shared).  Not linked to libpmclient.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pmclient.h"

pm_task_fn addrs, pool_addrs;

/* "stack libc module" as three hex addresses. */
static int
addrs_text(pm_task *t)
{
	volatile char here = 0;
	char buf[128];
	void *libc = (void *)(uintptr_t)&malloc;

	snprintf(buf, sizeof(buf), "%p %p %p", (void *)(uintptr_t)&here, libc,
	    (void *)(uintptr_t)&addrs);
	return pm_task_return(t, buf, strlen(buf)) == PM_OK ? 0 : 1;
}

int
addrs(pm_task *t)
{
	return addrs_text(t);
}

/* The same from a pool worker. */
int
pool_addrs(pm_task *t)
{
	return addrs_text(t);
}
