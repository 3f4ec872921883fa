/*
 * qtasks.c - task functions the queue suite runs in workers
 * (build/tests/qtasks.so): producers, consumers and joinable workers that
 * reach their queues through pm_task_conn().  Not linked to libpmclient:
 * pm_* resolve against pmd when it is loaded.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "pmclient.h"
#include "taskutil.h"

#define QT_STOP		0xffffffffu	/* the item that ends a consumer */
#define QT_MAX_BATCH	1024
#define QT_MAX_ITEMS	(1u << 20)	/* numbers a consumer tracks */

pm_task_fn q_produce, q_consume, q_join_worker, q_put_range;

static pm_queue *
open_arg_queue(pm_task *t, const char *name)
{
	pm_conn *c;
	pm_queue *q;

	if ((c = pm_task_conn(t)) == NULL) {
		pm_task_fail(t, "pm_task_conn: %s", pm_last_message());
		return NULL;
	}
	if ((q = pm_queue_open(c, name, 0, 0)) == NULL)
		pm_task_fail(t, "open %s: %s", name, pm_last_message());
	return q;
}

/* "NAME FIRST COUNT BATCH": puts the uint32 numbers FIRST..FIRST+COUNT-1,
 * BATCH at a time (1: pm_queue_put, else pm_queue_put_many). */
int
q_produce(pm_task *t)
{
	char buf[512], name[256];
	uint32_t nums[QT_MAX_BATCH];
	pm_bytes items[QT_MAX_BATCH];
	unsigned first, count, batch, i, n;
	pm_queue *q;
	int r;

	arg_str(t, buf, sizeof(buf));
	if (sscanf(buf, "%255s %u %u %u", name, &first, &count, &batch) != 4 ||
	    batch == 0 || batch > QT_MAX_BATCH)
		return pm_task_fail(t, "bad argument '%s'", buf);
	if ((q = open_arg_queue(t, name)) == NULL)
		return 1;
	for (i = 0; i < count; i += n) {
		n = count - i < batch ? count - i : batch;
		for (unsigned k = 0; k < n; k++) {
			nums[k] = first + i + k;
			items[k].data = &nums[k];
			items[k].len = sizeof(nums[k]);
		}
		r = n == 1 ? pm_queue_put(q, &nums[0], sizeof(nums[0]), -1) :
		    pm_queue_put_many(q, items, n, -1);
		if (r != PM_OK) {
			pm_queue_free(q);
			return pm_task_fail(t, "put: %s", pm_last_message());
		}
	}
	pm_queue_free(q);
	return 0;
}

/* "NAME TOTAL BATCH": gets uint32 numbers (< TOTAL) until QT_STOP and
 * returns a bitmap of those seen; a number seen twice fails the task. */
int
q_consume(pm_task *t)
{
	char buf[512], name[256];
	pm_bytes got[QT_MAX_BATCH];
	unsigned total, batch;
	uint8_t *seen;
	size_t n, i, bytes;
	uint32_t v;
	pm_queue *q;
	int r, stop = 0;

	arg_str(t, buf, sizeof(buf));
	if (sscanf(buf, "%255s %u %u", name, &total, &batch) != 3 ||
	    batch == 0 || batch > QT_MAX_BATCH || total > QT_MAX_ITEMS)
		return pm_task_fail(t, "bad argument '%s'", buf);
	bytes = (total + 7) / 8;
	if ((seen = calloc(1, bytes + 1)) == NULL)
		return pm_task_fail(t, "out of memory");
	if ((q = open_arg_queue(t, name)) == NULL) {
		free(seen);
		return 1;
	}
	while (!stop) {
		if (batch == 1) {
			r = pm_queue_get(q, &got[0], -1);
			n = 1;
		} else
			r = pm_queue_get_many(q, got, batch, &n, -1);
		if (r != PM_OK) {
			free(seen);
			pm_queue_free(q);
			return pm_task_fail(t, "get: %s", pm_last_message());
		}
		for (i = 0; i < n; i++) {
			if (got[i].len != sizeof(v)) {
				r = -1;
				v = 0;
			} else
				memcpy(&v, got[i].data, sizeof(v));
			pm_bytes_free(&got[i]);
			if (r == -1 || (v != QT_STOP && v >= total)) {
				free(seen);
				pm_queue_free(q);
				return pm_task_fail(t, "bad item");
			}
			if (v == QT_STOP && stop) {
				/* another consumer's: give it back */
				if (pm_queue_put(q, &v, sizeof(v), -1) != PM_OK) {
					free(seen);
					pm_queue_free(q);
					return pm_task_fail(t, "put back: %s",
					    pm_last_message());
				}
				continue;
			}
			if (v == QT_STOP) {
				stop = 1;
				continue;
			}
			if (stop || (seen[v / 8] & (1u << (v % 8)))) {
				free(seen);
				pm_queue_free(q);
				return pm_task_fail(t, "item %u %s", v, stop ?
				    "after STOP" : "delivered twice");
			}
			seen[v / 8] |= (uint8_t)(1u << (v % 8));
		}
	}
	pm_queue_free(q);
	pm_task_return(t, seen, bytes);
	free(seen);
	return 0;
}

/* "WORK DONE": gets items from the joinable queue WORK until "STOP";
 * for each item sleeps a little, puts it on DONE, then task_done. */
int
q_join_worker(pm_task *t)
{
	char buf[512], work[256], done[256];
	pm_queue *wq, *dq;
	pm_bytes b;
	int stop;

	arg_str(t, buf, sizeof(buf));
	if (sscanf(buf, "%255s %255s", work, done) != 2)
		return pm_task_fail(t, "bad argument '%s'", buf);
	if ((wq = open_arg_queue(t, work)) == NULL)
		return 1;
	if ((dq = open_arg_queue(t, done)) == NULL) {
		pm_queue_free(wq);
		return 1;
	}
	for (;;) {
		if (pm_queue_get(wq, &b, -1) != PM_OK) {
			pm_task_fail(t, "get: %s", pm_last_message());
			break;
		}
		stop = b.len == 4 && memcmp(b.data, "STOP", 4) == 0;
		if (!stop) {
			msleep(50);
			if (pm_queue_put(dq, b.data, b.len, -1) != PM_OK) {
				pm_bytes_free(&b);
				pm_task_fail(t, "put: %s", pm_last_message());
				break;
			}
		}
		pm_bytes_free(&b);
		if (pm_queue_task_done(wq) != PM_OK) {
			pm_task_fail(t, "task_done: %s", pm_last_message());
			break;
		}
		if (stop) {
			pm_queue_free(wq);
			pm_queue_free(dq);
			return 0;
		}
	}
	pm_queue_free(wq);
	pm_queue_free(dq);
	return 1;
}

/* "NAME FIRST COUNT": puts the decimal strings FIRST..FIRST+COUNT-1. */
int
q_put_range(pm_task *t)
{
	char buf[512], name[256], item[32];
	unsigned first, count, i;
	pm_queue *q;

	arg_str(t, buf, sizeof(buf));
	if (sscanf(buf, "%255s %u %u", name, &first, &count) != 3)
		return pm_task_fail(t, "bad argument '%s'", buf);
	if ((q = open_arg_queue(t, name)) == NULL)
		return 1;
	for (i = first; i < first + count; i++) {
		snprintf(item, sizeof(item), "%u", i);
		if (pm_queue_put(q, item, strlen(item), -1) != PM_OK) {
			pm_queue_free(q);
			return pm_task_fail(t, "put: %s", pm_last_message());
		}
	}
	pm_queue_free(q);
	return 0;
}
