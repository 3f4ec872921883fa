/*
 * fuzz_wire.c - libFuzzer harness: arbitrary bytes (and fds) into the frame
 * decoder, then each frame's payload into the protobuf message its type
 * names.  Checks that nothing crashes, leaks or over-allocates.
 */
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "wire.h"
#include "pm.pb-c.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const ProtobufCMessageDescriptor *
descriptor_of(uint32_t type)
{
	switch (type) {
	case PM__TYPE__T_ERROR:		return &pm__error__descriptor;
	case PM__TYPE__T_HELLO:		return &pm__hello__descriptor;
	case PM__TYPE__T_HELLO_REPLY:	return &pm__hello_reply__descriptor;
	case PM__TYPE__T_SPAWN:		return &pm__spawn__descriptor;
	case PM__TYPE__T_SPAWN_REPLY:	return &pm__spawn_reply__descriptor;
	case PM__TYPE__T_SIGNAL:	return &pm__signal__descriptor;
	case PM__TYPE__T_EXITED:	return &pm__exited__descriptor;
	case PM__TYPE__T_STATUS_REPLY:	return &pm__status_reply__descriptor;
	case PM__TYPE__T_PS:		return &pm__ps__descriptor;
	case PM__TYPE__T_PS_REPLY:	return &pm__ps_reply__descriptor;
	case PM__TYPE__T_FORK:		return &pm__fork__descriptor;
	case PM__TYPE__T_FORKED:	return &pm__forked__descriptor;
	case PM__TYPE__T_RESULT:	return &pm__result__descriptor;
	case PM__TYPE__T_STARTED:	return &pm__started__descriptor;
	default:			return &pm__start_error__descriptor;
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct wire_in in;
	struct pm_frame f;
	ProtobufCMessage *m;
	const char *why;
	int nfd, i, r;

	if (size < 1)
		return 0;
	/* first byte: how many fds arrived with the bytes */
	nfd = data[0] % 4;
	data++;
	size--;
	wire_in_init(&in, 1u << 20);
	if ((in.buf = malloc(size ? size : 1)) == NULL)
		return 0;
	memcpy(in.buf, data, size);
	in.len = in.cap = size;
	for (i = 0; i < nfd; i++)
		in.fdq[in.nfdq++] = open("/dev/null", O_RDONLY | O_CLOEXEC);
	while ((r = wire_in_next(&in, &f, &why)) == 1) {
		m = protobuf_c_message_unpack(descriptor_of(f.type), NULL,
		    f.len, f.data);
		if (m != NULL)
			protobuf_c_message_free_unpacked(m, NULL);
		wire_frame_close(&f);
	}
	wire_in_free(&in);
	return 0;
}
