/*
 * sync.c - Lock, RLock, Semaphore, BoundedSemaphore, Event, Condition and
 * Barrier in shared memory: each lives in its own segment (shm.c) and
 * works there, never through pmd.
 *
 * Locks are robust process-shared pthread mutexes: the fast path is one
 * atomic instruction and no system call; a holder that dies is noticed
 * by the kernel (robust list) and the next acquirer gets PM_EOWNERDEAD
 * with the lock made consistent.  Semaphores, events and the waiting of
 * conditions and barriers are futex words.  Every wait is in the kernel
 * (no spinning), against an absolute CLOCK_MONOTONIC deadline, and
 * retried after a signal.
 */
#include <sys/syscall.h>

#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "pmclient_int.h"

#define SYNC_MAX_WAIT	1e9		/* s; a longer timeout waits forever */
#define LOCK_FLAGS	PM_LOCK_RECURSIVE
#define SEM_FLAGS	PM_SEM_BOUNDED
#define SEM_MAX_VALUE	((unsigned)INT_MAX)

struct pm_lock {
	struct pmc_seg	 seg;
	struct pmc_lock_seg *l;
};

struct pm_sem {
	struct pmc_seg	 seg;
	struct pmc_sem_seg *s;
};

struct pm_event {
	struct pmc_seg	 seg;
	struct pmc_event_seg *e;
};

struct pm_cond {
	struct pmc_seg	 seg;
	struct pmc_cond_seg *c;
};

struct pm_barrier {
	struct pmc_seg	 seg;
	struct pmc_barrier_seg *b;
};

/* ---- time, futexes, the caller's thread id ---- */

/* A deadline for timeout: *forever, or abs on CLOCK_MONOTONIC. */
static int
sync_deadline(double timeout, struct timespec *abs, int *forever)
{
	time_t whole;

	if (isnan(timeout))
		return pmc_err(PM_EINVAL, "timeout is not a number");
	*forever = timeout < 0 || timeout >= SYNC_MAX_WAIT;
	if (*forever)
		return PM_OK;
	clock_gettime(CLOCK_MONOTONIC, abs);
	whole = (time_t)timeout;
	abs->tv_sec += whole;
	abs->tv_nsec += (long)((timeout - (double)whole) * 1e9) + 1;
	while (abs->tv_nsec >= 1000000000L) {
		abs->tv_sec++;
		abs->tv_nsec -= 1000000000L;
	}
	return PM_OK;
}

/* Sleeps while *w == val, until woken or abs (NULL: forever); 0, or
 * ETIMEDOUT, EAGAIN (value changed), EINTR. */
static int
futex_wait(_Atomic uint32_t *w, uint32_t val, const struct timespec *abs)
{
	if (syscall(SYS_futex, w, FUTEX_WAIT_BITSET, val, abs, NULL,
	    FUTEX_BITSET_MATCH_ANY) == -1)
		return errno;
	return 0;
}

static void
futex_wake(_Atomic uint32_t *w, int n)
{
	syscall(SYS_futex, w, FUTEX_WAKE, n, NULL, NULL, 0);
}

static _Thread_local pid_t tid_cache;
static pthread_once_t tid_once = PTHREAD_ONCE_INIT;

static void
tid_forked_cb(void)
{
	tid_cache = 0;
}

static void
tid_register(void)
{
	pthread_atfork(NULL, NULL, tid_forked_cb);
}

/* The kernel's id of the calling thread, as a robust mutex records its
 * owner. */
static pid_t
sync_tid(void)
{
	if (tid_cache == 0) {
		pthread_once(&tid_once, tid_register);
		tid_cache = (pid_t)syscall(SYS_gettid);
	}
	return tid_cache;
}

/* ---- robust mutexes ---- */

static int
mutex_init(pthread_mutex_t *m, int recursive)
{
	pthread_mutexattr_t a;
	int r;

	if ((r = pthread_mutexattr_init(&a)) != 0)
		goto fail;
	if ((r = pthread_mutexattr_settype(&a, recursive ?
	    PTHREAD_MUTEX_RECURSIVE : PTHREAD_MUTEX_ERRORCHECK)) != 0 ||
	    (r = pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED)) !=
	    0 || (r = pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST)) !=
	    0 || (r = pthread_mutex_init(m, &a)) != 0) {
		pthread_mutexattr_destroy(&a);
		goto fail;
	}
	pthread_mutexattr_destroy(&a);
	return PM_OK;
fail:
	errno = r;
	return pmc_err_sys("cannot make a robust process-shared mutex");
}

static int
mutex_held(pthread_mutex_t *m)
{
	return __atomic_load_n(&m->__data.__owner, __ATOMIC_RELAXED) ==
	    sync_tid();
}

/* Acquires m: PM_OK, PM_EOWNERDEAD (acquired, made consistent),
 * PM_ETIMEDOUT, PM_ESTATE (a non-recursive m held by the caller).  The
 * untimed and the non-blocking calls go straight to the mutex. */
static int
mutex_acquire(pthread_mutex_t *m, double timeout, const char *what)
{
	struct timespec abs;
	int forever, r;

	if (timeout < 0)
		r = pthread_mutex_lock(m);
	else if (timeout == 0)
		r = pthread_mutex_trylock(m);
	else if (sync_deadline(timeout, &abs, &forever) != PM_OK)
		return pm_last_error();
	else if (forever)
		r = pthread_mutex_lock(m);
	else
		r = pthread_mutex_clocklock(m, CLOCK_MONOTONIC, &abs);
	if (r == 0)
		return PM_OK;
	switch (r) {
	case EOWNERDEAD:
		pthread_mutex_consistent(m);
		return pmc_err(PM_EOWNERDEAD, "%s acquired; its last holder "
		    "died holding it", what);
	case EBUSY:
	case ETIMEDOUT:
		return pmc_err(PM_ETIMEDOUT, "%s not acquired in time", what);
	case EDEADLK:
		return pmc_err(PM_ESTATE, "%s is already held by this thread "
		    "(not recursive)", what);
	case EAGAIN:
		return pmc_err(PM_ELIMIT, "%s: too many recursive acquires",
		    what);
	case ENOTRECOVERABLE:
		return pmc_err(PM_ESTATE, "%s is not recoverable", what);
	default:
		errno = r;
		return pmc_err_sys("%s", what);
	}
}

static int
mutex_release(pthread_mutex_t *m, const char *what)
{
	int r;

	if ((r = pthread_mutex_unlock(m)) == 0)
		return PM_OK;
	if (r == EPERM)
		return pmc_err(PM_EPERM, "%s is not held by this thread", what);
	errno = r;
	return pmc_err_sys("%s", what);
}

/* Releases m as often as the caller holds it; the count. */
static unsigned
mutex_release_all(pthread_mutex_t *m)
{
	unsigned n = 0;

	while (mutex_held(m) && pthread_mutex_unlock(m) == 0)
		n++;
	return n;
}

/* Takes m again n times after mutex_release_all (no timeout, as
 * Python's Condition); PM_OK or PM_EOWNERDEAD (held either way). */
static int
mutex_reacquire(pthread_mutex_t *m, unsigned n, const char *what)
{
	int rc = mutex_acquire(m, -1, what);

	if (rc != PM_OK && rc != PM_EOWNERDEAD)
		return rc;
	while (n-- > 1)
		pthread_mutex_lock(m);
	return rc;
}

/* ---- segment initializers ---- */

static void
hdr_init(struct pmc_seg_hdr *h, int kind, int flags)
{
	h->magic = PMC_SEG_MAGIC;
	h->kind = (uint32_t)kind;
	h->version = PMC_SEG_VERSION;
	h->flags = (uint32_t)flags;
}

static int
lock_init_cb(void *base, const void *ud)
{
	struct pmc_lock_seg *l = base;
	int flags = *(const int *)ud;

	hdr_init(&l->h, PMC_K_LOCK, flags & LOCK_FLAGS);
	return mutex_init(&l->m, flags & PM_LOCK_RECURSIVE);
}

struct sem_init {
	unsigned	 value;
	int		 flags;
};

static int
sem_init_cb(void *base, const void *ud)
{
	const struct sem_init *si = ud;
	struct pmc_sem_seg *s = base;

	hdr_init(&s->h, PMC_K_SEM, si->flags & SEM_FLAGS);
	atomic_store(&s->value, si->value);
	s->bound = si->value;
	return PM_OK;
}

static int
event_init_cb(void *base, const void *ud)
{
	struct pmc_event_seg *e = base;

	hdr_init(&e->h, PMC_K_EVENT, 0);
	return PM_OK;
}

static int
cond_init_cb(void *base, const void *ud)
{
	struct pmc_cond_seg *c = base;

	hdr_init(&c->h, PMC_K_COND, 0);
	return mutex_init(&c->m, 1);
}

static int
barrier_init_cb(void *base, const void *ud)
{
	struct pmc_barrier_seg *b = base;

	hdr_init(&b->h, PMC_K_BARRIER, 0);
	b->parties = *(const unsigned *)ud;
	return mutex_init(&b->m, 0);
}

/* A handle of size bytes around a segment opened or adopted. */
static void *
handle_new(size_t size)
{
	void *h;

	if ((h = calloc(1, size)) == NULL)
		pmc_err(PM_ENOMEM, "out of memory");
	return h;
}

/* ---- Lock and RLock ---- */

pm_lock *
pm_lock_open(pm_conn *c, const char *name, int flags)
{
	pm_lock *l;

	if ((l = handle_new(sizeof(*l))) == NULL)
		return NULL;
	if (pmc_obj_open(c, name, PMC_K_LOCK, flags, LOCK_FLAGS,
	    PMC_SYNC_SEG_SIZE, lock_init_cb, &flags, &l->seg) != PM_OK) {
		free(l);
		return NULL;
	}
	l->l = l->seg.base;
	pmc_ok();
	return l;
}

pm_lock *
pm_lock_adopt(int fd)
{
	pm_lock *l;

	if ((l = handle_new(sizeof(*l))) == NULL) {
		close(fd);
		return NULL;
	}
	if (pmc_seg_adopt(fd, PMC_K_LOCK, &l->seg) != PM_OK) {
		free(l);
		return NULL;
	}
	l->l = l->seg.base;
	pmc_ok();
	return l;
}

int
pm_lock_acquire(pm_lock *l, double timeout)
{
	if (l == NULL)
		return pmc_err(PM_EINVAL, "no lock");
	return mutex_acquire(&l->l->m, timeout, "lock");
}

int
pm_lock_release(pm_lock *l)
{
	if (l == NULL)
		return pmc_err(PM_EINVAL, "no lock");
	return mutex_release(&l->l->m, "lock");
}

int
pm_lock_fd(pm_lock *l)
{
	return l != NULL ? l->seg.fd : pmc_err(PM_EINVAL, "no lock");
}

/* A held mutex is released before its memory goes: the robust list
 * must never point to unmapped memory. */
void
pm_lock_free(pm_lock *l)
{
	if (l == NULL)
		return;
	mutex_release_all(&l->l->m);
	pmc_seg_close(&l->seg);
	free(l);
}

/* ---- Semaphore and BoundedSemaphore ---- */

pm_sem *
pm_sem_open(pm_conn *c, const char *name, unsigned value, int flags)
{
	struct sem_init si = { value, flags };
	pm_sem *s;

	if (value > SEM_MAX_VALUE) {
		pmc_err(PM_EINVAL, "semaphore value %u above %u", value,
		    SEM_MAX_VALUE);
		return NULL;
	}
	if ((s = handle_new(sizeof(*s))) == NULL)
		return NULL;
	if (pmc_obj_open(c, name, PMC_K_SEM, flags, SEM_FLAGS,
	    PMC_SYNC_SEG_SIZE, sem_init_cb, &si, &s->seg) != PM_OK) {
		free(s);
		return NULL;
	}
	s->s = s->seg.base;
	pmc_ok();
	return s;
}

pm_sem *
pm_sem_adopt(int fd)
{
	pm_sem *s;

	if ((s = handle_new(sizeof(*s))) == NULL) {
		close(fd);
		return NULL;
	}
	if (pmc_seg_adopt(fd, PMC_K_SEM, &s->seg) != PM_OK) {
		free(s);
		return NULL;
	}
	s->s = s->seg.base;
	pmc_ok();
	return s;
}

static int
sem_try(struct pmc_sem_seg *s)
{
	uint32_t v = atomic_load(&s->value);

	while (v > 0)
		if (atomic_compare_exchange_weak(&s->value, &v, v - 1))
			return 1;
	return 0;
}

int
pm_sem_acquire(pm_sem *sem, double timeout)
{
	struct pmc_sem_seg *s;
	struct timespec abs;
	int forever, r;

	if (sem == NULL)
		return pmc_err(PM_EINVAL, "no semaphore");
	s = sem->s;
	if (sync_deadline(timeout, &abs, &forever) != PM_OK)
		return pm_last_error();
	for (;;) {
		if (sem_try(s))
			return pmc_ok();
		if (timeout == 0)
			return pmc_err(PM_ETIMEDOUT, "semaphore at 0");
		atomic_fetch_add(&s->waiters, 1);
		r = futex_wait(&s->value, 0, forever ? NULL : &abs);
		atomic_fetch_sub(&s->waiters, 1);
		if (r == ETIMEDOUT && !sem_try(s))
			return pmc_err(PM_ETIMEDOUT, "semaphore not acquired "
			    "in time");
		if (r == ETIMEDOUT)
			return pmc_ok();
	}
}

int
pm_sem_release(pm_sem *sem)
{
	struct pmc_sem_seg *s;
	uint32_t v;

	if (sem == NULL)
		return pmc_err(PM_EINVAL, "no semaphore");
	s = sem->s;
	v = atomic_load(&s->value);
	do {
		if ((s->h.flags & PM_SEM_BOUNDED) && v >= s->bound)
			return pmc_err(PM_EINVAL, "bounded semaphore released "
			    "above its initial value %u", s->bound);
		if (v >= SEM_MAX_VALUE)
			return pmc_err(PM_ELIMIT, "semaphore value at its "
			    "maximum %u", SEM_MAX_VALUE);
	} while (!atomic_compare_exchange_weak(&s->value, &v, v + 1));
	if (atomic_load(&s->waiters) > 0)
		futex_wake(&s->value, 1);
	return pmc_ok();
}

int
pm_sem_value(pm_sem *sem)
{
	if (sem == NULL)
		return pmc_err(PM_EINVAL, "no semaphore");
	return (int)atomic_load(&sem->s->value);
}

int
pm_sem_fd(pm_sem *s)
{
	return s != NULL ? s->seg.fd : pmc_err(PM_EINVAL, "no semaphore");
}

void
pm_sem_free(pm_sem *s)
{
	if (s == NULL)
		return;
	pmc_seg_close(&s->seg);
	free(s);
}

/* ---- Event ---- */

pm_event *
pm_event_open(pm_conn *c, const char *name, int flags)
{
	pm_event *e;

	if ((e = handle_new(sizeof(*e))) == NULL)
		return NULL;
	if (pmc_obj_open(c, name, PMC_K_EVENT, flags, 0, PMC_SYNC_SEG_SIZE,
	    event_init_cb, NULL, &e->seg) != PM_OK) {
		free(e);
		return NULL;
	}
	e->e = e->seg.base;
	pmc_ok();
	return e;
}

pm_event *
pm_event_adopt(int fd)
{
	pm_event *e;

	if ((e = handle_new(sizeof(*e))) == NULL) {
		close(fd);
		return NULL;
	}
	if (pmc_seg_adopt(fd, PMC_K_EVENT, &e->seg) != PM_OK) {
		free(e);
		return NULL;
	}
	e->e = e->seg.base;
	pmc_ok();
	return e;
}

int
pm_event_set(pm_event *ev)
{
	if (ev == NULL)
		return pmc_err(PM_EINVAL, "no event");
	atomic_store(&ev->e->set, 1);
	if (atomic_load(&ev->e->waiters) > 0)
		futex_wake(&ev->e->set, INT_MAX);
	return pmc_ok();
}

int
pm_event_clear(pm_event *ev)
{
	if (ev == NULL)
		return pmc_err(PM_EINVAL, "no event");
	atomic_store(&ev->e->set, 0);
	return pmc_ok();
}

int
pm_event_is_set(pm_event *ev)
{
	if (ev == NULL)
		return pmc_err(PM_EINVAL, "no event");
	return atomic_load(&ev->e->set) != 0;
}

int
pm_event_wait(pm_event *ev, double timeout)
{
	struct pmc_event_seg *e;
	struct timespec abs;
	int forever, r;

	if (ev == NULL)
		return pmc_err(PM_EINVAL, "no event");
	e = ev->e;
	if (sync_deadline(timeout, &abs, &forever) != PM_OK)
		return pm_last_error();
	while (atomic_load(&e->set) == 0) {
		if (timeout == 0)
			return pmc_err(PM_ETIMEDOUT, "event not set");
		atomic_fetch_add(&e->waiters, 1);
		r = futex_wait(&e->set, 0, forever ? NULL : &abs);
		atomic_fetch_sub(&e->waiters, 1);
		if (r == ETIMEDOUT && atomic_load(&e->set) == 0)
			return pmc_err(PM_ETIMEDOUT, "event not set in time");
	}
	return pmc_ok();
}

int
pm_event_fd(pm_event *e)
{
	return e != NULL ? e->seg.fd : pmc_err(PM_EINVAL, "no event");
}

void
pm_event_free(pm_event *e)
{
	if (e == NULL)
		return;
	pmc_seg_close(&e->seg);
	free(e);
}

/* ---- Condition ---- */

pm_cond *
pm_cond_open(pm_conn *c, const char *name, int flags)
{
	pm_cond *cv;

	if ((cv = handle_new(sizeof(*cv))) == NULL)
		return NULL;
	if (pmc_obj_open(c, name, PMC_K_COND, flags, 0, PMC_SYNC_SEG_SIZE,
	    cond_init_cb, NULL, &cv->seg) != PM_OK) {
		free(cv);
		return NULL;
	}
	cv->c = cv->seg.base;
	pmc_ok();
	return cv;
}

pm_cond *
pm_cond_adopt(int fd)
{
	pm_cond *cv;

	if ((cv = handle_new(sizeof(*cv))) == NULL) {
		close(fd);
		return NULL;
	}
	if (pmc_seg_adopt(fd, PMC_K_COND, &cv->seg) != PM_OK) {
		free(cv);
		return NULL;
	}
	cv->c = cv->seg.base;
	pmc_ok();
	return cv;
}

int
pm_cond_acquire(pm_cond *cv, double timeout)
{
	if (cv == NULL)
		return pmc_err(PM_EINVAL, "no condition");
	return mutex_acquire(&cv->c->m, timeout, "condition");
}

int
pm_cond_release(pm_cond *cv)
{
	if (cv == NULL)
		return pmc_err(PM_EINVAL, "no condition");
	return mutex_release(&cv->c->m, "condition");
}

/*
 * Waits for a notify: the sequence word is read while the lock is held,
 * so a notify made after the lock is released changes it and the futex
 * wait does not sleep through it.  A wake with the word unchanged
 * (a signal, a stale wake) sleeps again.
 */
int
pm_cond_wait(pm_cond *cv, double timeout)
{
	struct pmc_cond_seg *c;
	struct timespec abs;
	uint32_t seq;
	unsigned held;
	int forever, r = 0, rc;

	if (cv == NULL)
		return pmc_err(PM_EINVAL, "no condition");
	c = cv->c;
	if (sync_deadline(timeout, &abs, &forever) != PM_OK)
		return pm_last_error();
	if (!mutex_held(&c->m))
		return pmc_err(PM_EPERM, "wait on a condition not held by "
		    "this thread");
	seq = atomic_load(&c->seq);
	atomic_fetch_add(&c->waiters, 1);
	held = mutex_release_all(&c->m);
	if (timeout != 0)
		do {
			r = futex_wait(&c->seq, seq, forever ? NULL : &abs);
		} while ((r == 0 || r == EINTR) &&
		    atomic_load(&c->seq) == seq);
	atomic_fetch_sub(&c->waiters, 1);
	if ((rc = mutex_reacquire(&c->m, held, "condition")) != PM_OK)
		return rc;
	if ((timeout == 0 || r == ETIMEDOUT) && atomic_load(&c->seq) == seq)
		return pmc_err(PM_ETIMEDOUT, "condition not notified in time");
	return pmc_ok();
}

static int
cond_notify(pm_cond *cv, int n)
{
	struct pmc_cond_seg *c;

	if (cv == NULL)
		return pmc_err(PM_EINVAL, "no condition");
	c = cv->c;
	if (!mutex_held(&c->m))
		return pmc_err(PM_EPERM, "notify on a condition not held by "
		    "this thread");
	if (n < 0)
		return pmc_err(PM_EINVAL, "notify of %d waiters", n);
	if (n > 0 && atomic_load(&c->waiters) > 0) {
		atomic_fetch_add(&c->seq, 1);
		futex_wake(&c->seq, n);
	}
	return pmc_ok();
}

int
pm_cond_notify(pm_cond *cv, int n)
{
	return cond_notify(cv, n);
}

int
pm_cond_notify_all(pm_cond *cv)
{
	return cond_notify(cv, INT_MAX);
}

int
pm_cond_fd(pm_cond *cv)
{
	return cv != NULL ? cv->seg.fd : pmc_err(PM_EINVAL, "no condition");
}

void
pm_cond_free(pm_cond *cv)
{
	if (cv == NULL)
		return;
	mutex_release_all(&cv->c->m);
	pmc_seg_close(&cv->seg);
	free(cv);
}

/* ---- Barrier ---- */

pm_barrier *
pm_barrier_open(pm_conn *c, const char *name, unsigned parties, int flags)
{
	pm_barrier *b;

	if ((name == NULL || (flags & PM_O_CREATE)) &&
	    (parties < 1 || parties > (unsigned)INT_MAX)) {
		pmc_err(PM_EINVAL, "a barrier of %u parties", parties);
		return NULL;
	}
	if ((b = handle_new(sizeof(*b))) == NULL)
		return NULL;
	if (pmc_obj_open(c, name, PMC_K_BARRIER, flags, 0, PMC_SYNC_SEG_SIZE,
	    barrier_init_cb, &parties, &b->seg) != PM_OK) {
		free(b);
		return NULL;
	}
	b->b = b->seg.base;
	pmc_ok();
	return b;
}

pm_barrier *
pm_barrier_adopt(int fd)
{
	pm_barrier *b;

	if ((b = handle_new(sizeof(*b))) == NULL) {
		close(fd);
		return NULL;
	}
	if (pmc_seg_adopt(fd, PMC_K_BARRIER, &b->seg) != PM_OK) {
		free(b);
		return NULL;
	}
	b->b = b->seg.base;
	pmc_ok();
	return b;
}

/* Ends the round in progress as broken (its waiters get PM_EBROKEN);
 * the caller holds b->m. */
static void
barrier_break(struct pmc_barrier_seg *b, int stay_broken)
{
	if (b->count > 0) {
		b->count = 0;
		b->break_gen = atomic_fetch_add(&b->gen, 1) + 1;
		futex_wake(&b->gen, INT_MAX);
	}
	b->broken = stay_broken;
}

/* Takes b's state lock; a holder that died there leaves the state
 * unknown: the barrier breaks. */
static int
barrier_enter(struct pmc_barrier_seg *b, double timeout)
{
	int rc = mutex_acquire(&b->m, timeout, "barrier");

	if (rc == PM_EOWNERDEAD) {
		b->count = 1;		/* wakes any waiter of that round */
		barrier_break(b, 1);
		return PM_OK;
	}
	return rc;
}

/* The round of gen g ended: its index, or PM_EBROKEN. */
static int
barrier_ended(struct pmc_barrier_seg *b, uint32_t g, int idx)
{
	if (b->break_gen == g + 1)
		return pmc_err(PM_EBROKEN, "barrier broken while waiting");
	pmc_ok();
	return idx;
}

int
pm_barrier_wait(pm_barrier *bh, double timeout)
{
	struct pmc_barrier_seg *b;
	struct timespec abs;
	uint32_t g;
	int forever, idx, r, rc;

	if (bh == NULL)
		return pmc_err(PM_EINVAL, "no barrier");
	b = bh->b;
	if (sync_deadline(timeout, &abs, &forever) != PM_OK)
		return pm_last_error();
	if ((rc = barrier_enter(b, -1)) != PM_OK)
		return rc;
	if (b->broken) {
		pthread_mutex_unlock(&b->m);
		return pmc_err(PM_EBROKEN, "barrier is broken");
	}
	idx = (int)b->count++;
	g = atomic_load(&b->gen);
	if (b->count >= b->parties) {		/* the last: release all */
		b->count = 0;
		atomic_fetch_add(&b->gen, 1);
		futex_wake(&b->gen, INT_MAX);
		pthread_mutex_unlock(&b->m);
		pmc_ok();
		return idx;
	}
	pthread_mutex_unlock(&b->m);
	r = 0;
	while (timeout != 0 && atomic_load(&b->gen) == g && r != ETIMEDOUT)
		r = futex_wait(&b->gen, g, forever ? NULL : &abs);
	if ((rc = barrier_enter(b, -1)) != PM_OK)
		return rc;
	if (atomic_load(&b->gen) != g) {
		rc = barrier_ended(b, g, idx);
		pthread_mutex_unlock(&b->m);
		return rc;
	}
	barrier_break(b, 1);			/* timed out: break it */
	pthread_mutex_unlock(&b->m);
	return pmc_err(PM_ETIMEDOUT, "barrier: %d of %u parties came in "
	    "time; it is broken now", idx + 1, b->parties);
}

int
pm_barrier_abort(pm_barrier *bh)
{
	int rc;

	if (bh == NULL)
		return pmc_err(PM_EINVAL, "no barrier");
	if ((rc = barrier_enter(bh->b, -1)) != PM_OK)
		return rc;
	barrier_break(bh->b, 1);
	pthread_mutex_unlock(&bh->b->m);
	return pmc_ok();
}

int
pm_barrier_reset(pm_barrier *bh)
{
	int rc;

	if (bh == NULL)
		return pmc_err(PM_EINVAL, "no barrier");
	if ((rc = barrier_enter(bh->b, -1)) != PM_OK)
		return rc;
	barrier_break(bh->b, 0);
	pthread_mutex_unlock(&bh->b->m);
	return pmc_ok();
}

int
pm_barrier_broken(pm_barrier *bh)
{
	if (bh == NULL)
		return pmc_err(PM_EINVAL, "no barrier");
	return __atomic_load_n(&bh->b->broken, __ATOMIC_RELAXED) != 0;
}

int
pm_barrier_n_waiting(pm_barrier *bh)
{
	if (bh == NULL)
		return pmc_err(PM_EINVAL, "no barrier");
	return (int)__atomic_load_n(&bh->b->count, __ATOMIC_RELAXED);
}

int
pm_barrier_parties(pm_barrier *bh)
{
	if (bh == NULL)
		return pmc_err(PM_EINVAL, "no barrier");
	return (int)bh->b->parties;
}

int
pm_barrier_fd(pm_barrier *b)
{
	return b != NULL ? b->seg.fd : pmc_err(PM_EINVAL, "no barrier");
}

void
pm_barrier_free(pm_barrier *b)
{
	if (b == NULL)
		return;
	pmc_seg_close(&b->seg);
	free(b);
}
