# tools: the programs.

# The guestmem benchmark (figures, not a test).
noinst_PROGRAMS += tools/bench-guestmem
tools_bench_guestmem_SOURCES = tools/bench-guestmem.c
tools_bench_guestmem_LDADD = $(GUESTMEM_LIBS)

# Making certificates (tools/cert.h): ferry cert, the benchmark and the
# tests link it; the transport itself only checks certificates.
noinst_LIBRARIES += tools/libcert.a
tools_libcert_a_SOURCES = tools/cert.h tools/cert.c
tools_libcert_a_CFLAGS = $(AM_CFLAGS) $(SSL_CFLAGS)
CERT_LIBS = tools/libcert.a

# ferry: one binary, its subcommands dispatched from the table in
# tools/ferry.c. The agents' subcommands, `ctl` and `cert` (the
# certificates of the demo and the tests) are here; tools/ferry-vm/local.mk
# and tools/ferry-qemu/local.mk add `vm` and `qemu` from their folders.
bin_PROGRAMS += tools/ferry
tools_ferry_SOURCES = tools/ferry.c tools/ferry.h \
	tools/ferry-source.c tools/ferry-dest.c tools/ferry-ctl.c \
	tools/ferry-cert.c \
	tools/cli.c tools/cli.h tools/control.c
FERRY_CPPFLAGS =
tools_ferry_CPPFLAGS = $(AM_CPPFLAGS) $(FERRY_CPPFLAGS)
tools_ferry_CFLAGS = $(AM_CFLAGS) $(SSL_CFLAGS)
tools_ferry_LDADD = $(MIGRATE_LIBS) $(CERT_LIBS) $(TRANSPORT_LIBS) \
	$(PTHREAD_LIBS)

# The old program names are links to it (in the build tree too, where
# the tests and tools/demo run them).
FERRY_LINKS = ferry-source ferry-dest ferry-ctl ferry-cert ferry-vm ferry-qemu
FERRY_BUILD_LINKS = tools/ferry-source tools/ferry-dest tools/ferry-ctl \
	tools/ferry-cert tools/ferry-vm/ferry-vm tools/ferry-qemu/ferry-qemu
all-local: ferry-links
ferry-links: tools/ferry$(EXEEXT)
	$(AM_V_GEN)for l in $(FERRY_BUILD_LINKS); do \
		$(MKDIR_P) `dirname $$l` && \
		ln -sf $(abs_top_builddir)/tools/ferry$(EXEEXT) $$l || exit 1; \
	done
.PHONY: ferry-links
install-exec-hook:
	for l in $(FERRY_LINKS); do \
		ln -sf ferry$(EXEEXT) $(DESTDIR)$(bindir)/$$l || exit 1; \
	done
uninstall-hook:
	for l in $(FERRY_LINKS); do rm -f $(DESTDIR)$(bindir)/$$l; done
CLEANFILES += $(FERRY_BUILD_LINKS)

# The manual pages, one per subcommand, in docs/man/ (tests/manpages.sh
# checks each against its subcommand's --help).
dist_man1_MANS += docs/man/ferry.1 docs/man/ferry-source.1 \
	docs/man/ferry-dest.1 docs/man/ferry-ctl.1 docs/man/ferry-cert.1

# The benchmark suite against QEMU (a script, run from the source tree).
EXTRA_DIST += tools/bench tools/bench.d/procs.py tools/bench.d/ferry.py \
	tools/bench.d/qemu.py tools/bench.d/report.py \
	tools/bench.d/placement.py tools/bench.d/accel.py tools/bench.d/fqemu.py

# The benchmark: figures, not a test.
noinst_PROGRAMS += tools/bench-transport
tools_bench_transport_SOURCES = tools/bench-transport.c
tools_bench_transport_CFLAGS = $(AM_CFLAGS) $(SSL_CFLAGS)
tools_bench_transport_LDADD = $(CERT_LIBS) $(TRANSPORT_LIBS)

# The nested NUMA host (a 6.12 kernel under QEMU TCG with a CPU-less
# node), booted by tests/migrate.sh's nested_* cases.
EXTRA_DIST += tools/nested/fetch tools/nested/host tools/nested/init \
	tools/nested/runner
# Where a process's pages are by node (move_pages), asked inside it.
noinst_PROGRAMS += tools/nested/pages
tools_nested_pages_SOURCES = tools/nested/pages.c
tools_nested_pages_LDADD = $(GUESTMEM_LIBS)
