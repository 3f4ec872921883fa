/*
 * shm.c - segments, the memory every shared object lives in (sealed
 * memfds, MAP_SHARED), the named-object namespace pmd keeps (open, unlink),
 * and pm_shm, Python's SharedMemory / Value / Array rendered for C.
 *
 * A segment is made here: memfd, size, contents initialized, then sealed
 * (F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) so no process can truncate
 * it under another.  A named one is then handed to pmd, which keeps it if
 * the call creates the object and gives back the object's segment either
 * way.  Whatever fd arrives (from pmd or a parent) is checked before it is
 * mapped: a sealed memfd of the right kind, read-write, of a sane size.
 */
#include <sys/mman.h>
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pmclient_int.h"

#define PMC_SEALS	(F_SEAL_SHRINK | F_SEAL_GROW)

const char *const pmc_kind_names[PMC_K_MAX] = {
	[PMC_K_SHM] = "shm",
	[PMC_K_LOCK] = "lock",
	[PMC_K_SEM] = "sem",
	[PMC_K_EVENT] = "event",
	[PMC_K_COND] = "cond",
	[PMC_K_BARRIER] = "barrier",
	[PMC_K_DICT] = "dict",
	[PMC_K_LISTENER] = "listener",
};

struct pm_shm {
	struct pmc_seg	 seg;
};

/* ---- segments ---- */

const char *
pmc_kind_name(int kind)
{
	return kind > 0 && kind < PMC_K_MAX ? pmc_kind_names[kind] : "object";
}

/* Makes a sealed segment of kind, size bytes, filled by init (may be
 * NULL: zeros), mapped. */
int
pmc_seg_make(int kind, size_t size, pmc_seg_init_fn *init, const void *ud,
    struct pmc_seg *s)
{
	char name[32];
	int fd;

	s->base = MAP_FAILED;
	s->fd = -1;
	if (size == 0)
		return pmc_err(PM_EINVAL, "a segment of 0 bytes");
	if (size > (size_t)PMC_SEG_MAX)
		return pmc_err(PM_ELIMIT, "a segment of %zu bytes is above "
		    "%llu", size, (unsigned long long)PMC_SEG_MAX);
	snprintf(name, sizeof(name), PMC_SEG_NAME_PREFIX "%s",
	    pmc_kind_name(kind));
	if ((fd = memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING)) == -1)
		return pmc_err_sys("memfd_create");
	if (ftruncate(fd, (off_t)size) == -1) {
		pmc_err(errno == EFBIG || errno == ENOSPC ? PM_ENOMEM : PM_ESYS,
		    "cannot size a segment of %zu bytes: %s", size,
		    strerror(errno));
		close(fd);
		return pm_last_error();
	}
	s->base = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (s->base == MAP_FAILED) {
		pmc_err(errno == ENOMEM ? PM_ENOMEM : PM_ESYS, "cannot map %zu "
		    "bytes: %s", size, strerror(errno));
		close(fd);
		return pm_last_error();
	}
	s->size = size;
	s->fd = fd;
	if (init != NULL && init(s->base, ud) != PM_OK) {
		pmc_seg_close(s);
		return pm_last_error();
	}
	if (fcntl(fd, F_ADD_SEALS, PMC_SEALS | F_SEAL_SEAL) == -1) {
		pmc_err_sys("sealing a segment");
		pmc_seg_close(s);
		return pm_last_error();
	}
	return PM_OK;
}

/* What /proc says the memfd is called: 1 it is kind's, 0 it is not,
 * -1 unknown (no /proc). */
static int
seg_named(int fd, int kind)
{
	char link[64], want[64], got[128];
	ssize_t n;

	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	if ((n = readlink(link, got, sizeof(got) - 1)) == -1)
		return -1;
	got[n] = '\0';
	snprintf(want, sizeof(want), "/memfd:" PMC_SEG_NAME_PREFIX "%s "
	    "(deleted)", pmc_kind_name(kind));
	return strcmp(got, want) == 0;
}

/* Checks fd is a segment of kind that cannot shrink; 0 or the error. */
int
pmc_seg_check(int fd, int kind, size_t *sizep)
{
	struct stat st;
	int seals, fl;

	if (fd < 0 || fstat(fd, &st) == -1)
		return pmc_err(PM_EINVAL, "fd %d is not open", fd);
	seals = fcntl(fd, F_GET_SEALS);
	fl = fcntl(fd, F_GETFL);
	if (!S_ISREG(st.st_mode) || seals == -1 || seg_named(fd, kind) == 0)
		return pmc_err(PM_EINVAL, "fd %d is not a pm %s segment", fd,
		    pmc_kind_name(kind));
	if ((seals & PMC_SEALS) != PMC_SEALS ||
	    (seals & (F_SEAL_WRITE | F_SEAL_FUTURE_WRITE)))
		return pmc_err(PM_EINVAL, "fd %d: its size is not sealed, or "
		    "it is sealed read-only", fd);
	if (fl == -1 || (fl & O_ACCMODE) != O_RDWR)
		return pmc_err(PM_EINVAL, "fd %d is not open read-write", fd);
	if (st.st_size <= 0 || (uint64_t)st.st_size > PMC_SEG_MAX ||
	    (kind != PMC_K_SHM && st.st_size != PMC_SYNC_SEG_SIZE))
		return pmc_err(PM_EINVAL, "fd %d: a %s of %lld bytes", fd,
		    pmc_kind_name(kind), (long long)st.st_size);
	*sizep = (size_t)st.st_size;
	return PM_OK;
}

/* Maps fd (taken: the segment's, or closed on failure) as a kind. */
int
pmc_seg_adopt(int fd, int kind, struct pmc_seg *s)
{
	const struct pmc_seg_hdr *h;
	size_t size;

	s->base = MAP_FAILED;
	s->fd = -1;
	if (pmc_seg_check(fd, kind, &size) != PM_OK) {
		if (fd >= 0)
			close(fd);
		return pm_last_error();
	}
	s->base = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (s->base == MAP_FAILED) {
		pmc_err(errno == ENOMEM ? PM_ENOMEM : PM_ESYS, "cannot map %zu "
		    "bytes: %s", size, strerror(errno));
		close(fd);
		return pm_last_error();
	}
	s->fd = fd;
	s->size = size;
	h = s->base;
	if (kind != PMC_K_SHM && (h->magic != PMC_SEG_MAGIC ||
	    h->kind != (uint32_t)kind || h->version != PMC_SEG_VERSION)) {
		pmc_seg_close(s);
		return pmc_err(PM_EINVAL, "fd %d does not hold a %s", fd,
		    pmc_kind_name(kind));
	}
	return PM_OK;
}

void
pmc_seg_close(struct pmc_seg *s)
{
	if (s->base != MAP_FAILED && s->base != NULL)
		munmap(s->base, s->size);
	if (s->fd >= 0)
		close(s->fd);
	s->base = MAP_FAILED;
	s->fd = -1;
}

/* ---- the namespace in pmd ---- */

static int
obj_flags_ok(int flags, int own)
{
	if (flags & ~(PM_O_CREATE | PM_O_EXCL | PM_O_SHARED | own))
		return pmc_err(PM_EINVAL, "unknown flags %#x",
		    flags & ~(PM_O_CREATE | PM_O_EXCL | PM_O_SHARED | own));
	if ((flags & PM_O_EXCL) && !(flags & PM_O_CREATE))
		return pmc_err(PM_EINVAL, "PM_O_EXCL without PM_O_CREATE");
	return PM_OK;
}

/* Asks pmd for name's segment, offering fd (-1: none, taken) to create
 * it; the fd of the reply in *fdp. */
static int
obj_request(pm_conn *c, const char *name, int kind, int flags, int fd,
    int *fdp)
{
	Pm__ObjOpen m = PM__OBJ_OPEN__INIT;
	Pm__ObjOpenReply *r;
	struct pmc_pending *p;
	int rc;

	m.name = (char *)(uintptr_t)name;
	m.kind = (Pm__ObjKind)kind;
	m.flags = (uint32_t)flags;
	rc = pmc_call(c, PM__TYPE__T_OBJ_OPEN, &m.base, fd >= 0 ? &fd : NULL,
	    fd >= 0 ? 1 : 0, &pm__obj_open_reply__descriptor, &p, -1);
	if (rc != PM_OK)
		return rc;
	r = (Pm__ObjOpenReply *)p->msg;
	if (r == NULL || r->kind != (Pm__ObjKind)kind || p->nfds != 1) {
		pmc_pending_free(c, p);
		return pmc_err(PM_EPROTO, "pmd's answer to open %s has no "
		    "%s segment", name, pmc_kind_name(kind));
	}
	*fdp = p->fds[0];
	p->fds[0] = -1;
	pmc_pending_free(c, p);
	return PM_OK;
}

/*
 * Opens a shared object of kind: anonymous (name NULL: made here) or
 * named (pmd's).  own: the kind's own flags; size and init make the
 * segment when the call may create it.
 */
int
pmc_obj_open(pm_conn *c, const char *name, int kind, int flags, int own,
    size_t size, pmc_seg_init_fn *init, const void *ud, struct pmc_seg *s)
{
	struct pmc_seg made;
	int fd = -1, rc;

	s->base = MAP_FAILED;
	s->fd = -1;
	if (obj_flags_ok(flags, own) != PM_OK)
		return pm_last_error();
	if (name == NULL)
		return pmc_seg_make(kind, size, init, ud, s);
	if (c == NULL)
		return pmc_err(PM_EINVAL, "a named %s needs a connection",
		    pmc_kind_name(kind));
	if (flags & PM_O_CREATE) {
		if ((rc = pmc_seg_make(kind, size, init, ud, &made)) != PM_OK)
			return rc;
		munmap(made.base, made.size);
		fd = made.fd;
	}
	if ((rc = obj_request(c, name, kind, flags, fd, &fd)) != PM_OK)
		return rc;
	return pmc_seg_adopt(fd, kind, s);
}

int
pm_unlink(pm_conn *c, const char *name)
{
	Pm__ObjUnlink m = PM__OBJ_UNLINK__INIT;
	struct pmc_pending *p;
	int rc;

	if (c == NULL || name == NULL)
		return pmc_err(PM_EINVAL, "no connection or no name");
	m.name = (char *)(uintptr_t)name;
	if ((rc = pmc_call(c, PM__TYPE__T_OBJ_UNLINK, &m.base, NULL, 0, NULL,
	    &p, -1)) != PM_OK)
		return rc;
	pmc_pending_free(c, p);
	return pmc_ok();
}

/* ---- pm_shm ---- */

pm_shm *
pm_shm_open(pm_conn *c, const char *name, size_t size, int flags)
{
	pm_shm *s;

	if (name == NULL && size == 0) {
		pmc_err(PM_EINVAL, "a shared memory of 0 bytes");
		return NULL;
	}
	if (name != NULL && (flags & PM_O_CREATE) && size == 0) {
		pmc_err(PM_EINVAL, "creating %s: a size of 0 bytes", name);
		return NULL;
	}
	if ((s = calloc(1, sizeof(*s))) == NULL) {
		pmc_err(PM_ENOMEM, "out of memory");
		return NULL;
	}
	if (pmc_obj_open(c, name, PMC_K_SHM, flags, 0, size, NULL, NULL,
	    &s->seg) != PM_OK) {
		free(s);
		return NULL;
	}
	if (size > s->seg.size) {
		pmc_err(PM_EINVAL, "%s holds %zu bytes, fewer than %zu", name,
		    s->seg.size, size);
		pm_shm_free(s);
		return NULL;
	}
	pmc_ok();
	return s;
}

pm_shm *
pm_shm_adopt(int fd)
{
	pm_shm *s;

	if ((s = calloc(1, sizeof(*s))) == NULL) {
		if (fd >= 0)
			close(fd);
		pmc_err(PM_ENOMEM, "out of memory");
		return NULL;
	}
	if (pmc_seg_adopt(fd, PMC_K_SHM, &s->seg) != PM_OK) {
		free(s);
		return NULL;
	}
	pmc_ok();
	return s;
}

void *
pm_shm_ptr(pm_shm *s)
{
	return s != NULL ? s->seg.base : NULL;
}

size_t
pm_shm_size(pm_shm *s)
{
	return s != NULL ? s->seg.size : 0;
}

int
pm_shm_fd(pm_shm *s)
{
	if (s == NULL)
		return pmc_err(PM_EINVAL, "no shared memory");
	return s->seg.fd;
}

void
pm_shm_free(pm_shm *s)
{
	if (s == NULL)
		return;
	pmc_seg_close(&s->seg);
	free(s);
}
