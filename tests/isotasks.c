/*
 * isotasks.c - task functions for check_isolation and the forker tests
 * (build/tests/isotasks.so): what a worker can see of other clients and
 * of pmd: its own memory searched for other users' secrets, symbols of
 * preloaded modules, its fd limit, and a grandchild it leaves behind.
 * Not linked to libpmclient: pm_* resolve against pmd when it is loaded.
 */
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/types.h>

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pmclient.h"
#include "taskutil.h"

#define SCAN_KEY	0x5a		/* the secrets travel XORed with it */
#define SCAN_CHUNK	(1u << 20)	/* bytes of memory read at once */
#define SCAN_MAX_NEEDLES 8
#define SCAN_MAX_NEEDLE	128
#define SCAN_MAX_MAPS	(1u << 20)	/* bytes of /proc/self/maps */
#define SCAN_FAILED	200		/* exit code: could not search */
#define SCAN_MAX_MAP	(1ul << 30)	/* bigger: reserved space (ASan's
					 * shadow), not data; skipped */

pm_task_fn scan, has_symbol, nofile_soft, orphan, groups;

struct needles {			/* lives in the unscanned region */
	int	 n;
	size_t	 len[SCAN_MAX_NEEDLES];
	char	 s[SCAN_MAX_NEEDLES][SCAN_MAX_NEEDLE];
	uint8_t	 buf[SCAN_CHUNK + SCAN_MAX_NEEDLE];
};

/* The argument, XORed with SCAN_KEY, is the secrets separated by '\n';
 * decoded straight into nd, so no plain copy exists outside it. */
static int
needles_decode(pm_task *t, struct needles *nd)
{
	const uint8_t *a;
	size_t len, i, k = 0;

	if ((a = pm_task_arg(t, &len)) == NULL)
		return -1;
	nd->n = 0;
	for (i = 0; i <= len && nd->n < SCAN_MAX_NEEDLES; i++) {
		if (i == len || (a[i] ^ SCAN_KEY) == '\n') {
			if (k > 0)
				nd->len[nd->n++] = k;
			k = 0;
			continue;
		}
		if (k + 1 >= SCAN_MAX_NEEDLE)
			return -1;
		nd->s[nd->n][k++] = (char)(a[i] ^ SCAN_KEY);
	}
	return nd->n > 0 ? 0 : -1;
}

static size_t
find(const uint8_t *hay, size_t n, const char *needle, size_t len)
{
	size_t i;

	for (i = 0; i + len <= n; i++)
		if (hay[i] == (uint8_t)needle[0] &&
		    memcmp(hay + i, needle, len) == 0)
			return i;
	return (size_t)-1;
}

/* Searches [start, end) through /proc/self/mem; each hit is a line on
 * stdout.  Returns the hits. */
static int
scan_range(int mem, struct needles *nd, uintptr_t start, uintptr_t end,
    const char *name, int *control)
{
	size_t keep = SCAN_MAX_NEEDLE, have = 0, old = 0, at, from;
	uintptr_t off = start, base = start;
	ssize_t r;
	int hits = 0, i;

	while (off < end) {
		r = pread(mem, nd->buf + have, end - off < SCAN_CHUNK ?
		    end - off : SCAN_CHUNK, (off_t)off);
		if (r <= 0)
			break;		/* unreadable (guard pages, vvar) */
		have += (size_t)r;
		off += (uintptr_t)r;
		for (i = 0; i < nd->n; i++)
			for (from = 0; from < have && (at = find(nd->buf +
			    from, have - from, nd->s[i], nd->len[i])) !=
			    (size_t)-1; from += at + 1) {
				/* wholly in the tail kept from the last
				 * read: already counted */
				if (from + at + nd->len[i] <= old)
					continue;
				if (i == 0) {
					(*control)++;
					continue;
				}
				printf("secret %d at %#" PRIxPTR " in %s\n", i,
				    base + from + at, name);
				hits++;
			}
		/* keep a tail, for a secret across two reads */
		old = 0;
		if (have > keep) {
			memmove(nd->buf, nd->buf + have - keep, keep);
			base += have - keep;
			have = old = keep;
		}
	}
	return hits;
}

static int
scan_error(const char *what)
{
	printf("scan failed: %s (%s)\n", what, strerror(errno));
	fflush(stdout);
	return SCAN_FAILED;
}

/*
 * Searches every readable mapping of this worker (heap, stack, anonymous
 * and file-backed) for the strings in the argument: the first is a
 * control, which must be found (the worker's own request holds it), the
 * others are secrets.  Prints where each secret was found and returns the
 * number of hits (0: none anywhere, at most 100), or SCAN_FAILED.  The secrets
 * and the read buffer live in a mapping of their own, not searched.
 */
int
scan(pm_task *t)
{
	struct needles *nd;
	char *maps, *line, *next, perms[8], name[512];
	uintptr_t start, end, self, self_end;
	ssize_t r;
	size_t len = 0;
	int fd, mem, hits = 0, control = 0;

	/* a worker that took another uid is not dumpable: its /proc files
	 * are root's until it says otherwise */
	prctl(PR_SET_DUMPABLE, 1);
	nd = mmap(NULL, sizeof(*nd), PROT_READ | PROT_WRITE, MAP_PRIVATE |
	    MAP_ANONYMOUS, -1, 0);
	if (nd == MAP_FAILED)
		return scan_error("mmap");
	self = (uintptr_t)nd;
	self_end = self + sizeof(*nd);
	if (needles_decode(t, nd) == -1)
		return scan_error("bad argument");
	if ((maps = malloc(SCAN_MAX_MAPS)) == NULL ||
	    (fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC)) == -1)
		return scan_error("/proc/self/maps");
	while (len + 1 < SCAN_MAX_MAPS &&
	    (r = read(fd, maps + len, SCAN_MAX_MAPS - 1 - len)) > 0)
		len += (size_t)r;
	close(fd);
	maps[len] = '\0';
	if ((mem = open("/proc/self/mem", O_RDONLY | O_CLOEXEC)) == -1)
		return scan_error("/proc/self/mem");
	for (line = maps; line != NULL && *line != '\0'; line = next) {
		if ((next = strchr(line, '\n')) != NULL)
			*next++ = '\0';
		name[0] = '\0';
		if (sscanf(line, "%" SCNxPTR "-%" SCNxPTR " %7s %*s %*s %*s "
		    "%511s", &start, &end, perms, name) < 3)
			continue;
		if (perms[0] != 'r' || strcmp(name, "[vvar]") == 0 ||
		    end - start > SCAN_MAX_MAP)
			continue;
		/* around our own region (merged with a neighbour, maybe) */
		if (start < self)
			hits += scan_range(mem, nd, start, end < self ? end :
			    self, name[0] ? name : "anonymous", &control);
		if (end > self_end)
			hits += scan_range(mem, nd, start > self_end ? start :
			    self_end, end, name[0] ? name : "anonymous", &control);
	}
	close(mem);
	free(maps);
	if (control == 0)
		return scan_error("the control string is nowhere: the scan "
		    "does not see this process's memory");
	fflush(stdout);
	explicit_bzero(nd, sizeof(*nd));
	munmap(nd, sizeof(*nd));
	return hits > 100 ? 100 : hits;
}

/* 1 if the symbol named by the argument resolves from the global scope
 * (dlsym(RTLD_DEFAULT)), else 0. */
int
has_symbol(pm_task *t)
{
	char name[256];

	return dlsym(RTLD_DEFAULT, arg_str(t, name, sizeof(name))) != NULL;
}

/* Result: "soft hard" of RLIMIT_NOFILE. */
int
nofile_soft(pm_task *t)
{
	struct rlimit rl;
	char out[64];
	int n;

	if (getrlimit(RLIMIT_NOFILE, &rl) == -1)
		return pm_task_fail(t, "getrlimit failed");
	n = snprintf(out, sizeof(out), "%llu %llu",
	    (unsigned long long)rl.rlim_cur, (unsigned long long)rl.rlim_max);
	return pm_task_return(t, out, (size_t)n);
}

/* Leaves a grandchild behind: it sleeps the argument's milliseconds and
 * exits; the result is its pid. */
int
orphan(pm_task *t)
{
	char buf[32];
	pid_t pid;
	int n;

	arg_str(t, buf, sizeof(buf));
	if ((pid = fork()) == -1)
		return pm_task_fail(t, "fork failed");
	if (pid == 0) {
		msleep(atoi(buf));
		_exit(0);
	}
	n = snprintf(buf, sizeof(buf), "%d", (int)pid);
	return pm_task_return(t, buf, (size_t)n);
}

/* Result: "n min max" of this worker's supplementary groups. */
int
groups(pm_task *t)
{
	static gid_t g[65536];
	gid_t lo = (gid_t)-1, hi = 0;
	char out[64];
	int n, i;

	if ((n = getgroups((int)(sizeof(g) / sizeof(g[0])), g)) == -1)
		return pm_task_fail(t, "getgroups failed");
	for (i = 0; i < n; i++) {
		lo = g[i] < lo ? g[i] : lo;
		hi = g[i] > hi ? g[i] : hi;
	}
	n = snprintf(out, sizeof(out), "%d %u %u", n, (unsigned)(n ? lo : 0),
	    (unsigned)hi);
	return pm_task_return(t, out, (size_t)n);
}
