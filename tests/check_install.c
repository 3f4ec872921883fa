/*
 * check_install.c - what a new user meets first: a program built against
 * an installed prefix starts that prefix's pmd with no environment set,
 * discovery names what it tried, an explicit $PMD_SOCKET that does not
 * answer is an error, and pmd --socket makes no directory it does not own.
 */
#include <sys/stat.h>

#include <errno.h>
#include <stdarg.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <check.h>

#include "harness.h"
#include "pmclient.h"

#define SH_TIMEOUT	300.0	/* s for a build and install from scratch */
#define TAIL_MAX	2000	/* bytes of a command's output in a failure */

static char tmp[PATH_MAX];

static void
setup(void)
{
	ck_assert_int_eq(th_mkdtemp(tmp, sizeof(tmp)), 0);
}

static void
teardown(void)
{
	th_rmtree(tmp);
}

/* The last bytes of out, short enough for a test failure message. */
static const char *
tail_of(const char *out)
{
	size_t n = strlen(out);

	return n > TAIL_MAX ? out + n - TAIL_MAX : out;
}

/* sh -c cmd with stdout and stderr in out; its exit status. */
static int
sh(char *out, size_t outsz, const char *fmt, ...)
{
	char cmd[8192];
	const char *argv[] = { "/bin/sh", "-c", cmd, NULL };
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(cmd, sizeof(cmd) - 8, fmt, ap);
	va_end(ap);
	ck_assert(n > 0 && (size_t)n < sizeof(cmd) - 8);
	strcat(cmd, " 2>&1");
	return th_run(argv, out, outsz, SH_TIMEOUT);
}

static const char prog_src[] =
"#include <stdio.h>\n"
"#include <unistd.h>\n"
"#include <pmclient.h>\n"
"int main(void) {\n"
"	char *argv[] = { \"true\", NULL }, path[64], exe[4096];\n"
"	pm_conn *c = pm_connect(NULL);\n"
"	pm_process *p;\n"
"	ssize_t n;\n"
"	int code = -1;\n"
"	if (c == NULL) {\n"
"		printf(\"connect: %s\\n\", pm_last_message());\n"
"		return 1;\n"
"	}\n"
"	snprintf(path, sizeof(path), \"/proc/%d/exe\", (int)pm_daemon_pid(c));\n"
"	if ((n = readlink(path, exe, sizeof(exe) - 1)) < 0)\n"
"		return 2;\n"
"	exe[n] = '\\0';\n"
"	printf(\"pmd=%s\\n\", exe);\n"
"	p = pm_process_new_exec(c, \"/bin/true\", argv, NULL);\n"
"	if (p == NULL || pm_process_start(p) != 0 ||\n"
"	    pm_process_join(p, 60) != 0 || pm_process_exitcode(p, &code) != 0 ||\n"
"	    code != 0)\n"
"		return 3;\n"
"	pm_process_free(p);\n"
"	pm_disconnect(c);\n"
"	return 0;\n"
"}\n";

/*
 * make (default prefix) then make install PREFIX=tmp/p in the same build
 * directory: the installed library must start tmp/p/bin/pmd.  Built with
 * the shared library (rpath) and with libpmclient-static (no rpath: it
 * runs only if nothing of libpmclient is needed at run time).
 */
START_TEST(t_installed_prefix)
{
	static char out[16384];
	char want[PATH_MAX + 32];
	const char *src = th_env("PM_SRC");
	/* a plain build whatever make check was given (SANITIZE=1...), on
	 * both cores */
	const char *make = "env -u MAKEFLAGS -u MAKELEVEL -u MFLAGS "
	    "-u SANITIZE make --no-print-directory -s -j2 SANITIZE=";
	const char *run = "env -i PATH=/usr/bin:/bin";
	FILE *f;
	int r;

	if (access("/run/pmd/pmd.sock", F_OK) == 0) {
		fprintf(stderr, "skipped: a system pmd is installed\n");
		return;
	}
	r = sh(out, sizeof(out), "%s -C %s B=%s/b OPT=-O0 all", make, src, tmp);
	ck_assert_msg(r == 0, "make: %d\n%s", r, tail_of(out));
	r = sh(out, sizeof(out), "%s -C %s B=%s/b OPT=-O0 PREFIX=%s/p install",
	    make, src, tmp, tmp);
	ck_assert_msg(r == 0, "make install: %d\n%s", r, tail_of(out));

	snprintf(want, sizeof(want), "%s/prog.c", tmp);
	ck_assert((f = fopen(want, "w")) != NULL);
	fputs(prog_src, f);
	ck_assert_int_eq(fclose(f), 0);
	r = sh(out, sizeof(out), "cd %s && export PKG_CONFIG_PATH=%s/p/lib/"
	    "pkgconfig && cc -o prog prog.c $(pkg-config --cflags --libs "
	    "libpmclient) -Wl,-rpath,%s/p/lib && cc -o prog-static prog.c "
	    "$(pkg-config --cflags --libs libpmclient-static)", tmp, tmp, tmp);
	ck_assert_msg(r == 0, "cc: %d\n%s", r, tail_of(out));

	snprintf(want, sizeof(want), "pmd=%s/p/bin/pmd\n", tmp);
	r = sh(out, sizeof(out), "cd %s && %s ./prog", tmp, run);
	ck_assert_msg(r == 0, "prog: %d\n%s", r, tail_of(out));
	ck_assert_msg(strstr(out, want) != NULL, "prog: %s, want %s", out,
	    want);
	r = sh(out, sizeof(out), "cd %s && %s ./prog-static", tmp, run);
	ck_assert_msg(r == 0, "prog-static: %d\n%s", r, tail_of(out));
	ck_assert_msg(strstr(out, want) != NULL, "prog-static: %s", out);
	r = sh(out, sizeof(out), "readelf -d %s/prog-static", tmp);
	ck_assert_msg(r == 0 && strstr(out, "libpmclient") == NULL,
	    "prog-static needs libpmclient.so: %s", tail_of(out));
}
END_TEST

/* The connect error's message holds each of needles (NULL-ended). */
static void
expect_connect_error(int flags, const char *needle, ...)
{
	const char *msg;
	va_list ap;
	pm_conn *c;

	c = pm_connect_flags(NULL, flags);
	ck_assert_msg(c == NULL, "connected");
	ck_assert_int_eq(pm_last_error(), PM_ECONN);
	msg = pm_last_message();
	va_start(ap, needle);
	for (; needle != NULL; needle = va_arg(ap, const char *))
		ck_assert_msg(strstr(msg, needle) != NULL,
		    "message \"%s\" lacks \"%s\"", msg, needle);
	va_end(ap);
}

START_TEST(t_discovery_says_what_it_tried)
{
	char sock[PATH_MAX + 16], bin[PATH_MAX + 16], pmd_bin[PATH_MAX];
	char out[4096];
	int fd0 = th_fd_count(0), r;

	if (access("/run/pmd/pmd.sock", F_OK) == 0) {
		fprintf(stderr, "skipped: a system pmd is installed\n");
		return;
	}
	/* the suite's own, restored at the end (CK_FORK=no runs on) */
	snprintf(pmd_bin, sizeof(pmd_bin), "%s", th_env("PMD_BIN"));
	/* an explicit $PMD_SOCKET is the only candidate */
	snprintf(sock, sizeof(sock), "%s/none.sock", tmp);
	setenv("PMD_SOCKET", sock, 1);
	setenv("PMD_BIN", th_env("PMD_BIN"), 1);
	expect_connect_error(0, "$PMD_SOCKET", sock, "No such file", NULL);
	r = sh(out, sizeof(out), "%s status", th_env("PMCTL_BIN"));
	ck_assert_int_eq(r, 3);		/* pmd unreachable */
	ck_assert_msg(strstr(out, sock) != NULL, "pmctl: %s", out);
	unsetenv("PMD_SOCKET");

	/* every candidate, and why the private pmd failed */
	unsetenv("XDG_RUNTIME_DIR");
	snprintf(bin, sizeof(bin), "%s/no/pmd", tmp);
	setenv("PMD_BIN", bin, 1);
	expect_connect_error(0, "/run/pmd/pmd.sock", "XDG_RUNTIME_DIR unset",
	    bin, "cannot execute", "No such file", NULL);
	setenv("PMD_BIN", "/bin/true", 1);
	expect_connect_error(0, "/bin/true", "exited before it was ready",
	    NULL);
	expect_connect_error(PM_CONNECT_NOSTART, "no pmd is running",
	    "/run/pmd/pmd.sock", NULL);
	setenv("PMD_BIN", pmd_bin, 1);
	ck_assert_int_eq(th_fd_count(0), fd0);
}
END_TEST

/* A directory the user named is not made; nothing is left behind. */
START_TEST(t_socket_dir_not_made)
{
	char sock[PATH_MAX + 32], dir[PATH_MAX + 16], out[4096];
	struct stat st;
	int r;

	snprintf(dir, sizeof(dir), "%s/no/such", tmp);
	snprintf(sock, sizeof(sock), "%s/pmd.sock", dir);
	r = sh(out, sizeof(out), "%s --socket %s", th_env("PMD_BIN"), sock);
	ck_assert_msg(r != 0, "pmd started on %s", sock);
	ck_assert_msg(strstr(out, dir) != NULL, "pmd said: %s", out);
	ck_assert_int_eq(stat(dir, &st), -1);
	snprintf(dir, sizeof(dir), "%s/no", tmp);
	ck_assert_int_eq(stat(dir, &st), -1);
}
END_TEST

/* The README's error table and pm_strerror/pm_errname say the same. */
START_TEST(t_error_table)
{
	char path[PATH_MAX], line[1024], name[64], text[512];
	int value, rows = 0, seen[64] = { 0 };
	FILE *f;

	snprintf(path, sizeof(path), "%s/README.md", th_env("PM_SRC"));
	ck_assert_msg((f = fopen(path, "r")) != NULL, "%s", path);
	while (fgets(line, sizeof(line), f) != NULL) {
		if (sscanf(line, "| `%63[A-Z_]` | %d | %511[^|]|", name, &value,
		    text) != 3)
			continue;
		text[strcspn(text, "|")] = '\0';
		while (text[0] != '\0' && text[strlen(text) - 1] == ' ')
			text[strlen(text) - 1] = '\0';
		ck_assert_str_eq(pm_errname(value), name);
		ck_assert_str_eq(pm_strerror(value), text);
		ck_assert(value <= 0 && value > -64);
		seen[-value] = 1;
		rows++;
	}
	fclose(f);
	/* every code the library names is in the table */
	for (value = 0; strcmp(pm_errname(value), "PM_EUNKNOWN") != 0; value--)
		ck_assert_msg(value > -64 && seen[-value], "%s (%d) is not in "
		    "the README's table", pm_errname(value), value);
	ck_assert_int_eq(rows, -value);
	ck_assert_str_eq(pm_errname(1), "PM_EUNKNOWN");
	ck_assert_str_eq(pm_strerror(-1000), "unknown error");
}
END_TEST

static Suite *
install_suite(void)
{
	Suite *s = suite_create("install");
	TCase *tc;

	tc = th_tcase(s, "discovery", setup, teardown, 60);
	tcase_add_test(tc, t_discovery_says_what_it_tried);
	tcase_add_test(tc, t_socket_dir_not_made);
	tcase_add_test(tc, t_error_table);
	tc = th_tcase(s, "prefix", setup, teardown, 2 * SH_TIMEOUT + 60);
	tcase_add_test(tc, t_installed_prefix);
	return s;
}

int
main(void)
{
	return th_run_suite(install_suite());
}
