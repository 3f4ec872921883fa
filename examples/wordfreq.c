/*
 * wordfreq.c - word frequencies of a file with a Pool and a shared dict:
 * every worker gets the file's fd, counts the words starting in its byte
 * range and adds its counts to one dict in pmd with pm_dict_incr, which
 * is atomic (Python's d[k] += 1 on a Manager dict loses updates when
 * workers race).  Prints the number of words (the sum of the dict's
 * counts, what LC_ALL=C wc -w says), the distinct words and the most
 * frequent ones.
 *
 *   wordfreq FILE [PROCESSES [MODULE]]
 *   MODULE defaults to wordfreq_tasks.so next to this program.
 */
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <pmclient.h>

#define WF_FD		10		/* the file's number in every worker */
#define WF_RANGE	(1ll << 20)	/* bytes per task */
#define WF_TOP		10

struct wf_task {
	int64_t	 off;
	int64_t	 len;
	char	 dict[64];
};

struct wf_count {
	pm_bytes word;
	int64_t	 n;
};

static int
fail(const char *what)
{
	fprintf(stderr, "wordfreq: %s: %s (%s)\n", what, pm_last_message(),
	    pm_strerror(pm_last_error()));
	return 1;
}

static int
by_count(const void *a, const void *b)
{
	const struct wf_count *x = a, *y = b;

	return (x->n < y->n) - (x->n > y->n);
}

/* Runs the tasks; their word counts summed into *words. */
static int
count(pm_conn *c, const char *module, int fd, int64_t size, int procs,
    const char *dict, int64_t *words)
{
	pm_pool_opts o;
	struct wf_task *t;
	pm_bytes *in, *out;
	size_t n = (size_t)((size + WF_RANGE - 1) / WF_RANGE), i;
	int child = WF_FD, rc;
	int64_t v;
	pm_pool *p;

	t = calloc(n ? n : 1, sizeof(*t));
	in = calloc(n ? n : 1, sizeof(*in));
	out = calloc(n ? n : 1, sizeof(*out));
	if (t == NULL || in == NULL || out == NULL)
		return fail("memory");
	for (i = 0; i < n; i++) {
		t[i].off = (int64_t)i * WF_RANGE;
		t[i].len = size - t[i].off < WF_RANGE ? size - t[i].off :
		    WF_RANGE;
		snprintf(t[i].dict, sizeof(t[i].dict), "%s", dict);
		in[i].data = &t[i];
		in[i].len = sizeof(t[i]);
	}
	memset(&o, 0, sizeof(o));
	o.processes = procs;
	o.module = module;
	if ((p = pm_pool_new_fds(c, &o, &child, &fd, 1)) == NULL)
		return fail("pool");
	rc = pm_pool_map(p, "count_words", in, n, 1, out);
	*words = 0;
	for (i = 0; rc == PM_OK && i < n; i++) {
		memcpy(&v, out[i].data, sizeof(v));
		*words += v;
		pm_bytes_free(&out[i]);
	}
	pm_pool_close(p);
	pm_pool_join(p);
	pm_pool_free(p);
	free(t);
	free(in);
	free(out);
	return rc == PM_OK ? 0 : fail("map");
}

/* Reads every count back from the dict: their sum, and the top ones. */
static int
report(pm_dict *d, int64_t words)
{
	struct wf_count *cs;
	int64_t sum = 0;
	pm_bytes *keys;
	size_t n, i;

	if (pm_dict_keys(d, &keys, &n) != PM_OK)
		return fail("keys");
	if ((cs = calloc(n ? n : 1, sizeof(*cs))) == NULL)
		return fail("memory");
	for (i = 0; i < n; i++) {
		cs[i].word = keys[i];
		if (pm_dict_incr(d, keys[i].data, keys[i].len, 0,
		    &cs[i].n) != PM_OK)
			return fail("read a count");
		sum += cs[i].n;
	}
	qsort(cs, n, sizeof(*cs), by_count);
	printf("%lld words (the sum of the dict's counts), %zu distinct\n",
	    (long long)sum, n);
	for (i = 0; i < n && i < WF_TOP; i++)
		printf("  %8lld  %.*s\n", (long long)cs[i].n,
		    (int)cs[i].word.len, (char *)cs[i].word.data);
	for (i = 0; i < n; i++)
		free(keys[i].data);
	free(keys);
	free(cs);
	if (sum != words) {
		fprintf(stderr, "wordfreq: MISMATCH: the tasks counted %lld, "
		    "the dict holds %lld\n", (long long)words,
		    (long long)sum);
		return 1;
	}
	return 0;
}

int
main(int argc, char *argv[])
{
	char module[PATH_MAX], exe[PATH_MAX], dict[64];
	struct stat st;
	int64_t words;
	pm_conn *c;
	pm_dict *d;
	ssize_t n;
	int fd, rc;

	if (argc < 2 || argc > 4) {
		fprintf(stderr, "usage: wordfreq FILE [PROCESSES [MODULE]]\n");
		return 2;
	}
	if (argc == 4)
		snprintf(module, sizeof(module), "%s", argv[3]);
	else if ((n = readlink("/proc/self/exe", exe, sizeof(exe) - 1)) > 0) {
		exe[n] = '\0';
		snprintf(module, sizeof(module), "%s/wordfreq_tasks.so",
		    dirname(exe));
	}
	if ((fd = open(argv[1], O_RDONLY | O_CLOEXEC)) == -1 ||
	    fstat(fd, &st) == -1) {
		fprintf(stderr, "wordfreq: %s: %s\n", argv[1],
		    strerror(errno));
		return 1;
	}
	if ((c = pm_connect(NULL)) == NULL)
		return fail("connect");
	snprintf(dict, sizeof(dict), "wordfreq.%d", (int)getpid());
	if ((d = pm_dict_open(c, dict, PM_O_CREATE | PM_O_EXCL)) == NULL)
		return fail("dict");
	rc = count(c, module, fd, st.st_size, argc >= 3 ? atoi(argv[2]) : 0,
	    dict, &words);
	if (rc == 0)
		rc = report(d, words);
	pm_dict_free(d);
	pm_unlink(c, dict);
	pm_disconnect(c);
	close(fd);
	return rc;
}
