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
	return 0;
}
