/*
 * task.c - the worker side of a task: what a task function calls
 * (pm_task_arg, pm_task_return, pm_task_fail, pm_task_conn) and how its
 * outcome reaches the client over the worker channel.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pmclient_int.h"

#define PMC_TASK_ERR_MAX	4096	/* bytes of pm_task_fail text kept */

const void *
pm_task_arg(pm_task *t, size_t *len)
{
	if (t == NULL) {
		if (len != NULL)
			*len = 0;
		return NULL;
	}
	if (len != NULL)
		*len = t->arglen;
	return t->arg;
}

int
pm_task_return(pm_task *t, const void *data, size_t len)
{
	void *copy;

	if (t == NULL || (data == NULL && len > 0))
		return pmc_err(PM_EINVAL, "bad task result");
	if (t->ret_hook != NULL)	/* a pool worker: straight into the batch */
		return t->ret_hook(t, data, len);
	if ((copy = malloc(len ? len : 1)) == NULL)
		return pmc_err(PM_ENOMEM, "out of memory for a %zu-byte result",
		    len);
	if (len > 0)
		memcpy(copy, data, len);
	free(t->result);
	t->result = copy;
	t->resultlen = len;
	t->returned = 1;
	return pmc_ok();
}

int
pm_task_fail(pm_task *t, const char *fmt, ...)
{
	va_list ap;
	char *msg;

	if (t == NULL)
		return 1;
	if ((msg = malloc(PMC_TASK_ERR_MAX)) != NULL) {
		va_start(ap, fmt);
		vsnprintf(msg, PMC_TASK_ERR_MAX, fmt ? fmt : "task failed", ap);
		va_end(ap);
	}
	free(t->error);
	t->error = msg;
	if (msg == NULL)
		t->error = strdup("task failed");
	return 1;
}

pm_conn *
pm_task_conn(pm_task *t)
{
	if (t == NULL) {
		pmc_err(PM_EINVAL, "no task");
		return NULL;
	}
	if (t->conn == NULL)
		t->conn = pm_connect(t->address);
	return t->conn;
}

const char *
pm_task_name(pm_task *t)
{
	if (t == NULL) {
		pmc_err(PM_EINVAL, "no task");
		return NULL;
	}
	return t->name != NULL ? t->name : "";
}

pid_t
pm_task_parent_pid(pm_task *t)
{
	return t != NULL ? t->parent_pid : 0;
}

void
pmc_task_clear(struct pm_task *t)
{
	if (t->conn != NULL) {
		pm_disconnect(t->conn);
		t->conn = NULL;
	}
	free(t->result);
	free(t->error);
	t->result = NULL;
	t->error = NULL;
	t->resultlen = 0;
	t->returned = 0;
}

/* Sends the Result frame, with the exit code the worker is about to exit
 * with; data above the memfd threshold goes by memfd. */
static int
task_send_result(struct pm_task *t, int code)
{
	Pm__Result r = PM__RESULT__INIT;
	struct wire_out out;
	int fd = -1, rc;

	r.ok = t->error == NULL;
	r.has_exitcode = 1;
	r.exitcode = code;
	if (!r.ok)
		r.error = t->error;
	else if (!t->returned)
		r.none = 1;
	else if (t->resultlen >= PM_WIRE_MEMFD_MIN) {
		if ((fd = wire_memfd(t->result, t->resultlen)) == -1)
			return -1;
		r.in_fd = 1;
		r.data_len = t->resultlen;
	} else {
		r.data.data = t->result;
		r.data.len = t->resultlen;
	}
	wire_out_init(&out);
	rc = wire_out_frame(&out, PM__TYPE__T_RESULT, 0, &r.base, &fd,
	    fd >= 0 ? 1 : 0);
	if (rc == 0)
		rc = wire_out_flush_wait(&out, t->channel, -1) == 1 ? 0 : -1;
	wire_out_free(&out);
	return rc;
}

int
pmc_task_run_process(pm_task_fn *fn, struct pm_task *t)
{
	int rc = fn != NULL ? fn(t) : 0;	/* NULL: report t's error */
	int code;

	if (t->conn != NULL) {
		pm_disconnect(t->conn);
		t->conn = NULL;
	}
	code = t->error != NULL ? 1 : (rc & 0xff);
	fflush(NULL);			/* all but the exit itself is done */
	if (t->channel >= 0)
		task_send_result(t, code);
	return code;
}
