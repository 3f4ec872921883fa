/*
 * objects.c - the namespace of named shared objects: one table for every
 * kind (memory, locks, semaphores, events, conditions, barriers, and the
 * kinds pmd hosts itself), each with an owner uid, a sharing flag and
 * bounds.  For the segment kinds pmd is only an fd holder: it keeps the
 * sealed memfd a creator handed over and gives a copy to each opener.
 *
 * pmd never trusts a segment: it checks the fd it is given (a sealed
 * read-write memfd of the kind's name and a size within bounds), never
 * maps one, never waits on one, and reads a copy of a few words only to
 * print a state in pmctl objects.  A scribbled segment hurts its users.
 */
#include <sys/types.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <linux/futex.h>

#include "pmd.h"
#include "pmclient_int.h"	/* segment layout and checks (segment.h) */


#define OBJ_OPEN_FLAGS	(PM_O_CREATE | PM_O_EXCL | PM_O_SHARED)

/* What one uid holds, for the per-uid bounds. */
struct obj_use {
	uid_t		 uid;
	int		 count;
	uint64_t	 bytes;
	UT_hash_handle	 hh;
};

int			 pmd_hash_oom;
static struct object	*objects;	/* by name */
static struct obj_use	*uses;		/* by uid */
static int		 nobjects;
static uint64_t		 total_bytes;

/* ---- the segment kinds ---- */

static void
seg_free(struct object *o)
{
	if (o->fd >= 0)
		close(o->fd);
	o->fd = -1;
}

/* A state from a copy of the segment's first bytes, read as plain
 * numbers; anything unexpected prints as "?". */
static void
seg_state(const struct object *o, char *buf, size_t len)
{
	union {
		struct pmc_seg_hdr	h;
		struct pmc_lock_seg	l;
		struct pmc_sem_seg	s;
		struct pmc_event_seg	e;
		struct pmc_cond_seg	c;
		struct pmc_barrier_seg	b;
	} u;
	const pthread_mutex_t *m = NULL;
	unsigned word;

	snprintf(buf, len, "-");
	if (o->kind == PM__OBJ_KIND__O_SHM)
		return;
	snprintf(buf, len, "?");
	if (pread(o->fd, &u, sizeof(u), 0) != (ssize_t)sizeof(u) ||
	    u.h.magic != PMC_SEG_MAGIC || u.h.kind != (uint32_t)o->kind ||
	    u.h.version != PMC_SEG_VERSION)
		return;
	switch (o->kind) {
	case PM__OBJ_KIND__O_LOCK:
		m = &u.l.m;
		break;
	case PM__OBJ_KIND__O_COND:
		m = &u.c.m;
		break;
	case PM__OBJ_KIND__O_SEM:
		snprintf(buf, len, "value %u", (unsigned)u.s.value);
		return;
	case PM__OBJ_KIND__O_EVENT:
		snprintf(buf, len, "%s", u.e.set ? "set" : "clear");
		return;
	case PM__OBJ_KIND__O_BARRIER:
		if (u.b.broken)
			snprintf(buf, len, "broken");
		else
			snprintf(buf, len, "waiting %u/%u", u.b.count,
			    u.b.parties);
		return;
	}
	if (m == NULL)
		return;
	word = (unsigned)m->__data.__lock;
	if (word & FUTEX_OWNER_DIED)
		snprintf(buf, len, "holder died");
	else if ((word & FUTEX_TID_MASK) == 0)
		snprintf(buf, len, "free");
	else
		snprintf(buf, len, "held by %u", word & FUTEX_TID_MASK);
}

static const struct object_ops seg_ops = {
	.free = seg_free,
	.state = seg_state,
};

/* The kind's own flags, besides PM_O_*. */
static uint32_t
kind_flags(int kind)
{
	switch (kind) {
	case PM__OBJ_KIND__O_LOCK:
		return PM_LOCK_RECURSIVE;
	case PM__OBJ_KIND__O_SEM:
		return PM_SEM_BOUNDED;
	default:
		return 0;
	}
}

/* ---- the table ---- */

static struct obj_use *
use_of(uid_t uid)
{
	struct obj_use *u;

	HASH_FIND(hh, uses, &uid, sizeof(uid), u);
	return u;
}

int
object_access(const struct session *s, const struct object *o)
{
	return s->uid == o->uid || (o->flags & PM_O_SHARED) ||
	    session_is_admin(s);
}

struct object *
object_find(const char *name)
{
	struct object *o;

	HASH_FIND_STR(objects, name, o);
	return o;
}

/*
 * An existing object name for s as an open of kind with flags asks:
 * access, kind and the name-squatting rule checked.  NULL with the error
 * sent, or *absent set when there is no such object (nothing sent).
 */
struct object *
object_lookup(struct session *s, uint32_t id, const char *name, int kind,
    uint32_t flags, int *absent)
{
	struct object *o;

	*absent = 0;
	if ((o = object_find(name)) == NULL) {
		*absent = 1;
		return NULL;
	}
	/* a create never joins another uid's object by surprise */
	if ((flags & PM_O_CREATE) && o->uid != s->uid)
		session_error(s, id, PM__CODE__C_EXIST, "%s %s exists, owned "
		    "by uid %u; open it without PM_O_CREATE to join it",
		    pmc_kind_name(o->kind), o->name, (unsigned)o->uid);
	else if (o->kind != kind)
		session_error(s, id, PM__CODE__C_EXIST, "%s is a %s, not a %s",
		    o->name, pmc_kind_name(o->kind), pmc_kind_name(kind));
	else if (flags & PM_O_EXCL)
		session_error(s, id, PM__CODE__C_EXIST, "%s %s exists",
		    pmc_kind_name(kind), o->name);
	else if (!object_access(s, o))
		session_error(s, id, PM__CODE__C_PERM, "%s %s belongs to uid "
		    "%u and is not shared", pmc_kind_name(kind), o->name,
		    (unsigned)o->uid);
	else
		return o;
	return NULL;
}

/* Whether s may add an object of bytes; 0, or -1 with the error sent
 * naming the bound. */
static int
object_room(struct session *s, uint32_t id, uint64_t bytes)
{
	const struct pmd_config *cf = &pmd->cfg;
	struct obj_use *u = use_of(s->uid);

	if (nobjects >= cf->max_objects)
		session_error(s, id, PM__CODE__C_LIMIT, "pmd holds %d shared "
		    "objects, its max_objects", nobjects);
	else if (u != NULL && u->count >= cf->max_objects_per_uid)
		session_error(s, id, PM__CODE__C_LIMIT, "uid %u holds %d "
		    "shared objects, pmd's max_objects_per_uid",
		    (unsigned)s->uid, u->count);
	else if (bytes > cf->max_segment_size)
		session_error(s, id, PM__CODE__C_LIMIT, "a segment of %" PRIu64
		    " bytes is above pmd's max_segment_size %" PRIu64, bytes,
		    cf->max_segment_size);
	else if (u != NULL && u->bytes + bytes > cf->max_object_bytes_per_uid)
		session_error(s, id, PM__CODE__C_LIMIT, "uid %u's segments "
		    "hold %" PRIu64 " bytes; %" PRIu64 " more is above pmd's "
		    "max_object_bytes_per_uid", (unsigned)s->uid, u->bytes,
		    bytes);
	else if (total_bytes + bytes > cf->max_object_bytes)
		session_error(s, id, PM__CODE__C_LIMIT, "shared segments hold "
		    "%" PRIu64 " bytes; %" PRIu64 " more is above pmd's "
		    "max_object_bytes", total_bytes, bytes);
	else
		return 0;
	return -1;
}

/*
 * Adds name (absent) for s, counting bytes against the bounds; the
 * caller fills fd or data.  NULL with the error sent.
 */
struct object *
object_add(struct session *s, uint32_t id, const char *name, int kind,
    uint32_t flags, uint64_t bytes, const struct object_ops *ops)
{
	struct obj_use *u;
	struct object *o;

	if (object_room(s, id, bytes) == -1)
		return NULL;
	if ((u = use_of(s->uid)) == NULL) {
		if ((u = calloc(1, sizeof(*u))) == NULL)
			goto nomem;
		u->uid = s->uid;
		pmd_hash_oom = 0;
		HASH_ADD(hh, uses, uid, sizeof(u->uid), u);
		if (pmd_hash_oom) {
			free(u);
			goto nomem;
		}
	}
	if ((o = calloc(1, sizeof(*o))) == NULL ||
	    (o->name = strdup(name)) == NULL) {
		free(o);
		goto nomem_use;
	}
	o->kind = kind;
	o->uid = s->uid;
	o->flags = flags;
	o->bytes = bytes;
	o->fd = -1;
	o->ops = ops;
	pmd_hash_oom = 0;
	HASH_ADD_KEYPTR(hh, objects, o->name, strlen(o->name), o);
	if (pmd_hash_oom) {
		free(o->name);
		free(o);
		goto nomem_use;
	}
	nobjects++;
	total_bytes += bytes;
	u->count++;
	u->bytes += bytes;
	log_debug("%s %s created by uid %u (%" PRIu64 " bytes)",
	    pmc_kind_name(kind), name, (unsigned)s->uid, bytes);
	return o;
nomem_use:
	if (u->count == 0) {
		HASH_DEL(uses, u);
		free(u);
	}
nomem:
	session_error(s, id, PM__CODE__C_NOMEM, "pmd is out of memory");
	return NULL;
}

void
object_remove(struct object *o)
{
	struct obj_use *u = use_of(o->uid);

	HASH_DEL(objects, o);
	nobjects--;
	total_bytes -= o->bytes;
	if (u != NULL) {
		u->count--;
		u->bytes -= o->bytes;
		if (u->count == 0) {
			HASH_DEL(uses, u);
			free(u);
		}
	}
	if (o->ops != NULL && o->ops->free != NULL)
		o->ops->free(o);
	free(o->name);
	free(o);
}

/* ---- handlers ---- */

/* Validates an open; 0 or -1 with the error sent. */
static int
open_check(struct session *s, uint32_t id, const Pm__ObjOpen *m, int nfds)
{
	if (!name_valid(m->name))
		session_error(s, id, PM__CODE__C_INVAL, "a shared object's "
		    "name is 1 to %d bytes without control characters",
		    PMD_MAX_QUEUE_NAME);
	else if (m->kind < PM__OBJ_KIND__O_SHM ||
	    m->kind > PM__OBJ_KIND__O_BARRIER)
		session_error(s, id, PM__CODE__C_INVAL, "no shared object kind "
		    "%d", (int)m->kind);
	else if ((m->flags & ~(OBJ_OPEN_FLAGS | kind_flags(m->kind))) ||
	    ((m->flags & PM_O_EXCL) && !(m->flags & PM_O_CREATE)))
		session_error(s, id, PM__CODE__C_INVAL, "bad flags %#x for a "
		    "%s", m->flags, pmc_kind_name(m->kind));
	else if ((m->flags & PM_O_CREATE) && nfds != 1)
		session_error(s, id, PM__CODE__C_INVAL, "creating %s: the "
		    "request carries no segment", m->name);
	else
		return 0;
	return -1;
}

/* Keeps the creator's segment (the frame's fd) as a new object. */
static struct object *
open_create(struct session *s, struct pm_frame *f, const Pm__ObjOpen *m)
{
	struct object *o;
	size_t size;

	if (pmc_seg_check(f->fds[0], (int)m->kind, &size) != PM_OK) {
		session_error(s, f->id, PM__CODE__C_INVAL, "creating %s: %s",
		    m->name, pm_last_message());
		return NULL;
	}
	if ((o = object_add(s, f->id, m->name, (int)m->kind,
	    m->flags & ~(uint32_t)(PM_O_CREATE | PM_O_EXCL), size,
	    &seg_ops)) == NULL)
		return NULL;
	o->fd = wire_frame_take(f, 0);
	return o;
}

void
handle_obj_open(struct session *s, struct pm_frame *f)
{
	Pm__ObjOpenReply r = PM__OBJ_OPEN_REPLY__INIT;
	Pm__ObjOpen *m;
	struct object *o;
	int absent, fd;

	if ((m = pm__obj_open__unpack(NULL, f->len, f->data)) == NULL) {
		session_error(s, f->id, PM__CODE__C_PROTO, "malformed open");
		return;
	}
	if (open_check(s, f->id, m, f->nfds) == -1)
		goto done;
	if ((o = object_lookup(s, f->id, m->name, (int)m->kind, m->flags,
	    &absent)) == NULL) {
		if (!absent)
			goto done;
		if (!(m->flags & PM_O_CREATE)) {
			session_error(s, f->id, PM__CODE__C_NOENT, "no shared "
			    "object %s", m->name);
			goto done;
		}
		if ((o = open_create(s, f, m)) == NULL)
			goto done;
		r.created = 1;
	}
	if ((fd = fcntl(o->fd, F_DUPFD_CLOEXEC, 0)) == -1) {
		session_error(s, f->id, PM__CODE__C_SYS, "pmd cannot copy the "
		    "segment's fd");
		goto done;
	}
	r.kind = (Pm__ObjKind)o->kind;
	r.size = o->bytes;
	r.owner = (uint32_t)o->uid;
	r.flags = o->flags;
	session_send(s, PM__TYPE__T_OBJ_OPEN_REPLY, f->id, &r.base, &fd, 1);
done:
	pm__obj_open__free_unpacked(m, NULL);
}

void
handle_obj_unlink(struct session *s, struct pm_frame *f)
{
	Pm__ObjUnlink *m;
	struct object *o;

	if ((m = pm__obj_unlink__unpack(NULL, f->len, f->data)) == NULL) {
		session_error(s, f->id, PM__CODE__C_PROTO, "malformed unlink");
		return;
	}
	if ((o = object_find(m->name)) == NULL)
		session_error(s, f->id, PM__CODE__C_NOENT, "no shared object "
		    "%s", m->name);
	else if (o->uid != s->uid && !session_is_admin(s))
		session_error(s, f->id, PM__CODE__C_PERM, "%s %s belongs to "
		    "uid %u", pmc_kind_name(o->kind), o->name, (unsigned)o->uid);
	else {
		log_debug("%s %s unlinked by uid %u", pmc_kind_name(o->kind),
		    o->name, (unsigned)s->uid);
		object_remove(o);
		session_send(s, PM__TYPE__T_OK, f->id, NULL, NULL, 0);
	}
	pm__obj_unlink__free_unpacked(m, NULL);
}

#define OBJ_STATE_MAX	64

void
handle_obj_list(struct session *s, struct pm_frame *f)
{
	Pm__ObjListReply r = PM__OBJ_LIST_REPLY__INIT;
	Pm__ObjInfo *info = NULL, **ptrs = NULL;
	Pm__ObjList *m;
	struct object *o, *tmp;
	char (*states)[OBJ_STATE_MAX] = NULL;
	size_t n = 0;
	int all;

	if ((m = pm__obj_list__unpack(NULL, f->len, f->data)) == NULL) {
		session_error(s, f->id, PM__CODE__C_PROTO, "malformed list");
		return;
	}
	all = m->all && session_is_admin(s);
	pm__obj_list__free_unpacked(m, NULL);
	if (nobjects > 0 && ((info = calloc((size_t)nobjects,
	    sizeof(*info))) == NULL || (ptrs = calloc((size_t)nobjects,
	    sizeof(*ptrs))) == NULL || (states = calloc((size_t)nobjects,
	    sizeof(*states))) == NULL)) {
		free(info);
		free(ptrs);
		session_error(s, f->id, PM__CODE__C_NOMEM, "out of memory");
		return;
	}
	HASH_ITER(hh, objects, o, tmp) {
		if (!all && o->uid != s->uid && !(o->flags & PM_O_SHARED))
			continue;
		pm__obj_info__init(&info[n]);
		info[n].name = o->name;
		info[n].kind = (Pm__ObjKind)o->kind;
		info[n].owner = (uint32_t)o->uid;
		info[n].size = o->bytes;
		info[n].flags = o->flags;
		snprintf(states[n], OBJ_STATE_MAX, "-");
		if (o->ops != NULL && o->ops->state != NULL)
			o->ops->state(o, states[n], OBJ_STATE_MAX);
		info[n].state = states[n];
		ptrs[n] = &info[n];
		n++;
	}
	r.n_objects = n;
	r.objects = ptrs;
	session_send(s, PM__TYPE__T_OBJ_LIST_REPLY, f->id, &r.base, NULL, 0);
	free(states);
	free(ptrs);
	free(info);
}

void
objects_free_all(void)
{
	struct object *o, *tmp;

	HASH_ITER(hh, objects, o, tmp)
		object_remove(o);
}

int
objects_count(void)
{
	return nobjects;
}

uint64_t
objects_bytes(void)
{
	return total_bytes;
}
