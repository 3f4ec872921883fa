/*
 * pool_int.h - the map of the Pool's insides (pm_pool, pm_result,
 * pm_iter), shared by its files: pool.c (the pool, its lifecycle and
 * connection events), pooljob.c (jobs, their tasks and queues),
 * poolresult.c (apply, map, imap and AsyncResult), poolwire.c (task
 * batches and answers on the workers' channels), poolproc.c (worker
 * records: spawning, start reports, deaths and replacement) and
 * poolfork.c (workers of start method fork).  Not for pmctl or the
 * worker side (poolworker.c).
 */
#ifndef POOL_INT_H
#define POOL_INT_H

#include <stddef.h>
#include <stdint.h>

#include "pmclient_int.h"

#define PMC_POOL_MAX_PROCESSES	4096		/* workers per pool */
#define PMC_POOL_DEPTH		2		/* frames in flight per worker */
#define PMC_POOL_FRAME_TASKS	4096		/* tasks of several jobs per frame */
#define PMC_POOL_FRAME_BYTES	(4u << 20)	/* inline bytes per frame */
#define PMC_POOL_FRAME_FDBYTES	(64u << 20)	/* memfd bytes per frame */
#define PMC_POOL_TARGET_NS	1000000		/* a frame of many jobs: ~1 ms */
#define PMC_POOL_LONG_NS	1000000		/* longer tasks: 1 frame in flight */
#define PMC_POOL_STALL_NS	2000000		/* a frame this old and late: none behind */
#define PMC_POOL_SPAWN_TIMEOUT	60.0		/* s for pmd to start a worker */
#define PMC_POOL_EARLY_DEATHS	8		/* in a row, before any task */
#define PMC_POOL_MAX_INITARG	(PM_WIRE_MAX_FRAME - (64u << 10))
#define PMC_POOL_READS		16		/* reads per channel per turn */
#define PMC_POOL_ERR_MAX	4096		/* bytes of failure text kept */
#define PMC_IMAP_WINDOW_MIN	64		/* tasks ahead of the reader */

enum jkind { J_APPLY, J_MAP, J_IMAP, J_UNORDERED };
enum tstate { T_PENDING = 0, T_OK, T_FAILED };
enum pstate { PS_RUN, PS_CLOSED, PS_TERMINATED };

struct pmc_terr {
	int		 code;
	char		*msg;
};

/* An AsyncResult: one apply (n = 1) or one map/imap call. */
struct pm_result {
	pm_pool		*pool;		/* NULL once the pool is gone */
	enum jkind	 kind;
	const char	*fn;
	size_t		 n;
	size_t		 chunk;
	size_t		 next;		/* next task to hand out */
	size_t		 ended;		/* tasks answered, failed or cancelled */
	const pm_bytes	*in;
	pm_bytes	*out;
	int		 out_ext;	/* out is the caller's array */
	uint8_t		*st;		/* enum tstate per task */
	struct pmc_terr	*errs;		/* per task, made on the first failure */
	int		 code;		/* first failure by index */
	char		*error;
	size_t		 errat;
	pm_callback	*cb;
	void		*ud;
	int		 refs;		/* the pool's references */
	int		 user;		/* the caller holds the handle */
	int		 ready;
	int		 taken;		/* results handed to the caller */
	int		 in_cb;
	int		 queued;
	struct pm_result *qnext, *qprev;	/* the pool's queue */
	struct pm_result *anext, *aprev;	/* every job of the pool */
	struct pm_result *cbnext;		/* callbacks to run */
	/* imap */
	size_t		 consumed;
	size_t		*order;		/* unordered: completion order */
	size_t		 norder;
	size_t		 window;
	/* apply: storage in the same allocation */
	pm_bytes	 in1, out1;
	uint8_t		 st1;
	void		*own;		/* owned copy of the inputs */
};

struct pm_iter {
	pm_result	*job;
};

/* Tasks job->[start, start + count) */
struct pmc_span {
	pm_result	*job;
	size_t		 start;
	size_t		 count;
};

struct pmc_spanq {
	struct pmc_span	*v;
	size_t		 head;
	size_t		 len;
	size_t		 cap;
};

struct pmc_fr {
	size_t		 ntasks;
	size_t		 reported;
	int64_t		 sent_ns;
};

struct pmc_pw {
	pm_pool		*pool;
	struct pmc_pw	*next;
	uint64_t	 wid;
	pid_t		 pid;
	int		 pidfd;
	int		 channel;
	struct pmc_pending *spawn;	/* spawn request in flight */
	int		 starting;	/* channel given, no start report yet */
	unsigned	 events;	/* watch interest, 0 unwatched */
	struct wire_in	 in;
	struct wire_out	 out;
	struct pmc_spanq spans;		/* tasks sent, in order */
	size_t		 soff;		/* answered of the first span */
	struct pmc_fr	 fr[PMC_POOL_DEPTH];
	int		 fhead;
	int		 nfr;
	int64_t		 last_done_ns;
	uint64_t	 sent;
	uint64_t	 done;
	int		 eof;		/* channel ended */
	int		 exited;	/* pmd reported the end */
	int		 exitcode;
	int		 killed;	/* by us; record kept until Exited */
	int		 closing;	/* channel closed by us, idle pool */
	int		 dead;		/* record to free */
	/* start method fork: our child; pidfd is its sentinel */
	int		 forked;
	struct pmc_child child;
	struct pmc_pending *adopt;	/* pmd's answer, then the go */
	int		 sentinel_watched;
	int		 oom_killed;	/* pmd: the OOM killer, under memory_max */
	int		 retiring;	/* it leaves (maxmemoryperchild) */
	int		 retire;	/* resized away: no new tasks */
};

struct pm_pool {
	pm_conn		*conn;		/* NULL once detached */
	struct pmc_sub	*sub;		/* on conn: exits, loss, detach */
	uint64_t	 id;
	int		 nproc;
	int		 method;	/* PM_START_* */
	char		*module;	/* NULL: the program's own (fork) */
	char		*init;
	void		*initarg;
	size_t		 initarglen;
	int		 maxtasks;
	uint64_t	 memory_max;
	uint64_t	 maxmemory;	/* maxmemoryperchild */
	int		 child_fds[PMC_POOL_MAX_FDS];
	int		 parent_fds[PMC_POOL_MAX_FDS];	/* our dups */
	int		 nfds;
	enum pstate	 state;
	int		 lost;		/* the connection is gone */
	int		 creating;
	struct pmc_pw	*workers;
	unsigned	 nspawned;
	pm_result	*qhead, *qtail;
	pm_result	*all;
	struct pmc_spanq retry;		/* tasks to send again first */
	pm_result	*cbhead, *cbtail;
	size_t		 inflight;	/* tasks on workers */
	int		 busy;
	int		 doomed;	/* freed while busy */
	int64_t		 avg_ns;	/* task time, moving average */
	int		 early_deaths;
	int		 spawn_blocked;
	int		 spawn_code;
	char		 spawn_msg[256];
	uint8_t		*blob;
	size_t		 bloblen;
	size_t		 blobcap;
};

/*
 * pool.c: every entry (public call, watch, reply, connection event) is
 * wrapped in enter/leave; leaving the outermost runs the callbacks of
 * jobs that became ready, then frees the dead worker records, then the
 * pool itself if it was freed meanwhile.
 */
void	 pmc_pool_enter(pm_pool *);
void	 pmc_pool_leave(pm_pool *);

/* pooljob.c: runs of tasks (spans), jobs and their queue, and the tasks
 * to send again.  A span held in a queue holds a reference to its job. */
/* A job of n tasks calling fn, in p's list, held by the caller; extra
 * bytes after fn's name (apply's copied argument). */
pm_result *pmc_job_new(pm_pool *, enum jkind, const char *fn, size_t n,
	    size_t extra);
void	 pmc_job_free(pm_result *);
/* Queued behind the others; a job of no task is ready at once. */
void	 pmc_job_enqueue(pm_pool *, pm_result *);
int	 pmc_spanq_push(struct pmc_spanq *, pm_result *, size_t start,
	    size_t count);
struct pmc_span *pmc_spanq_first(struct pmc_spanq *);
void	 pmc_spanq_pop(struct pmc_spanq *);
void	 pmc_pool_run_callbacks(pm_pool *);
void	 pmc_job_maybe_free(pm_result *);
void	 pmc_job_unref(pm_result *);
void	 pmc_job_unqueue(pm_pool *, pm_result *);
/* Task i of j answered: data (malloc'd) is taken. */
void	 pmc_job_task_ok(pm_result *, size_t i, void *data, size_t len);
/* Task i of j failed (msg is copied); nothing if it had ended. */
void	 pmc_job_task_fail(pm_result *, size_t i, int code, const char *msg);
int	 pmc_pool_has_work(const pm_pool *);
/* Task i of j is to be sent again, first. */
void	 pmc_pool_retry(pm_pool *, pm_result *, size_t i);
/* Tasks of an imap job that may go out now (SIZE_MAX: no window). */
size_t	 pmc_job_window_room(const pm_result *);
/* The first queued job with a task that may go out, or NULL. */
pm_result *pmc_pool_next_job(pm_pool *);
/* Work is queued but no worker is left or coming: fail it. */
void	 pmc_pool_starved(pm_pool *, int code, const char *msg);

/* poolwire.c: the channels' traffic */
void	 pmc_pw_watch(struct pmc_pw *, unsigned events);
/* Tasks sent to w and not answered yet. */
size_t	 pmc_pw_outstanding(const struct pmc_pw *);
/* The next answer of w is for (*job, *i); -1: none expected. */
int	 pmc_pw_next_task(struct pmc_pw *, pm_result **job, size_t *i);
void	 pmc_pw_read(struct pmc_pw *, int drain);
/* Sends what is queued to the workers that may take it. */
void	 pmc_pool_dispatch(pm_pool *);

/* poolproc.c: worker records */
int	 pmc_pw_live(const struct pmc_pw *);
void	 pmc_pw_close_channel(struct pmc_pw *);
/* Forgets w's channel and pidfd (a forked one is killed and reaped): it
 * is dead, freed on the pool's way out. */
void	 pmc_pw_release(struct pmc_pw *);
void	 pmc_pw_kill(struct pmc_pw *);
void	 pmc_pw_give_back(struct pmc_pw *, int fail_running, int code,
	    const char *msg, pm_result *except);
/* w's channel ended (or spoke nonsense). */
void	 pmc_pw_eof(struct pmc_pw *);
void	 pmc_pool_trim(pm_pool *);
/* Asks for one more worker (start method fork: forks it). */
int	 pmc_pw_spawn(pm_pool *);
/* Live workers; *spawning: those asked for or starting. */
int	 pmc_pool_count(pm_pool *, int *spawning);
void	 pmc_pool_fill(pm_pool *);
int	 pmc_pw_start_report(struct pmc_pw *, struct pm_frame *);
void	 pmc_pw_start_failed(struct pmc_pw *, int code, const char *msg);
void	 pmc_pool_idle_check(pm_pool *);
/* w ended with code (-signo when killed). */
void	 pmc_pw_exited(struct pmc_pw *, int code);
/* pmd's Exited for a worker of p (forked ones are reaped here). */
void	 pmc_pool_exited(pm_pool *, const Pm__Exited *);

/* poolfork.c */
int	 pmc_pw_fork(pm_pool *);

#endif
