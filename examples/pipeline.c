/*
 * pipeline.c - a producer process, a pool of consumers, a joinable queue of
 * work items and a result queue, all served by pmd: Python's
 *
 *     work = manager.JoinableQueue(64); results = manager.Queue()
 *     pool.apply_async(consume, ...) for each worker
 *     Process(target=produce).start(); work.join(); ...
 *
 * in C.  The producer (a Process) fills the bounded work queue; each pool
 * worker runs one consume task that takes items, puts results and marks
 * items done; the main program waits for the producer, joins the work
 * queue (every item handled), shuts the work queue down so the consumers
 * return, and checks every result.  pm_connect(NULL) finds a running pmd
 * or starts a private one.
 *
 *   pipeline [N [MODULE]]   N work items (default 2000); MODULE defaults
 *                           to pipeline_tasks.so next to this program
 *
 * Exits 0 when every number 1..N came back exactly once with the right
 * result, 1 otherwise.
 */
#include <limits.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <pmclient.h>

#define MAX_CONSUMERS	4
#define WORK_MAXSIZE	64		/* bounded: the producer waits */
#define RESULT_BATCH	256

static int
fail(const char *what)
{
	fprintf(stderr, "pipeline: %s: %s (%s)\n", what, pm_last_message(),
	    pm_strerror(pm_last_error()));
	return 1;
}

/* pipeline_tasks.so in the directory of this executable. */
static int
default_module(char *buf, size_t size)
{
	char exe[PATH_MAX];
	ssize_t n;

	if ((n = readlink("/proc/self/exe", exe, sizeof(exe) - 1)) < 0) {
		perror("pipeline: /proc/self/exe");
		return -1;
	}
	exe[n] = '\0';
	if ((size_t)snprintf(buf, size, "%s/pipeline_tasks.so",
	    dirname(exe)) >= size) {
		fprintf(stderr, "pipeline: module path too long\n");
		return -1;
	}
	return 0;
}

/* The same work as the consumers, to check their answers. */
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
 * Whether every consumer task has ended.  They end only after the work
 * queue is shut down, so before that this means they failed, and a wait
 * for the producer (blocked on a full queue) or for the queue's join
 * would never end: the waits below go in half-second steps to look.
 */
static int
consumers_gone(pm_result **cons, int ncons)
{
	int i;

	for (i = 0; i < ncons; i++)
		if (!pm_result_ready(cons[i]))
			return 0;
	fprintf(stderr, "pipeline: every consumer ended with work left: %s\n",
	    pm_result_error(cons[0]) ? pm_result_error(cons[0]) :
	    "(no error text)");
	return 1;
}

/* Reads every result; checks that 1..total each came once, right. */
static int
check_results(pm_queue *rq, unsigned total)
{
	pm_bytes got[RESULT_BATCH];
	unsigned char *seen;
	unsigned long long n, steps, maxsteps = 0, maxn = 0;
	unsigned nseen = 0, bad = 0;
	size_t k, ngot;
	int r;

	if ((seen = calloc(total + 1, 1)) == NULL) {
		perror("pipeline");
		return 1;
	}
	/* timeout 0: everything is there already; PM_EEMPTY ends it */
	while ((r = pm_queue_get_many(rq, got, RESULT_BATCH, &ngot, 0)) ==
	    PM_OK) {
		for (k = 0; k < ngot; k++) {
			char line[64];

			snprintf(line, sizeof(line), "%.*s", (int)got[k].len,
			    (char *)got[k].data);
			pm_bytes_free(&got[k]);
			if (sscanf(line, "%llu %llu", &n, &steps) != 2 ||
			    n < 1 || n > total || seen[n] ||
			    steps != collatz(n)) {
				if (bad++ < 5)
					fprintf(stderr, "pipeline: bad or "
					    "repeated result '%s'\n", line);
				continue;
			}
			seen[n] = 1;
			nseen++;
			if (steps > maxsteps) {
				maxsteps = steps;
				maxn = n;
			}
		}
	}
	free(seen);
	if (r != PM_EEMPTY)
		return fail("get results");
	printf("pipeline: %u of %u results right, %u bad; longest Collatz "
	    "run below %u: %llu takes %llu steps\n", nseen, total, bad,
	    total + 1, maxn, maxsteps);
	return nseen == total && bad == 0 ? 0 : 1;
}

int
main(int argc, char *argv[])
{
	char module[PATH_MAX], work[64], results[64], arg[160], count[24];
	pm_result *cons[MAX_CONSUMERS] = { NULL };
	pm_process *producer = NULL;
	pm_pool *pool = NULL;
	pm_queue *wq = NULL, *rq = NULL;
	pm_pool_opts o;
	pm_conn *c;
	pm_bytes r;
	unsigned total = 2000, handled = 0;
	int i, ncons, r1, code = -1, rc = 1;

	if (argc > 3 || (argc > 1 &&
	    (total = (unsigned)strtoul(argv[1], NULL, 10)) == 0)) {
		fprintf(stderr, "usage: pipeline [N [MODULE]]\n");
		return 2;
	}
	if (argc > 2)
		snprintf(module, sizeof(module), "%s", argv[2]);
	else if (default_module(module, sizeof(module)) == -1)
		return 1;
	if ((c = pm_connect(NULL)) == NULL)
		return fail("connect");
	ncons = pm_cpu_count() < MAX_CONSUMERS ? pm_cpu_count() : MAX_CONSUMERS;
	if (ncons < 2)
		ncons = 2;

	/* the queues live in pmd, named; workers open them by name */
	snprintf(work, sizeof(work), "pipeline.work.%d", (int)getpid());
	snprintf(results, sizeof(results), "pipeline.results.%d",
	    (int)getpid());
	if ((wq = pm_queue_open(c, work, WORK_MAXSIZE, PM_Q_CREATE |
	    PM_Q_EXCL | PM_Q_JOINABLE)) == NULL) {
		fail("open work queue");
		goto out;
	}
	if ((rq = pm_queue_open(c, results, 0, PM_Q_CREATE | PM_Q_EXCL)) ==
	    NULL) {
		fail("open result queue");
		goto out;
	}

	/* the consumers: one long consume task per pool worker */
	memset(&o, 0, sizeof(o));
	o.processes = ncons;
	o.module = module;
	if ((pool = pm_pool_new(c, &o)) == NULL) {
		fail("pool");
		goto out;
	}
	printf("pipeline: %u items, 1 producer process, a pool of %d "
	    "consumers, work queue maxsize %d\n", total, ncons, WORK_MAXSIZE);
	snprintf(arg, sizeof(arg), "%s %s", work, results);
	for (i = 0; i < ncons; i++)
		if ((cons[i] = pm_pool_apply_async(pool, "consume", arg,
		    strlen(arg), NULL, NULL)) == NULL) {
			fail("apply_async consume");
			goto out;
		}

	/* the producer: a Process */
	snprintf(arg, sizeof(arg), "%s %u", work, total);
	if ((producer = pm_process_new(c, module, "produce", arg,
	    strlen(arg))) == NULL || pm_process_start(producer) != PM_OK) {
		fail("start producer");
		goto out;
	}
	while ((r1 = pm_process_join(producer, 0.5)) == PM_ETIMEDOUT)
		if (consumers_gone(cons, ncons))
			goto out;
	if (r1 != PM_OK || pm_process_exitcode(producer, &code) != PM_OK) {
		fail("join producer");
		goto out;
	}
	if (code != 0) {
		fprintf(stderr, "pipeline: producer exited %d: %s\n", code,
		    pm_process_error(producer) ? pm_process_error(producer) :
		    "");
		goto out;
	}

	/* every item put has been got and marked done (pmd answers the
	 * join when the count of unfinished items reaches 0) */
	while ((r1 = pm_queue_join(wq, 0.5)) == PM_ETIMEDOUT)
		if (consumers_gone(cons, ncons))
			goto out;
	if (r1 != PM_OK) {
		fail("join work queue");
		goto out;
	}
	printf("pipeline: work queue joined; results waiting: %ld\n",
	    pm_queue_qsize(rq));
	/* drain-mode shutdown: each consumer's next get is PM_ECLOSED */
	if (pm_queue_shutdown(wq, 0) != PM_OK) {
		fail("shut down work queue");
		goto out;
	}
	rc = 0;
	for (i = 0; i < ncons; i++) {
		if (pm_result_get(cons[i], -1, &r) != PM_OK) {
			fprintf(stderr, "pipeline: consumer %d: %s (%s)\n", i,
			    pm_last_message(), pm_strerror(pm_last_error()));
			rc = 1;
			continue;
		}
		snprintf(count, sizeof(count), "%.*s", (int)r.len,
		    (char *)r.data);
		pm_bytes_free(&r);
		printf("pipeline: consumer %d handled %s items\n", i, count);
		handled += (unsigned)strtoul(count, NULL, 10);
	}
	if (rc == 0 && handled != total) {
		fprintf(stderr, "pipeline: consumers handled %u items, not "
		    "%u\n", handled, total);
		rc = 1;
	}
	if (pm_pool_close(pool) != PM_OK || pm_pool_join(pool) != PM_OK)
		rc |= fail("close pool");
	rc |= check_results(rq, total);
out:
	for (i = 0; i < MAX_CONSUMERS; i++)
		pm_result_free(cons[i]);
	pm_pool_free(pool);		/* terminates it if still running */
	pm_process_free(producer);
	pm_queue_free(wq);
	pm_queue_free(rq);
	/* queues belong to pmd, not to this connection: remove them */
	if (wq != NULL)
		pm_queue_unlink(c, work);
	if (rq != NULL)
		pm_queue_unlink(c, results);
	pm_disconnect(c);
	return rc;
}
