/*
 * synctasks.c - task functions the shared-object suites run in workers
 * (build/tests/synctasks.so): they adopt the anonymous objects they are
 * given as fds, or open named ones through pm_task_conn().  Not linked to
 * libpmclient: pm_* resolve against pmd when it is loaded.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pmclient.h"
#include "taskutil.h"

pm_task_fn s_incr, s_hold, s_incr_named;

/* fd 3 a lock, fd 4 a shm whose first word is the counter; the argument
 * is how many increments to make. */
int
s_incr(pm_task *t)
{
	char buf[32];
	pm_lock *l;
	pm_shm *m;
	long n, i;
	volatile uint64_t *ctr;
	int r;

	n = atol(arg_str(t, buf, sizeof(buf)));
	if ((l = pm_lock_adopt(3)) == NULL || (m = pm_shm_adopt(4)) == NULL)
		return pm_task_fail(t, "adopt: %s", pm_last_message());
	ctr = pm_shm_ptr(m);
	for (i = 0; i < n; i++) {
		r = pm_lock_acquire(l, -1);
		if (r != PM_OK && r != PM_EOWNERDEAD)
			return pm_task_fail(t, "acquire: %s", pm_last_message());
		(*ctr)++;
		if (pm_lock_release(l) != PM_OK)
			return pm_task_fail(t, "release: %s", pm_last_message());
	}
	pm_shm_free(m);
	pm_lock_free(l);
	return 0;
}

/* "NAME COUNT": the same with the named lock NAME and shm NAME.mem. */
int
s_incr_named(pm_task *t)
{
	char buf[300], name[270], mem[280];
	pm_conn *c;
	pm_lock *l;
	pm_shm *m;
	long n, i;
	volatile uint64_t *ctr;
	int r;

	if (sscanf(arg_str(t, buf, sizeof(buf)), "%255s %ld", name, &n) != 2)
		return pm_task_fail(t, "want NAME COUNT");
	snprintf(mem, sizeof(mem), "%s.mem", name);
	if ((c = pm_task_conn(t)) == NULL ||
	    (l = pm_lock_open(c, name, 0)) == NULL ||
	    (m = pm_shm_open(c, mem, 0, 0)) == NULL)
		return pm_task_fail(t, "open: %s", pm_last_message());
	ctr = pm_shm_ptr(m);
	for (i = 0; i < n; i++) {
		r = pm_lock_acquire(l, -1);
		if (r != PM_OK && r != PM_EOWNERDEAD)
			return pm_task_fail(t, "acquire: %s", pm_last_message());
		(*ctr)++;
		pm_lock_release(l);
	}
	pm_shm_free(m);
	pm_lock_free(l);
	return 0;
}

/* fd 3 a lock (argument "lock") or a condition ("cond"), fd 4 an event:
 * acquires, sets the event, and holds on until killed. */
int
s_hold(pm_task *t)
{
	char buf[16];
	pm_event *e;
	int r;

	arg_str(t, buf, sizeof(buf));
	if ((e = pm_event_adopt(4)) == NULL)
		return pm_task_fail(t, "adopt event: %s", pm_last_message());
	if (strcmp(buf, "cond") == 0) {
		pm_cond *cv = pm_cond_adopt(3);

		r = cv != NULL ? pm_cond_acquire(cv, -1) : pm_last_error();
	} else {
		pm_lock *l = pm_lock_adopt(3);

		r = l != NULL ? pm_lock_acquire(l, -1) : pm_last_error();
	}
	if (r != PM_OK)
		return pm_task_fail(t, "acquire: %s", pm_last_message());
	pm_event_set(e);
	for (;;)
		pause();
}
