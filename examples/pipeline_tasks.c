/*
 * pipeline_tasks.c - the task functions of examples/pipeline: a producer
 * (run as a Process) that fills the joinable work queue, and a consumer
 * (run as a Pool task, one per worker) that turns work items into results
 * until the work queue is shut down.  Both reach their queues through
 * pm_task_conn(), a connection to the pmd that started them.
 *
 * Like every task module, this is not linked to libpmclient: the pm_*
 * calls resolve against pmd, which loads the module in the worker.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <pmclient.h>

#define NAME_MAX_	128
#define BATCH		64

pm_task_fn produce, consume;

/* The argument as a NUL-terminated string in buf. */
static const char *
arg_str(pm_task *t, char *buf, size_t cap)
{
	const void *a;
	size_t len;

	if ((a = pm_task_arg(t, &len)) == NULL)
		len = 0;
	if (len >= cap)
		len = cap - 1;
	memcpy(buf, a ? a : "", len);
	buf[len] = '\0';
	return buf;
}

/* Steps of the Collatz sequence from n down to 1: the "work". */
static unsigned
collatz(unsigned long long n)
{
	unsigned steps = 0;

	while (n > 1) {
		n = (n & 1) ? 3 * n + 1 : n / 2;
		steps++;
	}
	return steps;
}

/*
 * Process target, argument "WORK N": puts the numbers 1..N on WORK, in
 * batches of up to BATCH items (one frame, one round trip each).  Its
 * return value is its exit code.
 */
int
produce(pm_task *t)
{
	char arg[2 * NAME_MAX_], work[NAME_MAX_], nums[BATCH][24];
	pm_bytes batch[BATCH];
	unsigned n, i, k;
	pm_queue *q;

	arg_str(t, arg, sizeof(arg));
	if (sscanf(arg, "%127s %u", work, &n) != 2)
		return pm_task_fail(t, "bad argument '%s'", arg);
	if ((q = pm_queue_open(pm_task_conn(t), work, 0, 0)) == NULL)
		return pm_task_fail(t, "open %s: %s", work, pm_last_message());
	for (i = 1; i <= n; i += k) {
		for (k = 0; k < BATCH && i + k <= n; k++) {
			snprintf(nums[k], sizeof(nums[k]), "%u", i + k);
			batch[k].data = nums[k];
			batch[k].len = strlen(nums[k]);
		}
		/* all or nothing; waits in pmd while the bounded queue is
		 * full */
		if (pm_queue_put_many(q, batch, k, -1) != PM_OK) {
			pm_queue_free(q);
			return pm_task_fail(t, "put: %s", pm_last_message());
		}
	}
	pm_queue_free(q);
	return 0;
}

/*
 * Pool task, argument "WORK RESULTS": gets numbers from WORK, puts
 * "n steps" on RESULTS and marks each item done, until WORK is shut down
 * and drained (get then fails with PM_ECLOSED).  Its result is how many
 * items it handled.  A nonzero return (pm_task_fail) fails this task with
 * PM_ETASK; the worker lives on.
 */
int
consume(pm_task *t)
{
	char arg[2 * NAME_MAX_], work[NAME_MAX_], results[NAME_MAX_];
	char item[32], out[48];
	pm_queue *wq, *rq;
	pm_bytes b;
	unsigned long long n;
	unsigned handled = 0;
	int r, rc = 1;

	arg_str(t, arg, sizeof(arg));
	if (sscanf(arg, "%127s %127s", work, results) != 2)
		return pm_task_fail(t, "bad argument '%s'", arg);
	if ((wq = pm_queue_open(pm_task_conn(t), work, 0, 0)) == NULL)
		return pm_task_fail(t, "open %s: %s", work, pm_last_message());
	if ((rq = pm_queue_open(pm_task_conn(t), results, 0, 0)) == NULL) {
		pm_queue_free(wq);
		return pm_task_fail(t, "open %s: %s", results,
		    pm_last_message());
	}
	for (;;) {
		/* blocks in pmd until an item comes or the queue shuts down */
		if ((r = pm_queue_get(wq, &b, -1)) == PM_ECLOSED) {
			snprintf(out, sizeof(out), "%u", handled);
			pm_task_return(t, out, strlen(out));
			rc = 0;
			break;
		}
		if (r != PM_OK) {
			pm_task_fail(t, "get: %s", pm_last_message());
			break;
		}
		snprintf(item, sizeof(item), "%.*s", (int)b.len,
		    (char *)b.data);
		pm_bytes_free(&b);
		n = strtoull(item, NULL, 10);
		snprintf(out, sizeof(out), "%llu %u", n, collatz(n));
		if (pm_queue_put(rq, out, strlen(out), -1) != PM_OK) {
			pm_task_fail(t, "put: %s", pm_last_message());
			break;
		}
		handled++;
		/* after its result is out, so join means "results are in" */
		if (pm_queue_task_done(wq) != PM_OK) {
			pm_task_fail(t, "task_done: %s", pm_last_message());
			break;
		}
	}
	pm_queue_free(wq);
	pm_queue_free(rq);
	return rc;
}
