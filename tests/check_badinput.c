/*
 * check_badinput.c - raw clients feed a real pmd bad input: garbage, an
 * oversized length, a truncated frame, wrong fd counts, wrong protocol
 * versions, unknown and premature requests.  Each must get an error reply
 * or lose its connection; pmd keeps serving others and leaks nothing.
 */
#include <sys/types.h>
#include <sys/resource.h>
#include <sys/socket.h>

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "pmclient.h"
#include "wire.h"
#include "pm.pb-c.h"

#define WAIT_SECS	10.0

static struct th_pmd pmd;
static int base_pmd;
static int base_self;

static void
setup(void)
{
	signal(SIGPIPE, SIG_IGN);
	base_self = th_fd_count(0);
	ck_assert_int_eq(th_pmd_start(&pmd, NULL), 0);
	base_pmd = th_fd_count(pmd.pid);
	ck_assert_int_gt(base_pmd, 0);
}

static void
teardown(void)
{
	ck_assert_int_eq(th_fd_count(0), base_self);
	ck_assert_int_eq(th_pmd_stop(&pmd), 0);
}

/* Another client is served: start and join a process. */
static void
still_serving(void)
{
	pm_process *p;
	pm_conn *c;

	c = pm_connect(pmd.sock);
	ck_assert_msg(c != NULL, "pmd stopped serving: %s",
	    pm_last_message());
	p = pm_process_new(c, th_module(), "ret7", NULL, 0);
	ck_assert_int_eq(th_run_process(p, 30), 7);
	pm_process_free(p);
	pm_disconnect(c);
}

/* After the bad client is gone: served, and pmd back to its fd count. */
static void
recovered(void)
{
	int n;

	still_serving();
	TH_WAIT(th_fd_count(pmd.pid) == base_pmd &&
	    th_zombies(pmd.pid) == 0, WAIT_SECS);
	n = th_fd_count(pmd.pid);
	ck_assert_msg(n == base_pmd, "pmd has %d fds, %d at start", n,
	    base_pmd);
	ck_assert_int_eq(th_zombies(pmd.pid), 0);
}

enum outcome { O_TIMEOUT, O_DROPPED, O_FRAME };

/* What pmd does next on this connection: a frame (copied into *f, payload
 * unpacked by the caller from buf), a drop, or nothing in time. */
struct reply {
	uint32_t type, id;
	uint8_t	 buf[4096];
	size_t	 len;
};

static enum outcome
next_reply(int fd, struct wire_in *in, struct reply *r, double secs)
{
	struct pm_frame f;
	const char *why;
	ssize_t n;
	int k;

	for (;;) {
		k = wire_in_next(in, &f, &why);
		ck_assert_msg(k != -1, "pmd sent a bad frame: %s", why);
		if (k == 1) {
			r->type = f.type;
			r->id = f.id;
			r->len = f.len < sizeof(r->buf) ? f.len : sizeof(r->buf);
			memcpy(r->buf, f.data, r->len);
			wire_frame_close(&f);
			return O_FRAME;
		}
		if (!th_readable(fd, secs))
			return O_TIMEOUT;
		n = wire_in_read(in, fd);
		if (n == 0 || (n == -1 && errno == ECONNRESET))
			return O_DROPPED;
		ck_assert_msg(n > 0, "read: %s", strerror(errno));
	}
}

#define C(code)	(1u << (code))		/* a set of wire codes */

/* An error reply with a code in the set, or a drop; anything else fails.
 * Returns the outcome. */
static enum outcome
expect_refusal(int fd, unsigned codes, const char *what)
{
	struct wire_in in;
	struct reply r;
	enum outcome o;
	Pm__Error *e;

	wire_in_init(&in, 0);
	o = next_reply(fd, &in, &r, WAIT_SECS);
	ck_assert_msg(o != O_TIMEOUT, "%s: neither error nor drop in %.0f s",
	    what, WAIT_SECS);
	if (o == O_FRAME) {
		ck_assert_msg(r.type == PM__TYPE__T_ERROR,
		    "%s: reply type %u, want T_ERROR", what, r.type);
		e = pm__error__unpack(NULL, r.len, r.buf);
		ck_assert_ptr_nonnull(e);
		ck_assert_msg(e->code > 0 && e->code < 32 &&
		    (codes & C(e->code)), "%s: error code %d", what, e->code);
		ck_assert_msg(e->message != NULL && *e->message != '\0',
		    "%s: error without a message", what);
		pm__error__free_unpacked(e, NULL);
	}
	wire_in_free(&in);
	return o;
}

static int
raw_connect(void)
{
	int fd = th_unix_connect(pmd.sock);

	ck_assert_msg(fd >= 0, "connect %s: %s", pmd.sock, strerror(errno));
	return fd;
}

static void
send_frame(int fd, uint8_t version, uint32_t type, uint32_t id,
    uint8_t declared, const ProtobufCMessage *m, const int *fds, int nfds)
{
	uint8_t buf[4096];
	size_t len;

	len = th_frame(buf, sizeof(buf), version, type, id, declared, m);
	ck_assert_uint_gt(len, 0);
	ck_assert_int_eq(th_send(fd, buf, len, fds, nfds), 0);
}

static void
send_hello(int fd, uint32_t version)
{
	Pm__Hello h = PM__HELLO__INIT;

	h.version = version;
	h.name = (char *)(uintptr_t)"check_badinput";
	h.pid = (int32_t)getpid();
	send_frame(fd, PM_WIRE_VERSION, PM__TYPE__T_HELLO, 1, 0, &h.base,
	    NULL, 0);
}

/* A valid Hello gets a HelloReply naming pmd's pid. */
static void
hello(int fd, struct wire_in *in)
{
	Pm__HelloReply *hr;
	struct reply r;

	send_hello(fd, PM_PROTOCOL_VERSION);
	ck_assert_int_eq(next_reply(fd, in, &r, WAIT_SECS), O_FRAME);
	ck_assert_uint_eq(r.type, PM__TYPE__T_HELLO_REPLY);
	ck_assert_uint_eq(r.id, 1);
	hr = pm__hello_reply__unpack(NULL, r.len, r.buf);
	ck_assert_ptr_nonnull(hr);
	ck_assert_uint_eq(hr->version, PM_PROTOCOL_VERSION);
	ck_assert_int_eq(hr->pid, pmd.pid);
	ck_assert_uint_gt(hr->max_frame, 0);
	pm__hello_reply__free_unpacked(hr, NULL);
}

/* The control case: the raw client itself works. */
START_TEST(t_valid)
{
	struct wire_in in;
	struct reply r;
	int fd = raw_connect();

	wire_in_init(&in, 0);
	hello(fd, &in);
	send_frame(fd, PM_WIRE_VERSION, PM__TYPE__T_PING, 2, 0, NULL, NULL, 0);
	ck_assert_int_eq(next_reply(fd, &in, &r, WAIT_SECS), O_FRAME);
	ck_assert_uint_eq(r.type, PM__TYPE__T_OK);
	ck_assert_uint_eq(r.id, 2);
	wire_in_free(&in);
	close(fd);
	recovered();
}
END_TEST

START_TEST(t_garbage)
{
	static const char junk[] = "GET / HTTP/1.1\r\nHost: pmd\r\n\r\n"
	    "\x00\x01\x02\xff\xfe\xfd random bytes that are not a frame";
	int fd = raw_connect();

	ck_assert_int_eq(th_send(fd, junk, sizeof(junk), NULL, 0), 0);
	expect_refusal(fd, C(13), "garbage");
	close(fd);
	recovered();
}
END_TEST

START_TEST(t_oversized)
{
	struct pm_hdr h;
	long rss0, rss1;
	int fd;

	rss0 = th_rss_kb(pmd.pid);
	fd = raw_connect();
	memset(&h, 0, sizeof(h));
	h.magic = PM_WIRE_MAGIC;
	h.version = PM_WIRE_VERSION;
	h.type = PM__TYPE__T_HELLO;
	h.id = 1;
	h.len = 0xfffffff0u;
	ck_assert_int_eq(th_send(fd, &h, sizeof(h), NULL, 0), 0);
	expect_refusal(fd, C(13) | C(15), "4 GiB length");
	close(fd);

	/* just above the default bound, after a valid Hello */
	{
		struct wire_in in;

		fd = raw_connect();
		wire_in_init(&in, 0);
		hello(fd, &in);
		wire_in_free(&in);
		h.len = PM_WIRE_MAX_FRAME + 1;
		h.type = PM__TYPE__T_PING;
		h.id = 2;
		ck_assert_int_eq(th_send(fd, &h, sizeof(h), NULL, 0), 0);
		expect_refusal(fd, C(13) | C(15), "PM_WIRE_MAX_FRAME + 1");
		close(fd);
	}
	rss1 = th_rss_kb(pmd.pid);
	ck_assert_msg(rss0 < 0 || rss1 - rss0 < 8192,
	    "pmd grew from %ld to %ld kB", rss0, rss1);
	recovered();
}
END_TEST

/* A partial frame: pmd waits for the rest without blocking anyone, and
 * forgets it on EOF. */
START_TEST(t_truncated)
{
	Pm__Hello h = PM__HELLO__INIT;
	uint8_t buf[256];
	size_t len;
	int fd = raw_connect();
	char c;

	h.version = 1;
	h.name = (char *)(uintptr_t)"truncated-frame-client-name";
	len = th_frame(buf, sizeof(buf), PM_WIRE_VERSION, PM__TYPE__T_HELLO,
	    1, 0, &h.base);
	ck_assert_int_eq(th_send(fd, buf, len - 5, NULL, 0), 0);
	still_serving();
	ck_assert_int_eq(shutdown(fd, SHUT_WR), 0);
	/* pmd closes its side (perhaps after an error reply) */
	TH_WAIT(th_readable(fd, 0.1) && read(fd, &c, 1) <= 0, WAIT_SECS)
		;
	ck_assert_msg(th_readable(fd, 0) && read(fd, &c, 1) <= 0,
	    "pmd kept a half-closed connection with a partial frame");
	close(fd);

	/* a header alone, then EOF */
	fd = raw_connect();
	ck_assert_int_eq(th_send(fd, buf, 10, NULL, 0), 0);
	close(fd);
	recovered();
}
END_TEST

/* fds whose count does not match the header's.  Each carries the write
 * end of a pipe: once pmd has closed its copy, the read end sees EOF. */
static const struct {
	uint8_t declared;
	int sent;
} mismatch[] = {
	{ 2, 1 },
	{ 0, 1 },
	{ 1, 0 },
	{ 3, 40 },	/* more than a frame may carry */
};

START_TEST(t_fd_count)
{
	Pm__Hello h = PM__HELLO__INIT;
	int fd, p[2], fds[64], i, hello_first = _i % 2;
	char c;

	ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
	for (i = 0; i < mismatch[_i].sent; i++)
		fds[i] = p[1];
	fd = raw_connect();
	if (hello_first) {
		struct wire_in in;

		wire_in_init(&in, 0);
		hello(fd, &in);
		wire_in_free(&in);
		send_frame(fd, PM_WIRE_VERSION, PM__TYPE__T_PING, 2,
		    mismatch[_i].declared, NULL, fds, mismatch[_i].sent);
	} else {
		h.version = 1;
		send_frame(fd, PM_WIRE_VERSION, PM__TYPE__T_HELLO, 1,
		    mismatch[_i].declared, &h.base, fds, mismatch[_i].sent);
	}
	close(p[1]);
	expect_refusal(fd, C(13) | C(11), "fd count mismatch");
	close(fd);
	/* every copy pmd received is closed */
	if (mismatch[_i].sent > 0) {
		ck_assert_msg(th_readable(p[0], WAIT_SECS),
		    "pmd kept a received fd");
		ck_assert_int_eq(read(p[0], &c, 1), 0);
	}
	close(p[0]);
	recovered();
}
END_TEST

/* Hello.version = 99 in a valid frame: C_PROTO or a drop. */
START_TEST(t_hello_version)
{
	int fd = raw_connect();

	send_hello(fd, 99);
	expect_refusal(fd, C(13), "Hello version 99");
	close(fd);
	recovered();
}
END_TEST

/* Frame header version 99. */
START_TEST(t_frame_version)
{
	Pm__Hello h = PM__HELLO__INIT;
	int fd = raw_connect();

	h.version = 1;
	send_frame(fd, 99, PM__TYPE__T_HELLO, 1, 0, &h.base, NULL, 0);
	expect_refusal(fd, C(13), "frame version 99");
	close(fd);
	recovered();
}
END_TEST

/* An unknown request type after Hello: an error echoing the id; if the
 * connection stays, it still works. */
START_TEST(t_unknown_type)
{
	struct wire_in in;
	struct reply r;
	enum outcome o;
	Pm__Error *e;
	int fd = raw_connect();

	wire_in_init(&in, 0);
	hello(fd, &in);
	send_frame(fd, PM_WIRE_VERSION, 999, 5, 0, NULL, NULL, 0);
	o = next_reply(fd, &in, &r, WAIT_SECS);
	ck_assert_msg(o != O_TIMEOUT, "unknown type: no reply, no drop");
	if (o == O_FRAME) {
		ck_assert_uint_eq(r.type, PM__TYPE__T_ERROR);
		ck_assert_uint_eq(r.id, 5);
		e = pm__error__unpack(NULL, r.len, r.buf);
		ck_assert_ptr_nonnull(e);
		ck_assert_msg(e->code == 13 || e->code == 11, "code %d",
		    e->code);
		pm__error__free_unpacked(e, NULL);
		/* kept or dropped; if kept, it still answers */
		send_frame(fd, PM_WIRE_VERSION, PM__TYPE__T_PING, 6, 0, NULL,
		    NULL, 0);
		o = next_reply(fd, &in, &r, WAIT_SECS);
		ck_assert_msg(o != O_TIMEOUT, "no answer after the error");
		if (o == O_FRAME) {
			ck_assert_uint_eq(r.type, PM__TYPE__T_OK);
			ck_assert_uint_eq(r.id, 6);
		}
	}
	/* a reply type sent as a request is no better */
	if (o == O_FRAME) {
		send_frame(fd, PM_WIRE_VERSION, PM__TYPE__T_FORKED, 7, 0, NULL,
		    NULL, 0);
		o = next_reply(fd, &in, &r, WAIT_SECS);
		ck_assert_msg(o != O_TIMEOUT, "T_FORKED: no reply, no drop");
		if (o == O_FRAME)
			ck_assert_uint_eq(r.type, PM__TYPE__T_ERROR);
	}
	wire_in_free(&in);
	close(fd);
	recovered();
}
END_TEST

/* A request before Hello. */
START_TEST(t_before_hello)
{
	Pm__Spawn s = PM__SPAWN__INIT;
	int fd;

	fd = raw_connect();
	send_frame(fd, PM_WIRE_VERSION, PM__TYPE__T_PING, 1, 0, NULL, NULL, 0);
	expect_refusal(fd, C(13) | C(8) | C(16), "Ping before Hello");
	close(fd);

	fd = raw_connect();
	s.kind = PM__KIND__K_EXEC;
	s.path = (char *)(uintptr_t)"/bin/true";
	send_frame(fd, PM_WIRE_VERSION, PM__TYPE__T_SPAWN, 1, 0, &s.base,
	    NULL, 0);
	expect_refusal(fd, C(13) | C(8) | C(16), "Spawn before Hello");
	close(fd);
	recovered();
}
END_TEST

/* A payload that is not the protobuf its type says. */
START_TEST(t_bad_payload)
{
	static const uint8_t junk[] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0x0f,
	    0x0a, 0x80 };
	struct pm_hdr h;
	uint8_t buf[64];
	int fd = raw_connect();

	memset(&h, 0, sizeof(h));
	h.magic = PM_WIRE_MAGIC;
	h.version = PM_WIRE_VERSION;
	h.type = PM__TYPE__T_HELLO;
	h.id = 1;
	h.len = sizeof(junk);
	memcpy(buf, &h, sizeof(h));
	memcpy(buf + sizeof(h), junk, sizeof(junk));
	ck_assert_int_eq(th_send(fd, buf, sizeof(h) + sizeof(junk), NULL, 0),
	    0);
	expect_refusal(fd, C(13) | C(11), "undecodable Hello");
	close(fd);
	recovered();
}
END_TEST

/* Many clients that connect and leave, some mid-Hello, some silent. */
/* pmd out of fds when a request brings some (MSG_CTRUNC): that request
 * fails with PM_ESYS, the connection stays, nothing leaks, and the same
 * request succeeds once fds are free. */
START_TEST(t_request_fds_lost)
{
	struct rlimit old, full;
	pm_process *p;
	pm_conn *c;
	int r;

	c = pm_connect(pmd.sock);
	ck_assert_ptr_nonnull(c);
	p = pm_process_new(c, th_module(), "ret7", NULL, 0);
	ck_assert_ptr_nonnull(p);
	ck_assert_int_eq(pm_process_set_fd(p, 5, 1), PM_OK);
	ck_assert_int_eq(prlimit(pmd.pid, RLIMIT_NOFILE, NULL, &old), 0);
	full = old;
	full.rlim_cur = (rlim_t)th_lowest_free_fd(pmd.pid);
	ck_assert_int_eq(prlimit(pmd.pid, RLIMIT_NOFILE, &full, NULL), 0);
	r = pm_process_start(p);
	ck_assert_int_eq(prlimit(pmd.pid, RLIMIT_NOFILE, &old, NULL), 0);
	ck_assert_msg(r == PM_ESYS, "start out of fds: %d (%s)", r,
	    pm_last_message());
	ck_assert_msg(strstr(pm_last_message(), "file descriptors") != NULL,
	    "unclear error: %s", pm_last_message());
	ck_assert_int_eq(th_fd_count(pmd.pid), base_pmd + 1);	/* c */
	/* the same connection, the same request */
	ck_assert_int_eq(th_run_process(p, WAIT_SECS), 7);
	pm_process_free(p);
	pm_disconnect(c);
	TH_WAIT(th_fd_count(pmd.pid) == base_pmd, WAIT_SECS);
	ck_assert_int_eq(th_fd_count(pmd.pid), base_pmd);
	ck_assert_int_eq(th_zombies(pmd.pid), 0);
}
END_TEST

START_TEST(t_churn)
{
	int fds[20], i;

	for (i = 0; i < 20; i++) {
		fds[i] = raw_connect();
		if (i % 3 == 1)
			send_hello(fds[i], PM_PROTOCOL_VERSION);
		else if (i % 3 == 2)
			ck_assert_int_eq(th_send(fds[i], "PM", 2, NULL, 0), 0);
	}
	still_serving();
	for (i = 0; i < 20; i++)
		close(fds[i]);
	recovered();
}
END_TEST

static Suite *
badinput_suite(void)
{
	Suite *s = suite_create("badinput");
	TCase *tc = th_tcase(s, "badinput", setup, teardown, 60);

	tcase_add_test(tc, t_valid);
	tcase_add_test(tc, t_garbage);
	tcase_add_test(tc, t_oversized);
	tcase_add_test(tc, t_truncated);
	tcase_add_loop_test(tc, t_fd_count, 0,
	    (int)(sizeof(mismatch) / sizeof(mismatch[0])));
	tcase_add_test(tc, t_hello_version);
	tcase_add_test(tc, t_frame_version);
	tcase_add_test(tc, t_unknown_type);
	tcase_add_test(tc, t_before_hello);
	tcase_add_test(tc, t_bad_payload);
	tcase_add_test(tc, t_request_fds_lost);
	tcase_add_test(tc, t_churn);
	return s;
}

int
main(void)
{
	return th_run_suite(badinput_suite());
}
