/*
 * queues.c - the named queues pmd hosts: FIFO byte strings with maxsize,
 * joinable accounting, shutdown and unlink, and requests parked in the
 * broker (first come, first served) until they can be served, their
 * timer fires, or the queue closes.
 *
 * Invariants: getters are parked only while the queue is empty, putters
 * only while the batch at their head does not fit; queue_serve() restores
 * both after every change.  An item leaves the queue only inside a reply
 * to a live session, so a client that dies while parked consumes nothing.
 * Contents live in the broker's memory and are lost when pmd stops; an
 * item of PM_WIRE_MEMFD_MIN bytes or more stays in the sealed memfd it
 * came in (pmd holds the fd, checked sealed and of its declared size) and
 * leaves in the reply that hands it on.
 */
#include <sys/queue.h>
#include <sys/types.h>

#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pmd.h"
#include "pmclient.h"		/* PM_Q_* flag values (the wire's too) */
#include "queue.pb-c.h"

#define Q_RING_MIN	16		/* first ring allocation, items */
#define Q_GET_MAX	65536		/* items in one get reply */
#define Q_ITEM_OVERHEAD	16		/* frame bytes per item besides data */
#define Q_OPEN_FLAGS	(PM_Q_CREATE | PM_Q_EXCL | PM_Q_JOINABLE | PM_Q_SHARED)
#define Q_KEPT_FLAGS	(PM_Q_JOINABLE | PM_Q_SHARED)
#define Q_MEMFD_SEALS	(F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE)
#define Q_FD_HANDED	(-2)		/* qitem.fd: gone with a reply */

enum { Q_OPEN_ = 0, Q_DRAIN, Q_IMMEDIATE };	/* queue->shutdown */
enum qwkind { QW_GET, QW_PUT, QW_JOIN };

struct qitem {
	uint8_t		*data;		/* NULL when len is 0 or in fd */
	size_t		 len;
	int		 fd;		/* a sealed memfd of len bytes, or -1 */
	struct uid_use	*by;		/* who put it: its bytes count there */
};

/* A request parked until it can be answered. */
struct qwaiter {
	TAILQ_ENTRY(qwaiter) qentry;	/* its queue's list of its kind */
	TAILQ_ENTRY(qwaiter) sentry;	/* its session's parked requests */
	struct queue	*q;
	struct session	*s;
	uint32_t	 id;		/* request to answer */
	enum qwkind	 kind;
	struct event	*timer;		/* NULL: waits forever */
	uint32_t	 max;		/* get: items wanted at most */
	struct qitem	*items;		/* put: the batch, owned */
	size_t		 nitems;
	uint64_t	 bytes;
};

struct queue {
	TAILQ_ENTRY(queue) entry;
	UT_hash_handle	 hh;		/* by name */
	uint64_t	 qid;		/* sequence << 32 | slot + 1 */
	char		*name;
	uid_t		 uid;		/* owner */
	struct uid_use	*use;		/* the owner's */
	uint32_t	 flags;		/* PM_Q_JOINABLE, PM_Q_SHARED */
	long		 maxsize;	/* 0: unbounded */
	struct qitem	*ring;
	size_t		 cap;
	size_t		 head;
	size_t		 count;
	uint64_t	 bytes;		/* payload held */
	uint64_t	 unfinished;	/* joinable: put and not yet done */
	uint64_t	 outstanding;	/* joinable: got and not yet done */
	int		 shutdown;	/* Q_OPEN_, Q_DRAIN, Q_IMMEDIATE */
	int		 serve;		/* on the to_serve list */
	TAILQ_ENTRY(queue) sentry;	/* to_serve */
	struct qwaiterq	 getters;
	struct qwaiterq	 putters;
	struct qwaiterq	 joiners;
	uint32_t	 nw[3];		/* parked, by kind */
	uint64_t	 puts;
	uint64_t	 gets;
};
TAILQ_HEAD(queueq, queue);

static struct queueq	 queues = TAILQ_HEAD_INITIALIZER(queues);
static struct queue	*by_name;
static struct queue	**slots;	/* by qid's low half - 1 */
static uint32_t		 nslots;
static uint32_t		 qseq;		/* qid's high half */
static int		 nqueues;
static int		 nwaiters;
static uint64_t		 total_bytes;	/* queued and parked payload */
static int		 total_fds;	/* memfd items held */

static void	queue_serve(struct queue *);

/* ---- small helpers ---- */

/* An item leaves pmd (its memfd closed, unless handed on in a reply and
 * set to -1 then): it no longer counts for the uid that put it. */
static void
item_free(struct qitem *it)
{
	it->by->queue_bytes -= it->len;
	if (it->fd >= 0 || it->fd == Q_FD_HANDED) {
		if (it->fd >= 0)
			close(it->fd);
		total_fds--;
		it->by->fd_items--;
	}
	uid_use_put(it->by);
	free(it->data);
	it->data = NULL;
	it->fd = -1;
}

static size_t
queue_cap(const struct queue *q)
{
	return q->maxsize > 0 ? (size_t)q->maxsize :
	    (size_t)pmd->cfg.max_queue_items;
}

/* The largest inline item a frame holds. */
static size_t
inline_max(void)
{
	return pmd->cfg.max_frame > PMD_QUEUE_FRAME_SLACK ?
	    pmd->cfg.max_frame - PMD_QUEUE_FRAME_SLACK : 0;
}

static int
queue_room(const struct queue *q, size_t n, uint64_t bytes)
{
	return q->count + n <= queue_cap(q) &&
	    q->bytes + bytes <= pmd->cfg.max_queue_bytes;
}

static int
queue_access(const struct session *s, const struct queue *q)
{
	return s->uid == q->uid || (q->flags & PM_Q_SHARED) ||
	    session_is_admin(s);
}

/* ---- the ring ---- */

static int
ring_reserve(struct queue *q, size_t n)
{
	struct qitem *nr;
	size_t ncap, i;

	if (q->count + n <= q->cap)
		return 0;
	ncap = q->cap ? q->cap : Q_RING_MIN;
	while (ncap < q->count + n)
		ncap *= 2;
	if ((nr = calloc(ncap, sizeof(*nr))) == NULL)
		return -1;
	for (i = 0; i < q->count; i++)
		nr[i] = q->ring[(q->head + i) % q->cap];
	free(q->ring);
	q->ring = nr;
	q->cap = ncap;
	q->head = 0;
	return 0;
}

/* Appends n items (taken) after ring_reserve(q, n). */
static void
ring_push(struct queue *q, const struct qitem *items, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		q->ring[(q->head + q->count) % q->cap] = items[i];
		q->count++;
		q->bytes += items[i].len;
	}
	q->puts += n;
	pmd->queue_puts += n;
	if (q->flags & PM_Q_JOINABLE)
		q->unfinished += n;
}

static struct qitem
ring_pop(struct queue *q)
{
	struct qitem it = q->ring[q->head];

	q->head = (q->head + 1) % q->cap;
	q->count--;
	q->bytes -= it.len;
	total_bytes -= it.len;
	return it;
}

static void
ring_clear(struct queue *q)
{
	struct qitem it;

	while (q->count > 0) {
		it = ring_pop(q);
		item_free(&it);
	}
}

/* ---- parked requests ---- */

static struct qwaiterq *
waiter_list(struct queue *q, enum qwkind kind)
{
	return kind == QW_GET ? &q->getters : kind == QW_PUT ? &q->putters :
	    &q->joiners;
}

static void
waiter_free(struct qwaiter *w)
{
	size_t i;

	TAILQ_REMOVE(waiter_list(w->q, w->kind), w, qentry);
	TAILQ_REMOVE(&w->s->parked, w, sentry);
	w->q->nw[w->kind]--;
	w->s->use->waiters--;
	nwaiters--;
	if (w->timer != NULL)
		event_free(w->timer);
	for (i = 0; i < w->nitems; i++)
		item_free(&w->items[i]);
	total_bytes -= w->bytes;
	free(w->items);
	session_unparked(w->s);
	free(w);
}

/* Answers w with an error and forgets it. */
static void
waiter_fail(struct qwaiter *w, int code, const char *msg)
{
	session_error(w->s, w->id, code, "%s", msg);
	waiter_free(w);
}

static void
waiter_timeout_cb(evutil_socket_t fd, short ev, void *arg)
{
	struct qwaiter *w = arg;
	struct queue *q = w->q;

	switch (w->kind) {
	case QW_GET:
		waiter_fail(w, PM__CODE__C_EMPTY, "queue empty: nothing to "
		    "get in time");
		break;
	case QW_PUT:
		waiter_fail(w, PM__CODE__C_FULL, "queue full: no room in time");
		queue_serve(q);	/* a smaller batch behind may fit now */
		break;
	case QW_JOIN:
		waiter_fail(w, PM__CODE__C_TIMEDOUT, "tasks still unfinished");
		break;
	}
}

/* Parks a request; NULL with the error sent. */
static struct qwaiter *
waiter_park(struct session *s, uint32_t id, struct queue *q,
    enum qwkind kind, double timeout)
{
	struct qwaiter *w;
	struct timeval tv;

	if (nwaiters >= pmd->cfg.max_queue_waiters) {
		session_error(s, id, PM__CODE__C_LIMIT, "pmd holds %d blocked "
		    "queue requests, its max_queue_waiters", nwaiters);
		return NULL;
	}
	if (s->use->waiters >= pmd->cfg.max_queue_waiters_per_uid) {
		session_error(s, id, PM__CODE__C_LIMIT, "uid %u has %d blocked "
		    "queue requests, its max_queue_waiters_per_uid",
		    (unsigned)s->uid, s->use->waiters);
		return NULL;
	}
	if ((w = calloc(1, sizeof(*w))) == NULL) {
		session_error(s, id, PM__CODE__C_NOMEM, "pmd is out of memory");
		return NULL;
	}
	w->q = q;
	w->s = s;
	w->id = id;
	w->kind = kind;
	if (timeout > 0) {
		if ((w->timer = evtimer_new(pmd->base, waiter_timeout_cb,
		    w)) == NULL) {
			free(w);
			session_error(s, id, PM__CODE__C_NOMEM, "no timer");
			return NULL;
		}
		if (timeout > (double)PMD_MAX_WAIT)
			timeout = PMD_MAX_WAIT;
		tv.tv_sec = (time_t)timeout;
		tv.tv_usec = (suseconds_t)((timeout - (double)tv.tv_sec) *
		    1e6) + 1;
		if (tv.tv_usec >= 1000000) {
			tv.tv_sec++;
			tv.tv_usec -= 1000000;
		}
		evtimer_add(w->timer, &tv);
	}
	TAILQ_INSERT_TAIL(waiter_list(q, kind), w, qentry);
	TAILQ_INSERT_TAIL(&s->parked, w, sentry);
	q->nw[kind]++;
	s->use->waiters++;
	nwaiters++;
	return w;
}

/* ---- serving ---- */

/* Replies to (s, id) with up to max items from the head of q. */
static void
queue_deliver(struct queue *q, struct session *s, uint32_t id, uint32_t max)
{
	static ProtobufCBinaryData *bd;
	static uint64_t *fdlen;
	static size_t bdcap;
	Pm__QueueItems r = PM__QUEUE_ITEMS__INIT;
	int fds[PM_WIRE_MAX_FDS] = { -1 }, nfds = 0;
	size_t n = 0, i, room, want, len;

	want = q->count < max ? q->count : max;
	if (want > bdcap) {
		ProtobufCBinaryData *nb;
		uint64_t *nl;
		size_t ncap = bdcap ? bdcap : 64;

		while (ncap < want)
			ncap *= 2;
		nb = realloc(bd, ncap * sizeof(*nb));
		if (nb != NULL)
			bd = nb;
		nl = nb ? realloc(fdlen, ncap * sizeof(*nl)) : NULL;
		if (nl != NULL) {
			fdlen = nl;
			bdcap = ncap;
		} else if (bdcap == 0) {
			session_error(s, id, PM__CODE__C_NOMEM,
			    "pmd is out of memory");
			return;
		} else
			want = bdcap;
	}
	/* what one frame holds (the first item always fits: inline_max) */
	room = inline_max();
	for (i = 0; i < want; i++) {
		const struct qitem *it = &q->ring[(q->head + i) % q->cap];

		len = it->fd >= 0 ? 0 : it->len;
		if (i > 0 && (len + Q_ITEM_OVERHEAD > room ||
		    (it->fd >= 0 && nfds == PM_WIRE_MAX_FDS)))
			break;
		room -= len + Q_ITEM_OVERHEAD < room ?
		    len + Q_ITEM_OVERHEAD : room;
		bd[i].data = it->fd >= 0 ? NULL : it->data;
		bd[i].len = len;
		fdlen[i] = it->fd >= 0 ? it->len : 0;
		if (it->fd >= 0)
			fds[nfds++] = it->fd;
		n++;
	}
	r.n_items = n;
	r.items = bd;
	r.n_fd_len = nfds > 0 ? n : 0;
	r.fd_len = fdlen;
	if (session_admit(s, id, &r.base) == -1)
		return;		/* refused or going: the items stay */
	/* the fds go with the reply: session_send closes them once sent */
	session_send(s, PM__QUEUE_TYPE__Q_ITEMS, id, &r.base, fds, nfds);
	for (i = 0; i < n; i++) {
		struct qitem it = ring_pop(q);

		if (it.fd >= 0)
			it.fd = Q_FD_HANDED;
		item_free(&it);
	}
	q->gets += n;
	pmd->queue_gets += n;
	if (q->flags & PM_Q_JOINABLE)
		q->outstanding += n;
}

/* Hands items to parked getters, admits parked putters, releases
 * joiners: first come, first served. */
static void
queue_serve(struct queue *q)
{
	struct qwaiter *w;
	int progress;

	do {
		progress = 0;
		while (q->count > 0 && (w = TAILQ_FIRST(&q->getters)) != NULL) {
			if (session_alive(w->s))
				queue_deliver(q, w->s, w->id, w->max);
			waiter_free(w);	/* a dead one consumed nothing */
		}
		/* shut down and drained: nothing more will come */
		while (q->shutdown != Q_OPEN_ && q->count == 0 &&
		    (w = TAILQ_FIRST(&q->getters)) != NULL)
			waiter_fail(w, PM__CODE__C_CLOSED, "queue shut down");
		while ((w = TAILQ_FIRST(&q->putters)) != NULL &&
		    q->shutdown == Q_OPEN_ &&
		    queue_room(q, w->nitems, w->bytes)) {
			if (ring_reserve(q, w->nitems) == -1) {
				waiter_fail(w, PM__CODE__C_NOMEM,
				    "pmd is out of memory");
				continue;
			}
			ring_push(q, w->items, w->nitems);
			w->nitems = 0;		/* the ring owns them now */
			w->bytes = 0;		/* still counted, as queued */
			session_send(w->s, PM__TYPE__T_OK, w->id, NULL, NULL, 0);
			waiter_free(w);
			progress = 1;
		}
	} while (progress);
	if ((q->flags & PM_Q_JOINABLE) && q->unfinished == 0)
		while ((w = TAILQ_FIRST(&q->joiners)) != NULL) {
			session_send(w->s, PM__TYPE__T_OK, w->id, NULL, NULL, 0);
			waiter_free(w);
		}
}

/* ---- lookup ---- */

static struct queue *
queue_by_name(const char *name)
{
	struct queue *q;

	HASH_FIND_STR(by_name, name, q);
	return q;
}

/* The queue of a request, access checked; NULL with the error sent. */
static struct queue *
queue_lookup(struct session *s, uint32_t id, uint64_t qid)
{
	uint32_t slot = (uint32_t)(qid & 0xffffffffu);
	struct queue *q;

	if (slot == 0 || slot > nslots || (q = slots[slot - 1]) == NULL ||
	    q->qid != qid) {
		session_error(s, id, PM__CODE__C_CLOSED,
		    "the queue no longer exists (unlinked)");
		return NULL;
	}
	if (!queue_access(s, q)) {
		session_error(s, id, PM__CODE__C_PERM, "queue %s belongs to "
		    "uid %u and is not shared", q->name, (unsigned)q->uid);
		return NULL;
	}
	return q;
}

int
name_valid(const char *name)
{
	size_t n = strlen(name);
	const unsigned char *p;

	if (n == 0 || n > PMD_MAX_QUEUE_NAME)
		return 0;
	for (p = (const unsigned char *)name; *p; p++)
		if (*p < 0x20 || *p == 0x7f)
			return 0;
	return 1;
}

/* ---- create and destroy ---- */

static struct queue *
queue_new(struct session *s, uint32_t id, const Pm__QueueOpen *m)
{
	struct queue *q, **ns;
	uint32_t i, ncap;

	if (nqueues >= pmd->cfg.max_queues) {
		session_error(s, id, PM__CODE__C_LIMIT, "pmd holds %d queues, "
		    "its max_queues", nqueues);
		return NULL;
	}
	if (s->use->queues >= pmd->cfg.max_queues_per_uid) {
		session_error(s, id, PM__CODE__C_LIMIT, "uid %u holds %d "
		    "queues, its max_queues_per_uid", (unsigned)s->uid,
		    s->use->queues);
		return NULL;
	}
	if (m->maxsize > pmd->cfg.max_queue_items) {
		session_error(s, id, PM__CODE__C_LIMIT, "maxsize %lld above "
		    "pmd's max_queue_items %d", (long long)m->maxsize,
		    pmd->cfg.max_queue_items);
		return NULL;
	}
	for (i = 0; i < nslots && slots[i] != NULL; i++)
		;
	if (i == nslots) {
		ncap = nslots ? nslots * 2 : 16;
		if ((ns = reallocarray(slots, ncap, sizeof(*ns))) == NULL)
			goto nomem;
		memset(ns + nslots, 0, (ncap - nslots) * sizeof(*ns));
		slots = ns;
		nslots = ncap;
	}
	if ((q = calloc(1, sizeof(*q))) == NULL)
		goto nomem;
	if ((q->name = strdup(m->name)) == NULL) {
		free(q);
		goto nomem;
	}
	pmd_hash_oom = 0;
	HASH_ADD_KEYPTR(hh, by_name, q->name, strlen(q->name), q);
	if (pmd_hash_oom) {
		free(q->name);
		free(q);
		goto nomem;
	}
	if (++qseq == 0)
		qseq = 1;
	q->qid = (uint64_t)qseq << 32 | (i + 1);
	q->uid = s->uid;
	q->use = s->use;
	q->use->refs++;
	q->use->queues++;
	q->flags = m->flags & Q_KEPT_FLAGS;
	q->maxsize = m->maxsize > 0 ? (long)m->maxsize : 0;
	TAILQ_INIT(&q->getters);
	TAILQ_INIT(&q->putters);
	TAILQ_INIT(&q->joiners);
	slots[i] = q;
	TAILQ_INSERT_TAIL(&queues, q, entry);
	nqueues++;
	log_debug("queue %s created by uid %u (maxsize %ld, flags %#x)",
	    q->name, (unsigned)q->uid, q->maxsize, q->flags);
	return q;
nomem:
	session_error(s, id, PM__CODE__C_NOMEM, "pmd is out of memory");
	return NULL;
}

/* Frees q; parked requests are answered with code when reply is set. */
static void
queue_free(struct queue *q, int reply, const char *why)
{
	struct qwaiter *w;
	int k;

	for (k = QW_GET; k <= QW_JOIN; k++)
		while ((w = TAILQ_FIRST(waiter_list(q, (enum qwkind)k))) !=
		    NULL) {
			if (reply)
				waiter_fail(w, PM__CODE__C_CLOSED, why);
			else
				waiter_free(w);
		}
	ring_clear(q);
	slots[(q->qid & 0xffffffffu) - 1] = NULL;
	TAILQ_REMOVE(&queues, q, entry);
	HASH_DELETE(hh, by_name, q);
	nqueues--;
	q->use->queues--;
	uid_use_put(q->use);
	free(q->ring);
	free(q->name);
	free(q);
}

/* ---- handlers ---- */

void
handle_q_open(struct session *s, struct pm_frame *f)
{
	Pm__QueueOpenReply r = PM__QUEUE_OPEN_REPLY__INIT;
	Pm__QueueOpen *m;
	struct queue *q;

	if ((m = pm__queue_open__unpack(NULL, f->len, f->data)) == NULL) {
		session_error(s, f->id, PM__CODE__C_PROTO, "malformed open");
		return;
	}
	if (!name_valid(m->name)) {
		session_error(s, f->id, PM__CODE__C_INVAL, "a queue name is 1 "
		    "to %d bytes without control characters",
		    PMD_MAX_QUEUE_NAME);
		goto done;
	}
	if ((m->flags & ~(uint32_t)Q_OPEN_FLAGS) ||
	    ((m->flags & PM_Q_EXCL) && !(m->flags & PM_Q_CREATE))) {
		session_error(s, f->id, PM__CODE__C_INVAL, "bad queue flags "
		    "%#x", m->flags);
		goto done;
	}
	if ((q = queue_by_name(m->name)) != NULL) {
		/* a create never joins another uid's queue by surprise */
		if (q->uid != s->uid && (m->flags & PM_Q_CREATE)) {
			session_error(s, f->id, PM__CODE__C_EXIST, "queue %s "
			    "exists, owned by uid %u; open it without "
			    "PM_Q_CREATE to join it", q->name,
			    (unsigned)q->uid);
			goto done;
		}
		if (!queue_access(s, q)) {
			session_error(s, f->id, PM__CODE__C_PERM, "queue %s "
			    "belongs to uid %u and is not shared", q->name,
			    (unsigned)q->uid);
			goto done;
		}
		if (m->flags & PM_Q_EXCL) {
			session_error(s, f->id, PM__CODE__C_EXIST, "queue %s "
			    "exists", q->name);
			goto done;
		}
	} else if (!(m->flags & PM_Q_CREATE)) {
		session_error(s, f->id, PM__CODE__C_NOENT, "no queue %s",
		    m->name);
		goto done;
	} else if ((q = queue_new(s, f->id, m)) == NULL)
		goto done;
	else
		r.created = 1;
	r.qid = q->qid;
	r.maxsize = q->maxsize;
	r.flags = q->flags;
	session_send(s, PM__QUEUE_TYPE__Q_OPEN_REPLY, f->id, &r.base, NULL, 0);
done:
	pm__queue_open__free_unpacked(m, NULL);
}

/* Checks a put batch against the bounds; 0 or -1 with the error sent. */
static int
put_check(struct session *s, uint32_t id, struct queue *q,
    const Pm__QueuePut *m, uint64_t *bytesp)
{
	uint64_t bytes = 0, len;
	size_t i;

	if (m->n_items == 0) {
		session_error(s, id, PM__CODE__C_INVAL, "no items to put");
		return -1;
	}
	for (i = 0; i < m->n_items; i++) {
		len = m->n_fd_len > 0 && m->fd_len[i] > 0 ? m->fd_len[i] :
		    m->items[i].len;
		if (len > pmd->cfg.max_item_size) {
			session_error(s, id, PM__CODE__C_LIMIT, "item of %llu "
			    "bytes above pmd's max_item_size (%u)",
			    (unsigned long long)len, pmd->cfg.max_item_size);
			return -1;
		}
		bytes += len;
	}
	if (q->shutdown != Q_OPEN_) {
		session_error(s, id, PM__CODE__C_CLOSED, "queue %s is shut "
		    "down", q->name);
		return -1;
	}
	if (m->n_items > queue_cap(q)) {
		if (q->maxsize > 0)
			session_error(s, id, PM__CODE__C_FULL, "a batch of %zu "
			    "items never fits maxsize %ld", m->n_items,
			    q->maxsize);
		else
			session_error(s, id, PM__CODE__C_LIMIT, "a batch of "
			    "%zu items above pmd's max_queue_items %d",
			    m->n_items, pmd->cfg.max_queue_items);
		return -1;
	}
	if (bytes > pmd->cfg.max_queue_bytes) {
		session_error(s, id, PM__CODE__C_LIMIT, "a batch of %llu bytes "
		    "above pmd's max_queue_bytes (%llu)",
		    (unsigned long long)bytes,
		    (unsigned long long)pmd->cfg.max_queue_bytes);
		return -1;
	}
	if (total_bytes + dicts_bytes() + bytes >
	    pmd->cfg.max_total_queue_bytes) {
		session_error(s, id, PM__CODE__C_LIMIT, "pmd's queues hold "
		    "%llu bytes; max_total_queue_bytes reached",
		    (unsigned long long)total_bytes);
		return -1;
	}
	if (s->use->queue_bytes + bytes >
	    pmd->cfg.max_total_queue_bytes_per_uid) {
		session_error(s, id, PM__CODE__C_LIMIT, "uid %u has put %llu "
		    "bytes still in queues; max_total_queue_bytes_per_uid "
		    "reached", (unsigned)s->uid,
		    (unsigned long long)s->use->queue_bytes);
		return -1;
	}
	*bytesp = bytes;
	return 0;
}

/* Checks the memfd items of a put against the frame's fds: one sealed
 * memfd of the declared size per item with fd_len > 0.  0 or -1 with the
 * error sent. */
static int
put_check_fds(struct session *s, uint32_t id, const Pm__QueuePut *m,
    const struct pm_frame *f)
{
	struct stat st;
	size_t i;
	int k = 0, seals;

	if (m->n_fd_len != 0 && m->n_fd_len != m->n_items) {
		session_error(s, id, PM__CODE__C_PROTO, "put: %zu fd lengths "
		    "for %zu items", m->n_fd_len, m->n_items);
		return -1;
	}
	for (i = 0; i < m->n_fd_len; i++) {
		if (m->fd_len[i] == 0)
			continue;
		if (k == f->nfds || m->items[i].len != 0) {
			session_error(s, id, PM__CODE__C_PROTO, "put: item %zu "
			    "by fd, but %s", i, k == f->nfds ? "no fd came "
			    "for it" : "it has inline bytes too");
			return -1;
		}
		if (fstat(f->fds[k], &st) == -1 || !S_ISREG(st.st_mode) ||
		    (uint64_t)st.st_size != m->fd_len[i] ||
		    (seals = fcntl(f->fds[k], F_GET_SEALS)) == -1 ||
		    (seals & Q_MEMFD_SEALS) != Q_MEMFD_SEALS) {
			session_error(s, id, PM__CODE__C_INVAL, "put: item %zu "
			    "is not a sealed memfd of %llu bytes", i,
			    (unsigned long long)m->fd_len[i]);
			return -1;
		}
		k++;
	}
	if (k != f->nfds) {
		session_error(s, id, PM__CODE__C_PROTO, "put: %d fds came with "
		    "%d items by fd", f->nfds, k);
		return -1;
	}
	if (total_fds + k > pmd->cfg.max_queue_fd_items) {
		session_error(s, id, PM__CODE__C_LIMIT, "pmd's queues hold %d "
		    "items by memfd; max_queue_fd_items (%d) reached",
		    total_fds, pmd->cfg.max_queue_fd_items);
		return -1;
	}
	if (s->use->fd_items + k > pmd->cfg.max_queue_fd_items_per_uid) {
		session_error(s, id, PM__CODE__C_LIMIT, "uid %u has put %d "
		    "items by memfd still in queues; "
		    "max_queue_fd_items_per_uid (%d) reached",
		    (unsigned)s->uid, s->use->fd_items,
		    pmd->cfg.max_queue_fd_items_per_uid);
		return -1;
	}
	return 0;
}

/* The batch of m as items, taken out of m (and its memfds out of f),
 * counted for the uid of s. */
static struct qitem *
put_take(Pm__QueuePut *m, struct pm_frame *f, struct session *s)
{
	struct qitem *items;
	size_t i;
	int k = 0;

	if ((items = calloc(m->n_items, sizeof(*items))) == NULL)
		return NULL;
	for (i = 0; i < m->n_items; i++) {
		items[i].data = m->items[i].len ? m->items[i].data : NULL;
		items[i].len = m->items[i].len;
		items[i].fd = -1;
		if (items[i].data == NULL)
			free(m->items[i].data);
		m->items[i].data = NULL;	/* not freed with m */
		if (m->n_fd_len > 0 && m->fd_len[i] > 0) {
			items[i].fd = wire_frame_take(f, k++);
			items[i].len = m->fd_len[i];
			total_fds++;
			s->use->fd_items++;
		}
		items[i].by = s->use;
		s->use->refs++;
		s->use->queue_bytes += items[i].len;
	}
	return items;
}

void
handle_q_put(struct session *s, struct pm_frame *f)
{
	Pm__QueuePut *m;
	struct qwaiter *w;
	struct qitem *items;
	struct queue *q;
	uint64_t bytes;
	size_t n;

	if ((m = pm__queue_put__unpack(NULL, f->len, f->data)) == NULL) {
		session_error(s, f->id, PM__CODE__C_PROTO, "malformed put");
		return;
	}
	if ((q = queue_lookup(s, f->id, m->qid)) == NULL ||
	    put_check_fds(s, f->id, m, f) == -1 ||
	    put_check(s, f->id, q, m, &bytes) == -1)
		goto done;
	n = m->n_items;
	if (TAILQ_EMPTY(&q->putters) && queue_room(q, n, bytes)) {
		if (ring_reserve(q, n) == -1 ||
		    (items = put_take(m, f, s)) == NULL) {
			session_error(s, f->id, PM__CODE__C_NOMEM,
			    "pmd is out of memory");
			goto done;
		}
		total_bytes += bytes;
		ring_push(q, items, n);
		free(items);
		session_send(s, PM__TYPE__T_OK, f->id, NULL, NULL, 0);
		queue_serve(q);
		goto done;
	}
	if (m->timeout == 0) {
		session_error(s, f->id, PM__CODE__C_FULL, "queue %s is full",
		    q->name);
		goto done;
	}
	if ((w = waiter_park(s, f->id, q, QW_PUT, m->timeout)) == NULL)
		goto done;
	if ((w->items = put_take(m, f, s)) == NULL) {
		waiter_fail(w, PM__CODE__C_NOMEM, "pmd is out of memory");
		goto done;
	}
	w->nitems = n;
	w->bytes = bytes;
	total_bytes += bytes;
done:
	pm__queue_put__free_unpacked(m, NULL);
}

void
handle_q_get(struct session *s, struct pm_frame *f)
{
	Pm__QueueGet *m;
	struct qwaiter *w;
	struct queue *q;
	uint32_t max;

	if ((m = pm__queue_get__unpack(NULL, f->len, f->data)) == NULL) {
		session_error(s, f->id, PM__CODE__C_PROTO, "malformed get");
		return;
	}
	if ((q = queue_lookup(s, f->id, m->qid)) == NULL)
		goto done;
	if (m->max == 0) {
		session_error(s, f->id, PM__CODE__C_INVAL, "get of 0 items");
		goto done;
	}
	max = m->max > Q_GET_MAX ? Q_GET_MAX : m->max;
	if (q->count > 0) {
		queue_deliver(q, s, f->id, max);
		queue_serve(q);
	} else if (q->shutdown != Q_OPEN_)
		session_error(s, f->id, PM__CODE__C_CLOSED, "queue %s is shut "
		    "down", q->name);
	else if (m->timeout == 0)
		session_error(s, f->id, PM__CODE__C_EMPTY, "queue %s is empty",
		    q->name);
	else if ((w = waiter_park(s, f->id, q, QW_GET, m->timeout)) != NULL)
		w->max = max;
done:
	pm__queue_get__free_unpacked(m, NULL);
}

static int
joinable_check(struct session *s, uint32_t id, struct queue *q)
{
	if (q->flags & PM_Q_JOINABLE)
		return 0;
	session_error(s, id, PM__CODE__C_STATE, "queue %s is not joinable",
	    q->name);
	return -1;
}

void
handle_q_task_done(struct session *s, struct pm_frame *f)
{
	Pm__QueueRef *m;
	struct queue *q;

	if ((m = pm__queue_ref__unpack(NULL, f->len, f->data)) == NULL) {
		session_error(s, f->id, PM__CODE__C_PROTO, "malformed ref");
		return;
	}
	if ((q = queue_lookup(s, f->id, m->qid)) == NULL ||
	    joinable_check(s, f->id, q) == -1)
		goto done;
	if (q->outstanding == 0 || q->unfinished == 0) {
		session_error(s, f->id, PM__CODE__C_INVAL, "task_done called "
		    "more times than items were got");
		goto done;
	}
	q->outstanding--;
	q->unfinished--;
	session_send(s, PM__TYPE__T_OK, f->id, NULL, NULL, 0);
	if (q->unfinished == 0)
		queue_serve(q);
done:
	pm__queue_ref__free_unpacked(m, NULL);
}

void
handle_q_join(struct session *s, struct pm_frame *f)
{
	Pm__QueueJoin *m;
	struct queue *q;

	if ((m = pm__queue_join__unpack(NULL, f->len, f->data)) == NULL) {
		session_error(s, f->id, PM__CODE__C_PROTO, "malformed join");
		return;
	}
	if ((q = queue_lookup(s, f->id, m->qid)) == NULL ||
	    joinable_check(s, f->id, q) == -1)
		goto done;
	if (q->unfinished == 0)
		session_send(s, PM__TYPE__T_OK, f->id, NULL, NULL, 0);
	else if (m->timeout == 0)
		session_error(s, f->id, PM__CODE__C_TIMEDOUT, "%llu tasks "
		    "unfinished", (unsigned long long)q->unfinished);
	else
		(void)waiter_park(s, f->id, q, QW_JOIN, m->timeout);
done:
	pm__queue_join__free_unpacked(m, NULL);
}

void
handle_q_shutdown(struct session *s, struct pm_frame *f)
{
	Pm__QueueShutdown *m;
	struct qwaiter *w;
	struct queue *q;
	size_t dropped;

	if ((m = pm__queue_shutdown__unpack(NULL, f->len, f->data)) == NULL) {
		session_error(s, f->id, PM__CODE__C_PROTO, "malformed shutdown");
		return;
	}
	if ((q = queue_lookup(s, f->id, m->qid)) == NULL)
		goto done;
	if (q->shutdown == Q_OPEN_)
		q->shutdown = Q_DRAIN;
	if (m->immediate) {
		q->shutdown = Q_IMMEDIATE;
		dropped = q->count;
		ring_clear(q);
		if (q->flags & PM_Q_JOINABLE)
			q->unfinished -= dropped;
	}
	while ((w = TAILQ_FIRST(&q->putters)) != NULL)
		waiter_fail(w, PM__CODE__C_CLOSED, "queue shut down");
	session_send(s, PM__TYPE__T_OK, f->id, NULL, NULL, 0);
	queue_serve(q);		/* releases getters of an empty queue */
done:
	pm__queue_shutdown__free_unpacked(m, NULL);
}

void
handle_q_unlink(struct session *s, struct pm_frame *f)
{
	Pm__QueueUnlink *m;
	struct queue *q;

	if ((m = pm__queue_unlink__unpack(NULL, f->len, f->data)) == NULL) {
		session_error(s, f->id, PM__CODE__C_PROTO, "malformed unlink");
		return;
	}
	if ((q = queue_by_name(m->name)) == NULL)
		session_error(s, f->id, PM__CODE__C_NOENT, "no queue %s",
		    m->name);
	else if (q->uid != s->uid && !session_is_admin(s))
		session_error(s, f->id, PM__CODE__C_PERM, "queue %s belongs "
		    "to uid %u", q->name, (unsigned)q->uid);
	else {
		log_debug("queue %s unlinked by uid %u", q->name,
		    (unsigned)s->uid);
		queue_free(q, 1, "queue unlinked");
		session_send(s, PM__TYPE__T_OK, f->id, NULL, NULL, 0);
	}
	pm__queue_unlink__free_unpacked(m, NULL);
}

static void
queue_info(const struct queue *q, Pm__QueueInfo *i)
{
	i->name = q->name;
	i->owner = (uint32_t)q->uid;
	i->size = q->count;
	i->maxsize = q->maxsize;
	i->flags = q->flags;
	i->getters = q->nw[QW_GET];
	i->putters = q->nw[QW_PUT];
	i->joiners = q->nw[QW_JOIN];
	i->puts = q->puts;
	i->gets = q->gets;
	i->bytes = q->bytes;
	i->unfinished = q->unfinished;
	i->shutdown = (uint32_t)q->shutdown;
}

void
handle_q_stat(struct session *s, struct pm_frame *f)
{
	Pm__QueueInfo r = PM__QUEUE_INFO__INIT;
	Pm__QueueRef *m;
	struct queue *q;

	if ((m = pm__queue_ref__unpack(NULL, f->len, f->data)) == NULL) {
		session_error(s, f->id, PM__CODE__C_PROTO, "malformed ref");
		return;
	}
	if ((q = queue_lookup(s, f->id, m->qid)) != NULL) {
		queue_info(q, &r);
		session_send(s, PM__QUEUE_TYPE__Q_INFO, f->id, &r.base, NULL,
		    0);
	}
	pm__queue_ref__free_unpacked(m, NULL);
}

void
handle_q_list(struct session *s, struct pm_frame *f)
{
	Pm__QueueListReply r = PM__QUEUE_LIST_REPLY__INIT;
	Pm__QueueInfo *info = NULL, **ptrs = NULL;
	Pm__QueueList *m;
	struct queue *q;
	size_t n = 0;
	int all;

	if ((m = pm__queue_list__unpack(NULL, f->len, f->data)) == NULL) {
		session_error(s, f->id, PM__CODE__C_PROTO, "malformed list");
		return;
	}
	all = m->all && session_is_admin(s);
	pm__queue_list__free_unpacked(m, NULL);
	if (nqueues > 0 && ((info = calloc((size_t)nqueues,
	    sizeof(*info))) == NULL || (ptrs = calloc((size_t)nqueues,
	    sizeof(*ptrs))) == NULL)) {
		free(info);
		session_error(s, f->id, PM__CODE__C_NOMEM, "out of memory");
		return;
	}
	TAILQ_FOREACH(q, &queues, entry) {
		if (!all && q->uid != s->uid && !(q->flags & PM_Q_SHARED))
			continue;
		pm__queue_info__init(&info[n]);
		queue_info(q, &info[n]);
		ptrs[n] = &info[n];
		n++;
	}
	r.n_queues = n;
	r.queues = ptrs;
	session_send(s, PM__QUEUE_TYPE__Q_LIST_REPLY, f->id, &r.base, NULL, 0);
	free(ptrs);
	free(info);
}

/* ---- sessions and exit ---- */

/* A client has gone: its parked requests are dropped (a parked get
 * consumed nothing; a parked put was never acknowledged), and the queues
 * they were on served again: a put dropped may let others in. */
void
queues_session_gone(struct session *s)
{
	struct queueq to_serve = TAILQ_HEAD_INITIALIZER(to_serve);
	struct qwaiter *w;
	struct queue *q;

	while ((w = TAILQ_FIRST(&s->parked)) != NULL) {
		q = w->q;
		if (!q->serve) {
			q->serve = 1;
			TAILQ_INSERT_TAIL(&to_serve, q, sentry);
		}
		waiter_free(w);
	}
	while ((q = TAILQ_FIRST(&to_serve)) != NULL) {
		TAILQ_REMOVE(&to_serve, q, sentry);
		q->serve = 0;
		queue_serve(q);
	}
}

uint64_t
queues_bytes(void)
{
	return total_bytes;
}

void
queues_free_all(void)
{
	struct queue *q;

	while ((q = TAILQ_FIRST(&queues)) != NULL)
		queue_free(q, 0, NULL);
	free(slots);
	slots = NULL;
	nslots = 0;
}
