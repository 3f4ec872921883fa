/*
 * check_priv.c - the security model against a real pmd running as root:
 * workers take their client's uid, gid and groups; a client cannot
 * signal or list another uid's workers; admin operations (signalling
 * others' workers, shutdown) need root or the admin group; a client
 * cannot make a worker load a module it could not read; spawn rate and
 * per-uid worker caps are PM_ELIMIT with a message and bind only the uid
 * that hits them.
 *
 * Clients of other uids are forked from the test and drop to those ids
 * (setgroups, setgid, setuid) before connecting; pmctl runs the same way,
 * from a copy every uid can reach (th_stage: the checkout may be private).
 * Every test is skipped when the suite does not run as root.
 */
#include <sys/types.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "pmclient.h"
#include "pmclient_int.h"
#include "queue.pb-c.h"
#include "wire.h"

#define G_ADMIN		65531		/* admin_group in the config */

struct who {
	uid_t	uid;
	gid_t	gid;
	int	ngroups;
	gid_t	groups[4];
};

/* Two ordinary users, one with supplementary groups, and an admin. */
static const struct who user_a = { 65534, 65534, 2, { 65529, 65530 } };
static const struct who user_b = { 65533, 65533, 0, { 0 } };
static const struct who admin_c = { 65532, 65532, 1, { G_ADMIN } };

static struct th_pmd pmd;
static pm_conn *conn;		/* root's */
static int base_pmd;
static char pubmod[PATH_MAX + 64];	/* 0644 copy of privtasks.so */
static char privmod[PATH_MAX + 64];	/* 0600 copy, owned by root */
static int is_root;

/* What a test holds while it forks user clients: reachable from here, so
 * not lost in those children, and freed by teardown if a failed check
 * left it.  Free one with proc_free(). */
#define MAX_PROCS	200
static pm_conn *conn2;			/* root's second connection */
static pm_process *procs[MAX_PROCS];	/* root's workers */
static pm_queue *rootq;			/* root's queue handle */
#define MAX_HELD	16
static pm_conn *held[MAX_HELD];		/* root's extra connections */
static pm_queue *heldq[MAX_HELD];	/* root's extra queue handles */
static int rawfd[MAX_HELD] = { -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1 };		/* root's raw connections */

/* ---- set-up ---- */

/* pmd with these config lines, open to every uid, and copies of the
 * test module there: one every uid can read, one only root can. */
static void
start_with_args(const char *lines, const char *extra)
{
	const char *args[] = { extra, NULL };
	char text[512];
	struct th_pmd_opts o = { .conf = text, .args = args, .shared = 1 };

	is_root = geteuid() == 0;
	if (!is_root)
		return;
	snprintf(text, sizeof(text), "admin_group = %u\n%s",
	    (unsigned)G_ADMIN, lines);
	ck_assert_int_eq(th_pmd_start_opts(&pmd, &o), 0);
	th_pmd_module(&pmd, "privtasks.so", "pub.so", 0644, pubmod,
	    sizeof(pubmod));
	th_pmd_module(&pmd, "privtasks.so", "priv.so", 0600, privmod,
	    sizeof(privmod));
	base_pmd = th_fd_count(pmd.pid);
	conn = pm_connect(pmd.sock);
	ck_assert_msg(conn != NULL, "pm_connect: %s", pm_last_message());
}

static void
start_with(const char *lines)
{
	start_with_args(lines, NULL);
}

static void
setup(void)
{
	start_with("");
}

/* with pre-started workers: handed over, and claimed ahead */
static void
setup_prestart(void)
{
	start_with_args("", "--prestart=4");
}

static void
setup_private(void)
{
	start_with_args("", "--private");
}

static void
setup_cap(void)
{
	start_with("max_workers_per_uid = 3\n");
}

static void
setup_rate(void)
{
	start_with("spawn_rate = 5\n");
}

static void
proc_free(pm_process **p)
{
	pm_process_free(*p);
	*p = NULL;
}

static void
teardown(void)
{
	int i;

	if (!is_root)
		return;
	for (i = 0; i < MAX_PROCS; i++)
		proc_free(&procs[i]);
	pm_queue_free(rootq);
	rootq = NULL;
	for (i = 0; i < MAX_HELD; i++) {
		pm_queue_free(heldq[i]);
		heldq[i] = NULL;
		pm_disconnect(held[i]);
		held[i] = NULL;
		if (rawfd[i] >= 0)
			close(rawfd[i]);
		rawfd[i] = -1;
	}
	pm_disconnect(conn2);
	conn2 = NULL;
	pm_disconnect(conn);
	conn = NULL;
	if (th_pid_alive(pmd.pid)) {
		th_pmd_settled(&pmd, base_pmd, 10);
	}
	ck_assert_int_eq(th_pmd_stop(&pmd), 0);
}


/* ---- clients under other uids ---- */

static int report_fd = -1;	/* in a user child: the test's pipe */

static void
drop(const struct who *w)
{
	if (setgroups((size_t)w->ngroups, w->groups) == -1 ||
	    setgid(w->gid) == -1 || setuid(w->uid) == -1 ||
	    getuid() != w->uid || geteuid() != w->uid)
		_exit(90);
}

/* In a user child: a line for the test's failure message; returns code. */
static int __attribute__((format(printf, 2, 3)))
say(int code, const char *fmt, ...)
{
	char buf[1024];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(buf, sizeof(buf) - 1, fmt, ap);
	va_end(ap);
	if (n < 0)
		return code;
	if (n > (int)sizeof(buf) - 2)
		n = (int)sizeof(buf) - 2;
	buf[n++] = '\n';
	(void)!write(report_fd, buf, (size_t)n);
	return code;
}

struct user_proc {
	pid_t	pid;
	int	fd;		/* its report pipe */
	int	ctl;		/* the test writes here to let it go on */
};

/* Runs fn(ud, ctl_fd) as w in a child; its exit code is fn's.  fn hands
 * what it creates to th_child_own (freed on the way out, early returns
 * too) and uses none of the test's objects. */
static struct user_proc
as_user(const struct who *w, int (*fn)(void *, int), void *ud)
{
	struct user_proc u;
	int p[2], c[2];

	ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
	ck_assert_int_eq(pipe2(c, O_CLOEXEC), 0);
	u.pid = th_fork();
	if (u.pid == 0) {
		close(p[0]);
		close(c[1]);
		report_fd = p[1];
		drop(w);
		th_child_exit(fn(ud, c[0]));
	}
	close(p[1]);
	close(c[0]);
	u.fd = p[0];
	u.ctl = c[1];
	return u;
}

/* Reads a line (up to '\n') the user child sent; "" at EOF. */
static void
user_line(struct user_proc *u, char *buf, size_t cap)
{
	size_t n = 0;
	ssize_t r;

	while (n + 1 < cap && th_readable(u->fd, 60) &&
	    (r = read(u->fd, buf + n, 1)) == 1 && buf[n] != '\n')
		n++;
	buf[n] = '\0';
}

/* Lets it go on, waits (60 s), and fails with its report unless it
 * exited 0. */
static void
user_done(struct user_proc *u)
{
	char msg[4096];
	size_t n = 0;
	ssize_t r;
	int st = 0;
	double end = th_now() + 60;
	pid_t got;

	if (u->ctl >= 0) {
		(void)!write(u->ctl, "g", 1);
		close(u->ctl);
		u->ctl = -1;
	}
	while (n + 1 < sizeof(msg) && th_readable(u->fd, end - th_now()) &&
	    (r = read(u->fd, msg + n, sizeof(msg) - 1 - n)) > 0)
		n += (size_t)r;
	msg[n] = '\0';
	close(u->fd);
	while ((got = waitpid(u->pid, &st, WNOHANG)) == 0 && th_now() < end)
		th_sleep(0.01);
	if (got == 0) {
		kill(u->pid, SIGKILL);
		waitpid(u->pid, &st, 0);
		ck_abort_msg("user client %d hung: %s", (int)u->pid, msg);
	}
	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0,
	    "user client: status 0x%x: %s", st, msg);
}

/* In a user child: waits until the test says go (or gives up). */
static void
wait_go(int ctl)
{
	char c;

	if (th_readable(ctl, 60))
		(void)!read(ctl, &c, 1);
}

/* pmctl --socket pmd.sock args... run as w; stdout into out. */
static int
pmctl_as(const struct who *w, char *out, size_t outsz, ...)
{
	const char *argv[32];
	char buf[16384];
	va_list ap;
	const char *a;
	size_t got = 0;
	ssize_t n;
	int p[2], st, argc = 0, r;
	pid_t pid;

	argv[argc++] = th_stage(th_env("PMCTL_BIN"));
	argv[argc++] = "--socket";
	argv[argc++] = pmd.sock;
	va_start(ap, outsz);
	while ((a = va_arg(ap, const char *)) != NULL && argc < 31)
		argv[argc++] = a;
	va_end(ap);
	argv[argc] = NULL;
	ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
	pid = th_fork();
	if (pid == 0) {
		close(p[0]);
		drop(w);
		r = th_run(argv, buf, sizeof(buf), 30);
		(void)!write(p[1], buf, strlen(buf));
		th_child_exit(r < 0 ? 200 : r);
	}
	close(p[1]);
	while (th_readable(p[0], 60) && got + 1 < outsz &&
	    (n = read(p[0], out + got, outsz - 1 - got)) > 0)
		got += (size_t)n;
	out[got] = '\0';
	close(p[0]);
	ck_assert_int_eq(waitpid(pid, &st, 0), pid);
	ck_assert(WIFEXITED(st));
	r = WEXITSTATUS(st);
	ck_assert_msg(r != 200 && r != 90, "pmctl as uid %u did not run (%d)",
	    (unsigned)w->uid, r);
	return r;
}

/* "\"pid\": N" appears in a pmctl ps --json output. */
static int
ps_lists(const char *json, pid_t pid)
{
	char key[32];
	const char *at;
	size_t kl;

	kl = (size_t)snprintf(key, sizeof(key), "\"pid\": %d", (int)pid);
	for (at = json; (at = strstr(at, key)) != NULL; at += kl)
		if (at[kl] < '0' || at[kl] > '9')
			return 1;
	return 0;
}

/* Result of module:fn run to the end on c; NULL (error set) on failure. */
static char *
run_result(pm_conn *c, const char *module, const char *fn, int *err)
{
	pm_process *p;
	pm_bytes b = { NULL, 0 };
	char *s = NULL;
	int code = -1;

	*err = PM_OK;
	if ((p = pm_process_new(c, module, fn, NULL, 0)) == NULL) {
		*err = pm_last_error();
		return NULL;
	}
	if ((*err = pm_process_start(p)) != PM_OK ||
	    (*err = pm_process_join(p, 30)) != PM_OK ||
	    (*err = pm_process_exitcode(p, &code)) != PM_OK ||
	    (*err = code == 0 ? PM_OK : PM_ETASK) != PM_OK ||
	    (*err = pm_process_result(p, &b)) != PM_OK) {
		pm_process_free(p);
		return NULL;
	}
	if ((s = calloc(1, b.len + 1)) != NULL)
		memcpy(s, b.data, b.len);
	pm_bytes_free(&b);
	pm_process_free(p);
	return s;
}

/* The ids string a worker of w must report. */
static void
expected_ids(const struct who *w, char *buf, size_t cap)
{
	gid_t g[4];
	size_t len;
	int i, j;

	memcpy(g, w->groups, sizeof(g));
	for (i = 0; i < w->ngroups; i++)	/* the kernel sorts them */
		for (j = i + 1; j < w->ngroups; j++)
			if (g[j] < g[i]) {
				gid_t t = g[i];

				g[i] = g[j];
				g[j] = t;
			}
	len = (size_t)snprintf(buf, cap, "%u %u %u %u %d", (unsigned)w->uid,
	    (unsigned)w->gid, (unsigned)w->uid, (unsigned)w->gid, w->ngroups);
	for (i = 0; i < w->ngroups; i++)
		len += (size_t)snprintf(buf + len, cap - len, " %u",
		    (unsigned)g[i]);
}

/* ---- credentials ---- */

static int
creds_client(void *ud, int ctl)
{
	const struct who *w = ud;
	char want[256], cmd[256];
	char *argv[] = { (char *)(uintptr_t)"sh", (char *)(uintptr_t)"-c",
	    cmd, NULL };
	pm_process *p;
	pm_conn *c;
	char *got;
	int err, code = -1, i;

	(void)ctl;
	if ((c = pm_connect(pmd.sock)) == NULL)
		return say(1, "connect: %s", pm_last_message());
	th_child_own(c, th_free_conn);
	expected_ids(w, want, sizeof(want));
	/* three: with pre-started workers, the first is handed one by pmd,
	 * the last runs on one this client claimed ahead */
	for (i = 0; i < 3; i++) {
		if ((got = run_result(c, pubmod, "ids", &err)) == NULL)
			return say(2, "ids: %d %s", err, pm_last_message());
		th_child_own(got, free);
		if (strcmp(got, want) != 0)
			return say(3, "worker ids \"%s\", client's \"%s\"",
			    got, want);
		th_child_free(got);
	}
	/* a program runs with them too */
	snprintf(cmd, sizeof(cmd), "test \"$(id -u) $(id -g) $(id -G | wc -w)\""
	    " = \"%u %u %d\"", (unsigned)w->uid, (unsigned)w->gid,
	    w->ngroups + 1);
	p = pm_process_new_exec(c, "/bin/sh", argv, NULL);
	th_child_own(p, th_free_process);
	if (p == NULL || pm_process_start(p) != PM_OK ||
	    pm_process_join(p, 30) != PM_OK ||
	    pm_process_exitcode(p, &code) != PM_OK)
		return say(4, "exec: %s", pm_last_message());
	if (code != 0)
		return say(5, "exec: the program saw other ids (exit %d)", code);
	th_child_free(p);
	th_child_free(c);
	return 0;
}

/* A client started under another uid by setpriv(1), as an administrator
 * would: pmctl run's program runs with that uid, gid and groups. */
START_TEST(t_setpriv)
{
	char out[256], want[128], reuid[32], regid[32], groups[64];
	const char *argv[16];
	int n = 0, r;

	TH_NEED_ROOT();
	snprintf(reuid, sizeof(reuid), "--reuid=%u", (unsigned)user_a.uid);
	snprintf(regid, sizeof(regid), "--regid=%u", (unsigned)user_a.gid);
	snprintf(groups, sizeof(groups), "--groups=%u,%u",
	    (unsigned)user_a.groups[0], (unsigned)user_a.groups[1]);
	snprintf(want, sizeof(want), "%u %u %u %u %u\n", (unsigned)user_a.uid,
	    (unsigned)user_a.gid, (unsigned)user_a.gid,
	    (unsigned)user_a.groups[0], (unsigned)user_a.groups[1]);
	argv[n++] = "/usr/bin/setpriv";
	argv[n++] = reuid;
	argv[n++] = regid;
	argv[n++] = groups;
	argv[n++] = th_stage(th_env("PMCTL_BIN"));
	argv[n++] = "--socket";
	argv[n++] = pmd.sock;
	argv[n++] = "run";
	argv[n++] = "--";
	argv[n++] = "/bin/sh";
	argv[n++] = "-c";
	argv[n++] = "echo $(id -u) $(id -g) $(id -G)";
	argv[n] = NULL;
	r = th_run(argv, out, sizeof(out), 30);
	ck_assert_msg(r == 0, "setpriv pmctl run: %d (%s)", r, out);
	ck_assert_str_eq(out, want);
}
END_TEST

START_TEST(t_creds)
{
	struct user_proc u;
	char *got;
	int err;

	TH_NEED_ROOT();
	got = run_result(conn, pubmod, "ids", &err);
	ck_assert_msg(got != NULL, "root ids: %d %s", err, pm_last_message());
	ck_assert_msg(strncmp(got, "0 0 0 0 ", 8) == 0, "root's worker: %s",
	    got);
	free(got);
	u = as_user(&user_a, creds_client, (void *)(uintptr_t)&user_a);
	user_done(&u);
	u = as_user(&user_b, creds_client, (void *)(uintptr_t)&user_b);
	user_done(&u);
	u = as_user(&admin_c, creds_client, (void *)(uintptr_t)&admin_c);
	user_done(&u);
}
END_TEST

/* ---- one uid against another's workers ---- */

/* Starts idle, reports its pid, waits for go, then joins (60 s): the
 * admin's SIGTERM must end it. */
static int
owner_client(void *ud, int ctl)
{
	pm_process *p;
	pm_conn *c;
	int code = 0, r;

	(void)ud;
	if ((c = pm_connect(pmd.sock)) == NULL)
		return say(1, "connect: %s", pm_last_message());
	th_child_own(c, th_free_conn);
	p = pm_process_new(c, pubmod, "idle", NULL, 0);
	th_child_own(p, th_free_process);
	if (p == NULL || pm_process_start(p) != PM_OK)
		return say(2, "start: %s", pm_last_message());
	say(0, "%d", (int)pm_process_pid(p));
	wait_go(ctl);
	if ((r = pm_process_join(p, 60)) != PM_OK)
		return say(3, "join: %d %s", r, pm_last_message());
	if (pm_process_exitcode(p, &code) != PM_OK || code != -SIGTERM)
		return say(4, "exit code %d, want %d", code, -SIGTERM);
	th_child_free(p);
	th_child_free(c);
	return 0;
}

/* Raw T_SIGNAL (to ud, a pid; 0: none) and T_SHUTDOWN from another
 * uid: PM_EPERM, nothing done. */
static int
intruder_client(void *ud, int ctl)
{
	Pm__Signal sg = PM__SIGNAL__INIT;
	Pm__Shutdown sd = PM__SHUTDOWN__INIT;
	struct pmc_pending *pp;
	pid_t victim = (pid_t)(intptr_t)ud;
	pm_conn *c;
	pid_t mine[8];
	int r, signo[] = { SIGTERM, SIGKILL, 0 };
	size_t i;

	(void)ctl;
	if ((c = pm_connect(pmd.sock)) == NULL)
		return say(1, "connect: %s", pm_last_message());
	th_child_own(c, th_free_conn);
	for (i = 0; victim > 0 && i < sizeof(signo) / sizeof(signo[0]); i++) {
		sg.pid = victim;
		sg.signo = signo[i];
		r = pmc_call(c, PM__TYPE__T_SIGNAL, &sg.base, NULL, 0, NULL,
		    &pp, 30);
		if (r == PM_OK) {
			pmc_pending_free(c, pp);
			return say(2, "signal %d to pid %d allowed", signo[i],
			    (int)victim);
		}
		if (r != PM_EPERM || *pm_last_message() == '\0')
			return say(3, "signal %d: %d (%s), want PM_EPERM",
			    signo[i], r, pm_last_message());
	}
	r = pmc_call(c, PM__TYPE__T_SHUTDOWN, &sd.base, NULL, 0, NULL, &pp, 30);
	if (r == PM_OK) {
		pmc_pending_free(c, pp);
		return say(4, "shutdown allowed");
	}
	if (r != PM_EPERM || *pm_last_message() == '\0')
		return say(5, "shutdown: %d (%s), want PM_EPERM", r,
		    pm_last_message());
	/* the connection is still good, and sees none of it */
	if ((r = pm_active_children(c, mine, 8)) != 0)
		return say(6, "active children: %d", r);
	th_child_free(c);
	return 0;
}

/* An idle worker of root's (procs[0], *mine) and one of user a's (*victim,
 * its pid also in line), whose client waits in *owner. */
static pm_process *
two_workers(pid_t *mine, struct user_proc *owner, pid_t *victim, char *line,
    size_t cap)
{
	pm_process *p;

	procs[0] = p = pm_process_new(conn, pubmod, "idle", NULL, 0);
	ck_assert_int_eq(pm_process_start(p), PM_OK);
	*mine = pm_process_pid(p);
	*owner = as_user(&user_a, owner_client, NULL);
	user_line(owner, line, cap);
	*victim = (pid_t)atoi(line);
	ck_assert_msg(*victim > 0, "owner client said \"%s\"", line);
	return p;
}

START_TEST(t_isolation)
{
	struct user_proc owner, in;
	char line[64], out[16384];
	pid_t victim, mine;
	pm_process *p;
	int r;

	TH_NEED_ROOT();
	p = two_workers(&mine, &owner, &victim, line, sizeof(line));
	ck_assert(th_pid_alive(victim));

	/* user b: raw requests refused */
	in = as_user(&user_b, intruder_client, (void *)(intptr_t)victim);
	user_done(&in);
	/* pmctl kill refused: exit 1, for a's and for root's worker */
	r = pmctl_as(&user_b, out, sizeof(out), "kill", "-s", "KILL", line,
	    NULL);
	ck_assert_int_eq(r, 1);
	snprintf(line, sizeof(line), "%d", (int)mine);
	r = pmctl_as(&user_b, out, sizeof(out), "kill", line, NULL);
	ck_assert_int_eq(r, 1);
	r = pmctl_as(&user_a, out, sizeof(out), "kill", line, NULL);
	ck_assert_int_eq(r, 1);
	/* ps lists only one's own, with or without -a */
	ck_assert_int_eq(pmctl_as(&user_b, out, sizeof(out), "ps", "--json",
	    NULL), 0);
	ck_assert_msg(!ps_lists(out, victim) && !ps_lists(out, mine),
	    "b's ps shows others: %s", out);
	ck_assert_int_eq(pmctl_as(&user_b, out, sizeof(out), "ps", "--json",
	    "-a", NULL), 0);
	ck_assert_msg(!ps_lists(out, victim) && !ps_lists(out, mine),
	    "b's ps -a shows others: %s", out);
	ck_assert_int_eq(pmctl_as(&user_a, out, sizeof(out), "ps", "--json",
	    "-a", NULL), 0);
	ck_assert_msg(ps_lists(out, victim) && !ps_lists(out, mine),
	    "a's ps -a: %s", out);
	/* root: its own without -a, everyone's with */
	ck_assert_int_eq(th_pmctl(out, sizeof(out), "--socket", pmd.sock,
	    "ps", "--json", NULL), 0);
	ck_assert_msg(!ps_lists(out, victim) && ps_lists(out, mine),
	    "root's ps: %s", out);
	ck_assert_int_eq(th_pmctl(out, sizeof(out), "--socket", pmd.sock,
	    "ps", "--json", "-a", NULL), 0);
	ck_assert_msg(ps_lists(out, victim) && ps_lists(out, mine),
	    "root's ps -a: %s", out);

	/* all of it left both workers alone */
	ck_assert(th_pid_alive(victim));
	ck_assert_int_eq(pm_process_is_alive(p), 1);
	ck_assert(pmd.pid > 0 && th_pid_alive(pmd.pid));

	/* root is admin: its pmctl kill ends a's worker */
	snprintf(line, sizeof(line), "%d", (int)victim);
	ck_assert_int_eq(th_pmctl(out, sizeof(out), "--socket", pmd.sock,
	    "kill", line, NULL), 0);
	user_done(&owner);
	ck_assert_int_eq(pm_process_terminate(p), PM_OK);
	ck_assert_int_eq(pm_process_join(p, 30), PM_OK);
	proc_free(&procs[0]);
}
END_TEST

/* ---- the admin group ---- */

static int
shutdown_client(void *ud, int ctl)
{
	Pm__Shutdown sd = PM__SHUTDOWN__INIT;
	struct pmc_pending *pp;
	pm_conn *c;
	int r;

	(void)ud;
	(void)ctl;
	if ((c = pm_connect(pmd.sock)) == NULL)
		return say(1, "connect: %s", pm_last_message());
	th_child_own(c, th_free_conn);
	r = pmc_call(c, PM__TYPE__T_SHUTDOWN, &sd.base, NULL, 0, NULL, &pp, 30);
	if (r != PM_OK)
		return say(2, "shutdown: %d (%s)", r, pm_last_message());
	pmc_pending_free(c, pp);
	th_child_free(c);
	return 0;
}

START_TEST(t_admin_group)
{
	struct user_proc owner, u;
	char line[64], out[16384];
	pid_t victim, mine;
	pm_process *p;
	int st;

	TH_NEED_ROOT();
	p = two_workers(&mine, &owner, &victim, line, sizeof(line));

	/* a member of admin_group sees and signals everyone's workers */
	ck_assert_int_eq(pmctl_as(&admin_c, out, sizeof(out), "ps", "--json",
	    "-a", NULL), 0);
	ck_assert_msg(ps_lists(out, victim) && ps_lists(out, mine),
	    "admin's ps -a: %s", out);
	ck_assert_int_eq(pmctl_as(&admin_c, out, sizeof(out), "kill", line,
	    NULL), 0);
	user_done(&owner);
	snprintf(line, sizeof(line), "%d", (int)mine);
	ck_assert_int_eq(pmctl_as(&admin_c, out, sizeof(out), "kill", "-s",
	    "KILL", line, NULL), 0);
	ck_assert_int_eq(pm_process_join(p, 30), PM_OK);
	ck_assert_int_eq(pm_process_exitcode(p, &st), PM_OK);
	ck_assert_int_eq(st, -SIGKILL);
	proc_free(&procs[0]);

	/* a non-member cannot shut pmd down; a member can */
	u = as_user(&user_b, intruder_client, (void *)(intptr_t)0);
	user_done(&u);
	ck_assert(th_pid_alive(pmd.pid));
	u = as_user(&admin_c, shutdown_client, NULL);
	user_done(&u);
	TH_WAIT(!th_pid_alive(pmd.pid), 15);
	ck_assert_msg(!th_pid_alive(pmd.pid), "pmd still up after shutdown");
	ck_assert_int_eq(waitpid(pmd.pid, &st, 0), pmd.pid);
	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0,
	    "pmd status 0x%x after shutdown", st);
	pmd.pid = 0;		/* reaped here */
}
END_TEST

/* ---- modules ---- */

static int
module_client(void *ud, int ctl)
{
	const char *unreadable[2];
	char want[256], *got, dir[PATH_MAX + 64];
	pm_process *p;
	pm_conn *c;
	size_t i;
	int r;

	(void)ctl;
	snprintf(dir, sizeof(dir), "%s/closed/pub.so", pmd.dir);
	unreadable[0] = privmod;
	unreadable[1] = dir;
	if ((c = pm_connect(pmd.sock)) == NULL)
		return say(1, "connect: %s", pm_last_message());
	th_child_own(c, th_free_conn);
	for (i = 0; i < 2; i++) {
		if (access(unreadable[i], R_OK) == 0)
			return say(2, "%s readable: the test is wrong",
			    unreadable[i]);
		if ((p = pm_process_new(c, unreadable[i], "ids", NULL, 0)) ==
		    NULL)
			return say(3, "new: %s", pm_last_message());
		th_child_own(p, th_free_process);
		r = pm_process_start(p);
		if (r == PM_OK)
			return say(4, "a worker loaded %s for uid %u",
			    unreadable[i], (unsigned)getuid());
		if ((r != PM_EPERM && r != PM_ENOENT) ||
		    *pm_last_message() == '\0')
			return say(5, "start %s: %d (%s), want PM_EPERM or "
			    "PM_ENOENT", unreadable[i], r, pm_last_message());
		th_child_free(p);
	}
	/* the same code, readable, is fine */
	if ((got = run_result(c, pubmod, "ids", &r)) == NULL)
		return say(6, "readable module: %d %s", r, pm_last_message());
	th_child_own(got, free);
	expected_ids(ud, want, sizeof(want));
	if (strcmp(got, want) != 0)
		return say(7, "ids %s, want %s", got, want);
	th_child_free(got);
	th_child_free(c);
	return 0;
}

START_TEST(t_modules)
{
	struct user_proc u;
	char dir[PATH_MAX + 64], mod[PATH_MAX + 128], *got;
	int err;

	TH_NEED_ROOT();
	snprintf(dir, sizeof(dir), "%s/closed", pmd.dir);
	ck_assert_int_eq(mkdir(dir, 0700), 0);
	snprintf(mod, sizeof(mod), "%s/pub.so", dir);
	th_copy_file(pubmod, mod, 0644);
	u = as_user(&user_a, module_client, (void *)(uintptr_t)&user_a);
	user_done(&u);
	/* root reads them all */
	got = run_result(conn, privmod, "ids", &err);
	ck_assert_msg(got != NULL, "root, 0600 module: %d %s", err,
	    pm_last_message());
	free(got);
	got = run_result(conn, mod, "ids", &err);
	ck_assert_msg(got != NULL, "root, closed dir: %d %s", err,
	    pm_last_message());
	free(got);
}
END_TEST

/* ---- bounds per uid ---- */

/* Starts 3 idle workers (the cap), a 4th is PM_ELIMIT; ends them. */
static int
cap_client(void *ud, int ctl)
{
	pm_process *p[4];
	pm_conn *c;
	int i, r, code;

	(void)ud;
	if ((c = pm_connect(pmd.sock)) == NULL)
		return say(1, "connect: %s", pm_last_message());
	th_child_own(c, th_free_conn);
	for (i = 0; i < 4; i++) {
		if ((p[i] = pm_process_new(c, pubmod, "idle", NULL, 0)) == NULL)
			return say(2, "new: %s", pm_last_message());
		th_child_own(p[i], th_free_process);
		r = pm_process_start(p[i]);
		if (i < 3 && r != PM_OK)
			return say(3, "start %d: %d %s", i, r,
			    pm_last_message());
		if (i == 3 && (r != PM_ELIMIT ||
		    strstr(pm_last_message(), "maximum") == NULL))
			return say(4, "4th start: %d (%s), want PM_ELIMIT", r,
			    pm_last_message());
	}
	say(0, "capped");
	wait_go(ctl);
	for (i = 0; i < 3; i++)
		if (pm_process_terminate(p[i]) != PM_OK ||
		    pm_process_join(p[i], 30) != PM_OK ||
		    pm_process_exitcode(p[i], &code) != PM_OK ||
		    code != -SIGTERM)
			return say(5, "end %d: %s", i, pm_last_message());
	for (i = 0; i < 4; i++)
		th_child_free(p[i]);
	th_child_free(c);
	return 0;
}

START_TEST(t_worker_cap)
{
	struct user_proc u;
	pm_process **p = procs;
	char line[64];
	int i, r;

	TH_NEED_ROOT();
	for (i = 0; i < 3; i++) {
		p[i] = pm_process_new(conn, pubmod, "idle", NULL, 0);
		ck_assert_int_eq(pm_process_start(p[i]), PM_OK);
	}
	p[3] = pm_process_new(conn, pubmod, "idle", NULL, 0);
	r = pm_process_start(p[3]);
	ck_assert_msg(r == PM_ELIMIT, "4th start: %d (%s)", r,
	    pm_last_message());
	ck_assert_msg(strstr(pm_last_message(), "max") != NULL,
	    "message: %s", pm_last_message());
	/* per uid, not per connection */
	conn2 = pm_connect(pmd.sock);
	ck_assert_ptr_nonnull(conn2);
	proc_free(&p[3]);
	p[3] = pm_process_new(conn2, pubmod, "idle", NULL, 0);
	ck_assert_int_eq(pm_process_start(p[3]), PM_ELIMIT);
	proc_free(&p[3]);
	/* another uid has its own 3, while root is at its cap */
	u = as_user(&user_a, cap_client, NULL);
	user_line(&u, line, sizeof(line));
	ck_assert_msg(strcmp(line, "capped") == 0, "user a: %s", line);
	user_done(&u);
	/* one fewer: one more */
	ck_assert_int_eq(pm_process_terminate(p[0]), PM_OK);
	ck_assert_int_eq(pm_process_join(p[0], 30), PM_OK);
	proc_free(&p[0]);
	p[0] = pm_process_new(conn2, pubmod, "idle", NULL, 0);
	r = pm_process_start(p[0]);
	ck_assert_msg(r == PM_OK, "start after one ended: %d %s", r,
	    pm_last_message());
	for (i = 0; i < 3; i++) {
		ck_assert_int_eq(pm_process_kill(p[i]), PM_OK);
		ck_assert_int_eq(pm_process_join(p[i], 30), PM_OK);
		proc_free(&p[i]);
	}
	pm_disconnect(conn2);
	conn2 = NULL;
}
END_TEST

/* Spawns noop-like tasks on c until PM_ELIMIT (at most 200); returns
 * how many started, with the workers in ps[] for joining. */
static int
spawn_until_limit(pm_conn *c, pm_process **ps, int max, int *last)
{
	int n = 0, r;

	*last = PM_OK;
	while (n < max) {
		ps[n] = pm_process_new(c, pubmod, "ids", NULL, 0);
		if (ps[n] == NULL) {
			*last = pm_last_error();
			break;
		}
		if ((r = pm_process_start(ps[n])) != PM_OK) {
			*last = r;
			proc_free(&ps[n]);
			break;
		}
		n++;
	}
	return n;
}

static void
join_all(pm_process **ps, int n)
{
	int i;

	for (i = 0; i < n; i++) {
		ck_assert_int_eq(pm_process_join(ps[i], 30), PM_OK);
		proc_free(&ps[i]);
	}
}

static int
rate_client(void *ud, int ctl)
{
	pm_process *p;
	pm_conn *c;
	int r;

	(void)ud;
	(void)ctl;
	if ((c = pm_connect(pmd.sock)) == NULL)
		return say(1, "connect: %s", pm_last_message());
	th_child_own(c, th_free_conn);
	if ((p = pm_process_new(c, pubmod, "ids", NULL, 0)) == NULL)
		return say(2, "new: %s", pm_last_message());
	th_child_own(p, th_free_process);
	if ((r = pm_process_start(p)) != PM_OK)
		return say(3, "another uid limited: %d %s", r,
		    pm_last_message());
	if (pm_process_join(p, 30) != PM_OK)
		return say(4, "join: %s", pm_last_message());
	th_child_free(p);
	th_child_free(c);
	return 0;
}

START_TEST(t_spawn_rate)
{
	pm_process **ps = procs;
	struct user_proc u;
	char msg[512];
	int n, last;

	TH_NEED_ROOT();
	n = spawn_until_limit(conn, ps, 200, &last);
	snprintf(msg, sizeof(msg), "%s", pm_last_message());
	ck_assert_msg(last == PM_ELIMIT, "%d spawns, then %d (%s)", n, last,
	    msg);
	ck_assert_msg(strstr(msg, "rate") != NULL, "message: %s", msg);
	ck_assert_msg(n >= 5, "limited after %d spawns at 5/s", n);
	/* another uid is not */
	u = as_user(&user_a, rate_client, NULL);
	user_done(&u);
	join_all(ps, n);
	/* a second later the first uid may spawn again */
	th_sleep(1.1);
	n = spawn_until_limit(conn, ps, 1, &last);
	ck_assert_msg(n == 1, "after a pause: %d (%s)", last,
	    pm_last_message());
	join_all(ps, n);
}
END_TEST

/*
 * The rate is per uid (README: "worker starts per second allowed to each
 * uid"): a second connection of the same uid does not get a fresh budget.
 * Inconclusive (passes) if the machine is so slow that the window ran out.
 */
START_TEST(t_spawn_rate_per_uid)
{
	pm_process **ps = procs;
	double t0;
	int n, last;

	TH_NEED_ROOT();
	conn2 = pm_connect(pmd.sock);
	ck_assert_ptr_nonnull(conn2);
	t0 = th_now();
	n = spawn_until_limit(conn, ps, 200, &last);
	ck_assert_int_eq(last, PM_ELIMIT);
	join_all(ps, n);
	ps[0] = pm_process_new(conn2, pubmod, "ids", NULL, 0);
	last = pm_process_start(ps[0]);
	if (th_now() - t0 < 0.9)
		ck_assert_msg(last == PM_ELIMIT, "a second connection of the "
		    "same uid spawned at once: %d (%s)", last,
		    pm_last_message());
	if (last == PM_OK)
		ck_assert_int_eq(pm_process_join(ps[0], 30), PM_OK);
	proc_free(&ps[0]);
	pm_disconnect(conn2);
	conn2 = NULL;
}
END_TEST

/* ---- a preloaded module is still the client's to read ---- */

static char predir[PATH_MAX];
static char premod[PATH_MAX + 64];

static void
setup_preload(void)
{
	char src[PATH_MAX], text[PATH_MAX + 128];
	struct th_pmd_opts o = { .conf = text, .shared = 1 };

	is_root = geteuid() == 0;
	if (!is_root)
		return;
	ck_assert_int_eq(th_mkdtemp(predir, sizeof(predir)), 0);
	ck_assert_int_eq(chmod(predir, 0755), 0);
	snprintf(src, sizeof(src), "%s/tests/privtasks.so", th_env("PM_BUILD"));
	snprintf(premod, sizeof(premod), "%s/pre.so", predir);
	th_copy_file(src, premod, 0600);
	snprintf(text, sizeof(text), "preload = %s\n", premod);
	ck_assert_int_eq(th_pmd_start_opts(&pmd, &o), 0);
	base_pmd = th_fd_count(pmd.pid);
	conn = pm_connect(pmd.sock);
	ck_assert_msg(conn != NULL, "pm_connect: %s", pm_last_message());
}

static void
teardown_preload(void)
{
	teardown();
	th_rmtree(predir);
}

static int
preload_client(void *ud, int ctl)
{
	pm_process *p;
	pm_conn *c;
	int r;

	(void)ud;
	(void)ctl;
	if (access(premod, R_OK) == 0)
		return say(1, "%s readable: the test is wrong", premod);
	if ((c = pm_connect(pmd.sock)) == NULL)
		return say(2, "connect: %s", pm_last_message());
	th_child_own(c, th_free_conn);
	if ((p = pm_process_new(c, premod, "ids", NULL, 0)) == NULL)
		return say(3, "new: %s", pm_last_message());
	th_child_own(p, th_free_process);
	r = pm_process_start(p);
	if (r == PM_OK)
		return say(4, "a worker ran %s (preloaded, mode 0600) for "
		    "uid %u", premod, (unsigned)getuid());
	if ((r != PM_EPERM && r != PM_ENOENT) || *pm_last_message() == '\0')
		return say(5, "start: %d (%s), want PM_EPERM or PM_ENOENT", r,
		    pm_last_message());
	th_child_free(p);
	th_child_free(c);
	return 0;
}

START_TEST(t_preload_unreadable)
{
	struct user_proc u;
	char *got;
	int err;

	TH_NEED_ROOT();
	got = run_result(conn, premod, "ids", &err);
	ck_assert_msg(got != NULL, "root: %d %s", err, pm_last_message());
	free(got);
	u = as_user(&user_a, preload_client, NULL);
	user_done(&u);
}
END_TEST

/* In a user child: starts an idle worker, says its pid, waits for go. */
static int
orphan_client(void *ud, int ctl)
{
	pm_process *p;
	pm_conn *c;
	pid_t pid = 0;

	(void)ud;
	if ((c = pm_connect(pmd.sock)) == NULL)
		return say(1, "connect: %s", pm_last_message());
	th_child_own(c, th_free_conn);
	p = pm_process_new(c, pubmod, "idle", NULL, 0);
	th_child_own(p, th_free_process);
	if (p == NULL || pm_process_start(p) != PM_OK ||
	    (pid = pm_process_pid(p)) <= 0)
		return say(2, "start: %s", pm_last_message());
	say(0, "%d", (int)pid);
	wait_go(ctl);
	return 0;
}

/*
 * A private pmd run by root serving another uid: the worker takes that
 * uid, which clears a parent-death signal set before; it must be set
 * after, so that the worker dies with the broker (SIGKILLed here) and
 * nothing that belonged to pmd is left running.
 */
START_TEST(t_private_pdeathsig)
{
	struct user_proc u;
	char line[64];
	pid_t worker, forker;

	TH_NEED_ROOT();
	u = as_user(&user_a, orphan_client, NULL);
	user_line(&u, line, sizeof(line));
	worker = (pid_t)atoi(line);
	ck_assert_msg(worker > 0, "no worker pid: \"%s\"", line);
	ck_assert_int_eq(th_status_num(worker, "Uid"), (long)user_a.uid);
	forker = th_pmd_forker(&pmd);
	ck_assert_int_gt(forker, 0);
	ck_assert_int_eq(kill(pmd.pid, SIGKILL), 0);
	ck_assert_int_eq(th_pmd_stop(&pmd), -SIGKILL);
	TH_WAIT(!th_pid_alive(worker) && !th_pid_alive(forker), 10);
	ck_assert_msg(!th_pid_alive(worker), "worker %d (uid %u) outlived "
	    "its private pmd", (int)worker, (unsigned)user_a.uid);
	ck_assert_msg(!th_pid_alive(forker), "the forker outlived pmd");
	user_done(&u);
}
END_TEST

/* ---- queue names across uids ---- */

/* User a: a shared queue "jobs" and a private one "mine". */
static int
squat_owner(void *ud, int ctl)
{
	pm_queue *q;
	pm_conn *c;

	(void)ud;
	(void)ctl;
	if ((c = pm_connect(pmd.sock)) == NULL)
		return say(1, "connect: %s", pm_last_message());
	th_child_own(c, th_free_conn);
	if ((q = pm_queue_open(c, "jobs", 0, PM_Q_CREATE | PM_Q_SHARED)) ==
	    NULL)
		return say(2, "create jobs: %s", pm_last_message());
	th_child_own(q, th_free_queue);
	if ((q = pm_queue_open(c, "mine", 0, PM_Q_CREATE)) == NULL)
		return say(3, "create mine: %s", pm_last_message());
	th_child_own(q, th_free_queue);
	return 0;
}

/* Opens name with flags; want is the error expected (PM_OK: joined). */
static int
squat_try(pm_conn *c, const char *name, int flags, int want)
{
	char owner[64];
	pm_queue *q;

	q = pm_queue_open(c, name, 0, flags);
	th_child_own(q, th_free_queue);
	if (want == PM_OK)
		return q != NULL ? 0 : say(10, "open %s %#x: %s", name, flags,
		    pm_last_message());
	if (q != NULL)
		return say(11, "open %s %#x joined uid %u's queue", name, flags,
		    (unsigned)user_a.uid);
	snprintf(owner, sizeof(owner), "owned by uid %u", (unsigned)user_a.uid);
	if (pm_last_error() != want || (want == PM_EEXIST &&
	    strstr(pm_last_message(), owner) == NULL))
		return say(12, "open %s %#x: %d (%s), want %d naming the owner",
		    name, flags, pm_last_error(), pm_last_message(), want);
	return 0;
}

/* User b: a create never joins a's queues; an open without it joins
 * the shared one, and is refused the private one. */
static int
squat_other(void *ud, int ctl)
{
	pm_queue *q;
	pm_conn *c;

	(void)ud;
	(void)ctl;
	if ((c = pm_connect(pmd.sock)) == NULL)
		return say(1, "connect: %s", pm_last_message());
	th_child_own(c, th_free_conn);
	if (squat_try(c, "jobs", PM_Q_CREATE, PM_EEXIST) ||
	    squat_try(c, "jobs", PM_Q_CREATE | PM_Q_SHARED, PM_EEXIST) ||
	    squat_try(c, "jobs", PM_Q_CREATE | PM_Q_EXCL, PM_EEXIST) ||
	    squat_try(c, "mine", PM_Q_CREATE, PM_EEXIST) ||
	    squat_try(c, "mine", 0, PM_EPERM))
		return 2;
	/* explicit: join a's shared queue */
	if ((q = pm_queue_open(c, "jobs", 0, 0)) == NULL)
		return say(3, "join jobs: %s", pm_last_message());
	th_child_own(q, th_free_queue);
	if (pm_queue_put(q, "joined", 6, 5) != PM_OK)
		return say(4, "put: %s", pm_last_message());
	return 0;
}

/*
 * Names are one namespace: uid b's create of a name uid a holds is
 * PM_EEXIST naming a (a put --create of pmctl included), never a silent
 * join of a's queue; opening without PM_Q_CREATE joins a shared one.
 * Root, an admin, follows the same rule.
 */
START_TEST(t_queue_squatting)
{
	struct user_proc u;
	char out[16384];
	pm_bytes b;

	TH_NEED_ROOT();
	u = as_user(&user_a, squat_owner, NULL);
	user_done(&u);
	ck_assert_int_eq(pmctl_as(&user_b, out, sizeof(out), "queue", "put",
	    "--create", "jobs", "secret", NULL), 1);
	ck_assert_int_eq(pmctl_as(&user_b, out, sizeof(out), "queue", "put",
	    "--create", "mine", "secret", NULL), 1);
	u = as_user(&user_b, squat_other, NULL);
	user_done(&u);
	ck_assert_int_eq(pmctl_as(&user_b, out, sizeof(out), "queue", "put",
	    "jobs", "plain", NULL), 0);
	/* root: the same rule */
	ck_assert_ptr_null(pm_queue_open(conn, "jobs", 0, PM_Q_CREATE));
	ck_assert_int_eq(pm_last_error(), PM_EEXIST);
	ck_assert_ptr_nonnull(strstr(pm_last_message(), "owned by uid 65534"));
	rootq = pm_queue_open(conn, "mine", 0, 0);
	ck_assert_ptr_nonnull(rootq);
	ck_assert_int_eq(pm_queue_qsize(rootq), 0);
	pm_queue_free(rootq);
	/* jobs holds only what b put on purpose, no secret */
	rootq = pm_queue_open(conn, "jobs", 0, 0);
	ck_assert_ptr_nonnull(rootq);
	ck_assert_int_eq(pm_queue_qsize(rootq), 2);
	ck_assert_int_eq(pm_queue_get(rootq, &b, 5), PM_OK);
	ck_assert(b.len == 6 && memcmp(b.data, "joined", 6) == 0);
	pm_bytes_free(&b);
	ck_assert_int_eq(pm_queue_get(rootq, &b, 5), PM_OK);
	ck_assert(b.len == 5 && memcmp(b.data, "plain", 5) == 0);
	pm_bytes_free(&b);
	pm_queue_free(rootq);
	rootq = NULL;
	ck_assert_int_eq(pm_queue_unlink(conn, "jobs"), PM_OK);
	ck_assert_int_eq(pm_queue_unlink(conn, "mine"), PM_OK);
}
END_TEST

/* ---- allow_uids on a pmd that is not root ---- */

/* pmd run as user b, serving user a too (allow_uids): root is not
 * served, so the test's own connection stays NULL. */
static void
setup_allow(void)
{
	static const char *const args[] = { "--prestart", "2", NULL };
	char text[64];
	struct th_pmd_opts o = { .conf = text, .args = args, .shared = 1,
	    .as = 1, .uid = user_b.uid, .gid = user_b.gid };

	is_root = geteuid() == 0;
	if (!is_root)
		return;
	snprintf(text, sizeof(text), "allow_uids = %u\n",
	    (unsigned)user_a.uid);
	ck_assert_int_eq(th_pmd_start_opts(&pmd, &o), 0);
	th_pmd_module(&pmd, "privtasks.so", "pub.so", 0644, pubmod,
	    sizeof(pubmod));
	base_pmd = th_fd_count(pmd.pid);
	ck_assert_ptr_null(pm_connect(pmd.sock));	/* root: not served */
	ck_assert_int_eq(pm_last_error(), PM_EPERM);
}

/* pmd's own uid (user b): its workers run; a shared queue for a. */
static int
allow_own(void *ud, int ctl)
{
	char want[256], *got;
	pm_queue *q;
	pm_conn *c;
	pm_bytes b;
	int r;

	(void)ctl;
	if ((c = pm_connect(pmd.sock)) == NULL)
		return say(1, "connect: %s", pm_last_message());
	th_child_own(c, th_free_conn);
	if ((q = pm_queue_open(c, "bq", 0, PM_Q_CREATE | PM_Q_SHARED)) == NULL)
		return say(2, "bq: %s", pm_last_message());
	th_child_own(q, th_free_queue);
	if (ud != NULL) {	/* second round: what a put */
		if (pm_queue_get(q, &b, 10) != PM_OK)
			return say(3, "get: %s", pm_last_message());
		r = b.len == 6 && memcmp(b.data, "from a", 6) == 0;
		pm_bytes_free(&b);
		return r ? 0 : say(4, "got another item");
	}
	if ((got = run_result(c, pubmod, "ids", &r)) == NULL)
		return say(5, "pmd's uid: %d %s", r, pm_last_message());
	th_child_own(got, free);
	snprintf(want, sizeof(want), "%u %u %u", (unsigned)user_b.uid,
	    (unsigned)user_b.gid, (unsigned)user_b.gid);
	if (strncmp(got, want, strlen(want)) != 0)
		return say(6, "ids %s, want %s", got, want);
	return 0;
}

/* user a, allowed: queues yes, code no. */
static int
allow_other(void *ud, int ctl)
{
	char *argv[] = { (char *)(uintptr_t)"/bin/true", NULL };
	Pm__Claim q_claim = PM__CLAIM__INIT;
	struct pmc_pending *pd;
	pm_pool_opts o = { .processes = 1 };
	pm_process *p;
	pm_pool *pool;
	pm_queue *q;
	pm_conn *c;
	pm_bytes b;
	int i, r;

	(void)ud;
	(void)ctl;
	if ((c = pm_connect(pmd.sock)) == NULL)
		return say(1, "connect: %s", pm_last_message());
	th_child_own(c, th_free_conn);
	for (i = 0; i < 2; i++) {
		p = i ? pm_process_new_exec(c, "/bin/true", argv, NULL) :
		    pm_process_new(c, pubmod, "ids", NULL, 0);
		if (p == NULL)
			return say(2, "new: %s", pm_last_message());
		th_child_own(p, th_free_process);
		r = pm_process_start(p);
		if (r == PM_OK)
			return say(3, "uid %u ran code on a pmd of uid %u",
			    (unsigned)user_a.uid, (unsigned)user_b.uid);
		if (r != PM_EPERM || strstr(pm_last_message(),
		    "allow_uids") == NULL)
			return say(4, "start: %d (%s), want PM_EPERM", r,
			    pm_last_message());
		th_child_free(p);
	}
	o.module = pubmod;
	if ((pool = pm_pool_new(c, &o)) != NULL) {
		pm_pool_free(pool);
		return say(5, "a pool started for uid %u", (unsigned)user_a.uid);
	}
	if (pm_last_error() != PM_EPERM)
		return say(6, "pool: %d (%s), want PM_EPERM", pm_last_error(),
		    pm_last_message());
	/* nor may it claim pmd's idle workers (there are some: --prestart) */
	q_claim.count = 2;
	if ((r = pmc_call(c, PM__TYPE__T_CLAIM, &q_claim.base, NULL, 0,
	    &pm__claim_reply__descriptor, &pd, 10)) != PM_EPERM) {
		if (r == PM_OK)
			pmc_pending_free(c, pd);
		return say(9, "claim: %d (%s), want PM_EPERM", r,
		    pm_last_message());
	}
	/* its own queue, and b's shared one */
	if ((q = pm_queue_open(c, "aq", 0, PM_Q_CREATE)) == NULL ||
	    pm_queue_put(q, "mine", 4, 5) != PM_OK ||
	    pm_queue_get(q, &b, 5) != PM_OK)
		return say(7, "own queue: %s", pm_last_message());
	th_child_own(q, th_free_queue);
	pm_bytes_free(&b);
	if ((q = pm_queue_open(c, "bq", 0, 0)) == NULL ||
	    pm_queue_put(q, "from a", 6, 5) != PM_OK)
		return say(8, "b's queue: %s", pm_last_message());
	th_child_own(q, th_free_queue);
	return 0;
}

/*
 * A pmd that is not root cannot switch uids: allow_uids opens its queues
 * to other uids, but their spawns (function, exec, pool; pmctl run) are
 * PM_EPERM; its own uid's run as before.
 */
START_TEST(t_allow_uids)
{
	struct user_proc u;
	char out[4096];

	TH_NEED_ROOT();
	u = as_user(&user_b, allow_own, NULL);
	user_done(&u);
	u = as_user(&user_a, allow_other, NULL);
	user_done(&u);
	ck_assert_int_eq(pmctl_as(&user_a, out, sizeof(out), "run", "--",
	    "/bin/true", NULL), 1);
	u = as_user(&user_b, allow_own, (void *)1);
	user_done(&u);
}
END_TEST

/* ---- each uid's share of the bounds in all ---- */

static void
setup_shares(void)
{
	start_with("max_clients_per_uid = 4\nmax_queues = 16\n"
	    "max_queues_per_uid = 2\nmax_queue_waiters = 16\n"
	    "max_queue_waiters_per_uid = 2\nmax_item_size = 200000\n"
	    "max_total_queue_bytes_per_uid = 300000\n"
	    "max_queue_fd_items_per_uid = 1\n");
}

#define SHARE_INLINE	50000		/* bytes: inline, under 64 KiB */
#define SHARE_MEMFD	100000		/* bytes: travels as a memfd */

/* Fills the queue shares of c's uid: two queues (names qn), one memfd
 * item, bytes; then takes the memfd item back.  0 or a say() code. */
static int
fill_shares(pm_conn *c, const char *const qn[2], pm_queue *q[2], char *data)
{
	pm_bytes b;
	int i, r;

	for (i = 0; i < 2; i++)
		if ((q[i] = pm_queue_open(c, qn[i], 0, PM_Q_CREATE)) == NULL)
			return say(20, "queue %s: %s", qn[i], pm_last_message());
	if (pm_queue_open(c, "one-more", 0, PM_Q_CREATE) != NULL ||
	    pm_last_error() != PM_ELIMIT ||
	    strstr(pm_last_message(), "max_queues_per_uid") == NULL)
		return say(21, "3rd queue: %d (%s)", pm_last_error(),
		    pm_last_message());
	/* items by memfd: one */
	if ((r = pm_queue_put(q[1], data, SHARE_MEMFD, 0)) != PM_OK)
		return say(22, "memfd item: %d %s", r, pm_last_message());
	if ((r = pm_queue_put(q[1], data, SHARE_MEMFD, 0)) != PM_ELIMIT ||
	    strstr(pm_last_message(), "max_queue_fd_items_per_uid") == NULL)
		return say(23, "2nd memfd item: %d (%s)", r, pm_last_message());
	/* bytes: 100000 + 4 x 50000, then no more */
	for (i = 0; i < 4; i++)
		if ((r = pm_queue_put(q[0], data, SHARE_INLINE, 0)) != PM_OK)
			return say(24, "put %d: %d %s", i, r,
			    pm_last_message());
	if ((r = pm_queue_put(q[0], data, SHARE_INLINE, 0)) != PM_ELIMIT ||
	    strstr(pm_last_message(), "max_total_queue_bytes_per_uid") ==
	    NULL)
		return say(25, "over bytes: %d (%s)", r, pm_last_message());
	/* the memfd item got: its bytes and fd no longer count */
	if (pm_queue_get(q[1], &b, 5) != PM_OK || b.len != SHARE_MEMFD)
		return say(26, "get: %s", pm_last_message());
	pm_bytes_free(&b);
	if ((r = pm_queue_put(q[0], data, SHARE_INLINE, 0)) != PM_OK)
		return say(27, "put after a get: %d %s", r, pm_last_message());
	return 0;
}

/* User a while root holds all its shares: gets its own. */
static int
shares_other(void *ud, int ctl)
{
	static const char *const qn[2] = { "a1", "a2" };
	pm_queue *q[2] = { NULL, NULL };
	pm_conn *c, *more;
	pm_bytes b;
	char *data;
	int i, r;

	(void)ud;
	(void)ctl;
	if ((c = pm_connect(pmd.sock)) == NULL)
		return say(1, "connect: %s", pm_last_message());
	th_child_own(c, th_free_conn);
	if ((data = calloc(1, SHARE_MEMFD)) == NULL)
		return say(2, "calloc");
	th_child_own(data, free);
	r = fill_shares(c, qn, q, data);
	th_child_own(q[0], th_free_queue);
	th_child_own(q[1], th_free_queue);
	if (r != 0)
		return r;
	/* a blocked get parks (and times out) rather than being refused */
	if ((r = pm_queue_get(q[1], &b, 0.2)) != PM_EEMPTY)
		return say(3, "parked get: %d (%s)", r, pm_last_message());
	for (i = 0; i < 3; i++) {
		if ((more = pm_connect(pmd.sock)) == NULL)
			return say(4, "connection %d: %s", i + 2,
			    pm_last_message());
		th_child_own(more, th_free_conn);
	}
	return 0;
}

/* A fork of root's with a get parked on name until an item comes. */
static pid_t
parked_getter(const char *name)
{
	pm_queue *q;
	pm_conn *c;
	pm_bytes b;
	pid_t pid;

	if ((pid = th_fork()) != 0)
		return pid;
	if ((c = pm_connect(pmd.sock)) == NULL)
		th_child_exit(1);
	th_child_own(c, th_free_conn);
	if ((q = pm_queue_open(c, name, 0, 0)) == NULL)
		th_child_exit(2);
	th_child_own(q, th_free_queue);
	if (pm_queue_get(q, &b, 60) != PM_OK)
		th_child_exit(3);
	pm_bytes_free(&b);
	th_child_exit(0);
}

static int
waitpid_code(pid_t pid)
{
	int st;

	ck_assert_int_eq(waitpid(pid, &st, 0), pid);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 100 + WTERMSIG(st);
}

/* Blocked gets on name (pmctl queues -a). */
static int
getters_on(const char *name)
{
	char out[16384], key[300], *at, *end;

	ck_assert_int_eq(th_pmctl(out, sizeof(out), "--socket", pmd.sock,
	    "--json", "queues", "-a", NULL), 0);
	snprintf(key, sizeof(key), "\"name\": \"%s\"", name);
	if ((at = strstr(out, key)) == NULL)
		return -1;
	if ((end = strchr(at, '}')) != NULL)
		*end = '\0';
	if ((at = strstr(at, "\"getters\": ")) == NULL)
		return -1;
	return atoi(at + strlen("\"getters\": "));
}

/*
 * Every bound in all has a share per uid (connections, queues, blocked
 * requests, bytes and memfd items held): root reaching each of its shares
 * gets PM_ELIMIT naming it, while user a still gets its whole share.
 */
START_TEST(t_uid_shares)
{
	static const char *const qn[2] = { "r1", "r2" };
	pm_queue *q[2] = { NULL, NULL };
	struct user_proc u;
	pid_t g[2];
	pm_bytes b;
	char *data;
	int i, r;

	TH_NEED_ROOT();
	/* queues, bytes, memfd items */
	ck_assert_ptr_nonnull(data = calloc(1, SHARE_MEMFD));
	r = fill_shares(conn, qn, q, data);
	heldq[0] = q[0];
	heldq[1] = q[1];
	free(data);
	ck_assert_int_eq(r, 0);
	/* blocked requests: two parked, a third refused */
	for (i = 0; i < 2; i++)
		g[i] = parked_getter("r2");
	TH_WAIT(getters_on("r2") == 2, 20);
	ck_assert_int_eq(getters_on("r2"), 2);
	r = pm_queue_get(q[1], &b, 5);
	ck_assert_msg(r == PM_ELIMIT && strstr(pm_last_message(),
	    "max_queue_waiters_per_uid") != NULL, "3rd blocked get: %d (%s)",
	    r, pm_last_message());
	/* connections: root has 3 (conn, two getters), one more, then no */
	held[0] = pm_connect(pmd.sock);
	ck_assert_ptr_nonnull(held[0]);
	ck_assert_ptr_null(pm_connect(pmd.sock));
	ck_assert_msg(pm_last_error() == PM_ELIMIT && strstr(pm_last_message(),
	    "max_clients_per_uid") != NULL, "5th connection: %d (%s)",
	    pm_last_error(), pm_last_message());
	pm_disconnect(held[0]);
	held[0] = NULL;
	/* user a is served in full meanwhile */
	u = as_user(&user_a, shares_other, NULL);
	user_done(&u);
	for (i = 0; i < 2; i++)
		ck_assert_int_eq(pm_queue_put(q[1], "x", 1, 5), PM_OK);
	for (i = 0; i < 2; i++)
		ck_assert_int_eq(waitpid_code(g[i]), 0);
}
END_TEST

/* Root's unread replies against max_buffer_bytes_per_uid. */
static void
setup_buffers(void)
{
	start_with("max_frame = 1048576\n"
	    "max_buffer_bytes_per_uid = 3145728\n");
}

#define FEED_ITEM	60000		/* inline */
#define FEED_BATCH	16		/* ~960 kB: one reply near max_frame */
#define PART_LEN	1040000		/* part of a request: > a reply */

/* User a takes a batch while root holds its buffer share. */
static int
buffers_other(void *ud, int ctl)
{
	pm_bytes out[FEED_BATCH];
	pm_queue *q;
	pm_conn *c;
	size_t got, i;
	int r;

	(void)ud;
	(void)ctl;
	if ((c = pm_connect(pmd.sock)) == NULL)
		return say(1, "connect: %s", pm_last_message());
	th_child_own(c, th_free_conn);
	if ((q = pm_queue_open(c, "feed", 0, 0)) == NULL)
		return say(2, "open: %s", pm_last_message());
	th_child_own(q, th_free_queue);
	if ((r = pm_queue_get_many(q, out, FEED_BATCH, &got, 10)) != PM_OK)
		return say(3, "get_many: %d (%s)", r, pm_last_message());
	for (i = 0; i < got; i++)
		pm_bytes_free(&out[i]);
	return got == FEED_BATCH ? 0 : say(4, "got %zu", got);
}

/* The type of the first frame waiting on fd (nothing consumed). */
static uint32_t
peek_type(int fd)
{
	struct pm_hdr h;

	ck_assert(th_readable(fd, 30));
	ck_assert_int_eq(recv(fd, &h, sizeof(h), MSG_PEEK | MSG_WAITALL),
	    (ssize_t)sizeof(h));
	return h.type;
}

/* Reads an error frame from fd: its code, its message in msg. */
static int
read_error(int fd, char *msg, size_t cap)
{
	struct wire_in in;
	struct pm_frame f;
	Pm__Error *e;
	int code;

	wire_in_init(&in, 0);
	th_raw_next(fd, &in, &f, 30);
	ck_assert_uint_eq(f.type, PM__TYPE__T_ERROR);
	ck_assert_ptr_nonnull(e = pm__error__unpack(NULL, f.len, f.data));
	code = e->code;
	snprintf(msg, cap, "%s", e->message ? e->message : "");
	pm__error__free_unpacked(e, NULL);
	wire_in_free(&in);
	return code;
}

/*
 * Replies root's connections leave unread count in root's buffer share:
 * past it a big reply is PM_ELIMIT naming max_buffer_bytes_per_uid (the
 * items stay queued), a request arriving then is dropped with the
 * connection, and user a's batch comes as usual.
 */
START_TEST(t_uid_buffers)
{
	Pm__QueueGet g = PM__QUEUE_GET__INIT;
	pm_bytes items[FEED_BATCH];
	struct user_proc u;
	struct wire_in in;
	struct pm_hdr h;
	char msg[512], *data;
	int i, n, refused = -1;
	size_t k, got;

	TH_NEED_ROOT();
	ck_assert_ptr_nonnull(data = calloc(1, PART_LEN));
	for (k = 0; k < FEED_BATCH; k++) {
		items[k].data = data;
		items[k].len = FEED_ITEM;
	}
	rootq = pm_queue_open(conn, "feed", 0, PM_Q_CREATE | PM_Q_SHARED);
	ck_assert_ptr_nonnull(rootq);
	for (i = 0; i < MAX_HELD + 2; i++)
		ck_assert_int_eq(pm_queue_put_many(rootq, items, FEED_BATCH,
		    10), PM_OK);
	/* raw connections of root's ask a batch each and never read it */
	for (n = 0; n < MAX_HELD - 1 && refused < 0; n++) {
		rawfd[n] = th_raw_hello(pmd.sock);
		wire_in_init(&in, 0);
		g.qid = th_raw_qopen(rawfd[n], &in, "feed");
		wire_in_free(&in);
		g.max = FEED_BATCH;
		g.timeout = 0;
		th_raw_send(rawfd[n], PM__QUEUE_TYPE__Q_GET, 3, &g.base);
		if (peek_type(rawfd[n]) == PM__TYPE__T_ERROR)
			refused = n;
	}
	ck_assert_msg(refused >= 2, "refused after %d batches held", refused);
	ck_assert_int_eq(read_error(rawfd[refused], msg, sizeof(msg)),
	    PM__CODE__C_LIMIT);
	ck_assert_msg(strstr(msg, "max_buffer_bytes_per_uid") != NULL,
	    "message: %s", msg);
	/* the refused get took nothing */
	ck_assert_int_eq(pm_queue_qsize(rootq),
	    (long)(MAX_HELD + 2 - refused) * FEED_BATCH);
	/* a request coming in while root is near its share (its part held
	 * is bigger than the reply refused): dropped, with its connection */
	rawfd[n] = th_raw_hello(pmd.sock);
	memset(&h, 0, sizeof(h));
	h.magic = PM_WIRE_MAGIC;
	h.version = PM_WIRE_VERSION;
	h.type = PM__QUEUE_TYPE__Q_PUT;
	h.id = 9;
	h.len = PART_LEN + 1000;
	ck_assert_int_eq(send(rawfd[n], &h, sizeof(h), MSG_NOSIGNAL),
	    (ssize_t)sizeof(h));
	(void)!send(rawfd[n], data, PART_LEN, MSG_NOSIGNAL);
	free(data);
	ck_assert_int_eq(read_error(rawfd[n], msg, sizeof(msg)),
	    PM__CODE__C_LIMIT);
	ck_assert_msg(strstr(msg, "max_buffer_bytes_per_uid") != NULL,
	    "message: %s", msg);
	/* another uid is served */
	u = as_user(&user_a, buffers_other, NULL);
	user_done(&u);
	/* root's share is back once its connections have gone */
	for (i = 0; i <= n; i++) {
		close(rawfd[i]);
		rawfd[i] = -1;
	}
	TH_WAIT(pm_queue_get_many(rootq, items, FEED_BATCH, &got, 0) == PM_OK,
	    10);
	ck_assert_uint_eq(got, FEED_BATCH);
	for (k = 0; k < got; k++)
		pm_bytes_free(&items[k]);
}
END_TEST

static Suite *
priv_suite(void)
{
	Suite *s = suite_create("priv");
	TCase *tc;

	tc = th_tcase(s, "uids", setup, teardown, 120);
	tcase_add_test(tc, t_creds);
	tcase_add_test(tc, t_setpriv);
	tcase_add_test(tc, t_isolation);
	tcase_add_test(tc, t_admin_group);
	tcase_add_test(tc, t_modules);
	tcase_add_test(tc, t_queue_squatting);

	tc = th_tcase(s, "uids-prestart", setup_prestart, teardown, 120);
	tcase_add_test(tc, t_creds);
	tcase_add_test(tc, t_isolation);

	tc = th_tcase(s, "cap", setup_cap, teardown, 120);
	tcase_add_test(tc, t_worker_cap);

	tc = th_tcase(s, "rate", setup_rate, teardown, 120);
	tcase_add_test(tc, t_spawn_rate);

	/* the spawn rate is per uid, not per connection */
	tc = th_tcase(s, "rate-per-uid", setup_rate, teardown, 120);
	tcase_add_test(tc, t_spawn_rate_per_uid);

	/* a preloaded module still needs the client to be able to read it */
	tc = th_tcase(s, "private", setup_private, teardown, 120);
	tcase_add_test(tc, t_private_pdeathsig);

	tc = th_tcase(s, "preload", setup_preload, teardown_preload, 120);
	tcase_add_test(tc, t_preload_unreadable);

	/* each uid's share of the bounds in all */
	tc = th_tcase(s, "shares", setup_shares, teardown, 120);
	tcase_add_test(tc, t_uid_shares);
	tc = th_tcase(s, "buffers", setup_buffers, teardown, 120);
	tcase_add_test(tc, t_uid_buffers);

	/* a pmd that is not root serves allowed uids' queues, not code */
	tc = th_tcase(s, "allow", setup_allow, teardown, 120);
	tcase_add_test(tc, t_allow_uids);
	return s;
}

int
main(void)
{
	return th_run_suite(priv_suite());
}
