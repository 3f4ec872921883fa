/*
 * memtasks.c - task module of check_memory (build/tests/memtasks.so):
 * tasks that take memory, keep it, or burn CPU, for caps, OOM reports,
 * rusage and pool recycling.
 */
#include <sys/mman.h>
#include <sys/types.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "pmclient.h"
#include "taskutil.h"

pm_task_fn grow, keep, hold, spin, burn, mypid;

static char *
touch_mib(long mib)
{
	size_t len = (size_t)mib << 20, off;
	long page = sysconf(_SC_PAGESIZE);
	char *p;

	p = mmap(NULL, len ? len : 1, PROT_READ | PROT_WRITE,
	    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return NULL;
	for (off = 0; off < len; off += (size_t)page)
		p[off] = 1;
	return p;
}

/* arg: MiB to take and touch; returns "ok" and frees them. */
int
grow(pm_task *t)
{
	char buf[32];
	long mib = strtol(arg_str(t, buf, sizeof(buf)), NULL, 10);
	char *p;

	if ((p = touch_mib(mib)) == NULL)
		return pm_task_fail(t, "mmap %ld MiB failed", mib);
	munmap(p, (size_t)mib << 20);
	return pm_task_return(t, "ok", 2);
}

/* arg: MiB to take, touch and keep (a leak): returns the worker's pid. */
int
keep(pm_task *t)
{
	char buf[32];
	long mib = strtol(arg_str(t, buf, sizeof(buf)), NULL, 10);

	if (touch_mib(mib) == NULL)
		return pm_task_fail(t, "mmap %ld MiB failed", mib);
	return mypid(t);
}

/* arg: MiB to take and touch, then burn CPU until killed. */
int
hold(pm_task *t)
{
	char buf[32];
	long mib = strtol(arg_str(t, buf, sizeof(buf)), NULL, 10);
	volatile uint64_t x = 0;

	if (touch_mib(mib) == NULL)
		return pm_task_fail(t, "mmap %ld MiB failed", mib);
	for (;;)
		x++;
}

/* arg: milliseconds of wall time to spend burning CPU. */
int
spin(pm_task *t)
{
	char buf[32];
	long ms = strtol(arg_str(t, buf, sizeof(buf)), NULL, 10);
	struct timespec a, b;
	volatile uint64_t x = 0;

	clock_gettime(CLOCK_MONOTONIC, &a);
	do {
		for (int i = 0; i < 100000; i++)
			x += (uint64_t)i;
		clock_gettime(CLOCK_MONOTONIC, &b);
	} while ((b.tv_sec - a.tv_sec) * 1000 +
	    (b.tv_nsec - a.tv_nsec) / 1000000 < ms);
	return 0;
}

/* arg: milliseconds of CPU time to burn, however long that takes. */
int
burn(pm_task *t)
{
	char buf[32];
	long ms = strtol(arg_str(t, buf, sizeof(buf)), NULL, 10);
	struct timespec c;
	volatile uint64_t x = 0;

	do {
		for (int i = 0; i < 100000; i++)
			x += (uint64_t)i;
		clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c);
	} while (c.tv_sec * 1000 + c.tv_nsec / 1000000 < ms);
	return 0;
}

/* returns the worker's pid as text */
int
mypid(pm_task *t)
{
	char buf[32];
	int n = snprintf(buf, sizeof(buf), "%d", (int)getpid());

	return pm_task_return(t, buf, (size_t)n);
}
