/*
 * pmclient_int.h - the map of libpmclient's insides, shared by its files
 * and by pmctl.  Internal names are pmc_*; only pm_* is exported.
 */
#ifndef PMCLIENT_INT_H
#define PMCLIENT_INT_H

#include <stdarg.h>
#include <stdint.h>

#include "pmclient.h"
#include "segment.h"
#include "wire.h"
#include "pm.pb-c.h"

#define PMC_SYSTEM_SOCKET	"/run/pmd/pmd.sock"
#define PMC_TRIED_MAX		1024	/* bytes of discovery's "tried" note */
#define PMC_START_TIMEOUT	10.0	/* seconds for a private pmd to come up */
#define PMC_PROCESS_MAX_FDS	(PM_WIRE_MAX_FDS - 2)
/* A pool worker's fds besides stdio: a spawn's frame to the forker also
 * carries the channel, the tasks-done counter and the request (pmd). */
#define PMC_POOL_MAX_FDS	(PM_WIRE_MAX_FDS - 6)
/* Caps a worker may get (library and pmd check both). */
#define PMC_MIN_MEMORY_MAX	(1ull << 20)	/* bytes; 0 is none */
#define PMC_MIN_CPU_MAX		0.01		/* CPUs; 0 is none */
#define PMC_MAX_CPU_MAX		1024.0
/* "out of memory (memory_max 64 MiB)" into buf */
void	pmc_oom_text(char *buf, size_t cap, uint64_t memory_max);
int	pmc_check_caps(uint64_t memory_max, double cpu_max);

/* A request waiting for its reply. */
struct pmc_pending {
	uint32_t	 id;
	int		 done;
	uint32_t	 type;		/* reply frame type */
	ProtobufCMessage *msg;		/* unpacked reply (T_ERROR: NULL) */
	int		 code;		/* PM_OK or the error */
	char		*message;	/* error text */
	int		 fds[PM_WIRE_MAX_FDS];
	int		 nfds;
	const ProtobufCMessageDescriptor *want;	/* reply message type */
	struct pmc_pending *next;
	/* the pool's: called once the reply is in (p->done); may free p */
	void		(*done_fn)(pm_conn *, struct pmc_pending *, void *);
	void		*done_ud;
};

/* Handler of a watched fd; events are EPOLL* bits. */
typedef void pmc_watch_fn(pm_conn *c, int fd, unsigned events, void *ud);
struct pmc_watch;
#define PMC_TURN_EVENTS	64

struct pm_conn {
	int		 fd;
	int		 epfd;		/* socket + watches; pm_conn_fd() */
	unsigned	 sock_events;	/* epoll interest on fd */
	struct pmc_watch *watches;
	int		 watch_dead;	/* some watch awaits freeing */
	int		 in_turn;	/* inside handlers */
	char		*address;	/* socket path */
	pid_t		 daemon_pid;
	uint32_t	 max_frame;
	uint32_t	 next_id;
	int		 lost;		/* connection gone: calls fail PM_ECONN */
	int		 lost_code;	/* why: PM_ECONN, or pmd's refusal */
	char		 lost_why[256];
	struct wire_in	 in;
	struct wire_out	 out;
	struct pmc_pending *pending;	/* requests in flight */
	struct pmc_sub	*subs;		/* told of exits, loss, detach */
	int		 sub_dead;	/* some subscriber awaits freeing */
	int		 in_notify;	/* inside subscribers' callbacks */
	struct pm_conn	*all_next;	/* every live connection (conn.c) */
	struct pm_conn	*all_prev;
};

/* error.c */
int	 pmc_err(int code, const char *fmt, ...)
	    __attribute__((format(printf, 2, 3)));
int	 pmc_err_sys(const char *fmt, ...)
	    __attribute__((format(printf, 1, 2)));
int	 pmc_ok(void);
void	 pmc_set_last(int code, const char *msg);

/* conn.c */
/* Queue a request; the pending record is returned (NULL: error set).
 * fds are taken.  want: the reply message expected besides Ok/Error. */
struct pmc_pending *pmc_send(pm_conn *, uint32_t type,
	    const ProtobufCMessage *req, const int *fds, int nfds,
	    const ProtobufCMessageDescriptor *want);
/* Drive the connection until p is done or the deadline passes. */
int	 pmc_wait(pm_conn *, struct pmc_pending *p, int64_t deadline);
/* Forget p (frees its reply and closes its fds). */
void	 pmc_pending_free(pm_conn *, struct pmc_pending *p);
/* pmc_send + pmc_wait: PM_OK with *out (caller's) or the error code. */
int	 pmc_call(pm_conn *, uint32_t type, const ProtobufCMessage *req,
	    const int *fds, int nfds, const ProtobufCMessageDescriptor *want,
	    struct pmc_pending **out, double timeout);
/* pmc_send without fds that leaves the frame queued (pipelining); the
 * next pmc_flush, or any wait, sends it. */
struct pmc_pending *pmc_send_later(pm_conn *, uint32_t type,
	    const ProtobufCMessage *req, const ProtobufCMessageDescriptor *want);
int	 pmc_flush(pm_conn *);
/* Read and handle what is there; waits until deadline for the first byte. */
int	 pmc_pump(pm_conn *, int64_t deadline);
/* Wait until fd (besides the connection) is readable, pumping meanwhile:
 * 1 fd ready, 0 deadline, negative error. */
int	 pmc_wait_fd(pm_conn *, int fd, int64_t deadline);
int	 pmc_code_from_wire(int32_t code);
/* Watch fd in every turn of c (blocking calls, pm_dispatch).  The handler
 * may add, modify or delete watches.  Delete before closing fd. */
int	 pmc_watch_add(pm_conn *, int fd, unsigned events, pmc_watch_fn *,
	    void *ud);
int	 pmc_watch_mod(pm_conn *, int fd, unsigned events);
void	 pmc_watch_del(pm_conn *, int fd);

/*
 * conn.c: subscribers.  An object that must hear of its connection's
 * events (a worker's exit, the connection lost, pm_disconnect) registers
 * a callback; conn.c calls each in turn and names no object kind.
 * PMC_EV_EXITED passes the Pm__Exited, the others NULL.  On
 * PMC_EV_DETACH the connection is going: every subscriber is removed
 * after the call (a handle must forget c).  PMC_EV_FORKED runs in a
 * forked worker (pmc_fork): the fds a subscriber holds are its parent's,
 * so it closes them, touching neither pmd nor the epoll set nor any
 * process, and forgets c; then it is removed.  A callback may add or
 * remove subscribers.
 */
enum { PMC_EV_EXITED = 1, PMC_EV_LOST, PMC_EV_DETACH, PMC_EV_FORKED };
typedef void pmc_sub_fn(pm_conn *c, int event, const void *ev, void *ud);
struct pmc_sub;
/* NULL with PM_ENOMEM set. */
struct pmc_sub *pmc_sub_add(pm_conn *, pmc_sub_fn *, void *ud);
void	 pmc_sub_del(pm_conn *, struct pmc_sub *);
/* The ud of c's live subscriber with fn (one per connection), or NULL. */
void	*pmc_sub_find(pm_conn *, pmc_sub_fn *);

/* conn.c: the list of connections, held across a fork; in the child
 * pmc_conns_forked turns each into a husk (see PMC_EV_FORKED). */
void	 pmc_conns_hold(void);
void	 pmc_conns_release(void);
void	 pmc_conns_forked(void);

/* ---- fork.c: the fork start method ---- */
#define PMC_FORK_REFUSED	127	/* a forked worker pmd did not take */
#define PMC_FN_NAME_MAX		256

/* A child this process forked: it reaps it. */
struct pmc_child {
	pid_t		 pid;
	pid_t		 owner;		/* its parent: us, unless we are a fork */
	int		 is_pidfd;	/* the sentinel is a pidfd (else a pipe) */
	int		 reaped;
	int		 code;		/* exit code once reaped, -signo */
	int		 lost;		/* reaped by someone else: code unknown */
	pm_rusage	 ru;		/* once reaped */
};

/* What pmd is told of a forked worker. */
struct pmc_adopt {
	const char	*name;
	const char	*target;
	int		 daemonic;
	uint64_t	 pool;		/* 0: a Process */
	int		 stats_fd;	/* pool: tasks-done memfd, or -1 */
};

pid_t	 pmc_fork(struct pmc_child *, int *sentinel);
int	 pmc_child_reap(struct pmc_child *, int block);
int	 pmc_child_signal(struct pmc_child *, int sig);
void	 pmc_child_orphan(struct pmc_child *);
int	 pmc_fork_gate(int channel);
int	 pmc_fork_go(int channel);
void	 pmc_fork_report(int channel, uint32_t type, const ProtobufCMessage *);
void	 pmc_fn_name(pm_task_fn *, char *buf, size_t len);
struct pmc_pending *pmc_adopt_send(pm_conn *, const struct pmc_child *,
	    int sentinel, const struct pmc_adopt *);

/* spare.c: workers a connection claimed ahead of its starts */
void	 pmc_spare_want(pm_conn *);
int	 pmc_spare_take(pm_conn *, uint64_t *wid, pid_t *pid, int *channel);

/* process.c: for pmctl run's exit status: execve's errno when the
 * program could not be run, else 0. */
int	 pmc_process_exec_errno(pm_process *);
/* process.c: a module as pmd is to see it (malloc'd; NULL, error set):
 * a path with a '/' made absolute against the caller's working directory,
 * since pmd's is another; a name without '/' kept for pmd's module_path. */
char	*pmc_module_path(const char *module);

/* task.c: the worker side, entered from pmd's worker runtime */
struct pm_task {
	const void	*arg;
	size_t		 arglen;
	int		 channel;	/* -1: none */
	const char	*address;	/* pmd socket, for pm_task_conn */
	const char	*name;		/* pm_task_name; "" unknown */
	pid_t		 parent_pid;	/* the client that started it */
	pm_conn		*conn;
	int		 returned;
	void		*result;
	size_t		 resultlen;
	char		*error;
	/* pool mode: pm_task_return hands the result here (no copy kept) */
	int		(*ret_hook)(struct pm_task *, const void *, size_t);
	void		*hook_ud;
};
/* Run fn as a Process target; returns the exit code after reporting the
 * outcome on the channel. */
int	 pmc_task_run_process(pm_task_fn *fn, struct pm_task *t);
void	 pmc_task_clear(struct pm_task *t);

/* ---- queue.c: queues hosted by pmd (issue 4) ----
 * Each blocking call is a send and a receive; pipelining callers (bench,
 * pmctl) issue several sends, then receive in the same order.  flush 0
 * leaves the request queued for a later pmc_flush or wait. */
struct pmc_pending *pmc_queue_put_send(pm_queue *, const pm_bytes *items,
	    size_t n, double timeout, int flush);
int	 pmc_queue_put_recv(pm_queue *, struct pmc_pending *);
struct pmc_pending *pmc_queue_get_send(pm_queue *, size_t max,
	    double timeout, int flush);
/* Frees p; out has max slots; *got items stored. */
int	 pmc_queue_get_recv(pm_queue *, struct pmc_pending *, pm_bytes *out,
	    size_t max, size_t *got);

/* ---- shm.c: segments and the named-object namespace (issue 10) ---- */
#define PMC_SEG_MAX	(1ull << 40)	/* bytes of one segment, here */

struct pmc_seg {
	void		*base;		/* MAP_FAILED: none */
	size_t		 size;
	int		 fd;		/* -1: none */
};
/* Fills a new segment before it is sealed and shared; PM_OK or error. */
typedef int pmc_seg_init_fn(void *base, const void *ud);
int	 pmc_seg_make(int kind, size_t size, pmc_seg_init_fn *, const void *,
	    struct pmc_seg *);
/* Checks fd is a sealed read-write segment of kind; its size. */
int	 pmc_seg_check(int fd, int kind, size_t *sizep);
/* Maps fd (taken: kept, or closed on failure) as a segment of kind. */
int	 pmc_seg_adopt(int fd, int kind, struct pmc_seg *);
void	 pmc_seg_close(struct pmc_seg *);
/* Anonymous (name NULL) or named in pmd; own: the kind's flags. */
int	 pmc_obj_open(pm_conn *, const char *name, int kind, int flags,
	    int own, size_t size, pmc_seg_init_fn *, const void *ud,
	    struct pmc_seg *);

/* poolworker.c: a pool worker's task loop; never returns.  h: the
 * module's handle (RTLD_DEFAULT: the program's own functions), module:
 * how a missing function's error names where it looked ("module
 * /x.so"), stats: the shared tasks-done counter or NULL, maxmemory:
 * leave when the RSS passes it after a frame of tasks (0 never). */
void	 pmc_pool_worker_loop(void *h, const char *module, int channel,
	    struct pm_task *t, uint32_t maxtasks, uint64_t maxmemory,
	    volatile uint64_t *stats)
	    __attribute__((noreturn));

/* ---- pool*.c: Pool and AsyncResult (issue 3; their map: pool_int.h) ----
 * Each pool subscribes to its connection: pool workers end through the
 * same Exited events as processes. */
#define PMC_POOL_MAX_ITEM	(1u << 30)	/* bytes per argument/result */

/* pipe.c: an end pmd handed over (fd taken, also on failure), with the
 * peer's credentials as pmd read them. */
pm_pipe	*pmc_pipe_rendezvous(int fd, pid_t pid, uid_t uid);

#endif