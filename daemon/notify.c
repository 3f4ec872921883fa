/*
 * notify.c - the systemd service protocol: readiness and status to
 * $NOTIFY_SOCKET, sockets from $LISTEN_FDS, the watchdog period.  Written
 * here rather than linked from libsystemd, which would map libgcrypt, zstd,
 * lzma and more into the forker and so into every worker (~125 KB PSS).
 */
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/un.h>

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pmd.h"

#define NOTIFY_MAX	1024

static long
env_number(const char *name)
{
	const char *s = getenv(name);
	char *end;
	long v;

	if (s == NULL || *s == '\0')
		return -1;
	errno = 0;
	v = strtol(s, &end, 10);
	if (errno != 0 || *end != '\0' || v < 0)
		return -1;
	return v;
}

/* The variables are for us only if they name our pid. */
static int
env_for_us(const char *pidvar)
{
	long pid = env_number(pidvar);

	return pid > 0 && (pid_t)pid == getpid();
}

void
notify(const char *fmt, ...)
{
	const char *path = getenv("NOTIFY_SOCKET");
	struct sockaddr_un sun;
	char msg[NOTIFY_MAX];
	socklen_t len;
	va_list ap;
	size_t plen;
	int fd, n;

	if (path == NULL || (path[0] != '/' && path[0] != '@') ||
	    (plen = strlen(path)) >= sizeof(sun.sun_path))
		return;
	va_start(ap, fmt);
	n = vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(msg))
		return;
	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	memcpy(sun.sun_path, path, plen);
	if (path[0] == '@')
		sun.sun_path[0] = '\0';		/* abstract namespace */
	len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + plen);
	if ((fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0)) == -1)
		return;
	if (sendto(fd, msg, (size_t)n, MSG_NOSIGNAL, (struct sockaddr *)&sun,
	    len) == -1)
		log_debug("%s: %s: %s", __func__, path, strerror(errno));
	close(fd);
}

/* Number of sockets passed by the service manager (from fd 3), or 0. */
int
notify_listen_fds(void)
{
	long n;

	if (!env_for_us("LISTEN_PID") || (n = env_number("LISTEN_FDS")) <= 0)
		return 0;
	return n > 64 ? 64 : (int)n;
}

/* Watchdog period in microseconds, or 0 when none is asked of us. */
uint64_t
notify_watchdog_usec(void)
{
	long usec = env_number("WATCHDOG_USEC");

	if (usec <= 0)
		return 0;
	if (getenv("WATCHDOG_PID") != NULL && !env_for_us("WATCHDOG_PID"))
		return 0;
	return (uint64_t)usec;
}
