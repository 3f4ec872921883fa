/*
 * worker.c - the clean-worker runtime.  Runs in a worker just cloned from
 * the forker: resets signals, takes the client's credentials, lays out
 * exactly the fds asked for, then loads the task function or execs the
 * program.  The start is reported on the channel, to the client: Started
 * and the worker's pidfd, or a StartError.
 */
#include <sys/mman.h>
#include <sys/pidfd.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/types.h>

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pmd.h"
#include "pmclient_int.h"

#define WORKER_DEFAULT_PATH	"/usr/local/bin:/usr/bin:/bin"
#define WORKER_START_FAILED	127

/* Where the start is reported: frames on the channel to the client. */
static int status_fd = -1;
static int exec_errno;		/* execve's errno, for the StartError */

static void
report_frame_fds(int fd, uint32_t type, const ProtobufCMessage *m, int *fds,
    int nfds)
{
	struct wire_out out;

	wire_out_init(&out);
	if (wire_out_frame(&out, type, 0, m, fds, nfds) == 0)
		(void)wire_out_flush_wait(&out, fd, -1);
	wire_out_free(&out);
}

static void
report_frame(uint32_t type, const ProtobufCMessage *m, int *fds, int nfds)
{
	report_frame_fds(status_fd, type, m, fds, nfds);
}

static void
report_frame_to(int fd, uint32_t type, const ProtobufCMessage *m)
{
	report_frame_fds(fd, type, m, NULL, 0);
}

static void __attribute__((noreturn, format(printf, 2, 3)))
start_fail(int code, const char *fmt, ...)
{
	Pm__StartError e = PM__START_ERROR__INIT;
	char msg[768];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	e.code = code;
	e.message = msg;
	e.exec_errno = exec_errno;
	if (status_fd >= 0)
		report_frame(PM__TYPE__T_START_FAILED, &e.base, NULL, 0);
	_exit(WORKER_START_FAILED);
}

/* Started: the client gets Started and our pidfd. */
static void
report_started(void)
{
	Pm__Started m = PM__STARTED__INIT;
	int pidfd;

	if (status_fd < 0)
		return;
	if ((pidfd = pidfd_open(getpid(), 0)) == -1)
		start_fail(PM__CODE__C_SYS, "pidfd_open: %s", strerror(errno));
	m.pid = getpid();
	report_frame(PM__TYPE__T_STARTED, &m.base, &pidfd, 1);
}

/* The forker starts with every disposition default but these. */
static void
reset_signals(void)
{
	static const int forker_ignored[] = FORKER_IGNORED_SIGNALS;
	sigset_t none;
	size_t i;

	for (i = 0; i < sizeof(forker_ignored) / sizeof(int); i++)
		signal(forker_ignored[i], SIG_DFL);
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
}

/*
 * The groups straight from the request, not copied into a gid_t array of
 * NGROUPS_MAX on the stack: that frame (256 KB) put every later call 256 KB
 * below the forker's stack, on pages each worker then wrote for itself.
 */
_Static_assert(sizeof(gid_t) == sizeof(uint32_t), "gid_t is not 32 bits");

static void
take_creds(const Pm__Fork *f)
{
	size_t n = f->n_groups;

	if (!f->set_creds)
		return;
	if (n > NGROUPS_MAX)
		n = NGROUPS_MAX;
	if (setgroups(n, (const gid_t *)f->groups) == -1 ||
	    setgid(f->gid) == -1 || setuid(f->uid) == -1)
		start_fail(PM__CODE__C_PERM, "cannot take uid %u gid %u: %s",
		    f->uid, f->gid, strerror(errno));
}

static void
apply_limits(const Pm__Spawn *s)
{
	struct rlimit rl;
	size_t i;

	for (i = 0; i < s->n_rlimits; i++) {
		rl.rlim_cur = s->rlimits[i]->soft;
		rl.rlim_max = s->rlimits[i]->hard;
		if (setrlimit(s->rlimits[i]->resource, &rl) == -1)
			start_fail(errno == EPERM ? PM__CODE__C_PERM :
			    PM__CODE__C_INVAL, "rlimit %d: %s",
			    s->rlimits[i]->resource, strerror(errno));
	}
	if (s->has_nice && setpriority(PRIO_PROCESS, 0, s->nice) == -1)
		start_fail(PM__CODE__C_PERM, "nice %d: %s", s->nice,
		    strerror(errno));
	if (s->cwd != NULL && *s->cwd != '\0' && chdir(s->cwd) == -1)
		start_fail(errno == ENOENT ? PM__CODE__C_NOENT :
		    PM__CODE__C_PERM, "cannot enter directory %s: %s", s->cwd,
		    strerror(errno));
}

/*
 * Lays out fds: src[i] becomes dst[i]; everything else is closed but the
 * fd the start is reported on (an exec's channel), which ends up just
 * above the highest target.
 */
static void
layout_fds(int *src, const int *dst, int n)
{
	int top = 2, i, fd, keep;

	for (i = 0; i < n; i++)
		if (dst[i] > top)
			top = dst[i];
	/* move every source above every target, so no dup2 clobbers one */
	for (i = 0; i < n; i++) {
		if ((fd = fcntl(src[i], F_DUPFD_CLOEXEC, top + 2)) == -1)
			start_fail(PM__CODE__C_SYS, "fd layout: %s",
			    strerror(errno));
		close(src[i]);
		src[i] = fd;
	}
	if (status_fd >= 0) {
		if ((fd = fcntl(status_fd, F_DUPFD_CLOEXEC, top + 2)) == -1)
			start_fail(PM__CODE__C_SYS, "fd layout: %s",
			    strerror(errno));
		close(status_fd);
		status_fd = fd;
	}
	for (i = 0; i < n; i++)
		if (dup2(src[i], dst[i]) == -1)
			start_fail(PM__CODE__C_SYS, "fd %d: %s", dst[i],
			    strerror(errno));
	if (status_fd >= 0) {
		if (dup3(status_fd, top + 1, O_CLOEXEC) == -1)
			start_fail(PM__CODE__C_SYS, "fd layout: %s",
			    strerror(errno));
		status_fd = top + 1;
	}
	close_range((unsigned)top + 2, ~0U, 0);
	for (fd = 0; fd <= top; fd++) {
		keep = 0;
		for (i = 0; i < n; i++)
			if (dst[i] == fd)
				keep = 1;
		if (!keep)
			close(fd);
	}
	/* 0-2 always exist: /dev/null where the client gave none */
	for (fd = 0; fd < 3; fd++)
		if (fcntl(fd, F_GETFD) == -1) {
			i = open("/dev/null", O_RDWR);
			if (i != fd && i >= 0) {
				dup2(i, fd);
				close(i);
			}
		}
}

/* module: a path, or a name looked up in the module path. */
static void
resolve_module(const struct pmd_config *cfg, const char *module, char *out,
    size_t len)
{
	const char *mp = cfg->module_path ? cfg->module_path : PMD_MODULE_PATH;
	const char *p, *e;
	size_t dl;

	if (strchr(module, '/') != NULL) {
		if (access(module, F_OK) == -1)
			start_fail(PM__CODE__C_NOENT, "no such module: %s",
			    module);
		snprintf(out, len, "%s", module);
		return;
	}
	for (p = mp; *p != '\0'; p = *e ? e + 1 : e) {
		e = strchrnul(p, ':');
		dl = (size_t)(e - p);
		if (dl == 0)
			continue;
		snprintf(out, len, "%.*s/%s", (int)dl, p, module);
		if (access(out, F_OK) == 0)
			return;
		snprintf(out, len, "%.*s/%s.so", (int)dl, p, module);
		if (access(out, F_OK) == 0)
			return;
	}
	start_fail(PM__CODE__C_NOENT, "no such module: %s (module path %s)",
	    module, mp);
}

/* Opens the module as the client: a start failure if it cannot. */
static void *
load_module(const struct pmd_config *cfg, const char *module, char *path,
    size_t len)
{
	void *h;

	resolve_module(cfg, module, path, len);
	/* with the client's credentials: a preloaded module is found by
	 * dlopen without opening the file, so check here */
	if (access(path, R_OK) == -1)
		start_fail(errno == ENOENT ? PM__CODE__C_NOENT :
		    PM__CODE__C_PERM, "cannot read module %s: %s", path,
		    strerror(errno));
	if ((h = dlopen(path, RTLD_NOW)) == NULL)
		start_fail(PM__CODE__C_INVAL, "cannot load module %s: %s",
		    path, dlerror());
	return h;
}

static void __attribute__((noreturn))
run_function(const struct pmd_config *cfg, const char *sock_path,
    const Pm__Fork *f, int channel)
{
	const Pm__Spawn *s = f->spec;
	char path[PMD_MAX_PATH];
	struct pm_task t;
	pm_task_fn *fn;
	void *h;
	int rc;

	h = load_module(cfg, s->module, path, sizeof(path));
	if ((fn = (pm_task_fn *)dlsym(h, s->function)) == NULL)
		start_fail(PM__CODE__C_NOENT, "no function %s in module %s",
		    s->function, path);
	report_started();
	status_fd = -1;			/* the channel is the task's now */
	memset(&t, 0, sizeof(t));
	t.arg = s->arg.data;
	t.arglen = s->arg.len;
	t.channel = channel;
	t.address = sock_path;
	t.name = s->name;
	t.parent_pid = f->owner_pid;
	rc = pmc_task_run_process(fn, &t);
	pmc_task_clear(&t);
	fflush(NULL);
	_exit(rc);
}

/*
 * A pool worker (issue 3): load the module, run the initializer once (a
 * missing or failing one is a start failure, so the spawn and with it
 * pm_pool_new fail with its message), report started, then loop on tasks.
 */
static void __attribute__((noreturn))
run_pool(const struct pmd_config *cfg, const char *sock_path,
    const Pm__Fork *f, int channel, volatile uint64_t *stats)
{
	const Pm__Spawn *s = f->spec;
	char path[PMD_MAX_PATH], label[PMD_MAX_PATH + 8];
	static struct pm_task t;
	pm_task_fn *init = NULL;
	void *h;
	int rc;

	h = load_module(cfg, s->module, path, sizeof(path));
	if (s->function != NULL && *s->function != '\0' &&
	    (init = (pm_task_fn *)dlsym(h, s->function)) == NULL)
		start_fail(PM__CODE__C_NOENT, "no initializer %s in module %s",
		    s->function, path);
	memset(&t, 0, sizeof(t));
	t.channel = -1;
	t.address = sock_path;
	t.name = s->name;
	t.parent_pid = f->owner_pid;
	if (init != NULL) {
		t.arg = s->arg.data;
		t.arglen = s->arg.len;
		rc = init(&t);
		if (t.error != NULL || rc != 0)
			start_fail(PM__CODE__C_TASK, "initializer %s failed: %s",
			    s->function, t.error ? t.error : "nonzero return");
		free(t.result);
		t.result = NULL;
		t.returned = 0;
		t.arg = NULL;
		t.arglen = 0;
	}
	report_started();
	status_fd = -1;			/* the channel is the tasks' now */
	snprintf(label, sizeof(label), "module %s", path);
	pmc_pool_worker_loop(h, label, channel, &t, s->maxtasks,
	    s->maxmemory, stats);
}

static void __attribute__((noreturn))
run_exec(const Pm__Spawn *s)
{
	char **argv, **envp, path[PMD_MAX_PATH];
	const char *search, *p, *e;
	size_t i, dl;
	int err = ENOENT;

	if ((argv = calloc(s->n_argv + 1, sizeof(*argv))) == NULL ||
	    (envp = calloc(s->n_envp + 1, sizeof(*envp))) == NULL)
		start_fail(PM__CODE__C_NOMEM, "out of memory");
	for (i = 0; i < s->n_argv; i++)
		argv[i] = s->argv[i];
	for (i = 0; i < s->n_envp; i++)
		envp[i] = s->envp[i];
	if (!s->has_envp) {
		extern char **environ;

		envp = environ;
	}
	/* Started now; the channel closing on exec says it worked */
	report_started();
	if (strchr(s->path, '/') != NULL) {
		execve(s->path, argv, envp);
		err = errno;
	} else {
		search = NULL;
		for (i = 0; envp[i] != NULL; i++)
			if (strncmp(envp[i], "PATH=", 5) == 0)
				search = envp[i] + 5;
		if (search == NULL)
			search = WORKER_DEFAULT_PATH;
		for (p = search; *p != '\0'; p = *e ? e + 1 : e) {
			e = strchrnul(p, ':');
			dl = (size_t)(e - p);
			snprintf(path, sizeof(path), "%.*s/%s", (int)dl,
			    dl ? p : ".", s->path);
			execve(path, argv, envp);
			if (errno != ENOENT && errno != ENOTDIR)
				err = errno;
		}
	}
	exec_errno = err;
	start_fail(err == ENOENT || err == ENOTDIR ? PM__CODE__C_NOENT :
	    err == EACCES ? PM__CODE__C_PERM : PM__CODE__C_SYS,
	    "cannot run %s: %s", s->path, strerror(err));
}

/* Into the cgroups pmd made for our caps, before any client code. */
static void
join_cgroups(const Pm__Fork *f)
{
	size_t i;
	int fd;

	for (i = 0; i < f->n_cgroups; i++) {
		if ((fd = open(f->cgroups[i], O_WRONLY | O_CLOEXEC)) == -1 ||
		    write(fd, "0", 1) != 1) {
			int e = errno;

			if (fd >= 0)
				close(fd);
			start_fail(PM__CODE__C_SYS, "cannot join cgroup %s: %s",
			    f->cgroups[i], strerror(e));
		}
		close(fd);
	}
}

/* Forked{wid, pid} + [pidfd] to the broker, before the client can hear
 * of us.  One small sendmsg: atomic among the forker's. */
static void
tell_broker(int broker, uint64_t wid)
{
	Pm__Forked r = PM__FORKED__INIT;
	struct wire_out out;
	int pidfd, ok;

	if ((pidfd = pidfd_open(getpid(), 0)) == -1)
		_exit(WORKER_START_FAILED);
	r.wid = wid;
	r.pid = getpid();
	wire_out_init(&out);
	ok = wire_out_frame(&out, PM__TYPE__T_FORKED, 0, &r.base, &pidfd,
	    1) == 0 && wire_out_flush_wait(&out, broker, -1) == 1;
	wire_out_free(&out);
	if (!ok)
		_exit(WORKER_START_FAILED);	/* no broker: nobody to serve */
}

/*
 * The worker's own request: the whole Fork, which the broker put in a
 * sealed memfd (the last fd).  The forker passed it on unread, so that no
 * request's bytes ever enter the forker, whose memory every worker copies.
 */
static Pm__Fork *
read_spec(int fd, uint64_t wid, int nfds)
{
	struct stat st;
	Pm__Fork *f;
	void *buf;

	if (fstat(fd, &st) == -1 || st.st_size <= 0 ||
	    (uint64_t)st.st_size > PMD_MAX_FRAME_CEIL ||
	    (buf = wire_memfd_read(fd, (size_t)st.st_size)) == NULL)
		start_fail(PM__CODE__C_SYS, "cannot read the spawn request: %s",
		    strerror(errno));
	close(fd);
	f = pm__fork__unpack(NULL, (size_t)st.st_size, buf);
	free(buf);
	if (f == NULL || (wid != 0 && f->wid != wid) || f->spec == NULL ||
	    nfds != (f->has_channel ? 1 : 0) + (int)f->spec->n_child_fds +
	    (f->has_stats ? 1 : 0))
		start_fail(PM__CODE__C_PROTO, "malformed spawn request");
	return f;
}

/* The worker as its request says: from here on the same, cloned or
 * spawned (in the runner). */
static void __attribute__((noreturn))
worker_setup(const struct pmd_config *cfg, const char *sock_path,
    const Pm__Fork *f, int *fds, int nfds)
{
	const Pm__Spawn *s = f->spec;
	int dst[PM_WIRE_MAX_FDS], src[PM_WIRE_MAX_FDS];
	int n = 0, i, channel = -1, ch, used;
	volatile uint64_t *stats = NULL;
	void *map;

	if (f->has_stats) {		/* pool: the tasks-done counter */
		map = mmap(NULL, sizeof(uint64_t), PROT_READ | PROT_WRITE,
		    MAP_SHARED, fds[nfds - 1], 0);
		if (map != MAP_FAILED)
			stats = map;
	}
	join_cgroups(f);
	reset_signals();
	if (s->new_pgrp)
		setpgid(0, 0);
	take_creds(f);
	/* after the uid change, which clears it; and the broker may have
	 * gone before it was set */
	if (cfg->private_mode && (prctl(PR_SET_PDEATHSIG, SIGKILL) == -1 ||
	    getppid() != forker_broker_pid))
		_exit(WORKER_START_FAILED);
	apply_limits(s);
	/* the channel takes the lowest number >= 3 nobody asked for; a
	 * program gets none (it reports, then closes on exec) */
	if (f->has_channel && s->kind != PM__KIND__K_EXEC) {
		for (ch = 3;; ch++) {
			used = 0;
			for (i = 0; i < (int)s->n_child_fds; i++)
				if (s->child_fds[i] == ch)
					used = 1;
			if (!used)
				break;
		}
		src[n] = fds[0];
		dst[n++] = channel = ch;
	}
	for (i = 0; i < (int)s->n_child_fds && n < PM_WIRE_MAX_FDS; i++) {
		src[n] = fds[i + (f->has_channel ? 1 : 0)];
		dst[n++] = s->child_fds[i];
	}
	if (s->kind != PM__KIND__K_EXEC)
		status_fd = -1;		/* the channel moves with the layout */
	layout_fds(src, dst, n);
	if (s->kind != PM__KIND__K_EXEC)
		status_fd = channel;
	if (s->kind == PM__KIND__K_EXEC)
		run_exec(s);
	if (s->kind == PM__KIND__K_POOL)
		run_pool(cfg, sock_path, f, channel, stats);
	run_function(cfg, sock_path, f, channel);
}

/* One frame of type from a blocking socket, its fds into fds; EOF ends
 * the worker (nobody wants it any more).  The payload is malloc'd. */
static void *
wait_frame(int sock, uint32_t type, uint32_t max, int *fds, int *nfds,
    size_t *len)
{
	struct wire_in in;
	struct pm_frame f;
	const char *why;
	void *data;
	ssize_t n;
	int r, i;

	wire_in_init(&in, max);
	while ((r = wire_in_next(&in, &f, &why)) == 0) {
		if ((n = wire_in_read(&in, sock)) == 0)
			_exit(0);
		if (n == -1 && errno != EINTR)
			_exit(WORKER_START_FAILED);
	}
	if (r == -1)
		start_fail(PM__CODE__C_PROTO, "%s", why);
	if (f.type != type)
		start_fail(PM__CODE__C_PROTO, "unexpected frame %u", f.type);
	if ((data = malloc(f.len ? f.len : 1)) == NULL)
		start_fail(PM__CODE__C_NOMEM, "out of memory");
	memcpy(data, f.data, f.len);
	*len = f.len;
	for (i = 0; i < f.nfds; i++)
		fds[i] = wire_frame_take(&f, i);
	*nfds = f.nfds;
	wire_frame_close(&f);
	wire_in_free(&in);
	return data;
}

/* Running, to the broker: a claimed worker starts what its client sent. */
static void
tell_running(int broker, const Pm__Spawn *s)
{
	Pm__Running m = PM__RUNNING__INIT;
	char target[PMD_MAX_PATH * 2];

	snprintf(target, sizeof(target), "%s:%s", s->module, s->function);
	m.name = s->name;
	m.target = target;
	m.daemonic = s->daemonic;
	report_frame_to(broker, PM__TYPE__T_RUNNING, &m.base);
	close(broker);
}

/* What a claimed worker runs: a task function, forkserver, no caps (those
 * need pmd), fds it can lay out; else a start failure. */
static void
claimed_check(const Pm__Spawn *s, int nfds)
{
	size_t i, j;

	if (s->kind != PM__KIND__K_FUNCTION || s->start_method !=
	    PM__START_METHOD__S_FORKSERVER || s->memory_max != 0 ||
	    s->cpu_max != 0 || s->module == NULL || *s->module == '\0' ||
	    s->function == NULL || *s->function == '\0')
		start_fail(PM__CODE__C_INVAL, "a claimed worker runs a task "
		    "function, forkserver, without caps");
	if (s->n_child_fds != (size_t)nfds || nfds > PM_WIRE_MAX_FDS - 1)
		start_fail(PM__CODE__C_INVAL, "%zu fd numbers for %d fds",
		    s->n_child_fds, nfds);
	for (i = 0; i < s->n_child_fds; i++) {
		if (s->child_fds[i] < 0 || s->child_fds[i] > 1023)
			start_fail(PM__CODE__C_INVAL, "child fd %d out of "
			    "range", s->child_fds[i]);
		for (j = 0; j < i; j++)
			if (s->child_fds[j] == s->child_fds[i])
				start_fail(PM__CODE__C_INVAL, "child fd %d "
				    "given twice", s->child_fds[i]);
	}
}

/*
 * A worker a client claimed ahead (prestart.c): it takes the client's
 * credentials at once, before a byte of the client's, then waits on its
 * channel for the client's Spawn and the fds it names, tells the broker
 * what it runs, and goes on as any worker.
 */
static void __attribute__((noreturn))
claimed_main(const struct pmd_config *cfg, const char *sock_path,
    const Pm__Fork *claim, int channel, int broker)
{
	Pm__Fork fk = PM__FORK__INIT;
	int fds[PM_WIRE_MAX_FDS], nfds;
	Pm__Spawn *s;
	size_t len;
	void *buf;

	status_fd = channel;
	take_creds(claim);
	if (cfg->private_mode && (prctl(PR_SET_PDEATHSIG, SIGKILL) == -1 ||
	    getppid() != forker_broker_pid))
		_exit(WORKER_START_FAILED);
	buf = wait_frame(channel, PM__TYPE__T_SPAWN, PM_WIRE_MAX_FRAME,
	    fds + 1, &nfds, &len);
	if ((s = pm__spawn__unpack(NULL, len, buf)) == NULL)
		start_fail(PM__CODE__C_PROTO, "malformed spawn");
	free(buf);
	claimed_check(s, nfds);
	fds[0] = channel;
	fk.wid = claim->wid;
	fk.spec = s;
	fk.has_channel = 1;
	fk.owner_pid = claim->owner_pid;
	tell_running(broker, s);
	worker_setup(cfg, sock_path, &fk, fds, nfds + 1);
}

void
worker_main(const struct pmd_config *cfg, const char *sock_path,
    uint64_t wid, int *fds, int nfds, int broker, int prestart)
{
	const Pm__Fork *f;

	tell_broker(broker, wid);
	close(broker);
	if (prestart) {
		/* idle until the broker hands over a request (the frame the
		 * forker would have had), or a claim */
		int idle = fds[0];
		size_t len;
		void *buf;

		prctl(PR_SET_NAME, "pmd-idle");
		buf = wait_frame(idle, PM__TYPE__T_FORK, PMD_FORKER_FRAME, fds,
		    &nfds, &len);
		if ((f = pm__fork__unpack(NULL, len, buf)) == NULL ||
		    nfds < (f->claim ? 1 : 2))
			_exit(WORKER_START_FAILED);
		free(buf);
		prctl(PR_SET_NAME, "pmd-worker");
		if (f->claim)
			claimed_main(cfg, sock_path, f, fds[0], idle);
		close(idle);
	}
	prctl(PR_SET_NAME, "pmd-worker");
	status_fd = fds[0];		/* report on the channel */
	f = read_spec(fds[nfds - 1], wid, nfds - 1);
	nfds--;
	if (f->spec->start_method == PM__START_METHOD__S_SPAWN) {
		runner_exec(cfg, sock_path, f, fds, nfds);
		status_fd = fds[0];	/* moved */
		start_fail(PM__CODE__C_SYS, "cannot spawn the worker (exec of "
		    "pmd's runner): %s", strerror(errno));
	}
	worker_setup(cfg, sock_path, f, fds, nfds);
}

/* In the runner (runner.c): the request again, checked before the exec. */
void
worker_run(const struct pmd_config *cfg, const char *sock_path, int spec,
    int *fds, int nfds)
{
	status_fd = fds[0];
	worker_setup(cfg, sock_path, read_spec(spec, 0, nfds), fds, nfds);
}
