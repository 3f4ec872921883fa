/*
 * prestart.c - pre-started workers, as Android's USAP pool: the forker
 * clones a few workers ahead of any request, and a spawn hands one its
 * request instead of waiting for a clone.  Each waits on an idle socket
 * of its own for the very frame the forker would have been sent (the
 * request's memfd and fds), then goes on as any worker: it takes the
 * client's credentials, its fds and limits, before any client code.
 *
 * A pre-started worker is cloned before any request exists, so it holds
 * nothing of anyone; it serves one request and exits after it, never
 * another.  Bounded by prestart_workers (0: none) and by max_workers;
 * topped up after each claim, off the start that took one.  Should idle
 * workers die or fail to clone PMD_PRESTART_FAILS times in a row, pmd
 * makes no more until a spawn works again.
 */
#include <sys/pidfd.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pmd.h"

static void
prestart_cb(evutil_socket_t fd, short ev, void *arg)
{
	prestart_fill();
}

/* Tops up the idle workers on the next turn of the loop, after the
 * replies of this one. */
void
prestart_later(void)
{
	static const struct timeval now = { 0, 0 };

	if (pmd->cfg.prestart_workers == 0)
		return;
	if (pmd->prestart_ev == NULL && (pmd->prestart_ev =
	    evtimer_new(pmd->base, prestart_cb, NULL)) == NULL)
		return;
	evtimer_add(pmd->prestart_ev, &now);
}

static int
prestart_room(void)
{
	int held = pmd->nidle + pmd->nprestarting;

	return !pmd->stopping && pmd->forker_fd >= 0 &&
	    pmd->prestart_fails < PMD_PRESTART_FAILS &&
	    held < pmd->cfg.prestart_workers &&
	    pmd->nworkers + pmd->nadopted + held < pmd->cfg.max_workers;
}

/* Asks the forker for idle workers up to prestart_workers. */
void
prestart_fill(void)
{
	Pm__Fork fk = PM__FORK__INIT;
	struct worker *w;
	int sp[2], asked = 0;

	while (prestart_room()) {
		if ((w = calloc(1, sizeof(*w))) == NULL)
			break;
		if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0,
		    sp) == -1) {
			log_warn("%s: socketpair: %s", __func__,
			    strerror(errno));
			free(w);
			break;
		}
		w->wid = ++pmd->next_wid;
		w->state = W_FORKING;
		w->prestart = 1;
		w->pidfd = w->stats_fd = w->client_channel = -1;
		w->idle_fd = sp[0];
		w->uid = (uid_t)-1;		/* nobody's, until claimed */
		w->forker_gen = pmd->forker_gen;
		w->requested = now_mono();
		worker_link(w);
		pmd->nprestarting++;
		fk.wid = w->wid;
		fk.prestart = 1;
		asked++;
		if (wire_out_frame(&pmd->forker_out, PM__TYPE__T_FORK, 0,
		    &fk.base, &sp[1], 1) == -1) {
			worker_unlink(w);
			worker_free(w);
			break;
		}
	}
	if (asked > 0)
		forker_flush();
}

/* The forker cloned it: idle from now on, its death watched. */
void
prestart_forked(struct worker *w)
{
	w->state = W_IDLE;
	pmd->nprestarting--;
	pmd->nidle++;
	TAILQ_INSERT_TAIL(&pmd->idle, w, idle_entry);
	if ((w->ev = event_new(pmd->base, w->pidfd, EV_READ, worker_reap_cb,
	    w)) == NULL)
		fatal("%s: event_new", __func__);
	event_add(w->ev, NULL);
}

/* Before a pre-started worker's record goes: the counts. */
void
prestart_forget(struct worker *w)
{
	if (!w->prestart)
		return;
	if (w->state == W_IDLE) {
		TAILQ_REMOVE(&pmd->idle, w, idle_entry);
		pmd->nidle--;
	} else
		pmd->nprestarting--;
	w->prestart = 0;
}

/* An idle worker died or could not be cloned: make another later, unless
 * that keeps happening. */
void
prestart_failed(struct worker *w)
{
	if (++pmd->prestart_fails == PMD_PRESTART_FAILS)
		log_warn("%d pre-started workers in a row died or could not "
		    "be cloned; none is made until a spawn works",
		    PMD_PRESTART_FAILS);
	worker_unlink(w);
	worker_free(w);
	prestart_later();
}

/* The oldest idle worker, claimed (no longer idle), or NULL. */
struct worker *
prestart_take(void)
{
	struct worker *w;

	while ((w = TAILQ_FIRST(&pmd->idle)) != NULL) {
		prestart_forget(w);
		if (pidfd_send_signal(w->pidfd, 0, NULL, 0) == 0)
			return w;
		worker_discard(w);	/* died just now */
	}
	return NULL;
}

/*
 * Hands a claimed worker its Fork frame (fds taken, as by the forker):
 * 0, or -1 when it cannot be delivered.  Its idle socket is closed after:
 * the frame is in the worker's socket, for it alone.
 */
int
prestart_hand(struct worker *w, const Pm__Fork *fwd, int *fds, int n)
{
	struct wire_out out;
	int r;

	wire_out_init(&out);
	r = wire_out_frame(&out, PM__TYPE__T_FORK, 0, &fwd->base, fds, n);
	if (r == 0 && wire_out_flush_wait(&out, w->idle_fd,
	    wire_deadline(PMD_HANDOFF_TIMEOUT)) != 1)
		r = -1;
	wire_out_free(&out);
	close(w->idle_fd);
	w->idle_fd = -1;
	pmd->prestart_claimed++;
	pmd->prestart_fails = 0;
	prestart_later();
	return r;
}

/* pmd stops: idle workers end at once (they run nothing). */
void
prestart_stop(void)
{
	struct worker *w;

	if (pmd->prestart_ev != NULL) {
		event_free(pmd->prestart_ev);
		pmd->prestart_ev = NULL;
	}
	while ((w = TAILQ_FIRST(&pmd->idle)) != NULL) {
		prestart_forget(w);
		worker_discard(w);
	}
}
