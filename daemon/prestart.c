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
#include <fcntl.h>
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

	/* a few clones asked at a time: a spawn that finds none idle is
	 * forked behind them */
	return !pmd->stopping && pmd->forker_fd >= 0 &&
	    pmd->prestart_fails < PMD_PRESTART_FAILS &&
	    pmd->nprestarting < PMD_PRESTART_INFLIGHT &&
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
	prestart_later();		/* the next ones */
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
	while (pmd->nclaimed > 0) {	/* they run nothing either */
		TAILQ_FOREACH(w, &pmd->workers, entry)
			if (w->state == W_CLAIMED)
				break;
		if (w == NULL)
			break;
		pmd->nworkers--;
		worker_discard(w);
	}
}

/* ---- claimed ahead: a client's own idle workers ---- */

/*
 * A claimed worker's Running, when it starts its client's Spawn: from then
 * on a worker like any other.  Whatever else comes (EOF: it died, or its
 * client dropped it) leaves it to its reaping.  Its idle socket is done.
 */
static void
claimed_read(struct worker *w)
{
	struct wire_in in;
	struct pm_frame f;
	Pm__Running *m;
	const char *why;
	ssize_t n;
	int r = 0;

	wire_in_init(&in, PMD_FORKER_FRAME);
	n = wire_in_read(&in, w->idle_fd);
	if (n == -1 && errno == EAGAIN) {
		wire_in_free(&in);
		return;				/* not yet */
	}
	if (n > 0 && (r = wire_in_next(&in, &f, &why)) == 1 &&
	    f.type == PM__TYPE__T_RUNNING &&
	    (m = pm__running__unpack(NULL, f.len, f.data)) != NULL) {
		free(w->name);
		free(w->target);
		w->name = strndup(m->name ? m->name : "", PMD_MAX_NAME);
		w->target = strndup(m->target ? m->target : "",
		    PMD_MAX_PATH * 2);
		w->daemonic = m->daemonic;
		pm__running__free_unpacked(m, NULL);
		pmd->nclaimed--;
		w->requested = now_mono();
		clock_gettime(CLOCK_MONOTONIC, &w->started);
		worker_forked(w);		/* W_RUNNING */
	}
	if (r == 1)
		wire_frame_close(&f);
	wire_in_free(&in);
	event_free(w->idle_ev);
	w->idle_ev = NULL;
	close(w->idle_fd);
	w->idle_fd = -1;
}

static void
claimed_read_cb(evutil_socket_t fd, short ev, void *arg)
{
	claimed_read(arg);
}

/* Its client has gone: one that started is a worker of a gone client
 * (its daemonic flag decides); one still waiting is ended. */
void
prestart_owner_gone(struct worker *w)
{
	w->owner = NULL;
	if (w->idle_fd >= 0)
		claimed_read(w);
	if (w->state == W_CLAIMED) {
		pmd->nworkers--;
		worker_discard(w);
	}
}

/* The workers uid's clients hold claimed. */
static int
claimed_by(uid_t uid)
{
	struct worker *w;
	int n = 0;

	TAILQ_FOREACH(w, &pmd->workers, entry)
		if (w->state == W_CLAIMED && w->uid == uid)
			n++;
	return n;
}

/* Gives w to s: the worker takes s's credentials now and waits on the
 * channel whose other end goes to s (*chfd).  -1: w is discarded. */
static int
claim_hand(struct session *s, struct worker *w, int *chfd)
{
	Pm__Fork fk = PM__FORK__INIT;
	struct wire_out out;
	int ch[2], r;

	if ((w->name = strdup("")) == NULL || (w->target = strdup("")) ==
	    NULL || socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0,
	    ch) == -1) {
		worker_discard(w);
		return -1;
	}
	fk.wid = w->wid;
	fk.claim = 1;
	fk.uid = s->uid;
	fk.gid = s->gid;
	fk.set_creds = pmd->euid == 0;
	fk.owner_pid = s->pid;
	fk.n_groups = (size_t)s->ngroups;
	fk.groups = s->groups;
	wire_out_init(&out);
	r = wire_out_frame(&out, PM__TYPE__T_FORK, 0, &fk.base, &ch[1], 1);
	if (r == 0 && wire_out_flush_wait(&out, w->idle_fd,
	    wire_deadline(PMD_HANDOFF_TIMEOUT)) != 1)
		r = -1;
	wire_out_free(&out);
	if (r == -1 || (w->idle_ev = event_new(pmd->base, w->idle_fd,
	    EV_READ | EV_PERSIST, claimed_read_cb, w)) == NULL) {
		close(ch[0]);
		worker_discard(w);
		return -1;
	}
	fcntl(w->idle_fd, F_SETFL, O_NONBLOCK);
	event_add(w->idle_ev, NULL);
	w->state = W_CLAIMED;
	w->owner = s;
	w->owner_pid = s->pid;
	w->uid = s->uid;
	w->kind = PM__KIND__K_FUNCTION;
	w->method = PM__START_METHOD__S_FORKSERVER;
	pmd->nclaimed++;
	pmd->nworkers++;
	pmd->prestart_claimed++;
	pmd->prestart_fails = 0;
	*chfd = ch[0];
	return 0;
}

/*
 * Claim: up to count idle workers for the client's next starts, within
 * prestart_workers_per_uid held at once and the worker bounds; as many as
 * are idle now (none is an answer too: the client forks as usual).
 */
void
handle_claim(struct session *s, struct pm_frame *f)
{
	Pm__ClaimReply r = PM__CLAIM_REPLY__INIT;
	uint64_t wids[PMD_CLAIM_MAX];
	int32_t pids[PMD_CLAIM_MAX];
	int fds[PMD_CLAIM_MAX], n = 0, want;
	struct worker *w;
	Pm__Claim *c;

	if ((c = pm__claim__unpack(NULL, f->len, f->data)) == NULL) {
		session_error(s, f->id, PM__CODE__C_PROTO, "malformed claim");
		return;
	}
	want = c->count < PMD_CLAIM_MAX ? (int)c->count : PMD_CLAIM_MAX;
	pm__claim__free_unpacked(c, NULL);
	if (f->nfds != 0) {
		session_error(s, f->id, PM__CODE__C_INVAL, "a claim takes no "
		    "fds");
		return;
	}
	if (pmd->stopping) {
		session_error(s, f->id, PM__CODE__C_STATE, "pmd is stopping");
		return;
	}
	if (!workers_room(s, f->id))
		return;
	if (want > pmd->cfg.prestart_workers_per_uid - claimed_by(s->uid))
		want = pmd->cfg.prestart_workers_per_uid - claimed_by(s->uid);
	while (n < want && pmd->nworkers + pmd->nadopted <
	    pmd->cfg.max_workers && workers_count_uid(s->uid) <
	    pmd->cfg.max_workers_per_uid && (w = prestart_take()) != NULL) {
		if (claim_hand(s, w, &fds[n]) == -1)
			continue;
		wids[n] = w->wid;
		pids[n] = w->pid;
		n++;
	}
	if (n > 0)
		prestart_later();
	r.n_wids = r.n_pids = (size_t)n;
	r.wids = wids;
	r.pids = pids;
	session_send(s, PM__TYPE__T_CLAIM_REPLY, f->id, &r.base, fds, n);
}
