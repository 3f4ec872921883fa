/*
 * error.c - per-thread last error, code names, byte strings.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pmclient_int.h"

#define PMC_MSG_MAX	512

static _Thread_local int last_code;
static _Thread_local char last_msg[PMC_MSG_MAX];

static const char *const names[] = {
	"success",				/* PM_OK */
	"timed out",				/* PM_ETIMEDOUT */
	"queue empty",				/* PM_EEMPTY */
	"queue full",				/* PM_EFULL */
	"closed",				/* PM_ECLOSED */
	"task failed",				/* PM_ETASK */
	"worker died",				/* PM_EWORKER */
	"cancelled",				/* PM_ECANCELLED */
	"permission denied",			/* PM_EPERM */
	"no such module, function, program or queue", /* PM_ENOENT */
	"already exists",			/* PM_EEXIST */
	"invalid argument",			/* PM_EINVAL */
	"out of memory",			/* PM_ENOMEM */
	"protocol error",			/* PM_EPROTO */
	"daemon unreachable or connection lost", /* PM_ECONN */
	"limit reached",			/* PM_ELIMIT */
	"not valid in this state",		/* PM_ESTATE */
	"no more results",			/* PM_EDONE */
	"system error",				/* PM_ESYS */
};

const char *
pm_strerror(int code)
{
	if (code > 0 || -code >= (int)(sizeof(names) / sizeof(names[0])))
		return "unknown error";
	return names[-code];
}

int
pm_last_error(void)
{
	return last_code;
}

const char *
pm_last_message(void)
{
	return last_msg[0] ? last_msg : pm_strerror(last_code);
}

void
pmc_set_last(int code, const char *msg)
{
	last_code = code;
	snprintf(last_msg, sizeof(last_msg), "%s", msg ? msg : "");
}

int
pmc_ok(void)
{
	last_code = PM_OK;
	last_msg[0] = '\0';
	return PM_OK;
}

int
pmc_err(int code, const char *fmt, ...)
{
	va_list ap;

	last_code = code;
	va_start(ap, fmt);
	vsnprintf(last_msg, sizeof(last_msg), fmt, ap);
	va_end(ap);
	return code;
}

int
pmc_err_sys(const char *fmt, ...)
{
	va_list ap;
	size_t n;
	int saved = errno;

	last_code = saved == ENOMEM ? PM_ENOMEM : PM_ESYS;
	va_start(ap, fmt);
	vsnprintf(last_msg, sizeof(last_msg), fmt, ap);
	va_end(ap);
	n = strlen(last_msg);
	snprintf(last_msg + n, sizeof(last_msg) - n, ": %s", strerror(saved));
	errno = saved;
	return last_code;
}

int
pmc_code_from_wire(int32_t code)
{
	if (code <= 0 || code > -PM_ESYS)
		return PM_EPROTO;
	return -code;
}

void
pm_bytes_free(pm_bytes *b)
{
	if (b == NULL)
		return;
	free(b->data);
	b->data = NULL;
	b->len = 0;
}
