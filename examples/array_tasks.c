/*
 * array_tasks.c - the task of examples/array: fill a slice of the shared
 * array of doubles the worker was given as fd ARRAY_FD (an anonymous
 * pm_shm, adopted here: no name, no pmd involved in the sharing).
 */
#include <stdint.h>
#include <string.h>

#include <pmclient.h>

#define ARRAY_FD	3

pm_task_fn fill;

struct slice {
	uint64_t	 first;
	uint64_t	 count;
};

int
fill(pm_task *t)
{
	struct slice s;
	size_t len, n;
	const void *a = pm_task_arg(t, &len);
	pm_shm *m;
	double *v;
	uint64_t i;

	if (len != sizeof(s))
		return pm_task_fail(t, "want a slice");
	memcpy(&s, a, sizeof(s));
	if ((m = pm_shm_adopt(ARRAY_FD)) == NULL)
		return pm_task_fail(t, "adopt: %s", pm_last_message());
	n = pm_shm_size(m) / sizeof(double);
	if (s.first > n || s.count > n - s.first)
		return pm_task_fail(t, "slice out of the array");
	v = pm_shm_ptr(m);
	for (i = s.first; i < s.first + s.count; i++)
		v[i] = (double)i * 0.5;
	pm_shm_free(m);
	return 0;
}
