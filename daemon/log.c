/*
 * log.c - logging to stderr, which journald or the caller collects.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pmd.h"

static int log_level = LOG_WARN_;
static const char *const level_names[] = { "error", "warn", "info", "debug" };

void
log_init(int level)
{
	log_level = level;
}

void
log_setlevel(int level)
{
	log_level = level;
}

int
log_level_parse(const char *s)
{
	int i;

	for (i = 0; i < 4; i++)
		if (strcmp(s, level_names[i]) == 0)
			return i;
	return -1;
}

static void
vlog(int level, const char *fmt, va_list ap)
{
	char buf[1024];
	int saved = errno;

	if (level > log_level)
		return;
	vsnprintf(buf, sizeof(buf), fmt, ap);
	/* one write per line keeps lines whole among processes */
	dprintf(STDERR_FILENO, "pmd[%d]: %s: %s\n", (int)getpid(),
	    level_names[level], buf);
	errno = saved;
}

#define LOGFN(name, level)				\
void							\
name(const char *fmt, ...)				\
{							\
	va_list ap;					\
							\
	va_start(ap, fmt);				\
	vlog(level, fmt, ap);				\
	va_end(ap);					\
}

LOGFN(log_err, LOG_ERR_)
LOGFN(log_warn, LOG_WARN_)
LOGFN(log_info, LOG_INFO_)
LOGFN(log_debug, LOG_DEBUG_)

void
fatal(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vlog(LOG_ERR_, fmt, ap);
	va_end(ap);
	exit(1);
}
