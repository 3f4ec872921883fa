/*
 * listener.c - named rendezvous for pipes through pmd (Python's
 * multiprocessing.connection Listener and Client): pmd pairs a connect
 * with an accept and hands each side one end of a fresh socketpair, with
 * the other side's credentials as the kernel gave them to pmd.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pmclient_int.h"
#include "dict.pb-c.h"

struct pm_listener {
	pm_conn		*c;
	uint64_t	 lid;
	int		 efd;		/* readable while connects wait */
};

pm_listener *
pm_listen(pm_conn *c, const char *name, int flags)
{
	Pm__Listen m = PM__LISTEN__INIT;
	Pm__ListenReply *r;
	struct pmc_pending *p;
	pm_listener *l;

	if (c == NULL || name == NULL) {
		pmc_err(PM_EINVAL, "no connection or no name");
		return NULL;
	}
	if (flags & ~PM_O_SHARED) {
		pmc_err(PM_EINVAL, "unknown listen flags %#x", flags);
		return NULL;
	}
	m.name = (char *)(uintptr_t)name;
	m.flags = (uint32_t)flags;
	if (pmc_call(c, PM__LISTEN_TYPE__L_LISTEN, &m.base, NULL, 0,
	    &pm__listen_reply__descriptor, &p, -1) != PM_OK)
		return NULL;
	if ((r = (Pm__ListenReply *)p->msg) == NULL || p->nfds != 1) {
		pmc_pending_free(c, p);
		pmc_err(PM_EPROTO, "pmd answered listen without its eventfd");
		return NULL;
	}
	if ((l = calloc(1, sizeof(*l))) == NULL) {
		pmc_pending_free(c, p);
		pmc_err(PM_ENOMEM, "out of memory");
		return NULL;
	}
	l->c = c;
	l->lid = r->lid;
	l->efd = p->fds[0];
	p->fds[0] = -1;
	p->nfds = 0;
	pmc_pending_free(c, p);
	pmc_ok();
	return l;
}

/* The pipe end of a PeerEnd reply. */
static pm_pipe *
peer_end(pm_conn *c, struct pmc_pending *p)
{
	Pm__PeerEnd *r = (Pm__PeerEnd *)p->msg;
	pm_pipe *end;
	int fd;

	if (r == NULL || p->nfds != 1) {
		pmc_pending_free(c, p);
		pmc_err(PM_EPROTO, "pmd answered without a pipe end");
		return NULL;
	}
	fd = p->fds[0];
	p->fds[0] = -1;
	p->nfds = 0;
	end = pmc_pipe_rendezvous(fd, (pid_t)r->pid, (uid_t)r->uid);
	pmc_pending_free(c, p);
	if (end != NULL)
		pmc_ok();
	return end;
}

pm_pipe *
pm_accept(pm_listener *l, double timeout)
{
	Pm__Accept m = PM__ACCEPT__INIT;
	struct pmc_pending *p;

	if (l == NULL || isnan(timeout)) {
		pmc_err(PM_EINVAL, "no listener, or a timeout not a number");
		return NULL;
	}
	m.lid = l->lid;
	m.timeout = timeout < 0 ? -1 : timeout;
	if (pmc_call(l->c, PM__LISTEN_TYPE__L_ACCEPT, &m.base, NULL, 0,
	    &pm__peer_end__descriptor, &p, -1) != PM_OK)
		return NULL;
	return peer_end(l->c, p);
}

pm_pipe *
pm_pipe_connect(pm_conn *c, const char *name, double timeout)
{
	Pm__Connect m = PM__CONNECT__INIT;
	struct pmc_pending *p;

	if (c == NULL || name == NULL || isnan(timeout)) {
		pmc_err(PM_EINVAL, "no connection, no name, or a timeout not "
		    "a number");
		return NULL;
	}
	m.name = (char *)(uintptr_t)name;
	m.timeout = timeout < 0 ? -1 : timeout;
	if (pmc_call(c, PM__LISTEN_TYPE__L_CONNECT, &m.base, NULL, 0,
	    &pm__peer_end__descriptor, &p, -1) != PM_OK)
		return NULL;
	return peer_end(c, p);
}

int
pm_listener_fd(pm_listener *l)
{
	if (l == NULL)
		return pmc_err(PM_EINVAL, "no listener");
	return l->efd;
}

void
pm_listener_free(pm_listener *l)
{
	Pm__ListenerRef m = PM__LISTENER_REF__INIT;
	struct pmc_pending *p;

	if (l == NULL)
		return;
	m.lid = l->lid;
	/* the name is free once pmd has answered; a lost connection freed
	 * it already */
	if (pmc_call(l->c, PM__LISTEN_TYPE__L_CLOSE, &m.base, NULL, 0, NULL,
	    &p, -1) == PM_OK)
		pmc_pending_free(l->c, p);
	close(l->efd);
	free(l);
}
