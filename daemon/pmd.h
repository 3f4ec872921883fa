/*
 * pmd.h - the map of the daemon: configuration, the broker's state,
 * sessions and workers, and the prototypes grouped by file.
 *
 * Processes: the broker (pmd.c, broker.c, workers.c) runs the libevent
 * loop; the forker (forker.c) is a fresh exec of pmd that only forks
 * workers; a worker (worker.c) is cloned from the forker as the broker's
 * child and runs one task function or program.
 */
#ifndef PMD_H
#define PMD_H

#include <sys/queue.h>
#include <sys/resource.h>
#include <sys/types.h>

#include <stdint.h>
#include <time.h>

#include <event2/event.h>

/* uthash: a failed allocation sets pmd_hash_oom (objects.c) and leaves
 * the table as it was, instead of exiting. */
extern int pmd_hash_oom;
#define HASH_NONFATAL_OOM	1
#define uthash_nonfatal_oom(e)	do { pmd_hash_oom = 1; } while (0)
#include <uthash.h>

#include "wire.h"
#include "pm.pb-c.h"

#define PMD_VERSION		"0.1.0"
#define PMD_SYSTEM_SOCKET	"/run/pmd/pmd.sock"
#define PMD_MODULE_PATH		"/usr/local/lib/pmd:/usr/lib/pmd"

/* Default bounds; each is a config key. */
#define PMD_MAX_WORKERS		4096
#define PMD_PRESTART_WORKERS	8	/* idle workers kept ready */
#define PMD_PRESTART_FAILS	16	/* idle deaths in a row: stop */
#define PMD_PRESTART_INFLIGHT	2	/* clones asked ahead at a time */
#define PMD_HANDOFF_TIMEOUT	1.0	/* s to hand an idle worker its frame */
#define PMD_CLAIM_PER_UID	4	/* workers a uid's clients hold ahead */
#define PMD_CLAIM_MAX		4	/* workers one Claim takes */
#define PMD_MAX_CLIENTS		4096
#define PMD_MAX_FRAME		PM_WIRE_MAX_FRAME
#define PMD_MAX_FRAME_CEIL	(1u << 30) /* the largest max_frame allowed */
#define PMD_FORKER_FRAME	4096	/* bytes of a frame between broker and
					 * forker: ids and errnos only */
#define PMD_KILL_GRACE		1.0	/* s between SIGTERM and SIGKILL */
#define PMD_MAX_OUTBUF		(64u << 20) /* unread replies per client */
#define PMD_MAX_PRELOAD		32
#define PMD_MAX_ALLOW		64
#define PMD_MAX_NAME		256	/* worker name bytes */
#define PMD_MAX_PATH		4096
#define PMD_MAX_ARGS		4096	/* argv + envp entries */
#define PMD_MAX_GROUPS		65536	/* a client's groups (NGROUPS_MAX) */
#define PMD_PRIVATE_IDLE	30.0	/* s a private pmd waits for a client */
#define PMD_STATUS_PERIOD	1.0	/* s between STATUS= updates */
#define PMD_ACCEPT_BACKOFF	0.1	/* s of accept pause when out of fds */
#define PMD_RATE_UIDS		256	/* uids tracked by spawn_rate at once */
#define PMD_FORKER_RETRY	1.0	/* s between forker restart attempts */
#define PMD_MMAP_THRESHOLD	(128u << 10) /* larger allocations: own mmap */
#define PMD_FORKER_STACK	(64u << 10) /* its stack until it execs */

/* Queue bounds (queues.c); each is a config key. */
#define PMD_MAX_QUEUES		1024	/* named queues in all */
#define PMD_MAX_QUEUE_ITEMS	1000000	/* items per queue */
#define PMD_MAX_QUEUE_BYTES	(256ull << 20)	/* payload bytes per queue */
#define PMD_MAX_ITEM_SIZE	(1u << 30)	/* bytes per item */
#define PMD_MAX_QUEUE_FD_ITEMS	4096	/* items held as memfds, in all */
#define PMD_MAX_TOTAL_QUEUE_BYTES (1ull << 30)	/* all queues, parked puts */
#define PMD_MAX_QUEUE_WAITERS	65536	/* parked requests in all */
/* Per-uid shares (uids.c): unset, a bound's share is the whole of it on a
 * pmd that serves its own uid only, 1/PMD_UID_SHARE_DIV of it on one that
 * serves others (root, allow_uids). */
#define PMD_UID_SHARE_DIV	4
#define PMD_BUFFER_FRAMES_PER_UID 16	/* max_buffer_bytes_per_uid unset:
					   this many max_frame (256 MiB) */
#define PMD_MAX_QUEUE_NAME	255	/* bytes of a queue name */
#define PMD_QUEUE_FRAME_SLACK	4096	/* frame bytes besides one item */
#define PMD_MAX_WAIT		(366.0 * 86400) /* s; longer waits: forever-ish */
#define PMD_ITEM_SIZE_CEIL	UINT32_MAX	/* big items go by memfd */

/* Dict bounds (dicts.c); each is a config key. */
#define PMD_MAX_DICTS		1024	/* dicts in all */
#define PMD_MAX_DICT_KEYS	1000000	/* keys per dict */
#define PMD_MAX_DICT_BYTES	(256ull << 20)	/* key and value bytes per dict */
#define PMD_MAX_DICT_KEY_SIZE	(64u << 10)	/* bytes per key */
#define PMD_MAX_DICT_VALUE_SIZE	(4u << 20)	/* bytes per value */
/* Shared-object bounds (objects.c); each is a config key. */
#define PMD_MAX_OBJECTS		4096	/* named objects in all */
#define PMD_MAX_OBJECTS_PER_UID	1024
#define PMD_MAX_SEGMENT_SIZE	(1ull << 30)	/* bytes of one segment */
#define PMD_MAX_OBJECT_BYTES_PER_UID (1ull << 30) /* segments of one uid */
#define PMD_MAX_OBJECT_BYTES	(4ull << 30)	/* segments in all */

/* Rendezvous bounds (listeners.c); each is a config key. */
#define PMD_MAX_LISTENERS	1024	/* listeners in all */
#define PMD_MAX_LISTEN_BACKLOG	128	/* connects (accepts) waiting, each */

/* Start latency histogram (spawn request to the worker's report), s. */
#define PMD_START_BOUNDS { 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, \
	0.1, 0.25, 0.5, 1.0, 2.5, 5.0 }
#define PMD_START_BUCKETS	13

/* What the forker ignores; a worker sets them back to default. */
#define FORKER_IGNORED_SIGNALS	{ SIGINT, SIGTERM, SIGHUP, SIGPIPE }

enum { LOG_ERR_ = 0, LOG_WARN_, LOG_INFO_, LOG_DEBUG_ };

struct pmd_config {
	char		*socket;
	int		 socket_default; /* no --socket: pmd makes its dir */
	int		 socket_mode;
	char		*module_path;
	char		*preload[PMD_MAX_PRELOAD];
	int		 npreload;
	int		 log_level;
	int		 max_workers;
	int		 max_workers_per_uid;
	int		 prestart_workers; /* idle workers kept ready, 0 none */
	int		 prestart_workers_per_uid; /* claimed ahead by a uid */
	int		 max_clients;
	int		 max_clients_per_uid;
	uint32_t	 max_frame;
	double		 kill_grace;
	int		 spawn_rate;	/* spawns/s per uid, 0 = unbounded */
	uid_t		 allow_uids[PMD_MAX_ALLOW];
	int		 nallow;
	int		 allow_all;
	gid_t		 admin_gid;
	int		 has_admin_group;
	int		 private_mode;	/* exit when the last client leaves */
	/* queues (queues.c) */
	int		 max_queues;
	int		 max_queue_items;
	uint64_t	 max_queue_bytes;
	uint32_t	 max_item_size;
	int		 max_queue_fd_items;
	uint64_t	 max_total_queue_bytes;	/* queues and dicts */
	int		 max_queue_waiters;
	/* per-uid shares of the queue bounds; config_finish fills them */
	int		 max_queues_per_uid;
	int		 max_queue_fd_items_per_uid;	/* -1 until filled */
	int		 max_queue_waiters_per_uid;
	uint64_t	 max_total_queue_bytes_per_uid;	/* queue items */
	uint64_t	 max_buffer_bytes_per_uid;
	/* dicts (dicts.c) */
	int		 max_dicts;
	int		 max_dict_keys;
	uint64_t	 max_dict_bytes;
	uint32_t	 max_dict_key_size;
	uint32_t	 max_dict_value_size;
	/* shared objects (objects.c) */
	int		 max_objects;
	int		 max_objects_per_uid;
	uint64_t	 max_segment_size;
	uint64_t	 max_object_bytes_per_uid;
	uint64_t	 max_object_bytes;
	/* rendezvous (listeners.c) */
	int		 max_listeners;
	int		 max_listen_backlog;
	int		 ready_fd;
	int		 forker_fd;	/* >= 0: run as the forker */
	int		 runner_fds;	/* >= 0: run as a spawned worker */
	pid_t		 runner_broker;	/* its broker, for the runner */
};

struct qwaiter;
TAILQ_HEAD(qwaiterq, qwaiter);

/* What one client uid holds (uids.c). */
struct uid_use {
	LIST_ENTRY(uid_use) entry;
	uid_t		 uid;
	uint64_t	 refs;		/* sessions, queues, items pointing here */
	int		 sessions;
	int		 queues;	/* queues it owns */
	int		 waiters;	/* its parked queue requests */
	int		 fd_items;	/* memfd items it put, still held */
	uint64_t	 queue_bytes;	/* items it put, queued or parked */
	uint64_t	 buffered;	/* its connections' buffers (broker.c) */
};

struct session {
	TAILQ_ENTRY(session) entry;
	uint64_t	 id;
	int		 fd;
	struct event	*rev;
	struct event	*wev;
	struct wire_in	 in;
	struct wire_out	 out;
	uid_t		 uid;
	gid_t		 gid;
	pid_t		 pid;
	gid_t		*groups;
	int		 ngroups;
	int		 hello;		/* Hello accepted */
	int		 closing;	/* drop once output is flushed */
	int		 paused;	/* not read: its replies are unread */
	int		 eof;		/* shut its sending side (half-closed) */
	int		 corked;	/* replies queued, flushed after the read */
	struct event	*eof_ev;	/* half-closed: is the client still there */
	struct qwaiterq	 parked;	/* its parked queue requests (queues.c) */
	char		 name[64];
	struct uid_use	*use;		/* its uid's */
	uint64_t	 buffered;	/* counted in use->buffered */
};

enum wstate {
	W_FORKING,			/* asked the forker */
	W_RUNNING,			/* cloned: it reports its start itself */
	W_IDLE,				/* pre-started, waiting to be claimed */
	W_CLAIMED,			/* a client's, waiting for its Spawn */
};

struct worker {
	TAILQ_ENTRY(worker) entry;
	UT_hash_handle	 hh_wid;	/* workers.c's lookups */
	UT_hash_handle	 hh_pid;
	int		 wid_hashed;
	int		 pid_hashed;
	uint64_t	 wid;
	enum wstate	 state;
	pid_t		 pid;
	int		 pidfd;
	struct event	*ev;		/* pidfd readable: reap */
	struct event	*kill_ev;	/* SIGKILL after the grace */
	struct session	*owner;		/* NULL once the client has gone */
	uint32_t	 spawn_id;	/* request to answer */
	int		 client_channel; /* until handed over in the reply */
	uid_t		 uid;
	pid_t		 owner_pid;
	Pm__Kind	 kind;
	int		 daemonic;
	char		*name;
	char		*target;
	struct timespec	 started;
	double		 requested;	/* now_mono() of the spawn request */
	/* pool workers (issue 3) */
	uint64_t	 pool;		/* pool id from the Spawn, 0 none */
	int		 stats_fd;	/* memfd: tasks done at 0, -1 none */
	uint32_t	 forker_gen;	/* the forker asked to fork it */
	/* caps (cgroup.c) */
	uint64_t	 memory_max;	/* bytes, 0 none */
	double		 cpu_max;	/* CPUs, 0 none */
	char		*cg_mem;	/* its cgroup (v2, or v1 memory) */
	char		*cg_cpu;	/* its v1 cpu cgroup */
	Pm__StartMethod	 method;
	int		 adopted;	/* forked by its client, which reaps it */
	/* pre-started (prestart.c): cloned ahead, claimed by a spawn */
	int		 prestart;	/* not claimed yet */
	int		 idle_fd;	/* its idle socket until claimed, or -1 */
	TAILQ_ENTRY(worker) idle_entry;	/* pmd->idle while W_IDLE */
	struct event	*idle_ev;	/* W_CLAIMED: its Running */
};

TAILQ_HEAD(sessionq, session);
TAILQ_HEAD(workerq, worker);

struct rate {				/* spawn_rate window of one uid */
	uid_t		 uid;
	double		 stamp;		/* window start, 0: slot free */
	int		 count;
};

struct pmd {
	struct event_base *base;
	struct rate	 rates[PMD_RATE_UIDS];
	struct event	*forker_retry;
	unsigned	 forker_retries; /* failed restarts in a row */
	struct pmd_config  cfg;
	int		 listen_fd;
	int		 activated;	/* socket came from systemd */
	struct event	*accept_ev;
	struct event	*accept_timer;
	struct sessionq	 sessions;
	int		 nsessions;
	struct workerq	 workers;
	int		 nworkers;	/* our children */
	int		 nadopted;	/* clients' forks we list (Adopt) */
	/* pre-started workers (prestart.c), not in nworkers */
	struct workerq	 idle;		/* W_IDLE, oldest first */
	int		 nidle;
	int		 nprestarting;	/* asked of the forker */
	int		 prestart_fails; /* died or failed unclaimed, in a row */
	uint64_t	 prestart_claimed;
	int		 nclaimed;	/* W_CLAIMED */
	struct event	*prestart_ev;
	uint64_t	 next_wid;
	uint64_t	 next_session;
	/* the forker */
	pid_t		 forker_pid;
	int		 forker_pidfd;
	int		 forker_fd;
	struct event	*forker_rev;
	struct event	*forker_wev;
	struct event	*forker_death_ev;
	struct wire_in	 forker_in;
	struct wire_out	 forker_out;
	uint32_t	 forker_gen;	/* bumped by each forker death */
	/* a dead forker's socket, read until every worker it cloned has
	 * reported (they hold it until then) */
	int		 drain_fd;
	uint32_t	 drain_gen;
	struct event	*drain_ev;
	struct wire_in	 drain_in;
	/* lifecycle */
	int		 stopping;
	int		 had_client;
	struct event	*stop_timer;
	struct event	*idle_timer;
	struct event	*status_timer;
	struct event	*watchdog_timer;
	struct timespec	 start;
	uid_t		 euid;
	struct rlimit	 nofile0;	/* RLIMIT_NOFILE as pmd started */
	int		 reaper;	/* PID 1 or a subreaper: orphans are
					 * ours to reap */
	/* counters */
	uint64_t	 spawned;
	uint64_t	 reaped;
	uint64_t	 spawn_failed;
	uint64_t	 oom_killed;
	uint64_t	 pool_tasks;	/* done by reaped pool workers */
	uint64_t	 queue_puts;	/* items in and out of queues */
	uint64_t	 queue_gets;
	uint64_t	 start_hist[PMD_START_BUCKETS]; /* start latency */
	double		 start_sum;
	uint64_t	 start_count;
	uint64_t	 requests;
};

extern struct pmd *pmd;

/* log.c */
void	log_init(int level);
void	log_setlevel(int level);
void	log_err(const char *, ...) __attribute__((format(printf, 1, 2)));
void	log_warn(const char *, ...) __attribute__((format(printf, 1, 2)));
void	log_info(const char *, ...) __attribute__((format(printf, 1, 2)));
void	log_debug(const char *, ...) __attribute__((format(printf, 1, 2)));
void	fatal(const char *, ...) __attribute__((format(printf, 1, 2), noreturn));
int	log_level_parse(const char *);

/* config.c */
void	config_defaults(struct pmd_config *);
/* 0 ok; -1 with a message already printed (exit 2). */
int	config_args(struct pmd_config *, int argc, char *argv[], int pass);
int	config_file(struct pmd_config *, const char *path);
/* Fills the per-uid shares not set (config_args does): a part of their
 * bound when pmd serves uids besides its own, all of it otherwise; 0, or
 * -1 with a message printed on a bad combination. */
int	config_finish(struct pmd_config *);
const char *config_path(int argc, char *argv[]);
void	config_free(struct pmd_config *);

/* broker.c */
int	broker_listen(void);
int	broker_events_init(void);
void	broker_accept_cb(evutil_socket_t, short, void *);
/* 0 queued; -1 not (refused with an error reply, or closing): the
 * caller keeps what the frame would have handed over (fds are closed). */
int	session_send(struct session *, uint32_t type, uint32_t id,
	    const ProtobufCMessage *m, const int *fds, int nfds);
void	session_error(struct session *, uint32_t id, int code,
	    const char *fmt, ...) __attribute__((format(printf, 4, 5)));
int	session_is_admin(const struct session *);
int	session_alive(const struct session *);
/* 0 if a reply m to request id may be queued for s (session_send will
 * take it); -1 if not: s has had an error reply instead, or is going. */
int	session_admit(struct session *, uint32_t id, const ProtobufCMessage *m);
void	session_unparked(struct session *);	/* queues.c: one answered */
void	broker_stop(const char *why);
void	broker_check_idle(void);
void	broker_close_all(void);
double	now_mono(void);

/* workers.c */
int	forker_start(void);
void	forker_stop(void);
void	forker_flush(void);
void	worker_link(struct worker *);
void	worker_unlink(struct worker *);
void	worker_free(struct worker *);
void	worker_discard(struct worker *);
void	worker_reap_cb(evutil_socket_t, short, void *);
void	worker_forked(struct worker *);
int	workers_room(struct session *, uint32_t id);
void	handle_spawn(struct session *, struct pm_frame *);
void	handle_signal(struct session *, struct pm_frame *);
void	handle_ps(struct session *, struct pm_frame *);
void	handle_adopt(struct session *, struct pm_frame *);
void	workers_owner_gone(struct session *);
void	workers_terminate_all(int sig);
void	workers_stats(Pm__StatusReply *, double *le, uint64_t *bucket);
int	workers_count_uid(uid_t);
void	workers_reap_orphans(void);

/* queues.c: named queues, parked requests */
void	handle_q_open(struct session *, struct pm_frame *);
void	handle_q_put(struct session *, struct pm_frame *);
void	handle_q_get(struct session *, struct pm_frame *);
void	handle_q_task_done(struct session *, struct pm_frame *);
void	handle_q_join(struct session *, struct pm_frame *);
void	handle_q_shutdown(struct session *, struct pm_frame *);
void	handle_q_unlink(struct session *, struct pm_frame *);
void	handle_q_stat(struct session *, struct pm_frame *);
void	handle_q_list(struct session *, struct pm_frame *);
void	queues_session_gone(struct session *);	/* drops its parked requests */
/* 1-255 bytes without control characters: a name in any namespace. */
int	name_valid(const char *name);
void	queues_free_all(void);
uint64_t queues_bytes(void);
int	objects_count(void);
uint64_t objects_bytes(void);			/* payload held, parked puts too */

/* dicts.c: shared dicts */
void	handle_d_open(struct session *, struct pm_frame *);
void	handle_d_set(struct session *, struct pm_frame *);
void	handle_d_get(struct session *, struct pm_frame *);
void	handle_d_del(struct session *, struct pm_frame *);
void	handle_d_pop(struct session *, struct pm_frame *);
void	handle_d_len(struct session *, struct pm_frame *);
void	handle_d_keys(struct session *, struct pm_frame *);
void	handle_d_incr(struct session *, struct pm_frame *);
void	handle_d_cas(struct session *, struct pm_frame *);
void	handle_d_clear(struct session *, struct pm_frame *);
uint64_t dicts_bytes(void);

/* listeners.c: named rendezvous for pipes */
void	handle_l_listen(struct session *, struct pm_frame *);
void	handle_l_accept(struct session *, struct pm_frame *);
void	handle_l_connect(struct session *, struct pm_frame *);
void	handle_l_close(struct session *, struct pm_frame *);
void	listeners_session_gone(struct session *);
void	listeners_free_all(void);

/*
 * objects.c: the named shared objects, one namespace for every kind
 * (kind: an ObjKind of pm.proto).  A segment kind holds its memfd in fd;
 * a kind pmd hosts itself keeps its state in data, and ops says how to
 * free it and print its state.  Lookup is by name (a hash table).
 */
struct object;
struct object_ops {
	void	(*free)(struct object *);	/* releases fd or data */
	void	(*state)(const struct object *, char *buf, size_t len);
};
struct object {
	char		*name;
	int		 kind;
	uid_t		 uid;		/* owner */
	uint32_t	 flags;		/* PM_O_SHARED and the kind's own */
	uint64_t	 bytes;		/* counted against the bounds */
	int		 fd;		/* the segment, -1 none */
	void		*data;		/* a hosted kind's state */
	const struct object_ops *ops;
	UT_hash_handle	 hh;
};
void	handle_obj_open(struct session *, struct pm_frame *);
void	handle_obj_unlink(struct session *, struct pm_frame *);
void	handle_obj_list(struct session *, struct pm_frame *);
struct object *object_find(const char *name);
int	object_access(const struct session *, const struct object *);
/* An existing name opened as kind with PM_O_* flags: access, kind and
 * the squatting rule checked; NULL with the error sent, or *absent. */
struct object *object_lookup(struct session *, uint32_t id, const char *name,
	    int kind, uint32_t flags, int *absent);
/* A new object within the bounds; NULL with the error sent. */
struct object *object_add(struct session *, uint32_t id, const char *name,
	    int kind, uint32_t flags, uint64_t bytes, const struct object_ops *);
void	object_remove(struct object *);		/* ops->free, then gone */
void	objects_free_all(void);

/* uids.c: per-uid usage */
struct uid_use *uid_use_get(uid_t);	/* a reference; NULL: out of memory */
void	uid_use_put(struct uid_use *);
uint64_t uid_share(uint64_t bound);

/* notify.c: the systemd service protocol */
#define LISTEN_FDS_START	3
void	notify(const char *, ...) __attribute__((format(printf, 1, 2)));
int	notify_listen_fds(void);
uint64_t notify_watchdog_usec(void);

/* cgroup.c: per-worker caps */
int	cgroup_create(struct worker *, char **procs, char *why, size_t cap);
int	cgroup_oom_killed(const struct worker *);
void	cgroup_remove(struct worker *);
void	cgroup_cleanup(void);

/* prestart.c: pre-started workers */
void	prestart_fill(void);
void	prestart_later(void);
void	prestart_forked(struct worker *);
void	prestart_forget(struct worker *);
void	prestart_failed(struct worker *);
struct worker *prestart_take(void);
int	prestart_hand(struct worker *, const Pm__Fork *, int *fds, int n);
void	prestart_stop(void);
void	handle_claim(struct session *, struct pm_frame *);
void	prestart_owner_gone(struct worker *);

/* forker.c */
extern pid_t forker_broker_pid;
int	forker_main(struct pmd_config *, const char *socket_path)
	    __attribute__((noreturn));

/* runner.c: start method spawn.  runner_exec returns only on failure. */
int	runner_exec(const struct pmd_config *, const char *socket_path,
	    const Pm__Fork *, int *fds, int nfds);
void	runner_main(struct pmd_config *, const char *socket_path)
	    __attribute__((noreturn));

/* worker.c: runs in the freshly cloned worker; never returns.  fds: the
 * Fork frame's, the last one the memfd holding the request.  worker_run:
 * the same in the runner a spawned worker execs (spec: the request's
 * memfd, fds without it). */
void	worker_main(const struct pmd_config *, const char *socket_path,
	    uint64_t wid, int *fds, int nfds, int broker, int prestart)
	    __attribute__((noreturn));
void	worker_run(const struct pmd_config *, const char *socket_path,
	    int spec, int *fds, int nfds) __attribute__((noreturn));

#endif
