/*
 * check_memory.c - memory and CPU against a real pmd: rusage of ended
 * Processes, pool resize and maxmemoryperchild recycling.
 */
#include <sys/types.h>

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "pmclient.h"

static struct th_pmd pmd;
static pm_conn *conn;
static char modpath[4096];
static int base_self;

static void
setup(void)
{
	base_self = th_fd_count(0);
	snprintf(modpath, sizeof(modpath), "%s/tests/memtasks.so",
	    th_env("PM_BUILD"));
	ck_assert_int_eq(th_pmd_start(&pmd, NULL), 0);
	conn = pm_connect(pmd.sock);
	ck_assert_msg(conn != NULL, "pm_connect: %s", pm_last_message());
}

static void
teardown(void)
{
	pm_disconnect(conn);
	conn = NULL;
	ck_assert_int_eq(th_fd_count(0), base_self);
	ck_assert_int_eq(th_pmd_stop(&pmd), 0);
}

static pm_process *
new_task(const char *fn, const char *arg)
{
	pm_process *p;

	p = pm_process_new(conn, modpath, fn, arg, arg ? strlen(arg) : 0);
	ck_assert_msg(p != NULL, "pm_process_new %s: %s", fn,
	    pm_last_message());
	return p;
}

/* ---- rusage ---- */

START_TEST(t_rusage)
{
	pm_process *p;
	pm_rusage ru;

	p = new_task("spin", "400");
	ck_assert_int_eq(pm_process_rusage(p, &ru), PM_ESTATE);
	ck_assert_int_eq(pm_process_start(p), PM_OK);
	ck_assert_int_eq(pm_process_rusage(p, &ru), PM_ESTATE);
	ck_assert_ptr_nonnull(strstr(pm_last_message(), "still running"));
	ck_assert_int_eq(pm_process_join(p, 60), PM_OK);
	ck_assert_int_eq(pm_process_rusage(p, NULL), PM_EINVAL);
	ck_assert_int_eq(pm_process_rusage(p, &ru), PM_OK);
	/* it spun for 0.4 s of wall time: some of it on a CPU, surely */
	ck_assert_msg(ru.user_s + ru.sys_s > 0.02 &&
	    ru.user_s + ru.sys_s < 60, "cpu %f+%f", ru.user_s, ru.sys_s);
	ck_assert_uint_gt(ru.maxrss_kb, 0);
	ck_assert_uint_lt(ru.maxrss_kb, 48 * 1024);
	pm_process_free(p);

	p = new_task("grow", "64");
	ck_assert_int_eq(th_run_process(p, 60), 0);
	ck_assert_int_eq(pm_process_rusage(p, &ru), PM_OK);
	ck_assert_msg(ru.maxrss_kb >= 64 * 1024, "maxrss %llu kB",
	    (unsigned long long)ru.maxrss_kb);
	ck_assert_msg(ru.user_s + ru.sys_s < 60, "cpu %f+%f", ru.user_s,
	    ru.sys_s);
	pm_process_free(p);
}
END_TEST

static Suite *
memory_suite(void)
{
	Suite *s = suite_create("memory");
	TCase *tc;

	tc = th_tcase(s, "rusage", setup, teardown, 60);
	tcase_add_test(tc, t_rusage);
	return s;
}

int
main(void)
{
	return th_run_suite(memory_suite());
}
