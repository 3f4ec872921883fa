/*
 * pingpong.c - pipes between processes (Python's Pipe()):
 *  1. Python's sender/receiver example: two workers, one on each end of a
 *     one-way pipe; the receiver prints what the sender sends.
 *  2. ping-pong between this process and a worker over a duplex pipe,
 *     with the round-trip time.
 *  3. an fd handed over the pipe: the worker writes a line into a file
 *     this process opened, and this process prints the file.
 *
 *   pingpong [MODULE]    MODULE defaults to pingpong_tasks.so next to it.
 */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <pmclient.h>

#define PP_FD		3		/* the pipe end, in every worker */
#define PP_ROUNDS	1000

static char module[PATH_MAX];

static int
fail(const char *what)
{
	fprintf(stderr, "pingpong: %s: %s (%s)\n", what, pm_last_message(),
	    pm_strerror(pm_last_error()));
	return 1;
}

static double
now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* A worker running fn with end as its fd 3; this process's copy of the
 * end is closed once the worker has its own. */
static pm_process *
start(pm_conn *c, const char *fn, pm_pipe *end, const char *arg)
{
	pm_process *w;

	w = pm_process_new(c, module, fn, arg, arg ? strlen(arg) : 0);
	if (w == NULL || pm_process_set_fd(w, PP_FD, pm_pipe_fd(end)) !=
	    PM_OK || pm_process_start(w) != PM_OK) {
		pm_process_free(w);
		return NULL;
	}
	pm_pipe_free(end);
	return w;
}

static int
finish(pm_process *w)
{
	int code = -1;

	pm_process_join(w, -1);
	pm_process_exitcode(w, &code);
	pm_process_free(w);
	return code;
}

static int
sender_receiver(pm_conn *c)
{
	const char *msgs = "hello\nhey\nhru?";
	pm_process *s, *r;
	pm_pipe *in, *out;

	printf("== sender and receiver (a one-way pipe between two "
	    "workers)\n");
	fflush(stdout);
	if (pm_pipe_new(&in, &out, 0) != PM_OK)
		return fail("pipe");
	if ((r = start(c, "receiver", in, NULL)) == NULL ||
	    (s = start(c, "sender", out, msgs)) == NULL)
		return fail("start");
	if (finish(s) != 0 || finish(r) != 0) {
		fprintf(stderr, "pingpong: a worker failed\n");
		return 1;
	}
	return 0;
}

static int
ping_pong(pm_pipe *p)
{
	char ping[32];
	pm_bytes m;
	double t0;
	int i, n;

	printf("== ping-pong with a worker over a duplex pipe\n");
	t0 = now();
	for (i = 0; i < PP_ROUNDS; i++) {
		n = snprintf(ping, sizeof(ping), "ping %d", i);
		if (pm_pipe_send(p, ping, (size_t)n) != PM_OK ||
		    pm_pipe_recv(p, &m, 10) != PM_OK)
			return fail("ping");
		if (i == 0 || i == PP_ROUNDS - 1)
			printf("sent '%s', got '%.*s'\n", ping, (int)m.len,
			    (char *)m.data);
		pm_bytes_free(&m);
	}
	printf("%d round trips, %.1f us each\n", PP_ROUNDS,
	    (now() - t0) / PP_ROUNDS * 1e6);
	return 0;
}

static int
fd_handover(pm_pipe *p)
{
	char path[] = "/tmp/pingpong.XXXXXX", buf[256];
	pm_bytes m;
	ssize_t n;
	int fd;

	printf("== an fd sent over the pipe\n");
	if ((fd = mkstemp(path)) == -1) {
		perror("pingpong: mkstemp");
		return 1;
	}
	unlink(path);
	if (pm_pipe_send_fds(p, "here is a file", 14, &fd, 1) != PM_OK ||
	    pm_pipe_recv(p, &m, 10) != PM_OK)
		return fail("fd");
	pm_bytes_free(&m);
	if ((n = pread(fd, buf, sizeof(buf) - 1, 0)) <= 0) {
		fprintf(stderr, "pingpong: the worker wrote nothing\n");
		return 1;
	}
	buf[n] = '\0';
	printf("the file now says: %s", buf);
	close(fd);
	return 0;
}

int
main(int argc, char *argv[])
{
	char exe[PATH_MAX];
	pm_process *w;
	pm_pipe *a, *b;
	pm_conn *c;
	ssize_t n;
	int rc;

	if (argc > 2) {
		fprintf(stderr, "usage: pingpong [MODULE]\n");
		return 2;
	}
	if (argc == 2)
		snprintf(module, sizeof(module), "%s", argv[1]);
	else if ((n = readlink("/proc/self/exe", exe, sizeof(exe) - 1)) > 0) {
		exe[n] = '\0';
		snprintf(module, sizeof(module), "%s/pingpong_tasks.so",
		    dirname(exe));
	}
	if ((c = pm_connect(NULL)) == NULL)
		return fail("connect");
	if ((rc = sender_receiver(c)) != 0)
		return rc;
	if (pm_pipe_new(&a, &b, 1) != PM_OK)
		return fail("pipe");
	if ((w = start(c, "pong", b, NULL)) == NULL)
		return fail("start pong");
	rc = ping_pong(a);
	if (rc == 0)
		rc = fd_handover(a);
	pm_pipe_free(a);		/* the worker sees the end */
	if (finish(w) != 0)
		rc = 1;
	pm_disconnect(c);
	if (rc == 0)
		printf("== pingpong: ok\n");
	return rc;
}
