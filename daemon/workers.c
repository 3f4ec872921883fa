/*
 * workers.c - the broker's worker table: asking the forker for workers,
 * learning whether they started, reaping them through pidfds, reporting
 * exact exit status to their owner, and ending them.  Workers a client
 * forked itself (start method fork) are adopted: listed, signalled and
 * ended with their owner, but reaped by the client.
 */
#include <sys/mman.h>
#include <sys/pidfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "pmd.h"
#include "pmclient_int.h"

static void	forker_read_cb(evutil_socket_t, short, void *);
static void	forker_write_cb(evutil_socket_t, short, void *);
static void	forker_death_cb(evutil_socket_t, short, void *);
static void	worker_kill_cb(evutil_socket_t, short, void *);
static void	worker_end(struct worker *);
static void	forker_restart(void);
static uint64_t	pool_stats_read(const struct worker *);
static void	forker_forked(struct pm_frame *);

/* ---- the forker ---- */

void
forker_flush(void)
{
	if (pmd->forker_fd < 0)
		return;
	if (wire_out_flush(&pmd->forker_out, pmd->forker_fd) == -1) {
		/* A link that cannot be written is dead: the write event
		 * would fire on and on, and the forker is ended, whose death
		 * (through the pidfd) brings a new one. */
		log_warn("%s: %s; restarting the forker", __func__,
		    strerror(errno));
		event_del(pmd->forker_wev);
		pidfd_send_signal(pmd->forker_pidfd, SIGKILL, NULL, 0);
		return;
	}
	if (wire_out_pending(&pmd->forker_out) > 0)
		event_add(pmd->forker_wev, NULL);
	else
		event_del(pmd->forker_wev);
}

/*
 * The forker's first moments: the child of clone(CLONE_VM | CLONE_VFORK)
 * on a stack of its own, in our memory (we are suspended) until its exec,
 * so system calls only.  Its socket becomes fd 3 and nothing else is
 * kept; the fd limit goes back to the one pmd started with, which the
 * forker's workers inherit.  Signals stay blocked across the exec (ours
 * were blocked for the clone): forker_main unblocks them.
 */
static char forker_stack[PMD_FORKER_STACK] __attribute__((aligned(16)));

struct forker_exec {
	char		*const *argv;
	int		 sock;
	volatile int	 err;		/* why it could not exec */
};

static int __attribute__((no_sanitize_address))
forker_exec_cb(void *arg)
{
	struct forker_exec *x = arg;

	if ((x->sock == 3 ? fcntl(3, F_SETFD, 0) : dup2(x->sock, 3)) == -1) {
		x->err = errno;
		_exit(127);
	}
	close_range(4, ~0U, 0);
	if (pmd->nofile0.rlim_max > 0)
		setrlimit(RLIMIT_NOFILE, &pmd->nofile0);
	execv("/proc/self/exe", x->argv);
	x->err = errno;
	_exit(127);
}

/*
 * Starts the forker: a fresh exec of ourselves, fed through a socketpair.
 * Neither at start nor at a restart is the broker forked: however much it
 * holds (queues may hold GiBs), the child shares its memory until the
 * exec, as with vfork (posix_spawn could not restore the fd limit), and
 * its pidfd comes with it.  -1 (and why, in errno) when it cannot start,
 * exec included: nothing is left behind.
 */
int
forker_start(void)
{
	char fdarg[16], *argv[8 + 2 * PMD_MAX_PRELOAD];
	struct forker_exec x;
	sigset_t all, old;
	siginfo_t si;
	int sp[2], argc = 0, i, err, pidfd = -1;
	pid_t pid;

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) == -1)
		return -1;
	argv[argc++] = (char *)(uintptr_t)"pmd-forker";
	argv[argc++] = (char *)(uintptr_t)"--forker";
	argv[argc++] = fdarg;
	argv[argc++] = (char *)(uintptr_t)"--socket";
	argv[argc++] = pmd->cfg.socket;
	if (pmd->cfg.private_mode)
		argv[argc++] = (char *)(uintptr_t)"--private";
	if (pmd->cfg.module_path != NULL) {
		argv[argc++] = (char *)(uintptr_t)"--module-path";
		argv[argc++] = pmd->cfg.module_path;
	}
	for (i = 0; i < pmd->cfg.npreload; i++) {
		argv[argc++] = (char *)(uintptr_t)"--preload";
		argv[argc++] = pmd->cfg.preload[i];
	}
	argv[argc] = NULL;
	snprintf(fdarg, sizeof(fdarg), "3");
	x.argv = argv;
	x.sock = sp[1];
	x.err = 0;
	sigfillset(&all);
	sigprocmask(SIG_SETMASK, &all, &old);
	pid = clone(forker_exec_cb, forker_stack + sizeof(forker_stack),
	    CLONE_VM | CLONE_VFORK | CLONE_PIDFD | SIGCHLD, &x, &pidfd);
	err = pid == -1 ? errno : x.err;
	sigprocmask(SIG_SETMASK, &old, NULL);
	close(sp[1]);
	if (pid != -1 && err != 0) {	/* it could not exec: it is gone */
		while (waitid(P_PIDFD, (id_t)pidfd, &si, WEXITED) == -1 &&
		    errno == EINTR)
			;
		close(pidfd);
	}
	if (pid == -1 || err != 0) {
		close(sp[0]);
		errno = err;
		return -1;
	}
	pmd->forker_pid = pid;
	pmd->forker_pidfd = pidfd;
	pmd->forker_fd = sp[0];
	fcntl(sp[0], F_SETFL, O_NONBLOCK);
	wire_in_init(&pmd->forker_in, PMD_FORKER_FRAME);
	wire_out_init(&pmd->forker_out);
	pmd->forker_rev = event_new(pmd->base, sp[0], EV_READ | EV_PERSIST,
	    forker_read_cb, NULL);
	pmd->forker_wev = event_new(pmd->base, sp[0], EV_WRITE | EV_PERSIST,
	    forker_write_cb, NULL);
	pmd->forker_death_ev = event_new(pmd->base, pmd->forker_pidfd,
	    EV_READ, forker_death_cb, NULL);
	if (pmd->forker_rev == NULL || pmd->forker_wev == NULL ||
	    pmd->forker_death_ev == NULL)
		fatal("%s: event_new", __func__);
	event_add(pmd->forker_rev, NULL);
	event_add(pmd->forker_death_ev, NULL);
	log_info("forker started, pid %d", (int)pid);
	return 0;
}

static void
forker_release(void)
{
	if (pmd->forker_fd < 0)
		return;
	event_free(pmd->forker_rev);
	event_free(pmd->forker_wev);
	event_free(pmd->forker_death_ev);
	wire_in_free(&pmd->forker_in);
	wire_out_free(&pmd->forker_out);
	close(pmd->forker_fd);
	close(pmd->forker_pidfd);
	pmd->forker_fd = -1;
	pmd->forker_pidfd = -1;
	pmd->forker_pid = 0;
}

/* Ends the forker and waits for it. */
void
forker_stop(void)
{
	siginfo_t si;

	if (pmd->drain_fd >= 0) {	/* no worker is left to report */
		event_free(pmd->drain_ev);
		wire_in_free(&pmd->drain_in);
		close(pmd->drain_fd);
		pmd->drain_fd = -1;
	}
	if (pmd->forker_retry != NULL) {
		event_free(pmd->forker_retry);
		pmd->forker_retry = NULL;
	}
	if (pmd->forker_fd < 0)
		return;
	pidfd_send_signal(pmd->forker_pidfd, SIGKILL, NULL, 0);
	memset(&si, 0, sizeof(si));
	while (waitid(P_PIDFD, (id_t)pmd->forker_pidfd, &si, WEXITED) == -1 &&
	    errno == EINTR)
		;
	forker_release();
}

/*
 * The workers: pmd->workers for walks, hash tables by wid and by pid for
 * lookups.  Should a table fail to grow (out of memory), lookups scan the
 * list from then on.
 */
static struct worker	*by_wid;
static struct worker	*by_pid;
static int		 hash_partial;

static void
worker_hash_pid(struct worker *w)
{
	if (w->pid <= 0 || w->pid_hashed)
		return;
	pmd_hash_oom = 0;
	HASH_ADD(hh_pid, by_pid, pid, sizeof(w->pid), w);
	if (pmd_hash_oom)
		hash_partial = 1;
	else
		w->pid_hashed = 1;
}

void
worker_link(struct worker *w)
{
	TAILQ_INSERT_TAIL(&pmd->workers, w, entry);
	pmd_hash_oom = 0;
	HASH_ADD(hh_wid, by_wid, wid, sizeof(w->wid), w);
	if (pmd_hash_oom)
		hash_partial = 1;
	else
		w->wid_hashed = 1;
	worker_hash_pid(w);
}

void
worker_unlink(struct worker *w)
{
	TAILQ_REMOVE(&pmd->workers, w, entry);
	if (w->wid_hashed)
		HASH_DELETE(hh_wid, by_wid, w);
	if (w->pid_hashed)
		HASH_DELETE(hh_pid, by_pid, w);
	w->wid_hashed = w->pid_hashed = 0;
}

static struct worker *
worker_find(uint64_t wid)
{
	struct worker *w;

	HASH_FIND(hh_wid, by_wid, &wid, sizeof(wid), w);
	if (w == NULL && hash_partial)
		TAILQ_FOREACH(w, &pmd->workers, entry)
			if (w->wid == wid)
				break;
	return w;
}

static struct worker *
worker_by_pid(pid_t pid)
{
	struct worker *w;

	if (pid <= 0)
		return NULL;
	HASH_FIND(hh_pid, by_pid, &pid, sizeof(pid), w);
	if (w == NULL && hash_partial)
		TAILQ_FOREACH(w, &pmd->workers, entry)
			if (w->pid == pid)
				break;
	return w;
}

/* A spawn is answered at once: the wid and the client's channel end.
 * Whether it starts, the worker says on the channel (Started and its
 * pidfd, or StartError), or the forker does when it cannot fork. */
static void
spawn_reply(struct worker *w)
{
	Pm__SpawnReply r = PM__SPAWN_REPLY__INIT;
	int fd = w->client_channel;

	w->client_channel = -1;
	r.wid = w->wid;
	r.channel_fd = -1;
	session_send(w->owner, PM__TYPE__T_SPAWN_REPLY, w->spawn_id, &r.base,
	    &fd, 1);
}

/* A spawn that will not happen: answer its owner if not yet answered
 * (once answered, the client learns it on the channel), drop the worker. */
static void
spawn_fail(struct worker *w, int code, const char *msg)
{
	if (w->prestart) {		/* nobody asked for it yet */
		prestart_failed(w);
		return;
	}
	pmd->spawn_failed++;
	if (w->owner != NULL && w->client_channel >= 0)
		session_error(w->owner, w->spawn_id, code, "%s", msg);
	pmd->nworkers--;
	if (w->pidfd >= 0)		/* a claimed worker: it runs nothing */
		worker_discard(w);
	else {
		worker_unlink(w);
		worker_free(w);
	}
}

/* Fails the spawns of forker generation gen still waiting, once every
 * worker it cloned has reported (or none was). */
static void
forker_fail_pending(uint32_t gen)
{
	struct worker *w, *next;

	for (w = TAILQ_FIRST(&pmd->workers); w != NULL; w = next) {
		next = TAILQ_NEXT(w, entry);
		if (w->state == W_FORKING && w->forker_gen == gen)
			spawn_fail(w, PM__CODE__C_SYS,
			    "the forker died during this spawn");
	}
	workers_reap_orphans();
}

static void
drain_close(void)
{
	if (pmd->drain_fd < 0)
		return;
	event_free(pmd->drain_ev);
	wire_in_free(&pmd->drain_in);
	close(pmd->drain_fd);
	pmd->drain_fd = -1;
	forker_fail_pending(pmd->drain_gen);
}

static void
drain_cb(evutil_socket_t fd, short ev, void *arg)
{
	struct pm_frame f;
	const char *why;
	ssize_t n;
	int r;

	n = wire_in_read(&pmd->drain_in, pmd->drain_fd);
	if (n == -1 && errno == EAGAIN)
		return;
	while ((r = wire_in_next(&pmd->drain_in, &f, &why)) == 1) {
		if (f.type == PM__TYPE__T_FORKED)
			forker_forked(&f);
		wire_frame_close(&f);
	}
	if (n <= 0 || r == -1)
		drain_close();		/* every worker has reported */
}

static void
forker_death_cb(evutil_socket_t fd, short ev, void *arg)
{
	siginfo_t si;

	memset(&si, 0, sizeof(si));
	waitid(P_PIDFD, (id_t)pmd->forker_pidfd, &si, WEXITED | WNOHANG);
	log_warn("forker (pid %d) ended (code %d status %d)",
	    (int)pmd->forker_pid, si.si_code, si.si_status);
	/* workers it cloned still hold its socket and will report there */
	drain_close();
	if ((pmd->drain_fd = dup(pmd->forker_fd)) != -1) {
		pmd->drain_gen = pmd->forker_gen;
		wire_in_init(&pmd->drain_in, PMD_FORKER_FRAME);
		if ((pmd->drain_ev = event_new(pmd->base, pmd->drain_fd,
		    EV_READ | EV_PERSIST, drain_cb, NULL)) == NULL)
			fatal("%s: event_new", __func__);
		event_add(pmd->drain_ev, NULL);
		/* what was read already but not handled moves along */
		pmd->drain_in = pmd->forker_in;
		wire_in_init(&pmd->forker_in, PMD_FORKER_FRAME);
	}
	forker_release();
	pmd->forker_gen++;
	if (pmd->drain_fd < 0)
		forker_fail_pending(pmd->forker_gen - 1);
	if (!pmd->stopping)
		forker_restart();
	workers_reap_orphans();
	broker_check_idle();
}

static void
forker_retry_cb(evutil_socket_t fd, short ev, void *arg)
{
	if (!pmd->stopping && pmd->forker_fd < 0)
		forker_restart();
}

/* Starts a new forker, or tries again later (out of fds, process limit);
 * an outage is logged when it begins and when it ends. */
static void
forker_restart(void)
{
	struct timeval tv = { (time_t)PMD_FORKER_RETRY, 0 };

	if (forker_start() == 0) {
		if (pmd->forker_retries > 0)
			log_info("forker back after %u attempts",
			    pmd->forker_retries + 1);
		pmd->forker_retries = 0;
		prestart_later();
		return;
	}
	if (pmd->forker_retries++ == 0)
		log_err("cannot restart the forker: %s; spawns fail until it "
		    "is back (retrying every %g s)", strerror(errno),
		    (double)PMD_FORKER_RETRY);
	if (pmd->forker_retry == NULL &&
	    (pmd->forker_retry = evtimer_new(pmd->base, forker_retry_cb,
	    NULL)) == NULL)
		return;
	evtimer_add(pmd->forker_retry, &tv);
}

static void
forker_write_cb(evutil_socket_t fd, short ev, void *arg)
{
	forker_flush();
}

/* One start's latency into the histogram. */
static void
start_observe(double secs)
{
	static const double le[PMD_START_BUCKETS] = PMD_START_BOUNDS;
	int i;

	if (secs < 0)
		secs = 0;
	for (i = 0; i < PMD_START_BUCKETS; i++)
		if (secs <= le[i]) {
			pmd->start_hist[i]++;
			break;
		}
	pmd->start_sum += secs;
	pmd->start_count++;
}

/* The counters pmctl stats shows, into r; le and bucket have
 * PMD_START_BUCKETS room. */
void
workers_stats(Pm__StatusReply *r, double *le, uint64_t *bucket)
{
	static const double bounds[PMD_START_BUCKETS] = PMD_START_BOUNDS;
	struct worker *w;
	uint64_t sum = 0;
	int i;

	r->oom_killed = pmd->oom_killed;
	r->pool_tasks = pmd->pool_tasks;
	TAILQ_FOREACH(w, &pmd->workers, entry)
		r->pool_tasks += pool_stats_read(w);
	for (i = 0; i < PMD_START_BUCKETS; i++) {
		sum += pmd->start_hist[i];
		le[i] = bounds[i];
		bucket[i] = sum;
	}
	r->n_start_le = r->n_start_bucket = PMD_START_BUCKETS;
	r->start_le = le;
	r->start_bucket = bucket;
	r->start_sum = pmd->start_sum;
	r->start_count = pmd->start_count;
}

/* The worker runs from now on; it reports its start itself. */
void
worker_forked(struct worker *w)
{
	w->state = W_RUNNING;
	pmd->spawned++;
	start_observe(now_mono() - w->requested);
	if (w->ev == NULL && (w->ev = event_new(pmd->base, w->pidfd, EV_READ,
	    worker_reap_cb, w)) == NULL)
		fatal("%s: event_new", __func__);
	event_add(w->ev, NULL);
	if (pmd->prestart_fails > 0) {	/* cloning works again */
		pmd->prestart_fails = 0;
		prestart_later();
	}
	if (w->owner == NULL && w->daemonic)
		worker_end(w);	/* its client left while it was forked */
	log_debug("worker %llu: pid %d", (unsigned long long)w->wid,
	    (int)w->pid);
}

static void
forker_forked(struct pm_frame *f)
{
	Pm__Forked *r;
	struct worker *w;

	if ((r = pm__forked__unpack(NULL, f->len, f->data)) == NULL) {
		log_err("%s: malformed reply from the forker", __func__);
		return;
	}
	if ((w = worker_find(r->wid)) == NULL || w->state != W_FORKING) {
		/* each clone is told of twice (forker.c): the second report
		 * finds it known, or gone */
		if (r->sys_errno != 0 || r->wid > pmd->next_wid)
			log_err("%s: reply for unknown worker %llu", __func__,
			    (unsigned long long)r->wid);
		pm__forked__free_unpacked(r, NULL);
		return;
	}
	if (r->sys_errno != 0 || f->nfds != 1) {
		errno = r->sys_errno;
		spawn_fail(w, r->sys_errno == EAGAIN ? PM__CODE__C_LIMIT :
		    PM__CODE__C_SYS, r->sys_errno == EAGAIN ?
		    "cannot fork: process limit reached" : "cannot fork");
		pm__forked__free_unpacked(r, NULL);
		return;
	}
	w->pid = r->pid;
	worker_hash_pid(w);
	w->pidfd = wire_frame_take(f, 0);
	pm__forked__free_unpacked(r, NULL);
	clock_gettime(CLOCK_MONOTONIC, &w->started);
	if (w->prestart)
		prestart_forked(w);
	else
		worker_forked(w);
	workers_reap_orphans();
}

static void
forker_read_cb(evutil_socket_t fd, short ev, void *arg)
{
	struct pm_frame f;
	const char *why;
	ssize_t n;
	int r;

	n = wire_in_read(&pmd->forker_in, pmd->forker_fd);
	if (n == -1 && errno == EAGAIN)
		return;
	if (n <= 0) {
		/* EOF: it is dying.  An error (fds cut off in transit when we
		 * are out of them) loses a reply: start afresh. */
		if (n == -1) {
			log_warn("%s: %s; restarting the forker", __func__,
			    strerror(errno));
			pidfd_send_signal(pmd->forker_pidfd, SIGKILL, NULL, 0);
		}
		event_del(pmd->forker_rev);	/* death follows on the pidfd */
		return;
	}
	while ((r = wire_in_next(&pmd->forker_in, &f, &why)) == 1) {
		if (f.type == PM__TYPE__T_FORKED)
			forker_forked(&f);
		wire_frame_close(&f);
	}
	if (r == -1) {
		log_err("%s: %s; restarting the forker", __func__, why);
		pidfd_send_signal(pmd->forker_pidfd, SIGKILL, NULL, 0);
		event_del(pmd->forker_rev);
	}
}

/* ---- spawning ---- */

/*
 * Tasks done by a pool worker: the worker keeps a uint64 count at offset 0
 * of a memfd made here (one page, shared through the fork), and ps reads
 * it with one pread.  No frames, no broker work on the task path.
 */
static int
pool_stats_fd(void)
{
	int fd;

	if ((fd = memfd_create("pm-pool-stats", MFD_CLOEXEC)) == -1)
		return -1;
	if (ftruncate(fd, sizeof(uint64_t)) == -1) {
		close(fd);
		return -1;
	}
	return fd;
}

static uint64_t
pool_stats_read(const struct worker *w)
{
	uint64_t v = 0;

	if (w->stats_fd < 0 || pread(w->stats_fd, &v, sizeof(v), 0) !=
	    (ssize_t)sizeof(v))
		return 0;
	return v;
}

/*
 * Orphans: as PID 1 in a container, or as a subreaper, pmd inherits every
 * process whose parent dies (a worker's children), and must reap them.
 * Workers are our children too, and their exit statuses are theirs, read
 * through their pidfds: a zombie is reaped here only when it is neither
 * the forker nor a worker we know of, and no worker is still to be
 * announced (one dead at once could be it).  A wait sees one zombie at a
 * time, so when it is someone else's this looks again later: on the next
 * SIGCHLD, and after each worker reaped or announced.
 */
void
workers_reap_orphans(void)
{
	struct worker *w;
	siginfo_t si;

	if (!pmd->reaper)
		return;
	for (;;) {
		memset(&si, 0, sizeof(si));
		if (waitid(P_ALL, 0, &si, WEXITED | WNOHANG | WNOWAIT) == -1 ||
		    si.si_pid == 0 || si.si_pid == pmd->forker_pid)
			return;
		TAILQ_FOREACH(w, &pmd->workers, entry)
			if (w->pid == si.si_pid || w->state == W_FORKING)
				return;
		if (waitid(P_PID, (id_t)si.si_pid, &si, WEXITED | WNOHANG) ==
		    0)
			log_debug("reaped orphan pid %d", (int)si.si_pid);
	}
}

int
workers_count_uid(uid_t uid)
{
	struct worker *w;
	int n = 0;

	TAILQ_FOREACH(w, &pmd->workers, entry)
		if (w->uid == uid)
			n++;
	return n;
}

/* 0 when the spec is sound; else an error reply was sent. */
static int
spawn_check(struct session *s, uint32_t id, const Pm__Spawn *sp, int nfds)
{
	size_t i, j;

	if (sp->kind == PM__KIND__K_FUNCTION) {
		if (sp->module == NULL || *sp->module == '\0' ||
		    sp->function == NULL || *sp->function == '\0') {
			session_error(s, id, PM__CODE__C_INVAL,
			    "a function target needs a module and a function");
			return -1;
		}
	} else if (sp->kind == PM__KIND__K_POOL) {
		if (sp->module == NULL || *sp->module == '\0') {
			session_error(s, id, PM__CODE__C_INVAL,
			    "a pool worker needs a module");
			return -1;
		}
	} else if (sp->kind == PM__KIND__K_EXEC) {
		if (sp->path == NULL || *sp->path == '\0' || sp->n_argv == 0) {
			session_error(s, id, PM__CODE__C_INVAL,
			    "an exec target needs a path and argv[0]");
			return -1;
		}
	} else {
		session_error(s, id, PM__CODE__C_INVAL, "unknown target kind %d",
		    sp->kind);
		return -1;
	}
	if (sp->n_argv + sp->n_envp > PMD_MAX_ARGS ||
	    strlen(sp->name ? sp->name : "") > PMD_MAX_NAME) {
		session_error(s, id, PM__CODE__C_LIMIT,
		    "too many arguments or too long a name");
		return -1;
	}
	if (pmc_check_caps(sp->memory_max, sp->cpu_max) != PM_OK) {
		session_error(s, id, PM__CODE__C_INVAL, "%s",
		    pm_last_message());
		return -1;
	}
	if (sp->n_child_fds != (size_t)nfds) {
		session_error(s, id, PM__CODE__C_INVAL,
		    "%zu fd numbers for %d fds", sp->n_child_fds, nfds);
		return -1;
	}
	for (i = 0; i < sp->n_child_fds; i++) {
		if (sp->child_fds[i] < 0 || sp->child_fds[i] > 1023) {
			session_error(s, id, PM__CODE__C_INVAL,
			    "child fd %d out of range", sp->child_fds[i]);
			return -1;
		}
		for (j = 0; j < i; j++)
			if (sp->child_fds[j] == sp->child_fds[i]) {
				session_error(s, id, PM__CODE__C_INVAL,
				    "child fd %d given twice",
				    sp->child_fds[i]);
				return -1;
			}
	}
	return 0;
}

/* The spawn_rate window of uid: its slot, else a free or the oldest one. */
static struct rate *
rate_of(uid_t uid, double now)
{
	struct rate *r, *pick = NULL;
	size_t i;

	for (i = 0; i < PMD_RATE_UIDS; i++) {
		r = &pmd->rates[i];
		if (r->stamp > 0 && r->uid == uid)
			return r;
		if (pick == NULL || r->stamp < pick->stamp)
			pick = r;
	}
	pick->uid = uid;
	pick->stamp = now;
	pick->count = 0;
	return pick;
}

/* Who may have workers, and the worker bounds, spawned and adopted
 * alike; else an error reply. */
int
workers_room(struct session *s, uint32_t id)
{
	if (pmd->euid != 0 && s->uid != pmd->euid) {
		/* it cannot switch uids: never run code as more than the
		 * client */
		session_error(s, id, PM__CODE__C_PERM, "pmd runs as uid %u and "
		    "starts workers for that uid only (allow_uids lets uid %u "
		    "use its queues, not run code as uid %u)",
		    (unsigned)pmd->euid, (unsigned)s->uid,
		    (unsigned)pmd->euid);
		return 0;
	}
	if (pmd->nworkers + pmd->nadopted >= pmd->cfg.max_workers) {
		session_error(s, id, PM__CODE__C_LIMIT,
		    "pmd runs its maximum of %d workers", pmd->cfg.max_workers);
		return 0;
	}
	if (workers_count_uid(s->uid) >= pmd->cfg.max_workers_per_uid) {
		session_error(s, id, PM__CODE__C_LIMIT,
		    "uid %u runs its maximum of %d workers", s->uid,
		    pmd->cfg.max_workers_per_uid);
		return 0;
	}
	return 1;
}

static int
spawn_allowed(struct session *s, uint32_t id)
{
	struct rate *rt;
	double now;

	if (pmd->stopping) {
		session_error(s, id, PM__CODE__C_STATE, "pmd is stopping");
		return 0;
	}
	if (pmd->forker_fd < 0) {
		session_error(s, id, PM__CODE__C_SYS, "no forker running");
		return 0;
	}
	if (!workers_room(s, id))
		return 0;
	if (pmd->cfg.spawn_rate > 0) {
		now = now_mono();
		rt = rate_of(s->uid, now);
		if (now - rt->stamp >= 1.0) {
			rt->stamp = now;
			rt->count = 0;
		}
		if (rt->count >= pmd->cfg.spawn_rate) {
			session_error(s, id, PM__CODE__C_LIMIT,
			    "uid %u spawns above its rate of %d per second",
			    s->uid, pmd->cfg.spawn_rate);
			return 0;
		}
		rt->count++;
	}
	return 1;
}

static char *
spawn_target(const Pm__Spawn *sp)
{
	char *t;

	if (sp->kind == PM__KIND__K_EXEC)
		return strdup(sp->path);
	if (sp->kind == PM__KIND__K_POOL && (sp->function == NULL ||
	    *sp->function == '\0'))
		return strdup(sp->module);
	if (asprintf(&t, "%s:%s", sp->module, sp->function) == -1)
		return NULL;
	return t;
}

/* The request the worker reads, whole, in a sealed memfd: it never goes
 * through the forker (see forker.c).  Bounded by max_frame like any
 * request.  -1 when it cannot be made, with the client told. */
static int
spawn_spec(struct session *s, uint32_t id, const Pm__Fork *fk)
{
	size_t len = pm__fork__get_packed_size(fk);
	uint8_t *buf;
	int fd;

	if (len > pmd->cfg.max_frame) {
		session_error(s, id, PM__CODE__C_LIMIT, "the spawn request is "
		    "%zu bytes with the client's credentials, over max_frame "
		    "(%u)", len, pmd->cfg.max_frame);
		return -1;
	}
	if ((buf = malloc(len ? len : 1)) == NULL) {
		session_error(s, id, PM__CODE__C_NOMEM, "out of memory");
		return -1;
	}
	pm__fork__pack(fk, buf);
	if ((fd = wire_memfd(buf, len)) == -1)
		session_error(s, id, PM__CODE__C_SYS, "cannot pass the request "
		    "to the worker: %s", strerror(errno));
	free(buf);
	return fd;
}

/* The entry of a spawn: a pre-started worker claimed (idle, or NULL for
 * one to be forked); NULL when out of memory, with the client told and
 * idle discarded. */
static struct worker *
worker_new(struct session *s, uint32_t id, const Pm__Spawn *sp,
    struct worker *idle)
{
	struct worker *w = idle;
	char *name, *target = NULL;

	if ((name = strdup(sp->name ? sp->name : "")) == NULL ||
	    (target = spawn_target(sp)) == NULL ||
	    (w == NULL && (w = calloc(1, sizeof(*w))) == NULL)) {
		free(name);
		free(target);
		if (idle != NULL)
			worker_discard(idle);
		session_error(s, id, PM__CODE__C_NOMEM, "out of memory");
		return NULL;
	}
	w->name = name;
	w->target = target;
	if (idle == NULL) {
		w->wid = ++pmd->next_wid;
		w->state = W_FORKING;
		w->pidfd = w->stats_fd = w->client_channel = w->idle_fd = -1;
	}
	w->owner = s;
	w->owner_pid = s->pid;
	w->spawn_id = id;
	w->uid = s->uid;
	w->kind = sp->kind;
	w->method = sp->start_method == PM__START_METHOD__S_SPAWN ?
	    PM__START_METHOD__S_SPAWN : PM__START_METHOD__S_FORKSERVER;
	w->daemonic = sp->daemonic;
	w->forker_gen = pmd->forker_gen;
	w->requested = now_mono();
	return w;
}

/* A spawn's entry that will not run: a claimed worker is ended. */
static void
spawn_drop(struct worker *w)
{
	if (w->pidfd >= 0)
		worker_discard(w);
	else
		worker_free(w);
}

/*
 * A spawn: the worker entry, the channel, the request in a memfd (spec
 * and credentials), and a Fork frame with the worker's id and the fds
 * [channel, the client's fds..., pool stats, request]: handed to a
 * pre-started worker when one is idle, else to the forker.
 */
void
handle_spawn(struct session *s, struct pm_frame *f)
{
	Pm__Fork fk = PM__FORK__INIT, fwd = PM__FORK__INIT;
	Pm__Spawn *sp;
	struct worker *w, *idle;
	int fds[PM_WIRE_MAX_FDS], ch[2] = { -1, -1 }, n = 0, i, spec = -1;
	int pool, room, sfd = -1, ncg;
	char *cgs[2] = { NULL, NULL }, why[PMD_MAX_PATH + 256];

	if ((sp = pm__spawn__unpack(NULL, f->len, f->data)) == NULL) {
		session_error(s, f->id, PM__CODE__C_PROTO, "malformed spawn");
		return;
	}
	if (spawn_check(s, f->id, sp, f->nfds) == -1 ||
	    !spawn_allowed(s, f->id))
		goto done;
	pool = sp->kind == PM__KIND__K_POOL;
	room = PM_WIRE_MAX_FDS - 2 - pool;
	if (f->nfds > room) {
		session_error(s, f->id, PM__CODE__C_LIMIT, "too many fds: a %s "
		    "takes at most %d", pool ? "pool worker" : "process", room);
		goto done;
	}
	idle = prestart_take();
	if ((w = worker_new(s, f->id, sp, idle)) == NULL)
		goto done;
	fk.wid = w->wid;
	fk.spec = sp;
	fk.uid = s->uid;
	fk.gid = s->gid;
	fk.set_creds = pmd->euid == 0;
	fk.owner_pid = s->pid;
	fk.n_groups = (size_t)s->ngroups;
	fk.groups = s->groups;
	fk.has_channel = 1;
	fk.has_stats = pool;
	w->memory_max = sp->memory_max;
	w->cpu_max = sp->cpu_max;
	if ((ncg = cgroup_create(w, cgs, why, sizeof(why))) == -1) {
		session_error(s, f->id, PM__CODE__C_SYS, "%s", why);
		pmd->spawn_failed++;
		spawn_drop(w);
		goto done;
	}
	fk.n_cgroups = (size_t)ncg;
	fk.cgroups = cgs;
	if ((spec = spawn_spec(s, f->id, &fk)) == -1) {
		spawn_drop(w);
		goto done;
	}
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, ch) == -1 ||
	    (pool && ((w->stats_fd = pool_stats_fd()) == -1 ||
	    (sfd = fcntl(w->stats_fd, F_DUPFD_CLOEXEC, 3)) == -1))) {
		session_error(s, f->id, PM__CODE__C_SYS, "cannot set up the "
		    "worker: %s", strerror(errno));
		if (ch[0] >= 0) {
			close(ch[0]);
			close(ch[1]);
		}
		spawn_drop(w);
		goto done;
	}
	w->client_channel = ch[0];
	w->pool = sp->pool;
	if (idle == NULL)
		worker_link(w);
	pmd->nworkers++;

	fds[n++] = ch[1];
	for (i = 0; i < f->nfds; i++)
		fds[n++] = wire_frame_take(f, i);
	if (pool)
		fds[n++] = sfd;
	fds[n++] = spec;
	spec = -1;			/* the frame's now */
	fwd.wid = w->wid;
	if (idle != NULL) {
		if (prestart_hand(w, &fwd, fds, n) == -1) {
			spawn_fail(w, PM__CODE__C_SYS, "cannot hand the "
			    "request to a pre-started worker");
			goto done;
		}
		worker_forked(w);
	} else {
		if (wire_out_frame(&pmd->forker_out, PM__TYPE__T_FORK, 0,
		    &fwd.base, fds, n) == -1) {
			spawn_fail(w, PM__CODE__C_SYS,
			    "cannot queue the fork request");
			goto done;
		}
		forker_flush();
	}
	spawn_reply(w);
done:
	if (spec >= 0)
		close(spec);
	for (i = 0; i < 2; i++)
		free(cgs[i]);
	pm__spawn__free_unpacked(sp, NULL);
}

/* ---- reaping and ending ---- */

/* waitid with the child's rusage: glibc's wrapper drops the kernel's
 * fifth argument. */
static int
worker_waitid(struct worker *w, siginfo_t *si, struct rusage *ru)
{
	return (int)syscall(SYS_waitid, P_PIDFD, w->pidfd, si,
	    WEXITED | WNOHANG, ru);
}

void
worker_free(struct worker *w)
{
	prestart_forget(w);
	if (w->state == W_CLAIMED)
		pmd->nclaimed--;
	if (w->idle_ev != NULL)
		event_free(w->idle_ev);
	if (w->idle_fd >= 0)
		close(w->idle_fd);
	if (w->ev != NULL)
		event_free(w->ev);
	if (w->kill_ev != NULL)
		event_free(w->kill_ev);
	if (w->pidfd >= 0)
		close(w->pidfd);
	if (w->stats_fd >= 0) {
		pmd->pool_tasks += pool_stats_read(w);	/* counted as done */
		close(w->stats_fd);
	}
	if (w->client_channel >= 0)
		close(w->client_channel);
	cgroup_remove(w);
	free(w->name);
	free(w->target);
	free(w);
}

/* A worker that will not run (never started, or an idle one): killed,
 * reaped and forgotten at once.  It runs no code of anyone's. */
void
worker_discard(struct worker *w)
{
	siginfo_t si;

	if (w->pidfd >= 0 && pidfd_send_signal(w->pidfd, SIGKILL, NULL,
	    0) == 0)
		while (waitid(P_PIDFD, (id_t)w->pidfd, &si, WEXITED) == -1 &&
		    errno == EINTR)
			;
	worker_unlink(w);
	worker_free(w);
}

void
worker_reap_cb(evutil_socket_t fd, short ev, void *arg)
{
	Pm__Exited ex = PM__EXITED__INIT;
	struct worker *w = arg;
	struct rusage ru;
	siginfo_t si;
	int code;

	memset(&si, 0, sizeof(si));
	memset(&ru, 0, sizeof(ru));
	if (worker_waitid(w, &si, &ru) == -1) {
		log_warn("%s: waitid %d: %s", __func__, (int)w->pid,
		    strerror(errno));
	} else if (si.si_pid == 0) {
		event_add(w->ev, NULL);		/* not yet */
		return;
	}
	code = si.si_code == CLD_EXITED ? si.si_status : -si.si_status;
	if (w->prestart) {
		log_warn("pre-started worker (pid %d) ended while idle: %d",
		    (int)w->pid, code);
		prestart_failed(w);
		workers_reap_orphans();
		return;
	}
	pmd->reaped++;
	if (code == -SIGKILL && cgroup_oom_killed(w)) {
		ex.oom_killed = 1;
		ex.memory_max = w->memory_max;
		pmd->oom_killed++;
		log_warn("worker %llu (pid %d, %s, uid %u) killed by the OOM "
		    "killer under its memory_max of %llu bytes",
		    (unsigned long long)w->wid, (int)w->pid, w->target,
		    (unsigned)w->uid, (unsigned long long)w->memory_max);
	}
	log_debug("worker %llu (pid %d) ended: %d", (unsigned long long)w->wid,
	    (int)w->pid, code);
	if (w->state == W_RUNNING && w->owner != NULL) {
		ex.wid = w->wid;
		ex.pid = w->pid;
		ex.exitcode = code;
		ex.user_s = (double)ru.ru_utime.tv_sec +
		    ru.ru_utime.tv_usec / 1e6;
		ex.sys_s = (double)ru.ru_stime.tv_sec +
		    ru.ru_stime.tv_usec / 1e6;
		ex.maxrss_kb = (uint64_t)ru.ru_maxrss;
		session_send(w->owner, PM__TYPE__T_EXITED, 0, &ex.base, NULL, 0);
	}
	worker_unlink(w);
	pmd->nworkers--;
	worker_free(w);
	workers_reap_orphans();
	broker_check_idle();
}

static void
worker_kill_cb(evutil_socket_t fd, short ev, void *arg)
{
	struct worker *w = arg;

	if (w->pidfd >= 0)
		pidfd_send_signal(w->pidfd, SIGKILL, NULL, 0);
}

/* SIGTERM now, SIGKILL after the grace period. */
static void
worker_end(struct worker *w)
{
	struct timeval tv;

	if (w->pidfd < 0 || w->kill_ev != NULL)
		return;
	pidfd_send_signal(w->pidfd, SIGTERM, NULL, 0);
	if ((w->kill_ev = evtimer_new(pmd->base, worker_kill_cb, w)) == NULL)
		return;
	tv.tv_sec = (time_t)pmd->cfg.kill_grace;
	tv.tv_usec = (suseconds_t)((pmd->cfg.kill_grace - (double)tv.tv_sec) *
	    1e6);
	evtimer_add(w->kill_ev, &tv);
}

void
workers_owner_gone(struct session *s)
{
	struct worker *w, *next;

	for (w = TAILQ_FIRST(&pmd->workers); w != NULL; w = next) {
		next = TAILQ_NEXT(w, entry);
		if (w->owner != s)
			continue;
		if (w->state == W_CLAIMED) {
			prestart_owner_gone(w);	/* may free it */
			continue;
		}
		w->owner = NULL;
		if (w->client_channel >= 0) {
			close(w->client_channel);
			w->client_channel = -1;
		}
		if (w->daemonic && w->state == W_RUNNING)
			worker_end(w);
	}
}

void
workers_terminate_all(int sig)
{
	struct worker *w;

	TAILQ_FOREACH(w, &pmd->workers, entry)
		if (w->pidfd >= 0 && !w->adopted)
			pidfd_send_signal(w->pidfd, sig, NULL, 0);
}

/* ---- signal and ps ---- */

void
handle_signal(struct session *s, struct pm_frame *f)
{
	struct worker *found;
	Pm__Signal *r;

	if ((r = pm__signal__unpack(NULL, f->len, f->data)) == NULL) {
		session_error(s, f->id, PM__CODE__C_PROTO, "malformed signal");
		return;
	}
	if (r->signo < 0 || r->signo >= NSIG) {
		session_error(s, f->id, PM__CODE__C_INVAL, "bad signal %d",
		    r->signo);
		goto done;
	}
	found = r->wid != 0 ? worker_find(r->wid) : worker_by_pid(r->pid);
	if (found == NULL || found->pidfd < 0) {
		session_error(s, f->id, PM__CODE__C_NOENT,
		    "no worker with pid %d", r->pid);
		goto done;
	}
	if (found->uid != s->uid && !session_is_admin(s)) {
		session_error(s, f->id, PM__CODE__C_PERM,
		    "worker %d belongs to another user", (int)found->pid);
		goto done;
	}
	if (pidfd_send_signal(found->pidfd, r->signo, NULL, 0) == -1 &&
	    errno != ESRCH) {
		session_error(s, f->id, PM__CODE__C_SYS, "signal: %s",
		    strerror(errno));
		goto done;
	}
	session_send(s, PM__TYPE__T_OK, f->id, NULL, NULL, 0);
done:
	pm__signal__free_unpacked(r, NULL);
}

/* A worker's RSS (kB) and CPU seconds so far, from /proc; 0 unknown. */
static void
worker_usage(pid_t pid, uint64_t *rss_kb, double *cpu_s)
{
	unsigned long long size, rss, ut, st;
	char path[64], buf[1024], *p;
	long tck = sysconf(_SC_CLK_TCK);
	FILE *fp;

	*rss_kb = 0;
	*cpu_s = 0;
	snprintf(path, sizeof(path), "/proc/%d/statm", (int)pid);
	if ((fp = fopen(path, "re")) != NULL) {
		if (fscanf(fp, "%llu %llu", &size, &rss) == 2)
			*rss_kb = rss * (uint64_t)sysconf(_SC_PAGESIZE) / 1024;
		fclose(fp);
	}
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	if ((fp = fopen(path, "re")) == NULL)
		return;
	/* after the name's last ')': fields 3 on; utime, stime are 14, 15 */
	if (fgets(buf, sizeof(buf), fp) != NULL &&
	    (p = strrchr(buf, ')')) != NULL &&
	    sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u "
	    "%llu %llu", &ut, &st) == 2 && tck > 0)
		*cpu_s = (double)(ut + st) / (double)tck;
	fclose(fp);
}

void
handle_ps(struct session *s, struct pm_frame *f)
{
	Pm__PsReply r = PM__PS_REPLY__INIT;
	Pm__WorkerInfo *info = NULL, **ptrs = NULL;
	struct timespec now;
	struct worker *w;
	Pm__Ps *q;
	size_t n = 0;
	int all;

	if ((q = pm__ps__unpack(NULL, f->len, f->data)) == NULL) {
		session_error(s, f->id, PM__CODE__C_PROTO, "malformed ps");
		return;
	}
	all = q->all && session_is_admin(s);
	pm__ps__free_unpacked(q, NULL);
	n = (size_t)(pmd->nworkers + pmd->nadopted);
	if (n > 0 && ((info = calloc(n, sizeof(*info))) == NULL ||
	    (ptrs = calloc(n, sizeof(*ptrs))) == NULL)) {
		free(info);
		session_error(s, f->id, PM__CODE__C_NOMEM, "out of memory");
		return;
	}
	clock_gettime(CLOCK_MONOTONIC, &now);
	n = 0;
	TAILQ_FOREACH(w, &pmd->workers, entry) {
		if (w->state != W_RUNNING || (!all && w->uid != s->uid))
			continue;
		pm__worker_info__init(&info[n]);
		info[n].wid = w->wid;
		info[n].pid = w->pid;
		info[n].uid = w->uid;
		info[n].name = w->name;
		info[n].kind = w->kind;
		info[n].target = w->target;
		info[n].daemonic = w->daemonic;
		info[n].owner_pid = w->owner ? w->owner_pid : 0;
		info[n].age = (double)(now.tv_sec - w->started.tv_sec) +
		    (now.tv_nsec - w->started.tv_nsec) / 1e9;
		info[n].pool = w->pool;
		info[n].tasks = pool_stats_read(w);
		info[n].memory_max = w->memory_max;
		info[n].cpu_max = w->cpu_max;
		worker_usage(w->pid, &info[n].rss_kb, &info[n].cpu_s);
		info[n].start_method = w->method;
		ptrs[n] = &info[n];
		n++;
	}
	r.n_workers = n;
	r.workers = ptrs;
	session_send(s, PM__TYPE__T_PS_REPLY, f->id, &r.base, NULL, 0);
	free(info);
	free(ptrs);
}

/* ---- adopted workers: forked by their client (start method fork) ---- */

/* The pid a pidfd stands for (/proc/self/fdinfo); <= 0 once reaped. */
static pid_t
pidfd_pid(int pidfd)
{
	char path[64], line[128];
	long pid = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", pidfd);
	if ((f = fopen(path, "re")) == NULL)
		return -1;
	while (fgets(line, sizeof(line), f) != NULL)
		if (sscanf(line, "Pid: %ld", &pid) == 1)
			break;
	fclose(f);
	return (pid_t)pid;
}

/*
 * 0 when pid is a child of the session's process with its uid (real,
 * effective, saved and fs); else an error reply was sent.  From
 * /proc/pid/status, which a zombie keeps until it is reaped.
 */
static int
adopt_check_proc(struct session *s, uint32_t id, pid_t pid)
{
	char path[64], line[256];
	long ppid = -1, u[4] = { -1, -1, -1, -1 };
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	if ((f = fopen(path, "re")) == NULL) {
		session_error(s, id, PM__CODE__C_NOENT, "no process %d",
		    (int)pid);
		return -1;
	}
	while (fgets(line, sizeof(line), f) != NULL) {
		if (sscanf(line, "PPid: %ld", &ppid) == 1)
			continue;
		if (sscanf(line, "Uid: %ld %ld %ld %ld", &u[0], &u[1], &u[2],
		    &u[3]) == 4)
			break;
	}
	fclose(f);
	if (ppid != (long)s->pid) {
		session_error(s, id, PM__CODE__C_PERM, "process %d is not a "
		    "child of pid %d", (int)pid, (int)s->pid);
		return -1;
	}
	if (u[0] != (long)s->uid || u[1] != (long)s->uid ||
	    u[2] != (long)s->uid || u[3] != (long)s->uid) {
		session_error(s, id, PM__CODE__C_PERM, "process %d does not "
		    "run as uid %u", (int)pid, s->uid);
		return -1;
	}
	return 0;
}

/* The process's pidfd, checked to be the pid named; -1 with a reply. */
static int
adopt_pidfd(struct session *s, struct pm_frame *f, const Pm__Adopt *a)
{
	int pidfd;

	if (a->pid <= 0) {
		session_error(s, f->id, PM__CODE__C_INVAL, "bad pid %d",
		    a->pid);
		return -1;
	}
	if (!a->has_pidfd) {
		if ((pidfd = pidfd_open(a->pid, 0)) == -1)
			session_error(s, f->id, errno == ESRCH ?
			    PM__CODE__C_NOENT : PM__CODE__C_SYS,
			    "pidfd_open %d: %s", a->pid, strerror(errno));
		return pidfd;
	}
	pidfd = wire_frame_take(f, 0);
	if (pidfd_pid(pidfd) != a->pid) {
		session_error(s, f->id, PM__CODE__C_INVAL, "the fd given is "
		    "not a pidfd of process %d", a->pid);
		close(pidfd);
		return -1;
	}
	return pidfd;
}

static void
adopted_end_cb(evutil_socket_t fd, short ev, void *arg)
{
	struct worker *w = arg;

	/* ended: its client reaps it and knows its status */
	log_debug("worker %llu (pid %d, adopted) ended",
	    (unsigned long long)w->wid, (int)w->pid);
	worker_unlink(w);
	pmd->nadopted--;
	worker_free(w);
}

static struct worker *
adopt_new(struct session *s, const Pm__Adopt *a, int pidfd, int stats_fd)
{
	struct worker *w;

	if ((w = calloc(1, sizeof(*w))) == NULL)
		return NULL;
	w->pidfd = pidfd;
	w->stats_fd = stats_fd;
	w->client_channel = w->idle_fd = -1;
	if ((w->name = strndup(a->name ? a->name : "", PMD_MAX_NAME)) ==
	    NULL || (w->target = strndup(a->target ? a->target : "",
	    PMD_MAX_NAME)) == NULL || (w->ev = event_new(pmd->base, pidfd,
	    EV_READ, adopted_end_cb, w)) == NULL) {
		w->pidfd = w->stats_fd = -1;	/* the caller's still */
		worker_free(w);
		return NULL;
	}
	w->wid = ++pmd->next_wid;
	w->state = W_RUNNING;
	w->pid = a->pid;
	w->owner = s;
	w->owner_pid = s->pid;
	w->uid = s->uid;
	w->kind = a->pool != 0 ? PM__KIND__K_POOL : PM__KIND__K_FORK;
	w->method = PM__START_METHOD__S_FORK;
	w->daemonic = a->daemonic;
	w->pool = a->pool;
	w->adopted = 1;
	clock_gettime(CLOCK_MONOTONIC, &w->started);
	return w;
}

void
handle_adopt(struct session *s, struct pm_frame *f)
{
	Pm__AdoptReply r = PM__ADOPT_REPLY__INIT;
	struct worker *w;
	Pm__Adopt *a;
	int pidfd = -1, stats_fd = -1, nfds;

	if ((a = pm__adopt__unpack(NULL, f->len, f->data)) == NULL) {
		session_error(s, f->id, PM__CODE__C_PROTO, "malformed adopt");
		return;
	}
	nfds = (a->has_pidfd ? 1 : 0) + (a->has_stats ? 1 : 0);
	if (f->nfds != nfds) {
		session_error(s, f->id, PM__CODE__C_INVAL, "adopt: %d fds "
		    "for %d", f->nfds, nfds);
		goto done;
	}
	if (pmd->stopping) {
		session_error(s, f->id, PM__CODE__C_STATE, "pmd is stopping");
		goto done;
	}
	if (!workers_room(s, f->id) || (pidfd = adopt_pidfd(s, f, a)) == -1)
		goto done;
	if (adopt_check_proc(s, f->id, a->pid) == -1)
		goto done;
	/* still unreaped now, so the /proc we read was this process's */
	if (pidfd_send_signal(pidfd, 0, NULL, 0) == -1) {
		session_error(s, f->id, PM__CODE__C_NOENT, "process %d has "
		    "been reaped", a->pid);
		goto done;
	}
	if (a->has_stats)
		stats_fd = wire_frame_take(f, a->has_pidfd ? 1 : 0);
	if ((w = adopt_new(s, a, pidfd, stats_fd)) == NULL) {
		session_error(s, f->id, PM__CODE__C_NOMEM, "out of memory");
		goto done;
	}
	pidfd = stats_fd = -1;
	worker_link(w);
	pmd->nadopted++;
	event_add(w->ev, NULL);
	r.wid = w->wid;
	session_send(s, PM__TYPE__T_ADOPT_REPLY, f->id, &r.base, NULL, 0);
done:
	if (pidfd >= 0)
		close(pidfd);
	if (stats_fd >= 0)
		close(stats_fd);
	pm__adopt__free_unpacked(a, NULL);
}
