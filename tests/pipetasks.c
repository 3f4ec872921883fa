/*
 * pipetasks.c - task functions the pipe suite runs in workers
 * (build/tests/pipetasks.so): each adopts the pipe end it was given as an
 * fd and echoes, counts, generates or probes messages.  Not linked to
 * libpmclient: pm_* resolve against pmd when it is loaded.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pmclient.h"
#include "taskutil.h"

#define PT_WAIT		120.0		/* seconds a worker waits for a message */

pm_task_fn pipe_echo, pipe_count, pipe_gen, pipe_probe, pipe_dial;

static pm_pipe *
adopt_arg(pm_task *t, char *buf, size_t cap, int *fd)
{
	pm_pipe *p;

	arg_str(t, buf, cap);
	if (sscanf(buf, "%d", fd) != 1) {
		pm_task_fail(t, "bad argument '%s'", buf);
		return NULL;
	}
	if ((p = pm_pipe_adopt(*fd)) == NULL)
		pm_task_fail(t, "adopt %d: %s", *fd, pm_last_message());
	return p;
}

/* "FD": sends back every message, with its fds, until the other end
 * closes. */
int
pipe_echo(pm_task *t)
{
	int fds[PM_PIPE_MAX_FDS], fd, r;
	char buf[64];
	size_t nfds, i;
	pm_bytes m;
	pm_pipe *p;

	if ((p = adopt_arg(t, buf, sizeof(buf), &fd)) == NULL)
		return 1;
	while ((r = pm_pipe_recv_fds(p, &m, fds, PM_PIPE_MAX_FDS, &nfds,
	    PT_WAIT)) == PM_OK) {
		r = pm_pipe_send_fds(p, m.data, m.len, fds, nfds);
		pm_bytes_free(&m);
		for (i = 0; i < nfds; i++)
			close(fds[i]);
		if (r != PM_OK)
			break;
	}
	pm_pipe_free(p);
	if (r != PM_ECLOSED)
		return pm_task_fail(t, "echo: %d %s", r, pm_last_message());
	return 0;
}

/* "FD N ECHO": receives N messages holding 0..N-1 (uint32) in order,
 * then, if ECHO, sends 0..N-1 back; then waits for the end. */
int
pipe_count(pm_task *t)
{
	unsigned n, echo, i;
	uint32_t v;
	char buf[64];
	pm_bytes m;
	pm_pipe *p;
	int fd, r, ok;

	if ((p = adopt_arg(t, buf, sizeof(buf), &fd)) == NULL)
		return 1;
	if (sscanf(buf, "%*d %u %u", &n, &echo) != 2) {
		pm_pipe_free(p);
		return pm_task_fail(t, "bad argument '%s'", buf);
	}
	for (i = 0; i < n; i++) {
		if ((r = pm_pipe_recv(p, &m, PT_WAIT)) != PM_OK) {
			pm_pipe_free(p);
			return pm_task_fail(t, "recv %u: %d %s", i, r,
			    pm_last_message());
		}
		ok = m.len == sizeof(v);
		if (ok)
			memcpy(&v, m.data, sizeof(v));
		pm_bytes_free(&m);
		if (!ok || v != i) {
			pm_pipe_free(p);
			return pm_task_fail(t, "message %u out of order", i);
		}
	}
	for (i = 0; echo && i < n; i++) {
		v = i;
		if ((r = pm_pipe_send(p, &v, sizeof(v))) != PM_OK) {
			pm_pipe_free(p);
			return pm_task_fail(t, "send %u: %d", i, r);
		}
	}
	r = pm_pipe_recv(p, &m, PT_WAIT);
	pm_pipe_free(p);
	if (r != PM_ECLOSED)
		return pm_task_fail(t, "after %u: %d, not the end", n, r);
	pm_task_return(t, "ok", 2);
	return 0;
}

/* "FD N": sends 0..N-1 (uint32) and ends. */
int
pipe_gen(pm_task *t)
{
	unsigned n, i;
	uint32_t v;
	char buf[64];
	pm_pipe *p;
	int fd, r;

	if ((p = adopt_arg(t, buf, sizeof(buf), &fd)) == NULL)
		return 1;
	if (sscanf(buf, "%*d %u", &n) != 1) {
		pm_pipe_free(p);
		return pm_task_fail(t, "bad argument '%s'", buf);
	}
	for (i = 0; i < n; i++) {
		v = i;
		if ((r = pm_pipe_send(p, &v, sizeof(v))) != PM_OK) {
			pm_pipe_free(p);
			return pm_task_fail(t, "send %u: %d", i, r);
		}
	}
	pm_pipe_free(p);
	return 0;
}

/* "FD": tries a send ("from worker"), then a receive; returns
 * "send=CODE recv=CODE[:message]". */
int
pipe_probe(pm_task *t)
{
	char buf[64], res[256];
	int fd, rs, rr;
	pm_bytes m;
	pm_pipe *p;

	if ((p = adopt_arg(t, buf, sizeof(buf), &fd)) == NULL)
		return 1;
	rs = pm_pipe_send(p, "from worker", 11);
	rr = pm_pipe_recv(p, &m, PT_WAIT);
	if (rr == PM_OK) {
		snprintf(res, sizeof(res), "send=%d recv=%d:%.*s", rs, rr,
		    (int)m.len, (char *)m.data);
		pm_bytes_free(&m);
	} else
		snprintf(res, sizeof(res), "send=%d recv=%d", rs, rr);
	pm_pipe_free(p);
	pm_task_return(t, res, strlen(res));
	return 0;
}

/* "NAME": connects to the listener NAME, checks that pmd says the peer
 * is the client that started this worker, sends its pid and waits for
 * the end. */
int
pipe_dial(pm_task *t)
{
	char name[256];
	pid_t me = getpid(), peer = 0;
	uid_t uid;
	pm_bytes m;
	pm_pipe *p;
	pm_conn *c;
	int r;

	arg_str(t, name, sizeof(name));
	if ((c = pm_task_conn(t)) == NULL)
		return pm_task_fail(t, "pm_task_conn: %s", pm_last_message());
	if ((p = pm_pipe_connect(c, name, PT_WAIT)) == NULL)
		return pm_task_fail(t, "connect %s: %s", name,
		    pm_last_message());
	if (pm_pipe_peer(p, &peer, &uid) != PM_OK ||
	    peer != pm_task_parent_pid(t) || uid != getuid()) {
		pm_pipe_free(p);
		return pm_task_fail(t, "peer %d, want %d", (int)peer,
		    (int)pm_task_parent_pid(t));
	}
	r = pm_pipe_send(p, &me, sizeof(me));
	if (r == PM_OK)
		r = pm_pipe_recv(p, &m, PT_WAIT);
	pm_pipe_free(p);
	if (r != PM_ECLOSED)
		return pm_task_fail(t, "send or the end: %d", r);
	return 0;
}
