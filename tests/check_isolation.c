/*
 * check_isolation.c - what a worker can see of other clients and of pmd,
 * against a real pmd running as root: no other user's request bytes
 * anywhere in its memory, no symbol of a module preloaded in the forker,
 * all of its client's groups (more than 256 too), and the fd limit pmd
 * started with, not the one pmd raised for itself.
 *
 * Clients of other uids connect with the test's effective ids switched
 * to theirs (th_become): pmd takes a client's ids when it connects.
 * Tests that need other uids are skipped when the suite does not run as
 * root.
 */
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/types.h>

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "pmclient.h"
#include "wire.h"
#include "pm.pb-c.h"

#define USER_X		65534		/* the secrets' owner */
#define USER_Y		65533		/* who looks for them */
#define SCAN_KEY	0x5a		/* as in isotasks.c */
#define SCAN_FAILED	200		/* as in isotasks.c */
#define LEAK_ROUNDS	3
#define LEAK_SPAWNS	4		/* X's spawns before and after Y's */
#define MANY_GROUPS	300		/* above the old fixed 256 */

static struct th_pmd pmd;
static pm_conn *conn;
static pm_conn *yconn;			/* user Y's, when a test makes one */
static int base_pmd;
static char mod[PATH_MAX + 64];		/* 0644 copy of isotasks.so */

/* pmd with these config lines and extra args, open to every uid, and a
 * copy of the test module there that every uid can read. */
static void
start(const char *lines, const char *const *args, long nofile,
    void (*prep)(void))
{
	struct th_pmd_opts o = { .conf = lines, .args = args,
	    .nofile = nofile, .prep = prep, .shared = 1 };

	ck_assert_int_eq(th_pmd_start_opts(&pmd, &o), 0);
	th_pmd_module(&pmd, "isotasks.so", "iso.so", 0644, mod, sizeof(mod));
	base_pmd = th_fd_count(pmd.pid);
	conn = pm_connect(pmd.sock);
	ck_assert_msg(conn != NULL, "pm_connect: %s", pm_last_message());
}

static void
setup(void)
{
	start(NULL, NULL, 0, NULL);
}

static void
teardown(void)
{
	pm_disconnect(yconn);
	yconn = NULL;
	pm_disconnect(conn);
	conn = NULL;
	if (th_pid_alive(pmd.pid))
		th_pmd_settled(&pmd, base_pmd, 10);
	ck_assert_int_eq(th_pmd_stop(&pmd), 0);
}

/* The result of mod:fn(arg) run to its end on c (exit 0). */
static char *
run_result(pm_conn *c, const char *fn, const char *arg)
{
	pm_process *p;
	pm_bytes b = { NULL, 0 };
	char *s;

	p = pm_process_new(c, mod, fn, arg, arg ? strlen(arg) : 0);
	ck_assert_msg(p != NULL, "new %s: %s", fn, pm_last_message());
	ck_assert_int_eq(th_run_process(p, 30), 0);
	ck_assert_int_eq(pm_process_result(p, &b), PM_OK);
	ck_assert_ptr_nonnull(s = calloc(1, b.len + 1));
	memcpy(s, b.data, b.len);
	pm_bytes_free(&b);
	pm_process_free(p);
	return s;
}

/* A connection made as uid (its gid the same, no groups). */
static pm_conn *
conn_as(uid_t uid)
{
	pm_conn *c;

	th_become(uid, (gid_t)uid, NULL, 0);
	c = pm_connect(pmd.sock);
	th_unbecome();
	ck_assert_msg(c != NULL, "connect as %u: %s", (unsigned)uid,
	    pm_last_message());
	return c;
}

/* A raw connection made as uid (its gid the same, no groups). */
static int
raw_as(uid_t uid)
{
	int fd;

	th_become(uid, (gid_t)uid, NULL, 0);
	fd = th_raw_hello(pmd.sock);
	th_unbecome();
	return fd;
}

/* ---- other users' requests in a worker's memory ---- */

struct secrets {
	char	argv[40];	/* in an argument */
	char	env[40];	/* in the environment */
	char	cwd[40];	/* in the working directory's name */
	char	dir[PATH_MAX];	/* that directory */
};

static void
random_hex(char *out, const char *prefix)
{
	unsigned char r[12];
	int fd, i, n;

	ck_assert_int_ge(fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC), 0);
	ck_assert_int_eq(read(fd, r, sizeof(r)), (ssize_t)sizeof(r));
	close(fd);
	n = sprintf(out, "%s", prefix);
	for (i = 0; i < (int)sizeof(r); i++)
		n += sprintf(out + n, "%02x", r[i]);
}

/* X's program spawn: /bin/true with a secret at the end of an argument,
 * of an environment entry (each padded to its own length, so that
 * earlier, longer ones are not all overwritten by later ones), and in
 * its working directory. */
static void
x_spawn(int fd, const struct secrets *s, int i, uint32_t id)
{
	Pm__Spawn sp = PM__SPAWN__INIT;
	char arg[2048], env[2048], *argv[2], *envp[2];
	int pad = 64 + 97 * i;

	memset(arg, 'a', (size_t)pad);
	snprintf(arg + pad, sizeof(arg) - (size_t)pad, "%s", s->argv);
	memset(env, 'e', (size_t)pad + 9);
	memcpy(env, "PM_TOKEN=", 9);
	snprintf(env + pad + 9, sizeof(env) - (size_t)pad - 9, "%s", s->env);
	argv[0] = (char *)(uintptr_t)"true";
	argv[1] = arg;
	envp[0] = env;
	envp[1] = (char *)(uintptr_t)"PATH=/usr/bin:/bin";
	sp.kind = PM__KIND__K_EXEC;
	sp.path = (char *)(uintptr_t)"/bin/true";
	sp.n_argv = 2;
	sp.argv = argv;
	sp.n_envp = 2;
	sp.envp = envp;
	sp.has_envp = 1;
	sp.cwd = (char *)(uintptr_t)s->dir;
	th_raw_send(fd, PM__TYPE__T_SPAWN, id, &sp.base);
}

/* Reads frames until the reply to request id; its fds are closed. */
static uint32_t
reply_to(int fd, struct wire_in *in, uint32_t id)
{
	struct pm_frame f;
	uint32_t type;

	do {
		th_raw_next(fd, in, &f, 30);
		type = f.type;
		wire_frame_close(&f);
	} while (f.id != id);
	return type;
}

/* Y's function spawn of scan over the secrets, its stdout the pipe's
 * write end (taken). */
static void
y_scan(int fd, const struct secrets *s, int out, uint32_t id)
{
	Pm__Spawn sp = PM__SPAWN__INIT;
	char arg[PATH_MAX + 256];
	int32_t child = 1;
	size_t n, i;

	/* the module's path, in our own request, is the control */
	n = (size_t)snprintf(arg, sizeof(arg), "%s\n%s\n%s\n%s", mod, s->argv,
	    s->env, s->cwd);
	for (i = 0; i < n; i++)
		arg[i] ^= SCAN_KEY;
	sp.kind = PM__KIND__K_FUNCTION;
	sp.module = mod;
	sp.function = (char *)(uintptr_t)"scan";
	sp.arg.data = (uint8_t *)arg;
	sp.arg.len = n;
	sp.n_child_fds = 1;
	sp.child_fds = &child;
	th_raw_send_fds(fd, PM__TYPE__T_SPAWN, id, &sp.base, &out, 1);
	close(out);
}

/* Y's scan worker's exit code (from its Exited). */
static int
y_exit(int fd, struct wire_in *in)
{
	Pm__Exited *ex;
	struct pm_frame f;
	int code;

	for (;;) {
		th_raw_next(fd, in, &f, 60);
		wire_frame_close(&f);
		if (f.type == PM__TYPE__T_EXITED)
			break;
		ck_assert_msg(f.type == PM__TYPE__T_SPAWN_REPLY,
		    "scan spawn: frame type %u", f.type);
	}
	ck_assert_ptr_nonnull(ex = pm__exited__unpack(NULL, f.len, f.data));
	code = ex->exitcode;
	pm__exited__free_unpacked(ex, NULL);
	return code;
}

/*
 * uid X spawns programs with secrets in argv, envp and cwd, before and
 * after uid Y's spawn of a function that searches all of its own memory
 * for them.  The forker is stopped meanwhile, so X's requests are queued
 * ahead of and behind Y's when it goes on.  No round may find any.
 */
START_TEST(t_no_leak)
{
	struct wire_in xin, yin;
	struct secrets s;
	char report[4096];
	uint32_t id = 10;
	pid_t forker;
	ssize_t n;
	int xs, ys, p[2], round, i, code;

	TH_NEED_ROOT();
	random_hex(s.argv, "A");
	random_hex(s.env, "E");
	random_hex(s.cwd, "C");
	ck_assert_int_lt(snprintf(s.dir, sizeof(s.dir), "%s/%.39s", pmd.dir,
	    s.cwd), (int)sizeof(s.dir));
	ck_assert_int_eq(mkdir(s.dir, 0755), 0);
	xs = raw_as(USER_X);
	ys = raw_as(USER_Y);
	wire_in_init(&xin, 0);
	wire_in_init(&yin, 0);
	forker = th_pmd_forker(&pmd);
	ck_assert_int_gt(forker, 0);
	for (round = 0; round < LEAK_ROUNDS; round++) {
		ck_assert_int_eq(kill(forker, SIGSTOP), 0);
		for (i = 0; i < LEAK_SPAWNS; i++) {
			x_spawn(xs, &s, i, ++id);
			ck_assert_uint_eq(reply_to(xs, &xin, id),
			    PM__TYPE__T_SPAWN_REPLY);
		}
		ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
		y_scan(ys, &s, p[1], ++id);
		ck_assert_uint_eq(reply_to(ys, &yin, id),
		    PM__TYPE__T_SPAWN_REPLY);
		for (i = 0; i < LEAK_SPAWNS; i++) {
			x_spawn(xs, &s, LEAK_SPAWNS + i, ++id);
			ck_assert_uint_eq(reply_to(xs, &xin, id),
			    PM__TYPE__T_SPAWN_REPLY);
		}
		ck_assert_int_eq(kill(forker, SIGCONT), 0);
		code = y_exit(ys, &yin);
		n = 0;
		while (th_readable(p[0], 30) && (size_t)n < sizeof(report) - 1) {
			ssize_t r = read(p[0], report + n,
			    sizeof(report) - 1 - (size_t)n);

			if (r <= 0)
				break;
			n += r;
		}
		report[n] = '\0';
		close(p[0]);
		if (code != 0)
			fprintf(stderr, "%s", report);
		ck_assert_msg(code == 0, "round %d: uid %u's worker found uid "
		    "%u's secrets %d times (1 argv, 2 env, 3 cwd; %d: it "
		    "could not search), first: %.200s", round, USER_Y, USER_X,
		    code, SCAN_FAILED, report);
	}
	wire_in_free(&xin);
	wire_in_free(&yin);
	close(xs);
	close(ys);
	TH_WAIT(th_zombies(pmd.pid) == 0 && th_children(pmd.pid, NULL, 0) == 1,
	    30);
	rmdir(s.dir);
}
END_TEST

/* ---- modules preloaded in the forker ---- */

static char predir[PATH_MAX];

/* pmd preloading a copy of privtasks.so only root can read. */
static void
setup_preload(void)
{
	char src[PATH_MAX], to[PATH_MAX + 16], line[PATH_MAX + 32];

	ck_assert_int_eq(th_mkdtemp(predir, sizeof(predir)), 0);
	snprintf(src, sizeof(src), "%s/tests/privtasks.so", th_env("PM_BUILD"));
	snprintf(to, sizeof(to), "%s/secret.so", predir);
	th_copy_file(src, to, 0600);
	snprintf(line, sizeof(line), "preload = %s\n", to);
	start(line, NULL, 0, NULL);
}

static void
teardown_preload(void)
{
	teardown();
	th_rmtree(predir);
}

/* mod:fn(arg)'s exit code on c. */
static int
run_code(pm_conn *c, const char *fn, const char *arg)
{
	pm_process *p;
	int code;

	p = pm_process_new(c, mod, fn, arg, arg ? strlen(arg) : 0);
	ck_assert_msg(p != NULL, "new %s: %s", fn, pm_last_message());
	code = th_run_process(p, 30);
	pm_process_free(p);
	return code;
}

/* A module preloaded in the forker is mapped in every worker, but its
 * symbols are not global: a worker of a uid that cannot read it finds
 * none of them (ids is defined only there). */
START_TEST(t_preload_local)
{
	TH_NEED_ROOT();
	yconn = conn_as(USER_Y);
	ck_assert_msg(run_code(yconn, "has_symbol", "ids") == 0,
	    "uid %u's worker resolved a symbol of a module preloaded in the "
	    "forker that it cannot read", USER_Y);
	/* the test is sound: the module's own symbols resolve when loaded
	 * globally */
	ck_assert_int_eq(run_code(yconn, "has_symbol", "pm_task_arg"), 1);
}
END_TEST

/* ---- what else a worker inherits ---- */

/*
 * A client with more groups than the 256 pmd used to read of a client
 * (the kernel says ERANGE, and how many, to a short buffer): its worker
 * takes all of them, not none.
 */
START_TEST(t_many_groups)
{
	gid_t g[MANY_GROUPS];
	char *got, want[64];
	pm_conn *c;
	int i;

	TH_NEED_ROOT();
	for (i = 0; i < MANY_GROUPS; i++)
		g[i] = (gid_t)(70000 + i);
	th_become(USER_Y, USER_Y, g, MANY_GROUPS);
	c = pm_connect(pmd.sock);
	th_unbecome();
	ck_assert_msg(c != NULL, "connect: %s", pm_last_message());
	yconn = c;
	got = run_result(c, "groups", NULL);
	snprintf(want, sizeof(want), "%d %u %u", MANY_GROUPS, 70000u,
	    70000u + MANY_GROUPS - 1);
	ck_assert_msg(strcmp(got, want) == 0, "worker's groups \"%s\", want "
	    "\"%s\"", got, want);
	free(got);
}
END_TEST

#define NOFILE_SOFT	512

/* pmd started with a soft fd limit below its hard one, which it raises
 * for itself. */
static void
low_soft_nofile(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_max > NOFILE_SOFT) {
		rl.rlim_cur = NOFILE_SOFT;
		(void)setrlimit(RLIMIT_NOFILE, &rl);
	}
}

static void
setup_nofile(void)
{
	start(NULL, NULL, 0, low_soft_nofile);
}

/* Workers get the soft fd limit pmd started with, not pmd's raised one
 * (what a program started from a shell would get). */
START_TEST(t_nofile_restored)
{
	struct rlimit rl;
	char *got;
	unsigned long long soft = 0, hard = 0;

	ck_assert_int_eq(getrlimit(RLIMIT_NOFILE, &rl), 0);
	if (rl.rlim_max <= NOFILE_SOFT || th_valgrind()) {
		/* valgrind's limits are its own, not those pmd inherits */
		fprintf(stderr, "%s: skipped (hard fd limit %llu%s)\n",
		    __func__, (unsigned long long)rl.rlim_max,
		    th_valgrind() ? ", valgrind" : "");
		return;
	}
	ck_assert_int_eq(prlimit(pmd.pid, RLIMIT_NOFILE, NULL, &rl), 0);
	ck_assert_uint_gt(rl.rlim_cur, NOFILE_SOFT);	/* pmd's, raised */
	got = run_result(conn, "nofile_soft", NULL);
	ck_assert_int_eq(sscanf(got, "%llu %llu", &soft, &hard), 2);
	free(got);
	ck_assert_msg(soft == NOFILE_SOFT, "worker's soft fd limit %llu, pmd "
	    "started with %d", soft, NOFILE_SOFT);
	ck_assert_uint_eq(hard, rl.rlim_max);
}
END_TEST

static Suite *
isolation_suite(void)
{
	Suite *s = suite_create("isolation");
	TCase *tc;

	tc = th_tcase(s, "memory", setup, teardown, 120);
	tcase_add_test(tc, t_no_leak);

	tc = th_tcase(s, "preload", setup_preload, teardown_preload, 120);
	tcase_add_test(tc, t_preload_local);

	tc = th_tcase(s, "groups", setup, teardown, 120);
	tcase_add_test(tc, t_many_groups);

	tc = th_tcase(s, "nofile", setup_nofile, teardown, 120);
	tcase_add_test(tc, t_nofile_restored);
	return s;
}

int
main(void)
{
	return th_run_suite(isolation_suite());
}
