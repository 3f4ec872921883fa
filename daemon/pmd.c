/*
 * pmd.c - main: options, the listening socket, the forker, the event loop,
 * systemd notification, and an orderly exit.
 */
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/types.h>

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pmd.h"

#define PMD_NOFILE_MAX	(1 << 20)

struct pmd *pmd;

/* Raised for the broker only: the forker, and so every worker, gets the
 * limit pmd started with back (forker_start). */
static void
raise_nofile(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == -1)
		return;
	pmd->nofile0 = rl;
	rl.rlim_cur = rl.rlim_max > PMD_NOFILE_MAX ? PMD_NOFILE_MAX :
	    rl.rlim_max;
	setrlimit(RLIMIT_NOFILE, &rl);
}

static int
default_socket(struct pmd_config *c)
{
	const char *xdg = getenv("XDG_RUNTIME_DIR");
	char path[PATH_MAX];

	if (c->socket != NULL)
		return 0;
	c->socket_default = 1;
	if (geteuid() == 0)
		c->socket = strdup(PMD_SYSTEM_SOCKET);
	else if (xdg != NULL && *xdg != '\0') {
		snprintf(path, sizeof(path), "%s/pmd/pmd.sock", xdg);
		c->socket = strdup(path);
	} else {
		fprintf(stderr, "pmd: no --socket and no $XDG_RUNTIME_DIR\n");
		return -1;
	}
	return c->socket ? 0 : -1;
}

static void
signal_cb(evutil_socket_t sig, short ev, void *arg)
{
	broker_stop(sig == SIGTERM ? "SIGTERM" : "SIGINT");
}

static void
reap_cb(evutil_socket_t sig, short ev, void *arg)
{
	workers_reap_orphans();
}

static void
status_cb(evutil_socket_t fd, short ev, void *arg)
{
	static int last_clients = -1, last_workers = -1;

	if (pmd->nsessions == last_clients && pmd->nworkers == last_workers)
		return;
	last_clients = pmd->nsessions;
	last_workers = pmd->nworkers;
	notify("STATUS=%d clients, %d workers, %llu spawned",
	    pmd->nsessions, pmd->nworkers, (unsigned long long)pmd->spawned);
}

static void
watchdog_cb(evutil_socket_t fd, short ev, void *arg)
{
	notify("WATCHDOG=1");
}

static void
idle_cb(evutil_socket_t fd, short ev, void *arg)
{
	if (!pmd->had_client) {
		log_info("private pmd: no client came; exiting");
		pmd->stopping = 1;
		event_base_loopbreak(pmd->base);
	}
}

static struct event *
periodic(double seconds, event_callback_fn cb)
{
	struct timeval tv;
	struct event *ev;

	tv.tv_sec = (time_t)seconds;
	tv.tv_usec = (suseconds_t)((seconds - (double)tv.tv_sec) * 1e6);
	if ((ev = event_new(pmd->base, -1, EV_PERSIST, cb, NULL)) == NULL ||
	    event_add(ev, &tv) == -1)
		fatal("%s: event", __func__);
	return ev;
}

static void
announce_ready(void)
{
	uint64_t usec = 0;
	struct timeval tv;

	if (pmd->cfg.ready_fd >= 0) {
		(void)!write(pmd->cfg.ready_fd, "READY\n", 6);
		close(pmd->cfg.ready_fd);
		pmd->cfg.ready_fd = -1;
	}
	notify("READY=1\nSTATUS=serving %s\nMAINPID=%d",
	    pmd->cfg.socket, (int)getpid());
	pmd->status_timer = periodic(PMD_STATUS_PERIOD, status_cb);
	if ((usec = notify_watchdog_usec()) > 0)
		pmd->watchdog_timer = periodic((double)usec / 2e6, watchdog_cb);
	if (pmd->cfg.private_mode) {
		pmd->idle_timer = evtimer_new(pmd->base, idle_cb, NULL);
		tv.tv_sec = (time_t)PMD_PRIVATE_IDLE;
		tv.tv_usec = 0;
		if (pmd->idle_timer != NULL)
			evtimer_add(pmd->idle_timer, &tv);
	}
}

static void
cleanup(void)
{
	char dir[PATH_MAX], *slash;

	broker_close_all();
	prestart_stop();
	forker_stop();
	cgroup_cleanup();
	if (!pmd->activated && pmd->cfg.socket != NULL) {
		unlink(pmd->cfg.socket);
		if (pmd->cfg.private_mode) {
			snprintf(dir, sizeof(dir), "%s", pmd->cfg.socket);
			if ((slash = strrchr(dir, '/')) != NULL && slash != dir) {
				*slash = '\0';
				rmdir(dir);
			}
		}
	}
	if (pmd->listen_fd >= 0)
		close(pmd->listen_fd);
}

int
main(int argc, char *argv[])
{
	struct event *sigterm, *sigint, *sigchld;
	const char *cfgpath;
	static struct pmd state;
	int r, subreaper = 0;

	pmd = &state;
	config_defaults(&pmd->cfg);
	if ((cfgpath = config_path(argc, argv)) != NULL &&
	    config_file(&pmd->cfg, cfgpath) == -1)
		return 2;
	if ((r = config_args(&pmd->cfg, argc, argv, 1)) != 0)
		return r == 1 ? 0 : 2;
	log_init(pmd->cfg.log_level);
	if (pmd->cfg.forker_fd >= 0)
		forker_main(&pmd->cfg, pmd->cfg.socket);
	if (pmd->cfg.runner_fds >= 0)
		runner_main(&pmd->cfg, pmd->cfg.socket);
	if (default_socket(&pmd->cfg) == -1)
		return 2;

	signal(SIGPIPE, SIG_IGN);
	signal(SIGHUP, SIG_IGN);
	raise_nofile();
	pmd->listen_fd = pmd->forker_fd = pmd->forker_pidfd = -1;
	pmd->drain_fd = -1;
	pmd->euid = geteuid();
	/* as PID 1 (in a container) or a subreaper, orphans become ours */
	pmd->reaper = getpid() == 1 ||
	    (prctl(PR_GET_CHILD_SUBREAPER, &subreaper) == 0 && subreaper);
	clock_gettime(CLOCK_MONOTONIC, &pmd->start);
	TAILQ_INIT(&pmd->sessions);
	TAILQ_INIT(&pmd->workers);
	TAILQ_INIT(&pmd->idle);
	if ((pmd->base = event_base_new()) == NULL)
		fatal("cannot make an event base");
	if (broker_listen() == -1)
		return 1;
	if (forker_start() == -1) {
		log_err("cannot start the forker: %s", strerror(errno));
		cleanup();
		return 1;
	}
	if (broker_events_init() == -1) {
		cleanup();
		return 1;
	}
	sigterm = evsignal_new(pmd->base, SIGTERM, signal_cb, NULL);
	sigint = evsignal_new(pmd->base, SIGINT, signal_cb, NULL);
	sigchld = evsignal_new(pmd->base, SIGCHLD, reap_cb, NULL);
	if (sigterm == NULL || sigint == NULL || sigchld == NULL ||
	    evsignal_add(sigterm, NULL) == -1 ||
	    evsignal_add(sigint, NULL) == -1 ||
	    (pmd->reaper && evsignal_add(sigchld, NULL) == -1))
		fatal("cannot watch signals");
	workers_reap_orphans();		/* orphans from before we watched */
	prestart_fill();
	log_info("pmd %s serving %s%s", PMD_VERSION, pmd->cfg.socket,
	    pmd->cfg.private_mode ? " (private)" : "");
	announce_ready();
	event_base_dispatch(pmd->base);

	cleanup();
	event_free(sigterm);
	event_free(sigint);
	event_free(sigchld);
	if (pmd->accept_ev)
		event_free(pmd->accept_ev);
	if (pmd->accept_timer)
		event_free(pmd->accept_timer);
	if (pmd->stop_timer)
		event_free(pmd->stop_timer);
	if (pmd->idle_timer)
		event_free(pmd->idle_timer);
	if (pmd->status_timer)
		event_free(pmd->status_timer);
	if (pmd->watchdog_timer)
		event_free(pmd->watchdog_timer);
	event_base_free(pmd->base);
	log_info("stopped");
	config_free(&pmd->cfg);
	return 0;
}
