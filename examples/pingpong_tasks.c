/*
 * pingpong_tasks.c - the workers of examples/pingpong, each given one end
 * of a pipe as fd 3:
 *   sender    sends the lines of its argument, then "END" (Python's
 *             multiprocessing sender example);
 *   receiver  prints what it receives until "END";
 *   pong      answers "ping N" with "pong N"; a message that brings an
 *             fd gets a line written into that fd; ends with the pipe.
 */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <pmclient.h>

#define PP_FD		3	/* the pipe end, in every worker */
#define PP_WAIT		60.0	/* seconds to wait for a message */

pm_task_fn sender, receiver, pong;

int
sender(pm_task *t)
{
	const char *msgs, *p, *nl;
	size_t len;
	pm_pipe *out;

	if ((out = pm_pipe_adopt(PP_FD)) == NULL)
		return pm_task_fail(t, "adopt: %s", pm_last_message());
	msgs = pm_task_arg(t, &len);
	for (p = msgs; p != NULL && p < msgs + len; p = nl + 1) {
		if ((nl = memchr(p, '\n', (size_t)(msgs + len - p))) == NULL)
			nl = msgs + len;
		if (pm_pipe_send(out, p, (size_t)(nl - p)) != PM_OK)
			break;
	}
	pm_pipe_send(out, "END", 3);
	pm_pipe_free(out);
	return 0;
}

int
receiver(pm_task *t)
{
	pm_pipe *in;
	pm_bytes m;

	if ((in = pm_pipe_adopt(PP_FD)) == NULL)
		return pm_task_fail(t, "adopt: %s", pm_last_message());
	while (pm_pipe_recv(in, &m, PP_WAIT) == PM_OK) {
		if (m.len == 3 && memcmp(m.data, "END", 3) == 0) {
			pm_bytes_free(&m);
			break;
		}
		printf("receiver got: %.*s\n", (int)m.len, (char *)m.data);
		fflush(stdout);
		pm_bytes_free(&m);
	}
	pm_pipe_free(in);
	return 0;
}

int
pong(pm_task *t)
{
	char reply[64];
	size_t nfds;
	pm_pipe *p;
	pm_bytes m;
	int fd, n;

	if ((p = pm_pipe_adopt(PP_FD)) == NULL)
		return pm_task_fail(t, "adopt: %s", pm_last_message());
	while (pm_pipe_recv_fds(p, &m, &fd, 1, &nfds, PP_WAIT) == PM_OK) {
		if (nfds == 1) {
			n = snprintf(reply, sizeof(reply), "written by worker "
			    "%d through the fd it was sent\n", (int)getpid());
			if (write(fd, reply, (size_t)n) != n)
				n = -1;
			close(fd);
			pm_pipe_send(p, n > 0 ? "done" : "failed", 4);
		} else if (m.len > 5 && memcmp(m.data, "ping ", 5) == 0) {
			n = snprintf(reply, sizeof(reply), "pong %.*s",
			    (int)(m.len - 5), (char *)m.data + 5);
			pm_pipe_send(p, reply, (size_t)n);
		}
		pm_bytes_free(&m);
	}
	pm_pipe_free(p);
	return 0;
}
