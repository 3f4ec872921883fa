/*
 * check_pipe.c - message pipes (pm_pipe_*): sizes from 0 B to 64 MiB
 * through a worker and back, 2,000 pipelined messages in order, two
 * workers on one pipe, direction, poll and fd agreement, timeouts, the end
 * after draining, sends to a closed peer with SIGPIPE at its default, fds
 * across processes (extras closed, fds the kernel could not install),
 * malformed packets, adoption and arguments; rendezvous through pmd
 * (listen, accept, connect, peer credentials, timeouts, a dying listener,
 * bounds, another uid).
 */
#include <sys/types.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "pmclient.h"
#include "wire.h"

#define WAIT		120.0	/* seconds for anything that should come */
#define PIPELINED	2000
#define MAX_ENDS	8
#define NOBODY		65534

static struct th_pmd pmd;
static pm_conn *conn;
static struct th_base baseline;	/* fds before connecting; pmd's then */
static char pmod[PATH_MAX];	/* pipetasks.so */
static pm_pipe *ends[MAX_ENDS];	/* freed by teardown if a check failed */

/* A pmd with the settings conf (NULL: none) and a connection to it. */
static void
start_pmd(const char *conf)
{
	struct th_pmd_opts o = { .conf = conf };

	signal(SIGPIPE, SIG_DFL);
	snprintf(pmod, sizeof(pmod), "%s/tests/pipetasks.so",
	    th_env("PM_BUILD"));
	conn = th_pmd_open(&pmd, &o, &baseline);
}

static void
setup(void)
{
	start_pmd(NULL);
}

static void
teardown(void)
{
	int i;

	for (i = 0; i < MAX_ENDS; i++) {
		pm_pipe_free(ends[i]);
		ends[i] = NULL;
	}
	th_pmd_close(&pmd, &conn, &baseline);
}

static void
keep(pm_pipe *p)
{
	int i;

	for (i = 0; i < MAX_ENDS; i++)
		if (ends[i] == NULL) {
			ends[i] = p;
			return;
		}
	ck_abort_msg("too many pipe ends");
}

static void
mkpipe(pm_pipe **a, pm_pipe **b, int duplex)
{
	int r = pm_pipe_new(a, b, duplex);

	ck_assert_msg(r == PM_OK, "pm_pipe_new: %d %s", r, pm_last_message());
	keep(*a);
	keep(*b);
}

static void
pfree(pm_pipe *p)
{
	int i;

	for (i = 0; i < MAX_ENDS; i++)
		if (ends[i] == p)
			ends[i] = NULL;
	pm_pipe_free(p);
}

/* A worker running fn of pipetasks.so with end as fd 3, arg "3 rest";
 * this process's copy of end is closed. */
static pm_process *
worker(const char *fn, pm_pipe *end, const char *rest)
{
	char arg[128];
	pm_process *w;
	int r;

	snprintf(arg, sizeof(arg), "3%s%s", rest ? " " : "", rest ? rest : "");
	w = pm_process_new(conn, pmod, fn, arg, strlen(arg));
	ck_assert_msg(w != NULL, "pm_process_new: %s", pm_last_message());
	ck_assert_int_eq(pm_process_set_fd(w, 3, pm_pipe_fd(end)), PM_OK);
	r = pm_process_start(w);
	ck_assert_msg(r == PM_OK, "start %s: %d %s", fn, r, pm_last_message());
	pfree(end);
	return w;
}

/* Joins w, which must exit 0; its result (if any) into res. */
static void
joined(pm_process *w, char *res, size_t cap)
{
	pm_bytes out;
	int code = -1;

	ck_assert_int_eq(pm_process_join(w, WAIT), PM_OK);
	ck_assert_int_eq(pm_process_exitcode(w, &code), PM_OK);
	ck_assert_msg(code == 0, "worker exited %d: %s", code,
	    pm_process_error(w) ? pm_process_error(w) : "");
	if (res != NULL) {
		res[0] = '\0';
		if (pm_process_result(w, &out) == PM_OK) {
			snprintf(res, cap, "%.*s", (int)out.len,
			    (char *)out.data);
			pm_bytes_free(&out);
		}
	}
	pm_process_free(w);
}

static void
fill(uint8_t *d, size_t len, unsigned seed)
{
	size_t i;

	for (i = 0; i < len; i++)
		d[i] = (uint8_t)(i * 31 + seed + (i >> 12));
}

static void
recv_ok(pm_pipe *p, pm_bytes *m)
{
	int r = pm_pipe_recv(p, m, WAIT);

	ck_assert_msg(r == PM_OK, "recv: %d %s", r, pm_last_message());
}

static void
expect_msg(pm_pipe *p, const char *want)
{
	pm_bytes m;

	recv_ok(p, &m);
	ck_assert_uint_eq(m.len, strlen(want));
	ck_assert(memcmp(m.data, want, m.len) == 0);
	pm_bytes_free(&m);
}

START_TEST(t_sizes)
{
	static const size_t sizes[] = { 0, 1, (64u << 10) - 1, 64u << 10,
	    (64u << 10) + 1, 1u << 20, 64u << 20 };
	uint8_t *data;
	pm_pipe *a, *b;
	pm_process *w;
	pm_bytes m;
	size_t i;

	mkpipe(&a, &b, 1);
	w = worker("pipe_echo", b, NULL);
	data = malloc(64u << 20);
	ck_assert_ptr_nonnull(data);
	for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		fill(data, sizes[i], (unsigned)i);
		ck_assert_int_eq(pm_pipe_send(a, data, sizes[i]), PM_OK);
		recv_ok(a, &m);
		ck_assert_msg(m.len == sizes[i], "sent %zu, got %zu",
		    sizes[i], m.len);
		ck_assert_ptr_nonnull(m.data);
		ck_assert_msg(memcmp(m.data, data, m.len) == 0,
		    "%zu bytes changed on the way", sizes[i]);
		pm_bytes_free(&m);
	}
	free(data);
	pfree(a);		/* the worker sees the end and exits 0 */
	joined(w, NULL, 0);
}
END_TEST

START_TEST(t_pipelined)
{
	char res[64];
	pm_pipe *a, *b;
	pm_process *w;
	pm_bytes m;
	uint32_t v;

	mkpipe(&a, &b, 1);
	w = worker("pipe_count", b, "2000 1");
	for (v = 0; v < PIPELINED; v++)
		ck_assert_int_eq(pm_pipe_send(a, &v, sizeof(v)), PM_OK);
	for (v = 0; v < PIPELINED; v++) {
		recv_ok(a, &m);
		ck_assert_uint_eq(m.len, sizeof(v));
		ck_assert(memcmp(m.data, &v, sizeof(v)) == 0);
		pm_bytes_free(&m);
	}
	pfree(a);
	joined(w, res, sizeof(res));
	ck_assert_str_eq(res, "ok");
}
END_TEST

/* Two workers on the ends of one one-way pipe: neither is this process. */
START_TEST(t_two_workers)
{
	pm_process *gen, *count;
	pm_pipe *a, *b;
	char res[64];

	mkpipe(&a, &b, 0);
	count = worker("pipe_count", a, "500 0");
	gen = worker("pipe_gen", b, "500");
	joined(gen, NULL, 0);
	joined(count, res, sizeof(res));
	ck_assert_str_eq(res, "ok");
}
END_TEST

START_TEST(t_direction)
{
	pm_pipe *a, *b;
	pm_process *w;
	char res[128];
	pm_bytes m;

	mkpipe(&a, &b, 0);
	ck_assert_int_eq(pm_pipe_send(a, "x", 1), PM_EPERM);
	ck_assert_int_eq(pm_last_error(), PM_EPERM);
	ck_assert_int_eq(pm_pipe_recv(b, &m, 0), PM_EPERM);
	ck_assert_int_eq(pm_pipe_poll(b, 0), PM_EPERM);
	ck_assert_int_eq(pm_pipe_send(b, "y", 1), PM_OK);
	ck_assert_int_eq(pm_pipe_poll(a, 0), 1);
	expect_msg(a, "y");
	/* in a worker, the sending end still only sends */
	w = worker("pipe_probe", b, NULL);
	expect_msg(a, "from worker");
	joined(w, res, sizeof(res));
	ck_assert_str_eq(res, "send=0 recv=-8");
	pfree(a);
	/* and the receiving end only receives */
	mkpipe(&a, &b, 0);
	w = worker("pipe_probe", a, NULL);
	ck_assert_int_eq(pm_pipe_send(b, "to worker", 9), PM_OK);
	joined(w, res, sizeof(res));
	ck_assert_str_eq(res, "send=-8 recv=0:to worker");
	pfree(b);
	/* duplex: both ways */
	mkpipe(&a, &b, 1);
	ck_assert_int_eq(pm_pipe_send(a, "ab", 2), PM_OK);
	ck_assert_int_eq(pm_pipe_send(b, "ba", 2), PM_OK);
	expect_msg(b, "ab");
	expect_msg(a, "ba");
	pfree(a);
	pfree(b);
}
END_TEST

/* pm_pipe_poll(p, 0) is 1 exactly when its fd polls readable. */
static void
agree(pm_pipe *p, int want)
{
	int r = pm_pipe_poll(p, 0), rd = th_readable(pm_pipe_fd(p), 0);

	ck_assert_int_eq(r, want);
	ck_assert_int_eq(rd, want);
}

START_TEST(t_poll_fd)
{
	uint8_t *big;
	pm_pipe *a, *b;
	pm_bytes m;
	int fd;

	mkpipe(&a, &b, 0);
	agree(a, 0);
	ck_assert_int_eq(pm_pipe_send(b, "one", 3), PM_OK);
	ck_assert_int_eq(pm_pipe_send(b, "two", 3), PM_OK);
	agree(a, 1);
	expect_msg(a, "one");
	agree(a, 1);		/* one left, in the kernel */
	expect_msg(a, "two");
	agree(a, 0);
	big = calloc(1, 1u << 20);
	ck_assert_ptr_nonnull(big);
	ck_assert_int_eq(pm_pipe_send(b, big, 1u << 20), PM_OK);
	free(big);
	agree(a, 1);
	recv_ok(a, &m);
	ck_assert_uint_eq(m.len, 1u << 20);
	pm_bytes_free(&m);
	agree(a, 0);
	fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	ck_assert_int_eq(pm_pipe_send_fds(b, "f", 1, &fd, 1), PM_OK);
	close(fd);
	agree(a, 1);
	ck_assert_int_eq(pm_pipe_recv_fds(a, &m, &fd, 1, NULL, 0), PM_OK);
	close(fd);
	pm_bytes_free(&m);
	agree(a, 0);
	pfree(b);		/* the end is ready too */
	agree(a, 1);
	ck_assert_int_eq(pm_pipe_recv(a, &m, 0), PM_ECLOSED);
	agree(a, 1);
	pfree(a);
}
END_TEST

START_TEST(t_timeout)
{
	pm_pipe *a, *b;
	pm_bytes m;
	double t0;

	mkpipe(&a, &b, 1);
	t0 = th_now();
	ck_assert_int_eq(pm_pipe_recv(a, &m, 0), PM_ETIMEDOUT);
	ck_assert_ptr_null(m.data);
	ck_assert_int_eq(pm_pipe_recv(a, &m, 0.3), PM_ETIMEDOUT);
	ck_assert_double_ge(th_now() - t0, 0.3);
	t0 = th_now();
	ck_assert_int_eq(pm_pipe_poll(a, 0.3), 0);
	ck_assert_double_ge(th_now() - t0, 0.3);
	ck_assert_int_eq(pm_pipe_recv(a, &m, 0.0 / 0.0), PM_EINVAL);
	ck_assert_int_eq(pm_pipe_send(b, "late", 4), PM_OK);
	ck_assert_int_eq(pm_pipe_poll(a, -1), 1);
	expect_msg(a, "late");
	pfree(a);
	pfree(b);
}
END_TEST

START_TEST(t_eof)
{
	pm_pipe *a, *b;
	pm_process *w;
	pm_bytes m;
	uint32_t v;

	/* one-way: what was sent is received, then the end, for good */
	mkpipe(&a, &b, 0);
	ck_assert_int_eq(pm_pipe_send(b, "1", 1), PM_OK);
	ck_assert_int_eq(pm_pipe_send(b, "", 0), PM_OK);
	ck_assert_int_eq(pm_pipe_send(b, "3", 1), PM_OK);
	pfree(b);
	expect_msg(a, "1");
	expect_msg(a, "");
	expect_msg(a, "3");
	ck_assert_int_eq(pm_pipe_recv(a, &m, WAIT), PM_ECLOSED);
	ck_assert_int_eq(pm_pipe_recv(a, &m, -1), PM_ECLOSED);
	pfree(a);
	/* duplex, each side leaving unread messages to the other */
	mkpipe(&a, &b, 1);
	ck_assert_int_eq(pm_pipe_send(a, "unread", 6), PM_OK);
	ck_assert_int_eq(pm_pipe_send(b, "last", 4), PM_OK);
	pfree(b);
	expect_msg(a, "last");
	ck_assert_int_eq(pm_pipe_recv(a, &m, WAIT), PM_ECLOSED);
	pfree(a);
	/* a worker that sent and ended */
	mkpipe(&a, &b, 0);
	w = worker("pipe_gen", b, "100");
	joined(w, NULL, 0);
	for (v = 0; v < 100; v++) {
		recv_ok(a, &m);
		ck_assert(m.len == sizeof(v) && memcmp(m.data, &v, 4) == 0);
		pm_bytes_free(&m);
	}
	ck_assert_int_eq(pm_pipe_recv(a, &m, WAIT), PM_ECLOSED);
	pfree(a);
}
END_TEST

/* SIGPIPE stays at its default (death) throughout: a send must not
 * raise it. */
START_TEST(t_send_closed)
{
	pm_pipe *a, *b;
	pm_process *w;
	uint8_t *big;
	int fd, code;

	ck_assert_ptr_eq(signal(SIGPIPE, SIG_DFL), SIG_DFL);
	big = calloc(1, 1u << 20);
	ck_assert_ptr_nonnull(big);
	fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	mkpipe(&a, &b, 1);
	pfree(b);
	ck_assert_int_eq(pm_pipe_send(a, "x", 1), PM_ECLOSED);
	ck_assert_int_eq(pm_pipe_send(a, big, 1u << 20), PM_ECLOSED);
	ck_assert_int_eq(pm_pipe_send_fds(a, "x", 1, &fd, 1), PM_ECLOSED);
	pfree(a);
	mkpipe(&a, &b, 0);
	pfree(a);
	ck_assert_int_eq(pm_pipe_send(b, "x", 1), PM_ECLOSED);
	pfree(b);
	/* a worker killed */
	mkpipe(&a, &b, 1);
	w = worker("pipe_echo", b, NULL);
	ck_assert_int_eq(pm_pipe_send(a, "ping", 4), PM_OK);
	expect_msg(a, "ping");
	ck_assert_int_eq(pm_process_kill(w), PM_OK);
	ck_assert_int_eq(pm_process_join(w, WAIT), PM_OK);
	ck_assert_int_eq(pm_process_exitcode(w, &code), PM_OK);
	ck_assert_int_eq(code, -SIGKILL);
	pm_process_free(w);
	ck_assert_int_eq(pm_pipe_send(a, big, 100), PM_ECLOSED);
	ck_assert_int_eq(pm_pipe_send(a, big, 1u << 20), PM_ECLOSED);
	pfree(a);
	close(fd);
	free(big);
}
END_TEST

static int
memfd_with(const char *text)
{
	int fd = memfd_create("t", MFD_CLOEXEC);

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	return fd;
}

static int
same_file(int x, int y)
{
	struct stat a, b;

	ck_assert_int_eq(fstat(x, &a), 0);
	ck_assert_int_eq(fstat(y, &b), 0);
	return a.st_dev == b.st_dev && a.st_ino == b.st_ino;
}

START_TEST(t_fds_worker)
{
	int mine[3], got[PM_PIPE_MAX_FDS], base, i;
	char text[32];
	pm_pipe *a, *b;
	pm_process *w;
	size_t n;
	pm_bytes m;

	mkpipe(&a, &b, 1);
	w = worker("pipe_echo", b, NULL);
	mine[0] = memfd_with("hello fd");
	mine[1] = open("/dev/null", O_RDONLY | O_CLOEXEC);
	mine[2] = memfd_with("third");
	ck_assert_int_eq(pm_pipe_send_fds(a, "with fds", 8, mine, 3), PM_OK);
	ck_assert_int_eq(pm_pipe_recv_fds(a, &m, got, PM_PIPE_MAX_FDS, &n,
	    WAIT), PM_OK);
	ck_assert_uint_eq(n, 3);
	ck_assert_uint_eq(m.len, 8);
	pm_bytes_free(&m);
	for (i = 0; i < 3; i++) {
		ck_assert_int_ne(got[i], mine[i]);
		ck_assert(same_file(got[i], mine[i]));
		ck_assert_int_eq(fcntl(got[i], F_GETFD) & FD_CLOEXEC,
		    FD_CLOEXEC);
	}
	memset(text, 0, sizeof(text));
	ck_assert_int_eq(pread(got[0], text, sizeof(text) - 1, 0), 8);
	ck_assert_str_eq(text, "hello fd");
	for (i = 0; i < 3; i++)
		close(got[i]);
	/* room for one: the message and one fd, the other two closed */
	base = th_fd_count(0);
	ck_assert_int_eq(pm_pipe_send_fds(a, "again", 5, mine, 3), PM_OK);
	ck_assert_int_eq(pm_pipe_recv_fds(a, &m, got, 1, &n, WAIT),
	    PM_ELIMIT);
	ck_assert_msg(strstr(pm_last_message(), "3 fds") != NULL, "%s",
	    pm_last_message());
	ck_assert_uint_eq(n, 1);
	ck_assert_uint_eq(m.len, 5);
	ck_assert(memcmp(m.data, "again", 5) == 0);
	pm_bytes_free(&m);
	ck_assert(same_file(got[0], mine[0]));
	ck_assert_int_eq(th_fd_count(0), base + 1);
	close(got[0]);
	/* pm_pipe_recv has room for none */
	ck_assert_int_eq(pm_pipe_send_fds(a, "none", 4, mine, 2), PM_OK);
	ck_assert_int_eq(pm_pipe_recv(a, &m, WAIT), PM_ELIMIT);
	ck_assert_uint_eq(m.len, 4);
	pm_bytes_free(&m);
	ck_assert_int_eq(th_fd_count(0), base);
	for (i = 0; i < 3; i++)
		close(mine[i]);
	pfree(a);
	joined(w, NULL, 0);
}
END_TEST

START_TEST(t_fds_limits)
{
	int fds[PM_PIPE_MAX_FDS + 1], got[PM_PIPE_MAX_FDS], base, i, bad;
	pm_pipe *a, *b;
	uint8_t *big;
	pm_bytes m;
	size_t n;

	mkpipe(&a, &b, 0);
	for (i = 0; i <= PM_PIPE_MAX_FDS; i++)
		fds[i] = open("/dev/null", O_RDONLY | O_CLOEXEC);
	base = th_fd_count(0);
	ck_assert_int_eq(pm_pipe_send_fds(b, "x", 1, fds,
	    PM_PIPE_MAX_FDS + 1), PM_ELIMIT);
	ck_assert_msg(strstr(pm_last_message(), "PM_PIPE_MAX_FDS") != NULL,
	    "%s", pm_last_message());
	/* the most fds, with a message big enough for a memfd */
	big = calloc(1, 200000);
	ck_assert_ptr_nonnull(big);
	big[199999] = 7;
	ck_assert_int_eq(pm_pipe_send_fds(b, big, 200000, fds,
	    PM_PIPE_MAX_FDS), PM_OK);
	free(big);
	ck_assert_int_eq(th_fd_count(0), base);
	ck_assert_int_eq(pm_pipe_recv_fds(a, &m, got, PM_PIPE_MAX_FDS, &n,
	    WAIT), PM_OK);
	ck_assert_uint_eq(n, PM_PIPE_MAX_FDS);
	ck_assert_uint_eq(m.len, 200000);
	ck_assert_int_eq(((uint8_t *)m.data)[199999], 7);
	pm_bytes_free(&m);
	ck_assert_int_eq(th_fd_count(0), base + PM_PIPE_MAX_FDS);
	for (i = 0; i < PM_PIPE_MAX_FDS; i++) {
		ck_assert(same_file(got[i], fds[i]));
		close(got[i]);
	}
	for (i = 0; i <= PM_PIPE_MAX_FDS; i++)
		close(fds[i]);
	/* a closed fd to send */
	bad = open("/dev/null", O_RDONLY);
	close(bad);
	ck_assert_int_eq(pm_pipe_send_fds(b, "x", 1, &bad, 1), PM_EINVAL);
	ck_assert_int_eq(pm_pipe_poll(a, 0), 0);
	pfree(a);
	pfree(b);
}
END_TEST

/* RLIMIT_NOFILE's soft limit set so that exactly room more fds can be
 * opened (the lowest free numbers); unsqueeze_fds() restores it. */
static struct rlimit saved_nofile;

static void
squeeze_fds(int room)
{
	struct rlimit rl;
	int fd, nfree = 0;

	for (fd = 0; nfree <= room; fd++)
		if (fcntl(fd, F_GETFD) == -1 && errno == EBADF)
			nfree++;
	ck_assert_int_eq(getrlimit(RLIMIT_NOFILE, &saved_nofile), 0);
	rl = saved_nofile;
	rl.rlim_cur = (rlim_t)(fd - 1);
	ck_assert_int_eq(setrlimit(RLIMIT_NOFILE, &rl), 0);
}

static void
unsqueeze_fds(void)
{
	ck_assert_int_eq(setrlimit(RLIMIT_NOFILE, &saved_nofile), 0);
}

START_TEST(t_fds_ctrunc)
{
	int fds[5], got[5], base, i, r;
	pm_pipe *a, *b;
	uint8_t *big;
	pm_bytes m;
	size_t n;

	if (th_valgrind())	/* valgrind keeps RLIMIT_NOFILE to itself */
		return;
	mkpipe(&a, &b, 0);
	for (i = 0; i < 5; i++)
		fds[i] = open("/dev/null", O_RDONLY | O_CLOEXEC);
	ck_assert_int_eq(pm_pipe_send_fds(b, "lost", 4, fds, 5), PM_OK);
	big = calloc(1, 100000);
	ck_assert_ptr_nonnull(big);
	ck_assert_int_eq(pm_pipe_send_fds(b, big, 100000, fds, 1), PM_OK);
	free(big);
	ck_assert_int_eq(pm_pipe_send(b, "next", 4), PM_OK);
	for (i = 0; i < 5; i++)
		close(fds[i]);
	base = th_fd_count(0);
	/* room for 2 of the 5: the message is dropped, the 2 closed */
	squeeze_fds(2);
	r = pm_pipe_recv_fds(a, &m, got, 5, &n, WAIT);
	unsqueeze_fds();
	ck_assert_msg(r == PM_ESYS, "%d %s", r, pm_last_message());
	ck_assert_ptr_null(m.data);
	ck_assert_int_eq(th_fd_count(0), base);
	/* room for none: the memfd itself is lost */
	squeeze_fds(0);
	r = pm_pipe_recv_fds(a, &m, got, 5, &n, WAIT);
	unsqueeze_fds();
	ck_assert_msg(r == PM_ESYS, "%d %s", r, pm_last_message());
	ck_assert_int_eq(th_fd_count(0), base);
	/* the pipe goes on */
	expect_msg(a, "next");
	pfree(a);
	pfree(b);
}
END_TEST

/* One raw packet on the sending socket, with any number of fds. */
static void
raw_send(pm_pipe *b, const void *buf, size_t len, const int *fds, int nfds)
{
	union {
		struct cmsghdr hdr;
		char buf[CMSG_SPACE(sizeof(int) * 128)];
	} cbuf;
	struct msghdr msg;
	struct iovec iov;

	ck_assert_int_le(nfds, 128);
	memset(&msg, 0, sizeof(msg));
	iov.iov_base = (void *)(uintptr_t)buf;
	iov.iov_len = len;
	msg.msg_iov = &iov;
	msg.msg_iovlen = 1;
	wire_cmsg_put(&msg, cbuf.buf, fds, nfds);
	ck_assert_int_eq(sendmsg(pm_pipe_fd(b), &msg, MSG_NOSIGNAL),
	    (ssize_t)len);
}

START_TEST(t_bad_packets)
{
	struct pm_hdr h;
	uint8_t pkt[64];
	int fds[100], base, mfd, i;
	pm_pipe *a, *b;
	pm_bytes m;

	mkpipe(&a, &b, 0);
	base = th_fd_count(0);
	raw_send(b, "garbage garbage garbage", 23, NULL, 0);
	ck_assert_int_eq(pm_pipe_recv(a, &m, WAIT), PM_EPROTO);
	ck_assert_int_eq(pm_pipe_send(b, "good", 4), PM_OK);
	expect_msg(a, "good");
	/* an empty packet, also with an fd */
	ck_assert_int_eq(send(pm_pipe_fd(b), "", 0, 0), 0);
	ck_assert_int_eq(pm_pipe_recv(a, &m, WAIT), PM_EPROTO);
	fds[0] = open("/dev/null", O_RDONLY | O_CLOEXEC);
	raw_send(b, "", 0, fds, 1);
	close(fds[0]);
	ck_assert_int_eq(pm_pipe_recv(a, &m, WAIT), PM_EPROTO);
	ck_assert_int_eq(th_fd_count(0), base);
	ck_assert_int_eq(pm_pipe_send(b, "good", 4), PM_OK);
	expect_msg(a, "good");
	/* a header that claims fds which did not come */
	memset(&h, 0, sizeof(h));
	h.magic = PM_WIRE_MAGIC;
	h.version = PM_WIRE_VERSION;
	h.type = 1;
	h.nfds = 2;
	h.len = 3;
	memcpy(pkt, &h, sizeof(h));
	memcpy(pkt + sizeof(h), "abc", 3);
	fds[0] = open("/dev/null", O_RDONLY | O_CLOEXEC);
	raw_send(b, pkt, sizeof(h) + 3, fds, 1);
	ck_assert_int_eq(pm_pipe_recv(a, &m, WAIT), PM_EPROTO);
	ck_assert_int_eq(th_fd_count(0), base + 1);
	/* a memfd message whose memfd is not sealed */
	h.type = 2;
	h.nfds = 1;
	h.len = 8;
	memcpy(pkt, &h, sizeof(h));
	mfd = memfd_with("12345678");
	raw_send(b, pkt, sizeof(h), &mfd, 1);
	close(mfd);
	ck_assert_int_eq(pm_pipe_recv(a, &m, WAIT), PM_EPROTO);
	ck_assert_int_eq(th_fd_count(0), base + 1);
	/* ... or not a memfd at all */
	raw_send(b, pkt, sizeof(h), fds, 1);
	ck_assert_int_eq(pm_pipe_recv(a, &m, WAIT), PM_EPROTO);
	/* a length over the inline room */
	h.type = 1;
	h.nfds = 0;
	h.len = 1;
	memcpy(pkt, &h, sizeof(h));
	raw_send(b, pkt, sizeof(h), NULL, 0);
	ck_assert_int_eq(pm_pipe_recv(a, &m, WAIT), PM_EPROTO);
	/* more fds than any message carries */
	for (i = 1; i < 100; i++)
		fds[i] = fds[0];
	h.nfds = 100;
	h.len = 0;
	memcpy(pkt, &h, sizeof(h));
	raw_send(b, pkt, sizeof(h), fds, 100);
	ck_assert_int_eq(pm_pipe_recv(a, &m, WAIT), PM_EPROTO);
	close(fds[0]);
	ck_assert_int_eq(th_fd_count(0), base);
	ck_assert_int_eq(pm_pipe_send(b, "still good", 10), PM_OK);
	expect_msg(a, "still good");
	pfree(a);
	pfree(b);
}
END_TEST

START_TEST(t_adopt)
{
	pm_pipe *a, *b, *c;
	int sv[2], fd;
	pm_bytes m;

	fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	ck_assert_ptr_null(pm_pipe_adopt(fd));
	ck_assert_int_eq(pm_last_error(), PM_EINVAL);
	ck_assert_int_ne(fcntl(fd, F_GETFD), -1);	/* still the caller's */
	close(fd);
	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0,
	    sv), 0);
	ck_assert_ptr_null(pm_pipe_adopt(sv[0]));
	close(sv[0]);
	close(sv[1]);
	ck_assert_ptr_null(pm_pipe_adopt(-1));
	/* an adopted copy of a sending end knows it only sends */
	mkpipe(&a, &b, 0);
	fd = dup(pm_pipe_fd(b));
	c = pm_pipe_adopt(fd);
	ck_assert_ptr_nonnull(c);
	keep(c);
	ck_assert_int_eq(fcntl(fd, F_GETFD) & FD_CLOEXEC, FD_CLOEXEC);
	ck_assert_int_eq(pm_pipe_poll(c, 0), PM_EPERM);
	ck_assert_int_eq(pm_pipe_recv(c, &m, 0), PM_EPERM);
	ck_assert_int_eq(pm_pipe_send(c, "via copy", 8), PM_OK);
	expect_msg(a, "via copy");
	pfree(c);
	/* and a copy of the receiving end learns it on its first send */
	c = pm_pipe_adopt(dup(pm_pipe_fd(a)));
	ck_assert_ptr_nonnull(c);
	keep(c);
	ck_assert_int_eq(pm_pipe_poll(c, 0), 0);
	ck_assert_int_eq(pm_pipe_send(c, "x", 1), PM_EPERM);
	ck_assert_int_eq(pm_pipe_send(c, "x", 1), PM_EPERM);
	ck_assert_int_eq(pm_pipe_send(b, "y", 1), PM_OK);
	expect_msg(c, "y");
	pfree(c);
	pfree(a);
	pfree(b);
}
END_TEST

START_TEST(t_args)
{
	pm_pipe *a, *b;
	pid_t pid;
	uid_t uid;
	pm_bytes m;
	int fd = 0;

	ck_assert_int_eq(pm_pipe_new(NULL, &b, 1), PM_EINVAL);
	ck_assert_int_eq(pm_pipe_send(NULL, "x", 1), PM_EINVAL);
	ck_assert_int_eq(pm_pipe_recv(NULL, &m, 0), PM_EINVAL);
	ck_assert_int_eq(pm_pipe_poll(NULL, 0), PM_EINVAL);
	ck_assert_int_eq(pm_pipe_fd(NULL), PM_EINVAL);
	ck_assert_int_eq(pm_pipe_peer(NULL, &pid, &uid), PM_EINVAL);
	pm_pipe_free(NULL);
	mkpipe(&a, &b, 1);
	ck_assert_int_eq(pm_pipe_send(a, NULL, 5), PM_EINVAL);
	ck_assert_int_eq(pm_pipe_send_fds(a, "x", 1, NULL, 1), PM_EINVAL);
	ck_assert_int_eq(pm_pipe_send(a, "x", PM_PIPE_MAX_MSG + 1),
	    PM_ELIMIT);
	ck_assert_msg(strstr(pm_last_message(), "PM_PIPE_MAX_MSG") != NULL,
	    "%s", pm_last_message());
	ck_assert_int_eq(pm_pipe_recv(a, NULL, 0), PM_EINVAL);
	ck_assert_int_eq(pm_pipe_recv_fds(a, &m, NULL, 1, NULL, 0),
	    PM_EINVAL);
	ck_assert_int_eq(pm_pipe_recv_fds(a, &m, &fd, 1, NULL, 0),
	    PM_ETIMEDOUT);
	/* credentials are vouched for by pmd only (rendezvous) */
	ck_assert_int_eq(pm_pipe_peer(a, &pid, &uid), PM_ESTATE);
	ck_assert_int_eq(pm_pipe_poll(a, 0), 0);	/* nothing was sent */
	pfree(a);
	pfree(b);
}
END_TEST

/* ---- rendezvous ---- */

static pm_listener *listener;	/* freed by teardown_listen */
static pm_listener *listener2;

static void
teardown_listen(void)
{
	pm_listener_free(listener);
	pm_listener_free(listener2);
	listener = listener2 = NULL;
	teardown();
}

static void
setup_backlog(void)
{
	start_pmd("max_listen_backlog = 2\nmax_listeners = 2\n");
}

/* A forked client that connects to name and exits with a code saying
 * what it got: 0 a pipe whose peer is want_peer (it then sends its pid
 * and waits for the end), else 10 - pm_last_error(). */
static pid_t
fork_connect(const char *name, double timeout, pid_t want_peer)
{
	pm_conn *c;
	pm_pipe *p;
	pm_bytes m;
	pid_t pid, me, peer = 0;

	if ((pid = th_fork()) != 0)
		return pid;
	if ((c = pm_connect(pmd.sock)) == NULL)
		th_child_exit(100);
	th_child_own(c, th_free_conn);
	if ((p = pm_pipe_connect(c, name, timeout)) == NULL)
		th_child_exit(10 - pm_last_error());
	me = getpid();
	if (pm_pipe_peer(p, &peer, NULL) != PM_OK || peer != want_peer ||
	    pm_pipe_send(p, &me, sizeof(me)) != PM_OK ||
	    pm_pipe_recv(p, &m, WAIT) != PM_ECLOSED) {
		pm_pipe_free(p);
		th_child_exit(101);
	}
	pm_pipe_free(p);
	th_child_exit(0);
}

static int
wait_code(pid_t pid)
{
	int st;

	ck_assert_int_eq(waitpid(pid, &st, 0), pid);
	ck_assert(WIFEXITED(st));
	return WEXITSTATUS(st);
}

/* Accepts one connect from pid and checks what pmd and the peer say. */
static void
accept_from(pid_t pid)
{
	pm_pipe *p = pm_accept(listener, WAIT);
	pid_t peer = 0, sent = 0;
	uid_t uid = 12345;
	pm_bytes m;

	ck_assert_msg(p != NULL, "accept: %s", pm_last_message());
	ck_assert_int_eq(pm_pipe_peer(p, &peer, &uid), PM_OK);
	ck_assert_int_eq(peer, pid);
	ck_assert_int_eq(uid, getuid());
	recv_ok(p, &m);
	ck_assert_uint_eq(m.len, sizeof(sent));
	memcpy(&sent, m.data, sizeof(sent));
	pm_bytes_free(&m);
	ck_assert_int_eq(sent, pid);
	pm_pipe_free(p);
}

START_TEST(t_listen_connect)
{
	pm_listener *l2;
	pid_t pid;
	double t0;

	listener = pm_listen(conn, "svc", 0);
	ck_assert_msg(listener != NULL, "listen: %s", pm_last_message());
	ck_assert_int_ge(pm_listener_fd(listener), 0);
	ck_assert_int_eq(th_readable(pm_listener_fd(listener), 0), 0);
	/* one listener per name */
	ck_assert_ptr_null(pm_listen(conn, "svc", 0));
	ck_assert_int_eq(pm_last_error(), PM_EEXIST);
	ck_assert_ptr_null(pm_listen(conn, "", 0));
	ck_assert_int_eq(pm_last_error(), PM_EINVAL);
	/* no one listens */
	ck_assert_ptr_null(pm_pipe_connect(conn, "nobody-here", 5));
	ck_assert_int_eq(pm_last_error(), PM_ENOENT);
	/* a listener that does not accept: connects time out */
	t0 = th_now();
	ck_assert_ptr_null(pm_pipe_connect(conn, "svc", 0.3));
	ck_assert_int_eq(pm_last_error(), PM_ETIMEDOUT);
	ck_assert_double_ge(th_now() - t0, 0.3);
	ck_assert_ptr_null(pm_pipe_connect(conn, "svc", 0));
	ck_assert_int_eq(pm_last_error(), PM_ETIMEDOUT);
	ck_assert_ptr_null(pm_accept(listener, 0));
	ck_assert_int_eq(pm_last_error(), PM_ETIMEDOUT);
	ck_assert_int_eq(th_readable(pm_listener_fd(listener), 0), 0);
	/* a waiting connect makes the fd readable; accept pairs them */
	pid = fork_connect("svc", WAIT, getpid());
	ck_assert_int_eq(th_readable(pm_listener_fd(listener), WAIT), 1);
	accept_from(pid);
	ck_assert_int_eq(wait_code(pid), 0);
	ck_assert_int_eq(th_readable(pm_listener_fd(listener), 0), 0);
	/* an accept waiting first */
	pid = fork_connect("svc", WAIT, getpid());
	accept_from(pid);
	ck_assert_int_eq(wait_code(pid), 0);
	/* a connect from this very connection */
	ck_assert_ptr_null(pm_pipe_connect(conn, "svc", 0.05));
	ck_assert_int_eq(pm_last_error(), PM_ETIMEDOUT);
	/* freeing the listener frees the name */
	pm_listener_free(listener);
	listener = NULL;
	l2 = pm_listen(conn, "svc", 0);
	ck_assert_ptr_nonnull(l2);
	listener = l2;
}
END_TEST

/* Three workers connect; pmd tells each side who the other is. */
START_TEST(t_three_workers)
{
	pm_process *w[3];
	pid_t pids[3], peer, sent;
	pm_pipe *p[3];
	pm_bytes m;
	int i, k, seen[3] = { 0, 0, 0 };

	listener = pm_listen(conn, "three", 0);
	ck_assert_ptr_nonnull(listener);
	for (i = 0; i < 3; i++) {
		w[i] = pm_process_new(conn, pmod, "pipe_dial", "three", 5);
		ck_assert_ptr_nonnull(w[i]);
		ck_assert_int_eq(pm_process_start(w[i]), PM_OK);
		pids[i] = pm_process_pid(w[i]);
	}
	for (i = 0; i < 3; i++) {
		p[i] = pm_accept(listener, WAIT);
		ck_assert_msg(p[i] != NULL, "accept: %s", pm_last_message());
		ck_assert_int_eq(pm_pipe_peer(p[i], &peer, NULL), PM_OK);
		recv_ok(p[i], &m);
		memcpy(&sent, m.data, sizeof(sent));
		pm_bytes_free(&m);
		ck_assert_int_eq(sent, peer);
		for (k = 0; k < 3; k++)
			if (pids[k] == peer)
				seen[k]++;
	}
	ck_assert(seen[0] == 1 && seen[1] == 1 && seen[2] == 1);
	/* p is in accept order, w in start order: a worker ends once its
	 * pipe is closed, so all are closed before any is joined */
	for (i = 0; i < 3; i++)
		pm_pipe_free(p[i]);
	for (i = 0; i < 3; i++)
		joined(w[i], NULL, 0);
}
END_TEST

/* The listener's client dies: connects waiting fail, the name is free. */
START_TEST(t_listener_dies)
{
	int ready[2], st;
	pid_t lpid, cpid;
	char c;

	ck_assert_int_eq(pipe(ready), 0);
	if ((lpid = th_fork()) == 0) {
		pm_conn *lc = pm_connect(pmd.sock);
		pm_listener *l;

		if (lc == NULL)
			th_child_exit(100);
		th_child_own(lc, th_free_conn);
		if ((l = pm_listen(lc, "mortal", 0)) == NULL)
			th_child_exit(101);
		if (write(ready[1], "r", 1) != 1)
			th_child_exit(102);
		pause();
		th_child_exit(103);
	}
	close(ready[1]);
	ck_assert_int_eq(read(ready[0], &c, 1), 1);
	close(ready[0]);
	cpid = fork_connect("mortal", WAIT, 0);
	th_sleep(0.2);
	kill(lpid, SIGKILL);
	ck_assert_int_eq(waitpid(lpid, &st, 0), lpid);
	ck_assert_int_eq(wait_code(cpid), 10 - PM_ECLOSED);
	TH_WAIT((listener = pm_listen(conn, "mortal", 0)) != NULL, 20);
	ck_assert_msg(listener != NULL, "listen: %s", pm_last_message());
}
END_TEST

/* Bounds: connects waiting per listener, and listeners in all. */
/* 1 if pmctl objects says n connects wait on the listener name. */
static int
connects_waiting(const char *name, int n)
{
	char out[4096], want[64], *line;

	if (th_pmctl(out, sizeof(out), "--socket", pmd.sock, "objects",
	    NULL) != 0)
		return 0;
	snprintf(want, sizeof(want), ", %d connecting,", n);
	for (line = strtok(out, "\n"); line != NULL; line = strtok(NULL, "\n"))
		if (strncmp(line, name, strlen(name)) == 0 &&
		    line[strlen(name)] == ' ' && strstr(line, want) != NULL)
			return 1;
	return 0;
}

START_TEST(t_listen_bounds)
{
	pid_t pids[2];
	int i;

	listener = pm_listen(conn, "b", 0);
	ck_assert_ptr_nonnull(listener);
	for (i = 0; i < 2; i++)
		pids[i] = fork_connect("b", WAIT, 0);
	/* both wait (a connect of timeout 0 is refused, not parked: it
	 * cannot tell when the backlog is full) */
	TH_WAIT(connects_waiting("b", 2), WAIT);
	ck_assert(connects_waiting("b", 2));
	ck_assert_ptr_null(pm_pipe_connect(conn, "b", 5));
	ck_assert_int_eq(pm_last_error(), PM_ELIMIT);
	ck_assert_msg(strstr(pm_last_message(), "max_listen_backlog") != NULL,
	    "%s", pm_last_message());
	listener2 = pm_listen(conn, "b2", 0);
	ck_assert_ptr_nonnull(listener2);
	ck_assert_ptr_null(pm_listen(conn, "b3", 0));
	ck_assert_int_eq(pm_last_error(), PM_ELIMIT);
	ck_assert(strstr(pm_last_message(), "max_listeners") != NULL);
	pm_listener_free(listener2);
	listener2 = NULL;
	/* freeing the listener fails the connects waiting */
	pm_listener_free(listener);
	listener = NULL;
	for (i = 0; i < 2; i++)
		ck_assert_int_eq(wait_code(pids[i]), 10 - PM_ECLOSED);
}
END_TEST

static int
other_uid_dial(void)
{
	pm_conn *c;
	pm_pipe *p;
	uid_t uid = 0;

	if (setgroups(0, NULL) == -1 || setgid(NOBODY) == -1 ||
	    setuid(NOBODY) == -1)
		return 100;
	if ((c = pm_connect(pmd.sock)) == NULL)
		return 101;
	th_child_own(c, th_free_conn);
	if (pm_pipe_connect(c, "private", 5) != NULL ||
	    pm_last_error() != PM_EPERM)
		return 102;
	if ((p = pm_pipe_connect(c, "public", WAIT)) == NULL)
		return 103;
	if (pm_pipe_peer(p, NULL, &uid) != PM_OK || uid != 0 ||
	    pm_pipe_send(p, "hi", 2) != PM_OK) {
		pm_pipe_free(p);
		return 104;
	}
	pm_pipe_free(p);
	return 0;
}

START_TEST(t_listen_other_uid)
{
	pm_pipe *p;
	pid_t pid;
	uid_t uid = 0;

	TH_NEED_ROOT();
	ck_assert_int_eq(chmod(pmd.dir, 0711), 0);
	ck_assert_int_eq(chmod(pmd.sock, 0666), 0);
	listener2 = pm_listen(conn, "private", 0);
	ck_assert_ptr_nonnull(listener2);
	listener = pm_listen(conn, "public", PM_O_SHARED);
	ck_assert_ptr_nonnull(listener);
	if ((pid = th_fork()) == 0)
		th_child_exit(other_uid_dial());
	p = pm_accept(listener, WAIT);
	ck_assert_ptr_nonnull(p);
	ck_assert_int_eq(pm_pipe_peer(p, NULL, &uid), PM_OK);
	ck_assert_int_eq(uid, NOBODY);
	expect_msg(p, "hi");
	pm_pipe_free(p);
	ck_assert_int_eq(wait_code(pid), 0);
}
END_TEST

/* Listeners are objects of the shared namespace: a name held by another
 * kind is taken; pmctl objects lists them; pm_unlink removes one, and
 * the connects waiting on it fail. */
START_TEST(t_listen_namespace)
{
	char out[8192];
	pm_dict *d;
	pid_t pid;

	d = pm_dict_open(conn, "taken", PM_O_CREATE);
	ck_assert_ptr_nonnull(d);
	ck_assert_ptr_null(pm_listen(conn, "taken", 0));
	ck_assert_int_eq(pm_last_error(), PM_EEXIST);
	ck_assert_ptr_null(pm_pipe_connect(conn, "taken", 1));
	ck_assert_int_eq(pm_last_error(), PM_ENOENT);
	pm_dict_free(d);
	listener = pm_listen(conn, "svc", 0);
	ck_assert_ptr_nonnull(listener);
	ck_assert_ptr_null(pm_dict_open(conn, "svc", PM_O_CREATE));
	ck_assert_int_eq(pm_last_error(), PM_EEXIST);
	pid = fork_connect("svc", WAIT, 0);
	TH_WAIT(th_readable(pm_listener_fd(listener), 0), 20);
	ck_assert_int_eq(th_pmctl(out, sizeof(out), "--socket", pmd.sock,
	    "objects", NULL), 0);
	ck_assert_msg(strstr(out, "svc") != NULL && strstr(out, "listener") !=
	    NULL && strstr(out, "1 connecting") != NULL, "%s", out);
	ck_assert_int_eq(pm_unlink(conn, "svc"), PM_OK);
	ck_assert_int_eq(wait_code(pid), 10 - PM_ECLOSED);
	ck_assert_ptr_null(pm_accept(listener, 0));
	ck_assert_int_eq(pm_last_error(), PM_ECLOSED);
	ck_assert_ptr_null(pm_pipe_connect(conn, "svc", 1));
	ck_assert_int_eq(pm_last_error(), PM_ENOENT);
}
END_TEST

static Suite *
pipe_suite(void)
{
	Suite *s = suite_create("pipe");
	TCase *tc;

	tc = th_tcase(s, "local", setup, teardown, 60);
	tcase_add_test(tc, t_direction);
	tcase_add_test(tc, t_poll_fd);
	tcase_add_test(tc, t_timeout);
	tcase_add_test(tc, t_eof);
	tcase_add_test(tc, t_send_closed);
	tcase_add_test(tc, t_fds_limits);
	tcase_add_test(tc, t_fds_ctrunc);
	tcase_add_test(tc, t_bad_packets);
	tcase_add_test(tc, t_adopt);
	tcase_add_test(tc, t_args);

	tc = th_tcase(s, "workers", setup, teardown, 300);
	tcase_add_test(tc, t_sizes);
	tcase_add_test(tc, t_pipelined);
	tcase_add_test(tc, t_two_workers);
	tcase_add_test(tc, t_fds_worker);

	tc = th_tcase(s, "rendezvous", setup, teardown_listen, 120);
	tcase_add_test(tc, t_listen_connect);
	tcase_add_test(tc, t_three_workers);
	tcase_add_test(tc, t_listener_dies);
	tcase_add_test(tc, t_listen_other_uid);
	tcase_add_test(tc, t_listen_namespace);

	tc = th_tcase(s, "backlog", setup_backlog, teardown_listen, 60);
	tcase_add_test(tc, t_listen_bounds);
	return s;
}

int
main(void)
{
	return th_run_suite(pipe_suite());
}
