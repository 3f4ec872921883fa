/*
 * segment.h - the layout of shared-object segments (sealed memfds),
 * shared by libpmclient, which works in them, and pmd, which only reads
 * a copy of a few fields (pread, never a mapping) to show an object's
 * state in pmctl objects, and trusts none of them.
 *
 * A pm_shm segment is the user's bytes alone.  Every synchronization
 * object is one PMC_SYNC_SEG_SIZE segment starting with pmc_seg_hdr.
 * The memfd's name is "pm.<kind>" (pmc_kind_names), so a kind can be
 * checked from /proc/self/fd without reading the segment.
 */
#ifndef PMC_SEGMENT_H
#define PMC_SEGMENT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#define PMC_SEG_MAGIC		0x504d5347u	/* "PMSG" */
#define PMC_SEG_VERSION		1
#define PMC_SYNC_SEG_SIZE	4096		/* bytes of a sync object */
#define PMC_SEG_NAME_PREFIX	"pm."

/* The kinds, numbered as ObjKind in pm.proto. */
enum pmc_kind {
	PMC_K_SHM = 1,
	PMC_K_LOCK,
	PMC_K_SEM,
	PMC_K_EVENT,
	PMC_K_COND,
	PMC_K_BARRIER,
	PMC_K_DICT,			/* hosted by pmd: no segment */
	PMC_K_LISTENER,			/* hosted by pmd: no segment */
	PMC_K_MAX
};

struct pmc_seg_hdr {
	uint32_t	 magic;
	uint32_t	 kind;
	uint32_t	 version;
	uint32_t	 flags;		/* PM_LOCK_RECURSIVE, PM_SEM_BOUNDED */
};

/* Lock: a robust process-shared mutex (ERRORCHECK, or RECURSIVE). */
struct pmc_lock_seg {
	struct pmc_seg_hdr h;
	pthread_mutex_t	 m;
};

/* Semaphore: value and sleepers on a futex. */
struct pmc_sem_seg {
	struct pmc_seg_hdr h;
	_Atomic uint32_t value;
	_Atomic uint32_t waiters;	/* in futex wait (may overcount) */
	uint32_t	 bound;		/* PM_SEM_BOUNDED: the initial value */
};

struct pmc_event_seg {
	struct pmc_seg_hdr h;
	_Atomic uint32_t set;		/* 0 clear, 1 set */
	_Atomic uint32_t waiters;
};

/* Condition: a robust recursive mutex and a sequence futex. */
struct pmc_cond_seg {
	struct pmc_seg_hdr h;
	pthread_mutex_t	 m;
	_Atomic uint32_t seq;		/* bumped by every notify */
	_Atomic uint32_t waiters;
};

/* Barrier: state under a robust mutex; waiters sleep on gen, which each
 * completed or broken round bumps. */
struct pmc_barrier_seg {
	struct pmc_seg_hdr h;
	pthread_mutex_t	 m;
	uint32_t	 parties;
	uint32_t	 count;		/* arrived in this round */
	uint32_t	 broken;
	_Atomic uint32_t gen;
	uint32_t	 break_gen;	/* gen a break (not a completion) made */
};

_Static_assert(sizeof(struct pmc_barrier_seg) <= PMC_SYNC_SEG_SIZE,
    "a sync segment holds its object");
_Static_assert(sizeof(struct pmc_cond_seg) <= PMC_SYNC_SEG_SIZE,
    "a sync segment holds its object");

/* "shm", "lock", ...: the memfd is named PMC_SEG_NAME_PREFIX + this. */
extern const char *const pmc_kind_names[PMC_K_MAX];
/* Its name, or "object" for a kind out of range. */
const char *pmc_kind_name(int kind);

#endif
