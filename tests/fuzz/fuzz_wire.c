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
#include "pool.pb-c.h"
#include "queue.pb-c.h"
#include "dict.pb-c.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The message each frame type carries; NULL: none (or unknown type). */
static const ProtobufCMessageDescriptor *
descriptor_of(uint32_t type)
{
	switch (type) {
	case PM__TYPE__T_OK:
		return &pm__ok__descriptor;
	case PM__TYPE__T_ERROR:
		return &pm__error__descriptor;
	case PM__TYPE__T_HELLO:
		return &pm__hello__descriptor;
	case PM__TYPE__T_HELLO_REPLY:
		return &pm__hello_reply__descriptor;
	case PM__TYPE__T_SPAWN:
		return &pm__spawn__descriptor;
	case PM__TYPE__T_SPAWN_REPLY:
		return &pm__spawn_reply__descriptor;
	case PM__TYPE__T_SIGNAL:
		return &pm__signal__descriptor;
	case PM__TYPE__T_EXITED:
		return &pm__exited__descriptor;
	case PM__TYPE__T_STATUS:
		return &pm__status__descriptor;
	case PM__TYPE__T_STATUS_REPLY:
		return &pm__status_reply__descriptor;
	case PM__TYPE__T_PS:
		return &pm__ps__descriptor;
	case PM__TYPE__T_PS_REPLY:
		return &pm__ps_reply__descriptor;
	case PM__TYPE__T_SHUTDOWN:
		return &pm__shutdown__descriptor;
	case PM__TYPE__T_PING:
		return &pm__ping__descriptor;
	case PM__TYPE__T_FORK:
		return &pm__fork__descriptor;
	case PM__TYPE__T_FORKED:
		return &pm__forked__descriptor;
	case PM__TYPE__T_STARTED:
		return &pm__started__descriptor;
	case PM__TYPE__T_START_FAILED:
		return &pm__start_error__descriptor;
	case PM__TYPE__T_RESULT:
		return &pm__result__descriptor;
	case PM__POOL_TYPE__POOL_TASKS:
		return &pm__pool_tasks__descriptor;
	case PM__POOL_TYPE__POOL_RESULTS:
		return &pm__pool_results__descriptor;
	case PM__QUEUE_TYPE__Q_OPEN:
		return &pm__queue_open__descriptor;
	case PM__QUEUE_TYPE__Q_OPEN_REPLY:
		return &pm__queue_open_reply__descriptor;
	case PM__QUEUE_TYPE__Q_PUT:
		return &pm__queue_put__descriptor;
	case PM__QUEUE_TYPE__Q_GET:
		return &pm__queue_get__descriptor;
	case PM__QUEUE_TYPE__Q_ITEMS:
		return &pm__queue_items__descriptor;
	case PM__QUEUE_TYPE__Q_TASK_DONE:
	case PM__QUEUE_TYPE__Q_STAT:
		return &pm__queue_ref__descriptor;
	case PM__QUEUE_TYPE__Q_JOIN:
		return &pm__queue_join__descriptor;
	case PM__QUEUE_TYPE__Q_SHUTDOWN:
		return &pm__queue_shutdown__descriptor;
	case PM__QUEUE_TYPE__Q_UNLINK:
		return &pm__queue_unlink__descriptor;
	case PM__QUEUE_TYPE__Q_INFO:
		return &pm__queue_info__descriptor;
	case PM__QUEUE_TYPE__Q_LIST:
		return &pm__queue_list__descriptor;
	case PM__QUEUE_TYPE__Q_LIST_REPLY:
		return &pm__queue_list_reply__descriptor;
	case PM__TYPE__T_OBJ_OPEN:
		return &pm__obj_open__descriptor;
	case PM__TYPE__T_OBJ_OPEN_REPLY:
		return &pm__obj_open_reply__descriptor;
	case PM__TYPE__T_OBJ_UNLINK:
		return &pm__obj_unlink__descriptor;
	case PM__TYPE__T_OBJ_LIST:
		return &pm__obj_list__descriptor;
	case PM__TYPE__T_OBJ_LIST_REPLY:
		return &pm__obj_list_reply__descriptor;
	case PM__DICT_TYPE__D_OPEN:
		return &pm__dict_open__descriptor;
	case PM__DICT_TYPE__D_OPEN_REPLY:
		return &pm__dict_open_reply__descriptor;
	case PM__DICT_TYPE__D_SET:
		return &pm__dict_set__descriptor;
	case PM__DICT_TYPE__D_GET:
	case PM__DICT_TYPE__D_DEL:
	case PM__DICT_TYPE__D_POP:
		return &pm__dict_key__descriptor;
	case PM__DICT_TYPE__D_VALUE:
		return &pm__dict_value__descriptor;
	case PM__DICT_TYPE__D_LEN:
	case PM__DICT_TYPE__D_KEYS:
	case PM__DICT_TYPE__D_CLEAR:
		return &pm__dict_ref__descriptor;
	case PM__DICT_TYPE__D_COUNT:
		return &pm__dict_count__descriptor;
	case PM__DICT_TYPE__D_KEYS_REPLY:
		return &pm__dict_keys__descriptor;
	case PM__DICT_TYPE__D_INCR:
		return &pm__dict_incr__descriptor;
	case PM__DICT_TYPE__D_CAS:
		return &pm__dict_cas__descriptor;
	case PM__LISTEN_TYPE__L_LISTEN:
		return &pm__listen__descriptor;
	case PM__LISTEN_TYPE__L_LISTEN_REPLY:
		return &pm__listen_reply__descriptor;
	case PM__LISTEN_TYPE__L_ACCEPT:
		return &pm__accept__descriptor;
	case PM__LISTEN_TYPE__L_CONNECT:
		return &pm__connect__descriptor;
	case PM__LISTEN_TYPE__L_PEER_END:
		return &pm__peer_end__descriptor;
	case PM__LISTEN_TYPE__L_CLOSE:
		return &pm__listener_ref__descriptor;
	default:
		return NULL;
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct wire_in in;
	struct pm_frame f;
	const ProtobufCMessageDescriptor *d;
	ProtobufCMessage *m;
	const char *why;
	int nfd, lost, i, r;

	if (size < 1)
		return 0;
	/* first byte: how many fds arrived with the bytes (bits 0-1), and
	 * whether fds were lost (MSG_CTRUNC) with bytes [0, size/2) (bit 2) */
	nfd = data[0] % 4;
	lost = data[0] & 4;
	data++;
	size--;
	wire_in_init(&in, 1u << 20);
	if ((in.buf = malloc(size ? size : 1)) == NULL)
		return 0;
	memcpy(in.buf, data, size);
	in.len = in.cap = size;
	for (i = 0; i < nfd; i++)
		in.fdq[in.nfdq++] = open("/dev/null", O_RDONLY | O_CLOEXEC);
	if (lost) {
		in.keep_lost = in.lost = 1;
		in.lost_at = 0;
		in.lost_end = size / 2;
	}
	while ((r = wire_in_next(&in, &f, &why)) == 1) {
		if (f.fds_lost && f.nfds != 0)
			abort();	/* a frame that lost its fds has none */
		if ((d = descriptor_of(f.type)) != NULL &&
		    (m = protobuf_c_message_unpack(d, NULL, f.len,
		    f.data)) != NULL)
			protobuf_c_message_free_unpacked(m, NULL);
		wire_frame_close(&f);
	}
	wire_in_free(&in);
	return 0;
}
