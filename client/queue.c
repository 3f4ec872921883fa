/*
 * queue.c - queues hosted by pmd (Python's Manager().Queue() and
 * JoinableQueue()): open by name, then put/get and the rest by qid.
 * Blocking waits happen in pmd, which parks the request and answers when
 * it is served or its timeout passes; here a call only waits for that
 * reply, so a call that times out has waited at least its timeout.
 */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pmclient_int.h"
#include "queue.pb-c.h"

#define PMC_Q_FLAGS	(PM_Q_CREATE | PM_Q_EXCL | PM_Q_JOINABLE | PM_Q_SHARED)
#define PMC_Q_GET_MAX	65536		/* items asked for in one get */

struct pm_queue {
	pm_conn		*c;
	uint64_t	 qid;
	char		*name;
	long		 maxsize;	/* 0: unbounded */
	int		 flags;		/* PM_Q_JOINABLE, PM_Q_SHARED */
	int		 closed;	/* pm_queue_close() */
	ProtobufCBinaryData *bd;	/* put_many's scratch: no malloc a batch */
	size_t		 bdcap;
};

/* A put's fields besides its items, packed, are at most this many bytes
 * (qid, timeout); each item adds a tag and a length of at most 11. */
#define PMC_Q_PUT_FIXED	32
#define PMC_Q_ITEM_OVER	11

static int
q_usable(pm_queue *q)
{
	if (q == NULL)
		return pmc_err(PM_EINVAL, "no queue");
	if (q->closed)
		return pmc_err(PM_ECLOSED, "queue handle %s is closed",
		    q->name);
	return PM_OK;
}

static int
q_timeout_ok(double timeout)
{
	if (isnan(timeout))
		return pmc_err(PM_EINVAL, "timeout is not a number");
	return PM_OK;
}

/* Sends req and waits for pmd's answer (pmd enforces any timeout). */
static int
q_call(pm_conn *c, uint32_t type, const ProtobufCMessage *req,
    const ProtobufCMessageDescriptor *want, struct pmc_pending **out)
{
	return pmc_call(c, type, req, NULL, 0, want, out, -1);
}

pm_queue *
pm_queue_open(pm_conn *c, const char *name, long maxsize, int flags)
{
	Pm__QueueOpen m = PM__QUEUE_OPEN__INIT;
	Pm__QueueOpenReply *r;
	struct pmc_pending *p;
	pm_queue *q;

	if (c == NULL || name == NULL) {
		pmc_err(PM_EINVAL, "no connection or no name");
		return NULL;
	}
	if (flags & ~PMC_Q_FLAGS) {
		pmc_err(PM_EINVAL, "unknown queue flags %#x", flags);
		return NULL;
	}
	m.name = (char *)(uintptr_t)name;
	m.maxsize = maxsize > 0 ? maxsize : 0;
	m.flags = (uint32_t)flags;
	if (q_call(c, PM__QUEUE_TYPE__Q_OPEN, &m.base,
	    &pm__queue_open_reply__descriptor, &p) != PM_OK)
		return NULL;
	if ((r = (Pm__QueueOpenReply *)p->msg) == NULL) {
		pmc_pending_free(c, p);
		pmc_err(PM_EPROTO, "pmd answered open without a reply");
		return NULL;
	}
	if ((q = calloc(1, sizeof(*q))) == NULL ||
	    (q->name = strdup(name)) == NULL) {
		free(q);
		pmc_pending_free(c, p);
		pmc_err(PM_ENOMEM, "out of memory");
		return NULL;
	}
	q->c = c;
	q->qid = r->qid;
	q->maxsize = (long)r->maxsize;
	q->flags = (int)r->flags;
	pmc_pending_free(c, p);
	pmc_ok();
	return q;
}

/* ---- put ---- */

struct pmc_pending *
pmc_queue_put_send(pm_queue *q, const pm_bytes *items, size_t n,
    double timeout, int flush)
{
	Pm__QueuePut m = PM__QUEUE_PUT__INIT;
	ProtobufCBinaryData one, *bd;
	struct pmc_pending *p = NULL;
	uint64_t onelen, *fdlen = NULL;
	int fds[PM_WIRE_MAX_FDS], nfds = 0;
	size_t i, size, bound, big = 0;

	if (q_usable(q) != PM_OK || q_timeout_ok(timeout) != PM_OK)
		return NULL;
	if (n == 0 || items == NULL) {
		pmc_err(PM_EINVAL, "no items to put");
		return NULL;
	}
	for (i = 0; i < n; i++)
		big += items[i].len >= PM_WIRE_MEMFD_MIN;
	if (big > PM_WIRE_MAX_FDS) {
		pmc_err(PM_ELIMIT, "%zu items of %u bytes or more in one put; "
		    "at most %d (each travels as a memfd)", big,
		    PM_WIRE_MEMFD_MIN, PM_WIRE_MAX_FDS);
		return NULL;
	}
	if (big > 0 && (fdlen = n == 1 ? &onelen :
	    calloc(n, sizeof(*fdlen))) == NULL) {
		pmc_err(PM_ENOMEM, "out of memory");
		return NULL;
	}
	if (n == 1)
		bd = &one;
	else {
		if (n > q->bdcap) {
			if (n > SIZE_MAX / sizeof(*bd) ||
			    (bd = realloc(q->bd, n * sizeof(*bd))) == NULL) {
				pmc_err(PM_ENOMEM, "out of memory");
				return NULL;
			}
			q->bd = bd;
			q->bdcap = n;
		}
		bd = q->bd;
	}
	bound = PMC_Q_PUT_FIXED;
	for (i = 0; i < n; i++) {
		if (items[i].data == NULL && items[i].len > 0) {
			pmc_err(PM_EINVAL, "item %zu has no data", i);
			goto fail;
		}
		bd[i].data = items[i].data;
		bd[i].len = items[i].len;
		if (fdlen != NULL)
			fdlen[i] = 0;
		if (items[i].len >= PM_WIRE_MEMFD_MIN) {
			if ((fds[nfds] = wire_memfd(items[i].data,
			    items[i].len)) == -1) {
				pmc_err_sys("a memfd for item %zu", i);
				goto fail;
			}
			nfds++;
			fdlen[i] = items[i].len;
			bd[i].data = NULL;
			bd[i].len = 0;
			continue;
		}
		bound += PMC_Q_ITEM_OVER + (items[i].len < SIZE_MAX / 2 ?
		    items[i].len : SIZE_MAX / 2);
		if (bound > SIZE_MAX / 2)
			bound = SIZE_MAX / 2;
	}
	m.qid = q->qid;
	m.n_items = n;
	m.items = bd;
	m.timeout = timeout;
	m.n_fd_len = fdlen != NULL ? n : 0;
	m.fd_len = fdlen;
	/* the exact size only when the bound says it may be too big */
	if (q->c->max_frame > 0 && bound > q->c->max_frame &&
	    (size = protobuf_c_message_get_packed_size(&m.base)) >
	    q->c->max_frame) {
		pmc_err(PM_ELIMIT, "%zu items of small bytes (%zu in all) in "
		    "one put; pmd's max_frame takes %u: put fewer at once",
		    n - big, size, q->c->max_frame);
		goto fail;
	}
	if (flush || nfds > 0)
		p = pmc_send(q->c, PM__QUEUE_TYPE__Q_PUT, &m.base, fds, nfds,
		    NULL);
	else
		p = pmc_send_later(q->c, PM__QUEUE_TYPE__Q_PUT, &m.base, NULL);
	nfds = 0;			/* taken */
fail:
	while (nfds > 0)
		close(fds[--nfds]);
	if (fdlen != &onelen)
		free(fdlen);
	return p;
}

int
pmc_queue_put_recv(pm_queue *q, struct pmc_pending *p)
{
	int rc;

	rc = pmc_wait(q->c, p, -1);
	pmc_pending_free(q->c, p);
	return rc;
}

int
pm_queue_put(pm_queue *q, const void *data, size_t len, double timeout)
{
	struct pmc_pending *p;
	pm_bytes b;

	b.data = (void *)(uintptr_t)data;
	b.len = len;
	if (data == NULL && len == 0)
		b.data = (void *)(uintptr_t)"";
	if ((p = pmc_queue_put_send(q, &b, 1, timeout, 1)) == NULL)
		return pm_last_error();
	return pmc_queue_put_recv(q, p);
}

int
pm_queue_put_many(pm_queue *q, const pm_bytes *items, size_t n,
    double timeout)
{
	struct pmc_pending *p;

	if ((p = pmc_queue_put_send(q, items, n, timeout, 1)) == NULL)
		return pm_last_error();
	return pmc_queue_put_recv(q, p);
}

/* ---- get ---- */

struct pmc_pending *
pmc_queue_get_send(pm_queue *q, size_t max, double timeout, int flush)
{
	Pm__QueueGet m = PM__QUEUE_GET__INIT;

	if (q_usable(q) != PM_OK || q_timeout_ok(timeout) != PM_OK)
		return NULL;
	if (max == 0) {
		pmc_err(PM_EINVAL, "get of 0 items");
		return NULL;
	}
	m.qid = q->qid;
	m.max = max > PMC_Q_GET_MAX ? PMC_Q_GET_MAX : (uint32_t)max;
	m.timeout = timeout;
	if (flush)
		return pmc_send(q->c, PM__QUEUE_TYPE__Q_GET, &m.base, NULL, 0,
		    &pm__queue_items__descriptor);
	return pmc_send_later(q->c, PM__QUEUE_TYPE__Q_GET, &m.base,
	    &pm__queue_items__descriptor);
}

/* The reply's memfd items read into its items' buffers (the fds are
 * closed with p). */
static int
q_take_fd_items(Pm__QueueItems *r, struct pmc_pending *p)
{
	size_t i;
	int k = 0;

	if (r->n_fd_len != 0 && r->n_fd_len != r->n_items)
		return pmc_err(PM_EPROTO, "pmd answered get with %zu fd "
		    "lengths for %zu items", r->n_fd_len, r->n_items);
	for (i = 0; i < r->n_fd_len; i++) {
		if (r->fd_len[i] == 0)
			continue;
		if (k == p->nfds || r->fd_len[i] > SIZE_MAX)
			return pmc_err(PM_EPROTO, "pmd answered get without "
			    "the memfd of item %zu", i);
		free(r->items[i].data);
		if ((r->items[i].data = wire_memfd_read(p->fds[k++],
		    (size_t)r->fd_len[i])) == NULL)
			return pmc_err_sys("reading item %zu (%llu bytes)", i,
			    (unsigned long long)r->fd_len[i]);
		r->items[i].len = (size_t)r->fd_len[i];
	}
	return PM_OK;
}

int
pmc_queue_get_recv(pm_queue *q, struct pmc_pending *p, pm_bytes *out,
    size_t max, size_t *got)
{
	Pm__QueueItems *r;
	size_t i, n;
	int rc;

	*got = 0;
	if ((rc = pmc_wait(q->c, p, -1)) != PM_OK) {
		pmc_pending_free(q->c, p);
		return rc;
	}
	r = (Pm__QueueItems *)p->msg;
	if (r == NULL || r->n_items == 0 || r->n_items > max) {
		pmc_pending_free(q->c, p);
		return pmc_err(PM_EPROTO, "pmd answered get with %zu items",
		    r ? r->n_items : 0);
	}
	n = r->n_items;
	if ((rc = q_take_fd_items(r, p)) != PM_OK) {
		pmc_pending_free(q->c, p);
		return rc;
	}
	for (i = 0; i < n; i++)
		if (r->items[i].data == NULL && (r->items[i].data =
		    malloc(1)) == NULL) {
			pmc_pending_free(q->c, p);
			return pmc_err(PM_ENOMEM, "out of memory");
		}
	for (i = 0; i < n; i++) {
		/* the reply's buffers become the caller's */
		out[i].data = r->items[i].data;
		out[i].len = r->items[i].len;
		r->items[i].data = NULL;
		r->items[i].len = 0;
	}
	*got = n;
	pmc_pending_free(q->c, p);
	return pmc_ok();
}

int
pm_queue_get(pm_queue *q, pm_bytes *out, double timeout)
{
	struct pmc_pending *p;
	size_t got;

	if (out == NULL)
		return pmc_err(PM_EINVAL, "no place for the item");
	out->data = NULL;
	out->len = 0;
	if ((p = pmc_queue_get_send(q, 1, timeout, 1)) == NULL)
		return pm_last_error();
	return pmc_queue_get_recv(q, p, out, 1, &got);
}

int
pm_queue_get_many(pm_queue *q, pm_bytes *out, size_t max, size_t *got,
    double timeout)
{
	struct pmc_pending *p;
	size_t dummy;

	if (got == NULL)
		got = &dummy;
	*got = 0;
	if (out == NULL || max == 0)
		return pmc_err(PM_EINVAL, "no place for items");
	if ((p = pmc_queue_get_send(q, max, timeout, 1)) == NULL)
		return pm_last_error();
	return pmc_queue_get_recv(q, p, out, max, got);
}

/* ---- the rest ---- */

static int
q_stat(pm_queue *q, Pm__QueueInfo **info, struct pmc_pending **p)
{
	Pm__QueueRef m = PM__QUEUE_REF__INIT;
	int rc;

	if ((rc = q_usable(q)) != PM_OK)
		return rc;
	m.qid = q->qid;
	if ((rc = q_call(q->c, PM__QUEUE_TYPE__Q_STAT, &m.base,
	    &pm__queue_info__descriptor, p)) != PM_OK)
		return rc;
	if ((*info = (Pm__QueueInfo *)(*p)->msg) == NULL) {
		pmc_pending_free(q->c, *p);
		return pmc_err(PM_EPROTO, "pmd answered stat without info");
	}
	return PM_OK;
}

long
pm_queue_qsize(pm_queue *q)
{
	struct pmc_pending *p;
	Pm__QueueInfo *i;
	long n;
	int rc;

	if ((rc = q_stat(q, &i, &p)) != PM_OK)
		return rc;
	n = (long)i->size;
	pmc_pending_free(q->c, p);
	pmc_ok();
	return n;
}

int
pm_queue_empty(pm_queue *q)
{
	long n = pm_queue_qsize(q);

	return n < 0 ? (int)n : n == 0;
}

int
pm_queue_full(pm_queue *q)
{
	long n = pm_queue_qsize(q);

	if (n < 0)
		return (int)n;
	return q->maxsize > 0 && n >= q->maxsize;
}

static int
q_simple(pm_queue *q, uint32_t type, const ProtobufCMessage *m)
{
	struct pmc_pending *p;
	int rc;

	if ((rc = q_call(q->c, type, m, NULL, &p)) != PM_OK)
		return rc;
	pmc_pending_free(q->c, p);
	return pmc_ok();
}

int
pm_queue_task_done(pm_queue *q)
{
	Pm__QueueRef m = PM__QUEUE_REF__INIT;
	int rc;

	if ((rc = q_usable(q)) != PM_OK)
		return rc;
	m.qid = q->qid;
	return q_simple(q, PM__QUEUE_TYPE__Q_TASK_DONE, &m.base);
}

int
pm_queue_join(pm_queue *q, double timeout)
{
	Pm__QueueJoin m = PM__QUEUE_JOIN__INIT;
	int rc;

	if ((rc = q_usable(q)) != PM_OK || (rc = q_timeout_ok(timeout)) !=
	    PM_OK)
		return rc;
	m.qid = q->qid;
	m.timeout = timeout;
	return q_simple(q, PM__QUEUE_TYPE__Q_JOIN, &m.base);
}

int
pm_queue_shutdown(pm_queue *q, int immediate)
{
	Pm__QueueShutdown m = PM__QUEUE_SHUTDOWN__INIT;
	int rc;

	if ((rc = q_usable(q)) != PM_OK)
		return rc;
	m.qid = q->qid;
	m.immediate = immediate != 0;
	return q_simple(q, PM__QUEUE_TYPE__Q_SHUTDOWN, &m.base);
}

/* This handle only; the queue and other handles go on. */
int
pm_queue_close(pm_queue *q)
{
	if (q == NULL)
		return pmc_err(PM_EINVAL, "no queue");
	q->closed = 1;
	return pmc_ok();
}

int
pm_queue_unlink(pm_conn *c, const char *name)
{
	Pm__QueueUnlink m = PM__QUEUE_UNLINK__INIT;
	struct pmc_pending *p;
	int rc;

	if (c == NULL || name == NULL)
		return pmc_err(PM_EINVAL, "no connection or no name");
	m.name = (char *)(uintptr_t)name;
	if ((rc = q_call(c, PM__QUEUE_TYPE__Q_UNLINK, &m.base, NULL, &p)) !=
	    PM_OK)
		return rc;
	pmc_pending_free(c, p);
	return pmc_ok();
}

void
pm_queue_free(pm_queue *q)
{
	if (q == NULL)
		return;
	free(q->bd);
	free(q->name);
	free(q);
}
