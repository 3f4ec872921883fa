/*
 * wire.c - framing, fd passing and buffers for every pmd link.
 */
#include <sys/types.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "wire.h"

#define WIRE_READ_MIN	(64u << 10)

void
wire_in_init(struct wire_in *in, uint32_t max_frame)
{
	memset(in, 0, sizeof(*in));
	in->max_frame = max_frame ? max_frame : PM_WIRE_MAX_FRAME;
}

void
wire_in_free(struct wire_in *in)
{
	int i;

	for (i = 0; i < in->nfdq; i++)
		close(in->fdq[i]);
	free(in->buf);
	memset(in, 0, sizeof(*in));
}

static int
wire_in_reserve(struct wire_in *in, size_t want)
{
	size_t ncap;
	uint8_t *nb;

	if (in->off > 0 && (in->off == in->len || in->cap - in->len < want)) {
		memmove(in->buf, in->buf + in->off, in->len - in->off);
		in->len -= in->off;
		if (in->lost) {
			in->lost_at -= in->lost_at < in->off ? in->lost_at :
			    in->off;
			in->lost_end -= in->lost_end < in->off ?
			    in->lost_end : in->off;
		}
		in->off = 0;
	}
	if (in->cap - in->len >= want)
		return 0;
	ncap = in->cap ? in->cap : in->read_min ? in->read_min :
	    WIRE_READ_MIN;
	while (ncap - in->len < want)
		ncap *= 2;
	if ((nb = realloc(in->buf, ncap)) == NULL)
		return -1;
	in->buf = nb;
	in->cap = ncap;
	return 0;
}

int
wire_cmsg_fds(struct msghdr *msg, int *fds, int max)
{
	struct cmsghdr *c;
	int *cfds, n, i, got = 0;

	for (c = CMSG_FIRSTHDR(msg); c != NULL; c = CMSG_NXTHDR(msg, c)) {
		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		cfds = (int *)(void *)CMSG_DATA(c);
		n = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
		for (i = 0; i < n; i++, got++) {
			if (got < max)
				fds[got] = cfds[i];
			else
				close(cfds[i]);
		}
	}
	return got;
}

void
wire_cmsg_put(struct msghdr *msg, void *cbuf, const int *fds, int n)
{
	struct cmsghdr *c;

	if (n <= 0) {
		msg->msg_control = NULL;
		msg->msg_controllen = 0;
		return;
	}
	memset(cbuf, 0, CMSG_SPACE(sizeof(int) * (size_t)n));
	msg->msg_control = cbuf;
	msg->msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)n);
	c = CMSG_FIRSTHDR(msg);
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)n);
	memcpy(CMSG_DATA(c), fds, sizeof(int) * (size_t)n);
}

static void
wire_in_take_cmsg(struct wire_in *in, struct msghdr *msg, int *overflow)
{
	int room = PM_WIRE_FDQ - in->nfdq, n;

	n = wire_cmsg_fds(msg, in->fdq + in->nfdq, room);
	if (n > room) {
		*overflow = 1;
		n = room;
	}
	in->nfdq += n;
}

ssize_t
wire_in_read(struct wire_in *in, int sock)
{
	union {
		struct cmsghdr hdr;
		char buf[CMSG_SPACE(sizeof(int) * PM_WIRE_MAX_FDS)];
	} cbuf;
	struct msghdr msg;
	struct iovec iov;
	ssize_t n;
	int overflow = 0, nfdq0 = in->nfdq;

	if (wire_in_reserve(in, in->read_min ? in->read_min :
	    WIRE_READ_MIN) == -1) {
		errno = ENOMEM;
		return -1;
	}
	iov.iov_base = in->buf + in->len;
	iov.iov_len = in->cap - in->len;
	memset(&msg, 0, sizeof(msg));
	msg.msg_iov = &iov;
	msg.msg_iovlen = 1;
	msg.msg_control = cbuf.buf;
	msg.msg_controllen = sizeof(cbuf.buf);
	do {
		n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
	} while (n == -1 && errno == EINTR);
	if (n == -1)
		return -1;
	wire_in_take_cmsg(in, &msg, &overflow);
	if (overflow) {
		errno = EPROTO;
		return -1;
	}
	if (msg.msg_flags & MSG_CTRUNC) {
		/* The fds came with the last bytes read (the kernel ends a
		 * read after data carrying fds); those installed are closed,
		 * and the frame starting in these bytes that declares fds is
		 * marked.  A full control buffer means too many fds were
		 * sent at once, and a second loss before the first is
		 * matched cannot be placed: both are protocol errors. */
		if (!in->keep_lost || in->lost ||
		    in->nfdq - nfdq0 >= PM_WIRE_MAX_FDS) {
			errno = EPROTO;
			return -1;
		}
		while (in->nfdq > nfdq0)
			close(in->fdq[--in->nfdq]);
		in->lost = 1;
		in->lost_at = in->len;
		in->lost_end = in->len + (size_t)n;
	}
	in->len += (size_t)n;
	return n;
}

size_t
wire_in_pending(const struct wire_in *in)
{
	return in->len - in->off;
}

void
wire_in_trim(struct wire_in *in)
{
	if (in->off != in->len || in->cap <= PM_WIRE_KEEP || in->lost)
		return;
	free(in->buf);
	in->buf = NULL;
	in->cap = in->len = in->off = 0;
}

int
wire_in_next(struct wire_in *in, struct pm_frame *f, const char **why)
{
	struct pm_hdr h;
	size_t avail = in->len - in->off, total;
	int i, lost;

	*why = NULL;
	if (avail < PM_WIRE_HDR) {
		if (avail == 0 && in->nfdq > 0) {
			*why = "fds sent without a frame";
			return -1;
		}
		return 0;
	}
	memcpy(&h, in->buf + in->off, sizeof(h));
	if (h.magic != PM_WIRE_MAGIC) {
		*why = "bad frame magic";
		return -1;
	}
	if (h.version != PM_WIRE_VERSION) {
		*why = "unsupported protocol version";
		return -1;
	}
	if (h.nfds > PM_WIRE_MAX_FDS) {
		*why = "too many fds in frame";
		return -1;
	}
	if (h.len > in->max_frame) {
		*why = "frame too large";
		return -1;
	}
	lost = in->lost && h.nfds > 0 && in->off >= in->lost_at &&
	    in->off < in->lost_end;
	if (in->lost && !lost && in->off >= in->lost_end) {
		*why = "fds lost with no frame to carry them";
		return -1;
	}
	total = PM_WIRE_HDR + (size_t)h.len;
	if (avail < total) {
		if (wire_in_reserve(in, total - avail) == -1) {
			*why = "out of memory";
			return -1;
		}
		return 0;
	}
	/* A frame's fds came with its first byte; with nothing after it
	 * the queue must hold exactly its own. */
	if (lost) {
		in->lost = 0;
		h.nfds = 0;
	}
	if (in->nfdq < h.nfds || (avail == total && in->nfdq != h.nfds)) {
		*why = "frame fd count does not match what was sent";
		return -1;
	}
	f->type = h.type;
	f->id = h.id;
	f->len = h.len;
	f->data = in->buf + in->off + PM_WIRE_HDR;
	f->nfds = h.nfds;
	f->fds_lost = lost;
	for (i = 0; i < h.nfds; i++)
		f->fds[i] = in->fdq[i];
	memmove(in->fdq, in->fdq + h.nfds,
	    sizeof(int) * (size_t)(in->nfdq - h.nfds));
	in->nfdq -= h.nfds;
	in->off += total;
	return 1;
}

void
wire_frame_close(struct pm_frame *f)
{
	int i;

	for (i = 0; i < f->nfds; i++)
		if (f->fds[i] >= 0)
			close(f->fds[i]);
	f->nfds = 0;
}

int
wire_frame_take(struct pm_frame *f, int i)
{
	int fd;

	if (i < 0 || i >= f->nfds)
		return -1;
	fd = f->fds[i];
	f->fds[i] = -1;
	return fd;
}

void
wire_out_init(struct wire_out *o)
{
	memset(o, 0, sizeof(*o));
}

void
wire_out_free(struct wire_out *o)
{
	size_t a;
	int i;

	for (a = o->attoff; a < o->natt; a++)
		for (i = 0; i < o->att[a].n; i++)
			close(o->att[a].fds[i]);
	free(o->buf);
	free(o->att);
	memset(o, 0, sizeof(*o));
}

static void
close_fds(const int *fds, int n)
{
	int i;

	for (i = 0; i < n; i++)
		if (fds[i] >= 0)
			close(fds[i]);
}

int
wire_out_frame(struct wire_out *o, uint32_t type, uint32_t id,
    const ProtobufCMessage *m, const int *fds, int nfds)
{
	struct pm_hdr h;
	size_t plen = m ? protobuf_c_message_get_packed_size(m) : 0;
	size_t need, ncap;
	uint8_t *nb;
	struct wire_att *na;

	if (nfds < 0 || nfds > PM_WIRE_MAX_FDS || plen > UINT32_MAX) {
		close_fds(fds, nfds);
		errno = EINVAL;
		return -1;
	}
	if (o->off == o->len) {
		o->off = o->len = 0;
		o->natt = o->attoff = 0;
	}
	need = PM_WIRE_HDR + plen;
	if (o->cap - o->len < need) {
		ncap = o->cap ? o->cap : 4096;
		while (ncap - o->len < need)
			ncap *= 2;
		if ((nb = realloc(o->buf, ncap)) == NULL) {
			close_fds(fds, nfds);
			errno = ENOMEM;
			return -1;
		}
		o->buf = nb;
		o->cap = ncap;
	}
	if (nfds > 0 && o->natt == o->attcap) {
		ncap = o->attcap ? o->attcap * 2 : 8;
		if ((na = realloc(o->att, ncap * sizeof(*na))) == NULL) {
			close_fds(fds, nfds);
			errno = ENOMEM;
			return -1;
		}
		o->att = na;
		o->attcap = ncap;
	}
	memset(&h, 0, sizeof(h));
	h.magic = PM_WIRE_MAGIC;
	h.version = PM_WIRE_VERSION;
	h.nfds = (uint8_t)nfds;
	h.type = type;
	h.id = id;
	h.len = (uint32_t)plen;
	if (nfds > 0) {
		o->att[o->natt].at = o->len;
		o->att[o->natt].n = nfds;
		memcpy(o->att[o->natt].fds, fds, sizeof(int) * (size_t)nfds);
		o->natt++;
	}
	memcpy(o->buf + o->len, &h, sizeof(h));
	if (m)
		protobuf_c_message_pack(m, o->buf + o->len + PM_WIRE_HDR);
	o->len += need;
	return 0;
}

size_t
wire_out_pending(const struct wire_out *o)
{
	return o->len - o->off;
}

int
wire_out_flush(struct wire_out *o, int sock)
{
	union {
		struct cmsghdr hdr;
		char buf[CMSG_SPACE(sizeof(int) * PM_WIRE_MAX_FDS)];
	} cbuf;
	struct msghdr msg;
	struct iovec iov;
	struct wire_att *a;
	size_t end;
	ssize_t n;

	while (o->off < o->len) {
		a = o->attoff < o->natt ? &o->att[o->attoff] : NULL;
		end = o->len;
		memset(&msg, 0, sizeof(msg));
		if (a != NULL && a->at == o->off) {
			/* this frame's fds go with its first byte */
			wire_cmsg_put(&msg, cbuf.buf, a->fds, a->n);
			if (o->attoff + 1 < o->natt)
				end = o->att[o->attoff + 1].at;
		} else if (a != NULL)
			end = a->at;
		iov.iov_base = o->buf + o->off;
		iov.iov_len = end - o->off;
		msg.msg_iov = &iov;
		msg.msg_iovlen = 1;
		n = sendmsg(sock, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n == -1) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return 0;
			return -1;
		}
		if (msg.msg_control != NULL) {
			close_fds(a->fds, a->n);
			o->attoff++;
		}
		o->off += (size_t)n;
	}
	o->off = o->len = 0;
	o->natt = o->attoff = 0;
	if (o->cap > PM_WIRE_KEEP) {	/* grown for a large frame */
		free(o->buf);
		o->buf = NULL;
		o->cap = 0;
	}
	return 1;
}

int64_t
wire_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int64_t
wire_deadline(double timeout)
{
	if (timeout < 0)
		return -1;
	if (timeout > 1e9)
		timeout = 1e9;
	return wire_now_ns() + (int64_t)(timeout * 1e9);
}

/* 1 ready, 0 deadline passed, -1 error.  EINTR is retried. */
int
wire_poll_ms(int64_t deadline)
{
	int64_t left;

	if (deadline < 0)
		return -1;
	left = deadline - wire_now_ns();
	if (left <= 0)
		return 0;
	if (left / 1000000 >= INT_MAX)
		return INT_MAX;
	return (int)((left + 999999) / 1000000);
}

int
wire_wait(int fd, short events, int64_t deadline)
{
	struct pollfd p;
	int r;

	for (;;) {
		p.fd = fd;
		p.events = events;
		p.revents = 0;
		r = poll(&p, 1, wire_poll_ms(deadline));
		if (r == -1 && errno == EINTR)
			continue;
		if (r == -1)
			return -1;
		if (r == 1)
			return 1;
		if (deadline >= 0 && wire_now_ns() >= deadline)
			return 0;
	}
}

int
wire_out_flush_wait(struct wire_out *o, int sock, int64_t deadline)
{
	int r;

	while ((r = wire_out_flush(o, sock)) == 0) {
		r = wire_wait(sock, POLLOUT, deadline);
		if (r <= 0) {
			if (r == 0)
				errno = ETIMEDOUT;
			return -1;
		}
	}
	return r;
}

int
wire_pwrite_all(int fd, const void *data, size_t len, uint64_t off)
{
	const uint8_t *b = data;
	ssize_t n;

	while (len > 0) {
		n = pwrite(fd, b, len, (off_t)off);
		if (n == -1 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		b += n;
		len -= (size_t)n;
		off += (uint64_t)n;
	}
	return 0;
}

int
wire_memfd(const void *data, size_t len)
{
	int fd;

	if ((fd = memfd_create("pm-data", MFD_CLOEXEC | MFD_ALLOW_SEALING)) == -1)
		return -1;
	if (wire_pwrite_all(fd, data, len, 0) == -1) {
		close(fd);
		return -1;
	}
	if (fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE |
	    F_SEAL_SEAL) == -1) {
		close(fd);
		return -1;
	}
	return fd;
}

void *
wire_memfd_read(int fd, size_t len)
{
	struct stat st;
	uint8_t *buf;
	size_t done = 0;
	ssize_t n;
	int seals;

	seals = fcntl(fd, F_GET_SEALS);
	if (seals == -1 || !(seals & F_SEAL_WRITE) || !(seals & F_SEAL_SHRINK) ||
	    fstat(fd, &st) == -1 || (uint64_t)st.st_size != (uint64_t)len) {
		errno = EPROTO;
		return NULL;
	}
	if ((buf = malloc(len ? len : 1)) == NULL)
		return NULL;
	while (done < len) {
		n = pread(fd, buf + done, len - done, (off_t)done);
		if (n == -1 && errno == EINTR)
			continue;
		if (n <= 0) {
			free(buf);
			errno = EPROTO;
			return NULL;
		}
		done += (size_t)n;
	}
	return buf;
}

int
wire_varint_get(const uint8_t **p, const uint8_t *end, uint64_t *v)
{
	uint64_t r = 0;
	int shift;

	for (shift = 0; shift < 64 && *p < end; shift += 7) {
		r |= (uint64_t)(**p & 0x7f) << shift;
		if (*(*p)++ < 0x80) {
			*v = r;
			return 0;
		}
	}
	return -1;
}
