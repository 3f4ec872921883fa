/*
 * wire.h - pmd's framing and fd passing, shared by daemon and client.
 *
 * A frame is a 16-byte header and a protobuf payload.  Its fds travel in
 * the same sendmsg(2) as its first byte (SCM_RIGHTS).  This layer knows
 * nothing of libevent or of the daemon: it fills and drains buffers over a
 * non-blocking or blocking socket, and checks every length and fd count
 * before anything is unpacked or allocated.
 *
 * fd ownership: wire_out_frame() takes the fds it is given; they are closed
 * once sent, or when the buffer is freed.  Received fds belong to the
 * frame; call wire_frame_close() for the ones not taken.
 */
#ifndef PM_WIRE_H
#define PM_WIRE_H

#include <stddef.h>
#include <stdint.h>
#include <protobuf-c/protobuf-c.h>

#define PM_WIRE_MAGIC		0x4d50u		/* "PM" */
#define PM_WIRE_VERSION		1
#define PM_WIRE_HDR		16
#define PM_WIRE_MAX_FDS		32		/* per frame */
#define PM_WIRE_FDQ		(2 * PM_WIRE_MAX_FDS)
#define PM_WIRE_MAX_FRAME	(16u << 20)	/* default payload bound */
#define PM_WIRE_MEMFD_MIN	(64u << 10)	/* bigger data goes by memfd */
#define PM_WIRE_KEEP		(64u << 10)	/* larger buffers are released
						   once empty */

struct pm_hdr {
	uint16_t magic;
	uint8_t	 version;
	uint8_t	 nfds;
	uint32_t type;
	uint32_t id;
	uint32_t len;
};

struct pm_frame {
	uint32_t type;
	uint32_t id;
	uint32_t len;
	uint8_t	*data;			/* valid until the next read */
	int	 fds[PM_WIRE_MAX_FDS];
	int	 nfds;
	int	 fds_lost;		/* sent with fds the reader lacked room for */
};

struct wire_in {
	uint8_t	*buf;
	size_t	 len;			/* bytes held */
	size_t	 off;			/* bytes consumed */
	size_t	 cap;
	uint32_t max_frame;		/* largest payload accepted */
	size_t	 read_min;		/* room per read; 0: 64 KiB */
	int	 fdq[PM_WIRE_FDQ];	/* received fds not yet claimed */
	int	 nfdq;
	int	 keep_lost;		/* see wire_in_read */
	int	 lost;			/* a frame in [lost_at, lost_end) lost fds */
	size_t	 lost_at;
	size_t	 lost_end;
};

struct wire_att {			/* fds to send with byte `at` */
	size_t	 at;
	int	 n;
	int	 fds[PM_WIRE_MAX_FDS];
};

struct wire_out {
	uint8_t	*buf;
	size_t	 len;			/* bytes queued */
	size_t	 off;			/* bytes sent */
	size_t	 cap;
	struct wire_att *att;
	size_t	 natt;			/* attachments queued */
	size_t	 attoff;		/* attachments sent */
	size_t	 attcap;
};

void	wire_in_init(struct wire_in *, uint32_t max_frame);
void	wire_in_free(struct wire_in *);
/* One recvmsg: >0 bytes read, 0 EOF, -1 error with errno (EAGAIN too).
 * fds the kernel could not install (the reader is out of fds: MSG_CTRUNC)
 * are an EPROTO error, unless keep_lost is set: then the frame they came
 * with is still returned, with no fds and fds_lost set, so that its
 * request alone can be failed and the link kept. */
ssize_t	wire_in_read(struct wire_in *, int sock);
/* 1: *f holds a frame; 0: need more bytes; -1: protocol error, *why says. */
int	wire_in_next(struct wire_in *, struct pm_frame *f, const char **why);
/* Bytes of a partial frame held (for "truncated frame" at EOF). */
size_t	wire_in_pending(const struct wire_in *);
/* Releases a buffer grown for a large frame once it holds nothing (frames
 * from wire_in_next are no longer valid after it). */
void	wire_in_trim(struct wire_in *);
void	wire_frame_close(struct pm_frame *);
/* Take fd i of the frame (it is no longer closed by wire_frame_close). */
int	wire_frame_take(struct pm_frame *, int i);

void	wire_out_init(struct wire_out *);
void	wire_out_free(struct wire_out *);
/* Queue a frame; m may be NULL (empty payload).  Takes fds even on error. */
int	wire_out_frame(struct wire_out *, uint32_t type, uint32_t id,
	    const ProtobufCMessage *m, const int *fds, int nfds);
/* Send what is queued: 1 all sent, 0 would block, -1 error (errno). */
int	wire_out_flush(struct wire_out *, int sock);
size_t	wire_out_pending(const struct wire_out *);

/* SCM_RIGHTS: the fds msg carries into fds (room for max; those beyond
 * are closed), returning how many came (may exceed max); and msg set up
 * to carry n fds in cbuf (CMSG_SPACE(n ints), aligned). */
struct msghdr;
int	wire_cmsg_fds(struct msghdr *msg, int *fds, int max);
void	wire_cmsg_put(struct msghdr *msg, void *cbuf, const int *fds, int n);

/* Blocking helpers (client, forker): deadline in CLOCK_MONOTONIC ns, <0 none. */
int64_t	wire_now_ns(void);
int64_t	wire_deadline(double timeout);
int	wire_wait(int fd, short events, int64_t deadline);
/* poll(2)'s timeout until deadline: -1 none, 0 passed, else ms rounded up. */
int	wire_poll_ms(int64_t deadline);
int	wire_out_flush_wait(struct wire_out *, int sock, int64_t deadline);

/* All of data written at off (EINTR retried); -1 with errno. */
int	wire_pwrite_all(int fd, const void *data, size_t len, uint64_t off);
/* Sealed memfd holding len bytes of data; -1 with errno on failure. */
int	wire_memfd(const void *data, size_t len);
/* Read a sealed memfd's len bytes into a new buffer; NULL on failure. */
void	*wire_memfd_read(int fd, size_t len);

/* A base-128 varint at *p (before end) into *v, *p moved past it; -1 if
 * it runs past end or over 64 bits (pool task and result blobs). */
int	wire_varint_get(const uint8_t **p, const uint8_t *end, uint64_t *v);

#endif
