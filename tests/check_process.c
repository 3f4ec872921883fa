/*
 * check_process.c - Process against a real pmd on a private socket:
 * lifecycle, join timeouts, exit codes, sentinels, many at once, the clean
 * worker contract, nested processes, signals during join, missing targets,
 * client disconnects, a killed daemon and private-pmd discovery, module
 * paths relative to the client's directory, and start/join cycles
 * without leaks (10,000 under make soak, 1,000 under make check).
 */
#include <sys/types.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "pmclient.h"

static const char *const pmd_args[] = { "--max-workers", "1000", NULL };

static struct th_pmd pmd;
static pm_conn *conn;
static int base_self;		/* client fds before connecting */
static int base_pmd;		/* pmd fds with no client */
static int base_conn;		/* pmd fds with our connection */

static void
setup(void)
{
	base_self = th_fd_count(0);
	ck_assert_int_eq(th_pmd_start(&pmd, pmd_args), 0);
	base_pmd = th_fd_count(pmd.pid);
	ck_assert_int_gt(base_pmd, 0);
	conn = pm_connect(pmd.sock);
	ck_assert_msg(conn != NULL, "pm_connect: %s", pm_last_message());
	ck_assert_int_eq(pm_daemon_pid(conn), pmd.pid);
	base_conn = th_fd_count(pmd.pid);
}

static void
teardown(void)
{
	pm_disconnect(conn);
	conn = NULL;
	ck_assert_int_eq(th_fd_count(0), base_self + 0);
	th_pmd_settled(&pmd, base_pmd, 10);
	ck_assert_int_eq(th_pmd_stop(&pmd), 0);
}

static pm_process *
new_fn(const char *fn, const char *arg)
{
	pm_process *p;

	p = pm_process_new(conn, th_module(), fn, arg, arg ? strlen(arg) : 0);
	ck_assert_msg(p != NULL, "pm_process_new %s: %s", fn,
	    pm_last_message());
	return p;
}

static pm_process *
start_fn(const char *fn, const char *arg)
{
	pm_process *p = new_fn(fn, arg);
	int r;

	r = pm_process_start(p);
	ck_assert_msg(r == PM_OK, "start %s: %d %s", fn, r, pm_last_message());
	return p;
}

static int
join_code(pm_process *p)
{
	int code = -12345, r;

	r = pm_process_join(p, 60);
	ck_assert_msg(r == PM_OK, "join: %d %s", r, pm_last_message());
	ck_assert_int_eq(pm_process_exitcode(p, &code), PM_OK);
	return code;
}

static int
listed(pid_t pid)
{
	pid_t pids[256];
	int n, i;

	n = pm_active_children(conn, pids, 256);
	ck_assert_int_ge(n, 0);
	for (i = 0; i < n && i < 256; i++)
		if (pids[i] == pid)
			return 1;
	return 0;
}

START_TEST(t_lifecycle)
{
	pm_process *p = new_fn("sleep_ms", "400");
	int code = -1;
	pid_t pid;

	ck_assert_int_eq(pm_process_is_alive(p), 0);
	ck_assert_int_eq(pm_process_exitcode(p, &code), PM_ESTATE);
	ck_assert_int_eq(pm_last_error(), PM_ESTATE);
	ck_assert_int_eq(pm_process_pid(p), 0);
	ck_assert_int_eq(pm_process_sentinel(p), -1);
	ck_assert_ptr_nonnull(pm_process_name(p));
	ck_assert_msg(strncmp(pm_process_name(p), "Process-", 8) == 0,
	    "default name %s", pm_process_name(p));
	ck_assert_int_eq(pm_active_children(conn, NULL, 0), 0);

	ck_assert_int_eq(pm_process_start(p), PM_OK);
	pid = pm_process_pid(p);
	ck_assert_int_gt(pid, 0);
	ck_assert_int_eq(pm_process_is_alive(p), 1);
	ck_assert(th_pid_alive(pid));
	ck_assert_int_eq(pm_process_exitcode(p, &code), PM_ESTATE);
	ck_assert(listed(pid));
	ck_assert_int_eq(pm_active_children(conn, NULL, 0), 1);

	ck_assert_int_eq(pm_process_join(p, -1), PM_OK);
	ck_assert_int_eq(pm_process_is_alive(p), 0);
	ck_assert_int_eq(pm_process_exitcode(p, &code), PM_OK);
	ck_assert_int_eq(code, 0);
	ck_assert_ptr_null(pm_process_error(p));
	ck_assert(!listed(pid));
	ck_assert_int_eq(pm_process_pid(p), pid);
	/* joining again is fine */
	ck_assert_int_eq(pm_process_join(p, 0), PM_OK);
	pm_process_free(p);
}
END_TEST

START_TEST(t_join_timeout)
{
	pm_process *p = start_fn("wait_forever", NULL);
	double t0, dt;

	ck_assert_int_eq(pm_process_join(p, 0), PM_ETIMEDOUT);
	ck_assert_int_eq(pm_last_error(), PM_ETIMEDOUT);
	ck_assert_int_eq(pm_process_is_alive(p), 1);
	t0 = th_now();
	ck_assert_int_eq(pm_process_join(p, 0.1), PM_ETIMEDOUT);
	dt = th_now() - t0;
	ck_assert_msg(dt >= 0.1, "join(0.1) returned after %.4f s", dt);
	ck_assert_int_eq(pm_process_is_alive(p), 1);
	ck_assert(th_pid_alive(pm_process_pid(p)));
	ck_assert_int_eq(pm_process_terminate(p), PM_OK);
	ck_assert_int_eq(join_code(p), -SIGTERM);
	pm_process_free(p);
}
END_TEST

/* Exit codes: what the target does, or what is done to it. */
enum act { A_NONE, A_TERM, A_KILL, A_INT };
static const struct {
	const char *fn;
	enum act act;
	int code;
} codes[] = {
	{ "noop", A_NONE, 0 },
	{ "ret7", A_NONE, 7 },
	{ "exit8", A_NONE, 8 },
	{ "fail", A_NONE, 1 },
	{ "segv", A_NONE, -SIGSEGV },
	{ "wait_forever", A_TERM, -SIGTERM },
	{ "wait_forever", A_KILL, -SIGKILL },
	{ "wait_forever", A_INT, -SIGINT },
	{ "ignore_term", A_KILL, -SIGKILL },
};

START_TEST(t_exitcode)
{
	pm_process *p = start_fn(codes[_i].fn, NULL);
	int code, r = PM_OK;

	switch (codes[_i].act) {
	case A_NONE:
		break;
	case A_TERM:
		r = pm_process_terminate(p);
		break;
	case A_KILL:
		r = pm_process_kill(p);
		break;
	case A_INT:
		r = pm_process_signal(p, SIGINT);
		break;
	}
	ck_assert_int_eq(r, PM_OK);
	code = join_code(p);
	ck_assert_msg(code == codes[_i].code, "%s: exit code %d, want %d",
	    codes[_i].fn, code, codes[_i].code);
	if (strcmp(codes[_i].fn, "fail") == 0) {
		ck_assert_ptr_nonnull(pm_process_error(p));
		ck_assert_str_eq(pm_process_error(p), "failed on purpose");
	} else
		ck_assert_ptr_null(pm_process_error(p));
	/* signalling an ended process has no effect */
	ck_assert_int_eq(pm_process_terminate(p), PM_OK);
	ck_assert_int_eq(pm_process_exitcode(p, &code), PM_OK);
	ck_assert_int_eq(code, codes[_i].code);
	pm_process_free(p);
}
END_TEST

START_TEST(t_result)
{
	pm_bytes b = { NULL, 0 };
	pm_process *p;
	char *big;
	size_t n = 300000, i;

	p = start_fn("sq", "12");
	ck_assert_int_eq(join_code(p), 0);
	ck_assert_int_eq(pm_process_result(p, &b), PM_OK);
	ck_assert_uint_eq(b.len, 3);
	ck_assert_mem_eq(b.data, "144", 3);
	pm_bytes_free(&b);
	ck_assert_ptr_null(b.data);
	ck_assert_ptr_null(pm_process_error(p));
	pm_process_free(p);

	/* above the memfd threshold, both ways */
	big = malloc(n + 1);
	for (i = 0; i < n; i++)
		big[i] = (char)('a' + i % 26);
	big[n] = '\0';
	p = start_fn("echo", big);
	ck_assert_int_eq(join_code(p), 0);
	ck_assert_int_eq(pm_process_result(p, &b), PM_OK);
	ck_assert_uint_eq(b.len, n);
	ck_assert_mem_eq(b.data, big, n);
	pm_bytes_free(&b);
	pm_process_free(p);
	free(big);

	p = start_fn("fail", NULL);
	ck_assert_int_eq(join_code(p), 1);
	ck_assert_str_eq(pm_process_error(p), "failed on purpose");
	pm_process_free(p);
}
END_TEST

START_TEST(t_sentinel)
{
	pm_process *p = new_fn("wait_forever", NULL);
	struct pollfd pf;
	int s;

	ck_assert_int_eq(pm_process_sentinel(p), -1);
	ck_assert_int_eq(pm_process_start(p), PM_OK);
	s = pm_process_sentinel(p);
	ck_assert_int_ge(s, 0);
	pf.fd = s;
	pf.events = POLLIN;
	ck_assert_int_eq(poll(&pf, 1, 0), 0);
	ck_assert_int_eq(poll(&pf, 1, 200), 0);
	ck_assert_int_eq(pm_process_kill(p), PM_OK);
	pf.revents = 0;
	ck_assert_int_eq(poll(&pf, 1, 10000), 1);
	ck_assert(pf.revents & POLLIN);
	ck_assert_int_eq(join_code(p), -SIGKILL);
	pm_process_free(p);
}
END_TEST

#define MANY 100
#define CYCLES		10000	/* t_cycles under make soak */
#define CYCLES_CHECK	1000	/* the fewest: make check */
#define CYCLES_VALGRIND	200

START_TEST(t_many)
{
	pm_process *p[MANY];
	int i;

	for (i = 0; i < MANY; i++)
		p[i] = start_fn("sleep_ms", "100");
	ck_assert_int_eq(pm_active_children(conn, NULL, 0) > 0, 1);
	for (i = 0; i < MANY; i++) {
		ck_assert_int_eq(join_code(p[i]), 0);
		pm_process_free(p[i]);
	}
	ck_assert_int_eq(pm_active_children(conn, NULL, 0), 0);
}
END_TEST

START_TEST(t_many_terminated)
{
	pm_process *p[MANY];
	pid_t pids[4];
	int i, n;

	for (i = 0; i < MANY; i++)
		p[i] = start_fn("wait_forever", NULL);
	n = pm_active_children(conn, pids, 4);
	ck_assert_int_eq(n, MANY);	/* the count, beyond max */
	for (i = 0; i < MANY; i++)
		ck_assert_int_eq(pm_process_terminate(p[i]), PM_OK);
	for (i = 0; i < MANY; i++) {
		ck_assert_int_eq(join_code(p[i]), -SIGTERM);
		pm_process_free(p[i]);
	}
	TH_WAIT(th_zombies(pmd.pid) == 0 &&
	    th_fd_count(pmd.pid) == base_conn, 10);
	ck_assert_int_eq(th_zombies(pmd.pid), 0);
	ck_assert_int_eq(th_fd_count(pmd.pid), base_conn);
}
END_TEST

/* The worker sees 0, 1, 2, its channel and what was passed: nothing else,
 * not even a high fd the client holds without O_CLOEXEC. */
START_TEST(t_clean_fds)
{
	pm_bytes b = { NULL, 0 };
	pm_process *p;
	char got[512], text[64];
	int hi, pfd[2];
	ssize_t n;

	pfd[0] = open("/dev/null", O_RDONLY);	/* inheritable on purpose */
	hi = fcntl(pfd[0], F_DUPFD, 900);
	ck_assert_int_ge(hi, 900);
	close(pfd[0]);

	p = start_fn("list_fds", NULL);
	ck_assert_int_eq(join_code(p), 0);
	ck_assert_int_eq(pm_process_result(p, &b), PM_OK);
	snprintf(got, sizeof(got), "%.*s", (int)b.len, (char *)b.data);
	ck_assert_str_eq(got, "0 1 2 3");
	pm_bytes_free(&b);
	pm_process_free(p);

	/* passed fds keep their numbers; the channel takes the lowest free */
	ck_assert_int_eq(pipe2(pfd, O_CLOEXEC), 0);
	p = new_fn("list_fds", NULL);
	ck_assert_int_eq(pm_process_set_fd(p, 3, pfd[1]), PM_OK);
	ck_assert_int_eq(pm_process_set_fd(p, 7, pfd[1]), PM_OK);
	ck_assert_int_eq(pm_process_start(p), PM_OK);
	ck_assert_int_eq(join_code(p), 0);
	ck_assert_int_eq(pm_process_result(p, &b), PM_OK);
	snprintf(got, sizeof(got), "%.*s", (int)b.len, (char *)b.data);
	ck_assert_str_eq(got, "0 1 2 3 4 7");
	pm_bytes_free(&b);
	pm_process_free(p);

	/* a passed fd is the same file: write through it */
	p = new_fn("write_fd", "7 through fd 7");
	ck_assert_int_eq(pm_process_set_fd(p, 7, pfd[1]), PM_OK);
	ck_assert_int_eq(pm_process_start(p), PM_OK);
	ck_assert_int_eq(join_code(p), 0);
	pm_process_free(p);
	/* and stdout replaced */
	p = new_fn("write_fd", "1 +stdout");
	ck_assert_int_eq(pm_process_set_fd(p, 1, pfd[1]), PM_OK);
	ck_assert_int_eq(pm_process_start(p), PM_OK);
	ck_assert_int_eq(join_code(p), 0);
	pm_process_free(p);
	close(pfd[1]);
	n = read(pfd[0], text, sizeof(text) - 1);
	ck_assert_int_gt(n, 0);
	text[n] = '\0';
	ck_assert_str_eq(text, "through fd 7+stdout");
	close(pfd[0]);
	close(hi);
}
END_TEST

/* By default the worker's 0, 1, 2 are the client's own. */
START_TEST(t_stdio)
{
	pm_bytes b = { NULL, 0 };
	pm_process *p;
	struct stat st;
	char got[256], want[256];
	size_t off = 0;
	int fd;

	for (fd = 0; fd < 3; fd++) {
		ck_assert_int_eq(fstat(fd, &st), 0);
		off += (size_t)snprintf(want + off, sizeof(want) - off,
		    "%s%lu:%lu", fd ? " " : "", (unsigned long)st.st_dev,
		    (unsigned long)st.st_ino);
	}
	p = start_fn("fd_ident", "0 1 2");
	ck_assert_int_eq(join_code(p), 0);
	ck_assert_int_eq(pm_process_result(p, &b), PM_OK);
	snprintf(got, sizeof(got), "%.*s", (int)b.len, (char *)b.data);
	pm_bytes_free(&b);
	pm_process_free(p);
	ck_assert_str_eq(got, want);
}
END_TEST

/* Empty signal mask and default dispositions, whatever the client has. */
START_TEST(t_signal_state)
{
	pm_bytes b = { NULL, 0 };
	pm_process *p;
	sigset_t set;
	char got[1024], *line, *save = NULL;
	int lines = 0;

	sigemptyset(&set);
	sigaddset(&set, SIGUSR1);
	sigaddset(&set, SIGCHLD);
	sigprocmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);
	signal(SIGHUP, SIG_IGN);

	p = start_fn("sigstate", NULL);
	ck_assert_int_eq(join_code(p), 0);
	ck_assert_int_eq(pm_process_result(p, &b), PM_OK);
	snprintf(got, sizeof(got), "%.*s", (int)b.len, (char *)b.data);
	pm_bytes_free(&b);
	pm_process_free(p);
	for (line = strtok_r(got, "\n", &save); line != NULL;
	    line = strtok_r(NULL, "\n", &save), lines++) {
		char *v = strchr(line, ':');

		ck_assert_ptr_nonnull(v);
		ck_assert_msg(strtoull(v + 1, NULL, 16) == 0,
		    "worker has %s", line);
	}
	ck_assert_int_eq(lines, 3);
	sigprocmask(SIG_UNBLOCK, &set, NULL);
	signal(SIGPIPE, SIG_DFL);
	signal(SIGHUP, SIG_DFL);
}
END_TEST

START_TEST(t_nested)
{
	pm_bytes b = { NULL, 0 };
	pm_process *p;
	char arg[4096], got[256];
	int code = -1, cpid = 0;

	snprintf(arg, sizeof(arg), "%s\nret7\n", th_module());
	p = start_fn("nested", arg);
	ck_assert_int_eq(join_code(p), 0);
	ck_assert_msg(pm_process_error(p) == NULL, "nested: %s",
	    pm_process_error(p));
	ck_assert_int_eq(pm_process_result(p, &b), PM_OK);
	snprintf(got, sizeof(got), "%.*s", (int)b.len, (char *)b.data);
	pm_bytes_free(&b);
	ck_assert_int_eq(sscanf(got, "exit=%d pid=%d", &code, &cpid), 2);
	ck_assert_int_eq(code, 7);
	ck_assert_int_gt(cpid, 0);
	ck_assert_int_ne(cpid, pm_process_pid(p));
	pm_process_free(p);

	/* the nested one can fail to start: its error comes back */
	snprintf(arg, sizeof(arg), "%s\nno_such_function\n", th_module());
	p = start_fn("nested", arg);
	ck_assert_int_eq(join_code(p), 1);
	ck_assert_ptr_nonnull(pm_process_error(p));
	ck_assert_msg(strstr(pm_process_error(p), "no_such_function") != NULL,
	    "nested error: %s", pm_process_error(p));
	pm_process_free(p);
}
END_TEST

static volatile sig_atomic_t alarms;

static void
on_alarm(int sig)
{
	(void)sig;
	alarms++;
}

/* SIGALRM every 20 ms, handled, without SA_RESTART: join still works.
 * Results are checked once the timer is off (a failed check must not
 * leave it running). */
START_TEST(t_signal_during_join)
{
	struct itimerval it;
	struct sigaction sa;
	pm_process *p, *q;
	double t0, dt;
	int r1, r2, r3, c1 = -1, c2 = -1;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_alarm;
	sa.sa_flags = 0;
	sigemptyset(&sa.sa_mask);
	p = start_fn("sleep_ms", "500");
	q = start_fn("wait_forever", NULL);
	ck_assert_int_eq(sigaction(SIGALRM, &sa, NULL), 0);
	memset(&it, 0, sizeof(it));
	it.it_value.tv_usec = 20000;
	it.it_interval.tv_usec = 20000;
	ck_assert_int_eq(setitimer(ITIMER_REAL, &it, NULL), 0);

	r1 = pm_process_join(p, -1);
	/* a timed join is not cut short either */
	t0 = th_now();
	r2 = pm_process_join(q, 0.5);
	dt = th_now() - t0;

	memset(&it, 0, sizeof(it));
	setitimer(ITIMER_REAL, &it, NULL);
	signal(SIGALRM, SIG_DFL);

	ck_assert_int_eq(r1, PM_OK);
	ck_assert_int_eq(pm_process_exitcode(p, &c1), PM_OK);
	ck_assert_int_eq(c1, 0);
	ck_assert_int_gt(alarms, 3);
	ck_assert_int_eq(r2, PM_ETIMEDOUT);
	ck_assert_msg(dt >= 0.5, "join(0.5) returned after %.3f s", dt);
	r3 = pm_process_kill(q);
	ck_assert_int_eq(r3, PM_OK);
	c2 = join_code(q);
	ck_assert_int_eq(c2, -SIGKILL);
	pm_process_free(p);
	pm_process_free(q);
}
END_TEST

/* Missing module, function, program: PM_ENOENT naming it, no process. */
static const struct {
	int exec;
	const char *module_or_path;	/* NULL: the test module */
	const char *function;
	const char *named;
} missing[] = {
	{ 0, "/nonexistent/pm_nope.so", "noop", "pm_nope.so" },
	{ 0, "pm_no_such_module", "noop", "pm_no_such_module" },
	{ 0, NULL, "no_such_function", "no_such_function" },
	{ 1, "/nonexistent/pm_no_prog", NULL, "pm_no_prog" },
	{ 1, "pm_no_such_program_xyz", NULL, "pm_no_such_program_xyz" },
};

START_TEST(t_enoent)
{
	char *argv[] = { (char *)(uintptr_t)"x", NULL };
	const char *msg;
	pm_process *p;
	int code, r;

	if (missing[_i].exec)
		p = pm_process_new_exec(conn, missing[_i].module_or_path, argv,
		    NULL);
	else
		p = pm_process_new(conn, missing[_i].module_or_path ?
		    missing[_i].module_or_path : th_module(),
		    missing[_i].function, NULL, 0);
	ck_assert_ptr_nonnull(p);
	r = pm_process_start(p);
	msg = pm_last_message();
	ck_assert_msg(r == PM_ENOENT, "start: %d (%s), want PM_ENOENT", r,
	    msg);
	ck_assert_int_eq(pm_last_error(), PM_ENOENT);
	ck_assert_ptr_nonnull(msg);
	ck_assert_msg(strstr(msg, missing[_i].named) != NULL,
	    "message \"%s\" does not name %s", msg, missing[_i].named);
	ck_assert_int_eq(pm_process_is_alive(p), 0);
	ck_assert_int_eq(pm_process_exitcode(p, &code), PM_ESTATE);
	ck_assert_int_eq(pm_active_children(conn, NULL, 0), 0);
	pm_process_free(p);
}
END_TEST

START_TEST(t_exec)
{
	char *sh5[] = { (char *)(uintptr_t)"sh", (char *)(uintptr_t)"-c",
	    (char *)(uintptr_t)"exit 5", NULL };
	char *shenv[] = { (char *)(uintptr_t)"sh", (char *)(uintptr_t)"-c",
	    (char *)(uintptr_t)"test \"$PM_T\" = bar && test -z \"$HOME\"",
	    NULL };
	char *env[] = { (char *)(uintptr_t)"PM_T=bar", NULL };
	char *shkill[] = { (char *)(uintptr_t)"sh", (char *)(uintptr_t)"-c",
	    (char *)(uintptr_t)"kill -USR1 $$", NULL };
	pm_process *p;

	p = pm_process_new_exec(conn, "sh", sh5, NULL);	/* $PATH */
	ck_assert_int_eq(pm_process_start(p), PM_OK);
	ck_assert_int_gt(pm_process_pid(p), 0);
	ck_assert_int_eq(join_code(p), 5);
	pm_process_free(p);

	p = pm_process_new_exec(conn, "/bin/sh", shenv, env);
	ck_assert_int_eq(pm_process_start(p), PM_OK);
	ck_assert_int_eq(join_code(p), 0);
	pm_process_free(p);

	p = pm_process_new_exec(conn, "/bin/sh", shkill, NULL);
	ck_assert_int_eq(pm_process_start(p), PM_OK);
	ck_assert_int_eq(join_code(p), -SIGUSR1);
	pm_process_free(p);
}
END_TEST

START_TEST(t_misuse)
{
	pm_process *p = new_fn("sleep_ms", "100");
	pm_bytes b = { NULL, 0 };
	int code;

	ck_assert_int_eq(pm_process_join(p, 0), PM_ESTATE);
	ck_assert_int_eq(pm_process_join(p, -1), PM_ESTATE);
	ck_assert_int_eq(pm_process_exitcode(p, &code), PM_ESTATE);
	ck_assert_int_eq(pm_process_result(p, &b), PM_ESTATE);
	ck_assert_int_eq(pm_process_sentinel(p), -1);
	ck_assert_int_eq(pm_process_pid(p), 0);
	ck_assert_int_eq(pm_process_set_fd(p, 1024, 1), PM_EINVAL);
	ck_assert_int_eq(pm_process_set_fd(p, -1, 1), PM_EINVAL);
	ck_assert_int_eq(pm_process_terminate(p), PM_ESTATE);
	ck_assert_int_eq(pm_process_is_alive(p), 0);
	ck_assert_int_eq(pm_process_set_name(p, "misuse"), PM_OK);
	ck_assert_str_eq(pm_process_name(p), "misuse");
	ck_assert_int_eq(pm_process_start(p), PM_OK);
	ck_assert_int_eq(pm_process_start(p), PM_ESTATE);
	ck_assert_int_eq(pm_last_error(), PM_ESTATE);
	ck_assert_int_eq(pm_process_set_daemon(p, 1), PM_ESTATE);
	ck_assert_int_eq(join_code(p), 0);
	ck_assert_int_eq(pm_process_start(p), PM_ESTATE);
	pm_process_free(p);
	ck_assert_ptr_nonnull(pm_strerror(PM_ENOENT));
	ck_assert_ptr_nonnull(pm_strerror(12345));
}
END_TEST

/* The result of a whoami task run as a Process named name (NULL: the
 * default), as "NAME PARENT_PID". */
static void
whoami(const char *name, char *out, size_t cap)
{
	pm_process *p = new_fn("whoami", NULL);
	pm_bytes b = { NULL, 0 };

	if (name != NULL)
		ck_assert_int_eq(pm_process_set_name(p, name), PM_OK);
	ck_assert_int_eq(th_run_process(p, 60), 0);
	ck_assert_int_eq(pm_process_result(p, &b), PM_OK);
	ck_assert_uint_lt(b.len, cap);
	memcpy(out, b.data, b.len);
	out[b.len] = '\0';
	pm_bytes_free(&b);
	pm_process_free(p);
}

/* pm_task_name: the Process's name or its default; pm_task_parent_pid:
 * the client that started it. */
START_TEST(t_task_introspection)
{
	char got[512], want[512];
	long pid;

	whoami("cruncher", got, sizeof(got));
	snprintf(want, sizeof(want), "cruncher %ld", (long)getpid());
	ck_assert_str_eq(got, want);
	whoami(NULL, got, sizeof(got));
	ck_assert_msg(strncmp(got, "Process-", 8) == 0, "name: %s", got);
	ck_assert_int_eq(sscanf(strchr(got, ' '), "%ld", &pid), 1);
	ck_assert_int_eq(pid, (long)getpid());
}
END_TEST

/* pm_wait: the lowest index of an ended process, timeouts, bad input. */
START_TEST(t_wait)
{
	pm_process *ps[3], *idle;
	double t0;
	int i;

	ps[0] = start_fn("sleep_ms", "30000");
	ps[1] = start_fn("sleep_ms", "300");
	ps[2] = start_fn("sleep_ms", "30000");
	t0 = th_now();
	ck_assert_int_eq(pm_wait(ps, 3, 0), PM_ETIMEDOUT);
	ck_assert_int_eq(pm_wait(ps, 3, 0.1), PM_ETIMEDOUT);
	ck_assert(th_now() - t0 >= 0.1);
	ck_assert_int_eq(pm_wait(ps, 3, 60), 1);
	ck_assert_int_eq(pm_process_is_alive(ps[0]), 1);
	ck_assert_int_eq(pm_wait(ps, 3, -1), 1);	/* still ended */
	ck_assert_int_eq(pm_process_kill(ps[2]), PM_OK);
	ck_assert_int_eq(pm_wait(ps, 1, 0), PM_ETIMEDOUT);
	ck_assert_int_eq(pm_wait(ps + 2, 1, 60), 0);
	ck_assert_int_eq(pm_wait(ps, 3, 60), 1);	/* the lowest */

	idle = new_fn("noop", NULL);
	ck_assert_int_eq(pm_wait(ps, 0, 0), PM_EINVAL);
	ck_assert_int_eq(pm_wait(NULL, 1, 0), PM_EINVAL);
	ck_assert_int_eq(pm_wait(&idle, 1, 0), PM_EINVAL);
	pm_process_free(idle);
	ck_assert_int_eq(pm_process_kill(ps[0]), PM_OK);
	for (i = 0; i < 3; i++) {
		ck_assert_int_eq(pm_process_join(ps[i], 60), PM_OK);
		pm_process_free(ps[i]);
	}
}
END_TEST

START_TEST(t_cpu_count)
{
	cpu_set_t set, all;
	int n = pm_cpu_count();

	ck_assert_int_ge(n, 1);
	ck_assert_int_eq(sched_getaffinity(0, sizeof(all), &all), 0);
	ck_assert_int_eq(n, CPU_COUNT(&all));
	/* affinity-aware: one CPU allowed, one counted */
	CPU_ZERO(&set);
	ck_assert_int_eq(sched_getaffinity(0, sizeof(set), &set), 0);
	for (int i = 0, first = 1; i < CPU_SETSIZE; i++)
		if (CPU_ISSET(i, &set)) {
			if (!first)
				CPU_CLR(i, &set);
			first = 0;
		}
	ck_assert_int_eq(sched_setaffinity(0, sizeof(set), &set), 0);
	n = pm_cpu_count();
	sched_setaffinity(0, sizeof(all), &all);
	ck_assert_int_eq(n, 1);
}
END_TEST

/* Client disconnect: its daemonic worker is gone within 2 s; its
 * non-daemonic one runs to the end and is reaped. */
START_TEST(t_disconnect)
{
	char done[PATH_MAX + 32], arg[PATH_MAX + 64];
	pm_process *d, *nd, *stubborn;
	pm_conn *c;
	pid_t dpid, ndpid, spid;
	struct stat st;

	snprintf(done, sizeof(done), "%s/nondaemonic.done", pmd.dir);
	snprintf(arg, sizeof(arg), "1500 %s", done);
	c = pm_connect(pmd.sock);
	ck_assert_ptr_nonnull(c);

	d = pm_process_new(c, th_module(), "wait_forever", NULL, 0);
	ck_assert_int_eq(pm_process_set_daemon(d, 1), PM_OK);
	ck_assert_int_eq(pm_process_start(d), PM_OK);
	stubborn = pm_process_new(c, th_module(), "ignore_term", NULL, 0);
	ck_assert_int_eq(pm_process_set_daemon(stubborn, 1), PM_OK);
	ck_assert_int_eq(pm_process_start(stubborn), PM_OK);
	nd = pm_process_new(c, th_module(), "sleep_touch", arg, strlen(arg));
	ck_assert_int_eq(pm_process_start(nd), PM_OK);
	dpid = pm_process_pid(d);
	spid = pm_process_pid(stubborn);
	ndpid = pm_process_pid(nd);
	ck_assert(th_pid_alive(dpid) && th_pid_alive(ndpid));
	th_sleep(0.1);	/* let ignore_term install its SIG_IGN */
	pm_process_free(d);
	pm_process_free(nd);
	pm_process_free(stubborn);
	ck_assert(th_pid_alive(dpid));	/* freeing a handle ends nothing */

	pm_disconnect(c);
	TH_WAIT(!th_pid_alive(dpid), 2.0);
	ck_assert_msg(!th_pid_alive(dpid),
	    "daemonic worker %d alive 2 s after disconnect", (int)dpid);
	/* SIGKILL after a grace period for one that ignores SIGTERM */
	TH_WAIT(!th_pid_alive(spid), 30.0);
	ck_assert_msg(!th_pid_alive(spid), "SIGTERM-proof daemonic worker "
	    "%d alive 30 s after disconnect", (int)spid);

	TH_WAIT(!th_pid_alive(ndpid), 30.0);
	ck_assert_msg(stat(done, &st) == 0,
	    "non-daemonic worker did not run to the end");
	TH_WAIT(th_pid_state(dpid) == 0 && th_pid_state(ndpid) == 0 &&
	    th_pid_state(spid) == 0, 10.0);
	ck_assert_msg(th_pid_state(dpid) == 0 && th_pid_state(ndpid) == 0 &&
	    th_pid_state(spid) == 0, "workers not reaped");
	ck_assert_int_eq(th_zombies(pmd.pid), 0);
}
END_TEST

/* CYCLES start/join cycles (make soak; make check: CYCLES_CHECK): no fd
 * growth in pmd, its forker or here. */
START_TEST(t_cycles)
{
	int n = (int)(CYCLES * th_soak_scale()), i, self0, fork0, kids;
	pid_t forker;
	pm_process *p;

	/* warm up, then measure */
	for (i = 0; i < 10; i++) {
		p = start_fn("noop", NULL);
		ck_assert_int_eq(join_code(p), 0);
		pm_process_free(p);
	}
	if (n < CYCLES_CHECK)
		n = CYCLES_CHECK;
	if (th_valgrind())
		n = CYCLES_VALGRIND;
	self0 = th_fd_count(0);
	TH_WAIT(th_children(pmd.pid, NULL, 0) == 1, 5);
	kids = th_children(pmd.pid, NULL, 0);
	forker = th_pmd_forker(&pmd);
	ck_assert_int_gt(forker, 0);
	fork0 = th_fd_count(forker);
	for (i = 0; i < n; i++) {
		p = pm_process_new(conn, th_module(), i % 2 ? "noop" : "ret7",
		    NULL, 0);
		ck_assert_ptr_nonnull(p);
		ck_assert_msg(pm_process_start(p) == PM_OK, "cycle %d: %s",
		    i, pm_last_message());
		ck_assert_int_eq(join_code(p), i % 2 ? 0 : 7);
		pm_process_free(p);
		if (i % (n / 10) == n / 10 - 1)
			ck_assert_int_eq(th_fd_count(0), self0);
	}
	ck_assert_int_eq(th_fd_count(0), self0);
	TH_WAIT(th_zombies(pmd.pid) == 0 &&
	    th_fd_count(pmd.pid) == base_conn, 10);
	ck_assert_int_eq(th_zombies(pmd.pid), 0);
	ck_assert_int_eq(th_fd_count(pmd.pid), base_conn);
	ck_assert_int_eq(th_fd_count(forker), fork0);
	ck_assert_int_eq(th_children(pmd.pid, NULL, 0), kids);
}
END_TEST

/* pmd killed (SIGKILL) while join blocks: PM_ECONN promptly.  Then
 * pm_connect(NULL) starts a new private pmd that works.  Variant 0 kills
 * a harness pmd, variant 1 a private pmd pm_connect(NULL) started. */
START_TEST(t_pmd_killed)
{
	char xdg[PATH_MAX];
	struct th_pmd own;
	pm_process *p, *q;
	pm_conn *c, *c2;
	pid_t victim, killer, pid2;
	double t0, dt;
	int r, self0;

	if (access("/run/pmd/pmd.sock", F_OK) == 0) {
		fprintf(stderr, "skipped: a system pmd is installed\n");
		return;
	}
	ck_assert_int_eq(th_mkdtemp(xdg, sizeof(xdg)), 0);
	setenv("XDG_RUNTIME_DIR", xdg, 1);
	unsetenv("PMD_SOCKET");
	setenv("PMD_BIN", th_env("PMD_BIN"), 1);
	self0 = th_fd_count(0);

	memset(&own, 0, sizeof(own));
	if (_i == 0) {
		ck_assert_int_eq(th_pmd_start(&own, NULL), 0);
		c = pm_connect(own.sock);
	} else
		c = pm_connect(NULL);
	ck_assert_msg(c != NULL, "connect: %s", pm_last_message());
	victim = pm_daemon_pid(c);
	ck_assert_int_gt(victim, 0);
	p = pm_process_new(c, th_module(), "wait_forever", NULL, 0);
	ck_assert_int_eq(pm_process_start(p), PM_OK);

	if ((killer = fork()) == 0) {
		th_sleep(0.2);
		kill(victim, SIGKILL);
		_exit(0);
	}
	ck_assert_int_gt(killer, 0);
	t0 = th_now();
	r = pm_process_join(p, -1);
	dt = th_now() - t0;
	ck_assert_msg(r == PM_ECONN, "join: %d (%s), want PM_ECONN", r,
	    pm_last_message());
	ck_assert_msg(dt < 5.0, "join took %.2f s to see the loss", dt);
	waitpid(killer, NULL, 0);
	/* the orphaned worker is ours to clean up */
	if (pm_process_pid(p) > 0)
		kill(pm_process_pid(p), SIGKILL);
	ck_assert_int_eq(pm_process_start(p), PM_ESTATE);
	pm_process_free(p);
	q = pm_process_new(c, th_module(), "noop", NULL, 0);
	if (q != NULL) {
		ck_assert_int_eq(pm_process_start(q), PM_ECONN);
		pm_process_free(q);
	}
	pm_disconnect(c);
	if (_i == 0) {
		ck_assert_int_eq(th_pmd_stop(&own), -SIGKILL);
	} else
		waitpid(victim, NULL, WNOHANG);

	/* discovery now starts a fresh private pmd */
	c2 = pm_connect(NULL);
	ck_assert_msg(c2 != NULL, "pm_connect(NULL): %s", pm_last_message());
	pid2 = pm_daemon_pid(c2);
	ck_assert_int_gt(pid2, 0);
	ck_assert_int_ne(pid2, victim);
	q = pm_process_new(c2, th_module(), "ret7", NULL, 0);
	ck_assert_int_eq(th_run_process(q, 30), 7);
	pm_process_free(q);
	pm_disconnect(c2);
	/* a private pmd leaves with its last client */
	TH_WAIT(!th_pid_alive(pid2), 10.0);
	ck_assert_msg(!th_pid_alive(pid2), "private pmd %d still running",
	    (int)pid2);
	waitpid(pid2, NULL, WNOHANG);
	ck_assert_int_eq(th_fd_count(0), self0);
	th_rmtree(xdg);
}
END_TEST

/* The client out of fds when pmd's reply brings one (MSG_CTRUNC): that
 * start fails with PM_ESYS, the connection serves on. */
START_TEST(t_reply_fds_lost)
{
	pm_process *p = new_fn("ret7", NULL);
	struct rlimit old, full;
	int fd, r;

	for (fd = 0; fd < 3; fd++)	/* nothing to pass: no fd needed */
		ck_assert_int_eq(pm_process_set_fd(p, fd, -1), PM_OK);
	ck_assert_int_eq(getrlimit(RLIMIT_NOFILE, &old), 0);
	for (fd = 0; fcntl(fd, F_GETFD) != -1; fd++)
		;
	full = old;
	full.rlim_cur = (rlim_t)fd;
	ck_assert_int_eq(setrlimit(RLIMIT_NOFILE, &full), 0);
	r = pm_process_start(p);
	ck_assert_int_eq(setrlimit(RLIMIT_NOFILE, &old), 0);
	ck_assert_msg(r == PM_ESYS, "start out of fds: %d (%s)", r,
	    pm_last_message());
	ck_assert_msg(strstr(pm_last_message(), "file descriptors") != NULL,
	    "unclear error: %s", pm_last_message());
	ck_assert_int_eq(th_run_process(p, 10), 7);
	pm_process_free(p);
}
END_TEST

/* ---- module paths relative to the client ---- */

static char pathdir[PATH_MAX];		/* the test's tree; see setup_paths */

/* m.so: a copy of build/tests/<from> at dir/<to>. */
static void
place(const char *from, const char *to)
{
	char src[PATH_MAX], dst[2 * PATH_MAX];

	snprintf(src, sizeof(src), "%s/tests/%s", th_env("PM_BUILD"), from);
	snprintf(dst, sizeof(dst), "%s/%s", pathdir, to);
	th_copy_file(src, dst, 0644);
}

/*
 * pmd started in pathdir/pmd, which holds decoys (privtasks.so as m.so and
 * p.so), with pathdir/lib as its module_path; the client works in
 * pathdir/client, which holds the modules meant (tasks.so as m.so and
 * sub/m.so, pooltasks.so as p.so).
 */
static void
setup_paths(void)
{
	static const char *const dirs[] = { "pmd", "lib", "client",
	    "client/sub" };
	char d[2 * PATH_MAX], lib[2 * PATH_MAX];
	const char *args[] = { "--module-path", lib, NULL };
	size_t i;

	ck_assert_int_eq(th_mkdtemp(pathdir, sizeof(pathdir)), 0);
	for (i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++) {
		snprintf(d, sizeof(d), "%s/%s", pathdir, dirs[i]);
		ck_assert_int_eq(mkdir(d, 0755), 0);
	}
	place("privtasks.so", "pmd/m.so");
	place("privtasks.so", "pmd/p.so");
	place("tasks.so", "lib/named.so");
	place("tasks.so", "client/m.so");
	place("tasks.so", "client/sub/m.so");
	place("pooltasks.so", "client/p.so");
	snprintf(lib, sizeof(lib), "%s/lib", pathdir);
	snprintf(d, sizeof(d), "%s/pmd", pathdir);
	ck_assert_int_eq(chdir(d), 0);
	base_self = th_fd_count(0);
	ck_assert_int_eq(th_pmd_start(&pmd, args), 0);
	base_pmd = th_fd_count(pmd.pid);
	conn = pm_connect(pmd.sock);
	ck_assert_msg(conn != NULL, "pm_connect: %s", pm_last_message());
	snprintf(d, sizeof(d), "%s/client", pathdir);
	ck_assert_int_eq(chdir(d), 0);
}

static void
teardown_paths(void)
{
	teardown();
	ck_assert_int_eq(chdir("/"), 0);
	th_rmtree(pathdir);
}

/*
 * A relative module path names the file in the client's directory, not
 * in pmd's (the library makes it absolute); a name without '/' is looked
 * up in module_path.
 */
START_TEST(t_relative_module)
{
	static const char *const rel[] = { "./m.so", "sub/m.so", ".//m.so",
	    "named" };
	pm_pool_opts o = { .processes = 1, .module = "./p.so" };
	int64_t x = 7, y = 0;
	pm_process *p;
	pm_pool *pool;
	pm_bytes out;
	size_t i;
	int r;

	for (i = 0; i < sizeof(rel) / sizeof(rel[0]); i++) {
		p = pm_process_new(conn, rel[i], "ret7", NULL, 0);
		ck_assert_msg(p != NULL, "new %s: %s", rel[i],
		    pm_last_message());
		r = pm_process_start(p);
		ck_assert_msg(r == PM_OK, "start %s: %d (%s)", rel[i], r,
		    pm_last_message());
		ck_assert_int_eq(join_code(p), 7);
		pm_process_free(p);
	}
	pool = pm_pool_new(conn, &o);
	ck_assert_msg(pool != NULL, "pool ./p.so: %s", pm_last_message());
	r = pm_pool_apply(pool, "sq", &x, sizeof(x), &out);
	ck_assert_msg(r == PM_OK, "apply: %d (%s)", r, pm_last_message());
	ck_assert_uint_eq(out.len, sizeof(y));
	memcpy(&y, out.data, sizeof(y));
	ck_assert_int_eq(y, 49);
	pm_bytes_free(&out);
	pm_pool_free(pool);
	/* a name without '/' is not looked for in the client's directory */
	p = pm_process_new(conn, "m.so", "ret7", NULL, 0);
	ck_assert_ptr_nonnull(p);
	ck_assert_int_eq(pm_process_start(p), PM_ENOENT);
	ck_assert_ptr_nonnull(strstr(pm_last_message(), "module path"));
	pm_process_free(p);
}
END_TEST

static Suite *
process_suite(void)
{
	Suite *s = suite_create("process");
	TCase *tc;

	tc = th_tcase(s, "basic", setup, teardown, 60);
	tcase_add_test(tc, t_lifecycle);
	tcase_add_test(tc, t_join_timeout);
	tcase_add_loop_test(tc, t_exitcode, 0,
	    (int)(sizeof(codes) / sizeof(codes[0])));
	tcase_add_test(tc, t_result);
	tcase_add_test(tc, t_sentinel);
	tcase_add_test(tc, t_clean_fds);
	tcase_add_test(tc, t_stdio);
	tcase_add_test(tc, t_signal_state);
	tcase_add_test(tc, t_nested);
	tcase_add_test(tc, t_signal_during_join);
	tcase_add_loop_test(tc, t_enoent, 0,
	    (int)(sizeof(missing) / sizeof(missing[0])));
	tcase_add_test(tc, t_exec);
	tcase_add_test(tc, t_misuse);
	tcase_add_test(tc, t_cpu_count);
	tcase_add_test(tc, t_task_introspection);
	tcase_add_test(tc, t_wait);
	/* valgrind keeps its own fd limit: the kernel installs the fds */
	if (!th_valgrind())
		tcase_add_test(tc, t_reply_fds_lost);

	tc = th_tcase(s, "heavy", setup, teardown, 120);
	tcase_add_test(tc, t_many);
	tcase_add_test(tc, t_many_terminated);
	tcase_add_test(tc, t_disconnect);

	tc = th_tcase(s, "paths", setup_paths, teardown_paths, 60);
	tcase_add_test(tc, t_relative_module);

	tc = th_tcase(s, "cycles", setup, teardown, 600);
	tcase_add_test(tc, t_cycles);

	tc = th_tcase(s, "daemon-loss", NULL, NULL, 120);
	tcase_add_loop_test(tc, t_pmd_killed, 0, 2);
	return s;
}

int
main(void)
{
	return th_run_suite(process_suite());
}
