# The guest payload (freestanding x86-64, Multiboot v1, flat image) and
# the guest workload as a unit of its own: the payload runs it in the
# guest, ferry-vm's no-KVM backend and check-vm link it as
# tools/guest/libworkload.a.

# The payload is built with its own flags (not AM_CFLAGS): no libc, no red
# zone, no SSE (no FPU state set up by anyone), no PIC, linked at 1 MiB by
# guest.lds.
GUEST_CFLAGS = -std=gnu11 -O2 -m64 -ffreestanding -fno-pic -fno-pie \
	-fno-stack-protector -fno-asynchronous-unwind-tables \
	-fno-delete-null-pointer-checks -mno-red-zone -mgeneral-regs-only \
	-mcmodel=small -fcf-protection=none $(WARN_CFLAGS)
GUEST_LINKFLAGS = -nostdlib -static -no-pie -Wl,--build-id=none \
	-Wl,-z,noexecstack -Wl,-T,$(srcdir)/tools/guest/guest.lds
GUEST_OBJCOPY = objcopy
guest_objs = tools/guest/entry.guest.o tools/guest/main.guest.o \
	tools/guest/workload.guest.o
guest_deps = $(srcdir)/tools/guest/workload.h $(srcdir)/tools/guest/local.mk

tools/guest/entry.guest.o: $(srcdir)/tools/guest/entry.S $(guest_deps)
	$(AM_V_CC)$(MKDIR_P) tools/guest && \
	$(CC) $(GUEST_CFLAGS) -c -o $@ $(srcdir)/tools/guest/entry.S
tools/guest/main.guest.o: $(srcdir)/tools/guest/main.c $(guest_deps)
	$(AM_V_CC)$(MKDIR_P) tools/guest && \
	$(CC) $(GUEST_CFLAGS) -c -o $@ $(srcdir)/tools/guest/main.c
tools/guest/workload.guest.o: $(srcdir)/tools/guest/workload.c $(guest_deps)
	$(AM_V_CC)$(MKDIR_P) tools/guest && \
	$(CC) $(GUEST_CFLAGS) -c -o $@ $(srcdir)/tools/guest/workload.c
tools/guest/ferry-guest.elf: $(guest_objs) $(srcdir)/tools/guest/guest.lds
	$(AM_V_CCLD)$(CC) $(GUEST_LINKFLAGS) -o $@ $(guest_objs)
tools/guest/ferry-guest: tools/guest/ferry-guest.elf
	$(AM_V_GEN)$(GUEST_OBJCOPY) -O binary $< $@

vmguestdir = $(pkgdatadir)
vmguest_DATA = tools/guest/ferry-guest
CLEANFILES += $(guest_objs) tools/guest/ferry-guest.elf tools/guest/ferry-guest
EXTRA_DIST += tools/guest/entry.S tools/guest/main.c tools/guest/guest.lds

# The same workload, hosted (the project's flags), for the programs that
# run or check it outside a guest.
noinst_LIBRARIES += tools/guest/libworkload.a
tools_guest_libworkload_a_SOURCES = tools/guest/workload.h \
	tools/guest/workload.c
WORKLOAD_LIBS = tools/guest/libworkload.a
