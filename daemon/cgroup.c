/*
 * cgroup.c - per-worker caps (memory_max, cpu_max) through cgroups.
 *
 * pmd keeps its capped workers under a subtree of its own cgroup, one
 * cgroup per worker, made by the broker before the fork and joined by the
 * worker itself right after its clone, before any client code runs (the
 * Fork carries the cgroup.procs files to write "0" into).  cgroup v2
 * (memory.max, memory.swap.max, cpu.max, memory.events oom_kill) where the
 * system has it, v1 (memory.limit_in_bytes, memory.memsw.limit_in_bytes,
 * cpu.cfs_quota_us, memory.oom_control oom_kill) otherwise.  A cap that
 * cannot be applied fails the spawn with the reason: never a silently
 * uncapped worker.  The cgroup goes when its worker is reaped.
 */
#include <sys/stat.h>
#include <sys/types.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pmd.h"

#define CG_ROOT		"/sys/fs/cgroup"
#define CG_PERIOD_US	100000		/* cpu_max's CFS period */

enum { CG_UNKNOWN, CG_NONE, CG_V1, CG_V2 };

static int	cg_mode = CG_UNKNOWN;
static char	cg_mem[PMD_MAX_PATH];	/* our subtree: v2, or v1 memory */
static char	cg_cpu[PMD_MAX_PATH];	/* v1 cpu subtree */
static char	cg_why[512];		/* why there are no caps */
static int	cg_made_mem, cg_made_cpu, cg_leaf;

/* snprintf that says whether it all fitted (0) or not (-1). */
static int __attribute__((format(printf, 3, 4)))
cg_fmt(char *out, size_t cap, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(out, cap, fmt, ap);
	va_end(ap);
	return n < 0 || (size_t)n >= cap ? -1 : 0;
}

static int
cg_write(const char *dir, const char *file, const char *fmt, ...)
{
	char path[PMD_MAX_PATH], buf[128];
	va_list ap;
	ssize_t n;
	int fd, len;

	if (cg_fmt(path, sizeof(path), "%s/%s", dir, file) == -1) {
		errno = ENAMETOOLONG;
		return -1;
	}
	va_start(ap, fmt);
	len = vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if ((fd = open(path, O_WRONLY | O_CLOEXEC)) == -1)
		return -1;
	n = write(fd, buf, (size_t)len);
	if (n == -1) {
		int e = errno;

		close(fd);
		errno = e;
		return -1;
	}
	close(fd);
	return 0;
}

/* The value after "key " in dir/file, or -1. */
static long long
cg_read_key(const char *dir, const char *file, const char *key)
{
	char path[PMD_MAX_PATH], line[256];
	size_t kl = strlen(key);
	long long v = -1;
	FILE *fp;

	if (cg_fmt(path, sizeof(path), "%s/%s", dir, file) == -1)
		return -1;
	if ((fp = fopen(path, "re")) == NULL)
		return -1;
	while (fgets(line, sizeof(line), fp) != NULL)
		if (strncmp(line, key, kl) == 0 && line[kl] == ' ')
			v = strtoll(line + kl + 1, NULL, 10);
	fclose(fp);
	return v;
}

/* Our cgroup's path in hierarchy `ctl` ("" for v2's 0::), from
 * /proc/self/cgroup. */
static int
cg_self(const char *ctl, char *out, size_t cap)
{
	char line[PMD_MAX_PATH], *c, *p, *tok, *save;
	int found = 0;
	FILE *fp;

	if ((fp = fopen("/proc/self/cgroup", "re")) == NULL)
		return -1;
	while (!found && fgets(line, sizeof(line), fp) != NULL) {
		line[strcspn(line, "\n")] = '\0';
		if ((c = strchr(line, ':')) == NULL ||
		    (p = strchr(c + 1, ':')) == NULL)
			continue;
		*p++ = '\0';
		c++;
		if (*ctl == '\0') {
			found = *c == '\0';
		} else
			for (tok = strtok_r(c, ",", &save); tok != NULL;
			    tok = strtok_r(NULL, ",", &save))
				if (strcmp(tok, ctl) == 0)
					found = 1;
		if (found)
			cg_fmt(out, cap, "%s", strcmp(p, "/") ? p : "");
	}
	fclose(fp);
	return found ? 0 : -1;
}

static int
cg_mkdir(const char *dir, int *made)
{
	if (mkdir(dir, 0755) == 0) {
		*made = 1;
		return 0;
	}
	return errno == EEXIST ? 0 : -1;
}

/* v2: controllers for our children.  A cgroup with processes cannot
 * hand controllers down, so pmd first moves itself and the forker into
 * a leaf "<subtree>/pmd". */
static int
cg_v2_setup(void)
{
	char leaf[PMD_MAX_PATH];

	if (cg_write(cg_mem, "cgroup.subtree_control", "+memory +cpu") == 0)
		return 0;
	if (errno != EBUSY)
		return -1;
	if (cg_fmt(leaf, sizeof(leaf), "%s/pmd", cg_mem) == -1)
		return -1;
	if (cg_mkdir(leaf, &cg_leaf) == -1 ||
	    cg_write(leaf, "cgroup.procs", "%d", (int)getpid()) == -1 ||
	    (pmd->forker_pid > 0 && cg_write(leaf, "cgroup.procs", "%d",
	    (int)pmd->forker_pid) == -1))
		return -1;
	return cg_write(cg_mem, "cgroup.subtree_control", "+memory +cpu");
}

static void
cg_init(void)
{
	char self[PMD_MAX_PATH];
	struct stat st;

	cg_mode = CG_NONE;
	if (stat(CG_ROOT "/cgroup.controllers", &st) == 0) {
		if (cg_self("", self, sizeof(self)) == -1) {
			cg_fmt(cg_why, sizeof(cg_why), "cgroup v2: pmd's "
			    "cgroup is not in /proc/self/cgroup");
			return;
		}
		if (cg_fmt(cg_mem, sizeof(cg_mem), CG_ROOT "%s", self) == -1) {
			cg_fmt(cg_why, sizeof(cg_why), "pmd's cgroup path "
			    "is too long");
			return;
		}
		if (cg_v2_setup() == -1) {
			cg_fmt(cg_why, sizeof(cg_why), "cgroup v2: cannot "
			    "enable memory and cpu under %s: %s (run pmd as "
			    "root or with Delegate=yes)", cg_mem,
			    strerror(errno));
			return;
		}
		cg_mode = CG_V2;
		return;
	}
	if (cg_self("memory", self, sizeof(self)) == -1 ||
	    stat(CG_ROOT "/memory", &st) == -1) {
		cg_fmt(cg_why, sizeof(cg_why), "no memory cgroup "
		    "controller on this system");
		return;
	}
	if (cg_fmt(cg_mem, sizeof(cg_mem), CG_ROOT "/memory%s/pmd.%d", self,
	    (int)getpid()) == -1) {
		cg_fmt(cg_why, sizeof(cg_why), "pmd's cgroup path is too long");
		return;
	}
	if (cg_self("cpu", self, sizeof(self)) == 0)
		if (cg_fmt(cg_cpu, sizeof(cg_cpu), CG_ROOT "/cpu%s/pmd.%d",
		    self, (int)getpid()) == -1)
			cg_cpu[0] = '\0';
	if (cg_mkdir(cg_mem, &cg_made_mem) == -1) {
		cg_fmt(cg_why, sizeof(cg_why), "cannot make cgroup %s: %s "
		    "(run pmd as root or in a delegated cgroup)", cg_mem,
		    strerror(errno));
		return;
	}
	if (cg_cpu[0] != '\0' && cg_mkdir(cg_cpu, &cg_made_cpu) == -1)
		cg_cpu[0] = '\0';	/* only cpu_max fails, saying so */
	cg_mode = CG_V1;
}

/* Sets the worker's caps into its cgroup dirs; -1 with why. */
static int
cg_apply(struct worker *w, char *why, size_t cap)
{
	long long quota;

	quota = (long long)(w->cpu_max * CG_PERIOD_US + 0.5);
	if (cg_mode == CG_V2) {
		if (w->memory_max > 0 &&
		    (cg_write(w->cg_mem, "memory.max", "%llu",
		    (unsigned long long)w->memory_max) == -1 ||
		    (cg_write(w->cg_mem, "memory.swap.max", "0") == -1 &&
		    errno != ENOENT))) {
			cg_fmt(why, cap, "memory.max in %s: %s", w->cg_mem,
			    strerror(errno));
			return -1;
		}
		if (w->cpu_max > 0 && cg_write(w->cg_mem, "cpu.max",
		    "%lld %d", quota, CG_PERIOD_US) == -1) {
			cg_fmt(why, cap, "cpu.max in %s: %s", w->cg_mem,
			    strerror(errno));
			return -1;
		}
		return 0;
	}
	if (w->memory_max > 0 &&
	    (cg_write(w->cg_mem, "memory.limit_in_bytes", "%llu",
	    (unsigned long long)w->memory_max) == -1 ||
	    (cg_write(w->cg_mem, "memory.memsw.limit_in_bytes", "%llu",
	    (unsigned long long)w->memory_max) == -1 && errno != ENOENT))) {
		cg_fmt(why, cap, "memory.limit_in_bytes in %s: %s",
		    w->cg_mem, strerror(errno));
		return -1;
	}
	if (w->cpu_max > 0 &&
	    (cg_write(w->cg_cpu, "cpu.cfs_period_us", "%d",
	    CG_PERIOD_US) == -1 || cg_write(w->cg_cpu, "cpu.cfs_quota_us",
	    "%lld", quota) == -1)) {
		cg_fmt(why, cap, "cpu.cfs_quota_us in %s: %s", w->cg_cpu,
		    strerror(errno));
		return -1;
	}
	return 0;
}

/*
 * Makes w's cgroup(s) for w->memory_max and w->cpu_max and fills procs[]
 * with the cgroup.procs files the worker joins (up to 2).  Returns their
 * number, 0 when w has no caps, or -1 with why (the spawn fails).
 */
int
cgroup_create(struct worker *w, char **procs, char *why, size_t cap)
{
	int n = 0, made = 0;

	if (w->memory_max == 0 && w->cpu_max <= 0)
		return 0;
	if (cg_mode == CG_UNKNOWN)
		cg_init();
	if (cg_mode == CG_NONE) {
		cg_fmt(why, cap, "cannot cap workers: %s", cg_why);
		return -1;
	}
	if (cg_mode == CG_V1 && w->cpu_max > 0 && cg_cpu[0] == '\0') {
		cg_fmt(why, cap, "cannot cap CPU: no cpu cgroup for pmd");
		return -1;
	}
	if (cg_mode == CG_V2 || w->memory_max > 0) {
		if (asprintf(&w->cg_mem, "%s/w%llu", cg_mem,
		    (unsigned long long)w->wid) == -1) {
			w->cg_mem = NULL;
			cg_fmt(why, cap, "out of memory");
			return -1;
		}
		if (cg_mkdir(w->cg_mem, &made) == -1) {
			cg_fmt(why, cap, "cannot make cgroup %s: %s",
			    w->cg_mem, strerror(errno));
			return -1;
		}
		if (asprintf(&procs[n++], "%s/cgroup.procs", w->cg_mem) == -1)
			return cg_fmt(why, cap, "out of memory"), -1;
	}
	if (cg_mode == CG_V1 && w->cpu_max > 0) {
		if (asprintf(&w->cg_cpu, "%s/w%llu", cg_cpu,
		    (unsigned long long)w->wid) == -1) {
			w->cg_cpu = NULL;
			cg_fmt(why, cap, "out of memory");
			return -1;
		}
		if (cg_mkdir(w->cg_cpu, &made) == -1) {
			cg_fmt(why, cap, "cannot make cgroup %s: %s",
			    w->cg_cpu, strerror(errno));
			return -1;
		}
		if (asprintf(&procs[n++], "%s/cgroup.procs", w->cg_cpu) == -1)
			return cg_fmt(why, cap, "out of memory"), -1;
	}
	if (cg_apply(w, why, cap) == -1)
		return -1;
	return n;
}

/* 1 when the kernel's OOM killer killed a process of w's cgroup. */
int
cgroup_oom_killed(const struct worker *w)
{
	if (w->cg_mem == NULL || w->memory_max == 0)
		return 0;
	if (cg_mode == CG_V2)
		return cg_read_key(w->cg_mem, "memory.events", "oom_kill") > 0;
	return cg_read_key(w->cg_mem, "memory.oom_control", "oom_kill") > 0;
}

/* Removes w's cgroups (its processes have gone) and forgets them. */
void
cgroup_remove(struct worker *w)
{
	if (w->cg_mem != NULL && rmdir(w->cg_mem) == -1 && errno != ENOENT)
		log_warn("%s: rmdir %s: %s", __func__, w->cg_mem,
		    strerror(errno));
	if (w->cg_cpu != NULL && rmdir(w->cg_cpu) == -1 && errno != ENOENT)
		log_warn("%s: rmdir %s: %s", __func__, w->cg_cpu,
		    strerror(errno));
	free(w->cg_mem);
	free(w->cg_cpu);
	w->cg_mem = w->cg_cpu = NULL;
}

/* At exit: pmd's own v1 subtrees, if it made them (v2's leaf holds
 * pmd itself until it exits). */
void
cgroup_cleanup(void)
{
	if (cg_made_mem)
		(void)rmdir(cg_mem);
	if (cg_made_cpu)
		(void)rmdir(cg_cpu);
	cg_made_mem = cg_made_cpu = 0;
}
