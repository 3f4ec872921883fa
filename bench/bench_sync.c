/*
 * bench_sync.c - pmd's shared memory and locks measured in one run next
 * to a bare robust process-shared pthread mutex: uncontended
 * acquire+release, a lock contended by two processes, a hand-off between
 * two processes (two semaphores, ping-pong), and filling a shared array.
 * Prints "key value" lines for bench/run-sync.sh.  Anonymous objects
 * only: nothing here goes through pmd.
 *
 *   bench_sync [N]      N uncontended acquire+release (default 5,000,000)
 *
 * Uncontended is measured in alternating blocks with the bare mutex
 * (medians, and the median of the per-block ratios: lock_ratio).
 */
#include <sys/mman.h>
#include <sys/wait.h>

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "benchutil.h"
#include <pmclient.h>

#define BLOCKS		20		/* alternating bare/pm_lock blocks */
#define ARRAY_N		10000000	/* doubles filled */

/* The bare side: a robust process-shared mutex in shared memory. */
static pthread_mutex_t *
bare_mutex(void)
{
	pthread_mutexattr_t a;
	pthread_mutex_t *m;

	m = mmap(NULL, sizeof(*m), PROT_READ | PROT_WRITE,
	    MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (m == MAP_FAILED)
		exit(1);
	pthread_mutexattr_init(&a);
	pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
	pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
	if (pthread_mutex_init(m, &a) != 0)
		exit(1);
	pthread_mutexattr_destroy(&a);
	return m;
}

static void
uncontended(int n)
{
	double bare[BLOCKS], op[BLOCKS], ratio[BLOCKS], t0;
	pthread_mutex_t *m = bare_mutex();
	pm_lock *l = pm_lock_open(NULL, NULL, 0);
	int b, i, per = n / BLOCKS;

	if (l == NULL)
		bench_die("pm_lock_open");
	for (b = 0; b < BLOCKS; b++) {
		t0 = bench_now();
		for (i = 0; i < per; i++) {
			pthread_mutex_lock(m);
			pthread_mutex_unlock(m);
		}
		bare[b] = (bench_now() - t0) / per * 1e9;
		t0 = bench_now();
		for (i = 0; i < per; i++) {
			pm_lock_acquire(l, -1);
			pm_lock_release(l);
		}
		op[b] = (bench_now() - t0) / per * 1e9;
		ratio[b] = op[b] / bare[b];
	}
	printf("bare_mutex_ns %.2f\n", bench_median(bare, BLOCKS));
	printf("lock_ns %.2f\n", bench_median(op, BLOCKS));
	printf("lock_ratio %.3f\n", bench_median(ratio, BLOCKS));
	pm_lock_free(l);
	munmap(m, sizeof(*m));
}

/* Two processes, n locked increments each of one shared counter. */
static void
contended(int n)
{
	pm_lock *l = pm_lock_open(NULL, NULL, 0);
	pm_shm *s = pm_shm_open(NULL, NULL, sizeof(uint64_t), 0);
	volatile uint64_t *ctr;
	pid_t pid;
	double t0, t;
	int i, k, st;

	if (l == NULL || s == NULL)
		bench_die("open");
	ctr = pm_shm_ptr(s);
	t0 = bench_now();
	for (k = 0; k < 2; k++) {
		if ((pid = fork()) == -1)
			exit(1);
		if (pid == 0) {
			for (i = 0; i < n; i++) {
				pm_lock_acquire(l, -1);
				(*ctr)++;
				pm_lock_release(l);
			}
			_exit(0);
		}
	}
	while (wait(&st) > 0)
		;
	t = bench_now() - t0;
	if (*ctr != 2 * (uint64_t)n)
		fprintf(stderr, "bench_sync: contended count %llu\n",
		    (unsigned long long)*ctr);
	printf("contended_ops_s %.0f\n", 2 * n / t);
	pm_shm_free(s);
	pm_lock_free(l);
}

/* A ping-pong between two processes: each hand-off wakes the other. */
static void
handoff(int n)
{
	pm_sem *ping = pm_sem_open(NULL, NULL, 0, 0);
	pm_sem *pong = pm_sem_open(NULL, NULL, 0, 0);
	pid_t pid;
	double t0, t;
	int i, st;

	if (ping == NULL || pong == NULL)
		bench_die("open");
	if ((pid = fork()) == -1)
		exit(1);
	if (pid == 0) {
		for (i = 0; i < n; i++) {
			pm_sem_acquire(ping, -1);
			pm_sem_release(pong);
		}
		_exit(0);
	}
	t0 = bench_now();
	for (i = 0; i < n; i++) {
		pm_sem_release(ping);
		pm_sem_acquire(pong, -1);
	}
	t = bench_now() - t0;
	waitpid(pid, &st, 0);
	printf("handoff_us %.3f\n", t / (2.0 * n) * 1e6);
	pm_sem_free(ping);
	pm_sem_free(pong);
}

/* An anonymous shared array of ARRAY_N doubles made and filled in place
 * (its pages are first touched here). */
static void
array_fill(void)
{
	pm_shm *s;
	double *v, t0, t;
	size_t i;

	t0 = bench_now();
	if ((s = pm_shm_open(NULL, NULL, ARRAY_N * sizeof(double), 0)) == NULL)
		bench_die("pm_shm_open");
	v = pm_shm_ptr(s);
	for (i = 0; i < ARRAY_N; i++)
		v[i] = (double)i * 0.5;
	t = bench_now() - t0;
	printf("array_ns %.3f\n", t / ARRAY_N * 1e9);
	pm_shm_free(s);
}

int
main(int argc, char *argv[])
{
	int n = argc > 1 ? atoi(argv[1]) : 5000000;

	if (n < BLOCKS)
		n = BLOCKS;
	uncontended(n);
	contended(n / 5);
	handoff(n / 50);
	array_fill();
	return 0;
}
