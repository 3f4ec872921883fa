/*
 * runner.c - start method spawn.  A worker cloned from the forker that
 * was asked to spawn execs pmd afresh in runner mode (pmd --run-worker),
 * handing on its fds and its request; the runner, a new image with a new
 * address-space layout and nothing of the forker's memory, then sets the
 * worker up as worker.c does any other (worker_run).  The pid stays the
 * same across the exec: the broker already knows it, and reaps it.
 */
#include <sys/stat.h>
#include <sys/types.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pmd.h"

#define RUNNER_FD0	3	/* the runner's first fd: fds[0] */
#define RUNNER_ARGS	16
#define RUNNER_FAILED	127	/* exit status: no channel to tell */

/*
 * Moves fds[0..n-1] to RUNNER_FD0.., then spec, without close-on-exec;
 * closes every other fd above 2; fds[] follows them (fds[0], the
 * channel, stays valid on failure too).  -1 (errno set) on failure.
 */
static int
runner_fds(int *fds, int n, int spec)
{
	int top = RUNNER_FD0 + n, i, fd;

	/* first above every target, so no dup2 clobbers a source */
	for (i = 0; i <= n; i++) {
		if ((fd = fcntl(i < n ? fds[i] : spec, F_DUPFD_CLOEXEC,
		    top + 1)) == -1)
			return -1;
		if (i < n)
			fds[i] = fd;
		else
			spec = fd;
	}
	for (i = 0; i <= n; i++)
		if (dup2(i < n ? fds[i] : spec, RUNNER_FD0 + i) == -1)
			return -1;
	close_range((unsigned)top + 1, ~0U, 0);
	for (i = 0; i < n; i++)
		fds[i] = RUNNER_FD0 + i;
	return 0;
}

/* The request again in a sealed memfd, for the runner; -1 on failure. */
static int
runner_spec(const Pm__Fork *f)
{
	size_t len = pm__fork__get_packed_size(f);
	uint8_t *buf;
	int fd;

	if ((buf = malloc(len ? len : 1)) == NULL)
		return -1;
	pm__fork__pack(f, buf);
	fd = wire_memfd(buf, len);
	free(buf);
	return fd;
}

/*
 * In a worker just cloned that is to be spawned: exec pmd as its runner
 * with fds (the request's, the spec last) at 3...  Returns only on
 * failure, errno set.
 */
int
runner_exec(const struct pmd_config *cfg, const char *sock_path,
    const Pm__Fork *f, int *fds, int nfds)
{
	extern char **environ;
	char nbuf[16], pbuf[16], *argv[RUNNER_ARGS];
	int argc = 0, spec, err;

	if ((spec = runner_spec(f)) == -1)
		return -1;
	if (runner_fds(fds, nfds, spec) == -1) {
		err = errno;
		close(spec);
		errno = err;
		return -1;
	}
	snprintf(nbuf, sizeof(nbuf), "%d", nfds);
	snprintf(pbuf, sizeof(pbuf), "%d", (int)forker_broker_pid);
	argv[argc++] = (char *)(uintptr_t)"pmd-worker";
	argv[argc++] = (char *)(uintptr_t)"--run-worker";
	argv[argc++] = nbuf;
	argv[argc++] = (char *)(uintptr_t)"--broker-pid";
	argv[argc++] = pbuf;
	argv[argc++] = (char *)(uintptr_t)"--socket";
	argv[argc++] = (char *)(uintptr_t)sock_path;
	if (cfg->private_mode)
		argv[argc++] = (char *)(uintptr_t)"--private";
	if (cfg->module_path != NULL) {
		argv[argc++] = (char *)(uintptr_t)"--module-path";
		argv[argc++] = cfg->module_path;
	}
	argv[argc] = NULL;
	execve("/proc/self/exe", argv, environ);
	return -1;
}

/* pmd --run-worker N: the spawned worker's new image.  Never returns. */
void
runner_main(struct pmd_config *cfg, const char *sock_path)
{
	int fds[PM_WIRE_MAX_FDS], nfds = cfg->runner_fds, i;

	if (nfds < 1 || nfds >= PM_WIRE_MAX_FDS)
		_exit(RUNNER_FAILED);
	forker_broker_pid = cfg->runner_broker;
	for (i = 0; i < nfds; i++) {
		fds[i] = RUNNER_FD0 + i;
		fcntl(fds[i], F_SETFD, FD_CLOEXEC);
	}
	fcntl(RUNNER_FD0 + nfds, F_SETFD, FD_CLOEXEC);
	worker_run(cfg, sock_path, RUNNER_FD0 + nfds, fds, nfds);
}
