/*
 * check_memory.c - memory and CPU against a real pmd: rusage of ended
 * Processes, memory and CPU caps through cgroups, OOM kills reported,
 * no cgroup left behind; pools with memory_max, maxmemoryperchild and
 * resize.
 */
#include <sys/types.h>

#include <check.h>
#include <dirent.h>
#include <stdint.h>
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

static pm_pool	*new_pool(int, uint64_t, uint64_t);

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

/* ---- caps ---- */

#define MiB	(1ull << 20)

/* pmd's cgroup subtree for its capped workers (cgroup v1 memory), or
 * NULL when pmd is not on v1 */
static const char *
pmd_subtree(char *buf, size_t cap)
{
	char path[64], line[1024], *p;
	FILE *fp;
	int found = 0;

	snprintf(path, sizeof(path), "/proc/%d/cgroup", (int)pmd.pid);
	ck_assert_ptr_nonnull(fp = fopen(path, "re"));
	while (!found && fgets(line, sizeof(line), fp) != NULL) {
		line[strcspn(line, "\n")] = '\0';
		if ((p = strstr(line, ":memory:")) == NULL)
			continue;
		p += strlen(":memory:");
		snprintf(buf, cap, "/sys/fs/cgroup/memory%s/pmd.%d",
		    strcmp(p, "/") ? p : "", (int)pmd.pid);
		found = 1;
	}
	fclose(fp);
	return found ? buf : NULL;
}

/* entries of dir that are worker cgroups (w<wid>); -1 no dir */
static int
worker_cgroups(const char *dir)
{
	struct dirent *e;
	DIR *d;
	int n = 0;

	if ((d = opendir(dir)) == NULL)
		return -1;
	while ((e = readdir(d)) != NULL)
		if (e->d_name[0] == 'w' && e->d_type == DT_DIR)
			n++;
	closedir(d);
	return n;
}

START_TEST(t_oom)
{
	pm_process *p;
	int code;

	/* 256 MiB under a 64 MiB cap: killed, and said so */
	p = new_task("grow", "256");
	ck_assert_int_eq(pm_process_set_memory_max(p, 64 * MiB), PM_OK);
	code = th_run_process(p, 60);
	ck_assert_int_eq(code, -9);
	ck_assert_int_eq(pm_process_oom_killed(p), 1);
	ck_assert_ptr_nonnull(pm_process_error(p));
	ck_assert_str_eq(pm_process_error(p),
	    "out of memory (memory_max 64 MiB)");
	pm_process_free(p);

	/* the same for a spawned worker (pmd's runner joins the cgroup) */
	p = new_task("grow", "256");
	ck_assert_int_eq(pm_process_set_start_method(p, PM_START_SPAWN),
	    PM_OK);
	ck_assert_int_eq(pm_process_set_memory_max(p, 64 * MiB), PM_OK);
	ck_assert_int_eq(th_run_process(p, 60), -9);
	ck_assert_int_eq(pm_process_oom_killed(p), 1);
	pm_process_free(p);

	/* 16 MiB under the same cap: fine */
	p = new_task("grow", "16");
	ck_assert_int_eq(pm_process_set_memory_max(p, 64 * MiB), PM_OK);
	ck_assert_int_eq(th_run_process(p, 60), 0);
	ck_assert_int_eq(pm_process_oom_killed(p), 0);
	ck_assert_ptr_null(pm_process_error(p));
	pm_process_free(p);

	/* uncapped, 256 MiB runs free */
	p = new_task("grow", "256");
	ck_assert_int_eq(th_run_process(p, 60), 0);
	ck_assert_int_eq(pm_process_oom_killed(p), 0);
	pm_process_free(p);

	/* killed by a plain SIGKILL, not the OOM killer: not an OOM */
	p = new_task("spin", "60000");
	ck_assert_int_eq(pm_process_set_memory_max(p, 64 * MiB), PM_OK);
	ck_assert_int_eq(pm_process_start(p), PM_OK);
	ck_assert_int_eq(pm_process_kill(p), PM_OK);
	ck_assert_int_eq(pm_process_join(p, 60), PM_OK);
	ck_assert_int_eq(pm_process_exitcode(p, &code), PM_OK);
	ck_assert_int_eq(code, -9);
	ck_assert_int_eq(pm_process_oom_killed(p), 0);
	pm_process_free(p);
}
END_TEST

START_TEST(t_cpu_cap)
{
	pm_process *p;
	pm_rusage ru;
	double t0, wall;

	/* 0.5 s of CPU under a quarter CPU takes about 2 s whatever the
	 * load: at least 1.5 s (the first CFS period may give its quota at
	 * once) */
	p = new_task("burn", "500");
	ck_assert_int_eq(pm_process_set_cpu_max(p, 0.25), PM_OK);
	t0 = th_now();
	ck_assert_int_eq(th_run_process(p, 60), 0);
	wall = th_now() - t0;
	ck_assert_int_eq(pm_process_rusage(p, &ru), PM_OK);
	ck_assert_msg(ru.user_s + ru.sys_s >= 0.45, "cpu %f+%f", ru.user_s,
	    ru.sys_s);
	ck_assert_msg(wall >= 1.5, "0.5 CPU s in %.2f s under cpu_max 0.25",
	    wall);
	pm_process_free(p);
}
END_TEST

START_TEST(t_caps_bad)
{
	pm_process *p;

	p = new_task("spin", "0");
	ck_assert_int_eq(pm_process_set_cpu_max(p, -1), PM_EINVAL);
	ck_assert_int_eq(pm_process_set_cpu_max(p, 0.001), PM_EINVAL);
	ck_assert_int_eq(pm_process_set_cpu_max(p, 1e9), PM_EINVAL);
	ck_assert_int_eq(pm_process_set_cpu_max(p, 0.0 / 0.0), PM_EINVAL);
	ck_assert_int_eq(pm_process_set_memory_max(p, 4096), PM_EINVAL);
	ck_assert_ptr_nonnull(strstr(pm_last_message(), "memory_max"));
	ck_assert_int_eq(pm_process_set_memory_max(p, 0), PM_OK);
	ck_assert_int_eq(pm_process_set_cpu_max(p, 0), PM_OK);
	ck_assert_int_eq(pm_process_set_memory_max(NULL, MiB), PM_EINVAL);
	pm_process_free(p);

	p = new_task("spin", "10");
	ck_assert_int_eq(pm_process_start(p), PM_OK);
	ck_assert_int_eq(pm_process_set_memory_max(p, 64 * MiB), PM_ESTATE);
	ck_assert_int_eq(pm_process_set_cpu_max(p, 0.5), PM_ESTATE);
	ck_assert_int_eq(pm_process_join(p, 60), PM_OK);
	pm_process_free(p);
}
END_TEST

/* Every capped worker's cgroup goes with it; pmd's subtree with pmd.
 * 1,000 workers scaled by $PM_SOAK_SCALE (make check 0.02, make soak 1),
 * never fewer than 100. */
START_TEST(t_no_cgroup_left)
{
	char sub[4096];
	pm_process *p;
	int i, n;

	n = (int)(1000 * th_soak_scale());
	if (n < 100)
		n = 100;

	for (i = 0; i < n; i++) {
		p = new_task("grow", "1");
		ck_assert_int_eq(pm_process_set_memory_max(p, 32 * MiB),
		    PM_OK);
		if (i % 2)
			ck_assert_int_eq(pm_process_set_cpu_max(p, 0.5),
			    PM_OK);
		ck_assert_int_eq(th_run_process(p, 60), 0);
		pm_process_free(p);
	}
	if (pmd_subtree(sub, sizeof(sub)) == NULL)
		return;			/* cgroup v2: nothing of v1 to see */
	/* the last Exited may come before pmd's rmdir: settle */
	for (i = 0; i < 100 && worker_cgroups(sub) != 0; i++)
		th_sleep(0.05);
	ck_assert_int_eq(worker_cgroups(sub), 0);
	pm_disconnect(conn);
	conn = NULL;
	ck_assert_int_eq(th_pmd_stop(&pmd), 0);
	ck_assert_int_eq(worker_cgroups(sub), -1);
	ck_assert_int_eq(th_pmd_start(&pmd, NULL), 0);
	conn = pm_connect(pmd.sock);
	ck_assert_ptr_nonnull(conn);
}
END_TEST

/* ---- what pmctl shows ---- */

START_TEST(t_pmctl_ps)
{
	static char out[65536];
	pm_process *p;
	char *at;

	p = new_task("hold", "24");
	ck_assert_int_eq(pm_process_set_memory_max(p, 64 * MiB), PM_OK);
	ck_assert_int_eq(pm_process_set_cpu_max(p, 0.5), PM_OK);
	ck_assert_int_eq(pm_process_start(p), PM_OK);
	th_sleep(1.0);		/* it touches its memory and burns some CPU */
	ck_assert_int_eq(th_pmctl(out, sizeof(out), "--socket", pmd.sock,
	    "ps", "--json", NULL), 0);
	ck_assert_msg(strstr(out, "\"memory_max\": 67108864") != NULL, "%s",
	    out);
	ck_assert_msg(strstr(out, "\"cpu_max\": 0.5") != NULL, "%s", out);
	ck_assert_ptr_nonnull(at = strstr(out, "\"rss_kb\": "));
	ck_assert_msg(atol(at + 10) >= 20 * 1024, "%s", out);
	ck_assert_ptr_nonnull(at = strstr(out, "\"cpu_s\": "));
	ck_assert_msg(atof(at + 9) > 0, "%s", out);
	ck_assert_int_eq(th_pmctl(out, sizeof(out), "--socket", pmd.sock,
	    "ps", NULL), 0);
	ck_assert_msg(strstr(out, "RSS") && strstr(out, "MEMMAX") &&
	    strstr(out, " 64M ") && strstr(out, " 0.50 "), "%s", out);
	ck_assert_int_eq(pm_process_kill(p), PM_OK);
	ck_assert_int_eq(pm_process_join(p, 60), PM_OK);
	pm_process_free(p);
}
END_TEST

/* ---- pmctl stats ---- */

/* Each line of Prometheus text: "# HELP name text", "# TYPE name kind",
 * or "name[{labels}] value"; returns the value of metric want (-1 if
 * absent) and fails the test on a line that does not parse. */
static double
prom_value(char *text, const char *want)
{
	char *line, *save, *sp, *end, name[256];
	double v, found = -1;
	size_t nl;

	for (line = strtok_r(text, "\n", &save); line != NULL;
	    line = strtok_r(NULL, "\n", &save)) {
		if (strncmp(line, "# HELP pmd_", 11) == 0 ||
		    strncmp(line, "# TYPE pmd_", 11) == 0) {
			if (line[2] == 'T')
				ck_assert_msg(strstr(line, " counter") ||
				    strstr(line, " gauge") ||
				    strstr(line, " histogram"), "%s", line);
			continue;
		}
		ck_assert_msg(strncmp(line, "pmd_", 4) == 0, "bad line: %s",
		    line);
		ck_assert_ptr_nonnull(sp = strrchr(line, ' '));
		nl = strcspn(line, "{ ");
		ck_assert_uint_lt(nl, sizeof(name));
		memcpy(name, line, nl);
		name[nl] = '\0';
		for (size_t k = 0; k < nl; k++)
			ck_assert_msg(strchr("abcdefghijklmnopqrstuvwxyz_",
			    name[k]) != NULL, "bad name: %s", line);
		if (line[nl] == '{')
			ck_assert_msg(strchr(line, '}') != NULL &&
			    strstr(line, "=\"") != NULL, "bad labels: %s",
			    line);
		v = strtod(sp + 1, &end);
		ck_assert_msg(*end == '\0' && end != sp + 1, "bad value: %s",
		    line);
		if (strcmp(name, want) == 0 && line[nl] == ' ')
			found = v;
	}
	return found;
}

static double
stat_now(const char *metric)
{
	static char out[65536];

	ck_assert_int_eq(th_pmctl(out, sizeof(out), "--socket", pmd.sock,
	    "stats", "--prometheus", NULL), 0);
	return prom_value(out, metric);
}

START_TEST(t_stats)
{
	static const char *const m[] = { "pmd_workers_started_total",
	    "pmd_workers_oom_killed_total", "pmd_pool_tasks_total",
	    "pmd_start_seconds_count", "pmd_queue_items_in_total",
	    "pmd_queue_items_out_total", "pmd_clients" };
	double before[7], after[7];
	static char out[65536];
	pm_bytes in[5], res[5];
	pm_process *p;
	pm_pool *pool;
	int i;

	for (i = 0; i < 7; i++) {
		before[i] = stat_now(m[i]);
		ck_assert_msg(before[i] >= 0, "no %s", m[i]);
	}
	p = new_task("grow", "128");
	ck_assert_int_eq(pm_process_set_memory_max(p, 32 * MiB), PM_OK);
	ck_assert_int_eq(th_run_process(p, 60), -9);
	pm_process_free(p);
	pool = new_pool(2, 0, 0);
	for (i = 0; i < 5; i++) {
		in[i].data = (void *)(uintptr_t)"";
		in[i].len = 0;
	}
	ck_assert_int_eq(pm_pool_map(pool, "mypid", in, 5, 1, res), PM_OK);
	for (i = 0; i < 5; i++)
		pm_bytes_free(&res[i]);
	ck_assert_int_eq(th_pmctl(out, sizeof(out), "--socket", pmd.sock,
	    "queue", "put", "--create", "statsq", "x", NULL), 0);
	ck_assert_int_eq(th_pmctl(out, sizeof(out), "--socket", pmd.sock,
	    "queue", "get", "statsq", NULL), 0);
	for (i = 0; i < 7; i++)
		after[i] = stat_now(m[i]);
	ck_assert(after[0] >= before[0] + 3);	/* a process, two workers */
	ck_assert(after[1] == before[1] + 1);
	ck_assert(after[2] >= before[2] + 5);
	ck_assert(after[3] >= before[3] + 3);
	ck_assert(after[4] == before[4] + 1);
	ck_assert(after[5] == before[5] + 1);
	ck_assert(after[6] >= 1);
	pm_pool_free(pool);

	ck_assert_int_eq(th_pmctl(out, sizeof(out), "--socket", pmd.sock,
	    "stats", "--json", NULL), 0);
	ck_assert_msg(strstr(out, "\"workers_oom_killed\": ") &&
	    strstr(out, "\"start_p99\": "), "%s", out);
	ck_assert_int_eq(th_pmctl(out, sizeof(out), "--socket", pmd.sock,
	    "stats", NULL), 0);
	ck_assert_msg(strstr(out, "p50 <= "), "%s", out);
	ck_assert_int_ne(th_pmctl(out, sizeof(out), "--socket", pmd.sock,
	    "stats", "--json", "--prometheus", NULL), 0);
}
END_TEST

/* ---- pools ---- */

static pm_pool *
new_pool(int n, uint64_t memory_max, uint64_t maxmem)
{
	pm_pool_opts o;
	pm_pool *p;

	memset(&o, 0, sizeof(o));
	o.processes = n;
	o.module = modpath;
	o.memory_max = memory_max;
	o.maxmemoryperchild = maxmem;
	p = pm_pool_new(conn, &o);
	ck_assert_msg(p != NULL, "pm_pool_new: %s", pm_last_message());
	return p;
}

static int
apply_pid(pm_pool *p, const char *fn, const char *arg)
{
	pm_bytes out;
	char buf[32];
	int r;

	r = pm_pool_apply(p, fn, arg, strlen(arg), &out);
	ck_assert_msg(r == PM_OK, "apply %s %s: %d %s", fn, arg, r,
	    pm_last_message());
	ck_assert_uint_lt(out.len, sizeof(buf));
	memcpy(buf, out.data, out.len);
	buf[out.len] = '\0';
	pm_bytes_free(&out);
	return atoi(buf);
}

/* workers of pmd: its children but the forker */
static int
pmd_workers(void)
{
	return th_children(pmd.pid, NULL, 0) - 1;
}

static void
wait_workers(int n)
{
	double end = th_now() + 30;

	while (pmd_workers() != n && th_now() < end)
		th_sleep(0.02);
	ck_assert_int_eq(pmd_workers(), n);
}

START_TEST(t_pool_oom)
{
	const char *sizes[] = { "16", "256", "16", "8" };
	pm_result *r[4];
	pm_bytes out;
	pm_pool *p;
	int i, rc;

	p = new_pool(2, 64 * MiB, 0);
	for (i = 0; i < 4; i++)
		ck_assert_ptr_nonnull(r[i] = pm_pool_apply_async(p, "grow",
		    sizes[i], strlen(sizes[i]), NULL, NULL));
	for (i = 0; i < 4; i++) {
		rc = pm_result_get(r[i], 60, &out);
		if (i == 1) {
			ck_assert_int_eq(rc, PM_EWORKER);
			ck_assert_ptr_nonnull(strstr(pm_result_error(r[i]),
			    "out of memory (memory_max 64 MiB)"));
		} else {
			ck_assert_msg(rc == PM_OK, "task %d: %d %s", i, rc,
			    pm_result_error(r[i]));
			pm_bytes_free(&out);
		}
		pm_result_free(r[i]);
	}
	/* the pool goes on */
	ck_assert_int_gt(apply_pid(p, "mypid", ""), 0);
	pm_pool_free(p);

	ck_assert_ptr_null(pm_pool_new(conn, &(pm_pool_opts){ .processes = 1,
	    .module = modpath, .memory_max = 100 }));
	ck_assert_int_eq(pm_last_error(), PM_EINVAL);
}
END_TEST

/* A worker that grew past maxmemoryperchild answers its task and is
 * replaced; one under it stays. */
START_TEST(t_maxmemoryperchild)
{
	pm_pool *p;
	int a, b, c, d;

	p = new_pool(1, 0, 64 * MiB);
	a = apply_pid(p, "keep", "40");		/* ~40 MiB: stays */
	b = apply_pid(p, "mypid", "");
	ck_assert_int_eq(a, b);
	c = apply_pid(p, "keep", "40");		/* ~80 MiB: leaves after */
	ck_assert_int_eq(c, a);
	d = apply_pid(p, "mypid", "");
	ck_assert_int_ne(d, a);
	ck_assert_int_eq(apply_pid(p, "mypid", ""), d);
	pm_pool_free(p);
}
END_TEST

START_TEST(t_resize)
{
	pm_result *r[3];
	pm_bytes out;
	pm_pool *p;
	int i;

	p = new_pool(1, 0, 0);
	wait_workers(1);
	ck_assert_int_eq(pm_pool_resize(p, 0), PM_EINVAL);
	ck_assert_int_eq(pm_pool_resize(p, -3), PM_EINVAL);
	ck_assert_int_eq(pm_pool_resize(NULL, 2), PM_EINVAL);
	ck_assert_int_eq(pm_pool_resize(p, 3), PM_OK);
	wait_workers(3);
	/* three long tasks on three workers, then shrink under them: they
	 * all finish, and the pool goes down to one */
	for (i = 0; i < 3; i++)
		ck_assert_ptr_nonnull(r[i] = pm_pool_apply_async(p, "spin",
		    "800", 3, NULL, NULL));
	th_sleep(0.2);
	ck_assert_int_eq(pm_pool_resize(p, 1), PM_OK);
	for (i = 0; i < 3; i++) {
		ck_assert_int_eq(pm_result_get(r[i], 60, &out), PM_OK);
		pm_bytes_free(&out);
		pm_result_free(r[i]);
	}
	wait_workers(1);
	ck_assert_int_gt(apply_pid(p, "mypid", ""), 0);
	/* idle ones go at once */
	ck_assert_int_eq(pm_pool_resize(p, 2), PM_OK);
	wait_workers(2);
	ck_assert_int_eq(pm_pool_resize(p, 1), PM_OK);
	wait_workers(1);
	ck_assert_int_eq(pm_pool_close(p), PM_OK);
	ck_assert_int_eq(pm_pool_resize(p, 2), PM_ESTATE);
	ck_assert_int_eq(pm_pool_join(p), PM_OK);
	pm_pool_free(p);
}
END_TEST

static Suite *
memory_suite(void)
{
	Suite *s = suite_create("memory");
	TCase *tc;

	tc = th_tcase(s, "rusage", setup, teardown, 60);
	tcase_add_test(tc, t_rusage);
	tc = th_tcase(s, "caps", setup, teardown, 600);
	tcase_add_test(tc, t_oom);
	tcase_add_test(tc, t_cpu_cap);
	tcase_add_test(tc, t_caps_bad);
	tcase_add_test(tc, t_no_cgroup_left);
	tcase_add_test(tc, t_pmctl_ps);
	tcase_add_test(tc, t_stats);
	tc = th_tcase(s, "pool", setup, teardown, 120);
	tcase_add_test(tc, t_pool_oom);
	tcase_add_test(tc, t_maxmemoryperchild);
	tcase_add_test(tc, t_resize);
	return s;
}

int
main(void)
{
	return th_run_suite(memory_suite());
}
