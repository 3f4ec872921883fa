/*
 * check_systemd.c - the systemd integration without systemd as PID 1:
 * `systemd-analyze verify` accepts the generated units, and pmd under
 * `systemd-socket-activate` serves a request on the passed socket and
 * sends READY=1 and STOPPING=1 to a NOTIFY_SOCKET the test owns.
 * Skipped (with a message) when the tools or units are missing.
 */
#include <sys/types.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>

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

static const char *const units[] = {
	"pmd.socket", "pmd.service", "pmd-user.socket", "pmd-user.service",
};

/* Path of a program in $PATH (or the usual places), else NULL. */
static const char *
find_tool(const char *name, char *buf, size_t len)
{
	static const char *const dirs[] = { "/usr/bin", "/bin", "/usr/sbin",
	    "/sbin", "/usr/local/bin", "/usr/lib/systemd" };
	const char *path = getenv("PATH");
	char *copy, *dir, *save = NULL;
	size_t i;

	if (path != NULL && (copy = strdup(path)) != NULL) {
		for (dir = strtok_r(copy, ":", &save); dir != NULL;
		    dir = strtok_r(NULL, ":", &save)) {
			snprintf(buf, len, "%s/%s", dir, name);
			if (access(buf, X_OK) == 0) {
				free(copy);
				return buf;
			}
		}
		free(copy);
	}
	for (i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++) {
		snprintf(buf, len, "%s/%s", dirs[i], name);
		if (access(buf, X_OK) == 0)
			return buf;
	}
	return NULL;
}

/* Copy in to out with every @BINDIR@ replaced by bindir. */
static int
generate(const char *in, const char *out, const char *bindir)
{
	char line[4096], *at;
	FILE *fi, *fo;

	if ((fi = fopen(in, "re")) == NULL)
		return -1;
	if ((fo = fopen(out, "we")) == NULL) {
		fclose(fi);
		return -1;
	}
	while (fgets(line, sizeof(line), fi) != NULL) {
		char *p = line;

		while ((at = strstr(p, "@BINDIR@")) != NULL) {
			fwrite(p, 1, (size_t)(at - p), fo);
			fputs(bindir, fo);
			p = at + 8;
		}
		fputs(p, fo);
	}
	fclose(fi);
	return fclose(fo) == 0 ? 0 : -1;
}

static char *
slurp(const char *path)
{
	static char buf[16384];
	ssize_t n;
	int fd;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1)
		return NULL;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n < 0)
		return NULL;
	buf[n] = '\0';
	return buf;
}

START_TEST(t_verify)
{
	char tool[PATH_MAX], dir[PATH_MAX], in[PATH_MAX], gen[4][PATH_MAX + 32];
	char out[16384], *text;
	const char *src = th_env("PM_SRC"), *bindir = th_env("PM_BUILD");
	const char *argv[8];
	size_t i;
	int r;

	if (find_tool("systemd-analyze", tool, sizeof(tool)) == NULL) {
		fprintf(stderr, "t_verify: skipped, no systemd-analyze\n");
		return;
	}
	for (i = 0; i < 4; i++) {
		snprintf(in, sizeof(in), "%s/systemd/%s.in", src, units[i]);
		if (access(in, R_OK) != 0) {
			fprintf(stderr, "t_verify: skipped, %s missing\n", in);
			return;
		}
	}
	ck_assert_int_eq(th_mkdtemp(dir, sizeof(dir)), 0);
	for (i = 0; i < 4; i++) {
		snprintf(in, sizeof(in), "%s/systemd/%s.in", src, units[i]);
		snprintf(gen[i], sizeof(gen[i]), "%s/%s", dir, units[i]);
		ck_assert_int_eq(generate(in, gen[i], bindir), 0);
	}

	/* what the design asks of the service */
	text = slurp(gen[1]);
	ck_assert_ptr_nonnull(text);
	ck_assert_msg(strstr(text, "Type=notify") != NULL,
	    "pmd.service is not Type=notify");
	ck_assert_msg(strstr(text, "KillMode=mixed") != NULL,
	    "pmd.service lacks KillMode=mixed");
	ck_assert_msg(strstr(text, "NoNewPrivileges=") != NULL,
	    "pmd.service lacks NoNewPrivileges=");
	ck_assert_msg(strstr(text, bindir) != NULL,
	    "pmd.service does not use @BINDIR@");
	text = slurp(gen[0]);
	ck_assert_ptr_nonnull(text);
	ck_assert_msg(strstr(text, "ListenStream=") != NULL,
	    "pmd.socket lacks ListenStream=");

	argv[0] = tool;
	argv[1] = "verify";
	argv[2] = gen[0];
	argv[3] = gen[1];
	argv[4] = NULL;
	r = th_run(argv, out, sizeof(out), 60);
	ck_assert_msg(r == 0, "systemd-analyze verify: exit %d\n%s", r, out);
	th_rmtree(dir);
}
END_TEST

/* A datagram socket at path; returns the fd. */
static int
notify_socket(const char *path)
{
	struct sockaddr_un sun;
	int fd;

	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	ck_assert_uint_lt(strlen(path), sizeof(sun.sun_path));
	strcpy(sun.sun_path, path);
	fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&sun, sizeof(sun)), 0);
	return fd;
}

/* Wait for a notification containing want (a line such as READY=1);
 * every message seen is appended to log. */
static int
await_notify(int fd, const char *want, double secs, char *log, size_t loglen)
{
	double end = th_now() + secs;
	char msg[4096], *line, *save = NULL;
	ssize_t n;

	while (th_readable(fd, end - th_now())) {
		n = recv(fd, msg, sizeof(msg) - 1, 0);
		if (n <= 0)
			continue;
		msg[n] = '\0';
		if (strlen(log) + (size_t)n + 2 < loglen) {
			strcat(log, msg);
			strcat(log, "|");
		}
		for (line = strtok_r(msg, "\n", &save); line != NULL;
		    line = strtok_r(NULL, "\n", &save))
			if (strcmp(line, want) == 0)
				return 1;
	}
	return 0;
}

START_TEST(t_socket_activate)
{
	char tool[PATH_MAX], dir[PATH_MAX], sock[PATH_MAX + 16];
	char nsock[PATH_MAX + 16], env[PATH_MAX + 32], log[8192] = "";
	const char *pmdbin = th_env("PMD_BIN");
	static const char *const vars[] = { "NOTIFY_SOCKET", "LISTEN_FDS",
	    "LISTEN_PID" };
	pm_process *p;
	pm_conn *c;
	pid_t pid;
	size_t i;
	int nfd, code = -1, st;

	if (find_tool("systemd-socket-activate", tool, sizeof(tool)) == NULL) {
		fprintf(stderr, "t_socket_activate: skipped, "
		    "no systemd-socket-activate\n");
		return;
	}
	ck_assert_int_eq(th_mkdtemp(dir, sizeof(dir)), 0);
	snprintf(sock, sizeof(sock), "%s/pmd.sock", dir);
	snprintf(nsock, sizeof(nsock), "%s/notify", dir);
	snprintf(env, sizeof(env), "NOTIFY_SOCKET=%s", nsock);
	nfd = notify_socket(nsock);

	if ((pid = fork()) == 0) {
		const char *argv[] = { tool, "-l", sock, "-E", env, pmdbin,
		    "--log-level", "info", NULL };
		int nul = open("/dev/null", O_RDONLY);

		if (nul > 0) {
			dup2(nul, 0);
			close(nul);
		}
		close_range(3, ~0U, 0);
		prctl(PR_SET_PDEATHSIG, SIGTERM);
		unsetenv("NOTIFY_SOCKET");
		unsetenv("LISTEN_FDS");
		unsetenv("LISTEN_PID");
		execv(tool, (char *const *)(uintptr_t)argv);
		_exit(127);
	}
	ck_assert_int_gt(pid, 0);
	TH_WAIT(access(sock, F_OK) == 0 || waitpid(pid, &st, WNOHANG) == pid,
	    10);
	ck_assert_msg(access(sock, F_OK) == 0, "no listening socket");

	/* the first connection activates pmd; the socket file appears at
	 * bind, a moment before listen (refused until then) */
	c = NULL;
	TH_WAIT((c = pm_connect(sock)) != NULL ||
	    pm_last_error() != PM_ECONN, 10);
	ck_assert_msg(c != NULL, "pm_connect: %s", pm_last_message());
	ck_assert_int_eq(pm_daemon_pid(c), pid);
	p = pm_process_new(c, th_module(), "noop", NULL, 0);
	ck_assert_int_eq(pm_process_start(p), PM_OK);
	ck_assert_int_eq(pm_process_join(p, 30), PM_OK);
	ck_assert_int_eq(pm_process_exitcode(p, &code), PM_OK);
	ck_assert_int_eq(code, 0);
	pm_process_free(p);
	ck_assert_msg(await_notify(nfd, "READY=1", 10, log, sizeof(log)),
	    "no READY=1; got: %s", log);

	/* workers see nothing of systemd's environment */
	for (i = 0; i < sizeof(vars) / sizeof(vars[0]); i++) {
		p = pm_process_new(c, th_module(), "getenv_t", vars[i],
		    strlen(vars[i]));
		ck_assert_int_eq(pm_process_start(p), PM_OK);
		ck_assert_int_eq(pm_process_join(p, 30), PM_OK);
		ck_assert_int_eq(pm_process_exitcode(p, &code), PM_OK);
		ck_assert_msg(code == 3, "worker has $%s", vars[i]);
		pm_process_free(p);
	}
	pm_disconnect(c);

	ck_assert_int_eq(kill(pid, SIGTERM), 0);
	ck_assert_msg(await_notify(nfd, "STOPPING=1", 10, log, sizeof(log)),
	    "no STOPPING=1; got: %s", log);
	TH_WAIT(waitpid(pid, &st, WNOHANG) == pid, 15)
		;
	if (kill(pid, 0) == 0 && th_pid_alive(pid)) {
		kill(pid, SIGKILL);
		waitpid(pid, &st, 0);
		ck_abort_msg("pmd ignored SIGTERM");
	}
	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0,
	    "pmd ended with status 0x%x", st);
	close(nfd);
	th_rmtree(dir);
}
END_TEST

static Suite *
systemd_suite(void)
{
	Suite *s = suite_create("systemd");
	TCase *tc = th_tcase(s, "systemd", NULL, NULL, 120);

	tcase_add_test(tc, t_verify);
	tcase_add_test(tc, t_socket_activate);
	return s;
}

int
main(void)
{
	return th_run_suite(systemd_suite());
}
