/*
 * pipe.c - message pipes between two processes (Python's Pipe()), with
 * fds carried alongside.
 *
 * An end is an AF_UNIX SOCK_SEQPACKET socket: one message is one packet,
 * a pm_hdr (proto/wire.h) then the bytes, and its fds ride in the same
 * sendmsg(2).  Messages of PM_WIRE_MEMFD_MIN bytes or more go as a sealed
 * memfd (wire_memfd), the first fd of the packet, as Pool and Process
 * payloads do.  Nothing is read ahead, so the socket is readable exactly
 * when a message or the end is there.
 *
 * A one-way pipe is a socketpair whose receiving end is shut down for
 * writing: the kernel then refuses the wrong direction in any process
 * holding either end, and an adopted end learns its direction from the
 * socket itself (pipe_learn_way).
 */
#include <sys/types.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pmclient_int.h"

#define PIPE_T_INLINE	1		/* the bytes follow the header */
#define PIPE_T_MEMFD	2		/* the bytes are in fds[0] */
#define PIPE_RBUF	(PM_WIRE_HDR + PM_WIRE_MEMFD_MIN)
#define PIPE_ALL_FDS	(PM_PIPE_MAX_FDS + 1)	/* with a memfd */

enum pipe_way {
	PIPE_BOTH,			/* duplex, or not known yet */
	PIPE_RECV_ONLY,
	PIPE_SEND_ONLY
};

struct pm_pipe {
	int		 fd;
	enum pipe_way	 way;
	int		 has_peer;	/* peer_* came from pmd */
	pid_t		 peer_pid;
	uid_t		 peer_uid;
	uint8_t		*rbuf;		/* PIPE_RBUF: one packet */
};

union pipe_cbuf {
	struct cmsghdr	 hdr;
	char		 buf[CMSG_SPACE(sizeof(int) * PIPE_ALL_FDS)];
};

static pm_pipe *
pipe_wrap(int fd, enum pipe_way way)
{
	pm_pipe *p;

	if ((p = calloc(1, sizeof(*p))) == NULL) {
		pmc_err(PM_ENOMEM, "out of memory");
		return NULL;
	}
	p->fd = fd;
	p->way = way;
	return p;
}

int
pm_pipe_new(pm_pipe **a, pm_pipe **b, int duplex)
{
	int sv[2];

	if (a == NULL || b == NULL)
		return pmc_err(PM_EINVAL, "pm_pipe_new: NULL end");
	*a = *b = NULL;
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) == -1)
		return pmc_err_sys("socketpair");
	if (!duplex && shutdown(sv[0], SHUT_WR) == -1) {
		pmc_err_sys("shutdown");
		goto fail;
	}
	if ((*a = pipe_wrap(sv[0], duplex ? PIPE_BOTH : PIPE_RECV_ONLY)) ==
	    NULL)
		goto fail;
	if ((*b = pipe_wrap(sv[1], duplex ? PIPE_BOTH : PIPE_SEND_ONLY)) ==
	    NULL) {
		free(*a);
		*a = NULL;
		goto fail;
	}
	return pmc_ok();
fail:
	close(sv[0]);
	close(sv[1]);
	return pm_last_error();
}

/* poll(2) revents of the end right now (POLLIN | POLLRDHUP asked). */
static short
pipe_revents(pm_pipe *p)
{
	struct pollfd pf;

	pf.fd = p->fd;
	pf.events = POLLIN | POLLRDHUP;
	pf.revents = 0;
	while (poll(&pf, 1, 0) == -1 && errno == EINTR)
		;
	return pf.revents;
}

/* An end shut down one way while its peer lives: a send-only end reads
 * as "peer stopped writing" (POLLRDHUP without POLLHUP).  A receive-only
 * end shows nothing until it sends (pipe_refused). */
static void
pipe_learn_way(pm_pipe *p)
{
	short ev = pipe_revents(p);

	if ((ev & POLLRDHUP) && !(ev & POLLHUP))
		p->way = PIPE_SEND_ONLY;
}

static int
pipe_wrong_way(pm_pipe *p, int sending)
{
	if (sending && p->way == PIPE_RECV_ONLY)
		return pmc_err(PM_EPERM, "this end of a one-way pipe only "
		    "receives");
	if (!sending && p->way == PIPE_SEND_ONLY)
		return pmc_err(PM_EPERM, "this end of a one-way pipe only "
		    "sends");
	return PM_OK;
}

/* The kernel refused a send: the peer is gone (the socket is hung up),
 * or this end is shut down for writing (a one-way pipe's receiver). */
static int
pipe_refused(pm_pipe *p)
{
	if (pipe_revents(p) & POLLHUP)
		return pmc_err(PM_ECLOSED, "the other end of the pipe is "
		    "closed");
	p->way = PIPE_RECV_ONLY;
	return pipe_wrong_way(p, 1);
}

static int
pipe_usable(pm_pipe *p, int sending)
{
	if (p == NULL)
		return pmc_err(PM_EINVAL, "no pipe");
	return pipe_wrong_way(p, sending);
}

/* One packet: header, inline bytes (mfd < 0) or the memfd, then fds.
 * 1 sent; 0 the packet is too big for the socket (EMSGSIZE); < 0 code. */
static int
pipe_sendmsg(pm_pipe *p, const void *data, size_t len, int mfd,
    const int *fds, size_t nfds)
{
	union pipe_cbuf cbuf;
	struct pm_hdr h;
	struct msghdr msg;
	struct iovec iov[2];
	int all[PIPE_ALL_FDS], n = 0;
	ssize_t r;

	if (mfd >= 0)
		all[n++] = mfd;
	if (nfds > 0)
		memcpy(all + n, fds, sizeof(int) * nfds);
	n += (int)nfds;
	memset(&h, 0, sizeof(h));
	h.magic = PM_WIRE_MAGIC;
	h.version = PM_WIRE_VERSION;
	h.nfds = (uint8_t)n;
	h.type = mfd >= 0 ? PIPE_T_MEMFD : PIPE_T_INLINE;
	h.len = (uint32_t)len;
	iov[0].iov_base = &h;
	iov[0].iov_len = sizeof(h);
	iov[1].iov_base = (void *)(uintptr_t)data;
	iov[1].iov_len = mfd >= 0 ? 0 : len;
	memset(&msg, 0, sizeof(msg));
	msg.msg_iov = iov;
	msg.msg_iovlen = iov[1].iov_len > 0 ? 2 : 1;
	wire_cmsg_put(&msg, cbuf.buf, all, n);
	for (;;) {
		r = sendmsg(p->fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (r >= 0)
			return 1;
		switch (errno) {
		case EINTR:
			continue;
		case EAGAIN:
			if (wire_wait(p->fd, POLLOUT, -1) == -1)
				return pmc_err_sys("poll");
			continue;
		case EMSGSIZE:
			if (mfd < 0)
				return 0;
			return pmc_err_sys("sendmsg");
		case EPIPE:
		case ECONNRESET:
		case ENOTCONN:
			return pipe_refused(p);
		case EBADF:
			return pmc_err(PM_EINVAL, "an fd to send is not open");
		default:
			return pmc_err_sys("sendmsg");
		}
	}
}

int
pm_pipe_send_fds(pm_pipe *p, const void *data, size_t len, const int *fds,
    size_t nfds)
{
	int mfd = -1, big = len >= PM_WIRE_MEMFD_MIN, r;

	if ((r = pipe_usable(p, 1)) != PM_OK)
		return r;
	if (data == NULL && len > 0)
		return pmc_err(PM_EINVAL, "no data for %zu bytes", len);
	if (fds == NULL && nfds > 0)
		return pmc_err(PM_EINVAL, "no fds for %zu", nfds);
	if (len > PM_PIPE_MAX_MSG)
		return pmc_err(PM_ELIMIT, "message of %zu bytes is over "
		    "PM_PIPE_MAX_MSG (%lu)", len, PM_PIPE_MAX_MSG);
	if (nfds > PM_PIPE_MAX_FDS)
		return pmc_err(PM_ELIMIT, "%zu fds is over PM_PIPE_MAX_FDS "
		    "(%d)", nfds, PM_PIPE_MAX_FDS);
	for (;;) {
		if (big && (mfd = wire_memfd(data, len)) == -1)
			return pmc_err_sys("memfd of %zu bytes", len);
		r = pipe_sendmsg(p, data, len, mfd, fds, nfds);
		if (r != 0 || big)
			break;
		big = 1;	/* the socket takes smaller packets */
	}
	if (mfd >= 0)
		close(mfd);
	return r == 1 ? pmc_ok() : r;
}

int
pm_pipe_send(pm_pipe *p, const void *data, size_t len)
{
	return pm_pipe_send_fds(p, data, len, NULL, 0);
}

static void
close_all(const int *fds, int n)
{
	int i;

	for (i = 0; i < n; i++)
		close(fds[i]);
}

/* The packet in p->rbuf (n bytes, fds got): its message into out, the
 * user's fds into fds (room for maxfds), the others closed. */
static int
pipe_unpack(pm_pipe *p, size_t n, int *got, int ngot, pm_bytes *out,
    int *fds, size_t maxfds, size_t *nfds)
{
	struct pm_hdr h;
	size_t nuser, keep, i;
	int memfd;

	memcpy(&h, p->rbuf, n < sizeof(h) ? n : sizeof(h));
	memfd = n >= sizeof(h) && h.type == PIPE_T_MEMFD;
	if (n < sizeof(h) || h.magic != PM_WIRE_MAGIC ||
	    h.version != PM_WIRE_VERSION || h.nfds != ngot ||
	    (h.type != PIPE_T_INLINE && !memfd) ||
	    (!memfd && h.len != n - sizeof(h)) ||
	    (memfd && (n != sizeof(h) || ngot < 1 ||
	    h.len > PM_PIPE_MAX_MSG))) {
		close_all(got, ngot);
		return pmc_err(PM_EPROTO, "malformed message on a pipe "
		    "(%zu bytes, %d fds): dropped", n, ngot);
	}
	if (memfd) {
		out->data = wire_memfd_read(got[0], h.len);
		close(got[0]);
	} else if ((out->data = malloc(h.len ? h.len : 1)) != NULL)
		memcpy(out->data, p->rbuf + sizeof(h), h.len);
	if (out->data == NULL) {
		close_all(got + memfd, ngot - memfd);
		if (errno == EPROTO)
			return pmc_err(PM_EPROTO, "a pipe message's memfd is "
			    "not sealed or not %u bytes: dropped", h.len);
		return pmc_err(PM_ENOMEM, "no memory for a message of %u "
		    "bytes", h.len);
	}
	out->len = h.len;
	nuser = (size_t)(ngot - memfd);
	keep = nuser < maxfds ? nuser : maxfds;
	for (i = 0; i < nuser; i++) {
		if (i < keep)
			fds[i] = got[memfd + i];
		else
			close(got[memfd + i]);
	}
	if (nfds != NULL)
		*nfds = keep;
	if (nuser > maxfds)
		return pmc_err(PM_ELIMIT, "the message came with %zu fds, "
		    "room for %zu: the others are closed", nuser, maxfds);
	return pmc_ok();
}

/* recvmsg of one packet into p->rbuf, its fds into got: PM_OK with *len
 * its size (0: nothing came, see pipe_nothing), 1 to wait again, or a
 * code. */
static int
pipe_recvmsg(pm_pipe *p, int block, size_t *len, int *got, int *ngot)
{
	union pipe_cbuf cbuf;
	struct msghdr msg;
	struct iovec iov;
	ssize_t n;

	iov.iov_base = p->rbuf;
	iov.iov_len = PIPE_RBUF;
	memset(&msg, 0, sizeof(msg));
	msg.msg_iov = &iov;
	msg.msg_iovlen = 1;
	msg.msg_control = cbuf.buf;
	msg.msg_controllen = sizeof(cbuf.buf);
	if ((n = recvmsg(p->fd, &msg, (block ? 0 : MSG_DONTWAIT) |
	    MSG_CMSG_CLOEXEC)) == -1) {
		/* EAGAIN: taken by another holder; ECONNRESET: the peer
		 * left unread data behind, reported once before the rest */
		if (errno == EINTR || errno == EAGAIN || errno == ECONNRESET)
			return 1;
		return pmc_err_sys("recvmsg");
	}
	*ngot = wire_cmsg_fds(&msg, got, PIPE_ALL_FDS);
	if (*ngot > PIPE_ALL_FDS)
		*ngot = PIPE_ALL_FDS;
	if (msg.msg_flags & MSG_CTRUNC) {
		close_all(got, *ngot);
		if (*ngot == PIPE_ALL_FDS)
			return pmc_err(PM_EPROTO, "a message came with more "
			    "than PM_PIPE_MAX_FDS fds: dropped");
		errno = EMFILE;
		return pmc_err_sys("a message's fds could not all be "
		    "received (dropped)");
	}
	if (msg.msg_flags & MSG_TRUNC) {
		close_all(got, *ngot);
		return pmc_err(PM_EPROTO, "a packet of more than %u bytes "
		    "on a pipe: dropped", (unsigned)PIPE_RBUF);
	}
	*len = (size_t)n;
	return PM_OK;
}

/* recvmsg read 0 bytes: the end (the peer is gone), this end only sends
 * (the peer shut its writing down), or an empty packet (not ours). */
static int
pipe_nothing(pm_pipe *p)
{
	short ev = pipe_revents(p);
	int queued = 0;

	if (ev & POLLHUP) {
		if (ioctl(p->fd, FIONREAD, &queued) == 0 && queued > 0)
			return pmc_err(PM_EPROTO, "an empty packet on a pipe: "
			    "dropped");
		return pmc_err(PM_ECLOSED, "the other end of the pipe is "
		    "closed");
	}
	if (ev & POLLRDHUP) {
		p->way = PIPE_SEND_ONLY;
		return pipe_wrong_way(p, 0);
	}
	return pmc_err(PM_EPROTO, "an empty packet on a pipe: dropped");
}

int
pm_pipe_recv_fds(pm_pipe *p, pm_bytes *out, int *fds, size_t maxfds,
    size_t *nfds, double timeout)
{
	int got[PIPE_ALL_FDS], ngot = 0, block, r;
	int64_t deadline;
	size_t n = 0;

	if (nfds != NULL)
		*nfds = 0;
	if (out != NULL)
		out->data = NULL, out->len = 0;
	if ((r = pipe_usable(p, 0)) != PM_OK)
		return r;
	if (out == NULL || (fds == NULL && maxfds > 0) || isnan(timeout))
		return pmc_err(PM_EINVAL, "pm_pipe_recv: bad argument");
	if (p->rbuf == NULL && (p->rbuf = malloc(PIPE_RBUF)) == NULL)
		return pmc_err(PM_ENOMEM, "out of memory");
	/* without a timeout, recvmsg itself waits (one system call); with
	 * one, or on an fd someone made non-blocking, poll waits */
	deadline = wire_deadline(timeout);
	for (block = deadline < 0;; block = 0) {
		if (!block && (r = wire_wait(p->fd, POLLIN, deadline)) <= 0) {
			if (r == 0)
				return pmc_err(PM_ETIMEDOUT, "no message "
				    "within %g s", timeout);
			return pmc_err_sys("poll");
		}
		if ((r = pipe_recvmsg(p, block, &n, got, &ngot)) == 1)
			continue;
		if (r != PM_OK)
			return r;
		if (n == 0) {
			close_all(got, ngot);	/* an empty packet's */
			return pipe_nothing(p);
		}
		return pipe_unpack(p, n, got, ngot, out, fds, maxfds, nfds);
	}
}

int
pm_pipe_recv(pm_pipe *p, pm_bytes *out, double timeout)
{
	return pm_pipe_recv_fds(p, out, NULL, 0, NULL, timeout);
}

int
pm_pipe_poll(pm_pipe *p, double timeout)
{
	int r;

	if ((r = pipe_usable(p, 0)) != PM_OK)
		return r;
	if (isnan(timeout))
		return pmc_err(PM_EINVAL, "timeout is not a number");
	r = wire_wait(p->fd, POLLIN, wire_deadline(timeout));
	if (r == -1)
		return pmc_err_sys("poll");
	pmc_ok();
	return r;
}

int
pm_pipe_fd(pm_pipe *p)
{
	if (p == NULL)
		return pmc_err(PM_EINVAL, "no pipe");
	return p->fd;
}

pm_pipe *
pm_pipe_adopt(int fd)
{
	socklen_t sl;
	pm_pipe *p;
	int type = 0, dom = 0, fl;

	sl = sizeof(type);
	if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &sl) == -1 ||
	    (sl = sizeof(dom), getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &dom,
	    &sl)) == -1 || type != SOCK_SEQPACKET || dom != AF_UNIX) {
		pmc_err(PM_EINVAL, "fd %d is not a pipe end", fd);
		return NULL;
	}
	if ((fl = fcntl(fd, F_GETFD)) == -1 ||
	    fcntl(fd, F_SETFD, fl | FD_CLOEXEC) == -1) {
		pmc_err_sys("fcntl %d", fd);
		return NULL;
	}
	if ((p = pipe_wrap(fd, PIPE_BOTH)) == NULL)
		return NULL;
	pipe_learn_way(p);
	pmc_ok();
	return p;
}

pm_pipe *
pmc_pipe_rendezvous(int fd, pid_t pid, uid_t uid)
{
	pm_pipe *p;

	if ((p = pipe_wrap(fd, PIPE_BOTH)) == NULL) {
		close(fd);
		return NULL;
	}
	p->has_peer = 1;
	p->peer_pid = pid;
	p->peer_uid = uid;
	return p;
}

int
pm_pipe_peer(pm_pipe *p, pid_t *pid, uid_t *uid)
{
	if (p == NULL)
		return pmc_err(PM_EINVAL, "no pipe");
	if (!p->has_peer)
		return pmc_err(PM_ESTATE, "the peer is known only for pipes "
		    "made by pm_pipe_connect or pm_accept");
	if (pid != NULL)
		*pid = p->peer_pid;
	if (uid != NULL)
		*uid = p->peer_uid;
	return pmc_ok();
}

void
pm_pipe_free(pm_pipe *p)
{
	if (p == NULL)
		return;
	close(p->fd);
	free(p->rbuf);
	free(p);
}
