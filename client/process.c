/*
 * process.c - pm_process: one worker running a task function or a program,
 * with Python's Process semantics (start, join, exitcode, terminate).
 * pmd starts it (forkserver or spawn), or this process forks it (fork:
 * pm_process_new_fn) and is its parent.
 */
#include <sys/types.h>
#include <sys/pidfd.h>
#include <sys/resource.h>
#include <sys/socket.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pmclient_int.h"

#define PMC_SPAWN_TIMEOUT	60.0	/* seconds for pmd to start a worker */
#define PMC_EXIT_GRACE		2.0	/* sentinel fired: wait this for Exited */
#define PMC_MAX_RLIMITS		16
#define PMC_CHANNEL_READ	4096	/* a Process channel's read room: small
					   frames (big results come by memfd) */

/* P_STARTING: spawned, waiting for the worker's own start report. */
enum pstate { P_NEW, P_STARTING, P_RUNNING, P_ENDED };

struct pmc_fdmap {
	int	 child;
	int	 parent;		/* -1: leave closed */
};

struct pm_process {
	pm_conn		*conn;		/* NULL once the connection is gone */
	enum pstate	 state;
	Pm__Kind	 kind;		/* K_FORK: pm_process_new_fn */
	int		 method;	/* PM_START_* */
	pm_task_fn	*fn;		/* K_FORK */
	struct pmc_child child;		/* K_FORK: our child */
	char		*name;
	char		*module;
	char		*function;
	char		*path;
	void		*arg;
	size_t		 arglen;
	char		**argv;
	char		**envp;		/* NULL: the caller's, at start */
	int		 daemonic;
	int		 new_pgrp;
	char		*cwd;
	int		 has_nice;
	int		 nice;
	Pm__Rlimit	 rl[PMC_MAX_RLIMITS];
	int		 nrl;
	struct pmc_fdmap fdmap[PMC_PROCESS_MAX_FDS];
	int		 nfdmap;
	uint64_t	 wid;
	pid_t		 pid;
	int		 pidfd;		/* the sentinel */
	int		 channel;
	int		 exitcode;
	pm_rusage	 ru;		/* from Exited */
	uint64_t	 memory_max;	/* caps, 0 none */
	double		 cpu_max;
	int		 oom_killed;	/* Exited says the OOM killer did it */
	int		 lost;		/* ended unknown: connection lost */
	int		 exec_errno;	/* the program could not be run */
	int		 result_read;
	struct wire_in	 chin;		/* what the channel brought */
	int		 exit_seen;	/* Exited came while starting */
	int		 reported;	/* pmd's Exited is in (rusage, OOM) */
	int		 self_read;	/* the sentinel fired, channel read */
	int		 has_self_exit;	/* the worker told its exit code */
	int		 self_exit;
	int		 has_result;
	pm_bytes	 result;
	char		*error;
};

static atomic_uint process_counter;

static int	process_started(pm_process *, int64_t);
static void	process_unstart(pm_process *);
static int	process_start_fork(pm_process *);
static void	process_forget(pm_process *);
static void	process_read_result(pm_process *);

/* ---- the connection's table of processes ----
 * One per connection, subscribed to it: started processes whose end is
 * not yet reported, for Exited events and pm_active_children. */

struct proc_table {
	pm_process	**procs;
	size_t		 n;
	size_t		 cap;
	struct pmc_sub	*sub;
};

static void	table_event_cb(pm_conn *, int, const void *, void *);

static int
table_add(pm_conn *c, pm_process *p)
{
	struct proc_table *t;
	pm_process **n;
	size_t cap;

	if ((t = pmc_sub_find(c, table_event_cb)) == NULL) {
		if ((t = calloc(1, sizeof(*t))) == NULL)
			return -1;
		if ((t->sub = pmc_sub_add(c, table_event_cb, t)) == NULL) {
			free(t);
			return -1;
		}
	}
	if (t->n == t->cap) {
		cap = t->cap ? t->cap * 2 : 16;
		if ((n = realloc(t->procs, cap * sizeof(*n))) == NULL)
			return -1;
		t->procs = n;
		t->cap = cap;
	}
	t->procs[t->n++] = p;
	return 0;
}

static void
table_del(pm_conn *c, pm_process *p)
{
	struct proc_table *t;
	size_t i;

	if ((t = pmc_sub_find(c, table_event_cb)) == NULL)
		return;
	for (i = 0; i < t->n; i++)
		if (t->procs[i] == p) {
			t->procs[i] = t->procs[--t->n];
			return;
		}
}

/* pmd's report: the exit status, unless the worker's own word on it
 * settled the join already (the same code), and the rusage. */
static void
process_exited(pm_process *p, const Pm__Exited *ev)
{
	p->reported = 1;
	if (p->state != P_ENDED)
		p->exitcode = ev->exitcode;
	p->ru.user_s = ev->user_s;
	p->ru.sys_s = ev->sys_s;
	p->ru.maxrss_kb = ev->maxrss_kb;
	p->oom_killed = ev->oom_killed;
}

static void
table_exited(struct proc_table *t, const Pm__Exited *ev)
{
	size_t i;
	pm_process *p;

	for (i = 0; i < t->n; i++) {
		p = t->procs[i];
		if (p->state == P_STARTING && p->wid == ev->wid) {
			p->exit_seen = 1;	/* settled once started */
			process_exited(p, ev);
			return;
		}
		if (p->state == P_RUNNING && p->wid == ev->wid) {
			process_exited(p, ev);
			p->state = P_ENDED;
			return;
		}
		if (p->state == P_ENDED && !p->reported && p->wid == ev->wid) {
			process_exited(p, ev);
			return;
		}
	}
}

/* Exited: settle the process.  Lost: every end is unknown.  Detach
 * (pm_disconnect): processes outlive their connection as plain handles. */
static void
table_event_cb(pm_conn *c, int event, const void *ev, void *ud)
{
	struct proc_table *t = ud;
	size_t i;

	switch (event) {
	case PMC_EV_EXITED:
		table_exited(t, ev);
		break;
	case PMC_EV_LOST:
		for (i = 0; i < t->n; i++)
			t->procs[i]->lost = 1;
		break;
	case PMC_EV_DETACH:
		for (i = 0; i < t->n; i++)
			t->procs[i]->conn = NULL;
		free(t->procs);
		free(t);
		break;
	case PMC_EV_FORKED:
		for (i = 0; i < t->n; i++)
			process_forget(t->procs[i]);
		free(t->procs);
		free(t);
		break;
	}
}

/* In a forked worker: the parent's process, whose fds are the parent's
 * and whose child is not ours.  Calls on it find it ended or lost. */
static void
process_forget(pm_process *p)
{
	p->conn = NULL;
	p->lost = 1;
	p->child.reaped = 1;
	p->child.lost = 1;
	if (p->pidfd >= 0)
		close(p->pidfd);
	if (p->channel >= 0)
		close(p->channel);
	p->pidfd = p->channel = -1;
}

int
pm_active_children(pm_conn *c, pid_t *pids, size_t max)
{
	struct proc_table *t;
	size_t i;
	int n = 0;

	if (c == NULL)
		return pmc_err(PM_EINVAL, "no connection");
	if (!c->lost)
		while (pmc_pump(c, 0) == PM_OK)
			;
	t = pmc_sub_find(c, table_event_cb);
	for (i = 0; t != NULL && i < t->n; i++) {
		pid_t pid = pm_process_pid(t->procs[i]);

		if (pid <= 0 || !pm_process_is_alive(t->procs[i]))
			continue;
		if ((size_t)n < max && pids != NULL)
			pids[n] = pid;
		n++;
	}
	pmc_ok();
	return n;
}

/* ---- construction ---- */

static pm_process *
process_alloc(pm_conn *c, Pm__Kind kind)
{
	pm_process *p;
	char name[32];

	if (c == NULL && kind != PM__KIND__K_FORK) {
		pmc_err(PM_EINVAL, "no connection");
		return NULL;
	}
	if ((p = calloc(1, sizeof(*p))) == NULL)
		goto nomem;
	snprintf(name, sizeof(name), "Process-%u",
	    atomic_fetch_add(&process_counter, 1) + 1);
	if ((p->name = strdup(name)) == NULL)
		goto nomem;
	p->conn = c;
	p->kind = kind;
	p->method = kind == PM__KIND__K_FORK ? PM_START_FORK :
	    PM_START_FORKSERVER;
	p->pidfd = -1;
	p->channel = -1;
	if (c != NULL && table_add(c, p) == -1)
		goto nomem;
	return p;
nomem:
	if (p != NULL)
		free(p->name);
	free(p);
	pmc_err(PM_ENOMEM, "out of memory");
	return NULL;
}

static char **
strv_dup(char *const v[])
{
	size_t n, i;
	char **d;

	for (n = 0; v[n] != NULL; n++)
		;
	if ((d = calloc(n + 1, sizeof(*d))) == NULL)
		return NULL;
	for (i = 0; i < n; i++)
		if ((d[i] = strdup(v[i])) == NULL) {
			while (i > 0)
				free(d[--i]);
			free(d);
			return NULL;
		}
	return d;
}

static void
strv_free(char **v)
{
	size_t i;

	if (v == NULL)
		return;
	for (i = 0; v[i] != NULL; i++)
		free(v[i]);
	free(v);
}

char *
pmc_module_path(const char *module)
{
	char cwd[PATH_MAX], *path;

	if (module[0] == '/' || strchr(module, '/') == NULL) {
		if ((path = strdup(module)) == NULL)
			pmc_err(PM_ENOMEM, "out of memory");
		return path;
	}
	if (getcwd(cwd, sizeof(cwd)) == NULL) {
		pmc_err_sys("module %s: the working directory", module);
		return NULL;
	}
	while (module[0] == '.' && module[1] == '/')	/* "./m.so" */
		for (module += 2; *module == '/'; module++)
			;
	if (asprintf(&path, "%s%s%s", cwd, strcmp(cwd, "/") ? "/" : "",
	    module) == -1) {
		pmc_err(PM_ENOMEM, "out of memory");
		return NULL;
	}
	return path;
}

pm_process *
pm_process_new(pm_conn *c, const char *module, const char *function,
    const void *arg, size_t len)
{
	pm_process *p;

	if (module == NULL || *module == '\0' || function == NULL ||
	    *function == '\0') {
		pmc_err(PM_EINVAL, "a Process needs a module and a function");
		return NULL;
	}
	if (arg == NULL && len > 0) {
		pmc_err(PM_EINVAL, "NULL argument with nonzero length");
		return NULL;
	}
	if ((p = process_alloc(c, PM__KIND__K_FUNCTION)) == NULL)
		return NULL;
	if ((p->module = pmc_module_path(module)) == NULL) {
		pm_process_free(p);
		return NULL;
	}
	p->function = strdup(function);
	p->arg = malloc(len ? len : 1);
	if (p->function == NULL || p->arg == NULL) {
		pm_process_free(p);
		pmc_err(PM_ENOMEM, "out of memory");
		return NULL;
	}
	if (len > 0)
		memcpy(p->arg, arg, len);
	p->arglen = len;
	pmc_ok();
	return p;
}

pm_process *
pm_process_new_fn(pm_conn *c, pm_task_fn *fn, const void *arg, size_t len)
{
	pm_process *p;

	if (fn == NULL) {
		pmc_err(PM_EINVAL, "a fork Process needs a function");
		return NULL;
	}
	if (arg == NULL && len > 0) {
		pmc_err(PM_EINVAL, "NULL argument with nonzero length");
		return NULL;
	}
	if ((p = process_alloc(c, PM__KIND__K_FORK)) == NULL)
		return NULL;
	p->fn = fn;
	if ((p->arg = malloc(len ? len : 1)) == NULL) {
		pm_process_free(p);
		pmc_err(PM_ENOMEM, "out of memory");
		return NULL;
	}
	if (len > 0)
		memcpy(p->arg, arg, len);
	p->arglen = len;
	pmc_ok();
	return p;
}

pm_process *
pm_process_new_exec(pm_conn *c, const char *path, char *const argv[],
    char *const envp[])
{
	char *const defargv[] = { (char *)(uintptr_t)path, NULL };
	pm_process *p;

	if (path == NULL || *path == '\0') {
		pmc_err(PM_EINVAL, "an exec Process needs a path");
		return NULL;
	}
	if ((p = process_alloc(c, PM__KIND__K_EXEC)) == NULL)
		return NULL;
	p->path = strdup(path);
	p->argv = strv_dup(argv && argv[0] ? argv : defargv);
	if (p->path == NULL || p->argv == NULL ||
	    (envp != NULL && (p->envp = strv_dup(envp)) == NULL)) {
		pm_process_free(p);
		pmc_err(PM_ENOMEM, "out of memory");
		return NULL;
	}
	pmc_ok();
	return p;
}

/* ---- settings ---- */

static int
before_start(pm_process *p)
{
	if (p == NULL)
		return pmc_err(PM_EINVAL, "no process");
	if (p->state != P_NEW)
		return pmc_err(PM_ESTATE, "%s was already started", p->name);
	return PM_OK;
}

int
pm_process_set_name(pm_process *p, const char *name)
{
	char *n;

	if (p == NULL || name == NULL)
		return pmc_err(PM_EINVAL, "NULL process or name");
	if ((n = strdup(name)) == NULL)
		return pmc_err(PM_ENOMEM, "out of memory");
	free(p->name);
	p->name = n;
	return pmc_ok();
}

int
pm_process_set_start_method(pm_process *p, int method)
{
	int rc;

	if ((rc = before_start(p)) != PM_OK)
		return rc;
	switch (method) {
	case PM_START_FORKSERVER:
	case PM_START_SPAWN:
		if (p->kind == PM__KIND__K_FORK)
			return pmc_err(PM_EINVAL, "%s runs a function of this "
			    "program: only PM_START_FORK can start it",
			    p->name);
		break;
	case PM_START_FORK:
		if (p->kind != PM__KIND__K_FORK)
			return pmc_err(PM_EINVAL, "PM_START_FORK starts "
			    "pm_process_new_fn processes; %s names a %s",
			    p->name, p->kind == PM__KIND__K_EXEC ? "program" :
			    "module");
		break;
	default:
		return pmc_err(PM_EINVAL, "unknown start method %d", method);
	}
	p->method = method;
	return pmc_ok();
}

int
pm_process_set_daemon(pm_process *p, int daemonic)
{
	int rc;

	if ((rc = before_start(p)) != PM_OK)
		return rc;
	p->daemonic = daemonic != 0;
	return pmc_ok();
}

int
pm_process_set_fd(pm_process *p, int child_fd, int parent_fd)
{
	int rc, i;

	if ((rc = before_start(p)) != PM_OK)
		return rc;
	if (child_fd < 0 || child_fd > 1023)
		return pmc_err(PM_EINVAL, "child fd %d out of range 0-1023",
		    child_fd);
	if (parent_fd < -1 || (parent_fd >= 0 &&
	    fcntl(parent_fd, F_GETFD) == -1))
		return pmc_err(PM_EINVAL, "parent fd %d is not open", parent_fd);
	for (i = 0; i < p->nfdmap; i++)
		if (p->fdmap[i].child == child_fd) {
			p->fdmap[i].parent = parent_fd;
			return pmc_ok();
		}
	if (p->nfdmap == PMC_PROCESS_MAX_FDS)
		return pmc_err(PM_ELIMIT, "at most %d fds per process",
		    PMC_PROCESS_MAX_FDS);
	p->fdmap[p->nfdmap].child = child_fd;
	p->fdmap[p->nfdmap].parent = parent_fd;
	p->nfdmap++;
	return pmc_ok();
}

int
pm_process_set_cwd(pm_process *p, const char *dir)
{
	int rc;
	char *d;

	if ((rc = before_start(p)) != PM_OK)
		return rc;
	if (dir == NULL || *dir == '\0')
		return pmc_err(PM_EINVAL, "empty directory");
	if ((d = strdup(dir)) == NULL)
		return pmc_err(PM_ENOMEM, "out of memory");
	free(p->cwd);
	p->cwd = d;
	return pmc_ok();
}

/* ---- caps ---- */

int
pmc_check_caps(uint64_t memory_max, double cpu_max)
{
	if (memory_max != 0 && memory_max < PMC_MIN_MEMORY_MAX)
		return pmc_err(PM_EINVAL, "memory_max %llu bytes is below "
		    "the least cap, %llu (0 is none)",
		    (unsigned long long)memory_max,
		    (unsigned long long)PMC_MIN_MEMORY_MAX);
	if (!(cpu_max == 0 || (cpu_max >= PMC_MIN_CPU_MAX &&
	    cpu_max <= PMC_MAX_CPU_MAX)))
		return pmc_err(PM_EINVAL, "cpu_max %g out of range (0 none, "
		    "or %g to %g CPUs)", cpu_max, PMC_MIN_CPU_MAX,
		    PMC_MAX_CPU_MAX);
	return pmc_ok();
}

void
pmc_oom_text(char *buf, size_t cap, uint64_t memory_max)
{
	if (memory_max % (1u << 20) == 0)
		snprintf(buf, cap, "out of memory (memory_max %llu MiB)",
		    (unsigned long long)(memory_max >> 20));
	else
		snprintf(buf, cap, "out of memory (memory_max %llu bytes)",
		    (unsigned long long)memory_max);
}

int
pm_process_set_memory_max(pm_process *p, uint64_t bytes)
{
	int rc;

	if ((rc = before_start(p)) != PM_OK)
		return rc;
	if ((rc = pmc_check_caps(bytes, 0)) != PM_OK)
		return rc;
	p->memory_max = bytes;
	return pmc_ok();
}

int
pm_process_set_cpu_max(pm_process *p, double cpus)
{
	int rc;

	if ((rc = before_start(p)) != PM_OK)
		return rc;
	if ((rc = pmc_check_caps(0, cpus)) != PM_OK)
		return rc;
	p->cpu_max = cpus;
	return pmc_ok();
}

int
pm_process_oom_killed(pm_process *p)
{
	if (p == NULL || p->state != P_ENDED)
		return 0;
	return p->oom_killed;
}

int
pm_process_set_nice(pm_process *p, int nice)
{
	int rc;

	if ((rc = before_start(p)) != PM_OK)
		return rc;
	if (nice < -20 || nice > 19)
		return pmc_err(PM_EINVAL, "nice %d out of range -20..19", nice);
	p->has_nice = 1;
	p->nice = nice;
	return pmc_ok();
}

int
pm_process_set_rlimit(pm_process *p, int resource, unsigned long long soft,
    unsigned long long hard)
{
	int rc;

	if ((rc = before_start(p)) != PM_OK)
		return rc;
	if (resource < 0 || resource >= RLIM_NLIMITS || soft > hard)
		return pmc_err(PM_EINVAL, "bad rlimit %d (%llu > %llu?)",
		    resource, soft, hard);
	if (p->nrl == PMC_MAX_RLIMITS)
		return pmc_err(PM_ELIMIT, "too many rlimits");
	pm__rlimit__init(&p->rl[p->nrl]);
	p->rl[p->nrl].resource = resource;
	p->rl[p->nrl].soft = soft;
	p->rl[p->nrl].hard = hard;
	p->nrl++;
	return pmc_ok();
}

int
pm_process_set_new_pgrp(pm_process *p, int on)
{
	int rc;

	if ((rc = before_start(p)) != PM_OK)
		return rc;
	p->new_pgrp = on != 0;
	return pmc_ok();
}

/* ---- start ---- */

/* Fills fds/child numbers: stdio defaults, then the caller's mapping. */
static int
process_fds(pm_process *p, int *fds, int32_t *child, int *n)
{
	int i, j, set, fd, src;

	*n = 0;
	for (i = 0; i < 3; i++) {
		set = 0;
		for (j = 0; j < p->nfdmap; j++)
			if (p->fdmap[j].child == i)
				set = 1;
		if (set || fcntl(i, F_GETFD) == -1)
			continue;
		if ((fd = fcntl(i, F_DUPFD_CLOEXEC, 3)) == -1)
			goto fail;
		fds[*n] = fd;
		child[(*n)++] = i;
	}
	for (j = 0; j < p->nfdmap; j++) {
		if ((src = p->fdmap[j].parent) < 0)
			continue;
		if ((fd = fcntl(src, F_DUPFD_CLOEXEC, 3)) == -1)
			goto fail;
		fds[*n] = fd;
		child[(*n)++] = p->fdmap[j].child;
	}
	return PM_OK;
fail:
	i = pmc_err_sys("cannot pass fd to the worker");
	while (*n > 0)
		close(fds[--(*n)]);
	return i;
}

/* The Spawn of p, pointing into p (rlp: PMC_MAX_RLIMITS room). */
static void
process_spawn_msg(pm_process *p, Pm__Spawn *sp, Pm__Rlimit **rlp)
{
	extern char **environ;
	Pm__Spawn s = PM__SPAWN__INIT;
	char **envp;
	size_t n;
	int i;

	s.kind = p->kind;
	s.start_method = p->method == PM_START_SPAWN ?
	    PM__START_METHOD__S_SPAWN : PM__START_METHOD__S_FORKSERVER;
	s.module = p->module ? p->module : (char *)(uintptr_t)"";
	s.function = p->function ? p->function : (char *)(uintptr_t)"";
	s.arg.data = p->arg;
	s.arg.len = p->arglen;
	s.path = p->path ? p->path : (char *)(uintptr_t)"";
	s.memory_max = p->memory_max;
	s.cpu_max = p->cpu_max;
	if (p->kind == PM__KIND__K_EXEC) {
		for (n = 0; p->argv[n] != NULL; n++)
			;
		s.n_argv = n;
		s.argv = p->argv;
		envp = p->envp ? p->envp : environ;
		for (n = 0; envp != NULL && envp[n] != NULL; n++)
			;
		s.n_envp = n;
		s.envp = envp;
		s.has_envp = 1;
	}
	s.name = p->name;
	s.daemonic = p->daemonic;
	s.new_pgrp = p->new_pgrp;
	s.cwd = p->cwd ? p->cwd : (char *)(uintptr_t)"";
	s.has_nice = p->has_nice;
	s.nice = p->nice;
	for (i = 0; i < p->nrl; i++)
		rlp[i] = &p->rl[i];
	s.n_rlimits = (size_t)p->nrl;
	s.rlimits = rlp;
	*sp = s;
}

/* What a claimed worker may run (spare.c): the rest goes through pmd. */
static int
process_may_claim(const pm_process *p)
{
	return p->kind == PM__KIND__K_FUNCTION && p->method !=
	    PM_START_SPAWN && p->memory_max == 0 && p->cpu_max == 0;
}

/* The Spawn to a worker this connection claimed: the worker reads it
 * itself, no pmd in between.  fds taken.  0, or -1 when the worker
 * could not be given it (gone): the caller spawns through pmd. */
static int
process_hand_spare(pm_process *p, const Pm__Spawn *s, int *fds, int nfds)
{
	struct wire_out out;
	uint64_t wid;
	pid_t pid;
	int ch, r;

	if (!pmc_spare_take(p->conn, &wid, &pid, &ch)) {
		while (nfds > 0)
			close(fds[--nfds]);
		return -1;
	}
	wire_out_init(&out);
	r = wire_out_frame(&out, PM__TYPE__T_SPAWN, 0, &s->base, fds, nfds);
	if (r == 0 && wire_out_flush_wait(&out, ch,
	    wire_deadline(PMC_SPAWN_TIMEOUT)) != 1)
		r = -1;
	wire_out_free(&out);
	if (r == -1) {
		close(ch);
		return -1;
	}
	p->wid = wid;
	p->channel = ch;
	return 0;
}

/* The Spawn to pmd: the channel comes back. */
static int
process_spawn_pmd(pm_process *p, const Pm__Spawn *s, int *fds, int nfds)
{
	Pm__SpawnReply *r;
	struct pmc_pending *pd;
	int rc;

	rc = pmc_call(p->conn, PM__TYPE__T_SPAWN, &s->base, fds, nfds,
	    &pm__spawn_reply__descriptor, &pd, PMC_SPAWN_TIMEOUT);
	if (rc != PM_OK)
		return rc;
	r = (Pm__SpawnReply *)pd->msg;
	if (r == NULL || pd->nfds != 1) {
		pmc_pending_free(p->conn, pd);
		return pmc_err(PM_EPROTO, "spawn reply without its channel");
	}
	p->wid = r->wid;
	p->channel = pd->fds[0];
	pd->fds[0] = -1;
	pmc_pending_free(p->conn, pd);
	return PM_OK;
}

int
pm_process_start(pm_process *p)
{
	Pm__Spawn s;
	Pm__Rlimit *rlp[PMC_MAX_RLIMITS];
	int fds[PM_WIRE_MAX_FDS];
	int32_t child[PM_WIRE_MAX_FDS];
	int nfds, rc, claimed = 0;

	if ((rc = before_start(p)) != PM_OK)
		return rc;
	if (p->kind == PM__KIND__K_FORK)
		return process_start_fork(p);
	if (p->conn == NULL)
		return pmc_err(PM_ECONN, "connection to pmd closed");
	process_spawn_msg(p, &s, rlp);
	if (process_may_claim(p)) {
		if ((rc = process_fds(p, fds, child, &nfds)) != PM_OK)
			return rc;
		s.n_child_fds = (size_t)nfds;
		s.child_fds = child;
		claimed = process_hand_spare(p, &s, fds, nfds) == 0;
	}
	if (!claimed) {
		if ((rc = process_fds(p, fds, child, &nfds)) != PM_OK)
			return rc;
		s.n_child_fds = (size_t)nfds;
		s.child_fds = child;
		if ((rc = process_spawn_pmd(p, &s, fds, nfds)) != PM_OK)
			return rc;
	}
	fcntl(p->channel, F_SETFL, O_NONBLOCK);
	wire_in_init(&p->chin, PM_WIRE_MAX_FRAME);
	p->chin.read_min = PMC_CHANNEL_READ;
	p->state = P_STARTING;
	if ((rc = process_started(p, wire_deadline(PMC_SPAWN_TIMEOUT))) !=
	    PM_OK) {
		process_unstart(p);
		return rc;
	}
	p->state = p->exit_seen ? P_ENDED : P_RUNNING;
	if (process_may_claim(p))
		pmc_spare_want(p->conn);	/* for the next start */
	return pmc_ok();
}

/* A start that did not happen: back to a handle that was never started. */
static void
process_unstart(pm_process *p)
{
	if (p->kind == PM__KIND__K_FORK && pmc_child_signal(&p->child,
	    SIGKILL) == 0)
		pmc_child_reap(&p->child, 1);
	memset(&p->child, 0, sizeof(p->child));
	if (p->pidfd >= 0)
		close(p->pidfd);
	if (p->channel >= 0)
		close(p->channel);
	wire_in_free(&p->chin);
	p->pidfd = p->channel = -1;
	p->wid = 0;
	p->pid = 0;
	p->exit_seen = 0;
	p->state = P_NEW;
}

static int
process_take_started(pm_process *p, struct pm_frame *f)
{
	Pm__Started *m;

	if (f->nfds != 1 || (m = pm__started__unpack(NULL, f->len,
	    f->data)) == NULL)
		return pmc_err(PM_EPROTO, "malformed start report from worker");
	p->pid = m->pid;
	p->pidfd = wire_frame_take(f, 0);
	pm__started__free_unpacked(m, NULL);
	return PM_OK;
}

static int
process_start_failed(pm_process *p, struct pm_frame *f)
{
	Pm__StartError *e;
	int rc;

	if ((e = pm__start_error__unpack(NULL, f->len, f->data)) == NULL)
		return pmc_err(PM_EPROTO, "malformed start error from worker");
	rc = pmc_err(pmc_code_from_wire(e->code), "%s", e->message ?
	    e->message : "the worker could not start");
	p->exec_errno = e->exec_errno;
	pm__start_error__free_unpacked(e, NULL);
	return rc;
}

/*
 * The worker reports on its channel: Started (with its pidfd), or
 * StartError.  A program's channel then closes on exec: EOF is success.
 */
static int
process_started(pm_process *p, int64_t deadline)
{
	struct pm_frame f;
	const char *why;
	ssize_t n;
	int r, done = 0, rc = PM_OK;

	while (!done) {
		r = wire_in_next(&p->chin, &f, &why);
		if (r == -1)
			return pmc_err(PM_EPROTO, "worker channel: %s", why);
		if (r == 1) {
			if (f.type == PM__TYPE__T_STARTED && p->pidfd < 0) {
				rc = process_take_started(p, &f);
				done = rc != PM_OK ||
				    p->kind != PM__KIND__K_EXEC;
			} else if (f.type == PM__TYPE__T_START_FAILED) {
				rc = process_start_failed(p, &f);
				done = 1;
			} else
				rc = pmc_err(PM_EPROTO, "unexpected frame %u "
				    "from a starting worker", f.type), done = 1;
			wire_frame_close(&f);
			continue;
		}
		n = wire_in_read(&p->chin, p->channel);
		if (n == 0) {
			if (p->pidfd < 0)
				return pmc_err(PM_ESYS, "the worker ended "
				    "before it started (pmd's forker died?)");
			break;		/* exec'd */
		}
		if (n > 0)
			continue;
		if (errno != EAGAIN)
			return pmc_err_sys("worker channel");
		if ((r = pmc_wait_fd(p->conn, p->channel, deadline)) == 0)
			return pmc_err(PM_ETIMEDOUT, "%s did not start in time",
			    p->name);
		if (r < 0)
			return r;
	}
	if (rc == PM_OK && p->kind == PM__KIND__K_EXEC) {
		close(p->channel);	/* a program has no channel */
		p->channel = -1;
	}
	return rc;
}

/* ---- fork: the caller forks the worker ---- */

/* In the forked worker: the fds, group and limits asked for, as pmd's
 * worker runtime lays them (but no fd is closed: a fork keeps them). */
static int
fork_child_setup(pm_process *p, int *channel, char *err, size_t len)
{
	struct rlimit rl;
	int src[PMC_PROCESS_MAX_FDS], top = 2, fd, i;

	for (i = 0; i < p->nfdmap; i++)
		if (p->fdmap[i].child > top)
			top = p->fdmap[i].child;
	if (p->nfdmap > 0) {
		if ((fd = fcntl(*channel, F_DUPFD_CLOEXEC, top + 1)) == -1)
			goto sys;
		close(*channel);
		*channel = fd;
		for (i = 0; i < p->nfdmap; i++)
			if ((src[i] = p->fdmap[i].parent) >= 0 &&
			    (src[i] = fcntl(src[i], F_DUPFD_CLOEXEC,
			    top + 1)) == -1)
				goto sys;
		for (i = 0; i < p->nfdmap; i++)
			if (src[i] < 0)
				close(p->fdmap[i].child);
			else if (dup2(src[i], p->fdmap[i].child) == -1)
				goto sys;
		for (i = 0; i < p->nfdmap; i++)
			if (src[i] >= 0)
				close(src[i]);
	}
	if (p->new_pgrp && setpgid(0, 0) == -1)
		goto sys;
	for (i = 0; i < p->nrl; i++) {
		rl.rlim_cur = p->rl[i].soft;
		rl.rlim_max = p->rl[i].hard;
		if (setrlimit(p->rl[i].resource, &rl) == -1) {
			snprintf(err, len, "rlimit %d: %s", p->rl[i].resource,
			    strerror(errno));
			return -1;
		}
	}
	if (p->has_nice && setpriority(PRIO_PROCESS, 0, p->nice) == -1) {
		snprintf(err, len, "nice %d: %s", p->nice, strerror(errno));
		return -1;
	}
	if (p->cwd != NULL && chdir(p->cwd) == -1) {
		snprintf(err, len, "cannot enter directory %s: %s", p->cwd,
		    strerror(errno));
		return -1;
	}
	return 0;
sys:
	snprintf(err, len, "cannot lay out the worker's fds: %s",
	    strerror(errno));
	return -1;
}

/* The forked worker: runs fn as pmd's runtime runs a task function, and
 * _exits with its code (no atexit handler of the parent runs). */
static void __attribute__((noreturn))
fork_child(pm_process *p, int channel, int gate, const char *address,
    pid_t parent)
{
	struct pm_task t;
	char err[512];
	int rc;

	if (gate && pmc_fork_gate(channel) == -1)
		_exit(PMC_FORK_REFUSED);	/* pmd did not take it */
	memset(&t, 0, sizeof(t));
	t.channel = channel;
	if (fork_child_setup(p, &t.channel, err, sizeof(err)) == -1) {
		pm_task_fail(&t, "%s", err);
		pmc_task_run_process(NULL, &t);
		pmc_task_clear(&t);
		_exit(PMC_FORK_REFUSED);
	}
	t.arg = p->arg;
	t.arglen = p->arglen;
	t.address = address;
	t.name = p->name;
	t.parent_pid = parent;
	rc = pmc_task_run_process(p->fn, &t);
	pmc_task_clear(&t);
	fflush(NULL);
	_exit(rc);
}

/* pmd lists the worker before it runs: a refusal (a worker bound, say)
 * ends it unstarted. */
static int
process_adopt(pm_process *p)
{
	struct pmc_adopt a;
	struct pmc_pending *pd;
	char target[PMC_FN_NAME_MAX];
	int rc;

	pmc_fn_name(p->fn, target, sizeof(target));
	memset(&a, 0, sizeof(a));
	a.name = p->name;
	a.target = target;
	a.daemonic = p->daemonic;
	a.stats_fd = -1;
	if ((pd = pmc_adopt_send(p->conn, &p->child, p->pidfd, &a)) == NULL)
		return pm_last_error();
	rc = pmc_wait(p->conn, pd, wire_deadline(PMC_SPAWN_TIMEOUT));
	if (rc == PM_OK && pd->msg != NULL)
		p->wid = ((Pm__AdoptReply *)pd->msg)->wid;
	pmc_pending_free(p->conn, pd);
	return rc;
}

static int
process_start_fork(pm_process *p)
{
	const char *address = NULL;
	pid_t pid, me = getpid();
	int sp[2], rc, gate = p->conn != NULL;

	if (p->conn != NULL && (p->conn->lost || p->lost))
		return pmc_err(PM_ECONN, "connection to pmd lost");
	if (p->memory_max != 0 || p->cpu_max != 0)
		return pmc_err(PM_EINVAL, "%s: memory and CPU caps are set by "
		    "pmd on the workers it starts; a forked worker cannot have "
		    "them (yet)", p->name);
	if (p->conn != NULL)
		address = p->conn->address;
	/* (in the child p->conn is gone: p is one of the parent's there) */
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) == -1)
		return pmc_err_sys("socketpair");
	if ((pid = pmc_fork(&p->child, &p->pidfd)) == 0) {
		close(sp[0]);
		fork_child(p, sp[1], gate, address, me);
	}
	close(sp[1]);
	if (pid == -1) {
		close(sp[0]);
		return pm_last_error();
	}
	p->pid = pid;
	p->channel = sp[0];
	fcntl(p->channel, F_SETFL, O_NONBLOCK);
	wire_in_init(&p->chin, PM_WIRE_MAX_FRAME);
	p->chin.read_min = PMC_CHANNEL_READ;
	if (p->conn != NULL) {
		if ((rc = process_adopt(p)) != PM_OK) {
			process_unstart(p);
			return rc;
		}
		(void)pmc_fork_go(p->channel);	/* it may have been killed */
	}
	p->state = P_RUNNING;
	return pmc_ok();
}

/* 1 once our forked worker has ended (then settled), else 0. */
static int
process_fork_poll(pm_process *p, int block)
{
	if (p->state != P_RUNNING || pmc_child_reap(&p->child, block) == 0)
		return p->state == P_ENDED;
	p->state = P_ENDED;
	p->exitcode = p->child.code;
	p->ru = p->child.ru;
	return 1;
}

/* Until it ends: the pidfd, with our connection's traffic kept flowing
 * while there is one (a fork does not need it: it is our child). */
static int
process_wait_fork(pm_process *p, int64_t deadline)
{
	int r;

	while (!process_fork_poll(p, 0)) {
		if (p->conn != NULL && !p->lost && !p->conn->lost)
			r = pmc_wait_fd(p->conn, p->pidfd, deadline);
		else if ((r = wire_wait(p->pidfd, POLLIN, deadline)) < 0)
			return pmc_err_sys("poll");
		if (r == 0)
			return pmc_err(PM_ETIMEDOUT, "%s still running",
			    p->name);
		if (r < 0 && p->conn != NULL && !p->conn->lost)
			return r;
	}
	process_read_result(p);
	return pmc_ok();
}

/* ---- end ---- */

static void
process_take_result(pm_process *p, const Pm__Result *r, struct pm_frame *f)
{
	size_t len = r->in_fd ? r->data_len : r->data.len;
	void *data = NULL;

	if (r->has_exitcode) {
		p->has_self_exit = 1;
		p->self_exit = r->exitcode;
	}
	if (!r->ok) {
		if (r->error != NULL)
			p->error = strdup(r->error);
		return;
	}
	if (r->none)
		return;
	if (r->in_fd && f->nfds == 1)
		data = wire_memfd_read(f->fds[0], len);
	else if (!r->in_fd && (data = malloc(len ? len : 1)) != NULL)
		memcpy(data, r->data.data, len);
	if (data == NULL)
		return;
	p->has_result = 1;
	p->result.data = data;
	p->result.len = len;
}

/* Reads the worker's Result from the channel, if it wrote one. */
static void
process_read_result(pm_process *p)
{
	struct pm_frame f;
	const char *why;
	Pm__Result *r;
	ssize_t n;
	int rc;

	if (p->result_read || p->channel < 0)
		return;
	p->result_read = 1;
	/* The worker wrote its Result before it ended: it is all there. */
	while ((rc = wire_in_next(&p->chin, &f, &why)) == 0)
		if ((n = wire_in_read(&p->chin, p->channel)) <= 0)
			break;
	if (rc == 1) {
		if (f.type == PM__TYPE__T_RESULT &&
		    (r = pm__result__unpack(NULL, f.len, f.data)) != NULL) {
			process_take_result(p, r, &f);
			pm__result__free_unpacked(r, NULL);
		}
		wire_frame_close(&f);
	}
	wire_in_free(&p->chin);
	close(p->channel);
	p->channel = -1;
}

static int
sentinel_fired(pm_process *p)
{
	struct pollfd pf = { .fd = p->pidfd, .events = POLLIN };

	return p->pidfd >= 0 && poll(&pf, 1, 0) == 1;
}

/*
 * The sentinel fired: the worker has exited.  Its last frame said with
 * what code, unless it was killed (or called exit itself): then pmd's
 * Exited, which reaps it, says.
 */
static void
process_sentinel_fired(pm_process *p)
{
	p->self_read = 1;
	process_read_result(p);
	if (p->has_self_exit && p->state == P_RUNNING) {
		p->exitcode = p->self_exit;
		p->state = P_ENDED;
	}
}

/* Drive the connection until p has ended or the deadline passes.  A task
 * function's end is its sentinel and its own exit report: no wait for
 * pmd, whose Exited follows with the rusage. */
static int
process_wait(pm_process *p, int64_t deadline)
{
	int r;

	if (p->kind == PM__KIND__K_FORK)
		return process_wait_fork(p, deadline);
	while (p->state == P_RUNNING) {
		if (p->lost || p->conn == NULL)
			return pmc_err(PM_ECONN, "connection to pmd lost; "
			    "the end of %s is unknown", p->name);
		if (p->kind == PM__KIND__K_FUNCTION && !p->self_read &&
		    p->pidfd >= 0) {
			r = pmc_wait_fd(p->conn, p->pidfd, deadline);
			if (r == 0)
				return pmc_err(PM_ETIMEDOUT, "%s still running",
				    p->name);
			if (r < 0 && p->state == P_RUNNING)
				return r;
			if (r == 1 && p->state == P_RUNNING)
				process_sentinel_fired(p);
			continue;
		}
		r = pmc_pump(p->conn, deadline);
		if (r == PM_ETIMEDOUT)
			return pmc_err(PM_ETIMEDOUT, "%s still running",
			    p->name);
		if (r != PM_OK && p->state == P_RUNNING)
			return r;
	}
	process_read_result(p);
	return pmc_ok();
}

int
pm_process_join(pm_process *p, double timeout)
{
	if (p == NULL)
		return pmc_err(PM_EINVAL, "no process");
	if (p->state == P_NEW)
		return pmc_err(PM_ESTATE, "%s was not started", p->name);
	return process_wait(p, wire_deadline(timeout));
}

/* If the sentinel says it is over, wait briefly for pmd's exit report. */
static void
process_poll(pm_process *p)
{
	if (p->kind == PM__KIND__K_FORK) {
		if (process_fork_poll(p, 0) && p->conn != NULL &&
		    !p->conn->lost)
			while (pmc_pump(p->conn, 0) == PM_OK)
				;
		return;
	}
	if (p->state != P_RUNNING || p->conn == NULL || p->lost)
		return;
	while (pmc_pump(p->conn, 0) == PM_OK && p->state == P_RUNNING)
		;
	if (p->state == P_RUNNING && sentinel_fired(p))
		process_wait(p, wire_deadline(PMC_EXIT_GRACE));
}

int
pm_process_is_alive(pm_process *p)
{
	if (p == NULL || p->state != P_RUNNING)
		return 0;
	process_poll(p);
	if (p->state != P_RUNNING)
		return 0;
	return !sentinel_fired(p);
}

/*
 * Python's connection.wait() on sentinels: the lowest index of an ended
 * Process among ps.  Polls the sentinels and, so that callbacks and exit
 * reports keep flowing, the connections they came from.
 */
int
pm_wait(pm_process *const *ps, size_t n, double timeout)
{
	struct pollfd pf[PM_WAIT_MAX * 2];
	int64_t deadline = wire_deadline(timeout);
	size_t i, j, npf;
	int r;

	if (ps == NULL || n == 0 || n > PM_WAIT_MAX)
		return pmc_err(PM_EINVAL, "pm_wait: %zu processes (1-%d)", n,
		    PM_WAIT_MAX);
	for (i = 0; i < n; i++)
		if (ps[i] == NULL || ps[i]->state == P_NEW)
			return pmc_err(PM_EINVAL, "pm_wait: process %zu %s", i,
			    ps[i] == NULL ? "is NULL" : "was not started");
	for (;;) {
		for (i = 0; i < n; i++)
			if (!pm_process_is_alive(ps[i])) {
				pmc_ok();
				return (int)i;
			}
		for (i = npf = 0; i < n; i++) {
			if (ps[i]->pidfd >= 0)
				pf[npf++] = (struct pollfd){ ps[i]->pidfd,
				    POLLIN, 0 };
			if (ps[i]->conn == NULL || ps[i]->lost)
				continue;
			for (j = 0; j < i && ps[j]->conn != ps[i]->conn; j++)
				;
			if (j == i)
				pf[npf++] = (struct pollfd){
				    pm_conn_fd(ps[i]->conn), POLLIN, 0 };
		}
		r = poll(pf, npf, wire_poll_ms(deadline));
		if (r == -1 && errno != EINTR)
			return pmc_err_sys("pm_wait: poll");
		if (r == 0 && deadline >= 0 && wire_now_ns() >= deadline)
			return pmc_err(PM_ETIMEDOUT, "none of %zu processes "
			    "ended in time", n);
	}
}

int
pm_process_exitcode(pm_process *p, int *code)
{
	if (p == NULL || code == NULL)
		return pmc_err(PM_EINVAL, "NULL argument");
	if (p->state == P_NEW)
		return pmc_err(PM_ESTATE, "%s was not started", p->name);
	process_poll(p);
	if (p->state != P_ENDED)
		return pmc_err(PM_ESTATE, "%s is still running", p->name);
	if (p->child.lost)
		return pmc_err(PM_ESYS, "the exit status of %s was taken by "
		    "another wait (SIGCHLD ignored, or a wait for any child)",
		    p->name);
	*code = p->exitcode;
	return pmc_ok();
}

int
pm_process_rusage(pm_process *p, pm_rusage *ru)
{
	if (p == NULL || ru == NULL)
		return pmc_err(PM_EINVAL, "NULL argument");
	if (p->state == P_NEW)
		return pmc_err(PM_ESTATE, "%s was not started", p->name);
	process_poll(p);
	if (p->state != P_ENDED)
		return pmc_err(PM_ESTATE, "%s is still running", p->name);
	/* joined on its own word: pmd's reaping report has the rusage */
	if (p->kind != PM__KIND__K_FORK && !p->reported) {
		int64_t deadline = wire_deadline(PMC_EXIT_GRACE);

		while (!p->reported && p->conn != NULL && !p->lost &&
		    pmc_pump(p->conn, deadline) == PM_OK)
			;
	}
	*ru = p->ru;
	return pmc_ok();
}

int
pmc_process_exec_errno(pm_process *p)
{
	return p != NULL ? p->exec_errno : 0;
}

pid_t
pm_process_pid(pm_process *p)
{
	return p ? p->pid : 0;
}

const char *
pm_process_name(pm_process *p)
{
	return p ? p->name : NULL;
}

int
pm_process_sentinel(pm_process *p)
{
	return p ? p->pidfd : -1;
}

static int
process_signal_via_pmd(pm_process *p, int sig)
{
	Pm__Signal q = PM__SIGNAL__INIT;
	struct pmc_pending *pd;
	int rc;

	if (p->conn == NULL)
		return pmc_err(PM_ECONN, "connection to pmd closed");
	q.wid = p->wid;
	q.signo = sig;
	rc = pmc_call(p->conn, PM__TYPE__T_SIGNAL, &q.base, NULL, 0, NULL,
	    &pd, PMC_SPAWN_TIMEOUT);
	if (rc == PM_ENOENT)		/* already reaped */
		return pmc_ok();
	if (rc != PM_OK)
		return rc;
	pmc_pending_free(p->conn, pd);
	return pmc_ok();
}

int
pm_process_signal(pm_process *p, int sig)
{
	if (p == NULL)
		return pmc_err(PM_EINVAL, "no process");
	if (sig < 0 || sig >= NSIG)
		return pmc_err(PM_EINVAL, "bad signal %d", sig);
	if (p->state == P_NEW)
		return pmc_err(PM_ESTATE, "%s was not started", p->name);
	if (p->state == P_ENDED || p->pidfd < 0)
		return pmc_ok();
	if (p->kind == PM__KIND__K_FORK) {
		if (pmc_child_signal(&p->child, sig) == -1)
			return pmc_err(errno == EPERM ? PM_EPERM : PM_ESYS,
			    "signal %s: %s", p->name, strerror(errno));
		return pmc_ok();
	}
	if (pidfd_send_signal(p->pidfd, sig, NULL, 0) == -1) {
		if (errno == ESRCH)
			return pmc_ok();
		if (errno == ENOSYS)	/* e.g. under valgrind: ask pmd */
			return process_signal_via_pmd(p, sig);
		if (errno == EPERM)
			return pmc_err(PM_EPERM, "not allowed to signal %s",
			    p->name);
		return pmc_err_sys("signal %s", p->name);
	}
	return pmc_ok();
}

int
pm_process_terminate(pm_process *p)
{
	return pm_process_signal(p, SIGTERM);
}

int
pm_process_kill(pm_process *p)
{
	return pm_process_signal(p, SIGKILL);
}

int
pm_process_result(pm_process *p, pm_bytes *out)
{
	if (p == NULL || out == NULL)
		return pmc_err(PM_EINVAL, "NULL argument");
	out->data = NULL;
	out->len = 0;
	if (p->state != P_ENDED)
		return pmc_err(PM_ESTATE, "%s has not ended", p->name);
	process_read_result(p);
	if (!p->has_result)
		return pmc_err(PM_ENOENT, "%s returned no result", p->name);
	if ((out->data = malloc(p->result.len ? p->result.len : 1)) == NULL)
		return pmc_err(PM_ENOMEM, "out of memory");
	memcpy(out->data, p->result.data, p->result.len);
	out->len = p->result.len;
	return pmc_ok();
}

const char *
pm_process_error(pm_process *p)
{
	char buf[128];

	if (p == NULL || p->state != P_ENDED)
		return NULL;
	process_read_result(p);
	if (p->error == NULL && p->oom_killed) {
		pmc_oom_text(buf, sizeof(buf), p->memory_max);
		p->error = strdup(buf);
	}
	return p->error;
}

void
pm_process_free(pm_process *p)
{
	if (p == NULL)
		return;
	if (p->conn != NULL)
		table_del(p->conn, p);
	if (p->kind == PM__KIND__K_FORK)
		pmc_child_orphan(&p->child);	/* reaped later if it runs */
	if (p->pidfd >= 0)
		close(p->pidfd);
	if (p->channel >= 0)
		close(p->channel);
	wire_in_free(&p->chin);
	free(p->name);
	free(p->module);
	free(p->function);
	free(p->path);
	free(p->arg);
	free(p->cwd);
	strv_free(p->argv);
	strv_free(p->envp);
	pm_bytes_free(&p->result);
	free(p->error);
	free(p);
}
