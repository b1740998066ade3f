# ferry-qemu: the VM link for a stock QEMU (a daemon per VM) and the
# preload library QEMU runs with; its man page, design note and test.

noinst_LIBRARIES += tools/ferry-qemu/libfq.a
tools_ferry_qemu_libfq_a_SOURCES = \
	tools/ferry-qemu/fq.h \
	tools/ferry-qemu/qmp.c \
	tools/ferry-qemu/ram.c \
	tools/ferry-qemu/state.c \
	tools/ferry-qemu/stream.c \
	tools/ferry-qemu/link.c \
	tools/ferry-qemu/cmdline.c
FQ_LIBS = tools/ferry-qemu/libfq.a $(VMLINK_LIBS) $(GUESTMEM_LIBS)

# `ferry qemu`, a subcommand of tools/ferry (tools/local.mk).
tools_ferry_SOURCES += tools/ferry-qemu/main.c
FERRY_CPPFLAGS += -DFERRY_PRELOAD_DEFAULT=\"$(preloaddir)/libferry-preload.so\"
tools_ferry_LDADD += $(FQ_LIBS)

# A shared object loaded into QEMU: self-contained (no libferry, no
# sanitizer flags), built as a "program" so that no libtool is needed.
preloaddir = $(pkglibdir)
preload_PROGRAMS = tools/ferry-qemu/libferry-preload.so
tools_ferry_qemu_libferry_preload_so_SOURCES = tools/ferry-qemu/preload.c
tools_ferry_qemu_libferry_preload_so_CFLAGS = -std=gnu11 -O2 -fPIC \
	-pthread $(WARN_CFLAGS)
tools_ferry_qemu_libferry_preload_so_LDFLAGS = -shared -fPIC -pthread \
	-Wl,-z,defs

dist_man1_MANS += docs/man/ferry-qemu.1
EXTRA_DIST += docs/qemu.md

