/*
 * check_dict.c - shared dicts hosted by pmd, against a real pmd on a
 * private socket: every operation, open flags, atomic incr from 4
 * processes and from Pool tasks, compare-and-set, 100,000 keys, keys
 * beyond a frame, configured bounds, another uid, clients killed in the
 * middle of calls, and the shared-object namespace (pm_unlink, pmctl
 * objects, names held by other kinds).
 */
#include <sys/types.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <check.h>
#include <grp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "pmclient.h"

#define NOBODY		65534
#define INCR_PROCS	4
#define INCR_EACH	5000
#define MANY_KEYS	100000
#define MAX_DICTS	8

static struct th_pmd pmd;
static pm_conn *conn;
static struct th_base baseline;	/* fds before connecting; pmd's then */
static char dmod[PATH_MAX];	/* dicttasks.so */
static pm_dict *dicts[MAX_DICTS];	/* freed by teardown */

/* A pmd with the settings conf and a connection to it. */
static void
start_pmd(const char *conf)
{
	struct th_pmd_opts o = { .conf = conf };

	snprintf(dmod, sizeof(dmod), "%s/tests/dicttasks.so",
	    th_env("PM_BUILD"));
	conn = th_pmd_open(&pmd, &o, &baseline);
}

static void
setup(void)
{
	start_pmd(NULL);
}

static void
setup_bounds(void)
{
	start_pmd("max_dicts = 2\nmax_dict_keys = 10\nmax_dict_bytes = 1000\n"
	    "max_dict_key_size = 16\nmax_dict_value_size = 200\n"
	    "max_total_queue_bytes = 1500\n"
	    "max_total_queue_bytes_per_uid = 1500\n");
}

static void
setup_small_frame(void)
{
	start_pmd("max_frame = 4096\n");
}

static void
teardown(void)
{
	int i;

	for (i = 0; i < MAX_DICTS; i++) {
		pm_dict_free(dicts[i]);
		dicts[i] = NULL;
	}
	th_pmd_close(&pmd, &conn, &baseline);
}

static pm_dict *
dopen(const char *name, int flags)
{
	pm_dict *d = pm_dict_open(conn, name, flags);
	int i;

	ck_assert_msg(d != NULL, "open %s: %s", name, pm_last_message());
	for (i = 0; i < MAX_DICTS; i++)
		if (dicts[i] == NULL) {
			dicts[i] = d;
			return d;
		}
	ck_abort_msg("too many dicts");
	return NULL;
}

static void
set_str(pm_dict *d, const char *k, const char *v)
{
	int r = pm_dict_set(d, k, strlen(k), v, strlen(v));

	ck_assert_msg(r == PM_OK, "set %s: %d %s", k, r, pm_last_message());
}

static void
expect_str(pm_dict *d, const char *k, const char *v)
{
	pm_bytes b;
	int r = pm_dict_get(d, k, strlen(k), &b);

	ck_assert_msg(r == PM_OK, "get %s: %d %s", k, r, pm_last_message());
	ck_assert_uint_eq(b.len, strlen(v));
	ck_assert(memcmp(b.data, v, b.len) == 0);
	pm_bytes_free(&b);
}

static int
has_key(pm_bytes *keys, size_t n, const void *k, size_t klen)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (keys[i].len == klen && memcmp(keys[i].data, k, klen) == 0)
			return 1;
	return 0;
}

static void
keys_free(pm_bytes *keys, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		free(keys[i].data);
	free(keys);
}

START_TEST(t_ops)
{
	pm_dict *d = dopen("ops", PM_O_CREATE), *d2;
	static const char bin[] = { 'a', 0, 'b' };
	pm_bytes b, *keys;
	size_t n;

	ck_assert_int_eq(pm_dict_len(d), 0);
	ck_assert_int_eq(pm_dict_get(d, "x", 1, &b), PM_ENOENT);
	ck_assert_ptr_null(b.data);
	set_str(d, "x", "1");
	set_str(d, "y", "two");
	set_str(d, "x", "one");		/* replaces */
	ck_assert_int_eq(pm_dict_set(d, bin, sizeof(bin), "", 0), PM_OK);
	ck_assert_int_eq(pm_dict_set(d, "", 0, "empty key", 9), PM_OK);
	ck_assert_int_eq(pm_dict_len(d), 4);
	expect_str(d, "x", "one");
	expect_str(d, "y", "two");
	expect_str(d, "", "empty key");
	ck_assert_int_eq(pm_dict_get(d, bin, sizeof(bin), &b), PM_OK);
	ck_assert_uint_eq(b.len, 0);
	pm_bytes_free(&b);
	ck_assert_int_eq(pm_dict_get(d, "a", 1, &b), PM_ENOENT);
	/* another handle sees the same dict */
	d2 = dopen("ops", 0);
	expect_str(d2, "y", "two");
	ck_assert_int_eq(pm_dict_keys(d2, &keys, &n), PM_OK);
	ck_assert_uint_eq(n, 4);
	ck_assert(has_key(keys, n, "x", 1) && has_key(keys, n, "y", 1) &&
	    has_key(keys, n, "", 0) && has_key(keys, n, bin, sizeof(bin)));
	keys_free(keys, n);
	ck_assert_int_eq(pm_dict_del(d, "x", 1), PM_OK);
	ck_assert_int_eq(pm_dict_del(d, "x", 1), PM_ENOENT);
	ck_assert_int_eq(pm_dict_pop(d2, "y", 1, &b), PM_OK);
	ck_assert_uint_eq(b.len, 3);
	ck_assert(memcmp(b.data, "two", 3) == 0);
	pm_bytes_free(&b);
	ck_assert_int_eq(pm_dict_pop(d2, "y", 1, &b), PM_ENOENT);
	ck_assert_int_eq(pm_dict_len(d), 2);
	ck_assert_int_eq(pm_dict_clear(d), PM_OK);
	ck_assert_int_eq(pm_dict_len(d2), 0);
	ck_assert_int_eq(pm_dict_keys(d, &keys, &n), PM_OK);
	ck_assert_uint_eq(n, 0);
	free(keys);
	/* bad arguments */
	ck_assert_int_eq(pm_dict_set(NULL, "k", 1, "v", 1), PM_EINVAL);
	ck_assert_int_eq(pm_dict_set(d, NULL, 1, "v", 1), PM_EINVAL);
	ck_assert_int_eq(pm_dict_set(d, "k", 1, NULL, 1), PM_EINVAL);
	ck_assert_int_eq(pm_dict_get(d, "k", 1, NULL), PM_EINVAL);
	ck_assert_int_eq(pm_dict_keys(d, NULL, &n), PM_EINVAL);
	ck_assert_int_eq(pm_dict_len(NULL), PM_EINVAL);
	pm_dict_free(NULL);
}
END_TEST

START_TEST(t_open_flags)
{
	ck_assert_ptr_null(pm_dict_open(conn, "nope", 0));
	ck_assert_int_eq(pm_last_error(), PM_ENOENT);
	dopen("f", PM_O_CREATE | PM_O_EXCL);
	ck_assert_ptr_null(pm_dict_open(conn, "f", PM_O_CREATE | PM_O_EXCL));
	ck_assert_int_eq(pm_last_error(), PM_EEXIST);
	dopen("f", PM_O_CREATE);	/* joins: same uid */
	ck_assert_ptr_null(pm_dict_open(conn, "f", PM_O_EXCL));
	ck_assert_int_eq(pm_last_error(), PM_EINVAL);
	ck_assert_ptr_null(pm_dict_open(conn, "f", 0x40));
	ck_assert_int_eq(pm_last_error(), PM_EINVAL);
	ck_assert_ptr_null(pm_dict_open(conn, "", PM_O_CREATE));
	ck_assert_int_eq(pm_last_error(), PM_EINVAL);
	ck_assert_ptr_null(pm_dict_open(conn, "bad\nname", PM_O_CREATE));
	ck_assert_int_eq(pm_last_error(), PM_EINVAL);
	ck_assert_ptr_null(pm_dict_open(NULL, "f", 0));
	ck_assert_int_eq(pm_last_error(), PM_EINVAL);
}
END_TEST

START_TEST(t_incr)
{
	pm_dict *d = dopen("counters", PM_O_CREATE);
	int64_t v = -1;

	ck_assert_int_eq(pm_dict_incr(d, "a", 1, 5, &v), PM_OK);
	ck_assert_int_eq(v, 5);			/* missing counts as 0 */
	ck_assert_int_eq(pm_dict_incr(d, "a", 1, -7, &v), PM_OK);
	ck_assert_int_eq(v, -2);
	ck_assert_int_eq(pm_dict_incr(d, "a", 1, 0, NULL), PM_OK);
	v = 0;
	{
		pm_bytes b;

		ck_assert_int_eq(pm_dict_get(d, "a", 1, &b), PM_OK);
		ck_assert_uint_eq(b.len, 8);
		memcpy(&v, b.data, 8);		/* host order */
		pm_bytes_free(&b);
	}
	ck_assert_int_eq(v, -2);
	set_str(d, "s", "not a number");
	ck_assert_int_eq(pm_dict_incr(d, "s", 1, 1, &v), PM_EINVAL);
	expect_str(d, "s", "not a number");
	v = INT64_MAX;
	ck_assert_int_eq(pm_dict_set(d, "max", 3, &v, 8), PM_OK);
	ck_assert_int_eq(pm_dict_incr(d, "max", 3, 1, NULL), PM_EINVAL);
	ck_assert_int_eq(pm_dict_incr(d, "max", 3, -1, &v), PM_OK);
	ck_assert_int_eq(v, INT64_MAX - 1);
}
END_TEST

/* 4 processes, each with its own connection, add 1 5,000 times. */
START_TEST(t_incr_procs)
{
	pm_dict *d = dopen("race", PM_O_CREATE);
	pid_t pids[INCR_PROCS];
	int i, st, n = th_valgrind() ? 500 : INCR_EACH;
	int64_t v = 0;
	pm_conn *c;
	pm_dict *cd;

	for (i = 0; i < INCR_PROCS; i++) {
		pids[i] = th_fork();
		if (pids[i] != 0)
			continue;
		if ((c = pm_connect(pmd.sock)) == NULL)
			th_child_exit(100);
		th_child_own(c, th_free_conn);
		if ((cd = pm_dict_open(c, "race", 0)) == NULL)
			th_child_exit(101);
		for (int k = 0; k < n; k++)
			if (pm_dict_incr(cd, "n", 1, 1, NULL) != PM_OK) {
				pm_dict_free(cd);
				th_child_exit(102);
			}
		pm_dict_free(cd);
		th_child_exit(0);
	}
	for (i = 0; i < INCR_PROCS; i++) {
		ck_assert_int_eq(waitpid(pids[i], &st, 0), pids[i]);
		ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0,
		    "child %d: status %#x", i, st);
	}
	ck_assert_int_eq(pm_dict_incr(d, "n", 1, 0, &v), PM_OK);
	ck_assert_int_eq(v, (int64_t)INCR_PROCS * n);
}
END_TEST

START_TEST(t_incr_pool)
{
	pm_pool_opts o = { .processes = 3, .module = dmod };
	pm_dict *d = dopen("poolcount", PM_O_CREATE);
	pm_bytes in[12], out[12];
	const char *arg = "poolcount hits 250";
	int64_t v = 0;
	pm_pool *p;
	size_t i;

	p = pm_pool_new(conn, &o);
	ck_assert_msg(p != NULL, "pool: %s", pm_last_message());
	for (i = 0; i < 12; i++) {
		in[i].data = (void *)(uintptr_t)arg;
		in[i].len = strlen(arg);
	}
	ck_assert_int_eq(pm_pool_map(p, "dict_incr_n", in, 12, 1, out),
	    PM_OK);
	for (i = 0; i < 12; i++)
		pm_bytes_free(&out[i]);
	ck_assert_int_eq(pm_pool_close(p), PM_OK);
	ck_assert_int_eq(pm_pool_join(p), PM_OK);
	pm_pool_free(p);
	ck_assert_int_eq(pm_dict_incr(d, "hits", 4, 0, &v), PM_OK);
	ck_assert_int_eq(v, 12 * 250);
}
END_TEST

START_TEST(t_cas)
{
	pm_dict *d = dopen("cas", PM_O_CREATE);

	/* expect NULL: only while absent */
	ck_assert_int_eq(pm_dict_cas(d, "k", 1, NULL, 0, "v1", 2), PM_OK);
	expect_str(d, "k", "v1");
	ck_assert_int_eq(pm_dict_cas(d, "k", 1, NULL, 0, "v2", 2), PM_ESTATE);
	expect_str(d, "k", "v1");
	/* a match swaps, a mismatch leaves it */
	ck_assert_int_eq(pm_dict_cas(d, "k", 1, "v1", 2, "v2", 2), PM_OK);
	expect_str(d, "k", "v2");
	ck_assert_int_eq(pm_dict_cas(d, "k", 1, "v1", 2, "v3", 2), PM_ESTATE);
	ck_assert_int_eq(pm_dict_cas(d, "k", 1, "v", 1, "v3", 2), PM_ESTATE);
	ck_assert_int_eq(pm_dict_cas(d, "k", 1, "v2x", 3, "v3", 2),
	    PM_ESTATE);
	expect_str(d, "k", "v2");
	/* expecting a value of an absent key */
	ck_assert_int_eq(pm_dict_cas(d, "gone", 4, "v", 1, "w", 1),
	    PM_ESTATE);
	ck_assert_int_eq(pm_dict_len(d), 1);
	/* the empty value is a value, not absence */
	ck_assert_int_eq(pm_dict_set(d, "e", 1, "", 0), PM_OK);
	ck_assert_int_eq(pm_dict_cas(d, "e", 1, NULL, 0, "x", 1), PM_ESTATE);
	ck_assert_int_eq(pm_dict_cas(d, "e", 1, "", 0, "x", 1), PM_OK);
	expect_str(d, "e", "x");
}
END_TEST

START_TEST(t_many_keys)
{
	pm_dict *d = dopen("big", PM_O_CREATE);
	int nk = th_valgrind() ? 10000 : MANY_KEYS, i;
	pm_bytes *keys, b;
	char k[32];
	uint8_t *seen;
	size_t n;

	for (i = 0; i < nk; i++) {
		snprintf(k, sizeof(k), "key-%d", i);
		ck_assert_int_eq(pm_dict_set(d, k, strlen(k), &i, sizeof(i)),
		    PM_OK);
	}
	ck_assert_int_eq(pm_dict_len(d), nk);
	ck_assert_int_eq(pm_dict_keys(d, &keys, &n), PM_OK);
	ck_assert_uint_eq(n, (size_t)nk);
	seen = calloc((size_t)nk, 1);
	for (i = 0; i < nk; i++) {
		ck_assert_int_lt(keys[i].len, sizeof(k));
		memcpy(k, keys[i].data, keys[i].len);
		k[keys[i].len] = '\0';
		int j = atoi(k + 4);
		ck_assert(j >= 0 && j < nk && !seen[j]);
		seen[j] = 1;
	}
	free(seen);
	keys_free(keys, n);
	for (i = 0; i < nk; i += nk / 10) {
		snprintf(k, sizeof(k), "key-%d", i);
		ck_assert_int_eq(pm_dict_get(d, k, strlen(k), &b), PM_OK);
		ck_assert_uint_eq(b.len, sizeof(i));
		ck_assert(memcmp(b.data, &i, sizeof(i)) == 0);
		pm_bytes_free(&b);
	}
	ck_assert_int_eq(pm_dict_clear(d), PM_OK);
	ck_assert_int_eq(pm_dict_len(d), 0);
}
END_TEST

/* More keys than one 4 KiB frame holds come back through a memfd. */
START_TEST(t_keys_memfd)
{
	pm_dict *d = dopen("wide", PM_O_CREATE);
	pm_bytes *keys;
	char k[32];
	size_t n;
	int i;

	for (i = 0; i < 1000; i++) {
		snprintf(k, sizeof(k), "a-longish-key-%04d", i);
		ck_assert_int_eq(pm_dict_set(d, k, strlen(k), "", 0), PM_OK);
	}
	ck_assert_int_eq(pm_dict_keys(d, &keys, &n), PM_OK);
	ck_assert_uint_eq(n, 1000);
	ck_assert(has_key(keys, n, "a-longish-key-0999", 18));
	ck_assert(has_key(keys, n, "a-longish-key-0000", 18));
	keys_free(keys, n);
}
END_TEST

static void
expect_limit(int r, const char *bound)
{
	ck_assert_msg(r == PM_ELIMIT, "%d (%s), not PM_ELIMIT", r,
	    pm_last_message());
	ck_assert_msg(strstr(pm_last_message(), bound) != NULL,
	    "'%s' does not name %s", pm_last_message(), bound);
}

/* Dicts share the namespace of the shared objects: one name, one
 * object of one kind; pm_unlink removes a dict; pmctl objects lists it. */
START_TEST(t_namespace)
{
	pm_dict *d = dopen("ns", PM_O_CREATE), *d2;
	pm_lock *l;
	char out[8192];
	pm_bytes b;

	set_str(d, "k", "v");
	ck_assert_int_eq(th_pmctl(out, sizeof(out), "--socket", pmd.sock,
	    "objects", NULL), 0);
	ck_assert_msg(strstr(out, "ns") != NULL && strstr(out, "dict") !=
	    NULL && strstr(out, "1 keys") != NULL, "%s", out);
	/* another kind cannot take the name, nor a dict another's */
	ck_assert_ptr_null(pm_lock_open(conn, "ns", PM_O_CREATE));
	ck_assert_int_eq(pm_last_error(), PM_EEXIST);
	l = pm_lock_open(conn, "alock", PM_O_CREATE);
	ck_assert_ptr_nonnull(l);
	ck_assert_ptr_null(pm_dict_open(conn, "alock", PM_O_CREATE));
	ck_assert_int_eq(pm_last_error(), PM_EEXIST);
	ck_assert_ptr_null(pm_dict_open(conn, "alock", 0));
	ck_assert_int_eq(pm_last_error(), PM_EEXIST);
	pm_lock_free(l);
	ck_assert_int_eq(pm_unlink(conn, "alock"), PM_OK);
	/* unlink: old handles are closed, the name is free */
	ck_assert_int_eq(pm_unlink(conn, "ns"), PM_OK);
	ck_assert_int_eq(pm_dict_get(d, "k", 1, &b), PM_ECLOSED);
	ck_assert_int_eq(pm_dict_set(d, "k", 1, "w", 1), PM_ECLOSED);
	ck_assert_int_eq(pm_unlink(conn, "ns"), PM_ENOENT);
	ck_assert_ptr_null(pm_dict_open(conn, "ns", 0));
	ck_assert_int_eq(pm_last_error(), PM_ENOENT);
	d2 = dopen("ns", PM_O_CREATE);
	ck_assert_int_eq(pm_dict_len(d2), 0);
	ck_assert_int_eq(pm_dict_len(d), PM_ECLOSED);
}
END_TEST

START_TEST(t_pmctl)
{
	char out[4096];
	pm_dict *d;

	ck_assert_int_eq(th_pmctl(out, sizeof(out), "--socket", pmd.sock,
	    "dict", "set", "cli", "k", "v", NULL), 1);	/* no such dict */
	ck_assert_int_eq(th_pmctl(out, sizeof(out), "--socket", pmd.sock,
	    "dict", "set", "--create", "cli", "k1", "hello", NULL), 0);
	ck_assert_int_eq(th_pmctl(out, sizeof(out), "--socket", pmd.sock,
	    "dict", "set", "cli", "k2", "world", NULL), 0);
	ck_assert_int_eq(th_pmctl(out, sizeof(out), "--socket", pmd.sock,
	    "dict", "get", "cli", "k1", NULL), 0);
	ck_assert_str_eq(out, "hello\n");
	ck_assert_int_eq(th_pmctl(out, sizeof(out), "--socket", pmd.sock,
	    "--json", "dict", "get", "cli", "k2", NULL), 0);
	ck_assert_msg(strstr(out, "\"world\"") != NULL, "%s", out);
	ck_assert_int_eq(th_pmctl(out, sizeof(out), "--socket", pmd.sock,
	    "dict", "keys", "cli", NULL), 0);
	ck_assert(strcmp(out, "k1\nk2\n") == 0 || strcmp(out, "k2\nk1\n") == 0);
	ck_assert_int_eq(th_pmctl(out, sizeof(out), "--socket", pmd.sock,
	    "dict", "del", "cli", "k1", NULL), 0);
	ck_assert_int_eq(th_pmctl(out, sizeof(out), "--socket", pmd.sock,
	    "dict", "get", "cli", "k1", NULL), 1);
	ck_assert_int_eq(th_pmctl(out, sizeof(out), "--socket", pmd.sock,
	    "dict", "get", "cli", NULL), 2);		/* usage */
	ck_assert_int_eq(th_pmctl(out, sizeof(out), "--socket", pmd.sock,
	    "dict", "frob", "cli", NULL), 2);
	/* what pmctl set, the library reads */
	d = dopen("cli", 0);
	expect_str(d, "k2", "world");
	ck_assert_int_eq(pm_dict_len(d), 1);
}
END_TEST

START_TEST(t_bounds)
{
	pm_dict *a = dopen("a", PM_O_CREATE), *b;
	char big[300], k[8];
	pm_queue *q;
	int i;

	memset(big, 'x', sizeof(big));
	dopen("b", PM_O_CREATE);
	ck_assert_ptr_null(pm_dict_open(conn, "c", PM_O_CREATE));
	expect_limit(pm_last_error(), "max_dicts");
	expect_limit(pm_dict_set(a, big, 17, "v", 1), "max_dict_key_size");
	expect_limit(pm_dict_incr(a, big, 17, 1, NULL), "max_dict_key_size");
	expect_limit(pm_dict_set(a, "k", 1, big, 201), "max_dict_value_size");
	ck_assert_int_eq(pm_dict_set(a, "k", 1, big, 200), PM_OK);
	for (i = 0; i < 9; i++) {
		snprintf(k, sizeof(k), "n%d", i);
		ck_assert_int_eq(pm_dict_set(a, k, strlen(k), "", 0), PM_OK);
	}
	expect_limit(pm_dict_set(a, "n9", 2, "", 0), "max_dict_keys");
	expect_limit(pm_dict_incr(a, "n9", 2, 1, NULL), "max_dict_keys");
	ck_assert_int_eq(pm_dict_set(a, "n0", 2, "again", 5), PM_OK);
	ck_assert_int_eq(pm_dict_len(a), 10);
	/* bytes: 1 + 200 + 9 * 2 + 5 held */
	for (i = 1; i < 9; i++) {
		snprintf(k, sizeof(k), "n%d", i);
		ck_assert_int_eq(pm_dict_del(a, k, strlen(k)), PM_OK);
	}
	ck_assert_int_eq(pm_dict_set(a, "v1", 2, big, 200), PM_OK);
	ck_assert_int_eq(pm_dict_set(a, "v2", 2, big, 200), PM_OK);
	ck_assert_int_eq(pm_dict_set(a, "v3", 2, big, 200), PM_OK);
	expect_limit(pm_dict_set(a, "v4", 2, big, 200), "max_dict_bytes");
	/* pmd's total counts queues and dicts together */
	b = dicts[1];
	ck_assert_int_eq(pm_dict_set(b, "w", 1, big, 200), PM_OK);
	q = pm_queue_open(conn, "q", 0, PM_Q_CREATE);
	ck_assert_ptr_nonnull(q);
	ck_assert_int_eq(pm_queue_put(q, big, 300, 0), PM_OK);
	expect_limit(pm_queue_put(q, big, 200, 0), "max_total_queue_bytes");
	expect_limit(pm_dict_set(b, "w2", 2, big, 200),
	    "max_total_queue_bytes");
	ck_assert_int_eq(pm_dict_clear(a), PM_OK);
	ck_assert_int_eq(pm_queue_put(q, big, 200, 0), PM_OK);
	ck_assert_int_eq(pm_dict_set(b, "w2", 2, big, 200), PM_OK);
	pm_queue_free(q);
}
END_TEST

static int
other_uid_client(void)
{
	pm_conn *c;
	pm_dict *d;

	if (setgroups(0, NULL) == -1 || setgid(NOBODY) == -1 ||
	    setuid(NOBODY) == -1)
		return 100;
	if ((c = pm_connect(pmd.sock)) == NULL)
		return 101;
	th_child_own(c, th_free_conn);
	if (pm_dict_open(c, "private", 0) != NULL ||
	    pm_last_error() != PM_EPERM)
		return 102;
	/* CREATE never joins another uid's dict */
	if (pm_dict_open(c, "private", PM_O_CREATE) != NULL ||
	    pm_last_error() != PM_EEXIST ||
	    strstr(pm_last_message(), "owned by uid 0") == NULL)
		return 103;
	if (pm_dict_open(c, "shared", PM_O_CREATE) != NULL ||
	    pm_last_error() != PM_EEXIST)
		return 104;
	if ((d = pm_dict_open(c, "shared", 0)) == NULL)
		return 105;
	if (pm_dict_set(d, "from", 4, "nobody", 6) != PM_OK ||
	    pm_dict_incr(d, "n", 1, 1, NULL) != PM_OK) {
		pm_dict_free(d);
		return 106;
	}
	pm_dict_free(d);
	if ((d = pm_dict_open(c, "nobodys", PM_O_CREATE)) == NULL)
		return 107;
	pm_dict_free(d);
	th_child_free(c);
	return 0;
}

START_TEST(t_other_uid)
{
	pm_dict *priv, *shared, *theirs;
	pid_t pid;
	int st;

	TH_NEED_ROOT();
	ck_assert_int_eq(chmod(pmd.dir, 0711), 0);
	ck_assert_int_eq(chmod(pmd.sock, 0666), 0);
	priv = dopen("private", PM_O_CREATE);
	shared = dopen("shared", PM_O_CREATE | PM_O_SHARED);
	set_str(priv, "secret", "s");
	pid = th_fork();
	if (pid == 0)
		th_child_exit(other_uid_client());
	ck_assert_int_eq(waitpid(pid, &st, 0), pid);
	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child: %#x",
	    st);
	expect_str(shared, "from", "nobody");
	ck_assert_int_eq(pm_dict_len(priv), 1);
	/* root is admin: it may open the other uid's private dict */
	theirs = dopen("nobodys", 0);
	ck_assert_int_eq(pm_dict_len(theirs), 0);
}
END_TEST

static void
free_dict(void *d)
{
	pm_dict_free(d);
}

/* A fake client that updates dict "kill" until it is killed. */
static void
busy_client(int i)
{
	pm_bytes *keys;
	pm_conn *c;
	pm_dict *cd;
	char k[16];
	size_t n;

	if ((c = pm_connect(pmd.sock)) == NULL)
		th_child_exit(100);
	th_child_own(c, th_free_conn);
	if ((cd = pm_dict_open(c, "kill", 0)) == NULL)
		th_child_exit(101);
	th_child_own(cd, free_dict);
	snprintf(k, sizeof(k), "p%d", i);
	for (;;) {
		pm_dict_incr(cd, "n", 1, 1, NULL);
		pm_dict_set(cd, k, strlen(k), "x", 1);
		if (pm_dict_keys(cd, &keys, &n) == PM_OK)
			keys_free(keys, n);
	}
}

/* Clients killed while their requests are in flight leave pmd as it
 * was: no fd held for them, the dict whole. */
START_TEST(t_killed_clients)
{
	pm_dict *d = dopen("kill", PM_O_CREATE);
	int i, round, st, base_conn = th_fd_count(pmd.pid);
	pid_t pids[4];
	int64_t v = 0;

	for (round = 0; round < 3; round++) {
		for (i = 0; i < 4; i++)
			if ((pids[i] = th_fork()) == 0)
				busy_client(i);
		TH_WAIT(pm_dict_incr(d, "n", 1, 0, &v) == PM_OK &&
		    v >= (round + 1) * 100, 30);
		for (i = 0; i < 4; i++) {
			kill(pids[i], SIGKILL);
			ck_assert_int_eq(waitpid(pids[i], &st, 0), pids[i]);
		}
	}
	th_pmd_settled(&pmd, base_conn, 20);
	ck_assert_int_eq(pm_dict_len(d), 5);
	ck_assert_int_eq(pm_dict_incr(d, "n", 1, 0, &v), PM_OK);
	ck_assert_int_ge(v, 300);
}
END_TEST

static Suite *
dict_suite(void)
{
	Suite *s = suite_create("dict");
	TCase *tc;

	tc = th_tcase(s, "basic", setup, teardown, 120);
	tcase_add_test(tc, t_ops);
	tcase_add_test(tc, t_open_flags);
	tcase_add_test(tc, t_incr);
	tcase_add_test(tc, t_incr_procs);
	tcase_add_test(tc, t_incr_pool);
	tcase_add_test(tc, t_cas);
	tcase_add_test(tc, t_many_keys);
	tcase_add_test(tc, t_other_uid);
	tcase_add_test(tc, t_killed_clients);
	tcase_add_test(tc, t_namespace);
	tcase_add_test(tc, t_pmctl);

	tc = th_tcase(s, "bounds", setup_bounds, teardown, 60);
	tcase_add_test(tc, t_bounds);

	tc = th_tcase(s, "frame", setup_small_frame, teardown, 60);
	tcase_add_test(tc, t_keys_memfd);
	return s;
}

int
main(void)
{
	return th_run_suite(dict_suite());
}
