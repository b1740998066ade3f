# migrate: the wire protocol, the source and destination engines.
noinst_LIBRARIES += migrate/libmigrate.a
migrate_libmigrate_a_SOURCES = \
	migrate/wire.h \
	migrate/wire.c \
	migrate/migrate.h \
	migrate/internal.h \
	migrate/vm.c \
	migrate/policy.c \
	migrate/faults.c \
	migrate/cond.c \
	migrate/worker.c \
	migrate/phase.c \
	migrate/cancel.c \
	migrate/source-internal.h \
	migrate/source.c \
	migrate/source-senders.c \
	migrate/source-precopy.c \
	migrate/source-switchover.c \
	migrate/source-postcopy.c \
	migrate/source-recover.c \
	migrate/dest-internal.h \
	migrate/dest.c \
	migrate/dest-receive.c \
	migrate/dest-fault.c \
	migrate/dest-control.c \
	migrate/dest-recover.c \
	migrate/stats.c
MIGRATE_LIBS = migrate/libmigrate.a migrate/libvmlink.a $(TRANSPORT_LIBS) \
	$(GUESTMEM_LIBS)

check_PROGRAMS += tests/check-wire
TESTS += tests/check-wire
tests_check_wire_SOURCES = tests/check-wire.c tests/testutil.h
tests_check_wire_CFLAGS = $(AM_CFLAGS) $(CHECK_CFLAGS)
tests_check_wire_LDADD = migrate/libmigrate.a util/libutil.a $(CHECK_LIBS)

# The engines' parts that need no VM: the convergence policy, the fault
# statistics.
check_PROGRAMS += tests/check-migrate
TESTS += tests/check-migrate
tests_check_migrate_SOURCES = tests/check-migrate.c tests/testutil.h
tests_check_migrate_CFLAGS = $(AM_CFLAGS) $(CHECK_CFLAGS)
tests_check_migrate_LDADD = migrate/libmigrate.a util/libutil.a \
	$(CHECK_LIBS) -lm

# Seeds for the wire fuzzer, written by the encoders themselves.
noinst_PROGRAMS += tests/fuzz-wire-seeds
tests_fuzz_wire_seeds_SOURCES = tests/fuzz-wire.c
tests_fuzz_wire_seeds_LDADD = migrate/libmigrate.a migrate/libvmlink.a util/libutil.a

if ENABLE_FUZZ
noinst_PROGRAMS += tests/fuzz-wire
tests_fuzz_wire_SOURCES = tests/fuzz-wire.c
tests_fuzz_wire_CPPFLAGS = $(AM_CPPFLAGS) -DFUZZING
tests_fuzz_wire_LDFLAGS = $(AM_LDFLAGS) $(FUZZ_LDFLAGS)
tests_fuzz_wire_LDADD = migrate/libmigrate.a migrate/libvmlink.a util/libutil.a
endif

# Live migration end to end: real VMs, the agents, TLS on loopback.
TESTS += tests/migrate.sh
EXTRA_DIST += tests/migrate.sh tests/tcp-proxy.py

# Cancelling a migration with SIGINT/SIGTERM, before and after the
# switchover is committed.
TESTS += tests/cancel.sh
EXTRA_DIST += tests/cancel.sh

# A hostile authenticated source against a live ferry-dest: each scenario
# of tests/hostile-peer.c must end in one line naming the violation, no
# crash, no hang, no resumed guest.
check_PROGRAMS += tests/hostile-peer
tests_hostile_peer_SOURCES = tests/hostile-peer.c
tests_hostile_peer_CFLAGS = $(AM_CFLAGS) $(SSL_CFLAGS) $(URING_CFLAGS)
tests_hostile_peer_LDADD = migrate/libmigrate.a $(TRANSPORT_LIBS)
TESTS += tests/hostile.sh
EXTRA_DIST += tests/hostile.sh
