/*
 * forker.c - the fork server proper.  A fresh exec of pmd, holding no
 * client state, that clones workers on the broker's request.  With
 * CLONE_PARENT a worker is the broker's child: the broker reaps it through
 * its pidfd.  Preloaded modules are mapped here once, so workers skip the
 * dlopen.
 *
 * Every worker is a copy of this process's memory, so nothing of any
 * client may ever be in it.  That holds by construction: a Fork frame
 * carries only the worker's id and fds; the request itself (program,
 * arguments, environment, directory, credentials) is in a sealed memfd,
 * the frame's last fd, which the forker hands on unread and only the
 * worker it is for reads, once cloned.  What this process reads and
 * allocates is ids and errnos, whoever asked.  Preloaded modules are
 * opened RTLD_LOCAL: a worker finds in them only what it loads itself.
 */
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pmd.h"

pid_t forker_broker_pid;		/* the broker: workers' parent too */

/* The raw call: libc refuses the signals it reserves for itself, yet a
 * parent may have left them ignored. */
static void
forker_default_signal(int sig)
{
	struct {
		void		*handler;
		unsigned long	 flags;
		void		*restorer;
		uint64_t	 mask;
	} ksa;

	memset(&ksa, 0, sizeof(ksa));	/* SIG_DFL, empty mask */
	syscall(SYS_rt_sigaction, sig, &ksa, NULL, sizeof(ksa.mask));
}

/*
 * A raw clone leaves glibc's view of the thread stale: its cached tid
 * (by which robust and error-checking mutexes record their owner) is the
 * forker's, and the kernel forgets the robust list in a child.  As
 * glibc's fork does, the kernel writes the new tid where glibc keeps it,
 * and the worker registers the list again, so that a worker dying while
 * holding a process-shared robust mutex hands it on (EOWNERDEAD).
 */
static int
clone_worker(int *pidfd)
{
	struct clone_args args;
	void *tid_addr = NULL, *head = NULL;
	size_t head_len = 0;
	int pid;

	memset(&args, 0, sizeof(args));
	args.flags = CLONE_PARENT | CLONE_PIDFD;
	args.pidfd = (uint64_t)(uintptr_t)pidfd;
	if (prctl(PR_GET_TID_ADDRESS, &tid_addr) == 0 && tid_addr != NULL) {
		args.flags |= CLONE_CHILD_SETTID | CLONE_CHILD_CLEARTID;
		args.child_tid = (uint64_t)(uintptr_t)tid_addr;
	}
	if (syscall(SYS_get_robust_list, 0, &head, &head_len) == -1)
		head = NULL;
	pid = (int)syscall(SYS_clone3, &args, sizeof(args));
	if (pid == 0 && head != NULL)
		syscall(SYS_set_robust_list, head, head_len);
	return pid;
}

/* Forked to the broker: {wid, pid} + [pidfd] for a clone (pidfd taken),
 * or {wid, sys_errno} for a fork that failed. */
static void
forker_reply(int sock, uint64_t wid, pid_t pid, int err, int pidfd)
{
	Pm__Forked r = PM__FORKED__INIT;
	struct wire_out out;

	r.wid = wid;
	r.pid = pid;
	r.sys_errno = err;
	wire_out_init(&out);
	if (wire_out_frame(&out, PM__TYPE__T_FORKED, 0, &r.base, &pidfd,
	    pidfd >= 0 ? 1 : 0) == -1 ||
	    wire_out_flush_wait(&out, sock, -1) == -1) {
		wire_out_free(&out);
		_exit(1);	/* the broker is gone or broken */
	}
	wire_out_free(&out);
}

/* A spawn that cannot fork: tell the client on its channel. */
static void
forker_tell_client(int channel, int err)
{
	Pm__StartError e = PM__START_ERROR__INIT;
	struct wire_out out;
	char msg[128];

	snprintf(msg, sizeof(msg), "cannot fork a worker: %s", strerror(err));
	e.code = err == EAGAIN ? PM__CODE__C_LIMIT : PM__CODE__C_SYS;
	e.message = msg;
	wire_out_init(&out);
	if (wire_out_frame(&out, PM__TYPE__T_START_FAILED, 0, &e.base, NULL,
	    0) == 0)
		(void)wire_out_flush(&out, channel);
	wire_out_free(&out);
}

static void
forker_fork(struct pmd_config *cfg, const char *sock_path, int sock,
    struct pm_frame *f)
{
	Pm__Fork *req;
	uint64_t wid;
	int pidfd = -1, i, err, prestart;
	pid_t pid;

	/* the channel first, the request's memfd last; or a pre-started
	 * worker's idle socket alone */
	if ((req = pm__fork__unpack(NULL, f->len, f->data)) == NULL ||
	    f->nfds < (req->prestart ? 1 : 2) || (req->prestart &&
	    f->nfds != 1)) {
		log_err("%s: malformed fork request", __func__);
		_exit(1);
	}
	wid = req->wid;
	prestart = req->prestart;
	pm__fork__free_unpacked(req, NULL);
	pid = clone_worker(&pidfd);
	if (pid == 0)
		worker_main(cfg, sock_path, wid, f->fds, f->nfds, sock,
		    prestart);
	err = errno;
	/* Both the worker and we tell the broker of a clone: the worker,
	 * first thing, so that the broker knows every worker a client can
	 * know of even if we die now; we, so that it knows (and reaps) one
	 * that dies before it could say so.  The broker takes the first. */
	if (pid == -1) {
		if (!prestart)
			forker_tell_client(f->fds[0], err);
		forker_reply(sock, wid, 0, err, -1);
	} else
		forker_reply(sock, wid, pid, 0, pidfd);
	for (i = 0; i < f->nfds; i++)
		close(f->fds[i]);
	f->nfds = 0;
}

static void
forker_preload(struct pmd_config *cfg)
{
	int i;

	for (i = 0; i < cfg->npreload; i++)
		if (dlopen(cfg->preload[i], RTLD_NOW | RTLD_LOCAL) == NULL)
			log_warn("%s: cannot preload %s: %s", __func__,
			    cfg->preload[i], dlerror());
		else
			log_info("preloaded %s", cfg->preload[i]);
}

int
forker_main(struct pmd_config *cfg, const char *sock_path)
{
	struct wire_in in;
	struct pm_frame f;
	static const int ignored[] = FORKER_IGNORED_SIGNALS;
	sigset_t none;
	const char *why;
	ssize_t n;
	int sock = cfg->forker_fd, r, i;

	prctl(PR_SET_NAME, "pmd-forker");
	/* die with the broker (pmd may be pid 1 in a container) */
	forker_broker_pid = getppid();
	if (prctl(PR_SET_PDEATHSIG, SIGKILL) == -1 ||
	    getppid() != forker_broker_pid)
		_exit(1);
	/* Every disposition default (an exec keeps ignored ones), but the
	 * terminal signals, which are the broker's to handle; a worker then
	 * resets just those. */
	for (i = 1; i < NSIG; i++)
		if (i != SIGKILL && i != SIGSTOP)
			forker_default_signal(i);
	for (i = 0; i < (int)(sizeof(ignored) / sizeof(int)); i++)
		signal(ignored[i], SIG_IGN);
	sigemptyset(&none);		/* blocked by the broker until exec */
	sigprocmask(SIG_SETMASK, &none, NULL);
	unsetenv("LISTEN_FDS");
	unsetenv("LISTEN_PID");
	unsetenv("LISTEN_FDNAMES");
	unsetenv("NOTIFY_SOCKET");
	unsetenv("WATCHDOG_USEC");
	unsetenv("WATCHDOG_PID");
	forker_preload(cfg);
	wire_in_init(&in, PMD_FORKER_FRAME);
	for (;;) {
		while ((r = wire_in_next(&in, &f, &why)) == 1) {
			if (f.type == PM__TYPE__T_FORK)
				forker_fork(cfg, sock_path, sock, &f);
			wire_frame_close(&f);
		}
		if (r == -1) {
			log_err("%s: from the broker: %s", __func__, why);
			_exit(1);
		}
		n = wire_in_read(&in, sock);
		if (n == 0)
			_exit(0);
		if (n == -1 && errno != EINTR)
			_exit(1);
	}
}
