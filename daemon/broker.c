/*
 * broker.c - the broker's client side: the listening socket, sessions
 * (authentication, framing, output), the request table, and stopping.
 */
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/un.h>

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <limits.h>
#include <malloc.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "pmd.h"
#include "queue.pb-c.h"
#include "dict.pb-c.h"

#define SESSION_CORK_MAX	(256u << 10) /* replies held while reading */
/*
 * Backpressure: a client whose replies pile up unread is not read from
 * until they drain, so requests wait in its socket, not in pmd's memory.
 * PMD_MAX_OUTBUF still bounds what is sent unasked (exits, queue items).
 */
#define SESSION_OUT_HIGH	(1u << 20)	/* stop reading requests */
#define SESSION_OUT_LOW		(256u << 10)	/* read them again */
/*
 * A half-closed client (it shut its sending side) is still answered; while
 * it has requests parked, this often pmd checks that it has not gone (no
 * event tells: its socket reads EOF from the start).
 */
#define SESSION_EOF_CHECK	1.0		/* s */
/* Frames this small (errors, events, most replies) are never refused for
 * the uid's buffer share; per connection, PMD_MAX_OUTBUF bounds them. */
#define SESSION_SMALL_FRAME	(4u << 10)
/*
 * fds kept for the sessions there are (spawns pass stdio, get pidfds and
 * channels): a connection that would eat into them is refused with an
 * error, so clients get PM_ELIMIT, not a dropped request.
 */
#define FD_RESERVE_MIN		8
#define FD_RESERVE_MAX		256

static long	fd_reserve_above = -1;	/* highest fd a session may have */

static void	session_read_cb(evutil_socket_t, short, void *);
static void	session_write_cb(evutil_socket_t, short, void *);
static void	session_eof_cb(evutil_socket_t, short, void *);
static void	session_free(struct session *);
static void	session_process(struct session *);

/* Reading paused for backpressure (not for closing). */
static int
session_paused(const struct session *s)
{
	return s->paused && !s->closing;
}

/*
 * Marks s to be dropped once its output is out.  Its write callback runs
 * next in any case and frees it when nothing is left to send, so that a
 * closing session is freed whoever noticed: one of its own callbacks, or
 * another's (a parked request's timer, a worker's exit) after which no
 * event of its own might come.
 */
static void
session_set_closing(struct session *s)
{
	s->closing = 1;
	event_active(s->wev, EV_WRITE, 1);
}

/* Whether replies can still reach s's client: not closing, and its
 * socket not shut both ways (a half-closed client still reads). */
int
session_alive(const struct session *s)
{
	struct pollfd pfd;

	if (s->closing)
		return 0;
	pfd.fd = s->fd;
	pfd.events = 0;
	pfd.revents = 0;
	return !(poll(&pfd, 1, 0) == 1 &&
	    (pfd.revents & (POLLHUP | POLLERR | POLLNVAL)));
}

double
now_mono(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* ---- memory per uid ---- */

/* Counts s's buffers, replies unread and requests not yet whole, in its
 * uid's (max_buffer_bytes_per_uid). */
static void
session_account(struct session *s)
{
	uint64_t now = wire_out_pending(&s->out) + wire_in_pending(&s->in);

	s->use->buffered = s->use->buffered - s->buffered + now;
	s->buffered = now;
}

/* Whether a frame of len bytes for s fits its uid's buffer share; small
 * ones (errors, events) always do, bounded per connection. */
static int
session_room(const struct session *s, uint64_t len)
{
	return len <= SESSION_SMALL_FRAME ||
	    s->use->buffered + len <= pmd->cfg.max_buffer_bytes_per_uid;
}

/* ---- output ---- */

static void
session_flush(struct session *s)
{
	int r = wire_out_flush(&s->out, s->fd);

	if (r == -1) {
		log_debug("%s: session %llu: %s", __func__,
		    (unsigned long long)s->id, strerror(errno));
		wire_out_free(&s->out);
		wire_out_init(&s->out);
	}
	session_account(s);
	if (r == -1) {
		session_set_closing(s);
		return;
	}
	/* paused: the write callback resumes reading once drained */
	if (wire_out_pending(&s->out) > 0 || session_paused(s))
		event_add(s->wev, NULL);
	else if (!s->closing)
		event_del(s->wev);
}

int
session_admit(struct session *s, uint32_t id, const ProtobufCMessage *m)
{
	uint64_t len;

	if (s->closing && wire_out_pending(&s->out) == 0)
		return -1;
	if (wire_out_pending(&s->out) > PMD_MAX_OUTBUF) {
		log_warn("session %llu (pid %d) does not read its replies; "
		    "dropped", (unsigned long long)s->id, (int)s->pid);
		wire_out_free(&s->out);
		wire_out_init(&s->out);
		session_account(s);
		session_set_closing(s);
		return -1;
	}
	/* the size matters only near the share */
	if (session_room(s, PM_WIRE_HDR + (uint64_t)pmd->cfg.max_frame))
		return 0;
	len = PM_WIRE_HDR + (m ? protobuf_c_message_get_packed_size(m) : 0);
	if (session_room(s, len))
		return 0;
	session_error(s, id, PM__CODE__C_LIMIT, "uid %u's connections hold "
	    "%llu bytes of unread replies and partial requests; a reply of "
	    "%llu bytes is above max_buffer_bytes_per_uid", (unsigned)s->uid,
	    (unsigned long long)s->use->buffered, (unsigned long long)len);
	return -1;
}

int
session_send(struct session *s, uint32_t type, uint32_t id,
    const ProtobufCMessage *m, const int *fds, int nfds)
{
	if (session_admit(s, id, m) == -1) {
		while (nfds > 0)
			close(fds[--nfds]);
		return -1;
	}
	if (wire_out_frame(&s->out, type, id, m, fds, nfds) == -1) {
		log_warn("%s: %s", __func__, strerror(errno));	/* fds closed */
		session_set_closing(s);
		return -1;
	}
	session_account(s);
	/* try at once (after the batch being read, when corked); EV_WRITE
	 * only while something is left */
	if (!s->corked || wire_out_pending(&s->out) >= SESSION_CORK_MAX)
		session_flush(s);
	return 0;
}

void
session_error(struct session *s, uint32_t id, int code, const char *fmt, ...)
{
	Pm__Error e = PM__ERROR__INIT;
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	e.code = code;
	e.message = msg;
	if (code == PM__CODE__C_SYS)
		e.sys_errno = errno;
	session_send(s, PM__TYPE__T_ERROR, id, &e.base, NULL, 0);
}

/* ---- authorization ---- */

static int
uid_allowed(uid_t uid)
{
	int i;

	if (pmd->euid == 0 || uid == pmd->euid || pmd->cfg.allow_all)
		return 1;
	for (i = 0; i < pmd->cfg.nallow; i++)
		if (pmd->cfg.allow_uids[i] == uid)
			return 1;
	return 0;
}

int
session_is_admin(const struct session *s)
{
	int i;

	if (s->uid == 0 || s->uid == pmd->euid)
		return 1;
	if (!pmd->cfg.has_admin_group)
		return 0;
	if (s->gid == pmd->cfg.admin_gid)
		return 1;
	for (i = 0; i < s->ngroups; i++)
		if (s->groups[i] == pmd->cfg.admin_gid)
			return 1;
	return 0;
}

/* The client's supplementary groups, which its workers take: as many as
 * it has (when the first guess is short, the kernel says how many), up to
 * PMD_MAX_GROUPS.  -1 when they cannot be read: no worker may run with
 * fewer than its client has, so the client is refused. */
static int
session_peer(struct session *s)
{
	socklen_t len = 64 * sizeof(gid_t);
	gid_t *groups;
	int tries;

	for (tries = 0; tries < 2; tries++) {
		if ((groups = malloc(len)) == NULL)
			return -1;
		if (getsockopt(s->fd, SOL_SOCKET, SO_PEERGROUPS, groups,
		    &len) == 0) {
			s->ngroups = (int)(len / sizeof(gid_t));
			if (s->ngroups == 0) {
				free(groups);
				groups = NULL;
			}
			s->groups = groups;
			return 0;
		}
		free(groups);
		if (errno != ERANGE || len > PMD_MAX_GROUPS * sizeof(gid_t))
			return -1;
	}
	return -1;
}

/* Refuses a connection with a connection-level error (id 0). */
static void
refuse(int fd, int code, const char *msg)
{
	Pm__Error e = PM__ERROR__INIT;
	struct wire_out out;

	e.code = code;
	e.message = (char *)(uintptr_t)msg;
	wire_out_init(&out);
	if (wire_out_frame(&out, PM__TYPE__T_ERROR, 0, &e.base, NULL, 0) == 0)
		(void)wire_out_flush(&out, fd);
	wire_out_free(&out);
	close(fd);
}

/* ---- accept ---- */

static void
accept_resume_cb(evutil_socket_t fd, short ev, void *arg)
{
	if (!pmd->stopping)
		event_add(pmd->accept_ev, NULL);
}

void
broker_accept_cb(evutil_socket_t lfd, short ev, void *arg)
{
	struct session *s;
	struct ucred cred;
	socklen_t len = sizeof(cred);
	struct timeval tv;
	struct uid_use *use = NULL;
	char msg[128];
	static int starved;	/* out of fds, said once */
	int fd;

	if ((fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) == -1) {
		if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS ||
		    errno == ENOMEM) {
			/* out of fds: pause rather than spin */
			if (!starved++)
				log_warn("%s: %s; pausing accept until fds "
				    "free up", __func__, strerror(errno));
			event_del(pmd->accept_ev);
			tv.tv_sec = 0;
			tv.tv_usec = (suseconds_t)(PMD_ACCEPT_BACKOFF * 1e6);
			evtimer_add(pmd->accept_timer, &tv);
		}
		return;
	}
	if (fd_reserve_above >= 0 && fd > fd_reserve_above) {
		if (!starved++)
			log_warn("out of fds for new clients (fd %d); refusing "
			    "them until fds free up", fd);
		refuse(fd, PM__CODE__C_LIMIT, "pmd is out of file descriptors");
		return;
	}
	if (starved) {
		log_warn("accepting clients again (%d refused or paused)",
		    starved);
		starved = 0;
	}
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == -1) {
		close(fd);
		return;
	}
	if (!uid_allowed(cred.uid)) {
		log_info("refused uid %u (pid %d): not allowed", cred.uid,
		    cred.pid);
		refuse(fd, PM__CODE__C_PERM, "pmd does not serve this uid");
		return;
	}
	if ((use = uid_use_get(cred.uid)) == NULL ||
	    (s = calloc(1, sizeof(*s))) == NULL) {
		uid_use_put(use);
		refuse(fd, PM__CODE__C_NOMEM, "pmd is out of memory");
		return;
	}
	if (pmd->nsessions >= pmd->cfg.max_clients ||
	    use->sessions >= pmd->cfg.max_clients_per_uid) {
		log_warn("refused uid %u (pid %d): too many clients", cred.uid,
		    cred.pid);
		snprintf(msg, sizeof(msg), pmd->nsessions >=
		    pmd->cfg.max_clients ? "pmd has its max_clients of %d "
		    "connections" : "this uid has its max_clients_per_uid of %d "
		    "connections", pmd->nsessions >= pmd->cfg.max_clients ?
		    pmd->cfg.max_clients : pmd->cfg.max_clients_per_uid);
		refuse(fd, PM__CODE__C_LIMIT, msg);
		uid_use_put(use);
		free(s);
		return;
	}
	s->fd = fd;
	if (session_peer(s) == -1) {
		log_warn("refused uid %u (pid %d): cannot read its groups: %s",
		    cred.uid, cred.pid, strerror(errno));
		refuse(fd, PM__CODE__C_SYS, "pmd cannot read the client's "
		    "groups");
		uid_use_put(use);
		free(s);
		return;
	}
	s->use = use;
	use->sessions++;
	s->id = ++pmd->next_session;
	s->uid = cred.uid;
	s->gid = cred.gid;
	s->pid = cred.pid;
	wire_in_init(&s->in, pmd->cfg.max_frame);
	s->in.keep_lost = 1;	/* a request whose fds were lost is refused */
	wire_out_init(&s->out);
	s->rev = event_new(pmd->base, fd, EV_READ | EV_PERSIST,
	    session_read_cb, s);
	s->wev = event_new(pmd->base, fd, EV_WRITE | EV_PERSIST,
	    session_write_cb, s);
	s->eof_ev = event_new(pmd->base, -1, EV_PERSIST, session_eof_cb, s);
	TAILQ_INIT(&s->parked);
	if (s->rev == NULL || s->wev == NULL || s->eof_ev == NULL ||
	    event_add(s->rev, NULL) == -1) {
		session_free(s);
		return;
	}
	TAILQ_INSERT_TAIL(&pmd->sessions, s, entry);
	pmd->nsessions++;
	pmd->had_client = 1;
	if (pmd->idle_timer != NULL)
		evtimer_del(pmd->idle_timer);
	log_debug("session %llu: uid %u pid %d", (unsigned long long)s->id,
	    s->uid, s->pid);
}

/* ---- requests ---- */

static void
handle_hello(struct session *s, struct pm_frame *f)
{
	Pm__Hello *h;
	Pm__HelloReply r = PM__HELLO_REPLY__INIT;

	if ((h = pm__hello__unpack(NULL, f->len, f->data)) == NULL) {
		session_error(s, f->id, PM__CODE__C_PROTO, "malformed hello");
		session_set_closing(s);
		return;
	}
	if (h->version != PM_WIRE_VERSION) {
		session_error(s, f->id, PM__CODE__C_PROTO,
		    "protocol version %u not supported (pmd speaks %d)",
		    h->version, PM_WIRE_VERSION);
		session_set_closing(s);
		pm__hello__free_unpacked(h, NULL);
		return;
	}
	snprintf(s->name, sizeof(s->name), "%s", h->name ? h->name : "");
	pm__hello__free_unpacked(h, NULL);
	s->hello = 1;
	r.version = PM_WIRE_VERSION;
	r.server = (char *)(uintptr_t)"pmd " PMD_VERSION;
	r.pid = getpid();
	r.max_frame = pmd->cfg.max_frame;
	session_send(s, PM__TYPE__T_HELLO_REPLY, f->id, &r.base, NULL, 0);
}

static void
handle_status(struct session *s, struct pm_frame *f)
{
	Pm__StatusReply r = PM__STATUS_REPLY__INIT;
	double le[PMD_START_BUCKETS];
	uint64_t bucket[PMD_START_BUCKETS];
	struct timespec ts;
	char sock[PATH_MAX];

	clock_gettime(CLOCK_MONOTONIC, &ts);
	snprintf(sock, sizeof(sock), "%s", pmd->cfg.socket ?
	    pmd->cfg.socket : "");
	r.server = (char *)(uintptr_t)"pmd " PMD_VERSION;
	r.pid = getpid();
	r.uid = pmd->euid;
	r.uptime = (double)(ts.tv_sec - pmd->start.tv_sec) +
	    (ts.tv_nsec - pmd->start.tv_nsec) / 1e9;
	r.clients = (uint32_t)pmd->nsessions;
	r.workers = (uint32_t)pmd->nworkers;
	r.spawned = pmd->spawned;
	r.reaped = pmd->reaped;
	r.spawn_failed = pmd->spawn_failed;
	r.max_workers = (uint32_t)pmd->cfg.max_workers;
	r.max_clients = (uint32_t)pmd->cfg.max_clients;
	r.socket = sock;
	r.forker_pid = pmd->forker_pid;
	r.idle_workers = (uint32_t)pmd->nidle;
	r.prestart_workers = (uint32_t)pmd->cfg.prestart_workers;
	r.prestart_claimed = pmd->prestart_claimed;
	r.claimed_workers = (uint32_t)pmd->nclaimed;
	r.private_ = pmd->cfg.private_mode;
	r.requests = pmd->requests;
	r.queue_puts = pmd->queue_puts;
	r.queue_gets = pmd->queue_gets;
	r.objects = (uint32_t)objects_count();
	r.bytes_held = queues_bytes() + objects_bytes();
	workers_stats(&r, le, bucket);
	session_send(s, PM__TYPE__T_STATUS_REPLY, f->id, &r.base, NULL, 0);
}

static void
handle_ping(struct session *s, struct pm_frame *f)
{
	session_send(s, PM__TYPE__T_OK, f->id, NULL, NULL, 0);
}

static void
handle_shutdown(struct session *s, struct pm_frame *f)
{
	if (!session_is_admin(s)) {
		session_error(s, f->id, PM__CODE__C_PERM,
		    "shutdown needs root, pmd's uid or the admin group");
		return;
	}
	log_info("shutdown asked by uid %u pid %d", s->uid, (int)s->pid);
	session_send(s, PM__TYPE__T_OK, f->id, NULL, NULL, 0);
	broker_stop("shutdown requested");
}

static const struct {
	uint32_t type;
	void	(*fn)(struct session *, struct pm_frame *);
} handlers[] = {
	{ PM__TYPE__T_SPAWN,	handle_spawn },
	{ PM__TYPE__T_SIGNAL,	handle_signal },
	{ PM__TYPE__T_STATUS,	handle_status },
	{ PM__TYPE__T_PS,	handle_ps },
	{ PM__TYPE__T_PING,	handle_ping },
	{ PM__TYPE__T_ADOPT,	handle_adopt },
	{ PM__TYPE__T_CLAIM,	handle_claim },
	{ PM__TYPE__T_SHUTDOWN,	handle_shutdown },
	/* queues.c */
	{ PM__QUEUE_TYPE__Q_OPEN,	handle_q_open },
	{ PM__QUEUE_TYPE__Q_PUT,	handle_q_put },
	{ PM__QUEUE_TYPE__Q_GET,	handle_q_get },
	{ PM__QUEUE_TYPE__Q_TASK_DONE,	handle_q_task_done },
	{ PM__QUEUE_TYPE__Q_JOIN,	handle_q_join },
	{ PM__QUEUE_TYPE__Q_SHUTDOWN,	handle_q_shutdown },
	{ PM__QUEUE_TYPE__Q_UNLINK,	handle_q_unlink },
	{ PM__QUEUE_TYPE__Q_STAT,	handle_q_stat },
	{ PM__QUEUE_TYPE__Q_LIST,	handle_q_list },
	{ PM__DICT_TYPE__D_OPEN,	handle_d_open },
	{ PM__DICT_TYPE__D_SET,		handle_d_set },
	{ PM__DICT_TYPE__D_GET,		handle_d_get },
	{ PM__DICT_TYPE__D_DEL,		handle_d_del },
	{ PM__DICT_TYPE__D_POP,		handle_d_pop },
	{ PM__DICT_TYPE__D_LEN,		handle_d_len },
	{ PM__DICT_TYPE__D_KEYS,	handle_d_keys },
	{ PM__DICT_TYPE__D_INCR,	handle_d_incr },
	{ PM__DICT_TYPE__D_CAS,		handle_d_cas },
	{ PM__DICT_TYPE__D_CLEAR,	handle_d_clear },
	/* objects.c */
	{ PM__TYPE__T_OBJ_OPEN,		handle_obj_open },
	{ PM__TYPE__T_OBJ_UNLINK,	handle_obj_unlink },
	{ PM__TYPE__T_OBJ_LIST,		handle_obj_list },
	{ PM__LISTEN_TYPE__L_LISTEN,	handle_l_listen },
	{ PM__LISTEN_TYPE__L_ACCEPT,	handle_l_accept },
	{ PM__LISTEN_TYPE__L_CONNECT,	handle_l_connect },
	{ PM__LISTEN_TYPE__L_CLOSE,	handle_l_close },
};

static void
session_dispatch(struct session *s, struct pm_frame *f)
{
	size_t i;

	pmd->requests++;
	if (f->id == 0) {
		session_error(s, 0, PM__CODE__C_PROTO, "request without an id");
		session_set_closing(s);
		return;
	}
	if (!s->hello) {
		if (f->type == PM__TYPE__T_HELLO)
			handle_hello(s, f);
		else {
			session_error(s, f->id, PM__CODE__C_PROTO,
			    "hello must come first");
			session_set_closing(s);
		}
		return;
	}
	if (f->fds_lost) {
		/* the kernel could not give us the request's fds */
		log_warn("session %llu: request %u: out of fds to receive its "
		    "fds; refused", (unsigned long long)s->id, f->id);
		errno = EMFILE;
		session_error(s, f->id, PM__CODE__C_SYS, "pmd is out of file "
		    "descriptors: the request's fds were not received");
		return;
	}
	for (i = 0; i < sizeof(handlers) / sizeof(handlers[0]); i++)
		if (handlers[i].type == f->type) {
			handlers[i].fn(s, f);
			return;
		}
	session_error(s, f->id, PM__CODE__C_PROTO, "unknown request type %u",
	    f->type);
}

static void
session_close(struct session *s)
{
	s->closing = 1;		/* nothing more is sent */
	TAILQ_REMOVE(&pmd->sessions, s, entry);
	pmd->nsessions--;
	workers_owner_gone(s);
	queues_session_gone(s);
	listeners_session_gone(s);
	session_free(s);
	broker_check_idle();
}

static void
session_free(struct session *s)
{
	if (s->rev != NULL)
		event_free(s->rev);
	if (s->wev != NULL)
		event_free(s->wev);
	if (s->eof_ev != NULL)
		event_free(s->eof_ev);
	wire_in_free(&s->in);
	wire_out_free(&s->out);
	close(s->fd);
	free(s->groups);
	s->use->buffered -= s->buffered;
	s->use->sessions--;
	uid_use_put(s->use);
	free(s);
}

/* Closes now, or once queued output is out. */
static void
session_maybe_close(struct session *s)
{
	if (!s->closing)
		return;
	if (wire_out_pending(&s->out) == 0) {
		session_close(s);
		return;
	}
	event_del(s->rev);
	/* a peer that never reads is not waited for: shut reading side */
	shutdown(s->fd, SHUT_RD);
}

/*
 * The client shut its sending side, or went.  What it asked is still
 * answered, parked queue requests included, then the session ends (and
 * with it the client's daemonic workers).
 */
static void
session_eof(struct session *s)
{
	struct timeval tv;

	event_del(s->rev);
	s->eof = 1;
	if (TAILQ_EMPTY(&s->parked) || !session_alive(s)) {
		session_set_closing(s);
		return;
	}
	log_debug("session %llu: half-closed, %s", (unsigned long long)s->id,
	    "answering its parked requests");
	tv.tv_sec = (time_t)SESSION_EOF_CHECK;
	tv.tv_usec = (suseconds_t)((SESSION_EOF_CHECK - (double)tv.tv_sec) *
	    1e6);
	event_add(s->eof_ev, &tv);
}

/* A half-closed session's client went while it had requests parked. */
static void
session_eof_cb(evutil_socket_t fd, short ev, void *arg)
{
	struct session *s = arg;

	if (!session_alive(s))
		session_close(s);
}

void
session_unparked(struct session *s)
{
	if (s->eof && !s->closing && TAILQ_EMPTY(&s->parked)) {
		event_del(s->eof_ev);
		session_set_closing(s);
	}
}

static void
session_read_cb(evutil_socket_t fd, short ev, void *arg)
{
	struct session *s = arg;
	ssize_t n;

	n = wire_in_read(&s->in, s->fd);
	if (n == 0 && wire_in_pending(&s->in) == 0) {
		session_eof(s);
		return;
	}
	if (n == 0 || (n == -1 && errno != EAGAIN)) {
		if (n == 0 && wire_in_pending(&s->in) > 0)
			log_info("session %llu: truncated frame at end",
			    (unsigned long long)s->id);
		else if (n == -1)
			log_info("session %llu: %s", (unsigned long long)s->id,
			    strerror(errno));
		session_close(s);
		return;
	}
	session_process(s);
}

/* Handles the frames read, as long as the replies are taken. */
static void
session_process(struct session *s)
{
	struct pm_frame f;
	const char *why;
	int r;

	s->corked = 1;	/* one sendmsg for the replies to this read */
	while (!s->closing && wire_out_pending(&s->out) < SESSION_OUT_HIGH &&
	    (r = wire_in_next(&s->in, &f, &why)) != 0) {
		if (r == -1) {
			log_info("session %llu (pid %d): %s; dropped",
			    (unsigned long long)s->id, (int)s->pid, why);
			session_error(s, 0, PM__CODE__C_PROTO, "%s", why);
			session_set_closing(s);
			break;
		}
		session_dispatch(s, &f);
		wire_frame_close(&f);
	}
	s->corked = 0;
	wire_in_trim(&s->in);
	session_account(s);
	if (!s->closing && wire_in_pending(&s->in) > SESSION_SMALL_FRAME &&
	    s->use->buffered > pmd->cfg.max_buffer_bytes_per_uid) {
		/* a request arriving while the uid holds its share */
		log_warn("session %llu (uid %u pid %d): its uid's connections "
		    "hold %llu bytes, above max_buffer_bytes_per_uid; dropped",
		    (unsigned long long)s->id, (unsigned)s->uid, (int)s->pid,
		    (unsigned long long)s->use->buffered);
		session_error(s, 0, PM__CODE__C_LIMIT, "this uid's connections "
		    "hold %llu bytes of unread replies and partial requests, "
		    "above max_buffer_bytes_per_uid; connection dropped",
		    (unsigned long long)s->use->buffered);
		session_set_closing(s);
	}
	if (!s->closing && wire_out_pending(&s->out) >= SESSION_OUT_HIGH) {
		log_debug("session %llu: replies unread; reading paused",
		    (unsigned long long)s->id);
		event_del(s->rev);
		s->paused = 1;
	}
	if (wire_out_pending(&s->out) > 0 || session_paused(s))
		session_flush(s);
	session_maybe_close(s);
}

static void
session_write_cb(evutil_socket_t fd, short ev, void *arg)
{
	struct session *s = arg;

	session_flush(s);
	if (session_paused(s) &&
	    wire_out_pending(&s->out) <= SESSION_OUT_LOW) {
		/* drained: the frames held back first, then the socket */
		s->paused = 0;
		if (event_add(s->rev, NULL) == -1)
			session_set_closing(s);
		else {
			session_process(s);
			return;
		}
	}
	session_maybe_close(s);
}

/* ---- listening ---- */

static int
socket_in_use(const char *path)
{
	struct sockaddr_un sun;
	int fd, r;

	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) == -1)
		return 0;
	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", path);
	r = connect(fd, (struct sockaddr *)&sun, sizeof(sun));
	close(fd);
	return r == 0;
}

static int
is_listening_unix(int fd)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	int v = 0, type = 0;
	socklen_t vl = sizeof(v), tl = sizeof(type);

	return getsockname(fd, (struct sockaddr *)&ss, &len) == 0 &&
	    ss.ss_family == AF_UNIX &&
	    getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tl) == 0 &&
	    type == SOCK_STREAM &&
	    getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &v, &vl) == 0 && v;
}

int
broker_listen(void)
{
	struct sockaddr_un sun;
	struct stat st;
	const char *path = pmd->cfg.socket;
	char dir[sizeof(sun.sun_path)], *slash;
	mode_t old;
	int fd, n;

	n = notify_listen_fds();
	if (n > 1) {
		log_err("systemd passed %d sockets; pmd takes one", n);
		return -1;
	}
	if (n == 1) {
		fd = LISTEN_FDS_START;
		if (!is_listening_unix(fd)) {
			log_err("the socket systemd passed is not a listening "
			    "Unix stream socket");
			return -1;
		}
		fcntl(fd, F_SETFD, FD_CLOEXEC);
		fcntl(fd, F_SETFL, O_NONBLOCK);
		pmd->listen_fd = fd;
		pmd->activated = 1;
		{
			socklen_t len = sizeof(sun);

			memset(&sun, 0, sizeof(sun));
			if (getsockname(fd, (struct sockaddr *)&sun, &len) == 0 &&
			    sun.sun_path[0] != '\0') {
				free(pmd->cfg.socket);
				pmd->cfg.socket = strdup(sun.sun_path);
			}
		}
		return 0;
	}
	if (path == NULL || strlen(path) >= sizeof(sun.sun_path)) {
		log_err("socket path missing or too long");
		return -1;
	}
	/* Only the default runtime directory is pmd's to make; a directory
	 * the user named must exist. */
	snprintf(dir, sizeof(dir), "%s", path);
	if ((slash = strrchr(dir, '/')) != NULL && slash != dir) {
		*slash = '\0';
		if (pmd->cfg.socket_default) {
			if (mkdir(dir, 0700) == -1 && errno != EEXIST) {
				log_err("cannot make %s: %s", dir,
				    strerror(errno));
				return -1;
			}
		} else if (stat(dir, &st) == -1) {
			log_err("socket directory %s: %s", dir,
			    strerror(errno));
			return -1;
		} else if (!S_ISDIR(st.st_mode)) {
			log_err("socket directory %s: not a directory", dir);
			return -1;
		}
	}
	if (lstat(path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode)) {
			log_err("%s exists and is not a socket", path);
			return -1;
		}
		if (socket_in_use(path)) {
			log_err("another pmd is serving %s", path);
			return -1;
		}
		unlink(path);
	}
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK,
	    0)) == -1) {
		log_err("socket: %s", strerror(errno));
		return -1;
	}
	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	memcpy(sun.sun_path, path, strlen(path));
	old = umask(0177);
	if (bind(fd, (struct sockaddr *)&sun, sizeof(sun)) == -1) {
		umask(old);
		log_err("bind %s: %s", path, strerror(errno));
		close(fd);
		return -1;
	}
	umask(old);
	if (chmod(path, (mode_t)pmd->cfg.socket_mode) == -1 ||
	    listen(fd, SOMAXCONN) == -1) {
		log_err("listen %s: %s", path, strerror(errno));
		unlink(path);
		close(fd);
		return -1;
	}
	pmd->listen_fd = fd;
	return 0;
}

/* ---- stopping ---- */

static void
stop_timer_cb(evutil_socket_t fd, short ev, void *arg)
{
	if (pmd->nworkers > 0) {
		log_warn("%d workers still alive after SIGTERM; killing",
		    pmd->nworkers);
		workers_terminate_all(SIGKILL);
	}
}

void
broker_stop(const char *why)
{
	struct timeval tv;

	if (pmd->stopping)
		return;
	pmd->stopping = 1;
	log_info("stopping: %s", why);
	notify("STOPPING=1\nSTATUS=stopping");
	if (pmd->accept_ev != NULL)
		event_del(pmd->accept_ev);
	if (pmd->accept_timer != NULL)
		evtimer_del(pmd->accept_timer);
	prestart_stop();
	workers_terminate_all(SIGTERM);
	tv.tv_sec = (time_t)pmd->cfg.kill_grace;
	tv.tv_usec = (suseconds_t)((pmd->cfg.kill_grace - (double)tv.tv_sec) *
	    1e6);
	evtimer_add(pmd->stop_timer, &tv);
	broker_check_idle();
}

void
broker_close_all(void)
{
	struct session *s;

	queues_free_all();	/* their parked requests unanswered */
	listeners_free_all();	/* their waiting requests unanswered */
	objects_free_all();
	while ((s = TAILQ_FIRST(&pmd->sessions)) != NULL) {
		/* last words out, if the peer takes them now */
		(void)wire_out_flush(&s->out, s->fd);
		TAILQ_REMOVE(&pmd->sessions, s, entry);
		pmd->nsessions--;
		session_free(s);
	}
}

/* Ends the loop when there is nothing left to do. */
void
broker_check_idle(void)
{
	if (pmd->stopping && pmd->nworkers == 0) {
		event_base_loopbreak(pmd->base);
		return;
	}
	if (pmd->cfg.private_mode && pmd->had_client && pmd->nsessions == 0 &&
	    pmd->nworkers == 0) {
		log_info("private pmd: last client gone");
		pmd->stopping = 1;
		event_base_loopbreak(pmd->base);
	}
}

static void
fd_reserve_init(void)
{
	struct rlimit rl;
	long reserve;

	if (getrlimit(RLIMIT_NOFILE, &rl) == -1 || rl.rlim_cur == RLIM_INFINITY)
		return;
	reserve = (long)rl.rlim_cur / 4;
	if (reserve < FD_RESERVE_MIN)
		reserve = FD_RESERVE_MIN;
	if (reserve > FD_RESERVE_MAX)
		reserve = FD_RESERVE_MAX;
	fd_reserve_above = (long)rl.rlim_cur - 1 - reserve;
}

int
broker_events_init(void)
{
	/* fixed, not glibc's sliding threshold: a buffer or an item of a
	 * large frame is a mapping of its own, returned when freed, so idle
	 * connections that once moved big items do not pin that memory */
	mallopt(M_MMAP_THRESHOLD, PMD_MMAP_THRESHOLD);
	fd_reserve_init();
	pmd->accept_ev = event_new(pmd->base, pmd->listen_fd,
	    EV_READ | EV_PERSIST, broker_accept_cb, NULL);
	pmd->accept_timer = evtimer_new(pmd->base, accept_resume_cb, NULL);
	pmd->stop_timer = evtimer_new(pmd->base, stop_timer_cb, NULL);
	if (pmd->accept_ev == NULL || pmd->accept_timer == NULL ||
	    pmd->stop_timer == NULL || event_add(pmd->accept_ev, NULL) == -1)
		return -1;
	return 0;
}
