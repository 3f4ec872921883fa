/*
 * harness.h - helpers shared by the Check suites: a private pmd per test,
 * /proc inspection (fds, zombies, children), running pmctl and other
 * programs, deadlines, raw frame building for bad-input tests, forked
 * fake clients that free what they made, and the suites' runner.
 */
#ifndef PM_TEST_HARNESS_H
#define PM_TEST_HARNESS_H

#include <sys/types.h>

#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <unistd.h>
#include <check.h>
#include <protobuf-c/protobuf-c.h>

#include "pmclient.h"

#define TH_TIMEOUT	(-1000)		/* th_run/th_pmd_stop: gave up waiting */

struct th_pmd {
	pid_t	pid;			/* the broker; 0 when not running */
	char	dir[PATH_MAX];		/* private 0700 temp dir */
	char	sock[PATH_MAX];		/* dir/pmd.sock */
};

/* How th_pmd_start_opts starts pmd; zero for the defaults. */
struct th_pmd_opts {
	const char		*conf;	/* config file text (key = value) */
	const char *const	*args;	/* extra args, NULL-terminated */
	long			 nofile;/* > 0: RLIMIT_NOFILE soft = hard */
	void			(*prep)(void);	/* run in pmd's process just
						 * before the exec */
	int			 as;	/* run pmd as uid and gid (no groups)
					 * from a staged copy: root only */
	uid_t			 uid;
	gid_t			 gid;
	int			 shared;/* every uid may connect: socket_mode
					 * 0666 and the directory 0755 */
};

/* Start pmd on dir/pmd.sock with --ready-fd and wait (10 s) for READY:
 * o (NULL: the defaults) says how.  0 or -1 (nothing left). */
int	 th_pmd_start_opts(struct th_pmd *, const struct th_pmd_opts *o);
/* Start pmd on dir/pmd.sock with --ready-fd and wait (10 s) for READY.
 * extra_args: NULL-terminated, may be NULL.  0 or -1 (nothing left). */
int	 th_pmd_start(struct th_pmd *, const char *const extra_args[]);
/* The same with a config file holding conf (key = value lines). */
int	 th_pmd_start_conf(struct th_pmd *, const char *conf,
	    const char *const extra_args[]);
/* The same, pmd started with RLIMIT_NOFILE soft = hard = nofile (> 0). */
int	 th_pmd_start_nofile(struct th_pmd *, const char *const extra_args[],
	    long nofile);
/* The same, pmd run as uid and gid (no groups) from a staged copy; the
 * test must be root. */
int	 th_pmd_start_as(struct th_pmd *, const char *const extra_args[],
	    uid_t uid, gid_t gid);
/* The same, prep() (NULL: none) run in pmd's process just before the
 * exec: a prctl, a seccomp filter, rlimits of its own. */
int	 th_pmd_start_prep(struct th_pmd *, const char *const extra_args[],
	    long nofile, void (*prep)(void));
/* SIGTERM, wait (15 s, then SIGKILL), remove dir.  Returns pmd's exit
 * status (>= 0), -signo, or TH_TIMEOUT.  A stopped pmd is a no-op (0). */
int	 th_pmd_stop(struct th_pmd *);

/* A test's fixture: the fd counts its teardown holds it to. */
struct th_base {
	int	self;		/* the test's fds before it connected */
	int	pmd;		/* pmd's fds with no client */
};
/* Starts pmd as th_pmd_start_opts, notes the fd counts in *base and
 * connects: the connection.  Fails the test on an error. */
pm_conn	*th_pmd_open(struct th_pmd *, const struct th_pmd_opts *,
	    struct th_base *base);
/* Disconnects *c (NULL after), checks that the test has base->self fds
 * again, waits (10 s) for pmd to settle at base->pmd fds and no zombie,
 * and stops it: its exit status must be 0. */
void	 th_pmd_close(struct th_pmd *, pm_conn **c,
	    const struct th_base *base);
/* A copy of $PM_BUILD/tests/module in pmd's directory as name with mode
 * (0644: every uid may load it with a shared pmd); its path in path.
 * Fails the test on an error. */
void	 th_pmd_module(const struct th_pmd *, const char *module,
	    const char *name, mode_t mode, char *path, size_t len);
/* In a test that needs root: says it is skipped and returns when the
 * suite does not run as root. */
#define TH_NEED_ROOT()							\
	do {								\
		if (geteuid() != 0) {					\
			fprintf(stderr, "%s: skipped (needs root)\n",	\
			    __func__);					\
			return;						\
		}							\
	} while (0)

/* The broker's child that is not a worker: its only child when idle. */
pid_t	 th_pmd_forker(const struct th_pmd *);
/* Waits up to secs for pmd to have no zombie and base_fds fds, then
 * fails the test unless it has. */
void	 th_pmd_settled(const struct th_pmd *, int base_fds, double secs);

/* /proc */
int	 th_fd_count(pid_t pid);
int	 th_lowest_free_fd(pid_t pid);	/* from /proc/pid/fd */	/* 0: self (without the dir fd) */
int	 th_zombies(pid_t ppid);	/* children of ppid in state Z */
int	 th_children(pid_t ppid, pid_t *pids, int max);	/* count */
int	 th_pid_alive(pid_t pid);	/* exists and is not a zombie */
char	 th_pid_state(pid_t pid);	/* R, S, Z...; 0 gone */
long	 th_rss_kb(pid_t pid);		/* VmRSS, -1 unknown */
/* The first number of a /proc/pid/status line ("Uid", "VmRSS"); -1. */
long	 th_status_num(pid_t pid, const char *key);

/* Environment given by make check; fails the test when unset. */
const char *th_env(const char *name);
const char *th_module(void);		/* $PM_TEST_MODULE */
/* A test case of s with a fixture (either may be NULL) and a timeout. */
TCase	*th_tcase(Suite *s, const char *name, SFun setup, SFun teardown,
	    double timeout);
/* Runs s as make check asks (CK_RUN_CASE, CK_VERBOSITY, CK_FORK); the
 * exit status for main: 0 when every test passed. */
int	 th_run_suite(Suite *s);

/* 1 under make valgrind ($PM_VALGRIND): fewer rounds, looser hang bounds. */
int	 th_valgrind(void);
/* 1 under make check SANITIZE=1 ($PM_BUILD is build-san): ASan's
 * quarantine keeps freed memory, so RSS is only indicative. */
int	 th_sanitized(void);

/* The size of the long runs (soak, cycles) against their full size:
 * $PM_SOAK_SCALE (make check 0.05, make soak 1); unset, 1, or 0.05
 * under valgrind or SANITIZE=1. */
double	 th_soak_scale(void);

/*
 * Forked fake clients.  make valgrind checks every process for leaks when
 * it exits, a test's forked child too.  Fork with th_fork(); in the child,
 * hand each object it creates to th_child_own(obj, fn) and end with
 * th_child_exit(code), which frees them (fn(obj)), newest first, then
 * _exits; th_child_free(obj) frees an owned object before that.  What the
 * parent held at the fork is not the child's to free (a connection's
 * socket is shared with the parent; freeing a pool kills its workers):
 * keep it reachable from file scope instead (fixture state that teardown
 * frees), so that it is not lost in the child either.
 */
typedef void th_free_fn(void *obj);
pid_t	 th_fork(void);			/* fork(); fails the test on -1 */
void	 th_child_own(void *obj, th_free_fn *fn);	/* obj NULL: no-op */
void	 th_child_free(void *obj);
void	 th_child_exit(int code) __attribute__((noreturn));
/* Waits secs for the child pid: its exit code, -signo, or TH_TIMEOUT
 * (then it is killed and reaped). */
int	 th_wait_child(pid_t pid, double secs);
/* Starts p and joins it (secs), failing the test on either; its exit
 * code (-signo when killed). */
int	 th_run_process(pm_process *p, double secs);

/* th_free_fn for libpmclient's objects. */
void	 th_free_conn(void *c);		/* pm_disconnect */
void	 th_free_queue(void *q);	/* pm_queue_free */
void	 th_free_process(void *p);	/* pm_process_free */

/* Run argv (argv[0] a path), stdin /dev/null, stdout captured into out
 * (NUL-terminated, truncated), stderr inherited.  Returns the exit
 * status, -signo, or TH_TIMEOUT (the child is killed). */
int	 th_run(const char *const argv[], char *out, size_t outsz,
	    double timeout);
/* th_run($PMCTL_BIN arg...), NULL-terminated, 30 s. */
int	 th_pmctl(char *out, size_t outsz, const char *arg, ...);

/* Time, CLOCK_MONOTONIC seconds. */
double	 th_now(void);
void	 th_sleep(double secs);
/* Loop until cond holds or secs pass; test cond again afterwards. */
#define TH_WAIT(cond, secs)						\
	for (double th_end_ = th_now() + (secs);			\
	    !(cond) && th_now() < th_end_; th_sleep(0.01))

int	 th_mkdtemp(char *dir, size_t len);	/* /tmp/pmdtest.XXXXXX */
void	 th_rmtree(const char *path);
/* Copies from to to with mode; fails the test on error. */
void	 th_copy_file(const char *from, const char *to, mode_t mode);
/* A copy of path (mode 0755) in a directory every uid can reach, for
 * what the tests run under other uids (pmctl, pmd, modules): the checkout
 * may be private, as a clone inside a 0700 directory is.  The same path
 * is staged once; the copies go when the process that made them exits. */
const char *th_stage(const char *path);

/* Raw frames: header with explicit version and declared fd count (no
 * checks), then m packed.  Returns the length, or 0 if cap is short. */
size_t	 th_frame(void *buf, size_t cap, uint8_t version, uint32_t type,
	    uint32_t id, uint8_t nfds, const ProtobufCMessage *m);
/* One sendmsg of buf with fds as SCM_RIGHTS; all or -1. */
int	 th_send(int sock, const void *buf, size_t len, const int *fds,
	    int nfds);
int	 th_unix_connect(const char *path);	/* blocking stream socket */
/* Raw clients: a connection that has said Hello (its reply read); a frame
 * sent (any size); the next frame read into f (fails the test after secs;
 * close its fds with wire_frame_close). */
struct wire_in;
struct pm_frame;
int	 th_raw_hello(const char *sock);
void	 th_raw_send(int fd, uint32_t type, uint32_t id,
	    const ProtobufCMessage *m);
void	 th_raw_send_fds(int fd, uint32_t type, uint32_t id,
	    const ProtobufCMessage *m, const int *fds, int nfds);
void	 th_raw_next(int fd, struct wire_in *in, struct pm_frame *f,
	    double secs);
/* A queue opened by name on a raw connection (its reply read): its qid. */
uint64_t th_raw_qopen(int fd, struct wire_in *in, const char *name);

/* Root only: the effective uid, gid and groups of another user until
 * th_unbecome(); what is connected meanwhile is that user's (pmd reads
 * a client's ids when it connects). */
void	 th_become(uid_t uid, gid_t gid, const gid_t *groups, int ngroups);
void	 th_unbecome(void);
/* 1 if fd becomes readable within secs, else 0. */
int	 th_readable(int fd, double secs);

#endif
