/*
 * pmctl.c - the admin CLI of pmd: status, ps, kill, run, ping, shutdown,
 * queues.
 * Exit codes: 0 ok, 1 refused by pmd, 2 usage, 3 pmd unreachable.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pmclient_int.h"
#include "queue.pb-c.h"

#define EX_OK		0
#define EX_REFUSED	1
#define EX_USAGE	2
#define EX_UNREACH	3
#define CALL_TIMEOUT	30.0

static const char *opt_socket;
static int opt_json;


static int
usage_of(const char *u, int code)
{
	fprintf(code ? stderr : stdout, "usage: pmctl [--socket PATH] %s\n", u);
	return code ? EX_USAGE : EX_OK;
}

/* Exit code for a failed libpmclient call. */
static int
fail(const char *what)
{
	int code = pm_last_error();

	fprintf(stderr, "pmctl: %s: %s\n", what, pm_last_message());
	return code == PM_ECONN ? EX_UNREACH : code == PM_EINVAL ?
	    EX_USAGE : EX_REFUSED;
}

static pm_conn *
open_conn(void)
{
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
	char shortopts[16] = "+h";
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
		default:
			goto bad;
		}
	}
	return 0;
bad:
	fprintf(stderr, "pmctl: bad option %s\n", argv[optind - 1]);
	usage_of(usage, 1);
	return -1;
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

static void
json_str(const char *s)
{
	putchar('"');
	for (; s && *s; s++) {
		if (*s == '"' || *s == '\\')
			printf("\\%c", *s);
		else if ((unsigned char)*s < 0x20)
			printf("\\u%04x", *s);
		else
			putchar(*s);
	}
	putchar('"');
}

static int
cmd_ping(int argc, char **argv)
{
	struct pmc_pending *p;
	Pm__Ping q = PM__PING__INIT;
	pm_conn *c;
	int r;

	if ((r = sub_opts(argc, argv, "ping", NULL, NULL, NULL)) != 0)
		return r > 0 ? EX_OK : EX_USAGE;
	if ((r = request("ping", PM__TYPE__T_PING, &q.base,
	    NULL, &c, &p)) != EX_OK)
		return r;
	pmc_pending_free(c, p);
	if (opt_json)
		printf("{\"ok\": true, \"pid\": %d}\n", (int)pm_daemon_pid(c));
	else
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

	if ((r = sub_opts(argc, argv, "shutdown", NULL, NULL, NULL)) != 0)
		return r > 0 ? EX_OK : EX_USAGE;
	if (optind != argc)
		return usage_of("shutdown", 1);
	if ((r = request("shutdown", PM__TYPE__T_SHUTDOWN, &q.base,
	    NULL, &c, &p)) != EX_OK)
		return r;
	pmc_pending_free(c, p);
	/* pmd ends its workers, then closes: wait for the connection to drop */
	end = wire_now_ns() / 1e9 + CALL_TIMEOUT;
	while ((r = pm_dispatch(c, 0.5)) == PM_OK && wire_now_ns() / 1e9 < end)
		;
	if (opt_json)
		printf("{\"ok\": true}\n");
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

	if ((r = sub_opts(argc, argv, "status [--json]", NULL, NULL,
	    NULL)) != 0)
		return r > 0 ? EX_OK : EX_USAGE;
	if ((r = request("status", PM__TYPE__T_STATUS, &q.base,
	    &pm__status_reply__descriptor, &c, &p)) != EX_OK)
		return r;
	s = (Pm__StatusReply *)p->msg;
	if (opt_json) {
		printf("{\"server\": ");
		json_str(s->server);
		printf(", \"pid\": %d, \"uid\": %u, \"uptime\": %.3f, "
		    "\"clients\": %u, \"workers\": %u, \"spawned\": %llu, "
		    "\"reaped\": %llu, \"spawn_failed\": %llu, "
		    "\"max_workers\": %u, \"max_clients\": %u, "
		    "\"forker_pid\": %d, \"private\": %s, \"requests\": %llu, "
		    "\"socket\": ", s->pid, s->uid, s->uptime, s->clients,
		    s->workers, (unsigned long long)s->spawned,
		    (unsigned long long)s->reaped,
		    (unsigned long long)s->spawn_failed, s->max_workers,
		    s->max_clients, s->forker_pid,
		    s->private_ ? "true" : "false",
		    (unsigned long long)s->requests);
		json_str(s->socket);
		printf("}\n");
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
		printf("forker pid:   %d\n", s->forker_pid);
		printf("requests:     %llu\n", (unsigned long long)s->requests);
	}
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
	default:
		return json ? "function" : "func";
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
	size_t i;
	int r, all = 0;
	char *dummy = NULL, pool[24], tasks[24];

	if ((r = sub_opts(argc, argv, "ps [--json] [-a]", "a", &all,
	    &dummy)) != 0)
		return r > 0 ? EX_OK : EX_USAGE;
	q.all = all != 0;
	if ((r = request("ps", PM__TYPE__T_PS, &q.base,
	    &pm__ps_reply__descriptor, &c, &p)) != EX_OK)
		return r;
	s = (Pm__PsReply *)p->msg;
	if (opt_json)
		printf("[");
	else
		printf("%7s %6s %6s %-4s %-3s %7s %8s %6s %8s  %-16s %s\n",
		    "PID", "WID", "UID", "KIND", "DMN", "OWNER", "AGE", "POOL",
		    "TASKS", "NAME", "TARGET");
	for (i = 0; i < s->n_workers; i++) {
		w = s->workers[i];
		if (opt_json) {
			printf("%s{\"pid\": %d, \"wid\": %llu, \"uid\": %u, "
			    "\"kind\": \"%s\", \"daemon\": %s, \"owner_pid\": "
			    "%d, \"age\": %.3f, \"tasks\": %llu, \"pool\": %llu, "
			    "\"name\": ", i ? ", " : "", w->pid,
			    (unsigned long long)w->wid, w->uid,
			    kind_name(w->kind, 1),
			    w->daemonic ? "true" : "false", w->owner_pid,
			    w->age, (unsigned long long)w->tasks,
			    (unsigned long long)w->pool);
			json_str(w->name);
			printf(", \"target\": ");
			json_str(w->target);
			printf("}");
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
		printf("%7d %6llu %6u %-4s %-3s %7d %7.1fs %6s %8s  %-16s %s\n",
		    w->pid, (unsigned long long)w->wid, w->uid,
		    kind_name(w->kind, 0), w->daemonic ? "yes" : "no",
		    w->owner_pid, w->age, pool, tasks, w->name, w->target);
	}
	if (opt_json)
		printf("]\n");
	pmc_pending_free(c, p);
	pm_disconnect(c);
	return EX_OK;
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
	if (optind + 1 != argc)
		return usage_of(u, 1);
	q.signo = sig ? parse_signal(sig) : SIGTERM;
	pid = strtol(argv[optind], &end, 10);
	if (q.signo < 0 || end == argv[optind] || *end != '\0' || pid <= 0) {
		fprintf(stderr, "pmctl: bad signal or pid\n");
		return usage_of(u, 1);
	}
	q.pid = (int32_t)pid;
	if ((r = request("kill", PM__TYPE__T_SIGNAL, &q.base,
	    NULL, &c, &p)) != EX_OK)
		return r;
	pmc_pending_free(c, p);
	pm_disconnect(c);
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
		return usage_of(u, 1);
	if ((c = open_conn()) == NULL)
		return fail("run");
	if ((p = pm_process_new_exec(c, argv[optind], argv + optind,
	    NULL)) == NULL || (name != NULL &&
	    pm_process_set_name(p, name) != PM_OK) ||
	    pm_process_start(p) != PM_OK) {
		r = fail(argv[optind]);
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
	return code >= 0 ? code : 128 - code;
}

/* ---- queues ---- */

static void
json_bytes(const void *data, size_t len)
{
	const unsigned char *p = data;
	size_t i;

	putchar('"');
	for (i = 0; i < len; i++) {
		if (p[i] == '"' || p[i] == '\\')
			printf("\\%c", p[i]);
		else if (p[i] < 0x20 || p[i] >= 0x7f)
			printf("\\u%04x", p[i]);
		else
			putchar(p[i]);
	}
	putchar('"');
}

static int
cmd_queues(int argc, char **argv)
{
	Pm__QueueList q = PM__QUEUE_LIST__INIT;
	Pm__QueueListReply *s;
	Pm__QueueInfo *i;
	struct pmc_pending *p;
	pm_conn *c;
	size_t k;
	int r, all = 0;
	char *dummy = NULL;

	if ((r = sub_opts(argc, argv, "queues [--json] [-a]", "a", &all,
	    &dummy)) != 0)
		return r > 0 ? EX_OK : EX_USAGE;
	q.all = all != 0;
	if ((r = request("queues", PM__QUEUE_TYPE__Q_LIST, &q.base,
	    &pm__queue_list_reply__descriptor, &c, &p)) != EX_OK)
		return r;
	s = (Pm__QueueListReply *)p->msg;
	if (opt_json)
		printf("[");
	else
		printf("%-20s %6s %8s %8s %7s %10s %10s %10s  %s\n", "NAME",
		    "OWNER", "SIZE", "MAXSIZE", "WAITERS", "PUTS", "GETS",
		    "BYTES", "FLAGS");
	for (k = 0; k < s->n_queues; k++) {
		i = s->queues[k];
		if (opt_json) {
			printf("%s{\"name\": ", k ? ", " : "");
			json_str(i->name);
			printf(", \"owner\": %u, \"size\": %llu, "
			    "\"maxsize\": %lld, \"waiters\": %u, "
			    "\"getters\": %u, \"putters\": %u, "
			    "\"joiners\": %u, \"puts\": %llu, \"gets\": %llu, "
			    "\"bytes\": %llu, \"unfinished\": %llu, "
			    "\"joinable\": %s, \"shared\": %s, "
			    "\"shutdown\": \"%s\"}", i->owner,
			    (unsigned long long)i->size, (long long)i->maxsize,
			    i->getters + i->putters + i->joiners, i->getters,
			    i->putters, i->joiners,
			    (unsigned long long)i->puts,
			    (unsigned long long)i->gets,
			    (unsigned long long)i->bytes,
			    (unsigned long long)i->unfinished,
			    (i->flags & PM_Q_JOINABLE) ? "true" : "false",
			    (i->flags & PM_Q_SHARED) ? "true" : "false",
			    i->shutdown == 0 ? "no" : i->shutdown == 1 ?
			    "drain" : "immediate");
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
	if (opt_json)
		printf("]\n");
	pmc_pending_free(c, p);
	pm_disconnect(c);
	return EX_OK;
}

/* queue put|get|rm: its own options (--timeout, --create). */
static int
cmd_queue(int argc, char **argv)
{
	static const char *u = "queue put [--create] [--timeout S] NAME DATA | "
	    "queue get [--timeout S] NAME | queue rm NAME";
	static const struct option lo[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ "create", no_argument, NULL, 'c' },
		{ "timeout", required_argument, NULL, 't' },
		{ NULL, 0, NULL, 0 }
	};
	const char *verb;
	double timeout = 0;
	pm_queue *q = NULL;
	pm_bytes b = { NULL, 0 };
	pm_conn *c;
	char *end;
	int ch, create = 0, r, want;

	if (argc < 2)
		return usage_of(u, 1);
	verb = argv[1];
	optind = 1;
	opterr = 0;
	while ((ch = getopt_long(argc - 1, argv + 1, "+hct:", lo, NULL)) !=
	    -1) {
		switch (ch) {
		case 'j':
			opt_json = 1;
			break;
		case 'h':
			return usage_of(u, 0);
		case 'c':
			create = 1;
			break;
		case 't':
			timeout = strtod(optarg, &end);
			if (end == optarg || *end != '\0') {
				fprintf(stderr, "pmctl: bad timeout %s\n",
				    optarg);
				return usage_of(u, 1);
			}
			break;
		default:
			fprintf(stderr, "pmctl: bad option %s\n",
			    argv[optind]);
			return usage_of(u, 1);
		}
	}
	argc -= optind + 1;
	argv += optind + 1;
	want = strcmp(verb, "put") == 0 ? 2 : 1;
	if ((strcmp(verb, "put") != 0 && strcmp(verb, "get") != 0 &&
	    strcmp(verb, "rm") != 0) || argc != want)
		return usage_of(u, 1);
	if ((c = open_conn()) == NULL)
		return fail("queue");
	if (strcmp(verb, "rm") == 0) {
		if (pm_queue_unlink(c, argv[0]) != PM_OK)
			goto failed;
		if (opt_json)
			printf("{\"ok\": true}\n");
		pm_disconnect(c);
		return EX_OK;
	}
	if ((q = pm_queue_open(c, argv[0], 0, create ? PM_Q_CREATE : 0)) ==
	    NULL)
		goto failed;
	if (strcmp(verb, "put") == 0) {
		if (pm_queue_put(q, argv[1], strlen(argv[1]), timeout) != PM_OK)
			goto failed;
		if (opt_json)
			printf("{\"ok\": true}\n");
	} else {
		if (pm_queue_get(q, &b, timeout) != PM_OK)
			goto failed;
		if (opt_json) {
			printf("{\"item\": ");
			json_bytes(b.data, b.len);
			printf(", \"len\": %zu}\n", b.len);
		} else {
			fwrite(b.data, 1, b.len, stdout);
			putchar('\n');
		}
		pm_bytes_free(&b);
	}
	pm_queue_free(q);
	pm_disconnect(c);
	return EX_OK;
failed:
	r = fail(verb);
	if (opt_json)
		printf("{\"ok\": false, \"error\": \"%s\"}\n",
		    pm_strerror(pm_last_error()));
	pm_queue_free(q);
	pm_disconnect(c);
	return r;
}

static const struct {
	const char *name;
	int	 (*fn)(int, char **);
	const char *usage;
} cmds[] = {
	{ "status", cmd_status, "status [--json]" },
	{ "ps",	    cmd_ps,	"ps [--json] [-a]" },
	{ "kill",   cmd_kill,	"kill [-s SIGNAL] PID" },
	{ "run",    cmd_run,	"run [--name NAME] -- PROGRAM [ARG...]" },
	{ "ping",   cmd_ping,	"ping" },
	{ "shutdown", cmd_shutdown, "shutdown" },
	{ "queues", cmd_queues,	"queues [--json] [-a]" },
	{ "queue",  cmd_queue,
	    "queue put [--create] [--timeout S] NAME DATA" },
	{ "queue",  cmd_queue,	"queue get [--timeout S] NAME" },
	{ "queue",  cmd_queue,	"queue rm NAME" },
};

static int
usage(int code)
{
	size_t i;
	FILE *f = code ? stderr : stdout;

	fprintf(f, "usage: pmctl [--socket PATH] [--json] COMMAND [ARGS]\n"
	    "commands:\n");
	for (i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
		fprintf(f, "  %s\n", cmds[i].usage);
	fprintf(f, "exit codes: 0 ok, 1 refused, 2 usage, 3 pmd unreachable\n");
	return code;
}

int
main(int argc, char *argv[])
{
	size_t i;
	int a = 1;

	while (a < argc && argv[a][0] == '-') {
		if (strcmp(argv[a], "--socket") == 0 && a + 1 < argc) {
			opt_socket = argv[a + 1];
			a += 2;
		} else if (strncmp(argv[a], "--socket=", 9) == 0) {
			opt_socket = argv[a++] + 9;
		} else if (strcmp(argv[a], "--json") == 0) {
			opt_json = 1;
			a++;
		} else if (strcmp(argv[a], "--help") == 0 ||
		    strcmp(argv[a], "-h") == 0) {
			return usage(EX_OK);
		} else {
			fprintf(stderr, "pmctl: unknown option %s\n", argv[a]);
			return usage(EX_USAGE);
		}
	}
	if (a >= argc)
		return usage(EX_USAGE);
	for (i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
		if (strcmp(argv[a], cmds[i].name) == 0)
			return cmds[i].fn(argc - a, argv + a);
	fprintf(stderr, "pmctl: unknown command '%s'\n", argv[a]);
	return usage(EX_USAGE);
}
