/*
 * pipeline.c - a producer process, consumer processes, a joinable queue of
 * work items and a result queue, all hosted by pmd (Python's
 * Manager().JoinableQueue() pattern).  The producer fills a bounded work
 * queue; consumers take items, put results and mark items done; the main
 * program waits on the work queue's join, stops the consumers and reads
 * the results.  pm_connect(NULL) finds a running pmd or starts a private
 * one.
 *
 *   pipeline [N [MODULE]]   N work items (default 2000); MODULE defaults
 *                           to pipeline_tasks.so next to this program
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

static pm_process *
start(pm_conn *c, const char *module, const char *fn, const char *arg)
{
	pm_process *p;

	if ((p = pm_process_new(c, module, fn, arg, strlen(arg))) == NULL)
		return NULL;
	if (pm_process_start(p) != PM_OK) {
		pm_process_free(p);
		return NULL;
	}
	return p;
}

static int
join_ok(pm_process *p, const char *what)
{
	int code = -1;

	if (pm_process_join(p, -1) != PM_OK ||
	    pm_process_exitcode(p, &code) != PM_OK)
		return fail(what);
	if (code != 0) {
		fprintf(stderr, "pipeline: %s exited %d: %s\n", what, code,
		    pm_process_error(p) ? pm_process_error(p) : "");
		return 1;
	}
	return 0;
}

int
main(int argc, char *argv[])
{
	char module[PATH_MAX], work[64], results[64], arg[160];
	pm_process *producer, *cons[MAX_CONSUMERS];
	pm_bytes got[RESULT_BATCH], r;
	pm_queue *wq, *rq;
	pm_conn *c;
	unsigned long long sum = 0, n, steps, maxsteps = 0, maxn = 0;
	unsigned total = 2000, seen = 0;
	size_t k, ngot;
	int i, ncons, rc = 0;

	if (argc > 1 && (total = (unsigned)strtoul(argv[1], NULL, 10)) == 0) {
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

	snprintf(work, sizeof(work), "pipeline.work.%d", (int)getpid());
	snprintf(results, sizeof(results), "pipeline.results.%d", (int)getpid());
	if ((wq = pm_queue_open(c, work, WORK_MAXSIZE, PM_Q_CREATE |
	    PM_Q_EXCL | PM_Q_JOINABLE)) == NULL)
		return fail("open work queue");
	if ((rq = pm_queue_open(c, results, 0, PM_Q_CREATE | PM_Q_EXCL)) ==
	    NULL)
		return fail("open result queue");
	printf("pipeline: %u items, 1 producer, %d consumers, work queue "
	    "maxsize %d\n", total, ncons, WORK_MAXSIZE);

	snprintf(arg, sizeof(arg), "%s %s", work, results);
	for (i = 0; i < ncons; i++)
		if ((cons[i] = start(c, module, "consume", arg)) == NULL)
			return fail("start consumer");
	snprintf(arg, sizeof(arg), "%s %u", work, total);
	if ((producer = start(c, module, "produce", arg)) == NULL)
		return fail("start producer");

	rc |= join_ok(producer, "producer");
	pm_process_free(producer);
	/* every item put has been got and marked done */
	if (pm_queue_join(wq, -1) != PM_OK)
		return fail("join work queue");
	printf("pipeline: work queue joined; results waiting: %ld\n",
	    pm_queue_qsize(rq));
	for (i = 0; i < ncons; i++)
		if (pm_queue_put(wq, "STOP", 4, -1) != PM_OK)
			return fail("put STOP");
	for (i = 0; i < ncons; i++) {
		if (join_ok(cons[i], "consumer") == 0 &&
		    pm_process_result(cons[i], &r) == PM_OK) {
			printf("pipeline: consumer %d (pid %d) handled %.*s "
			    "items\n", i, (int)pm_process_pid(cons[i]),
			    (int)r.len, (char *)r.data);
			pm_bytes_free(&r);
		} else
			rc = 1;
		pm_process_free(cons[i]);
	}

	while (pm_queue_get_many(rq, got, RESULT_BATCH, &ngot, 0) == PM_OK) {
		for (k = 0; k < ngot; k++) {
			if (sscanf(got[k].data, "%llu %llu", &n, &steps) == 2) {
				sum += n;
				if (steps > maxsteps) {
					maxsteps = steps;
					maxn = n;
				}
				seen++;
			}
			pm_bytes_free(&got[k]);
		}
	}
	printf("pipeline: %u results (sum of inputs %llu, want %llu); "
	    "longest Collatz run: %llu takes %llu steps\n", seen, sum,
	    (unsigned long long)total * (total + 1) / 2, maxn, maxsteps);
	if (seen != total || sum != (unsigned long long)total * (total + 1) / 2)
		rc = 1;
	pm_queue_free(wq);
	pm_queue_free(rq);
	pm_queue_unlink(c, work);
	pm_queue_unlink(c, results);
	pm_disconnect(c);
	return rc;
}
