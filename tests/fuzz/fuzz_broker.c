/*
 * fuzz_broker.c - libFuzzer harness: bytes through a real Unix socket into
 * the broker's request path (accept, authentication, framing, Hello,
 * dispatch, every handler), written in small split writes with the event
 * loop run between them.  No forker runs, so spawns get error replies.
 * The broker must never crash, and must hold no more fds after the client
 * has gone than before it came.
 */
#include <sys/socket.h>
#include <stddef.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pmd.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);


static int
fd_count(void)
{
	DIR *d = opendir("/proc/self/fd");
	int n = 0;

	if (d == NULL)
		return -1;
	while (readdir(d) != NULL)
		n++;
	closedir(d);
	return n;
}

/* An abstract-namespace address: no file for anyone to remove. */
static socklen_t
fuzz_addr(struct sockaddr_un *sun)
{
	memset(sun, 0, sizeof(*sun));
	sun->sun_family = AF_UNIX;
	snprintf(sun->sun_path + 1, sizeof(sun->sun_path) - 1,
	    "pmd-fuzz-%d", (int)getpid());
	return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 +
	    strlen(sun->sun_path + 1));
}

static void
setup(void)
{
	static struct pmd state;
	struct sockaddr_un sun;
	socklen_t len = fuzz_addr(&sun);
	int lfd;

	signal(SIGPIPE, SIG_IGN);
	pmd = &state;
	config_defaults(&pmd->cfg);
	pmd->cfg.log_level = LOG_ERR_;
	log_init(LOG_ERR_ - 1);
	pmd->cfg.max_frame = 1u << 20;
	pmd->cfg.socket = strdup("@pmd-fuzz");
	if (config_finish(&pmd->cfg) == -1)
		abort();
	pmd->forker_fd = pmd->forker_pidfd = -1;
	pmd->drain_fd = -1;
	pmd->euid = geteuid();
	TAILQ_INIT(&pmd->sessions);
	TAILQ_INIT(&pmd->workers);
	if ((lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK,
	    0)) == -1 || bind(lfd, (struct sockaddr *)&sun, len) == -1 ||
	    listen(lfd, SOMAXCONN) == -1)
		abort();
	pmd->listen_fd = lfd;
	if ((pmd->base = event_base_new()) == NULL ||
	    broker_events_init() == -1)
		abort();
}

static int
client_connect(void)
{
	struct sockaddr_un sun;
	socklen_t len = fuzz_addr(&sun);
	int fd, r;

	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) == -1)
		abort();
	do {
		r = connect(fd, (struct sockaddr *)&sun, len);
	} while (r == -1 && errno == EINTR);
	if (r == -1) {
		fprintf(stderr, "fuzz_broker: connect: %s\n", strerror(errno));
		abort();
	}
	fcntl(fd, F_SETFL, O_NONBLOCK);
	return fd;
}

static void
drain(int fd)
{
	char buf[65536];

	while (read(fd, buf, sizeof(buf)) > 0)
		;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int ready;
	size_t off = 0, chunk;
	int fd, before, i;

	if (!ready) {
		setup();
		ready = 1;
	}
	if (size < 1)
		return 0;
	data++;			/* seed metadata byte (fd count for fuzz_wire) */
	size--;
	before = fd_count();
	fd = client_connect();
	event_base_loop(pmd->base, EVLOOP_NONBLOCK);	/* accept */
	while (off < size) {
		/* chunk sizes come from the data too: 1..64 bytes */
		chunk = (size_t)(data[off] % 64) + 1;
		if (chunk > size - off)
			chunk = size - off;
		if (write(fd, data + off, chunk) == -1 && errno != EAGAIN)
			break;
		off += chunk;
		event_base_loop(pmd->base, EVLOOP_NONBLOCK);
		drain(fd);
	}
	close(fd);
	for (i = 0; i < 4; i++)
		event_base_loop(pmd->base, EVLOOP_NONBLOCK);
	/* a fuzzed shutdown (root is always an admin) stops the broker
	 * under test: serve again for the next input */
	if (pmd->stopping) {
		pmd->stopping = 0;
		evtimer_del(pmd->stop_timer);
		event_add(pmd->accept_ev, NULL);
	}
	if (pmd->nsessions != 0 || fd_count() != before) {
		fprintf(stderr, "fuzz_broker: %d sessions, fds %d -> %d\n",
		    pmd->nsessions, before, fd_count());
		abort();
	}
	return 0;
}
