/*
 * bench_pipe.c - pipes and dicts measured in one run next to their bare
 * counterparts: a 64-byte pipe round trip to a pmd worker next to a bare
 * socketpair round trip to a forked child; 1 MiB messages to a worker
 * (GB/s); dict set, get and incr next to a bare round trip to pmd (a
 * ping).  Prints "key value" lines for bench/run-pipe.sh.  The ping uses
 * libpmclient's internal call (pmclient_int.h); the rest is public API.
 *
 *   bench_pipe [N]      N round trips of each kind (default 20000)
 *
 * Latencies are measured in alternating blocks (medians, and the median
 * of the per-block ratios), so that both sides see the same machine.
 */
#include <sys/socket.h>
#include <sys/wait.h>

#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "benchutil.h"
#include "pmclient_int.h"

#define MSG		64		/* bytes per round trip */
#define BIG		(1u << 20)	/* bytes per big message */
#define BIG_N		200		/* big messages */
#define BLOCKS		20		/* alternating blocks */
#define BP_FD		3

static char module[PATH_MAX];

/* A worker running fn on the other end of a duplex pipe. */
static pm_pipe *
worker(pm_conn *c, const char *fn, pm_process **wp)
{
	pm_pipe *a, *b;

	if (pm_pipe_new(&a, &b, 1) != PM_OK)
		bench_die("pipe");
	if ((*wp = pm_process_new(c, module, fn, NULL, 0)) == NULL ||
	    pm_process_set_fd(*wp, BP_FD, pm_pipe_fd(b)) != PM_OK ||
	    pm_process_start(*wp) != PM_OK)
		bench_die("worker");
	pm_pipe_free(b);
	return a;
}

/* n round trips of MSG bytes through the pipe p; microseconds each. */
static double
pipe_block(void *p, int n)
{
	char buf[MSG];
	pm_bytes m;
	double t0;
	int i;

	memset(buf, 'p', sizeof(buf));
	t0 = bench_now();
	for (i = 0; i < n; i++) {
		if (pm_pipe_send(p, buf, sizeof(buf)) != PM_OK ||
		    pm_pipe_recv(p, &m, -1) != PM_OK)
			bench_die("pipe round trip");
		pm_bytes_free(&m);
	}
	return (bench_now() - t0) / n * 1e6;
}

static void
pipe_rt(pm_conn *c, int n)
{
	double bare[BLOCKS], rt[BLOCKS], ratio[BLOCKS];
	pm_process *w;
	pm_pipe *p = worker(c, "pipe_echo", &w);

	bench_alternate(MSG, n, BLOCKS, pipe_block, p, bare, rt, ratio);
	pm_pipe_free(p);
	pm_process_join(w, -1);
	pm_process_free(w);
	printf("bare_rt_us %.3f\n", bench_median(bare, BLOCKS));
	printf("pipe_rt_us %.3f\n", bench_median(rt, BLOCKS));
	printf("pipe_ratio %.3f\n", bench_median(ratio, BLOCKS));
}

/* BIG_N messages of BIG bytes to a worker, then its answer. */
static void
pipe_big(pm_conn *c)
{
	pm_process *w;
	pm_pipe *p = worker(c, "pipe_sink", &w);
	char *buf = malloc(BIG);
	pm_bytes m;
	double t0, t;
	int i;

	if (buf == NULL)
		bench_die("memory");
	memset(buf, 'b', BIG);
	t0 = bench_now();
	for (i = 0; i < BIG_N; i++)
		if (pm_pipe_send(p, buf, BIG) != PM_OK)
			bench_die("send big");
	if (pm_pipe_send(p, "", 0) != PM_OK || pm_pipe_recv(p, &m, -1) !=
	    PM_OK)
		bench_die("big answer");
	t = bench_now() - t0;
	pm_bytes_free(&m);
	pm_pipe_free(p);
	pm_process_join(w, -1);
	pm_process_free(w);
	free(buf);
	printf("pipe_big_gb_s %.3f\n", (double)BIG * BIG_N / t / 1e9);
}

static double
ping_block(pm_conn *c, int n)
{
	struct pmc_pending *p;
	double t0;
	int i;

	t0 = bench_now();
	for (i = 0; i < n; i++) {
		if (pmc_call(c, PM__TYPE__T_PING, NULL, NULL, 0, NULL, &p,
		    -1) != PM_OK)
			bench_die("ping");
		pmc_pending_free(c, p);
	}
	return (bench_now() - t0) / n * 1e6;
}

/* n set+get pairs: microseconds per operation. */
static double
setget_block(pm_dict *d, int n)
{
	char key[16], val[MSG];
	pm_bytes b;
	double t0;
	int i;

	memset(val, 'v', sizeof(val));
	t0 = bench_now();
	for (i = 0; i < n; i++) {
		snprintf(key, sizeof(key), "k%d", i % 1000);
		if (pm_dict_set(d, key, strlen(key), val, sizeof(val)) !=
		    PM_OK || pm_dict_get(d, key, strlen(key), &b) != PM_OK)
			bench_die("set/get");
		pm_bytes_free(&b);
	}
	return (bench_now() - t0) / (2.0 * n) * 1e6;
}

static double
incr_block(pm_dict *d, int n)
{
	double t0;
	int i;

	t0 = bench_now();
	for (i = 0; i < n; i++)
		if (pm_dict_incr(d, "counter", 7, 1, NULL) != PM_OK)
			bench_die("incr");
	return (bench_now() - t0) / n * 1e6;
}

static void
dict_ops(pm_conn *c, int n)
{
	double ping[BLOCKS], op[BLOCKS], inc[BLOCKS], r_op[BLOCKS],
	    r_inc[BLOCKS];
	int i, per = n / BLOCKS > 0 ? n / BLOCKS : 1;
	char name[64];
	pm_dict *d;

	snprintf(name, sizeof(name), "bench.%d", (int)getpid());
	if ((d = pm_dict_open(c, name, PM_O_CREATE)) == NULL)
		bench_die("dict");
	(void)ping_block(c, 200);
	(void)setget_block(d, 200);
	for (i = 0; i < BLOCKS; i++) {
		ping[i] = ping_block(c, per);
		op[i] = setget_block(d, per / 2 > 0 ? per / 2 : 1);
		inc[i] = incr_block(d, per);
		r_op[i] = op[i] / ping[i];
		r_inc[i] = inc[i] / ping[i];
	}
	pm_dict_free(d);
	pm_unlink(c, name);
	printf("ping_rt_us %.3f\n", bench_median(ping, BLOCKS));
	printf("dict_op_us %.3f\n", bench_median(op, BLOCKS));
	printf("dict_incr_us %.3f\n", bench_median(inc, BLOCKS));
	printf("dict_op_ratio %.3f\n", bench_median(r_op, BLOCKS));
	printf("dict_incr_ratio %.3f\n", bench_median(r_inc, BLOCKS));
}

int
main(int argc, char *argv[])
{
	int n = argc > 1 ? atoi(argv[1]) : 20000;
	char exe[PATH_MAX];
	pm_conn *c;
	ssize_t len;

	if (n <= 0) {
		fprintf(stderr, "usage: bench_pipe [N]\n");
		return 2;
	}
	if ((len = readlink("/proc/self/exe", exe, sizeof(exe) - 1)) <= 0)
		bench_die("readlink");
	exe[len] = '\0';
	snprintf(module, sizeof(module), "%s/pipe_tasks.so", dirname(exe));
	if ((c = pm_connect(NULL)) == NULL)
		bench_die("connect");
	pipe_rt(c, n);
	pipe_big(c);
	dict_ops(c, n);
	pm_disconnect(c);
	return 0;
}
