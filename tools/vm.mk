# ferry-vm (the reference micro-VMM), its guest payload and the VM link
# protocol (migrate/vmlink.*). All rules of these parts live here, included
# once from Makefile.am.

# ---- the guest payload: freestanding x86-64, Multiboot v1, flat image ----
# Built with its own flags (not AM_CFLAGS): no libc, no red zone, no SSE (no
# FPU state set up by anyone), no PIC, linked at 1 MiB by guest.lds.
GUEST_CFLAGS = -std=gnu11 -O2 -m64 -ffreestanding -fno-pic -fno-pie \
	-fno-stack-protector -fno-asynchronous-unwind-tables \
	-fno-delete-null-pointer-checks -mno-red-zone -mgeneral-regs-only \
	-mcmodel=small -fcf-protection=none $(WARN_CFLAGS)
GUEST_LINKFLAGS = -nostdlib -static -no-pie -Wl,--build-id=none \
	-Wl,-z,noexecstack -Wl,-T,$(srcdir)/tools/guest/guest.lds
GUEST_OBJCOPY = objcopy
guest_objs = tools/guest/entry.guest.o tools/guest/main.guest.o \
	tools/guest/workload.guest.o
guest_deps = $(srcdir)/tools/guest/workload.h $(srcdir)/tools/vm.mk

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
EXTRA_DIST += tools/guest/entry.S tools/guest/main.c tools/guest/workload.c \
	tools/guest/workload.h tools/guest/guest.lds

# ---- the VM link protocol: shared with the agents ----
noinst_LIBRARIES += migrate/libvmlink.a
migrate_libvmlink_a_SOURCES = migrate/vmlink.h migrate/vmlink.c
VMLINK_LIBS = migrate/libvmlink.a util/libutil.a

# ---- ferry vm (a subcommand of tools/ferry, tools/local.mk) ----
tools_ferry_SOURCES += \
	tools/ferry-vm/vm.h \
	tools/ferry-vm/kvm-internal.h \
	tools/ferry-vm/main.c \
	tools/ferry-vm/accel.c \
	tools/ferry-vm/vm.c \
	tools/ferry-vm/kvm.c \
	tools/ferry-vm/cpu.c \
	tools/ferry-vm/state.c \
	tools/ferry-vm/nokvm.c \
	tools/ferry-vm/link-server.c \
	tools/ferry-vm/snapshot.c \
	tools/guest/workload.h \
	tools/guest/workload.c
FERRY_CPPFLAGS = -DFERRY_GUEST_DEFAULT=\"$(pkgdatadir)/ferry-guest\"

# ---- tests ----
VM_TEST_CPPFLAGS = $(AM_CPPFLAGS) -DVM_BUILDDIR=\"$(abs_top_builddir)\"
VM_TEST_HELPERS = tests/check-vm-helpers.h tests/check-vm-helpers.c

check_PROGRAMS += tests/check-vm tests/check-vm-kvm
TESTS += tests/check-vm tests/check-vm-kvm
tests_check_vm_SOURCES = tests/check-vm.c $(VM_TEST_HELPERS) \
	tools/guest/workload.h tools/guest/workload.c
tests_check_vm_CPPFLAGS = $(VM_TEST_CPPFLAGS)
tests_check_vm_CFLAGS = $(AM_CFLAGS) $(CHECK_CFLAGS)
tests_check_vm_LDADD = migrate/libvmlink.a $(GUESTMEM_LIBS) $(CHECK_LIBS)
tests_check_vm_kvm_SOURCES = tests/check-vm-kvm.c $(VM_TEST_HELPERS)
tests_check_vm_kvm_CPPFLAGS = $(VM_TEST_CPPFLAGS)
tests_check_vm_kvm_CFLAGS = $(AM_CFLAGS) $(CHECK_CFLAGS)
tests_check_vm_kvm_LDADD = migrate/libvmlink.a util/libutil.a $(CHECK_LIBS)

dist_man1_MANS += docs/man/ferry-vm.1
EXTRA_DIST += docs/vmlink.md
EXTRA_DIST += tools/ferry-vm/kvm-in-tcg

# The KVM cases on nested KVM under QEMU TCG, for hosts without /dev/kvm
# (slow; downloads Debian's kernel package into a cache on first use).
check-kvm-in-tcg: all tests/check-vm-kvm
	$(srcdir)/tools/ferry-vm/kvm-in-tcg $(abs_top_builddir)
.PHONY: check-kvm-in-tcg
