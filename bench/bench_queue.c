/*
 * bench_queue.c - pmd's queues measured in one run next to a bare
 * Unix-socket round trip between two processes: put+get one at a time,
 * pipelined, batched, and 4 producers x 4 consumers.  Prints "key value"
 * lines for bench/run-queue.sh.  Pipelining uses libpmclient's internal
 * send/receive halves (pmclient_int.h); everything else is public API.
 *
 *   bench_queue [N]      N one-at-a-time round trips (default 20000)
 *
 * One at a time is measured in alternating blocks with the bare round
 * trip (medians, and the median of the per-block ratios: q_single_ratio).
 */
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "benchutil.h"
#include "pmclient_int.h"

#define ITEM		16		/* bytes per item */
#define WINDOW		128		/* pipelined requests in flight */
#define BATCH		1000		/* items per put_many/get_many */
#define MPMC_PROCS	4
#define MPMC_BATCH	64
#define MPMC_MAXSIZE	10000
#define STOP_MARK	0xffffffffu
#define SINGLE_BLOCKS	20		/* alternating bare/queue blocks */

/* n queue put+get pairs; microseconds per operation (put or get). */
static double
single_block(void *q, int n)
{
	char item[ITEM];
	pm_bytes b;
	double t0;
	int i;

	memset(item, 'i', sizeof(item));
	t0 = bench_now();
	for (i = 0; i < n; i++) {
		if (pm_queue_put(q, item, sizeof(item), -1) != PM_OK)
			bench_die("put");
		if (pm_queue_get(q, &b, -1) != PM_OK)
			bench_die("get");
		pm_bytes_free(&b);
	}
	return (bench_now() - t0) / (2.0 * n) * 1e6;
}

/*
 * One at a time, next to the bare round trip: n of each in SINGLE_BLOCKS
 * alternating blocks, so that both see the same machine; the medians of
 * the blocks and the median of the per-block ratios are printed (a noisy
 * neighbour then skews one block, not the comparison).
 */
static void
single(pm_queue *q, int n)
{
	double bare[SINGLE_BLOCKS], op[SINGLE_BLOCKS], ratio[SINGLE_BLOCKS];

	bench_alternate(ITEM, n, SINGLE_BLOCKS, single_block, q, bare, op,
	    ratio);
	printf("bare_rt_us %.3f\n", bench_median(bare, SINGLE_BLOCKS));
	printf("q_single_op_us %.3f\n", bench_median(op, SINGLE_BLOCKS));
	printf("q_single_ops_s %.0f\n", 1e6 / bench_median(op, SINGLE_BLOCKS));
	printf("q_single_ratio %.3f\n", bench_median(ratio, SINGLE_BLOCKS));
}

/* WINDOW puts in flight, then WINDOW gets, until total items moved. */
static void
pipelined(pm_conn *c, pm_queue *q, int total)
{
	struct pmc_pending *p[WINDOW];
	char item[ITEM];
	pm_bytes it = { item, sizeof(item) }, b;
	size_t got;
	double t0, t;
	int done, i, w;

	memset(item, 'p', sizeof(item));
	t0 = bench_now();
	for (done = 0; done < total; done += w) {
		w = total - done < WINDOW ? total - done : WINDOW;
		for (i = 0; i < w; i++)
			if ((p[i] = pmc_queue_put_send(q, &it, 1, -1, 0)) == NULL)
				bench_die("put send");
		if (pmc_flush(c) != PM_OK)
			bench_die("flush");
		for (i = 0; i < w; i++)
			if (pmc_queue_put_recv(q, p[i]) != PM_OK)
				bench_die("put recv");
		for (i = 0; i < w; i++)
			if ((p[i] = pmc_queue_get_send(q, 1, -1, 0)) == NULL)
				bench_die("get send");
		if (pmc_flush(c) != PM_OK)
			bench_die("flush");
		for (i = 0; i < w; i++) {
			if (pmc_queue_get_recv(q, p[i], &b, 1, &got) != PM_OK)
				bench_die("get recv");
			pm_bytes_free(&b);
		}
	}
	t = bench_now() - t0;
	printf("q_pipelined_items_s %.0f\n", total / t);
}

static void
batched(pm_queue *q, int total)
{
	static pm_bytes in[BATCH], out[BATCH];
	static char items[BATCH][ITEM];
	size_t got, have, k;
	double t0, t;
	int done;

	for (k = 0; k < BATCH; k++) {
		memset(items[k], 'b', ITEM);
		in[k].data = items[k];
		in[k].len = ITEM;
	}
	t0 = bench_now();
	for (done = 0; done < total; done += BATCH) {
		if (pm_queue_put_many(q, in, BATCH, -1) != PM_OK)
			bench_die("put_many");
		for (have = 0; have < BATCH; have += got) {
			if (pm_queue_get_many(q, out, BATCH - have, &got, -1) !=
			    PM_OK)
				bench_die("get_many");
			for (k = 0; k < got; k++)
				pm_bytes_free(&out[k]);
		}
	}
	t = bench_now() - t0;
	printf("q_batched_items_s %.0f\n", total / t);
}

static void
mpmc_producer(const char *addr, const char *name, int count, int batch)
{
	uint32_t nums[MPMC_BATCH];
	pm_bytes in[MPMC_BATCH];
	pm_conn *c;
	pm_queue *q;
	int i, k, n;

	if ((c = pm_connect(addr)) == NULL ||
	    (q = pm_queue_open(c, name, 0, 0)) == NULL)
		_exit(1);
	for (i = 0; i < count; i += n) {
		n = count - i < batch ? count - i : batch;
		for (k = 0; k < n; k++) {
			nums[k] = (uint32_t)(i + k);
			in[k].data = &nums[k];
			in[k].len = sizeof(nums[k]);
		}
		if ((n == 1 ? pm_queue_put(q, &nums[0], sizeof(nums[0]), -1) :
		    pm_queue_put_many(q, in, (size_t)n, -1)) != PM_OK)
			_exit(1);
	}
	_exit(0);
}

static void
mpmc_consumer(const char *addr, const char *name, int batch)
{
	pm_bytes out[MPMC_BATCH];
	uint32_t v, stop = STOP_MARK;
	size_t got, k;
	pm_conn *c;
	pm_queue *q;
	int stopped = 0;

	if ((c = pm_connect(addr)) == NULL ||
	    (q = pm_queue_open(c, name, 0, 0)) == NULL)
		_exit(1);
	while (!stopped) {
		if (pm_queue_get_many(q, out, (size_t)batch, &got, -1) != PM_OK)
			_exit(1);
		for (k = 0; k < got; k++) {
			memcpy(&v, out[k].data, sizeof(v));
			pm_bytes_free(&out[k]);
			if (v != STOP_MARK)
				continue;
			if (stopped && pm_queue_put(q, &stop, sizeof(stop),
			    -1) != PM_OK)
				_exit(1);
			stopped = 1;
		}
	}
	_exit(0);
}

/* MPMC_PROCS producers and consumers, each its own process and
 * connection, moving total items through one bounded queue. */
static double
mpmc(pm_conn *c, int total, int batch)
{
	uint32_t stop = STOP_MARK;
	pid_t prod[MPMC_PROCS], cons[MPMC_PROCS];
	char name[64];
	pm_queue *q;
	double t0, t;
	int i, st, bad = 0;

	snprintf(name, sizeof(name), "bench.mpmc.%d.%d", (int)getpid(), batch);
	if ((q = pm_queue_open(c, name, MPMC_MAXSIZE, PM_Q_CREATE)) == NULL)
		bench_die("open mpmc");
	t0 = bench_now();
	for (i = 0; i < MPMC_PROCS; i++)
		if ((cons[i] = fork()) == 0)
			mpmc_consumer(pm_conn_address(c), name, batch);
	for (i = 0; i < MPMC_PROCS; i++)
		if ((prod[i] = fork()) == 0)
			mpmc_producer(pm_conn_address(c), name,
			    total / MPMC_PROCS, batch);
	for (i = 0; i < MPMC_PROCS; i++) {
		waitpid(prod[i], &st, 0);
		bad |= !WIFEXITED(st) || WEXITSTATUS(st) != 0;
	}
	for (i = 0; i < MPMC_PROCS; i++)
		if (pm_queue_put(q, &stop, sizeof(stop), -1) != PM_OK)
			bench_die("put stop");
	for (i = 0; i < MPMC_PROCS; i++) {
		waitpid(cons[i], &st, 0);
		bad |= !WIFEXITED(st) || WEXITSTATUS(st) != 0;
	}
	t = bench_now() - t0;
	if (bad)
		fprintf(stderr, "bench_queue: a 4x4 process failed\n");
	pm_queue_free(q);
	pm_queue_unlink(c, name);
	return bad ? -1 : total / t;
}

int
main(int argc, char *argv[])
{
	int n = argc > 1 ? atoi(argv[1]) : 20000;
	char name[64];
	pm_conn *c;
	pm_queue *q;

	if (n <= 0) {
		fprintf(stderr, "usage: bench_queue [N]\n");
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	if ((c = pm_connect(NULL)) == NULL)
		bench_die("connect");
	snprintf(name, sizeof(name), "bench.%d", (int)getpid());
	if ((q = pm_queue_open(c, name, 0, PM_Q_CREATE)) == NULL)
		bench_die("open");
	single(q, n);
	pipelined(c, q, 20 * n);
	batched(q, 100 * n);
	printf("q_mpmc_single_items_s %.0f\n", mpmc(c, 2 * n, 1));
	printf("q_mpmc_batched_items_s %.0f\n", mpmc(c, 50 * n, MPMC_BATCH));
	pm_queue_free(q);
	pm_queue_unlink(c, name);
	pm_disconnect(c);
	return 0;
}
