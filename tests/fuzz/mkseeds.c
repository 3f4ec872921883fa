/*
 * mkseeds.c - writes the fuzzers' seed corpus: valid frame streams as a
 * client sends them (Hello first), one file each, into the directory given.
 * For fuzz_wire a seed's first byte is the number of fds that came along.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wire.h"
#include "pm.pb-c.h"
#include "dict.pb-c.h"

static void
save(const char *dir, const char *name, int nfd, struct wire_out *o)
{
	char path[512];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	if ((f = fopen(path, "w")) == NULL) {
		perror(path);
		exit(1);
	}
	fputc(nfd, f);
	fwrite(o->buf, 1, o->len, f);
	fclose(f);
	wire_out_free(o);
	wire_out_init(o);
}

static void
hello(struct wire_out *o)
{
	Pm__Hello h = PM__HELLO__INIT;

	h.version = PM_WIRE_VERSION;
	h.name = (char *)(uintptr_t)"seed";
	h.pid = 1;
	wire_out_frame(o, PM__TYPE__T_HELLO, 1, &h.base, NULL, 0);
}

/* A dict: open (creating it), every operation on did 1 (the first
 * dict's), then unlink. */
static void
dict_seed(struct wire_out *o)
{
	Pm__DictOpen op = PM__DICT_OPEN__INIT;
	Pm__DictSet st = PM__DICT_SET__INIT;
	Pm__DictKey k = PM__DICT_KEY__INIT;
	Pm__DictRef r = PM__DICT_REF__INIT;
	Pm__DictIncr in = PM__DICT_INCR__INIT;
	Pm__DictCas cas = PM__DICT_CAS__INIT;
	Pm__ObjUnlink ou = PM__OBJ_UNLINK__INIT;
	ProtobufCBinaryData key = { 1, (uint8_t *)(uintptr_t)"k" };
	ProtobufCBinaryData val = { 1, (uint8_t *)(uintptr_t)"v" };

	hello(o);
	op.name = (char *)(uintptr_t)"seed.dict";
	op.flags = 0x1;
	wire_out_frame(o, PM__DICT_TYPE__D_OPEN, 2, &op.base, NULL, 0);
	st.did = k.did = r.did = in.did = cas.did = 1;
	st.key = k.key = in.key = cas.key = key;
	st.value = cas.value = val;
	wire_out_frame(o, PM__DICT_TYPE__D_SET, 3, &st.base, NULL, 0);
	wire_out_frame(o, PM__DICT_TYPE__D_GET, 4, &k.base, NULL, 0);
	wire_out_frame(o, PM__DICT_TYPE__D_LEN, 5, &r.base, NULL, 0);
	wire_out_frame(o, PM__DICT_TYPE__D_KEYS, 6, &r.base, NULL, 0);
	cas.has_expect = 1;
	cas.expect = val;
	wire_out_frame(o, PM__DICT_TYPE__D_CAS, 7, &cas.base, NULL, 0);
	wire_out_frame(o, PM__DICT_TYPE__D_POP, 8, &k.base, NULL, 0);
	in.delta = 5;
	wire_out_frame(o, PM__DICT_TYPE__D_INCR, 9, &in.base, NULL, 0);
	wire_out_frame(o, PM__DICT_TYPE__D_DEL, 10, &k.base, NULL, 0);
	wire_out_frame(o, PM__DICT_TYPE__D_CLEAR, 11, &r.base, NULL, 0);
	ou.name = op.name;
	wire_out_frame(o, PM__TYPE__T_OBJ_UNLINK, 12, &ou.base, NULL, 0);
}

/* A listener: listen, a connect to it from the same client (paired with
 * the accept that follows), another connect left waiting, close. */
static void
listen_seed(struct wire_out *o)
{
	Pm__Listen l = PM__LISTEN__INIT;
	Pm__Connect c = PM__CONNECT__INIT;
	Pm__Accept a = PM__ACCEPT__INIT;
	Pm__ListenerRef r = PM__LISTENER_REF__INIT;

	hello(o);
	l.name = (char *)(uintptr_t)"seed.listener";
	wire_out_frame(o, PM__LISTEN_TYPE__L_LISTEN, 2, &l.base, NULL, 0);
	c.name = l.name;
	c.timeout = 5;
	wire_out_frame(o, PM__LISTEN_TYPE__L_CONNECT, 3, &c.base, NULL, 0);
	a.lid = r.lid = 1;
	a.timeout = -1;
	wire_out_frame(o, PM__LISTEN_TYPE__L_ACCEPT, 4, &a.base, NULL, 0);
	c.timeout = -1;
	wire_out_frame(o, PM__LISTEN_TYPE__L_CONNECT, 5, &c.base, NULL, 0);
	wire_out_frame(o, PM__LISTEN_TYPE__L_CLOSE, 6, &r.base, NULL, 0);
}

int
main(int argc, char *argv[])
{
	static char *argv_exec[] = { (char *)(uintptr_t)"true", NULL };
	static int32_t fds[] = { 0, 1, 2 };
	Pm__Spawn sp = PM__SPAWN__INIT;
	Pm__Signal sg = PM__SIGNAL__INIT;
	Pm__Ps ps = PM__PS__INIT;
	Pm__ObjOpen oo = PM__OBJ_OPEN__INIT;
	Pm__ObjList ol = PM__OBJ_LIST__INIT;
	Pm__ObjUnlink ou = PM__OBJ_UNLINK__INIT;
	struct wire_out o;

	if (argc != 2) {
		fprintf(stderr, "usage: mkseeds DIR\n");
		return 2;
	}
	wire_out_init(&o);
	hello(&o);
	save(argv[1], "hello", 0, &o);

	hello(&o);
	wire_out_frame(&o, PM__TYPE__T_STATUS, 2, NULL, NULL, 0);
	wire_out_frame(&o, PM__TYPE__T_PING, 3, NULL, NULL, 0);
	ps.all = 1;
	wire_out_frame(&o, PM__TYPE__T_PS, 4, &ps.base, NULL, 0);
	save(argv[1], "status-ping-ps", 0, &o);

	hello(&o);
	sp.kind = PM__KIND__K_FUNCTION;
	sp.module = (char *)(uintptr_t)"/nonexistent/tasks.so";
	sp.function = (char *)(uintptr_t)"noop";
	sp.name = (char *)(uintptr_t)"seed";
	wire_out_frame(&o, PM__TYPE__T_SPAWN, 2, &sp.base, NULL, 0);
	save(argv[1], "spawn-function", 0, &o);

	hello(&o);
	sp.kind = PM__KIND__K_EXEC;
	sp.path = (char *)(uintptr_t)"true";
	sp.n_argv = 1;
	sp.argv = argv_exec;
	sp.n_child_fds = 3;
	sp.child_fds = fds;
	wire_out_frame(&o, PM__TYPE__T_SPAWN, 2, &sp.base, NULL, 0);
	save(argv[1], "spawn-exec-3fds", 3, &o);

	hello(&o);
	sg.pid = 1;
	sg.signo = 15;
	wire_out_frame(&o, PM__TYPE__T_SIGNAL, 2, &sg.base, NULL, 0);
	wire_out_frame(&o, PM__TYPE__T_SHUTDOWN, 3, NULL, NULL, 0);
	save(argv[1], "signal-shutdown", 0, &o);

	/* named shared objects: open, a create without its segment, list,
	 * unlink */
	hello(&o);
	oo.name = (char *)(uintptr_t)"seed.lock";
	oo.kind = PM__OBJ_KIND__O_LOCK;
	wire_out_frame(&o, PM__TYPE__T_OBJ_OPEN, 2, &oo.base, NULL, 0);
	oo.flags = 0x1 | 0x8;
	wire_out_frame(&o, PM__TYPE__T_OBJ_OPEN, 3, &oo.base, NULL, 0);
	ol.all = 1;
	wire_out_frame(&o, PM__TYPE__T_OBJ_LIST, 4, &ol.base, NULL, 0);
	ou.name = (char *)(uintptr_t)"seed.lock";
	wire_out_frame(&o, PM__TYPE__T_OBJ_UNLINK, 5, &ou.base, NULL, 0);
	save(argv[1], "objects", 0, &o);

	dict_seed(&o);
	save(argv[1], "dict", 0, &o);
	listen_seed(&o);
	save(argv[1], "listen", 0, &o);
	return 0;
}
