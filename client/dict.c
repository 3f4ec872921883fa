/*
 * dict.c - shared dicts hosted by pmd (Python's Manager().dict()): open
 * by name, then one request and one reply per call, addressed by did.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pmclient_int.h"
#include "dict.pb-c.h"

#define PMC_D_FLAGS	(PM_O_CREATE | PM_O_EXCL | PM_O_SHARED)

struct pm_dict {
	pm_conn		*c;
	uint64_t	 did;
	char		*name;
};

static int
d_usable(pm_dict *d)
{
	if (d == NULL)
		return pmc_err(PM_EINVAL, "no dict");
	return PM_OK;
}

static int
d_bytes_ok(const void *p, size_t len, const char *what)
{
	if (p == NULL && len > 0)
		return pmc_err(PM_EINVAL, "no data for a %s of %zu bytes", what,
		    len);
	return PM_OK;
}

static ProtobufCBinaryData
bd(const void *p, size_t len)
{
	ProtobufCBinaryData b;

	b.data = (uint8_t *)(uintptr_t)(p != NULL ? p : "");
	b.len = len;
	return b;
}

/* A request that pmd answers with Ok or an error. */
static int
d_call_ok(pm_dict *d, uint32_t type, const ProtobufCMessage *m)
{
	struct pmc_pending *p;
	int rc;

	if ((rc = pmc_call(d->c, type, m, NULL, 0, NULL, &p, -1)) != PM_OK)
		return rc;
	pmc_pending_free(d->c, p);
	return pmc_ok();
}

pm_dict *
pm_dict_open(pm_conn *c, const char *name, int flags)
{
	Pm__DictOpen m = PM__DICT_OPEN__INIT;
	Pm__DictOpenReply *r;
	struct pmc_pending *p;
	pm_dict *d;

	if (c == NULL || name == NULL) {
		pmc_err(PM_EINVAL, "no connection or no name");
		return NULL;
	}
	if (flags & ~PMC_D_FLAGS) {
		pmc_err(PM_EINVAL, "unknown dict flags %#x", flags);
		return NULL;
	}
	m.name = (char *)(uintptr_t)name;
	m.flags = (uint32_t)flags;
	if (pmc_call(c, PM__DICT_TYPE__D_OPEN, &m.base, NULL, 0,
	    &pm__dict_open_reply__descriptor, &p, -1) != PM_OK)
		return NULL;
	if ((r = (Pm__DictOpenReply *)p->msg) == NULL) {
		pmc_pending_free(c, p);
		pmc_err(PM_EPROTO, "pmd answered open without a reply");
		return NULL;
	}
	if ((d = calloc(1, sizeof(*d))) == NULL ||
	    (d->name = strdup(name)) == NULL) {
		free(d);
		pmc_pending_free(c, p);
		pmc_err(PM_ENOMEM, "out of memory");
		return NULL;
	}
	d->c = c;
	d->did = r->did;
	pmc_pending_free(c, p);
	pmc_ok();
	return d;
}

int
pm_dict_set(pm_dict *d, const void *key, size_t klen, const void *val,
    size_t vlen)
{
	Pm__DictSet m = PM__DICT_SET__INIT;
	int rc;

	if ((rc = d_usable(d)) != PM_OK ||
	    (rc = d_bytes_ok(key, klen, "key")) != PM_OK ||
	    (rc = d_bytes_ok(val, vlen, "value")) != PM_OK)
		return rc;
	m.did = d->did;
	m.key = bd(key, klen);
	m.value = bd(val, vlen);
	return d_call_ok(d, PM__DICT_TYPE__D_SET, &m.base);
}

/* get and pop: the value into out. */
static int
d_value(pm_dict *d, uint32_t type, const void *key, size_t klen,
    pm_bytes *out)
{
	Pm__DictKey m = PM__DICT_KEY__INIT;
	struct pmc_pending *p;
	Pm__DictValue *r;
	int rc;

	if (out != NULL)
		out->data = NULL, out->len = 0;
	if ((rc = d_usable(d)) != PM_OK ||
	    (rc = d_bytes_ok(key, klen, "key")) != PM_OK)
		return rc;
	if (out == NULL)
		return pmc_err(PM_EINVAL, "no room for the value");
	m.did = d->did;
	m.key = bd(key, klen);
	if ((rc = pmc_call(d->c, type, &m.base, NULL, 0,
	    &pm__dict_value__descriptor, &p, -1)) != PM_OK)
		return rc;
	if ((r = (Pm__DictValue *)p->msg) == NULL) {
		pmc_pending_free(d->c, p);
		return pmc_err(PM_EPROTO, "pmd answered without a value");
	}
	if ((out->data = malloc(r->value.len ? r->value.len : 1)) == NULL) {
		pmc_pending_free(d->c, p);
		return pmc_err(PM_ENOMEM, "out of memory");
	}
	if (r->value.len > 0)
		memcpy(out->data, r->value.data, r->value.len);
	out->len = r->value.len;
	pmc_pending_free(d->c, p);
	return pmc_ok();
}

int
pm_dict_get(pm_dict *d, const void *key, size_t klen, pm_bytes *out)
{
	return d_value(d, PM__DICT_TYPE__D_GET, key, klen, out);
}

int
pm_dict_pop(pm_dict *d, const void *key, size_t klen, pm_bytes *out)
{
	return d_value(d, PM__DICT_TYPE__D_POP, key, klen, out);
}

int
pm_dict_del(pm_dict *d, const void *key, size_t klen)
{
	Pm__DictKey m = PM__DICT_KEY__INIT;
	int rc;

	if ((rc = d_usable(d)) != PM_OK ||
	    (rc = d_bytes_ok(key, klen, "key")) != PM_OK)
		return rc;
	m.did = d->did;
	m.key = bd(key, klen);
	return d_call_ok(d, PM__DICT_TYPE__D_DEL, &m.base);
}

/* len and incr: the count pmd answers. */
static int
d_count(pm_dict *d, uint32_t type, const ProtobufCMessage *m, int64_t *n)
{
	struct pmc_pending *p;
	Pm__DictCount *r;
	int rc;

	if ((rc = pmc_call(d->c, type, m, NULL, 0,
	    &pm__dict_count__descriptor, &p, -1)) != PM_OK)
		return rc;
	if ((r = (Pm__DictCount *)p->msg) == NULL) {
		pmc_pending_free(d->c, p);
		return pmc_err(PM_EPROTO, "pmd answered without a count");
	}
	*n = r->n;
	pmc_pending_free(d->c, p);
	return pmc_ok();
}

long
pm_dict_len(pm_dict *d)
{
	Pm__DictRef m = PM__DICT_REF__INIT;
	int64_t n = 0;
	int rc;

	if ((rc = d_usable(d)) != PM_OK)
		return rc;
	m.did = d->did;
	if ((rc = d_count(d, PM__DICT_TYPE__D_LEN, &m.base, &n)) != PM_OK)
		return rc;
	return (long)n;
}

int
pm_dict_incr(pm_dict *d, const void *key, size_t klen, int64_t delta,
    int64_t *result)
{
	Pm__DictIncr m = PM__DICT_INCR__INIT;
	int64_t n = 0;
	int rc;

	if ((rc = d_usable(d)) != PM_OK ||
	    (rc = d_bytes_ok(key, klen, "key")) != PM_OK)
		return rc;
	m.did = d->did;
	m.key = bd(key, klen);
	m.delta = delta;
	if ((rc = d_count(d, PM__DICT_TYPE__D_INCR, &m.base, &n)) != PM_OK)
		return rc;
	if (result != NULL)
		*result = n;
	return PM_OK;
}

int
pm_dict_cas(pm_dict *d, const void *key, size_t klen, const void *expect,
    size_t elen, const void *val, size_t vlen)
{
	Pm__DictCas m = PM__DICT_CAS__INIT;
	int rc;

	if ((rc = d_usable(d)) != PM_OK ||
	    (rc = d_bytes_ok(key, klen, "key")) != PM_OK ||
	    (rc = d_bytes_ok(val, vlen, "value")) != PM_OK)
		return rc;
	m.did = d->did;
	m.key = bd(key, klen);
	m.has_expect = expect != NULL;
	m.expect = bd(expect, expect != NULL ? elen : 0);
	m.value = bd(val, vlen);
	return d_call_ok(d, PM__DICT_TYPE__D_CAS, &m.base);
}

int
pm_dict_clear(pm_dict *d)
{
	Pm__DictRef m = PM__DICT_REF__INIT;
	int rc;

	if ((rc = d_usable(d)) != PM_OK)
		return rc;
	m.did = d->did;
	return d_call_ok(d, PM__DICT_TYPE__D_CLEAR, &m.base);
}

/* The keys of r (or of the message packed in its memfd) into *keys. */
static int
d_keys_copy(Pm__DictKeys *r, pm_bytes **keys, size_t *n)
{
	pm_bytes *k;
	size_t i;

	if ((k = calloc(r->n_keys ? r->n_keys : 1, sizeof(*k))) == NULL)
		return pmc_err(PM_ENOMEM, "out of memory");
	for (i = 0; i < r->n_keys; i++) {
		k[i].len = r->keys[i].len;
		if ((k[i].data = malloc(k[i].len ? k[i].len : 1)) == NULL) {
			while (i > 0)
				free(k[--i].data);
			free(k);
			return pmc_err(PM_ENOMEM, "out of memory");
		}
		if (k[i].len > 0)
			memcpy(k[i].data, r->keys[i].data, k[i].len);
	}
	*keys = k;
	*n = r->n_keys;
	return pmc_ok();
}

static int
d_keys_memfd(struct pmc_pending *p, uint64_t len, pm_bytes **keys,
    size_t *n)
{
	Pm__DictKeys *big;
	uint8_t *buf;
	int rc;

	if (p->nfds != 1 || len > SIZE_MAX ||
	    (buf = wire_memfd_read(p->fds[0], (size_t)len)) == NULL)
		return pmc_err(PM_EPROTO, "pmd's keys memfd is unreadable");
	big = pm__dict_keys__unpack(NULL, (size_t)len, buf);
	free(buf);
	if (big == NULL)
		return pmc_err(PM_EPROTO, "pmd's keys memfd is malformed");
	rc = d_keys_copy(big, keys, n);
	pm__dict_keys__free_unpacked(big, NULL);
	return rc;
}

int
pm_dict_keys(pm_dict *d, pm_bytes **keys, size_t *n)
{
	Pm__DictRef m = PM__DICT_REF__INIT;
	struct pmc_pending *p;
	Pm__DictKeys *r;
	int rc;

	if ((rc = d_usable(d)) != PM_OK)
		return rc;
	if (keys == NULL || n == NULL)
		return pmc_err(PM_EINVAL, "no room for the keys");
	*keys = NULL;
	*n = 0;
	m.did = d->did;
	if ((rc = pmc_call(d->c, PM__DICT_TYPE__D_KEYS, &m.base, NULL, 0,
	    &pm__dict_keys__descriptor, &p, -1)) != PM_OK)
		return rc;
	if ((r = (Pm__DictKeys *)p->msg) == NULL)
		rc = pmc_err(PM_EPROTO, "pmd answered without keys");
	else if (r->packed_len > 0)
		rc = d_keys_memfd(p, r->packed_len, keys, n);
	else
		rc = d_keys_copy(r, keys, n);
	pmc_pending_free(d->c, p);
	return rc;
}

void
pm_dict_free(pm_dict *d)
{
	if (d == NULL)
		return;
	free(d->name);
	free(d);
}
