/*
 * hello_tasks.c - a task module for examples/hello: the C analogue of the
 * top-level functions a Python program hands to multiprocessing.Process.
 *
 * Built as a shared object and NOT linked to libpmclient: the pm_task_*
 * calls resolve against pmd, which loads the module in the worker.
 *   cc -shared -fPIC -o hello_tasks.so hello_tasks.c
 */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <pmclient.h>

pm_task_fn greet;
pm_task_fn square;

/* Prints a greeting (argument: a name) and returns a result string. */
int
greet(pm_task *t)
{
	char		 name[64] = "world", out[128];
	const void	*arg;
	size_t		 len;
	int		 n;

	arg = pm_task_arg(t, &len);
	if (arg != NULL && len > 0) {
		if (len >= sizeof(name))
			len = sizeof(name) - 1;
		memcpy(name, arg, len);
		name[len] = '\0';
	}
	printf("hello, %s, from worker pid %ld\n", name, (long)getpid());
	fflush(stdout);
	n = snprintf(out, sizeof(out), "greeted %s from pid %ld", name,
	    (long)getpid());
	if (pm_task_return(t, out, (size_t)n) != PM_OK)
		return pm_task_fail(t, "pm_task_return: %s", pm_last_message());
	return 0;
}

/* Argument: a long (native byte order); result: its square. */
int
square(pm_task *t)
{
	const void	*arg;
	size_t		 len;
	long		 x;

	arg = pm_task_arg(t, &len);
	if (arg == NULL || len != sizeof(x))
		return pm_task_fail(t, "square: want a %zu-byte long, got %zu",
		    sizeof(x), len);
	memcpy(&x, arg, sizeof(x));
	x *= x;
	if (pm_task_return(t, &x, sizeof(x)) != PM_OK)
		return pm_task_fail(t, "pm_task_return: %s", pm_last_message());
	return 0;
}
