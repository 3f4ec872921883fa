/*
 * pmclient.h - libpmclient, the C client of pmd: Python's multiprocessing
 * model (Process, task functions) served by a fork-server daemon.
 *
 * Conventions (every function):
 *  - int results are PM_OK (0) or a negative PM_E* code; pointer results are
 *    NULL on failure.  Either way pm_last_error() (per thread) holds the code
 *    and pm_last_message() a human-readable detail.
 *  - timeout is seconds: < 0 waits forever, 0 never blocks.  A call that
 *    times out has waited at least timeout.
 *  - No hidden threads: blocking calls drive the connection; callers with
 *    their own loop poll pm_conn_fd() and call pm_dispatch().
 *  - Signals interrupting a blocking call do not make it fail.
 *  - Bytes the library returns belong to the caller: pm_bytes_free().
 */
#ifndef PMCLIENT_H
#define PMCLIENT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

#define PM_VERSION_MAJOR	0
#define PM_VERSION_MINOR	1
#define PM_PROTOCOL_VERSION	1

/* Error codes, stable on the wire and in the ABI. */
#define PM_OK		0
#define PM_ETIMEDOUT	(-1)	/* not done in time */
#define PM_EEMPTY	(-2)	/* queue empty */
#define PM_EFULL	(-3)	/* queue full */
#define PM_ECLOSED	(-4)	/* handle or queue closed */
#define PM_ETASK	(-5)	/* the task reported failure */
#define PM_EWORKER	(-6)	/* the worker died */
#define PM_ECANCELLED	(-7)	/* cancelled */
#define PM_EPERM	(-8)	/* not allowed */
#define PM_ENOENT	(-9)	/* no such module, function, program, queue */
#define PM_EEXIST	(-10)	/* already exists */
#define PM_EINVAL	(-11)	/* bad argument */
#define PM_ENOMEM	(-12)	/* out of memory */
#define PM_EPROTO	(-13)	/* protocol error */
#define PM_ECONN	(-14)	/* daemon unreachable or connection lost */
#define PM_ELIMIT	(-15)	/* a configured bound was hit */
#define PM_ESTATE	(-16)	/* not valid in the object's current state */
#define PM_EDONE	(-17)	/* iterator exhausted */
#define PM_ESYS		(-18)	/* system error; errno kept */
#define PM_EOWNERDEAD	(-19)	/* acquired; its last holder died holding it */
#define PM_EBROKEN	(-20)	/* the barrier is broken */

typedef struct pm_conn pm_conn;
typedef struct pm_process pm_process;
typedef struct pm_task pm_task;
typedef struct pm_pool pm_pool;
typedef struct pm_result pm_result;
typedef struct pm_iter pm_iter;
typedef struct pm_queue pm_queue;
typedef struct pm_pipe pm_pipe;
typedef struct pm_shm pm_shm;
typedef struct pm_lock pm_lock;
typedef struct pm_sem pm_sem;
typedef struct pm_event pm_event;
typedef struct pm_cond pm_cond;
typedef struct pm_barrier pm_barrier;
typedef struct pm_dict pm_dict;
typedef struct pm_listener pm_listener;

typedef struct pm_bytes {
	void	*data;
	size_t	 len;
} pm_bytes;

/* ---- errors ---- */
int		 pm_last_error(void);
const char	*pm_last_message(void);
const char	*pm_strerror(int code);
/* The code's name, "PM_ENOENT"; "PM_EUNKNOWN" for a code not listed. */
const char	*pm_errname(int code);
void		 pm_bytes_free(pm_bytes *b);	/* frees data, zeroes b */

/* ---- connection ---- */
/* address NULL: $PMD_SOCKET when set (only there: PM_ECONN if it does not
 * answer), else /run/pmd/pmd.sock, $XDG_RUNTIME_DIR/pmd/pmd.sock, else a
 * private pmd started for this process (reused by later calls).  A private
 * pmd is found at $PMD_BIN, else the installed pmd, else $PATH.  On
 * failure the message names each candidate and why it failed. */
pm_conn		*pm_connect(const char *address);
#define PM_CONNECT_NOSTART	0x1	/* discovery only; never start a pmd */
pm_conn		*pm_connect_flags(const char *address, int flags);
/* Closes; the caller's daemonic workers end. NULL is ignored. */
void		 pm_disconnect(pm_conn *c);
int		 pm_conn_fd(pm_conn *c);
/* Processes what arrived within timeout (events, exits); PM_ECONN if lost. */
int		 pm_dispatch(pm_conn *c, double timeout);
const char	*pm_conn_address(pm_conn *c);	/* socket path in use */
pid_t		 pm_daemon_pid(pm_conn *c);	/* the broker's pid */
int		 pm_cpu_count(void);
/* Live workers this connection started: stores up to max pids, returns
 * the count (which may exceed max). */
int		 pm_active_children(pm_conn *c, pid_t *pids, size_t max);

/* ---- task functions (code that runs in a worker) ----
 * Exported from a shared object: int fn(pm_task *t).  A Process target's
 * return value is its exit code (& 0xff); pm_task_fail() makes it 1. */
typedef int pm_task_fn(pm_task *t);
const void	*pm_task_arg(pm_task *t, size_t *len);
int		 pm_task_return(pm_task *t, const void *data, size_t len);
int		 pm_task_fail(pm_task *t, const char *fmt, ...)
#if defined(__GNUC__)
		    __attribute__((format(printf, 2, 3)))
#endif
		    ;
pm_conn		*pm_task_conn(pm_task *t);	/* owned by the task */
/* The Process's name (default Process-N) or the pool worker's
 * PoolWorker-P-N (P: the client's pool number, N: the worker's). */
const char	*pm_task_name(pm_task *t);
/* The pid of the client that started this worker (0 if unknown). */
pid_t		 pm_task_parent_pid(pm_task *t);

/* ---- Process ---- */
/* Start methods, as Python's: PM_START_FORKSERVER (pmd's forker, the
 * default), PM_START_SPAWN (pmd starts the worker by execve of a fresh
 * runner: a new address-space layout, nothing of the forker's memory),
 * PM_START_FORK (a fork of the caller, running a function of its own). */
enum { PM_START_FORKSERVER = 0, PM_START_SPAWN = 1, PM_START_FORK = 2 };

pm_process	*pm_process_new(pm_conn *c, const char *module,
		    const char *function, const void *arg, size_t len);
/* envp NULL: the caller's environment.  path without '/' is looked up in
 * the worker's $PATH. */
pm_process	*pm_process_new_exec(pm_conn *c, const char *path,
		    char *const argv[], char *const envp[]);
/* Start method fork: the worker is a fork of the caller and runs fn (any
 * function of this program) with the pm_task_* calls; it sees the
 * caller's memory as it was at pm_process_start.  c may be NULL: no pmd
 * at all.  With a connection pmd lists the worker (pmctl ps, kind fork),
 * signals it and ends a daemonic one when c closes; either way this
 * process is its parent and reaps it (a caller that reaps every child
 * itself, or ignores SIGCHLD, takes its exit status away). */
pm_process	*pm_process_new_fn(pm_conn *c, pm_task_fn *fn, const void *arg,
		    size_t len);
/* Before start (after: PM_ESTATE).  PM_START_SPAWN or _FORKSERVER for
 * module and program targets, PM_START_FORK only for pm_process_new_fn;
 * anything else PM_EINVAL. */
int		 pm_process_set_start_method(pm_process *p, int method);
int		 pm_process_set_name(pm_process *p, const char *name);
int		 pm_process_set_daemon(pm_process *p, int daemonic);
/* The worker gets a copy of parent_fd as child_fd (0..1023); parent_fd -1
 * leaves child_fd closed.  0-2 default to the caller's stdio. */
int		 pm_process_set_fd(pm_process *p, int child_fd, int parent_fd);
/* Per-spawn settings, before start. */
int		 pm_process_set_cwd(pm_process *p, const char *dir);
int		 pm_process_set_nice(pm_process *p, int nice);
int		 pm_process_set_rlimit(pm_process *p, int resource,
		    unsigned long long soft, unsigned long long hard);
int		 pm_process_set_new_pgrp(pm_process *p, int on);
/* Caps through a cgroup pmd makes for the worker before any of its code
 * runs: memory in bytes (0 none; under 1 MiB PM_EINVAL), CPU bandwidth in
 * CPUs (e.g. 0.5; 0 none; negative, under 0.01 or over 1024 PM_EINVAL).
 * Before start, else PM_ESTATE.  A pmd that cannot apply them fails the
 * start with PM_ESYS saying why: never a silently uncapped worker. */
int		 pm_process_set_memory_max(pm_process *p, uint64_t bytes);
int		 pm_process_set_cpu_max(pm_process *p, double cpus);
int		 pm_process_start(pm_process *p);
int		 pm_process_join(pm_process *p, double timeout);
int		 pm_process_is_alive(pm_process *p);
int		 pm_process_exitcode(pm_process *p, int *code);
pid_t		 pm_process_pid(pm_process *p);
const char	*pm_process_name(pm_process *p);
int		 pm_process_sentinel(pm_process *p);
/* Python's connection.wait() on sentinels: the index (0 .. n-1) of an ended
 * Process among ps, the lowest if several; PM_ETIMEDOUT; PM_EINVAL for n 0
 * or over PM_WAIT_MAX, or a Process not started. */
#define PM_WAIT_MAX	1024
int		 pm_wait(pm_process *const *ps, size_t n, double timeout);
int		 pm_process_terminate(pm_process *p);
int		 pm_process_kill(pm_process *p);
int		 pm_process_signal(pm_process *p, int sig);
int		 pm_process_result(pm_process *p, pm_bytes *out);
const char	*pm_process_error(pm_process *p);
/* CPU seconds and peak RSS of an ended Process, as its reaping wait
 * reported them; PM_ESTATE before it ended. */
typedef struct pm_rusage {
	double		 user_s, sys_s;
	uint64_t	 maxrss_kb;
} pm_rusage;
int		 pm_process_rusage(pm_process *p, pm_rusage *ru);
/* 1 when it ended killed by the OOM killer under its memory_max (exit
 * code -9; pm_process_error: "out of memory (memory_max 64 MiB)"). */
int		 pm_process_oom_killed(pm_process *p);
void		 pm_process_free(pm_process *p);

/* ---- Pool ----
 * Workers in pool mode run tasks sent over their channels, straight from
 * this process (no broker hop).  A worker that dies fails only the tasks
 * it held (PM_EWORKER) and is replaced. */
typedef struct pm_pool_opts {
	int		 processes;	/* 0: pm_cpu_count(); < 0: PM_EINVAL */
	const char	*module;	/* module holding the task functions */
	const char	*initializer;	/* optional; run once in each worker */
	const void	*initarg;
	size_t		 initarglen;
	int		 maxtasksperchild; /* 0: no limit; < 0: PM_EINVAL */
	/* each worker's memory cap in bytes, as pm_process_set_memory_max:
	 * a worker killed under it fails its task with PM_EWORKER, "out of
	 * memory (memory_max 64 MiB)", and is replaced */
	uint64_t	 memory_max;
	/* a worker whose RSS is above this many bytes after a task frame
	 * answers it and leaves; the pool replaces it (Celery's
	 * worker_max_memory_per_child); 0: no limit */
	uint64_t	 maxmemoryperchild;
	/* PM_START_FORKSERVER (0), PM_START_SPAWN, or PM_START_FORK: workers
	 * forked from the caller; with module NULL the task and initializer
	 * names are looked up in the calling program (dlsym RTLD_DEFAULT:
	 * link it with -rdynamic). */
	int		 start_method;
} pm_pool_opts;
/* Runs once per result, success or failure, from pm_dispatch() or any
 * blocking call on the caller's thread. */
typedef void pm_callback(pm_result *r, void *userdata);

pm_pool		*pm_pool_new(pm_conn *c, const pm_pool_opts *o);
/* Like pm_pool_new, and every worker (replacements too) gets a copy of
 * parent_fds[i] as child_fds[i] (3..1023), as pm_process_set_fd does:
 * e.g. a file that every task preads a range of.  The pool keeps its own
 * copies until pm_pool_free. */
pm_pool		*pm_pool_new_fds(pm_conn *c, const pm_pool_opts *o,
		    const int *child_fds, const int *parent_fds, size_t nfds);
int		 pm_pool_apply(pm_pool *p, const char *fn, const void *arg,
		    size_t len, pm_bytes *out);
pm_result	*pm_pool_apply_async(pm_pool *p, const char *fn,
		    const void *arg, size_t len, pm_callback *cb, void *ud);
/* out has n slots, in input order; chunksize 0 picks one.  Not fail-fast:
 * returns once every task ended, with the first error. */
int		 pm_pool_map(pm_pool *p, const char *fn, const pm_bytes *in,
		    size_t n, size_t chunksize, pm_bytes *out);
pm_result	*pm_pool_map_async(pm_pool *p, const char *fn,
		    const pm_bytes *in, size_t n, size_t chunksize,
		    pm_callback *cb, void *ud);
pm_iter		*pm_pool_imap(pm_pool *p, const char *fn, const pm_bytes *in,
		    size_t n, size_t chunksize);
pm_iter		*pm_pool_imap_unordered(pm_pool *p, const char *fn,
		    const pm_bytes *in, size_t n, size_t chunksize);
/* PM_EDONE after the last result; a failed task gives its error in order. */
int		 pm_iter_next(pm_iter *it, double timeout, pm_bytes *out);
void		 pm_iter_free(pm_iter *it);
/* Grows at once; shrinks as workers finish their current tasks (idle
 * ones at once).  processes < 1: PM_EINVAL; after close: PM_ESTATE. */
int		 pm_pool_resize(pm_pool *p, int processes);
int		 pm_pool_close(pm_pool *p);	/* no new tasks */
int		 pm_pool_terminate(pm_pool *p);	/* pending: PM_ECANCELLED */
int		 pm_pool_join(pm_pool *p);	/* after close or terminate */
void		 pm_pool_free(pm_pool *p);	/* terminates if running */

/* AsyncResult */
int		 pm_result_get(pm_result *r, double timeout, pm_bytes *out);
int		 pm_result_wait(pm_result *r, double timeout);
int		 pm_result_ready(pm_result *r);
int		 pm_result_successful(pm_result *r);
const char	*pm_result_error(pm_result *r);
int		 pm_result_cancel(pm_result *r);
void		 pm_result_free(pm_result *r);

/* ---- Queues (hosted by pmd, usable from any client or worker) ---- */
#define PM_Q_CREATE	0x1	/* create if missing */
#define PM_Q_EXCL	0x2	/* with CREATE: fail PM_EEXIST if present */
#define PM_Q_JOINABLE	0x4	/* task_done / join */
#define PM_Q_SHARED	0x8	/* other uids may open it */

pm_queue	*pm_queue_open(pm_conn *c, const char *name, long maxsize,
		    int flags);
int		 pm_queue_put(pm_queue *q, const void *data, size_t len,
		    double timeout);
int		 pm_queue_get(pm_queue *q, pm_bytes *out, double timeout);
int		 pm_queue_put_many(pm_queue *q, const pm_bytes *items, size_t n,
		    double timeout);
int		 pm_queue_get_many(pm_queue *q, pm_bytes *out, size_t max,
		    size_t *got, double timeout);
long		 pm_queue_qsize(pm_queue *q);
int		 pm_queue_empty(pm_queue *q);
int		 pm_queue_full(pm_queue *q);
int		 pm_queue_task_done(pm_queue *q);
int		 pm_queue_join(pm_queue *q, double timeout);
int		 pm_queue_shutdown(pm_queue *q, int immediate);
int		 pm_queue_close(pm_queue *q);
int		 pm_queue_unlink(pm_conn *c, const char *name);
void		 pm_queue_free(pm_queue *q);

/* ---- Pipes: message pipes between two processes, fds carried along ----
 * A pipe end is a socket (SOCK_SEQPACKET): each message is one packet,
 * so its fd is readable exactly when a message, or the end, is there
 * (nothing is held in this process where poll(2) cannot see it).
 * Messages of 64 KiB or more travel as sealed memfds.
 * The other end closed: recv drains what is left, then PM_ECLOSED; send
 * is PM_ECLOSED (never SIGPIPE).  An end goes to a worker with
 * pm_process_set_fd(pm_pipe_fd(end)), and the worker takes it with
 * pm_pipe_adopt(). */
#define PM_PIPE_MAX_FDS	64		/* fds per message */
#define PM_PIPE_MAX_MSG	(1ul << 30)	/* bytes per message */

/* duplex 0: *a only receives, *b only sends (Python's order), in every
 * process that holds them; the wrong direction is PM_EPERM. */
int		 pm_pipe_new(pm_pipe **a, pm_pipe **b, int duplex);
int		 pm_pipe_send(pm_pipe *p, const void *data, size_t len);
/* PM_ETIMEDOUT; PM_ECLOSED once the other end is closed and drained.
 * A message that came with fds: they are closed, the message is stored
 * in *out and PM_ELIMIT returned (as pm_pipe_recv_fds with maxfds 0). */
int		 pm_pipe_recv(pm_pipe *p, pm_bytes *out, double timeout);
/* Copies of fds travel (the caller keeps its own); up to PM_PIPE_MAX_FDS. */
int		 pm_pipe_send_fds(pm_pipe *p, const void *data, size_t len,
		    const int *fds, size_t nfds);
/* Received fds are close-on-exec.  More than maxfds came: *out, fds and
 * *nfds (= maxfds) are filled, the extra fds closed, and PM_ELIMIT
 * returned.  Fds the kernel could not install (out of fds) fail this
 * call alone: PM_ESYS, the message is dropped. */
int		 pm_pipe_recv_fds(pm_pipe *p, pm_bytes *out, int *fds,
		    size_t maxfds, size_t *nfds, double timeout);
/* 1 when a message or the end is ready, 0 if not within timeout;
 * PM_EPERM on an end that only sends (its fd always polls readable). */
int		 pm_pipe_poll(pm_pipe *p, double timeout);
int		 pm_pipe_fd(pm_pipe *p);
/* Takes fd (a pipe end) on success; on failure the caller keeps it. */
pm_pipe		*pm_pipe_adopt(int fd);
/* Who is at the other end, as pmd saw it (kernel credentials) for pipes
 * made by a rendezvous; PM_ESTATE for others.  Either pointer may be
 * NULL. */
int		 pm_pipe_peer(pm_pipe *p, pid_t *pid, uid_t *uid);
void		 pm_pipe_free(pm_pipe *p);	/* closes this end; NULL ok */

/* Rendezvous through pmd (Listener/Client): one listener per name
 * (PM_EEXIST); flags: PM_O_SHARED lets other uids connect.  A connect
 * waits until the listener accepts it (PM_ETIMEDOUT if not within
 * timeout); then each side has a pipe end and pmd is out of the path.
 * The listener ends with pm_listener_free or its connection. */
pm_listener	*pm_listen(pm_conn *c, const char *name, int flags);
pm_pipe		*pm_accept(pm_listener *l, double timeout);
/* PM_ENOENT when no one listens, PM_EPERM when not allowed. */
pm_pipe		*pm_pipe_connect(pm_conn *c, const char *name,
		    double timeout);
/* Readable while a connect waits, i.e. when pm_accept would not block. */
int		 pm_listener_fd(pm_listener *l);
void		 pm_listener_free(pm_listener *l);

/*
 * ---- Shared objects: memory and synchronization ----
 * Each object is a sealed memfd mapped by the processes that use it; its
 * operations run in that memory, never through pmd.  name NULL: an
 * anonymous object made here (c may be NULL), shared by passing
 * pm_X_fd() to a Process (pm_process_set_fd) and pm_X_adopt() there.
 * name set: a named object held by pmd in one namespace for every kind,
 * owned by the creating uid, until pm_unlink or pmd stops.  Creation
 * parameters (size, value, parties, flags) count only when the call
 * creates the object.  pm_X_adopt takes fd: the handle's on success,
 * closed on failure.  pm_X_free unmaps and closes this handle only (a
 * lock or condition the calling thread holds is released first).
 */
#define PM_O_CREATE	0x1	/* create if missing, else PM_ENOENT */
#define PM_O_EXCL	0x2	/* with CREATE: an existing one is PM_EEXIST */
#define PM_O_SHARED	0x8	/* other uids may open it */
#define PM_LOCK_RECURSIVE 0x100	/* an RLock */
#define PM_SEM_BOUNDED	0x200	/* a BoundedSemaphore */

/* Removes a named shared object from pmd (owner or admin); mappings and
 * open handles stay valid. */
int		 pm_unlink(pm_conn *c, const char *name);

/* size: bytes when created (>= 1); an existing one: 0 or <= its size.
 * New memory reads as zeros; the size is sealed. */
pm_shm		*pm_shm_open(pm_conn *c, const char *name, size_t size,
		    int flags);
void		*pm_shm_ptr(pm_shm *s);		/* MAP_SHARED, read-write */
size_t		 pm_shm_size(pm_shm *s);
int		 pm_shm_fd(pm_shm *s);
pm_shm		*pm_shm_adopt(int fd);
void		 pm_shm_free(pm_shm *s);

/* Robust: PM_EOWNERDEAD when the last holder died holding it (acquired,
 * consistent again).  A non-recursive lock acquired again by its holder:
 * PM_ESTATE.  Released only by its holder (else PM_EPERM). */
pm_lock		*pm_lock_open(pm_conn *c, const char *name, int flags);
int		 pm_lock_acquire(pm_lock *l, double timeout);
int		 pm_lock_release(pm_lock *l);
int		 pm_lock_fd(pm_lock *l);
pm_lock		*pm_lock_adopt(int fd);
void		 pm_lock_free(pm_lock *l);

/* value: the initial value when created (and the bound of a bounded one:
 * releasing above it is PM_EINVAL). */
pm_sem		*pm_sem_open(pm_conn *c, const char *name, unsigned value,
		    int flags);
int		 pm_sem_acquire(pm_sem *s, double timeout);
int		 pm_sem_release(pm_sem *s);
int		 pm_sem_value(pm_sem *s);
int		 pm_sem_fd(pm_sem *s);
pm_sem		*pm_sem_adopt(int fd);
void		 pm_sem_free(pm_sem *s);

pm_event	*pm_event_open(pm_conn *c, const char *name, int flags);
int		 pm_event_set(pm_event *e);
int		 pm_event_clear(pm_event *e);
int		 pm_event_is_set(pm_event *e);		/* 1 or 0 */
int		 pm_event_wait(pm_event *e, double timeout);
int		 pm_event_fd(pm_event *e);
pm_event	*pm_event_adopt(int fd);
void		 pm_event_free(pm_event *e);

/* A condition with its own recursive lock.  wait and notify need it held
 * (else PM_EPERM); wait releases it while waiting and holds it again on
 * return; like a POSIX condition it may return early: wait in a loop. */
pm_cond		*pm_cond_open(pm_conn *c, const char *name, int flags);
int		 pm_cond_acquire(pm_cond *cv, double timeout);
int		 pm_cond_release(pm_cond *cv);
int		 pm_cond_wait(pm_cond *cv, double timeout);
int		 pm_cond_notify(pm_cond *cv, int n);
int		 pm_cond_notify_all(pm_cond *cv);
int		 pm_cond_fd(pm_cond *cv);
pm_cond		*pm_cond_adopt(int fd);
void		 pm_cond_free(pm_cond *cv);

/* wait returns 0 ... parties - 1, a different index for each party of a
 * round; a timeout breaks the barrier: PM_ETIMEDOUT for that waiter,
 * PM_EBROKEN for the others and later waits until reset. */
pm_barrier	*pm_barrier_open(pm_conn *c, const char *name, unsigned parties,
		    int flags);
int		 pm_barrier_wait(pm_barrier *b, double timeout);
int		 pm_barrier_abort(pm_barrier *b);
int		 pm_barrier_reset(pm_barrier *b);
int		 pm_barrier_broken(pm_barrier *b);	/* 1 or 0 */
int		 pm_barrier_n_waiting(pm_barrier *b);
int		 pm_barrier_parties(pm_barrier *b);
int		 pm_barrier_fd(pm_barrier *b);
pm_barrier	*pm_barrier_adopt(int fd);
void		 pm_barrier_free(pm_barrier *b);

/* ---- Shared dicts (Manager().dict()), hosted by pmd ----
 * Byte-string keys and values; every call is one round trip to pmd, and
 * incr and cas are atomic.  Flags: PM_O_CREATE, PM_O_EXCL, PM_O_SHARED. */

pm_dict		*pm_dict_open(pm_conn *c, const char *name, int flags);
int		 pm_dict_set(pm_dict *d, const void *key, size_t klen,
		    const void *val, size_t vlen);
/* Missing: PM_ENOENT. */
int		 pm_dict_get(pm_dict *d, const void *key, size_t klen,
		    pm_bytes *out);
int		 pm_dict_del(pm_dict *d, const void *key, size_t klen);
int		 pm_dict_pop(pm_dict *d, const void *key, size_t klen,
		    pm_bytes *out);
long		 pm_dict_len(pm_dict *d);	/* count, or a negative code */
/* A snapshot: free each keys[i].data and then keys with free(). */
int		 pm_dict_keys(pm_dict *d, pm_bytes **keys, size_t *n);
/* The value is an int64 in 8 bytes, host order; missing counts as 0; a
 * value of another length: PM_EINVAL.  *result may be NULL. */
int		 pm_dict_incr(pm_dict *d, const void *key, size_t klen,
		    int64_t delta, int64_t *result);
/* Sets val if the value is expect (expect NULL: if the key is absent);
 * else PM_ESTATE. */
int		 pm_dict_cas(pm_dict *d, const void *key, size_t klen,
		    const void *expect, size_t elen, const void *val,
		    size_t vlen);
int		 pm_dict_clear(pm_dict *d);
void		 pm_dict_free(pm_dict *d);	/* this handle only */

#ifdef __cplusplus
}
#endif
#endif
