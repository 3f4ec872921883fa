/*
 * pooljob.c - the Pool's jobs (struct pm_result, one apply or map call):
 * their records and their tasks' outcomes, the callbacks of those that
 * became ready, the pool's queue of jobs and its queue of tasks to send
 * again (a dead worker's).  A job is freed once neither the caller nor
 * the pool holds it.  What callers submit and wait on: poolresult.c.
 */
#include <stdlib.h>
#include <string.h>

#include "pool_int.h"

/* ---- runs of tasks ---- */

int
pmc_spanq_push(struct pmc_spanq *q, pm_result *job, size_t start, size_t count)
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

struct pmc_span *
pmc_spanq_first(struct pmc_spanq *q)
{
	return q->len ? &q->v[q->head] : NULL;
}

void
pmc_spanq_pop(struct pmc_spanq *q)
{
	q->head++;
	if (--q->len == 0)
		q->head = 0;
}

/* ---- jobs and the queue ---- */

void
pmc_pool_run_callbacks(pm_pool *p)
{
	pm_result *j;

	while ((j = p->cbhead) != NULL) {
		if ((p->cbhead = j->cbnext) == NULL)
			p->cbtail = NULL;
		j->cbnext = NULL;
		j->in_cb = 1;
		j->cb(j, j->ud);
		j->in_cb = 0;
		pmc_job_unref(j);
	}
}

void
pmc_job_free(pm_result *j)
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

void
pmc_job_maybe_free(pm_result *j)
{
	if (!j->user && j->refs == 0 && !j->in_cb)
		pmc_job_free(j);
}

void
pmc_job_unref(pm_result *j)
{
	j->refs--;
	pmc_job_maybe_free(j);
}

void
pmc_job_unqueue(pm_pool *p, pm_result *j)
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
	pmc_job_unref(j);
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

void
pmc_job_task_ok(pm_result *j, size_t i, void *data, size_t len)
{
	j->st[i] = T_OK;
	j->out[i].data = data;
	j->out[i].len = len;
	job_ended(j, i);
}

/* msg is copied. */
void
pmc_job_task_fail(pm_result *j, size_t i, int code, const char *msg)
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

pm_result *
pmc_job_new(pm_pool *p, enum jkind kind, const char *fn, size_t n,
    size_t extra)
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

void
pmc_job_enqueue(pm_pool *p, pm_result *j)
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

int
pmc_pool_has_work(const pm_pool *p)
{
	return p->qhead != NULL || p->retry.len > 0 || p->inflight > 0;
}

/* Queue tasks to send again, merged with the last run when contiguous. */
void
pmc_pool_retry(pm_pool *p, pm_result *j, size_t i)
{
	struct pmc_span *t;

	if (p->retry.len > 0) {
		t = &p->retry.v[p->retry.head + p->retry.len - 1];
		if (t->job == j && t->start + t->count == i) {
			t->count++;
			return;
		}
	}
	if (pmc_spanq_push(&p->retry, j, i, 1) == 0)
		j->refs++;
	else
		pmc_job_task_fail(j, i, PM_ENOMEM, "out of memory");
}

size_t
pmc_job_window_room(const pm_result *j)
{
	size_t ahead;

	if (j->kind != J_IMAP && j->kind != J_UNORDERED)
		return (size_t)-1;
	ahead = j->next - j->consumed;
	return ahead >= j->window ? 0 : j->window - ahead;
}

pm_result *
pmc_pool_next_job(pm_pool *p)
{
	pm_result *j;

	for (j = p->qhead; j != NULL; j = j->qnext)
		if (pmc_job_window_room(j) > 0)
			return j;
	return NULL;
}

/* Work is queued but no worker is left or coming: fail it. */
void
pmc_pool_starved(pm_pool *p, int code, const char *msg)
{
	struct pmc_span *s;
	pm_result *j;
	size_t i;

	while ((s = pmc_spanq_first(&p->retry)) != NULL) {
		j = s->job;
		for (i = 0; i < s->count; i++)
			pmc_job_task_fail(j, s->start + i, code, msg);
		pmc_spanq_pop(&p->retry);
		pmc_job_unref(j);
	}
	while ((j = p->qhead) != NULL) {
		for (i = j->next; i < j->n; i++)
			pmc_job_task_fail(j, i, code, msg);
		j->next = j->n;
		pmc_job_unqueue(p, j);
	}
}
