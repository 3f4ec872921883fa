/*
 * check_pmctl.c - the pmctl command line against a real pmd: status, ps
 * (pool workers too), kill, run, ping, shutdown, --json, --help, and its
 * exit codes (0 ok, 1 refused, 2 usage, 3 daemon unreachable).
 */
#include <sys/types.h>

#include <check.h>
#include <ctype.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "pmclient.h"

#define OUT	16384

static struct th_pmd pmd;
static pm_conn *conn;
static int base_pmd;
static char out[OUT];

static void
setup(void)
{
	ck_assert_int_eq(th_pmd_start(&pmd, NULL), 0);
	base_pmd = th_fd_count(pmd.pid);
	conn = pm_connect(pmd.sock);
	ck_assert_msg(conn != NULL, "pm_connect: %s", pm_last_message());
}

static void
teardown(void)
{
	pm_disconnect(conn);
	th_pmd_settled(&pmd, base_pmd, 10);
	ck_assert_int_eq(th_pmd_stop(&pmd), 0);
}

/* n appears in s as a whole number. */
static int
has_number(const char *s, long n)
{
	char want[32];
	const char *p;
	size_t len;

	len = (size_t)snprintf(want, sizeof(want), "%ld", n);
	for (p = s; (p = strstr(p, want)) != NULL; p++)
		if ((p == s || !isdigit((unsigned char)p[-1])) &&
		    !isdigit((unsigned char)p[len]))
			return 1;
	return 0;
}

static int
looks_json(const char *s)
{
	const char *e;

	while (isspace((unsigned char)*s))
		s++;
	e = s + strlen(s);
	while (e > s && isspace((unsigned char)e[-1]))
		e--;
	if (e == s)
		return 0;
	return (*s == '{' && e[-1] == '}') || (*s == '[' && e[-1] == ']');
}

/* pmctl --socket pmd.sock --json ARGS... (NULL-ended), at most 6 args. */
static int
pmctl_json_args(const char *a0, ...)
{
	const char *a[7] = { a0 };
	va_list ap;
	int n = 1;

	va_start(ap, a0);
	while (n < 6 && (a[n] = va_arg(ap, const char *)) != NULL)
		n++;
	va_end(ap);
	return th_pmctl(out, OUT, "--socket", pmd.sock, "--json", a[0], a[1],
	    a[2], a[3], a[4], a[5], NULL);
}

/* pmctl with --json: as a global option, else after the command. */
static int
pmctl_json(const char *cmd)
{
	int r;

	r = th_pmctl(out, OUT, "--socket", pmd.sock, "--json", cmd, NULL);
	if (r == 2)
		r = th_pmctl(out, OUT, "--socket", pmd.sock, cmd, "--json",
		    NULL);
	return r;
}

static pm_process *
start_forever(const char *name)
{
	pm_process *p;

	p = pm_process_new(conn, th_module(), "wait_forever", NULL, 0);
	ck_assert_ptr_nonnull(p);
	ck_assert_int_eq(pm_process_set_name(p, name), PM_OK);
	ck_assert_int_eq(pm_process_start(p), PM_OK);
	return p;
}

static int
join_code(pm_process *p)
{
	int code = -12345;

	ck_assert_int_eq(pm_process_join(p, 30), PM_OK);
	ck_assert_int_eq(pm_process_exitcode(p, &code), PM_OK);
	return code;
}

START_TEST(t_status)
{
	ck_assert_int_eq(th_pmctl(out, OUT, "--socket", pmd.sock, "status",
	    NULL), 0);
	ck_assert_msg(has_number(out, pmd.pid), "status lacks pid %d:\n%s",
	    (int)pmd.pid, out);
	ck_assert_int_eq(pmctl_json("status"), 0);
	ck_assert_msg(looks_json(out), "status --json:\n%s", out);
	ck_assert(has_number(out, pmd.pid));
}
END_TEST

START_TEST(t_ps)
{
	pm_process *p = start_forever("pmctl-ps-worker");
	pid_t pid = pm_process_pid(p);

	ck_assert_int_eq(th_pmctl(out, OUT, "--socket", pmd.sock, "ps",
	    NULL), 0);
	ck_assert_msg(has_number(out, pid), "ps lacks worker %d:\n%s",
	    (int)pid, out);
	ck_assert_int_eq(pmctl_json("ps"), 0);
	ck_assert_msg(looks_json(out), "ps --json:\n%s", out);
	ck_assert(has_number(out, pid));
	ck_assert_msg(strstr(out, "pmctl-ps-worker") != NULL,
	    "ps --json lacks the name:\n%s", out);

	ck_assert_int_eq(pm_process_kill(p), PM_OK);
	ck_assert_int_eq(join_code(p), -SIGKILL);
	pm_process_free(p);
	/* gone from the list once reaped */
	ck_assert_int_eq(th_pmctl(out, OUT, "--socket", pmd.sock, "ps",
	    NULL), 0);
	ck_assert_msg(!has_number(out, pid), "ps still lists %d:\n%s",
	    (int)pid, out);
}
END_TEST

/* One line of `pmctl ps`: 0 when it is not a worker line. */
struct ps_line {
	int		 pid;
	char		 kind[16];
	char		 pool[24];
	char		 tasks[24];
};

static int
ps_parse(const char *line, struct ps_line *l)
{
	unsigned long long wid;
	unsigned uid;
	char dmn[8];
	int owner;
	double age;

	return sscanf(line, "%d %llu %u %15s %7s %d %lfs %23s %23s", &l->pid,
	    &wid, &uid, l->kind, dmn, &owner, &age, l->pool, l->tasks) == 9;
}

/* The ps line of pid in out, or 0. */
static int
ps_find(pid_t pid, struct ps_line *l)
{
	const char *p;

	for (p = out; p != NULL && *p != '\0'; p = strchr(p, '\n'),
	    p = p ? p + 1 : NULL)
		if (ps_parse(p, l) && l->pid == (int)pid)
			return 1;
	return 0;
}

#define NPOOLTASKS	40

/*
 * Every pool worker that ran tasks is listed as kind "pool", with the
 * pool's id (the same for all) and the count of tasks it ran; a Process
 * worker shows "-" in both columns.
 */
START_TEST(t_ps_pool)
{
	char modpath[PATH_MAX], poolid[24] = "";
	pm_bytes in[NPOOLTASKS], res[NPOOLTASKS];
	pid_t pids[NPOOLTASKS];
	long counts[NPOOLTASKS];
	struct ps_line l;
	pm_pool_opts o;
	pm_pool *pool;
	pm_process *p;
	int64_t v;
	size_t i, j, npids = 0;
	int ok = 0;

	snprintf(modpath, sizeof(modpath), "%s/tests/pooltasks.so",
	    th_env("PM_BUILD"));
	memset(&o, 0, sizeof(o));
	o.processes = 2;
	o.module = modpath;
	pool = pm_pool_new(conn, &o);
	ck_assert_msg(pool != NULL, "pm_pool_new: %s", pm_last_message());
	for (i = 0; i < NPOOLTASKS; i++) {
		in[i].data = NULL;
		in[i].len = 0;
	}
	/* my_pid: which worker ran each task */
	ck_assert_int_eq(pm_pool_map(pool, "my_pid", in, NPOOLTASKS, 1, res),
	    PM_OK);
	for (i = 0; i < NPOOLTASKS; i++) {
		ck_assert_uint_eq(res[i].len, sizeof(v));
		memcpy(&v, res[i].data, sizeof(v));
		pm_bytes_free(&res[i]);
		for (j = 0; j < npids && pids[j] != (pid_t)v; j++)
			;
		if (j == npids) {
			pids[npids] = (pid_t)v;
			counts[npids++] = 0;
		}
		counts[j]++;
	}
	ck_assert_uint_ge(npids, 1);
	p = start_forever("pmctl-ps-func");

	/* a worker publishes its count after its batch: retry briefly */
	for (double end = th_now() + 10; !ok && th_now() < end;
	    th_sleep(0.02)) {
		ck_assert_int_eq(th_pmctl(out, OUT, "--socket", pmd.sock, "ps",
		    NULL), 0);
		ok = 1;
		for (j = 0; ok && j < npids; j++) {
			if (!ps_find(pids[j], &l) ||
			    strcmp(l.kind, "pool") != 0 ||
			    strtol(l.tasks, NULL, 10) != counts[j])
				ok = 0;
			else if (j == 0)
				snprintf(poolid, sizeof(poolid), "%s", l.pool);
			else if (strcmp(l.pool, poolid) != 0)
				ok = 0;
		}
	}
	ck_assert_msg(ok, "ps does not show %zu pool workers with their "
	    "tasks (first: pid %d, %ld tasks):\n%s", npids, (int)pids[0],
	    counts[0], out);
	ck_assert_msg(strtoull(poolid, NULL, 10) > 0, "pool id '%s':\n%s",
	    poolid, out);
	ck_assert_msg(strstr(out, "POOL") && strstr(out, "TASKS"),
	    "ps header lacks POOL/TASKS:\n%s", out);
	ck_assert_msg(ps_find(pm_process_pid(p), &l), "ps lacks %d:\n%s",
	    (int)pm_process_pid(p), out);
	ck_assert_str_eq(l.kind, "func");
	ck_assert_str_eq(l.pool, "-");
	ck_assert_str_eq(l.tasks, "-");

	ck_assert_int_eq(pmctl_json("ps"), 0);
	ck_assert_msg(looks_json(out), "ps --json:\n%s", out);
	ck_assert_msg(strstr(out, "\"kind\": \"pool\"") != NULL,
	    "ps --json lacks kind pool:\n%s", out);
	{
		char want[48];

		snprintf(want, sizeof(want), "\"pool\": %s,", poolid);
		ck_assert_msg(strstr(out, want) != NULL,
		    "ps --json lacks %s:\n%s", want, out);
	}

	ck_assert_int_eq(pm_process_kill(p), PM_OK);
	ck_assert_int_eq(join_code(p), -SIGKILL);
	pm_process_free(p);
	ck_assert_int_eq(pm_pool_close(pool), PM_OK);
	ck_assert_int_eq(pm_pool_join(pool), PM_OK);
	pm_pool_free(pool);
}
END_TEST

/* shutdown: pmd stops (its workers end) and nobody answers after. */
START_TEST(t_shutdown)
{
	struct th_pmd other;
	pm_process *p;
	pm_conn *c;
	pid_t pid;

	ck_assert_int_eq(th_pmd_start(&other, NULL), 0);
	c = pm_connect(other.sock);
	ck_assert_ptr_nonnull(c);
	p = pm_process_new(c, th_module(), "wait_forever", NULL, 0);
	ck_assert_ptr_nonnull(p);
	ck_assert_int_eq(pm_process_start(p), PM_OK);
	pid = pm_process_pid(p);
	ck_assert_int_eq(th_pmctl(out, OUT, "--socket", other.sock, "shutdown",
	    "extra", NULL), 2);
	ck_assert_int_eq(th_pmctl(out, OUT, "--socket", other.sock, "shutdown",
	    NULL), 0);
	TH_WAIT(!th_pid_alive(other.pid), 10);
	ck_assert(!th_pid_alive(other.pid));
	ck_assert(!th_pid_alive(pid));
	ck_assert_int_eq(th_pmctl(out, OUT, "--socket", other.sock, "ping",
	    NULL), 3);
	ck_assert_int_eq(th_pmctl(out, OUT, "--socket", other.sock, "shutdown",
	    NULL), 3);
	pm_process_free(p);
	pm_disconnect(c);
	ck_assert_int_eq(th_pmd_stop(&other), 0);
}
END_TEST

START_TEST(t_kill)
{
	pm_process *p;
	char pid[32];

	p = start_forever("pmctl-kill-term");
	snprintf(pid, sizeof(pid), "%d", (int)pm_process_pid(p));
	ck_assert_int_eq(th_pmctl(out, OUT, "--socket", pmd.sock, "kill", pid,
	    NULL), 0);
	ck_assert_int_eq(join_code(p), -SIGTERM);
	pm_process_free(p);

	p = start_forever("pmctl-kill-kill");
	snprintf(pid, sizeof(pid), "%d", (int)pm_process_pid(p));
	ck_assert_int_eq(th_pmctl(out, OUT, "--socket", pmd.sock, "kill",
	    "-s", "KILL", pid, NULL), 0);
	ck_assert_int_eq(join_code(p), -SIGKILL);
	pm_process_free(p);

	p = start_forever("pmctl-kill-num");
	snprintf(pid, sizeof(pid), "%d", (int)pm_process_pid(p));
	ck_assert_int_eq(th_pmctl(out, OUT, "--socket", pmd.sock, "kill",
	    "-s", "2", pid, NULL), 0);
	ck_assert_int_eq(join_code(p), -SIGINT);
	pm_process_free(p);

	/* not a worker: refused, and nothing is signalled */
	snprintf(pid, sizeof(pid), "%d", (int)pmd.pid);
	ck_assert_int_eq(th_pmctl(out, OUT, "--socket", pmd.sock, "kill", pid,
	    NULL), 1);
	ck_assert(th_pid_alive(pmd.pid));
	ck_assert_int_eq(th_pmctl(out, OUT, "--socket", pmd.sock, "kill",
	    "-s", "NOSUCHSIG", pid, NULL), 2);
}
END_TEST

START_TEST(t_run)
{
	ck_assert_int_eq(th_pmctl(out, OUT, "--socket", pmd.sock, "run", "--",
	    "/bin/sh", "-c", "exit 3", NULL), 3);
	ck_assert_int_eq(th_pmctl(out, OUT, "--socket", pmd.sock, "run", "--",
	    "sh", "-c", "kill -TERM $$", NULL), 128 + SIGTERM);
	ck_assert_int_eq(th_pmctl(out, OUT, "--socket", pmd.sock, "run", "--",
	    "echo", "hi", NULL), 0);
	ck_assert_str_eq(out, "hi\n");
	ck_assert_int_eq(th_pmctl(out, OUT, "--socket", pmd.sock, "run",
	    "--name", "named-run", "--", "true", NULL), 0);
}
END_TEST

/* A program that cannot be run: 127 not found, 126 not executable, as a
 * shell; one message that names the path once. */
START_TEST(t_run_noexec)
{
	char cmd[PATH_MAX + 256], err[4096];
	const char *argv[] = { "/bin/sh", "-c", cmd, NULL };
	const char *at;

	snprintf(cmd, sizeof(cmd), "%s --socket %s run -- /nonexistent/pm_prog "
	    "2>&1", th_env("PMCTL_BIN"), pmd.sock);
	ck_assert_int_eq(th_run(argv, err, sizeof(err), 30), 127);
	ck_assert_msg((at = strstr(err, "/nonexistent/pm_prog")) != NULL &&
	    strstr(at + 1, "/nonexistent/pm_prog") == NULL &&
	    strchr(err, '\n') == err + strlen(err) - 1, "said: %s", err);
	ck_assert_int_eq(th_pmctl(out, OUT, "--socket", pmd.sock, "run", "--",
	    "no-such-program-pm", NULL), 127);
	ck_assert_int_eq(th_pmctl(out, OUT, "--socket", pmd.sock, "run", "--",
	    "/etc/passwd", NULL), 126);		/* not executable */
	ck_assert_int_eq(th_pmctl(out, OUT, "--socket", pmd.sock, "run", "--",
	    "/", NULL), 126);			/* a directory */
}
END_TEST

/* --json everywhere: errors carry the code and the specific message; kill
 * answers; queue items are strings when UTF-8, else base64. */
START_TEST(t_json_errors)
{
	char pid[32];
	pm_process *p;

	ck_assert_int_eq(pmctl_json_args("queue", "get", "nothere", NULL), 1);
	ck_assert_msg(strstr(out, "\"ok\": false") &&
	    strstr(out, "\"code\": \"PM_ENOENT\"") &&
	    strstr(out, "\"error\": \"no queue nothere\""), "%s", out);
	ck_assert_int_eq(pmctl_json_args("kill", "notapid", NULL), 2);
	ck_assert_msg(strstr(out, "\"code\": \"PM_EINVAL\"") &&
	    strstr(out, "notapid"), "%s", out);

	p = start_forever("pmctl-json-kill");
	snprintf(pid, sizeof(pid), "%d", (int)pm_process_pid(p));
	ck_assert_int_eq(pmctl_json_args("kill", pid, NULL), 0);
	ck_assert_msg(strstr(out, "\"ok\": true") && has_number(out,
	    pm_process_pid(p)) && looks_json(out), "%s", out);
	ck_assert_int_eq(join_code(p), -SIGTERM);
	pm_process_free(p);

	ck_assert_int_eq(pmctl_json_args("queue", "put", "--create", "jq",
	    "caf\xc3\xa9", NULL), 0);
	ck_assert_int_eq(pmctl_json_args("queue", "put", "jq", "\xff\xfe", NULL),
	    0);
	ck_assert_int_eq(pmctl_json_args("queue", "get", "jq", NULL), 0);
	ck_assert_msg(strstr(out, "\"item\": \"caf\xc3\xa9\"") &&
	    strstr(out, "encoding") == NULL, "%s", out);
	ck_assert_int_eq(pmctl_json_args("queue", "get", "jq", NULL), 0);
	ck_assert_msg(strstr(out, "\"item\": \"//4=\"") &&
	    strstr(out, "\"encoding\": \"base64\""), "%s", out);
	ck_assert_int_eq(pmctl_json_args("queue", "rm", "jq", NULL), 0);
}
END_TEST

/* --private finds this uid's one private pmd; pmctl private lists it. */
START_TEST(t_private)
{
	char xdg[PATH_MAX], want[64];
	const char *argv[] = { th_env("PMCTL_BIN"), "--private", "ping", NULL };
	const char *largv[] = { th_env("PMCTL_BIN"), "--json", "private", NULL };
	pm_conn *c;

	ck_assert_int_eq(th_mkdtemp(xdg, sizeof(xdg)), 0);
	setenv("XDG_RUNTIME_DIR", xdg, 1);
	unsetenv("PMD_SOCKET");
	setenv("PMD_BIN", th_env("PMD_BIN"), 1);
	ck_assert_int_eq(th_run(argv, out, OUT, 30), 3);	/* none yet */
	c = pm_connect(NULL);
	ck_assert_msg(c != NULL, "%s", pm_last_message());
	snprintf(want, sizeof(want), "(pid %d)", (int)pm_daemon_pid(c));
	ck_assert_int_eq(th_run(argv, out, OUT, 30), 0);
	ck_assert_msg(strstr(out, want) != NULL, "%s", out);
	ck_assert_int_eq(th_run(largv, out, OUT, 30), 0);
	ck_assert_msg(looks_json(out) && has_number(out, pm_daemon_pid(c)) &&
	    strstr(out, pm_conn_address(c)) != NULL, "%s", out);
	pm_disconnect(c);
	unsetenv("XDG_RUNTIME_DIR");
	TH_WAIT(th_run(argv, out, OUT, 30) == 3, 40);
	th_rmtree(xdg);
}
END_TEST

START_TEST(t_ping)
{
	char dead[PATH_MAX + 16];

	ck_assert_int_eq(th_pmctl(out, OUT, "--socket", pmd.sock, "ping",
	    NULL), 0);
	ck_assert_int_eq(th_pmctl(out, OUT, "--socket", "/nonexistent/pmd.sock",
	    "ping", NULL), 3);
	ck_assert_int_eq(th_pmctl(out, OUT, "--socket", "/nonexistent/pmd.sock",
	    "status", NULL), 3);
	/* a stopped daemon: its socket file may linger, nobody answers */
	snprintf(dead, sizeof(dead), "%s", pmd.sock);
	{
		struct th_pmd other;

		ck_assert_int_eq(th_pmd_start(&other, NULL), 0);
		snprintf(dead, sizeof(dead), "%s", other.sock);
		ck_assert_int_eq(th_pmctl(out, OUT, "--socket", dead, "ping",
		    NULL), 0);
		kill(other.pid, SIGKILL);	/* leaves the socket file */
		ck_assert_int_eq(th_pmctl(out, OUT, "--socket", dead, "ping",
		    NULL), 3);
		th_pmd_stop(&other);
	}
	ck_assert_int_eq(th_pmctl(out, OUT, "--socket", dead, "ping", NULL),
	    3);
}
END_TEST

static const char *const bad_usage[][4] = {
	{ NULL },
	{ "frobnicate", NULL },
	{ "kill", NULL },
	{ "kill", "notapid", NULL },
	{ "run", NULL },
	{ "run", "--", NULL },
	{ "ps", "--no-such-option", NULL },
	{ "--no-such-option", "status", NULL },
	{ "status", "extra", NULL },
	{ "ping", "extra", NULL },
	{ "queues", "extra", NULL },
	{ "queue", "put", "q", NULL },
	{ "queue", "get", NULL },
	{ "queue", "get", "--timeout", NULL },
	{ "private", "extra", NULL },
};

/* What a usage error says: what is wrong, not a generic line. */
START_TEST(t_usage_says_what)
{
	static const struct {
		const char	*args;
		const char	*says;
	} cases[] = {
		{ "--socket", "--socket needs a value" },
		{ "--socket S queue put q", "DATA is missing" },
		{ "--socket S status extra", "unexpected argument 'extra'" },
		{ "--socket S kill", "PID is missing" },
		{ "--socket S queue get --timeout", "--timeout needs a value" },
		{ "--socket S queue rm --create q", "queue rm: --create is for "
		    "put" },
		{ "--socket S queue rm -t 1 q", "--timeout is for put or get" },
		{ "--socket S dict get --create d k", "--create is for set" },
		{ "--socket S dict set d k", "dict set: VALUE is missing" },
		{ "--socket S dict", "dict: get, set, del or keys?" },
		{ "--socket S dict get --timeout 1 d k", "unknown option "
		    "--timeout" },
		{ "--socket S frob", "unknown command 'frob'" },
	};
	char cmd[PATH_MAX + 512];
	const char *argv[] = { "/bin/sh", "-c", cmd, NULL };
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		snprintf(cmd, sizeof(cmd), "%s %s 2>&1", th_env("PMCTL_BIN"),
		    cases[i].args);
		ck_assert_int_eq(th_run(argv, out, OUT, 30), 2);
		ck_assert_msg(strstr(out, cases[i].says) != NULL,
		    "pmctl %s said: %s", cases[i].args, out);
	}
}
END_TEST

START_TEST(t_usage)
{
	const char *const *a = bad_usage[_i];
	int r;

	r = th_pmctl(out, OUT, "--socket", pmd.sock, a[0], a[0] ? a[1] : NULL,
	    a[0] && a[1] ? a[2] : NULL, NULL);
	ck_assert_msg(r == 2, "pmctl %s %s: exit %d, want 2", a[0] ? a[0] : "",
	    a[0] && a[1] ? a[1] : "", r);
}
END_TEST

static const char *const help_cmds[] = {
	NULL, "status", "ps", "kill", "run", "ping", "shutdown",
};

START_TEST(t_help)
{
	const char *cmd = help_cmds[_i];

	if (cmd == NULL)
		ck_assert_int_eq(th_pmctl(out, OUT, "--help", NULL), 0);
	else
		ck_assert_int_eq(th_pmctl(out, OUT, cmd, "--help", NULL), 0);
	ck_assert_msg(strlen(out) > 10, "pmctl %s --help printed nothing",
	    cmd ? cmd : "");
	if (cmd != NULL)
		ck_assert_msg(strstr(out, cmd) != NULL,
		    "pmctl %s --help does not mention %s", cmd, cmd);
}
END_TEST

static Suite *
pmctl_suite(void)
{
	Suite *s = suite_create("pmctl");
	TCase *tc = th_tcase(s, "pmctl", setup, teardown, 120);

	tcase_add_test(tc, t_status);
	tcase_add_test(tc, t_ps);
	tcase_add_test(tc, t_ps_pool);
	tcase_add_test(tc, t_shutdown);
	tcase_add_test(tc, t_kill);
	tcase_add_test(tc, t_run);
	tcase_add_test(tc, t_run_noexec);
	tcase_add_test(tc, t_json_errors);
	tcase_add_test(tc, t_private);
	tcase_add_test(tc, t_usage_says_what);
	tcase_add_test(tc, t_ping);
	tcase_add_loop_test(tc, t_usage, 0,
	    (int)(sizeof(bad_usage) / sizeof(bad_usage[0])));
	tcase_add_loop_test(tc, t_help, 0,
	    (int)(sizeof(help_cmds) / sizeof(help_cmds[0])));
	return s;
}

int
main(void)
{
	return th_run_suite(pmctl_suite());
}
