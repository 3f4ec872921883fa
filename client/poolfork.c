/*
 * poolfork.c - Pool workers of start method fork: forks of this process
 * (fork.c), told to pmd by an Adopt so that pmd lists them, reaped here
 * through their pidfd sentinel.  The forked worker finds its functions in
 * the module or in this program (dlsym), runs the initializer, reports
 * its start and runs the task loop (poolworker.c).
 */
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/socket.h>

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pool_int.h"

static void	pw_sentinel_cb(pm_conn *, int, unsigned, void *);

/* In the forked worker: a start failure, told on the channel. */
static void __attribute__((noreturn, format(printf, 3, 4)))
fork_start_fail(int channel, int code, const char *fmt, ...)
{
	Pm__StartError e = PM__START_ERROR__INIT;
	char msg[768];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	e.code = code;
	e.message = msg;
	pmc_fork_report(channel, PM__TYPE__T_START_FAILED, &e.base);
	_exit(PMC_FORK_REFUSED);
}

/* In the forked worker: the pool's fds at their numbers (the channel
 * moved above them all); nothing else is closed. */
static void
fork_pool_fds(const pm_pool *p, int *channel)
{
	int src[PMC_POOL_MAX_FDS], top = 2, fd, i;

	if (p->nfds == 0)
		return;
	for (i = 0; i < p->nfds; i++)
		if (p->child_fds[i] > top)
			top = p->child_fds[i];
	if ((fd = fcntl(*channel, F_DUPFD_CLOEXEC, top + 1)) == -1)
		goto fail;
	close(*channel);
	*channel = fd;
	for (i = 0; i < p->nfds; i++)
		if ((src[i] = fcntl(p->parent_fds[i], F_DUPFD_CLOEXEC,
		    top + 1)) == -1)
			goto fail;
	for (i = 0; i < p->nfds; i++) {
		if (dup2(src[i], p->child_fds[i]) == -1)
			goto fail;
		close(src[i]);
	}
	return;
fail:
	fork_start_fail(*channel, PM__CODE__C_SYS, "cannot lay out the pool "
	    "worker's fds: %s", strerror(errno));
}

/*
 * The forked pool worker: once pmd has taken it on, it finds its
 * functions (in the module, or in this program when there is none), runs
 * the initializer, says it started and runs tasks until the channel
 * closes.  Never returns.
 */
static void __attribute__((noreturn))
fork_pool_child(const pm_pool *p, const char *name, int channel, int stats,
    const char *address, pid_t parent)
{
	static struct pm_task t;
	Pm__Started m = PM__STARTED__INIT;
	volatile uint64_t *count = NULL;
	char label[PMC_FN_NAME_MAX + 16];
	pm_task_fn *init = NULL;
	void *h = RTLD_DEFAULT, *map;
	int rc;

	if (pmc_fork_gate(channel) == -1)
		_exit(PMC_FORK_REFUSED);	/* pmd did not take it */
	map = mmap(NULL, sizeof(uint64_t), PROT_READ | PROT_WRITE, MAP_SHARED,
	    stats, 0);
	if (map != MAP_FAILED)
		count = map;
	close(stats);
	fork_pool_fds(p, &channel);
	if (p->module != NULL && (h = dlopen(p->module, RTLD_NOW)) == NULL)
		fork_start_fail(channel, PM__CODE__C_NOENT, "cannot load "
		    "module %s: %s", p->module, dlerror());
	snprintf(label, sizeof(label), p->module ? "module %s" : "%s",
	    p->module ? p->module : "the calling program (linked with "
	    "-rdynamic?)");
	if (p->init != NULL &&
	    (init = (pm_task_fn *)dlsym(h, p->init)) == NULL)
		fork_start_fail(channel, PM__CODE__C_NOENT, "no initializer "
		    "%s in %s", p->init, label);
	memset(&t, 0, sizeof(t));
	t.channel = -1;
	t.address = address;
	t.name = name;
	t.parent_pid = parent;
	if (init != NULL) {
		t.arg = p->initarg;
		t.arglen = p->initarglen;
		rc = init(&t);
		if (t.error != NULL || rc != 0)
			fork_start_fail(channel, PM__CODE__C_TASK, "initializer "
			    "%s failed: %s", p->init, t.error ? t.error :
			    "nonzero return");
		free(t.result);
		t.result = NULL;
		t.returned = 0;
		t.arg = NULL;
		t.arglen = 0;
	}
	m.pid = getpid();
	pmc_fork_report(channel, PM__TYPE__T_STARTED, &m.base);
	pmc_pool_worker_loop(h, label, channel, &t, (uint32_t)p->maxtasks,
	    p->maxmemory, count);
}

/* pmd's answer to the Adopt: the worker may go on, or is ended. */
static void
adopt_done(pm_conn *c, struct pmc_pending *pd, void *ud)
{
	struct pmc_pw *w = ud;
	pm_pool *p = w->pool;

	pmc_pool_enter(p);
	w->adopt = NULL;
	if (pd->code != PM_OK || pd->msg == NULL) {
		pmc_pw_start_failed(w, pd->code != PM_OK ? pd->code : PM_EPROTO,
		    pd->message ? pd->message : "pmd did not take the worker");
	} else {
		w->wid = ((Pm__AdoptReply *)pd->msg)->wid;
		(void)pmc_fork_go(w->channel);	/* died? its sentinel says */
	}
	pmc_pending_free(c, pd);
	pmc_pool_leave(p);
}

/* The tasks-done counter pmd's ps reads, shared with the worker. */
static int
stats_memfd(void)
{
	int fd;

	if ((fd = memfd_create("pm-pool-stats", MFD_CLOEXEC)) == -1)
		return -1;
	if (ftruncate(fd, sizeof(uint64_t)) == -1) {
		close(fd);
		return -1;
	}
	return fd;
}

int
pmc_pw_fork(pm_pool *p)
{
	struct pmc_adopt a;
	struct pmc_pw *w;
	const char *address = p->conn->address;	/* p->conn: NULL in the child */
	char name[64];
	pid_t pid, me = getpid();
	int sp[2], stats, rc;

	if ((w = calloc(1, sizeof(*w))) == NULL)
		return pmc_err(PM_ENOMEM, "out of memory");
	w->pool = p;
	w->pidfd = w->channel = -1;
	w->forked = 1;
	snprintf(name, sizeof(name), "PoolWorker-%llu-%u",
	    (unsigned long long)p->id, ++p->nspawned);
	if ((stats = stats_memfd()) == -1) {
		free(w);
		return pmc_err_sys("memfd_create");
	}
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) == -1) {
		close(stats);
		free(w);
		return pmc_err_sys("socketpair");
	}
	/* listed before the fork: the worker's memory still reaches it */
	w->dead = 1;
	w->next = p->workers;
	p->workers = w;
	if ((pid = pmc_fork(&w->child, &w->pidfd)) == 0) {
		close(sp[0]);
		fork_pool_child(p, name, sp[1], stats, address, me);
	}
	close(sp[1]);
	if (pid == -1) {
		close(sp[0]);
		close(stats);
		return pm_last_error();		/* swept, being dead */
	}
	w->dead = 0;
	w->pid = pid;
	w->channel = sp[0];
	fcntl(w->channel, F_SETFL, O_NONBLOCK);
	wire_in_init(&w->in, PM_WIRE_MAX_FRAME);
	wire_out_init(&w->out);
	w->starting = 1;
	memset(&a, 0, sizeof(a));
	a.name = name;
	a.target = p->module ? p->module : "(the calling program)";
	a.daemonic = 1;
	a.pool = p->id;
	a.stats_fd = stats;
	w->adopt = pmc_adopt_send(p->conn, &w->child, w->pidfd, &a);
	close(stats);
	if (w->adopt == NULL ||
	    (rc = pmc_watch_add(p->conn, w->pidfd, EPOLLIN, pw_sentinel_cb,
	    w)) != PM_OK) {
		rc = pm_last_error();
		pmc_pw_release(w);		/* kills and reaps it */
		return rc;
	}
	w->sentinel_watched = 1;
	w->adopt->done_fn = adopt_done;
	w->adopt->done_ud = w;
	pmc_pw_watch(w, EPOLLIN);		/* for its start report */
	return PM_OK;
}

/* A forked worker's sentinel: it has ended; we reap it. */
static void
pw_sentinel_cb(pm_conn *c, int fd, unsigned events, void *ud)
{
	struct pmc_pw *w = ud;

	if (w->dead || w->exited || pmc_child_reap(&w->child, 0) == 0)
		return;
	pmc_watch_del(c, w->pidfd);
	w->sentinel_watched = 0;
	pmc_pw_exited(w, w->child.code);
}
