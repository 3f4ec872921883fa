/*
 * array.c - an anonymous shared array (Python's RawArray) filled in
 * parallel: the array is a pm_shm made here with no name, and each
 * process is given its fd (pm_process_set_fd) and a slice to fill.  The
 * parent then reads every element where the workers wrote it.  Exit 1
 * unless every element is right.
 *
 *   array [N [PROCESSES [MODULE]]]    N doubles (4,000,000), 4 processes
 *   MODULE defaults to array_tasks.so next to this program.
 */
#include <libgen.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <pmclient.h>

#define ARRAY_FD	3		/* the array's fd in every worker */
#define MAX_PROCS	64
#define JOIN_TIMEOUT	120.0

struct slice {
	uint64_t	 first;
	uint64_t	 count;
};

static int
fail(const char *what)
{
	fprintf(stderr, "array: %s: %s (%s)\n", what, pm_last_message(),
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
	return (size_t)snprintf(buf, size, "%s/array_tasks.so",
	    dirname(exe)) >= size ? -1 : 0;
}

int
main(int argc, char *argv[])
{
	char mod[PATH_MAX];
	pm_process *ps[MAX_PROCS];
	struct slice s;
	pm_conn *c;
	pm_shm *arr;
	double *v;
	uint64_t n = argc > 1 ? strtoull(argv[1], NULL, 0) : 4000000, i;
	int np = argc > 2 ? atoi(argv[2]) : 4, k, code, bad = 0;

	if (n == 0 || np < 1 || np > MAX_PROCS) {
		fprintf(stderr, "usage: array [N [PROCESSES [MODULE]]]\n");
		return 2;
	}
	if (argc > 3)
		snprintf(mod, sizeof(mod), "%s", argv[3]);
	else if (default_module(mod, sizeof(mod)) == -1)
		return fail("module path");
	if ((c = pm_connect(NULL)) == NULL)
		return fail("connect");
	/* no name: made here, shared by fd; c is not even needed for it */
	if ((arr = pm_shm_open(NULL, NULL, n * sizeof(double), 0)) == NULL)
		return fail("shm");
	for (k = 0; k < np; k++) {
		s.first = n * (uint64_t)k / (uint64_t)np;
		s.count = n * (uint64_t)(k + 1) / (uint64_t)np - s.first;
		ps[k] = pm_process_new(c, mod, "fill", &s, sizeof(s));
		if (ps[k] == NULL ||
		    pm_process_set_fd(ps[k], ARRAY_FD, pm_shm_fd(arr)) !=
		    PM_OK || pm_process_start(ps[k]) != PM_OK)
			return fail("start");
	}
	for (k = 0; k < np; k++) {
		code = -1000;
		if (pm_process_join(ps[k], JOIN_TIMEOUT) == PM_OK)
			pm_process_exitcode(ps[k], &code);
		if (code != 0) {
			fprintf(stderr, "array: worker %d exited %d (%s)\n", k,
			    code, pm_process_error(ps[k]) ?
			    pm_process_error(ps[k]) : "");
			bad = 1;
		}
		pm_process_free(ps[k]);
	}
	v = pm_shm_ptr(arr);
	for (i = 0; i < n; i++)
		if (v[i] != (double)i * 0.5) {
			fprintf(stderr, "array: element %llu is %g\n",
			    (unsigned long long)i, v[i]);
			bad = 1;
			break;
		}
	printf("array: %llu doubles filled by %d processes, %s\n",
	    (unsigned long long)n, np, bad ? "WRONG" : "all right");
	pm_shm_free(arr);
	pm_disconnect(c);
	return bad;
}
