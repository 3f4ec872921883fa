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

/* Indexed by -code; the README's error table says the same words (a
 * test holds them together). */
static const struct {
	const char	*name;
	const char	*text;
} codes[] = {
	{ "PM_OK",		"success" },
	{ "PM_ETIMEDOUT",	"timed out" },
	{ "PM_EEMPTY",		"queue empty" },
	{ "PM_EFULL",		"queue full" },
	{ "PM_ECLOSED",		"handle or queue closed" },
	{ "PM_ETASK",		"the task reported failure" },
	{ "PM_EWORKER",		"the worker died" },
	{ "PM_ECANCELLED",	"cancelled" },
	{ "PM_EPERM",		"permission denied" },
	{ "PM_ENOENT",		"no such module, function, program or name" },
	{ "PM_EEXIST",		"already exists" },
	{ "PM_EINVAL",		"invalid argument" },
	{ "PM_ENOMEM",		"out of memory" },
	{ "PM_EPROTO",		"protocol error" },
	{ "PM_ECONN",		"daemon unreachable or connection lost" },
	{ "PM_ELIMIT",		"a configured bound was hit" },
	{ "PM_ESTATE",		"not valid in the object's current state" },
	{ "PM_EDONE",		"iterator exhausted" },
	{ "PM_ESYS",		"system error" },
	{ "PM_EOWNERDEAD",	"acquired; its last holder died holding it" },
	{ "PM_EBROKEN",		"the barrier is broken" },
};

#define NCODES	((int)(sizeof(codes) / sizeof(codes[0])))

const char *
pm_strerror(int code)
{
	if (code > 0 || -code >= NCODES)
		return "unknown error";
	return codes[-code].text;
}

const char *
pm_errname(int code)
{
	if (code > 0 || -code >= NCODES)
		return "PM_EUNKNOWN";
	return codes[-code].name;
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
	if (code <= 0 || code > -PM_EBROKEN)
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
