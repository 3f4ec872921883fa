/*
 * fuzz_pipe.c - libFuzzer harness: arbitrary packets, with fds, into one
 * end of a pipe (a SOCK_SEQPACKET socketpair), each then received with
 * pm_pipe_recv_fds.  Packets the library did not write must fail their
 * call alone: nothing crashes, the next packet is received, and every fd
 * that came is either handed to the caller or closed.
 *
 * Input: packets, each a byte of flags (bits 0-2: fds to send, 0..7; bit
 * 3: the first fd is a sealed memfd of the packet's bytes; bits 4-5: room
 * for fds in the receive, 0, 1, 4 or 64), a length byte, then that many
 * bytes.
 */
#include <sys/mman.h>
#include <sys/socket.h>

#include <dirent.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pmclient.h"
#include "wire.h"

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

/* One packet on fd; its fds are this process's copies, closed after. */
static void
send_packet(int fd, const uint8_t *p, size_t len, int nfds, int memfd)
{
	union {
		struct cmsghdr hdr;
		char buf[CMSG_SPACE(sizeof(int) * 8)];
	} cbuf;
	struct msghdr msg;
	struct iovec iov;
	int fds[8], i;

	for (i = 0; i < nfds; i++)
		fds[i] = i == 0 && memfd ? wire_memfd(p, len) :
		    open("/dev/null", O_RDONLY | O_CLOEXEC);
	memset(&msg, 0, sizeof(msg));
	iov.iov_base = (void *)(uintptr_t)p;
	iov.iov_len = len;
	msg.msg_iov = &iov;
	msg.msg_iovlen = 1;
	wire_cmsg_put(&msg, cbuf.buf, fds, nfds);
	(void)sendmsg(fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
	for (i = 0; i < nfds; i++)
		if (fds[i] >= 0)
			close(fds[i]);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const size_t rooms[] = { 0, 1, 4, PM_PIPE_MAX_FDS };
	int got[PM_PIPE_MAX_FDS], before = fd_count(), room[64], n = 0, i;
	size_t off = 0, len, nfds, k;
	pm_pipe *a, *b;
	pm_bytes m;

	if (pm_pipe_new(&a, &b, 1) != PM_OK)
		abort();
	while (off + 2 <= size && n < 64) {
		len = data[off + 1];
		if (len > size - off - 2)
			len = size - off - 2;
		room[n++] = (int)rooms[(data[off] >> 4) & 3];
		send_packet(pm_pipe_fd(b), data + off + 2, len, data[off] & 7,
		    (data[off] >> 3) & 1);
		off += 2 + len;
	}
	pm_pipe_free(b);
	for (i = 0; i < n + 1; i++) {
		if (pm_pipe_recv_fds(a, &m, got, (size_t)room[i < n ? i : 0],
		    &nfds, 0) == PM_ECLOSED)
			break;
		if (nfds > (size_t)room[i < n ? i : 0])
			abort();
		for (k = 0; k < nfds; k++)
			close(got[k]);
		pm_bytes_free(&m);
	}
	pm_pipe_free(a);
	if (fd_count() != before)
		abort();
	return 0;
}
