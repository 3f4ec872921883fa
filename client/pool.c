/*
 * pool.c - pm_pool: Python's multiprocessing.Pool over pmd.  The pool
 * itself: its options, pm_pool_new (all workers started, or none), resize,
 * close, terminate, join and free, and what its connection tells it
 * (lost, closed, forked).  Workers are spawned in pool mode (poolproc.c,
 * poolfork.c); tasks and answers travel in batches over each worker's
 * channel (poolwire.c), driven by the connection's turns (no threads);
 * jobs and their results are pooljob.c's.  Map of the insides: pool_int.h.
 */
#include <sys/types.h>

#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pool_int.h"

static atomic_uint pool_counter;

static void	pool_destroy(pm_pool *);

/* ---- entering and leaving: callbacks run last, frees wait ---- */

void
pmc_pool_enter(pm_pool *p)
{
	p->busy++;
}

static void
pool_sweep(pm_pool *p)
{
	struct pmc_pw **pp, *w;

	for (pp = &p->workers; (w = *pp) != NULL;) {
		if (w->dead) {
			*pp = w->next;
			free(w->spans.v);
			free(w);
		} else
			pp = &w->next;
	}
}

void
pmc_pool_leave(pm_pool *p)
{
	if (p->busy == 1)
		pmc_pool_run_callbacks(p);
	if (--p->busy > 0)
		return;
	pool_sweep(p);
	if (p->doomed)
		pool_destroy(p);
}

/* ---- events from the connection ---- */

/* In a forked worker: the pool is the parent's; its fds are closed,
 * nothing else is touched (its workers are not ours). */
static void
pool_forked(pm_pool *p)
{
	struct pmc_pw *w;

	for (w = p->workers; w != NULL; w = w->next) {
		if (w->channel >= 0)
			close(w->channel);
		if (w->pidfd >= 0)
			close(w->pidfd);
		w->channel = w->pidfd = -1;
		w->events = 0;
		w->sentinel_watched = 0;
		w->spawn = w->adopt = NULL;
		w->child.reaped = 1;
		w->dead = 1;
	}
	p->lost = 1;
	p->state = PS_TERMINATED;
	p->conn = NULL;
	p->sub = NULL;
}

/* Ends every worker and fails every task not answered with code. */
static void
pool_stop(pm_pool *p, int code, const char *msg)
{
	struct pmc_pw *w;

	for (w = p->workers; w != NULL; w = w->next) {
		if (w->dead)
			continue;
		if (w->spawn != NULL) {
			if (p->conn != NULL && (p->lost || code == PM_ECONN)) {
				/* conn going: the reply never comes */
				pmc_pending_free(p->conn, w->spawn);
				w->spawn = NULL;
				w->dead = 1;
			}
			continue;	/* killed when its reply comes */
		}
		pmc_pw_kill(w);
		pmc_pw_give_back(w, 1, code, msg, NULL);
		w->killed = 1;
		pmc_pw_close_channel(w);
		if (w->exited || p->lost)
			pmc_pw_release(w);
	}
	pmc_pool_starved(p, code, msg);
}

static void
pool_conn_lost(pm_pool *p)
{
	pmc_pool_enter(p);
	p->lost = 1;
	p->state = PS_TERMINATED;
	pool_stop(p, PM_ECONN, "connection to pmd lost");
	pmc_pool_leave(p);
}

/* pm_disconnect: the pool ends and forgets its connection. */
static void
pool_detach(pm_pool *p)
{
	struct pmc_pw *w;

	pmc_pool_enter(p);
	p->lost = 1;
	p->state = PS_TERMINATED;
	pool_stop(p, PM_ECONN, "connection to pmd closed");
	for (w = p->workers; w != NULL; w = w->next)
		pmc_pw_release(w);
	p->conn = NULL;
	p->sub = NULL;		/* removed by the connection */
	pmc_pool_leave(p);
}

static void
pool_event_cb(pm_conn *c, int event, const void *ev, void *ud)
{
	pm_pool *p = ud;

	switch (event) {
	case PMC_EV_EXITED:
		pmc_pool_exited(p, ev);
		break;
	case PMC_EV_LOST:
		pool_conn_lost(p);
		break;
	case PMC_EV_DETACH:
		pool_detach(p);
		break;
	case PMC_EV_FORKED:
		pool_forked(p);
		break;
	}
}

/* ---- the pool ---- */

static void
pool_destroy(pm_pool *p)
{
	pm_result *j;
	struct pmc_pw *w;
	int i;

	if (p->conn != NULL) {
		pmc_sub_del(p->conn, p->sub);
		for (w = p->workers; w != NULL; w = w->next)
			if (w->spawn != NULL) {
				pmc_pending_free(p->conn, w->spawn);
				w->spawn = NULL;
			}
	}
	for (w = p->workers; w != NULL; w = w->next) {
		pmc_pw_kill(w);
		pmc_pw_release(w);
	}
	pool_sweep(p);
	while ((j = p->all) != NULL) {
		p->all = j->anext;
		j->anext = j->aprev = NULL;
		j->pool = NULL;
		j->refs = 0;
		j->queued = 0;
		pmc_job_maybe_free(j);
	}
	for (i = 0; i < p->nfds; i++)
		close(p->parent_fds[i]);
	free(p->retry.v);
	free(p->blob);
	free(p->module);
	free(p->init);
	free(p->initarg);
	free(p);
}

static int
pool_check_opts(pm_conn *c, const pm_pool_opts *o, const int *child_fds,
    const int *parent_fds, size_t nfds)
{
	size_t i, k;

	if (c == NULL || o == NULL)
		return pmc_err(PM_EINVAL, "NULL connection or options");
	if (o->processes < 0 || o->processes > PMC_POOL_MAX_PROCESSES)
		return pmc_err(PM_EINVAL, "processes %d out of range 0-%d",
		    o->processes, PMC_POOL_MAX_PROCESSES);
	if (o->maxtasksperchild < 0)
		return pmc_err(PM_EINVAL, "maxtasksperchild %d < 0",
		    o->maxtasksperchild);
	if (pmc_check_caps(o->memory_max, 0) != PM_OK)
		return PM_EINVAL;
	if (o->memory_max != 0 && o->start_method == PM_START_FORK)
		return pmc_err(PM_EINVAL, "memory_max needs pmd's workers: "
		    "start method fork cannot be capped");
	if (o->start_method != PM_START_FORKSERVER &&
	    o->start_method != PM_START_SPAWN &&
	    o->start_method != PM_START_FORK)
		return pmc_err(PM_EINVAL, "unknown start method %d",
		    o->start_method);
	if ((o->module == NULL || *o->module == '\0') &&
	    o->start_method != PM_START_FORK)
		return pmc_err(PM_EINVAL, "a pool needs a module (or start "
		    "method fork, to run functions of this program)");
	if (o->initarg == NULL && o->initarglen > 0)
		return pmc_err(PM_EINVAL, "NULL initarg with nonzero length");
	if (o->initarglen > PMC_POOL_MAX_INITARG)
		return pmc_err(PM_ELIMIT, "initarg of %zu bytes is above %u",
		    o->initarglen, (unsigned)PMC_POOL_MAX_INITARG);
	if (nfds > PMC_POOL_MAX_FDS || (nfds > 0 && (child_fds == NULL ||
	    parent_fds == NULL)))
		return pmc_err(PM_EINVAL, "at most %d fds per pool worker",
		    PMC_POOL_MAX_FDS);
	for (i = 0; i < nfds; i++) {
		if (child_fds[i] < 3 || child_fds[i] > 1023)
			return pmc_err(PM_EINVAL, "child fd %d out of range "
			    "3-1023", child_fds[i]);
		if (fcntl(parent_fds[i], F_GETFD) == -1)
			return pmc_err(PM_EINVAL, "parent fd %d is not open",
			    parent_fds[i]);
		for (k = 0; k < i; k++)
			if (child_fds[k] == child_fds[i])
				return pmc_err(PM_EINVAL, "child fd %d given "
				    "twice", child_fds[i]);
	}
	return PM_OK;
}

pm_pool *
pm_pool_new_fds(pm_conn *c, const pm_pool_opts *o, const int *child_fds,
    const int *parent_fds, size_t nfds)
{
	struct pmc_pw *w;
	pm_pool *p;
	int64_t deadline;
	int i, r, spawning, code;
	char msg[sizeof(p->spawn_msg) + 64];

	if (pool_check_opts(c, o, child_fds, parent_fds, nfds) != PM_OK)
		return NULL;
	if (c->lost) {
		pmc_err(PM_ECONN, "connection to pmd lost");
		return NULL;
	}
	if ((p = calloc(1, sizeof(*p))) == NULL)
		goto nomem;
	p->id = atomic_fetch_add(&pool_counter, 1) + 1;
	p->nproc = o->processes ? o->processes : pm_cpu_count();
	p->maxtasks = o->maxtasksperchild;
	p->method = o->start_method;
	p->memory_max = o->memory_max;
	p->maxmemory = o->maxmemoryperchild;
	if (o->module != NULL && *o->module != '\0' &&
	    (p->module = pmc_module_path(o->module)) == NULL) {
		free(p);
		return NULL;
	}
	if (o->initializer != NULL && *o->initializer != '\0')
		p->init = strdup(o->initializer);
	p->initarg = malloc(o->initarglen ? o->initarglen : 1);
	if (p->initarg == NULL ||
	    (o->initializer && *o->initializer && p->init == NULL)) {
		free(p->module);
		free(p->init);
		free(p->initarg);
		free(p);
		goto nomem;
	}
	if (o->initarglen > 0)
		memcpy(p->initarg, o->initarg, o->initarglen);
	p->initarglen = o->initarglen;
	for (i = 0; i < (int)nfds; i++) {
		p->child_fds[i] = child_fds[i];
		if ((p->parent_fds[i] = fcntl(parent_fds[i], F_DUPFD_CLOEXEC,
		    3)) == -1) {
			code = pmc_err_sys("dup fd %d", parent_fds[i]);
			p->nfds = i;
			pool_destroy(p);
			return NULL;
		}
	}
	p->nfds = (int)nfds;
	p->conn = c;
	if ((p->sub = pmc_sub_add(c, pool_event_cb, p)) == NULL) {
		code = PM_ENOMEM;
		pool_destroy(p);
		pmc_err(code, "out of memory");
		return NULL;
	}
	pmc_pool_enter(p);
	p->creating = 1;
	r = PM_OK;
	for (i = 0; i < p->nproc && r == PM_OK; i++)
		r = pmc_pw_spawn(p);
	if (r != PM_OK) {
		p->spawn_code = r;
		snprintf(p->spawn_msg, sizeof(p->spawn_msg), "%s",
		    pm_last_message());
	}
	deadline = wire_deadline(PMC_POOL_SPAWN_TIMEOUT);
	while (pmc_pool_count(p, &spawning) >= 0 && spawning > 0 && !p->lost) {
		r = pmc_pump(c, deadline);
		if (r == PM_ETIMEDOUT) {
			p->spawn_code = PM_ETIMEDOUT;
			snprintf(p->spawn_msg, sizeof(p->spawn_msg), "pmd did "
			    "not start the pool's workers in %.0f s",
			    PMC_POOL_SPAWN_TIMEOUT);
			break;
		}
		if (r != PM_OK && p->spawn_code == PM_OK) {
			p->spawn_code = r;
			snprintf(p->spawn_msg, sizeof(p->spawn_msg), "%s",
			    pm_last_message());
			break;
		}
	}
	if (p->lost && p->spawn_code == PM_OK) {
		p->spawn_code = PM_ECONN;
		snprintf(p->spawn_msg, sizeof(p->spawn_msg),
		    "connection to pmd lost");
	}
	p->creating = 0;
	if (p->spawn_code != PM_OK) {
		/* all or nothing: the ones that started end now */
		code = p->spawn_code;
		snprintf(msg, sizeof(msg), "cannot start the pool: %s",
		    p->spawn_msg);
		for (w = p->workers; w != NULL; w = w->next)
			pmc_pw_kill(w);
		p->doomed = 1;
		p->busy = 1;
		pmc_pool_leave(p);
		pmc_err(code, "%s", msg);
		return NULL;
	}
	pmc_pool_leave(p);
	pmc_ok();
	return p;
nomem:
	pmc_err(PM_ENOMEM, "out of memory");
	return NULL;
}

pm_pool *
pm_pool_new(pm_conn *c, const pm_pool_opts *o)
{
	return pm_pool_new_fds(c, o, NULL, NULL, 0);
}

int
pm_pool_resize(pm_pool *p, int processes)
{
	if (p == NULL)
		return pmc_err(PM_EINVAL, "no pool");
	if (processes < 1 || processes > PMC_POOL_MAX_PROCESSES)
		return pmc_err(PM_EINVAL, "processes %d out of range 1-%d",
		    processes, PMC_POOL_MAX_PROCESSES);
	if (p->state != PS_RUN)
		return pmc_err(PM_ESTATE, "the pool is closed or terminated");
	if (p->lost || p->conn == NULL)
		return pmc_err(PM_ECONN, "connection to pmd lost");
	pmc_pool_enter(p);
	p->nproc = processes;
	p->spawn_blocked = 0;
	pmc_pool_trim(p);
	pmc_pool_fill(p);
	pmc_pool_dispatch(p);
	pmc_pool_leave(p);
	return pmc_ok();
}

int
pm_pool_close(pm_pool *p)
{
	if (p == NULL)
		return pmc_err(PM_EINVAL, "no pool");
	if (p->state == PS_RUN) {
		p->state = PS_CLOSED;
		pmc_pool_enter(p);
		pmc_pool_idle_check(p);
		pmc_pool_leave(p);
	}
	return pmc_ok();
}

int
pm_pool_terminate(pm_pool *p)
{
	if (p == NULL)
		return pmc_err(PM_EINVAL, "no pool");
	if (p->state == PS_TERMINATED)
		return pmc_ok();
	pmc_pool_enter(p);
	p->state = PS_TERMINATED;
	pool_stop(p, PM_ECANCELLED, "cancelled: the pool was terminated");
	pmc_pool_leave(p);
	return pmc_ok();
}

int
pm_pool_join(pm_pool *p)
{
	struct pmc_pw *w;
	int r, left;

	if (p == NULL)
		return pmc_err(PM_EINVAL, "no pool");
	if (p->state == PS_RUN)
		return pmc_err(PM_ESTATE, "join needs close or terminate "
		    "first");
	for (;;) {
		left = 0;
		for (w = p->workers; w != NULL; w = w->next)
			if (!w->dead)
				left++;
		if (left == 0 && (p->state == PS_TERMINATED ||
		    !pmc_pool_has_work(p)))
			break;
		if (p->lost || p->conn == NULL)
			break;
		r = pmc_pump(p->conn, -1);
		if (r != PM_OK && r != PM_ETIMEDOUT)
			return r;
		if (p->busy == 0)
			pool_sweep(p);
	}
	return pmc_ok();
}

void
pm_pool_free(pm_pool *p)
{
	if (p == NULL)
		return;
	pm_pool_terminate(p);
	if (p->busy > 0) {
		p->doomed = 1;		/* from a callback: freed on the way out */
		return;
	}
	pool_destroy(p);
}
