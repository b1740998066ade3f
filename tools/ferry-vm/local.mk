# ferry-vm: the reference micro-VMM (KVM and no-KVM backends, its VM-link
# server, snapshots), running the guest payload of tools/guest.
bin_PROGRAMS += tools/ferry-vm/ferry-vm
tools_ferry_vm_ferry_vm_SOURCES = \
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
	tools/ferry-vm/snapshot.c
tools_ferry_vm_ferry_vm_CPPFLAGS = $(AM_CPPFLAGS) \
	-DFERRY_GUEST_DEFAULT=\"$(pkgdatadir)/ferry-guest\"
tools_ferry_vm_ferry_vm_LDADD = $(WORKLOAD_LIBS) $(VMLINK_LIBS) \
	$(GUESTMEM_LIBS) $(PTHREAD_LIBS)

dist_man1_MANS += docs/ferry-vm.1
EXTRA_DIST += tools/ferry-vm/kvm-in-tcg

# The KVM cases on nested KVM under QEMU TCG, for hosts without /dev/kvm
# (slow; downloads Debian's kernel package into a cache on first use).
check-kvm-in-tcg: all tests/check-vm-kvm
	$(srcdir)/tools/ferry-vm/kvm-in-tcg $(abs_top_builddir)
.PHONY: check-kvm-in-tcg
