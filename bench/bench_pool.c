/*
 * bench_pool.c - Pool throughput against a pmd: apply_async of a tiny task
 * with many in flight, map of 1,000,000 tiny tasks, map of 1,000 x 1 MiB
 * items, and a line count of a file.  Prints "name median unit" lines for
 * run-pool.sh; 2 workers, like the Python side.
 *
 *   bench_pool MODULE FILE [RUNS]
 */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "benchutil.h"
#include <pmclient.h>

#define BP_WORKERS	2
#define BP_APPLY_N	200000
#define BP_MAP_N	1000000
#define BP_BIG_N	1000
#define BP_BIG_LEN	(1u << 20)
#define BP_RANGE	(16ll << 20)
#define BP_FD		10
#define BP_MAX_RUNS	21

static size_t cb_done;

static void
done_cb(pm_result *r, void *ud)
{
	cb_done++;
	pm_result_free(r);
}

static double
run_apply(pm_conn *c, pm_pool *p)
{
	int64_t v = 1;
	double t0;
	size_t i;

	cb_done = 0;
	t0 = bench_now();
	for (i = 0; i < BP_APPLY_N; i++)
		if (pm_pool_apply_async(p, "tiny", &v, sizeof(v), done_cb,
		    NULL) == NULL)
			bench_die("apply_async");
	while (cb_done < BP_APPLY_N)
		if (pm_dispatch(c, -1) != PM_OK)
			bench_die("dispatch");
	return (bench_now() - t0) / BP_APPLY_N * 1e6;
}

static double
run_map(pm_pool *p, pm_bytes *in, pm_bytes *out)
{
	double t0, dt;
	size_t i;

	t0 = bench_now();
	if (pm_pool_map(p, "tiny", in, BP_MAP_N, 0, out) != PM_OK)
		bench_die("map");
	dt = bench_now() - t0;
	for (i = 0; i < BP_MAP_N; i++)
		free(out[i].data);
	return dt / BP_MAP_N * 1e6;
}

static double
run_big(pm_pool *p, pm_bytes *in, pm_bytes *out)
{
	double t0, dt;
	size_t i;

	t0 = bench_now();
	if (pm_pool_map(p, "arg_len", in, BP_BIG_N, 0, out) != PM_OK)
		bench_die("map big");
	dt = bench_now() - t0;
	for (i = 0; i < BP_BIG_N; i++)
		free(out[i].data);
	return (double)BP_BIG_N * BP_BIG_LEN / dt / 1e9;
}

static double
run_lines(pm_pool *p, pm_bytes *in, size_t n, int64_t *lines)
{
	pm_bytes *out = calloc(n, sizeof(*out));
	double t0, dt;
	int64_t v;
	size_t i;

	t0 = bench_now();
	if (out == NULL || pm_pool_map(p, "count_range", in, n, 1, out) !=
	    PM_OK)
		bench_die("linecount");
	dt = bench_now() - t0;
	*lines = 0;
	for (i = 0; i < n; i++) {
		memcpy(&v, out[i].data, sizeof(v));
		*lines += v;
		free(out[i].data);
	}
	free(out);
	return dt;
}

int
main(int argc, char *argv[])
{
	double apply[BP_MAX_RUNS], map[BP_MAX_RUNS], big[BP_MAX_RUNS],
	    lines[BP_MAX_RUNS];
	pm_bytes *in, *out, *bin, *rin;
	int64_t *vals, (*ranges)[2], nl = 0;
	pm_pool_opts o;
	struct stat st;
	pm_conn *c;
	pm_pool *p;
	char *blob;
	size_t i, nr;
	int runs, r, fd, child = BP_FD;

	if (argc < 3) {
		fprintf(stderr, "usage: bench_pool MODULE FILE [RUNS]\n");
		return 2;
	}
	runs = argc > 3 ? atoi(argv[3]) : 5;
	if (runs < 1 || runs > BP_MAX_RUNS)
		runs = 5;
	if ((fd = open(argv[2], O_RDONLY | O_CLOEXEC)) == -1 ||
	    fstat(fd, &st) == -1) {
		perror(argv[2]);
		return 1;
	}
	if ((c = pm_connect(NULL)) == NULL)
		bench_die("connect");
	memset(&o, 0, sizeof(o));
	o.processes = BP_WORKERS;
	o.module = argv[1];
	if ((p = pm_pool_new_fds(c, &o, &child, &fd, 1)) == NULL)
		bench_die("pool");
	vals = calloc(BP_MAP_N, sizeof(*vals));
	in = calloc(BP_MAP_N, sizeof(*in));
	out = calloc(BP_MAP_N, sizeof(*out));
	bin = calloc(BP_BIG_N, sizeof(*bin));
	blob = malloc(BP_BIG_LEN);
	nr = (size_t)((st.st_size + BP_RANGE - 1) / BP_RANGE);
	ranges = calloc(nr + 1, sizeof(*ranges));
	rin = calloc(nr + 1, sizeof(*rin));
	if (!vals || !in || !out || !bin || !blob || !ranges || !rin)
		bench_die("out of memory");
	memset(blob, 'x', BP_BIG_LEN);
	for (i = 0; i < BP_MAP_N; i++) {
		vals[i] = (int64_t)i;
		in[i].data = &vals[i];
		in[i].len = sizeof(vals[i]);
	}
	for (i = 0; i < BP_BIG_N; i++) {
		bin[i].data = blob;
		bin[i].len = BP_BIG_LEN;
	}
	for (i = 0; i < nr; i++) {
		ranges[i][0] = (int64_t)i * BP_RANGE;
		ranges[i][1] = st.st_size - ranges[i][0] < BP_RANGE ?
		    st.st_size - ranges[i][0] : BP_RANGE;
		rin[i].data = ranges[i];
		rin[i].len = sizeof(ranges[i]);
	}
	run_apply(c, p);		/* warm up */
	for (r = 0; r < runs; r++) {
		apply[r] = run_apply(c, p);
		map[r] = run_map(p, in, out);
		big[r] = run_big(p, bin, out);
		lines[r] = run_lines(p, rin, nr, &nl);
	}
	printf("apply_async_us %.4f\n", bench_median(apply, runs));
	printf("map_us %.4f\n", bench_median(map, runs));
	printf("map_1mib_gbs %.3f\n", bench_median(big, runs));
	printf("linecount_s %.4f\n", bench_median(lines, runs));
	printf("linecount_lines %lld\n", (long long)nl);
	pm_pool_close(p);
	pm_pool_join(p);
	pm_pool_free(p);
	pm_disconnect(c);
	return 0;
}
