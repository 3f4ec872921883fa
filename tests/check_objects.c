/*
 * check_objects.c - named shared objects held by pmd (issue 10): one
 * namespace for every kind, open and create rules, another kind under a
 * name, another uid (with and without PM_O_SHARED, the squatting rule),
 * unlink, creation parameters, workers opening them through
 * pm_task_conn, the configured bounds, pmctl objects and unlink, 10,000
 * open/unlink cycles at a steady pmd, and a killed client leaking nothing.
 */
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/types.h>

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "pmclient.h"

#define HANG		30.0
#define NOBODY		65534
#define CYCLES		10000
#define INCR_PROCS	4
#define INCR_EACH	20000

static struct th_pmd pmd;
static pm_conn *conn;
static char smod[PATH_MAX];
static int base_pmd;

/* Objects of a test, reachable while fake clients are forked. */
static pm_shm *shm, *shm2;
static pm_lock *lock;
static pm_sem *sem;
static pm_event *event;
static pm_cond *cond;
static pm_barrier *barrier;

static void
start_pmd(const char *const *args)
{
	snprintf(smod, sizeof(smod), "%s/tests/synctasks.so",
	    th_env("PM_BUILD"));
	ck_assert_int_eq(th_pmd_start(&pmd, args), 0);
	base_pmd = th_fd_count(pmd.pid);
	conn = pm_connect(pmd.sock);
	ck_assert_msg(conn != NULL, "pm_connect: %s", pm_last_message());
}

static void
setup(void)
{
	start_pmd(NULL);
}

static void
free_all(void)
{
	pm_shm_free(shm);
	pm_shm_free(shm2);
	pm_lock_free(lock);
	pm_sem_free(sem);
	pm_event_free(event);
	pm_cond_free(cond);
	pm_barrier_free(barrier);
	shm = shm2 = NULL;
	lock = NULL;
	sem = NULL;
	event = NULL;
	cond = NULL;
	barrier = NULL;
}

static void
teardown(void)
{
	free_all();
	pm_disconnect(conn);
	conn = NULL;
	ck_assert_int_eq(th_pmd_stop(&pmd), 0);
}

START_TEST(t_open_rules)
{
	unsigned char *p;

	ck_assert_ptr_null(pm_shm_open(conn, "m", 4096, 0));
	ck_assert_int_eq(pm_last_error(), PM_ENOENT);
	ck_assert_ptr_null(pm_shm_open(conn, "m", 0, PM_O_CREATE));
	ck_assert_int_eq(pm_last_error(), PM_EINVAL);
	ck_assert_ptr_null(pm_shm_open(conn, "", 10, PM_O_CREATE));
	ck_assert_int_eq(pm_last_error(), PM_EINVAL);
	ck_assert_ptr_null(pm_shm_open(conn, "a\nb", 10, PM_O_CREATE));
	ck_assert_int_eq(pm_last_error(), PM_EINVAL);
	ck_assert_ptr_null(pm_shm_open(conn, "m", 10, PM_O_EXCL));
	ck_assert_int_eq(pm_last_error(), PM_EINVAL);
	shm = pm_shm_open(conn, "m", 8192, PM_O_CREATE | PM_O_EXCL);
	ck_assert_msg(shm != NULL, "%s", pm_last_message());
	ck_assert_uint_eq(pm_shm_size(shm), 8192);
	p = pm_shm_ptr(shm);
	p[0] = 7;
	p[8191] = 9;
	/* again: the same memory; size 0 or up to its size */
	shm2 = pm_shm_open(conn, "m", 0, 0);
	ck_assert_ptr_nonnull(shm2);
	ck_assert_uint_eq(pm_shm_size(shm2), 8192);
	ck_assert_int_eq(((unsigned char *)pm_shm_ptr(shm2))[8191], 9);
	pm_shm_free(shm2);
	shm2 = pm_shm_open(conn, "m", 100, PM_O_CREATE);	/* joins */
	ck_assert_ptr_nonnull(shm2);
	ck_assert_uint_eq(pm_shm_size(shm2), 8192);
	pm_shm_free(shm2);
	shm2 = NULL;
	ck_assert_ptr_null(pm_shm_open(conn, "m", 8193, 0));
	ck_assert_int_eq(pm_last_error(), PM_EINVAL);
	ck_assert_ptr_null(pm_shm_open(conn, "m", 10,
	    PM_O_CREATE | PM_O_EXCL));
	ck_assert_int_eq(pm_last_error(), PM_EEXIST);
	/* another kind under the name, with or without create */
	ck_assert_ptr_null(pm_lock_open(conn, "m", 0));
	ck_assert_int_eq(pm_last_error(), PM_EEXIST);
	ck_assert_ptr_nonnull(strstr(pm_last_message(), "shm"));
	ck_assert_ptr_null(pm_sem_open(conn, "m", 1, PM_O_CREATE));
	ck_assert_int_eq(pm_last_error(), PM_EEXIST);
	/* unlink: gone from pmd, the mapping stays */
	ck_assert_int_eq(pm_unlink(conn, "m"), PM_OK);
	ck_assert_int_eq(pm_unlink(conn, "m"), PM_ENOENT);
	ck_assert_ptr_null(pm_shm_open(conn, "m", 0, 0));
	ck_assert_int_eq(pm_last_error(), PM_ENOENT);
	ck_assert_int_eq(p[0], 7);
	/* a new object under the old name is new memory */
	shm2 = pm_shm_open(conn, "m", 4096, PM_O_CREATE);
	ck_assert_ptr_nonnull(shm2);
	ck_assert_int_eq(((unsigned char *)pm_shm_ptr(shm2))[0], 0);
	ck_assert_int_eq(pm_unlink(conn, "m"), PM_OK);
	ck_assert_int_eq(pm_unlink(NULL, "m"), PM_EINVAL);
	/* a lock's own flag on a semaphore */
	ck_assert_ptr_null(pm_sem_open(conn, "s", 1,
	    PM_O_CREATE | PM_LOCK_RECURSIVE));
	ck_assert_int_eq(pm_last_error(), PM_EINVAL);
}
END_TEST

/* Every kind by name, seen from a second connection in another process;
 * creation parameters count only when the call creates. */
START_TEST(t_kinds)
{
	pid_t pid;
	int r;

	lock = pm_lock_open(conn, "k.lock", PM_O_CREATE | PM_LOCK_RECURSIVE);
	sem = pm_sem_open(conn, "k.sem", 3, PM_O_CREATE | PM_SEM_BOUNDED);
	event = pm_event_open(conn, "k.event", PM_O_CREATE);
	cond = pm_cond_open(conn, "k.cond", PM_O_CREATE);
	barrier = pm_barrier_open(conn, "k.barrier", 2, PM_O_CREATE);
	ck_assert(lock && sem && event && cond && barrier);
	ck_assert_int_eq(pm_lock_acquire(lock, 0), PM_OK);
	ck_assert_int_eq(pm_lock_acquire(lock, 0), PM_OK);	/* RLock */
	pid = th_fork();
	if (pid == 0) {
		pm_conn *c = pm_connect(pmd.sock);
		pm_lock *l;
		pm_sem *s;
		pm_event *e;
		pm_barrier *b;

		th_child_own(c, th_free_conn);
		l = pm_lock_open(c, "k.lock", 0);
		s = pm_sem_open(c, "k.sem", 99, PM_O_CREATE);
		e = pm_event_open(c, "k.event", 0);
		b = pm_barrier_open(c, "k.barrier", 7, PM_O_CREATE);
		if (l == NULL || s == NULL || e == NULL || b == NULL)
			th_child_exit(1);
		r = pm_lock_acquire(l, 0) == PM_ETIMEDOUT &&
		    pm_sem_value(s) == 3 && pm_barrier_parties(b) == 2 &&
		    pm_sem_release(s) == PM_EINVAL &&	/* bounded */
		    pm_event_set(e) == PM_OK;
		r = r && pm_barrier_wait(b, HANG) >= 0;
		pm_lock_free(l);
		pm_sem_free(s);
		pm_event_free(e);
		pm_barrier_free(b);
		th_child_exit(r ? 0 : 2);
	}
	r = pm_barrier_wait(barrier, HANG);
	ck_assert_int_ge(r, 0);
	ck_assert_int_eq(th_wait_child(pid, HANG), 0);
	ck_assert_int_eq(pm_event_is_set(event), 1);
	ck_assert_int_eq(pm_lock_release(lock), PM_OK);
	ck_assert_int_eq(pm_lock_release(lock), PM_OK);
}
END_TEST

/* 4 workers open a named lock and counter through pm_task_conn. */
START_TEST(t_named_counter)
{
	pm_process *ps[INCR_PROCS];
	char arg[64];
	int i, code;

	lock = pm_lock_open(conn, "ctr", PM_O_CREATE);
	shm = pm_shm_open(conn, "ctr.mem", sizeof(uint64_t), PM_O_CREATE);
	ck_assert(lock != NULL && shm != NULL);
	snprintf(arg, sizeof(arg), "ctr %d", INCR_EACH);
	for (i = 0; i < INCR_PROCS; i++) {
		ps[i] = pm_process_new(conn, smod, "s_incr_named", arg,
		    strlen(arg));
		ck_assert_ptr_nonnull(ps[i]);
		ck_assert_int_eq(pm_process_start(ps[i]), PM_OK);
	}
	for (i = 0; i < INCR_PROCS; i++) {
		ck_assert_int_eq(pm_process_join(ps[i], 120), PM_OK);
		ck_assert_int_eq(pm_process_exitcode(ps[i], &code), PM_OK);
		ck_assert_msg(code == 0, "worker %d: %s", i,
		    pm_process_error(ps[i]) ? pm_process_error(ps[i]) : "");
		pm_process_free(ps[i]);
	}
	ck_assert_uint_eq(*(uint64_t *)pm_shm_ptr(shm),
	    (uint64_t)INCR_PROCS * INCR_EACH);
}
END_TEST

static int
other_uid_client(void)
{
	pm_conn *c;
	pm_shm *m;
	pm_lock *l;

	if (setgroups(0, NULL) == -1 || setgid(NOBODY) == -1 ||
	    setuid(NOBODY) == -1)
		return 100;
	if ((c = pm_connect(pmd.sock)) == NULL)
		return 101;
	th_child_own(c, th_free_conn);
	/* private: EPERM; create never joins it: EEXIST naming the owner */
	if (pm_lock_open(c, "mine", 0) != NULL ||
	    pm_last_error() != PM_EPERM)
		return 102;
	if (pm_lock_open(c, "mine", PM_O_CREATE) != NULL ||
	    pm_last_error() != PM_EEXIST ||
	    strstr(pm_last_message(), "owned by uid 0") == NULL)
		return 103;
	if (pm_shm_open(c, "ours", 0, PM_O_CREATE) != NULL ||
	    pm_last_error() != PM_EINVAL)	/* create with size 0 */
		return 104;
	if (pm_shm_open(c, "ours", 10, PM_O_CREATE) != NULL ||
	    pm_last_error() != PM_EEXIST)
		return 105;
	/* shared: joined without create, written, not unlinked */
	if ((m = pm_shm_open(c, "ours", 0, 0)) == NULL)
		return 106;
	((char *)pm_shm_ptr(m))[0] = 'n';
	pm_shm_free(m);
	if (pm_unlink(c, "ours") != PM_EPERM || pm_unlink(c, "mine") !=
	    PM_EPERM)
		return 107;
	/* its own, private: root (an admin) may open and remove it */
	if ((l = pm_lock_open(c, "nobodys", PM_O_CREATE)) == NULL)
		return 108;
	pm_lock_free(l);
	return 0;
}

START_TEST(t_other_uid)
{
	pid_t pid;
	pm_lock *theirs;

	TH_NEED_ROOT();
	ck_assert_int_eq(chmod(pmd.dir, 0711), 0);
	ck_assert_int_eq(chmod(pmd.sock, 0666), 0);
	lock = pm_lock_open(conn, "mine", PM_O_CREATE);
	shm = pm_shm_open(conn, "ours", 64, PM_O_CREATE | PM_O_SHARED);
	ck_assert(lock != NULL && shm != NULL);
	pid = th_fork();
	if (pid == 0)
		th_child_exit(other_uid_client());
	ck_assert_int_eq(th_wait_child(pid, HANG), 0);
	ck_assert_int_eq(((char *)pm_shm_ptr(shm))[0], 'n');
	theirs = pm_lock_open(conn, "nobodys", 0);
	ck_assert_ptr_nonnull(theirs);
	pm_lock_free(theirs);
	ck_assert_int_eq(pm_unlink(conn, "nobodys"), PM_OK);
}
END_TEST

/* pmctl objects: NAME KIND OWNER SIZE STATE, --json; pmctl unlink. */
START_TEST(t_pmctl)
{
	char out[8192], want[128];
	int r;

	lock = pm_lock_open(conn, "p.lock", PM_O_CREATE);
	sem = pm_sem_open(conn, "p.sem", 3, PM_O_CREATE);
	event = pm_event_open(conn, "p.event", PM_O_CREATE);
	barrier = pm_barrier_open(conn, "p.barrier", 2, PM_O_CREATE);
	shm = pm_shm_open(conn, "p.shm", 12345, PM_O_CREATE);
	ck_assert(lock && sem && event && barrier && shm);
	ck_assert_int_eq(pm_lock_acquire(lock, 0), PM_OK);
	ck_assert_int_eq(pm_event_set(event), PM_OK);
	r = th_pmctl(out, sizeof(out), "--socket", pmd.sock, "objects", NULL);
	ck_assert_msg(r == 0, "pmctl objects: %d", r);
	ck_assert_ptr_nonnull(strstr(out, "NAME"));
	ck_assert_ptr_nonnull(strstr(out, "STATE"));
	snprintf(want, sizeof(want), "held by %d", (int)getpid());
	ck_assert_msg(strstr(out, want) != NULL, "%s", out);
	ck_assert_msg(strstr(out, "value 3") != NULL, "%s", out);
	ck_assert_msg(strstr(out, " set") != NULL, "%s", out);
	ck_assert_msg(strstr(out, "waiting 0/2") != NULL, "%s", out);
	ck_assert_msg(strstr(out, "12345") != NULL, "%s", out);
	ck_assert_int_eq(pm_lock_release(lock), PM_OK);
	r = th_pmctl(out, sizeof(out), "--socket", pmd.sock, "objects",
	    "--json", NULL);
	ck_assert_int_eq(r, 0);
	ck_assert_msg(strstr(out, "\"name\": \"p.lock\"") != NULL, "%s", out);
	ck_assert_msg(strstr(out, "\"state\": \"free\"") != NULL, "%s", out);
	ck_assert_msg(strstr(out, "\"kind\": \"barrier\"") != NULL, "%s",
	    out);
	ck_assert_int_eq(th_pmctl(out, sizeof(out), "--socket", pmd.sock,
	    "unlink", "p.sem", NULL), 0);
	ck_assert_int_eq(th_pmctl(out, sizeof(out), "--socket", pmd.sock,
	    "unlink", "p.sem", NULL), 1);
	ck_assert_int_eq(th_pmctl(out, sizeof(out), "--socket", pmd.sock,
	    "unlink", NULL), 2);
	r = th_pmctl(out, sizeof(out), "--socket", pmd.sock, "objects", NULL);
	ck_assert_ptr_null(strstr(out, "p.sem"));
	ck_assert_ptr_nonnull(strstr(out, "p.event"));
}
END_TEST

/* 10,000 create/open/unlink cycles: pmd's fds and RSS back at baseline. */
START_TEST(t_cycles)
{
	int i, n = th_valgrind() ? CYCLES / 20 : CYCLES;
	long rss0, rss1;
	pm_lock *l;

	for (i = 0; i < n / 10; i++) {		/* warm up */
		l = pm_lock_open(conn, "cycle", PM_O_CREATE);
		ck_assert_ptr_nonnull(l);
		pm_lock_free(l);
		ck_assert_int_eq(pm_unlink(conn, "cycle"), PM_OK);
	}
	rss0 = th_rss_kb(pmd.pid);
	for (i = 0; i < n; i++) {
		l = pm_lock_open(conn, "cycle", PM_O_CREATE);
		ck_assert_msg(l != NULL, "%d: %s", i, pm_last_message());
		pm_lock_free(l);
		if (i % 2 == 0) {
			l = pm_lock_open(conn, "cycle", 0);
			ck_assert_ptr_nonnull(l);
			pm_lock_free(l);
		}
		ck_assert_int_eq(pm_unlink(conn, "cycle"), PM_OK);
	}
	rss1 = th_rss_kb(pmd.pid);
	/* ASan's quarantine keeps what pmd freed: only fds count there */
	ck_assert_msg(th_sanitized() || rss1 - rss0 < 512, "pmd's RSS %ld -> "
	    "%ld KB", rss0, rss1);
	pm_disconnect(conn);
	conn = NULL;
	th_pmd_settled(&pmd, base_pmd, HANG);
}
END_TEST

/* A client killed while holding named and anonymous objects (one held
 * locked) leaks nothing in pmd; the next opener gets PM_EOWNERDEAD. */
START_TEST(t_killed_client)
{
	int p[2], i;
	char c;
	pid_t pid;

	ck_assert_int_eq(pipe(p), 0);
	pid = th_fork();
	if (pid == 0) {
		pm_conn *cc = pm_connect(pmd.sock);
		char name[32];

		close(p[0]);
		th_child_own(cc, th_free_conn);
		for (i = 0; i < 20; i++) {
			snprintf(name, sizeof(name), "killed.%d", i);
			th_child_own(pm_lock_open(cc, name, PM_O_CREATE),
			    (th_free_fn *)pm_lock_free);
			th_child_own(pm_shm_open(cc, NULL, 1 << 20, 0),
			    (th_free_fn *)pm_shm_free);
		}
		lock = pm_lock_open(cc, "killed.0", 0);
		if (lock == NULL || pm_lock_acquire(lock, 0) != PM_OK)
			th_child_exit(1);
		(void)!write(p[1], "k", 1);
		for (;;)
			pause();
	}
	close(p[1]);
	ck_assert_int_eq(read(p[0], &c, 1), 1);
	close(p[0]);
	kill(pid, SIGKILL);
	ck_assert_int_eq(th_wait_child(pid, HANG), -SIGKILL);
	/* named objects live on in pmd (one fd each), nothing else */
	lock = pm_lock_open(conn, "killed.0", 0);
	ck_assert_ptr_nonnull(lock);
	ck_assert_int_eq(pm_lock_acquire(lock, HANG), PM_EOWNERDEAD);
	ck_assert_int_eq(pm_lock_release(lock), PM_OK);
	pm_disconnect(conn);
	conn = NULL;
	th_pmd_settled(&pmd, base_pmd + 20, HANG);
	conn = pm_connect(pmd.sock);
	ck_assert_ptr_nonnull(conn);
	for (i = 0; i < 20; i++) {
		char name[32];

		snprintf(name, sizeof(name), "killed.%d", i);
		ck_assert_int_eq(pm_unlink(conn, name), PM_OK);
	}
	pm_disconnect(conn);
	conn = NULL;
	th_pmd_settled(&pmd, base_pmd, HANG);
}
END_TEST

static char conf[PATH_MAX];
static const char *conf_args[] = { "--config", conf, NULL };

static void
bounded_pmd(const char *text)
{
	FILE *f;

	snprintf(conf, sizeof(conf), "/tmp/pmd-objects-%d.conf", (int)getpid());
	ck_assert_ptr_nonnull(f = fopen(conf, "w"));
	fputs(text, f);
	fclose(f);
	start_pmd(conf_args);
	unlink(conf);
}

/* Each bound is PM_ELIMIT naming its key. */
#define CK_LIMIT(call, key) do {					\
	ck_assert_ptr_null(call);					\
	ck_assert_int_eq(pm_last_error(), PM_ELIMIT);			\
	ck_assert_msg(strstr(pm_last_message(), key) != NULL, "%s",	\
	    pm_last_message());						\
} while (0)

START_TEST(t_bounds)
{
	bounded_pmd("max_objects = 2\nmax_segment_size = 65536\n"
	    "max_object_bytes_per_uid = 100000\n");
	CK_LIMIT(pm_shm_open(conn, "big", 65537, PM_O_CREATE),
	    "max_segment_size");
	shm = pm_shm_open(conn, "a", 60000, PM_O_CREATE);
	ck_assert_ptr_nonnull(shm);
	CK_LIMIT(pm_shm_open(conn, "b", 50000, PM_O_CREATE),
	    "max_object_bytes_per_uid");
	lock = pm_lock_open(conn, "l", PM_O_CREATE);
	ck_assert_ptr_nonnull(lock);
	CK_LIMIT(pm_event_open(conn, "e", PM_O_CREATE), "max_objects");
	free_all();
	teardown();
	bounded_pmd("max_objects_per_uid = 1\nmax_object_bytes = 5000\n");
	CK_LIMIT(pm_shm_open(conn, "big", 8192, PM_O_CREATE),
	    "max_object_bytes");
	lock = pm_lock_open(conn, "l", PM_O_CREATE);
	ck_assert_ptr_nonnull(lock);
	CK_LIMIT(pm_event_open(conn, "e", PM_O_CREATE),
	    "max_objects_per_uid");
	/* opening what exists is no new object */
	event = (pm_event *)pm_lock_open(conn, "l", 0);
	ck_assert_ptr_nonnull(event);
	pm_lock_free((pm_lock *)event);
	event = NULL;
}
END_TEST

static void
setup_none(void)
{
}

static Suite *
objects_suite(void)
{
	Suite *s = suite_create("objects");
	TCase *tc;

	tc = th_tcase(s, "named", setup, teardown, 120);
	tcase_add_test(tc, t_open_rules);
	tcase_add_test(tc, t_kinds);
	tcase_add_test(tc, t_named_counter);
	tcase_add_test(tc, t_other_uid);
	tcase_add_test(tc, t_pmctl);
	tcase_add_test(tc, t_cycles);
	tcase_add_test(tc, t_killed_client);

	tc = th_tcase(s, "bounds", setup_none, teardown, 60);
	tcase_add_test(tc, t_bounds);
	return s;
}

int
main(void)
{
	return th_run_suite(objects_suite());
}
