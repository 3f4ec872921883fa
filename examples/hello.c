/*
 * hello.c - the multiprocessing.Process tour in C: start processes running
 * task functions (hello_tasks.so) and programs, join them, print what came
 * back.  pm_connect(NULL) finds a running pmd or starts a private one.
 *
 *   hello [MODULE]     MODULE defaults to hello_tasks.so next to this program
 */
#include <limits.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <pmclient.h>

struct job {
	pm_process	*p;
	int		 want;		/* expected exit code */
};

static int
fail(const char *what)
{
	fprintf(stderr, "hello: %s: %s (%s)\n", what, pm_last_message(),
	    pm_strerror(pm_last_error()));
	return 1;
}

/* hello_tasks.so in the directory of this executable. */
static int
default_module(char *buf, size_t size)
{
	char	 exe[PATH_MAX];
	ssize_t	 n;

	n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	if (n < 0) {
		perror("hello: /proc/self/exe");
		return -1;
	}
	exe[n] = '\0';
	if ((size_t)snprintf(buf, size, "%s/hello_tasks.so", dirname(exe)) >=
	    size) {
		fprintf(stderr, "hello: module path too long\n");
		return -1;
	}
	return 0;
}

static pm_process *
new_task(pm_conn *c, const char *module, const char *fn, const char *name,
    const void *arg, size_t len)
{
	pm_process	*p;

	if ((p = pm_process_new(c, module, fn, arg, len)) == NULL)
		return NULL;
	if (pm_process_set_name(p, name) != PM_OK) {
		pm_process_free(p);
		return NULL;
	}
	return p;
}

static pm_process *
new_exec(pm_conn *c, const char *name, char *const argv[])
{
	pm_process	*p;

	if ((p = pm_process_new_exec(c, argv[0], argv, NULL)) == NULL)
		return NULL;
	if (pm_process_set_name(p, name) != PM_OK) {
		pm_process_free(p);
		return NULL;
	}
	return p;
}

/* Joins j, prints its exit code and result; 0 when it ended as expected. */
static int
report(struct job *j)
{
	pm_bytes	 res = { NULL, 0 };
	const char	*err;
	int		 code;

	if (pm_process_join(j->p, -1) != PM_OK)
		return fail("join");
	if (pm_process_exitcode(j->p, &code) != PM_OK)
		return fail("exitcode");
	printf("%-10s pid %-7ld exitcode %d", pm_process_name(j->p),
	    (long)pm_process_pid(j->p), code);
	if (pm_process_result(j->p, &res) == PM_OK && res.len > 0) {
		if (res.len == sizeof(long) &&
		    strcmp(pm_process_name(j->p), "square") == 0) {
			long v;

			memcpy(&v, res.data, sizeof(v));
			printf("  result %ld", v);
		} else
			printf("  result \"%.*s\"", (int)res.len,
			    (const char *)res.data);
	}
	pm_bytes_free(&res);
	if ((err = pm_process_error(j->p)) != NULL)
		printf("  error \"%s\"", err);
	printf("%s\n", code == j->want ? "" : "  (unexpected)");
	fflush(stdout);
	return code == j->want ? 0 : 1;
}

int
main(int argc, char *argv[])
{
	static char	 echo0[] = "/bin/echo", echo1[] = "hello from a program";
	static char	 sh0[] = "/bin/sh", sh1[] = "-c", sh2[] = "exit 3";
	char		*echo_argv[] = { echo0, echo1, NULL };
	char		*sh_argv[] = { sh0, sh1, sh2, NULL };
	char		 module[PATH_MAX];
	struct job	 jobs[4];
	pm_conn		*c;
	long		 seven = 7;
	size_t		 i, n = 0;
	int		 bad = 0;

	if (argc > 2) {
		fprintf(stderr, "usage: hello [MODULE]\n");
		return 2;
	}
	if (argc == 2) {
		if ((size_t)snprintf(module, sizeof(module), "%s", argv[1]) >=
		    sizeof(module)) {
			fprintf(stderr, "hello: module path too long\n");
			return 2;
		}
	} else if (default_module(module, sizeof(module)) == -1)
		return 1;

	if ((c = pm_connect(NULL)) == NULL)
		return fail("pm_connect");
	printf("connected to pmd pid %ld at %s\n", (long)pm_daemon_pid(c),
	    pm_conn_address(c));

	jobs[n].want = 0;
	if ((jobs[n++].p = new_task(c, module, "greet", "greeter", "pmd",
	    3)) == NULL)
		return fail("greet");
	jobs[n].want = 0;
	if ((jobs[n++].p = new_task(c, module, "square", "square", &seven,
	    sizeof(seven))) == NULL)
		return fail("square");
	jobs[n].want = 0;
	if ((jobs[n++].p = new_exec(c, "echo", echo_argv)) == NULL)
		return fail("echo");
	jobs[n].want = 3;
	if ((jobs[n++].p = new_exec(c, "exit3", sh_argv)) == NULL)
		return fail("sh");

	fflush(stdout);		/* workers share our stdout */
	for (i = 0; i < n; i++)
		if (pm_process_start(jobs[i].p) != PM_OK)
			return fail(pm_process_name(jobs[i].p));
	for (i = 0; i < n; i++)
		bad |= report(&jobs[i]);

	for (i = 0; i < n; i++)
		pm_process_free(jobs[i].p);
	pm_disconnect(c);
	printf("hello: %s\n", bad ? "FAILED" : "ok");
	return bad;
}
