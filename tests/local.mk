# tests: every test program and script of the project (each module's
# local.mk builds only the module itself). A Check program exits 0, 1 or
# 77 (skip); a script speaks TAP.

# Scripts speak TAP (tests/migrate.sh): each case is its own test result,
# counted as such by make check and tools/test-summary.
TEST_EXTENSIONS = .sh
SH_LOG_DRIVER = env AM_TAP_AWK='$(AWK)' $(SHELL) \
	$(top_srcdir)/build-aux/tap-driver.sh

check_PROGRAMS += tests/check-util
TESTS += tests/check-util
tests_check_util_SOURCES = tests/check-util.c
tests_check_util_CFLAGS = $(AM_CFLAGS) $(CHECK_CFLAGS)
tests_check_util_LDADD = util/libutil.a $(CHECK_LIBS)

check_PROGRAMS += tests/check-guestmem tests/check-guestmem-hugetlb
TESTS += tests/check-guestmem tests/check-guestmem-hugetlb
tests_check_guestmem_SOURCES = tests/check-guestmem.c tests/testutil.h
tests_check_guestmem_CFLAGS = $(AM_CFLAGS) $(CHECK_CFLAGS) $(XXHASH_CFLAGS)
tests_check_guestmem_LDADD = $(GUESTMEM_LIBS) $(CHECK_LIBS)
tests_check_guestmem_hugetlb_SOURCES = tests/check-guestmem.c tests/testutil.h
tests_check_guestmem_hugetlb_CPPFLAGS = $(AM_CPPFLAGS) -DGM_TEST_HUGETLB
# The matrix-free cases run in check-guestmem only.
tests_check_guestmem_hugetlb_CFLAGS = $(AM_CFLAGS) $(CHECK_CFLAGS) $(XXHASH_CFLAGS) \
	-Wno-unused-variable -Wno-unused-function
tests_check_guestmem_hugetlb_LDADD = $(GUESTMEM_LIBS) $(CHECK_LIBS)

check_PROGRAMS += tests/check-guestmem-kvm
TESTS += tests/check-guestmem-kvm
tests_check_guestmem_kvm_SOURCES = tests/check-guestmem-kvm.c tests/testutil.h
tests_check_guestmem_kvm_CFLAGS = $(AM_CFLAGS) $(CHECK_CFLAGS)
tests_check_guestmem_kvm_LDADD = $(GUESTMEM_LIBS) $(CHECK_LIBS)

check_PROGRAMS += tests/check-transport
TESTS += tests/check-transport
tests_check_transport_SOURCES = tests/check-transport.c
tests_check_transport_CFLAGS = $(AM_CFLAGS) $(CHECK_CFLAGS) $(SSL_CFLAGS) $(URING_CFLAGS) $(XXHASH_CFLAGS)
tests_check_transport_LDADD = $(CERT_LIBS) $(TRANSPORT_LIBS) $(CHECK_LIBS) $(XXHASH_LIBS)

check_PROGRAMS += tests/check-wire
TESTS += tests/check-wire
tests_check_wire_SOURCES = tests/check-wire.c tests/testutil.h
tests_check_wire_CFLAGS = $(AM_CFLAGS) $(CHECK_CFLAGS)
tests_check_wire_LDADD = migrate/libmigrate.a util/libutil.a $(CHECK_LIBS)

# The engines' parts that need no VM: the convergence policy, the fault
# statistics, the placement plan.
check_PROGRAMS += tests/check-migrate
TESTS += tests/check-migrate
tests_check_migrate_SOURCES = tests/check-migrate.c tests/testutil.h
tests_check_migrate_CFLAGS = $(AM_CFLAGS) $(CHECK_CFLAGS)
tests_check_migrate_LDADD = $(MIGRATE_LIBS) $(CHECK_LIBS) -lm

# Both engines in one process over TLS on loopback, against VM
# stand-ins that are real memory and userfaultfds: every phase and the
# failure branches at exact points. Its own program, so that
# check-migrate's pure cases never skip where userfaultfd is missing.
check_PROGRAMS += tests/check-engine
TESTS += tests/check-engine
tests_check_engine_SOURCES = tests/check-engine.c tests/testutil.h
tests_check_engine_CFLAGS = $(AM_CFLAGS) $(CHECK_CFLAGS)
tests_check_engine_LDADD = $(CERT_LIBS) $(MIGRATE_LIBS) $(CHECK_LIBS)

# Seeds for the wire fuzzer, written by the encoders themselves.
noinst_PROGRAMS += tests/fuzz-wire-seeds
tests_fuzz_wire_seeds_SOURCES = tests/fuzz-wire.c
tests_fuzz_wire_seeds_LDADD = migrate/libmigrate.a vmlink/libvmlink.a util/libutil.a

if ENABLE_FUZZ
noinst_PROGRAMS += tests/fuzz-wire
tests_fuzz_wire_SOURCES = tests/fuzz-wire.c
tests_fuzz_wire_CPPFLAGS = $(AM_CPPFLAGS) -DFUZZING
tests_fuzz_wire_LDFLAGS = $(AM_LDFLAGS) $(FUZZ_LDFLAGS)
tests_fuzz_wire_LDADD = migrate/libmigrate.a vmlink/libvmlink.a util/libutil.a
endif

# The record-layer fuzzer (tests/fuzz-records.c) and its seeds.
noinst_PROGRAMS += tests/fuzz-records-seeds
tests_fuzz_records_seeds_SOURCES = tests/fuzz-records.c tests/fuzz-seed.h
tests_fuzz_records_seeds_CFLAGS = $(AM_CFLAGS) $(URING_CFLAGS) $(SSL_CFLAGS)
tests_fuzz_records_seeds_LDADD = $(TRANSPORT_LIBS)

if ENABLE_FUZZ
noinst_PROGRAMS += tests/fuzz-records
tests_fuzz_records_SOURCES = tests/fuzz-records.c
tests_fuzz_records_CPPFLAGS = $(AM_CPPFLAGS) -DFUZZING
tests_fuzz_records_CFLAGS = $(AM_CFLAGS) $(URING_CFLAGS) $(SSL_CFLAGS)
tests_fuzz_records_LDFLAGS = $(AM_LDFLAGS) $(FUZZ_LDFLAGS)
tests_fuzz_records_LDADD = $(TRANSPORT_LIBS)
endif

# The session setup messages' fuzzer (tests/fuzz-join.c) and its seeds.
noinst_PROGRAMS += tests/fuzz-join-seeds
tests_fuzz_join_seeds_SOURCES = tests/fuzz-join.c tests/fuzz-seed.h
tests_fuzz_join_seeds_CFLAGS = $(AM_CFLAGS) $(URING_CFLAGS) $(SSL_CFLAGS)
tests_fuzz_join_seeds_LDADD = $(TRANSPORT_LIBS)

if ENABLE_FUZZ
noinst_PROGRAMS += tests/fuzz-join
tests_fuzz_join_SOURCES = tests/fuzz-join.c
tests_fuzz_join_CPPFLAGS = $(AM_CPPFLAGS) -DFUZZING
tests_fuzz_join_CFLAGS = $(AM_CFLAGS) $(URING_CFLAGS) $(SSL_CFLAGS)
tests_fuzz_join_LDFLAGS = $(AM_LDFLAGS) $(FUZZ_LDFLAGS)
tests_fuzz_join_LDADD = $(TRANSPORT_LIBS)
endif

# Live migration end to end: real VMs, the agents, TLS on loopback.
TESTS += tests/migrate.sh
EXTRA_DIST += tests/migrate.sh tests/harness.sh tests/tcp-proxy.py

# Cancelling a migration with SIGINT/SIGTERM, before and after the
# switchover is committed.
TESTS += tests/cancel.sh
EXTRA_DIST += tests/cancel.sh tests/agents.sh

# The operator's controls (ferry ctl, --control, --events) against running
# migrations, each effect read back from the events stream.
TESTS += tests/ctl.sh
EXTRA_DIST += tests/ctl.sh tests/events.py

# The manual pages against each subcommand's --help.
TESTS += tests/manpages.sh
EXTRA_DIST += tests/manpages.sh

# Faults at every phase: frozen agents, a slow lossy link, a full
# filesystem, memory cgroups (docs/recovery.md's fault matrix).
TESTS += tests/faults.sh
EXTRA_DIST += tests/faults.sh

# Hostile peers: an authenticated source against a live ferry-dest, a
# destination against a live ferry-source (tests/hostile-peer.c), and a
# VMM breaking the VM link (tests/hostile-vmm.py): each scenario must end
# in one line naming the violation, no crash, no hang, no resumed guest.
check_PROGRAMS += tests/hostile-peer
tests_hostile_peer_SOURCES = tests/hostile-peer.c
tests_hostile_peer_CFLAGS = $(AM_CFLAGS) $(SSL_CFLAGS) $(URING_CFLAGS)
tests_hostile_peer_LDADD = migrate/libmigrate.a $(TRANSPORT_LIBS)
TESTS += tests/hostile.sh
EXTRA_DIST += tests/hostile.sh tests/hostile-vmm.py

# The VM link, the guest workload and ferry-vm (KVM cases skip where
# /dev/kvm is not KVM).
VM_TEST_CPPFLAGS = $(AM_CPPFLAGS) -DVM_BUILDDIR=\"$(abs_top_builddir)\"
VM_TEST_HELPERS = tests/check-vm-helpers.h tests/check-vm-helpers.c

check_PROGRAMS += tests/check-vm tests/check-vm-kvm
TESTS += tests/check-vm tests/check-vm-kvm
tests_check_vm_SOURCES = tests/check-vm.c $(VM_TEST_HELPERS)
tests_check_vm_CPPFLAGS = $(VM_TEST_CPPFLAGS)
tests_check_vm_CFLAGS = $(AM_CFLAGS) $(CHECK_CFLAGS)
tests_check_vm_LDADD = $(WORKLOAD_LIBS) $(VMLINK_LIBS) $(GUESTMEM_LIBS) \
	$(CHECK_LIBS)
tests_check_vm_kvm_SOURCES = tests/check-vm-kvm.c $(VM_TEST_HELPERS)
tests_check_vm_kvm_CPPFLAGS = $(VM_TEST_CPPFLAGS)
tests_check_vm_kvm_CFLAGS = $(AM_CFLAGS) $(CHECK_CFLAGS)
tests_check_vm_kvm_LDADD = $(VMLINK_LIBS) $(CHECK_LIBS)

check_PROGRAMS += tests/check-ferry-qemu
TESTS += tests/check-ferry-qemu
tests_check_ferry_qemu_SOURCES = tests/check-ferry-qemu.c tests/testutil.h
tests_check_ferry_qemu_CFLAGS = $(AM_CFLAGS) $(CHECK_CFLAGS)
tests_check_ferry_qemu_LDADD = $(FQ_LIBS) $(CHECK_LIBS)


# Migrating ferry-guest and a Linux guest (tools/linux-guest) in QEMU
# with the agents (TAP, through the .sh driver of tests/local.mk).
TESTS += tests/qemu.sh
EXTRA_DIST += tests/qemu.sh tests/vmlink-client.py tests/vmlink-hold.py \
	tests/hugepages.sh tests/qemu-common.sh

# A libvirt domain migrated with ferry-migrate between two libvirtds of
# the test's own on this machine (TAP; docs/libvirt.md).
TESTS += tests/libvirt.sh
EXTRA_DIST += tests/libvirt.sh

# DAMON's access hotness on the process's own memory (tests/migrate.sh
# damon_access, outside and inside the nested host).
check_PROGRAMS += tests/access-probe
tests_access_probe_SOURCES = tests/access-probe.c
tests_access_probe_LDADD = $(GUESTMEM_LIBS) -lpthread
