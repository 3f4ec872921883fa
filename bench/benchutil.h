/*
 * benchutil.h - the timing, statistics and bare-side helpers the bench
 * programs share (bench_process.c, bench_pipe.c, bench_queue.c, ...):
 * static inline, each program includes it.
 */
#ifndef PM_BENCHUTIL_H
#define PM_BENCHUTIL_H

#include <sys/socket.h>
#include <sys/types.h>
#include <sys/wait.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "pmclient.h"

#define BENCH_ECHO_MAX	4096	/* the most bytes of one echo round trip */
#define BENCH_WARM_RT	200	/* round trips of each side before blocks */

/* CLOCK_MONOTONIC in seconds. */
static inline double
bench_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* CLOCK_MONOTONIC in microseconds. */
static inline double
bench_now_us(void)
{
	return bench_now() * 1e6;
}

/* Says what failed and pmd's last message, and exits 1. */
static inline void __attribute__((noreturn))
bench_die(const char *what)
{
	fprintf(stderr, "%s: %s: %s\n", program_invocation_short_name, what,
	    pm_last_message());
	exit(1);
}

static inline int
bench_cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

/* Sorts v; its median. */
static inline double
bench_median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof(*v), bench_cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* Sorts v (microseconds) and prints median, p90, min and mean under
 * prefix, as "key value" lines. */
static inline void
bench_print_stats(const char *prefix, double *v, int n)
{
	double sum = 0;
	int i;

	printf("%s_median_us %.1f\n", prefix, bench_median(v, n));
	for (i = 0; i < n; i++)
		sum += v[i];
	printf("%s_p90_us %.1f\n", prefix, v[(int)(0.9 * (n - 1))]);
	printf("%s_min_us %.1f\n", prefix, v[0]);
	printf("%s_mean_us %.1f\n", prefix, sum / n);
	printf("%s_runs %d\n", prefix, n);
}

/* The field ("Pss", "Private_Dirty"...) of pid's /proc/PID/smaps_rollup
 * in kB, or -1. */
static inline long
bench_rollup_kb(pid_t pid, const char *field)
{
	char path[64], line[256];
	size_t len = strlen(field);
	FILE *f;
	long kb = -1;

	snprintf(path, sizeof(path), "/proc/%ld/smaps_rollup", (long)pid);
	if ((f = fopen(path, "re")) == NULL)
		return -1;
	while (fgets(line, sizeof(line), f) != NULL)
		if (strncmp(line, field, len) == 0 && line[len] == ':' &&
		    sscanf(line + len + 1, "%ld kB", &kb) == 1)
			break;
	fclose(f);
	return kb;
}

/* Pss of pid in kB, or -1. */
static inline long
bench_pss_kb(pid_t pid)
{
	return bench_rollup_kb(pid, "Pss");
}

/* USS of pid in kB: the pages mapped by pid alone (Private_Clean +
 * Private_Dirty), what one more such process adds; or -1. */
static inline long
bench_uss_kb(pid_t pid)
{
	long c = bench_rollup_kb(pid, "Private_Clean");
	long d = bench_rollup_kb(pid, "Private_Dirty");

	return c < 0 || d < 0 ? -1 : c + d;
}

/* Reads (wr 0) or writes len bytes of buf whole; exits on an error. */
static inline void
bench_full_io(int fd, void *buf, size_t len, int wr)
{
	size_t off = 0;
	ssize_t n;

	while (off < len) {
		n = wr ? write(fd, (char *)buf + off, len - off) :
		    read(fd, (char *)buf + off, len - off);
		if (n == -1 && errno == EINTR)
			continue;
		if (n <= 0)
			exit(1);
		off += (size_t)n;
	}
}

/* The bare side: a forked child echoing what it reads over a socketpair
 * until it reads end of file; *fdp is our end. */
static inline pid_t
bench_echo_start(int *fdp)
{
	char buf[BENCH_ECHO_MAX];
	int sp[2];
	ssize_t n;
	pid_t pid;

	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sp) == -1 ||
	    (pid = fork()) == -1)
		exit(1);
	if (pid == 0) {
		close(sp[0]);
		for (;;) {
			do {
				n = read(sp[1], buf, sizeof(buf));
			} while (n == -1 && errno == EINTR);
			if (n <= 0)
				_exit(0);
			bench_full_io(sp[1], buf, (size_t)n, 1);
		}
	}
	close(sp[1]);
	*fdp = sp[0];
	return pid;
}

/* n bare round trips of len bytes; microseconds per round trip. */
static inline double
bench_echo_block(int fd, size_t len, int n)
{
	char buf[BENCH_ECHO_MAX];
	double t0;
	int i;

	if (len > sizeof(buf))
		len = sizeof(buf);
	memset(buf, 'x', len);
	t0 = bench_now();
	for (i = 0; i < n; i++) {
		bench_full_io(fd, buf, len, 1);
		bench_full_io(fd, buf, len, 0);
	}
	return (bench_now() - t0) / n * 1e6;
}

/*
 * A round trip of len bytes next to the bare one, so that both see the
 * same machine: n of each (after a warm-up) in `blocks' alternating
 * blocks, op(arg, count) timing count of its own and returning
 * microseconds each.  Fills bare[], opv[] and ratio[] (opv / bare) per
 * block: their medians then say more than one long run (a noisy
 * neighbour skews one block, not the comparison).
 */
static inline void
bench_alternate(size_t len, int n, int blocks, double (*op)(void *, int),
    void *arg, double *bare, double *opv, double *ratio)
{
	int fd, st, i, per = n / blocks > 0 ? n / blocks : 1;
	pid_t pid = bench_echo_start(&fd);

	(void)bench_echo_block(fd, len, BENCH_WARM_RT);
	(void)op(arg, BENCH_WARM_RT);
	for (i = 0; i < blocks; i++) {
		bare[i] = bench_echo_block(fd, len, per);
		opv[i] = op(arg, per);
		ratio[i] = opv[i] / bare[i];
	}
	close(fd);
	waitpid(pid, &st, 0);
}

#endif
