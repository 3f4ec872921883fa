/*
 * dicts.c - the shared dicts pmd hosts (Python's Manager().dict()): byte
 * keys and values in hash tables (uthash) in the broker's memory, with
 * atomic incr and compare-and-set, since the broker serves one request
 * at a time.
 *
 * Each dict is an object of the shared-object namespace (objects.c): its
 * name, owner and sharing live there, pm_unlink removes it, and pmctl
 * objects lists it.  Bounds: dicts in all (max_dicts), keys per dict (max_dict_keys), key and
 * value bytes per dict (max_dict_bytes), bytes per key (max_dict_key_size)
 * and per value (max_dict_value_size); the bytes count in pmd's total
 * with the queues' (max_total_queue_bytes).  Contents are lost when pmd
 * stops.
 */
#include <sys/types.h>

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pmd.h"
#include "pmclient.h"		/* PM_O_* flag values (the wire's too) */
#include "dict.pb-c.h"

#define D_OPEN_FLAGS	(PM_O_CREATE | PM_O_EXCL | PM_O_SHARED)
#define D_FRAME_SLACK	256		/* reply bytes besides one value */

struct dentry {
	UT_hash_handle	 hh;
	uint8_t		*val;		/* NULL when vlen is 0 */
	size_t		 vlen;
	size_t		 klen;
	uint8_t		 key[];
};

struct dict {
	UT_hash_handle	 hh_id;
	uint64_t	 did;
	struct object	*o;		/* in the namespace: name, owner */
	struct dentry	*entries;
	uint64_t	 bytes;		/* keys and values held */
	uint64_t	 ops;
};

static struct dict	*by_id;
static int		 ndicts;
static uint64_t		 next_did;
static uint64_t		 total_bytes;	/* of every dict */

uint64_t
dicts_bytes(void)
{
	return total_bytes;
}

/* ---- lookups ---- */

/* The dict did names, if s may use it; else NULL with the error sent. */
static struct dict *
dict_lookup(struct session *s, uint32_t id, uint64_t did)
{
	struct dict *d;

	HASH_FIND(hh_id, by_id, &did, sizeof(did), d);
	if (d == NULL) {
		session_error(s, id, PM__CODE__C_CLOSED, "the dict no longer "
		    "exists (unlinked)");
		return NULL;
	}
	if (!object_access(s, d->o)) {
		session_error(s, id, PM__CODE__C_PERM, "dict %s belongs to "
		    "uid %u and is not shared", d->o->name,
		    (unsigned)d->o->uid);
		return NULL;
	}
	d->ops++;
	return d;
}

static struct dentry *
entry_find(struct dict *d, const ProtobufCBinaryData *key)
{
	static const uint8_t empty[1];
	struct dentry *e;

	HASH_FIND(hh, d->entries, key->len > 0 ? key->data : empty,
	    key->len, e);
	return e;
}

static size_t
value_max(void)
{
	size_t m = pmd->cfg.max_dict_value_size;

	if (m > pmd->cfg.max_frame - D_FRAME_SLACK)
		m = pmd->cfg.max_frame - D_FRAME_SLACK;
	return m;
}

/* Whether grow more bytes fit the bounds; else the error is sent. */
static int
bytes_room(struct session *s, uint32_t id, struct dict *d, uint64_t grow)
{
	if (d->bytes + grow > pmd->cfg.max_dict_bytes) {
		session_error(s, id, PM__CODE__C_LIMIT, "dict %s holds %llu "
		    "bytes; %llu more would pass max_dict_bytes (%llu)",
		    d->o->name, (unsigned long long)d->bytes,
		    (unsigned long long)grow,
		    (unsigned long long)pmd->cfg.max_dict_bytes);
		return 0;
	}
	if (queues_bytes() + total_bytes + grow >
	    pmd->cfg.max_total_queue_bytes) {
		session_error(s, id, PM__CODE__C_LIMIT, "pmd holds %llu bytes "
		    "of queues and dicts; max_total_queue_bytes reached",
		    (unsigned long long)(queues_bytes() + total_bytes));
		return 0;
	}
	return 1;
}

static int
key_ok(struct session *s, uint32_t id, const ProtobufCBinaryData *key)
{
	if (key->len > pmd->cfg.max_dict_key_size) {
		session_error(s, id, PM__CODE__C_LIMIT, "a key of %zu bytes is "
		    "over max_dict_key_size (%u)", key->len,
		    pmd->cfg.max_dict_key_size);
		return 0;
	}
	return 1;
}

/* ---- entries ---- */

static void
entry_free(struct dict *d, struct dentry *e)
{
	HASH_DELETE(hh, d->entries, e);
	d->bytes -= e->klen + e->vlen;
	total_bytes -= e->klen + e->vlen;
	free(e->val);
	free(e);
}

/* Sets key to value (copied): 0, or -1 with the error sent. */
static int
entry_set(struct session *s, uint32_t id, struct dict *d,
    const ProtobufCBinaryData *key, const void *val, size_t vlen)
{
	struct dentry *e = entry_find(d, key);
	uint8_t *nv = NULL;

	if (vlen > value_max()) {
		session_error(s, id, PM__CODE__C_LIMIT, "a value of %zu bytes "
		    "is over max_dict_value_size (%zu)", vlen, value_max());
		return -1;
	}
	if (e == NULL && HASH_CNT(hh, d->entries) >=
	    (unsigned)pmd->cfg.max_dict_keys) {
		session_error(s, id, PM__CODE__C_LIMIT, "dict %s holds %u "
		    "keys, its max_dict_keys", d->o->name,
		    pmd->cfg.max_dict_keys);
		return -1;
	}
	if (!bytes_room(s, id, d, e == NULL ? key->len + vlen :
	    vlen > e->vlen ? vlen - e->vlen : 0))
		return -1;
	if (vlen > 0 && (nv = malloc(vlen)) == NULL)
		goto nomem;
	if (vlen > 0)
		memcpy(nv, val, vlen);
	if (e == NULL) {
		if ((e = malloc(sizeof(*e) + key->len)) == NULL)
			goto nomem;
		e->klen = key->len;
		if (key->len > 0)
			memcpy(e->key, key->data, key->len);
		e->val = NULL;
		e->vlen = 0;
		pmd_hash_oom = 0;
		HASH_ADD_KEYPTR(hh, d->entries, e->key, e->klen, e);
		if (pmd_hash_oom) {
			free(e);
			goto nomem;
		}
		d->bytes += e->klen;
		total_bytes += e->klen;
	}
	d->bytes += vlen;
	d->bytes -= e->vlen;
	total_bytes += vlen;
	total_bytes -= e->vlen;
	free(e->val);
	e->val = nv;
	e->vlen = vlen;
	return 0;
nomem:
	free(nv);
	session_error(s, id, PM__CODE__C_NOMEM, "pmd is out of memory");
	return -1;
}

static void
entry_clear(struct dict *d)
{
	struct dentry *e, *tmp;

	HASH_ITER(hh, d->entries, e, tmp)
		entry_free(d, e);
}

/* ---- dicts: a kind of the shared-object namespace ---- */

static void
dict_free_cb(struct object *o)
{
	struct dict *d = o->data;

	if (d == NULL)
		return;
	entry_clear(d);
	HASH_DELETE(hh_id, by_id, d);
	ndicts--;
	free(d);
	o->data = NULL;
}

static void
dict_state_cb(const struct object *o, char *buf, size_t len)
{
	const struct dict *d = o->data;

	snprintf(buf, len, "%u keys, %llu bytes", HASH_CNT(hh, d->entries),
	    (unsigned long long)d->bytes);
}

static const struct object_ops dict_ops = {
	.free = dict_free_cb,
	.state = dict_state_cb,
};

static struct dict *
dict_new(struct session *s, uint32_t id, const Pm__DictOpen *m)
{
	struct object *o;
	struct dict *d;

	if (ndicts >= pmd->cfg.max_dicts) {
		session_error(s, id, PM__CODE__C_LIMIT, "pmd holds %d dicts, "
		    "its max_dicts", ndicts);
		return NULL;
	}
	if ((o = object_add(s, id, m->name, PM__OBJ_KIND__O_DICT,
	    m->flags & PM_O_SHARED, 0, &dict_ops)) == NULL)
		return NULL;
	if ((d = calloc(1, sizeof(*d))) == NULL)
		goto nomem;
	d->did = ++next_did;
	d->o = o;
	pmd_hash_oom = 0;
	HASH_ADD(hh_id, by_id, did, sizeof(d->did), d);
	if (pmd_hash_oom) {
		free(d);
		goto nomem;
	}
	o->data = d;
	ndicts++;
	return d;
nomem:
	object_remove(o);
	session_error(s, id, PM__CODE__C_NOMEM, "pmd is out of memory");
	return NULL;
}

/* ---- handlers ---- */

#define UNPACK(fn, what)						\
	if ((m = pm__##fn##__unpack(NULL, f->len, f->data)) == NULL) {	\
		session_error(s, f->id, PM__CODE__C_PROTO,		\
		    "malformed " what);					\
		return;							\
	}

void
handle_d_open(struct session *s, struct pm_frame *f)
{
	Pm__DictOpenReply r = PM__DICT_OPEN_REPLY__INIT;
	struct object *o;
	Pm__DictOpen *m;
	struct dict *d;
	int absent;

	UNPACK(dict_open, "dict open");
	if (!name_valid(m->name)) {
		session_error(s, f->id, PM__CODE__C_INVAL, "a dict name is 1 "
		    "to %d bytes without control characters",
		    PMD_MAX_QUEUE_NAME);
		goto done;
	}
	if ((m->flags & ~(uint32_t)D_OPEN_FLAGS) ||
	    ((m->flags & PM_O_EXCL) && !(m->flags & PM_O_CREATE))) {
		session_error(s, f->id, PM__CODE__C_INVAL, "bad dict flags "
		    "%#x", m->flags);
		goto done;
	}
	if ((o = object_lookup(s, f->id, m->name, PM__OBJ_KIND__O_DICT,
	    m->flags, &absent)) != NULL)
		d = o->data;
	else if (!absent)
		goto done;
	else if (!(m->flags & PM_O_CREATE)) {
		session_error(s, f->id, PM__CODE__C_NOENT, "no dict %s",
		    m->name);
		goto done;
	} else if ((d = dict_new(s, f->id, m)) == NULL)
		goto done;
	else
		r.created = 1;
	r.did = d->did;
	session_send(s, PM__DICT_TYPE__D_OPEN_REPLY, f->id, &r.base, NULL, 0);
done:
	pm__dict_open__free_unpacked(m, NULL);
}

void
handle_d_set(struct session *s, struct pm_frame *f)
{
	Pm__DictSet *m;
	struct dict *d;

	UNPACK(dict_set, "dict set");
	if ((d = dict_lookup(s, f->id, m->did)) != NULL &&
	    key_ok(s, f->id, &m->key) && entry_set(s, f->id, d, &m->key,
	    m->value.data, m->value.len) == 0)
		session_send(s, PM__TYPE__T_OK, f->id, NULL, NULL, 0);
	pm__dict_set__free_unpacked(m, NULL);
}

/* get, del and pop: the entry, or NULL with the error sent. */
static struct dentry *
key_request(struct session *s, struct pm_frame *f, Pm__DictKey **mp,
    struct dict **dp)
{
	struct dentry *e;

	if ((*mp = pm__dict_key__unpack(NULL, f->len, f->data)) == NULL) {
		session_error(s, f->id, PM__CODE__C_PROTO, "malformed key");
		return NULL;
	}
	if ((*dp = dict_lookup(s, f->id, (*mp)->did)) == NULL)
		return NULL;
	if ((e = entry_find(*dp, &(*mp)->key)) == NULL)
		session_error(s, f->id, PM__CODE__C_NOENT, "no such key in "
		    "dict %s", (*dp)->o->name);
	return e;
}

static void
send_value(struct session *s, uint32_t id, const struct dentry *e)
{
	Pm__DictValue r = PM__DICT_VALUE__INIT;

	r.value.data = e->val;
	r.value.len = e->vlen;
	session_send(s, PM__DICT_TYPE__D_VALUE, id, &r.base, NULL, 0);
}

void
handle_d_get(struct session *s, struct pm_frame *f)
{
	Pm__DictKey *m = NULL;
	struct dict *d;
	struct dentry *e;

	if ((e = key_request(s, f, &m, &d)) != NULL)
		send_value(s, f->id, e);
	if (m != NULL)
		pm__dict_key__free_unpacked(m, NULL);
}

void
handle_d_del(struct session *s, struct pm_frame *f)
{
	Pm__DictKey *m = NULL;
	struct dict *d;
	struct dentry *e;

	if ((e = key_request(s, f, &m, &d)) != NULL) {
		entry_free(d, e);
		session_send(s, PM__TYPE__T_OK, f->id, NULL, NULL, 0);
	}
	if (m != NULL)
		pm__dict_key__free_unpacked(m, NULL);
}

void
handle_d_pop(struct session *s, struct pm_frame *f)
{
	Pm__DictKey *m = NULL;
	struct dict *d;
	struct dentry *e;

	if ((e = key_request(s, f, &m, &d)) != NULL) {
		send_value(s, f->id, e);
		entry_free(d, e);
	}
	if (m != NULL)
		pm__dict_key__free_unpacked(m, NULL);
}

void
handle_d_len(struct session *s, struct pm_frame *f)
{
	Pm__DictCount r = PM__DICT_COUNT__INIT;
	Pm__DictRef *m;
	struct dict *d;

	UNPACK(dict_ref, "dict ref");
	if ((d = dict_lookup(s, f->id, m->did)) != NULL) {
		r.n = (int64_t)HASH_CNT(hh, d->entries);
		session_send(s, PM__DICT_TYPE__D_COUNT, f->id, &r.base, NULL,
		    0);
	}
	pm__dict_ref__free_unpacked(m, NULL);
}

/* The keys reply, inline or, when over a frame, as a sealed memfd. */
static void
send_keys(struct session *s, uint32_t id, struct dict *d)
{
	Pm__DictKeys r = PM__DICT_KEYS__INIT;
	ProtobufCBinaryData *keys = NULL;
	struct dentry *e, *tmp;
	uint8_t *packed;
	size_t n = 0, len;
	int fd;

	r.n_keys = HASH_CNT(hh, d->entries);
	if (r.n_keys > 0 && (keys = calloc(r.n_keys, sizeof(*keys))) ==
	    NULL)
		goto nomem;
	HASH_ITER(hh, d->entries, e, tmp) {
		keys[n].data = e->key;
		keys[n++].len = e->klen;
	}
	r.keys = keys;
	len = protobuf_c_message_get_packed_size(&r.base);
	if (len + D_FRAME_SLACK <= pmd->cfg.max_frame) {
		session_send(s, PM__DICT_TYPE__D_KEYS_REPLY, id, &r.base,
		    NULL, 0);
		free(keys);
		return;
	}
	if ((packed = malloc(len)) == NULL)
		goto nomem;
	protobuf_c_message_pack(&r.base, packed);
	fd = wire_memfd(packed, len);
	free(packed);
	free(keys);
	if (fd == -1) {
		session_error(s, id, PM__CODE__C_SYS, "memfd for the keys of "
		    "dict %s: %s", d->o->name, strerror(errno));
		return;
	}
	pm__dict_keys__init(&r);
	r.packed_len = len;
	session_send(s, PM__DICT_TYPE__D_KEYS_REPLY, id, &r.base, &fd, 1);
	return;
nomem:
	free(keys);
	session_error(s, id, PM__CODE__C_NOMEM, "pmd is out of memory");
}

void
handle_d_keys(struct session *s, struct pm_frame *f)
{
	Pm__DictRef *m;
	struct dict *d;

	UNPACK(dict_ref, "dict ref");
	if ((d = dict_lookup(s, f->id, m->did)) != NULL)
		send_keys(s, f->id, d);
	pm__dict_ref__free_unpacked(m, NULL);
}

void
handle_d_incr(struct session *s, struct pm_frame *f)
{
	Pm__DictCount r = PM__DICT_COUNT__INIT;
	Pm__DictIncr *m;
	struct dentry *e;
	struct dict *d;
	int64_t v = 0;

	UNPACK(dict_incr, "dict incr");
	if ((d = dict_lookup(s, f->id, m->did)) == NULL ||
	    !key_ok(s, f->id, &m->key))
		goto done;
	if ((e = entry_find(d, &m->key)) != NULL) {
		if (e->vlen != sizeof(v)) {
			session_error(s, f->id, PM__CODE__C_INVAL, "the value "
			    "is %zu bytes, not an int64 (8)", e->vlen);
			goto done;
		}
		memcpy(&v, e->val, sizeof(v));
	}
	if (__builtin_add_overflow(v, m->delta, &v)) {
		session_error(s, f->id, PM__CODE__C_INVAL, "incr by %lld "
		    "overflows int64", (long long)m->delta);
		goto done;
	}
	if (e != NULL)
		memcpy(e->val, &v, sizeof(v));
	else if (entry_set(s, f->id, d, &m->key, &v, sizeof(v)) == -1)
		goto done;
	r.n = v;
	session_send(s, PM__DICT_TYPE__D_COUNT, f->id, &r.base, NULL, 0);
done:
	pm__dict_incr__free_unpacked(m, NULL);
}

void
handle_d_cas(struct session *s, struct pm_frame *f)
{
	Pm__DictCas *m;
	struct dentry *e;
	struct dict *d;

	UNPACK(dict_cas, "dict cas");
	if ((d = dict_lookup(s, f->id, m->did)) == NULL ||
	    !key_ok(s, f->id, &m->key))
		goto done;
	e = entry_find(d, &m->key);
	if (!m->has_expect ? e != NULL : (e == NULL ||
	    e->vlen != m->expect.len || (e->vlen > 0 &&
	    memcmp(e->val, m->expect.data, e->vlen) != 0))) {
		session_error(s, f->id, PM__CODE__C_STATE, "%s", e == NULL ?
		    "the key is absent" : m->has_expect ? "the value differs" :
		    "the key is present");
		goto done;
	}
	if (entry_set(s, f->id, d, &m->key, m->value.data,
	    m->value.len) == 0)
		session_send(s, PM__TYPE__T_OK, f->id, NULL, NULL, 0);
done:
	pm__dict_cas__free_unpacked(m, NULL);
}

void
handle_d_clear(struct session *s, struct pm_frame *f)
{
	Pm__DictRef *m;
	struct dict *d;

	UNPACK(dict_ref, "dict ref");
	if ((d = dict_lookup(s, f->id, m->did)) != NULL) {
		entry_clear(d);
		session_send(s, PM__TYPE__T_OK, f->id, NULL, NULL, 0);
	}
	pm__dict_ref__free_unpacked(m, NULL);
}
