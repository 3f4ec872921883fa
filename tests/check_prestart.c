/*
 * check_prestart.c - pre-started workers: a start takes an idle worker
 * (its pid was an idle one's), which serves that one request and is
 * replaced by a new one, never reused; the count in pmctl status; an
 * idle worker killed, the forker killed, pmd stopped with idle workers
 * around; none with --prestart 0.  And the join on the worker's own exit
 * report: exit codes, results, rusage from pmd's report that follows,
 * and a killed worker's -signo from pmd.  Workers a client claims ahead:
 * a start on one is a frame on a channel the client holds, bounded per
 * uid; dropped when the client disconnects or dies, leaving nothing.
 */
#include <sys/types.h>
#include <sys/wait.h>

#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "pmclient.h"

#define NIDLE		3
#define HANG		20.0

static struct th_pmd pmd;
static pm_conn *conn;
static int base_self;

static void
setup(void)
{
	const char *args[] = { "--prestart", "3", NULL };

	base_self = th_fd_count(0);
	ck_assert_int_eq(th_pmd_start(&pmd, args), 0);
	ck_assert_ptr_nonnull(conn = pm_connect(pmd.sock));
}

static void
teardown(void)
{
	pm_disconnect(conn);
	conn = NULL;
	ck_assert_int_eq(th_pmd_stop(&pmd), 0);
	ck_assert_int_eq(th_fd_count(0), base_self);
}

/* The pids of pmd's children named comm; their number. */
static int
comm_pids(const char *comm, pid_t *pids, int max)
{
	pid_t kids[64];
	char path[64], name[32];
	int n, i, k = 0;
	FILE *f;

	n = th_children(pmd.pid, kids, 64);
	for (i = 0; i < n && i < 64; i++) {
		snprintf(path, sizeof(path), "/proc/%d/comm", (int)kids[i]);
		if ((f = fopen(path, "re")) == NULL)
			continue;
		if (fgets(name, sizeof(name), f) != NULL &&
		    strncmp(name, comm, strlen(comm)) == 0 &&
		    name[strlen(comm)] == '\n' && k < max)
			pids[k++] = kids[i];
		fclose(f);
	}
	return k;
}

/* Idle: pre-started, not claimed (a claimed one is named pmd-worker). */
static int
idle_pids(pid_t *pids, int max)
{
	return comm_pids("pmd-idle", pids, max);
}

static int
has_pid(const pid_t *pids, int n, pid_t pid)
{
	int i;

	for (i = 0; i < n; i++)
		if (pids[i] == pid)
			return 1;
	return 0;
}

/* A number from pmctl status --json. */
static long
status_num(const char *key)
{
	char out[4096], pat[64], *p;

	ck_assert_int_eq(th_pmctl(out, sizeof(out), "--socket", pmd.sock,
	    "--json", "status", NULL), 0);
	snprintf(pat, sizeof(pat), "\"%s\": ", key);
	ck_assert_msg((p = strstr(out, pat)) != NULL, "no %s in %s", key, out);
	return atol(p + strlen(pat));
}

static pm_process *
run(const char *fn, int *code)
{
	pm_process *p;

	ck_assert_ptr_nonnull(p = pm_process_new(conn,
	    th_module(), fn, NULL, 0));
	ck_assert_int_eq(pm_process_start(p), PM_OK);
	ck_assert_int_eq(pm_process_join(p, HANG), PM_OK);
	ck_assert_int_eq(pm_process_exitcode(p, code), PM_OK);
	return p;
}

/* A start is a hand-off to an idle worker; a new one takes its place. */
START_TEST(t_handoff)
{
	pid_t before[8], after[8], pid;
	pm_process *p;
	int code, n, ok;

	ck_assert_int_eq(idle_pids(before, 8), NIDLE);
	ck_assert_int_eq(status_num("idle_workers"), NIDLE);
	ck_assert_int_eq(status_num("prestart_workers"), NIDLE);
	p = run("noop", &code);
	pid = pm_process_pid(p);
	ck_assert_int_eq(code, 0);
	ck_assert_msg(has_pid(before, NIDLE, pid), "pid %d was not idle",
	    (int)pid);
	pm_process_free(p);
	/* topped up again (the client may claim some meanwhile: counted
	 * by pmd, not here) */
	TH_WAIT((ok = !th_pid_alive(pid) && status_num("idle_workers") ==
	    NIDLE), HANG);
	ck_assert(ok);		/* it served once, and ended */
	n = idle_pids(after, 8);
	ck_assert(!has_pid(after, n, pid));
	ck_assert_int_ge(status_num("prestart_claimed"), 1);
	TH_WAIT(th_zombies(pmd.pid) == 0, HANG);
	ck_assert_int_eq(th_zombies(pmd.pid), 0);
}
END_TEST

/* More starts at once than idle workers: the rest are forked. */
START_TEST(t_more_than_idle)
{
	pm_process *p[NIDLE + 3];
	pid_t idle[8];
	int i, code, taken = 0, n, ok;

	n = idle_pids(idle, 8);
	for (i = 0; i < NIDLE + 3; i++) {
		ck_assert_ptr_nonnull(p[i] = pm_process_new(conn,
		    th_module(), "ret7", NULL, 0));
		ck_assert_int_eq(pm_process_start(p[i]), PM_OK);
		taken += has_pid(idle, n, pm_process_pid(p[i]));
	}
	for (i = 0; i < NIDLE + 3; i++) {
		ck_assert_int_eq(pm_process_join(p[i], HANG), PM_OK);
		ck_assert_int_eq(pm_process_exitcode(p[i], &code), PM_OK);
		ck_assert_int_eq(code, 7);
		pm_process_free(p[i]);
	}
	ck_assert_int_ge(taken, 1);
	ck_assert_int_le(taken, NIDLE);
	TH_WAIT((ok = status_num("idle_workers") == NIDLE &&
	    th_zombies(pmd.pid) == 0), HANG);
	ck_assert(ok);
}
END_TEST

/* Joined on the worker's own word: codes, results, errors; a task that
 * calls exit() or is killed is settled by pmd's report. */
START_TEST(t_exit_reports)
{
	pm_process *p;
	pm_rusage ru;
	pm_bytes r;
	int code;

	p = run("ret7", &code);
	ck_assert_int_eq(code, 7);
	ck_assert_int_eq(pm_process_result(p, &r), PM_ENOENT);
	/* the rusage is pmd's, which reaped it */
	ck_assert_int_eq(pm_process_rusage(p, &ru), PM_OK);
	ck_assert_int_gt(ru.maxrss_kb, 0);
	ck_assert(!pm_process_is_alive(p));
	pm_process_free(p);

	p = run("fail", &code);
	ck_assert_int_eq(code, 1);
	ck_assert_ptr_nonnull(pm_process_error(p));
	ck_assert_ptr_nonnull(strstr(pm_process_error(p), "purpose"));
	pm_process_free(p);

	p = run("exit8", &code);
	ck_assert_int_eq(code, 8);
	pm_process_free(p);

	p = run("segv", &code);
	ck_assert_int_eq(code, -SIGSEGV);
	pm_process_free(p);
}
END_TEST

/* An idle worker killed is reaped and replaced. */
START_TEST(t_idle_killed)
{
	pid_t idle[8], now[8];
	int code;

	ck_assert_int_eq(idle_pids(idle, 8), NIDLE);
	ck_assert_int_eq(kill(idle[0], SIGKILL), 0);
	TH_WAIT(!th_pid_alive(idle[0]) && idle_pids(now, 8) == NIDLE &&
	    !has_pid(now, NIDLE, idle[0]) && th_zombies(pmd.pid) == 0, HANG);
	ck_assert_int_eq(idle_pids(now, 8), NIDLE);
	ck_assert(!has_pid(now, NIDLE, idle[0]));
	ck_assert_int_eq(th_zombies(pmd.pid), 0);
	pm_process_free(run("ret7", &code));
	ck_assert_int_eq(code, 7);
}
END_TEST

/* Idle workers are the broker's children: the forker's death leaves
 * them serving, and the new forker tops them up. */
START_TEST(t_forker_killed)
{
	pid_t forker = th_pmd_forker(&pmd), idle[8];
	int code, i, ok;

	ck_assert_int_gt(forker, 0);
	ck_assert_int_eq(idle_pids(idle, 8), NIDLE);
	ck_assert_int_eq(kill(forker, SIGKILL), 0);
	TH_WAIT(th_pmd_forker(&pmd) != forker && th_pmd_forker(&pmd) > 0,
	    HANG);
	for (i = 0; i < NIDLE + 1; i++) {
		pm_process_free(run("ret7", &code));
		ck_assert_int_eq(code, 7);
	}
	TH_WAIT((ok = status_num("idle_workers") == NIDLE &&
	    th_zombies(pmd.pid) == 0), HANG);
	ck_assert(ok);
	for (i = 0; i < NIDLE; i++)
		ck_assert(!th_pid_alive(idle[i]));
}
END_TEST

/* Every pid among pmd's children now; their number. */
static int
kids(pid_t *pids, int max)
{
	return th_children(pmd.pid, pids, max);
}

/* After a start, the client claims workers ahead; the next start runs
 * on one of them: it existed before the start, claimed (no longer idle,
 * running nothing: nothing else runs here). */
START_TEST(t_claimed)
{
	pid_t before[64];
	pm_process *p;
	long claimed;
	int code, n = 0, i;

	for (i = 0; i < 2; i++) {	/* the second start's reply brings
					 * the claim's at the latest */
		pm_process_free(run("ret7", &code));
		ck_assert_int_eq(code, 7);
	}
	/* the claimed ones are the children named pmd-worker now */
	TH_WAIT((claimed = status_num("claimed_workers")) >= 1 &&
	    (n = comm_pids("pmd-worker", before, 64)) == claimed, HANG);
	ck_assert_int_ge(claimed, 1);
	ck_assert_int_le(claimed, 4);		/* prestart_workers_per_uid */
	ck_assert_int_eq(n, claimed);
	ck_assert_ptr_nonnull(p = pm_process_new(conn, th_module(), "ret7",
	    NULL, 0));
	ck_assert_int_eq(pm_process_start(p), PM_OK);
	ck_assert_msg(has_pid(before, n, pm_process_pid(p)), "pid %d was not "
	    "claimed", (int)pm_process_pid(p));
	ck_assert_int_eq(pm_process_join(p, HANG), PM_OK);
	ck_assert_int_eq(pm_process_exitcode(p, &code), PM_OK);
	ck_assert_int_eq(code, 7);
	pm_process_free(p);
}
END_TEST

/* A claimed worker that started is pmd's like any other: listed with
 * its name and target, and ended with its client when daemonic. */
START_TEST(t_claimed_listed_daemonic)
{
	pid_t before[64], pid;
	char out[8192], ps[32];
	pm_process *p;
	pm_conn *c;
	long claimed;
	int code, i, n = 0;

	ck_assert_ptr_nonnull(c = pm_connect(pmd.sock));
	for (i = 0; i < 2; i++) {
		ck_assert_ptr_nonnull(p = pm_process_new(c, th_module(),
		    "ret7", NULL, 0));
		ck_assert_int_eq(pm_process_start(p), PM_OK);
		ck_assert_int_eq(pm_process_join(p, HANG), PM_OK);
		ck_assert_int_eq(pm_process_exitcode(p, &code), PM_OK);
		pm_process_free(p);
	}
	TH_WAIT((claimed = status_num("claimed_workers")) >= 1 &&
	    (n = comm_pids("pmd-worker", before, 64)) == claimed, HANG);
	ck_assert_int_ge(claimed, 1);
	ck_assert_ptr_nonnull(p = pm_process_new(c, th_module(),
	    "wait_forever", NULL, 0));
	ck_assert_int_eq(pm_process_set_name(p, "claimed-one"), PM_OK);
	ck_assert_int_eq(pm_process_set_daemon(p, 1), PM_OK);
	ck_assert_int_eq(pm_process_start(p), PM_OK);
	pid = pm_process_pid(p);
	ck_assert(has_pid(before, n, pid));
	snprintf(ps, sizeof(ps), "%d", (int)pid);
	TH_WAIT(th_pmctl(out, sizeof(out), "--socket", pmd.sock, "ps",
	    NULL) == 0 && strstr(out, "claimed-one") != NULL, HANG);
	ck_assert_ptr_nonnull(strstr(out, ps));
	ck_assert_ptr_nonnull(strstr(out, "claimed-one"));
	ck_assert_ptr_nonnull(strstr(out, "wait_forever"));
	pm_process_free(p);
	pm_disconnect(c);		/* a daemonic worker ends with it */
	TH_WAIT(!th_pid_alive(pid) && status_num("claimed_workers") == 0,
	    HANG);
	ck_assert(!th_pid_alive(pid));
	ck_assert_int_eq(status_num("claimed_workers"), 0);
}
END_TEST

/* A start whose worker cannot start (no such function) on a claimed
 * worker fails as through pmd; the next works. */
START_TEST(t_claimed_errors)
{
	pm_process *p;
	int code, i;

	for (i = 0; i < 2; i++)
		pm_process_free(run("ret7", &code));
	TH_WAIT(status_num("claimed_workers") >= 1, HANG);
	ck_assert_ptr_nonnull(p = pm_process_new(conn, th_module(), "nosuch",
	    NULL, 0));
	ck_assert_int_eq(pm_process_start(p), PM_ENOENT);
	ck_assert_ptr_nonnull(strstr(pm_last_message(), "nosuch"));
	pm_process_free(p);
	pm_process_free(run("ret7", &code));
	ck_assert_int_eq(code, 7);
}
END_TEST

/* Dropped with the connection: the claimed workers end, pmd holds no
 * more fds than before, no zombie. */
START_TEST(t_claims_dropped)
{
	int code, i, base = th_fd_count(pmd.pid);
	pm_conn *c;
	pm_process *p;

	ck_assert_ptr_nonnull(c = pm_connect(pmd.sock));
	for (i = 0; i < 2; i++) {
		ck_assert_ptr_nonnull(p = pm_process_new(c, th_module(),
		    "ret7", NULL, 0));
		ck_assert_int_eq(pm_process_start(p), PM_OK);
		ck_assert_int_eq(pm_process_join(p, HANG), PM_OK);
		ck_assert_int_eq(pm_process_exitcode(p, &code), PM_OK);
		pm_process_free(p);
	}
	TH_WAIT(status_num("claimed_workers") >= 1, HANG);
	pm_disconnect(c);
	TH_WAIT(status_num("claimed_workers") == 0 &&
	    status_num("idle_workers") == NIDLE && th_zombies(pmd.pid) == 0 &&
	    kids(NULL, 0) == 1 + NIDLE, HANG);
	ck_assert_int_eq(status_num("claimed_workers"), 0);
	ck_assert_int_eq(kids(NULL, 0), 1 + NIDLE);
	th_pmd_settled(&pmd, base, HANG);
}
END_TEST

/* A client that dies holding claimed workers leaks nothing either. */
START_TEST(t_claims_client_dies)
{
	int st, base = th_fd_count(pmd.pid);
	pid_t child;

	if ((child = fork()) == 0) {
		pm_process *p;
		pm_conn *c;
		int code, i;

		if ((c = pm_connect(pmd.sock)) == NULL)
			_exit(1);
		for (i = 0; i < 2; i++) {
			if ((p = pm_process_new(c, th_module(), "ret7", NULL,
			    0)) == NULL || pm_process_start(p) != PM_OK ||
			    pm_process_join(p, HANG) != PM_OK ||
			    pm_process_exitcode(p, &code) != PM_OK ||
			    code != 7)
				_exit(2);
			pm_process_free(p);
		}
		pause();			/* killed, holding them */
		_exit(3);
	}
	ck_assert_int_gt(child, 0);
	TH_WAIT(status_num("claimed_workers") >= 1, HANG);
	ck_assert_int_ge(status_num("claimed_workers"), 1);
	ck_assert_int_eq(kill(child, SIGKILL), 0);
	ck_assert_int_eq(waitpid(child, &st, 0), child);
	TH_WAIT(status_num("claimed_workers") == 0 &&
	    status_num("idle_workers") == NIDLE && th_zombies(pmd.pid) == 0 &&
	    kids(NULL, 0) == 1 + NIDLE, HANG);
	ck_assert_int_eq(status_num("claimed_workers"), 0);
	ck_assert_int_eq(kids(NULL, 0), 1 + NIDLE);
	th_pmd_settled(&pmd, base, HANG);
}
END_TEST

/* prestart_workers_per_uid = 0: nothing is claimed, starts still work
 * (handed an idle worker by pmd). */
START_TEST(t_no_claims)
{
	struct th_pmd d;
	pm_process *p;
	pm_conn *c;
	char out[4096];
	int code, i;

	ck_assert_int_eq(th_pmd_start_conf(&d, "prestart_workers = 2\n"
	    "prestart_workers_per_uid = 0\n", NULL), 0);
	ck_assert_ptr_nonnull(c = pm_connect(d.sock));
	for (i = 0; i < 3; i++) {
		ck_assert_ptr_nonnull(p = pm_process_new(c, th_module(),
		    "ret7", NULL, 0));
		ck_assert_int_eq(pm_process_start(p), PM_OK);
		ck_assert_int_eq(pm_process_join(p, HANG), PM_OK);
		ck_assert_int_eq(pm_process_exitcode(p, &code), PM_OK);
		ck_assert_int_eq(code, 7);
		pm_process_free(p);
	}
	ck_assert_int_eq(th_pmctl(out, sizeof(out), "--socket", d.sock,
	    "--json", "status", NULL), 0);
	ck_assert_ptr_nonnull(strstr(out, "\"claimed_workers\": 0"));
	ck_assert_ptr_nonnull(strstr(out, "\"prestart_claimed\": 3"));
	pm_disconnect(c);
	ck_assert_int_eq(th_pmd_stop(&d), 0);
}
END_TEST

/* pmd stops: its idle workers end with it, at once. */
START_TEST(t_stop_ends_idle)
{
	pid_t idle[8];
	int i;

	ck_assert_int_eq(idle_pids(idle, 8), NIDLE);
	pm_disconnect(conn);
	conn = NULL;
	ck_assert_int_eq(th_pmd_stop(&pmd), 0);
	for (i = 0; i < NIDLE; i++)
		ck_assert(!th_pid_alive(idle[i]));
}
END_TEST

/* --prestart 0: no idle worker, every start a fork. */
START_TEST(t_none)
{
	const char *args[] = { "--prestart", "0", NULL };
	struct th_pmd d;
	pm_process *p;
	pm_conn *c;
	pid_t idle[8];
	int code;

	ck_assert_int_eq(th_pmd_start(&d, args), 0);
	ck_assert_ptr_nonnull(c = pm_connect(d.sock));
	ck_assert_ptr_nonnull(p = pm_process_new(c, th_module(),
	    "ret7", NULL, 0));
	ck_assert_int_eq(pm_process_start(p), PM_OK);
	ck_assert_int_eq(pm_process_join(p, HANG), PM_OK);
	ck_assert_int_eq(pm_process_exitcode(p, &code), PM_OK);
	ck_assert_int_eq(code, 7);
	pm_process_free(p);
	/* the forker alone, once pmd has reaped the worker */
	TH_WAIT(th_children(d.pid, idle, 8) == 1, HANG);
	ck_assert_int_eq(th_children(d.pid, idle, 8), 1);
	pm_disconnect(c);
	ck_assert_int_eq(th_pmd_stop(&d), 0);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("prestart");
	TCase *tc = th_tcase(s, "prestart", setup, teardown, 120);

	tcase_add_test(tc, t_handoff);
	tcase_add_test(tc, t_more_than_idle);
	tcase_add_test(tc, t_exit_reports);
	tcase_add_test(tc, t_idle_killed);
	tcase_add_test(tc, t_forker_killed);
	tcase_add_test(tc, t_stop_ends_idle);
	tcase_add_test(tc, t_none);
	tcase_add_test(tc, t_claimed);
	tcase_add_test(tc, t_claimed_errors);
	tcase_add_test(tc, t_claimed_listed_daemonic);
	tcase_add_test(tc, t_claims_dropped);
	tcase_add_test(tc, t_claims_client_dies);
	tcase_add_test(tc, t_no_claims);
	return th_run_suite(s);
}
