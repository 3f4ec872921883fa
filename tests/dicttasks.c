/*
 * dicttasks.c - task functions the dict suite runs in workers
 * (build/tests/dicttasks.so): Pool tasks that update a shared dict
 * through pm_task_conn().  Not linked to libpmclient: pm_* resolve against
 * pmd when it is loaded.
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "pmclient.h"
#include "taskutil.h"

pm_task_fn dict_incr_n;

/* "NAME KEY N": adds 1 to KEY of dict NAME, N times; returns the last
 * value seen (int64). */
int
dict_incr_n(pm_task *t)
{
	char buf[512], name[256], key[128];
	int64_t v = 0;
	unsigned n, i;
	pm_dict *d;
	pm_conn *c;
	int r;

	arg_str(t, buf, sizeof(buf));
	if (sscanf(buf, "%255s %127s %u", name, key, &n) != 3)
		return pm_task_fail(t, "bad argument '%s'", buf);
	if ((c = pm_task_conn(t)) == NULL)
		return pm_task_fail(t, "pm_task_conn: %s", pm_last_message());
	if ((d = pm_dict_open(c, name, 0)) == NULL)
		return pm_task_fail(t, "open %s: %s", name, pm_last_message());
	for (i = 0; i < n; i++)
		if ((r = pm_dict_incr(d, key, strlen(key), 1, &v)) != PM_OK) {
			pm_dict_free(d);
			return pm_task_fail(t, "incr: %d %s", r,
			    pm_last_message());
		}
	pm_dict_free(d);
	pm_task_return(t, &v, sizeof(v));
	return 0;
}
