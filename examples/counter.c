/*
 * counter.c - the classic shared counter: four processes add to one
 * number in shared memory under one lock, both named in pmd
 * ("counter.lock", "counter.value").  Then a process takes the lock and
 * is killed while holding it; the next one gets PM_EOWNERDEAD, repairs
 * what the dead left half-done, and carries on (Python's Lock would hang
 * here for ever).  Exit 1 unless the counts are exact.
 *
 *   counter [N [MODULE]]    N additions per process (10000)
 *   MODULE defaults to counter_tasks.so next to this program.
 */
#include <libgen.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <pmclient.h>

#define PROCS		4
#define JOIN_TIMEOUT	120.0

static int
fail(const char *what)
{
	fprintf(stderr, "counter: %s: %s (%s)\n", what, pm_last_message(),
	    pm_strerror(pm_last_error()));
	return 1;
}

static int
default_module(char *buf, size_t size)
{
	char exe[PATH_MAX];
	ssize_t n;

	if ((n = readlink("/proc/self/exe", exe, sizeof(exe) - 1)) < 0)
		return -1;
	exe[n] = '\0';
	return (size_t)snprintf(buf, size, "%s/counter_tasks.so",
	    dirname(exe)) >= size ? -1 : 0;
}

/* Starts fn(arg) in a new process. */
static pm_process *
start(pm_conn *c, const char *mod, const char *fn, const char *arg)
{
	pm_process *p = pm_process_new(c, mod, fn, arg, strlen(arg));

	if (p == NULL || pm_process_start(p) != PM_OK) {
		pm_process_free(p);
		return NULL;
	}
	return p;
}

/* Joins p: its exit code, or -1000 when it did not end in time. */
static int
finish(pm_process *p)
{
	int code = -1000;

	if (pm_process_join(p, JOIN_TIMEOUT) == PM_OK)
		pm_process_exitcode(p, &code);
	pm_process_free(p);
	return code;
}

int
main(int argc, char *argv[])
{
	char mod[PATH_MAX], arg[32];
	pm_process *ps[PROCS], *holder, *surv;
	pm_conn *c;
	pm_lock *lock;
	pm_shm *mem;
	pm_event *held;
	volatile uint64_t *value;
	long n = argc > 1 ? atol(argv[1]) : 10000;
	int i, code, bad = 0;

	setvbuf(stdout, NULL, _IOLBF, 0);	/* in order with the workers' */
	if (argc > 2)
		snprintf(mod, sizeof(mod), "%s", argv[2]);
	else if (default_module(mod, sizeof(mod)) == -1)
		return fail("module path");
	if ((c = pm_connect(NULL)) == NULL)
		return fail("connect");
	lock = pm_lock_open(c, "counter.lock", PM_O_CREATE);
	mem = pm_shm_open(c, "counter.value", sizeof(uint64_t), PM_O_CREATE);
	held = pm_event_open(c, "counter.held", PM_O_CREATE);
	if (lock == NULL || mem == NULL || held == NULL)
		return fail("open");
	value = pm_shm_ptr(mem);
	*value = 0;

	/* 1. four processes, n additions each, under the lock */
	snprintf(arg, sizeof(arg), "%ld", n);
	for (i = 0; i < PROCS; i++)
		if ((ps[i] = start(c, mod, "add", arg)) == NULL)
			return fail("start add");
	for (i = 0; i < PROCS; i++)
		if ((code = finish(ps[i])) != 0) {
			fprintf(stderr, "counter: add exited %d\n", code);
			bad = 1;
		}
	printf("counter: %d processes x %ld = %llu (want %llu)\n", PROCS, n,
	    (unsigned long long)*value, (unsigned long long)(PROCS * n));
	if (*value != (uint64_t)(PROCS * n))
		bad = 1;

	/* 2. a holder killed with the lock: the survivor carries on */
	if ((holder = start(c, mod, "hold", "")) == NULL)
		return fail("start hold");
	if (pm_event_wait(held, JOIN_TIMEOUT) != PM_OK)
		return fail("the holder never took the lock");
	printf("counter: killing holder %d\n", (int)pm_process_pid(holder));
	pm_process_kill(holder);
	code = finish(holder);
	printf("counter: holder ended with %d\n", code);
	if ((surv = start(c, mod, "survivor", "")) == NULL)
		return fail("start survivor");
	if ((code = finish(surv)) != 0) {
		fprintf(stderr, "counter: survivor exited %d\n", code);
		bad = 1;
	}
	printf("counter: final %llu (want %llu)\n", (unsigned long long)*value,
	    (unsigned long long)(PROCS * n + 1));
	if (*value != (uint64_t)(PROCS * n + 1))
		bad = 1;

	/* named objects live until unlinked, not until their users leave */
	pm_unlink(c, "counter.lock");
	pm_unlink(c, "counter.value");
	pm_unlink(c, "counter.held");
	pm_event_free(held);
	pm_shm_free(mem);
	pm_lock_free(lock);
	pm_disconnect(c);
	return bad;
}
