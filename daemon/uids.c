/*
 * uids.c - what each client uid holds in pmd: connections, queues,
 * parked requests, queued bytes and connection buffers, so that every
 * bound pmd has in all also has a share per uid, and one uid reaching its
 * share leaves the others served.  An entry lives while anything counts
 * in it (refs); lookups go through a small hash of uids.
 */
#include <sys/queue.h>
#include <sys/types.h>

#include <stdlib.h>

#include "pmd.h"

#define UID_BUCKETS	256

static LIST_HEAD(uid_bucket, uid_use) buckets[UID_BUCKETS];

struct uid_use *
uid_use_get(uid_t uid)
{
	struct uid_bucket *b = &buckets[uid % UID_BUCKETS];
	struct uid_use *u;

	LIST_FOREACH(u, b, entry)
		if (u->uid == uid) {
			u->refs++;
			return u;
		}
	if ((u = calloc(1, sizeof(*u))) == NULL)
		return NULL;
	u->uid = uid;
	u->refs = 1;
	LIST_INSERT_HEAD(b, u, entry);
	return u;
}

void
uid_use_put(struct uid_use *u)
{
	if (u == NULL || --u->refs > 0)
		return;
	LIST_REMOVE(u, entry);
	free(u);
}

/* A share of a bound for one uid: the whole of it on a pmd that serves
 * its own uid only, else a part (set by the config when asked). */
uint64_t
uid_share(uint64_t bound)
{
	uint64_t s = bound / PMD_UID_SHARE_DIV;

	return s > 0 ? s : 1;
}
