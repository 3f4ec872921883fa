/*
 * pool.c - pm_pool, pm_result and pm_iter: Python's multiprocessing.Pool
 * over pmd.  Workers are spawned in pool mode; tasks and answers travel in
 * batches over each worker's channel (proto/pool.proto), straight between
 * this process and the worker, driven by the connection's turns (watches
 * on the channels; no threads).  A worker that dies fails the tasks it was
 * running and is replaced; tasks it had not started run elsewhere.  With
 * start method fork the workers are forks of this process (fork.c), which
 * reaps them itself; pmd lists them.
 */
#include <sys/types.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/pidfd.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pmclient_int.h"
#include "pool.pb-c.h"

#define PMC_POOL_MAX_PROCESSES	4096		/* workers per pool */
#define PMC_POOL_DEPTH		2		/* frames in flight per worker */
#define PMC_POOL_FRAME_TASKS	4096		/* tasks of several jobs per frame */
#define PMC_POOL_FRAME_BYTES	(4u << 20)	/* inline bytes per frame */
#define PMC_POOL_FRAME_FDBYTES	(64u << 20)	/* memfd bytes per frame */
#define PMC_POOL_TARGET_NS	1000000		/* a frame of many jobs: ~1 ms */
#define PMC_POOL_LONG_NS	1000000		/* longer tasks: 1 frame in flight */
#define PMC_POOL_STALL_NS	2000000		/* a frame this old and late: none behind */
#define PMC_POOL_SPAWN_TIMEOUT	60.0		/* s for pmd to start a worker */
#define PMC_POOL_EARLY_DEATHS	8		/* in a row, before any task */
#define PMC_POOL_MAX_INITARG	(PM_WIRE_MAX_FRAME - (64u << 10))
#define PMC_POOL_READS		16		/* reads per channel per turn */
#define PMC_POOL_ERR_MAX	4096		/* bytes of failure text kept */
#define PMC_IMAP_WINDOW_MIN	64		/* tasks ahead of the reader */

enum jkind { J_APPLY, J_MAP, J_IMAP, J_UNORDERED };
enum tstate { T_PENDING = 0, T_OK, T_FAILED };
enum pstate { PS_RUN, PS_CLOSED, PS_TERMINATED };

struct pmc_terr {
	int		 code;
	char		*msg;
};

/* An AsyncResult: one apply (n = 1) or one map/imap call. */
struct pm_result {
	pm_pool		*pool;		/* NULL once the pool is gone */
	enum jkind	 kind;
	const char	*fn;
	size_t		 n;
	size_t		 chunk;
	size_t		 next;		/* next task to hand out */
	size_t		 ended;		/* tasks answered, failed or cancelled */
	const pm_bytes	*in;
	pm_bytes	*out;
	int		 out_ext;	/* out is the caller's array */
	uint8_t		*st;		/* enum tstate per task */
	struct pmc_terr	*errs;		/* per task, made on the first failure */
	int		 code;		/* first failure by index */
	char		*error;
	size_t		 errat;
	pm_callback	*cb;
	void		*ud;
	int		 refs;		/* the pool's references */
	int		 user;		/* the caller holds the handle */
	int		 ready;
	int		 taken;		/* results handed to the caller */
	int		 in_cb;
	int		 queued;
	struct pm_result *qnext, *qprev;	/* the pool's queue */
	struct pm_result *anext, *aprev;	/* every job of the pool */
	struct pm_result *cbnext;		/* callbacks to run */
	/* imap */
	size_t		 consumed;
	size_t		*order;		/* unordered: completion order */
	size_t		 norder;
	size_t		 window;
	/* apply: storage in the same allocation */
	pm_bytes	 in1, out1;
	uint8_t		 st1;
	void		*own;		/* owned copy of the inputs */
};

struct pm_iter {
	pm_result	*job;
};

/* Tasks job->[start, start + count) */
struct pmc_span {
	pm_result	*job;
	size_t		 start;
	size_t		 count;
};

struct pmc_spanq {
	struct pmc_span	*v;
	size_t		 head;
	size_t		 len;
	size_t		 cap;
};

struct pmc_fr {
	size_t		 ntasks;
	size_t		 reported;
	int64_t		 sent_ns;
};

struct pmc_pw {
	pm_pool		*pool;
	struct pmc_pw	*next;
	uint64_t	 wid;
	pid_t		 pid;
	int		 pidfd;
	int		 channel;
	struct pmc_pending *spawn;	/* spawn request in flight */
	int		 starting;	/* channel given, no start report yet */
	unsigned	 events;	/* watch interest, 0 unwatched */
	struct wire_in	 in;
	struct wire_out	 out;
	struct pmc_spanq spans;		/* tasks sent, in order */
	size_t		 soff;		/* answered of the first span */
	struct pmc_fr	 fr[PMC_POOL_DEPTH];
	int		 fhead;
	int		 nfr;
	int64_t		 last_done_ns;
	uint64_t	 sent;
	uint64_t	 done;
	int		 eof;		/* channel ended */
	int		 exited;	/* pmd reported the end */
	int		 exitcode;
	int		 killed;	/* by us; record kept until Exited */
	int		 closing;	/* channel closed by us, idle pool */
	int		 dead;		/* record to free */
	/* start method fork: our child; pidfd is its sentinel */
	int		 forked;
	struct pmc_child child;
	struct pmc_pending *adopt;	/* pmd's answer, then the go */
	int		 sentinel_watched;
	int		 oom_killed;	/* pmd: the OOM killer, under memory_max */
	int		 retiring;	/* it leaves (maxmemoryperchild) */
	int		 retire;	/* resized away: no new tasks */
};

struct pm_pool {
	pm_conn		*conn;		/* NULL once detached */
	struct pmc_sub	*sub;		/* on conn: exits, loss, detach */
	uint64_t	 id;
	int		 nproc;
	int		 method;	/* PM_START_* */
	char		*module;	/* NULL: the program's own (fork) */
	char		*init;
	void		*initarg;
	size_t		 initarglen;
	int		 maxtasks;
	uint64_t	 memory_max;
	uint64_t	 maxmemory;	/* maxmemoryperchild */
	int		 child_fds[PMC_POOL_MAX_FDS];
	int		 parent_fds[PMC_POOL_MAX_FDS];	/* our dups */
	int		 nfds;
	enum pstate	 state;
	int		 lost;		/* the connection is gone */
	int		 creating;
	struct pmc_pw	*workers;
	unsigned	 nspawned;
	pm_result	*qhead, *qtail;
	pm_result	*all;
	struct pmc_spanq retry;		/* tasks to send again first */
	pm_result	*cbhead, *cbtail;
	size_t		 inflight;	/* tasks on workers */
	int		 busy;
	int		 doomed;	/* freed while busy */
	int64_t		 avg_ns;	/* task time, moving average */
	int		 early_deaths;
	int		 spawn_blocked;
	int		 spawn_code;
	char		 spawn_msg[256];
	uint8_t		*blob;
	size_t		 bloblen;
	size_t		 blobcap;
};

static atomic_uint pool_counter;

static void	pool_dispatch(pm_pool *);
static void	pool_fill(pm_pool *);
static void	pool_idle_check(pm_pool *);
static int	pool_count(pm_pool *, int *);
static void	pool_destroy(pm_pool *);
static void	pw_finish(struct pmc_pw *);
static int	pw_start_report(struct pmc_pw *, struct pm_frame *);
static void	pw_start_failed(struct pmc_pw *, int, const char *);
static void	pw_start_lost(struct pmc_pw *);
static void	pw_io_cb(pm_conn *, int, unsigned, void *);
static void	pw_exited(struct pmc_pw *, int);
static void	pw_sentinel_cb(pm_conn *, int, unsigned, void *);
static void	job_unref(pm_result *);

/* ---- small helpers ---- */

static int
spanq_push(struct pmc_spanq *q, pm_result *job, size_t start, size_t count)
{
	struct pmc_span *nv;
	size_t ncap;

	if (q->head > 0 && q->head + q->len == q->cap) {
		memmove(q->v, q->v + q->head, q->len * sizeof(*q->v));
		q->head = 0;
	}
	if (q->head + q->len == q->cap) {
		ncap = q->cap ? q->cap * 2 : 16;
		if ((nv = realloc(q->v, ncap * sizeof(*nv))) == NULL)
			return -1;
		q->v = nv;
		q->cap = ncap;
	}
	q->v[q->head + q->len].job = job;
	q->v[q->head + q->len].start = start;
	q->v[q->head + q->len].count = count;
	q->len++;
	return 0;
}

static struct pmc_span *
spanq_first(struct pmc_spanq *q)
{
	return q->len ? &q->v[q->head] : NULL;
}

static void
spanq_pop(struct pmc_spanq *q)
{
	q->head++;
	if (--q->len == 0)
		q->head = 0;
}

static uint8_t *
put_varint(uint8_t *p, uint64_t v)
{
	while (v >= 0x80) {
		*p++ = (uint8_t)(v | 0x80);
		v >>= 7;
	}
	*p++ = (uint8_t)v;
	return p;
}

static int
blob_reserve(pm_pool *p, size_t more)
{
	size_t ncap;
	uint8_t *nb;

	if (p->blobcap - p->bloblen >= more)
		return 0;
	ncap = p->blobcap ? p->blobcap : 4096;
	while (ncap - p->bloblen < more)
		ncap *= 2;
	if ((nb = realloc(p->blob, ncap)) == NULL)
		return -1;
	p->blob = nb;
	p->blobcap = ncap;
	return 0;
}

/* ---- entering and leaving: callbacks run last, frees wait ---- */

static void
pool_enter(pm_pool *p)
{
	p->busy++;
}

static void
run_callbacks(pm_pool *p)
{
	pm_result *j;

	while ((j = p->cbhead) != NULL) {
		if ((p->cbhead = j->cbnext) == NULL)
			p->cbtail = NULL;
		j->cbnext = NULL;
		j->in_cb = 1;
		j->cb(j, j->ud);
		j->in_cb = 0;
		job_unref(j);
	}
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

static void
pool_leave(pm_pool *p)
{
	if (p->busy == 1)
		run_callbacks(p);
	if (--p->busy > 0)
		return;
	pool_sweep(p);
	if (p->doomed)
		pool_destroy(p);
}

/* ---- jobs ---- */

static void
job_free(pm_result *j)
{
	size_t i;

	if (j->pool != NULL) {
		if (j->aprev)
			j->aprev->anext = j->anext;
		else
			j->pool->all = j->anext;
		if (j->anext)
			j->anext->aprev = j->aprev;
	}
	if (!j->out_ext && j->out != NULL && j->out != &j->out1) {
		for (i = 0; i < j->n; i++)
			free(j->out[i].data);
		free(j->out);
	} else if (j->out == &j->out1)
		free(j->out1.data);
	if (j->errs != NULL) {
		for (i = 0; i < j->n; i++)
			free(j->errs[i].msg);
		free(j->errs);
	}
	if (j->st != &j->st1)
		free(j->st);
	free(j->order);
	free(j->error);
	free(j->own);
	free(j);
}

static void
job_maybe_free(pm_result *j)
{
	if (!j->user && j->refs == 0 && !j->in_cb)
		job_free(j);
}

static void
job_unref(pm_result *j)
{
	j->refs--;
	job_maybe_free(j);
}

static void
queue_del(pm_pool *p, pm_result *j)
{
	if (!j->queued)
		return;
	if (j->qprev)
		j->qprev->qnext = j->qnext;
	else
		p->qhead = j->qnext;
	if (j->qnext)
		j->qnext->qprev = j->qprev;
	else
		p->qtail = j->qprev;
	j->qnext = j->qprev = NULL;
	j->queued = 0;
	job_unref(j);
}

static void
job_ready(pm_result *j)
{
	pm_pool *p = j->pool;

	j->ready = 1;
	if (j->code == PM_OK && j->errs != NULL && j->errat < j->n) {
		j->code = j->errs[j->errat].code;
		j->error = j->errs[j->errat].msg ?
		    strdup(j->errs[j->errat].msg) : NULL;
	}
	if (j->cb != NULL && p != NULL) {
		j->refs++;
		if (p->cbtail)
			p->cbtail->cbnext = j;
		else
			p->cbhead = j;
		p->cbtail = j;
	}
}

static void
job_ended(pm_result *j, size_t i)
{
	if (j->order != NULL)
		j->order[j->norder++] = i;
	if (++j->ended == j->n)
		job_ready(j);
}

static void
job_task_ok(pm_result *j, size_t i, void *data, size_t len)
{
	j->st[i] = T_OK;
	j->out[i].data = data;
	j->out[i].len = len;
	job_ended(j, i);
}

/* msg is copied. */
static void
job_task_fail(pm_result *j, size_t i, int code, const char *msg)
{
	if (j->st[i] != T_PENDING)
		return;
	j->st[i] = T_FAILED;
	if (j->n == 1) {
		if (j->code == PM_OK) {
			j->code = code;
			j->error = strdup(msg);
		}
	} else {
		if (j->errs == NULL) {
			if ((j->errs = calloc(j->n, sizeof(*j->errs))) == NULL) {
				if (j->code == PM_OK) {
					j->code = code;
					j->error = strdup(msg);
				}
				goto out;
			}
			j->errat = j->n;
		}
		j->errs[i].code = code;
		j->errs[i].msg = strdup(msg);
		if (i < j->errat)
			j->errat = i;
	}
out:
	job_ended(j, i);
}

static pm_result *
job_new(pm_pool *p, enum jkind kind, const char *fn, size_t n, size_t extra)
{
	pm_result *j;
	size_t fnlen = strlen(fn) + 1;
	char *f;

	if ((j = calloc(1, sizeof(*j) + fnlen + extra)) == NULL)
		return NULL;
	f = (char *)(j + 1);
	memcpy(f, fn, fnlen);
	j->fn = f;
	j->pool = p;
	j->kind = kind;
	j->n = n;
	j->chunk = 1;
	j->user = 1;
	if (n == 1 && kind == J_APPLY) {
		j->in = &j->in1;
		j->out = &j->out1;
		j->st = &j->st1;
	} else if (n > 0) {
		if ((j->st = calloc(n, 1)) == NULL) {
			free(j);
			return NULL;
		}
	}
	j->anext = p->all;
	if (p->all)
		p->all->aprev = j;
	p->all = j;
	return j;
}

static void
job_enqueue(pm_pool *p, pm_result *j)
{
	if (j->n == 0) {
		job_ready(j);
		return;
	}
	j->refs++;
	j->queued = 1;
	j->qprev = p->qtail;
	if (p->qtail)
		p->qtail->qnext = j;
	else
		p->qhead = j;
	p->qtail = j;
}

/* ---- workers ---- */

static int
pw_live(const struct pmc_pw *w)
{
	return !w->dead && !w->killed && !w->closing && !w->eof &&
	    !w->retiring && !w->retire &&
	    !w->exited && w->spawn == NULL && !w->starting &&
	    w->channel >= 0 &&
	    (w->pool->maxtasks == 0 || w->done < (uint64_t)w->pool->maxtasks);
}

static int
pool_has_work(const pm_pool *p)
{
	return p->qhead != NULL || p->retry.len > 0 || p->inflight > 0;
}

static void
pw_watch(struct pmc_pw *w, unsigned events)
{
	pm_conn *c = w->pool->conn;

	if (c == NULL || w->channel < 0 || events == w->events)
		return;
	if (w->events == 0) {
		if (pmc_watch_add(c, w->channel, events, pw_io_cb, w) == PM_OK)
			w->events = events;
	} else if (pmc_watch_mod(c, w->channel, events) == PM_OK)
		w->events = events;
}

static void
pw_close_channel(struct pmc_pw *w)
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

static void
pw_release(struct pmc_pw *w)
{
	pw_close_channel(w);
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
static void
pw_kill(struct pmc_pw *w)
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

/* Queue tasks to send again, merged with the last run when contiguous. */
static void
retry_push(pm_pool *p, pm_result *j, size_t i)
{
	struct pmc_span *t;

	if (p->retry.len > 0) {
		t = &p->retry.v[p->retry.head + p->retry.len - 1];
		if (t->job == j && t->start + t->count == i) {
			t->count++;
			return;
		}
	}
	if (spanq_push(&p->retry, j, i, 1) == 0)
		j->refs++;
	else
		job_task_fail(j, i, PM_ENOMEM, "out of memory");
}

/*
 * Gives back every task w holds.  The tasks of the frame it was running
 * that have no answer fail with code/msg when fail_running (its end was a
 * death), else they run again; later frames had not started: they run
 * again.  Tasks of `except` fail as cancelled instead.
 */
static void
pw_give_back(struct pmc_pw *w, int fail_running, int code, const char *msg,
    pm_result *except)
{
	pm_pool *p = w->pool;
	struct pmc_span *s;
	size_t running = 0, i, k, first;

	if (w->nfr > 0 && fail_running)
		running = w->fr[w->fhead].ntasks - w->fr[w->fhead].reported;
	while ((s = spanq_first(&w->spans)) != NULL) {
		first = s->start + w->soff;
		k = s->count - w->soff;
		for (i = 0; i < k; i++) {
			if (s->job == except)
				job_task_fail(s->job, first + i, PM_ECANCELLED,
				    "cancelled");
			else if (running > 0)
				job_task_fail(s->job, first + i, code, msg);
			else if (s->job->st[first + i] == T_PENDING)
				retry_push(p, s->job, first + i);
			if (running > 0)
				running--;
		}
		p->inflight -= k;
		w->soff = 0;
		spanq_pop(&w->spans);
		job_unref(s->job);
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
		pw_give_back(w, 0, PM_EWORKER, "retired", NULL);
		pw_release(w);
		pool_fill(p);
		pool_dispatch(p);
		pool_idle_check(p);
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
	pw_give_back(w, 1, PM_EWORKER, msg, NULL);
	pw_release(w);
	if (p->early_deaths >= PMC_POOL_EARLY_DEATHS) {
		p->spawn_blocked = 1;
		p->spawn_code = PM_EWORKER;
		snprintf(p->spawn_msg, sizeof(p->spawn_msg), "pool workers "
		    "keep dying before they finish a task (last: %s)", msg);
	}
	pool_fill(p);
	pool_dispatch(p);
	pool_idle_check(p);
}

static void
pw_eof(struct pmc_pw *w)
{
	if (w->starting) {
		pw_start_lost(w);
		return;
	}
	w->eof = 1;
	pw_close_channel(w);
	if (w->exited || w->pool->lost) {
		pw_finish(w);
		return;
	}
	/* a worker without its channel is of no use: make sure it ends,
	 * then settle on pmd's exit report (it carries the signal) */
	if (w->done < (uint64_t)w->pool->maxtasks || w->pool->maxtasks == 0)
		pw_kill(w);
}

static void
pw_flush(struct pmc_pw *w)
{
	int r;

	if (w->channel < 0)
		return;
	r = wire_out_flush(&w->out, w->channel);
	if (r == -1) {
		pw_eof(w);
		return;
	}
	pw_watch(w, EPOLLIN | (r == 0 ? EPOLLOUT : 0));
}

/* ---- answers ---- */

static void
frame_done(struct pmc_pw *w)
{
	pm_pool *p = w->pool;
	struct pmc_fr *f = &w->fr[w->fhead];
	int64_t now = wire_now_ns(), start, per;

	start = f->sent_ns > w->last_done_ns ? f->sent_ns : w->last_done_ns;
	per = (now - start) / (int64_t)(f->ntasks ? f->ntasks : 1);
	p->avg_ns = p->avg_ns == 0 ? per : (3 * p->avg_ns + per) / 4;
	if (p->avg_ns == 0)
		p->avg_ns = 1;
	w->last_done_ns = now;
	w->fhead = (w->fhead + 1) % PMC_POOL_DEPTH;
	w->nfr--;
}

static size_t
pw_outstanding(const struct pmc_pw *w)
{
	size_t n = 0;
	int i;

	for (i = 0; i < w->nfr; i++)
		n += w->fr[(w->fhead + i) % PMC_POOL_DEPTH].ntasks -
		    w->fr[(w->fhead + i) % PMC_POOL_DEPTH].reported;
	return n;
}

/* The next answer of w is for (job, index). */
static int
pw_next_task(struct pmc_pw *w, pm_result **job, size_t *i)
{
	struct pmc_span *s = spanq_first(&w->spans);

	if (s == NULL || w->nfr == 0)
		return -1;
	*job = s->job;
	*i = s->start + w->soff;
	return 0;
}

static void
pw_task_answered(struct pmc_pw *w)
{
	struct pmc_span *s = spanq_first(&w->spans);
	pm_result *j = s->job;

	w->done++;
	w->pool->inflight--;
	if (++w->soff == s->count) {
		w->soff = 0;
		spanq_pop(&w->spans);
		job_unref(j);
	}
	if (++w->fr[w->fhead].reported == w->fr[w->fhead].ntasks)
		frame_done(w);
}

static int
pw_results(struct pmc_pw *w, struct pm_frame *f)
{
	Pm__PoolResults *r;
	const uint8_t *q, *end, *scan;
	uint64_t h = 0, len, code = 0, fdneed = 0, foff = 0;
	struct stat st;
	pm_result *j;
	size_t i, k;
	void *data;
	int mfd = -1, seals;
	char msg[PMC_POOL_ERR_MAX + 1];

	if (f->type != PM__POOL_TYPE__POOL_RESULTS || f->nfds > 1 ||
	    (r = pm__pool_results__unpack(NULL, f->len, f->data)) == NULL)
		return -1;
	if (r->retiring)
		w->retiring = 1;
	/* check the whole frame before taking anything */
	scan = r->items.data;
	end = scan + r->items.len;
	for (k = 0; k < r->count; k++) {
		if (wire_varint_get(&scan, end, &h) == -1)
			goto bad;
		len = h >> 2;
		if ((h & 3) == 1)
			fdneed += len;
		else if ((h & 3) == 2) {
			if (wire_varint_get(&scan, end, &code) == -1 ||
			    (uint64_t)(end - scan) < len)
				goto bad;
			scan += len;
		} else if ((h & 3) == 0) {
			if ((uint64_t)(end - scan) < len)
				goto bad;
			scan += len;
		} else
			goto bad;
	}
	if (scan != end || r->count > pw_outstanding(w))
		goto bad;
	if (fdneed > 0) {
		if (f->nfds != 1)
			goto bad;
		mfd = f->fds[0];
		seals = fcntl(mfd, F_GET_SEALS);
		if (seals == -1 || !(seals & F_SEAL_WRITE) ||
		    fstat(mfd, &st) == -1 || (uint64_t)st.st_size < fdneed)
			goto bad;
	}
	q = r->items.data;
	for (k = 0; k < r->count; k++) {
		wire_varint_get(&q, end, &h);
		len = h >> 2;
		if (pw_next_task(w, &j, &i) == -1)
			goto bad;
		if ((h & 3) == 2) {
			wire_varint_get(&q, end, &code);
			if (len >= sizeof(msg))
				len = sizeof(msg) - 1;
			memcpy(msg, q, len);
			msg[len] = '\0';
			q += h >> 2;
			job_task_fail(j, i, pmc_code_from_wire((int32_t)code),
			    msg);
		} else if (j->st[i] != T_PENDING) {
			/* cancelled meanwhile: the answer is dropped */
			if ((h & 3) == 0)
				q += len;
			else
				foff += len;
		} else if ((h & 3) == 0) {
			if ((data = malloc(len ? len : 1)) == NULL)
				job_task_fail(j, i, PM_ENOMEM, "out of memory "
				    "for a result");
			else {
				memcpy(data, q, len);
				job_task_ok(j, i, data, len);
			}
			q += len;
		} else {
			data = malloc(len);
			if (data != NULL && (uint64_t)pread(mfd, data, len,
			    (off_t)foff) != len) {
				free(data);
				data = NULL;
			}
			foff += len;
			if (data == NULL)
				job_task_fail(j, i, PM_ENOMEM, "cannot read a "
				    "result");
			else
				job_task_ok(j, i, data, len);
		}
		pw_task_answered(w);
	}
	pm__pool_results__free_unpacked(r, NULL);
	return 0;
bad:
	pm__pool_results__free_unpacked(r, NULL);
	return -1;
}

/* Reads what the channel holds; bounded per turn unless draining. */
static void
pw_read(struct pmc_pw *w, int drain)
{
	struct pm_frame f;
	const char *why;
	ssize_t n;
	int reads = 0, r;

	while (w->channel >= 0 && !w->dead) {
		if (!drain && reads++ >= PMC_POOL_READS)
			return;
		n = wire_in_read(&w->in, w->channel);
		if (n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		if (n <= 0) {
			pw_eof(w);
			return;
		}
		while ((r = wire_in_next(&w->in, &f, &why)) == 1) {
			r = w->starting ? pw_start_report(w, &f) :
			    pw_results(w, &f);
			wire_frame_close(&f);
			if (r != 0)
				break;
		}
		if (r == 2)
			return;		/* it could not start: w is released */
		if (r == -1) {
			/* a worker that speaks nonsense is ended */
			pw_kill(w);
			pw_eof(w);
			return;
		}
	}
}

/*
 * pm_pool_resize's shrinking: while more workers live or start than
 * nproc, an idle one has its channel closed (it leaves), else a busy one
 * gets no new tasks; a retired one goes once its tasks are answered.
 */
static void
pool_trim(pm_pool *p)
{
	struct pmc_pw *w, *busy;
	int live, spawning;

	for (;;) {
		live = pool_count(p, &spawning);
		if (live + spawning <= p->nproc || live == 0)
			break;
		busy = NULL;
		for (w = p->workers; w != NULL; w = w->next)
			if (pw_live(w) && (busy == NULL ||
			    pw_outstanding(w) < pw_outstanding(busy)))
				busy = w;
		busy->retire = 1;
	}
	for (w = p->workers; w != NULL; w = w->next)
		if (w->retire && !w->dead && !w->closing && w->channel >= 0 &&
		    pw_outstanding(w) == 0) {
			w->closing = 1;
			pw_close_channel(w);
		}
}

static void
pw_io_cb(pm_conn *c, int fd, unsigned events, void *ud)
{
	struct pmc_pw *w = ud;
	pm_pool *p = w->pool;

	pool_enter(p);
	if (events & EPOLLOUT)
		pw_flush(w);
	if (events & (EPOLLIN | EPOLLHUP | EPOLLERR))
		pw_read(w, 0);
	pool_trim(p);
	pool_dispatch(p);
	pool_idle_check(p);
	pool_leave(p);
}

/* ---- sending tasks ---- */

static size_t
job_window_room(const pm_result *j)
{
	size_t ahead;

	if (j->kind != J_IMAP && j->kind != J_UNORDERED)
		return (size_t)-1;
	ahead = j->next - j->consumed;
	return ahead >= j->window ? 0 : j->window - ahead;
}

static pm_result *
queue_first_ready(pm_pool *p)
{
	pm_result *j;

	for (j = p->qhead; j != NULL; j = j->qnext)
		if (job_window_room(j) > 0)
			return j;
	return NULL;
}

static struct pmc_pw *
pick_worker(pm_pool *p)
{
	struct pmc_pw *w, *best = NULL;
	int depth = p->avg_ns > PMC_POOL_LONG_NS ? 1 : PMC_POOL_DEPTH;

	int64_t now = 0, start, expect;

	for (w = p->workers; w != NULL; w = w->next) {
		if (!pw_live(w) || w->nfr >= depth || (p->maxtasks > 0 &&
		    w->sent >= (uint64_t)p->maxtasks))
			continue;
		if (w->nfr > 0) {
			/* a frame queued behind a long one would wait there
			 * while others idle: only behind a quick one */
			if (now == 0)
				now = wire_now_ns();
			start = w->fr[w->fhead].sent_ns > w->last_done_ns ?
			    w->fr[w->fhead].sent_ns : w->last_done_ns;
			expect = (int64_t)w->fr[w->fhead].ntasks * p->avg_ns;
			if (now - start > PMC_POOL_STALL_NS &&
			    now - start > 2 * expect)
				continue;
		}
		if (best == NULL || w->nfr < best->nfr)
			best = w;
		if (w->nfr == 0)
			break;
	}
	return best;
}

/*
 * Appends tasks j->[start, start + count) to the frame being built, as
 * long as the frame's bounds allow (the first task always fits).  Returns
 * how many went in.
 */
static size_t
frame_add(pm_pool *p, pm_result *j, size_t start, size_t count,
    int *mfd, uint64_t *fdbytes, size_t ntasks)
{
	const pm_bytes *b;
	uint8_t *q;
	size_t i;

	for (i = 0; i < count; i++) {
		b = &j->in[start + i];
		if (b->len >= PM_WIRE_MEMFD_MIN) {
			if (ntasks + i > 0 && *fdbytes + b->len >
			    PMC_POOL_FRAME_FDBYTES)
				break;
			if (*mfd < 0 && (*mfd = memfd_create("pm-data",
			    MFD_CLOEXEC | MFD_ALLOW_SEALING)) == -1)
				break;
			if (wire_pwrite_all(*mfd, b->data, b->len, *fdbytes) == -1)
				break;
			*fdbytes += b->len;
			if (blob_reserve(p, 10) == -1)
				break;
			q = put_varint(p->blob + p->bloblen,
			    (uint64_t)b->len << 1 | 1);
		} else {
			if (ntasks + i > 0 && p->bloblen + b->len >
			    PMC_POOL_FRAME_BYTES)
				break;
			if (blob_reserve(p, 10 + b->len) == -1)
				break;
			q = put_varint(p->blob + p->bloblen,
			    (uint64_t)b->len << 1);
			if (b->len > 0)
				memcpy(q, b->data, b->len);
			q += b->len;
		}
		p->bloblen = (size_t)(q - p->blob);
	}
	return i;
}

/* Builds and queues one frame for w; 0 when there was nothing to send. */
static int
frame_send(pm_pool *p, struct pmc_pw *w)
{
	Pm__PoolTasks m = PM__POOL_TASKS__INIT;
	struct pmc_span *s;
	pm_result *j;
	const char *fn = NULL;
	uint64_t fdbytes = 0;
	size_t ntasks = 0, agg, limit, start, count, took;
	int mfd = -1, from_retry;
	struct pmc_fr *fr;

	agg = p->avg_ns > 0 ? (size_t)(PMC_POOL_TARGET_NS / p->avg_ns) : 1;
	if (agg < 1)
		agg = 1;
	if (agg > PMC_POOL_FRAME_TASKS)
		agg = PMC_POOL_FRAME_TASKS;
	limit = p->maxtasks > 0 ? (size_t)((uint64_t)p->maxtasks - w->sent) :
	    (size_t)-1;
	p->bloblen = 0;
	for (;;) {
		if ((s = spanq_first(&p->retry)) != NULL) {
			from_retry = 1;
			j = s->job;
			start = s->start;
			count = s->count;
		} else if ((j = queue_first_ready(p)) != NULL) {
			from_retry = 0;
			start = j->next;
			count = j->n - j->next;
			if (count > j->chunk)
				count = j->chunk;
			if (count > job_window_room(j))
				count = job_window_room(j);
		} else
			break;
		if (fn != NULL && strcmp(fn, j->fn) != 0)
			break;
		if (ntasks > 0 && ntasks + count > agg)
			break;
		if (count > limit - ntasks)
			count = limit - ntasks;
		took = frame_add(p, j, start, count, &mfd, &fdbytes, ntasks);
		if (took == 0)
			break;
		if (spanq_push(&w->spans, j, start, took) == -1) {
			/* undo: the blob is rebuilt next time */
			if (ntasks == 0) {
				if (mfd >= 0)
					close(mfd);
				return 0;
			}
			break;
		}
		j->refs++;
		if (from_retry) {
			s->start += took;
			s->count -= took;
			if (s->count == 0) {
				spanq_pop(&p->retry);
				job_unref(j);
			}
		} else {
			j->next += took;
			if (j->next == j->n)
				queue_del(p, j);
		}
		ntasks += took;
		fn = j->fn;
		if (took < count || ntasks >= limit)
			break;
	}
	if (ntasks == 0) {
		if (mfd >= 0)
			close(mfd);
		return 0;
	}
	if (mfd >= 0 && fcntl(mfd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW |
	    F_SEAL_WRITE | F_SEAL_SEAL) == -1) {
		close(mfd);
		mfd = -1;	/* the worker refuses the frame: it dies */
	}
	m.function = (char *)(uintptr_t)fn;
	m.count = (uint32_t)ntasks;
	m.items.data = p->blob;
	m.items.len = p->bloblen;
	fr = &w->fr[(w->fhead + w->nfr) % PMC_POOL_DEPTH];
	fr->ntasks = ntasks;
	fr->reported = 0;
	fr->sent_ns = wire_now_ns();
	w->nfr++;
	w->sent += ntasks;
	p->inflight += ntasks;
	if (wire_out_frame(&w->out, PM__POOL_TYPE__POOL_TASKS, 0, &m.base,
	    &mfd, mfd >= 0 ? 1 : 0) == -1) {
		/* cannot queue: end this worker, its tasks go elsewhere */
		pw_kill(w);
		pw_eof(w);
		return 1;
	}
	pw_flush(w);
	return 1;
}

static void
pool_dispatch(pm_pool *p)
{
	struct pmc_pw *w;

	if (p->state == PS_TERMINATED || p->lost)
		return;
	while ((p->retry.len > 0 || queue_first_ready(p) != NULL) &&
	    (w = pick_worker(p)) != NULL)
		if (frame_send(p, w) == 0)
			break;
}

/* ---- spawning ---- */

static void	spawn_done(pm_conn *, struct pmc_pending *, void *);
static int	pw_fork(pm_pool *);

static int
pw_spawn(pm_pool *p)
{
	Pm__Spawn s = PM__SPAWN__INIT;
	struct pmc_pending *pd;
	struct pmc_pw *w;
	int fds[PM_WIRE_MAX_FDS];
	int32_t child[PM_WIRE_MAX_FDS];
	char name[64];
	int n = 0, i, fd;

	if (p->method == PM_START_FORK)
		return pw_fork(p);
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

/* ---- start method fork: workers forked from this process ---- */

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

	pool_enter(p);
	w->adopt = NULL;
	if (pd->code != PM_OK || pd->msg == NULL) {
		pw_start_failed(w, pd->code != PM_OK ? pd->code : PM_EPROTO,
		    pd->message ? pd->message : "pmd did not take the worker");
	} else {
		w->wid = ((Pm__AdoptReply *)pd->msg)->wid;
		(void)pmc_fork_go(w->channel);	/* died? its sentinel says */
	}
	pmc_pending_free(c, pd);
	pool_leave(p);
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

static int
pw_fork(pm_pool *p)
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
		pw_release(w);		/* kills and reaps it */
		return rc;
	}
	w->sentinel_watched = 1;
	w->adopt->done_fn = adopt_done;
	w->adopt->done_ud = w;
	pw_watch(w, EPOLLIN);		/* for its start report */
	return PM_OK;
}

/* Work is queued but no worker is left or coming: fail it. */
static void
pool_starved(pm_pool *p, int code, const char *msg)
{
	struct pmc_span *s;
	pm_result *j;
	size_t i;

	while ((s = spanq_first(&p->retry)) != NULL) {
		j = s->job;
		for (i = 0; i < s->count; i++)
			job_task_fail(j, s->start + i, code, msg);
		spanq_pop(&p->retry);
		job_unref(j);
	}
	while ((j = p->qhead) != NULL) {
		for (i = j->next; i < j->n; i++)
			job_task_fail(j, i, code, msg);
		j->next = j->n;
		queue_del(p, j);
	}
}

static int
pool_count(pm_pool *p, int *spawning)
{
	struct pmc_pw *w;
	int live = 0;

	*spawning = 0;
	for (w = p->workers; w != NULL; w = w->next) {
		if (w->dead)
			continue;
		if (w->spawn != NULL || w->starting)
			(*spawning)++;
		else if (pw_live(w))
			live++;
	}
	return live;
}

/* Keeps nproc workers while there is (or may come) work. */
static void
pool_fill(pm_pool *p)
{
	int live, spawning;

	if (p->creating || p->lost || p->conn == NULL ||
	    p->state == PS_TERMINATED)
		return;
	if (p->state == PS_CLOSED && !pool_has_work(p))
		return;
	live = pool_count(p, &spawning);
	while (!p->spawn_blocked && live + spawning < p->nproc) {
		if (pw_spawn(p) != PM_OK) {
			p->spawn_blocked = 1;
			p->spawn_code = pm_last_error();
			snprintf(p->spawn_msg, sizeof(p->spawn_msg), "%s",
			    pm_last_message());
			break;
		}
		spawning++;
	}
	if (live + spawning == 0 && p->spawn_blocked)
		pool_starved(p, p->spawn_code, p->spawn_msg);
}

static void
spawn_done(pm_conn *c, struct pmc_pending *pd, void *ud)
{
	struct pmc_pw *w = ud;
	pm_pool *p = w->pool;
	Pm__SpawnReply *r = (Pm__SpawnReply *)pd->msg;

	pool_enter(p);
	w->spawn = NULL;
	if (pd->code != PM_OK || r == NULL || pd->nfds < 1) {
		pw_start_failed(w, pd->code != PM_OK ? pd->code : PM_EPROTO,
		    pd->message ? pd->message : "spawn reply without its "
		    "channel");
		pmc_pending_free(c, pd);
		pool_leave(p);
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
		pw_kill(w);
		w->killed = 1;
		pw_close_channel(w);
	} else
		pw_watch(w, EPOLLIN);	/* for its start report */
	pool_leave(p);
}

/* The first frame on a worker's channel: Started with its pidfd (0), or
 * StartError (2: w released); anything else is nonsense (-1). */
static int
pw_start_report(struct pmc_pw *w, struct pm_frame *f)
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
	pw_start_failed(w, code, msg);
	return 2;
}

/* A worker that will not start: the first failure is what pm_pool_new
 * (while creating) or the tasks left waiting report; no more are
 * spawned once the pool exists. */
static void
pw_start_failed(struct pmc_pw *w, int code, const char *msg)
{
	pm_pool *p = w->pool;

	if (p->spawn_code == PM_OK || p->creating) {
		p->spawn_code = code;
		snprintf(p->spawn_msg, sizeof(p->spawn_msg), "%s", msg);
	}
	if (!p->creating)
		p->spawn_blocked = 1;
	w->starting = 0;
	pw_release(w);
	pool_fill(p);
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
		pw_start_failed(w, PM_EWORKER, msg);
		return;
	}
	w->starting = 0;
	pw_release(w);
	pool_fill(p);
}

/* A closed pool with nothing left to do lets its workers go. */
static void
pool_idle_check(pm_pool *p)
{
	struct pmc_pw *w;

	if (p->state != PS_CLOSED || pool_has_work(p))
		return;
	for (w = p->workers; w != NULL; w = w->next)
		if (!w->dead && w->channel >= 0 && !w->closing) {
			w->closing = 1;
			pw_close_channel(w);
		}
}

/* ---- events from the connection ---- */

/* w has ended with code: what it said last, then settle it. */
static void
pw_exited(struct pmc_pw *w, int code)
{
	pm_pool *p = w->pool;

	pool_enter(p);
	w->exited = 1;
	w->exitcode = code;
	if (w->killed || w->closing)
		pw_release(w);
	else {
		if (w->channel >= 0)
			pw_read(w, 1);	/* what it said last */
		if (w->starting)
			pw_start_lost(w);
		pw_finish(w);
	}
	pool_fill(p);
	pool_dispatch(p);
	pool_leave(p);
}

static void
pool_exited(pm_pool *p, const Pm__Exited *ev)
{
	struct pmc_pw *w;

	for (w = p->workers; w != NULL; w = w->next)
		if (!w->dead && w->spawn == NULL && !w->forked &&
		    w->wid == ev->wid) {
			w->oom_killed = ev->oom_killed;
			pw_exited(w, ev->exitcode);
			return;
		}
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
	pw_exited(w, w->child.code);
}

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
		pw_kill(w);
		pw_give_back(w, 1, code, msg, NULL);
		w->killed = 1;
		pw_close_channel(w);
		if (w->exited || p->lost)
			pw_release(w);
	}
	pool_starved(p, code, msg);
}

static void
pool_conn_lost(pm_pool *p)
{
	pool_enter(p);
	p->lost = 1;
	p->state = PS_TERMINATED;
	pool_stop(p, PM_ECONN, "connection to pmd lost");
	pool_leave(p);
}

/* pm_disconnect: the pool ends and forgets its connection. */
static void
pool_detach(pm_pool *p)
{
	struct pmc_pw *w;

	pool_enter(p);
	p->lost = 1;
	p->state = PS_TERMINATED;
	pool_stop(p, PM_ECONN, "connection to pmd closed");
	for (w = p->workers; w != NULL; w = w->next)
		pw_release(w);
	p->conn = NULL;
	p->sub = NULL;		/* removed by the connection */
	pool_leave(p);
}

static void
pool_event_cb(pm_conn *c, int event, const void *ev, void *ud)
{
	pm_pool *p = ud;

	switch (event) {
	case PMC_EV_EXITED:
		pool_exited(p, ev);
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
		pw_kill(w);
		pw_release(w);
	}
	pool_sweep(p);
	while ((j = p->all) != NULL) {
		p->all = j->anext;
		j->anext = j->aprev = NULL;
		j->pool = NULL;
		j->refs = 0;
		j->queued = 0;
		job_maybe_free(j);
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
	pool_enter(p);
	p->creating = 1;
	r = PM_OK;
	for (i = 0; i < p->nproc && r == PM_OK; i++)
		r = pw_spawn(p);
	if (r != PM_OK) {
		p->spawn_code = r;
		snprintf(p->spawn_msg, sizeof(p->spawn_msg), "%s",
		    pm_last_message());
	}
	deadline = wire_deadline(PMC_POOL_SPAWN_TIMEOUT);
	while (pool_count(p, &spawning) >= 0 && spawning > 0 && !p->lost) {
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
			pw_kill(w);
		p->doomed = 1;
		p->busy = 1;
		pool_leave(p);
		pmc_err(code, "%s", msg);
		return NULL;
	}
	pool_leave(p);
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

static int
pool_usable(pm_pool *p, const char *fn)
{
	if (p == NULL)
		return pmc_err(PM_EINVAL, "no pool");
	if (fn == NULL || *fn == '\0')
		return pmc_err(PM_EINVAL, "no task function");
	if (p->lost || p->conn == NULL)
		return pmc_err(PM_ECONN, "the pool's connection to pmd is gone");
	if (p->state != PS_RUN)
		return pmc_err(PM_ESTATE, "the pool is %s", p->state ==
		    PS_CLOSED ? "closed" : "terminated");
	return PM_OK;
}

/* A new submission: a pool that gave up spawning tries again. */
static void
pool_submit(pm_pool *p, pm_result *j)
{
	pool_enter(p);
	if (p->spawn_blocked) {
		p->spawn_blocked = 0;
		p->early_deaths = 0;
		p->spawn_code = PM_OK;
	}
	job_enqueue(p, j);
	pool_fill(p);
	pool_dispatch(p);
	pool_leave(p);
}

static pm_result *
apply_new(pm_pool *p, const char *fn, const void *arg, size_t len, int copy,
    pm_callback *cb, void *ud)
{
	pm_result *j;

	if (pool_usable(p, fn) != PM_OK)
		return NULL;
	if (arg == NULL && len > 0) {
		pmc_err(PM_EINVAL, "NULL argument with nonzero length");
		return NULL;
	}
	if (len > PMC_POOL_MAX_ITEM) {
		pmc_err(PM_EINVAL, "argument of %zu bytes is above the %u-byte "
		    "limit", len, PMC_POOL_MAX_ITEM);
		return NULL;
	}
	if (copy && len >= PM_WIRE_MEMFD_MIN) {
		if ((j = job_new(p, J_APPLY, fn, 1, 0)) == NULL ||
		    (j->own = malloc(len)) == NULL) {
			if (j != NULL)
				job_free(j);
			pmc_err(PM_ENOMEM, "out of memory");
			return NULL;
		}
		memcpy(j->own, arg, len);
		j->in1.data = j->own;
	} else if ((j = job_new(p, J_APPLY, fn, 1, copy ? len : 0)) == NULL) {
		pmc_err(PM_ENOMEM, "out of memory");
		return NULL;
	} else if (copy) {
		j->in1.data = (char *)(uintptr_t)j->fn + strlen(fn) + 1;
		if (len > 0)
			memcpy(j->in1.data, arg, len);
	} else
		j->in1.data = (void *)(uintptr_t)arg;
	j->in1.len = len;
	j->cb = cb;
	j->ud = ud;
	pool_submit(p, j);
	pmc_ok();
	return j;
}

pm_result *
pm_pool_apply_async(pm_pool *p, const char *fn, const void *arg, size_t len,
    pm_callback *cb, void *ud)
{
	return apply_new(p, fn, arg, len, 1, cb, ud);
}

/* Runs the connection until j is ready or the deadline passes. */
static int
job_wait(pm_result *j, int64_t deadline)
{
	pm_conn *c;
	int r;

	while (!j->ready) {
		if (j->pool == NULL || (c = j->pool->conn) == NULL)
			return pmc_err(PM_ECONN, "the pool is gone");
		r = pmc_pump(c, deadline);
		if (j->ready)
			break;
		if (r == PM_ETIMEDOUT)
			return pmc_err(PM_ETIMEDOUT, "no result in time");
		if (r != PM_OK)
			return r;
	}
	return PM_OK;
}

static int
job_error(pm_result *j)
{
	return pmc_err(j->code, "%s", j->error ? j->error :
	    pm_strerror(j->code));
}

int
pm_pool_apply(pm_pool *p, const char *fn, const void *arg, size_t len,
    pm_bytes *out)
{
	pm_result *j;
	int r;

	if (out == NULL)
		return pmc_err(PM_EINVAL, "NULL out");
	out->data = NULL;
	out->len = 0;
	if ((j = apply_new(p, fn, arg, len, 0, NULL, NULL)) == NULL)
		return pm_last_error();
	r = pm_result_get(j, -1, out);
	/* never leave a task that points to the caller's memory */
	if (!j->ready)
		pm_result_cancel(j);
	pm_result_free(j);
	return r;
}

static size_t
auto_chunk(pm_pool *p, size_t n, size_t chunksize)
{
	size_t d;

	if (chunksize > 0)
		return chunksize;
	d = 4 * (size_t)p->nproc;
	chunksize = (n + d - 1) / d;
	return chunksize ? chunksize : 1;
}

static int
check_inputs(const pm_bytes *in, size_t n)
{
	size_t i;

	if (n > 0 && in == NULL)
		return pmc_err(PM_EINVAL, "NULL inputs");
	for (i = 0; i < n; i++) {
		if (in[i].data == NULL && in[i].len > 0)
			return pmc_err(PM_EINVAL, "input %zu: NULL data", i);
		if (in[i].len > PMC_POOL_MAX_ITEM)
			return pmc_err(PM_EINVAL, "input %zu of %zu bytes is "
			    "above the %u-byte limit", i, in[i].len,
			    PMC_POOL_MAX_ITEM);
	}
	return PM_OK;
}

/*
 * A map-like job.  copy: the inputs are copied (async calls); else they
 * are the caller's until the job ends.  out: the caller's array or NULL.
 */
static pm_result *
map_new(pm_pool *p, enum jkind kind, const char *fn, const pm_bytes *in,
    size_t n, size_t chunksize, int copy, pm_bytes *out, pm_callback *cb,
    void *ud)
{
	pm_result *j;
	pm_bytes *cin;
	size_t i, total = 0;
	uint8_t *b;

	if (pool_usable(p, fn) != PM_OK || check_inputs(in, n) != PM_OK)
		return NULL;
	if ((j = job_new(p, kind, fn, n, 0)) == NULL)
		goto nomem;
	j->chunk = auto_chunk(p, n, chunksize);
	j->cb = cb;
	j->ud = ud;
	if (out != NULL) {
		j->out = out;
		j->out_ext = 1;
		memset(out, 0, n * sizeof(*out));
	} else if (n > 0 && (j->out = calloc(n, sizeof(*j->out))) == NULL)
		goto nomem;
	if (kind == J_UNORDERED && n > 0 &&
	    (j->order = calloc(n, sizeof(*j->order))) == NULL)
		goto nomem;
	if (kind == J_IMAP || kind == J_UNORDERED) {
		j->window = 2 * (size_t)p->nproc * j->chunk;
		if (j->window < PMC_IMAP_WINDOW_MIN)
			j->window = PMC_IMAP_WINDOW_MIN;
	}
	if (copy && n > 0) {
		for (i = 0; i < n; i++)
			total += in[i].len;
		if ((j->own = malloc(n * sizeof(pm_bytes) + total)) == NULL)
			goto nomem;
		cin = j->own;
		b = (uint8_t *)(cin + n);
		for (i = 0; i < n; i++) {
			cin[i].data = b;
			cin[i].len = in[i].len;
			if (in[i].len > 0)
				memcpy(b, in[i].data, in[i].len);
			b += in[i].len;
		}
		j->in = cin;
	} else
		j->in = in;
	pool_submit(p, j);
	pmc_ok();
	return j;
nomem:
	if (j != NULL) {
		j->out_ext = 1;		/* not filled: nothing to free */
		if (j->out != out)
			free(j->out);
		j->out = NULL;
		job_free(j);
	}
	pmc_err(PM_ENOMEM, "out of memory");
	return NULL;
}

int
pm_pool_map(pm_pool *p, const char *fn, const pm_bytes *in, size_t n,
    size_t chunksize, pm_bytes *out)
{
	pm_result *j;
	size_t i;
	int r;

	if (out == NULL && n > 0)
		return pmc_err(PM_EINVAL, "NULL out");
	if ((j = map_new(p, J_MAP, fn, in, n, chunksize, 0, out, NULL,
	    NULL)) == NULL)
		return pm_last_error();
	r = job_wait(j, -1);
	if (r != PM_OK && !j->ready) {
		pm_result_cancel(j);
		job_wait(j, -1);
	}
	if (r == PM_OK && j->code != PM_OK)
		r = job_error(j);
	if (r != PM_OK)
		for (i = 0; i < n; i++)
			pm_bytes_free(&out[i]);
	j->taken = 1;
	pm_result_free(j);
	if (r == PM_OK)
		pmc_ok();
	return r;
}

pm_result *
pm_pool_map_async(pm_pool *p, const char *fn, const pm_bytes *in, size_t n,
    size_t chunksize, pm_callback *cb, void *ud)
{
	return map_new(p, J_MAP, fn, in, n, chunksize, 1, NULL, cb, ud);
}

static pm_iter *
iter_new(pm_pool *p, enum jkind kind, const char *fn, const pm_bytes *in,
    size_t n, size_t chunksize)
{
	pm_iter *it;

	if ((it = calloc(1, sizeof(*it))) == NULL) {
		pmc_err(PM_ENOMEM, "out of memory");
		return NULL;
	}
	if ((it->job = map_new(p, kind, fn, in, n, chunksize, 1, NULL, NULL,
	    NULL)) == NULL) {
		free(it);
		return NULL;
	}
	return it;
}

pm_iter *
pm_pool_imap(pm_pool *p, const char *fn, const pm_bytes *in, size_t n,
    size_t chunksize)
{
	return iter_new(p, J_IMAP, fn, in, n, chunksize);
}

pm_iter *
pm_pool_imap_unordered(pm_pool *p, const char *fn, const pm_bytes *in,
    size_t n, size_t chunksize)
{
	return iter_new(p, J_UNORDERED, fn, in, n, chunksize);
}

int
pm_iter_next(pm_iter *it, double timeout, pm_bytes *out)
{
	int64_t deadline = wire_deadline(timeout);
	pm_result *j;
	pm_conn *c;
	size_t i;
	int r;

	if (it == NULL || out == NULL)
		return pmc_err(PM_EINVAL, "NULL iterator or out");
	out->data = NULL;
	out->len = 0;
	j = it->job;
	if (j->consumed == j->n)
		return pmc_err(PM_EDONE, "no more results");
	for (;;) {
		if (j->kind == J_UNORDERED && j->consumed < j->norder)
			break;
		if (j->kind == J_IMAP && j->st[j->consumed] != T_PENDING)
			break;
		if (j->pool == NULL || (c = j->pool->conn) == NULL)
			return pmc_err(PM_ECONN, "the pool is gone");
		r = pmc_pump(c, deadline);
		if (r == PM_ETIMEDOUT)
			return pmc_err(PM_ETIMEDOUT, "no result in time");
		if (r != PM_OK)
			return r;
	}
	i = j->kind == J_UNORDERED ? j->order[j->consumed] : j->consumed;
	j->consumed++;
	if (j->pool != NULL && !j->pool->lost && j->pool->busy == 0) {
		pool_enter(j->pool);
		pool_dispatch(j->pool);
		pool_leave(j->pool);
	}
	if (j->st[i] == T_OK) {
		*out = j->out[i];
		j->out[i].data = NULL;
		j->out[i].len = 0;
		return pmc_ok();
	}
	if (j->errs != NULL && j->errs[i].code != PM_OK)
		return pmc_err(j->errs[i].code, "%s", j->errs[i].msg ?
		    j->errs[i].msg : pm_strerror(j->errs[i].code));
	return job_error(j);
}

void
pm_iter_free(pm_iter *it)
{
	if (it == NULL)
		return;
	pm_result_cancel(it->job);
	pm_result_free(it->job);
	free(it);
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
	pool_enter(p);
	p->nproc = processes;
	p->spawn_blocked = 0;
	pool_trim(p);
	pool_fill(p);
	pool_dispatch(p);
	pool_leave(p);
	return pmc_ok();
}

int
pm_pool_close(pm_pool *p)
{
	if (p == NULL)
		return pmc_err(PM_EINVAL, "no pool");
	if (p->state == PS_RUN) {
		p->state = PS_CLOSED;
		pool_enter(p);
		pool_idle_check(p);
		pool_leave(p);
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
	pool_enter(p);
	p->state = PS_TERMINATED;
	pool_stop(p, PM_ECANCELLED, "cancelled: the pool was terminated");
	pool_leave(p);
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
		    !pool_has_work(p)))
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

/* ---- AsyncResult ---- */

int
pm_result_wait(pm_result *r, double timeout)
{
	int rc;

	if (r == NULL)
		return pmc_err(PM_EINVAL, "no result");
	if ((rc = job_wait(r, wire_deadline(timeout))) != PM_OK)
		return rc;
	return pmc_ok();
}

int
pm_result_get(pm_result *r, double timeout, pm_bytes *out)
{
	size_t i;
	int rc;

	if (r == NULL)
		return pmc_err(PM_EINVAL, "no result");
	if ((rc = job_wait(r, wire_deadline(timeout))) != PM_OK)
		return rc;
	if (r->code != PM_OK)
		return job_error(r);
	if (r->taken || r->kind == J_IMAP || r->kind == J_UNORDERED)
		return pmc_err(PM_ESTATE, "the results were already taken");
	if (out == NULL && r->n > 0)
		return pmc_err(PM_EINVAL, "NULL out");
	for (i = 0; i < r->n; i++) {
		out[i] = r->out[i];
		r->out[i].data = NULL;
		r->out[i].len = 0;
	}
	r->taken = 1;
	return pmc_ok();
}

int
pm_result_ready(pm_result *r)
{
	if (r == NULL)
		return 0;
	if (!r->ready && r->pool != NULL && r->pool->conn != NULL &&
	    r->pool->busy == 0)
		while (pmc_pump(r->pool->conn, 0) == PM_OK && !r->ready &&
		    r->pool != NULL && r->pool->conn != NULL)
			;
	return r->ready;
}

int
pm_result_successful(pm_result *r)
{
	if (r == NULL)
		return pmc_err(PM_EINVAL, "no result");
	if (!pm_result_ready(r))
		return pmc_err(PM_ESTATE, "the result is not ready");
	return r->code == PM_OK;
}

const char *
pm_result_error(pm_result *r)
{
	if (r == NULL || !r->ready || r->code == PM_OK)
		return NULL;
	return r->error ? r->error : pm_strerror(r->code);
}

/* Cancels every task of j not answered; a running one ends its worker. */
static void
job_cancel(pm_pool *p, pm_result *j)
{
	struct pmc_pw *w;
	struct pmc_span *s;
	pm_result *rj;
	size_t i, k, keep = 0;

	for (i = j->next; i < j->n; i++)
		job_task_fail(j, i, PM_ECANCELLED, "cancelled");
	j->next = j->n;
	queue_del(p, j);
	/* the retry queue keeps the other jobs' runs */
	for (k = 0; k < p->retry.len; k++) {
		s = &p->retry.v[p->retry.head + k];
		if (s->job != j) {
			p->retry.v[p->retry.head + keep++] = *s;
			continue;
		}
		for (i = 0; i < s->count; i++)
			job_task_fail(j, s->start + i, PM_ECANCELLED,
			    "cancelled");
		job_unref(j);
	}
	p->retry.len = keep;
	for (w = p->workers; w != NULL; w = w->next) {
		if (w->dead || w->killed || w->channel < 0 ||
		    pw_next_task(w, &rj, &i) == -1)
			continue;
		if (rj == j && j->st[i] == T_PENDING) {
			/* it runs one of ours now: end it */
			pw_kill(w);
			pw_give_back(w, 0, PM_ECANCELLED, "cancelled", j);
			w->killed = 1;
			pw_close_channel(w);
		}
	}
	/* the rest wait on workers behind other tasks: their answers will
	 * be dropped */
	if (!j->ready)
		for (i = 0; i < j->n; i++)
			if (j->st[i] == T_PENDING)
				job_task_fail(j, i, PM_ECANCELLED, "cancelled");
}

int
pm_result_cancel(pm_result *r)
{
	pm_pool *p;

	if (r == NULL)
		return pmc_err(PM_EINVAL, "no result");
	if (r->ready)
		return pmc_err(PM_ESTATE, "the task already ended");
	if ((p = r->pool) == NULL)
		return pmc_err(PM_ESTATE, "the pool is gone");
	pool_enter(p);
	job_cancel(p, r);
	pool_fill(p);
	pool_dispatch(p);
	pool_leave(p);
	return pmc_ok();
}

void
pm_result_free(pm_result *r)
{
	if (r == NULL)
		return;
	r->user = 0;
	if (!r->ready && r->pool != NULL && r->kind != J_APPLY && r->in !=
	    r->own && r->own == NULL) {
		/* inputs are the caller's: they must not be read later */
		pm_result_cancel(r);
	}
	job_maybe_free(r);
}
