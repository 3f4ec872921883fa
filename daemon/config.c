/*
 * config.c - command-line options and the config file.  Both set the same
 * keys; options given on the command line win over the file.
 */
#include <sys/stat.h>

#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pmd.h"

#define CONFIG_LINE_MAX	4096

enum {
	O_SOCKET = 256, O_CONFIG, O_MAX_WORKERS, O_MAX_CLIENTS,
	O_MODULE_PATH, O_PRELOAD, O_LOG_LEVEL, O_PRIVATE, O_READY_FD,
	O_FORKER, O_VERSION, O_HELP, O_RUN_WORKER, O_BROKER_PID, O_PRESTART,
};

static const struct option longopts[] = {
	{ "socket",	 required_argument, NULL, O_SOCKET },
	{ "config",	 required_argument, NULL, O_CONFIG },
	{ "max-workers", required_argument, NULL, O_MAX_WORKERS },
	{ "max-clients", required_argument, NULL, O_MAX_CLIENTS },
	{ "module-path", required_argument, NULL, O_MODULE_PATH },
	{ "preload",	 required_argument, NULL, O_PRELOAD },
	{ "prestart",	 required_argument, NULL, O_PRESTART },
	{ "log-level",	 required_argument, NULL, O_LOG_LEVEL },
	{ "private",	 no_argument,	    NULL, O_PRIVATE },
	{ "ready-fd",	 required_argument, NULL, O_READY_FD },
	{ "forker",	 required_argument, NULL, O_FORKER },
	{ "run-worker",	 required_argument, NULL, O_RUN_WORKER },
	{ "broker-pid",	 required_argument, NULL, O_BROKER_PID },
	{ "version",	 no_argument,	    NULL, O_VERSION },
	{ "help",	 no_argument,	    NULL, O_HELP },
	{ NULL, 0, NULL, 0 }
};

static void
usage(FILE *f)
{
	fprintf(f,
"usage: pmd [options]\n"
"  --socket PATH        listen here (default: /run/pmd/pmd.sock as root,\n"
"                       else $XDG_RUNTIME_DIR/pmd/pmd.sock)\n"
"  --config FILE        read 'key = value' settings (same keys as below)\n"
"  --max-workers N      live workers in all (default %d)\n"
"  --max-clients N      connections in all (default %d)\n"
"  --module-path DIRS   ':'-separated dirs for module names (default %s)\n"
"  --preload MODULE     load MODULE in the forker (repeatable)\n"
"  --prestart N         idle workers kept ready (default %d, 0 none)\n"
"  --log-level LEVEL    error, warn, info or debug (default warn)\n"
"  --private            exit when the last client has gone\n"
"  --ready-fd N         write READY to fd N once serving\n"
"  --version, --help\n",
	    PMD_MAX_WORKERS, PMD_MAX_CLIENTS, PMD_MODULE_PATH,
	    PMD_PRESTART_WORKERS);
}

void
config_defaults(struct pmd_config *c)
{
	memset(c, 0, sizeof(*c));
	c->socket_mode = 0600;
	c->log_level = LOG_WARN_;
	c->max_workers = PMD_MAX_WORKERS;
	c->max_workers_per_uid = PMD_MAX_WORKERS;
	c->prestart_workers = PMD_PRESTART_WORKERS;
	c->prestart_workers_per_uid = PMD_CLAIM_PER_UID;
	c->max_clients = PMD_MAX_CLIENTS;
	c->max_clients_per_uid = PMD_MAX_CLIENTS;
	c->max_frame = PMD_MAX_FRAME;
	c->kill_grace = PMD_KILL_GRACE;
	c->max_queues = PMD_MAX_QUEUES;
	c->max_queue_items = PMD_MAX_QUEUE_ITEMS;
	c->max_queue_bytes = PMD_MAX_QUEUE_BYTES;
	c->max_item_size = PMD_MAX_ITEM_SIZE;
	c->max_queue_fd_items = PMD_MAX_QUEUE_FD_ITEMS;
	c->max_total_queue_bytes = PMD_MAX_TOTAL_QUEUE_BYTES;
	c->max_dicts = PMD_MAX_DICTS;
	c->max_dict_keys = PMD_MAX_DICT_KEYS;
	c->max_dict_bytes = PMD_MAX_DICT_BYTES;
	c->max_dict_key_size = PMD_MAX_DICT_KEY_SIZE;
	c->max_dict_value_size = PMD_MAX_DICT_VALUE_SIZE;
	c->max_objects = PMD_MAX_OBJECTS;
	c->max_objects_per_uid = PMD_MAX_OBJECTS_PER_UID;
	c->max_segment_size = PMD_MAX_SEGMENT_SIZE;
	c->max_object_bytes_per_uid = PMD_MAX_OBJECT_BYTES_PER_UID;
	c->max_object_bytes = PMD_MAX_OBJECT_BYTES;
	c->max_listeners = PMD_MAX_LISTENERS;
	c->max_listen_backlog = PMD_MAX_LISTEN_BACKLOG;
	c->max_queue_waiters = PMD_MAX_QUEUE_WAITERS;
	c->max_queue_fd_items_per_uid = -1;
	c->ready_fd = -1;
	c->forker_fd = -1;
	c->runner_fds = -1;
}

void
config_free(struct pmd_config *c)
{
	int i;

	free(c->socket);
	free(c->module_path);
	for (i = 0; i < c->npreload; i++)
		free(c->preload[i]);
	memset(c, 0, sizeof(*c));
}

static int
parse_long(const char *key, const char *s, long lo, long hi, long *out)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 0);
	if (errno != 0 || end == s || *end != '\0' || v < lo || v > hi) {
		fprintf(stderr, "pmd: %s: '%s' is not a number in %ld..%ld\n",
		    key, s, lo, hi);
		return -1;
	}
	*out = v;
	return 0;
}

static int
set_str(char **dst, const char *v)
{
	char *n;

	if ((n = strdup(v)) == NULL) {
		fprintf(stderr, "pmd: out of memory\n");
		return -1;
	}
	free(*dst);
	*dst = n;
	return 0;
}

static int
set_uids(struct pmd_config *c, const char *v)
{
	char buf[CONFIG_LINE_MAX], *tok, *save = NULL;
	struct passwd *pw;
	long n;

	snprintf(buf, sizeof(buf), "%s", v);
	c->nallow = 0;
	c->allow_all = 0;
	for (tok = strtok_r(buf, ", ", &save); tok != NULL;
	    tok = strtok_r(NULL, ", ", &save)) {
		if (strcmp(tok, "*") == 0) {
			c->allow_all = 1;
			continue;
		}
		if (c->nallow == PMD_MAX_ALLOW) {
			fprintf(stderr, "pmd: allow_uids: more than %d\n",
			    PMD_MAX_ALLOW);
			return -1;
		}
		if ((pw = getpwnam(tok)) != NULL)
			c->allow_uids[c->nallow++] = pw->pw_uid;
		else if (parse_long("allow_uids", tok, 0, INT_MAX, &n) == 0)
			c->allow_uids[c->nallow++] = (uid_t)n;
		else
			return -1;
	}
	return 0;
}

/* Applies one setting; key uses '_' or '-'.  0 ok, -1 error printed. */
static int
config_set(struct pmd_config *c, const char *key, const char *v)
{
	struct group *gr;
	long n;
	char k[64], *p;
	double d;
	char *end;

	snprintf(k, sizeof(k), "%s", key);
	for (p = k; *p; p++)
		if (*p == '-')
			*p = '_';
	if (strcmp(k, "socket") == 0)
		return set_str(&c->socket, v);
	if (strcmp(k, "module_path") == 0)
		return set_str(&c->module_path, v);
	if (strcmp(k, "preload") == 0) {
		if (c->npreload == PMD_MAX_PRELOAD) {
			fprintf(stderr, "pmd: more than %d preloads\n",
			    PMD_MAX_PRELOAD);
			return -1;
		}
		return set_str(&c->preload[c->npreload++], v);
	}
	if (strcmp(k, "log_level") == 0) {
		if ((c->log_level = log_level_parse(v)) == -1) {
			fprintf(stderr, "pmd: log_level: '%s' is not error, "
			    "warn, info or debug\n", v);
			return -1;
		}
		return 0;
	}
#define NUM(name, field, lo, hi)					\
	if (strcmp(k, name) == 0) {					\
		if (parse_long(name, v, lo, hi, &n) == -1)		\
			return -1;					\
		c->field = (int)n;					\
		return 0;						\
	}
	NUM("max_workers", max_workers, 1, 1000000)
	NUM("max_workers_per_uid", max_workers_per_uid, 1, 1000000)
	NUM("prestart_workers", prestart_workers, 0, 100000)
	NUM("prestart_workers_per_uid", prestart_workers_per_uid, 0, 100000)
	NUM("max_clients", max_clients, 1, 1000000)
	NUM("max_clients_per_uid", max_clients_per_uid, 1, 1000000)
	NUM("spawn_rate", spawn_rate, 0, 10000000)
	NUM("socket_mode", socket_mode, 0, 0777)
	NUM("max_queues", max_queues, 1, 1000000)
	NUM("max_queue_items", max_queue_items, 1, 100000000)
	NUM("max_queue_fd_items", max_queue_fd_items, 0, 1000000)
	NUM("max_dicts", max_dicts, 1, 1000000)
	NUM("max_dict_keys", max_dict_keys, 1, 100000000)
	NUM("max_objects", max_objects, 1, 1000000)
	NUM("max_objects_per_uid", max_objects_per_uid, 1, 1000000)
	NUM("max_listeners", max_listeners, 1, 1000000)
	NUM("max_listen_backlog", max_listen_backlog, 1, 1000000)
	NUM("max_queue_fd_items_per_uid", max_queue_fd_items_per_uid, 0,
	    1000000)
	NUM("max_queues_per_uid", max_queues_per_uid, 1, 1000000)
	NUM("max_queue_waiters", max_queue_waiters, 1, 10000000)
	NUM("max_queue_waiters_per_uid", max_queue_waiters_per_uid, 1,
	    10000000)
#undef NUM
	if (strcmp(k, "max_dict_key_size") == 0 ||
	    strcmp(k, "max_dict_value_size") == 0) {
		if (parse_long(k, v, 0, PMD_ITEM_SIZE_CEIL, &n) == -1)
			return -1;
		if (strcmp(k, "max_dict_key_size") == 0)
			c->max_dict_key_size = (uint32_t)n;
		else
			c->max_dict_value_size = (uint32_t)n;
		return 0;
	}
	if (strcmp(k, "max_dict_bytes") == 0) {
		if (parse_long(k, v, 1, LONG_MAX, &n) == -1)
			return -1;
		c->max_dict_bytes = (uint64_t)n;
		return 0;
	}
	if (strcmp(k, "max_frame") == 0) {
		if (parse_long(k, v, 4096, PMD_MAX_FRAME_CEIL, &n) == -1)
			return -1;
		c->max_frame = (uint32_t)n;
		return 0;
	}
	if (strcmp(k, "max_item_size") == 0) {
		if (parse_long(k, v, 0, PMD_ITEM_SIZE_CEIL, &n) == -1)
			return -1;
		c->max_item_size = (uint32_t)n;
		return 0;
	}
#define BYTES(name, field)						\
	if (strcmp(k, name) == 0) {					\
		if (parse_long(name, v, 1, LONG_MAX, &n) == -1)		\
			return -1;					\
		c->field = (uint64_t)n;					\
		return 0;						\
	}
	if (strcmp(k, "max_segment_size") == 0 ||
	    strcmp(k, "max_object_bytes_per_uid") == 0 ||
	    strcmp(k, "max_object_bytes") == 0) {
		if (parse_long(k, v, 1, LONG_MAX, &n) == -1)
			return -1;
		if (strcmp(k, "max_segment_size") == 0)
			c->max_segment_size = (uint64_t)n;
		else if (strcmp(k, "max_object_bytes_per_uid") == 0)
			c->max_object_bytes_per_uid = (uint64_t)n;
		else
			c->max_object_bytes = (uint64_t)n;
		return 0;
	}
	BYTES("max_queue_bytes", max_queue_bytes)
	BYTES("max_total_queue_bytes", max_total_queue_bytes)
	BYTES("max_total_queue_bytes_per_uid", max_total_queue_bytes_per_uid)
	BYTES("max_buffer_bytes_per_uid", max_buffer_bytes_per_uid)
#undef BYTES
	if (strcmp(k, "kill_grace") == 0) {
		d = strtod(v, &end);
		if (end == v || *end != '\0' || d < 0 || d > 3600) {
			fprintf(stderr, "pmd: kill_grace: '%s' is not seconds "
			    "in 0..3600\n", v);
			return -1;
		}
		c->kill_grace = d;
		return 0;
	}
	if (strcmp(k, "allow_uids") == 0)
		return set_uids(c, v);
	if (strcmp(k, "admin_group") == 0) {
		if ((gr = getgrnam(v)) != NULL)
			c->admin_gid = gr->gr_gid;
		else if (parse_long(k, v, 0, INT_MAX, &n) == 0)
			c->admin_gid = (gid_t)n;
		else
			return -1;
		c->has_admin_group = 1;
		return 0;
	}
	fprintf(stderr, "pmd: unknown setting '%s'\n", key);
	return -1;
}

static char *
trim(char *s)
{
	char *e;

	while (isspace((unsigned char)*s))
		s++;
	e = s + strlen(s);
	while (e > s && isspace((unsigned char)e[-1]))
		*--e = '\0';
	return s;
}

int
config_file(struct pmd_config *c, const char *path)
{
	char line[CONFIG_LINE_MAX], *k, *v, *eq;
	FILE *f;
	int lineno = 0, rc = 0;

	if ((f = fopen(path, "re")) == NULL) {
		fprintf(stderr, "pmd: %s: %s\n", path, strerror(errno));
		return -1;
	}
	while (fgets(line, sizeof(line), f) != NULL) {
		lineno++;
		if (strchr(line, '\n') == NULL && !feof(f)) {
			fprintf(stderr, "pmd: %s:%d: line too long\n", path,
			    lineno);
			rc = -1;
			break;
		}
		k = trim(line);
		if (*k == '#' || *k == '\0')
			continue;
		if ((eq = strchr(k, '=')) == NULL) {
			fprintf(stderr, "pmd: %s:%d: expected 'key = value'\n",
			    path, lineno);
			rc = -1;
			break;
		}
		*eq = '\0';
		k = trim(k);
		v = trim(eq + 1);
		if (config_set(c, k, v) == -1) {
			fprintf(stderr, "pmd: %s:%d: bad setting\n", path,
			    lineno);
			rc = -1;
			break;
		}
	}
	fclose(f);
	return rc;
}

/* The --config argument, found before the real parse. */
const char *
config_path(int argc, char *argv[])
{
	int i;

	for (i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--") == 0)
			break;
		if (strcmp(argv[i], "--config") == 0 && i + 1 < argc)
			return argv[i + 1];
		if (strncmp(argv[i], "--config=", 9) == 0)
			return argv[i] + 9;
	}
	return NULL;
}

int
config_finish(struct pmd_config *c)
{
	int several = geteuid() == 0 || c->nallow > 0 || c->allow_all;

	if (c->max_queues_per_uid == 0)
		c->max_queues_per_uid = several ?
		    (int)uid_share((uint64_t)c->max_queues) : c->max_queues;
	if (c->max_queue_waiters_per_uid == 0)
		c->max_queue_waiters_per_uid = several ?
		    (int)uid_share((uint64_t)c->max_queue_waiters) :
		    c->max_queue_waiters;
	if (c->max_queue_fd_items_per_uid < 0)
		c->max_queue_fd_items_per_uid = several &&
		    c->max_queue_fd_items > 0 ?
		    (int)uid_share((uint64_t)c->max_queue_fd_items) :
		    c->max_queue_fd_items;
	if (c->max_total_queue_bytes_per_uid == 0)
		c->max_total_queue_bytes_per_uid = several ?
		    uid_share(c->max_total_queue_bytes) :
		    c->max_total_queue_bytes;
	if (c->max_buffer_bytes_per_uid == 0)
		c->max_buffer_bytes_per_uid = (uint64_t)c->max_frame *
		    PMD_BUFFER_FRAMES_PER_UID;
	if (c->max_buffer_bytes_per_uid < (uint64_t)c->max_frame +
	    PM_WIRE_HDR) {
		fprintf(stderr, "pmd: max_buffer_bytes_per_uid %llu is below "
		    "one frame (max_frame %u)\n",
		    (unsigned long long)c->max_buffer_bytes_per_uid,
		    c->max_frame);
		return -1;
	}
	return 0;
}

/* Returns 0 to run, 1 to exit 0 (--help, --version), -1 to exit 2. */
int
config_args(struct pmd_config *c, int argc, char *argv[], int pass)
{
	long n;
	int ch;

	(void)pass;
	optind = 1;
	opterr = 0;
	while ((ch = getopt_long(argc, argv, ":", longopts, NULL)) != -1) {
		switch (ch) {
		case O_SOCKET:
			if (set_str(&c->socket, optarg) == -1)
				return -1;
			break;
		case O_CONFIG:
			break;
		case O_MAX_WORKERS:
			if (config_set(c, "max_workers", optarg) == -1)
				return -1;
			break;
		case O_MAX_CLIENTS:
			if (config_set(c, "max_clients", optarg) == -1)
				return -1;
			break;
		case O_MODULE_PATH:
			if (config_set(c, "module_path", optarg) == -1)
				return -1;
			break;
		case O_PRELOAD:
			if (config_set(c, "preload", optarg) == -1)
				return -1;
			break;
		case O_PRESTART:
			if (config_set(c, "prestart_workers", optarg) == -1)
				return -1;
			break;
		case O_LOG_LEVEL:
			if (config_set(c, "log_level", optarg) == -1)
				return -1;
			break;
		case O_PRIVATE:
			c->private_mode = 1;
			break;
		case O_READY_FD:
		case O_FORKER:
			if (parse_long(ch == O_FORKER ? "--forker" :
			    "--ready-fd", optarg, 0, INT_MAX, &n) == -1)
				return -1;
			if (ch == O_FORKER)
				c->forker_fd = (int)n;
			else
				c->ready_fd = (int)n;
			break;
		case O_RUN_WORKER:		/* runner.c: spawn */
		case O_BROKER_PID:
			if (parse_long(ch == O_RUN_WORKER ? "--run-worker" :
			    "--broker-pid", optarg, 1, INT_MAX, &n) == -1)
				return -1;
			if (ch == O_RUN_WORKER)
				c->runner_fds = (int)n;
			else
				c->runner_broker = (pid_t)n;
			break;
		case O_VERSION:
			printf("pmd %s (protocol %d)\n", PMD_VERSION,
			    PM_WIRE_VERSION);
			return 1;
		case O_HELP:
			usage(stdout);
			return 1;
		case ':':
			fprintf(stderr, "pmd: %s needs an argument\n",
			    argv[optind - 1]);
			usage(stderr);
			return -1;
		default:
			fprintf(stderr, "pmd: unknown option %s\n",
			    argv[optind - 1]);
			usage(stderr);
			return -1;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "pmd: unexpected argument '%s'\n", argv[optind]);
		usage(stderr);
		return -1;
	}
	return config_finish(c);
}
