/*
 * check_sync.c - anonymous shared objects (issue 10): sealed memory,
 * Lock and RLock rules, robust locks and conditions whose holder is
 * killed, measured timeouts, no system call on an uncontended lock, and
 * the classic programs across processes: 4 x 20,000 locked increments, a
 * semaphore of 2 among 6, an event waking 3, barrier rounds and breaks,
 * a condition with 3 consumers.  Other processes are forked fake clients
 * or pmd workers given the objects' fds.
 */
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <linux/seccomp.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "pmclient.h"

#define HANG		30.0	/* s: generous bound for anything to end */
#define SLACK		1.0	/* s a timed-out call may take past timeout */
#define INCR_PROCS	4
#define INCR_EACH	20000
#define SEM_PROCS	6

static struct th_pmd pmd;
static pm_conn *conn;
static char smod[PATH_MAX];	/* synctasks.so */
static int base_self;

/* The test's objects, reachable while fake clients are forked. */
static pm_shm *shm;
static pm_lock *lock;
static pm_sem *sem;
static pm_event *event;
static pm_cond *cond;
static pm_barrier *barrier;

static void
setup(void)
{
	base_self = th_fd_count(0);
}

static void
teardown(void)
{
	pm_shm_free(shm);
	pm_lock_free(lock);
	pm_sem_free(sem);
	pm_event_free(event);
	pm_cond_free(cond);
	pm_barrier_free(barrier);
	shm = NULL;
	lock = NULL;
	sem = NULL;
	event = NULL;
	cond = NULL;
	barrier = NULL;
	ck_assert_int_eq(th_fd_count(0), base_self);
}

static void
setup_pmd(void)
{
	setup();
	snprintf(smod, sizeof(smod), "%s/tests/synctasks.so",
	    th_env("PM_BUILD"));
	ck_assert_int_eq(th_pmd_start(&pmd, NULL), 0);
	conn = pm_connect(pmd.sock);
	ck_assert_msg(conn != NULL, "pm_connect: %s", pm_last_message());
}

static void
teardown_pmd(void)
{
	pm_disconnect(conn);
	conn = NULL;
	ck_assert_int_eq(th_pmd_stop(&pmd), 0);
	teardown();
}

/* A shared scratch page for the forked children's reports. */
static _Atomic uint32_t *
scratch(void)
{
	shm = pm_shm_open(NULL, NULL, 4096, 0);
	ck_assert_msg(shm != NULL, "shm: %s", pm_last_message());
	return pm_shm_ptr(shm);
}

/* Checks a call that should time out took [timeout, timeout + SLACK). */
#define CK_TIMED(call, timeout) do {					\
	double t0_ = th_now(), el_;					\
	int r_ = (call);						\
	el_ = th_now() - t0_;						\
	ck_assert_msg(r_ == PM_ETIMEDOUT, #call ": %d (%s)", r_,	\
	    pm_last_message());						\
	ck_assert_msg(el_ >= (timeout) && el_ < (timeout) + SLACK,	\
	    #call ": returned after %.3f s", el_);			\
} while (0)

/* ---- memory ---- */

START_TEST(t_shm_anonymous)
{
	unsigned char *p;
	pm_shm *b;
	size_t i;
	int fd, seals, other;

	ck_assert_ptr_null(pm_shm_open(NULL, NULL, 0, 0));
	ck_assert_int_eq(pm_last_error(), PM_EINVAL);
	ck_assert_ptr_null(pm_shm_open(NULL, NULL, 10, 0x4000));
	ck_assert_int_eq(pm_last_error(), PM_EINVAL);
	shm = pm_shm_open(NULL, NULL, 10000, 0);
	ck_assert_ptr_nonnull(shm);
	ck_assert_uint_eq(pm_shm_size(shm), 10000);
	p = pm_shm_ptr(shm);
	for (i = 0; i < 10000; i++)
		ck_assert_int_eq(p[i], 0);
	fd = pm_shm_fd(shm);
	seals = fcntl(fd, F_GET_SEALS);
	ck_assert_int_eq(seals & (F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL),
	    F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL);
	ck_assert_int_eq(ftruncate(fd, 10), -1);	/* nobody can shrink */
	ck_assert_int_eq(errno, EPERM);
	/* a second handle on a copy of the fd: the same memory */
	b = pm_shm_adopt(fcntl(fd, F_DUPFD_CLOEXEC, 0));
	ck_assert_ptr_nonnull(b);
	ck_assert_uint_eq(pm_shm_size(b), 10000);
	p[9999] = 42;
	ck_assert_int_eq(((unsigned char *)pm_shm_ptr(b))[9999], 42);
	pm_shm_free(b);
	/* not a segment: a pipe, an unsealed memfd, another kind's */
	ck_assert_ptr_null(pm_shm_adopt(-1));
	ck_assert_int_eq(pm_last_error(), PM_EINVAL);
	other = memfd_create("pm.shm", MFD_CLOEXEC);
	ck_assert_int_eq(ftruncate(other, 4096), 0);
	ck_assert_ptr_null(pm_shm_adopt(other));	/* closed by adopt */
	ck_assert_int_eq(pm_last_error(), PM_EINVAL);
	lock = pm_lock_open(NULL, NULL, 0);
	ck_assert_ptr_nonnull(lock);
	ck_assert_ptr_null(pm_shm_adopt(fcntl(pm_lock_fd(lock),
	    F_DUPFD_CLOEXEC, 0)));
	ck_assert_int_eq(pm_last_error(), PM_EINVAL);
	ck_assert_ptr_null(pm_lock_adopt(fcntl(fd, F_DUPFD_CLOEXEC, 0)));
	ck_assert_int_eq(pm_last_error(), PM_EINVAL);
	ck_assert_ptr_null(pm_sem_adopt(fcntl(pm_lock_fd(lock),
	    F_DUPFD_CLOEXEC, 0)));
	ck_assert_int_eq(pm_last_error(), PM_EINVAL);
	/* a named object needs a connection */
	ck_assert_ptr_null(pm_lock_open(NULL, "x", PM_O_CREATE));
	ck_assert_int_eq(pm_last_error(), PM_EINVAL);
}
END_TEST

/* ---- Lock and RLock ---- */

START_TEST(t_lock_rules)
{
	pid_t pid;
	pm_lock *r;
	double t0;
	int i;

	ck_assert_ptr_null(pm_lock_open(NULL, NULL, PM_SEM_BOUNDED));
	ck_assert_int_eq(pm_last_error(), PM_EINVAL);
	lock = pm_lock_open(NULL, NULL, 0);
	ck_assert_ptr_nonnull(lock);
	ck_assert_int_eq(pm_lock_release(lock), PM_EPERM);
	ck_assert_int_eq(pm_lock_acquire(lock, 0), PM_OK);
	/* again by its holder: PM_ESTATE at once, whatever the timeout */
	t0 = th_now();
	ck_assert_int_eq(pm_lock_acquire(lock, -1), PM_ESTATE);
	ck_assert_int_eq(pm_lock_acquire(lock, 5), PM_ESTATE);
	ck_assert(th_now() - t0 < SLACK);
	/* another process may not release it, nor take it */
	pid = th_fork();
	if (pid == 0)
		th_child_exit(pm_lock_release(lock) == PM_EPERM &&
		    pm_lock_acquire(lock, 0) == PM_ETIMEDOUT ? 0 : 1);
	ck_assert_int_eq(th_wait_child(pid, HANG), 0);
	ck_assert_int_eq(pm_lock_release(lock), PM_OK);
	ck_assert_int_eq(pm_lock_release(lock), PM_EPERM);
	/* RLock: the holder acquires again, and releases as often */
	r = pm_lock_open(NULL, NULL, PM_LOCK_RECURSIVE);
	ck_assert_ptr_nonnull(r);
	for (i = 0; i < 3; i++)
		ck_assert_int_eq(pm_lock_acquire(r, 0), PM_OK);
	pid = th_fork();
	if (pid == 0)
		th_child_exit(pm_lock_acquire(r, 0.1) == PM_ETIMEDOUT ? 0 : 1);
	ck_assert_int_eq(th_wait_child(pid, HANG), 0);
	for (i = 0; i < 3; i++)
		ck_assert_int_eq(pm_lock_release(r), PM_OK);
	ck_assert_int_eq(pm_lock_release(r), PM_EPERM);
	pid = th_fork();
	if (pid == 0)
		th_child_exit(pm_lock_acquire(r, 0) == PM_OK ? 0 : 1);
	ck_assert_int_eq(th_wait_child(pid, HANG), 0);
	pm_lock_free(r);
}
END_TEST

/* A child takes obj's lock and signals through the scratch word; the
 * parent then waits, for the child's death when kill is set. */
static pid_t
holder(_Atomic uint32_t *flag, int use_cond, int recursive)
{
	pid_t pid;
	int r;

	pid = th_fork();
	if (pid == 0) {
		r = use_cond ? pm_cond_acquire(cond, -1) :
		    pm_lock_acquire(lock, -1);
		if (recursive && r == PM_OK)
			r = pm_lock_acquire(lock, -1);
		atomic_store(flag, r == PM_OK ? 1 : 2);
		for (;;)
			pause();
	}
	TH_WAIT(*flag != 0, HANG);
	ck_assert_int_eq(*flag, 1);
	return pid;
}

START_TEST(t_lock_owner_dead)
{
	_Atomic uint32_t *w = scratch();
	pid_t pid;

	lock = pm_lock_open(NULL, NULL, 0);
	ck_assert_ptr_nonnull(lock);
	pid = holder(w, 0, 0);
	CK_TIMED(pm_lock_acquire(lock, 0.2), 0.2);
	kill(pid, SIGKILL);
	ck_assert_int_eq(th_wait_child(pid, HANG), -SIGKILL);
	ck_assert_int_eq(pm_lock_acquire(lock, HANG), PM_EOWNERDEAD);
	/* held now, and consistent again */
	ck_assert_int_eq(pm_lock_release(lock), PM_OK);
	ck_assert_int_eq(pm_lock_acquire(lock, 0), PM_OK);
	ck_assert_int_eq(pm_lock_release(lock), PM_OK);
	pm_lock_free(lock);
	/* an RLock held twice by the dead */
	lock = pm_lock_open(NULL, NULL, PM_LOCK_RECURSIVE);
	w[0] = 0;
	pid = holder(w, 0, 1);
	kill(pid, SIGKILL);
	ck_assert_int_eq(th_wait_child(pid, HANG), -SIGKILL);
	ck_assert_int_eq(pm_lock_acquire(lock, HANG), PM_EOWNERDEAD);
	ck_assert_int_eq(pm_lock_release(lock), PM_OK);
	ck_assert_int_eq(pm_lock_release(lock), PM_EPERM);
}
END_TEST

START_TEST(t_cond_owner_dead)
{
	_Atomic uint32_t *w = scratch();
	pid_t pid;

	cond = pm_cond_open(NULL, NULL, 0);
	ck_assert_ptr_nonnull(cond);
	pid = holder(w, 1, 0);
	CK_TIMED(pm_cond_acquire(cond, 0.2), 0.2);
	kill(pid, SIGKILL);
	ck_assert_int_eq(th_wait_child(pid, HANG), -SIGKILL);
	ck_assert_int_eq(pm_cond_acquire(cond, HANG), PM_EOWNERDEAD);
	ck_assert_int_eq(pm_cond_notify_all(cond), PM_OK);
	ck_assert_int_eq(pm_cond_release(cond), PM_OK);
	ck_assert_int_eq(pm_cond_acquire(cond, 0), PM_OK);
	ck_assert_int_eq(pm_cond_release(cond), PM_OK);
}
END_TEST

/* A pmd worker holds the lock (or condition) given as fd 3 and is
 * killed: the next acquirer gets PM_EOWNERDEAD. */
static void
worker_dies_holding(const char *what)
{
	pm_process *p;
	int code, r;

	event = pm_event_open(NULL, NULL, 0);
	ck_assert_ptr_nonnull(event);
	p = pm_process_new(conn, smod, "s_hold", what, strlen(what));
	ck_assert_ptr_nonnull(p);
	ck_assert_int_eq(pm_process_set_fd(p, 3, strcmp(what, "cond") == 0 ?
	    pm_cond_fd(cond) : pm_lock_fd(lock)), PM_OK);
	ck_assert_int_eq(pm_process_set_fd(p, 4, pm_event_fd(event)), PM_OK);
	ck_assert_int_eq(pm_process_start(p), PM_OK);
	r = pm_event_wait(event, HANG);
	ck_assert_msg(r == PM_OK, "holder did not start: %s",
	    pm_process_error(p) ? pm_process_error(p) : "");
	ck_assert_int_eq(pm_process_kill(p), PM_OK);
	ck_assert_int_eq(pm_process_join(p, HANG), PM_OK);
	ck_assert_int_eq(pm_process_exitcode(p, &code), PM_OK);
	ck_assert_int_eq(code, -SIGKILL);
	pm_process_free(p);
}

START_TEST(t_worker_owner_dead)
{
	lock = pm_lock_open(NULL, NULL, 0);
	cond = pm_cond_open(NULL, NULL, 0);
	ck_assert(lock != NULL && cond != NULL);
	worker_dies_holding("lock");
	ck_assert_int_eq(pm_lock_acquire(lock, HANG), PM_EOWNERDEAD);
	ck_assert_int_eq(pm_lock_release(lock), PM_OK);
	pm_event_free(event);
	event = NULL;
	worker_dies_holding("cond");
	ck_assert_int_eq(pm_cond_acquire(cond, HANG), PM_EOWNERDEAD);
	ck_assert_int_eq(pm_cond_release(cond), PM_OK);
}
END_TEST

/* 4 workers x 20,000 increments of one counter under one lock. */
START_TEST(t_counter)
{
	pm_process *ps[INCR_PROCS];
	char arg[16];
	int i, code;

	lock = pm_lock_open(NULL, NULL, 0);
	shm = pm_shm_open(NULL, NULL, sizeof(uint64_t), 0);
	ck_assert(lock != NULL && shm != NULL);
	snprintf(arg, sizeof(arg), "%d", INCR_EACH);
	for (i = 0; i < INCR_PROCS; i++) {
		ps[i] = pm_process_new(conn, smod, "s_incr", arg, strlen(arg));
		ck_assert_ptr_nonnull(ps[i]);
		ck_assert_int_eq(pm_process_set_fd(ps[i], 3, pm_lock_fd(lock)),
		    PM_OK);
		ck_assert_int_eq(pm_process_set_fd(ps[i], 4, pm_shm_fd(shm)),
		    PM_OK);
		ck_assert_int_eq(pm_process_start(ps[i]), PM_OK);
	}
	for (i = 0; i < INCR_PROCS; i++) {
		ck_assert_int_eq(pm_process_join(ps[i], 120), PM_OK);
		ck_assert_int_eq(pm_process_exitcode(ps[i], &code), PM_OK);
		ck_assert_msg(code == 0, "worker %d: %d %s", i, code,
		    pm_process_error(ps[i]) ? pm_process_error(ps[i]) : "");
		pm_process_free(ps[i]);
	}
	ck_assert_uint_eq(*(uint64_t *)pm_shm_ptr(shm),
	    (uint64_t)INCR_PROCS * INCR_EACH);
}
END_TEST

/* ---- timeouts ---- */

START_TEST(t_timeouts)
{
	_Atomic uint32_t *w = scratch();
	pid_t pid;

	lock = pm_lock_open(NULL, NULL, 0);
	sem = pm_sem_open(NULL, NULL, 0, 0);
	event = pm_event_open(NULL, NULL, 0);
	cond = pm_cond_open(NULL, NULL, 0);
	barrier = pm_barrier_open(NULL, NULL, 2, 0);
	ck_assert(lock && sem && event && cond && barrier);
	pid = holder(w, 0, 0);
	CK_TIMED(pm_lock_acquire(lock, 0), 0);
	CK_TIMED(pm_lock_acquire(lock, 0.3), 0.3);
	kill(pid, SIGKILL);
	ck_assert_int_eq(th_wait_child(pid, HANG), -SIGKILL);
	CK_TIMED(pm_sem_acquire(sem, 0), 0);
	CK_TIMED(pm_sem_acquire(sem, 0.3), 0.3);
	CK_TIMED(pm_event_wait(event, 0), 0);
	CK_TIMED(pm_event_wait(event, 0.3), 0.3);
	ck_assert_int_eq(pm_cond_acquire(cond, 0), PM_OK);
	CK_TIMED(pm_cond_wait(cond, 0), 0);
	CK_TIMED(pm_cond_wait(cond, 0.3), 0.3);
	ck_assert_int_eq(pm_cond_release(cond), PM_OK);	/* held again */
	CK_TIMED(pm_barrier_wait(barrier, 0.3), 0.3);
	ck_assert_int_eq(pm_barrier_broken(barrier), 1);
	ck_assert_int_eq(pm_sem_acquire(sem, NAN), PM_EINVAL);
}
END_TEST

/* ---- no system call on the fast path ---- */

/* In a child under seccomp strict mode (read, write, exit only): any
 * other system call kills it. */
START_TEST(t_no_syscall)
{
	int p[2], i, ok = 1;
	char c = 0;
	pid_t pid;

	if (th_valgrind())	/* valgrind's own system calls */
		return;
	lock = pm_lock_open(NULL, NULL, 0);
	sem = pm_sem_open(NULL, NULL, 1, 0);
	event = pm_event_open(NULL, NULL, 0);
	cond = pm_cond_open(NULL, NULL, 0);
	ck_assert(lock && sem && event && cond);
	/* the thread id is looked up once, before the filter */
	ck_assert_int_eq(pm_cond_acquire(cond, 0), PM_OK);
	ck_assert_int_eq(pm_cond_notify(cond, 1), PM_OK);
	ck_assert_int_eq(pm_cond_release(cond), PM_OK);
	ck_assert_int_eq(pipe(p), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		pm_cond_acquire(cond, 0);	/* the child's thread id */
		pm_cond_notify(cond, 1);
		pm_cond_release(cond);
		if (syscall(SYS_seccomp, SECCOMP_SET_MODE_STRICT, 0, NULL))
			syscall(SYS_exit, 3);
		for (i = 0; i < 1000; i++) {
			ok &= pm_lock_acquire(lock, -1) == PM_OK;
			ok &= pm_lock_release(lock) == PM_OK;
			ok &= pm_lock_acquire(lock, 5.0) == PM_OK;
			ok &= pm_lock_release(lock) == PM_OK;
			ok &= pm_lock_acquire(lock, 0) == PM_OK;
			ok &= pm_lock_release(lock) == PM_OK;
			ok &= pm_sem_acquire(sem, -1) == PM_OK;
			ok &= pm_sem_release(sem) == PM_OK;
			ok &= pm_event_set(event) == PM_OK;
			ok &= pm_event_wait(event, 1.0) == PM_OK;
			ok &= pm_event_clear(event) == PM_OK;
			ok &= pm_cond_acquire(cond, -1) == PM_OK;
			ok &= pm_cond_notify_all(cond) == PM_OK;
			ok &= pm_cond_release(cond) == PM_OK;
		}
		c = ok ? 'y' : 'n';
		(void)!write(p[1], &c, 1);
		syscall(SYS_exit, 0);
	}
	close(p[1]);
	ck_assert_int_eq(th_wait_child(pid, HANG), 0);
	ck_assert_int_eq(read(p[0], &c, 1), 1);
	ck_assert_int_eq(c, 'y');
	close(p[0]);
}
END_TEST

/* ---- Semaphore ---- */

START_TEST(t_sem_two_of_six)
{
	_Atomic uint32_t *w = scratch();
	_Atomic uint32_t *inside = &w[0];
	_Atomic uint32_t *done = &w[1];
	pid_t pids[SEM_PROCS];
	int i;

	sem = pm_sem_open(NULL, NULL, 2, 0);
	event = pm_event_open(NULL, NULL, 0);
	ck_assert(sem != NULL && event != NULL);
	for (i = 0; i < SEM_PROCS; i++) {
		pids[i] = th_fork();
		if (pids[i] == 0) {
			if (pm_sem_acquire(sem, HANG) != PM_OK)
				th_child_exit(1);
			atomic_fetch_add(inside, 1);
			if (pm_event_wait(event, HANG) != PM_OK)
				th_child_exit(2);
			atomic_fetch_sub(inside, 1);
			atomic_fetch_add(done, 1);
			th_child_exit(pm_sem_release(sem) == PM_OK ? 0 : 3);
		}
	}
	TH_WAIT(atomic_load(inside) == 2, HANG);
	th_sleep(0.3);		/* the other four stay out */
	ck_assert_int_eq(atomic_load(inside), 2);
	ck_assert_int_eq(pm_sem_value(sem), 0);
	ck_assert_int_eq(atomic_load(done), 0);
	ck_assert_int_eq(pm_event_set(event), PM_OK);
	for (i = 0; i < SEM_PROCS; i++)
		ck_assert_int_eq(th_wait_child(pids[i], HANG), 0);
	ck_assert_int_eq(atomic_load(done), SEM_PROCS);
	ck_assert_int_eq(pm_sem_value(sem), 2);
}
END_TEST

START_TEST(t_sem_bounded)
{
	pm_sem *b;

	sem = pm_sem_open(NULL, NULL, 1, 0);
	ck_assert_ptr_nonnull(sem);
	ck_assert_int_eq(pm_sem_release(sem), PM_OK);	/* unbounded */
	ck_assert_int_eq(pm_sem_value(sem), 2);
	b = pm_sem_open(NULL, NULL, 2, PM_SEM_BOUNDED);
	ck_assert_ptr_nonnull(b);
	ck_assert_int_eq(pm_sem_release(b), PM_EINVAL);
	ck_assert_int_eq(pm_sem_acquire(b, 0), PM_OK);
	ck_assert_int_eq(pm_sem_value(b), 1);
	ck_assert_int_eq(pm_sem_release(b), PM_OK);
	ck_assert_int_eq(pm_sem_release(b), PM_EINVAL);
	ck_assert_int_eq(pm_sem_value(b), 2);
	pm_sem_free(b);
	ck_assert_ptr_null(pm_sem_open(NULL, NULL, 1, PM_LOCK_RECURSIVE));
	ck_assert_int_eq(pm_last_error(), PM_EINVAL);
}
END_TEST

/* ---- Event ---- */

START_TEST(t_event_wakes_three)
{
	_Atomic uint32_t *w = scratch();
	pid_t pids[3];
	int i;

	event = pm_event_open(NULL, NULL, 0);
	ck_assert_ptr_nonnull(event);
	ck_assert_int_eq(pm_event_is_set(event), 0);
	for (i = 0; i < 3; i++) {
		pids[i] = th_fork();
		if (pids[i] == 0) {
			atomic_fetch_add(w, 1);
			th_child_exit(pm_event_wait(event, -1) == PM_OK ? 0 : 1);
		}
	}
	TH_WAIT(w[0] == 3, HANG);
	th_sleep(0.1);
	for (i = 0; i < 3; i++)
		ck_assert_int_eq(th_pid_alive(pids[i]), 1);
	ck_assert_int_eq(pm_event_set(event), PM_OK);
	for (i = 0; i < 3; i++)
		ck_assert_int_eq(th_wait_child(pids[i], HANG), 0);
	ck_assert_int_eq(pm_event_is_set(event), 1);
	ck_assert_int_eq(pm_event_wait(event, 0), PM_OK);
	ck_assert_int_eq(pm_event_clear(event), PM_OK);
	ck_assert_int_eq(pm_event_is_set(event), 0);
	ck_assert_int_eq(pm_event_wait(event, 0), PM_ETIMEDOUT);
}
END_TEST

/* ---- Barrier ---- */

START_TEST(t_barrier_rounds)
{
	_Atomic uint32_t *w = scratch();
	pid_t pids[3];
	int i, round, r;
	uint32_t seen;

	ck_assert_ptr_null(pm_barrier_open(NULL, NULL, 0, 0));
	ck_assert_int_eq(pm_last_error(), PM_EINVAL);
	barrier = pm_barrier_open(NULL, NULL, 3, 0);
	ck_assert_ptr_nonnull(barrier);
	ck_assert_int_eq(pm_barrier_parties(barrier), 3);
	for (i = 0; i < 3; i++) {
		pids[i] = th_fork();
		if (pids[i] == 0) {
			for (round = 0; round < 2; round++) {
				r = pm_barrier_wait(barrier, HANG);
				if (r < 0 || r > 2)
					th_child_exit(1);
				/* each index of a round is taken once */
				atomic_fetch_or(&w[round],
				    1u << r);
				atomic_fetch_add(&w[2], 1);
			}
			th_child_exit(0);
		}
	}
	for (i = 0; i < 3; i++)
		ck_assert_int_eq(th_wait_child(pids[i], HANG), 0);
	seen = w[2];
	ck_assert_uint_eq(seen, 6);
	ck_assert_uint_eq(w[0], 7);
	ck_assert_uint_eq(w[1], 7);
	ck_assert_int_eq(pm_barrier_n_waiting(barrier), 0);
	ck_assert_int_eq(pm_barrier_broken(barrier), 0);
}
END_TEST

/* A waiter's timeout breaks the barrier for every waiter and later
 * waits; reset mends it; abort breaks it under a waiter. */
START_TEST(t_barrier_break)
{
	_Atomic uint32_t *w = scratch();
	pid_t a, b;

	barrier = pm_barrier_open(NULL, NULL, 3, 0);
	ck_assert_ptr_nonnull(barrier);
	a = th_fork();
	if (a == 0)
		th_child_exit(pm_barrier_wait(barrier, -1) == PM_EBROKEN ? 0 :
		    1);
	TH_WAIT(pm_barrier_n_waiting(barrier) == 1, HANG);
	CK_TIMED(pm_barrier_wait(barrier, 0.3), 0.3);
	ck_assert_int_eq(th_wait_child(a, HANG), 0);
	ck_assert_int_eq(pm_barrier_broken(barrier), 1);
	ck_assert_int_eq(pm_barrier_wait(barrier, 1), PM_EBROKEN);
	ck_assert_int_eq(pm_barrier_reset(barrier), PM_OK);
	ck_assert_int_eq(pm_barrier_broken(barrier), 0);
	/* reset with a waiter: it gets PM_EBROKEN, the barrier is usable */
	a = th_fork();
	if (a == 0)
		th_child_exit(pm_barrier_wait(barrier, -1) == PM_EBROKEN ? 0 :
		    1);
	TH_WAIT(pm_barrier_n_waiting(barrier) == 1, HANG);
	ck_assert_int_eq(pm_barrier_reset(barrier), PM_OK);
	ck_assert_int_eq(th_wait_child(a, HANG), 0);
	ck_assert_int_eq(pm_barrier_broken(barrier), 0);
	/* abort under two waiters */
	a = th_fork();
	if (a == 0)
		th_child_exit(pm_barrier_wait(barrier, -1) == PM_EBROKEN ? 0 :
		    1);
	b = th_fork();
	if (b == 0)
		th_child_exit(pm_barrier_wait(barrier, -1) == PM_EBROKEN ? 0 :
		    1);
	TH_WAIT(pm_barrier_n_waiting(barrier) == 2, HANG);
	ck_assert_int_eq(pm_barrier_abort(barrier), PM_OK);
	ck_assert_int_eq(th_wait_child(a, HANG), 0);
	ck_assert_int_eq(th_wait_child(b, HANG), 0);
	ck_assert_int_eq(pm_barrier_broken(barrier), 1);
	ck_assert_int_eq(pm_barrier_wait(barrier, 0), PM_EBROKEN);
	(void)w;
}
END_TEST

/* ---- Condition ---- */

START_TEST(t_cond_rules)
{
	_Atomic uint32_t *w = scratch();
	pid_t pid;

	cond = pm_cond_open(NULL, NULL, 0);
	ck_assert_ptr_nonnull(cond);
	ck_assert_int_eq(pm_cond_wait(cond, 0), PM_EPERM);
	ck_assert_int_eq(pm_cond_notify(cond, 1), PM_EPERM);
	ck_assert_int_eq(pm_cond_notify_all(cond), PM_EPERM);
	ck_assert_int_eq(pm_cond_release(cond), PM_EPERM);
	/* its lock is recursive; a wait releases every level */
	ck_assert_int_eq(pm_cond_acquire(cond, 0), PM_OK);
	ck_assert_int_eq(pm_cond_acquire(cond, 0), PM_OK);
	ck_assert_int_eq(pm_cond_notify(cond, -1), PM_EINVAL);
	pid = th_fork();
	if (pid == 0) {
		if (pm_cond_acquire(cond, HANG) != PM_OK)
			th_child_exit(1);
		w[0] = 1;
		pm_cond_notify(cond, 1);
		th_child_exit(pm_cond_release(cond) == PM_OK ? 0 : 2);
	}
	while (w[0] == 0)
		ck_assert_int_eq(pm_cond_wait(cond, HANG), PM_OK);
	ck_assert_int_eq(th_wait_child(pid, HANG), 0);
	/* held twice again */
	ck_assert_int_eq(pm_cond_release(cond), PM_OK);
	ck_assert_int_eq(pm_cond_release(cond), PM_OK);
	ck_assert_int_eq(pm_cond_release(cond), PM_EPERM);
}
END_TEST

#define ITEMS		300
#define CONSUMERS	3

/* 3 consumer processes, 300 items, one notify each. */
START_TEST(t_cond_consumers)
{
	_Atomic uint32_t *w = scratch();
	_Atomic uint32_t *avail = &w[0], *taken = &w[1], *stop = &w[2];
	pid_t pids[CONSUMERS];
	int i, n;

	cond = pm_cond_open(NULL, NULL, 0);
	ck_assert_ptr_nonnull(cond);
	for (i = 0; i < CONSUMERS; i++) {
		pids[i] = th_fork();
		if (pids[i] == 0) {
			n = 0;
			if (pm_cond_acquire(cond, HANG) != PM_OK)
				th_child_exit(1);
			for (;;) {
				while (*avail == 0 && !*stop)
					if (pm_cond_wait(cond, HANG) != PM_OK)
						th_child_exit(2);
				if (*avail == 0)
					break;
				(*avail)--;
				(*taken)++;
				n++;
			}
			pm_cond_release(cond);
			w[10 + i] = (uint32_t)n;
			th_child_exit(0);
		}
	}
	for (i = 0; i < ITEMS; i++) {
		ck_assert_int_eq(pm_cond_acquire(cond, HANG), PM_OK);
		(*avail)++;
		ck_assert_int_eq(pm_cond_notify(cond, 1), PM_OK);
		ck_assert_int_eq(pm_cond_release(cond), PM_OK);
	}
	ck_assert_int_eq(pm_cond_acquire(cond, HANG), PM_OK);
	*stop = 1;
	ck_assert_int_eq(pm_cond_notify_all(cond), PM_OK);
	ck_assert_int_eq(pm_cond_release(cond), PM_OK);
	for (i = 0; i < CONSUMERS; i++)
		ck_assert_int_eq(th_wait_child(pids[i], HANG), 0);
	ck_assert_uint_eq(*taken, ITEMS);
	ck_assert_uint_eq(*avail, 0);
	ck_assert_uint_eq(w[10] + w[11] + w[12], ITEMS);
}
END_TEST

static Suite *
sync_suite(void)
{
	Suite *s = suite_create("sync");
	TCase *tc;

	tc = th_tcase(s, "anonymous", setup, teardown, 60);
	tcase_add_test(tc, t_shm_anonymous);
	tcase_add_test(tc, t_lock_rules);
	tcase_add_test(tc, t_lock_owner_dead);
	tcase_add_test(tc, t_cond_owner_dead);
	tcase_add_test(tc, t_timeouts);
	tcase_add_test(tc, t_no_syscall);
	tcase_add_test(tc, t_sem_two_of_six);
	tcase_add_test(tc, t_sem_bounded);
	tcase_add_test(tc, t_event_wakes_three);
	tcase_add_test(tc, t_barrier_rounds);
	tcase_add_test(tc, t_barrier_break);
	tcase_add_test(tc, t_cond_rules);
	tcase_add_test(tc, t_cond_consumers);

	tc = th_tcase(s, "workers", setup_pmd, teardown_pmd, 180);
	tcase_add_test(tc, t_worker_owner_dead);
	tcase_add_test(tc, t_counter);
	return s;
}

int
main(void)
{
	return th_run_suite(sync_suite());
}
