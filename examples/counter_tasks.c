/*
 * counter_tasks.c - the tasks of examples/counter.  Each opens the named
 * lock "counter.lock" and the named 8-byte counter "counter.value"
 * through pm_task_conn().
 *
 *   add        adds 1 to the counter N times (N: the argument), each
 *              under the lock
 *   hold       takes the lock, starts an update it never finishes, sets
 *              the event "counter.held", and waits to be killed
 *   survivor   takes the lock: PM_EOWNERDEAD says its last holder died
 *              in the middle, so it repairs the counter and carries on
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <pmclient.h>

#define HALF_DONE	UINT64_C(0x8000000000000000)	/* update in progress */

pm_task_fn add, hold, survivor;

struct counter {
	pm_lock		*lock;
	pm_shm		*mem;
	volatile uint64_t *value;
};

static int
counter_open(pm_task *t, struct counter *k)
{
	pm_conn *c = pm_task_conn(t);

	if (c == NULL || (k->lock = pm_lock_open(c, "counter.lock", 0)) ==
	    NULL || (k->mem = pm_shm_open(c, "counter.value", 0, 0)) == NULL)
		return pm_task_fail(t, "open: %s", pm_last_message());
	k->value = pm_shm_ptr(k->mem);
	return 0;
}

static void
counter_close(struct counter *k)
{
	pm_shm_free(k->mem);
	pm_lock_free(k->lock);
}

int
add(pm_task *t)
{
	struct counter k;
	size_t len;
	const char *a = pm_task_arg(t, &len);
	char buf[32];
	long n, i;
	int r;

	if (len == 0 || len >= sizeof(buf))
		return pm_task_fail(t, "want a count");
	memcpy(buf, a, len);
	buf[len] = '\0';
	n = atol(buf);
	if (counter_open(t, &k) != 0)
		return 1;
	for (i = 0; i < n; i++) {
		r = pm_lock_acquire(k.lock, -1);
		if (r != PM_OK && r != PM_EOWNERDEAD)
			return pm_task_fail(t, "acquire: %s",
			    pm_last_message());
		(*k.value)++;
		pm_lock_release(k.lock);
	}
	counter_close(&k);
	return 0;
}

int
hold(pm_task *t)
{
	struct counter k;
	pm_event *held;

	if (counter_open(t, &k) != 0)
		return 1;
	if ((held = pm_event_open(pm_task_conn(t), "counter.held", 0)) == NULL)
		return pm_task_fail(t, "event: %s", pm_last_message());
	if (pm_lock_acquire(k.lock, -1) != PM_OK)
		return pm_task_fail(t, "acquire: %s", pm_last_message());
	*k.value |= HALF_DONE;		/* an update begins... */
	printf("holder %d: lock taken, counter marked half-updated; "
	    "waiting to be killed\n", (int)getpid());
	fflush(stdout);
	pm_event_set(held);
	for (;;)
		pause();		/* ...and never ends */
}

int
survivor(pm_task *t)
{
	struct counter k;
	int r;

	if (counter_open(t, &k) != 0)
		return 1;
	r = pm_lock_acquire(k.lock, 10);
	if (r == PM_EOWNERDEAD) {
		printf("survivor %d: PM_EOWNERDEAD: the last holder died "
		    "holding the lock; counter %s, repairing it\n",
		    (int)getpid(), (*k.value & HALF_DONE) ? "half-updated" :
		    "intact");
		*k.value &= ~HALF_DONE;
	} else if (r != PM_OK)
		return pm_task_fail(t, "acquire: %s", pm_last_message());
	(*k.value)++;
	printf("survivor %d: carried on, counter now %llu\n", (int)getpid(),
	    (unsigned long long)*k.value);
	fflush(stdout);
	pm_lock_release(k.lock);
	counter_close(&k);
	return r == PM_EOWNERDEAD ? 0 : 3;	/* 3: the death went unseen */
}
