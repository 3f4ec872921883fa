/*
 * bench_process.c - times pmd Process start+join of a no-op task next to a
 * bare fork()+_exit()+waitpid() in this same program: from this small
 * caller, from 4 callers at once (aggregate starts/s), and once this
 * caller holds BENCH_BIG_MB of touched memory; times pm_pool_new of 8
 * workers; reads the PSS of an idle pmd worker; times each start method
 * (forkserver, spawn, fork with and without pmd) in one interleaved loop
 * with bare forks.  Prints "key value" lines for bench/run.sh.
 *
 *   bench_process MODULE [RUNS]     MODULE: bench_tasks.so (absolute path)
 *
 * pm_connect(NULL): $PMD_SOCKET, a system or user pmd, else a private pmd
 * ($PMD_BIN).  Times come from CLOCK_MONOTONIC.
 */
#include <sys/wait.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "benchutil.h"
#include "pmclient_int.h"

#define BENCH_RUNS	2000	/* measured iterations */
#define BENCH_WARMUP	200	/* discarded iterations first */
#define BENCH_IDLE_MS	200	/* idle worker settles before PSS is read */
#define BENCH_IDLE_MAX	4	/* idle workers at once, for the mean */
#define BENCH_CALLERS	4	/* callers starting at once */
#define BENCH_CALLER_RUNS 300	/* starts (or forks) by each of them */
#define BENCH_POOL	8	/* workers of the timed pm_pool_new */
#define BENCH_POOL_RUNS	30
#define BENCH_BIG_MB	1024	/* the big caller's touched memory */
#define BENCH_BIG_RUNS	200
#define BENCH_METHOD_RUNS 300	/* starts of each method, interleaved */
#define BENCH_METHODS	5	/* forkserver, spawn, fork, fork alone, bare */

static int
fail(const char *what)
{
	fprintf(stderr, "bench_process: %s: %s (%s)\n", what,
	    pm_last_message(), pm_strerror(pm_last_error()));
	return -1;
}

/* The fork method's target: a function of this program. */
static int
noop_fn(pm_task *t)
{
	(void)t;
	return 0;
}

/*
 * One Process start+join of a no-op; its duration in *us.  method:
 * PM_START_FORKSERVER or _SPAWN (module:noop), PM_START_FORK (noop_fn;
 * c NULL: no pmd).
 */
static int
method_once(pm_conn *c, const char *module, int method, double *us)
{
	pm_process	*p;
	double		 t0;
	int		 code = -1, rc = 0;

	t0 = bench_now_us();
	if (method == PM_START_FORK)
		p = pm_process_new_fn(c, noop_fn, NULL, 0);
	else if ((p = pm_process_new(c, module, "noop", NULL, 0)) != NULL &&
	    pm_process_set_start_method(p, method) != PM_OK) {
		pm_process_free(p);
		p = NULL;
	}
	if (p == NULL)
		return fail("pm_process_new");
	if (pm_process_start(p) != PM_OK || pm_process_join(p, -1) != PM_OK)
		rc = fail("start/join");
	*us = bench_now_us() - t0;
	if (rc == 0 && (pm_process_exitcode(p, &code) != PM_OK || code != 0)) {
		fprintf(stderr, "bench_process: noop exit code %d\n", code);
		rc = -1;
	}
	pm_process_free(p);
	return rc;
}

static int
pmd_once(pm_conn *c, const char *module, double *us)
{
	return method_once(c, module, PM_START_FORKSERVER, us);
}

static int
fork_once(double *us)
{
	double	 t0;
	pid_t	 pid;
	int	 status;

	t0 = bench_now_us();
	if ((pid = fork()) == -1) {
		perror("bench_process: fork");
		return -1;
	}
	if (pid == 0)
		_exit(0);
	while (waitpid(pid, &status, 0) == -1)
		if (errno != EINTR) {
			perror("bench_process: waitpid");
			return -1;
		}
	*us = bench_now_us() - t0;
	return 0;
}

/*
 * Starts n module:idle workers at once, waits, prints their mean PSS as
 * key_pss_kb and mean USS as key_uss_kb (with n 1, the broker's PSS too),
 * and ends them.  One worker alone pays the biggest share of the pages it
 * shares with the broker and the forker; with several, each pays less.
 * Its share of libc's text moves with how many processes on the machine
 * map it; its USS (the pages no other process maps) does not.
 */
static int
idle_pss(pm_conn *c, const char *module, int n, const char *key)
{
	struct timespec	 ts = { 0, BENCH_IDLE_MS * 1000000L };
	pm_process	*p[BENCH_IDLE_MAX];
	long		 sum = 0, usum = 0, kb, ukb;
	int		 i, started, code, rc = 0;

	for (started = 0; started < n; started++) {
		p[started] = pm_process_new(c, module, "idle", NULL, 0);
		if (p[started] == NULL ||
		    pm_process_set_daemon(p[started], 1) != PM_OK ||
		    pm_process_start(p[started]) != PM_OK) {
			pm_process_free(p[started]);
			rc = fail("start idle");
			break;
		}
	}
	if (rc == 0) {
		while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
			;
		for (i = 0; i < n; i++) {
			if ((kb = bench_pss_kb(pm_process_pid(p[i]))) < 0 ||
			    (ukb = bench_uss_kb(pm_process_pid(p[i]))) < 0)
				rc = -1;
			else {
				sum += kb;
				usum += ukb;
			}
		}
		printf("%s_pss_kb %ld\n", key, rc == 0 ? sum / n : -1L);
		printf("%s_uss_kb %ld\n", key, rc == 0 ? usum / n : -1L);
		if (n == 1)
			printf("pmd_broker_pss_kb %ld\n",
			    bench_pss_kb(pm_daemon_pid(c)));
	}
	for (i = 0; i < started; i++) {
		if (pm_process_terminate(p[i]) != PM_OK ||
		    pm_process_join(p[i], 10) != PM_OK)
			rc = fail("terminate idle");
		else if (n == 1 && pm_process_exitcode(p[i], &code) == PM_OK)
			printf("pmd_idle_exitcode %d\n", code);
		pm_process_free(p[i]);
	}
	return rc;
}

/* One caller's loop: RUNS starts+joins (pmd) or bare forks+waits. */
static int
caller_loop(const char *module, int use_pmd)
{
	pm_conn	*c = NULL;
	double	 us;
	int	 i;

	if (use_pmd && (c = pm_connect(NULL)) == NULL)
		return fail("pm_connect");
	for (i = 0; i < BENCH_CALLER_RUNS; i++)
		if ((use_pmd ? pmd_once(c, module, &us) : fork_once(&us)) == -1)
			return -1;
	pm_disconnect(c);
	return 0;
}

/* BENCH_CALLERS processes run caller_loop at once: the aggregate rate
 * (starts per second) printed as key. */
static int
callers_at_once(const char *module, int use_pmd, const char *key)
{
	pid_t	 pids[BENCH_CALLERS];
	double	 t0, secs;
	int	 i, st, rc = 0;

	fflush(stdout);
	t0 = bench_now_us();
	for (i = 0; i < BENCH_CALLERS; i++) {
		if ((pids[i] = fork()) == -1) {
			perror("bench_process: fork");
			return -1;
		}
		if (pids[i] == 0)
			_exit(caller_loop(module, use_pmd) == 0 ? 0 : 1);
	}
	for (i = 0; i < BENCH_CALLERS; i++) {
		while (waitpid(pids[i], &st, 0) == -1 && errno == EINTR)
			;
		if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
			rc = -1;
	}
	secs = (bench_now_us() - t0) / 1e6;
	printf("%s %.0f\n", key, BENCH_CALLERS * BENCH_CALLER_RUNS / secs);
	return rc;
}

/* Until pmd's pre-started workers are all back (a second at most): a
 * program makes its pool once, when pmd has been idle. */
static void
wait_prestarted(pm_conn *c)
{
	Pm__Status q = PM__STATUS__INIT;
	Pm__StatusReply *r;
	struct pmc_pending *pd;
	double end = bench_now_us() + 1e6;
	int full = 0;

	while (!full && bench_now_us() < end) {
		if (pmc_call(c, PM__TYPE__T_STATUS, &q.base, NULL, 0,
		    &pm__status_reply__descriptor, &pd, 5) != PM_OK)
			return;
		r = (Pm__StatusReply *)pd->msg;
		full = r == NULL || r->idle_workers >= r->prestart_workers;
		pmc_pending_free(c, pd);
		if (!full)
			usleep(1000);
	}
}

/* pm_pool_new of BENCH_POOL workers until all have started, then free;
 * each from a pmd with its pre-started workers ready. */
static int
pool_new_times(pm_conn *c, const char *module)
{
	pm_pool_opts	 o;
	pm_pool		*p;
	double		 v[BENCH_POOL_RUNS], t0;
	int		 i;

	memset(&o, 0, sizeof(o));
	o.processes = BENCH_POOL;
	o.module = module;
	for (i = 0; i < BENCH_POOL_RUNS; i++) {
		wait_prestarted(c);
		t0 = bench_now_us();
		if ((p = pm_pool_new(c, &o)) == NULL)
			return fail("pm_pool_new");
		v[i] = bench_now_us() - t0;
		pm_pool_free(p);
	}
	bench_print_stats("pmd_pool8_new", v, BENCH_POOL_RUNS);
	return 0;
}

/* This caller touches BENCH_BIG_MB of memory, then times starts and
 * forks again: a fork copies the caller's page tables, a pmd start does
 * not. */
static int
big_caller(pm_conn *c, const char *module)
{
	double	 pmd[BENCH_BIG_RUNS], bare[BENCH_BIG_RUNS];
	size_t	 len = (size_t)BENCH_BIG_MB << 20, off;
	char	*big;
	int	 i;

	if ((big = malloc(len)) == NULL) {
		perror("bench_process: big caller");
		return -1;
	}
	for (off = 0; off < len; off += 4096)
		big[off] = (char)off;
	printf("big_caller_mb %d\n", BENCH_BIG_MB);
	for (i = 0; i < BENCH_BIG_RUNS; i++)
		if (pmd_once(c, module, &pmd[i]) == -1 ||
		    fork_once(&bare[i]) == -1) {
			free(big);
			return -1;
		}
	bench_print_stats("pmd_big_process", pmd, BENCH_BIG_RUNS);
	bench_print_stats("bare_big_fork", bare, BENCH_BIG_RUNS);
	free(big);
	return 0;
}

/*
 * Start+join of a no-op by each start method, and a bare fork+wait, in
 * one loop (each round runs all five), so that they see the same machine.
 */
static int
start_methods(pm_conn *c, const char *module)
{
	static const char *const keys[BENCH_METHODS] = { "m_forkserver",
	    "m_spawn", "m_fork", "m_fork_nopmd", "m_bare_fork" };
	double *v[BENCH_METHODS], dummy;
	int i, k, rc = 0;

	for (k = 0; k < BENCH_METHODS; k++)
		if ((v[k] = calloc(BENCH_METHOD_RUNS, sizeof(double))) == NULL) {
			while (k > 0)
				free(v[--k]);
			perror("bench_process");
			return -1;
		}
	for (i = -BENCH_WARMUP / 10; i < BENCH_METHOD_RUNS && rc == 0; i++)
		for (k = 0; k < BENCH_METHODS && rc == 0; k++) {
			double *at = i < 0 ? &dummy : &v[k][i];

			if (k == 0)
				rc = method_once(c, module, PM_START_FORKSERVER,
				    at);
			else if (k == 1)
				rc = method_once(c, module, PM_START_SPAWN, at);
			else if (k == 2)
				rc = method_once(c, module, PM_START_FORK, at);
			else if (k == 3)
				rc = method_once(NULL, module, PM_START_FORK, at);
			else
				rc = fork_once(at);
		}
	for (k = 0; k < BENCH_METHODS; k++) {
		if (rc == 0)
			bench_print_stats(keys[k], v[k], BENCH_METHOD_RUNS);
		free(v[k]);
	}
	fflush(stdout);
	return rc;
}

int
main(int argc, char *argv[])
{
	const char	*module;
	double		*pmd, *bare, dummy;
	pm_conn		*c;
	int		 i, runs = BENCH_RUNS;

	if (argc < 2 || argc > 3 || (argc == 3 && (runs = atoi(argv[2])) < 1)) {
		fprintf(stderr, "usage: bench_process MODULE [RUNS]\n");
		return 2;
	}
	module = argv[1];
	if ((pmd = calloc((size_t)runs, sizeof(*pmd))) == NULL ||
	    (bare = calloc((size_t)runs, sizeof(*bare))) == NULL) {
		perror("bench_process");
		return 1;
	}
	if ((c = pm_connect(NULL)) == NULL) {
		fail("pm_connect");
		return 1;
	}
	printf("pmd_address %s\n", pm_conn_address(c));
	printf("pmd_pid %ld\n", (long)pm_daemon_pid(c));
	fflush(stdout);

	/* Interleaved so both see the same machine state. */
	for (i = 0; i < BENCH_WARMUP; i++)
		if (pmd_once(c, module, &dummy) == -1 || fork_once(&dummy) == -1)
			return 1;
	for (i = 0; i < runs; i++)
		if (pmd_once(c, module, &pmd[i]) == -1 ||
		    fork_once(&bare[i]) == -1)
			return 1;
	bench_print_stats("pmd_process", pmd, runs);
	bench_print_stats("bare_fork", bare, runs);
	if (start_methods(c, module) == -1)
		return 1;
	if (idle_pss(c, module, 1, "pmd_idle") == -1 ||
	    idle_pss(c, module, BENCH_IDLE_MAX, "pmd_idle4") == -1)
		return 1;
	if (callers_at_once(module, 1, "pmd_4callers_per_s") == -1 ||
	    callers_at_once(module, 0, "bare_4callers_per_s") == -1 ||
	    pool_new_times(c, module) == -1 || big_caller(c, module) == -1)
		return 1;

	pm_disconnect(c);
	free(pmd);
	free(bare);
	return 0;
}
