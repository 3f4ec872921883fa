/*
 * spare.c - workers a connection claimed ahead of its starts.  pmd keeps
 * pre-started workers; a client that starts Processes asks for a few of
 * its own (Claim), each with the client's credentials already taken and
 * waiting on a channel only this client holds.  A start then is one frame
 * on that channel, read by the worker itself: no pmd in between.  The
 * claim is asked for after a start, in the background (its reply comes
 * with whatever the client waits on next), and again when few are left.
 * A spare is used once; dropped (pm_disconnect, a fork, the connection
 * lost), its channel closes and the worker, which ran nothing, ends.
 */
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pmclient_int.h"

#define PMC_SPARES	4	/* asked for at a time (pmd may give fewer) */
#define PMC_SPARES_LOW	2	/* ask again below this */

struct spare {
	uint64_t	 wid;
	pid_t		 pid;
	int		 channel;
};

struct spares {
	struct spare	 s[PMC_SPARES];
	int		 n;
	struct pmc_pending *claim;	/* in flight */
	int		 off;		/* pmd will not give any */
	struct pmc_sub	*sub;
};

static void	spares_event_cb(pm_conn *, int, const void *, void *);

static void
spares_drop(pm_conn *c, struct spares *sp, int forked)
{
	int i;

	for (i = 0; i < sp->n; i++)
		close(sp->s[i].channel);
	sp->n = 0;
	if (sp->claim != NULL) {
		if (forked)		/* the parent's: its fds, not ours */
			sp->claim->done_fn = NULL;
		else
			pmc_pending_free(c, sp->claim);
		sp->claim = NULL;
	}
}

static void
spares_event_cb(pm_conn *c, int event, const void *ev, void *ud)
{
	struct spares *sp = ud;

	switch (event) {
	case PMC_EV_LOST:
		spares_drop(c, sp, 0);
		sp->off = 1;
		break;
	case PMC_EV_DETACH:
	case PMC_EV_FORKED:
		spares_drop(c, sp, event == PMC_EV_FORKED);
		free(sp);
		break;
	}
}

static void
claim_done(pm_conn *c, struct pmc_pending *pd, void *ud)
{
	struct spares *sp = ud;
	Pm__ClaimReply *r = (Pm__ClaimReply *)pd->msg;
	size_t i;

	sp->claim = NULL;
	if (pd->code != PM_OK || r == NULL || r->n_wids != r->n_pids ||
	    r->n_wids != (size_t)pd->nfds) {
		if (pd->code == PM_EPERM)
			sp->off = 1;	/* this uid starts nothing here */
		pmc_pending_free(c, pd);
		return;
	}
	for (i = 0; i < r->n_wids && sp->n < PMC_SPARES; i++) {
		sp->s[sp->n].wid = r->wids[i];
		sp->s[sp->n].pid = r->pids[i];
		sp->s[sp->n].channel = pd->fds[i];
		pd->fds[i] = -1;
		sp->n++;
	}
	pmc_pending_free(c, pd);	/* closes any left over */
}

static struct spares *
spares_of(pm_conn *c)
{
	struct spares *sp;

	if ((sp = pmc_sub_find(c, spares_event_cb)) != NULL)
		return sp;
	if ((sp = calloc(1, sizeof(*sp))) == NULL)
		return NULL;
	if ((sp->sub = pmc_sub_add(c, spares_event_cb, sp)) == NULL) {
		free(sp);
		return NULL;
	}
	return sp;
}

/* Asks pmd for spares if few are left; the reply is taken when it comes.
 * Nothing is reported: without spares, starts go through pmd. */
void
pmc_spare_want(pm_conn *c)
{
	Pm__Claim q = PM__CLAIM__INIT;
	struct spares *sp;

	if (c == NULL || c->lost || (sp = spares_of(c)) == NULL || sp->off ||
	    sp->claim != NULL || sp->n >= PMC_SPARES_LOW)
		return;
	q.count = (uint32_t)(PMC_SPARES - sp->n);
	if ((sp->claim = pmc_send_later(c, PM__TYPE__T_CLAIM, &q.base,
	    &pm__claim_reply__descriptor)) == NULL)
		return;
	sp->claim->done_fn = claim_done;
	sp->claim->done_ud = sp;
}

/* A live spare, taken (its channel is the caller's): 1, or 0 for none. */
int
pmc_spare_take(pm_conn *c, uint64_t *wid, pid_t *pid, int *channel)
{
	struct pollfd pf;
	struct spares *sp;
	struct spare s;

	if (c == NULL || c->lost || (sp = pmc_sub_find(c,
	    spares_event_cb)) == NULL)
		return 0;
	while (sp->n > 0) {
		s = sp->s[0];
		memmove(&sp->s[0], &sp->s[1], (size_t)(sp->n - 1) *
		    sizeof(sp->s[0]));
		sp->n--;
		/* a worker that has gone shows as readable (EOF) */
		pf.fd = s.channel;
		pf.events = POLLIN;
		pf.revents = 0;
		if (poll(&pf, 1, 0) == 0) {
			*wid = s.wid;
			*pid = s.pid;
			*channel = s.channel;
			return 1;
		}
		close(s.channel);
	}
	return 0;
}
