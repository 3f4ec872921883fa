/*
 * check_start.c - start methods: fork (a Process or Pool worker forked
 * from this test program, with no pmd and with one: listed, signalled,
 * ended with its connection), spawn (a fresh execve per worker: its own
 * address-space layout) and forkserver, bad values and late changes.
 * Linked with -rdynamic: fork pools find their tasks here by name.
 */
#include <sys/personality.h>
#include <sys/types.h>
#include <sys/wait.h>

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "pmclient.h"

/* Task functions of this program (exported: -rdynamic). */
pm_task_fn st_read_global, st_exit_code, st_raise, st_fail, st_big,
    st_block, st_introspect, st_write_fd, st_stdio, st_parent_conn,
    st_task_conn, st_square, st_init_global, st_read_init, st_die,
    st_my_pid, st_burn;

static struct th_pmd pmd;
static pm_conn *conn;
static int base_self;
static int base_pmd;

/* what a forked worker sees of the caller */
static volatile int start_global;
static int init_global;
static int gate_fds[2] = { -1, -1 };	/* st_block reads, the test writes */
static int out_fds[2] = { -1, -1 };	/* st_write_fd writes, the test reads */
static FILE *shared_file;		/* st_stdio writes into it unflushed */

/* ---- task functions ---- */

int
st_read_global(pm_task *t)
{
	char buf[32];

	snprintf(buf, sizeof(buf), "%d", start_global);
	pm_task_return(t, buf, strlen(buf));
	return 0;
}

static int
arg_int(pm_task *t)
{
	char buf[32];
	size_t len;
	const char *a = pm_task_arg(t, &len);

	if (len >= sizeof(buf))
		len = sizeof(buf) - 1;
	memcpy(buf, a, len);
	buf[len] = '\0';
	return atoi(buf);
}

int
st_exit_code(pm_task *t)
{
	return arg_int(t);
}

int
st_raise(pm_task *t)
{
	raise(arg_int(t));
	return 99;
}

int
st_fail(pm_task *t)
{
	return pm_task_fail(t, "failed on purpose: %d", arg_int(t));
}

/* A result of arg bytes, byte i = i % 251 (memfd above 64 KiB). */
int
st_big(pm_task *t)
{
	size_t n = (size_t)arg_int(t), i;
	unsigned char *b = malloc(n ? n : 1);
	int rc;

	if (b == NULL)
		return pm_task_fail(t, "out of memory");
	for (i = 0; i < n; i++)
		b[i] = (unsigned char)(i % 251);
	rc = pm_task_return(t, b, n);
	free(b);
	return rc == PM_OK ? 0 : 2;
}

/* Waits for a byte on gate_fds[0] (inherited), then exits with it. */
int
st_block(pm_task *t)
{
	unsigned char b = 0;
	ssize_t n;

	close(gate_fds[1]);
	do {
		n = read(gate_fds[0], &b, 1);
	} while (n == -1 && errno == EINTR);
	return n == 1 ? b : 100;
}

/* name, parent pid and arg, as "name|ppid|arg" */
int
st_introspect(pm_task *t)
{
	char buf[256];
	size_t len;
	const char *a = pm_task_arg(t, &len);

	snprintf(buf, sizeof(buf), "%s|%d|%.*s", pm_task_name(t),
	    (int)pm_task_parent_pid(t), (int)len, a);
	pm_task_return(t, buf, strlen(buf));
	return 0;
}

/* Writes "ran" to out_fds[1]: did the target run at all? */
int
st_write_fd(pm_task *t)
{
	(void)!write(out_fds[1], "ran", 3);
	return 0;
}

/* Buffered writes, never flushed by the target itself. */
int
st_stdio(pm_task *t)
{
	fputs("child", shared_file);
	return 0;
}

/* The caller's connection is not the worker's: calls on it fail. */
int
st_parent_conn(pm_task *t)
{
	int r = pm_dispatch(conn, 0);

	if (r == PM_ECONN)
		return 0;
	return pm_task_fail(t, "the parent's connection answered %d", r);
}

/* Its own connection to the same pmd. */
int
st_task_conn(pm_task *t)
{
	pm_conn *c = pm_task_conn(t);
	char buf[32];

	if (c == NULL)
		return pm_task_fail(t, "pm_task_conn: %s", pm_last_message());
	snprintf(buf, sizeof(buf), "%d", (int)pm_daemon_pid(c));
	pm_task_return(t, buf, strlen(buf));
	return 0;
}

/* Pool task: int64 squared, plus the global the caller set. */
int
st_square(pm_task *t)
{
	size_t len;
	const void *a = pm_task_arg(t, &len);
	int64_t v;

	if (len != sizeof(v))
		return pm_task_fail(t, "want 8 bytes, got %zu", len);
	memcpy(&v, a, sizeof(v));
	v = v * v + start_global;
	pm_task_return(t, &v, sizeof(v));
	return 0;
}

int
st_init_global(pm_task *t)
{
	init_global = arg_int(t);
	return 0;
}

int
st_read_init(pm_task *t)
{
	char buf[32];

	snprintf(buf, sizeof(buf), "%d", init_global);
	pm_task_return(t, buf, strlen(buf));
	return 0;
}

int
st_die(pm_task *t)
{
	raise(SIGKILL);
	return 0;
}

/* 50 ms of CPU and 16 MiB touched: for pm_process_rusage. */
int
st_burn(pm_task *t)
{
	struct timespec ts;
	size_t n = 16u << 20, i;
	volatile char *m = malloc(n);

	if (m == NULL)
		return 1;
	for (i = 0; i < n; i += 4096)
		m[i] = 1;
	do
		clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	while (ts.tv_sec == 0 && ts.tv_nsec < 50000000);
	free((void *)(uintptr_t)m);
	return 0;
}

int
st_my_pid(pm_task *t)
{
	int32_t pid = (int32_t)getpid();

	pm_task_return(t, &pid, sizeof(pid));
	return 0;
}

/* ---- helpers ---- */

/* A forked worker keeps the caller's signal handlers, as fork(2) does:
 * not the test runner's, which end the whole test on SIGTERM. */
static void
default_signals(void)
{
	signal(SIGTERM, SIG_DFL);
	signal(SIGINT, SIG_DFL);
}

static void
setup_nopmd(void)
{
	default_signals();
	base_self = th_fd_count(0);
	conn = NULL;
}

static void
teardown_nopmd(void)
{
	TH_WAIT(th_zombies(getpid()) == 0, 10);
	ck_assert_int_eq(th_zombies(getpid()), 0);
	ck_assert_int_eq(th_fd_count(0), base_self);
}

static void
setup_pmd(void)
{
	static const char *const args[] = { "--max-workers", "64", NULL };

	default_signals();
	base_self = th_fd_count(0);
	ck_assert_int_eq(th_pmd_start(&pmd, args), 0);
	base_pmd = th_fd_count(pmd.pid);
	conn = pm_connect(pmd.sock);
	ck_assert_msg(conn != NULL, "pm_connect: %s", pm_last_message());
}

static void
teardown_pmd(void)
{
	pm_disconnect(conn);
	conn = NULL;
	TH_WAIT(th_zombies(getpid()) == 0, 10);
	ck_assert_int_eq(th_zombies(getpid()), 0);
	ck_assert_int_eq(th_fd_count(0), base_self);
	th_pmd_settled(&pmd, base_pmd, 10);
	ck_assert_int_eq(th_pmd_stop(&pmd), 0);
}

static pm_process *
fork_new(pm_task_fn *fn, const char *arg)
{
	pm_process *p;

	p = pm_process_new_fn(conn, fn, arg, arg ? strlen(arg) : 0);
	ck_assert_msg(p != NULL, "pm_process_new_fn: %s", pm_last_message());
	return p;
}

static pm_process *
fork_start(pm_task_fn *fn, const char *arg)
{
	pm_process *p = fork_new(fn, arg);
	int r;

	r = pm_process_start(p);
	ck_assert_msg(r == PM_OK, "start: %d %s", r, pm_last_message());
	return p;
}

/* Its result as a string (NUL-terminated in buf). */
static const char *
result_str(pm_process *p, char *buf, size_t len)
{
	pm_bytes b;

	ck_assert_int_eq(pm_process_result(p, &b), PM_OK);
	ck_assert_uint_lt(b.len, len);
	memcpy(buf, b.data, b.len);
	buf[b.len] = '\0';
	pm_bytes_free(&b);
	return buf;
}

/* ---- fork, with or without pmd ---- */

START_TEST(t_fork_global)
{
	char buf[64];
	pm_process *p;

	start_global = 4242;
	p = fork_start(st_read_global, NULL);
	start_global = 1;		/* after the fork: the worker has its copy */
	ck_assert_int_eq(pm_process_join(p, 30), PM_OK);
	ck_assert_str_eq(result_str(p, buf, sizeof(buf)), "4242");
	pm_process_free(p);
}
END_TEST

static const int codes[] = { 0, 3, 255, 256 + 7 };

START_TEST(t_fork_exitcode)
{
	char arg[16];
	pm_process *p;
	int code = -1;

	snprintf(arg, sizeof(arg), "%d", codes[_i]);
	p = fork_start(st_exit_code, arg);
	ck_assert_int_eq(pm_process_join(p, 30), PM_OK);
	ck_assert_int_eq(pm_process_exitcode(p, &code), PM_OK);
	ck_assert_int_eq(code, codes[_i] & 0xff);
	ck_assert_int_eq(pm_process_is_alive(p), 0);
	pm_process_free(p);
}
END_TEST

START_TEST(t_fork_signal)
{
	static const int sigs[] = { SIGKILL, SIGTERM, SIGUSR1 };
	char arg[16];
	pm_process *p;
	size_t i;

	for (i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++) {
		snprintf(arg, sizeof(arg), "%d", sigs[i]);
		p = fork_new(st_raise, arg);
		ck_assert_int_eq(th_run_process(p, 30), -sigs[i]);
		pm_process_free(p);
	}
}
END_TEST

START_TEST(t_fork_result_error)
{
	char buf[128];
	pm_process *p;
	pm_bytes b;
	size_t i, n = 300000;

	p = fork_new(st_fail, "7");
	ck_assert_int_eq(th_run_process(p, 30), 1);
	ck_assert_ptr_nonnull(pm_process_error(p));
	ck_assert_str_eq(pm_process_error(p), "failed on purpose: 7");
	ck_assert_int_eq(pm_process_result(p, &b), PM_ENOENT);
	pm_process_free(p);

	snprintf(buf, sizeof(buf), "%zu", n);	/* by memfd */
	p = fork_new(st_big, buf);
	ck_assert_int_eq(th_run_process(p, 30), 0);
	ck_assert_ptr_null(pm_process_error(p));
	ck_assert_int_eq(pm_process_result(p, &b), PM_OK);
	ck_assert_uint_eq(b.len, n);
	for (i = 0; i < n; i++)
		if (((unsigned char *)b.data)[i] != i % 251)
			break;
	ck_assert_uint_eq(i, n);
	pm_bytes_free(&b);
	pm_process_free(p);
}
END_TEST

START_TEST(t_fork_sentinel)
{
	pm_process *p;
	int code = -1, fd;
	double t0;

	ck_assert_int_eq(pipe2(gate_fds, O_CLOEXEC), 0);
	p = fork_new(st_block, NULL);
	ck_assert_int_eq(pm_process_sentinel(p), -1);
	ck_assert_int_eq(pm_process_pid(p), 0);
	ck_assert_int_eq(pm_process_join(p, 0), PM_ESTATE);
	ck_assert_int_eq(pm_process_start(p), PM_OK);
	ck_assert_int_eq(pm_process_start(p), PM_ESTATE);
	ck_assert_int_gt(pm_process_pid(p), 0);
	fd = pm_process_sentinel(p);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(th_readable(fd, 0.2), 0);
	ck_assert_int_eq(pm_process_is_alive(p), 1);
	ck_assert_int_eq(pm_process_exitcode(p, &code), PM_ESTATE);
	t0 = th_now();
	ck_assert_int_eq(pm_process_join(p, 0.3), PM_ETIMEDOUT);
	ck_assert(th_now() - t0 >= 0.3);
	ck_assert_int_eq(pm_process_join(p, 0), PM_ETIMEDOUT);
	ck_assert_int_eq(write(gate_fds[1], "\x2a", 1), 1);
	ck_assert_int_eq(th_readable(fd, 30), 1);
	ck_assert_int_eq(pm_process_join(p, 30), PM_OK);
	ck_assert_int_eq(pm_process_exitcode(p, &code), PM_OK);
	ck_assert_int_eq(code, 42);
	/* ended: signals do nothing, quietly */
	ck_assert_int_eq(pm_process_kill(p), PM_OK);
	ck_assert_int_eq(pm_wait(&p, 1, 0), 0);
	pm_process_free(p);
	close(gate_fds[0]);
	close(gate_fds[1]);
}
END_TEST

START_TEST(t_fork_terminate_kill)
{
	pm_process *p, *q;
	int code = 0;

	ck_assert_int_eq(pipe2(gate_fds, O_CLOEXEC), 0);
	p = fork_start(st_block, NULL);
	q = fork_start(st_block, NULL);
	ck_assert_int_eq(pm_process_terminate(p), PM_OK);
	ck_assert_int_eq(pm_process_join(p, 30), PM_OK);
	ck_assert_int_eq(pm_process_exitcode(p, &code), PM_OK);
	ck_assert_int_eq(code, -SIGTERM);
	ck_assert_int_eq(pm_process_is_alive(q), 1);
	ck_assert_int_eq(pm_process_kill(q), PM_OK);
	ck_assert_int_eq(pm_process_join(q, 30), PM_OK);
	ck_assert_int_eq(pm_process_exitcode(q, &code), PM_OK);
	ck_assert_int_eq(code, -SIGKILL);
	ck_assert_int_eq(pm_process_signal(q, -1), PM_EINVAL);
	pm_process_free(p);
	pm_process_free(q);
	close(gate_fds[0]);
	close(gate_fds[1]);
}
END_TEST

START_TEST(t_fork_introspect)
{
	char buf[256], want[256];
	pm_process *p;

	p = fork_new(st_introspect, "xyz");
	ck_assert_int_eq(pm_process_set_name(p, "forked-one"), PM_OK);
	ck_assert_int_eq(th_run_process(p, 30), 0);
	snprintf(want, sizeof(want), "forked-one|%d|xyz", (int)getpid());
	ck_assert_str_eq(result_str(p, buf, sizeof(buf)), want);
	pm_process_free(p);
}
END_TEST

/* The worker flushes its stdio when it ends; what the caller had
 * buffered before the start is written once, by the caller. */
static int atexit_fd = -1;

static void
atexit_mark(void)
{
	if (atexit_fd >= 0)
		(void)!write(atexit_fd, "X", 1);
}

START_TEST(t_fork_stdio_atexit)
{
	char buf[64];
	pm_process *p;
	ssize_t n;
	int fds[2], afds[2];

	ck_assert_int_eq(pipe2(fds, O_CLOEXEC), 0);
	ck_assert_int_eq(pipe2(afds, O_CLOEXEC | O_NONBLOCK), 0);
	atexit_fd = afds[1];
	atexit(atexit_mark);
	ck_assert_ptr_nonnull(shared_file = fdopen(fds[1], "w"));
	ck_assert_int_eq(setvbuf(shared_file, NULL, _IOFBF, 4096), 0);
	fputs("parent,", shared_file);		/* buffered at the fork */
	p = fork_new(st_stdio, NULL);
	ck_assert_int_eq(th_run_process(p, 30), 0);
	pm_process_free(p);
	fclose(shared_file);
	shared_file = NULL;
	n = read(fds[0], buf, sizeof(buf) - 1);
	ck_assert_int_gt(n, 0);
	buf[n] = '\0';
	ck_assert_str_eq(buf, "parent,child");
	close(fds[0]);
	/* the caller's atexit handler did not run in the worker */
	ck_assert_int_eq(read(afds[0], buf, 1), -1);
	ck_assert_int_eq(errno, EAGAIN);
	atexit_fd = -1;
	close(afds[0]);
	close(afds[1]);
}
END_TEST

START_TEST(t_fork_misuse)
{
	pm_process *p;
	int code;

	ck_assert_ptr_null(pm_process_new_fn(conn, NULL, NULL, 0));
	ck_assert_int_eq(pm_last_error(), PM_EINVAL);
	ck_assert_ptr_null(pm_process_new_fn(conn, st_exit_code, NULL, 3));
	ck_assert_int_eq(pm_last_error(), PM_EINVAL);
	p = fork_new(st_exit_code, "5");
	ck_assert_int_eq(pm_process_set_start_method(p, 3), PM_EINVAL);
	ck_assert_int_eq(pm_process_set_start_method(p, -1), PM_EINVAL);
	ck_assert_int_eq(pm_process_set_start_method(p, PM_START_SPAWN),
	    PM_EINVAL);
	ck_assert_int_eq(pm_process_set_start_method(p, PM_START_FORKSERVER),
	    PM_EINVAL);
	ck_assert_int_eq(pm_process_set_start_method(p, PM_START_FORK), PM_OK);
	/* caps are pmd's to set: never silently without them */
	ck_assert_int_eq(pm_process_set_memory_max(p, 64u << 20), PM_OK);
	ck_assert_int_eq(pm_process_start(p), PM_EINVAL);
	ck_assert_int_eq(pm_process_set_memory_max(p, 0), PM_OK);
	ck_assert_int_eq(pm_process_start(p), PM_OK);
	ck_assert_int_eq(pm_process_set_start_method(p, PM_START_FORK),
	    PM_ESTATE);
	ck_assert_int_eq(pm_process_set_daemon(p, 1), PM_ESTATE);
	ck_assert_int_eq(pm_process_join(p, 30), PM_OK);
	ck_assert_int_eq(pm_process_exitcode(p, &code), PM_OK);
	ck_assert_int_eq(code, 5);
	pm_process_free(p);
}
END_TEST

/* Settings a forkserver worker takes apply to a forked one too. */
START_TEST(t_fork_settings)
{
	char buf[64];
	pm_process *p;
	int fds[2], code;
	ssize_t n;

	ck_assert_int_eq(pipe2(fds, O_CLOEXEC), 0);
	out_fds[0] = fds[0];
	out_fds[1] = 200;
	p = fork_new(st_write_fd, NULL);
	ck_assert_int_eq(pm_process_set_fd(p, 200, fds[1]), PM_OK);
	ck_assert_int_eq(pm_process_set_cwd(p, "/"), PM_OK);
	ck_assert_int_eq(th_run_process(p, 30), 0);
	pm_process_free(p);
	close(fds[1]);
	n = read(fds[0], buf, sizeof(buf));
	ck_assert_int_eq(n, 3);
	close(fds[0]);
	ck_assert_int_eq(fcntl(200, F_GETFD), -1);	/* not ours */

	p = fork_new(st_exit_code, "0");
	ck_assert_int_eq(pm_process_set_cwd(p, "/nonexistent/dir"), PM_OK);
	ck_assert_int_eq(pm_process_start(p), PM_OK);
	ck_assert_int_eq(pm_process_join(p, 30), PM_OK);
	ck_assert_int_eq(pm_process_exitcode(p, &code), PM_OK);
	ck_assert_int_eq(code, 127);
	ck_assert_ptr_nonnull(pm_process_error(p));
	ck_assert_msg(strstr(pm_process_error(p), "/nonexistent/dir") != NULL,
	    "error: %s", pm_process_error(p));
	pm_process_free(p);
	out_fds[0] = out_fds[1] = -1;
}
END_TEST

/* The CPU and memory of an ended forked worker, from our own waitid. */
START_TEST(t_fork_rusage)
{
	pm_process *p;
	pm_rusage ru;

	p = fork_new(st_burn, NULL);
	ck_assert_int_eq(pm_process_rusage(p, &ru), PM_ESTATE);
	ck_assert_int_eq(th_run_process(p, 30), 0);
	ck_assert_int_eq(pm_process_rusage(p, &ru), PM_OK);
	ck_assert_msg(ru.user_s + ru.sys_s >= 0.04 && ru.user_s + ru.sys_s < 60,
	    "cpu %f+%f", ru.user_s, ru.sys_s);
	ck_assert_msg(ru.maxrss_kb >= 16 * 1024, "maxrss %llu kB",
	    (unsigned long long)ru.maxrss_kb);
	pm_process_free(p);
}
END_TEST

/* No fd or zombie is left, a handle freed while its worker ran
 * included (reaped by a later fork). */
START_TEST(t_fork_leaks)
{
	pm_process *p;
	pid_t orphan;
	int i, n = th_valgrind() ? 20 : 200;

	for (i = 0; i < n; i++) {
		p = fork_new(st_exit_code, "0");
		ck_assert_int_eq(th_run_process(p, 30), 0);
		pm_process_free(p);
	}
	ck_assert_int_eq(pipe2(gate_fds, O_CLOEXEC), 0);
	p = fork_start(st_block, NULL);
	orphan = pm_process_pid(p);
	pm_process_free(p);			/* runs on */
	ck_assert_int_eq(write(gate_fds[1], "\0", 1), 1);
	close(gate_fds[0]);
	close(gate_fds[1]);
	TH_WAIT(th_pid_state(orphan) == 'Z', 30);
	ck_assert_int_eq(th_pid_state(orphan), 'Z');
	p = fork_start(st_exit_code, "0");	/* reaps the orphan */
	ck_assert_int_eq(th_pid_state(orphan), 0);
	ck_assert_int_eq(pm_process_join(p, 30), PM_OK);
	pm_process_free(p);
	ck_assert_int_eq(th_zombies(getpid()), 0);
}
END_TEST

/* ---- fork with pmd ---- */

static int
ps_has(const char *json, pid_t pid, const char *what)
{
	char key[64];
	const char *at;

	snprintf(key, sizeof(key), "\"pid\": %d,", (int)pid);
	if ((at = strstr(json, key)) == NULL)
		return 0;
	return what == NULL || strstr(at, what) != NULL;
}

START_TEST(t_fork_listed_killed)
{
	char out[16384], pid[16];
	pm_process *p;
	pid_t pids[8];
	int code;

	ck_assert_int_eq(pipe2(gate_fds, O_CLOEXEC), 0);
	p = fork_new(st_block, NULL);
	ck_assert_int_eq(pm_process_set_name(p, "fork-listed"), PM_OK);
	ck_assert_int_eq(pm_process_start(p), PM_OK);
	ck_assert_int_eq(pm_active_children(conn, pids, 8), 1);
	ck_assert_int_eq(pids[0], pm_process_pid(p));
	ck_assert_int_eq(th_pmctl(out, sizeof(out), "--socket", pmd.sock,
	    "--json", "ps", NULL), 0);
	ck_assert_msg(ps_has(out, pm_process_pid(p), "\"kind\": \"fork\""),
	    "ps: %s", out);
	ck_assert_msg(ps_has(out, pm_process_pid(p), "fork-listed"), "ps: %s",
	    out);
	ck_assert_msg(ps_has(out, pm_process_pid(p), "st_block"), "ps: %s",
	    out);
	ck_assert_int_eq(th_pmctl(out, sizeof(out), "--socket", pmd.sock,
	    "ps", NULL), 0);
	ck_assert_msg(strstr(out, " fork ") != NULL, "ps: %s", out);
	snprintf(pid, sizeof(pid), "%d", (int)pm_process_pid(p));
	ck_assert_int_eq(th_pmctl(out, sizeof(out), "--socket", pmd.sock,
	    "kill", "-s", "KILL", pid, NULL), 0);
	ck_assert_int_eq(pm_process_join(p, 30), PM_OK);
	ck_assert_int_eq(pm_process_exitcode(p, &code), PM_OK);
	ck_assert_int_eq(code, -SIGKILL);
	ck_assert_int_eq(pm_active_children(conn, pids, 8), 0);
	/* pmd forgets it once it has ended */
	TH_WAIT(th_pmctl(out, sizeof(out), "--socket", pmd.sock, "--json",
	    "ps", NULL) == 0 && !ps_has(out, pm_process_pid(p), NULL), 10);
	ck_assert_msg(!ps_has(out, pm_process_pid(p), NULL), "ps: %s", out);
	pm_process_free(p);
	close(gate_fds[0]);
	close(gate_fds[1]);
}
END_TEST

/* Daemonic forked workers end when their connection closes; others run
 * on, and their parent still joins them. */
START_TEST(t_fork_daemonic)
{
	pm_process *d, *n;
	pm_conn *c2;
	int code;

	ck_assert_int_eq(pipe2(gate_fds, O_CLOEXEC), 0);
	ck_assert_ptr_nonnull(c2 = pm_connect(pmd.sock));
	d = pm_process_new_fn(c2, st_block, NULL, 0);
	n = pm_process_new_fn(c2, st_block, NULL, 0);
	ck_assert_ptr_nonnull(d);
	ck_assert_ptr_nonnull(n);
	ck_assert_int_eq(pm_process_set_daemon(d, 1), PM_OK);
	ck_assert_int_eq(pm_process_start(d), PM_OK);
	ck_assert_int_eq(pm_process_start(n), PM_OK);
	pm_disconnect(c2);
	ck_assert_int_eq(pm_process_join(d, 30), PM_OK);
	ck_assert_int_eq(pm_process_exitcode(d, &code), PM_OK);
	ck_assert_int_eq(code, -SIGTERM);
	ck_assert_int_eq(pm_process_is_alive(n), 1);
	ck_assert_int_eq(write(gate_fds[1], "\x07", 1), 1);
	ck_assert_int_eq(pm_process_join(n, 30), PM_OK);
	ck_assert_int_eq(pm_process_exitcode(n, &code), PM_OK);
	ck_assert_int_eq(code, 7);
	pm_process_free(d);
	pm_process_free(n);
	close(gate_fds[0]);
	close(gate_fds[1]);
}
END_TEST

/* The worker's connections: the parent's is a husk in it, its own
 * pm_task_conn reaches the same pmd; the parent's still works after. */
START_TEST(t_fork_conns)
{
	char buf[64], want[64];
	pm_process *p;

	p = fork_new(st_parent_conn, NULL);
	ck_assert_msg(th_run_process(p, 30) == 0, "%s", pm_process_error(p));
	pm_process_free(p);
	p = fork_new(st_task_conn, NULL);
	ck_assert_msg(th_run_process(p, 30) == 0, "%s", pm_process_error(p));
	snprintf(want, sizeof(want), "%d", (int)pmd.pid);
	ck_assert_str_eq(result_str(p, buf, sizeof(buf)), want);
	pm_process_free(p);
	ck_assert_int_eq(pm_active_children(conn, NULL, 0), 0);
	p = fork_new(st_exit_code, "3");
	ck_assert_int_eq(th_run_process(p, 30), 3);
	pm_process_free(p);
}
END_TEST

/* Over pmd's worker bound: the start fails, and the target never ran. */
START_TEST(t_fork_refused)
{
	static const char *const args[] = { "--max-workers", "1", NULL };
	struct th_pmd small;
	pm_process *p, *q;
	pm_conn *c;
	char buf[8];

	ck_assert_int_eq(th_pmd_start(&small, args), 0);
	ck_assert_ptr_nonnull(c = pm_connect(small.sock));
	ck_assert_int_eq(pipe2(gate_fds, O_CLOEXEC), 0);
	ck_assert_int_eq(pipe2(out_fds, O_CLOEXEC | O_NONBLOCK), 0);
	p = pm_process_new_fn(c, st_block, NULL, 0);
	q = pm_process_new_fn(c, st_write_fd, NULL, 0);
	ck_assert_int_eq(pm_process_start(p), PM_OK);
	ck_assert_int_eq(pm_process_start(q), PM_ELIMIT);
	ck_assert_msg(strstr(pm_last_message(), "maximum") != NULL, "%s",
	    pm_last_message());
	ck_assert_int_eq(pm_process_pid(q), 0);
	ck_assert_int_eq(read(out_fds[0], buf, sizeof(buf)), -1);
	ck_assert_int_eq(errno, EAGAIN);
	ck_assert_int_eq(write(gate_fds[1], "\0", 1), 1);
	ck_assert_int_eq(pm_process_join(p, 30), PM_OK);
	/* room again once pmd has seen it end */
	TH_WAIT(pm_process_start(q) == PM_OK, 10);
	ck_assert_int_eq(pm_process_join(q, 30), PM_OK);
	pm_process_free(p);
	pm_process_free(q);
	pm_disconnect(c);
	ck_assert_int_eq(th_pmd_stop(&small), 0);
	close(gate_fds[0]);
	close(gate_fds[1]);
	close(out_fds[0]);
	close(out_fds[1]);
	out_fds[0] = out_fds[1] = -1;
}
END_TEST

/* pmd gone: a forked worker is still ours to join. */
START_TEST(t_fork_pmd_gone)
{
	pm_process *p;
	int code;

	ck_assert_int_eq(pipe2(gate_fds, O_CLOEXEC), 0);
	p = fork_start(st_block, NULL);
	ck_assert_int_eq(kill(pmd.pid, SIGKILL), 0);
	ck_assert_int_eq(th_pmd_stop(&pmd), -SIGKILL);
	ck_assert_int_eq(write(gate_fds[1], "\x09", 1), 1);
	ck_assert_int_eq(pm_process_join(p, 30), PM_OK);
	ck_assert_int_eq(pm_process_exitcode(p, &code), PM_OK);
	ck_assert_int_eq(code, 9);
	pm_process_free(p);
	pm_disconnect(conn);
	conn = NULL;
	close(gate_fds[0]);
	close(gate_fds[1]);
	TH_WAIT(th_zombies(getpid()) == 0, 10);
	ck_assert_int_eq(th_zombies(getpid()), 0);
	ck_assert_int_eq(th_fd_count(0), base_self);
}
END_TEST

/* ---- fork pools ---- */

static pm_pool *
fork_pool(int n, const char *module, const char *init, const char *initarg)
{
	pm_pool_opts o;

	memset(&o, 0, sizeof(o));
	o.processes = n;
	o.module = module;
	o.initializer = init;
	o.initarg = initarg;
	o.initarglen = initarg ? strlen(initarg) : 0;
	o.start_method = PM_START_FORK;
	return pm_pool_new(conn, &o);
}

static pid_t
pool_worker_pid(pm_pool *pool)
{
	pm_bytes b;
	int32_t pid;

	ck_assert_int_eq(pm_pool_apply(pool, "st_my_pid", NULL, 0, &b),
	    PM_OK);
	ck_assert_uint_eq(b.len, sizeof(pid));
	memcpy(&pid, b.data, sizeof(pid));
	pm_bytes_free(&b);
	return pid;
}

/* Functions of this program, found by name; the workers see what the
 * caller set before the pool started, and what their initializer set. */
START_TEST(t_fork_pool_map)
{
	char out[16384];
	pm_bytes in[100], res[100], one;
	int64_t v[100], r;
	pm_pool *pool;
	pid_t pid;
	int i;

	start_global = 1000;
	pool = fork_pool(2, NULL, "st_init_global", "77");
	ck_assert_msg(pool != NULL, "%s", pm_last_message());
	for (i = 0; i < 100; i++) {
		v[i] = i;
		in[i].data = &v[i];
		in[i].len = sizeof(v[i]);
	}
	ck_assert_int_eq(pm_pool_map(pool, "st_square", in, 100, 0, res),
	    PM_OK);
	for (i = 0; i < 100; i++) {
		ck_assert_uint_eq(res[i].len, sizeof(r));
		memcpy(&r, res[i].data, sizeof(r));
		ck_assert_int_eq(r, (int64_t)i * i + 1000);
		pm_bytes_free(&res[i]);
	}
	ck_assert_int_eq(pm_pool_apply(pool, "st_read_init", NULL, 0, &one),
	    PM_OK);
	ck_assert_uint_eq(one.len, 2);
	ck_assert(memcmp(one.data, "77", 2) == 0);
	pm_bytes_free(&one);
	/* listed by pmd as pool workers */
	pid = pool_worker_pid(pool);
	ck_assert_int_eq(th_pmctl(out, sizeof(out), "--socket", pmd.sock,
	    "--json", "ps", NULL), 0);
	ck_assert_msg(ps_has(out, pid, "\"kind\": \"pool\""), "ps: %s", out);
	ck_assert_msg(ps_has(out, pid, "PoolWorker-"), "ps: %s", out);
	/* a worker that dies fails its task and is replaced */
	ck_assert_int_eq(pm_pool_apply(pool, "st_die", NULL, 0, &one),
	    PM_EWORKER);
	ck_assert_int_eq(pm_pool_apply(pool, "st_read_init", NULL, 0, &one),
	    PM_OK);
	pm_bytes_free(&one);
	ck_assert_int_eq(pm_pool_close(pool), PM_OK);
	ck_assert_int_eq(pm_pool_join(pool), PM_OK);
	pm_pool_free(pool);
	ck_assert_int_eq(th_zombies(getpid()), 0);
}
END_TEST

START_TEST(t_fork_pool_missing)
{
	pm_pool *pool;
	pm_bytes one;
	int64_t x = 3;

	pool = fork_pool(1, NULL, NULL, NULL);
	ck_assert_msg(pool != NULL, "%s", pm_last_message());
	ck_assert_int_eq(pm_pool_apply(pool, "no_such_function", NULL, 0,
	    &one), PM_ENOENT);
	ck_assert_msg(strstr(pm_last_message(), "no function "
	    "no_such_function") != NULL, "%s", pm_last_message());
	ck_assert_int_eq(pm_pool_apply(pool, "st_square", &x, sizeof(x),
	    &one), PM_OK);
	pm_bytes_free(&one);
	pm_pool_free(pool);

	ck_assert_ptr_null(fork_pool(2, NULL, "no_such_init", NULL));
	ck_assert_int_eq(pm_last_error(), PM_ENOENT);
	ck_assert_msg(strstr(pm_last_message(), "no initializer") != NULL,
	    "%s", pm_last_message());
	ck_assert_ptr_null(fork_pool(1, "/nonexistent/mod.so", NULL, NULL));
	ck_assert_int_eq(pm_last_error(), PM_ENOENT);
	TH_WAIT(th_zombies(getpid()) == 0, 10);
	ck_assert_int_eq(th_zombies(getpid()), 0);
}
END_TEST

/* A module's functions, loaded in the forked worker. */
START_TEST(t_fork_pool_module)
{
	pm_pool *pool;
	pm_bytes one;

	pool = fork_pool(1, th_module(), NULL, NULL);
	ck_assert_msg(pool != NULL, "%s", pm_last_message());
	ck_assert_int_eq(pm_pool_apply(pool, "echo", "hey", 3, &one), PM_OK);
	ck_assert_uint_eq(one.len, 3);
	ck_assert(memcmp(one.data, "hey", 3) == 0);
	pm_bytes_free(&one);
	pm_pool_free(pool);
}
END_TEST

START_TEST(t_pool_opts_bad)
{
	pm_pool_opts o;
	pm_pool *pool;

	memset(&o, 0, sizeof(o));
	o.processes = 1;
	o.module = th_module();
	o.start_method = 3;
	ck_assert_ptr_null(pm_pool_new(conn, &o));
	ck_assert_int_eq(pm_last_error(), PM_EINVAL);
	o.start_method = -1;
	ck_assert_ptr_null(pm_pool_new(conn, &o));
	ck_assert_int_eq(pm_last_error(), PM_EINVAL);
	o.start_method = PM_START_FORK;
	o.memory_max = 1 << 20;
	ck_assert_ptr_null(pm_pool_new(conn, &o));
	ck_assert_int_eq(pm_last_error(), PM_EINVAL);
	ck_assert_msg(strstr(pm_last_message(), "start method fork") != NULL,
	    "%s", pm_last_message());
	o.memory_max = 0;
	o.maxmemoryperchild = 1 << 20;	/* a fork worker checks its RSS too */
	ck_assert_ptr_nonnull(pool = pm_pool_new(conn, &o));
	pm_pool_free(pool);
	o.maxmemoryperchild = 0;
	o.module = NULL;
	o.start_method = PM_START_FORKSERVER;
	ck_assert_ptr_null(pm_pool_new(conn, &o));
	ck_assert_int_eq(pm_last_error(), PM_EINVAL);
	o.start_method = PM_START_SPAWN;
	ck_assert_ptr_null(pm_pool_new(conn, &o));
	ck_assert_int_eq(pm_last_error(), PM_EINVAL);
}
END_TEST

/* ---- spawn ---- */

static const char *
start_module(void)
{
	static char path[PATH_MAX];

	snprintf(path, sizeof(path), "%s/tests/starttasks.so",
	    th_env("PM_BUILD"));
	return path;
}

/* Where a worker started by method has its stack, libc and module. */
static void
worker_addrs(int method, char *buf, size_t len)
{
	pm_process *p;

	p = pm_process_new(conn, start_module(), "addrs", NULL, 0);
	ck_assert_ptr_nonnull(p);
	ck_assert_int_eq(pm_process_set_start_method(p, method), PM_OK);
	ck_assert_int_eq(th_run_process(p, 30), 0);
	result_str(p, buf, len);
	pm_process_free(p);
}

static int
aslr_on(void)
{
	FILE *f = fopen("/proc/sys/kernel/randomize_va_space", "r");
	int v = 0;

	if (f != NULL) {
		if (fscanf(f, "%d", &v) != 1)
			v = 0;
		fclose(f);
	}
	return v > 0 && !(personality(0xffffffff) & ADDR_NO_RANDOMIZE);
}

/* Two spawned workers: a fresh layout each.  Two forkserver workers: the
 * forker's, the same (the claim that spawn is there for). */
START_TEST(t_spawn_layout)
{
	char a[128], b[128], sa[3][32], sb[3][32];

	worker_addrs(PM_START_FORKSERVER, a, sizeof(a));
	worker_addrs(PM_START_FORKSERVER, b, sizeof(b));
	ck_assert_str_eq(a, b);
	if (!aslr_on()) {
		fprintf(stderr, "t_spawn_layout: address randomization is off "
		    "here; spawned layouts not compared\n");
		return;
	}
	worker_addrs(PM_START_SPAWN, a, sizeof(a));
	worker_addrs(PM_START_SPAWN, b, sizeof(b));
	ck_assert_int_eq(sscanf(a, "%31s %31s %31s", sa[0], sa[1], sa[2]), 3);
	ck_assert_int_eq(sscanf(b, "%31s %31s %31s", sb[0], sb[1], sb[2]), 3);
	ck_assert_msg(strcmp(sa[0], sb[0]) != 0, "stacks: %s / %s", a, b);
	ck_assert_msg(strcmp(sa[1], sb[1]) != 0, "libc: %s / %s", a, b);
	ck_assert_msg(strcmp(sa[2], sb[2]) != 0, "module: %s / %s", a, b);
}
END_TEST

/* A spawned worker keeps the Process contract: exit codes, signals,
 * result and error text, fds, a program target, start failures. */
START_TEST(t_spawn_process)
{
	char *argv[] = { (char *)(uintptr_t)"sh", (char *)(uintptr_t)"-c",
	    (char *)(uintptr_t)"exit 3", NULL };
	char buf[64];
	pm_process *p;
	int fds[2];
	ssize_t n;

	p = pm_process_new(conn, th_module(), "echo", "spawned", 7);
	ck_assert_int_eq(pm_process_set_start_method(p, PM_START_SPAWN), PM_OK);
	ck_assert_int_eq(th_run_process(p, 30), 0);
	ck_assert_str_eq(result_str(p, buf, sizeof(buf)), "spawned");
	pm_process_free(p);

	p = pm_process_new(conn, th_module(), "fail", NULL, 0);
	ck_assert_int_eq(pm_process_set_start_method(p, PM_START_SPAWN), PM_OK);
	ck_assert_int_eq(th_run_process(p, 30), 1);
	ck_assert_ptr_nonnull(pm_process_error(p));
	pm_process_free(p);

	p = pm_process_new(conn, th_module(), "wait_forever", NULL, 0);
	ck_assert_int_eq(pm_process_set_start_method(p, PM_START_SPAWN), PM_OK);
	ck_assert_int_eq(pm_process_start(p), PM_OK);
	ck_assert_int_eq(pm_process_kill(p), PM_OK);
	ck_assert_int_eq(pm_process_join(p, 30), PM_OK);
	ck_assert_int_eq(pm_process_exitcode(p, &fds[0]), PM_OK);
	ck_assert_int_eq(fds[0], -SIGKILL);
	pm_process_free(p);

	p = pm_process_new_exec(conn, "sh", argv, NULL);
	ck_assert_int_eq(pm_process_set_start_method(p, PM_START_SPAWN), PM_OK);
	ck_assert_int_eq(th_run_process(p, 30), 3);
	pm_process_free(p);

	ck_assert_int_eq(pipe2(fds, O_CLOEXEC), 0);
	p = pm_process_new(conn, th_module(), "write_fd", "7 via7", 6);
	ck_assert_int_eq(pm_process_set_start_method(p, PM_START_SPAWN), PM_OK);
	ck_assert_int_eq(pm_process_set_fd(p, 7, fds[1]), PM_OK);
	ck_assert_int_eq(th_run_process(p, 30), 0);
	pm_process_free(p);
	close(fds[1]);
	n = read(fds[0], buf, sizeof(buf));
	ck_assert_int_gt(n, 0);
	close(fds[0]);

	p = pm_process_new(conn, "/nonexistent/mod.so", "f", NULL, 0);
	ck_assert_int_eq(pm_process_set_start_method(p, PM_START_SPAWN), PM_OK);
	ck_assert_int_eq(pm_process_start(p), PM_ENOENT);
	ck_assert_msg(strstr(pm_last_message(), "/nonexistent/mod.so") != NULL,
	    "%s", pm_last_message());
	pm_process_free(p);
}
END_TEST

START_TEST(t_spawn_misuse)
{
	char *argv[] = { (char *)(uintptr_t)"true", NULL };
	pm_process *p, *q;

	p = pm_process_new(conn, th_module(), "noop", NULL, 0);
	q = pm_process_new_exec(conn, "true", argv, NULL);
	ck_assert_int_eq(pm_process_set_start_method(p, PM_START_FORK),
	    PM_EINVAL);
	ck_assert_int_eq(pm_process_set_start_method(q, PM_START_FORK),
	    PM_EINVAL);
	ck_assert_int_eq(pm_process_set_start_method(p, 7), PM_EINVAL);
	ck_assert_int_eq(pm_process_set_start_method(p, PM_START_SPAWN), PM_OK);
	ck_assert_int_eq(pm_process_set_start_method(p, PM_START_FORKSERVER),
	    PM_OK);
	ck_assert_int_eq(pm_process_set_start_method(p, PM_START_SPAWN), PM_OK);
	ck_assert_int_eq(th_run_process(p, 30), 0);
	ck_assert_int_eq(pm_process_set_start_method(p, PM_START_SPAWN),
	    PM_ESTATE);
	ck_assert_int_eq(pm_process_set_start_method(p, PM_START_FORKSERVER),
	    PM_ESTATE);
	pm_process_free(p);
	pm_process_free(q);
}
END_TEST

/* A spawn pool: every worker execs afresh, replacements too. */
START_TEST(t_spawn_pool)
{
	pm_pool_opts o;
	pm_bytes in[50], res[50], one, two;
	char mod[PATH_MAX];
	int64_t v[50], r;
	pm_pool *pool;
	int i;

	memset(&o, 0, sizeof(o));
	o.processes = 2;
	o.module = start_module();
	o.start_method = PM_START_SPAWN;
	ck_assert_ptr_nonnull(pool = pm_pool_new(conn, &o));
	ck_assert_int_eq(pm_pool_apply(pool, "pool_addrs", NULL, 0, &one),
	    PM_OK);
	pm_pool_free(pool);

	snprintf(mod, sizeof(mod), "%s/tests/pooltasks.so", th_env("PM_BUILD"));
	o.module = mod;
	o.maxtasksperchild = 10;
	ck_assert_ptr_nonnull(pool = pm_pool_new(conn, &o));
	for (i = 0; i < 50; i++) {
		v[i] = i;
		in[i].data = &v[i];
		in[i].len = sizeof(v[i]);
	}
	ck_assert_int_eq(pm_pool_map(pool, "sq", in, 50, 1, res), PM_OK);
	for (i = 0; i < 50; i++) {
		memcpy(&r, res[i].data, sizeof(r));
		ck_assert_int_eq(r, (int64_t)i * i);
		pm_bytes_free(&res[i]);
	}
	pm_pool_close(pool);
	ck_assert_int_eq(pm_pool_join(pool), PM_OK);
	pm_pool_free(pool);

	o.module = start_module();
	o.maxtasksperchild = 0;
	ck_assert_ptr_nonnull(pool = pm_pool_new(conn, &o));
	ck_assert_int_eq(pm_pool_apply(pool, "pool_addrs", NULL, 0, &two),
	    PM_OK);
	pm_pool_free(pool);
	if (aslr_on())
		ck_assert_msg(one.len != two.len ||
		    memcmp(one.data, two.data, one.len) != 0,
		    "two spawned pool workers share a layout: %.*s",
		    (int)one.len, (char *)one.data);
	pm_bytes_free(&one);
	pm_bytes_free(&two);
}
END_TEST

/* The text line of pid in pmctl ps, in line; 0 if none. */
static int
ps_line(const char *text, pid_t pid, char *line, size_t len)
{
	const char *p, *e;
	int n;

	for (p = text; p != NULL && *p != '\0'; p = e ? e + 1 : NULL) {
		e = strchr(p, '\n');
		if (sscanf(p, "%d", &n) == 1 && n == (int)pid) {
			snprintf(line, len, "%.*s", e ? (int)(e - p) :
			    (int)strlen(p), p);
			return 1;
		}
	}
	return 0;
}

/* pmctl ps shows how each worker started (START, start_method). */
START_TEST(t_ps_start_methods)
{
	static const char *const want[] = { "forkserver", "spawn", "fork" };
	char out[16384], line[512], key[64];
	pm_process *p[3];
	int i;

	ck_assert_int_eq(pipe2(gate_fds, O_CLOEXEC), 0);
	for (i = 0; i < 2; i++) {
		p[i] = pm_process_new(conn, th_module(), "wait_forever", NULL,
		    0);
		ck_assert_int_eq(pm_process_set_start_method(p[i], i == 0 ?
		    PM_START_FORKSERVER : PM_START_SPAWN), PM_OK);
		ck_assert_int_eq(pm_process_start(p[i]), PM_OK);
	}
	p[2] = fork_start(st_block, NULL);
	ck_assert_int_eq(th_pmctl(out, sizeof(out), "--socket", pmd.sock,
	    "--json", "ps", NULL), 0);
	for (i = 0; i < 3; i++) {
		snprintf(key, sizeof(key), "\"start_method\": \"%s\"", want[i]);
		ck_assert_msg(ps_has(out, pm_process_pid(p[i]), key),
		    "%s: %s", want[i], out);
	}
	ck_assert_int_eq(th_pmctl(out, sizeof(out), "--socket", pmd.sock,
	    "ps", NULL), 0);
	ck_assert_msg(strstr(out, "START") != NULL, "ps: %s", out);
	for (i = 0; i < 3; i++) {
		ck_assert_msg(ps_line(out, pm_process_pid(p[i]), line,
		    sizeof(line)), "ps: %s", out);
		snprintf(key, sizeof(key), " %s ", want[i]);
		ck_assert_msg(strstr(line, key) != NULL, "%s: %s", want[i],
		    line);
	}
	for (i = 0; i < 3; i++) {
		ck_assert_int_eq(pm_process_kill(p[i]), PM_OK);
		ck_assert_int_eq(pm_process_join(p[i], 30), PM_OK);
		pm_process_free(p[i]);
	}
	close(gate_fds[0]);
	close(gate_fds[1]);
}
END_TEST

/* A private pmd's spawned workers check for their broker too. */
START_TEST(t_spawn_private)
{
	static const char *const args[] = { "--private", NULL };
	struct th_pmd priv;
	pm_process *p;
	pm_conn *c;

	ck_assert_int_eq(th_pmd_start(&priv, args), 0);
	ck_assert_ptr_nonnull(c = pm_connect(priv.sock));
	p = pm_process_new(c, th_module(), "noop", NULL, 0);
	ck_assert_int_eq(pm_process_set_start_method(p, PM_START_SPAWN), PM_OK);
	ck_assert_int_eq(th_run_process(p, 30), 0);
	pm_process_free(p);
	pm_disconnect(c);
	ck_assert_int_eq(th_pmd_stop(&priv), 0);
}
END_TEST

static Suite *
start_suite(void)
{
	Suite *s = suite_create("start");
	TCase *tc;

	tc = th_tcase(s, "fork-nopmd", setup_nopmd, teardown_nopmd, 120);
	tcase_add_test(tc, t_fork_global);
	tcase_add_loop_test(tc, t_fork_exitcode, 0,
	    sizeof(codes) / sizeof(codes[0]));
	tcase_add_test(tc, t_fork_signal);
	tcase_add_test(tc, t_fork_result_error);
	tcase_add_test(tc, t_fork_sentinel);
	tcase_add_test(tc, t_fork_terminate_kill);
	tcase_add_test(tc, t_fork_introspect);
	tcase_add_test(tc, t_fork_stdio_atexit);
	tcase_add_test(tc, t_fork_misuse);
	tcase_add_test(tc, t_fork_settings);
	tcase_add_test(tc, t_fork_leaks);
	tcase_add_test(tc, t_fork_rusage);

	tc = th_tcase(s, "fork-pmd", setup_pmd, teardown_pmd, 120);
	tcase_add_test(tc, t_fork_global);
	tcase_add_test(tc, t_fork_signal);
	tcase_add_test(tc, t_fork_sentinel);
	tcase_add_test(tc, t_fork_misuse);
	tcase_add_test(tc, t_fork_listed_killed);
	tcase_add_test(tc, t_fork_daemonic);
	tcase_add_test(tc, t_fork_conns);
	tcase_add_test(tc, t_fork_refused);
	tcase_add_test(tc, t_fork_pool_map);
	tcase_add_test(tc, t_fork_pool_missing);
	tcase_add_test(tc, t_fork_pool_module);
	tcase_add_test(tc, t_pool_opts_bad);

	tc = th_tcase(s, "spawn", setup_pmd, teardown_pmd, 120);
	tcase_add_test(tc, t_spawn_layout);
	tcase_add_test(tc, t_spawn_process);
	tcase_add_test(tc, t_spawn_misuse);
	tcase_add_test(tc, t_spawn_pool);
	tcase_add_test(tc, t_spawn_private);
	tcase_add_test(tc, t_ps_start_methods);

	tc = th_tcase(s, "fork-pmd-gone", setup_pmd, NULL, 120);
	tcase_add_test(tc, t_fork_pmd_gone);
	return s;
}

int
main(void)
{
	return th_run_suite(start_suite());
}
