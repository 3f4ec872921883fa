/*
 * fork.c - the fork start method's common part: forking the caller
 * (pmc_fork), the forked worker's sentinel, signals and exit status
 * (struct pmc_child), workers whose handle was freed while they ran
 * (reaped later), and telling pmd about a worker this process forked
 * (Adopt).
 */
#include <sys/types.h>
#include <sys/pidfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pmclient_int.h"

/* Children whose handle was freed before they ended: reaped by later
 * forks, so none stays a zombie for long. */
static pthread_mutex_t orphans_lock = PTHREAD_MUTEX_INITIALIZER;
static pid_t *orphans;
static size_t norphans, orphans_cap;

static int
pidfd_supported(void)
{
	static int works = -1;
	int fd;

	if (works == -1) {
		/* valgrind 3.19 does not know pidfd_open: ENOSYS */
		fd = pidfd_open(getpid(), 0);
		works = fd >= 0 || errno != ENOSYS;
		if (fd >= 0)
			close(fd);
	}
	return works;
}

static void
orphans_reap(void)
{
	siginfo_t si;
	size_t i;
	int r;

	for (i = 0; i < norphans;) {
		memset(&si, 0, sizeof(si));
		r = waitid(P_PID, (id_t)orphans[i], &si, WEXITED | WNOHANG);
		if (r == 0 && si.si_pid == 0) {
			i++;
			continue;
		}
		if (r == -1 && errno == EINTR)
			continue;
		orphans[i] = orphans[--norphans];	/* reaped, or not ours */
	}
}

/*
 * fork(2) of the caller.  The child gets 0 and the parent's connections
 * turned into husks (pmc_conns_forked): it must not speak on them.  The
 * parent gets the pid, *sentinel (a pidfd: readable once the child has
 * ended; without pidfds, the read end of a pipe whose write end only the
 * child holds) and ch set up.  Stdio is flushed first, so nothing the
 * parent buffered is written twice.  -1 with the error set.
 */
pid_t
pmc_fork(struct pmc_child *ch, int *sentinel)
{
	int pp[2] = { -1, -1 }, err;
	pid_t pid;

	memset(ch, 0, sizeof(*ch));
	*sentinel = -1;
	ch->is_pidfd = pidfd_supported();
	if (!ch->is_pidfd && pipe2(pp, O_CLOEXEC) == -1) {
		pmc_err_sys("pipe");
		return -1;
	}
	fflush(NULL);
	pmc_conns_hold();
	pthread_mutex_lock(&orphans_lock);
	orphans_reap();
	pid = fork();
	err = errno;
	if (pid == 0) {
		norphans = 0;		/* the parent's children, not ours */
		pthread_mutex_unlock(&orphans_lock);
		pmc_conns_forked();
		pmc_conns_release();
		if (pp[0] >= 0)
			close(pp[0]);
		return 0;
	}
	pthread_mutex_unlock(&orphans_lock);
	pmc_conns_release();
	if (pp[1] >= 0)
		close(pp[1]);
	if (pid == -1) {
		if (pp[0] >= 0)
			close(pp[0]);
		errno = err;
		pmc_err(err == EAGAIN ? PM_ELIMIT : PM_ESYS, "cannot fork: %s",
		    strerror(err));
		return -1;
	}
	ch->pid = pid;
	ch->owner = getpid();
	if (!ch->is_pidfd) {
		*sentinel = pp[0];
		return pid;
	}
	if ((*sentinel = pidfd_open(pid, 0)) == -1) {
		err = errno;
		kill(pid, SIGKILL);
		pmc_child_reap(ch, 1);
		errno = err;
		pmc_err_sys("pidfd_open of a forked worker");
		return -1;
	}
	return pid;
}

/* 1 when it has ended (ch->code and ch->ru set), 0 while it runs;
 * block waits.  The raw waitid: glibc's drops the child's rusage. */
int
pmc_child_reap(struct pmc_child *ch, int block)
{
	struct rusage ru;
	siginfo_t si;
	int r;

	if (ch->reaped || ch->pid <= 0)
		return 1;
	if (ch->owner != getpid()) {	/* in a fork of ours: not our child */
		ch->reaped = ch->lost = 1;
		return 1;
	}
	for (;;) {
		memset(&si, 0, sizeof(si));
		memset(&ru, 0, sizeof(ru));
		r = (int)syscall(SYS_waitid, P_PID, (id_t)ch->pid, &si,
		    WEXITED | (block ? 0 : WNOHANG), &ru);
		if (r == -1 && errno == EINTR)
			continue;
		break;
	}
	if (r == 0 && si.si_pid == 0)
		return 0;
	ch->reaped = 1;
	if (r == -1) {
		/* SIGCHLD ignored, or reaped by the caller's own wait */
		ch->lost = 1;
		ch->code = 0;
		return 1;
	}
	ch->code = si.si_code == CLD_EXITED ? si.si_status : -si.si_status;
	ch->ru.user_s = (double)ru.ru_utime.tv_sec +
	    (double)ru.ru_utime.tv_usec / 1e6;
	ch->ru.sys_s = (double)ru.ru_stime.tv_sec +
	    (double)ru.ru_stime.tv_usec / 1e6;
	ch->ru.maxrss_kb = (uint64_t)ru.ru_maxrss;
	return 1;
}

/* kill(2) is safe here: until we reap it, its pid is not reused. */
int
pmc_child_signal(struct pmc_child *ch, int sig)
{
	if (ch->reaped || ch->pid <= 0 || ch->owner != getpid())
		return 0;
	if (kill(ch->pid, sig) == -1 && errno != ESRCH)
		return -1;
	return 0;
}

/* The handle goes while the child may run on: reap it later. */
void
pmc_child_orphan(struct pmc_child *ch)
{
	pid_t *n;
	size_t cap;

	if (ch->reaped || ch->pid <= 0 || pmc_child_reap(ch, 0) == 1)
		return;
	pthread_mutex_lock(&orphans_lock);
	if (norphans == orphans_cap) {
		cap = orphans_cap ? orphans_cap * 2 : 16;
		if ((n = realloc(orphans, cap * sizeof(*n))) == NULL) {
			pthread_mutex_unlock(&orphans_lock);
			return;		/* a zombie until we exit */
		}
		orphans = n;
		orphans_cap = cap;
	}
	orphans[norphans++] = ch->pid;
	pthread_mutex_unlock(&orphans_lock);
	ch->pid = 0;
}

/* In the forked worker: wait for the parent's go (pmd took it on).  -1
 * when the parent closed the channel instead. */
int
pmc_fork_gate(int channel)
{
	char b;
	ssize_t n;

	do {
		n = read(channel, &b, 1);
	} while (n == -1 && errno == EINTR);
	return n == 1 ? 0 : -1;
}

int
pmc_fork_go(int channel)
{
	ssize_t n;

	do {
		n = send(channel, "g", 1, MSG_NOSIGNAL);
	} while (n == -1 && errno == EINTR);
	return n == 1 ? 0 : -1;
}

/* In the forked worker: one frame to the parent on the channel. */
void
pmc_fork_report(int channel, uint32_t type, const ProtobufCMessage *m)
{
	struct wire_out out;

	wire_out_init(&out);
	if (wire_out_frame(&out, type, 0, m, NULL, 0) == 0)
		(void)wire_out_flush_wait(&out, channel, -1);
	wire_out_free(&out);
}

/* For ps: the function's symbol, else its address. */
void
pmc_fn_name(pm_task_fn *fn, char *buf, size_t len)
{
	Dl_info info;
	void *addr;

	memcpy(&addr, &fn, sizeof(addr));
	if (dladdr(addr, &info) != 0 && info.dli_sname != NULL &&
	    info.dli_saddr == addr)
		snprintf(buf, len, "%s", info.dli_sname);
	else
		snprintf(buf, len, "%p", addr);
}

/*
 * Tells pmd about a worker we forked: Adopt + [pidfd] (+ [stats]).  pmd
 * checks that it is our child and of our uid, lists it, signals it, ends
 * it with c when daemonic.  The pending reply is the caller's.
 */
struct pmc_pending *
pmc_adopt_send(pm_conn *c, const struct pmc_child *ch, int sentinel,
    const struct pmc_adopt *a)
{
	Pm__Adopt m = PM__ADOPT__INIT;
	int fds[2], n = 0;

	m.pid = ch->pid;
	m.name = (char *)(uintptr_t)(a->name ? a->name : "");
	m.target = (char *)(uintptr_t)(a->target ? a->target : "");
	m.daemonic = a->daemonic;
	m.pool = a->pool;
	if (ch->is_pidfd) {
		if ((fds[n] = fcntl(sentinel, F_DUPFD_CLOEXEC, 3)) == -1) {
			pmc_err_sys("dup pidfd");
			return NULL;
		}
		n++;
		m.has_pidfd = 1;
	}
	if (a->stats_fd >= 0) {
		if ((fds[n] = fcntl(a->stats_fd, F_DUPFD_CLOEXEC, 3)) == -1) {
			pmc_err_sys("dup stats fd");
			while (n > 0)
				close(fds[--n]);
			return NULL;
		}
		n++;
		m.has_stats = 1;
	}
	return pmc_send(c, PM__TYPE__T_ADOPT, &m.base, fds, n,
	    &pm__adopt_reply__descriptor);
}
