/*
 * poolresult.c - what a caller submits to a Pool and gets back: apply and
 * map (blocking, or async with a pm_result, Python's AsyncResult),
 * imap and imap_unordered (a pm_iter read as results come), and the
 * pm_result calls: wait, get, ready, successful, error, cancel, free.
 */
#include <stdlib.h>
#include <string.h>

#include "pool_int.h"

/* ---- apply and map ---- */

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
	pmc_pool_enter(p);
	if (p->spawn_blocked) {
		p->spawn_blocked = 0;
		p->early_deaths = 0;
		p->spawn_code = PM_OK;
	}
	pmc_job_enqueue(p, j);
	pmc_pool_fill(p);
	pmc_pool_dispatch(p);
	pmc_pool_leave(p);
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
		if ((j = pmc_job_new(p, J_APPLY, fn, 1, 0)) == NULL ||
		    (j->own = malloc(len)) == NULL) {
			if (j != NULL)
				pmc_job_free(j);
			pmc_err(PM_ENOMEM, "out of memory");
			return NULL;
		}
		memcpy(j->own, arg, len);
		j->in1.data = j->own;
	} else if ((j = pmc_job_new(p, J_APPLY, fn, 1, copy ? len : 0)) == NULL) {
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
	if ((j = pmc_job_new(p, kind, fn, n, 0)) == NULL)
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
		pmc_job_free(j);
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

/* ---- imap ---- */

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
		pmc_pool_enter(j->pool);
		pmc_pool_dispatch(j->pool);
		pmc_pool_leave(j->pool);
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
		pmc_job_task_fail(j, i, PM_ECANCELLED, "cancelled");
	j->next = j->n;
	pmc_job_unqueue(p, j);
	/* the retry queue keeps the other jobs' runs */
	for (k = 0; k < p->retry.len; k++) {
		s = &p->retry.v[p->retry.head + k];
		if (s->job != j) {
			p->retry.v[p->retry.head + keep++] = *s;
			continue;
		}
		for (i = 0; i < s->count; i++)
			pmc_job_task_fail(j, s->start + i, PM_ECANCELLED,
			    "cancelled");
		pmc_job_unref(j);
	}
	p->retry.len = keep;
	for (w = p->workers; w != NULL; w = w->next) {
		if (w->dead || w->killed || w->channel < 0 ||
		    pmc_pw_next_task(w, &rj, &i) == -1)
			continue;
		if (rj == j && j->st[i] == T_PENDING) {
			/* it runs one of ours now: end it */
			pmc_pw_kill(w);
			pmc_pw_give_back(w, 0, PM_ECANCELLED, "cancelled", j);
			w->killed = 1;
			pmc_pw_close_channel(w);
		}
	}
	/* the rest wait on workers behind other tasks: their answers will
	 * be dropped */
	if (!j->ready)
		for (i = 0; i < j->n; i++)
			if (j->st[i] == T_PENDING)
				pmc_job_task_fail(j, i, PM_ECANCELLED,
				    "cancelled");
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
	pmc_pool_enter(p);
	job_cancel(p, r);
	pmc_pool_fill(p);
	pmc_pool_dispatch(p);
	pmc_pool_leave(p);
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
	pmc_job_maybe_free(r);
}
