/*
 * linecount.c - count the lines of a large file with a Pool: every worker
 * gets the file's fd (pm_pool_new_fds) and counts a byte range with
 * pread, so no file data goes through a socket; then the same count done
 * sequentially here, and both times.  Exit 1 when the counts differ.
 *
 *   linecount FILE [PROCESSES [MODULE]]
 *   MODULE defaults to linecount_tasks.so next to this program.
 */
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <pmclient.h>

#define LC_FD		10		/* the file's number in every worker */
#define LC_RANGE	(16ll << 20)	/* bytes per task */
#define LC_BUF		(1u << 20)

struct lc_range {
	int64_t	 off;
	int64_t	 len;
};

static double
now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static int
fail(const char *what)
{
	fprintf(stderr, "linecount: %s: %s (%s)\n", what, pm_last_message(),
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
	if ((size_t)snprintf(buf, size, "%s/linecount_tasks.so",
	    dirname(exe)) >= size)
		return -1;
	return 0;
}

static int64_t
count_sequential(int fd)
{
	static char buf[LC_BUF];
	int64_t lines = 0;
	off_t off = 0;
	const char *p, *end;
	ssize_t n;

	while ((n = pread(fd, buf, sizeof(buf), off)) != 0) {
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1)
			return -1;
		for (p = buf, end = buf + n;
		    (p = memchr(p, '\n', (size_t)(end - p))) != NULL; p++)
			lines++;
		off += n;
	}
	return lines;
}

int
main(int argc, char *argv[])
{
	char module[PATH_MAX];
	struct lc_range *ranges;
	struct stat st;
	pm_pool_opts o;
	pm_bytes *in, *out;
	pm_conn *c;
	pm_pool *p;
	int64_t total = 0, seq, v;
	size_t n, i;
	int fd, child = LC_FD, rc;
	double t0, tpool, tseq;

	if (argc < 2 || argc > 4) {
		fprintf(stderr, "usage: linecount FILE [PROCESSES [MODULE]]\n");
		return 2;
	}
	if (argc == 4)
		snprintf(module, sizeof(module), "%s", argv[3]);
	else if (default_module(module, sizeof(module)) == -1) {
		fprintf(stderr, "linecount: cannot find linecount_tasks.so\n");
		return 1;
	}
	if ((fd = open(argv[1], O_RDONLY | O_CLOEXEC)) == -1 ||
	    fstat(fd, &st) == -1) {
		fprintf(stderr, "linecount: %s: %s\n", argv[1],
		    strerror(errno));
		return 1;
	}
	n = (size_t)((st.st_size + LC_RANGE - 1) / LC_RANGE);
	ranges = calloc(n ? n : 1, sizeof(*ranges));
	in = calloc(n ? n : 1, sizeof(*in));
	out = calloc(n ? n : 1, sizeof(*out));
	if (ranges == NULL || in == NULL || out == NULL) {
		fprintf(stderr, "linecount: out of memory\n");
		return 1;
	}
	for (i = 0; i < n; i++) {
		ranges[i].off = (int64_t)i * LC_RANGE;
		ranges[i].len = st.st_size - ranges[i].off < LC_RANGE ?
		    st.st_size - ranges[i].off : LC_RANGE;
		in[i].data = &ranges[i];
		in[i].len = sizeof(ranges[i]);
	}
	if ((c = pm_connect(NULL)) == NULL)
		return fail("connect");
	memset(&o, 0, sizeof(o));
	o.processes = argc >= 3 ? atoi(argv[2]) : 0;
	o.module = module;
	if ((p = pm_pool_new_fds(c, &o, &child, &fd, 1)) == NULL)
		return fail("pool");

	t0 = now();
	rc = pm_pool_map(p, "count_range", in, n, 1, out);
	tpool = now() - t0;
	if (rc != PM_OK)
		return fail("map");
	for (i = 0; i < n; i++) {
		memcpy(&v, out[i].data, sizeof(v));
		total += v;
		pm_bytes_free(&out[i]);
	}
	pm_pool_close(p);
	pm_pool_join(p);
	pm_pool_free(p);
	pm_disconnect(c);

	t0 = now();
	seq = count_sequential(fd);
	tseq = now() - t0;
	close(fd);
	printf("%s: %lld bytes, %zu ranges\n", argv[1],
	    (long long)st.st_size, n);
	printf("  pool (%d workers): %lld lines in %.3f s\n",
	    o.processes ? o.processes : pm_cpu_count(), (long long)total,
	    tpool);
	printf("  sequential:       %lld lines in %.3f s\n", (long long)seq,
	    tseq);
	free(ranges);
	free(in);
	free(out);
	if (seq != total) {
		fprintf(stderr, "linecount: MISMATCH: pool %lld, sequential "
		    "%lld\n", (long long)total, (long long)seq);
		return 1;
	}
	printf("  counts agree\n");
	return 0;
}
