/*
 * pool_tasks.c - task functions of bench/bench_pool: a tiny task, one that
 * only measures its argument, and a line count over a range of the file
 * the workers hold as fd BP_FD.
 */
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include <pmclient.h>

#define BP_FD		10
#define BP_BUF		(1u << 20)

pm_task_fn tiny, arg_len, count_range;

/* Returns its 8-byte argument plus one. */
int
tiny(pm_task *t)
{
	size_t len;
	const void *a = pm_task_arg(t, &len);
	int64_t v = 0;

	if (len == sizeof(v))
		memcpy(&v, a, sizeof(v));
	v++;
	return pm_task_return(t, &v, sizeof(v));
}

/* Returns the argument's length (data moved one way). */
int
arg_len(pm_task *t)
{
	size_t len;
	int64_t v;

	pm_task_arg(t, &len);
	v = (int64_t)len;
	return pm_task_return(t, &v, sizeof(v));
}

int
count_range(pm_task *t)
{
	static char buf[BP_BUF];
	int64_t r[2], lines = 0;
	const char *p, *end;
	size_t alen;
	const void *a = pm_task_arg(t, &alen);
	ssize_t n;

	if (alen != sizeof(r))
		return pm_task_fail(t, "bad range");
	memcpy(r, a, sizeof(r));
	while (r[1] > 0) {
		n = pread(BP_FD, buf, r[1] < BP_BUF ? (size_t)r[1] : BP_BUF,
		    (off_t)r[0]);
		if (n == -1 && errno == EINTR)
			continue;
		if (n <= 0)
			return pm_task_fail(t, "pread: %s", strerror(errno));
		for (p = buf, end = buf + n;
		    (p = memchr(p, '\n', (size_t)(end - p))) != NULL; p++)
			lines++;
		r[0] += n;
		r[1] -= n;
	}
	return pm_task_return(t, &lines, sizeof(lines));
}
