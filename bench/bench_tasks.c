/*
 * bench_tasks.c - task functions timed by bench_process: a no-op and an
 * idle worker whose memory is measured.  Built as a module, not linked to
 * libpmclient (pm_* resolve against pmd).
 */
#include <unistd.h>

#include <pmclient.h>

pm_task_fn noop;
pm_task_fn idle;

/* Returns at once: Process start+join measures pmd alone. */
int
noop(pm_task *t)
{
	return 0;
}

/* Waits for a signal: an idle worker, terminated by the bench. */
int
idle(pm_task *t)
{
	for (;;)
		pause();
	return 0;
}
