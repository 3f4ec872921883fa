/*
 * check_faults.c - pmd against what the machine and its clients do to it:
 * the forker killed, pmd killed with clients blocked in it, clients killed
 * mid-request, fork failing (a cgroup pids limit), running out of fds, a
 * client that floods requests and never reads the replies.  After each,
 * pmd serves on and is back to its fd count with no zombies.
 */
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/sched.h>
#include <linux/seccomp.h>
#include <linux/sockios.h>
#include <stddef.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "pmclient.h"
#include "wire.h"
#include "pm.pb-c.h"
#include "queue.pb-c.h"

static struct th_pmd pmd;
static pm_conn *conn;
static int base_self;		/* client fds before connecting */
static int base_pmd;		/* pmd fds with no client */
static int base_conn;		/* pmd fds with our connection */

/* t_pmd_killed_private's connection to a private pmd and its two workers:
 * reachable from here while children are forked, so not lost in them, and
 * freed by teardown_private if a failed check left them. */
static pm_conn *pconn;
static pm_process *pproc[2];

static void
start(const char *const *args, long nofile, void (*prep)(void))
{
	base_self = th_fd_count(0);
	ck_assert_int_eq(th_pmd_start_prep(&pmd, args, nofile, prep), 0);
	base_pmd = th_fd_count(pmd.pid);
	ck_assert_int_gt(base_pmd, 0);
	conn = pm_connect(pmd.sock);
	ck_assert_msg(conn != NULL, "pm_connect: %s", pm_last_message());
	base_conn = th_fd_count(pmd.pid);
}

static void
setup(void)
{
	start(NULL, 0, NULL);
}

static void
teardown(void)
{
	pm_disconnect(conn);
	conn = NULL;
	ck_assert_int_eq(th_fd_count(0), base_self);
	th_pmd_settled(&pmd, base_pmd, 10);
	ck_assert_int_eq(th_pmd_stop(&pmd), 0);
}

/* module:fn with a string arg runs to its end; returns the exit code. */
static int
run_code(pm_conn *c, const char *fn, const char *arg)
{
	pm_process *p;
	int code = -12345, r;

	p = pm_process_new(c, th_module(), fn, arg, arg ? strlen(arg) : 0);
	ck_assert_msg(p != NULL, "new %s: %s", fn, pm_last_message());
	r = pm_process_start(p);
	ck_assert_msg(r == PM_OK, "start %s: %d %s", fn, r, pm_last_message());
	r = pm_process_join(p, 60);
	ck_assert_msg(r == PM_OK, "join %s: %d %s", fn, r, pm_last_message());
	ck_assert_int_eq(pm_process_exitcode(p, &code), PM_OK);
	pm_process_free(p);
	return code;
}

/* pmd serves: a worker runs and exits 7. */
static void
serves(pm_conn *c)
{
	ck_assert_int_eq(run_code(c, "ret7", NULL), 7);
}

/* Back to the fd count with our connection, and no zombies. */
static void
settled(void)
{
	th_pmd_settled(&pmd, base_conn, 10);
}

/* The forker pid pmd reports (pmctl status --json). */
static pid_t
forker_pid(void)
{
	char out[4096], *at;
	int r;

	r = th_pmctl(out, sizeof(out), "--socket", pmd.sock, "--json",
	    "status", NULL);
	ck_assert_int_eq(r, 0);
	ck_assert_ptr_nonnull(at = strstr(out, "\"forker_pid\": "));
	return (pid_t)atoi(at + 14);
}

/* utime + stime of pid in seconds. */
static double
cpu_secs(pid_t pid)
{
	char path[64], buf[2048], *p;
	unsigned long ut = 0, st = 0;
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	ck_assert_int_ge(fd = open(path, O_RDONLY | O_CLOEXEC), 0);
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	ck_assert_int_gt(n, 0);
	buf[n] = '\0';
	ck_assert_ptr_nonnull(p = strrchr(buf, ')'));
	/* state ppid pgrp session tty tpgid flags minflt cminflt majflt
	 * cmajflt utime stime */
	ck_assert_int_eq(sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u "
	    "%*u %*u %lu %lu", &ut, &st), 2);
	return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

/* ---- the forker killed ---- */

START_TEST(t_forker_killed)
{
	pid_t old, now;
	int round;

	serves(conn);
	settled();
	for (round = 0; round < 3; round++) {
		old = forker_pid();
		ck_assert_int_gt(old, 0);
		ck_assert_int_eq(th_pmd_forker(&pmd), old);
		ck_assert_int_eq(kill(old, SIGKILL), 0);
		TH_WAIT((now = forker_pid()) != old && now > 0 &&
		    th_pid_alive(now), 10);
		now = forker_pid();
		ck_assert_msg(now != old && now > 0 && th_pid_alive(now),
		    "no new forker (old %d, now %d)", (int)old, (int)now);
		ck_assert(!th_pid_alive(old));
		serves(conn);
		settled();
	}
}
END_TEST

/* Spawns in flight while the forker is killed: each one succeeds or fails
 * with a message, none hangs; then spawns work again. */
START_TEST(t_forker_killed_in_flight)
{
	pm_process *ps[400];
	pid_t killer, victim;
	double end;
	int n = 0, failed = 0, i, r, code;

	victim = forker_pid();
	killer = th_fork();
	if (killer == 0) {
		th_sleep(0.1);
		kill(victim, SIGKILL);
		th_child_exit(0);
	}
	end = th_now() + 0.6;
	while (th_now() < end && n < 400) {
		ps[n] = pm_process_new(conn, th_module(), "noop", NULL, 0);
		ck_assert_ptr_nonnull(ps[n]);
		r = pm_process_start(ps[n]);
		if (r != PM_OK) {
			ck_assert_msg(r == PM_ESYS || r == PM_ELIMIT,
			    "start: %d (%s)", r, pm_last_message());
			ck_assert(*pm_last_message() != '\0');
			pm_process_free(ps[n]);
			failed++;
			continue;
		}
		n++;
	}
	ck_assert_int_eq(waitpid(killer, NULL, 0), killer);
	for (i = 0; i < n; i++) {
		ck_assert_int_eq(pm_process_join(ps[i], 30), PM_OK);
		ck_assert_int_eq(pm_process_exitcode(ps[i], &code), PM_OK);
		ck_assert_int_eq(code, 0);
		pm_process_free(ps[i]);
	}
	TH_WAIT(forker_pid() != victim, 10);
	ck_assert_int_ne(forker_pid(), victim);
	serves(conn);
	settled();
	(void)failed;
}
END_TEST

/* ---- the forker's frame bound ---- */

/* A program spawn whose request packs to exactly len bytes. */
static char *
spawn_of_size(Pm__Spawn *sp, char **argv, size_t len)
{
	size_t big = len, got;
	char *arg;
	int tries;

	pm__spawn__init(sp);
	sp->kind = PM__KIND__K_EXEC;
	sp->path = (char *)(uintptr_t)"/bin/true";
	sp->n_argv = 2;
	sp->argv = argv;
	argv[0] = (char *)(uintptr_t)"true";
	ck_assert_ptr_nonnull(arg = malloc(len + 1));
	for (tries = 0; tries < 8; tries++) {
		memset(arg, 'x', big);
		arg[big] = '\0';
		argv[1] = arg;
		if ((got = pm__spawn__get_packed_size(sp)) == len)
			return arg;
		big = got > len ? big - (got - len) : big + (len - got);
	}
	ck_abort_msg("no spawn of %zu bytes", len);
	return NULL;
}

/*
 * A spawn just under max_frame (the default, 16 MiB) is a valid request,
 * but with the client's credentials it would not fit a frame: it is
 * refused with PM_ELIMIT naming the bound, and the forker, which used to
 * die of it ("frame too large"), is never sent it.
 */
START_TEST(t_spawn_at_max_frame)
{
	Pm__Spawn sp;
	Pm__Error *e;
	struct wire_in in;
	struct pm_frame f;
	char *argv[2], *big;
	pid_t forker;
	int fd;

	serves(conn);
	forker = th_pmd_forker(&pmd);
	ck_assert_int_gt(forker, 0);
	big = spawn_of_size(&sp, argv, PM_WIRE_MAX_FRAME - 8);
	fd = th_raw_hello(pmd.sock);
	th_raw_send(fd, PM__TYPE__T_SPAWN, 7, &sp.base);
	free(big);
	wire_in_init(&in, 0);
	th_raw_next(fd, &in, &f, 30);
	ck_assert_uint_eq(f.type, PM__TYPE__T_ERROR);
	ck_assert_uint_eq(f.id, 7);
	ck_assert_ptr_nonnull(e = pm__error__unpack(NULL, f.len, f.data));
	ck_assert_int_eq(e->code, PM__CODE__C_LIMIT);
	ck_assert_msg(strstr(e->message, "max_frame") != NULL, "message: %s",
	    e->message);
	pm__error__free_unpacked(e, NULL);
	wire_frame_close(&f);
	wire_in_free(&in);
	close(fd);
	ck_assert_int_eq(th_pmd_forker(&pmd), forker);
	ck_assert_int_eq(forker_pid(), forker);
	serves(conn);
	ck_assert_int_eq(forker_pid(), forker);
	settled();
}
END_TEST

/* ---- the forker's link broken ---- */

/* A raw spawn of tasks.so:noop; its reply read, its channel closed. */
static void
raw_noop(int fd, struct wire_in *in, uint32_t id)
{
	Pm__Spawn sp = PM__SPAWN__INIT;
	struct pm_frame f;

	sp.kind = PM__KIND__K_FUNCTION;
	sp.module = (char *)(uintptr_t)th_module();
	sp.function = (char *)(uintptr_t)"noop";
	th_raw_send(fd, PM__TYPE__T_SPAWN, id, &sp.base);
	th_raw_next(fd, in, &f, 30);
	ck_assert_msg(f.type == PM__TYPE__T_SPAWN_REPLY && f.id == id,
	    "spawn %u: reply type %u", id, f.type);
	wire_frame_close(&f);
}

/* Reads and drops what is queued on sock (its fds closed). */
static void
drain(int sock)
{
	union {
		struct cmsghdr hdr;
		char buf[CMSG_SPACE(sizeof(int) * PM_WIRE_MAX_FDS)];
	} cbuf;
	struct cmsghdr *c;
	struct msghdr msg;
	struct iovec iov;
	char buf[65536];
	int *fds, i, n;

	for (;;) {
		memset(&msg, 0, sizeof(msg));
		iov.iov_base = buf;
		iov.iov_len = sizeof(buf);
		msg.msg_iov = &iov;
		msg.msg_iovlen = 1;
		msg.msg_control = cbuf.buf;
		msg.msg_controllen = sizeof(cbuf.buf);
		if (recvmsg(sock, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC) <= 0)
			return;
		for (c = CMSG_FIRSTHDR(&msg); c != NULL;
		    c = CMSG_NXTHDR(&msg, c)) {
			fds = (int *)(void *)CMSG_DATA(c);
			n = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
			for (i = 0; i < n; i++)
				close(fds[i]);
		}
	}
}

/*
 * The broker's writes to the forker fail while the forker lives: the
 * forker is stopped with its socket full, so that pmd holds Fork frames
 * and waits to write them; then its socket's reading side is shut (from
 * a copy of the forker's fd) and emptied.  pmd's next write fails: it
 * must not spin on the write event, and it ends that forker and starts
 * a new one, which serves.
 */
START_TEST(t_forker_write_error)
{
	struct wire_in in;
	pid_t forker, now = 0;
	double cpu;
	int pfd, sock, fd, q, last = -1, stuck = 0;
	uint32_t id = 10;

	serves(conn);
	forker = th_pmd_forker(&pmd);
	if ((pfd = (int)syscall(SYS_pidfd_open, forker, 0)) == -1 &&
	    errno == ENOSYS) {
		/* valgrind knows no pidfd calls */
		fprintf(stderr, "%s: skipped (no pidfd_open)\n", __func__);
		return;
	}
	ck_assert_int_ge(pfd, 0);
	sock = (int)syscall(SYS_pidfd_getfd, pfd, 3, 0);
	ck_assert_msg(sock >= 0, "pidfd_getfd: %s", strerror(errno));
	ck_assert_int_eq(kill(forker, SIGSTOP), 0);
	TH_WAIT(th_pid_state(forker) == 'T', 10);
	fd = th_raw_hello(pmd.sock);
	wire_in_init(&in, 0);
	while (stuck < 2 && id < 4000) {
		raw_noop(fd, &in, ++id);
		ck_assert_int_eq(ioctl(sock, SIOCINQ, &q), 0);
		stuck = q == last ? stuck + 1 : 0;
		last = q;
	}
	ck_assert_msg(stuck == 2, "the forker's socket never filled");
	ck_assert_int_eq(shutdown(sock, SHUT_RD), 0);
	drain(sock);
	close(sock);
	cpu = cpu_secs(pmd.pid);
	th_sleep(2.0);
	cpu = cpu_secs(pmd.pid) - cpu;
	ck_assert_msg(cpu < 0.5, "pmd used %.2f s of CPU in 2 s after the "
	    "write error", cpu);
	TH_WAIT((now = forker_pid()) != forker && now > 0, 10);
	ck_assert_msg(now != forker && now > 0, "the forker was not replaced");
	close(pfd);
	wire_in_free(&in);
	close(fd);
	serves(conn);
	settled();
}
END_TEST

/* ---- the forker started without forking the broker ---- */

#if defined(__x86_64__)
#define SECCOMP_ARCH	AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#define SECCOMP_ARCH	AUDIT_ARCH_AARCH64
#endif

/*
 * In pmd's process before its exec, inherited by the forker and workers:
 * fork(), and clone() without CLONE_VM, fail with EPERM.  A process that
 * shares its parent's memory until it execs (vfork, posix_spawn) is let
 * through, and so is clone3, whose flags a filter cannot read: the forker
 * clones its workers with it.
 */
static void
forbid_fork(void)
{
#ifdef SECCOMP_ARCH
	struct sock_filter f[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS,
		    offsetof(struct seccomp_data, arch)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SECCOMP_ARCH, 1, 0),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS,
		    offsetof(struct seccomp_data, nr)),
#ifdef __NR_fork
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_fork, 3, 0),
#endif
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_clone, 0, 3),
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS,	/* the flags' low half */
		    offsetof(struct seccomp_data, args[0])),
		BPF_JUMP(BPF_JMP | BPF_JSET | BPF_K, CLONE_VM, 1, 0),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	struct sock_fprog prog = { sizeof(f) / sizeof(f[0]), f };

	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == -1 ||
	    prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) == -1)
		_exit(126);
#endif
}

static void
setup_nofork(void)
{
	start(NULL, 0, forbid_fork);
}

/* pmd starts its forker, and a new one after the forker is killed,
 * without ever forking itself (a broker may hold GiBs of queue data):
 * it runs, restarts and serves under a filter that refuses fork. */
START_TEST(t_forker_by_exec)
{
	pid_t old, now = 0;

#ifndef SECCOMP_ARCH
	fprintf(stderr, "%s: skipped (no seccomp filter for this arch)\n",
	    __func__);
	return;
#endif
	serves(conn);
	old = forker_pid();
	ck_assert_int_eq(kill(old, SIGKILL), 0);
	TH_WAIT((now = forker_pid()) != old && now > 0, 10);
	ck_assert_msg(now != old && now > 0, "no new forker");
	serves(conn);
	settled();
}
END_TEST

/* ---- orphans, and workers that die before they say so ---- */

#define ORPHAN_PEERS	8

static void
subreaper(void)
{
	if (prctl(PR_SET_CHILD_SUBREAPER, 1) == -1)
		_exit(126);
}

static void
setup_subreaper(void)
{
	start(NULL, 0, subreaper);
}

/*
 * pmd as a subreaper (as PID 1 in a container it is one by nature): a
 * worker's child that outlives it becomes pmd's, and must not stay a
 * zombie once it exits.  The workers' own exit statuses still reach
 * their owners (the reaper never takes them).
 */
START_TEST(t_orphans_reaped)
{
	char mod[PATH_MAX], pid[32];
	pm_process *p, *ps[ORPHAN_PEERS];
	pm_bytes b = { NULL, 0 };
	pid_t orphan;
	int round, i, code;

	snprintf(mod, sizeof(mod), "%s/tests/isotasks.so", th_env("PM_BUILD"));
	for (round = 0; round < 3; round++) {
		p = pm_process_new(conn, mod, "orphan", "100", 3);
		ck_assert_ptr_nonnull(p);
		ck_assert_int_eq(th_run_process(p, 30), 0);
		ck_assert_int_eq(pm_process_result(p, &b), PM_OK);
		snprintf(pid, sizeof(pid), "%.*s", (int)b.len,
		    (const char *)b.data);
		pm_bytes_free(&b);
		pm_process_free(p);
		ck_assert_int_gt(orphan = (pid_t)atoi(pid), 0);
		/* workers ending while the orphan does keep their status */
		for (i = 0; i < ORPHAN_PEERS; i++) {
			ps[i] = pm_process_new(conn, th_module(), "ret7", NULL,
			    0);
			ck_assert_ptr_nonnull(ps[i]);
			ck_assert_int_eq(pm_process_start(ps[i]), PM_OK);
		}
		for (i = 0; i < ORPHAN_PEERS; i++) {
			ck_assert_int_eq(pm_process_join(ps[i], 30), PM_OK);
			ck_assert_int_eq(pm_process_exitcode(ps[i], &code),
			    PM_OK);
			ck_assert_int_eq(code, 7);
			pm_process_free(ps[i]);
		}
		TH_WAIT(th_pid_state(orphan) == 0, 10);
		ck_assert_msg(th_pid_state(orphan) == 0, "orphan %d left in "
		    "state %c", (int)orphan, th_pid_state(orphan));
	}
	settled();
}
END_TEST

/* Status "workers": N of pmd (pmctl status --json). */
static int
workers_now(void)
{
	char out[4096], *at;

	ck_assert_int_eq(th_pmctl(out, sizeof(out), "--socket", pmd.sock,
	    "--json", "status", NULL), 0);
	ck_assert_ptr_nonnull(at = strstr(out, "\"workers\": "));
	return atoi(at + 11);
}

/* Waits for pid (traced by us) to report; its status. */
static int
traced_wait(pid_t pid)
{
	int st = 0;

	ck_assert_int_eq(waitpid(pid, &st, __WALL), pid);
	return st;
}

/*
 * A worker killed the moment it is cloned, before it can tell the broker
 * it exists (the forker is traced; its clone is SIGKILLed while still
 * stopped at its start): the client's start fails, and pmd does not keep
 * it as starting forever: its table empties and it is reaped.
 */
START_TEST(t_worker_dies_unannounced)
{
	pid_t forker, client, worker;
	unsigned long msg = 0;
	int st;

	serves(conn);
	settled();
	forker = th_pmd_forker(&pmd);
	ck_assert_msg(ptrace(PTRACE_SEIZE, forker, 0, PTRACE_O_TRACECLONE |
	    PTRACE_O_TRACEFORK | PTRACE_O_TRACEVFORK) == 0, "ptrace: %s",
	    strerror(errno));
	client = th_fork();
	if (client == 0) {
		pm_conn *c;
		pm_process *p;
		int r;

		if ((c = pm_connect(pmd.sock)) == NULL)
			th_child_exit(100);
		th_child_own(c, th_free_conn);
		p = pm_process_new(c, th_module(), "noop", NULL, 0);
		th_child_own(p, th_free_process);
		r = p != NULL ? pm_process_start(p) : PM_OK;
		th_child_exit(r != PM_OK && *pm_last_message() != '\0' ? 0 :
		    101);
	}
	st = traced_wait(forker);
	ck_assert_msg(WIFSTOPPED(st) && (st >> 8) == (SIGTRAP |
	    (PTRACE_EVENT_CLONE << 8)), "forker status 0x%x", st);
	ck_assert_int_eq(ptrace(PTRACE_GETEVENTMSG, forker, 0, &msg), 0);
	worker = (pid_t)msg;
	ck_assert_int_eq(kill(worker, SIGKILL), 0);
	do
		st = traced_wait(worker);
	while (!WIFSIGNALED(st) && !WIFEXITED(st));
	ck_assert_int_eq(ptrace(PTRACE_DETACH, forker, 0, 0), 0);
	ck_assert_int_eq(waitpid(client, &st, 0), client);
	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "client: 0x%x",
	    st);
	TH_WAIT(workers_now() == 0 && th_zombies(pmd.pid) == 0, 10);
	ck_assert_int_eq(workers_now(), 0);
	ck_assert_int_eq(th_zombies(pmd.pid), 0);
	serves(conn);
	settled();
}
END_TEST

/* ---- pmd killed with clients blocked in it ---- */

/* A second client of the same pmd blocks in a queue get; reports the
 * result code and how long after being told the kill happened. */
static pid_t
blocked_getter(const char *addr, int *report)
{
	int p[2];
	pid_t pid;

	ck_assert_int_eq(pipe(p), 0);
	pid = th_fork();
	if (pid == 0) {
		pm_conn *c;
		pm_queue *q;
		pm_bytes b = { NULL, 0 };
		int r;

		close(p[0]);
		if ((c = pm_connect(addr)) == NULL)
			th_child_exit(100);
		th_child_own(c, th_free_conn);
		if ((q = pm_queue_open(c, "blocked", 0, PM_Q_CREATE)) == NULL)
			th_child_exit(100);
		th_child_own(q, th_free_queue);
		if (write(p[1], "r", 1) != 1)
			th_child_exit(101);
		r = pm_queue_get(q, &b, 60);
		pm_bytes_free(&b);
		(void)!write(p[1], &r, sizeof(r));
		th_child_exit(0);
	}
	close(p[1]);
	*report = p[0];
	return pid;
}

START_TEST(t_pmd_killed_private)
{
	char xdg[PATH_MAX], c;
	pid_t victim, killer, getter, kids[64], pids[3];
	pm_process *p, *d;
	pm_conn *pc;
	double t0, dt;
	int r, rep, nkids, i, got = -999;

	if (access("/run/pmd/pmd.sock", F_OK) == 0) {
		fprintf(stderr, "skipped: a system pmd is installed\n");
		return;
	}
	ck_assert_int_eq(th_mkdtemp(xdg, sizeof(xdg)), 0);
	setenv("XDG_RUNTIME_DIR", xdg, 1);
	unsetenv("PMD_SOCKET");
	setenv("PMD_BIN", th_env("PMD_BIN"), 1);

	pconn = pc = pm_connect(NULL);
	ck_assert_msg(pc != NULL, "pm_connect(NULL): %s", pm_last_message());
	victim = pm_daemon_pid(pc);
	ck_assert_int_gt(victim, 0);
	pproc[0] = p = pm_process_new(pc, th_module(), "wait_forever", NULL,
	    0);
	ck_assert_int_eq(pm_process_start(p), PM_OK);
	pproc[1] = d = pm_process_new(pc, th_module(), "ignore_term", NULL,
	    0);
	ck_assert_int_eq(pm_process_set_daemon(d, 1), PM_OK);
	ck_assert_int_eq(pm_process_start(d), PM_OK);
	getter = blocked_getter(pm_conn_address(pc), &rep);
	ck_assert(th_readable(rep, 30));
	ck_assert_int_eq(read(rep, &c, 1), 1);
	/* everything pmd runs: the forker and the workers */
	nkids = th_children(victim, kids, 64);
	ck_assert_int_ge(nkids, 3);
	pids[0] = pm_process_pid(p);
	pids[1] = pm_process_pid(d);
	pids[2] = victim;

	killer = th_fork();
	if (killer == 0) {
		th_sleep(0.3);
		kill(victim, SIGKILL);
		th_child_exit(0);
	}
	t0 = th_now();
	r = pm_process_join(p, 60);
	dt = th_now() - t0;
	ck_assert_int_eq(waitpid(killer, NULL, 0), killer);
	ck_assert_msg(r == PM_ECONN, "join: %d (%s), want PM_ECONN", r,
	    pm_last_message());
	ck_assert_msg(dt < 0.3 + 2.0, "join took %.2f s", dt);
	/* the getter too */
	ck_assert_msg(th_readable(rep, 2.0), "queue get still blocked");
	ck_assert_int_eq(read(rep, &got, sizeof(got)), (ssize_t)sizeof(got));
	ck_assert_msg(got == PM_ECONN, "get: %d, want PM_ECONN", got);
	close(rep);
	ck_assert_int_eq(waitpid(getter, &r, 0), getter);
	ck_assert(WIFEXITED(r) && WEXITSTATUS(r) == 0);
	ck_assert_int_eq(pm_process_join(d, 1), PM_ECONN);

	/* nothing it started is left running */
	for (i = 0; i < nkids && i < 64; i++) {
		TH_WAIT(!th_pid_alive(kids[i]), 5);
		ck_assert_msg(!th_pid_alive(kids[i]), "pid %d (child of the "
		    "killed pmd) still running", (int)kids[i]);
	}
	for (i = 0; i < 3; i++)
		ck_assert_msg(!th_pid_alive(pids[i]), "pid %d still running",
		    (int)pids[i]);
	pm_process_free(p);
	pm_process_free(d);
	pm_disconnect(pc);
	pproc[0] = pproc[1] = NULL;
	pconn = NULL;
	th_rmtree(xdg);
}
END_TEST

static void
teardown_private(void)
{
	pm_process_free(pproc[0]);
	pm_process_free(pproc[1]);
	pm_disconnect(pconn);
	pproc[0] = pproc[1] = NULL;
	pconn = NULL;
}

/* ---- clients killed mid-request ---- */

/* A raw client that sends a spawn of fn (daemonic or not) and a queue
 * get, then waits to be killed without reading anything. */
static pid_t
raw_spawner(const char *fn, int daemonic, int *ready)
{
	int p[2];
	pid_t pid;

	ck_assert_int_eq(pipe(p), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		Pm__Spawn sp = PM__SPAWN__INIT;
		int fd;

		close(p[0]);
		fd = th_raw_hello(pmd.sock);
		sp.kind = PM__KIND__K_FUNCTION;
		sp.module = (char *)(uintptr_t)th_module();
		sp.function = (char *)(uintptr_t)fn;
		sp.daemonic = daemonic;
		th_raw_send(fd, PM__TYPE__T_SPAWN, 2, &sp.base);
		(void)!write(p[1], "s", 1);
		for (;;)
			pause();
	}
	close(p[1]);
	*ready = p[0];
	return pid;
}

static pid_t
lib_getter(void)
{
	pid_t pid = th_fork();

	if (pid == 0) {
		pm_conn *c;
		pm_queue *q;
		pm_process *p;
		pm_bytes b = { NULL, 0 };

		if ((c = pm_connect(pmd.sock)) == NULL)
			th_child_exit(100);
		th_child_own(c, th_free_conn);
		if ((q = pm_queue_open(c, "kq", 0, PM_Q_CREATE)) == NULL)
			th_child_exit(100);
		th_child_own(q, th_free_queue);
		/* a daemonic worker of its own, ended with it */
		p = pm_process_new(c, th_module(), "wait_forever", NULL, 0);
		th_child_own(p, th_free_process);
		if (p == NULL || pm_process_set_daemon(p, 1) != PM_OK ||
		    pm_process_start(p) != PM_OK)
			th_child_exit(101);
		pm_queue_get(q, &b, -1);
		pm_bytes_free(&b);
		th_child_exit(102);
	}
	return pid;
}

START_TEST(t_client_killed)
{
	pid_t pids[20];
	char c;
	int i, rd, st;

	serves(conn);
	settled();
	/* raw spawns, killed at once or a little later */
	for (i = 0; i < 20; i++) {
		pids[i] = raw_spawner(i % 2 ? "wait_forever" : "noop", i % 2,
		    &rd);
		ck_assert(th_readable(rd, 30));
		ck_assert_int_eq(read(rd, &c, 1), 1);
		close(rd);
		if (i % 4 == 3)
			th_sleep(0.05);
		kill(pids[i], SIGKILL);
		ck_assert_int_eq(waitpid(pids[i], &st, 0), pids[i]);
	}
	/* library clients blocked in a get, with a daemonic worker */
	for (i = 0; i < 5; i++)
		pids[i] = lib_getter();
	TH_WAIT(th_children(pmd.pid, NULL, 0) >= 6, 20);
	th_sleep(0.2);
	for (i = 0; i < 5; i++) {
		kill(pids[i], SIGKILL);
		ck_assert_int_eq(waitpid(pids[i], &st, 0), pids[i]);
		ck_assert(WIFSIGNALED(st));
	}
	serves(conn);
	/* the daemonic workers end with their clients (kill_grace 1 s);
	 * only the forker is left */
	TH_WAIT(th_children(pmd.pid, NULL, 0) == 1, 15);
	ck_assert_int_eq(th_children(pmd.pid, NULL, 0), 1);
	ck_assert_int_eq(pm_active_children(conn, NULL, 0), 0);
	settled();
}
END_TEST

/* ---- fork failing: a cgroup pids limit ---- */

static char cg_dir[PATH_MAX];		/* our child cgroup, "" none */
static char cg_root[PATH_MAX];		/* where pmd goes back */

static int
write_str(const char *path, const char *s)
{
	int fd, ok;

	if ((fd = open(path, O_WRONLY | O_CLOEXEC)) == -1)
		return -1;
	ok = write(fd, s, strlen(s)) == (ssize_t)strlen(s);
	close(fd);
	return ok ? 0 : -1;
}

static int
cg_file(const char *dir, const char *file, const char *val)
{
	char path[PATH_MAX + 64];

	snprintf(path, sizeof(path), "%s/%s", dir, file);
	return write_str(path, val);
}

static int
cg_move(const char *dir, pid_t pid)
{
	char v[32];

	snprintf(v, sizeof(v), "%d", (int)pid);
	return cg_file(dir, "cgroup.procs", v);
}

/* A writable pids controller: v2 (its root delegating pids) or v1. */
static int
cg_make(void)
{
	static const char *roots[] = { "/sys/fs/cgroup", "/sys/fs/cgroup/pids",
	    "/sys/fs/cgroup/unified" };
	char path[PATH_MAX + 64], buf[256];
	size_t i;
	ssize_t n;
	int fd;

	for (i = 0; i < sizeof(roots) / sizeof(roots[0]); i++) {
		snprintf(path, sizeof(path), "%s/cgroup.controllers", roots[i]);
		if ((fd = open(path, O_RDONLY | O_CLOEXEC)) >= 0) {
			n = read(fd, buf, sizeof(buf) - 1);
			close(fd);
			buf[n > 0 ? n : 0] = '\0';
			if (strstr(buf, "pids") == NULL)
				continue;
			(void)cg_file(roots[i], "cgroup.subtree_control",
			    "+pids");
		} else {
			snprintf(path, sizeof(path), "%s/cgroup.procs",
			    roots[i]);
			if (access(path, W_OK) == -1 ||
			    strstr(roots[i], "pids") == NULL)
				continue;
		}
		snprintf(cg_dir, sizeof(cg_dir), "%s/pmdtest.%d", roots[i],
		    (int)getpid());
		if (mkdir(cg_dir, 0755) == -1) {
			cg_dir[0] = '\0';
			continue;
		}
		snprintf(path, sizeof(path), "%s/pids.max", cg_dir);
		if (access(path, W_OK) == -1) {
			rmdir(cg_dir);
			cg_dir[0] = '\0';
			continue;
		}
		snprintf(cg_root, sizeof(cg_root), "%s", roots[i]);
		return 0;
	}
	return -1;
}

static void
cg_remove(void)
{
	if (cg_dir[0] == '\0')
		return;
	if (pmd.pid > 0)
		cg_move(cg_root, pmd.pid);
	TH_WAIT(rmdir(cg_dir) == 0 || errno != EBUSY, 10);
	cg_dir[0] = '\0';
}

static void
teardown_cg(void)
{
	cg_remove();
	teardown();
}

START_TEST(t_fork_failure)
{
	pm_process *ps[40];
	pid_t forker;
	char v[32];
	int n = 0, r = PM_OK, i, code;

	if (geteuid() != 0 || cg_make() == -1) {
		fprintf(stderr, "t_fork_failure: skipped (no writable cgroup "
		    "pids controller)\n");
		return;
	}
	forker = forker_pid();
	ck_assert_int_eq(cg_move(cg_dir, pmd.pid), 0);
	ck_assert_int_eq(cg_move(cg_dir, forker), 0);
	/* broker + forker + 3 workers (and room for sanitizer threads) */
	ck_assert_int_eq(cg_file(cg_dir, "pids.max", "5"), 0);
	while (n < 40) {
		ps[n] = pm_process_new(conn, th_module(), "wait_forever", NULL,
		    0);
		ck_assert_ptr_nonnull(ps[n]);
		if ((r = pm_process_start(ps[n])) != PM_OK)
			break;
		n++;
	}
	ck_assert_msg(r == PM_ELIMIT || r == PM_ESYS, "spawn %d: %d (%s)", n,
	    r, pm_last_message());
	ck_assert_msg(*pm_last_message() != '\0', "no message");
	ck_assert_int_ge(n, 1);
	pm_process_free(ps[n]);
	/* still serving: status, and another failure is just as clean */
	ck_assert_int_eq(forker_pid(), forker);
	ps[n] = pm_process_new(conn, th_module(), "noop", NULL, 0);
	r = pm_process_start(ps[n]);
	ck_assert_msg(r == PM_ELIMIT || r == PM_ESYS, "again: %d (%s)", r,
	    pm_last_message());
	pm_process_free(ps[n]);
	ck_assert_int_eq(pm_active_children(conn, NULL, 0), n);
	/* room again: spawns work */
	snprintf(v, sizeof(v), "%d", 1000);
	ck_assert_int_eq(cg_file(cg_dir, "pids.max", v), 0);
	serves(conn);
	for (i = 0; i < n; i++) {
		ck_assert_int_eq(pm_process_kill(ps[i]), PM_OK);
		ck_assert_int_eq(pm_process_join(ps[i], 30), PM_OK);
		ck_assert_int_eq(pm_process_exitcode(ps[i], &code), PM_OK);
		ck_assert_int_eq(code, -SIGKILL);
		pm_process_free(ps[i]);
	}
	cg_move(cg_root, forker);
	settled();
}
END_TEST

/* One line of a cgroup file into buf; -1 when unreadable. */
static int
cg_read(const char *dir, const char *file, char *buf, size_t len)
{
	char path[PATH_MAX + 64];
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "%s/%s", dir, file);
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1)
		return -1;
	n = read(fd, buf, len - 1);
	close(fd);
	if (n <= 0)
		return -1;
	buf[n] = '\0';
	buf[strcspn(buf, "\n")] = '\0';
	return 0;
}

/*
 * The forker killed while no new one can be forked (the broker's cgroup
 * is at its pids limit): spawns fail with a message meanwhile, the broker
 * does not spin, and it brings a forker back by itself, by retrying, once
 * there is room; the next spawn succeeds.
 */
START_TEST(t_forker_retry)
{
	pm_process *p;
	pid_t forker, now = 0;
	double cpu0, cpu1;
	char cur[32];
	int r;

	if (geteuid() != 0 || cg_make() == -1) {
		fprintf(stderr, "t_forker_retry: skipped (no writable cgroup "
		    "pids controller)\n");
		return;
	}
	forker = forker_pid();
	ck_assert_int_gt(forker, 0);
	ck_assert_int_eq(cg_move(cg_dir, pmd.pid), 0);
	ck_assert_int_eq(cg_read(cg_dir, "pids.current", cur, sizeof(cur)), 0);
	ck_assert_int_eq(cg_file(cg_dir, "pids.max", cur), 0);
	ck_assert_int_eq(kill(forker, SIGKILL), 0);
	TH_WAIT(forker_pid() == 0, 10);
	ck_assert_int_eq(forker_pid(), 0);
	th_sleep(2.5);			/* a few retries fail */
	p = pm_process_new(conn, th_module(), "ret7", NULL, 0);
	ck_assert_ptr_nonnull(p);
	r = pm_process_start(p);
	ck_assert_msg(r == PM_ESYS || r == PM_ELIMIT, "spawn without a forker: "
	    "%d (%s)", r, pm_last_message());
	ck_assert_msg(*pm_last_message() != '\0', "no message");
	cpu0 = cpu_secs(pmd.pid);
	th_sleep(1.0);
	cpu1 = cpu_secs(pmd.pid);
	ck_assert_msg(cpu1 - cpu0 < 0.3, "pmd used %.2f s of CPU in 1 s "
	    "waiting to retry", cpu1 - cpu0);
	ck_assert_int_eq(forker_pid(), 0);
	/* room again: nobody asks, the forker comes back */
	ck_assert_int_eq(cg_file(cg_dir, "pids.max", "max"), 0);
	TH_WAIT((now = forker_pid()) > 0, 10);
	ck_assert_msg(now > 0 && now != forker, "no new forker (%d)",
	    (int)now);
	ck_assert_int_eq(th_run_process(p, 30), 7);
	pm_process_free(p);
	settled();
	cg_move(cg_root, now);
}
END_TEST

/* ---- out of fds ---- */

#define NOFILE_LOW	64
#define HOGS		(NOFILE_LOW + 40)

static void
setup_nofile(void)
{
	start(NULL, NOFILE_LOW, NULL);
}

/* Waits (10 s at most) for pmd's fd count to stop growing while it takes
 * the connections it can (it keeps a reserve: not all of NOFILE_LOW). */
static void
fds_settle(void)
{
	int i, prev, now;

	for (i = 0, prev = -1; i < 50; i++) {
		if ((now = th_fd_count(pmd.pid)) == prev)
			break;
		prev = now;
		th_sleep(0.2);
	}
}

START_TEST(t_out_of_fds)
{
	int hogs[HOGS], n, i, refused = 0;
	double cpu0, cpu1;
	pm_conn *c;

	serves(conn);
	settled();
	/* more connections than pmd has fds for */
	for (n = 0; n < HOGS; n++) {
		hogs[n] = th_unix_connect(pmd.sock);
		ck_assert_msg(hogs[n] >= 0, "connect %d: %s", n,
		    strerror(errno));
	}
	/* pmd takes what it can, refuses (or leaves queued) the rest */
	fds_settle();
	ck_assert_int_le(th_fd_count(pmd.pid), NOFILE_LOW);
	ck_assert_int_gt(th_fd_count(pmd.pid), base_conn + 8);
	/* no busy loop while it cannot take them */
	cpu0 = cpu_secs(pmd.pid);
	th_sleep(1.0);
	cpu1 = cpu_secs(pmd.pid);
	ck_assert_msg(cpu1 - cpu0 < 0.3, "pmd used %.2f s of CPU in 1 s out "
	    "of fds", cpu1 - cpu0);
	for (i = 0; i < n; i++)
		if (th_readable(hogs[i], 0))
			refused++;
	ck_assert_int_gt(refused, 0);
	/* its established client is still served, spawns included */
	serves(conn);
	c = pm_connect(pmd.sock);
	ck_assert_ptr_null(c);
	ck_assert_msg(pm_last_error() == PM_ELIMIT || pm_last_error() ==
	    PM_ECONN, "connect when full: %d (%s)", pm_last_error(),
	    pm_last_message());
	/* fds free: accepting resumes */
	for (i = 0; i < n; i++)
		close(hogs[i]);
	TH_WAIT((c = pm_connect(pmd.sock)) != NULL, 10);
	ck_assert_msg(c != NULL, "connect after: %s", pm_last_message());
	serves(c);
	pm_disconnect(c);
	serves(conn);
	settled();
}
END_TEST

/* A spawn asked while pmd has no fd left: an error reply or success, no
 * hang; spawns work once fds are free. */
START_TEST(t_spawn_out_of_fds)
{
	int hogs[HOGS], n, i, r;
	pm_process *p;
	pid_t child;

	for (n = 0; n < HOGS; n++)
		ck_assert_int_ge(hogs[n] = th_unix_connect(pmd.sock), 0);
	fds_settle();
	ck_assert_int_gt(th_fd_count(pmd.pid), NOFILE_LOW / 2);
	/* in a child, so a hang is seen as one; it spawns on our
	 * connection (a new one could not be had), which the test then
	 * gives up.  The process is the child's: freeing it sends nothing. */
	child = th_fork();
	if (child == 0) {
		pm_process *q = pm_process_new(conn, th_module(), "noop", NULL,
		    0);

		th_child_own(q, th_free_process);
		r = pm_process_start(q);
		if (r == PM_OK)
			r = pm_process_join(q, 20);
		if (r != PM_OK)
			fprintf(stderr, "spawn out of fds: %d (%s)\n", r,
			    pm_last_message());
		th_child_exit(r == PM_OK ? 0 : r == PM_ESYS ||
		    r == PM_ELIMIT ? 1 : 2);
	}
	for (i = 0; i < 200; i++) {
		if (waitpid(child, &r, WNOHANG) == child)
			break;
		th_sleep(0.1);
	}
	if (i == 200) {
		kill(child, SIGKILL);
		waitpid(child, &r, 0);
	}
	for (i = 0; i < n; i++)
		close(hogs[i]);
	ck_assert_msg(WIFEXITED(r) && WEXITSTATUS(r) <= 1,
	    "spawn out of fds: status 0x%x (hung or a bad error)", r);
	/* the child used our connection: start afresh */
	pm_disconnect(conn);
	conn = pm_connect(pmd.sock);
	ck_assert_ptr_nonnull(conn);
	TH_WAIT(th_zombies(pmd.pid) == 0, 10);
	p = pm_process_new(conn, th_module(), "ret7", NULL, 0);
	ck_assert_int_eq(th_run_process(p, 30), 7);	/* fds came back */
	pm_process_free(p);
}
END_TEST

/* pmd's fd for the forker's pidfd (the only pidfd with no worker). */
static int
forker_pidfd_num(void)
{
	char path[64], link[64];
	ssize_t n;
	int fd, found = -1;

	for (fd = 0; fd < 256; fd++) {
		snprintf(path, sizeof(path), "/proc/%d/fd/%d", (int)pmd.pid,
		    fd);
		if ((n = readlink(path, link, sizeof(link) - 1)) <= 0)
			continue;
		link[n] = '\0';
		if (strcmp(link, "anon_inode:[pidfd]") == 0)
			found = fd;
	}
	return found;
}

/* The forker killed while pmd has too few fds for a new one (its limit
 * lowered to the forker's pidfd: of the two fds the dead forker frees,
 * one is then out of reach, and a new one needs two): pmd lives on
 * without it, spawns fail with a message, and the forker is back, by
 * retrying, once fds are free. */
START_TEST(t_forker_out_of_fds)
{
	struct rlimit old, full;
	pid_t forker, now = 0;
	pm_process *p;
	int r, fd;

	serves(conn);
	forker = forker_pid();
	ck_assert_int_eq(prlimit(pmd.pid, RLIMIT_NOFILE, NULL, &old), 0);
	full = old;
	settled();
	ck_assert_int_gt(fd = forker_pidfd_num(), 0);
	full.rlim_cur = (rlim_t)fd;
	ck_assert_int_eq(prlimit(pmd.pid, RLIMIT_NOFILE, &full, NULL), 0);
	ck_assert_int_eq(kill(forker, SIGKILL), 0);
	TH_WAIT(!th_pid_alive(forker), 10);
	th_sleep(2.5);			/* a few restarts fail */
	ck_assert_msg(th_pid_alive(pmd.pid), "pmd died out of fds");
	p = pm_process_new(conn, th_module(), "ret7", NULL, 0);
	ck_assert_ptr_nonnull(p);
	r = pm_process_start(p);
	ck_assert_msg(r == PM_ESYS || r == PM_ELIMIT, "spawn: %d (%s)", r,
	    pm_last_message());
	pm_process_free(p);
	ck_assert_int_eq(prlimit(pmd.pid, RLIMIT_NOFILE, &old, NULL), 0);
	TH_WAIT((now = forker_pid()) > 0 && now != forker, 10);
	ck_assert_msg(now > 0 && now != forker, "no new forker");
	serves(conn);
	settled();
}
END_TEST

/* ---- a client flooding requests and never reading ---- */

START_TEST(t_flood_unread)
{
	uint8_t frame[64 * 1024];
	struct pollfd pf;
	size_t one, len;
	long rss0, rss1, peak = 0;
	double t0, end, worst = 0, dt;
	ssize_t w;
	uint64_t sent = 0;
	int fd, i, dropped = 0, stalled = 0;

	rss0 = th_rss_kb(pmd.pid);
	ck_assert_int_gt(rss0, 0);
	fd = th_raw_hello(pmd.sock);
	/* many T_STATUS requests per write; each reply is ~10x the request */
	one = th_frame(frame, sizeof(frame), PM_WIRE_VERSION,
	    PM__TYPE__T_STATUS, 7, 0, NULL);
	ck_assert_uint_gt(one, 0);
	for (len = one; len + one <= sizeof(frame); len += one)
		memcpy(frame + len, frame, one);
	fcntl(fd, F_SETFL, O_NONBLOCK);
	end = th_now() + 40;
	while (th_now() < end && sent < (256ull << 20)) {
		w = send(fd, frame, len, MSG_NOSIGNAL);
		if (w > 0) {
			sent += (uint64_t)w;
			if (sent % (4u << 20) < (uint64_t)w) {
				long r = th_rss_kb(pmd.pid);

				if (r > peak)
					peak = r;
			}
			continue;
		}
		if (w == -1 && (errno == EPIPE || errno == ECONNRESET)) {
			dropped = 1;
			break;
		}
		ck_assert_msg(w == -1 && errno == EAGAIN, "send: %s",
		    strerror(errno));
		pf.fd = fd;
		pf.events = POLLOUT;
		if (poll(&pf, 1, 1000) == 0) {
			stalled = 1;	/* pmd reads no more from us */
			break;
		}
	}
	ck_assert_msg(dropped || stalled, "sent %llu bytes in 40 s, neither "
	    "dropped nor held back", (unsigned long long)sent);
	rss1 = th_rss_kb(pmd.pid);
	if (rss1 > peak)
		peak = rss1;
	ck_assert_msg(peak - rss0 < 48 * 1024, "pmd grew from %ld to %ld kB "
	    "for a client that does not read (%llu bytes sent)", rss0, peak,
	    (unsigned long long)sent);
	/* others are served as usual meanwhile */
	for (i = 0; i < 20; i++) {
		t0 = th_now();
		ck_assert_int_ge(pm_active_children(conn, NULL, 0), 0);
		dt = th_now() - t0;
		if (dt > worst)
			worst = dt;
	}
	ck_assert_msg(worst < 1.0, "a request took %.2f s", worst);
	serves(conn);
	close(fd);
	settled();
	rss1 = th_rss_kb(pmd.pid);
	ck_assert_msg(rss1 - rss0 < 48 * 1024, "pmd at %ld kB, %ld before",
	    rss1, rss0);
}
END_TEST

/* ---- a closing session is freed, whoever notices ---- */

/* The clients pmd counts (pmctl status). */
static int
clients(void)
{
	char out[4096], *at;

	ck_assert_int_eq(th_pmctl(out, sizeof(out), "--socket", pmd.sock,
	    "--json", "status", NULL), 0);
	ck_assert_ptr_nonnull(at = strstr(out, "\"clients\": "));
	return atoi(at + 11);	/* pmctl's own included */
}

/* Getters parked on queue name (pmctl queues). */
static int
parked_gets(const char *name)
{
	char out[16384], key[300], *at;

	ck_assert_int_eq(th_pmctl(out, sizeof(out), "--socket", pmd.sock,
	    "--json", "queues", NULL), 0);
	snprintf(key, sizeof(key), "\"name\": \"%s\"", name);
	if ((at = strstr(out, key)) == NULL ||
	    (at = strstr(at, "\"getters\": ")) == NULL)
		return -1;
	return atoi(at + strlen("\"getters\": "));
}

/*
 * A client leaves a 4 MiB reply unread (pmd stops reading it) with a get
 * parked on an empty queue, then shuts its socket down.  Whether pmd's
 * next write fails in the parked get's timer (the reading side shut: no
 * event tells pmd before) or the client goes first, its session is freed,
 * with its fds, once the client has gone.
 */
START_TEST(t_stranded_session)
{
	static const int how[] = { SHUT_RD, SHUT_WR, SHUT_RDWR, -1 };
	Pm__QueueGet g = PM__QUEUE_GET__INIT;
	struct wire_in in;
	pm_queue *big, *empty;
	char *item;
	uint64_t qbig, qempty;
	size_t round;
	int fd;

	ck_assert_ptr_nonnull(item = calloc(1, 4u << 20));
	big = pm_queue_open(conn, "big", 0, PM_Q_CREATE);
	empty = pm_queue_open(conn, "empty", 0, PM_Q_CREATE);
	ck_assert(big != NULL && empty != NULL);
	ck_assert_int_eq(clients(), 2);
	for (round = 0; round < sizeof(how) / sizeof(how[0]); round++) {
		ck_assert_int_eq(pm_queue_put(big, item, 4u << 20, -1), PM_OK);
		fd = th_raw_hello(pmd.sock);
		wire_in_init(&in, 0);
		qbig = th_raw_qopen(fd, &in, "big");
		qempty = th_raw_qopen(fd, &in, "empty");
		g.qid = qempty;
		g.max = 1;
		g.timeout = 1.0;
		th_raw_send(fd, PM__QUEUE_TYPE__Q_GET, 3, &g.base);
		g.qid = qbig;
		g.timeout = 0;
		th_raw_send(fd, PM__QUEUE_TYPE__Q_GET, 4, &g.base);
		TH_WAIT(parked_gets("empty") == 1, 10);
		ck_assert_int_eq(parked_gets("empty"), 1);
		if (how[round] >= 0)
			ck_assert_int_eq(shutdown(fd, how[round]), 0);
		TH_WAIT(parked_gets("empty") == 0, 10);	/* timed out */
		ck_assert_int_eq(parked_gets("empty"), 0);
		th_sleep(0.1);
		wire_in_free(&in);
		close(fd);
		TH_WAIT(clients() == 2, 10);
		ck_assert_msg(clients() == 2, "shutdown %d: %d clients",
		    how[round], clients());
		settled();
	}
	pm_queue_free(big);
	pm_queue_free(empty);
	free(item);
}
END_TEST

/*
 * A client that shuts its sending side (SHUT_WR) with a get parked still
 * gets the item, then pmd ends the session; one that goes while its get is
 * parked has its session freed too, and consumes nothing.
 */
START_TEST(t_half_closed)
{
	Pm__QueueGet g = PM__QUEUE_GET__INIT;
	Pm__QueueItems *items;
	struct wire_in in;
	struct pm_frame f;
	pm_queue *q;
	char c;
	int fd, round;

	q = pm_queue_open(conn, "hc", 0, PM_Q_CREATE);
	ck_assert_ptr_nonnull(q);
	for (round = 0; round < 2; round++) {
		fd = th_raw_hello(pmd.sock);
		wire_in_init(&in, 0);
		g.qid = th_raw_qopen(fd, &in, "hc");
		g.max = 1;
		g.timeout = -1;
		th_raw_send(fd, PM__QUEUE_TYPE__Q_GET, 3, &g.base);
		TH_WAIT(parked_gets("hc") == 1, 10);
		ck_assert_int_eq(parked_gets("hc"), 1);
		ck_assert_int_eq(shutdown(fd, SHUT_WR), 0);
		/* pmd has seen the EOF by the time it answers a later client */
		ck_assert_int_eq(clients(), 3);
		ck_assert_int_eq(parked_gets("hc"), 1);
		if (round == 0) {
			ck_assert_int_eq(pm_queue_put(q, "late", 4, 10), PM_OK);
			th_raw_next(fd, &in, &f, 30);
			ck_assert_uint_eq(f.type, PM__QUEUE_TYPE__Q_ITEMS);
			ck_assert_uint_eq(f.id, 3);
			items = pm__queue_items__unpack(NULL, f.len, f.data);
			ck_assert_ptr_nonnull(items);
			ck_assert_uint_eq(items->n_items, 1);
			ck_assert_mem_eq(items->items[0].data, "late", 4);
			pm__queue_items__free_unpacked(items, NULL);
			/* answered: pmd closes it */
			ck_assert(th_readable(fd, 10));
			ck_assert_int_eq(read(fd, &c, 1), 0);
		}
		wire_in_free(&in);
		close(fd);
		TH_WAIT(clients() == 2, 10);
		ck_assert_int_eq(clients(), 2);
		ck_assert_int_eq(parked_gets("hc"), 0);
		settled();
	}
	/* the client that went consumed nothing */
	ck_assert_int_eq(pm_queue_put(q, "kept", 4, 10), PM_OK);
	ck_assert_int_eq(pm_queue_qsize(q), 1);
	pm_queue_free(q);
}
END_TEST

/* ---- memory held for idle connections ---- */

#define BIG_CONNS	8
#define BIG_ITEMS	240		/* per batch: ~11 MiB in one frame */
#define BIG_ITEM	(48u << 10)	/* inline: under PM_WIRE_MEMFD_MIN */

static pm_conn *bigc[BIG_CONNS];
static pm_queue *bigq[BIG_CONNS];

/*
 * Connections that each moved one large frame each way (a batch of
 * inline items put, then got) and then stay idle do not keep pmd's
 * buffers for them: its RSS comes back near where it was.
 */
START_TEST(t_idle_big_frames)
{
	pm_bytes in[BIG_ITEMS], out[BIG_ITEMS];
	long rss0, rss1;
	size_t got, k;
	char *data;
	int i;

	ck_assert_ptr_nonnull(data = calloc(1, BIG_ITEM));
	for (k = 0; k < BIG_ITEMS; k++) {
		in[k].data = data;
		in[k].len = BIG_ITEM;
	}
	rss0 = th_rss_kb(pmd.pid);
	for (i = 0; i < BIG_CONNS; i++) {
		bigc[i] = pm_connect(pmd.sock);
		ck_assert_ptr_nonnull(bigc[i]);
		bigq[i] = pm_queue_open(bigc[i], "big", 0, PM_Q_CREATE);
		ck_assert_ptr_nonnull(bigq[i]);
		ck_assert_int_eq(pm_queue_put_many(bigq[i], in, BIG_ITEMS, 10),
		    PM_OK);
		ck_assert_int_eq(pm_queue_get_many(bigq[i], out, BIG_ITEMS,
		    &got, 10), PM_OK);
		ck_assert_uint_eq(got, BIG_ITEMS);
		for (k = 0; k < got; k++)
			pm_bytes_free(&out[k]);
	}
	ck_assert_int_eq(pm_queue_unlink(conn, "big"), PM_OK);
	rss1 = th_rss_kb(pmd.pid);
#ifndef __SANITIZE_ADDRESS__	/* ASan keeps freed memory (quarantine) */
	ck_assert_msg(rss1 - rss0 < 32 * 1024, "pmd's RSS went from %ld to "
	    "%ld kB for %d idle connections that each moved %u kB",
	    rss0, rss1, BIG_CONNS, (unsigned)(BIG_ITEMS * BIG_ITEM >> 10));
#endif
	fprintf(stderr, "idle big frames: pmd RSS %ld -> %ld kB\n", rss0, rss1);
	for (i = 0; i < BIG_CONNS; i++) {
		pm_queue_free(bigq[i]);
		bigq[i] = NULL;
		pm_disconnect(bigc[i]);
		bigc[i] = NULL;
	}
	free(data);
}
END_TEST

static Suite *
faults_suite(void)
{
	Suite *s = suite_create("faults");
	TCase *tc;

	tc = th_tcase(s, "forker", setup, teardown, 120);
	tcase_add_test(tc, t_forker_killed);
	tcase_add_test(tc, t_forker_killed_in_flight);
	tcase_add_test(tc, t_spawn_at_max_frame);
	tcase_add_test(tc, t_forker_write_error);

	tc = th_tcase(s, "nofork", setup_nofork, teardown, 120);
	tcase_add_test(tc, t_forker_by_exec);

	tc = th_tcase(s, "subreaper", setup_subreaper, teardown, 120);
	tcase_add_test(tc, t_orphans_reaped);
	tcase_add_test(tc, t_worker_dies_unannounced);

	tc = th_tcase(s, "pmd-killed", NULL, teardown_private, 120);
	tcase_add_test(tc, t_pmd_killed_private);

	tc = th_tcase(s, "clients", setup, teardown, 120);
	tcase_add_test(tc, t_client_killed);
	tcase_add_test(tc, t_flood_unread);
	tcase_add_test(tc, t_stranded_session);
	tcase_add_test(tc, t_half_closed);

	tc = th_tcase(s, "memory", setup, teardown, 120);
	tcase_add_test(tc, t_idle_big_frames);

	tc = th_tcase(s, "fork-failure", setup, teardown_cg, 120);
	tcase_add_test(tc, t_fork_failure);
	tcase_add_test(tc, t_forker_retry);

	tc = th_tcase(s, "nofile", setup_nofile, teardown, 120);
	tcase_add_test(tc, t_out_of_fds);
	tcase_add_test(tc, t_spawn_out_of_fds);
	tcase_add_test(tc, t_forker_out_of_fds);
	return s;
}

int
main(void)
{
	return th_run_suite(faults_suite());
}
