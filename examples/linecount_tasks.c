/*
 * linecount_tasks.c - the task of examples/linecount: count the newlines
 * of a byte range of the file every pool worker holds as fd LC_FD.
 * Nothing is copied through a socket: the worker preads the file itself.
 */
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include <pmclient.h>

#define LC_FD		10		/* the file, in every worker */
#define LC_BUF		(1u << 20)	/* bytes per pread */

pm_task_fn count_range;

struct lc_range {
	int64_t	 off;
	int64_t	 len;
};

int
count_range(pm_task *t)
{
	static char buf[LC_BUF];
	struct lc_range r;
	const char *p, *end;
	size_t alen;
	const void *a = pm_task_arg(t, &alen);
	int64_t lines = 0;
	ssize_t n;

	if (a == NULL || alen != sizeof(r))
		return pm_task_fail(t, "count_range: bad argument");
	memcpy(&r, a, sizeof(r));
	while (r.len > 0) {
		n = pread(LC_FD, buf, r.len < LC_BUF ? (size_t)r.len : LC_BUF,
		    (off_t)r.off);
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1)
			return pm_task_fail(t, "pread at %lld: %s",
			    (long long)r.off, strerror(errno));
		if (n == 0)
			break;
		for (p = buf, end = buf + n;
		    (p = memchr(p, '\n', (size_t)(end - p))) != NULL; p++)
			lines++;
		r.off += n;
		r.len -= n;
	}
	return pm_task_return(t, &lines, sizeof(lines)) == 0 ? 0 : 1;
}
