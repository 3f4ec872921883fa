/*
 * poolworker.c - a pool worker's task loop: read a batch of tasks from the
 * channel, run each through its function (looked up once by name), and
 * write the answers back in batches; data of 64 KiB or more goes by sealed
 * memfd.  Frame layout: proto/pool.proto.  Run by pmd's worker runtime
 * and by workers a fork pool forked from its caller.
 */
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/types.h>

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "pmclient_int.h"
#include "pool.pb-c.h"

#define PW_FN_CACHE	64		/* function names remembered */
#define PW_FLUSH_NS	(4 * 1000000LL)	/* report progress in long batches */
#define PW_CLOCK_EVERY	64		/* most tasks between clock reads */
#define PW_QUICK_NS	20000		/* a task quicker than this is tiny */
#define PW_BLOB_FLUSH	(4u << 20)	/* inline answer bytes per frame */
#define PW_MEMFD_FLUSH	(64u << 20)	/* memfd answer bytes per frame */
#define PW_ERR_MAX	4096		/* bytes of failure text sent */
#define PW_EXIT_PROTO	2		/* exit status on a protocol error */

struct pw_fn {
	char		*name;
	pm_task_fn	*fn;
};

/* Answers being gathered for the next PoolResults frame. */
struct pw_out {
	uint8_t		*blob;
	size_t		 len;
	size_t		 cap;
	int		 mfd;		/* memfd of large answers, -1 none */
	uint64_t	 moff;		/* bytes written to it */
	uint32_t	 count;
	size_t		 item_len;	/* where the current answer starts */
	uint64_t	 item_moff;
};

static struct pw_fn fncache[PW_FN_CACHE];
static int nfn, nextfn;
static struct pw_out out;
static struct wire_out wout;
static int chan = -1;

static void __attribute__((noreturn))
pw_exit(int code)
{
	fflush(NULL);
	_exit(code);
}

static int
blob_reserve(size_t more)
{
	size_t ncap;
	uint8_t *nb;

	if (out.cap - out.len >= more)
		return 0;
	ncap = out.cap ? out.cap : 4096;
	while (ncap - out.len < more)
		ncap *= 2;
	if ((nb = realloc(out.blob, ncap)) == NULL)
		return -1;
	out.blob = nb;
	out.cap = ncap;
	return 0;
}

static void
put_varint(uint64_t v)
{
	while (v >= 0x80) {
		out.blob[out.len++] = (uint8_t)(v | 0x80);
		v >>= 7;
	}
	out.blob[out.len++] = (uint8_t)v;
}

/* Forget a previous pm_task_return of the current task. */
static void
out_rewind(void)
{
	out.len = out.item_len;
	out.moff = out.item_moff;
}

/* pm_task_return in a pool worker: the answer goes straight to the batch. */
static int
pw_ret(struct pm_task *t, const void *data, size_t len)
{
	if (len > PMC_POOL_MAX_ITEM)
		return pmc_err(PM_EINVAL, "result of %zu bytes is above the "
		    "%u-byte limit", len, PMC_POOL_MAX_ITEM);
	out_rewind();
	if (blob_reserve(10 + (len < PM_WIRE_MEMFD_MIN ? len : 0)) == -1)
		return pmc_err(PM_ENOMEM, "out of memory");
	if (len >= PM_WIRE_MEMFD_MIN) {
		if (out.mfd < 0 && (out.mfd = memfd_create("pm-data",
		    MFD_CLOEXEC | MFD_ALLOW_SEALING)) == -1)
			return pmc_err_sys("memfd_create");
		if (wire_pwrite_all(out.mfd, data, len, out.moff) == -1)
			return pmc_err_sys("cannot write a %zu-byte result",
			    len);
		out.moff += len;
		put_varint((uint64_t)len << 2 | 1);
	} else {
		put_varint((uint64_t)len << 2);
		if (len > 0)
			memcpy(out.blob + out.len, data, len);
		out.len += len;
	}
	t->returned = 1;
	return pmc_ok();
}

static void
out_error(int code, const char *msg)
{
	size_t len = strlen(msg);

	if (len > PW_ERR_MAX)
		len = PW_ERR_MAX;
	out_rewind();
	if (blob_reserve(20 + len) == -1)
		pw_exit(1);
	put_varint((uint64_t)len << 2 | 2);
	put_varint((uint64_t)code);
	memcpy(out.blob + out.len, msg, len);
	out.len += len;
}

/* Sends the gathered answers; a client gone ends the worker. */
static void
out_flush(int frame_end)
{
	Pm__PoolResults r = PM__POOL_RESULTS__INIT;
	int fd = -1;

	if (out.count == 0)
		return;
	r.count = out.count;
	r.items.data = out.blob;
	r.items.len = out.len;
	r.frame_end = frame_end;
	if (out.mfd >= 0) {
		if (out.moff == 0) {
			close(out.mfd);
		} else if (ftruncate(out.mfd, (off_t)out.moff) == -1 ||
		    fcntl(out.mfd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW |
		    F_SEAL_WRITE | F_SEAL_SEAL) == -1)
			pw_exit(1);
		else
			fd = out.mfd;
		out.mfd = -1;
	}
	if (wire_out_frame(&wout, PM__POOL_TYPE__POOL_RESULTS, 0, &r.base,
	    &fd, fd >= 0 ? 1 : 0) == -1 ||
	    wire_out_flush_wait(&wout, chan, -1) != 1)
		pw_exit(0);
	out.len = out.item_len = 0;
	out.moff = out.item_moff = 0;
	out.count = 0;
}

static pm_task_fn *
fn_lookup(void *h, const char *name)
{
	pm_task_fn *fn;
	int i;

	for (i = 0; i < nfn; i++)
		if (strcmp(fncache[i].name, name) == 0)
			return fncache[i].fn;
	if (*name == '\0' || (fn = (pm_task_fn *)dlsym(h, name)) == NULL)
		return NULL;
	if (nfn < PW_FN_CACHE)
		i = nfn++;
	else {
		i = nextfn;
		nextfn = (nextfn + 1) % PW_FN_CACHE;
		free(fncache[i].name);
	}
	if ((fncache[i].name = strdup(name)) == NULL) {
		fncache[i] = fncache[--nfn];
		return fn;
	}
	fncache[i].fn = fn;
	return fn;
}

/* Maps a frame's data memfd (sealed, at least need bytes). */
static const uint8_t *
map_memfd(int fd, uint64_t need, size_t *maplen)
{
	struct stat st;
	void *m;
	int seals;

	seals = fcntl(fd, F_GET_SEALS);
	if (seals == -1 || !(seals & F_SEAL_WRITE) ||
	    !(seals & F_SEAL_SHRINK) || fstat(fd, &st) == -1 ||
	    (uint64_t)st.st_size < need || st.st_size == 0)
		return NULL;
	m = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fd, 0);
	if (m == MAP_FAILED)
		return NULL;
	*maplen = (size_t)st.st_size;
	return m;
}

/* Total bytes of the items kept in the memfd; -1 when malformed. */
static int64_t
items_memfd_bytes(const uint8_t *p, const uint8_t *end, uint32_t count)
{
	uint64_t h, len, total = 0;
	uint32_t i;

	for (i = 0; i < count; i++) {
		if (wire_varint_get(&p, end, &h) == -1)
			return -1;
		len = h >> 1;
		if (len > PMC_POOL_MAX_ITEM)
			return -1;
		if (h & 1)
			total += len;
		else {
			if ((uint64_t)(end - p) < len)
				return -1;
			p += len;
		}
	}
	return p == end ? (int64_t)total : -1;
}

static void
run_one(pm_task_fn *fn, struct pm_task *t, const char *fname,
    const char *module)
{
	char msg[PW_ERR_MAX];
	int rc;

	out.item_len = out.len;
	out.item_moff = out.moff;
	t->returned = 0;
	free(t->error);
	t->error = NULL;
	if (fn == NULL) {
		snprintf(msg, sizeof(msg), "no function %s in %s", fname,
		    module);
		out_error(PM__CODE__C_NOENT, msg);
	} else {
		rc = fn(t);
		if (t->error != NULL)
			out_error(PM__CODE__C_TASK, t->error);
		else if (rc != 0) {
			snprintf(msg, sizeof(msg), "%s returned %d", fname, rc);
			out_error(PM__CODE__C_TASK, msg);
		} else if (!t->returned) {
			if (blob_reserve(1) == -1)
				pw_exit(1);
			put_varint(0);
		}
	}
	out.count++;
	out.item_len = out.len;
	out.item_moff = out.moff;
}

static int64_t
coarse_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Runs one PoolTasks frame; returns the number of tasks run. */
static uint32_t
run_frame(void *h, const char *module, struct pm_task *t,
    struct pm_frame *f)
{
	Pm__PoolTasks *m;
	const uint8_t *p, *end, *map = NULL;
	size_t maplen = 0;
	uint64_t hd = 0, len, moff = 0;
	int64_t need, last, now, checked;
	uint32_t stride = 1, left = 1;
	pm_task_fn *fn;
	uint32_t i;

	if (f->type != PM__POOL_TYPE__POOL_TASKS || f->nfds > 1 ||
	    (m = pm__pool_tasks__unpack(NULL, f->len, f->data)) == NULL)
		pw_exit(PW_EXIT_PROTO);
	p = m->items.data;
	end = p + m->items.len;
	if ((need = items_memfd_bytes(p, end, m->count)) == -1 ||
	    (need > 0 && f->nfds != 1) ||
	    (need > 0 && (map = map_memfd(f->fds[0], (uint64_t)need,
	    &maplen)) == NULL))
		pw_exit(PW_EXIT_PROTO);
	fn = fn_lookup(h, m->function);
	last = checked = coarse_ns();
	for (i = 0; i < m->count; i++) {
		wire_varint_get(&p, end, &hd);
		len = hd >> 1;
		if (hd & 1) {
			t->arg = map + moff;
			moff += len;
		} else {
			t->arg = p;
			p += len;
		}
		t->arglen = (size_t)len;
		run_one(fn, t, m->function, module);
		if (i + 1 < m->count && --left == 0) {
			/* tiny tasks read the clock seldom, long ones always */
			now = coarse_ns();
			if (now - checked < PW_QUICK_NS * stride)
				stride = stride < PW_CLOCK_EVERY ? stride * 2 :
				    stride;
			else
				stride = 1;
			left = stride;
			checked = now;
			if (now - last >= PW_FLUSH_NS) {
				out_flush(0);
				last = now;
			}
		}
		if (out.len >= PW_BLOB_FLUSH || out.moff >= PW_MEMFD_FLUSH)
			out_flush(0);
	}
	out_flush(1);
	t->arg = NULL;
	t->arglen = 0;
	if (map != NULL)
		munmap((void *)(uintptr_t)map, maplen);
	i = m->count;
	pm__pool_tasks__free_unpacked(m, NULL);
	return i;
}

/* Our resident set in bytes, 0 unknown. */
static uint64_t
pw_rss(void)
{
	unsigned long long size, rss;
	FILE *fp;
	int n;

	if ((fp = fopen("/proc/self/statm", "re")) == NULL)
		return 0;
	n = fscanf(fp, "%llu %llu", &size, &rss);
	fclose(fp);
	return n == 2 ? rss * (uint64_t)sysconf(_SC_PAGESIZE) : 0;
}

/* maxmemoryperchild: tell the pool we leave (it sends our unstarted
 * frames to others), then go. */
static void __attribute__((noreturn))
pw_retire(void)
{
	Pm__PoolResults r = PM__POOL_RESULTS__INIT;

	r.retiring = 1;
	if (wire_out_frame(&wout, PM__POOL_TYPE__POOL_RESULTS, 0, &r.base,
	    NULL, 0) == 0)
		(void)wire_out_flush_wait(&wout, chan, -1);
	pw_exit(0);
}

void
pmc_pool_worker_loop(void *h, const char *module, int channel,
    struct pm_task *t, uint32_t maxtasks, uint64_t maxmemory,
    volatile uint64_t *stats)
{
	struct wire_in in;
	struct pm_frame f;
	const char *why;
	uint64_t done = 0;
	ssize_t n;
	int r;

	chan = channel;
	out.mfd = -1;
	wire_out_init(&wout);
	wire_in_init(&in, PM_WIRE_MAX_FRAME);
	t->ret_hook = pw_ret;
	t->channel = -1;
	for (;;) {
		while ((r = wire_in_next(&in, &f, &why)) == 1) {
			done += run_frame(h, module, t, &f);
			wire_frame_close(&f);
			if (stats != NULL)
				__atomic_store_n(stats, done, __ATOMIC_RELAXED);
			if (maxtasks > 0 && done >= maxtasks)
				pw_exit(0);	/* retired; the pool replaces us */
			if (maxmemory > 0 && pw_rss() > maxmemory)
				pw_retire();
		}
		if (r == -1)
			pw_exit(PW_EXIT_PROTO);
		n = wire_in_read(&in, chan);
		if (n == 0)
			pw_exit(0);		/* the pool closed the channel */
		if (n == -1 && errno != EINTR)
			pw_exit(errno == ECONNRESET ? 0 : 1);
	}
}
