/*
 * conn.c - connecting to pmd (discovery, private start), Hello, and the
 * request/reply machinery every blocking call is built from.
 */
#include <sys/types.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pmclient_int.h"

#include "paths.h"		/* PMC_PMD_PATH: the installed pmd (Makefile) */
#define PMC_HELLO_TIMEOUT 10.0

/* The private pmd this process started, reused by later pm_connect(NULL). */
static pthread_mutex_t private_lock = PTHREAD_MUTEX_INITIALIZER;
static char private_addr[sizeof(((struct sockaddr_un *)0)->sun_path)];

/* Every live connection, so that a forked worker lets go of them all. */
static pthread_mutex_t conns_lock = PTHREAD_MUTEX_INITIALIZER;
static pm_conn *conns;

static int	conn_handle_frame(pm_conn *, struct pm_frame *);
static int	conn_process(pm_conn *);
static void	watch_free_all(pm_conn *);
static void	sub_notify(pm_conn *, int event, const void *ev);
static void	sub_free_all(pm_conn *);

/* ---- socket and hello ---- */

static int
unix_connect(const char *path)
{
	struct sockaddr_un sun;
	int fd, r;

	if (strlen(path) >= sizeof(sun.sun_path)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	strcpy(sun.sun_path, path);
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) == -1)
		return -1;
	do {
		r = connect(fd, (struct sockaddr *)&sun, sizeof(sun));
	} while (r == -1 && errno == EINTR);
	if (r == -1 || fcntl(fd, F_SETFL, O_NONBLOCK) == -1) {
		r = errno;
		close(fd);
		errno = r;
		return -1;
	}
	return fd;
}

static const char *
prog_name(void)
{
	extern char *program_invocation_short_name;

	return program_invocation_short_name ? program_invocation_short_name :
	    "";
}

static int
conn_hello(pm_conn *c)
{
	Pm__Hello h = PM__HELLO__INIT;
	Pm__HelloReply *r;
	struct pmc_pending *p;
	int rc;

	h.version = PM_PROTOCOL_VERSION;
	h.name = (char *)(uintptr_t)prog_name();
	h.pid = getpid();
	rc = pmc_call(c, PM__TYPE__T_HELLO, &h.base, NULL, 0,
	    &pm__hello_reply__descriptor, &p, PMC_HELLO_TIMEOUT);
	if (rc != PM_OK)
		return rc;
	if ((r = (Pm__HelloReply *)p->msg) == NULL) {
		pmc_pending_free(c, p);
		return pmc_err(PM_EPROTO, "pmd answered hello without a reply");
	}
	c->daemon_pid = r->pid;
	c->max_frame = r->max_frame;
	pmc_pending_free(c, p);
	return PM_OK;
}

static pm_conn *
conn_open(const char *path)
{
	pm_conn *c;
	int fd;

	if ((fd = unix_connect(path)) == -1) {
		pmc_err(PM_ECONN, "cannot connect to %s: %s", path,
		    strerror(errno));
		return NULL;
	}
	if ((c = calloc(1, sizeof(*c))) == NULL ||
	    (c->address = strdup(path)) == NULL) {
		free(c);
		close(fd);
		pmc_err(PM_ENOMEM, "out of memory");
		return NULL;
	}
	c->fd = fd;
	c->next_id = 1;
	c->sock_events = EPOLLIN;
	if ((c->epfd = epoll_create1(EPOLL_CLOEXEC)) == -1) {
		close(fd);
		free(c->address);
		free(c);
		pmc_err_sys("epoll_create1");
		return NULL;
	}
	{
		struct epoll_event ev;

		memset(&ev, 0, sizeof(ev));
		ev.events = EPOLLIN;
		ev.data.ptr = NULL;	/* NULL: the pmd socket */
		epoll_ctl(c->epfd, EPOLL_CTL_ADD, fd, &ev);
	}
	wire_in_init(&c->in, PM_WIRE_MAX_FRAME);
	c->in.keep_lost = 1;	/* a reply whose fds were lost fails alone */
	wire_out_init(&c->out);
	pthread_mutex_lock(&conns_lock);
	if ((c->all_next = conns) != NULL)
		conns->all_prev = c;
	conns = c;
	pthread_mutex_unlock(&conns_lock);
	if (conn_hello(c) != PM_OK) {
		int code = pm_last_error();
		char msg[256];

		snprintf(msg, sizeof(msg), "%s", pm_last_message());
		pm_disconnect(c);
		pmc_set_last(code, msg);
		return NULL;
	}
	pmc_ok();
	return c;
}

/* ---- private pmd ---- */

/* What discovery tried and why each failed, for the final message. */
struct tried {
	char	 buf[PMC_TRIED_MAX];
	size_t	 len;
};

static void __attribute__((format(printf, 2, 3)))
tried_add(struct tried *t, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (t->len >= sizeof(t->buf) - 1)
		return;
	if (t->len > 0)
		t->buf[t->len++] = ';', t->buf[t->len++] = ' ';
	va_start(ap, fmt);
	n = vsnprintf(t->buf + t->len, sizeof(t->buf) - t->len, fmt, ap);
	va_end(ap);
	if (n > 0)
		t->len += (size_t)n < sizeof(t->buf) - t->len ? (size_t)n :
		    sizeof(t->buf) - t->len - 1;
}

/* $PMD_BIN, else the pmd this library was installed with, else "pmd" in
 * $PATH.  Notes in t why a candidate was passed over. */
static const char *
pmd_binary(struct tried *t)
{
	const char *b = getenv("PMD_BIN");

	if (b != NULL && *b != '\0')
		return b;
	if (access(PMC_PMD_PATH, X_OK) == 0)
		return PMC_PMD_PATH;
	tried_add(t, "installed pmd %s: %s", PMC_PMD_PATH, strerror(errno));
	return "pmd";
}

static void
private_exec(const char *bin, const char *sock, int readyfd)
{
	char fdarg[16];
	sigset_t all;
	int fd, sig;

	setsid();
	if (readyfd != 3) {
		if (dup2(readyfd, 3) == -1)
			_exit(127);
		readyfd = 3;
	}
	fcntl(readyfd, F_SETFD, 0);
	if ((fd = open("/dev/null", O_RDWR)) != -1) {
		dup2(fd, 0);
		dup2(fd, 1);
		if (fd > 3)
			close(fd);
	}
	close_range(4, ~0U, 0);
	for (sig = 1; sig < NSIG; sig++)
		signal(sig, SIG_DFL);
	sigemptyset(&all);
	sigprocmask(SIG_SETMASK, &all, NULL);
	unsetenv("LISTEN_FDS");
	unsetenv("LISTEN_PID");
	unsetenv("LISTEN_FDNAMES");
	unsetenv("NOTIFY_SOCKET");
	unsetenv("WATCHDOG_USEC");
	unsetenv("WATCHDOG_PID");
	snprintf(fdarg, sizeof(fdarg), "%d", readyfd);
	execlp(bin, "pmd", "--private", "--socket", sock, "--ready-fd", fdarg,
	    (char *)NULL);
	/* tell the waiting parent why: "EXEC <errno>" */
	dprintf(readyfd, "EXEC %d\n", errno);
	_exit(127);
}

static int
private_dir(char *dir, size_t len)
{
	const char *base = getenv("XDG_RUNTIME_DIR");
	struct stat st;

	if (base == NULL || *base == '\0' || stat(base, &st) == -1 ||
	    !S_ISDIR(st.st_mode) || access(base, W_OK) == -1)
		base = "/tmp";
	if ((size_t)snprintf(dir, len, "%s/pmd-private.XXXXXX", base) >= len)
		return -1;
	return mkdtemp(dir) == NULL ? -1 : 0;
}

/* Why a private pmd gave no READY: buf is what it wrote before EOF. */
static void
private_why(struct tried *t, const char *bin, const char *buf, int timedout)
{
	int err;

	if (sscanf(buf, "EXEC %d", &err) == 1)
		tried_add(t, "private pmd %s: cannot execute: %s", bin,
		    strerror(err));
	else if (timedout)
		tried_add(t, "private pmd %s: not ready in %.0f s", bin,
		    PMC_START_TIMEOUT);
	else
		tried_add(t, "private pmd %s: exited before it was ready "
		    "(not a pmd, or see its log)", bin);
}

/* Starts a private pmd; on success its socket path is in private_addr. */
static int
private_start(struct tried *t)
{
	char dir[sizeof(private_addr)], sock[sizeof(private_addr)];
	char buf[16];
	const char *bin = pmd_binary(t);
	pid_t pid;
	ssize_t n;
	size_t got = 0;
	int p[2], st, r;
	int64_t deadline;

	if (private_dir(dir, sizeof(dir) - 9) == -1)
		return pmc_err_sys("private pmd: cannot make a socket directory");
	if ((size_t)snprintf(sock, sizeof(sock), "%s/pmd.sock", dir) >=
	    sizeof(sock)) {
		rmdir(dir);
		return pmc_err(PM_EINVAL, "private pmd: socket path too long");
	}
	if (pipe2(p, O_CLOEXEC) == -1) {
		rmdir(dir);
		return pmc_err_sys("private pmd: pipe");
	}
	if ((pid = fork()) == -1) {
		close(p[0]);
		close(p[1]);
		rmdir(dir);
		return pmc_err_sys("private pmd: fork");
	}
	if (pid == 0) {
		close(p[0]);
		if (fork() == 0)
			private_exec(bin, sock, p[1]);
		_exit(0);
	}
	close(p[1]);
	while (waitpid(pid, &st, 0) == -1 && errno == EINTR)
		;
	deadline = wire_deadline(PMC_START_TIMEOUT);
	r = 1;
	while (got < 6) {
		r = wire_wait(p[0], POLLIN, deadline);
		if (r <= 0)
			break;
		n = read(p[0], buf + got, sizeof(buf) - 1 - got);
		if (n == -1 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	close(p[0]);
	buf[got] = '\0';
	if (strncmp(buf, "READY\n", 6) != 0) {
		rmdir(dir);
		private_why(t, bin, buf, r == 0);
		return pmc_err(PM_ECONN, "no pmd is running and none could be "
		    "started: %s", t->buf);
	}
	memcpy(private_addr, sock, sizeof(sock));
	return PM_OK;
}

/* conn_open(path), noting in t why it failed. */
static pm_conn *
discover_try(struct tried *t, const char *path)
{
	pm_conn *c;

	if ((c = conn_open(path)) == NULL)
		tried_add(t, "%s", pm_last_message());
	return c;
}

/*
 * $PMD_SOCKET alone when set (an error if it does not answer); else the
 * system socket, the user socket, and a private pmd.  A failure names
 * every candidate and why it failed.
 */
static pm_conn *
conn_discover(int flags)
{
	const char *env = getenv("PMD_SOCKET");
	const char *xdg = getenv("XDG_RUNTIME_DIR");
	struct tried t = { .len = 0 };
	char path[PATH_MAX];
	pm_conn *c;

	if (env != NULL && *env != '\0') {
		if ((c = conn_open(env)) == NULL) {
			tried_add(&t, "%s", pm_last_message());
			pmc_err(PM_ECONN, "$PMD_SOCKET=%s does not answer: %s",
			    env, t.buf);
		}
		return c;
	}
	if ((c = discover_try(&t, PMC_SYSTEM_SOCKET)) != NULL)
		return c;
	if (xdg == NULL || *xdg == '\0')
		tried_add(&t, "no user socket ($XDG_RUNTIME_DIR unset)");
	else if ((size_t)snprintf(path, sizeof(path), "%s/pmd/pmd.sock",
	    xdg) < sizeof(path) &&
	    (c = discover_try(&t, path)) != NULL)
		return c;
	if (flags & PM_CONNECT_NOSTART) {
		pmc_err(PM_ECONN, "no pmd is running: %s", t.buf);
		return NULL;
	}
	pthread_mutex_lock(&private_lock);
	c = NULL;
	if (private_addr[0] != '\0')
		c = conn_open(private_addr);
	if (c == NULL && private_start(&t) == PM_OK)
		c = conn_open(private_addr);
	pthread_mutex_unlock(&private_lock);
	return c;
}

pm_conn *
pm_connect_flags(const char *address, int flags)
{
	if (flags & ~PM_CONNECT_NOSTART) {
		pmc_err(PM_EINVAL, "unknown connect flags %#x", flags);
		return NULL;
	}
	if (address != NULL)
		return conn_open(address);
	return conn_discover(flags);
}

pm_conn *
pm_connect(const char *address)
{
	return pm_connect_flags(address, 0);
}

void
pm_disconnect(pm_conn *c)
{
	struct pmc_pending *p;

	if (c == NULL)
		return;
	pthread_mutex_lock(&conns_lock);
	if (c->all_prev != NULL)
		c->all_prev->all_next = c->all_next;
	else
		conns = c->all_next;
	if (c->all_next != NULL)
		c->all_next->all_prev = c->all_prev;
	pthread_mutex_unlock(&conns_lock);
	sub_notify(c, PMC_EV_DETACH, NULL);
	while ((p = c->pending) != NULL)
		pmc_pending_free(c, p);
	if (c->fd >= 0)
		close(c->fd);
	if (c->epfd >= 0)
		close(c->epfd);
	watch_free_all(c);
	sub_free_all(c);
	wire_in_free(&c->in);
	wire_out_free(&c->out);
	free(c->address);
	free(c);
}

/* An epoll fd: readable when the socket or any pool channel is. */
int
pm_conn_fd(pm_conn *c)
{
	if (c == NULL)
		return pmc_err(PM_EINVAL, "no connection");
	return c->epfd;
}

const char *
pm_conn_address(pm_conn *c)
{
	return c ? c->address : NULL;
}

pid_t
pm_daemon_pid(pm_conn *c)
{
	return c ? c->daemon_pid : 0;
}

int
pm_cpu_count(void)
{
	cpu_set_t set;
	long n;

	if (sched_getaffinity(0, sizeof(set), &set) == 0 && CPU_COUNT(&set) > 0)
		return CPU_COUNT(&set);
	n = sysconf(_SC_NPROCESSORS_ONLN);
	return n > 0 ? (int)n : 1;
}

/* ---- requests ---- */

static void
conn_lost_code(pm_conn *c, int code, const char *why)
{
	struct pmc_pending *p;

	if (c->lost)
		return;
	c->lost = 1;
	c->lost_code = code;
	snprintf(c->lost_why, sizeof(c->lost_why), "%s", why);
	for (p = c->pending; p != NULL; p = p->next) {
		if (p->done)
			continue;
		p->done = 1;
		p->code = code;
		free(p->message);
		p->message = strdup(why);
	}
	sub_notify(c, PMC_EV_LOST, NULL);
}

static void
conn_lost(pm_conn *c, const char *why)
{
	conn_lost_code(c, PM_ECONN, why);
}

/*
 * A write to pmd failed.  pmd may have said why before it closed (a
 * refusal at accept: not served, too many clients), so what it sent is
 * read first; the error set is its refusal, else the write's.
 */
static int
conn_write_failed(pm_conn *c)
{
	int err = errno;

	while (!c->lost && wire_in_read(&c->in, c->fd) > 0)
		conn_process(c);
	if (!c->lost) {
		conn_lost(c, "connection to pmd lost");
		return pmc_err(PM_ECONN, "connection to pmd lost: %s",
		    strerror(err));
	}
	return pmc_err(c->lost_code, "%s", c->lost_why);
}

static struct pmc_pending *
conn_send(pm_conn *c, uint32_t type, const ProtobufCMessage *req,
    const int *fds, int nfds, const ProtobufCMessageDescriptor *want,
    int flush)
{
	struct pmc_pending *p;
	int i;

	if (c->lost) {
		for (i = 0; i < nfds; i++)
			close(fds[i]);
		pmc_err(PM_ECONN, "connection to pmd lost");
		return NULL;
	}
	if ((p = calloc(1, sizeof(*p))) == NULL) {
		for (i = 0; i < nfds; i++)
			close(fds[i]);
		pmc_err(PM_ENOMEM, "out of memory");
		return NULL;
	}
	p->id = c->next_id++;
	if (c->next_id == 0)
		c->next_id = 1;
	p->want = want;
	if (wire_out_frame(&c->out, type, p->id, req, fds, nfds) == -1) {
		free(p);
		pmc_err_sys("cannot queue request");
		return NULL;
	}
	if (flush && wire_out_flush(&c->out, c->fd) == -1) {
		free(p);
		conn_write_failed(c);
		return NULL;
	}
	p->next = c->pending;
	c->pending = p;
	return p;
}

struct pmc_pending *
pmc_send(pm_conn *c, uint32_t type, const ProtobufCMessage *req,
    const int *fds, int nfds, const ProtobufCMessageDescriptor *want)
{
	return conn_send(c, type, req, fds, nfds, want, 1);
}

struct pmc_pending *
pmc_send_later(pm_conn *c, uint32_t type, const ProtobufCMessage *req,
    const ProtobufCMessageDescriptor *want)
{
	return conn_send(c, type, req, NULL, 0, want, 0);
}

int
pmc_flush(pm_conn *c)
{
	if (c->lost)
		return pmc_err(PM_ECONN, "connection to pmd lost");
	if (wire_out_flush(&c->out, c->fd) == -1)
		return conn_write_failed(c);
	return PM_OK;
}

void
pmc_pending_free(pm_conn *c, struct pmc_pending *p)
{
	struct pmc_pending **pp;
	int i;

	for (pp = &c->pending; *pp != NULL; pp = &(*pp)->next)
		if (*pp == p) {
			*pp = p->next;
			break;
		}
	if (p->msg != NULL)
		protobuf_c_message_free_unpacked(p->msg, NULL);
	for (i = 0; i < p->nfds; i++)
		if (p->fds[i] >= 0)
			close(p->fds[i]);
	free(p->message);
	free(p);
}

static int
conn_reply_fill(struct pmc_pending *p, struct pm_frame *f)
{
	Pm__Error *e;
	int i;

	p->done = 1;
	p->type = f->type;
	if (f->fds_lost) {
		p->code = PM_ESYS;
		p->message = strdup("out of file descriptors: the fds of "
		    "pmd's reply were not received");
		errno = EMFILE;
		return 0;
	}
	if (f->type == PM__TYPE__T_ERROR) {
		e = pm__error__unpack(NULL, f->len, f->data);
		p->code = e ? pmc_code_from_wire(e->code) : PM_EPROTO;
		p->message = strdup(e && e->message ? e->message :
		    "malformed error reply");
		if (e != NULL && e->code == PM__CODE__C_SYS && e->sys_errno)
			errno = e->sys_errno;
		if (e != NULL)
			pm__error__free_unpacked(e, NULL);
		return 0;
	}
	if (f->type == PM__TYPE__T_OK || p->want == NULL) {
		p->code = PM_OK;
	} else {
		p->msg = protobuf_c_message_unpack(p->want, NULL, f->len,
		    f->data);
		if (p->msg == NULL) {
			p->code = PM_EPROTO;
			p->message = strdup("malformed reply from pmd");
			return 0;
		}
		p->code = PM_OK;
	}
	for (i = 0; i < f->nfds; i++)
		p->fds[i] = wire_frame_take(f, i);
	p->nfds = f->nfds;
	return 0;
}

static int
conn_reply(pm_conn *c, struct pm_frame *f)
{
	struct pmc_pending *p;

	for (p = c->pending; p != NULL; p = p->next)
		if (p->id == f->id && !p->done)
			break;
	if (p == NULL)
		return 0;	/* abandoned request: its fds are closed */
	conn_reply_fill(p, f);
	if (p->done_fn != NULL)		/* the pool's: may free p */
		p->done_fn(c, p, p->done_ud);
	return 0;
}

static int
conn_handle_frame(pm_conn *c, struct pm_frame *f)
{
	Pm__Exited *ev;

	if (f->id != 0)
		return conn_reply(c, f);
	switch (f->type) {
	case PM__TYPE__T_ERROR: {
		/* connection-level: refused, or a protocol error; pmd closes */
		Pm__Error *e = pm__error__unpack(NULL, f->len, f->data);
		char why[256];

		snprintf(why, sizeof(why), "pmd: %s", e && e->message ?
		    e->message : "connection refused");
		conn_lost_code(c, e ? pmc_code_from_wire(e->code) : PM_ECONN,
		    why);
		if (e != NULL)
			pm__error__free_unpacked(e, NULL);
		return 0;
	}
	case PM__TYPE__T_EXITED:
		if ((ev = pm__exited__unpack(NULL, f->len, f->data)) == NULL)
			return -1;
		sub_notify(c, PMC_EV_EXITED, ev);
		pm__exited__free_unpacked(ev, NULL);
		return 0;
	default:
		return 0;	/* events from a newer pmd are ignored */
	}
}

/* Handle every complete frame buffered. */
static int
conn_process(pm_conn *c)
{
	struct pm_frame f;
	const char *why;
	int r;

	for (;;) {
		r = wire_in_next(&c->in, &f, &why);
		if (r == 0)
			return PM_OK;
		if (r == -1) {
			conn_lost(c, why);
			return pmc_err(PM_EPROTO, "from pmd: %s", why);
		}
		r = conn_handle_frame(c, &f);
		wire_frame_close(&f);
		if (r == -1) {
			conn_lost(c, "malformed event");
			return pmc_err(PM_EPROTO, "malformed event from pmd");
		}
	}
}

/* ---- subscribers: objects told of the connection's events ---- */

struct pmc_sub {
	pmc_sub_fn	*fn;
	void		*ud;
	int		 dead;
	struct pmc_sub	*next;
};

struct pmc_sub *
pmc_sub_add(pm_conn *c, pmc_sub_fn *fn, void *ud)
{
	struct pmc_sub *s;

	if ((s = calloc(1, sizeof(*s))) == NULL) {
		pmc_err(PM_ENOMEM, "out of memory");
		return NULL;
	}
	s->fn = fn;
	s->ud = ud;
	s->next = c->subs;
	c->subs = s;
	return s;
}

static void
sub_sweep(pm_conn *c)
{
	struct pmc_sub **pp, *s;

	if (!c->sub_dead || c->in_notify)
		return;
	for (pp = &c->subs; (s = *pp) != NULL;) {
		if (s->dead) {
			*pp = s->next;
			free(s);
		} else
			pp = &s->next;
	}
	c->sub_dead = 0;
}

/* Safe from a callback: freed once no notification runs. */
void
pmc_sub_del(pm_conn *c, struct pmc_sub *s)
{
	if (s == NULL)
		return;
	s->dead = 1;
	c->sub_dead = 1;
	sub_sweep(c);
}

void *
pmc_sub_find(pm_conn *c, pmc_sub_fn *fn)
{
	struct pmc_sub *s;

	for (s = c->subs; s != NULL; s = s->next)
		if (s->fn == fn && !s->dead)
			return s->ud;
	return NULL;
}

static void
sub_notify(pm_conn *c, int event, const void *ev)
{
	struct pmc_sub *s;

	c->in_notify++;
	for (s = c->subs; s != NULL; s = s->next)
		if (!s->dead)
			s->fn(c, event, ev, s->ud);
	c->in_notify--;
	if (event == PMC_EV_DETACH)
		for (s = c->subs; s != NULL; s = s->next) {
			s->dead = 1;
			c->sub_dead = 1;
		}
	sub_sweep(c);
}

static void
sub_free_all(pm_conn *c)
{
	struct pmc_sub *s;

	while ((s = c->subs) != NULL) {
		c->subs = s->next;
		free(s);
	}
}

/* ---- watchers: other fds serviced by every turn (pool channels) ---- */

struct pmc_watch {
	int		 fd;
	unsigned	 events;
	pmc_watch_fn	*fn;
	void		*ud;
	int		 dead;
	struct pmc_watch *next;
};

int
pmc_watch_add(pm_conn *c, int fd, unsigned events, pmc_watch_fn *fn,
    void *ud)
{
	struct epoll_event ev;
	struct pmc_watch *w;

	if ((w = calloc(1, sizeof(*w))) == NULL)
		return pmc_err(PM_ENOMEM, "out of memory");
	w->fd = fd;
	w->events = events;
	w->fn = fn;
	w->ud = ud;
	memset(&ev, 0, sizeof(ev));
	ev.events = events;
	ev.data.ptr = w;
	if (epoll_ctl(c->epfd, EPOLL_CTL_ADD, fd, &ev) == -1) {
		free(w);
		return pmc_err_sys("epoll_ctl");
	}
	w->next = c->watches;
	c->watches = w;
	return PM_OK;
}

static struct pmc_watch *
watch_find(pm_conn *c, int fd)
{
	struct pmc_watch *w;

	for (w = c->watches; w != NULL; w = w->next)
		if (w->fd == fd && !w->dead)
			return w;
	return NULL;
}

int
pmc_watch_mod(pm_conn *c, int fd, unsigned events)
{
	struct epoll_event ev;
	struct pmc_watch *w;

	if ((w = watch_find(c, fd)) == NULL)
		return pmc_err(PM_EINVAL, "fd %d is not watched", fd);
	if (w->events == events)
		return PM_OK;
	memset(&ev, 0, sizeof(ev));
	ev.events = events;
	ev.data.ptr = w;
	if (epoll_ctl(c->epfd, EPOLL_CTL_MOD, fd, &ev) == -1)
		return pmc_err_sys("epoll_ctl");
	w->events = events;
	return PM_OK;
}

/* Stops watching fd (before the caller closes it).  Safe from a callback. */
void
pmc_watch_del(pm_conn *c, int fd)
{
	struct pmc_watch *w;

	if ((w = watch_find(c, fd)) == NULL)
		return;
	epoll_ctl(c->epfd, EPOLL_CTL_DEL, fd, NULL);
	w->dead = 1;
	c->watch_dead = 1;
}

static void
watch_sweep(pm_conn *c)
{
	struct pmc_watch **pp, *w;

	if (!c->watch_dead || c->in_turn)
		return;
	for (pp = &c->watches; (w = *pp) != NULL;) {
		if (w->dead) {
			*pp = w->next;
			free(w);
		} else
			pp = &w->next;
	}
	c->watch_dead = 0;
}

static void
watch_free_all(pm_conn *c)
{
	struct pmc_watch *w;

	while ((w = c->watches) != NULL) {
		c->watches = w->next;
		free(w);
	}
}

/* Keep EPOLLOUT on the socket only while output is queued. */
static void
conn_interest(pm_conn *c)
{
	struct epoll_event ev;
	unsigned want = EPOLLIN | (wire_out_pending(&c->out) ? EPOLLOUT : 0);

	if (want == c->sock_events)
		return;
	memset(&ev, 0, sizeof(ev));
	ev.events = want;
	ev.data.ptr = NULL;
	if (epoll_ctl(c->epfd, EPOLL_CTL_MOD, c->fd, &ev) == 0)
		c->sock_events = want;
}

static int
conn_socket_ready(pm_conn *c, unsigned events)
{
	ssize_t n;

	if (events & EPOLLOUT) {
		if (wire_out_flush(&c->out, c->fd) == -1) {
			conn_lost(c, "connection to pmd lost");
			return pmc_err(PM_ECONN, "connection to pmd lost");
		}
	}
	if (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
		n = wire_in_read(&c->in, c->fd);
		if (n == 0 || (n == -1 && errno != EAGAIN)) {
			conn_lost(c, "connection to pmd lost");
			return pmc_err(PM_ECONN, "connection to pmd lost");
		}
		return conn_process(c);
	}
	return PM_OK;
}

/*
 * One turn of the connection: wait until the deadline for the socket,
 * a watched fd or extra_fd to be ready, then move bytes and run handlers.
 * Returns 1 when extra_fd is readable, PM_OK after progress,
 * PM_ETIMEDOUT when the deadline passed, PM_ECONN when the link is gone.
 */
static int
conn_turn(pm_conn *c, int extra_fd, int64_t deadline)
{
	struct epoll_event evs[PMC_TURN_EVENTS], xev;
	struct pmc_watch *w;
	int64_t left;
	int ms, n, i, r = PM_OK, extra = 0;

	if (c->lost)
		return pmc_err(PM_ECONN, "connection to pmd lost");
	conn_interest(c);
	if (deadline < 0)
		ms = -1;
	else {
		left = deadline - wire_now_ns();
		ms = left <= 0 ? 0 : (int)((left + 999999) / 1000000);
	}
	if (extra_fd >= 0) {
		memset(&xev, 0, sizeof(xev));
		xev.events = EPOLLIN;
		xev.data.ptr = &c->epfd;	/* marks extra_fd */
		if (epoll_ctl(c->epfd, EPOLL_CTL_ADD, extra_fd, &xev) == -1)
			return pmc_err_sys("epoll_ctl");
	}
	n = epoll_wait(c->epfd, evs, PMC_TURN_EVENTS, ms);
	if (extra_fd >= 0)
		epoll_ctl(c->epfd, EPOLL_CTL_DEL, extra_fd, NULL);
	if (n == -1 && errno == EINTR)
		return PM_OK;
	if (n == -1)
		return pmc_err_sys("epoll_wait");
	if (n == 0)
		return deadline >= 0 && wire_now_ns() >= deadline ?
		    PM_ETIMEDOUT : PM_OK;
	c->in_turn++;
	for (i = 0; i < n; i++) {
		if (evs[i].data.ptr == NULL) {
			if ((r = conn_socket_ready(c, evs[i].events)) != PM_OK)
				break;
		} else if (evs[i].data.ptr == &c->epfd) {
			extra = 1;
		} else {
			w = evs[i].data.ptr;
			if (!w->dead)
				w->fn(c, w->fd, evs[i].events, w->ud);
		}
	}
	c->in_turn--;
	watch_sweep(c);
	if (r != PM_OK)
		return r;
	return extra ? 1 : PM_OK;
}

int
pmc_pump(pm_conn *c, int64_t deadline)
{
	return conn_turn(c, -1, deadline);
}

int
pmc_wait_fd(pm_conn *c, int fd, int64_t deadline)
{
	int r;

	for (;;) {
		r = conn_turn(c, fd, deadline);
		if (r == 1)
			return 1;
		if (r == PM_ETIMEDOUT)
			return 0;
		if (r != PM_OK)
			return r;
	}
}

int
pmc_wait(pm_conn *c, struct pmc_pending *p, int64_t deadline)
{
	int r;

	while (!p->done) {
		r = conn_turn(c, -1, deadline);
		if (r == PM_ETIMEDOUT)
			return pmc_err(PM_ETIMEDOUT, "no reply from pmd in time");
		if (r != PM_OK && !p->done)
			return r;
	}
	if (p->code != PM_OK)
		return pmc_err(p->code, "%s", p->message ? p->message :
		    pm_strerror(p->code));
	return pmc_ok();
}

int
pmc_call(pm_conn *c, uint32_t type, const ProtobufCMessage *req,
    const int *fds, int nfds, const ProtobufCMessageDescriptor *want,
    struct pmc_pending **out, double timeout)
{
	struct pmc_pending *p;
	int rc;

	*out = NULL;
	if ((p = pmc_send(c, type, req, fds, nfds, want)) == NULL)
		return pm_last_error();
	rc = pmc_wait(c, p, wire_deadline(timeout));
	if (rc != PM_OK) {
		pmc_pending_free(c, p);
		return rc;
	}
	*out = p;
	return PM_OK;
}

int
pm_dispatch(pm_conn *c, double timeout)
{
	int64_t deadline = wire_deadline(timeout);
	int r;

	if (c == NULL)
		return pmc_err(PM_EINVAL, "no connection");
	r = conn_turn(c, -1, deadline);
	if (r != PM_OK && r != PM_ETIMEDOUT)
		return r;
	/* then whatever else is already there, without blocking */
	while ((r = conn_turn(c, -1, 0)) == PM_OK)
		;
	if (r != PM_ETIMEDOUT)
		return r;
	return pmc_ok();
}

/* ---- fork: a forked worker lets go of its parent's connections ---- */

/* Held across a fork, so the child sees a whole list. */
void
pmc_conns_hold(void)
{
	pthread_mutex_lock(&conns_lock);
}

void
pmc_conns_release(void)
{
	pthread_mutex_unlock(&conns_lock);
}

/*
 * In a forked child, with the list held: every connection of the parent
 * becomes a husk.  Its socket, epoll set and watched fds are the
 * parent's (shared with it): the subscribers close their own fds without
 * a word to pmd or to the epoll set (PMC_EV_FORKED) and are dropped, and
 * the connection closes its copies.  Calls on it fail PM_ECONN;
 * pm_disconnect frees it.
 */
void
pmc_conns_forked(void)
{
	struct pmc_watch *w;
	pm_conn *c;

	for (c = conns; c != NULL; c = c->all_next) {
		sub_notify(c, PMC_EV_FORKED, NULL);
		sub_free_all(c);
		for (w = c->watches; w != NULL; w = w->next)
			w->dead = 1;
		watch_free_all(c);
		if (c->fd >= 0)
			close(c->fd);
		if (c->epfd >= 0)
			close(c->epfd);
		c->fd = c->epfd = -1;
		c->lost = 1;
	}
}
