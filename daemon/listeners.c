/*
 * listeners.c - named rendezvous for pipes (Python's Listener/Client): a
 * client listens on a name; a connect to it waits in pmd until the
 * listener accepts, then pmd makes a SOCK_SEQPACKET socketpair and hands
 * one end to each side with the other's kernel credentials.  pmd is out
 * of the data path from then on.
 *
 * Each listener has an eventfd (a copy goes to its client) whose counter
 * pmd keeps equal to the connects waiting, so the listener can poll it.
 * A listener is an object of the shared-object namespace (objects.c):
 * one name for one thing of any kind, pm_unlink removes it, pmctl objects
 * lists it.  Bounds: listeners in all (max_listeners) and requests waiting per
 * listener, each way (max_listen_backlog).  A listener ends with its
 * client's connection, or when freed; connects still waiting then fail.
 */
#include <sys/types.h>
#include <sys/eventfd.h>
#include <sys/queue.h>
#include <sys/socket.h>

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pmd.h"
#include "pmclient.h"		/* PM_O_SHARED */
#include "dict.pb-c.h"

struct lwait {
	TAILQ_ENTRY(lwait) entry;
	struct listener	*l;
	struct session	*s;
	uint32_t	 id;		/* request to answer */
	struct event	*timer;		/* NULL: waits forever */
	int		 connect;	/* else an accept */
};
TAILQ_HEAD(lwaitq, lwait);

struct listener {
	UT_hash_handle	 hh_id;
	uint64_t	 lid;
	struct object	*o;		/* in the namespace: name, owner */
	struct session	*s;		/* the listening client */
	int		 efd;		/* eventfd: connects waiting */
	struct lwaitq	 connects;
	struct lwaitq	 accepts;
	uint32_t	 nconnects;
	uint32_t	 naccepts;
	uint64_t	 accepted;
};

static struct listener	*by_id;
static int		 nlisteners;
static uint64_t		 next_lid;
static int		 quiet;		/* pmd stops: no answers */

/* ---- waiting requests ---- */

static void
efd_add(struct listener *l, int up)
{
	uint64_t one = 1;
	ssize_t n;

	do {
		n = up ? write(l->efd, &one, sizeof(one)) :
		    read(l->efd, &one, sizeof(one));
	} while (n == -1 && errno == EINTR);
}

static void
lwait_free(struct lwait *w)
{
	struct listener *l = w->l;

	if (w->connect) {
		TAILQ_REMOVE(&l->connects, w, entry);
		l->nconnects--;
		efd_add(l, 0);
	} else {
		TAILQ_REMOVE(&l->accepts, w, entry);
		l->naccepts--;
	}
	if (w->timer != NULL)
		event_free(w->timer);
	free(w);
}

static void
lwait_timeout_cb(evutil_socket_t fd, short ev, void *arg)
{
	struct lwait *w = arg;

	session_error(w->s, w->id, PM__CODE__C_TIMEDOUT, w->connect ?
	    "listener %s did not accept in time" : "no connect to %s in time",
	    w->l->o->name);
	lwait_free(w);
}

/* Parks a request; 0, or -1 with the error sent. */
static int
lwait_park(struct listener *l, struct session *s, uint32_t id,
    int connect, double timeout)
{
	struct lwait *w;
	struct timeval tv;

	if ((connect ? l->nconnects : l->naccepts) >=
	    (uint32_t)pmd->cfg.max_listen_backlog) {
		session_error(s, id, PM__CODE__C_LIMIT, "%u %s wait on %s, its "
		    "max_listen_backlog", connect ? l->nconnects : l->naccepts,
		    connect ? "connects" : "accepts", l->o->name);
		return -1;
	}
	if ((w = calloc(1, sizeof(*w))) == NULL)
		goto nomem;
	w->l = l;
	w->s = s;
	w->id = id;
	w->connect = connect;
	if (timeout >= 0) {
		if ((w->timer = evtimer_new(pmd->base, lwait_timeout_cb, w)) ==
		    NULL) {
			free(w);
			goto nomem;
		}
		if (timeout > (double)PMD_MAX_WAIT)
			timeout = PMD_MAX_WAIT;
		tv.tv_sec = (time_t)timeout;
		tv.tv_usec = (suseconds_t)((timeout - (double)tv.tv_sec) *
		    1e6) + 1;
		if (tv.tv_usec >= 1000000) {
			tv.tv_sec++;
			tv.tv_usec -= 1000000;
		}
		evtimer_add(w->timer, &tv);
	}
	if (connect) {
		TAILQ_INSERT_TAIL(&l->connects, w, entry);
		l->nconnects++;
		efd_add(l, 1);
	} else {
		TAILQ_INSERT_TAIL(&l->accepts, w, entry);
		l->naccepts++;
	}
	return 0;
nomem:
	session_error(s, id, PM__CODE__C_NOMEM, "pmd is out of memory");
	return -1;
}

/* A socketpair; each side gets an end and the other's credentials. */
static void
rendezvous(struct listener *l, struct session *acc, uint32_t acc_id,
    struct session *con, uint32_t con_id)
{
	Pm__PeerEnd a = PM__PEER_END__INIT, c = PM__PEER_END__INIT;
	int sv[2];

	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) == -1) {
		session_error(acc, acc_id, PM__CODE__C_SYS, "socketpair: %s",
		    strerror(errno));
		session_error(con, con_id, PM__CODE__C_SYS, "socketpair: %s",
		    strerror(errno));
		return;
	}
	a.pid = (int32_t)con->pid;
	a.uid = (uint32_t)con->uid;
	c.pid = (int32_t)acc->pid;
	c.uid = (uint32_t)acc->uid;
	session_send(acc, PM__LISTEN_TYPE__L_PEER_END, acc_id, &a.base,
	    &sv[0], 1);
	session_send(con, PM__LISTEN_TYPE__L_PEER_END, con_id, &c.base,
	    &sv[1], 1);
	l->accepted++;
	log_debug("listener %s: pid %d connected to pid %d", l->o->name,
	    (int)con->pid, (int)acc->pid);
}

/* ---- listeners: a kind of the shared-object namespace ---- */

static void
listener_fail_waits(struct listener *l, const char *why)
{
	struct lwait *w;

	while ((w = TAILQ_FIRST(&l->connects)) != NULL) {
		if (!quiet)
			session_error(w->s, w->id, PM__CODE__C_CLOSED, "%s",
			    why);
		lwait_free(w);
	}
	while ((w = TAILQ_FIRST(&l->accepts)) != NULL) {
		if (!quiet)
			session_error(w->s, w->id, PM__CODE__C_CLOSED, "%s",
			    why);
		lwait_free(w);
	}
}

/* Its object is going (closed, its client gone, unlinked, pmd stops). */
static void
listener_free_cb(struct object *o)
{
	struct listener *l = o->data;

	if (l == NULL)
		return;
	listener_fail_waits(l, "the listener was removed");
	HASH_DELETE(hh_id, by_id, l);
	nlisteners--;
	close(l->efd);
	free(l);
	o->data = NULL;
}

static void
listener_state_cb(const struct object *o, char *buf, size_t len)
{
	const struct listener *l = o->data;

	snprintf(buf, len, "pid %d, %u connecting, %llu accepted",
	    (int)l->s->pid, l->nconnects, (unsigned long long)l->accepted);
}

static const struct object_ops listener_ops = {
	.free = listener_free_cb,
	.state = listener_state_cb,
};

static void
listener_free(struct listener *l, const char *why)
{
	listener_fail_waits(l, why);
	object_remove(l->o);
}

static struct listener *
listener_new(struct session *s, uint32_t id, const Pm__Listen *m)
{
	struct listener *l;
	struct object *o;

	if (nlisteners >= pmd->cfg.max_listeners) {
		session_error(s, id, PM__CODE__C_LIMIT, "pmd holds %d "
		    "listeners, its max_listeners", nlisteners);
		return NULL;
	}
	if ((o = object_add(s, id, m->name, PM__OBJ_KIND__O_LISTENER,
	    m->flags & PM_O_SHARED, 0, &listener_ops)) == NULL)
		return NULL;
	if ((l = calloc(1, sizeof(*l))) == NULL)
		goto nomem;
	if ((l->efd = eventfd(0, EFD_SEMAPHORE | EFD_NONBLOCK |
	    EFD_CLOEXEC)) == -1) {
		free(l);
		object_remove(o);
		session_error(s, id, PM__CODE__C_SYS, "eventfd: %s",
		    strerror(errno));
		return NULL;
	}
	l->lid = ++next_lid;
	l->o = o;
	l->s = s;
	TAILQ_INIT(&l->connects);
	TAILQ_INIT(&l->accepts);
	pmd_hash_oom = 0;
	HASH_ADD(hh_id, by_id, lid, sizeof(l->lid), l);
	if (pmd_hash_oom) {
		close(l->efd);
		free(l);
		goto nomem;
	}
	o->data = l;
	nlisteners++;
	return l;
nomem:
	object_remove(o);
	session_error(s, id, PM__CODE__C_NOMEM, "pmd is out of memory");
	return NULL;
}

/* The listener called name, for a connect from s; else NULL with the
 * error sent. */
static struct listener *
listener_for(struct session *s, uint32_t id, const char *name)
{
	struct object *o = object_find(name);

	if (o == NULL || o->kind != PM__OBJ_KIND__O_LISTENER)
		session_error(s, id, PM__CODE__C_NOENT, "no one listens on "
		    "%s", name);
	else if (!object_access(s, o))
		session_error(s, id, PM__CODE__C_PERM, "listener %s belongs "
		    "to uid %u and is not shared", o->name, (unsigned)o->uid);
	else
		return o->data;
	return NULL;
}

/* ---- handlers ---- */

/* ---- handlers ---- */

void
handle_l_listen(struct session *s, struct pm_frame *f)
{
	Pm__ListenReply r = PM__LISTEN_REPLY__INIT;
	struct listener *l;
	struct object *o;
	Pm__Listen *m;
	int fd;

	if ((m = pm__listen__unpack(NULL, f->len, f->data)) == NULL) {
		session_error(s, f->id, PM__CODE__C_PROTO, "malformed listen");
		return;
	}
	if (!name_valid(m->name))
		session_error(s, f->id, PM__CODE__C_INVAL, "a listener name is "
		    "1 to %d bytes without control characters",
		    PMD_MAX_QUEUE_NAME);
	else if (m->flags & ~(uint32_t)PM_O_SHARED)
		session_error(s, f->id, PM__CODE__C_INVAL, "bad listen flags "
		    "%#x", m->flags);
	else if ((o = object_find(m->name)) != NULL)
		session_error(s, f->id, PM__CODE__C_EXIST, "%s is taken (a %s "
		    "of uid %u)", o->name, o->kind == PM__OBJ_KIND__O_LISTENER ?
		    "listener" : "shared object", (unsigned)o->uid);
	else if ((l = listener_new(s, f->id, m)) != NULL) {
		if ((fd = dup(l->efd)) == -1) {
			session_error(s, f->id, PM__CODE__C_SYS, "dup: %s",
			    strerror(errno));
			listener_free(l, "");
		} else {
			r.lid = l->lid;
			session_send(s, PM__LISTEN_TYPE__L_LISTEN_REPLY, f->id,
			    &r.base, &fd, 1);
		}
	}
	pm__listen__free_unpacked(m, NULL);
}

/* The listener lid of s; else NULL with the error sent. */
static struct listener *
own_listener(struct session *s, uint32_t id, uint64_t lid)
{
	struct listener *l;

	HASH_FIND(hh_id, by_id, &lid, sizeof(lid), l);
	if (l == NULL || l->s != s) {
		session_error(s, id, PM__CODE__C_CLOSED, "no such listener on "
		    "this connection");
		return NULL;
	}
	return l;
}

void
handle_l_accept(struct session *s, struct pm_frame *f)
{
	struct listener *l;
	struct lwait *w;
	Pm__Accept *m;

	if ((m = pm__accept__unpack(NULL, f->len, f->data)) == NULL) {
		session_error(s, f->id, PM__CODE__C_PROTO, "malformed accept");
		return;
	}
	if ((l = own_listener(s, f->id, m->lid)) == NULL)
		goto done;
	if ((w = TAILQ_FIRST(&l->connects)) != NULL) {
		rendezvous(l, s, f->id, w->s, w->id);
		lwait_free(w);
	} else if (m->timeout == 0)
		session_error(s, f->id, PM__CODE__C_TIMEDOUT, "no connect to "
		    "%s waiting", l->o->name);
	else
		lwait_park(l, s, f->id, 0, m->timeout);
done:
	pm__accept__free_unpacked(m, NULL);
}

void
handle_l_connect(struct session *s, struct pm_frame *f)
{
	struct listener *l;
	struct lwait *w;
	Pm__Connect *m;

	if ((m = pm__connect__unpack(NULL, f->len, f->data)) == NULL) {
		session_error(s, f->id, PM__CODE__C_PROTO, "malformed connect");
		return;
	}
	if ((l = listener_for(s, f->id, m->name)) == NULL)
		;
	else if ((w = TAILQ_FIRST(&l->accepts)) != NULL) {
		rendezvous(l, w->s, w->id, s, f->id);
		lwait_free(w);
	} else if (m->timeout == 0)
		session_error(s, f->id, PM__CODE__C_TIMEDOUT, "listener %s is "
		    "not accepting", l->o->name);
	else
		lwait_park(l, s, f->id, 1, m->timeout);
	pm__connect__free_unpacked(m, NULL);
}

void
handle_l_close(struct session *s, struct pm_frame *f)
{
	Pm__ListenerRef *m;
	struct listener *l;

	if ((m = pm__listener_ref__unpack(NULL, f->len, f->data)) == NULL) {
		session_error(s, f->id, PM__CODE__C_PROTO, "malformed close");
		return;
	}
	if ((l = own_listener(s, f->id, m->lid)) != NULL) {
		listener_free(l, "the listener closed");
		session_send(s, PM__TYPE__T_OK, f->id, NULL, NULL, 0);
	}
	pm__listener_ref__free_unpacked(m, NULL);
}

/* ---- sessions and exit ---- */

/* A client has gone: its requests waiting are dropped, and its
 * listeners end (connects waiting on them fail). */
void
listeners_session_gone(struct session *s)
{
	struct listener *l, *tmp;
	struct lwait *w, *next;

	HASH_ITER(hh_id, by_id, l, tmp) {
		for (w = TAILQ_FIRST(&l->connects); w != NULL; w = next) {
			next = TAILQ_NEXT(w, entry);
			if (w->s == s)
				lwait_free(w);
		}
		for (w = TAILQ_FIRST(&l->accepts); w != NULL; w = next) {
			next = TAILQ_NEXT(w, entry);
			if (w->s == s)
				lwait_free(w);
		}
	}
	HASH_ITER(hh_id, by_id, l, tmp)
		if (l->s == s)
			listener_free(l, "the listener's client has gone");
}

/* pmd stops: requests still waiting get no answer; the listeners go with
 * the other objects. */
void
listeners_free_all(void)
{
	quiet = 1;
}
