# migrate: the wire protocol, the source and destination engines.
noinst_LIBRARIES += migrate/libmigrate.a
migrate_libmigrate_a_SOURCES = \
	migrate/wire.h \
	migrate/wire-cursor.h \
	migrate/wire.c \
	migrate/wire-pages.c \
	migrate/wire-placement.c \
	migrate/migrate.h \
	migrate/internal.h \
	migrate/vm.c \
	migrate/policy.c \
	migrate/placement.c \
	migrate/placement-apply.c \
	migrate/faults.c \
	migrate/cond.c \
	migrate/worker.c \
	migrate/phase.c \
	migrate/cancel.c \
	migrate/tune.c \
	migrate/events.c \
	migrate/source-internal.h \
	migrate/source.c \
	migrate/source-senders.c \
	migrate/source-subpages.c \
	migrate/source-precopy.c \
	migrate/source-switchover.c \
	migrate/source-postcopy.c \
	migrate/source-recover.c \
	migrate/source-steer.c \
	migrate/source-ksm.c \
	migrate/dest-internal.h \
	migrate/dest.c \
	migrate/dest-receive.c \
	migrate/dest-place.c \
	migrate/dest-ksm.c \
	migrate/dest-collapse.c \
	migrate/dest-fault.c \
	migrate/dest-control.c \
	migrate/dest-recover.c \
	migrate/dest-steer.c \
	migrate/stats.c
MIGRATE_LIBS = migrate/libmigrate.a vmlink/libvmlink.a $(TRANSPORT_LIBS) \
	$(GUESTMEM_LIBS)
