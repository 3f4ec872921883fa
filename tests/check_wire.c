/*
 * check_wire.c - the wire layer (proto/wire.c) alone, over socketpairs,
 * without a daemon: framing, fd passing, partial and bad input, sealed
 * memfds, and output queuing against a peer that does not read.
 */
#include <sys/types.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "wire.h"
#include "pm.pb-c.h"

static int sp[2];		/* sp[0] sends, sp[1] receives */
static int base_fds;

static void
setup(void)
{
	base_fds = th_fd_count(0);
	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0,
	    sp), 0);
}

static void
teardown(void)
{
	close(sp[0]);
	close(sp[1]);
	ck_assert_int_eq(th_fd_count(0), base_fds);
}

/* Read until one frame is there (or fail); returns wire_in_next's result. */
static int
read_frame(struct wire_in *in, int sock, struct pm_frame *f, const char **why)
{
	int r;

	for (;;) {
		r = wire_in_next(in, f, why);
		if (r != 0)
			return r;
		ck_assert_msg(th_readable(sock, 5.0), "no frame in 5 s");
		ck_assert_msg(wire_in_read(in, sock) > 0, "read: %s",
		    strerror(errno));
	}
}

static int
is_cloexec(int fd)
{
	int fl = fcntl(fd, F_GETFD);

	return fl != -1 && (fl & FD_CLOEXEC);
}

static int
same_file(int a, int b)
{
	struct stat sa, sb;

	return fstat(a, &sa) == 0 && fstat(b, &sb) == 0 &&
	    sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

START_TEST(t_roundtrip)
{
	Pm__Hello h = PM__HELLO__INIT, *u;
	struct wire_out o;
	struct wire_in in;
	struct pm_frame f;
	const char *why;

	h.version = 1;
	h.name = (char *)(uintptr_t)"check_wire";
	h.pid = 4242;
	wire_out_init(&o);
	wire_in_init(&in, 0);
	ck_assert_int_eq(wire_out_frame(&o, PM__TYPE__T_HELLO, 17,
	    &h.base, NULL, 0), 0);
	ck_assert_uint_eq(wire_out_pending(&o),
	    PM_WIRE_HDR + protobuf_c_message_get_packed_size(&h.base));
	ck_assert_int_eq(wire_out_flush(&o, sp[0]), 1);
	ck_assert_uint_eq(wire_out_pending(&o), 0);

	ck_assert_int_eq(read_frame(&in, sp[1], &f, &why), 1);
	ck_assert_uint_eq(f.type, PM__TYPE__T_HELLO);
	ck_assert_uint_eq(f.id, 17);
	ck_assert_int_eq(f.nfds, 0);
	u = pm__hello__unpack(NULL, f.len, f.data);
	ck_assert_ptr_nonnull(u);
	ck_assert_uint_eq(u->version, 1);
	ck_assert_str_eq(u->name, "check_wire");
	ck_assert_int_eq(u->pid, 4242);
	pm__hello__free_unpacked(u, NULL);
	ck_assert_uint_eq(wire_in_pending(&in), 0);
	ck_assert_int_eq(wire_in_next(&in, &f, &why), 0);

	/* an empty payload */
	ck_assert_int_eq(wire_out_frame(&o, PM__TYPE__T_PING, 18, NULL,
	    NULL, 0), 0);
	ck_assert_int_eq(wire_out_flush(&o, sp[0]), 1);
	ck_assert_int_eq(read_frame(&in, sp[1], &f, &why), 1);
	ck_assert_uint_eq(f.type, PM__TYPE__T_PING);
	ck_assert_uint_eq(f.len, 0);

	/* EOF is 0 */
	close(sp[0]);
	sp[0] = -1;
	ck_assert_int_eq(wire_in_read(&in, sp[1]), 0);
	wire_out_free(&o);
	wire_in_free(&in);
}
END_TEST

START_TEST(t_fds)
{
	struct wire_out o;
	struct wire_in in;
	struct pm_frame f;
	const char *why;
	int p[2], send[2], keep[2], got[2], before;
	char c = 0;

	ck_assert_int_eq(pipe2(p, 0), 0);	/* not CLOEXEC on purpose */
	keep[0] = dup(p[0]);
	keep[1] = dup(p[1]);
	send[0] = p[0];
	send[1] = p[1];
	before = th_fd_count(0);
	wire_out_init(&o);
	wire_in_init(&in, 0);
	ck_assert_int_eq(wire_out_frame(&o, PM__TYPE__T_SPAWN_REPLY, 1,
	    NULL, send, 2), 0);
	ck_assert_int_eq(wire_out_flush(&o, sp[0]), 1);
	/* the sent fds were handed over and closed */
	ck_assert_int_eq(th_fd_count(0), before - 2);

	ck_assert_int_eq(read_frame(&in, sp[1], &f, &why), 1);
	ck_assert_int_eq(f.nfds, 2);
	ck_assert_msg(is_cloexec(f.fds[0]) && is_cloexec(f.fds[1]),
	    "received fds must be close-on-exec");
	ck_assert(same_file(f.fds[0], keep[0]));
	ck_assert(same_file(f.fds[1], keep[1]));
	ck_assert_int_eq(write(f.fds[1], "x", 1), 1);
	ck_assert_int_eq(read(keep[0], &c, 1), 1);
	ck_assert_int_eq(c, 'x');

	/* take one, close the frame: the other goes */
	got[0] = wire_frame_take(&f, 0);
	ck_assert_int_ge(got[0], 0);
	ck_assert_int_eq(wire_frame_take(&f, 5), -1);
	wire_frame_close(&f);
	ck_assert_int_eq(th_fd_count(0), before - 1);
	ck_assert(same_file(got[0], keep[0]));
	close(got[0]);
	close(keep[0]);
	close(keep[1]);
	wire_out_free(&o);
	wire_in_free(&in);
}
END_TEST

START_TEST(t_several_in_one_read)
{
	Pm__Exited e = PM__EXITED__INIT, *u;
	struct wire_out o;
	struct wire_in in;
	struct pm_frame f;
	const char *why;
	int i, fd;

	wire_out_init(&o);
	wire_in_init(&in, 0);
	for (i = 0; i < 5; i++) {
		e.pid = 100 + i;
		e.exitcode = -i;
		fd = i == 2 ? open("/dev/null", O_RDONLY | O_CLOEXEC) : -1;
		ck_assert_int_eq(wire_out_frame(&o, PM__TYPE__T_EXITED,
		    (uint32_t)i + 1, &e.base, &fd, fd >= 0 ? 1 : 0), 0);
	}
	ck_assert_int_eq(wire_out_flush(&o, sp[0]), 1);
	ck_assert(th_readable(sp[1], 5.0));
	th_sleep(0.05);
	while (th_readable(sp[1], 0.05))	/* drain: usually 2 reads */
		ck_assert_int_gt(wire_in_read(&in, sp[1]), 0);
	for (i = 0; i < 5; i++) {
		ck_assert_int_eq(wire_in_next(&in, &f, &why), 1);
		ck_assert_uint_eq(f.id, (uint32_t)i + 1);
		ck_assert_int_eq(f.nfds, i == 2 ? 1 : 0);
		u = pm__exited__unpack(NULL, f.len, f.data);
		ck_assert_ptr_nonnull(u);
		ck_assert_int_eq(u->pid, 100 + i);
		ck_assert_int_eq(u->exitcode, -i);
		pm__exited__free_unpacked(u, NULL);
		wire_frame_close(&f);
	}
	ck_assert_int_eq(wire_in_next(&in, &f, &why), 0);
	wire_out_free(&o);
	wire_in_free(&in);
}
END_TEST

START_TEST(t_byte_by_byte)
{
	Pm__Error e = PM__ERROR__INIT, *u;
	uint8_t buf[256];
	struct wire_in in;
	struct pm_frame f;
	const char *why;
	size_t len, i;
	int fd;

	e.code = 9;
	e.message = (char *)(uintptr_t)"no such module: x.so";
	len = th_frame(buf, sizeof(buf), PM_WIRE_VERSION, PM__TYPE__T_ERROR,
	    3, 1, &e.base);
	ck_assert_uint_gt(len, PM_WIRE_HDR);
	wire_in_init(&in, 0);
	fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	for (i = 0; i < len; i++) {
		ck_assert_int_eq(wire_in_next(&in, &f, &why), 0);
		ck_assert_uint_eq(wire_in_pending(&in), i);
		/* the fd goes with the first byte */
		ck_assert_int_eq(th_send(sp[0], buf + i, 1, &fd, i == 0), 0);
		ck_assert_int_eq(wire_in_read(&in, sp[1]), 1);
	}
	close(fd);
	ck_assert_int_eq(wire_in_next(&in, &f, &why), 1);
	ck_assert_uint_eq(f.type, PM__TYPE__T_ERROR);
	ck_assert_uint_eq(f.id, 3);
	ck_assert_int_eq(f.nfds, 1);
	u = pm__error__unpack(NULL, f.len, f.data);
	ck_assert_ptr_nonnull(u);
	ck_assert_int_eq(u->code, 9);
	ck_assert_str_eq(u->message, "no such module: x.so");
	pm__error__free_unpacked(u, NULL);
	wire_frame_close(&f);
	wire_in_free(&in);
}
END_TEST

/* A header alone, with these fields. */
static void
send_hdr(int sock, uint16_t magic, uint8_t version, uint8_t nfds,
    uint32_t len, const int *fds, int nsend)
{
	struct pm_hdr h;

	memset(&h, 0, sizeof(h));
	h.magic = magic;
	h.version = version;
	h.nfds = nfds;
	h.type = PM__TYPE__T_PING;
	h.id = 1;
	h.len = len;
	ck_assert_int_eq(th_send(sock, &h, sizeof(h), fds, nsend), 0);
}

static void
expect_reject(struct wire_in *in, const char *what)
{
	struct pm_frame f;
	const char *why = NULL;

	ck_assert(th_readable(sp[1], 5.0));
	ck_assert_int_gt(wire_in_read(in, sp[1]), 0);
	ck_assert_msg(wire_in_next(in, &f, &why) == -1, "%s accepted", what);
	ck_assert_msg(why != NULL && *why != '\0', "%s: no reason", what);
}

START_TEST(t_oversized)
{
	struct wire_in in;
	struct pm_frame f;
	const char *why;
	uint8_t *buf;

	/* far above the default bound: rejected from the header alone */
	wire_in_init(&in, 0);
	send_hdr(sp[0], PM_WIRE_MAGIC, PM_WIRE_VERSION, 0, 0xffffffffu,
	    NULL, 0);
	expect_reject(&in, "4 GiB frame");
	ck_assert_msg(in.cap <= (1u << 20), "buffer grew to %zu", in.cap);
	wire_in_free(&in);

	/* one above a small bound: rejected; exactly the bound: accepted */
	wire_in_init(&in, 1024);
	send_hdr(sp[0], PM_WIRE_MAGIC, PM_WIRE_VERSION, 0, 1025, NULL, 0);
	expect_reject(&in, "1025-byte frame with max 1024");
	wire_in_free(&in);

	wire_in_init(&in, 1024);
	buf = calloc(1, PM_WIRE_HDR + 1024);
	th_frame(buf, PM_WIRE_HDR, PM_WIRE_VERSION, PM__TYPE__T_PING, 1, 0,
	    NULL);
	((struct pm_hdr *)(void *)buf)->len = 1024;
	ck_assert_int_eq(th_send(sp[0], buf, PM_WIRE_HDR + 1024, NULL, 0), 0);
	ck_assert_int_eq(read_frame(&in, sp[1], &f, &why), 1);
	ck_assert_uint_eq(f.len, 1024);
	free(buf);
	wire_in_free(&in);

	/* the default bound itself is PM_WIRE_MAX_FRAME */
	wire_in_init(&in, 0);
	ck_assert_uint_eq(in.max_frame, PM_WIRE_MAX_FRAME);
	send_hdr(sp[0], PM_WIRE_MAGIC, PM_WIRE_VERSION, 0,
	    PM_WIRE_MAX_FRAME + 1, NULL, 0);
	expect_reject(&in, "PM_WIRE_MAX_FRAME + 1");
	ck_assert_msg(in.cap <= (1u << 20), "buffer grew to %zu", in.cap);
	wire_in_free(&in);
}
END_TEST

START_TEST(t_bad_magic)
{
	struct wire_in in;

	wire_in_init(&in, 0);
	send_hdr(sp[0], 0x5047, PM_WIRE_VERSION, 0, 0, NULL, 0);
	expect_reject(&in, "bad magic");
	wire_in_free(&in);

	wire_in_init(&in, 0);
	ck_assert_int_eq(th_send(sp[0], "GET / HTTP/1.1\r\nHost: x\r\n\r\n",
	    27, NULL, 0), 0);
	expect_reject(&in, "HTTP request");
	wire_in_free(&in);
}
END_TEST

START_TEST(t_bad_version)
{
	struct wire_in in;

	wire_in_init(&in, 0);
	send_hdr(sp[0], PM_WIRE_MAGIC, 99, 0, 0, NULL, 0);
	expect_reject(&in, "version 99");
	wire_in_free(&in);

	wire_in_init(&in, 0);
	send_hdr(sp[0], PM_WIRE_MAGIC, 0, 0, 0, NULL, 0);
	expect_reject(&in, "version 0");
	wire_in_free(&in);
}
END_TEST

START_TEST(t_nfds_mismatch)
{
	struct wire_in in;
	int fds[2], before;

	fds[0] = open("/dev/null", O_RDONLY | O_CLOEXEC);
	fds[1] = open("/dev/null", O_RDONLY | O_CLOEXEC);
	before = th_fd_count(0);

	/* declares 2, carries 1 */
	wire_in_init(&in, 0);
	send_hdr(sp[0], PM_WIRE_MAGIC, PM_WIRE_VERSION, 2, 0, fds, 1);
	expect_reject(&in, "2 declared, 1 sent");
	wire_in_free(&in);
	ck_assert_int_eq(th_fd_count(0), before);

	/* declares 0, carries 1 */
	wire_in_init(&in, 0);
	send_hdr(sp[0], PM_WIRE_MAGIC, PM_WIRE_VERSION, 0, 0, fds, 1);
	expect_reject(&in, "0 declared, 1 sent");
	wire_in_free(&in);
	ck_assert_int_eq(th_fd_count(0), before);

	/* declares 1, carries none */
	wire_in_init(&in, 0);
	send_hdr(sp[0], PM_WIRE_MAGIC, PM_WIRE_VERSION, 1, 0, NULL, 0);
	expect_reject(&in, "1 declared, 0 sent");
	wire_in_free(&in);

	/* declares more than PM_WIRE_MAX_FDS */
	wire_in_init(&in, 0);
	send_hdr(sp[0], PM_WIRE_MAGIC, PM_WIRE_VERSION, PM_WIRE_MAX_FDS + 1,
	    0, NULL, 0);
	expect_reject(&in, "too many fds declared");
	wire_in_free(&in);
	ck_assert_int_eq(th_fd_count(0), before);

	/* the sender refuses more than PM_WIRE_MAX_FDS, and closes them */
	{
		struct wire_out o;
		int many[PM_WIRE_MAX_FDS + 1], i;

		for (i = 0; i < PM_WIRE_MAX_FDS + 1; i++)
			many[i] = dup(fds[0]);
		wire_out_init(&o);
		ck_assert_int_eq(wire_out_frame(&o, PM__TYPE__T_PING, 1, NULL,
		    many, PM_WIRE_MAX_FDS + 1), -1);
		wire_out_free(&o);
		ck_assert_int_eq(th_fd_count(0), before);
	}
	close(fds[0]);
	close(fds[1]);
}
END_TEST

/* More fds than a frame may carry, sent at once: the read fails
 * (MSG_CTRUNC) and nothing leaks. */
START_TEST(t_fd_flood)
{
	struct wire_in in;
	int fds[60], i, before;
	ssize_t r;

	before = th_fd_count(0);
	for (i = 0; i < 60; i++)
		fds[i] = open("/dev/null", O_RDONLY | O_CLOEXEC);
	wire_in_init(&in, 0);
	send_hdr(sp[0], PM_WIRE_MAGIC, PM_WIRE_VERSION, 60, 0, fds, 60);
	for (i = 0; i < 60; i++)
		close(fds[i]);
	ck_assert(th_readable(sp[1], 5.0));
	r = wire_in_read(&in, sp[1]);
	ck_assert_int_eq(r, -1);
	wire_in_free(&in);
	ck_assert_int_eq(th_fd_count(0), before);
}
END_TEST

/* Lower the soft fd limit to the lowest free fd: received fds cannot be
 * installed (MSG_CTRUNC).  Returns the limit to restore. */
static struct rlimit
nofile_full(void)
{
	struct rlimit old, rl;
	int fd;

	ck_assert_int_eq(getrlimit(RLIMIT_NOFILE, &old), 0);
	for (fd = 0; fcntl(fd, F_GETFD) != -1; fd++)
		;
	rl = old;
	rl.rlim_cur = (rlim_t)fd;
	ck_assert_int_eq(setrlimit(RLIMIT_NOFILE, &rl), 0);
	return old;
}

static void
send_three(struct wire_out *o, size_t blen)
{
	Pm__Error e = PM__ERROR__INIT;
	char *big = malloc(blen + 1);
	int fds[2];

	ck_assert_ptr_nonnull(big);
	memset(big, 'b', blen);
	big[blen] = '\0';
	e.message = big;
	fds[0] = open("/dev/null", O_RDONLY | O_CLOEXEC);
	fds[1] = open("/dev/null", O_RDONLY | O_CLOEXEC);
	ck_assert_int_eq(wire_out_frame(o, PM__TYPE__T_PING, 1, NULL, NULL,
	    0), 0);
	ck_assert_int_eq(wire_out_frame(o, PM__TYPE__T_ERROR, 2, &e.base,
	    fds, 2), 0);
	ck_assert_int_eq(wire_out_frame(o, PM__TYPE__T_PING, 3, NULL, NULL,
	    0), 0);
	free(big);
}

/* A reader out of fds: with keep_lost the frame that carried them comes
 * without them, marked, and the frames around it are intact; without,
 * the read is an EPROTO error.  Nothing leaks either way. */
START_TEST(t_fds_lost)
{
	static const size_t sizes[] = { 10, 200 << 10 };  /* one read, many */
	struct wire_out o;
	struct wire_in in;
	struct pm_frame f;
	struct rlimit old;
	const char *why;
	size_t k;
	uint32_t id;
	ssize_t r;

	for (k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
		wire_out_init(&o);
		wire_in_init(&in, 0);
		in.keep_lost = 1;
		send_three(&o, sizes[k]);
		/* the fds go with the first bytes of frame 2, and are closed
		 * here once sent: only then is the fd table filled */
		ck_assert_int_ge(wire_out_flush(&o, sp[0]), 0);
		ck_assert_int_lt(wire_out_pending(&o), sizes[k]);
		old = nofile_full();
		for (id = 1; id <= 3; id++) {
			while (wire_out_pending(&o) > 0)
				ck_assert_int_ge(wire_out_flush(&o, sp[0]), 0);
			ck_assert_int_eq(read_frame(&in, sp[1], &f, &why), 1);
			ck_assert_int_eq(f.id, id);
			ck_assert_int_eq(f.nfds, 0);
			ck_assert_int_eq(f.fds_lost, id == 2);
			if (id == 2)
				ck_assert_uint_gt(f.len, sizes[k]);
		}
		ck_assert_int_eq(setrlimit(RLIMIT_NOFILE, &old), 0);
		ck_assert_int_eq(wire_in_pending(&in), 0);
		wire_out_free(&o);
		wire_in_free(&in);
	}

	/* the default: the loss is an error */
	wire_out_init(&o);
	wire_in_init(&in, 0);
	send_three(&o, 10);
	ck_assert_int_eq(wire_out_flush(&o, sp[0]), 1);
	old = nofile_full();
	ck_assert(th_readable(sp[1], 5.0));
	errno = 0;
	r = wire_in_read(&in, sp[1]);	/* frames 1 and 2 come in one read */
	ck_assert_int_eq(r, -1);
	ck_assert_int_eq(errno, EPROTO);
	ck_assert_int_eq(setrlimit(RLIMIT_NOFILE, &old), 0);
	wire_out_free(&o);
	wire_in_free(&in);
}
END_TEST

/* Varints as the pool blobs carry them: values, a cut one, an overlong. */
START_TEST(t_varint)
{
	static const uint8_t ok[] = { 0x00, 0x7f, 0x80, 0x01, 0xac, 0x02,
	    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01 };
	static const uint64_t want[] = { 0, 127, 128, 300, UINT64_MAX };
	uint8_t cut[] = { 0x80, 0x80 }, over[11];
	const uint8_t *q = ok;
	uint64_t v;
	size_t i;

	for (i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		ck_assert_int_eq(wire_varint_get(&q, ok + sizeof(ok), &v), 0);
		ck_assert_uint_eq(v, want[i]);
	}
	ck_assert_ptr_eq(q, ok + sizeof(ok));
	ck_assert_int_eq(wire_varint_get(&q, ok + sizeof(ok), &v), -1);
	q = cut;
	ck_assert_int_eq(wire_varint_get(&q, cut + sizeof(cut), &v), -1);
	memset(over, 0xff, sizeof(over));
	q = over;
	ck_assert_int_eq(wire_varint_get(&q, over + sizeof(over), &v), -1);
}
END_TEST

START_TEST(t_memfd)
{
	static const char msg[] = "sealed payload";
	size_t big = 3u << 20, i;
	uint8_t *data, *back;
	char *rd;
	int fd, seals, ufd;

	fd = wire_memfd(msg, sizeof(msg));
	ck_assert_int_ge(fd, 0);
	ck_assert(is_cloexec(fd));
	seals = fcntl(fd, F_GET_SEALS);
	ck_assert_int_ne(seals, -1);
	ck_assert(seals & F_SEAL_WRITE);
	ck_assert(seals & F_SEAL_SHRINK);
	ck_assert(seals & F_SEAL_GROW);
	ck_assert(seals & F_SEAL_SEAL);
	ck_assert_int_eq(pwrite(fd, "X", 1, 0), -1);
	ck_assert_int_eq(ftruncate(fd, 1), -1);
	rd = wire_memfd_read(fd, sizeof(msg));
	ck_assert_ptr_nonnull(rd);
	ck_assert_mem_eq(rd, msg, sizeof(msg));
	free(rd);
	/* the wrong length is refused */
	ck_assert_ptr_null(wire_memfd_read(fd, sizeof(msg) + 1));
	ck_assert_ptr_null(wire_memfd_read(fd, sizeof(msg) - 1));
	close(fd);

	/* big, and empty */
	data = malloc(big);
	for (i = 0; i < big; i++)
		data[i] = (uint8_t)(i * 7 + (i >> 13));
	fd = wire_memfd(data, big);
	ck_assert_int_ge(fd, 0);
	back = wire_memfd_read(fd, big);
	ck_assert_ptr_nonnull(back);
	ck_assert_mem_eq(back, data, big);
	free(back);
	free(data);
	close(fd);
	fd = wire_memfd("", 0);
	ck_assert_int_ge(fd, 0);
	back = wire_memfd_read(fd, 0);
	ck_assert_ptr_nonnull(back);
	free(back);
	close(fd);

	/* an unsealed memfd (writable by its sender later) is refused */
	ufd = memfd_create("unsealed", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	ck_assert_int_ge(ufd, 0);
	ck_assert_int_eq(write(ufd, msg, sizeof(msg)), (ssize_t)sizeof(msg));
	ck_assert_ptr_null(wire_memfd_read(ufd, sizeof(msg)));
	/* sealed against growth only: still refused */
	ck_assert_int_eq(fcntl(ufd, F_ADD_SEALS, F_SEAL_GROW), 0);
	ck_assert_ptr_null(wire_memfd_read(ufd, sizeof(msg)));
	close(ufd);
	/* not a memfd at all */
	ufd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	ck_assert_ptr_null(wire_memfd_read(ufd, 0));
	close(ufd);
}
END_TEST

/* Frame i: a Result whose data is 3000 bytes of (i & 0xff); every 7th
 * carries a memfd holding i. */
static void
queue_frame(struct wire_out *o, uint32_t i)
{
	Pm__Result r = PM__RESULT__INIT;
	uint8_t data[3000];
	int fd;

	memset(data, (int)(i & 0xff), sizeof(data));
	r.ok = 1;
	r.data.data = data;
	r.data.len = sizeof(data);
	if (i % 7 == 0) {
		fd = wire_memfd(&i, sizeof(i));
		ck_assert_int_ge(fd, 0);
		ck_assert_int_eq(wire_out_frame(o, PM__TYPE__T_RESULT, i,
		    &r.base, &fd, 1), 0);
	} else
		ck_assert_int_eq(wire_out_frame(o, PM__TYPE__T_RESULT, i,
		    &r.base, NULL, 0), 0);
}

static void
check_frame(struct pm_frame *f, uint32_t i)
{
	Pm__Result *r;
	uint32_t *v;

	ck_assert_uint_eq(f->type, PM__TYPE__T_RESULT);
	ck_assert_uint_eq(f->id, i);
	r = pm__result__unpack(NULL, f->len, f->data);
	ck_assert_ptr_nonnull(r);
	ck_assert_uint_eq(r->data.len, 3000);
	ck_assert_uint_eq(r->data.data[0], i & 0xff);
	ck_assert_uint_eq(r->data.data[2999], i & 0xff);
	pm__result__free_unpacked(r, NULL);
	ck_assert_int_eq(f->nfds, i % 7 == 0 ? 1 : 0);
	if (f->nfds == 1) {
		v = wire_memfd_read(f->fds[0], sizeof(*v));
		ck_assert_ptr_nonnull(v);
		ck_assert_uint_eq(*v, i);
		free(v);
	}
	wire_frame_close(f);
}

START_TEST(t_out_queues)
{
	struct wire_out o;
	struct wire_in in;
	struct pm_frame f;
	const char *why;
	uint32_t sent = 0, got = 0, total;
	int sz = 4096, r, blocked = 0;

	ck_assert_int_eq(setsockopt(sp[0], SOL_SOCKET, SO_SNDBUF, &sz,
	    sizeof(sz)), 0);
	ck_assert_int_eq(fcntl(sp[0], F_SETFL, O_NONBLOCK), 0);
	wire_out_init(&o);
	wire_in_init(&in, 0);

	/* fill until the socket is full; the rest stays queued */
	while (!blocked && sent < 100000) {
		queue_frame(&o, ++sent);
		r = wire_out_flush(&o, sp[0]);
		ck_assert_int_ne(r, -1);
		blocked = r == 0;
	}
	ck_assert_msg(blocked, "socket never filled");
	for (total = sent + 50; sent < total;)
		queue_frame(&o, ++sent);
	ck_assert_int_eq(wire_out_flush(&o, sp[0]), 0);
	ck_assert_uint_gt(wire_out_pending(&o), 50 * 3000);

	/* the reader catches up; flushing resumes where it stopped */
	while (got < sent) {
		r = wire_in_next(&in, &f, &why);
		ck_assert_msg(r != -1, "frame %u: %s", got + 1, why);
		if (r == 1) {
			check_frame(&f, ++got);
			continue;
		}
		r = wire_out_flush(&o, sp[0]);
		ck_assert_int_ne(r, -1);
		ck_assert(th_readable(sp[1], 5.0));
		ck_assert_int_gt(wire_in_read(&in, sp[1]), 0);
	}
	ck_assert_uint_eq(wire_out_pending(&o), 0);
	ck_assert_int_eq(wire_out_flush(&o, sp[0]), 1);
	wire_out_free(&o);
	wire_in_free(&in);
}
END_TEST

START_TEST(t_out_free_closes)
{
	struct wire_out o;
	uint32_t i = 0;
	int sz = 4096, r;

	ck_assert_int_eq(setsockopt(sp[0], SOL_SOCKET, SO_SNDBUF, &sz,
	    sizeof(sz)), 0);
	ck_assert_int_eq(fcntl(sp[0], F_SETFL, O_NONBLOCK), 0);
	wire_out_init(&o);
	do {
		queue_frame(&o, ++i);
		r = wire_out_flush(&o, sp[0]);
		ck_assert_int_ne(r, -1);
	} while (r == 1 && i < 100000);
	ck_assert_int_eq(r, 0);
	for (; i % 7 != 0 || i < 200;)		/* more queued fds */
		queue_frame(&o, ++i);
	ck_assert_int_gt(th_fd_count(0), base_fds + 2 + 10);
	wire_out_free(&o);
	/* what was sent is in sp[1]'s queue: drop it with the socket */
	close(sp[1]);
	sp[1] = -1;
	ck_assert_int_eq(th_fd_count(0), base_fds + 1);
	ck_assert_uint_eq(wire_out_pending(&o), 0);
}
END_TEST

/* Received but unclaimed fds are closed by wire_in_free. */
START_TEST(t_in_free_closes)
{
	struct wire_in in;
	uint8_t buf[64];
	size_t len;
	int fds[3], i;

	for (i = 0; i < 3; i++)
		fds[i] = open("/dev/null", O_RDONLY | O_CLOEXEC);
	len = th_frame(buf, sizeof(buf), PM_WIRE_VERSION, PM__TYPE__T_PING, 1,
	    3, NULL);
	/* header only so far: the frame is incomplete but its fds are in */
	((struct pm_hdr *)(void *)buf)->len = 10;
	ck_assert_int_eq(th_send(sp[0], buf, len, fds, 3), 0);
	for (i = 0; i < 3; i++)
		close(fds[i]);
	wire_in_init(&in, 0);
	ck_assert(th_readable(sp[1], 5.0));
	ck_assert_int_gt(wire_in_read(&in, sp[1]), 0);
	ck_assert_int_eq(in.nfdq, 3);
	ck_assert_uint_eq(wire_in_pending(&in), PM_WIRE_HDR);
	wire_in_free(&in);
	ck_assert_int_eq(th_fd_count(0), base_fds + 2);
}
END_TEST

static Suite *
wire_suite(void)
{
	Suite *s = suite_create("wire");
	TCase *tc = th_tcase(s, "wire", setup, teardown, 60);

	tcase_add_test(tc, t_roundtrip);
	tcase_add_test(tc, t_fds);
	tcase_add_test(tc, t_several_in_one_read);
	tcase_add_test(tc, t_byte_by_byte);
	tcase_add_test(tc, t_oversized);
	tcase_add_test(tc, t_bad_magic);
	tcase_add_test(tc, t_bad_version);
	tcase_add_test(tc, t_nfds_mismatch);
	tcase_add_test(tc, t_fd_flood);
	/* valgrind keeps its own fd limit: the kernel installs the fds */
	if (!th_valgrind())
		tcase_add_test(tc, t_fds_lost);
	tcase_add_test(tc, t_memfd);
	tcase_add_test(tc, t_varint);
	tcase_add_test(tc, t_out_queues);
	tcase_add_test(tc, t_out_free_closes);
	tcase_add_test(tc, t_in_free_closes);
	return s;
}

int
main(void)
{
	return th_run_suite(wire_suite());
}
