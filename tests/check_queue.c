/*
 * check_queue.c - queues hosted by pmd, against a real pmd on a private
 * socket: maxsize and timeouts, FIFO across processes, qsize, joinable
 * queues, shutdown, closed handles, unlink, exclusive create, another
 * uid, a killed blocked getter, a 200,000-item loss check with 4 producer
 * and 4 consumer processes, item sizes, configured bounds, batches, and
 * pmctl's queue commands.
 */
#include <sys/types.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <check.h>
#include <errno.h>
#include <grp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "pmclient.h"

#define NOBODY		65534
#define LOSS_ITEMS	200000
#define LOSS_PROCS	4

static struct th_pmd pmd;
static pm_conn *conn;
static struct th_base baseline;	/* fds before connecting; pmd's then */
static char qmod[PATH_MAX];	/* qtasks.so */

/* The test's open queues (qopen, qfree): reachable from here while fake
 * clients are forked, so not lost in them, and freed by teardown if a
 * failed check left them. */
#define MAX_QUEUES	16
static pm_queue *queues[MAX_QUEUES];

/* A pmd with the settings conf (NULL: none) and a connection to it. */
static void
start_pmd(const char *conf)
{
	struct th_pmd_opts o = { .conf = conf };

	snprintf(qmod, sizeof(qmod), "%s/tests/qtasks.so", th_env("PM_BUILD"));
	conn = th_pmd_open(&pmd, &o, &baseline);
}

static void
setup(void)
{
	start_pmd(NULL);
}

static void
teardown(void)
{
	int i;

	for (i = 0; i < MAX_QUEUES; i++) {
		pm_queue_free(queues[i]);
		queues[i] = NULL;
	}
	th_pmd_close(&pmd, &conn, &baseline);
}

static pm_queue *
qopen(const char *name, long maxsize, int flags)
{
	pm_queue *q = pm_queue_open(conn, name, maxsize, flags);
	int i;

	ck_assert_msg(q != NULL, "open %s: %s", name, pm_last_message());
	for (i = 0; i < MAX_QUEUES && queues[i] != NULL; i++)
		;
	if (i == MAX_QUEUES)
		pm_queue_free(q);
	ck_assert_msg(i < MAX_QUEUES, "more than %d queues open", MAX_QUEUES);
	queues[i] = q;
	return q;
}

/* pm_queue_free of a queue from qopen. */
static void
qfree(pm_queue *q)
{
	int i;

	for (i = 0; i < MAX_QUEUES; i++)
		if (queues[i] == q)
			queues[i] = NULL;
	pm_queue_free(q);
}

static void
put_str(pm_queue *q, const char *s)
{
	int r = pm_queue_put(q, s, strlen(s), -1);

	ck_assert_msg(r == PM_OK, "put %s: %d %s", s, r, pm_last_message());
}

/* Gets one item (waiting up to 30 s) and compares it with s. */
static void
get_str(pm_queue *q, const char *s)
{
	pm_bytes b = { NULL, 0 };
	int r = pm_queue_get(q, &b, 30);

	ck_assert_msg(r == PM_OK, "get (want %s): %d %s", s, r,
	    pm_last_message());
	ck_assert_msg(b.len == strlen(s) && memcmp(b.data, s, b.len) == 0,
	    "got '%.*s', want '%s'", (int)b.len, (char *)b.data, s);
	pm_bytes_free(&b);
}

static pm_process *
start_task(const char *fn, const char *arg)
{
	pm_process *p;
	int r;

	p = pm_process_new(conn, qmod, fn, arg, strlen(arg));
	ck_assert_msg(p != NULL, "new %s: %s", fn, pm_last_message());
	r = pm_process_start(p);
	ck_assert_msg(r == PM_OK, "start %s: %s", fn, pm_last_message());
	return p;
}

static void
join_ok(pm_process *p)
{
	int code = -1, r;

	r = pm_process_join(p, 300);
	ck_assert_msg(r == PM_OK, "join: %d %s", r, pm_last_message());
	ck_assert_int_eq(pm_process_exitcode(p, &code), PM_OK);
	ck_assert_msg(code == 0, "task exited %d: %s", code,
	    pm_process_error(p) ? pm_process_error(p) : "");
}

/* A count from `pmctl queues --json` for queue name: getters, putters... */
static int
queue_field(const char *name, const char *field)
{
	char out[16384], key[300], *at, *f, *end;
	int r;

	r = th_pmctl(out, sizeof(out), "--socket", pmd.sock, "--json",
	    "queues", "-a", NULL);
	ck_assert_int_eq(r, 0);
	snprintf(key, sizeof(key), "\"name\": \"%s\"", name);
	if ((at = strstr(out, key)) == NULL)
		return -1;
	if ((end = strchr(at, '}')) != NULL)
		*end = '\0';
	snprintf(key, sizeof(key), "\"%s\": ", field);
	if ((f = strstr(at, key)) == NULL)
		return -1;
	return atoi(f + strlen(key));
}

/* A client process: connects, opens name, runs fn; exit code is fn's.
 * It has a connection of its own: the test's is not used in it. */
static pid_t
fork_client(const char *name, int (*fn)(pm_queue *, void *), void *ud)
{
	pm_conn *c;
	pm_queue *q;
	pid_t pid;

	pid = th_fork();
	if (pid == 0) {
		if ((c = pm_connect(pmd.sock)) == NULL)
			th_child_exit(100);
		th_child_own(c, th_free_conn);
		if ((q = pm_queue_open(c, name, 0, 0)) == NULL)
			th_child_exit(101);
		th_child_own(q, th_free_queue);
		th_child_exit(fn(q, ud));
	}
	return pid;
}

static int
wait_code(pid_t pid)
{
	int st;

	ck_assert_int_eq(waitpid(pid, &st, 0), pid);
	ck_assert(WIFEXITED(st));
	return WEXITSTATUS(st);
}

/* ---- the tests ---- */

START_TEST(t_maxsize)
{
	pm_queue *q = qopen("m6", 6, PM_Q_CREATE);
	double t0, dt;
	int i;

	ck_assert_int_eq(pm_queue_empty(q), 1);
	ck_assert_int_eq(pm_queue_full(q), 0);
	for (i = 0; i < 6; i++)
		put_str(q, "x");
	ck_assert_int_eq(pm_queue_full(q), 1);
	ck_assert_int_eq(pm_queue_empty(q), 0);
	ck_assert_int_eq(pm_queue_qsize(q), 6);
	t0 = th_now();
	ck_assert_int_eq(pm_queue_put(q, "y", 1, 0), PM_EFULL);
	dt = th_now() - t0;
	ck_assert_int_eq(pm_last_error(), PM_EFULL);
	ck_assert_msg(dt < 0.5, "timeout 0 blocked %.3f s", dt);
	t0 = th_now();
	ck_assert_int_eq(pm_queue_put(q, "y", 1, 0.1), PM_EFULL);
	dt = th_now() - t0;
	ck_assert_msg(dt >= 0.1 && dt < 5, "timeout 0.1 took %.3f s", dt);
	ck_assert_int_eq(pm_queue_qsize(q), 6);
	qfree(q);
}
END_TEST

START_TEST(t_empty_timeout)
{
	pm_queue *q = qopen("e", 0, PM_Q_CREATE);
	pm_bytes b = { NULL, 0 };
	double t0, dt;

	t0 = th_now();
	ck_assert_int_eq(pm_queue_get(q, &b, 0), PM_EEMPTY);
	dt = th_now() - t0;
	ck_assert_msg(dt < 0.5, "timeout 0 blocked %.3f s", dt);
	t0 = th_now();
	ck_assert_int_eq(pm_queue_get(q, &b, 0.2), PM_EEMPTY);
	dt = th_now() - t0;
	ck_assert_msg(dt >= 0.2 && dt < 5, "timeout 0.2 took %.3f s", dt);
	ck_assert_ptr_null(b.data);
	qfree(q);
}
END_TEST

START_TEST(t_fifo_processes)
{
	pm_queue *q = qopen("fifo", 0, PM_Q_CREATE);
	pm_process *p;
	char item[16];
	int i;

	for (i = 0; i < 10; i++) {
		snprintf(item, sizeof(item), "%d", i);
		put_str(q, item);
	}
	p = start_task("q_put_range", "fifo 10 10");
	join_ok(p);
	pm_process_free(p);
	for (i = 0; i < 20; i++) {
		snprintf(item, sizeof(item), "%d", i);
		get_str(q, item);
	}
	ck_assert_int_eq(pm_queue_empty(q), 1);
	qfree(q);
}
END_TEST

START_TEST(t_qsize)
{
	pm_queue *q = qopen("qs", 0, PM_Q_CREATE);

	ck_assert_int_eq(pm_queue_qsize(q), 0);
	put_str(q, "a");
	ck_assert_int_eq(pm_queue_qsize(q), 1);
	put_str(q, "b");
	ck_assert_int_eq(pm_queue_qsize(q), 2);
	get_str(q, "a");
	ck_assert_int_eq(pm_queue_qsize(q), 1);
	get_str(q, "b");
	ck_assert_int_eq(pm_queue_qsize(q), 0);
	qfree(q);
}
END_TEST

START_TEST(t_joinable)
{
	pm_queue *wq = qopen("work", 0, PM_Q_CREATE | PM_Q_JOINABLE);
	pm_queue *dq = qopen("done", 0, PM_Q_CREATE);
	pm_queue *plain = qopen("plain", 0, PM_Q_CREATE);
	pm_process *p[4];
	char item[16];
	int i;

	ck_assert_int_eq(pm_queue_join(wq, 0), PM_OK);	/* nothing put */
	ck_assert_int_eq(pm_queue_task_done(plain), PM_ESTATE);
	ck_assert_int_eq(pm_queue_join(plain, 0), PM_ESTATE);
	for (i = 0; i < 4; i++)
		p[i] = start_task("q_join_worker", "work done");
	for (i = 0; i < 10; i++) {
		snprintf(item, sizeof(item), "item%d", i);
		put_str(wq, item);
	}
	ck_assert_int_eq(pm_queue_join(wq, 0), PM_ETIMEDOUT);
	ck_assert_int_eq(pm_queue_join(wq, -1), PM_OK);
	/* each worker puts its item on done before task_done */
	ck_assert_int_eq(pm_queue_qsize(dq), 10);
	ck_assert_int_eq(pm_queue_qsize(wq), 0);
	for (i = 0; i < 4; i++)
		put_str(wq, "STOP");
	for (i = 0; i < 4; i++) {
		join_ok(p[i]);
		pm_process_free(p[i]);
	}
	ck_assert_int_eq(pm_queue_join(wq, 1), PM_OK);
	/* one more task_done than items got */
	ck_assert_int_eq(pm_queue_task_done(wq), PM_EINVAL);
	put_str(wq, "z");
	ck_assert_int_eq(pm_queue_task_done(wq), PM_EINVAL);	/* not got */
	get_str(wq, "z");
	ck_assert_int_eq(pm_queue_task_done(wq), PM_OK);
	ck_assert_int_eq(pm_queue_task_done(wq), PM_EINVAL);
	qfree(wq);
	qfree(dq);
	qfree(plain);
}
END_TEST

static int
get_expect_closed(pm_queue *q, void *ud)
{
	pm_bytes b;
	int r = pm_queue_get(q, &b, -1);

	(void)ud;
	return r == PM_ECLOSED ? 0 : 10;
}

static int
put_expect_closed(pm_queue *q, void *ud)
{
	int r = pm_queue_put(q, "p", 1, -1);

	(void)ud;
	return r == PM_ECLOSED ? 0 : 10;
}

START_TEST(t_shutdown_drain)
{
	pm_queue *q = qopen("drain", 0, PM_Q_CREATE);
	pm_queue *e = qopen("drain-empty", 0, PM_Q_CREATE);
	pm_bytes b;
	pid_t pid;

	put_str(q, "1");
	put_str(q, "2");
	ck_assert_int_eq(pm_queue_shutdown(q, 0), PM_OK);
	ck_assert_int_eq(pm_queue_put(q, "3", 1, -1), PM_ECLOSED);
	ck_assert_int_eq(pm_queue_qsize(q), 2);
	get_str(q, "1");
	get_str(q, "2");
	ck_assert_int_eq(pm_queue_get(q, &b, -1), PM_ECLOSED);
	ck_assert_int_eq(pm_queue_get(q, &b, 0), PM_ECLOSED);

	/* a getter blocked on an empty queue is released */
	pid = fork_client("drain-empty", get_expect_closed, NULL);
	TH_WAIT(queue_field("drain-empty", "getters") == 1, 20);
	ck_assert_int_eq(queue_field("drain-empty", "getters"), 1);
	ck_assert_int_eq(pm_queue_shutdown(e, 0), PM_OK);
	ck_assert_int_eq(wait_code(pid), 0);
	qfree(q);
	qfree(e);
}
END_TEST

START_TEST(t_shutdown_immediate)
{
	pm_queue *q = qopen("imm", 0, PM_Q_CREATE);
	pm_queue *e = qopen("imm-empty", 0, PM_Q_CREATE);
	pm_queue *f = qopen("imm-full", 1, PM_Q_CREATE);
	pm_bytes b, items[2] = { { (void *)(uintptr_t)"a", 1 },
	    { (void *)(uintptr_t)"b", 1 } };
	size_t got = 99;
	pid_t pg, pp;

	put_str(q, "1");
	put_str(q, "2");
	ck_assert_int_eq(pm_queue_shutdown(q, 1), PM_OK);
	ck_assert_int_eq(pm_queue_qsize(q), 0);
	ck_assert_int_eq(pm_queue_put(q, "3", 1, -1), PM_ECLOSED);
	ck_assert_int_eq(pm_queue_put(q, "3", 1, 0), PM_ECLOSED);
	ck_assert_int_eq(pm_queue_get(q, &b, -1), PM_ECLOSED);
	ck_assert_int_eq(pm_queue_get(q, &b, 0), PM_ECLOSED);
	ck_assert_int_eq(pm_queue_put_many(q, items, 2, -1), PM_ECLOSED);
	ck_assert_int_eq(pm_queue_get_many(q, items, 2, &got, -1), PM_ECLOSED);
	ck_assert_int_eq(got, 0);
	ck_assert_int_eq(pm_queue_shutdown(q, 0), PM_OK);	/* stays */
	ck_assert_int_eq(pm_queue_get(q, &b, 0), PM_ECLOSED);

	/* a blocked getter and a blocked putter are released */
	put_str(f, "full");
	pg = fork_client("imm-empty", get_expect_closed, NULL);
	pp = fork_client("imm-full", put_expect_closed, NULL);
	TH_WAIT(queue_field("imm-empty", "getters") == 1 &&
	    queue_field("imm-full", "putters") == 1, 20);
	ck_assert_int_eq(queue_field("imm-empty", "getters"), 1);
	ck_assert_int_eq(queue_field("imm-full", "putters"), 1);
	ck_assert_int_eq(pm_queue_shutdown(e, 1), PM_OK);
	ck_assert_int_eq(pm_queue_shutdown(f, 1), PM_OK);
	ck_assert_int_eq(wait_code(pg), 0);
	ck_assert_int_eq(wait_code(pp), 0);
	ck_assert_int_eq(pm_queue_qsize(f), 0);
	qfree(q);
	qfree(e);
	qfree(f);
}
END_TEST

START_TEST(t_close_unlink_excl)
{
	pm_queue *q = qopen("cu", 0, PM_Q_CREATE | PM_Q_EXCL);
	pm_queue *q2 = qopen("cu", 0, 0);
	pm_bytes b;

	ck_assert_ptr_null(pm_queue_open(conn, "cu", 0,
	    PM_Q_CREATE | PM_Q_EXCL));
	ck_assert_int_eq(pm_last_error(), PM_EEXIST);
	ck_assert_ptr_null(pm_queue_open(conn, "cu", 0, PM_Q_EXCL));
	ck_assert_int_eq(pm_last_error(), PM_EINVAL);
	ck_assert_ptr_null(pm_queue_open(conn, "", 0, PM_Q_CREATE));
	ck_assert_int_eq(pm_last_error(), PM_EINVAL);

	put_str(q, "kept");
	ck_assert_int_eq(pm_queue_close(q), PM_OK);
	ck_assert_int_eq(pm_queue_put(q, "x", 1, 0), PM_ECLOSED);
	ck_assert_int_eq(pm_queue_get(q, &b, 0), PM_ECLOSED);
	ck_assert_int_eq(pm_queue_qsize(q), PM_ECLOSED);
	ck_assert_int_eq(pm_queue_task_done(q), PM_ECLOSED);
	ck_assert_int_eq(pm_queue_join(q, 0), PM_ECLOSED);
	ck_assert_int_eq(pm_queue_shutdown(q, 0), PM_ECLOSED);
	/* the queue itself goes on */
	ck_assert_int_eq(pm_queue_qsize(q2), 1);

	ck_assert_int_eq(pm_queue_unlink(conn, "cu"), PM_OK);
	ck_assert_ptr_null(pm_queue_open(conn, "cu", 0, 0));
	ck_assert_int_eq(pm_last_error(), PM_ENOENT);
	ck_assert_int_eq(pm_queue_unlink(conn, "cu"), PM_ENOENT);
	/* a handle on the unlinked queue */
	ck_assert_int_eq(pm_queue_put(q2, "x", 1, 0), PM_ECLOSED);
	qfree(q);
	qfree(q2);
	/* the name is free again, for a new and empty queue */
	q = qopen("cu", 0, PM_Q_CREATE | PM_Q_EXCL);
	ck_assert_int_eq(pm_queue_qsize(q), 0);
	qfree(q);
}
END_TEST

/* Runs as nobody: private queue refused, shared one usable. */
static int
other_uid_client(void)
{
	pm_conn *c;
	pm_queue *q;

	if (setgroups(0, NULL) == -1 || setgid(NOBODY) == -1 ||
	    setuid(NOBODY) == -1)
		return 100;
	if ((c = pm_connect(pmd.sock)) == NULL)
		return 101;
	th_child_own(c, th_free_conn);
	q = pm_queue_open(c, "private", 0, 0);
	th_child_own(q, th_free_queue);
	if (q != NULL || pm_last_error() != PM_EPERM)
		return 102;
	q = pm_queue_open(c, "private", 0, PM_Q_CREATE);
	th_child_own(q, th_free_queue);
	if (q != NULL || pm_last_error() != PM_EEXIST)
		return 103;
	if ((q = pm_queue_open(c, "shared", 0, 0)) == NULL)
		return 104;
	th_child_own(q, th_free_queue);
	if (pm_queue_put(q, "from nobody", 11, 5) != PM_OK)
		return 105;
	if (pm_queue_unlink(c, "shared") != PM_EPERM)
		return 106;
	if (pm_queue_unlink(c, "private") != PM_EPERM)
		return 107;
	th_child_free(q);
	/* its own queue is private to it */
	if ((q = pm_queue_open(c, "nobodys", 0, PM_Q_CREATE)) == NULL)
		return 108;
	th_child_own(q, th_free_queue);
	th_child_free(q);
	th_child_free(c);
	return 0;
}

START_TEST(t_other_uid)
{
	pm_queue *priv, *shared, *theirs;
	pid_t pid;

	TH_NEED_ROOT();
	ck_assert_int_eq(chmod(pmd.dir, 0711), 0);
	ck_assert_int_eq(chmod(pmd.sock, 0666), 0);
	priv = qopen("private", 0, PM_Q_CREATE);
	shared = qopen("shared", 0, PM_Q_CREATE | PM_Q_SHARED);
	put_str(priv, "secret");
	pid = th_fork();
	if (pid == 0)
		th_child_exit(other_uid_client());
	ck_assert_int_eq(wait_code(pid), 0);
	get_str(shared, "from nobody");
	ck_assert_int_eq(pm_queue_qsize(priv), 1);
	/* root is admin: it may open and remove the other uid's queue */
	theirs = qopen("nobodys", 0, 0);
	ck_assert_int_eq(queue_field("nobodys", "owner"), NOBODY);
	ck_assert_int_eq(pm_queue_unlink(conn, "nobodys"), PM_OK);
	qfree(theirs);
	qfree(priv);
	qfree(shared);
}
END_TEST

static int
get_forever(pm_queue *q, void *ud)
{
	pm_bytes b;

	(void)ud;
	pm_queue_get(q, &b, -1);
	return 50;	/* killed before this */
}

static int
get_report(pm_queue *q, void *ud)
{
	int fd = *(int *)ud;
	pm_bytes b;

	if (pm_queue_get(q, &b, 60) != PM_OK)
		return 10;
	if (write(fd, b.data, b.len) != (ssize_t)b.len)
		return 11;
	pm_bytes_free(&b);
	return 0;
}

START_TEST(t_killed_getter)
{
	pm_queue *q = qopen("kg", 0, PM_Q_CREATE);
	char buf[64];
	ssize_t n;
	pid_t dead, alive;
	int fds[2], st, round;

	for (round = 0; round < 3; round++) {
		ck_assert_int_eq(pipe(fds), 0);
		dead = fork_client("kg", get_forever, NULL);
		TH_WAIT(queue_field("kg", "getters") == 1, 20);
		ck_assert_int_eq(queue_field("kg", "getters"), 1);
		alive = fork_client("kg", get_report, &fds[1]);
		close(fds[1]);
		TH_WAIT(queue_field("kg", "getters") == 2, 20);
		ck_assert_int_eq(queue_field("kg", "getters"), 2);
		/* the first in line dies; pmd may not have noticed yet */
		kill(dead, SIGKILL);
		ck_assert_int_eq(waitpid(dead, &st, 0), dead);
		ck_assert(WIFSIGNALED(st));
		put_str(q, "survivor");
		n = read(fds[0], buf, sizeof(buf) - 1);
		ck_assert_int_eq(n, 8);
		buf[n] = '\0';
		ck_assert_str_eq(buf, "survivor");
		ck_assert_int_eq(wait_code(alive), 0);
		close(fds[0]);
		ck_assert_int_eq(pm_queue_qsize(q), 0);
		TH_WAIT(queue_field("kg", "getters") == 0, 20);
		ck_assert_int_eq(queue_field("kg", "getters"), 0);
	}
	qfree(q);
}
END_TEST

START_TEST(t_loss)
{
	static const unsigned pbatch[LOSS_PROCS] = { 1, 100, 7, 1000 };
	static const unsigned cbatch[LOSS_PROCS] = { 1, 64, 3, 500 };
	pm_queue *q = qopen("loss", 1000, PM_Q_CREATE);
	pm_process *prod[LOSS_PROCS], *cons[LOSS_PROCS];
	uint8_t all[(LOSS_ITEMS + 7) / 8];
	uint32_t stop = 0xffffffffu;
	pm_bytes b;
	char arg[128];
	size_t k;
	int i, per = LOSS_ITEMS / LOSS_PROCS, missing = 0;

	memset(all, 0, sizeof(all));
	for (i = 0; i < LOSS_PROCS; i++) {
		snprintf(arg, sizeof(arg), "loss %d %u", LOSS_ITEMS, cbatch[i]);
		cons[i] = start_task("q_consume", arg);
	}
	for (i = 0; i < LOSS_PROCS; i++) {
		snprintf(arg, sizeof(arg), "loss %d %d %u", i * per, per,
		    pbatch[i]);
		prod[i] = start_task("q_produce", arg);
	}
	for (i = 0; i < LOSS_PROCS; i++) {
		join_ok(prod[i]);
		pm_process_free(prod[i]);
	}
	for (i = 0; i < LOSS_PROCS; i++)
		ck_assert_int_eq(pm_queue_put(q, &stop, sizeof(stop), -1),
		    PM_OK);
	for (i = 0; i < LOSS_PROCS; i++) {
		join_ok(cons[i]);
		ck_assert_int_eq(pm_process_result(cons[i], &b), PM_OK);
		ck_assert_uint_eq(b.len, sizeof(all));
		for (k = 0; k < sizeof(all); k++) {
			uint8_t v = ((uint8_t *)b.data)[k];

			ck_assert_msg((all[k] & v) == 0, "an item in byte "
			    "%zu reached two consumers", k);
			all[k] |= v;
		}
		pm_bytes_free(&b);
		pm_process_free(cons[i]);
	}
	for (k = 0; k < LOSS_ITEMS; k++)
		if (!(all[k / 8] & (1u << (k % 8))))
			missing++;
	ck_assert_msg(missing == 0, "%d of %d items lost", missing,
	    LOSS_ITEMS);
	ck_assert_int_eq(pm_queue_qsize(q), 0);
	qfree(q);
}
END_TEST

/* A put and a get of an item of len bytes (a pattern) come back intact. */
static void
round_trip(pm_queue *q, size_t len)
{
	pm_bytes b = { NULL, 0 };
	unsigned char *d;
	size_t i;

	ck_assert_ptr_nonnull(d = malloc(len ? len : 1));
	for (i = 0; i < len; i++)
		d[i] = (unsigned char)(i * 7 + 3 + len);
	ck_assert_msg(pm_queue_put(q, d, len, 0) == PM_OK, "put %zu: %s",
	    len, pm_last_message());
	ck_assert_int_eq(pm_queue_get(q, &b, 0), PM_OK);
	ck_assert_uint_eq(b.len, len);
	ck_assert(len == 0 || memcmp(b.data, d, len) == 0);
	pm_bytes_free(&b);
	free(d);
}

/* Items of 64 KiB and more travel as memfds: far above a frame, mixed with
 * small ones in one batch, in order; pmd keeps no fd once they are got. */
START_TEST(t_big_items)
{
	pm_queue *q = qopen("big", 0, PM_Q_CREATE);
	size_t huge = th_valgrind() ? (20u << 20) : (100u * 1000 * 1000);
	size_t sizes[] = { (64u << 10) - 1, 64u << 10, (64u << 10) + 1,
	    1u << 20, 17u << 20, huge };
	pm_bytes in[6], out[8];
	size_t i, got = 0;
	int fds0 = th_fd_count(pmd.pid);

	for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++)
		round_trip(q, sizes[i]);
	/* pmd closes a sent fd just after sendmsg: the reader may be first */
	TH_WAIT(th_fd_count(pmd.pid) == fds0, 10);
	ck_assert_int_eq(th_fd_count(pmd.pid), fds0);
	for (i = 0; i < 6; i++) {
		in[i].len = i % 2 ? (70u << 10) + i : i;
		ck_assert_ptr_nonnull(in[i].data = malloc(in[i].len + 1));
		memset(in[i].data, 'a' + (int)i, in[i].len);
	}
	ck_assert_int_eq(pm_queue_put_many(q, in, 6, 0), PM_OK);
	ck_assert_int_eq(th_fd_count(pmd.pid), fds0 + 3);	/* held */
	ck_assert_int_eq(pm_queue_get_many(q, out, 8, &got, 0), PM_OK);
	ck_assert_uint_eq(got, 6);
	for (i = 0; i < 6; i++) {
		ck_assert_uint_eq(out[i].len, in[i].len);
		ck_assert(memcmp(out[i].data, in[i].data, in[i].len) == 0);
		pm_bytes_free(&out[i]);
		free(in[i].data);
	}
	TH_WAIT(th_fd_count(pmd.pid) == fds0, 10);
	ck_assert_int_eq(th_fd_count(pmd.pid), fds0);
	qfree(q);
}
END_TEST

START_TEST(t_item_sizes)
{
	pm_queue *q = qopen("sizes", 0, PM_Q_CREATE);
	size_t max = 4u << 20;		/* max_item_size in this pmd */
	pm_bytes b = { NULL, 0 };
	unsigned char *big;
	size_t i;

	ck_assert_int_eq(pm_queue_put(q, NULL, 0, 0), PM_OK);
	ck_assert_int_eq(pm_queue_put(q, "", 0, 0), PM_OK);
	for (i = 0; i < 2; i++) {
		ck_assert_int_eq(pm_queue_get(q, &b, 0), PM_OK);
		ck_assert_uint_eq(b.len, 0);
		pm_bytes_free(&b);
	}
	ck_assert_ptr_nonnull(big = malloc(max + 1));
	for (i = 0; i <= max; i++)
		big[i] = (unsigned char)(i * 7 + 3);
	ck_assert_int_eq(pm_queue_put(q, big, max, 0), PM_OK);
	ck_assert_int_eq(pm_queue_put(q, big, max + 1, 0), PM_ELIMIT);
	ck_assert_ptr_nonnull(strstr(pm_last_message(), "max_item_size"));
	ck_assert_ptr_nonnull(strstr(pm_last_message(), "4194304"));
	ck_assert_int_eq(pm_queue_qsize(q), 1);
	ck_assert_int_eq(pm_queue_get(q, &b, 0), PM_OK);
	ck_assert_uint_eq(b.len, max);
	ck_assert(memcmp(b.data, big, max) == 0);
	pm_bytes_free(&b);
	free(big);
	ck_assert_int_eq(pm_queue_qsize(q), 0);
	put_str(q, "still fine");
	get_str(q, "still fine");
	qfree(q);
}
END_TEST

START_TEST(t_batches)
{
	pm_queue *q = qopen("batch", 10, PM_Q_CREATE);
	pm_bytes in[8], out[16];
	char bufs[8][8];
	size_t got = 0, i;

	for (i = 0; i < 8; i++) {
		snprintf(bufs[i], sizeof(bufs[i]), "b%zu", i);
		in[i].data = bufs[i];
		in[i].len = strlen(bufs[i]);
	}
	ck_assert_int_eq(pm_queue_put_many(q, in, 8, 0), PM_OK);
	/* all or nothing: 8 + 3 > 10 */
	ck_assert_int_eq(pm_queue_put_many(q, in, 3, 0), PM_EFULL);
	ck_assert_int_eq(pm_queue_put_many(q, in, 3, 0.05), PM_EFULL);
	ck_assert_int_eq(pm_queue_qsize(q), 8);
	/* an empty batch */
	ck_assert_int_eq(pm_queue_put_many(q, out, 0, 0), PM_EINVAL);
	ck_assert_int_eq(pm_queue_get_many(q, out, 5, &got, 0), PM_OK);
	ck_assert_uint_eq(got, 5);
	for (i = 0; i < 5; i++) {
		ck_assert_int_eq(memcmp(out[i].data, bufs[i], out[i].len), 0);
		pm_bytes_free(&out[i]);
	}
	ck_assert_int_eq(pm_queue_get_many(q, out, 16, &got, 0), PM_OK);
	ck_assert_uint_eq(got, 3);
	for (i = 0; i < 3; i++) {
		ck_assert_int_eq(memcmp(out[i].data, bufs[5 + i], out[i].len),
		    0);
		pm_bytes_free(&out[i]);
	}
	ck_assert_int_eq(pm_queue_get_many(q, out, 16, &got, 0), PM_EEMPTY);
	ck_assert_uint_eq(got, 0);
	qfree(q);
}
END_TEST

static int
put_blocked(pm_queue *q, void *ud)
{
	(void)ud;
	return pm_queue_put(q, "late", 4, -1) == PM_OK ? 0 : 10;
}

/* Parked requests are served in arrival order, in the daemon. */
START_TEST(t_blocking_order)
{
	pm_queue *q = qopen("order", 1, PM_Q_CREATE);
	pid_t p1;

	put_str(q, "first");
	p1 = fork_client("order", put_blocked, NULL);
	TH_WAIT(queue_field("order", "putters") == 1, 20);
	ck_assert_int_eq(queue_field("order", "putters"), 1);
	ck_assert_int_eq(pm_queue_put(q, "mine", 4, 0), PM_EFULL);
	get_str(q, "first");	/* makes room: the parked put goes in */
	ck_assert_int_eq(wait_code(p1), 0);
	get_str(q, "late");
	ck_assert_int_eq(queue_field("order", "puts"), 2);
	ck_assert_int_eq(queue_field("order", "gets"), 2);
	qfree(q);
}
END_TEST

START_TEST(t_pmctl)
{
	char out[4096];
	pm_queue *q;
	int r;

	r = th_pmctl(out, sizeof(out), "--socket", pmd.sock, "queue", "put",
	    "cli", "hello", NULL);
	ck_assert_int_eq(r, 1);			/* no such queue */
	r = th_pmctl(out, sizeof(out), "--socket", pmd.sock, "queue", "put",
	    "--create", "cli", "hello", NULL);
	ck_assert_int_eq(r, 0);
	q = qopen("cli", 0, 0);
	put_str(q, "two");
	r = th_pmctl(out, sizeof(out), "--socket", pmd.sock, "--json",
	    "queues", NULL);
	ck_assert_int_eq(r, 0);
	ck_assert_msg(strstr(out, "\"name\": \"cli\"") != NULL &&
	    strstr(out, "\"size\": 2") != NULL, "queues: %s", out);
	r = th_pmctl(out, sizeof(out), "--socket", pmd.sock, "queue", "get",
	    "cli", NULL);
	ck_assert_int_eq(r, 0);
	ck_assert_str_eq(out, "hello\n");
	r = th_pmctl(out, sizeof(out), "--socket", pmd.sock, "--json",
	    "queue", "get", "cli", NULL);
	ck_assert_int_eq(r, 0);
	ck_assert_msg(strstr(out, "\"item\": \"two\"") != NULL, "%s", out);
	r = th_pmctl(out, sizeof(out), "--socket", pmd.sock, "queue", "get",
	    "--timeout", "0.2", "cli", NULL);
	ck_assert_int_eq(r, 1);			/* empty */
	r = th_pmctl(out, sizeof(out), "--socket", pmd.sock, "queue", "get",
	    NULL);
	ck_assert_int_eq(r, 2);			/* usage */
	r = th_pmctl(out, sizeof(out), "--socket", pmd.sock, "queue", "frob",
	    "cli", NULL);
	ck_assert_int_eq(r, 2);
	r = th_pmctl(out, sizeof(out), "--socket", pmd.sock, "queue", "rm",
	    "cli", NULL);
	ck_assert_int_eq(r, 0);
	r = th_pmctl(out, sizeof(out), "--socket", pmd.sock, "queue", "rm",
	    "cli", NULL);
	ck_assert_int_eq(r, 1);
	r = th_pmctl(out, sizeof(out), "--socket", pmd.sock, "--json",
	    "queues", NULL);
	ck_assert_int_eq(r, 0);
	ck_assert_str_eq(out, "[ ]\n");		/* an empty JSON array */
	r = th_pmctl(out, sizeof(out), "--socket", "/nonexistent/pmd.sock",
	    "queues", NULL);
	ck_assert_int_eq(r, 3);
	qfree(q);
}
END_TEST

/* ---- configured bounds ---- */

static void
setup_bounds(void)
{
	/* the bounds in all: each uid's share is set to all of it (a root
	 * pmd gives each uid a part by default) */
	start_pmd("max_queues = 3\nmax_queue_items = 100\n"
	    "max_queue_bytes = 10000\nmax_item_size = 1000\n"
	    "max_total_queue_bytes = 15000\nmax_queues_per_uid = 3\n"
	    "max_total_queue_bytes_per_uid = 15000\n");
}

static void
setup_items(void)
{
	start_pmd("max_item_size = 4194304\nmax_queue_fd_items = 2\n"
	    "max_queue_fd_items_per_uid = 2\n");
}

/* max_queue_fd_items bounds the memfd items pmd holds. */
START_TEST(t_fd_items_bound)
{
	pm_queue *q = qopen("fdb", 0, PM_Q_CREATE);
	size_t len = 100u << 10;
	pm_bytes b;
	char *d;

	ck_assert_ptr_nonnull(d = calloc(1, len));
	ck_assert_int_eq(pm_queue_put(q, d, len, 0), PM_OK);
	ck_assert_int_eq(pm_queue_put(q, d, len, 0), PM_OK);
	ck_assert_int_eq(pm_queue_put(q, d, len, 0), PM_ELIMIT);
	ck_assert_ptr_nonnull(strstr(pm_last_message(),
	    "max_queue_fd_items"));
	ck_assert_int_eq(pm_queue_put(q, d, 1000, 0), PM_OK);  /* inline */
	ck_assert_int_eq(pm_queue_get(q, &b, 0), PM_OK);
	pm_bytes_free(&b);
	ck_assert_int_eq(pm_queue_put(q, d, len, 0), PM_OK);
	ck_assert_int_eq(pm_queue_qsize(q), 3);
	free(d);
	/* unlinked, its memfds are closed: pmd is back to its fds */
	ck_assert_int_eq(pm_queue_unlink(conn, "fdb"), PM_OK);
	qfree(q);
}
END_TEST

START_TEST(t_bounds)
{
	pm_queue *a, *b, *c;
	char item[1001];
	int i;

	memset(item, 'x', sizeof(item));
	a = qopen("a", 0, PM_Q_CREATE);
	b = qopen("b", 0, PM_Q_CREATE);
	c = qopen("c", 0, PM_Q_CREATE);
	ck_assert_ptr_null(pm_queue_open(conn, "d", 0, PM_Q_CREATE));
	ck_assert_int_eq(pm_last_error(), PM_ELIMIT);
	ck_assert_ptr_nonnull(strstr(pm_last_message(), "max_queues"));
	ck_assert_ptr_null(pm_queue_open(conn, "b", 101, PM_Q_CREATE |
	    PM_Q_EXCL));
	ck_assert_int_eq(pm_last_error(), PM_EEXIST);
	ck_assert_int_eq(pm_queue_unlink(conn, "c"), PM_OK);
	qfree(c);
	ck_assert_ptr_null(pm_queue_open(conn, "c", 101, PM_Q_CREATE));
	ck_assert_int_eq(pm_last_error(), PM_ELIMIT);

	/* item size */
	ck_assert_int_eq(pm_queue_put(a, item, 1000, 0), PM_OK);
	ck_assert_int_eq(pm_queue_put(a, item, 1001, 0), PM_ELIMIT);
	/* items per queue: an unbounded queue fills up at the bound */
	for (i = 1; i < 100; i++)
		ck_assert_int_eq(pm_queue_put(a, "i", 1, 0), PM_OK);
	ck_assert_int_eq(pm_queue_put(a, "i", 1, 0), PM_EFULL);
	ck_assert_int_eq(pm_queue_put(a, "i", 1, 0.05), PM_EFULL);
	ck_assert_int_eq(pm_queue_qsize(a), 100);
	/* bytes per queue */
	for (i = 0; i < 10; i++)
		ck_assert_int_eq(pm_queue_put(b, item, 1000, 0), PM_OK);
	ck_assert_int_eq(pm_queue_put(b, item, 1, 0), PM_EFULL);
	/* bytes in all: a holds 1099, b 10000; c gets 3000 more, not 4000 */
	c = qopen("c", 0, PM_Q_CREATE);
	for (i = 0; i < 3; i++)
		ck_assert_int_eq(pm_queue_put(c, item, 1000, 0), PM_OK);
	ck_assert_int_eq(pm_queue_put(c, item, 1000, -1), PM_ELIMIT);
	ck_assert_ptr_nonnull(strstr(pm_last_message(),
	    "max_total_queue_bytes"));
	ck_assert_int_eq(pm_queue_qsize(c), 3);
	qfree(a);
	qfree(b);
	qfree(c);
}
END_TEST

static Suite *
queue_suite(void)
{
	Suite *s = suite_create("queue");
	TCase *tc;

	tc = th_tcase(s, "basic", setup, teardown, 120);
	tcase_add_test(tc, t_maxsize);
	tcase_add_test(tc, t_empty_timeout);
	tcase_add_test(tc, t_fifo_processes);
	tcase_add_test(tc, t_qsize);
	tcase_add_test(tc, t_joinable);
	tcase_add_test(tc, t_shutdown_drain);
	tcase_add_test(tc, t_shutdown_immediate);
	tcase_add_test(tc, t_close_unlink_excl);
	tcase_add_test(tc, t_other_uid);
	tcase_add_test(tc, t_killed_getter);
	tcase_add_test(tc, t_big_items);
	tcase_add_test(tc, t_batches);
	tcase_add_test(tc, t_blocking_order);
	tcase_add_test(tc, t_pmctl);

	tc = th_tcase(s, "bounds", setup_bounds, teardown, 60);
	tcase_add_test(tc, t_bounds);

	tc = th_tcase(s, "items", setup_items, teardown, 60);
	tcase_add_test(tc, t_item_sizes);
	tcase_add_test(tc, t_fd_items_bound);

	tc = th_tcase(s, "loss", setup, teardown, 600);
	tcase_add_test(tc, t_loss);
	return s;
}

int
main(void)
{
	return th_run_suite(queue_suite());
}
