/*
 * poolproc.c - the Pool's worker records (struct pmc_pw): spawning
 * through pmd, the start report on the channel, keeping nproc workers,
 * trimming after a resize, and each worker's end: a worker that dies
 * fails the tasks it was running and is replaced; tasks it had not
 * started run elsewhere; too many early deaths in a row stop the
 * spawning.  Workers of start method fork are poolfork.c's.
 */
#include <sys/epoll.h>
#include <sys/pidfd.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pool_int.h"

static void	pw_finish(struct pmc_pw *);
static void	pw_start_lost(struct pmc_pw *);
static void	spawn_done(pm_conn *, struct pmc_pending *, void *);

/* ---- a worker ---- */

int
pmc_pw_live(const struct pmc_pw *w)
{
	return !w->dead && !w->killed && !w->closing && !w->eof &&
	    !w->retiring && !w->retire &&
	    !w->exited && w->spawn == NULL && !w->starting &&
	    w->channel >= 0 &&
	    (w->pool->maxtasks == 0 || w->done < (uint64_t)w->pool->maxtasks);
}

void
pmc_pw_close_channel(struct pmc_pw *w)
{
	if (w->channel < 0)
		return;
	if (w->events != 0 && w->pool->conn != NULL)
		pmc_watch_del(w->pool->conn, w->channel);
	w->events = 0;
	close(w->channel);
	w->channel = -1;
	wire_in_free(&w->in);
	wire_out_free(&w->out);
}

void
pmc_pw_release(struct pmc_pw *w)
{
	pmc_pw_close_channel(w);
	if (w->forked) {
		/* ours to reap, now: what is released is over */
		if (pmc_child_signal(&w->child, SIGKILL) == 0)
			pmc_child_reap(&w->child, 1);
		if (w->sentinel_watched && w->pool->conn != NULL)
			pmc_watch_del(w->pool->conn, w->pidfd);
		w->sentinel_watched = 0;
		if (w->adopt != NULL && w->pool->conn != NULL)
			pmc_pending_free(w->pool->conn, w->adopt);
		w->adopt = NULL;
	}
	if (w->pidfd >= 0)
		close(w->pidfd);
	w->pidfd = -1;
	w->dead = 1;
}

/* pmd's answer to a kill it was asked for: nothing waits for it. */
static void
kill_done(pm_conn *c, struct pmc_pending *pd, void *ud)
{
	(void)ud;
	pmc_pending_free(c, pd);
}

/* SIGKILL by pidfd; pmd sends it for a worker whose pidfd is not here yet
 * (still starting) or where pidfd_send_signal is missing (valgrind). */
void
pmc_pw_kill(struct pmc_pw *w)
{
	Pm__Signal q = PM__SIGNAL__INIT;
	struct pmc_pending *pd;
	pm_conn *c = w->pool->conn;

	if (w->dead || w->exited)
		return;
	if (w->forked) {
		pmc_child_signal(&w->child, SIGKILL);
		return;
	}
	if (w->pidfd >= 0 && (pidfd_send_signal(w->pidfd, SIGKILL, NULL,
	    0) == 0 || errno != ENOSYS))
		return;
	if (w->wid == 0 || c == NULL || w->pool->lost)
		return;
	q.wid = w->wid;
	q.signo = SIGKILL;
	if ((pd = pmc_send(c, PM__TYPE__T_SIGNAL, &q.base, NULL, 0,
	    NULL)) != NULL) {
		pd->done_fn = kill_done;
		pd->done_ud = NULL;
	}
}

/*
 * Gives back every task w holds.  The tasks of the frame it was running
 * that have no answer fail with code/msg when fail_running (its end was a
 * death), else they run again; later frames had not started: they run
 * again.  Tasks of `except` fail as cancelled instead.
 */
void
pmc_pw_give_back(struct pmc_pw *w, int fail_running, int code, const char *msg,
    pm_result *except)
{
	pm_pool *p = w->pool;
	struct pmc_span *s;
	size_t running = 0, i, k, first;

	if (w->nfr > 0 && fail_running)
		running = w->fr[w->fhead].ntasks - w->fr[w->fhead].reported;
	while ((s = pmc_spanq_first(&w->spans)) != NULL) {
		first = s->start + w->soff;
		k = s->count - w->soff;
		for (i = 0; i < k; i++) {
			if (s->job == except)
				pmc_job_task_fail(s->job, first + i,
				    PM_ECANCELLED, "cancelled");
			else if (running > 0)
				pmc_job_task_fail(s->job, first + i, code, msg);
			else if (s->job->st[first + i] == T_PENDING)
				pmc_pool_retry(p, s->job, first + i);
			if (running > 0)
				running--;
		}
		p->inflight -= k;
		w->soff = 0;
		pmc_spanq_pop(&w->spans);
		pmc_job_unref(s->job);
	}
	w->nfr = 0;
	w->fhead = 0;
}

/* A worker is over: settle its tasks, replace it. */
static void
pw_finish(struct pmc_pw *w)
{
	pm_pool *p = w->pool;
	char msg[128];

	if (w->dead)
		return;
	if (w->retiring) {		/* it answered all it started */
		pmc_pw_give_back(w, 0, PM_EWORKER, "retired", NULL);
		pmc_pw_release(w);
		pmc_pool_fill(p);
		pmc_pool_dispatch(p);
		pmc_pool_idle_check(p);
		return;
	}
	if (w->exited && w->oom_killed) {
		snprintf(msg, sizeof(msg), "worker %d: ", (int)w->pid);
		pmc_oom_text(msg + strlen(msg), sizeof(msg) - strlen(msg),
		    p->memory_max);
	} else if (!w->exited)
		snprintf(msg, sizeof(msg), "worker %d died", (int)w->pid);
	else if (w->exitcode < 0)
		snprintf(msg, sizeof(msg), "worker %d died (signal %d)",
		    (int)w->pid, -w->exitcode);
	else
		snprintf(msg, sizeof(msg), "worker %d exited (code %d)",
		    (int)w->pid, w->exitcode);
	if (w->done == 0 && w->spans.len > 0)
		p->early_deaths++;
	else if (w->done > 0)
		p->early_deaths = 0;
	pmc_pw_give_back(w, 1, PM_EWORKER, msg, NULL);
	pmc_pw_release(w);
	if (p->early_deaths >= PMC_POOL_EARLY_DEATHS) {
		p->spawn_blocked = 1;
		p->spawn_code = PM_EWORKER;
		snprintf(p->spawn_msg, sizeof(p->spawn_msg), "pool workers "
		    "keep dying before they finish a task (last: %s)", msg);
	}
	pmc_pool_fill(p);
	pmc_pool_dispatch(p);
	pmc_pool_idle_check(p);
}

void
pmc_pw_eof(struct pmc_pw *w)
{
	if (w->starting) {
		pw_start_lost(w);
		return;
	}
	w->eof = 1;
	pmc_pw_close_channel(w);
	if (w->exited || w->pool->lost) {
		pw_finish(w);
		return;
	}
	/* a worker without its channel is of no use: make sure it ends,
	 * then settle on pmd's exit report (it carries the signal) */
	if (w->done < (uint64_t)w->pool->maxtasks || w->pool->maxtasks == 0)
		pmc_pw_kill(w);
}

/*
 * pm_pool_resize's shrinking: while more workers live or start than
 * nproc, an idle one has its channel closed (it leaves), else a busy one
 * gets no new tasks; a retired one goes once its tasks are answered.
 */
void
pmc_pool_trim(pm_pool *p)
{
	struct pmc_pw *w, *busy;
	int live, spawning;

	for (;;) {
		live = pmc_pool_count(p, &spawning);
		if (live + spawning <= p->nproc || live == 0)
			break;
		busy = NULL;
		for (w = p->workers; w != NULL; w = w->next)
			if (pmc_pw_live(w) && (busy == NULL ||
			    pmc_pw_outstanding(w) < pmc_pw_outstanding(busy)))
				busy = w;
		busy->retire = 1;
	}
	for (w = p->workers; w != NULL; w = w->next)
		if (w->retire && !w->dead && !w->closing && w->channel >= 0 &&
		    pmc_pw_outstanding(w) == 0) {
			w->closing = 1;
			pmc_pw_close_channel(w);
		}
}

/* ---- spawning and starting ---- */

int
pmc_pw_spawn(pm_pool *p)
{
	Pm__Spawn s = PM__SPAWN__INIT;
	struct pmc_pending *pd;
	struct pmc_pw *w;
	int fds[PM_WIRE_MAX_FDS];
	int32_t child[PM_WIRE_MAX_FDS];
	char name[64];
	int n = 0, i, fd;

	if (p->method == PM_START_FORK)
		return pmc_pw_fork(p);
	if ((w = calloc(1, sizeof(*w))) == NULL)
		return pmc_err(PM_ENOMEM, "out of memory");
	w->pool = p;
	w->pidfd = w->channel = -1;
	snprintf(name, sizeof(name), "PoolWorker-%llu-%u",
	    (unsigned long long)p->id, ++p->nspawned);
	for (i = 0; i < 3; i++) {
		if (fcntl(i, F_GETFD) == -1)
			continue;
		if ((fd = fcntl(i, F_DUPFD_CLOEXEC, 3)) == -1)
			goto sys;
		fds[n] = fd;
		child[n++] = i;
	}
	for (i = 0; i < p->nfds; i++) {
		if ((fd = fcntl(p->parent_fds[i], F_DUPFD_CLOEXEC, 3)) == -1)
			goto sys;
		fds[n] = fd;
		child[n++] = p->child_fds[i];
	}
	s.kind = PM__KIND__K_POOL;
	s.module = p->module;
	s.function = p->init ? p->init : (char *)(uintptr_t)"";
	s.arg.data = p->initarg;
	s.arg.len = p->initarglen;
	s.path = (char *)(uintptr_t)"";
	s.cwd = (char *)(uintptr_t)"";
	s.name = name;
	s.daemonic = 1;
	s.n_child_fds = (size_t)n;
	s.child_fds = child;
	s.maxtasks = (uint32_t)p->maxtasks;
	s.pool = p->id;
	s.start_method = p->method == PM_START_SPAWN ?
	    PM__START_METHOD__S_SPAWN : PM__START_METHOD__S_FORKSERVER;
	s.memory_max = p->memory_max;
	s.maxmemory = p->maxmemory;
	if ((pd = pmc_send(p->conn, PM__TYPE__T_SPAWN, &s.base, fds, n,
	    &pm__spawn_reply__descriptor)) == NULL) {
		free(w);
		return pm_last_error();
	}
	pd->done_fn = spawn_done;
	pd->done_ud = w;
	w->spawn = pd;
	w->next = p->workers;
	p->workers = w;
	return PM_OK;
sys:
	i = pmc_err_sys("cannot pass stdio to a pool worker");
	while (n > 0)
		close(fds[--n]);
	free(w);
	return i;
}

int
pmc_pool_count(pm_pool *p, int *spawning)
{
	struct pmc_pw *w;
	int live = 0;

	*spawning = 0;
	for (w = p->workers; w != NULL; w = w->next) {
		if (w->dead)
			continue;
		if (w->spawn != NULL || w->starting)
			(*spawning)++;
		else if (pmc_pw_live(w))
			live++;
	}
	return live;
}

/* Keeps nproc workers while there is (or may come) work. */
void
pmc_pool_fill(pm_pool *p)
{
	int live, spawning;

	if (p->creating || p->lost || p->conn == NULL ||
	    p->state == PS_TERMINATED)
		return;
	if (p->state == PS_CLOSED && !pmc_pool_has_work(p))
		return;
	live = pmc_pool_count(p, &spawning);
	while (!p->spawn_blocked && live + spawning < p->nproc) {
		if (pmc_pw_spawn(p) != PM_OK) {
			p->spawn_blocked = 1;
			p->spawn_code = pm_last_error();
			snprintf(p->spawn_msg, sizeof(p->spawn_msg), "%s",
			    pm_last_message());
			break;
		}
		spawning++;
	}
	if (live + spawning == 0 && p->spawn_blocked)
		pmc_pool_starved(p, p->spawn_code, p->spawn_msg);
}

static void
spawn_done(pm_conn *c, struct pmc_pending *pd, void *ud)
{
	struct pmc_pw *w = ud;
	pm_pool *p = w->pool;
	Pm__SpawnReply *r = (Pm__SpawnReply *)pd->msg;

	pmc_pool_enter(p);
	w->spawn = NULL;
	if (pd->code != PM_OK || r == NULL || pd->nfds < 1) {
		pmc_pw_start_failed(w, pd->code != PM_OK ? pd->code : PM_EPROTO,
		    pd->message ? pd->message : "spawn reply without its "
		    "channel");
		pmc_pending_free(c, pd);
		pmc_pool_leave(p);
		return;
	}
	w->wid = r->wid;
	w->channel = pd->fds[0];
	pd->fds[0] = -1;
	pmc_pending_free(c, pd);
	fcntl(w->channel, F_SETFL, O_NONBLOCK);
	wire_in_init(&w->in, PM_WIRE_MAX_FRAME);
	wire_out_init(&w->out);
	w->starting = 1;
	if (p->state == PS_TERMINATED || p->lost) {
		pmc_pw_kill(w);
		w->killed = 1;
		pmc_pw_close_channel(w);
	} else
		pmc_pw_watch(w, EPOLLIN);	/* for its start report */
	pmc_pool_leave(p);
}

/* The first frame on a worker's channel: Started with its pidfd (0), or
 * StartError (2: w released); anything else is nonsense (-1). */
int
pmc_pw_start_report(struct pmc_pw *w, struct pm_frame *f)
{
	Pm__StartError *e;
	Pm__Started *m;
	char msg[sizeof(w->pool->spawn_msg)];
	int code;

	if (f->type == PM__TYPE__T_STARTED) {
		/* a forked one: no fd (its pidfd is ours already) */
		if (f->nfds != (w->forked ? 0 : 1) || (m = pm__started__unpack(
		    NULL, f->len, f->data)) == NULL)
			return -1;
		if (!w->forked) {
			w->pid = m->pid;
			w->pidfd = wire_frame_take(f, 0);
		}
		pm__started__free_unpacked(m, NULL);
		w->starting = 0;
		return 0;
	}
	if (f->type != PM__TYPE__T_START_FAILED ||
	    (e = pm__start_error__unpack(NULL, f->len, f->data)) == NULL)
		return -1;
	code = pmc_code_from_wire(e->code);
	snprintf(msg, sizeof(msg), "%s", e->message && *e->message ?
	    e->message : "a pool worker could not start");
	pm__start_error__free_unpacked(e, NULL);
	pmc_pw_start_failed(w, code, msg);
	return 2;
}

/* A worker that will not start: the first failure is what pm_pool_new
 * (while creating) or the tasks left waiting report; no more are
 * spawned once the pool exists. */
void
pmc_pw_start_failed(struct pmc_pw *w, int code, const char *msg)
{
	pm_pool *p = w->pool;

	if (p->spawn_code == PM_OK || p->creating) {
		p->spawn_code = code;
		snprintf(p->spawn_msg, sizeof(p->spawn_msg), "%s", msg);
	}
	if (!p->creating)
		p->spawn_blocked = 1;
	w->starting = 0;
	pmc_pw_release(w);
	pmc_pool_fill(p);
}

/* A worker that died before it reported its start (killed in its
 * initializer, say): pm_pool_new fails; later, it counts as an early
 * death, and only so many of those in a row stop the spawning. */
static void
pw_start_lost(struct pmc_pw *w)
{
	pm_pool *p = w->pool;
	char msg[128];

	if (w->exited)
		snprintf(msg, sizeof(msg), "a pool worker ended (%d) before "
		    "it reported its start", w->exitcode);
	else
		snprintf(msg, sizeof(msg), "a pool worker ended before it "
		    "reported its start");
	if (p->creating || ++p->early_deaths >= PMC_POOL_EARLY_DEATHS) {
		pmc_pw_start_failed(w, PM_EWORKER, msg);
		return;
	}
	w->starting = 0;
	pmc_pw_release(w);
	pmc_pool_fill(p);
}

/* A closed pool with nothing left to do lets its workers go. */
void
pmc_pool_idle_check(pm_pool *p)
{
	struct pmc_pw *w;

	if (p->state != PS_CLOSED || pmc_pool_has_work(p))
		return;
	for (w = p->workers; w != NULL; w = w->next)
		if (!w->dead && w->channel >= 0 && !w->closing) {
			w->closing = 1;
			pmc_pw_close_channel(w);
		}
}

/* ---- ends reported ---- */

/* w has ended with code: what it said last, then settle it. */
void
pmc_pw_exited(struct pmc_pw *w, int code)
{
	pm_pool *p = w->pool;

	pmc_pool_enter(p);
	w->exited = 1;
	w->exitcode = code;
	if (w->killed || w->closing)
		pmc_pw_release(w);
	else {
		if (w->channel >= 0)
			pmc_pw_read(w, 1);	/* what it said last */
		if (w->starting)
			pw_start_lost(w);
		pw_finish(w);
	}
	pmc_pool_fill(p);
	pmc_pool_dispatch(p);
	pmc_pool_leave(p);
}

void
pmc_pool_exited(pm_pool *p, const Pm__Exited *ev)
{
	struct pmc_pw *w;

	for (w = p->workers; w != NULL; w = w->next)
		if (!w->dead && w->spawn == NULL && !w->forked &&
		    w->wid == ev->wid) {
			w->oom_killed = ev->oom_killed;
			pmc_pw_exited(w, ev->exitcode);
			return;
		}
}
