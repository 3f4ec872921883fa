# pmd - fork-server daemon, libpmclient and pmctl.  Plain GNU make.
#
#   make            build everything into build/ (build-san/ with SANITIZE=1)
#   make check      run the Check suites      make check SANITIZE=1  ASan+UBSan
#   make demo       start a private pmd and run the examples
#   make bench      side-by-side benchmarks with Python's multiprocessing
#   make soak       the full-size soak (100,000 spawns, 10 M queue ops,
#                   1,000 capped workers leaving no cgroup, 10,000
#                   start/join cycles on one connection, 1,000 clients
#                   with all their rounds)
#   make valgrind   the suites under valgrind memcheck
#   make fuzz       libFuzzer harnesses, FUZZ_SECONDS each (clang)
#   make install    PREFIX=/usr/local DESTDIR=

VERSION	= 0.1.0
MAJOR	= 1
PREFIX	?= /usr/local
BINDIR	?= $(PREFIX)/bin
LIBDIR	?= $(PREFIX)/lib
INCDIR	?= $(PREFIX)/include
PCDIR	?= $(LIBDIR)/pkgconfig
UNITDIR	?= $(PREFIX)/lib/systemd/system
USERUNITDIR ?= $(PREFIX)/lib/systemd/user
MANDIR	?= $(PREFIX)/share/man
# mdoc pages: nothing to build, man renders them as they are
MANS	= $(wildcard man/*.[0-9])
DEBS	= build-essential pkg-config libevent-dev libprotobuf-c-dev \
	  protobuf-c-compiler check python3 systemd valgrind libjson-c-dev \
	  uthash-dev man-db groff-base
PKGS	= libevent_core libprotobuf-c check json-c

ifeq ($(SANITIZE),1)
B	= build-san
SANFLAGS = -fsanitize=address,undefined -fno-omit-frame-pointer \
	   -fno-sanitize-recover=all
else
B	= build
SANFLAGS =
endif

CC	?= cc
OPT	?= -O2 -g
WARN	= -Wall -Wextra -Werror -Wshadow -Wpointer-arith -Wcast-qual \
	  -Wstrict-prototypes -Wmissing-prototypes -Wformat=2 -Wvla \
	  -Wundef -Wwrite-strings -Wno-unused-parameter
BASEFLAGS = -std=c11 -D_GNU_SOURCE -fPIC $(OPT) $(SANFLAGS) \
	  -Iproto -Iclient -I$(B)/gen -isystem $(B)/proto
PKGCFLAGS = $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
ALLCFLAGS = $(BASEFLAGS) $(WARN) $(PKGCFLAGS) $(CFLAGS)
GENCFLAGS = $(BASEFLAGS) $(PKGCFLAGS) $(CFLAGS)
LDSAN	= $(SANFLAGS)
LIBEVENT = $(shell pkg-config --libs libevent_core 2>/dev/null)
LIBPB	= $(shell pkg-config --libs libprotobuf-c 2>/dev/null)
LIBCHECK = $(shell pkg-config --libs check 2>/dev/null)
# pmctl alone uses json-c; pmd and the library do not link it
JSONC_LIBS = $(shell pkg-config --libs json-c 2>/dev/null)

PROTOS	= $(wildcard proto/*.proto)
PROTO_H	= $(PROTOS:proto/%.proto=$(B)/proto/%.pb-c.h)
PROTO_O	= $(PROTOS:proto/%.proto=$(B)/proto/%.pb-c.o) $(B)/proto/wire.o
CLIENT_SRC = $(filter-out client/pmctl.c,$(wildcard client/*.c))
CLIENT_O = $(CLIENT_SRC:%.c=$(B)/%.o)
DAEMON_SRC = $(wildcard daemon/*.c)
DAEMON_O = $(DAEMON_SRC:%.c=$(B)/%.o)
SONAME	= libpmclient.so.$(MAJOR)
SOVER	= $(MAJOR).0.0
LIBSO	= $(B)/libpmclient.so.$(SOVER)
LIBA	= $(B)/libpmclient.a
PMD	= $(B)/pmd
PMCTL	= $(B)/pmctl
MODULES	= $(patsubst %.c,$(B)/%.so,$(wildcard tests/*tasks.c examples/*_tasks.c))
EXAMPLES = $(patsubst %.c,$(B)/%,$(filter-out %_tasks.c,$(wildcard examples/*.c)))
TESTS	= $(patsubst tests/%.c,$(B)/tests/%,$(wildcard tests/check_*.c))
TEST_O	= $(B)/tests/harness.o
BENCH	= $(patsubst bench/%.c,$(B)/bench/%,$(filter-out %_tasks.c,$(wildcard bench/*.c)))
BENCHMOD = $(patsubst %.c,$(B)/%.so,$(wildcard bench/*_tasks.c))
UNITS	= $(patsubst systemd/%.in,$(B)/systemd/%,$(wildcard systemd/*.in))

all: $(PMD) $(PMCTL) $(LIBSO) $(LIBA) $(MODULES) $(EXAMPLES) $(UNITS) \
     $(B)/libpmclient.pc $(B)/libpmclient-static.pc

.PHONY: FORCE man-check all deps check soak valgrind demo bench fuzz fuzz-deps install clean header-check
.SECONDARY:

deps:
	@if command -v protoc-c >/dev/null && pkg-config --exists $(PKGS) && \
	    command -v python3 >/dev/null && \
	    echo '#include <uthash.h>' | $(CC) -E -x c - >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ]; then \
	    echo "installing: $(DEBS)"; \
	    apt-get update -q && DEBIAN_FRONTEND=noninteractive \
	    apt-get install -y -q $(DEBS); \
	else \
	    echo "missing build packages; run as root:"; \
	    echo "  apt-get update && apt-get install -y $(DEBS)"; exit 1; \
	fi

$(B)/proto/%.pb-c.c $(B)/proto/%.pb-c.h: proto/%.proto $(PROTOS)
	@mkdir -p $(B)/proto
	protoc-c --proto_path=proto --c_out=$(B)/proto $<

$(B)/proto/%.pb-c.o: $(B)/proto/%.pb-c.c $(PROTO_H)
	$(CC) $(GENCFLAGS) -c -o $@ $<

$(B)/%.o: %.c $(PROTO_H) $(wildcard proto/*.h client/*.h daemon/*.h tests/*.h bench/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(ALLCFLAGS) -c -o $@ $<

$(LIBSO): $(CLIENT_O) $(PROTO_O) client/libpmclient.map
	$(CC) -shared -Wl,-soname,$(SONAME) \
	    -Wl,--version-script=client/libpmclient.map $(LDSAN) \
	    -o $@ $(CLIENT_O) $(PROTO_O) $(LIBPB)
	ln -sf libpmclient.so.$(SOVER) $(B)/$(SONAME)
	ln -sf $(SONAME) $(B)/libpmclient.so

$(LIBA): $(CLIENT_O) $(PROTO_O)
	rm -f $@
	ar rcs $@ $^

# pmd carries the client library (workers call pm_task_* and may connect
# back); it exports pm_* so task modules resolve against it.
$(PMD): $(DAEMON_O) $(LIBA)
	$(CC) $(LDSAN) -Wl,--dynamic-list=client/pmclient.dynlist -o $@ \
	    $(DAEMON_O) -Wl,--whole-archive $(LIBA) -Wl,--no-whole-archive \
	    $(LIBEVENT) $(LIBPB) -ldl

$(PMCTL): $(B)/client/pmctl.o $(LIBA)
	$(CC) $(LDSAN) -o $@ $< $(LIBA) $(LIBPB) $(JSONC_LIBS)

# The pmd the library starts is the one installed beside it: paths.h is
# rewritten whenever BINDIR changes (make install PREFIX=... rebuilds what
# depends on it), and left alone otherwise.
%/gen/paths.h: FORCE
	@mkdir -p $(dir $@)
	@printf '#define PMC_PMD_PATH "%s"\n' '$(BINDIR)/pmd' > $@.tmp
	@cmp -s $@.tmp $@ && rm -f $@.tmp || mv $@.tmp $@

$(B)/client/conn.o: $(B)/gen/paths.h
FORCE:

# Task modules: resolved against pmd at load time, not linked to the library.

$(B)/%.so: %.c client/pmclient.h
	@mkdir -p $(dir $@)
	$(CC) $(ALLCFLAGS) -shared -o $@ $<

$(B)/tests/%.so: tests/taskutil.h

$(B)/examples/%: $(B)/examples/%.o $(LIBA)
	$(CC) $(LDSAN) -o $@ $< $(LIBA) $(LIBPB)

$(B)/tests/check_%: $(B)/tests/check_%.o $(TEST_O) $(LIBA)
	$(CC) $(LDSAN) $(TEST_LDFLAGS) -o $@ $< $(TEST_O) $(LIBA) $(LIBPB) \
	    $(LIBCHECK)

# Fork pools find their task functions in the program by name (dlsym):
# the program exports its symbols.
$(B)/tests/check_start: TEST_LDFLAGS = -rdynamic

$(B)/bench/%: $(B)/bench/%.o $(LIBA)
	$(CC) $(LDSAN) -o $@ $< $(LIBA) $(LIBPB) -lm

$(B)/systemd/%: systemd/%.in
	@mkdir -p $(dir $@)
	sed -e 's|@BINDIR@|$(BINDIR)|g' $< > $@

$(B)/%.pc: client/%.pc.in
	sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@LIBDIR@|$(LIBDIR)|g' \
	    -e 's|@INCDIR@|$(INCDIR)|g' -e 's|@VERSION@|$(VERSION)|g' $< > $@

# The public header stands alone in strict C99 and C++-free pedantic mode.
header-check: client/pmclient.h
	@mkdir -p $(B)
	echo '#include <pmclient.h>' | $(CC) -std=c99 -pedantic -Werror -Wall \
	    -Wextra -Iclient -x c -fsyntax-only -
	@echo "header-check: pmclient.h is clean C99"

# make check runs the soak at SOAK_SCALE of its full size (100,000
# spawns, 10 M queue ops; check_process's 10,000 cycles, 1,000 at the
# fewest; check_load's 1,000 clients with half their rounds); make soak
# runs it whole.
SOAK_SCALE ?= 0.02
TESTENV	= PM_SOAK_SCALE=$${PM_SOAK_SCALE:-$(SOAK_SCALE)} PMD_BIN=$(abspath $(PMD)) PMCTL_BIN=$(abspath $(PMCTL)) \
	  PM_TEST_MODULE=$(abspath $(B)/tests/tasks.so) \
	  PM_BUILD=$(abspath $(B)) PM_SRC=$(abspath .)

# Each page renders without a warning; libpmclient(3) names every call
# of pmclient.h and every error code.
man-check: $(MANS)
	@for m in $(MANS); do \
	    w=$$(LC_ALL=C.UTF-8 MANWIDTH=80 man --warnings -l $$m 2>&1 >/dev/null); \
	    if [ -n "$$w" ]; then echo "$$m: $$w"; exit 1; fi; \
	done
	@for n in $$(grep -oE '\bpm_[a-z_0-9]+ *\(' client/pmclient.h | \
	    tr -d '( ' | sort -u | grep -vx 'pm_callback\|pm_task_fn') \
	    $$(grep -oE '^#define PM_E[A-Z]+' client/pmclient.h | cut -c9- | sort -u); do \
	    grep -qw -- "$$n" man/libpmclient.3 || \
	    { echo "man/libpmclient.3 lacks $$n"; exit 1; }; \
	done
	@echo "man-check: $(MANS) render cleanly and list the API"

check: deps
	@$(MAKE) --no-print-directory all $(TESTS) header-check man-check
	@pass=0; fail=0; for t in $(TESTS); do \
	    echo "== $$t"; \
	    if $(TESTENV) $$t; then pass=$$((pass+1)); \
	    else fail=$$((fail+1)); echo "FAILED: $$t"; fi; \
	done; echo "check: $$pass passed, $$fail failed"; test $$fail = 0

soak: deps
	@$(MAKE) --no-print-directory all $(B)/tests/check_load \
	    $(B)/tests/check_memory $(B)/tests/check_process
	$(TESTENV) PM_SOAK_SCALE=1 $(B)/tests/check_load
	$(TESTENV) PM_SOAK_SCALE=1 CK_RUN_CASE=cycles $(B)/tests/check_process
	$(TESTENV) PM_SOAK_SCALE=1 CK_RUN_CASE=caps $(B)/tests/check_memory

valgrind: deps
	@$(MAKE) --no-print-directory all $(TESTS)
	@fail=0; for t in $(TESTS); do echo "== valgrind $$t"; \
	    $(TESTENV) CK_FORK=no PM_VALGRIND=1 valgrind -q --leak-check=full \
	    --errors-for-leak-kinds=definite --error-exitcode=99 \
	    --trace-children=no $$t || fail=1; done; test $$fail = 0

demo: deps
	@$(MAKE) --no-print-directory all
	@for d in examples/demo.sh $(sort $(wildcard examples/demo-*.sh)); do \
	    sh $$d $(abspath $(B)) || exit 1; done

bench: deps
	@$(MAKE) --no-print-directory all $(BENCH) $(BENCHMOD)
	@for r in bench/run.sh $(sort $(wildcard bench/run-*.sh)); do \
	    sh $$r $(abspath $(B)) || exit 1; done

# libFuzzer harnesses (clang), ASan+UBSan: make fuzz FUZZ_SECONDS=60
FUZZ_SECONDS ?= 60
FB	= build-fuzz
FUZZCC	= clang
FUZZFLAGS = -std=c11 -D_GNU_SOURCE -g -O1 -fsanitize=fuzzer-no-link,address,undefined \
	  -fno-sanitize-recover=all -Iproto -Iclient -Idaemon -I$(FB)/gen \
	  -isystem $(FB)/proto \
	  $(PKGCFLAGS)
FUZZ_LIB_SRC = $(CLIENT_SRC) proto/wire.c
FUZZ_D_SRC = $(filter-out daemon/pmd.c,$(DAEMON_SRC))
FUZZ_GEN = $(PROTOS:proto/%.proto=$(FB)/proto/%.pb-c.c)

$(FB)/proto/%.pb-c.c: proto/%.proto
	@mkdir -p $(FB)/proto
	protoc-c --proto_path=proto --c_out=$(FB)/proto $<

$(FB)/fuzz_%: tests/fuzz/fuzz_%.c $(FB)/gen/paths.h $(FUZZ_GEN) $(FUZZ_LIB_SRC) $(FUZZ_D_SRC) daemon/pmd.c
	$(FUZZCC) $(FUZZFLAGS) -fsanitize=fuzzer -o $@ $< $(FUZZ_GEN) \
	    $(FUZZ_LIB_SRC) $(if $(filter broker,$*),$(FUZZ_D_SRC) \
	    -x c -Dmain=pmd_main daemon/pmd.c -x none $(LIBEVENT)) $(LIBPB) -ldl

$(FB)/mkseeds: tests/fuzz/mkseeds.c $(FUZZ_GEN) proto/wire.c
	$(CC) -std=c11 -D_GNU_SOURCE -Iproto -isystem $(FB)/proto -o $@ $^ $(LIBPB)

FUZZDEBS = clang libclang-rt-14-dev

fuzz-deps:
	@if printf 'int LLVMFuzzerTestOneInput(void) { return 0; }\n' | \
	    $(FUZZCC) -fsanitize=fuzzer -x c -o /dev/null - 2>/dev/null; \
	then :; \
	elif [ "$$(id -u)" = 0 ]; then \
	    echo "installing: $(FUZZDEBS)"; \
	    apt-get update -q && DEBIAN_FRONTEND=noninteractive \
	    apt-get install -y -q $(FUZZDEBS); \
	else \
	    echo "make fuzz needs clang and libFuzzer; run as root:"; \
	    echo "  apt-get update && apt-get install -y $(FUZZDEBS)"; exit 1; \
	fi

fuzz: deps fuzz-deps
	@$(MAKE) --no-print-directory $(FB)/fuzz_wire $(FB)/fuzz_broker \
	    $(FB)/fuzz_pipe
	@for h in wire broker pipe; do \
	    mkdir -p $(FB)/corpus-$$h; \
	    echo "== fuzz_$$h for $(FUZZ_SECONDS) s"; \
	    $(FB)/fuzz_$$h -max_total_time=$(FUZZ_SECONDS) -timeout=10 \
		-rss_limit_mb=2048 -print_final_stats=1 \
		$(FB)/corpus-$$h tests/fuzz/seeds || exit 1; \
	done

install: all
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(LIBDIR) $(DESTDIR)$(INCDIR) \
	    $(DESTDIR)$(PCDIR) $(DESTDIR)$(UNITDIR) $(DESTDIR)$(USERUNITDIR)
	install -m 755 $(PMD) $(PMCTL) $(DESTDIR)$(BINDIR)
	install -m 755 $(LIBSO) $(DESTDIR)$(LIBDIR)
	ln -sf libpmclient.so.$(SOVER) $(DESTDIR)$(LIBDIR)/$(SONAME)
	ln -sf $(SONAME) $(DESTDIR)$(LIBDIR)/libpmclient.so
	install -m 644 $(LIBA) $(DESTDIR)$(LIBDIR)
	install -m 644 client/pmclient.h $(DESTDIR)$(INCDIR)
	for m in $(MANS); do \
	    install -d $(DESTDIR)$(MANDIR)/man$${m##*.}; \
	    install -m 644 $$m $(DESTDIR)$(MANDIR)/man$${m##*.}; \
	done
	@# the .pc file and units name the install-time paths
	for pc in libpmclient libpmclient-static; do \
	    sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@LIBDIR@|$(LIBDIR)|g' \
		-e 's|@INCDIR@|$(INCDIR)|g' -e 's|@VERSION@|$(VERSION)|g' \
		client/$$pc.pc.in > $(DESTDIR)$(PCDIR)/$$pc.pc; \
	done
	for u in pmd.socket pmd.service; do \
	    sed -e 's|@BINDIR@|$(BINDIR)|g' systemd/$$u.in \
		> $(DESTDIR)$(UNITDIR)/$$u; \
	    sed -e 's|@BINDIR@|$(BINDIR)|g' systemd/$${u%%.*}-user.$${u##*.}.in \
		> $(DESTDIR)$(USERUNITDIR)/$$u; \
	done

clean:
	rm -rf build build-san build-fuzz
