/*
 * poolwire.c - the Pool's traffic on its workers' channels: tasks of
 * several jobs batched into PoolTasks frames (data of 64 KiB or more in
 * one sealed memfd a frame), sized to the measured task time and sent to
 * the least busy worker, PMC_POOL_DEPTH frames in flight at most; the
 * PoolResults frames read back, checked whole, and settled into their
 * jobs.  Frame layout: proto/pool.proto; the worker's side: poolworker.c.
 */
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pool_int.h"
#include "pool.pb-c.h"

static void	pw_io_cb(pm_conn *, int, unsigned, void *);

/* ---- the channel ---- */

void
pmc_pw_watch(struct pmc_pw *w, unsigned events)
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
pw_flush(struct pmc_pw *w)
{
	int r;

	if (w->channel < 0)
		return;
	r = wire_out_flush(&w->out, w->channel);
	if (r == -1) {
		pmc_pw_eof(w);
		return;
	}
	pmc_pw_watch(w, EPOLLIN | (r == 0 ? EPOLLOUT : 0));
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

size_t
pmc_pw_outstanding(const struct pmc_pw *w)
{
	size_t n = 0;
	int i;

	for (i = 0; i < w->nfr; i++)
		n += w->fr[(w->fhead + i) % PMC_POOL_DEPTH].ntasks -
		    w->fr[(w->fhead + i) % PMC_POOL_DEPTH].reported;
	return n;
}

/* The next answer of w is for (job, index). */
int
pmc_pw_next_task(struct pmc_pw *w, pm_result **job, size_t *i)
{
	struct pmc_span *s = pmc_spanq_first(&w->spans);

	if (s == NULL || w->nfr == 0)
		return -1;
	*job = s->job;
	*i = s->start + w->soff;
	return 0;
}

static void
pw_task_answered(struct pmc_pw *w)
{
	struct pmc_span *s = pmc_spanq_first(&w->spans);
	pm_result *j = s->job;

	w->done++;
	w->pool->inflight--;
	if (++w->soff == s->count) {
		w->soff = 0;
		pmc_spanq_pop(&w->spans);
		pmc_job_unref(j);
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
	if (scan != end || r->count > pmc_pw_outstanding(w))
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
		if (pmc_pw_next_task(w, &j, &i) == -1)
			goto bad;
		if ((h & 3) == 2) {
			wire_varint_get(&q, end, &code);
			if (len >= sizeof(msg))
				len = sizeof(msg) - 1;
			memcpy(msg, q, len);
			msg[len] = '\0';
			q += h >> 2;
			pmc_job_task_fail(j, i,
			    pmc_code_from_wire((int32_t)code), msg);
		} else if (j->st[i] != T_PENDING) {
			/* cancelled meanwhile: the answer is dropped */
			if ((h & 3) == 0)
				q += len;
			else
				foff += len;
		} else if ((h & 3) == 0) {
			if ((data = malloc(len ? len : 1)) == NULL)
				pmc_job_task_fail(j, i, PM_ENOMEM, "out of "
				    "memory for a result");
			else {
				memcpy(data, q, len);
				pmc_job_task_ok(j, i, data, len);
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
				pmc_job_task_fail(j, i, PM_ENOMEM,
				    "cannot read a result");
			else
				pmc_job_task_ok(j, i, data, len);
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
void
pmc_pw_read(struct pmc_pw *w, int drain)
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
			pmc_pw_eof(w);
			return;
		}
		while ((r = wire_in_next(&w->in, &f, &why)) == 1) {
			r = w->starting ? pmc_pw_start_report(w, &f) :
			    pw_results(w, &f);
			wire_frame_close(&f);
			if (r != 0)
				break;
		}
		if (r == 2)
			return;		/* it could not start: w is released */
		if (r == -1) {
			/* a worker that speaks nonsense is ended */
			pmc_pw_kill(w);
			pmc_pw_eof(w);
			return;
		}
	}
}

static void
pw_io_cb(pm_conn *c, int fd, unsigned events, void *ud)
{
	struct pmc_pw *w = ud;
	pm_pool *p = w->pool;

	pmc_pool_enter(p);
	if (events & EPOLLOUT)
		pw_flush(w);
	if (events & (EPOLLIN | EPOLLHUP | EPOLLERR))
		pmc_pw_read(w, 0);
	pmc_pool_trim(p);
	pmc_pool_dispatch(p);
	pmc_pool_idle_check(p);
	pmc_pool_leave(p);
}

/* ---- sending tasks ---- */

static struct pmc_pw *
pick_worker(pm_pool *p)
{
	struct pmc_pw *w, *best = NULL;
	int depth = p->avg_ns > PMC_POOL_LONG_NS ? 1 : PMC_POOL_DEPTH;

	int64_t now = 0, start, expect;

	for (w = p->workers; w != NULL; w = w->next) {
		if (!pmc_pw_live(w) || w->nfr >= depth || (p->maxtasks > 0 &&
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
		if ((s = pmc_spanq_first(&p->retry)) != NULL) {
			from_retry = 1;
			j = s->job;
			start = s->start;
			count = s->count;
		} else if ((j = pmc_pool_next_job(p)) != NULL) {
			from_retry = 0;
			start = j->next;
			count = j->n - j->next;
			if (count > j->chunk)
				count = j->chunk;
			if (count > pmc_job_window_room(j))
				count = pmc_job_window_room(j);
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
		if (pmc_spanq_push(&w->spans, j, start, took) == -1) {
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
				pmc_spanq_pop(&p->retry);
				pmc_job_unref(j);
			}
		} else {
			j->next += took;
			if (j->next == j->n)
				pmc_job_unqueue(p, j);
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
		pmc_pw_kill(w);
		pmc_pw_eof(w);
		return 1;
	}
	pw_flush(w);
	return 1;
}

void
pmc_pool_dispatch(pm_pool *p)
{
	struct pmc_pw *w;

	if (p->state == PS_TERMINATED || p->lost)
		return;
	while ((p->retry.len > 0 || pmc_pool_next_job(p) != NULL) &&
	    (w = pick_worker(p)) != NULL)
		if (frame_send(p, w) == 0)
			break;
}
