/*
 * wordfreq_tasks.c - the task of examples/wordfreq: count the words that
 * start in a byte range of the file every pool worker holds as fd
 * WF_FD, then add the counts to the shared dict named in the argument
 * with pm_dict_incr (atomic: workers add to the same keys at once).  A
 * word is, as for LC_ALL=C wc -w, a run of bytes other than space, \t,
 * \n, \v, \f and \r that holds a printable ASCII character (a run of
 * UTF-8 bytes alone, such as a dash, is not one); keys are words cut to
 * WF_KEY_MAX bytes.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <pmclient.h>

#define WF_FD		10		/* the file, in every worker */
#define WF_KEY_MAX	64		/* bytes of a word kept as its key */

pm_task_fn count_words;

struct wf_task {
	int64_t	 off;
	int64_t	 len;
	char	 dict[64];
};

struct wf_word {
	const char	*p;
	size_t		 len;
};

static int
is_space(unsigned char c)
{
	return c == ' ' || (c >= '\t' && c <= '\r');
}

static int
has_print(const char *p, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (p[i] > ' ' && p[i] < 0x7f)
			return 1;
	return 0;
}

static int
word_cmp(const void *a, const void *b)
{
	const struct wf_word *x = a, *y = b;
	size_t n = x->len < y->len ? x->len : y->len;
	int r = memcmp(x->p, y->p, n);

	return r != 0 ? r : (x->len > y->len) - (x->len < y->len);
}

/* The range, with the byte before it and the rest of a word running past
 * its end (up to WF_KEY_MAX bytes, all a key keeps). */
static char *
read_range(const struct wf_task *r, size_t *len)
{
	int64_t off = r->off > 0 ? r->off - 1 : 0;
	size_t want = (size_t)(r->len + (r->off - off)) + WF_KEY_MAX, got = 0;
	char *buf;
	ssize_t n;

	if ((buf = malloc(want)) == NULL)
		return NULL;
	while (got < want && (n = pread(WF_FD, buf + got, want - got,
	    (off_t)(off + (int64_t)got))) != 0) {
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1) {
			free(buf);
			return NULL;
		}
		got += (size_t)n;
	}
	*len = got;
	return buf;
}

int
count_words(pm_task *t)
{
	struct wf_word *w = NULL, *nw_;
	struct wf_task r;
	size_t alen, len, nw = 0, cap = 0, i, j, start, end;
	const void *a = pm_task_arg(t, &alen);
	int64_t total = 0;
	char *buf;
	pm_dict *d;

	if (a == NULL || alen != sizeof(r))
		return pm_task_fail(t, "count_words: bad argument");
	memcpy(&r, a, sizeof(r));
	r.dict[sizeof(r.dict) - 1] = '\0';
	if ((buf = read_range(&r, &len)) == NULL)
		return pm_task_fail(t, "read: %s", strerror(errno));
	start = r.off > 0 ? 1 : 0;		/* the byte before the range */
	end = start + (size_t)r.len < len ? start + (size_t)r.len : len;
	for (i = start; i < end; i++) {
		if (is_space((unsigned char)buf[i]) || (i > 0 &&
		    !is_space((unsigned char)buf[i - 1])))
			continue;		/* not where a word starts */
		for (j = i; j < len && !is_space((unsigned char)buf[j]); j++)
			;
		if (!has_print(buf + i, j - i))
			continue;
		if (nw == cap) {
			cap = cap ? cap * 2 : 4096;
			if ((nw_ = realloc(w, cap * sizeof(*w))) == NULL) {
				free(w);
				free(buf);
				return pm_task_fail(t, "out of memory");
			}
			w = nw_;
		}
		w[nw].p = buf + i;
		w[nw++].len = j - i < WF_KEY_MAX ? j - i : WF_KEY_MAX;
	}
	qsort(w, nw, sizeof(*w), word_cmp);
	if ((d = pm_dict_open(pm_task_conn(t), r.dict, 0)) == NULL)
		return pm_task_fail(t, "open %s: %s", r.dict, pm_last_message());
	for (i = 0; i < nw; i = j) {
		for (j = i + 1; j < nw && word_cmp(&w[i], &w[j]) == 0; j++)
			;
		if (pm_dict_incr(d, w[i].p, w[i].len, (int64_t)(j - i),
		    NULL) != PM_OK)
			break;
		total += (int64_t)(j - i);
	}
	pm_dict_free(d);
	free(w);
	free(buf);
	if (i < nw)
		return pm_task_fail(t, "incr: %s", pm_last_message());
	return pm_task_return(t, &total, sizeof(total)) == 0 ? 0 : 1;
}
