/*
 * pipe_tasks.c - the workers of bench/bench_pipe, each given a pipe end
 * as fd 3: pipe_echo sends every message back; pipe_sink takes messages
 * until an empty one and then answers "ok".
 */
#include <pmclient.h>

#define BP_FD	3

pm_task_fn pipe_echo, pipe_sink;

int
pipe_echo(pm_task *t)
{
	pm_pipe *p;
	pm_bytes m;

	if ((p = pm_pipe_adopt(BP_FD)) == NULL)
		return pm_task_fail(t, "adopt: %s", pm_last_message());
	while (pm_pipe_recv(p, &m, -1) == PM_OK) {
		pm_pipe_send(p, m.data, m.len);
		pm_bytes_free(&m);
	}
	pm_pipe_free(p);
	return 0;
}

int
pipe_sink(pm_task *t)
{
	pm_pipe *p;
	pm_bytes m;
	size_t len;

	if ((p = pm_pipe_adopt(BP_FD)) == NULL)
		return pm_task_fail(t, "adopt: %s", pm_last_message());
	while (pm_pipe_recv(p, &m, -1) == PM_OK) {
		len = m.len;
		pm_bytes_free(&m);
		if (len == 0)
			pm_pipe_send(p, "ok", 2);
	}
	pm_pipe_free(p);
	return 0;
}
