/*
 * pmctl.c - the admin CLI of pmd: status, ps, kill, run, ping, shutdown,
 * queues, dicts, objects, unlink, private.
 * Exit codes: 0 ok, 1 refused by pmd, 2 usage, 3 pmd unreachable; run
 * exits with the program's status (126/127 when it cannot be run).
 * --json: every answer and every error is one JSON document on stdout
 * (json-c does the encoding).
 */
#include <sys/stat.h>

#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <glob.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <json-c/json.h>

#include "pmclient_int.h"
#include "queue.pb-c.h"

#define EX_OK		0
#define EX_REFUSED	1
#define EX_USAGE	2
#define EX_UNREACH	3
#define EX_NOEXEC	126	/* run: found but not executable (as sh) */
#define EX_NOTFOUND	127	/* run: not found (as sh) */
#define CALL_TIMEOUT	30.0
#define PRIVATE_MAX	64	/* private pmds pmctl private lists */

static const char *opt_socket;
static int opt_json;
static int opt_private;
static char private_sock[PATH_MAX];

/* Prints o as one line of JSON on stdout and frees it. */
static void
json_out(json_object *o)
{
	puts(json_object_to_json_string_ext(o, JSON_C_TO_STRING_SPACED |
	    JSON_C_TO_STRING_NOSLASHESCAPE));
	json_object_put(o);
}

/* {"ok": true} plus the fields of o (NULL: none). */
static void
json_ok(json_object *o)
{
	json_object *r = o ? o : json_object_new_object();

	json_object_object_add(r, "ok", json_object_new_boolean(1));
	json_out(r);
}

static void
json_error(const char *code, const char *msg)
{
	json_object *o = json_object_new_object();

	json_object_object_add(o, "ok", json_object_new_boolean(0));
	json_object_object_add(o, "code", json_object_new_string(code));
	json_object_object_add(o, "error", json_object_new_string(msg));
	json_out(o);
}

static int
usage_of(const char *u, int code)
{
	fprintf(code ? stderr : stdout, "usage: pmctl [--socket PATH] %s\n", u);
	return code ? EX_USAGE : EX_OK;
}

static int	usage(int);

/* A usage error: says what is wrong, then u's usage (NULL: pmctl's);
 * exit 2. */
static int __attribute__((format(printf, 2, 3)))
bad_usage(const char *u, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	fprintf(stderr, "pmctl: %s\n", msg);
	if (opt_json)
		json_error("PM_EINVAL", msg);
	return u != NULL ? usage_of(u, 1) : usage(EX_USAGE);
}

/* Exit code for a failed libpmclient call; the error as JSON too. */
static int
fail(const char *what)
{
	int code = pm_last_error();

	fprintf(stderr, "pmctl: %s: %s\n", what, pm_last_message());
	if (opt_json)
		json_error(pm_errname(code), pm_last_message());
	return code == PM_ECONN ? EX_UNREACH : code == PM_EINVAL ?
	    EX_USAGE : EX_REFUSED;
}

/* The sockets of this uid's private pmds that answer (pm_connect(NULL)
 * makes them in $XDG_RUNTIME_DIR or /tmp as pmd-private.XXXXXX). */
static size_t
private_find(char socks[][PATH_MAX], pid_t *pids, size_t max)
{
	const char *xdg = getenv("XDG_RUNTIME_DIR");
	char pat[PATH_MAX];
	struct stat st;
	glob_t g;
	size_t i, n = 0;
	int dir;
	pm_conn *c;

	for (dir = 0; dir < 2; dir++) {
		if (dir == 0 && (xdg == NULL || *xdg == '\0'))
			continue;
		snprintf(pat, sizeof(pat), "%s/pmd-private.*/pmd.sock",
		    dir == 0 ? xdg : "/tmp");
		if (glob(pat, 0, NULL, &g) != 0)
			continue;
		for (i = 0; i < g.gl_pathc && n < max; i++) {
			if (stat(g.gl_pathv[i], &st) == -1 ||
			    st.st_uid != geteuid() ||
			    (c = pm_connect_flags(g.gl_pathv[i],
			    PM_CONNECT_NOSTART)) == NULL)
				continue;
			snprintf(socks[n], PATH_MAX, "%s", g.gl_pathv[i]);
			pids[n++] = pm_daemon_pid(c);
			pm_disconnect(c);
		}
		globfree(&g);
	}
	return n;
}

/* --private: the one private pmd of this uid; an error if none or several. */
static int
private_pick(void)
{
	static char socks[PRIVATE_MAX][PATH_MAX];
	pid_t pids[PRIVATE_MAX];
	size_t n = private_find(socks, pids, PRIVATE_MAX);

	if (n == 1) {
		snprintf(private_sock, sizeof(private_sock), "%s", socks[0]);
		opt_socket = private_sock;
		return 0;
	}
	if (n == 0)
		pmc_err(PM_ECONN, "no private pmd of uid %u answers",
		    (unsigned)geteuid());
	else
		pmc_err(PM_EINVAL, "%zu private pmds answer (pmctl private "
		    "lists them); choose one with --socket", n);
	return -1;
}

static pm_conn *
open_conn(void)
{
	if (opt_private && opt_socket == NULL && private_pick() == -1)
		return NULL;
	return pm_connect_flags(opt_socket, PM_CONNECT_NOSTART);
}

/* Common option parsing of a subcommand: --json, --help. */
static int
sub_opts(int argc, char **argv, const char *usage, const char *more,
    int *extra, char **extra_arg)
{
	static const struct option lo[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ "socket", required_argument, NULL, 'S' },
		{ "name", required_argument, NULL, 'n' },
		{ NULL, 0, NULL, 0 }
	};
	char shortopts[16] = "+:h";
	int ch;

	if (more != NULL)
		strncat(shortopts, more, sizeof(shortopts) - 3);
	optind = 1;
	opterr = 0;
	while ((ch = getopt_long(argc, argv, shortopts, lo, NULL)) != -1) {
		switch (ch) {
		case 'j':
			opt_json = 1;
			break;
		case 'h':
			usage_of(usage, 0);
			return 1;
		case 'S':
			opt_socket = optarg;
			break;
		case 'a':
			if (extra == NULL)
				goto bad;
			*extra = 1;
			break;
		case 'n':
		case 's':
			if (extra_arg == NULL)
				goto bad;
			*extra = ch;
			*extra_arg = optarg;
			break;
		case ':':
			bad_usage(usage, "%s needs a value", argv[optind - 1]);
			return -1;
		default:
			goto bad;
		}
	}
	return 0;
bad:
	bad_usage(usage, "unknown option %s", argv[optind - 1]);
	return -1;
}

/* sub_opts, then no operand allowed: 0 go on, 1 done (help), -1 usage. */
static int
sub_opts_only(int argc, char **argv, const char *usage, const char *more,
    int *extra, char **extra_arg)
{
	int r = sub_opts(argc, argv, usage, more, extra, extra_arg);

	if (r == 0 && optind < argc) {
		bad_usage(usage, "unexpected argument '%s'", argv[optind]);
		return -1;
	}
	return r;
}

/* Connects and makes one request.  EX_OK with *c and *p, the caller's to
 * free; else the exit code, with nothing left open. */
static int
request(const char *what, uint32_t type, const ProtobufCMessage *q,
    const ProtobufCMessageDescriptor *want, pm_conn **c,
    struct pmc_pending **p)
{
	int r;

	if ((*c = open_conn()) == NULL)
		return fail(what);
	if (pmc_call(*c, type, q, NULL, 0, want, p, CALL_TIMEOUT) != PM_OK) {
		r = fail(what);
		pm_disconnect(*c);
		*c = NULL;
		return r;
	}
	return EX_OK;
}

/*
 * ps, queues, objects: [--json] [-a] (*all: the request's field), then
 * the request.  EX_OK with *c and *p, the caller's to free (*c NULL after
 * --help: nothing to do); else the exit code, with nothing left open.
 */
static int
list_request(int argc, char **argv, const char *u, uint32_t type,
    const ProtobufCMessage *q, protobuf_c_boolean *all,
    const ProtobufCMessageDescriptor *want, pm_conn **c,
    struct pmc_pending **p)
{
	char *dummy = NULL;
	int r, a = 0;

	*c = NULL;
	if ((r = sub_opts_only(argc, argv, u, "a", &a, &dummy)) != 0)
		return r > 0 ? EX_OK : EX_USAGE;
	*all = a != 0;
	return request(argv[0], type, q, want, c, p);
}

/* The end of a list: the JSON array printed (if --json), all freed. */
static int
list_done(json_object *arr, pm_conn *c, struct pmc_pending *p)
{
	if (arr != NULL)
		json_out(arr);
	pmc_pending_free(c, p);
	pm_disconnect(c);
	return EX_OK;
}

static void
add_int(json_object *o, const char *k, int64_t v)
{
	json_object_object_add(o, k, json_object_new_int64(v));
}

static void
add_str(json_object *o, const char *k, const char *v)
{
	json_object_object_add(o, k, json_object_new_string(v ? v : ""));
}

static void
add_bool(json_object *o, const char *k, int v)
{
	json_object_object_add(o, k, json_object_new_boolean(v != 0));
}

static int
cmd_ping(int argc, char **argv)
{
	struct pmc_pending *p;
	Pm__Ping q = PM__PING__INIT;
	pm_conn *c;
	int r;

	if ((r = sub_opts_only(argc, argv, "ping", NULL, NULL, NULL)) != 0)
		return r > 0 ? EX_OK : EX_USAGE;
	if ((r = request("ping", PM__TYPE__T_PING, &q.base,
	    NULL, &c, &p)) != EX_OK)
		return r;
	pmc_pending_free(c, p);
	if (opt_json) {
		json_object *o = json_object_new_object();

		add_int(o, "pid", pm_daemon_pid(c));
		add_str(o, "socket", pm_conn_address(c));
		json_ok(o);
	} else
		printf("pmd (pid %d) is alive at %s\n", (int)pm_daemon_pid(c),
		    pm_conn_address(c));
	pm_disconnect(c);
	return EX_OK;
}

/* Asks pmd to stop (an admin operation) and waits for it to go. */
static int
cmd_shutdown(int argc, char **argv)
{
	struct pmc_pending *p;
	Pm__Shutdown q = PM__SHUTDOWN__INIT;
	pm_conn *c;
	double end;
	int r;

	if ((r = sub_opts_only(argc, argv, "shutdown", NULL, NULL,
	    NULL)) != 0)
		return r > 0 ? EX_OK : EX_USAGE;
	if ((r = request("shutdown", PM__TYPE__T_SHUTDOWN, &q.base,
	    NULL, &c, &p)) != EX_OK)
		return r;
	pmc_pending_free(c, p);
	/* pmd ends its workers, then closes: wait for the connection to drop */
	end = wire_now_ns() / 1e9 + CALL_TIMEOUT;
	while ((r = pm_dispatch(c, 0.5)) == PM_OK && wire_now_ns() / 1e9 < end)
		;
	if (opt_json)
		json_ok(NULL);
	pm_disconnect(c);
	return EX_OK;
}

static int
cmd_status(int argc, char **argv)
{
	Pm__Status q = PM__STATUS__INIT;
	Pm__StatusReply *s;
	struct pmc_pending *p;
	pm_conn *c;
	int r;

	if ((r = sub_opts_only(argc, argv, "status [--json]", NULL, NULL,
	    NULL)) != 0)
		return r > 0 ? EX_OK : EX_USAGE;
	if ((r = request("status", PM__TYPE__T_STATUS, &q.base,
	    &pm__status_reply__descriptor, &c, &p)) != EX_OK)
		return r;
	s = (Pm__StatusReply *)p->msg;
	if (opt_json) {
		json_object *o = json_object_new_object();

		add_str(o, "server", s->server);
		add_int(o, "pid", s->pid);
		add_int(o, "uid", s->uid);
		json_object_object_add(o, "uptime",
		    json_object_new_double(s->uptime));
		add_int(o, "clients", s->clients);
		add_int(o, "workers", s->workers);
		add_int(o, "spawned", (int64_t)s->spawned);
		add_int(o, "reaped", (int64_t)s->reaped);
		add_int(o, "spawn_failed", (int64_t)s->spawn_failed);
		add_int(o, "max_workers", s->max_workers);
		add_int(o, "max_clients", s->max_clients);
		add_int(o, "forker_pid", s->forker_pid);
		add_int(o, "idle_workers", s->idle_workers);
		add_int(o, "prestart_workers", s->prestart_workers);
		add_int(o, "prestart_claimed", (int64_t)s->prestart_claimed);
		add_int(o, "claimed_workers", s->claimed_workers);
		add_bool(o, "private", s->private_);
		add_int(o, "requests", (int64_t)s->requests);
		add_str(o, "socket", s->socket);
		json_out(o);
	} else {
		printf("server:       %s\n", s->server);
		printf("pid:          %d\n", s->pid);
		printf("uid:          %u\n", s->uid);
		printf("socket:       %s%s\n", s->socket,
		    s->private_ ? " (private)" : "");
		printf("uptime:       %.1f s\n", s->uptime);
		printf("clients:      %u (max %u)\n", s->clients,
		    s->max_clients);
		printf("workers:      %u (max %u)\n", s->workers,
		    s->max_workers);
		printf("spawned:      %llu (%llu failed to start)\n",
		    (unsigned long long)s->spawned,
		    (unsigned long long)s->spawn_failed);
		printf("reaped:       %llu\n", (unsigned long long)s->reaped);
		printf("idle workers: %u pre-started (keeps %u), %u held by "
		    "clients; %llu taken\n", s->idle_workers,
		    s->prestart_workers, s->claimed_workers,
		    (unsigned long long)s->prestart_claimed);
		printf("forker pid:   %d\n", s->forker_pid);
		printf("requests:     %llu\n", (unsigned long long)s->requests);
	}
	pmc_pending_free(c, p);
	pm_disconnect(c);
	return EX_OK;
}

/* ---- stats: counters since start ---- */

/* The q quantile of the start latency histogram: the upper bound of
 * the bucket it falls in (Prometheus' histogram_quantile interpolates;
 * a bound is honest about the resolution). */
static double
stats_quantile(const Pm__StatusReply *s, double q)
{
	uint64_t want;
	size_t i;

	if (s->start_count == 0 || s->n_start_bucket == 0)
		return 0;
	want = (uint64_t)(q * (double)s->start_count + 0.999999);
	for (i = 0; i < s->n_start_bucket && i < s->n_start_le; i++)
		if (s->start_bucket[i] >= want)
			return s->start_le[i];
	return -1;			/* above the last bound */
}

static void
prom(const char *name, const char *type, const char *help, double v)
{
	printf("# HELP pmd_%s %s\n# TYPE pmd_%s %s\npmd_%s %.15g\n", name,
	    help, name, type, name, v);
}

static void
stats_prometheus(const Pm__StatusReply *s)
{
	size_t i;

	prom("uptime_seconds", "gauge", "Seconds since pmd started.",
	    s->uptime);
	prom("workers_started_total", "counter", "Workers started.",
	    (double)s->spawned);
	prom("workers_failed_total", "counter", "Worker starts that failed.",
	    (double)s->spawn_failed);
	prom("workers_oom_killed_total", "counter",
	    "Workers killed by the OOM killer under their memory_max.",
	    (double)s->oom_killed);
	prom("workers_reaped_total", "counter", "Workers ended and reaped.",
	    (double)s->reaped);
	prom("workers", "gauge", "Workers running now.", (double)s->workers);
	prom("idle_workers", "gauge", "Pre-started workers waiting.",
	    (double)s->idle_workers);
	prom("claimed_workers", "gauge",
	    "Pre-started workers held by clients for their next starts.",
	    (double)s->claimed_workers);
	prom("prestart_claimed_total", "counter",
	    "Starts that took a pre-started worker.",
	    (double)s->prestart_claimed);
	prom("pool_tasks_total", "counter", "Tasks done by pool workers.",
	    (double)s->pool_tasks);
	prom("queue_items_in_total", "counter", "Items put on queues.",
	    (double)s->queue_puts);
	prom("queue_items_out_total", "counter", "Items taken from queues.",
	    (double)s->queue_gets);
	prom("objects", "gauge", "Named shared objects held.",
	    (double)s->objects);
	prom("clients", "gauge", "Clients connected.", (double)s->clients);
	prom("bytes_held", "gauge", "Queue, dict and object bytes held.",
	    (double)s->bytes_held);
	prom("requests_total", "counter", "Requests served.",
	    (double)s->requests);
	printf("# HELP pmd_start_seconds Worker start latency, from the "
	    "spawn request to the worker's report.\n"
	    "# TYPE pmd_start_seconds histogram\n");
	for (i = 0; i < s->n_start_bucket && i < s->n_start_le; i++)
		printf("pmd_start_seconds_bucket{le=\"%g\"} %llu\n",
		    s->start_le[i], (unsigned long long)s->start_bucket[i]);
	printf("pmd_start_seconds_bucket{le=\"+Inf\"} %llu\n"
	    "pmd_start_seconds_sum %.9g\npmd_start_seconds_count %llu\n",
	    (unsigned long long)s->start_count, s->start_sum,
	    (unsigned long long)s->start_count);
}

static void
stats_json(const Pm__StatusReply *s)
{
	json_object *o = json_object_new_object();

	add_int(o, "workers_started", (int64_t)s->spawned);
	add_int(o, "workers_failed", (int64_t)s->spawn_failed);
	add_int(o, "workers_oom_killed", (int64_t)s->oom_killed);
	add_int(o, "workers_reaped", (int64_t)s->reaped);
	add_int(o, "workers", s->workers);
	add_int(o, "pool_tasks", (int64_t)s->pool_tasks);
	add_int(o, "queue_items_in", (int64_t)s->queue_puts);
	add_int(o, "queue_items_out", (int64_t)s->queue_gets);
	add_int(o, "objects", s->objects);
	add_int(o, "clients", s->clients);
	add_int(o, "bytes_held", (int64_t)s->bytes_held);
	add_int(o, "requests", (int64_t)s->requests);
	add_int(o, "starts", (int64_t)s->start_count);
	json_object_object_add(o, "start_p50",
	    json_object_new_double(stats_quantile(s, 0.5)));
	json_object_object_add(o, "start_p90",
	    json_object_new_double(stats_quantile(s, 0.9)));
	json_object_object_add(o, "start_p99",
	    json_object_new_double(stats_quantile(s, 0.99)));
	json_out(o);
}

static void
stats_text(const Pm__StatusReply *s)
{
	printf("workers started:    %llu (%llu failed, %llu OOM-killed, "
	    "%u running)\n", (unsigned long long)s->spawned,
	    (unsigned long long)s->spawn_failed,
	    (unsigned long long)s->oom_killed, s->workers);
	printf("start latency:      p50 <= %gs, p90 <= %gs, p99 <= %gs "
	    "(%llu starts; -1: above %gs)\n", stats_quantile(s, 0.5),
	    stats_quantile(s, 0.9), stats_quantile(s, 0.99),
	    (unsigned long long)s->start_count,
	    s->n_start_le ? s->start_le[s->n_start_le - 1] : 0);
	printf("pool tasks:         %llu\n", (unsigned long long)s->pool_tasks);
	printf("queue items:        %llu in, %llu out\n",
	    (unsigned long long)s->queue_puts,
	    (unsigned long long)s->queue_gets);
	printf("objects:            %u\n", s->objects);
	printf("clients:            %u\n", s->clients);
	printf("bytes held:         %llu\n", (unsigned long long)s->bytes_held);
}

static int
cmd_stats(int argc, char **argv)
{
	static const char usage[] = "stats [--json | --prometheus]";
	Pm__Status q = PM__STATUS__INIT;
	struct pmc_pending *p;
	char *av[16];
	pm_conn *c;
	int r, i, n = 0, prometheus = 0;

	for (i = 0; i < argc && n < 15; i++)
		if (strcmp(argv[i], "--prometheus") == 0)
			prometheus = 1;
		else
			av[n++] = argv[i];
	av[n] = NULL;
	if (i < argc) {
		bad_usage(usage, "too many arguments");
		return EX_USAGE;
	}
	if ((r = sub_opts_only(n, av, usage, NULL, NULL, NULL)) != 0)
		return r > 0 ? EX_OK : EX_USAGE;
	if (prometheus && opt_json) {
		bad_usage(usage, "--json or --prometheus, not both");
		return EX_USAGE;
	}
	if ((r = request("stats", PM__TYPE__T_STATUS, &q.base,
	    &pm__status_reply__descriptor, &c, &p)) != EX_OK)
		return r;
	if (prometheus)
		stats_prometheus((Pm__StatusReply *)p->msg);
	else if (opt_json)
		stats_json((Pm__StatusReply *)p->msg);
	else
		stats_text((Pm__StatusReply *)p->msg);
	pmc_pending_free(c, p);
	pm_disconnect(c);
	return EX_OK;
}

/* A worker's kind as ps shows it; json spells "function" out. */
static const char *
kind_name(Pm__Kind kind, int json)
{
	switch (kind) {
	case PM__KIND__K_EXEC:
		return "exec";
	case PM__KIND__K_POOL:
		return "pool";
	case PM__KIND__K_FORK:
		return "fork";
	default:
		return json ? "function" : "func";
	}
}

/* How a worker was started, as pmclient.h's PM_START_* say it. */
static const char *
start_name(Pm__StartMethod m)
{
	switch (m) {
	case PM__START_METHOD__S_SPAWN:
		return "spawn";
	case PM__START_METHOD__S_FORK:
		return "fork";
	default:
		return "forkserver";
	}
}

static int
cmd_ps(int argc, char **argv)
{
	Pm__Ps q = PM__PS__INIT;
	Pm__PsReply *s;
	Pm__WorkerInfo *w;
	struct pmc_pending *p;
	pm_conn *c;
	json_object *arr = NULL, *o;
	size_t i;
	int r;
	char pool[24], tasks[24], mem[24], cpu[24];

	if ((r = list_request(argc, argv, "ps [--json] [-a]",
	    PM__TYPE__T_PS, &q.base, &q.all, &pm__ps_reply__descriptor,
	    &c, &p)) != EX_OK || c == NULL)
		return r;
	s = (Pm__PsReply *)p->msg;
	if (opt_json)
		arr = json_object_new_array();
	else
		printf("%7s %6s %6s %-4s %-3s %7s %8s %6s %8s %8s %7s %6s %5s"
		    " %-10s  %-16s %s\n", "PID", "WID", "UID", "KIND", "DMN",
		    "OWNER", "AGE", "POOL", "TASKS", "RSS", "CPU", "MEMMAX",
		    "CPUMAX", "START", "NAME", "TARGET");
	for (i = 0; i < s->n_workers; i++) {
		w = s->workers[i];
		if (opt_json) {
			o = json_object_new_object();
			add_int(o, "pid", w->pid);
			add_int(o, "wid", (int64_t)w->wid);
			add_int(o, "uid", w->uid);
			add_str(o, "kind", kind_name(w->kind, 1));
			add_bool(o, "daemon", w->daemonic);
			add_int(o, "owner_pid", w->owner_pid);
			json_object_object_add(o, "age",
			    json_object_new_double(w->age));
			add_int(o, "tasks", (int64_t)w->tasks);
			add_int(o, "pool", (int64_t)w->pool);
			add_str(o, "start_method",
			    start_name(w->start_method));
			add_str(o, "name", w->name);
			add_str(o, "target", w->target);
			add_int(o, "rss_kb", (int64_t)w->rss_kb);
			json_object_object_add(o, "cpu_s",
			    json_object_new_double(w->cpu_s));
			add_int(o, "memory_max", (int64_t)w->memory_max);
			json_object_object_add(o, "cpu_max",
			    json_object_new_double(w->cpu_max));
			json_object_array_add(arr, o);
			continue;
		}
		/* POOL and TASKS mean something for pool workers only */
		if (w->kind == PM__KIND__K_POOL) {
			snprintf(pool, sizeof(pool), "%llu",
			    (unsigned long long)w->pool);
			snprintf(tasks, sizeof(tasks), "%llu",
			    (unsigned long long)w->tasks);
		} else {
			snprintf(pool, sizeof(pool), "-");
			snprintf(tasks, sizeof(tasks), "-");
		}
		/* caps: "-" for none; MiB when whole */
		if (w->memory_max == 0)
			snprintf(mem, sizeof(mem), "-");
		else if (w->memory_max % (1u << 20) == 0)
			snprintf(mem, sizeof(mem), "%lluM",
			    (unsigned long long)(w->memory_max >> 20));
		else
			snprintf(mem, sizeof(mem), "%llu",
			    (unsigned long long)w->memory_max);
		if (w->cpu_max > 0)
			snprintf(cpu, sizeof(cpu), "%.2f", w->cpu_max);
		else
			snprintf(cpu, sizeof(cpu), "-");
		printf("%7d %6llu %6u %-4s %-3s %7d %7.1fs %6s %8s %7lluK "
		    "%6.2fs %6s %5s %-10s  %-16s %s\n", w->pid,
		    (unsigned long long)w->wid, w->uid,
		    kind_name(w->kind, 0), w->daemonic ? "yes" : "no",
		    w->owner_pid, w->age, pool, tasks,
		    (unsigned long long)w->rss_kb, w->cpu_s, mem, cpu,
		    start_name(w->start_method), w->name, w->target);
	}
	return list_done(arr, c, p);
}

static int
parse_signal(const char *s)
{
	static const struct { const char *n; int v; } names[] = {
		{ "HUP", SIGHUP }, { "INT", SIGINT }, { "QUIT", SIGQUIT },
		{ "KILL", SIGKILL }, { "TERM", SIGTERM }, { "USR1", SIGUSR1 },
		{ "USR2", SIGUSR2 }, { "STOP", SIGSTOP }, { "CONT", SIGCONT },
		{ "ALRM", SIGALRM }, { "ABRT", SIGABRT }, { "SEGV", SIGSEGV },
	};
	char *end;
	long v;
	size_t i;

	if (strncmp(s, "SIG", 3) == 0)
		s += 3;
	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (strcasecmp(s, names[i].n) == 0)
			return names[i].v;
	v = strtol(s, &end, 10);
	if (end == s || *end != '\0' || v <= 0 || v >= NSIG)
		return -1;
	return (int)v;
}

static int
cmd_kill(int argc, char **argv)
{
	static const char *u = "kill [-s SIGNAL] PID";
	Pm__Signal q = PM__SIGNAL__INIT;
	struct pmc_pending *p;
	pm_conn *c;
	char *sig = NULL, *end;
	long pid;
	int r, which = 0;

	if ((r = sub_opts(argc, argv, u, "s:", &which, &sig)) != 0)
		return r > 0 ? EX_OK : EX_USAGE;
	if (optind >= argc)
		return bad_usage(u, "kill: PID is missing");
	if (optind + 1 < argc)
		return bad_usage(u, "kill: unexpected argument '%s'",
		    argv[optind + 1]);
	if ((q.signo = sig ? parse_signal(sig) : SIGTERM) < 0)
		return bad_usage(u, "kill: bad signal %s", sig);
	pid = strtol(argv[optind], &end, 10);
	if (end == argv[optind] || *end != '\0' || pid <= 0 || pid > INT_MAX)
		return bad_usage(u, "kill: bad pid %s", argv[optind]);
	q.pid = (int32_t)pid;
	if ((r = request("kill", PM__TYPE__T_SIGNAL, &q.base,
	    NULL, &c, &p)) != EX_OK)
		return r;
	pmc_pending_free(c, p);
	pm_disconnect(c);
	if (opt_json) {
		json_object *o = json_object_new_object();

		add_int(o, "pid", q.pid);
		add_int(o, "signal", q.signo);
		json_ok(o);
	}
	return EX_OK;
}

static int
cmd_run(int argc, char **argv)
{
	static const char *u = "run [--name NAME] -- PROGRAM [ARG...]";
	pm_process *p;
	pm_conn *c;
	char *name = NULL;
	int r, which = 0, code;

	if ((r = sub_opts(argc, argv, u, NULL, &which, &name)) != 0)
		return r > 0 ? EX_OK : EX_USAGE;
	if (optind >= argc)
		return bad_usage(u, "run: PROGRAM is missing");
	if ((c = open_conn()) == NULL)
		return fail("run");
	if ((p = pm_process_new_exec(c, argv[optind], argv + optind,
	    NULL)) == NULL || (name != NULL &&
	    pm_process_set_name(p, name) != PM_OK) ||
	    pm_process_start(p) != PM_OK) {
		r = fail("run");
		/* as a shell: 127 not found, 126 found but not runnable */
		if ((code = pmc_process_exec_errno(p)) != 0)
			r = code == ENOENT || code == ENOTDIR ? EX_NOTFOUND :
			    EX_NOEXEC;
		pm_process_free(p);
		pm_disconnect(c);
		return r;
	}
	if (pm_process_join(p, -1) != PM_OK ||
	    pm_process_exitcode(p, &code) != PM_OK) {
		r = fail("run");
		pm_process_free(p);
		pm_disconnect(c);
		return r;
	}
	pm_process_free(p);
	pm_disconnect(c);
	if (opt_json) {
		json_object *o = json_object_new_object();

		add_int(o, "exitcode", code);
		json_ok(o);
	}
	return code >= 0 ? code : 128 - code;
}

/* Lists this uid's private pmds: socket and pid. */
static int
cmd_private(int argc, char **argv)
{
	static char socks[PRIVATE_MAX][PATH_MAX];
	pid_t pids[PRIVATE_MAX];
	json_object *arr, *o;
	size_t i, n;
	int r;

	if ((r = sub_opts_only(argc, argv, "private [--json]", NULL, NULL,
	    NULL)) != 0)
		return r > 0 ? EX_OK : EX_USAGE;
	n = private_find(socks, pids, PRIVATE_MAX);
	if (!opt_json) {
		printf("%7s  %s\n", "PID", "SOCKET");
		for (i = 0; i < n; i++)
			printf("%7d  %s\n", (int)pids[i], socks[i]);
		return EX_OK;
	}
	arr = json_object_new_array();
	for (i = 0; i < n; i++) {
		o = json_object_new_object();
		add_int(o, "pid", pids[i]);
		add_str(o, "socket", socks[i]);
		json_object_array_add(arr, o);
	}
	json_out(arr);
	return EX_OK;
}

/* ---- queues ---- */

/* 1 if s[0..len) is valid UTF-8 (no overlongs, surrogates or > U+10FFFF). */
static int
utf8_valid(const unsigned char *s, size_t len)
{
	size_t i = 0, n, k;
	uint32_t cp;

	while (i < len) {
		if (s[i] < 0x80) {
			i++;
			continue;
		}
		if ((s[i] & 0xe0) == 0xc0)
			n = 1, cp = s[i] & 0x1f;
		else if ((s[i] & 0xf0) == 0xe0)
			n = 2, cp = s[i] & 0x0f;
		else if ((s[i] & 0xf8) == 0xf0)
			n = 3, cp = s[i] & 0x07;
		else
			return 0;
		if (len - i <= n)
			return 0;
		for (k = 1; k <= n; k++) {
			if ((s[i + k] & 0xc0) != 0x80)
				return 0;
			cp = cp << 6 | (s[i + k] & 0x3f);
		}
		if ((n == 1 && cp < 0x80) || (n == 2 && cp < 0x800) ||
		    (n == 3 && cp < 0x10000) || cp > 0x10ffff ||
		    (cp >= 0xd800 && cp <= 0xdfff))
			return 0;
		i += n + 1;
	}
	return 1;
}

/* A queue item: a string when it is UTF-8, else base64 (with
 * "encoding": "base64"). */
static void
add_item(json_object *o, const unsigned char *data, size_t len)
{
	static const char b64[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	char *e;
	size_t i, j;
	uint32_t v;

	if (utf8_valid(data, len)) {
		json_object_object_add(o, "item",
		    json_object_new_string_len((const char *)data, (int)len));
		return;
	}
	if ((e = malloc((len + 2) / 3 * 4 + 1)) == NULL)
		return;
	for (i = j = 0; i < len; i += 3) {
		v = (uint32_t)data[i] << 16;
		if (i + 1 < len)
			v |= (uint32_t)data[i + 1] << 8;
		if (i + 2 < len)
			v |= data[i + 2];
		e[j++] = b64[v >> 18 & 63];
		e[j++] = b64[v >> 12 & 63];
		e[j++] = i + 1 < len ? b64[v >> 6 & 63] : '=';
		e[j++] = i + 2 < len ? b64[v & 63] : '=';
	}
	e[j] = '\0';
	json_object_object_add(o, "item", json_object_new_string(e));
	add_str(o, "encoding", "base64");
	free(e);
}

static int
cmd_queues(int argc, char **argv)
{
	Pm__QueueList q = PM__QUEUE_LIST__INIT;
	Pm__QueueListReply *s;
	Pm__QueueInfo *i;
	struct pmc_pending *p;
	pm_conn *c;
	json_object *arr = NULL, *o;
	size_t k;
	int r;

	if ((r = list_request(argc, argv, "queues [--json] [-a]",
	    PM__QUEUE_TYPE__Q_LIST, &q.base, &q.all,
	    &pm__queue_list_reply__descriptor, &c, &p)) != EX_OK || c == NULL)
		return r;
	s = (Pm__QueueListReply *)p->msg;
	if (opt_json)
		arr = json_object_new_array();
	else
		printf("%-20s %6s %8s %8s %7s %10s %10s %10s  %s\n", "NAME",
		    "OWNER", "SIZE", "MAXSIZE", "WAITERS", "PUTS", "GETS",
		    "BYTES", "FLAGS");
	for (k = 0; k < s->n_queues; k++) {
		i = s->queues[k];
		if (opt_json) {
			o = json_object_new_object();
			add_str(o, "name", i->name);
			add_int(o, "owner", i->owner);
			add_int(o, "size", (int64_t)i->size);
			add_int(o, "maxsize", i->maxsize);
			add_int(o, "waiters", (int64_t)i->getters + i->putters +
			    i->joiners);
			add_int(o, "getters", i->getters);
			add_int(o, "putters", i->putters);
			add_int(o, "joiners", i->joiners);
			add_int(o, "puts", (int64_t)i->puts);
			add_int(o, "gets", (int64_t)i->gets);
			add_int(o, "bytes", (int64_t)i->bytes);
			add_int(o, "unfinished", (int64_t)i->unfinished);
			add_bool(o, "joinable", i->flags & PM_Q_JOINABLE);
			add_bool(o, "shared", i->flags & PM_Q_SHARED);
			add_str(o, "shutdown", i->shutdown == 0 ? "no" :
			    i->shutdown == 1 ? "drain" : "immediate");
			json_object_array_add(arr, o);
		} else
			printf("%-20s %6u %8llu %8lld %7u %10llu %10llu %10llu  "
			    "%s%s%s\n", i->name, i->owner,
			    (unsigned long long)i->size, (long long)i->maxsize,
			    i->getters + i->putters + i->joiners,
			    (unsigned long long)i->puts,
			    (unsigned long long)i->gets,
			    (unsigned long long)i->bytes,
			    (i->flags & PM_Q_JOINABLE) ? "joinable " : "",
			    (i->flags & PM_Q_SHARED) ? "shared " : "",
			    i->shutdown ? "shutdown" : "");
	}
	return list_done(arr, c, p);
}

/* ---- queue and dict: KIND VERB [OPTIONS] OPERANDS ---- */

/* An item or a value got, then freed: {"ok": true, "item": ..., "len": N}
 * with --json, else its bytes and a newline. */
static void
print_item(pm_bytes *b)
{
	json_object *o;

	if (opt_json) {
		o = json_object_new_object();
		add_item(o, b->data, b->len);
		add_int(o, "len", (int64_t)b->len);
		json_ok(o);
	} else {
		fwrite(b->data, 1, b->len, stdout);
		putchar('\n');
	}
	pm_bytes_free(b);
}

/* Options a verb takes beside --json and --help. */
#define VERB_CREATE	0x1	/* --create, -c */
#define VERB_TIMEOUT	0x2	/* --timeout S, -t S */
#define VERB_OPERANDS	3	/* the most operands a verb has */

/* A verb of queue or dict: its name, its operands, the options it takes. */
struct verb {
	const char	*name;
	const char	*operands[VERB_OPERANDS + 1];	/* NULL-ended */
	int		 opts;				/* VERB_* */
};

/* A command line as verb_parse read it. */
struct verb_args {
	const struct verb *verb;
	char		**operands;	/* as many as verb->operands */
	int		 create;	/* --create */
	double		 timeout;	/* --timeout S, 0 if not given */
};

/* The names of the verbs taking opt (0: all), as "a, b or c". */
static const char *
verb_names(const struct verb *verbs, size_t n, int opt, char *buf,
    size_t len)
{
	size_t i, k = 0, have = 0, off = 0;

	for (i = 0; i < n; i++)
		if (opt == 0 || (verbs[i].opts & opt))
			have++;
	buf[0] = '\0';
	for (i = 0; i < n && off < len; i++) {
		if (opt != 0 && !(verbs[i].opts & opt))
			continue;
		off += snprintf(buf + off, len - off, "%s%s", k == 0 ? "" :
		    k + 1 == have ? " or " : ", ", verbs[i].name);
		k++;
	}
	return buf;
}

/*
 * Reads "KIND VERB [OPTIONS] OPERANDS" (argv[0] is KIND): VERB one of
 * verbs[n]; --json, --help and the options of any verb (one the verb
 * does not take is a usage error naming the verbs that do); then exactly
 * the verb's operands.  0 go on with *a, 1 done (help printed), -1 usage
 * error (said).
 */
static int
verb_parse(int argc, char **argv, const char *u, const struct verb *verbs,
    size_t n, struct verb_args *a)
{
	struct option lo[5] = {
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
	};
	const char *kind = argv[0], *verb;
	char so[8] = "+:h", names[128], *end;
	size_t i, k = 2, want;
	int ch, any = 0, used = 0;

	memset(a, 0, sizeof(*a));
	for (i = 0; i < n; i++)
		any |= verbs[i].opts;
	if (any & VERB_CREATE) {
		lo[k++] = (struct option){ "create", no_argument, NULL, 'c' };
		strcat(so, "c");
	}
	if (any & VERB_TIMEOUT) {
		lo[k++] = (struct option){ "timeout", required_argument, NULL,
		    't' };
		strcat(so, "t:");
	}
	if (argc < 2) {
		bad_usage(u, "%s: %s?", kind, verb_names(verbs, n, 0, names,
		    sizeof(names)));
		return -1;
	}
	verb = argv[1];
	optind = 1;
	opterr = 0;
	while ((ch = getopt_long(argc - 1, argv + 1, so, lo, NULL)) != -1) {
		switch (ch) {
		case 'j':
			opt_json = 1;
			break;
		case 'h':
			usage_of(u, 0);
			return 1;
		case 'c':
			a->create = 1;
			used |= VERB_CREATE;
			break;
		case 't':
			a->timeout = strtod(optarg, &end);
			if (end == optarg || *end != '\0') {
				bad_usage(u, "bad timeout %s", optarg);
				return -1;
			}
			used |= VERB_TIMEOUT;
			break;
		case ':':
			bad_usage(u, "%s needs a value", argv[optind]);
			return -1;
		default:
			bad_usage(u, "unknown option %s", argv[optind]);
			return -1;
		}
	}
	argc -= optind + 1;
	argv += optind + 1;
	for (i = 0; i < n && strcmp(verbs[i].name, verb) != 0; i++)
		;
	if (i == n) {
		bad_usage(u, "%s: unknown verb '%s'", kind, verb);
		return -1;
	}
	a->verb = &verbs[i];
	if ((used = used & ~a->verb->opts) != 0) {
		used &= -used;		/* the lowest one */
		bad_usage(u, "%s %s: --%s is for %s", kind, verb,
		    used == VERB_CREATE ? "create" : "timeout",
		    verb_names(verbs, n, used, names, sizeof(names)));
		return -1;
	}
	for (want = 0; a->verb->operands[want] != NULL; want++)
		;
	if ((size_t)argc < want) {
		bad_usage(u, "%s %s: %s is missing", kind, verb,
		    a->verb->operands[argc]);
		return -1;
	}
	if ((size_t)argc > want) {
		bad_usage(u, "%s %s: unexpected argument '%s'", kind, verb,
		    argv[want]);
		return -1;
	}
	a->operands = argv;
	return 0;
}

static const struct verb queue_verbs[] = {
	{ "put", { "NAME", "DATA" }, VERB_CREATE | VERB_TIMEOUT },
	{ "get", { "NAME" }, VERB_TIMEOUT },
	{ "rm", { "NAME" }, 0 },
};

/* queue put|get|rm: items and queues from the shell. */
static int
cmd_queue(int argc, char **argv)
{
	static const char *u = "queue put [--create] [--timeout S] NAME DATA | "
	    "queue get [--timeout S] NAME | queue rm NAME";
	struct verb_args a;
	const char *verb;
	pm_queue *q = NULL;
	pm_bytes b = { NULL, 0 };
	pm_conn *c;
	int r;

	if ((r = verb_parse(argc, argv, u, queue_verbs, sizeof(queue_verbs) /
	    sizeof(queue_verbs[0]), &a)) != 0)
		return r > 0 ? EX_OK : EX_USAGE;
	verb = a.verb->name;
	argv = a.operands;
	if ((c = open_conn()) == NULL)
		return fail("queue");
	if (strcmp(verb, "rm") == 0) {
		if (pm_queue_unlink(c, argv[0]) != PM_OK)
			goto failed;
		if (opt_json)
			json_ok(NULL);
		pm_disconnect(c);
		return EX_OK;
	}
	if ((q = pm_queue_open(c, argv[0], 0, a.create ? PM_Q_CREATE : 0)) ==
	    NULL)
		goto failed;
	if (strcmp(verb, "put") == 0) {
		if (pm_queue_put(q, argv[1], strlen(argv[1]), a.timeout) !=
		    PM_OK)
			goto failed;
		if (opt_json)
			json_ok(NULL);
	} else {
		if (pm_queue_get(q, &b, a.timeout) != PM_OK)
			goto failed;
		print_item(&b);
	}
	pm_queue_free(q);
	pm_disconnect(c);
	return EX_OK;
failed:
	r = fail(verb);
	pm_queue_free(q);
	pm_disconnect(c);
	return r;
}

/* dict get|set|del|keys: a shared dict from the shell. */
static int
dict_verb(pm_dict *d, const char *verb, char **argv)
{
	pm_bytes b = { NULL, 0 }, *keys;
	json_object *o, *arr;
	size_t n, i;

	if (strcmp(verb, "set") == 0) {
		if (pm_dict_set(d, argv[1], strlen(argv[1]), argv[2],
		    strlen(argv[2])) != PM_OK)
			return -1;
		if (opt_json)
			json_ok(NULL);
	} else if (strcmp(verb, "del") == 0) {
		if (pm_dict_del(d, argv[1], strlen(argv[1])) != PM_OK)
			return -1;
		if (opt_json)
			json_ok(NULL);
	} else if (strcmp(verb, "get") == 0) {
		if (pm_dict_get(d, argv[1], strlen(argv[1]), &b) != PM_OK)
			return -1;
		print_item(&b);
	} else {
		if (pm_dict_keys(d, &keys, &n) != PM_OK)
			return -1;
		arr = opt_json ? json_object_new_array() : NULL;
		for (i = 0; i < n; i++) {
			if (opt_json) {
				o = json_object_new_object();
				add_item(o, keys[i].data, keys[i].len);
				json_object_array_add(arr, o);
			} else {
				fwrite(keys[i].data, 1, keys[i].len, stdout);
				putchar('\n');
			}
			free(keys[i].data);
		}
		free(keys);
		if (opt_json) {
			o = json_object_new_object();
			json_object_object_add(o, "keys", arr);
			json_ok(o);
		}
	}
	return 0;
}

static const struct verb dict_verbs[] = {
	{ "get", { "NAME", "KEY" }, 0 },
	{ "set", { "NAME", "KEY", "VALUE" }, VERB_CREATE },
	{ "del", { "NAME", "KEY" }, 0 },
	{ "keys", { "NAME" }, 0 },
};

static int
cmd_dict(int argc, char **argv)
{
	static const char *u = "dict get NAME KEY | dict set [--create] NAME "
	    "KEY VALUE | dict del NAME KEY | dict keys NAME";
	struct verb_args a;
	pm_dict *d = NULL;
	pm_conn *c;
	int r;

	if ((r = verb_parse(argc, argv, u, dict_verbs, sizeof(dict_verbs) /
	    sizeof(dict_verbs[0]), &a)) != 0)
		return r > 0 ? EX_OK : EX_USAGE;
	if ((c = open_conn()) == NULL)
		return fail("dict");
	if ((d = pm_dict_open(c, a.operands[0], a.create ? PM_O_CREATE :
	    0)) == NULL || dict_verb(d, a.verb->name, a.operands) == -1)
		r = fail(a.verb->name);
	else
		r = EX_OK;
	pm_dict_free(d);
	pm_disconnect(c);
	return r;
}

/* NAME KIND OWNER SIZE STATE: the named shared objects. */
static int
cmd_objects(int argc, char **argv)
{
	Pm__ObjList q = PM__OBJ_LIST__INIT;
	Pm__ObjListReply *s;
	Pm__ObjInfo *i;
	struct pmc_pending *p;
	pm_conn *c;
	json_object *arr = NULL, *o;
	const char *kind;
	size_t k;
	int r;

	if ((r = list_request(argc, argv, "objects [--json] [-a]",
	    PM__TYPE__T_OBJ_LIST, &q.base, &q.all,
	    &pm__obj_list_reply__descriptor, &c, &p)) != EX_OK || c == NULL)
		return r;
	s = (Pm__ObjListReply *)p->msg;
	if (opt_json)
		arr = json_object_new_array();
	else
		printf("%-24s %-8s %6s %12s  %s\n", "NAME", "KIND", "OWNER",
		    "SIZE", "STATE");
	for (k = 0; k < s->n_objects; k++) {
		i = s->objects[k];
		kind = pmc_kind_name((int)i->kind);
		if (opt_json) {
			o = json_object_new_object();
			add_str(o, "name", i->name);
			add_str(o, "kind", kind);
			add_int(o, "owner", i->owner);
			add_int(o, "size", (int64_t)i->size);
			add_str(o, "state", i->state);
			add_bool(o, "shared", i->flags & PM_O_SHARED);
			add_bool(o, "recursive", i->flags & PM_LOCK_RECURSIVE);
			add_bool(o, "bounded", i->flags & PM_SEM_BOUNDED);
			json_object_array_add(arr, o);
		} else
			printf("%-24s %-8s %6u %12llu  %s\n", i->name, kind,
			    i->owner, (unsigned long long)i->size, i->state);
	}
	return list_done(arr, c, p);
}

static int
cmd_unlink(int argc, char **argv)
{
	const char *u = "unlink NAME";
	pm_conn *c;
	int r;

	if ((r = sub_opts(argc, argv, u, NULL, NULL, NULL)) != 0)
		return r > 0 ? EX_OK : EX_USAGE;
	if (optind >= argc)
		return bad_usage(u, "unlink: NAME is missing");
	if (optind + 1 < argc)
		return bad_usage(u, "unlink: unexpected argument '%s'",
		    argv[optind + 1]);
	if ((c = open_conn()) == NULL)
		return fail("unlink");
	if (pm_unlink(c, argv[optind]) != PM_OK) {
		r = fail("unlink");
		pm_disconnect(c);
		return r;
	}
	if (opt_json)
		json_ok(NULL);
	pm_disconnect(c);
	return EX_OK;
}

static const struct {
	const char *name;
	int	 (*fn)(int, char **);
	const char *usage;
} cmds[] = {
	{ "status", cmd_status, "status [--json]" },
	{ "ps",	    cmd_ps,	"ps [--json] [-a]" },
	{ "stats",  cmd_stats,	"stats [--json | --prometheus]" },
	{ "kill",   cmd_kill,	"kill [-s SIGNAL] PID" },
	{ "run",    cmd_run,	"run [--name NAME] -- PROGRAM [ARG...]" },
	{ "ping",   cmd_ping,	"ping" },
	{ "shutdown", cmd_shutdown, "shutdown" },
	{ "queues", cmd_queues,	"queues [--json] [-a]" },
	{ "queue",  cmd_queue,
	    "queue put [--create] [--timeout S] NAME DATA" },
	{ "queue",  cmd_queue,	"queue get [--timeout S] NAME" },
	{ "queue",  cmd_queue,	"queue rm NAME" },
	{ "dict",   cmd_dict,	"dict get NAME KEY" },
	{ "dict",   cmd_dict,	"dict set [--create] NAME KEY VALUE" },
	{ "dict",   cmd_dict,	"dict del NAME KEY" },
	{ "dict",   cmd_dict,	"dict keys NAME" },
	{ "objects", cmd_objects, "objects [--json] [-a]" },
	{ "unlink", cmd_unlink,	"unlink NAME" },
	{ "private", cmd_private, "private [--json]" },
};

static int
usage(int code)
{
	size_t i;
	FILE *f = code ? stderr : stdout;

	fprintf(f, "usage: pmctl [--socket PATH | --private] [--json] COMMAND "
	    "[ARGS]\ncommands:\n");
	for (i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
		fprintf(f, "  %s\n", cmds[i].usage);
	fprintf(f, "exit codes: 0 ok, 1 refused, 2 usage, 3 pmd unreachable; "
	    "run: the program's, 126/127 if it cannot be run\n");
	return code;
}

int
main(int argc, char *argv[])
{
	size_t i;
	int a = 1;

	json_c_set_serialization_double_format("%.3f", JSON_C_OPTION_GLOBAL);
	while (a < argc && argv[a][0] == '-') {
		if (strcmp(argv[a], "--socket") == 0) {
			if (a + 1 >= argc || argv[a + 1][0] == '\0')
				return bad_usage(NULL, "--socket needs a value "
				    "(a socket path)");
			opt_socket = argv[a + 1];
			a += 2;
		} else if (strncmp(argv[a], "--socket=", 9) == 0) {
			opt_socket = argv[a++] + 9;
		} else if (strcmp(argv[a], "--private") == 0) {
			opt_private = 1;
			a++;
		} else if (strcmp(argv[a], "--json") == 0) {
			opt_json = 1;
			a++;
		} else if (strcmp(argv[a], "--help") == 0 ||
		    strcmp(argv[a], "-h") == 0) {
			return usage(EX_OK);
		} else
			return bad_usage(NULL, "unknown option %s", argv[a]);
	}
	if (opt_private && opt_socket != NULL)
		return bad_usage(NULL, "--private and --socket: choose one");
	if (a >= argc)
		return bad_usage(NULL, "no command given");
	for (i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
		if (strcmp(argv[a], cmds[i].name) == 0)
			return cmds[i].fn(argc - a, argv + a);
	return bad_usage(NULL, "unknown command '%s'", argv[a]);
}
