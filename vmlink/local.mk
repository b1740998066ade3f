# vmlink: the VM link, the protocol between a VMM and an agent (both ends,
# docs/vmlink.md). Its own module because ferry-vm and ferry-qemu speak it
# without linking the engines.
noinst_LIBRARIES += vmlink/libvmlink.a
vmlink_libvmlink_a_SOURCES = vmlink/vmlink.h vmlink/vmlink.c
VMLINK_LIBS = vmlink/libvmlink.a util/libutil.a
EXTRA_DIST += docs/vmlink.md
