/*
 * harness.c - test helpers: a private pmd per test, /proc inspection,
 * running programs, raw frames.  See harness.h.
 */
#include <sys/types.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>

#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "pmclient.h"
#include "wire.h"
#include "pm.pb-c.h"
#include "queue.pb-c.h"

#define TH_MAX_ARGS	64
#define TH_MAX_PMD	8

/* pmds started and not yet stopped, for the exit handler: a failed check
 * exits the test process without running teardowns. */
static struct th_pmd	 live[TH_MAX_PMD];
static int		 live_registered;

double
th_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void
th_sleep(double secs)
{
	struct timespec ts;

	if (secs <= 0)
		return;
	ts.tv_sec = (time_t)secs;
	ts.tv_nsec = (long)((secs - (double)ts.tv_sec) * 1e9);
	while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
		;
}

const char *
th_env(const char *name)
{
	const char *v = getenv(name);

	ck_assert_msg(v != NULL && *v != '\0',
	    "$%s is not set (run through make check)", name);
	return v;
}

const char *
th_module(void)
{
	return th_env("PM_TEST_MODULE");
}

TCase *
th_tcase(Suite *s, const char *name, SFun setup, SFun teardown,
    double timeout)
{
	TCase *tc = tcase_create(name);

	if (setup != NULL || teardown != NULL)
		tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, timeout);
	suite_add_tcase(s, tc);
	return tc;
}

int
th_run_suite(Suite *s)
{
	SRunner *sr = srunner_create(s);
	int failed;

	srunner_run_all(sr, CK_ENV);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? 0 : 1;
}

void
th_pmd_settled(const struct th_pmd *d, int base_fds, double secs)
{
	int n;

	TH_WAIT(th_zombies(d->pid) == 0 && th_fd_count(d->pid) == base_fds,
	    secs);
	ck_assert_int_eq(th_zombies(d->pid), 0);
	n = th_fd_count(d->pid);
	ck_assert_msg(n == base_fds, "pmd has %d fds, %d expected", n,
	    base_fds);
}

int
th_lowest_free_fd(pid_t pid)
{
	char path[64];
	int fd;

	for (fd = 0;; fd++) {
		snprintf(path, sizeof(path), "/proc/%d/fd/%d", (int)pid, fd);
		if (access(path, F_OK) == -1)
			return fd;
	}
}

int
th_sanitized(void)
{
	const char *b = getenv("PM_BUILD");
	size_t bl = b ? strlen(b) : 0;

	return bl >= 9 && strcmp(b + bl - 9, "build-san") == 0;
}

int
th_valgrind(void)
{
	const char *v = getenv("PM_VALGRIND");

	return v != NULL && *v != '\0';
}

double
th_soak_scale(void)
{
	const char *s = getenv("PM_SOAK_SCALE");
	double v;

	if (s != NULL && *s != '\0') {
		v = strtod(s, NULL);
		ck_assert_msg(v > 0 && v <= 100, "PM_SOAK_SCALE=%s", s);
		return v;
	}
	return th_valgrind() || th_sanitized() ? 0.05 : 1.0;
}

/* ---- forked fake clients ---- */

#define TH_MAX_OWNED	64
#define TH_MAX_KIDS	512	/* a pmd's children killed at exit */

/* th_pmd_start_conf: the config sets prestart_workers itself (-1: to 0) */
static int conf_prestart;

/* In a child from th_fork(): what it owns, oldest first. */
static struct {
	void		*obj;
	th_free_fn	*fn;
} owned[TH_MAX_OWNED];
static int nowned;

pid_t
th_fork(void)
{
	pid_t pid = fork();

	ck_assert_msg(pid >= 0, "fork: %s", strerror(errno));
	if (pid == 0)
		nowned = 0;
	return pid;
}

void
th_child_own(void *obj, th_free_fn *fn)
{
	if (obj == NULL)
		return;
	if (nowned == TH_MAX_OWNED) {
		fprintf(stderr, "harness: a child owns more than %d objects\n",
		    TH_MAX_OWNED);
		fn(obj);
		th_child_exit(125);
	}
	owned[nowned].obj = obj;
	owned[nowned].fn = fn;
	nowned++;
}

void
th_child_free(void *obj)
{
	int i;

	for (i = nowned - 1; i >= 0; i--)
		if (owned[i].obj == obj) {
			owned[i].fn(obj);
			memmove(&owned[i], &owned[i + 1],
			    sizeof(owned[0]) * (size_t)(nowned - 1 - i));
			nowned--;
			return;
		}
	fprintf(stderr, "harness: th_child_free(%p): not owned\n", obj);
}

void
th_child_exit(int code)
{
	while (nowned > 0) {
		nowned--;
		owned[nowned].fn(owned[nowned].obj);
	}
	_exit(code);
}

int
th_run_process(pm_process *p, double secs)
{
	int code = -1000, r;

	ck_assert_ptr_nonnull(p);
	r = pm_process_start(p);
	ck_assert_msg(r == PM_OK, "start: %d (%s)", r, pm_last_message());
	r = pm_process_join(p, secs);
	ck_assert_msg(r == PM_OK, "join: %d (%s)", r, pm_last_message());
	ck_assert_int_eq(pm_process_exitcode(p, &code), PM_OK);
	return code;
}

void
th_free_conn(void *c)
{
	pm_disconnect(c);
}

void
th_free_queue(void *q)
{
	pm_queue_free(q);
}

void
th_free_process(void *p)
{
	pm_process_free(p);
}

int
th_mkdtemp(char *dir, size_t len)
{
	if (snprintf(dir, len, "/tmp/pmdtest.XXXXXX") >= (int)len)
		return -1;
	return mkdtemp(dir) == NULL ? -1 : 0;
}

void
th_copy_file(const char *from, const char *to, mode_t mode)
{
	char buf[65536];
	ssize_t n;
	int in, out;

	ck_assert_msg((in = open(from, O_RDONLY | O_CLOEXEC)) >= 0, "open %s",
	    from);
	ck_assert_msg((out = open(to, O_WRONLY | O_CREAT | O_TRUNC |
	    O_CLOEXEC, mode)) >= 0, "create %s", to);
	while ((n = read(in, buf, sizeof(buf))) > 0)
		ck_assert_int_eq(write(out, buf, (size_t)n), n);
	ck_assert_int_eq(n, 0);
	close(in);
	ck_assert_int_eq(fchmod(out, mode), 0);
	close(out);
}

/* ---- staging for other uids ---- */

#define TH_MAX_STAGED	16

static struct {
	char	from[PATH_MAX];
	char	to[PATH_MAX + 64];
} staged[TH_MAX_STAGED];
static int	nstaged;
static char	stage_dir[PATH_MAX];
static pid_t	stage_owner;

static void
stage_cleanup(void)
{
	if (stage_owner == getpid() && stage_dir[0] != '\0')
		th_rmtree(stage_dir);
}

const char *
th_stage(const char *path)
{
	const char *base;
	int i;

	if (stage_owner != getpid()) {	/* a fork's table is its parent's */
		nstaged = 0;
		stage_dir[0] = '\0';
	}
	for (i = 0; i < nstaged; i++)
		if (strcmp(staged[i].from, path) == 0)
			return staged[i].to;
	ck_assert_msg(nstaged < TH_MAX_STAGED, "more than %d files staged",
	    TH_MAX_STAGED);
	if (stage_dir[0] == '\0') {
		ck_assert_int_eq(th_mkdtemp(stage_dir, sizeof(stage_dir)), 0);
		ck_assert_int_eq(chmod(stage_dir, 0755), 0);
		if (stage_owner == 0)
			atexit(stage_cleanup);
		stage_owner = getpid();
	}
	base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
	snprintf(staged[nstaged].from, sizeof(staged[0].from), "%s", path);
	snprintf(staged[nstaged].to, sizeof(staged[0].to), "%s/%d-%s",
	    stage_dir, nstaged, base);
	th_copy_file(path, staged[nstaged].to, 0755);
	return staged[nstaged++].to;
}

static int
rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	remove(path);
	return 0;
}

void
th_rmtree(const char *path)
{
	if (path != NULL && *path != '\0')
		nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* Wait for pid with a deadline; -1 on timeout, else the wait status. */
static int
wait_deadline(pid_t pid, double secs, int *status)
{
	double end = th_now() + secs;
	pid_t r;

	for (;;) {
		r = waitpid(pid, status, WNOHANG);
		if (r == pid)
			return 0;
		if (r == -1 && errno != EINTR)
			return -1;
		if (th_now() >= end)
			return -1;
		th_sleep(0.005);
	}
}

static int
decode_status(int st)
{
	if (WIFEXITED(st))
		return WEXITSTATUS(st);
	if (WIFSIGNALED(st))
		return -WTERMSIG(st);
	return TH_TIMEOUT;
}

int
th_wait_child(pid_t pid, double secs)
{
	int st;

	if (wait_deadline(pid, secs, &st) == -1) {
		kill(pid, SIGKILL);
		waitpid(pid, &st, 0);
		return TH_TIMEOUT;
	}
	return decode_status(st);
}

static void
cleanup_at_exit(void)
{
	pid_t kids[TH_MAX_KIDS];
	int i, j, n, st;

	for (i = 0; i < TH_MAX_PMD; i++) {
		if (live[i].pid <= 0)
			continue;
		/* its forker and workers first: a worker outlives a pmd
		 * killed outright (it is not a private one), and would hold
		 * the test's stdout open */
		n = th_children(live[i].pid, kids, TH_MAX_KIDS);
		for (j = 0; j < n && j < TH_MAX_KIDS; j++)
			kill(kids[j], SIGKILL);
		kill(live[i].pid, SIGKILL);
		waitpid(live[i].pid, &st, 0);
		th_rmtree(live[i].dir);
		live[i].pid = 0;
	}
}

static void
remember(const struct th_pmd *d, int on)
{
	int i;

	if (!live_registered && atexit(cleanup_at_exit) == 0)
		live_registered = 1;
	for (i = 0; i < TH_MAX_PMD; i++) {
		if (on && live[i].pid <= 0) {
			live[i] = *d;
			return;
		}
		if (!on && live[i].pid == d->pid) {
			live[i].pid = 0;
			return;
		}
	}
}

struct th_as {
	uid_t	uid;
	gid_t	gid;
};

static int	pmd_start(struct th_pmd *, const char *const [], long,
		    const struct th_as *, void (*)(void));

/* Writes conf to a new file (path) for --config; shared: socket_mode =
 * 0666 first.  0 or -1. */
static int
conf_write(char *path, size_t len, const char *conf, int shared)
{
	FILE *f;
	int fd;

	snprintf(path, len, "/tmp/pmdtest-conf.%d.XXXXXX", (int)getpid());
	if ((fd = mkstemp(path)) == -1)
		return -1;
	/* a pmd run as another uid reads it too */
	if (fchmod(fd, 0644) == -1 || (f = fdopen(fd, "w")) == NULL) {
		close(fd);
		unlink(path);
		return -1;
	}
	fprintf(f, "%s%s", shared ? "socket_mode = 0666\n" : "",
	    conf != NULL ? conf : "");
	if (fclose(f) != 0) {
		unlink(path);
		return -1;
	}
	return 0;
}

int
th_pmd_start_opts(struct th_pmd *d, const struct th_pmd_opts *o)
{
	static const struct th_pmd_opts none;
	const char *argv[TH_MAX_ARGS], *s;
	char path[64];
	struct th_as as;
	int i, n = 0, r, conf;

	if (o == NULL)
		o = &none;
	conf = o->conf != NULL || o->shared;
	if (conf) {
		if (conf_write(path, sizeof(path), o->conf, o->shared) == -1)
			return -1;
		argv[n++] = "--config";
		argv[n++] = path;
	}
	for (i = 0; o->args != NULL && o->args[i] != NULL &&
	    n < TH_MAX_ARGS - 1; i++)
		argv[n++] = o->args[i];
	argv[n] = NULL;
	as.uid = o->uid;
	as.gid = o->gid;
	if (o->conf != NULL && (s = strstr(o->conf, "prestart_workers")) !=
	    NULL && s[16] != '_' && (s = strchr(s, '=')) != NULL)
		conf_prestart = atoi(s + 1) > 0 ? atoi(s + 1) : -1;
	r = pmd_start(d, argv, o->nofile, o->as ? &as : NULL, o->prep);
	conf_prestart = 0;
	if (conf)
		unlink(path);
	if (r == 0 && o->shared && chmod(d->dir, 0755) == -1) {
		th_pmd_stop(d);
		return -1;
	}
	return r;
}

int
th_pmd_start(struct th_pmd *d, const char *const extra_args[])
{
	struct th_pmd_opts o = { .args = extra_args };

	return th_pmd_start_opts(d, &o);
}

int
th_pmd_start_conf(struct th_pmd *d, const char *conf,
    const char *const extra_args[])
{
	struct th_pmd_opts o = { .conf = conf, .args = extra_args };

	return th_pmd_start_opts(d, &o);
}

int
th_pmd_start_nofile(struct th_pmd *d, const char *const extra_args[],
    long nofile)
{
	struct th_pmd_opts o = { .args = extra_args, .nofile = nofile };

	return th_pmd_start_opts(d, &o);
}

int
th_pmd_start_prep(struct th_pmd *d, const char *const extra_args[],
    long nofile, void (*prep)(void))
{
	struct th_pmd_opts o = { .args = extra_args, .nofile = nofile,
	    .prep = prep };

	return th_pmd_start_opts(d, &o);
}

int
th_pmd_start_as(struct th_pmd *d, const char *const extra_args[], uid_t uid,
    gid_t gid)
{
	struct th_pmd_opts o = { .args = extra_args, .as = 1, .uid = uid,
	    .gid = gid };

	return th_pmd_start_opts(d, &o);
}

pm_conn *
th_pmd_open(struct th_pmd *d, const struct th_pmd_opts *o,
    struct th_base *base)
{
	pm_conn *c;

	base->self = th_fd_count(0);
	ck_assert_int_eq(th_pmd_start_opts(d, o), 0);
	base->pmd = th_fd_count(d->pid);
	ck_assert_int_gt(base->pmd, 0);
	c = pm_connect(d->sock);
	ck_assert_msg(c != NULL, "pm_connect: %s", pm_last_message());
	return c;
}

void
th_pmd_close(struct th_pmd *d, pm_conn **c, const struct th_base *base)
{
	pm_disconnect(*c);
	*c = NULL;
	ck_assert_int_eq(th_fd_count(0), base->self);
	th_pmd_settled(d, base->pmd, 10);
	ck_assert_int_eq(th_pmd_stop(d), 0);
}

void
th_pmd_module(const struct th_pmd *d, const char *module, const char *name,
    mode_t mode, char *path, size_t len)
{
	char src[PATH_MAX];

	snprintf(src, sizeof(src), "%s/tests/%s", th_env("PM_BUILD"), module);
	ck_assert_int_lt(snprintf(path, len, "%s/%s", d->dir, name),
	    (int)len);
	th_copy_file(src, path, mode);
}

/* pmd's child side: the uid to run as, then the fds, then prep.  No
 * return. */
static void
pmd_exec(const char *bin, const char *const argv[], const char *const shargv[],
    int rfd, long nofile, const struct th_as *as, void (*prep)(void))
{
	int nul = open("/dev/null", O_RDONLY);

	if (nul >= 0 && nul != 0) {
		dup2(nul, 0);
		close(nul);
	}
	if (dup2(rfd, 3) == -1)
		_exit(127);
	if (as != NULL && (setgroups(0, NULL) == -1 || setgid(as->gid) == -1 ||
	    setuid(as->uid) == -1)) {
		fprintf(stderr, "harness: cannot run pmd as uid %u: %s\n",
		    (unsigned)as->uid, strerror(errno));
		_exit(127);
	}
	/* a test that dies leaves no daemon behind */
	prctl(PR_SET_PDEATHSIG, SIGTERM);
	if (prep != NULL)
		prep();
	if (nofile > 0) {
		struct rlimit rl;

		rl.rlim_cur = rl.rlim_max = (rlim_t)nofile;
		if (setrlimit(RLIMIT_NOFILE, &rl) == -1) {
			close_range(4, ~0U, 0);
			execv(shargv[0], (char *const *)(uintptr_t)shargv);
			fprintf(stderr, "exec %s: %s\n", shargv[0],
			    strerror(errno));
			_exit(127);
		}
	}
	close_range(4, ~0U, 0);
	execv(bin, (char *const *)(uintptr_t)argv);
	fprintf(stderr, "exec %s: %s\n", bin, strerror(errno));
	_exit(127);
}

static int
proc_comm_is(pid_t pid, const char *comm)
{
	char path[64], buf[32];
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "/proc/%d/comm", (int)pid);
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1)
		return 0;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = '\0';
	buf[strcspn(buf, "\n")] = '\0';
	return strcmp(buf, comm) == 0;
}

/*
 * With pre-started workers, a pmd is settled once every one of them is
 * idle (forker + n children named pmd-idle) and the broker's fds have
 * stopped changing (it has taken each one's pidfd): baselines are taken
 * from there.
 */
static void
pmd_wait_idle(const struct th_pmd *d, int n)
{
	pid_t kids[TH_MAX_KIDS];
	double end = th_now() + 20.0;
	int i, k, idle, fds, last = -1, same = 0;

	while (th_now() < end) {
		k = th_children(d->pid, kids, TH_MAX_KIDS);
		for (i = idle = 0; i < k && i < TH_MAX_KIDS; i++)
			if (proc_comm_is(kids[i], "pmd-idle"))
				idle++;
		fds = th_fd_count(d->pid);
		same = idle == n && fds == last ? same + 1 : 0;
		if (same >= 3)
			return;
		last = fds;
		usleep(20000);
	}
	fprintf(stderr, "harness: pmd's %d pre-started workers did not "
	    "settle\n", n);
}

/* PM_TEST_PRESTART: pre-started workers of every pmd a test starts
 * (default 0: the suites' counts of children and fds are exact). */
static const char *
test_prestart(void)
{
	const char *v = getenv("PM_TEST_PRESTART");

	return v != NULL && *v != '\0' ? v : "0";
}

static int
pmd_start(struct th_pmd *d, const char *const extra_args[], long nofile,
    const struct th_as *as, void (*prep)(void))
{
	const char *argv[TH_MAX_ARGS], *shargv[TH_MAX_ARGS + 4];
	const char *bin = th_env("PMD_BIN");
	const char *level = getenv("PM_TEST_LOG_LEVEL");
	char buf[16], nofs[32];
	size_t got = 0;
	double end;
	int rfd[2], n = 0, i, st, prestart = conf_prestart ? conf_prestart :
	    atoi(test_prestart());
	ssize_t r;
	pid_t pid;

	memset(d, 0, sizeof(*d));
	if (as != NULL)
		bin = th_stage(bin);	/* the checkout may be private */
	if (th_mkdtemp(d->dir, sizeof(d->dir)) == -1)
		return -1;
	if (as != NULL && chown(d->dir, as->uid, as->gid) == -1)
		goto fail;
	if (snprintf(d->sock, sizeof(d->sock), "%s/pmd.sock", d->dir) >=
	    (int)sizeof(d->sock) || pipe2(rfd, O_CLOEXEC) == -1)
		goto fail;

	argv[n++] = bin;
	argv[n++] = "--socket";
	argv[n++] = d->sock;
	argv[n++] = "--ready-fd";
	argv[n++] = "3";
	argv[n++] = "--log-level";
	argv[n++] = level ? level : "warn";
	if (!conf_prestart) {		/* the test's own --prestart wins */
		argv[n++] = "--prestart";
		argv[n++] = test_prestart();
	}
	for (i = 0; extra_args != NULL && extra_args[i] != NULL &&
	    n < TH_MAX_ARGS - 1; i++) {
		if (strcmp(extra_args[i], "--prestart") == 0 &&
		    extra_args[i + 1] != NULL)
			prestart = atoi(extra_args[i + 1]);
		else if (strncmp(extra_args[i], "--prestart=", 11) == 0)
			prestart = atoi(extra_args[i] + 11);
		argv[n++] = extra_args[i];
	}
	argv[n] = NULL;
	/* where setrlimit is refused (valgrind keeps the fds above the limit
	 * for itself and allows no other hard limit), a shell, which valgrind
	 * does not trace, sets the limit and execs pmd */
	snprintf(nofs, sizeof(nofs), "%ld", nofile);
	shargv[0] = "/bin/sh";
	shargv[1] = "-c";
	shargv[2] = "ulimit -n \"$0\" && exec \"$@\"";
	shargv[3] = nofs;
	for (i = 0; i <= n; i++)
		shargv[4 + i] = argv[i];

	if ((pid = fork()) == -1) {
		close(rfd[0]);
		close(rfd[1]);
		goto fail;
	}
	if (pid == 0)
		pmd_exec(bin, argv, shargv, rfd[1], nofile, as, prep);
	close(rfd[1]);
	/* READY, then EOF: pmd has closed the fd (it would count as its own
	 * if the baseline were taken before) */
	end = th_now() + 10.0;
	while (got < sizeof(buf) - 1) {
		if (!th_readable(rfd[0], end - th_now()))
			break;
		r = read(rfd[0], buf + got, sizeof(buf) - 1 - got);
		if (r == -1 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		got += (size_t)r;
	}
	close(rfd[0]);
	buf[got] = '\0';
	if (strcmp(buf, "READY\n") != 0) {
		fprintf(stderr, "harness: pmd did not report READY (got \"%s\")\n",
		    buf);
		kill(pid, SIGKILL);
		waitpid(pid, &st, 0);
		goto fail;
	}
	d->pid = pid;
	remember(d, 1);
	if (prestart > 0)
		pmd_wait_idle(d, prestart);
	return 0;
fail:
	th_rmtree(d->dir);
	d->dir[0] = '\0';
	return -1;
}

int
th_pmd_stop(struct th_pmd *d)
{
	int st, rc = 0;

	if (d->pid > 0) {
		remember(d, 0);
		kill(d->pid, SIGTERM);
		if (wait_deadline(d->pid, 15.0, &st) == -1) {
			fprintf(stderr, "harness: pmd %d ignored SIGTERM\n",
			    (int)d->pid);
			kill(d->pid, SIGKILL);
			waitpid(d->pid, &st, 0);
			rc = TH_TIMEOUT;
		} else
			rc = decode_status(st);
		d->pid = 0;
	}
	if (d->dir[0] != '\0') {
		th_rmtree(d->dir);
		d->dir[0] = '\0';
	}
	return rc;
}

int
th_fd_count(pid_t pid)
{
	char path[64];
	struct dirent *e;
	DIR *dir;
	int n = 0;

	if (pid == 0)
		snprintf(path, sizeof(path), "/proc/self/fd");
	else
		snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
	if ((dir = opendir(path)) == NULL)
		return -1;
	while ((e = readdir(dir)) != NULL)
		if (e->d_name[0] != '.')
			n++;
	closedir(dir);
	return pid == 0 ? n - 1 : n;	/* the dir's own fd */
}

/* State and parent of pid from /proc/PID/stat; -1 if gone. */
static int
proc_stat(pid_t pid, char *state, pid_t *ppid)
{
	char path[64], buf[1024], *p;
	ssize_t n;
	int fd, pp;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1)
		return -1;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return -1;
	buf[n] = '\0';
	if ((p = strrchr(buf, ')')) == NULL ||
	    sscanf(p + 1, " %c %d", state, &pp) != 2)
		return -1;
	*ppid = (pid_t)pp;
	return 0;
}

char
th_pid_state(pid_t pid)
{
	char s;
	pid_t pp;

	if (pid <= 0 || proc_stat(pid, &s, &pp) == -1)
		return 0;
	return s;
}

int
th_pid_alive(pid_t pid)
{
	char s = th_pid_state(pid);

	return s != 0 && s != 'Z' && s != 'X' && s != 'x';
}

/* Children of ppid; with zombies_only, only those in state Z. */
static int
scan_children(pid_t ppid, pid_t *pids, int max, int zombies_only)
{
	struct dirent *e;
	DIR *dir;
	char s, *end;
	pid_t pp;
	long v;
	int n = 0;

	if ((dir = opendir("/proc")) == NULL)
		return -1;
	while ((e = readdir(dir)) != NULL) {
		v = strtol(e->d_name, &end, 10);
		if (*end != '\0' || v <= 0)
			continue;
		if (proc_stat((pid_t)v, &s, &pp) == -1 || pp != ppid)
			continue;
		if (zombies_only && s != 'Z')
			continue;
		if (pids != NULL && n < max)
			pids[n] = (pid_t)v;
		n++;
	}
	closedir(dir);
	return n;
}

int
th_zombies(pid_t ppid)
{
	return scan_children(ppid, NULL, 0, 1);
}

int
th_children(pid_t ppid, pid_t *pids, int max)
{
	return scan_children(ppid, pids, max, 0);
}

pid_t
th_pmd_forker(const struct th_pmd *d)
{
	pid_t kids[64];
	pid_t best = 0;
	int n, i;

	n = th_children(d->pid, kids, 64);
	/* the one named so (a worker is renamed at once), else the first
	 * forked: lowest pid */
	for (i = 0; i < n && i < 64; i++)
		if (proc_comm_is(kids[i], "pmd-forker") &&
		    (best == 0 || kids[i] < best))
			best = kids[i];
	for (i = 0; best == 0 && i < n && i < 64; i++)
		if (best == 0 || kids[i] < best)
			best = kids[i];
	return best;
}

long
th_status_num(pid_t pid, const char *key)
{
	char path[64], line[256];
	size_t kl = strlen(key);
	long v = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	if ((f = fopen(path, "re")) == NULL)
		return -1;
	while (fgets(line, sizeof(line), f) != NULL)
		if (strncmp(line, key, kl) == 0 && line[kl] == ':') {
			if (sscanf(line + kl + 1, "%ld", &v) != 1)
				v = -1;
			break;
		}
	fclose(f);
	return v;
}

long
th_rss_kb(pid_t pid)
{
	return th_status_num(pid, "VmRSS");
}

int
th_readable(int fd, double secs)
{
	struct pollfd p;
	double end = th_now() + secs;
	int ms, r;

	for (;;) {
		p.fd = fd;
		p.events = POLLIN;
		p.revents = 0;
		ms = (int)((end - th_now()) * 1000.0);
		if (ms < 0)
			ms = 0;
		r = poll(&p, 1, ms);
		if (r == 1)
			return 1;
		if (r == -1 && errno == EINTR)
			continue;
		if (r == 0 && th_now() < end)
			continue;
		return 0;
	}
}

int
th_run(const char *const argv[], char *out, size_t outsz, double timeout)
{
	char sink[512];
	size_t got = 0;
	double end = th_now() + timeout;
	int p[2], st, eof = 0;
	ssize_t n;
	pid_t pid;

	if (out != NULL && outsz > 0)
		out[0] = '\0';
	if (pipe2(p, O_CLOEXEC) == -1)
		return TH_TIMEOUT;
	if ((pid = fork()) == -1) {
		close(p[0]);
		close(p[1]);
		return TH_TIMEOUT;
	}
	if (pid == 0) {
		int nul = open("/dev/null", O_RDONLY);

		if (nul > 0) {
			dup2(nul, 0);
			close(nul);
		}
		dup2(p[1], 1);
		execv(argv[0], (char *const *)(uintptr_t)argv);
		fprintf(stderr, "exec %s: %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	close(p[1]);
	while (!eof) {
		if (!th_readable(p[0], end - th_now()))
			break;
		if (out != NULL && got + 1 < outsz)
			n = read(p[0], out + got, outsz - 1 - got);
		else
			n = read(p[0], sink, sizeof(sink));
		if (n == -1 && errno == EINTR)
			continue;
		if (n <= 0)
			eof = 1;
		else if (out != NULL && got + 1 < outsz)
			got += (size_t)n;
	}
	close(p[0]);
	if (out != NULL && outsz > 0)
		out[got] = '\0';
	if (wait_deadline(pid, eof ? (end - th_now() > 5.0 ?
	    end - th_now() : 5.0) : 0, &st) == -1) {
		kill(pid, SIGKILL);
		waitpid(pid, &st, 0);
		return TH_TIMEOUT;
	}
	return decode_status(st);
}

int
th_pmctl(char *out, size_t outsz, const char *arg, ...)
{
	const char *argv[TH_MAX_ARGS];
	va_list ap;
	int n = 0;

	argv[n++] = th_env("PMCTL_BIN");
	va_start(ap, arg);
	for (; arg != NULL && n < TH_MAX_ARGS - 1; arg = va_arg(ap, const char *))
		argv[n++] = arg;
	va_end(ap);
	argv[n] = NULL;
	return th_run(argv, out, outsz, 30.0);
}

size_t
th_frame(void *buf, size_t cap, uint8_t version, uint32_t type, uint32_t id,
    uint8_t nfds, const ProtobufCMessage *m)
{
	struct pm_hdr h;
	size_t plen = m ? protobuf_c_message_get_packed_size(m) : 0;

	if (cap < PM_WIRE_HDR + plen)
		return 0;
	memset(&h, 0, sizeof(h));
	h.magic = PM_WIRE_MAGIC;
	h.version = version;
	h.nfds = nfds;
	h.type = type;
	h.id = id;
	h.len = (uint32_t)plen;
	memcpy(buf, &h, sizeof(h));
	if (m != NULL)
		protobuf_c_message_pack(m, (uint8_t *)buf + PM_WIRE_HDR);
	return PM_WIRE_HDR + plen;
}

int
th_send(int sock, const void *buf, size_t len, const int *fds, int nfds)
{
	union {
		struct cmsghdr hdr;
		char buf[CMSG_SPACE(sizeof(int) * 64)];
	} cbuf;
	struct msghdr msg;
	struct iovec iov;
	struct cmsghdr *c;
	ssize_t n;

	if (nfds < 0 || nfds > 64)
		return -1;
	memset(&msg, 0, sizeof(msg));
	memset(&cbuf, 0, sizeof(cbuf));
	iov.iov_base = (void *)(uintptr_t)buf;
	iov.iov_len = len;
	msg.msg_iov = &iov;
	msg.msg_iovlen = 1;
	if (nfds > 0) {
		msg.msg_control = cbuf.buf;
		msg.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)nfds);
		c = CMSG_FIRSTHDR(&msg);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)nfds);
		memcpy(CMSG_DATA(c), fds, sizeof(int) * (size_t)nfds);
	}
	do {
		n = sendmsg(sock, &msg, MSG_NOSIGNAL);
	} while (n == -1 && errno == EINTR);
	return n == (ssize_t)len ? 0 : -1;
}

int
th_unix_connect(const char *path)
{
	struct sockaddr_un sun;
	int fd;

	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	if (strlen(path) >= sizeof(sun.sun_path))
		return -1;
	strcpy(sun.sun_path, path);
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) == -1)
		return -1;
	if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) == -1) {
		close(fd);
		return -1;
	}
	return fd;
}

/* ---- raw clients ---- */

void
th_raw_send(int fd, uint32_t type, uint32_t id, const ProtobufCMessage *m)
{
	th_raw_send_fds(fd, type, id, m, NULL, 0);
}

void
th_raw_send_fds(int fd, uint32_t type, uint32_t id, const ProtobufCMessage *m,
    const int *fds, int nfds)
{
	uint8_t buf[8192], *big = NULL, *b = buf;
	size_t len, cap = sizeof(buf);

	if (m != NULL && protobuf_c_message_get_packed_size(m) + PM_WIRE_HDR >
	    cap) {
		cap = protobuf_c_message_get_packed_size(m) + PM_WIRE_HDR;
		ck_assert_ptr_nonnull(b = big = malloc(cap));
	}
	len = th_frame(b, cap, PM_WIRE_VERSION, type, id, (uint8_t)nfds, m);
	ck_assert_uint_gt(len, 0);
	ck_assert_int_eq(th_send(fd, b, len, fds, nfds), 0);
	free(big);
}

int
th_raw_hello(const char *sock)
{
	Pm__Hello h = PM__HELLO__INIT;
	struct pm_frame f;
	struct wire_in in;
	int fd;

	fd = th_unix_connect(sock);
	ck_assert_msg(fd >= 0, "connect %s: %s", sock, strerror(errno));
	h.version = PM_WIRE_VERSION;
	h.name = (char *)(uintptr_t)"harness";
	h.pid = (int32_t)getpid();
	th_raw_send(fd, PM__TYPE__T_HELLO, 1, &h.base);
	wire_in_init(&in, 0);
	th_raw_next(fd, &in, &f, 30);
	ck_assert_uint_eq(f.type, PM__TYPE__T_HELLO_REPLY);
	wire_frame_close(&f);
	ck_assert_uint_eq(wire_in_pending(&in), 0);
	wire_in_free(&in);
	return fd;
}

void
th_raw_next(int fd, struct wire_in *in, struct pm_frame *f, double secs)
{
	const char *why;
	double end = th_now() + secs;
	int r;

	while ((r = wire_in_next(in, f, &why)) == 0) {
		ck_assert_msg(th_readable(fd, end - th_now()),
		    "no frame from pmd in %g s", secs);
		ck_assert_int_gt(wire_in_read(in, fd), 0);
	}
	ck_assert_msg(r == 1, "bad frame from pmd: %s", why);
}

/* ---- other users ---- */

static gid_t	become_groups[NGROUPS_MAX];
static int	become_ngroups = -1;

uint64_t
th_raw_qopen(int fd, struct wire_in *in, const char *name)
{
	Pm__QueueOpen o = PM__QUEUE_OPEN__INIT;
	Pm__QueueOpenReply *r;
	struct pm_frame f;
	uint64_t qid;

	o.name = (char *)(uintptr_t)name;
	th_raw_send(fd, PM__QUEUE_TYPE__Q_OPEN, 2, &o.base);
	th_raw_next(fd, in, &f, 30);
	ck_assert_uint_eq(f.type, PM__QUEUE_TYPE__Q_OPEN_REPLY);
	ck_assert_ptr_nonnull(r = pm__queue_open_reply__unpack(NULL, f.len,
	    f.data));
	qid = r->qid;
	pm__queue_open_reply__free_unpacked(r, NULL);
	return qid;
}

void
th_become(uid_t uid, gid_t gid, const gid_t *groups, int ngroups)
{
	ck_assert_int_eq(geteuid(), 0);
	ck_assert_int_eq(become_ngroups, -1);
	ck_assert_int_ge(become_ngroups = getgroups(NGROUPS_MAX,
	    become_groups), 0);
	ck_assert_int_eq(setgroups((size_t)ngroups, groups), 0);
	ck_assert_int_eq(setegid(gid), 0);
	ck_assert_int_eq(seteuid(uid), 0);
}

void
th_unbecome(void)
{
	ck_assert_int_eq(seteuid(0), 0);
	ck_assert_int_eq(setegid(getgid()), 0);
	ck_assert_int_ge(become_ngroups, 0);
	ck_assert_int_eq(setgroups((size_t)become_ngroups, become_groups), 0);
	become_ngroups = -1;
}
